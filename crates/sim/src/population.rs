//! Who exists: each tenant's brand and customers, with the identifiers they own or share.
//!
//! Identifiers are stored canonical (emails lower case, phones as ten national digits, handles
//! without `@`); [`crate::render`] decides how each appearance is spelled.

use std::collections::{HashMap, HashSet};

use omnistitch_model::IdentifierKind;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::ids::{derive_seed, IdGen, IdSpace};
use crate::text::{AREA_CODES, COMPANIES, FIRST_NAMES, LAST_NAMES, MAIL_DOMAINS, PLATFORMS, TEAM_ROLES};
use crate::truth::{canonical, Canon, SharedIdentifiers};

/// The seed stream of the population (persons' own streams are `1 << 32 | global index`).
const POPULATION_STREAM: u64 = 1;

/// A tenant's side of every conversation.
#[derive(Debug, Clone)]
pub(crate) struct Brand {
    pub(crate) tenant: String,
    pub(crate) support_email: String,
    /// The brand's hotline, E.164.
    pub(crate) number: String,
    pub(crate) agents: Vec<String>,
}

/// A social handle: canonical platform and handle (no `@`, original capitalization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handle {
    pub(crate) platform: &'static str,
    pub(crate) handle: String,
}

/// One customer of one tenant.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    /// `tenant/pNNNN`.
    pub(crate) id: String,
    pub(crate) tenant: usize,
    /// Index across all tenants; seeds the person's random stream and ids.
    pub(crate) global: u64,
    pub(crate) first: &'static str,
    pub(crate) last: &'static str,
    /// Canonical addresses; the first is the primary one.
    pub(crate) emails: Vec<String>,
    /// Mobile numbers, ten national digits.
    pub(crate) mobiles: Vec<String>,
    pub(crate) handles: Vec<Handle>,
    pub(crate) account: Option<String>,
    pub(crate) visitors: Vec<String>,
    /// Index into [`Population::households`].
    pub(crate) household: Option<usize>,
    /// Index into [`Population::teams`].
    pub(crate) team: Option<usize>,
    /// Preference weights of email, chat, phone, social (in [`omnistitch_model::Channel::ALL`] order).
    pub(crate) channel_weights: [f64; 4],
}

/// People sharing a landline.
#[derive(Debug, Clone)]
pub(crate) struct Household {
    /// Ten national digits.
    pub(crate) landline: String,
}

/// People sharing a team mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Team {
    pub(crate) mailbox: String,
}

/// Everyone in the world.
#[derive(Debug, Clone)]
pub(crate) struct Population {
    pub(crate) brands: Vec<Brand>,
    pub(crate) persons: Vec<Person>,
    pub(crate) households: Vec<Household>,
    pub(crate) teams: Vec<Team>,
}

/// `name` in lower-case ASCII, fit for an email local part.
fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match c {
            'ü' => out.push_str("ue"),
            'ö' => out.push_str("oe"),
            'ä' => out.push_str("ae"),
            c if c.is_ascii_alphanumeric() => out.push(c),
            _ => {}
        }
    }
    out
}

/// Hands out values never handed out before.
#[derive(Default)]
struct Unique {
    seen: HashSet<String>,
}

impl Unique {
    /// The first candidate not yet taken; `make(n)` builds the n-th candidate.
    fn take(&mut self, mut make: impl FnMut(u32) -> String) -> String {
        let mut n = 0;
        loop {
            let v = make(n);
            if self.seen.insert(v.clone()) {
                return v;
            }
            n += 1;
        }
    }
}

struct Builder<'a> {
    config: &'a SimConfig,
    rng: ChaCha8Rng,
    ids: IdGen,
    emails: Unique,
    phones: Unique,
    handles: Unique,
}

