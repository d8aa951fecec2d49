//! One shard (a partition index across the four inputs): its engine, its event-time merge,
//! and the application of its records: dead letters, changelog and profile records here; its
//! applied events go on to the ordered thread ([`crate::ordered`]), which writes their timeline
//! and merge records and runs its ordered stages. Shards share nothing but the producer, the
//! ordered thread and the metrics.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hashbrown::HashSet;
use omnistitch_codec::datum::encode_input;
use omnistitch_engine::{Engine, EngineConfig};
use omnistitch_model::{EventTime, ProfileId, Tenant, Tenants};
use omnistitch_moments::TimerHorizons;
use prometheus::IntCounter;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::changelog::{ChangelogBatch, ChangelogEntry, ClockEntry, SnapshotPart, SnapshotStage, BATCH_BYTES};
use crate::clients::DeliveryContext;
use crate::config::{KafkaConfig, Mode, MERGE_ORDER};
use crate::merge::{ShardMerge, Timed};
use crate::metrics::{InputTally, Outcome, ServiceMetrics};
use crate::ordered::{Handed, OrderedWorker, HANDOVER};
use crate::outputs::{Dest, OutBatch, OutputWriter, RecordHeader, Refusal};
use crate::registry::{DecodedInput, OutputSchemas};
use crate::restore::ChangelogKeys;
use crate::service::ServiceError;
use crate::wire::{split_frame, WireError};

/// An input record copied out of the consumer's buffers: what applying it needs, and not
/// what `OwnedMessage` would copy besides (the topic name, the headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Partition (the shard).
    pub partition: i32,
    /// Offset in its partition.
    pub offset: i64,
    /// The record's timestamp, ms; a record without one (or with one before 1970) has the
    /// time it was read instead, so that the future-time check always has a clock to go by.
    pub timestamp: Option<i64>,
    /// Key bytes.
    pub key: Option<Box<[u8]>>,
    /// Value bytes.
    pub payload: Option<Box<[u8]>>,
    /// The record's headers (name, value), kept for its dead letter; most records have none.
    pub headers: Box<[RecordHeader]>,
}

impl Input {
    /// Copies what is needed of `m`.
    pub fn of(m: &BorrowedMessage<'_>) -> Self {
        Input {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: Some(record_time(m.timestamp().to_millis(), crate::service::now_ms())),
            key: m.key().map(Box::from),
            payload: m.payload().map(Box::from),
            headers: crate::headers::copy(m),
        }
    }
}

/// A record's timestamp `ts`, or `now` when it has none worth the name (not positive): an
/// event time judged against no clock at all could move its tenant's clock to any year, and
/// the tenant's retention with it.
fn record_time(ts: Option<i64>, now: i64) -> i64 {
    ts.filter(|&t| t > 0).unwrap_or(now)
}

/// An input record waiting for the merge.
pub struct Pending {
    /// The record.
    pub msg: Input,
    /// Its decoding.
    pub decoded: Result<DecodedInput, WireError>,
    /// Merge key (event time; undecodable records first).
    pub time: i64,
}

impl Timed for Pending {
    fn merge_time(&self) -> i64 {
        self.time
    }

    /// The record's bytes, its decoding (about as large again) and a fixed overhead.
    fn weight(&self) -> usize {
        let m = &self.msg;
        let payload = m.payload.as_deref().map_or(0, <[u8]>::len);
        let headers: usize = m.headers.iter().map(|h| h.0.len() + h.1.as_deref().map_or(0, <[u8]>::len)).sum();
        512 + 2 * payload + m.key.as_deref().map_or(0, <[u8]>::len) + headers
    }
}

/// What the shards of a round share.
pub struct Shared<'a> {
    /// Configuration.
    pub config: &'a KafkaConfig,
    /// Metrics.
    pub metrics: &'a ServiceMetrics,
    /// The output producer.
    pub producer: &'a ThreadedProducer<DeliveryContext>,
    /// The ordered stages' thread.
    pub worker: &'a OrderedWorker,
    /// Topic and produced-records counter per output destination.
    pub destinations: &'a [(String, IntCounter)],
    /// Whether the round's transaction is open (begun by the first record applied).
    pub in_transaction: &'a Cell<bool>,
    /// How far past its latest event a quiet tenant's clock can still fire a timer.
    pub horizons: &'a TimerHorizons,
    /// The stages' configuration (a snapshot is read back under it to check it).
    pub stages: &'a EngineConfig,
}

impl Shared<'_> {
    /// Opens a transaction unless one is open (`exactly_once`).
    pub(crate) fn begin(&self) -> Result<(), KafkaError> {
        if !self.in_transaction.get() && self.config.mode == Mode::ExactlyOnce {
            self.producer.begin_transaction()?;
        }
        self.in_transaction.set(true);
        Ok(())
    }
}

