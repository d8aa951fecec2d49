//! Identity resolution, the second stage of the flow: which profile does an event belong to?
//!
//! [`Normalizer`] canonicalizes identifiers (emails, E.164 phones, handles), [`IdentityRules`]
//! say what may link (placeholders blocked, per-kind limits, priorities, shared identifiers), and
//! [`IdentityResolver`] keeps one deterministic [`TenantGraph`] per tenant. Pure: no I/O, no clock.

mod email;
pub mod graph;
pub mod normalize;
mod phone;
pub mod resolver;
pub mod rules;

pub use graph::{Conflict, ConflictRule, Merge, Profile, TenantGraph, MAX_MERGED_FROM};
pub use normalize::{NormalizeError, Normalizer, UnknownRegion};
pub use resolver::{IdentityResolver, Resolution, ResolvedIdentifier};
pub use rules::{IdentityConfig, IdentityRules, RulesError};
