//! One tenant's identity graph: which profile each identifier belongs to, and the rules applied
//! when an event's identifiers link profiles together.
//!
//! Identifiers are stored once, in `entries`; a hash table of entry indices finds them by value
//! and each profile lists its entries. A merge moves the smaller profile's entries into the
//! larger one, so every identifier moves O(log n) times at most.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};
use omnistitch_model::output::MatchOutcome;
use omnistitch_model::{EventTime, Identifier, IdentifierKind, ProfileId, ShortStr};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::rules::IdentityRules;

const KINDS: usize = IdentifierKind::ALL.len();

/// Most ids a profile lists as merged into it (the latest in merge order).
pub const MAX_MERGED_FROM: usize = 1_000;

/// Profile slot of an identifier known only as shared, never attached to a profile.
const NO_PROFILE: u32 = u32::MAX;

/// Identifier values up to this many bytes (most phones, handles, ids, many emails) are kept
/// in the entry itself: no allocation, and a lookup that hits follows no pointer.
const INLINE_VALUE: usize = 22;

/// An identifier known to the graph.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    value: ShortStr<INLINE_VALUE>,
    kind: IdentifierKind,
    /// Seen linking people who must stay apart: it no longer links anything.
    shared: bool,
    profile: u32,
    /// Latest event time that named it: conversation ids leave the graph with retention.
    seen: EventTime,
}

/// A profile's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Its id.
    pub id: ProfileId,
    entries: Vec<u32>,
    counts: [u32; KINDS],
    /// Profiles merged into this one, in merge order (at most [`MAX_MERGED_FROM`], the latest).
    pub merged_from: Vec<ProfileId>,
    /// Earliest event time.
    pub first_seen: EventTime,
    /// Time of the event that created it (of the survivor's, after merges): what a merge
    /// compares to choose the survivor. Unlike `first_seen`, no late event moves it, so the
    /// choice does not depend on whether a late event came before or after the merge.
    created: EventTime,
    /// Latest event time.
    pub last_seen: EventTime,
    /// Events resolved to it.
    pub event_count: u64,
}

/// Two profiles found to be one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The profile that remains.
    pub survivor: ProfileId,
    /// The profile merged away.
    pub absorbed: ProfileId,
    /// The event's identifier that was on the survivor's side.
    pub survivor_identifier: Identifier,
    /// The event's identifier that was on the absorbed side.
    pub absorbed_identifier: Identifier,
}

/// Which rule refused a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum ConflictRule {
    /// The profile would hold more identifiers of `kind` than allowed.
    Limit {
        /// The kind whose limit would be exceeded.
        kind: IdentifierKind,
    },
    /// A weak identifier (a landline, a shared browser) would join two people's identifiers.
    WeakBridge,
}

/// A link refused by the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The identifier that would have linked.
    pub identifier: Identifier,
    /// The rule that refused it.
    pub rule: ConflictRule,
    /// The profile the identifier already belonged to, if any.
    pub other_profile: Option<ProfileId>,
}

/// The outcome of applying one event's identifiers to the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    /// The profile the event belongs to.
    pub profile: ProfileId,
    /// Whether that profile was created by this event.
    pub created: bool,
    /// Each identifier (in the order given) and what happened to it.
    pub outcomes: SmallVec<[MatchOutcome; 4]>,
    /// Merges this event caused, in order.
    pub merges: Vec<Merge>,
    /// Links refused.
    pub conflicts: Vec<Conflict>,
}

/// Where the event is going while its identifiers are applied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    None,
    New,
    Existing(u32),
}

/// The identity graph of one tenant.
#[derive(Debug, Default)]
pub struct TenantGraph {
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    profiles: Vec<Option<Profile>>,
    free: Vec<u32>,
    by_id: HashMap<ProfileId, u32>,
    /// Profiles merged away, pointing at the profile that absorbed them, with the merge's event
    /// time (they leave with retention).
    redirects: HashMap<ProfileId, (ProfileId, EventTime)>,
    /// Entry slots of forgotten identifiers, reused first.
    free_entries: Vec<u32>,
    /// Identifiers forgotten so far: past a kind's `keep_newest`, or with their profile.
    forgotten: u64,
    /// Heap bytes of the identifier values, kept as they come and go (summing them walked
    /// every identifier: the service reads the figure every few seconds, between records).
    string_bytes: usize,
    /// Heap bytes of the live profiles' lists ([`profile_heap`]), kept the same way.
    profile_bytes: usize,
}

/// Heap bytes of a profile's lists, from their capacities.
fn profile_heap(p: &Profile) -> usize {
    p.entries.capacity() * 4 + p.merged_from.capacity() * std::mem::size_of::<ProfileId>()
}

/// Heap bytes of a hashbrown table reporting `capacity`, with `slot`-byte slots: its buckets
/// (a power of two; from 8 on, 8/7 of the capacity), each a slot and a control byte, and the
/// trailing group of 16 control bytes.
fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets =
        if capacity < 8 { (capacity + 1).next_power_of_two() } else { (capacity * 8 / 7).next_power_of_two() };
    buckets * (slot + 1) + 16
}

fn add(a: &[u32; KINDS], b: &[u32; KINDS]) -> [u32; KINDS] {
    std::array::from_fn(|k| a[k] + b[k])
}

fn hash_of(hasher: &DefaultHashBuilder, kind: IdentifierKind, value: &[u8]) -> u64 {
    hasher.hash_one((kind as u8, value))
}

