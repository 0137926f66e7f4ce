//! The optimizer's use case, in the function crate (only hourly-optimizer runs it): one run fetches every
//! campaign concurrently (capped per platform), snapshots, decides, caps, applies or dry-runs under a
//! per-entity claim, journals every campaign and notifies; a revert restores the bid before the last
//! change through the same claim.
//!
//! `run.rs` is the hourly run, `apply.rs` the one way a change is made (claim, apply, record), used by
//! runs and reverts alike, `revert.rs` the revert, `report.rs` the run report and its notification.

mod apply;
mod report;
mod revert;
mod run;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use fluxo::optimizer::ports::{
    AdPlatforms, Change, Claim, EntryKind, JournalEntry, Notifier, OptimizerStore, OutcomeKind,
    PendingChange,
};
use fluxo::optimizer::{Campaign, Platform};
use fluxo::ports::{Clock, Randomness};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use fluxo::optimizer::EngineSettings;
pub use fluxo::optimizer::ports::{OUT_OF_TIME, is_noteworthy};
pub use report::{Counts, NotificationStatus, RunReport};
pub use revert::RevertError;

/// The run hour of a scheduled time: the time truncated to the hour, which is the run's id.
pub fn run_hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    time.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(time)
}

/// The run id of a run hour: RFC 3339, e.g. `2026-11-27T20:00:00Z`.
pub fn run_id_of(run_hour: DateTime<Utc>) -> String {
    run_hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The optimizer, wired to its ports.
pub struct Engine<P, S, N> {
    platforms: P,
    store: S,
    notifier: N,
    clock: Arc<dyn Clock>,
    randomness: Arc<dyn Randomness>,
    campaigns: Vec<Campaign>,
    settings: EngineSettings,
    config_version: String,
    google_ads: Semaphore,
    meta: Semaphore,
    generic: Semaphore,
}

/// How long a claim holds an entity: at least the longest invocation (Lambda's limit is 15 minutes), so
/// that only a dead invocation's claim is ever resolved by another.
pub const CLAIM_LEASE_MINUTES: i64 = 15;

/// A campaign after phase one: its entry so far and the change it wants, if any.
struct Evaluated {
    entry: JournalEntry,
    change: Option<(Change, i64)>,
    record_hour: DateTime<Utc>,
    /// The claim id of the entity's last applied change when it was read (the claim's condition).
    seen_latest: Option<String>,
    /// The bidding strategy the platform reported.
    bid_strategy: Option<String>,
}

/// How a claimed change ended, for the caller.
enum Claimed {
    /// Claimed, and the outcome recorded with the journal entry in one transaction.
    Journaled,
    /// The entry still has to be journaled (claiming or recording failed, or the outcome is unknown).
    NotJournaled,
    /// Not claimed: taken by another invocation, or the entity is locked or changed.
    Refused(Claim),
}

impl<P: AdPlatforms, S: OptimizerStore, N: Notifier> Engine<P, S, N> {
    /// An engine over `campaigns`. `config_version` is recorded in every journal entry.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        platforms: P,
        store: S,
        notifier: N,
        clock: Arc<dyn Clock>,
        randomness: Arc<dyn Randomness>,
        campaigns: Vec<Campaign>,
        settings: EngineSettings,
        config_version: String,
    ) -> Self {
        let google_ads = Semaphore::new(settings.concurrency_google_ads.max(1));
        let meta = Semaphore::new(settings.concurrency_meta.max(1));
        let generic = Semaphore::new(settings.concurrency_generic.max(1));
        Engine {
            platforms,
            store,
            notifier,
            clock,
            randomness,
            campaigns,
            settings,
            config_version,
            google_ads,
            meta,
            generic,
        }
    }

    /// The campaigns this engine manages.
    pub fn campaigns(&self) -> &[Campaign] {
        &self.campaigns
    }

    /// The platform clients, for the daily extract's account reports.
    pub fn platforms(&self) -> &P {
        &self.platforms
    }

    /// The notifier, for callers that show what was sent (the demo's preview).
    pub fn notifier(&self) -> &N {
        &self.notifier
    }

    /// The store, for callers that read the journal back.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn semaphore(&self, platform: Platform) -> &Semaphore {
        match platform {
            Platform::GoogleAds => &self.google_ads,
            Platform::Meta => &self.meta,
            Platform::Generic => &self.generic,
        }
    }

    fn new_entry(&self, c: &Campaign, kind: EntryKind, run_id: &str) -> JournalEntry {
        let at = self.clock.now();
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        JournalEntry {
            entry_id: ulid::Ulid::from_parts(ms, self.randomness.random_u128()).to_string(),
            kind,
            run_id: run_id.to_string(),
            at,
            campaign_id: c.id.clone(),
            platform: c.platform.as_str(),
            account: c.account.clone(),
            entity_kind: c.entity_kind.as_str(),
            entity_id: c.entity_id.clone(),
            currency: c.currency.clone(),
            mode: c.mode,
            config_version: self.config_version.clone(),
            metrics: None,
            target_cpa_micros: None,
            decision: None,
            rule: None,
            change: None,
            bid_before_micros: None,
            bid_after_micros: None,
            outcome: OutcomeKind::Failed,
            reason: String::new(),
        }
    }
}

/// The rule recorded for a change resolved after its invocation died.
pub const RESOLVED: &str = "resolve_unrecorded_change";

/// What an entry says when a change's outcome is unknown and stays claimed.
const UNRESOLVED: &str = "the change stays claimed, and the first run or revert after its lease \
     reads the entity back and records whether it applied";

fn locked_reason(p: &PendingChange) -> String {
    format!(
        "another invocation is changing this entity (the change claimed for {}, held until {})",
        p.record.claim_id,
        p.lease_until
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The idempotency key sent to platforms that accept one: stable per entity and claim.
pub fn change_key(entity_key: &str, claim_id: &str) -> String {
    fluxo::idempotency::key_of("fluxo.optimizer.change.v1", &[entity_key, claim_id])
}

fn out_of_time(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}
