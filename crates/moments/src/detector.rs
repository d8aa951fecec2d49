//! The stage: timeline events in (event-time order), interventions out.

use hashbrown::HashMap;

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, ProfileId, Tenant};

use crate::config::{MomentsConfig, MomentsConfigError, Settings, SettingsTable};
use crate::effort::{AgreementSums, EffortAgreement};
use crate::intervention::{Intervention, MomentType, Priority};
use crate::shared::{ordinal, span, Draft, MomentCounters, Seen, Shared, HOUR_MS};
use crate::state::{
    digest, forward_key, CaseKey, EventRef, Mark, Profile, PruneLimits, Timer, TimerKey, TimerReason, CASE_PREFIX,
    KEYS, PHONES, THREADS,
};
use crate::tenants::TenantMap;

/// Profile state is tidied, and idle profiles swept out, at most once per this much event time
/// (a profile's own state sooner when over a size limit).
const PRUNE_EVERY_MS: i64 = 24 * HOUR_MS;
/// Longest redirect chain followed (merges of merges); a longer one means a cycle.
const MAX_REDIRECT_HOPS: usize = 64;

/// A key for the customer's phone number on `event`, the same for every spelling of it: the
/// last ten digits (a national number with or without its country or trunk prefix).
fn phone_number_key(event: &Event) -> Option<u64> {
    let raw = event.identifiers.iter().find(|i| i.kind == omnistitch_model::IdentifierKind::Phone)?;
    // The last ten digits, read from the end, without collecting the rest.
    let mut tail = [0u8; 10];
    let mut n = 0usize;
    for d in raw.value.bytes().rev().filter(u8::is_ascii_digit) {
        if n < 10 {
            tail[9 - n] = d;
        }
        n += 1;
    }
    if n < 7 {
        return None; // withheld, placeholder or too short to be a number
    }
    let tail = &tail[10 - n.min(10)..];
    // Placeholders (one repeated digit, a counting run) are shared by everyone who types them.
    if tail.iter().all(|d| *d == tail[0]) || b"01234567890123456789".windows(tail.len()).any(|w| w == tail) {
        return None;
    }
    Some(digest(PHONES, std::str::from_utf8(tail).ok()?))
}

/// Whether the event answers the customer ([`Event::answers_customer`]: automated messages
/// do not).
fn is_response(event: &Event) -> bool {
    event.answers_customer()
}

/// Cancels pending timer `key` of profile `p` (for its case `case`): the wait it stood for ended.
fn settle(shared: &mut Shared, p: &mut Profile, case: &CaseKey, key: &TimerKey) {
    if let Some(c) = p.cases.get_mut(&case.digest) {
        if c.sla.as_ref() == Some(key) {
            c.sla = None;
            c.awaiting = false;
        }
    }
    shared.cancel(p, key);
}

/// One tenant's detector state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TenantState {
    /// Profile -> (its last event time, its state): the time beside the state, so that a sweep
    /// for idle profiles reads the table alone, not every profile's state.
    /// (A profile being applied is out of its slot, which stays: putting it back is a write.)
    profiles: HashMap<ProfileId, (EventTime, Option<Box<Profile>>)>,
    /// Merged-away profile -> (survivor, clock at the merge).
    redirects: HashMap<ProfileId, (ProfileId, EventTime)>,
    /// The sweep boundary (a multiple of [`PRUNE_EVERY_MS`]) idle profiles and old redirects
    /// were last swept at.
    swept_at: Option<i64>,
    /// Settings, timers, counters: what the profiles share.
    shared: Shared,
}

impl TenantState {
    fn new(settings: Settings) -> Self {
        TenantState {
            profiles: HashMap::new(),
            redirects: HashMap::new(),
            swept_at: None,
            shared: Shared::new(settings),
        }
    }

    fn limits(&self) -> PruneLimits {
        let s = &self.shared.settings;
        PruneLimits {
            retention_ms: s.retention_ms,
            cooldown_ms: s.cooldown_ms,
            ttl_ms: s.ttl_ms,
            repeat_window_ms: s.repeat.map_or(0, |(_, w)| w),
            sentiment_window_ms: s.sentiment.map_or(0, |(_, w)| w),
            every_ms: PRUNE_EVERY_MS,
        }
    }

