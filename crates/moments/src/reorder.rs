//! Event-time order from arrival order: a per-tenant buffer released by a watermark.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use omnistitch_model::{Event, EventTime, ProfileId, Tenant};

use crate::config::{MomentsConfig, MomentsConfigError, SettingsTable};
use crate::pending::{Merges, PendingMerges};
use crate::tenants::TenantMap;

/// An event the buffer let go, with the profile, thread and merges the engine gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// The event's profile as the engine gave it at arrival (the detector follows merges).
    pub profile: ProfileId,
    /// The event (boxed: it moves through the buffer in one piece).
    pub event: Box<Event>,
    /// Its thread.
    pub thread_id: Arc<str>,
    /// The merges its identifiers caused: they take effect at its event time, not at its
    /// arrival, so that a timer due before the event fires on the profiles as they were.
    pub merges: Merges,
    /// It arrived behind the watermark and was released at once, out of order.
    pub late: bool,
}

/// A waiting event, with its release order (event time, event id, arrival number) at hand.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Waiting {
    time: EventTime,
    arrival: u64,
    profile: ProfileId,
    event: Box<Event>,
    thread_id: Arc<str>,
    merges: Merges,
}

impl Waiting {
    /// Release order: event time, then event id, then arrival (unique); the id is read only on
    /// a tie of times.
    fn order(&self, other: &Waiting) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| self.event.event_id.cmp(&other.event.event_id))
            .then_with(|| self.arrival.cmp(&other.arrival))
    }

    /// Released on time (in order).
    fn release(self) -> Released {
        Released {
            profile: self.profile,
            event: self.event,
            thread_id: self.thread_id,
            merges: self.merges,
            late: false,
        }
    }
}

/// A waiting event that arrived after one it is released before, in a heap whose top is the
/// first to release.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OutOfOrder(Waiting);

impl Ord for OutOfOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap gives its greatest first.
        other.0.order(&self.0)
    }
}

impl PartialOrd for OutOfOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for OutOfOrder {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for OutOfOrder {}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct TenantBuffer {
    /// The tenant's allowed lateness.
    lateness_ms: i64,
    max_seen: Option<EventTime>,
    /// The latest event time of its events (late ones too); not moved by clock advances.
    latest_event: Option<EventTime>,
    /// Waiting events that arrived in release order (after every event that arrived before
    /// them): most do, and join at the back; releases leave from the front.
    #[serde(deserialize_with = "in_release_order")]
    in_order: VecDeque<Waiting>,
    /// The others (a lane behind the rest, a producer's retry). An insert into the middle of
    /// `in_order` would move every event after it: up to all a busy tenant holds within the
    /// lateness.
    #[serde(deserialize_with = "each_at_its_time")]
    out_of_order: BinaryHeap<OutOfOrder>,
    /// Merges reported whose event is not released yet.
    merges: PendingMerges,
}

/// Whether a waiting event read back is filed at its event's time (releases go by the first,
/// the detector by the second).
fn at_its_time(w: &Waiting) -> bool {
    w.time == w.event.time
}

/// Events read back from a snapshot in release order, refused otherwise (releases take them
/// from the front).
fn in_release_order<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VecDeque<Waiting>, D::Error> {
    let waiting = <VecDeque<Waiting> as serde::Deserialize>::deserialize(d)?;
    if !waiting.iter().all(at_its_time) {
        return Err(serde::de::Error::custom("a waiting event filed at another time than its own"));
    }
    match waiting.iter().zip(waiting.iter().skip(1)).all(|(a, b)| a.order(b).is_lt()) {
        true => Ok(waiting),
        false => Err(serde::de::Error::custom("waiting events out of release order")),
    }
}

/// Events read back from a snapshot into the heap, each filed at its event's time.
fn each_at_its_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BinaryHeap<OutOfOrder>, D::Error> {
    let waiting = <BinaryHeap<OutOfOrder> as serde::Deserialize>::deserialize(d)?;
    match waiting.iter().all(|w| at_its_time(&w.0)) {
        true => Ok(waiting),
        false => Err(serde::de::Error::custom("a waiting event filed at another time than its own")),
    }
}

impl TenantBuffer {
    fn watermark(&self) -> Option<EventTime> {
        self.max_seen.map(|t| EventTime(t.0.saturating_sub(self.lateness_ms)))
    }

