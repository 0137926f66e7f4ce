//! Erasure of one person (`{"action": "erase", "email": "..."}`, or `cargo xtask erase EMAIL`): deletes
//! them on the email platforms they were sent to and in the CRM (HubSpot's GDPR delete, or the REST
//! CRM's configured `erase` call), asks audience-sync to remove them from each audience
//! (`audience.remove`, reason `erasure`), deletes every record Fluxo holds about them, and journals the
//! erasure without personal data.
//!
//! RD Station Marketing has no contact deletion in its API: the report says so for that platform. A
//! REST CRM without `erase` configured is reported `not configured for erasure`. Running an erasure
//! twice is harmless: deletes of what is gone are no-ops.

use std::collections::BTreeMap;

use fluxo::adapters::email::DynamoEmail;
use fluxo::connector::Deadline;
use fluxo::crm::CrmConnector;
use fluxo::domain::Email;
use fluxo::email::ports::EmailPeople;
use fluxo::email::{Contact, Job, Operation, Platform};
use fluxo::ports::{Clock, MessageQueue, OutboundMessage, StoreError};
use fluxo::routing::ProfileStore;
use fluxo::routing::fanout::{self, ConsentSnapshot, REASON_ERASURE};
use serde::Serialize;

use crate::trigger::Trigger;

/// What an erasure did. No personal data: the fingerprint is the keyed HMAC of the email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    pub erasure_id: String,
    pub fingerprint: String,
    /// Each email platform the person was sent to, and what it answered.
    pub platforms: BTreeMap<String, String>,
    /// `audience.remove` messages queued for audience-sync.
    pub audience_removals: usize,
    /// What happened in the CRM: `deleted (hubspot)`, `already gone (rest)`, `not configured for
    /// erasure`, `no CRM configured`, `dry-run (dry_run:hubspot): recorded, not sent`.
    pub crm: String,
    /// Items deleted from the leads table.
    pub records_deleted: usize,
}

/// Why an erasure could not run; the caller may run it again.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("the email is not valid: {0}")]
    Email(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("platform {platform}: {reason}; nothing was deleted in Fluxo, run the erasure again")]
    Platform {
        platform: &'static str,
        reason: String,
    },
    #[error("CRM {connector}: {reason}; nothing was deleted in Fluxo, run the erasure again")]
    Crm { connector: String, reason: String },
    #[error("audience queue: {0}; run the erasure again")]
    Queue(String),
}

/// Erases one person. Platform and CRM deletes run first: if one fails, Fluxo's records stay so that the
/// erasure can run again and still find where the person was sent.
pub async fn erase<P, Q, K>(
    trigger: &Trigger<DynamoEmail, P, Q, K>,
    audience_queue: &impl MessageQueue,
    email: &str,
    deadline: Deadline,
) -> Result<ErasureReport, EraseError>
where
    P: ProfileStore,
    Q: fluxo::email::ports::DelayedQueue,
    K: Clock,
{
    let email = Email::parse(email).map_err(|e| EraseError::Email(e.to_string()))?;
    let fingerprint = email.fingerprint();
    let profile_key = email.sha256_hex();
    let now = trigger.clock.now();
    let erasure_id = fluxo::idempotency::key_of(
        "fluxo.erasure.v1",
        &[&profile_key, &now.timestamp_millis().to_string()],
    );
    let record = trigger.store.load(&profile_key).await?.unwrap_or_default();
    let job = Job {
        key: erasure_id.clone(),
        contact: Contact {
            email: email.clone(),
            first_name: None,
            last_name: None,
        },
        operation: Operation::Erase,
    };
    let mut platforms = BTreeMap::new();
    for platform in record.platforms.iter().copied().collect::<Vec<Platform>>() {
        let answer = trigger
            .platforms
            .perform(platform, &job, deadline)
            .await
            .map_err(|e| EraseError::Platform {
                platform: platform.as_str(),
                reason: crate::trigger::redact(e.reason()),
            })?;
        let text = match (answer.note, answer.dry_run.is_empty()) {
            _ if platform == Platform::Rdstation => {
                fluxo::email::rdstation::ERASURE_NOT_SUPPORTED.to_string()
            }
            (Some(note), _) => note,
            (None, false) => "dry-run: recorded, not sent".to_string(),
            (None, true) => "deleted".to_string(),
        };
        platforms.insert(platform.as_str().to_string(), text);
    }
    let connector = trigger.crm.name().to_string();
    let crm = trigger
        .crm
        .erase(&email, deadline)
        .await
        .map_err(|e| EraseError::Crm {
            connector: connector.clone(),
            reason: crate::trigger::redact(e.reason()),
        })?
        .describe(&connector);
    let profile = trigger.profiles.load(&profile_key).await?;
    let mut removals = Vec::new();
    if let Some(p) = &profile {
        let audiences = p
            .value
            .decision
            .as_ref()
            .map(|d| d.audiences.clone())
            .unwrap_or_default();
        let lead_id = p.value.last_touch.lead_id.clone();
        for audience in audiences {
            let action = fanout::audience_remove(
                &profile_key,
                &email,
                &lead_id,
                &audience,
                ConsentSnapshot::of(&p.value),
                REASON_ERASURE,
                now,
            );
            let body =
                serde_json::to_string(&action).map_err(|e| EraseError::Queue(e.to_string()))?;
            removals.push(OutboundMessage {
                id: fanout::FanOut::dispatch_key(&lead_id, &action.header.effect_key),
                body,
            });
        }
    }
    if !removals.is_empty() {
        let failed = audience_queue
            .send_batch(&removals)
            .await
            .map_err(|e| EraseError::Queue(e.to_string()))?;
        if !failed.is_empty() {
            return Err(EraseError::Queue(format!(
                "{} message(s) refused",
                failed.len()
            )));
        }
    }
    let records_deleted = trigger.store.erase_fingerprint(&fingerprint).await?;
    let report = ErasureReport {
        erasure_id: erasure_id.clone(),
        fingerprint: fingerprint.clone(),
        platforms,
        audience_removals: removals.len(),
        crm,
        records_deleted,
    };
    let json = serde_json::to_string(&report).unwrap_or_default();
    trigger
        .store
        .journal_erasure(&erasure_id, &fingerprint, now, &json)
        .await?;
    tracing::info!(erasure_id = %erasure_id, profile = %fingerprint, records_deleted, audience_removals = report.audience_removals, crm = %report.crm, "person erased");
    Ok(report)
}
