//! The `omnistitch` command line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use omnistitch::{config, evaluate, input::InputStream, replay, run};
use omnistitch_engine::Pipeline;

#[derive(Parser)]
#[command(name = "omnistitch", version, about = "Omnichannel identity resolution and unified customer timelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kafka service: consume the input topics, stitch, emit timelines, profiles,
    /// merges and interventions; serve /metrics, /healthz and /readyz.
    Run {
        /// Start an in-process mock Kafka cluster and feed it simulated traffic (the quick start).
        #[arg(long)]
        embedded: bool,
        /// TOML configuration (`[kafka]`, `[schemas]`, `[http]`, `[embedded]`, engine sections).
        #[arg(long)]
        config: Option<PathBuf>,
        /// HTTP port of /metrics, /healthz, /readyz [env: OMNISTITCH_HTTP_PORT; default 9898].
        #[arg(long)]
        http_port: Option<u16>,
        /// Simulated records per second in embedded mode.
        #[arg(long, requires = "embedded")]
        rate: Option<u64>,
        /// Stop after this many seconds (otherwise SIGTERM or Ctrl-C stops it).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Ask a running service's /healthz (for container health checks): exit 0 when healthy.
    Healthcheck {
        /// HTTP port [default: the configuration's, with its environment overrides].
        #[arg(long)]
        port: Option<u16>,
        /// The service's TOML configuration, for its HTTP address and port.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write simulated omnichannel traffic (Avro containers, one per channel) and its ground truth.
    Simulate {
        /// Customers across all tenants.
        #[arg(long, default_value_t = omnistitch_sim::SimConfig::default().customers)]
        customers: usize,
        /// Random seed; the same seed gives the same world.
        #[arg(long, default_value_t = omnistitch_sim::SimConfig::default().seed)]
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
        /// Split inputs by tenant into this many partitions, as the embedded service's traffic
        /// is (to reproduce an embedded run exactly; other producers partition with their own
        /// hash); 1 to 10,000.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10_000))]
        partitions: u16,
    },
    /// Score replay outputs against a simulated world's ground truth.
    Evaluate {
        /// Directory written by `simulate` (truth and inputs).
        #[arg(long)]
        truth: PathBuf,
        /// Directory written by `replay`.
        #[arg(long)]
        out: PathBuf,
        /// The configuration `replay` ran with (the naive baseline reads phones in its
        /// `identity.default_region`); defaults when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Simulate, replay and evaluate in one go (the quick start).
    Demo {
        /// Working directory for the world and the outputs.
        #[arg(long, default_value = "out/demo")]
        dir: PathBuf,
        /// Customers across all tenants.
        #[arg(long, default_value_t = omnistitch_sim::SimConfig::default().customers)]
        customers: usize,
        /// Random seed.
        #[arg(long, default_value_t = omnistitch_sim::SimConfig::default().seed)]
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

fn run_replay(
    input: &std::path::Path,
    out: &std::path::Path,
    config: Option<&std::path::Path>,
    partitions: u16,
) -> anyhow::Result<()> {
    let cfg = config::load(config)?;
    let pipeline = Pipeline::new(&cfg)?;
    // An output directory that cannot be made is said before the input is read.
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let stream = if partitions > 1 {
        let n = i32::from(partitions);
        InputStream::open_partitioned(input, usize::from(partitions), |t| {
            omnistitch_kafka::topics::partition_for(t, n) as usize
        })?
    } else {
        InputStream::open(input)?
    };
    let run = replay::replay(stream, pipeline, true);
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
    let command = Cli::parse().command;
    if !matches!(command, Command::Run { .. }) {
        omnistitch::logging::init(false);
    }
    match command {
        // `run` starts logging as its configuration (`[log] json`) says.
        Command::Run { embedded, config, http_port, rate, seconds } => {
            let args =
                run::RunArgs { embedded, http_port, duration: seconds.map(std::time::Duration::from_secs), rate };
            let result = run::run(config.as_deref(), &args);
            if let Err(e) = &result {
                // Through the log, JSON when asked, like everything else the service says.
                tracing::error!(error = format!("{e:#}"), "omnistitch stopped");
                std::process::exit(1);
            }
            result
        }
        Command::Healthcheck { port, config } => {
            // Where the service listens: its configured address (loopback when it binds every
            // address) and port, the port given here first.
            let env = run::settings::service_env(std::env::vars_os())?;
            let mut http = run::settings::Settings::load(config.as_deref(), env.into_iter())?.http;
            http.port = port.unwrap_or(http.port);
            run::probe::check(http.probe_address()?, "/healthz", std::time::Duration::from_secs(2))
        }
        Command::Simulate { customers, seed, out } => simulate(customers, seed, &out),
        Command::Replay { input, out, config, partitions } => run_replay(&input, &out, config.as_deref(), partitions),
        Command::Evaluate { truth, out, config: file } => {
            let report = evaluate::evaluate_with(&truth, &out, &config::load(file.as_deref())?)?;
            print!("{report}");
            Ok(())
        }
        Command::Demo { dir, customers, seed } => {
            let (world, out) = (dir.join("world"), dir.join("out"));
            simulate(customers, seed, &world)?;
            run_replay(&world, &out, None, 1)?;
            // Scored under the configuration replay ran with (environment overrides included).
            print!("{}", evaluate::evaluate_with(&world, &out, &config::load(None)?)?);
            Ok(())
        }
    }
}
