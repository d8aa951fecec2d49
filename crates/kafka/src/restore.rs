//! Restoring a shard: reading back its newest usable snapshot, then re-applying the changelog
//! after it up to the group's committed input offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_model::{Channel, EventTime, Tenant, Tenants};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::changelog::{self, EntryDecoder, Record};
use crate::config::{KafkaConfig, MERGE_ORDER};
use crate::health::Health;

/// What a restore leaves a shard to know of its changelog, for the snapshots to come.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangelogKeys {
    /// Keys of the records (event batches, clock moves) after the snapshot read back, or of
    /// all when none was.
    pub unsnapped: Vec<Box<[u8]>>,
    /// Keys of the parts of the snapshot read back.
    pub snapshot: Vec<Box<[u8]>>,
    /// Keys of records before it, still there: obsolete, to be deleted.
    pub obsolete: Vec<Box<[u8]>>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Changelog records read.
    pub read: u64,
    /// Events re-applied.
    pub applied: u64,
    /// Bytes of their changelog datums (what counts towards the next snapshot).
    pub applied_bytes: u64,
    /// Events past the committed offsets (from work that was not committed), left out.
    pub uncommitted: u64,
    /// Of those, events of an input partition with no committed offset at all: the first
    /// batch never committed, or the group's offsets expired or its id changed (then the
    /// shard starts without that history).
    pub without_commit: u64,
    /// Records and events that could not be read (counted, skipped).
    pub unreadable: u64,
    /// Copies of input records applied again by a later attempt, left out for the later copy.
    pub superseded: u64,
    /// Clock moves of quiet tenants re-applied.
    pub clocks: u64,
    /// The changelog partition's first offset: above 0, its earlier records are gone (deleted by
    /// retention or a size limit on the topic) and the restored state misses their events.
    pub first_offset: i64,
    /// Offsets of the changelog past its stable end when the restore gave up waiting for an
    /// open transaction (a hanging one): batches committed behind it are left out, so the
    /// restored state may miss their events. 0 when nothing was open.
    pub behind_open_transaction: i64,
    /// When each restored tenant's event-time clock was last set (an event applied, a move):
    /// the timestamp of the changelog record that holds it, in ms, where the record has one
    /// (for a tenant last set before the snapshot restored, the snapshot's).
    pub clocks_set_at: HashMap<Tenant, i64>,
    /// The changelog offset of the snapshot the state was read back from (its first part), if
    /// any: the records before it were not read again.
    pub snapshot_offset: Option<i64>,
    /// The size of that snapshot's engine part, bytes (0 without one): the next snapshot is
    /// not due before as many bytes of changelog again.
    pub snapshot_engine_bytes: u64,
    /// Events after the snapshot that it already held (copies of its events), left out.
    pub in_snapshot: u64,
    /// Snapshots found that could not be used: their parts incomplete, past the committed
    /// offsets, superseded by a later attempt, or unreadable by this version.
    pub snapshots_passed_over: u64,
    /// Keys of the changelog's records, as the shard needs them for its next snapshots.
    pub keys: ChangelogKeys,
    /// Whether records of the changelog were deleted after a snapshot (tombstones found, or
    /// a changelog that begins with a snapshot): restored without a snapshot, the state then
    /// misses their events.
    pub history_deleted: bool,
    /// The snapshot read back was written by an attempt a later one re-did (records were
    /// deleted, and no other was left): the best state there was, not the committed one.
    pub best_effort_snapshot: bool,
}

impl Restored {
    /// Whether the changelog had lost records the restore needed (the restored state is
    /// incomplete): its first ones, or those a snapshot made obsolete, when no snapshot after
    /// them was read back.
    pub fn truncated(&self) -> bool {
        ((self.first_offset > 0 || self.history_deleted) && self.snapshot_offset.is_none()) || self.best_effort_snapshot
    }

    /// Whether the restore read only up to a transaction left open (it may miss events).
    pub fn behind_open(&self) -> bool {
        self.behind_open_transaction > 0
    }
}

/// Committed offsets of shard `shard`'s input partitions, in merge-lane order (`None`: nothing
/// committed yet).
pub fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &KafkaConfig,
    shard: i32,
    timeout: Duration,
) -> Result<[Option<i64>; 4], KafkaError> {
    Ok(committed_offsets_of(consumer, config, &[shard], timeout)?.remove(&shard).unwrap_or_default())
}

/// [`committed_offsets`] of several shards, in one request.
pub fn committed_offsets_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &KafkaConfig,
    shards: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, [Option<i64>; 4]>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for &shard in shards {
        for (_, topic) in config.topics.inputs() {
            tpl.add_partition(topic, shard);
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = HashMap::new();
    for &shard in shards {
        let mut of = [None; 4];
        for (lane, (_, topic)) in config.topics.inputs().iter().enumerate() {
            if let Some(e) = committed.find_partition(topic, shard) {
                // A partition's own error (an offset not stable yet, no authorization) is not
                // "nothing committed": read so, a restore would leave out its history.
                e.error()?;
                if let Offset::Offset(o) = e.offset() {
                    of[lane] = Some(o);
                }
            }
        }
        out.insert(shard, of);
    }
    drop(committed);
    Ok(out)
}

/// The watermarks of `topic`'s partition `shard`. A failure refreshes the client's metadata
/// before it is returned: a client that saw the partition's leader missing from the broker list
/// (a broker away) keeps answering "unknown partition" from its cache, without asking again,
/// long after the broker is back.
fn watermarks(
    reader: &BaseConsumer,
    topic: &str,
    shard: i32,
    timeout: Duration,
    health: &Health,
) -> Result<(i64, i64), KafkaError> {
    health.beat();
    reader.fetch_watermarks(topic, shard, timeout).inspect_err(|_| {
        health.beat();
        // Stopping: no time for a refresh nobody will use.
        if health.stop_requested() {
            return;
        }
        if let Err(e) = reader.fetch_metadata(Some(topic), timeout) {
            tracing::warn!(error = %e, topic, "refreshing metadata");
        }
    })
}

/// Asks `ends` for (first offset, stable end, log end) every `pause` until the stable end
/// reaches the log end or `limit` has passed; returns the last answer.
fn until_stable(
    limit: Duration,
    pause: Duration,
    mut ends: impl FnMut() -> Result<(i64, i64, i64), KafkaError>,
) -> Result<(i64, i64, i64), KafkaError> {
    let started = Instant::now();
    loop {
        let answer = ends()?;
        if answer.1 >= answer.2 || started.elapsed() > limit {
            return Ok(answer);
        }
        std::thread::sleep(pause);
    }
}

/// The error of a restore the changelog sent nothing for ten request timeouts (final: a step
/// again fails at once).
pub(crate) fn silence() -> KafkaError {
    KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::OperationTimedOut)
}

/// Reads shards' changelogs back; one long-lived client, so a restore costs no connection
/// setup.
pub struct ChangelogReader {
    consumer: BaseConsumer,
    /// The same partitions seen read_uncommitted: only its watermarks are asked for.
    uncommitted: BaseConsumer,
    /// Beaten at every poll: a long restore is progress, not a stall.
    health: Arc<Health>,
}

/// Unassigns the changelog partition however a restore ends.
struct Release<'a>(&'a BaseConsumer);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.unassign() {
            tracing::warn!(error = %e, "releasing the changelog partition");
        }
    }
}

