//! Settings of the detector, as written in configuration (`[moments]`), per-tenant overrides,
//! and their validation into the units the detector works in.

use std::collections::BTreeMap;

use omnistitch_model::Channel;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Longer windows would keep state for a decade: surely a typo.
const MAX_DAYS: u32 = 3_650;
/// Most conversations `repeat_contact.count` may ask for.
const MAX_REPEAT_COUNT: u32 = 100;

/// Every setting of the detector; every key is optional (defaults: `docs/moments.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentsConfig {
    /// Events are released this long (event time) behind the latest one seen, per tenant.
    pub allowed_lateness_seconds: u32,
    /// One intervention per (profile, moment, case key) within this many hours; 0 turns it off.
    pub cooldown_hours: u32,
    /// An intervention expires this many hours after it was detected.
    pub intervention_ttl_hours: u32,
    /// Case and conversation state is forgotten this many days after its last event (a whole
    /// idle profile at the first UTC day boundary of event time past it); never less than the
    /// longest window, cool-down or SLA, which raise it.
    pub state_retention_days: u32,
    /// `channel_hop`.
    pub channel_hop: ChannelHopConfig,
    /// `repeat_contact`.
    pub repeat_contact: RepeatContactConfig,
    /// `first_response_sla_breach`.
    pub first_response_sla: FirstResponseSlaConfig,
    /// `negative_sentiment_after_contact`.
    pub negative_sentiment: NegativeSentimentConfig,
    /// `abandoned_contact`.
    pub abandoned_contact: AbandonedContactConfig,
    /// `detractor_survey`.
    pub detractor_survey: DetractorSurveyConfig,
    /// `high_effort_journey` and the effort prediction.
    pub high_effort_journey: HighEffortConfig,
    /// Per-tenant overrides: a table shaped like this one (without `tenants`), any subset of keys.
    pub tenants: BTreeMap<String, Value>,
}

impl Default for MomentsConfig {
    fn default() -> Self {
        MomentsConfig {
            allowed_lateness_seconds: 60,
            cooldown_hours: 24,
            intervention_ttl_hours: 24,
            state_retention_days: 14,
            channel_hop: ChannelHopConfig::default(),
            repeat_contact: RepeatContactConfig::default(),
            first_response_sla: FirstResponseSlaConfig::default(),
            negative_sentiment: NegativeSentimentConfig::default(),
            abandoned_contact: AbandonedContactConfig::default(),
            detractor_survey: DetractorSurveyConfig::default(),
            high_effort_journey: HighEffortConfig::default(),
            tenants: BTreeMap::new(),
        }
    }
}

/// `[moments.channel_hop]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelHopConfig {
    /// Whether the moment is detected.
    pub enabled: bool,
    /// The new conversation must start within this many minutes of the case's previous contact.
    pub window_minutes: u32,
}

impl Default for ChannelHopConfig {
    fn default() -> Self {
        ChannelHopConfig { enabled: true, window_minutes: 60 }
    }
}

/// `[moments.repeat_contact]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatContactConfig {
    /// Whether the moment is detected.
    pub enabled: bool,
    /// The conversation count that fires.
    pub count: u32,
    /// Window, days, over which conversations are counted.
    pub window_days: u32,
}

impl Default for RepeatContactConfig {
    fn default() -> Self {
        RepeatContactConfig { enabled: true, count: 3, window_days: 7 }
    }
}

/// `[moments.first_response_sla]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirstResponseSlaConfig {
    /// Whether the moment is detected.
    pub enabled: bool,
    /// First-response SLA of chat, seconds.
    pub chat_seconds: u32,
    /// First-response SLA of email, seconds.
    pub email_seconds: u32,
    /// First-response SLA of social, seconds.
    pub social_seconds: u32,
}

impl Default for FirstResponseSlaConfig {
    fn default() -> Self {
        FirstResponseSlaConfig { enabled: true, chat_seconds: 120, email_seconds: 14_400, social_seconds: 14_400 }
    }
}

/// `[moments.negative_sentiment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NegativeSentimentConfig {
    /// Whether the moment is detected.
    pub enabled: bool,
    /// Sentiment (−1 to 1) at or below which an inbound event is negative.
    pub threshold: f64,
    /// The negative event must come within this many hours after a support contact.
    pub window_hours: u32,
}