/// The state of one partition index.
pub struct Shard {
    /// Partition index.
    pub index: i32,
    /// Identity and timelines (moments and CX run on the ordered thread).
    pub engine: Engine,
    /// Records fetched, waiting for their turn.
    pub merge: ShardMerge<Pending>,
    /// Next offset to commit per lane, when records were applied since the last commit.
    pub next: [Option<i64>; 4],
    /// The group's committed offset per lane that the state reflects (the restore's, then
    /// each commit's): the state is current for as long as the group's offsets still say so.
    pub position: [Option<i64>; 4],
    /// Timeline entries evicted and identifiers forgotten, as far as the metrics counted them
    /// (from the restored state on: a restore's replayed history is not counted again).
    pub counted: (u64, u64),
    /// Producer timestamps of the records applied since the last commit.
    pub latencies: Vec<i64>,
    /// When the open batch must commit for its freshest records to meet the commit interval.
    pub commit_by: Option<Instant>,
    dirty: Vec<(Tenant, ProfileId)>,
    /// Applied events not yet handed over to the ordered thread.
    handed: Vec<Handed>,
    changelog: ChangelogBatch,
    tenants: Tenants,
    writer: OutputWriter,
    /// The output records since the last commit.
    kept: KeptBatch,
    /// Input records counted since the last drain.
    tally: InputTally,
    /// Per tenant, where its event-time clock stands for `idle_clock_ms` (kept only when on).
    clocks: BTreeMap<Tenant, QuietClock>,
    /// Changelog bytes of events written since the last committed snapshot.
    since_snapshot: u64,
    /// Bytes of the last committed snapshot (its engine part).
    snapshot_bytes: u64,
    /// Keys of the changelog records (event batches, clock moves) this shard wrote since the
    /// last snapshot it wrote.
    unsnapped: Vec<Box<[u8]>>,
    /// Keys of the last committed snapshot's parts.
    snapshot_keys: Vec<Box<[u8]>>,
    /// The snapshot written in the open batch, if any.
    written: Option<Written>,
    /// A committed snapshot being read back (on a thread of its own) before the records it
    /// made obsolete are deleted: those records, and the check.
    checking: Option<(Keys, SnapshotCheck)>,
    /// Keys of changelog records a committed snapshot made obsolete, to be deleted (a
    /// tombstone each, for compaction) in the next batch.
    to_delete: Vec<Box<[u8]>>,
}

/// Keys of changelog records.
type Keys = Vec<Box<[u8]>>;

/// A snapshot written in the open batch, until the batch commits.
#[derive(Debug)]
struct Written {
    /// Bytes of its engine part (the next snapshot waits for as many bytes of changelog).
    engine_bytes: u64,
    /// Keys of the records its commit makes obsolete: those before it, the previous
    /// snapshot's parts.
    obsolete: Keys,
    /// Keys of its own parts.
    parts: Keys,
    /// Its read-back, running.
    check: SnapshotCheck,
}

/// A snapshot being read back on a thread of its own: `Err` says why it cannot be.
type SnapshotCheck = std::thread::JoinHandle<Result<(), String>>;

