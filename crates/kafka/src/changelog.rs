//! The changelog: the state of a shard, as the events it accepted, in the order it applied them.
//!
//! The engine is deterministic: its state after a sequence of events is a function of that
//! sequence. So the changelog records each accepted event (the bundled-schema Avro datum) with
//! the input position it came from, in the same transaction as the outputs it caused and the
//! input offsets. Restoring a shard applies, in changelog order, exactly the events whose input
//! position is below the group's committed offset: the state as of that commit, whatever
//! crashed after it.
//!
//! Events are written in batches ([`ChangelogBatch`]): one record holds the events a shard
//! applied in a row within one transaction, up to [`BATCH_BYTES`]. A record per event cost a
//! produce, a broker append and a fetch per input record; a batch costs them once. A batch's key
//! names its first and last entries (lane and offset), so a batch reprocessed after a crash with
//! other bounds is another record: restore applies both, and the engine drops the events it
//! has already seen. Records of the first format (one event each) are still read.
//!
//! A tenant whose input is quiet has its event-time clock moved on without an event (so its
//! timers fire on time, `kafka.idle_clock_ms`): in `exactly_once` each such move is a record
//! of its own ([`ClockEntry`]), between the batches of the events applied before and after it,
//! so a restore moves the clock at the same point of the sequence.

use std::sync::OnceLock;

use omnistitch_codec::{Contract, DecodeError, InputDecoder, SchemaDecoder};
use omnistitch_model::wire::{accepted_event_time, MAX_ID_LEN};
use omnistitch_model::{Channel, WireEvent};
use thiserror::Error;

use crate::wire::fingerprint;

/// Format version of single-event values.
const VERSION_SINGLE: u8 = 1;
/// Format version of batch values.
const VERSION_BATCH: u8 = 2;
/// Format version of clock records.
const VERSION_CLOCK: u8 = 3;
/// Format version of batch values that name the input schemas their datums were written with
/// (the fingerprints of the four bundled schemas, in [`Channel::ALL`] order, after the count):
/// a later version, whose bundled schemas differ, still reads them.
const VERSION_BATCH_SCHEMAS: u8 = 4;
/// Format version of snapshot parts.
const VERSION_SNAPSHOT: u8 = 5;
/// version, id, four positions, stage, part, parts.
const SNAPSHOT_HEADER: usize = 1 + 8 + 4 * 8 + 1 + 4 + 4;
/// First key byte of snapshot parts.
const SNAPSHOT_KEY: u8 = 0xfe;
/// Most state bytes in one snapshot part (a record, well under the brokers' message limit).
pub const SNAPSHOT_PART_BYTES: usize = BATCH_BYTES;
/// version, count, four fingerprints.
const BATCH_HEADER: usize = 1 + 4 + 4 * 8;
/// version, time, four positions.
const CLOCK_HEADER: usize = 1 + 8 + 4 * 8;
/// First key byte of clock records (batch keys start with a channel).
const CLOCK_KEY: u8 = 0xff;
/// version, channel, source offset.
const SINGLE_HEADER: usize = 1 + 1 + 8;
/// Per entry in a batch: channel, source offset, datum length.
const ENTRY_HEADER: usize = 1 + 8 + 4;
/// A batch is written out before it would pass this size (well under the brokers' default
/// 1 MiB message limit, and under the least `message.max.bytes` the service accepts).
pub const BATCH_BYTES: usize = 256 * 1024;

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
    /// Read back: the fingerprint of the input schema the datum was written with (`None` for
    /// records of the formats before it was kept: the writing version's bundled schema, not
    /// known). Not written per entry: a batch records the bundled schemas it was written with.
    pub writer: Option<u64>,
}

/// A tenant's event-time clock moved on with no event, after the shard had applied every input
/// record below `position`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockEntry<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Its clock's new time, ms.
    pub time: i64,
    /// Per merge lane, the next input offset the shard would commit (`None`: no record applied
    /// yet on that lane).
    pub position: [Option<i64>; 4],
}

