//! The optimizer's ports: ad platforms, the journal store and the notifier, one small trait each.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{Campaign, Decision, Metrics, Mode, Rule};
use crate::error::{ErrorClass, Retryable};
use crate::ports::StoreError;

/// The days of metrics to fetch, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub since: NaiveDate,
    pub until: NaiveDate,
}

impl Window {
    /// The `days` days ending on the day of `now` (UTC).
    pub fn ending(now: DateTime<Utc>, days: u32) -> Self {
        let until = now.date_naive();
        let since = until - chrono::Days::new(u64::from(days.max(1) - 1));
        Window { since, until }
    }
}

/// What a platform reports about an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub metrics: Metrics,
    /// The bid in effect, in micros, when the platform reports it.
    pub bid_micros: Option<i64>,
    pub paused: bool,
    /// A target CPA reported by the platform (the generic platform's `target_cpa`).
    pub target_cpa_micros: Option<i64>,
    /// The bidding strategy in effect, as the platform names it (Google `bidding_strategy_type`, Meta
    /// `bid_strategy`), when it reports one.
    pub bid_strategy: Option<String>,
    /// Why the bid cannot be moved under that strategy (the field is ignored or refused). A bid change is
    /// then `skipped` with this reason and never sent.
    pub bid_fixed: Option<String>,
}

impl Observation {
    /// An observation of metrics, bid and status, on a platform without bidding strategies.
    pub fn plain(metrics: Metrics, bid_micros: Option<i64>, paused: bool) -> Self {
        Observation {
            metrics,
            bid_micros,
            paused,
            target_cpa_micros: None,
            bid_strategy: None,
            bid_fixed: None,
        }
    }

    /// Whether `change` shows on the entity: `Some(true)` it did, `Some(false)` it did not, `None` the
    /// platform does not report the bid, so reading it back cannot tell.
    pub fn shows(&self, change: Change) -> Option<bool> {
        match change {
            Change::SetBid { to_micros, .. } => self.bid_micros.map(|bid| bid == to_micros),
            Change::Pause => Some(self.paused),
            Change::Resume => Some(!self.paused),
        }
    }
}

/// A change to make on a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Set the bid (or Google campaign target CPA) to `to_micros`.
    SetBid { from_micros: i64, to_micros: i64 },
    /// Pause the entity.
    Pause,
    /// Re-enable a paused entity (the revert of a pause).
    Resume,
}

/// A platform call that failed, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{platform}: {reason}")]
pub struct PlatformError {
    pub platform: &'static str,
    pub class: ErrorClass,
    pub reason: String,
}

impl Retryable for PlatformError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Reads metrics from and writes bids to the ad platforms.
pub trait AdPlatforms: Send + Sync {
    /// The entity's metrics over the window, its bid and its status.
    fn fetch(
        &self,
        campaign: &Campaign,
        window: Window,
    ) -> impl Future<Output = Result<Observation, PlatformError>> + Send;

    /// Makes `change`. With `validate_only` the platform checks it without making it (dry-run).
    /// `idempotency_key` is stable for one entity and one run. `bid_strategy` is the strategy the last
    /// fetch reported ([`Observation::bid_strategy`]): it selects the field a bid change sets.
    fn apply(
        &self,
        campaign: &Campaign,
        change: Change,
        validate_only: bool,
        idempotency_key: &str,
        bid_strategy: Option<&str>,
    ) -> impl Future<Output = Result<(), PlatformError>> + Send;

    /// Whether the platform can check a change without making it.
    fn supports_validate_only(&self, campaign: &Campaign) -> bool;
}

/// How a campaign evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The change was made on the platform.
    Applied,
    /// The change was decided (and validated where the platform can) but not made.
    DryRun,
    /// The change was decided and only reported.
    NotifyOnly,
    /// The rule kept the bid.
    Unchanged,
    /// A guardrail stopped the rule: too little data, cooldown, the per-run cap, already done this hour.
    Skipped,
    /// Fetching, deciding or applying failed.
    Failed,
}

impl OutcomeKind {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Applied => "applied",
            OutcomeKind::DryRun => "dry_run",
            OutcomeKind::NotifyOnly => "notify_only",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// What kind of operation a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An hourly evaluation of a campaign.
    Evaluation,
    /// An operator's revert of the last change.
    Revert,
}

/// One journal entry: a campaign evaluated (or reverted), with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// Unique id (ULID).
    pub entry_id: String,
    pub kind: EntryKind,
    /// The scheduled hour (RFC 3339) for evaluations; `revert:<id>` for reverts.
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub campaign_id: String,
    pub platform: &'static str,
    pub account: String,
    pub entity_kind: &'static str,
    pub entity_id: String,
    pub currency: String,
    pub mode: Mode,
    pub config_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_cpa_micros: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The rule that fired (`revert` for reverts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_before_micros: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_after_micros: Option<i64>,
    pub outcome: OutcomeKind,
    pub reason: String,
}

