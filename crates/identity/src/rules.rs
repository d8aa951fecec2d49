//! Identity rules: what may link, how much one profile may hold, and which identifier wins.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use hashbrown::HashSet;

use omnistitch_model::{Identifier, IdentifierKind, RawIdentifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::normalize::Normalizer;

/// Identity settings as written in configuration (`[identity]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Region for phone numbers written without a country code (ISO 3166 alpha-2).
    pub default_region: String,
    /// Identifier kinds from strongest to weakest; kinds left out rank after those listed.
    pub priority: Vec<String>,
    /// Most identifiers of a kind one profile may hold; kinds left out are unlimited.
    pub limits: BTreeMap<String, u32>,
    /// Most identifiers of a kind one profile keeps linked: past it the profile's oldest of
    /// that kind is forgotten (unlinked), where a limit would refuse the new one. For the ids
    /// of conversations (cases, chat sessions, calls), which pile up over a customer's life.
    /// A kind with a limit ignores it.
    pub keep_newest: BTreeMap<String, u32>,
    /// Operator-supplied values that never link, per kind (written in any format).
    pub blocked: BTreeMap<String, Vec<String>>,
    /// Block the built-in placeholders (`unknown`, `n/a`, `noreply@...`, `0000000000` ...).
    pub builtin_placeholders: bool,
    /// When a link breaks a rule, mark the linking identifier as shared so it never links again.
    pub mark_shared_on_conflict: bool,
    /// Kinds that name one person; two profiles holding such identifiers are different people
    /// unless an identifier of a non-weak kind says otherwise.
    pub personal_kinds: Vec<String>,
    /// Kinds often shared within a household or team (landlines, shared browsers): they attach
    /// events to a profile but never merge two profiles that both hold personal identifiers.
    pub weak_kinds: Vec<String>,
    /// Phone line types (as the telephony platform reports them) that a household shares:
    /// numbers of these types are kept on the timeline but never link.
    pub shared_line_types: Vec<String>,
    /// Role mailboxes (`info@`, `support@`, `ops@`, RFC 2142 and the like) are used by teams:
    /// they never link. Operator additions go in `role_mailboxes`.
    pub role_mailboxes_link: bool,
    /// Extra role mailbox local parts, beside the built-in ones.
    pub role_mailboxes: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let kinds = |ks: &[IdentifierKind]| ks.iter().map(|k| k.as_str().to_string()).collect();
        use IdentifierKind::*;
        IdentityConfig {
            default_region: "US".into(),
            priority: kinds(&[AccountId, Email, SocialHandle, Case, ChatSession, Call, Phone, ChatVisitor]),
            limits: [(AccountId, 1), (Email, 5), (Phone, 4), (SocialHandle, 6), (ChatVisitor, 20)]
                .into_iter()
                .map(|(k, n)| (k.as_str().to_string(), n))
                .collect(),
            keep_newest: [Case, ChatSession, Call].into_iter().map(|k| (k.as_str().to_string(), 1_000)).collect(),
            blocked: BTreeMap::new(),
            builtin_placeholders: true,
            mark_shared_on_conflict: true,
            personal_kinds: kinds(&[AccountId, Email, SocialHandle]),
            // Off by default: on simulated traffic it costs more recall (one person's two emails
            // joined only by their own mobile) than it gains precision.
            weak_kinds: Vec::new(),
            shared_line_types: vec!["landline".into()],
            role_mailboxes_link: false,
            role_mailboxes: Vec::new(),
        }
    }
}

