//! `omnistitch replay`: the engine over files, outputs as JSON Lines.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use omnistitch_codec::datum::encode_input;
use omnistitch_engine::records::{merge_records, profile_record, timeline_record};
use omnistitch_engine::{Applied, Pipeline};
use omnistitch_identity::ConflictRule;
use omnistitch_model::output::{DeadLetterRecord, IdentifierRecord, MergeRecord, TimelineRecord};
use omnistitch_model::{CompactString, Event, ProfileId, Tenant, Tenants};
use omnistitch_moments::{Intervention, MomentType};
use serde::Serialize;

use crate::input::InputRecord;

/// A link the identity rules refused, as written to `conflicts.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictRecord {
    /// Tenant.
    pub tenant: String,
    /// Event whose identifiers would have linked.
    pub event_id: String,
    /// The identifier that would have linked.
    pub identifier: IdentifierRecord,
    /// The rule that refused it.
    #[serde(flatten)]
    pub rule: ConflictRule,
    /// The profile the identifier belonged to, if any.
    pub other_profile: Option<String>,
}

/// The result of running the engine over an input stream.
pub struct ReplayRun {
    /// The pipeline with its final state.
    pub pipeline: Pipeline,
    /// Interventions, in the order they were detected.
    pub interventions: Vec<Intervention>,
    /// How many of the last `interventions` only fired because the input ended (timers due by
    /// the last event time, events still in the reorder buffer): a service that has not seen
    /// the end of its input still holds these.
    pub flushed: usize,
    /// Merges, in the order they happened.
    pub merges: Vec<MergeRecord>,
    /// Refused links, in order.
    pub conflicts: Vec<ConflictRecord>,
    /// Records that could not be processed.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Records read, good and bad.
    pub records: u64,
    /// Full timeline records by (tenant, event id), kept when asked, to write ordered timelines.
    pub timeline_records: HashMap<(Tenant, CompactString), TimelineRecord>,
}

impl ReplayRun {
    /// Dead letters per reason code.
    pub fn dead_letters_by_reason(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for d in &self.dead_letters {
            *m.entry(d.reason_code.as_str()).or_insert(0) += 1;
        }
        m
    }
}

/// Runs `engine` over `input`. Bad records become dead letters; nothing aborts the run.
///
/// With `keep_records`, every applied event's full timeline record is kept for
/// [`write_outputs`]; without, only engine state remains (what the service keeps).
pub fn replay(input: impl Iterator<Item = InputRecord>, mut pipeline: Pipeline, keep_records: bool) -> ReplayRun {
    let mut interventions = Vec::new();
    let mut timeline_records = HashMap::new();
    let mut tenants = Tenants::default();
    let (mut merges, mut conflicts, mut dead_letters) = (Vec::new(), Vec::new(), Vec::new());
    let mut records = 0u64;
    for record in input {
        records += 1;
        let (source, position, code, reason, payload, wire) = match record {
            InputRecord::Bad { source, position, code, reason, payload } => {
                (source, position, code, reason, payload, None)
            }
            InputRecord::Event { source, position, event, raw } => {
                let (tenant, time) =
                    (omnistitch_model::text::trim(event.tenant()), omnistitch_model::EventTime(event.event_time()));
                // Checked on valid events only (an invalid one is dead-lettered for what is wrong).
                if pipeline.engine().is_beyond_retention(tenant, time) && event.validate().is_ok() {
                    let reason = format!(
                        "event_time {} ms is older than the tenant's retention (timeline.max_age_days behind its newest event): not applied",
                        time.0
                    );
                    let payload = raw.unwrap_or_else(|| encode_input(&event).unwrap_or_default());
                    dead_letters.push(DeadLetterRecord {
                        source: source.to_string(),
                        partition: -1,
                        offset: position as i64,
                        reason_code: "beyond_retention".to_string(),
                        reason,
                        payload,
                    });
                    continue;
                }
                match event.try_into_event(|name| tenants.get(name)) {
                    Ok(e) => {
                        let (step, ()) = pipeline.apply_inspect(e, |event, applied| {
                            record_changes(event, applied, &mut merges, &mut conflicts);
                            if let (true, Some(profile)) = (keep_records, applied.profile) {
                                let key = (event.tenant.clone(), event.event_id.clone());
                                timeline_records.insert(key, timeline_record(profile, event, applied));
                            }
                        });
                        interventions.extend(step.interventions);
                        continue;
                    }
                    Err((e, wire)) => (source, position, e.code(), e.to_string(), raw.unwrap_or_default(), Some(wire)),
                }
            }
        };
        // Avro inputs keep no raw bytes per record: re-encode the record with its schema.
        let payload = match wire {
            Some(w) if payload.is_empty() => encode_input(&w).unwrap_or_default(),
            _ => payload,
        };
        dead_letters.push(DeadLetterRecord {
            source: source.to_string(),
            partition: -1,
            offset: position as i64,
            reason_code: code.to_string(),
            reason,
            payload,
        });
    }
    let flushed = pipeline.flush();
    let flushed_count = flushed.len();
    interventions.extend(flushed);
    ReplayRun {
        pipeline,
        interventions,
        flushed: flushed_count,
        merges,
        conflicts,
        dead_letters,
        records,
        timeline_records,
    }
}

