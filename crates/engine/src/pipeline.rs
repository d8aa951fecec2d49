//! The whole flow for one event: identity and timeline at arrival, then, in event-time order
//! behind a reorder buffer, micro-moment detection and CX metrics.

use std::sync::Arc;

use omnistitch_cx::{CxMetrics, CxReport, CxState};
use omnistitch_model::{Event, EventTime, ProfileId, Tenant};
use omnistitch_moments::{Detector, DetectorState, Intervention, Released, ReorderBuffer, ReorderState};

use crate::config::{ConfigError, EngineConfig};
use crate::engine::{Applied, Engine};
use crate::snapshot::{self, Holds, SnapshotError};

/// What one event produced.
#[derive(Debug)]
pub struct Step {
    /// Identity and timeline changes.
    pub applied: Applied,
    /// Interventions that became true as the event moved the tenant's watermark.
    pub interventions: Vec<Intervention>,
}

/// What the ordered stages take of one applied event: the event, its profile and thread, and
/// the merges applying it caused (survivor, absorbed).
#[derive(Debug)]
pub struct Placed {
    /// The event.
    pub event: Event,
    /// Its profile.
    pub profile: ProfileId,
    /// Its thread.
    pub thread_id: Arc<str>,
    /// Merges its identifiers caused, in order: (survivor, absorbed).
    pub merges: Vec<(ProfileId, ProfileId)>,
}

impl Placed {
    /// The part of `applied` the ordered stages need, with the event; `None` for a redelivery.
    pub fn of(event: Event, applied: &Applied) -> Option<Self> {
        Some(Placed {
            event,
            profile: applied.profile?,
            thread_id: applied.thread_id.clone(),
            merges: applied.merges.iter().map(|m| (m.survivor, m.absorbed)).collect(),
        })
    }
}

/// The stages behind the engine, in event-time order: the reorder buffer, the moments detector
/// and the CX metrics. Separable from the [`Engine`] so that they can run on their own thread.
#[derive(Debug)]
pub struct Ordered {
    buffer: ReorderBuffer,
    detector: Detector,
    cx: CxMetrics,
    /// What the buffer released, reused from event to event.
    released: Vec<Released>,
    /// The tenant of the latest event, kept so that runs of one tenant clone it once.
    tenant: Option<Tenant>,
}

/// A released event through CX and the detector (in that order), its interventions into `out`.
fn observe(cx: &mut CxMetrics, detector: &mut Detector, r: &Released, out: &mut Vec<Intervention>) {
    cx.observe(&r.event, &r.thread_id);
    out.extend(detector.observe_merging(r.profile, &r.event, &r.thread_id, &r.merges));
}

/// What a snapshot holds of the ordered stages (their settings are configuration).
#[derive(serde::Serialize)]
struct OrderedRef<'a> {
    buffer: &'a ReorderBuffer,
    detector: &'a Detector,
    cx: &'a CxMetrics,
}

/// [`OrderedRef`], read back.
#[derive(serde::Deserialize)]
struct OrderedState {
    buffer: ReorderState,
    detector: DetectorState,
    cx: CxState,
}

impl OrderedState {
    fn into_ordered(self, config: &EngineConfig) -> Result<Ordered, ConfigError> {
        Ok(Ordered {
            buffer: ReorderBuffer::with_state(&config.moments, self.buffer)?,
            detector: Detector::with_state(config.moments.clone(), self.detector)?,
            cx: CxMetrics::with_state(config.cx.clone(), self.cx)?,
            released: Vec::new(),
            tenant: None,
        })
    }
}

