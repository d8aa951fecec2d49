//! The second half of every shard's work on a thread of its own, behind the stitching thread:
//! the timeline and merge records of applied events, and the ordered stages (reorder buffer,
//! moments detector, CX metrics) with their intervention records.
//!
//! The stitching thread decodes, applies identity and timelines, and hands each shard's
//! applied events over in batches; this thread encodes their records, runs them through the
//! shard's ordered stages and hands everything to the producer. Before a commit the stitching
//! thread waits at a barrier until everything handed over has been through and its records are
//! with the producer, so a transaction (or an acknowledged batch) holds every output of its
//! inputs, exactly as when one thread did all of it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use omnistitch_engine::{Applied, Ordered, Placed};
use omnistitch_model::{Event, EventTime, Tenant};
use omnistitch_moments::MomentCounters;
use prometheus::IntCounter;
use rdkafka::producer::ThreadedProducer;

use crate::clients::DeliveryContext;
use crate::metrics::ServiceMetrics;
use crate::outputs::{OutBatch, OutputWriter};
use crate::registry::OutputSchemas;
use crate::service::ServiceError;
use crate::shard::{KeptBatch, KEPT_BYTES};

/// Applied events a shard hands over at once (fewer at a commit).
pub const HANDOVER: usize = 64;

/// An event the engine applied, with what it did.
#[derive(Debug)]
pub struct Handed {
    /// The event.
    pub event: Event,
    /// What identity resolution and the timeline did with it.
    pub applied: Applied,
}

/// Work for the ordered thread, done in the order sent.
enum Job {
    /// (shard, its restored ordered stages).
    Install(i32, Box<Ordered>),
    /// A shard gone for good: its stages, active or parked, are dropped.
    Remove(i32),
    /// A shard revoked while a rebalance runs: its stages are kept aside, not run.
    Park(i32),
    /// A parked shard assigned here again, unchanged: its stages run again.
    Resume(i32),
    /// (shard, its applied events in the order applied).
    Events(i32, Vec<Handed>),
    /// (shard, tenant, time): a quiet tenant's event-time clock moves on.
    Clock(i32, Tenant, EventTime),
    /// Reply once everything before is done: the first failure since the last barrier, if any.
    Barrier(SyncSender<Option<ServiceError>>),
    /// The transaction holding the records since the last commit committed: forget them.
    Committed,
    /// The transaction holding them was aborted: hand them all to the producer again, and
    /// reply with the failure, if any.
    Resend(SyncSender<Option<ServiceError>>),
    /// Publish the gauges of the ordered stages.
    Gauges,
    /// Reply with the shard's ordered stages as a snapshot (`None`: not here), after
    /// everything before.
    Snapshot(i32, SyncSender<Option<Vec<u8>>>),
}

/// What the ordered thread needs to write its records.
pub struct OrderedOutputs {
    /// The output producer, shared with the stitching thread.
    pub producer: Arc<ThreadedProducer<DeliveryContext>>,
    /// Topic and produced-records counter per output destination.
    pub destinations: Vec<(String, IntCounter)>,
    /// Output schema ids.
    pub schemas: OutputSchemas,
    /// Metrics.
    pub metrics: Arc<ServiceMetrics>,
}

/// The reply to [`OrderedWorker::barrier`].
pub struct Barrier(Receiver<Option<ServiceError>>);

impl Barrier {
    /// The reply, once it came: `Ok` caught up, or the failure (the thread's own, or that it
    /// stopped).
    pub fn poll(&self) -> Option<Result<(), ServiceError>> {
        match self.0.try_recv() {
            Ok(failed) => Some(failed.map_or(Ok(()), Err)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err(ServiceError::Worker("the ordered stages thread stopped".into())))
            }
        }
    }
}

/// The reply to [`OrderedWorker::snapshot`].
pub struct SnapshotReply(Receiver<Option<Vec<u8>>>);

impl SnapshotReply {
    /// The snapshot, once written (`None`: the thread does not hold the shard, or stopped).
    pub fn wait(self) -> Option<Vec<u8>> {
        self.0.recv().ok().flatten()
    }
}

/// The handle of the ordered thread; dropping it finishes the queued work and joins the thread.
pub struct OrderedWorker {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Whether the thread keeps every record since the last commit (see [`KeptBatch`]).
    kept_all: Arc<AtomicBool>,
}

impl OrderedWorker {
    /// Starts the thread.
    pub fn start(outputs: OrderedOutputs) -> std::io::Result<Self> {
        Self::start_keeping(outputs, KEPT_BYTES)
    }

