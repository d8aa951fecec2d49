//! What happens in a case, as data: conversations ([`Segment`]s) of timed [`Step`]s.
//!
//! The planner decides channels, timing, outcomes and tone; [`crate::render`] decides how each
//! step looks on the wire (which address, which spelling, which ids). Micro-moments are planted
//! here, as behaviour: slow first responses, customers who give up in the queue, channel hops
//! minutes after a contact, runarounds across channels, angry follow-ups, unhappy surveys. The
//! moments truth is not taken from these intentions: [`crate::moments`] derives it from the
//! rendered records, so accidental moments count and planted ones that miss do not.

use omnistitch_model::wire::WireSurvey;
use omnistitch_model::{Channel, Direction, EventKind};
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::moments::predicted_effort;
use crate::population::Person;
use crate::text::{Topic, TOPICS};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Share of cases that are a runaround: several contacts across channels, slow queues, transfers.
const RUNAROUND: f64 = 0.035;
/// Share of follow-ups that hop to another channel minutes after the previous contact.
const HOP: f64 = 0.10;
/// Share of chats an agent picks up only after the chat SLA (120 s).
const SLOW_CHAT: f64 = 0.04;
/// Share of email answers sent after the email SLA (4 h).
const SLOW_EMAIL: f64 = 0.04;
/// Share of social answers sent after the social SLA (4 h).
const SLOW_SOCIAL: f64 = 0.07;
/// Customer steps of a follow-up quote the case number this often.
const QUOTES_CASE: f64 = 0.6;
/// Callers about an open case key its number into the IVR this often.
const IVR_CASE: f64 = 0.5;

/// One case of one person, from first contact to survey.
#[derive(Debug, Clone)]
pub(crate) struct CaseJourney {
    pub(crate) topic: Topic,
    /// How the customer feels, -1..1; drives sentiment and survey scores.
    pub(crate) mood: f64,
    /// Conversations and case records, in the order they start.
    pub(crate) segments: Vec<Segment>,
}

/// The kind of conversation a segment is; it decides the channel and the ids shared by its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conversation {
    /// An email thread: the customer writes, the brand answers.
    EmailThread,
    /// A chat session.
    Chat,
    /// A call; `outbound` for a callback placed by the brand.
    Call {
        /// Placed by the brand.
        outbound: bool,
    },
    /// A public post or review and its replies, maybe moving to direct messages.
    Social,
    /// A ticketing-system record carrying only the case id.
    CaseRecord,
    /// A survey emailed after resolution and answered by the customer.
    EmailSurvey,
}

impl Conversation {
    /// The channel of a customer conversation (`None` for case records and survey mails).
    fn channel(self) -> Option<Channel> {
        match self {
            Conversation::EmailThread => Some(Channel::Email),
            Conversation::Chat => Some(Channel::Chat),
            Conversation::Call { .. } => Some(Channel::Phone),
            Conversation::Social => Some(Channel::Social),
            Conversation::CaseRecord | Conversation::EmailSurvey => None,
        }
    }
}

/// One conversation: its steps share a thread, session, call or post.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) conversation: Conversation,
    pub(crate) steps: Vec<Step>,
}

/// Figures of a call step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CallFigures {
    pub(crate) queue_wait_ms: Option<i64>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) transfers: Option<i32>,
}

/// One event-to-be.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) at_ms: i64,
    pub(crate) kind: EventKind,
    pub(crate) direction: Direction,
    /// An agent acts (and is named on the record).
    pub(crate) agent: bool,
    /// The record carries the case id.
    pub(crate) carries_case: bool,
    /// Which contact of the case this belongs to (0 = the first); follow-ups are worded so.
    pub(crate) contact: u8,
    pub(crate) call: CallFigures,
    pub(crate) survey: Option<WireSurvey>,
    /// The customer is angry here: the text (and the producer's score, if any) says so.
    pub(crate) negative: bool,
}

impl Step {
    fn new(at_ms: i64, kind: EventKind, direction: Direction, contact: u8) -> Self {
        Step {
            at_ms,
            kind,
            direction,
            agent: false,
            carries_case: false,
            contact,
            call: CallFigures::default(),
            survey: None,
            negative: false,
        }
    }

