//! A simulated world on a mock cluster, the service run in-process or as a child process, and
//! the outputs read back.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistitch::input::InputStream;
use omnistitch::replay::{replay, ReplayRun};
use omnistitch::run::traffic::{produce, Traffic};
use omnistitch_codec::datum::OutputKind;
use omnistitch_codec::OutputEncoder;
use omnistitch_engine::records::profile_record;
use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_kafka::registry::{BundledIds, OutputSchemas};
use omnistitch_kafka::topics::partition_for;
use omnistitch_kafka::wire::write_confluent;
use omnistitch_kafka::{EmbeddedCluster, KafkaConfig, Mode, RunReport, Service, ServiceMetrics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Input partitions (and so shards) in these tests.
pub const PARTITIONS: i32 = 3;

/// A world on a cluster, and what the service must produce for it.
pub struct Setup {
    /// The cluster (dropping it stops the brokers).
    pub cluster: EmbeddedCluster,
    /// The service configuration for it.
    pub config: KafkaConfig,
    /// Input records produced.
    pub records: u64,
    /// Expected outputs, from `replay`.
    pub expected: Expected,
}

/// Output records as (key, value) byte pairs.
pub type Pairs = std::collections::BTreeSet<(Vec<u8>, Vec<u8>)>;

/// What `replay` says the service must emit.
pub struct Expected {
    /// Timeline entries.
    pub timeline: Pairs,
    /// Merges.
    pub merges: Pairs,
    /// Interventions a service that has not seen the end of its input has emitted.
    pub interventions: Pairs,
    /// Final profiles by key.
    pub profiles: HashMap<Vec<u8>, Vec<u8>>,
    /// Dead letters.
    /// The dead letters' reason codes, sorted (one per bad input record).
    pub dead_letters: Vec<String>,
}

pub fn frame<T: serde::Serialize>(enc: &OutputEncoder, ids: &OutputSchemas, kind: OutputKind, r: &T) -> Vec<u8> {
    let datum = enc.encode(kind, r).unwrap();
    let mut out = Vec::new();
    write_confluent(ids.id(kind), &datum, &mut out);
    out
}

fn expected(run: &ReplayRun) -> Expected {
    let enc = OutputEncoder::new();
    let ids = OutputSchemas::bundled(&BundledIds::default());
    let timeline = run
        .timeline_records
        .values()
        .map(|r| (r.profile_id.clone().into_bytes(), frame(&enc, &ids, OutputKind::TimelineEntry, r)))
        .collect();
    let merges = run
        .merges
        .iter()
        .map(|m| (m.absorbed_id.clone().into_bytes(), frame(&enc, &ids, OutputKind::ProfileMerge, m)))
        .collect();
    let live = &run.interventions[..run.interventions.len() - run.flushed];
    let interventions = live
        .iter()
        .map(|i| (i.profile_id.clone().into_bytes(), frame(&enc, &ids, OutputKind::Intervention, i)))
        .collect();
    let mut profiles = HashMap::new();
    for (tenant, graph) in run.pipeline.engine().identity().graphs() {
        for p in graph.profiles() {
            let r = profile_record(tenant, graph, p);
            profiles.insert(r.profile_id.clone().into_bytes(), frame(&enc, &ids, OutputKind::Profile, &r));
        }
    }
    let mut dead_letters: Vec<String> = run.dead_letters.iter().map(|d| d.reason_code.clone()).collect();
    dead_letters.sort();
    Expected { timeline, merges, interventions, profiles, dead_letters }
}

/// Simulates `customers` (seed `seed`), replays them split like the topics, starts a mock cluster
/// and produces the same records to its input topics.
pub fn setup(customers: usize, seed: u64, mode: Mode, dir: &Path) -> Setup {
    let world = omnistitch_sim::generate(&omnistitch_sim::SimConfig { customers, seed, ..Default::default() }).unwrap();
    omnistitch_sim::write_world(dir, &world).unwrap();
    let stream =
        InputStream::open_partitioned(dir, PARTITIONS as usize, |t| partition_for(t, PARTITIONS) as usize).unwrap();
    let run = replay(stream, Pipeline::new(&EngineConfig::default()).unwrap(), true);
    assert!(run.interventions.len() > run.flushed, "the world must exercise the detector");
    // One shard restored per round: the restores of every test are spread over rounds.
    let base = KafkaConfig {
        partitions: PARTITIONS,
        mode,
        commit_interval_ms: 50,
        max_batch: 500,
        restore_slice_ms: 0,
        ..Default::default()
    };
    let (cluster, config) = test_cluster(3, base, &format!("omnistitch-test-{seed}"));
    let traffic = Traffic {
        rate: 0,
        customers,
        seed,
        worlds: Some(1),
        first_world: 0,
        start_ms: omnistitch_sim::DEFAULT_START_MS,
    };
    let records = produce(&config, &BundledIds::default(), &traffic, &AtomicBool::new(false)).unwrap();
    assert_eq!(records as usize, world.events.len());
    Setup { cluster, config, records, expected: expected(&run) }
}

/// A mock cluster of `brokers` for `base`, and the service configuration for it in consumer
/// group `group`, with the tests' timeouts (a member gone is noticed within 6 s).
pub fn test_cluster(brokers: i32, base: KafkaConfig, group: &str) -> (EmbeddedCluster, KafkaConfig) {
    let cluster = EmbeddedCluster::start(brokers, &base).unwrap();
    let mut config = cluster.service_config(base);
    config.group_id = group.to_string();
    config.request_timeout_ms = 10_000;
    // Snapshots as often as allowed: the tests' worlds are small, and every restore should
    // have one to read back.
    config.snapshot_bytes = 1 << 16;
    config.properties.insert("session.timeout.ms".into(), "6000".into());
    config.properties.insert("heartbeat.interval.ms".into(), "500".into());
    // librdkafka debug contexts for a failing test, e.g. `OMNISTITCH_TEST_KAFKA_DEBUG=cgrp` (with
    // `RUST_LOG=librdkafka=debug,info`).
    if let Ok(contexts) = std::env::var("OMNISTITCH_TEST_KAFKA_DEBUG") {
        config.properties.insert("debug".into(), contexts);
    }
    (cluster, config)
}

/// Runs the service in this process until `stop`.
pub fn spawn_service(
    config: KafkaConfig,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<Result<RunReport, String>>, Arc<ServiceMetrics>) {
    if std::env::var_os("RUST_LOG").is_some() {
        omnistitch::logging::init(false);
    }
    let metrics = Arc::new(ServiceMetrics::new());
    let m = metrics.clone();
    let handle = std::thread::spawn(move || {
        let service = Service::bundled(config, m).map_err(|e| e.to_string())?;
        service.run(stop.clone()).map_err(|e| e.to_string())
    });
    (handle, metrics)
}

fn reader(config: &KafkaConfig, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap()
}

/// Whether the group has committed every input record.
pub fn caught_up(config: &KafkaConfig) -> Result<bool, KafkaError> {
    omnistitch_kafka::topics::caught_up(&reader(config, &config.group_id), config, Duration::from_secs(5))
}

/// Input records the group has committed (the sum of committed offsets; inputs start at 0).
pub fn committed_records(config: &KafkaConfig) -> i64 {
    omnistitch_kafka::topics::committed_records(&reader(config, &config.group_id), config, Duration::from_secs(5))
        .unwrap_or(0)
}

/// Waits until the group has committed every input record.
pub fn wait_caught_up(config: &KafkaConfig, limit: Duration) {
    assert!(caught_up_within(config, limit), "the service did not catch up within {limit:?}");
}

/// Whether the group commits every input record within `limit`.
pub fn caught_up_within(config: &KafkaConfig, limit: Duration) -> bool {
    let started = Instant::now();
    while !caught_up(config).unwrap_or(false) {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// One output record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Key.
    pub key: Vec<u8>,
    /// Value (`None`: tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Partition.
    pub partition: i32,
}

/// Every record of `topic`, partition by partition in offset order, read committed.
pub fn read_topic(config: &KafkaConfig, topic: &str) -> Vec<Record> {
    let c = reader(config, "omnistitch-test-reader");
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for p in 0..config.partitions {
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(5)).unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).unwrap();
            open += 1;
        }
    }
    c.assign(&tpl).unwrap();
    drop(tpl);
    let mut out = Vec::new();
    let started = Instant::now();
    while open > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "reading {topic} timed out");
        match c.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default();
                out.push(Record {
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                    partition: m.partition(),
                });
            }
        }
    }
    out
}

