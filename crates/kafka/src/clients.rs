//! librdkafka client contexts: rebalance events handed to the loop, consumer lag into metrics,
//! delivery failures counted, client logs into tracing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use prometheus::IntCounterVec;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::ProducerContext;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use crate::health::Health;
use crate::metrics::ServiceMetrics;

/// A rebalance, as the loop sees it after `poll` returns.
pub enum RebalanceEvent {
    /// Partitions taken away.
    Revoked(Vec<(String, i32)>),
    /// Partitions given, each with its own queue (split off inside the callback, before the
    /// assignment starts fetching, so no record of it reaches the main queue).
    Assigned(Vec<(String, i32, Option<PartitionQueue<GroupContext>>)>),
    /// The group reported an error.
    Failed(String),
}

/// Context of the input consumer.
pub struct GroupContext {
    metrics: Arc<ServiceMetrics>,
    consumer: OnceLock<Weak<BaseConsumer<GroupContext>>>,
    events: Mutex<Vec<RebalanceEvent>>,
    served: AtomicU64,
    /// (input topic, partition) -> the offset the group last committed there, as the service
    /// committed it: with transactions the offsets go through the producer, so the consumer's
    /// own idea of them (and librdkafka's lag) never moves.
    committed: Mutex<HashMap<(String, i32), i64>>,
}

impl GroupContext {
    /// A context reporting into `metrics`.
    pub fn new(metrics: Arc<ServiceMetrics>) -> Self {
        GroupContext {
            metrics,
            consumer: OnceLock::new(),
            events: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
            committed: Mutex::new(HashMap::new()),
        }
    }

    /// The group's committed offset of `topic`'s partition `partition` is now `offset`: its lag
    /// counts from there.
    pub fn note_committed(&self, topic: &str, partition: i32, offset: i64) {
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        match committed.get_mut(&(topic.to_string(), partition)) {
            Some(o) => *o = offset,
            None => {
                committed.insert((topic.to_string(), partition), offset);
            }
        }
    }

