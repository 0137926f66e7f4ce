//! DynamoDB adapter for the lead-router: versioned profiles and the per-effect idempotency ledger.
//!
//! Both live in the leads table beside the intake records, under their own key prefixes:
//! - `pk = PROFILE#<sha256 of the email>`, `sk = PROFILE`: `profile` (JSON), `version` (N, the optimistic
//!   lock), `segment`, `score`, `email_fp`, `updated_at`, `crm` (JSON of the latest CRM outcome, with the
//!   dry-run request), `crm_failures` (list of JSON: the latest [`MAX_CRM_FAILURES`] permanent failures)
//!   and `crm_failures_n` (N, how many were ever recorded: the optimistic lock of that list). No TTL: a
//!   profile lives until it is erased.
//! - `pk = EFFECT#<effect key>`, `sk = EFFECT`: `state` (`pending` | `done` | `failed`), `lease_until`
//!   (ms), `reason`, `updated_at`, `expires_at` (TTL): the effect ledger, claimed and completed through
//!   [`super::ledger`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::dynamodb::{classify, get_consistent};
use super::ledger::{DONE, FAILED, Ledger, corrupt, n, s, written};
use crate::ports::StoreError;
use crate::routing::ports::{Claim, EffectLedger, EffectOutcome, ProfileStore, Saved, Versioned};
use crate::routing::profile::{CrmRecord, MAX_CRM_FAILURES, Profile};

const SK_PROFILE: &str = "PROFILE";
const SK_EFFECT: &str = "EFFECT";
/// Read-trim-write cycles of `crm_failures` before giving up on a contended profile.
const MAX_FAILURE_WRITES: u32 = 5;

/// Profiles and effect records on the leads table.
#[derive(Debug, Clone)]
pub struct DynamoProfiles {
    client: Client,
    table: String,
}

/// The key of a profile item.
pub fn profile_key(profile_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(format!("PROFILE#{profile_key}")),
        ),
        ("sk".to_string(), AttributeValue::S(SK_PROFILE.to_string())),
    ])
}

/// The key of an effect item.
pub fn effect_item_key(effect_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(format!("EFFECT#{effect_key}")),
        ),
        ("sk".to_string(), AttributeValue::S(SK_EFFECT.to_string())),
    ])
}

impl DynamoProfiles {
    /// Wraps a client and the table name. Build the client once, at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoProfiles {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// The latest CRM record stored on a profile (what the demo shows).
    pub async fn crm_record(&self, key: &str) -> Result<Option<CrmRecord>, StoreError> {
        let item = get_consistent(&self.client, &self.table, profile_key(key)).await?;
        match item
            .as_ref()
            .and_then(|i| i.get("crm"))
            .and_then(|v| v.as_s().ok())
        {
            Some(json) => serde_json::from_str(json).map(Some).map_err(corrupt),
            None => Ok(None),
        }
    }

    /// The effect records (the ledger) on the same table.
    fn ledger(&self) -> Ledger<'_> {
        Ledger {
            client: &self.client,
            table: &self.table,
        }
    }
}

