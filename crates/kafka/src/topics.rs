//! Topics: created on the embedded mock cluster, created through the admin API on a real
//! cluster when asked, otherwise required to exist.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;

/// The input partition of a tenant's records: producers must key (or partition) inputs by
/// tenant so that one tenant's four channels land on the same partition index. The embedded
/// traffic, tests and benches partition with this function.
pub fn partition_for(tenant: &str, partitions: i32) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(tenant.as_bytes()) % partitions.max(1) as u64) as i32
}

/// Whether `consumer`'s group has committed the end of every input partition of `config`
/// (nothing left to process): for operators' checks, tests and benchmarks.
pub fn caught_up<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<bool, KafkaError> {
    let tpl = input_partitions(config);
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut done = true;
    for e in committed.elements() {
        let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let at = if let Offset::Offset(o) = e.offset() { o } else { 0 };
        done &= high == 0 || at >= high;
    }
    drop(committed);
    Ok(done)
}

/// Input records `consumer`'s group has committed: the sum of its committed input offsets
/// (progress, for benchmarks and tests; inputs whose log starts past 0 count their start too).
pub fn committed_records<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<i64, KafkaError> {
    let tpl = input_partitions(config);
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let total = committed.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum();
    drop(committed);
    Ok(total)
}

/// Every input partition.
fn input_partitions(config: &KafkaConfig) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (_, topic) in config.topics.inputs() {
        for p in 0..config.partitions {
            tpl.add_partition(topic, p);
        }
    }
    tpl
}

/// Every topic the service reads or writes, with its partition count.
fn wanted(config: &KafkaConfig) -> Vec<(String, i32)> {
    let t = &config.topics;
    let mut all: Vec<(String, i32)> = t.inputs().iter().map(|(_, n)| (n.to_string(), config.partitions)).collect();
    all.extend(t.outputs().iter().map(|n| (n.to_string(), config.partitions)));
    all.push((t.changelog.clone(), config.partitions));
    all
}

/// Creates every topic on a mock cluster (which has no CreateTopics API).
pub fn create_on_mock(
    cluster: &MockCluster<'_, DefaultProducerContext>,
    config: &KafkaConfig,
) -> Result<(), KafkaError> {
    for (name, partitions) in wanted(config) {
        cluster.create_topic(&name, partitions, 1)?;
    }
    Ok(())
}

/// Segments of the changelog roll at this size or age at the latest: compaction never cleans
/// the segment being written, so this bounds what a restore reads beyond the newest snapshot
/// and what came after it (with the broker's defaults, a gibibyte or a week).
const CHANGELOG_SEGMENT_BYTES: &str = "67108864";
const CHANGELOG_SEGMENT_MS: &str = "3600000";

/// The settings a topic the service creates gets: compaction where the contract says so, and
/// for the changelog segments that roll soon enough for compaction to keep it short.
fn topic_settings(config: &KafkaConfig, name: &str) -> Vec<(&'static str, &'static str)> {
    let mut settings = Vec::new();
    if config.topics.is_compacted(name) {
        settings.push(("cleanup.policy", "compact"));
    }
    if name == config.topics.changelog {
        settings.extend([("segment.bytes", CHANGELOG_SEGMENT_BYTES), ("segment.ms", CHANGELOG_SEGMENT_MS)]);
    }
    settings
}

/// Creates the topics that are missing through the admin API (compacted where the contract
/// says so), waiting up to the request timeout.
pub fn create_missing(config: &KafkaConfig) -> Result<Vec<String>, KafkaError> {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let probe: BaseConsumer = config.client().create()?;
    let md = probe.fetch_metadata(None, timeout)?;
    let existing: Vec<String> =
        md.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name().to_string()).collect();
    drop(md);
    let missing: Vec<(String, i32)> = wanted(config).into_iter().filter(|(n, _)| !existing.contains(n)).collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions)| {
            let t = NewTopic::new(name, *partitions, TopicReplication::Fixed(config.replication));
            topic_settings(config, name).into_iter().fold(t, |t, (key, value)| t.set(key, value))
        })
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    let results = block_on(admin.create_topics(&topics, &opts))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            // Created meanwhile (another replica starting at the same time): it exists.
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic = name, "topic created meanwhile by another instance");
            }
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(topic = name, "topic creation failed"))
            }
        }
    }
    Ok(created)
}

/// Runs a future to completion on this thread (the admin client's futures are driven by its
/// own background thread; they only need a waker that unparks us).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_waits_for_a_future_completed_by_another_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let fut = std::future::poll_fn(move |cx| match rx.try_recv() {
            Ok(v) => std::task::Poll::Ready(v),
            Err(_) => {
                let w = cx.waker().clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    w.wake();
                });
                std::task::Poll::Pending
            }
        });
        std::thread::spawn(move || tx.send(7).unwrap());
        assert_eq!(block_on(fut), 7);
    }

    #[test]
    fn created_topics_are_compacted_as_the_contract_says_and_the_changelog_rolls_soon() {
        let c = KafkaConfig::default();
        let changelog = topic_settings(&c, &c.topics.changelog);
        assert_eq!(
            changelog,
            [("cleanup.policy", "compact"), ("segment.bytes", "67108864"), ("segment.ms", "3600000")]
        );
        assert_eq!(topic_settings(&c, &c.topics.profiles), [("cleanup.policy", "compact")]);
        for (name, _) in wanted(&c).iter().filter(|(n, _)| !c.topics.is_compacted(n)) {
            assert!(topic_settings(&c, name).is_empty(), "{name}");
        }
    }

    #[test]
    fn every_role_has_a_topic() {
        let c = KafkaConfig::default();
        let w = wanted(&c);
        assert_eq!(w.len(), 10);
        assert!(w.iter().any(|(n, _)| n == "omnistitch.changelog.v1"));
    }
}