impl ChangelogReader {
    /// The first offset and the end of shard `shard`'s changelog once no transaction is open
    /// on it. A read_committed reader stops at the last stable offset: behind a transaction
    /// still open (an instance that died in it, until the coordinator aborts it; commit markers
    /// still being written) it would miss batches committed after it. So this waits while the
    /// stable end is short of the log's end, up to a transaction timeout and a request timeout,
    /// then goes on with what is stable and says so.
    fn stable_watermarks(&self, config: &KafkaConfig, shard: i32) -> Result<(i64, i64, i64), KafkaError> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let topic = config.topics.changelog.as_str();
        // Waiting for a dead instance's transaction to be aborted is progress, not a stall.
        // Asked to stop: the restore has produced nothing yet, and is begun again by whoever
        // holds the shard next.
        let stopped = || if self.health.stop_requested() { Err(KafkaError::Canceled) } else { Ok(()) };
        let ends = || {
            stopped()?;
            let (low, stable) = watermarks(&self.consumer, topic, shard, timeout, &self.health)?;
            stopped()?;
            let (_, end) = watermarks(&self.uncommitted, topic, shard, timeout, &self.health)?;
            Ok((low, stable, end))
        };
        let limit = config.transaction_timeout() + timeout;
        let (low, stable, end) = until_stable(limit, Duration::from_millis(200), ends)?;
        if stable < end {
            tracing::error!(
                shard,
                stable,
                end,
                "a transaction is still open on the changelog after a transaction timeout: \
                 restoring what is stable (batches committed behind it are left out)"
            );
        }
        Ok((low, stable, end.saturating_sub(stable).max(0)))
    }

    /// A reader of `config`'s changelog (outside the consumer group), beating `health` as it reads.
    pub fn new(config: &KafkaConfig, health: Arc<Health>) -> Result<Self, KafkaError> {
        let mut uncommitted = config.changelog_reader();
        uncommitted.set("isolation.level", "read_uncommitted");
        Ok(ChangelogReader {
            consumer: config.changelog_reader().create()?,
            uncommitted: uncommitted.create()?,
            health,
        })
    }

    /// Starts restoring `shard` into `pipeline` (see [`RestoreJob`]): waits for the changelog's
    /// stable end, which bounds what the restore reads. The reading is done by
    /// [`ChangelogReader::step`].
    pub fn begin(
        &self,
        config: &KafkaConfig,
        shard: i32,
        committed: [Option<i64>; 4],
        pipeline: Pipeline,
    ) -> Result<RestoreJob, KafkaError> {
        let (low, stable, behind) = self.stable_watermarks(config, shard)?;
        let range = (low, stable);
        Ok(RestoreJob {
            shard,
            committed,
            range,
            next: range.0,
            phase: Phase::Locate(Box::default()),
            snapshot: None,
            loading: Loading::default(),
            fallbacks: Vec::new(),
            located: Vec::new(),
            history_deleted: false,
            best_effort: false,
            done: Restored { first_offset: range.0, behind_open_transaction: behind, ..Restored::default() },
            read_before: 0,
            pipeline,
            tenants: Tenants::default(),
            steps: 0,
            silent: Duration::ZERO,
        })
    }

    /// Re-applies the changelog of `shard` to `pipeline`, all of it now: [`ChangelogReader::begin`]
    /// and [`ChangelogReader::step`] until done.
    pub fn restore_shard(
        &self,
        config: &KafkaConfig,
        shard: i32,
        committed: [Option<i64>; 4],
        stages: &EngineConfig,
    ) -> Result<(Restored, Pipeline, Tenants), KafkaError> {
        let mut job = self.begin(config, shard, committed, fresh(stages))?;
        while !self.step(config, &mut job, Duration::MAX, stages)? {}
        Ok(job.finish())
    }

    /// Reads on in `job` for about `budget` (at least one record, or the silence of one poll);
    /// `true` once the restore is done. An error leaves the job where its last record left it:
    /// stepping again goes on from there.
    pub fn step(
        &self,
        config: &KafkaConfig,
        job: &mut RestoreJob,
        budget: Duration,
        stages: &EngineConfig,
    ) -> Result<bool, KafkaError> {
        let started = Instant::now();
        job.steps += 1;
        loop {
            let (low, high) = job.range;
            if job.loading.failed.is_some() || (job.next >= high && job.snapshot.is_some() && !job.loading.loaded) {
                // The snapshot chosen could not be read back (or its parts were gone by the
                // time they were read): the next older one is, or else the whole changelog.
                let why = job.loading.failed.take().unwrap_or_else(|| "its parts were not all there".into());
                let passed_over = job.done.snapshots_passed_over + 1;
                job.snapshot = job.fallbacks.pop();
                let from = job.snapshot.as_ref().map_or(low, |c| c.first);
                tracing::error!(
                    shard = job.shard,
                    reason = %why,
                    from,
                    older_snapshot = job.snapshot.is_some(),
                    "snapshot not read back; restoring from an older one or the changelog's start"
                );
                job.restart(from, stages, Phase::Detect { seen: Default::default(), copies: HashMap::new() });
                job.done.snapshots_passed_over = passed_over;
            } else if job.next >= high {
                // The pass is over. After the first (locating the snapshot to start from), the
                // state is read from there; after that, done, unless it found copies to leave
                // out on another pass.
                let phase = match &mut job.phase {
                    Phase::Locate(locating) => {
                        let found = std::mem::take(&mut locating.found);
                        let (mut usable, unusable, best_effort) = choose(found, &job.committed, locating.deleted);
                        job.best_effort = best_effort;
                        job.history_deleted = locating.deleted;
                        job.located = std::mem::take(&mut locating.located);
                        // Newest last: popped first.
                        job.snapshot = usable.pop();
                        job.fallbacks = usable;
                        job.done.snapshots_passed_over = unusable;
                        Phase::Detect { seen: Default::default(), copies: HashMap::new() }
                    }
                    Phase::Detect { copies, .. } if !copies.is_empty() => Phase::LastCopies(std::mem::take(copies)),
                    _ => return Ok(true),
                };
                let from = job.snapshot.as_ref().map_or(low, |c| c.first);
                let passed_over = job.done.snapshots_passed_over;
                // The first pass only finds snapshots: what it read is not counted as read.
                if !matches!(job.phase, Phase::Locate(..)) {
                    job.read_before += job.done.read;
                }
                job.restart(from, stages, phase);
                job.done.snapshots_passed_over = passed_over;
            }
            self.read_for(config, stages, job, started, budget)?;
            // Asked to stop: the job stays where it is (read_for gave up early).
            if (started.elapsed() >= budget || self.health.stop_requested()) && job.next < job.range.1 {
                return Ok(false);
            }
        }
    }

    /// Reads `job`'s changelog from its next offset until the pass's end or `budget` after
    /// `started` (at least one record), applying what its committed offsets and phase let
    /// through.
    fn read_for(
        &self,
        config: &KafkaConfig,
        stages: &EngineConfig,
        job: &mut RestoreJob,
        started: Instant,
        budget: Duration,
    ) -> Result<(), KafkaError> {
        let _release = Release(&self.consumer);
        let reader = &self.consumer;
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let topic = config.topics.changelog.as_str();
        let (shard, high, committed) = (job.shard, job.range.1, job.committed);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, shard, Offset::Offset(job.next))?;
        reader.assign(&tpl)?;
        drop(tpl);
        let decoder = EntryDecoder::default();
        let lane_of = |channel| MERGE_ORDER.iter().position(|&c| c == channel).expect("every channel has a lane");
        // Silence for ten request timeouts fails the restore, however it is spread over steps
        // (time between steps, e.g. a rebalance, is not counted); a long changelog read
        // steadily does not (the count restarts with every record).
        let RestoreJob { next, phase, done, pipeline, tenants, silent, snapshot, loading, .. } = job;
        while *next < high {
            self.health.beat();
            let polled_at = Instant::now();
            let msg = match reader.poll(Duration::from_millis(200)) {
                None => {
                    *silent += polled_at.elapsed();
                    // Asked to stop: the job goes on later, if at all (nothing was produced).
                    if self.health.stop_requested() {
                        return Ok(());
                    }
                    if *silent > timeout * 10 {
                        return Err(silence());
                    }
                    if started.elapsed() >= budget {
                        return Ok(());
                    }
                    continue;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    // The end the partition's leader reports now. Below the range's end, it is
                    // a new leader whose high watermark has not caught up yet: the records up
                    // to the range's end are committed, so the reader waits for them (silence
                    // counted) rather than restoring without them.
                    // No position yet: nothing came since the assignment, which fetched from
                    // `next`.
                    let at = position_of(reader, topic, shard).unwrap_or(*next);
                    if at < high {
                        tracing::warn!(shard, at, high, "changelog end reported below the restore's range; waiting");
                        *silent += polled_at.elapsed();
                        continue;
                    }
                    *next = high;
                    break;
                }
                Some(Err(e)) => return Err(e),
                // Past the range (its last offsets were transaction markers, which are not
                // delivered): written since the restore began, not part of this state.
                Some(Ok(m)) if m.offset() >= high => {
                    *next = high;
                    break;
                }
                Some(Ok(m)) => m,
            };
            *silent = Duration::ZERO;
            *next = msg.offset() + 1;
            done.read += 1;
            match (&mut *phase, snapshot.as_ref()) {
                (Phase::Locate(locating), _) => locate(&msg, locating, &lane_of),
                (_, Some(chosen)) if !loading.loaded => load(&msg, chosen, loading, stages, pipeline, done, &lane_of),
                _ => {
                    let before = snapshot.as_ref().map(|c| c.position);
                    apply_record(&msg, shard, committed, before, phase, done, pipeline, tenants, &decoder, &lane_of);
                }
            }
            if loading.failed.is_some() {
                // The snapshot could not be read back: the step starts over from another.
                break;
            }
            if started.elapsed() >= budget {
                break;
            }
        }
        Ok(())
    }
}