impl TenantGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Identifiers known.
    pub fn identifier_count(&self) -> usize {
        self.entries.len() - self.free_entries.len()
    }

    /// Identifiers forgotten so far: the oldest of a profile's kind past its `keep_newest`, and
    /// the conversation ids of profiles forgotten once old (see
    /// [`TenantGraph::forget_anonymous_before`]). With [`TenantGraph::identifier_count`], every
    /// identifier a profile ever held.
    pub fn forgotten_count(&self) -> u64 {
        self.forgotten
    }

    /// Live profiles.
    pub fn profile_count(&self) -> usize {
        self.by_id.len()
    }

    /// Heap bytes held by the graph, from capacities (strings counted with 16 bytes of allocator
    /// overhead each): what "bytes per identifier" budgets are checked against. Constant time.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes_with(self.string_bytes, self.profile_bytes)
    }

    /// [`TenantGraph::memory_bytes`] counted afresh over every identifier and profile (what
    /// the kept counts are checked against).
    pub fn memory_bytes_walked(&self) -> usize {
        let strings: usize = self.entries.iter().map(|e| e.value.heap_bytes()).sum();
        let profiles: usize = self.profiles.iter().flatten().map(profile_heap).sum();
        self.memory_bytes_with(strings, profiles)
    }

    fn memory_bytes_with(&self, strings: usize, profiles: usize) -> usize {
        use std::mem::size_of;
        let map = table_bytes;
        self.entries.capacity() * size_of::<Entry>()
            + strings
            + map(self.index.capacity(), size_of::<u32>())
            + self.profiles.capacity() * size_of::<Option<Profile>>()
            + profiles
            + self.free.capacity() * 4
            + self.free_entries.capacity() * 4
            + map(self.by_id.capacity(), size_of::<(ProfileId, u32)>())
            + map(self.redirects.capacity(), size_of::<(ProfileId, (ProfileId, EventTime))>())
    }

    /// Identifiers marked shared.
    pub fn shared_count(&self) -> usize {
        self.entries.iter().filter(|e| e.shared).count()
    }

    fn find(&self, id: &Identifier) -> Option<u32> {
        self.find_hashed(hash_of(&self.hasher, id.kind, id.value.as_bytes()), id)
    }

    /// [`TenantGraph::find`] with the identifier's hash already computed.
    fn find_hashed(&self, h: u64, id: &Identifier) -> Option<u32> {
        self.index
            .find(h, |&i| {
                let e = &self.entries[i as usize];
                e.kind == id.kind && e.value.as_bytes() == id.value.as_bytes()
            })
            .copied()
    }

    /// Marks an identifier as used by several people: it stays on the profiles that hold it but
    /// links nothing from now on. Unknown identifiers are remembered without a profile, but
    /// emails (role mailboxes, shared by their value alone).
    pub fn mark_shared(&mut self, id: &Identifier) {
        let idx = match self.find(id) {
            Some(i) => i,
            // A role mailbox is shared by its value alone, which every event says again: kept
            // only where the graph holds it already (named before the rule was set), so that
            // ever new tagged or random role addresses do not grow the graph.
            None if id.kind == IdentifierKind::Email => return,
            None => self.insert_hashed(
                hash_of(&self.hasher, id.kind, id.value.as_bytes()),
                id,
                NO_PROFILE,
                EventTime(i64::MIN),
            ),
        };
        self.entries[idx as usize].shared = true;
    }

    /// Adds identifier `id` (of hash `h`) to profile slot `profile` (or to none), named at
    /// `seen`.
    fn insert_hashed(&mut self, h: u64, id: &Identifier, profile: u32, seen: EventTime) -> u32 {
        let entry = Entry { value: ShortStr::new(&id.value), kind: id.kind, shared: false, profile, seen };
        self.string_bytes += entry.value.heap_bytes();
        let idx = match self.free_entries.pop() {
            Some(free) => {
                self.entries[free as usize] = entry;
                free
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(h, idx, |&i| {
            let e = &entries[i as usize];
            hash_of(hasher, e.kind, e.value.as_bytes())
        });
        if profile != NO_PROFILE {
            let p = self.profiles[profile as usize].as_mut().expect("live profile");
            let before = profile_heap(p);
            p.entries.push(idx);
            p.counts[id.kind.index()] += 1;
            self.profile_bytes = self.profile_bytes + profile_heap(p) - before;
        }
        idx
    }

    fn profile(&self, slot: u32) -> &Profile {
        self.profiles[slot as usize].as_ref().expect("live profile")
    }

    fn profile_mut(&mut self, slot: u32) -> &mut Profile {
        self.profiles[slot as usize].as_mut().expect("live profile")
    }

    /// The live profile with this id, following merges.
    pub fn get(&self, id: ProfileId) -> Option<&Profile> {
        self.by_id.get(&self.current(id)).map(|&s| self.profile(s))
    }

    /// Where a profile id lives now: itself, or the survivor of the merges that absorbed it.
    pub fn current(&self, mut id: ProfileId) -> ProfileId {
        // Bounded: redirects form no loop unless an absorbed profile's id came back (its
        // creating event's id reused after the deduplication digests forgot it), and a loop
        // must not hang the thread.
        for _ in 0..=self.redirects.len() {
            match self.redirects.get(&id) {
                Some(&(next, _)) => id = next,
                None => break,
            }
        }
        id
    }

    /// The identifiers of a profile, sorted.
    pub fn identifiers(&self, profile: &Profile) -> Vec<Identifier> {
        self.identifier_refs(profile)
            .into_iter()
            .map(|(kind, value)| Identifier { kind, value: value.into() })
            .collect()
    }

    /// [`TenantGraph::identifiers`] borrowed, as (type, value): nothing is copied.
    pub fn identifier_refs(&self, profile: &Profile) -> Vec<(IdentifierKind, &str)> {
        let mut ids: Vec<(IdentifierKind, &str)> = profile
            .entries
            .iter()
            .map(|&i| {
                let e = &self.entries[i as usize];
                (e.kind, e.value.as_str())
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Forgets the profiles last seen before `cutoff` that hold no identifier (an event with no
    /// usable identifier makes one) or only conversation ids (the kinds `rules` keep the newest
    /// of: cases, chat sessions, calls; every call from a number marked shared makes one):
    /// nothing that names a customer can link to them again. Their conversation ids leave the
    /// graph, counted as forgotten (an event naming one later starts a new profile, as after
    /// `keep_newest`), and the ids they absorbed lead nowhere any more. Returns how many went.
    pub fn forget_anonymous_before(&mut self, cutoff: EventTime, rules: &IdentityRules) -> usize {
        let slots: Vec<u32> = (0..self.profiles.len() as u32)
            .filter(|&s| {
                self.profiles[s as usize].as_ref().is_some_and(|p| p.last_seen < cutoff && Self::is_anonymous(rules, p))
            })
            .collect();
        let mut absorbers = Vec::new();
        for &slot in &slots {
            let p = self.profiles[slot as usize].take().expect("live profile");
            self.profile_bytes -= profile_heap(&p);
            for &e in &p.entries {
                self.forget_entry(e);
            }
            self.by_id.remove(&p.id);
            self.free.push(slot);
            if !p.merged_from.is_empty() {
                absorbers.push(p);
            }
        }
        self.drop_redirects_to(&absorbers);
        slots.len()
    }

    /// Forgets what retention no longer needs of identified profiles: the conversation ids
    /// (the kinds `rules` keep the newest of: cases, chat sessions, calls) no event named since
    /// `cutoff`, which leave the graph as [`TenantGraph::forget_anonymous_before`]'s do (an
    /// event naming one later starts afresh), and the redirects of merges before `cutoff` (a
    /// merged-away id is looked up only for the outputs of the batch that merged it). Returns
    /// how many identifiers went.
    pub fn forget_conversations_before(&mut self, cutoff: EventTime, rules: &IdentityRules) -> usize {
        self.redirects.retain(|_, &mut (_, at)| at >= cutoff);
        let mut old = Vec::new();
        for p in self.profiles.iter_mut().flatten() {
            let entries = &self.entries;
            let expired = |e: &Entry| e.seen < cutoff && rules.kept(e.kind).is_some();
            let before = old.len();
            old.extend(p.entries.iter().copied().filter(|&e| expired(&entries[e as usize])));
            if old.len() > before {
                p.entries.retain(|&e| !expired(&entries[e as usize]));
                for &e in &old[before..] {
                    p.counts[entries[e as usize].kind.index()] -= 1;
                }
            }
        }
        for &e in &old {
            self.forget_entry(e);
        }
        old.len()
    }

    /// Whether `profile` holds nothing but conversation ids (or nothing at all).
    fn is_anonymous(rules: &IdentityRules, profile: &Profile) -> bool {
        IdentifierKind::ALL.into_iter().all(|k| profile.counts[k.index()] == 0 || rules.kept(k).is_some())
    }

    /// Drops the redirects that lead to one of `gone` (profiles just forgotten). Their merge
    /// lists name every id they absorbed unless one was cut at [`MAX_MERGED_FROM`]: then every
    /// redirect is followed.
    fn drop_redirects_to(&mut self, gone: &[Profile]) {
        if gone.is_empty() {
            return;
        }
        let ids: HashSet<ProfileId> = gone.iter().map(|p| p.id).collect();
        let listed = gone.iter().all(|p| p.merged_from.len() < MAX_MERGED_FROM);
        let candidates: Vec<ProfileId> = if listed {
            gone.iter().flat_map(|p| p.merged_from.iter().copied()).collect()
        } else {
            self.redirects.keys().copied().collect()
        };
        let doomed: Vec<ProfileId> = candidates.into_iter().filter(|&a| ids.contains(&self.current(a))).collect();
        for a in doomed {
            self.redirects.remove(&a);
        }
    }

    /// Every live profile, in no particular order.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.iter().flatten()
    }

    /// Whether `id` is known and marked shared (it links nothing).
    pub fn is_shared(&self, id: &Identifier) -> bool {
        self.find(id).is_some_and(|i| self.entries[i as usize].shared)
    }

    /// The profile an identifier belongs to, unless it is unknown or shared.
    pub fn profile_of(&self, id: &Identifier) -> Option<ProfileId> {
        let e = &self.entries[self.find(id)? as usize];
        (!e.shared).then(|| self.profile(e.profile).id)
    }

    fn new_profile(&mut self, id: ProfileId, time: EventTime) -> u32 {
        let p = Profile {
            id,
            entries: Vec::new(),
            counts: [0; KINDS],
            merged_from: Vec::new(),
            first_seen: time,
            created: time,
            last_seen: time,
            event_count: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.profiles[s as usize] = Some(p);
                s
            }
            None => {
                self.profiles.push(Some(p));
                (self.profiles.len() - 1) as u32
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    /// Whether `counts` include an identifier of a personal kind.
    fn holds_personal(rules: &IdentityRules, counts: &[u32; KINDS]) -> bool {
        IdentifierKind::ALL.into_iter().any(|k| rules.is_personal(k) && counts[k.index()] > 0)
    }

    /// The rule that forbids joining identifiers counted `a` and `b`, if any; `via_weak` when
    /// the join goes through a weak identifier (the one linking the other side, or the one
    /// that put the event on its side).
    fn forbids(rules: &IdentityRules, a: &[u32; KINDS], b: &[u32; KINDS], via_weak: bool) -> Option<ConflictRule> {
        if let Some(kind) = Self::over_limit(rules, a, b) {
            return Some(ConflictRule::Limit { kind });
        }
        (via_weak && Self::holds_personal(rules, a) && Self::holds_personal(rules, b))
            .then_some(ConflictRule::WeakBridge)
    }

    /// The first kind whose limit `a` and `b` together would exceed.
    fn over_limit(rules: &IdentityRules, a: &[u32; KINDS], b: &[u32; KINDS]) -> Option<IdentifierKind> {
        IdentifierKind::ALL.into_iter().find(|k| rules.limit(*k).is_some_and(|l| a[k.index()] + b[k.index()] > l))
    }

    /// Merges two live profiles and returns the slot holding the result.
    ///
    /// The survivor is the profile created first (then the smaller id), so the choice does not
    /// depend on which side the event happened to name first, nor on when late events came.
    fn merge(&mut self, a: u32, b: u32, time: EventTime) -> (u32, ProfileId, ProfileId) {
        let (pa, pb) = (self.profile(a), self.profile(b));
        let a_survives = (pa.created, pa.id) <= (pb.created, pb.id);
        let (survivor_id, absorbed_id) = if a_survives { (pa.id, pb.id) } else { (pb.id, pa.id) };
        let survivor_created = pa.created.min(pb.created);
        // Physically move the smaller entry list into the larger.
        let (big, small) = if pa.entries.len() >= pb.entries.len() { (a, b) } else { (b, a) };
        let small_p = self.profiles[small as usize].take().expect("live profile");
        let before = profile_heap(&small_p) + profile_heap(self.profile(big));
        self.free.push(small);
        for &e in &small_p.entries {
            self.entries[e as usize].profile = big;
        }
        let bp = self.profile_mut(big);
        // History in merge order: the survivor's own, what the absorbed profile had absorbed,
        // then the absorbed profile (the latest merge: the last the cap below would drop).
        let big_history = std::mem::take(&mut bp.merged_from);
        let (mut history, absorbed_history) =
            if bp.id == survivor_id { (big_history, small_p.merged_from) } else { (small_p.merged_from, big_history) };
        history.extend(absorbed_history);
        history.push(absorbed_id);
        // A hub that absorbs without end must not grow its profile record past what a broker
        // takes: the earliest entries go (redirects still lead every absorbed id here).
        if history.len() > MAX_MERGED_FROM {
            history.drain(..history.len() - MAX_MERGED_FROM);
        }
        bp.merged_from = history;
        bp.id = survivor_id;
        bp.created = survivor_created;
        bp.entries.extend_from_slice(&small_p.entries);
        bp.counts = add(&bp.counts, &small_p.counts);
        bp.first_seen = bp.first_seen.min(small_p.first_seen);
        bp.last_seen = bp.last_seen.max(small_p.last_seen);
        bp.event_count += small_p.event_count;
        let after = profile_heap(bp);
        self.profile_bytes = self.profile_bytes + after - before;
        self.by_id.remove(&absorbed_id);
        self.by_id.insert(survivor_id, big);
        self.redirects.insert(absorbed_id, (survivor_id, time));
        (big, survivor_id, absorbed_id)
    }

    /// Records a refused link; the identifier becomes shared when the rules say so.
    fn refuse(
        &mut self,
        entry: u32,
        id: &Identifier,
        rule: ConflictRule,
        other: u32,
        rules: &IdentityRules,
        conflicts: &mut Vec<Conflict>,
    ) -> MatchOutcome {
        conflicts.push(Conflict { identifier: id.clone(), rule, other_profile: Some(self.profile(other).id) });
        if rules.marks_shared() && matches!(rule, ConflictRule::Limit { .. }) {
            self.entries[entry as usize].shared = true;
            MatchOutcome::Shared
        } else {
            MatchOutcome::Conflict
        }
    }

    /// Applies one event's normalized, unblocked identifiers.
    ///
    /// `ids` must be sorted strongest first (by [`IdentityRules::rank`]); `new_id` gives the id
    /// of a profile this event creates (computed only then: it hashes).
    pub fn link(
        &mut self,
        ids: &[Identifier],
        rules: &IdentityRules,
        new_id: impl FnOnce() -> ProfileId,
        time: EventTime,
    ) -> Linked {
        let mut outcomes: SmallVec<[MatchOutcome; 4]> = smallvec::smallvec![MatchOutcome::Added; ids.len()];
        let mut merges = Vec::new();
        let mut conflicts = Vec::new();
        let mut target = Target::None;
        // The identifier that put the event on its target, for merge explanations.
        let mut anchor: Option<usize> = None;
        // New identifiers (index, hash) to attach once the target is known, with their counts
        // per kind.
        let mut pending: SmallVec<[(usize, u64); 4]> = SmallVec::new();
        let mut pending_counts = [0u32; KINDS];

        // Within a rank, identifiers the graph holds come before new ones: where an event lands,
        // and which identifier a limit blames, must not depend on how its identifiers spell
        // (a new email sorting before the customer's known one would otherwise start a profile
        // and mark the known one shared).
        let found: SmallVec<[(u64, Option<u32>); 4]> = ids
            .iter()
            .map(|id| {
                let h = hash_of(&self.hasher, id.kind, id.value.as_bytes());
                (h, self.find_hashed(h, id))
            })
            .collect();
        let mut order: SmallVec<[usize; 4]> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (rules.rank(ids[i].kind), found[i].1.is_none()));
        for i in order {
            let (id, (h, entry)) = (&ids[i], found[i]);
            if let Some(e) = entry {
                let seen = &mut self.entries[e as usize].seen;
                *seen = (*seen).max(time);
            }
            match entry.map(|e| (&self.entries[e as usize], e)) {
                Some((e, _)) if e.shared => outcomes[i] = MatchOutcome::Shared,
                Some((e, eidx)) => {
                    let p = e.profile;
                    match target {
                        Target::None => {
                            target = Target::Existing(p);
                            anchor = Some(i);
                            outcomes[i] = MatchOutcome::Linked;
                        }
                        Target::Existing(t) if t == p => outcomes[i] = MatchOutcome::Linked,
                        Target::Existing(t) => {
                            let with_pending = add(&self.profile(t).counts, &pending_counts);
                            // An event on its profile through a weak identifier alone bridges
                            // through it, whatever links the other side.
                            let via_weak = rules.is_weak(id.kind) || anchor.is_some_and(|a| rules.is_weak(ids[a].kind));
                            if let Some(rule) = Self::forbids(rules, &with_pending, &self.profile(p).counts, via_weak) {
                                outcomes[i] = self.refuse(eidx, id, rule, p, rules, &mut conflicts);
                            } else {
                                let target_id = self.profile(t).id;
                                let (slot, survivor, absorbed) = self.merge(t, p, time);
                                let anchor_id = ids[anchor.expect("a target always has an anchor")].clone();
                                let (survivor_identifier, absorbed_identifier) = if survivor == target_id {
                                    (anchor_id, id.clone())
                                } else {
                                    (id.clone(), anchor_id)
                                };
                                merges.push(Merge { survivor, absorbed, survivor_identifier, absorbed_identifier });
                                target = Target::Existing(slot);
                                outcomes[i] = MatchOutcome::Linked;
                            }
                        }
                        Target::New => {
                            if let Some(rule) =
                                Self::forbids(rules, &pending_counts, &self.profile(p).counts, rules.is_weak(id.kind))
                            {
                                outcomes[i] = self.refuse(eidx, id, rule, p, rules, &mut conflicts);
                            } else {
                                target = Target::Existing(p);
                                anchor = Some(i);
                                outcomes[i] = MatchOutcome::Linked;
                            }
                        }
                    }
                }
                None => {
                    let current = match target {
                        Target::Existing(t) => self.profile(t).counts,
                        _ => [0; KINDS],
                    };
                    let mut one = [0u32; KINDS];
                    one[id.kind.index()] = 1;
                    // A new personal identifier on a profile that holds personal ones, the event
                    // there through a weak identifier alone: weak would bridge two people (as it
                    // does when the new identifier comes first in the priority order).
                    let weak_bridge = match target {
                        Target::Existing(_) => {
                            anchor.is_some_and(|a| rules.is_weak(ids[a].kind))
                                && rules.is_personal(id.kind)
                                && Self::holds_personal(rules, &current)
                        }
                        _ => false,
                    };
                    if let Some(kind) = Self::over_limit(rules, &add(&current, &pending_counts), &one) {
                        let rule = ConflictRule::Limit { kind };
                        conflicts.push(Conflict { identifier: id.clone(), rule, other_profile: None });
                        outcomes[i] = MatchOutcome::Conflict;
                    } else if weak_bridge {
                        conflicts.push(Conflict {
                            identifier: id.clone(),
                            rule: ConflictRule::WeakBridge,
                            other_profile: None,
                        });
                        outcomes[i] = MatchOutcome::Conflict;
                    } else {
                        if target == Target::None {
                            target = Target::New;
                        }
                        pending.push((i, h));
                        pending_counts[id.kind.index()] += 1;
                    }
                }
            }
        }

        let (slot, created) = match target {
            Target::Existing(t) => (t, false),
            Target::New | Target::None => {
                let new_id = new_id();
                match self.by_id.get(&new_id) {
                    // The same event applied again (a redelivery): it lands where it landed before.
                    Some(&s) => (s, false),
                    None => (self.new_profile(new_id, time), true),
                }
            }
        };
        for &(i, h) in &pending {
            // An identifier can repeat within one event; the first occurrence attached it.
            if self.find_hashed(h, &ids[i]).is_none() {
                self.insert_hashed(h, &ids[i], slot, time);
            } else {
                outcomes[i] = MatchOutcome::Linked;
            }
        }
        // Only new identifiers and merges add to a profile's counts.
        if !pending.is_empty() || !merges.is_empty() {
            self.forget_oldest(slot, rules, ids);
        }
        let p = self.profile_mut(slot);
        p.first_seen = p.first_seen.min(time);
        p.last_seen = p.last_seen.max(time);
        p.event_count += 1;
        Linked { profile: p.id, created, outcomes, merges, conflicts }
    }

    /// Forgets the oldest identifiers of every kind profile `slot` holds more of than the
    /// rules keep (in the order it gained them; a merge puts the larger side's first), never
    /// one of `current` (the event's own: in use): they leave the profile and the graph, and an
    /// event naming one later starts afresh.
    fn forget_oldest(&mut self, slot: u32, rules: &IdentityRules, current: &[Identifier]) {
        for &(kind, keep) in rules.kept_kinds() {
            let p = self.profile(slot);
            let excess = p.counts[kind.index()].saturating_sub(keep);
            if excess == 0 {
                continue;
            }
            let entries = &self.entries;
            let in_use =
                |e: &Entry| current.iter().any(|i| i.kind == e.kind && i.value.as_bytes() == e.value.as_bytes());
            let oldest: Vec<u32> = p
                .entries
                .iter()
                .copied()
                .filter(|&e| entries[e as usize].kind == kind && !in_use(&entries[e as usize]))
                .take(excess as usize)
                .collect();
            let excess = oldest.len() as u32;
            let p = self.profile_mut(slot);
            p.entries.retain(|e| !oldest.contains(e));
            p.counts[kind.index()] -= excess;
            for idx in oldest {
                self.forget_entry(idx);
            }
        }
    }

    /// Removes entry `idx` from the graph (its profile's list is the caller's), counted as
    /// forgotten; its room is reused.
    fn forget_entry(&mut self, idx: u32) {
        let e = &self.entries[idx as usize];
        let (kind, h) = (e.kind, hash_of(&self.hasher, e.kind, e.value.as_bytes()));
        self.string_bytes -= e.value.heap_bytes();
        if let Ok(found) = self.index.find_entry(h, |&i| i == idx) {
            found.remove();
        }
        self.entries[idx as usize] =
            Entry { value: ShortStr::new(""), kind, shared: false, profile: NO_PROFILE, seen: EventTime(i64::MIN) };
        self.free_entries.push(idx);
        self.forgotten += 1;
    }
}

/// What a snapshot keeps of a graph: everything but what is rebuilt from it (the hash index,
/// the id map, the byte counts).
#[derive(Serialize)]
struct GraphRef<'a> {
    entries: &'a [Entry],
    profiles: &'a [Option<Profile>],
    free: &'a [u32],
    redirects: &'a HashMap<ProfileId, (ProfileId, EventTime)>,
    free_entries: &'a [u32],
    forgotten: u64,
}

/// [`GraphRef`], read back.
#[derive(Deserialize)]
struct GraphState {
    entries: Vec<Entry>,
    profiles: Vec<Option<Profile>>,
    free: Vec<u32>,
    redirects: HashMap<ProfileId, (ProfileId, EventTime)>,
    free_entries: Vec<u32>,
    forgotten: u64,
}

impl GraphState {
    /// Checks that the state is one a graph could be in (every index in range, identifiers
    /// and profiles listing each other, counts right), so that no later step panics on it;
    /// returns the freed identifier slots. (Redirects are not checked: following them is
    /// bounded.)
    fn check(&self) -> Result<HashSet<u32>, &'static str> {
        let (entries, profiles) = (&self.entries, &self.profiles);
        let live_slot = |slot: u32| profiles.get(slot as usize).is_some_and(Option::is_some);
        let freed: HashSet<u32> = self.free_entries.iter().copied().collect();
        if freed.len() != self.free_entries.len() || freed.iter().any(|&e| e as usize >= entries.len()) {
            return Err("a freed identifier slot twice or out of range");
        }
        let free: HashSet<u32> = self.free.iter().copied().collect();
        if free.len() != self.free.len() || free.iter().any(|&p| p as usize >= profiles.len() || live_slot(p)) {
            return Err("a free profile slot twice, out of range or live");
        }
        // Every live identifier once, of a live profile that lists it (or of none).
        let mut listed = vec![false; entries.len()];
        let mut ids = HashSet::new();
        for (slot, p) in profiles.iter().enumerate() {
            let Some(p) = p else { continue };
            if !ids.insert(p.id) {
                return Err("a profile id in two slots");
            }
            let mut counts = [0u32; KINDS];
            for &e in &p.entries {
                let entry = entries.get(e as usize).ok_or("an identifier slot out of range")?;
                if freed.contains(&e)
                    || entry.profile != slot as u32
                    || std::mem::replace(&mut listed[e as usize], true)
                {
                    return Err("a profile listing an identifier that is not its own");
                }
                counts[entry.kind.index()] += 1;
            }
            if counts != p.counts {
                return Err("a profile's counts not those of its identifiers");
            }
        }
        let mut values = HashSet::new();
        for (i, e) in entries.iter().enumerate() {
            if freed.contains(&(i as u32)) {
                continue;
            }
            if e.profile != NO_PROFILE && !listed[i] {
                return Err("an identifier its profile does not list");
            }
            if e.profile == NO_PROFILE && !e.shared {
                return Err("an identifier of no profile that is not shared");
            }
            if !values.insert((e.kind, e.value.as_str())) {
                return Err("an identifier twice");
            }
        }
        Ok(freed)
    }
}

/// Written as its identifiers and profiles, in their slots (so that slots are reused in the
/// same order after a restore).
impl Serialize for TenantGraph {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        GraphRef {
            entries: &self.entries,
            profiles: &self.profiles,
            free: &self.free,
            redirects: &self.redirects,
            free_entries: &self.free_entries,
            forgotten: self.forgotten,
        }
        .serialize(s)
    }
}

/// Read back, its index and counts rebuilt; slots that point outside the graph are refused.
impl<'de> Deserialize<'de> for TenantGraph {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let state = GraphState::deserialize(d)?;
        let freed = state.check().map_err(|e| D::Error::custom(format!("identity graph: {e}")))?;
        let GraphState { entries, profiles, free, redirects, free_entries, forgotten } = state;
        let mut g =
            TenantGraph { entries, profiles, free, redirects, free_entries, forgotten, ..TenantGraph::default() };
        let (entries, hasher) = (&g.entries, &g.hasher);
        for (i, e) in g.entries.iter().enumerate() {
            if !freed.contains(&(i as u32)) {
                let h = hash_of(hasher, e.kind, e.value.as_bytes());
                g.index.insert_unique(h, i as u32, |&j| {
                    let e = &entries[j as usize];
                    hash_of(hasher, e.kind, e.value.as_bytes())
                });
            }
        }
        for (slot, p) in g.profiles.iter().enumerate() {
            if let Some(p) = p {
                g.by_id.insert(p.id, slot as u32);
            }
        }
        g.string_bytes = g.entries.iter().map(|e| e.value.heap_bytes()).sum();
        g.profile_bytes = g.profiles.iter().flatten().map(profile_heap).sum();
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Normalizer;
    use crate::rules::IdentityConfig;
    use IdentifierKind::{Call, Case, ChatSession, ChatVisitor, Email};

    fn rules() -> IdentityRules {
        IdentityRules::from_config(&IdentityConfig::default(), &Normalizer::new("US").unwrap()).unwrap()
    }

    fn id(kind: IdentifierKind, v: &str) -> Identifier {
        Identifier::new(kind, v)
    }

    /// Applies event `name` at `t` naming `ids` (strongest first); the profile it lands on.
    fn link(g: &mut TenantGraph, rules: &IdentityRules, name: &str, t: i64, ids: &[Identifier]) -> ProfileId {
        g.link(ids, rules, || ProfileId::derive("acme", name), EventTime(t)).profile
    }

    /// A hub that absorbed as many profiles as a record lists, absorbed in turn by an older
    /// profile: the list keeps the latest merge (the hub itself), dropping the earliest.
    #[test]
    fn the_merge_list_cap_keeps_the_latest_merge() {
        let r = rules();
        let mut g = TenantGraph::new();
        let older = link(&mut g, &r, "e0", 0, &[id(Call, "CA-old")]);
        let hub = link(&mut g, &r, "e1", 1, &[id(Case, "C-hub")]);
        for n in 0..MAX_MERGED_FROM {
            let other = format!("CA-{n}");
            link(&mut g, &r, &format!("x{n}"), 2, &[id(Call, &other)]);
            link(&mut g, &r, &format!("m{n}"), 3, &[id(Case, "C-hub"), id(Call, &other)]);
        }
        assert_eq!(g.get(hub).map(|p| p.merged_from.len()), Some(MAX_MERGED_FROM));
        link(&mut g, &r, "join", 4, &[id(Case, "C-hub"), id(Call, "CA-old")]);
        let merged = &g.get(older).expect("the older profile survives").merged_from;
        assert_eq!(merged.len(), MAX_MERGED_FROM);
        assert_eq!(merged.last(), Some(&hub));
    }

    /// A profile at its limit of emails (or its one account id), then an event naming one it
    /// holds and a new one: the event lands on the profile and the new one is the conflict,
    /// whether the new one sorts before or after the known one.
    #[test]
    fn which_identifier_a_limit_blames_does_not_depend_on_spelling() {
        use IdentifierKind::AccountId;
        let r = rules();
        for (kind, held, new) in [
            (Email, &["b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com"][..], ["a@x.com", "g@x.com"]),
            (AccountId, &["a-2"][..], ["a-1", "a-3"]),
        ] {
            for new in new {
                let mut g = TenantGraph::new();
                let ids: Vec<Identifier> = held.iter().map(|v| id(kind, v)).collect();
                let p = link(&mut g, &r, "e1", 10, &ids);
                let known = id(kind, held[0]);
                let mut event = [known.clone(), id(kind, new)];
                event.sort();
                let linked = g.link(&event, &r, || ProfileId::derive("acme", "e2"), EventTime(20));
                assert_eq!(linked.profile, p, "{new}");
                assert!(!linked.created && !g.is_shared(&known), "{new}");
                assert_eq!(linked.conflicts.len(), 1, "{new}");
                assert_eq!(linked.conflicts[0].identifier, id(kind, new));
                assert_eq!(g.profile_of(&id(kind, new)), None);
            }
        }
    }

    #[test]
    fn old_profiles_of_conversation_ids_alone_are_forgotten_with_their_ids() {
        let r = rules();
        let mut g = TenantGraph::new();
        let call = link(&mut g, &r, "e1", 10, &[id(Call, "CA-1")]);
        let case = link(&mut g, &r, "e2", 10, &[id(Case, "C-1"), id(ChatSession, "S-1")]);
        let jo = link(&mut g, &r, "e3", 10, &[id(Email, "jo@x.com"), id(Case, "C-2")]);
        let visitor = link(&mut g, &r, "e4", 10, &[id(ChatSession, "S-2"), id(ChatVisitor, "v-1")]);
        let recent = link(&mut g, &r, "e5", 100, &[id(Call, "CA-2")]);
        let anonymous = link(&mut g, &r, "e6", 10, &[]);
        assert_eq!((g.profile_count(), g.identifier_count(), g.forgotten_count()), (6, 8, 0));
        assert_eq!(g.forget_anonymous_before(EventTime(50), &r), 3);
        for gone in [call, case, anonymous] {
            assert!(g.get(gone).is_none());
        }
        for kept in [jo, visitor, recent] {
            assert!(g.get(kept).is_some(), "a customer identifier, a cookie, or seen since the cutoff");
        }
        assert_eq!((g.profile_count(), g.identifier_count(), g.forgotten_count()), (3, 5, 3));
        assert_eq!(g.profile_of(&id(Case, "C-1")), None);
        assert_eq!(g.profile_of(&id(Case, "C-2")), Some(jo));
        // A forgotten id seen again starts a new profile.
        let again = g.link(&[id(Call, "CA-1")], &r, || ProfileId::derive("acme", "e7"), EventTime(120));
        assert!(again.created && again.profile != call);
        // Without conversation kinds (no keep_newest), only profiles with no identifier go.
        let mut g = TenantGraph::new();
        let naive = IdentityRules::naive();
        link(&mut g, &naive, "e1", 10, &[id(Call, "CA-1")]);
        link(&mut g, &naive, "e2", 10, &[]);
        assert_eq!(g.forget_anonymous_before(EventTime(50), &naive), 1);
        assert_eq!(g.identifier_count(), 1);
    }

    #[test]
    fn a_forgotten_profile_takes_the_ids_it_absorbed_with_it() {
        let r = rules();
        let mut g = TenantGraph::new();
        let first = link(&mut g, &r, "e1", 10, &[id(Call, "CA-1")]);
        let second = link(&mut g, &r, "e2", 11, &[id(Call, "CA-2")]);
        let third = link(&mut g, &r, "e3", 12, &[id(Call, "CA-3")]);
        link(&mut g, &r, "e4", 13, &[id(Case, "C-1"), id(Call, "CA-1"), id(Call, "CA-2")]);
        link(&mut g, &r, "e5", 14, &[id(Case, "C-1"), id(Call, "CA-3")]);
        assert_eq!((g.profile_count(), g.redirects.len()), (1, 2));
        assert_eq!(g.get(third).map(|p| p.id), Some(first));
        assert_eq!(g.forget_anonymous_before(EventTime(15), &r), 1);
        for gone in [first, second, third] {
            assert!(g.get(gone).is_none());
        }
        assert_eq!((g.profile_count(), g.identifier_count(), g.redirects.len()), (0, 0, 0));
        assert_eq!(g.forgotten_count(), 4);
    }

    #[test]
    fn identified_profiles_forget_conversation_ids_and_merges_older_than_retention() {
        let r = rules();
        let mut g = TenantGraph::new();
        let jo = link(&mut g, &r, "e1", 10, &[id(Email, "jo@x.com"), id(Case, "C-1"), id(ChatSession, "S-1")]);
        // C-2 is named again later: what counts is when it was last named.
        link(&mut g, &r, "e2", 20, &[id(Email, "jo@x.com"), id(Case, "C-2")]);
        let visitor = link(&mut g, &r, "e3", 30, &[id(ChatVisitor, "v-1"), id(ChatSession, "S-2")]);
        // A merge at 40 (the cookie joins Jo), another at 90.
        link(&mut g, &r, "e4", 40, &[id(Email, "jo@x.com"), id(ChatVisitor, "v-1")]);
        let late = link(&mut g, &r, "e5", 80, &[id(Call, "CA-1")]);
        link(&mut g, &r, "e6", 90, &[id(Email, "jo@x.com"), id(Call, "CA-1"), id(Case, "C-2")]);
        assert_eq!(g.redirects.len(), 2);
        assert_eq!(g.identifier_count(), 7);
        // Nothing is older than 10.
        assert_eq!(g.forget_conversations_before(EventTime(10), &r), 0);
        assert_eq!(g.forget_conversations_before(EventTime(50), &r), 3, "C-1, S-1 and S-2");
        for gone in [id(Case, "C-1"), id(ChatSession, "S-1"), id(ChatSession, "S-2")] {
            assert_eq!(g.profile_of(&gone), None, "{gone:?}");
        }
        for kept in [id(Email, "jo@x.com"), id(ChatVisitor, "v-1"), id(Case, "C-2"), id(Call, "CA-1")] {
            assert_eq!(g.profile_of(&kept), Some(jo), "{kept:?}: a customer's identifier, or named since");
        }
        assert!(g.get(visitor).is_none(), "the merge at 40 is forgotten");
        assert_eq!(g.get(late).map(|p| p.id), Some(jo), "the merge at 90 is not");
        let p = g.get(jo).unwrap();
        assert_eq!(g.identifiers(p).len(), p.counts.iter().sum::<u32>() as usize, "counts follow");
        assert_eq!(p.counts[Case.index()], 1);
        assert_eq!(g.forgotten_count(), 3);
        // A forgotten case named again starts afresh (no link to Jo).
        let again = g.link(&[id(Case, "C-1")], &r, || ProfileId::derive("acme", "e7"), EventTime(100));
        assert!(again.created && again.profile != jo);
    }

    #[test]
    fn the_same_calls_and_sweeps_give_the_same_graph() {
        let r = rules();
        let run = || {
            let mut g = TenantGraph::new();
            for i in 0..200i64 {
                let ids = [id(Case, &format!("C-{}", i / 3)), id(Call, &format!("CA-{i}"))];
                link(&mut g, &r, &format!("e{i}"), i, &ids[usize::from(i % 2 == 0)..]);
                if i % 25 == 0 {
                    g.forget_conversations_before(EventTime(i - 40), &r);
                    g.forget_anonymous_before(EventTime(i - 40), &r);
                }
            }
            let profiles: Vec<_> = g.profiles().map(|p| (p.id, g.identifiers(p), p.last_seen)).collect();
            (format!("{:?} {:?} {:?}", g.entries, g.free, g.free_entries), profiles, g.forgotten_count())
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert!(a.1.len() <= 70, "{}", a.1.len());
    }

    /// A table's bytes follow its buckets, not its capacity (7/8 of them from 8 on).
    #[test]
    fn table_bytes_count_every_bucket() {
        let mut t: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
        assert_eq!(table_bytes(t.capacity(), 4), 0, "an empty table allocates nothing");
        for i in 0..1_000u32 {
            t.insert_unique(u64::from(i), i, |&v| u64::from(v));
        }
        assert_eq!(t.capacity(), 1_792, "2,048 buckets hold 1,792");
        assert_eq!(table_bytes(t.capacity(), 4), 2_048 * 5 + 16);
        assert_eq!(table_bytes(7, 4), 8 * 5 + 16);
        assert_eq!(table_bytes(3, 4), 4 * 5 + 16);
    }

    /// A graph read back links as the original; a state no graph could be in (which would
    /// panic or loop later) is refused.
    #[test]
    fn a_graph_read_back_links_as_before_and_impossible_states_are_refused() {
        let rules = rules();
        let mut g = TenantGraph::new();
        link(&mut g, &rules, "a", 1, &[id(Email, "a@x.io")]);
        link(&mut g, &rules, "b", 2, &[id(ChatVisitor, "v-1")]);
        link(&mut g, &rules, "c", 3, &[id(Email, "a@x.io"), id(ChatVisitor, "v-1")]);
        link(&mut g, &rules, "d", 4, &[id(Email, "a-rather-long-address@example.com")]);
        g.forget_conversations_before(EventTime(0), &rules);
        let bytes = postcard::to_allocvec(&g).unwrap();
        let mut back: TenantGraph = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((back.memory_bytes(), back.identifier_count()), (back.memory_bytes_walked(), g.identifier_count()));
        let next = |g: &mut TenantGraph| {
            let p = link(g, &rules, "e", 5, &[id(ChatVisitor, "v-1"), id(Call, "call-9")]);
            (p, g.profile_count(), g.identifier_count(), g.identifiers(g.get(p).unwrap()))
        };
        assert_eq!(next(&mut g), next(&mut back));
        let refused = |tamper: &dyn Fn(&mut GraphState)| {
            let mut st: GraphState = postcard::from_bytes(&bytes).unwrap();
            tamper(&mut st);
            let again = GraphRef {
                entries: &st.entries,
                profiles: &st.profiles,
                free: &st.free,
                redirects: &st.redirects,
                free_entries: &st.free_entries,
                forgotten: st.forgotten,
            };
            postcard::from_bytes::<TenantGraph>(&postcard::to_allocvec(&again).unwrap()).is_err()
        };
        assert!(!refused(&|_| {}));
        assert!(refused(&|st| {
            let lone = ShortStr::new("lone");
            st.entries.push(Entry { value: lone, kind: Email, shared: false, profile: NO_PROFILE, seen: EventTime(0) });
        }));
        assert!(refused(&|st| st.profiles.iter_mut().flatten().next().unwrap().counts[Email.index()] += 1));
        assert!(refused(&|st| {
            let e = st.profiles.iter().flatten().next().unwrap().entries[0];
            st.free_entries.push(e);
        }));
        assert!(refused(&|st| st.entries[0].profile = 7));
        assert!(refused(&|st| st.free.push(u32::MAX)));
    }

    /// Redirects that loop (an absorbed profile's id back, its creating event's id reused
    /// after the digests forgot it) do not hang a lookup.
    #[test]
    fn a_redirect_loop_does_not_hang_a_lookup() {
        let mut g = TenantGraph::new();
        let (x, y) = (ProfileId::derive("acme", "x"), ProfileId::derive("acme", "y"));
        g.redirects.insert(x, (y, EventTime(0)));
        g.redirects.insert(y, (x, EventTime(0)));
        assert!([x, y].contains(&g.current(x)));
        assert!(g.get(x).is_none());
    }
}
