//! What happens in a case, as data: conversations ([`Segment`]s) of timed [`Step`]s.
//!
//! The planner decides channels, timing and outcomes; [`crate::render`] decides how each step
//! looks on the wire (which address, which spelling, which ids). To plant a specific moment (a
//! repeat contact, a channel hop, an SLA breach, an abandoned contact, a detractor survey), build
//! or edit a [`CaseJourney`] before it is rendered: the ground truth follows automatically.

use omnistitch_model::wire::WireSurvey;
use omnistitch_model::{Channel, Direction, EventKind};
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::population::Person;
use crate::text::{Topic, TOPICS};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

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
}

/// Case state shared by the contacts of one case.
struct CaseState {
    /// When the case was opened (the first time an agent engaged).
    opened_at: Option<i64>,
    contact: u8,
    abandons: u8,
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
}

/// What became of a contact.
struct Contact {
    end_ms: i64,
    /// The customer got an answer; an unanswered contact is retried.
    handled: bool,
}

/// A random duration in `lo..hi` ms, skewed towards `lo`.
fn skewed<R: Rng>(rng: &mut R, lo: i64, hi: i64) -> i64 {
    let u: f64 = rng.random();
    lo + ((hi - lo) as f64 * u * u) as i64
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
    let mut segments = Vec::new();
    let mut state = CaseState { opened_at: None, contact: 0, abandons: 0 };
    let follow_ups = match rng.random_range(0..100) {
        0..50 => 0,
        50..80 => 1,
        80..94 => 2,
        _ => 3,
    };
    let mut channel = pick_channel(rng, person, None);
    let mut t = start_ms;
    let mut last_chat: Option<usize> = None;
    for round in 0..=follow_ups {
        if round > 0 {
            t += skewed(rng, HOUR, 4 * DAY);
            if rng.random_bool(0.3) {
                channel = pick_channel(rng, person, Some(channel));
            }
        }
        // An unanswered contact is retried soon, up to twice per case.
        loop {
            let may_abandon = state.abandons < 2;
            let opened_before = state.opened_at.is_some();
            let outcome = contact(rng, &mut segments, &mut state, channel, t, may_abandon);
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
            t = outcome.end_ms;
            if outcome.handled {
                break;
            }
            state.abandons += 1;
            t += skewed(rng, 5 * MINUTE, 90 * MINUTE);
            if rng.random_bool(0.3) {
                channel = pick_channel(rng, person, Some(channel));
            }
        }
    }
    if rng.random_bool(0.85) {
        let resolved_at = t + skewed(rng, 10 * MINUTE, 2 * DAY);
        segments.push(Segment {
            conversation: Conversation::CaseRecord,
            steps: vec![Step::new(resolved_at, EventKind::CaseResolved, Direction::Internal, state.contact)
                .by_agent()
                .with_case(true)],
        });
        if rng.random_bool(0.35) {
            let survey = Some(survey_scores(rng, mood, follow_ups, state.abandons));
            match last_chat {
                // A post-chat survey, in the session that just ended.
                Some(i) if rng.random_bool(0.5) => {
                    let seg = &mut segments[i];
                    let end = seg.steps.last().map_or(t, |s| s.at_ms);
                    let mut step = Step::new(
                        end + rng.random_range(20_000..120_000),
                        EventKind::SurveyResponse,
                        Direction::Inbound,
                        state.contact,
                    )
                    .with_case(true);
                    step.survey = survey;
                    seg.steps.push(step);
                }
                _ => {
                    let mut step = Step::new(
                        resolved_at + skewed(rng, HOUR, 3 * DAY),
                        EventKind::SurveyResponse,
                        Direction::Inbound,
                        state.contact,
                    )
                    .with_case(true);
                    step.survey = survey;
                    segments.push(Segment { conversation: Conversation::EmailSurvey, steps: vec![step] });
                }
            }
        }
    }
    segments.sort_by_key(|s| s.steps.first().map_or(i64::MAX, |st| st.at_ms));
    CaseJourney { topic, mood, segments }
}