impl ClockEntry<'_> {
    /// The record key: the time and the tenant (unique per move of a tenant).
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(9 + self.tenant.len());
        key.push(CLOCK_KEY);
        key.extend_from_slice(&self.time.to_be_bytes());
        key.extend_from_slice(self.tenant.as_bytes());
        key
    }

    /// Appends the record value to `out`.
    pub fn write_value(&self, out: &mut Vec<u8>) {
        out.push(VERSION_CLOCK);
        out.extend_from_slice(&self.time.to_be_bytes());
        write_position(&self.position, out);
        out.extend_from_slice(self.tenant.as_bytes());
    }

    /// Whether the group's `committed` offsets cover the records applied before the move: the
    /// move was part of a committed transaction (or of work the committed offsets went past).
    pub fn is_committed(&self, committed: &[Option<i64>; 4]) -> bool {
        covered(&self.position, committed)
    }
}

/// Which thread's stages a snapshot part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotStage {
    /// The engine (identity graphs, timelines, deduplication), on the stitching thread.
    Engine = 1,
    /// The ordered stages (reorder buffer, moments, CX), on the ordered thread.
    Ordered = 2,
}

/// A part of a shard's snapshot: its state (each thread's stages written in parts of at most
/// [`SNAPSHOT_PART_BYTES`]) once it had applied every input record below `position`, written
/// in the transaction that commits `position`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPart<'a> {
    /// The snapshot's id (unique per attempt: parts of two attempts never mix).
    pub id: u64,
    /// Per merge lane, the next input offset: what the transaction commits (`None`: no record
    /// applied yet on that lane).
    pub position: [Option<i64>; 4],
    /// Whose stages.
    pub stage: SnapshotStage,
    /// The part's index.
    pub part: u32,
    /// How many parts the stage's state takes.
    pub parts: u32,
    /// Its bytes of the state.
    pub bytes: &'a [u8],
}

impl SnapshotPart<'_> {
    /// The record key: id, stage and part (unique per part).
    pub fn key(&self) -> [u8; 14] {
        let mut key = [0u8; 14];
        key[0] = SNAPSHOT_KEY;
        key[1..9].copy_from_slice(&self.id.to_be_bytes());
        key[9] = self.stage as u8;
        key[10..14].copy_from_slice(&self.part.to_be_bytes());
        key
    }

    /// Appends the record value to `out`.
    pub fn write_value(&self, out: &mut Vec<u8>) {
        out.reserve(SNAPSHOT_HEADER + self.bytes.len());
        out.push(VERSION_SNAPSHOT);
        out.extend_from_slice(&self.id.to_be_bytes());
        write_position(&self.position, out);
        out.push(self.stage as u8);
        out.extend_from_slice(&self.part.to_be_bytes());
        out.extend_from_slice(&self.parts.to_be_bytes());
        out.extend_from_slice(self.bytes);
    }

    /// The parts of `state`, `stage`'s snapshot `id` at `position`.
    pub fn split(id: u64, position: [Option<i64>; 4], stage: SnapshotStage, state: &[u8]) -> Vec<SnapshotPart<'_>> {
        let chunks: Vec<&[u8]> =
            if state.is_empty() { vec![state] } else { state.chunks(SNAPSHOT_PART_BYTES).collect() };
        let parts = u32::try_from(chunks.len()).expect("a state under 2^32 parts");
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| SnapshotPart { id, position, stage, part: i as u32, parts, bytes })
            .collect()
    }
}

/// Whether the group's `committed` offsets cover `position` (every lane's records below it):
/// what was written at `position` was part of committed work.
pub fn covered(position: &[Option<i64>; 4], committed: &[Option<i64>; 4]) -> bool {
    position.iter().zip(committed).all(|(p, c)| match (p, c) {
        (None, _) => true,
        (Some(p), Some(c)) => p <= c,
        (Some(_), None) => false,
    })
}

