//! Behaviour of the identity stage on hand-written scenarios, and its invariants under proptest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use omnistitch_identity::{ConflictRule, IdentityConfig, IdentityResolver, IdentityRules, Normalizer};
use omnistitch_model::output::MatchOutcome;
use omnistitch_model::{
    Channel, Direction, Event, EventKind, EventTime, IdentifierKind, ProfileId, RawIdentifier, Tenant,
};
use proptest::prelude::*;

use IdentifierKind::*;

fn event(tenant: &str, id: &str, t: i64, ids: &[(IdentifierKind, &str)]) -> Event {
    Event {
        identifiers: ids.iter().map(|(k, v)| RawIdentifier::new(*k, *v)).collect(),
        ..Event::new(
            Tenant::new(tenant),
            id,
            EventTime(1_700_000_000_000 + t),
            Channel::Chat,
            Direction::Inbound,
            EventKind::Message,
        )
    }
}

fn resolver() -> IdentityResolver {
    let n = Arc::new(Normalizer::new("US").unwrap());
    let rules = IdentityRules::from_config(&IdentityConfig::default(), &n).unwrap();
    IdentityResolver::new(n, rules)
}

fn naive() -> IdentityResolver {
    IdentityResolver::new(Arc::new(Normalizer::new("US").unwrap()), IdentityRules::naive())
}

#[test]
fn formatting_variants_resolve_to_one_profile() {
    let mut r = resolver();
    let a = r.resolve(&event("acme", "e1", 0, &[(Email, "Jo Smith <Jo.Smith@X.com>")])).profile;
    let b = r.resolve(&event("acme", "e2", 1, &[(Email, " jo.smith@x.com"), (Phone, "(415) 555-0134")])).profile;
    let c = r.resolve(&event("acme", "e3", 2, &[(Phone, "+1 415 555 0134")])).profile;
    assert_eq!(a, b);
    assert_eq!(b, c);
}

#[test]
fn tenants_never_share_a_profile() {
    let mut r = resolver();
    let a = r.resolve(&event("acme", "e1", 0, &[(Email, "jo@x.com")])).profile;
    let b = r.resolve(&event("globex", "e1", 0, &[(Email, "jo@x.com")])).profile;
    assert_ne!(a, b);
    assert_eq!(r.graphs().count(), 2);
}

#[test]
fn placeholders_and_invalid_values_do_not_link() {
    let mut r = resolver();
    let a = r.resolve(&event("acme", "e1", 0, &[(Email, "a@x.com"), (Phone, "n/a")]));
    let b = r.resolve(&event("acme", "e2", 1, &[(Email, "b@x.com"), (Phone, "N/A")]));
    let c = r.resolve(&event("acme", "e3", 2, &[(Email, "c@x.com"), (Email, "noreply@shop.com")]));
    let d = r.resolve(&event("acme", "e4", 3, &[(Email, "d@x.com"), (Email, "noreply@shop.com")]));
    let e = r.resolve(&event("acme", "e5", 4, &[(Email, "e@x.com"), (Phone, "12")]));
    assert_eq!([&a, &b, &c, &d, &e].iter().map(|r| r.profile).collect::<BTreeSet<_>>().len(), 5);
    assert!(a.identifiers.iter().any(|i| i.kind == Phone && i.outcome == MatchOutcome::Blocked));
    assert!(d.identifiers.iter().any(|i| i.kind == Email && i.outcome == MatchOutcome::Blocked));
    assert!(e.identifiers.iter().any(|i| i.outcome == MatchOutcome::Invalid && i.error.is_some()));
}

