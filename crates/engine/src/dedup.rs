//! Event-id deduplication ahead of every stage, bounded by the retention window.

use hashbrown::HashMap;

use omnistitch_model::EventTime;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64};

/// Remembers which (tenant, event id) pairs were applied, by 128-bit digest.
#[derive(Debug, Default)]
pub struct SeenEvents {
    /// Digest (as two words, to keep entries 24 bytes) -> event time.
    seen: HashMap<[u64; 2], EventTime>,
}

/// The event id's 128-bit digest, seeded by the tenant's (one-shot hashing: the streaming
/// hasher's set-up cost more than hashing a short id).
fn digest(tenant: &str, event_id: &str) -> [u64; 2] {
    let d = xxh3_128_with_seed(event_id.as_bytes(), xxh3_64(tenant.as_bytes()));
    [d as u64, (d >> 64) as u64]
}

impl SeenEvents {
    /// Records the event; `false` if it was already seen.
    pub fn first_time(&mut self, tenant: &str, event_id: &str, time: EventTime) -> bool {
        self.seen.insert(digest(tenant, event_id), time).is_none()
    }

    /// Forgets events older than `cutoff`.
    pub fn forget_before(&mut self, cutoff: EventTime) {
        self.seen.retain(|_, t| *t >= cutoff);
    }

    /// Events remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
