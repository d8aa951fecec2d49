//! Scoring against the truth: a stitching result by pairwise precision, recall and F1 (and
//! profiles that wrongly span tenants), and a detector's interventions by moment type.
//!
//! A clustering maps an event (its [`event_key`]: tenant and event id) to a cluster id. Two
//! events form a *pair* when they share a cluster; precision is the share of predicted pairs
//! that are true pairs, recall the share of true pairs that were predicted. Pairs are counted
//! from a contingency table (sums of `n choose 2`), so scoring is linear in the number of
//! events. Every event of either side is scored: one the prediction lacks is a profile of its
//! own (losing events costs recall), one the truth lacks is nobody's (any pair it forms costs
//! precision), and both are counted.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

use crate::moments::{match_window_ms, MomentTruth, HIGH_EFFORT_JOURNEY, MOMENT_TYPES, REPEAT_CONTACT};
use crate::truth::TruthRecord;

/// The key of an event in clusterings and event maps: its tenant and event id (event ids are
/// the producer's, unique only within a tenant).
pub fn event_key(tenant: &str, event_id: &str) -> String {
    format!("{tenant}\u{1f}{event_id}")
}

/// Pairwise agreement of a predicted clustering with a truth clustering.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Events scored: every event of the truth or the prediction.
    pub events: usize,
    /// Events in the truth.
    pub truth_events: usize,
    /// Events in the prediction.
    pub predicted_events: usize,
    /// Truth events the prediction lacks, each scored as a profile of its own.
    pub missing_from_predicted: usize,
    /// Predicted events the truth lacks, each scored as a truth cluster of its own.
    pub not_in_truth: usize,
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

    /// A label of its own, equal to no other.
    fn add_alone(&mut self) -> usize {
        self.sizes.push(1);
        self.sizes.len() - 1
    }

    fn pairs(&self) -> u64 {
        self.sizes.iter().map(|&n| pairs(n)).sum()
    }
}

/// Scores `predicted` (event -> profile id) against `truth` (event -> cluster id), over every
/// event of either: a truth event the prediction lacks is a profile of its own, a predicted
/// event the truth lacks a cluster of its own.
///
/// Mind the order: truth first. Swapping the arguments swaps precision and recall.
pub fn pairwise<S1: BuildHasher, S2: BuildHasher>(
    truth: &HashMap<String, String, S1>,
    predicted: &HashMap<String, String, S2>,
) -> Scores {
    let mut pred = Labels::default();
    let mut real = Labels::default();
    let mut cells: HashMap<(usize, usize), u64> = HashMap::new();
    let mut missing_from_predicted = 0;
    for (event, cluster) in truth {
        let profile = match predicted.get(event) {
            Some(p) => pred.add(p),
            None => {
                missing_from_predicted += 1;
                pred.add_alone()
            }
        };
        *cells.entry((profile, real.add(cluster))).or_insert(0) += 1;
    }
    let mut not_in_truth = 0;
    for (event, profile) in predicted {
        if !truth.contains_key(event) {
            not_in_truth += 1;
            *cells.entry((pred.add(profile), real.add_alone())).or_insert(0) += 1;
        }
    }
    let true_pairs: u64 = cells.values().map(|&n| pairs(n)).sum();
    let (predicted_pairs, truth_pairs) = (pred.pairs(), real.pairs());
    let ratio = |num: u64, den: u64| if den == 0 { 1.0 } else { num as f64 / den as f64 };
    let precision = ratio(true_pairs, predicted_pairs);
    let recall = ratio(true_pairs, truth_pairs);
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    Scores {
        events: truth.len() + not_in_truth,
        truth_events: truth.len(),
        predicted_events: predicted.len(),
        missing_from_predicted,
        not_in_truth,
        true_pairs,
        predicted_pairs,
        truth_pairs,
        precision,
        recall,
        f1,
    }
}

/// Predicted profiles holding events of more than one tenant (`tenant_of`: event -> tenant);
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

/// The truth as a clustering ([`event_key`] -> person or linkable cluster).
pub fn truth_clustering(truth: &[TruthRecord], level: TruthLevel) -> HashMap<String, String> {
    truth
        .iter()
        .map(|t| {
            let cluster = match level {
                TruthLevel::Person => t.person.clone(),
                // Cluster names are event ids: unique within a tenant only.
                TruthLevel::Linkable => event_key(&t.tenant, &t.linkable),
            };
            (event_key(&t.tenant, &t.event_id), cluster)
        })
        .collect()
}

/// [`event_key`] -> tenant, for [`cross_tenant_profiles`].
pub fn tenants_of(truth: &[TruthRecord]) -> HashMap<String, String> {
    truth.iter().map(|t| (event_key(&t.tenant, &t.event_id), t.tenant.clone())).collect()
}

