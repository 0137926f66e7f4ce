//! Email-marketing connectors: Mailchimp, Brevo, RD Station Marketing and a signed webhook, plus the
//! types email-trigger hands them and the pure recommendation logic.
//!
//! Each vendor folder follows the connector contract (the `crm/` shape): `config.rs` (typed, secrets
//! by reference), `request.rs` (pure request building and reply classification, unit-tested against the
//! vendor's documented shape) and `client.rs` (sending through [`crate::connector`]). `connector.rs`
//! builds the configured platforms and dispatches each job to its vendor.

pub mod brevo;
pub mod mailchimp;
pub mod messages;
pub mod ports;
pub mod rdstation;
pub mod recommend;
pub mod webhook;

#[cfg(feature = "http-client")]
mod connector;
#[cfg(feature = "http-client")]
pub mod send;
#[cfg(feature = "http-client")]
pub use connector::{EmailPlatforms, EmailSetupError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crm::RecordedRequest;
use crate::domain::Email;
use crate::routing::fanout::ConsentSnapshot;

/// An email platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Mailchimp,
    Brevo,
    Rdstation,
    Webhook,
}

impl Platform {
    /// Every platform, in a fixed order.
    pub const ALL: [Platform; 4] = [
        Platform::Mailchimp,
        Platform::Brevo,
        Platform::Rdstation,
        Platform::Webhook,
    ];

    /// The config and record name: `mailchimp`, `brevo`, `rdstation`, `webhook`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Mailchimp => "mailchimp",
            Platform::Brevo => "brevo",
            Platform::Rdstation => "rdstation",
            Platform::Webhook => "webhook",
        }
    }

    /// The platform of a record name.
    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// The person, as the platforms see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

/// A product, as `POST /events` takes it and recommendations carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The shop's product id.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// ISO 4217 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// What email-trigger asks one platform to do for one person.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Start a sequence: upsert the contact and apply the sequence's platform action.
    Enroll {
        sequence: String,
        consent: ConsentSnapshot,
    },
    /// Unsubscribe the person (consent withdrawn or erasure): `reason` is recorded and sent along.
    Unsubscribe { reason: String },
    /// Trigger a recommendation with these products, most recent first.
    Recommend {
        event_name: String,
        products: Vec<Product>,
        at: DateTime<Utc>,
    },
    /// Delete the person where the platform allows it.
    Erase,
}

impl Operation {
    /// Short name for records and webhook event types.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Enroll { .. } => "enroll",
            Operation::Unsubscribe { .. } => "unsubscribe",
            Operation::Recommend { .. } => "recommend",
            Operation::Erase => "erase",
        }
    }
}

/// One platform call to make: the idempotency key of the effect, the person and the operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The effect key: sent as the webhook's `webhook-id`, so a receiver can dedupe.
    pub key: String,
    pub contact: Contact,
    pub operation: Operation,
}

/// A successful call to one platform.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmailReceipt {
    /// The requests that would have been sent, in dry-run; empty when sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<RecordedRequest>,
    /// What the platform did, when it is worth recording (`already unsubscribed`, `not supported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One HTTP call of a platform operation, as a vendor's `request.rs` builds it: no credentials (the
/// client adds them), so it is also what dry-run records.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: &'static str,
    pub url: String,
    /// Headers other than the credentials and `content-type`.
    pub headers: Vec<(String, String)>,
    /// JSON body, if any.
    pub body: Option<serde_json::Value>,
    /// What the call is for, in failure reasons: `upsert member`, `apply tags`...
    pub purpose: &'static str,
}

impl Call {
    /// A call with a JSON body.
    pub fn json(
        method: &'static str,
        url: String,
        body: serde_json::Value,
        purpose: &'static str,
    ) -> Self {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: Some(body),
            purpose,
        }
    }

    /// The call as dry-run records it, with the credentials shown as `auth`.
    pub fn recorded(&self, auth: &[(&str, &str)]) -> RecordedRequest {
        let mut headers: Vec<(String, String)> = auth
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if self.body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        headers.extend(self.headers.iter().cloned());
        RecordedRequest {
            method: self.method.to_string(),
            url: self.url.clone(),
            headers,
            body: self.body.clone().unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Lowercase hex MD5 of the lowercased email: Mailchimp's `subscriber_hash`.
pub fn subscriber_hash(email: &Email) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(email.as_str().to_lowercase().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscriber_hash_is_the_md5_of_the_lowercased_email() {
        // MD5("urist.mcvankab@freddiesjokes.com"), Mailchimp's documentation example.
        let email = Email::parse("Urist.McVankab@freddiesjokes.com").unwrap();
        assert_eq!(subscriber_hash(&email), "62eeb292278cc15f5817cb78f7790b08");
    }

    #[test]
    fn platforms_round_trip_their_names() {
        for p in Platform::ALL {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
        }
    }
}
