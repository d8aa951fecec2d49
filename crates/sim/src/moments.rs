//! Ground truth of micro-moments: the definitions of `docs/moments.md`, with their defaults,
//! applied to each person's true events in (event time, event id) order.
//!
//! The truth is derived from the rendered records, like the identity truth, never from what the
//! planner meant to plant: an ordinary journey that happens to breach an SLA has a real moment,
//! and a planted hop that misses the window has none. It is a reference detector with perfect
//! identity (the person is the profile) that knows only what has happened by event time.
//!
//! Where the contract is silent, these readings hold (and the detector shares them):
//! - A *conversation* is a chain of conversation keys (email message id and reply, chat session,
//!   call, social post and reply), opened by a contact; it starts at its first inbound contact.
//! - The *case key* of an event is `case:<id>` when it carries one, else its conversation's (a
//!   conversation threaded on its own until a record carries the case id then joins the case,
//!   with its contacts, waits, transfers, abandons, pending timer and cool-downs, as the engine
//!   re-threads it), else its own thread.
//! - `channel_hop`: the case a new conversation is for is the key event's own when it names
//!   one, else the open case key contacted last; 0 ≤ gap ≤ window.
//! - `repeat_contact`: the conversation start that is exactly the `count`-th within the window
//!   (inclusive) since the profile's latest resolution.
//! - `first_response_sla_breach`: one wait per case key: an inbound message, post, DM or chat
//!   start waits unless its case key already does; a response with that case key ends it. When
//!   two case keys merge, the earlier inbound event's timer stays and the other is dropped.
//! - Timers fire once an event after their due time is seen (an event at exactly the due time
//!   still cancels them); at the end of input, timers due after the tenant's last event time
//!   never fire.
//! - Effort counts conversations of the case key with an inbound contact, channel switches
//!   between them in start order, the largest queue wait and transfer count of each
//!   conversation, and the abandons seen with the case key; survey answers out of range are
//!   ignored, and one with no answer in range does not count as answered.
//! - Cool-down: a moment is dropped when a kept one of the same (profile, moment, case key) was
//!   detected less than 24 h before or after it.

use std::collections::HashMap;

use omnistitch_model::wire::WireSurvey;
use omnistitch_model::{Channel, CompactString, Direction, EventKind, WireEvent};
use serde::{Deserialize, Serialize};

use crate::fields;
use crate::text::written_negative;
use crate::truth::{Links, TruthRecord};

/// `channel_hop`: a new conversation on another channel for an open case, soon after its last contact.
pub const CHANNEL_HOP: &str = "channel_hop";
/// `repeat_contact`: the third conversation within seven days without a resolution.
pub const REPEAT_CONTACT: &str = "repeat_contact";
/// `first_response_sla_breach`: an inbound message, post, DM or chat left unanswered past the SLA.
pub const FIRST_RESPONSE_SLA_BREACH: &str = "first_response_sla_breach";
/// `negative_sentiment_after_contact`: a negative inbound event within 48 h after support.
pub const NEGATIVE_SENTIMENT_AFTER_CONTACT: &str = "negative_sentiment_after_contact";
/// `abandoned_contact`: an abandoned call or chat without a successful contact within 30 min.
pub const ABANDONED_CONTACT: &str = "abandoned_contact";
/// `detractor_survey`: CSAT ≤ 2, NPS ≤ 6 or CES ≥ 5.
pub const DETRACTOR_SURVEY: &str = "detractor_survey";
/// `high_effort_journey`: a case's predicted effort reached 5.0 before any survey answer.
pub const HIGH_EFFORT_JOURNEY: &str = "high_effort_journey";

/// Every moment type, in the order of the contract's table.
pub const MOMENT_TYPES: [&str; 7] = [
    CHANNEL_HOP,
    REPEAT_CONTACT,
    FIRST_RESPONSE_SLA_BREACH,
    NEGATIVE_SENTIMENT_AFTER_CONTACT,
    ABANDONED_CONTACT,
    DETRACTOR_SURVEY,
    HIGH_EFFORT_JOURNEY,
];

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
// The contract's defaults.
const HOP_WINDOW_MS: i64 = 60 * MINUTE;
const REPEAT_COUNT: usize = 3;
const REPEAT_WINDOW_MS: i64 = 7 * DAY;
const SLA_CHAT_MS: i64 = 120_000;
const SLA_EMAIL_MS: i64 = 4 * HOUR;
const SLA_SOCIAL_MS: i64 = 4 * HOUR;
const NEGATIVE_THRESHOLD: f64 = -0.5;
const NEGATIVE_WINDOW_MS: i64 = 48 * HOUR;
const ABANDON_WINDOW_MS: i64 = 30 * MINUTE;
const EFFORT_THRESHOLD: f64 = 5.0;
pub(crate) const COOLDOWN_MS: i64 = 24 * HOUR;
/// The detector sees an event once the watermark, this far behind the latest event time, has
/// passed it: by then identity has applied the events up to this much later.
const ALLOWED_LATENESS_MS: i64 = 60_000;

/// How far in time a detection may be from the truth moment it finds at another event (see
/// [`crate::score::match_moments`]): the moment's own window (the longest SLA for an SLA
/// breach), else, for moments without one, the cool-down.
pub(crate) fn match_window_ms(moment: &str) -> i64 {
    match moment {
        CHANNEL_HOP => HOP_WINDOW_MS,
        REPEAT_CONTACT => REPEAT_WINDOW_MS,
        FIRST_RESPONSE_SLA_BREACH => SLA_CHAT_MS.max(SLA_EMAIL_MS).max(SLA_SOCIAL_MS),
        NEGATIVE_SENTIMENT_AFTER_CONTACT => NEGATIVE_WINDOW_MS,
        ABANDONED_CONTACT => ABANDON_WINDOW_MS,
        _ => COOLDOWN_MS,
    }
}

/// One micro-moment that happened: what a detector following `docs/moments.md` should report.
///
/// The key event is the contract's per moment (the new conversation's first inbound event, the
/// unanswered inbound event, the abandon, the negative event, the survey, the crossing event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MomentTruth {
    /// Tenant.
    pub tenant: String,
    /// Whom it happened to (the truth's profile), e.g. `acme/p0042`.
    pub person: String,
    /// The contract's name of the moment, e.g. `channel_hop` (one of [`MOMENT_TYPES`]).
    pub moment_type: String,
    /// The case, when the moment's case key is a case id (not a bare thread).
    pub case_id: Option<String>,
    /// The key event (the contract's, per moment).
    pub key_event_id: String,
    /// Event time at which the moment became true, ms.
    pub detected_at_ms: i64,
    /// Whether every event the moment rests on (key event, previous contact, support contact,
    /// counted conversations) is in the key event's linkable cluster: false means a resolver
    /// that links only what identifiers allow cannot see the whole moment in one profile.
    #[serde(default = "linkable_default")]
    pub linkable: bool,
    /// Whether that evidence was already linked when the moment happened, by the identifiers of
    /// the events up to its detection time (plus the allowed lateness, which the detector waits
    /// anyway): false means even a resolver linking everything the identifiers allow learns too
    /// late (a later event carries the link) to see the moment as it happens. Implies `linkable`.
    #[serde(default = "linkable_default")]
    pub linkable_in_time: bool,
    /// The events the moment rests on, the key event included (event ids); for a moment
    /// that did not happen, the key event and the event that settled it.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// False for a wait that did not end in a moment, because an event of the person settled
    /// it (a successful contact after an abandon, a reply within the SLA), but whose settling
    /// event was not linked to it in time: a detector knowing what identifiers link as events
    /// arrive sees the moment happen. Not part of the truth; a detection of it is scored as
    /// out of reach, not as a false positive, by precision in time.
    #[serde(default = "linkable_default", skip_serializing_if = "is_true")]
    pub happened: bool,
}