/// Distinct (key, value) pairs of `records`.
pub fn pairs(records: &[Record]) -> Pairs {
    records.iter().map(|r| (r.key.clone(), r.value.clone().unwrap_or_default())).collect()
}

/// What the service's outputs must satisfy, whatever happened on the way: every expected record
/// present, nothing else (so every duplicate is an exact copy), final profiles equal, and one
/// dead letter per bad input record with the replay's reasons. Returns how many timeline,
/// merge, intervention and dead-letter records were copies of another.
pub fn assert_outputs_match(setup: &Setup) -> usize {
    let duplicates = assert_outputs_but_dead_letters_match(setup);
    let records = read_topic(&setup.config, &setup.config.topics.deadletter);
    // One per source record (topic, partition, offset): copies of one are one.
    type Source = Vec<(String, Vec<u8>)>;
    let mut by_source: std::collections::BTreeMap<Source, (Option<Vec<u8>>, String)> = Default::default();
    let mut copies = 0;
    for r in records {
        let source: Vec<(String, Vec<u8>)> =
            r.headers.iter().filter(|(k, _)| k.starts_with("omnistitch.source")).cloned().collect();
        let code = r
            .headers
            .iter()
            .find(|(k, _)| k == "omnistitch.reason.code")
            .map(|(_, v)| String::from_utf8_lossy(v).to_string());
        let seen = (r.value.clone(), code.unwrap_or_default());
        match by_source.get(&source) {
            Some(first) => {
                assert_eq!(first, &seen, "a dead letter written again is an exact copy");
                copies += 1;
            }
            None => {
                by_source.insert(source, seen);
            }
        }
    }
    let mut reasons: Vec<String> = by_source.into_values().map(|(_, code)| code).collect();
    reasons.sort();
    assert_eq!(reasons, setup.expected.dead_letters, "dead letters: one per bad record, the replay's reasons");
    duplicates + copies
}

