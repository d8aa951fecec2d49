//! Prometheus metrics of the service. Labels carry channels, reasons, moment types, topics,
//! partitions and tenants (brands): never an identifier of a person.

use std::collections::BTreeSet;
use std::sync::Mutex;

use omnistitch_cx::CxReport;
use omnistitch_model::Channel;
use omnistitch_moments::{MomentCounters, MomentType};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The cluster calls the service tries again when they fail (the `call` label of
/// `omnistitch_cluster_retries_total`).
pub const RETRIED_CALLS: [&str; 6] = ["commit", "abort", "restore_start", "restore_read", "committed_offsets", "seek"];

/// Outcome of an input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to the state.
    Applied,
    /// A redelivery of an event already applied.
    Duplicate,
    /// Sent to the dead-letter topic.
    DeadLettered,
}

/// Input records counted by the stitching thread over a round, added to the shared counters
/// once per round: an atomic add per record kept the counters' cache lines moving between
/// the cores.
#[derive(Debug, Default)]
pub struct InputTally {
    inputs: [[u64; 3]; 4],
    merges: u64,
    conflicts: u64,
}

impl InputTally {
    /// Counts an input record.
    pub fn input(&mut self, channel: Channel, outcome: Outcome) {
        self.inputs[channel as usize][outcome as usize] += 1;
    }

    /// Counts the merges and conflicts an applied record caused.
    pub fn identity(&mut self, merges: usize, conflicts: usize) {
        self.merges += merges as u64;
        self.conflicts += conflicts as u64;
    }
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Applied, Outcome::Duplicate, Outcome::DeadLettered];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Ingest-to-output latencies at millisecond resolution, for exact quantiles in benchmarks.
#[derive(Debug)]
pub struct LatencyRecorder {
    counts: Mutex<Vec<u64>>,
}

/// Longest latency told apart; longer ones count as this.
const LATENCY_MAX_MS: usize = 120_000;

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder { counts: Mutex::new(vec![0; LATENCY_MAX_MS + 1]) }
    }
}

impl LatencyRecorder {
    /// Records latencies in milliseconds (negative ones, from skewed clocks, count as 0).
    pub fn record(&self, latencies_ms: impl Iterator<Item = i64>) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for l in latencies_ms {
            c[(l.max(0) as usize).min(LATENCY_MAX_MS)] += 1;
        }
    }

    /// The `q` quantile in milliseconds, if anything was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = c.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        c.iter()
            .position(|&n| {
                seen += n;
                seen >= rank
            })
            .map(|ms| ms as u64)
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().for_each(|c| *c = 0);
    }
}

