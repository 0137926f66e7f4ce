//! Fan-out messages: one per destination action, for the email queue and the audience queue (versioned).
//!
//! Consumers (email-trigger, audience-sync) read these. Each message carries the idempotency key of the
//! downstream effect, `effect_key(profile_key, destination, action)`: one enrollment per person and
//! sequence, one audience add per person and audience, however many times the person submits a form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::profile::Profile;
use crate::domain::LeadId;
use crate::error::{ErrorClass, Retryable};
use crate::idempotency::effect_key;

/// Kind of an email-queue message: enroll a person in a sequence.
pub const EMAIL_ENROLL: &str = "email.enroll";
/// Kind of an audience-queue message: add a person to an ad audience.
pub const AUDIENCE_ADD: &str = "audience.add";

/// The person's consent as the router saw it, for the consumers' consent gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentSnapshot {
    /// `granted`, `refused` or `unknown` (never answered).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl ConsentSnapshot {
    /// The profile's current consent.
    pub fn of(profile: &Profile) -> Self {
        match profile.consent() {
            Some(c) => ConsentSnapshot {
                status: if c.granted { "granted" } else { "refused" }.to_string(),
                at: Some(c.at),
                text: c.text.clone(),
            },
            None => ConsentSnapshot {
                status: "unknown".to_string(),
                at: None,
                text: None,
            },
        }
    }

    /// Whether marketing is allowed.
    pub fn is_granted(&self) -> bool {
        self.status == "granted"
    }
}

/// What every fan-out message carries, whatever its queue: version, kind, the effect's idempotency key,
/// who it is about and why. Flattened into each action's JSON (the wire format has these at the top).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionHeader {
    /// Schema version; see the action's `VERSION`.
    pub version: u32,
    /// The message kind, e.g. [`EMAIL_ENROLL`] or [`AUDIENCE_ADD`].
    pub kind: String,
    /// Idempotency key of the downstream effect (person x destination).
    pub effect_key: String,
    /// The submission that triggered it.
    pub lead_id: LeadId,
    /// The profile's key (SHA-256 of the email).
    pub profile_key: String,
    /// Normalized email; audience consumers hash it per platform rules.
    pub email: crate::domain::Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub consent: ConsentSnapshot,
    pub created_at: DateTime<Utc>,
}

impl ActionHeader {
    /// The header of a message about `profile`, for the effect `action` at `destination`.
    pub fn new(
        version: u32,
        kind: &str,
        profile: &Profile,
        lead_id: &LeadId,
        (destination, action): (&str, &str),
        now: DateTime<Utc>,
    ) -> Self {
        let key = profile.key();
        ActionHeader {
            version,
            kind: kind.to_string(),
            effect_key: effect_key(&key, destination, action),
            lead_id: lead_id.clone(),
            profile_key: key,
            email: profile.email.clone(),
            segment: profile.decision.as_ref().and_then(|d| d.segment.clone()),
            consent: ConsentSnapshot::of(profile),
            created_at: now,
        }
    }
}

/// Enroll a person in an email sequence. Body of a message on the email queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAction {
    /// Version [`EmailAction::VERSION`], kind [`EMAIL_ENROLL`], the enrollment's key (person x sequence).
    #[serde(flatten)]
    pub header: ActionHeader,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub sequence: String,
    pub score: i64,
}

impl EmailAction {
    /// The version this build writes and reads.
    pub const VERSION: u32 = 1;
    /// The destination name used in the effect key.
    pub fn destination(sequence: &str) -> String {
        format!("email:{sequence}")
    }
}

/// Add a person to an ad audience. Body of a message on the audience queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceAction {
    /// Version [`AudienceAction::VERSION`], kind [`AUDIENCE_ADD`], the add's key (person x audience).
    #[serde(flatten)]
    pub header: ActionHeader,
    /// E.164 (or digits) phone, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub audience: String,
}

impl AudienceAction {
    /// The version this build writes and reads.
    pub const VERSION: u32 = 1;
    /// The destination name used in the effect key.
    pub fn destination(audience: &str) -> String {
        format!("audience:{audience}")
    }
}

/// A fan-out message that is not one this build can read. Never retryable.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("message is not a fan-out action: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("action version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
}

impl Retryable for ActionError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

