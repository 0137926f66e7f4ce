//! Ports: one small async trait per capability. Functions depend on these, never on an SDK.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::{Lead, LeadId};
use crate::envelope::LeadEnvelope;
use crate::error::{ErrorClass, Retryable};

/// The current time. A trait so that tests are deterministic.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Random bits for ids. A trait so that tests are deterministic.
pub trait Randomness: Send + Sync {
    fn random_u128(&self) -> u128;
}

/// Random bits from `fastrand`, seeded per thread from the OS.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandomness;

impl Randomness for ThreadRandomness {
    fn random_u128(&self) -> u128 {
        fastrand::u128(..)
    }
}

/// The raw request, kept beside the lead so that nothing the sender sent is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// Headers minus those that carry secrets (authorization, cookies, signatures).
    pub headers: Vec<(String, String)>,
    pub received_at: DateTime<Utc>,
}

/// Where an intake record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeStatus {
    /// Stored, not yet confirmed on the leads queue.
    Stored,
    /// Sent to the leads queue.
    Queued,
}

/// A request that the receiver accepted, as stored before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeRecord {
    pub key: String,
    pub lead_id: LeadId,
    /// Hash of the normalized content, to spot an `Idempotency-Key` reused for a different lead.
    pub content_hash: String,
    pub raw: RawRequest,
    pub envelope: LeadEnvelope,
    /// Unix seconds after which the record may be deleted (DynamoDB TTL).
    pub expires_at: i64,
}

impl IntakeRecord {
    /// The lead inside the envelope.
    pub fn lead(&self) -> &Lead {
        &self.envelope.lead
    }
}

/// What an earlier request with the same key left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingIntake {
    pub lead_id: LeadId,
    pub content_hash: String,
    pub status: IntakeStatus,
    pub envelope: LeadEnvelope,
}

/// Result of a conditional create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The record is new, and this caller holds the enqueue claim.
    Created,
    /// A record with this key already exists.
    Exists(Box<ExistingIntake>),
}

/// The de-duplication window of a request that carried no `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupWindow {
    /// The key of what the client sent (see `domain::intake::content_dedup_key`).
    pub key: String,
    /// The window opened by the first submission with this key ends here.
    pub until: DateTime<Utc>,
}

/// A stored lead not yet confirmed on the leads queue, as the sweep finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIntake {
    pub key: String,
    pub received_at: DateTime<Utc>,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage is unavailable or throttled: {0}")]
    Unavailable(String),
    #[error("storage refused the request: {0}")]
    Rejected(String),
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
}

impl Retryable for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unavailable(_) => ErrorClass::Retryable,
            StoreError::Rejected(_) | StoreError::Corrupt(_) => ErrorClass::Permanent,
        }
    }
}

/// Durable storage of accepted requests, with a conditional write as the idempotency gate.
pub trait IntakeStore: Send + Sync {
    /// Creates the record only if no record has the same key and, with `dedup`, no submission with the
    /// same content key opened a window that is still open; otherwise answers the record that is there.
    /// The creator holds the enqueue claim until `claim_until`. On an error nothing was stored.
    fn create(
        &self,
        record: &IntakeRecord,
        claim_until: DateTime<Utc>,
        dedup: Option<&DedupWindow>,
    ) -> impl Future<Output = Result<CreateOutcome, StoreError>> + Send;

    /// Reads a record by its key.
    fn load(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ExistingIntake>, StoreError>> + Send;

    /// Up to `limit` records still in `Stored`, oldest first.
    fn unqueued(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingIntake>, StoreError>> + Send;

    /// Takes the enqueue claim of a record still in `Stored`, if nobody holds an unexpired one.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks the record as queued and drops the claim.
    fn mark_queued(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops the claim after a failed send, so that a retry can take it at once.
    fn release_claim(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is unavailable or throttled: {0}")]
    Unavailable(String),
    #[error("queue refused the message: {0}")]
    Rejected(String),
}

impl Retryable for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            QueueError::Unavailable(_) => ErrorClass::Retryable,
            QueueError::Rejected(_) => ErrorClass::Permanent,
        }
    }
}

/// The leads queue.
pub trait LeadQueue: Send + Sync {
    fn send_lead(
        &self,
        envelope: &LeadEnvelope,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// One message for a batched send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Unique within the batch; reported back for the ones that failed.
    pub id: String,
    pub body: String,
}

/// Any JSON message queue with batched sends (email, audience, ...).
pub trait MessageQueue: Send + Sync {
    /// Sends up to any number of messages in batches of ten. Returns the ids that failed.
    fn send_batch(
        &self,
        messages: &[OutboundMessage],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;
}

/// The queue a function consumes, able to hold back a message it received: SQS's
/// `ChangeMessageVisibility` with the message's receipt handle.
pub trait Redelivery: Send + Sync {
    /// Makes the received message invisible for `after` from now, so that it is delivered again only
    /// then (not after the queue's visibility timeout). SQS allows at most 12 hours from the receipt;
    /// callers cap `after` below [`MAX_REDELIVERY_DELAY`].
    fn redeliver_after(
        &self,
        receipt_handle: &str,
        after: std::time::Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The longest a received message can be held back: SQS's 12-hour ceiling on a message's visibility
/// from its receipt, less 15 minutes for the time between the receipt and the request.
pub const MAX_REDELIVERY_DELAY: std::time::Duration =
    std::time::Duration::from_secs(12 * 3600 - 15 * 60);

/// An e-commerce event the receiver accepted (`POST /events`), as stored before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The idempotency key: from the `Idempotency-Key` header, the client's `event_id`, or the event's
    /// own id (then every post is an event of its own).
    pub key: String,
    /// The intake id (a ULID), also the queued message's `event_id`.
    pub event_id: String,
    /// Hash of what the client sent, to spot a key reused for a different event.
    pub content_hash: String,
    /// The queued message (a `fluxo::email::messages::CommerceEvent`), as JSON.
    pub message: String,
    /// The keyed fingerprint of the event's email, if it names one: the one trace of the person outside
    /// the message, so an erasure finds the record.
    pub email_fp: Option<String>,
    pub received_at: DateTime<Utc>,
    /// Unix seconds after which the record may be deleted (DynamoDB TTL).
    pub expires_at: i64,
}

/// What an earlier request with the same event key left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingEvent {
    pub event_id: String,
    pub content_hash: String,
    pub status: IntakeStatus,
    /// The message to queue, as stored.
    pub message: String,
}

/// Result of an event's conditional create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventCreated {
    /// The record is new, and this caller holds the enqueue claim.
    Created,
    /// A record with this key already exists.
    Exists(Box<ExistingEvent>),
}

/// Durable storage of accepted e-commerce events, with the same claim -> queue -> mark protocol as
/// [`IntakeStore`]: a conditional create, an enqueue claim, and the sparse index the sweep reads.
pub trait EventStore: Send + Sync {
    /// Creates the record only if none has the same key; otherwise answers the record that is there.
    /// The creator holds the enqueue claim until `claim_until`. On an error nothing was stored.
    fn create(
        &self,
        record: &EventRecord,
        claim_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<EventCreated, StoreError>> + Send;

    /// Reads a record by its key.
    fn load(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ExistingEvent>, StoreError>> + Send;

    /// Up to `limit` records still not queued, oldest first.
    fn unqueued(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingIntake>, StoreError>> + Send;

    /// Takes the enqueue claim of a record not yet queued, if nobody holds an unexpired one.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks the record as queued and drops the claim.
    fn mark_queued(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops the claim after a failed send, so that a retry can take it at once.
    fn release_claim(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