impl Builder<'_> {
    fn phone(&mut self) -> String {
        let rng = &mut self.rng;
        // 555 numbers are reserved for fiction; libphonenumber still takes them as valid.
        self.phones.take(|_| {
            let area = AREA_CODES.choose(rng).copied().unwrap_or("415");
            format!("{area}555{:04}", rng.random_range(0..10_000))
        })
    }

    fn personal_email(&mut self, first: &str, last: &str) -> String {
        let (f, l) = (slug(first), slug(last));
        let rng = &mut self.rng;
        let domain = MAIL_DOMAINS.choose(rng).copied().unwrap_or("mail.example");
        let style = rng.random_range(0..4);
        let num = rng.random_range(1..100);
        self.emails.take(|n| {
            let local = match style {
                0 => format!("{f}.{l}"),
                1 => format!("{f}{l}{num}"),
                2 => format!("{}.{l}", &f[..1.min(f.len())]),
                _ => format!("{f}_{l}"),
            };
            if n == 0 {
                format!("{local}@{domain}")
            } else {
                format!("{local}{}@{domain}", n + 1)
            }
        })
    }

    fn work_email(&mut self, first: &str, last: &str) -> String {
        let (f, l) = (slug(first), slug(last));
        let company = COMPANIES.choose(&mut self.rng).copied().unwrap_or("hooli");
        self.emails.take(|n| {
            if n == 0 {
                format!("{f}.{l}@{company}.example")
            } else {
                format!("{f}.{l}{n}@{company}.example")
            }
        })
    }

    fn handle(&mut self, platform: &'static str, first: &str, last: &str) -> Handle {
        let rng = &mut self.rng;
        let num = rng.random_range(1..1000);
        let short = rng.random_bool(0.5);
        let (f, l) = (slug(first), slug(last));
        let cap = |s: &str| {
            let mut c = s.chars();
            c.next().map(|h| h.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        };
        let base = if short { format!("{}{}", cap(&f), cap(&l)) } else { format!("{f}_{l}{num}") };
        // Uniqueness is case-insensitive, like the resolver's comparison.
        let mut n = 0;
        loop {
            let shown = if n == 0 { base.clone() } else { format!("{base}{n}") };
            if self.handles.seen.insert(format!("{platform}:{}", shown.to_lowercase())) {
                return Handle { platform, handle: shown };
            }
            n += 1;
        }
    }

    fn person(&mut self, tenant: usize, index: usize, global: u64, twin: Option<&Person>) -> Person {
        let rng = &mut self.rng;
        let (first, last) = match twin {
            Some(t) => (t.first, t.last),
            None => {
                (FIRST_NAMES.choose(rng).copied().unwrap_or("Jo"), LAST_NAMES.choose(rng).copied().unwrap_or("Smith"))
            }
        };
        let mut emails = Vec::with_capacity(2);
        match twin {
            // The same human at another brand: same address, same phone, same handles.
            Some(t) => emails.push(t.emails[0].clone()),
            None => emails.push(self.personal_email(first, last)),
        }
        if self.rng.random_bool(0.35) {
            let e = self.work_email(first, last);
            emails.push(e);
        }
        let mobiles = match twin {
            Some(t) => t.mobiles.clone(),
            None => {
                let n = match self.rng.random_range(0..100) {
                    0..15 => 0,
                    15..85 => 1,
                    _ => 2,
                };
                (0..n).map(|_| self.phone()).collect()
            }
        };
        let handles = match twin {
            Some(t) => t.handles.clone(),
            None => {
                let mut hs = Vec::new();
                for &(platform, p) in PLATFORMS {
                    if self.rng.random_bool(p) {
                        hs.push(self.handle(platform, first, last));
                    }
                }
                hs
            }
        };
        let account = self.rng.random_bool(0.75).then(|| self.ids.account(global));
        let devices = if self.rng.random_bool(0.4) { 2 } else { 1 };
        let visitors = (0..devices).map(|d| format!("v-{}", self.ids.hex(IdSpace::Visitor, global << 4 | d))).collect();
        let base = [0.30, 0.28, 0.30, 0.20];
        let channel_weights = base.map(|w| w * self.rng.random_range(0.3..1.7));
        Person {
            id: format!("{}/p{index:04}", self.config.tenants[tenant]),
            tenant,
            global,
            first,
            last,
            emails,
            mobiles,
            handles,
            account,
            visitors,
            household: None,
            team: None,
            channel_weights,
        }
    }

    /// Groups a share of `members` into groups of `min..=max`; returns the groups.
    fn groups(&mut self, mut members: Vec<usize>, share: f64, min: usize, max: usize) -> Vec<Vec<usize>> {
        members.shuffle(&mut self.rng);
        let target = (members.len() as f64 * share).round() as usize;
        let mut out = Vec::new();
        let mut taken = 0;
        while taken < target && members.len() - taken >= min {
            let size = self.rng.random_range(min..=max).min(members.len() - taken);
            out.push(members[taken..taken + size].to_vec());
            taken += size;
        }
        out
    }
}

