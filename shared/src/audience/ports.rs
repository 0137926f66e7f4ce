//! The membership ledger's port: one record per person x platform audience, read and claimed in
//! batches, so a 10,000-message batch costs a few hundred ledger requests, not 10,000 sequential ones.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Op, PlatformAudience};
use crate::ports::StoreError;

/// A membership's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Claimed by a delivery until `lease_until`: the operation may or may not have been performed.
    Pending,
    /// Added (really, or in a dry run when `dry_run`).
    Added,
    /// Removed (or never added and a withdrawal came: a tombstone that stops older adds).
    Removed,
    /// Not added: the person's consent does not allow it. A later grant adds.
    Skipped,
    /// The platform refused it for good.
    Failed,
}

/// One person x platform audience record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The profile key (SHA-256 of the email).
    pub profile_key: String,
    pub audience: PlatformAudience,
    /// The named audience that led to it.
    pub name: String,
    pub state: State,
    /// The operation a pending claim is for.
    pub op: Option<Op>,
    /// Optimistic lock: every write increments it, a claim expects the version it read.
    pub version: u64,
    /// Lease end of a pending claim, ms since the epoch.
    pub lease_until_ms: i64,
    /// When the message behind the current state was created (older messages do not undo it).
    pub event_at: DateTime<Utc>,
    /// Whether the last add/remove was a dry run.
    pub dry_run: bool,
    /// `no_consent`, the platform's refusal, the removal reason.
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A claim: write `next` if the stored version is still `expected` (`None`: no record yet).
#[derive(Debug, Clone)]
pub struct ClaimWrite {
    pub next: Membership,
    pub expected: Option<u64>,
}

/// A Google job to check on a later invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub audience: PlatformAudience,
    pub job: String,
    pub op: Op,
    pub people: u64,
    pub created_at: DateTime<Utc>,
    /// `running`, `succeeded`, `failed`.
    pub state: String,
    pub reason: Option<String>,
}

/// One sync's record: what was sent (the exact requests in a dry run) and what came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub audience: PlatformAudience,
    pub op: Op,
    pub at: DateTime<Utc>,
    pub people: u64,
    pub dry_run: bool,
    pub calls: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub num_received: u64,
    pub num_invalid_entries: u64,
    pub failed: u64,
    /// The requests of a dry run (rows past the item size limit are left out and counted in
    /// `requests_truncated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<crate::crm::RecordedRequest>,
    #[serde(default)]
    pub requests_truncated: bool,
}

/// The membership ledger.
pub trait MembershipLedger: Send + Sync {
    /// The records of these keys `(profile key, audience key)`, strongly consistent, in batches.
    fn load(
        &self,
        keys: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Membership>, StoreError>> + Send;

    /// Every record of one person (what a withdrawal removes).
    fn of_person(
        &self,
        profile_key: &str,
    ) -> impl Future<Output = Result<Vec<Membership>, StoreError>> + Send;

    /// Writes each claim if its record is unchanged; returns, per claim, whether it was won.
    fn claim(
        &self,
        claims: &[ClaimWrite],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Writes final records unconditionally (after a won claim), in batches.
    fn complete(
        &self,
        records: &[Membership],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Puts claimed records back as they were (`None`: there was none), after a retryable failure.
    fn release(
        &self,
        previous: &[(String, String, Option<Membership>)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a sync.
    fn record_run(&self, run: &RunRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a Google job to check later.
    fn record_job(&self, job: &JobRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Jobs of an audience still `running`.
    fn running_jobs(
        &self,
        audience: &PlatformAudience,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
}

/// The current profiles of people (their names, country and latest consent), read in batches.
pub trait ProfileSnapshots: Send + Sync {
    /// Profiles by key; a key without a profile (erased, or never routed) is absent.
    fn profiles(
        &self,
        keys: &[String],
    ) -> impl Future<
        Output = Result<std::collections::HashMap<String, crate::routing::Profile>, StoreError>,
    > + Send;
}
