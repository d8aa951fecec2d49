//! Identifier kinds and values, raw and normalized.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// The type of an identifier; the order of variants is irrelevant, priorities are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdentifierKind {
    /// CRM account id.
    AccountId,
    /// Email address.
    Email,
    /// Phone number (E.164 once normalized).
    Phone,
    /// `platform:handle` on a social platform.
    SocialHandle,
    /// Browser or app visitor (cookie) id.
    ChatVisitor,
    /// Case or ticket id.
    Case,
    /// Chat session id.
    ChatSession,
    /// Call id.
    Call,
}

impl IdentifierKind {
    /// Every kind.
    pub const ALL: [IdentifierKind; 8] = [
        IdentifierKind::AccountId,
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::SocialHandle,
        IdentifierKind::ChatVisitor,
        IdentifierKind::Case,
        IdentifierKind::ChatSession,
        IdentifierKind::Call,
    ];

    /// Lower-case name, as used in configuration and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::AccountId => "account_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::SocialHandle => "social_handle",
            IdentifierKind::ChatVisitor => "chat_visitor",
            IdentifierKind::Case => "case",
            IdentifierKind::ChatSession => "chat_session",
            IdentifierKind::Call => "call",
        }
    }

    /// The kind named `name` (as [`IdentifierKind::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Dense index, for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identifier as the channel delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RawIdentifier {
    /// Its type.
    pub kind: IdentifierKind,
    /// Its value, untouched (social handles as `platform:handle`).
    pub value: CompactString,
    /// What the source knows of the value, lower case: a phone's line type (`mobile`, `landline`).
    pub qualifier: Option<CompactString>,
}

impl RawIdentifier {
    /// A raw identifier.
    pub fn new(kind: IdentifierKind, value: impl Into<CompactString>) -> Self {
        RawIdentifier { kind, value: value.into(), qualifier: None }
    }

    /// The same identifier with what the source knows of it.
    pub fn qualified(mut self, qualifier: Option<CompactString>) -> Self {
        self.qualifier = qualifier
            .map(|q| {
                let mut q = CompactString::from(q.trim());
                q.make_ascii_lowercase();
                q
            })
            .filter(|q| !q.is_empty());
        self
    }
}

/// A normalized identifier: equal values mean the same identifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// Its type.
    pub kind: IdentifierKind,
    /// Its canonical value (kept inline up to 24 bytes: most are).
    pub value: CompactString,
}

impl Identifier {
    /// A normalized identifier; callers guarantee `value` is canonical.
    pub fn new(kind: IdentifierKind, value: impl Into<CompactString>) -> Self {
        Identifier { kind, value: value.into() }
    }
}

/// Identifiers are PII: their `Display` never shows the value, only the kind and a short digest.
impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // FNV-1a: a stable short digest to correlate log lines without revealing the value.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.value.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        write!(f, "{}#{:08x}", self.kind, h)
    }
}