    fn by_agent(mut self) -> Self {
        self.agent = true;
        self
    }

    fn with_case(mut self, yes: bool) -> Self {
        self.carries_case = yes;
        self
    }

    /// An answer to the customer (the contract's *response*) or the end of a call: after it,
    /// the customer has had support.
    fn is_support(&self) -> bool {
        matches!(self.kind, EventKind::CallAnswered | EventKind::CallEnded)
            || (self.direction == Direction::Outbound
                && matches!(self.kind, EventKind::Message | EventKind::SocialReply | EventKind::SocialDm))
    }
}

/// Case state shared by the contacts of one case.
struct CaseState {
    /// When the case was opened (the first time an agent engaged).
    opened_at: Option<i64>,
    contact: u8,
    abandons: u8,
    /// Everything is harder in this case: slower queues, more transfers.
    runaround: bool,
    /// The next contact quotes the case number from its first record on.
    quote_next: bool,
}

impl CaseState {
    /// An agent engages at `at`: the case opens then unless it already is.
    fn engage(&mut self, at: i64) {
        self.opened_at.get_or_insert(at);
    }

    fn open_at(&self, at: i64) -> bool {
        self.opened_at.is_some_and(|o| o <= at)
    }

    fn follow_up(&self) -> bool {
        self.contact > 0
    }

    /// Whether this step of the service is slow: rarely, and often in a runaround.
    fn slow<R: Rng>(&self, rng: &mut R, share: f64) -> bool {
        rng.random_bool(if self.runaround { 0.25 } else { share })
    }
}

/// What became of a contact.
struct Contact {
    end_ms: i64,
    /// The customer's last inbound contact in it.
    last_inbound_ms: i64,
    /// The customer got an answer; an unanswered contact is retried.
    handled: bool,
}

/// A random duration in `lo..hi` ms, skewed towards `lo`.
fn skewed<R: Rng>(rng: &mut R, lo: i64, hi: i64) -> i64 {
    let u: f64 = rng.random();
    lo + ((hi - lo) as f64 * u * u) as i64
}

/// Roughly standard normal noise (a scaled sum of three uniforms).
fn noise<R: Rng>(rng: &mut R) -> f64 {
    (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>() - 1.5) * 2.0
}

/// A channel by the person's preferences, avoiding `avoid` when another channel is reachable.
pub(crate) fn pick_channel<R: Rng>(rng: &mut R, person: &Person, avoid: Option<Channel>) -> Channel {
    let weights: Vec<f64> = Channel::ALL
        .iter()
        .zip(person.channel_weights)
        .map(|(&c, w)| if person.reachable(c) && Some(c) != avoid { w } else { 0.0 })
        .collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return avoid.unwrap_or(Channel::Email);
    }
    let mut x = rng.random::<f64>() * total;
    for (c, w) in Channel::ALL.into_iter().zip(weights) {
        if x < w {
            return c;
        }
        x -= w;
    }
    Channel::Email
}

