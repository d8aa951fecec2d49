//! How steps look on the wire: which of the person's identifiers each record carries, how they
//! are spelled, and the ids, texts and scores around them.
//!
//! Rendering never decides *who* an event belongs to (that is the person being rendered) nor
//! *what* happens (that is [`crate::journey`]); the ground truth is derived from its output.

use omnistitch_model::wire::{ChatEvent, EmailEvent, PhoneEvent, SocialEvent, WireSurvey};
use omnistitch_model::{CompactString, Direction, EventKind, WireEvent};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{SimConfig, DAY_MS};
use crate::ids::{derive_seed, IdGen, IdSpace};
use crate::journey::{plan_case, CaseJourney, Conversation, Segment, Step};
use crate::population::{Brand, Handle, Person, Population};
use crate::text::{
    fill, Topic, AGENT_REPLIES, FOLLOW_UPS, JUNK_EMAILS, JUNK_PHONES, NEGATIVE_MESSAGES, NEGATIVE_POSTS,
    NEGATIVE_REVIEWS, NEGATIVE_SURVEY_COMMENTS, OPENINGS, POSTS, REPLIES, REVIEWS, SURVEY_COMMENTS, WITHHELD,
};

/// A rendered event, before it gets its event id and arrival slot.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) time: i64,
    /// Index into [`Population::persons`].
    pub(crate) person: usize,
    /// Order within the person, to break ties deterministically.
    pub(crate) seq: u32,
    pub(crate) wire: WireEvent,
}

/// The common fields of a record.
struct Head {
    tenant: String,
    event_time: i64,
    direction: Direction,
    kind: EventKind,
    case_id: Option<String>,
    agent_id: Option<String>,
    account_id: Option<String>,
    text: Option<String>,
    sentiment: Option<f64>,
    survey: Option<WireSurvey>,
}

/// Simulated values (built as `String`s) into the wire record's field types.
trait Wire<T> {
    fn wire(self) -> T;
}

impl Wire<CompactString> for String {
    fn wire(self) -> CompactString {
        self.into()
    }
}

impl Wire<Option<CompactString>> for Option<String> {
    fn wire(self) -> Option<CompactString> {
        self.map(Into::into)
    }
}

impl Wire<Vec<CompactString>> for Vec<String> {
    fn wire(self) -> Vec<CompactString> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T> Wire<Option<T>> for Option<T>
where
    T: Copy,
{
    fn wire(self) -> Option<T> {
        self
    }
}

macro_rules! record {
    ($variant:ident, $ty:ident, $h:expr, { $($field:ident : $value:expr),* $(,)? }) => {{
        let h: Head = $h;
        WireEvent::$variant($ty {
            tenant: h.tenant.into(),
            event_id: CompactString::default(),
            event_time: h.event_time,
            direction: h.direction,
            kind: h.kind,
            case_id: h.case_id.map(Into::into),
            agent_id: h.agent_id.map(Into::into),
            account_id: h.account_id.map(Into::into),
            text: h.text.map(Into::into),
            sentiment: h.sentiment,
            survey: h.survey,
            $($field: Wire::wire($value)),*
        })
    }};
}

/// `s` with the first letter of every alphanumeric run upper-cased.
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = !c.is_ascii_alphanumeric();
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Renders everything `person` does over the span.
pub(crate) fn render_person(config: &SimConfig, pop: &Population, ids: &IdGen, person: usize) -> Vec<Planned> {
    let p = &pop.persons[person];
    let mut r = Renderer {
        config,
        pop,
        ids,
        person,
        p,
        brand: &pop.brands[p.tenant],
        rng: ChaCha8Rng::seed_from_u64(derive_seed(config.seed, 1 << 32 | p.global)),
        counter: 0,
        out: Vec::new(),
    };
    let cases = match r.rng.random_range(0..100) {
        0..40 => 1,
        40..70 => 2,
        70..90 => 3,
        _ => 4,
    };
    let span = i64::from(config.span_days) * DAY_MS;
    let mut starts: Vec<i64> = (0..cases).map(|_| config.start_ms + r.rng.random_range(0..span)).collect();
    starts.sort_unstable();
    for start in starts {
        let journey = plan_case(&mut r.rng, p, start);
        let index = r.next_index();
        let case_id = ids.case(index);
        r.render_case(&journey, &case_id);
    }
    r.out
}

struct Renderer<'a> {
    config: &'a SimConfig,
    pop: &'a Population,
    ids: &'a IdGen,
    person: usize,
    p: &'a Person,
    brand: &'a Brand,
    rng: ChaCha8Rng,
    /// Per-person counter making conversation ids unique.
    counter: u64,
    out: Vec<Planned>,
}

