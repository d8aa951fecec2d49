//! Replay bench: a simulated world of about 1M events through decode + validate + normalize +
//! resolve + append, on one thread. Prints events/s, peak memory and graph bytes per identifier.
//!
//! The world is generated in this process, then the replay runs in a child process of this
//! same binary so its peak memory is the replay's alone.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use omnistitch::input::InputStream;
use omnistitch::replay::replay;
use omnistitch_engine::{Engine, EngineConfig, Pipeline};

const CHILD_ENV: &str = "OMNISTITCH_REPLAY_BENCH_DIR";

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn child(dir: &Path) {
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