/// Plans one case of `person` starting at `start_ms`.
pub(crate) fn plan_case<R: Rng>(rng: &mut R, person: &Person, start_ms: i64) -> CaseJourney {
    let topic = *TOPICS.choose(rng).unwrap_or(&TOPICS[0]);
    let mood = rng.random_range(-0.9..0.5);
    let runaround = rng.random_bool(RUNAROUND);
    let mut segments = Vec::new();
    let mut state = CaseState { opened_at: None, contact: 0, abandons: 0, runaround, quote_next: false };
    let follow_ups = if runaround {
        rng.random_range(2..=3)
    } else {
        match rng.random_range(0..100) {
            0..66 => 0,
            66..92 => 1,
            92..98 => 2,
            _ => 3,
        }
    };
    let switch = if runaround { 0.75 } else { 0.3 };
    let mut channel = pick_channel(rng, person, None);
    // End of the latest contact, and the customer's latest inbound contact.
    let mut t = start_ms;
    let mut last_inbound = start_ms;
    let mut last_chat: Option<usize> = None;
    for round in 0..=follow_ups {
        let mut start = t;
        if round > 0 {
            let hop = rng.random_bool(if runaround { 0.35 } else { HOP });
            let other = pick_channel(rng, person, Some(channel));
            if hop && other != channel {
                // Still stuck minutes later: another channel, quoting the case.
                channel = other;
                start = last_inbound + skewed(rng, 3 * MINUTE, 50 * MINUTE);
                state.quote_next = true;
            } else {
                start = t + skewed(rng, HOUR, 4 * DAY);
                if rng.random_bool(switch) {
                    channel = other;
                }
            }
        }
        // An unanswered contact is retried soon, up to twice per case.
        loop {
            let may_abandon = state.abandons < 2;
            let opened_before = state.opened_at.is_some();
            let outcome = contact(rng, &mut segments, &mut state, channel, start, may_abandon);
            state.quote_next = false;
            if !opened_before {
                if let Some(at) = state.opened_at {
                    segments.push(Segment {
                        conversation: Conversation::CaseRecord,
                        steps: vec![
                            Step::new(at, EventKind::CaseOpened, Direction::Internal, state.contact).with_case(true)
                        ],
                    });
                }
            }
            if channel == Channel::Chat && outcome.handled {
                last_chat = Some(segments.iter().rposition(|s| s.conversation == Conversation::Chat).unwrap_or(0));
            } else {
                last_chat = None;
            }
            state.contact = state.contact.saturating_add(1);
            t = t.max(outcome.end_ms);
            last_inbound = outcome.last_inbound_ms;
            if outcome.handled {
                break;
            }
            state.abandons += 1;
            start = outcome.end_ms + skewed(rng, 5 * MINUTE, 90 * MINUTE);
            if rng.random_bool(if runaround { 0.6 } else { 0.3 }) {
                channel = pick_channel(rng, person, Some(channel));
            }
        }
    }
    set_tone(rng, &mut segments, mood, runaround);
    if rng.random_bool(0.85) {
        let resolved_at = t + skewed(rng, 10 * MINUTE, 2 * DAY);
        segments.push(Segment {
            conversation: Conversation::CaseRecord,
            steps: vec![Step::new(resolved_at, EventKind::CaseResolved, Direction::Internal, state.contact)
                .by_agent()
                .with_case(true)],
        });
        if rng.random_bool(0.35) {
            let (survey, satisfaction) = survey_scores(rng, mood, plan_effort(&segments));
            let mut step = Step::new(0, EventKind::SurveyResponse, Direction::Inbound, state.contact).with_case(true);
            step.survey = Some(survey);
            // Some unhappy customers say so in the comment box.
            step.negative = satisfaction < 0.0 && rng.random_bool(0.3);
            match last_chat {
                // A post-chat survey, in the session that just ended.
                Some(i) if rng.random_bool(0.5) => {
                    let seg = &mut segments[i];
                    let end = seg.steps.last().map_or(t, |s| s.at_ms);
                    step.at_ms = end + rng.random_range(20_000..120_000);
                    seg.steps.push(step);
                }
                _ => {
                    step.at_ms = resolved_at + skewed(rng, HOUR, 3 * DAY);
                    segments.push(Segment { conversation: Conversation::EmailSurvey, steps: vec![step] });
                }
            }
        }
    }
    segments.sort_by_key(|s| s.steps.first().map_or(i64::MAX, |st| st.at_ms));
    CaseJourney { topic, mood, segments }
}

/// Marks the customer messages written in anger: mostly by unhappy customers after they had
/// support (the moment), sometimes before any (no moment), rarely by anyone else.
fn set_tone<R: Rng>(rng: &mut R, segments: &mut [Segment], mood: f64, runaround: bool) {
    let mut steps: Vec<(i64, usize, usize)> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        for (j, s) in seg.steps.iter().enumerate() {
            steps.push((s.at_ms, i, j));
        }
    }
    steps.sort_unstable();
    let angry = mood < -0.45;
    let mut last_support: Option<i64> = None;
    for (at, i, j) in steps {
        let step = &mut segments[i].steps[j];
        if step.is_support() {
            last_support = Some(at);
            continue;
        }
        let writes =
            matches!(step.kind, EventKind::Message | EventKind::SocialPost | EventKind::SocialDm | EventKind::Review);
        if step.direction != Direction::Inbound || !writes {
            continue;
        }
        let after_support = last_support.is_some_and(|s| at - s <= 2 * DAY);
        let p = match (after_support, angry) {
            (true, true) => 0.10 + if runaround { 0.15 } else { 0.0 },
            (true, false) => 0.008 + if runaround { 0.04 } else { 0.0 },
            (false, true) => 0.04,
            (false, false) => 0.004,
        };
        step.negative = rng.random_bool(p);
    }
}

