//! The one way a change is made, for runs and reverts alike: claim (which locks the entity), apply,
//! and record the outcome with its journal entry in one transaction.

use fluxo::error::ErrorClass;
use fluxo::optimizer::Campaign;
use fluxo::optimizer::ports::{
    AdPlatforms, ChangeRecord, ChangeStatus, Claim, JournalEntry, Notifier, OptimizerStore,
    OutcomeKind, Window,
};

use super::{CLAIM_LEASE_MINUTES, Claimed, Engine, UNRESOLVED, change_key};

impl<P: AdPlatforms, S: OptimizerStore, N: Notifier> Engine<P, S, N> {
    /// The one way a change is made, for runs and reverts alike: claim it (which locks the entity), apply
    /// it, and record the outcome with its journal entry in one transaction. When the platform's answer
    /// leaves it unclear whether the change landed (a timeout, a 5xx), the entity is read back: a change
    /// that shows is recorded as applied; otherwise the claim stays pending, and the first run or revert
    /// after its lease reads the entity back again and records what it finds.
    pub(super) async fn apply_claimed(
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
}
