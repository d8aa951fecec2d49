//! The service against a schema registry that goes away: records whose schema it cannot give
//! wait, and the service goes on serving the group, committing and hearing a stop meanwhile.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistitch_codec::contract::{CHAT_EVENT_AVSC, EMAIL_EVENT_AVSC, PHONE_EVENT_AVSC, SOCIAL_EVENT_AVSC};
use omnistitch_engine::EngineConfig;
use omnistitch_kafka::registry::{BundledIds, InputSchemas, OutputSchemas, RegistryClient};
use omnistitch_kafka::{Health, KafkaConfig, Mode, RunReport, Service, ServiceMetrics};

use super::harness::{assert_outputs_match, setup, wait_caught_up, Setup};

/// A registry on 127.0.0.1 serving the bundled input schemas under their default ids, or,
/// while `down` is set, the registry's own "unavailable" error.
fn registry(down: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ids = BundledIds::default();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            if BufReader::new(&stream).read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or_default().to_string();
            let schema = [
                (ids.email, EMAIL_EVENT_AVSC),
                (ids.chat, CHAT_EVENT_AVSC),
                (ids.phone, PHONE_EVENT_AVSC),
                (ids.social, SOCIAL_EVENT_AVSC),
            ]
            .into_iter()
            .find(|(id, _)| path == format!("/schemas/ids/{id}"));
            let (status, body) = match schema {
                _ if down.load(Ordering::Acquire) => {
                    (503, r#"{"error_code":50003,"message":"Error while forwarding the request"}"#.to_string())
                }
                Some((_, text)) => (200, serde_json::json!({ "schema": text }).to_string()),
                None => (404, r#"{"error_code":40403,"message":"Schema not found"}"#.to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Canned\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A registry on 127.0.0.1 that accepts connections and never answers.
fn silent_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    url
}

/// Runs the service in this process, its input ids resolved through the registry at `url`
/// (requests time out after `timeout`).
fn spawn_with_registry(
    config: KafkaConfig,
    url: &str,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<Result<RunReport, String>>, Arc<ServiceMetrics>) {
    spawn_with_registry_timeout(config, url, stop, Duration::from_secs(2))
}

fn spawn_with_registry_timeout(
    config: KafkaConfig,
    url: &str,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> (std::thread::JoinHandle<Result<RunReport, String>>, Arc<ServiceMetrics>) {
    let metrics = Arc::new(ServiceMetrics::new());
    let m = metrics.clone();
    let client = RegistryClient::with_timeout(url, None, timeout).unwrap();
    let handle = std::thread::spawn(move || {
        let ids = BundledIds::default();
        let inputs = InputSchemas::in_background(Some(client), ids.clone()).map_err(|e| e.to_string())?;
        let outputs = OutputSchemas::bundled(&ids);
        let service = Service::new(config, EngineConfig::default(), inputs, outputs, m, Arc::new(Health::default()))
            .map_err(|e| e.to_string())?;
        service.run(stop.clone()).map_err(|e| e.to_string())
    });
    (handle, metrics)
}

/// Waits until `done`, failing with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops `service` and returns its report, failing if it takes longer than `limit`.
fn stop_within(
    service: std::thread::JoinHandle<Result<RunReport, String>>,
    stop: &AtomicBool,
    limit: Duration,
) -> RunReport {
    stop.store(true, Ordering::Release);
    wait_until(limit, "the service did not stop in time", || service.is_finished());
    service.join().unwrap().expect("a clean stop")
}

/// A world on a cluster whose registry is down, and the service started on it, once it has
/// asked the registry a few times in vain.
struct Outage {
    setup: Setup,
    down: Arc<AtomicBool>,
    url: String,
    stop: Arc<AtomicBool>,
    service: std::thread::JoinHandle<Result<RunReport, String>>,
    metrics: Arc<ServiceMetrics>,
}

fn outage(seed: u64, mode: Mode, dir: &std::path::Path) -> Outage {
    let setup = setup(150, seed, mode, dir);
    let down = Arc::new(AtomicBool::new(true));
    let url = registry(down.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (service, metrics) = spawn_with_registry(setup.config.clone(), &url, stop.clone());
    // Every input record needs the registry: the service keeps asking, and nothing is applied
    // or dead-lettered meanwhile.
    wait_until(Duration::from_secs(60), "the service never asked the registry", || metrics.registry_retries.get() >= 4);
    Outage { setup, down, url, stop, service, metrics }
}

#[test]
fn a_registry_outage_holds_records_back_without_stopping_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let o = outage(37, Mode::ExactlyOnce, dir.path());
    // The group is served meanwhile: every shard is assigned and restored (one per round, so
    // the first shards' records may ask the registry before the last is restored).
    wait_until(Duration::from_secs(60), "the group is not served: a shard is not restored", || {
        o.metrics.shards.get() == 3
    });
    // A stop is heard while the registry is away: the service commits and returns.
    let report = stop_within(o.service, &o.stop, Duration::from_secs(30));
    assert_eq!(report.records, 0, "no record applied or dead-lettered without its schema");
    // The registry is back: a new run takes every record from the committed offsets.
    o.down.store(false, Ordering::Release);
    let stop = Arc::new(AtomicBool::new(false));
    let (service, _) = spawn_with_registry(o.setup.config.clone(), &o.url, stop.clone());
    wait_caught_up(&o.setup.config, Duration::from_secs(180));
    let report = stop_within(service, &stop, Duration::from_secs(60));
    assert_eq!(report.records, o.setup.records, "every record, once");
    assert_outputs_match(&o.setup);
}

#[test]
fn a_registry_back_within_a_run_lets_the_waiting_partitions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let o = outage(38, Mode::AtLeastOnce, dir.path());
    o.down.store(false, Ordering::Release);
    wait_caught_up(&o.setup.config, Duration::from_secs(180));
    let report = stop_within(o.service, &o.stop, Duration::from_secs(60));
    assert_eq!(report.records, o.setup.records, "every record, once, in the run that waited");
    assert_outputs_match(&o.setup);
}

#[test]
fn a_silent_registry_never_holds_the_service_for_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(60, 39, Mode::ExactlyOnce, dir.path());
    let url = silent_registry();
    let stop = Arc::new(AtomicBool::new(false));
    // Lookups give up after 30 s; the service must not wait for that.
    let (service, metrics) = spawn_with_registry_timeout(s.config.clone(), &url, stop.clone(), Duration::from_secs(30));
    wait_until(Duration::from_secs(60), "the shards were never assigned", || metrics.shards.get() == 3);
    // Records arrive and wait for lookups that hang.
    std::thread::sleep(Duration::from_secs(2));
    let report = stop_within(service, &stop, Duration::from_secs(15));
    assert_eq!(report.records, 0, "nothing applied without its schema");
}
