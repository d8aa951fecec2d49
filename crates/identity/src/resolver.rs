//! The identity stage: normalize an event's identifiers, apply the rules, link it into its
//! tenant's graph.

use hashbrown::HashMap;
use smallvec::SmallVec;
use std::sync::Arc;

use omnistitch_model::output::MatchOutcome;
use omnistitch_model::{Event, EventTime, Identifier, IdentifierKind, ProfileId, Tenant};

use crate::graph::{Conflict, Merge, Profile, TenantGraph};
use crate::normalize::{NormalizeError, Normalizer};
use crate::rules::IdentityRules;

/// One of an event's identifiers after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedIdentifier {
    /// Its kind.
    pub kind: IdentifierKind,
    /// Its canonical value; `None` when it could not be normalized.
    pub value: Option<Identifier>,
    /// What happened to it.
    pub outcome: MatchOutcome,
    /// Why it could not be normalized.
    pub error: Option<NormalizeError>,
}

/// Where an event belongs and what it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The profile the event belongs to.
    pub profile: ProfileId,
    /// Whether the event created that profile.
    pub created: bool,
    /// The event's identifiers, strongest first.
    pub identifiers: Vec<ResolvedIdentifier>,
    /// Merges the event caused.
    pub merges: Vec<Merge>,
    /// Links refused by the rules.
    pub conflicts: Vec<Conflict>,
}

/// Per-tenant identity graphs under one set of rules. Tenants never share a graph.
#[derive(Debug)]
pub struct IdentityResolver {
    normalizer: Arc<Normalizer>,
    rules: IdentityRules,
    tenants: HashMap<Tenant, TenantGraph>,
}

impl IdentityResolver {
    /// A resolver with no state.
    pub fn new(normalizer: Arc<Normalizer>, rules: IdentityRules) -> Self {
        IdentityResolver { normalizer, rules, tenants: HashMap::new() }
    }

    /// A resolver holding `tenants`' graphs (read back from a snapshot).
    pub fn with_graphs(
        normalizer: Arc<Normalizer>,
        rules: IdentityRules,
        tenants: HashMap<Tenant, TenantGraph>,
    ) -> Self {
        IdentityResolver { normalizer, rules, tenants }
    }

    /// Every tenant's graph, as a map (what a snapshot writes).
    pub fn graph_map(&self) -> &HashMap<Tenant, TenantGraph> {
        &self.tenants
    }

    /// Resolves `event` to a profile, creating or merging profiles as its identifiers require.
    pub fn resolve(&mut self, event: &Event) -> Resolution {
        // Events carry a handful of identifiers: the working lists stay on the stack.
        let mut resolved: SmallVec<[ResolvedIdentifier; 2]> = SmallVec::new();
        let mut usable: SmallVec<[(u8, Identifier); 4]> = SmallVec::new();
        for raw in &event.identifiers {
            let (value, outcome, error) = if self.rules.is_placeholder_raw(raw.kind, &raw.value) {
                (None, MatchOutcome::Blocked, None)
            } else {
                match self.normalizer.normalize(raw) {
                    Err(e) => (None, MatchOutcome::Invalid, Some(e)),
                    Ok(id) if self.rules.is_blocked(&id) => (Some(id), MatchOutcome::Blocked, None),
                    Ok(id) if self.rules.is_shared_by_nature(&id, raw.qualifier.as_deref()) => {
                        self.tenants.entry(event.tenant.clone()).or_default().mark_shared(&id);
                        (Some(id), MatchOutcome::Shared, None)
                    }
                    Ok(id) => {
                        usable.push((self.rules.rank(id.kind), id));
                        continue;
                    }
                }
            };
            resolved.push(ResolvedIdentifier { kind: raw.kind, value, outcome, error });
        }
        // Strongest first; ties by value so the order of fields in the input never matters.
        usable.sort();
        usable.dedup_by(|a, b| a.1 == b.1);
        let ids: SmallVec<[Identifier; 4]> = usable.into_iter().map(|(_, id)| id).collect();
        let graph = self.tenants.entry(event.tenant.clone()).or_default();
        let new_id = || ProfileId::derive(event.tenant.as_str(), &event.event_id);
        let linked = graph.link(&ids, &self.rules, new_id, event.time);
        let mut identifiers: Vec<ResolvedIdentifier> = Vec::with_capacity(ids.len() + resolved.len());
        identifiers.extend(ids.into_iter().zip(linked.outcomes).map(|(id, outcome)| ResolvedIdentifier {
            kind: id.kind,
            value: Some(id),
            outcome,
            error: None,
        }));
        identifiers.extend(resolved);
        Resolution {
            profile: linked.profile,
            created: linked.created,
            identifiers,
            merges: linked.merges,
            conflicts: linked.conflicts,
        }
    }