impl ProfileStore for DynamoProfiles {
    async fn load(&self, key: &str) -> Result<Option<Versioned<Profile>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(profile_key(key)))
            .consistent_read(true)
            .projection_expression("#p, #v")
            .expression_attribute_names("#p", "profile")
            .expression_attribute_names("#v", "version")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let json = item
            .get("profile")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt("profile attribute missing"))?;
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| corrupt("version attribute missing"))?;
        let value = serde_json::from_str(json).map_err(corrupt)?;
        Ok(Some(Versioned { value, version }))
    }

    async fn save(&self, profile: &Profile, expected: Option<u64>) -> Result<Saved, StoreError> {
        let json = serde_json::to_string(profile).map_err(corrupt)?;
        let decision = profile.decision.as_ref();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(profile_key(&profile.key())))
            .update_expression(
                "SET #p = :p, #v = :next, #seg = :seg, #score = :score, email_fp = :fp, updated_at = :u, created_at = if_not_exists(created_at, :u)",
            )
            .expression_attribute_names("#p", "profile")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#seg", "segment")
            .expression_attribute_names("#score", "score")
            .expression_attribute_values(":p", s(json))
            .expression_attribute_values(":next", n(expected.unwrap_or(0) + 1))
            .expression_attribute_values(":seg", s(decision.and_then(|d| d.segment.clone()).unwrap_or_default()))
            .expression_attribute_values(":score", n(decision.map(|d| d.score).unwrap_or(0)))
            .expression_attribute_values(":fp", s(profile.email.fingerprint()))
            .expression_attribute_values(":u", s(profile.updated_at.to_rfc3339()));
        update = match expected {
            None => update.condition_expression("attribute_not_exists(pk)"),
            Some(v) => update
                .condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(v)),
        };
        if written(update.send().await)? {
            Ok(Saved::Saved)
        } else {
            Ok(Saved::Conflict)
        }
    }

    async fn record_crm(&self, key: &str, record: &CrmRecord) -> Result<(), StoreError> {
        let record = record.bounded();
        let json = serde_json::to_string(&record).map_err(corrupt)?;
        if !record.is_permanent_failure() {
            // Done, or a retryable failure (SQS redelivers it): only the latest outcome is kept.
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(profile_key(key)))
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET crm = :r")
                .expression_attribute_values(":r", s(json))
                .send()
                .await;
            return if written(result)? {
                Ok(())
            } else {
                Err(no_profile())
            };
        }
        // A permanent failure joins the list, which keeps only the latest MAX_CRM_FAILURES. DynamoDB
        // cannot append and trim in one expression, so: read, trim, write if no one wrote in between.
        for _ in 0..MAX_FAILURE_WRITES {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(profile_key(key)))
                .consistent_read(true)
                .projection_expression("pk, crm_failures, crm_failures_n")
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let Some(item) = out.item() else {
                return Err(no_profile());
            };
            let mut failures: Vec<AttributeValue> = item
                .get("crm_failures")
                .and_then(|v| v.as_l().ok())
                .cloned()
                .unwrap_or_default();
            let count = item
                .get("crm_failures_n")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok());
            failures.push(s(json.clone()));
            let excess = failures.len().saturating_sub(MAX_CRM_FAILURES);
            failures.drain(..excess);
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(profile_key(key)))
                .update_expression("SET crm = :r, crm_failures = :list, crm_failures_n = :next")
                .expression_attribute_values(":r", s(json.clone()))
                .expression_attribute_values(":list", AttributeValue::L(failures))
                .expression_attribute_values(":next", n(count.unwrap_or(0) + 1));
            update = match count {
                None => update.condition_expression(
                    "attribute_exists(pk) AND attribute_not_exists(crm_failures_n)",
                ),
                Some(c) => update
                    .condition_expression("attribute_exists(pk) AND crm_failures_n = :n")
                    .expression_attribute_values(":n", n(c)),
            };
            if written(update.send().await)? {
                return Ok(());
            }
            tracing::debug!("crm_failures changed concurrently; reading it again");
        }
        Err(StoreError::Unavailable(
            "the profile's CRM failures kept changing under concurrent writes".to_string(),
        ))
    }
}

fn no_profile() -> StoreError {
    StoreError::Rejected("no profile to record the CRM outcome on".to_string())
}

impl EffectLedger for DynamoProfiles {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.ledger()
            .claim(effect_item_key(key), &[], now, lease_until)
            .await
    }

    async fn complete(
        &self,
        key: &str,
        outcome: &EffectOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (state, reason) = match outcome {
            EffectOutcome::Done => (DONE, None),
            EffectOutcome::Failed(r) => (FAILED, Some(r.clone())),
        };
        self.ledger()
            .complete(effect_item_key(key), state, reason, HashMap::new(), now)
            .await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.ledger().release(effect_item_key(key)).await
    }
}
