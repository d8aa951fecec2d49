//! The stage: events in (with profile and thread), metrics out on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hashbrown::HashMap;
use omnistitch_model::{Channel, Event, EventTime, ProfileId, Tenant};
use xxhash_rust::xxh3::xxh3_64;

use crate::case::{slot, Case, Standing};
use crate::config::{CxConfig, CxConfigError, Limits};
use crate::report::{Aggregate, CxReport};

/// Case keys of case ids; other keys are threads without one.
const CASE_PREFIX: &str = "case:";

/// One tenant's cases and the aggregates of its closed ones.
#[derive(Debug, Default)]
struct TenantState {
    /// The latest event time seen for the tenant: the clock of eviction.
    watermark: Option<EventTime>,
    cases: HashMap<Arc<str>, Case>,
    /// Conversation key hash -> the case holding it.
    conversations: HashMap<u64, Arc<str>>,
    /// (deadline when filed, case key), earliest first: one entry per case, filed again lazily
    /// when its deadline moved later (it comes up for closing before its time, never after).
    deadlines: BTreeSet<(i64, Arc<str>)>,
    /// Contributions of closed cases, by channel slot.
    closed: [Aggregate; 4],
}

impl TenantState {
    /// Forgets `hashes` where they still point at `key`.
    fn unregister(&mut self, key: &Arc<str>, hashes: impl IntoIterator<Item = u64>) {
        for h in hashes {
            if self.conversations.get(&h) == Some(key) {
                self.conversations.remove(&h);
            }
        }
    }

    /// Takes a case out of the map and the deadline index.
    fn take(&mut self, key: &str) -> Option<(Arc<str>, Case)> {
        let (key, mut case) = self.cases.remove_entry(key)?;
        if let Some(at) = case.indexed.take() {
            self.deadlines.remove(&(at, key.clone()));
        }
        Some((key, case))
    }

    /// Gives `case` its fresh deadline, filing it again only when the deadline moved earlier.
    fn refresh(deadlines: &mut BTreeSet<(i64, Arc<str>)>, key: &Arc<str>, case: &mut Case, limits: &Limits) {
        let wait = if case.is_resolved() { limits.survey_window_ms } else { limits.idle_ms };
        case.deadline = case.last_activity().millis().saturating_add(wait);
        if case.indexed.is_none_or(|at| at > case.deadline) {
            if let Some(at) = case.indexed {
                deadlines.remove(&(at, key.clone()));
            }
            deadlines.insert((case.deadline, key.clone()));
            case.indexed = Some(case.deadline);
        }
    }

    /// Puts a case back with a fresh deadline.
    fn put(&mut self, key: Arc<str>, mut case: Case, limits: &Limits) {
        Self::refresh(&mut self.deadlines, &key, &mut case, limits);
        self.cases.insert(key, case);
    }

    /// Moves thread case `absorbed` into case `survivor` (which may not exist yet).
    fn absorb(&mut self, survivor: &Arc<str>, absorbed: &str, limits: &Limits) {
        let Some((absorbed_key, absorbed)) = self.take(absorbed) else { return };
        for h in absorbed.key_hashes() {
            if self.conversations.get(&h) == Some(&absorbed_key) {
                self.conversations.insert(h, survivor.clone());
            }
        }
        let merged = match self.take(survivor) {
            Some((_, mut case)) => {
                let forgotten = case.merge(absorbed);
                self.unregister(survivor, forgotten);
                case
            }
            None => absorbed,
        };
        self.put(survivor.clone(), merged, limits);
    }

    /// Closes the case with the earliest deadline, adding it to the closed aggregates; an entry
    /// filed before its case's deadline moved later is filed again instead. Returns whether
    /// the index had an entry.
    fn close_first(&mut self) -> bool {
        let Some((at, key)) = self.deadlines.pop_first() else { return false };
        if let Some(case) = self.cases.get_mut(&key) {
            if case.deadline > at {
                case.indexed = Some(case.deadline);
                self.deadlines.insert((case.deadline, key));
                return true;
            }
        }
        if let Some(case) = self.cases.remove(&key) {
            self.unregister(&key, case.key_hashes().collect::<Vec<_>>());
            case.contribute(&mut self.closed, Standing::Closed);
        }
        true
    }

    /// Closes cases past their deadline and beyond the cap.
    fn evict(&mut self, limits: &Limits) {
        let now = self.watermark.map_or(i64::MIN, EventTime::millis);
        while self.deadlines.first().is_some_and(|(deadline, _)| *deadline < now) {
            self.close_first();
        }
        while self.cases.len() > limits.max_cases && self.close_first() {}
    }

    /// Closed aggregates plus what every held case contributes now.
    fn snapshot(&self) -> [Aggregate; 4] {
        let mut out = self.closed.clone();
        for case in self.cases.values() {
            case.contribute(&mut out, Standing::Live);
        }
        out
    }
}

