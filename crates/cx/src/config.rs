//! Settings of the metrics stage, as written in configuration (`[cx]`), and their validation.

use serde::{Deserialize, Serialize};
use thiserror::Error;

const DAY_MS: i64 = 86_400_000;
/// Longer windows would keep state for a decade: surely a typo.
const MAX_DAYS: u32 = 3_650;

/// How long case state is kept, in event time, and how much of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CxConfig {
    /// An unresolved case with no event for this many days is closed and counted as expired.
    pub case_idle_days: u32,
    /// A resolved case stays open this many days after its last event, for late surveys and contacts.
    pub survey_window_days: u32,
    /// Most cases held per tenant; past it, the case closest to its deadline is closed early.
    pub max_cases_per_tenant: usize,
}

impl Default for CxConfig {
    fn default() -> Self {
        CxConfig { case_idle_days: 14, survey_window_days: 7, max_cases_per_tenant: 500_000 }
    }
}

/// A setting that cannot work; names the key.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CxConfigError {
    /// The key must be at least 1.
    #[error("cx.{0}: must be at least 1")]
    Zero(&'static str),
    /// The key exceeds its largest sensible value.
    #[error("cx.{0}: must be at most {1}")]
    TooLarge(&'static str, u32),
}

/// Validated settings, in the units the stage works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) idle_ms: i64,
    pub(crate) survey_window_ms: i64,
    pub(crate) max_cases: usize,
}

impl CxConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), CxConfigError> {
        self.limits().map(|_| ())
    }

    pub(crate) fn limits(&self) -> Result<Limits, CxConfigError> {
        if self.case_idle_days == 0 {
            return Err(CxConfigError::Zero("case_idle_days"));
        }
        if self.max_cases_per_tenant == 0 {
            return Err(CxConfigError::Zero("max_cases_per_tenant"));
        }
        for (key, days) in [("case_idle_days", self.case_idle_days), ("survey_window_days", self.survey_window_days)] {
            if days > MAX_DAYS {
                return Err(CxConfigError::TooLarge(key, MAX_DAYS));
            }
        }
        Ok(Limits {
            idle_ms: i64::from(self.case_idle_days) * DAY_MS,
            survey_window_ms: i64::from(self.survey_window_days) * DAY_MS,
            max_cases: self.max_cases_per_tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let c: CxConfig = toml::from_str("survey_window_days = 3").unwrap();
        assert_eq!(c, CxConfig { survey_window_days: 3, ..CxConfig::default() });
        assert!(toml::from_str::<CxConfig>("repeat_window_days = 3").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let zero = CxConfig { case_idle_days: 0, ..CxConfig::default() };
        assert_eq!(zero.validate().unwrap_err().to_string(), "cx.case_idle_days: must be at least 1");
        let big = CxConfig { survey_window_days: 10_000, ..CxConfig::default() };
        assert_eq!(big.validate(), Err(CxConfigError::TooLarge("survey_window_days", MAX_DAYS)));
        let none = CxConfig { max_cases_per_tenant: 0, ..CxConfig::default() };
        assert_eq!(none.validate(), Err(CxConfigError::Zero("max_cases_per_tenant")));
        // No survey window is fine: a resolved case closes once the watermark passes it.
        assert!(CxConfig { survey_window_days: 0, ..CxConfig::default() }.validate().is_ok());
    }
}
