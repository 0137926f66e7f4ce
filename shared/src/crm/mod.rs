//! CRM connectors: the generic REST CRM (the article's), HubSpot batch upsert by email, and dry-run;
//! plus the erasure of one person (HubSpot's GDPR delete, the REST CRM's configured erase call).
//!
//! Each connector follows the connector contract: `config.rs` (typed, secrets by reference),
//! `request.rs` (pure request building, unit-tested against the vendor's documented shape) and
//! `client.rs` (sending with timeouts, classification and bounded retries).

pub mod config;
pub mod hubspot;
pub mod rest;

#[cfg(feature = "http-client")]
mod connector;
#[cfg(feature = "http-client")]
pub use connector::{Crm, CrmConnector, CrmSetupError};

use serde::{Deserialize, Serialize};

use crate::domain::{Email, LeadId};

/// What a CRM upsert sends for one lead: the email (the dedupe key) and the mapped properties.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmContact {
    pub lead_id: LeadId,
    pub email: Email,
    /// Property name in the CRM's payload, and its value. Empty values are left out.
    pub properties: Vec<(String, String)>,
}

/// A request built by a connector, before the credentials are added.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    pub method: &'static str,
    pub url: String,
    pub body: serde_json::Value,
}

/// A request as the dry-run connector records it: the exact request, with the credentials redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// Records a prepared request sent with a bearer token and a JSON body.
    pub fn bearer(request: &PreparedRequest) -> Self {
        RecordedRequest {
            method: request.method.to_string(),
            url: request.url.clone(),
            headers: vec![
                ("authorization".to_string(), "Bearer [redacted]".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ],
            body: request.body.clone(),
        }
    }
}

/// The outcome of a successful upsert for one lead.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrmReceipt {
    /// The CRM's id for the contact, when it returned one.
    pub contact_id: Option<String>,
    /// The request that would have been sent, for the dry-run connector.
    pub dry_run: Option<RecordedRequest>,
}

/// What erasing one person in the CRM came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmErasure {
    /// No CRM is configured (`connector = "none"`).
    NoCrm,
    /// The connector has no erase call configured (the REST CRM without `erase`): nothing was sent.
    NotConfigured,
    /// The CRM deleted the person.
    Deleted,
    /// The CRM had no such person (404 or a configured gone status).
    AlreadyGone,
    /// Dry-run: the exact request that would have been sent.
    DryRun(RecordedRequest),
}

impl CrmErasure {
    /// The line of the erasure report: `deleted (hubspot)`, `not configured for erasure`...
    pub fn describe(&self, connector: &str) -> String {
        match self {
            CrmErasure::NoCrm => "no CRM configured".to_string(),
            CrmErasure::NotConfigured => "not configured for erasure".to_string(),
            CrmErasure::Deleted => format!("deleted ({connector})"),
            CrmErasure::AlreadyGone => format!("already gone ({connector})"),
            CrmErasure::DryRun(_) => format!("dry-run ({connector}): recorded, not sent"),
        }
    }
}