impl Ordered {
    fn state(&self) -> OrderedRef<'_> {
        OrderedRef { buffer: &self.buffer, detector: &self.detector, cx: &self.cx }
    }

    /// The stages' state as a snapshot ([`crate::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::seal(Holds::Ordered, &self.state())
    }

    /// Ordered stages holding the state of `snapshot` (from [`Ordered::snapshot`]), under
    /// `config`.
    pub fn from_snapshot(snapshot: &[u8], config: &EngineConfig) -> Result<Self, SnapshotError> {
        let state: OrderedState = snapshot::open(Holds::Ordered, snapshot)?;
        Ok(state.into_ordered(config)?)
    }

    /// Takes one applied event; returns the interventions that became true.
    pub fn take(&mut self, placed: Placed) -> Vec<Intervention> {
        let mut interventions = Vec::new();
        let Placed { event, profile, thread_id, merges } = placed;
        // Cloned only when the tenant changes: a clone touches the count every thread shares.
        if !self.tenant.as_ref().is_some_and(|t| Arc::ptr_eq(&t.0, &event.tenant.0)) {
            self.tenant = Some(event.tenant.clone());
        }
        let tenant = self.tenant.as_ref().expect("set above");
        // The merges travel with their event and take effect at its event time.
        self.buffer.push_into(profile, event, &thread_id, merges, &mut self.released);
        for r in self.released.drain(..) {
            observe(&mut self.cx, &mut self.detector, &r, &mut interventions);
        }
        if let Some(w) = self.buffer.watermark(tenant) {
            interventions.extend(self.detector.advance_watermark(tenant, w));
        }
        interventions
    }

    /// `tenant`'s input is quiet: its event-time clock moves on to `time` (never back) as if an
    /// event of that time had arrived. The buffer releases what the new watermark passes and
    /// the timers due before it fire (a first-response SLA is breached without waiting for the
    /// tenant's next event). Returns the interventions.
    pub fn advance_clock(&mut self, tenant: &Tenant, time: EventTime) -> Vec<Intervention> {
        let mut interventions = Vec::new();
        self.buffer.advance_into(tenant, time, &mut self.released);
        for r in self.released.drain(..) {
            observe(&mut self.cx, &mut self.detector, &r, &mut interventions);
        }
        if let Some(w) = self.buffer.watermark(tenant) {
            interventions.extend(self.detector.advance_watermark(tenant, w));
            // CX cases close on the same watermark the events reach CX by.
            self.cx.advance_clock(tenant, w);
        }
        interventions
    }

    /// Every tenant's event-time clock (the latest event time seen, or the latest advance) and
    /// its latest event time.
    pub fn clocks(&self) -> Vec<(Tenant, EventTime, EventTime)> {
        self.buffer.clocks().map(|(t, c, e)| (t.clone(), c, e)).collect()
    }

    /// End of input: releases every waiting event and fires the timers due up to the latest
    /// event time seen (later ones stay pending: the input ended before they were due).
    pub fn flush(&mut self) -> Vec<Intervention> {
        let mut out = Vec::new();
        let tenants: Vec<_> = self.buffer.tenants().cloned().collect();
        for tenant in tenants {
            for r in self.buffer.flush(&tenant) {
                observe(&mut self.cx, &mut self.detector, &r, &mut out);
            }
            if let Some(last) = self.buffer.max_seen(&tenant) {
                out.extend(self.detector.advance_watermark(&tenant, last.plus_millis(1)));
            }
        }
        out
    }

    /// The moments detector (counters, effort agreement).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// CX metrics so far.
    pub fn cx_report(&self) -> CxReport {
        self.cx.report()
    }

    /// Events that arrived behind the watermark and were processed out of order.
    pub fn late_events(&self) -> u64 {
        self.buffer.late_events()
    }
}

/// [`Engine`] followed by moments and CX metrics.
#[derive(Debug)]
pub struct Pipeline {
    engine: Engine,
    ordered: Option<Ordered>,
}

/// An engine holding the state of `snapshot` ([`Engine::snapshot`]), under `config`.
fn engine_from_snapshot(snapshot: &[u8], config: &EngineConfig) -> Result<Engine, SnapshotError> {
    let (normalizer, rules) = config.validate()?;
    Engine::from_snapshot(snapshot, normalizer, rules, config.timeline.clone())
}

/// What a snapshot holds of a pipeline.
#[derive(serde::Serialize)]
struct PipelineRef<'a> {
    #[serde(with = "snapshot::nested")]
    engine: &'a [u8],
    ordered: Option<OrderedRef<'a>>,
}

/// [`PipelineRef`], read back.
#[derive(serde::Deserialize)]
struct PipelineState {
    #[serde(with = "snapshot::nested")]
    engine: Vec<u8>,
    ordered: Option<OrderedState>,
}

