//! The changelog: the state of a shard, as the events it accepted, in the order it applied them.
//!
//! The engine is deterministic: its state after a sequence of events is a function of that
//! sequence. So the changelog records each accepted event (the bundled-schema Avro datum) with
//! the input position it came from, in the same transaction as the outputs it caused and the
//! input offsets. Restoring a shard applies, in changelog order, exactly the events whose input
//! position is below the group's committed offset: the state as of that commit, whatever
//! crashed after it. Keys are `tenant NUL event id`, so compaction keeps one copy of an event
//! that was processed twice around a crash.

use omnistitch_model::Channel;
use thiserror::Error;

/// Format version of changelog values.
const VERSION: u8 = 1;
/// version, channel, source offset.
const HEADER: usize = 1 + 1 + 8;

/// A changelog record that cannot be read.
#[derive(Debug, Error, PartialEq)]
pub enum ChangelogError {
    /// Too short, or an unknown version or channel.
    #[error("changelog record unreadable: {0}")]
    Malformed(&'static str),
}

/// One accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangelogEntry<'a> {
    /// Input channel (which input topic).
    pub channel: Channel,
    /// Offset of the input record in its partition (the shard's partition of that topic).
    pub source_offset: i64,
    /// The event as an Avro datum of the bundled input schema.
    pub datum: &'a [u8],
}

/// Appends the record key: `tenant NUL event id`.
pub fn key(tenant: &str, event_id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(tenant.as_bytes());
    out.push(0);
    out.extend_from_slice(event_id.as_bytes());
}

/// Appends an entry, encoded as a record value.
pub fn encode(entry: &ChangelogEntry<'_>, out: &mut Vec<u8>) {
    out.reserve(HEADER + entry.datum.len());
    out.push(VERSION);
    out.push(entry.channel as u8);
    out.extend_from_slice(&entry.source_offset.to_be_bytes());
    out.extend_from_slice(entry.datum);
}

/// Decodes a record value.
pub fn decode(value: &[u8]) -> Result<ChangelogEntry<'_>, ChangelogError> {
    if value.len() < HEADER {
        return Err(ChangelogError::Malformed("shorter than its header"));
    }
    if value[0] != VERSION {
        return Err(ChangelogError::Malformed("unknown version"));
    }
    let channel = *Channel::ALL.get(value[1] as usize).ok_or(ChangelogError::Malformed("unknown channel"))?;
    let source_offset = i64::from_be_bytes(value[2..10].try_into().expect("8 bytes"));
    Ok(ChangelogEntry { channel, source_offset, datum: &value[HEADER..] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for channel in Channel::ALL {
            let e = ChangelogEntry { channel, source_offset: 1 << 40, datum: b"\x02ab" };
            let mut buf = Vec::new();
            encode(&e, &mut buf);
            assert_eq!(decode(&buf), Ok(e));
        }
    }

    #[test]
    fn damaged_values_are_errors() {
        assert!(decode(b"").is_err());
        assert!(decode(&[VERSION, 0, 0]).is_err());
        assert_eq!(decode(&[9; 12]), Err(ChangelogError::Malformed("unknown version")));
        assert_eq!(decode(&[VERSION, 7, 0, 0, 0, 0, 0, 0, 0, 0]), Err(ChangelogError::Malformed("unknown channel")));
    }

    #[test]
    fn keys_separate_tenant_and_event() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key("ab", "c", &mut a);
        key("a", "bc", &mut b);
        assert_ne!(a, b);
    }
}
