//! DynamoDB adapter for audience-sync: the membership ledger, sync records, Google jobs, and batched
//! profile reads, all on the leads table.
//!
//! Item layout (`pk`, `sk` strings):
//! - `pk = AUDIENCE#<profile key>`, `sk = <audience key>` (`meta:<id>`, `google:<customer>:<list>`):
//!   `audience` (JSON), `name`, `state` (`pending` | `added` | `removed` | `skipped` | `failed`), `op`,
//!   `version` (N, the optimistic lock), `lease_until` (N, ms), `event_at`, `dry_run` (BOOL), `reason`,
//!   `updated_at`. No TTL: a membership lives until it is removed.
//! - `pk = AUDIENCE_RUN#<audience key>`, `sk = <at>#<ulid>`: `run` (JSON of the sync record, with the
//!   dry-run requests), `expires_at` (TTL, 30 days).
//! - `pk = AUDIENCE_JOB#<audience key>`, `sk = <job resource name>`: `state`, `op`, `people`,
//!   `created_at`, `reason`, `audience` (JSON), `expires_at` (TTL, 30 days).
//!
//! Reads go by `BatchGetItem` (100 keys), claims by `TransactWriteItems` (100 conditional puts, each on
//! the version it read: [`super::ledger::versioned_put`]), completions by `BatchWriteItem` (25 puts): a 10,000-message batch is a few
//! hundred requests, run concurrently.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem,
    WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;

use super::dynamodb::classify;
use super::ledger::{FAILED, Item, Ledger, PENDING, corrupt, n, s, versioned_put, written};
use crate::audience::ports::{
    ClaimWrite, JobRecord, Membership, MembershipLedger, ProfileSnapshots, RunRecord, State,
};
use crate::audience::{Op, PlatformAudience};
use crate::ports::StoreError;
use crate::routing::Profile;

const PK_MEMBER: &str = "AUDIENCE#";
const PK_RUN: &str = "AUDIENCE_RUN#";
const PK_JOB: &str = "AUDIENCE_JOB#";
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
/// Sync and job records are kept this long.
const RECORD_TTL_DAYS: i64 = 30;
/// A run record's requests are cut to stay under DynamoDB's 400 KB item limit.
const MAX_RUN_BYTES: usize = 300_000;
/// Retries of the keys/items DynamoDB left unprocessed.
const MAX_UNPROCESSED_ROUNDS: u32 = 8;

/// The membership ledger on the leads table.
#[derive(Debug, Clone)]
pub struct DynamoMemberships {
    client: Client,
    table: String,
}

fn member_key(profile_key: &str, audience_key: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("{PK_MEMBER}{profile_key}"))),
        ("sk".to_string(), s(audience_key)),
    ])
}

fn state_str(state: State) -> &'static str {
    match state {
        State::Pending => PENDING,
        State::Added => "added",
        State::Removed => "removed",
        State::Skipped => "skipped",
        State::Failed => FAILED,
    }
}

fn state_of(text: &str) -> Result<State, StoreError> {
    Ok(match text {
        PENDING => State::Pending,
        "added" => State::Added,
        "removed" => State::Removed,
        "skipped" => State::Skipped,
        FAILED => State::Failed,
        other => return Err(corrupt(format!("unknown membership state {other}"))),
    })
}

fn to_item(m: &Membership) -> Result<Item, StoreError> {
    let mut item = member_key(&m.profile_key, &m.audience.key());
    item.insert(
        "audience".into(),
        s(serde_json::to_string(&m.audience).map_err(corrupt)?),
    );
    item.insert("name".into(), s(m.name.clone()));
    item.insert("state".into(), s(state_str(m.state)));
    if let Some(op) = m.op {
        item.insert("op".into(), s(op.as_str()));
    }
    item.insert("version".into(), n(m.version));
    item.insert("lease_until".into(), n(m.lease_until_ms));
    item.insert("event_at".into(), s(m.event_at.to_rfc3339()));
    item.insert("dry_run".into(), AttributeValue::Bool(m.dry_run));
    if let Some(r) = &m.reason {
        item.insert("reason".into(), s(r.clone()));
    }
    item.insert("updated_at".into(), s(m.updated_at.to_rfc3339()));
    Ok(item)
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    text(item, name)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| corrupt(format!("{name} is missing or not a time")))
}

fn from_item(item: &Item) -> Result<Membership, StoreError> {
    let profile_key = text(item, "pk")
        .and_then(|p| p.strip_prefix(PK_MEMBER))
        .ok_or_else(|| corrupt("membership pk"))?
        .to_string();
    let audience: PlatformAudience =
        serde_json::from_str(text(item, "audience").unwrap_or("")).map_err(corrupt)?;
    let number = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    Ok(Membership {
        profile_key,
        audience,
        name: text(item, "name").unwrap_or("").to_string(),
        state: state_of(text(item, "state").unwrap_or(""))?,
        op: match text(item, "op") {
            Some("add") => Some(Op::Add),
            Some("remove") => Some(Op::Remove),
            _ => None,
        },
        version: number("version")
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| corrupt("membership version"))?,
        lease_until_ms: number("lease_until").unwrap_or(0),
        event_at: time(item, "event_at")?,
        dry_run: item
            .get("dry_run")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        reason: text(item, "reason").map(str::to_string),
        updated_at: time(item, "updated_at")?,
    })
}

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

