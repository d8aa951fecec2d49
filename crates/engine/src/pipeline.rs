//! The whole flow for one event: identity and timeline at arrival, then, in event-time order
//! behind a reorder buffer, micro-moment detection and CX metrics.

use omnistitch_cx::{CxMetrics, CxReport};
use omnistitch_model::Event;
use omnistitch_moments::{Detector, Intervention, ReorderBuffer};

use crate::config::{ConfigError, EngineConfig};
use crate::engine::{Applied, Engine};

/// What one event produced.
#[derive(Debug)]
pub struct Step {
    /// Identity and timeline changes.
    pub applied: Applied,
    /// Interventions that became true as the event moved the tenant's watermark.
    pub interventions: Vec<Intervention>,
}

/// The stages behind the reorder buffer.
#[derive(Debug)]
struct Ordered {
    buffer: ReorderBuffer,
    detector: Detector,
    cx: CxMetrics,
}

/// [`Engine`] followed by moments and CX metrics.
#[derive(Debug)]
pub struct Pipeline {
    engine: Engine,
    ordered: Option<Ordered>,
}

impl Pipeline {
    /// The full flow, from validated configuration.
    pub fn new(config: &EngineConfig) -> Result<Self, ConfigError> {
        let (normalizer, rules) = config.validate()?;
        let ordered = Ordered {
            buffer: ReorderBuffer::new(&config.moments)?,
            detector: Detector::new(config.moments.clone())?,
            cx: CxMetrics::new(config.cx.clone())?,
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
        let mut interventions = Vec::new();
        let (Some(o), Some(profile)) = (self.ordered.as_mut(), applied.profile) else {
            return (Step { applied, interventions }, seen);
        };
        let tenant = event.tenant.clone();
        for m in &applied.merges {
            o.buffer.merge_profiles(&tenant, m.survivor, m.absorbed);
            interventions.extend(o.detector.merge_profiles(&tenant, m.survivor, m.absorbed));
            o.cx.merge_profiles(m.survivor, m.absorbed);
        }
        for r in o.buffer.push(profile, event, &applied.thread_id) {
            o.cx.observe(r.profile, &r.event, &r.thread_id);
            interventions.extend(o.detector.observe(r.profile, &r.event, &r.thread_id));
        }
        if let Some(w) = o.buffer.watermark(&tenant) {
            interventions.extend(o.detector.advance_watermark(&tenant, w));
        }
        (Step { applied, interventions }, seen)
    }

    /// End of input: releases every waiting event and fires the timers due up to the latest
    /// event time seen (later ones stay pending: the input ended before they were due).
    pub fn flush(&mut self) -> Vec<Intervention> {
        let mut out = Vec::new();
        let Some(o) = self.ordered.as_mut() else { return out };
        let tenants: Vec<_> = o.buffer.tenants().cloned().collect();
        for tenant in tenants {
            for r in o.buffer.flush(&tenant) {
                o.cx.observe(r.profile, &r.event, &r.thread_id);
                out.extend(o.detector.observe(r.profile, &r.event, &r.thread_id));
            }
            if let Some(last) = o.buffer.max_seen(&tenant) {
                out.extend(o.detector.advance_watermark(&tenant, last.plus_millis(1)));
            }
        }
        out
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
        self.ordered.as_ref().map(|o| o.cx.report())
    }

    /// Events that arrived behind the watermark and were processed out of order.
    pub fn late_events(&self) -> u64 {
        self.ordered.as_ref().map_or(0, |o| o.buffer.late_events())
    }
}