/// A metrics snapshot of one campaign for one scheduled hour, kept for reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub campaign_id: String,
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub platform: &'static str,
    pub entity_key: String,
    pub window: Window,
    pub metrics: Metrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_micros: Option<i64>,
    pub paused: bool,
    pub currency: String,
}

/// Where a change record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// Claimed; the platform call is in flight (or the invocation died during it).
    Pending,
    Applied,
    Failed,
}

impl ChangeStatus {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Pending => "pending",
            ChangeStatus::Applied => "applied",
            ChangeStatus::Failed => "failed",
        }
    }
}

/// A change to one entity, claimed once per claim id (the run hour, or `revert:<claim>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub entity_key: String,
    pub claim_id: String,
    pub campaign_id: String,
    /// The scheduled hour the change belongs to (for the cooldown).
    pub run_hour: DateTime<Utc>,
    pub change: Change,
    pub bid_before_micros: i64,
    pub bid_after_micros: i64,
    pub at: DateTime<Utc>,
}

/// A claimed change whose outcome is not recorded yet: the entity's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub record: ChangeRecord,
    /// Until when the claiming invocation may still be making the change (at least the longest
    /// invocation). After it, the next run or revert resolves the change by reading the entity back.
    pub lease_until: DateTime<Utc>,
}

/// Where an entity's changes stand: its last applied change and the change in flight, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityState {
    pub latest: Option<ChangeRecord>,
    pub pending: Option<PendingChange>,
}

/// The result of claiming a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the claim (and the entity's lock) and must make the change.
    Claimed,
    /// Another invocation already claimed this change for this claim id.
    Taken(ChangeStatus),
    /// The entity is locked by another claim, or its last change is no longer the one this caller read.
    Conflict(String),
}

/// Durable storage of snapshots, journal entries and the per-entity change records.
pub trait OptimizerStore: Send + Sync {
    fn put_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn put_journal(
        &self,
        entry: &JournalEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The entity's last applied change and its change in flight.
    fn entity_state(
        &self,
        entity_key: &str,
    ) -> impl Future<Output = Result<EntityState, StoreError>> + Send;

    /// Claims a change and locks the entity, in one transaction: succeeds only if no record exists for
    /// (entity, claim id) or the existing one failed, no other change holds the entity, and the entity's
    /// last applied change is still `seen_latest` (its claim id; `None`: no change yet). Two racing
    /// invocations (runs or reverts) cannot both win.
    fn claim_change(
        &self,
        record: &ChangeRecord,
        seen_latest: Option<&str>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records how the claimed change ended, in one transaction with `entry` (its journal entry): the
    /// change record's status, the entity's lock released and, when applied, the entity's latest change.
    /// Fails (and writes nothing) if the caller no longer holds the claim.
    fn record_change(
        &self,
        record: &ChangeRecord,
        status: ChangeStatus,
        entry: &JournalEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A notification failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification failed: {reason}")]
pub struct NotifyError {
    pub class: ErrorClass,
    pub reason: String,
}

impl Retryable for NotifyError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// What a notifier did with a run's summary.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// This many messages were sent.
    Sent(usize),
    /// Nothing was sent (no webhook configured); these are the messages that would have been.
    Rendered(Vec<serde_json::Value>),
}

/// Tells the team what a run did.
pub trait Notifier: Send + Sync {
    /// Sends (or renders) the run's summary.
    fn notify(
        &self,
        summary: &RunSummary<'_>,
    ) -> impl Future<Output = Result<Delivery, NotifyError>> + Send;
}

/// What the notifier gets: the run and its entries.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary<'a> {
    pub run_id: &'a str,
    pub title: &'a str,
    pub entries: &'a [JournalEntry],
}

/// The reason given to campaigns a run had no time left for.
pub const OUT_OF_TIME: &str = "the invocation ran out of time before reaching this campaign; the next hourly run evaluates it";

/// Whether an entry belongs in the run's message: changes, failures, and skips for lack of data, the
/// per-run cap or time.
pub fn is_noteworthy(e: &JournalEntry) -> bool {
    match e.outcome {
        OutcomeKind::Applied
        | OutcomeKind::DryRun
        | OutcomeKind::NotifyOnly
        | OutcomeKind::Failed => true,
        OutcomeKind::Skipped => {
            e.rule.as_deref() == Some(Rule::InsufficientData.as_str())
                || e.reason.contains("per-run change cap")
                || e.reason.contains(OUT_OF_TIME)
        }
        OutcomeKind::Unchanged => false,
    }
}