impl DynamoMemberships {
    /// Wraps a client and the table name. Build the client once, at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoMemberships {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// The ledger's single-item writes on the same table.
    fn ledger(&self) -> Ledger<'_> {
        Ledger {
            client: &self.client,
            table: &self.table,
        }
    }

    /// Reads items by key in `BatchGetItem` calls of 100, concurrently, retrying unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let chunks: Vec<Vec<Item>> = keys.chunks(100).map(<[Item]>::to_vec).collect();
        let results: Vec<Result<Vec<Item>, StoreError>> = futures_util::stream::iter(chunks)
            .map(|chunk| self.batch_get_chunk(chunk))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::new();
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    async fn batch_get_chunk(&self, mut keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for round in 0..MAX_UNPROCESSED_ROUNDS {
            if keys.is_empty() {
                return Ok(out);
            }
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .build()
                .map_err(corrupt)?;
            let res = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            if let Some(items) = res.responses().and_then(|r| r.get(&self.table)) {
                out.extend(items.iter().cloned());
            }
            if let Some(left) = res.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                keys = left.keys().to_vec();
            }
        }
        if keys.is_empty() {
            Ok(out)
        } else {
            Err(StoreError::Unavailable(
                "DynamoDB left keys unprocessed".into(),
            ))
        }
    }

    /// Writes in `BatchWriteItem` calls of 25, concurrently, retrying unprocessed items.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let chunks: Vec<Vec<WriteRequest>> =
            requests.chunks(25).map(<[WriteRequest]>::to_vec).collect();
        let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(chunks)
            .map(|chunk| self.batch_write_chunk(chunk))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn batch_write_chunk(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for round in 0..MAX_UNPROCESSED_ROUNDS {
            if requests.is_empty() {
                return Ok(());
            }
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
            }
            let res = self
                .client
                .batch_write_item()
                .request_items(&self.table, std::mem::take(&mut requests))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            if let Some(left) = res.unprocessed_items().and_then(|u| u.get(&self.table)) {
                requests = left.clone();
            }
        }
        if requests.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "DynamoDB left writes unprocessed".into(),
            ))
        }
    }

    fn conditional_put(&self, claim: &ClaimWrite) -> Result<Put, StoreError> {
        versioned_put(&self.table, to_item(&claim.next)?, claim.expected)
    }

    /// One claim alone (the fallback when a transaction cannot say which item failed).
    async fn claim_one(&self, claim: &ClaimWrite) -> Result<bool, StoreError> {
        let put = self.conditional_put(claim)?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_string))
            .set_expression_attribute_names(put.expression_attribute_names().cloned())
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await;
        written(result)
    }

    /// Claims up to 100 records in one transaction. Items whose condition failed are lost; the rest is
    /// tried again without them.
    async fn claim_chunk(&self, claims: &[ClaimWrite]) -> Result<Vec<bool>, StoreError> {
        let mut won = vec![false; claims.len()];
        let mut pending: Vec<usize> = (0..claims.len()).collect();
        for _ in 0..3 {
            if pending.is_empty() {
                break;
            }
            let mut items = Vec::with_capacity(pending.len());
            for i in &pending {
                items.push(
                    TransactWriteItem::builder()
                        .put(self.conditional_put(&claims[*i])?)
                        .build(),
                );
            }
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    for i in pending.drain(..) {
                        won[i] = true;
                    }
                }
                Err(e) => match cancellation_codes(&e) {
                    Some(codes) if codes.len() == pending.len() => {
                        let failed: Vec<bool> = codes
                            .iter()
                            .map(|c| c == "ConditionalCheckFailed")
                            .collect();
                        if !failed.iter().any(|f| *f) {
                            // A conflict with another transaction: the per-item fallback below decides.
                            break;
                        }
                        pending = pending
                            .into_iter()
                            .zip(failed)
                            .filter(|(_, f)| !f)
                            .map(|(i, _)| i)
                            .collect();
                    }
                    Some(_) => break,
                    None => return Err(classify(&e)),
                },
            }
        }
        for i in pending {
            won[i] = self.claim_one(&claims[i]).await?;
        }
        Ok(won)
    }
}

impl MembershipLedger for DynamoMemberships {
    async fn load(&self, keys: &[(String, String)]) -> Result<Vec<Membership>, StoreError> {
        let items = self
            .batch_get(keys.iter().map(|(p, a)| member_key(p, a)).collect())
            .await?;
        items.iter().map(from_item).collect()
    }

