//! DynamoDB and SQS adapters of email-trigger: its effect ledger, the per-person record, customer links
//! and the delayed send of recommendation messages.
//!
//! All live in the leads table beside the intake records and profiles:
//! - `pk = EFFECT#<effect key>`, `sk = EMAIL`: `state` (`pending` | `done` | `failed` | `skipped`),
//!   `lease_until` (ms), `reason`, `platforms` (string set), `detail` (JSON: dry-run requests, notes),
//!   `email_fp`, `updated_at`, `expires_at` (TTL): the effect ledger, claimed and completed through
//!   [`super::ledger`]; a `skipped` enrollment may be claimed again.
//! - `pk = EMAIL#<profile key>`, `sk = EMAIL`: `platforms` (string set), `views` (JSON list),
//!   `bought` (string set), `last_recommended_at` (ms), `window_id`, `window_until` (ms),
//!   `window_scheduled` (bool), `email_fp`, `updated_at`.
//! - `pk = CUSTOMER#<sha256 of the customer id>`, `sk = EMAIL`: `profile_key`, `email_fp`.
//!
//! Every item carries `email_fp`, so an erasure finds them through the `EmailFingerprint` index.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};

use super::dynamodb::{classify, get_consistent};
use super::ledger::{DONE, FAILED, Ledger, corrupt, n, s, written};
use crate::email::Platform;
use crate::email::ports::{
    DelayedQueue, EmailLedger, EmailOutcome, EmailPeople, PersonRecord, View, Window,
};
use crate::ports::{QueueError, StoreError};
use crate::routing::ports::Claim;

const SK: &str = "EMAIL";
/// An enrollment not performed (no consent, say): a later message may claim it again.
const SKIPPED: &str = "skipped";

fn key(pk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(SK))])
}

/// The key of an email effect item.
pub fn effect_item_key(effect_key: &str) -> HashMap<String, AttributeValue> {
    key(format!("EFFECT#{effect_key}"))
}

/// The key of a person's email record.
pub fn person_item_key(profile_key: &str) -> HashMap<String, AttributeValue> {
    key(format!("EMAIL#{profile_key}"))
}

/// The key of a customer-id link.
pub fn customer_item_key(customer_id: &str) -> HashMap<String, AttributeValue> {
    key(format!(
        "CUSTOMER#{}",
        crate::idempotency::key_of("fluxo.customer.v1", &[customer_id])
    ))
}

/// email-trigger's records on the leads table.
#[derive(Debug, Clone)]
pub struct DynamoEmail {
    client: Client,
    table: String,
}

impl DynamoEmail {
    /// Wraps a client built once at cold start.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoEmail {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// An effect's state and reason (what tests and the demo read).
    pub async fn effect(&self, key: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        let item = get_consistent(&self.client, &self.table, effect_item_key(key)).await?;
        Ok(item.map(|i| {
            let text = |name: &str| i.get(name).and_then(|v| v.as_s().ok()).cloned();
            (text("state").unwrap_or_default(), text("reason"))
        }))
    }

