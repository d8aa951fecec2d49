//! What the detector remembers per profile: conversations, cases, recent marks and timers.
//!
//! A conversation is a chat session, a call, or an email or social reply chain: an event joins
//! the conversation of its own key (session, call, message, post) or of the key it replies to,
//! or, without either key, that of its thread. It starts at its first inbound contact.
//! A case is keyed `case:<id>`, or by the thread of an event without a case id; a thread whose
//! conversation later shows up with a case id is absorbed into that case (as the engine
//! re-threads it), so a chat answered with a case id is one case, not two.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use omnistitch_model::{Channel, Event, EventTime, ProfileId};
use xxhash_rust::const_xxh3::xxh3_64 as const_xxh3_64;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::effort::EffortInputs;
use crate::intervention::{MomentType, Priority};
use crate::repeat::RepeatHistory;
use crate::vecmap::{VecMap, VecSet};

/// Prefix of case keys that name a case id (the rest are threads).
pub(crate) const CASE_PREFIX: &str = "case:";
/// Most conversations, cases and conversation keys kept per profile; past it the least recently
/// seen go first (a long-lived bot or shared line must not grow without bound).
const MAX_CONVERSATIONS: usize = 512;
const MAX_CASES: usize = 512;
const MAX_KEYS: usize = 2_048;

/// What a profile past one of those limits keeps of it: an eighth less, so that the full
/// pruning pass a broken limit forces runs once per eighth of it new, not on every event of a
/// profile at its limit (a shared mailbox).
const fn trimmed(max: usize) -> usize {
    max - max / 8
}

/// A namespace of digests: the seed its digests are taken with (the digest of its tag).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Namespace(u64);

impl Namespace {
    const fn of(tag: &[u8]) -> Self {
        Namespace(const_xxh3_64(tag))
    }
}

/// Case keys.
pub(crate) const CASES: Namespace = Namespace::of(b"case");
/// Conversation keys (message, post, session, call) and the keys they reply to.
pub(crate) const KEYS: Namespace = Namespace::of(b"key");
/// Thread ids.
pub(crate) const THREADS: Namespace = Namespace::of(b"thread");
/// Phone numbers (their last ten digits).
pub(crate) const PHONES: Namespace = Namespace::of(b"phone");

/// A 64-bit digest of `text` in namespace `ns` (a collision only joins two conversations).
pub(crate) fn digest(ns: Namespace, text: &str) -> u64 {
    xxh3_64_with_seed(text.as_bytes(), ns.0)
}

/// A case key (`case:<id>`, or a thread without a case id) with its digest: maps and
/// comparisons use the digest (a collision only joins two cases), output the text.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct CaseKey {
    /// `digest(CASES, name)`: also the case part of cool-down keys.
    pub(crate) digest: u64,
    /// Inline when short, as event ids: copying a key touches no shared count.
    pub(crate) name: EventRef,
}

impl CaseKey {
    pub(crate) fn new(name: &str) -> Self {
        CaseKey { digest: digest(CASES, name), name: EventRef::new(name) }
    }

    /// Whether it names a case id (not a thread).
    pub(crate) fn is_case_id(&self) -> bool {
        self.name.starts_with(CASE_PREFIX)
    }
}

impl PartialEq for CaseKey {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for CaseKey {}

impl std::fmt::Debug for CaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.name, f)
    }
}

/// An event id (or another short key): inline up to 22 bytes, a UUID in 16, so that
/// remembering an event mostly allocates nothing; shared otherwise.
pub(crate) type EventRef = crate::keytext::KeyText;

/// An event remembered as evidence: ordered by (time, event id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct Mark {
    pub(crate) time: EventTime,
    pub(crate) event_id: EventRef,
    pub(crate) channel: Channel,
}

impl Mark {
    pub(crate) fn of(event: &Event) -> Self {
        Mark { time: event.time, event_id: EventRef::new(&event.event_id), channel: event.channel }
    }
}

/// A pending timer's place in the tenant's timer queue: due time first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct TimerKey {
    pub(crate) due: EventTime,
    pub(crate) moment: MomentType,
    pub(crate) event_id: EventRef,
}

