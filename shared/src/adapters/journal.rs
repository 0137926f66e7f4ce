//! DynamoDB adapter for the optimizer: metric snapshots, the journal, and per-entity change records.
//!
//! Item layout in the optimizer table (`pk`, `sk` strings, TTL attribute `expires_at` in seconds):
//! - `SNAPSHOT#<campaign>` / `<run id>`: the campaign's metrics for that scheduled hour (`data`, JSON).
//! - `JOURNAL#<campaign>` / `<at, RFC 3339 ms>#<entry id>`: one journal entry (`entry`, JSON; plus
//!   `run_id`, `outcome`, `rule`, `kind` for filtering).
//! - `ENTITY#<entity key>` / `CHANGE#<claim id>`: a claimed change (`status` pending | applied | failed,
//!   `record`, `reason`). Written with `attribute_not_exists(pk) OR status = failed`, so two invocations
//!   for the same hour cannot both change the entity.
//! - `ENTITY#<entity key>` / `LATEST`: the last applied change (`record`), for the cooldown and revert.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::dynamodb::{classify, get_consistent, is_conditional_check_failed};
use crate::optimizer::ports::{
    ChangeRecord, ChangeStatus, Claim, JournalEntry, OptimizerStore, Snapshot,
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
        let sk = format!(
            "{}#{}",
            entry
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            entry.entry_id
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key(format!("JOURNAL#{}", entry.campaign_id), sk)))
            .item("entry", s(json(entry)?))
            .item("run_id", s(entry.run_id.clone()))
            .item("outcome", s(entry.outcome.as_str()))
            .item("rule", s(entry.rule.clone().unwrap_or_default()))
            .item("config_version", s(entry.config_version.clone()))
            .item("expires_at", self.expires_at(entry.at))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn latest_change(&self, entity_key: &str) -> Result<Option<ChangeRecord>, StoreError> {
        let item = get_consistent(
            &self.client,
            &self.table,
            key(format!("ENTITY#{entity_key}"), "LATEST".into()),
        )
        .await?;
        match item.as_ref().and_then(|item| text(item, "record")) {
            Some(raw) => Ok(Some(
                serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    async fn claim_change(&self, record: &ChangeRecord) -> Result<Claim, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key(
                format!("ENTITY#{}", record.entity_key),
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
            Err(e) if is_conditional_check_failed(&e) => {
                let status = self
                    .change_status(&record.entity_key, &record.claim_id)
                    .await?
                    .map(|(status, _)| status)
                    .unwrap_or(ChangeStatus::Pending);
                Ok(Claim::Taken(status))
            }
            Err(e) => Err(classify(&e)),
        }
    }

    async fn finish_change(
        &self,
        record: &ChangeRecord,
        status: ChangeStatus,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                format!("ENTITY#{}", record.entity_key),
                format!("CHANGE#{}", record.claim_id),
            )))
            .update_expression("SET #status = :status, reason = :reason, finished_at = :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        if status == ChangeStatus::Applied {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(key(
                    format!("ENTITY#{}", record.entity_key),
                    "LATEST".into(),
                )))
                .item("record", s(json(record)?))
                .item("campaign_id", s(record.campaign_id.clone()))
                .send()
                .await
                .map_err(|e| classify(&e))?;
        }
        Ok(())
    }
}
