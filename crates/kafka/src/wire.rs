//! Record framing: how an Avro datum sits in a Kafka record value, and why a record is refused.
//!
//! Two framings are read: the Confluent wire format (`0x00`, 4-byte big-endian schema id,
//! datum) and Avro single-object encoding (`0xC3 0x01`, 8-byte little-endian CRC-64-AVRO
//! fingerprint of the writer schema's parsing canonical form, datum). Outputs are written in the
//! Confluent format. Every refusal is a [`WireError`] with a stable [`WireError::code`] for the
//! dead-letter headers and metrics; [`WireError::is_retriable`] marks the infrastructure
//! failures (an unreachable registry) that must be retried, never dead-lettered.

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use omnistitch_codec::DecodeError;
use omnistitch_model::Channel;
use thiserror::Error;

/// First byte of a Confluent-framed value.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// Length of the Confluent header: magic byte and schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;
/// First two bytes of an Avro single-object encoded value.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the single-object header: magic bytes and fingerprint.
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// How a record value names its writer schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Confluent wire format: a schema registry id.
    Confluent {
        /// The writer schema's id in the registry (or in the bundled ids).
        schema_id: u32,
    },
    /// Avro single-object encoding: a schema fingerprint.
    SingleObject {
        /// CRC-64-AVRO (Rabin) fingerprint of the writer schema's parsing canonical form.
        fingerprint: u64,
    },
}

/// Why a record value could not become a wire event, or why schemas could not be resolved.
#[derive(Debug, Error)]
pub enum WireError {
    /// The record has no value, or an empty one.
    #[error("empty record value")]
    EmptyRecord,
    /// The value starts with neither the Confluent nor the single-object magic.
    #[error("unknown framing: value starts with {0}")]
    BadMagic(String),
    /// The value is shorter than the header its magic announces.
    #[error("{frame} header needs {needed} bytes, the value has {len}")]
    TruncatedFrame {
        /// Which framing the magic announced.
        frame: &'static str,
        /// Header length.
        needed: usize,
        /// Value length.
        len: usize,
    },
    /// The schema id is neither in the registry nor among the bundled ids.
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    /// No known writer schema has this fingerprint.
    #[error("unknown writer schema fingerprint {0:#018x}")]
    UnknownFingerprint(u64),
    /// The writer schema is not (a version of) the input record of the topic's channel.
    #[error("writer schema `{schema}` is not the {channel} input record")]
    SchemaMismatch {
        /// The topic's channel.
        channel: Channel,
        /// Full name (or kind) of the writer schema.
        schema: String,
    },
    /// The registry's schema for an id cannot be used (not Avro, does not parse, unresolvable).
    #[error("schema id {id} is unusable: {reason}")]
    InvalidSchema {
        /// The schema id.
        id: u32,
        /// Why.
        reason: String,
    },
    /// The datum does not decode with its writer schema.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The schema registry could not answer (network, timeout, 5xx, unexpected reply): retry,
    /// never dead-letter, the record may well be good.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    /// The schema registry refused a request that retrying will not fix (e.g. registering an
    /// incompatible schema).
    #[error("schema registry refused ({status}): {message}")]
    RegistryRejected {
        /// HTTP status.
        status: u16,
        /// The registry's message.
        message: String,
    },
    /// The registry settings are unusable (URL, subjects).
    #[error("schema registry settings: {0}")]
    RegistryConfig(String),
}

impl WireError {
    /// Stable machine-readable reason (dead-letter header, metric label); decode failures keep
    /// the codec's more specific code (e.g. `avro_decode`).
    pub fn code(&self) -> &'static str {
        match self {
            WireError::EmptyRecord => "empty_record",
            WireError::BadMagic(_) => "bad_magic",
            WireError::TruncatedFrame { .. } => "truncated_frame",
            WireError::UnknownSchemaId(_) => "unknown_schema_id",
            WireError::UnknownFingerprint(_) => "unknown_fingerprint",
            WireError::SchemaMismatch { .. } => "schema_mismatch",
            WireError::InvalidSchema { .. } => "invalid_schema",
            WireError::Decode(e) => e.code(),
            WireError::RegistryUnavailable(_) => "registry_unavailable",
            WireError::RegistryRejected { .. } => "registry_rejected",
            WireError::RegistryConfig(_) => "registry_config",
        }
    }

    /// Whether the failure is the infrastructure's, not the record's: retry the record later
    /// instead of dead-lettering it.
    pub fn is_retriable(&self) -> bool {
        matches!(self, WireError::RegistryUnavailable(_))
    }
}

