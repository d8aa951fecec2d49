//! Simulated traffic for the embedded mode: worlds of the simulator, produced to the input
//! topics at a steady rate, one world after another (each with its own seed and time span).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use omnistitch_codec::datum::encode_input;
use omnistitch_kafka::registry::BundledIds;
use omnistitch_kafka::topics::partition_for;
use omnistitch_kafka::wire::write_confluent;
use omnistitch_kafka::KafkaConfig;
use omnistitch_sim::SimConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

/// Days between the starts of successive worlds (a world's span plus its longest case tail).
const WORLD_STRIDE_DAYS: i64 = 70;

/// [`WORLD_STRIDE_DAYS`] in milliseconds.
pub const WORLD_STRIDE_MS: i64 = WORLD_STRIDE_DAYS * 86_400_000;

/// Worlds the embedded traffic has room for before its event times reach the present: its
/// first world starts this many strides back (about twelve years; at the default rate, twenty
/// minutes of traffic).
pub const EMBEDDED_WORLDS: i64 = 64;

/// What to send.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Records per second; 0 sends as fast as the producer takes them.
    pub rate: u64,
    /// Customers per world.
    pub customers: usize,
    /// Seed of the first world.
    pub seed: u64,
    /// Stop after this many worlds (`None`: until stopped).
    pub worlds: Option<u64>,
    /// Index of the first world: world `k` starts `k` strides after `start_ms` in event time,
    /// with the seed plus `k` and event ids of its own (a producer following another one's
    /// worlds starts after them).
    pub first_world: u64,
    /// Event time at which world 0 starts, ms. Simulated time runs far faster than the wall
    /// clock: worlds that start after the present would be dead-lettered (`future_time`).
    pub start_ms: i64,
}

/// Wall-clock time, ms since the epoch (what record timestamps and the present are on).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Traffic {
    /// World 0 starting [`EMBEDDED_WORLDS`] strides before `now_ms` (at a UTC midnight), so
    /// that that many worlds lie in the past.
    pub fn start_before(now_ms: i64) -> i64 {
        let start = now_ms - EMBEDDED_WORLDS * WORLD_STRIDE_MS;
        start - start.rem_euclid(86_400_000)
    }
}

/// Produces `traffic` to the input topics of `config` until `stop` (or the last world).
/// Returns the records sent.
pub fn produce(config: &KafkaConfig, ids: &BundledIds, traffic: &Traffic, stop: &AtomicBool) -> anyhow::Result<u64> {
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .client()
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .context("creating the traffic producer")?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut frame = Vec::new();
    for k in traffic.first_world.. {
        if traffic.worlds.is_some_and(|n| k >= traffic.first_world + n) || stop.load(Ordering::Acquire) {
            break;
        }
        let sim = world_config(traffic, k);
        let now_ms = wall_clock_ms();
        if sim.start_ms + WORLD_STRIDE_MS > now_ms {
            tracing::warn!(
                world = k,
                "simulated traffic has reached the present: this world's events lie partly in the future and are dead-lettered (future_time); restart the run for more"
            );
        }
        let world = omnistitch_sim::generate(&sim).context("generating simulated traffic")?;
        for event in &world.events {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let channel = event.channel();
            let datum = encode_input(event).context("encoding a simulated record")?;
            frame.clear();
            write_confluent(ids.input(channel), &datum, &mut frame);
            let topic = config.topics.input(channel);
            let partition = partition_for(event.tenant(), config.partitions);
            let key = event.tenant().as_bytes();
            let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key).payload(&frame).partition(partition);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err((e, _)) => return Err(e).context("producing simulated traffic"),
                }
            }
            sent += 1;
            // Paced in steps of a fiftieth of a second's worth (one record at low rates), each
            // wait in short slices that look at `stop`: a stop never waits behind the pacing.
            if traffic.rate > 0 && sent % pace_step(traffic.rate) == 0 {
                let due = Duration::from_secs_f64(sent as f64 / traffic.rate as f64);
                while let Some(wait) = due.checked_sub(started.elapsed()) {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).context("flushing simulated traffic")?;
    Ok(sent)
}

