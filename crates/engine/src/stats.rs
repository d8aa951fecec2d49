//! Counters of what the engine did, for metrics and run summaries.

use serde::Serialize;

/// Cumulative counts since the engine started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Events applied (first deliveries).
    pub events: u64,
    /// Redeliveries dropped.
    pub duplicates: u64,
    /// Profiles created.
    pub profiles_created: u64,
    /// Profile merges.
    pub merges: u64,
    /// Links refused by limits.
    pub conflicts: u64,
    /// Identifiers per outcome: linked, added, shared, conflict, blocked, invalid.
    pub identifiers: [u64; 6],
    /// Timeline entries evicted by retention.
    pub evicted: u64,
    /// Events older than their tenant's retention when they came, not applied.
    pub beyond_retention: u64,
}