impl Renderer<'_> {
    fn next_index(&mut self) -> u64 {
        let i = self.p.global << 20 | self.counter;
        self.counter += 1;
        i
    }

    fn push(&mut self, time: i64, wire: WireEvent) {
        let seq = self.out.len() as u32;
        self.out.push(Planned { time, person: self.person, seq, wire });
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn variant(&mut self) -> bool {
        self.rng.random_bool(self.config.hard_cases.format_variant)
    }

    fn junk(&mut self) -> bool {
        self.rng.random_bool(self.config.hard_cases.junk)
    }

    /// An email address as some system spelled it.
    fn spell_email(&mut self, addr: &str) -> String {
        if !self.variant() {
            return addr.to_string();
        }
        let name = format!("{} {}", self.p.first, self.p.last);
        match self.rng.random_range(0..4) {
            0 => format!("{name} <{addr}>"),
            1 => format!("{name} <{}>", title_case(addr)),
            2 => addr.to_uppercase(),
            _ => format!(" {} ", title_case(addr)),
        }
    }

    /// A phone number (ten national digits) as some system spelled it.
    fn spell_phone(&mut self, d: &str) -> String {
        if !self.variant() || d.len() != 10 {
            return format!("+1{d}");
        }
        let (a, b, c) = (&d[..3], &d[3..6], &d[6..]);
        match self.rng.random_range(0..7) {
            0 => format!("({a}) {b}-{c}"),
            1 => format!("{a}.{b}.{c}"),
            2 => format!("+1 {a} {b} {c}"),
            3 => format!("1-{a}-{b}-{c}"),
            4 => format!("{a}-{b}-{c}"),
            5 => d.to_string(),
            _ => format!("+1 ({a}) {b}-{c}"),
        }
    }

    /// `(platform, handle)` as some system spelled them.
    fn spell_handle(&mut self, h: &Handle) -> (String, String) {
        if !self.variant() {
            return (h.platform.to_string(), h.handle.clone());
        }
        match self.rng.random_range(0..4) {
            0 => (h.platform.to_string(), format!("@{}", h.handle)),
            1 => (title_case(h.platform), h.handle.to_lowercase()),
            2 => (h.platform.to_string(), format!("@{}", h.handle.to_lowercase())),
            _ => (title_case(h.platform), format!("@{}", h.handle.to_uppercase())),
        }
    }

    /// The account id as some system spelled it, if the person has one and `p` hits.
    fn account(&mut self, p: f64) -> Option<String> {
        let acc = self.p.account.clone()?;
        if !self.chance(p) {
            return None;
        }
        Some(if self.variant() { format!(" {acc} ") } else { acc })
    }

    /// One of the person's phone numbers: a mobile, or the household landline.
    fn number(&mut self) -> Option<String> {
        let landline = self.p.household.map(|h| self.pop.households[h].landline.clone());
        match landline {
            Some(l) if self.p.mobiles.is_empty() || self.rng.random_bool(0.5) => Some(l),
            _ => self.p.mobiles.choose(&mut self.rng).cloned(),
        }
    }

    fn agent(&mut self) -> String {
        self.brand.agents.choose(&mut self.rng).cloned().unwrap_or_else(|| format!("{}.agent", self.brand.tenant))
    }

    /// The body of a step, worded by who speaks, whether this is a follow-up and whether the
    /// customer is angry.
    fn text(&mut self, step: &Step, topic: Topic, first_of_segment: bool) -> Option<String> {
        let brand = self.brand.tenant.as_str();
        let pick = |rng: &mut ChaCha8Rng, list: &[&str]| fill(list.choose(rng).copied().unwrap_or("{x}"), topic, brand);
        let rng = &mut self.rng;
        let inbound = step.direction == Direction::Inbound;
        Some(match step.kind {
            EventKind::Message | EventKind::SocialDm if inbound && step.negative => pick(rng, NEGATIVE_MESSAGES),
            EventKind::Message | EventKind::SocialDm if inbound => {
                if !first_of_segment {
                    pick(rng, REPLIES)
                } else if step.contact == 0 {
                    pick(rng, OPENINGS)
                } else {
                    pick(rng, FOLLOW_UPS)
                }
            }
            EventKind::Message | EventKind::SocialDm => pick(rng, AGENT_REPLIES),
            EventKind::SocialReply => "Sorry to hear that! Please send us a DM so we can help.".to_string(),
            EventKind::SocialPost if step.negative => pick(rng, NEGATIVE_POSTS),
            EventKind::SocialPost => pick(rng, POSTS),
            EventKind::Review if step.negative => pick(rng, NEGATIVE_REVIEWS),
            EventKind::Review => pick(rng, REVIEWS),
            EventKind::CallEnded => format!("Call summary: {}", topic.name),
            EventKind::CaseOpened => format!("Case opened: {}", topic.name),
            EventKind::CaseResolved => format!("Case resolved: {}", topic.name),
            EventKind::SurveyResponse if step.negative => pick(rng, NEGATIVE_SURVEY_COMMENTS),
            EventKind::SurveyResponse if rng.random_bool(0.4) => pick(rng, SURVEY_COMMENTS),
            _ => return None,
        })
    }

    /// Producer-scored sentiment on part of the texts: the customer's mood (never below −0.5
    /// unless angry), the agent's cheer. Angry steps are scored on about half the records, and
    /// then the producer sometimes reads them milder than a lexicon would.
    fn sentiment(&mut self, step: &Step, mood: f64, has_text: bool) -> Option<f64> {
        if !has_text || matches!(step.kind, EventKind::CaseOpened | EventKind::CaseResolved | EventKind::CallEnded) {
            return None;
        }
        if step.direction != Direction::Inbound {
            return self.chance(0.25).then(|| round2(self.rng.random_range(0.2..0.8)));
        }
        if step.negative {
            if !self.chance(0.5) {
                return None;
            }
            let s = if self.chance(0.85) {
                self.rng.random_range(-0.95..-0.55)
            } else {
                self.rng.random_range(-0.45..-0.2)
            };
            return Some(round2(s));
        }
        let s = 0.3 * mood - 0.03 * f64::from(step.contact.min(3)) + self.rng.random_range(-0.1..0.25);
        self.chance(0.6).then(|| round2(s.clamp(-0.45, 1.0)))
    }

    fn head(
        &mut self,
        step: &Step,
        j: &CaseJourney,
        case_id: &str,
        agent: &str,
        account: Option<String>,
        first: bool,
    ) -> Head {
        let text = self.text(step, j.topic, first);
        let sentiment = self.sentiment(step, j.mood, text.is_some());
        Head {
            tenant: self.brand.tenant.clone(),
            event_time: step.at_ms,
            direction: step.direction,
            kind: step.kind,
            case_id: step.carries_case.then(|| case_id.to_string()),
            agent_id: step.agent.then(|| agent.to_string()),
            account_id: account,
            text,
            sentiment,
            survey: step.survey,
        }
    }

    fn render_case(&mut self, j: &CaseJourney, case_id: &str) {
        for seg in &j.segments {
            match seg.conversation {
                Conversation::EmailThread => self.email_thread(seg, j, case_id),
                Conversation::Chat => self.chat(seg, j, case_id),
                Conversation::Call { outbound } => self.call(seg, j, case_id, outbound),
                Conversation::Social => self.social(seg, j, case_id),
                Conversation::CaseRecord => self.case_record(seg, j, case_id),
                Conversation::EmailSurvey => self.email_survey(seg, j, case_id),
            }
        }
    }

    fn email_thread(&mut self, seg: &Segment, j: &CaseJourney, case_id: &str) {
        let team = self.p.team.map(|t| self.pop.teams[t].mailbox.clone());
        let (addr, from_team) = match &team {
            Some(m) if self.chance(0.35) => (m.clone(), true),
            _ if self.p.emails.len() > 1 && self.chance(0.3) => (self.p.emails[1].clone(), false),
            _ => (self.p.emails[0].clone(), false),
        };
        let domain = addr.rsplit_once('@').map_or("mail.example", |(_, d)| d).to_string();
        let agent = self.agent();
        let (p_in, p_out) = (0.25, 0.6);
        let subject = format!("{}: {}", title_case(j.topic.name), j.topic.phrase);
        let mut previous: Option<String> = None;
        for (i, step) in seg.steps.iter().enumerate() {
            let inbound = step.direction == Direction::Inbound;
            let account = self.account(if inbound { p_in } else { p_out });
            let head = self.head(step, j, case_id, &agent, account, i == 0);
            let host = if inbound { domain.clone() } else { format!("mail.{}.example", self.brand.tenant) };
            let index = self.next_index();
            let message_id = format!("<{}@{host}>", self.ids.hex(IdSpace::Message, index));
            let mut subject = if i == 0 { subject.clone() } else { format!("Re: {subject}") };
            if step.carries_case && !inbound {
                subject.push_str(&format!(" [{case_id}]"));
            }
            let support = self.brand.support_email.clone();
            let (from, to, cc) = if inbound {
                // Colleagues copy their team mailbox; a copied address is never the customer's.
                let cc = match &team {
                    Some(m) if !from_team && self.chance(0.4) => vec![m.clone()],
                    _ => Vec::new(),
                };
                (self.spell_email(&addr), vec![support], cc)
            } else {
                (support, vec![self.spell_email(&addr)], Vec::new())
            };
            let wire = record!(Email, EmailEvent, head, {
                from: from,
                to: to,
                cc: cc,
                subject: Some(subject.clone()),
                message_id: Some(message_id.clone()),
                in_reply_to: previous.replace(message_id),
            });
            self.push(step.at_ms, wire);
            // Half the new mails (by index: no random draw) get the mailbox's automatic
            // acknowledgement a few seconds later: outbound, no agent, answering nobody.
            if i == 0 && inbound && index & 1 == 0 {
                let at = step.at_ms + 3_000;
                let ack = Head {
                    tenant: self.brand.tenant.clone(),
                    event_time: at,
                    direction: Direction::Outbound,
                    kind: EventKind::Message,
                    case_id: None,
                    agent_id: None,
                    account_id: None,
                    text: Some("We have received your message and will get back to you shortly.".into()),
                    sentiment: None,
                    survey: None,
                };
                let ack_id =
                    format!("<ack-{}@mail.{}.example>", self.ids.hex(IdSpace::Message, index), self.brand.tenant);
                let wire = record!(Email, EmailEvent, ack, {
                    from: self.brand.support_email.clone(),
                    to: vec![addr.clone()],
                    cc: Vec::new(),
                    subject: Some(format!("Re: {subject}")),
                    message_id: Some(ack_id),
                    in_reply_to: previous.clone(),
                });
                self.push(at, wire);
            }
        }
    }

    fn case_record(&mut self, seg: &Segment, j: &CaseJourney, case_id: &str) {
        let agent = self.agent();
        for step in &seg.steps {
            let head = self.head(step, j, case_id, &agent, None, true);
            let wire = record!(Email, EmailEvent, head, {
                from: String::new(),
                to: Vec::new(),
                cc: Vec::new(),
                subject: None,
                message_id: None,
                in_reply_to: None,
            });
            self.push(step.at_ms, wire);
        }
    }

    fn email_survey(&mut self, seg: &Segment, j: &CaseJourney, case_id: &str) {
        let addr = self.p.emails[0].clone();
        for step in &seg.steps {
            let account = self.account(0.5);
            let head = self.head(step, j, case_id, "", account, true);
            let index = self.next_index();
            let message_id = format!("<{}@mail.{}.example>", self.ids.hex(IdSpace::Message, index), self.brand.tenant);
            let from = self.spell_email(&addr);
            let wire = record!(Email, EmailEvent, head, {
                from: from,
                to: vec![format!("surveys@{}.example", self.brand.tenant)],
                cc: Vec::new(),
                subject: Some(format!("Re: How did we do? [{case_id}]")),
                message_id: Some(message_id),
                in_reply_to: None,
            });
            self.push(step.at_ms, wire);
        }
    }

    fn chat(&mut self, seg: &Segment, j: &CaseJourney, case_id: &str) {
        let index = self.next_index();
        let session = format!("chat-{}", self.ids.hex(IdSpace::Session, index));
        let visitor = self.p.visitors.choose(&mut self.rng).cloned();
        let account = self.account(0.5); // logged in: every record of the session carries it
        let agent = self.agent();
        // The pre-chat form: often skipped, sometimes filled with a placeholder.
        let form_email = if self.chance(0.5) {
            if self.junk() {
                JUNK_EMAILS.choose(&mut self.rng).map(|s| s.to_string())
            } else {
                let addr = self.p.emails.choose(&mut self.rng).cloned().unwrap_or_default();
                Some(self.spell_email(&addr))
            }
        } else {
            None
        };
        let form_phone = if self.chance(0.25) {
            if self.junk() {
                JUNK_PHONES.choose(&mut self.rng).map(|s| s.to_string())
            } else {
                self.number().map(|n| self.spell_phone(&n))
            }
        } else {
            None
        };
        let mut first_inbound = true;
        for step in &seg.steps {
            let first = first_inbound && step.kind == EventKind::Message && step.direction == Direction::Inbound;
            if first {
                first_inbound = false;
            }
            let head = self.head(step, j, case_id, &agent, account.clone(), first);
            let started = step.kind == EventKind::ChatStarted;
            let wire = record!(Chat, ChatEvent, head, {
                session_id: session.clone(),
                visitor_id: visitor.clone(),
                customer_email: if started { form_email.clone() } else { None },
                customer_phone: if started { form_phone.clone() } else { None },
            });
            self.push(step.at_ms, wire);
        }
    }

    fn call(&mut self, seg: &Segment, j: &CaseJourney, case_id: &str, outbound: bool) {
        let index = self.next_index();
        let call_id = format!("call-{}", self.ids.hex(IdSpace::Call, index));
        let withheld = !outbound && self.junk();
        let number = self.number();
        let landline = self.p.household.map(|h| self.pop.households[h].landline.clone());
        // The telephony platform's line-type lookup answers for most numbers.
        let line_type = match &number {
            Some(n) if !withheld && self.rng.random_bool(0.95) => {
                Some(if Some(n) == landline.as_ref() { "landline" } else { "mobile" }.to_string())
            }
            _ => None,
        };
        let number = match number {
            Some(n) if !withheld => self.spell_phone(&n),
            _ => WITHHELD.to_string(),
        };
        let brand_number = self.brand.number.clone();
        let (caller, callee) = if outbound { (brand_number, number) } else { (number, brand_number) };
        // The IVR identifies most callers before an agent answers; a callback knows whom it calls.
        let account = self.account(if outbound { 0.95 } else { 0.85 });
        let agent = self.agent();
        for step in &seg.steps {
            let identified = outbound || matches!(step.kind, EventKind::CallAnswered | EventKind::CallEnded);
            let head = self.head(step, j, case_id, &agent, account.clone().filter(|_| identified), true);
            let wire = record!(Phone, PhoneEvent, head, {
                call_id: call_id.clone(),
                caller: caller.clone(),
                callee: callee.clone(),
                queue_wait_ms: step.call.queue_wait_ms,
                duration_ms: step.call.duration_ms,
                transfers: step.call.transfers,
                customer_line_type: line_type.clone(),
            });
            self.push(step.at_ms, wire);
        }
    }

    fn social(&mut self, seg: &Segment, j: &CaseJourney, case_id: &str) {
        let Some(handle) = self.p.handles.choose(&mut self.rng).cloned() else {
            return; // the planner only picks social for people with a handle
        };
        let agent = self.agent();
        let mut last_post: Option<String> = None;
        for (i, step) in seg.steps.iter().enumerate() {
            let inbound = step.direction == Direction::Inbound;
            let account = self.account(if inbound { 0.05 } else { 0.2 });
            let head = self.head(step, j, case_id, &agent, account, i == 0);
            let index = self.next_index();
            let post_id = self.ids.hex(IdSpace::Post, index);
            let (platform, shown) = self.spell_handle(&handle);
            let wire = record!(Social, SocialEvent, head, {
                platform: platform,
                handle: shown,
                post_id: Some(post_id.clone()),
                in_reply_to_post: last_post.replace(post_id),
            });
            self.push(step.at_ms, wire);
        }
    }
}
