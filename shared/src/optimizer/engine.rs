//! One optimizer run: fetch every campaign concurrently (capped per platform), snapshot, decide, cap,
//! apply or dry-run under a per-entity claim, journal every campaign, notify. Also the revert operation.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::plan::{self, Candidate};
use super::ports::{
    AdPlatforms, Change, ChangeRecord, ChangeStatus, Claim, Delivery, EntryKind, JournalEntry,
    Notifier, Observation, OptimizerStore, OutcomeKind, RunSummary, Snapshot, Window,
};
use super::{Action, Campaign, Mode, Platform, Rule, decide};
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
    #[error("journal unavailable: {0}")]
    Store(#[from] StoreError),
}

impl Retryable for RevertError {
    fn class(&self) -> ErrorClass {
        match self {
            RevertError::Store(e) => e.class(),
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

/// A campaign after phase one: its entry so far and the change it wants, if any.
struct Evaluated {
    entry: JournalEntry,
    change: Option<(Change, i64)>,
    record_hour: DateTime<Utc>,
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
                    } = ev;
                    if let (Some(campaign), Some((change, before))) = (campaigns.get(i), change) {
                        if out_of_time(deadline) {
                            entry.outcome = OutcomeKind::Skipped;
                            entry.reason = format!("{}; {OUT_OF_TIME}", entry.reason);
                        } else if allowed {
                            self.execute(
                                campaign,
                                &mut entry,
                                change,
                                before,
                                &run_id,
                                record_hour,
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
                    // Journaled as soon as it is final, so a run cut short keeps what it did.
                    let error = self.store.put_journal(&entry).await.err();
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
        let fail = |mut entry: JournalEntry, reason: String| {
            entry.outcome = OutcomeKind::Failed;
            entry.reason = reason;
            Evaluated {
                entry,
                change: None,
                record_hour: run_hour,
            }
        };
        let entity_key = c.entity_key();
        let latest = match self.store.latest_change(&entity_key).await {
            Ok(latest) => latest,
            Err(e) => return fail(entry, format!("journal read failed: {e}")),
        };
        let window = Window::ending(run_hour, c.lookback_days);
        let observed: Result<Observation, _> = {
            let _permit = self.semaphore(c.platform).acquire().await.ok();
            if out_of_time(deadline) {
                entry.outcome = OutcomeKind::Skipped;
                entry.reason = OUT_OF_TIME.to_string();
                return Evaluated {
                    entry,
                    change: None,
                    record_hour: run_hour,
                };
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
            entry.change = Some(change);
            Some((change, decision.bid_before_micros))
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
        }
    }

    /// Makes (or validates, or only reports) one decided change, and sets the entry's outcome.
    async fn execute(
        &self,
        c: &Campaign,
        entry: &mut JournalEntry,
        change: Change,
        before: i64,
        claim_id: &str,
        run_hour: DateTime<Utc>,
    ) {
        let after = entry.bid_after_micros.unwrap_or(before);
        let decided = entry.reason.clone();
        match c.mode {
            Mode::NotifyOnly => {
                entry.outcome = OutcomeKind::NotifyOnly;
                entry.reason = format!("{decided} (notify-only: not sent to the platform)");
            }
            Mode::DryRun => {
                let key = change_key(&c.entity_key(), claim_id);
                if self.platforms.supports_validate_only(c) {
                    let result = {
                        let _permit = self.semaphore(c.platform).acquire().await.ok();
                        self.platforms.apply(c, change, true, &key).await
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
                self.apply_claimed(c, entry, &record, &decided).await;
            }
        }
    }

    /// Claims, applies and records one change; sets the entry's outcome.
    async fn apply_claimed(
        &self,
        c: &Campaign,
        entry: &mut JournalEntry,
        record: &ChangeRecord,
        decided: &str,
    ) {
        match self.store.claim_change(record).await {
            Err(e) => {
                entry.outcome = OutcomeKind::Failed;
                entry.reason = format!("{decided}; change not made: claiming it failed: {e}");
                return;
            }
            Ok(Claim::Taken(status)) => {
                entry.outcome = OutcomeKind::Skipped;
                entry.reason = format!(
                    "{decided}; already {} by another invocation for {}",
                    status.as_str(),
                    record.claim_id
                );
                return;
            }
            Ok(Claim::Claimed) => {}
        }
        let key = change_key(&record.entity_key, &record.claim_id);
        let result = {
            let _permit = self.semaphore(c.platform).acquire().await.ok();
            self.platforms.apply(c, record.change, false, &key).await
        };
        let (status, outcome, reason) = match result {
            Ok(()) => (
                ChangeStatus::Applied,
                OutcomeKind::Applied,
                decided.to_string(),
            ),
            Err(e) => (
                ChangeStatus::Failed,
                OutcomeKind::Failed,
                format!(
                    "{decided}; the platform refused the change ({}): {}",
                    e.class.as_str(),
                    e.reason
                ),
            ),
        };
        let reason = match self.store.finish_change(record, status, &reason).await {
            Ok(()) => reason,
            Err(e) => {
                tracing::error!(campaign = %c.id, error = %e, "recording the change's status failed");
                format!("{reason}; recording the change's status failed: {e}")
            }
        };
        entry.outcome = outcome;
        entry.reason = reason;
    }

    /// Restores the entity's bid (or status) before its last applied change. Journaled and notified.
    /// `entity`, when given, must be the campaign's entity id.
    pub async fn revert(
        &self,
        campaign_id: &str,
        entity: Option<&str>,
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
        let last = self
            .store
            .latest_change(&entity_key)
            .await?
            .ok_or_else(|| RevertError::NothingToRevert(c.id.clone()))?;
        let change = match last.change {
            Change::Pause => Change::Resume,
            Change::Resume => Change::Pause,
            Change::SetBid {
                from_micros,
                to_micros,
            } => Change::SetBid {
                from_micros: to_micros,
                to_micros: from_micros,
            },
        };
        let claim_id = format!("revert:{}", last.claim_id);
        let mut entry = self.new_entry(c, EntryKind::Revert, &claim_id);
        entry.rule = Some("revert".to_string());
        entry.change = Some(change);
        entry.bid_before_micros = Some(last.bid_after_micros);
        entry.bid_after_micros = Some(last.bid_before_micros);
        let record = ChangeRecord {
            entity_key,
            claim_id: claim_id.clone(),
            campaign_id: c.id.clone(),
            run_hour: run_hour_of(started_at),
            change,
            bid_before_micros: last.bid_after_micros,
            bid_after_micros: last.bid_before_micros,
            at: started_at,
        };
        let decided = format!("revert of the change made for {}", last.claim_id);
        if let Claim::Taken(status) = self.store.claim_change(&record).await? {
            return Err(RevertError::AlreadyReverted(c.id.clone(), status.as_str()));
        }
        // The claim above is held now; apply_claimed would claim again, so apply directly.
        let key = change_key(&record.entity_key, &record.claim_id);
        let result = {
            let _permit = self.semaphore(c.platform).acquire().await.ok();
            self.platforms.apply(c, change, false, &key).await
        };
        let (status, outcome, reason) = match result {
            Ok(()) => (ChangeStatus::Applied, OutcomeKind::Applied, decided),
            Err(e) => (
                ChangeStatus::Failed,
                OutcomeKind::Failed,
                format!("{decided} failed ({}): {}", e.class.as_str(), e.reason),
            ),
        };
        entry.outcome = outcome;
        entry.reason = match self.store.finish_change(&record, status, &reason).await {
            Ok(()) => reason,
            Err(e) => format!("{reason}; recording the change's status failed: {e}"),
        };
        let journal_errors = match self.store.put_journal(&entry).await {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!("{}: {e}", entry.campaign_id)],
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

    /// A platform with a bid per entity; metrics per campaign; some campaigns fail.
    #[derive(Default)]
    struct FakePlatforms {
        metrics: HashMap<String, Metrics>,
        bids: Mutex<HashMap<String, i64>>,
        down: Vec<String>,
        applied: Mutex<Vec<(String, Change, bool)>>,
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
                metrics: self.metrics.get(&c.id).copied().unwrap_or_default(),
                bid_micros: self.bids.lock().unwrap().get(&c.entity_id).copied(),
                paused: false,
                target_cpa_micros: None,
            })
        }
        async fn apply(
            &self,
            c: &Campaign,
            change: Change,
            validate_only: bool,
            _k: &str,
        ) -> Result<(), PlatformError> {
            self.applied
                .lock()
                .unwrap()
                .push((c.id.clone(), change, validate_only));
            if let (Change::SetBid { to_micros, .. }, false) = (change, validate_only) {
                self.bids
                    .lock()
                    .unwrap()
                    .insert(c.entity_id.clone(), to_micros);
            }
            Ok(())
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
        let report = e.revert("a", None).await.unwrap();
        assert_eq!(report.kind, EntryKind::Revert);
        assert_eq!(report.outcomes[0].outcome, OutcomeKind::Applied);
        assert_eq!(report.outcomes[0].rule.as_deref(), Some("revert"));
        assert_eq!(e.platforms.bids.lock().unwrap()["e-a"], 1_000_000);
        assert_eq!(e.store().journal().len(), 2);
        assert!(
            e.revert("a", None).await.is_ok(),
            "a revert of the revert redoes the change"
        );
    }

    #[tokio::test]
    async fn the_same_revert_twice_is_refused() {
        let e = engine(
            platforms(&["a"]),
            vec![campaign("a", Mode::Apply)],
            EngineSettings::default(),
            Preview,
            at(20, 10),
        );
        e.run(at(20, 0)).await;
        e.revert("a", None).await.unwrap();
        // Pretend the latest change is still the original one (a racing second revert).
        let record = ChangeRecord {
            entity_key: campaign("a", Mode::Apply).entity_key(),
            claim_id: "revert:2026-11-27T20:00:00Z".into(),
            campaign_id: "a".into(),
            run_hour: at(20, 0),
            change: Change::Pause,
            bid_before_micros: 0,
            bid_after_micros: 0,
            at: at(20, 0),
        };
        assert!(matches!(
            e.store().claim_change(&record).await,
            Ok(Claim::Taken(ChangeStatus::Applied))
        ));
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
            e.revert("zzz", None).await,
            Err(RevertError::UnknownCampaign(_))
        ));
        assert!(matches!(
            e.revert("a", Some("other")).await,
            Err(RevertError::EntityMismatch { .. })
        ));
        assert!(matches!(
            e.revert("a", None).await,
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

    #[test]
    fn the_run_id_is_the_scheduled_time_truncated_to_the_hour() {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 20, 59, 59).unwrap();
        assert_eq!(run_id_of(run_hour_of(t)), "2026-11-27T20:00:00Z");
    }
}
