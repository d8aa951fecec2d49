//! The output records one input record causes, keyed and encoded deterministically: the same
//! input always gives byte-identical records, so a redelivery downstream is an exact copy.

use omnistitch_codec::datum::OutputKind;
use omnistitch_codec::FastEncoder;
use omnistitch_engine::records::merge_records;
use omnistitch_engine::Applied;
use omnistitch_identity::{Profile, TenantGraph};
use omnistitch_model::{Event, IdentifierKind, ProfileId, Tenant};
use omnistitch_moments::Intervention;
use rdkafka::message::{Header, OwnedHeaders};
use thiserror::Error;

use crate::changelog::{ChangelogBatch, ClockEntry, SnapshotPart};
use crate::registry::OutputSchemas;
use crate::wire::write_confluent;

/// Where an output record goes (in this order, an index into per-destination tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Timeline entries.
    Timeline,
    /// Profiles (compacted).
    Profiles,
    /// Profile merges.
    Merges,
    /// Interventions.
    Interventions,
    /// Dead letters.
    DeadLetter,
    /// The changelog (partition = shard).
    Changelog,
}

impl Dest {
    /// How many destinations there are: the length of per-destination tables.
    pub const COUNT: usize = Dest::Changelog as usize + 1;
}

/// One record to produce; its bytes live in the [`OutBatch`] that holds it.
#[derive(Debug)]
pub struct OutRecord {
    /// Topic role.
    pub dest: Dest,
    key: (usize, usize),
    value: Option<(usize, usize)>,
    /// Explicit partition (changelog), else the partitioner's choice by key.
    pub partition: Option<i32>,
    /// Headers (dead letters).
    pub headers: Option<OwnedHeaders>,
    /// No key at all (the dead letter of a record without one), not an empty one.
    keyless: bool,
}

impl OutRecord {
    /// Whether the record has a key (its bytes may be empty); a dead letter of a record
    /// without a key has none either.
    pub fn has_key(&self) -> bool {
        !self.keyless
    }
}

/// Most bytes of record buffer a batch keeps between rounds: a round's usual records, not the
/// largest round's. Every shard has two batches (one per thread), each holding its records
/// until the commit.
pub const KEPT_BUFFER_BYTES: usize = 1 << 20;

/// The output records of a round, their keys and values in one reused buffer.
#[derive(Debug, Default)]
pub struct OutBatch {
    bytes: Vec<u8>,
    records: Vec<OutRecord>,
}

impl OutBatch {
    /// Appends a record whose key and value `write_key` and `write_value` append to the buffer
    /// (`write_value` returning `false`: a tombstone).
    fn push(
        &mut self,
        dest: Dest,
        partition: Option<i32>,
        write_key: impl FnOnce(&mut Vec<u8>),
        write_value: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        let k0 = self.bytes.len();
        write_key(&mut self.bytes);
        let v0 = self.bytes.len();
        let value = write_value(&mut self.bytes).then_some((v0, self.bytes.len()));
        self.records.push(OutRecord { dest, key: (k0, v0), value, partition, headers: None, keyless: false });
    }

    /// The records with their keys and values (`None`: tombstone), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&OutRecord, &[u8], Option<&[u8]>)> {
        self.iter_from(0)
    }

    /// The records from the `from`th on (none when there are fewer), as [`OutBatch::iter`].
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = (&OutRecord, &[u8], Option<&[u8]>)> {
        let records = self.records.get(from..).unwrap_or_default();
        records.iter().map(|r| (r, &self.bytes[r.key.0..r.key.1], r.value.map(|(a, b)| &self.bytes[a..b])))
    }

    /// Bytes of keys and values held.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets every record, keeping the buffers up to [`KEPT_BUFFER_BYTES`] (a catch-up
    /// round's records must not stay allocated for the life of the shard).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
        if self.bytes.capacity() > KEPT_BUFFER_BYTES {
            self.bytes.shrink_to(KEPT_BUFFER_BYTES);
        }
        let kept_records = KEPT_BUFFER_BYTES / 64;
        if self.records.capacity() > kept_records {
            self.records.shrink_to(kept_records);
        }
    }
}

