//! The DynamoDB mechanics of every effect ledger (claim -> perform -> complete), shared by the consumers'
//! ledgers: lead-router's CRM and fan-out effects (`profiles`), email-trigger's enrollments (`email`) and
//! audience-sync's memberships (`memberships`, claimed in batches on a version).
//!
//! Each ledger keeps its own key and item layout and adds its own attributes; what is common is here:
//! - a one-effect record carries `state` (`pending` | `done` | `failed`, or a ledger's own), `lease_until`
//!   (ms), `reason`, `updated_at` and `expires_at` (TTL, [`EFFECT_TTL_DAYS`]);
//! - [`Ledger::claim`] makes `pending` with a lease, when there is no record, its lease has expired, or
//!   its state is one the ledger lets a claim take over; otherwise it answers what the record says;
//! - [`Ledger::complete`] writes the outcome, [`Ledger::release`] drops a claim still `pending` (the
//!   effect was not performed), [`Ledger::forget`] drops the record whatever it says;
//! - [`versioned_put`] is the batched claim: a put conditional on the version the ledger read.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Put};
use chrono::{DateTime, Duration, Utc};

use super::dynamodb::{classify, get_consistent, is_conditional_check_failed};
use crate::ports::StoreError;
use crate::routing::ports::Claim;

/// A DynamoDB item, or key.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Claimed: the effect is being performed, until `lease_until`.
pub(crate) const PENDING: &str = "pending";
/// Performed.
pub(crate) const DONE: &str = "done";
/// Failed for good; `reason` says why.
pub(crate) const FAILED: &str = "failed";
/// One-effect records outlive any redelivery (SQS keeps messages 14 days at most) and a year of
/// re-submits.
pub(crate) const EFFECT_TTL_DAYS: i64 = 400;

/// A string attribute.
pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A record that cannot be read back as what was written.
pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A conditional write's result: `true` when written, `false` when its condition failed.
pub(crate) fn written<T, E>(
    result: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_check_failed(&e) => Ok(false),
        Err(e) => Err(classify(&e)),
    }
}

/// A put of `item` that wins only on the version the ledger read (`expected`), or on no record at all
/// (`None`): the claim of a ledger that claims many records at once, in a transaction.
pub(crate) fn versioned_put(
    table: &str,
    item: Item,
    expected: Option<u64>,
) -> Result<Put, StoreError> {
    let put = Put::builder().table_name(table).set_item(Some(item));
    let put = match expected {
        None => put.condition_expression("attribute_not_exists(pk)"),
        Some(v) => put
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(v)),
    };
    put.build().map_err(corrupt)
}

/// One ledger's one-effect records on a table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ledger<'a> {
    pub client: &'a Client,
    pub table: &'a str,
}

impl Ledger<'_> {
    /// Claims the effect at `key` until `lease_until`: when it has no record, when its state is one of
    /// `reclaimable`, or when it is `pending` and its lease has expired. Otherwise answers what the
    /// record says ([`Ledger::state`]).
    pub async fn claim(
        &self,
        key: Item,
        reclaimable: &[&str],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut condition = String::from("attribute_not_exists(pk)");
        for i in 0..reclaimable.len() {
            condition.push_str(&format!(" OR #st = :again{i}"));
        }
        condition.push_str(" OR (#st = :pending AND lease_until < :now)");
        let mut update = self
            .client
            .update_item()
            .table_name(self.table)
            .set_key(Some(key.clone()))
            .update_expression(
                "SET #st = :pending, lease_until = :until, updated_at = :now_s, expires_at = :exp",
            )
            .condition_expression(condition)
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":until", n(lease_until.timestamp_millis()))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(":now_s", s(now.to_rfc3339()))
            .expression_attribute_values(
                ":exp",
                n((now + Duration::days(EFFECT_TTL_DAYS)).timestamp()),
            );
        for (i, state) in reclaimable.iter().enumerate() {
            update = update.expression_attribute_values(format!(":again{i}"), s(*state));
        }
        if written(update.send().await)? {
            Ok(Claim::Acquired)
        } else {
            self.state(key).await
        }
    }

    /// What a claim that lost finds: `done`, `failed` (with its reason), or someone else's claim.
    pub async fn state(&self, key: Item) -> Result<Claim, StoreError> {
        let item = get_consistent(self.client, self.table, key).await?;
        let text = |name: &str| {
            item.as_ref()
                .and_then(|i| i.get(name))
                .and_then(|v| v.as_s().ok())
                .cloned()
        };
        Ok(match text("state").as_deref() {
            Some(DONE) => Claim::Done,
            Some(FAILED) => Claim::Failed(text("reason").unwrap_or_default()),
            _ => Claim::Busy,
        })
    }

    /// Records the outcome of the effect at `key`: `state`, its `reason`, and the ledger's own
    /// attributes (`extra`), with `updated_at` and a fresh `expires_at`. It replaces the claim.
    pub async fn complete(
        &self,
        key: Item,
        state: &str,
        reason: Option<String>,
        extra: Item,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item = key;
        item.insert("state".into(), s(state));
        item.insert("updated_at".into(), s(now.to_rfc3339()));
        item.insert(
            "expires_at".into(),
            n((now + Duration::days(EFFECT_TTL_DAYS)).timestamp()),
        );
        if let Some(reason) = reason {
            item.insert("reason".into(), s(reason));
        }
        item.extend(extra);
        self.put(item).await
    }

    /// Writes `item` whole, replacing any record under its key (the ledger's side records: runs, jobs,
    /// links, journals).
    pub async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Drops a claim that is still `pending` (the effect was not performed), so that a retry claims it
    /// at once. A completed record is kept.
    pub async fn release(&self, key: Item) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(self.table)
            .set_key(Some(key))
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":pending", s(PENDING))
            .send()
            .await;
        written(result).map(|_| ())
    }

    /// Deletes the record at `key`, whatever it says.
    // Only email-trigger's ledger (features `dynamodb` + `sqs`) forgets.
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    pub async fn forget(&self, key: Item) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}