/// Where `reader` fetches `topic`'s partition `shard` next, when it knows.
fn position_of(reader: &BaseConsumer, topic: &str, shard: i32) -> Option<i64> {
    let positions = reader.position().ok()?;
    match positions.find_partition(topic, shard)?.offset() {
        Offset::Offset(at) => Some(at),
        _ => None,
    }
}

/// Applies one changelog record of `shard` read in `phase` (see [`ChangelogReader::step`]).
#[allow(clippy::too_many_arguments)]
fn apply_record(
    msg: &rdkafka::message::BorrowedMessage<'_>,
    shard: i32,
    committed: [Option<i64>; 4],
    in_snapshot: Option<[Option<i64>; 4]>,
    phase: &mut Phase,
    done: &mut Restored,
    pipeline: &mut Pipeline,
    tenants: &mut Tenants,
    decoder: &EntryDecoder,
    lane_of: &dyn Fn(Channel) -> usize,
) {
    let written_at = msg.timestamp().to_millis();
    // A tombstone: a record made obsolete by a snapshot (and deleted by compaction).
    let Some(value) = msg.payload() else { return };
    let entries = match changelog::decode(value) {
        Ok(Record::Events(e)) => e,
        // Another snapshot (older, or not usable): its state is not read.
        Ok(Record::Snapshot(_)) => return,
        Ok(Record::Clock(clock)) => {
            // Moved at the same point of the sequence as when it was written, if the
            // work before it was committed, and not by an attempt whose records are
            // applied again later (that attempt's moves were not the committed ones).
            // (`copies` holds the records whose last copy is still to come.)
            let superseded = |copies: &HashMap<(usize, i64), u32>| {
                copies.keys().any(|&(lane, offset)| clock.position[lane].is_some_and(|p| offset < p))
            };
            let later_attempt = matches!(&*phase, Phase::LastCopies(copies) if superseded(copies));
            if clock.is_committed(&committed) && !later_attempt {
                let tenant = tenants.get(clock.tenant);
                pipeline.advance_clock(&tenant, EventTime(clock.time));
                done.clocks += 1;
                if let Some(at) = written_at {
                    done.clocks_set_at.insert(tenant, at);
                }
            }
            return;
        }
        Err(e) => {
            tracing::warn!(shard, offset = msg.offset(), error = %e, "changelog record skipped");
            done.unreadable += 1;
            return;
        }
    };
    for entry in entries {
        let lane = lane_of(entry.channel);
        // Applied before the snapshot the state was read from: it holds the event already.
        if in_snapshot.is_some_and(|at| at[lane].is_some_and(|p| entry.source_offset < p)) {
            done.in_snapshot += 1;
            continue;
        }
        let limit = committed[lane].unwrap_or(i64::MIN);
        if entry.source_offset >= limit {
            done.uncommitted += 1;
            done.without_commit += u64::from(limit == i64::MIN);
            continue;
        }
        let key = (lane, entry.source_offset);
        match &mut *phase {
            Phase::Detect { seen, copies } => {
                if !seen[lane].insert(entry.source_offset) {
                    *copies.entry(key).or_insert(1) += 1;
                }
            }
            Phase::LastCopies(copies) => match copies.get_mut(&key) {
                Some(left) if *left > 1 => {
                    *left -= 1;
                    done.superseded += 1;
                    continue;
                }
                // The last copy: applied, and no longer waited for.
                Some(_) => {
                    copies.remove(&key);
                }
                None => {}
            },
            // Never applies (read_for locates in that pass).
            Phase::Locate(..) => return,
        }
        let wire = match decoder.decode(&entry) {
            Ok(w) => w,
            Err(e) => {
                // The code alone: a decoder's message may quote the record's values.
                tracing::warn!(shard, offset = msg.offset(), reason = e.code(), "changelog event undecodable");
                done.unreadable += 1;
                continue;
            }
        };
        match wire.into_restored_event(|name| tenants.get(name)) {
            Ok(event) => {
                if let Some(at) = written_at {
                    set_at(&mut done.clocks_set_at, &event.tenant, at);
                }
                pipeline.apply(event);
                done.applied += 1;
                done.applied_bytes += entry.datum.len() as u64;
            }
            Err(e) => {
                tracing::warn!(shard, offset = msg.offset(), reason = e.code(), "changelog event invalid");
                done.unreadable += 1;
            }
        }
    }
}

/// Notes that `tenant`'s clock was set at `at` (ms), cloning the tenant only the first time.
fn set_at(clocks_set_at: &mut HashMap<Tenant, i64>, tenant: &Tenant, at: i64) {
    match clocks_set_at.get_mut(tenant) {
        Some(t) => *t = at,
        None => {
            clocks_set_at.insert(tenant.clone(), at);
        }
    }
}

/// What a pass over the changelog does about input records applied more than once.
enum Phase {
    /// The first pass: finds the snapshots and every record's key; applies nothing.
    Locate(Box<Locating>),
    /// Notes every (lane, input offset) in `seen`, and counts the copies of those seen more
    /// than once in `copies`.
    Detect { seen: [OffsetSet; 4], copies: HashMap<(usize, i64), u32> },
    /// Applies only the last copy of each counted one (forgotten once applied).
    LastCopies(HashMap<(usize, i64), u32>),
}

/// A shard's restore, read in steps ([`ChangelogReader::step`]) so that the loop serves the
/// group (and other shards) between them however long the changelog.
///
/// A first pass finds the snapshots and every record's key. The next reads back the snapshot
/// chosen (the newest usable one; see `choose`), then re-applies every entry after it whose
/// input offset is below the committed offset of its partition and not in the snapshot, in
/// changelog order, and of an input record applied more than once (an attempt that was not
/// committed, then the attempt that was) only its last copy: the attempts may have applied
/// the same records in other orders, and the committed outputs came from the last. When the
/// changelog holds such copies, that pass's state is dropped and the changelog read again from
/// the snapshot with the earlier copies left out.
pub struct RestoreJob {
    shard: i32,
    committed: [Option<i64>; 4],
    /// The changelog's first offset and stable end when the restore began.
    range: (i64, i64),
    /// The next changelog offset to read.
    next: i64,
    phase: Phase,
    /// What the current pass did.
    done: Restored,
    /// Records read by the first pass, when there are two.
    read_before: u64,
    pipeline: Pipeline,
    tenants: Tenants,
    /// The snapshot the state is read back from, once the first pass chose one.
    snapshot: Option<Chosen>,
    /// Its parts, as the current pass reads them.
    loading: Loading,
    /// Older usable snapshots, newest last: read back when the chosen one cannot be.
    fallbacks: Vec<Chosen>,
    /// Every record's offset and key, as the first pass found them.
    located: Vec<Located>,
    /// Whether the first pass found signs that records were deleted (tombstones, or a log that
    /// begins with a snapshot's parts).
    history_deleted: bool,
    /// Whether the snapshot chosen is one a later attempt superseded (the best state left).
    best_effort: bool,
    steps: u64,
    /// How long its polls have waited since the last changelog record: ten request timeouts,
    /// across steps, fail the restore.
    silent: Duration,
}

