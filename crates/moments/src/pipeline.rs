//! The reorder buffer and the detector as one step, for drivers (replay, the Kafka service).

use std::sync::Arc;

use omnistitch_model::{Event, EventTime, ProfileId, Tenant};

use crate::config::{MomentsConfig, MomentsConfigError};
use crate::detector::Detector;
use crate::intervention::Intervention;
use crate::pending::Merges;
use crate::reorder::{Released, ReorderBuffer};

/// Timeline events in arrival order, interventions out: a [`ReorderBuffer`] feeding a
/// [`Detector`], with each tenant's watermark passed on after every event.
#[derive(Debug)]
pub struct MomentsPipeline {
    buffer: ReorderBuffer,
    detector: Detector,
}

impl MomentsPipeline {
    /// A pipeline with validated settings.
    pub fn new(config: MomentsConfig) -> Result<Self, MomentsConfigError> {
        let settings = config.resolve()?;
        Ok(MomentsPipeline {
            buffer: ReorderBuffer::with_settings(settings.clone()),
            detector: Detector::with_settings(settings),
        })
    }

    fn observe_all(&mut self, released: Vec<Released>, out: &mut Vec<Intervention>) {
        for r in released {
            out.extend(self.detector.observe_merging(r.profile, &r.event, &r.thread_id, &r.merges));
        }
    }

    /// Takes one timeline event (arrival order) of `profile` in thread `thread_id`, with the
    /// profile merges it caused; returns the interventions that became true as the tenant's
    /// watermark moved.
    pub fn push(
        &mut self,
        profile: ProfileId,
        event: Event,
        thread_id: &Arc<str>,
        merges: Merges,
    ) -> Vec<Intervention> {
        let tenant = event.tenant.clone();
        let mut out = Vec::new();
        let released = self.buffer.push(profile, event, thread_id, merges);
        self.observe_all(released, &mut out);
        if let Some(w) = self.buffer.watermark(&tenant) {
            out.extend(self.detector.advance_watermark(&tenant, w));
        }
        out
    }

    /// End of input: releases every waiting event and fires the timers due up to the latest
    /// event time seen. Timers due later stay pending (the input ended before they were due);
    /// [`Detector::advance_watermark`] fires them if the caller wants them.
    pub fn flush(&mut self) -> Vec<Intervention> {
        let mut out = Vec::new();
        let tenants: Vec<Tenant> = self.buffer.tenants().cloned().collect();
        for tenant in tenants {
            let released = self.buffer.flush(&tenant);
            self.observe_all(released, &mut out);
            if let Some(last) = self.buffer.max_seen(&tenant) {
                out.extend(self.detector.advance_watermark(&tenant, EventTime(last.0.saturating_add(1))));
            }
        }
        out
    }

    /// The detector (counters, effort agreement, state size).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The detector, to fire timers past the end of input.
    pub fn detector_mut(&mut self) -> &mut Detector {
        &mut self.detector
    }

    /// The buffer (late events, waiting events).
    pub fn buffer(&self) -> &ReorderBuffer {
        &self.buffer
    }
}
