//! Scoring against the truth: a stitching result by pairwise precision, recall and F1 (and
//! profiles that wrongly span tenants), and a detector's interventions by moment type.
//!
//! A clustering maps event id -> cluster id. Two events form a *pair* when they share a
//! cluster; precision is the share of predicted pairs that are true pairs, recall the share of
//! true pairs that were predicted. Pairs are counted from a contingency table (sums of
//! `n choose 2`), so scoring is linear in the number of events.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

use crate::moments::{MomentTruth, MOMENT_TYPES};
use crate::truth::TruthRecord;

/// Pairwise agreement of a predicted clustering with a truth clustering.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Events present in both clusterings; only these are scored.
    pub events: usize,
    /// Pairs sharing a predicted profile and a truth cluster.
    pub true_pairs: u64,
    /// Pairs sharing a predicted profile.
    pub predicted_pairs: u64,
    /// Pairs sharing a truth cluster.
    pub truth_pairs: u64,
    /// `true_pairs / predicted_pairs`; 1 when nothing was merged.
    pub precision: f64,
    /// `true_pairs / truth_pairs`; 1 when there was nothing to merge.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
}

/// Which truth to score against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TruthLevel {
    /// Who really sent or received each event: perfect recall here needs guessing.
    Person,
    /// What the identifiers allow linking: the fair target for a resolver.
    Linkable,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Gives each distinct label a dense index.
#[derive(Default)]
struct Labels<'a> {
    index: HashMap<&'a str, usize>,
    sizes: Vec<u64>,
}

impl<'a> Labels<'a> {
    fn add(&mut self, label: &'a str) -> usize {
        let next = self.sizes.len();
        let i = *self.index.entry(label).or_insert(next);
        if i == next {
            self.sizes.push(0);
        }
        self.sizes[i] += 1;
        i
    }

    fn pairs(&self) -> u64 {
        self.sizes.iter().map(|&n| pairs(n)).sum()
    }
}

/// Scores `predicted` (event id -> profile id) against `truth` (event id -> cluster id).
///
/// Mind the order: truth first. Swapping the arguments swaps precision and recall.
pub fn pairwise<S1: BuildHasher, S2: BuildHasher>(
    truth: &HashMap<String, String, S1>,
    predicted: &HashMap<String, String, S2>,
) -> Scores {
    let mut pred = Labels::default();
    let mut real = Labels::default();
    let mut cells: HashMap<(usize, usize), u64> = HashMap::new();
    let mut events = 0;
    for (event, profile) in predicted {
        let Some(cluster) = truth.get(event) else { continue };
        events += 1;
        let cell = (pred.add(profile), real.add(cluster));
        *cells.entry(cell).or_insert(0) += 1;
    }
    let true_pairs: u64 = cells.values().map(|&n| pairs(n)).sum();
    let (predicted_pairs, truth_pairs) = (pred.pairs(), real.pairs());
    let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
    let precision = ratio(true_pairs, predicted_pairs);
    let recall = ratio(true_pairs, truth_pairs);
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    Scores { events, true_pairs, predicted_pairs, truth_pairs, precision, recall, f1 }
}

/// Predicted profiles holding events of more than one tenant (`tenant_of`: event id -> tenant);
/// events of unknown tenant are ignored.
pub fn cross_tenant_profiles<S1: BuildHasher, S2: BuildHasher>(
    predicted: &HashMap<String, String, S1>,
    tenant_of: &HashMap<String, String, S2>,
) -> usize {
    // Profile -> its first tenant, or None once a second tenant shows up.
    let mut seen: HashMap<&str, Option<&str>> = HashMap::new();
    for (event, profile) in predicted {
        let Some(tenant) = tenant_of.get(event) else { continue };
        seen.entry(profile.as_str())
            .and_modify(|t| {
                if *t != Some(tenant.as_str()) {
                    *t = None;
                }
            })
            .or_insert(Some(tenant.as_str()));
    }
    seen.values().filter(|t| t.is_none()).count()
}

