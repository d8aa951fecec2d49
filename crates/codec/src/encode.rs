//! Hand-written Avro encoders for the output records written per event (timeline entries,
//! profiles, merges, interventions), straight from engine values into a caller's buffer: no
//! intermediate record, no allocation. They write exactly the bytes apache-avro writes for the
//! same record (a test holds them to it over a simulated world); enum indices come from the
//! bundled schemas.

use apache_avro::schema::{Schema, UnionSchema};
use omnistitch_model::output::{IdentifierRecord, MatchOutcome, MatchedIdentifier, MergeRecord};
use omnistitch_model::{Channel, Direction, Event, EventKind, IdentifierKind};
use omnistitch_moments::{Intervention, MomentType, Priority};
use serde::Serialize;

use crate::contract::Contract;

/// Appends an Avro `long` (zig-zag varint).
pub fn write_long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends an Avro `string` (or `bytes`): length, then the bytes.
pub fn write_str(s: &[u8], out: &mut Vec<u8>) {
    write_long(s.len() as i64, out);
    out.extend_from_slice(s);
}

/// Appends a `["null", T]` union: branch 0 for `None`, else branch 1 and the value.
fn write_opt<T>(v: Option<T>, out: &mut Vec<u8>, write: impl FnOnce(T, &mut Vec<u8>)) {
    match v {
        None => write_long(0, out),
        Some(v) => {
            write_long(1, out);
            write(v, out);
        }
    }
}

fn write_opt_str(v: Option<&str>, out: &mut Vec<u8>) {
    write_opt(v, out, |s, out| write_str(s.as_bytes(), out));
}

/// Position of `value`'s serde name among the symbols of the enum `name` in `schema`.
fn symbol_index<T: Serialize>(schema: &Schema, name: &str, value: &T) -> u32 {
    let symbols = find_enum(schema, name).unwrap_or_else(|| panic!("the bundled schemas define enum {name}"));
    let json = serde_json::to_value(value).expect("enum variants serialize");
    let symbol = json.as_str().expect("enum variants serialize as strings");
    symbols.iter().position(|s| s == symbol).unwrap_or_else(|| panic!("enum {name} has no symbol {symbol}")) as u32
}

fn find_enum<'a>(schema: &'a Schema, name: &str) -> Option<&'a [String]> {
    match schema {
        Schema::Enum(e) if e.name.name() == name => Some(&e.symbols),
        Schema::Record(r) => r.fields.iter().find_map(|f| find_enum(&f.schema, name)),
        Schema::Array(a) => find_enum(&a.items, name),
        Schema::Union(u) => union_variants(u).iter().find_map(|s| find_enum(s, name)),
        _ => None,
    }
}

fn union_variants(u: &UnionSchema) -> &[Schema] {
    u.variants()
}

/// Enum indices of the output schemas, by Rust variant.
#[derive(Debug, Clone)]
pub struct FastEncoder {
    channel: [u32; 4],
    direction: [u32; 3],
    kind: [u32; 17],
    identifier_kind: [u32; 8],
    outcome: [u32; 6],
    moment: [u32; 8],
    priority: [u32; 5],
    action: [u32; 8],
    contact_channel: [u32; 4],
}

impl Default for FastEncoder {
    fn default() -> Self {
        Self::new()
    }
}

const DIRECTIONS: [Direction; 3] = [Direction::Inbound, Direction::Outbound, Direction::Internal];
const OUTCOMES: [MatchOutcome; 6] = [
    MatchOutcome::Linked,
    MatchOutcome::Added,
    MatchOutcome::Shared,
    MatchOutcome::Conflict,
    MatchOutcome::Blocked,
    MatchOutcome::Invalid,
];
const PRIORITIES: [Priority; 5] =
    [Priority::Low, Priority::Medium, Priority::High, Priority::Critical, Priority::Unknown];

impl FastEncoder {
    /// Encoders for the bundled output schemas.
    pub fn new() -> Self {
        let t = &Contract::get().timeline_entry;
        let mut e = FastEncoder {
            channel: [0; 4],
            direction: [0; 3],
            kind: [0; 17],
            identifier_kind: [0; 8],
            outcome: [0; 6],
            moment: [0; 8],
            priority: [0; 5],
            action: [0; 8],
            contact_channel: [0; 4],
        };
        for c in Channel::ALL {
            e.channel[c as usize] = symbol_index(t, "Channel", &c);
        }
        for d in DIRECTIONS {
            e.direction[d as usize] = symbol_index(t, "Direction", &d);
        }
        for k in EventKind::ALL {
            e.kind[k as usize] = symbol_index(t, "EventKind", &k);
        }
        for k in IdentifierKind::ALL {
            e.identifier_kind[k as usize] = symbol_index(t, "IdentifierKind", &k);
        }
        for o in OUTCOMES {
            e.outcome[o as usize] = symbol_index(t, "MatchOutcome", &o);
        }
        let i = &Contract::get().intervention;
        for m in MomentType::ALL.into_iter().chain([MomentType::Unknown]) {
            e.moment[m as usize] = symbol_index(i, "MomentType", &m);
            e.action[m.action() as usize] = symbol_index(i, "RecommendedAction", &m.action());
        }
        for p in PRIORITIES {
            e.priority[p as usize] = symbol_index(i, "Priority", &p);
        }
        for c in Channel::ALL {
            e.contact_channel[c as usize] = symbol_index(i, "ContactChannel", &c);
        }
        e
    }

    fn identifier(&self, kind: IdentifierKind, value: &str, out: &mut Vec<u8>) {
        write_long(i64::from(self.identifier_kind[kind as usize]), out);
        write_str(value.as_bytes(), out);
    }

