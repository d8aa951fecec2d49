//! Quiet tenants (`kafka.idle_clock_ms`): a first-response SLA is breached on time though the
//! tenant sends nothing more, a restart restores the clock's move from the changelog, and a
//! restart counts its downtime as quiet time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use omnistitch_codec::datum::{encode_input, OutputKind};
use omnistitch_codec::OutputEncoder;
use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_kafka::registry::{BundledIds, InputSchemas, OutputSchemas};
use omnistitch_kafka::wire::write_confluent;
use omnistitch_kafka::{Health, KafkaConfig, Mode, RunReport, Service, ServiceMetrics};
use omnistitch_model::wire::ChatEvent;
use omnistitch_model::{Channel, Direction, EventKind, EventTime, Tenant, WireEvent};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::harness::{frame, read_topic, test_cluster, wait_caught_up};

/// SLAs of `sla_s` seconds, no allowed lateness, no abandon timers: a breach is due `sla_s`
/// after the message, and nothing can be due later (the tenant's timer horizon is `sla_s`).
fn engine(sla_s: u32) -> EngineConfig {
    let mut engine = EngineConfig::default();
    engine.moments.allowed_lateness_seconds = 0;
    let sla = &mut engine.moments.first_response_sla;
    (sla.chat_seconds, sla.email_seconds, sla.social_seconds) = (sla_s, sla_s, sla_s);
    engine.moments.abandoned_contact.enabled = false;
    engine
}

fn run(
    config: &KafkaConfig,
    sla_s: u32,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<RunReport>, Arc<ServiceMetrics>) {
    if std::env::var_os("RUST_LOG").is_some() {
        omnistitch::logging::init(false);
    }
    let metrics = Arc::new(ServiceMetrics::new());
    let (config, m) = (config.clone(), metrics.clone());
    let handle = std::thread::spawn(move || {
        let ids = BundledIds::default();
        let (inputs, outputs) = (InputSchemas::new(None, ids.clone()), OutputSchemas::bundled(&ids));
        let service = Service::new(config, engine(sla_s), inputs, outputs, m, Arc::new(Health::default())).unwrap();
        service.run(stop.clone()).unwrap()
    });
    (handle, metrics)
}

/// Produces one inbound chat message of tenant `acme`, stamped now; returns its event time and
/// the breach the engine gives for it once the tenant's clock passes the due time (the one a
/// later event of the tenant would have brought), framed as the service writes it.
fn one_message(config: &KafkaConfig, sla_s: u32) -> (i64, Vec<u8>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let wire = WireEvent::Chat(ChatEvent {
        tenant: "acme".into(),
        event_id: "m1".into(),
        event_time: now,
        direction: Direction::Inbound,
        kind: EventKind::Message,
        case_id: None,
        agent_id: None,
        account_id: None,
        text: None,
        sentiment: None,
        survey: None,
        session_id: "s1".into(),
        visitor_id: Some("v1".into()),
        customer_email: Some("jo@mailbox.io".into()),
        customer_phone: None,
    });
    let mut value = Vec::new();
    write_confluent(BundledIds::default().input(Channel::Chat), &encode_input(&wire).unwrap(), &mut value);
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &config.bootstrap_servers).create().unwrap();
    let topic = config.topics.input(Channel::Chat).to_string();
    producer.send(BaseRecord::to(&topic).key("jo").payload(&value).partition(0)).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let mut pipeline = Pipeline::new(&engine(sla_s)).unwrap();
    let event = wire.into_event(Tenant::new).unwrap();
    assert!(pipeline.apply(event).interventions.is_empty());
    let breach = pipeline.advance_clock(&Tenant::new("acme"), EventTime(now + 1_000 * sla_s as i64 + 60_000));
    assert_eq!(breach.len(), 1, "{breach:?}");
    let ids = OutputSchemas::bundled(&BundledIds::default());
    (now, frame(&OutputEncoder::new(), &ids, OutputKind::Intervention, &breach[0]))
}