    /// The profile `id` now stands for (following merges).
    fn resolve(&self, mut id: ProfileId) -> ProfileId {
        for _ in 0..MAX_REDIRECT_HOPS {
            match self.redirects.get(&id) {
                Some((next, _)) if *next != id => id = *next,
                _ => break,
            }
        }
        id
    }

    /// Takes the state of profile `id` out of the table (to be put back).
    fn take_profile(&mut self, id: ProfileId) -> Option<Box<Profile>> {
        self.profiles.get_mut(&id).and_then(|(_, p)| p.take())
    }

    /// Removes profile `id` for good (merged away).
    fn remove_profile(&mut self, id: ProfileId) -> Option<Box<Profile>> {
        self.profiles.remove(&id).and_then(|(_, p)| p)
    }

    /// The profile `id` now stands for, taken out (a new one if it has no state): a profile
    /// with state is never merged away, so redirects are only followed for one without.
    fn take_current(&mut self, id: ProfileId) -> (ProfileId, Box<Profile>) {
        if let Some(p) = self.take_profile(id) {
            return (id, p);
        }
        let id = self.resolve(id);
        (id, self.take_profile(id).unwrap_or_default())
    }

    /// Puts back a profile taken out (or a new one).
    fn put_profile(&mut self, id: ProfileId, p: Box<Profile>) {
        // Into the slot it left when there is one: an insert over a key writes in place.
        self.profiles.insert(id, (p.last_seen, Some(p)));
    }

    fn advance_clock(&mut self, t: EventTime) {
        self.shared.clock = Some(self.shared.clock.map_or(t, |c| c.max(t)));
    }

    /// Forgets profiles idle past the retention, and redirects as old, once the clock passes
    /// a sweep boundary (every [`PRUNE_EVERY_MS`] of event time since the epoch, so that when a
    /// sweep happens depends on event time alone): what was idle at the boundary goes.
    fn evict(&mut self) {
        let Some(now) = self.shared.clock else { return };
        let boundary = now.0.div_euclid(PRUNE_EVERY_MS).saturating_mul(PRUNE_EVERY_MS);
        if self.swept_at.is_some_and(|at| at >= boundary) {
            return;
        }
        self.swept_at = Some(boundary);
        let cutoff = EventTime(boundary.saturating_sub(self.shared.settings.retention_ms));
        let before = self.profiles.len();
        self.profiles.retain(|_, (seen, _)| *seen >= cutoff);
        self.shared.counters.profiles_evicted += (before - self.profiles.len()) as u64;
        self.redirects.retain(|_, (_, at)| *at >= cutoff);
    }

    /// Fires every timer due before `before`, in due order.
    fn fire_due(&mut self, tenant: &Tenant, before: EventTime, out: &mut Vec<Intervention>) {
        while self.shared.timers.first_key_value().is_some_and(|(k, _)| k.due < before) {
            let Some((key, timer)) = self.shared.timers.pop_first() else { break };
            if matches!(timer.reason, TimerReason::Superseded { .. }) {
                continue; // word of a wait joined to another, kept its time: nothing to do
            }
            let id = self.resolve(timer.profile);
            let mut p = self.take_profile(id);
            let fires = timer.reason.fires();
            if let Some(p) = p.as_mut() {
                p.timers.remove(&key);
                if let Some(case) = p.cases.get_mut(&timer.case.digest) {
                    if case.sla.as_ref() == Some(&key) {
                        case.sla = None;
                        // A breached wait its case still waits on: word of it stays, so that a
                        // response from another profile (a shared mailbox) naming it ends it.
                        if fires && case.awaiting {
                            let word = forward_key(&key);
                            let marker = Timer { reason: TimerReason::Breached, ..timer.clone() };
                            self.shared.timers.insert(word.clone(), marker);
                            p.timers.insert(word.clone());
                            case.sla = Some(word);
                        } else if !fires {
                            // Word of the breached wait expired: the wait is forgotten, and the
                            // case's next inbound message starts one.
                            case.awaiting = false;
                        }
                    }
                }
            }
            if !fires {
                // Word of a breached wait, kept its time: the wait is forgotten.
                if let Some(p) = p {
                    self.put_profile(id, p);
                }
                continue;
            }
            let draft = Draft {
                moment: key.moment,
                evidence: vec![timer.key.clone()],
                key: timer.key,
                case: timer.case,
                detected_at: key.due,
                actionable_from: key.due,
                late: timer.late,
                priority: timer.priority,
                channel: timer.channel,
                reason: timer.reason.text(),
            };
            out.extend(self.shared.emit(tenant, id, p.as_deref_mut(), draft));
            if let Some(p) = p {
                self.put_profile(id, p);
            }
        }
    }

