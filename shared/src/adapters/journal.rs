//! DynamoDB adapter for the optimizer: metric snapshots, the journal, and per-entity change records.
//!
//! Item layout in the optimizer table (`pk`, `sk` strings, TTL attribute `expires_at` in seconds):
//! - `SNAPSHOT#<campaign>` / `<run id>`: the campaign's metrics for that scheduled hour (`data`, JSON).
//! - `JOURNAL#<campaign>` / `<at, RFC 3339 ms>#<entry id>`: one journal entry (`entry`, JSON; plus
//!   `run_id`, `outcome`, `rule`, `kind` for filtering).
//! - `ENTITY#<entity key>` / `CHANGE#<claim id>`: a claimed change (`status` pending | applied | failed,
//!   `record`, `reason`). Written with `attribute_not_exists(pk) OR status = failed`, so two invocations
//!   for the same hour cannot both change the entity.
//! - `ENTITY#<entity key>` / `LATEST`: the entity's lock and last change: `record` and `latest_claim` (the
//!   last applied change, for the cooldown and revert), and while a change is in flight `pending`,
//!   `pending_claim` and `lease_until`.
//!
//! A claim takes the entity's lock with one conditional write on `LATEST` (no other change in flight, and
//! the last change is still the one the caller read), then puts the `CHANGE#` record under it. The
//! outcome is one `TransactWriteItems` (the `CHANGE#` status, `LATEST` and the journal entry together,
//! conditioned on still holding the lock), so the journal, the cooldown and revert never disagree about
//! what the platform was last told. (The lock is a single-item write rather than a transaction because
//! single-item conditional writes are atomic everywhere, moto included, while moto does not isolate
//! concurrent transactions.)

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::dynamodb::{classify, get_consistent, is_conditional_check_failed};
use crate::optimizer::ports::{
    ChangeRecord, ChangeStatus, Claim, EntityState, JournalEntry, OptimizerStore, PendingChange,
    Snapshot,
};
use crate::ports::StoreError;

/// Days journal entries and snapshots are kept before DynamoDB's TTL expires them.
pub const DEFAULT_RETENTION_DAYS: i64 = 400;

