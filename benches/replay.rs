//! Replay bench: a simulated world of about 1M events through decode + validate + normalize +
//! resolve + append, on one thread. Prints events/s, peak memory and graph bytes per identifier.
//!
//! Then the ordered stages behind the core, each added on its own to the same run (the same
//! events, profiles, threads and merges): the reorder buffer, the buffer with the moments
//! detector, the buffer with CX metrics, and all three; what each adds per event is set
//! against the core's cost; and the detector alone over a recording of its inputs.
//!
//! The world is generated in this process, then the replay runs in a child process of this
//! same binary so its peak memory is the replay's alone.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use omnistitch::input::{InputRecord, InputStream};
use omnistitch::replay::replay;
use omnistitch_cx::CxMetrics;
use omnistitch_engine::{Engine, EngineConfig, Pipeline};
use omnistitch_model::{Event, EventTime, ProfileId, Tenant, Tenants};
use omnistitch_moments::{Detector, Merges, ReorderBuffer};

const CHILD_ENV: &str = "OMNISTITCH_REPLAY_BENCH_DIR";
/// Set to stop after the core figures (for profiling the core alone).
const CORE_ONLY_ENV: &str = "OMNISTITCH_REPLAY_BENCH_CORE_ONLY";
/// Set to run only the detector, then CX metrics, over a recording of their inputs (for profiling
/// either alone).
const DETECTOR_ONLY_ENV: &str = "OMNISTITCH_REPLAY_BENCH_DETECTOR_ONLY";
/// A TOML file of `[moments]` settings for the detector alone (to see what each moment costs).
const MOMENTS_ENV: &str = "OMNISTITCH_REPLAY_BENCH_MOMENTS";
/// Set to `k` to squeeze the world's event times `k` times closer together (its 28 days into
/// 28/k): the same events as a tenant `k` times busier, to see how the ordered stages scale
/// with what a tenant holds within a window (the simulated world is sparse in event time).
const DENSE_ENV: &str = "OMNISTITCH_REPLAY_BENCH_DENSE";

