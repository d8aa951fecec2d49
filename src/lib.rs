//! The `omnistitch` command: runs the Kafka service (`run`), drives the engine over files
//! (`replay`), makes traffic (`simulate`) and scores results (`evaluate`). The binary in
//! `main.rs` is only argument parsing.

pub mod config;
pub mod evaluate;
pub mod input;
pub mod logging;
pub mod replay;
pub mod run;
