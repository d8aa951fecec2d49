//! Simulated omnichannel traffic with ground truth, and the scoring of stitching results.
//!
//! [`generate`] turns a [`SimConfig`] into a [`World`]: email, chat, phone and social records of
//! customer journeys (in arrival order, with bounded disorder and duplicates), plus a
//! [`TruthRecord`] per event saying who it really belongs to and what its identifiers make
//! linkable, and a [`MomentTruth`] per micro-moment of `docs/moments.md`. [`write_world`] stores
//! it as Avro containers, `truth.jsonl` and `moments_truth.jsonl`; [`score`] grades a resolver's
//! event -> profile assignment and a detector's interventions against it (`omnistitch evaluate`).
//!
//! Inside, the flow is `population` (who exists, which identifiers they own or share) ->
//! `journey` (what happens in each case, moments planted as behaviour) -> `render` (how it looks
//! on the wire) -> `truth` and `moments` (derived from the rendered records) -> `arrival`
//! (delivery order and duplicates).

mod arrival;
pub mod config;
mod error;
mod fields;
mod files;
mod ids;
mod journey;
pub mod moments;
mod population;
mod render;
pub mod score;
mod text;
mod truth;
mod world;

/// Bumped whenever generation changes what a seed produces (benches cache worlds by it).
pub const WORLD_VERSION: u32 = 6;

pub use config::{HardCaseShares, SimConfig, DEFAULT_START_MS};
pub use error::SimError;
pub use files::{channel_file, read_moment_truth, read_truth, write_world, MOMENTS_TRUTH_FILE, TRUTH_FILE};
pub use moments::{MomentTruth, MOMENT_TYPES};
pub use score::{
    cross_tenant_profiles, event_key, match_moments, pairwise, persons_of, score_moments, DetectedMoment, MatchRule,
    MomentExample, MomentScores, Outcome, RuleCounts, Scores, TruthLevel,
};
pub use truth::TruthRecord;
pub use world::{generate, World, WorldSummary};