#[test]
fn a_household_landline_does_not_chain_two_account_holders() {
    let mut r = resolver();
    let alice = r.resolve(&event("acme", "e1", 0, &[(AccountId, "A-1"), (Phone, "(415) 555-0134")])).profile;
    let bob = r.resolve(&event("acme", "e2", 1, &[(AccountId, "B-2"), (Phone, "415-555-0134")]));
    assert_ne!(alice, bob.profile);
    assert_eq!(bob.conflicts.len(), 1);
    assert_eq!(bob.conflicts[0].rule, ConflictRule::Limit { kind: AccountId });
    assert_eq!(bob.conflicts[0].other_profile, Some(alice));
    assert!(bob.identifiers.iter().any(|i| i.kind == Phone && i.outcome == MatchOutcome::Shared));
    // Once shared, the landline alone identifies nobody.
    let call = r.resolve(&event("acme", "e3", 2, &[(Phone, "4155550134")]));
    assert_ne!(call.profile, alice);
    assert_ne!(call.profile, bob.profile);
    assert!(call.created);
}

#[test]
fn a_second_account_on_a_team_mailbox_is_a_conflict_not_a_merge() {
    let mut r = resolver();
    let p1 = r.resolve(&event("acme", "e1", 0, &[(AccountId, "A-1"), (Email, "ops@corp.com")])).profile;
    let p2 = r.resolve(&event("acme", "e2", 1, &[(AccountId, "A-2"), (Email, "ops@corp.com")]));
    assert_ne!(p1, p2.profile);
    assert!(p2.merges.is_empty());
}

/// The survivor of a merge is the profile created first, whether a late event that is older
/// than both came before or after the merge.
#[test]
fn a_late_event_does_not_change_which_profile_survives_a_merge() {
    let a = event("acme", "e1", 100, &[(Email, "jo@x.com")]);
    let p = event("acme", "e2", 200, &[(Phone, "415 555 0134")]);
    let late = event("acme", "e3", 50, &[(Phone, "4155550134")]);
    let link = event("acme", "e4", 300, &[(Email, "jo@x.com"), (Phone, "4155550134")]);
    let survivor = |order: [&Event; 4]| {
        let mut r = resolver();
        let mut merges = Vec::new();
        for e in order {
            merges.extend(r.resolve(e).merges.into_iter().map(|m| (m.survivor, m.absorbed)));
        }
        merges
    };
    let before = survivor([&a, &p, &late, &link]);
    assert_eq!(before, survivor([&a, &p, &link, &late]));
    assert_eq!(before, [(ProfileId::derive("acme", "e1"), ProfileId::derive("acme", "e2"))]);
}

#[test]
fn merges_are_explained_and_the_older_profile_survives() {
    let mut r = resolver();
    let old = r.resolve(&event("acme", "e1", 0, &[(Email, "jo@x.com")])).profile;
    let young = r.resolve(&event("acme", "e2", 5, &[(Phone, "415 555 0134")])).profile;
    let link = r.resolve(&event("acme", "e3", 9, &[(Phone, "4155550134"), (Email, "JO@x.com")]));
    assert_eq!(link.profile, old);
    assert_eq!(link.merges.len(), 1);
    let m = &link.merges[0];
    assert_eq!((m.survivor, m.absorbed), (old, young));
    assert_eq!(&*m.survivor_identifier.value, "jo@x.com");
    assert_eq!(&*m.absorbed_identifier.value, "+14155550134");
    let graph = r.graph(&Tenant::new("acme")).unwrap();
    assert_eq!(graph.current(young), old);
    let p = graph.get(young).unwrap();
    assert_eq!(p.merged_from, vec![young]);
    assert_eq!(p.event_count, 3);
    assert_eq!(graph.identifiers(p).len(), 2);
}

#[test]
fn a_redelivered_event_lands_on_the_same_profile() {
    let mut r = resolver();
    let e = event("acme", "e1", 0, &[(Phone, "unknown")]);
    let a = r.resolve(&e);
    let b = r.resolve(&e);
    assert!(a.created && !b.created);
    assert_eq!(a.profile, b.profile);
    assert_eq!(a.profile, ProfileId::derive("acme", "e1"));
}

/// A random event over a small universe of identifiers, so that links collide often.
fn arb_ids() -> impl Strategy<Value = Vec<(IdentifierKind, String)>> {
    let id = prop_oneof![
        (0..12u32).prop_map(|i| (Email, format!("u{i}@x.com"))),
        (0..12u32).prop_map(|i| (Phone, format!("+1415555{:04}", 100 + i))),
        (0..12u32).prop_map(|i| (SocialHandle, format!("x:h{i}"))),
        (0..12u32).prop_map(|i| (Case, format!("C{i}"))),
    ];
    prop::collection::vec(id, 1..4)
}

