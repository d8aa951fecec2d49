//! Decoding errors, each with a stable code for dead letters and metrics.

use thiserror::Error;

/// Why bytes could not become a wire event.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The bytes do not decode with the record's schema (truncated, wrong types, bad UTF-8).
    #[error("avro decode failed: {0}")]
    Avro(String),
    /// The line is not a JSON object of the channel's schema.
    #[error("json decode failed: {0}")]
    Json(String),
    /// The schema is not one of the input schemas.
    #[error("unknown input schema `{0}`")]
    UnknownSchema(String),
    /// A container file's framing is broken; the rest of the block or file is unreadable.
    #[error("avro container corrupt: {0}")]
    Container(String),
    /// A container file compressed with a codec this build does not read.
    #[error("unsupported container codec `{0}` (null, deflate and snappy are read)")]
    UnsupportedCodec(String),
    /// Reading the source failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl DecodeError {
    /// Stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Avro(_) => "avro_decode",
            DecodeError::Json(_) => "json_decode",
            DecodeError::UnknownSchema(_) => "unknown_schema",
            DecodeError::Container(_) => "container_corrupt",
            DecodeError::UnsupportedCodec(_) => "unsupported_codec",
            DecodeError::Io(_) => "io",
        }
    }
}
