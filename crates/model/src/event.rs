//! The channel-independent event every stage works on.

use std::fmt;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::identifier::RawIdentifier;

/// Event time in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EventTime(pub i64);

impl EventTime {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This time moved by `ms` milliseconds (saturating).
    pub fn plus_millis(self, ms: i64) -> Self {
        EventTime(self.0.saturating_add(ms))
    }
}

/// A tenant (brand); cheap to clone, shared by all events of that tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tenant(pub Arc<str>);

impl Tenant {
    /// A tenant from its name.
    pub fn new(name: &str) -> Self {
        Tenant(Arc::from(name))
    }

    /// The tenant's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name looks like a brand's (a letter first, then letters, digits, `.`, `_`,
    /// `-`; at most 64 bytes), so that it may be a metric label or be printed to a log. What
    /// looks like an address, a phone number or a random id, which a producer could put there
    /// by mistake, is not.
    pub fn is_name_like(name: &str) -> bool {
        let mut bytes = name.bytes();
        name.len() <= 64
            && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }
}

/// One shared [`Tenant`] per tenant name, for decoders that see the same few names again and again.
#[derive(Debug, Default)]
pub struct Tenants {
    by_name: std::collections::HashMap<String, Tenant>,
    /// The tenant found last: events of one tenant come in runs.
    last: Option<Tenant>,
}

impl Tenants {
    /// The tenant named `name`, allocated on first sight only.
    pub fn get(&mut self, name: &str) -> Tenant {
        if let Some(last) = self.last.as_ref().filter(|t| t.as_str() == name) {
            return last.clone();
        }
        let tenant = match self.by_name.get(name) {
            Some(t) => t.clone(),
            None => self.by_name.entry(name.to_string()).or_insert_with(|| Tenant::new(name)).clone(),
        };
        self.last = Some(tenant.clone());
        tenant
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The channel an event arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    /// Email.
    Email,
    /// Web or in-app chat.
    Chat,
    /// Telephony.
    Phone,
    /// Social media and reviews.
    Social,
}

impl Channel {
    /// All channels, in schema order.
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Chat, Channel::Phone, Channel::Social];

    /// Lower-case name, as used in file names and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Phone => "phone",
            Channel::Social => "social",
        }
    }

    /// The channel named `name` (lower case), if any.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who sent the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From the brand.
    Outbound,
    /// Neither: a case update, a system event.
    Internal,
}

/// What happened. Symbols this reader does not know deserialize as [`EventKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// A kind this reader does not know (written by a newer producer).
    Unknown,
    /// An email, chat or direct message.
    Message,
    /// A chat session began.
    ChatStarted,
    /// A chat session ended normally.
    ChatEnded,
    /// The customer left the chat before an agent answered.
    ChatAbandoned,
    /// A call was placed (direction says by whom).
    CallStarted,
    /// An agent answered the call.
    CallAnswered,
    /// The call ended after being answered.
    CallEnded,
    /// The caller hung up before an agent answered.
    CallAbandoned,
    /// The caller asked to be called back.
    CallbackRequested,
    /// A public post.
    SocialPost,
    /// A public reply.
    SocialReply,
    /// A private direct message on a social platform.
    SocialDm,
    /// A review on a review site or app store.
    Review,
    /// A case (ticket) was opened.
    CaseOpened,
    /// A case was resolved.
    CaseResolved,
    /// The customer answered a survey.
    SurveyResponse,
}

impl EventKind {
    /// Every kind, in schema symbol order.
    pub const ALL: [EventKind; 17] = [
        EventKind::Unknown,
        EventKind::Message,
        EventKind::ChatStarted,
        EventKind::ChatEnded,
        EventKind::ChatAbandoned,
        EventKind::CallStarted,
        EventKind::CallAnswered,
        EventKind::CallEnded,
        EventKind::CallAbandoned,
        EventKind::CallbackRequested,
        EventKind::SocialPost,
        EventKind::SocialReply,
        EventKind::SocialDm,
        EventKind::Review,
        EventKind::CaseOpened,
        EventKind::CaseResolved,
        EventKind::SurveyResponse,
    ];

    /// The Avro symbol, e.g. `CHAT_ABANDONED`.
    pub fn symbol(self) -> &'static str {
        use EventKind::*;
        match self {
            Unknown => "UNKNOWN",
            Message => "MESSAGE",
            ChatStarted => "CHAT_STARTED",
            ChatEnded => "CHAT_ENDED",
            ChatAbandoned => "CHAT_ABANDONED",
            CallStarted => "CALL_STARTED",
            CallAnswered => "CALL_ANSWERED",
            CallEnded => "CALL_ENDED",
            CallAbandoned => "CALL_ABANDONED",
            CallbackRequested => "CALLBACK_REQUESTED",
            SocialPost => "SOCIAL_POST",
            SocialReply => "SOCIAL_REPLY",
            SocialDm => "SOCIAL_DM",
            Review => "REVIEW",
            CaseOpened => "CASE_OPENED",
            CaseResolved => "CASE_RESOLVED",
            SurveyResponse => "SURVEY_RESPONSE",
        }
    }

    /// The kind with Avro symbol `s`; unknown symbols give [`EventKind::Unknown`].
    pub fn from_symbol(s: &str) -> EventKind {
        EventKind::ALL.into_iter().find(|k| k.symbol() == s).unwrap_or(EventKind::Unknown)
    }

    /// Whether `channel` may carry this kind.
    pub fn fits(self, channel: Channel) -> bool {
        use EventKind::*;
        match self {
            Unknown | CaseOpened | CaseResolved | SurveyResponse => true,
            Message => matches!(channel, Channel::Email | Channel::Chat | Channel::Social),
            ChatStarted | ChatEnded | ChatAbandoned => channel == Channel::Chat,
            CallStarted | CallAnswered | CallEnded | CallAbandoned | CallbackRequested => channel == Channel::Phone,
            SocialPost | SocialReply | SocialDm | Review => channel == Channel::Social,
        }
    }

    /// Whether this kind is a contact the customer made or received (not a case update or survey).
    pub fn is_contact(self) -> bool {
        !matches!(
            self,
            EventKind::CaseOpened | EventKind::CaseResolved | EventKind::SurveyResponse | EventKind::Unknown
        )
    }
}

