//! `omnistitch evaluate`: pairwise scores of the resolved profiles against ground truth, beside
//! what naive union-find (no rules) scores on the same input, and the interventions against the
//! planted micro-moments (`docs/evaluation.md`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use omnistitch_engine::{Engine, EngineConfig, Pipeline};
use omnistitch_identity::{IdentityRules, Normalizer};
use omnistitch_sim::score::{
    cross_tenant_profiles, event_key, pairwise, persons_of, score_moments, tenants_of, truth_clustering,
    DetectedMoment, MomentScores, Scores, TruthLevel,
};
use omnistitch_sim::SimError;
use omnistitch_timeline::RetentionConfig;
use serde::{Deserialize, Serialize};

use crate::input::InputStream;
use crate::replay::replay;

/// Scores of one resolver.
#[derive(Debug, Clone, Serialize)]
pub struct ResolverScores {
    /// Against the clusters a deterministic resolver can find (the target).
    pub linkable: Scores,
    /// Against the true persons.
    pub person: Scores,
    /// Profiles holding events of more than one tenant.
    pub cross_tenant_profiles: usize,
}

/// The evaluation report.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Distinct events in the truth (`truth.jsonl`).
    pub truth_events: usize,
    /// Distinct events in `replay`'s output (`timeline.jsonl`).
    pub output_events: usize,
    /// Truth events the output lacks; each is scored as a profile of its own.
    pub missing_from_output: usize,
    /// Output events the truth lacks; each is scored as a truth cluster of its own (nobody's).
    pub not_in_truth: usize,
    /// The default region naive union-find read phone numbers with.
    pub naive_region: String,
    /// The configured rules, from `replay`'s output.
    pub rules: ResolverScores,
    /// Naive union-find on the same input.
    pub naive: ResolverScores,
    /// Interventions against planted moments, per moment type (empty without moment truth).
    pub moments: BTreeMap<String, MomentScores>,
    /// Whether the configuration's `[moments]` settings are the defaults, which the simulator's
    /// moment truth follows: with others, the moment scores measure the difference too.
    pub default_moments: bool,
}

#[derive(Deserialize)]
struct InterventionLine {
    intervention_id: String,
    tenant: String,
    moment_type: String,
    /// Absent in records written before it existed (the schema's default is ""): the key
    /// event is then the last evidence event.
    #[serde(default)]
    key_event_id: String,
    detected_at: i64,
    #[serde(default)]
    case_id: Option<String>,
    #[serde(default)]
    evidence: Vec<EvidenceLine>,
}

#[derive(Deserialize)]
struct EvidenceLine {
    event_id: String,
}

/// The objects of the JSON Lines file `path`, each with its line number; blank lines skipped.
fn json_lines<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<(usize, T)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line).with_context(|| format!("parsing {}:{}", path.display(), n + 1))?;
        out.push((n + 1, item));
    }
    Ok(out)
}

fn read_detections(out: &Path) -> anyhow::Result<Vec<DetectedMoment>> {
    let mut detected = Vec::new();
    for (_, i) in json_lines::<InterventionLine>(&out.join("interventions.jsonl"))? {
        let evidence: Vec<String> = i.evidence.into_iter().map(|e| e.event_id).collect();
        let key_event_id = match i.key_event_id {
            k if k.is_empty() => evidence.last().cloned().unwrap_or_default(),
            k => k,
        };
        detected.push(DetectedMoment {
            tenant: i.tenant,
            moment_type: i.moment_type,
            key_event_id,
            detected_at_ms: i.detected_at,
            intervention_id: i.intervention_id,
            case_id: i.case_id,
            evidence,
        });
    }
    Ok(detected)
}

#[derive(Deserialize)]
struct TimelineLine {
    tenant: String,
    profile_id: String,
    event: EventId,
}

#[derive(Deserialize)]
struct EventId {
    event_id: String,
}

/// Event ([`event_key`]) -> profile id, from `timeline.jsonl`; an event listed twice is an error
/// (each event lands on exactly one timeline once).
fn read_assignments(out: &Path) -> anyhow::Result<HashMap<String, String>> {
    let path = out.join("timeline.jsonl");
    let mut map = HashMap::new();
    let mut line_of: HashMap<String, usize> = HashMap::new();
    for (n, l) in json_lines::<TimelineLine>(&path)? {
        match map.entry(event_key(&l.tenant, &l.event.event_id)) {
            Entry::Vacant(v) => {
                line_of.insert(v.key().clone(), n);
                v.insert(l.profile_id);
            }
            Entry::Occupied(o) => bail!(
                "{}:{}: event {} of tenant {} is listed a second time (first on line {})",
                path.display(),
                n,
                l.event.event_id,
                l.tenant,
                line_of[o.key()]
            ),
        }
    }
    Ok(map)
}