    /// An event of profile `responder` (whose state `mine` is out of the map) names `at`: it
    /// settles the timers indexed there (only those whose key event is not after `not_after`,
    /// when given), on other profiles and on the responder's own (a wait its case did not
    /// settle: a reply from another case id to the waiting message, after a ticket merge).
    fn settle_elsewhere(&mut self, responder: ProfileId, mine: &mut Profile, at: u64, not_after: Option<EventTime>) {
        let Some(keys) = self.shared.settled_elsewhere.take(at) else { return };
        let mut waiting = Vec::new();
        for filed in keys {
            // A wait joined to another, or breached, answers as what it became.
            let Some(key) = self.shared.live(&filed) else { continue };
            let Some(timer) = self.shared.timers.get(&key) else { continue };
            if not_after.is_some_and(|t| timer.key.time > t) {
                waiting.push(filed);
                continue;
            }
            let (owner, case) = (self.resolve(timer.profile), timer.case.clone());
            if owner == responder {
                settle(&mut self.shared, mine, &case, &key);
                continue;
            }
            let Some(mut other) = self.take_profile(owner) else { continue };
            settle(&mut self.shared, &mut other, &case, &key);
            self.put_profile(owner, other);
        }
        self.shared.settled_elsewhere.put_back(at, waiting);
    }

    fn merge_profiles(
        &mut self,
        tenant: &Tenant,
        survivor: ProfileId,
        absorbed: ProfileId,
        at: Option<EventTime>,
    ) -> Vec<Intervention> {
        let survivor = self.resolve(survivor);
        let absorbed = self.resolve(absorbed);
        if survivor == absorbed {
            return Vec::new();
        }
        let now = self.shared.clock.unwrap_or_default();
        self.redirects.insert(absorbed, (survivor, now));
        let Some(other) = self.remove_profile(absorbed) else { return Vec::new() };
        for k in &other.timers {
            if let Some(t) = self.shared.timers.get_mut(k) {
                t.profile = survivor;
            }
        }
        let mut p = self.take_profile(survivor).unwrap_or_default();
        // Starts each profile saw complete a window on its own: those were detected already.
        // When either history is empty, the joined one is the other's: nothing new to see.
        let both = !p.repeat.is_empty() && !other.repeat.is_empty();
        let seen: Vec<EventRef> = match self.shared.settings.repeat {
            Some((count, window)) if both => {
                let mut seen = p.repeat.completing(count, window);
                seen.extend(other.repeat.completing(count, window));
                seen
            }
            _ => Vec::new(),
        };
        for case in p.absorb(*other, &mut self.shared.timers) {
            // A wait that joined a case is answered by a reply naming the case (from any
            // profile), as when one profile sees the case id arrive.
            if let Some(k) = p.cases.get(&case.digest).and_then(|c| c.sla.clone()) {
                self.shared.index_elsewhere(case.digest, k);
            }
        }
        // An abandon on one side followed by a successful contact on the other was rescued:
        // pending timers are due after every event applied, so the contact is in its window.
        if let Some(settled) = p.settled_at {
            self.shared.cancel_abandons_before(&mut p, settled);
        }
        let out = if both { self.repeats_joined_by_merge(tenant, survivor, &mut p, &seen, at) } else { Vec::new() };
        self.put_profile(survivor, p);
        out
    }

