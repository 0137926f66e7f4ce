//! The versioned message that carries an accepted lead from the receiver to the lead-router.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Lead, LeadId};
use crate::error::{ErrorClass, Retryable};

/// Message kind for an accepted lead.
pub const LEAD_ACCEPTED: &str = "lead.accepted";

/// An accepted lead on the leads queue. `version` lets consumers refuse shapes they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadEnvelope {
    /// Envelope schema version; see [`LeadEnvelope::VERSION`].
    pub version: u32,
    /// Always [`LEAD_ACCEPTED`] for now.
    pub kind: String,
    pub lead_id: LeadId,
    /// The receiver's idempotency key for the request that carried this lead.
    pub idempotency_key: String,
    pub received_at: DateTime<Utc>,
    /// The `{source}` path segment the lead was posted to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub lead: Lead,
}

/// Why a queue message is not a lead envelope Fluxo can process. Never retryable.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message is not a lead envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("envelope version {0} is not supported (this build reads version {supported})", supported = LeadEnvelope::VERSION)]
    UnsupportedVersion(u32),
}

impl Retryable for EnvelopeError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl LeadEnvelope {
    /// The envelope version this build writes and reads.
    pub const VERSION: u32 = 1;

    /// Wraps a lead in a current-version envelope.
    pub fn new(
        lead_id: LeadId,
        idempotency_key: String,
        received_at: DateTime<Utc>,
        endpoint: Option<String>,
        lead: Lead,
    ) -> Self {
        LeadEnvelope {
            version: Self::VERSION,
            kind: LEAD_ACCEPTED.to_string(),
            lead_id,
            idempotency_key,
            received_at,
            endpoint,
            lead,
        }
    }

    /// Serializes the envelope as the queue message body.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses a queue message body, refusing versions this build does not know.
    pub fn from_json(body: &str) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
        }
        let probe: Probe = serde_json::from_str(body)?;
        if probe.version != Self::VERSION {
            return Err(EnvelopeError::UnsupportedVersion(probe.version));
        }
        Ok(serde_json::from_str(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn sample() -> LeadEnvelope {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let lead = Lead::with_email(Email::parse("joao@exemplo.com").unwrap());
        LeadEnvelope::new(
            LeadId::new(at, 1),
            "k".into(),
            at,
            Some("site".into()),
            lead,
        )
    }

    #[test]
    fn envelope_round_trips_through_json() {
        let envelope = sample();
        let parsed = LeadEnvelope::from_json(&envelope.to_json().unwrap()).unwrap();
        assert_eq!(parsed, envelope);
    }

    #[test]
    fn unknown_envelope_version_is_refused_permanently() {
        let body = sample()
            .to_json()
            .unwrap()
            .replace("\"version\":1", "\"version\":9");
        let err = LeadEnvelope::from_json(&body).unwrap_err();
        assert!(matches!(err, EnvelopeError::UnsupportedVersion(9)));
        assert!(!err.is_retryable());
    }
}
