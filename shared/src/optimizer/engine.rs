//! One optimizer run: fetch every campaign concurrently (capped per platform), snapshot, decide, cap,
//! apply or dry-run under a per-entity claim, journal every campaign, notify. Also the revert operation.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::decide::within_bounds;
use super::plan::{self, Candidate};
use super::ports::{
    AdPlatforms, Change, ChangeRecord, ChangeStatus, Claim, Delivery, EntryKind, JournalEntry,
    Notifier, Observation, OptimizerStore, OutcomeKind, PendingChange, RunSummary, Snapshot,
    Window,
};
use super::{Action, Campaign, Clamp, Mode, Platform, Rule, decide, units};
use crate::error::{ErrorClass, Retryable};
use crate::ports::{Clock, Randomness, StoreError};

/// Run-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Most changes one run makes across all campaigns; `None` for no cap.
    pub max_changes_per_run: Option<u32>,
    /// Send a message even when a run changed, skipped and failed nothing.
    pub notify_when_idle: bool,
    /// Concurrent calls per platform.
    pub concurrency_google_ads: usize,
    pub concurrency_meta: usize,
    pub concurrency_generic: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_changes_per_run: None,
            notify_when_idle: false,
            concurrency_google_ads: 10,
            concurrency_meta: 10,
            concurrency_generic: 10,
        }
    }
}

/// Counts of outcomes in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub applied: usize,
    pub dry_run: usize,
    pub notify_only: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// Whether the run's notification went out.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NotificationStatus {
    Sent {
        messages: usize,
    },
    /// No webhook is configured: the messages a webhook would have received.
    Rendered {
        messages: Vec<serde_json::Value>,
    },
    /// Nothing happened and `notify_when_idle` is off.
    NotNeeded,
    Failed {
        reason: String,
    },
}

/// The result of a run or a revert: every outcome, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub kind: EntryKind,
    pub config_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub counts: Counts,
    pub notification: NotificationStatus,
    /// Journal writes that failed (the outcomes are still in `outcomes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub journal_errors: Vec<String>,
    pub outcomes: Vec<JournalEntry>,
}

/// Why a revert could not start.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    #[error("no campaign named {0:?} in the config")]
    UnknownCampaign(String),
    #[error("campaign {campaign:?} manages entity {configured:?}, not {asked:?}")]
    EntityMismatch {
        campaign: String,
        configured: String,
        asked: String,
    },
    #[error("campaign {0:?} has no applied change to revert")]
    NothingToRevert(String),
    #[error("the last change of campaign {0:?} was already reverted ({1})")]
    AlreadyReverted(String, &'static str),
    #[error(
        "campaign {campaign:?} was changed on the platform since its last change: {reason}; \
         revert with --force to restore the bid before that change anyway"
    )]
    ChangedOnPlatform { campaign: String, reason: String },
    #[error("campaign {0:?} cannot be reverted now: {1}")]
    Conflict(String, String),
    #[error("campaign {0:?} has nothing to restore: {1}")]
    NothingToRestore(String, String),
    #[error("reading campaign {0:?} from the platform failed: {1}")]
    Platform(String, String),
    #[error("journal unavailable: {0}")]
    Store(#[from] StoreError),
}