    /// Repeat contacts that only the merge reveals: starts that complete a window of the joined
    /// history (both profiles' starts and resolutions) but did not complete one in their own
    /// profile (`seen`). Detected at that start, as a single profile would have; skipped when an
    /// emitted repeat contact already counted a start of the window (one intervention per run).
    /// Actionable from the merge: `at` (the time of the event that caused it) or the clock.
    fn repeats_joined_by_merge(
        &mut self,
        tenant: &Tenant,
        id: ProfileId,
        p: &mut Profile,
        seen: &[EventRef],
        at: Option<EventTime>,
    ) -> Vec<Intervention> {
        let mut out = Vec::new();
        let Some((count, window)) = self.shared.settings.repeat else { return out };
        let starts: Vec<Mark> = p.repeat.starts().map(|s| s.mark.clone()).collect();
        for start in &starts {
            let range = p.repeat.window(start, window);
            if range.len() != count || seen.contains(&start.event_id) || p.repeat.any_counted(range.clone()) {
                continue;
            }
            let in_window = p.repeat.marks(range.clone());
            let case = p
                .conversations
                .values()
                .find(|c| c.start.as_ref() == Some(start))
                .map_or_else(|| CaseKey::new(&format!("event:{}", start.event_id)), |c| c.case.clone());
            let draft = Draft {
                moment: MomentType::RepeatContact,
                key: start.clone(),
                case,
                detected_at: start.time,
                // Found only now, maybe days after its start: actionable for its time to live
                // from now, not already expired.
                actionable_from: [self.shared.clock, at].into_iter().flatten().fold(start.time, EventTime::max),
                late: false,
                priority: Priority::High,
                channel: start.channel,
                reason: format!(
                    "{} conversation within {} without a case resolution (seen once two profiles were joined)",
                    ordinal(count),
                    span(window)
                ),
                evidence: in_window,
            };
            if let Some(i) = self.shared.emit(tenant, id, Some(p), draft) {
                p.repeat.set_counted(range);
                out.push(i);
            }
        }
        out
    }

