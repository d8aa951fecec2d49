//! `deploy/`: the alert rules pass `promtool check rules` and their unit tests, every metric
//! the rules and the Grafana dashboard query is one the service exports, and the image's health
//! check is a command the binary runs.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use omnistitch_kafka::ServiceMetrics;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Metric names (`omnistitch_...`, and the process's `process_...`) in `text`, histogram
/// series suffixes removed.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    let next = |s: &str| ["omnistitch_", "process_"].iter().filter_map(|p| s.find(p)).min();
    while let Some(i) = next(rest) {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboards_and_alerts_query_exported_metrics() {
    let exported: BTreeSet<String> = ServiceMetrics::family_names().into_iter().collect();
    let dashboard = deploy("grafana/dashboards/omnistitch.json");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    assert!(panels.iter().filter(|p| p["type"] == "timeseries").count() >= 12);
    for (file, text) in [("dashboard", dashboard.as_str()), ("alerts", &deploy("prometheus/alerts.yml"))] {
        let used = referenced(text);
        assert!(used.len() >= 6, "{file} queries the service's metrics");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} queries metrics the service does not export: {unknown:?}");
    }
    // Resident memory is there to hold against the pod's limit.
    assert!(exported.contains("process_resident_memory_bytes") && dashboard.contains("process_resident_memory_bytes"));
    // The alerts also cover the process being down.
    assert!(deploy("prometheus/alerts.yml").contains("up{job=\"omnistitch\"}"));
}

/// `promtool check rules` (the syntax), then `promtool test rules` (the alerts fire when they
/// should, and only then).
#[test]
fn alert_rules_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for (what, file) in [("check", "alerts.yml"), ("test", "alerts.test.yml")] {
        promtool(&["rules", file], what, &dir);
    }
}

fn promtool(args: &[&str], what: &str, dir: &Path) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&promtool).arg(what).args(args).current_dir(dir).output() {
        Ok(out) => assert!(
            out.status.success(),
            "promtool {what} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => assert!(
            std::env::var_os("OMNISTITCH_SKIP_PROMTOOL").is_some(),
            "promtool not found ({e}); install Debian's prometheus package (.ci/run does) or set OMNISTITCH_SKIP_PROMTOOL"
        ),
    }
}

/// The image's HEALTHCHECK runs `omnistitch healthcheck`: healthy on /healthz's 200, not on
/// its 503 or when nothing listens.
#[test]
fn the_image_health_check_asks_healthz() {
    use std::io::{Read, Write};
    let dockerfile = deploy("docker/Dockerfile");
    let check = dockerfile.split("HEALTHCHECK").nth(1).expect("a HEALTHCHECK").split("CMD").nth(1).unwrap();
    let command = check.lines().next().unwrap().trim();
    assert!(command.starts_with(r#"["omnistitch", "healthcheck""#), "{command}");
    let serve = |status: &'static str| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"GET /healthz "), "{}", String::from_utf8_lossy(&head));
            write!(s, "HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\nok\n").unwrap();
        });
        port
    };
    let run = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_omnistitch"))
            .args(["healthcheck", "--port", &port.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(run(serve("200 OK")));
    assert!(!run(serve("503 Service Unavailable")));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(!run(closed));
}