/// An absence moment waiting for its due time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Timer {
    pub(crate) profile: ProfileId,
    pub(crate) case: CaseKey,
    pub(crate) key: Mark,
    pub(crate) priority: Priority,
    pub(crate) channel: Channel,
    pub(crate) reason: TimerReason,
    /// Armed by an event that arrived behind the watermark: its breach may be stale.
    pub(crate) late: bool,
}

/// Why a timer would fire, written out only if it does; or, for the last two, word of what
/// became of a first-response wait that is gone (filed at [`forward_key`], never fired).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum TimerReason {
    /// An inbound event waits for a first response.
    Unanswered { channel: Channel, kind: omnistitch_model::EventKind, sla_ms: i64 },
    /// An abandoned call (or chat) waits for a successful contact.
    Abandoned { call: bool, window_ms: i64 },
    /// The wait breached and its case still waits: a response from another profile naming it
    /// ends the wait (its profile then starts new ones again).
    Breached,
    /// The wait joined wait `by` (two waits of one case made one): what names it settles `by`.
    Superseded { by: TimerKey },
}

impl TimerReason {
    /// Whether it stands for a timer that fires (not word of a wait gone).
    pub(crate) fn fires(&self) -> bool {
        matches!(self, TimerReason::Unanswered { .. } | TimerReason::Abandoned { .. })
    }
}

/// How long after its due time word of a first-response wait gone is kept: the longest SLA, so
/// that word of a wait dropped for another outlives the other's wait. A constant, not
/// configured: word is found by the key it is filed at, which a changed configuration must
/// not move. (A case is forgotten at the retention all the same, its word then a no-op.)
pub(crate) const WORD_KEPT_MS: i64 = 30 * 24 * 60 * 60 * 1_000;

/// Where first-response wait `key`, once gone (breached, or joined to another), leaves word of
/// it: [`WORD_KEPT_MS`] after its due time.
pub(crate) fn forward_key(key: &TimerKey) -> TimerKey {
    TimerKey { due: key.due.plus_millis(WORD_KEPT_MS), moment: key.moment, event_id: key.event_id.clone() }
}

/// The live timer (or word of a breached wait) that `key` now stands for, following word of
/// waits gone: `None` when it ended.
pub(crate) fn live_timer(timers: &Timers, key: &TimerKey) -> Option<TimerKey> {
    let mut key = key.clone();
    // Sixteen waits joined one into the next at most (a step to word, then one to the wait it
    // joined, for each); a longer chain is not followed.
    for _ in 0..33 {
        match timers.get(&key).map(|t| &t.reason) {
            Some(TimerReason::Superseded { by }) => key = by.clone(),
            Some(_) => return Some(key),
            None if key.moment == MomentType::FirstResponseSlaBreach => {
                let forward = forward_key(&key);
                if !timers.contains_key(&forward) {
                    return None;
                }
                key = forward;
            }
            None => return None,
        }
    }
    None
}

/// The tenant's pending timers, by due time.
pub(crate) type Timers = BTreeMap<TimerKey, Timer>;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Conversation {
    pub(crate) case: CaseKey,
    /// Its first inbound contact.
    pub(crate) start: Option<Mark>,
    /// Longest queue wait reported by its events (one call, one wait), ms.
    pub(crate) queue_wait_ms: i64,
    /// Most transfers reported by its events.
    pub(crate) transfers: i64,
    pub(crate) last_seen: EventTime,
}