/// Splits a record value into its framing and the Avro datum after it.
pub fn split_frame(value: &[u8]) -> Result<(Frame, &[u8]), WireError> {
    match value {
        [] => Err(WireError::EmptyRecord),
        [CONFLUENT_MAGIC, ..] => {
            let (header, datum) = header::<CONFLUENT_HEADER_LEN>(value, "confluent")?;
            let schema_id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            Ok((Frame::Confluent { schema_id }, datum))
        }
        [0xC3] | [0xC3, 0x01, ..] => {
            let (header, datum) = header::<SINGLE_OBJECT_HEADER_LEN>(value, "single-object")?;
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&header[2..]);
            Ok((Frame::SingleObject { fingerprint: u64::from_le_bytes(fp) }, datum))
        }
        [a, b, ..] => Err(WireError::BadMagic(format!("{a:#04x} {b:#04x}"))),
        [a] => Err(WireError::BadMagic(format!("{a:#04x}"))),
    }
}

/// The first `N` bytes of `value` and the rest.
fn header<'a, const N: usize>(value: &'a [u8], frame: &'static str) -> Result<(&'a [u8; N], &'a [u8]), WireError> {
    match value.split_first_chunk::<N>() {
        Some((header, rest)) => Ok((header, rest)),
        None => Err(WireError::TruncatedFrame { frame, needed: N, len: value.len() }),
    }
}

/// Appends `datum` in the Confluent wire format with `schema_id` to `out`.
pub fn write_confluent(schema_id: u32, datum: &[u8], out: &mut Vec<u8>) {
    out.reserve(CONFLUENT_HEADER_LEN + datum.len());
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
}

/// Appends `datum` in Avro single-object encoding with the writer schema's `fingerprint` to `out`.
pub fn write_single_object(fingerprint: u64, datum: &[u8], out: &mut Vec<u8>) {
    out.reserve(SINGLE_OBJECT_HEADER_LEN + datum.len());
    out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(datum);
}

