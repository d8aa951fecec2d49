//! Faults: broker request errors, a broker down and up, slow brokers, and the service process
//! killed (SIGKILL) and restarted mid-stream. Nothing lost; duplicates only as exact copies;
//! final profiles equal the replay's.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use omnistitch_kafka::{Mode, RunReport, ServiceMetrics};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::harness::{
    assert_outputs_match, caught_up, caught_up_within, committed_records, read_topic, setup, spawn_service,
    test_cluster, wait_caught_up, Setup,
};

fn run_with(s: &Setup, fault: impl FnOnce(&Setup)) -> RunReport {
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, _metrics) = spawn_service(s.config.clone(), stop.clone());
    fault(s);
    if !caught_up_within(&s.config, Duration::from_secs(180)) {
        stop.store(true, Ordering::Release);
        match handle.is_finished() {
            true => panic!("the service stopped before catching up: {:?}", handle.join()),
            false => panic!("the service, still running, did not catch up within 180 s"),
        }
    }
    stop.store(true, Ordering::Release);
    let report = handle.join().unwrap().expect("the service survives the fault");
    assert_outputs_match(s);
    report
}

#[test]
fn request_errors_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(200, 31, Mode::ExactlyOnce, dir.path());
    run_with(&s, |s| {
        let c = s.cluster.cluster();
        use RDKafkaRespErr::*;
        c.request_errors(RDKafkaApiKey::Produce, &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3]);
        c.request_errors(RDKafkaApiKey::Fetch, &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2]);
        c.request_errors(RDKafkaApiKey::OffsetCommit, &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 2]);
        c.request_errors(RDKafkaApiKey::EndTxn, &[RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 2]);
        c.request_errors(RDKafkaApiKey::AddPartitionsToTxn, &[RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS; 2]);
    });
}

/// Waits until the service has consumed records.
fn wait_consuming(metrics: &ServiceMetrics) {
    let started = Instant::now();
    while metrics.render().lines().all(|l| !l.starts_with("omnistitch_input_records_total{") || l.ends_with(" 0")) {
        assert!(started.elapsed() < Duration::from_secs(60), "nothing consumed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks the service to stop; its report, and how long it took to stop.
fn stop_and_time(handle: JoinHandle<Result<RunReport, String>>, stop: &AtomicBool) -> (RunReport, Duration) {
    let asked = Instant::now();
    stop.store(true, Ordering::Release);
    let report = handle.join().unwrap().expect("a stop is not a failure");
    (report, asked.elapsed())
}

/// A stop while every commit fails (the coordinator answers that it is loading) ends the run
/// within a few request timeouts, where retrying the commit, the abort and then the rewind
/// took ten each: the batch is left uncommitted. A restart once the coordinator answers
/// again processes it: nothing lost, duplicates only as exact copies.
#[test]
fn a_stop_while_commits_fail_ends_the_run_promptly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(60, 38, Mode::ExactlyOnce, dir.path());
    let timeout = Duration::from_secs(2);
    s.config.request_timeout_ms = timeout.as_millis() as u64;
    let c = s.cluster.cluster();
    // librdkafka retries the EndTxn about every 100 ms: enough refusals for a minute.
    c.request_errors(
        RDKafkaApiKey::EndTxn,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 3_000],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(s.config.clone(), stop.clone());
    // Consuming, and stuck in its first commit.
    wait_consuming(&metrics);
    std::thread::sleep(timeout * 2);
    assert!(!handle.is_finished());
    let (report, took) = stop_and_time(handle, &stop);
    assert!(report.left_uncommitted, "{report:?}");
    assert_eq!(report.commits, 0, "{report:?}");
    assert!(took < timeout * 5, "stopped {took:?} after the request, with request timeouts of {timeout:?}");
    assert!(retries(&metrics, "commit") >= 1, "the commit was tried again, and counted");
    assert!(
        metrics.render().contains("omnistitch_cluster_retries_total{call=\"seek\"} 0"),
        "every call is counted from zero"
    );
    c.clear_request_errors(RDKafkaApiKey::EndTxn);
    run_with(&s, |_| {});
}

/// How many times the service has retried `call` (a transaction-ending call resumed).
fn retries(metrics: &ServiceMetrics, call: &str) -> u64 {
    let prefix = format!("omnistitch_cluster_retries_total{{call=\"{call}\"}} ");
    metrics.render().lines().find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap())).unwrap_or(0)
}