/// `event` with its time squeezed toward the world's start by the factor of [`DENSE_ENV`].
fn densify(mut event: Event) -> Event {
    static FACTOR: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let k = *FACTOR.get_or_init(|| std::env::var(DENSE_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1));
    if k > 1 {
        let start = omnistitch_sim::DEFAULT_START_MS;
        event.time = EventTime(start + (event.time.0 - start).div_euclid(k));
    }
    event
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Which ordered stages run behind the core.
#[derive(Clone, Copy)]
struct Stages {
    buffer: bool,
    moments: bool,
    cx: bool,
}

/// Decode, validate and the core over the world in `dir`, each event then handed to the
/// ordered stages asked for, as the pipeline hands it (the event still warm from the core);
/// returns the seconds taken, the records read and the interventions.
fn inline(dir: &Path, cfg: &EngineConfig, stages: Stages) -> (f64, u64, usize) {
    let (normalizer, rules) = cfg.validate().expect("default config");
    let mut engine = Engine::new(normalizer, rules, cfg.timeline.clone());
    let mut buffer = ReorderBuffer::new(&cfg.moments).expect("config");
    let mut detector = Detector::new(cfg.moments.clone()).expect("config");
    let mut metrics = CxMetrics::new(cfg.cx.clone()).expect("config");
    let mut tenants = Tenants::default();
    let (mut records, mut interventions) = (0u64, 0usize);
    let mut released = Vec::new();
    let started = Instant::now();
    for r in InputStream::open(dir).expect("input") {
        records += 1;
        let InputRecord::Event { event, .. } = r else { continue };
        let Ok(event) = event.try_into_event(|name| tenants.get(name)) else { continue };
        let event = densify(event);
        let applied = engine.apply(&event);
        let (true, Some(profile)) = (stages.buffer, applied.profile) else { continue };
        let tenant = event.tenant.clone();
        let merges = applied.merges.iter().map(|m| (m.survivor, m.absorbed)).collect();
        buffer.push_into(profile, event, &applied.thread_id, merges, &mut released);
        for r in released.drain(..) {
            if stages.cx {
                metrics.observe(&r.event, &r.thread_id);
            }
            if stages.moments {
                interventions += detector.observe_merging(r.profile, &r.event, &r.thread_id, &r.merges).len();
            }
        }
        if let (true, Some(w)) = (stages.moments, buffer.watermark(&tenant)) {
            interventions += detector.advance_watermark(&tenant, w).len();
        }
    }
    let names: Vec<_> = buffer.tenants().cloned().collect();
    for tenant in names {
        for r in buffer.flush(&tenant) {
            if stages.cx {
                metrics.observe(&r.event, &r.thread_id);
            }
            if stages.moments {
                interventions += detector.observe_merging(r.profile, &r.event, &r.thread_id, &r.merges).len();
            }
        }
        if let (true, Some(last)) = (stages.moments, buffer.max_seen(&tenant)) {
            interventions += detector.advance_watermark(&tenant, last.plus_millis(1)).len();
        }
    }
    std::hint::black_box(metrics.report());
    (started.elapsed().as_secs_f64(), records, interventions)
}

fn child(dir: &Path) {
    if std::env::var_os(DETECTOR_ONLY_ENV).is_some() {
        let mut cfg = EngineConfig::default();
        if let Some(file) = std::env::var_os(MOMENTS_ENV) {
            let text = std::fs::read_to_string(&file).expect("moments settings");
            cfg.moments = toml::from_str(&text).expect("moments settings");
        }
        detector_figure(dir, &cfg);
        return;
    }
    // Decode and validate only, to show what the engine adds.
    let started = Instant::now();
    let mut n = 0u64;
    for r in InputStream::open(dir).expect("input") {
        if let omnistitch::input::InputRecord::Event { event, .. } = r {
            n += u64::from((*event).into_event(omnistitch_model::Tenant::new).is_ok());
        }
    }
    let decode_s = started.elapsed().as_secs_f64();

    let cfg = EngineConfig::default();
    let (normalizer, rules) = cfg.validate().expect("default config");
    let started = Instant::now();
    let core = Pipeline::core_only(Engine::new(normalizer, rules, cfg.timeline.clone()));
    let run = replay(InputStream::open(dir).expect("input"), core, false);
    let total_s = started.elapsed().as_secs_f64();
    let records = run.records;
    let core_rss = peak_rss_bytes();
    let (mut ids, mut bytes) = (0usize, 0usize);
    for (_, g) in run.pipeline.engine().identity().graphs() {
        ids += g.identifier_count();
        bytes += g.memory_bytes();
    }
    println!("records            {}", run.records);
    println!("events applied     {}", run.pipeline.engine().stats().events);
    println!("decode+validate    {:.0} events/s ({n} events in {decode_s:.2} s)", n as f64 / decode_s);
    println!(
        "core pipeline      {:.0} events/s ({} records in {total_s:.2} s: decode, validate, normalize, resolve, append)",
        run.records as f64 / total_s,
        run.records
    );
    println!("identifiers        {ids}");
    println!("graph bytes/id     {:.1}", bytes as f64 / ids.max(1) as f64);
    println!("peak RSS (core)    {:.1} MiB", core_rss as f64 / (1 << 20) as f64);
    drop(run);
    if std::env::var_os(CORE_ONLY_ENV).is_some() {
        return;
    }

    // The same with the reorder buffer, moments and CX metrics behind the core.
    let started = Instant::now();
    let full = replay(InputStream::open(dir).expect("input"), Pipeline::new(&cfg).expect("pipeline"), false);
    let full_s = started.elapsed().as_secs_f64();
    println!(
        "with moments + CX  {:.0} events/s ({} interventions): +{:.0}% per event over the core",
        full.records as f64 / full_s,
        full.interventions.len(),
        (full_s / total_s - 1.0) * 100.0
    );
    println!("peak RSS (both)    {:.1} MiB", peak_rss_bytes() as f64 / (1 << 20) as f64);
    // What a restore from a snapshot of that state costs, against re-applying the events.
    let started = Instant::now();
    let snapshot = full.pipeline.snapshot();
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let back = Pipeline::from_snapshot(&snapshot, &cfg).expect("the snapshot reads back");
    let read_s = started.elapsed().as_secs_f64();
    assert_eq!(back.engine().stats(), full.pipeline.engine().stats());
    println!(
        "snapshot           {:.1} MiB ({:.0} bytes/event), written in {write_s:.2} s, read back in {read_s:.2} s (the events took {full_s:.2} s)",
        snapshot.len() as f64 / (1 << 20) as f64,
        snapshot.len() as f64 / full.records as f64
    );
    drop((back, snapshot));
    drop(full);

    // Each ordered stage behind the core, the same events handed over as the pipeline does;
    // what a stage adds is its run minus the run without it (best of three runs each, the
    // variants interleaved so that a busy moment of the machine does not favour one).
    let variants = [
        Stages { buffer: false, moments: false, cx: false },
        Stages { buffer: true, moments: false, cx: false },
        Stages { buffer: true, moments: true, cx: false },
        Stages { buffer: true, moments: false, cx: true },
        Stages { buffer: true, moments: true, cx: true },
    ];
    let mut best = [f64::INFINITY; 5];
    let mut interventions = 0;
    for _ in 0..3 {
        for (i, v) in variants.iter().enumerate() {
            let (secs, _, n) = inline(dir, &cfg, *v);
            best[i] = best[i].min(secs);
            interventions = interventions.max(n);
        }
    }
    let ns = |secs: f64| secs * 1e9 / records as f64;
    let [core, buffer, moments, cx, all] = best.map(ns);
    println!("core (inline)      {core:.0} ns/event");
    println!("reorder buffer     +{:.0} ns/event", buffer - core);
    println!(
        "moments detector   +{:.0} ns/event ({interventions} interventions): buffer + detector +{:.0} ns/event, {:.0}% of the core",
        moments - buffer,
        moments - core,
        (moments - core) / core * 100.0
    );
    println!("CX metrics         +{:.0} ns/event", cx - buffer);
    println!("buffer + both      +{:.0} ns/event, {:.0}% of the core", all - core, (all - core) / core * 100.0);

    detector_figure(dir, &cfg);
}

/// The detector alone, then CX metrics alone, over a recording of what the detector was handed:
/// each one's own cost, without the core's work (and cache traffic) in between.
fn detector_figure(dir: &Path, cfg: &EngineConfig) {
    let steps = record_detector_inputs(dir, cfg);
    let events = steps.iter().filter(|s| matches!(s, DetectorStep::Observe(..))).count();
    let best = (0..3).map(|_| detector_alone(&steps, cfg)).fold(f64::INFINITY, f64::min);
    println!(
        "detector alone     {:.0} ns/event over its recorded inputs ({events} events)",
        best * 1e9 / events as f64
    );
    let best = (0..3).map(|_| cx_alone(&steps, cfg)).fold(f64::INFINITY, f64::min);
    println!("CX metrics alone   {:.0} ns/event over the same inputs", best * 1e9 / events as f64);
}

/// Seconds fresh CX metrics take over the events of `steps`.
fn cx_alone(steps: &[DetectorStep], cfg: &EngineConfig) -> f64 {
    let mut metrics = CxMetrics::new(cfg.cx.clone()).expect("config");
    let started = Instant::now();
    for s in steps {
        match s {
            DetectorStep::Observe(_, e, thread, _) => metrics.observe(e, thread),
            DetectorStep::Watermark(..) => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(metrics.report());
    secs
}

/// One call the pipeline makes on the detector.
enum DetectorStep {
    Observe(ProfileId, Box<Event>, Arc<str>, Merges),
    Watermark(Tenant, EventTime),
}

/// The detector's calls over the world in `dir`, as the pipeline makes them.
fn record_detector_inputs(dir: &Path, cfg: &EngineConfig) -> Vec<DetectorStep> {
    let (normalizer, rules) = cfg.validate().expect("default config");
    let mut engine = Engine::new(normalizer, rules, cfg.timeline.clone());
    let mut buffer = ReorderBuffer::new(&cfg.moments).expect("config");
    let mut tenants = Tenants::default();
    let (mut steps, mut released) = (Vec::new(), Vec::new());
    for r in InputStream::open(dir).expect("input") {
        let InputRecord::Event { event, .. } = r else { continue };
        let Ok(event) = event.try_into_event(|name| tenants.get(name)) else { continue };
        let event = densify(event);
        let applied = engine.apply(&event);
        let Some(profile) = applied.profile else { continue };
        let tenant = event.tenant.clone();
        let merges = applied.merges.iter().map(|m| (m.survivor, m.absorbed)).collect();
        buffer.push_into(profile, event, &applied.thread_id, merges, &mut released);
        steps.extend(released.drain(..).map(|r| DetectorStep::Observe(r.profile, r.event, r.thread_id, r.merges)));
        if let Some(w) = buffer.watermark(&tenant) {
            steps.push(DetectorStep::Watermark(tenant, w));
        }
    }
    steps
}

/// Seconds a fresh detector takes over `steps`.
fn detector_alone(steps: &[DetectorStep], cfg: &EngineConfig) -> f64 {
    let mut detector = Detector::new(cfg.moments.clone()).expect("config");
    let mut found = 0usize;
    let started = Instant::now();
    for s in steps {
        found += match s {
            DetectorStep::Observe(p, e, thread, merges) => detector.observe_merging(*p, e, thread, merges).len(),
            DetectorStep::Watermark(t, w) => detector.advance_watermark(t, *w).len(),
        };
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(found);
    secs
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let customers: usize =
        std::env::var("OMNISTITCH_BENCH_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(58_500);
    // The simulator's version is part of the name: a world from an older simulator is not reused.
    let dir =
        std::env::temp_dir().join(format!("omnistitch-replay-bench-{customers}-sim{}", omnistitch_sim::WORLD_VERSION));
    if !dir.join("truth.jsonl").exists() {
        let started = Instant::now();
        let cfg = omnistitch_sim::SimConfig { customers, seed: 42, ..Default::default() };
        let world = omnistitch_sim::generate(&cfg).expect("world");
        omnistitch_sim::write_world(&dir, &world).expect("write world");
        eprintln!("generated {} records in {:.1?} into {}", world.events.len(), started.elapsed(), dir.display());
    }
    let out = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, &dir)
        .output()
        .expect("run the replay child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "replay child failed");
}
