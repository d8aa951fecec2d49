//! Delivery: the order events arrive in, with bounded disorder and duplicate deliveries.
//!
//! Each delivery arrives at its event time plus a delay in `0..=max_lateness`. Sorting by arrival
//! time then bounds disorder: if `a` arrives before `b`, `t_a + d_a <= t_b + d_b`, so
//! `t_a - t_b <= d_b - d_a <= max_lateness`.

use omnistitch_model::WireEvent;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::SimConfig;
use crate::fields;
use crate::ids::derive_seed;

/// The seed stream of delivery.
const ARRIVAL_STREAM: u64 = 2;

/// A delay in `0..=max`, mostly short: real pipelines are usually prompt and sometimes not.
fn delay(rng: &mut ChaCha8Rng, max: i64) -> i64 {
    if max == 0 {
        return 0;
    }
    let u: f64 = rng.random();
    ((max as f64 * u * u * u) as i64).min(max)
}

/// `events` (distinct) in arrival order, some delivered twice.
pub(crate) fn deliver(config: &SimConfig, events: Vec<WireEvent>) -> Vec<WireEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, ARRIVAL_STREAM));
    let max = config.max_lateness_ms;
    let mut slots: Vec<(i64, usize, usize)> = Vec::with_capacity(events.len() + events.len() / 16);
    for (i, e) in events.iter().enumerate() {
        let t = fields::event_time(e);
        slots.push((t + delay(&mut rng, max), slots.len(), i));
        if rng.random_bool(config.duplicate_rate) {
            slots.push((t + delay(&mut rng, max), slots.len(), i));
        }
    }
    slots.sort_unstable();
    let mut copies = vec![0u8; events.len()];
    for &(_, _, i) in &slots {
        copies[i] += 1;
    }
    let mut events: Vec<Option<WireEvent>> = events.into_iter().map(Some).collect();
    slots
        .into_iter()
        .filter_map(|(_, _, i)| {
            copies[i] -= 1;
            // The last copy moves; earlier ones clone.
            if copies[i] == 0 {
                events[i].take()
            } else {
                events[i].clone()
            }
        })
        .collect()
}
