//! `omnistitch run`: the Kafka service, against a real cluster or an embedded mock cluster fed
//! with simulated traffic.

pub mod http;
pub mod probe;
pub mod settings;
pub mod traffic;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use omnistitch_kafka::registry::{InputSchemas, OutputSchemas, RegistryClient, Waiting};
use omnistitch_kafka::{topics, EmbeddedCluster, Health, Service, ServiceMetrics};

use settings::Settings;

/// Command-line choices of `run`.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// Start an in-process mock cluster and feed it simulated traffic.
    pub embedded: bool,
    /// HTTP port (beats the file and the environment).
    pub http_port: Option<u16>,
    /// Stop by itself after this long (demos, tests).
    pub duration: Option<Duration>,
    /// Embedded traffic rate (records/s), beating `[embedded] rate`.
    pub rate: Option<u64>,
}

/// The input and output schemas: bundled, or from the schema registry, whose output subjects
/// are registered first (waiting, up to the liveness limit, for a registry still starting).
fn schemas(
    settings: &Settings,
    kafka: &omnistitch_kafka::KafkaConfig,
    health: &Health,
    stop: &AtomicBool,
) -> anyhow::Result<(InputSchemas, OutputSchemas)> {
    let s = &settings.schemas;
    match &s.registry_url {
        None => Ok((InputSchemas::new(None, s.bundled_ids.clone()), OutputSchemas::bundled(&s.bundled_ids))),
        Some(url) => {
            let auth = s.registry_username.clone().zip(s.registry_password.clone());
            if auth.is_some() && url.trim().starts_with("http://") {
                tracing::warn!("schema registry credentials are sent over plain http: use https");
            }
            let roots = s.registry_ca_file.as_deref().map(|f| s.registry_ca(f)).transpose()?;
            let client = RegistryClient::with_roots(url, auth, RegistryClient::DEFAULT_TIMEOUT, roots.as_deref())
                .context("schema registry")?;
            let t = &kafka.topics;
            let subjects = omnistitch_kafka::registry::output_subjects(t);
            let outputs = OutputSchemas::register_within(&client, &subjects, kafka.liveness_timeout(), |e| {
                if stop.load(Ordering::Acquire) {
                    return Waiting::GiveUp;
                }
                tracing::warn!(error = %e, "schema registry unavailable; registering the output schemas again");
                health.beat();
                Waiting::TryAgain
            })
            .context("registering output schemas")?;
            let inputs = InputSchemas::in_background(Some(client), s.bundled_ids.clone())
                .context("starting the schema registry lookup thread")?;
            Ok((inputs, outputs))
        }
    }
}

