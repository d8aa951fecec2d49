//! `run --embedded`: the quick start serves /healthz, /readyz and /metrics (valid for
//! `promtool check metrics`, showing a loop that moves), processes simulated traffic, stops cleanly on SIGTERM, and at
//! once on a second signal.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const FAMILIES: [&str; 12] = [
    "omnistitch_input_records_total",
    "omnistitch_output_records_total",
    "omnistitch_processing_latency_seconds_bucket",
    "omnistitch_consumer_lag_records",
    "omnistitch_transactions_total",
    "omnistitch_rebalances_total",
    "omnistitch_identity_profiles",
    "omnistitch_identity_merges_total",
    "omnistitch_identity_conflicts_total",
    "omnistitch_timeline_entries",
    "omnistitch_interventions_total",
    "omnistitch_cx_contacts",
];

/// `omnistitch run --embedded` with a small world at 3,000 records/s on a free port; its
/// standard output goes to `stdout`.
fn embedded_run(stdout: Stdio) -> (u16, std::process::Child) {
    embedded_run_logging(stdout, Stdio::null())
}

/// [`embedded_run`], its log (at `info`) going to `stderr`.
fn embedded_run_logging(stdout: Stdio, stderr: Stdio) -> (u16, std::process::Child) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_omnistitch"))
        .args(["run", "--embedded", "--rate", "3000"])
        .env("OMNISTITCH_HTTP_PORT", port.to_string())
        .env("OMNISTITCH__EMBEDDED__CUSTOMERS", "300")
        .env("OMNISTITCH__KAFKA__PARTITIONS", "2")
        .env("RUST_LOG", "info")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    (port, child)
}

/// `--rate` without `--embedded` is a usage error, not a flag quietly ignored.
#[test]
fn the_rate_needs_the_embedded_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_omnistitch")).args(["run", "--rate", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A start that fails (no cluster at the address) fails the run, also when `--seconds` ran out
/// meanwhile: only a signal makes an interrupted start a clean stop.
#[test]
fn a_start_that_fails_under_a_time_limit_exits_non_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_omnistitch"))
        .args(["run", "--seconds", "1"])
        .env("OMNISTITCH_HTTP_PORT", free_port().to_string())
        .env("OMNISTITCH__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("OMNISTITCH__KAFKA__REQUEST_TIMEOUT_MS", "2000")
        .env("OMNISTITCH__KAFKA__TRANSACTIONAL_ID", "omnistitch-test")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum()
}

#[test]
fn embedded_run_serves_valid_metrics_and_stops_on_sigterm() {
    let (port, child) = embedded_run(Stdio::piped());
    let started = Instant::now();
    let mut ready = false;
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some((200, _)) = get(port, "/readyz") {
            ready = true;
            // Ready means assigned and restored: never before the group gave this instance a shard.
            if let Some((200, body)) = get(port, "/metrics") {
                assert!(metric(&body, "omnistitch_shards ") >= 1.0, "/readyz answered 200 with no shard held");
            }
        }
        if let Some((200, body)) = get(port, "/metrics") {
            // Consumer lag arrives with librdkafka's statistics (every 5 s).
            // Records are counted once per round on the threads that handle them.
            if ready
                && metric(&body, "omnistitch_input_records_total{") > 2000.0
                && metric(&body, "omnistitch_output_records_total{") > 2000.0
                && FAMILIES.iter().all(|f| body.contains(f))
            {
                text = body;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(if ready { 250 } else { 20 }));
    }
    assert!(ready, "/readyz never answered 200");
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    // The loop shows it moves, every few milliseconds while it works: scraped for 4 s, it is
    // never found silent for long (it would be silent since its start without beats).
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let (_, body) = get(port, "/metrics").expect("/metrics");
        assert!(body.contains("\nomnistitch_loop_silence_seconds "), "the silence gauge is exported");
        let silence = metric(&body, "omnistitch_loop_silence_seconds ");
        assert!(silence < 2.0, "the loop was silent for {silence} s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert!(!text.is_empty(), "traffic not processed, or a metric family missing, after a minute");
    assert!(!text.contains('@'), "no identifier in metric labels");
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&promtool).args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(mut p) => {
            p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = p.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
        }
        Err(e) => assert!(
            std::env::var_os("OMNISTITCH_SKIP_PROMTOOL").is_some(),
            "promtool not found ({e}); install Debian's prometheus package (.ci/run does) or set OMNISTITCH_SKIP_PROMTOOL"
        ),
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "SIGTERM: exit 0, got {}", out.status);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("processed"), "{summary}");
}

/// A second signal while the first one's stop is still finishing in-flight work stops the
/// process at once, with exit code 130 (an operator who will not wait).
#[test]
fn a_second_signal_exits_at_once() {
    let (port, mut child) = embedded_run_logging(Stdio::null(), Stdio::piped());
    // The log, line by line: the second signal goes once the first is seen taken (two sent
    // before the handler runs, on a loaded machine, arrive as one).
    let (lines, log) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let started = Instant::now();
    while !matches!(get(port, "/readyz"), Some((200, _))) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() < Duration::from_secs(60), "/readyz never answered 200");
    // The first signal starts the polite stop (a second or more here: the round's commit,
    // leaving the group, the embedded cluster); the second, once the handler has taken the
    // first, ends the process before the stop is done.
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line =
            log.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the first signal taken");
        if line.contains("SIGINT: finishing in-flight work") {
            break;
        }
    }
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", out.status);
}
