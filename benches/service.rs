//! The service over librdkafka's mock cluster: sustained events/s with exactly-once on (median
//! of three passes, each a fresh consumer group) and CPU per record, beside a passthrough
//! baseline (the same consumer and transactional producer settings, copying bytes), both
//! measured from their first commit to their last; and ingest-to-output latency at a steady
//! 10k events/s of new events (later worlds, event ids of their own).
//!
//! `cargo bench --bench service` (`-- --customers N` to change the world size).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use omnistitch::run::traffic::{produce, Traffic};
use omnistitch_kafka::registry::BundledIds;
use omnistitch_kafka::topics::{caught_up, committed_records};
use omnistitch_kafka::{EmbeddedCluster, KafkaConfig, Mode, Service, ServiceMetrics};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

/// Where the first world starts: seven worlds (the throughput pass's and the latency phase's
/// six) end before the present, as the embedded run places its own.
const START_MS: i64 = omnistitch_sim::DEFAULT_START_MS - 8 * omnistitch::run::traffic::WORLD_STRIDE_MS;

/// CPU seconds used so far by each live thread of this process: (thread id, name) -> seconds.
fn cpu_by_thread() -> std::collections::BTreeMap<(u32, String), f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // "tid (name) state ...": utime and stime are the 14th and 15th fields.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
        out.insert((tid, name), ticks / tick);
    }
    out
}

/// CPU microseconds per record between two snapshots (threads that ended in between are not
/// counted): the named threads, then the rest.
fn cpu_per_record(
    before: &std::collections::BTreeMap<(u32, String), f64>,
    after: &std::collections::BTreeMap<(u32, String), f64>,
    records: u64,
    named: &[&str],
) -> String {
    let mut by_name = std::collections::BTreeMap::<&str, f64>::new();
    for (key, secs) in after {
        *by_name.entry(key.1.as_str()).or_default() += secs - before.get(key).unwrap_or(&0.0);
    }
    let us = |secs: f64| secs * 1e6 / records as f64;
    let used = |name: &str| by_name.get(name).copied().unwrap_or(0.0);
    let total: f64 = by_name.values().sum();
    let mut parts: Vec<String> = named.iter().map(|n| format!("{n} {:.1}", us(used(n)))).collect();
    let rest = total - named.iter().map(|n| used(n)).sum::<f64>();
    parts.push(format!("brokers and clients {:.1}", us(rest)));
    format!("{:.1} us ({})", us(total), parts.join(", "))
}

