//! A generated world: the deliveries in arrival order and the truth about each event.

use std::collections::{BTreeMap, HashMap, HashSet};

use omnistitch_model::{IdentifierKind, WireEvent};
use serde::Serialize;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::ids::IdGen;
use crate::moments::{self, MomentTruth, MOMENT_TYPES};
use crate::population::populate;
use crate::render::{render_person, Planned};
use crate::truth::{self, Canon, TruthRecord};
use crate::{arrival, fields};

/// Simulated traffic and its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// Every delivery, in arrival order; duplicates are identical copies.
    pub events: Vec<WireEvent>,
    /// One record per distinct event id, in event-time order.
    pub truth: Vec<TruthRecord>,
    /// Every micro-moment of `docs/moments.md` (defaults), in detection-time order.
    pub moments: Vec<MomentTruth>,
}

/// Generates the world of `config`: the same config always gives the same world.
pub fn generate(config: &SimConfig) -> Result<World, SimError> {
    config.validate()?;
    let population = populate(config);
    let ids = IdGen::new(config.seed);
    let mut planned: Vec<Planned> = Vec::new();
    for person in 0..population.persons.len() {
        planned.extend(render_person(config, &population, &ids, person));
    }
    // Records are large: sort their keys, then move each record into place once.
    let mut order: Vec<(i64, usize, u32, usize)> =
        planned.iter().enumerate().map(|(i, p)| (p.time, p.person, p.seq, i)).collect();
    order.sort_unstable();
    permute(&mut planned, order.into_iter().map(|(_, _, _, i)| i).collect());
    let mut persons = Vec::with_capacity(planned.len());
    let events: Vec<WireEvent> = planned
        .into_iter()
        .enumerate()
        .map(|(n, mut p)| {
            // Event ids follow event time, so they say nothing about whose event it is.
            fields::set_event_id(&mut p.wire, format!("{}-{n:08}", config.event_id_prefix));
            persons.push(population.persons[p.person].id.as_str());
            p.wire
        })
        .collect();
    let links = truth::links(&events, &persons, &population.shared_identifiers());
    let truth = truth::build(&events, &persons, &links);
    let moments = moments::derive(&events, &truth, &links);
    let events = arrival::deliver(config, events);
    Ok(World { events, truth, moments })
}

/// Reorders `items` so that `items[k]` becomes the old `items[source[k]]`, in place.
///
/// `source` must be a permutation of `0..items.len()`; each cycle is rotated with swaps.
fn permute<T>(items: &mut [T], mut source: Vec<usize>) {
    for start in 0..items.len() {
        let mut cur = start;
        loop {
            let src = source[cur];
            source[cur] = cur;
            if src == start || src == cur {
                break;
            }
            items.swap(cur, src);
            cur = src;
        }
    }
}

/// Counts that describe a world, for reports and sanity checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorldSummary {
    /// Deliveries, duplicates included.
    pub deliveries: usize,
    /// Distinct event ids.
    pub distinct_events: usize,
    /// Deliveries beyond the first of their event id.
    pub duplicate_deliveries: usize,
    /// Deliveries per channel (`email`, `chat`, `phone`, `social`).
    pub per_channel: BTreeMap<String, usize>,
    /// Tenants with at least one event.
    pub tenants: usize,
    /// Persons with at least one event.
    pub persons: usize,
    /// Linkable clusters (the best any resolver can do without guessing).
    pub linkable_clusters: usize,
    /// Canonical identifiers used in events of two or more persons of one tenant.
    pub shared_identifiers: usize,
    /// Distinct placeholder values (`n/a`, `0000000000`, ...) seen in identifier fields.
    pub junk_values: usize,
    /// Distinct events carrying a placeholder.
    pub junk_events: usize,
    /// Canonical emails present at two or more tenants.
    pub cross_tenant_emails: usize,
    /// Canonical identifiers seen in two or more spellings.
    pub respelled_identifiers: usize,
    /// Largest amount by which an event's time is behind an earlier delivery's, ms.
    pub max_disorder_ms: i64,
    /// Micro-moments per type (every type of the contract listed, zero or not).
    pub moments: BTreeMap<String, usize>,
    /// Micro-moments whose evidence spans linkable clusters (a fair resolver splits them).
    pub unlinkable_moments: usize,
    /// Waits (abandons, SLAs) an event of the person settled that the key event's profile could
    /// not hold in time: not moments, but what a streaming detector sees as ones.
    pub settled_out_of_reach: usize,
}