    /// `topic`'s partition `partition` is no longer this instance's: its lag is not reported
    /// here any more (another member reports it).
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        self.committed.lock().unwrap_or_else(|p| p.into_inner()).remove(&(topic.to_string(), partition));
        self.metrics.forget_lag(topic, partition);
    }

    /// Lets the context split partition queues of `consumer` when partitions are assigned.
    pub fn attach(&self, consumer: &Arc<BaseConsumer<GroupContext>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// How many main-queue events (logs, statistics, errors, rebalances, commits) the callbacks
    /// have served: `poll` returns `None` both for an empty queue and for a served event, and
    /// this count tells the two apart.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }

    fn serve(&self) {
        self.served.fetch_add(1, Ordering::AcqRel);
    }

    /// Rebalances since the last call, in order.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{log_message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility = fac, "{log_message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{log_message}"),
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        self.serve();
        // Records between each held partition's end (its last stable offset, which is what a
        // read_committed consumer can reach) and the group's committed offset there.
        let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        for (name, topic) in &statistics.topics {
            for (&partition, p) in &topic.partitions {
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                let Some(&at) = committed.get(&(name.clone(), partition)) else { continue };
                if end >= 0 {
                    self.metrics.lag(name, partition, end - at);
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.serve();
        log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.serve();
        // End-of-partition events also reach the merge through the partition queues.
        if !matches!(error, KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.serve();
        let event = match rebalance {
            Rebalance::Revoke(tpl) => {
                self.metrics.rebalance(false);
                RebalanceEvent::Revoked(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
            }
            // Split before the assignment starts the fetchers: records fetched earlier would
            // land in the consumer's main queue.
            Rebalance::Assign(tpl) => self.assigned(tpl),
            Rebalance::Error(e) => RebalanceEvent::Failed(e.to_string()),
        };
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }

    fn commit_callback(&self, _: rdkafka::error::KafkaResult<()>, _: &rdkafka::TopicPartitionList) {
        self.serve();
    }
}

impl GroupContext {
    /// The queues of newly assigned partitions, split off the main queue.
    fn assigned(&self, tpl: &rdkafka::TopicPartitionList) -> RebalanceEvent {
        self.metrics.rebalance(true);
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let parts = tpl
            .elements()
            .iter()
            .map(|e| {
                let queue = consumer.as_ref().and_then(|c| c.split_partition_queue(e.topic(), e.partition()));
                (e.topic().to_string(), e.partition(), queue)
            })
            .collect();
        RebalanceEvent::Assigned(parts)
    }
}

/// Context of the output producer: counts failed deliveries.
#[derive(Default)]
pub struct DeliveryContext {
    failures: AtomicU64,
    last_failure: Mutex<Option<String>>,
    /// The size limits output topics showed by refusing records.
    limits: TopicLimits,
    /// Records refused as too large, by topic.
    too_large: Option<IntCounterVec>,
    /// Beaten while a thread waits for room in the producer's queue (the cluster is slow or
    /// away: not a stall).
    health: Option<Arc<Health>>,
}

impl DeliveryContext {
    /// A context whose waits for room in the queue beat `health`, counting records refused as
    /// too large in `too_large` (by topic).
    pub fn beating(health: Arc<Health>, too_large: IntCounterVec) -> Self {
        DeliveryContext { health: Some(health), too_large: Some(too_large), ..DeliveryContext::default() }
    }

    /// The size limits output topics showed by refusing records.
    pub fn limits(&self) -> &TopicLimits {
        &self.limits
    }

    /// `topic` refused a record of `bytes` as too large: learned, counted and logged.
    fn refused_as_too_large(&self, topic: &str, bytes: usize) {
        if let Some(c) = &self.too_large {
            c.with_label_values(&[topic]).inc();
        }
        match self.limits.refused(topic, bytes) {
            Some(limit) => tracing::warn!(
                topic,
                bytes,
                limit,
                "the topic refused a record as too large (its max.message.bytes is below the producer's message.max.bytes): its dead letters and profile records are cut to the limit from now on"
            ),
            None => tracing::error!(
                topic,
                bytes,
                "the topic refused a record as too large; records this small are never cut: raise the topic's max.message.bytes"
            ),
        }
    }

    /// A thread waits for room in the producer's queue.
    pub fn waiting_for_room(&self) {
        if let Some(h) = &self.health {
            h.beat();
        }
    }

    /// Deliveries that failed since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// The last failure, if any.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a record takes against a topic's limit: its key, value and headers.
fn record_bytes(msg: &rdkafka::message::BorrowedMessage<'_>) -> usize {
    let headers =
        msg.headers().map_or(0, |h| h.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len)).sum::<usize>());
    msg.key_len() + msg.payload_len() + headers
}

/// Records at most this size are never cut for a topic's refusal: no topic's limit is that
/// low in practice, so such a refusal says nothing of the record's size (and cutting a record
/// this small to fit would leave nothing of it).
pub const LEAST_LEARNED_LIMIT: usize = 64 * 1024;

/// The record sizes output topics refused as too large, learned from their refusals: a topic's
/// own `max.message.bytes` can be below the producer's `message.max.bytes`, and the service
/// cannot read topic configurations on every cluster. A refused record would fail its batch
/// again at every retry; the records that can be cut to fit (dead letters, profile records)
/// are cut to half the refused size from then on (no less than [`LEAST_LEARNED_LIMIT`]), so a
/// few retries find a size the topic takes. What is learned lasts until the process ends.
#[derive(Debug, Default)]
pub struct TopicLimits {
    learned: Mutex<HashMap<String, usize>>,
    /// Whether anything is learned (read without the lock on every record cut to fit).
    any: AtomicBool,
}

impl TopicLimits {
    /// `topic` refused a record of `bytes` as too large: the topic's limit from now on, or
    /// `None` for a record too small to learn from.
    pub fn refused(&self, topic: &str, bytes: usize) -> Option<usize> {
        if bytes <= LEAST_LEARNED_LIMIT {
            return None;
        }
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        let limit = learned.entry(topic.to_string()).or_insert(usize::MAX);
        *limit = (*limit).min((bytes / 2).max(LEAST_LEARNED_LIMIT));
        self.any.store(true, Ordering::Release);
        Some(*limit)
    }

    /// The most bytes a record for `topic` may take: `configured` (the producer's
    /// `message.max.bytes`), or less once the topic refused a record.
    pub fn max_bytes(&self, topic: &str, configured: usize) -> usize {
        if !self.any.load(Ordering::Acquire) {
            return configured;
        }
        let learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        learned.get(topic).map_or(configured, |&l| l.min(configured))
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka producer error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            if *e == KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) {
                self.refused_as_too_large(msg.topic(), record_bytes(msg));
            }
            *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            self.failures.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_refusing_a_record_halves_what_is_sent_there_down_to_a_floor() {
        let limits = TopicLimits::default();
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 1_000_000, "nothing learned");
        assert_eq!(limits.refused("dlq", 600_000), Some(300_000));
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 300_000);
        assert_eq!(limits.max_bytes("dlq", 200_000), 200_000, "never above the producer's own limit");
        assert_eq!(limits.max_bytes("profiles", 1_000_000), 1_000_000, "per topic");
        // A later refusal of a larger record (sent before the first was learned) keeps the lower.
        assert_eq!(limits.refused("dlq", 900_000), Some(300_000));
        assert_eq!(limits.refused("dlq", 299_000), Some(149_500));
        assert_eq!(limits.refused("dlq", 100_000), Some(LEAST_LEARNED_LIMIT), "no lower than the floor");
        assert_eq!(limits.refused("dlq", 2_000), None, "a record this small teaches nothing");
        assert_eq!(limits.max_bytes("dlq", 1_000_000), LEAST_LEARNED_LIMIT);
        assert_eq!(limits.refused("timeline", LEAST_LEARNED_LIMIT), None);
        assert_eq!(limits.max_bytes("timeline", 1_000_000), 1_000_000);
    }
}
