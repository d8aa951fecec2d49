//! Identity rules: what may link, how much one profile may hold, and which identifier wins.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use hashbrown::HashSet;

use omnistitch_model::text::trim;
use omnistitch_model::{Identifier, IdentifierKind, RawIdentifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::normalize::{canonical_handle, NormalizeError, Normalizer};

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
    /// Operator-supplied values that never link, per kind (written in any format). A social
    /// handle without a platform (`unknown`, `@acme`) is blocked on every platform; a phone
    /// number is blocked with every extension. A value with no canonical form is refused.
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
    /// A blocked value with no canonical form: it could never match an identifier. The value
    /// itself is not repeated (it may be personal data).
    #[error("identity.blocked.{list}[{index}]: not a valid {list} value ({reason})")]
    UnusableBlocked {
        /// The list (an identifier kind name).
        list: String,
        /// Where the value is in the list, from 0.
        index: usize,
        /// Why it has no canonical form (a normalization reason code).
        reason: &'static str,
    },
    /// A role mailbox entry that is not a bare local part (`frontdesk`, not
    /// `frontdesk@hotel.com` or `frontdesk+tag`): it could never match.
    #[error("identity.role_mailboxes[{index}]: not a local part alone (no `@`, `+` or spaces)")]
    UnusableRoleMailbox {
        /// Where the entry is in the list, from 0.
        index: usize,
    },
}

/// A role mailbox entry as the local parts of normalized addresses spell it (compatibility
/// form, lower case), if it is a local part alone.
fn role_local_part(entry: &str) -> Option<String> {
    let lower = crate::email::compatibility_mapped(entry.trim()).to_lowercase();
    let part = crate::email::compatibility_mapped(&lower).into_owned();
    let bare = !part.is_empty() && !part.contains(['@', '+']) && !crate::normalize::has_bad_chars(&part);
    bare.then_some(part)
}

/// The built-in email lists as hash sets: every email identifier is checked against them.
struct EmailLists {
    placeholder_emails: HashSet<&'static str>,
    automated_local_parts: HashSet<&'static str>,
    placeholder_local_parts: HashSet<&'static str>,
    placeholder_domain_names: HashSet<&'static str>,
}