/// Waits until the service has retried `call` once; when.
fn wait_retried(metrics: &ServiceMetrics, call: &str) -> Instant {
    let started = Instant::now();
    while retries(metrics, call) == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "no {call} retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    Instant::now()
}

/// A world whose coordinator answers every EndTxn "loading" for minutes, with request
/// timeouts of 1 s (returned); `refuse_produce` also refuses the first produce for good, so
/// that the first transaction call is an abort.
fn coordinator_loading(seed: u64, refuse_produce: bool, dir: &std::path::Path) -> (Setup, Duration) {
    let mut s = setup(60, seed, Mode::ExactlyOnce, dir);
    let timeout = Duration::from_secs(1);
    s.config.request_timeout_ms = timeout.as_millis() as u64;
    {
        let c = s.cluster.cluster();
        if refuse_produce {
            c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD]);
        }
        c.request_errors(
            RDKafkaApiKey::EndTxn,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 5_000],
        );
    }
    (s, timeout)
}

/// Runs the service until it ends on its own, failing the test if that takes `limit` after
/// its first retry of `call`: its error, how long after that retry it ended, its metrics.
fn run_until_it_fails(s: &Setup, call: &str, limit: Duration) -> (String, Duration, Arc<ServiceMetrics>) {
    let (handle, metrics) = spawn_service(s.config.clone(), Arc::new(AtomicBool::new(false)));
    let retried = wait_retried(&metrics, call);
    while !handle.is_finished() {
        assert!(retried.elapsed() < limit, "the service still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = retried.elapsed();
    let error = handle.join().unwrap().expect_err("the run ends with an error");
    (error, took, metrics)
}

/// A commit the coordinator leaves unanswered past the retry budget (ten request timeouts)
/// may still land, so the run ends with an error at once, for a restart to settle it. It used
/// to try an abort, which the client refuses while the commit is in progress, for ten more
/// timeouts, then fail the next transaction's start. The restart loses nothing.
#[test]
fn a_commit_left_unanswered_ends_the_run_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (s, timeout) = coordinator_loading(40, false, dir.path());
    let (error, took, metrics) = run_until_it_fails(&s, "commit", timeout * 40);
    assert!(error.contains("commit was not answered"), "{error}");
    assert!(took < timeout * 14, "ended {took:?} after the commit's first retry");
    assert_eq!(retries(&metrics, "abort"), 0, "no abort tried while the commit is in progress");
    s.cluster.cluster().clear_request_errors(RDKafkaApiKey::EndTxn);
    run_with(&s, |_| {});
}

/// An abort the coordinator leaves unanswered past the retry budget is finished before the
/// next transaction begins (the client refuses every other transactional call until then),
/// instead of that start failing and the service stopping. Here a produce refused for good
/// aborts the first batch while the coordinator answers "loading" for longer than the budget.
#[test]
fn an_abort_left_unanswered_is_finished_before_the_next_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (s, timeout) = coordinator_loading(41, true, dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(s.config.clone(), stop.clone());
    // The abort's budget ends about ten timeouts after its first retry; the coordinator
    // answers again three timeouts later, within the budget of finishing it.
    let retried = wait_retried(&metrics, "abort");
    std::thread::sleep((timeout * 13).saturating_sub(retried.elapsed()));
    assert!(!handle.is_finished(), "the service stopped: {:?}", handle.join());
    s.cluster.cluster().clear_request_errors(RDKafkaApiKey::EndTxn);
    assert!(caught_up_within(&s.config, Duration::from_secs(120)), "finished: {}", handle.is_finished());
    let (report, _) = stop_and_time(handle, &stop);
    assert!(report.aborts >= 1, "{report:?}");
    assert_outputs_match(&s);
}

/// An abort the coordinator leaves unanswered for the budget and ten more ends the run (for a
/// restart, whose `init_transactions` ends it), instead of trying the batch again for budget
/// after budget. The restart loses nothing.
#[test]
fn an_abort_never_answered_ends_the_run_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (s, timeout) = coordinator_loading(42, true, dir.path());
    let (error, took, _) = run_until_it_fails(&s, "abort", timeout * 60);
    assert!(error.contains("abort was not answered"), "{error}");
    assert!(took < timeout * 25, "ended {took:?} after the abort's first retry");
    s.cluster.cluster().clear_request_errors(RDKafkaApiKey::EndTxn);
    run_with(&s, |_| {});
}