/// The interventions on the topic once at least one is there, or after `limit`.
fn first_interventions(config: &KafkaConfig, limit: Duration) -> Vec<super::harness::Record> {
    let started = Instant::now();
    loop {
        let found = read_topic(config, &config.topics.interventions);
        if !found.is_empty() || started.elapsed() > limit {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A restart counts its downtime as quiet time: a breach due while the service was down fires
/// right after the restore, not a whole SLA later (the clock runs on from its last changelog
/// record's time, not from the restart).
#[test]
fn a_breach_due_while_the_service_was_down_fires_right_after_the_restart() {
    const SLA_S: u32 = 12;
    let sla_ms = 1_000 * i64::from(SLA_S);
    let wall_ms = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let base = KafkaConfig {
        partitions: 1,
        mode: Mode::ExactlyOnce,
        commit_interval_ms: 50,
        restore_slice_ms: 0,
        idle_clock_ms: 300,
        ..Default::default()
    };
    let (_cluster, config) = test_cluster(1, base, "omnistitch-test-clock-down");
    // The service first, so that its start-up does not eat into the SLA.
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = run(&config, SLA_S, stop.clone());
    let started = Instant::now();
    while metrics.shards.get() < 1 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sent_ms, expected) = one_message(&config, SLA_S);
    wait_caught_up(&config, Duration::from_secs(60));
    let applied_ms = wall_ms();
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    let stopped_ms = wall_ms();
    assert!(read_topic(&config, &config.topics.interventions).is_empty(), "not due before the stop");
    // Without the downtime counted, the restored clock (at most where the wall clock was at
    // the stop) needs at least this long after the restore to reach the due time.
    let without_ms = sla_ms - (stopped_ms - sent_ms);
    assert!(without_ms >= 5_000, "stopped {} ms after the message: too late to tell", stopped_ms - sent_ms);

    // Down until a second past the due time (counted from when the message was applied).
    std::thread::sleep(Duration::from_millis((applied_ms + sla_ms + 1_000 - wall_ms()).max(0) as u64));

    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = run(&config, SLA_S, stop.clone());
    let started = Instant::now();
    while metrics.restored_events.get() == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let restored = Instant::now();
    let fired = first_interventions(&config, Duration::from_secs(30));
    let after = restored.elapsed();
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    assert!(metrics.restored_events.get() >= 1, "the restart restored the shard");
    assert_eq!(fired.len(), 1, "one breach");
    assert_eq!(fired[0].value.as_deref(), Some(&expected[..]), "the breach the tenant's next event would have brought");
    let bound = Duration::from_millis((without_ms - 2_000) as u64).min(Duration::from_secs(5));
    assert!(after < bound, "fired {after:?} after the restore (without the downtime: {without_ms} ms at least)");
}

#[test]
fn a_quiet_tenant_s_sla_breach_fires_without_its_next_event_and_a_restart_keeps_the_move() {
    quiet_tenant(Mode::ExactlyOnce, "omnistitch-test-clock");
}

/// In `at_least_once` moves are not in the changelog: after a restart the breach fires again,
/// as an exact copy.
#[test]
fn at_least_once_a_quiet_tenant_s_breach_fires_again_after_a_restart_as_an_exact_copy() {
    quiet_tenant(Mode::AtLeastOnce, "omnistitch-test-clock-alo");
}

fn quiet_tenant(mode: Mode, group: &str) {
    let base = KafkaConfig {
        partitions: 1,
        mode,
        commit_interval_ms: 50,
        restore_slice_ms: 0,
        idle_clock_ms: 300,
        ..Default::default()
    };
    let (_cluster, config) = test_cluster(1, base, group);

    // One inbound chat message, now; nothing after it, ever.
    let (_, expected) = one_message(&config, 1);

    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = run(&config, 1, stop.clone());
    wait_caught_up(&config, Duration::from_secs(60));
    let fired = first_interventions(&config, Duration::from_secs(30));
    // Past its horizon the tenant's clock is no longer moved.
    std::thread::sleep(Duration::from_millis(700));
    let moves = metrics.clock_advances.get();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(metrics.clock_advances.get(), moves, "moves went on past the horizon");
    assert!((1..=10).contains(&moves), "{moves} moves");
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    assert_eq!(fired.len(), 1, "one breach, with no event after the message");
    assert_eq!(fired[0].value.as_deref(), Some(&expected[..]), "the breach the tenant's next event would have brought");
    assert!(metrics.clock_advances.get() >= 1);

    // A restart restores the move: the timer fired, nothing new is emitted (a copy at most).
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = run(&config, 1, stop.clone());
    let started = Instant::now();
    while metrics.restored_events.get() == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Long enough for the restored clock to run on past the due time and be moved again (in
    // at_least_once, until the breach fired again).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3)
        || (mode == Mode::AtLeastOnce
            && read_topic(&config, &config.topics.interventions).len() < 2
            && started.elapsed() < Duration::from_secs(60))
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    assert!(metrics.restored_events.get() >= 1, "the restart restored the shard");
    let after = read_topic(&config, &config.topics.interventions);
    if mode == Mode::ExactlyOnce {
        assert!(metrics.restored_clock_advances.get() >= 1, "the restore re-applied the clock's moves");
        // Not even a copy: the restored state knows the timer fired (without the move restored,
        // it would fire again).
        assert_eq!(after.len(), 1, "the breach again after the restart");
        assert_eq!(metrics.clock_advances.get(), 0, "the restored clock was past its horizon");
    } else {
        assert_eq!(metrics.restored_clock_advances.get(), 0, "moves are not recorded");
        assert_eq!(after.len(), 2, "the breach again, once");
        assert!(after.iter().all(|r| r.value.as_deref() == Some(&expected[..])), "an exact copy");
    }
}
