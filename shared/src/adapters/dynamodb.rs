//! DynamoDB adapter for the receiver's intake records: the conditional write that makes requests idempotent.
//!
//! Item layout in the leads table (`pk`, `sk` strings):
//! `pk = INTAKE#<idempotency key>`, `sk = INTAKE`, with `lead_id`, `status` (`stored` | `queued`),
//! `content_hash`, `received_at`, `raw_body` (binary), `content_type`, `headers` (map), `envelope`
//! (the queued JSON), `email_fp` (a fingerprint, for erasure look-ups), `claim_until` (ms) and
//! `expires_at` (TTL, seconds).
//!
//! While a record is `stored` it also carries `unqueued = INTAKE` and `unqueued_since` (received, ms):
//! the keys of the sparse index [`UNQUEUED_INDEX`], so the sweep finds exactly the leads not yet
//! queued. Marking a record queued removes both.
//!
//! A request without an `Idempotency-Key` also writes, in the same transaction, a de-duplication marker
//! `pk = DEDUP#<content key>`, `sk = DEDUP` with `intake_key` (the record it opened) and `window_until`
//! (ms). A later request with the same content replays that record while the window is open, and opens a
//! new window (a new record) once it has closed.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, Utc};

use crate::domain::LeadId;
use crate::envelope::LeadEnvelope;
use crate::error::ErrorClass;
use crate::ports::{
    CreateOutcome, DedupWindow, ExistingIntake, IntakeRecord, IntakeStatus, IntakeStore,
    PendingIntake, StoreError,
};

/// The sparse index of records not yet queued: partition `unqueued`, sort `unqueued_since`.
pub const UNQUEUED_INDEX: &str = "Unqueued";
const SK_INTAKE: &str = "INTAKE";
const SK_DEDUP: &str = "DEDUP";
const PK_INTAKE_PREFIX: &str = "INTAKE#";
const STATUS_STORED: &str = "stored";
const STATUS_QUEUED: &str = "queued";

/// The intake store on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoIntakeStore {
    client: Client,
    table: String,
}

impl DynamoIntakeStore {
    /// Wraps a client and the table name. Build the client once, at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoIntakeStore {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    fn key(key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(format!("{PK_INTAKE_PREFIX}{key}")),
            ),
            ("sk".to_string(), AttributeValue::S(SK_INTAKE.to_string())),
        ])
    }

    fn dedup_key(key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(format!("DEDUP#{key}"))),
            ("sk".to_string(), AttributeValue::S(SK_DEDUP.to_string())),
        ])
    }

    /// Writes the de-duplication marker and the record in one transaction.
    async fn create_in_window(
        &self,
        record: &IntakeRecord,
        item: HashMap<String, AttributeValue>,
        dedup: &DedupWindow,
    ) -> Result<CreateOutcome, StoreError> {
        let now = record.raw.received_at;
        let mut marker = Self::dedup_key(&dedup.key);
        marker.insert("intake_key".into(), AttributeValue::S(record.key.clone()));
        marker.insert("window_until".into(), millis(dedup.until));
        // Kept a day past the window; the condition, not the TTL, decides whether the window is open.
        marker.insert(
            "expires_at".into(),
            AttributeValue::N((dedup.until.timestamp() + 86_400).to_string()),
        );
        let put_marker = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk) OR window_until <= :now")
            .expression_attribute_values(":now", millis(now))
            .build()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let put_record = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_marker).build())
            .transact_items(TransactWriteItem::builder().put(put_record).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(_))
                ) =>
            {
                // Either the window is open (a duplicate) or a concurrent submission of the same content
                // is being written right now: the marker tells which.
                let marker =
                    get_consistent(&self.client, &self.table, Self::dedup_key(&dedup.key)).await?;
                let open_record = marker.as_ref().and_then(|m| {
                    let until = m.get("window_until")?.as_n().ok()?.parse::<i64>().ok()?;
                    let key = m.get("intake_key")?.as_s().ok()?;
                    (until > now.timestamp_millis()).then(|| key.clone())
                });
                match open_record {
                    Some(key) => Ok(CreateOutcome::Exists(Box::new(self.read(&key).await?))),
                    None => Err(StoreError::Unavailable(
                        "a submission with the same content was being stored at the same time"
                            .into(),
                    )),
                }
            }
            Err(err) => Err(classify(&err)),
        }
    }

    async fn read(&self, key: &str) -> Result<ExistingIntake, StoreError> {
        let item = get_consistent(&self.client, &self.table, Self::key(key))
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt("record vanished after a conditional check".into())
            })?;
        existing_from_item(&item)
    }
}

/// Sorts an SDK error with the one AWS classifier ([`super::errors`]): retryable is `Unavailable`,
/// permanent is `Rejected`.
pub fn classify<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> StoreError
where
    E: ProvideErrorMetadata,
{
    let failure = super::errors::classify(err);
    match failure.class {
        ErrorClass::Retryable => StoreError::Unavailable(failure.message),
        ErrorClass::Permanent => StoreError::Rejected(failure.message),
    }
}

