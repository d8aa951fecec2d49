//! Unified timelines, the third stage of the flow: each profile's events in event-time order.
//!
//! [`TimelineStore`] inserts late events in place, drops redelivered ones, combines timelines
//! when profiles merge, threads conversations across channels ([`threads`]) and evicts by age
//! and count so memory stays bounded. Pure: no I/O, no clock (time comes from the events).

pub mod store;
pub mod threads;

pub use store::{Appended, RetentionConfig, RetentionError, Timeline, TimelineEntry, TimelineStore};
pub use threads::{ThreadHandle, ThreadIndex};
