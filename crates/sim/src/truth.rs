//! Ground truth: who each event really belongs to, and which of a person's events could be
//! linked at all from the identifiers they carry.
//!
//! The truth is derived from the rendered records, through the same identifier extraction the
//! service uses ([`WireEvent::into_event`]) and a normalization that mirrors the resolver's for
//! every spelling the simulator produces.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use omnistitch_model::{Direction, IdentifierKind, WireEvent};
use serde::{Deserialize, Serialize};

use crate::fields;

/// The truth about one distinct event (duplicate deliveries share it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// The event's id.
    pub event_id: String,
    /// Its tenant.
    pub tenant: String,
    /// Who really sent or received it, unique across tenants (`acme/p0042`).
    pub person: String,
    /// Its linkable cluster: the smallest event id among the events of this person it connects
    /// to through identifiers the person alone owns in the tenant (never one the population
    /// shares, such as a household landline or a team mailbox, even where one member alone
    /// used it).
    pub linkable: String,
}

/// Placeholders that identify nobody, in any identifier field (compared trimmed, lower case).
const PLACEHOLDERS: &[&str] = &["unknown", "n/a", "none", "null", "test", "0000000000", "1234567890"];
/// Placeholder addresses.
const PLACEHOLDER_EMAILS: &[&str] = &["test@test.com", "customer@example.com"];
/// Local parts of addresses that never belong to a person.
const ROBOT_PREFIXES: &[&str] = &["noreply@", "no-reply@", "donotreply@"];

/// What a raw identifier value amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Canon {
    /// A usable identifier with this canonical value.
    Id(String),
    /// A placeholder or an unparseable value: identifies nobody.
    Junk,
    /// Empty.
    Empty,
}

fn canonical_email(v: &str) -> Option<String> {
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(l), Some(r)) if l < r => &v[l + 1..r],
        (None, None) => v,
        _ => return None,
    };
    let addr = addr.trim().to_lowercase();
    let (local, domain) = addr.rsplit_once('@')?;
    if local.is_empty() || !domain.contains('.') || addr.chars().any(char::is_whitespace) {
        return None;
    }
    if PLACEHOLDER_EMAILS.contains(&addr.as_str()) || ROBOT_PREFIXES.iter().any(|p| addr.starts_with(p)) {
        return None;
    }
    Some(addr)
}

/// A North American number in any of the spellings the simulator uses, as E.164.
fn canonical_phone(v: &str) -> Option<String> {
    if !v.chars().all(|c| c.is_ascii_digit() || " ()-.+".contains(c)) {
        return None;
    }
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.len() {
        11 if digits.starts_with('1') => &digits[1..],
        10 => &digits[..],
        _ => return None,
    };
    // Area codes and exchanges never start with 0 or 1.
    let ok = |d: u8| (b'2'..=b'9').contains(&d);
    if !ok(national.as_bytes()[0]) || !ok(national.as_bytes()[3]) {
        return None;
    }
    Some(format!("+1{national}"))
}

fn canonical_handle(v: &str) -> Option<String> {
    let (platform, handle) = v.split_once(':')?;
    let platform = platform.trim().to_lowercase();
    let handle = handle.trim();
    let handle = handle.strip_prefix('@').unwrap_or(handle).to_lowercase();
    (!platform.is_empty() && !handle.is_empty()).then(|| format!("{platform}:{handle}"))
}

/// The canonical value of a raw identifier, or why there is none.
pub(crate) fn canonical(kind: IdentifierKind, raw: &str) -> Canon {
    let v = raw.trim();
    if v.is_empty() {
        return Canon::Empty;
    }
    if PLACEHOLDERS.contains(&v.to_lowercase().as_str()) {
        return Canon::Junk;
    }
    let value = match kind {
        IdentifierKind::Email => canonical_email(v),
        IdentifierKind::Phone => canonical_phone(v),
        IdentifierKind::SocialHandle => canonical_handle(v),
        IdentifierKind::AccountId
        | IdentifierKind::ChatVisitor
        | IdentifierKind::Case
        | IdentifierKind::ChatSession
        | IdentifierKind::Call => Some(v.to_string()),
    };
    value.map_or(Canon::Junk, Canon::Id)
}