/// Records sent between two looks at the pace: a fiftieth of a second's worth, at least one.
fn pace_step(rate: u64) -> u64 {
    (rate / 50).max(1)
}

/// The `k`th world of `traffic`: its own seed, a later span, and event ids of its own (the
/// same ids again would be redeliveries, dropped by the service).
pub fn world_config(traffic: &Traffic, k: u64) -> SimConfig {
    SimConfig {
        customers: traffic.customers,
        seed: traffic.seed.wrapping_add(k),
        start_ms: traffic.start_ms + k as i64 * WORLD_STRIDE_MS,
        event_id_prefix: if k == 0 { SimConfig::default().event_id_prefix } else { format!("ev{k}") },
        ..SimConfig::default()
    }
}

/// Starts [`produce`] on a thread of its own.
pub fn spawn(
    config: KafkaConfig,
    ids: BundledIds,
    traffic: Traffic,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<u64>> {
    std::thread::spawn(move || {
        let sent = produce(&config, &ids, &traffic, &stop);
        if let Err(e) = &sent {
            // Said at once, and the run stopped: a service idling on no input would look healthy.
            tracing::error!(error = %format!("{e:#}"), "simulated traffic failed; stopping");
            stop.store(true, std::sync::atomic::Ordering::Release);
        }
        sent
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Small worlds from `start_ms`.
    fn small(start_ms: i64) -> Traffic {
        Traffic { rate: 0, customers: 60, seed: 7, worlds: None, first_world: 0, start_ms }
    }

    /// Worlds fed one after another share no (tenant, event id): none is a redelivery.
    #[test]
    fn consecutive_worlds_have_event_ids_of_their_own() {
        let traffic = small(omnistitch_sim::DEFAULT_START_MS);
        let ids = |k| -> HashSet<(String, String)> {
            let world = omnistitch_sim::generate(&world_config(&traffic, k)).unwrap();
            world.truth.iter().map(|t| (t.tenant.clone(), t.event_id.clone())).collect()
        };
        let (first, second, third) = (ids(0), ids(1), ids(2));
        assert!(!first.is_empty() && !second.is_empty());
        assert!(first.is_disjoint(&second) && second.is_disjoint(&third) && first.is_disjoint(&third));
        assert!(first.iter().all(|(_, id)| id.starts_with("ev-")), "the first world is the simulator's default");
    }

    #[test]
    fn pacing_looks_at_the_clock_fifty_times_a_second_or_every_record() {
        assert_eq!((pace_step(1), pace_step(49), pace_step(50), pace_step(10_000)), (1, 1, 1, 200));
    }

    /// At a rate of one record a second, a stop ends the traffic at once, not after the
    /// hundred records a pacing step used to be.
    #[test]
    fn a_stop_never_waits_behind_the_pacing() {
        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = omnistitch_kafka::mock::EmbeddedCluster::start(1, &base).unwrap();
        let config = cluster.service_config(base);
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = Traffic { rate: 1, worlds: Some(1), ..small(omnistitch_sim::DEFAULT_START_MS) };
        let started = Instant::now();
        let producing = spawn(config, BundledIds::default(), traffic, stop.clone());
        std::thread::sleep(Duration::from_millis(1_500));
        stop.store(true, Ordering::Release);
        let sent = producing.join().unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!((1..=3).contains(&sent), "paced at one a second: {sent}");
    }

    /// The embedded traffic's worlds lie in the past, at least [`EMBEDDED_WORLDS`] of them.
    #[test]
    fn embedded_worlds_end_before_the_present() {
        let now = 1_795_000_000_000; // 2026-11
        let traffic = small(Traffic::start_before(now));
        let last = omnistitch_sim::generate(&world_config(&traffic, EMBEDDED_WORLDS as u64 - 1)).unwrap();
        let latest = last.events.iter().map(|e| e.event_time()).max().unwrap();
        assert!(latest < now, "the last world ends {} days after the present", (latest - now) / 86_400_000);
        assert_eq!(traffic.start_ms.rem_euclid(86_400_000), 0);
    }
}