/// Event ([`event_key`]) -> profile id of a finished engine, from its timelines (profile ids
/// are bare, not per tenant: a profile holding events of two tenants shows as one). Events
/// retention evicted are absent.
pub fn engine_assignments(engine: &Engine) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (tenant, graph) in engine.identity().graphs() {
        for p in graph.profiles() {
            for e in engine.timelines().timeline(tenant.as_str(), p.id).into_iter().flat_map(|t| t.entries()) {
                map.insert(event_key(tenant.as_str(), &e.event_id), p.id.to_string());
            }
        }
    }
    map
}

/// Retention that keeps every event: the baseline's assignment must hold all of them (its
/// over-merged profiles are the largest, and the events a count limit would evict from them
/// are exactly those that should cost it precision).
const KEEP_EVERYTHING: RetentionConfig = RetentionConfig { max_events_per_profile: usize::MAX, max_age_days: u32::MAX };

/// What naive union-find (every identifier links, no rules) makes of the inputs in
/// `input_dir`: event ([`event_key`]) -> profile id, every applied event included. Phone
/// numbers are read with `normalizer` (the configuration's default region).
pub fn naive_assignments(input_dir: &Path, normalizer: Arc<Normalizer>) -> anyhow::Result<HashMap<String, String>> {
    let engine = Engine::new(normalizer, IdentityRules::naive(), KEEP_EVERYTHING);
    let run = replay(InputStream::open(input_dir)?, Pipeline::core_only(engine), false);
    Ok(engine_assignments(run.pipeline.engine()))
}

fn score(
    predicted: &HashMap<String, String>,
    person: &HashMap<String, String>,
    linkable: &HashMap<String, String>,
    tenant_of: &HashMap<String, String>,
) -> ResolverScores {
    ResolverScores {
        linkable: pairwise(linkable, predicted),
        person: pairwise(person, predicted),
        cross_tenant_profiles: cross_tenant_profiles(predicted, tenant_of),
    }
}

/// Scores `out` (written by `replay` with the default configuration) against the world in
/// `truth_dir` (written by `simulate`); see [`evaluate_with`].
pub fn evaluate(truth_dir: &Path, out: &Path) -> anyhow::Result<Evaluation> {
    evaluate_with(truth_dir, out, &EngineConfig::default())
}