/// Reads one item with a strongly consistent read; `None` when there is none.
pub async fn get_consistent(
    client: &Client,
    table: &str,
    key: HashMap<String, AttributeValue>,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify(&e))?;
    Ok(output.item)
}

/// Whether an SDK error is DynamoDB's `ConditionalCheckFailedException`.
pub fn is_conditional_check_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(service) if service.err().code() == Some("ConditionalCheckFailedException"))
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing or not a string")))
}

fn existing_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<ExistingIntake, StoreError> {
    let status = match text(item, "status")? {
        STATUS_QUEUED => IntakeStatus::Queued,
        _ => IntakeStatus::Stored,
    };
    let envelope = LeadEnvelope::from_json(text(item, "envelope")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(ExistingIntake {
        lead_id: LeadId::from_stored(text(item, "lead_id")?),
        content_hash: text(item, "content_hash")?.to_string(),
        status,
        envelope,
    })
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

impl IntakeStore for DynamoIntakeStore {
    async fn create(
        &self,
        record: &IntakeRecord,
        claim_until: DateTime<Utc>,
        dedup: Option<&DedupWindow>,
    ) -> Result<CreateOutcome, StoreError> {
        let envelope = record
            .envelope
            .to_json()
            .map_err(|e| StoreError::Rejected(format!("envelope did not serialize: {e}")))?;
        let headers: HashMap<String, AttributeValue> = record
            .raw
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
            .collect();
        let mut item = Self::key(&record.key);
        item.insert(
            "lead_id".into(),
            AttributeValue::S(record.lead_id.to_string()),
        );
        item.insert("status".into(), AttributeValue::S(STATUS_STORED.into()));
        item.insert(
            "content_hash".into(),
            AttributeValue::S(record.content_hash.clone()),
        );
        item.insert(
            "received_at".into(),
            AttributeValue::S(record.raw.received_at.to_rfc3339()),
        );
        item.insert(
            "raw_body".into(),
            AttributeValue::B(Blob::new(record.raw.body.clone())),
        );
        if let Some(ct) = &record.raw.content_type {
            item.insert("content_type".into(), AttributeValue::S(ct.clone()));
        }
        if !headers.is_empty() {
            item.insert("headers".into(), AttributeValue::M(headers));
        }
        item.insert("envelope".into(), AttributeValue::S(envelope));
        item.insert(
            "email_fp".into(),
            AttributeValue::S(record.lead().email.fingerprint()),
        );
        item.insert("claim_until".into(), millis(claim_until));
        item.insert(
            "expires_at".into(),
            AttributeValue::N(record.expires_at.to_string()),
        );
        item.insert("unqueued".into(), AttributeValue::S(SK_INTAKE.into()));
        item.insert("unqueued_since".into(), millis(record.raw.received_at));
        if let Some(dedup) = dedup {
            return self.create_in_window(record, item, dedup).await;
        }

        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(err) if is_conditional_check_failed(&err) => {
                let old = err.as_service_error().and_then(|e| match e {
                    PutItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                });
                let existing = match old {
                    Some(item) => existing_from_item(item)?,
                    None => self.read(&record.key).await?,
                };
                Ok(CreateOutcome::Exists(Box::new(existing)))
            }
            Err(err) => Err(classify(&err)),
        }
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression("SET claim_until = :until")
            .condition_expression(
                "#s = :stored AND (attribute_not_exists(claim_until) OR claim_until < :now)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":stored", AttributeValue::S(STATUS_STORED.into()))
            .expression_attribute_values(":now", millis(now))
            .expression_attribute_values(":until", millis(claim_until))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_check_failed(&err) => Ok(false),
            Err(err) => Err(classify(&err)),
        }
    }

    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression("SET #s = :queued REMOVE claim_until, unqueued, unqueued_since")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":queued", AttributeValue::S(STATUS_QUEUED.into()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn release_claim(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression("REMOVE claim_until")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<ExistingIntake>, StoreError> {
        get_consistent(&self.client, &self.table, Self::key(key))
            .await?
            .map(|item| existing_from_item(&item))
            .transpose()
    }

    async fn unqueued(&self, limit: usize) -> Result<Vec<PendingIntake>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(UNQUEUED_INDEX)
            .key_condition_expression("unqueued = :intake")
            .expression_attribute_values(":intake", AttributeValue::S(SK_INTAKE.into()))
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        output
            .items()
            .iter()
            .map(|item| {
                let key = text(item, "pk")?
                    .strip_prefix(PK_INTAKE_PREFIX)
                    .ok_or_else(|| {
                        StoreError::Corrupt("unqueued item is not an intake record".into())
                    })?
                    .to_string();
                let received_at = item
                    .get("unqueued_since")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| StoreError::Corrupt("unqueued_since is missing".into()))?;
                Ok(PendingIntake { key, received_at })
            })
            .collect()
    }
}
