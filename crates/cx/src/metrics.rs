//! The stage: events in (with their thread), metrics out on demand.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashMap;
use omnistitch_model::{Channel, CompactString, Event, EventTime, Tenant};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::case::{slot, Case, Standing};
use crate::config::{CxConfig, CxConfigError, Limits};
use crate::report::{Aggregate, CxReport};

/// Case keys of case ids; other keys are threads without one.
const CASE_PREFIX: &str = "case:";
/// Seed of the digests of case ids (threads use none).
const CASE_SEED: u64 = 0x6361_7365;

/// A case key (`case:<id>` or a thread) as a 64-bit digest whose lowest bit tells a case id
/// (set) from a thread (clear): a collision only joins two cases.
type CaseKey = u64;

/// The key of case id `id`.
fn case_id_key(id: &str) -> CaseKey {
    xxh3_64_with_seed(id.as_bytes(), CASE_SEED) | 1
}

/// The key of case key `literal` (`case:<id>` or a thread).
fn case_key(literal: &str) -> CaseKey {
    match literal.strip_prefix(CASE_PREFIX) {
        Some(id) => case_id_key(id),
        None => xxh3_64(literal.as_bytes()) & !1,
    }
}

/// Whether `key` names a case id (not a thread).
fn is_case_id(key: CaseKey) -> bool {
    key & 1 == 1
}

/// One tenant's cases and the aggregates of its closed ones.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct TenantState {
    /// The latest event time seen for the tenant: the clock of eviction.
    watermark: Option<EventTime>,
    cases: HashMap<CaseKey, Case>,
    /// Conversation key hash -> the case holding it.
    conversations: HashMap<u64, CaseKey>,
    /// (deadline when filed, case key), earliest first: one entry per case, filed again lazily
    /// when its deadline moved later (it comes up for closing before its time, never after).
    deadlines: BTreeSet<(i64, CaseKey)>,
    /// Contributions of closed cases, by channel slot.
    closed: [Aggregate; 4],
}

impl TenantState {
    /// Forgets `hashes` where they still point at `key`.
    fn unregister(&mut self, key: CaseKey, hashes: impl IntoIterator<Item = u64>) {
        for h in hashes {
            if self.conversations.get(&h) == Some(&key) {
                self.conversations.remove(&h);
            }
        }
    }

    /// Takes a case out of the map and the deadline index.
    fn take(&mut self, key: CaseKey) -> Option<Case> {
        let mut case = self.cases.remove(&key)?;
        if let Some(at) = case.indexed.take() {
            self.deadlines.remove(&(at, key));
        }
        Some(case)
    }

    /// Files every case again at its deadline (for state read back: the index is rebuilt, not
    /// trusted). Cases close in the order they would have: an entry filed before its case's
    /// deadline moved later is filed again at the deadline when it comes up, never closing it.
    fn index_deadlines(&mut self) {
        self.deadlines = self
            .cases
            .iter_mut()
            .map(|(&key, case)| {
                case.indexed = Some(case.deadline);
                (case.deadline, key)
            })
            .collect();
    }

    /// Gives `case` its fresh deadline, filing it again only when the deadline moved earlier.
    fn refresh(deadlines: &mut BTreeSet<(i64, CaseKey)>, key: CaseKey, case: &mut Case, limits: &Limits) {
        let wait = if case.is_resolved() { limits.survey_window_ms } else { limits.idle_ms };
        case.deadline = case.last_activity().millis().saturating_add(wait);
        if case.indexed.is_none_or(|at| at > case.deadline) {
            if let Some(at) = case.indexed {
                deadlines.remove(&(at, key));
            }
            deadlines.insert((case.deadline, key));
            case.indexed = Some(case.deadline);
        }
    }

    /// Puts a case back with a fresh deadline.
    fn put(&mut self, key: CaseKey, mut case: Case, limits: &Limits) {
        Self::refresh(&mut self.deadlines, key, &mut case, limits);
        self.cases.insert(key, case);
    }