/// An output record that could not be encoded: a defect, not bad input.
#[derive(Debug, Error)]
#[error("encoding a {what} record: {message}")]
pub struct EncodeError {
    what: &'static str,
    message: String,
}

impl EncodeError {
    /// An error encoding `what`.
    pub fn new(what: &'static str, error: impl std::fmt::Display) -> Self {
        EncodeError { what, message: error.to_string() }
    }
}

/// Where a dead-lettered record came from and why it was refused.
#[derive(Debug)]
pub struct Refusal<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Stable reason code.
    pub code: &'static str,
    /// Human-readable reason.
    pub reason: &'a str,
    /// The input record's own headers.
    pub headers: &'a [RecordHeader],
}

/// A record header as read: name, value.
pub type RecordHeader = (Box<str>, Option<Box<[u8]>>);

/// Prefix of a dead letter's copies of the input record's own headers.
pub const ORIGINAL_HEADER_PREFIX: &str = "omnistitch.original.";

/// Builds output records.
pub struct OutputWriter {
    fast: FastEncoder,
    ids: OutputSchemas,
}

impl OutputWriter {
    /// A writer framing records with `ids`.
    pub fn new(ids: OutputSchemas) -> Self {
        OutputWriter { fast: FastEncoder::new(), ids }
    }

    /// Records of an applied event: timeline entry, and merges (with a tombstone per absorbed
    /// profile); nothing for a redelivery. The event goes to the changelog in a batch
    /// ([`OutputWriter::changelog`]); the profile's new state is written by
    /// [`OutputWriter::profile`] once per commit.
    pub fn applied(&mut self, event: &Event, applied: &Applied, out: &mut OutBatch) {
        let Some(profile) = applied.profile else { return };
        let mut text = [0; ProfileId::TEXT_LEN];
        let (pid, fast, id) = (profile.text(&mut text), &self.fast, self.ids.id(OutputKind::TimelineEntry));
        out.push(
            Dest::Timeline,
            None,
            |b| b.extend_from_slice(pid.as_bytes()),
            |b| {
                write_confluent_header(id, b);
                fast.timeline(
                    pid,
                    (&applied.thread_id, applied.absorbed_thread.as_deref()),
                    event,
                    &applied.identifiers,
                    b,
                );
                true
            },
        );
        let merge_id = self.ids.id(OutputKind::ProfileMerge);
        for m in merge_records(event, applied) {
            let absorbed = m.absorbed_id.as_bytes();
            out.push(
                Dest::Merges,
                None,
                |b| b.extend_from_slice(absorbed),
                |b| {
                    write_confluent_header(merge_id, b);
                    fast.merge(&m, b);
                    true
                },
            );
            out.push(Dest::Profiles, None, |b| b.extend_from_slice(absorbed), |_| false);
        }
    }

    /// The changelog record of shard `shard`'s `batch` (nothing if empty); empties the batch.
    pub fn changelog(&self, shard: i32, batch: &mut ChangelogBatch, out: &mut OutBatch) {
        let Some(key) = batch.key() else { return };
        out.push(
            Dest::Changelog,
            Some(shard),
            |b| b.extend_from_slice(&key),
            |b| {
                batch.write_value(b);
                true
            },
        );
    }

    /// A tombstone for changelog record `key` of shard `shard` (obsolete: before a committed
    /// snapshot).
    pub fn changelog_tombstone(&self, shard: i32, key: &[u8], out: &mut OutBatch) {
        out.push(Dest::Changelog, Some(shard), |b| b.extend_from_slice(key), |_| false);
    }

    /// The changelog record of a part of a snapshot of shard `shard`.
    pub fn snapshot_part(&self, shard: i32, part: &SnapshotPart<'_>, out: &mut OutBatch) {
        out.push(
            Dest::Changelog,
            Some(shard),
            |b| b.extend_from_slice(&part.key()),
            |b| {
                part.write_value(b);
                true
            },
        );
    }