/// Survey answers that follow the customer's mood and effort; some answers are left blank.
fn survey_scores<R: Rng>(rng: &mut R, mood: f64, follow_ups: u8, abandons: u8) -> WireSurvey {
    let q = (mood + 0.5 - 0.25 * f64::from(follow_ups) - 0.3 * f64::from(abandons) + rng.random_range(-0.3..0.3))
        .clamp(-1.0, 1.0);
    let up = (q + 1.0) / 2.0;
    let csat = 1 + (up * 4.0).round() as i32;
    let nps = (up * 10.0).round() as i32;
    let ces = 1 + ((1.0 - up) * 6.0).round() as i32;
    let nps_asked = rng.random_bool(0.7);
    WireSurvey {
        csat: (!nps_asked || rng.random_bool(0.8)).then_some(csat),
        nps: nps_asked.then_some(nps),
        ces: rng.random_bool(0.5).then_some(ces),
    }
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

/// Customer steps of a follow-up quote the case number this often.
const QUOTES_CASE: f64 = 0.6;

fn email_thread<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64) -> Contact {
    let c = state.contact;
    let quotes = state.follow_up() && rng.random_bool(QUOTES_CASE);
    let mut steps = vec![Step::new(t, EventKind::Message, Direction::Inbound, c).with_case(quotes)];
    // The ticketing system opens the case minutes after the mail arrives; the reply may breach SLA.
    state.engage(t + rng.random_range(MINUTE..9 * MINUTE));
    let mut at = t + 10 * MINUTE + skewed(rng, 0, 26 * HOUR);
    steps.push(Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent().with_case(true));
    if rng.random_bool(0.3) {
        at += skewed(rng, 10 * MINUTE, DAY);
        steps.push(Step::new(at, EventKind::Message, Direction::Inbound, c).with_case(rng.random_bool(0.8)));
        at += skewed(rng, 10 * MINUTE, 26 * HOUR);
        steps.push(Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent().with_case(true));
    }
    segments.push(Segment { conversation: Conversation::EmailThread, steps });
    Contact { end_ms: at, handled: true }
}

fn chat<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64, may_abandon: bool) -> Contact {
    let c = state.contact;
    let quotes = state.open_at(t) && rng.random_bool(QUOTES_CASE);
    let mut steps = vec![Step::new(t, EventKind::ChatStarted, Direction::Inbound, c).with_case(quotes)];
    let mut at = t;
    if may_abandon && rng.random_bool(0.08) {
        if rng.random_bool(0.6) {
            at += rng.random_range(10_000..60_000);
            steps.push(Step::new(at, EventKind::Message, Direction::Inbound, c).with_case(quotes));
        }
        at += skewed(rng, MINUTE, 8 * MINUTE);
        steps.push(Step::new(at, EventKind::ChatAbandoned, Direction::Inbound, c).with_case(quotes));
        segments.push(Segment { conversation: Conversation::Chat, steps });
        return Contact { end_ms: at, handled: false };
    }
    let messages = rng.random_range(2..=8);
    let mut linked = quotes;
    for m in 0..messages {
        at += skewed(rng, 15_000, 3 * MINUTE);
        let step = if m % 2 == 0 {
            Step::new(at, EventKind::Message, Direction::Inbound, c)
        } else {
            // The agent attaches the session to the case: later records carry the case id.
            state.engage(at);
            linked = true;
            Step::new(at, EventKind::Message, Direction::Outbound, c).by_agent()
        };
        steps.push(step.with_case(linked && state.open_at(at)));
    }
    at += rng.random_range(10_000..60_000);
    state.engage(at);
    steps.push(Step::new(at, EventKind::ChatEnded, Direction::Internal, c).by_agent().with_case(true));
    segments.push(Segment { conversation: Conversation::Chat, steps });
    Contact { end_ms: at, handled: true }
}