    fn insert(&mut self, waiting: Waiting) {
        match self.in_order.back() {
            Some(last) if last.order(&waiting).is_gt() => self.out_of_order.push(OutOfOrder(waiting)),
            _ => self.in_order.push_back(waiting),
        }
    }

    /// Whether the first waiting event in release order is in the heap (`None`: none waits).
    fn first_out_of_order(&self) -> Option<bool> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(front), Some(top)) => Some(top.0.order(front).is_lt()),
            (None, Some(_)) => Some(true),
            (Some(_), None) => Some(false),
            (None, None) => None,
        }
    }

    /// Takes out the first waiting event in release order, if its time is before `until`.
    fn pop_before(&mut self, until: EventTime) -> Option<Waiting> {
        if self.first_out_of_order()? {
            self.out_of_order.peek_mut().filter(|top| top.0.time < until).map(|top| PeekMut::pop(top).0)
        } else if self.in_order.front().is_some_and(|w| w.time < until) {
            self.in_order.pop_front()
        } else {
            None
        }
    }

    /// Takes every pending event before `until`, in order.
    fn release_before(&mut self, until: EventTime, out: &mut Vec<Released>) {
        while let Some(w) = self.pop_before(until) {
            out.push(w.release());
        }
        self.merges.forget_before(until);
    }

    /// Takes every pending event, in order.
    fn release_all(&mut self, out: &mut Vec<Released>) {
        while let Some(first_out_of_order) = self.first_out_of_order() {
            let w = if first_out_of_order { self.out_of_order.pop().map(|w| w.0) } else { self.in_order.pop_front() };
            out.extend(w.map(Waiting::release));
        }
        self.merges.clear();
    }

    /// Events waiting.
    fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }
}

/// Releases events in (event time, event id) order, per tenant, once the tenant's watermark
/// (latest event time seen − allowed lateness) has passed them.
///
/// An event at or after the watermark waits; an event before it on arrival ("late") is
/// released at once and counted. Everything released is before the watermark, so every later
/// arrival that is not late sorts after it: per tenant, the output is in order except for late
/// events.
#[derive(Debug)]
pub struct ReorderBuffer {
    settings: SettingsTable,
    tenants: TenantMap<TenantBuffer>,
    arrivals: u64,
    late: u64,
}

/// What a snapshot holds of a reorder buffer: the waiting events and pending merges of every
/// tenant, and the counts.
#[derive(serde::Serialize)]
struct BufferRef<'a> {
    tenants: &'a TenantMap<TenantBuffer>,
    arrivals: u64,
    late: u64,
}

/// A reorder buffer's state read back from a snapshot, for [`ReorderBuffer::with_state`].
#[derive(Debug, serde::Deserialize)]
pub struct ReorderState {
    tenants: TenantMap<TenantBuffer>,
    arrivals: u64,
    late: u64,
}

/// Written as its state, without its settings (configuration, not state).
impl serde::Serialize for ReorderBuffer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BufferRef { tenants: &self.tenants, arrivals: self.arrivals, late: self.late }.serialize(s)
    }
}

impl ReorderBuffer {
    /// A buffer of `config` holding `state` (from a snapshot); every tenant takes its allowed
    /// lateness from `config`.
    pub fn with_state(config: &MomentsConfig, state: ReorderState) -> Result<Self, MomentsConfigError> {
        let mut buffer = Self::new(config)?;
        let ReorderState { tenants, arrivals, late } = state;
        buffer.tenants = tenants;
        (buffer.arrivals, buffer.late) = (arrivals, late);
        let settings = &buffer.settings;
        for (tenant, of) in buffer.tenants.iter_mut() {
            of.lateness_ms = settings.get(tenant.as_str()).lateness_ms;
        }
        Ok(buffer)
    }

    /// A buffer with the (per-tenant) allowed lateness of `config`.
    pub fn new(config: &MomentsConfig) -> Result<Self, MomentsConfigError> {
        Ok(Self::with_settings(config.resolve()?))
    }

    pub(crate) fn with_settings(settings: SettingsTable) -> Self {
        ReorderBuffer { settings, tenants: TenantMap::default(), arrivals: 0, late: 0 }
    }

    /// Takes one event of `profile` in thread `thread_id`, with the merges it caused; returns
    /// what it releases, in order.
    pub fn push(&mut self, profile: ProfileId, event: Event, thread_id: &Arc<str>, merges: Merges) -> Vec<Released> {
        let mut out = Vec::new();
        self.push_into(profile, event, thread_id, merges, &mut out);
        out
    }

