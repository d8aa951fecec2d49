//! Wire records of the four input schemas (`schemas/*_event.avsc`) and their validation.
//!
//! Field names match the Avro schemas exactly, so the same structs read Avro (through serde) and
//! JSON Lines. [`WireEvent::into_event`] is the one place that decides what a valid event is.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::{Channel, Details, Direction, Event, EventKind, EventTime, Survey, Tenant, ThreadRef};
use crate::identifier::{IdentifierKind, RawIdentifier};
use crate::text::trim;

/// Earliest accepted event time: 2000-01-01T00:00:00Z.
pub const MIN_EVENT_TIME_MS: i64 = 946_684_800_000;
/// Latest accepted event time: 2100-01-01T00:00:00Z.
pub const MAX_EVENT_TIME_MS: i64 = 4_102_444_800_000;
/// Whether an event time (ms) is in the accepted range.
pub fn accepted_event_time(ms: i64) -> bool {
    (MIN_EVENT_TIME_MS..MAX_EVENT_TIME_MS).contains(&ms)
}

/// Longest accepted id-like field (tenant, event id, identifiers, keys), in bytes.
pub const MAX_ID_LEN: usize = 512;
/// Longest accepted free text, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Most addresses accepted in `to` or `cc`.
pub const MAX_RECIPIENTS: usize = 100;

/// Why a decoded record is not a valid event; each variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ValidationError {
    /// A required field is empty.
    #[error("required field `{0}` is empty")]
    MissingField(&'static str),
    /// The event time is outside 2000..2100.
    #[error("event_time {0} ms is outside the accepted range 2000-01-01..2100-01-01")]
    InvalidTime(i64),
    /// A field is longer than allowed.
    #[error("field `{field}` is {len} bytes, over the limit of {max}")]
    Oversized {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The kind cannot occur on this channel.
    #[error("kind {kind:?} cannot occur on the {channel} channel")]
    KindMismatch {
        /// The kind.
        kind: EventKind,
        /// The channel.
        channel: Channel,
    },
    /// A control character in a field that names (a tenant, an event id): ids derived from
    /// them join their parts with one.
    #[error("field `{0}` holds a control character")]
    ControlCharacter(&'static str),
    /// A score is outside its scale.
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// The value.
        value: f64,
        /// Lowest allowed.
        min: f64,
        /// Highest allowed.
        max: f64,
    },
}

impl ValidationError {
    /// Stable machine-readable reason, used in dead letters and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::MissingField(_) => "missing_field",
            ValidationError::InvalidTime(_) => "invalid_time",
            ValidationError::Oversized { .. } => "oversized_field",
            ValidationError::KindMismatch { .. } => "kind_mismatch",
            ValidationError::OutOfRange { .. } => "out_of_range",
            ValidationError::ControlCharacter(_) => "control_character",
        }
    }
}

/// Survey answers on the wire (`SurveyResponse`: serde names must match Avro record names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename = "SurveyResponse")]
pub struct WireSurvey {
    /// CSAT 1-5.
    #[serde(default)]
    pub csat: Option<i32>,
    /// NPS 0-10.
    #[serde(default)]
    pub nps: Option<i32>,
    /// CES 1-7.
    #[serde(default)]
    pub ces: Option<i32>,
}

/// Fields every input schema starts with, split off a wire record by `take_common`.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// Tenant.
    pub tenant: CompactString,
    /// Event id.
    pub event_id: CompactString,
    /// Event time, ms.
    pub event_time: i64,
    /// Direction.
    pub direction: Direction,
    /// Kind.
    pub kind: EventKind,
    /// Case id.
    pub case_id: Option<CompactString>,
    /// Agent id.
    pub agent_id: Option<CompactString>,
    /// CRM account id.
    pub account_id: Option<CompactString>,
    /// Text.
    pub text: Option<CompactString>,
    /// Sentiment -1..1.
    pub sentiment: Option<f64>,
    /// Survey answers.
    pub survey: Option<WireSurvey>,
}

