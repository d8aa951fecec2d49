//! `replay` over files: a simulated world, bad input, determinism, and scores against truth.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use omnistitch::evaluate::{evaluate, evaluate_with, naive_assignments, Evaluation};
use omnistitch::input::InputStream;
use omnistitch::replay::{replay, write_outputs};
use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_sim::MOMENTS_TRUTH_FILE;
use omnistitch_sim::{generate, write_world, SimConfig};

fn engine() -> Pipeline {
    Pipeline::new(&EngineConfig::default()).unwrap()
}

/// Writes a 300-customer world into `dir`; returns its distinct events as `tenant/event_id`.
fn small_world(dir: &Path, seed: u64) -> HashSet<String> {
    let world = generate(&SimConfig { customers: 300, seed, ..Default::default() }).unwrap();
    write_world(dir, &world).unwrap();
    world.truth.iter().map(|t| format!("{}/{}", t.tenant, t.event_id)).collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn every_event_lands_on_exactly_one_timeline_once() {
    let dir = tempfile::tempdir().unwrap();
    let distinct = small_world(dir.path(), 11);
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    assert!(run.dead_letters.is_empty());
    assert!(run.pipeline.engine().stats().duplicates > 0, "the world has redeliveries");
    let out = dir.path().join("out");
    write_outputs(&run, &out).unwrap();
    let timeline = lines(&out.join("timeline.jsonl"));
    let ids: HashSet<String> = timeline
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{}/{}", v["tenant"].as_str().unwrap(), v["event"]["event_id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(ids.len(), timeline.len(), "no event twice");
    assert_eq!(ids, distinct, "every event of the world, and nothing else");
}

#[test]
fn replaying_the_same_input_gives_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    small_world(dir.path(), 12);
    for out in ["a", "b"] {
        let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
        write_outputs(&run, &dir.path().join(out)).unwrap();
    }
    let outputs = [
        "timeline.jsonl",
        "profiles.jsonl",
        "merges.jsonl",
        "conflicts.jsonl",
        "deadletter.jsonl",
        "interventions.jsonl",
        "metrics.json",
    ];
    assert!(!lines(&dir.path().join("a").join("interventions.jsonl")).is_empty(), "the world exercises the detector");
    for f in outputs {
        let (a, b) = (dir.path().join("a").join(f), dir.path().join("b").join(f));
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{f} differs");
    }
}