/// The contract's predicted effort of the case as planned: its conversations that carry the
/// case id somewhere, their channel switches, queue waits, transfers and abandons.
fn plan_effort(segments: &[Segment]) -> f64 {
    let mut conversations: Vec<(i64, Channel)> = Vec::new();
    let (mut wait_ms, mut transfers, mut abandons) = (0i64, 0i64, 0u32);
    for seg in segments {
        let Some(channel) = seg.conversation.channel() else { continue };
        if !seg.steps.iter().any(|s| s.carries_case) {
            continue;
        }
        if let Some(first) = seg.steps.iter().find(|s| s.direction == Direction::Inbound && s.kind.is_contact()) {
            conversations.push((first.at_ms, channel));
        }
        for s in &seg.steps {
            wait_ms += s.call.queue_wait_ms.unwrap_or(0);
            transfers += i64::from(s.call.transfers.unwrap_or(0));
            abandons += u32::from(matches!(s.kind, EventKind::CallAbandoned | EventKind::ChatAbandoned));
        }
    }
    conversations.sort_unstable_by_key(|c| c.0);
    let switches = conversations.windows(2).filter(|w| w[0].1 != w[1].1).count();
    predicted_effort(switches as u32, conversations.len() as u32, wait_ms, transfers, abandons)
}

/// Survey answers, and the satisfaction (about −1..1) behind them. CES follows the journey's
/// effort with noise, so a detector's effort prediction can be calibrated against it; CSAT and
/// NPS follow effort and mood. Some questions are left blank.
fn survey_scores<R: Rng>(rng: &mut R, mood: f64, effort: f64) -> (WireSurvey, f64) {
    let ces = (effort - 0.6 * mood + 0.9 * noise(rng)).round().clamp(1.0, 7.0) as i32;
    let satisfaction = (0.9 - 0.3 * (effort - 1.0) + 0.45 * mood + 0.3 * noise(rng)).clamp(-1.0, 1.0);
    let up = (satisfaction + 1.0) / 2.0;
    let csat = 1 + (up * 4.0).round() as i32;
    let nps = (up * 10.0).round() as i32;
    let nps_asked = rng.random_bool(0.7);
    let survey = WireSurvey {
        csat: (!nps_asked || rng.random_bool(0.8)).then_some(csat),
        nps: nps_asked.then_some(nps),
        ces: rng.random_bool(0.5).then_some(ces),
    };
    (survey, satisfaction)
}

/// Plans one contact on `channel` at `t`, appending its segment(s).
fn contact<R: Rng>(
    rng: &mut R,
    segments: &mut Vec<Segment>,
    state: &mut CaseState,
    channel: Channel,
    t: i64,
    may_abandon: bool,
) -> Contact {
    match channel {
        Channel::Email => email_thread(rng, segments, state, t),
        Channel::Chat => chat(rng, segments, state, t, may_abandon),
        Channel::Phone => call(rng, segments, state, t, may_abandon),
        Channel::Social => social(rng, segments, state, t),
    }
}

/// How long the brand takes to answer on a channel with a 4-hour SLA: mostly within it.
fn answer_delay<R: Rng>(rng: &mut R, state: &CaseState, slow_share: f64, fast_min: i64) -> i64 {
    if state.slow(rng, slow_share) {
        4 * HOUR + 5 * MINUTE + skewed(rng, 0, 26 * HOUR)
    } else {
        fast_min + skewed(rng, 0, 3 * HOUR + 20 * MINUTE)
    }
}