    /// [`ReorderBuffer::push`], appending what it releases to `out` (a buffer the caller reuses).
    pub fn push_into(
        &mut self,
        profile: ProfileId,
        event: Event,
        thread_id: &Arc<str>,
        merges: Merges,
        out: &mut Vec<Released>,
    ) {
        let settings = &self.settings;
        let buffer = self.tenants.get_or_insert_with(&event.tenant, || TenantBuffer {
            lateness_ms: settings.get(event.tenant.as_str()).lateness_ms,
            ..TenantBuffer::default()
        });
        let time = event.time;
        buffer.latest_event = Some(buffer.latest_event.map_or(time, |t| t.max(time)));
        let late = buffer.watermark().is_some_and(|w| time < w);
        // Merges already applied by the time the event is released change nothing again.
        let mut behind = buffer.merges.behind(profile);
        // A late event is released at once, its merges with it: none is left pending (in a
        // backfill, where every event is late, nothing would ever release them).
        if !late {
            buffer.merges.note(time, &merges);
        }
        let merges = if behind.is_empty() {
            merges
        } else {
            behind.extend(merges);
            behind
        };
        if late {
            self.late += 1;
            out.push(Released { profile, event: Box::new(event), thread_id: thread_id.clone(), merges, late: true });
            return;
        }
        buffer.max_seen = Some(buffer.max_seen.map_or(time, |t| t.max(time)));
        self.arrivals += 1;
        let arrival = self.arrivals;
        buffer.insert(Waiting { time, arrival, profile, event: Box::new(event), thread_id: thread_id.clone(), merges });
        if let Some(w) = buffer.watermark() {
            buffer.release_before(w, out);
        }
    }

    /// `tenant`'s event-time clock moves on to `time` (at least) with no event: its input is
    /// quiet, and what the new watermark passes is released, in order, into `out`. A tenant
    /// with nothing buffered yet has no clock to move.
    pub fn advance_into(&mut self, tenant: &Tenant, time: EventTime, out: &mut Vec<Released>) {
        let Some(buffer) = self.tenants.get_mut(tenant) else { return };
        buffer.max_seen = Some(buffer.max_seen.map_or(time, |t| t.max(time)));
        if let Some(w) = buffer.watermark() {
            buffer.release_before(w, out);
        }
    }

    /// Every tenant's clock (the latest event time seen, or clock advance) and its latest
    /// event time.
    pub fn clocks(&self) -> impl Iterator<Item = (&Tenant, EventTime, EventTime)> {
        self.tenants.iter().filter_map(|(t, b)| Some((t, b.max_seen?, b.latest_event?)))
    }

    /// The watermark of `tenant`: every event before it has been released.
    pub fn watermark(&self, tenant: &Tenant) -> Option<EventTime> {
        self.tenants.get(tenant).and_then(TenantBuffer::watermark)
    }

    /// The latest event time seen for `tenant`.
    pub fn max_seen(&self, tenant: &Tenant) -> Option<EventTime> {
        self.tenants.get(tenant).and_then(|b| b.max_seen)
    }