/// A changelog record, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    /// Events, in the order they were applied.
    Events(Vec<ChangelogEntry<'a>>),
    /// A clock moved on.
    Clock(ClockEntry<'a>),
    /// A part of a snapshot.
    Snapshot(SnapshotPart<'a>),
}

/// The events a shard applied since its last batch was written, encoded as one record value.
#[derive(Debug, Default)]
pub struct ChangelogBatch {
    value: Vec<u8>,
    count: u32,
    first: Option<(Channel, i64)>,
    last: Option<(Channel, i64)>,
}

impl ChangelogBatch {
    /// Appends an entry.
    pub fn push(&mut self, entry: &ChangelogEntry<'_>) {
        if self.count == 0 {
            self.value.clear();
            self.value.reserve(BATCH_HEADER);
            self.value.push(VERSION_BATCH_SCHEMAS);
            self.value.extend_from_slice(&0u32.to_be_bytes());
            for fingerprint in bundled_fingerprints() {
                self.value.extend_from_slice(&fingerprint.to_be_bytes());
            }
            self.first = Some((entry.channel, entry.source_offset));
        }
        self.value.reserve(ENTRY_HEADER + entry.datum.len());
        self.value.push(entry.channel as u8);
        self.value.extend_from_slice(&entry.source_offset.to_be_bytes());
        self.value.extend_from_slice(&(entry.datum.len() as u32).to_be_bytes());
        self.value.extend_from_slice(entry.datum);
        self.count += 1;
        self.value[1..5].copy_from_slice(&self.count.to_be_bytes());
        self.last = Some((entry.channel, entry.source_offset));
    }

    /// Whether the batch is big enough to write out now, for records of at most `limit` bytes.
    pub fn is_full(&self, limit: usize) -> bool {
        self.value.len() >= limit
    }

    /// Whether an entry of a `datum_len`-byte datum would take the batch past `limit` bytes
    /// (then the batch is written out first; an empty batch takes any entry).
    pub fn would_outgrow(&self, datum_len: usize, limit: usize) -> bool {
        self.count > 0 && self.value.len() + ENTRY_HEADER + datum_len > limit
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The record key: channel and offset of the first and of the last entry (`None` when empty).
    pub fn key(&self) -> Option<[u8; 18]> {
        let (first, last) = (self.first?, self.last?);
        let mut key = [0u8; 18];
        for (i, (channel, offset)) in [first, last].into_iter().enumerate() {
            key[i * 9] = channel as u8;
            key[i * 9 + 1..i * 9 + 9].copy_from_slice(&offset.to_be_bytes());
        }
        Some(key)
    }

    /// Appends the record value to `out` and empties the batch.
    pub fn write_value(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.value);
        self.clear();
    }

    /// Drops the entries (a rewind: they were never committed).
    pub fn clear(&mut self) {
        self.value.clear();
        self.count = 0;
        self.first = None;
        self.last = None;
    }
}

/// The fingerprints of the bundled input schemas this version writes its changelog with, in
/// [`Channel::ALL`] order (a test holds them: changing an input schema means keeping its
/// previous version in `schemas/history/`, for the entries written with it).
#[cfg(test)]
const CURRENT_INPUT_FINGERPRINTS: [u64; 4] =
    [0x11be_cd42_0d04_7f73, 0xe795_3e1e_eee1_dbad, 0x2bb8_f5ca_f8ba_4da0, 0x382b_5f03_b999_cb98];

/// The fingerprints of this version's bundled input schemas, in [`Channel::ALL`] order.
pub fn bundled_fingerprints() -> [u64; 4] {
    static FINGERPRINTS: OnceLock<[u64; 4]> = OnceLock::new();
    *FINGERPRINTS.get_or_init(|| Channel::ALL.map(|c| fingerprint(Contract::get().input(c))))
}

/// Decodes the datums of changelog entries: written with this version's bundled input schemas
/// (the fast path), or with an earlier version's (resolved to the current record, as a
/// registry's writer schema is). Entries of formats that do not name their schema are tried
/// with the current schemas, then with the earlier ones, newest first.
pub struct EntryDecoder {
    current: InputDecoder,
    fingerprints: [u64; 4],
    earlier: [Vec<(u64, SchemaDecoder)>; 4],
}

impl Default for EntryDecoder {
    fn default() -> Self {
        let contract = Contract::get();
        let earlier = |c: Channel| -> Vec<(u64, SchemaDecoder)> {
            contract
                .earlier_inputs(c)
                .iter()
                .filter_map(|s| SchemaDecoder::new(c, s).ok().map(|d| (fingerprint(s), d)))
                .collect()
        };
        EntryDecoder {
            current: InputDecoder::new(),
            fingerprints: bundled_fingerprints(),
            earlier: Channel::ALL.map(earlier),
        }
    }
}

impl EntryDecoder {
    /// The event of `entry`.
    pub fn decode(&self, entry: &ChangelogEntry<'_>) -> Result<WireEvent, DecodeError> {
        let lane = entry.channel as usize;
        match entry.writer {
            Some(fp) if fp == self.fingerprints[lane] => self.current.decode(entry.channel, entry.datum),
            Some(fp) => match self.earlier[lane].iter().find(|(f, _)| *f == fp) {
                Some((_, decoder)) => decoder.decode(entry.datum),
                None => Err(DecodeError::UnknownSchema(format!(
                    "changelog entry written with a {} input schema this version does not know (a later version's)",
                    entry.channel
                ))),
            },
            None => self
                .current
                .decode(entry.channel, entry.datum)
                .or_else(|first| self.earlier[lane].iter().find_map(|(_, d)| d.decode(entry.datum).ok()).ok_or(first)),
        }
    }
}

fn channel(b: u8) -> Result<Channel, ChangelogError> {
    Channel::ALL.get(b as usize).copied().ok_or(ChangelogError::Malformed("unknown channel"))
}

fn take<'a>(value: &mut &'a [u8], n: usize) -> Result<&'a [u8], ChangelogError> {
    if value.len() < n {
        return Err(ChangelogError::Malformed("entry beyond the record"));
    }
    let (head, rest) = value.split_at(n);
    *value = rest;
    Ok(head)
}