/// The optimizer store on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoOptimizerStore {
    client: Client,
    table: String,
    retention_days: i64,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Rejected(format!("value did not serialize: {e}")))
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn built<T>(result: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Rejected(format!("request did not build: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The cancellation code of each item of a cancelled transaction (`ConditionalCheckFailed`,
/// `TransactionConflict`, `None`, ...), by position; `None` when the error is not a cancellation.
fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => Some(
            e.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_string())
                .collect(),
        ),
        _ => None,
    }
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";

fn status_of(text: &str) -> ChangeStatus {
    match text {
        "applied" => ChangeStatus::Applied,
        "failed" => ChangeStatus::Failed,
        _ => ChangeStatus::Pending,
    }
}

impl DynamoOptimizerStore {
    /// Wraps a client and the table name. Build the client once, at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoOptimizerStore {
            client,
            table: table.into(),
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// Sets how long snapshots and journal entries are kept.
    pub fn with_retention_days(mut self, days: i64) -> Self {
        self.retention_days = days.max(1);
        self
    }

    fn expires_at(&self, at: DateTime<Utc>) -> AttributeValue {
        AttributeValue::N((at.timestamp() + self.retention_days * 86_400).to_string())
    }

    /// The journal item of an entry.
    fn journal_item(
        &self,
        entry: &JournalEntry,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let sk = format!(
            "{}#{}",
            entry
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            entry.entry_id
        );
        let mut item = key(format!("JOURNAL#{}", entry.campaign_id), sk);
        item.insert("entry".into(), s(json(entry)?));
        item.insert("run_id".into(), s(entry.run_id.clone()));
        item.insert("outcome".into(), s(entry.outcome.as_str()));
        item.insert("rule".into(), s(entry.rule.clone().unwrap_or_default()));
        item.insert("kind".into(), s(json(&entry.kind)?.trim_matches('"')));
        item.insert("config_version".into(), s(entry.config_version.clone()));
        item.insert("expires_at".into(), self.expires_at(entry.at));
        Ok(item)
    }

    async fn change_status(
        &self,
        entity_key: &str,
        claim_id: &str,
    ) -> Result<Option<(ChangeStatus, String)>, StoreError> {
        let item = get_consistent(
            &self.client,
            &self.table,
            key(format!("ENTITY#{entity_key}"), format!("CHANGE#{claim_id}")),
        )
        .await?;
        Ok(item.as_ref().map(|item| {
            (
                status_of(&text(item, "status").unwrap_or_default()),
                text(item, "reason").unwrap_or_default(),
            )
        }))
    }

    /// The status and reason of one change record (tests, tooling).
    pub async fn change(
        &self,
        entity_key: &str,
        claim_id: &str,
    ) -> Result<Option<(ChangeStatus, String)>, StoreError> {
        self.change_status(entity_key, claim_id).await
    }

    /// A campaign's journal entries as JSON, oldest first (tests, tooling).
    pub async fn journal(&self, campaign_id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("JOURNAL#{campaign_id}")))
                .set_exclusive_start_key(start.take())
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            for item in out.items() {
                let raw = text(item, "entry")
                    .ok_or_else(|| StoreError::Corrupt("journal entry without `entry`".into()))?;
                entries.push(
                    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(entries)
    }

    /// A campaign's snapshot for one run, as JSON (tests, reporting).
    pub async fn snapshot(
        &self,
        campaign_id: &str,
        run_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let item = get_consistent(
            &self.client,
            &self.table,
            key(format!("SNAPSHOT#{campaign_id}"), run_id.to_string()),
        )
        .await?;
        match item.as_ref().and_then(|item| text(item, "data")) {
            Some(raw) => Ok(Some(
                serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }
}

impl OptimizerStore for DynamoOptimizerStore {
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key(
                format!("SNAPSHOT#{}", snapshot.campaign_id),
                snapshot.run_id.clone(),
            )))
            .item("data", s(json(snapshot)?))
            .item("at", s(snapshot.at.to_rfc3339()))
            .item("expires_at", self.expires_at(snapshot.at))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn put_journal(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.journal_item(entry)?))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn entity_state(&self, entity_key: &str) -> Result<EntityState, StoreError> {
        let item = get_consistent(
            &self.client,
            &self.table,
            key(format!("ENTITY#{entity_key}"), "LATEST".into()),
        )
        .await?;
        let Some(item) = item else {
            return Ok(EntityState::default());
        };
        let latest = text(&item, "record").map(|raw| parse(&raw)).transpose()?;
        let pending = match (text(&item, "pending"), text(&item, "lease_until")) {
            (Some(raw), Some(until)) => Some(PendingChange {
                record: parse(&raw)?,
                lease_until: DateTime::parse_from_rfc3339(&until)
                    .map_err(|e| StoreError::Corrupt(format!("lease_until: {e}")))?
                    .with_timezone(&Utc),
            }),
            _ => None,
        };
        Ok(EntityState { latest, pending })
    }

    async fn claim_change(
        &self,
        record: &ChangeRecord,
        seen_latest: Option<&str>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // 1. This claim id already done (or in flight)?
        if let Some((status, _)) = self
            .change_status(&record.entity_key, &record.claim_id)
            .await?
            && status != ChangeStatus::Failed
        {
            return Ok(Claim::Taken(status));
        }
        // 2. The entity's lock, one conditional write on LATEST: no change in flight, and the last change
        // is still the one the caller decided on. (`attribute_not_exists(latest_claim)` also admits a
        // LATEST item written before `latest_claim` existed; its next change writes it.)
        let entity = format!("ENTITY#{}", record.entity_key);
        let latest_condition = match seen_latest {
            Some(_) => {
                "(#latest = :seen OR (attribute_not_exists(#latest) AND attribute_exists(#record)))"
            }
            None => "attribute_not_exists(#record)",
        };
        let mut lock = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(entity.clone(), "LATEST".into())))
            .update_expression(
                "SET #pending = :pending, #pending_claim = :claim, #lease = :lease, campaign_id = :campaign",
            )
            .condition_expression(format!(
                "attribute_not_exists(#pending_claim) AND {latest_condition}"
            ))
            .expression_attribute_names("#pending", "pending")
            .expression_attribute_names("#pending_claim", "pending_claim")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_names("#record", "record")
            .expression_attribute_values(":pending", s(json(record)?))
            .expression_attribute_values(":claim", s(record.claim_id.clone()))
            .expression_attribute_values(
                ":lease",
                s(lease_until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            )
            .expression_attribute_values(":campaign", s(record.campaign_id.clone()));
        if let Some(seen) = seen_latest {
            lock = lock
                .expression_attribute_names("#latest", "latest_claim")
                .expression_attribute_values(":seen", s(seen));
        }
        match lock.send().await {
            Ok(_) => {}
            Err(e) if is_conditional_check_failed(&e) => {
                if let Some((status, _)) = self
                    .change_status(&record.entity_key, &record.claim_id)
                    .await?
                    && status != ChangeStatus::Failed
                {
                    return Ok(Claim::Taken(status));
                }
                let state = self.entity_state(&record.entity_key).await?;
                return Ok(Claim::Conflict(match (state.pending, state.latest) {
                    (Some(p), _) => format!(
                        "the entity is locked by the change claimed for {}",
                        p.record.claim_id
                    ),
                    (None, latest) => format!(
                        "the entity's last change is now {}, not {}",
                        latest.map(|l| l.claim_id).unwrap_or_else(|| "none".into()),
                        seen_latest.unwrap_or("none")
                    ),
                }));
            }
            Err(e) => return Err(classify(&e)),
        }
        // 3. The change record, under the lock. Only a claim that finished between step 1 and the lock
        // can be here already; then the lock is released and the claim reported taken.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key(
                entity.clone(),
                format!("CHANGE#{}", record.claim_id),
            )))
            .item("status", s(ChangeStatus::Pending.as_str()))
            .item("record", s(json(record)?))
            .item("campaign_id", s(record.campaign_id.clone()))
            .item("at", s(record.at.to_rfc3339()))
            .item("expires_at", self.expires_at(record.at))
            .condition_expression("attribute_not_exists(pk) OR #status = :failed")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(ChangeStatus::Failed.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Claimed),
            Err(e) => {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(entity, "LATEST".into())))
                    .update_expression("REMOVE #pending, #pending_claim, #lease")
                    .condition_expression("#pending_claim = :claim")
                    .expression_attribute_names("#pending", "pending")
                    .expression_attribute_names("#pending_claim", "pending_claim")
                    .expression_attribute_names("#lease", "lease_until")
                    .expression_attribute_values(":claim", s(record.claim_id.clone()))
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                if !is_conditional_check_failed(&e) {
                    return Err(classify(&e));
                }
                let status = self
                    .change_status(&record.entity_key, &record.claim_id)
                    .await?
                    .map(|(status, _)| status)
                    .unwrap_or(ChangeStatus::Pending);
                Ok(Claim::Taken(status))
            }
        }
    }

    async fn record_change(
        &self,
        record: &ChangeRecord,
        status: ChangeStatus,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        let entity = format!("ENTITY#{}", record.entity_key);
        let change = built(
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    entity.clone(),
                    format!("CHANGE#{}", record.claim_id),
                )))
                .update_expression("SET #status = :status, #reason = :reason, finished_at = :now")
                .condition_expression("attribute_not_exists(pk) OR #status = :pending")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#reason", "reason")
                .expression_attribute_values(":status", s(status.as_str()))
                .expression_attribute_values(":pending", s(ChangeStatus::Pending.as_str()))
                .expression_attribute_values(":reason", s(entry.reason.clone()))
                .expression_attribute_values(":now", s(entry.at.to_rfc3339()))
                .build(),
        )?;
        let mut latest = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(entity, "LATEST".into())))
            .condition_expression("#pending_claim = :claim")
            .expression_attribute_names("#pending", "pending")
            .expression_attribute_names("#pending_claim", "pending_claim")
            .expression_attribute_names("#lease", "lease_until")
            .expression_attribute_values(":claim", s(record.claim_id.clone()));
        latest = if status == ChangeStatus::Applied {
            latest
                .update_expression(
                    "SET #record = :record, #latest = :claim REMOVE #pending, #pending_claim, #lease",
                )
                .expression_attribute_names("#record", "record")
                .expression_attribute_names("#latest", "latest_claim")
                .expression_attribute_values(":record", s(json(record)?))
        } else {
            latest.update_expression("REMOVE #pending, #pending_claim, #lease")
        };
        let latest = built(latest.build())?;
        let journal = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.journal_item(entry)?))
                .build(),
        )?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(change).build())
            .transact_items(TransactWriteItem::builder().update(latest).build())
            .transact_items(TransactWriteItem::builder().put(journal).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match cancellation_codes(&e) {
                Some(codes) if codes.iter().any(|c| c == CONDITION_FAILED) => {
                    Err(StoreError::Rejected(format!(
                        "the claim {} no longer holds the entity; nothing recorded",
                        record.claim_id
                    )))
                }
                // Cancelled for another reason (a concurrent transaction on these items): retry later.
                Some(codes) => Err(StoreError::Unavailable(format!(
                    "transaction cancelled: {}",
                    codes.join(", ")
                ))),
                None => Err(classify(&e)),
            },
        }
    }
}
