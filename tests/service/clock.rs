//! Quiet tenants (`kafka.idle_clock_ms`): a first-response SLA is breached on time though the
//! tenant sends nothing more, and a restart restores the clock's move from the changelog.

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

/// SLAs 1 s, no allowed lateness, no abandon timers: a breach is due a second after the
/// message, and nothing can be due later (the tenant's timer horizon is 1 s).
fn engine() -> EngineConfig {
    let mut engine = EngineConfig::default();
    engine.moments.allowed_lateness_seconds = 0;
    let sla = &mut engine.moments.first_response_sla;
    (sla.chat_seconds, sla.email_seconds, sla.social_seconds) = (1, 1, 1);
    engine.moments.abandoned_contact.enabled = false;
    engine
}

fn run(config: &KafkaConfig, stop: Arc<AtomicBool>) -> (std::thread::JoinHandle<RunReport>, Arc<ServiceMetrics>) {
    if std::env::var_os("RUST_LOG").is_some() {
        omnistitch::logging::init(false);
    }
    let metrics = Arc::new(ServiceMetrics::new());
    let (config, m) = (config.clone(), metrics.clone());
    let handle = std::thread::spawn(move || {
        let ids = BundledIds::default();
        let (inputs, outputs) = (InputSchemas::new(None, ids.clone()), OutputSchemas::bundled(&ids));
        let service = Service::new(config, engine(), inputs, outputs, m, Arc::new(Health::default())).unwrap();
        service.run(&stop).unwrap()
    });
    (handle, metrics)
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
        customer_email: Some("jo@example.com".into()),
        customer_phone: None,
    });
    let mut value = Vec::new();
    write_confluent(BundledIds::default().input(Channel::Chat), &encode_input(&wire).unwrap(), &mut value);
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &config.bootstrap_servers).create().unwrap();
    let topic = config.topics.input(Channel::Chat).to_string();
    producer.send(BaseRecord::to(&topic).key("jo").payload(&value).partition(0)).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    // What the engine gives for that message once the tenant's clock passes the due time: the
    // breach a later event of the tenant would have brought.
    let mut pipeline = Pipeline::new(&engine()).unwrap();
    let event = wire.into_event(Tenant::new).unwrap();
    assert!(pipeline.apply(event).interventions.is_empty());
    let breach = pipeline.advance_clock(&Tenant::new("acme"), EventTime(now + 60_000));
    assert_eq!(breach.len(), 1, "{breach:?}");
    let ids = OutputSchemas::bundled(&BundledIds::default());
    let expected = frame(&OutputEncoder::new(), &ids, OutputKind::Intervention, &breach[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = run(&config, stop.clone());
    wait_caught_up(&config, Duration::from_secs(60));
    let started = Instant::now();
    let fired = loop {
        let found = read_topic(&config, &config.topics.interventions);
        if !found.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break found;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
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
    let (handle, metrics) = run(&config, stop.clone());
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