/// The truth as a clustering (event id -> person or linkable cluster).
pub fn truth_clustering(truth: &[TruthRecord], level: TruthLevel) -> HashMap<String, String> {
    truth
        .iter()
        .map(|t| {
            let cluster = match level {
                TruthLevel::Person => &t.person,
                TruthLevel::Linkable => &t.linkable,
            };
            (t.event_id.clone(), cluster.clone())
        })
        .collect()
}

/// Event id -> tenant, for [`cross_tenant_profiles`].
pub fn tenants_of(truth: &[TruthRecord]) -> HashMap<String, String> {
    truth.iter().map(|t| (t.event_id.clone(), t.tenant.clone())).collect()
}

/// A detector's intervention, as moment scoring needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectedMoment {
    /// Tenant.
    pub tenant: String,
    /// The contract's name of the moment, e.g. `channel_hop`.
    pub moment_type: String,
    /// The intervention's key event.
    pub key_event_id: String,
    /// Event time at which the detector saw the moment, ms.
    pub detected_at_ms: i64,
    /// The intervention's id.
    pub intervention_id: String,
    /// The intervention's case id, if it names one; needed to match by person and case.
    #[serde(default)]
    pub case_id: Option<String>,
    /// The intervention's evidence event ids; needed to match by evidence.
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// How well a detector found one type of moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MomentScores {
    /// Moments in the truth.
    pub truth: usize,
    /// Interventions detected.
    pub detected: usize,
    /// Truth moments matched by at least one intervention.
    pub matched: usize,
    /// Share of interventions that match a truth moment (duplicates included); 1 when none.
    pub precision: f64,
    /// `matched / truth`; 1 when the truth has none.
    pub recall: f64,
    /// Interventions matching a truth moment another intervention matched already.
    pub duplicates: usize,
    /// Median (lower) of detected-at minus the truth's, over matched moments (first match), ms.
    pub delay_ms_p50: Option<i64>,
    /// Largest such delay, ms.
    pub delay_ms_max: Option<i64>,
    /// Truth moments whose evidence lies in one linkable cluster.
    pub truth_linkable: usize,
    /// Recall over those: what a resolver linking only what identifiers allow makes possible.
    pub recall_linkable: f64,
    /// Truth moments whose evidence was already linked when they happened.
    pub truth_in_time: usize,
    /// Recall over those: what such a resolver makes possible as events arrive (the target).
    pub recall_in_time: f64,
}

/// A detection matches a truth moment by person and case only this close in time.
pub const FALLBACK_WINDOW_MS: i64 = 24 * 3_600_000;

