//! email-trigger's storage ports: the per-effect ledger (with a `skipped` state a later message may
//! claim again) and the per-person record (platforms reached, product activity, recommendation throttle).

use std::collections::BTreeSet;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Platform, Product};
use crate::ports::StoreError;
use crate::routing::ports::Claim;

/// The final state of an email effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    /// Done on these platforms; never again.
    Done { platforms: Vec<Platform> },
    /// Failed for good, with the reason; never retried.
    Failed(String),
    /// Not done, on purpose (`no_consent`, `unmapped`, `throttled`...): a later message may claim it.
    Skipped(String),
}

/// Per-effect state keyed by the effect key, with conditional writes.
pub trait EmailLedger: Send + Sync {
    /// Claims the effect unless it is done, failed, or leased by someone else until after `now`. A
    /// skipped effect can be claimed again.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records the final state of a claimed effect. `fingerprint` (the email's) lets an erasure find it;
    /// `detail` is the JSON record of what was sent (dry-run requests, notes), without secrets.
    fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        outcome: &EmailOutcome,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops a claim after a retryable failure, so the next delivery can take it at once.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes an effect's record whatever its state (after a withdrawal, a later grant enrolls again).
    fn forget(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One product view, as kept on the person's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// The intake event's id: a redelivered view is kept once.
    pub event_id: String,
    pub at: DateTime<Utc>,
    pub product: Product,
}

/// What email-trigger keeps about a person (`EMAIL#<profile key>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonRecord {
    /// Platforms the person was sent to: an unsubscribe or erasure reaches each.
    pub platforms: BTreeSet<Platform>,
    /// Sequences the person was enrolled in.
    pub sequences: BTreeSet<String>,
    /// The latest product views, oldest first.
    pub views: Vec<View>,
    /// Ids of products the person bought.
    pub bought: BTreeSet<String>,
    /// When the latest recommendation was triggered.
    pub last_recommended_at: Option<DateTime<Utc>>,
    /// The open aggregation window: its id (start, ms) and whether its recommendation is scheduled.
    pub window: Option<Window>,
}

/// An aggregation window of product views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, in ms since the epoch: the window's id.
    pub id: i64,
    pub until: DateTime<Utc>,
    /// Whether the delayed recommendation message was sent.
    pub scheduled: bool,
}

/// The per-person record.
pub trait EmailPeople: Send + Sync {
    /// The person's record, strongly consistent (`None`: never seen).
    fn load(
        &self,
        profile_key: &str,
    ) -> impl Future<Output = Result<Option<PersonRecord>, StoreError>> + Send;

    /// Adds platforms the person was sent to, and the sequence they were enrolled in.
    fn add_platforms(
        &self,
        profile_key: &str,
        fingerprint: &str,
        platforms: &[Platform],
        sequence: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a product view (once per event id, the latest `keep` only) and returns the open window,
    /// opening one that ends at `now + window` if none is open.
    fn record_view(
        &self,
        profile_key: &str,
        fingerprint: &str,
        view: &View,
        keep: usize,
        window: chrono::Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Window, StoreError>> + Send;

    /// Marks a window's recommendation as scheduled.
    fn mark_scheduled(
        &self,
        profile_key: &str,
        window_id: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records bought products.
    fn record_purchase(
        &self,
        profile_key: &str,
        fingerprint: &str,
        product_ids: &[String],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that a recommendation was triggered at `at`.
    fn mark_recommended(
        &self,
        profile_key: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The profile key linked to a shop's customer id, if any.
    fn customer(
        &self,
        customer_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Links a customer id to a person.
    fn link_customer(
        &self,
        customer_id: &str,
        profile_key: &str,
        fingerprint: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A queue that can delay a message (SQS `DelaySeconds`, at most 900 s).
pub trait DelayedQueue: Send + Sync {
    /// Sends one message, delivered no earlier than `delay` from now.
    fn send_delayed(
        &self,
        body: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), crate::ports::QueueError>> + Send;
}