/// Every metric the service exports, registered in one registry.
pub struct ServiceMetrics {
    registry: Registry,
    input: [[IntCounter; 3]; 4],
    dead_letters: IntCounterVec,
    /// Ingest (input record timestamp) to outputs committed.
    pub latency: Histogram,
    /// The same latencies, for exact quantiles.
    pub latency_exact: LatencyRecorder,
    consumer_lag: IntGaugeVec,
    transactions: IntCounterVec,
    rebalances: IntCounterVec,
    /// Profiles held.
    pub profiles: IntGauge,
    /// Identifiers held in identity graphs.
    pub identifiers: IntGauge,
    /// Approximate bytes of the identity graphs.
    pub graph_bytes: IntGauge,
    /// Profile merges.
    pub merges: IntCounter,
    /// Links refused by identity rules.
    pub conflicts: IntCounter,
    /// Timeline entries held.
    pub timeline_entries: IntGauge,
    /// Timeline entries evicted by retention.
    pub timeline_evicted: IntCounter,
    interventions: IntCounterVec,
    /// Event-time timers waiting (SLA, abandons).
    pub pending_timers: IntGauge,
    /// What the detector of the held shards did with each moment it saw, by outcome.
    moment_outcomes: IntGaugeVec,
    /// Events the held shards' reorder buffers took behind their watermark.
    late_events: IntGauge,
    /// Input partitions whose shard this instance holds.
    pub shards: IntGauge,
    /// Bytes of input waiting in the shards' event-time merges.
    pub merge_queued_bytes: IntGauge,
    /// Events re-applied from the changelog during restores.
    pub restored_events: IntCounter,
    /// Clock moves of quiet tenants re-applied from the changelog during restores.
    pub restored_clock_advances: IntCounter,
    /// Snapshots of shard state written to the changelog (engine part; committed or not).
    pub snapshots_written: IntCounter,
    /// Bytes of the engine part of the latest snapshot written.
    pub snapshot_bytes: IntGauge,
    /// Restores that read a snapshot back (and the changelog after it only).
    pub restores_from_snapshot: IntCounter,
    /// Snapshots written that did not read back (their obsolete records kept).
    pub snapshot_checks_failed: IntCounter,
    /// Snapshots restores found and could not use (incomplete, uncommitted, superseded,
    /// unreadable).
    pub snapshots_passed_over: IntCounter,
    /// Event-time clocks of quiet tenants moved on with the wall clock (`idle_clock_ms`).
    pub clock_advances: IntCounter,
    /// Shards given back by a rebalance whose state was kept, without a restore.
    pub shards_kept: IntCounter,
    /// Aborted batches produced again from their kept records, without a restore.
    pub batches_resent: IntCounter,
    /// Restores that found the changelog's first records gone (their state incomplete).
    pub truncated_restores: IntCounter,
    /// Restores that read the changelog only up to a transaction left open.
    pub restores_behind_open_transaction: IntCounter,
    /// Changelog records and events a restore could not read or apply, skipped.
    pub unreadable_restored: IntCounter,
    /// Profile records cut to fit the producer's message size (conversation ids left out).
    pub profile_records_cut: IntCounter,
    /// Output records a topic refused as too large, by topic.
    pub output_records_too_large: IntCounterVec,
    /// Changelog entries a restore left out for an input partition with no committed offset.
    pub restore_without_commit: IntCounter,
    /// Schema registry lookups that failed (retried; the records needing them wait).
    pub registry_retries: IntCounter,
    /// Errors the Kafka clients reported while consuming, by librdkafka error code.
    consumer_errors: IntCounterVec,
    /// Cluster calls tried again, by call (one of [`RETRIED_CALLS`]).
    pub cluster_retries: IntCounterVec,
    /// Committed transactions whose offsets could not be mirrored through the consumer
    /// (`kafka.mirror_offsets`; a rebalance had begun): the next owner of those partitions
    /// re-emits the batch as exact copies, and this instance restores rather than keeps them.
    pub offset_mirror_failures: IntCounter,
    /// Input partitions passed over by the event-time merge after `merge_max_wait_ms` silent.
    pub merge_skipped_waits: IntCounter,
    /// Duration of shard restores.
    pub restore_seconds: Histogram,
    /// How long each commit waited for the ordered thread to catch up.
    pub ordered_wait_seconds: Histogram,
    /// 1 once every assigned shard is restored.
    pub ready: IntGauge,
    /// Seconds since the processing loop last moved, as of the scrape (set by the scraper).
    pub loop_silence_seconds: Gauge,
    /// The silence past which `/healthz` fails (`kafka.liveness_timeout_ms`).
    pub loop_silence_limit_seconds: Gauge,
    /// Output records produced.
    pub produced: IntCounterVec,
    cx: CxGauges,
    /// Tenants whose CX gauges are exported now.
    cx_tenants: Mutex<BTreeSet<String>>,
    /// The CX rows last published, of every shard held (for a summary at the end of a run).
    cx_latest: Mutex<CxReport>,
    /// Tenants whose CX gauges are not exported (unfit names, past the cap).
    cx_unexported_tenants: IntGauge,
    identity_forgotten: IntCounter,
}

/// The surveys of `omnistitch_cx_survey_answers`.
const SURVEYS: [&str; 3] = ["csat", "nps", "ces"];

/// Most tenants whose CX gauges are exported: each is a series per gauge and channel.
const MAX_CX_TENANTS: usize = 256;

/// Whether `tenant` may be a label value (see [`Tenant::is_name_like`]).
fn label_safe(tenant: &str) -> bool {
    omnistitch_model::Tenant::is_name_like(tenant)
}

struct CxGauges {
    contacts: IntGaugeVec,
    cases: IntGaugeVec,
    /// The denominators behind the p50s and ratios: cases timed, cases open and expired,
    /// survey answers by survey.
    first_responses: IntGaugeVec,
    resolutions: IntGaugeVec,
    open_cases: IntGaugeVec,
    expired_cases: IntGaugeVec,
    survey_answers: IntGaugeVec,
    first_response_p50: GaugeVec,
    resolution_p50: GaugeVec,
    csat: GaugeVec,
    nps: GaugeVec,
    ces: GaugeVec,
    repeat_contact: GaugeVec,
    channel_switch: GaugeVec,
}

