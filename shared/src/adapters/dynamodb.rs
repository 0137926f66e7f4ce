//! DynamoDB adapter for the receiver's intake records: the conditional write that makes requests
//! idempotent, for leads ([`DynamoIntakeStore`]) and e-commerce events ([`DynamoEventStore`]).
//!
//! Lead records in the leads table (`pk`, `sk` strings):
//! `pk = INTAKE#<idempotency key>`, `sk = INTAKE`, with `lead_id`, `status` (`stored` | `queued`),
//! `content_hash`, `received_at`, `raw_body` (binary), `content_type`, `headers` (map), `envelope`
//! (the queued JSON), `email_fp` (a fingerprint, for erasure look-ups), `claim_until` (ms) and
//! `expires_at` (TTL, seconds).
//!
//! Event records (`POST /events`): `pk = EVENT#<idempotency key>`, `sk = EVENT`, with `event_id`,
//! `status`, `content_hash`, `received_at`, `message` (the queued `CommerceEvent` JSON, the only place the
//! raw email is kept), `email_fp` (when the event names an email), `claim_until` and `expires_at`.
//!
//! While a record is `stored` it also carries `unqueued` (`INTAKE` for leads, `EVENT` for events) and
//! `unqueued_since` (received, ms): the keys of the sparse index [`UNQUEUED_INDEX`], so the sweep finds
//! exactly the records not yet queued. Marking a record queued removes both. Both kinds share the claim,
//! mark and release code ([`RecordKind`]).
//!
//! A lead request without an `Idempotency-Key` also writes, in the same transaction, a de-duplication
//! marker `pk = DEDUP#<content key>`, `sk = DEDUP` with `intake_key` (the record it opened) and
//! `window_until` (ms). A later request with the same content replays that record while the window is
//! open, and opens a new window (a new record) once it has closed.

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
    CreateOutcome, DedupWindow, EventCreated, EventRecord, EventStore, ExistingEvent,
    ExistingIntake, IntakeRecord, IntakeStatus, IntakeStore, PendingIntake, StoreError,
};

/// The sparse index of records not yet queued: partition `unqueued`, sort `unqueued_since`.
pub const UNQUEUED_INDEX: &str = "Unqueued";
const SK_DEDUP: &str = "DEDUP";
const STATUS_STORED: &str = "stored";
const STATUS_QUEUED: &str = "queued";

/// One kind of record the receiver stores and queues: its key prefix, and its sort key, which is also
/// its partition of the [`UNQUEUED_INDEX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKind {
    prefix: &'static str,
    sk: &'static str,
}

impl RecordKind {
    /// Leads: `INTAKE#<key>` / `INTAKE`.
    pub const LEAD: RecordKind = RecordKind {
        prefix: "INTAKE#",
        sk: "INTAKE",
    };
    /// E-commerce events: `EVENT#<key>` / `EVENT`.
    pub const EVENT: RecordKind = RecordKind {
        prefix: "EVENT#",
        sk: "EVENT",
    };

