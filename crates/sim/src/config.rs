//! What world to simulate: size, seed, time span, delivery faults and the shares of hard cases.

use omnistitch_model::wire::{MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS};
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// 2026-01-05T00:00:00Z, a Monday.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Longest a case may run past the end of the span (follow-ups, resolution, survey), in days.
pub(crate) const MAX_CASE_TAIL_DAYS: i64 = 40;

/// Parameters of a simulated world; equal configs generate identical worlds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Customers (persons) in total, split evenly across tenants.
    pub customers: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Tenant (brand) names; used in person ids and brand addresses (`support@<tenant>.example`).
    pub tenants: Vec<String>,
    /// Start of the simulated span, ms since the epoch; cases start within the span.
    pub start_ms: i64,
    /// Length of the span in days.
    pub span_days: u32,
    /// Share of events delivered twice (same event id, identical content).
    pub duplicate_rate: f64,
    /// Most an event may arrive after an event with a later event time, in ms.
    pub max_lateness_ms: i64,
    /// Shares of the cases that make identity resolution hard.
    pub hard_cases: HardCaseShares,
    /// Event ids are `<prefix>-<n>` (n in event-time order): worlds fed one after another to
    /// one consumer need prefixes of their own, or later worlds are redeliveries of earlier ids.
    pub event_id_prefix: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            customers: 2000,
            seed: 42,
            tenants: vec!["acme".into(), "globex".into(), "initech".into()],
            start_ms: DEFAULT_START_MS,
            span_days: 28,
            duplicate_rate: 0.02,
            max_lateness_ms: 60_000,
            hard_cases: HardCaseShares::default(),
            event_id_prefix: "ev".into(),
        }
    }
}

/// How often each hard case occurs; every share is a probability in `0..=1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HardCaseShares {
    /// Share of persons living in a household of 2-4 that shares a landline.
    pub household: f64,
    /// Share of persons working in a team of 2-5 that shares a mailbox (`ops@<company>.example`).
    pub team_mailbox: f64,
    /// Share of chat forms filled in with a placeholder (`n/a`, `test@test.com`, ...) and of
    /// inbound calls from a withheld number (`unknown`).
    pub junk: f64,
    /// Share of persons of the second and later tenants who are also customers of an earlier
    /// tenant under the same email address.
    pub cross_tenant: f64,
    /// Share of identifier renderings in a non-canonical format (display names, upper case,
    /// punctuated phone numbers, `@handles`, padded account ids).
    pub format_variant: f64,
}

impl Default for HardCaseShares {
    fn default() -> Self {
        HardCaseShares { household: 0.10, team_mailbox: 0.05, junk: 0.05, cross_tenant: 0.05, format_variant: 0.25 }
    }
}

/// Most customers a config may ask for; keeps a typo from exhausting memory.
pub const MAX_CUSTOMERS: usize = 2_000_000;

fn invalid(key: &'static str, reason: impl Into<String>) -> SimError {
    SimError::InvalidConfig { key, reason: reason.into() }
}

fn check_share(key: &'static str, v: f64) -> Result<(), SimError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("{v} is not a share in 0..=1")))
    }
}

impl SimConfig {
    /// Checks every field; generation never panics on a config that passes.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.customers > MAX_CUSTOMERS {
            return Err(invalid("customers", format!("{} is over the limit of {MAX_CUSTOMERS}", self.customers)));
        }
        if self.tenants.is_empty() {
            return Err(invalid("tenants", "at least one tenant is needed"));
        }
        let p = &self.event_id_prefix;
        if p.is_empty() || p.len() > 32 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(invalid("event_id_prefix", format!("`{p}` must be 1-32 ASCII letters, digits, `-` or `_`")));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let ok =
                !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(invalid("tenants", format!("`{t}` must be 1-64 ASCII letters, digits, `-` or `_`")));
            }
            if self.tenants[..i].contains(t) {
                return Err(invalid("tenants", format!("`{t}` is listed twice")));
            }
        }
        if self.span_days == 0 || self.span_days > 3650 {
            return Err(invalid("span_days", format!("{} is not in 1..=3650", self.span_days)));
        }
        let end = self.start_ms.saturating_add((i64::from(self.span_days) + MAX_CASE_TAIL_DAYS) * DAY_MS);
        if self.start_ms < MIN_EVENT_TIME_MS || end >= MAX_EVENT_TIME_MS {
            return Err(invalid("start_ms", "the span (plus case tails) must lie within 2000..2100"));
        }
        if !(0..=DAY_MS).contains(&self.max_lateness_ms) {
            return Err(invalid("max_lateness_ms", format!("{} is not in 0..=86400000", self.max_lateness_ms)));
        }
        check_share("duplicate_rate", self.duplicate_rate)?;
        let h = &self.hard_cases;
        check_share("hard_cases.household", h.household)?;
        check_share("hard_cases.team_mailbox", h.team_mailbox)?;
        check_share("hard_cases.junk", h.junk)?;
        check_share("hard_cases.cross_tenant", h.cross_tenant)?;
        check_share("hard_cases.format_variant", h.format_variant)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_partial_json_fills_in_defaults() {
        SimConfig::default().validate().unwrap();
        let c: SimConfig = serde_json::from_str(r#"{"customers": 10, "hard_cases": {"junk": 0.5}}"#).unwrap();
        assert_eq!(c.customers, 10);
        assert_eq!(c.hard_cases.junk, 0.5);
        assert_eq!(c.hard_cases.household, HardCaseShares::default().household);
        assert_eq!(c.tenants.len(), 3);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_naming_the_key() {
        assert!(serde_json::from_str::<SimConfig>(r#"{"customer": 10}"#).is_err());
        let cases: [(&str, SimConfig); 5] = [
            ("tenants", SimConfig { tenants: vec![], ..SimConfig::default() }),
            ("tenants", SimConfig { tenants: vec!["a b".into()], ..SimConfig::default() }),
            ("duplicate_rate", SimConfig { duplicate_rate: 1.5, ..SimConfig::default() }),
            ("start_ms", SimConfig { start_ms: 0, ..SimConfig::default() }),
            ("max_lateness_ms", SimConfig { max_lateness_ms: -1, ..SimConfig::default() }),
        ];
        for (key, c) in cases {
            match c.validate() {
                Err(SimError::InvalidConfig { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        let mut c = SimConfig::default();
        c.hard_cases.junk = f64::NAN;
        assert!(c.validate().is_err());
    }
}