/// The partition of identifiers into profiles, as sets of values.
fn partition(r: &IdentityResolver) -> BTreeSet<BTreeSet<String>> {
    r.graphs()
        .flat_map(|(_, g)| g.profiles().map(|p| g.identifiers(p).iter().map(|i| i.value.to_string()).collect()))
        .filter(|s: &BTreeSet<String>| !s.is_empty())
        .collect()
}

/// Naive model: union-find over a `BTreeMap`, identifiers as nodes.
fn model_partition(events: &[Vec<(IdentifierKind, String)>]) -> BTreeSet<BTreeSet<String>> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    fn root(p: &BTreeMap<String, String>, mut x: String) -> String {
        while p[&x] != x {
            x = p[&x].clone();
        }
        x
    }
    for ev in events {
        for (_, v) in ev {
            parent.entry(v.clone()).or_insert_with(|| v.clone());
        }
        for w in ev.windows(2) {
            let (a, b) = (root(&parent, w[0].1.clone()), root(&parent, w[1].1.clone()));
            parent.insert(a, b);
        }
    }
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for k in parent.keys() {
        groups.entry(root(&parent, k.clone())).or_default().insert(k.clone());
    }
    groups.into_values().collect()
}

/// `0..n` in the order of a Fisher-Yates shuffle seeded with `seed`.
fn shuffled_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut s = seed | 1;
    for i in (1..order.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    order
}

/// The graph bytes each graph keeps count of equal what a walk over it counts.
fn assert_bytes_kept(r: &IdentityResolver) {
    for (tenant, g) in r.graphs() {
        assert_eq!(g.memory_bytes(), g.memory_bytes_walked(), "graph bytes of {tenant:?}");
    }
}