    /// Starts the thread, a shard's batch keeping up to `keep_bytes` of records.
    fn start_keeping(outputs: OrderedOutputs, keep_bytes: usize) -> std::io::Result<Self> {
        let (jobs, rx) = channel();
        let kept_all = Arc::new(AtomicBool::new(true));
        let worker = Worker {
            kept_all: kept_all.clone(),
            keep_bytes,
            shards: BTreeMap::new(),
            parked: BTreeMap::new(),
            writer: OutputWriter::new(outputs.schemas),
            kept: BTreeMap::new(),
            outputs,
            failed: None,
        };
        let thread = std::thread::Builder::new().name("ordered".into()).spawn(move || worker.run(rx))?;
        Ok(OrderedWorker { jobs: Some(jobs), thread: Some(thread), kept_all })
    }

    fn send(&self, job: Job) {
        // A send fails only once the thread is gone; the next barrier reports it.
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Shard `shard` runs on `ordered` from now on.
    pub fn install(&self, shard: i32, ordered: Ordered) {
        self.send(Job::Install(shard, Box::new(ordered)));
    }

    /// Forgets shard `shard`'s ordered stages.
    pub fn remove(&self, shard: i32) {
        self.send(Job::Remove(shard));
    }

    /// Keeps shard `shard`'s ordered stages aside until [`OrderedWorker::resume`] or
    /// [`OrderedWorker::remove`].
    pub fn park(&self, shard: i32) {
        self.send(Job::Park(shard));
    }

    /// Runs parked shard `shard`'s ordered stages again.
    pub fn resume(&self, shard: i32) {
        self.send(Job::Resume(shard));
    }

    /// Hands over applied events of `shard`, in order.
    pub fn events(&self, shard: i32, events: Vec<Handed>) {
        if !events.is_empty() {
            self.send(Job::Events(shard, events));
        }
    }

    /// Moves quiet `tenant`'s event-time clock on to `time` in shard `shard`'s ordered stages
    /// (after the events handed over before).
    pub fn advance_clock(&self, shard: i32, tenant: Tenant, time: EventTime) {
        self.send(Job::Clock(shard, tenant, time));
    }

    /// Asks for shard `p`'s ordered stages as a snapshot, once every event handed before is
    /// through them; the thread writes it while the caller does its own part.
    pub fn snapshot(&self, p: i32) -> SnapshotReply {
        let (reply, answer) = sync_channel(1);
        self.send(Job::Snapshot(p, reply));
        SnapshotReply(answer)
    }

    /// Publishes the ordered stages' gauges (pending timers, CX metrics).
    pub fn gauges(&self) {
        self.send(Job::Gauges);
    }

    /// Asks for a reply once everything handed over so far is through and its records are
    /// with the producer: `Ok`, or the first failure since the last barrier.
    pub fn barrier(&self) -> Barrier {
        self.ask(Job::Barrier)
    }

    /// Sends the job `job` makes of a reply channel; the reply comes through the [`Barrier`].
    fn ask(&self, job: fn(SyncSender<Option<ServiceError>>) -> Job) -> Barrier {
        let (reply, done) = sync_channel(1);
        self.send(job(reply));
        Barrier(done)
    }

    /// Whether every record made since the last commit is kept, to be produced again (a
    /// shard's batch past [`KEPT_BYTES`] keeps none). Current once a barrier answered.
    pub fn kept_all(&self) -> bool {
        self.kept_all.load(Ordering::Acquire)
    }

    /// The records made since the last commit are committed: they are forgotten.
    pub fn committed(&self) {
        self.send(Job::Committed);
    }

    /// The transaction that held the records made since the last commit was aborted: asks
    /// for them all to be handed to the producer again (in the transaction now open), with a
    /// reply as [`OrderedWorker::barrier`]'s once they are.
    pub fn resend(&self) -> Barrier {
        self.ask(Job::Resend)
    }

    /// Finishes the queued work and joins the thread.
    pub fn stop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the ordered stages thread panicked");
            }
        }
    }
}

impl Drop for OrderedWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ordered thread's state.
struct Worker {
    shards: BTreeMap<i32, Ordered>,
    /// Stages of shards revoked while a rebalance runs.
    parked: BTreeMap<i32, Ordered>,
    writer: OutputWriter,
    /// Per shard, the records made since the last commit.
    kept: BTreeMap<i32, KeptBatch>,
    /// Cleared when a shard's batch outgrows `keep_bytes`, set again at the commit.
    kept_all: Arc<AtomicBool>,
    /// Most bytes of records a shard's batch keeps ([`KEPT_BYTES`]).
    keep_bytes: usize,
    outputs: OrderedOutputs,
    /// The first failure to hand a record to the producer since the last barrier: records
    /// are made and kept on, but not sent, until they are all sent again.
    failed: Option<ServiceError>,
}