/// [`event_key`] -> person, for [`score_moments`].
pub fn persons_of(truth: &[TruthRecord]) -> HashMap<String, String> {
    truth.iter().map(|t| (event_key(&t.tenant, &t.event_id), t.person.clone())).collect()
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

/// The rule that matched a detection to a truth moment (tried in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    /// The same key event.
    KeyEvent,
    /// The same person and case id, within the moment's own window.
    PersonAndCase,
    /// The same person and an event that defines both moments (see [`score_moments`]), within
    /// the moment's own window.
    SharedEvidence,
}

/// What became of one detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first match of truth moment `truth` (an index into the truth): a hit.
    Hit {
        /// The truth moment.
        truth: usize,
        /// How.
        rule: MatchRule,
    },
    /// A match of truth moment `truth`, which an earlier detection matched: a duplicate.
    Again {
        /// The truth moment.
        truth: usize,
        /// How.
        rule: MatchRule,
    },
    /// The intervention id of detection `first` (an index into the detections), seen
    /// earlier: a duplicate, not matched again.
    SameId {
        /// The detection first seen with the id.
        first: usize,
    },
    /// Matches no truth moment, but detects the wait `settled` (an index into the truth, one
    /// that did not happen) whose settling event its profile could not hold in time.
    OutOfReach {
        /// The settled wait.
        settled: usize,
    },
    /// Matches no truth moment: a false positive.
    Unmatched,
}

/// Truth moments matched, per rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    /// By key event.
    pub key_event: usize,
    /// By person and case.
    pub person_and_case: usize,
    /// By shared defining evidence.
    pub shared_evidence: usize,
}

impl RuleCounts {
    fn add(&mut self, rule: MatchRule) {
        match rule {
            MatchRule::KeyEvent => self.key_event += 1,
            MatchRule::PersonAndCase => self.person_and_case += 1,
            MatchRule::SharedEvidence => self.shared_evidence += 1,
        }
    }
}

/// A truth moment or a detection, as an example in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MomentExample {
    /// Its key event.
    pub key_event_id: String,
    /// When it happened (truth) or was detected, event time, ms.
    pub detected_at_ms: i64,
    /// Its case id.
    pub case_id: Option<String>,
    /// Whose key event it is, by the truth (`None`: an event the truth does not know).
    pub person: Option<String>,
    /// A detection's intervention id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervention_id: Option<String>,
}

/// Most examples of misses and of false positives kept per moment type.
pub const EXAMPLES: usize = 5;

/// How well a detector found one type of moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MomentScores {
    /// Moments in the truth.
    pub truth: usize,
    /// Interventions detected, duplicates included.
    pub detected: usize,
    /// Truth moments matched by at least one intervention (the hits).
    pub matched: usize,
    /// `matched / detected`: duplicates and false positives both cost it; 1 when none.
    pub precision: f64,
    /// `matched / truth`; 1 when the truth has none.
    pub recall: f64,
    /// Interventions matching no truth moment (false positives), those out of reach included.
    pub unmatched: usize,
    /// Of those, the ones detecting a wait the person's own event settled, on a profile the
    /// detector could not link in time (see [`MomentTruth::happened`]).
    pub out_of_reach: usize,
    /// `matched / (detected - out_of_reach)`: precision against what identifiers had linked by
    /// each detection's time (the target, with `recall_in_time`).
    pub precision_in_time: f64,
    /// Interventions matching a truth moment an earlier one matched, or repeating an earlier
    /// intervention's id.
    pub duplicates: usize,
    /// Of the duplicates, those repeating an earlier intervention's id.
    pub duplicate_ids: usize,
    /// Truth moments matched, per rule (they add up to `matched`).
    pub matched_by: RuleCounts,
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
    /// The first [`EXAMPLES`] truth moments nothing matched, by time.
    pub missed_examples: Vec<MomentExample>,
    /// The first [`EXAMPLES`] interventions that matched nothing, by time.
    pub unmatched_examples: Vec<MomentExample>,
}

/// The events that define a moment of type `moment` whose key event is `key` and evidence
/// `evidence`: the counted conversations of a repeat contact and of a high-effort journey (the
/// same count seen at another event is the same moment), else the key event alone (a hop's
/// previous contact or a negative event's support contact is context, shared by the next hop
/// or complaint).
fn defining<'a>(moment: &str, key: &'a str, evidence: &'a [String]) -> impl Iterator<Item = &'a str> {
    let counted = matches!(moment, REPEAT_CONTACT | HIGH_EFFORT_JOURNEY);
    std::iter::once(key).chain(evidence.iter().map(String::as_str).filter(move |_| counted))
}

