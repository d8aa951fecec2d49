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

use super::harness::{assert_outputs_match, setup, wait_caught_up};

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
        service.run(&stop).map_err(|e| e.to_string())
    });
    (handle, metrics)
}

#[test]
fn a_registry_outage_holds_records_back_without_stopping_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(150, 37, Mode::ExactlyOnce, dir.path());
    let down = Arc::new(AtomicBool::new(true));
    let url = registry(down.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (service, metrics) = spawn_with_registry(s.config.clone(), &url, stop.clone());
    // Every input record needs the registry: the service keeps asking, and nothing is applied
    // or dead-lettered meanwhile.
    let started = Instant::now();
    while metrics.registry_retries.get() < 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "the service never asked the registry");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metrics.shards.get(), 3, "the group is served: every shard assigned and restored");
    // A stop is heard while the registry is away: the service commits and returns.
    stop.store(true, Ordering::Release);
    let stopping = Instant::now();
    while !service.is_finished() {
        assert!(stopping.elapsed() < Duration::from_secs(30), "the service did not stop during the outage");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = service.join().unwrap().expect("a clean stop");
    assert_eq!(report.records, 0, "no record applied or dead-lettered without its schema");
    // The registry is back: a new run takes every record from the committed offsets.
    down.store(false, Ordering::Release);
    let stop = Arc::new(AtomicBool::new(false));
    let (service, _) = spawn_with_registry(s.config.clone(), &url, stop.clone());
    wait_caught_up(&s.config, Duration::from_secs(180));
    stop.store(true, Ordering::Release);
    let report = service.join().unwrap().expect("the second run");
    assert_eq!(report.records, s.records, "every record, once");
    assert_outputs_match(&s);
}

#[test]
fn a_registry_back_within_a_run_lets_the_waiting_partitions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(150, 38, Mode::AtLeastOnce, dir.path());
    let down = Arc::new(AtomicBool::new(true));
    let url = registry(down.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let (service, metrics) = spawn_with_registry(s.config.clone(), &url, stop.clone());
    let started = Instant::now();
    while metrics.registry_retries.get() < 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "the service never asked the registry");
        std::thread::sleep(Duration::from_millis(50));
    }
    down.store(false, Ordering::Release);
    wait_caught_up(&s.config, Duration::from_secs(180));
    stop.store(true, Ordering::Release);
    let report = service.join().unwrap().expect("the run");
    assert_eq!(report.records, s.records, "every record, once, in the run that waited");
    assert_outputs_match(&s);
}

#[test]
fn a_silent_registry_never_holds_the_service_for_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(60, 39, Mode::ExactlyOnce, dir.path());
    let url = silent_registry();
    let stop = Arc::new(AtomicBool::new(false));
    // Lookups give up after 30 s; the service must not wait for that.
    let (service, metrics) = spawn_with_registry_timeout(s.config.clone(), &url, stop.clone(), Duration::from_secs(30));
    let started = Instant::now();
    while metrics.shards.get() != 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "the shards were never assigned");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Records arrive and wait for lookups that hang.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    let stopping = Instant::now();
    while !service.is_finished() {
        assert!(stopping.elapsed() < Duration::from_secs(15), "a stop waited for the registry's timeout");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = service.join().unwrap().expect("a clean stop");
    assert_eq!(report.records, 0, "nothing applied without its schema");
}