/// Reads `engine` and `ordered` back under `stages` on a thread of its own.
fn check_snapshot(engine: Vec<u8>, ordered: Vec<u8>, stages: &EngineConfig) -> SnapshotCheck {
    let stages = stages.clone();
    std::thread::spawn(move || {
        omnistitch_engine::Pipeline::from_stage_snapshots(&engine, &ordered, &stages)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Most tombstones a shard writes in one batch.
const TOMBSTONES_PER_BATCH: usize = 10_000;

/// About what a clock move's record takes in the changelog (counted towards the next
/// snapshot: a quiet shard's moves pile up too).
const CLOCK_RECORD_BYTES: u64 = 64;

/// The next keys of `to_delete` to tombstone, at most `most` (the first snapshot over a long
/// history deletes it over several commits, not in one transaction). A key written again since
/// the snapshot (in `since`: a batch re-applied with the same bounds after a rewind, a clock
/// moved to the same time) is left out and forgotten: its tombstone, after the record written
/// again, would delete that record too.
fn take_tombstones(to_delete: &mut Keys, since: &[Box<[u8]>], most: usize) -> Keys {
    if to_delete.is_empty() {
        return Vec::new();
    }
    let again: HashSet<&[u8]> = since.iter().map(|k| &k[..]).collect();
    // Only as far into the list as this batch takes: a long history's list is taken over
    // many batches.
    let (mut taken, mut consumed) = (Vec::with_capacity(most.min(to_delete.len())), 0);
    for key in to_delete.iter() {
        if taken.len() == most {
            break;
        }
        consumed += 1;
        if !again.contains(&key[..]) {
            taken.push(key.clone());
        }
    }
    to_delete.drain(..consumed);
    taken
}

/// A snapshot id no other attempt takes: the shard, the wall clock and a count, digested.
fn snapshot_id(shard: i32) -> u64 {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_be_bytes());
    seed[16..24].copy_from_slice(&n.to_be_bytes());
    seed[24..28].copy_from_slice(&shard.to_be_bytes());
    seed[28..32].copy_from_slice(&std::process::id().to_be_bytes());
    xxhash_rust::xxh3::xxh3_64(&seed)
}

/// A tenant's event-time clock as the stitching thread follows it: at `event_ms` at `since`
/// (its latest event applied, or its latest move), running on with the wall clock while the
/// tenant is quiet, until `until_ms` (its latest event time plus its timer horizon).
#[derive(Debug, Clone, Copy)]
struct QuietClock {
    event_ms: i64,
    since: Instant,
    /// Wall-clock time the tenant was already quiet at `since` that no move has counted yet
    /// (ms): after a restore, the time since its clock was last set before the restart.
    owed_ms: i64,
    until_ms: i64,
}

impl QuietClock {
    /// Wall-clock time the tenant has been quiet for at `now`, ms.
    fn quiet_ms(&self, now: Instant) -> i64 {
        (now.saturating_duration_since(self.since).as_millis() as i64).saturating_add(self.owed_ms)
    }
}

/// A restored tenant's event-time clock, as a [`Shard`] takes it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredClock {
    /// The tenant.
    pub tenant: Tenant,
    /// Its clock: its latest event time, or its latest move.
    pub clock: EventTime,
    /// Its latest event time.
    pub latest_event: EventTime,
    /// Wall-clock time since the clock was set (its changelog record written), ms: the downtime
    /// of a restart counts as quiet time, so a timer due during it fires right after the restore.
    pub quiet_ms: i64,
}

/// Timeline entries `engine` has evicted and identifiers its graphs have forgotten, so far.
pub fn evicted_and_forgotten(engine: &Engine) -> (u64, u64) {
    let forgotten = engine.identity().graphs().map(|(_, g)| g.forgotten_count()).sum();
    (engine.stats().evicted, forgotten)
}

impl Shard {
    /// A shard over a restored `engine`, interning tenants in `tenants`; `clocks` are the
    /// restored tenants' event-time clocks (they run on while the tenants are quiet, counting
    /// the time each was already quiet before the restore).
    pub fn new(
        index: i32,
        engine: Engine,
        tenants: Tenants,
        outputs: OutputSchemas,
        position: [Option<i64>; 4],
        clocks: Vec<RestoredClock>,
        horizons: &TimerHorizons,
    ) -> Self {
        let since = Instant::now();
        let clocks = clocks
            .into_iter()
            .map(|c| {
                // The horizon counts from the latest event, not from the clock's last move.
                let until_ms = c.latest_event.0.saturating_add(horizons.get(c.tenant.as_str()));
                let owed_ms = c.quiet_ms.max(0);
                (c.tenant, QuietClock { event_ms: c.clock.0, since, owed_ms, until_ms })
            })
            .collect();
        Shard {
            counted: evicted_and_forgotten(&engine),
            clocks,
            index,
            engine,
            handed: Vec::new(),
            merge: ShardMerge::default(),
            next: [None; 4],
            position,
            latencies: Vec::new(),
            commit_by: None,
            dirty: Vec::new(),
            changelog: ChangelogBatch::default(),
            tenants,
            writer: OutputWriter::new(outputs),
            kept: KeptBatch::new(KEPT_BYTES),
            tally: InputTally::default(),
            since_snapshot: 0,
            snapshot_bytes: 0,
            unsnapped: Vec::new(),
            snapshot_keys: Vec::new(),
            written: None,
            checking: None,
            to_delete: Vec::new(),
        }
    }

    /// Writes the events applied since the last batch (if any) to the changelog.
    fn write_changelog_batch(&mut self) {
        if let Some(key) = self.changelog.key() {
            self.unsnapped.push(key.as_slice().into());
            self.writer.changelog(self.index, &mut self.changelog, &mut self.kept.out);
        }
    }

    /// Applies what the merge releases, up to `budget` records or `deadline`.
    fn drain(
        &mut self,
        shared: &Shared<'_>,
        now: Instant,
        max_wait: Duration,
        budget: usize,
        deadline: Instant,
    ) -> Result<usize, ServiceError> {
        let mut done = 0;
        while done < budget {
            if done % 64 == 63 && Instant::now() >= deadline {
                break;
            }
            let Some((lane, item)) = self.merge.pop(now, max_wait) else { break };
            let applied = shared.begin().map_err(ServiceError::from).and_then(|()| self.apply(shared, lane, item));
            if let Err(e) = applied {
                shared.metrics.add_inputs(&mut self.tally);
                return Err(e);
            }
            done += 1;
        }
        shared.metrics.add_inputs(&mut self.tally);
        let skipped = self.merge.take_skipped_waits();
        if skipped > 0 {
            shared.metrics.merge_skipped_waits.inc_by(skipped);
        }
        Ok(done)
    }

    /// Applies one record and produces its outputs (or its dead letter).
    fn apply(&mut self, shared: &Shared<'_>, lane: usize, item: Pending) -> Result<(), ServiceError> {
        let (config, metrics, p) = (shared.config, shared.metrics, self.index);
        let channel = MERGE_ORDER[lane];
        let msg = &item.msg;
        let offset = msg.offset;
        if let Some(ts) = msg.timestamp {
            self.note_latency(config, ts);
        }
        self.next[lane] = Some(offset + 1);
        let decoded = item.decoded.map_err(|e| (e.code(), e.to_string()));
        // The changelog stores the bundled-schema datum (restores need no registry): the
        // record's own bytes when it was written with that schema, else re-encoded. A record
        // that cannot be is refused like any other bad input, not fatal to the service (it
        // would be read again after every restart).
        let decoded = decoded.and_then(|d| {
            let DecodedInput { event: wire, bundled } = d;
            let datum: Cow<'_, [u8]> = match (bundled, msg.payload.as_deref().map(split_frame)) {
                (true, Some(Ok((_, body)))) => Cow::Borrowed(body),
                _ => Cow::Owned(encode_input(&wire).map_err(|e| {
                    ("reencode_failed", format!("the event could not be written with the bundled schema: {e}"))
                })?),
            };
            let tenants = &mut self.tenants;
            match wire.try_into_event(|name| tenants.get(name)) {
                Ok(event) => Ok((event, datum)),
                Err((e, _)) => Err((e.code(), e.to_string())),
            }
        });
        let decoded = decoded.and_then(|(event, datum)| {
            if !config.too_far_ahead(event.time.0, msg.timestamp) {
                return Ok((event, datum));
            }
            let ts = msg.timestamp.unwrap_or_default();
            let why = format!(
                "event_time {} ms is {} ms ahead of the record's timestamp {ts} ms (kafka.max_ahead_ms is {})",
                event.time.0,
                event.time.0.saturating_sub(ts),
                config.max_ahead_ms
            );
            Err(("future_time", why))
        });
        let engine = &self.engine;
        let decoded = decoded.and_then(|(event, datum)| {
            if !engine.is_beyond_retention(event.tenant.as_str(), event.time) {
                return Ok((event, datum));
            }
            let why = format!(
                "event_time {} ms is older than the tenant's retention (timeline.max_age_days behind its newest event): not applied",
                event.time.0
            );
            Err(("beyond_retention", why))
        });
        match decoded {
            Err((code, reason)) => {
                let topic = config.topics.input(channel);
                let why = Refusal { topic, partition: p, offset, code, reason: &reason, headers: &msg.headers };
                let max =
                    shared.producer.context().limits().max_bytes(&config.topics.deadletter, config.max_message_bytes());
                self.writer.dead_letter(msg.key.as_deref(), msg.payload.as_deref(), &why, max, &mut self.kept.out);
                self.tally.input(channel, Outcome::DeadLettered);
                metrics.dead_letter(code);
            }
            Ok((event, datum)) => {
                let applied = self.engine.apply(&event);
                match applied.profile {
                    None => self.tally.input(channel, Outcome::Duplicate),
                    Some(profile) => {
                        // A redelivery is no sign of life (and is not in the changelog, so a
                        // restored clock would not know of it either).
                        if config.idle_clock_ms > 0 {
                            self.note_clock(&event.tenant, event.time.0, shared.horizons);
                        }
                        if self.changelog.would_outgrow(datum.len(), BATCH_BYTES) {
                            self.write_changelog_batch();
                        }
                        self.changelog.push(&ChangelogEntry {
                            channel,
                            source_offset: offset,
                            datum: &datum,
                            writer: None,
                        });
                        self.since_snapshot += datum.len() as u64;
                        if self.changelog.is_full(BATCH_BYTES) {
                            self.write_changelog_batch();
                        }
                        self.tally.input(channel, Outcome::Applied);
                        self.tally.identity(applied.merges.len(), applied.conflicts.len());
                        self.dirty.push((event.tenant.clone(), profile));
                    }
                }
                self.handed.push(Handed { event, applied });
                if self.handed.len() >= HANDOVER {
                    shared.worker.events(self.index, std::mem::replace(&mut self.handed, Vec::with_capacity(HANDOVER)));
                }
            }
        }
        self.send_all(shared)
    }

    /// An event of `tenant` at `time_ms` was applied now: the tenant is not quiet.
    fn note_clock(&mut self, tenant: &Tenant, time_ms: i64, horizons: &TimerHorizons) {
        let (since, until_ms) = (Instant::now(), time_ms.saturating_add(horizons.get(tenant.as_str())));
        match self.clocks.get_mut(tenant) {
            Some(c) => {
                *c = QuietClock {
                    event_ms: c.event_ms.max(time_ms),
                    since,
                    owed_ms: 0,
                    until_ms: c.until_ms.max(until_ms),
                }
            }
            None => {
                self.clocks.insert(tenant.clone(), QuietClock { event_ms: time_ms, since, owed_ms: 0, until_ms });
            }
        }
    }

    /// Once the shard has applied everything its partitions hold, moves on the event-time clock
    /// of every tenant quiet for `idle_clock_ms`: to its latest event time (or move) plus the
    /// wall-clock time since, handed to the ordered thread after the events applied before it.
    /// In `exactly_once` each move is also written to the changelog, after the batch of those
    /// events, in the transaction of the interventions it fires; in `at_least_once` it is not
    /// (a move there could be restored without its interventions, which would then be lost;
    /// unrecorded, they fire again after a restore, as exact copies). A tenant whose clock
    /// passed its horizon (nothing left to fire) is no longer followed. Returns the moves.
    pub fn advance_quiet_clocks(&mut self, shared: &Shared<'_>, now: Instant) -> Result<u64, ServiceError> {
        let idle_ms = i64::try_from(shared.config.idle_clock_ms).unwrap_or(i64::MAX);
        if idle_ms == 0 || !self.merge.caught_up() {
            return Ok(0);
        }
        // A clock past its horizon has nothing left to fire: it waits for the tenant's next
        // event (kept, so that a late event does not start it again from an earlier time).
        let quiet = |c: &QuietClock| c.event_ms <= c.until_ms && c.quiet_ms(now) >= idle_ms;
        if !self.clocks.values().any(quiet) {
            return Ok(0);
        }
        shared.begin()?;
        if !self.handed.is_empty() {
            shared.worker.events(self.index, std::mem::replace(&mut self.handed, Vec::with_capacity(HANDOVER)));
        }
        let recorded = shared.config.mode == Mode::ExactlyOnce;
        if recorded {
            self.write_changelog_batch();
        }
        let position = [0, 1, 2, 3].map(|lane| self.next[lane].or(self.position[lane]));
        let mut moved = 0;
        for (tenant, c) in self.clocks.iter_mut().filter(|(_, c)| quiet(c)) {
            // One past the horizon at most: the last move fires what was left.
            c.event_ms = c.event_ms.saturating_add(c.quiet_ms(now)).min(c.until_ms.saturating_add(1));
            (c.since, c.owed_ms) = (now, 0);
            if recorded {
                let entry = ClockEntry { tenant: tenant.as_str(), time: c.event_ms, position };
                self.writer.clock(self.index, &entry, &mut self.kept.out);
                self.unsnapped.push(entry.key().into());
                self.since_snapshot += CLOCK_RECORD_BYTES;
            }
            shared.worker.advance_clock(self.index, tenant.clone(), EventTime(c.event_ms));
            moved += 1;
        }
        shared.metrics.clock_advances.inc_by(moved);
        self.send_all(shared)?;
        Ok(moved)
    }

    /// Notes a record produced at `ts` (ms): its latency, and when its batch must commit.
    fn note_latency(&mut self, config: &KafkaConfig, ts: i64) {
        self.latencies.push(ts);
        // Due for commit one interval after it was produced, less a tenth for the commit; a
        // record already older than that (held up upstream) is due now. Records from a backlog
        // (older than two intervals) cannot be on time and leave the round alone.
        let interval = config.commit_interval_ms as i64;
        // The timestamp is the producer's: one from the future counts as just produced.
        let age = crate::service::now_ms().saturating_sub(ts).max(0);
        if age < 2 * interval {
            let left = (interval - interval / 10 - age).max(0);
            let by = Instant::now() + Duration::from_millis(left as u64);
            self.commit_by = Some(self.commit_by.map_or(by, |b| b.min(by)));
        }
    }

    /// Hands the applied events still held over to the ordered thread, writes the events
    /// applied since the last batch to the changelog and the state of every profile changed
    /// since the last commit, once each (a compacted topic needs only the latest), and hands the
    /// records to the producer: the last writes of a transaction (with the ordered thread's).
    pub fn write_batched(&mut self, shared: &Shared<'_>) -> Result<(), ServiceError> {
        shared.worker.events(self.index, std::mem::replace(&mut self.handed, Vec::with_capacity(HANDOVER)));
        self.write_changelog_batch();
        self.snapshot_if_due(shared);
        self.delete_obsolete(shared);
        if shared.config.snapshot_bytes == 0 && self.to_delete.is_empty() {
            // No snapshot will make them obsolete, and no key obsolete before (a snapshot
            // restored from, written while snapshots were on) waits for a tombstone that a key
            // written again since must be kept from.
            self.unsnapped.clear();
        }
        let mut written = HashSet::with_capacity(self.dirty.len());
        let identity = self.engine.identity();
        let max = shared
            .producer
            .context()
            .limits()
            .max_bytes(&shared.config.topics.profiles, shared.config.max_message_bytes());
        for (tenant, id) in self.dirty.drain(..) {
            // A profile merged away since resolves to its survivor (its tombstone is out).
            let (Some(graph), Some(p)) = (identity.graph(&tenant), identity.profile(&tenant, id)) else { continue };
            if written.insert((tenant.clone(), p.id)) && self.writer.profile(&tenant, graph, p, max, &mut self.kept.out)
            {
                shared.metrics.profile_records_cut.inc();
                tracing::warn!(shard = self.index, profile = %p.id, "profile record cut to fit message.max.bytes");
            }
        }
        self.send_all(shared)
    }

    /// Takes over what a restore found of the changelog: `bytes` of events re-applied after
    /// the snapshot read back (or all of it), that snapshot's engine part size (the next is not
    /// due before as many bytes again), and the records' keys.
    pub fn restored_changelog(&mut self, bytes: u64, snapshot_bytes: u64, keys: ChangelogKeys) {
        self.since_snapshot = bytes;
        self.snapshot_bytes = snapshot_bytes;
        self.unsnapped = keys.unsnapped;
        self.snapshot_keys = keys.snapshot;
        self.to_delete = keys.obsolete;
    }

    /// Writes a snapshot of the shard's state into the batch (both threads' parts, the ordered
    /// thread's after every event handed to it) once `kafka.snapshot_bytes` of changelog, and
    /// as many as the last snapshot took, were written since the last committed one; only in
    /// a batch that applied input (its position is then past the last commit's, which is what
    /// tells a committed snapshot from one of an attempt that was not).
    fn snapshot_if_due(&mut self, shared: &Shared<'_>) {
        let every = shared.config.snapshot_bytes;
        let moved = self.next.iter().any(Option::is_some);
        // Not before the last one's obsolete records are deleted: those are told from records
        // written again since by the keys written since it.
        let busy = self.written.is_some() || self.checking.is_some() || !self.to_delete.is_empty();
        if every == 0 || !moved || busy || self.since_snapshot < every.max(self.snapshot_bytes) {
            return;
        }
        // The ordered thread writes its part after every event handed over, while this one
        // writes the engine's (the commit waits for the ordered thread anyway).
        let reply = shared.worker.snapshot(self.index);
        let engine = self.engine.snapshot();
        let Some(ordered) = reply.wait() else { return };
        let position = [0, 1, 2, 3].map(|lane| self.next[lane].or(self.position[lane]));
        let id = snapshot_id(self.index);
        let mut parts = Vec::new();
        for (stage, state) in [(SnapshotStage::Engine, &engine), (SnapshotStage::Ordered, &ordered)] {
            for part in SnapshotPart::split(id, position, stage, state) {
                parts.push(Box::from(&part.key()[..]));
                self.writer.snapshot_part(self.index, &part, &mut self.kept.out);
            }
        }
        let mut obsolete = std::mem::take(&mut self.unsnapped);
        obsolete.extend(self.snapshot_keys.iter().cloned());
        let (engine_bytes, ordered_bytes) = (engine.len(), ordered.len());
        let check = check_snapshot(engine, ordered, shared.stages);
        self.written = Some(Written { engine_bytes: engine_bytes as u64, obsolete, parts, check });
        shared.metrics.snapshots_written.inc();
        shared.metrics.snapshot_bytes.set((engine_bytes + ordered_bytes) as i64);
        tracing::info!(shard = self.index, engine = engine_bytes, ordered = ordered_bytes, "snapshot written");
    }

    /// Deletes the changelog records a committed snapshot made obsolete: a tombstone each
    /// (compaction then drops them and the tombstone). Written only once the snapshot is
    /// committed: in `at_least_once` a snapshot's batch may fail after its records are out.
    fn delete_obsolete(&mut self, shared: &Shared<'_>) {
        if self.checking.as_ref().is_some_and(|(_, check)| check.is_finished()) {
            let (obsolete, check) = self.checking.take().expect("checked above");
            match check.join().unwrap_or_else(|_| Err("the check panicked".into())) {
                Ok(()) => self.to_delete.extend(obsolete),
                Err(why) => {
                    // Nothing it made obsolete is deleted: a later snapshot that reads back will.
                    shared.metrics.snapshot_checks_failed.inc();
                    tracing::error!(shard = self.index, reason = %why, "a snapshot written does not read back; its records are kept");
                    self.unsnapped.extend(obsolete);
                }
            }
        }
        for key in take_tombstones(&mut self.to_delete, &self.unsnapped, TOMBSTONES_PER_BATCH) {
            self.writer.changelog_tombstone(self.index, &key, &mut self.kept.out);
        }
    }

    /// The batch since the last commit is committed: its offsets become the state's position,
    /// and the batch is forgotten.
    pub fn committed(&mut self) {
        if let Some(w) = self.written.take() {
            (self.since_snapshot, self.snapshot_bytes) = (0, w.engine_bytes);
            // What it made obsolete is deleted once the check read it back.
            self.checking = Some((w.obsolete, w.check));
            self.snapshot_keys = w.parts;
        }
        for (at, next) in self.position.iter_mut().zip(self.next) {
            if next.is_some() {
                *at = next;
            }
        }
        self.changelog.clear();
        self.next = [None; 4];
        self.latencies.clear();
        self.commit_by = None;
        self.dirty.clear();
        self.handed.clear();
        self.kept.committed();
    }

    /// Hands the output records not yet sent to the producer (waiting while its queue is full).
    fn send_all(&mut self, shared: &Shared<'_>) -> Result<(), ServiceError> {
        self.kept.send_new(shared.producer, shared.destinations)?;
        self.kept.keep_within_limit();
        Ok(())
    }

    /// Whether every output record since the last commit is kept (to produce again).
    pub fn kept_all(&self) -> bool {
        self.kept.is_whole()
    }

    /// The transaction that held this batch's records was aborted: hands them all to the
    /// producer again (the state that made them is kept; see [`Shard::kept_all`]).
    pub fn resend(&mut self, shared: &Shared<'_>) -> Result<(), ServiceError> {
        self.kept.send_again(shared.producer, shared.destinations)
    }
}

