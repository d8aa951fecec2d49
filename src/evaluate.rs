//! `omnistitch evaluate`: pairwise scores of the resolved profiles against ground truth, beside
//! what naive union-find (no rules) scores on the same input.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use omnistitch_engine::{Engine, Pipeline};
use omnistitch_identity::{IdentityRules, Normalizer};
use omnistitch_sim::score::{cross_tenant_profiles, pairwise, score_moments, DetectedMoment, MomentScores, Scores};
use omnistitch_timeline::RetentionConfig;
use serde::{Deserialize, Serialize};

use crate::input::InputStream;
use crate::replay::replay;

/// Key of an event across tenants.
fn key(tenant: &str, event_id: &str) -> String {
    format!("{tenant}\u{1f}{event_id}")
}

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
    /// Events scored (present in both truth and output).
    pub events: usize,
    /// The configured rules, from `replay`'s output.
    pub rules: ResolverScores,
    /// Naive union-find on the same input.
    pub naive: ResolverScores,
    /// Interventions against planted moments, per moment type (empty without moment truth).
    pub moments: BTreeMap<String, MomentScores>,
}

#[derive(Deserialize)]
struct InterventionLine {
    intervention_id: String,
    tenant: String,
    moment_type: String,
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

fn read_detections(out: &Path) -> anyhow::Result<Vec<DetectedMoment>> {
    let path = out.join("interventions.jsonl");
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut detected = Vec::new();
    for line in BufReader::new(file).lines() {
        let i: InterventionLine =
            serde_json::from_str(&line?).with_context(|| format!("parsing {}", path.display()))?;
        detected.push(DetectedMoment {
            tenant: i.tenant,
            moment_type: i.moment_type,
            key_event_id: i.key_event_id,
            detected_at_ms: i.detected_at,
            intervention_id: i.intervention_id,
            case_id: i.case_id,
            evidence: i.evidence.into_iter().map(|e| e.event_id).collect(),
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

fn read_assignments(out: &Path) -> anyhow::Result<HashMap<String, String>> {
    let path = out.join("timeline.jsonl");
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut map = HashMap::new();
    for line in BufReader::new(file).lines() {
        let l: TimelineLine = serde_json::from_str(&line?).with_context(|| format!("parsing {}", path.display()))?;
        map.insert(key(&l.tenant, &l.event.event_id), l.profile_id);
    }
    Ok(map)
}

/// Event -> profile id of a finished engine (profile ids are bare, not per tenant: a profile
/// holding events of two tenants shows as one).
pub fn engine_assignments(engine: &Engine) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (tenant, graph) in engine.identity().graphs() {
        for p in graph.profiles() {
            for e in engine.timelines().timeline(tenant.as_str(), p.id).map(|t| t.entries()).unwrap_or_default() {
                map.insert(key(tenant.as_str(), &e.event_id), p.id.to_string());
            }
        }
    }
    map
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

/// Scores `out` (written by `replay`) against the world in `truth_dir` (written by `simulate`).
pub fn evaluate(truth_dir: &Path, out: &Path) -> anyhow::Result<Evaluation> {
    let truth = omnistitch_sim::read_truth(truth_dir).context("reading ground truth")?;
    let (mut person, mut linkable, mut tenant_of) = (HashMap::new(), HashMap::new(), HashMap::new());
    for t in &truth {
        let k = key(&t.tenant, &t.event_id);
        person.insert(k.clone(), t.person.clone());
        linkable.insert(k.clone(), format!("{}/{}", t.tenant, t.linkable));
        tenant_of.insert(k, t.tenant.clone());
    }
    let predicted = read_assignments(out)?;
    let events = predicted.keys().filter(|k| person.contains_key(*k)).count();
    let rules = score(&predicted, &person, &linkable, &tenant_of);
    let normalizer = std::sync::Arc::new(Normalizer::new("US").expect("US is a region"));
    let naive_run = replay(
        InputStream::open(truth_dir)?,
        Pipeline::core_only(Engine::new(normalizer, IdentityRules::naive(), RetentionConfig::default())),
        false,
    );
    let naive = score(&engine_assignments(naive_run.pipeline.engine()), &person, &linkable, &tenant_of);
    let moment_truth = omnistitch_sim::read_moment_truth(truth_dir).unwrap_or_default();
    let moments = if moment_truth.is_empty() {
        BTreeMap::new()
    } else {
        let person_of_event: HashMap<String, String> =
            truth.iter().map(|t| (t.event_id.clone(), t.person.clone())).collect();
        score_moments(&moment_truth, &read_detections(out)?, &person_of_event)
    };
    let report = Evaluation { events, rules, naive, moments };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("evaluation.json"), json).context("writing evaluation.json")?;
    Ok(report)
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "identity resolution, pairwise over {} events:", self.events)?;
        writeln!(f, "  {:<26} {:>9} {:>9} {:>9} {:>12}", "", "precision", "recall", "F1", "cross-tenant")?;
        for (name, r) in [("rules", &self.rules), ("naive union-find", &self.naive)] {
            for (truth, s) in [("linkable", &r.linkable), ("person", &r.person)] {
                writeln!(
                    f,
                    "  {:<26} {:>9.4} {:>9.4} {:>9.4} {:>12}",
                    format!("{name} vs {truth}"),
                    s.precision,
                    s.recall,
                    s.f1,
                    r.cross_tenant_profiles
                )?;
            }
        }
        if !self.moments.is_empty() {
            writeln!(f, "micro-moments against planted truth:")?;
            writeln!(
                f,
                "  {:<34} {:>6} {:>8} {:>9} {:>7} {:>15} {:>14} {:>5} {:>11}",
                "",
                "truth",
                "detected",
                "precision",
                "recall",
                "recall linkable",
                "recall in time",
                "dups",
                "delay p50"
            )?;
            for (moment, s) in &self.moments {
                let delay = s.delay_ms_p50.map_or("-".to_string(), |d| format!("{:.1}s", d as f64 / 1000.0));
                writeln!(
                    f,
                    "  {:<34} {:>6} {:>8} {:>9.4} {:>7.4} {:>15.4} {:>14.4} {:>5} {:>11}",
                    moment,
                    s.truth,
                    s.detected,
                    s.precision,
                    s.recall,
                    s.recall_linkable,
                    s.recall_in_time,
                    s.duplicates,
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
        let (acme, globex) = (key("acme", "e1"), key("globex", "e2"));
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
