//! Clean runs: the service's outputs equal a replay of the same records, in both modes, and a
//! restart restores in steps and writes nothing again; bad input goes to the dead-letter topic
//! with its reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use omnistitch_kafka::Mode;
use omnistitch_model::Channel;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::harness::{
    assert_outputs_but_dead_letters_match, assert_outputs_match, read_topic, setup, spawn_service, wait_caught_up,
};

fn clean_run(mode: Mode, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(250, seed, mode, dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(s.config.clone(), stop.clone());
    wait_caught_up(&s.config, Duration::from_secs(120));
    stop.store(true, Ordering::Release);
    let report = handle.join().unwrap().unwrap();
    assert_eq!(report.records, s.records, "every input record processed once in a clean run");
    assert_eq!(report.aborts, 0);
    let duplicates = assert_outputs_match(&s);
    assert_eq!(duplicates, 0, "a clean run writes no duplicate");
    // The metric counts the commits the service made (the series exists from the start at 0).
    let text = metrics.render();
    let committed = text
        .lines()
        .find_map(|l| l.strip_prefix("omnistitch_transactions_total{outcome=\"committed\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(report.commits > 0);
    assert_eq!(committed, Some(report.commits), "commits counted as made");
}

#[test]
fn exactly_once_outputs_equal_replay() {
    clean_run(Mode::ExactlyOnce, 21);
}

#[test]
fn at_least_once_outputs_equal_replay() {
    clean_run(Mode::AtLeastOnce, 22);
}

/// Runs the service over the setup's input until it caught up, then stops it.
fn run_through(s: &super::harness::Setup) {
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, _) = spawn_service(s.config.clone(), stop.clone());
    wait_caught_up(&s.config, Duration::from_secs(120));
    stop.store(true, Ordering::Release);
    handle.join().unwrap().unwrap();
}

/// A restart restores each shard's whole changelog in steps spread over rounds (the group is
/// served between them: the harness gives restores no slice, so each round takes one step),
/// then goes on where the first run stopped: nothing is consumed or written again.
#[test]
fn a_restart_restores_in_steps_over_rounds_and_writes_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(1000, 24, Mode::ExactlyOnce, dir.path());
    run_through(&s);
    let t = &s.config.topics;
    let outputs = [&t.timeline, &t.profiles, &t.merges, &t.interventions, &t.deadletter];
    let written = || outputs.map(|topic| read_topic(&s.config, topic).len());
    let before = written();

    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(s.config.clone(), stop.clone());
    let started = std::time::Instant::now();
    while metrics.ready.get() != 1 {
        assert!(started.elapsed() < Duration::from_secs(120), "the restart never restored its shards");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let report = handle.join().unwrap().unwrap();
    assert_eq!(metrics.ready.get(), 0, "a stopped instance shows not ready");
    assert_eq!(report.restores, 3, "{report:?}");
    assert!(report.restore_steps > report.restores, "restores took a step each: {report:?}");
    assert_eq!(report.records, 0, "{report:?}");
    assert_eq!(
        written(),
        before,
        "no output topic written again (timeline, profiles, merges, interventions, dead letters)"
    );
    assert_eq!(assert_outputs_match(&s), 0, "nothing written twice");
}

#[test]
fn bad_input_is_dead_lettered_with_its_reason_and_never_stops_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(40, 23, Mode::ExactlyOnce, dir.path());
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &s.config.bootstrap_servers).create().unwrap();
    let topic = s.config.topics.input(Channel::Chat).to_string();
    let good = {
        let world =
            omnistitch_sim::generate(&omnistitch_sim::SimConfig { customers: 5, seed: 99, ..Default::default() })
                .unwrap();
        let e = world.events.iter().find(|e| e.channel() == Channel::Chat).unwrap().clone();
        e
    };
    let datum = omnistitch_codec::datum::encode_input(&good).unwrap();
    let framed = |id: u32, body: &[u8]| {
        let mut v = Vec::new();
        omnistitch_kafka::wire::write_confluent(id, body, &mut v);
        v
    };
    let with = |f: &dyn Fn(&mut omnistitch_model::WireEvent)| {
        let mut e = good.clone();
        f(&mut e);
        framed(2, &omnistitch_codec::datum::encode_input(&e).unwrap())
    };
    // Each with the reason code it must be dead-lettered with.
    let bad: Vec<(&str, &str, Vec<u8>)> = vec![
        ("truncated", "avro_decode", framed(2, &datum[..datum.len() / 2])),
        ("unknown schema id", "unknown_schema_id", framed(777, &datum)),
        ("wrong types (an email record on the chat topic)", "schema_mismatch", framed(1, &datum)),
        ("no framing", "bad_magic", b"hello".to_vec()),
        ("empty", "empty_record", Vec::new()),
        (
            "absurd timestamp",
            "invalid_time",
            with(&|e| {
                if let omnistitch_model::WireEvent::Chat(c) = e {
                    c.event_time = 9_999_999_999_999_999
                }
            }),
        ),
        (
            "an event time a day ahead of its record's timestamp",
            "future_time",
            with(&|e| {
                if let omnistitch_model::WireEvent::Chat(c) = e {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                    c.event_time = now.as_millis() as i64 + 86_400_000
                }
            }),
        ),
        (
            "oversized field",
            "oversized_field",
            with(&|e| {
                if let omnistitch_model::WireEvent::Chat(c) = e {
                    c.event_id = "x".repeat(100_000).into()
                }
            }),
        ),
        ("invalid UTF-8", "avro_decode", {
            let mut d = datum.clone();
            // The tenant is the first field: a length byte, then its bytes.
            d[1] = 0xff;
            framed(2, &d)
        }),
    ];
    for (i, (_, _, value)) in bad.iter().enumerate() {
        let key = format!("bad-{i}");
        // Each carries a header of its own, which its dead letter must copy.
        let trace = format!("trace-{i}");
        let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(trace.as_str()) });
        producer.send(BaseRecord::<_, _>::to(&topic).key(&key).payload(value).partition(0).headers(headers)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(s.config.clone(), stop.clone());
    wait_caught_up(&s.config, Duration::from_secs(120));
    stop.store(true, Ordering::Release);
    handle.join().unwrap().unwrap();
    let dead = read_topic(&s.config, &s.config.topics.deadletter);
    assert_eq!(
        dead.len(),
        bad.len(),
        "every bad record dead-lettered once: {:?}",
        dead.iter().map(|d| &d.key).collect::<Vec<_>>()
    );
    let mut keys: Vec<String> = dead.iter().map(|d| String::from_utf8_lossy(&d.key).to_string()).collect();
    keys.sort();
    let mut expected: Vec<String> = (0..bad.len()).map(|i| format!("bad-{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected, "each bad record dead-lettered, once");
    for d in &dead {
        let i: usize = String::from_utf8_lossy(&d.key).trim_start_matches("bad-").parse().unwrap();
        let (what, code, original) = &bad[i];
        assert_eq!(d.value.clone().unwrap_or_default(), *original, "{what}: original bytes kept");
        let h = |k: &str| d.headers.iter().find(|(n, _)| n == k).map(|(_, v)| String::from_utf8_lossy(v).to_string());
        assert_eq!(h("omnistitch.source.topic").as_deref(), Some(topic.as_str()));
        assert_eq!(h("omnistitch.source.partition").as_deref(), Some("0"));
        assert!(h("omnistitch.source.offset").is_some());
        assert_eq!(h("omnistitch.reason.code").as_deref(), Some(*code), "{what}: its reason code");
        assert!(!h("omnistitch.reason").unwrap_or_default().is_empty(), "{what}: a reason");
        assert_eq!(h("omnistitch.original.traceparent"), Some(format!("trace-{i}")), "{what}: its own header");
    }
    let text = metrics.render();
    let dead_counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("omnistitch_dead_letters_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(dead_counted, bad.len() as u64, "{text}");
    // The good records around them were all processed, as the replay of them alone.
    assert_outputs_but_dead_letters_match(&s);
}

/// What Kafka's compaction leaves of records in offset order: the last record of each key,
/// where it was, and no key whose last record is a tombstone.
fn compacted(records: &[&super::harness::Record]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut last = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        last.insert(r.key.clone(), i);
    }
    records
        .iter()
        .enumerate()
        .filter(|(i, r)| last[&r.key] == *i)
        .filter_map(|(_, r)| Some((r.key.clone(), r.value.clone()?)))
        .collect()
}

/// The service deletes the changelog records its committed snapshots made obsolete (a
/// tombstone each): what compaction leaves of the changelog restores every shard to the state
/// the whole changelog gives, from a snapshot, in fewer records.
#[test]
fn a_compacted_changelog_restores_the_state_the_whole_one_gives() {
    use omnistitch_engine::EngineConfig;
    use omnistitch_kafka::restore::{committed_offsets, ChangelogReader};

    let dir = tempfile::tempdir().unwrap();
    let s = setup(800, 25, Mode::ExactlyOnce, dir.path());
    run_through(&s);

    let changelog = read_topic(&s.config, &s.config.topics.changelog);
    let tombstones = changelog.iter().filter(|r| r.value.is_none()).count();
    assert!(tombstones > 0, "obsolete records deleted");
    let mut compacted_config = s.config.clone();
    compacted_config.topics.changelog = "changelog-compacted".into();
    s.cluster.cluster().create_topic(&compacted_config.topics.changelog, s.config.partitions, 1).unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &s.config.bootstrap_servers).create().unwrap();
    let mut kept = 0;
    for p in 0..s.config.partitions {
        let records: Vec<_> = changelog.iter().filter(|r| r.partition == p).collect();
        for (key, value) in compacted(&records) {
            let record = BaseRecord::to(&compacted_config.topics.changelog).partition(p).key(&key).payload(&value);
            producer.send(record).map_err(|(e, _)| e).unwrap();
            kept += 1;
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    assert!(kept + tombstones < changelog.len(), "compaction drops records: {kept} of {}", changelog.len());

    let consumer: rdkafka::consumer::BaseConsumer = s.config.consumer().create().unwrap();
    let stages = EngineConfig::default();
    let health = Arc::new(omnistitch_kafka::Health::default());
    let mut restored = 0;
    // (A partition the world's keys never reach has no changelog.)
    for p in (0..s.config.partitions).filter(|&p| changelog.iter().any(|r| r.partition == p)) {
        restored += 1;
        let committed = committed_offsets(&consumer, &s.config, p, Duration::from_secs(10)).unwrap();
        let restore = |config| {
            let reader = ChangelogReader::new(config, health.clone()).unwrap();
            let (r, pipeline, _) = reader.restore_shard(config, p, committed, &stages).unwrap();
            let engine = pipeline.engine();
            let mut profiles: Vec<String> = engine
                .identity()
                .graphs()
                .flat_map(|(_, g)| g.profiles().map(|pr| format!("{pr:?} {:?}", g.identifiers(pr))))
                .collect();
            profiles.sort();
            (r, format!("{:?} {:?} {:?}", engine.stats(), pipeline.cx_report(), pipeline.clocks()), profiles)
        };
        let (whole, whole_state, whole_profiles) = restore(&s.config);
        let (compact, compact_state, compact_profiles) = restore(&compacted_config);
        assert!(whole.snapshot_offset.is_some() && compact.snapshot_offset.is_some(), "shard {p}: {compact:?}");
        assert_eq!(compact.applied, whole.applied, "shard {p}: the same events after the snapshot");
        assert_eq!(compact_state, whole_state, "shard {p}");
        assert_eq!(compact_profiles, whole_profiles, "shard {p}");
    }
    assert!(restored >= 2, "shards with a changelog: {restored}");
}