    /// Applies one event of `profile` (followed through merges) and returns what it triggers.
    fn apply(&mut self, profile: ProfileId, event: &Event, thread_id: &str, out: &mut Vec<Intervention>) {
        let s = self.shared.settings;
        let tenant = &event.tenant;
        let t = event.time;
        // The clock has passed this event's time already: it arrived behind the watermark.
        let late = self.shared.clock.is_some_and(|now| t < now);
        let limits = self.limits();
        let (id, mut p) = self.take_current(profile);
        p.last_seen = p.last_seen.max(t);
        for word in p.prune(self.shared.clock.unwrap_or(t).max(t), &limits, &self.shared.timers) {
            self.shared.timers.remove(&word);
        }
        p.note_time(t);
        let mark = Mark::of(event);

        // Conversation and case.
        let own = event.thread.key.as_deref().map(|k| digest(KEYS, k));
        let parent = event.thread.parent.as_deref().map(|k| digest(KEYS, k));
        // An event without a conversation key is threaded by the engine on its case id alone
        // (or on itself), which its arrival order does not change.
        let by_thread = (own.is_none() && parent.is_none()).then(|| digest(THREADS, thread_id));
        let keys = [own, parent, by_thread];
        let known = keys.iter().flatten().find_map(|k| p.keys.get(k).map(|(c, _)| *c));
        // The case comes from the event and the profile's earlier events alone, never from the
        // thread the engine gave the event at its arrival: that thread may carry a case id of an
        // event younger than this one that arrived first, so it depends on arrival order.
        let case_key = match (&event.case_id, known.and_then(|c| p.conversations.get(&c))) {
            (None, Some(c)) => c.case.clone(),
            (Some(c), _) if thread_id.strip_prefix(CASE_PREFIX) == Some(c.as_str()) => p.case_key(thread_id),
            (Some(c), _) => p.case_key(&format!("{CASE_PREFIX}{c}")),
            (None, None) => match event.thread.key.as_deref().or(event.thread.parent.as_deref()) {
                // A conversation new to this profile is threaded on its own key (a reply whose
                // message is not known, on its parent's), as the engine threads a conversation
                // it meets first.
                Some(k) => p.case_key(k),
                None => p.case_key(thread_id),
            },
        };
        // Whether the effort inputs of the event's case change.
        let mut effort_changed = false;
        if let Some(c) = known {
            // Compared by digest first: the key is cloned only when the conversation moves.
            let moved = p.conversations.get(&c).filter(|c| c.case != case_key).map(|c| c.case.clone());
            if let Some(old) = moved {
                effort_changed = true;
                if old.is_case_id() {
                    // From one case to another: only this conversation moves.
                    if let Some(conv) = p.conversations.get_mut(&c) {
                        conv.case = case_key.clone();
                    }
                    // A case left without conversations (its ticket was merged into this one):
                    // its wait goes along, and a reply in this case answers it.
                    if !p.conversations.values().any(|conv| conv.case == old) {
                        if let Some(k) = p.move_wait(&old, &case_key, t, &mut self.shared.timers) {
                            self.shared.index_elsewhere(case_key.digest, k);
                        }
                    }
                } else {
                    // The conversation was threaded on its own until the case id showed up.
                    p.absorb_case(&old, &case_key, &mut self.shared.timers);
                    // Its wait is the case's now: a reply naming the case (from any profile)
                    // answers it.
                    if let Some(k) = p.cases.get(&case_key.digest).and_then(|c| c.sla.clone()) {
                        self.shared.index_elsewhere(case_key.digest, k);
                    }
                }
            }
        }
        // A contact opens a conversation; so does any event naming a case (a case resolved on a
        // conversation tells its later events, a survey answered on it, their case).
        let opens = event.kind.is_contact() || (event.case_id.is_some() && own.is_some());
        let conversation = known.or_else(|| opens.then(|| p.open_conversation(case_key.clone(), t)));
        if let Some(c) = conversation {
            for k in keys.into_iter().flatten() {
                let slot = p.keys.entry(k).or_insert((c, t));
                if slot.0 == c {
                    slot.1 = slot.1.max(t);
                }
            }
        }
        p.case_mut(&case_key, t);

        let inbound = event.direction == Direction::Inbound;
        let inbound_contact = inbound && event.kind.is_contact();
        let response = is_response(event);
        let new_conversation =
            inbound_contact && conversation.and_then(|c| p.conversations.get(&c)).is_some_and(|c| c.start.is_none());

        let seen = Seen { tenant, profile: id, event, case: &case_key, mark: &mark, late };

        // 1. Timers this event settles.
        if response {
            let sla = p.cases.get_mut(&case_key.digest).and_then(|c| {
                c.awaiting = false;
                c.sla.take()
            });
            if let Some(k) = sla {
                self.shared.cancel(&mut p, &k);
            }
            // Waits are filed under their case as this profile's events in order name it, not
            // under the engine's thread: a case id arriving early re-threads the conversation
            // for the events of it that arrive later, also those older than the case id.
            self.settle_elsewhere(id, &mut p, case_key.digest, None);
            // A reply names the message or post it answers: the wait of that conversation ends
            // even when the reply's thread is a case and its profile another (a shared mailbox).
            for k in [own, parent].into_iter().flatten() {
                self.settle_elsewhere(id, &mut p, k, None);
            }
        }
        // A successful contact: a response (an answered call among them; an internal leg
        // between agents answers nobody) or a completed chat.
        if response || event.kind == EventKind::ChatEnded {
            p.settled_at = p.settled_at.max(Some(t));
            self.shared.cancel_abandons_before(&mut p, t);
            if let Some(number) = phone_number_key(event) {
                self.settle_elsewhere(id, &mut p, number, Some(event.time));
            }
        }

        // 2. Moments of the event itself, against the state before it.
        if new_conversation {
            if let Some(window) = s.hop_window_ms {
                out.extend(self.shared.channel_hop(&seen, &mut p, window));
            }
            if let Some((count, window)) = s.repeat {
                p.repeat.push_start(mark.clone());
                let range = p.repeat.window(&mark, window);
                if range.len() == count {
                    let in_window = p.repeat.marks(range.clone());
                    let draft = Draft {
                        moment: MomentType::RepeatContact,
                        key: mark.clone(),
                        case: case_key.clone(),
                        detected_at: t,
                        actionable_from: t,
                        late,
                        priority: Priority::High,
                        channel: event.channel,
                        reason: format!(
                            "{} conversation within {} without a case resolution",
                            ordinal(count),
                            span(window)
                        ),
                        evidence: in_window,
                    };
                    if let Some(i) = self.shared.emit(tenant, id, Some(&mut p), draft) {
                        p.repeat.set_counted(range);
                        out.push(i);
                    }
                }
            }
        }
        if inbound {
            if let Some((threshold, window)) = s.sentiment {
                out.extend(self.shared.negative_sentiment(&seen, &mut p, threshold, window));
            }
        }

        // 3. State.
        if let Some(conv) = conversation.and_then(|c| p.conversations.get_mut(&c)) {
            conv.last_seen = conv.last_seen.max(t);
            if inbound_contact && conv.start.as_ref().is_none_or(|m| mark < *m) {
                conv.start = Some(mark.clone());
                effort_changed = true;
            }
            let (wait, transfers) =
                (event.details.queue_wait_ms.unwrap_or(0), i64::from(event.details.transfers.unwrap_or(0)));
            effort_changed |= wait > conv.queue_wait_ms || transfers > conv.transfers;
            conv.queue_wait_ms = conv.queue_wait_ms.max(wait);
            conv.transfers = conv.transfers.max(transfers);
        }
        let abandon = matches!(event.kind, EventKind::CallAbandoned | EventKind::ChatAbandoned);
        {
            let case = p.case_mut(&case_key, t);
            case.effort_stale |= effort_changed || abandon;
            if inbound_contact {
                case.contacted = true;
                if case.last_contact.as_ref().is_none_or(|m| *m < mark) {
                    case.last_contact = Some(mark.clone());
                }
            }
            if event.kind == EventKind::CaseResolved {
                case.resolved = true;
            }
            if abandon {
                case.abandons = case.abandons.saturating_add(1);
            }
        }
        if event.kind == EventKind::CaseResolved {
            p.repeat.push_resolution(mark.clone());
        }
        if (response || event.kind == EventKind::CallEnded) && p.support.as_ref().is_none_or(|m| *m < mark) {
            p.support = Some(mark.clone());
        }

        // 4. Timers this event sets.
        let waits = inbound
            && matches!(
                event.kind,
                EventKind::Message | EventKind::SocialPost | EventKind::SocialDm | EventKind::ChatStarted
            );
        if let (true, true, Some(sla)) = (s.sla_enabled, waits, s.sla_ms(event.channel)) {
            let case = p.cases.get(&case_key.digest);
            if let Some(c) = case.filter(|c| c.awaiting) {
                // A follow-up while the case waits: a reply to it (from any profile: a shared
                // mailbox answering the latest message) answers the wait too.
                if let (Some(k), Some(own)) = (c.sla.clone(), own) {
                    self.shared.index_elsewhere(own, k);
                }
            } else if case.is_some() {
                let key = TimerKey {
                    due: t.plus_millis(sla),
                    moment: MomentType::FirstResponseSlaBreach,
                    event_id: mark.event_id.clone(),
                };
                let timer = Timer {
                    profile: id,
                    case: case_key.clone(),
                    key: mark.clone(),
                    priority: if event.channel == Channel::Chat { Priority::Critical } else { Priority::High },
                    channel: event.channel,
                    reason: TimerReason::Unanswered { channel: event.channel, kind: event.kind, sla_ms: sla },
                    late,
                };
                let key = self.shared.schedule(&mut p, key, timer);
                if let Some(k) = &key {
                    self.shared.index_elsewhere(case_key.digest, k.clone());
                    if let Some(own) = own {
                        self.shared.index_elsewhere(own, k.clone());
                    }
                }
                if let Some(case) = p.cases.get_mut(&case_key.digest) {
                    case.sla = key;
                    case.awaiting = true;
                }
            }
        }
        if let (true, Some(window)) = (abandon, s.abandon_window_ms) {
            let key = TimerKey {
                due: t.plus_millis(window),
                moment: MomentType::AbandonedContact,
                event_id: mark.event_id.clone(),
            };
            let timer = Timer {
                profile: id,
                case: case_key.clone(),
                key: mark.clone(),
                priority: Priority::High,
                channel: Channel::Phone,
                reason: TimerReason::Abandoned { call: event.kind == EventKind::CallAbandoned, window_ms: window },
                late,
            };
            if let (Some(key), Some(number)) = (self.shared.schedule(&mut p, key, timer), phone_number_key(event)) {
                self.shared.index_elsewhere(number, key);
            }
        }

        // 5. Surveys: detractors, effort agreement.
        if let (EventKind::SurveyResponse, Some(survey)) = (event.kind, &event.survey) {
            let csat = survey.csat.filter(|v| (1..=5).contains(v));
            let nps = survey.nps.filter(|v| (0..=10).contains(v));
            let ces = survey.ces.filter(|v| (1..=7).contains(v));
            if let Some((csat_max, nps_max, ces_min)) = s.detractor {
                let mut bad = Vec::new();
                if let Some(v) = csat.filter(|v| *v <= csat_max) {
                    bad.push(format!("CSAT {v}"));
                }
                if let Some(v) = nps.filter(|v| *v <= nps_max) {
                    bad.push(format!("NPS {v}"));
                }
                if let Some(v) = ces.filter(|v| *v >= ces_min) {
                    bad.push(format!("CES {v}"));
                }
                if !bad.is_empty() {
                    let draft = Draft {
                        moment: MomentType::DetractorSurvey,
                        key: mark.clone(),
                        case: case_key.clone(),
                        detected_at: t,
                        actionable_from: t,
                        late,
                        priority: Priority::High,
                        channel: event.channel,
                        reason: format!("detractor survey answer: {}", bad.join(", ")),
                        evidence: vec![mark.clone()],
                    };
                    out.extend(self.shared.emit(tenant, id, Some(&mut p), draft));
                }
            }
            if let Some(v) = ces {
                let predicted = p.effort_inputs(&case_key).predict(&s.effort);
                self.shared.agreement.record(predicted, f64::from(v));
            }
            if csat.is_some() || nps.is_some() || ces.is_some() {
                p.case_mut(&case_key, t).surveyed = true;
            }
        }

        // 6. Effort.
        if s.effort_enabled {
            out.extend(self.shared.high_effort(&seen, &mut p));
        }

        self.put_profile(id, p);
    }
}

