//! DynamoDB adapter for the lead sources, in the leads table: the replay guard of signed message ids and
//! the inbox of lead-ad notifications.
//!
//! Replay markers: `pk = SEEN#<source>#<id>`, `sk = SEEN`, `seen_until` (ms) and `expires_at` (TTL, a day
//! after the window). A put succeeds only if no marker exists or its window has ended.
//!
//! Notices: `pk = LEADGEN#<source>#<leadgen_id>`, `sk = LEADGEN`, with `source`, `leadgen_id`, `notice`
//! (JSON), `received_at` (ms), `attempts`, `status` (`pending` | `done` | `failed`), `claim_until` (ms),
//! `lead_id` and `reason`. A pending notice carries `unqueued = LEADGEN` and `unqueued_since`, so the
//! receiver's sweep finds it through the same sparse `Unqueued` index as unqueued leads.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::dynamodb::{UNQUEUED_INDEX, classify, get_consistent, is_conditional_check_failed};
use crate::ports::StoreError;
use crate::sources::ports::{NoticeInbox, NoticeState, PendingNotice, ReplayGuard};

const SK_SEEN: &str = "SEEN";
const SK_LEADGEN: &str = "LEADGEN";
const STATUS_PENDING: &str = "pending";

/// The sources' records on the leads table.
#[derive(Debug, Clone)]
pub struct DynamoSources {
    client: Client,
    table: String,
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn notice_key(source: &str, leadgen_id: &str) -> HashMap<String, AttributeValue> {
    key(format!("LEADGEN#{source}#{leadgen_id}"), SK_LEADGEN)
}

impl DynamoSources {
    /// Wraps a client and the table name. Build the client once, at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoSources {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }
}

impl ReplayGuard for DynamoSources {
    async fn first_sighting(
        &self,
        source: &str,
        id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = key(format!("SEEN#{source}#{id}"), SK_SEEN);
        item.insert("seen_until".into(), millis(until));
        item.insert(
            "expires_at".into(),
            AttributeValue::N((until.timestamp() + 86_400).to_string()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR seen_until <= :now")
            .expression_attribute_values(":now", millis(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_check_failed(&err) => Ok(false),
            Err(err) => Err(classify(&err)),
        }
    }

    async fn forget(&self, source: &str, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("SEEN#{source}#{id}"), SK_SEEN)))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing or not a string")))
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

impl NoticeInbox for DynamoSources {
    async fn put_notice(
        &self,
        notice: &PendingNotice,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let mut item = notice_key(&notice.source, &notice.leadgen_id);
        item.insert("source".into(), s(&notice.source));
        item.insert("leadgen_id".into(), s(&notice.leadgen_id));
        item.insert("notice".into(), s(&notice.notice));
        item.insert("received_at".into(), millis(notice.received_at));
        item.insert("attempts".into(), AttributeValue::N("0".into()));
        item.insert("status".into(), s(STATUS_PENDING));
        item.insert("unqueued".into(), s(SK_LEADGEN));
        item.insert("unqueued_since".into(), millis(notice.received_at));
        item.insert(
            "expires_at".into(),
            AttributeValue::N(expires_at.to_string()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_check_failed(&err) => Ok(false),
            Err(err) => Err(classify(&err)),
        }
    }

    async fn pending_notices(&self, limit: usize) -> Result<Vec<PendingNotice>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(UNQUEUED_INDEX)
            .key_condition_expression("unqueued = :leadgen")
            .expression_attribute_values(":leadgen", s(SK_LEADGEN))
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let mut out = Vec::new();
        for keys in output.items() {
            let (Some(pk), Some(sk)) = (keys.get("pk"), keys.get("sk")) else {
                continue;
            };
            let wanted = HashMap::from([
                ("pk".to_string(), pk.clone()),
                ("sk".to_string(), sk.clone()),
            ]);
            let Some(item) = get_consistent(&self.client, &self.table, wanted).await? else {
                continue;
            };
            out.push(PendingNotice {
                source: text(&item, "source")?,
                notice: text(&item, "notice")?,
                leadgen_id: text(&item, "leadgen_id")?,
                received_at: number(&item, "received_at")
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| StoreError::Corrupt("received_at is missing".into()))?,
                attempts: number(&item, "attempts")
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
            });
        }
        Ok(out)
    }

    async fn claim_notice(
        &self,
        source: &str,
        leadgen_id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(notice_key(source, leadgen_id)))
            .update_expression("SET claim_until = :until")
            .condition_expression(
                "#s = :pending AND (attribute_not_exists(claim_until) OR claim_until < :now)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pending", s(STATUS_PENDING))
            .expression_attribute_values(":now", millis(now))
            .expression_attribute_values(":until", millis(until))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_check_failed(&err) => Ok(false),
            Err(err) => Err(classify(&err)),
        }
    }

    async fn settle_notice(
        &self,
        source: &str,
        leadgen_id: &str,
        state: NoticeState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let reason: String = reason.unwrap_or("").chars().take(500).collect();
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(notice_key(source, leadgen_id)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "status");
        let update = match state {
            NoticeState::Done(lead_id) => update
                .update_expression(
                    "SET #s = :done, lead_id = :lead REMOVE claim_until, unqueued, unqueued_since",
                )
                .expression_attribute_values(":done", s("done"))
                .expression_attribute_values(":lead", s(lead_id.to_string())),
            NoticeState::Failed => update
                .update_expression(
                    "SET #s = :failed, reason = :reason REMOVE claim_until, unqueued, unqueued_since",
                )
                .expression_attribute_values(":failed", s("failed"))
                .expression_attribute_values(":reason", s(reason)),
            NoticeState::Pending => update
                .update_expression(
                    "SET #s = :pending, reason = :reason, attempts = attempts + :one REMOVE claim_until",
                )
                .expression_attribute_values(":pending", s(STATUS_PENDING))
                .expression_attribute_values(":reason", s(reason))
                .expression_attribute_values(":one", AttributeValue::N("1".into())),
        };
        update.send().await.map_err(|e| classify(&e))?;
        Ok(())
    }
}
