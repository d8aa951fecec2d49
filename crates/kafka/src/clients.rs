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

    /// Forgets the lag of every partition whose lag is reported that `held` says is no longer
    /// this instance's (its shard's restore was pending or running when it was revoked, say).
    pub fn forget_unheld(&self, held: impl Fn(&str, i32) -> bool) {
        let gone: Vec<(String, i32)> = {
            let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
            committed.keys().filter(|(topic, p)| !held(topic, *p)).cloned().collect()
        };
        for (topic, p) in gone {
            self.forget_partition(&topic, p);
        }
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

    /// `topic` refused a record of `bytes` as too large: counted, and noted for
    /// [`TopicLimits::settle`].
    fn refused_as_too_large(&self, topic: &str, bytes: usize) {
        if let Some(c) = &self.too_large {
            c.with_label_values(&[topic]).inc();
        }
        self.limits.refused(topic, bytes);
    }

    /// A thread waits for room in the producer's queue.
    pub fn waiting_for_room(&self) {
        if let Some(h) = &self.health {
            h.beat();
        }
    }

    /// Whether the run was asked to stop (a thread waiting for room gives up).
    pub fn stop_requested(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.stop_requested())
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
/// are cut to half the largest refused size from then on (no less than
/// [`LEAST_LEARNED_LIMIT`]), so a few retries find a size the topic takes. The broker refuses
/// a whole batch of records at once, so what is learned is settled once per failed batch,
/// from its largest refused record (its smaller ones were refused with it, not for their own
/// size). What is learned lasts until the process ends.
#[derive(Debug, Default)]
pub struct TopicLimits {
    state: Mutex<LimitState>,
    /// Whether anything is learned (read without the lock on every record cut to fit).
    any: AtomicBool,
}

#[derive(Debug, Default)]
struct LimitState {
    /// Topic -> most bytes its records may take.
    learned: HashMap<String, usize>,
    /// Topic -> the largest record it refused since the last settling.
    refused: HashMap<String, usize>,
}

impl TopicLimits {
    /// `topic` refused a record of `bytes` as too large (learned at the next
    /// [`TopicLimits::settle`]).
    pub fn refused(&self, topic: &str, bytes: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let largest = state.refused.entry(topic.to_string()).or_default();
        *largest = (*largest).max(bytes);
    }

    /// The failed batch is done with: learns from its refusals, each topic's limit now half
    /// its largest refused record, logged (a topic that refused only records too small to learn
    /// from is logged as an error: its batches are larger than it takes). Returns whether any
    /// topic refused a record as too large since the last settling.
    pub fn settle(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let refused = std::mem::take(&mut state.refused);
        let any = !refused.is_empty();
        for (topic, largest) in refused {
            if largest <= LEAST_LEARNED_LIMIT {
                tracing::error!(
                    topic,
                    largest,
                    "the topic refused records too small to cut as too large: its max.message.bytes is below the producer's batches; raise it, or lower batch.size"
                );
                continue;
            }
            let limit = state.learned.entry(topic.clone()).or_insert(usize::MAX);
            *limit = (*limit).min((largest / 2).max(LEAST_LEARNED_LIMIT));
            tracing::warn!(
                topic,
                largest,
                limit = *limit,
                "the topic refused records as too large (its max.message.bytes is below the producer's message.max.bytes): its dead letters and profile records are cut to the limit from now on"
            );
            self.any.store(true, Ordering::Release);
        }
        any
    }

    /// The most bytes a record for `topic` may take: `configured` (the producer's
    /// `message.max.bytes`), or less once the topic refused a record.
    pub fn max_bytes(&self, topic: &str, configured: usize) -> usize {
        if !self.any.load(Ordering::Acquire) {
            return configured;
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.learned.get(topic).map_or(configured, |&l| l.min(configured))
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

    /// Partitions no longer held lose their lag series and their committed offsets, however
    /// they were lost.
    #[test]
    fn the_lag_of_partitions_no_longer_held_is_forgotten() {
        let metrics = Arc::new(ServiceMetrics::new());
        let context = GroupContext::new(metrics.clone());
        for p in 0..3 {
            context.note_committed("cx.chat.v1", p, 10);
            metrics.lag("cx.chat.v1", p, 5);
        }
        context.forget_unheld(|topic, p| topic == "cx.chat.v1" && p == 1);
        let text = metrics.render();
        assert!(text.contains(r#"omnistitch_consumer_lag_records{partition="1",topic="cx.chat.v1"} 5"#), "{text}");
        assert!(!text.contains(r#"partition="0",topic="cx.chat.v1""#) && !text.contains(r#"partition="2""#));
        let committed = context.committed.lock().unwrap();
        assert_eq!(committed.keys().collect::<Vec<_>>(), [&("cx.chat.v1".to_string(), 1)]);
    }

    #[test]
    fn a_topic_refusing_a_record_halves_what_is_sent_there_down_to_a_floor() {
        let limits = TopicLimits::default();
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 1_000_000, "nothing learned");
        // One refused batch: a large record and a smaller one refused with it.
        limits.refused("dlq", 600_000);
        limits.refused("dlq", 130_000);
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 1_000_000, "learned once the batch is settled");
        assert!(limits.settle(), "the batch had refusals");
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 300_000, "from the batch's largest record");
        assert_eq!(limits.max_bytes("dlq", 200_000), 200_000, "never above the producer's own limit");
        assert_eq!(limits.max_bytes("profiles", 1_000_000), 1_000_000, "per topic");
        // A later refusal of a larger record keeps the lower limit; a smaller one lowers it.
        limits.refused("dlq", 900_000);
        limits.settle();
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 300_000);
        limits.refused("dlq", 299_000);
        limits.settle();
        assert_eq!(limits.max_bytes("dlq", 1_000_000), 149_500);
        limits.refused("dlq", 100_000);
        limits.settle();
        assert_eq!(limits.max_bytes("dlq", 1_000_000), LEAST_LEARNED_LIMIT, "no lower than the floor");
        // Records this small teach nothing (their batch was too large, not they).
        limits.refused("timeline", 2_000);
        limits.refused("timeline", LEAST_LEARNED_LIMIT);
        limits.settle();
        assert_eq!(limits.max_bytes("timeline", 1_000_000), 1_000_000);
        assert!(!limits.settle(), "no refusal since");
        assert_eq!(limits.max_bytes("dlq", 1_000_000), LEAST_LEARNED_LIMIT, "settling nothing changes nothing");
    }
}