impl RestoreJob {
    /// Starts a pass from `from` with an empty state.
    fn restart(&mut self, from: i64, stages: &EngineConfig, phase: Phase) {
        self.phase = phase;
        self.pipeline = fresh(stages);
        self.tenants = Tenants::default();
        self.loading = Loading::default();
        self.done = Restored {
            first_offset: self.range.0,
            behind_open_transaction: self.done.behind_open_transaction,
            ..Restored::default()
        };
        self.next = from;
    }

    /// The shard restored.
    pub fn shard(&self) -> i32 {
        self.shard
    }

    /// The committed input offsets it restores up to.
    pub fn committed(&self) -> [Option<i64>; 4] {
        self.committed
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// What the restore did, the restored pipeline and its tenants (once a step said done).
    pub fn finish(self) -> (Restored, Pipeline, Tenants) {
        let mut done = self.done;
        done.read += self.read_before;
        done.keys = sort_keys(self.located, self.snapshot.as_ref());
        done.history_deleted = self.history_deleted;
        done.best_effort_snapshot = self.best_effort && done.snapshot_offset.is_some();
        (done, self.pipeline, self.tenants)
    }
}

/// An empty pipeline of `stages` (validated when the service started).
fn fresh(stages: &EngineConfig) -> Pipeline {
    Pipeline::new(stages).expect("the configuration made a pipeline before")
}

/// A snapshot found by the first pass.
#[derive(Debug)]
struct Candidate {
    id: u64,
    position: [Option<i64>; 4],
    /// Offset of its first part.
    first: i64,
    /// Per stage (engine, ordered): its part count, and the parts seen.
    parts: [(u32, BTreeSet<u32>); 2],
    /// Whether every part of both stages was seen.
    complete: bool,
    /// An event below its position came after it was complete: a later attempt applied its
    /// events again (the attempt that wrote it was not the one committed).
    superseded: bool,
    /// Two part counts for one stage: not one snapshot's parts.
    miscounted: bool,
    /// A tombstone came after it: once committed, it made the records before it obsolete.
    tombstone_after: bool,
}

/// The snapshot a restore reads back.
#[derive(Debug)]
struct Chosen {
    id: u64,
    position: [Option<i64>; 4],
    first: i64,
}

/// A snapshot's parts, gathered until both stages are whole.
#[derive(Debug, Default)]
struct Loading {
    /// Per stage (engine, ordered), its parts by index.
    parts: [BTreeMap<u32, Vec<u8>>; 2],
    /// Per stage, its part count.
    counts: [u32; 2],
    loaded: bool,
    /// Why it could not be read back.
    failed: Option<String>,
}

/// A changelog record's offset and key, with the id of the snapshot it is a part of.
type Located = (i64, Box<[u8]>, Option<u64>);

/// What the first pass gathers.
#[derive(Debug, Default)]
struct Locating {
    found: Vec<Candidate>,
    located: Vec<Located>,
    /// Keys of the records seen so far (with a value).
    keys: std::collections::HashSet<Box<[u8]>>,
    /// Whether a record was seen yet.
    seen_any: bool,
    /// Records were deleted: a tombstone whose record is not there before it (compaction
    /// removed it), or a log that begins with a snapshot part.
    deleted: bool,
}

/// Sorts the keys of `located` for the shard: records before the snapshot `chosen` are
/// obsolete (its state holds them), the event batches and clock moves after it will be at the
/// next snapshot, its parts at the one after. Without a snapshot, every batch and move counts
/// as after one. A key also written after the snapshot (a batch reprocessed with the same
/// bounds) is not obsolete: its tombstone would delete the later record too.
fn sort_keys(located: Vec<Located>, chosen: Option<&Chosen>) -> ChangelogKeys {
    let mut keys = ChangelogKeys::default();
    let first = chosen.map_or(i64::MIN, |c| c.first);
    let mut before = Vec::new();
    for (offset, key, part_of) in located {
        match part_of {
            Some(id) if chosen.is_some_and(|c| c.id == id) => keys.snapshot.push(key),
            _ if offset < first => before.push(key),
            // Parts of snapshots after the one chosen (not usable) are left alone.
            Some(_) => {}
            None => keys.unsnapped.push(key),
        }
    }
    let kept: std::collections::HashSet<&[u8]> = keys.unsnapped.iter().chain(&keys.snapshot).map(|k| &k[..]).collect();
    let obsolete: Vec<Box<[u8]>> = before.into_iter().filter(|k| !kept.contains(&k[..])).collect();
    keys.obsolete = obsolete;
    keys
}

/// Notes what record `msg` says of the snapshots, and its key (first pass).
fn locate(msg: &rdkafka::message::BorrowedMessage<'_>, locating: &mut Locating, lane_of: &dyn Fn(Channel) -> usize) {
    let Some(value) = msg.payload() else {
        // A tombstone of a record a snapshot made obsolete. Its record gone from before it
        // means compaction ran: what came before the snapshots after it is gone. And the
        // snapshots before it may have lost what came after them.
        locating.deleted |= !locating.keys.contains(msg.key().unwrap_or_default());
        for c in &mut locating.found {
            c.tombstone_after = true;
        }
        return;
    };
    let decoded = changelog::decode(value);
    let first = !std::mem::replace(&mut locating.seen_any, true);
    let key: Box<[u8]> = msg.key().unwrap_or_default().into();
    if let Ok(record) = &decoded {
        let part_of = match record {
            Record::Snapshot(part) => Some(part.id),
            _ => None,
        };
        // A changelog's first records are events: one that begins with a snapshot lost
        // what came before it.
        locating.deleted |= first && part_of.is_some();
        locating.located.push((msg.offset(), key.clone(), part_of));
    }
    // An unreadable record's too: its tombstone, with the record still there, deletes nothing.
    // (Unreadable records are never deleted: a later version may read them.)
    locating.keys.insert(key);
    let found = &mut locating.found;
    match decoded {
        Ok(Record::Snapshot(part)) => {
            let at = match found.iter().rposition(|c| c.id == part.id && c.position == part.position) {
                Some(at) => at,
                None => {
                    found.push(Candidate {
                        id: part.id,
                        position: part.position,
                        first: msg.offset(),
                        parts: Default::default(),
                        complete: false,
                        superseded: false,
                        miscounted: false,
                        tombstone_after: false,
                    });
                    found.len() - 1
                }
            };
            let c = &mut found[at];
            if c.complete {
                // Its parts again: the batch that wrote it was sent again whole (at_least_once
                // after a failed delivery), the events it holds first: those do not supersede it.
                c.superseded = c.miscounted;
            }
            let (count, seen) = &mut c.parts[part.stage as usize - 1];
            if *count != 0 && *count != part.parts {
                c.miscounted = true;
                c.superseded = true;
            }
            *count = part.parts;
            seen.insert(part.part);
            c.complete = c.parts.iter().all(|(n, seen)| *n > 0 && seen.len() == *n as usize);
        }
        Ok(Record::Events(entries)) => {
            for c in found.iter_mut().filter(|c| c.complete && !c.superseded) {
                c.superseded =
                    entries.iter().any(|e| c.position[lane_of(e.channel)].is_some_and(|p| e.source_offset < p));
            }
        }
        _ => {}
    }
}

/// The snapshots a restore may read back, oldest first: whole, covered by the committed
/// offsets and not superseded by a later attempt; once records were deleted, none older than
/// the newest committed snapshot followed by tombstones (those deleted what came before it,
/// which the older ones need after them). When records were deleted and none is left so, the
/// newest superseded one after that point is the best state there is: returned, flagged.
/// Also how many of those found are not used so.
fn choose(found: Vec<Candidate>, committed: &[Option<i64>; 4], deleted: bool) -> (Vec<Chosen>, u64, bool) {
    let covered = |c: &Candidate| c.complete && changelog::covered(&c.position, committed);
    let after = if deleted {
        found.iter().filter(|c| covered(c) && c.tombstone_after).map(|c| c.first).max().unwrap_or(i64::MIN)
    } else {
        i64::MIN
    };
    let usable = |c: &Candidate| covered(c) && !c.superseded && c.first >= after;
    let chosen = |c: &Candidate| Chosen { id: c.id, position: c.position, first: c.first };
    let mut out: Vec<Chosen> = found.iter().filter(|c| usable(c)).map(chosen).collect();
    let mut best_effort = false;
    if out.is_empty() && deleted {
        if let Some(c) = found.iter().rev().find(|c| covered(c) && c.first >= after) {
            out.push(chosen(c));
            best_effort = true;
        }
    }
    let unusable = (found.len() - out.len()) as u64;
    (out, unusable, best_effort)
}

/// Takes record `msg` while the chosen snapshot's parts are read: its parts are gathered, and
/// once both stages are whole, `pipeline` is read back from them. Other records there belong
/// to the transaction that wrote the snapshot (events below its position, clock moves before
/// it): it holds them.
fn load(
    msg: &rdkafka::message::BorrowedMessage<'_>,
    chosen: &Chosen,
    loading: &mut Loading,
    stages: &EngineConfig,
    pipeline: &mut Pipeline,
    done: &mut Restored,
    lane_of: &dyn Fn(Channel) -> usize,
) {
    let part = match msg.payload().map(changelog::decode) {
        Some(Ok(Record::Snapshot(part))) => part,
        Some(Ok(Record::Events(entries))) => {
            // Events of the snapshot's own transaction are below its position. Others (a
            // second writer on the partition) cannot be applied before the state they
            // follow: counted, not passed over in silence.
            let beyond = entries
                .iter()
                .filter(|e| chosen.position[lane_of(e.channel)].is_none_or(|p| e.source_offset >= p))
                .count();
            if beyond > 0 {
                tracing::error!(
                    shard = msg.partition(),
                    offset = msg.offset(),
                    beyond,
                    "events past a snapshot's position among its parts, skipped"
                );
                done.unreadable += beyond as u64;
            }
            return;
        }
        _ => return,
    };
    if part.id != chosen.id || part.position != chosen.position {
        return;
    }
    let stage = part.stage as usize - 1;
    loading.counts[stage] = part.parts;
    loading.parts[stage].insert(part.part, part.bytes.to_vec());
    let whole = |i: usize| loading.counts[i] > 0 && loading.parts[i].len() == loading.counts[i] as usize;
    if !(whole(0) && whole(1)) {
        return;
    }
    let [engine, ordered] =
        std::mem::take(&mut loading.parts).map(|parts| parts.into_values().flatten().collect::<Vec<u8>>());
    match Pipeline::from_stage_snapshots(&engine, &ordered, stages) {
        Ok(p) => {
            *pipeline = p;
            loading.loaded = true;
            done.snapshot_offset = Some(chosen.first);
            done.snapshot_engine_bytes = engine.len() as u64;
            if let Some(at) = msg.timestamp().to_millis() {
                for (tenant, _, _) in pipeline.clocks() {
                    done.clocks_set_at.insert(tenant, at);
                }
            }
        }
        Err(e) => loading.failed = Some(e.to_string()),
    }
}

/// A set of input offsets as disjoint ranges (start -> inclusive end): an attempt applies a
/// lane's records in offset order, so a changelog's offsets form few ranges (broken only where
/// a record was dead-lettered or an attempt began again).
#[derive(Debug, Default)]
struct OffsetSet(BTreeMap<i64, i64>);

impl OffsetSet {
    /// Adds `x`; `false` if it was there already.
    fn insert(&mut self, x: i64) -> bool {
        let before = self.0.range(..=x).next_back().map(|(&start, &end)| (start, end));
        if before.is_some_and(|(_, end)| x <= end) {
            return false;
        }
        // Joined to the range ending just before it, and to the one starting just after it.
        let start = match before {
            Some((start, end)) if end.checked_add(1) == Some(x) => start,
            _ => x,
        };
        let end = match x.checked_add(1).and_then(|next| self.0.remove(&next)) {
            Some(end) => end,
            None => x,
        };
        self.0.insert(start, end);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedCluster;
    use omnistitch_model::Channel;

    /// A changelog record to write.
    enum Rec<'a> {
        /// A batch of (channel, input offset); the event is the channel's sample.
        Batch(&'a [(Channel, i64)]),
        /// A clock move of tenant `acme` to (time, after positions).
        Clock(i64, [Option<i64>; 4]),
        /// A record without a value, of a key no record has.
        Tombstone,
        /// A record this version cannot read (of a later one), key `later`.
        Unreadable,
        /// The tombstone of [`Rec::Unreadable`]'s key.
        TombstoneOfUnreadable,
        /// The tombstone of the batch of these entries.
        TombstoneOf(&'a [(Channel, i64)]),
        /// A snapshot of the state after the events of these entries (the channels'
        /// samples), at `position` (next offset per channel): its stages' parts, the ordered
        /// stages' left out when `whole` is false, the engine's damaged when `damaged`.
        Snapshot { upto: &'a [(Channel, i64)], position: &'a [(Channel, i64)], whole: bool, damaged: bool },
    }

    /// Per merge lane, the offset given for its channel in `at`.
    fn lanes(at: &[(Channel, i64)]) -> [Option<i64>; 4] {
        let mut out = [None; 4];
        for &(channel, offset) in at {
            out[MERGE_ORDER.iter().position(|&c| c == channel).unwrap()] = Some(offset);
        }
        out
    }

    /// The parts (key, value) of a snapshot record of [`Rec::Snapshot`].
    fn snapshot_parts(
        upto: &[(Channel, i64)],
        position: [Option<i64>; 4],
        whole: bool,
        damaged: bool,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        use crate::changelog::{SnapshotPart, SnapshotStage};
        let mut p = Pipeline::new(&EngineConfig::default()).unwrap();
        let mut tenants = Tenants::default();
        for &(channel, _) in upto {
            p.apply(crate::registry::tests::sample(channel).into_event(|n| tenants.get(n)).unwrap());
        }
        let (engine, ordered) = p.into_parts();
        let mut engine = engine.snapshot();
        if damaged {
            engine.truncate(engine.len() / 2);
        }
        let mut stages = vec![(SnapshotStage::Engine, engine)];
        if whole {
            stages.push((SnapshotStage::Ordered, ordered.unwrap().snapshot()));
        }
        let mut out = Vec::new();
        for (stage, state) in &stages {
            for part in SnapshotPart::split(7, position, *stage, state) {
                let mut value = Vec::new();
                part.write_value(&mut value);
                out.push((part.key().to_vec(), value));
            }
        }
        out
    }

    /// The timestamp of the first changelog record written; the `i`th has `WRITTEN_AT + i`.
    const WRITTEN_AT: i64 = 1_767_000_000_000;

    /// A mock cluster with `records` on the changelog, restored with `committed`.
    fn restored_records(records: &[Rec<'_>], committed: [Option<i64>; 4]) -> (Restored, Pipeline) {
        use crate::changelog::{ChangelogBatch, ChangelogEntry, ClockEntry};
        use omnistitch_codec::datum::encode_input;
        use omnistitch_engine::EngineConfig;
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = EmbeddedCluster::start(1, &base).unwrap();
        let config = cluster.service_config(base);
        let topic = config.topics.changelog.as_str();
        let producer: ThreadedProducer<DefaultProducerContext> = config.client().create().unwrap();
        for (i, record) in records.iter().enumerate() {
            let (mut key, mut value) = (Vec::new(), Vec::new());
            match record {
                Rec::Batch(entries) => {
                    let mut batch = ChangelogBatch::default();
                    for &(channel, source_offset) in *entries {
                        let datum = encode_input(&crate::registry::tests::sample(channel)).unwrap();
                        batch.push(&ChangelogEntry { channel, source_offset, datum: &datum, writer: None });
                    }
                    key.extend_from_slice(&batch.key().unwrap());
                    batch.write_value(&mut value);
                }
                &Rec::Clock(time, position) => {
                    let clock = ClockEntry { tenant: "acme", time, position };
                    key = clock.key();
                    clock.write_value(&mut value);
                }
                Rec::Tombstone => key.extend_from_slice(b"gone"),
                Rec::Unreadable => {
                    key.extend_from_slice(b"later");
                    value.extend_from_slice(b"\xff\xff a format of a later version");
                }
                Rec::TombstoneOfUnreadable => key.extend_from_slice(b"later"),
                Rec::TombstoneOf(entries) => {
                    let mut batch = ChangelogBatch::default();
                    for &(channel, source_offset) in *entries {
                        batch.push(&ChangelogEntry { channel, source_offset, datum: b"", writer: None });
                    }
                    key.extend_from_slice(&batch.key().unwrap());
                }
                Rec::Snapshot { .. } => {}
            }
            if let &Rec::Snapshot { upto, position, whole, damaged } = record {
                for (key, value) in snapshot_parts(upto, lanes(position), whole, damaged) {
                    let out = BaseRecord::<[u8], Vec<u8>>::to(topic).partition(0).key(&key[..]).payload(&value);
                    producer.send(out.timestamp(WRITTEN_AT + i as i64)).unwrap();
                }
                producer.flush(Duration::from_secs(10)).unwrap();
                continue;
            }
            let written_at = WRITTEN_AT + i as i64;
            let mut out = BaseRecord::<[u8], Vec<u8>>::to(topic).partition(0).key(&key[..]).timestamp(written_at);
            if !matches!(record, Rec::Tombstone | Rec::TombstoneOf(_) | Rec::TombstoneOfUnreadable) {
                out = out.payload(&value);
            }
            producer.send(out).unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
        let stages = EngineConfig::default();
        let reader = ChangelogReader::new(&config, Arc::new(Health::default())).unwrap();
        let (whole, pipeline, _) = reader.restore_shard(&config, 0, committed, &stages).unwrap();
        // The same restore in the least steps there are (a record each, or one poll's silence)
        // ends in the same state.
        let mut job = reader.begin(&config, 0, committed, fresh(&stages)).unwrap();
        while !reader.step(&config, &mut job, Duration::ZERO, &stages).unwrap() {}
        // A step per record (the last of a first pass and the first of a second share one).
        let steps = job.steps();
        assert!(steps + 1 >= whole.read, "{steps} steps for {} records", whole.read);
        let (stepped, stepped_pipeline, _) = job.finish();
        assert_eq!(stepped, whole);
        assert_eq!(stepped_pipeline.engine().stats(), pipeline.engine().stats());
        assert_eq!(stepped_pipeline.clocks(), pipeline.clocks());
        (stepped, stepped_pipeline)
    }

    /// [`restored_records`] of batches only.
    fn restored(batches: &[&[(Channel, i64)]], committed: [Option<i64>; 4]) -> (Restored, Pipeline) {
        let records: Vec<Rec<'_>> = batches.iter().map(|b| Rec::Batch(b)).collect();
        restored_records(&records, committed)
    }

    /// A quiet tenant's clock moves are re-applied where the committed offsets cover the
    /// records applied before them, and left out otherwise.
    #[test]
    fn clock_moves_restore_when_the_work_before_them_was_committed() {
        use omnistitch_model::Tenant;
        let lane = MERGE_ORDER.iter().position(|&c| c == Channel::Chat).unwrap();
        let at = |offset| {
            let mut position = [None; 4];
            position[lane] = Some(offset);
            position
        };
        let (t1, t2) = (1_767_600_000_000, 1_767_700_000_000);
        let records = [Rec::Batch(&[(Channel::Chat, 0)]), Rec::Clock(t1, at(1)), Rec::Clock(t2, at(2))];
        let committed = |offset| {
            let mut c = [None; 4];
            c[lane] = Some(offset);
            c
        };
        let (r, pipeline) = restored_records(&records, committed(1));
        assert_eq!((r.applied, r.clocks), (1, 1), "the second move came after an uncommitted record");
        assert_eq!(pipeline.clocks()[0].1, EventTime(t1));
        // The clock was last set by the first move, the second record.
        assert_eq!(r.clocks_set_at.get(&Tenant::new("acme")), Some(&(WRITTEN_AT + 1)));
        let (r, pipeline) = restored_records(&records, committed(5));
        assert_eq!((r.applied, r.clocks), (1, 2));
        let (acme, clock, latest_event) = pipeline.clocks()[0].clone();
        assert_eq!((acme, clock), (Tenant::new("acme"), EventTime(t2)));
        assert!(latest_event < EventTime(t1), "moves are not events");
        assert_eq!(r.clocks_set_at.get(&Tenant::new("acme")), Some(&(WRITTEN_AT + 2)));

        // An attempt that applied the record and moved the clock, then was not committed; the
        // committed attempt applied the record again and did not move: the move is left out.
        let records = [Rec::Batch(&[(Channel::Chat, 0)]), Rec::Clock(t1, at(1)), Rec::Batch(&[(Channel::Chat, 0)])];
        let (r, pipeline) = restored_records(&records, committed(1));
        assert_eq!((r.applied, r.superseded, r.clocks), (1, 1, 0));
        assert!(pipeline.clocks()[0].1 < EventTime(t1));
        assert_eq!(r.clocks_set_at.get(&Tenant::new("acme")), Some(&(WRITTEN_AT + 2)), "set by the event applied last");
    }

    /// A record without a value (the tombstone of a record a snapshot made obsolete) is read
    /// past.
    #[test]
    fn a_changelog_tombstone_is_read_past() {
        let lane = MERGE_ORDER.iter().position(|&c| c == Channel::Chat).unwrap();
        let mut committed = [None; 4];
        committed[lane] = Some(1);
        let records = [Rec::Batch(&[(Channel::Chat, 0)]), Rec::Tombstone];
        let (r, _) = restored_records(&records, committed);
        assert_eq!((r.read, r.applied, r.unreadable), (2, 1, 0));
    }

    /// Records an uncommitted attempt applied (email first) and the committed attempt applied
    /// again (chat first) restore in the committed attempt's order: the profile is the one the
    /// chat created, as in the outputs that were committed.
    #[test]
    fn records_applied_again_restore_in_the_last_attempts_order() {
        use omnistitch_model::{Identifier, IdentifierKind, ProfileId, Tenant};
        let (email, chat) = ((Channel::Email, 0), (Channel::Chat, 0));
        let (r, pipeline) = restored(&[&[email, chat], &[chat, email]], [Some(1); 4]);
        assert_eq!((r.read, r.applied, r.superseded), (4, 2, 2));
        let graph = pipeline.engine().identity().graph(&Tenant::new("acme")).unwrap();
        let zoe = graph.profile_of(&Identifier::new(IdentifierKind::Email, "zoe@mailbox.net"));
        assert_eq!(zoe, Some(ProfileId::derive("acme", "chat-1")));
    }

    /// A record whose only copy comes after higher offsets of its lane (batches a compacted
    /// changelog kept out of order, a record an earlier attempt dead-lettered) is applied: only
    /// real copies are left out.
    #[test]
    fn a_single_copy_after_higher_offsets_is_applied() {
        let later = [(Channel::Chat, 20), (Channel::Chat, 21)];
        let earlier = [(Channel::Chat, 10), (Channel::Chat, 11)];
        let (r, _) = restored(&[&later, &earlier], [Some(30); 4]);
        assert_eq!((r.applied, r.superseded), (4, 0));
    }

    #[test]
    fn offset_sets_know_what_they_hold_in_few_ranges() {
        let mut set = OffsetSet::default();
        for x in [5, 7, 6, 1, 2, 10] {
            assert!(set.insert(x), "{x}");
        }
        for x in [1, 2, 5, 6, 7, 10] {
            assert!(!set.insert(x), "{x} again");
        }
        assert!(set.insert(i64::MAX) && !set.insert(i64::MAX));
        let ranges: Vec<(i64, i64)> = set.0.iter().map(|(&s, &e)| (s, e)).collect();
        assert_eq!(ranges, [(1, 2), (5, 7), (10, 10), (i64::MAX, i64::MAX)]);
    }

    /// A restore waits while a transaction is open on the changelog (the stable end short of
    /// the log's end), and gives up waiting after its limit.
    #[test]
    fn restore_waits_for_open_transactions_to_end() {
        let pause = Duration::from_millis(1);
        let mut asked = 0;
        let settles = until_stable(Duration::from_secs(5), pause, || {
            asked += 1;
            Ok((0, if asked < 4 { 7 } else { 10 }, 10))
        });
        assert_eq!((settles.unwrap(), asked), ((0, 10, 10), 4));
        let never = until_stable(Duration::from_millis(20), pause, || Ok((0, 7, 10)));
        assert_eq!(never.unwrap(), (0, 7, 10), "past the limit: what is stable");
    }

    /// A restore after a broker came back finds the changelog partition again: the failed
    /// attempts refresh the metadata that the broker's absence left stale.
    #[test]
    fn watermarks_recover_once_the_leader_is_back() {
        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = EmbeddedCluster::start(3, &base).unwrap();
        let config = cluster.service_config(base);
        let topic = config.topics.changelog.as_str();
        cluster.cluster().partition_leader(topic, 0, Some(2)).unwrap();
        let reader = ChangelogReader::new(&config, Arc::new(Health::default())).unwrap();
        let timeout = Duration::from_secs(2);
        let attempt = || watermarks(&reader.consumer, topic, 0, timeout, &reader.health);
        // Tries for up to 4 s.
        let eventually = || {
            (0..40).any(|_| {
                let ok = attempt().is_ok();
                if !ok {
                    std::thread::sleep(Duration::from_millis(100));
                }
                ok
            })
        };
        assert!(eventually(), "the partition is readable before the fault");

        cluster.cluster().broker_down(2).unwrap();
        // The client learns the broker list without broker 2.
        let _ = reader.consumer.fetch_metadata(None, timeout);
        assert!(attempt().is_err(), "no leader while broker 2 is down");
        cluster.cluster().broker_up(2).unwrap();
        assert!(eventually(), "the partition is readable again once broker 2 is back");
    }

    /// A restore whose changelog goes silent fails after ten request timeouts of polling,
    /// however its steps are spread (short steps each find nothing), and pauses between steps
    /// do not count.
    #[test]
    fn a_silent_changelog_fails_the_restore_across_steps() {
        use omnistitch_engine::EngineConfig;
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = EmbeddedCluster::start(3, &base).unwrap();
        let mut config = cluster.service_config(base);
        config.request_timeout_ms = 200;
        let topic = config.topics.changelog.as_str();
        cluster.cluster().partition_leader(topic, 0, Some(2)).unwrap();
        let producer: ThreadedProducer<DefaultProducerContext> = config.client().create().unwrap();
        for _ in 0..2 {
            producer.send(BaseRecord::<[u8], [u8]>::to(topic).partition(0).payload(b"x")).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let stages = EngineConfig::default();
        let reader = ChangelogReader::new(&config, Arc::new(Health::default())).unwrap();
        // With 200 ms request timeouts a busy machine can time a first metadata fetch out: the
        // service retries the start of a restore, and so does this.
        let begun = Instant::now();
        let mut job = loop {
            match reader.begin(&config, 0, [None; 4], fresh(&stages)) {
                Ok(job) => break job,
                Err(e) => assert!(begun.elapsed() < Duration::from_secs(30), "the restore never began: {e}"),
            }
        };
        cluster.cluster().broker_down(2).unwrap();
        let started = Instant::now();
        let mut steps = 0;
        let timed_out = silence();
        loop {
            assert!(started.elapsed() < Duration::from_secs(30), "the silent restore never failed");
            match reader.step(&config, &mut job, Duration::from_millis(300), &stages) {
                Ok(done) => assert!(!done, "nothing was read"),
                Err(e) if e == timed_out => break,
                // The client's own report of the broker away: the service retries the step.
                Err(_) => {}
            }
            steps += 1;
            // A pause between steps (a round serving other shards) is not silence.
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(steps >= 3, "failed after {steps} steps: ten request timeouts are 2 s of polls");
        assert!(started.elapsed() >= Duration::from_secs(2));
    }

    /// A changelog whose first records are gone (here the mock broker's 5 MiB per partition;
    /// on a real cluster, retention set on the topic) is reported as truncated.
    #[test]
    fn a_changelog_missing_its_first_records_is_reported() {
        use omnistitch_engine::EngineConfig;
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = EmbeddedCluster::start(1, &base).unwrap();
        let config = cluster.service_config(base);
        let topic = config.topics.changelog.as_str();
        let producer: ThreadedProducer<DefaultProducerContext> = config.client().create().unwrap();
        let restore = || {
            let reader = ChangelogReader::new(&config, Arc::new(Health::default())).unwrap();
            let stages = EngineConfig::default();
            reader.restore_shard(&config, 0, [None; 4], &stages).unwrap().0
        };
        // Records that are not changelog batches: read and counted as unreadable, nothing more.
        let mut noise = 0x9e37_79b9_7f4a_7c15u64;
        let mut send = |n: usize, bytes: usize| {
            for _ in 0..n {
                let value: Vec<u8> = (0..bytes)
                    .map(|_| {
                        noise ^= noise << 13;
                        noise ^= noise >> 7;
                        noise ^= noise << 17;
                        noise as u8
                    })
                    .collect();
                producer.send(BaseRecord::<[u8], [u8]>::to(topic).partition(0).payload(&value)).unwrap();
                producer.flush(Duration::from_secs(10)).unwrap();
            }
        };
        send(2, 1_000);
        let whole = restore();
        assert_eq!((whole.first_offset, whole.read, whole.truncated()), (0, 2, false));
        // 6 MiB more: the broker drops the partition's oldest records.
        send(24, 256 * 1024);
        let cut = restore();
        assert!(cut.truncated(), "{cut:?}");
        assert_eq!(cut.first_offset + cut.read as i64, 26, "read from the first offset left to the end");
    }

    /// A restore reads the newest usable snapshot back and re-applies only what came after it;
    /// one that is not usable (past the committed offsets, superseded by a later attempt,
    /// missing a part, unreadable) is passed over, and the state comes from the changelog.
    #[test]
    fn a_restore_starts_from_the_newest_snapshot_it_can_use() {
        use Channel::{Chat, Email, Phone, Social};
        let before: &[(Channel, i64)] = &[(Chat, 0), (Email, 0)];
        let at: &[(Channel, i64)] = &[(Chat, 1), (Email, 1)];
        let after: &[(Channel, i64)] = &[(Phone, 0), (Social, 0)];
        let snapshot = |whole, damaged| Rec::Snapshot { upto: before, position: at, whole, damaged };
        let all = lanes(&[(Chat, 1), (Email, 1), (Phone, 1), (Social, 1)]);
        let stats = |p: &Pipeline| p.engine().stats().clone();

        let (plain, plain_state) = restored(&[before, after], all);
        assert_eq!((plain.applied, plain.snapshot_offset, plain.snapshots_passed_over), (4, None, 0));
        let (r, state) = restored_records(&[Rec::Batch(before), snapshot(true, false), Rec::Batch(after)], all);
        assert_eq!((r.applied, r.snapshot_offset, r.snapshots_passed_over), (2, Some(1), 0), "{r:?}");
        assert_eq!(plain.snapshot_engine_bytes, 0);
        assert!(r.snapshot_engine_bytes > 0, "the snapshot's size is known");
        assert_eq!(stats(&state), stats(&plain_state));
        assert_eq!(state.engine().stats().events, 4);
        // The batch before the snapshot is obsolete; the one after waits for the next.
        let key = |b: &[(Channel, i64)]| -> Box<[u8]> {
            let mut batch = crate::changelog::ChangelogBatch::default();
            for &(channel, source_offset) in b {
                batch.push(&crate::changelog::ChangelogEntry { channel, source_offset, datum: b"", writer: None });
            }
            Box::from(&batch.key().unwrap()[..])
        };
        assert_eq!((r.keys.obsolete.clone(), r.keys.unsnapped.clone()), (vec![key(before)], vec![key(after)]));
        assert_eq!(r.keys.snapshot.len(), 2, "one part per stage");
        assert_eq!((plain.keys.obsolete.len(), plain.keys.unsnapped.len()), (0, 2), "without a snapshot");

        // Copies of the snapshot's events after it (from the attempt that wrote it) are in it.
        let (r, state) = restored_records(
            &[Rec::Batch(before), snapshot(true, false), Rec::Batch(&[(Chat, 0)]), Rec::Batch(after)],
            all,
        );
        assert_eq!((r.snapshot_offset, r.snapshots_passed_over), (None, 1), "a later attempt applied its events again");
        assert_eq!(stats(&state), stats(&plain_state));
        // The batch that wrote it sent again whole (its events, then its parts): still usable.
        let again =
            [Rec::Batch(before), snapshot(true, false), Rec::Batch(before), snapshot(true, false), Rec::Batch(after)];
        let (r, state) = restored_records(&again, all);
        assert_eq!((r.applied, r.snapshot_offset, r.snapshots_passed_over), (2, Some(1), 0), "{r:?}");
        assert_eq!(stats(&state), stats(&plain_state));

        // Past the committed offsets: written by an attempt that was not committed.
        let chat_only = lanes(&[(Chat, 1), (Email, 0), (Phone, 1), (Social, 1)]);
        let (r, _) = restored_records(&[Rec::Batch(before), snapshot(true, false), Rec::Batch(after)], chat_only);
        assert_eq!((r.snapshot_offset, r.snapshots_passed_over, r.applied, r.uncommitted), (None, 1, 3, 1));

        // A part missing, or unreadable: the whole changelog is applied.
        for damaged in [false, true] {
            let records = [Rec::Batch(before), snapshot(damaged, damaged), Rec::Batch(after)];
            let (r, state) = restored_records(&records, all);
            assert_eq!((r.snapshot_offset, r.snapshots_passed_over, r.applied), (None, 1, 4), "{r:?}");
            assert_eq!(stats(&state), stats(&plain_state));
        }

        // The changelog's first records gone before the snapshot: nothing is missing.
        let (r, _) = restored_records(&[Rec::Batch(before), snapshot(true, false), Rec::Batch(after)], all);
        assert!(!Restored { first_offset: 1, ..r }.truncated());
    }

    /// One chat event, one email event, a phone and a social event: three batches.
    const B1: &[(Channel, i64)] = &[(Channel::Chat, 0)];
    const B2: &[(Channel, i64)] = &[(Channel::Email, 0)];
    const B3: &[(Channel, i64)] = &[(Channel::Phone, 0), (Channel::Social, 0)];

    /// Every lane committed past its first record.
    fn all_committed() -> [Option<i64>; 4] {
        lanes(&[(Channel::Chat, 1), (Channel::Email, 1), (Channel::Phone, 1), (Channel::Social, 1)])
    }

    /// A snapshot after [`B1`].
    fn after_b1(damaged: bool) -> Rec<'static> {
        Rec::Snapshot { upto: B1, position: &[(Channel::Chat, 1)], whole: true, damaged }
    }

    /// A snapshot after [`B1`] and [`B2`].
    fn after_b2(damaged: bool) -> Rec<'static> {
        let upto = &[(Channel::Chat, 0), (Channel::Email, 0)];
        Rec::Snapshot { upto, position: &[(Channel::Chat, 1), (Channel::Email, 1)], whole: true, damaged }
    }

    /// A snapshot that cannot be read back gives way to the next older one; without any, a
    /// changelog whose obsolete records were deleted (tombstones, or one that begins with a
    /// snapshot) restores incomplete, and says so.
    #[test]
    fn an_unreadable_snapshot_gives_way_to_an_older_one_and_deleted_history_is_reported() {
        let records = [Rec::Batch(B1), after_b1(false), Rec::Batch(B2), after_b2(true), Rec::Batch(B3)];
        let (r, state) = restored_records(&records, all_committed());
        assert_eq!((r.snapshot_offset, r.snapshots_passed_over, r.applied), (Some(1), 1, 3), "{r:?}");
        assert_eq!(state.engine().stats().events, 4);
        assert!(!r.truncated());

        // Only a snapshot the offsets do not cover, after a tombstone: what it replaced is gone.
        let none = lanes(&[(Channel::Chat, 0)]);
        let (r, _) = restored_records(&[Rec::Batch(B1), Rec::Tombstone, after_b1(false)], none);
        assert!(r.history_deleted && r.truncated(), "{r:?}");
        // A changelog that begins with a snapshot lost what came before it.
        let (r, _) = restored_records(&[after_b1(false), Rec::Batch(B2)], none);
        assert!(r.history_deleted && r.truncated(), "{r:?}");
        // Without either, a restore with no snapshot is whole.
        let (r, _) = restored_records(&[Rec::Batch(B1), Rec::Batch(B2)], all_committed());
        assert!(!r.history_deleted && !r.truncated());
    }

    /// A tombstone whose record is still there (the mock cluster, a segment not compacted yet)
    /// deletes nothing: a restore from the start is whole. Once records are gone, no snapshot
    /// older than the newest committed one followed by tombstones is read back, and one a
    /// later attempt superseded is read back only as the best state left, reported.
    #[test]
    fn deleted_history_bounds_the_snapshots_a_restore_may_fall_back_to() {
        let records = [Rec::Batch(B1), after_b1(true), Rec::TombstoneOf(B1), Rec::Batch(B2)];
        let (r, _) = restored_records(&records, all_committed());
        assert_eq!((r.snapshot_offset, r.applied, r.history_deleted, r.truncated()), (None, 2, false, false), "{r:?}");
        // Nor one of a record this version cannot read.
        let records = [Rec::Unreadable, Rec::Batch(B1), Rec::TombstoneOfUnreadable, Rec::Batch(B2)];
        let (r, _) = restored_records(&records, all_committed());
        assert_eq!((r.applied, r.history_deleted, r.truncated()), (2, false, false), "{r:?}");

        let records = [Rec::Batch(B1), after_b1(false), Rec::Batch(B2), after_b2(true), Rec::Tombstone, Rec::Batch(B3)];
        let (r, _) = restored_records(&records, all_committed());
        assert_eq!((r.snapshot_offset, r.history_deleted, r.truncated()), (None, true, true), "{r:?}");

        let records = [Rec::Batch(B1), after_b1(false), Rec::Batch(B1), Rec::Tombstone];
        let (r, _) = restored_records(&records, lanes(&[(Channel::Chat, 1)]));
        assert_eq!((r.snapshot_offset, r.best_effort_snapshot, r.truncated()), (Some(1), true, true), "{r:?}");
    }
}
