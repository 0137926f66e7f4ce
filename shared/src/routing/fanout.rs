//! Fan-out messages: one per destination action, for the email queue and the audience queue (versioned).
//!
//! Consumers (email-trigger, audience-sync) read these. Each message carries the idempotency key of the
//! downstream effect, `effect_key(profile_key, destination, action)`: one enrollment per person and
//! sequence, one audience add per person and audience, however many times the person submits a form.
//! The consumer's ledger is the exactly-once authority for that key: the router may send a message
//! again (every new submission fans out again, so a consent granted later enrolls the person then),
//! and dedups only the redeliveries of one submission ([`FanOut::dispatch_key`]).
//!
//! A submission that refuses consent (a withdrawal) fans out `email.unsubscribe` and one
//! `audience.remove` per audience instead, with `reason: "withdrawal"`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::profile::Profile;
use crate::domain::LeadId;
use crate::error::{ErrorClass, Retryable};
use crate::idempotency::effect_key;

/// Kind of an email-queue message: enroll a person in a sequence.
pub const EMAIL_ENROLL: &str = "email.enroll";
/// Kind of an email-queue message: unsubscribe a person on every email platform they were sent to
/// (consent withdrawn, or erasure).
pub const EMAIL_UNSUBSCRIBE: &str = "email.unsubscribe";
/// Kind of an audience-queue message: add a person to an ad audience.
pub const AUDIENCE_ADD: &str = "audience.add";
/// Kind of an audience-queue message: remove a person from an ad audience.
pub const AUDIENCE_REMOVE: &str = "audience.remove";
/// `reason` of a removal or unsubscribe because the person withdrew consent.
pub const REASON_WITHDRAWAL: &str = "withdrawal";
/// `reason` of a removal or unsubscribe because the person asked to be erased.
pub const REASON_ERASURE: &str = "erasure";

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
    /// Why a person is unsubscribed or removed: [`REASON_WITHDRAWAL`] or [`REASON_ERASURE`]. `None` for
    /// enrollments and adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
            reason: None,
        }
    }
}

/// Enroll a person in an email sequence. Body of a message on the email queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAction {
    /// Version [`EmailAction::VERSION`], kind [`EMAIL_ENROLL`] (the enrollment's key, person x sequence)
    /// or [`EMAIL_UNSUBSCRIBE`] (with its `reason`; `sequence` is empty: every platform the person was
    /// sent to).
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
    /// Version [`AudienceAction::VERSION`], kind [`AUDIENCE_ADD`] (the add's key, person x audience) or
    /// [`AUDIENCE_REMOVE`] (with its `reason`).
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

impl FanOut {
    /// The router's own dedup key for sending one message of one submission: `effect` is the
    /// message's effect key. A redelivery of the same submission sends nothing twice; a new submission
    /// sends again, and the consumer's ledger decides whether anything is left to do.
    pub fn dispatch_key(lead_id: &LeadId, effect: &str) -> String {
        effect_key(lead_id.as_str(), effect, "dispatch")
    }
}

/// Whether this submission is a withdrawal: the profile's latest consent answer is a refusal carried by
/// this very submission.
pub fn is_withdrawal(profile: &Profile, lead_id: &LeadId) -> bool {
    profile
        .consent()
        .is_some_and(|c| !c.granted && c.lead_id == *lead_id)
}

fn header_for(
    version: u32,
    kind: &str,
    (profile_key, email): (&str, &crate::domain::Email),
    lead_id: &LeadId,
    (destination, action): (&str, &str),
    (consent, reason): (ConsentSnapshot, &str),
    now: DateTime<Utc>,
) -> ActionHeader {
    ActionHeader {
        version,
        kind: kind.to_string(),
        effect_key: effect_key(profile_key, destination, action),
        lead_id: lead_id.clone(),
        profile_key: profile_key.to_string(),
        email: email.clone(),
        segment: None,
        consent,
        created_at: now,
        reason: Some(reason.to_string()),
    }
}