/// Customer-experience metrics over the unified timeline; sans-IO, clocked by event time.
///
/// Feed every timeline event with [`observe`](Self::observe); read [`report`](Self::report)
/// whenever. Metrics are kept per case (the `case:<id>` thread, or the thread of an event
/// without a case id), never per profile, so how identity resolution splits or merges customers
/// does not change them.
#[derive(Debug)]
pub struct CxMetrics {
    limits: Limits,
    tenants: BTreeMap<Tenant, TenantState>,
}

fn hash(key: &Option<String>) -> Option<u64> {
    key.as_deref().map(|k| xxh3_64(k.as_bytes()))
}

impl CxMetrics {
    /// A stage with validated settings.
    pub fn new(config: CxConfig) -> Result<Self, CxConfigError> {
        Ok(CxMetrics { limits: config.limits()?, tenants: BTreeMap::new() })
    }

    /// Takes one timeline event of `profile`, in its thread `thread_id` (`case:<id>` when the
    /// event has a case id); per case, events must come in event-time order.
    ///
    /// The profile is not used by any metric (see the type's documentation).
    pub fn observe(&mut self, profile: ProfileId, event: &Event, thread_id: &str) {
        let _ = profile;
        let limits = self.limits;
        if !self.tenants.contains_key(&event.tenant) {
            self.tenants.insert(event.tenant.clone(), TenantState::default());
        }
        let tenant = self.tenants.get_mut(&event.tenant).expect("just inserted");
        tenant.watermark = Some(tenant.watermark.map_or(event.time, |w| w.max(event.time)));

        let own = hash(&event.thread.key);
        let parent = hash(&event.thread.parent);
        let literal = match &event.case_id {
            Some(id) if thread_id.strip_prefix(CASE_PREFIX) == Some(id.as_str()) => None,
            Some(id) => Some(format!("{CASE_PREFIX}{id}")),
            None => None,
        };
        let literal = literal.as_deref().unwrap_or(thread_id);
        let key: Arc<str> = tenant.cases.get_key_value(literal).map_or_else(|| Arc::from(literal), |(k, _)| k.clone());
        if key.starts_with(CASE_PREFIX) {
            // The conversation was threaded on its own until the case id showed up: its earlier
            // events (the first contact, often) belong to this case.
            for h in [own, parent].into_iter().flatten() {
                let absorbed =
                    tenant.conversations.get(&h).filter(|k| **k != key && !k.starts_with(CASE_PREFIX)).cloned();
                if let Some(absorbed) = absorbed {
                    tenant.absorb(&key, &absorbed, &limits);
                }
            }
        }

        if !tenant.cases.contains_key(&key) {
            tenant.cases.insert(key.clone(), Case::new(event));
        }
        let case = tenant.cases.get_mut(&key).expect("just inserted");
        let forgotten = case.apply(event, own, parent);
        let held = [own, parent].map(|h| h.filter(|&h| case.holds(h)));
        TenantState::refresh(&mut tenant.deadlines, &key, case, &limits);
        tenant.unregister(&key, forgotten);
        for h in held.into_iter().flatten() {
            if tenant.conversations.get(&h) != Some(&key) {
                tenant.conversations.insert(h, key.clone());
            }
        }
        tenant.evict(&limits);
    }

    /// Records that `absorbed` merged into `survivor`; later events name the survivor.
    ///
    /// Nothing moves: cases are keyed by thread, not profile, so a case whose events were
    /// resolved to both profiles was already one case.
    pub fn merge_profiles(&mut self, survivor: ProfileId, absorbed: ProfileId) {
        let _ = (survivor, absorbed);
    }

    /// Cases currently held, over all tenants (memory is proportional to it).
    pub fn held_cases(&self) -> usize {
        self.tenants.values().map(|t| t.cases.len()).sum()
    }

    /// (Conversation keys indexed, those of them pointing at a case that does not hold them).
    #[cfg(test)]
    pub(crate) fn key_counts(&self) -> (usize, usize) {
        let indexed = self.tenants.values().map(|t| t.conversations.len()).sum();
        let dangling = self
            .tenants
            .values()
            .flat_map(|t| t.conversations.iter().map(move |(h, k)| t.cases.get(k).is_none_or(|c| !c.holds(*h))))
            .filter(|&d| d)
            .count();
        (indexed, dangling)
    }

    /// Every tenant's metrics now: closed cases plus the current state of held ones.
    pub fn report(&self) -> CxReport {
        let mut rows = Vec::with_capacity(self.tenants.len() * 5);
        for (tenant, state) in &self.tenants {
            let by_channel = state.snapshot();
            let mut all = Aggregate::default();
            for channel in Channel::ALL {
                let agg = &by_channel[slot(channel)];
                all.add(agg);
                rows.push(agg.row(tenant, Some(channel)));
            }
            rows.push(all.row(tenant, None));
        }
        CxReport { rows }
    }
}