/// Draws the population of `config` (already validated).
pub(crate) fn populate(config: &SimConfig) -> Population {
    let mut b = Builder {
        config,
        rng: ChaCha8Rng::seed_from_u64(derive_seed(config.seed, POPULATION_STREAM)),
        ids: IdGen::new(config.seed),
        emails: Unique::default(),
        phones: Unique::default(),
        handles: Unique::default(),
    };
    let tenants = config.tenants.len();
    let brands = config
        .tenants
        .iter()
        .enumerate()
        .map(|(t, tenant)| Brand {
            tenant: tenant.clone(),
            support_email: format!("support@{tenant}.example"),
            number: format!("+1800555{:04}", 100 + t),
            agents: (1..=12 + 4 * (t % 3)).map(|a| format!("{tenant}.agent{a:03}")).collect(),
        })
        .collect();
    let mut persons: Vec<Person> = Vec::with_capacity(config.customers);
    let mut households = Vec::new();
    let mut teams = Vec::new();
    for t in 0..tenants {
        let count = config.customers / tenants + usize::from(t < config.customers % tenants);
        let first_of_tenant = persons.len();
        // Earlier tenants' persons whose address this tenant has not reused yet.
        let mut twins: Vec<usize> = (0..first_of_tenant).collect();
        twins.shuffle(&mut b.rng);
        for i in 0..count {
            let twin = if !twins.is_empty() && b.rng.random_bool(config.hard_cases.cross_tenant) {
                twins.pop().map(|k| persons[k].clone())
            } else {
                None
            };
            let global = persons.len() as u64;
            let p = b.person(t, i, global, twin.as_ref());
            persons.push(p);
        }
        let members: Vec<usize> = (first_of_tenant..persons.len()).collect();
        for group in b.groups(members.clone(), config.hard_cases.household, 2, 4) {
            let landline = b.phone();
            for &m in &group {
                persons[m].household = Some(households.len());
            }
            households.push(Household { landline });
        }
        for group in b.groups(members, config.hard_cases.team_mailbox, 2, 5) {
            let role = TEAM_ROLES.choose(&mut b.rng).copied().unwrap_or("ops");
            let company = COMPANIES.choose(&mut b.rng).copied().unwrap_or("hooli");
            let mailbox = b.emails.take(|n| {
                if n == 0 {
                    format!("{role}@{company}.example")
                } else {
                    format!("{role}@{company}{n}.example")
                }
            });
            for &m in &group {
                persons[m].team = Some(teams.len());
            }
            teams.push(Team { mailbox });
        }
    }
    Population { brands, persons, households, teams }
}