    /// An effect's recorded detail (JSON), if any.
    pub async fn effect_detail(&self, key: &str) -> Result<Option<String>, StoreError> {
        let item = get_consistent(&self.client, &self.table, effect_item_key(key)).await?;
        Ok(item.and_then(|i| i.get("detail").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// The effect records (the ledger) on the same table.
    fn ledger(&self) -> Ledger<'_> {
        Ledger {
            client: &self.client,
            table: &self.table,
        }
    }
}

impl EmailLedger for DynamoEmail {
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.ledger()
            .claim(effect_item_key(key), &[SKIPPED], now, lease_until)
            .await
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        outcome: &EmailOutcome,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (state, reason, platforms) = match outcome {
            EmailOutcome::Done { platforms } => (DONE, None, platforms.as_slice()),
            EmailOutcome::Failed(r) => (FAILED, Some(r.clone()), &[][..]),
            EmailOutcome::Skipped(r) => (SKIPPED, Some(r.clone()), &[][..]),
        };
        let mut extra = HashMap::from([("email_fp".to_string(), s(fingerprint))]);
        if !platforms.is_empty() {
            extra.insert(
                "platforms".into(),
                AttributeValue::Ss(platforms.iter().map(|p| p.as_str().to_string()).collect()),
            );
        }
        if let Some(detail) = detail {
            extra.insert("detail".into(), s(detail));
        }
        self.ledger()
            .complete(effect_item_key(key), state, reason, extra, now)
            .await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.ledger().release(effect_item_key(key)).await
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.ledger().forget(effect_item_key(key)).await
    }
}

fn person_from(item: &HashMap<String, AttributeValue>) -> Result<PersonRecord, StoreError> {
    let set = |name: &str| -> BTreeSet<String> {
        item.get(name)
            .and_then(|v| v.as_ss().ok())
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    };
    let num = |name: &str| -> Option<i64> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
    };
    let views: Vec<View> = match item.get("views").and_then(|v| v.as_s().ok()) {
        Some(json) => serde_json::from_str(json).map_err(corrupt)?,
        None => Vec::new(),
    };
    let window = match (num("window_id"), num("window_until")) {
        (Some(id), Some(until)) => DateTime::from_timestamp_millis(until).map(|until| Window {
            id,
            until,
            scheduled: item
                .get("window_scheduled")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
        }),
        _ => None,
    };
    Ok(PersonRecord {
        platforms: set("platforms")
            .iter()
            .filter_map(|p| Platform::parse(p))
            .collect(),
        sequences: set("sequences"),
        views,
        bought: set("bought"),
        last_recommended_at: num("last_recommended_at").and_then(DateTime::from_timestamp_millis),
        window,
    })
}

/// Read-modify-write attempts of the views list before giving up on a contended record.
const MAX_VIEW_WRITES: u32 = 5;

impl EmailPeople for DynamoEmail {
    async fn load(&self, profile_key: &str) -> Result<Option<PersonRecord>, StoreError> {
        let item = get_consistent(&self.client, &self.table, person_item_key(profile_key)).await?;
        item.as_ref().map(person_from).transpose()
    }

    async fn add_platforms(
        &self,
        profile_key: &str,
        fingerprint: &str,
        platforms: &[Platform],
        sequence: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if platforms.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(person_item_key(profile_key)))
            .expression_attribute_values(
                ":p",
                AttributeValue::Ss(platforms.iter().map(|p| p.as_str().to_string()).collect()),
            )
            .expression_attribute_values(":fp", s(fingerprint))
            .expression_attribute_values(":u", s(now.to_rfc3339()));
        update = match sequence {
            Some(seq) => update
                .update_expression(
                    "ADD platforms :p, sequences :q SET email_fp = :fp, updated_at = :u",
                )
                .expression_attribute_values(":q", AttributeValue::Ss(vec![seq.to_string()])),
            None => {
                update.update_expression("ADD platforms :p SET email_fp = :fp, updated_at = :u")
            }
        };
        update.send().await.map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn record_view(
        &self,
        profile_key: &str,
        fingerprint: &str,
        view: &View,
        keep: usize,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Window, StoreError> {
        for _ in 0..MAX_VIEW_WRITES {
            let item =
                get_consistent(&self.client, &self.table, person_item_key(profile_key)).await?;
            let record = item
                .as_ref()
                .map(person_from)
                .transpose()?
                .unwrap_or_default();
            let version = item
                .as_ref()
                .and_then(|i| i.get("views_n"))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let mut views = record.views;
            if !views.iter().any(|v| v.event_id == view.event_id) {
                views.push(view.clone());
            }
            views.sort_by_key(|v| v.at);
            let excess = views.len().saturating_sub(keep.max(1));
            views.drain(..excess);
            let open = record.window.filter(|w| w.until > now).unwrap_or(Window {
                id: now.timestamp_millis(),
                until: now + window,
                scheduled: false,
            });
            let json = serde_json::to_string(&views).map_err(corrupt)?;
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(person_item_key(profile_key)))
                .update_expression(
                    "SET #views = :views, views_n = :next, window_id = :wid, window_until = :wuntil, window_scheduled = :ws, email_fp = :fp, updated_at = :u",
                )
                .expression_attribute_names("#views", "views")
                .expression_attribute_values(":views", s(json))
                .expression_attribute_values(":next", n(version.unwrap_or(0) + 1))
                .expression_attribute_values(":wid", n(open.id))
                .expression_attribute_values(":wuntil", n(open.until.timestamp_millis()))
                .expression_attribute_values(":ws", AttributeValue::Bool(open.scheduled))
                .expression_attribute_values(":fp", s(fingerprint))
                .expression_attribute_values(":u", s(now.to_rfc3339()));
            update = match version {
                None => update.condition_expression("attribute_not_exists(views_n)"),
                Some(v) => update
                    .condition_expression("views_n = :n")
                    .expression_attribute_values(":n", n(v)),
            };
            if written(update.send().await)? {
                return Ok(open);
            }
            tracing::debug!("the person's views changed concurrently; reading again");
        }
        Err(StoreError::Unavailable(
            "the person's views kept changing under concurrent writes".into(),
        ))
    }

