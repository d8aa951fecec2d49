//! Kafka input and output: the stage between the brokers and the engine.
//!
//! Input records (Confluent-framed or single-object Avro) are decoded with schemas from a
//! registry or the bundled contract ([`wire`], [`registry`]), merged per shard in event-time
//! order ([`merge`]), applied to the engine, and their outputs, changelog entries
//! ([`changelog`]) and input offsets committed together ([`service`]). The engine crates know
//! nothing of Kafka; this crate knows nothing of the command line.

pub mod changelog;
pub mod clients;
pub mod config;
pub mod headers;
pub mod health;
pub mod lookups;
pub mod merge;
pub mod metrics;
pub mod mock;
pub mod ordered;
pub mod outputs;
pub mod references;
pub mod registry;
pub mod restore;
pub mod service;
pub mod shard;
pub mod topics;
pub mod wire;

pub use config::{KafkaConfig, Mode, Topics};
pub use health::Health;
pub use metrics::ServiceMetrics;
pub use mock::EmbeddedCluster;
pub use service::{RunReport, Service, ServiceError};
