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

/// Postcard's output into a vector, a slice copied at once (postcard's own vector output
/// extends it a byte at a time).
struct Output(Vec<u8>);

impl postcard::ser_flavors::Flavor for Output {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// `value` as a snapshot holding `holds`.
pub(crate) fn seal<T: Serialize + ?Sized>(holds: Holds, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 4096);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.push(holds as u8);
    // Writing to a vector fails only on a value serde cannot write (none of the state's types).
    postcard::serialize_with_flavor(value, Output(out)).expect("the state serializes")
}

/// A snapshot inside another one, as bytes (written at once, where serde's default for a
/// slice writes a sequence of single bytes: the same bytes in postcard).
pub(crate) mod nested {
    use serde::{de, Deserializer, Serializer};

    /// Writes `bytes`.
    pub(crate) fn serialize<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    /// Reads bytes written by [`serialize`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a snapshot's bytes")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct AsSequence<'a> {
        engine: &'a [u8],
        n: u32,
        name: &'a str,
    }

    #[derive(serde::Serialize)]
    struct AsBytes<'a> {
        #[serde(with = "nested")]
        engine: &'a [u8],
        n: u32,
        name: &'a str,
    }

    #[derive(serde::Deserialize)]
    struct Back {
        #[serde(with = "nested")]
        engine: Vec<u8>,
        n: u32,
        name: String,
    }

    #[test]
    fn the_bytes_are_postcards_and_a_nested_snapshot_reads_as_before() {
        let inner: Vec<u8> = (0..=255).chain(0..40).collect();
        let name = "x".repeat(300);
        let sequence = AsSequence { engine: &inner, n: 70_000, name: &name };
        let written = seal(Holds::Pipeline, &sequence);
        assert_eq!(&written[HEADER..], postcard::to_stdvec(&sequence).unwrap(), "postcard's own bytes");
        let bytes = seal(Holds::Pipeline, &AsBytes { engine: &inner, n: 70_000, name: &name });
        assert_eq!(bytes, written, "written at once, the same bytes as a sequence");
        let back: Back = open(Holds::Pipeline, &written).unwrap();
        assert_eq!((back.engine, back.n, back.name), (inner, 70_000, name));
    }
}
