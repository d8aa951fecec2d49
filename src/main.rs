//! The `omnistitch` command line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use omnistitch::{config, evaluate, input::InputStream, replay};
use omnistitch_engine::Pipeline;

#[derive(Parser)]
#[command(name = "omnistitch", version, about = "Omnichannel identity resolution and unified customer timelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write simulated omnichannel traffic (Avro containers, one per channel) and its ground truth.
    Simulate {
        /// Customers across all tenants.
        #[arg(long, default_value_t = 2000)]
        customers: usize,
        /// Random seed; the same seed gives the same world.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the engine over input files (Avro containers, JSON Lines) and write its outputs.
    Replay {
        /// Directory of `*.avro` and `<channel>*.jsonl` files.
        #[arg(long)]
        input: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// TOML configuration (`[identity]`, `[timeline]`); defaults when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Score replay outputs against a simulated world's ground truth.
    Evaluate {
        /// Directory written by `simulate` (truth and inputs).
        #[arg(long)]
        truth: PathBuf,
        /// Directory written by `replay`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Simulate, replay and evaluate in one go (the quick start).
    Demo {
        /// Working directory for the world and the outputs.
        #[arg(long, default_value = "out/demo")]
        dir: PathBuf,
        /// Customers across all tenants.
        #[arg(long, default_value_t = 2000)]
        customers: usize,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

fn simulate(customers: usize, seed: u64, out: &std::path::Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let cfg = omnistitch_sim::SimConfig { customers, seed, ..Default::default() };
    let world = omnistitch_sim::generate(&cfg).context("generating the world")?;
    omnistitch_sim::write_world(out, &world).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "simulated {} customers: {} records ({} distinct events) in {} ({:.2?})",
        customers,
        world.events.len(),
        world.truth.len(),
        out.display(),
        started.elapsed()
    );
    Ok(())
}

fn run_replay(input: &std::path::Path, out: &std::path::Path, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let cfg = config::load(config)?;
    let pipeline = Pipeline::new(&cfg)?;
    let started = Instant::now();
    let run = replay::replay(InputStream::open(input)?, pipeline, true);
    let elapsed = started.elapsed();
    replay::write_outputs(&run, out)?;
    print!("{}", replay::summary(&run));
    println!(
        "replayed {} records in {:.2?} ({:.0} records/s); outputs in {}",
        run.records,
        elapsed,
        run.records as f64 / elapsed.as_secs_f64().max(1e-9),
        out.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Simulate { customers, seed, out } => simulate(customers, seed, &out),
        Command::Replay { input, out, config } => run_replay(&input, &out, config.as_deref()),
        Command::Evaluate { truth, out } => {
            let report = evaluate::evaluate(&truth, &out)?;
            print!("{report}");
            Ok(())
        }
        Command::Demo { dir, customers, seed } => {
            let (world, out) = (dir.join("world"), dir.join("out"));
            simulate(customers, seed, &world)?;
            run_replay(&world, &out, None)?;
            print!("{}", evaluate::evaluate(&world, &out)?);
            Ok(())
        }
    }
}