    async fn mark_scheduled(&self, profile_key: &str, window_id: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(person_item_key(profile_key)))
            .update_expression("SET window_scheduled = :t")
            .condition_expression("window_id = :wid")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":wid", n(window_id))
            .send()
            .await;
        // Not written: a newer window replaced it, so there is nothing to mark.
        written(result).map(|_| ())
    }

    async fn record_purchase(
        &self,
        profile_key: &str,
        fingerprint: &str,
        product_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if product_ids.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(person_item_key(profile_key)))
            .update_expression("ADD bought :b SET email_fp = :fp, updated_at = :u")
            .expression_attribute_values(":b", AttributeValue::Ss(product_ids.to_vec()))
            .expression_attribute_values(":fp", s(fingerprint))
            .expression_attribute_values(":u", s(now.to_rfc3339()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn mark_recommended(
        &self,
        profile_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(person_item_key(profile_key)))
            .update_expression("SET last_recommended_at = :at")
            .expression_attribute_values(":at", n(at.timestamp_millis()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn customer(&self, customer_id: &str) -> Result<Option<String>, StoreError> {
        let item =
            get_consistent(&self.client, &self.table, customer_item_key(customer_id)).await?;
        Ok(item.and_then(|i| i.get("profile_key").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn link_customer(
        &self,
        customer_id: &str,
        profile_key: &str,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        let mut item = customer_item_key(customer_id);
        item.insert("profile_key".into(), s(profile_key));
        item.insert("email_fp".into(), s(fingerprint));
        self.ledger().put(item).await
    }
}

/// The index of the leads table by `email_fp`: every item about one person.
pub const FINGERPRINT_INDEX: &str = "EmailFingerprint";

impl DynamoEmail {
    /// Deletes every item of the leads table whose `email_fp` is `fingerprint` (intake records, profile,
    /// email records and effects, customer links), through [`FINGERPRINT_INDEX`]. Returns how many.
    pub async fn erase_fingerprint(&self, fingerprint: &str) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FINGERPRINT_INDEX)
                .key_condition_expression("email_fp = :fp")
                .expression_attribute_values(":fp", s(fingerprint))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(&e))?;
            for item in out.items() {
                let (Some(pk), Some(sk)) = (item.get("pk"), item.get("sk")) else {
                    continue;
                };
                let key = HashMap::from([
                    ("pk".to_string(), pk.clone()),
                    ("sk".to_string(), sk.clone()),
                ]);
                self.ledger().forget(key).await?;
                deleted += 1;
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(deleted)
    }

    /// Journals an erasure without personal data: its id, time, the keyed fingerprint (so the erasure of
    /// a given address can be proved later, by computing it again) and the report. The fingerprint is
    /// kept as `erased_fp`, outside the index, so a later erasure does not delete the proof.
    pub async fn journal_erasure(
        &self,
        erasure_id: &str,
        fingerprint: &str,
        at: DateTime<Utc>,
        report: &str,
    ) -> Result<(), StoreError> {
        let mut item = key(format!("ERASURE#{erasure_id}"));
        item.insert("erased_fp".into(), s(fingerprint));
        item.insert("at".into(), s(at.to_rfc3339()));
        item.insert("report".into(), s(report));
        self.ledger().put(item).await
    }
}

/// The email queue, for delayed sends.
#[derive(Debug, Clone)]
pub struct SqsDelayed {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsDelayed {
    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        SqsDelayed {
            client: aws_sdk_sqs::Client::new(config),
            url: url.into(),
        }
    }
}

impl DelayedQueue for SqsDelayed {
    async fn send_delayed(&self, body: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        // SQS takes whole seconds, at most 900: round up so the message never comes early.
        let secs = (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).min(900);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(i32::try_from(secs).unwrap_or(900))
            .send()
            .await
            .map_err(|e| super::sqs::classify(&e))?;
        Ok(())
    }
}