/// The common fields of a record, borrowed for validation.
#[derive(Clone, Copy)]
struct CommonRef<'a> {
    tenant: &'a str,
    event_id: &'a str,
    event_time: i64,
    kind: EventKind,
    case_id: &'a Option<CompactString>,
    agent_id: &'a Option<CompactString>,
    account_id: &'a Option<CompactString>,
    text: &'a Option<CompactString>,
    sentiment: Option<f64>,
    survey: &'a Option<WireSurvey>,
}

/// Borrows the common fields of any wire record.
macro_rules! common_of {
    ($e:expr) => {
        CommonRef {
            tenant: &$e.tenant,
            event_id: &$e.event_id,
            event_time: $e.event_time,
            kind: $e.kind,
            case_id: &$e.case_id,
            agent_id: &$e.agent_id,
            account_id: &$e.account_id,
            text: &$e.text,
            sentiment: $e.sentiment,
            survey: &$e.survey,
        }
    };
}

/// Declares a wire record: the common fields inline (serde `flatten` would buffer every field),
/// then the channel's own.
macro_rules! wire_record {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            /// Tenant.
            pub tenant: CompactString,
            /// Event id.
            pub event_id: CompactString,
            /// Event time, ms.
            pub event_time: i64,
            /// Direction.
            pub direction: Direction,
            /// Kind.
            pub kind: EventKind,
            /// Case id.
            #[serde(default)]
            pub case_id: Option<CompactString>,
            /// Agent id.
            #[serde(default)]
            pub agent_id: Option<CompactString>,
            /// CRM account id.
            #[serde(default)]
            pub account_id: Option<CompactString>,
            /// Text.
            #[serde(default)]
            pub text: Option<CompactString>,
            /// Sentiment -1..1.
            #[serde(default)]
            pub sentiment: Option<f64>,
            /// Survey answers.
            #[serde(default)]
            pub survey: Option<WireSurvey>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// Moves the common fields out, leaving defaults behind.
            pub fn take_common(&mut self) -> Common {
                Common {
                    tenant: std::mem::take(&mut self.tenant),
                    event_id: std::mem::take(&mut self.event_id),
                    event_time: self.event_time,
                    direction: self.direction,
                    kind: self.kind,
                    case_id: self.case_id.take(),
                    agent_id: self.agent_id.take(),
                    account_id: self.account_id.take(),
                    text: self.text.take(),
                    sentiment: self.sentiment.take(),
                    survey: self.survey.take(),
                }
            }
        }
    };
}

wire_record! {
    /// `EmailEvent` on the wire.
    EmailEvent {
        /// Sender.
        from: CompactString,
        /// Recipients.
        #[serde(default)]
        to: Vec<CompactString>,
        /// Copied addresses.
        #[serde(default)]
        cc: Vec<CompactString>,
        /// Subject.
        #[serde(default)]
        subject: Option<CompactString>,
        /// Message-ID.
        #[serde(default)]
        message_id: Option<CompactString>,
        /// In-Reply-To.
        #[serde(default)]
        in_reply_to: Option<CompactString>,
    }
}

wire_record! {
    /// `ChatEvent` on the wire.
    ChatEvent {
        /// Session id.
        session_id: CompactString,
        /// Visitor (cookie) id.
        #[serde(default)]
        visitor_id: Option<CompactString>,
        /// Email the customer typed.
        #[serde(default)]
        customer_email: Option<CompactString>,
        /// Phone the customer typed.
        #[serde(default)]
        customer_phone: Option<CompactString>,
    }
}