/// Detects the micro-moments of `docs/moments.md` over timeline events; sans-IO, clocked by
/// event time.
///
/// Feed each tenant's events in event-time order (as [`ReorderBuffer`](crate::ReorderBuffer)
/// releases them) with [`observe`](Self::observe), and the tenant's watermark with
/// [`advance_watermark`](Self::advance_watermark); both return the interventions that became
/// true. Absence moments (SLA breach, abandoned contact) are timers on event time: a timer due
/// at `t` fires once an event after `t` is observed or the watermark passes `t`, so an event
/// at exactly `t` still cancels it.
#[derive(Debug)]
pub struct Detector {
    settings: SettingsTable,
    tenants: TenantMap<TenantState>,
}

/// A detector's state read back from a snapshot, for [`Detector::with_state`].
#[derive(Debug, serde::Deserialize)]
pub struct DetectorState(TenantMap<TenantState>);

/// Written as its tenants' state, without its settings (configuration, not state).
impl serde::Serialize for Detector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tenants.serialize(s)
    }
}

impl Detector {
    /// A detector of `config` holding `state` (from a snapshot); every tenant takes its
    /// settings from `config`.
    pub fn with_state(config: MomentsConfig, state: DetectorState) -> Result<Self, MomentsConfigError> {
        let mut detector = Self::new(config)?;
        detector.tenants = state.0;
        let settings = &detector.settings;
        for (tenant, of) in detector.tenants.iter_mut() {
            of.shared.settings = settings.get(tenant.as_str());
        }
        Ok(detector)
    }

