//! Configuration files of the engine commands (`replay`, `evaluate`): the service's own file
//! format, read like `run --config` (environment overrides included), of which they use the
//! engine sections.

use std::path::Path;

use omnistitch_engine::EngineConfig;

use crate::run::settings::{service_env, Settings};

/// Reads `path` (or the defaults when `None`) with the environment's overrides, validates it
/// and returns its engine sections: a service's configuration file replays as it runs.
pub fn load(path: Option<&Path>) -> anyhow::Result<EngineConfig> {
    let env = service_env(std::env::vars_os())?;
    Ok(Settings::load(path, env.into_iter())?.engine())
}