impl World {
    /// Counts events, persons and hard cases.
    pub fn summary(&self) -> WorldSummary {
        let person_of: HashMap<&str, &str> =
            self.truth.iter().map(|t| (t.event_id.as_str(), t.person.as_str())).collect();
        let mut per_channel = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut max_time = i64::MIN;
        let mut max_disorder_ms = 0;
        // Per (tenant, kind, canonical value): users and spellings.
        let mut users: HashMap<(&str, IdentifierKind, String), HashSet<&str>> = HashMap::new();
        let mut spellings: HashMap<(IdentifierKind, String), HashSet<String>> = HashMap::new();
        let mut email_tenants: HashMap<String, HashSet<&str>> = HashMap::new();
        let mut junk_values = HashSet::new();
        let mut junk_events = 0;
        for e in &self.events {
            *per_channel.entry(e.channel().as_str().to_string()).or_insert(0) += 1;
            let t = fields::event_time(e);
            max_disorder_ms = max_disorder_ms.max(max_time.saturating_sub(t));
            max_time = max_time.max(t);
            let id = fields::event_id(e);
            if !seen.insert(id) {
                continue;
            }
            let tenant = fields::tenant(e);
            let person = person_of.get(id).copied().unwrap_or("");
            let mut junk = false;
            for (kind, raw) in truth::raw_identifiers(e) {
                match truth::canonical(kind, &raw) {
                    Canon::Id(v) => {
                        users.entry((tenant, kind, v.clone())).or_default().insert(person);
                        if kind == IdentifierKind::Email {
                            email_tenants.entry(v.clone()).or_default().insert(tenant);
                        }
                        spellings.entry((kind, v)).or_default().insert(raw.into_owned());
                    }
                    Canon::Junk => {
                        junk = true;
                        junk_values.insert(raw.into_owned());
                    }
                    Canon::Empty => {}
                }
            }
            junk_events += usize::from(junk);
        }
        let tenants: HashSet<&str> = self.truth.iter().map(|t| t.tenant.as_str()).collect();
        let persons: HashSet<&str> = self.truth.iter().map(|t| t.person.as_str()).collect();
        let clusters: HashSet<&str> = self.truth.iter().map(|t| t.linkable.as_str()).collect();
        let mut moments: BTreeMap<String, usize> = MOMENT_TYPES.iter().map(|m| (m.to_string(), 0)).collect();
        for m in self.moments.iter().filter(|m| m.happened) {
            *moments.entry(m.moment_type.clone()).or_insert(0) += 1;
        }
        WorldSummary {
            deliveries: self.events.len(),
            distinct_events: seen.len(),
            duplicate_deliveries: self.events.len() - seen.len(),
            per_channel,
            tenants: tenants.len(),
            persons: persons.len(),
            linkable_clusters: clusters.len(),
            shared_identifiers: users.values().filter(|u| u.len() > 1).count(),
            junk_values: junk_values.len(),
            junk_events,
            cross_tenant_emails: email_tenants.values().filter(|t| t.len() > 1).count(),
            respelled_identifiers: spellings.values().filter(|s| s.len() > 1).count(),
            max_disorder_ms,
            moments,
            unlinkable_moments: self.moments.iter().filter(|m| m.happened && !m.linkable).count(),
            settled_out_of_reach: self.moments.iter().filter(|m| !m.happened).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use omnistitch_codec::datum::encode_input;
    use omnistitch_model::Tenant;

    use super::*;
    use crate::config::{DAY_MS, MAX_CASE_TAIL_DAYS};

    fn small(seed: u64) -> SimConfig {
        SimConfig { customers: 300, seed, ..SimConfig::default() }
    }

    #[test]
    fn the_same_seed_gives_the_same_world() {
        let a = generate(&small(7)).unwrap();
        assert_eq!(a, generate(&small(7)).unwrap());
        assert_ne!(a.events, generate(&small(8)).unwrap().events);
    }

    #[test]
    fn every_event_validates_within_the_span_and_its_tail() {
        let c = small(1);
        let w = generate(&c).unwrap();
        let end = c.start_ms + (i64::from(c.span_days) + MAX_CASE_TAIL_DAYS) * DAY_MS;
        for e in &w.events {
            let t = fields::event_time(e);
            assert!((c.start_ms..end).contains(&t), "{t}");
            if let Err(err) = e.clone().into_event(Tenant::new) {
                panic!("{err}: {e:?}");
            }
        }
    }

    #[test]
    fn duplicates_are_byte_identical_and_share_one_truth_record() {
        let w = generate(&small(2)).unwrap();
        let mut copies: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
        for e in &w.events {
            copies.entry(fields::event_id(e)).or_default().push(encode_input(e).unwrap());
        }
        let dups: Vec<_> = copies.values().filter(|c| c.len() > 1).collect();
        assert!(!dups.is_empty(), "no duplicates at the default rate");
        assert!(dups.iter().all(|c| c.iter().all(|b| b == &c[0])));
        assert_eq!(w.truth.len(), copies.len());
        let ids: HashSet<&str> = w.truth.iter().map(|t| t.event_id.as_str()).collect();
        assert_eq!(ids.len(), w.truth.len());
        assert!(copies.keys().all(|id| ids.contains(id)));
    }

    #[test]
    fn disorder_stays_within_the_lateness_bound() {
        for lateness in [0, 5_000, 60_000] {
            let w = generate(&SimConfig { max_lateness_ms: lateness, ..small(3) }).unwrap();
            let s = w.summary();
            assert!(s.max_disorder_ms <= lateness, "{} > {lateness}", s.max_disorder_ms);
            if lateness > 0 {
                assert!(s.max_disorder_ms > 0, "no disorder at all with lateness {lateness}");
            }
        }
    }

    #[test]
    fn every_hard_case_is_present() {
        let w = generate(&small(4)).unwrap();
        let s = w.summary();
        assert!(s.shared_identifiers > 0, "{s:?}");
        assert!(s.junk_values >= 3 && s.junk_events > 0, "{s:?}");
        assert!(s.cross_tenant_emails > 0, "{s:?}");
        assert!(s.respelled_identifiers > 0, "{s:?}");
        assert!(s.duplicate_deliveries > 0, "{s:?}");
        // Both kinds of sharing: a household landline and a team mailbox.
        let person_of: HashMap<&str, &str> = w.truth.iter().map(|t| (t.event_id.as_str(), t.person.as_str())).collect();
        let mut users: HashMap<(IdentifierKind, String), HashSet<&str>> = HashMap::new();
        for e in &w.events {
            for (kind, value) in truth::keys(e) {
                users.entry((kind, value)).or_default().insert(person_of[fields::event_id(e)]);
            }
        }
        let shared = |kind| users.iter().any(|((k, _), p)| *k == kind && p.len() > 1);
        assert!(shared(IdentifierKind::Phone) && shared(IdentifierKind::Email));
        // Channels all carry traffic.
        assert_eq!(s.per_channel.len(), 4, "{:?}", s.per_channel);
    }

    #[test]
    fn linkable_clusters_never_span_persons_and_are_named_by_their_smallest_event() {
        let w = generate(&small(5)).unwrap();
        let mut clusters: HashMap<&str, Vec<&TruthRecord>> = HashMap::new();
        for t in &w.truth {
            clusters.entry(t.linkable.as_str()).or_default().push(t);
        }
        for (id, members) in &clusters {
            assert!(members.iter().all(|m| m.person == members[0].person && m.tenant == members[0].tenant));
            assert_eq!(*id, members.iter().map(|m| m.event_id.as_str()).min().unwrap());
        }
        // Identity resolution is possible but not trivial: most persons are one or a few clusters.
        let persons: HashSet<&str> = w.truth.iter().map(|t| t.person.as_str()).collect();
        assert!(clusters.len() >= persons.len() && clusters.len() < w.truth.len() / 3);
    }

    /// A household landline or a team mailbox that one member alone happened to use is still
    /// not theirs alone: it links none of their events, unlike an identifier they own.
    #[test]
    fn identifiers_the_population_shares_never_make_events_linkable() {
        let config = small(5);
        let w = generate(&config).unwrap();
        let shared = crate::population::populate(&config).shared_identifiers();
        // The distinct events in event-time order (their ids follow it), as the truth has them.
        let mut seen = HashSet::new();
        let mut distinct: Vec<WireEvent> =
            w.events.iter().filter(|e| seen.insert(fields::event_id(e))).cloned().collect();
        distinct.sort_by(|a, b| fields::event_id(a).cmp(fields::event_id(b)));
        let persons: Vec<&str> = w.truth.iter().map(|t| t.person.as_str()).collect();
        // Per shared identifier: its users in the data and the linkable clusters of its events.
        type Seen<'a> = (HashSet<&'a str>, HashSet<&'a str>);
        let mut used: HashMap<(&str, IdentifierKind, String), Seen<'_>> = HashMap::new();
        for (e, t) in distinct.iter().zip(&w.truth) {
            for (kind, value) in truth::keys(e) {
                if shared.contains(&(t.tenant.clone(), kind, value.clone())) {
                    let (users, clusters) = used.entry((t.tenant.as_str(), kind, value)).or_default();
                    users.insert(t.person.as_str());
                    clusters.insert(t.linkable.as_str());
                }
            }
        }
        let lone: Vec<_> = used.values().filter(|(users, _)| users.len() == 1).collect();
        assert!(!lone.is_empty(), "no landline or mailbox used by one member alone");
        assert!(
            lone.iter().any(|(_, clusters)| clusters.len() > 1),
            "a lone user's shared identifier linked all its events"
        );
        // Ownership by use alone would make fewer, larger clusters.
        let by_use = truth::build(&distinct, &persons, &truth::links(&distinct, &persons, &Default::default()));
        let clusters = |t: &[TruthRecord]| t.iter().map(|r| r.linkable.as_str()).collect::<HashSet<_>>().len();
        assert!(clusters(&w.truth) > clusters(&by_use));
    }

    #[test]
    fn brand_addresses_and_numbers_never_identify_a_customer() {
        let w = generate(&small(6)).unwrap();
        for e in &w.events {
            for (kind, value) in truth::keys(e) {
                assert!(!value.starts_with("support@") && !value.starts_with("surveys@"), "{value}");
                assert!(!(kind == IdentifierKind::Phone && value.starts_with("+1800555")), "{value}");
            }
        }
    }

    #[test]
    fn the_default_world_has_the_intended_size_and_every_moment() {
        let w = generate(&SimConfig::default()).unwrap();
        let s = w.summary();
        assert!((30_000..=60_000).contains(&s.deliveries), "{s:?}");
        assert_eq!(s.persons, 2000);
        assert_eq!(s.moments.len(), MOMENT_TYPES.len());
        for (moment, n) in &s.moments {
            assert!(*n >= 50, "{moment}: {n}");
        }
        // Most journeys have no moment at all.
        let cases: HashSet<&str> = w.events.iter().filter_map(fields::case_id).collect();
        let eventful: HashSet<&str> =
            w.moments.iter().filter(|m| m.happened).filter_map(|m| m.case_id.as_deref()).collect();
        assert!(eventful.len() * 3 < cases.len(), "{} of {} cases", eventful.len(), cases.len());
        assert!(s.unlinkable_moments * 10 < w.moments.len(), "{s:?}");
        // Some waits are settled by a contact the detector cannot link in time; few.
        assert!(s.settled_out_of_reach > 0 && s.settled_out_of_reach * 20 < w.moments.len(), "{s:?}");
    }

    #[test]
    fn moments_point_at_their_person_s_events_and_never_precede_them() {
        let w = generate(&small(11)).unwrap();
        let truth: HashMap<&str, &TruthRecord> = w.truth.iter().map(|t| (t.event_id.as_str(), t)).collect();
        let time: HashMap<&str, i64> = w.events.iter().map(|e| (fields::event_id(e), fields::event_time(e))).collect();
        assert!(!w.moments.is_empty());
        for m in &w.moments {
            let key = truth[m.key_event_id.as_str()];
            assert_eq!((&key.person, &key.tenant), (&m.person, &m.tenant), "{m:?}");
            assert!(m.detected_at_ms >= time[m.key_event_id.as_str()], "{m:?}");
            assert!(MOMENT_TYPES.contains(&m.moment_type.as_str()), "{m:?}");
        }
        assert!(w.moments.windows(2).all(|p| p[0].detected_at_ms <= p[1].detected_at_ms));
    }

    /// CES answers follow the journey's effort with noise: a detector's effort predictor can be
    /// calibrated on them, and cannot be perfect.
    #[test]
    fn ces_answers_correlate_with_predicted_effort() {
        let w = generate(&SimConfig { customers: 1000, ..SimConfig::default() }).unwrap();
        let mut seen = HashSet::new();
        let mut distinct: Vec<WireEvent> =
            w.events.iter().filter(|e| seen.insert(fields::event_id(e))).cloned().collect();
        distinct.sort_by(|a, b| fields::event_id(a).cmp(fields::event_id(b)));
        let pairs = moments::ces_answers(&distinct, &w.truth);
        assert!(pairs.len() > 100, "{}", pairs.len());
        let n = pairs.len() as f64;
        let (mx, my) =
            (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| f64::from(p.1)).sum::<f64>() / n);
        let cov: f64 = pairs.iter().map(|p| (p.0 - mx) * (f64::from(p.1) - my)).sum();
        let vx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let vy: f64 = pairs.iter().map(|p| (f64::from(p.1) - my).powi(2)).sum();
        let r = cov / (vx * vy).sqrt();
        assert!((0.5..0.95).contains(&r), "pearson {r}");
    }

    #[test]
    fn permute_moves_every_item_to_its_slot() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e', 'f'];
        permute(&mut items, vec![2, 0, 1, 3, 5, 4]);
        assert_eq!(items, ['c', 'a', 'b', 'd', 'f', 'e']);
    }

    #[test]
    fn an_empty_world_is_fine() {
        let w = generate(&SimConfig { customers: 0, ..SimConfig::default() }).unwrap();
        assert!(w.events.is_empty() && w.truth.is_empty());
        let w = generate(&SimConfig { customers: 2, ..SimConfig::default() }).unwrap();
        assert!(!w.events.is_empty());
    }
}
