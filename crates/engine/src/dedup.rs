//! Event-id deduplication ahead of every stage, bounded by each tenant's retention window.

use std::sync::Arc;

use hashbrown::HashMap;

use omnistitch_model::EventTime;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64};

/// One tenant's applied events, and its clock.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TenantSeen {
    /// Digest (as two words, to keep entries 24 bytes) -> event time.
    seen: HashMap<[u64; 2], EventTime>,
    /// The tenant's newest event time.
    newest: EventTime,
    /// `newest` when its state was last swept.
    last_sweep: EventTime,
}

/// What the index says of an arriving event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Applied before: a redelivery.
    Duplicate,
    /// Older than the tenant's retention behind its newest event time: not to be applied.
    BeyondRetention,
    /// Not seen before; `sweep_due` when its tenant's clock moved a sweep interval since the
    /// tenant's last sweep (the sweep is then counted as done).
    New {
        /// The tenant's state should be swept.
        sweep_due: bool,
    },
}

/// Remembers which (tenant, event id) pairs were applied, by 128-bit digest, per tenant: each
/// tenant forgets by its own clock.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SeenEvents {
    tenants: HashMap<Arc<str>, TenantSeen>,
}

/// The event id's 128-bit digest, seeded by the tenant's (one-shot hashing: the streaming
/// hasher's set-up cost more than hashing a short id).
fn digest(tenant: &str, event_id: &str) -> [u64; 2] {
    let d = xxh3_128_with_seed(event_id.as_bytes(), xxh3_64(tenant.as_bytes()));
    [d as u64, (d >> 64) as u64]
}

impl SeenEvents {
    /// Records the event `event_id` of `tenant` at `time`, unless it was seen before or is more
    /// than `max_age_ms` behind the tenant's newest event; a tenant is swept every
    /// `sweep_every_ms` of its own event time.
    pub fn arrive(
        &mut self,
        tenant: &Arc<str>,
        event_id: &str,
        time: EventTime,
        sweep_every_ms: i64,
        max_age_ms: i64,
    ) -> Arrival {
        let t = match self.tenants.get_mut(&**tenant) {
            Some(t) => t,
            None => self.tenants.entry(tenant.clone()).or_insert(TenantSeen {
                seen: HashMap::new(),
                newest: EventTime(i64::MIN),
                last_sweep: EventTime(i64::MIN),
            }),
        };
        if time.0 < t.newest.0.saturating_sub(max_age_ms) {
            return Arrival::BeyondRetention;
        }
        match t.seen.entry(digest(tenant, event_id)) {
            hashbrown::hash_map::Entry::Occupied(_) => return Arrival::Duplicate,
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(time);
            }
        }
        t.newest = t.newest.max(time);
        let sweep_due = t.newest.0.saturating_sub(t.last_sweep.0) >= sweep_every_ms;
        if sweep_due {
            t.last_sweep = t.newest;
        }
        Arrival::New { sweep_due }
    }

    /// The newest event time of `tenant` seen so far.
    pub fn newest(&self, tenant: &str) -> Option<EventTime> {
        self.tenants.get(tenant).map(|t| t.newest)
    }

    /// Forgets events of `tenant` older than `cutoff`.
    pub fn forget_before(&mut self, tenant: &str, cutoff: EventTime) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.seen.retain(|_, time| *time >= cutoff);
        }
    }

    /// Events remembered.
    pub fn len(&self) -> usize {
        self.tenants.values().map(|t| t.seen.len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.tenants.values().all(|t| t.seen.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_dedups_and_sweeps_by_its_own_clock() {
        let mut s = SeenEvents::default();
        let (acme, globex): (Arc<str>, Arc<str>) = (Arc::from("acme"), Arc::from("globex"));
        assert_eq!(s.arrive(&acme, "e1", EventTime(1_000), 100, i64::MAX), Arrival::New { sweep_due: true });
        assert_eq!(s.arrive(&acme, "e1", EventTime(1_000), 100, i64::MAX), Arrival::Duplicate);
        assert_eq!(
            s.arrive(&globex, "e1", EventTime(5), 100, i64::MAX),
            Arrival::New { sweep_due: true },
            "another tenant"
        );
        assert_eq!(s.arrive(&acme, "e2", EventTime(1_050), 100, i64::MAX), Arrival::New { sweep_due: false });
        // Globex loading old history is not swept on acme's clock.
        assert_eq!(s.arrive(&globex, "e2", EventTime(50), 100, i64::MAX), Arrival::New { sweep_due: false });
        assert_eq!(s.arrive(&acme, "e3", EventTime(1_100), 100, i64::MAX), Arrival::New { sweep_due: true });
        s.forget_before("acme", EventTime(1_060));
        assert_eq!(s.len(), 3, "acme's e1 and e2 forgotten, globex's kept");
        assert_eq!(s.arrive(&globex, "e1", EventTime(5), 100, i64::MAX), Arrival::Duplicate);
        // More than the retention behind the tenant's newest (1_100): refused, not recorded.
        assert_eq!(s.arrive(&acme, "e4", EventTime(99), 100, 1_000), Arrival::BeyondRetention);
        assert_eq!(s.arrive(&acme, "e4", EventTime(100), 100, 1_000), Arrival::New { sweep_due: false });
    }
}