impl Default for NegativeSentimentConfig {
    fn default() -> Self {
        NegativeSentimentConfig { enabled: true, threshold: -0.5, window_hours: 48 }
    }
}

/// `[moments.abandoned_contact]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbandonedContactConfig {
    /// Whether the moment is detected.
    pub enabled: bool,
    /// Minutes after the abandon within which a successful contact cancels the moment.
    pub window_minutes: u32,
}

impl Default for AbandonedContactConfig {
    fn default() -> Self {
        AbandonedContactConfig { enabled: true, window_minutes: 30 }
    }
}

/// `[moments.detractor_survey]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetractorSurveyConfig {
    /// Whether the moment is detected.
    pub enabled: bool,
    /// A CSAT answer (1-5) at or below this is a detractor.
    pub csat_at_most: u32,
    /// An NPS answer (0-10) at or below this is a detractor.
    pub nps_at_most: u32,
    /// A CES answer (1-7) at or above this is a detractor.
    pub ces_at_least: u32,
}

impl Default for DetractorSurveyConfig {
    fn default() -> Self {
        DetractorSurveyConfig { enabled: true, csat_at_most: 2, nps_at_most: 6, ces_at_least: 5 }
    }
}

/// `[moments.high_effort_journey]`: the threshold and the weights of predicted effort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HighEffortConfig {
    /// Whether the moment is detected (the prediction and its agreement are computed anyway).
    pub enabled: bool,
    /// Predicted effort (CES scale 1-7) at which the moment fires.
    pub threshold: f64,
    /// Effort per channel switch between the case's conversations.
    pub channel_switch_weight: f64,
    /// Effort per conversation after the first.
    pub conversation_weight: f64,
    /// Effort per minute of queue wait.
    pub queue_wait_minute_weight: f64,
    /// Effort per call transfer.
    pub transfer_weight: f64,
    /// Effort per abandoned contact.
    pub abandon_weight: f64,
}

impl Default for HighEffortConfig {
    fn default() -> Self {
        HighEffortConfig {
            enabled: true,
            threshold: 5.0,
            channel_switch_weight: 1.0,
            conversation_weight: 0.75,
            queue_wait_minute_weight: 0.05,
            transfer_weight: 0.5,
            abandon_weight: 1.0,
        }
    }
}

/// A setting that cannot work; the message names the key (`moments.…`).
#[derive(Debug, Clone, Error, PartialEq)]
pub enum MomentsConfigError {
    /// The value is below its smallest allowed value.
    #[error("{key}: must be at least {min}")]
    TooSmall {
        /// Full key.
        key: String,
        /// Smallest allowed value.
        min: u64,
    },
    /// The value exceeds its largest sensible value.
    #[error("{key}: must be at most {max}")]
    TooLarge {
        /// Full key.
        key: String,
        /// Largest allowed value.
        max: u64,
    },
    /// A number outside its range (or not finite).
    #[error("{key}: must be a number from {min} to {max}")]
    OutOfRange {
        /// Full key.
        key: String,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// Two settings that cannot hold together.
    #[error("{key}: {reason}")]
    Inconsistent {
        /// Full key of the setting to change.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A tenant override names a key that does not exist.
    #[error("{key}: unknown key")]
    UnknownKey {
        /// Full key.
        key: String,
    },
    /// A tenant override has the wrong type.
    #[error("{key}: must be {expected}")]
    WrongType {
        /// Full key.
        key: String,
        /// What was expected, e.g. "a whole number".
        expected: &'static str,
    },
}

/// Weights of predicted effort, validated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct EffortWeights {
    pub(crate) threshold: f64,
    pub(crate) channel_switch: f64,
    pub(crate) conversation: f64,
    pub(crate) queue_wait_minute: f64,
    pub(crate) transfer: f64,
    pub(crate) abandon: f64,
}

/// One tenant's validated settings, in milliseconds; `None` windows are disabled moments.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Settings {
    pub(crate) lateness_ms: i64,
    pub(crate) cooldown_ms: i64,
    pub(crate) ttl_ms: i64,
    /// How long any state is kept after its last event: the longest window the moments need.
    pub(crate) retention_ms: i64,
    pub(crate) hop_window_ms: Option<i64>,
    /// (count, window).
    pub(crate) repeat: Option<(usize, i64)>,
    pub(crate) sla_enabled: bool,
    pub(crate) sla_chat_ms: i64,
    pub(crate) sla_email_ms: i64,
    pub(crate) sla_social_ms: i64,
    /// (threshold, window).
    pub(crate) sentiment: Option<(f64, i64)>,
    pub(crate) abandon_window_ms: Option<i64>,
    /// (csat at most, nps at most, ces at least).
    pub(crate) detractor: Option<(i32, i32, i32)>,
    pub(crate) effort_enabled: bool,
    pub(crate) effort: EffortWeights,
}