/// The earlier of two optional values (`None` only when both are).
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Conversation {
    fn merge(&mut self, other: Conversation) {
        self.start = earliest(self.start.take(), other.start);
        self.queue_wait_ms = self.queue_wait_ms.max(other.queue_wait_ms);
        self.transfers = self.transfers.max(other.transfers);
        self.last_seen = self.last_seen.max(other.last_seen);
        if !self.case.is_case_id() && other.case.is_case_id() {
            self.case = other.case;
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Case {
    /// Its key.
    pub(crate) key: CaseKey,
    /// Seen with an inbound contact.
    pub(crate) contacted: bool,
    /// Seen with CASE_RESOLVED.
    pub(crate) resolved: bool,
    /// Its latest inbound contact.
    pub(crate) last_contact: Option<Mark>,
    /// Seen with a survey answer: no more effort moments.
    pub(crate) surveyed: bool,
    /// Its effort already reached the threshold.
    pub(crate) effort_fired: bool,
    pub(crate) abandons: u32,
    /// The pending first-response timer of its first unanswered inbound event.
    pub(crate) sla: Option<TimerKey>,
    /// An inbound event waits for a response (its timer may have fired already): later inbound
    /// events do not start another wait.
    pub(crate) awaiting: bool,
    /// Its effort inputs changed since the effort was last compared with the threshold.
    pub(crate) effort_stale: bool,
    pub(crate) last_seen: EventTime,
}

impl Case {
    pub(crate) fn new(key: CaseKey, t: EventTime) -> Self {
        Case {
            key,
            contacted: false,
            resolved: false,
            last_contact: None,
            surveyed: false,
            effort_fired: false,
            abandons: 0,
            sla: None,
            awaiting: false,
            effort_stale: true,
            last_seen: t,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.contacted && !self.resolved
    }

    /// Takes in `other`; their first-response timers must have been settled by the caller.
    fn merge(&mut self, other: Case) {
        self.contacted |= other.contacted;
        self.resolved |= other.resolved;
        self.last_contact = self.last_contact.take().max(other.last_contact);
        self.surveyed |= other.surveyed;
        self.effort_fired |= other.effort_fired;
        self.awaiting |= other.awaiting;
        self.effort_stale = true;
        self.abandons = self.abandons.saturating_add(other.abandons);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// Keeps the earlier-keyed of two first-response timers of one case, drops the other,
/// leaving word that it joined the one kept (a reply naming its message answers the case):
/// at its forward key, or in its place when it is word already (of a breached wait, found
/// from the wait's own key through its place).
fn settle_sla(
    a: Option<TimerKey>,
    b: Option<TimerKey>,
    timers: &mut Timers,
    owned: &mut VecSet<TimerKey>,
) -> Option<TimerKey> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let mark = |k: &TimerKey| timers.get(k).map(|t| t.key.clone());
            let (keep, drop) = if mark(&a) <= mark(&b) { (a, b) } else { (b, a) };
            if let Some(mut gone) = timers.remove(&drop) {
                let at = if gone.reason.fires() { forward_key(&drop) } else { drop.clone() };
                gone.reason = TimerReason::Superseded { by: keep.clone() };
                timers.insert(at, gone);
            }
            owned.remove(&drop);
            Some(keep)
        }
        (a, b) => a.or(b),
    }
}

/// One profile's state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Profile {
    /// Conversation key digest -> (conversation, last used).
    pub(crate) keys: HashMap<u64, (u32, EventTime)>,
    pub(crate) conversations: VecMap<u32, Conversation>,
    next_conversation: u32,
    pub(crate) cases: VecMap<u64, Case>,
    /// Recent conversation starts and case resolutions, for repeat contacts.
    pub(crate) repeat: RepeatHistory,
    /// The latest support contact.
    pub(crate) support: Option<Mark>,
    /// (moment, case key digest) -> latest detection.
    pub(crate) cooldowns: VecMap<(MomentType, u64), EventTime>,
    /// Its pending timers.
    pub(crate) timers: VecSet<TimerKey>,
    pub(crate) last_seen: EventTime,
    /// The latest successful contact (a response, an answered call, a completed chat): an
    /// abandon before it was followed by one.
    pub(crate) settled_at: Option<EventTime>,
    pruned_at: Option<EventTime>,
    /// No conversation, conversation key or case was last seen before this (a lower bound,
    /// lowered by every event): while the retention cutoff is not past it, pruning has none of
    /// them to forget and does not walk them.
    kept_since: Option<EventTime>,
}

impl Profile {
    /// An event at `t` is applied: what it adds is last seen at `t` or later.
    pub(crate) fn note_time(&mut self, t: EventTime) {
        self.kept_since = earliest(self.kept_since, Some(t));
    }

    /// A new conversation in `case`; returns its id.
    pub(crate) fn open_conversation(&mut self, case: CaseKey, t: EventTime) -> u32 {
        let id = self.next_conversation;
        self.next_conversation = self.next_conversation.wrapping_add(1);
        self.conversations
            .push_last(id, Conversation { case, start: None, queue_wait_ms: 0, transfers: 0, last_seen: t });
        id
    }

    /// The shared key of case `key` when the profile has it, else a new one.
    pub(crate) fn case_key(&self, key: &str) -> CaseKey {
        let d = digest(CASES, key);
        self.cases.get(&d).map_or_else(|| CaseKey { digest: d, name: EventRef::new(key) }, |c| c.key.clone())
    }

    /// The case `key`, created if new.
    pub(crate) fn case_mut(&mut self, key: &CaseKey, t: EventTime) -> &mut Case {
        let case = self.cases.get_or_insert_with(&key.digest, || (key.digest, Case::new(key.clone(), t)));
        case.last_seen = case.last_seen.max(t);
        case
    }

    /// What the effort of case `key` is made of.
    pub(crate) fn effort_inputs(&self, key: &CaseKey) -> EffortInputs {
        // Starts of a few conversations stay on the stack; more go to the heap.
        const FEW: usize = 16;
        let mut few: [Option<&Mark>; FEW] = [None; FEW];
        let mut many: Vec<Option<&Mark>> = Vec::new();
        let mut n = 0usize;
        let mut inputs = EffortInputs::default();
        for c in self.conversations.values().filter(|c| c.case == *key) {
            if let Some(start) = &c.start {
                if n < FEW {
                    few[n] = Some(start);
                } else {
                    if many.is_empty() {
                        many.extend_from_slice(&few);
                    }
                    many.push(Some(start));
                }
                n += 1;
            }
            inputs.queue_wait_ms = inputs.queue_wait_ms.saturating_add(c.queue_wait_ms);
            inputs.transfers = inputs.transfers.saturating_add(c.transfers);
        }
        let starts = if n <= FEW { &mut few[..n] } else { &mut many[..] };
        starts.sort_unstable();
        inputs.conversations = u32::try_from(starts.len()).unwrap_or(u32::MAX);
        inputs.channel_switches =
            u32::try_from(starts.windows(2).filter(|w| w[0].map(|m| m.channel) != w[1].map(|m| m.channel)).count())
                .unwrap_or(u32::MAX);
        inputs.abandons = self.cases.get(&key.digest).map_or(0, |c| c.abandons);
        inputs
    }

    /// Moves thread case `from` into case `into`: its conversations, state, timers, cool-downs.
    pub(crate) fn absorb_case(&mut self, from: &CaseKey, into: &CaseKey, timers: &mut Timers) {
        if from == into {
            return;
        }
        for c in self.conversations.values_mut().filter(|c| c.case == *from) {
            c.case = into.clone();
        }
        if let Some(mut old) = self.cases.remove(&from.digest) {
            let t = old.last_seen;
            self.settle_wait_into(old.sla.take(), into, t, timers);
            self.case_mut(into, t).merge(old);
        }
        for k in &self.timers {
            if let Some(timer) = timers.get_mut(k) {
                if timer.case == *from {
                    timer.case = into.clone();
                }
            }
        }
        let (from_digest, into_digest) = (from.digest, into.digest);
        let moved: Vec<(MomentType, EventTime)> =
            self.cooldowns.iter().filter(|((_, d), _)| *d == from_digest).map(|((m, _), t)| (*m, *t)).collect();
        for (m, t) in moved {
            self.cooldowns.remove(&(m, from_digest));
            let slot = self.cooldowns.get_or_insert_with(&(m, into_digest), || ((m, into_digest), t));
            *slot = (*slot).max(t);
        }
    }

    /// Moves case `from`'s wait, if it waits, into case `into` (its ticket was merged there:
    /// its conversations moved), the earlier of the two waits kept; returns the wait moved.
    pub(crate) fn move_wait(
        &mut self,
        from: &CaseKey,
        into: &CaseKey,
        t: EventTime,
        timers: &mut Timers,
    ) -> Option<TimerKey> {
        let sla = match self.cases.get_mut(&from.digest) {
            Some(c) if c.awaiting => {
                c.awaiting = false;
                c.sla.take()
            }
            _ => return None,
        };
        let sla = self.settle_wait_into(sla, into, t, timers);
        if let Some(timer) = sla.as_ref().and_then(|k| timers.get_mut(k)) {
            timer.case = into.clone();
        }
        self.case_mut(into, t).awaiting = true;
        sla
    }

    /// Makes `sla` (a wait moving in) and case `into`'s own wait one: the earlier is kept, as
    /// `into`'s, the other dropped; returns the one kept.
    fn settle_wait_into(
        &mut self,
        sla: Option<TimerKey>,
        into: &CaseKey,
        t: EventTime,
        timers: &mut Timers,
    ) -> Option<TimerKey> {
        let target_sla = self.case_mut(into, t).sla.take();
        let sla = settle_sla(sla, target_sla, timers, &mut self.timers);
        self.case_mut(into, t).sla = sla.clone();
        sla
    }

    /// Takes in `other` (a profile merged into this one); timers must already name this profile.
    /// Returns the cases that took in a conversation's own thread (their waits are theirs now).
    pub(crate) fn absorb(&mut self, mut other: Profile, timers: &mut Timers) -> Vec<CaseKey> {
        // Conversations that share a key are one conversation seen from both sides.
        let mut other_keys: Vec<(u64, (u32, EventTime))> = other.keys.drain().collect();
        other_keys.sort_unstable();
        let mut mapped: BTreeMap<u32, u32> = BTreeMap::new();
        for (k, (oc, _)) in &other_keys {
            if let Some((sc, _)) = self.keys.get(k) {
                mapped.entry(*oc).or_insert(*sc);
            }
        }
        // A conversation one side threaded on its own and the other under a case id: its own
        // thread's case joins the case below, as when one profile sees the case id arrive.
        let mut joined: Vec<(CaseKey, CaseKey)> = Vec::new();
        // Starts of a conversation seen from both sides: the later is no conversation of its own.
        let mut second_starts: Vec<Mark> = Vec::new();
        for (oc, conversation) in std::mem::take(&mut other.conversations) {
            match mapped.get(&oc).and_then(|sc| self.conversations.get_mut(sc)) {
                Some(mine) => {
                    let (before, theirs) = (mine.case.clone(), conversation.case.clone());
                    let starts = [mine.start.clone(), conversation.start.clone()];
                    mine.merge(conversation);
                    second_starts.extend(starts.into_iter().flatten().filter(|s| mine.start.as_ref() != Some(s)));
                    for old in [before, theirs] {
                        if old != mine.case && !old.is_case_id() {
                            joined.push((old, mine.case.clone()));
                        }
                    }
                }
                None => {
                    let id = self.next_conversation;
                    self.next_conversation = self.next_conversation.wrapping_add(1);
                    self.conversations.push_last(id, conversation);
                    mapped.insert(oc, id);
                }
            }
        }
        for (k, (oc, t)) in other_keys {
            if let Some(&sc) = mapped.get(&oc) {
                let slot = self.keys.entry(k).or_insert((sc, t));
                slot.1 = slot.1.max(t);
            }
        }
        self.timers.append(&mut other.timers);
        for (key, mut case) in std::mem::take(&mut other.cases) {
            match self.cases.get_mut(&key) {
                Some(mine) => {
                    let sla = settle_sla(mine.sla.take(), case.sla.take(), timers, &mut self.timers);
                    mine.merge(case);
                    mine.sla = sla;
                }
                None => {
                    self.cases.insert(key, case);
                }
            }
        }
        self.support = self.support.take().max(other.support);
        for (k, t) in other.cooldowns {
            let slot = self.cooldowns.get_or_insert_with(&k, || (k, t));
            *slot = (*slot).max(t);
        }
        // Once both sides' cases, timers and cool-downs are here.
        for (from, into) in &joined {
            self.absorb_case(from, into, timers);
        }
        self.repeat.absorb(std::mem::take(&mut other.repeat));
        for start in &second_starts {
            self.repeat.remove_start(start);
        }
        self.kept_since = earliest(self.kept_since, other.kept_since);
        // Conversations seen from both sides merged: any case's effort may have changed.
        for case in self.cases.values_mut() {
            case.effort_stale = true;
        }
        self.last_seen = self.last_seen.max(other.last_seen);
        self.settled_at = self.settled_at.max(other.settled_at);
        joined.into_iter().map(|(_, into)| into).collect()
    }

    /// Forgets what no window can use any more at `now`; runs at most once per `every_ms` of
    /// event time unless a size limit is broken. Returns word of breached waits whose cases it
    /// forgot, for the caller to take out of `timers`.
    pub(crate) fn prune(&mut self, now: EventTime, limits: &PruneLimits, timers: &Timers) -> Vec<TimerKey> {
        let over =
            self.conversations.len() > MAX_CONVERSATIONS || self.cases.len() > MAX_CASES || self.keys.len() > MAX_KEYS;
        if !over && self.pruned_at.is_some_and(|p| now.0.saturating_sub(p.0) < limits.every_ms) {
            return Vec::new();
        }
        self.pruned_at = Some(now);
        let cutoff = EventTime(now.0.saturating_sub(limits.retention_ms));
        let mut orphaned = Vec::new();
        if over || self.kept_since.is_some_and(|k| k < cutoff) {
            self.forget_before(cutoff, timers);
            orphaned = self.orphaned_words(timers);
        }
        // A late detection is still emitted up to its time to live behind the clock, and it is
        // held back by one within the cool-down of it: kept that long.
        let kept = limits.cooldown_ms.saturating_add(limits.ttl_ms);
        self.cooldowns.retain(|_, t| now.0.saturating_sub(t.0) < kept);
        // Two windows: a merge can reveal a window that closed a while ago.
        self.repeat.prune(now.0.saturating_sub(limits.repeat_window_ms.saturating_mul(2)));
        // A late event is still detected on up to its time to live behind the clock.
        let support_kept = limits.sentiment_window_ms.saturating_add(limits.ttl_ms);
        if self.support.as_ref().is_some_and(|m| m.time.0 < now.0.saturating_sub(support_kept)) {
            self.support = None;
        }
        orphaned
    }

    /// Word of breached waits (in `timers`) whose case no longer names it: taken out of the
    /// profile's timers and returned.
    fn orphaned_words(&mut self, timers: &Timers) -> Vec<TimerKey> {
        let cases = &self.cases;
        let orphaned: Vec<TimerKey> = self
            .timers
            .iter()
            .filter(|k| {
                timers.get(*k).is_some_and(|t| {
                    matches!(t.reason, TimerReason::Breached)
                        && cases.get(&t.case.digest).is_none_or(|c| c.sla.as_ref() != Some(*k))
                })
            })
            .cloned()
            .collect();
        for k in &orphaned {
            self.timers.remove(k);
        }
        orphaned
    }

    /// Forgets conversations, keys and cases last seen before `cutoff` (cases with a pending
    /// first-response timer in `timers` stay), then the least recently seen past the size limits.
    fn forget_before(&mut self, cutoff: EventTime, timers: &Timers) {
        self.conversations.retain(|_, c| c.last_seen >= cutoff);
        if self.conversations.len() > MAX_CONVERSATIONS {
            keep_newest(&mut self.conversations, trimmed(MAX_CONVERSATIONS), |c| (c.last_seen, None));
        }
        let conversations = &self.conversations;
        self.keys.retain(|_, (c, t)| *t >= cutoff && conversations.contains_key(c));
        if self.keys.len() > MAX_KEYS {
            let mut times: Vec<EventTime> = self.keys.values().map(|(_, t)| *t).collect();
            times.sort_unstable();
            let floor = times[times.len() - trimmed(MAX_KEYS)];
            self.keys.retain(|_, (_, t)| *t >= floor);
        }
        // A case whose wait is pending stays; one holding word of a breached wait does not.
        let pending = |k: &TimerKey| timers.get(k).is_some_and(|t| t.reason.fires());
        self.cases.retain(|_, c| c.last_seen >= cutoff || c.sla.as_ref().is_some_and(pending));
        if self.cases.len() > MAX_CASES {
            keep_newest(&mut self.cases, trimmed(MAX_CASES), |c| (c.last_seen, Some(c.key.name.clone())));
        }
        let conversations = self.conversations.values().map(|c| c.last_seen);
        let keys = self.keys.values().map(|(_, t)| *t);
        self.kept_since = conversations.chain(keys).chain(self.cases.values().map(|c| c.last_seen)).min();
    }
}

/// Keeps the `max` entries of `map` with the latest `seen` (ties: the largest name, else key).
fn keep_newest<K: Ord + Clone, V>(
    map: &mut VecMap<K, V>,
    max: usize,
    seen: impl Fn(&V) -> (EventTime, Option<EventRef>),
) {
    if map.len() <= max {
        return;
    }
    let mut by_age: Vec<((EventTime, Option<EventRef>), K)> = map.iter().map(|(k, v)| (seen(v), k.clone())).collect();
    by_age.sort();
    let excess = map.len() - max;
    for (_, k) in by_age.into_iter().take(excess) {
        map.remove(&k);
    }
}

/// How long each part of a profile's state is useful, ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PruneLimits {
    pub(crate) retention_ms: i64,
    pub(crate) cooldown_ms: i64,
    /// Interventions' time to live: how far behind the clock a late one is still emitted.
    pub(crate) ttl_ms: i64,
    pub(crate) repeat_window_ms: i64,
    pub(crate) sentiment_window_ms: i64,
    pub(crate) every_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60 * 1_000;

    fn limits() -> PruneLimits {
        PruneLimits {
            retention_ms: 14 * DAY,
            cooldown_ms: DAY,
            ttl_ms: DAY,
            repeat_window_ms: 7 * DAY,
            sentiment_window_ms: 2 * DAY,
            every_ms: DAY,
        }
    }

    /// A conversation with one key, as an event at `day` leaves it.
    fn converse(p: &mut Profile, key: &str, day: i64) -> u32 {
        let t = EventTime(day * DAY);
        p.prune(t, &limits(), &Timers::new());
        p.note_time(t);
        let case = CaseKey::new(&format!("thread:{key}"));
        let c = p.open_conversation(case.clone(), t);
        p.keys.insert(digest(KEYS, key), (c, t));
        p.case_mut(&case, t);
        c
    }

    #[test]
    fn pruning_forgets_what_the_retention_passed_and_keeps_the_rest() {
        let mut p = Profile::default();
        let old = converse(&mut p, "a", 0);
        let new = converse(&mut p, "b", 10);
        assert_eq!(p.kept_since, Some(EventTime(0)));
        // Day 13: nothing is older than the retention yet.
        p.prune(EventTime(13 * DAY), &limits(), &Timers::new());
        assert_eq!((p.conversations.len(), p.keys.len(), p.cases.len()), (2, 2, 2));
        // Day 15: the day-0 conversation, its key and its case go; the lower bound follows.
        p.prune(EventTime(15 * DAY), &limits(), &Timers::new());
        assert!(!p.conversations.contains_key(&old) && p.conversations.contains_key(&new));
        assert_eq!((p.keys.len(), p.cases.len()), (1, 1));
        assert_eq!(p.kept_since, Some(EventTime(10 * DAY)));
    }

    #[test]
    fn an_older_event_lowers_the_bound_so_its_state_is_still_forgotten() {
        let mut p = Profile::default();
        converse(&mut p, "b", 10);
        p.prune(EventTime(20 * DAY), &limits(), &Timers::new());
        // A late event from day 5 (the profile is pruned, the bound is day 10).
        let late = converse(&mut p, "a", 5);
        assert_eq!(p.kept_since, Some(EventTime(5 * DAY)));
        p.prune(EventTime(22 * DAY), &limits(), &Timers::new());
        assert!(!p.conversations.contains_key(&late));
        assert_eq!(p.kept_since, Some(EventTime(10 * DAY)));
    }

    /// A profile at its limits (a shared mailbox: a new conversation every few minutes) keeps
    /// within them, and the full pass a broken limit forces runs once per eighth of a limit,
    /// not on every event; the newest conversations are the ones kept.
    #[test]
    fn a_profile_at_its_limits_is_trimmed_by_an_eighth_at_a_time() {
        let mut p = Profile::default();
        let mut trims = 0;
        for n in 0..2_000i64 {
            // All within one day: the retention forgets none of them.
            let t = EventTime(n * 40_000);
            let before = p.conversations.len();
            p.prune(t, &limits(), &Timers::new());
            trims += usize::from(p.conversations.len() < before);
            p.note_time(t);
            let case = CaseKey::new(&format!("thread:{n}"));
            let c = p.open_conversation(case.clone(), t);
            p.keys.insert(digest(KEYS, &n.to_string()), (c, t));
            p.case_mut(&case, t);
            assert!(
                p.conversations.len() <= MAX_CONVERSATIONS + 1
                    && p.cases.len() <= MAX_CASES + 1
                    && p.keys.len() <= MAX_KEYS + 1
            );
        }
        assert!((1..=25).contains(&trims), "{trims} trims");
        // The newest kept: the last conversation opened is there, the first long gone.
        assert!(p.cases.contains_key(&CaseKey::new("thread:1999").digest));
        assert!(!p.cases.contains_key(&CaseKey::new("thread:0").digest));
    }
}