/// A batch's output records, kept until its commit: an aborted transaction is produced again
/// from them, without restoring the state that made them. One per shard on each thread.
#[derive(Debug)]
pub(crate) struct KeptBatch {
    /// The records since the last commit.
    pub(crate) out: OutBatch,
    /// How many of `out` are with the producer.
    sent: usize,
    /// Whether `out` holds every record since the last commit (not so once it outgrew `limit`).
    whole: bool,
    /// Most bytes of records kept.
    limit: usize,
}

impl KeptBatch {
    /// An empty batch keeping up to `limit` bytes of records.
    pub(crate) fn new(limit: usize) -> Self {
        KeptBatch { out: OutBatch::default(), sent: 0, whole: true, limit }
    }

    /// Hands the records not yet sent to `producer`.
    pub(crate) fn send_new(
        &mut self,
        producer: &ThreadedProducer<DeliveryContext>,
        destinations: &[(String, IntCounter)],
    ) -> Result<(), ServiceError> {
        send(&self.out, self.sent, producer, destinations)?;
        self.sent = self.out.len();
        Ok(())
    }

    /// Hands every record kept to `producer` again (their transaction was aborted).
    pub(crate) fn send_again(
        &mut self,
        producer: &ThreadedProducer<DeliveryContext>,
        destinations: &[(String, IntCounter)],
    ) -> Result<(), ServiceError> {
        self.sent = 0;
        self.send_new(producer, destinations)
    }

