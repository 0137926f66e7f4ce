//! The revert: restore the entity's bid (or status) before its last applied change, through the same
//! claim, apply and record as a run (`apply.rs`), then report it like a run.

use fluxo::error::{ErrorClass, Retryable};
use fluxo::optimizer::decide::within_bounds;
use fluxo::optimizer::ports::{
    AdPlatforms, Change, ChangeRecord, Claim, EntryKind, Notifier, OptimizerStore, Window,
};
use fluxo::optimizer::{Clamp, units};
use fluxo::ports::StoreError;

use super::report::RunReport;
use super::{Claimed, Engine, locked_reason, run_hour_of, run_id_of};

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

impl<P: AdPlatforms, S: OptimizerStore, N: Notifier> Engine<P, S, N> {
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