impl Settings {
    /// The first-response SLA of `channel`; phone has none (a call is answered or abandoned).
    pub(crate) fn sla_ms(&self, channel: Channel) -> Option<i64> {
        match channel {
            Channel::Chat => Some(self.sla_chat_ms),
            Channel::Email => Some(self.sla_email_ms),
            Channel::Social => Some(self.sla_social_ms),
            Channel::Phone => None,
        }
    }
}

impl Settings {
    /// The longest an event may leave a timer pending (its longest first-response SLA or
    /// abandon window) plus the allowed lateness: past its latest event by this much, a quiet
    /// tenant's clock has nothing left to fire.
    fn timer_horizon_ms(&self) -> i64 {
        let sla = if self.sla_enabled { self.sla_chat_ms.max(self.sla_email_ms).max(self.sla_social_ms) } else { 0 };
        sla.max(self.abandon_window_ms.unwrap_or(0)).saturating_add(self.lateness_ms)
    }
}

/// Per tenant, how far past its latest event a quiet tenant's clock can still fire a timer
/// (its longest SLA or abandon window, plus the allowed lateness).
#[derive(Debug, Clone, PartialEq)]
pub struct TimerHorizons {
    default: i64,
    tenants: BTreeMap<String, i64>,
}

impl TimerHorizons {
    /// The horizons of `config`'s defaults and tenants.
    pub fn new(config: &MomentsConfig) -> Result<Self, MomentsConfigError> {
        let table = config.resolve()?;
        let tenants = table.tenants.iter().map(|(t, s)| (t.clone(), s.timer_horizon_ms())).collect();
        Ok(TimerHorizons { default: table.default.timer_horizon_ms(), tenants })
    }

    /// `tenant`'s horizon, ms.
    pub fn get(&self, tenant: &str) -> i64 {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// Validated settings of every tenant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SettingsTable {
    pub(crate) default: Settings,
    pub(crate) tenants: BTreeMap<String, Settings>,
}

impl SettingsTable {
    /// The settings of `tenant`.
    pub(crate) fn get(&self, tenant: &str) -> Settings {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

struct Check<'a> {
    prefix: &'a str,
}

impl Check<'_> {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// `value`, checked to be in `min..=max`.
    fn int(&self, key: &str, value: u32, min: u32, max: u32) -> Result<u32, MomentsConfigError> {
        if value < min {
            return Err(MomentsConfigError::TooSmall { key: self.key(key), min: u64::from(min) });
        }
        if value > max {
            return Err(MomentsConfigError::TooLarge { key: self.key(key), max: u64::from(max) });
        }
        Ok(value)
    }

    /// `value` in `min..=max`, converted to milliseconds with `unit_ms`.
    fn ms(&self, key: &str, value: u32, min: u32, max: u32, unit_ms: i64) -> Result<i64, MomentsConfigError> {
        self.int(key, value, min, max).map(|v| i64::from(v) * unit_ms)
    }

    fn num(&self, key: &str, value: f64, min: f64, max: f64) -> Result<f64, MomentsConfigError> {
        if value.is_finite() && (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(MomentsConfigError::OutOfRange { key: self.key(key), min, max })
        }
    }
}

impl MomentsConfig {
    /// Checks every setting, tenant overrides included.
    pub fn validate(&self) -> Result<(), MomentsConfigError> {
        self.resolve().map(|_| ())
    }