/// The CRC-64-AVRO (Rabin) fingerprint of `schema`'s parsing canonical form, as single-object
/// encoding carries it.
pub fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut fp = [0u8; 8];
    // Rabin digests are 8 bytes; a shorter one (never seen) leaves zeros rather than panicking.
    for (d, s) in fp.iter_mut().zip(bytes) {
        *d = s;
    }
    u64::from_le_bytes(fp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
    use omnistitch_codec::Contract;
    use proptest::prelude::*;

    #[test]
    fn confluent_frames_round_trip() {
        for id in [0, 1, 9, 0x0102_0304, u32::MAX] {
            for datum in [&b""[..], b"\x02", b"some datum bytes"] {
                let mut out = vec![0xAA];
                write_confluent(id, datum, &mut out);
                assert_eq!(out.len(), 1 + CONFLUENT_HEADER_LEN + datum.len());
                let (frame, rest) = split_frame(&out[1..]).unwrap();
                assert_eq!(frame, Frame::Confluent { schema_id: id });
                assert_eq!(rest, datum);
            }
        }
        let mut out = Vec::new();
        write_confluent(0x0102_0304, b"x", &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, b'x'], "magic, big-endian id, datum");
    }

    #[test]
    fn single_object_frames_round_trip_and_match_apache_avro() {
        for schema in Contract::get().inputs.iter().chain([&Contract::get().intervention]) {
            let fp = fingerprint(schema);
            let mut ours = Vec::new();
            write_single_object(fp, b"datum", &mut ours);
            let theirs = RabinFingerprintHeader::from_schema(schema).build_header();
            assert_eq!(&ours[..SINGLE_OBJECT_HEADER_LEN], &theirs[..], "header as apache-avro writes it");
            let (frame, rest) = split_frame(&ours).unwrap();
            assert_eq!(frame, Frame::SingleObject { fingerprint: fp });
            assert_eq!(rest, b"datum");
        }
        let fps: std::collections::HashSet<u64> = Contract::get().inputs.iter().map(fingerprint).collect();
        assert_eq!(fps.len(), 4, "the four input schemas have distinct fingerprints");
    }

    #[test]
    fn fingerprints_are_crc_64_avro() {
        // Test vectors of the Avro specification's interoperability suite.
        assert_eq!(fingerprint(&Schema::Null), 7_195_948_357_588_979_594);
        assert_eq!(fingerprint(&Schema::Int), 8_247_732_601_305_521_295);
        assert_eq!(fingerprint(&Schema::Boolean) as i64, -6_970_731_678_124_411_036);
    }

    #[test]
    fn bad_frames_are_errors_with_stable_codes() {
        let cases: [(&[u8], &str); 10] = [
            (b"", "empty_record"),
            (b"\x00", "truncated_frame"),
            (b"\x00\x00\x00\x01", "truncated_frame"),
            (b"\xC3", "truncated_frame"),
            (b"\xC3\x01\x01\x02\x03\x04\x05\x06\x07", "truncated_frame"),
            (b"\xC3\x02\x01\x02\x03\x04\x05\x06\x07\x08", "bad_magic"),
            (b"\x01\x00\x00\x00\x01\x02", "bad_magic"),
            (b"{\"tenant\":\"acme\"}", "bad_magic"),
            (b"\xFF", "bad_magic"),
            (b"\x02", "bad_magic"),
        ];
        for (value, code) in cases {
            let e = split_frame(value).unwrap_err();
            assert_eq!(e.code(), code, "{value:02x?}: {e}");
            assert!(!e.is_retriable());
        }
        let e = split_frame(b"\x00\x00\x01").unwrap_err();
        assert_eq!(e.to_string(), "confluent header needs 5 bytes, the value has 3");
        // The shortest complete headers are accepted, with an empty datum.
        assert_eq!(split_frame(&[0; 5]).unwrap(), (Frame::Confluent { schema_id: 0 }, &[][..]));
        let so = [0xC3, 0x01, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(split_frame(&so).unwrap(), (Frame::SingleObject { fingerprint: 1 }, &[][..]));
    }

    #[test]
    fn only_registry_outages_are_retriable_and_codes_are_distinct() {
        let all = [
            WireError::EmptyRecord,
            WireError::BadMagic("0x01".into()),
            WireError::TruncatedFrame { frame: "confluent", needed: 5, len: 1 },
            WireError::UnknownSchemaId(7),
            WireError::UnknownFingerprint(7),
            WireError::SchemaMismatch { channel: Channel::Chat, schema: "x".into() },
            WireError::InvalidSchema { id: 7, reason: "x".into() },
            WireError::Decode(DecodeError::Avro("x".into())),
            WireError::RegistryUnavailable("x".into()),
            WireError::RegistryRejected { status: 409, message: "x".into() },
            WireError::RegistryConfig("x".into()),
        ];
        let codes: std::collections::HashSet<&str> = all.iter().map(WireError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert_eq!(WireError::Decode(DecodeError::Avro("x".into())).code(), "avro_decode");
        let retriable: Vec<&str> = all.iter().filter(|e| e.is_retriable()).map(WireError::code).collect();
        assert_eq!(retriable, ["registry_unavailable"]);
    }

    proptest! {
        /// Any bytes split without panicking; what splits reassembles to the same bytes. Values
        /// start with either framing's magic as often as with anything else.
        #[test]
        fn arbitrary_values_split_or_fail_cleanly(
            prefix in prop_oneof![Just(vec![CONFLUENT_MAGIC]), Just(SINGLE_OBJECT_MAGIC.to_vec()), Just(vec![])],
            tail in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            let value = [prefix, tail].concat();
            match split_frame(&value) {
                Ok((Frame::Confluent { schema_id }, datum)) => {
                    let mut again = Vec::new();
                    write_confluent(schema_id, datum, &mut again);
                    prop_assert_eq!(again, value);
                }
                Ok((Frame::SingleObject { fingerprint }, datum)) => {
                    let mut again = Vec::new();
                    write_single_object(fingerprint, datum, &mut again);
                    prop_assert_eq!(again, value);
                }
                Err(e) => prop_assert!(!e.is_retriable()),
            }
        }
    }
}
