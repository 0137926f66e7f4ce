//! The router's analytics records (issue 12): the routing decision and each CRM upsert outcome, as
//! `effects` rows. Buffered by `fluxo::analytics::emit` and sent once per batch; never fails the batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fluxo::analytics::{Destination, EffectOutcome, EffectRecord};
use fluxo::connector::ConnectorError;
use fluxo::domain::LeadId;
use fluxo::error::Retryable;
use fluxo::routing::rules::Decision;

/// The routing decision of a lead: its segment, its score and how many messages it fans out to.
pub fn routed(lead_id: &LeadId, decision: Option<&Decision>, now: DateTime<Utc>) {
    let mut record = EffectRecord::new(
        now,
        lead_id.as_str(),
        Destination::Routing,
        None,
        "route",
        EffectOutcome::Done,
    );
    if let Some(d) = decision {
        record.segment = d.segment.clone();
        record.score = Some(d.score);
        record.target = d.segment.clone();
    }
    fluxo::analytics::effect(record);
}

/// A CRM upsert's outcome. The reason recorded is the error's kind, never the vendor's text (it may
/// quote the lead).
pub fn crm(
    lead_id: &LeadId,
    vendor: &str,
    result: Result<(), &ConnectorError>,
    latency: Duration,
    now: DateTime<Utc>,
) {
    let (outcome, failure) = match result {
        Ok(()) => (EffectOutcome::Done, None),
        Err(e) => {
            let (kind, attempts) = match e {
                ConnectorError::Exhausted { attempts, .. } => ("exhausted", *attempts),
                ConnectorError::Permanent { .. } => ("rejected", 1),
                ConnectorError::Paused { .. } => ("paused", 0),
            };
            let outcome = if e.is_retryable() {
                EffectOutcome::Retrying
            } else {
                EffectOutcome::Failed
            };
            (outcome, Some((e.class(), kind, attempts)))
        }
    };
    let mut record = EffectRecord::new(
        now,
        lead_id.as_str(),
        Destination::Crm,
        None,
        "upsert",
        outcome,
    )
    .vendor(vendor)
    .timing(1, latency);
    if let Some((class, kind, attempts)) = failure {
        record = record.failure(class, kind);
        record.attempts = Some(i64::from(attempts));
    }
    fluxo::analytics::effect(record);
}

/// A CRM upsert this delivery did not perform (done, or failed for good, by an earlier one).
pub fn crm_skipped(lead_id: &LeadId, vendor: &str, why: &str, now: DateTime<Utc>) {
    let mut record = EffectRecord::new(
        now,
        lead_id.as_str(),
        Destination::Crm,
        None,
        "upsert",
        EffectOutcome::Skipped,
    )
    .vendor(vendor);
    record.reason = Some(why.to_string());
    fluxo::analytics::effect(record);
}