/// A configuration value that does not make sense; the message names the key.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum RulesError {
    /// An identifier kind name that does not exist.
    #[error(
        "identity.{key}: unknown identifier kind `{name}` (expected one of: account_id, email, phone, social_handle, chat_visitor, case, chat_session, call)"
    )]
    UnknownKind {
        /// The configuration key.
        key: &'static str,
        /// The bad name.
        name: String,
    },
    /// A kind listed twice in the priority order.
    #[error("identity.priority: `{0}` is listed twice")]
    DuplicatePriority(String),
    /// A limit of zero would keep every identifier of that kind off every profile.
    #[error("identity.limits.{0}: must be at least 1")]
    ZeroLimit(String),
    /// Keeping none would forget every identifier of that kind as soon as it is linked.
    #[error("identity.keep_newest.{0}: must be at least 1")]
    ZeroKept(String),
    /// The default region is not a known region.
    #[error("identity.default_region: {0}")]
    Region(String),
}

/// The built-in email lists as hash sets: every email identifier is checked against them.
struct EmailLists {
    placeholder_emails: HashSet<&'static str>,
    automated_local_parts: HashSet<&'static str>,
    placeholders: HashSet<&'static str>,
}

static EMAIL_LISTS: LazyLock<EmailLists> = LazyLock::new(|| EmailLists {
    placeholder_emails: PLACEHOLDER_EMAILS.iter().copied().collect(),
    automated_local_parts: AUTOMATED_LOCAL_PARTS.iter().copied().collect(),
    placeholders: PLACEHOLDERS.iter().copied().collect(),
});

/// Validated identity rules.
#[derive(Debug, Clone)]
pub struct IdentityRules {
    rank: [u8; IdentifierKind::ALL.len()],
    limits: [Option<u32>; IdentifierKind::ALL.len()],
    kept: [Option<u32>; IdentifierKind::ALL.len()],
    /// The kinds with a `keep_newest`, with it.
    kept_kinds: Vec<(IdentifierKind, u32)>,
    blocked: HashSet<Identifier>,
    builtin_placeholders: bool,
    mark_shared_on_conflict: bool,
    personal: [bool; IdentifierKind::ALL.len()],
    weak: [bool; IdentifierKind::ALL.len()],
    shared_line_types: Vec<String>,
    /// Role mailbox local parts that never link; empty when roles may link.
    role_mailboxes: HashSet<String>,
}

fn kind(key: &'static str, name: &str) -> Result<IdentifierKind, RulesError> {
    IdentifierKind::from_name(name).ok_or_else(|| RulesError::UnknownKind { key, name: name.to_string() })
}

/// Placeholders people and systems type when they have no real value.
const PLACEHOLDERS: &[&str] = &[
    "unknown",
    "n/a",
    "na",
    "none",
    "null",
    "nil",
    "undefined",
    "test",
    "-",
    "--",
    "?",
    "0",
    "anonymous",
    "guest",
    "not provided",
    "no email",
    "noemail",
    "no phone",
    "x",
    "xxx",
    "tbd",
    "000000",
    "-1",
];

/// Placeholder email addresses.
const PLACEHOLDER_EMAILS: &[&str] = &[
    "test@test.com",
    "customer@example.com",
    "email@email.com",
    "none@none.com",
    "unknown@unknown.com",
    "noemail@noemail.com",
    "na@na.com",
    "a@a.com",
    "no@email.com",
    "test@example.com",
];

/// Local parts of role mailboxes (RFC 2142 and common team addresses).
const ROLE_LOCAL_PARTS: &[&str] = &[
    "info",
    "marketing",
    "sales",
    "support",
    "abuse",
    "noc",
    "security",
    "hostmaster",
    "webmaster",
    "admin",
    "administrator",
    "office",
    "team",
    "ops",
    "operations",
    "billing",
    "accounts",
    "accounting",
    "purchasing",
    "procurement",
    "frontdesk",
    "reception",
    "hr",
    "contact",
    "hello",
    "enquiries",
    "inquiries",
    "help",
    "service",
    "customerservice",
    "finance",
    "it",
    "helpdesk",
    "orders",
    "invoices",
    "legal",
    "careers",
    "jobs",
    "press",
];

/// Local parts of automated senders.
const AUTOMATED_LOCAL_PARTS: &[&str] = &[
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
    "mailer-daemon",
    "postmaster",
    "bounce",
    "bounces",
];