/// A stop while the producer's queue is full (a queue of two records here, and brokers that
/// answer in 1.5 s) ends the run at once, rather than after every record of the round has
/// waited for room; a restart loses nothing.
#[test]
fn a_stop_while_the_producer_queue_is_full_ends_the_run_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(60, 39, Mode::ExactlyOnce, dir.path());
    s.config.request_timeout_ms = 2_000;
    let mut slow = s.config.clone();
    slow.properties.insert("queue.buffering.max.messages".into(), "2".into());
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(slow, stop.clone());
    wait_consuming(&metrics);
    let c = s.cluster.cluster();
    for b in 1..=3 {
        c.broker_round_trip_time(b, Duration::from_millis(1_500)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(!handle.is_finished());
    let (report, took) = stop_and_time(handle, &stop);
    assert!(report.left_uncommitted, "{report:?}");
    assert!(took < Duration::from_secs(6), "stopped {took:?} after the request");
    for b in 1..=3 {
        c.broker_round_trip_time(b, Duration::ZERO).unwrap();
    }
    run_with(&s, |_| {});
}

/// A produce refused for good fails the transaction (abortable): the producer then refuses
/// every output until it is aborted. The batch is aborted and rewound; the service goes on.
#[test]
fn a_failed_transaction_is_rewound_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(150, 34, Mode::ExactlyOnce, dir.path());
    let report = run_with(&s, |s| {
        let c = s.cluster.cluster();
        c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 4]);
    });
    assert!(report.aborts >= 1, "the refused produce aborted no batch: {report:?}");
}

/// A transaction that fails for a reason other than a record's size (here a produce refused
/// for good) is aborted and its batch produced again from the records it made, in a new
/// transaction: no shard is restored. Each mode.
fn an_aborted_batch_is_produced_again_without_a_restore(mode: Mode, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(150, seed, mode, dir.path());
    let report = run_with(&s, |s| {
        let c = s.cluster.cluster();
        c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD]);
    });
    assert!(report.aborts >= 1 && report.resent >= 1, "no batch aborted and produced again: {report:?}");
    assert_eq!(report.restores, super::harness::PARTITIONS as u64, "only the first restores: {report:?}");
}

#[test]
fn an_aborted_batch_is_produced_again_without_a_restore_exactly_once() {
    an_aborted_batch_is_produced_again_without_a_restore(Mode::ExactlyOnce, 38);
}

#[test]
fn an_aborted_batch_is_produced_again_without_a_restore_at_least_once() {
    an_aborted_batch_is_produced_again_without_a_restore(Mode::AtLeastOnce, 39);
}

/// A transaction whose offsets the group refuses (this member's generation is over) cannot
/// succeed with them: the batch is rewound at once, not produced again, and the group polled.
#[test]
fn a_batch_the_group_moved_on_from_is_rewound_not_produced_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(150, 40, Mode::ExactlyOnce, dir.path());
    let report = run_with(&s, |s| {
        let c = s.cluster.cluster();
        c.request_errors(RDKafkaApiKey::TxnOffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION]);
    });
    assert!(report.aborts >= 1 && report.resent == 0, "{report:?}");
    assert!(report.restores > super::harness::PARTITIONS as u64, "rewound: {report:?}");
}

/// In `at_least_once`, outputs refused for good while the round runs (their reports come long
/// before the commit) fail the commit: the batch is rewound and produced again, nothing lost.
#[test]
fn refused_outputs_fail_the_at_least_once_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(150, 36, Mode::AtLeastOnce, dir.path());
    // Long rounds: the refusals are reported long before the round's commit starts.
    (s.config.commit_interval_ms, s.config.max_batch) = (3_000, 100_000);
    let report = run_with(&s, |s| {
        let c = s.cluster.cluster();
        c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 4]);
    });
    assert!(report.aborts >= 1, "the refused outputs failed no commit: {report:?}");
}

