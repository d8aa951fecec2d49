//! The consume-stitch-produce loop.
//!
//! One thread owns the consumer, the producer and every shard's engine; a second one, fed by
//! it, writes the timeline records and runs the shards' ordered stages (moments, CX)
//! ([`crate::ordered`]). A round: poll the group (no transaction is ever open while rebalance
//! callbacks can run), restore newly assigned shards, then for one commit interval poll the
//! partition queues and apply records as soon as the event-time merge releases them, and
//! finally, once the ordered thread has caught up, commit outputs, changelog and input offsets
//! together (a transaction in exactly_once mode; acknowledged outputs, then offsets, in
//! at_least_once mode). A failed commit rewinds: the consumer goes back to the committed
//! offsets and every shard is restored from the changelog (spread over rounds, like the
//! restores of an assignment).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_model::wire::accepted_event_time;
use omnistitch_model::Tenant;
use omnistitch_moments::TimerHorizons;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;

use crate::clients::{DeliveryContext, GroupContext, RebalanceEvent};
use crate::config::{KafkaConfig, Mode, MERGE_ORDER};
use crate::health::Health;
use crate::metrics::ServiceMetrics;
use crate::ordered::{OrderedOutputs, OrderedWorker};
use crate::outputs::EncodeError;
use crate::registry::{DecodedInput, InputSchemas, OutputSchemas};
use crate::restore::{committed_offsets, committed_offsets_of, ChangelogReader, RestoreJob};
use crate::shard::{drain_all, evicted_and_forgotten, Input, Pending, RestoredClock, Shard, Shared};
use crate::wire::WireError;
use prometheus::IntCounter;

/// Why the service stopped.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The cluster refused or failed in a way retrying will not fix.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// An output could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The engine configuration is invalid.
    #[error("engine configuration: {0}")]
    Engine(#[from] omnistitch_engine::ConfigError),
    /// The topics do not fit the service (missing, or inputs not co-partitioned).
    #[error("topics: {0}")]
    Topics(String),
    /// A schema registry failure at start.
    #[error("schemas: {0}")]
    Schemas(#[from] WireError),
    /// The ordered stages' thread could not start or stopped.
    #[error("ordered stages: {0}")]
    Worker(String),
    /// The producer refused an output (its transaction failed, e.g. a broker went away): the
    /// batch is aborted and rewound, the service goes on.
    #[error("producing an output: {0}")]
    Produce(KafkaError),
    /// A partition assigned could not be given a queue of its own: its records would come
    /// mixed with the group's events, where a rewind cannot find them again.
    #[error("partition {topic}/{partition} assigned without a queue of its own")]
    Assignment {
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
    },
    /// A shard's changelog sent nothing for ten request timeouts while it was restored (its
    /// records below the range's end may be gone): a restart computes the range anew.
    #[error("the changelog of shard {0} sent nothing for ten request timeouts during its restore")]
    ChangelogSilent(i32),
    /// Asked to stop while waiting on the cluster: the batch in flight is left uncommitted
    /// (its records are processed again by the next owner, as after a crash).
    #[error("stopped before the batch in flight could be committed")]
    Stopped,
    /// A commit the coordinator did not answer within ten request timeouts: it may still land,
    /// so the batch can be neither produced again nor rewound. A restart settles it (the new
    /// producer's `init_transactions` completes or aborts it) and processes from the offsets
    /// then committed.
    #[error("the transaction's commit was not answered within ten request timeouts: {0}")]
    CommitInDoubt(KafkaError),
    /// An abort the coordinator did not answer within ten request timeouts, nor within ten
    /// more before the next transaction: no transaction can begin until it ends. A restart's
    /// `init_transactions` ends it.
    #[error("the transaction's abort was not answered within twenty request timeouts: {0}")]
    AbortUnanswered(KafkaError),
}

/// A transaction-ending call the client can resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnCall {
    Commit,
    Abort,
}

impl TxnCall {
    /// Its name in [`crate::metrics::RETRIED_CALLS`] and the logs.
    fn name(self) -> &'static str {
        match self {
            TxnCall::Commit => "commit",
            TxnCall::Abort => "abort",
        }
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Input records processed (applied, duplicate or dead-lettered).
    pub records: u64,
    /// Batches committed.
    pub commits: u64,
    /// Batches aborted (then produced again, or rewound).
    pub aborts: u64,
    /// Aborted batches produced again from their kept records, without a restore.
    pub resent: u64,
    /// Shard restores.
    pub restores: u64,
    /// Steps of shard restores (more than `restores` when restores span rounds).
    pub restore_steps: u64,
    /// Shards assigned again after a rebalance whose state was kept (no restore): nobody
    /// committed them in between.
    pub kept: u64,
    /// Whether the stop came while the cluster could not be reached, so the batch in flight
    /// was left uncommitted instead of committed.
    pub left_uncommitted: bool,
}

/// The running service.
pub struct Service {
    config: KafkaConfig,
    engine: EngineConfig,
    metrics: Arc<ServiceMetrics>,
    health: Arc<Health>,
    consumer: Arc<BaseConsumer<GroupContext>>,
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    worker: OrderedWorker,
    inputs: InputSchemas,
    outputs: OutputSchemas,
    changelog: ChangelogReader,
    queues: BTreeMap<(usize, i32), PartitionQueue<GroupContext>>,
    /// The first offset fetched from each (lane, partition) since it was assigned: where a
    /// rewind goes back to when the group has no committed offset for it.
    first_fetched: BTreeMap<(usize, i32), i64>,
    /// The (lane, partition)s whose end the client reported, with nothing fetched since: a
    /// shard restored after a rewind that did not seek them (nothing to go back over, so the
    /// client reports no end again) starts with them at their end, not waiting
    /// `merge_max_wait_ms` for records they do not have.
    at_end: BTreeSet<(usize, i32)>,
    /// Transactions aborted in a row (none committed since): each rewind after the first waits
    /// longer, so a failure that comes back every time does not spin restoring every shard.
    aborts_in_a_row: u32,
    assigned: BTreeSet<(usize, i32)>,
    shards: BTreeMap<i32, Shard>,
    /// Shards revoked by a rebalance that is not over: kept until the assignment that ends it,
    /// which may give them back (an eager rebalance revokes every shard of every member).
    parked: BTreeMap<i32, Shard>,
    /// Shards assigned here and not restored yet (restores are spread over rounds so the group
    /// is served between them); their partitions are not polled meanwhile.
    pending_restores: BTreeSet<i32>,
    /// The restore in progress (taken from `pending_restores`) and when it began: read in
    /// steps, a round's slice at a time.
    restoring: Option<(RestoreJob, Instant)>,
    /// The restore in progress when a rebalance revoked its shard, kept (like `parked` shards)
    /// until the assignment that ends the rebalance says whether it goes on.
    parked_restore: Option<(RestoreJob, Instant)>,
    /// Records of shards waiting for their restore that came through the main queue (a
    /// partition whose queue could not be split), applied after it, in arrival order.
    held_back: Vec<(usize, Input)>,
    /// The group has assigned partitions at least once (readiness needs it).
    joined: bool,
    /// Records fetched whose schema the registry could not give yet, per (lane, partition),
    /// in offset order: that partition's queue is not polled until they decode.
    stalled: BTreeMap<(usize, i32), VecDeque<Input>>,
    /// When stalled records are tried again.
    retry_stalled_at: Instant,
    /// When quiet tenants' clocks are next looked at.
    clock_check_at: Instant,
    /// How far past its latest event a quiet tenant's clock can still fire a timer.
    horizons: TimerHorizons,
    /// Failed registry lookups already counted in the metrics.
    counted_lookup_failures: u64,
    lanes: HashMap<String, usize>,
    /// Topic and produced-records counter per [`Dest`].
    destinations: Vec<(String, IntCounter)>,
    in_transaction: bool,
    /// The transactional call the client left in progress (it gave a retriable error past its
    /// retry budget): nothing else can be called until it is called again and ends.
    owed: Cell<Option<TxnCall>>,
    /// Failed deliveries already answered (by a rewind): `at_least_once` commits offsets only
    /// while the producer's count of failures still equals it.
    settled_failures: u64,
    report: RunReport,
}

/// Main-queue events served per round at most.
const MAIN_QUEUE_BUDGET: usize = 10_000;