    /// The item key of the record named `key`.
    pub fn key(self, key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(format!("{}{key}", self.prefix)),
            ),
            ("sk".to_string(), AttributeValue::S(self.sk.to_string())),
        ])
    }

    /// The attributes every new record of this kind carries: status `stored`, the creator's enqueue
    /// claim, the TTL and the sparse index keys.
    fn stored(
        self,
        key: &str,
        received_at: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        expires_at: i64,
    ) -> HashMap<String, AttributeValue> {
        let mut item = self.key(key);
        item.insert("status".into(), AttributeValue::S(STATUS_STORED.into()));
        item.insert(
            "received_at".into(),
            AttributeValue::S(received_at.to_rfc3339()),
        );
        item.insert("claim_until".into(), millis(claim_until));
        item.insert(
            "expires_at".into(),
            AttributeValue::N(expires_at.to_string()),
        );
        item.insert("unqueued".into(), AttributeValue::S(self.sk.into()));
        item.insert("unqueued_since".into(), millis(received_at));
        item
    }

    /// Takes the enqueue claim of a record still `stored`, if nobody holds an unexpired one.
    async fn claim(
        self,
        client: &Client,
        table: &str,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = client
            .update_item()
            .table_name(table)
            .set_key(Some(self.key(key)))
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

    /// Marks a record queued: drops its claim and leaves the sparse index.
    async fn mark_queued(self, client: &Client, table: &str, key: &str) -> Result<(), StoreError> {
        client
            .update_item()
            .table_name(table)
            .set_key(Some(self.key(key)))
            .update_expression("SET #s = :queued REMOVE claim_until, unqueued, unqueued_since")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":queued", AttributeValue::S(STATUS_QUEUED.into()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Drops a record's enqueue claim.
    async fn release_claim(
        self,
        client: &Client,
        table: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        client
            .update_item()
            .table_name(table)
            .set_key(Some(self.key(key)))
            .update_expression("REMOVE claim_until")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Up to `limit` records of this kind not yet queued, oldest first.
    async fn unqueued(
        self,
        client: &Client,
        table: &str,
        limit: usize,
    ) -> Result<Vec<PendingIntake>, StoreError> {
        let output = client
            .query()
            .table_name(table)
            .index_name(UNQUEUED_INDEX)
            .key_condition_expression("unqueued = :kind")
            .expression_attribute_values(":kind", AttributeValue::S(self.sk.into()))
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
                    .strip_prefix(self.prefix)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("unqueued item is not a {} record", self.sk))
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
        RecordKind::LEAD.key(key)
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

fn status_of(item: &HashMap<String, AttributeValue>) -> Result<IntakeStatus, StoreError> {
    Ok(match text(item, "status")? {
        STATUS_QUEUED => IntakeStatus::Queued,
        _ => IntakeStatus::Stored,
    })
}

fn existing_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<ExistingIntake, StoreError> {
    let status = status_of(item)?;
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
        let mut item = RecordKind::LEAD.stored(
            &record.key,
            record.raw.received_at,
            claim_until,
            record.expires_at,
        );
        item.insert(
            "lead_id".into(),
            AttributeValue::S(record.lead_id.to_string()),
        );
        item.insert(
            "content_hash".into(),
            AttributeValue::S(record.content_hash.clone()),
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
        RecordKind::LEAD
            .claim(&self.client, &self.table, key, now, claim_until)
            .await
    }

    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        RecordKind::LEAD
            .mark_queued(&self.client, &self.table, key)
            .await
    }

    async fn release_claim(&self, key: &str) -> Result<(), StoreError> {
        RecordKind::LEAD
            .release_claim(&self.client, &self.table, key)
            .await
    }

    async fn load(&self, key: &str) -> Result<Option<ExistingIntake>, StoreError> {
        get_consistent(&self.client, &self.table, Self::key(key))
            .await?
            .map(|item| existing_from_item(&item))
            .transpose()
    }

    async fn unqueued(&self, limit: usize) -> Result<Vec<PendingIntake>, StoreError> {
        RecordKind::LEAD
            .unqueued(&self.client, &self.table, limit)
            .await
    }
}

/// The e-commerce event store on the same DynamoDB table as the leads.
#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: Client,
    table: String,
}

impl DynamoEventStore {
    /// Wraps a client and the table name. Build the client once, at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoEventStore {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }
}

fn event_from_item(item: &HashMap<String, AttributeValue>) -> Result<ExistingEvent, StoreError> {
    Ok(ExistingEvent {
        event_id: text(item, "event_id")?.to_string(),
        content_hash: text(item, "content_hash")?.to_string(),
        status: status_of(item)?,
        message: text(item, "message")?.to_string(),
    })
}

impl EventStore for DynamoEventStore {
    async fn create(
        &self,
        record: &EventRecord,
        claim_until: DateTime<Utc>,
    ) -> Result<EventCreated, StoreError> {
        let mut item = RecordKind::EVENT.stored(
            &record.key,
            record.received_at,
            claim_until,
            record.expires_at,
        );
        item.insert(
            "event_id".into(),
            AttributeValue::S(record.event_id.clone()),
        );
        item.insert(
            "content_hash".into(),
            AttributeValue::S(record.content_hash.clone()),
        );
        item.insert("message".into(), AttributeValue::S(record.message.clone()));
        if let Some(fp) = &record.email_fp {
            item.insert("email_fp".into(), AttributeValue::S(fp.clone()));
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
            Ok(_) => Ok(EventCreated::Created),
            Err(err) if is_conditional_check_failed(&err) => {
                let old = err.as_service_error().and_then(|e| match e {
                    PutItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                });
                let existing = match old {
                    Some(item) => event_from_item(item)?,
                    None => self.load(&record.key).await?.ok_or_else(|| {
                        StoreError::Corrupt("record vanished after a conditional check".into())
                    })?,
                };
                Ok(EventCreated::Exists(Box::new(existing)))
            }
            Err(err) => Err(classify(&err)),
        }
    }

    async fn load(&self, key: &str) -> Result<Option<ExistingEvent>, StoreError> {
        get_consistent(&self.client, &self.table, RecordKind::EVENT.key(key))
            .await?
            .map(|item| event_from_item(&item))
            .transpose()
    }

    async fn unqueued(&self, limit: usize) -> Result<Vec<PendingIntake>, StoreError> {
        RecordKind::EVENT
            .unqueued(&self.client, &self.table, limit)
            .await
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        RecordKind::EVENT
            .claim(&self.client, &self.table, key, now, claim_until)
            .await
    }

    async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
        RecordKind::EVENT
            .mark_queued(&self.client, &self.table, key)
            .await
    }

    async fn release_claim(&self, key: &str) -> Result<(), StoreError> {
        RecordKind::EVENT
            .release_claim(&self.client, &self.table, key)
            .await
    }
}