fn call<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64, may_abandon: bool) -> Contact {
    let c = state.contact;
    let mut steps = vec![Step::new(t, EventKind::CallStarted, Direction::Inbound, c)];
    // Most calls wait briefly; some queues breach the SLA.
    let wait =
        if rng.random_bool(0.15) { skewed(rng, 3 * MINUTE, 15 * MINUTE) } else { skewed(rng, 5_000, 3 * MINUTE) };
    let at = t + wait;
    let figures = CallFigures { queue_wait_ms: Some(wait), ..CallFigures::default() };
    if may_abandon {
        let p_abandon = if wait > 3 * MINUTE { 0.25 } else { 0.05 };
        if rng.random_bool(p_abandon) {
            let mut s = Step::new(at, EventKind::CallAbandoned, Direction::Inbound, c);
            s.call = figures;
            steps.push(s);
            segments.push(Segment { conversation: Conversation::Call { outbound: false }, steps });
            return Contact { end_ms: at, handled: false };
        }
        if wait > 2 * MINUTE && rng.random_bool(0.15) {
            let mut s = Step::new(at, EventKind::CallbackRequested, Direction::Inbound, c);
            s.call = figures;
            steps.push(s);
            segments.push(Segment { conversation: Conversation::Call { outbound: false }, steps });
            let back = at + skewed(rng, 20 * MINUTE, 4 * HOUR);
            let mut steps = vec![Step::new(back, EventKind::CallStarted, Direction::Outbound, c).by_agent()];
            let pick_up = back + rng.random_range(5_000..40_000);
            let end = answered(rng, &mut steps, state, pick_up, Direction::Outbound, c, None);
            segments.push(Segment { conversation: Conversation::Call { outbound: true }, steps });
            return Contact { end_ms: end, handled: true };
        }
    }
    let end = answered(rng, &mut steps, state, at, Direction::Inbound, c, Some(wait));
    segments.push(Segment { conversation: Conversation::Call { outbound: false }, steps });
    Contact { end_ms: end, handled: true }
}

/// An answered call from `at`: CALL_ANSWERED then CALL_ENDED; returns the end time.
fn answered<R: Rng>(
    rng: &mut R,
    steps: &mut Vec<Step>,
    state: &mut CaseState,
    at: i64,
    direction: Direction,
    c: u8,
    wait: Option<i64>,
) -> i64 {
    let quotes = state.open_at(at) && rng.random_bool(QUOTES_CASE);
    let mut s = Step::new(at, EventKind::CallAnswered, direction, c).by_agent().with_case(quotes);
    s.call.queue_wait_ms = wait;
    steps.push(s);
    let duration = skewed(rng, MINUTE, 25 * MINUTE);
    state.engage(at + rng.random_range(20_000..60_000).min(duration));
    let end = at + duration;
    let mut s = Step::new(end, EventKind::CallEnded, direction, c).by_agent().with_case(true);
    s.call.duration_ms = Some(duration);
    s.call.transfers = Some(match rng.random_range(0..100) {
        0..75 => 0,
        75..95 => 1,
        _ => 2,
    });
    steps.push(s);
    end
}

fn social<R: Rng>(rng: &mut R, segments: &mut Vec<Segment>, state: &mut CaseState, t: i64) -> Contact {
    let c = state.contact;
    let (opening, reply) = match rng.random_range(0..100) {
        0..60 => (EventKind::SocialPost, EventKind::SocialReply),
        60..85 => (EventKind::SocialDm, EventKind::SocialDm),
        _ => (EventKind::Review, EventKind::SocialReply),
    };
    let mut steps = vec![Step::new(t, opening, Direction::Inbound, c)];
    state.engage(t + rng.random_range(MINUTE..20 * MINUTE));
    let mut at = t + 20 * MINUTE + skewed(rng, 0, 8 * HOUR);
    steps.push(Step::new(at, reply, Direction::Outbound, c).by_agent().with_case(true));
    if rng.random_bool(0.4) {
        // "Please DM us": the conversation moves to direct messages.
        at += skewed(rng, 5 * MINUTE, 6 * HOUR);
        steps.push(Step::new(at, EventKind::SocialDm, Direction::Inbound, c));
        at += skewed(rng, 5 * MINUTE, 6 * HOUR);
        steps.push(Step::new(at, EventKind::SocialDm, Direction::Outbound, c).by_agent().with_case(true));
    }
    segments.push(Segment { conversation: Conversation::Social, steps });
    Contact { end_ms: at, handled: true }
}
