//! End-to-end tests of the `omnistitch` command's library: one binary, one module per area.

mod deploy;
mod encoding;
mod replay;
mod service;
