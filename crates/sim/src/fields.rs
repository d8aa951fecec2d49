//! The common fields of a wire record, whatever its channel.

use omnistitch_model::WireEvent;

/// The record's event id.
pub(crate) fn event_id(e: &WireEvent) -> &str {
    match e {
        WireEvent::Email(r) => &r.event_id,
        WireEvent::Chat(r) => &r.event_id,
        WireEvent::Phone(r) => &r.event_id,
        WireEvent::Social(r) => &r.event_id,
    }
}

/// The record's tenant.
pub(crate) fn tenant(e: &WireEvent) -> &str {
    match e {
        WireEvent::Email(r) => &r.tenant,
        WireEvent::Chat(r) => &r.tenant,
        WireEvent::Phone(r) => &r.tenant,
        WireEvent::Social(r) => &r.tenant,
    }
}

/// The record's event time, ms.
pub(crate) fn event_time(e: &WireEvent) -> i64 {
    match e {
        WireEvent::Email(r) => r.event_time,
        WireEvent::Chat(r) => r.event_time,
        WireEvent::Phone(r) => r.event_time,
        WireEvent::Social(r) => r.event_time,
    }
}

#[cfg(test)]
/// The record's case id, if it carries one.
pub(crate) fn case_id(e: &WireEvent) -> Option<&str> {
    match e {
        WireEvent::Email(r) => r.case_id.as_deref(),
        WireEvent::Chat(r) => r.case_id.as_deref(),
        WireEvent::Phone(r) => r.case_id.as_deref(),
        WireEvent::Social(r) => r.case_id.as_deref(),
    }
}

/// Gives the record its event id.
pub(crate) fn set_event_id(e: &mut WireEvent, id: String) {
    match e {
        WireEvent::Email(r) => r.event_id = id.into(),
        WireEvent::Chat(r) => r.event_id = id.into(),
        WireEvent::Phone(r) => r.event_id = id.into(),
        WireEvent::Social(r) => r.event_id = id.into(),
    }
}
