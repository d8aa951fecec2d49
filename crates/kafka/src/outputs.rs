//! The output records one input record causes, keyed and encoded deterministically: the same
//! input always gives byte-identical records, so a redelivery downstream is an exact copy.

use omnistitch_codec::datum::OutputKind;
use omnistitch_codec::OutputEncoder;
use omnistitch_engine::records::{merge_records, profile_record, timeline_record};
use omnistitch_engine::{Pipeline, Step};
use omnistitch_model::Event;
use rdkafka::message::{Header, OwnedHeaders};
use thiserror::Error;

use crate::changelog::{self, ChangelogEntry};
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

/// One record to produce.
#[derive(Debug)]
pub struct OutRecord {
    /// Topic role.
    pub dest: Dest,
    /// Key.
    pub key: Vec<u8>,
    /// Value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Explicit partition (changelog), else the partitioner's choice by key.
    pub partition: Option<i32>,
    /// Headers (dead letters).
    pub headers: Option<OwnedHeaders>,
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

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::TimelineEntry => "TimelineEntry",
        OutputKind::Profile => "Profile",
        OutputKind::ProfileMerge => "ProfileMerge",
        OutputKind::DeadLetter => "DeadLetter",
        OutputKind::Intervention => "Intervention",
    }
}

/// Builds output records.
pub struct OutputWriter {
    encoder: OutputEncoder,
    ids: OutputSchemas,
}

impl OutputWriter {
    /// A writer framing records with `ids`.
    pub fn new(ids: OutputSchemas) -> Self {
        OutputWriter { encoder: OutputEncoder::new(), ids }
    }

    fn frame<T: serde::Serialize>(&self, kind: OutputKind, record: &T) -> Result<Vec<u8>, EncodeError> {
        let datum = self.encoder.encode(kind, record).map_err(|e| EncodeError::new(kind_name(kind), e))?;
        let mut out = Vec::with_capacity(datum.len() + 5);
        write_confluent(self.ids.id(kind), &datum, &mut out);
        Ok(out)
    }

    /// Records of an applied event: changelog entry, timeline entry, merges (with a tombstone
    /// per absorbed profile) and the profile's new state (nothing for a redelivery).
    pub fn applied(
        &self,
        shard: i32,
        source: ChangelogEntry<'_>,
        event: &Event,
        step: &Step,
        pipeline: &Pipeline,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), EncodeError> {
        let applied = &step.applied;
        let Some(profile) = applied.profile else { return Ok(()) };
        let (mut key, mut value) = (Vec::new(), Vec::new());
        changelog::key(event.tenant.as_str(), &event.event_id, &mut key);
        changelog::encode(&source, &mut value);
        out.push(OutRecord { dest: Dest::Changelog, key, value: Some(value), partition: Some(shard), headers: None });
        let pid = profile.to_string().into_bytes();
        let timeline = timeline_record(profile, event, applied);
        out.push(OutRecord {
            dest: Dest::Timeline,
            key: pid.clone(),
            value: Some(self.frame(OutputKind::TimelineEntry, &timeline)?),
            partition: None,
            headers: None,
        });
        for m in merge_records(applied) {
            let absorbed = m.absorbed_id.clone().into_bytes();
            let value = self.frame(OutputKind::ProfileMerge, &m)?;
            out.push(OutRecord {
                dest: Dest::Merges,
                key: absorbed.clone(),
                value: Some(value),
                partition: None,
                headers: None,
            });
            out.push(OutRecord { dest: Dest::Profiles, key: absorbed, value: None, partition: None, headers: None });
        }
        let identity = pipeline.engine().identity();
        if let (Some(graph), Some(p)) = (identity.graph(&event.tenant), identity.profile(&event.tenant, profile)) {
            let record = profile_record(&event.tenant, graph, p);
            let value = self.frame(OutputKind::Profile, &record)?;
            out.push(OutRecord { dest: Dest::Profiles, key: pid, value: Some(value), partition: None, headers: None });
        }
        Ok(())
    }

    /// Records of the interventions of a step.
    pub fn interventions(&self, step: &Step, out: &mut Vec<OutRecord>) -> Result<(), EncodeError> {
        for i in &step.interventions {
            let value = self.frame(OutputKind::Intervention, i)?;
            out.push(OutRecord {
                dest: Dest::Interventions,
                key: i.profile_id.clone().into_bytes(),
                value: Some(value),
                partition: None,
                headers: None,
            });
        }
        Ok(())
    }

    /// A dead letter: the original key and bytes, the reason and origin in headers.
    pub fn dead_letter(&self, key: Option<&[u8]>, value: Option<&[u8]>, why: &Refusal<'_>) -> OutRecord {
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header { key: "omnistitch.source.topic", value: Some(why.topic) })
            .insert(Header { key: "omnistitch.source.partition", value: Some(&why.partition.to_string()) })
            .insert(Header { key: "omnistitch.source.offset", value: Some(&why.offset.to_string()) })
            .insert(Header { key: "omnistitch.reason.code", value: Some(why.code) })
            .insert(Header { key: "omnistitch.reason", value: Some(why.reason) });
        OutRecord {
            dest: Dest::DeadLetter,
            key: key.unwrap_or_default().to_vec(),
            value: value.map(<[u8]>::to_vec),
            partition: None,
            headers: Some(headers),
        }
    }
}
