//! Customer-experience metrics, a consumer at the end of the flow: it reads unified timeline
//! events (with the profile and thread the engine gave them) and keeps first response and
//! resolution times, CSAT, NPS, CES, contact volume, repeat contacts and channel switches per
//! tenant and channel.
//!
//! [`CxMetrics`] is sans-IO: no clock (eviction runs on event time), no I/O, bounded state.
//! Exact definitions: `docs/metrics.md`.

mod case;
mod config;
mod histogram;
mod metrics;
mod report;

pub use config::{CxConfig, CxConfigError};
pub use metrics::{CxMetrics, CxState};
pub use report::{Ces, CxReport, CxRow, Nps, Resolution, Share, Timing};

#[cfg(test)]
mod tests;
