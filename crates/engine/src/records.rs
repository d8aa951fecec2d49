//! Engine state as output records of the Avro contract.

use omnistitch_identity::{Profile, TenantGraph};
use omnistitch_model::output::{IdentifierRecord, MergeRecord, NormalizedEvent, ProfileRecord, TimelineRecord};
use omnistitch_model::{Event, ProfileId, Tenant};

use crate::engine::Applied;

/// The event part of a timeline record.
pub fn normalized_event(e: &Event) -> NormalizedEvent {
    NormalizedEvent {
        event_id: e.event_id.clone(),
        event_time: e.time,
        channel: e.channel,
        direction: e.direction,
        kind: e.kind,
        case_id: e.case_id.clone(),
        agent_id: e.agent_id.clone(),
        text: e.text.clone(),
        sentiment: e.sentiment,
        survey: e.survey,
        queue_wait_ms: e.details.queue_wait_ms,
        duration_ms: e.details.duration_ms,
        transfers: e.details.transfers,
        platform: e.details.platform.clone(),
        subject: e.details.subject.clone(),
    }
}

/// The timeline record of an applied event.
pub fn timeline_record(profile: ProfileId, event: &Event, applied: &Applied) -> TimelineRecord {
    TimelineRecord {
        tenant: event.tenant.to_string(),
        profile_id: profile.to_string(),
        thread_id: applied.thread_id.to_string(),
        event: normalized_event(event),
        identifiers: applied.identifiers.clone(),
        absorbed_thread_id: applied.absorbed_thread.as_deref().map(str::to_string),
    }
}

/// The current state of a profile.
pub fn profile_record(tenant: &Tenant, graph: &TenantGraph, p: &Profile) -> ProfileRecord {
    ProfileRecord {
        tenant: tenant.to_string(),
        profile_id: p.id.to_string(),
        identifiers: graph.identifiers(p).iter().map(IdentifierRecord::from).collect(),
        merged_from: p.merged_from.iter().map(ToString::to_string).collect(),
        first_seen: p.first_seen,
        last_seen: p.last_seen,
        event_count: p.event_count as i64,
    }
}

/// The merges `event` caused.
pub fn merge_records<'a>(event: &'a Event, applied: &'a Applied) -> impl Iterator<Item = MergeRecord> + 'a {
    applied.merges.iter().map(|m| MergeRecord {
        tenant: event.tenant.to_string(),
        survivor_id: m.survivor.to_string(),
        absorbed_id: m.absorbed.to_string(),
        event_id: event.event_id.to_string(),
        event_time: applied.time,
        survivor_identifier: IdentifierRecord::from(&m.survivor_identifier),
        absorbed_identifier: IdentifierRecord::from(&m.absorbed_identifier),
    })
}
