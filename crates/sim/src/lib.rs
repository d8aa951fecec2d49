//! Simulated omnichannel traffic with ground truth, and the scoring of stitching results.
//!
//! [`generate`] turns a [`SimConfig`] into a [`World`]: email, chat, phone and social records of
//! customer journeys (in arrival order, with bounded disorder and duplicates), plus a
//! [`TruthRecord`] per event saying who it really belongs to and what its identifiers make
//! linkable. [`write_world`] stores it as Avro containers and `truth.jsonl`; [`score`] grades a
//! resolver's event -> profile assignment against it (`omnistitch evaluate`).
//!
//! Inside, the flow is `population` (who exists, which identifiers they own or share) ->
//! `journey` (what happens in each case) -> `render` (how it looks on the wire) -> `truth`
//! (derived from the rendered records) -> `arrival` (delivery order and duplicates).

mod arrival;
pub mod config;
mod error;
mod fields;
mod files;
mod ids;
mod journey;
mod population;
mod render;
pub mod score;
mod text;
mod truth;
mod world;

pub use config::{HardCaseShares, SimConfig};
pub use error::SimError;
pub use files::{channel_file, read_truth, write_world, TRUTH_FILE};
pub use score::{cross_tenant_profiles, pairwise, Scores, TruthLevel};
pub use truth::TruthRecord;
pub use world::{generate, World, WorldSummary};