impl IdentityRules {
    /// Validates `config`; `normalizer` canonicalizes the operator's blocked values.
    pub fn from_config(config: &IdentityConfig, normalizer: &Normalizer) -> Result<Self, RulesError> {
        let mut rank = [u8::MAX; IdentifierKind::ALL.len()];
        for (i, name) in config.priority.iter().enumerate() {
            let k = kind("priority", name)?;
            if rank[k.index()] != u8::MAX {
                return Err(RulesError::DuplicatePriority(name.clone()));
            }
            rank[k.index()] = i as u8;
        }
        let mut limits = [None; IdentifierKind::ALL.len()];
        for (name, &n) in &config.limits {
            let k = kind("limits", name)?;
            if n == 0 {
                return Err(RulesError::ZeroLimit(name.clone()));
            }
            limits[k.index()] = Some(n);
        }
        let mut kept = [None; IdentifierKind::ALL.len()];
        for (name, &n) in &config.keep_newest {
            let k = kind("keep_newest", name)?;
            if n == 0 {
                return Err(RulesError::ZeroKept(name.clone()));
            }
            // A limit wins: it refuses the new identifier, so there is never an oldest to forget
            // (a configuration that limits a conversation kind keeps working as it did).
            if limits[k.index()].is_none() {
                kept[k.index()] = Some(n);
            }
        }
        let mut blocked = HashSet::new();
        for (name, values) in &config.blocked {
            let k = kind("blocked", name)?;
            for v in values {
                // A value that does not normalize can never match a normalized identifier.
                if let Ok(id) = normalizer.normalize(&RawIdentifier::new(k, v.clone())) {
                    blocked.insert(id);
                }
            }
        }
        let mut personal = [false; IdentifierKind::ALL.len()];
        for name in &config.personal_kinds {
            personal[kind("personal_kinds", name)?.index()] = true;
        }
        let mut weak = [false; IdentifierKind::ALL.len()];
        for name in &config.weak_kinds {
            weak[kind("weak_kinds", name)?.index()] = true;
        }
        Ok(IdentityRules {
            rank,
            limits,
            kept,
            kept_kinds: IdentifierKind::ALL.into_iter().filter_map(|k| Some((k, kept[k.index()]?))).collect(),
            blocked,
            builtin_placeholders: config.builtin_placeholders,
            mark_shared_on_conflict: config.mark_shared_on_conflict,
            personal,
            weak,
            shared_line_types: config.shared_line_types.iter().map(|t| t.trim().to_ascii_lowercase()).collect(),
            role_mailboxes: if config.role_mailboxes_link {
                HashSet::new()
            } else {
                ROLE_LOCAL_PARTS
                    .iter()
                    .map(|s| s.to_string())
                    .chain(config.role_mailboxes.iter().map(|s| s.trim().to_lowercase()))
                    .collect()
            },
        })
    }

    /// Plain union-find: no placeholders, no limits, no shared detection (the baseline to beat).
    pub fn naive() -> Self {
        IdentityRules {
            rank: [0; IdentifierKind::ALL.len()],
            limits: [None; IdentifierKind::ALL.len()],
            kept: [None; IdentifierKind::ALL.len()],
            kept_kinds: Vec::new(),
            blocked: HashSet::new(),
            builtin_placeholders: false,
            mark_shared_on_conflict: false,
            personal: [false; IdentifierKind::ALL.len()],
            weak: [false; IdentifierKind::ALL.len()],
            shared_line_types: Vec::new(),
            role_mailboxes: HashSet::new(),
        }
    }

    /// Whether an identifier is known to be used by several people: a landline (by the line type
    /// its source reported) or a role mailbox. Such identifiers are recorded but never link.
    pub fn is_shared_by_nature(&self, id: &Identifier, qualifier: Option<&str>) -> bool {
        match id.kind {
            IdentifierKind::Phone => qualifier.is_some_and(|q| self.shared_line_types.iter().any(|t| t == q)),
            IdentifierKind::Email => {
                !self.role_mailboxes.is_empty()
                    && id.value.split('@').next().is_some_and(|local| self.role_mailboxes.contains(local))
            }
            _ => false,
        }
    }