static EMAIL_LISTS: LazyLock<EmailLists> = LazyLock::new(|| EmailLists {
    placeholder_emails: PLACEHOLDER_EMAILS.iter().copied().collect(),
    automated_local_parts: AUTOMATED_LOCAL_PARTS.iter().copied().collect(),
    placeholder_local_parts: PLACEHOLDER_LOCAL_PARTS.iter().copied().collect(),
    placeholder_domain_names: PLACEHOLDER_DOMAIN_NAMES.iter().copied().collect(),
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
    /// Operator-blocked handles on every platform (listed without a platform).
    blocked_handles: HashSet<String>,
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

/// Local parts that are placeholders on any domain: no one's mailbox is called that. Kept
/// short on purpose: `test@`, `guest@`, initials such as `na@` can be real addresses.
const PLACEHOLDER_LOCAL_PARTS: &[&str] =
    &["noemail", "no-email", "no_email", "no.email", "nomail", "none", "n/a", "null", "unknown", "undefined"];

/// Domain names (first label) that are placeholders whatever follows: `none.net`, `noemail.com`.
const PLACEHOLDER_DOMAIN_NAMES: &[&str] = &["none", "noemail", "no-email", "nomail"];

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
    "no.reply",
    "do.not.reply",
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
        let (blocked, blocked_handles) = blocked_values(config, normalizer)?;
        let mut personal = [false; IdentifierKind::ALL.len()];
        for name in &config.personal_kinds {
            personal[kind("personal_kinds", name)?.index()] = true;
        }
        let mut weak = [false; IdentifierKind::ALL.len()];
        for name in &config.weak_kinds {
            weak[kind("weak_kinds", name)?.index()] = true;
        }
        let mut roles: HashSet<String> = HashSet::new();
        if !config.role_mailboxes_link {
            roles.extend(ROLE_LOCAL_PARTS.iter().map(|s| s.to_string()));
            for (index, entry) in config.role_mailboxes.iter().enumerate() {
                roles.insert(role_local_part(entry).ok_or(RulesError::UnusableRoleMailbox { index })?);
            }
        }
        Ok(IdentityRules {
            rank,
            limits,
            kept,
            kept_kinds: IdentifierKind::ALL.into_iter().filter_map(|k| Some((k, kept[k.index()]?))).collect(),
            blocked,
            blocked_handles,
            builtin_placeholders: config.builtin_placeholders,
            mark_shared_on_conflict: config.mark_shared_on_conflict,
            personal,
            weak,
            shared_line_types: config.shared_line_types.iter().map(|t| line_type(t)).collect(),
            role_mailboxes: roles,
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
            blocked_handles: HashSet::new(),
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
            // Compared as the configured types are kept: trimmed, ASCII lowercase.
            IdentifierKind::Phone => {
                qualifier.is_some_and(|q| self.shared_line_types.iter().any(|t| t.eq_ignore_ascii_case(q.trim())))
            }
            // `support+acme@...` is the support mailbox too.
            IdentifierKind::Email => {
                !self.role_mailboxes.is_empty() && self.role_mailboxes.contains(untagged_local_part(&id.value))
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

    /// Whether a raw value of `kind` is a placeholder, before any normalization (for a social
    /// handle, `platform:handle`, the handle).
    pub fn is_placeholder_raw(&self, kind: IdentifierKind, raw: &str) -> bool {
        let v = match kind {
            IdentifierKind::SocialHandle => raw_handle(raw),
            _ => trim(raw),
        };
        self.builtin_placeholders && is_placeholder_word(v)
    }

    /// Whether a normalized identifier is blocked.
    pub fn is_blocked(&self, id: &Identifier) -> bool {
        self.is_operator_blocked(id) || (self.builtin_placeholders && is_builtin_placeholder(id))
    }

    /// Whether the operator's lists block `id`: a phone number also with every extension.
    fn is_operator_blocked(&self, id: &Identifier) -> bool {
        if !self.blocked.is_empty() && self.blocked.contains(id) {
            return true;
        }
        match id.kind {
            IdentifierKind::SocialHandle => {
                !self.blocked_handles.is_empty() && self.blocked_handles.contains(handle_part(&id.value))
            }
            IdentifierKind::Phone => id.value.split_once(';').is_some_and(|(number, _)| {
                !self.blocked.is_empty() && self.blocked.contains(&Identifier::new(IdentifierKind::Phone, number))
            }),
            // A blocked mailbox with every `+tag` (a relay's or team mailbox's tagged copies).
            IdentifierKind::Email => {
                !self.blocked.is_empty()
                    && untagged(&id.value)
                        .is_some_and(|v| self.blocked.contains(&Identifier::new(IdentifierKind::Email, &v)))
            }
            _ => false,
        }
    }
}

/// The operator's blocked values, normalized: identifiers, and handles blocked on every
/// platform (social handles listed without a platform). A value that does not normalize could
/// never match: it is refused, by list and position.
fn blocked_values(
    config: &IdentityConfig,
    normalizer: &Normalizer,
) -> Result<(HashSet<Identifier>, HashSet<String>), RulesError> {
    let mut blocked = HashSet::new();
    let mut handles = HashSet::new();
    for (name, values) in &config.blocked {
        let k = kind("blocked", name)?;
        for (index, v) in values.iter().enumerate() {
            let unusable =
                |e: NormalizeError| RulesError::UnusableBlocked { list: name.clone(), index, reason: e.code() };
            if k == IdentifierKind::SocialHandle && !v.contains(':') {
                handles.insert(canonical_handle(v).map_err(unusable)?);
            } else {
                blocked.insert(normalizer.normalize(&RawIdentifier::new(k, v.as_str())).map_err(unusable)?);
            }
        }
    }
    Ok((blocked, handles))
}

/// A phone line type as compared: trimmed, ASCII lowercase.
fn line_type(t: &str) -> String {
    t.trim().to_ascii_lowercase()
}

/// One of the built-in placeholder words (`unknown`, `n/a`...), in any case.
fn is_placeholder_word(v: &str) -> bool {
    v.len() <= 16 && PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(v))
}

/// The handle of a raw `platform:handle` value, trimmed and without a leading `@`.
fn raw_handle(raw: &str) -> &str {
    let handle = trim(raw.split_once(':').map_or(raw, |(_, h)| h));
    handle.strip_prefix('@').unwrap_or(handle)
}

/// The handle of a canonical `platform:handle` value.
fn handle_part(v: &str) -> &str {
    v.split_once(':').map_or(v, |(_, h)| h)
}

/// `v` (an address) without the `+tag` of its local part, if it has one.
fn untagged(v: &str) -> Option<String> {
    let (local, domain) = v.rsplit_once('@')?;
    let untagged = untagged_local_part(v);
    (untagged.len() < local.len()).then(|| format!("{untagged}@{domain}"))
}

/// The local part of a canonical email address without its `+tag`.
fn untagged_local_part(v: &str) -> &str {
    let local = v.rsplit_once('@').map_or(v, |(l, _)| l);
    local.split_once('+').map_or(local, |(l, _)| l)
}

/// Whether a normalized identifier is one of the built-in placeholders or filler.
fn is_builtin_placeholder(id: &Identifier) -> bool {
    let v: &str = &id.value;
    match id.kind {
        IdentifierKind::Email => is_placeholder_email(v),
        IdentifierKind::Phone => is_filler_phone(v),
        // A handle is a name its owner chose: only the listed placeholders.
        IdentifierKind::SocialHandle => is_placeholder_word(handle_part(v)),
        _ => is_placeholder_word(v) || filler(v),
    }
}

/// A placeholder or automated address: a listed one, an automated sender or a placeholder
/// local part on any domain (`noreply+bounces@...`, `noemail@gmail.com`), any address at the
/// example domains people type into forms for want of an address, where no mailbox can be
/// (`you@example.com`, `a@mail.example.org`), or at a placeholder domain (`none@none.net`).
fn is_placeholder_email(v: &str) -> bool {
    let lists = &*EMAIL_LISTS;
    let local = untagged_local_part(v);
    let domain = v.rsplit_once('@').map_or("", |(_, d)| d);
    let domain_name = domain.split('.').next().unwrap_or(domain);
    lists.placeholder_emails.contains(v)
        || untagged(v).is_some_and(|v| lists.placeholder_emails.contains(v.as_str()))
        || lists.automated_local_parts.contains(local)
        || lists.placeholder_local_parts.contains(local)
        || is_reserved_domain(domain)
        || lists.placeholder_domain_names.contains(domain_name)
}

/// The second-level example domains reserved by RFC 2606 (`example.com`, `.net`, `.org`) and
/// their subdomains. The reserved top-level names (`.example`, `.test`, `.invalid`) are not
/// listed: nobody types them into a form, and test fixtures and simulations use them for
/// mailboxes that stand for real ones.
fn is_reserved_domain(domain: &str) -> bool {
    let under = |suffix: &str| domain.strip_suffix(suffix).is_some_and(|rest| rest.is_empty() || rest.ends_with('.'));
    ["example.com", "example.net", "example.org"].into_iter().any(under)
}

/// A phone number whose whole national number is one digit repeated or a counting run
/// (`+1 555 555 5555`, `+1 123 456 7890`); a run in its last digits alone is not filler
/// (`+1 212 345 6789` is a real number).
fn is_filler_phone(v: &str) -> bool {
    let Some(national) = crate::phone::national_digits(v).filter(|n| !n.is_empty()) else {
        return false;
    };
    let first = national.as_bytes()[0];
    national.bytes().all(|b| b == first) || is_counting_run(national)
}

/// Whether `v` is at most 20 digits, each one more (or each one less) than the one before,
/// 9 and 0 following each other: a run such as `123456789`, `7890123` or `9876543210`.
fn is_counting_run(v: &str) -> bool {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let step = |d: i8| b.windows(2).all(|w| (w[0] as i8 - b'0' as i8 + d).rem_euclid(10) == (w[1] - b'0') as i8);
    step(1) || step(-1)
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
    (repeated && n >= 2) || (v.len() >= 6 && is_counting_run(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Role mailbox entries are local parts alone, spelled as normalized addresses spell them;
    /// one written as an address or with a tag could never match, and is refused.
    #[test]
    fn role_mailbox_entries_must_be_local_parts() {
        let n = Normalizer::new("US").unwrap();
        let with = |roles: &[&str]| {
            let config =
                IdentityConfig { role_mailboxes: roles.iter().map(|r| r.to_string()).collect(), ..Default::default() };
            IdentityRules::from_config(&config, &n)
        };
        for bad in ["frontdesk@hotel.com", "frontdesk+vip", "front desk", " "] {
            assert!(matches!(with(&["concierge", bad]), Err(RulesError::UnusableRoleMailbox { index: 1 })), "{bad:?}");
        }
        let r = with(&[" FrontDesk ", "\u{ff42}ar"]).unwrap();
        for address in ["frontdesk@hotel.com", "frontdesk+vip@hotel.com", "bar@hotel.com"] {
            assert!(r.is_shared_by_nature(&id(IdentifierKind::Email, address), None), "{address}");
        }
        // With role mailboxes linking, the list is not used.
        let config = IdentityConfig { role_mailboxes_link: true, ..Default::default() };
        assert!(!IdentityRules::from_config(&config, &n)
            .unwrap()
            .is_shared_by_nature(&id(IdentifierKind::Email, "support@x.com"), None));
    }

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
        assert!(r.is_blocked(&id(Email, "noreply+bounces@shop.io")));
        assert!(!r.is_blocked(&id(Email, "jo+orders@shop.io")));
    }

    #[test]
    fn counting_runs_go_up_or_down_through_nine_and_zero() {
        for v in ["0123", "123456789", "7890123", "9876543210", "3210987", "01234567890123456789"] {
            assert!(is_counting_run(v), "{v}");
        }
        for v in ["", "1235", "12a4", "112233", "012345678901234567890", "１２３４"] {
            assert!(!is_counting_run(v), "{v}");
        }
        // Every run the two 20-digit strings hold is one.
        for text in ["01234567890123456789", "98765432109876543210"] {
            for start in 0..text.len() {
                for end in start + 1..=text.len() {
                    assert!(is_counting_run(&text[start..end]), "{}", &text[start..end]);
                }
            }
        }
    }

    #[test]
    fn reserved_domains_match_whole_labels() {
        for d in ["example.com", "mail.example.org", "a.b.example.net"] {
            assert!(is_reserved_domain(d), "{d}");
        }
        for d in ["myexample.com", "example.com.au", "example.co", "xexample.org", ""] {
            assert!(!is_reserved_domain(d), "{d}");
        }
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
        assert!(r.is_placeholder_raw(IdentifierKind::Email, " N/A "));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "noreply@shop.com")));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "test@test.com")));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "frontdesk@hotel.com")), "operator list is normalized");
        // A blocked mailbox's tagged copies are blocked too; an address that only shares its
        // start is not.
        assert!(r.is_blocked(&id(IdentifierKind::Email, "frontdesk+8812@hotel.com")));
        assert!(r.is_blocked(&id(IdentifierKind::Email, "test+1@test.com")));
        assert!(!r.is_blocked(&id(IdentifierKind::Email, "frontdesk2@hotel.com")));
        assert!(!r.is_blocked(&id(IdentifierKind::Email, "frontdesk+1@hotel.org")));
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

    fn rules_with(edit: impl FnOnce(&mut IdentityConfig)) -> Result<IdentityRules, RulesError> {
        let mut c = IdentityConfig::default();
        edit(&mut c);
        IdentityRules::from_config(&c, &Normalizer::new("US").unwrap())
    }

    /// `raw` of `kind` normalized under US rules.
    fn normalized(kind: IdentifierKind, raw: &str) -> Identifier {
        Normalizer::new("US").unwrap().normalize(&RawIdentifier::new(kind, raw)).unwrap()
    }

    #[test]
    fn placeholder_handles_are_blocked_on_every_platform() {
        let r = rules();
        use IdentifierKind::SocialHandle;
        for raw in ["x:unknown", "x:@Unknown", "twitter:anonymous", "facebook:null", "x:guest", "x:\u{ff35}NKNOWN"] {
            assert!(r.is_blocked(&normalized(SocialHandle, raw)), "{raw}");
        }
        // `N/A` is no handle (a `/`), and a placeholder before it is normalized.
        assert!(r.is_placeholder_raw(SocialHandle, "instagram:N/A"));
        assert!(r.is_placeholder_raw(SocialHandle, "x: not provided"));
        assert!(r.is_placeholder_raw(SocialHandle, "x:@unknown"));
        assert!(!r.is_placeholder_raw(SocialHandle, "x:josmith"));
        for raw in ["x:josmith", "x:unknown_jo", "instagram:nullpointer"] {
            assert!(!r.is_blocked(&normalized(SocialHandle, raw)), "{raw}");
        }
    }

    #[test]
    fn an_operator_handle_without_a_platform_is_blocked_on_every_platform() {
        let r = rules_with(|c| {
            c.builtin_placeholders = false;
            c.blocked.insert("social_handle".into(), vec!["@AcmeSupport".into(), "fb:acme_shop".into()]);
        })
        .unwrap();
        use IdentifierKind::SocialHandle;
        for raw in ["x:acmesupport", "instagram:@ACMESUPPORT", "facebook:acme_shop"] {
            assert!(r.is_blocked(&normalized(SocialHandle, raw)), "{raw}");
        }
        assert!(!r.is_blocked(&normalized(SocialHandle, "x:acme_shop")), "listed with its platform");
    }

    #[test]
    fn an_operator_value_that_does_not_normalize_is_refused_by_list_and_position() {
        let err = rules_with(|c| {
            c.blocked.insert("phone".into(), vec!["+44 (0) 20 7946 0958".into(), "555-SECRET-99".into()]);
        })
        .unwrap_err();
        assert_eq!(err, RulesError::UnusableBlocked { list: "phone".into(), index: 1, reason: "invalid_phone" });
        let message = err.to_string();
        assert!(message.starts_with("identity.blocked.phone[1]"), "{message}");
        assert!(!message.contains("SECRET"), "{message}");
        let err = rules_with(|c| {
            c.blocked.insert("email".into(), vec!["jo@x.com".into(), "ann@y.com".into(), "unknown".into()]);
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "identity.blocked.email[2]: not a valid email value (invalid_email)");
        let err = rules_with(|c| {
            c.blocked.insert("social_handle".into(), vec!["@".into()]);
        })
        .unwrap_err();
        assert_eq!(
            err,
            RulesError::UnusableBlocked { list: "social_handle".into(), index: 0, reason: "invalid_handle" }
        );
        // A phone number blocked in any spelling, with its extensions.
        let r = rules_with(|c| {
            c.blocked.insert("phone".into(), vec!["+44 (0) 20 7946 0958".into()]);
        })
        .unwrap();
        assert!(r.is_blocked(&id(IdentifierKind::Phone, "+442079460958")));
        assert!(r.is_blocked(&id(IdentifierKind::Phone, "+442079460958;ext=12")));
        assert!(!r.is_blocked(&id(IdentifierKind::Phone, "+442079460959")));
    }

    #[test]
    fn placeholder_local_parts_and_domains_are_blocked_on_any_domain() {
        let r = rules();
        use IdentifierKind::Email;
        for raw in [
            "noemail@gmail.com",
            "NoEmail@gmail.com",
            "no-email@yahoo.com",
            "none@gmail.com",
            "n/a@outlook.com",
            "null@gmail.com",
            "unknown@hotmail.com",
            "no.reply@shop.com",
            "noreply+orders@shop.com",
            "donotreply@bank.com",
            "none@none.net",
            "jo@noemail.com",
            "a@none.co.uk",
        ] {
            assert!(r.is_blocked(&normalized(Email, raw)), "{raw}");
        }
        // Real people can have these.
        for raw in ["test@gmail.com", "na@smallfirm.de", "guest@hotel.com", "jo@nonexistent.com", "nonie@x.com"] {
            assert!(!r.is_blocked(&normalized(Email, raw)), "{raw}");
        }
    }

    /// No mailbox can be at the reserved example domains: any address there is a placeholder,
    /// whatever its local part (`you@example.org` typed by two strangers).
    #[test]
    fn addresses_at_reserved_domains_are_blocked() {
        let r = rules();
        use IdentifierKind::Email;
        for raw in ["email@example.com", "Name@Example.COM", "you@example.org", "jo@example.net", "a@mail.example.com"]
        {
            assert!(r.is_blocked(&normalized(Email, raw)), "{raw}");
        }
        for raw in [
            "jo@myexample.com",
            "jo@example.co.uk",
            "jo@contest.io",
            "jo@testing.com",
            "jo@example.com.au",
            "jo@acme.example",
        ] {
            assert!(!r.is_blocked(&normalized(Email, raw)), "{raw}");
        }
    }

    #[test]
    fn a_tagged_role_mailbox_is_a_role_mailbox() {
        let r = rules();
        let shared = |v: &str| r.is_shared_by_nature(&normalized(IdentifierKind::Email, v), None);
        assert!(shared("support+acme@shop.com"));
        assert!(shared("Support@shop.com"));
        assert!(!shared("jo+support@shop.com"));
    }

    #[test]
    fn a_run_must_cover_the_whole_national_number() {
        let r = rules();
        let blocked = |v: &str| r.is_blocked(&normalized(IdentifierKind::Phone, v));
        for v in ["+1 212 345 6789", "+1 201 234 5678", "+44 20 3456 7890", "+49 30 1234567"] {
            assert!(!blocked(v), "{v}");
        }
        // Filler by the whole national number, whatever the country code's length.
        for v in ["+15555555555", "+11234567890", "+19876543210", "+15555555555;ext=1", "+441234567890", "+4911111111"]
        {
            assert!(r.is_blocked(&id(IdentifierKind::Phone, v)), "{v}");
        }
    }

    #[test]
    fn line_types_match_whatever_their_case_and_padding() {
        let r = rules_with(|c| c.shared_line_types = vec![" Landline ".into(), "VOIP".into()]).unwrap();
        let phone = normalized(IdentifierKind::Phone, "+1 212 555 0199");
        for q in ["landline", "LANDLINE", " Landline ", "voip", "VoIP "] {
            assert!(r.is_shared_by_nature(&phone, Some(q)), "{q}");
        }
        assert!(!r.is_shared_by_nature(&phone, Some("mobile")));
        assert!(!r.is_shared_by_nature(&phone, None));
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