    /// A detector with validated settings.
    pub fn new(config: MomentsConfig) -> Result<Self, MomentsConfigError> {
        Ok(Self::with_settings(config.resolve()?))
    }

    pub(crate) fn with_settings(settings: SettingsTable) -> Self {
        Detector { settings, tenants: TenantMap::default() }
    }

    fn tenant(&mut self, tenant: &Tenant) -> &mut TenantState {
        let settings = &self.settings;
        self.tenants.get_or_insert_with(tenant, || TenantState::new(settings.get(tenant.as_str())))
    }

    /// Takes one timeline event of `profile` in thread `thread_id` (`case:<id>` when the event
    /// has a case id); returns the timers it let fire (due before it) and the moments it makes.
    pub fn observe(&mut self, profile: ProfileId, event: &Event, thread_id: &str) -> Vec<Intervention> {
        self.observe_merging(profile, event, thread_id, &[])
    }

    /// [`Detector::observe`] for an event whose identifiers merged profiles (`merges`, in
    /// order: survivor, absorbed). The merges take effect at the event's time: after the
    /// timers due before it fire, before the event itself. So a timer of either profile due
    /// before the event fires as if they were apart, whether the event arrived before the
    /// timer's due time passed or after.
    pub fn observe_merging(
        &mut self,
        profile: ProfileId,
        event: &Event,
        thread_id: &str,
        merges: &[(ProfileId, ProfileId)],
    ) -> Vec<Intervention> {
        let mut out = Vec::new();
        let state = self.tenant(&event.tenant);
        state.shared.counters.events += 1;
        // The clock first: what fires is judged stale or not by it (firing does not read it).
        state.advance_clock(event.time);
        state.fire_due(&event.tenant, event.time, &mut out);
        // Before the event, so what it sees depends on its own time only, not on how far the
        // watermark had moved: arrival order within the lateness cannot change the result.
        state.evict();
        for &(survivor, absorbed) in merges {
            out.extend(state.merge_profiles(&event.tenant, survivor, absorbed, Some(event.time)));
        }
        state.apply(profile, event, thread_id, &mut out);
        out
    }

