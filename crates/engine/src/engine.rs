//! The engine step.

use std::sync::Arc;

use omnistitch_identity::{Conflict, IdentityResolver, IdentityRules, Merge, Normalizer, ResolvedIdentifier};
use omnistitch_model::output::{IdentifierRecord, MatchOutcome, MatchedIdentifier};
use omnistitch_model::{Event, EventTime, ProfileId, Tenant};
use omnistitch_timeline::{RetentionConfig, TimelineStore};

use crate::dedup::{Arrival, SeenEvents};
use crate::snapshot::{self, Holds, SnapshotError};
use crate::stats::EngineStats;

/// Full retention sweeps happen each time event time advances by this share of the max age:
/// often enough to bound memory, rarely enough to cost nothing per event.
const SWEEPS_PER_MAX_AGE: i64 = 16;

/// What one event changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Event time.
    pub time: EventTime,
    /// The profile the event belongs to; `None` for a redelivery or an event beyond its
    /// tenant's retention (nothing changed).
    pub profile: Option<ProfileId>,
    /// Whether the event created its profile.
    pub created: bool,
    /// Position in the profile's timeline (`None`: a duplicate, older than retention, or
    /// older than every entry of a timeline at its count limit, so evicted at once).
    pub position: Option<usize>,
    /// Conversation thread (empty for a redelivery).
    pub thread_id: Arc<str>,
    /// The thread whose conversation the event's case id took into `thread_id` (its earlier
    /// events are in `thread_id` now), if any.
    pub absorbed_thread: Option<Arc<str>>,
    /// The event's identifiers and how each matched, strongest first.
    pub identifiers: Vec<MatchedIdentifier>,
    /// Merges caused, in order (each absorbed profile is gone).
    pub merges: Vec<Merge>,
    /// Links refused.
    pub conflicts: Vec<Conflict>,
}

impl Applied {
    /// An event that changed nothing (a redelivery, or one beyond retention).
    fn nothing(time: EventTime) -> Self {
        Applied {
            time,
            profile: None,
            created: false,
            position: None,
            thread_id: Arc::from(""),
            absorbed_thread: None,
            identifiers: vec![],
            merges: vec![],
            conflicts: vec![],
        }
    }
}

/// Identity resolution and timelines over a stream of events.
#[derive(Debug)]
pub struct Engine {
    identity: IdentityResolver,
    timelines: TimelineStore,
    seen: SeenEvents,
    retention: RetentionConfig,
    stats: EngineStats,
}

fn outcome_index(o: MatchOutcome) -> usize {
    match o {
        MatchOutcome::Linked => 0,
        MatchOutcome::Added => 1,
        MatchOutcome::Shared => 2,
        MatchOutcome::Conflict => 3,
        MatchOutcome::Blocked => 4,
        MatchOutcome::Invalid => 5,
    }
}

fn matched(ids: Vec<ResolvedIdentifier>) -> Vec<MatchedIdentifier> {
    ids.into_iter()
        .map(|r| MatchedIdentifier {
            identifier: match r.value {
                Some(v) => IdentifierRecord { kind: v.kind, value: v.value },
                None => IdentifierRecord { kind: r.kind, value: Default::default() },
            },
            outcome: r.outcome,
        })
        .collect()
}

/// What a snapshot holds of an engine (its settings are configuration).
#[derive(serde::Serialize)]
struct EngineRef<'a> {
    graphs: &'a hashbrown::HashMap<Tenant, omnistitch_identity::TenantGraph>,
    timelines: &'a TimelineStore,
    seen: &'a SeenEvents,
    stats: &'a EngineStats,
}

/// [`EngineRef`], read back.
#[derive(serde::Deserialize)]
struct EngineState {
    graphs: hashbrown::HashMap<Tenant, omnistitch_identity::TenantGraph>,
    timelines: TimelineStore,
    seen: SeenEvents,
    stats: EngineStats,
}