impl CxGauges {
    /// Drops the series of `labels` (tenant, channel) from every gauge.
    fn remove(&self, labels: &[&str]) {
        // A series never set (an empty rate) is absent: nothing to drop.
        for g in [
            &self.contacts,
            &self.cases,
            &self.first_responses,
            &self.resolutions,
            &self.open_cases,
            &self.expired_cases,
        ] {
            let _ = g.remove_label_values(labels);
        }
        for survey in SURVEYS {
            let _ = self.survey_answers.remove_label_values(&[labels[0], labels[1], survey]);
        }
        for g in [
            &self.first_response_p50,
            &self.resolution_p50,
            &self.csat,
            &self.nps,
            &self.ces,
            &self.repeat_contact,
            &self.channel_switch,
        ] {
            let _ = g.remove_label_values(labels);
        }
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceMetrics {
    /// All metrics, zeroed, in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        // The process's resident memory, CPU time, threads and file descriptors (the standard
        // process_* families), read from /proc at each scrape: memory against the pod's limit.
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("process metrics register once");
        let input_vec = counter_vec(
            &r,
            "omnistitch_input_records_total",
            "Input records by channel and outcome (applied, duplicate, dead_lettered).",
            &["channel", "outcome"],
        );
        let input = Channel::ALL.map(|c| Outcome::ALL.map(|o| input_vec.with_label_values(&[c.as_str(), o.as_str()])));
        let cx = CxGauges {
            contacts: int_gauge_vec(&r, "omnistitch_cx_contacts", "Inbound contacts seen.", &["tenant", "channel"]),
            cases: int_gauge_vec(
                &r,
                "omnistitch_cx_cases",
                "Cases with an inbound contact, by the case's channel (held state: cumulative since it began).",
                &["tenant", "channel"],
            ),
            first_responses: int_gauge_vec(
                &r,
                "omnistitch_cx_first_responses",
                "Cases whose first response was timed: the count behind the first-response p50.",
                &["tenant", "channel"],
            ),
            resolutions: int_gauge_vec(
                &r,
                "omnistitch_cx_resolutions",
                "Cases whose resolution was timed: the count behind the resolution p50.",
                &["tenant", "channel"],
            ),
            open_cases: int_gauge_vec(
                &r,
                "omnistitch_cx_open_cases",
                "Cases contacted and not resolved yet (not in the resolution p50).",
                &["tenant", "channel"],
            ),
            expired_cases: int_gauge_vec(
                &r,
                "omnistitch_cx_expired_cases",
                "Cases closed unresolved after the idle limit (not in the resolution p50).",
                &["tenant", "channel"],
            ),
            survey_answers: int_gauge_vec(
                &r,
                "omnistitch_cx_survey_answers",
                "Survey answers (survey csat, nps or ces): the count behind each score.",
                &["tenant", "channel", "survey"],
            ),
            first_response_p50: gauge_vec(
                &r,
                "omnistitch_cx_first_response_p50_seconds",
                "Median first response time.",
                &["tenant", "channel"],
            ),
            resolution_p50: gauge_vec(
                &r,
                "omnistitch_cx_resolution_p50_seconds",
                "Median resolution time.",
                &["tenant", "channel"],
            ),
            csat: gauge_vec(&r, "omnistitch_cx_csat_ratio", "Share of CSAT answers of 4 or 5.", &["tenant", "channel"]),
            nps: gauge_vec(&r, "omnistitch_cx_nps", "Net promoter score (-100..100).", &["tenant", "channel"]),
            ces: gauge_vec(&r, "omnistitch_cx_ces_mean", "Mean customer effort score (1..7).", &["tenant", "channel"]),
            repeat_contact: gauge_vec(
                &r,
                "omnistitch_cx_repeat_contact_ratio",
                "Share of cases with a repeat contact.",
                &["tenant", "channel"],
            ),
            channel_switch: gauge_vec(
                &r,
                "omnistitch_cx_channel_switch_ratio",
                "Share of cases that switched channel.",
                &["tenant", "channel"],
            ),
        };
        let m = ServiceMetrics {
            input,
            dead_letters: counter_vec(
                &r,
                "omnistitch_dead_letters_total",
                "Records sent to the dead-letter topic, by reason.",
                &["reason"],
            ),
            latency: histogram(
                &r,
                "omnistitch_processing_latency_seconds",
                "Input record timestamp to its outputs committed.",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            latency_exact: LatencyRecorder::default(),
            consumer_lag: int_gauge_vec(
                &r,
                "omnistitch_consumer_lag_records",
                "Records of each held input partition behind its end (last stable offset) from the offset this instance committed.",
                &["topic", "partition"],
            ),
            transactions: counter_vec(
                &r,
                "omnistitch_transactions_total",
                "Output batches (transactions in exactly_once mode) by outcome (committed, aborted).",
                &["outcome"],
            ),
            rebalances: counter_vec(
                &r,
                "omnistitch_rebalances_total",
                "Consumer group rebalance callbacks by kind (assign, revoke).",
                &["kind"],
            ),
            profiles: gauge(&r, "omnistitch_identity_profiles", "Profiles held."),
            identifiers: gauge(&r, "omnistitch_identity_identifiers", "Identifiers held in identity graphs."),
            graph_bytes: gauge(&r, "omnistitch_identity_graph_bytes", "Approximate bytes of the identity graphs."),
            merges: counter(&r, "omnistitch_identity_merges_total", "Profile merges."),
            conflicts: counter(&r, "omnistitch_identity_conflicts_total", "Links refused by identity rules."),
            timeline_entries: gauge(&r, "omnistitch_timeline_entries", "Timeline entries held."),
            timeline_evicted: counter(
                &r,
                "omnistitch_timeline_evicted_total",
                "Timeline entries evicted by retention.",
            ),
            interventions: counter_vec(
                &r,
                "omnistitch_interventions_total",
                "Interventions emitted, by moment type.",
                &["moment_type"],
            ),
            pending_timers: gauge(&r, "omnistitch_moment_pending_timers", "Event-time timers waiting."),
            moment_outcomes: int_gauge_vec(
                &r,
                "omnistitch_moment_outcomes",
                "Moments the held shards' detectors saw since their state began, by type and outcome \
                 (emitted, cooldown, stale: expired by the tenant's clock when found, cancelled: a timer's \
                 condition was met).",
                &["moment_type", "outcome"],
            ),
            late_events: gauge(
                &r,
                "omnistitch_moment_late_events",
                "Events the held shards took behind their tenant's watermark since their state began \
                 (processed at once, out of order).",
            ),
            shards: gauge(&r, "omnistitch_shards", "Input partition indexes (shards) held by this instance."),
            merge_queued_bytes: gauge(
                &r,
                "omnistitch_merge_queued_bytes",
                "Bytes of input records (and their decodings, estimated) waiting in the shards' event-time merges; a lane pauses its partition at 16 MiB.",
            ),
            restored_events: counter(
                &r,
                "omnistitch_restored_events_total",
                "Events re-applied from the changelog while restoring shards.",
            ),
            restored_clock_advances: counter(
                &r,
                "omnistitch_restored_clock_advances_total",
                "Clock moves of quiet tenants re-applied from the changelog while restoring shards.",
            ),
            snapshots_written: counter(
                &r,
                "omnistitch_snapshots_written_total",
                "Snapshots of shard state written to the changelog (kafka.snapshot_bytes), in the transaction of a commit.",
            ),
            snapshot_bytes: gauge(
                &r,
                "omnistitch_snapshot_bytes",
                "Bytes of the identity and timeline state in the latest snapshot written.",
            ),
            snapshot_checks_failed: counter(
                &r,
                "omnistitch_snapshot_checks_failed_total",
                "Snapshots written that did not read back when checked: the records they made obsolete are kept (a bug to report).",
            ),
            restores_from_snapshot: counter(
                &r,
                "omnistitch_restores_from_snapshot_total",
                "Shard restores that read a snapshot back and re-applied only the changelog after it.",
            ),
            snapshots_passed_over: counter(
                &r,
                "omnistitch_snapshots_passed_over_total",
                "Snapshots a restore found and could not use: parts missing, past the committed offsets, written by an attempt a later one superseded, or unreadable by this version.",
            ),
            clock_advances: counter(
                &r,
                "omnistitch_clock_advances_total",
                "Event-time clocks of quiet tenants moved on with the wall clock (kafka.idle_clock_ms), so their timers fire on time.",
            ),
            shards_kept: counter(
                &r,
                "omnistitch_shards_kept_total",
                "Shards assigned again by a rebalance whose state was kept (nobody committed them in between): no restore.",
            ),
            batches_resent: counter(
                &r,
                "omnistitch_aborted_batches_resent_total",
                "Aborted batches whose output records were produced again in a new transaction, the state that made them kept (no restore).",
            ),
            truncated_restores: counter(
                &r,
                "omnistitch_changelog_truncated_restores_total",
                "Shard restores that found the changelog partition's first records gone (the restored state misses their events).",
            ),
            restores_behind_open_transaction: counter(
                &r,
                "omnistitch_changelog_restores_behind_open_transaction_total",
                "Shard restores that stopped at a transaction still open on the changelog after a transaction timeout (batches committed behind it left out: the restored state may miss their events).",
            ),
            unreadable_restored: counter(
                &r,
                "omnistitch_changelog_unreadable_entries_total",
                "Changelog records and events a restore could not read or apply, skipped (the restored state misses them).",
            ),
            profile_records_cut: counter(
                &r,
                "omnistitch_profile_records_cut_total",
                "Profile records cut to fit message.max.bytes: their newest-kept conversation ids, then absorbed profile ids, left out.",
            ),
            output_records_too_large: counter_vec(
                &r,
                "omnistitch_output_records_too_large_total",
                "Output records a topic refused as too large (its max.message.bytes below the producer's message.max.bytes), by topic: the batch is retried, with that topic's dead letters and profile records cut to half the refused size.",
                &["topic"],
            ),
            restore_without_commit: counter(
                &r,
                "omnistitch_changelog_entries_without_commit_total",
                "Changelog entries a restore left out because their input partition has no committed offset (a first batch never committed, or the group's offsets expired).",
            ),
            registry_retries: counter(
                &r,
                "omnistitch_schema_registry_retries_total",
                "Schema registry lookups that failed (retried; the records needing them wait, with their partitions).",
            ),
            cluster_retries: counter_vec(
                &r,
                "omnistitch_cluster_retries_total",
                "Cluster calls that failed and were tried again, by call (commit, abort, restore_start, restore_read, committed_offsets, seek).",
                &["call"],
            ),
            consumer_errors: counter_vec(
                &r,
                "omnistitch_consumer_errors_total",
                "Errors the Kafka consumer reported, by librdkafka error code (a fetch error can mean records the client could not read were skipped: see the logs).",
                &["code"],
            ),
            offset_mirror_failures: counter(
                &r,
                "omnistitch_offset_mirror_failures_total",
                "Committed transactions whose offsets could not be mirrored through the consumer (kafka.mirror_offsets): their batch is re-emitted as exact copies by the next owner.",
            ),
            merge_skipped_waits: counter(
                &r,
                "omnistitch_merge_skipped_waits_total",
                "Input partitions the event-time merge passed over after kafka.merge_max_wait_ms without records or their end (the order is then not reproducible).",
            ),
            restore_seconds: histogram(
                &r,
                "omnistitch_restore_seconds",
                "Duration of shard restores from the changelog.",
                vec![0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0],
            ),
            ordered_wait_seconds: histogram(
                &r,
                "omnistitch_ordered_wait_seconds",
                "Time each commit waited for the ordered thread (timeline records, moments, CX) to catch up.",
                vec![0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
            ),
            ready: gauge(&r, "omnistitch_ready", "1 when every assigned shard is restored and processing."),
            loop_silence_seconds: float_gauge(
                &r,
                "omnistitch_loop_silence_seconds",
                "Seconds since the processing loop last moved, at scrape time; past kafka.liveness_timeout_ms /healthz fails.",
            ),
            loop_silence_limit_seconds: float_gauge(
                &r,
                "omnistitch_loop_silence_limit_seconds",
                "The loop silence past which /healthz fails (kafka.liveness_timeout_ms).",
            ),
            produced: counter_vec(
                &r,
                "omnistitch_output_records_total",
                "Output records produced, by topic.",
                &["topic"],
            ),
            cx,
            cx_tenants: Mutex::new(BTreeSet::new()),
            cx_latest: Mutex::new(CxReport::default()),
            cx_unexported_tenants: gauge(
                &r,
                "omnistitch_cx_unexported_tenants",
                "Tenants whose CX gauges are not exported: names unfit for a label (a letter first, then letters, digits, . _ -, at most 64 bytes) or past the first 256.",
            ),
            identity_forgotten: counter(
                &r,
                "omnistitch_identity_forgotten_total",
                "Identifiers forgotten: a profile's oldest of a kind past identity.keep_newest, and the conversation ids of profiles forgotten past the retention.",
            ),
            registry: r,
        };
        for t in MomentType::ALL {
            m.interventions.with_label_values(&[t.as_str()]);
        }
        for o in ["committed", "aborted"] {
            m.transactions.with_label_values(&[o]);
        }
        for k in ["assign", "revoke"] {
            m.rebalances.with_label_values(&[k]);
        }
        for c in RETRIED_CALLS {
            m.cluster_retries.with_label_values(&[c]);
        }
        m
    }

    /// Adds the counts of a round of input records, and empties the tally.
    pub fn add_inputs(&self, tally: &mut InputTally) {
        for (counters, counts) in self.input.iter().zip(&tally.inputs) {
            for (counter, &n) in counters.iter().zip(counts) {
                if n > 0 {
                    counter.inc_by(n);
                }
            }
        }
        if tally.merges > 0 {
            self.merges.inc_by(tally.merges);
        }
        if tally.conflicts > 0 {
            self.conflicts.inc_by(tally.conflicts);
        }
        *tally = InputTally::default();
    }

    /// Counts a dead letter.
    pub fn dead_letter(&self, reason: &str) {
        self.dead_letters.with_label_values(&[reason]).inc();
    }

    /// Counts an intervention.
    pub fn intervention(&self, moment: MomentType) {
        self.interventions.with_label_values(&[moment.as_str()]).inc();
    }

    /// Counts a batch outcome.
    pub fn transaction(&self, committed: bool) {
        self.transactions.with_label_values(&[if committed { "committed" } else { "aborted" }]).inc();
    }

    /// Counts a rebalance callback.
    pub fn rebalance(&self, assign: bool) {
        self.rebalances.with_label_values(&[if assign { "assign" } else { "revoke" }]).inc();
    }

    /// Sets the lag of one input partition.
    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag.max(0));
    }

    /// Drops the lag series of an input partition no longer held (a stale value would add to
    /// the lag another member reports).
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        let _ = self.consumer_lag.remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Counts timeline entries evicted and identifiers forgotten (past `keep_newest`, or with
    /// their profile past the retention) since the
    /// last call for the same shard (each shard keeps what it has counted: a restore's replayed
    /// history is not counted again).
    pub fn evicted_and_forgotten(&self, evicted: u64, forgotten: u64) {
        self.timeline_evicted.inc_by(evicted);
        self.identity_forgotten.inc_by(forgotten);
    }

    /// Publishes the detector counters and late events summed over every shard held.
    pub fn moments(&self, counters: &MomentCounters, late_events: u64) {
        for m in MomentType::ALL {
            let c = counters.get(m);
            for (outcome, n) in
                [("emitted", c.detected), ("cooldown", c.suppressed), ("stale", c.stale), ("cancelled", c.cancelled)]
            {
                self.moment_outcomes.with_label_values(&[m.as_str(), outcome]).set(n as i64);
            }
        }
        self.late_events.set(late_events as i64);
    }

    /// Publishes the CX reports of every shard held (per tenant and channel; the all-channel
    /// row as channel="all"); the series of tenants no longer held (a revoked shard) go.
    pub fn cx(&self, reports: &[CxReport]) {
        let mut exported = self.cx_tenants.lock().unwrap_or_else(|p| p.into_inner());
        let present: BTreeSet<&str> = reports.iter().flat_map(|r| &r.rows).map(|row| row.tenant.as_str()).collect();
        // Tenants exported already keep their place (a new one must not blank another's
        // dashboards); new ones take the places left, in name order.
        let mut now: BTreeSet<String> = exported.iter().filter(|t| present.contains(t.as_str())).cloned().collect();
        for tenant in present.iter().filter(|t| label_safe(t)) {
            if now.len() >= MAX_CX_TENANTS {
                break;
            }
            now.insert(tenant.to_string());
        }
        let unfit = present.iter().filter(|t| !now.contains(**t)).count();
        for row in reports.iter().flat_map(|r| &r.rows) {
            let tenant = row.tenant.as_str();
            if !now.contains(tenant) {
                continue;
            }
            let channel = row.channel.map_or("all", |c| c.as_str());
            let l = [tenant, channel];
            // A statistic with nothing to show drops its series (a case moved to another
            // channel takes its survey along): no stale value stays behind.
            let set = |g: &GaugeVec, v: Option<f64>| match v {
                Some(v) => g.with_label_values(&l).set(v),
                None => {
                    let _ = g.remove_label_values(&l);
                }
            };
            let count = |g: &IntGaugeVec, n: u64| g.with_label_values(&l).set(i64::try_from(n).unwrap_or(i64::MAX));
            count(&self.cx.contacts, row.contacts);
            count(&self.cx.cases, row.cases);
            count(&self.cx.first_responses, row.first_response.count);
            count(&self.cx.resolutions, row.resolution.timing.count);
            count(&self.cx.open_cases, row.resolution.open);
            count(&self.cx.expired_cases, row.resolution.expired);
            for (survey, n) in SURVEYS.into_iter().zip([row.csat.total, row.nps.answers, row.ces.answers]) {
                self.cx
                    .survey_answers
                    .with_label_values(&[tenant, channel, survey])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            set(&self.cx.first_response_p50, row.first_response.p50_seconds);
            set(&self.cx.resolution_p50, row.resolution.timing.p50_seconds);
            set(&self.cx.csat, row.csat.share);
            set(&self.cx.nps, row.nps.score);
            set(&self.cx.ces, row.ces.mean);
            set(&self.cx.repeat_contact, row.repeat_contact.share);
            set(&self.cx.channel_switch, row.channel_switch.share);
        }
        let channels = Channel::ALL.map(Channel::as_str);
        for gone in exported.difference(&now) {
            for channel in channels.iter().copied().chain(["all"]) {
                self.cx.remove(&[gone.as_str(), channel]);
            }
        }
        *exported = now;
        self.cx_unexported_tenants.set(unfit as i64);
        let mut rows: Vec<_> = reports.iter().flat_map(|r| r.rows.iter().cloned()).collect();
        rows.sort_by(|a, b| (&a.tenant, a.channel.is_none()).cmp(&(&b.tenant, b.channel.is_none())));
        *self.cx_latest.lock().unwrap_or_else(|p| p.into_inner()) = CxReport { rows };
    }

    /// The CX rows last published, every tenant of every shard held (tenants of one shard
    /// each: shards never share one).
    pub fn cx_latest(&self) -> CxReport {
        self.cx_latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Interventions emitted so far, per moment type.
    pub fn interventions_by_type(&self) -> Vec<(MomentType, u64)> {
        MomentType::ALL.iter().map(|&m| (m, self.interventions.with_label_values(&[m.as_str()]).get())).collect()
    }

    /// The name of every metric family the service exports, whether or not it has samples yet
    /// (labelled families appear in `/metrics` with their first sample): what dashboards and
    /// alert rules may refer to.
    pub fn family_names() -> Vec<String> {
        let m = ServiceMetrics::new();
        m.dead_letter("any");
        m.lag("any", 0, 0);
        m.transaction(true);
        m.rebalance(true);
        m.produced.with_label_values(&["any"]);
        m.output_records_too_large.with_label_values(&["any"]);
        m.consumer_error(&rdkafka::error::KafkaError::NoMessageReceived);
        let c = &m.cx;
        let tc = ["any", "any"];
        for g in [&c.contacts, &c.cases, &c.first_responses, &c.resolutions, &c.open_cases, &c.expired_cases] {
            g.with_label_values(&tc);
        }
        c.survey_answers.with_label_values(&["any", "any", "csat"]);
        for g in
            [&c.first_response_p50, &c.resolution_p50, &c.csat, &c.nps, &c.ces, &c.repeat_contact, &c.channel_switch]
        {
            g.with_label_values(&tc);
        }
        m.registry.gather().iter().map(|f| f.name().to_string()).collect()
    }

    /// Counts an error a consumer reported.
    pub fn consumer_error(&self, e: &rdkafka::error::KafkaError) {
        let code = e.rdkafka_error_code().map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
        self.consumer_errors.with_label_values(&[&code]).inc();
    }

    /// The registry (to add process metrics or serve it).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        TextEncoder::new().encode(&families, &mut buf).expect("text encoding to memory cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_no_longer_held_loses_its_lag_series() {
        let m = ServiceMetrics::new();
        m.lag("cx.chat.v1", 0, 5);
        m.lag("cx.chat.v1", 1, -3);
        let text = m.render();
        assert!(text.contains(r#"omnistitch_consumer_lag_records{partition="0",topic="cx.chat.v1"} 5"#), "{text}");
        assert!(
            text.contains(r#"omnistitch_consumer_lag_records{partition="1",topic="cx.chat.v1"} 0"#),
            "never negative"
        );
        m.forget_lag("cx.chat.v1", 0);
        m.forget_lag("cx.chat.v1", 7); // never set: nothing to drop
        let text = m.render();
        assert!(!text.contains(r#"partition="0",topic="cx.chat.v1""#), "{text}");
        assert!(text.contains(r#"partition="1",topic="cx.chat.v1""#));
    }

    #[test]
    fn consumer_errors_are_counted_by_code() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let m = ServiceMetrics::new();
        m.consumer_error(&KafkaError::MessageConsumption(RDKafkaErrorCode::NotImplemented));
        m.consumer_error(&KafkaError::MessageConsumption(RDKafkaErrorCode::NotImplemented));
        m.consumer_error(&KafkaError::Canceled);
        let text = m.render();
        assert!(text.contains(r#"omnistitch_consumer_errors_total{code="NotImplemented"} 2"#), "{text}");
        assert!(text.contains(r#"omnistitch_consumer_errors_total{code="other"} 1"#), "{text}");
    }

    #[test]
    fn exact_quantiles() {
        let r = LatencyRecorder::default();
        assert_eq!(r.quantile_ms(0.5), None);
        r.record((1..=100).map(|i| i as i64));
        assert_eq!(r.quantile_ms(0.5), Some(50));
        assert_eq!(r.quantile_ms(0.99), Some(99));
        assert_eq!(r.quantile_ms(1.0), Some(100));
        r.record([-5, 10_000_000].into_iter());
        assert_eq!(r.quantile_ms(0.0), Some(0));
        assert_eq!(r.quantile_ms(1.0), Some(LATENCY_MAX_MS as u64));
    }

    #[test]
    fn render_names_every_family_once_and_counts() {
        let m = ServiceMetrics::new();
        let mut tally = InputTally::default();
        tally.input(Channel::Chat, Outcome::Applied);
        tally.input(Channel::Chat, Outcome::Applied);
        tally.identity(1, 0);
        m.add_inputs(&mut tally);
        // The tally was emptied: adding it again counts nothing twice.
        m.add_inputs(&mut tally);
        m.dead_letter("truncated_frame");
        m.evicted_and_forgotten(5, 1);
        m.evicted_and_forgotten(4, 0);
        let text = m.render();
        assert!(text.contains("omnistitch_input_records_total{channel=\"chat\",outcome=\"applied\"} 2"), "{text}");
        assert!(text.contains("omnistitch_identity_merges_total 1"), "{text}");
        assert!(text.contains("omnistitch_dead_letters_total{reason=\"truncated_frame\"} 1"));
        assert!(text.contains("omnistitch_timeline_evicted_total 9"));
        assert!(text.contains("omnistitch_identity_forgotten_total 1"));
        assert!(text.contains("# TYPE omnistitch_processing_latency_seconds histogram"));
    }

    /// A CX report with one inbound chat of each of `tenants`.
    fn cx_report(tenants: &[&str]) -> CxReport {
        use omnistitch_model::{Direction, Event, EventKind, EventTime, Tenant};
        let mut cx = omnistitch_cx::CxMetrics::new(omnistitch_cx::CxConfig::default()).unwrap();
        for (i, t) in tenants.iter().enumerate() {
            let e = Event::new(
                Tenant::new(t),
                format!("e{i}"),
                EventTime(1_767_571_200_000),
                Channel::Chat,
                Direction::Inbound,
                EventKind::ChatStarted,
            );
            cx.observe(&e, "thread:t");
        }
        cx.report()
    }

    /// The detector's outcomes per moment type and the late events are exported: a backfilled
    /// old email's breach, expired when found, shows as stale.
    #[test]
    fn moment_outcomes_show_stale_detections() {
        use omnistitch_model::{Direction, Event, EventKind, EventTime, ProfileId, Tenant};
        use omnistitch_moments::{MomentsConfig, MomentsPipeline};
        let mut p = MomentsPipeline::new(MomentsConfig::default()).expect("config");
        let (day, profile) = (86_400_000, ProfileId::derive("acme", "p"));
        let event = |id: &str, t: i64, kind| {
            let mut e = Event::new(Tenant::new("acme"), id, EventTime(t), Channel::Email, Direction::Inbound, kind);
            e.thread.key = Some(format!("email:<{id}>").into());
            e
        };
        for e in [event("live", 10 * day, EventKind::Message), event("old", day, EventKind::Message)] {
            let thread = std::sync::Arc::from(format!("email:<{}>", e.event_id));
            assert!(p.push(profile, e, &thread, Vec::new()).is_empty());
        }
        let m = ServiceMetrics::new();
        m.moments(&p.detector().counters(), p.buffer().late_events());
        let text = m.render();
        for line in [
            r#"omnistitch_moment_outcomes{moment_type="first_response_sla_breach",outcome="stale"} 1"#,
            r#"omnistitch_moment_outcomes{moment_type="first_response_sla_breach",outcome="emitted"} 0"#,
            r#"omnistitch_moment_outcomes{moment_type="detractor_survey",outcome="cooldown"} 0"#,
            "omnistitch_moment_late_events 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    /// The counts behind the p50s and scores are exported beside them; a score with nothing
    /// left to show loses its series instead of keeping a stale value.
    #[test]
    fn cx_denominators_are_exported_and_empty_scores_dropped() {
        use omnistitch_model::{Direction, Event, EventKind, EventTime, Survey, Tenant};
        let mut cx = omnistitch_cx::CxMetrics::new(omnistitch_cx::CxConfig::default()).unwrap();
        let at = |s: i64| EventTime(1_767_571_200_000 + s * 1_000);
        let ev = |id: &str, s: i64, channel, direction, kind| {
            Event::new(Tenant::new("acme"), id, at(s), channel, direction, kind)
        };
        cx.observe(&ev("e1", 0, Channel::Email, Direction::Inbound, EventKind::Message), "case:1");
        let reply = Event {
            agent_id: Some("agent-7".into()),
            ..ev("e2", 60, Channel::Email, Direction::Outbound, EventKind::Message)
        };
        cx.observe(&reply, "case:1");
        let survey = Event {
            survey: Some(Survey { csat: Some(2), nps: Some(9), ces: None }),
            ..ev("e3", 120, Channel::Email, Direction::Inbound, EventKind::SurveyResponse)
        };
        cx.observe(&survey, "case:1");
        let m = ServiceMetrics::new();
        m.cx(&[cx.report()]);
        let text = m.render();
        for line in [
            r#"omnistitch_cx_first_responses{channel="email",tenant="acme"} 1"#,
            r#"omnistitch_cx_first_response_p50_seconds{channel="email",tenant="acme"} 60"#,
            r#"omnistitch_cx_open_cases{channel="email",tenant="acme"} 1"#,
            r#"omnistitch_cx_resolutions{channel="email",tenant="acme"} 0"#,
            r#"omnistitch_cx_survey_answers{channel="email",survey="csat",tenant="acme"} 1"#,
            r#"omnistitch_cx_survey_answers{channel="email",survey="ces",tenant="acme"} 0"#,
            r#"omnistitch_cx_csat_ratio{channel="email",tenant="acme"} 0"#,
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // The next report has no CSAT answer for email (here: a fresh state): its ratio goes.
        let mut fresh = omnistitch_cx::CxMetrics::new(omnistitch_cx::CxConfig::default()).unwrap();
        fresh.observe(&ev("e1", 0, Channel::Email, Direction::Inbound, EventKind::Message), "case:1");
        m.cx(&[fresh.report()]);
        let text = m.render();
        assert!(!text.contains(r#"omnistitch_cx_csat_ratio{channel="email""#), "{text}");
        assert!(
            text.contains(r#"omnistitch_cx_survey_answers{channel="email",survey="csat",tenant="acme"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn cx_gauges_export_brand_like_tenants_only_and_drop_those_no_longer_held() {
        let m = ServiceMetrics::new();
        m.cx(&[cx_report(&["acme", "jo@example.com", "+14155550134", "4155550134"])]);
        let text = m.render();
        assert!(text.contains("omnistitch_cx_contacts{channel=\"chat\",tenant=\"acme\"} 1"), "{text}");
        assert!(!text.contains("example.com") && !text.contains("4155550134"), "{text}");
        assert!(text.contains("omnistitch_cx_unexported_tenants 3"), "{text}");
        // The shard of acme is revoked; globex's is held.
        m.cx(&[cx_report(&["globex"])]);
        let text = m.render();
        assert!(!text.contains("tenant=\"acme\""), "{text}");
        assert!(text.contains("omnistitch_cx_contacts{channel=\"all\",tenant=\"globex\"} 1"), "{text}");
        assert!(text.contains("omnistitch_cx_unexported_tenants 0"), "{text}");
    }

    /// Past the cap, tenants exported already keep their place: a new one does not take it.
    #[test]
    fn cx_tenants_exported_keep_their_place_past_the_cap() {
        let m = ServiceMetrics::new();
        let names: Vec<String> = (0..MAX_CX_TENANTS).map(|i| format!("t{i:03}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        m.cx(&[cx_report(&refs)]);
        let mut more = refs.clone();
        more.push("a-new-one");
        m.cx(&[cx_report(&more)]);
        let text = m.render();
        assert!(text.contains(r#"omnistitch_cx_contacts{channel="all",tenant="t255"} 1"#));
        assert!(!text.contains("a-new-one"), "no place left");
        assert!(text.contains("omnistitch_cx_unexported_tenants 1"), "{text}");
        // A tenant no longer held frees its place.
        more.remove(0);
        m.cx(&[cx_report(&more)]);
        let text = m.render();
        assert!(text.contains(r#"omnistitch_cx_contacts{channel="all",tenant="a-new-one"} 1"#));
        assert!(!text.contains(r#"tenant="t000""#));
    }

    #[test]
    fn tenant_label_values_are_brand_like_names() {
        for good in ["acme", "Globex-EU", "a.b_c-1", &"a".repeat(64)] {
            assert!(label_safe(good), "{good}");
        }
        for bad in ["", "1acme", "jo@example.com", "+14155550134", "acme corp", "ünï", &"a".repeat(65)] {
            assert!(!label_safe(bad), "{bad}");
        }
    }
}