    /// Fires `tenant`'s timers due before `watermark`, in due order.
    pub fn advance_watermark(&mut self, tenant: &Tenant, watermark: EventTime) -> Vec<Intervention> {
        let mut out = Vec::new();
        // Known before the tenant's first event is released, so that a late first event is
        // judged by it too.
        let state = self.tenant(tenant);
        state.advance_clock(watermark);
        state.fire_due(tenant, watermark, &mut out);
        state.evict();
        out
    }

    /// `absorbed` was merged into `survivor`: its pending timers, cool-downs and state move to
    /// the survivor, and later events naming `absorbed` count for the survivor.
    ///
    /// Returns the repeat contacts the merge reveals (conversations of both profiles within
    /// one window), detected at the start that completes the count.
    pub fn merge_profiles(&mut self, tenant: &Tenant, survivor: ProfileId, absorbed: ProfileId) -> Vec<Intervention> {
        self.tenant(tenant).merge_profiles(tenant, survivor, absorbed, None)
    }

    /// Predicted effort against CES answers, over every tenant.
    pub fn effort_agreement(&self) -> EffortAgreement {
        let mut all = AgreementSums::default();
        for state in self.tenants.values() {
            all.absorb(&state.shared.agreement);
        }
        all.agreement()
    }

    /// Predicted effort against CES answers of `tenant`.
    pub fn tenant_effort_agreement(&self, tenant: &Tenant) -> EffortAgreement {
        self.tenants.get(tenant).map(|s| s.shared.agreement.agreement()).unwrap_or_default()
    }

    /// Counters over every tenant.
    pub fn counters(&self) -> MomentCounters {
        let mut all = MomentCounters::default();
        for state in self.tenants.values() {
            all.add(&state.shared.counters);
        }
        all
    }

    /// Counters of `tenant`.
    pub fn tenant_counters(&self, tenant: &Tenant) -> MomentCounters {
        self.tenants.get(tenant).map(|s| s.shared.counters).unwrap_or_default()
    }

    /// Profiles with state, over all tenants (memory is proportional to it).
    pub fn held_profiles(&self) -> usize {
        self.tenants.values().map(|s| s.profiles.len()).sum()
    }

    /// Entries of the tenants' timer maps, word of waits gone included.
    #[cfg(test)]
    pub(crate) fn timer_entries(&self) -> usize {
        self.tenants.values().map(|s| s.shared.timers.len()).sum()
    }

    /// Timers waiting, over all tenants.
    pub fn pending_timers(&self) -> usize {
        self.tenants.values().map(|s| s.shared.timers.values().filter(|t| t.reason.fires()).count()).sum()
    }
}