    /// Whether identifiers of `kind` name one person.
    pub fn is_personal(&self, kind: IdentifierKind) -> bool {
        self.personal[kind.index()]
    }

    /// Whether identifiers of `kind` are often shared and never bridge two people.
    pub fn is_weak(&self, kind: IdentifierKind) -> bool {
        self.weak[kind.index()]
    }

    /// Sort key: lower is stronger.
    pub fn rank(&self, kind: IdentifierKind) -> u8 {
        self.rank[kind.index()]
    }

    /// Most identifiers of `kind` per profile.
    pub fn limit(&self, kind: IdentifierKind) -> Option<u32> {
        self.limits[kind.index()]
    }

    /// Most identifiers of `kind` a profile keeps linked (the newest).
    pub fn kept(&self, kind: IdentifierKind) -> Option<u32> {
        self.kept[kind.index()]
    }

    /// The kinds a profile keeps only the newest of, with how many.
    pub fn kept_kinds(&self) -> &[(IdentifierKind, u32)] {
        &self.kept_kinds
    }

    /// Whether conflicts mark the linking identifier as shared.
    pub fn marks_shared(&self) -> bool {
        self.mark_shared_on_conflict
    }

    /// Whether a raw value is a placeholder, before any normalization.
    pub fn is_placeholder_raw(&self, raw: &str) -> bool {
        let v = raw.trim();
        self.builtin_placeholders && v.len() <= 16 && PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(v))
    }

    /// Whether a normalized identifier is blocked.
    pub fn is_blocked(&self, id: &Identifier) -> bool {
        if !self.blocked.is_empty() && self.blocked.contains(id) {
            return true;
        }
        if !self.builtin_placeholders {
            return false;
        }
        let v: &str = &id.value;
        match id.kind {
            IdentifierKind::Email => {
                // `noreply+bounces@...` is as automated as `noreply@...`.
                let local = v.split('@').next().unwrap_or("");
                let local = local.split('+').next().unwrap_or(local);
                EMAIL_LISTS.placeholder_emails.contains(v)
                    || EMAIL_LISTS.automated_local_parts.contains(local)
                    || EMAIL_LISTS.placeholders.contains(local) && v.ends_with("@example.com")
            }
            IdentifierKind::Phone => {
                // E.164 national digits that are one repeated digit or a counting run.
                let digits = v.trim_start_matches('+');
                let national = digits.get(digits.len().saturating_sub(9)..).unwrap_or(digits);
                let first = national.as_bytes().first().copied();
                national.bytes().all(|b| Some(b) == first)
                    || "01234567890123456789".contains(national)
                    || "98765432109876543210".contains(national)
            }
            // A handle is a name its owner chose: only the listed placeholders.
            IdentifierKind::SocialHandle => v.len() <= 16 && PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(v)),
            _ => (v.len() <= 16 && PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(v))) || filler(v),
        }
    }
}

