//! Errors of the simulator: a bad config, or a world that could not be written or read.

use std::path::PathBuf;

use thiserror::Error;

/// Why a world could not be generated, written or read.
#[derive(Debug, Error)]
pub enum SimError {
    /// A config field is out of range; `key` names it (`hard_cases.junk`).
    #[error("invalid simulator config `{key}`: {reason}")]
    InvalidConfig {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be created, written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An Avro container could not be written.
    #[error("{path}: writing Avro failed: {message}")]
    Avro {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
    /// A line of `truth.jsonl` or `moments_truth.jsonl` is not a record of its kind.
    #[error("{path}:{line}: {source}")]
    Truth {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
}