    /// Moves thread case `absorbed` into case `survivor` (which may not exist yet).
    fn absorb(&mut self, survivor: CaseKey, absorbed: CaseKey, limits: &Limits) {
        let Some(absorbed_case) = self.take(absorbed) else { return };
        for h in absorbed_case.key_hashes() {
            if self.conversations.get(&h) == Some(&absorbed) {
                self.conversations.insert(h, survivor);
            }
        }
        let merged = match self.take(survivor) {
            Some(mut case) => {
                let forgotten = case.merge(absorbed_case);
                self.unregister(survivor, forgotten);
                case
            }
            None => absorbed_case,
        };
        self.put(survivor, merged, limits);
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
            self.unregister(key, case.key_hashes());
            case.contribute(&mut self.closed, Standing::Closed);
        }
        true
    }

    /// Closes cases past their deadline (by the watermark).
    fn close_expired(&mut self) {
        let now = self.watermark.map_or(i64::MIN, EventTime::millis);
        while self.deadlines.first().is_some_and(|(deadline, _)| *deadline < now) {
            self.close_first();
        }
    }

    /// Closes the cases beyond the cap, those nearest their deadline first.
    fn close_over_cap(&mut self, limits: &Limits) {
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

fn hash(key: &Option<CompactString>) -> Option<u64> {
    key.as_deref().map(|k| xxh3_64(k.as_bytes()))
}

/// CX state read back from a snapshot, for [`CxMetrics::with_state`].
#[derive(Debug, serde::Deserialize)]
pub struct CxState(BTreeMap<Tenant, TenantState>);

/// Written as its tenants' cases and aggregates, without its limits (configuration).
impl serde::Serialize for CxMetrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tenants.serialize(s)
    }
}

impl CxMetrics {
    /// A stage of `config` holding `state` (from a snapshot).
    pub fn with_state(config: CxConfig, state: CxState) -> Result<Self, CxConfigError> {
        let mut tenants = state.0;
        for tenant in tenants.values_mut() {
            tenant.index_deadlines();
        }
        Ok(CxMetrics { limits: config.limits()?, tenants })
    }

    /// A stage with validated settings.
    pub fn new(config: CxConfig) -> Result<Self, CxConfigError> {
        Ok(CxMetrics { limits: config.limits()?, tenants: BTreeMap::new() })
    }

    /// Takes one timeline event, in its thread `thread_id` (`case:<id>` when the event has a
    /// case id); per case, events must come in event-time order. Its profile does not matter
    /// (see the type's documentation), so neither do merges.
    pub fn observe(&mut self, event: &Event, thread_id: &str) {
        let limits = self.limits;
        // Looked up before it is cloned: a clone touches the count every thread shares.
        if !self.tenants.contains_key(&event.tenant) {
            self.tenants.insert(event.tenant.clone(), TenantState::default());
        }
        let tenant = self.tenants.get_mut(&event.tenant).expect("inserted above");
        tenant.watermark = Some(tenant.watermark.map_or(event.time, |w| w.max(event.time)));
        // A case whose deadline this event's time passes is closed before the event is placed:
        // a survey after the window, a contact after the idle limit, starts a case of its own,
        // whether or not another event of the tenant came in between.
        tenant.close_expired();

        let own = hash(&event.thread.key);
        let parent = hash(&event.thread.parent);
        let key = match &event.case_id {
            // `case:<id>`, whether or not the thread already is that case.
            Some(id) => case_id_key(id),
            // From the event and the tenant's earlier events alone, not from the thread the
            // engine gave the event at its arrival: that may carry the case id of a younger
            // event that arrived first, so it depends on arrival order. The case of the
            // conversation it continues (its own key's, else its parent's), else a thread of its
            // own key (a reply whose message is not known: its parent's), as the engine threads
            // a conversation it meets first; an event without keys is threaded by the engine
            // on itself alone.
            None => {
                [own, parent].into_iter().flatten().find_map(|h| tenant.conversations.get(&h).copied()).unwrap_or_else(
                    || match event.thread.key.as_deref().or(event.thread.parent.as_deref()) {
                        Some(k) => case_key(k),
                        None => case_key(thread_id),
                    },
                )
            }
        };
        if is_case_id(key) {
            // The conversation was threaded on its own until the case id showed up: its earlier
            // events (the first contact, often) belong to this case.
            for h in [own, parent].into_iter().flatten() {
                let absorbed = tenant.conversations.get(&h).copied().filter(|k| *k != key && !is_case_id(*k));
                if let Some(absorbed) = absorbed {
                    tenant.absorb(key, absorbed, &limits);
                }
            }
        }

        let case = tenant.cases.entry(key).or_insert_with(|| Case::new(event));
        let forgotten = case.apply(event, own, parent);
        let held = [own, parent].map(|h| h.filter(|&h| case.holds(h)));
        TenantState::refresh(&mut tenant.deadlines, key, case, &limits);
        tenant.unregister(key, forgotten);
        for h in held.into_iter().flatten() {
            if tenant.conversations.get(&h) != Some(&key) {
                tenant.conversations.insert(h, key);
            }
        }
        // Expired cases were closed before the event was placed: only the cap is left to keep.
        tenant.close_over_cap(&limits);
    }

