//! Configuration files: TOML, every key optional, unknown keys refused.

use std::path::Path;

use anyhow::Context;
use omnistitch_engine::EngineConfig;

/// Reads `path` (or the defaults when `None`) and validates it.
pub fn load(path: Option<&Path>) -> anyhow::Result<EngineConfig> {
    let config: EngineConfig = match path {
        None => EngineConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid config {}", p.display()))?
        }
    };
    config
        .validate()
        .with_context(|| format!("invalid config {}", path.map_or("(defaults)".into(), |p| p.display().to_string())))?;
    Ok(config)
}