fn linkable_default() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The contract's predicted effort of a case, on the CES scale 1-7 (clamped).
pub(crate) fn predicted_effort(switches: u32, conversations: u32, wait_ms: i64, transfers: i64, abandons: u32) -> f64 {
    let e = 1.0
        + f64::from(switches)
        + 0.75 * f64::from(conversations.saturating_sub(1))
        + 0.05 * (wait_ms as f64 / MINUTE as f64)
        + 0.5 * transfers as f64
        + f64::from(abandons);
    e.clamp(1.0, 7.0)
}

/// What the moments need of one record, borrowed.
struct Ev<'a> {
    /// Index into the world's distinct events.
    global: usize,
    time: i64,
    channel: Channel,
    kind: EventKind,
    direction: Direction,
    case: Option<&'a str>,
    /// Written by an agent (an outbound message without one is automated).
    agent: bool,
    sentiment: Option<f64>,
    text: Option<&'a str>,
    survey: Option<WireSurvey>,
    /// Own and replied-to conversation keys.
    keys: [Option<String>; 2],
    wait_ms: i64,
    transfers: i64,
}

fn non_empty(v: &Option<CompactString>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

macro_rules! common {
    ($r:expr, $global:expr, $channel:expr, $keys:expr, $wait:expr, $transfers:expr) => {
        Ev {
            global: $global,
            time: $r.event_time,
            channel: $channel,
            kind: $r.kind,
            direction: $r.direction,
            case: non_empty(&$r.case_id),
            agent: non_empty(&$r.agent_id).is_some(),
            sentiment: $r.sentiment,
            text: $r.text.as_deref(),
            survey: $r.survey,
            keys: $keys,
            wait_ms: $wait,
            transfers: $transfers,
        }
    };
}

impl<'a> Ev<'a> {
    fn of(e: &'a WireEvent, global: usize) -> Self {
        let k = |prefix: &str, v: &Option<CompactString>| non_empty(v).map(|v| format!("{prefix}{v}"));
        match e {
            WireEvent::Email(r) => {
                common!(r, global, Channel::Email, [k("email:", &r.message_id), k("email:", &r.in_reply_to)], 0, 0)
            }
            WireEvent::Chat(r) => {
                common!(r, global, Channel::Chat, [Some(format!("chat:{}", r.session_id)), None], 0, 0)
            }
            WireEvent::Phone(r) => common!(
                r,
                global,
                Channel::Phone,
                [Some(format!("call:{}", r.call_id)), None],
                r.queue_wait_ms.unwrap_or(0),
                i64::from(r.transfers.unwrap_or(0))
            ),
            WireEvent::Social(r) => {
                let prefix = format!("social:{}:", r.platform.trim().to_ascii_lowercase());
                common!(r, global, Channel::Social, [k(&prefix, &r.post_id), k(&prefix, &r.in_reply_to_post)], 0, 0)
            }
        }
    }

    fn is_contact(&self) -> bool {
        self.direction == Direction::Inbound && self.kind.is_contact()
    }

    /// As the contract's `Event::answers_customer`: an automated message (no agent) answers
    /// nobody.
    fn is_response(&self) -> bool {
        (self.kind == EventKind::CallAnswered && self.direction != Direction::Internal)
            || (self.direction == Direction::Outbound
                && self.agent
                && matches!(self.kind, EventKind::Message | EventKind::SocialReply | EventKind::SocialDm))
    }

    fn is_support(&self) -> bool {
        self.is_response() || self.kind == EventKind::CallEnded
    }

    /// The first-response SLA this inbound event starts, if it waits for an answer.
    fn sla_ms(&self) -> Option<i64> {
        let waits = self.direction == Direction::Inbound
            && matches!(
                self.kind,
                EventKind::Message | EventKind::SocialPost | EventKind::SocialDm | EventKind::ChatStarted
            );
        if !waits {
            return None;
        }
        Some(match self.channel {
            Channel::Chat => SLA_CHAT_MS,
            Channel::Email => SLA_EMAIL_MS,
            Channel::Social => SLA_SOCIAL_MS,
            // No phone kind waits; a call is answered or abandoned.
            Channel::Phone => return None,
        })
    }

    fn is_abandon(&self) -> bool {
        matches!(self.kind, EventKind::CallAbandoned | EventKind::ChatAbandoned)
    }

    /// The producer's sentiment, else what the text was written as: −1 angry, 0 otherwise.
    fn sentiment(&self) -> Option<f64> {
        self.sentiment
            .filter(|v| v.is_finite())
            .map(|v| v.clamp(-1.0, 1.0))
            .or_else(|| self.text.map(|t| if written_negative(t) { -1.0 } else { 0.0 }))
    }
}

/// A conversation of the person, as known so far.
struct Conv {
    channel: Channel,
    /// Local index of its first inbound contact.
    started: Option<usize>,
    /// Its case key: `case:<id>` once a record of it carried the case id, else its own thread.
    case_key: String,
    /// Largest queue wait and transfer count on its records.
    wait_ms: i64,
    transfers: i64,
}

/// What is known of one case key.
#[derive(Default)]
struct CaseState {
    contacted: bool,
    resolved: bool,
    /// Local index of its latest inbound contact.
    last_contact: Option<usize>,
    surveyed: bool,
    effort_reached: bool,
    abandons: u32,
    /// An inbound event waits for a response (its timer may have fired): no second wait.
    awaiting: bool,
    /// Local index of the inbound event whose first-response timer is pending.
    sla: Option<usize>,
}

impl CaseState {
    fn is_open(&self) -> bool {
        self.contacted && !self.resolved
    }
}

/// A pending absence timer.
struct Timer {
    due: i64,
    moment: &'static str,
    /// Local index of the key event.
    key: usize,
    case_key: String,
}

/// A wait an event settled before its timer was due: local indexes.
struct Settled {
    moment: &'static str,
    /// The event that started the wait (the timer's key event).
    key: usize,
    /// The event that settled it.
    by: usize,
    /// When the timer was due.
    due: i64,
    case_key: String,
}

/// A moment before it is written down: local indexes.
struct Found {
    moment: &'static str,
    key: usize,
    detected_at: i64,
    case_key: String,
    evidence: Vec<usize>,
}

/// The contract applied to one person's events (`evs`, event-time order), with the person as
/// the profile: a reference detector with perfect identity.
struct Walk<'a, 'e> {
    evs: &'e [Ev<'a>],
    convs: Vec<Conv>,
    by_key: HashMap<&'e str, usize>,
    cases: HashMap<String, CaseState>,
    /// Conversation starts since the latest resolution.
    starts: Vec<usize>,
    last_support: Option<usize>,
    timers: Vec<Timer>,
    /// (moment, case key) -> latest detection kept.
    cooldowns: HashMap<(&'static str, String), i64>,
    /// Timers due after this (the tenant's latest event time) never fire.
    end_ms: i64,
    out: Vec<Found>,
    /// Waits settled before they were due.
    settled: Vec<Settled>,
    /// (predicted effort of the case, CES answer) at each CES answer.
    ces: Vec<(f64, i32)>,
}

fn case_id_of(case_key: &str) -> Option<&str> {
    case_key.strip_prefix("case:")
}

impl<'a, 'e> Walk<'a, 'e> {
    fn new(evs: &'e [Ev<'a>], end_ms: i64) -> Self {
        Walk {
            evs,
            convs: Vec::new(),
            by_key: HashMap::new(),
            cases: HashMap::new(),
            starts: Vec::new(),
            last_support: None,
            timers: Vec::new(),
            cooldowns: HashMap::new(),
            end_ms,
            out: Vec::new(),
            settled: Vec::new(),
            ces: Vec::new(),
        }
    }

    fn run(mut self) -> Self {
        for k in 0..self.evs.len() {
            self.step(k);
        }
        self.fire_due(self.end_ms.saturating_add(1));
        self
    }

    fn case(&mut self, key: &str) -> &mut CaseState {
        if !self.cases.contains_key(key) {
            self.cases.insert(key.to_string(), CaseState::default());
        }
        self.cases.get_mut(key).expect("just inserted")
    }

    /// Keeps a moment unless the cool-down of its (moment, case key) drops it.
    fn emit(&mut self, moment: &'static str, key: usize, detected_at: i64, case_key: &str, evidence: Vec<usize>) {
        let slot = (moment, case_key.to_string());
        if let Some(&last) = self.cooldowns.get(&slot) {
            if detected_at.abs_diff(last) < COOLDOWN_MS.unsigned_abs() {
                return;
            }
        }
        let kept = self.cooldowns.entry(slot).or_insert(detected_at);
        *kept = (*kept).max(detected_at);
        self.out.push(Found { moment, key, detected_at, case_key: case_key.to_string(), evidence });
    }

    /// Event `by` settles the pending timers `which` picks: they are dropped, and noted.
    fn settle(&mut self, by: usize, which: impl Fn(&Timer) -> bool) {
        let (settled, pending): (Vec<Timer>, Vec<Timer>) =
            std::mem::take(&mut self.timers).into_iter().partition(which);
        self.timers = pending;
        self.settled.extend(settled.into_iter().map(|t| Settled {
            moment: t.moment,
            key: t.key,
            by,
            due: t.due,
            case_key: t.case_key,
        }));
    }

    /// Fires the timers due before `before`, in (due, moment, key event) order.
    fn fire_due(&mut self, before: i64) {
        loop {
            let next = (0..self.timers.len()).filter(|&i| self.timers[i].due < before).min_by_key(|&i| {
                let t = &self.timers[i];
                (t.due, MOMENT_TYPES.iter().position(|m| *m == t.moment), t.key)
            });
            let Some(i) = next else { break };
            let t = self.timers.swap_remove(i);
            if t.moment == FIRST_RESPONSE_SLA_BREACH {
                let case = self.case(&t.case_key);
                if case.sla == Some(t.key) {
                    case.sla = None;
                }
            }
            self.emit(t.moment, t.key, t.due, &t.case_key, vec![t.key]);
        }
    }

    /// Case `from`'s wait, if it waits, becomes case `into`'s: of two pending first-response
    /// timers, the earlier inbound event's stays.
    fn move_wait(&mut self, from: &str, into: &str) {
        let Some(old) = self.cases.get_mut(from).filter(|c| c.awaiting) else { return };
        old.awaiting = false;
        let sla = old.sla.take();
        let target = self.case(into);
        let (keep, drop) = match (sla, target.sla) {
            (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
            (a, b) => (a.or(b), None),
        };
        target.sla = keep;
        target.awaiting = true;
        if let Some(d) = drop {
            self.timers.retain(|t| !(t.moment == FIRST_RESPONSE_SLA_BREACH && t.key == d));
        }
        for t in &mut self.timers {
            if t.moment == FIRST_RESPONSE_SLA_BREACH && Some(t.key) == keep {
                t.case_key = into.to_string();
            }
        }
    }

    /// The conversation of event `k`: the one of its own or replied-to key, or a new one if it
    /// is a contact.
    fn conversation(&mut self, k: usize) -> Option<usize> {
        let evs = self.evs;
        let e = &evs[k];
        let known = e.keys.iter().flatten().find_map(|key| self.by_key.get(key.as_str()).copied());
        let c = match known {
            Some(c) => c,
            None if e.kind.is_contact() && e.keys.iter().any(Option::is_some) => {
                let c = self.convs.len();
                self.convs.push(Conv {
                    channel: e.channel,
                    started: None,
                    case_key: format!("conversation:{c}"),
                    wait_ms: 0,
                    transfers: 0,
                });
                c
            }
            None => return None,
        };
        for key in e.keys.iter().flatten() {
            self.by_key.entry(key.as_str()).or_insert(c);
        }
        Some(c)
    }

    /// Conversation `c` shows up with case key `into`: a conversation threaded on its own joins
    /// the case with its state, timers and cool-downs (as the engine re-threads it); one of
    /// another case moves alone, taking that case's wait along when it leaves it without
    /// conversations (its ticket was merged).
    fn absorb(&mut self, c: usize, into: &str) {
        let from = std::mem::replace(&mut self.convs[c].case_key, into.to_string());
        if case_id_of(&from).is_some() {
            if !self.convs.iter().any(|conv| conv.case_key == from) {
                self.move_wait(&from, into);
            }
            return;
        }
        for conv in &mut self.convs {
            if conv.case_key == from {
                conv.case_key = into.to_string();
            }
        }
        let Some(old) = self.cases.remove(&from) else { return };
        let target = self.case(into);
        // Of two pending first-response timers, the earlier inbound event's stays.
        let (keep, drop) = match (old.sla, target.sla) {
            (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
            (a, b) => (a.or(b), None),
        };
        target.contacted |= old.contacted;
        target.resolved |= old.resolved;
        target.last_contact = target.last_contact.max(old.last_contact);
        target.surveyed |= old.surveyed;
        target.effort_reached |= old.effort_reached;
        target.awaiting |= old.awaiting;
        target.abandons += old.abandons;
        target.sla = keep;
        if let Some(d) = drop {
            self.timers.retain(|t| !(t.moment == FIRST_RESPONSE_SLA_BREACH && t.key == d));
        }
        for t in &mut self.timers {
            if t.case_key == from {
                t.case_key = into.to_string();
            }
        }
        let moved: Vec<(&'static str, i64)> =
            self.cooldowns.iter().filter(|((_, k), _)| *k == from).map(|((m, _), t)| (*m, *t)).collect();
        for (m, t) in moved {
            self.cooldowns.remove(&(m, from.clone()));
            let slot = self.cooldowns.entry((m, into.to_string())).or_insert(t);
            *slot = (*slot).max(t);
        }
    }

    /// The contract's predicted effort of case key `key`.
    fn effort(&self, key: &str) -> f64 {
        let mine = || self.convs.iter().filter(|c| c.case_key == key);
        let mut started: Vec<(usize, Channel)> = mine().filter_map(|c| c.started.map(|s| (s, c.channel))).collect();
        started.sort_unstable();
        let switches = started.windows(2).filter(|w| w[0].1 != w[1].1).count() as u32;
        let wait_ms = mine().map(|c| c.wait_ms).sum();
        let transfers = mine().map(|c| c.transfers).sum();
        let abandons = self.cases.get(key).map_or(0, |c| c.abandons);
        predicted_effort(switches, started.len() as u32, wait_ms, transfers, abandons)
    }

    fn step(&mut self, k: usize) {
        let evs = self.evs;
        let e = &evs[k];
        let t = e.time;
        self.fire_due(t);

        // Conversation and case key.
        let conv = self.conversation(k);
        let key = match (e.case, conv) {
            (Some(case), _) => format!("case:{case}"),
            (None, Some(c)) => self.convs[c].case_key.clone(),
            (None, None) => format!("event:{k}"),
        };
        if let Some(c) = conv {
            if self.convs[c].case_key != key {
                self.absorb(c, &key);
            }
        }
        self.case(&key);
        let inbound = e.direction == Direction::Inbound;
        let new_conversation = e.is_contact() && conv.is_some_and(|c| self.convs[c].started.is_none());

        // 1. Timers the event settles.
        if e.is_response() {
            let case = self.case(&key);
            case.awaiting = false;
            if let Some(run) = case.sla.take() {
                self.settle(k, |t| t.moment == FIRST_RESPONSE_SLA_BREACH && t.key == run);
            }
        }
        if e.is_response() || e.kind == EventKind::ChatEnded {
            self.settle(k, |t| t.moment == ABANDONED_CONTACT);
        }

        // 2. Moments of the event, against the state before it.
        if new_conversation {
            self.channel_hop(k, &key);
            self.starts.push(k);
            let counted: Vec<usize> =
                self.starts.iter().copied().filter(|&s| t - evs[s].time <= REPEAT_WINDOW_MS).collect();
            if counted.len() == REPEAT_COUNT {
                self.emit(REPEAT_CONTACT, k, t, &key, counted);
            }
        }
        if inbound && e.sentiment().is_some_and(|s| s <= NEGATIVE_THRESHOLD) {
            if let Some(s) = self.last_support.filter(|&s| t - evs[s].time <= NEGATIVE_WINDOW_MS) {
                self.emit(NEGATIVE_SENTIMENT_AFTER_CONTACT, k, t, &key, vec![s, k]);
            }
        }

        // 3. State.
        if let Some(c) = conv {
            let cv = &mut self.convs[c];
            if e.is_contact() && cv.started.is_none() {
                cv.started = Some(k);
            }
            cv.wait_ms = cv.wait_ms.max(e.wait_ms);
            cv.transfers = cv.transfers.max(e.transfers);
        }
        let case = self.case(&key);
        if e.is_contact() {
            case.contacted = true;
            case.last_contact = Some(k);
        }
        if e.kind == EventKind::CaseResolved {
            case.resolved = true;
            self.starts.clear();
        }
        if e.is_abandon() {
            self.case(&key).abandons += 1;
        }
        if e.is_support() {
            self.last_support = Some(k);
        }

        // 4. Timers the event sets.
        if let Some(sla) = e.sla_ms() {
            let case = self.case(&key);
            if !case.awaiting {
                case.awaiting = true;
                case.sla = Some(k);
                self.timers.push(Timer {
                    due: t + sla,
                    moment: FIRST_RESPONSE_SLA_BREACH,
                    key: k,
                    case_key: key.clone(),
                });
            }
        }
        if e.is_abandon() {
            self.timers.push(Timer {
                due: t + ABANDON_WINDOW_MS,
                moment: ABANDONED_CONTACT,
                key: k,
                case_key: key.clone(),
            });
        }

        // 5. Surveys.
        if let (EventKind::SurveyResponse, Some(s)) = (e.kind, e.survey) {
            let csat = s.csat.filter(|v| (1..=5).contains(v));
            let nps = s.nps.filter(|v| (0..=10).contains(v));
            let ces = s.ces.filter(|v| (1..=7).contains(v));
            if csat.is_some_and(|v| v <= 2) || nps.is_some_and(|v| v <= 6) || ces.is_some_and(|v| v >= 5) {
                self.emit(DETRACTOR_SURVEY, k, t, &key, vec![k]);
            }
            if let Some(v) = ces {
                let effort = self.effort(&key);
                self.ces.push((effort, v));
            }
            if csat.is_some() || nps.is_some() || ces.is_some() {
                self.case(&key).surveyed = true;
            }
        }

        // 6. Effort.
        let case = &self.cases[&key];
        if !case.surveyed && !case.effort_reached && self.effort(&key) >= EFFORT_THRESHOLD {
            self.case(&key).effort_reached = true;
            let mut evidence: Vec<usize> =
                self.convs.iter().filter(|c| c.case_key == key).filter_map(|c| c.started).collect();
            evidence.push(k);
            self.emit(HIGH_EFFORT_JOURNEY, k, t, &key, evidence);
        }
    }

    /// A new conversation starts at contact `k` with case key `key`: a hop if the case it is
    /// for is open and was last contacted on another channel within the window. The case is the
    /// event's own when it names one, else the open case contacted last.
    fn channel_hop(&mut self, k: usize, key: &str) {
        let evs = self.evs;
        let e = &evs[k];
        let found = if e.case.is_some() {
            self.cases.get(key).filter(|c| c.is_open()).and_then(|c| c.last_contact).map(|p| (key.to_string(), p))
        } else {
            self.cases
                .iter()
                .filter(|(_, c)| c.is_open())
                .filter_map(|(name, c)| c.last_contact.map(|p| (p, name)))
                .max()
                .map(|(p, name)| (name.clone(), p))
        };
        let Some((case, p)) = found else { return };
        let gap = e.time - evs[p].time;
        if evs[p].channel != e.channel && (0..=HOP_WINDOW_MS).contains(&gap) {
            self.emit(CHANNEL_HOP, k, e.time, &case, vec![p, k]);
        }
    }
}

/// Each person's events, in event-time order, as indexes into `truth`; persons in order of
/// their first event.
fn by_person(truth: &[TruthRecord]) -> Vec<Vec<usize>> {
    let mut slot: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, t) in truth.iter().enumerate() {
        let s = *slot.entry(t.person.as_str()).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[s].push(i);
    }
    out
}

/// Walks every person of the world's distinct `events` (event-time order; `truth` alike).
fn walks<'a>(events: &'a [WireEvent], truth: &[TruthRecord], mut each: impl FnMut(&[Ev<'a>], Walk<'a, '_>)) {
    let mut end: HashMap<&str, i64> = HashMap::new();
    for (e, t) in events.iter().zip(truth) {
        let slot = end.entry(t.tenant.as_str()).or_insert(i64::MIN);
        *slot = (*slot).max(fields::event_time(e));
    }
    for indexes in by_person(truth) {
        let evs: Vec<Ev<'a>> = indexes.iter().map(|&i| Ev::of(&events[i], i)).collect();
        let end_ms = end[truth[indexes[0]].tenant.as_str()];
        let walk = Walk::new(&evs, end_ms).run();
        each(&evs, walk);
    }
}

/// The moments of the world's distinct `events` (event-time order) whose truth is `truth`
/// (the same order) and whose identifiers link as `links` says, sorted by detection time.
pub(crate) fn derive(events: &[WireEvent], truth: &[TruthRecord], links: &Links) -> Vec<MomentTruth> {
    let mut out = Vec::new();
    walks(events, truth, |evs, walk| {
        for f in walk.out {
            let key = &truth[evs[f.key].global];
            let linkable = f.evidence.iter().all(|&i| truth[evs[i].global].linkable == key.linkable);
            let global = evs[f.key].global;
            let seen_by = f.detected_at.saturating_add(ALLOWED_LATENESS_MS);
            let in_time = f.evidence.iter().all(|&i| links.linked_by(evs[i].global, global, seen_by));
            out.push(MomentTruth {
                tenant: key.tenant.clone(),
                person: key.person.clone(),
                moment_type: f.moment.to_string(),
                case_id: case_id_of(&f.case_key).map(str::to_string),
                key_event_id: key.event_id.clone(),
                detected_at_ms: f.detected_at,
                linkable,
                linkable_in_time: linkable && in_time,
                evidence: f.evidence.iter().map(|&i| truth[evs[i].global].event_id.clone()).collect(),
                happened: true,
            });
        }
        // Waits settled by an event the key event's profile could not hold yet when the timer
        // fell due (plus the lateness the detector waits), nor reach otherwise: the contract
        // settles a wait across profiles by the case id the response names and by the message
        // it replies to, so those settle it in time whatever the identifiers.
        for w in walk.settled {
            let (key, by) = (&truth[evs[w.key].global], &truth[evs[w.by].global]);
            let seen_by = w.due.saturating_add(ALLOWED_LATENESS_MS);
            if links.linked_by(evs[w.by].global, evs[w.key].global, seen_by) {
                continue;
            }
            let (waiting, response) = (&evs[w.key], &evs[w.by]);
            let same_case = response.case.is_some() && response.case == case_id_of(&w.case_key);
            let replies_to_it = response.keys[1].is_some() && response.keys[1] == waiting.keys[0];
            if w.moment == FIRST_RESPONSE_SLA_BREACH && response.time <= w.due && (same_case || replies_to_it) {
                continue;
            }
            out.push(MomentTruth {
                tenant: key.tenant.clone(),
                person: key.person.clone(),
                moment_type: w.moment.to_string(),
                case_id: case_id_of(&w.case_key).map(str::to_string),
                key_event_id: key.event_id.clone(),
                detected_at_ms: w.due,
                linkable: by.linkable == key.linkable,
                linkable_in_time: false,
                evidence: vec![key.event_id.clone(), by.event_id.clone()],
                happened: false,
            });
        }
    });
    out.sort_by(|a, b| {
        (a.detected_at_ms, &a.key_event_id, &a.moment_type).cmp(&(b.detected_at_ms, &b.key_event_id, &b.moment_type))
    });
    out
}

/// Every CES answer of the world with the contract's predicted effort of its case at that
/// time: what a detector's effort predictor is calibrated against.
#[cfg(test)]
pub(crate) fn ces_answers(events: &[WireEvent], truth: &[TruthRecord]) -> Vec<(f64, i32)> {
    let mut out = Vec::new();
    walks(events, truth, |_, walk| out.extend(walk.ces));
    out
}

#[cfg(test)]
mod tests {
    use omnistitch_model::wire::{ChatEvent, EmailEvent, PhoneEvent, SocialEvent};

    use super::*;

    /// One event of the test person, in minutes from the start.
    #[derive(Clone)]
    struct E {
        channel: Channel,
        conv: String,
        parent: Option<String>,
        kind: EventKind,
        direction: Direction,
        minute: f64,
        case: Option<&'static str>,
        sentiment: Option<f64>,
        text: Option<&'static str>,
        survey: Option<WireSurvey>,
        wait_minutes: Option<f64>,
        transfers: Option<i32>,
        automated: bool,
    }

    fn e(channel: Channel, conv: &str, kind: EventKind, direction: Direction, minute: f64) -> E {
        E {
            channel,
            conv: conv.to_string(),
            parent: None,
            kind,
            direction,
            minute,
            case: None,
            sentiment: None,
            text: None,
            survey: None,
            wait_minutes: None,
            transfers: None,
            automated: false,
        }
    }

    impl E {
        fn case(mut self, c: &'static str) -> Self {
            self.case = Some(c);
            self
        }
        fn sentiment(mut self, s: f64) -> Self {
            self.sentiment = Some(s);
            self
        }
        fn text(mut self, t: &'static str) -> Self {
            self.text = Some(t);
            self
        }
        fn reply_to(mut self, p: &str) -> Self {
            self.parent = Some(p.to_string());
            self
        }
        fn survey(mut self, csat: Option<i32>, nps: Option<i32>, ces: Option<i32>) -> Self {
            self.survey = Some(WireSurvey { csat, nps, ces });
            self
        }
        fn wait(mut self, minutes: f64) -> Self {
            self.wait_minutes = Some(minutes);
            self
        }
        fn transfers(mut self, n: i32) -> Self {
            self.transfers = Some(n);
            self
        }
        fn automated(mut self) -> Self {
            self.automated = true;
            self
        }

        fn wire(&self, id: String) -> WireEvent {
            let (tenant, event_time, direction, kind) = (
                CompactString::from("acme"),
                1_767_571_200_000 + (self.minute * 60_000.0) as i64,
                self.direction,
                self.kind,
            );
            let (case_id, text, sentiment, survey) =
                (self.case.map(CompactString::from), self.text.map(CompactString::from), self.sentiment, self.survey);
            // Agents write what goes out, unless the test says it is automated.
            let agent_id =
                (direction == Direction::Outbound && !self.automated).then(|| CompactString::from("agent-1"));
            macro_rules! rec {
                ($ty:ident { $($f:ident : $v:expr),* }) => {
                    $ty {
                        tenant, event_id: id.into(), event_time, direction, kind, case_id, agent_id,
                        account_id: None, text, sentiment, survey, $($f: $v),*
                    }
                };
            }
            match self.channel {
                Channel::Email => WireEvent::Email(rec!(EmailEvent {
                    from: "jo@mail.example".into(),
                    to: vec![],
                    cc: vec![],
                    subject: None,
                    message_id: Some(self.conv.as_str().into()),
                    in_reply_to: self.parent.as_deref().map(CompactString::from)
                })),
                Channel::Chat => WireEvent::Chat(rec!(ChatEvent {
                    session_id: self.conv.as_str().into(),
                    visitor_id: None,
                    customer_email: None,
                    customer_phone: None
                })),
                Channel::Phone => WireEvent::Phone(rec!(PhoneEvent {
                    call_id: self.conv.as_str().into(),
                    caller: "+14155550100".into(),
                    callee: "+18005550100".into(),
                    queue_wait_ms: self.wait_minutes.map(|m| (m * 60_000.0) as i64),
                    duration_ms: None,
                    transfers: self.transfers,
                    customer_line_type: None
                })),
                Channel::Social => WireEvent::Social(rec!(SocialEvent {
                    platform: "x".into(),
                    handle: "jo".into(),
                    post_id: Some(self.conv.as_str().into()),
                    in_reply_to_post: self.parent.as_deref().map(CompactString::from)
                })),
            }
        }
    }

    use Channel::{Chat, Email, Phone, Social};
    use Direction::{Inbound, Internal, Outbound};
    use EventKind as K;

    /// The moments of one person's events (listed in time order); `(type, key index, minute)`.
    fn moments(list: &[E]) -> Vec<(String, usize, f64, Option<String>)> {
        let events: Vec<WireEvent> = list.iter().enumerate().map(|(i, x)| x.wire(format!("ev-{i:04}"))).collect();
        let truth: Vec<TruthRecord> = (0..list.len())
            .map(|i| TruthRecord {
                event_id: format!("ev-{i:04}"),
                tenant: "acme".into(),
                person: "acme/p1".into(),
                linkable: "ev-0000".into(),
            })
            .collect();
        let links = crate::truth::links(&events, &vec!["acme/p1"; events.len()], &Default::default());
        derive(&events, &truth, &links)
            .into_iter()
            .filter(|m| m.happened)
            .map(|m| {
                let key = m.key_event_id[3..].parse().unwrap();
                (m.moment_type, key, (m.detected_at_ms - 1_767_571_200_000) as f64 / 60_000.0, m.case_id)
            })
            .collect()
    }

    fn only(list: &[E], moment: &str) -> Vec<(usize, f64)> {
        moments(list).into_iter().filter(|m| m.0 == moment).map(|m| (m.1, m.2)).collect()
    }

    /// A record of nobody's conversation at `minute`: it moves the end of input.
    fn later(minute: f64) -> E {
        e(Email, "", K::CaseOpened, Internal, minute)
    }

    /// A chat answered at once, linked to `case` by the agent, ending at minute `at + 3`.
    fn chat(id: &str, at: f64, case: &'static str) -> Vec<E> {
        vec![
            e(Chat, id, K::ChatStarted, Inbound, at),
            e(Chat, id, K::Message, Outbound, at + 1.0).case(case),
            e(Chat, id, K::Message, Inbound, at + 2.0).case(case),
            e(Chat, id, K::Message, Outbound, at + 2.5).case(case),
            e(Chat, id, K::ChatEnded, Internal, at + 3.0).case(case),
        ]
    }

    /// An answered inbound call at `at`; `ivr` says whether its first record carries the case.
    fn call(id: &str, at: f64, case: &'static str, ivr: bool) -> Vec<E> {
        let mut start = e(Phone, id, K::CallStarted, Inbound, at);
        if ivr {
            start = start.case(case);
        }
        vec![
            start,
            e(Phone, id, K::CallAnswered, Inbound, at + 0.5).case(case),
            e(Phone, id, K::CallEnded, Inbound, at + 5.0).case(case),
        ]
    }

    #[test]
    fn a_channel_hop_needs_an_open_case_another_channel_and_the_window() {
        // Chat's last inbound contact at minute 2; the call quoting the case at 62 (60 min later).
        let hop = [chat("s1", 0.0, "C1"), call("c1", 62.0, "C1", true)].concat();
        assert_eq!(only(&hop, CHANNEL_HOP), vec![(5, 62.0)]);
        let late = [chat("s1", 0.0, "C1"), call("c1", 62.5, "C1", true)].concat();
        assert!(only(&late, CHANNEL_HOP).is_empty());
        let same_channel = [chat("s1", 0.0, "C1"), chat("s2", 20.0, "C1")].concat();
        // The second chat only joins the case when the agent links it: no hop either way.
        assert!(only(&same_channel, CHANNEL_HOP).is_empty());
        // A call not naming its case at the start is taken for the open case contacted last.
        let unknown = [chat("s1", 0.0, "C1"), call("c1", 20.0, "C1", false)].concat();
        assert_eq!(moments(&unknown).iter().filter(|m| m.0 == CHANNEL_HOP).count(), 1);
        assert!(moments(&unknown).iter().any(|m| m.0 == CHANNEL_HOP && m.3.as_deref() == Some("C1")));
        let mut resolved = chat("s1", 0.0, "C1");
        resolved.push(e(Email, "r", K::CaseResolved, Internal, 10.0).case("C1"));
        resolved.extend(call("c1", 20.0, "C1", true));
        assert!(only(&resolved, CHANNEL_HOP).is_empty());
        let other_case = [chat("s1", 0.0, "C1"), call("c1", 20.0, "C2", true)].concat();
        assert!(only(&other_case, CHANNEL_HOP).is_empty());
    }

    #[test]
    fn the_third_conversation_within_a_week_without_resolution_repeats() {
        let day = 1_440.0;
        let three = [chat("s1", 0.0, "C1"), chat("s2", 3.0 * day, "C1"), call("c1", 7.0 * day, "C2", false)].concat();
        assert_eq!(only(&three, REPEAT_CONTACT), vec![(10, 7.0 * day)]);
        // A fourth in the window is not the third: no second moment...
        let close = [chat("s1", 0.0, "C1"), chat("s2", day, "C1"), call("c1", 2.0 * day, "C2", false)].concat();
        let four = [close.clone(), call("c2", 2.0 * day + 60.0, "C2", false)].concat();
        assert_eq!(only(&four, REPEAT_CONTACT), vec![(10, 2.0 * day)]);
        // ...unless the first has left the window: then it is the third within seven days again.
        let slid = [three.clone(), call("c2", 7.0 * day + 60.0, "C2", false)].concat();
        assert_eq!(only(&slid, REPEAT_CONTACT).len(), 2);
        let spread =
            [chat("s1", 0.0, "C1"), chat("s2", 3.0 * day, "C1"), call("c1", 7.0 * day + 1.0, "C2", false)].concat();
        assert!(only(&spread, REPEAT_CONTACT).is_empty());
        let mut reset = [chat("s1", 0.0, "C1"), chat("s2", 1.0 * day, "C1")].concat();
        reset.push(e(Email, "r", K::CaseResolved, Internal, 1.5 * day).case("C9"));
        reset.extend(call("c1", 2.0 * day, "C2", false));
        assert!(only(&reset, REPEAT_CONTACT).is_empty());
        // Key: the third conversation's first inbound event; its case key is the case it quotes.
        let m = moments(&[chat("s1", 0.0, "C1"), chat("s2", 60.0, "C1"), call("c1", 120.0, "C1", true)].concat());
        assert!(m.iter().any(|m| m.0 == REPEAT_CONTACT && m.1 == 10 && m.3.as_deref() == Some("C1")), "{m:?}");
    }

    #[test]
    fn sla_breaches_fire_at_the_due_time_of_the_first_unanswered_inbound() {
        let chat_at = |answer_s: f64| {
            vec![
                e(Chat, "s", K::ChatStarted, Inbound, 0.0),
                e(Chat, "s", K::Message, Inbound, 0.5),
                e(Chat, "s", K::Message, Outbound, answer_s / 60.0).case("C1"),
            ]
        };
        assert!(only(&chat_at(119.0), FIRST_RESPONSE_SLA_BREACH).is_empty());
        assert_eq!(only(&chat_at(121.0), FIRST_RESPONSE_SLA_BREACH), vec![(0, 2.0)]);
        // Email: answered at exactly 4 h is in time; the reply chain is one conversation.
        let email = |answer_min: f64| {
            vec![
                e(Email, "m1", K::Message, Inbound, 0.0),
                e(Email, "m2", K::Message, Outbound, answer_min).reply_to("m1").case("C1"),
            ]
        };
        assert!(only(&email(240.0), FIRST_RESPONSE_SLA_BREACH).is_empty());
        assert_eq!(only(&email(241.0), FIRST_RESPONSE_SLA_BREACH), vec![(0, 240.0)]);
        // An auto-acknowledgement (no agent) a second later answers nobody.
        let acked = vec![
            e(Email, "m1", K::Message, Inbound, 0.0),
            e(Email, "ack", K::Message, Outbound, 0.02).reply_to("m1").automated(),
            e(Email, "m2", K::Message, Outbound, 300.0).reply_to("m1").case("C1"),
        ];
        assert_eq!(only(&acked, FIRST_RESPONSE_SLA_BREACH), vec![(0, 240.0)]);
        // A ticket merge: m1's conversation moves from case C1 to C2, leaving C1 without
        // conversations; its wait goes along, and a reply in C2 answers it.
        let merged = vec![
            e(Email, "m1", K::Message, Inbound, 0.0).case("C1"),
            e(Email, "n1", K::CaseOpened, Internal, 10.0).reply_to("m1").case("C2"),
            e(Email, "r1", K::Message, Outbound, 60.0).case("C2"),
            later(600.0),
        ];
        assert!(only(&merged, FIRST_RESPONSE_SLA_BREACH).is_empty());
        // An answer elsewhere in the case counts: the mail quotes the case the call is about.
        let elsewhere = [
            vec![e(Email, "m1", K::Message, Inbound, 0.0).case("C1")],
            call("c1", 30.0, "C1", true),
            vec![e(Email, "m2", K::Message, Outbound, 300.0).reply_to("m1").case("C1")],
        ]
        .concat();
        assert!(only(&elsewhere, FIRST_RESPONSE_SLA_BREACH).is_empty());
        // Never answered: a second post in the thread while waiting does not start another wait.
        let post = [
            e(Social, "p1", K::SocialPost, Inbound, 0.0),
            e(Social, "p2", K::SocialPost, Inbound, 60.0).reply_to("p1"),
            later(240.0),
        ];
        assert_eq!(only(&post, FIRST_RESPONSE_SLA_BREACH), vec![(0, 240.0)]);
        // A timer due after the tenant's last event never fires (the input ended first).
        assert!(only(&post[..2], FIRST_RESPONSE_SLA_BREACH).is_empty());
    }

    #[test]
    fn negative_sentiment_counts_within_two_days_of_support() {
        let after = |gap_h: f64, last: E| {
            [call("c1", 0.0, "C1", false), vec![last.clone()]]
                .concat()
                .into_iter()
                .map(|mut x| {
                    if x.conv == "m9" {
                        x.minute = 5.0 + gap_h * 60.0;
                    }
                    x
                })
                .collect::<Vec<E>>()
        };
        let producer = e(Email, "m9", K::Message, Inbound, 0.0).sentiment(-0.6).text("Any update?");
        assert_eq!(
            only(&after(47.0, producer.clone()), NEGATIVE_SENTIMENT_AFTER_CONTACT),
            vec![(3, 5.0 + 47.0 * 60.0)]
        );
        assert!(only(&after(49.0, producer), NEGATIVE_SENTIMENT_AFTER_CONTACT).is_empty());
        // Written angry (one of the angry templates): negative without a producer's score.
        let lexicon =
            e(Email, "m9", K::Message, Inbound, 0.0).text("This is terrible, worst service ever, I am furious.");
        assert_eq!(only(&after(1.0, lexicon.clone()), NEGATIVE_SENTIMENT_AFTER_CONTACT).len(), 1);
        // The producer's score wins over the text.
        let milder = lexicon.clone().sentiment(-0.3);
        assert!(only(&after(1.0, milder), NEGATIVE_SENTIMENT_AFTER_CONTACT).is_empty());
        // Angry before any support: no moment.
        let before = [vec![lexicon.clone()], call("c1", 10.0, "C1", false)].concat();
        assert!(only(&before, NEGATIVE_SENTIMENT_AFTER_CONTACT).is_empty());
    }

    #[test]
    fn an_abandon_counts_unless_a_contact_succeeds_within_thirty_minutes() {
        let abandon = |retry: Option<f64>| {
            let mut v = vec![
                e(Phone, "c1", K::CallStarted, Inbound, 0.0),
                e(Phone, "c1", K::CallAbandoned, Inbound, 4.0).wait(4.0),
            ];
            if let Some(at) = retry {
                v.extend(call("c2", at - 0.5, "C1", false));
            }
            v.push(later(100.0));
            v
        };
        assert_eq!(only(&abandon(None), ABANDONED_CONTACT), vec![(1, 34.0)]);
        assert!(only(&abandon(Some(33.9)), ABANDONED_CONTACT).is_empty());
        assert_eq!(only(&abandon(Some(34.5)), ABANDONED_CONTACT), vec![(1, 34.0)]);
        let chat = vec![
            e(Chat, "s1", K::ChatStarted, Inbound, 0.0),
            e(Chat, "s1", K::ChatAbandoned, Inbound, 3.0),
            e(Chat, "s2", K::ChatStarted, Inbound, 10.0),
            e(Chat, "s2", K::ChatEnded, Internal, 20.0),
        ];
        assert!(only(&chat, ABANDONED_CONTACT).is_empty());
        // Two abandons of one case within the cool-down: one moment.
        let twice = vec![
            e(Phone, "c1", K::CallStarted, Inbound, 0.0).case("C1"),
            e(Phone, "c1", K::CallAbandoned, Inbound, 4.0).case("C1"),
            e(Phone, "c2", K::CallStarted, Inbound, 120.0).case("C1"),
            e(Phone, "c2", K::CallAbandoned, Inbound, 125.0).case("C1"),
            later(1_000.0),
        ];
        assert_eq!(only(&twice, ABANDONED_CONTACT), vec![(1, 34.0)]);
    }

    /// Every moment and settled wait of one person's `list` (truth built from its identifiers).
    fn rows(list: Vec<E>) -> Vec<MomentTruth> {
        let events: Vec<WireEvent> = list.iter().enumerate().map(|(i, x)| x.wire(format!("ev-{i:04}"))).collect();
        let persons = vec!["acme/p1"; events.len()];
        let links = crate::truth::links(&events, &persons, &Default::default());
        let truth = crate::truth::build(&events, &persons, &links);
        derive(&events, &truth, &links)
    }

    /// A wait answered where no identifier links, by a response naming its case or replying to
    /// its message: the contract settles it across profiles, so it is neither a moment nor a
    /// wait out of reach (which would excuse a detector firing there).
    #[test]
    fn a_wait_answered_by_its_case_or_its_message_is_settled_within_reach() {
        let mail = || e(Email, "m1", K::Message, Inbound, 0.0).case("C1");
        let by_case = vec![mail(), e(Chat, "s9", K::Message, Outbound, 30.0).case("C1"), later(600.0)];
        let by_reply = vec![mail(), e(Email, "m9", K::Message, Outbound, 30.0).reply_to("m1"), later(600.0)];
        for list in [by_case, by_reply] {
            let m = rows(list);
            assert!(m.iter().all(|m| m.moment_type != FIRST_RESPONSE_SLA_BREACH), "{m:?}");
        }
    }

    /// An abandoned call the person made up for in a chat that nothing links to the call: no
    /// moment, but a wait settled out of reach (a streaming detector sees an abandon); made up
    /// for by a call from the same number, nothing at all.
    #[test]
    fn an_abandon_settled_by_an_unlinked_contact_is_recorded_as_out_of_reach() {
        let abandoned = || {
            vec![e(Phone, "c1", K::CallStarted, Inbound, 0.0), e(Phone, "c1", K::CallAbandoned, Inbound, 4.0).wait(4.0)]
        };
        let by_chat = [
            abandoned(),
            vec![
                e(Chat, "s2", K::ChatStarted, Inbound, 10.0),
                e(Chat, "s2", K::ChatEnded, Internal, 20.0),
                later(100.0),
            ],
        ]
        .concat();
        let m = rows(by_chat);
        assert!(m.iter().all(|m| !(m.happened && m.moment_type == ABANDONED_CONTACT)), "{m:?}");
        let settled: Vec<&MomentTruth> = m.iter().filter(|m| !m.happened).collect();
        assert_eq!(settled.len(), 1, "{m:?}");
        assert_eq!((settled[0].moment_type.as_str(), settled[0].key_event_id.as_str()), (ABANDONED_CONTACT, "ev-0001"));
        assert_eq!(settled[0].evidence, ["ev-0001", "ev-0003"]);
        assert_eq!(settled[0].detected_at_ms, 1_767_571_200_000 + 34 * 60_000);
        assert!(!settled[0].linkable_in_time);
        let by_call = [abandoned(), call("c2", 10.0, "C1", false), vec![later(100.0)]].concat();
        assert!(rows(by_call).iter().all(|m| m.happened), "the same number links the calls in time");
    }

    #[test]
    fn detractors_are_low_csat_or_nps_or_high_ces() {
        let survey =
            |csat, nps, ces| vec![e(Email, "m1", K::SurveyResponse, Inbound, 0.0).case("C1").survey(csat, nps, ces)];
        assert_eq!(only(&survey(Some(2), None, None), DETRACTOR_SURVEY), vec![(0, 0.0)]);
        assert_eq!(only(&survey(None, Some(6), None), DETRACTOR_SURVEY).len(), 1);
        assert_eq!(only(&survey(None, None, Some(5)), DETRACTOR_SURVEY).len(), 1);
        assert!(only(&survey(Some(3), Some(7), Some(4)), DETRACTOR_SURVEY).is_empty());
        assert!(only(&survey(None, None, None), DETRACTOR_SURVEY).is_empty());
    }

    #[test]
    fn effort_crosses_the_threshold_at_the_event_that_adds_enough() {
        // chat (1) -> call quoting the case: +1 switch +0.75 conversation = 2.75; its 10-minute
        // wait +0.5 = 3.25; two transfers +1 = 4.25 -> an email quoting the case: +1 +0.75 = 6.
        let journey = |survey_first: bool| {
            let mut v = chat("s1", 0.0, "C1");
            v.push(e(Phone, "c1", K::CallStarted, Inbound, 600.0).case("C1"));
            v.push(e(Phone, "c1", K::CallAnswered, Inbound, 610.0).case("C1").wait(10.0));
            v.push(e(Phone, "c1", K::CallEnded, Inbound, 620.0).case("C1").transfers(2));
            if survey_first {
                v.push(e(Email, "m0", K::SurveyResponse, Inbound, 700.0).case("C1").survey(Some(4), None, None));
            }
            v.push(e(Email, "m1", K::Message, Inbound, 800.0).case("C1"));
            v
        };
        assert_eq!(only(&journey(false), HIGH_EFFORT_JOURNEY), vec![(8, 800.0)]);
        assert!(only(&journey(true), HIGH_EFFORT_JOURNEY).is_empty());
        assert_eq!(predicted_effort(2, 3, 10 * MINUTE, 2, 0), 6.0);
        assert_eq!(predicted_effort(9, 9, 0, 0, 9), 7.0);
        assert_eq!(predicted_effort(0, 0, 0, 0, 0), 1.0);
    }

    #[test]
    fn evidence_split_across_linkable_clusters_is_flagged() {
        let list = [chat("s1", 0.0, "C1"), call("c1", 20.0, "C1", true)].concat();
        let events: Vec<WireEvent> = list.iter().enumerate().map(|(i, x)| x.wire(format!("ev-{i:04}"))).collect();
        let truth: Vec<TruthRecord> = (0..list.len())
            .map(|i| TruthRecord {
                event_id: format!("ev-{i:04}"),
                tenant: "acme".into(),
                person: "acme/p1".into(),
                // The chat and the call are two clusters.
                linkable: if i < 5 { "ev-0000".into() } else { "ev-0005".into() },
            })
            .collect();
        let links = crate::truth::links(&events, &vec!["acme/p1"; events.len()], &Default::default());
        let m = derive(&events, &truth, &links);
        let hop = m.iter().find(|m| m.moment_type == CHANNEL_HOP).unwrap();
        assert!(!hop.linkable && !hop.linkable_in_time);
        assert_eq!(hop.case_id.as_deref(), Some("C1"));
    }

    /// A call that names its case only when it ends, minutes after it started: the hop happened
    /// at its start, but nothing linked the call to the chat until the case id came.
    #[test]
    fn evidence_linked_only_after_the_moment_is_not_linked_in_time() {
        let hop_at = |ended: f64| {
            let mut list = chat("s1", 0.0, "C1");
            list.push(e(Phone, "c1", K::CallStarted, Inbound, 20.0));
            list.push(e(Phone, "c1", K::CallAnswered, Inbound, 20.2));
            list.push(e(Phone, "c1", K::CallEnded, Inbound, ended).case("C1"));
            let events: Vec<WireEvent> = list.iter().enumerate().map(|(i, x)| x.wire(format!("ev-{i:04}"))).collect();
            let persons = vec!["acme/p1"; events.len()];
            let links = crate::truth::links(&events, &persons, &Default::default());
            let truth = crate::truth::build(&events, &persons, &links);
            let m = derive(&events, &truth, &links);
            m.into_iter().find(|m| m.moment_type == CHANNEL_HOP).expect("a hop")
        };
        // Within the allowed lateness of the start: the detector sees the call linked.
        let soon = hop_at(20.9);
        assert!(soon.linkable && soon.linkable_in_time);
        let late = hop_at(25.0);
        assert_eq!(late.key_event_id, "ev-0005");
        assert!(late.linkable && !late.linkable_in_time);
    }
}