impl Engine {
    /// The engine's state as a snapshot ([`crate::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let state = EngineRef {
            graphs: self.identity.graph_map(),
            timelines: &self.timelines,
            seen: &self.seen,
            stats: &self.stats,
        };
        snapshot::seal(Holds::Engine, &state)
    }

    /// An engine holding the state of `snapshot` (from [`Engine::snapshot`]), under these
    /// settings.
    pub fn from_snapshot(
        snapshot: &[u8],
        normalizer: Arc<Normalizer>,
        rules: IdentityRules,
        retention: RetentionConfig,
    ) -> Result<Self, SnapshotError> {
        let state: EngineState = snapshot::open(Holds::Engine, snapshot)?;
        Ok(Engine {
            identity: IdentityResolver::with_graphs(normalizer, rules, state.graphs),
            timelines: state.timelines.with_retention(retention.clone()),
            seen: state.seen,
            retention,
            stats: state.stats,
        })
    }

    /// An engine with no state.
    pub fn new(normalizer: Arc<Normalizer>, rules: IdentityRules, retention: RetentionConfig) -> Self {
        Engine {
            identity: IdentityResolver::new(normalizer, rules),
            timelines: TimelineStore::new(retention.clone()),
            seen: SeenEvents::default(),
            retention,
            stats: EngineStats::default(),
        }
    }

    /// Whether an event of `tenant` at `time` is older than the tenant's retention (its newest
    /// event time less `max_age_days`): such an event is not applied. Its timeline entry would
    /// be evicted at once, its redelivery could no longer be recognised (the digests go with
    /// the retention), and the moments it made would be long expired; callers dead-letter it
    /// (`beyond_retention`).
    pub fn is_beyond_retention(&self, tenant: &str, time: EventTime) -> bool {
        self.seen.newest(tenant).is_some_and(|newest| time.0 < newest.0.saturating_sub(self.retention.max_age_ms()))
    }

    /// Applies one validated event (one beyond its tenant's retention changes nothing, see
    /// [`Engine::is_beyond_retention`]).
    pub fn apply(&mut self, event: &Event) -> Applied {
        let max_age = self.retention.max_age_ms();
        let sweep_due =
            match self.seen.arrive(&event.tenant.0, &event.event_id, event.time, max_age / SWEEPS_PER_MAX_AGE, max_age)
            {
                Arrival::New { sweep_due } => sweep_due,
                Arrival::Duplicate => {
                    self.stats.duplicates += 1;
                    return Applied::nothing(event.time);
                }
                Arrival::BeyondRetention => {
                    self.stats.beyond_retention += 1;
                    return Applied::nothing(event.time);
                }
            };
        self.stats.events += 1;
        let resolution = self.identity.resolve(event);
        for r in &resolution.identifiers {
            self.stats.identifiers[outcome_index(r.outcome)] += 1;
        }
        self.stats.profiles_created += u64::from(resolution.created);
        self.stats.merges += resolution.merges.len() as u64;
        self.stats.conflicts += resolution.conflicts.len() as u64;
        for m in &resolution.merges {
            self.stats.evicted += self.timelines.merge(event.tenant.as_str(), m.survivor, m.absorbed) as u64;
        }
        let time = event.time;
        let appended = self.timelines.append(resolution.profile, event);
        self.stats.evicted += appended.evicted as u64;
        if sweep_due {
            self.sweep(&event.tenant);
        }
        Applied {
            time,
            profile: Some(resolution.profile),
            created: resolution.created,
            position: appended.position,
            thread_id: appended.thread_id,
            absorbed_thread: appended.absorbed_thread,
            identifiers: matched(resolution.identifiers),
            merges: resolution.merges,
            conflicts: resolution.conflicts,
        }
    }

    /// Evicts what retention no longer allows from `tenant`'s timelines, thread index and
    /// deduplication index, its conversation ids no event named within retention and its
    /// redirects of older merges, and its profiles without identifiers or with conversation
    /// ids alone, by the tenant's own newest event time.
    fn sweep(&mut self, tenant: &Tenant) {
        self.stats.evicted += self.timelines.evict_expired_of(tenant.as_str()) as u64;
        if let Some(watermark) = self.timelines.watermark(tenant.as_str()) {
            let cutoff = EventTime(watermark.0.saturating_sub(self.retention.max_age_ms()));
            self.seen.forget_before(tenant.as_str(), cutoff);
            self.identity.forget_conversations_before(tenant, cutoff);
            self.identity.forget_anonymous_before(tenant, cutoff);
        }
    }

    /// Identity state.
    pub fn identity(&self) -> &IdentityResolver {
        &self.identity
    }

    /// Timeline state.
    pub fn timelines(&self) -> &TimelineStore {
        &self.timelines
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
}