fn wait(config: &KafkaConfig, group: &str) {
    let c: BaseConsumer = config.client().set("group.id", group).create().unwrap();
    while !caught_up(&c, config, Duration::from_secs(5)).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `group` has committed all `records`; returns the sustained rate: records
/// committed from the first commit seen to the last, over that time (start-up excluded).
fn sustained(config: &KafkaConfig, group: &str, records: u64) -> f64 {
    let c: BaseConsumer = config.client().set("group.id", group).create().unwrap();
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let n = committed_records(&c, config, Duration::from_secs(5)).unwrap_or(0);
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if n >= records as i64 {
            let (t, n0) = first.expect("seen");
            // A run committed whole before its first commit was seen has no sustained rate to
            // show: the world is too small for this machine.
            assert!(n > n0, "every record was committed by the first commit seen: use a larger world");
            return (n - n0) as f64 / now.duration_since(t).as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies every input record to one output topic in transactions, offsets included, as
/// consumer group `group`; returns records/s and the process's CPU microseconds per record.
fn passthrough(config: &KafkaConfig, group: &str, records: u64) -> (f64, f64) {
    let consumer: BaseConsumer = KafkaConfig { group_id: group.into(), ..config.clone() }.consumer().create().unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> =
        KafkaConfig { transactional_id: Some(group.into()), ..config.clone() }.producer().create().unwrap();
    producer.init_transactions(Duration::from_secs(10)).unwrap();
    let topics: Vec<&str> = config.topics.inputs().iter().map(|(_, t)| *t).collect();
    consumer.subscribe(&topics).unwrap();
    let cpu_before = cpu_by_thread();
    let mut seen = 0u64;
    // (when, records committed) at the first commit: the rate is the service's estimator's,
    // from the first commit to the last (start-up and the first batch excluded).
    let mut first_commit: Option<(Instant, u64)> = None;
    let interval = Duration::from_millis(config.commit_interval_ms);
    while seen < records {
        producer.begin_transaction().unwrap();
        let deadline = Instant::now() + interval;
        // (topic, partition, next offset): a few entries, scanned (no allocation per record).
        let mut offsets: Vec<(String, i32, i64)> = Vec::new();
        // The last batch commits as soon as its last record is copied, not at the interval's
        // end (idling there would charge the copy a fraction of an interval per pass).
        while Instant::now() < deadline && seen < records {
            match consumer.poll(Duration::from_millis(5)) {
                Some(Ok(m)) => {
                    let mut r = BaseRecord::<[u8], [u8]>::to(&config.topics.timeline);
                    if let Some(p) = m.payload() {
                        r = r.payload(p);
                    }
                    if let Some(k) = m.key() {
                        r = r.key(k);
                    }
                    let mut r = r;
                    loop {
                        match producer.send(r) {
                            Ok(()) => break,
                            Err((_, back)) => {
                                r = back;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    match offsets.iter_mut().find(|(t, p, _)| t == m.topic() && *p == m.partition()) {
                        Some(slot) => slot.2 = m.offset() + 1,
                        None => offsets.push((m.topic().to_string(), m.partition(), m.offset() + 1)),
                    }
                    seen += 1;
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => panic!("{e}"),
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
        }
        if tpl.count() > 0 {
            let meta = consumer.group_metadata().unwrap();
            producer.send_offsets_to_transaction(&tpl, &meta, Duration::from_secs(10)).unwrap();
        }
        // As the service does: the client's commit flushes in 100 ms sleeps while anything is
        // in flight (a pass is only a few commits: that alone made passes take 280k-480k/s).
        while producer.in_flight_count() > 0 {
            std::thread::sleep(Duration::from_micros(250));
        }
        producer.commit_transaction(Duration::from_secs(10)).unwrap();
        if tpl.count() > 0 {
            consumer.commit(&tpl, CommitMode::Sync).unwrap();
            first_commit.get_or_insert((Instant::now(), seen));
        }
    }
    let (t0, n0) = first_commit.expect("a commit");
    assert!(seen > n0, "every record was committed by the first commit: use a larger world");
    let rate = (seen - n0) as f64 / t0.elapsed().as_secs_f64();
    let cpu_after = cpu_by_thread();
    let cpu: f64 = cpu_after.iter().map(|(k, secs)| secs - cpu_before.get(k).unwrap_or(&0.0)).sum();
    consumer.unsubscribe();
    (rate, cpu * 1e6 / seen as f64)
}

/// The sum of the samples of metric `name` in the text exposition `text` whose labels contain
/// `with` (every sample of the family when empty).
fn metric_sum(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the service on a thread named `stitch` until the returned flag is set.
fn start_service(
    config: KafkaConfig,
) -> (std::thread::JoinHandle<omnistitch_kafka::RunReport>, Arc<AtomicBool>, Arc<ServiceMetrics>) {
    let metrics = Arc::new(ServiceMetrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (m, s) = (metrics.clone(), stop.clone());
    let handle = std::thread::Builder::new()
        .name("stitch".into())
        .spawn(move || Service::bundled(config, m).unwrap().run(s).unwrap())
        .unwrap();
    (handle, stop, metrics)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let customers: usize = args
        .iter()
        .position(|a| a == "--customers")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let base = KafkaConfig { partitions: PARTITIONS, mode: Mode::ExactlyOnce, ..Default::default() };
    let cluster = EmbeddedCluster::start(3, &base).unwrap();
    let config = cluster.service_config(base);
    let ids = BundledIds::default();
    let t0 = Instant::now();
    let records = produce(
        &config,
        &ids,
        &Traffic { rate: 0, customers, seed: 1, worlds: Some(1), first_world: 0, start_ms: START_MS },
        &AtomicBool::new(false),
    )
    .unwrap();
    println!("produced {records} records ({customers} customers) in {:.1?}", t0.elapsed());

    // The median of three passes (each a new group reading everything, for under a second).
    let mut passes: Vec<(f64, f64)> =
        (1..=3).map(|i| passthrough(&config, &format!("passthrough-{i}"), records)).collect();
    passes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (base_rate, base_cpu) = passes[1];
    println!(
        "passthrough (exactly-once copy): {base_rate:.0} records/s (median of {:.0}, {:.0}, {:.0}), CPU {base_cpu:.1} us per record",
        passes[0].0, passes[1].0, passes[2].0
    );

    // Three passes of the service, each a new group (fresh state) over the same records; the
    // last keeps running for the latency phase.
    let mut passes = Vec::new();
    let mut running = None;
    for pass in 1..=3 {
        let svc_config = KafkaConfig { group_id: format!("omnistitch-bench-{pass}"), ..config.clone() };
        let cpu_before = cpu_by_thread();
        let started = Instant::now();
        let (handle, stop, metrics) = start_service(svc_config.clone());
        let rate = sustained(&svc_config, &svc_config.group_id, records);
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_per_record(&cpu_before, &cpu_by_thread(), records, &["stitch", "ordered"]);
        // What the pass did: every record applied (none dropped as a redelivery or dead-
        // lettered), each with its timeline record.
        let text = metrics.render();
        let applied = metric_sum(&text, "omnistitch_input_records_total", "outcome=\"applied\"");
        let other = metric_sum(&text, "omnistitch_input_records_total", "") - applied;
        let timeline =
            metric_sum(&text, "omnistitch_output_records_total", &format!("\"{}\"", svc_config.topics.timeline));
        println!(
            "  pass {pass}: {applied:.0} records applied, {other:.0} otherwise (duplicate or dead-lettered), {timeline:.0} timeline records"
        );
        passes.push((rate, records as f64 / secs, cpu));
        if pass < 3 {
            stop.store(true, Ordering::Release);
            handle.join().unwrap();
        } else {
            running = Some((svc_config, handle, stop, metrics));
        }
    }
    let mut order: Vec<usize> = (0..passes.len()).collect();
    order.sort_by(|&a, &b| passes[a].0.total_cmp(&passes[b].0));
    let (rate, with_start, cpu) = &passes[order[1]];
    println!(
        "service (exactly-once, moments and CX on): {rate:.0} records/s sustained (median of {:.0}, {:.0}, {:.0}) \
         = {:.0}% of passthrough ({with_start:.0} records/s counting start-up, group join and restore)",
        passes[order[0]].0,
        passes[order[1]].0,
        passes[order[2]].0,
        100.0 * rate / base_rate,
    );
    println!("CPU per record in that pass (start-up included, the whole process): {cpu}");
    let (svc_config, handle, stop, metrics) = running.expect("the last pass runs on");

    // Latency at a steady 10k records/s: worlds after the first (later event times, event ids
    // of their own: new events, not redeliveries).
    metrics.latency_exact.reset();
    let applied_before = metric_sum(&metrics.render(), "omnistitch_input_records_total", "outcome=\"applied\"");
    let live = Traffic { rate: 10_000, customers: 1_000, seed: 1, worlds: Some(6), first_world: 1, start_ms: START_MS };
    let sent = produce(&config, &BundledIds::default(), &live, &AtomicBool::new(false)).unwrap();
    wait(&svc_config, &svc_config.group_id);
    let applied =
        metric_sum(&metrics.render(), "omnistitch_input_records_total", "outcome=\"applied\"") - applied_before;
    println!(
        "  the latency phase applied {applied:.0} of its {sent} records (the rest: redeliveries the simulator plants)"
    );
    let q = |p| metrics.latency_exact.quantile_ms(p).map_or("-".to_string(), |ms| ms.to_string());
    println!(
        "latency at 10k records/s ({sent} records, commit interval {} ms): p50 {} ms, p99 {} ms, max {} ms",
        svc_config.commit_interval_ms,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    stop.store(true, Ordering::Release);
    let report = handle.join().unwrap();
    println!("commits {} aborts {}", report.commits, report.aborts);
}