/// Matches `detected` against `truth`: the outcome of each detection, in its order.
/// `person_of_event` maps an [`event_key`] to its person (see [`persons_of`]).
///
/// Detections are taken in (detected-at, intervention id) order; a detection repeating an
/// earlier one's intervention id (of its tenant) is a duplicate and matches nothing. Then,
/// each rule over all detections not yet matched before the next rule, a detection matches a
/// truth moment of its tenant and type:
/// 1. with the same key event;
/// 2. failing that, the nearest in time within the moment's own window after it (`channel_hop`
///    60 min, `repeat_contact` 7 days, `first_response_sla_breach` 4 h, the longest SLA,
///    `negative_sentiment_after_contact` 48 h, `abandoned_contact` 30 min, others the 24 h
///    cool-down) of the same person (the person of the detection's key event) and the same
///    case id: a detection later than that reports the moment too late to act on it;
/// 3. failing that, the nearest in time within the moment's own window after it of the same
///    person, with an event that defines both: the detection's key
///    event or, for `repeat_contact` and `high_effort_journey`, any event it counted, among the
///    truth moment's (the same conversations counted, seen at another conversation because one
///    of them was not yet linked to the profile); only truth moments nothing matched yet.
///
/// No rule matches a detection made before the truth moment's time. The first detection
/// matching a truth moment (by rule, then time) is its hit; a later one is a duplicate. A
/// detection matching nothing whose key event started a wait settled out of reach (a truth
/// entry that did not happen) is [`Outcome::OutOfReach`].
pub fn match_moments<S: BuildHasher>(
    truth: &[MomentTruth],
    detected: &[DetectedMoment],
    person_of_event: &HashMap<String, String, S>,
) -> Vec<Outcome> {
    let mut by_key: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut by_event: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
    let mut by_case: HashMap<(&str, &str, &str, &str), Vec<usize>> = HashMap::new();
    let mut settled: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        if !t.happened {
            settled.entry((&t.tenant, &t.moment_type, &t.key_event_id)).or_insert(i);
            continue;
        }
        by_key.entry((&t.tenant, &t.moment_type, &t.key_event_id)).or_insert(i);
        for e in defining(&t.moment_type, &t.key_event_id, &t.evidence) {
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
    let mut outcome: Vec<Option<Outcome>> = vec![None; detected.len()];
    let mut ids: HashMap<(&str, &str), usize> = HashMap::new();
    for &i in &order {
        let d = &detected[i];
        if let Some(&first) = ids.get(&(d.tenant.as_str(), d.intervention_id.as_str())) {
            outcome[i] = Some(Outcome::SameId { first });
        } else {
            ids.insert((&d.tenant, &d.intervention_id), i);
        }
    }
    let mut matched = vec![false; truth.len()];
    let claim = |t: usize, rule: MatchRule, matched: &mut [bool]| {
        if std::mem::replace(&mut matched[t], true) {
            Outcome::Again { truth: t, rule }
        } else {
            Outcome::Hit { truth: t, rule }
        }
    };
    for &i in &order {
        let d = &detected[i];
        if outcome[i].is_some() {
            continue;
        }
        // A detection before the moment was true is no detection of it, whatever its key.
        if let Some(&t) = by_key
            .get(&(d.tenant.as_str(), d.moment_type.as_str(), d.key_event_id.as_str()))
            .filter(|&&t| d.detected_at_ms >= truth[t].detected_at_ms)
        {
            outcome[i] = Some(claim(t, MatchRule::KeyEvent, &mut matched));
        }
    }
    let person_of = |d: &DetectedMoment| person_of_event.get(&event_key(&d.tenant, &d.key_event_id));
    // The nearest in time of `candidates` detected within `window` after them (never before:
    // a detection cannot precede the moment it reports); ties to the unmatched, then the earlier.
    let nearest = |d: &DetectedMoment, candidates: &mut dyn Iterator<Item = usize>, window: i64, matched: &[bool]| {
        let after = |t: usize| d.detected_at_ms.checked_sub(truth[t].detected_at_ms).filter(|&gap| gap >= 0);
        candidates.filter(|&t| after(t).is_some_and(|gap| gap <= window)).min_by_key(|&t| (after(t), matched[t], t))
    };
    for &i in &order {
        let d = &detected[i];
        if outcome[i].is_some() {
            continue;
        }
        let (Some(person), Some(case)) = (person_of(d), &d.case_id) else { continue };
        let key = (d.tenant.as_str(), d.moment_type.as_str(), person.as_str(), case.as_str());
        let Some(candidates) = by_case.get(&key) else { continue };
        if let Some(t) = nearest(d, &mut candidates.iter().copied(), match_window_ms(&d.moment_type), &matched) {
            outcome[i] = Some(claim(t, MatchRule::PersonAndCase, &mut matched));
        }
    }
    for &i in &order {
        let d = &detected[i];
        if outcome[i].is_some() {
            continue;
        }
        let Some(person) = person_of(d) else { continue };
        // Only moments nothing matched yet: a second detection sharing an event with a moment
        // already found is another detection (of another case, or at a conversation the truth
        // did not count), a false positive, not a copy of the first.
        let mut candidates = defining(&d.moment_type, &d.key_event_id, &d.evidence)
            .filter_map(|e| by_event.get(&(d.tenant.as_str(), d.moment_type.as_str(), e)))
            .flatten()
            .copied()
            .filter(|&t| truth[t].person == *person && !matched[t]);
        if let Some(t) = nearest(d, &mut candidates, match_window_ms(&d.moment_type), &matched) {
            outcome[i] = Some(claim(t, MatchRule::SharedEvidence, &mut matched));
        }
    }
    detected
        .iter()
        .zip(outcome)
        .map(|(d, o)| {
            o.unwrap_or_else(|| {
                match settled.get(&(d.tenant.as_str(), d.moment_type.as_str(), d.key_event_id.as_str())) {
                    Some(&t) => Outcome::OutOfReach { settled: t },
                    None => Outcome::Unmatched,
                }
            })
        })
        .collect()
}

/// Scores `detected` against `truth` per moment type (every contract type listed), matched as
/// [`match_moments`] says. Each truth moment counts once: its first match is a hit, a further
/// detection of it (or of an intervention id already seen) a duplicate, and a detection
/// matching nothing a false positive; both cost precision.
pub fn score_moments<S: BuildHasher>(
    truth: &[MomentTruth],
    detected: &[DetectedMoment],
    person_of_event: &HashMap<String, String, S>,
) -> BTreeMap<String, MomentScores> {
    let outcomes = match_moments(truth, detected, person_of_event);
    let mut first: Vec<Option<(i64, MatchRule)>> = vec![None; truth.len()];
    for (d, o) in detected.iter().zip(&outcomes) {
        if let Outcome::Hit { truth: t, rule } = *o {
            first[t] = Some((d.detected_at_ms, rule));
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
        unmatched: 0,
        out_of_reach: 0,
        precision_in_time: 1.0,
        duplicates: 0,
        duplicate_ids: 0,
        matched_by: RuleCounts::default(),
        delay_ms_p50: None,
        delay_ms_max: None,
        truth_linkable: 0,
        recall_linkable: 1.0,
        truth_in_time: 0,
        recall_in_time: 1.0,
        missed_examples: Vec::new(),
        unmatched_examples: Vec::new(),
    };
    for m in MOMENT_TYPES {
        out.insert(m.to_string(), blank());
    }
    let mut by_time: Vec<usize> = (0..truth.len()).collect();
    by_time.sort_by_key(|&t| (truth[t].detected_at_ms, t));
    for t in by_time {
        let m = &truth[t];
        if !m.happened {
            continue;
        }
        let s = out.entry(m.moment_type.clone()).or_insert_with(blank);
        s.truth += 1;
        s.truth_linkable += usize::from(m.linkable);
        s.truth_in_time += usize::from(m.linkable_in_time);
        match first[t] {
            Some((at, rule)) => {
                s.matched += 1;
                s.matched_by.add(rule);
                delays.entry(&m.moment_type).or_default().push(at - m.detected_at_ms);
                *matched_linkable.entry(&m.moment_type).or_insert(0) += usize::from(m.linkable);
                *matched_in_time.entry(&m.moment_type).or_insert(0) += usize::from(m.linkable_in_time);
            }
            None if s.missed_examples.len() < EXAMPLES => s.missed_examples.push(MomentExample {
                key_event_id: m.key_event_id.clone(),
                detected_at_ms: m.detected_at_ms,
                case_id: m.case_id.clone(),
                person: Some(m.person.clone()),
                intervention_id: None,
            }),
            None => {}
        }
    }
    let mut order: Vec<usize> = (0..detected.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&detected[a], &detected[b]);
        (a.detected_at_ms, &a.intervention_id).cmp(&(b.detected_at_ms, &b.intervention_id))
    });
    for i in order {
        let d = &detected[i];
        let s = out.entry(d.moment_type.clone()).or_insert_with(blank);
        s.detected += 1;
        match outcomes[i] {
            Outcome::Hit { .. } => {}
            Outcome::Again { .. } => s.duplicates += 1,
            Outcome::SameId { .. } => {
                s.duplicates += 1;
                s.duplicate_ids += 1;
            }
            Outcome::OutOfReach { .. } => {
                s.unmatched += 1;
                s.out_of_reach += 1;
            }
            Outcome::Unmatched => {
                s.unmatched += 1;
                if s.unmatched_examples.len() < EXAMPLES {
                    s.unmatched_examples.push(MomentExample {
                        key_event_id: d.key_event_id.clone(),
                        detected_at_ms: d.detected_at_ms,
                        case_id: d.case_id.clone(),
                        person: person_of_event.get(&event_key(&d.tenant, &d.key_event_id)).cloned(),
                        intervention_id: Some(d.intervention_id.clone()),
                    });
                }
            }
        }
    }
    let ratio = |num: usize, den: usize| if den == 0 { 1.0 } else { num as f64 / den as f64 };
    for (m, s) in out.iter_mut() {
        s.precision = ratio(s.matched, s.detected);
        s.precision_in_time = ratio(s.matched, s.detected - s.out_of_reach);
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
    use crate::moments::{ABANDONED_CONTACT, CHANNEL_HOP, DETRACTOR_SURVEY, FIRST_RESPONSE_SLA_BREACH};

    fn clustering(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(e, c)| (e.to_string(), c.to_string())).collect()
    }

    /// Truth {a,b,c,h} {d,e} {f}: 6 + 1 = 7 true pairs.
    fn truth() -> HashMap<String, String> {
        clustering(&[("a", "T1"), ("b", "T1"), ("c", "T1"), ("d", "T2"), ("e", "T2"), ("f", "T3"), ("h", "T1")])
    }

    #[test]
    fn split_and_wrong_merge_cost_precision_and_recall() {
        // {a,b,g} {c,d,e} {f}; `h` is missing (alone), `g` unknown to the truth (nobody's).
        // Predicted pairs: 3 + 3 = 6; true: ab, de.
        let p =
            clustering(&[("a", "P1"), ("b", "P1"), ("c", "P2"), ("d", "P2"), ("e", "P2"), ("f", "P3"), ("g", "P1")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.events, s.truth_events, s.predicted_events), (8, 7, 7));
        assert_eq!((s.missing_from_predicted, s.not_in_truth), (1, 1));
        assert_eq!((s.true_pairs, s.predicted_pairs, s.truth_pairs), (2, 6, 7));
        assert_eq!((s.precision, s.recall), (2.0 / 6.0, 2.0 / 7.0));
    }

    /// Events the prediction lost are profiles of their own: they cost recall, they do not
    /// vanish from the score.
    #[test]
    fn lost_events_cost_recall() {
        let all = clustering(&[("a", "q"), ("b", "q"), ("c", "q"), ("h", "q"), ("d", "r"), ("e", "r"), ("f", "s")]);
        assert_eq!(pairwise(&truth(), &all).recall, 1.0);
        let lost_two = clustering(&[("a", "q"), ("b", "q"), ("d", "r"), ("e", "r"), ("f", "s")]);
        let s = pairwise(&truth(), &lost_two);
        assert_eq!((s.events, s.missing_from_predicted), (7, 2));
        assert_eq!((s.precision, s.recall), (1.0, 2.0 / 7.0));
        // An event the truth does not know, merged into a profile, is a wrong pair.
        let stranger =
            clustering(&[("a", "q"), ("b", "q"), ("c", "q"), ("h", "q"), ("d", "r"), ("e", "r"), ("z", "r")]);
        let s = pairwise(&truth(), &stranger);
        assert_eq!((s.not_in_truth, s.missing_from_predicted), (1, 1));
        assert_eq!((s.true_pairs, s.predicted_pairs), (7, 9));
    }

    #[test]
    fn one_big_profile_has_full_recall_of_what_it_holds_and_poor_precision() {
        let p = clustering(&[("a", "X"), ("b", "X"), ("c", "X"), ("d", "X"), ("e", "X"), ("f", "X")]);
        let s = pairwise(&truth(), &p);
        // `h` is missing: its three true pairs are lost.
        assert_eq!((s.true_pairs, s.predicted_pairs, s.truth_pairs), (4, 15, 7));
        assert_eq!((s.precision, s.recall), (4.0 / 15.0, 4.0 / 7.0));
    }

    #[test]
    fn singletons_are_precise_and_recall_nothing() {
        let p = clustering(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", "6")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.precision, s.recall, s.f1), (1.0, 0.0, 0.0));
    }

    #[test]
    fn a_relabelled_truth_scores_perfectly_and_nothing_recalls_nothing() {
        let p = clustering(&[("a", "q"), ("b", "q"), ("c", "q"), ("h", "q"), ("d", "r"), ("e", "r"), ("f", "s")]);
        let s = pairwise(&truth(), &p);
        assert_eq!((s.precision, s.recall, s.f1), (1.0, 1.0, 1.0));
        let empty = pairwise(&truth(), &HashMap::<String, String>::new());
        assert_eq!((empty.events, empty.missing_from_predicted), (7, 7));
        assert_eq!((empty.precision, empty.recall), (1.0, 0.0));
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

    fn record(event: &str, tenant: &str, person: &str, linkable: &str) -> TruthRecord {
        TruthRecord { event_id: event.into(), tenant: tenant.into(), person: person.into(), linkable: linkable.into() }
    }

    /// Event ids and cluster names (event ids) are the producer's: two tenants may use the
    /// same, and they stay apart.
    #[test]
    fn truth_records_become_clusterings_keyed_by_tenant_and_event() {
        let t = vec![
            record("e1", "acme", "acme/p1", "e1"),
            record("e2", "acme", "acme/p1", "e2"),
            record("e1", "globex", "globex/p1", "e1"),
            record("e2", "globex", "globex/p1", "e1"),
        ];
        let person = truth_clustering(&t, TruthLevel::Person);
        let linkable = truth_clustering(&t, TruthLevel::Linkable);
        assert_eq!((person.len(), linkable.len()), (4, 4));
        assert_eq!(pairwise(&person, &person).truth_pairs, 2);
        // Only globex's two events are one linkable cluster; acme's `e1` is not globex's.
        assert_eq!(pairwise(&linkable, &linkable).truth_pairs, 1);
        assert_eq!(pairwise(&person, &linkable).recall, 0.5);
        assert_eq!(tenants_of(&t)[&event_key("globex", "e2")], "globex");
        assert_eq!(persons_of(&t)[&event_key("acme", "e1")], "acme/p1");
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
            happened: true,
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

    /// acme's events: e1-e4 are p1's, e5-e6 p2's, e9 p3's; globex's e3 is somebody else's.
    fn persons() -> HashMap<String, String> {
        let mut m: HashMap<String, String> =
            [("e1", "p1"), ("e2", "p1"), ("e3", "p1"), ("e4", "p1"), ("e5", "p2"), ("e6", "p2"), ("e9", "p3")]
                .iter()
                .map(|(e, p)| (event_key("acme", e), p.to_string()))
                .collect();
        m.insert(event_key("globex", "e3"), "globex/p7".into());
        m
    }

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    /// Hops: t1 (e1, p1, case C1) and t2 (e5, p2, C2, not linkable); abandons: t3 (e3, p1).
    /// Detections: e1 twice (one duplicate), e6 of p2 in C2 (matches t2 by person and case,
    /// 30 s late), e9 (nothing: a false positive), and an abandon on another tenant's e3.
    #[test]
    fn matches_by_key_event_then_person_and_case() {
        let truth = vec![
            truth_moment(CHANNEL_HOP, "p1", Some("C1"), "e1", 1_000, true),
            truth_moment(CHANNEL_HOP, "p2", Some("C2"), "e5", 5_000, false),
            truth_moment(ABANDONED_CONTACT, "p1", None, "e3", 9_000, true),
        ];
        let mut other_tenant = detection(ABANDONED_CONTACT, "e3", 9_000, "i5", None);
        other_tenant.tenant = "globex".into();
        let detected = vec![
            detection(CHANNEL_HOP, "e1", 1_200, "i1", Some("C1")),
            detection(CHANNEL_HOP, "e1", 1_500, "i2", Some("C1")),
            detection(CHANNEL_HOP, "e6", 35_000, "i3", Some("C2")),
            detection(CHANNEL_HOP, "e9", 7_000, "i4", Some("C9")),
            other_tenant,
        ];
        let s = score_moments(&truth, &detected, &persons());
        let hop = &s[CHANNEL_HOP];
        assert_eq!((hop.truth, hop.detected, hop.matched, hop.duplicates, hop.unmatched), (2, 4, 2, 1, 1));
        assert_eq!(hop.matched_by, RuleCounts { key_event: 1, person_and_case: 1, shared_evidence: 0 });
        // The duplicate is no hit: 2 of 4.
        assert_eq!((hop.precision, hop.recall), (0.5, 1.0));
        // Delays 200 (t1, first detection) and 30 000 (t2): lower median 200, max 30 000.
        assert_eq!((hop.delay_ms_p50, hop.delay_ms_max), (Some(200), Some(30_000)));
        assert_eq!((hop.truth_linkable, hop.recall_linkable), (1, 1.0));
        assert_eq!(hop.unmatched_examples.len(), 1);
        assert_eq!(hop.unmatched_examples[0].key_event_id, "e9");
        assert_eq!(hop.unmatched_examples[0].person.as_deref(), Some("p3"));
        let abandon = &s[ABANDONED_CONTACT];
        assert_eq!((abandon.truth, abandon.detected, abandon.matched), (1, 1, 0));
        assert_eq!((abandon.precision, abandon.recall, abandon.delay_ms_p50), (0.0, 0.0, None));
        assert_eq!(abandon.missed_examples[0].key_event_id, "e3");
        // Every contract type is listed; one nobody saw scores perfectly.
        assert_eq!(s.len(), MOMENT_TYPES.len());
        let quiet = &s[DETRACTOR_SURVEY];
        assert_eq!((quiet.truth, quiet.detected, quiet.precision, quiet.recall), (0, 0, 1.0, 1.0));
    }

    /// An abandon the person's successful call settled, on a profile not linked in time, is no
    /// moment: detecting it costs precision, not precision in time; a detection of an abandon
    /// nothing settled is a false positive for both, and the settled wait is never a hit.
    #[test]
    fn a_wait_settled_out_of_reach_costs_precision_not_precision_in_time() {
        let settled = MomentTruth { happened: false, ..truth_moment(ABANDONED_CONTACT, "p1", None, "e2", 4_000, true) };
        let truth = vec![truth_moment(ABANDONED_CONTACT, "p1", None, "e1", 1_000, true), settled];
        let detected = vec![
            detection(ABANDONED_CONTACT, "e1", 1_000, "i1", None),
            detection(ABANDONED_CONTACT, "e2", 4_000, "i2", None),
            detection(ABANDONED_CONTACT, "e3", 5_000, "i3", None),
        ];
        let outcomes = match_moments(&truth, &detected, &persons());
        assert_eq!(outcomes[1], Outcome::OutOfReach { settled: 1 });
        assert_eq!(outcomes[2], Outcome::Unmatched, "same person, in the window: still no hit of a settled wait");
        let s = &score_moments(&truth, &detected, &persons())[ABANDONED_CONTACT];
        assert_eq!((s.truth, s.detected, s.matched, s.unmatched, s.out_of_reach), (1, 3, 1, 2, 1));
        assert_eq!((s.precision, s.precision_in_time, s.recall), (1.0 / 3.0, 0.5, 1.0));
        assert_eq!(s.unmatched_examples.len(), 1, "the false positive, not the wait out of reach");
        assert_eq!(s.unmatched_examples[0].key_event_id, "e3");
    }

    /// An intervention written twice (the same id) is one hit and one duplicate, even when
    /// its copy comes with another time; a copy of a false positive is a duplicate too.
    #[test]
    fn a_repeated_intervention_id_is_a_duplicate() {
        let truth = vec![truth_moment(DETRACTOR_SURVEY, "p1", Some("C1"), "e1", 1_000, true)];
        let detected = vec![
            detection(DETRACTOR_SURVEY, "e1", 1_000, "i1", Some("C1")),
            detection(DETRACTOR_SURVEY, "e1", 2_000, "i1", Some("C1")),
            detection(DETRACTOR_SURVEY, "e9", 3_000, "i9", None),
            detection(DETRACTOR_SURVEY, "e9", 3_000, "i9", None),
        ];
        let outcomes = match_moments(&truth, &detected, &persons());
        assert_eq!(outcomes[1], Outcome::SameId { first: 0 });
        assert!(matches!(outcomes[2..], [Outcome::Unmatched, Outcome::SameId { first: 2 }]));
        let s = &score_moments(&truth, &detected, &persons())[DETRACTOR_SURVEY];
        assert_eq!((s.matched, s.duplicates, s.duplicate_ids, s.unmatched), (1, 2, 2, 1));
        assert_eq!(s.precision, 0.25);
    }

    /// By person and case, a detection takes the nearest truth moment within the cool-down:
    /// one nearer a matched moment duplicates it rather than claiming a free one further off.
    #[test]
    fn the_case_fallback_takes_the_nearest_moment() {
        let truth = vec![
            truth_moment(FIRST_RESPONSE_SLA_BREACH, "p1", Some("C1"), "e1", 10_000, true),
            truth_moment(FIRST_RESPONSE_SLA_BREACH, "p1", Some("C1"), "e2", 10_000 + DAY, true),
        ];
        let detected = vec![
            // Sorted first, but the key-event match of e1 is settled before fallbacks.
            detection(FIRST_RESPONSE_SLA_BREACH, "e3", 10_500, "a", Some("C1")),
            detection(FIRST_RESPONSE_SLA_BREACH, "e1", 11_000, "b", Some("C1")),
            detection(FIRST_RESPONSE_SLA_BREACH, "e3", 10_000 + 3 * DAY, "c", Some("C1")),
            detection(FIRST_RESPONSE_SLA_BREACH, "e3", 10_700, "d", None),
        ];
        let outcomes = match_moments(&truth, &detected, &persons());
        assert_eq!(outcomes[0], Outcome::Again { truth: 0, rule: MatchRule::PersonAndCase });
        assert_eq!(outcomes[1], Outcome::Hit { truth: 0, rule: MatchRule::KeyEvent });
        assert_eq!(&outcomes[2..], [Outcome::Unmatched, Outcome::Unmatched]);
        let s = &score_moments(&truth, &detected, &persons())[FIRST_RESPONSE_SLA_BREACH];
        assert_eq!((s.matched, s.duplicates, s.unmatched, s.detected), (1, 1, 2, 4));
        assert_eq!((s.precision, s.recall), (0.25, 0.5));
        assert_eq!(s.missed_examples[0].key_event_id, "e2");
        // Near the second moment, a detection of the case finds it.
        let near = detection(FIRST_RESPONSE_SLA_BREACH, "e3", 10_500 + DAY, "e", Some("C1"));
        let s = &score_moments(&truth, &[detected, vec![near]].concat(), &persons())[FIRST_RESPONSE_SLA_BREACH];
        assert_eq!((s.matched, s.matched_by.person_and_case), (2, 1));
    }

    /// By person and case, a detection reports the moment only within the moment's own
    /// window: a hop found hours later in the case is too late to hand off warm.
    #[test]
    fn the_case_fallback_reaches_as_far_as_the_moment_s_window() {
        let truth = vec![truth_moment(CHANNEL_HOP, "p1", Some("C1"), "e1", 10_000, true)];
        let late = vec![detection(CHANNEL_HOP, "e4", 10_000 + 2 * HOUR, "a", Some("C1"))];
        assert_eq!(match_moments(&truth, &late, &persons()), [Outcome::Unmatched]);
        let soon = vec![detection(CHANNEL_HOP, "e4", 10_000 + HOUR / 2, "a", Some("C1"))];
        assert_eq!(
            match_moments(&truth, &soon, &persons()),
            [Outcome::Hit { truth: 0, rule: MatchRule::PersonAndCase }]
        );
    }

    /// A detection made before the moment was true matches it by no rule, not even by its
    /// key event: it is a false positive, and no delay is negative.
    #[test]
    fn a_detection_before_the_moment_is_no_hit() {
        let truth = vec![truth_moment(FIRST_RESPONSE_SLA_BREACH, "p1", Some("C1"), "e1", 10_000, true)];
        let early = vec![
            detection(FIRST_RESPONSE_SLA_BREACH, "e1", 9_000, "a", Some("C1")),
            detection(FIRST_RESPONSE_SLA_BREACH, "e3", 9_999, "b", Some("C1")),
        ];
        assert_eq!(match_moments(&truth, &early, &persons()), [Outcome::Unmatched, Outcome::Unmatched]);
        let on_time = detection(FIRST_RESPONSE_SLA_BREACH, "e1", 10_000, "c", Some("C1"));
        let s = &score_moments(&truth, &[early, vec![on_time]].concat(), &persons())[FIRST_RESPONSE_SLA_BREACH];
        assert_eq!((s.matched, s.unmatched, s.delay_ms_p50), (1, 2, Some(0)));
    }

    /// A repeat contact seen one conversation late (the third was not linked yet) counts
    /// conversations the truth moment counted: a match, within the moment's seven days.
    #[test]
    fn shared_counted_conversations_match_a_late_repeat_contact_within_its_window() {
        let mut counted = truth_moment(REPEAT_CONTACT, "p1", None, "e2", 10_000, true);
        counted.evidence = vec!["e1".into(), "e2".into()];
        let mut other = truth_moment(REPEAT_CONTACT, "p2", None, "e5", 10_000, true);
        other.evidence = vec!["e5".into(), "e6".into()];
        let truth = vec![counted, other];
        let mut late = detection(REPEAT_CONTACT, "e3", 10_000 + 2 * DAY, "a", None);
        late.evidence = vec!["e1".into(), "e3".into()];
        let mut again = detection(REPEAT_CONTACT, "e4", 10_000 + 3 * DAY, "b", None);
        again.evidence = vec!["e2".into(), "e4".into()];
        // Evidence of another person's moment.
        let mut stranger = detection(REPEAT_CONTACT, "e9", 5_000, "c", None);
        stranger.evidence = vec!["e5".into(), "e9".into()];
        let s = &score_moments(&truth, &[late.clone(), again, stranger], &persons())[REPEAT_CONTACT];
        // `again` shares an event with the moment `late` found: another detection (a false
        // positive), not a copy.
        assert_eq!((s.matched, s.duplicates, s.unmatched, s.detected), (1, 0, 2, 3));
        assert_eq!(s.matched_by.shared_evidence, 1);
        assert_eq!((s.precision, s.delay_ms_p50), (1.0 / 3.0, Some(2 * DAY)));
        // Beyond the window (seven days), the same evidence is another moment.
        late.detected_at_ms = 10_000 + 8 * DAY;
        let s = &score_moments(&truth, &[late], &persons())[REPEAT_CONTACT];
        assert_eq!((s.matched, s.unmatched), (0, 1));
    }

    /// A hop's previous contact is context, not what defines it: a hop from the contact a
    /// missed hop arrived on is another hop (a chain chat -> call -> email), and a detection
    /// hours after the moment's window matches nothing either.
    #[test]
    fn a_hop_matches_only_its_own_key_event_beyond_its_case() {
        let mut missed = truth_moment(CHANNEL_HOP, "p1", None, "e2", 10_000, true);
        missed.evidence = vec!["e1".into(), "e2".into()];
        let mut next = detection(CHANNEL_HOP, "e3", 10_000 + 600_000, "a", None);
        next.evidence = vec!["e2".into(), "e3".into()];
        let mut late = detection(CHANNEL_HOP, "e4", 10_000 + 3 * HOUR, "b", None);
        late.evidence = vec!["e2".into(), "e4".into()];
        let outcomes = match_moments(&[missed], &[next, late], &persons());
        assert_eq!(outcomes, [Outcome::Unmatched, Outcome::Unmatched]);
    }

    #[test]
    fn unknown_types_get_their_own_row() {
        let detected = vec![detection("brand_new", "e1", 0, "x", None)];
        let s = score_moments(&[], &detected, &persons());
        assert_eq!((s["brand_new"].detected, s["brand_new"].precision), (1, 0.0));
        assert_eq!(s[CHANNEL_HOP].recall, 1.0);
    }
}