/// A dead letter bigger than its topic takes (the topic's `max.message.bytes` below the
/// producer's) would fail its batch at every retry, stopping the service on one bad record. The
/// topic's refusals teach the service its limit: the dead letter is cut to half the refused size
/// after each, and goes through. (The mock cluster enforces no topic limit: its refusals are
/// injected, two in a row.)
///
/// Each refusal rewinds to before the record, where other partitions of its shard are empty and
/// were never fetched from: nothing to seek back over, so the client does not report their end
/// again. The restored shard must know they are at their end; with an hour's merge wait, a
/// shard that waited for them would not catch up.
fn a_dead_letter_too_large_for_its_topic_is_cut_until_it_fits(mode: Mode) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let base = omnistitch_kafka::KafkaConfig {
        partitions: 2,
        mode,
        commit_interval_ms: 50,
        merge_max_wait_ms: 3_600_000,
        ..Default::default()
    };
    let (cluster, config) = test_cluster(1, base, &format!("omnistitch-test-too-large-{}", mode.as_str()));
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &config.bootstrap_servers).create().unwrap();
    let original = vec![b'x'; 600_000];
    let topic = config.topics.input(omnistitch_model::Channel::Email).to_string();
    producer.send(BaseRecord::to(&topic).key("big").payload(&original).partition(0)).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    cluster
        .cluster()
        .request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2]);
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, metrics) = spawn_service(config.clone(), stop.clone());
    wait_caught_up(&config, Duration::from_secs(60));
    stop.store(true, Ordering::Release);
    let report = handle.join().unwrap().unwrap();
    assert!(report.aborts >= 2, "each refusal fails its batch: {report:?}");
    let dead = read_topic(&config, &config.topics.deadletter);
    assert_eq!(dead.len(), 1, "one dead letter, written once");
    let d = &dead[0];
    let h = |k: &str| d.headers.iter().find(|(n, _)| n == k).map(|(_, v)| String::from_utf8_lossy(v).to_string());
    assert_eq!(h("omnistitch.reason.code").as_deref(), Some("bad_magic"));
    assert_eq!(h("omnistitch.payload.original.bytes").as_deref(), Some("600003"), "key and value, as they came");
    let value = d.value.as_deref().unwrap();
    // Refused at about 600 KB, then at about 300 KB: cut to fit 150 KB.
    assert!(value.len() > 100_000 && value.len() < 150_000, "{}", value.len());
    assert!(original.starts_with(value));
    let counted = metrics
        .render()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "omnistitch_output_records_too_large_total{{topic=\"{}\"}} ",
                config.topics.deadletter
            ))
        })
        .map(|v| v.parse::<u64>().unwrap());
    assert_eq!(counted, Some(2));
}

#[test]
fn a_dead_letter_too_large_for_its_topic_is_cut_until_it_fits_exactly_once() {
    a_dead_letter_too_large_for_its_topic_is_cut_until_it_fits(Mode::ExactlyOnce);
}

#[test]
fn a_dead_letter_too_large_for_its_topic_is_cut_until_it_fits_at_least_once() {
    a_dead_letter_too_large_for_its_topic_is_cut_until_it_fits(Mode::AtLeastOnce);
}

#[test]
fn a_broker_down_and_up_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(200, 32, Mode::ExactlyOnce, dir.path());
    run_with(&s, |s| {
        std::thread::sleep(Duration::from_millis(300));
        s.cluster.cluster().broker_down(2).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        s.cluster.cluster().broker_up(2).unwrap();
    });
}

#[test]
fn slow_brokers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(150, 33, Mode::AtLeastOnce, dir.path());
    run_with(&s, |s| {
        for b in 1..=3 {
            s.cluster.cluster().broker_round_trip_time(b, Duration::from_millis(40)).unwrap();
        }
    });
}