    async fn of_person(&self, profile_key: &str) -> Result<Vec<Membership>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let res = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("{PK_MEMBER}{profile_key}")))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(&e))?;
            for item in res.items() {
                out.push(from_item(item)?);
            }
            match res.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn claim(&self, claims: &[ClaimWrite]) -> Result<Vec<bool>, StoreError> {
        let futures: Vec<_> = claims
            .chunks(100)
            .map(|chunk| self.claim_chunk(chunk))
            .collect();
        let results: Vec<Result<Vec<bool>, StoreError>> = futures_util::stream::iter(futures)
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(claims.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    async fn complete(&self, records: &[Membership]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(records.len());
        for m in records {
            requests.push(
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(to_item(m)?))
                            .build()
                            .map_err(corrupt)?,
                    )
                    .build(),
            );
        }
        self.batch_write(requests).await
    }

    async fn release(
        &self,
        previous: &[(String, String, Option<Membership>)],
    ) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(previous.len());
        for (profile_key, audience_key, before) in previous {
            let request = match before {
                Some(m) => WriteRequest::builder().put_request(
                    PutRequest::builder()
                        .set_item(Some(to_item(m)?))
                        .build()
                        .map_err(corrupt)?,
                ),
                None => WriteRequest::builder().delete_request(
                    DeleteRequest::builder()
                        .set_key(Some(member_key(profile_key, audience_key)))
                        .build()
                        .map_err(corrupt)?,
                ),
            };
            requests.push(request.build());
        }
        self.batch_write(requests).await
    }

    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut run = run.clone();
        let mut json = serde_json::to_string(&run).map_err(corrupt)?;
        while json.len() > MAX_RUN_BYTES && !run.requests.is_empty() {
            // Keep the first requests whole; drop the last until the record fits.
            run.requests.pop();
            run.requests_truncated = true;
            json = serde_json::to_string(&run).map_err(corrupt)?;
        }
        let item = HashMap::from([
            (
                "pk".to_string(),
                s(format!("{PK_RUN}{}", run.audience.key())),
            ),
            (
                "sk".to_string(),
                s(format!("{}#{}", run.at.to_rfc3339(), ulid::Ulid::new())),
            ),
            ("run".to_string(), s(json)),
            (
                "expires_at".to_string(),
                n((run.at + Duration::days(RECORD_TTL_DAYS)).timestamp()),
            ),
        ]);
        self.ledger().put(item).await
    }

    async fn record_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let mut item = HashMap::from([
            (
                "pk".to_string(),
                s(format!("{PK_JOB}{}", job.audience.key())),
            ),
            ("sk".to_string(), s(job.job.clone())),
            (
                "audience".to_string(),
                s(serde_json::to_string(&job.audience).map_err(corrupt)?),
            ),
            ("state".to_string(), s(job.state.clone())),
            ("op".to_string(), s(job.op.as_str())),
            ("people".to_string(), n(job.people)),
            ("created_at".to_string(), s(job.created_at.to_rfc3339())),
            (
                "expires_at".to_string(),
                n((job.created_at + Duration::days(RECORD_TTL_DAYS)).timestamp()),
            ),
        ]);
        if let Some(r) = &job.reason {
            item.insert("reason".into(), s(r.clone()));
        }
        self.ledger().put(item).await
    }

    async fn running_jobs(
        &self,
        audience: &PlatformAudience,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let res = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .filter_expression("#st = :running")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":pk", s(format!("{PK_JOB}{}", audience.key())))
            .expression_attribute_values(":running", s("running"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        res.items()
            .iter()
            .map(|item| {
                Ok(JobRecord {
                    audience: audience.clone(),
                    job: text(item, "sk").unwrap_or("").to_string(),
                    op: if text(item, "op") == Some("remove") {
                        Op::Remove
                    } else {
                        Op::Add
                    },
                    people: item
                        .get("people")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    created_at: time(item, "created_at")?,
                    state: text(item, "state").unwrap_or("").to_string(),
                    reason: text(item, "reason").map(str::to_string),
                })
            })
            .collect()
    }
}

impl ProfileSnapshots for DynamoMemberships {
    async fn profiles(&self, keys: &[String]) -> Result<HashMap<String, Profile>, StoreError> {
        let items = self
            .batch_get(
                keys.iter()
                    .map(|k| super::profiles::profile_key(k))
                    .collect(),
            )
            .await?;
        let mut out = HashMap::with_capacity(items.len());
        for item in items {
            let Some(key) = text(&item, "pk").and_then(|p| p.strip_prefix("PROFILE#")) else {
                continue;
            };
            let Some(json) = text(&item, "profile") else {
                continue;
            };
            let profile: Profile = serde_json::from_str(json).map_err(corrupt)?;
            out.insert(key.to_string(), profile);
        }
        Ok(out)
    }
}

/// The membership record key of a person and audience, for tests and tools.
pub fn membership_key(profile_key: &str, audience: &PlatformAudience) -> (String, String) {
    (profile_key.to_string(), audience.key())
}