/// The `email.unsubscribe` message of a person (withdrawal or erasure): one per person and submission
/// (or erasure request), whatever the sequences; email-trigger unsubscribes on every platform it sent to.
pub fn unsubscribe(
    profile_key: &str,
    email: &crate::domain::Email,
    lead_id: &LeadId,
    consent: ConsentSnapshot,
    reason: &str,
    now: DateTime<Utc>,
) -> EmailAction {
    EmailAction {
        header: header_for(
            EmailAction::VERSION,
            EMAIL_UNSUBSCRIBE,
            (profile_key, email),
            lead_id,
            ("email:*", &format!("unsubscribe:{}", lead_id.as_str())),
            (consent, reason),
            now,
        ),
        first_name: None,
        last_name: None,
        sequence: String::new(),
        score: 0,
    }
}

/// The `audience.remove` message of a person for one audience (withdrawal or erasure).
pub fn audience_remove(
    profile_key: &str,
    email: &crate::domain::Email,
    lead_id: &LeadId,
    audience: &str,
    consent: ConsentSnapshot,
    reason: &str,
    now: DateTime<Utc>,
) -> AudienceAction {
    AudienceAction {
        header: header_for(
            AudienceAction::VERSION,
            AUDIENCE_REMOVE,
            (profile_key, email),
            lead_id,
            (
                &AudienceAction::destination(audience),
                &format!("remove:{}", lead_id.as_str()),
            ),
            (consent, reason),
            now,
        ),
        phone: None,
        audience: audience.to_string(),
    }
}

/// Builds one message per sequence and per audience of the profile's decision; for a withdrawal, one
/// `email.unsubscribe` and one `audience.remove` per audience instead.
pub fn plan(profile: &Profile, lead_id: &LeadId, now: DateTime<Utc>) -> FanOut {
    let Some(decision) = &profile.decision else {
        return FanOut::default();
    };
    if is_withdrawal(profile, lead_id) {
        let key = profile.key();
        let consent = ConsentSnapshot::of(profile);
        let email = vec![unsubscribe(
            &key,
            &profile.email,
            lead_id,
            consent.clone(),
            REASON_WITHDRAWAL,
            now,
        )];
        let audience = decision
            .audiences
            .iter()
            .map(|a| {
                audience_remove(
                    &key,
                    &profile.email,
                    lead_id,
                    a,
                    consent.clone(),
                    REASON_WITHDRAWAL,
                    now,
                )
            })
            .collect();
        return FanOut { email, audience };
    }
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

    #[test]
    fn a_withdrawal_fans_out_an_unsubscribe_and_removals_with_their_reason() {
        let (mut p, id) = routed();
        p.consent_history
            .push(crate::routing::profile::ConsentEvent {
                granted: false,
                at: p.created_at,
                text: None,
                lead_id: id.clone(),
            });
        let plan = plan(&p, &id, p.created_at);
        assert_eq!(plan.email.len(), 1);
        assert_eq!(plan.email[0].header.kind, EMAIL_UNSUBSCRIBE);
        assert_eq!(
            plan.email[0].header.reason.as_deref(),
            Some(REASON_WITHDRAWAL)
        );
        assert_eq!(plan.audience.len(), 2);
        assert!(
            plan.audience
                .iter()
                .all(|a| a.header.kind == AUDIENCE_REMOVE
                    && a.header.reason.as_deref() == Some(REASON_WITHDRAWAL))
        );
        let body = serde_json::to_string(&plan.audience[0]).unwrap();
        assert!(body.contains(r#""reason":"withdrawal""#), "{body}");
        // An older refusal is not this submission's withdrawal: a new submission enrolls again.
        let later = LeadId::new(p.created_at, 9);
        assert!(!is_withdrawal(&p, &later));
    }

    #[test]
    fn each_submission_has_its_own_dispatch_key_for_the_same_effect() {
        let (p, id) = routed();
        let a = plan(&p, &id, p.created_at);
        let other = LeadId::new(p.created_at, 2);
        assert_ne!(
            FanOut::dispatch_key(&id, &a.email[0].header.effect_key),
            FanOut::dispatch_key(&other, &a.email[0].header.effect_key)
        );
        let body = serde_json::to_string(&a.email[0]).unwrap();
        assert!(
            !body.contains("reason"),
            "no reason on an enrollment: {body}"
        );
    }
}
