//! Arrival order within the allowed lateness changes no intervention, through the whole flow:
//! identity and threads assigned in arrival order, then the reorder buffer and the detector.

use proptest::prelude::*;

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, IdentifierKind, RawIdentifier, Tenant};
use omnistitch_moments::{Intervention, MomentType};

use crate::{EngineConfig, Pipeline};

pub(crate) const T0: i64 = 1_767_571_200_000;
const SEC: i64 = 1_000;

/// How an event names its customer: by email, by phone, or by both (which merges the two).
#[derive(Debug, Clone, Copy)]
enum Names {
    Email,
    Phone,
    Both,
}

/// One generated event: customer, second, kind, conversation, case, how it names the customer.
type Raw = (u8, i64, (Channel, Direction, EventKind), u8, Option<u8>, Names);

fn event(n: usize, (customer, secs, (channel, direction, kind), conversation, case, names): Raw) -> Event {
    let mut e =
        Event::new(Tenant::new("acme"), format!("e{n:03}"), EventTime(T0 + secs * SEC), channel, direction, kind);
    let email = RawIdentifier::new(IdentifierKind::Email, format!("c{customer}@mailbox.io"));
    let phone = RawIdentifier::new(IdentifierKind::Phone, format!("+1 212 555 01{customer:02}"));
    e.identifiers = match names {
        Names::Email => vec![email],
        Names::Phone => vec![phone],
        Names::Both => vec![email, phone],
    };
    e.thread.key = Some(format!("{channel}:{customer}:{conversation}").into());
    // Some events of a conversation carry its case id, others not: the case id may come
    // before or after the events that lack it.
    e.case_id = case.map(|c| format!("C{customer}{c}").into());
    if direction == Direction::Outbound {
        e.agent_id = Some("agent-7".into());
    }
    if kind == EventKind::SurveyResponse {
        e.survey = Some(omnistitch_model::Survey { csat: Some(2), nps: Some(5), ces: Some(6) });
    }
    e
}

/// Random traffic of three customers over minutes to hours, in event-time order.
pub(crate) fn traffic() -> impl Strategy<Value = Vec<Event>> {
    use Channel::*;
    use Direction::*;
    use EventKind::*;
    let kinds = prop_oneof![
        Just((Chat, Inbound, ChatStarted)),
        Just((Chat, Inbound, Message)),
        Just((Chat, Outbound, Message)),
        Just((Chat, Inbound, ChatAbandoned)),
        Just((Email, Inbound, Message)),
        Just((Email, Outbound, Message)),
        Just((Phone, Inbound, CallStarted)),
        Just((Phone, Inbound, CallAnswered)),
        Just((Phone, Inbound, CallAbandoned)),
        Just((Social, Inbound, SocialPost)),
        Just((Email, Internal, CaseResolved)),
        Just((Email, Inbound, SurveyResponse)),
    ];
    let one = (0u8..4, prop_oneof![0i64..600, 0i64..4 * 3600], kinds, 0u8..3, prop::option::of(0u8..2));
    // Customers 0 to 2 are always named the same way. Customer 3 is named by email for the
    // first hour, by phone for the second, and by both from then on: two profiles, merged by
    // its first event naming both, which the shuffle may move among its own and others'
    // events (a merge takes effect at its event's time, see docs/moments.md).
    let names = |c: u8, secs: i64| match (c, secs) {
        (0, _) => (secs, Names::Email),
        (1, _) => (secs, Names::Phone),
        (2, _) => (secs, Names::Both),
        (_, s) if s < 3600 => (s, Names::Email),
        (_, s) if s < 7200 => (s, Names::Phone),
        (_, s) => (s, Names::Both),
    };
    prop::collection::vec(one, 1..50).prop_map(move |raw| {
        let mut events: Vec<Event> = raw
            .into_iter()
            .enumerate()
            .map(|(n, (c, secs, kind, conversation, case))| {
                let (secs, named) = names(c, secs);
                event(n, (c, secs, kind, conversation, case, named))
            })
            .collect();
        events.sort_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
        events
    })
}

/// The interventions, and the CX metrics once every event is in.
fn run_with_cx(events: &[Event]) -> (Vec<Intervention>, omnistitch_cx::CxReport) {
    let mut p = Pipeline::new(&EngineConfig::default()).unwrap();
    let mut out = Vec::new();
    for e in events {
        out.extend(p.apply(e.clone()).interventions);
    }
    out.extend(p.flush());
    let cx = p.cx_report().expect("the ordered stages run");
    (out, cx)
}

/// What downstream sees of an intervention that does not depend on which event created its
/// profile (a profile's id is its first-arriving event's), sorted, copies kept (a copy in one
/// run and not the other is a difference).
fn key(v: &[Intervention]) -> Vec<(String, MomentType, Option<String>, String)> {
    let mut keys: Vec<_> = v
        .iter()
        .map(|i| (i.intervention_id.clone(), i.moment_type, i.case_id.clone(), i.key_event_id.clone()))
        .collect();
    keys.sort();
    keys
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every event arrives before any event more than the lateness (60 s) younger: the
    /// interventions are those of the events in order.
    #[test]
    fn shuffling_within_the_lateness_changes_no_intervention(
        events in traffic(),
        jitter in prop::collection::vec(0i64..60_000, 50),
    ) {
        let (in_order, in_order_cx) = run_with_cx(&events);
        let mut arrival: Vec<(i64, usize)> =
            events.iter().enumerate().map(|(i, e)| (e.time.0 + jitter[i % jitter.len()], i)).collect();
        arrival.sort();
        let shuffled: Vec<Event> = arrival.iter().map(|&(_, i)| events[i].clone()).collect();
        let brief = |v: &[Event]| -> Vec<String> {
            v.iter()
                .map(|e| {
                    let ids: Vec<&str> = e.identifiers.iter().map(|i| i.value.as_str()).collect();
                    format!(
                        "{} +{}s {:?} {:?} {:?} key={:?} case={:?} ids={ids:?}",
                        e.event_id,
                        (e.time.0 - T0) / SEC,
                        e.channel,
                        e.direction,
                        e.kind,
                        e.thread.key.as_deref(),
                        e.case_id.as_deref()
                    )
                })
                .collect()
        };
        let (got, got_cx) = run_with_cx(&shuffled);
        prop_assert_eq!(key(&in_order), key(&got), "in order {:#?} arrival {:#?}", brief(&events), brief(&shuffled));
        // The CX metrics too: a conversation is not split by the thread an event got on arrival.
        prop_assert_eq!(&in_order_cx, &got_cx, "in order {:#?} arrival {:#?}", brief(&events), brief(&shuffled));
    }
}
