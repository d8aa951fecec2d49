//! Scoring a stitching result against the truth: pairwise precision, recall and F1, and
//! profiles that wrongly span tenants.
//!
//! A clustering maps event id -> cluster id. Two events form a *pair* when they share a
//! cluster; precision is the share of predicted pairs that are true pairs, recall the share of
//! true pairs that were predicted. Pairs are counted from a contingency table (sums of
//! `n choose 2`), so scoring is linear in the number of events.

use std::collections::HashMap;
use std::hash::BuildHasher;

use serde::Serialize;

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
}