    /// The changelog record of a quiet tenant's clock move in shard `shard`.
    pub fn clock(&self, shard: i32, clock: &ClockEntry<'_>, out: &mut OutBatch) {
        out.push(
            Dest::Changelog,
            Some(shard),
            |b| b.extend_from_slice(&clock.key()),
            |b| {
                clock.write_value(b);
                true
            },
        );
    }

    /// The current state of profile `p` of `tenant` (compacted topic, key = profile id), cut to
    /// fit `max_bytes` (the producer's `message.max.bytes`): a profile holding more than fits
    /// (the rules keep up to a thousand of its newest cases, chat sessions and calls, ids up to
    /// 512 bytes) would otherwise be refused by the producer every time its batch is retried. Its conversation ids go first
    /// (the last in the record's order first), then the ids of profiles it absorbed (the
    /// latest first): the same state always gives the same record. Returns whether it was cut.
    pub fn profile(
        &mut self,
        tenant: &Tenant,
        graph: &TenantGraph,
        p: &Profile,
        max_bytes: usize,
        out: &mut OutBatch,
    ) -> bool {
        let mut text = [0; ProfileId::TEXT_LEN];
        let mut identifiers = graph.identifier_refs(p);
        let mut merged_from = &p.merged_from[..];
        // Upper bounds of the encoded sizes: the record's fixed fields and framing, an
        // identifier (kind, length, value), an absorbed profile's id (length, text).
        let room = max_bytes.saturating_sub(DEAD_LETTER_FRAMING_BYTES + ProfileId::TEXT_LEN);
        let id_bytes = |value: &str| value.len() + 4;
        let merged_bytes = ProfileId::TEXT_LEN + 2;
        let mut size = tenant.as_str().len()
            + PROFILE_FIXED_BYTES
            + identifiers.iter().map(|(_, v)| id_bytes(v)).sum::<usize>()
            + merged_from.len() * merged_bytes;
        let cut = size > room;
        if cut {
            let mut i = identifiers.len();
            while size > room && i > 0 {
                i -= 1;
                if matches!(identifiers[i].0, IdentifierKind::Case | IdentifierKind::ChatSession | IdentifierKind::Call)
                {
                    size -= id_bytes(identifiers.remove(i).1);
                }
            }
            while size > room && !merged_from.is_empty() {
                merged_from = &merged_from[..merged_from.len() - 1];
                size -= merged_bytes;
            }
        }
        let (pid, fast, id) = (p.id.text(&mut text), &self.fast, self.ids.id(OutputKind::Profile));
        out.push(
            Dest::Profiles,
            None,
            |b| b.extend_from_slice(pid.as_bytes()),
            |b| {
                write_confluent_header(id, b);
                fast.profile(
                    tenant.as_str(),
                    pid,
                    identifiers.iter().copied(),
                    merged_from.iter(),
                    p.first_seen.0,
                    p.last_seen.0,
                    p.event_count as i64,
                    b,
                );
                true
            },
        );
        cut
    }

    /// Records of the interventions of a step.
    pub fn interventions(&self, interventions: &[Intervention], out: &mut OutBatch) {
        let (fast, id) = (&self.fast, self.ids.id(OutputKind::Intervention));
        for i in interventions {
            out.push(
                Dest::Interventions,
                None,
                |b| b.extend_from_slice(i.profile_id.as_bytes()),
                |b| {
                    write_confluent_header(id, b);
                    fast.intervention(i, b);
                    true
                },
            );
        }
    }