    /// Past its limit, forgets its records (sent or not): the batch is no longer whole, and is
    /// rewound if it fails. Returns whether it is whole.
    pub(crate) fn keep_within_limit(&mut self) -> bool {
        if self.out.byte_len() > self.limit {
            self.out.clear();
            self.sent = 0;
            self.whole = false;
        }
        self.whole
    }

    /// Whether it holds every record since the last commit.
    pub(crate) fn is_whole(&self) -> bool {
        self.whole
    }

    /// The batch is committed: its records are forgotten.
    pub(crate) fn committed(&mut self) {
        self.out.clear();
        self.sent = 0;
        self.whole = true;
    }
}

/// Most bytes of output records a shard keeps per thread until its batch commits (to produce
/// them again if the transaction is aborted); a batch past it is rewound instead.
pub const KEPT_BYTES: usize = 64 << 20;

/// Hands the records of `out` from the `from`th on to `producer` (waiting while its queue is
/// full), counting each in its destination's counter.
pub(crate) fn send(
    out: &OutBatch,
    from: usize,
    producer: &ThreadedProducer<DeliveryContext>,
    destinations: &[(String, IntCounter)],
) -> Result<(), ServiceError> {
    // Counted per call: an atomic add per record kept the counters' cache lines moving
    // between the two threads that produce.
    let mut counts = [0u64; Dest::COUNT];
    let result = send_counted(out, from, producer, destinations, &mut counts);
    for ((_, produced), &n) in destinations.iter().zip(&counts) {
        if n > 0 {
            produced.inc_by(n);
        }
    }
    result
}

