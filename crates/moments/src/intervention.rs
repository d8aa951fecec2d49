//! The detector's output record, field for field `schemas/intervention.avsc`.

use std::fmt;

use omnistitch_model::{Channel, EventTime};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of intervention ids (UUIDv5).
const INTERVENTION_NAMESPACE: Uuid = Uuid::from_u128(0x6f6d_6e69_7374_6974_6368_6d6f_6d65_6e74);

/// The seven micro-moments of `docs/moments.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentType {
    /// A new conversation on another channel for an open case, soon after its last contact.
    ChannelHop,
    /// The `count`-th conversation within the window without a resolution.
    RepeatContact,
    /// An inbound message, post, DM or chat without a response within the channel's SLA.
    FirstResponseSlaBreach,
    /// A negative inbound event soon after a support contact.
    NegativeSentimentAfterContact,
    /// An abandoned call or chat not followed by a successful contact.
    AbandonedContact,
    /// A survey answer of a detractor.
    DetractorSurvey,
    /// A case whose predicted effort reached the threshold before any survey answer.
    HighEffortJourney,
    /// A symbol this reader does not know (written by a newer producer); never detected.
    #[serde(rename = "UNKNOWN", other)]
    Unknown,
}

impl MomentType {
    /// Every detected moment, in the order of the contract's table.
    pub const ALL: [MomentType; 7] = [
        MomentType::ChannelHop,
        MomentType::RepeatContact,
        MomentType::FirstResponseSlaBreach,
        MomentType::NegativeSentimentAfterContact,
        MomentType::AbandonedContact,
        MomentType::DetractorSurvey,
        MomentType::HighEffortJourney,
    ];

    /// The contract's name, e.g. `channel_hop` (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            MomentType::Unknown => "UNKNOWN",
            MomentType::ChannelHop => "channel_hop",
            MomentType::RepeatContact => "repeat_contact",
            MomentType::FirstResponseSlaBreach => "first_response_sla_breach",
            MomentType::NegativeSentimentAfterContact => "negative_sentiment_after_contact",
            MomentType::AbandonedContact => "abandoned_contact",
            MomentType::DetractorSurvey => "detractor_survey",
            MomentType::HighEffortJourney => "high_effort_journey",
        }
    }

    /// The action the contract recommends for this moment.
    pub fn action(self) -> Action {
        match self {
            MomentType::Unknown => Action::Unknown,
            MomentType::ChannelHop => Action::WarmHandoff,
            MomentType::RepeatContact => Action::SeniorOutreach,
            MomentType::FirstResponseSlaBreach => Action::RespondNow,
            MomentType::NegativeSentimentAfterContact => Action::RecoveryOutreach,
            MomentType::AbandonedContact => Action::OfferCallback,
            MomentType::DetractorSurvey => Action::ServiceRecovery,
            MomentType::HighEffortJourney => Action::EffortRecovery,
        }
    }

    /// Position in [`MomentType::ALL`] (`None` for [`MomentType::Unknown`]).
    pub(crate) fn index(self) -> Option<usize> {
        MomentType::ALL.iter().position(|&m| m == self)
    }
}

impl fmt::Display for MomentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an intervention is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
    /// A symbol this reader does not know.
    #[serde(other)]
    Unknown,
}

/// What the brand should do about a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Hand the case over with its history to the agent on the new channel.
    WarmHandoff,
    /// A senior agent reaches out.
    SeniorOutreach,
    /// Answer the waiting customer now.
    RespondNow,
    /// Reach out to recover the relationship.
    RecoveryOutreach,
    /// Call the customer back.
    OfferCallback,
    /// Follow up on the bad survey.
    ServiceRecovery,
    /// Simplify the journey: one owner, no more hand-offs.
    EffortRecovery,
    /// A symbol this reader does not know.
    #[serde(rename = "UNKNOWN", other)]
    Unknown,
}

/// One event that supports an intervention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Evidence")]
pub struct Evidence {
    /// The event's id.
    pub event_id: String,
    /// Its channel.
    pub channel: Channel,
}

/// `Intervention`: a micro-moment and what to do about it (topic `cx.interventions.v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Intervention")]
pub struct Intervention {
    /// UUIDv5 of (tenant, moment type, key event id).
    pub intervention_id: String,
    /// The event that made the moment true (see `docs/moments.md`, "key event").
    #[serde(default)]
    pub key_event_id: String,
    /// Tenant.
    pub tenant: String,
    /// Profile (UUID) the moment happened to, as known when it was detected.
    pub profile_id: String,
    /// Which moment.
    pub moment_type: MomentType,
    /// How urgent.
    pub priority: Priority,
    /// Event time at which the moment became true, ms.
    pub detected_at: EventTime,
    /// Why, for a person; never contains an identifier or message text.
    pub reason: String,
    /// Case id, when the moment belongs to a case.
    pub case_id: Option<String>,
    /// Supporting events, the key event last.
    pub evidence: Vec<Evidence>,
    /// What to do.
    pub recommended_action: Action,
    /// Where to do it.
    pub recommended_channel: Channel,
    /// After this event time the intervention is stale, ms.
    pub expires_at: EventTime,
}

impl Intervention {
    /// The id of the intervention for `moment` keyed by `event_id` of `tenant`: the same inputs
    /// give the same id, whatever the arrival order or the profile.
    pub fn derive_id(tenant: &str, moment: MomentType, event_id: &str) -> String {
        let moment = moment.as_str();
        let mut name = Vec::with_capacity(tenant.len() + moment.len() + event_id.len() + 2);
        name.extend_from_slice(tenant.as_bytes());
        name.push(0x1f);
        name.extend_from_slice(moment.as_bytes());
        name.push(0x1f);
        name.extend_from_slice(event_id.as_bytes());
        Uuid::new_v5(&INTERVENTION_NAMESPACE, &name).hyphenated().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_tenant_moment_and_event_only() {
        let id = Intervention::derive_id("acme", MomentType::ChannelHop, "e1");
        assert_eq!(id, Intervention::derive_id("acme", MomentType::ChannelHop, "e1"));
        assert_ne!(id, Intervention::derive_id("acme", MomentType::RepeatContact, "e1"));
        assert_ne!(id, Intervention::derive_id("globex", MomentType::ChannelHop, "e1"));
        assert_eq!(Uuid::parse_str(&id).map(|u| u.get_version_num()), Ok(5));
    }

    #[test]
    fn names_are_the_contract_s() {
        let json = serde_json::to_string(&MomentType::ALL).unwrap();
        assert_eq!(
            json,
            r#"["channel_hop","repeat_contact","first_response_sla_breach","negative_sentiment_after_contact","abandoned_contact","detractor_survey","high_effort_journey"]"#
        );
        for m in MomentType::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
            assert_eq!(serde_json::to_value(m.action()).unwrap().as_str().map(|s| s.contains('_')), Some(true));
        }
        assert_eq!(serde_json::to_string(&Priority::Critical).unwrap(), r#""CRITICAL""#);
        // Newer producers' symbols read as UNKNOWN.
        assert_eq!(serde_json::from_str::<MomentType>(r#""brand_new""#).unwrap(), MomentType::Unknown);
        assert_eq!(serde_json::from_str::<Priority>(r#""URGENT""#).unwrap(), Priority::Unknown);
        assert_eq!(serde_json::from_str::<Action>(r#""do_more""#).unwrap(), Action::Unknown);
    }
}
