//! Output records, field for field the output schemas in `schemas/`.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::event::{Channel, Direction, EventKind, EventTime, Survey};
use crate::identifier::{Identifier, IdentifierKind};

/// How one of an event's identifiers took part in resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchOutcome {
    /// Already on the profile the event resolved to.
    Linked,
    /// Newly attached to that profile (or created it).
    Added,
    /// Known to be shared by several people: not used to link.
    Shared,
    /// Would break an identity rule (a limit): not attached.
    Conflict,
    /// A placeholder or operator-blocked value.
    Blocked,
    /// Could not be normalized.
    Invalid,
}

impl MatchOutcome {
    /// Lower-case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOutcome::Linked => "linked",
            MatchOutcome::Added => "added",
            MatchOutcome::Shared => "shared",
            MatchOutcome::Conflict => "conflict",
            MatchOutcome::Blocked => "blocked",
            MatchOutcome::Invalid => "invalid",
        }
    }
}

/// An identifier in an output record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename = "Identifier")]
pub struct IdentifierRecord {
    /// Kind.
    pub kind: IdentifierKind,
    /// Normalized value; empty for an invalid raw value (the raw value is not repeated).
    pub value: CompactString,
}

impl From<&Identifier> for IdentifierRecord {
    fn from(i: &Identifier) -> Self {
        IdentifierRecord { kind: i.kind, value: i.value.clone() }
    }
}

/// One identifier of a timeline entry and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedIdentifier {
    /// The identifier.
    pub identifier: IdentifierRecord,
    /// What resolution did with it.
    pub outcome: MatchOutcome,
}

/// The event inside a timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    /// Event id.
    pub event_id: CompactString,
    /// Event time, ms.
    pub event_time: EventTime,
    /// Channel.
    pub channel: Channel,
    /// Direction.
    pub direction: Direction,
    /// Kind.
    pub kind: EventKind,
    /// Case id.
    pub case_id: Option<CompactString>,
    /// Agent id.
    pub agent_id: Option<CompactString>,
    /// Text.
    pub text: Option<CompactString>,
    /// Sentiment.
    pub sentiment: Option<f64>,
    /// Survey answers.
    pub survey: Option<Survey>,
    /// Queue wait, ms.
    pub queue_wait_ms: Option<i64>,
    /// Talk time, ms.
    pub duration_ms: Option<i64>,
    /// Transfers.
    pub transfers: Option<i32>,
    /// Social platform.
    pub platform: Option<CompactString>,
    /// Email subject.
    pub subject: Option<CompactString>,
}

/// `TimelineEntry`: an event placed on a profile's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "TimelineEntry")]
pub struct TimelineRecord {
    /// Tenant.
    pub tenant: String,
    /// Profile id.
    pub profile_id: String,
    /// Conversation thread.
    pub thread_id: String,
    /// The event.
    pub event: NormalizedEvent,
    /// Its identifiers and how each matched.
    pub identifiers: Vec<MatchedIdentifier>,
    /// The thread whose conversation this event's case id re-threaded into `thread_id`: the
    /// records of that thread are of this one from now on.
    #[serde(default)]
    pub absorbed_thread_id: Option<String>,
}

/// `Profile`: current state of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Profile")]
pub struct ProfileRecord {
    /// Tenant.
    pub tenant: String,
    /// Profile id.
    pub profile_id: String,
    /// Its identifiers, sorted.
    pub identifiers: Vec<IdentifierRecord>,
    /// Profiles merged into it, in merge order.
    pub merged_from: Vec<String>,
    /// Earliest event time.
    pub first_seen: EventTime,
    /// Latest event time.
    pub last_seen: EventTime,
    /// Events resolved to it.
    pub event_count: i64,
}

/// `ProfileMerge`: two profiles joined, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "ProfileMerge")]
pub struct MergeRecord {
    /// Tenant.
    pub tenant: String,
    /// Survivor.
    pub survivor_id: String,
    /// Profile merged away.
    pub absorbed_id: String,
    /// Event that linked them.
    pub event_id: String,
    /// Its time.
    pub event_time: EventTime,
    /// The event's identifier that was on the survivor.
    pub survivor_identifier: IdentifierRecord,
    /// The event's identifier that was on the absorbed profile.
    pub absorbed_identifier: IdentifierRecord,
}

/// `DeadLetter`: an input record that could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "DeadLetter")]
pub struct DeadLetterRecord {
    /// Topic or file.
    pub source: String,
    /// Kafka partition, -1 for files.
    pub partition: i32,
    /// Kafka offset, or record/line number in a file.
    pub offset: i64,
    /// Stable reason code.
    pub reason_code: String,
    /// Human-readable reason.
    pub reason: String,
    /// The original bytes.
    #[serde(with = "bytes_as_list")]
    pub payload: Vec<u8>,
}

/// Serializes bytes through `serialize_bytes`, so Avro writes `bytes` and JSON a number list.
mod bytes_as_list {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        serde_bytes_compat::deserialize(d)
    }

    mod serde_bytes_compat {
        use serde::de::{Deserializer, Error, SeqAccess, Visitor};
        use std::fmt;

        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            d.deserialize_byte_buf(BytesVisitor)
        }
    }
}