    /// The graph of `tenant`, if it has seen events.
    pub fn graph(&self, tenant: &Tenant) -> Option<&TenantGraph> {
        self.tenants.get(tenant)
    }

    /// Every tenant's graph.
    pub fn graphs(&self) -> impl Iterator<Item = (&Tenant, &TenantGraph)> {
        self.tenants.iter()
    }

    /// The live profile `id` of `tenant` (following merges).
    pub fn profile(&self, tenant: &Tenant, id: ProfileId) -> Option<&Profile> {
        self.tenants.get(tenant)?.get(id)
    }

    /// The rules in force.
    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    /// Forgets `tenant`'s profiles last seen before `cutoff` that hold no identifier or only
    /// conversation ids (nothing that names a customer can link to them again), with those ids;
    /// returns how many profiles.
    pub fn forget_anonymous_before(&mut self, tenant: &Tenant, cutoff: EventTime) -> usize {
        let rules = &self.rules;
        self.tenants.get_mut(tenant).map_or(0, |g| g.forget_anonymous_before(cutoff, rules))
    }

    /// Forgets `tenant`'s conversation ids no event named since `cutoff`, on every profile,
    /// and its redirects of merges before `cutoff` (see
    /// [`TenantGraph::forget_conversations_before`]); returns how many identifiers.
    pub fn forget_conversations_before(&mut self, tenant: &Tenant, cutoff: EventTime) -> usize {
        let rules = &self.rules;
        self.tenants.get_mut(tenant).map_or(0, |g| g.forget_conversations_before(cutoff, rules))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::IdentityConfig;
    use omnistitch_model::{Channel, Direction, EventKind, RawIdentifier};

    const HOUR: i64 = 3_600_000;

    fn resolver() -> IdentityResolver {
        let n = Arc::new(Normalizer::new("US").unwrap());
        let rules = IdentityRules::from_config(&IdentityConfig::default(), &n).unwrap();
        IdentityResolver::new(n, rules)
    }

    fn event(id: &str, t: i64, ids: Vec<RawIdentifier>) -> Event {
        let time = EventTime(1_700_000_000_000 + t);
        let e = Event::new(Tenant::new("acme"), id, time, Channel::Phone, Direction::Inbound, EventKind::CallEnded);
        Event { identifiers: ids, ..e }
    }

    /// A call from the household landline: the number is shared, the call id alone is usable.
    fn landline_call(i: i64) -> Event {
        let number = RawIdentifier::new(IdentifierKind::Phone, "(212) 555-0199").qualified(Some("landline".into()));
        event(&format!("call-{i}"), i * HOUR, vec![number, RawIdentifier::new(IdentifierKind::Call, format!("CA-{i}"))])
    }

    #[test]
    fn calls_from_a_shared_number_leave_a_bounded_number_of_profiles() {
        let mut r = resolver();
        let acme = Tenant::new("acme");
        // A week of retention, swept every day, over a year of hourly calls.
        let (retention, every) = (7 * 24 * HOUR, 24 * HOUR);
        let jo = r.resolve(&event("jo", 0, vec![RawIdentifier::new(IdentifierKind::Email, "jo@x.com")])).profile;
        let mut most = 0;
        for i in 0..365 * 24 {
            let call = landline_call(i);
            assert!(r.resolve(&call).created, "the shared number links no call to another");
            if (i * HOUR) % every == 0 {
                r.forget_anonymous_before(&acme, EventTime(call.time.0 - retention));
            }
            most = most.max(r.graph(&acme).unwrap().profile_count());
        }
        let g = r.graph(&acme).unwrap();
        // The calls within retention and a sweep interval, and the customer.
        assert!(most <= 1 + ((retention + every) / HOUR) as usize + 1, "{most}");
        assert!(g.identifier_count() <= most + 1, "{}", g.identifier_count());
        assert!(g.get(jo).is_some(), "a profile with an email stays");
        assert!(g.is_shared(&Identifier::new(IdentifierKind::Phone, "+12125550199")));
    }
}