fn apply(r: &mut IdentityResolver, events: &[Vec<(IdentifierKind, String)>], order: &[usize]) {
    for &i in order {
        let ids: Vec<(IdentifierKind, &str)> = events[i].iter().map(|(k, v)| (*k, v.as_str())).collect();
        r.resolve(&event("acme", &format!("e{i}"), i as i64, &ids));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Without limits, the same links in any order give the same partition, equal to a naive model's.
    #[test]
    fn merges_are_order_independent(
        events in prop::collection::vec(arb_ids(), 1..40),
        seed in any::<u64>(),
    ) {
        let forward: Vec<usize> = (0..events.len()).collect();
        let shuffled = shuffled_order(events.len(), seed);
        let (mut a, mut b) = (naive(), naive());
        apply(&mut a, &events, &forward);
        apply(&mut b, &events, &shuffled);
        prop_assert_eq!(partition(&a), partition(&b));
        prop_assert_eq!(partition(&a), model_partition(&events));
        // The default rules agree too when no limit can be hit (no accounts, few values per kind).
        let mut d = resolver();
        apply(&mut d, &events, &shuffled);
        let limits_hit = partition(&a).iter().any(|s| {
            let emails = s.iter().filter(|v| v.contains('@')).count();
            let phones = s.iter().filter(|v| v.starts_with('+')).count();
            let handles = s.iter().filter(|v| v.starts_with("x:")).count();
            emails > 5 || phones > 4 || handles > 6
        });
        if !limits_hit {
            prop_assert_eq!(partition(&d), partition(&a));
        }
    }

    /// Every event lands on exactly one live profile, and the graph's counts add up, also when
    /// profiles forget their oldest case ids.
    #[test]
    fn every_event_is_counted_once(events in prop::collection::vec(arb_ids(), 1..40)) {
        for mut r in [resolver(), keeping("case", 2)] {
            apply(&mut r, &events, &(0..events.len()).collect::<Vec<_>>());
            let g = r.graph(&Tenant::new("acme")).unwrap();
            let total: u64 = g.profiles().map(|p| p.event_count).sum();
            prop_assert_eq!(total, events.len() as u64);
            assert_bytes_kept(&r);
            let ids: usize = g.profiles().map(|p| g.identifiers(p).len()).sum();
            prop_assert_eq!(ids, g.identifier_count());
            for p in g.profiles() {
                // At most the 2 kept, or the case ids of one event that named more (all in use; up
                // to 3 here).
                let cases = g.identifiers(p).iter().filter(|i| i.kind == Case).count();
                prop_assert!(cases <= 3 || r.rules().kept(Case) != Some(2));
                // Every identifier a profile lists resolves back to it, unless shared (then to
                // nobody).
                for i in g.identifiers(p) {
                    let expected = (!g.is_shared(&i)).then_some(p.id);
                    prop_assert_eq!(g.profile_of(&i), expected);
                }
            }
        }
    }
}

/// Like [`arb_ids`], with account ids (at most one per profile by default) among them, so
/// that limits are hit often.
fn arb_ids_with_accounts() -> impl Strategy<Value = Vec<(IdentifierKind, String)>> {
    let id = prop_oneof![
        (0..3u32).prop_map(|i| (AccountId, format!("A-{i}"))),
        (0..8u32).prop_map(|i| (Email, format!("u{i}@x.com"))),
        (0..8u32).prop_map(|i| (Phone, format!("+1415555{:04}", 100 + i))),
        (0..8u32).prop_map(|i| (Case, format!("C{i}"))),
    ];
    prop::collection::vec(id, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the order, no profile ever holds more of a kind than its limit; every identifier
    /// refused as a conflict has its conflict record; and the same events in the same order give
    /// the same profile ids and merges in a fresh resolver (nothing hangs on hash order).
    #[test]
    fn limits_hold_and_every_refusal_is_recorded(
        events in prop::collection::vec(arb_ids_with_accounts(), 1..40),
        seed in any::<u64>(),
    ) {
        let order = shuffled_order(events.len(), seed);
        let run = |r: &mut IdentityResolver| {
            let mut out = Vec::new();
            for &i in &order {
                let ids: Vec<(IdentifierKind, &str)> = events[i].iter().map(|(k, v)| (*k, v.as_str())).collect();
                out.push(r.resolve(&event("acme", &format!("e{i}"), i as i64, &ids)));
            }
            out
        };
        let mut r = resolver();
        let resolutions = run(&mut r);
        for res in &resolutions {
            for id in res.identifiers.iter().filter(|i| i.outcome == MatchOutcome::Conflict) {
                let value = id.value.as_ref().expect("a conflict is about a normalized identifier");
                prop_assert!(res.conflicts.iter().any(|c| c.identifier == *value), "{value:?} refused without a record");
            }
        }
        let g = r.graph(&Tenant::new("acme")).unwrap();
        for p in g.profiles() {
            for kind in IdentifierKind::ALL {
                if let Some(limit) = r.rules().limit(kind) {
                    let n = g.identifiers(p).iter().filter(|i| i.kind == kind).count();
                    prop_assert!(n as u32 <= limit, "{} {kind:?} on one profile, limit {limit}", n);
                }
            }
        }
        assert_bytes_kept(&r);
        let again = run(&mut resolver());
        let ids = |v: &[omnistitch_identity::Resolution]| -> Vec<_> {
            v.iter().map(|r| (r.profile, r.merges.iter().map(|m| (m.survivor, m.absorbed)).collect::<Vec<_>>())).collect()
        };
        prop_assert_eq!(ids(&resolutions), ids(&again));
    }
}

fn keeping(kind: &str, n: u32) -> IdentityResolver {
    let n_ = Arc::new(Normalizer::new("US").unwrap());
    let mut c = IdentityConfig::default();
    c.keep_newest.insert(kind.into(), n);
    IdentityResolver::new(n_.clone(), IdentityRules::from_config(&c, &n_).unwrap())
}

#[test]
fn a_profile_keeps_its_newest_conversation_ids_and_forgets_the_oldest() {
    let mut r = keeping("case", 3);
    let jo = r.resolve(&event("acme", "e0", 0, &[(Email, "jo@x.com"), (Case, "C0")])).profile;
    for i in 1..5 {
        let c = format!("C{i}");
        assert_eq!(r.resolve(&event("acme", &format!("e{i}"), i, &[(Email, "jo@x.com"), (Case, &c)])).profile, jo);
    }
    let g = r.graph(&Tenant::new("acme")).unwrap();
    let cases: Vec<String> =
        g.identifiers(g.get(jo).unwrap()).into_iter().filter(|i| i.kind == Case).map(|i| i.value.to_string()).collect();
    assert_eq!(cases, ["C2", "C3", "C4"]);
    assert_eq!((g.forgotten_count(), g.identifier_count()), (2, 4));
    // An event naming the oldest kept case with a new one keeps the one it uses.
    assert_eq!(r.resolve(&event("acme", "e7", 7, &[(Case, "C2"), (Case, "C9")])).profile, jo);
    let g = r.graph(&Tenant::new("acme")).unwrap();
    let cases: Vec<String> =
        g.identifiers(g.get(jo).unwrap()).into_iter().filter(|i| i.kind == Case).map(|i| i.value.to_string()).collect();
    assert_eq!(cases, ["C2", "C4", "C9"], "C3 goes, not C2");
    assert_eq!(g.forgotten_count(), 3);
    // A forgotten case id links nothing any more; a kept one still does.
    assert_ne!(r.resolve(&event("acme", "e5", 5, &[(Case, "C0")])).profile, jo);
    assert_eq!(r.resolve(&event("acme", "e6", 6, &[(Case, "C4")])).profile, jo);
    // Forgotten entries' room is reused: the graph holds what it counts.
    let g = r.graph(&Tenant::new("acme")).unwrap();
    let held: usize = g.profiles().map(|p| g.identifiers(p).len()).sum();
    assert_eq!(held, g.identifier_count());
    assert_bytes_kept(&r);
}

#[test]
fn a_hub_lists_only_its_latest_merges() {
    let mut r = keeping("case", 5_000);
    let hub = r.resolve(&event("acme", "hub", 0, &[(Case, "HUB")])).profile;
    let n = omnistitch_identity::MAX_MERGED_FROM + 5;
    for i in 0..n {
        let c = format!("C{i}");
        r.resolve(&event("acme", &format!("a{i}"), 1 + i as i64, &[(Case, &c)]));
        r.resolve(&event("acme", &format!("b{i}"), 1 + i as i64, &[(Case, "HUB"), (Case, &c)]));
    }
    let acme = Tenant::new("acme");
    let p = r.profile(&acme, hub).unwrap();
    assert_eq!(p.merged_from.len(), omnistitch_identity::MAX_MERGED_FROM);
    assert_eq!(p.merged_from.last(), Some(&ProfileId::derive("acme", &format!("a{}", n - 1))));
    // Every absorbed id still leads to the hub.
    assert_eq!(r.profile(&acme, ProfileId::derive("acme", "a0")).map(|p| p.id), Some(hub));
    assert_bytes_kept(&r);
}

/// Long values (kept on the heap), merges, conversation ids forgotten past their limit and
/// profiles forgotten once old: the graph's kept byte counts follow each step.
#[test]
fn graph_bytes_are_kept_without_a_walk() {
    let mut r = keeping("case", 2);
    let acme = Tenant::new("acme");
    let long = |i: u32| format!("a.rather.long.local.part.{i}@customer-mail.example.com");
    for i in 0..40u32 {
        let case = format!("CASE-WITH-A-LONG-REFERENCE-NUMBER-{i:08}");
        let (a, b) = (long(i), long(i + 1));
        r.resolve(&event("acme", &format!("e{i}"), i64::from(i), &[(Email, &a), (Case, &case)]));
        if i % 3 == 0 {
            // Joins this person to the next one's email.
            r.resolve(&event("acme", &format!("j{i}"), i64::from(i), &[(Email, &a), (Email, &b)]));
        }
        assert_bytes_kept(&r);
    }
    r.resolve(&event("acme", "anon", 0, &[(Email, "noreply@shop.com")]));
    r.forget_anonymous_before(&acme, EventTime(1_700_000_000_000 + 1_000));
    r.forget_conversations_before(&acme, EventTime(1_700_000_000_000 + 30));
    assert_bytes_kept(&r);
    assert!(r.graph(&acme).unwrap().memory_bytes() > 0);
}

#[test]
fn profiles_without_identifiers_are_forgotten_once_old() {
    let mut r = resolver();
    let acme = Tenant::new("acme");
    let anon = r.resolve(&event("acme", "e1", 0, &[(Email, "noreply@shop.com")])).profile;
    let jo = r.resolve(&event("acme", "e2", 0, &[(Email, "jo@x.com")])).profile;
    let late = r.resolve(&event("acme", "e3", 100, &[])).profile;
    assert_eq!(r.graph(&acme).unwrap().profile_count(), 3);
    assert_eq!(r.forget_anonymous_before(&acme, EventTime(1_700_000_000_000 + 50)), 1);
    let g = r.graph(&acme).unwrap();
    assert!(g.get(anon).is_none(), "no identifier, older than the cutoff");
    assert!(g.get(jo).is_some() && g.get(late).is_some());
    assert_eq!(r.forget_anonymous_before(&Tenant::new("globex"), EventTime(i64::MAX)), 0);
}

#[test]
fn weak_identifiers_attach_but_do_not_bridge_two_people_when_configured() {
    let n = Arc::new(Normalizer::new("US").unwrap());
    let config = IdentityConfig { weak_kinds: vec!["phone".into()], ..IdentityConfig::default() };
    let mut r = IdentityResolver::new(n.clone(), IdentityRules::from_config(&config, &n).unwrap());
    let alice = r.resolve(&event("acme", "e1", 0, &[(Email, "alice@x.com"), (Phone, "4155550134")])).profile;
    let bob = r.resolve(&event("acme", "e2", 1, &[(Email, "bob@x.com")])).profile;
    let chat = r.resolve(&event("acme", "e3", 2, &[(Email, "bob@x.com"), (Phone, "(415) 555-0134")]));
    assert_eq!(chat.profile, bob);
    assert_ne!(alice, bob);
    assert_eq!(chat.conflicts[0].rule, ConflictRule::WeakBridge);
    // Attaching still works: a call from the number alone lands on the profile holding it.
    assert_eq!(r.resolve(&event("acme", "e4", 3, &[(Phone, "+14155550134")])).profile, alice);
    // Without the rule (the default), the same events merge.
    let mut d = resolver();
    let a = d.resolve(&event("acme", "e1", 0, &[(Email, "alice@x.com"), (Phone, "4155550134")])).profile;
    d.resolve(&event("acme", "e2", 1, &[(Email, "bob@x.com")]));
    assert_eq!(d.resolve(&event("acme", "e3", 2, &[(Email, "bob@x.com"), (Phone, "4155550134")])).profile, a);
}

/// An event on a profile through the weak identifier alone bridges through it too: the
/// other person reached by a strong identifier of the same event stays apart; and a new
/// personal identifier is not attached through a weak one whatever the priority order.
#[test]
fn a_weak_identifier_bridges_nobody_from_either_side() {
    let n = Arc::new(Normalizer::new("US").unwrap());
    let resolver = |priority: Option<&[&str]>| {
        let mut config = IdentityConfig { weak_kinds: vec!["phone".into()], ..IdentityConfig::default() };
        if let Some(p) = priority {
            config.priority = p.iter().map(|s| s.to_string()).collect();
        }
        IdentityResolver::new(n.clone(), IdentityRules::from_config(&config, &n).unwrap())
    };
    let mut r = resolver(None);
    let alice =
        r.resolve(&event("acme", "c1", 0, &[(Email, "alice@x.com"), (Phone, "4155550134"), (ChatSession, "S1")]));
    let bob = r.resolve(&event("acme", "c2", 1, &[(Email, "bob@x.com"), (ChatVisitor, "V-bob"), (ChatSession, "S2")]));
    let chat =
        r.resolve(&event("acme", "c3", 2, &[(Phone, "4155550134"), (ChatVisitor, "V-bob"), (ChatSession, "S3")]));
    assert!(chat.merges.is_empty(), "{:?}", chat.merges);
    assert_eq!(chat.conflicts.iter().map(|c| c.rule).collect::<Vec<_>>(), [ConflictRule::WeakBridge]);
    assert_ne!(r.profile(&Tenant::new("acme"), alice.profile).unwrap().id, bob.profile);
    // The phone ranked before the email: Bob's new email is not attached to Alice through it.
    let order = ["phone", "account_id", "email", "social_handle", "case", "chat_session", "call", "chat_visitor"];
    let mut r = resolver(Some(&order));
    let alice = r.resolve(&event("acme", "c1", 0, &[(Email, "alice@x.com"), (Phone, "4155550134")])).profile;
    let call = r.resolve(&event("acme", "c2", 1, &[(Email, "bob@x.com"), (Phone, "4155550134")]));
    assert_eq!(call.profile, alice, "the call attaches to the number's profile");
    assert_eq!(call.conflicts.iter().map(|c| c.rule).collect::<Vec<_>>(), [ConflictRule::WeakBridge]);
    let bob = r.resolve(&event("acme", "c3", 2, &[(Email, "bob@x.com")]));
    assert!(bob.created, "Bob's email is nobody's yet");
}

#[test]
fn landlines_and_role_mailboxes_are_recorded_but_never_link() {
    let mut r = resolver();
    let landline = |e: Event| {
        let mut e = e;
        e.identifiers[0] = e.identifiers[0].clone().qualified(Some("Landline".into()));
        e
    };
    let alice = r.resolve(&landline(event("acme", "e1", 0, &[(Phone, "4155550134"), (Email, "alice@x.com")])));
    assert!(alice.identifiers.iter().any(|i| i.kind == Phone && i.outcome == MatchOutcome::Shared));
    // Bob calls from the same number, reported as a landline or not: nothing links him to Alice.
    let bob = r.resolve(&event("acme", "e2", 1, &[(Phone, "(415) 555-0134"), (Email, "bob@x.com")]));
    assert_ne!(alice.profile, bob.profile);
    // Mobiles link as usual.
    let m1 = r.resolve(&event("acme", "e3", 2, &[(Phone, "4155550199"), (Email, "carol@x.com")])).profile;
    let mobile = event("acme", "e4", 3, &[(Phone, "415 555 0199")]);
    let mut mobile = mobile;
    mobile.identifiers[0] = mobile.identifiers[0].clone().qualified(Some("mobile".into()));
    assert_eq!(r.resolve(&mobile).profile, m1);
    // A team mailbox identifies no one; a personal address at the same company does.
    let a = r.resolve(&event("acme", "e5", 4, &[(Email, "Ops@Corp.com"), (AccountId, "A-1")])).profile;
    let b = r.resolve(&event("acme", "e6", 5, &[(Email, "ops@corp.com")])).profile;
    assert_ne!(a, b);
    assert_eq!(r.resolve(&event("acme", "e7", 6, &[(Email, "dana@corp.com"), (AccountId, "A-1")])).profile, a);
}

/// Role mailboxes are shared by their value alone: ever new ones (tagged, or at ever new
/// domains) are not kept in the graph, which would otherwise grow for good.
#[test]
fn role_mailboxes_do_not_grow_the_graph() {
    let mut r = resolver();
    for i in 0..100 {
        let e = event("acme", &format!("e{i}"), i, &[(Email, &format!("support+{i}@corp{i}.com"))]);
        let got = r.resolve(&e);
        assert!(got.identifiers.iter().all(|i| i.outcome == MatchOutcome::Shared));
    }
    let graph = r.graph(&Tenant::new("acme")).unwrap();
    assert_eq!(graph.identifier_count(), 0, "no role mailbox kept");
}