/// The least a restore reads in one step when the round's slice is spent (a slice of 0 still
/// restores, a step per round).
const MIN_RESTORE_STEP: Duration = Duration::from_millis(20);

/// Records a lane of a shard's merge holds at most (give or take one poll's worth): past it
/// the partition is paused and not polled.
const LANE_HIGH: usize = 50_000;

/// Bytes (records and their decodings) a lane of a shard's merge holds at most, likewise: with
/// large records the count alone would let a lane that waits for a lagging sibling (or for
/// the schema registry) hold gigabytes.
const LANE_BYTES_HIGH: usize = 16 << 20;

/// Tries at producing an aborted batch again from its kept records before rewinding: the try
/// after a produce that failed for good is refused too (its sequence numbers skipped some; the
/// abort starts a new epoch), the next goes through.
const RESENDS: u32 = 3;

/// How long to wait before processing a batch again after `aborts` transactions failed in a
/// row: not after the first, then 250 ms doubling up to 30 s.
fn abort_backoff(aborts: u32) -> Duration {
    match aborts {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(250u64.saturating_mul(1 << (n - 2).min(7))).min(Duration::from_secs(30)),
    }
}

/// Where a rewind seeks a partition: its committed offset; without one, the first offset
/// fetched since it was assigned (where `auto.offset.reset` had put it: `latest` must not
/// turn into the whole history); `None` (no seek) when nothing of it was fetched.
fn rewind_to(committed: Option<i64>, first_fetched: Option<i64>) -> Option<Offset> {
    committed.or(first_fetched).map(Offset::Offset)
}

/// Whether lane `lane` of `merge` holds all it may.
fn lane_full<T: crate::merge::Timed>(merge: &crate::merge::ShardMerge<T>, lane: usize) -> bool {
    merge.queued(lane) >= LANE_HIGH || merge.queued_bytes(lane) >= LANE_BYTES_HIGH
}

/// Whether lane `lane` of `merge` has drained far enough to take records again.
fn lane_drained<T: crate::merge::Timed>(merge: &crate::merge::ShardMerge<T>, lane: usize) -> bool {
    merge.queued(lane) < LANE_HIGH / 10 && merge.queued_bytes(lane) < LANE_BYTES_HIGH / 10
}

/// How often records waiting for the schema registry are tried again (a try that still finds
/// no answer costs a map lookup: the registry is asked in the background).
const STALLED_RETRY: Duration = Duration::from_millis(25);

/// How often quiet tenants' clocks are looked at (`idle_clock_ms`).
const CLOCK_CHECK: Duration = Duration::from_millis(50);

/// How often a commit looks whether the producer has delivered everything.
const DRAIN_STEP: Duration = Duration::from_micros(250);

/// Wall-clock time, ms since the epoch (record timestamps are on this clock).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Shard `p`'s input partitions are committed at `position` (merge-lane order): their lag
/// counts from there.
fn note_committed(context: &GroupContext, config: &KafkaConfig, p: i32, position: &[Option<i64>; 4]) {
    for ((_, topic), at) in config.topics.inputs().into_iter().zip(position) {
        if let Some(o) = at {
            context.note_committed(topic, p, *o);
        }
    }
}

/// The restored tenants' event-time clocks, each with how long ago (wall clock) it was last
/// set, from its changelog record's timestamp (0 when unknown or from a clock ahead of ours).
fn restored_clocks(pipeline: &Pipeline, set_at: &HashMap<Tenant, i64>) -> Vec<RestoredClock> {
    let now = now_ms();
    pipeline
        .clocks()
        .into_iter()
        .map(|(tenant, clock, latest_event)| {
            let quiet_ms = set_at.get(&tenant).map_or(0, |at| now.saturating_sub(*at).max(0));
            RestoredClock { tenant, clock, latest_event, quiet_ms }
        })
        .collect()
}

impl Service {
    /// [`Service::new`] with the default engine settings and the bundled schemas (no
    /// registry), e.g. over the embedded cluster in tests and benches.
    pub fn bundled(config: KafkaConfig, metrics: Arc<ServiceMetrics>) -> Result<Self, ServiceError> {
        let ids = crate::registry::BundledIds::default();
        let (inputs, outputs) = (InputSchemas::new(None, ids.clone()), OutputSchemas::bundled(&ids));
        Service::new(config, EngineConfig::default(), inputs, outputs, metrics, Arc::new(Health::default()))
    }