impl Population {
    /// The identifiers the population gives to more than one person of a tenant, canonical
    /// (household landlines, team mailboxes, and any other the population shares), whoever
    /// turns out to use them: none of them belongs to a person alone. A person's twin at
    /// another tenant (the same human, the same address) shares nothing: identity is per
    /// tenant.
    pub(crate) fn shared_identifiers(&self) -> SharedIdentifiers {
        let mut holders: HashMap<(&str, IdentifierKind, String), HashSet<usize>> = HashMap::new();
        for (i, p) in self.persons.iter().enumerate() {
            let tenant = self.brands[p.tenant].tenant.as_str();
            let handles: Vec<String> = p.handles.iter().map(|h| format!("{}:{}", h.platform, h.handle)).collect();
            let given = p
                .emails
                .iter()
                .map(|e| (IdentifierKind::Email, e.as_str()))
                .chain(p.team.map(|t| (IdentifierKind::Email, self.teams[t].mailbox.as_str())))
                .chain(p.mobiles.iter().map(|m| (IdentifierKind::Phone, m.as_str())))
                .chain(p.household.map(|h| (IdentifierKind::Phone, self.households[h].landline.as_str())))
                .chain(handles.iter().map(|h| (IdentifierKind::SocialHandle, h.as_str())))
                .chain(p.account.as_deref().map(|a| (IdentifierKind::AccountId, a)))
                .chain(p.visitors.iter().map(|v| (IdentifierKind::ChatVisitor, v.as_str())));
            for (kind, raw) in given {
                if let Canon::Id(value) = canonical(kind, raw) {
                    holders.entry((tenant, kind, value)).or_default().insert(i);
                }
            }
        }
        holders
            .into_iter()
            .filter(|(_, persons)| persons.len() > 1)
            .map(|((tenant, kind, value), _)| (tenant.to_string(), kind, value))
            .collect()
    }
}

impl Person {
    /// Whether the person can be reached on `channel` at all.
    pub(crate) fn reachable(&self, channel: omnistitch_model::Channel) -> bool {
        use omnistitch_model::Channel;
        match channel {
            Channel::Email | Channel::Chat => true,
            Channel::Phone => !self.mobiles.is_empty() || self.household.is_some(),
            Channel::Social => !self.handles.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_ascii() {
        assert_eq!(slug("Müller"), "mueller");
        assert_eq!(slug("O'Neil"), "oneil");
    }

    #[test]
    fn households_and_teams_have_several_members_of_one_tenant() {
        let pop = populate(&SimConfig { customers: 300, ..SimConfig::default() });
        assert_eq!(pop.persons.len(), 300);
        assert!(!pop.households.is_empty() && !pop.teams.is_empty());
        for h in 0..pop.households.len() {
            let members: Vec<&Person> = pop.persons.iter().filter(|p| p.household == Some(h)).collect();
            assert!((2..=4).contains(&members.len()), "{}", members.len());
            assert!(members.iter().all(|p| p.tenant == members[0].tenant));
        }
        for t in 0..pop.teams.len() {
            let members = pop.persons.iter().filter(|p| p.team == Some(t)).count();
            assert!((2..=5).contains(&members), "{members}");
        }
    }

    /// Every household landline and team mailbox is shared, whoever uses it; personal
    /// identifiers are not, not even a twin's address at another tenant.
    #[test]
    fn landlines_and_team_mailboxes_are_the_shared_identifiers() {
        let pop = populate(&SimConfig { customers: 600, ..SimConfig::default() });
        let shared = pop.shared_identifiers();
        let tenant_of = |h: &dyn Fn(&Person) -> bool| {
            pop.persons.iter().find(|p| h(p)).map(|p| pop.brands[p.tenant].tenant.clone()).unwrap()
        };
        for (i, h) in pop.households.iter().enumerate() {
            let key = (tenant_of(&|p| p.household == Some(i)), IdentifierKind::Phone, format!("+1{}", h.landline));
            assert!(shared.contains(&key), "{key:?}");
        }
        for (i, t) in pop.teams.iter().enumerate() {
            let key = (tenant_of(&|p| p.team == Some(i)), IdentifierKind::Email, t.mailbox.clone());
            assert!(shared.contains(&key), "{key:?}");
        }
        assert_eq!(shared.len(), pop.households.len() + pop.teams.len());
        let twins = pop
            .persons
            .iter()
            .filter(|p| pop.persons.iter().any(|q| q.tenant != p.tenant && q.emails[0] == p.emails[0]));
        assert!(twins.count() > 0, "the world has the same address at two tenants");
    }
}