wire_record! {
    /// `PhoneEvent` on the wire.
    PhoneEvent {
        /// Call id.
        call_id: CompactString,
        /// Calling number.
        caller: CompactString,
        /// Called number.
        callee: CompactString,
        /// Queue wait, ms.
        #[serde(default)]
        queue_wait_ms: Option<i64>,
        /// Talk time, ms.
        #[serde(default)]
        duration_ms: Option<i64>,
        /// Transfers.
        #[serde(default)]
        transfers: Option<i32>,
        /// Line type of the customer's number (`mobile`, `landline`, `voip`, `toll_free`).
        #[serde(default)]
        customer_line_type: Option<CompactString>,
    }
}

wire_record! {
    /// `SocialEvent` on the wire.
    SocialEvent {
        /// Platform.
        platform: CompactString,
        /// Customer handle.
        handle: CompactString,
        /// Post id.
        #[serde(default)]
        post_id: Option<CompactString>,
        /// Post replied to.
        #[serde(default)]
        in_reply_to_post: Option<CompactString>,
    }
}

/// A decoded input record of any channel.
#[derive(Debug, Clone, PartialEq)]
pub enum WireEvent {
    /// From `cx.email.v1`.
    Email(EmailEvent),
    /// From `cx.chat.v1`.
    Chat(ChatEvent),
    /// From `cx.phone.v1`.
    Phone(PhoneEvent),
    /// From `cx.social.v1`.
    Social(SocialEvent),
}

