//! Micro-moment detection, a consumer at the end of the flow: it reads unified timeline events
//! (with the profile and thread the engine gave them), puts each tenant's events back in
//! event-time order ([`ReorderBuffer`]), and emits an [`Intervention`] when one of the moments
//! of `docs/moments.md` happens ([`Detector`]): channel hops, repeat contacts, first-response
//! SLA breaches, negative sentiment after contact, abandoned contacts, detractor surveys and
//! high-effort journeys.
//!
//! Sans-IO: no clock (timers fire from the watermark, state is evicted on event time), no I/O,
//! bounded state. Output records match `schemas/intervention.avsc`.

mod config;
mod detector;
mod effort;
mod elsewhere;
mod intervention;
mod keytext;
mod pending;
mod pipeline;
mod reorder;
mod repeat;
pub mod sentiment;
mod shared;
mod state;
mod tenants;
mod vecmap;

pub use config::{
    AbandonedContactConfig, ChannelHopConfig, DetractorSurveyConfig, FirstResponseSlaConfig, HighEffortConfig,
    MomentsConfig, MomentsConfigError, NegativeSentimentConfig, RepeatContactConfig, TimerHorizons,
};
pub use detector::{Detector, DetectorState};
pub use effort::EffortAgreement;
pub use intervention::{Action, Evidence, Intervention, MomentType, Priority};
pub use pending::Merges;
pub use pipeline::MomentsPipeline;
pub use reorder::{Released, ReorderBuffer, ReorderState};
pub use shared::{MomentCount, MomentCounters};

#[cfg(test)]
mod tests;