/// An opaque id that is filler, not a value: one character repeated (`0000000000`, `xxxxxx`,
/// the all-zero UUID, separators aside) or a counting run of digits (`123456789`).
fn filler(v: &str) -> bool {
    let mut chars = v.chars().filter(|c| !matches!(c, '-' | ' ' | '_' | '.'));
    let Some(first) = chars.next() else { return true };
    let mut n = 1;
    let mut repeated = true;
    for c in chars {
        repeated &= c == first;
        n += 1;
    }
    (repeated && n >= 2) || (v.len() >= 6 && ("01234567890123456789".contains(v) || "98765432109876543210".contains(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_ids_are_blocked_for_every_opaque_kind() {
        let r = IdentityRules::from_config(&IdentityConfig::default(), &Normalizer::new("US").unwrap()).unwrap();
        use IdentifierKind::{AccountId, Call, Case, ChatSession, ChatVisitor, Email, SocialHandle};
        for kind in [AccountId, ChatVisitor, ChatSession, Case, Call] {
            for v in ["0000000000", "00000000-0000-0000-0000-000000000000", "xxxxxx", "123456789", "987654", "--"] {
                assert!(r.is_blocked(&id(kind, v)), "{kind:?} {v}");
            }
            for v in ["A-10023", "7", "c0ffee00", "4815162342", "12345", "ab"] {
                assert!(!r.is_blocked(&id(kind, v)), "{kind:?} {v}");
            }
        }
        assert!(!r.is_blocked(&id(SocialHandle, "x:aaaa")), "a handle is a chosen name");
        assert!(r.is_blocked(&id(Email, "noreply+bounces@shop.example")));
        assert!(!r.is_blocked(&id(Email, "jo+orders@shop.example")));
    }

    fn rules() -> IdentityRules {
        let mut c = IdentityConfig::default();
        c.blocked.insert("email".into(), vec!["Front Desk <FRONTDESK@hotel.com>".into()]);
        IdentityRules::from_config(&c, &Normalizer::new("US").unwrap()).unwrap()
    }

    fn id(kind: IdentifierKind, v: &str) -> Identifier {
        Identifier::new(kind, v)
    }

    #[test]
    fn placeholders_and_operator_values_are_blocked() {
        let r = rules();
        assert!(r.is_placeholder_raw(" N/A "));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "noreply@shop.com")));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "test@test.com")));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "frontdesk@hotel.com")), "operator list is normalized");
        assert!(r.is_blocked(&id(IdentifierKind::Phone, "+15555555555")));
        assert!(r.is_blocked(&id(IdentifierKind::Phone, "+11234567890")));
        assert!(r.is_blocked(&id(IdentifierKind::AccountId, "UNKNOWN")));
        assert!(!r.is_blocked(&id(IdentifierKind::Email, "jo@x.com")));
        assert!(!r.is_blocked(&id(IdentifierKind::Phone, "+14155550134")));
        assert!(!IdentityRules::naive().is_blocked(&id(IdentifierKind::Email, "noreply@shop.com")));
    }

    #[test]
    fn bad_configuration_names_the_key() {
        let n = Normalizer::new("US").unwrap();
        let mut c = IdentityConfig::default();
        c.priority.push("email".into());
        assert_eq!(IdentityRules::from_config(&c, &n).unwrap_err(), RulesError::DuplicatePriority("email".into()));
        let mut c = IdentityConfig::default();
        c.limits.insert("fax".into(), 1);
        assert!(IdentityRules::from_config(&c, &n).unwrap_err().to_string().starts_with("identity.limits: unknown"));
        let mut c = IdentityConfig::default();
        c.limits.insert("email".into(), 0);
        assert_eq!(IdentityRules::from_config(&c, &n).unwrap_err(), RulesError::ZeroLimit("email".into()));
        let mut c = IdentityConfig::default();
        c.keep_newest.insert("case".into(), 0);
        assert_eq!(IdentityRules::from_config(&c, &n).unwrap_err(), RulesError::ZeroKept("case".into()));
        // A limit on a kind with a keep_newest (here the default's) wins.
        let mut c = IdentityConfig::default();
        c.limits.insert("case".into(), 3);
        let r = IdentityRules::from_config(&c, &n).unwrap();
        assert_eq!((r.limit(IdentifierKind::Case), r.kept(IdentifierKind::Case)), (Some(3), None));
    }

    #[test]
    fn default_priority_puts_accounts_first_and_cookies_last() {
        let r = rules();
        assert!(r.rank(IdentifierKind::AccountId) < r.rank(IdentifierKind::Email));
        assert!(r.rank(IdentifierKind::Phone) < r.rank(IdentifierKind::ChatVisitor));
        assert_eq!(r.limit(IdentifierKind::AccountId), Some(1));
        assert_eq!(r.limit(IdentifierKind::Case), None);
    }
}