    /// Connects (without joining the group yet): checks the topics, resolves output schema ids.
    pub fn new(
        config: KafkaConfig,
        engine: EngineConfig,
        inputs: InputSchemas,
        outputs: OutputSchemas,
        metrics: Arc<ServiceMetrics>,
        health: Arc<Health>,
    ) -> Result<Self, ServiceError> {
        engine.validate()?;
        health.set_stall_limit(config.liveness_timeout());
        let horizons = TimerHorizons::new(&engine.moments).map_err(omnistitch_engine::ConfigError::from)?;
        let consumer: Arc<BaseConsumer<GroupContext>> =
            Arc::new(config.consumer().create_with_context(GroupContext::new(metrics.clone()))?);
        consumer.context().attach(&consumer);
        let producer: Arc<ThreadedProducer<DeliveryContext>> =
            Arc::new(config.producer().create_with_context(DeliveryContext::beating(
                health.clone(),
                metrics.output_records_too_large.clone(),
            ))?);
        let lanes = config.topics.inputs().iter().enumerate().map(|(i, (_, t))| (t.to_string(), i)).collect();
        let t = &config.topics;
        let destinations = [&t.timeline, &t.profiles, &t.merges, &t.interventions, &t.deadletter, &t.changelog]
            .map(|name| (name.clone(), metrics.produced.with_label_values(&[name.as_str()])))
            .to_vec();
        for (topic, _) in &destinations {
            // At zero from the start, so that a first refusal shows as an increase.
            metrics.output_records_too_large.with_label_values(&[topic.as_str()]);
        }
        let worker = OrderedWorker::start(OrderedOutputs {
            producer: producer.clone(),
            destinations: destinations.clone(),
            schemas: outputs,
            metrics: metrics.clone(),
        })
        .map_err(|e| ServiceError::Worker(format!("starting its thread: {e}")))?;
        let service = Service {
            worker,
            outputs,
            changelog: ChangelogReader::new(&config, health.clone())?,
            config,
            engine,
            metrics,
            health,
            consumer,
            producer,
            inputs,
            queues: BTreeMap::new(),
            first_fetched: BTreeMap::new(),
            at_end: BTreeSet::new(),
            aborts_in_a_row: 0,
            assigned: BTreeSet::new(),
            shards: BTreeMap::new(),
            parked: BTreeMap::new(),
            pending_restores: BTreeSet::new(),
            restoring: None,
            parked_restore: None,
            held_back: Vec::new(),
            joined: false,
            stalled: BTreeMap::new(),
            retry_stalled_at: Instant::now(),
            clock_check_at: Instant::now(),
            horizons,
            counted_lookup_failures: 0,
            lanes,
            destinations,
            in_transaction: false,
            owed: Cell::new(None),
            settled_failures: 0,
            report: RunReport::default(),
        };
        service.check_topics()?;
        Ok(service)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// Every topic exists; the inputs and the changelog have the same partition count.
    fn check_topics(&self) -> Result<(), ServiceError> {
        let md = self.consumer.fetch_metadata(None, self.timeout())?;
        let count = |name: &str| {
            md.topics().iter().find(|t| t.name() == name && t.error().is_none()).map(|t| t.partitions().len())
        };
        let t = &self.config.topics;
        let mut missing = Vec::new();
        let mut inputs = BTreeMap::new();
        for (_, name) in t.inputs() {
            match count(name) {
                Some(n) if n > 0 => {
                    inputs.insert(name, n);
                }
                _ => missing.push(name.to_string()),
            }
        }
        for name in t.outputs() {
            if count(name).is_none_or(|n| n == 0) {
                missing.push(name.to_string());
            }
        }
        let changelog = count(&t.changelog).unwrap_or(0);
        if changelog == 0 {
            missing.push(t.changelog.clone());
        }
        if !missing.is_empty() {
            return Err(ServiceError::Topics(format!(
                "missing topics {missing:?}: create them (see README, topic contract) or set kafka.create_topics = true"
            )));
        }
        let counts: BTreeSet<usize> = inputs.values().copied().collect();
        if counts.len() != 1 {
            return Err(ServiceError::Topics(format!(
                "input topics must have the same partition count (inputs are co-partitioned by tenant): {inputs:?}"
            )));
        }
        let n = *counts.iter().next().expect("one count");
        if changelog != n {
            return Err(ServiceError::Topics(format!(
                "changelog {} has {changelog} partitions, inputs have {n}: they must match",
                t.changelog
            )));
        }
        Ok(())
    }

    /// Runs until `stop` is set, then finishes the round, commits and leaves the group. A stop
    /// while the cluster cannot be reached (retrying a commit, a restore, a rewind) leaves the
    /// batch in flight uncommitted and stops too ([`RunReport::left_uncommitted`]).
    pub fn run(mut self, stop: Arc<AtomicBool>) -> Result<RunReport, ServiceError> {
        self.health.watch_stop(stop.clone());
        let stop = &*stop;
        if self.config.mode == Mode::ExactlyOnce {
            match self.producer.init_transactions(self.timeout()) {
                Ok(()) => {}
                // Stopped while the cluster could not be reached: nothing was consumed yet.
                Err(e) if stop.load(Ordering::Acquire) => {
                    tracing::info!(error = %e, "stopped before consuming anything");
                    return Ok(self.report.clone());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let topics: Vec<&str> = self.config.topics.inputs().iter().map(|(_, t)| *t).collect();
        self.consumer.subscribe(&topics)?;
        tracing::info!(mode = self.config.mode.as_str(), group = %self.config.group_id, "consuming");
        let mut last_gauges = Instant::now();
        let result = loop {
            self.health.beat();
            if stop.load(Ordering::Acquire) {
                break Ok(());
            }
            match self.round(stop) {
                Ok(()) => {}
                Err(ServiceError::Stopped) => {
                    let uncommitted = self.has_uncommitted();
                    if uncommitted {
                        tracing::warn!(
                            "stopped while the cluster could not be reached: the batch in flight is left \
                             uncommitted and will be processed again by the next owner"
                        );
                    }
                    self.report.left_uncommitted = uncommitted;
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
            if last_gauges.elapsed() >= Duration::from_secs(2) {
                self.update_gauges();
                last_gauges = Instant::now();
            }
        };
        self.health.set_stopping();
        // Not ready from here on, on the dashboard as on `/readyz`.
        self.metrics.ready.set(0);
        self.update_gauges();
        self.shutdown();
        result.map(|()| self.report.clone())
    }

    /// Whether there is work since the last commit: a transaction open (or failed), or records
    /// applied (the condition a round commits on).
    fn has_uncommitted(&self) -> bool {
        self.in_transaction || self.shards.values().any(|s| s.next.iter().any(Option::is_some))
    }

    fn shutdown(&mut self) {
        self.worker.stop();
        let unresolved = self.in_transaction || self.report.left_uncommitted || self.owed.get().is_some();
        if self.owed.get() == Some(TxnCall::Commit) {
            // Refused while the commit is in progress; the next producer of this
            // transactional id settles it.
            tracing::warn!("leaving with the commit's outcome open");
        } else if unresolved && self.config.mode == Mode::ExactlyOnce {
            // Left open by an error: aborted now, or read_committed readers of the outputs and
            // the changelog (a restore elsewhere) would wait for it to time out.
            if let Err(e) = self.producer.abort_transaction(self.timeout()) {
                tracing::warn!(error = %e, "aborting the transaction left open at shutdown");
            }
            self.in_transaction = false;
        }
        self.queues.clear();
        for e in self.consumer.context().take_events() {
            drop(e);
        }
        self.consumer.unsubscribe();
        // Outputs of a batch left uncommitted are worth nothing (aborted, or their offsets not
        // committed): no flush to wait for.
        if !self.report.left_uncommitted {
            if let Err(e) = self.producer.flush(self.timeout()) {
                tracing::warn!(error = %e, "flushing the producer at shutdown");
            }
        }
    }

    /// One round: group events, restores, one commit interval of records, the commit; a batch
    /// whose outputs the producer refused is aborted and rewound.
    fn round(&mut self, stop: &AtomicBool) -> Result<(), ServiceError> {
        match self.round_or_refused(stop) {
            Err(ServiceError::Produce(e)) => self.abort_batch(&e),
            other => other,
        }
    }

    fn round_or_refused(&mut self, stop: &AtomicBool) -> Result<(), ServiceError> {
        // Before a rebalance's revocation or the round's first record calls the client.
        self.settle_owed_abort()?;
        self.poll_group(stop)?;
        let started = Instant::now();
        let interval = Duration::from_millis(self.config.commit_interval_ms);
        let max_wait = Duration::from_millis(self.config.merge_max_wait_ms);
        let mut processed = 0usize;
        loop {
            self.health.beat();
            // A round lasts one commit interval, or less when a record that arrived recently
            // would otherwise wait longer than that for its commit (but at least a tenth of it,
            // bounding the commit rate).
            let deadline = match self.shards.values().filter_map(|s| s.commit_by).min() {
                Some(by) => (started + interval).min(by).max(started + interval / 10),
                None => started + interval,
            };
            self.retry_stalled();
            let received = self.poll_partitions();
            processed += self.apply_ready(max_wait, self.config.max_batch - processed, deadline)?;
            self.advance_quiet_clocks()?;
            if processed >= self.config.max_batch || Instant::now() >= deadline || stop.load(Ordering::Acquire) {
                break;
            }
            if received == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.pause_full_lanes()?;
        if self.has_uncommitted() {
            self.commit()?;
        }
        Ok(())
    }

    /// Serves the main queue: rebalances, errors; then restores shards that became complete.
    fn poll_group(&mut self, stop: &AtomicBool) -> Result<(), ServiceError> {
        // Serve everything queued (a rebalance may wait behind logs and statistics), bounded so
        // a flood of client logs cannot starve the records.
        for _ in 0..MAIN_QUEUE_BUDGET {
            let served = self.consumer.context().served();
            let polled = self
                .consumer
                .poll(Duration::ZERO)
                .map(|r| r.map(|m| (self.lanes.get(m.topic()).copied(), Input::of(&m))));
            match polled {
                Some(Ok((Some(lane), m))) => self.enqueue(lane, m),
                Some(Ok((None, _))) => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    self.metrics.consumer_error(&e);
                    // A consumer in a fatal state (a static member another instance took the
                    // place of) cannot go on: polled again, it would only report it again.
                    if let Some((code, reason)) = self.consumer.client().fatal_error() {
                        tracing::error!(?code, %reason, "the consumer failed for good");
                        return Err(ServiceError::Kafka(KafkaError::MessageConsumptionFatal(code)));
                    }
                }
                None if self.consumer.context().served() == served => break,
                None => {}
            }
        }
        let events = self.consumer.context().take_events();
        if events.is_empty() {
            return self.restore_pending(stop);
        }
        let before: BTreeSet<i32> = self.shards.keys().copied().collect();
        let mut touched = BTreeSet::new();
        let mut assignment = false;
        for e in events {
            match e {
                RebalanceEvent::Revoked(parts) => {
                    // Not ready again before the assignment that ends the rebalance.
                    self.joined = false;
                    for (topic, p) in parts {
                        if let Some(&lane) = self.lanes.get(&topic) {
                            self.assigned.remove(&(lane, p));
                            self.queues.remove(&(lane, p));
                            self.first_fetched.remove(&(lane, p));
                            self.at_end.remove(&(lane, p));
                            touched.insert(p);
                        }
                    }
                }
                RebalanceEvent::Assigned(parts) => {
                    assignment = true;
                    self.joined = true;
                    for (topic, p, queue) in parts {
                        let Some(&lane) = self.lanes.get(&topic) else { continue };
                        self.assigned.insert((lane, p));
                        self.first_fetched.remove(&(lane, p));
                        self.at_end.remove(&(lane, p));
                        touched.insert(p);
                        match queue {
                            Some(q) => {
                                self.queues.insert((lane, p), q);
                            }
                            // Stopped, for a restart: going on would lose the records fetched
                            // through the group's queue when the batch is rewound.
                            None => return Err(ServiceError::Assignment { topic, partition: p }),
                        }
                    }
                }
                RebalanceEvent::Failed(reason) => tracing::warn!(reason, "rebalance error"),
            }
        }
        // Records fetched before a revocation will be fetched again from the committed offsets.
        for p in &touched {
            if let Some(s) = self.shards.get_mut(p) {
                s.merge.clear();
            }
        }
        self.stalled.retain(|(_, p), _| !touched.contains(p));
        self.held_back.retain(|(_, m)| !touched.contains(&m.partition));
        let complete: BTreeSet<i32> =
            touched.iter().copied().filter(|&p| (0..4).all(|lane| self.assigned.contains(&(lane, p)))).collect();
        for p in &touched {
            if !complete.contains(p) {
                self.pending_restores.remove(p);
            }
        }
        for p in &before {
            if touched.contains(p) && !complete.contains(p) {
                // A round starts committed: the state is the last commit's, kept aside in case
                // the assignment that ends the rebalance gives the shard back.
                if let Some(shard) = self.shards.remove(p) {
                    self.worker.park(*p);
                    self.parked.insert(*p, shard);
                }
                tracing::info!(shard = p, "shard revoked");
            }
        }
        if assignment {
            // The assignment is known: parked shards left out of it went to another member.
            let gone: Vec<i32> = self.parked.keys().copied().filter(|p| !complete.contains(p)).collect();
            for p in gone {
                self.forget(p);
            }
            // A partition no longer assigned loses its lag series, whatever became of its shard
            // (a restore pending or running when it was revoked held none).
            let (lanes, assigned) = (&self.lanes, &self.assigned);
            self.consumer
                .context()
                .forget_unheld(|topic, p| lanes.get(topic).is_some_and(|&lane| assigned.contains(&(lane, p))));
        }
        for p in &touched {
            let partial = !complete.contains(p) && (0..4).any(|lane| self.assigned.contains(&(lane, *p)));
            if partial {
                tracing::error!(shard = p, "only some input partitions of this index are assigned: check that inputs are co-partitioned and the range assignor is in use");
            }
        }
        self.set_ready(false);
        let resumed = self.settle_restore(&touched, &complete, assignment);
        // The committed offsets of every shard that may be kept, in one request: asked shard
        // by shard, a slow coordinator kept the loop from the group for a request timeout or
        // two per shard.
        let candidates: Vec<i32> = complete
            .iter()
            .copied()
            .filter(|p| Some(*p) != resumed && (self.shards.contains_key(p) || self.parked.contains_key(p)))
            .collect();
        let committed =
            if candidates.is_empty() { Ok(HashMap::new()) } else { self.committed_after_rebalance(&candidates) };
        if let Err(e) = &committed {
            tracing::warn!(error = %e, "reading committed offsets after the rebalance; restoring the shards held");
        }
        for p in complete {
            if Some(p) != resumed && !self.keep(p, committed.as_ref().ok().and_then(|c| c.get(&p))) {
                self.pending_restores.insert(p);
            }
        }
        self.metrics.shards.set(self.shards.len() as i64);
        self.restore_pending(stop)
    }

    /// Restores assigned shards for up to `restore_slice_ms` (at least one step of one), leaving
    /// the rest, and the rest of a long one, for the next round: the group is polled between
    /// slices, so restores however long do not make the instance miss `max.poll.interval.ms`
    /// and leave the group. Ready once none is left.
    fn restore_pending(&mut self, stop: &AtomicBool) -> Result<(), ServiceError> {
        let started = Instant::now();
        let slice = Duration::from_millis(self.config.restore_slice_ms);
        // No restore begins while one waits for a rebalance to end.
        while self.parked_restore.is_none() {
            if self.restoring.is_none() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let Some(p) = self.pending_restores.pop_first() else { break };
                self.begin_restore(p)?;
            }
            self.step_restore(slice.saturating_sub(started.elapsed()).max(MIN_RESTORE_STEP))?;
            if started.elapsed() >= slice || stop.load(Ordering::Acquire) {
                break;
            }
        }
        if let Some((job, _)) = &self.restoring {
            tracing::info!(shard = job.shard(), steps = job.steps(), "shard restore continues next round");
        }
        if !self.pending_restores.is_empty() {
            tracing::info!(left = self.pending_restores.len(), "shard restores continue next round");
        }
        // Ready once the group has assigned something and every assigned shard is restored.
        let restoring = self.restoring.is_some() || self.parked_restore.is_some();
        self.set_ready(self.joined && self.pending_restores.is_empty() && !restoring);
        Ok(())
    }

    /// After a rebalance event that touched the shard being restored: its restore is parked
    /// until the assignment that ends the rebalance, and then goes on if that gives the shard
    /// back and nobody committed it meanwhile (its committed offsets are still the ones it
    /// restores up to); otherwise it is dropped. Returns the shard if its restore goes on.
    fn settle_restore(&mut self, touched: &BTreeSet<i32>, complete: &BTreeSet<i32>, assignment: bool) -> Option<i32> {
        if self.restoring.as_ref().is_some_and(|(job, _)| touched.contains(&job.shard())) {
            self.parked_restore = self.restoring.take();
        }
        if !assignment {
            return None;
        }
        let (job, started) = self.parked_restore.take()?;
        let p = job.shard();
        if !complete.contains(&p) {
            return None;
        }
        if self.config.idle_clock_ms > 0 {
            // Its read range could miss a clock move another member committed meanwhile.
            tracing::info!(shard = p, "shard restore dropped: quiet tenants' clocks may have moved elsewhere since");
            return None;
        }
        if !self.committed_after_rebalance(&[p]).is_ok_and(|c| c.get(&p) == Some(&job.committed())) {
            tracing::info!(
                shard = p,
                "shard restore dropped: the shard was committed elsewhere since, or its offsets unknown"
            );
            return None;
        }
        tracing::info!(shard = p, "shard restore goes on through the rebalance: nobody committed it since");
        self.restoring = Some((job, started));
        Some(p)
    }

    /// Whether records of shard `p` wait for its restore.
    fn awaits_restore(&self, p: i32) -> bool {
        self.pending_restores.contains(&p) || self.restoring.as_ref().is_some_and(|(job, _)| job.shard() == p)
    }

    /// Shard `p`'s committed offsets right after a rebalance, asked twice at most (a
    /// coordinator may be busy then): the loop must not stay away from the group for long,
    /// and whoever asks has a safe answer to a failure (restore from scratch).
    fn committed_after_rebalance(&self, shards: &[i32]) -> Result<HashMap<i32, [Option<i64>; 4]>, KafkaError> {
        let committed = committed_offsets_of(&self.consumer, &self.config, shards, self.timeout());
        if committed.is_ok() || self.health.stop_requested() {
            return committed;
        }
        self.health.beat();
        std::thread::sleep(Duration::from_millis(500));
        committed_offsets_of(&self.consumer, &self.config, shards, self.timeout())
    }

    /// Keeps the state shard `p` had here before the rebalance (held through it, or parked) if it
    /// is still current: the group's committed offsets are where its last commit left them (a
    /// member that had the shard in between and committed moved them; `committed`, `None` when
    /// they could not be read). Otherwise drops it, for a restore.
    fn keep(&mut self, p: i32, committed: Option<&[Option<i64>; 4]>) -> bool {
        self.health.beat();
        let position = match (self.shards.get(&p), self.parked.get(&p)) {
            (Some(s), _) | (None, Some(s)) => s.position,
            (None, None) => return false,
        };
        // A member that held the shard meanwhile may have moved quiet tenants' clocks (a
        // changelog record and interventions, in a transaction that moves no input offset):
        // the offsets cannot tell, so the shard is restored.
        let clocks_may_have_moved = self.config.idle_clock_ms > 0;
        if committed.is_some_and(|c| *c == position) && !clocks_may_have_moved {
            if let Some(shard) = self.parked.remove(&p) {
                self.worker.resume(p);
                self.shards.insert(p, shard);
            }
            self.metrics.shards_kept.inc();
            self.report.kept += 1;
            tracing::info!(shard = p, "shard kept through the rebalance: nobody committed it since");
            return true;
        }
        if let Some(c) = committed {
            tracing::info!(shard = p, "shard committed elsewhere since it was here; restoring it");
            // Its lag, from the other member's commit, while it is restored.
            note_committed(self.consumer.context(), &self.config, p, c);
        }
        self.drop_state(p);
        false
    }

    /// Drops shard `p`'s state on both threads, active or parked (it stays this instance's,
    /// to be restored: its partitions' lag is still reported).
    fn drop_state(&mut self, p: i32) {
        self.shards.remove(&p);
        self.parked.remove(&p);
        self.worker.remove(p);
        self.metrics.shards.set(self.shards.len() as i64);
    }

    /// Drops shard `p`'s state on both threads, active or parked, and its partitions' lag (it
    /// went to another member).
    fn forget(&mut self, p: i32) {
        self.drop_state(p);
        for (_, topic) in self.config.topics.inputs() {
            self.consumer.context().forget_partition(topic, p);
        }
    }

    /// Readiness, for `/readyz` and the `omnistitch_ready` gauge alike.
    fn set_ready(&self, ready: bool) {
        self.health.set_ready(ready);
        self.metrics.ready.set(i64::from(ready));
    }

    /// Starts restoring shard `p` from the changelog, up to the group's committed offsets.
    fn begin_restore(&mut self, p: i32) -> Result<(), ServiceError> {
        let job = self.retrying("restore_start", |s| {
            let committed = committed_offsets(&s.consumer, &s.config, p, s.timeout())?;
            Ok(s.changelog.begin(&s.config, p, committed, Pipeline::new(&s.engine)?)?)
        })?;
        // Its partitions' lag is reported from the start of the restore, when lag builds.
        note_committed(self.consumer.context(), &self.config, p, &job.committed());
        self.restoring = Some((job, Instant::now()));
        Ok(())
    }

    /// Reads on in the restore in progress for about `budget`; once it is done, the shard is
    /// installed and takes the records that waited for it.
    fn step_restore(&mut self, budget: Duration) -> Result<(), ServiceError> {
        let Some((mut job, started)) = self.restoring.take() else { return Ok(()) };
        let done =
            self.retrying("restore_read", |s| match s.changelog.step(&s.config, &mut job, budget, &s.engine) {
                Ok(done) => Ok(done),
                // Silent for ten request timeouts already: a step again would fail at once.
                Err(e) if e == crate::restore::silence() => Err(ServiceError::ChangelogSilent(job.shard())),
                Err(e) => Err(e.into()),
            })?;
        self.report.restore_steps += 1;
        if !done {
            self.restoring = Some((job, started));
            return Ok(());
        }
        let p = job.shard();
        self.install_restored(job, started);
        self.metrics.shards.set(self.shards.len() as i64);
        // Records of the shard that came through the main queue while it waited.
        let (early, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.held_back).into_iter().partition(|(_, m)| m.partition == p);
        self.held_back = rest;
        for (lane, m) in early {
            self.enqueue(lane, m);
        }
        Ok(())
    }

    /// Installs the shard a finished restore built, counting and logging what it found.
    fn install_restored(&mut self, job: RestoreJob, started: Instant) {
        let (p, committed) = (job.shard(), job.committed());
        let (r, pipeline, tenants) = job.finish();
        // Its lag counts from the group's committed offsets until this instance commits.
        note_committed(self.consumer.context(), &self.config, p, &committed);
        self.metrics.restored_events.inc_by(r.applied);
        self.metrics.restores_from_snapshot.inc_by(u64::from(r.snapshot_offset.is_some()));
        self.metrics.snapshots_passed_over.inc_by(r.snapshots_passed_over);
        self.metrics.restored_clock_advances.inc_by(r.clocks);
        if r.without_commit > 0 {
            self.metrics.restore_without_commit.inc_by(r.without_commit);
            tracing::warn!(
                shard = p,
                entries = r.without_commit,
                "changelog entries of input partitions with no committed offset were left out: \
                 a first batch that never committed, or expired group offsets (the shard then \
                 starts without that history)"
            );
        }
        if r.unreadable > 0 {
            self.metrics.unreadable_restored.inc_by(r.unreadable);
            tracing::error!(
                shard = p,
                unreadable = r.unreadable,
                "changelog entries could not be read or applied (another version's format?): \
                 the restored state misses their events"
            );
        }
        if r.behind_open() {
            self.metrics.restores_behind_open_transaction.inc();
        }
        if r.truncated() {
            self.metrics.truncated_restores.inc();
            tracing::error!(
                shard = p,
                first_offset = r.first_offset,
                history_deleted = r.history_deleted,
                best_effort_snapshot = r.best_effort_snapshot,
                "the changelog lost records this restore needed (retention or a size limit on the \
                 topic, or records a snapshot made obsolete, deleted, and that snapshot not read \
                 back): the restored state misses their events",
            );
        }
        self.metrics.restore_seconds.observe(started.elapsed().as_secs_f64());
        self.report.restores += 1;
        tracing::info!(
            shard = p,
            applied = r.applied,
            snapshot_offset = r.snapshot_offset,
            in_snapshot = r.in_snapshot,
            uncommitted = r.uncommitted,
            superseded = r.superseded,
            clocks = r.clocks,
            unreadable = r.unreadable,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shard restored"
        );
        let clocks =
            if self.config.idle_clock_ms > 0 { restored_clocks(&pipeline, &r.clocks_set_at) } else { Vec::new() };
        let (engine, ordered) = pipeline.into_parts();
        if let Some(ordered) = ordered {
            self.worker.install(p, ordered);
        }
        let mut shard = Shard::new(p, engine, tenants, self.outputs, committed, clocks, &self.horizons);
        shard.restored_changelog(r.applied_bytes, r.snapshot_engine_bytes, r.keys);
        for lane in 0..MERGE_ORDER.len() {
            if self.at_end.contains(&(lane, p)) {
                shard.merge.end_of_partition(lane);
            }
        }
        self.shards.insert(p, shard);
    }

    /// Drains the partition queues; returns how many records arrived.
    fn poll_partitions(&mut self) -> usize {
        let mut received = 0;
        let keys: Vec<(usize, i32)> = self.queues.keys().copied().collect();
        for key in keys {
            // A full lane takes no more until the merge drains it (also while a commit waits,
            // when lanes are not paused): the client's own queue bounds what waits behind.
            if self.shards.get(&key.1).is_some_and(|s| lane_full(&s.merge, key.0)) {
                continue;
            }
            // A partition waiting for the registry keeps the rest of its records where they are;
            // so does one whose shard is still to be restored.
            if self.stalled.contains_key(&key) || !self.shards.contains_key(&key.1) {
                continue;
            }
            for _ in 0..2_000 {
                let Some(queue) = self.queues.get(&key) else { break };
                let polled = queue.poll(Duration::ZERO).map(|r| r.map(|m| Input::of(&m)));
                match polled {
                    None => break,
                    Some(Ok(m)) => {
                        received += 1;
                        self.first_fetched.entry(key).or_insert(m.offset);
                        self.at_end.remove(&key);
                        self.enqueue(key.0, m);
                        if self.stalled.contains_key(&key) {
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        self.at_end.insert(key);
                        if let Some(s) = self.shards.get_mut(&key.1) {
                            s.merge.end_of_partition(key.0);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, lane = key.0, partition = key.1, "fetch error");
                        self.metrics.consumer_error(&e);
                        break;
                    }
                }
            }
        }
        received
    }

    /// Decodes a fetched record into its shard's merge; a record whose schema the registry
    /// cannot give yet stalls its partition (see [`Service::retry_stalled`]).
    fn enqueue(&mut self, lane: usize, m: Input) {
        let key = (lane, m.partition);
        if let Some(waiting) = self.stalled.get_mut(&key) {
            waiting.push_back(m);
            return;
        }
        if !self.shards.contains_key(&m.partition) {
            // A shard not restored yet takes it afterwards; any other will fetch it again.
            if self.awaits_restore(m.partition) {
                self.held_back.push((lane, m));
            }
            return;
        }
        match self.decode(lane, &m) {
            Err(e) if e.is_retriable() => {
                tracing::info!(error = %e, lane, partition = m.partition, "waiting for the schema registry; the partition waits");
                self.hold(key, m);
            }
            decoded => self.push_decoded(lane, m, decoded),
        }
    }

    /// Holds `m`, which waits for the registry, first in its partition's waiting records; its
    /// lane of the merge waits for it.
    fn hold(&mut self, key: (usize, i32), m: Input) {
        if let Some(s) = self.shards.get_mut(&key.1) {
            s.merge.stall(key.0);
        }
        self.stalled.entry(key).or_default().push_front(m);
    }

    fn decode(&self, lane: usize, m: &Input) -> Result<DecodedInput, WireError> {
        match m.payload.as_deref() {
            None => Err(WireError::EmptyRecord),
            Some(v) => self.inputs.decode(MERGE_ORDER[lane], v),
        }
    }

    /// Queues a decoded record in its shard's merge.
    fn push_decoded(&mut self, lane: usize, m: Input, decoded: Result<DecodedInput, WireError>) {
        let Some(shard) = self.shards.get_mut(&m.partition) else { return };
        // A record bound for the dead letters (undecodable, or with a time validation refuses)
        // goes first: at its written time one from year 50,000 would hold its lane back.
        let time = match &decoded {
            Ok(d)
                if accepted_event_time(d.event.event_time())
                    && !self.config.too_far_ahead(d.event.event_time(), m.timestamp) =>
            {
                d.event.event_time()
            }
            _ => i64::MIN,
        };
        shard.merge.push(lane, Pending { msg: m, decoded, time });
    }

    /// Tries the records waiting for the registry again (every [`STALLED_RETRY`]), in offset
    /// order per partition; a partition whose records all decode is polled again. The rest of
    /// the service goes on meanwhile: rounds commit, the group is served, a stop is heard.
    fn retry_stalled(&mut self) {
        let failures = self.inputs.failed_lookups();
        self.metrics.registry_retries.inc_by(failures.saturating_sub(self.counted_lookup_failures));
        self.counted_lookup_failures = failures;
        if self.stalled.is_empty() || Instant::now() < self.retry_stalled_at {
            return;
        }
        self.retry_stalled_at = Instant::now() + STALLED_RETRY;
        let keys: Vec<(usize, i32)> = self.stalled.keys().copied().collect();
        for key in keys {
            loop {
                let Some(m) = self.stalled.get_mut(&key).and_then(VecDeque::pop_front) else {
                    self.stalled.remove(&key);
                    tracing::info!(lane = key.0, partition = key.1, "schema registry answered; the partition goes on");
                    break;
                };
                let decoded = self.decode(key.0, &m);
                if decoded.as_ref().is_err_and(|e| e.is_retriable()) {
                    self.hold(key, m);
                    break;
                }
                self.push_decoded(key.0, m, decoded);
            }
        }
    }

    /// Runs `f` over the shards with what they share (the open transaction included).
    fn with_shards<R>(&mut self, f: impl FnOnce(&mut BTreeMap<i32, Shard>, &Shared<'_>) -> R) -> R {
        let in_transaction = Cell::new(self.in_transaction);
        let shared = Shared {
            config: &self.config,
            metrics: &self.metrics,
            producer: &self.producer,
            worker: &self.worker,
            destinations: &self.destinations,
            in_transaction: &in_transaction,
            horizons: &self.horizons,
            stages: &self.engine,
        };
        let r = f(&mut self.shards, &shared);
        self.in_transaction = in_transaction.get();
        r
    }

    /// Applies the records the merges release, up to `budget` or the round's `deadline`.
    fn apply_ready(&mut self, max_wait: Duration, budget: usize, deadline: Instant) -> Result<usize, ServiceError> {
        let done =
            self.with_shards(|shards, shared| drain_all(shards.values_mut(), shared, max_wait, budget, deadline))?;
        self.report.records += done as u64;
        Ok(done)
    }

    /// Moves on the clocks of quiet tenants (`idle_clock_ms`), looking at most every
    /// [`CLOCK_CHECK`].
    fn advance_quiet_clocks(&mut self) -> Result<(), ServiceError> {
        let now = Instant::now();
        if self.config.idle_clock_ms == 0 || now < self.clock_check_at {
            return Ok(());
        }
        self.clock_check_at = now + CLOCK_CHECK;
        self.with_shards(|shards, shared| {
            shards.values_mut().try_for_each(|s| s.advance_quiet_clocks(shared, now).map(drop))
        })
    }

    /// Writes every shard's changelog batch and changed profiles into the open transaction.
    fn write_batched(&mut self) -> Result<(), ServiceError> {
        self.with_shards(|shards, shared| shards.values_mut().try_for_each(|s| s.write_batched(shared)))
    }

    /// Offsets to commit: the next offset of every lane that moved since the last commit.
    fn offsets(&self) -> Result<TopicPartitionList, KafkaError> {
        self.offsets_of(|s| &s.next)
    }

    /// The committed offsets of every held shard's input partitions that have one.
    fn positions(&self) -> Result<TopicPartitionList, KafkaError> {
        self.offsets_of(|s| &s.position)
    }

    /// The offsets `of` gives each held shard's lanes, those it has.
    fn offsets_of(&self, of: impl Fn(&Shard) -> &[Option<i64>; 4]) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (&p, s) in &self.shards {
            for (lane, offset) in of(s).iter().enumerate() {
                if let Some(o) = offset {
                    tpl.add_partition_offset(self.config.topics.input(MERGE_ORDER[lane]), p, Offset::Offset(*o))?;
                }
            }
        }
        Ok(tpl)
    }

    /// Commits the batch; on failure rewinds to the last commit.
    fn commit(&mut self) -> Result<(), ServiceError> {
        match self.try_commit()? {
            Ok(()) => Ok(()),
            Err(e) if is_fatal(&e) => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "commit failed; aborting the batch");
                self.count_abort_and_recover(&e)
            }
        }
    }

    /// Writes the batch's last records and commits it: the inner error is the commit's (its
    /// transaction aborted, or no offsets committed), the outer one what came before.
    fn try_commit(&mut self) -> Result<Result<(), KafkaError>, ServiceError> {
        self.write_batched()?;
        // Every output of the batch is with the producer before it commits or drains.
        let waited = Instant::now();
        self.await_ordered()?;
        self.metrics.ordered_wait_seconds.observe(waited.elapsed().as_secs_f64());
        self.health.beat();
        let result = match self.config.mode {
            Mode::ExactlyOnce => self.commit_transaction(),
            Mode::AtLeastOnce => self.commit_acknowledged(),
        };
        self.in_transaction = false;
        match result {
            // Left in progress: it may still land, so the batch can be neither produced again
            // nor rewound (whichever path committed it, a round or a resend).
            Err(e) if self.owed.get() == Some(TxnCall::Commit) => {
                if self.health.stop_requested() {
                    tracing::warn!(error = %e, "stopped while the commit was not answered: its outcome is open");
                    return Err(ServiceError::Stopped);
                }
                tracing::error!(error = %e, "the commit was not answered: its outcome is open, a restart settles it");
                Err(ServiceError::CommitInDoubt(e))
            }
            Ok(()) => {
                let now = now_ms();
                for (&p, s) in self.shards.iter_mut() {
                    for &ts in &s.latencies {
                        self.metrics.latency.observe(now.saturating_sub(ts).max(0) as f64 / 1000.0);
                    }
                    self.metrics.latency_exact.record(s.latencies.iter().map(|&ts| now.saturating_sub(ts)));
                    s.committed();
                    note_committed(self.consumer.context(), &self.config, p, &s.position);
                }
                self.worker.committed();
                self.metrics.transaction(true);
                self.report.commits += 1;
                self.aborts_in_a_row = 0;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn commit_transaction(&mut self) -> Result<(), KafkaError> {
        let mut tpl = self.offsets()?;
        let moved = tpl.count() > 0;
        if !moved {
            // A transaction of clock moves alone still sends the offsets (where they are): that
            // is what fences a member the group has dropped (its generation is stale), which
            // would otherwise commit clock moves on shards another member now holds.
            tpl = self.positions()?;
        }
        let result = self.send_offsets_and_commit(&tpl);
        if result.is_ok() && self.config.mirror_offsets && moved {
            // The transaction is committed; a mirror that fails (e.g. a rebalance began) only
            // means the next owner re-emits this batch as exact copies.
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                self.metrics.offset_mirror_failures.inc();
                tracing::warn!(error = %e, "mirroring committed offsets through the consumer");
            }
        }
        // A commit left in progress may still land: an abort would be refused (the client
        // takes no other call until the commit ends).
        if result.is_err() && self.owed.get().is_none() {
            self.health.beat();
            if let Err(e) = self.abort_open_transaction() {
                tracing::warn!(error = %e, "aborting the transaction");
            }
        }
        drop(tpl);
        result
    }

    /// Repeats a transaction-ending call while the client says it may be resumed (a timeout
    /// leaves the call in progress, and every other transactional call would conflict with
    /// it), for up to ten request timeouts. `what` is one of [`crate::metrics::RETRIED_CALLS`].
    /// A call given up on while it may still be resumed is left owed ([`Self::owed`]).
    fn resuming(&self, what: TxnCall, call: impl Fn() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
        let limit = Instant::now() + self.timeout() * 10;
        loop {
            self.health.beat();
            let r = call();
            let resumable =
                matches!(&r, Err(KafkaError::Transaction(e)) if e.is_retriable() && !e.txn_requires_abort());
            if let (true, Err(e)) = (resumable && Instant::now() < limit && !self.health.stop_requested(), &r) {
                tracing::warn!(error = %e, what = what.name(), "transaction call may be resumed; calling again");
                self.metrics.cluster_retries.with_label_values(&[what.name()]).inc();
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            self.owed.set(resumable.then_some(what));
            return r;
        }
    }

    /// Aborts the open transaction (resumed while the client allows it), or finishes the abort
    /// left in progress.
    fn abort_open_transaction(&self) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        self.resuming(TxnCall::Abort, || producer.abort_transaction(self.timeout()))
    }

    /// Finishes an abort a retry budget gave up on (the client refuses every other
    /// transactional call until then), before the next transaction begins.
    fn settle_owed_abort(&mut self) -> Result<(), ServiceError> {
        if self.owed.get() != Some(TxnCall::Abort) {
            return Ok(());
        }
        tracing::info!("finishing the abort left in progress");
        match self.abort_open_transaction() {
            Ok(()) => Ok(()),
            Err(e) if is_fatal(&e) => Err(e.into()),
            Err(_) if self.health.stop_requested() => Err(ServiceError::Stopped),
            // Not a failed try at the batch, to be tried again: the run ends.
            Err(e) => Err(ServiceError::AbortUnanswered(e)),
        }
    }

    /// The transaction's last steps: the input offsets into it, the outputs drained, the commit.
    fn send_offsets_and_commit(&mut self, tpl: &TopicPartitionList) -> Result<(), KafkaError> {
        if tpl.count() > 0 {
            let meta = self.consumer.group_metadata().ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
            self.producer.send_offsets_to_transaction(tpl, &meta, self.timeout())?;
        }
        // The client's commit flushes first, sleeping in 100 ms steps while anything is in
        // flight; draining here first makes its flush a no-op.
        self.drain_producer()?;
        let producer = self.producer.clone();
        self.resuming(TxnCall::Commit, || producer.commit_transaction(self.timeout()))
    }

    /// Waits until every output is acknowledged (or failed), looking every [`DRAIN_STEP`] (the
    /// client's own `flush` waits in 100 ms steps, which would bound latency).
    fn drain_producer(&mut self) -> Result<(), KafkaError> {
        self.health.beat();
        let deadline = Instant::now() + self.timeout();
        let producer = self.producer.clone();
        self.wait_busy(|| {
            if producer.in_flight_count() == 0 {
                Some(Ok(()))
            } else if Instant::now() >= deadline {
                Some(Err(KafkaError::Flush(RDKafkaErrorCode::RequestTimedOut)))
            } else {
                None
            }
        })
    }

    /// Waits for `done` to give a result, fetching and decoding the next records meanwhile
    /// (that touches no state a commit holds), else sleeping [`DRAIN_STEP`] (the producer's
    /// thread serves its own events: polling it here spun on its queue lock and the clock,
    /// taking CPU from the client and broker threads).
    fn wait_busy<T>(&mut self, mut done: impl FnMut() -> Option<T>) -> T {
        loop {
            if let Some(r) = done() {
                return r;
            }
            if self.poll_partitions() == 0 {
                std::thread::sleep(DRAIN_STEP);
            }
        }
    }

    /// Commits input offsets once every output sent since the last commit (or rewind) is
    /// acknowledged; any that failed since then, whenever its report came, fails the commit.
    fn commit_acknowledged(&mut self) -> Result<(), KafkaError> {
        self.drain_producer()?;
        let failures = self.producer.context().failures();
        if failures != self.settled_failures {
            self.settled_failures = failures;
            let why = self.producer.context().last_failure().unwrap_or_default();
            tracing::warn!(reason = why, "output delivery failed");
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
        }
        let tpl = self.offsets()?;
        if tpl.count() > 0 {
            self.consumer.commit(&tpl, CommitMode::Sync)?;
        }
        drop(tpl);
        Ok(())
    }

    /// After the producer refused an output: waits for the ordered thread (whose own refusals
    /// have the same cause), aborts the open transaction and rewinds to the last commit.
    fn abort_batch(&mut self, e: &KafkaError) -> Result<(), ServiceError> {
        tracing::warn!(error = %e, "the producer refused an output; aborting the batch");
        self.abort_open_batch()?;
        self.count_abort_and_recover(e)
    }

    /// Ends the failed batch: waits for the ordered thread, aborts the open transaction
    /// (`exactly_once`) or waits for the deliveries in flight (`at_least_once`).
    fn abort_open_batch(&mut self) -> Result<(), ServiceError> {
        if let Err(e) = self.await_ordered() {
            tracing::warn!(error = %e, "the ordered thread's part of the aborted batch");
        }
        // An abort left in progress is finished once, before the next transaction begins
        // (`settle_owed_abort`), not here too.
        if self.in_transaction && self.config.mode == Mode::ExactlyOnce {
            if let Err(e) = self.abort_open_transaction() {
                if is_fatal(&e) {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "aborting the transaction");
            }
        }
        if self.config.mode == Mode::AtLeastOnce {
            // The aborted batch's deliveries still in flight report now: one failing later would
            // otherwise fail the next batch's commit too.
            if let Err(e) = self.drain_producer() {
                tracing::warn!(error = %e, "draining the aborted batch's outputs");
            }
        }
        self.in_transaction = false;
        Ok(())
    }

    /// Waits (busy) until the ordered thread has been through everything handed over.
    fn await_ordered(&mut self) -> Result<(), ServiceError> {
        let caught_up = self.worker.barrier();
        self.wait_busy(|| caught_up.poll())
    }

    /// Runs `attempt` until it succeeds, again after a pause while it fails with a cluster error
    /// that is not fatal (a broker away, a partition without a leader for a moment), for up to
    /// ten request timeouts. `what` is one of [`crate::metrics::RETRIED_CALLS`].
    fn retrying<T>(
        &mut self,
        what: &'static str,
        mut attempt: impl FnMut(&mut Self) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let limit = self.timeout() * 10;
        let started = Instant::now();
        loop {
            self.health.beat();
            match attempt(self) {
                // Stopping: a cluster error is not retried (a fatal one, or any other, still is
                // the run's error).
                Err(ServiceError::Kafka(e)) if !is_fatal(&e) && self.health.stop_requested() => {
                    tracing::info!(error = %e, what, "cluster error while stopping: not retried");
                    return Err(ServiceError::Stopped);
                }
                Err(ServiceError::Kafka(e)) if !is_fatal(&e) && started.elapsed() < limit => {
                    tracing::warn!(error = %e, what, "cluster error; retrying");
                    self.metrics.cluster_retries.with_label_values(&[what]).inc();
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Counts an aborted batch and produces it again: from its kept records, in a new
    /// transaction committed at once, up to [`RESENDS`] times; else (a topic refused a record as
    /// too large, so the records must be cut anew, or every try failed) by rewinding to the
    /// last commit and processing the batch again.
    fn count_abort_and_recover(&mut self, cause: &KafkaError) -> Result<(), ServiceError> {
        let mut tries = 0;
        // In `at_least_once` the records went out, most of them acknowledged: one more copy.
        let most = if self.config.mode == Mode::ExactlyOnce { RESENDS } else { 1 };
        let mut group_moved = has_left_group(cause);
        loop {
            // What failed in the batch is answered, and what its refusals taught of the topics'
            // limits applies to it.
            self.settled_failures = self.producer.context().failures();
            let refused_as_too_large = self.producer.context().limits().settle();
            self.metrics.transaction(false);
            self.report.aborts += 1;
            self.aborts_in_a_row = self.aborts_in_a_row.saturating_add(1);
            // Asked to stop: neither produced again nor rewound; the next owner redoes it.
            if self.health.stop_requested() {
                return Err(ServiceError::Stopped);
            }
            // A group that moved on takes no offsets from this generation: the shards may be
            // another member's by now, which a poll of the group says (without delay).
            if group_moved {
                return self.rewind();
            }
            self.pause_after_aborts();
            if refused_as_too_large || tries == most || !self.all_kept() {
                return self.rewind();
            }
            tries += 1;
            match self.resend_and_commit() {
                Ok(()) => {
                    self.metrics.batches_resent.inc();
                    self.report.resent += 1;
                    return Ok(());
                }
                Err(ServiceError::Kafka(e)) if is_fatal(&e) => return Err(e.into()),
                Err(ServiceError::Kafka(e) | ServiceError::Produce(e)) => {
                    tracing::warn!(error = %e, tries, "producing the aborted batch again failed");
                    group_moved = has_left_group(&e);
                    self.abort_open_batch()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits before the next try when batches keep failing (none after the first).
    fn pause_after_aborts(&mut self) {
        let pause = abort_backoff(self.aborts_in_a_row);
        if pause.is_zero() {
            return;
        }
        tracing::warn!(
            aborts = self.aborts_in_a_row,
            pause_ms = pause.as_millis() as u64,
            "transactions keep failing: waiting before producing the batch again"
        );
        // In steps, beating: waiting out a failing cluster is not a stalled loop.
        let until = Instant::now() + pause;
        while Instant::now() < until && !self.health.stop_requested() {
            self.health.beat();
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// Hands every record of the aborted batch to the producer again, in a new transaction,
    /// and commits it with the batch's offsets. The state that made the records is kept: no
    /// restore.
    fn resend_and_commit(&mut self) -> Result<(), ServiceError> {
        tracing::info!("producing the aborted batch again from its kept records");
        self.settle_owed_abort()?;
        self.with_shards(|shards, shared| {
            shared.begin()?;
            shards.values_mut().try_for_each(|s| s.resend(shared))
        })?;
        let reply = self.worker.resend();
        self.wait_busy(|| reply.poll())?;
        Ok(self.try_commit()??)
    }

    /// Whether every output record since the last commit is kept, on both threads (a batch
    /// past [`crate::shard::KEPT_BYTES`] on one shard keeps none: it is rewound if aborted).
    fn all_kept(&self) -> bool {
        self.shards.values().all(Shard::kept_all) && self.worker.kept_all()
    }

    /// Back to the last commit: the consumer sought to the committed offsets, every shard to be
    /// restored (from the next round on, in slices).
    fn rewind(&mut self) -> Result<(), ServiceError> {
        // Fetched again from the committed offsets.
        self.stalled.clear();
        let held: Vec<i32> = self.shards.keys().copied().collect();
        for p in held {
            // Restored with the others waiting (spread over rounds like an assignment's): its
            // partitions are not polled until then; their lag goes on being reported.
            self.drop_state(p);
            self.pending_restores.insert(p);
            let committed =
                self.retrying("committed_offsets", |s| Ok(committed_offsets(&s.consumer, &s.config, p, s.timeout())?))?;
            note_committed(self.consumer.context(), &self.config, p, &committed);
            // A seek that did not happen would consume on past what the restored state holds:
            // the records in between would be lost, so it is retried.
            for (lane, c) in committed.iter().enumerate() {
                let Some(offset) = rewind_to(*c, self.first_fetched.get(&(lane, p)).copied()) else { continue };
                // Its end is reported again once fetching gets there.
                self.at_end.remove(&(lane, p));
                self.retrying("seek", |s| {
                    let topic = s.config.topics.input(MERGE_ORDER[lane]);
                    Ok(s.consumer.seek(topic, p, offset, s.timeout())?)
                })?;
            }
        }
        // Not ready until the queued restores are done (`restore_pending` turns it back).
        if !self.pending_restores.is_empty() {
            self.set_ready(false);
        }
        Ok(())
    }

    /// Pauses lanes with too much waiting (a lagging sibling lane holds the merge back) and
    /// resumes them once drained.
    fn pause_full_lanes(&mut self) -> Result<(), ServiceError> {
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for (&p, s) in &self.shards {
            for (lane, &channel) in MERGE_ORDER.iter().enumerate() {
                let topic = self.config.topics.input(channel);
                if lane_full(&s.merge, lane) {
                    pause.add_partition(topic, p);
                } else if lane_drained(&s.merge, lane) {
                    resume.add_partition(topic, p);
                }
            }
        }
        if pause.count() > 0 {
            self.consumer.pause(&pause)?;
        }
        if resume.count() > 0 {
            self.consumer.resume(&resume)?;
        }
        Ok(())
    }

    fn update_gauges(&mut self) {
        let (mut profiles, mut identifiers, mut bytes, mut entries) = (0, 0, 0, 0);
        let (mut evicted, mut forgotten, mut waiting) = (0, 0, 0);
        for s in self.shards.values_mut() {
            waiting += s.merge.total_queued_bytes();
            let engine = &s.engine;
            for (_, g) in engine.identity().graphs() {
                profiles += g.profile_count();
                identifiers += g.identifier_count();
                bytes += g.memory_bytes();
            }
            entries += engine.timelines().entry_count();
            let now = evicted_and_forgotten(engine);
            evicted += now.0.saturating_sub(s.counted.0);
            forgotten += now.1.saturating_sub(s.counted.1);
            s.counted = now;
        }
        self.worker.gauges();
        self.metrics.profiles.set(profiles as i64);
        self.metrics.identifiers.set(identifiers as i64);
        self.metrics.graph_bytes.set(bytes as i64);
        self.metrics.timeline_entries.set(entries as i64);
        self.metrics.merge_queued_bytes.set(waiting as i64);
        self.metrics.evicted_and_forgotten(evicted, forgotten);
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        // Fenced as a static member: the consumer is failed for good, though the transaction
        // would only need an abort.
        KafkaError::Transaction(t) => t.is_fatal() || t.code() == RDKafkaErrorCode::FencedInstanceId,
        KafkaError::MessageProduction(RDKafkaErrorCode::Fatal) => true,
        // A static member another instance took the place of, or a client in a fatal state.
        KafkaError::ConsumerCommit(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::FencedInstanceId) => true,
        _ => false,
    }
}

/// Whether `e` says this member's group generation is over (a rebalance began, or the group
/// dropped it): offsets of the batch cannot be committed until the group is polled.
fn has_left_group(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::{IllegalGeneration, RebalanceInProgress, UnknownMemberId};
    let code = match e {
        KafkaError::Transaction(t) => t.code(),
        KafkaError::ConsumerCommit(c) => *c,
        _ => return false,
    };
    matches!(code, IllegalGeneration | UnknownMemberId | RebalanceInProgress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_aborts_back_off_up_to_half_a_minute() {
        let ms = |n| abort_backoff(n).as_millis();
        assert_eq!((ms(0), ms(1), ms(2), ms(3), ms(4)), (0, 0, 250, 500, 1_000));
        assert_eq!((ms(9), ms(10), ms(1_000)), (30_000, 30_000, 30_000));
    }

    #[test]
    fn a_rewind_goes_back_to_the_commit_or_to_where_fetching_began() {
        assert_eq!(rewind_to(Some(40), Some(7)), Some(Offset::Offset(40)));
        // No commit yet: where auto.offset.reset put the partition (e.g. its end, `latest`),
        // not its beginning.
        assert_eq!(rewind_to(None, Some(1_000)), Some(Offset::Offset(1_000)));
        assert_eq!(rewind_to(None, None), None, "nothing fetched: nothing to seek back over");
    }

    #[test]
    fn a_batch_whose_group_moved_on_is_rewound_and_a_fatal_produce_stops() {
        use RDKafkaErrorCode::*;
        assert!(has_left_group(&KafkaError::ConsumerCommit(RebalanceInProgress)));
        assert!(has_left_group(&KafkaError::ConsumerCommit(IllegalGeneration)));
        assert!(!has_left_group(&KafkaError::ConsumerCommit(RequestTimedOut)));
        assert!(!has_left_group(&KafkaError::MessageProduction(InvalidRecord)));
        assert!(is_fatal(&KafkaError::MessageProduction(Fatal)));
        assert!(is_fatal(&KafkaError::ConsumerCommit(FencedInstanceId)));
        assert!(!is_fatal(&KafkaError::MessageProduction(InvalidRecord)));
    }
}