impl Retryable for RevertError {
    fn class(&self) -> ErrorClass {
        match self {
            RevertError::Store(e) => e.class(),
            RevertError::Conflict(..) | RevertError::Platform(..) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}

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

    /// Runs every campaign once for the scheduled hour of `scheduled_time`. Never fails as a whole: each
    /// campaign's failure is an outcome in the report.
    pub async fn run(&self, scheduled_time: DateTime<Utc>) -> RunReport {
        self.run_until(scheduled_time, None).await
    }

    /// [`Engine::run`], starting no platform call after `deadline` (the invocation's time limit less a
    /// margin): campaigns not reached are `skipped` and journaled, and the next hourly run takes them.
    pub async fn run_until(
        &self,
        scheduled_time: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> RunReport {
        let started_at = self.clock.now();
        let run_hour = run_hour_of(scheduled_time);
        let run_id = run_id_of(run_hour);
        tracing::info!(run_id = %run_id, campaigns = self.campaigns.len(), "optimizer run starting");

        // Phase 1: fetch, snapshot and decide, concurrently.
        let evaluated: Vec<Evaluated> = join_all(
            self.campaigns
                .iter()
                .map(|c| self.evaluate(c, &run_id, run_hour, deadline)),
        )
        .await;

        // Phase 2: the per-run cap, most urgent changes first.
        let candidates = evaluated
            .iter()
            .enumerate()
            .filter_map(
                |(i, e)| match (&e.entry.decision, e.change, e.entry.target_cpa_micros) {
                    (Some(d), Some(_), Some(target)) => Some(Candidate::of(i, d, target)),
                    _ => None,
                },
            )
            .collect::<Vec<_>>();
        let cap = self.settings.max_changes_per_run;
        let allowed: HashSet<usize> = plan::allowed(candidates, cap).into_iter().collect();

        // Phase 3: apply, dry-run or report, concurrently.
        let campaigns = &self.campaigns;
        let written: Vec<(JournalEntry, Option<String>)> =
            join_all(evaluated.into_iter().enumerate().map(|(i, ev)| {
                let allowed = allowed.contains(&i);
                let run_id = run_id.clone();
                async move {
                    let Evaluated {
                        mut entry,
                        change,
                        record_hour,
                        seen_latest,
                        bid_strategy,
                    } = ev;
                    let mut journaled = false;
                    if let (Some(campaign), Some((change, before))) = (campaigns.get(i), change) {
                        if out_of_time(deadline) {
                            entry.outcome = OutcomeKind::Skipped;
                            entry.reason = format!("{}; {OUT_OF_TIME}", entry.reason);
                        } else if allowed {
                            journaled = self
                                .execute(
                                    campaign,
                                    &mut entry,
                                    change,
                                    before,
                                    &run_id,
                                    record_hour,
                                    seen_latest.as_deref(),
                                    bid_strategy.as_deref(),
                                )
                                .await;
                        } else {
                            entry.outcome = OutcomeKind::Skipped;
                            entry.reason = format!(
                                "per-run change cap ({}) reached; {}",
                                cap.unwrap_or(0),
                                entry.reason
                            );
                        }
                    }
                    // Journaled as soon as it is final, so a run cut short keeps what it did. An applied
                    // change's entry was written with its outcome, in one transaction.
                    let error = if journaled {
                        None
                    } else {
                        self.store.put_journal(&entry).await.err()
                    };
                    let error = error.map(|e| format!("{}: {e}", entry.campaign_id));
                    (entry, error)
                }
            }))
            .await;
        let (entries, errors): (Vec<JournalEntry>, Vec<Option<String>>) =
            written.into_iter().unzip();
        let journal_errors = errors.into_iter().flatten().collect();

        self.finish(
            run_id,
            EntryKind::Evaluation,
            started_at,
            entries,
            journal_errors,
        )
        .await
    }

    /// Counts the (already journaled) entries, logs them and notifies.
    async fn finish(
        &self,
        run_id: String,
        kind: EntryKind,
        started_at: DateTime<Utc>,
        entries: Vec<JournalEntry>,
        journal_errors: Vec<String>,
    ) -> RunReport {
        for error in &journal_errors {
            tracing::error!(run_id = %run_id, error = %error, "journal write failed");
        }
        let mut counts = Counts::default();
        for e in &entries {
            tracing::info!(
                run_id = %run_id,
                campaign = %e.campaign_id,
                platform = e.platform,
                outcome = e.outcome.as_str(),
                rule = e.rule.as_deref().unwrap_or(""),
                reason = %e.reason,
                "campaign evaluated"
            );
            match e.outcome {
                OutcomeKind::Applied => counts.applied += 1,
                OutcomeKind::DryRun => counts.dry_run += 1,
                OutcomeKind::NotifyOnly => counts.notify_only += 1,
                OutcomeKind::Unchanged => counts.unchanged += 1,
                OutcomeKind::Skipped => counts.skipped += 1,
                OutcomeKind::Failed => counts.failed += 1,
            }
        }
        let eventful = entries.iter().any(is_noteworthy);
        let notification = if eventful || self.settings.notify_when_idle {
            let title = match kind {
                EntryKind::Evaluation => format!("Fluxo optimizer run {run_id}"),
                EntryKind::Revert => "Fluxo optimizer revert".to_string(),
            };
            let summary = RunSummary {
                run_id: &run_id,
                title: &title,
                entries: &entries,
            };
            match self.notifier.notify(&summary).await {
                Ok(Delivery::Sent(messages)) => NotificationStatus::Sent { messages },
                Ok(Delivery::Rendered(messages)) => NotificationStatus::Rendered { messages },
                Err(e) => {
                    tracing::error!(run_id = %run_id, error = %e, "run notification failed");
                    NotificationStatus::Failed { reason: e.reason }
                }
            }
        } else {
            NotificationStatus::NotNeeded
        };
        let report = RunReport {
            run_id,
            kind,
            config_version: self.config_version.clone(),
            started_at,
            finished_at: self.clock.now(),
            counts,
            notification,
            journal_errors,
            outcomes: entries,
        };
        tracing::info!(run_id = %report.run_id, applied = counts.applied, dry_run = counts.dry_run, skipped = counts.skipped, failed = counts.failed, "optimizer run finished");
        report
    }

    async fn evaluate(
        &self,
        c: &Campaign,
        run_id: &str,
        run_hour: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Evaluated {
        let mut entry = self.new_entry(c, EntryKind::Evaluation, run_id);
        let done = |entry: JournalEntry| Evaluated {
            entry,
            change: None,
            record_hour: run_hour,
            seen_latest: None,
            bid_strategy: None,
        };
        let fail = |mut entry: JournalEntry, reason: String| {
            entry.outcome = OutcomeKind::Failed;
            entry.reason = reason;
            done(entry)
        };
        let entity_key = c.entity_key();
        let state = match self.store.entity_state(&entity_key).await {
            Ok(state) => state,
            Err(e) => return fail(entry, format!("journal read failed: {e}")),
        };
        if let Some(p) = &state.pending
            && p.lease_until > self.clock.now()
        {
            entry.outcome = OutcomeKind::Skipped;
            entry.reason = locked_reason(p);
            return done(entry);
        }
        let window = Window::ending(run_hour, c.lookback_days);
        let observed: Result<Observation, _> = {
            let _permit = self.semaphore(c.platform).acquire().await.ok();
            if out_of_time(deadline) {
                entry.outcome = OutcomeKind::Skipped;
                entry.reason = OUT_OF_TIME.to_string();
                return done(entry);
            }
            self.platforms.fetch(c, window).await
        };
        let obs = match observed {
            Ok(obs) => obs,
            Err(e) => {
                return fail(
                    entry,
                    format!(
                        "fetching metrics failed ({}): {}",
                        e.class.as_str(),
                        e.reason
                    ),
                );
            }
        };
        // A change a dead invocation claimed: what the platform shows now says whether it applied.
        let latest = match state.pending {
            Some(p) => match self.resolve(c, p, state.latest, &obs, run_id).await {
                Ok(latest) => latest,
                Err(reason) => return fail(entry, reason),
            },
            None => state.latest,
        };
        entry.metrics = Some(obs.metrics);
        let snapshot = Snapshot {
            campaign_id: c.id.clone(),
            run_id: run_id.to_string(),
            at: self.clock.now(),
            platform: c.platform.as_str(),
            entity_key,
            window,
            metrics: obs.metrics,
            bid_micros: obs.bid_micros,
            paused: obs.paused,
            currency: c.currency.clone(),
        };
        if let Err(e) = self.store.put_snapshot(&snapshot).await {
            // The snapshot feeds reporting; the decision does not depend on it.
            tracing::warn!(campaign = %c.id, error = %e, "snapshot write failed");
        }
        let Some(target) = c.target_cpa_micros.or(obs.target_cpa_micros) else {
            return fail(
                entry,
                "no target CPA: set target_cpa in the config".to_string(),
            );
        };
        entry.target_cpa_micros = Some(target);
        let Some(bid) = obs
            .bid_micros
            .or(latest.as_ref().map(|l| l.bid_after_micros))
            .or(c.initial_bid_micros)
        else {
            return fail(
                entry,
                "current bid unknown: the platform reports none; set initial_bid".to_string(),
            );
        };
        let decision = decide(&super::DecisionInput {
            metrics: &obs.metrics,
            target_cpa_micros: target,
            bid_micros: bid,
            paused: obs.paused,
            last_change_hour: latest.as_ref().map(|l| l.run_hour),
            run_hour,
            guardrails: &c.guardrails,
        });
        entry.rule = Some(decision.rule.as_str().to_string());
        entry.bid_before_micros = Some(decision.bid_before_micros);
        entry.bid_after_micros = Some(decision.bid_after_micros);
        entry.reason = decision.reason.clone();
        let change = if decision.is_change() {
            let change = match decision.action {
                Action::Pause => Change::Pause,
                _ => Change::SetBid {
                    from_micros: decision.bid_before_micros,
                    to_micros: decision.bid_after_micros,
                },
            };
            match (&obs.bid_fixed, change) {
                // The strategy ignores or refuses the bid field: never sent, in any mode.
                (Some(fixed), Change::SetBid { .. }) => {
                    entry.outcome = OutcomeKind::Skipped;
                    entry.reason = format!("{}; not sent: {fixed}", decision.reason);
                    None
                }
                _ => {
                    entry.change = Some(change);
                    Some((change, decision.bid_before_micros))
                }
            }
        } else {
            entry.outcome = match decision.rule {
                Rule::InsufficientData | Rule::Cooldown | Rule::EntityPaused => {
                    OutcomeKind::Skipped
                }
                _ => OutcomeKind::Unchanged,
            };
            None
        };
        entry.decision = Some(decision);
        Evaluated {
            entry,
            change,
            record_hour: run_hour,
            seen_latest: latest.map(|l| l.claim_id),
            bid_strategy: obs.bid_strategy,
        }
    }

    /// Records the outcome of a change a dead invocation claimed (its lease is over) from what the
    /// platform shows now, with its own journal entry, and returns the entity's last applied change.
    async fn resolve(
        &self,
        c: &Campaign,
        pending: PendingChange,
        latest: Option<ChangeRecord>,
        obs: &Observation,
        by: &str,
    ) -> Result<Option<ChangeRecord>, String> {
        let record = pending.record;
        let (status, outcome, why) = match obs.shows(record.change) {
            Some(true) => (
                ChangeStatus::Applied,
                OutcomeKind::Applied,
                "the platform shows the change: recorded as applied",
            ),
            Some(false) => (
                ChangeStatus::Failed,
                OutcomeKind::Failed,
                "the platform does not show the change: recorded as not applied",
            ),
            None => (
                ChangeStatus::Failed,
                OutcomeKind::Failed,
                "the platform does not report the bid, so the change cannot be confirmed: recorded \
                 as not applied",
            ),
        };
        let kind = if record.claim_id.starts_with("revert:") {
            EntryKind::Revert
        } else {
            EntryKind::Evaluation
        };
        let mut entry = self.new_entry(c, kind, &record.claim_id);
        entry.rule = Some(RESOLVED.to_string());
        entry.change = Some(record.change);
        entry.bid_before_micros = Some(record.bid_before_micros);
        entry.bid_after_micros = Some(record.bid_after_micros);
        entry.outcome = outcome;
        entry.reason = format!(
            "the change claimed for {} was never recorded (its invocation stopped or timed out); {by} \
             read the entity back: {why}",
            record.claim_id
        );
        tracing::warn!(campaign = %c.id, claim = %record.claim_id, outcome = outcome.as_str(), "resolving an unrecorded change");
        match self.store.record_change(&record, status, &entry).await {
            Ok(()) if status == ChangeStatus::Applied => Ok(Some(record)),
            Ok(()) => Ok(latest),
            Err(e) => Err(format!(
                "the change claimed for {} is unrecorded, and recording it failed: {e}",
                record.claim_id
            )),
        }
    }

    /// Makes (or validates, or only reports) one decided change, and sets the entry's outcome. Returns
    /// whether the entry was journaled already (with the change's outcome, in one transaction).
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        c: &Campaign,
        entry: &mut JournalEntry,
        change: Change,
        before: i64,
        claim_id: &str,
        run_hour: DateTime<Utc>,
        seen_latest: Option<&str>,
        bid_strategy: Option<&str>,
    ) -> bool {
        let after = entry.bid_after_micros.unwrap_or(before);
        let decided = entry.reason.clone();
        match c.mode {
            Mode::NotifyOnly => {
                entry.outcome = OutcomeKind::NotifyOnly;
                entry.reason = format!("{decided} (notify-only: not sent to the platform)");
                false
            }
            Mode::DryRun => {
                let key = change_key(&c.entity_key(), claim_id);
                if self.platforms.supports_validate_only(c) {
                    let result = {
                        let _permit = self.semaphore(c.platform).acquire().await.ok();
                        self.platforms
                            .apply(c, change, true, &key, bid_strategy)
                            .await
                    };
                    match result {
                        Ok(()) => {
                            entry.outcome = OutcomeKind::DryRun;
                            entry.reason = format!(
                                "{decided} (dry-run: validated by the platform, not applied)"
                            );
                        }
                        Err(e) => {
                            entry.outcome = OutcomeKind::Failed;
                            entry.reason = format!(
                                "{decided}; dry-run validation failed ({}): {}",
                                e.class.as_str(),
                                e.reason
                            );
                        }
                    }
                } else {
                    entry.outcome = OutcomeKind::DryRun;
                    entry.reason = format!("{decided} (dry-run: not applied)");
                }
                false
            }
            Mode::Apply => {
                let record = ChangeRecord {
                    entity_key: c.entity_key(),
                    claim_id: claim_id.to_string(),
                    campaign_id: c.id.clone(),
                    run_hour,
                    change,
                    bid_before_micros: before,
                    bid_after_micros: after,
                    at: self.clock.now(),
                };
                match self
                    .apply_claimed(c, entry, &record, &decided, seen_latest, bid_strategy)
                    .await
                {
                    Claimed::Journaled => true,
                    Claimed::NotJournaled => false,
                    Claimed::Refused(Claim::Taken(status)) => {
                        entry.outcome = OutcomeKind::Skipped;
                        entry.reason = format!(
                            "{decided}; already {} by another invocation for {}",
                            status.as_str(),
                            record.claim_id
                        );
                        false
                    }
                    Claimed::Refused(claim) => {
                        let why = match claim {
                            Claim::Conflict(why) => why,
                            _ => "the claim was refused".to_string(),
                        };
                        entry.outcome = OutcomeKind::Skipped;
                        entry.reason = format!("{decided}; change not made: {why}");
                        false
                    }
                }
            }
        }
    }

    /// The one way a change is made, for runs and reverts alike: claim it (which locks the entity), apply
    /// it, and record the outcome with its journal entry in one transaction. When the platform's answer
    /// leaves it unclear whether the change landed (a timeout, a 5xx), the entity is read back: a change
    /// that shows is recorded as applied; otherwise the claim stays pending, and the first run or revert
    /// after its lease reads the entity back again and records what it finds.
    async fn apply_claimed(
        &self,
        c: &Campaign,
        entry: &mut JournalEntry,
        record: &ChangeRecord,
        decided: &str,
        seen_latest: Option<&str>,
        bid_strategy: Option<&str>,
    ) -> Claimed {
        let lease_until = self.clock.now() + chrono::Duration::minutes(CLAIM_LEASE_MINUTES);
        match self
            .store
            .claim_change(record, seen_latest, lease_until)
            .await
        {
            Err(e) => {
                entry.outcome = OutcomeKind::Failed;
                entry.reason = format!("{decided}; change not made: claiming it failed: {e}");
                return Claimed::NotJournaled;
            }
            Ok(Claim::Claimed) => {}
            Ok(refused) => return Claimed::Refused(refused),
        }
        let key = change_key(&record.entity_key, &record.claim_id);
        let result = {
            let _permit = self.semaphore(c.platform).acquire().await.ok();
            self.platforms
                .apply(c, record.change, false, &key, bid_strategy)
                .await
        };
        let status = match result {
            Ok(()) => {
                entry.outcome = OutcomeKind::Applied;
                entry.reason = decided.to_string();
                ChangeStatus::Applied
            }
            Err(e) if e.class == ErrorClass::Permanent => {
                entry.outcome = OutcomeKind::Failed;
                entry.reason = format!(
                    "{decided}; the platform refused the change ({}): {}",
                    e.class.as_str(),
                    e.reason
                );
                ChangeStatus::Failed
            }
            Err(e) => {
                // The change may have landed: read the entity back before deciding.
                let window = Window::ending(record.run_hour, c.lookback_days);
                let back = {
                    let _permit = self.semaphore(c.platform).acquire().await.ok();
                    self.platforms.fetch(c, window).await
                };
                let shows = back.as_ref().ok().and_then(|o| o.shows(record.change));
                if shows == Some(true) {
                    entry.outcome = OutcomeKind::Applied;
                    entry.reason = format!(
                        "{decided} (the platform answered {}, but reading the entity back shows the \
                         change)",
                        e.reason
                    );
                    ChangeStatus::Applied
                } else {
                    let read = match back {
                        Ok(_) if shows.is_none() => {
                            "the platform does not report the bid".to_string()
                        }
                        Ok(_) => "reading the entity back does not show the change yet".to_string(),
                        Err(back) => format!("reading the entity back failed: {}", back.reason),
                    };
                    entry.outcome = OutcomeKind::Failed;
                    entry.reason = format!(
                        "{decided}; the platform did not confirm the change ({}): {}; {read}; \
                         {UNRESOLVED}",
                        e.class.as_str(),
                        e.reason
                    );
                    tracing::warn!(campaign = %c.id, claim = %record.claim_id, "change outcome unknown; left claimed");
                    return Claimed::NotJournaled;
                }
            }
        };
        match self.store.record_change(record, status, entry).await {
            Ok(()) => Claimed::Journaled,
            Err(e) => {
                tracing::error!(campaign = %c.id, error = %e, "recording the change's outcome failed");
                entry.reason = format!(
                    "{}; recording the outcome failed: {e}; {UNRESOLVED}",
                    entry.reason
                );
                Claimed::NotJournaled
            }
        }
    }

    /// Restores the entity's bid (or status) before its last applied change, through the same claim,
    /// lock, apply and record as a run. The restored bid is held within `min_bid` / `max_bid`. Refused
    /// when the platform no longer shows what the last change set (someone changed it by hand), unless
    /// `force`. Journaled and notified. `entity`, when given, must be the campaign's entity id.
    pub async fn revert(
        &self,
        campaign_id: &str,
        entity: Option<&str>,
        force: bool,
    ) -> Result<RunReport, RevertError> {
        let started_at = self.clock.now();
        let c = self
            .campaigns
            .iter()
            .find(|c| c.id == campaign_id)
            .ok_or_else(|| RevertError::UnknownCampaign(campaign_id.to_string()))?;
        if let Some(asked) = entity.filter(|e| *e != c.entity_id) {
            return Err(RevertError::EntityMismatch {
                campaign: c.id.clone(),
                configured: c.entity_id.clone(),
                asked: asked.to_string(),
            });
        }
        let entity_key = c.entity_key();
        let state = self.store.entity_state(&entity_key).await?;
        if let Some(p) = &state.pending
            && p.lease_until > started_at
        {
            return Err(RevertError::Conflict(c.id.clone(), locked_reason(p)));
        }
        if state.latest.is_none() && state.pending.is_none() {
            return Err(RevertError::NothingToRevert(c.id.clone()));
        }
        let window = Window::ending(run_hour_of(started_at), c.lookback_days);
        let obs = {
            let _permit = self.semaphore(c.platform).acquire().await.ok();
            self.platforms.fetch(c, window).await
        }
        .map_err(|e| RevertError::Platform(c.id.clone(), e.reason))?;
        let by = format!("revert at {}", run_id_of(started_at));
        let latest = match state.pending {
            Some(p) => self
                .resolve(c, p, state.latest, &obs, &by)
                .await
                .map_err(|why| RevertError::Conflict(c.id.clone(), why))?,
            None => state.latest,
        };
        let last = latest.ok_or_else(|| RevertError::NothingToRevert(c.id.clone()))?;
        let digits = c.guardrails.currency_digits;
        let money =
            |micros: i64| format!("{} {}", units::format_amount(micros, digits), c.currency);
        let mut notes = Vec::new();
        let drift = match last.change {
            Change::SetBid { to_micros, .. } => match obs.bid_micros {
                Some(bid) if bid != to_micros => Some(format!(
                    "the platform's bid is {}, not the {} the change for {} set",
                    money(bid),
                    money(to_micros),
                    last.claim_id
                )),
                Some(_) => None,
                None => {
                    notes.push(
                        "the platform does not report its bid, so it was not compared with the \
                         journal"
                            .to_string(),
                    );
                    None
                }
            },
            Change::Pause if !obs.paused => Some(format!(
                "the entity is active, but the change for {} paused it",
                last.claim_id
            )),
            Change::Resume if obs.paused => Some(format!(
                "the entity is paused, but the change for {} resumed it",
                last.claim_id
            )),
            Change::Pause | Change::Resume => None,
        };
        if let Some(reason) = drift {
            if !force {
                return Err(RevertError::ChangedOnPlatform {
                    campaign: c.id.clone(),
                    reason,
                });
            }
            notes.push(format!("forced: {reason}"));
        }
        let (change, before, after) = match last.change {
            Change::Pause => (
                Change::Resume,
                last.bid_after_micros,
                last.bid_before_micros,
            ),
            Change::Resume => (Change::Pause, last.bid_after_micros, last.bid_before_micros),
            Change::SetBid {
                from_micros,
                to_micros,
            } => {
                if let Some(fixed) = &obs.bid_fixed {
                    return Err(RevertError::NothingToRestore(c.id.clone(), fixed.clone()));
                }
                let now = obs.bid_micros.unwrap_or(to_micros);
                let (restore, clamp) = within_bounds(from_micros, &c.guardrails);
                match clamp {
                    Some(Clamp::MinBid) => notes.push(format!(
                        "{} is below min_bid: restored to {}",
                        money(from_micros),
                        money(restore)
                    )),
                    Some(Clamp::MaxBid) => notes.push(format!(
                        "{} is above max_bid: restored to {}",
                        money(from_micros),
                        money(restore)
                    )),
                    None => {}
                }
                if restore == now {
                    return Err(RevertError::NothingToRestore(
                        c.id.clone(),
                        format!("the bid is already {}", money(now)),
                    ));
                }
                (
                    Change::SetBid {
                        from_micros: now,
                        to_micros: restore,
                    },
                    now,
                    restore,
                )
            }
        };
        let claim_id = format!("revert:{}", last.claim_id);
        let mut entry = self.new_entry(c, EntryKind::Revert, &claim_id);
        entry.rule = Some("revert".to_string());
        entry.change = Some(change);
        entry.bid_before_micros = Some(before);
        entry.bid_after_micros = Some(after);
        let record = ChangeRecord {
            entity_key,
            claim_id: claim_id.clone(),
            campaign_id: c.id.clone(),
            run_hour: run_hour_of(started_at),
            change,
            bid_before_micros: before,
            bid_after_micros: after,
            at: started_at,
        };
        let mut decided = format!("revert of the change made for {}", last.claim_id);
        if !notes.is_empty() {
            decided = format!("{decided} ({})", notes.join("; "));
        }
        let journaled = match self
            .apply_claimed(
                c,
                &mut entry,
                &record,
                &decided,
                Some(&last.claim_id),
                obs.bid_strategy.as_deref(),
            )
            .await
        {
            Claimed::Journaled => true,
            Claimed::NotJournaled => false,
            Claimed::Refused(Claim::Taken(status)) => {
                return Err(RevertError::AlreadyReverted(c.id.clone(), status.as_str()));
            }
            Claimed::Refused(Claim::Conflict(why)) => {
                return Err(RevertError::Conflict(c.id.clone(), why));
            }
            Claimed::Refused(Claim::Claimed) => {
                return Err(RevertError::Conflict(
                    c.id.clone(),
                    "the claim was refused".into(),
                ));
            }
        };
        let journal_errors = if journaled {
            Vec::new()
        } else {
            match self.store.put_journal(&entry).await {
                Ok(()) => Vec::new(),
                Err(e) => vec![format!("{}: {e}", entry.campaign_id)],
            }
        };
        Ok(self
            .finish(
                claim_id,
                EntryKind::Revert,
                started_at,
                vec![entry],
                journal_errors,
            )
            .await)
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

/// The reason given to campaigns a run had no time left for.
pub const OUT_OF_TIME: &str = "the invocation ran out of time before reaching this campaign; the next hourly run evaluates it";

fn out_of_time(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

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

/// The idempotency key sent to platforms that accept one: stable per entity and claim.
pub fn change_key(entity_key: &str, claim_id: &str) -> String {
    crate::idempotency::key_of("fluxo.optimizer.change.v1", &[entity_key, claim_id])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::optimizer::memory::MemoryStore;
    use crate::optimizer::ports::{NotifyError, PlatformError};
    use crate::optimizer::{EntityKind, GenericEndpoints, Guardrails, Metrics};

    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }
    struct Counter(Mutex<u128>);
    impl Randomness for Counter {
        fn random_u128(&self) -> u128 {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            *n
        }
    }

    /// What the fake platform's next apply does instead of answering plainly.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Trouble {
        /// Makes the change, then times out.
        TimeoutAfterApplying,
        /// Times out without making the change.
        TimeoutWithoutApplying,
    }

    /// A platform with a bid per entity; metrics per campaign; some campaigns fail.
    #[derive(Default)]
    struct FakePlatforms {
        metrics: HashMap<String, Metrics>,
        bids: Mutex<HashMap<String, i64>>,
        down: Vec<String>,
        applied: Mutex<Vec<(String, Change, bool)>>,
        /// A bid the strategy does not let the optimizer move, and why.
        fixed: Option<String>,
        trouble: Mutex<Option<Trouble>>,
        /// Yield once inside apply, so that concurrent operations interleave there.
        yield_in_apply: bool,
    }

    impl AdPlatforms for FakePlatforms {
        async fn fetch(&self, c: &Campaign, _w: Window) -> Result<Observation, PlatformError> {
            if self.down.contains(&c.id) {
                return Err(PlatformError {
                    platform: "generic",
                    class: ErrorClass::Retryable,
                    reason: "HTTP 503".into(),
                });
            }
            Ok(Observation {
                bid_fixed: self.fixed.clone(),
                ..Observation::plain(
                    self.metrics.get(&c.id).copied().unwrap_or_default(),
                    self.bids.lock().unwrap().get(&c.entity_id).copied(),
                    false,
                )
            })
        }
        async fn apply(
            &self,
            c: &Campaign,
            change: Change,
            validate_only: bool,
            _k: &str,
            _strategy: Option<&str>,
        ) -> Result<(), PlatformError> {
            if self.yield_in_apply {
                tokio::task::yield_now().await;
            }
            self.applied
                .lock()
                .unwrap()
                .push((c.id.clone(), change, validate_only));
            let trouble = self.trouble.lock().unwrap().take();
            if let (Change::SetBid { to_micros, .. }, false) = (change, validate_only)
                && trouble != Some(Trouble::TimeoutWithoutApplying)
            {
                self.bids
                    .lock()
                    .unwrap()
                    .insert(c.entity_id.clone(), to_micros);
            }
            match trouble {
                Some(_) => Err(PlatformError {
                    platform: "generic",
                    class: ErrorClass::Retryable,
                    reason: "timed out".into(),
                }),
                None => Ok(()),
            }
        }
        fn supports_validate_only(&self, _c: &Campaign) -> bool {
            true
        }
    }

    struct Preview;
    impl Notifier for Preview {
        async fn notify(&self, _s: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
            Ok(Delivery::Sent(1))
        }
    }

    struct FailingNotifier;
    impl Notifier for FailingNotifier {
        async fn notify(&self, _s: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
            Err(NotifyError {
                class: ErrorClass::Retryable,
                reason: "slack down".into(),
            })
        }
    }

    fn campaign(id: &str, mode: Mode) -> Campaign {
        Campaign {
            id: id.into(),
            platform: Platform::Generic,
            account: "acc".into(),
            entity_kind: EntityKind::Campaign,
            entity_id: format!("e-{id}"),
            currency: "USD".into(),
            target_cpa_micros: Some(4_000_000),
            mode,
            guardrails: Guardrails::article_defaults("USD"),
            lookback_days: 7,
            initial_bid_micros: None,
            conversion_action_types: vec![],
            generic: Some(GenericEndpoints {
                metrics_url: "http://x/m".into(),
                bid_url: "http://x/b".into(),
            }),
        }
    }

    fn article() -> Metrics {
        Metrics {
            spend_micros: 50_000_000,
            conversions_milli: 10_000,
            clicks: 100,
            cpc_micros: Some(500_000),
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
    }

    fn engine<N: Notifier>(
        platforms: FakePlatforms,
        campaigns: Vec<Campaign>,
        settings: EngineSettings,
        notifier: N,
        now: DateTime<Utc>,
    ) -> Engine<FakePlatforms, MemoryStore, N> {
        Engine::new(
            platforms,
            MemoryStore::default(),
            notifier,
            Arc::new(FixedClock(now)),
            Arc::new(Counter(Mutex::new(0))),
            campaigns,
            settings,
            "cfg123".into(),
        )
    }

    fn platforms(ids: &[&str]) -> FakePlatforms {
        let p = FakePlatforms::default();
        let mut p = FakePlatforms {
            metrics: ids.iter().map(|i| (i.to_string(), article())).collect(),
            ..p
        };
        p.bids = Mutex::new(ids.iter().map(|i| (format!("e-{i}"), 1_000_000)).collect());
        p
    }

    #[tokio::test]
    async fn an_applied_change_is_journaled_with_the_rule_and_the_bids() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.run_id, "2026-11-27T20:00:00Z");
        assert_eq!(report.counts.applied, 1);
        let entry = &report.outcomes[0];
        assert_eq!(entry.rule.as_deref(), Some("cpa_above_target"));
        assert_eq!(
            (entry.bid_before_micros, entry.bid_after_micros),
            (Some(1_000_000), Some(900_000))
        );
        assert_eq!(entry.config_version, "cfg123");
        assert_eq!(e.store().journal().len(), 1);
        assert_eq!(e.store().snapshots().len(), 1);
        assert_eq!(
            report.notification,
            NotificationStatus::Sent { messages: 1 }
        );
    }

    #[tokio::test]
    async fn a_second_invocation_for_the_same_hour_changes_nothing_twice() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 5),
        );
        e.run(at(20, 0)).await;
        let again = e.run(at(20, 0)).await;
        assert_eq!(again.counts.applied, 0);
        assert_eq!(again.outcomes[0].outcome, OutcomeKind::Skipped);
        assert_eq!(e.platforms.applied.lock().unwrap().len(), 1);
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
    }

    #[tokio::test]
    async fn the_per_entity_claim_stops_a_double_change_even_without_a_cooldown() {
        let mut c = campaign("a", Mode::Apply);
        c.guardrails.cooldown_hours = 0;
        let e = engine(
            platforms(&["a"]),
            vec![c],
            EngineSettings::default(),
            Preview,
            at(20, 5),
        );
        e.run(at(20, 0)).await;
        let again = e.run(at(20, 30)).await;
        assert_eq!(again.outcomes[0].outcome, OutcomeKind::Skipped);
        assert!(
            again.outcomes[0].reason.contains("already applied"),
            "{}",
            again.outcomes[0].reason
        );
        assert_eq!(e.platforms.applied.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_next_hour_may_change_again() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(21, 0),
        );
        e.run(at(20, 0)).await;
        let next = e.run(at(21, 0)).await;
        assert_eq!(next.counts.applied, 1);
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 810_000);
    }

    #[tokio::test]
    async fn one_failing_campaign_never_stops_the_others() {
        let mut p = platforms(&["a", "b", "c"]);
        p.down = vec!["b".into()];
        let campaigns = vec![
            campaign("a", Mode::Apply),
            campaign("b", Mode::Apply),
            campaign("c", Mode::Apply),
        ];
        let e = engine(p, campaigns, EngineSettings::default(), Preview, at(20, 0));
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.counts.applied, 2);
        assert_eq!(report.counts.failed, 1);
        assert!(report.outcomes[1].reason.contains("HTTP 503"));
        assert_eq!(report.outcomes.len(), 3);
    }

    #[tokio::test]
    async fn dry_runs_validate_with_the_platform_and_change_nothing() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::DryRun)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.counts.dry_run, 1);
        assert!(e.platforms.applied.lock().unwrap()[0].2);
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
    }

    #[tokio::test]
    async fn notify_only_never_calls_the_platform() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::NotifyOnly)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.counts.notify_only, 1);
        assert!(e.platforms.applied.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_per_run_cap_skips_the_least_urgent_changes() {
        let mut p = platforms(&["a", "b"]);
        p.metrics.insert(
            "b".into(),
            Metrics {
                spend_micros: 90_000_000,
                ..article()
            },
        );
        let settings = EngineSettings {
            max_changes_per_run: Some(1),
            ..EngineSettings::default()
        };
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply), campaign("b", Mode::Apply)],
            settings,
            Preview,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.outcomes[1].outcome, OutcomeKind::Applied);
        assert_eq!(report.outcomes[0].outcome, OutcomeKind::Skipped);
        assert!(report.outcomes[0].reason.contains("per-run change cap (1)"));
    }

    #[tokio::test]
    async fn nothing_is_sent_when_nothing_happened_unless_configured() {
        let mut p = platforms(&["a"]);
        p.metrics.insert(
            "a".into(),
            Metrics {
                spend_micros: 40_000_000,
                ..article()
            },
        );
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.counts.unchanged, 1);
        assert_eq!(report.notification, NotificationStatus::NotNeeded);

        let mut p = platforms(&["a"]);
        p.metrics.insert(
            "a".into(),
            Metrics {
                spend_micros: 40_000_000,
                ..article()
            },
        );
        let settings = EngineSettings {
            notify_when_idle: true,
            ..EngineSettings::default()
        };
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply)],
            settings,
            Preview,
            at(20, 0),
        );
        assert_eq!(
            e.run(at(20, 0)).await.notification,
            NotificationStatus::Sent { messages: 1 }
        );
    }

    #[tokio::test]
    async fn a_failed_notification_is_reported_not_fatal() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            FailingNotifier,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.counts.applied, 1);
        assert!(matches!(
            report.notification,
            NotificationStatus::Failed { .. }
        ));
    }

    #[tokio::test]
    async fn revert_restores_the_previous_bid_and_is_journaled() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 10),
        );
        e.run(at(20, 0)).await;
        let report = e.revert("a", None, false).await.unwrap();
        assert_eq!(report.kind, EntryKind::Revert);
        assert_eq!(report.outcomes[0].outcome, OutcomeKind::Applied);
        assert_eq!(report.outcomes[0].rule.as_deref(), Some("revert"));
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
        assert_eq!(e.store().journal().len(), 2);
        // Reverting the revert redoes the change.
        let redo = e.revert("a", None, false).await.unwrap();
        assert_eq!(redo.outcomes[0].outcome, OutcomeKind::Applied);
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
        assert_eq!(
            (
                redo.outcomes[0].bid_before_micros,
                redo.outcomes[0].bid_after_micros
            ),
            (Some(1_000_000), Some(900_000))
        );
    }

    #[tokio::test]
    async fn the_same_revert_twice_is_refused() {
        let mut p = platforms(&["a"]);
        p.yield_in_apply = true;
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 10),
        );
        e.run(at(20, 0)).await;
        // Two reverts of the same change at once (two operators, or a retried invocation).
        let (first, second) = tokio::join!(e.revert("a", None, false), e.revert("a", None, false));
        let (ok, refused) = match (first, second) {
            (Ok(ok), Err(refused)) | (Err(refused), Ok(ok)) => (ok, refused),
            other => panic!("exactly one revert must go ahead: {other:?}"),
        };
        assert_eq!(ok.outcomes[0].outcome, OutcomeKind::Applied);
        assert!(
            matches!(
                refused,
                RevertError::AlreadyReverted(_, "pending") | RevertError::Conflict(..)
            ),
            "{refused}"
        );
        let reverts = e
            .platforms
            .applied
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c, _)| {
                matches!(
                    c,
                    Change::SetBid {
                        to_micros: 1_000_000,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(reverts, 1, "the platform saw one revert");
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
    }

    #[tokio::test]
    async fn revert_refuses_a_bid_changed_by_hand_unless_forced() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 10),
        );
        e.run(at(20, 0)).await;
        // Someone sets 1.50 by hand after the optimizer set 0.90.
        e.platforms
            .bids
            .lock()
            .unwrap()
            .insert("e-a".into(), 1_500_000);
        let refused = e.revert("a", None, false).await.unwrap_err();
        assert!(
            matches!(&refused, RevertError::ChangedOnPlatform { reason, .. }
                if reason.contains("1.50 USD") && reason.contains("0.90 USD")),
            "{refused}"
        );
        assert!(refused.to_string().contains("--force"), "{refused}");
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_500_000);

        let forced = e.revert("a", None, true).await.unwrap();
        let entry = &forced.outcomes[0];
        assert_eq!(entry.outcome, OutcomeKind::Applied);
        assert!(entry.reason.contains("forced"), "{}", entry.reason);
        assert_eq!(
            entry.change,
            Some(Change::SetBid {
                from_micros: 1_500_000,
                to_micros: 1_000_000
            })
        );
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
    }

    #[tokio::test]
    async fn revert_holds_the_restored_bid_within_min_and_max_bid() {
        let mut c = campaign("a", Mode::Apply);
        let e = engine(
            platforms(&["a"]),
            vec![c.clone()],
            EngineSettings::default(),
            Preview,
            at(20, 10),
        );
        e.run(at(20, 0)).await;
        // The config now caps bids at 0.95: the revert restores 0.95, not 1.00.
        c.guardrails.max_bid_micros = Some(950_000);
        let e = Engine {
            campaigns: vec![c],
            ..e
        };
        let report = e.revert("a", None, false).await.unwrap();
        assert_eq!(report.outcomes[0].bid_after_micros, Some(950_000));
        assert!(
            report.outcomes[0].reason.contains("above max_bid"),
            "{}",
            report.outcomes[0].reason
        );
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 950_000);
    }

    #[tokio::test]
    async fn revert_takes_the_entitys_lock_and_waits_for_a_change_in_flight() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(21, 5),
        );
        e.run(at(20, 0)).await;
        // The 21:00 run claims its change and is still making it.
        let record = ChangeRecord {
            entity_key: campaign("a", Mode::Apply).entity_key(),
            claim_id: "2026-11-27T21:00:00Z".into(),
            campaign_id: "a".into(),
            run_hour: at(21, 0),
            change: Change::SetBid {
                from_micros: 900_000,
                to_micros: 810_000,
            },
            bid_before_micros: 900_000,
            bid_after_micros: 810_000,
            at: at(21, 0),
        };
        let claim = e
            .store()
            .claim_change(&record, Some("2026-11-27T20:00:00Z"), at(21, 15))
            .await
            .unwrap();
        assert_eq!(claim, Claim::Claimed);
        let refused = e.revert("a", None, false).await.unwrap_err();
        assert!(
            matches!(&refused, RevertError::Conflict(_, why) if why.contains("2026-11-27T21:00:00Z")),
            "{refused}"
        );
        assert_eq!(e.platforms.applied.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn revert_refuses_unknown_campaigns_and_entities_and_empty_history() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        assert!(matches!(
            e.revert("zzz", None, false).await,
            Err(RevertError::UnknownCampaign(_))
        ));
        assert!(matches!(
            e.revert("a", Some("other"), false).await,
            Err(RevertError::EntityMismatch { .. })
        ));
        assert!(matches!(
            e.revert("a", None, false).await,
            Err(RevertError::NothingToRevert(_))
        ));
    }

    #[tokio::test]
    async fn campaigns_past_the_deadline_are_skipped_and_journaled() {
        let e = engine(
            platforms(&["a", "b"]),
            vec![campaign("a", Mode::Apply), campaign("b", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        let report = e.run_until(at(20, 0), Some(Instant::now())).await;
        assert_eq!(report.counts.skipped, 2);
        assert_eq!(report.outcomes[0].reason, OUT_OF_TIME);
        assert_eq!(e.store().journal().len(), 2);
        assert!(e.platforms.applied.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_applied_change_is_recorded_with_its_journal_entry_and_latest_together() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        e.store().fail_next_records(1);
        let report = e.run(at(20, 0)).await;
        // The record failed: the entry says so and the change stays claimed (no half-written LATEST).
        let entry = &report.outcomes[0];
        assert_eq!(entry.outcome, OutcomeKind::Applied);
        assert!(
            entry.reason.contains("recording the outcome failed"),
            "{}",
            entry.reason
        );
        let state = e
            .store()
            .entity_state(&campaign("a", Mode::Apply).entity_key())
            .await
            .unwrap();
        assert_eq!(state.latest, None);
        assert_eq!(
            state.pending.map(|p| p.record.claim_id).as_deref(),
            Some("2026-11-27T20:00:00Z")
        );
    }

    #[tokio::test]
    async fn a_change_left_unrecorded_is_read_back_and_keeps_its_cooldown_and_its_revert() {
        let mut c = campaign("a", Mode::Apply);
        c.guardrails.cooldown_hours = 2;
        let e = engine(
            platforms(&["a"]),
            vec![c],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        // The 20:00 run applies 1.00 -> 0.90 but its record is lost (a crash, a failed write).
        e.store().fail_next_records(1);
        e.run(at(20, 0)).await;
        let e = Engine {
            clock: Arc::new(FixedClock(at(21, 0))),
            ..e
        };
        // 21:00, the lease over: the platform shows 0.90, so the change is recorded as applied, and the
        // two-hour cooldown holds (the old code skipped it and reduced again).
        let next = e.run(at(21, 0)).await;
        assert_eq!(
            next.outcomes[0].rule.as_deref(),
            Some("cooldown"),
            "{:?}",
            next.outcomes[0]
        );
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
        let resolved = e
            .store()
            .journal()
            .into_iter()
            .find(|j| j.rule.as_deref() == Some(RESOLVED))
            .expect("the resolution is journaled");
        assert_eq!(resolved.outcome, OutcomeKind::Applied);
        assert_eq!(resolved.run_id, "2026-11-27T20:00:00Z");
        // And the revert restores the bid before that change, 1.00.
        e.revert("a", None, false).await.unwrap();
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
    }

    #[tokio::test]
    async fn a_timeout_that_in_fact_applied_is_recorded_as_applied() {
        let p = platforms(&["a"]);
        *p.trouble.lock().unwrap() = Some(Trouble::TimeoutAfterApplying);
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 10),
        );
        let report = e.run(at(20, 0)).await;
        let entry = &report.outcomes[0];
        assert_eq!(entry.outcome, OutcomeKind::Applied, "{}", entry.reason);
        assert!(
            entry.reason.contains("reading the entity back shows"),
            "{}",
            entry.reason
        );
        let state = e
            .store()
            .entity_state(&campaign("a", Mode::Apply).entity_key())
            .await
            .unwrap();
        assert_eq!(state.latest.map(|l| l.bid_after_micros), Some(900_000));
        assert_eq!(state.pending, None);
        e.revert("a", None, false).await.unwrap();
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
    }

    #[tokio::test]
    async fn a_timeout_that_did_not_apply_stays_claimed_until_the_next_run_reads_it_back() {
        let p = platforms(&["a"]);
        *p.trouble.lock().unwrap() = Some(Trouble::TimeoutWithoutApplying);
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 5),
        );
        let report = e.run(at(20, 0)).await;
        assert_eq!(report.outcomes[0].outcome, OutcomeKind::Failed);
        assert!(report.outcomes[0].reason.contains("stays claimed"));
        // A retry within the lease leaves the entity alone.
        let retry = e.run(at(20, 0)).await;
        assert_eq!(retry.outcomes[0].outcome, OutcomeKind::Skipped);
        assert!(
            retry.outcomes[0].reason.contains("another invocation"),
            "{}",
            retry.outcomes[0].reason
        );
        // The next hour: the platform still shows 1.00, so 20:00 is recorded as not applied, and the
        // 21:00 run changes the bid from what the platform really has.
        let e = Engine {
            clock: Arc::new(FixedClock(at(21, 0))),
            ..e
        };
        let next = e.run(at(21, 0)).await;
        assert_eq!(
            next.outcomes[0].outcome,
            OutcomeKind::Applied,
            "{}",
            next.outcomes[0].reason
        );
        assert_eq!(next.outcomes[0].bid_before_micros, Some(1_000_000));
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 900_000);
        assert_eq!(
            e.store().change_status(
                &campaign("a", Mode::Apply).entity_key(),
                "2026-11-27T20:00:00Z"
            ),
            Some(ChangeStatus::Failed)
        );
    }

    #[tokio::test]
    async fn a_bid_change_the_strategy_ignores_is_skipped_and_never_sent() {
        let mut p = platforms(&["a", "b"]);
        p.fixed = Some("the campaign bids with TARGET_ROAS".into());
        let e = engine(
            p,
            vec![campaign("a", Mode::Apply), campaign("b", Mode::DryRun)],
            EngineSettings::default(),
            Preview,
            at(20, 0),
        );
        let report = e.run(at(20, 0)).await;
        for entry in &report.outcomes {
            assert_eq!(entry.outcome, OutcomeKind::Skipped);
            assert!(
                entry
                    .reason
                    .contains("not sent: the campaign bids with TARGET_ROAS"),
                "{}",
                entry.reason
            );
        }
        assert!(e.platforms.applied.lock().unwrap().is_empty());
    }

    #[test]
    fn the_run_id_is_the_scheduled_time_truncated_to_the_hour() {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 20, 59, 59).unwrap();
        assert_eq!(run_id_of(run_hour_of(t)), "2026-11-27T20:00:00Z");
    }
}
