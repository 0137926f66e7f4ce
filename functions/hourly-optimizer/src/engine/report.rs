//! The run report: outcome counts, the notification's status, every journaled entry; and `finish`, which
//! logs a run's entries and sends its message.

use chrono::{DateTime, Utc};
use fluxo::optimizer::ports::{
    AdPlatforms, Delivery, EntryKind, JournalEntry, Notifier, OptimizerStore, OutcomeKind,
    RunSummary,
};
use serde::Serialize;

use super::{Engine, is_noteworthy};

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

impl<P: AdPlatforms, S: OptimizerStore, N: Notifier> Engine<P, S, N> {
    /// Counts the (already journaled) entries, logs them and notifies.
    pub(super) async fn finish(
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
}