    /// Appends the `TimelineEntry` datum of `event` placed on `profile_id`.
    pub fn timeline(
        &self,
        profile_id: &str,
        (thread_id, absorbed_thread_id): (&str, Option<&str>),
        event: &Event,
        identifiers: &[MatchedIdentifier],
        out: &mut Vec<u8>,
    ) {
        write_str(event.tenant.as_str().as_bytes(), out);
        write_str(profile_id.as_bytes(), out);
        write_str(thread_id.as_bytes(), out);
        write_str(event.event_id.as_bytes(), out);
        write_long(event.time.0, out);
        write_long(i64::from(self.channel[event.channel as usize]), out);
        write_long(i64::from(self.direction[event.direction as usize]), out);
        write_long(i64::from(self.kind[event.kind as usize]), out);
        write_opt_str(event.case_id.as_deref(), out);
        write_opt_str(event.agent_id.as_deref(), out);
        write_opt_str(event.text.as_deref(), out);
        write_opt(event.sentiment, out, |v, out| out.extend_from_slice(&v.to_le_bytes()));
        write_opt(event.survey.as_ref(), out, |s, out| {
            for v in [s.csat, s.nps, s.ces] {
                write_opt(v, out, |v, out| write_long(i64::from(v), out));
            }
        });
        let d = &event.details;
        write_opt(d.queue_wait_ms, out, write_long);
        write_opt(d.duration_ms, out, write_long);
        write_opt(d.transfers, out, |v, out| write_long(i64::from(v), out));
        write_opt_str(d.platform.as_deref(), out);
        write_opt_str(d.subject.as_deref(), out);
        if !identifiers.is_empty() {
            write_long(identifiers.len() as i64, out);
            for m in identifiers {
                self.identifier(m.identifier.kind, &m.identifier.value, out);
                write_long(i64::from(self.outcome[m.outcome as usize]), out);
            }
        }
        write_long(0, out);
        write_opt_str(absorbed_thread_id, out);
    }

    /// Appends the `Profile` datum of a profile.
    #[allow(clippy::too_many_arguments)]
    pub fn profile<'a, I, M>(
        &self,
        tenant: &str,
        profile_id: &str,
        identifiers: I,
        merged_from: M,
        first_seen: i64,
        last_seen: i64,
        event_count: i64,
        out: &mut Vec<u8>,
    ) where
        I: ExactSizeIterator<Item = (IdentifierKind, &'a str)>,
        M: ExactSizeIterator<Item: std::fmt::Display>,
    {
        use std::io::Write;
        write_str(tenant.as_bytes(), out);
        write_str(profile_id.as_bytes(), out);
        if identifiers.len() > 0 {
            write_long(identifiers.len() as i64, out);
            for (kind, value) in identifiers {
                self.identifier(kind, value, out);
            }
        }
        write_long(0, out);
        if merged_from.len() > 0 {
            write_long(merged_from.len() as i64, out);
            let mut text = Vec::with_capacity(40);
            for m in merged_from {
                text.clear();
                write!(text, "{m}").expect("writing to a vector");
                write_str(&text, out);
            }
        }
        write_long(0, out);
        write_long(first_seen, out);
        write_long(last_seen, out);
        write_long(event_count, out);
    }

    /// Appends the `ProfileMerge` datum of `m`.
    pub fn merge(&self, m: &MergeRecord, out: &mut Vec<u8>) {
        write_str(m.tenant.as_bytes(), out);
        write_str(m.survivor_id.as_bytes(), out);
        write_str(m.absorbed_id.as_bytes(), out);
        write_str(m.event_id.as_bytes(), out);
        write_long(m.event_time.0, out);
        for i in [&m.survivor_identifier, &m.absorbed_identifier] {
            let IdentifierRecord { kind, value } = i;
            self.identifier(*kind, value, out);
        }
    }

    /// Appends the `Intervention` datum of `i`.
    pub fn intervention(&self, i: &Intervention, out: &mut Vec<u8>) {
        write_str(i.intervention_id.as_bytes(), out);
        write_str(i.key_event_id.as_bytes(), out);
        write_str(i.tenant.as_bytes(), out);
        write_str(i.profile_id.as_bytes(), out);
        write_long(i64::from(self.moment[i.moment_type as usize]), out);
        write_long(i64::from(self.priority[i.priority as usize]), out);
        write_long(i.detected_at.0, out);
        write_str(i.reason.as_bytes(), out);
        write_opt_str(i.case_id.as_deref(), out);
        if !i.evidence.is_empty() {
            write_long(i.evidence.len() as i64, out);
            for e in &i.evidence {
                write_str(e.event_id.as_bytes(), out);
                write_long(i64::from(self.contact_channel[e.channel as usize]), out);
            }
        }
        write_long(0, out);
        write_long(i64::from(self.action[i.recommended_action as usize]), out);
        write_long(i64::from(self.contact_channel[i.recommended_channel as usize]), out);
        write_long(i.expires_at.0, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zigzag_varints() {
        let enc = |v| {
            let mut out = Vec::new();
            write_long(v, &mut out);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
        assert_eq!(enc(i64::MAX), [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(enc(i64::MIN), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn enum_indices_follow_the_schema_symbols() {
        let e = FastEncoder::new();
        // UNKNOWN comes first in the schema, before every variant the model knows.
        assert_eq!(e.kind[EventKind::Unknown as usize], 0);
        assert!(e.identifier_kind.iter().all(|&i| i >= 1));
        assert!(e.outcome.iter().all(|&i| i >= 1));
        assert_eq!(e.channel, [0, 1, 2, 3]);
    }
}