    /// Validated settings of the defaults and of every tenant.
    pub(crate) fn resolve(&self) -> Result<SettingsTable, MomentsConfigError> {
        let default = self.settings("moments")?;
        let mut base = serde_json::to_value(MomentsConfig { tenants: BTreeMap::new(), ..self.clone() })
            .map_err(|_| MomentsConfigError::WrongType { key: "moments".into(), expected: "finite numbers" })?;
        if let Value::Object(map) = &mut base {
            map.remove("tenants");
        }
        let mut tenants = BTreeMap::new();
        for (name, overrides) in &self.tenants {
            let prefix = format!("moments.tenants.{name}");
            let mut merged = base.clone();
            overlay(&mut merged, overrides, &prefix)?;
            let config: MomentsConfig = serde_json::from_value(merged).map_err(|_| MomentsConfigError::WrongType {
                key: prefix.clone(),
                expected: "a table of moments settings",
            })?;
            tenants.insert(name.clone(), config.settings(&prefix)?);
        }
        Ok(SettingsTable { default, tenants })
    }

    /// This table's settings (tenants ignored); errors name keys under `prefix`.
    fn settings(&self, prefix: &str) -> Result<Settings, MomentsConfigError> {
        let c = Check { prefix };
        let max_minutes = MAX_DAYS * 24 * 60;
        let max_hours = MAX_DAYS * 24;
        let lateness_ms = c.ms("allowed_lateness_seconds", self.allowed_lateness_seconds, 0, 86_400, SECOND_MS)?;
        let cooldown_ms = c.ms("cooldown_hours", self.cooldown_hours, 0, max_hours, HOUR_MS)?;
        let ttl_ms = c.ms("intervention_ttl_hours", self.intervention_ttl_hours, 1, max_hours, HOUR_MS)?;
        // An in-order event is taken once the tenant's clock is the lateness past it: with a
        // time to live no longer than that, every intervention would come out expired.
        if ttl_ms <= lateness_ms {
            return Err(MomentsConfigError::Inconsistent {
                key: c.key("intervention_ttl_hours"),
                reason: "must be longer than allowed_lateness_seconds (interventions would come out expired)",
            });
        }
        let state_ms = c.ms("state_retention_days", self.state_retention_days, 1, MAX_DAYS, DAY_MS)?;

        let h = &self.channel_hop;
        let hop_window = c.ms("channel_hop.window_minutes", h.window_minutes, 1, max_minutes, MINUTE_MS)?;
        let r = &self.repeat_contact;
        let repeat_count = c.int("repeat_contact.count", r.count, 2, MAX_REPEAT_COUNT)?;
        let repeat_window = c.ms("repeat_contact.window_days", r.window_days, 1, MAX_DAYS, DAY_MS)?;
        let s = &self.first_response_sla;
        let max_seconds = 30 * 86_400;
        let sla_chat_ms = c.ms("first_response_sla.chat_seconds", s.chat_seconds, 1, max_seconds, SECOND_MS)?;
        let sla_email_ms = c.ms("first_response_sla.email_seconds", s.email_seconds, 1, max_seconds, SECOND_MS)?;
        let sla_social_ms = c.ms("first_response_sla.social_seconds", s.social_seconds, 1, max_seconds, SECOND_MS)?;
        let n = &self.negative_sentiment;
        let sentiment_threshold = c.num("negative_sentiment.threshold", n.threshold, -1.0, 1.0)?;
        let sentiment_window = c.ms("negative_sentiment.window_hours", n.window_hours, 1, max_hours, HOUR_MS)?;
        let a = &self.abandoned_contact;
        let abandon_window = c.ms("abandoned_contact.window_minutes", a.window_minutes, 1, max_minutes, MINUTE_MS)?;
        let d = &self.detractor_survey;
        let csat = c.int("detractor_survey.csat_at_most", d.csat_at_most, 1, 5)?;
        let nps = c.int("detractor_survey.nps_at_most", d.nps_at_most, 0, 10)?;
        let ces = c.int("detractor_survey.ces_at_least", d.ces_at_least, 1, 7)?;
        let e = &self.high_effort_journey;
        let effort = EffortWeights {
            // Above the least effort a prediction can be (1): at 1 every case would cross it.
            threshold: c.num("high_effort_journey.threshold", e.threshold, 1.5, 7.0)?,
            channel_switch: c.num("high_effort_journey.channel_switch_weight", e.channel_switch_weight, 0.0, 7.0)?,
            conversation: c.num("high_effort_journey.conversation_weight", e.conversation_weight, 0.0, 7.0)?,
            queue_wait_minute: c.num(
                "high_effort_journey.queue_wait_minute_weight",
                e.queue_wait_minute_weight,
                0.0,
                7.0,
            )?,
            transfer: c.num("high_effort_journey.transfer_weight", e.transfer_weight, 0.0, 7.0)?,
            abandon: c.num("high_effort_journey.abandon_weight", e.abandon_weight, 0.0, 7.0)?,
        };

        // Every window of an enabled moment that looks back, plus the timers that look ahead
        // and the cool-down of what they fire (it starts at their due time, after the profile's
        // last event, and a late detection meets it up to its time to live later), fits in the
        // retention (a disabled moment's settings keep nothing);
        // repeat contacts keep two windows of starts, which a merge recounts.
        // What a timer fires is held back by the cool-down, for as long as a late detection can
        // still come (its time to live behind the clock): kept that long past its due time.
        let fired_kept = cooldown_ms.saturating_add(ttl_ms);
        let retention_ms = [
            Some(state_ms),
            Some(cooldown_ms),
            h.enabled.then_some(hop_window),
            r.enabled.then_some(repeat_window.saturating_mul(2)),
            n.enabled.then_some(sentiment_window),
            a.enabled.then_some(abandon_window.saturating_add(fired_kept)),
            s.enabled.then_some(sla_chat_ms.max(sla_email_ms).max(sla_social_ms).saturating_add(fired_kept)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(state_ms);

        // Counts are at most MAX_REPEAT_COUNT and scores fit their scales: the casts are exact.
        Ok(Settings {
            lateness_ms,
            cooldown_ms,
            ttl_ms,
            retention_ms,
            hop_window_ms: h.enabled.then_some(hop_window),
            repeat: r.enabled.then_some((repeat_count as usize, repeat_window)),
            sla_enabled: s.enabled,
            sla_chat_ms,
            sla_email_ms,
            sla_social_ms,
            sentiment: n.enabled.then_some((sentiment_threshold, sentiment_window)),
            abandon_window_ms: a.enabled.then_some(abandon_window),
            detractor: d.enabled.then_some((csat as i32, nps as i32, ces as i32)),
            effort_enabled: e.enabled,
            effort,
        })
    }
}

/// Writes `over` onto `base` key by key; every key of `over` must exist in `base` with the same type.
fn overlay(base: &mut Value, over: &Value, path: &str) -> Result<(), MomentsConfigError> {
    let wrong = |expected| Err(MomentsConfigError::WrongType { key: path.to_string(), expected });
    match base {
        Value::Object(fields) => {
            let Value::Object(overrides) = over else { return wrong("a table") };
            for (name, value) in overrides {
                let key = format!("{path}.{name}");
                match fields.get_mut(name) {
                    Some(slot) => overlay(slot, value, &key)?,
                    None => return Err(MomentsConfigError::UnknownKey { key }),
                }
            }
            Ok(())
        }
        Value::Bool(_) => match over {
            Value::Bool(_) => {
                *base = over.clone();
                Ok(())
            }
            _ => wrong("true or false"),
        },
        Value::Number(n) if n.is_u64() => match over.as_u64() {
            Some(v) if v > u64::from(u32::MAX) => {
                Err(MomentsConfigError::TooLarge { key: path.to_string(), max: u64::from(u32::MAX) })
            }
            Some(_) => {
                *base = over.clone();
                Ok(())
            }
            None if over.as_i64().is_some() => Err(MomentsConfigError::TooSmall { key: path.to_string(), min: 0 }),
            None => wrong("a whole number"),
        },
        Value::Number(_) => match over {
            Value::Number(_) => {
                *base = over.clone();
                Ok(())
            }
            _ => wrong("a number"),
        },
        // The settings hold no strings, lists or nulls.
        _ => wrong("a table"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(toml_text: &str) -> MomentsConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let c: MomentsConfig = toml::from_str("cooldown_hours = 12").unwrap();
        assert_eq!(c, MomentsConfig { cooldown_hours: 12, ..MomentsConfig::default() });
        let c: MomentsConfig = toml::from_str("[first_response_sla]\nchat_seconds = 60").unwrap();
        assert_eq!(c.first_response_sla.chat_seconds, 60);
        assert_eq!(c.first_response_sla.email_seconds, 14_400);
        assert!(toml::from_str::<MomentsConfig>("cooldown = 3").is_err());
        assert!(toml::from_str::<MomentsConfig>("[channel_hop]\nwindow = 3").is_err());
        MomentsConfig::default().validate().unwrap();
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = MomentsConfig::default().resolve().unwrap().default;
        assert_eq!(s.lateness_ms, 60_000);
        assert_eq!(s.cooldown_ms, DAY_MS);
        assert_eq!(s.ttl_ms, DAY_MS);
        assert_eq!(s.hop_window_ms, Some(HOUR_MS));
        assert_eq!(s.repeat, Some((3, 7 * DAY_MS)));
        assert_eq!((s.sla_chat_ms, s.sla_email_ms, s.sla_social_ms), (120_000, 4 * HOUR_MS, 4 * HOUR_MS));
        assert_eq!(s.sla_ms(Channel::Phone), None);
        assert_eq!(s.sentiment, Some((-0.5, 48 * HOUR_MS)));
        assert_eq!(s.abandon_window_ms, Some(30 * MINUTE_MS));
        assert_eq!(s.detractor, Some((2, 6, 5)));
        assert_eq!(s.effort.threshold, 5.0);
        assert_eq!(s.retention_ms, 14 * DAY_MS);
    }

    /// State is kept for the enabled moments' windows alone (a disabled moment's settings kept
    /// every profile as long as they said), and for two repeat-contact windows, which a merge
    /// recounts.
    #[test]
    fn state_is_kept_for_enabled_moments_and_two_repeat_windows() {
        let settings = |c: MomentsConfig| c.resolve().unwrap().default;
        let mut off = MomentsConfig::default();
        off.repeat_contact.enabled = false;
        off.repeat_contact.window_days = 60;
        off.first_response_sla.enabled = false;
        off.first_response_sla.email_seconds = 30 * 86_400;
        assert_eq!(settings(off).retention_ms, 14 * DAY_MS);
        let mut on = MomentsConfig::default();
        on.repeat_contact.window_days = 10;
        assert_eq!(settings(on).retention_ms, 20 * DAY_MS);
        // A timer's cool-down runs from its due time: an SLA near the retention keeps its
        // breach's cool-down past it.
        let mut long = MomentsConfig::default();
        long.first_response_sla.email_seconds = 30 * 86_400;
        assert_eq!(settings(long).retention_ms, 32 * DAY_MS);
    }

    #[test]
    fn a_tenant_overrides_single_keys_and_keeps_the_rest() {
        let c = tenant(
            "cooldown_hours = 6\n\
             [first_response_sla]\nemail_seconds = 7200\n\
             [tenants.acme.first_response_sla]\nchat_seconds = 60\n\
             [tenants.acme.channel_hop]\nenabled = false\n\
             [tenants.acme.negative_sentiment]\nthreshold = -1\n",
        );
        let table = c.resolve().unwrap();
        let acme = table.get("acme");
        assert_eq!(acme.sla_chat_ms, 60_000);
        // Not repeated in the tenant table: the file's value, not the built-in default.
        assert_eq!(acme.sla_email_ms, 7_200_000);
        assert_eq!(acme.cooldown_ms, 6 * HOUR_MS);
        assert_eq!(acme.hop_window_ms, None);
        assert_eq!(acme.sentiment, Some((-1.0, 48 * HOUR_MS)));
        let other = table.get("globex");
        assert_eq!(other.sla_chat_ms, 120_000);
        assert_eq!(other.hop_window_ms, Some(HOUR_MS));
    }

    #[test]
    fn bad_values_name_their_key() {
        let msg = |c: MomentsConfig| c.validate().unwrap_err().to_string();
        let c = tenant("[tenants.acme.first_response_sla]\nchat_seconds = 0");
        assert_eq!(msg(c), "moments.tenants.acme.first_response_sla.chat_seconds: must be at least 1");
        let c = MomentsConfig { intervention_ttl_hours: 0, ..MomentsConfig::default() };
        assert_eq!(msg(c), "moments.intervention_ttl_hours: must be at least 1");
        let mut c = MomentsConfig::default();
        c.repeat_contact.count = 1;
        assert_eq!(msg(c), "moments.repeat_contact.count: must be at least 2");
        let mut c = MomentsConfig::default();
        c.negative_sentiment.threshold = f64::NAN;
        assert_eq!(msg(c), "moments.negative_sentiment.threshold: must be a number from -1 to 1");
        let mut c = MomentsConfig::default();
        c.detractor_survey.csat_at_most = 6;
        assert_eq!(msg(c), "moments.detractor_survey.csat_at_most: must be at most 5");
        let c = tenant("[tenants.acme.high_effort_journey]\nthreshold = 9.5");
        assert_eq!(msg(c), "moments.tenants.acme.high_effort_journey.threshold: must be a number from 1.5 to 7");
        // The least effort a prediction can be: every case would cross it.
        let c = tenant("[tenants.acme.high_effort_journey]\nthreshold = 1.0");
        assert_eq!(msg(c), "moments.tenants.acme.high_effort_journey.threshold: must be a number from 1.5 to 7");
        let c =
            MomentsConfig { allowed_lateness_seconds: 86_400, intervention_ttl_hours: 1, ..MomentsConfig::default() };
        assert_eq!(
            msg(c),
            "moments.intervention_ttl_hours: must be longer than allowed_lateness_seconds (interventions would come out expired)"
        );
        let c = tenant("[tenants.acme.channel_hop]\nwindow = 5");
        assert_eq!(msg(c), "moments.tenants.acme.channel_hop.window: unknown key");
        let c = tenant("[tenants.acme]\ntenants = {}");
        assert_eq!(msg(c), "moments.tenants.acme.tenants: unknown key");
        let c = tenant("[tenants.acme.channel_hop]\nenabled = \"no\"");
        assert_eq!(msg(c), "moments.tenants.acme.channel_hop.enabled: must be true or false");
        let c = tenant("[tenants.acme.repeat_contact]\nwindow_days = 1.5");
        assert_eq!(msg(c), "moments.tenants.acme.repeat_contact.window_days: must be a whole number");
        let c = tenant("[tenants.acme.repeat_contact]\nwindow_days = -2");
        assert_eq!(msg(c), "moments.tenants.acme.repeat_contact.window_days: must be at least 0");
        let c = tenant("[tenants.acme]\nchannel_hop = 3");
        assert_eq!(msg(c), "moments.tenants.acme.channel_hop: must be a table");
        let c = tenant("[tenants.acme.abandoned_contact]\nwindow_minutes = 99999999999");
        assert_eq!(msg(c), "moments.tenants.acme.abandoned_contact.window_minutes: must be at most 4294967295");
        let c = tenant("[tenants]\nacme = 3");
        assert_eq!(msg(c), "moments.tenants.acme: must be a table");
    }

    #[test]
    fn timer_horizons_are_the_longest_timer_plus_the_lateness_per_tenant() {
        let config: MomentsConfig = toml::from_str(
            "[first_response_sla]\nemail_seconds = 7200\n[tenants.fast.first_response_sla]\nemail_seconds = 600\nsocial_seconds = 600",
        )
        .unwrap();
        let h = TimerHorizons::new(&config).unwrap();
        let d = MomentsConfig::default();
        let abandon = i64::from(d.abandoned_contact.window_minutes) * 60_000;
        let lateness = i64::from(d.allowed_lateness_seconds) * 1000;
        assert_eq!(
            h.get("acme"),
            7_200_000.max(i64::from(d.first_response_sla.social_seconds) * 1000).max(abandon) + lateness
        );
        assert_eq!(h.get("fast"), 600_000.max(abandon) + lateness);
    }
}