/// Reads the 8 bytes at `at` of `value` (which holds them).
fn long_at(value: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(value[at..at + 8].try_into().expect("8 bytes"))
}

/// Appends a position: per lane its offset, `i64::MIN` for none.
fn write_position(position: &[Option<i64>; 4], out: &mut Vec<u8>) {
    for p in position {
        out.extend_from_slice(&p.unwrap_or(i64::MIN).to_be_bytes());
    }
}

/// Reads the position [`write_position`] wrote at `at` of `value` (which holds it).
fn position_at(value: &[u8], at: usize) -> [Option<i64>; 4] {
    [0, 1, 2, 3].map(|i| Some(long_at(value, at + 8 * i)).filter(|&p| p != i64::MIN))
}

/// Decodes a snapshot part's value.
fn decode_snapshot(value: &[u8]) -> Result<SnapshotPart<'_>, ChangelogError> {
    if value.len() < SNAPSHOT_HEADER {
        return Err(ChangelogError::Malformed("shorter than its header"));
    }
    let id = long_at(value, 1) as u64;
    let position = position_at(value, 9);
    let stage = match value[41] {
        1 => SnapshotStage::Engine,
        2 => SnapshotStage::Ordered,
        _ => return Err(ChangelogError::Malformed("unknown snapshot stage")),
    };
    let part = u32::from_be_bytes(value[42..46].try_into().expect("4 bytes"));
    let parts = u32::from_be_bytes(value[46..50].try_into().expect("4 bytes"));
    if part >= parts {
        return Err(ChangelogError::Malformed("snapshot part beyond its count"));
    }
    Ok(SnapshotPart { id, position, stage, part, parts, bytes: &value[SNAPSHOT_HEADER..] })
}

/// Decodes a record value.
pub fn decode(value: &[u8]) -> Result<Record<'_>, ChangelogError> {
    if value.first() == Some(&VERSION_SNAPSHOT) {
        return decode_snapshot(value).map(Record::Snapshot);
    }
    if value.first() == Some(&VERSION_CLOCK) {
        if value.len() < CLOCK_HEADER {
            return Err(ChangelogError::Malformed("shorter than its header"));
        }
        let position = position_at(value, 9);
        let tenant =
            std::str::from_utf8(&value[CLOCK_HEADER..]).map_err(|_| ChangelogError::Malformed("tenant not UTF-8"))?;
        // What the service accepts of an event: a move to another time, or of a tenant no
        // event could name, was not written by it (applied, it would fire every timer at once).
        if tenant.trim().is_empty() || tenant.len() > MAX_ID_LEN {
            return Err(ChangelogError::Malformed("clock move of an impossible tenant"));
        }
        let time = long_at(value, 1);
        if !accepted_event_time(time) {
            return Err(ChangelogError::Malformed("clock move to a time outside the accepted range"));
        }
        return Ok(Record::Clock(ClockEntry { tenant, time, position }));
    }
    decode_events(value).map(Record::Events)
}