/// Runs the service until SIGTERM/SIGINT (or `args.duration`), then commits and exits.
pub fn run(config: Option<&Path>, args: &RunArgs) -> anyhow::Result<()> {
    let env = settings::service_env(std::env::vars_os());
    crate::logging::init(env.as_ref().is_ok_and(|env| settings::json_logs(config, env)));
    let mut settings = Settings::load(config, env?.into_iter())?;
    if let Some(port) = args.http_port {
        settings.http.port = port;
    }
    if let Some(rate) = args.rate {
        settings.embedded.rate = rate;
    }
    let metrics = Arc::new(ServiceMetrics::new());
    let health = Arc::new(Health::default());
    // From the start: the embedded cluster, topics and schemas come before the service.
    health.set_stall_limit(settings.kafka.liveness_timeout());
    let stop = Arc::new(AtomicBool::new(false));
    let addr: SocketAddr = settings.http.address()?;
    let bound = http::serve(addr, metrics.clone(), health.clone(), stop.clone())?;
    tracing::info!(%bound, "serving /metrics /healthz /readyz");

    let mut kafka = settings.kafka.clone();
    let mut embedded = None;
    let mut traffic = None;
    if args.embedded {
        let cluster = EmbeddedCluster::start(settings.embedded.brokers, &kafka).context("starting the mock cluster")?;
        kafka = cluster.service_config(kafka);
        tracing::info!(bootstrap = %kafka.bootstrap_servers, "embedded mock cluster up");
        let t = traffic::Traffic {
            rate: settings.embedded.rate,
            customers: settings.embedded.customers,
            seed: settings.embedded.seed,
            worlds: None,
            first_world: 0,
            start_ms: traffic::Traffic::start_before(traffic::wall_clock_ms()),
        };
        // Checked before anything is sent: a world the simulator refuses would otherwise stop
        // the traffic thread with nothing processed, said only at shutdown.
        if t.customers == 0 {
            anyhow::bail!("invalid config: embedded.customers must be >= 1");
        }
        traffic::world_config(&t, 0).validate().context("invalid config: [embedded]")?;
        traffic = Some(traffic::spawn(kafka.clone(), settings.schemas.bundled_ids.clone(), t, stop.clone()));
        embedded = Some(cluster);
    } else if kafka.create_topics {
        let created = topics::create_missing(&kafka).context("creating topics")?;
        if !created.is_empty() {
            tracing::info!(?created, "topics created");
        }
    }
    // Set when `--seconds` ran out: a start that failed by then still failed (a smoke test
    // reads the exit code), where one a signal interrupted stops cleanly.
    let timed_out = Arc::new(AtomicBool::new(false));
    if let Some(d) = args.duration {
        let (stop, timed_out) = (stop.clone(), timed_out.clone());
        std::thread::spawn(move || {
            std::thread::sleep(d);
            timed_out.store(true, Ordering::Release);
            stop.store(true, Ordering::Release);
        });
    }
    let asked_to_stop = || stop.load(Ordering::Acquire) && !timed_out.load(Ordering::Acquire);
    let (inputs, outputs) = match schemas(&settings, &kafka, &health, &stop) {
        Ok(schemas) => schemas,
        // Stopped while the registry could not be reached: nothing was consumed yet.
        Err(e) if asked_to_stop() => {
            tracing::info!(error = %format!("{e:#}"), "stopped while starting, before consuming anything");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let started = Instant::now();
    let service = match Service::new(kafka, settings.engine(), inputs, outputs, metrics.clone(), health) {
        Ok(s) => s,
        // Stopped while the cluster could not be reached at start: nothing was consumed yet.
        Err(e) if asked_to_stop() => {
            tracing::info!(error = %format!("{e:#}"), "stopped while starting, before consuming anything");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let report = service.run(stop.clone())?;
    stop.store(true, Ordering::Release);
    // The feeder logged its failure and stopped the run when it failed: the run fails too.
    let mut traffic_failed = None;
    if let Some(t) = traffic {
        match t.join() {
            Ok(Ok(sent)) => tracing::info!(sent, "simulated traffic stopped"),
            Ok(Err(e)) => traffic_failed = Some(e.context("simulated traffic failed")),
            Err(_) => traffic_failed = Some(anyhow::anyhow!("simulated traffic panicked")),
        }
    }
    drop(embedded);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "processed {} records in {:.1}s ({:.0}/s): {} commits, {} aborts ({} produced again), {} shard restores",
        report.records,
        secs,
        report.records as f64 / secs.max(1e-9),
        report.commits,
        report.aborts,
        report.resent,
        report.restores
    );
    if report.left_uncommitted {
        println!("stopped while the cluster could not be reached: the last batch was left uncommitted (processed again on the next start)");
    }
    if let (Some(p50), Some(p99)) = (metrics.latency_exact.quantile_ms(0.5), metrics.latency_exact.quantile_ms(0.99)) {
        println!("ingest-to-output latency: p50 {p50} ms, p99 {p99} ms");
    }
    print!("{}", summary(&metrics));
    traffic_failed.map_or(Ok(()), Err)
}

/// What the run found, for its end: interventions per moment type and the CX table of the
/// shards it held last.
fn summary(metrics: &ServiceMetrics) -> String {
    let by_type = metrics.interventions_by_type();
    let total: u64 = by_type.iter().map(|(_, n)| n).sum();
    let mut out = format!("interventions: {total}");
    for (moment, n) in by_type.iter().filter(|(_, n)| *n > 0) {
        out.push_str(&format!(", {} {n}", moment.as_str()));
    }
    out.push('\n');
    let cx = metrics.cx_latest();
    if !cx.rows.is_empty() {
        out.push_str("customer experience, per tenant and channel:\n");
        out.push_str(&cx.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_cx::{CxConfig, CxMetrics};
    use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, Tenant};
    use omnistitch_moments::MomentType;

    #[test]
    fn the_summary_lists_interventions_per_type_and_the_cx_table() {
        let m = ServiceMetrics::new();
        assert_eq!(summary(&m), "interventions: 0\n", "nothing found, no table");
        for moment in [MomentType::ChannelHop, MomentType::ChannelHop, MomentType::DetractorSurvey] {
            m.intervention(moment);
        }
        let mut cx = CxMetrics::new(CxConfig::default()).unwrap();
        let t = EventTime(1_767_571_200_000);
        cx.observe(
            &Event::new(Tenant::new("acme"), "e1", t, Channel::Chat, Direction::Inbound, EventKind::ChatStarted),
            "chat:s",
        );
        m.cx(&[cx.report()]);
        let s = summary(&m);
        assert!(s.starts_with("interventions: 3, channel_hop 2, detractor_survey 1\n"), "{s}");
        let table: Vec<&str> = s.lines().skip(2).collect();
        assert!(table[0].starts_with("tenant"), "{s}");
        assert!(table.iter().any(|l| l.starts_with("acme") && l.contains("chat")), "{s}");
        assert!(table.last().unwrap().starts_with("acme") && table.last().unwrap().contains("all"), "{s}");
    }
}
