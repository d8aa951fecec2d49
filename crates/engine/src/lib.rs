//! The stitching engine: identity resolution and timelines composed into one sans-IO step,
//! followed by micro-moment detection and CX metrics in event-time order.
//!
//! [`Engine::apply`] takes a validated event and returns what changed ([`Applied`]);
//! [`Pipeline`] adds the reorder buffer, the moments detector and the CX metrics behind it; the
//! [`records`] module turns engine state into the output records of the Avro contract. The
//! Kafka service and the file-based `replay` drive the same pipeline, so they agree by design.

pub mod config;
pub mod dedup;
pub mod engine;
pub mod pipeline;
pub mod records;
pub mod snapshot;
pub mod stats;

#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod snapshot_tests;

pub use config::{ConfigError, EngineConfig};
pub use engine::{Applied, Engine};
pub use pipeline::{Ordered, Pipeline, Placed, Step};
pub use snapshot::SnapshotError;
pub use stats::EngineStats;
