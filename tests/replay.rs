//! `replay` over files: a simulated world, bad input, determinism, and scores against truth.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use omnistitch::evaluate::evaluate;
use omnistitch::input::InputStream;
use omnistitch::replay::{replay, write_outputs};
use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_sim::{generate, write_world, SimConfig};

fn engine() -> Pipeline {
    Pipeline::new(&EngineConfig::default()).unwrap()
}

fn small_world(dir: &Path, seed: u64) -> usize {
    let world = generate(&SimConfig { customers: 300, seed, ..Default::default() }).unwrap();
    write_world(dir, &world).unwrap();
    world.truth.len()
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
    assert_eq!(ids.len(), distinct, "no event lost");
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
    drop(f);
    std::fs::write(dir.path().join("email.avro"), b"Obj\x01garbage").unwrap();
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    let reasons: Vec<&str> = run.dead_letters.iter().map(|d| d.reason_code.as_str()).collect();
    assert_eq!(run.pipeline.engine().stats().events, 2, "the two good records were applied");
    assert_eq!(run.dead_letters.len(), 6, "{reasons:?}");
    for code in ["json_decode", "invalid_time", "kind_mismatch"] {
        assert!(reasons.contains(&code), "{code} in {reasons:?}");
    }
    assert!(reasons.iter().any(|r| r.starts_with("container") || *r == "io"), "{reasons:?}");
    let bad_line = run.dead_letters.iter().find(|d| d.offset == 2).unwrap();
    assert_eq!(bad_line.payload, b"{not json");
    assert_eq!(bad_line.source, "chat-export.jsonl");
    let out = dir.path().join("out");
    write_outputs(&run, &out).unwrap();
    assert_eq!(lines(&out.join("deadletter.jsonl")).len(), 6);
    // Both good events are one person: the same session and email.
    assert_eq!(lines(&out.join("profiles.jsonl")).len(), 1);
}

#[test]
fn rules_beat_naive_union_find_never_cross_tenants_and_find_every_moment() {
    let dir = tempfile::tempdir().unwrap();
    small_world(dir.path(), 13);
    let run = replay(InputStream::open(dir.path()).unwrap(), engine(), true);
    let out = dir.path().join("out");
    write_outputs(&run, &out).unwrap();
    let e = evaluate(dir.path(), &out).unwrap();
    assert_eq!(e.rules.cross_tenant_profiles, 0);
    assert!(e.rules.linkable.precision > e.naive.linkable.precision, "{e}");
    assert!(e.rules.linkable.f1 > e.naive.linkable.f1, "{e}");
    assert!(e.rules.linkable.f1 >= 0.99, "{e}");
    // Every planted micro-moment type is found, precisely, once (the world is seeded: these
    // figures are exact for it).
    assert_eq!(e.moments.len(), 7, "{e}");
    for (moment, s) in &e.moments {
        assert!(s.truth >= 20, "{moment}: too few planted to score\n{e}");
        assert!(s.precision >= 0.95 && s.recall >= 0.95 && s.duplicates == 0, "{moment}\n{e}");
    }
    assert!(out.join("evaluation.json").exists());
}