/// Reads a symbol as an identifier (what Avro enum and serde variant deserializers offer).
struct KindSymbol(EventKind);

impl<'de> Deserialize<'de> for KindSymbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KindVisitor).map(KindSymbol)
    }
}

struct KindVisitor;

impl<'de> serde::de::Visitor<'de> for KindVisitor {
    type Value = EventKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an EventKind symbol")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<EventKind, E> {
        Ok(EventKind::from_symbol(s))
    }

    /// A variant index (binary formats): the symbols' order, an unknown index `UNKNOWN`.
    fn visit_u64<E: serde::de::Error>(self, i: u64) -> Result<EventKind, E> {
        Ok(usize::try_from(i)
            .ok()
            .and_then(|i| SYMBOLS.get(i))
            .map_or(EventKind::Unknown, |s| EventKind::from_symbol(s)))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<EventKind, A::Error> {
        use serde::de::VariantAccess;
        let (KindSymbol(kind), variant) = a.variant()?;
        variant.unit_variant()?;
        Ok(kind)
    }
}

/// The kinds' symbols, in declaration order (the variant indices serde writes).
const SYMBOLS: &[&str] = &[
    "UNKNOWN",
    "MESSAGE",
    "CHAT_STARTED",
    "CHAT_ENDED",
    "CHAT_ABANDONED",
    "CALL_STARTED",
    "CALL_ANSWERED",
    "CALL_ENDED",
    "CALL_ABANDONED",
    "CALLBACK_REQUESTED",
    "SOCIAL_POST",
    "SOCIAL_REPLY",
    "SOCIAL_DM",
    "REVIEW",
    "CASE_OPENED",
    "CASE_RESOLVED",
    "SURVEY_RESPONSE",
];

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_enum("EventKind", SYMBOLS, KindVisitor)
    }
}

/// Survey answers; each score is validated to its scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename = "SurveyResponse")]
pub struct Survey {
    /// Customer satisfaction, 1 to 5.
    pub csat: Option<i32>,
    /// Net promoter score answer, 0 to 10.
    pub nps: Option<i32>,
    /// Customer effort, 1 to 7.
    pub ces: Option<i32>,
}

/// Conversation keys used to thread events across channels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ThreadRef {
    /// This event's own conversation key (message id, session, call, post).
    pub key: Option<CompactString>,
    /// The key of the conversation this event replies to, if any.
    pub parent: Option<CompactString>,
}

/// Channel-specific details that do not identify anyone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Details {
    /// Queue wait of a call, milliseconds.
    pub queue_wait_ms: Option<i64>,
    /// Talk time of a call, milliseconds.
    pub duration_ms: Option<i64>,
    /// Transfers during a call.
    pub transfers: Option<i32>,
    /// Social platform.
    pub platform: Option<CompactString>,
    /// Email subject.
    pub subject: Option<CompactString>,
}

/// A validated, channel-independent customer-service event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Tenant owning the event.
    pub tenant: Tenant,
    /// Producer-assigned id, the deduplication key.
    pub event_id: CompactString,
    /// When it happened.
    pub time: EventTime,
    /// Channel it came from.
    pub channel: Channel,
    /// Who sent it.
    pub direction: Direction,
    /// What happened.
    pub kind: EventKind,
    /// Case it belongs to.
    pub case_id: Option<CompactString>,
    /// Agent who handled it.
    pub agent_id: Option<CompactString>,
    /// Text body.
    pub text: Option<CompactString>,
    /// Producer-scored sentiment, -1 to 1.
    pub sentiment: Option<f64>,
    /// Survey answers.
    pub survey: Option<Survey>,
    /// The customer's identifiers as the channel delivered them (not yet normalized).
    pub identifiers: Vec<RawIdentifier>,
    /// Conversation keys for threading.
    pub thread: ThreadRef,
    /// Channel-specific details.
    pub details: Details,
}

impl Event {
    /// An event with its required fields only: no case, agent, text, scores, identifiers,
    /// conversation keys or details (set them with struct update syntax).
    pub fn new(
        tenant: Tenant,
        event_id: impl Into<CompactString>,
        time: EventTime,
        channel: Channel,
        direction: Direction,
        kind: EventKind,
    ) -> Self {
        Event {
            tenant,
            event_id: event_id.into(),
            time,
            channel,
            direction,
            kind,
            case_id: None,
            agent_id: None,
            text: None,
            sentiment: None,
            survey: None,
            identifiers: Vec::new(),
            thread: ThreadRef::default(),
            details: Details::default(),
        }
    }

    /// Whether the event answers the customer: an answered call (inbound: an agent took the
    /// call; outbound: the customer took the callback; an internal leg, a consult between
    /// agents, answers nobody), or an outbound message, social reply or DM written by an agent.
    /// An outbound message without an agent id is automated (an auto-acknowledgement, a bot's
    /// greeting): it answers nobody, so it neither stops a first-response clock nor settles a
    /// first-response SLA.
    pub fn answers_customer(&self) -> bool {
        (self.kind == EventKind::CallAnswered && self.direction != Direction::Internal)
            || (self.direction == Direction::Outbound
                && self.agent_id.is_some()
                && matches!(self.kind, EventKind::Message | EventKind::SocialReply | EventKind::SocialDm))
    }
}