/// Scores `out` (written by `replay`) against the world in `truth_dir` (written by `simulate`)
/// and writes `evaluation.json` into `out`. `config` is the configuration `replay` ran with:
/// naive union-find reads phone numbers as its normalization does (its default region).
///
/// Every event counts: a truth event missing from the output is a profile of its own, an
/// output event the truth lacks is nobody's; both are counted in the report. A missing
/// `moments_truth.jsonl` means no moments table; an unreadable one is an error.
pub fn evaluate_with(truth_dir: &Path, out: &Path, config: &EngineConfig) -> anyhow::Result<Evaluation> {
    let truth = omnistitch_sim::read_truth(truth_dir).context("reading ground truth")?;
    let person = truth_clustering(&truth, TruthLevel::Person);
    let linkable = truth_clustering(&truth, TruthLevel::Linkable);
    let tenant_of = tenants_of(&truth);
    if person.len() != truth.len() {
        bail!("reading ground truth: {} events are listed more than once", truth.len() - person.len());
    }
    let predicted = read_assignments(out)?;
    let rules = score(&predicted, &person, &linkable, &tenant_of);
    let (normalizer, _) = config.validate().context("invalid configuration")?;
    let naive_assigned = naive_assignments(truth_dir, normalizer)?;
    let naive = score(&naive_assigned, &person, &linkable, &tenant_of);
    let moment_truth = match omnistitch_sim::read_moment_truth(truth_dir) {
        Ok(m) => Some(m),
        Err(SimError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("reading the micro-moments truth"),
    };
    let moments = match moment_truth {
        Some(m) => score_moments(&m, &read_detections(out)?, &persons_of(&truth)),
        None => BTreeMap::new(),
    };
    let report = Evaluation {
        truth_events: rules.person.truth_events,
        output_events: rules.person.predicted_events,
        missing_from_output: rules.person.missing_from_predicted,
        not_in_truth: rules.person.not_in_truth,
        naive_region: config.identity.default_region.clone(),
        rules,
        naive,
        moments,
        default_moments: config.moments == omnistitch_moments::MomentsConfig::default(),
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("evaluation.json"), json).context("writing evaluation.json")?;
    Ok(report)
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "identity resolution, pairwise: {} truth events, {} output events; {} truth events missing from the output \
             (each scored as a profile of its own), {} output events not in the truth (each scored as nobody's)",
            self.truth_events, self.output_events, self.missing_from_output, self.not_in_truth
        )?;
        writeln!(
            f,
            "  {:<26} {:>9} {:>9} {:>9} {:>12} {:>8}",
            "", "precision", "recall", "F1", "cross-tenant", "missing"
        )?;
        for (name, r) in [("rules", &self.rules), ("naive union-find", &self.naive)] {
            for (truth, s) in [("linkable", &r.linkable), ("person", &r.person)] {
                writeln!(
                    f,
                    "  {:<26} {:>9.4} {:>9.4} {:>9.4} {:>12} {:>8}",
                    format!("{name} vs {truth}"),
                    s.precision,
                    s.recall,
                    s.f1,
                    r.cross_tenant_profiles,
                    s.missing_from_predicted
                )?;
            }
        }
        writeln!(f, "  (naive union-find: no rules, every event kept, phones read in region {})", self.naive_region)?;
        if !self.moments.is_empty() {
            writeln!(f, "micro-moments against planted truth:")?;
            if !self.default_moments {
                writeln!(
                    f,
                    "  (warning: the [moments] settings are not the defaults the planted truth follows: \
                     these scores also measure the difference)"
                )?;
            }
            writeln!(
                f,
                "  {:<34} {:>6} {:>8} {:>9} {:>7} {:>15} {:>11} {:>14} {:>6} {:>6} {:>12} {:>5} {:>14} {:>11}",
                "",
                "truth",
                "detected",
                "precision",
                "recall",
                "recall linkable",
                "in time: p",
                "in time: r",
                "missed",
                "false+",
                "out of reach",
                "dups",
                "key/case/evid",
                "delay p50"
            )?;
            for (moment, s) in &self.moments {
                let delay = s.delay_ms_p50.map_or("-".to_string(), |d| format!("{:.1}s", d as f64 / 1000.0));
                let by = &s.matched_by;
                writeln!(
                    f,
                    "  {:<34} {:>6} {:>8} {:>9.4} {:>7.4} {:>15.4} {:>11.4} {:>14.4} {:>6} {:>6} {:>12} {:>5} {:>14} {:>11}",
                    moment,
                    s.truth,
                    s.detected,
                    s.precision,
                    s.recall,
                    s.recall_linkable,
                    s.precision_in_time,
                    s.recall_in_time,
                    s.truth - s.matched,
                    s.unmatched,
                    s.out_of_reach,
                    s.duplicates,
                    format!("{}/{}/{}", by.key_event, by.person_and_case, by.shared_evidence),
                    delay
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile holding events of two tenants is counted, whatever the tenants' own names.
    #[test]
    fn a_profile_with_events_of_two_tenants_is_cross_tenant() {
        let (acme, globex) = (event_key("acme", "e1"), event_key("globex", "e2"));
        let tenant_of: HashMap<String, String> =
            [(acme.clone(), "acme".to_string()), (globex.clone(), "globex".to_string())].into();
        let truth: HashMap<String, String> =
            [(acme.clone(), "p1".to_string()), (globex.clone(), "p2".to_string())].into();
        let merged: HashMap<String, String> =
            [(acme.clone(), "x".to_string()), (globex.clone(), "x".to_string())].into();
        assert_eq!(score(&merged, &truth, &truth, &tenant_of).cross_tenant_profiles, 1);
        let apart: HashMap<String, String> = [(acme, "x".to_string()), (globex, "y".to_string())].into();
        assert_eq!(score(&apart, &truth, &truth, &tenant_of).cross_tenant_profiles, 0);
    }
}