fn record_changes(
    event: &Event,
    applied: &Applied,
    merges: &mut Vec<MergeRecord>,
    conflicts: &mut Vec<ConflictRecord>,
) {
    merges.extend(merge_records(event, applied));
    conflicts.extend(applied.conflicts.iter().map(|c| ConflictRecord {
        tenant: event.tenant.to_string(),
        event_id: event.event_id.to_string(),
        identifier: IdentifierRecord::from(&c.identifier),
        rule: c.rule,
        other_profile: c.other_profile.map(|p| p.to_string()),
    }));
}

fn write_jsonl<T: Serialize>(path: &Path, items: impl IntoIterator<Item = T>) -> anyhow::Result<usize> {
    let mut w =
        BufWriter::with_capacity(1 << 20, File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut n = 0;
    for item in items {
        serde_json::to_writer(&mut w, &item)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// Writes `timeline.jsonl` (profile by profile, each in event-time order), `profiles.jsonl`,
/// `merges.jsonl`, `conflicts.jsonl`, `deadletter.jsonl`, `interventions.jsonl` and
/// `metrics.json` (CX metrics) into `out`.
pub fn write_outputs(run: &ReplayRun, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // A score of an earlier run's outputs would stand beside these ones as if it were theirs.
    match std::fs::remove_file(out.join("evaluation.json")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing the earlier {}", out.join("evaluation.json").display()));
        }
        _ => {}
    }
    // Final timelines, profile by profile in event-time order, with the thread each entry has now.
    let mut profiles_by_tenant: Vec<(&Tenant, ProfileId)> = Vec::new();
    for (tenant, graph) in run.pipeline.engine().identity().graphs() {
        profiles_by_tenant.extend(graph.profiles().map(|p| (tenant, p.id)));
    }
    profiles_by_tenant.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let timelines = run.pipeline.engine().timelines();
    let entries = profiles_by_tenant.iter().flat_map(|&(tenant, id)| {
        timelines.timeline(tenant.as_str(), id).into_iter().flat_map(move |t| {
            t.entries().iter().filter_map(move |e| {
                let mut r = run.timeline_records.get(&(tenant.clone(), CompactString::from(&*e.event_id)))?.clone();
                r.profile_id = id.to_string();
                r.thread_id = e.thread_id().to_string();
                Some(r)
            })
        })
    });
    write_jsonl(&out.join("timeline.jsonl"), entries)?;
    let mut profiles = Vec::new();
    for (tenant, graph) in run.pipeline.engine().identity().graphs() {
        profiles.extend(graph.profiles().map(|p| profile_record(tenant, graph, p)));
    }
    profiles.sort_by(|a, b| (&a.tenant, &a.profile_id).cmp(&(&b.tenant, &b.profile_id)));
    write_jsonl(&out.join("profiles.jsonl"), &profiles)?;
    write_jsonl(&out.join("merges.jsonl"), &run.merges)?;
    write_jsonl(&out.join("conflicts.jsonl"), &run.conflicts)?;
    write_jsonl(&out.join("deadletter.jsonl"), &run.dead_letters)?;
    write_jsonl(&out.join("interventions.jsonl"), &run.interventions)?;
    if let Some(report) = run.pipeline.cx_report() {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(out.join("metrics.json"), json).context("writing metrics.json")?;
    }
    Ok(())
}

/// A few lines saying what a run did.
pub fn summary(run: &ReplayRun) -> String {
    let s = run.pipeline.engine().stats();
    let profiles: usize = run.pipeline.engine().identity().graphs().map(|(_, g)| g.profile_count()).sum();
    let identifiers: usize = run.pipeline.engine().identity().graphs().map(|(_, g)| g.identifier_count()).sum();
    let shared: usize = run.pipeline.engine().identity().graphs().map(|(_, g)| g.shared_count()).sum();
    let mut out = format!(
        "records {}  applied {}  duplicates {}  dead-lettered {}\n\
         profiles {}  identifiers {} ({} shared)  merges {}  conflicts {}  evicted {}\n",
        run.records,
        s.events,
        s.duplicates,
        run.dead_letters.len(),
        profiles,
        identifiers,
        shared,
        s.merges,
        s.conflicts,
        s.evicted
    );
    let [linked, added, sh, conflict, blocked, invalid] = s.identifiers;
    out.push_str(&format!(
        "identifier outcomes: linked {linked}  added {added}  shared {sh}  conflict {conflict}  blocked {blocked}  invalid {invalid}\n"
    ));
    for (reason, n) in run.dead_letters_by_reason() {
        out.push_str(&format!("dead letters {reason}: {n}\n"));
    }
    if let Some(detector) = run.pipeline.detector() {
        let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &run.interventions {
            *by_type.entry(i.moment_type.as_str()).or_insert(0) += 1;
        }
        let list: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let counters = detector.counters();
        let stale: u64 = MomentType::ALL.iter().map(|&m| counters.get(m).stale).sum();
        out.push_str(&format!(
            "interventions {} ({}); late events {}; expired when found (not emitted) {stale}\n",
            run.interventions.len(),
            list.join(", "),
            run.pipeline.late_events()
        ));
        let a = detector.effort_agreement();
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "effort predictor vs CES answers: n {}  MAE {}  r {}\n",
            a.count,
            fmt(a.mean_absolute_error),
            fmt(a.pearson_r)
        ));
    }
    if let Some(report) = run.pipeline.cx_report() {
        out.push_str(&format!("{report}"));
    }
    out
}
