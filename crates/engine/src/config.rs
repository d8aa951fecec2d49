//! Engine configuration: the identity and timeline sections, validated together.

use std::sync::Arc;

use omnistitch_cx::{CxConfig, CxConfigError};
use omnistitch_identity::{IdentityConfig, IdentityRules, Normalizer, RulesError};
use omnistitch_moments::{MomentsConfig, MomentsConfigError};
use omnistitch_timeline::{RetentionConfig, RetentionError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Engine settings as written in configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// `[identity]`: normalization and identity rules.
    pub identity: IdentityConfig,
    /// `[timeline]`: retention.
    pub timeline: RetentionConfig,
    /// `[moments]`: micro-moment detection.
    pub moments: MomentsConfig,
    /// `[cx]`: customer-experience metrics.
    pub cx: CxConfig,
}

/// A configuration error; the message names the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// In `[identity]`.
    #[error(transparent)]
    Identity(#[from] RulesError),
    /// In `[timeline]`.
    #[error(transparent)]
    Timeline(#[from] RetentionError),
    /// In `[moments]`.
    #[error(transparent)]
    Moments(#[from] MomentsConfigError),
    /// In `[cx]`.
    #[error(transparent)]
    Cx(#[from] CxConfigError),
}

impl EngineConfig {
    /// Validates the settings into a normalizer and rules.
    pub fn validate(&self) -> Result<(Arc<Normalizer>, IdentityRules), ConfigError> {
        self.timeline.validate()?;
        self.moments.validate()?;
        self.cx.validate()?;
        let normalizer =
            Normalizer::new(&self.identity.default_region).map_err(|e| RulesError::Region(e.to_string()))?;
        let rules = IdentityRules::from_config(&self.identity, &normalizer)?;
        Ok((Arc::new(normalizer), rules))
    }
}