#[test]
fn bad_records_are_dead_lettered_with_reasons_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("chat-export.jsonl")).unwrap();
    let good = r#"{"tenant":"acme","event_id":"c1","event_time":1767571200000,"direction":"INBOUND","kind":"CHAT_STARTED","session_id":"S1","customer_email":"Jo <jo@x.com>"}"#;
    writeln!(f, "{good}").unwrap();
    writeln!(f, "{{not json").unwrap();
    writeln!(f, r#"{{"tenant":"acme","event_id":"c2","event_time":42,"direction":"INBOUND","kind":"MESSAGE","session_id":"S1"}}"#).unwrap();
    writeln!(f, r#"{{"tenant":"acme","event_id":"c3","event_time":1767571200001,"direction":"INBOUND","kind":"CALL_ENDED","session_id":"S1"}}"#).unwrap();
    writeln!(f, r#"{{"tenant":"acme","event_id":"c4","event_time":"soon","direction":"INBOUND","kind":"MESSAGE","session_id":"S1"}}"#).unwrap();
    f.write_all(b"{\"tenant\":\"acme\xff\"}\n").unwrap();
    writeln!(f, "{}", good.replace("c1", "c5").replace("1767571200000", "1767571260000")).unwrap();
    // Wrong types whose values are personal: the reason must not quote them.
    writeln!(f, "{}", good.replace("c1", "c6").replace(r#""S1""#, "14155550134")).unwrap();
    writeln!(f, "{}", good.replace("c1", "c7").replace(r#""Jo <jo@x.com>""#, r#"["al@y.com"]"#)).unwrap();
    drop(f);
    std::fs::write(dir.path().join("email.avro"), b"Obj\x01garbage").unwrap();
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    let reasons: Vec<&str> = run.dead_letters.iter().map(|d| d.reason_code.as_str()).collect();
    assert_eq!(run.pipeline.engine().stats().events, 2, "the two good records were applied");
    assert_eq!(run.dead_letters.len(), 8, "{reasons:?}");
    for d in &run.dead_letters {
        for personal in ["14155550134", "al@y.com"] {
            assert!(!d.reason.contains(personal), "{}", d.reason);
        }
    }
    assert_eq!(reasons.iter().filter(|&&r| r == "json_decode").count(), 5, "{reasons:?}");
    for code in ["json_decode", "invalid_time", "kind_mismatch"] {
        assert!(reasons.contains(&code), "{code} in {reasons:?}");
    }
    assert!(reasons.contains(&"container_corrupt"), "a garbage container is a damaged one: {reasons:?}");
    let bad_line = run.dead_letters.iter().find(|d| d.offset == 2).unwrap();
    assert_eq!(bad_line.payload, b"{not json");
    assert_eq!(bad_line.source, "chat-export.jsonl");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("evaluation.json"), "{}").unwrap();
    write_outputs(&run, &out).unwrap();
    assert!(!out.join("evaluation.json").exists(), "an earlier run's score does not stay beside new outputs");
    assert_eq!(lines(&out.join("deadletter.jsonl")).len(), 8);
    // Both good events are one person: the same session and email.
    assert_eq!(lines(&out.join("profiles.jsonl")).len(), 1);
}

/// A record whose time validation refuses leaves its file at once (to its dead letter), as in
/// the service: at its written time it would hold back every record after it in its file.
#[test]
fn a_record_with_an_absurd_time_does_not_hold_its_file_back() {
    use omnistitch::input::InputRecord;
    let dir = tempfile::tempdir().unwrap();
    let line = |id: &str, time: i64| {
        format!(
            r#"{{"tenant":"acme","event_id":"{id}","event_time":{time},"direction":"INBOUND","kind":"MESSAGE","session_id":"S{id}"}}"#
        )
    };
    let t0 = 1_767_571_200_000;
    std::fs::write(dir.path().join("chat.jsonl"), format!("{}\n{}\n", line("far", 99_999_999_999_999), line("c1", t0)))
        .unwrap();
    let email = format!(
        r#"{{"tenant":"acme","event_id":"e1","event_time":{},"direction":"INBOUND","kind":"MESSAGE","from":"jo@x.com"}}"#,
        t0 + 60_000
    );
    std::fs::write(dir.path().join("email.jsonl"), format!("{email}\n")).unwrap();
    let order: Vec<String> = InputStream::open(dir.path())
        .unwrap()
        .map(|r| match r {
            InputRecord::Event { event, .. } => event.event_time().to_string(),
            InputRecord::Bad { position, .. } => format!("bad {position}"),
        })
        .collect();
    let expected = [99_999_999_999_999, t0, t0 + 60_000].map(|t| t.to_string());
    assert_eq!(order, expected, "in event-time order once the absurd one is out");
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    assert_eq!(run.dead_letters.len(), 1);
    assert_eq!(run.dead_letters[0].reason_code, "invalid_time");
}

/// A directory named like an input file, or a link to nothing, is no input: the run goes on
/// with the other files and ends (a JSON Lines file whose reads fail ends at its first failure,
/// reported once: see the codec's reader).
#[test]
fn inputs_that_cannot_be_read_never_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("chat.jsonl")).unwrap();
    writeln!(f, r#"{{"tenant":"acme","event_id":"c1","event_time":1767571200000,"direction":"INBOUND","kind":"CHAT_STARTED","session_id":"S1"}}"#).unwrap();
    drop(f);
    std::fs::create_dir(dir.path().join("email.jsonl")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.avro"), dir.path().join("phone.avro")).unwrap();
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    assert_eq!(run.pipeline.engine().stats().events, 1);
    let bad: Vec<(&str, &str)> = run.dead_letters.iter().map(|d| (d.source.as_str(), d.reason_code.as_str())).collect();
    assert!(bad.is_empty(), "a dangling link is not a regular file either: {bad:?}");
}

/// An event older than its tenant's retention when it comes is dead-lettered
/// (`beyond_retention`, its bytes kept), not applied; an invalid one says what is wrong.
#[test]
fn events_beyond_retention_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("chat.jsonl")).unwrap();
    let at = |id: &str, t: i64| {
        format!(
            r#"{{"tenant":"acme","event_id":"{id}","event_time":{t},"direction":"INBOUND","kind":"CHAT_STARTED","session_id":"S-{id}"}}"#
        )
    };
    let (new, day) = (1_767_571_200_000i64, 86_400_000i64);
    writeln!(f, "{}", at("new", new)).unwrap();
    let old = at("old", new - 200 * day);
    writeln!(f, "{old}").unwrap();
    writeln!(f, "{}", at("bad", new - 200 * day).replace("CHAT_STARTED", "CALL_ENDED")).unwrap();
    drop(f);
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    let reasons: Vec<&str> = run.dead_letters.iter().map(|d| d.reason_code.as_str()).collect();
    assert_eq!(reasons, ["beyond_retention", "kind_mismatch"]);
    assert_eq!(run.dead_letters[0].payload, old.as_bytes());
    assert_eq!(run.pipeline.engine().stats().events, 1);
}

/// A world of `customers` simulated, replayed with the default configuration and evaluated;
/// the directory holds the world, `out` the outputs.
fn evaluated(customers: usize, seed: u64) -> (tempfile::TempDir, Evaluation) {
    let dir = tempfile::tempdir().unwrap();
    let world = generate(&SimConfig { customers, seed, ..Default::default() }).unwrap();
    write_world(dir.path(), &world).unwrap();
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    let out = dir.path().join("out");
    write_outputs(&run, &out).unwrap();
    let e = evaluate(dir.path(), &out).unwrap();
    println!("{e}");
    (dir, e)
}

/// The identity and detector targets: linkable F1 at least 0.99 with no cross-tenant profile,
/// better than naive union-find; every planted moment type found with precision and recall in
/// time at least 0.95, never twice; nothing lost on the way.
fn assert_targets(e: &Evaluation) {
    assert_eq!((e.missing_from_output, e.not_in_truth), (0, 0), "{e}");
    assert_eq!(e.output_events, e.truth_events, "{e}");
    assert_eq!(e.naive.linkable.missing_from_predicted, 0, "the baseline keeps every event\n{e}");
    assert_eq!(e.rules.cross_tenant_profiles, 0);
    assert!(e.rules.linkable.precision > e.naive.linkable.precision, "{e}");
    assert!(e.rules.linkable.f1 > e.naive.linkable.f1, "{e}");
    assert!(e.rules.linkable.f1 >= 0.99, "{e}");
    assert_eq!(e.moments.len(), 7, "{e}");
    for (moment, s) in &e.moments {
        assert!(s.truth >= 20, "{moment}: too few planted to score\n{e}");
        // The target (docs/moments.md): against what identifiers had linked by each moment's
        // time, precision and recall both; no duplicates.
        assert!(s.precision_in_time >= 0.95 && s.recall_in_time >= 0.95, "{moment}: {s:#?}\n{e}");
        assert_eq!(s.duplicates, 0, "{moment}\n{e}");
        // Against the person's whole history (hindsight), what is lost is what linking came
        // too late for.
        assert!(s.precision >= 0.85 && s.recall >= 0.85, "{moment}: {s:#?}\n{e}");
    }
}

#[test]
fn rules_beat_naive_union_find_never_cross_tenants_and_find_every_moment() {
    let (dir, e) = evaluated(300, 13);
    assert_targets(&e);
    // On this small world, against hindsight too, but for the channel hops whose earlier
    // contact is tied to the customer only later (3 of 43 here: a social DM from a handle an
    // agent's reply joins to the case 40 min on). No streaming detector sees those in time,
    // and a hop is not detected after the fact (docs/moments.md).
    for (moment, s) in &e.moments {
        let recall = if moment == "channel_hop" { 0.9 } else { 0.95 };
        assert!(s.precision >= 0.95 && s.recall >= recall, "{moment}: {s:#?}\n{e}");
    }
    assert!(dir.path().join("out").join("evaluation.json").exists());
}

/// The default world (`SimConfig::default()`, what `simulate` and `demo` make): the targets
/// of the issues are set on it.
#[test]
fn the_default_world_meets_the_targets() {
    let (_dir, e) = evaluated(SimConfig::default().customers, SimConfig::default().seed);
    assert_targets(&e);
    // And a world of the same size from another seed: the targets are no accident of one.
    let (_dir, e) = evaluated(SimConfig::default().customers, 7);
    assert_targets(&e);
}

/// Scores of a configuration other than the truth's are said to be so.
#[test]
fn moments_scored_under_other_settings_carry_a_warning() {
    let (dir, e) = evaluated(300, 14);
    assert!(e.default_moments && !e.to_string().contains("warning"), "{e}");
    let cfg = EngineConfig { moments: toml::from_str("[repeat_contact]\ncount = 4").unwrap(), ..Default::default() };
    let e = evaluate_with(dir.path(), &dir.path().join("out"), &cfg).unwrap();
    assert!(!e.default_moments);
    assert!(e.to_string().contains("warning: the [moments] settings are not the defaults"), "{e}");
}

/// `timeline.jsonl` without the lines `drop` picks (by line number), rewritten in place; the
/// events dropped.
fn drop_timeline_lines(out: &Path, drop: impl Fn(usize) -> bool) -> usize {
    let all = lines(&out.join("timeline.jsonl"));
    let kept: Vec<&String> = all.iter().enumerate().filter(|(n, _)| !drop(*n)).map(|(_, l)| l).collect();
    let text: String = kept.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(out.join("timeline.jsonl"), text).unwrap();
    all.len() - kept.len()
}

/// Events lost between the truth and the output are counted and scored as profiles of their
/// own: recall falls, nothing vanishes from the score.
#[test]
fn events_missing_from_the_output_are_counted_and_cost_recall() {
    let (dir, before) = evaluated(300, 14);
    let out = dir.path().join("out");
    let lost = drop_timeline_lines(&out, |n| n % 10 == 3);
    let after = evaluate(dir.path(), &out).unwrap();
    assert_eq!(after.truth_events, before.truth_events);
    assert_eq!((after.missing_from_output, after.output_events), (lost, before.output_events - lost));
    assert_eq!(after.rules.linkable.missing_from_predicted, lost);
    assert!(after.rules.linkable.recall < before.rules.linkable.recall - 0.05, "{before}\n{after}");
    assert!(after.rules.person.recall < before.rules.person.recall, "{before}\n{after}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("evaluation.json")).unwrap()).unwrap();
    assert_eq!(json["missing_from_output"], lost);
    assert_eq!(json["truth_events"], before.truth_events);
    // An event listed twice is not silently taken for its last line.
    let first = lines(&out.join("timeline.jsonl"))[0].clone();
    let mut f = std::fs::OpenOptions::new().append(true).open(out.join("timeline.jsonl")).unwrap();
    writeln!(f, "{first}").unwrap();
    let err = format!("{:#}", evaluate(dir.path(), &out).unwrap_err());
    assert!(err.contains("listed a second time"), "{err}");
}

/// A person with more events than timeline retention keeps: the output lost the oldest (counted
/// as missing), naive union-find keeps them all, so its over-merged profiles pay for every one.
#[test]
fn naive_union_find_keeps_every_event_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let n = EngineConfig::default().timeline.max_events_per_profile + 100;
    let (mut input, mut truth) = (String::new(), String::new());
    for i in 0..n {
        let t = 1_767_571_200_000i64 + i as i64 * 60_000;
        input.push_str(&format!(
            "{{\"tenant\":\"acme\",\"event_id\":\"c{i:05}\",\"event_time\":{t},\"direction\":\"INBOUND\",\"kind\":\"MESSAGE\",\"session_id\":\"S{i}\",\"customer_email\":\"jo@x.example\"}}\n"
        ));
        truth.push_str(&format!(
            "{{\"event_id\":\"c{i:05}\",\"tenant\":\"acme\",\"person\":\"acme/p1\",\"linkable\":\"c00000\"}}\n"
        ));
    }
    std::fs::write(dir.path().join("chat-export.jsonl"), input).unwrap();
    std::fs::write(dir.path().join("truth.jsonl"), truth).unwrap();
    let (normalizer, _) = EngineConfig::default().validate().unwrap();
    let naive = naive_assignments(dir.path(), normalizer).unwrap();
    assert_eq!(naive.len(), n);
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    let out = dir.path().join("out");
    write_outputs(&run, &out).unwrap();
    let e = evaluate_with(dir.path(), &out, &EngineConfig::default()).unwrap();
    assert_eq!((e.truth_events, e.output_events, e.missing_from_output), (n, n - 100, 100));
    assert_eq!(e.naive.person.missing_from_predicted, 0);
    assert_eq!(e.naive.person.recall, 1.0);
    assert!(e.rules.person.recall < 1.0);
    // No moments truth: no moments table.
    assert!(e.moments.is_empty());
}

/// A missing `moments_truth.jsonl` means no moments table; a corrupt one is an error, not an
/// empty table.
#[test]
fn a_corrupt_moments_truth_is_an_error() {
    let (dir, e) = evaluated(300, 15);
    assert_eq!(e.moments.len(), 7);
    let out = dir.path().join("out");
    let path = dir.path().join(MOMENTS_TRUTH_FILE);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"tenant\": \"acme\", truncated\n");
    std::fs::write(&path, text).unwrap();
    let err = format!("{:#}", evaluate(dir.path(), &out).unwrap_err());
    assert!(err.contains(MOMENTS_TRUTH_FILE), "{err}");
    std::fs::remove_file(&path).unwrap();
    let e = evaluate(dir.path(), &out).unwrap();
    assert!(e.moments.is_empty());
    assert!(!e.to_string().contains("micro-moments"), "{e}");
}

/// Interventions written without a key event id (the schema's default, ""): their key event
/// is the last of their evidence, and they score as before.
#[test]
fn interventions_without_a_key_event_id_still_score() {
    let (dir, e) = evaluated(300, 16);
    let out = dir.path().join("out");
    let path = out.join("interventions.jsonl");
    let stripped: String = lines(&path)
        .iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("key_event_id");
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&path, stripped).unwrap();
    let again = evaluate(dir.path(), &out).unwrap();
    assert_eq!(again.moments, e.moments);
}

/// What a pipeline holds at the end of a run that can be read, in a canonical order.
fn end_state(mut p: Pipeline) -> Vec<String> {
    let mut out = vec![format!("{:?}", p.flush()), format!("{:?}", p.engine().stats())];
    let mut profiles: Vec<String> = p
        .engine()
        .identity()
        .graphs()
        .flat_map(|(tenant, g)| {
            g.profiles().map(move |pr| {
                let mut ids = g.identifiers(pr);
                ids.sort();
                format!("{tenant:?} {pr:?} {ids:?}")
            })
        })
        .collect();
    profiles.sort();
    let mut timelines: Vec<String> =
        p.engine().timelines().timelines().map(|(id, t)| format!("{id:?} {t:?}")).collect();
    timelines.sort();
    out.extend(profiles.into_iter().chain(timelines));
    let d = p.detector().unwrap();
    out.push(format!("{:?} {:?} {} {}", d.counters(), d.effort_agreement(), d.held_profiles(), d.pending_timers()));
    out.push(format!("{:?} {:?} {}", p.cx_report(), p.clocks(), p.late_events()));
    out
}

/// A world replayed through snapshots, read back at several points of it (within a burst of
/// merges, with events waiting in the reorder buffer, timers pending, across sweeps), gives
/// every output and ends in every state of a replay that went straight through.
#[test]
fn a_world_replayed_through_snapshots_gives_what_a_straight_replay_gives() {
    let world = generate(&SimConfig { customers: 1_500, seed: 11, ..Default::default() }).unwrap();
    let mut tenants = omnistitch_model::Tenants::default();
    let events: Vec<omnistitch_model::Event> =
        world.events.into_iter().filter_map(|w| w.into_event(|name| tenants.get(name)).ok()).collect();
    let n = events.len();
    let cuts = [1, n / 7, n / 3, n / 2, n * 4 / 5, n - 1];
    let config = EngineConfig::default();
    let run = |cut: bool| {
        let mut p = Pipeline::new(&config).unwrap();
        let mut outputs = Vec::with_capacity(n);
        let mut sizes = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if cut && cuts.contains(&i) {
                let bytes = p.snapshot();
                sizes.push(bytes.len());
                p = Pipeline::from_snapshot(&bytes, &config).unwrap();
            }
            outputs.push(format!("{:?}", p.apply(e.clone())));
        }
        (outputs, end_state(p), sizes)
    };
    let (straight, straight_end, _) = run(false);
    let (read_back, read_back_end, sizes) = run(true);
    for (i, (a, b)) in straight.iter().zip(&read_back).enumerate() {
        assert_eq!(a, b, "event {i} of {n}");
    }
    assert_eq!(straight_end, read_back_end);
    eprintln!("{n} events, snapshots of {sizes:?} bytes");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "the state grows over the world: {sizes:?}");
}
