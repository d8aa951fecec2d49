//! Snapshots: a stage's state as bytes, read back into a stage that goes on exactly as the
//! original would have (the same outputs for the same events after it).
//!
//! A snapshot is a header (the magic `OSNP`, a format version, what it holds) and a body in
//! postcard, a compact serde format. Configuration is not state: a snapshot is read back under
//! the configuration in force, and the state built under the one before stays as it was built.
//! A version that changes the state's layout writes a new format version and keeps reading the
//! formats before it; one it does not know is refused ([`SnapshotError::Format`]), so that the
//! caller rebuilds the state another way.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::config::ConfigError;

/// First bytes of every snapshot.
const MAGIC: [u8; 4] = *b"OSNP";

/// The format this version writes and reads.
pub const FORMAT: u16 = 1;

/// Header: magic, format, what it holds.
const HEADER: usize = 4 + 2 + 1;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holds {
    /// An [`Engine`](crate::Engine): identity graphs, timelines, deduplication digests.
    Engine = 1,
    /// The [`Ordered`](crate::Ordered) stages: reorder buffer, moments detector, CX metrics.
    Ordered = 2,
    /// A whole [`Pipeline`](crate::Pipeline).
    Pipeline = 3,
}

/// Why a snapshot could not be read back.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The bytes do not start as a snapshot does.
    #[error("not a snapshot")]
    NotASnapshot,
    /// Written in a format this version does not read.
    #[error("snapshot format {found}: this version reads format {FORMAT}")]
    Format {
        /// The format found.
        found: u16,
    },
    /// A snapshot of another stage.
    #[error("a snapshot of another stage ({found}, expected {expected})")]
    Stage {
        /// What it holds.
        found: u8,
        /// What the caller reads.
        expected: u8,
    },
    /// The body does not decode into a consistent state.
    #[error("snapshot body unreadable: {0}")]
    Body(String),
    /// The configuration it is read under is refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// `value` as a snapshot holding `holds`.
pub(crate) fn seal<T: Serialize + ?Sized>(holds: Holds, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 4096);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.push(holds as u8);
    // Writing to a vector fails only on a value serde cannot write (none of the state's types).
    postcard::to_extend(value, out).expect("the state serializes")
}

/// The value of a snapshot sealed with `holds`.
pub(crate) fn open<T: DeserializeOwned>(holds: Holds, bytes: &[u8]) -> Result<T, SnapshotError> {
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let found = u16::from_be_bytes([bytes[4], bytes[5]]);
    if found != FORMAT {
        return Err(SnapshotError::Format { found });
    }
    if bytes[6] != holds as u8 {
        return Err(SnapshotError::Stage { found: bytes[6], expected: holds as u8 });
    }
    match postcard::take_from_bytes::<T>(&bytes[HEADER..]) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(SnapshotError::Body(format!("{} bytes after the state", rest.len()))),
        Err(e) => Err(SnapshotError::Body(e.to_string())),
    }
}