/// Starts the service binary; its log goes to `log`.
fn start_child(s: &Setup, dir: &std::path::Path, log: &std::path::Path) -> Child {
    let config = dir.join("service.toml");
    let mut f = std::fs::File::create(&config).unwrap();
    let c = &s.config;
    writeln!(
        f,
        "[kafka]\nbootstrap_servers = {:?}\ngroup_id = {:?}\nmode = {:?}\ncommit_interval_ms = {}\nmax_batch = 200\nmirror_offsets = true\nrequest_timeout_ms = 10000\nsnapshot_bytes = {}\npartitions = {}\nreplication = 1\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n[http]\nport = 0\nbind = \"127.0.0.1\"",
        c.bootstrap_servers,
        c.group_id,
        c.mode.as_str(),
        c.commit_interval_ms,
        c.snapshot_bytes,
        c.partitions
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_omnistitch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn killed_and_restarted(mode: Mode, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(1_200, seed, mode, dir.path());
    let mut kills = 0;
    // Each run is killed a little further on (a fifth, two fifths, three fifths of the input
    // committed); the last one finishes.
    for run in 0.. {
        let log = dir.path().join(format!("run-{run}.log"));
        let mut child = start_child(&s, dir.path(), &log);
        let started = Instant::now();
        let target = s.records as i64 * (run as i64 + 1) / 5;
        while kills < 3 && started.elapsed() < Duration::from_secs(60) && committed_records(&s.config) < target {
            std::thread::sleep(Duration::from_millis(10));
        }
        if kills < 3 && !caught_up(&s.config).unwrap_or(false) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            continue;
        }
        if !caught_up_within(&s.config, Duration::from_secs(180)) {
            for r in 0..=run {
                let text = std::fs::read_to_string(dir.path().join(format!("run-{r}.log"))).unwrap_or_default();
                eprintln!("--- run {r} ---\n{text}");
            }
            panic!("the service did not catch up within 180 s");
        }
        // A polite stop at the end: SIGTERM, exit 0 (once the service says it serves: its
        // signal handlers are in place by then; the input may be caught up before that).
        let serving = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("serving /metrics") {
            assert!(serving.elapsed() < Duration::from_secs(60), "the service never started serving");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "SIGTERM: clean exit, got {status}");
        break;
    }
    assert_eq!(kills, 3, "the world must be big enough to kill the service mid-stream");
    let logs: Vec<String> = (0..=kills)
        .map(|r| std::fs::read_to_string(dir.path().join(format!("run-{r}.log"))).unwrap_or_default())
        .collect();
    let from_snapshot = logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("shard restored") && l.contains("snapshot_offset"))
        .count();
    eprintln!("{from_snapshot} shards restored from a snapshot");
    assert!(from_snapshot > 0, "restarts read snapshots back");
    let duplicates = assert_outputs_match(&s);
    eprintln!("{kills} kills, {duplicates} duplicate timeline records (exact copies)");
}

#[test]
fn killed_and_restarted_exactly_once() {
    killed_and_restarted(Mode::ExactlyOnce, 34);
}

#[test]
fn killed_and_restarted_at_least_once() {
    killed_and_restarted(Mode::AtLeastOnce, 35);
}

#[test]
fn rebalances_move_shards_between_instances_without_loss() {
    rebalances_move_shards(0);
}

/// With quiet tenants' clocks moved (`idle_clock_ms`), a member holding a shard may commit a
/// clock move that moves no input offset: a shard that comes back is restored, never kept.
#[test]
fn with_idle_clocks_a_shard_that_comes_back_is_restored_not_kept() {
    rebalances_move_shards(300);
}