    /// Tenants seen so far.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.keys()
    }

    /// Releases every waiting event of `tenant`, in order (end of input).
    pub fn flush(&mut self, tenant: &Tenant) -> Vec<Released> {
        let mut out = Vec::new();
        if let Some(buffer) = self.tenants.get_mut(tenant) {
            buffer.release_all(&mut out);
        }
        out
    }

    /// Events waiting, over all tenants.
    pub fn pending(&self) -> usize {
        self.tenants.values().map(TenantBuffer::len).sum()
    }

    /// Events that arrived behind their tenant's watermark.
    pub fn late_events(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_model::{Channel, Direction, EventKind};

    fn ev(tenant: &str, id: &str, t: i64) -> Event {
        Event::new(Tenant::new(tenant), id, EventTime(t), Channel::Chat, Direction::Inbound, EventKind::Message)
    }

    fn waiting(id: &str, time: i64, arrival: u64) -> Waiting {
        Waiting {
            time: EventTime(time),
            arrival,
            profile: p(1),
            event: Box::new(ev("acme", id, time)),
            thread_id: t(),
            merges: Merges::default(),
        }
    }

    fn read(buffer: &TenantBuffer) -> Result<TenantBuffer, postcard::Error> {
        postcard::from_bytes(&postcard::to_stdvec(buffer).unwrap())
    }

    #[test]
    fn waiting_events_read_back_out_of_release_order_or_off_their_time_are_refused() {
        let mut b = TenantBuffer::default();
        for w in [waiting("a", 10, 0), waiting("b", 20, 1), waiting("c", 15, 2)] {
            b.insert(w);
        }
        assert!(read(&b).is_ok_and(|back| (back.in_order.len(), back.out_of_order.len()) == (2, 1)));
        b.in_order.swap(0, 1);
        assert!(read(&b).is_err(), "out of release order");
        b.in_order.swap(0, 1);
        b.in_order[1].time = EventTime(25);
        assert!(read(&b).is_err(), "filed at another time than its event's");
        b.in_order[1].time = EventTime(20);
        b.out_of_order.push(OutOfOrder(Waiting { time: EventTime(12), ..waiting("d", 13, 3) }));
        assert!(read(&b).is_err(), "in the heap at another time than its event's");
    }

    /// A backfill behind the watermark (every event late, none on time to release anything)
    /// leaves no merge pending: each late event took its merges along at once.
    #[test]
    fn late_events_leave_no_merges_pending() {
        let config = MomentsConfig::default();
        let mut buffer = ReorderBuffer::new(&config).unwrap();
        let mut out = Vec::new();
        buffer.push_into(p(1), ev("acme", "live", 10 * 86_400_000), &t(), vec![], &mut out);
        for i in 0..50u8 {
            let merges = vec![(p(1), p(i.wrapping_add(2)))];
            buffer.push_into(p(1), ev("acme", &format!("old{i}"), i64::from(i) * 1_000), &t(), merges, &mut out);
        }
        assert_eq!(out.iter().filter(|r| r.late).count(), 50);
        assert!(out.iter().filter(|r| r.late).all(|r| r.merges.len() == 1), "each its own merge, once");
        let acme = buffer.tenants.get(&Tenant::new("acme")).unwrap();
        assert_eq!(acme.merges.held(), (0, 0));
    }

    fn ids(r: &[Released]) -> Vec<&str> {
        r.iter().map(|r| r.event.event_id.as_str()).collect()
    }

    fn t() -> Arc<str> {
        Arc::from("t")
    }

    fn p(n: u8) -> ProfileId {
        ProfileId::derive("acme", &format!("p{n}"))
    }

    #[test]
    fn releases_in_order_once_the_watermark_passes() {
        let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
        assert!(b.push(p(1), ev("acme", "b", 10_000), &t(), Vec::new()).is_empty());
        assert!(b.push(p(1), ev("acme", "a", 10_000), &t(), Vec::new()).is_empty());
        assert!(b.push(p(1), ev("acme", "c", 5_000), &t(), Vec::new()).is_empty());
        assert_eq!(b.watermark(&Tenant::new("acme")), Some(EventTime(-50_000)));
        // 70 s: the watermark is 10 s; an event exactly at it still waits.
        assert_eq!(ids(&b.push(p(1), ev("acme", "d", 70_000), &t(), Vec::new())), ["c"]);
        assert_eq!(ids(&b.push(p(1), ev("acme", "e", 70_001), &t(), Vec::new())), ["a", "b"]);
        assert_eq!(b.pending(), 2);
        assert_eq!(b.late_events(), 0);
    }

    #[test]
    fn late_events_go_through_at_once_and_are_counted() {
        let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
        b.push(p(1), ev("acme", "x", 200_000), &t(), Vec::new());
        let out = b.push(p(1), ev("acme", "old", 100_000), &t(), Vec::new());
        assert_eq!(ids(&out), ["old"]);
        assert!(out[0].late);
        assert_eq!(b.late_events(), 1);
        // On time: 140 s is the watermark itself.
        assert!(b.push(p(1), ev("acme", "edge", 140_000), &t(), Vec::new()).is_empty());
    }

    #[test]
    fn tenants_have_their_own_watermark_and_lateness() {
        let config: MomentsConfig = toml::from_str("[tenants.fast]\nallowed_lateness_seconds = 0").unwrap();
        let mut b = ReorderBuffer::new(&config).unwrap();
        b.push(p(1), ev("acme", "a1", 1_000_000), &t(), Vec::new());
        // globex has seen nothing yet: acme's clock does not release it.
        assert!(b.push(p(2), ev("globex", "g1", 0), &t(), Vec::new()).is_empty());
        assert!(b.push(p(3), ev("fast", "f1", 5), &t(), Vec::new()).is_empty());
        assert_eq!(ids(&b.push(p(3), ev("fast", "f2", 6), &t(), Vec::new())), ["f1"]);
        assert_eq!(ids(&b.flush(&Tenant::new("acme"))), ["a1"]);
        assert_eq!(b.pending(), 2);
    }

    #[test]
    fn merges_wait_with_the_event_that_caused_them() {
        let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
        b.push(p(2), ev("acme", "b", 10), &t(), vec![(p(1), p(2))]);
        b.push(p(2), ev("acme", "a", 0), &t(), Vec::new());
        let out = b.flush(&Tenant::new("acme"));
        let got: Vec<_> = out.iter().map(|r| (r.event.event_id.as_str(), r.profile, r.merges.clone())).collect();
        assert_eq!(got, [("a", p(2), vec![]), ("b", p(2), vec![(p(1), p(2))])]);
    }

    #[test]
    fn an_event_given_a_merged_profile_before_the_merge_is_released_takes_the_merges_along() {
        let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
        let merges = |r: &[Released]| -> Vec<(String, Merges)> {
            r.iter().map(|r| (r.event.event_id.to_string(), r.merges.clone())).collect()
        };
        // b joins p2 into p1; d then joins p1 into p4.
        b.push(p(1), ev("acme", "b", 10_000), &t(), vec![(p(1), p(2))]);
        // a comes earlier in event time, on the joined profile: it takes the merge along.
        b.push(p(1), ev("acme", "a", 5_000), &t(), Vec::new());
        // c's profile was not merged.
        b.push(p(3), ev("acme", "c", 3_000), &t(), Vec::new());
        b.push(p(4), ev("acme", "d", 12_000), &t(), vec![(p(4), p(1))]);
        // e's profile absorbed p1, which absorbed p2: both merges, in the order they were made.
        b.push(p(4), ev("acme", "e", 4_000), &t(), Vec::new());
        let out = b.push(p(9), ev("acme", "z", 70_001), &t(), Vec::new());
        assert_eq!(
            merges(&out),
            [
                ("c".into(), vec![]),
                ("e".into(), vec![(p(1), p(2)), (p(4), p(1))]),
                ("a".into(), vec![(p(1), p(2))]),
                ("b".into(), vec![(p(1), p(2))]),
            ]
        );
        // b's merge is released and forgotten; d's still waits (the watermark is 10.001 s).
        b.push(p(4), ev("acme", "f", 70_002), &t(), Vec::new());
        let rest = b.flush(&Tenant::new("acme"));
        let d = vec![(p(4), p(1))];
        assert_eq!(merges(&rest), [("d".into(), d.clone()), ("z".into(), vec![]), ("f".into(), d)]);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
        b.push(p(1), ev("acme", "min", i64::MIN), &t(), Vec::new());
        b.push(p(1), ev("acme", "max", i64::MAX), &t(), Vec::new());
        let rest = b.flush(&Tenant::new("acme"));
        assert_eq!(ids(&rest), ["max"]);
    }

    #[test]
    fn a_quiet_tenant_s_clock_advance_releases_what_its_watermark_passes() {
        let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
        let mut out = Vec::new();
        b.push_into(p(1), ev("acme", "a", 0), &t(), Vec::new(), &mut out);
        b.push_into(p(1), ev("acme", "b", 30_000), &t(), Vec::new(), &mut out);
        assert!(out.is_empty(), "both wait for the 60 s lateness");
        // Nothing for another tenant, nothing for a tenant never seen.
        b.advance_into(&Tenant::new("zeta"), EventTime(1_000_000), &mut out);
        assert!(out.is_empty() && b.watermark(&Tenant::new("zeta")).is_none());
        // Never backwards.
        b.advance_into(&Tenant::new("acme"), EventTime(10), &mut out);
        assert_eq!(b.max_seen(&Tenant::new("acme")), Some(EventTime(30_000)));
        b.advance_into(&Tenant::new("acme"), EventTime(75_000), &mut out);
        assert_eq!(ids(&out), ["a"]);
        let clocks: Vec<_> = b.clocks().map(|(t, c, e)| (t.as_str(), c, e)).collect();
        assert_eq!(clocks, [("acme", EventTime(75_000), EventTime(30_000))]);
        // An event at the advanced clock's watermark waits; one before it is late.
        out.clear();
        b.push_into(p(1), ev("acme", "c", 14_000), &t(), Vec::new(), &mut out);
        assert_eq!(ids(&out), ["c"]);
        assert!(out[0].late);
    }

    /// Whatever the arrival order: every event is released once; those on time (all but the
    /// late ones) in (event time, event id, arrival) order, each once the watermark passes it.
    #[test]
    fn any_arrival_order_releases_each_event_once_in_release_order() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let arrivals = proptest::collection::vec((0i64..200, 0u8..6), 1..150);
        let mut runner = TestRunner::new(Config { cases: 500, ..Config::default() });
        runner
            .run(&arrivals, |arrivals| {
                let mut b = ReorderBuffer::new(&MomentsConfig::default()).unwrap();
                let tenant = Tenant::new("acme");
                let mut released = Vec::new();
                for (n, &(secs, id)) in arrivals.iter().enumerate() {
                    // Ids repeat across times (ties of time are broken by id, then arrival).
                    let event = ev("acme", &format!("{id}"), secs * 1_000);
                    for r in b.push(p(1), event, &t(), Vec::new()) {
                        let w = b.watermark(&tenant).unwrap();
                        prop_assert!(r.late || r.event.time < w, "released before the watermark passed it");
                        released.push((r.late, r.event.time.0, r.event.event_id.to_string(), n));
                    }
                }
                prop_assert_eq!(b.pending() + released.len(), arrivals.len());
                for r in b.flush(&tenant) {
                    released.push((r.late, r.event.time.0, r.event.event_id.to_string(), usize::MAX));
                }
                prop_assert_eq!(released.len(), arrivals.len());
                let on_time: Vec<(i64, String)> =
                    released.iter().filter(|r| !r.0).map(|r| (r.1, r.2.clone())).collect();
                let mut sorted = on_time.clone();
                sorted.sort();
                prop_assert_eq!(on_time, sorted);
                let mut all: Vec<(i64, String)> = released.iter().map(|r| (r.1, r.2.clone())).collect();
                let mut expected: Vec<(i64, String)> =
                    arrivals.iter().map(|&(secs, id)| (secs * 1_000, format!("{id}"))).collect();
                all.sort();
                expected.sort();
                prop_assert_eq!(all, expected);
                Ok(())
            })
            .unwrap();
    }

    /// A buffer read back from a snapshot releases what the original would have: the same
    /// events, in the same order, with the same merges (pending merges cross the snapshot).
    #[test]
    fn a_buffer_read_back_from_a_snapshot_releases_what_the_original_would_have() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        // (seconds, profile, merge its profile absorbs, snapshot before it)
        let arrivals =
            proptest::collection::vec((0i64..200, 0u8..6, proptest::option::of(0u8..6), any::<bool>()), 1..120);
        let mut runner = TestRunner::new(Config { cases: 500, ..Config::default() });
        let config = MomentsConfig::default();
        runner
            .run(&arrivals, |arrivals| {
                let tenant = Tenant::new("acme");
                let seen = |r: Released| (r.late, r.event.time.0, r.event.event_id.to_string(), r.profile, r.merges);
                let mut runs = Vec::new();
                for read_back in [false, true] {
                    let mut b = ReorderBuffer::new(&config).unwrap();
                    let mut released = Vec::new();
                    for (n, &(secs, profile, absorbs, cut)) in arrivals.iter().enumerate() {
                        if read_back && cut {
                            let bytes = postcard::to_allocvec(&b).unwrap();
                            b = ReorderBuffer::with_state(&config, postcard::from_bytes(&bytes).unwrap()).unwrap();
                        }
                        let merges =
                            absorbs.filter(|&a| a != profile).map(|a| (p(profile), p(a))).into_iter().collect();
                        let event = ev("acme", &format!("e{n}"), secs * 1_000);
                        released.extend(b.push(p(profile), event, &t(), merges).into_iter().map(seen));
                    }
                    released.extend(b.flush(&tenant).into_iter().map(seen));
                    runs.push((released, b.late_events()));
                }
                prop_assert_eq!(&runs[0], &runs[1]);
                Ok(())
            })
            .unwrap();
    }
}