/// Scores `detected` against `truth` per moment type (every contract type listed).
///
/// A detection matches the truth moment of its tenant and type with the same key event or,
/// failing that, the nearest one (within [`FALLBACK_WINDOW_MS`]) of the same person (the
/// person of its key event, by `person_of_event`) and the same case id or, failing that, the
/// nearest one of the same person whose evidence shares an event with the detection's (the
/// same moment, seen at another event because one it rests on was not yet linked to the
/// profile: the same conversations counted, the same contact hopped from); fallbacks prefer
/// moments no other detection matched. Each truth moment counts once; further
/// detections of it are duplicates; detections matching nothing cost precision.
pub fn score_moments<S: BuildHasher>(
    truth: &[MomentTruth],
    detected: &[DetectedMoment],
    person_of_event: &HashMap<String, String, S>,
) -> BTreeMap<String, MomentScores> {
    let mut by_key: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut by_event: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
    let mut by_case: HashMap<(&str, &str, &str, &str), Vec<usize>> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        by_key.entry((&t.tenant, &t.moment_type, &t.key_event_id)).or_insert(i);
        for e in t.evidence.iter().chain([&t.key_event_id]) {
            by_event.entry((&t.tenant, &t.moment_type, e)).or_default().push(i);
        }
        if let Some(case) = &t.case_id {
            by_case.entry((&t.tenant, &t.moment_type, &t.person, case)).or_default().push(i);
        }
    }
    let mut order: Vec<usize> = (0..detected.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&detected[a], &detected[b]);
        (a.detected_at_ms, &a.intervention_id).cmp(&(b.detected_at_ms, &b.intervention_id))
    });
    // First match of each truth moment (its detected-at), and the outcome of each detection.
    let mut first: Vec<Option<i64>> = vec![None; truth.len()];
    let mut outcome: Vec<Option<bool>> = vec![None; detected.len()]; // Some(duplicate?)
                                                                     // Records detection `d` as a match of truth `t`; whether it is a duplicate.
    let claim = |t: usize, d: &DetectedMoment, first: &mut [Option<i64>]| -> bool {
        let dup = first[t].is_some();
        first[t].get_or_insert(d.detected_at_ms);
        dup
    };
    for &i in &order {
        let d = &detected[i];
        if let Some(&t) = by_key.get(&(d.tenant.as_str(), d.moment_type.as_str(), d.key_event_id.as_str())) {
            outcome[i] = Some(claim(t, d, &mut first));
        }
    }
    for &i in &order {
        let d = &detected[i];
        if outcome[i].is_some() {
            continue;
        }
        let (Some(person), Some(case)) = (person_of_event.get(&d.key_event_id), &d.case_id) else { continue };
        let Some(candidates) =
            by_case.get(&(d.tenant.as_str(), d.moment_type.as_str(), person.as_str(), case.as_str()))
        else {
            continue;
        };
        let distance = |t: usize| (d.detected_at_ms - truth[t].detected_at_ms).abs();
        let near = candidates.iter().copied().filter(|&t| distance(t) <= FALLBACK_WINDOW_MS);
        let best = near.min_by_key(|&t| (first[t].is_some(), distance(t), t));
        if let Some(t) = best {
            outcome[i] = Some(claim(t, d, &mut first));
        }
    }
    for &i in &order {
        let d = &detected[i];
        if outcome[i].is_some() {
            continue;
        }
        let Some(person) = person_of_event.get(&d.key_event_id) else { continue };
        let candidates = d
            .evidence
            .iter()
            .chain([&d.key_event_id])
            .filter_map(|e| by_event.get(&(d.tenant.as_str(), d.moment_type.as_str(), e.as_str())))
            .flatten()
            .copied()
            .filter(|&t| truth[t].person == *person);
        let distance = |t: usize| (d.detected_at_ms - truth[t].detected_at_ms).abs();
        if let Some(t) = candidates.min_by_key(|&t| (first[t].is_some(), distance(t), t)) {
            outcome[i] = Some(claim(t, d, &mut first));
        }
    }
    let mut out: BTreeMap<String, MomentScores> = BTreeMap::new();
    let mut delays: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut matched_linkable: HashMap<&str, usize> = HashMap::new();
    let mut matched_in_time: HashMap<&str, usize> = HashMap::new();
    let blank = || MomentScores {
        truth: 0,
        detected: 0,
        matched: 0,
        precision: 1.0,
        recall: 1.0,
        duplicates: 0,
        delay_ms_p50: None,
        delay_ms_max: None,
        truth_linkable: 0,
        recall_linkable: 1.0,
        truth_in_time: 0,
        recall_in_time: 1.0,
    };
    for m in MOMENT_TYPES {
        out.insert(m.to_string(), blank());
    }
    // Precision's numerator rides in `precision` until the end.
    for (t, f) in truth.iter().zip(&first) {
        let s = out.entry(t.moment_type.clone()).or_insert_with(blank);
        s.truth += 1;
        s.truth_linkable += usize::from(t.linkable);
        s.truth_in_time += usize::from(t.linkable_in_time);
        if let Some(at) = f {
            s.matched += 1;
            delays.entry(&t.moment_type).or_default().push(at - t.detected_at_ms);
            *matched_linkable.entry(&t.moment_type).or_insert(0) += usize::from(t.linkable);
            *matched_in_time.entry(&t.moment_type).or_insert(0) += usize::from(t.linkable_in_time);
        }
    }
    let mut hits: HashMap<&str, usize> = HashMap::new();
    for (d, o) in detected.iter().zip(&outcome) {
        let s = out.entry(d.moment_type.clone()).or_insert_with(blank);
        s.detected += 1;
        if let Some(dup) = o {
            *hits.entry(&d.moment_type).or_insert(0) += 1;
            s.duplicates += usize::from(*dup);
        }
    }
    let ratio = |num: usize, den: usize| if den == 0 { 1.0 } else { num as f64 / den as f64 };
    for (m, s) in out.iter_mut() {
        s.precision = ratio(hits.get(m.as_str()).copied().unwrap_or(0), s.detected);
        s.recall = ratio(s.matched, s.truth);
        s.recall_linkable = ratio(matched_linkable.get(m.as_str()).copied().unwrap_or(0), s.truth_linkable);
        s.recall_in_time = ratio(matched_in_time.get(m.as_str()).copied().unwrap_or(0), s.truth_in_time);
        if let Some(d) = delays.get_mut(m.as_str()) {
            d.sort_unstable();
            s.delay_ms_p50 = Some(d[(d.len() - 1) / 2]);
            s.delay_ms_max = d.last().copied();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clustering(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(e, c)| (e.to_string(), c.to_string())).collect()
    }

    /// Truth {a,b,c} {d,e} {f}, and `h` that the prediction lacks: 3 + 1 = 4 true pairs.
    fn truth() -> HashMap<String, String> {
        clustering(&[("a", "T1"), ("b", "T1"), ("c", "T1"), ("d", "T2"), ("e", "T2"), ("f", "T3"), ("h", "T1")])
    }

    #[test]
    fn split_and_wrong_merge_cost_precision_and_recall() {
        // {a,b} {c,d,e} {f}; `g` is unknown to the truth. Predicted pairs: 1 + 3 = 4; true: ab, de.
        let p =
            clustering(&[("a", "P1"), ("b", "P1"), ("c", "P2"), ("d", "P2"), ("e", "P2"), ("f", "P3"), ("g", "P1")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.events, s.true_pairs, s.predicted_pairs, s.truth_pairs), (6, 2, 4, 4));
        assert_eq!((s.precision, s.recall, s.f1), (0.5, 0.5, 0.5));
    }

    #[test]
    fn one_big_profile_has_full_recall_and_poor_precision() {
        let p = clustering(&[("a", "X"), ("b", "X"), ("c", "X"), ("d", "X"), ("e", "X"), ("f", "X")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.true_pairs, s.predicted_pairs), (4, 15));
        assert!((s.precision - 4.0 / 15.0).abs() < 1e-12);
        assert_eq!(s.recall, 1.0);
        assert!((s.f1 - 8.0 / 19.0).abs() < 1e-12);
    }

    #[test]
    fn singletons_are_precise_and_recall_nothing() {
        let p = clustering(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.precision, s.recall, s.f1), (1.0, 0.0, 0.0));
    }

    #[test]
    fn a_relabelled_truth_scores_perfectly() {
        let p = clustering(&[("a", "q"), ("b", "q"), ("c", "q"), ("d", "r"), ("e", "r"), ("f", "s")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.precision, s.recall, s.f1), (1.0, 1.0, 1.0));
        let empty = pairwise(&truth(), &HashMap::<String, String>::new());
        assert_eq!((empty.events, empty.precision, empty.recall), (0, 1.0, 1.0));
    }

    #[test]
    fn profiles_spanning_tenants_are_counted_once_each() {
        let tenants =
            clustering(&[("a", "acme"), ("b", "acme"), ("c", "acme"), ("d", "globex"), ("e", "globex"), ("f", "acme")]);
        let p =
            clustering(&[("a", "P1"), ("b", "P1"), ("c", "P2"), ("d", "P2"), ("e", "P2"), ("f", "P3"), ("z", "P3")]);
        assert_eq!(cross_tenant_profiles(&p, &tenants), 1);
        let all = clustering(&[("a", "X"), ("d", "X"), ("f", "X"), ("e", "Y")]);
        assert_eq!(cross_tenant_profiles(&all, &tenants), 1);
        assert_eq!(cross_tenant_profiles(&clustering(&[("a", "X"), ("b", "X")]), &tenants), 0);
    }

    #[test]
    fn truth_records_become_clusterings() {
        let t = vec![
            TruthRecord {
                event_id: "e1".into(),
                tenant: "acme".into(),
                person: "acme/p1".into(),
                linkable: "e1".into(),
            },
            TruthRecord {
                event_id: "e2".into(),
                tenant: "acme".into(),
                person: "acme/p1".into(),
                linkable: "e2".into(),
            },
        ];
        let person = truth_clustering(&t, TruthLevel::Person);
        let linkable = truth_clustering(&t, TruthLevel::Linkable);
        assert_eq!(pairwise(&person, &person).truth_pairs, 1);
        assert_eq!(pairwise(&person, &linkable).recall, 0.0);
        assert_eq!(tenants_of(&t)["e2"], "acme");
    }

    fn truth_moment(moment: &str, person: &str, case: Option<&str>, key: &str, at: i64, linkable: bool) -> MomentTruth {
        MomentTruth {
            tenant: "acme".into(),
            person: person.into(),
            moment_type: moment.into(),
            case_id: case.map(str::to_string),
            key_event_id: key.into(),
            detected_at_ms: at,
            linkable,
            linkable_in_time: linkable,
            evidence: vec![key.to_string()],
        }
    }

    fn detection(moment: &str, key: &str, at: i64, id: &str, case: Option<&str>) -> DetectedMoment {
        DetectedMoment {
            tenant: "acme".into(),
            moment_type: moment.into(),
            key_event_id: key.into(),
            detected_at_ms: at,
            intervention_id: id.into(),
            case_id: case.map(str::to_string),
            evidence: vec![key.to_string()],
        }
    }

    fn persons() -> HashMap<String, String> {
        clustering(&[("e1", "p1"), ("e2", "p1"), ("e3", "p1"), ("e5", "p2"), ("e6", "p2"), ("e9", "p3")])
    }

    /// Hops: t1 (e1, p1, case C1) and t2 (e5, p2, C2, not linkable); abandons: t3 (e3, p1).
    /// Detections: e1 twice (one duplicate), e6 of p2 in C2 (matches t2 by person and case,
    /// 30 s late), e9 (nothing: a false positive), and an abandon on another tenant's e3.
    #[test]
    fn matches_by_key_event_then_person_and_case() {
        let truth = vec![
            truth_moment("channel_hop", "p1", Some("C1"), "e1", 1_000, true),
            truth_moment("channel_hop", "p2", Some("C2"), "e5", 5_000, false),
            truth_moment("abandoned_contact", "p1", None, "e3", 9_000, true),
        ];
        let mut other_tenant = detection("abandoned_contact", "e3", 9_000, "i5", None);
        other_tenant.tenant = "globex".into();
        let detected = vec![
            detection("channel_hop", "e1", 1_200, "i1", Some("C1")),
            detection("channel_hop", "e1", 1_500, "i2", Some("C1")),
            detection("channel_hop", "e6", 35_000, "i3", Some("C2")),
            detection("channel_hop", "e9", 7_000, "i4", Some("C9")),
            other_tenant,
        ];
        let s = score_moments(&truth, &detected, &persons());
        let hop = &s["channel_hop"];
        assert_eq!((hop.truth, hop.detected, hop.matched, hop.duplicates), (2, 4, 2, 1));
        assert_eq!((hop.precision, hop.recall), (0.75, 1.0));
        // Delays 200 (t1, first detection) and 30 000 (t2): lower median 200, max 30 000.
        assert_eq!((hop.delay_ms_p50, hop.delay_ms_max), (Some(200), Some(30_000)));
        assert_eq!((hop.truth_linkable, hop.recall_linkable), (1, 1.0));
        let abandon = &s["abandoned_contact"];
        assert_eq!((abandon.truth, abandon.detected, abandon.matched), (1, 1, 0));
        assert_eq!((abandon.precision, abandon.recall, abandon.delay_ms_p50), (0.0, 0.0, None));
        // Every contract type is listed; one nobody saw scores perfectly.
        assert_eq!(s.len(), MOMENT_TYPES.len());
        let quiet = &s["detractor_survey"];
        assert_eq!((quiet.truth, quiet.detected, quiet.precision, quiet.recall), (0, 0, 1.0, 1.0));
    }

    /// Two truth moments of one case: a key-event match claims its own first, the other
    /// detection takes the free one rather than duplicating; far-off and caseless fallbacks fail.
    #[test]
    fn fallback_prefers_free_moments_and_stays_near() {
        let truth = vec![
            truth_moment("first_response_sla_breach", "p1", Some("C1"), "e1", 10_000, true),
            truth_moment("first_response_sla_breach", "p1", Some("C1"), "e2", 20_000, true),
        ];
        let detected = vec![
            // Sorted first (earlier), but the exact match of e1 below is settled before fallbacks.
            detection("first_response_sla_breach", "e3", 9_000, "a", Some("C1")),
            detection("first_response_sla_breach", "e1", 11_000, "b", Some("C1")),
            detection("first_response_sla_breach", "e3", 10_000 + 2 * FALLBACK_WINDOW_MS, "c", Some("C1")),
            detection("first_response_sla_breach", "e3", 9_500, "d", None),
        ];
        let s = &score_moments(&truth, &detected, &persons())["first_response_sla_breach"];
        assert_eq!((s.matched, s.duplicates, s.detected), (2, 0, 4));
        assert_eq!(s.precision, 0.5);
        // e1: +1 000; e2 by fallback: 9 000 - 20 000 = -11 000.
        assert_eq!((s.delay_ms_p50, s.delay_ms_max), (Some(-11_000), Some(1_000)));
    }

    /// A repeat contact seen one conversation late (the third was not linked yet) counts
    /// conversations the truth moment counted: a late match. Evidence of another person's
    /// moment, or a second detection of a matched moment, does not make a match.
    #[test]
    fn shared_evidence_matches_late_detections() {
        let mut counted = truth_moment("repeat_contact", "p1", Some("C1"), "e2", 10_000, true);
        counted.evidence = vec!["e1".into(), "e2".into()];
        let mut other = truth_moment("repeat_contact", "p2", None, "e5", 10_000, true);
        other.evidence = vec!["e5".into(), "e6".into()];
        let truth = vec![counted, other];
        let mut late = detection("repeat_contact", "e3", 3 * FALLBACK_WINDOW_MS, "a", None);
        late.evidence = vec!["e1".into(), "e3".into()];
        let mut again = detection("repeat_contact", "e3", 4 * FALLBACK_WINDOW_MS, "b", None);
        again.evidence = vec!["e2".into(), "e3".into()];
        let mut stranger = detection("repeat_contact", "e9", 5_000, "c", None);
        stranger.evidence = vec!["e5".into(), "e9".into()];
        let alone = detection("repeat_contact", "e3", 5 * FALLBACK_WINDOW_MS, "d", None);
        let s = &score_moments(&truth, &[late, again, stranger, alone], &persons())["repeat_contact"];
        assert_eq!((s.matched, s.duplicates, s.detected), (1, 1, 4));
        assert_eq!(s.precision, 0.5);
        assert_eq!(s.delay_ms_p50, Some(3 * FALLBACK_WINDOW_MS - 10_000));
    }

    #[test]
    fn unknown_types_get_their_own_row() {
        let detected = vec![detection("brand_new", "e1", 0, "x", None)];
        let s = score_moments(&[], &detected, &persons());
        assert_eq!((s["brand_new"].detected, s["brand_new"].precision), (1, 0.0));
        assert_eq!(s["channel_hop"].recall, 1.0);
    }
}
