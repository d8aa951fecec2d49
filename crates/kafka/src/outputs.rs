//! The output records one input record causes, keyed and encoded deterministically: the same
//! input always gives byte-identical records, so a redelivery downstream is an exact copy.

use omnistitch_codec::datum::OutputKind;
use omnistitch_codec::FastEncoder;
use omnistitch_engine::records::merge_records;
use omnistitch_engine::Applied;
use omnistitch_identity::{Profile, TenantGraph};
use omnistitch_model::{Event, ProfileId, Tenant};
use omnistitch_moments::Intervention;
use rdkafka::message::{Header, OwnedHeaders};
use thiserror::Error;

use crate::changelog::ChangelogBatch;
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
}

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
        self.records.push(OutRecord { dest, key: (k0, v0), value, partition, headers: None });
    }

    /// The records with their keys and values (`None`: tombstone), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&OutRecord, &[u8], Option<&[u8]>)> {
        self.records.iter().map(|r| (r, &self.bytes[r.key.0..r.key.1], r.value.map(|(a, b)| &self.bytes[a..b])))
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Forgets every record, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
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
}

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
                fast.timeline(pid, &applied.thread_id, event, &applied.identifiers, b);
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

    /// The current state of profile `p` of `tenant` (compacted topic, key = profile id).
    pub fn profile(&mut self, tenant: &Tenant, graph: &TenantGraph, p: &Profile, out: &mut OutBatch) {
        let mut text = [0; ProfileId::TEXT_LEN];
        let identifiers = graph.identifier_refs(p);
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
                    p.merged_from.iter(),
                    p.first_seen.0,
                    p.last_seen.0,
                    p.event_count as i64,
                    b,
                );
                true
            },
        );
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

    /// A dead letter: the original key and bytes, the reason and origin in headers.
    pub fn dead_letter(&self, key: Option<&[u8]>, value: Option<&[u8]>, why: &Refusal<'_>, out: &mut OutBatch) {
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header { key: "omnistitch.source.topic", value: Some(why.topic) })
            .insert(Header { key: "omnistitch.source.partition", value: Some(&why.partition.to_string()) })
            .insert(Header { key: "omnistitch.source.offset", value: Some(&why.offset.to_string()) })
            .insert(Header { key: "omnistitch.reason.code", value: Some(why.code) })
            .insert(Header { key: "omnistitch.reason", value: Some(why.reason) });
        out.push(
            Dest::DeadLetter,
            None,
            |b| b.extend_from_slice(key.unwrap_or_default()),
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
        }
    }
}

/// Appends the Confluent framing header (magic byte, schema id).
fn write_confluent_header(schema_id: u32, out: &mut Vec<u8>) {
    write_confluent(schema_id, &[], out);
}
