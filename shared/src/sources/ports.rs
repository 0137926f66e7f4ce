//! The sources' own ports: the replay guard of signed message ids, and the inbox of lead-ad
//! notifications waiting to be fetched.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::LeadId;
use crate::ports::StoreError;

/// Remembers signed message ids for the timestamp tolerance window (a conditional write with a TTL).
pub trait ReplayGuard: Send + Sync {
    /// Records `id` of `source` until `until`. `Ok(false)` when it was already recorded and its window
    /// had not ended by `now`: a replay.
    fn first_sighting(
        &self,
        source: &str,
        id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets `id` again: the request that recorded it stored nothing, and its retry must pass.
    fn forget(&self, source: &str, id: &str)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A lead-ad notification stored before Meta got its `200`, waiting for its lead to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotice {
    /// The configured source it came to.
    pub source: String,
    /// The notice, as JSON (`meta_lead_ads::request::LeadgenNotice`).
    pub notice: String,
    pub leadgen_id: String,
    pub received_at: DateTime<Utc>,
    /// Fetch attempts so far.
    pub attempts: u32,
}

/// Where a lead-ad notification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeState {
    /// Waiting for its fetch (stored, or a failed fetch will be retried).
    Pending,
    /// Fetched and stored as a lead.
    Done(LeadId),
    /// Meta refused the fetch for good (the reason is kept on the record).
    Failed,
}

/// Durable lead-ad notifications: written before the webhook is answered, fetched by the sweep.
pub trait NoticeInbox: Send + Sync {
    /// Stores a notice once per `(source, leadgen_id)`; `Ok(false)` when it was already there.
    fn put_notice(
        &self,
        notice: &PendingNotice,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Up to `limit` pending notices, oldest first.
    fn pending_notices(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingNotice>, StoreError>> + Send;

    /// Takes the right to fetch a pending notice until `until`, if nobody holds it.
    fn claim_notice(
        &self,
        source: &str,
        leadgen_id: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the outcome: `Done` or `Failed` leave the pending set; `Pending` drops the claim and
    /// counts one more attempt. `reason` is kept for `Failed` and the last retry.
    fn settle_notice(
        &self,
        source: &str,
        leadgen_id: &str,
        state: NoticeState,
        reason: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
