//! The hourly run: evaluate every campaign (fetch, snapshot, decide), apply the per-run cap, then make,
//! validate or report each change, and journal every campaign.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use fluxo::optimizer::plan::{self, Candidate};
use fluxo::optimizer::ports::{
    AdPlatforms, Change, ChangeRecord, ChangeStatus, Claim, EntryKind, JournalEntry, Notifier,
    Observation, OptimizerStore, OutcomeKind, PendingChange, Snapshot, Window,
};
use fluxo::optimizer::{Action, Campaign, DecisionInput, Mode, Rule, decide};
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;

use super::report::RunReport;
use super::{
    Claimed, Engine, Evaluated, OUT_OF_TIME, RESOLVED, change_key, locked_reason, out_of_time,
    run_hour_of, run_id_of,
};

/// Campaigns in flight at once in each phase. Each platform call also waits for its platform's limit;
/// this bounds the rest (store reads and writes, and the futures held in memory). With all of 1,000
/// campaigns in flight, a run opened a store connection per campaign and peaked at 60 MB.
const IN_FLIGHT: usize = 64;

impl<P: AdPlatforms, S: OptimizerStore, N: Notifier> Engine<P, S, N> {
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

        // Phase 1: fetch, snapshot and decide, concurrently (in order, `IN_FLIGHT` at a time).
        let evaluated: Vec<Evaluated> = stream::iter(
            self.campaigns
                .iter()
                .map(|c| self.evaluate(c, &run_id, run_hour, deadline)),
        )
        .buffered(IN_FLIGHT)
        .collect()
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

        // Phase 3: apply, dry-run or report, concurrently (in order, `IN_FLIGHT` at a time).
        let campaigns = &self.campaigns;
        let written: Vec<(JournalEntry, Option<String>)> =
            stream::iter(evaluated.into_iter().enumerate().map(|(i, ev)| {
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
                    let error = self.journal_unless_recorded(&entry, journaled).await;
                    (entry, error)
                }
            }))
            .buffered(IN_FLIGHT)
            .collect()
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
        let decision = decide(&DecisionInput {
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
    pub(super) async fn resolve(
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
}