/// The customer identifiers of `event`, raw, exactly as [`WireEvent::into_event`] picks them
/// (a test holds the two together); reading them in place spares cloning every record.
pub(crate) fn raw_identifiers(event: &WireEvent) -> Vec<(IdentifierKind, Cow<'_, str>)> {
    fn push<'a>(out: &mut Vec<(IdentifierKind, Cow<'a, str>)>, kind: IdentifierKind, v: Option<&'a str>) {
        // Trimmed, as the service reads opaque ids and addresses.
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            out.push((kind, Cow::Borrowed(v)));
        }
    }
    let mut out = Vec::with_capacity(6);
    let (account, case) = match event {
        WireEvent::Email(e) => {
            let customer = match e.direction {
                Direction::Inbound => Some(e.from.as_str()),
                Direction::Outbound => e.to.first().map(|t| t.as_str()),
                Direction::Internal => None,
            };
            push(&mut out, IdentifierKind::Email, customer);
            (&e.account_id, &e.case_id)
        }
        WireEvent::Chat(e) => {
            push(&mut out, IdentifierKind::ChatVisitor, e.visitor_id.as_deref());
            push(&mut out, IdentifierKind::Email, e.customer_email.as_deref());
            push(&mut out, IdentifierKind::Phone, e.customer_phone.as_deref());
            push(&mut out, IdentifierKind::ChatSession, Some(&e.session_id));
            (&e.account_id, &e.case_id)
        }
        WireEvent::Phone(e) => {
            let customer = match e.direction {
                Direction::Inbound => Some(e.caller.as_str()),
                Direction::Outbound => Some(e.callee.as_str()),
                Direction::Internal => None,
            };
            push(&mut out, IdentifierKind::Phone, customer);
            push(&mut out, IdentifierKind::Call, Some(&e.call_id));
            (&e.account_id, &e.case_id)
        }
        WireEvent::Social(e) => {
            if !e.handle.trim().is_empty() {
                out.push((IdentifierKind::SocialHandle, Cow::Owned(format!("{}:{}", e.platform, e.handle))));
            }
            (&e.account_id, &e.case_id)
        }
    };
    push(&mut out, IdentifierKind::AccountId, account.as_deref());
    push(&mut out, IdentifierKind::Case, case.as_deref());
    out
}

/// The usable canonical identifiers of `event`.
pub(crate) fn keys(event: &WireEvent) -> Vec<(IdentifierKind, String)> {
    raw_identifiers(event)
        .into_iter()
        .filter_map(|(kind, raw)| match canonical(kind, &raw) {
            Canon::Id(v) => Some((kind, v)),
            Canon::Junk | Canon::Empty => None,
        })
        .collect()
}

/// Which events identifiers link, and from when: a union-find over event indexes, by rank and
/// without path compression, each link stamped with the event time of the event that made it.
///
/// Links are made in event-time order, so the stamps grow along every path to a root; the root
/// of an event as of time `t` is the last one reached by links stamped at or before `t`.
pub(crate) struct Links {
    parent: Vec<usize>,
    rank: Vec<u8>,
    since: Vec<i64>,
}

impl Links {
    fn new(n: usize) -> Self {
        Links { parent: (0..n).collect(), rank: vec![0; n], since: vec![i64::MIN; n] }
    }

    fn root(&self, mut x: usize, at: i64) -> usize {
        while self.parent[x] != x && self.since[x] <= at {
            x = self.parent[x];
        }
        x
    }

    /// Links `a` and `b` at time `at` (no earlier than any link made before).
    fn union(&mut self, a: usize, b: usize, at: i64) {
        let (ra, rb) = (self.root(a, i64::MAX), self.root(b, i64::MAX));
        if ra == rb {
            return;
        }
        let (child, parent) = if self.rank[ra] < self.rank[rb] { (ra, rb) } else { (rb, ra) };
        self.parent[child] = parent;
        self.since[child] = at;
        if self.rank[ra] == self.rank[rb] {
            self.rank[parent] = self.rank[parent].saturating_add(1);
        }
    }

    /// Whether events `a` and `b` are linked by what the events up to time `at` carry.
    pub(crate) fn linked_by(&self, a: usize, b: usize, at: i64) -> bool {
        self.root(a, at) == self.root(b, at)
    }

    /// The final cluster of event `x`.
    fn find(&self, x: usize) -> usize {
        self.root(x, i64::MAX)
    }
}

/// Identifiers that belong to no one person: (tenant, kind, canonical value).
pub(crate) type SharedIdentifiers = HashSet<(String, IdentifierKind, String)>;

/// Who uses an identifier within a tenant.
enum Users<'a> {
    One { person: &'a str, first_event: usize },
    Several,
}

/// Which of the distinct `events` (event-time order) identifiers link and from when,
/// `persons[i]` being who `events[i]` belongs to: an identifier links the events of the one
/// person who owns it in the tenant. An identifier in `shared` (the population gives it to
/// several persons) is owned by none, and one several persons use in the data by none either.
pub(crate) fn links(events: &[WireEvent], persons: &[&str], shared: &SharedIdentifiers) -> Links {
    // Each (tenant, kind, value) gets a dense id; `users[id]` says who uses it.
    let mut ids: HashMap<(&str, IdentifierKind, String), usize> = HashMap::new();
    let mut users: Vec<Users<'_>> = Vec::new();
    let mut carried: Vec<(usize, usize)> = Vec::with_capacity(events.len() * 3);
    for (i, e) in events.iter().enumerate() {
        let tenant = fields::tenant(e);
        for (kind, value) in keys(e) {
            let id = *ids.entry((tenant, kind, value)).or_insert_with_key(|(tenant, kind, value)| {
                let owned = !shared.contains(&(tenant.to_string(), *kind, value.clone()));
                users.push(if owned { Users::One { person: persons[i], first_event: i } } else { Users::Several });
                users.len() - 1
            });
            if matches!(users[id], Users::One { person, .. } if person != persons[i]) {
                users[id] = Users::Several;
            }
            carried.push((i, id));
        }
    }
    let mut links = Links::new(events.len());
    for (i, id) in carried {
        if let Users::One { first_event, .. } = users[id] {
            links.union(i, first_event, fields::event_time(&events[i]));
        }
    }
    links
}