fn parse_versioned<T: for<'de> Deserialize<'de>>(
    body: &str,
    supported: u32,
) -> Result<T, ActionError> {
    #[derive(Deserialize)]
    struct Probe {
        version: u32,
    }
    let probe: Probe = serde_json::from_str(body)?;
    if probe.version != supported {
        return Err(ActionError::UnsupportedVersion {
            found: probe.version,
            supported,
        });
    }
    Ok(serde_json::from_str(body)?)
}

impl EmailAction {
    /// Parses a queue message body, refusing unknown versions.
    pub fn from_json(body: &str) -> Result<Self, ActionError> {
        parse_versioned(body, Self::VERSION)
    }
}

impl AudienceAction {
    /// Parses a queue message body, refusing unknown versions.
    pub fn from_json(body: &str) -> Result<Self, ActionError> {
        parse_versioned(body, Self::VERSION)
    }
}

/// The fan-out of one routed lead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOut {
    pub email: Vec<EmailAction>,
    pub audience: Vec<AudienceAction>,
}

/// Builds one message per sequence and per audience of the profile's decision.
pub fn plan(profile: &Profile, lead_id: &LeadId, now: DateTime<Utc>) -> FanOut {
    let Some(decision) = &profile.decision else {
        return FanOut::default();
    };
    let email = decision
        .sequences
        .iter()
        .map(|sequence| EmailAction {
            header: ActionHeader::new(
                EmailAction::VERSION,
                EMAIL_ENROLL,
                profile,
                lead_id,
                (&EmailAction::destination(sequence), "enroll"),
                now,
            ),
            first_name: profile.display_first_name().map(str::to_string),
            last_name: profile.field("last_name").map(str::to_string),
            sequence: sequence.clone(),
            score: decision.score,
        })
        .collect();
    let audience = decision
        .audiences
        .iter()
        .map(|audience| AudienceAction {
            header: ActionHeader::new(
                AudienceAction::VERSION,
                AUDIENCE_ADD,
                profile,
                lead_id,
                (&AudienceAction::destination(audience), "add"),
                now,
            ),
            phone: profile.field("phone").map(str::to_string),
            audience: audience.clone(),
        })
        .collect();
    FanOut { email, audience }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, Lead};
    use crate::envelope::LeadEnvelope;
    use crate::routing::rules::Decision;

    fn routed() -> (Profile, LeadId) {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let id = LeadId::new(at, 1);
        let lead = Lead::with_email(Email::parse("joao@exemplo.com").unwrap());
        let mut p = Profile::new(
            &LeadEnvelope::new(id.clone(), "k".into(), at, None, lead),
            at,
        );
        p.decision = Some(Decision {
            segment: Some("geral".into()),
            sequences: vec!["nutricao_geral".into()],
            audiences: vec!["leads_qualificados".into(), "b".into()],
            ..Decision::default()
        });
        (p, id)
    }

    #[test]
    fn one_message_per_sequence_and_per_audience() {
        let (p, id) = routed();
        let plan = plan(&p, &id, p.created_at);
        assert_eq!(plan.email.len(), 1);
        assert_eq!(plan.audience.len(), 2);
        assert_eq!(plan.email[0].header.consent.status, "unknown");
    }

    #[test]
    fn effect_keys_are_per_person_and_destination() {
        let (p, id) = routed();
        let a = plan(&p, &id, p.created_at);
        let other_submission = LeadId::new(p.created_at, 2);
        let b = plan(&p, &other_submission, p.created_at);
        assert_eq!(a.email[0].header.effect_key, b.email[0].header.effect_key);
        assert_ne!(
            a.audience[0].header.effect_key,
            a.audience[1].header.effect_key
        );
    }

    #[test]
    fn actions_round_trip_and_refuse_unknown_versions() {
        let (p, id) = routed();
        let plan = plan(&p, &id, p.created_at);
        let body = serde_json::to_string(&plan.email[0]).unwrap();
        assert_eq!(EmailAction::from_json(&body).unwrap(), plan.email[0]);
        let body = serde_json::to_string(&plan.audience[0]).unwrap();
        assert_eq!(AudienceAction::from_json(&body).unwrap(), plan.audience[0]);
        let future = body.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            AudienceAction::from_json(&future),
            Err(ActionError::UnsupportedVersion { found: 2, .. })
        ));
    }
}