impl Pipeline {
    /// The pipeline's state as a snapshot ([`crate::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let engine = self.engine.snapshot();
        snapshot::seal(
            Holds::Pipeline,
            &PipelineRef { engine: &engine, ordered: self.ordered.as_ref().map(Ordered::state) },
        )
    }

    /// A pipeline of an engine and ordered stages read back from their own snapshots
    /// ([`Engine::snapshot`], [`Ordered::snapshot`]), under `config`.
    pub fn from_stage_snapshots(engine: &[u8], ordered: &[u8], config: &EngineConfig) -> Result<Self, SnapshotError> {
        let engine = engine_from_snapshot(engine, config)?;
        Ok(Pipeline { engine, ordered: Some(Ordered::from_snapshot(ordered, config)?) })
    }

    /// A pipeline holding the state of `snapshot` (from [`Pipeline::snapshot`]), under `config`.
    pub fn from_snapshot(snapshot: &[u8], config: &EngineConfig) -> Result<Self, SnapshotError> {
        let state: PipelineState = snapshot::open(Holds::Pipeline, snapshot)?;
        let engine = engine_from_snapshot(&state.engine, config)?;
        let ordered = state.ordered.map(|o| o.into_ordered(config)).transpose()?;
        Ok(Pipeline { engine, ordered })
    }

    /// The full flow, from validated configuration.
    pub fn new(config: &EngineConfig) -> Result<Self, ConfigError> {
        let (normalizer, rules) = config.validate()?;
        let ordered = Ordered {
            buffer: ReorderBuffer::new(&config.moments)?,
            detector: Detector::new(config.moments.clone())?,
            cx: CxMetrics::new(config.cx.clone())?,
            released: Vec::new(),
            tenant: None,
        };
        Ok(Pipeline { engine: Engine::new(normalizer, rules, config.timeline.clone()), ordered: Some(ordered) })
    }

    /// Identity and timelines only: no moments, no CX metrics (the core, e.g. to measure it).
    pub fn core_only(engine: Engine) -> Self {
        Pipeline { engine, ordered: None }
    }

    /// Applies one validated event.
    pub fn apply(&mut self, event: Event) -> Step {
        self.apply_inspect(event, |_, _| ()).0
    }

    /// [`Pipeline::apply`], showing `inspect` the event and what identity resolution and the
    /// timeline did with it before the event moves on to the reorder buffer (so a caller that
    /// writes outputs from the event needs no copy of it).
    pub fn apply_inspect<R>(&mut self, event: Event, inspect: impl FnOnce(&Event, &Applied) -> R) -> (Step, R) {
        let applied = self.engine.apply(&event);
        let seen = inspect(&event, &applied);
        let interventions = match self.ordered.as_mut() {
            Some(o) => Placed::of(event, &applied).map(|p| o.take(p)).unwrap_or_default(),
            None => Vec::new(),
        };
        (Step { applied, interventions }, seen)
    }

    /// [`Ordered::advance_clock`] (nothing when core-only).
    pub fn advance_clock(&mut self, tenant: &Tenant, time: EventTime) -> Vec<Intervention> {
        self.ordered.as_mut().map(|o| o.advance_clock(tenant, time)).unwrap_or_default()
    }

    /// [`Ordered::clocks`] (none when core-only).
    pub fn clocks(&self) -> Vec<(Tenant, EventTime, EventTime)> {
        self.ordered.as_ref().map(Ordered::clocks).unwrap_or_default()
    }

    /// End of input: releases every waiting event and fires the timers due up to the latest
    /// event time seen (later ones stay pending: the input ended before they were due).
    pub fn flush(&mut self) -> Vec<Intervention> {
        self.ordered.as_mut().map(Ordered::flush).unwrap_or_default()
    }

    /// The engine and the ordered stages apart (none when core-only), e.g. to run the ordered
    /// stages on another thread.
    pub fn into_parts(self) -> (Engine, Option<Ordered>) {
        (self.engine, self.ordered)
    }

    /// Identity and timeline state.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The moments detector (counters, effort agreement), unless core-only.
    pub fn detector(&self) -> Option<&Detector> {
        self.ordered.as_ref().map(|o| &o.detector)
    }

    /// CX metrics so far, unless core-only.
    pub fn cx_report(&self) -> Option<CxReport> {
        self.ordered.as_ref().map(Ordered::cx_report)
    }

    /// Events that arrived behind the watermark and were processed out of order.
    pub fn late_events(&self) -> u64 {
        self.ordered.as_ref().map_or(0, Ordered::late_events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_model::{Channel, Direction, EventKind, IdentifierKind, RawIdentifier};
    use omnistitch_moments::MomentType;

    const T0: i64 = 1_767_571_200_000;

    fn chat(id: &str, t: i64, direction: Direction) -> Event {
        let mut e =
            Event::new(Tenant::new("acme"), id, EventTime(T0 + t), Channel::Chat, direction, EventKind::Message);
        e.identifiers.push(RawIdentifier::new(IdentifierKind::Email, "jo@mailbox.io"));
        e.case_id = Some("c1".into());
        e
    }

    /// An event older than its tenant's retention when it comes is not applied (no timeline
    /// entry, no identity link, no moment) and is counted; so is its redelivery after the
    /// digests of its time were forgotten (it is not applied twice). Another tenant's clock
    /// does not count.
    #[test]
    fn events_beyond_the_tenants_retention_are_not_applied() {
        const DAY: i64 = 86_400_000;
        let mut p = Pipeline::new(&EngineConfig::default()).unwrap();
        let max_age = i64::from(EngineConfig::default().timeline.max_age_days) * DAY;
        assert!(p.apply(chat("old", 0, Direction::Inbound)).applied.profile.is_some());
        assert!(p.apply(chat("new", max_age + 2 * DAY, Direction::Inbound)).applied.profile.is_some());
        assert!(p.engine().is_beyond_retention("acme", EventTime(T0 + DAY)));
        assert!(!p.engine().is_beyond_retention("acme", EventTime(T0 + 3 * DAY)));
        assert!(!p.engine().is_beyond_retention("globex", EventTime(T0)), "another tenant's clock");
        let again = p.apply(chat("old", 0, Direction::Inbound));
        assert!(again.applied.profile.is_none() && again.interventions.is_empty());
        let older = p.apply(chat("older", DAY / 2, Direction::Inbound));
        assert!(older.applied.profile.is_none());
        let stats = p.engine().stats();
        assert_eq!((stats.events, stats.beyond_retention, stats.duplicates), (2, 2, 0));
    }

    /// A customer's conversation ids stay linked while events name them, and leave with
    /// retention: a daily chat for three retention periods keeps about one period of them.
    #[test]
    fn a_customer_s_conversation_ids_age_out_with_retention() {
        const DAY: i64 = 86_400_000;
        let mut cfg = EngineConfig::default();
        cfg.timeline.max_age_days = 16;
        let mut p = Pipeline::core_only(Engine::new(
            cfg.validate().unwrap().0,
            cfg.validate().unwrap().1,
            cfg.timeline.clone(),
        ));
        let mut most = 0;
        for day in 0..48 {
            let mut e = chat(&format!("e{day}"), day * DAY, Direction::Inbound);
            e.case_id = None;
            e.identifiers.push(RawIdentifier::new(IdentifierKind::ChatSession, format!("s-{day}")));
            assert!(!p.apply(e).applied.created || day == 0, "day {day}: one customer");
            let g = p.engine().identity().graph(&Tenant::new("acme")).unwrap();
            most = most.max(g.identifier_count());
        }
        let g = p.engine().identity().graph(&Tenant::new("acme")).unwrap();
        // The email, 16 days of sessions, and at most one sweep interval (a 16th of it) more.
        assert!(most <= 1 + 16 + 1 + 1, "{most}");
        assert!(g.forgotten_count() >= 48 - 18, "{}", g.forgotten_count());
        assert_eq!(g.profile_count(), 1);
        assert!(g.profile_of(&omnistitch_model::Identifier::new(IdentifierKind::ChatSession, "s-47")).is_some());
        assert!(g.profile_of(&omnistitch_model::Identifier::new(IdentifierKind::ChatSession, "s-0")).is_none());
    }

    #[test]
    fn a_quiet_tenant_s_clock_advance_fires_the_sla_timer_its_next_event_would_have() {
        let acme = Tenant::new("acme");
        let mut quiet = Pipeline::new(&EngineConfig::default()).unwrap();
        assert!(quiet.apply(chat("m", 0, Direction::Inbound)).interventions.is_empty());
        // Chat SLA 2 min, lateness 60 s: the watermark must pass T0 + 120 s.
        assert!(quiet.advance_clock(&acme, EventTime(T0 + 180_000)).is_empty());
        let fired = quiet.advance_clock(&acme, EventTime(T0 + 180_001));
        assert_eq!(fired.iter().map(|i| i.moment_type).collect::<Vec<_>>(), [MomentType::FirstResponseSlaBreach]);
        assert!(quiet.advance_clock(&acme, EventTime(T0 + 900_000)).is_empty(), "fired once");
        assert_eq!(quiet.clocks(), [(acme.clone(), EventTime(T0 + 900_000), EventTime(T0))]);

        // The same intervention as an unrelated event at that time brings.
        let mut busy = Pipeline::new(&EngineConfig::default()).unwrap();
        busy.apply(chat("m", 0, Direction::Inbound));
        let mut other = chat("x", 180_001, Direction::Inbound);
        other.identifiers = vec![RawIdentifier::new(IdentifierKind::Email, "al@mailbox.io")];
        other.case_id = None;
        let step = busy.apply(other);
        assert_eq!(step.interventions, fired);
        // A tenant never seen has no clock to move; core-only has no timers.
        assert!(quiet.advance_clock(&Tenant::new("zeta"), EventTime(T0 + 10_000_000)).is_empty());
        let core = Pipeline::core_only(quiet.into_parts().0);
        assert!(core.clocks().is_empty());
    }
}
