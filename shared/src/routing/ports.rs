//! The lead-router's storage ports: versioned profiles and the per-effect idempotency ledger.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::profile::{CrmRecord, Profile};
use crate::ports::StoreError;

/// A stored profile and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// Result of a conditional save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written; the stored version is now the expected one plus one.
    Saved,
    /// Someone else wrote first: read again and merge again.
    Conflict,
}

/// Profiles, one per person, written with optimistic concurrency (a version attribute).
pub trait ProfileStore: Send + Sync {
    /// Reads the profile with this key (the SHA-256 of the email), strongly consistent.
    fn load(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Versioned<Profile>>, StoreError>> + Send;

    /// Writes the profile if the stored version is `expected` (`None`: if there is none yet).
    fn save(
        &self,
        profile: &Profile,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;

    /// Records the CRM outcome of one lead on the profile (the latest, plus a list of failures).
    fn record_crm(
        &self,
        key: &str,
        record: &CrmRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The final state of an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectOutcome {
    /// Done; never do it again.
    Done,
    /// Failed for good, with the reason; never retried.
    Failed(String),
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller may perform the effect until its lease ends.
    Acquired,
    /// Someone already did it.
    Done,
    /// It failed for good earlier.
    Failed(String),
    /// Another delivery holds an unexpired lease: try again later.
    Busy,
}

/// Per-effect state keyed by `effect_key(lead, destination, action)`, with conditional writes.
pub trait EffectLedger: Send + Sync {
    /// Claims the effect unless it is done, failed, or leased by someone else until after `now`.
    fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records the final state of a claimed effect.
    fn complete(
        &self,
        key: &str,
        outcome: &EffectOutcome,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops a claim after a retryable failure, so the next delivery can take it at once.
    fn release(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