/// Decodes an event record value into its entries, in the order they were applied.
fn decode_events(value: &[u8]) -> Result<Vec<ChangelogEntry<'_>>, ChangelogError> {
    match value.first() {
        None => Err(ChangelogError::Malformed("empty")),
        Some(&VERSION_SINGLE) => {
            if value.len() < SINGLE_HEADER {
                return Err(ChangelogError::Malformed("shorter than its header"));
            }
            let source_offset = i64::from_be_bytes(value[2..10].try_into().expect("8 bytes"));
            Ok(vec![ChangelogEntry {
                channel: channel(value[1])?,
                source_offset,
                datum: &value[SINGLE_HEADER..],
                writer: None,
            }])
        }
        Some(&version @ (VERSION_BATCH | VERSION_BATCH_SCHEMAS)) => {
            let mut rest = &value[1..];
            let count = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
            let writers: Option<[u64; 4]> = if version == VERSION_BATCH_SCHEMAS {
                let table = take(&mut rest, 4 * 8)?;
                Some([0, 1, 2, 3].map(|i| u64::from_be_bytes(table[i * 8..i * 8 + 8].try_into().expect("8 bytes"))))
            } else {
                None
            };
            // Each entry takes at least its header: a count beyond that is damage.
            if count as usize > rest.len() / ENTRY_HEADER {
                return Err(ChangelogError::Malformed("entry count beyond the record"));
            }
            let mut entries = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let head = take(&mut rest, ENTRY_HEADER)?;
                let source_offset = i64::from_be_bytes(head[1..9].try_into().expect("8 bytes"));
                let len = u32::from_be_bytes(head[9..13].try_into().expect("4 bytes")) as usize;
                let datum = take(&mut rest, len)?;
                let channel = channel(head[0])?;
                let writer = writers.map(|w| w[channel as usize]);
                entries.push(ChangelogEntry { channel, source_offset, datum, writer });
            }
            if !rest.is_empty() {
                return Err(ChangelogError::Malformed("bytes after the last entry"));
            }
            Ok(entries)
        }
        Some(_) => Err(ChangelogError::Malformed("unknown version")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_written_out_before_an_entry_would_take_it_past_its_limit() {
        let datum = vec![7u8; 100];
        let entry = ChangelogEntry { channel: Channel::Chat, source_offset: 1, datum: &datum, writer: None };
        let mut batch = ChangelogBatch::default();
        assert!(!batch.would_outgrow(1_000_000, 10), "an empty batch takes any entry");
        batch.push(&entry);
        let size = BATCH_HEADER + ENTRY_HEADER + 100;
        assert!(!batch.is_full(size + 1) && batch.is_full(size));
        assert!(!batch.would_outgrow(100, size + ENTRY_HEADER + 100));
        assert!(batch.would_outgrow(101, size + ENTRY_HEADER + 100));
    }

    fn batch_of(entries: &[ChangelogEntry<'_>]) -> (Vec<u8>, Vec<u8>) {
        let mut b = ChangelogBatch::default();
        for e in entries {
            b.push(e);
        }
        let k = b.key().expect("a key").to_vec();
        let mut v = Vec::new();
        b.write_value(&mut v);
        assert!(b.is_empty() && b.key().is_none());
        (k, v)
    }

    #[test]
    fn batches_round_trip_in_order() {
        let entries: Vec<_> = Channel::ALL
            .iter()
            .enumerate()
            .map(|(i, &channel)| ChangelogEntry {
                channel,
                source_offset: (1 << 40) + i as i64,
                datum: b"\x02ab",
                writer: None,
            })
            .chain([ChangelogEntry { channel: Channel::Chat, source_offset: 0, datum: b"", writer: None }])
            .collect();
        let (_, value) = batch_of(&entries);
        assert_eq!(decode(&value), Ok(Record::Events(written(entries))));
    }

    /// `entries` as read back from a batch: each names the bundled schema of its channel.
    fn written(entries: Vec<ChangelogEntry<'_>>) -> Vec<ChangelogEntry<'_>> {
        let fingerprints = bundled_fingerprints();
        entries.into_iter().map(|e| ChangelogEntry { writer: Some(fingerprints[e.channel as usize]), ..e }).collect()
    }

    #[test]
    fn single_event_records_still_read() {
        let mut v = vec![VERSION_SINGLE, Channel::Phone as u8];
        v.extend_from_slice(&7i64.to_be_bytes());
        v.extend_from_slice(b"xyz");
        let e = ChangelogEntry { channel: Channel::Phone, source_offset: 7, datum: b"xyz", writer: None };
        assert_eq!(decode(&v), Ok(Record::Events(vec![e])));
    }

    #[test]
    fn keys_name_the_bounds_of_a_batch() {
        let e = |o| ChangelogEntry { channel: Channel::Email, source_offset: o, datum: b"d", writer: None };
        let (k1, _) = batch_of(&[e(1), e(2)]);
        let (k2, _) = batch_of(&[e(1), e(3)]);
        let (k3, _) = batch_of(&[e(1), e(2)]);
        assert_ne!(k1, k2);
        assert_eq!(k1, k3);
    }

    #[test]
    fn a_cleared_batch_is_empty_and_starts_afresh() {
        let mut b = ChangelogBatch::default();
        b.push(&ChangelogEntry { channel: Channel::Email, source_offset: 1, datum: b"d", writer: None });
        b.clear();
        assert!(b.is_empty() && b.key().is_none());
        let e = ChangelogEntry { channel: Channel::Social, source_offset: 9, datum: b"e", writer: None };
        let (_, value) = batch_of(std::slice::from_ref(&e));
        assert_eq!(decode(&value), Ok(Record::Events(written(vec![e]))));
    }

    /// A phone event as the first published phone schema wrote it (before
    /// `customer_line_type`), with the event the current schema reads from it.
    fn first_version_phone_datum() -> (Vec<u8>, WireEvent) {
        let contract = Contract::get();
        let v1 = contract.earlier_inputs(Channel::Phone).last().copied().expect("an earlier phone schema");
        use omnistitch_model::wire::PhoneEvent;
        use omnistitch_model::{Direction, EventKind};
        let event = WireEvent::Phone(PhoneEvent {
            tenant: "acme".into(),
            event_id: "EVT-1".into(),
            event_time: 1_767_571_200_000,
            direction: Direction::Inbound,
            kind: EventKind::CallStarted,
            case_id: Some("C-1".into()),
            agent_id: None,
            account_id: Some("AC-9".into()),
            text: None,
            sentiment: None,
            survey: None,
            call_id: "K-1".into(),
            caller: "(415) 555-0134".into(),
            callee: "+18005550100".into(),
            queue_wait_ms: Some(30_000),
            duration_ms: None,
            transfers: Some(1),
            customer_line_type: None,
        });
        let current = omnistitch_codec::datum::encode_input(&event).unwrap();
        // Resolved into the first version's shape, then written with it.
        use apache_avro::reader::datum::GenericDatumReader;
        use apache_avro::writer::datum::GenericDatumWriter;
        let reader = GenericDatumReader::builder(contract.input(Channel::Phone)).reader_schema(v1).build().unwrap();
        let value = reader.read_value(&mut &current[..]).unwrap();
        let old = GenericDatumWriter::builder(v1).build().unwrap().write_value_to_vec(value).unwrap();
        assert_ne!(old, current, "the versions write differently");
        (old, event)
    }

    /// Entries an earlier version wrote with its bundled schemas restore after an upgrade:
    /// batches that name their schemas by fingerprint, and older batches that do not (tried
    /// with the current schemas, then the earlier ones). A schema no version here knows (a
    /// later version's, after a rollback) is an error, not a misreading.
    #[test]
    fn entries_written_with_an_earlier_schema_are_read() {
        let (old, event) = first_version_phone_datum();
        let decoder = EntryDecoder::default();
        let v1 = fingerprint(Contract::get().earlier_inputs(Channel::Phone).last().unwrap());
        let entry = |writer| ChangelogEntry { channel: Channel::Phone, source_offset: 1, datum: &old, writer };
        assert!(InputDecoder::new().decode(Channel::Phone, &old).is_err(), "the current schema alone cannot");
        assert_eq!(decoder.decode(&entry(Some(v1))).unwrap(), event);
        assert_eq!(decoder.decode(&entry(None)).unwrap(), event);
        assert_eq!(decoder.decode(&entry(Some(42))).unwrap_err().code(), "unknown_schema");
        // A batch written now names the current schemas, and reads back through them.
        let current = omnistitch_codec::datum::encode_input(&event).unwrap();
        let (_, value) =
            batch_of(&[ChangelogEntry { channel: Channel::Phone, source_offset: 2, datum: &current, writer: None }]);
        let Ok(Record::Events(read)) = decode(&value) else { panic!("a batch") };
        assert_eq!(decoder.decode(&read[0]).unwrap(), event);
        // A batch of the format before schemas were named, holding a first-version datum.
        let mut v2 = vec![VERSION_BATCH];
        v2.extend_from_slice(&1u32.to_be_bytes());
        v2.push(Channel::Phone as u8);
        v2.extend_from_slice(&3i64.to_be_bytes());
        v2.extend_from_slice(&(old.len() as u32).to_be_bytes());
        v2.extend_from_slice(&old);
        let Ok(Record::Events(read)) = decode(&v2) else { panic!("a batch") };
        assert_eq!((read[0].writer, decoder.decode(&read[0]).unwrap()), (None, event));
    }

    /// The input schemas this version writes its changelog with. Changing one (a field added)
    /// must keep the previous version in `schemas/history/` (its entries are read through it,
    /// see [`EntryDecoder`]): update this list only after adding it there.
    #[test]
    fn changing_an_input_schema_keeps_its_previous_version() {
        let known: Vec<u64> = Channel::ALL
            .iter()
            .flat_map(|&c| Contract::get().earlier_inputs(c).iter().map(|s| fingerprint(s)))
            .collect();
        let current = bundled_fingerprints();
        eprintln!("bundled input schema fingerprints: {current:#018x?}");
        assert_eq!(
            current, CURRENT_INPUT_FINGERPRINTS,
            "an input schema changed: keep its previous version in schemas/history/"
        );
        for (c, fp) in Channel::ALL.iter().zip(current) {
            assert!(!known.contains(&fp), "{c}: the current schema is not an earlier one");
        }
    }

    #[test]
    fn damaged_values_are_errors() {
        assert!(decode(b"").is_err());
        assert!(decode(&[VERSION_SINGLE, 0, 0]).is_err());
        assert_eq!(decode(&[9; 12]), Err(ChangelogError::Malformed("unknown version")));
        assert_eq!(
            decode(&[VERSION_SINGLE, 7, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ChangelogError::Malformed("unknown channel"))
        );
        let (_, value) =
            batch_of(&[ChangelogEntry { channel: Channel::Chat, source_offset: 3, datum: b"abc", writer: None }]);
        for cut in 1..value.len() {
            assert!(decode(&value[..cut]).is_err(), "truncated at {cut}");
        }
        let mut huge = value.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
        let mut trailing = value;
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn clock_records_round_trip_and_say_whether_they_were_committed() {
        let clock =
            ClockEntry { tenant: "acme", time: 1_767_571_200_000, position: [Some(10), None, Some(0), Some(7)] };
        let mut value = Vec::new();
        clock.write_value(&mut value);
        assert_eq!(decode(&value), Ok(Record::Clock(clock.clone())));
        let key = clock.key();
        assert_eq!(key[0], CLOCK_KEY, "never a batch's key (those start with a channel)");
        assert_ne!(key, ClockEntry { time: clock.time + 1, ..clock.clone() }.key());
        assert!(clock.is_committed(&[Some(10), None, Some(3), Some(7)]));
        assert!(clock.is_committed(&[Some(11), Some(5), Some(0), Some(8)]));
        assert!(!clock.is_committed(&[Some(9), None, Some(3), Some(7)]), "lane 0 not committed that far");
        assert!(!clock.is_committed(&[Some(10), None, None, Some(7)]), "lane 2 never committed");
        for cut in 1..CLOCK_HEADER {
            assert!(decode(&value[..cut]).is_err(), "truncated at {cut}");
        }
        let mut bad = value.clone();
        bad.push(0xff);
        assert_eq!(decode(&bad), Err(ChangelogError::Malformed("tenant not UTF-8")));
        // Moves the service could not have written are refused, not applied.
        let refused = |c: ClockEntry<'_>| {
            let mut value = Vec::new();
            c.write_value(&mut value);
            decode(&value).err()
        };
        let time = Some(ChangelogError::Malformed("clock move to a time outside the accepted range"));
        assert_eq!(refused(ClockEntry { time: i64::MAX, ..clock.clone() }), time);
        assert_eq!(refused(ClockEntry { time: 0, ..clock.clone() }), time);
        let tenant = Some(ChangelogError::Malformed("clock move of an impossible tenant"));
        assert_eq!(refused(ClockEntry { tenant: "", ..clock.clone() }), tenant);
        let long = "t".repeat(MAX_ID_LEN + 1);
        assert_eq!(refused(ClockEntry { tenant: &long, ..clock.clone() }), tenant);
    }
}