/// [`assert_outputs_match`] for every topic but the dead letters (for input the replay did not
/// have).
pub fn assert_outputs_but_dead_letters_match(setup: &Setup) -> usize {
    let t = &setup.config.topics;
    let e = &setup.expected;
    let timeline = read_topic(&setup.config, &t.timeline);
    let got = pairs(&timeline);
    assert_eq!(got.len(), e.timeline.len(), "timeline entries: distinct count");
    assert!(got == e.timeline, "timeline entries differ from replay");
    let merges = read_topic(&setup.config, &t.merges);
    let distinct_merges = pairs(&merges);
    assert!(distinct_merges == e.merges, "merges differ from replay");
    let interventions = read_topic(&setup.config, &t.interventions);
    let distinct_interventions = pairs(&interventions);
    assert_eq!(distinct_interventions.len(), e.interventions.len(), "interventions: distinct count");
    assert!(distinct_interventions == e.interventions, "interventions differ from replay");
    let mut profiles: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for r in read_topic(&setup.config, &t.profiles) {
        match r.value {
            Some(v) => profiles.insert(r.key, v),
            None => profiles.remove(&r.key),
        };
    }
    assert_eq!(profiles.len(), e.profiles.len(), "profiles: count");
    assert!(profiles == e.profiles, "final profiles differ from replay");
    (timeline.len() - got.len())
        + (merges.len() - distinct_merges.len())
        + (interventions.len() - distinct_interventions.len())
}