fn email_thread<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64) -> Contact {
    let c = state.contact;
    let quotes = state.quote_next || (state.follow_up() && rng.random_bool(QUOTES_CASE));
    let mut steps = vec![Step::new(t, EventKind::Message, Direction::Inbound, c).with_case(quotes)];
    // The ticketing system opens the case minutes after the mail arrives.
    state.engage(t + rng.random_range(MINUTE..9 * MINUTE));
    let mut at = t + answer_delay(rng, state, SLOW_EMAIL, 10 * MINUTE);
    steps.push(Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent().with_case(true));
    let mut last_inbound = t;
    if rng.random_bool(0.3) {
        at += skewed(rng, 10 * MINUTE, DAY);
        last_inbound = at;
        steps.push(Step::new(at, EventKind::Message, Direction::Inbound, c).with_case(rng.random_bool(0.8)));
        at += answer_delay(rng, state, SLOW_EMAIL, 10 * MINUTE);
        steps.push(Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent().with_case(true));
    }
    segments.push(Segment { conversation: Conversation::EmailThread, steps });
    Contact { end_ms: at, last_inbound_ms: last_inbound, handled: true }
}

fn chat<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64, may_abandon: bool) -> Contact {
    let c = state.contact;
    let quotes = state.quote_next || (state.open_at(t) && rng.random_bool(QUOTES_CASE));
    let mut steps = vec![Step::new(t, EventKind::ChatStarted, Direction::Inbound, c).with_case(quotes)];
    // Most chats are picked up well within the 120 s SLA; a slow queue takes minutes.
    let slow = state.slow(rng, SLOW_CHAT);
    let pickup = if slow { skewed(rng, 150_000, 12 * MINUTE) } else { skewed(rng, 8_000, 100_000) };
    // The customer types the question while waiting.
    let question = t + rng.random_range(5_000..40_000).min(pickup / 2);
    steps.push(Step::new(question, EventKind::Message, Direction::Inbound, c).with_case(quotes));
    let earliest = question - t + 5_000;
    if may_abandon && pickup > earliest + 1_000 && rng.random_bool(if slow { 0.45 } else { 0.02 }) {
        // Gives up before an agent picks up.
        let left = t + rng.random_range(earliest..pickup);
        steps.push(Step::new(left, EventKind::ChatAbandoned, Direction::Inbound, c).with_case(quotes));
        segments.push(Segment { conversation: Conversation::Chat, steps });
        return Contact { end_ms: left, last_inbound_ms: left, handled: false };
    }
    // The agent picks up and attaches the session to the case: later records carry the case id.
    let mut at = t + pickup;
    state.engage(at);
    steps.push(Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent().with_case(true));
    let mut last_inbound = question;
    for _ in 0..rng.random_range(0..=3) {
        at += skewed(rng, 15_000, 3 * MINUTE);
        last_inbound = at;
        steps.push(Step::new(at, EventKind::Message, Direction::Inbound, c).with_case(true));
        at += if rng.random_bool(0.02) { skewed(rng, 130_000, 6 * MINUTE) } else { skewed(rng, 8_000, 100_000) };
        steps.push(Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent().with_case(true));
    }
    at += rng.random_range(10_000..60_000);
    steps.push(Step::new(at, EventKind::ChatEnded, Direction::Internal, c).by_agent().with_case(true));
    segments.push(Segment { conversation: Conversation::Chat, steps });
    Contact { end_ms: at, last_inbound_ms: last_inbound, handled: true }
}