/// Concatenates `parts` with at most one allocation (none up to 24 bytes; `format!` grows its buffer as it goes).
fn key(parts: &[&str]) -> CompactString {
    let mut s = CompactString::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `v` without surrounding blanks, `None` when nothing is left: opaque ids (cases, messages,
/// posts, accounts) name the same thing however they are padded, for threading as for identity.
fn non_empty(v: Option<CompactString>) -> Option<CompactString> {
    let v = v?;
    let trimmed = trim(&v);
    match trimmed.len() {
        0 => None,
        n if n == v.len() => Some(v),
        _ => Some(CompactString::from(trimmed)),
    }
}

fn check_len(field: &'static str, v: &str, max: usize) -> Result<(), ValidationError> {
    if v.len() > max {
        return Err(ValidationError::Oversized { field, len: v.len(), max });
    }
    Ok(())
}

/// Refuses ASCII control characters (derived ids join a tenant and an event id with 0x1f:
/// one inside either could make two events' ids one).
fn check_no_control(field: &'static str, v: &str) -> Result<(), ValidationError> {
    if v.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(ValidationError::ControlCharacter(field));
    }
    Ok(())
}

fn check_opt_len(field: &'static str, v: &Option<CompactString>, max: usize) -> Result<(), ValidationError> {
    v.as_deref().map_or(Ok(()), |s| check_len(field, s, max))
}

fn check_range(field: &'static str, v: Option<f64>, min: f64, max: f64) -> Result<(), ValidationError> {
    match v {
        Some(x) if !(x >= min && x <= max) => Err(ValidationError::OutOfRange { field, value: x, min, max }),
        _ => Ok(()),
    }
}

impl WireEvent {
    /// The channel this record belongs to.
    pub fn channel(&self) -> Channel {
        match self {
            WireEvent::Email(_) => Channel::Email,
            WireEvent::Chat(_) => Channel::Chat,
            WireEvent::Phone(_) => Channel::Phone,
            WireEvent::Social(_) => Channel::Social,
        }
    }

    /// The event time as written by the producer (milliseconds since the epoch, unvalidated).
    pub fn event_time(&self) -> i64 {
        match self {
            WireEvent::Email(e) => e.event_time,
            WireEvent::Chat(e) => e.event_time,
            WireEvent::Phone(e) => e.event_time,
            WireEvent::Social(e) => e.event_time,
        }
    }

    /// The tenant as written by the producer (unvalidated).
    pub fn tenant(&self) -> &str {
        match self {
            WireEvent::Email(e) => &e.tenant,
            WireEvent::Chat(e) => &e.tenant,
            WireEvent::Phone(e) => &e.tenant,
            WireEvent::Social(e) => &e.tenant,
        }
    }

    /// Validates the record and turns it into an [`Event`], picking out the customer's identifiers.
    ///
    /// `tenant` lets callers share one `Tenant` allocation per tenant name.
    pub fn into_event(self, tenant: impl FnOnce(&str) -> Tenant) -> Result<Event, ValidationError> {
        self.validate()?;
        Ok(self.into_valid_event(tenant))
    }

    /// [`WireEvent::into_event`] for a record this service applied before (read back from its
    /// own changelog): the rules added since it was written (a control character in a tenant
    /// or an event id) do not refuse it, or a restore would lose what was applied.
    pub fn into_restored_event(self, tenant: impl FnOnce(&str) -> Tenant) -> Result<Event, ValidationError> {
        match self.validate() {
            Ok(()) | Err(ValidationError::ControlCharacter(_)) => Ok(self.into_valid_event(tenant)),
            Err(e) => Err(e),
        }
    }

    /// Validates the record; on error the record is handed back (to dead-letter its bytes).
    pub fn try_into_event(
        self: Box<Self>,
        tenant: impl FnOnce(&str) -> Tenant,
    ) -> Result<Event, (ValidationError, Box<Self>)> {
        match self.validate() {
            Ok(()) => Ok(self.into_valid_event(tenant)),
            Err(e) => Err((e, self)),
        }
    }

    /// Checks every field without consuming the record.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let common = match self {
            WireEvent::Email(e) => {
                for (field, list) in [("to", &e.to), ("cc", &e.cc)] {
                    if list.len() > MAX_RECIPIENTS {
                        return Err(ValidationError::Oversized { field, len: list.len(), max: MAX_RECIPIENTS });
                    }
                    for a in list {
                        check_len(field, a, MAX_ID_LEN)?;
                    }
                }
                check_len("from", &e.from, MAX_ID_LEN)?;
                check_opt_len("subject", &e.subject, MAX_TEXT_LEN)?;
                check_opt_len("message_id", &e.message_id, MAX_ID_LEN)?;
                check_opt_len("in_reply_to", &e.in_reply_to, MAX_ID_LEN)?;
                common_of!(e)
            }
            WireEvent::Chat(e) => {
                check_len("session_id", &e.session_id, MAX_ID_LEN)?;
                check_opt_len("visitor_id", &e.visitor_id, MAX_ID_LEN)?;
                check_opt_len("customer_email", &e.customer_email, MAX_ID_LEN)?;
                check_opt_len("customer_phone", &e.customer_phone, MAX_ID_LEN)?;
                if trim(&e.session_id).is_empty() {
                    return Err(ValidationError::MissingField("session_id"));
                }
                common_of!(e)
            }
            WireEvent::Phone(e) => {
                check_len("call_id", &e.call_id, MAX_ID_LEN)?;
                check_len("caller", &e.caller, MAX_ID_LEN)?;
                check_len("callee", &e.callee, MAX_ID_LEN)?;
                check_opt_len("customer_line_type", &e.customer_line_type, 32)?;
                if trim(&e.call_id).is_empty() {
                    return Err(ValidationError::MissingField("call_id"));
                }
                for (field, v) in [("queue_wait_ms", e.queue_wait_ms), ("duration_ms", e.duration_ms)] {
                    check_range(field, v.map(|x| x as f64), 0.0, 7.0 * 86_400_000.0)?;
                }
                check_range("transfers", e.transfers.map(f64::from), 0.0, 1000.0)?;
                common_of!(e)
            }
            WireEvent::Social(e) => {
                check_len("platform", &e.platform, 64)?;
                check_len("handle", &e.handle, MAX_ID_LEN)?;
                check_opt_len("post_id", &e.post_id, MAX_ID_LEN)?;
                check_opt_len("in_reply_to_post", &e.in_reply_to_post, MAX_ID_LEN)?;
                if trim(&e.platform).is_empty() {
                    return Err(ValidationError::MissingField("platform"));
                }
                common_of!(e)
            }
        };
        Self::validate_common(common, self.channel())
    }

    /// Converts a record that [`validate`](Self::validate) accepted.
    fn into_valid_event(self, tenant: impl FnOnce(&str) -> Tenant) -> Event {
        let channel = self.channel();
        let mut ids: Vec<RawIdentifier> = Vec::with_capacity(4);
        let mut thread = ThreadRef::default();
        let mut details = Details::default();
        let common = match self {
            WireEvent::Email(mut e) => {
                let common = e.take_common();
                // Only the customer's side identifies the customer: the sender of inbound mail,
                // the primary recipient of outbound mail. Copied addresses are other people.
                let customer = match common.direction {
                    Direction::Inbound => Some(e.from),
                    Direction::Outbound => e.to.into_iter().next(),
                    Direction::Internal => None,
                };
                if let Some(addr) = non_empty(customer) {
                    ids.push(RawIdentifier::new(IdentifierKind::Email, addr));
                }
                thread.key = non_empty(e.message_id).map(|m| key(&["email:", &m]));
                thread.parent = non_empty(e.in_reply_to).map(|m| key(&["email:", &m]));
                details.subject = non_empty(e.subject);
                common
            }
            WireEvent::Chat(mut e) => {
                let common = e.take_common();
                if let Some(v) = non_empty(e.visitor_id) {
                    ids.push(RawIdentifier::new(IdentifierKind::ChatVisitor, v));
                }
                if let Some(v) = non_empty(e.customer_email) {
                    ids.push(RawIdentifier::new(IdentifierKind::Email, v));
                }
                if let Some(v) = non_empty(e.customer_phone) {
                    ids.push(RawIdentifier::new(IdentifierKind::Phone, v));
                }
                thread.key = Some(key(&["chat:", trim(&e.session_id)]));
                ids.push(RawIdentifier::new(IdentifierKind::ChatSession, trim(&e.session_id)));
                common
            }
            WireEvent::Phone(mut e) => {
                let common = e.take_common();
                let customer = match common.direction {
                    Direction::Inbound => Some(e.caller),
                    Direction::Outbound => Some(e.callee),
                    Direction::Internal => None,
                };
                if let Some(n) = non_empty(customer) {
                    ids.push(RawIdentifier::new(IdentifierKind::Phone, n).qualified(e.customer_line_type));
                }
                thread.key = Some(key(&["call:", trim(&e.call_id)]));
                ids.push(RawIdentifier::new(IdentifierKind::Call, trim(&e.call_id)));
                details.queue_wait_ms = e.queue_wait_ms;
                details.duration_ms = e.duration_ms;
                details.transfers = e.transfers;
                common
            }
            WireEvent::Social(mut e) => {
                let common = e.take_common();
                if !trim(&e.handle).is_empty() {
                    ids.push(RawIdentifier::new(IdentifierKind::SocialHandle, key(&[&e.platform, ":", &e.handle])));
                }
                let mut platform = CompactString::from(trim(&e.platform));
                platform.make_ascii_lowercase();
                thread.key = non_empty(e.post_id).map(|p| key(&["social:", &platform, ":", &p]));
                thread.parent = non_empty(e.in_reply_to_post).map(|p| key(&["social:", &platform, ":", &p]));
                details.platform = Some(platform);
                common
            }
        };
        if let Some(a) = non_empty(common.account_id) {
            ids.push(RawIdentifier::new(IdentifierKind::AccountId, a));
        }
        let case_id = non_empty(common.case_id);
        if let Some(c) = &case_id {
            ids.push(RawIdentifier::new(IdentifierKind::Case, c.clone()));
        }
        Event {
            tenant: tenant(trim(&common.tenant)),
            event_id: common.event_id,
            time: EventTime(common.event_time),
            channel,
            direction: common.direction,
            kind: common.kind,
            case_id,
            agent_id: non_empty(common.agent_id),
            text: common.text,
            sentiment: common.sentiment,
            survey: common.survey.map(|s| Survey { csat: s.csat, nps: s.nps, ces: s.ces }),
            identifiers: ids,
            thread,
            details,
        }
    }

    fn validate_common(c: CommonRef<'_>, channel: Channel) -> Result<(), ValidationError> {
        if trim(c.tenant).is_empty() {
            return Err(ValidationError::MissingField("tenant"));
        }
        if trim(c.event_id).is_empty() {
            return Err(ValidationError::MissingField("event_id"));
        }
        check_len("tenant", c.tenant, 128)?;
        check_len("event_id", c.event_id, MAX_ID_LEN)?;
        check_opt_len("case_id", c.case_id, MAX_ID_LEN)?;
        check_opt_len("agent_id", c.agent_id, MAX_ID_LEN)?;
        check_opt_len("account_id", c.account_id, MAX_ID_LEN)?;
        check_opt_len("text", c.text, MAX_TEXT_LEN)?;
        if !accepted_event_time(c.event_time) {
            return Err(ValidationError::InvalidTime(c.event_time));
        }
        if !c.kind.fits(channel) {
            return Err(ValidationError::KindMismatch { kind: c.kind, channel });
        }
        check_range("sentiment", c.sentiment, -1.0, 1.0)?;
        if let Some(s) = c.survey {
            check_range("survey.csat", s.csat.map(f64::from), 1.0, 5.0)?;
            check_range("survey.nps", s.nps.map(f64::from), 0.0, 10.0)?;
            check_range("survey.ces", s.ces.map(f64::from), 1.0, 7.0)?;
        }
        // Last: a record that fails nothing else is one an earlier version applied (see
        // `into_restored_event`).
        check_no_control("tenant", c.tenant)?;
        check_no_control("event_id", c.event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(direction: Direction) -> WireEvent {
        WireEvent::Email(EmailEvent {
            tenant: "acme".into(),
            event_id: "e1".into(),
            event_time: 1_700_000_000_000,
            direction,
            kind: EventKind::Message,
            case_id: Some("C-1".into()),
            agent_id: None,
            account_id: Some(" ".into()),
            text: None,
            sentiment: None,
            survey: None,
            from: "Jo <jo@x.com>".into(),
            to: vec!["support@acme.com".into(), "other@y.com".into()],
            cc: vec!["boss@x.com".into()],
            subject: None,
            message_id: Some("<m1@x>".into()),
            in_reply_to: None,
        })
    }

    #[test]
    fn inbound_email_identifies_the_sender_and_not_the_cc() {
        let e = email(Direction::Inbound).into_event(Tenant::new).unwrap();
        let emails: Vec<_> =
            e.identifiers.iter().filter(|i| i.kind == IdentifierKind::Email).map(|i| i.value.as_str()).collect();
        assert_eq!(emails, ["Jo <jo@x.com>"]);
        assert!(e.identifiers.iter().any(|i| i.kind == IdentifierKind::Case && i.value == "C-1"));
        assert!(!e.identifiers.iter().any(|i| i.kind == IdentifierKind::AccountId), "blank account ignored");
        assert_eq!(e.thread.key.as_deref(), Some("email:<m1@x>"));
    }

    #[test]
    fn outbound_email_identifies_the_primary_recipient() {
        let e = email(Direction::Outbound).into_event(Tenant::new).unwrap();
        let emails: Vec<_> =
            e.identifiers.iter().filter(|i| i.kind == IdentifierKind::Email).map(|i| i.value.as_str()).collect();
        assert_eq!(emails, ["support@acme.com"]);
    }

    #[test]
    fn absurd_time_and_wrong_kind_are_rejected_with_codes() {
        let mut w = email(Direction::Inbound);
        if let WireEvent::Email(e) = &mut w {
            e.event_time = 42;
        }
        assert_eq!(w.into_event(Tenant::new).unwrap_err().code(), "invalid_time");
        let mut w = email(Direction::Inbound);
        if let WireEvent::Email(e) = &mut w {
            e.kind = EventKind::CallAbandoned;
        }
        assert_eq!(w.into_event(Tenant::new).unwrap_err().code(), "kind_mismatch");
    }

    /// Tenant `a` with event `b\x1fc`, and tenant `a\x1fb` with event `c`, would derive one
    /// profile id (the parts are joined with 0x1f): a control character in either is refused.
    #[test]
    fn control_characters_in_a_tenant_or_an_event_id_are_rejected() {
        for (tenant, event_id, field) in
            [("a", "b\u{1f}c", "event_id"), ("a\u{1f}b", "c", "tenant"), ("a\tb", "c", "tenant")]
        {
            let mut w = email(Direction::Inbound);
            if let WireEvent::Email(e) = &mut w {
                e.tenant = tenant.into();
                e.event_id = event_id.into();
            }
            let err = w.into_event(Tenant::new).unwrap_err();
            assert_eq!((err.code(), err), ("control_character", ValidationError::ControlCharacter(field)));
        }
        let mut w = email(Direction::Inbound);
        if let WireEvent::Email(e) = &mut w {
            e.event_id = "é-ü 1".into();
        }
        assert!(w.into_event(Tenant::new).is_ok(), "other characters are fine");
        // Read back from the changelog, where an earlier version wrote it, it is applied.
        let mut w = email(Direction::Inbound);
        if let WireEvent::Email(e) = &mut w {
            e.event_id = "b\u{1f}c".into();
        }
        assert_eq!(w.clone().into_restored_event(Tenant::new).unwrap().event_id.as_str(), "b\u{1f}c");
        if let WireEvent::Email(e) = &mut w {
            e.event_time = 42;
        }
        assert_eq!(w.into_restored_event(Tenant::new).unwrap_err().code(), "invalid_time", "other rules hold");
    }

    #[test]
    fn scores_outside_their_scale_are_rejected() {
        let mut w = email(Direction::Inbound);
        if let WireEvent::Email(e) = &mut w {
            e.kind = EventKind::SurveyResponse;
            e.survey = Some(WireSurvey { csat: Some(9), nps: None, ces: None });
        }
        assert_eq!(w.into_event(Tenant::new).unwrap_err().code(), "out_of_range");
        let mut w = email(Direction::Inbound);
        if let WireEvent::Email(e) = &mut w {
            e.sentiment = Some(f64::NAN);
        }
        assert_eq!(w.into_event(Tenant::new).unwrap_err().code(), "out_of_range");
    }

    #[test]
    fn json_with_only_required_fields_parses() {
        let j = r#"{"tenant":"acme","event_id":"p1","event_time":1700000000000,"direction":"INBOUND",
                    "kind":"CALL_STARTED","call_id":"c1","caller":"+14155550100","callee":"+18005550000"}"#;
        let p: PhoneEvent = serde_json::from_str(j).unwrap();
        let e = WireEvent::Phone(p).into_event(Tenant::new).unwrap();
        assert_eq!(e.identifiers[0], RawIdentifier::new(IdentifierKind::Phone, "+14155550100"));
    }

    /// Padded opaque ids are the ids they pad, for threading as for identity (one case is one
    /// thread however its id is spaced); so is a padded tenant.
    #[test]
    fn padded_ids_and_tenants_are_trimmed() {
        let j = r#"{"tenant":" acme ","event_id":"p1","event_time":1700000000000,"direction":"INBOUND",
                    "kind":"CALL_STARTED","call_id":" c1 ","caller":"+14155550100","callee":"+18005550000",
                    "case_id":" C-1 "}"#;
        let p: PhoneEvent = serde_json::from_str(j).unwrap();
        let e = WireEvent::Phone(p).into_event(Tenant::new).unwrap();
        assert_eq!((e.tenant.as_str(), e.case_id.as_deref()), ("acme", Some("C-1")));
        assert_eq!(e.thread.key.as_deref(), Some("call:c1"));
    }
}