/// Shard `p`'s batch of records in `kept`, started (keeping up to `limit` bytes) if new.
fn kept_out(kept: &mut BTreeMap<i32, KeptBatch>, p: i32, limit: usize) -> &mut OutBatch {
    &mut kept.entry(p).or_insert_with(|| KeptBatch::new(limit)).out
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Install(p, ordered) => {
                    self.shards.insert(p, *ordered);
                }
                Job::Remove(p) => {
                    self.shards.remove(&p);
                    self.parked.remove(&p);
                    self.kept.remove(&p);
                    if self.kept.is_empty() {
                        // Every batch record is gone with its shard (a rewind): none is missing.
                        self.kept_all.store(true, Ordering::Release);
                    }
                }
                Job::Park(p) => {
                    // Between rounds: its records are committed.
                    self.kept.remove(&p);
                    if let Some(o) = self.shards.remove(&p) {
                        self.parked.insert(p, o);
                    }
                }
                Job::Resume(p) => {
                    if let Some(o) = self.parked.remove(&p) {
                        self.shards.insert(p, o);
                    }
                }
                // The stages run on after a failure: the shard's state on the other thread
                // has the events, and an aborted batch is produced again, not recomputed.
                Job::Events(p, events) => {
                    self.apply(p, events);
                    self.send_new(p);
                }
                Job::Clock(p, tenant, time) => {
                    self.advance_clock(p, &tenant, time);
                    self.send_new(p);
                }
                Job::Barrier(reply) => {
                    let _ = reply.send(self.failed.take());
                }
                Job::Committed => {
                    self.kept.values_mut().for_each(KeptBatch::committed);
                    self.kept_all.store(true, Ordering::Release);
                }
                Job::Resend(reply) => {
                    self.failed = None;
                    let (producer, destinations) = (&self.outputs.producer, &self.outputs.destinations);
                    let sent = self.kept.values_mut().try_for_each(|k| k.send_again(producer, destinations));
                    let _ = reply.send(sent.err());
                }
                Job::Gauges => self.gauges(),
                Job::Snapshot(p, reply) => {
                    let _ = reply.send(self.shards.get(&p).map(Ordered::snapshot));
                }
            }
        }
    }

    /// Hands shard `p`'s records not yet sent to the producer, unless a failure since the
    /// last barrier stopped sending (the first failure is kept for the barrier).
    fn send_new(&mut self, p: i32) {
        let Some(k) = self.kept.get_mut(&p) else { return };
        if self.failed.is_none() {
            if let Err(e) = k.send_new(&self.outputs.producer, &self.outputs.destinations) {
                self.failed = Some(e);
            }
        }
        if !k.keep_within_limit() {
            self.kept_all.store(false, Ordering::Release);
        }
    }

    /// Writes the records of `events` of shard `p` and runs them through its ordered stages,
    /// keeping every record.
    fn apply(&mut self, p: i32, events: Vec<Handed>) {
        let out = kept_out(&mut self.kept, p, self.keep_bytes);
        let mut ordered = self.shards.get_mut(&p);
        let metrics = &self.outputs.metrics;
        for Handed { event, applied } in events {
            self.writer.applied(&event, &applied, out);
            let (Some(ordered), Some(placed)) = (ordered.as_deref_mut(), Placed::of(event, &applied)) else {
                continue;
            };
            let found = ordered.take(placed);
            for i in &found {
                metrics.intervention(i.moment_type);
            }
            self.writer.interventions(&found, out);
        }
    }

    /// Moves a quiet tenant's clock on in shard `p`'s ordered stages, keeping the records of
    /// the interventions that fire.
    fn advance_clock(&mut self, p: i32, tenant: &Tenant, time: EventTime) {
        let Some(ordered) = self.shards.get_mut(&p) else { return };
        let found = ordered.advance_clock(tenant, time);
        for i in &found {
            self.outputs.metrics.intervention(i.moment_type);
        }
        self.writer.interventions(&found, kept_out(&mut self.kept, p, self.keep_bytes));
    }

    fn gauges(&self) {
        let metrics = &self.outputs.metrics;
        let timers: usize = self.shards.values().map(|o| o.detector().pending_timers()).sum();
        let reports: Vec<_> = self.shards.values().map(|o| o.cx_report()).collect();
        metrics.cx(&reports);
        metrics.pending_timers.set(timers as i64);
        let mut counters = MomentCounters::default();
        let mut late = 0;
        for o in self.shards.values() {
            counters.add(&o.detector().counters());
            late += o.late_events();
        }
        metrics.moments(&counters, late);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_engine::{Engine, EngineConfig, Pipeline};
    use omnistitch_model::{Channel, Direction, EventKind, EventTime, IdentifierKind, RawIdentifier, Tenant};
    use rdkafka::config::ClientConfig;

    use crate::registry::BundledIds;

    /// A worker whose producer only queues (its broker never answers): records handed to it
    /// are counted per destination as they are sent.
    fn worker() -> (OrderedWorker, Arc<ServiceMetrics>, Vec<(String, IntCounter)>) {
        worker_keeping(KEPT_BYTES)
    }

    /// [`worker`], a shard's batch keeping up to `keep_bytes` of records.
    fn worker_keeping(keep_bytes: usize) -> (OrderedWorker, Arc<ServiceMetrics>, Vec<(String, IntCounter)>) {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create_with_context(DeliveryContext::default())
            .expect("producer");
        let metrics = Arc::new(ServiceMetrics::new());
        let destinations: Vec<(String, IntCounter)> = ["timeline", "profiles", "merges", "interventions", "dlq", "log"]
            .iter()
            .map(|t| (t.to_string(), metrics.produced.with_label_values(&[t])))
            .collect();
        let outputs = OrderedOutputs {
            producer: Arc::new(producer),
            destinations: destinations.clone(),
            schemas: OutputSchemas::bundled(&BundledIds::default()),
            metrics: metrics.clone(),
        };
        (OrderedWorker::start_keeping(outputs, keep_bytes).expect("thread"), metrics, destinations)
    }

    /// Waits for the reply of `barrier`.
    fn answer(barrier: Barrier) -> Result<(), ServiceError> {
        loop {
            match barrier.poll() {
                Some(reply) => break reply,
                None => std::thread::yield_now(),
            }
        }
    }

    fn handed(engine: &mut Engine, id: &str, t: i64) -> Handed {
        let mut event = Event::new(
            Tenant::new("acme"),
            id,
            EventTime(t),
            Channel::Chat,
            Direction::Inbound,
            EventKind::ChatAbandoned,
        );
        event.identifiers.push(RawIdentifier::new(IdentifierKind::Email, "jo@mailbox.io"));
        let applied = engine.apply(&event);
        Handed { event, applied }
    }

    /// Installs shard 0's ordered stages on `worker`; returns the engine that feeds them.
    fn install_shard(worker: &OrderedWorker) -> Engine {
        let (engine, ordered) = Pipeline::new(&EngineConfig::default()).expect("pipeline").into_parts();
        worker.install(0, ordered.expect("ordered stages"));
        engine
    }

    /// Hands shard 0 three events a minute apart (three timeline records).
    fn hand_three(worker: &OrderedWorker, engine: &mut Engine) {
        let events: Vec<Handed> = (0..3).map(|i| handed(engine, &format!("e{i}"), i * 60_000)).collect();
        worker.events(0, events);
    }

    #[test]
    fn a_barrier_answers_once_the_work_before_it_is_with_the_producer() {
        let (worker, _, destinations) = worker();
        let mut engine = install_shard(&worker);
        hand_three(&worker, &mut engine);
        let reply = answer(worker.barrier());
        assert!(reply.is_ok(), "{reply:?}");
        // Three timeline records, written by the ordered thread before it answered.
        assert_eq!(destinations[0].1.get(), 3);
    }

    #[test]
    fn an_aborted_batch_s_records_are_sent_again_until_its_commit() {
        let (worker, _, destinations) = worker();
        let mut engine = install_shard(&worker);
        hand_three(&worker, &mut engine);
        answer(worker.barrier()).expect("sent");
        assert!(worker.kept_all());
        answer(worker.resend()).expect("sent again");
        assert_eq!(destinations[0].1.get(), 6, "the three timeline records, twice");
        worker.committed();
        answer(worker.resend()).expect("nothing to send");
        assert_eq!(destinations[0].1.get(), 6, "committed: forgotten");
    }

    #[test]
    fn a_batch_past_what_it_may_keep_keeps_nothing_until_its_commit_or_its_shard_goes() {
        let (worker, _, _) = worker_keeping(1);
        let mut engine = install_shard(&worker);
        worker.events(0, vec![handed(&mut engine, "e0", 0)]);
        answer(worker.barrier()).expect("sent");
        assert!(!worker.kept_all(), "one record is more than a byte");
        worker.committed();
        answer(worker.barrier()).expect("nothing");
        assert!(worker.kept_all());
        worker.events(0, vec![handed(&mut engine, "e1", 60_000)]);
        answer(worker.barrier()).expect("sent");
        assert!(!worker.kept_all());
        worker.remove(0);
        answer(worker.barrier()).expect("nothing");
        assert!(worker.kept_all(), "a rewind dropped the shard: nothing kept, nothing missing");
    }

    #[test]
    fn a_barrier_after_the_thread_stopped_says_so() {
        let (mut worker, _, _) = worker();
        worker.stop();
        assert!(matches!(worker.barrier().poll(), Some(Err(ServiceError::Worker(_)))));
    }
}