fn call<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64, may_abandon: bool) -> Contact {
    let c = state.contact;
    // The IVR asks for a case number; callers about an open case often key it in.
    let ivr = state.quote_next || (state.open_at(t) && rng.random_bool(IVR_CASE));
    let mut steps = vec![Step::new(t, EventKind::CallStarted, Direction::Inbound, c).with_case(ivr)];
    // Most calls wait briefly; some queues are long.
    let long = rng.random_bool(if state.runaround { 0.5 } else { 0.15 });
    let wait = if long { skewed(rng, 3 * MINUTE, 15 * MINUTE) } else { skewed(rng, 5_000, 3 * MINUTE) };
    let at = t + wait;
    let figures = CallFigures { queue_wait_ms: Some(wait), ..CallFigures::default() };
    if may_abandon {
        let p_abandon = if wait > 3 * MINUTE { 0.25 } else { 0.05 };
        if rng.random_bool(p_abandon) {
            let mut s = Step::new(at, EventKind::CallAbandoned, Direction::Inbound, c).with_case(ivr);
            s.call = figures;
            steps.push(s);
            segments.push(Segment { conversation: Conversation::Call { outbound: false }, steps });
            return Contact { end_ms: at, last_inbound_ms: at, handled: false };
        }
        if wait > 2 * MINUTE && rng.random_bool(0.15) {
            let mut s = Step::new(at, EventKind::CallbackRequested, Direction::Inbound, c).with_case(ivr);
            s.call = figures;
            steps.push(s);
            segments.push(Segment { conversation: Conversation::Call { outbound: false }, steps });
            let back = at + skewed(rng, 20 * MINUTE, 4 * HOUR);
            let mut steps = vec![Step::new(back, EventKind::CallStarted, Direction::Outbound, c).by_agent()];
            let pick_up = back + rng.random_range(5_000..40_000);
            let end = answered(rng, &mut steps, state, pick_up, Direction::Outbound, c, None, true);
            segments.push(Segment { conversation: Conversation::Call { outbound: true }, steps });
            return Contact { end_ms: end, last_inbound_ms: at, handled: true };
        }
    }
    let end = answered(rng, &mut steps, state, at, Direction::Inbound, c, Some(wait), ivr);
    segments.push(Segment { conversation: Conversation::Call { outbound: false }, steps });
    Contact { end_ms: end, last_inbound_ms: end, handled: true }
}

/// An answered call from `at`: CALL_ANSWERED then CALL_ENDED; returns the end time.
#[allow(clippy::too_many_arguments)]
fn answered<R: Rng>(
    rng: &mut R,
    steps: &mut Vec<Step>,
    state: &mut CaseState,
    at: i64,
    direction: Direction,
    c: u8,
    wait: Option<i64>,
    known_case: bool,
) -> i64 {
    let quotes = known_case || (state.open_at(at) && rng.random_bool(QUOTES_CASE));
    let mut s = Step::new(at, EventKind::CallAnswered, direction, c).by_agent().with_case(quotes);
    s.call.queue_wait_ms = wait;
    steps.push(s);
    let duration = skewed(rng, MINUTE, 25 * MINUTE);
    state.engage(at + rng.random_range(20_000..60_000).min(duration));
    let end = at + duration;
    let mut s = Step::new(end, EventKind::CallEnded, direction, c).by_agent().with_case(true);
    s.call.duration_ms = Some(duration);
    let (one, two) = if state.runaround { (40, 75) } else { (75, 95) };
    s.call.transfers = Some(match rng.random_range(0..100) {
        x if x < one => 0,
        x if x < two => 1,
        _ => 2,
    });
    steps.push(s);
    end
}

fn social<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64) -> Contact {
    let c = state.contact;
    // Case numbers are quoted in direct messages, never in public.
    let (opening, reply) = if state.quote_next {
        (EventKind::SocialDm, EventKind::SocialDm)
    } else {
        match rng.random_range(0..100) {
            0..60 => (EventKind::SocialPost, EventKind::SocialReply),
            60..85 => (EventKind::SocialDm, EventKind::SocialDm),
            _ => (EventKind::Review, EventKind::SocialReply),
        }
    };
    let mut steps = vec![Step::new(t, opening, Direction::Inbound, c).with_case(state.quote_next)];
    state.engage(t + rng.random_range(MINUTE..20 * MINUTE));
    let mut at = t + answer_delay(rng, state, SLOW_SOCIAL, 20 * MINUTE);
    steps.push(Step::new(at, reply, Direction::Outbound, c).by_agent().with_case(true));
    let mut last_inbound = t;
    if rng.random_bool(0.4) {
        // "Please DM us": the conversation moves to direct messages.
        at += skewed(rng, 5 * MINUTE, 6 * HOUR);
        last_inbound = at;
        steps.push(Step::new(at, EventKind::SocialDm, Direction::Inbound, c));
        at += skewed(rng, 5 * MINUTE, 3 * HOUR + 30 * MINUTE);
        steps.push(Step::new(at, EventKind::SocialDm, Direction::Outbound, c).by_agent().with_case(true));
    }
    segments.push(Segment { conversation: Conversation::Social, steps });
    Contact { end_ms: at, last_inbound_ms: last_inbound, handled: true }
}
