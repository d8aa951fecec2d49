//! The stitching engine: identity resolution and timelines composed into one sans-IO step.
//!
//! [`Engine::apply`] takes a validated event and returns what changed ([`Applied`]); the
//! [`records`] module turns engine state into the output records of the Avro contract. The
//! Kafka service and the file-based `replay` drive the same engine, so they agree by design.

pub mod config;
pub mod dedup;
pub mod engine;
pub mod records;
pub mod stats;

pub use config::{ConfigError, EngineConfig};
pub use engine::{Applied, Engine};
pub use stats::EngineStats;