fn rebalances_move_shards(idle_clock_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(400, 36 + idle_clock_ms, Mode::ExactlyOnce, dir.path());
    let config = |id: &str| omnistitch_kafka::KafkaConfig {
        transactional_id: Some(id.into()),
        idle_clock_ms,
        ..s.config.clone()
    };
    let stop_a = Arc::new(AtomicBool::new(false));
    let (a, metrics_a) = spawn_service(config("instance-a"), stop_a.clone());
    // The first instance holds every shard before the second joins.
    let started = Instant::now();
    while metrics_a.shards.get() != 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "instance a never held every shard");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // A second instance joins: shards move to it and are restored from the changelog there.
    let stop_b = Arc::new(AtomicBool::new(false));
    let (b, metrics_b) = spawn_service(config("instance-b"), stop_b.clone());
    // The group settles with the shards split between both (the mock broker waits up to the
    // session timeout for members to rejoin).
    let started = Instant::now();
    while !(metrics_a.shards.get() >= 1
        && metrics_b.shards.get() >= 1
        && metrics_a.shards.get() + metrics_b.shards.get() == 3)
    {
        assert!(started.elapsed() < Duration::from_secs(60), "the shards were not split between both instances");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // The first leaves (a polite stop): the second takes every shard.
    stop_a.store(true, Ordering::Release);
    let report_a = a.join().unwrap().expect("instance a");
    let started = Instant::now();
    while metrics_b.shards.get() != 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "instance b did not take every shard");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_caught_up(&s.config, Duration::from_secs(180));
    stop_b.store(true, Ordering::Release);
    let report_b = b.join().unwrap().expect("instance b");
    assert!(report_b.restores >= 1, "instance b restored shards it was given");
    let rebalances = |m: &omnistitch_kafka::ServiceMetrics| {
        m.render()
            .lines()
            .filter(|l| l.starts_with("omnistitch_rebalances_total{kind=\"assign\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    let (ra, rb) = (rebalances(&metrics_a), rebalances(&metrics_b));
    eprintln!(
        "a: {report_a:?} assigns {ra} mirror failures {}\nb: {report_b:?} assigns {rb} mirror failures {}",
        metrics_a.offset_mirror_failures.get(),
        metrics_b.offset_mirror_failures.get()
    );
    assert!(ra >= 1.0 && rb >= 1.0, "both were assigned shards");
    // Each rebalance revokes every shard of every member; the shards a member gets back are
    // kept (nobody committed them meanwhile), not restored again. On the mock cluster the
    // group's offsets are the consumer's mirror of each transaction's: a mirror refused
    // because the rebalance had begun leaves them behind the member's state, and then a
    // restore, not a keep, is the right answer (counted, so never unexplained).
    let (mirror_a, mirror_b) = (metrics_a.offset_mirror_failures.get(), metrics_b.offset_mirror_failures.get());
    if idle_clock_ms > 0 {
        assert_eq!((report_a.kept, report_b.kept), (0, 0), "idle clocks: shards restored, not kept");
        assert!(report_a.restores >= 1, "instance a restored the shards it got back when b joined");
    } else {
        assert!(report_a.kept >= 1 || mirror_a >= 1, "instance a kept the shards it got back when b joined");
        assert!(report_b.kept >= 1 || mirror_b >= 1, "instance b kept its shards when a left");
    }
    assert!(metrics_a.shards_kept.get() == report_a.kept && metrics_b.shards_kept.get() == report_b.kept);
    assert_outputs_match(&s);
}

/// A static member (`group.instance.id`) whose place another instance took is failed for
/// good: the service stops with the error (for its supervisor to see) instead of polling a
/// dead consumer, and rewinding its batches, for ever.
#[test]
fn a_fenced_static_member_stops_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(60, 41, Mode::ExactlyOnce, dir.path());
    s.config.properties.insert("group.instance.id".into(), "omnistitch-a".into());
    s.config.properties.insert("heartbeat.interval.ms".into(), "200".into());
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, _metrics) = spawn_service(s.config.clone(), stop.clone());
    assert!(caught_up_within(&s.config, Duration::from_secs(120)), "the service catches up first");
    let c = s.cluster.cluster();
    c.request_errors(RDKafkaApiKey::Heartbeat, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 20]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let finished = handle.is_finished();
    stop.store(true, Ordering::Release);
    let result = handle.join().unwrap();
    assert!(finished, "the service went on with a fenced consumer: {result:?}");
    let err = result.expect_err("stopped with the error");
    assert!(err.to_lowercase().contains("fenced") || err.contains("Fatal"), "{err}");
}

/// SIGTERM while start-up waits for an unreachable schema registry: the service stops at once
/// and exits 0 (nothing was consumed), instead of waiting out the registry for its liveness
/// timeout (40 s here) and failing.
#[test]
fn sigterm_while_the_registry_is_unreachable_at_start_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(
        &config,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\nrequest_timeout_ms = 10000\n[schemas]\nregistry_url = \"http://127.0.0.1:1\"\n[http]\nport = 0\nbind = \"127.0.0.1\"\n",
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnistitch"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let waiting = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("registering the output schemas again") {
        assert!(waiting.elapsed() < Duration::from_secs(30), "the service never waited for the registry");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopping.elapsed() > Duration::from_secs(15) {
            child.kill().unwrap();
            panic!("still waiting for the registry 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "SIGTERM at start-up: exit 0, got {status}");
}
