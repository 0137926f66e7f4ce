//! Email-queue messages besides the router's fan-out ([`crate::routing::fanout`]): e-commerce events from
//! `POST /events` and the delayed recommendation trigger email-trigger sends itself. Versioned JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Product;
use crate::domain::Email;
use crate::routing::fanout::ActionError;

/// Kind of a product view.
pub const PRODUCT_VIEWED: &str = "commerce.product_viewed";
/// Kind of a completed order.
pub const ORDER_COMPLETED: &str = "commerce.order_completed";
/// Kind of the delayed message that closes a view window and triggers its recommendation.
pub const EMAIL_RECOMMEND: &str = "email.recommend";

/// The e-commerce event kinds `POST /events` accepts, by their `event` name.
pub const EVENT_NAMES: [(&str, &str); 2] = [
    ("product_viewed", PRODUCT_VIEWED),
    ("order_completed", ORDER_COMPLETED),
];

/// An e-commerce event, as the receiver queues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommerceEvent {
    /// Schema version; see [`CommerceEvent::VERSION`].
    pub version: u32,
    /// [`PRODUCT_VIEWED`] or [`ORDER_COMPLETED`].
    pub kind: String,
    /// The intake id (a ULID): a redelivered event counts once.
    pub event_id: String,
    /// Who: an email ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// ... or a shop's customer id Fluxo has linked to an email (an event with both links them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The product viewed, or the products ordered.
    pub products: Vec<Product>,
    /// When it happened (the shop's time, else the time it was received).
    pub occurred_at: DateTime<Utc>,
}

impl CommerceEvent {
    /// The version this build writes and reads.
    pub const VERSION: u32 = 1;
}

/// Closes a person's view window: email-trigger sends it to itself, delayed by the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecommendAction {
    pub version: u32,
    /// Always [`EMAIL_RECOMMEND`].
    pub kind: String,
    pub profile_key: String,
    /// The window's id (its start, ms): one recommendation per window at most.
    pub window_id: i64,
}

impl RecommendAction {
    /// The version this build writes and reads.
    pub const VERSION: u32 = 1;
}

/// Any message of the email queue.
#[derive(Debug, Clone, PartialEq)]
pub enum EmailMessage {
    Action(crate::routing::fanout::EmailAction),
    Commerce(CommerceEvent),
    Recommend(RecommendAction),
}

impl EmailMessage {
    /// Parses a message body by its `kind`, refusing unknown kinds and versions.
    pub fn from_json(body: &str) -> Result<Self, ActionError> {
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
            kind: String,
        }
        let probe: Probe = serde_json::from_str(body)?;
        let check = |supported: u32| {
            if probe.version == supported {
                Ok(())
            } else {
                Err(ActionError::UnsupportedVersion {
                    found: probe.version,
                    supported,
                })
            }
        };
        match probe.kind.as_str() {
            PRODUCT_VIEWED | ORDER_COMPLETED => {
                check(CommerceEvent::VERSION)?;
                Ok(EmailMessage::Commerce(serde_json::from_str(body)?))
            }
            EMAIL_RECOMMEND => {
                check(RecommendAction::VERSION)?;
                Ok(EmailMessage::Recommend(serde_json::from_str(body)?))
            }
            _ => Ok(EmailMessage::Action(
                crate::routing::fanout::EmailAction::from_json(body)?,
            )),
        }
    }
}