/// [`send`], counting each record in `counts` (by destination).
fn send_counted(
    out: &OutBatch,
    from: usize,
    producer: &ThreadedProducer<DeliveryContext>,
    destinations: &[(String, IntCounter)],
    counts: &mut [u64; Dest::COUNT],
) -> Result<(), ServiceError> {
    for (r, key, value) in out.iter_from(from) {
        let (topic, _) = &destinations[r.dest as usize];
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if r.has_key() {
            record = record.key(key);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(h) = &r.headers {
            record = record.headers(h.clone());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Asked to stop while the cluster takes nothing: the batch is left
                    // uncommitted rather than waited for until its records time out.
                    if producer.context().stop_requested() {
                        return Err(ServiceError::Stopped);
                    }
                    record = back;
                    producer.context().waiting_for_room();
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Refused by a transaction that failed (abortable): the batch is rewound.
                Err((KafkaError::MessageProduction(code), _)) if code != RDKafkaErrorCode::Fatal => {
                    return Err(ServiceError::Produce(KafkaError::MessageProduction(code)))
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        counts[r.dest as usize] += 1;
    }
    Ok(())
}

/// Applies what the shards' merges release, up to `budget` records in all or `deadline`:
/// first up to an equal share each (a shard with a backlog must not starve the others), then
/// what is left of the budget shard after shard. (Applying shards on two threads measured no
/// faster on two cores shared with the client threads: they contended more than they gained.)
pub fn drain_all<'s>(
    shards: impl Iterator<Item = &'s mut Shard>,
    shared: &Shared<'_>,
    max_wait: Duration,
    budget: usize,
    deadline: Instant,
) -> Result<usize, ServiceError> {
    let now = Instant::now();
    let mut shards: Vec<&mut Shard> = shards.collect();
    let share = budget.div_ceil(shards.len().max(1));
    let mut done = 0;
    for s in shards.iter_mut() {
        done += s.drain(shared, now, max_wait, share.min(budget - done), deadline)?;
    }
    for s in shards.iter_mut() {
        if done >= budget {
            break;
        }
        done += s.drain(shared, now, max_wait, budget - done, deadline)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_engine::EngineConfig;
    use omnistitch_moments::TimerHorizons;

    /// A shard built over a restored engine counts from that engine's evictions on: what the
    /// restore's replay evicted again was counted when it first happened.
    /// A snapshot is read back before what it made obsolete is deleted: one that does not
    /// read back says why.
    /// Tombstones go out a bounded number at a time, and never for a key written again since
    /// the snapshot that made it obsolete.
    #[test]
    fn obsolete_records_written_again_since_are_not_deleted() {
        let key = |n: u8| -> Box<[u8]> { Box::from(&[n, n][..]) };
        let mut to_delete: Keys = (1..=5).map(key).collect();
        let since = vec![key(2), key(9), key(4)];
        assert_eq!(take_tombstones(&mut to_delete, &since, 2), vec![key(1), key(3)]);
        assert_eq!(take_tombstones(&mut to_delete, &since, 2), vec![key(5)]);
        assert!(to_delete.is_empty() && take_tombstones(&mut to_delete, &since, 2).is_empty());
        let mut to_delete: Keys = vec![key(1), key(2)];
        assert_eq!(take_tombstones(&mut to_delete, &[], 10), vec![key(1), key(2)]);
    }

    /// A record without a timestamp is judged by the time it was read: an event a year ahead of
    /// it is refused, not applied (it would carry its tenant's clock a year ahead).
    #[test]
    fn a_record_without_a_timestamp_is_judged_by_the_time_it_was_read() {
        let now = 1_800_000_000_000;
        assert_eq!(record_time(Some(1_700_000_000_000), now), 1_700_000_000_000);
        for missing in [None, Some(0), Some(-1)] {
            assert_eq!(record_time(missing, now), now);
        }
        let config = KafkaConfig::default();
        let year = 365 * 86_400_000;
        assert!(config.too_far_ahead(now + year, Some(record_time(None, now))));
        assert!(!config.too_far_ahead(now - year, Some(record_time(Some(-1), now))));
    }

    #[test]
    fn a_snapshot_is_checked_by_reading_it_back() {
        let stages = EngineConfig::default();
        let (engine, ordered) = omnistitch_engine::Pipeline::new(&stages).unwrap().into_parts();
        let (engine, ordered) = (engine.snapshot(), ordered.unwrap().snapshot());
        assert_eq!(check_snapshot(engine.clone(), ordered.clone(), &stages).join().unwrap(), Ok(()));
        let cut = engine[..engine.len() - 1].to_vec();
        assert!(check_snapshot(cut, ordered.clone(), &stages).join().unwrap().is_err());
        assert!(check_snapshot(ordered.clone(), engine, &stages)
            .join()
            .unwrap()
            .unwrap_err()
            .contains("another stage"));
    }

    #[test]
    fn a_restored_shard_counts_evictions_from_its_restored_state_on() {
        let mut cfg = EngineConfig::default();
        cfg.timeline.max_events_per_profile = 2;
        let (normalizer, rules) = cfg.validate().unwrap();
        let mut engine = Engine::new(normalizer, rules, cfg.timeline.clone());
        for i in 0..5 {
            engine.apply(&crate::outputs::tests::inbound_chat(i));
        }
        let restored = evicted_and_forgotten(&engine);
        assert_eq!(restored.0, 3, "five events, two kept");
        let horizons = TimerHorizons::new(&cfg.moments).unwrap();
        let outputs = OutputSchemas::bundled(&crate::registry::BundledIds::default());
        let shard = Shard::new(0, engine, Tenants::default(), outputs, [None; 4], Vec::new(), &horizons);
        assert_eq!(shard.counted, restored);
    }
}