/// The truth of distinct `events` linked by `links`, `persons[i]` being who `events[i]` belongs to.
pub(crate) fn build(events: &[WireEvent], persons: &[&str], comps: &Links) -> Vec<TruthRecord> {
    let mut smallest: HashMap<usize, &str> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let id = fields::event_id(e);
        let root = comps.find(i);
        smallest.entry(root).and_modify(|s| *s = (*s).min(id)).or_insert(id);
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| TruthRecord {
            event_id: fields::event_id(e).to_string(),
            tenant: fields::tenant(e).to_string(),
            person: persons[i].to_string(),
            linkable: smallest[&comps.find(i)].to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_identifier_agree() {
        for v in ["Jo Smith <Jo.Smith@X.example>", " JO.SMITH@x.example ", "jo.smith@x.example"] {
            assert_eq!(canonical(IdentifierKind::Email, v), Canon::Id("jo.smith@x.example".into()), "{v}");
        }
        for v in ["(415) 555-0134", "415.555.0134", "+1 415 555 0134", "1-415-555-0134", "+14155550134", "4155550134"] {
            assert_eq!(canonical(IdentifierKind::Phone, v), Canon::Id("+14155550134".into()), "{v}");
        }
        for v in ["X:@JoSmith", "x:josmith", "x: @josmith "] {
            assert_eq!(canonical(IdentifierKind::SocialHandle, v), Canon::Id("x:josmith".into()), "{v}");
        }
        assert_eq!(canonical(IdentifierKind::AccountId, " A0042 "), Canon::Id("A0042".into()));
    }

    #[test]
    fn placeholders_identify_nobody() {
        for (k, v) in [
            (IdentifierKind::Email, "n/a"),
            (IdentifierKind::Email, "Test@Test.com"),
            (IdentifierKind::Email, "noreply@mail.example"),
            (IdentifierKind::Email, "customer@example.com"),
            (IdentifierKind::Phone, "0000000000"),
            (IdentifierKind::Phone, "1234567890"),
            (IdentifierKind::Phone, "unknown"),
            (IdentifierKind::AccountId, "NULL"),
        ] {
            assert_eq!(canonical(k, v), Canon::Junk, "{v}");
        }
        assert_eq!(canonical(IdentifierKind::Email, "  "), Canon::Empty);
    }

    /// The simulator's phone normalization must agree with libphonenumber's, which the resolver
    /// uses: every number it spells is valid and maps to the same E.164, every placeholder fails.
    #[test]
    fn phone_spellings_agree_with_libphonenumber() {
        use phonenumber::country::Id;
        let world = crate::generate(&crate::SimConfig { customers: 200, ..crate::SimConfig::default() }).unwrap();
        let mut checked = 0;
        for e in &world.events {
            for (_, raw) in raw_identifiers(e).into_iter().filter(|(kind, _)| *kind == IdentifierKind::Phone) {
                let parsed = phonenumber::parse(Some(Id::US), raw.trim())
                    .ok()
                    .filter(phonenumber::is_valid)
                    .map(|n| n.format().mode(phonenumber::Mode::E164).to_string());
                match canonical(IdentifierKind::Phone, &raw) {
                    Canon::Id(v) => assert_eq!(parsed.as_deref(), Some(v.as_str()), "{raw}"),
                    _ => assert_eq!(parsed, None, "{raw}"),
                }
                checked += 1;
            }
        }
        assert!(checked > 100);
    }

    /// The truth must see exactly the identifiers the service extracts.
    #[test]
    fn identifiers_are_read_as_the_service_reads_them() {
        let world = crate::generate(&crate::SimConfig { customers: 100, ..crate::SimConfig::default() }).unwrap();
        for e in &world.events {
            let mut ours: Vec<(IdentifierKind, String)> =
                raw_identifiers(e).into_iter().map(|(k, v)| (k, v.into_owned())).collect();
            let mut theirs: Vec<(IdentifierKind, String)> = e
                .clone()
                .into_event(omnistitch_model::Tenant::new)
                .unwrap()
                .identifiers
                .into_iter()
                .map(|r| (r.kind, r.value.into_string()))
                .collect();
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{e:?}");
        }
    }
}