    /// A dead letter: the original key and bytes, the reason and origin in headers; cut to
    /// fit `max_bytes` (the producer's `message.max.bytes`) with its framing, the original size
    /// in header `omnistitch.payload.original.bytes` when cut. (An input near the limit would
    /// otherwise give a dead letter the producer refuses, every time the batch is retried.)
    pub fn dead_letter(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        why: &Refusal<'_>,
        max_bytes: usize,
        out: &mut OutBatch,
    ) {
        let reason = cut_at_char(why.reason, MAX_REASON_BYTES);
        let mut fields = vec![
            ("omnistitch.source.topic", why.topic.to_string()),
            ("omnistitch.source.partition", why.partition.to_string()),
            ("omnistitch.source.offset", why.offset.to_string()),
            ("omnistitch.reason.code", why.code.to_string()),
            ("omnistitch.reason", reason.to_string()),
        ];
        // The input's own headers go along, prefixed, unless they are too big to (then how
        // many were left out says so).
        let original_bytes: usize = why
            .headers
            .iter()
            .map(|(k, v)| ORIGINAL_HEADER_PREFIX.len() + k.len() + v.as_ref().map_or(0, |v| v.len()) + 10)
            .sum();
        let originals = if original_bytes <= MAX_ORIGINAL_HEADER_BYTES {
            why.headers
        } else {
            fields.push(("omnistitch.headers.omitted", why.headers.len().to_string()));
            &[]
        };
        let header_bytes = |fields: &[(&str, String)]| {
            fields.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>()
                + if originals.is_empty() { 0 } else { original_bytes }
        };
        let keyless = key.is_none();
        let (key, value) = (key.unwrap_or_default(), value);
        let whole = key.len() + value.map_or(0, <[u8]>::len);
        // Room for the original header too, should it be needed.
        let room = max_bytes.saturating_sub(DEAD_LETTER_FRAMING_BYTES + header_bytes(&fields) + 64);
        let (key, value) = if whole > room {
            fields.push(("omnistitch.payload.original.bytes", whole.to_string()));
            let key = &key[..key.len().min(room)];
            let left = room - key.len();
            (key, value.map(|v| &v[..v.len().min(left)]))
        } else {
            (key, value)
        };
        let headers = fields.iter().fold(OwnedHeaders::new_with_capacity(fields.len()), |h, (k, v)| {
            h.insert(Header { key: k, value: Some(v.as_str()) })
        });
        let headers = originals.iter().fold(headers, |h, (k, v)| {
            h.insert(Header { key: &format!("{ORIGINAL_HEADER_PREFIX}{k}"), value: v.as_deref() })
        });
        out.push(
            Dest::DeadLetter,
            None,
            |b| b.extend_from_slice(key),
            |b| match value {
                Some(v) => {
                    b.extend_from_slice(v);
                    true
                }
                None => false,
            },
        );
        if let Some(r) = out.records.last_mut() {
            r.headers = Some(headers);
            r.keyless = keyless;
        }
    }
}