    /// `tenant`'s input is quiet: its clock moves on to `time` (never back), closing the cases
    /// whose deadline passes, as the tenant's next event at that time would.
    pub fn advance_clock(&mut self, tenant: &Tenant, time: EventTime) {
        if let Some(state) = self.tenants.get_mut(tenant) {
            state.watermark = Some(state.watermark.map_or(time, |w| w.max(time)));
            // No case is added: the cap holds already.
            state.close_expired();
        }
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

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use omnistitch_model::{Direction, EventKind};

    const DAY: i64 = 86_400_000;

    fn event(id: &str, t: i64, case: &str, direction: Direction) -> Event {
        let mut e = Event::new(Tenant::new("acme"), id, EventTime(t), Channel::Email, direction, EventKind::Message);
        e.case_id = Some(case.into());
        e.agent_id = (direction == Direction::Outbound).then(|| "agent-7".into());
        e
    }

    /// The deadline index is rebuilt on read-back: one that lost its entries (a damaged
    /// snapshot) would keep its cases open for ever.
    #[test]
    fn the_deadline_index_is_rebuilt_from_the_cases_read_back() {
        let mut metrics = CxMetrics::new(CxConfig::default()).unwrap();
        for (i, case) in ["c1", "c2", "c3"].into_iter().enumerate() {
            let t = i as i64 * DAY;
            metrics.observe(&event(&format!("{case}-in"), t, case, Direction::Inbound), &format!("case:{case}"));
            metrics
                .observe(&event(&format!("{case}-out"), t + 1_000, case, Direction::Outbound), &format!("case:{case}"));
        }
        let bytes = postcard::to_stdvec(&metrics).unwrap();
        let mut state: CxState = postcard::from_bytes(&bytes).unwrap();
        for tenant in state.0.values_mut() {
            tenant.deadlines.clear();
        }
        let mut back = CxMetrics::with_state(CxConfig::default(), state).unwrap();
        let tenant = back.tenants.values().next().unwrap();
        assert_eq!(tenant.deadlines.len(), 3);
        assert!(tenant
            .cases
            .iter()
            .all(|(key, c)| c.indexed == Some(c.deadline) && tenant.deadlines.contains(&(c.deadline, *key))));
        let acme = Tenant::new("acme");
        for m in [&mut metrics, &mut back] {
            m.advance_clock(&acme, EventTime(400 * DAY));
        }
        assert_eq!((back.held_cases(), metrics.held_cases()), (0, 0), "every case closes");
        assert_eq!(back.report(), metrics.report());
    }
}