/// What a dead letter leaves of `message.max.bytes` for the record and batch framing.
const DEAD_LETTER_FRAMING_BYTES: usize = 1_024;
/// Most bytes a profile record's fields other than its tenant, identifiers and absorbed
/// profiles take: its id, times, count, array counts and schema id.
const PROFILE_FIXED_BYTES: usize = 128;
/// Longest reason text a dead letter carries (a decoder's message can quote the record).
const MAX_REASON_BYTES: usize = 1_024;
/// Most bytes of the input's own headers a dead letter copies (more are left out, counted).
const MAX_ORIGINAL_HEADER_BYTES: usize = 16 * 1_024;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends the Confluent framing header (magic byte, schema id).
fn write_confluent_header(schema_id: u32, out: &mut Vec<u8>) {
    write_confluent(schema_id, &[], out);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use omnistitch_model::{Channel, Direction, EventKind, EventTime, RawIdentifier};
    use rdkafka::message::Headers;

    /// Inbound chat message `i` of tenant `acme` from jo@mailbox.io, at `i` ms past a fixed time.
    pub(crate) fn inbound_chat(i: i64) -> Event {
        let mut e = Event::new(
            Tenant::new("acme"),
            format!("e{i}"),
            EventTime(1_767_571_200_000 + i),
            Channel::Chat,
            Direction::Inbound,
            EventKind::Message,
        );
        e.identifiers.push(RawIdentifier::new(IdentifierKind::Email, "jo@mailbox.io"));
        e
    }

    /// A profile holding more than a record can carry is cut to fit, its email kept; one that
    /// fits is written whole.
    #[test]
    fn a_profile_record_too_large_for_the_producer_is_cut_to_fit() {
        use omnistitch_engine::{Engine, EngineConfig};
        let cfg = EngineConfig::default();
        let (normalizer, rules) = cfg.validate().unwrap();
        let mut engine = Engine::new(normalizer, rules, cfg.timeline.clone());
        let tenant = Tenant::new("acme");
        let mut profile = None;
        for i in 0..600 {
            let mut e = inbound_chat(i);
            e.identifiers.push(RawIdentifier::new(IdentifierKind::ChatSession, format!("{i:0>400}")));
            e.case_id = Some(format!("c{i:0>400}").into());
            profile = engine.apply(&e).profile;
        }
        let (graph, p) =
            (engine.identity().graph(&tenant).unwrap(), engine.identity().profile(&tenant, profile.unwrap()).unwrap());
        let mut writer = OutputWriter::new(OutputSchemas::bundled(&crate::registry::BundledIds::default()));
        let whole = {
            let mut out = OutBatch::default();
            assert!(!writer.profile(&tenant, graph, p, 10_000_000, &mut out), "fits");
            let len = out.iter().next().map(|(_, _, v)| v.unwrap().len()).unwrap();
            len
        };
        assert!(whole > 200_000, "{whole} bytes");
        let max = 100_000;
        let mut out = OutBatch::default();
        assert!(writer.profile(&tenant, graph, p, max, &mut out), "cut");
        let (_, key, value) = out.iter().next().unwrap();
        let value = value.unwrap();
        assert!(key.len() + value.len() + DEAD_LETTER_FRAMING_BYTES <= max, "{} bytes", value.len());
        assert!(value.len() > max / 2, "cut no more than needed: {} bytes", value.len());
        let email = b"jo@mailbox.io";
        assert!(value.windows(email.len()).any(|w| w == email), "the email is kept");
        // The same state, the same record.
        let mut again = OutBatch::default();
        writer.profile(&tenant, graph, p, max, &mut again);
        assert_eq!(again.iter().next().unwrap().2, Some(value));
    }

    fn refusal(reason: &str) -> Refusal<'_> {
        Refusal { topic: "cx.chat.v1", partition: 3, offset: 42, code: "oversized_field", reason, headers: &[] }
    }

    /// The dead letter of `value` under `max_bytes`: key, value and headers.
    #[test]
    fn a_cleared_batch_keeps_a_usual_round_s_buffers_not_the_largest() {
        let mut out = OutBatch::default();
        for _ in 0..2 {
            for i in 0..100_000u32 {
                out.push(
                    Dest::Timeline,
                    None,
                    |k| k.extend_from_slice(&i.to_le_bytes()),
                    |v| {
                        v.extend_from_slice(&[0; 100]);
                        true
                    },
                );
            }
            assert_eq!(out.len(), 100_000);
            out.clear();
            assert!(out.is_empty() && out.iter().next().is_none());
            assert!(out.bytes.capacity() <= KEPT_BUFFER_BYTES, "{}", out.bytes.capacity());
            assert!(out.records.capacity() * std::mem::size_of::<OutRecord>() <= 2 * KEPT_BUFFER_BYTES);
        }
    }

    fn dead_letter(
        key: &[u8],
        value: &[u8],
        reason: &str,
        max_bytes: usize,
    ) -> (Vec<u8>, Vec<u8>, Vec<(String, String)>) {
        let writer = OutputWriter::new(OutputSchemas::bundled(&crate::registry::BundledIds::default()));
        let mut out = OutBatch::default();
        writer.dead_letter(Some(key), Some(value), &refusal(reason), max_bytes, &mut out);
        let (r, k, v) = out.iter().next().unwrap();
        let headers = r.headers.as_ref().unwrap();
        let headers = headers
            .iter()
            .map(|h| (h.key.to_string(), String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap()))
            .collect();
        (k.to_vec(), v.unwrap().to_vec(), headers)
    }

    /// The dead letter of a record without a key has no key either (an empty key is another
    /// key); one with an empty key keeps it.
    #[test]
    fn a_keyless_record_gives_a_keyless_dead_letter() {
        let writer = OutputWriter::new(OutputSchemas::bundled(&crate::registry::BundledIds::default()));
        let mut out = OutBatch::default();
        writer.dead_letter(None, Some(b"x"), &refusal("r"), 1_000_000, &mut out);
        writer.dead_letter(Some(b""), Some(b"x"), &refusal("r"), 1_000_000, &mut out);
        let keyed: Vec<bool> = out.iter().map(|(r, _, _)| r.has_key()).collect();
        assert_eq!(keyed, [false, true]);
    }

    fn header<'a>(headers: &'a [(String, String)], key: &str) -> Option<&'a str> {
        headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_dead_letter_keeps_the_original_bytes_when_they_fit() {
        let (k, v, h) = dead_letter(b"acme", b"\x00\x00\x00\x00\x07bad", "truncated", 1_000_000);
        assert_eq!((k.as_slice(), v.as_slice()), (&b"acme"[..], &b"\x00\x00\x00\x00\x07bad"[..]));
        assert_eq!(header(&h, "omnistitch.source.offset"), Some("42"));
        assert_eq!(header(&h, "omnistitch.reason.code"), Some("oversized_field"));
        assert_eq!(header(&h, "omnistitch.payload.original.bytes"), None);
    }

    #[test]
    fn a_dead_letter_near_the_size_limit_is_cut_to_fit_and_says_so() {
        let max = 1_000_000;
        let value = vec![7u8; max - 10];
        let reason = "é".repeat(2_000);
        let (k, v, h) = dead_letter(b"acme", &value, &reason, max);
        let headers: usize = h.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
        assert!(k.len() + v.len() + headers + DEAD_LETTER_FRAMING_BYTES <= max, "{} bytes", v.len());
        assert_eq!(k, b"acme");
        assert!(v.len() > max - 4_000 && value.starts_with(&v));
        assert_eq!(header(&h, "omnistitch.payload.original.bytes"), Some((value.len() + 4).to_string().as_str()));
        let reason = header(&h, "omnistitch.reason").unwrap();
        assert!(reason.len() <= MAX_REASON_BYTES && reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_dead_letter_carries_the_input_s_own_headers_unless_they_are_too_big() {
        let writer = OutputWriter::new(OutputSchemas::bundled(&crate::registry::BundledIds::default()));
        let headers_of = |originals: &[RecordHeader]| {
            let mut out = OutBatch::default();
            let why = Refusal { headers: originals, ..refusal("truncated") };
            writer.dead_letter(Some(b"k"), Some(b"v"), &why, 1_000_000, &mut out);
            let (r, _, _) = out.iter().next().unwrap();
            let h = r.headers.as_ref().unwrap();
            h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect::<Vec<_>>()
        };
        let originals: Vec<RecordHeader> =
            vec![("traceparent".into(), Some(b"00-ab-cd-01"[..].into())), ("flag".into(), None)];
        let h = headers_of(&originals);
        assert!(h.contains(&("omnistitch.original.traceparent".into(), Some(b"00-ab-cd-01".to_vec()))), "{h:?}");
        assert!(h.contains(&("omnistitch.original.flag".into(), None)), "{h:?}");
        assert!(h.iter().any(|(k, _)| k == "omnistitch.reason.code"));
        let big: Vec<RecordHeader> = vec![("blob".into(), Some(vec![1u8; 20_000].into()))];
        let h = headers_of(&big);
        assert!(!h.iter().any(|(k, _)| k == "omnistitch.original.blob"), "too big to copy");
        assert!(h.contains(&("omnistitch.headers.omitted".into(), Some(b"1".to_vec()))), "{h:?}");
    }
}
