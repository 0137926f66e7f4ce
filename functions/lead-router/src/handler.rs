//! Routes one SQS batch of accepted leads: profile merge, CRM upsert, fan-out. Reports only the failed ids.
//!
//! A batch runs in three phases so that slow vendors cost one round trip, not one per lead:
//! 1. each message, concurrently: parse the envelope, merge it into the profile (optimistic lock),
//!    evaluate the rules, save;
//! 2. the CRM: claim each lead's upsert effect, upsert every claimed lead in one connector call (HubSpot:
//!    one batch request; REST: concurrent requests), record each outcome;
//! 3. fan-out: claim each message's dispatch (per submission and effect), send the email and audience
//!    messages with batched sends. The consumers' ledgers own the effects themselves (one enrollment per
//!    person and sequence), so a new submission sends again and a consent granted later enrolls then;
//!    a withdrawal sends `email.unsubscribe` and `audience.remove` instead.
//!
//! Every effect is claimed in the ledger before it is performed and completed after, so a redelivery
//! performs only what is left. No new work starts past the deadline (Lambda's, less a margin): messages
//! not started or not finished by then are reported as batch item failures, and SQS redelivers them. A permanent CRM failure is recorded on the profile and the message is
//! deleted; a retryable failure (after in-invocation retries) fails the message, so SQS redelivers it
//! and finally moves it to the DLQ. A CRM that says not to call before some time (HubSpot's daily
//! limit, [`ConnectorError::Paused`]) fails the message too, but first the router holds it back on the
//! leads queue until then (`ChangeMessageVisibility`), so it does not burn receives toward the DLQ.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use fluxo::config::router::{CRM_RESERVE, DEADLINE_MARGIN, FUNCTION_TIMEOUT_SECS};
use fluxo::connector::{ConnectorError, DEADLINE_REASON, Deadline};
use fluxo::crm::{CrmConnector, CrmContact};
use fluxo::domain::LeadId;
use fluxo::envelope::{EnvelopeError, LeadEnvelope};
use fluxo::error::{ErrorClass, Retryable};
use fluxo::idempotency::effect_key;
use fluxo::ports::{
    Clock, MAX_REDELIVERY_DELAY, MessageQueue, OutboundMessage, QueueError, Redelivery, StoreError,
};
use fluxo::routing::fanout;
use fluxo::routing::{
    Claim, CrmRecord, EffectLedger, EffectOutcome, Merge, Profile, ProfileStore, RoutingView,
    RuleSet, Saved, Submission,
};
use futures_util::StreamExt;
use tracing::{Instrument, Span};

/// Attempts at the read-merge-conditional-write cycle before giving up on a contended profile.
const MAX_MERGE_ATTEMPTS: u32 = 5;
/// Function name in metrics.
const FUNCTION: &str = "lead-router";

/// The router and everything it talks to, built once per cold start.
pub struct Router<P, L, C, Q, K> {
    pub profiles: P,
    pub ledger: L,
    pub crm: C,
    pub email_queue: Q,
    pub audience_queue: Q,
    /// The queue this function consumes: a message the CRM asks to wait for is held back on it.
    pub leads_queue: Q,
    pub clock: K,
    pub rules: RuleSet,
    /// Messages prepared, and effects claimed, at the same time.
    pub concurrency: usize,
    /// How long a claim keeps a duplicate delivery away.
    pub lease: Duration,
    /// Version of the config the rules came from, for logs.
    pub config_version: String,
}

/// Why one message failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Crm(#[from] ConnectorError),
    #[error("the profile kept changing under concurrent writes")]
    Contention,
    #[error("effect {0} is in flight in another delivery")]
    Busy(&'static str),
    #[error("a fan-out message did not serialize: {0}")]
    Serialize(String),
    #[error("message has no body")]
    NoBody,
    #[error("not finished before the function's deadline; SQS redelivers it")]
    Deadline,
}

impl Retryable for StepError {
    fn class(&self) -> ErrorClass {
        match self {
            StepError::Envelope(e) => e.class(),
            StepError::Store(e) => e.class(),
            StepError::Queue(e) => e.class(),
            StepError::Crm(e) => e.class(),
            StepError::Contention | StepError::Busy(_) | StepError::Deadline => {
                ErrorClass::Retryable
            }
            StepError::Serialize(_) | StepError::NoBody => ErrorClass::Permanent,
        }
    }
}

/// A message whose lead is merged and decided.
struct Routed {
    lead_id: LeadId,
    submission: Submission,
    profile: Profile,
}

/// One record of the batch as it moves through the phases.
struct Item {
    message_id: String,
    /// The receipt handle SQS gave with the message, to hold it back.
    receipt_handle: Option<String>,
    span: Span,
    routed: Option<Routed>,
    failure: Option<StepError>,
    /// The CRM asked not to be called for this long ([`ConnectorError::Paused`]).
    redeliver_after: Option<Duration>,
}

impl Item {
    fn fail(&mut self, error: StepError) {
        let _entered = self.span.enter();
        tracing::warn!(error = %redact(&error.to_string()), class = error.class().as_str(), "message failed; SQS will redeliver it");
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }
}

/// Runs futures with at most `limit` in flight, keeping their order.
async fn bounded<F: std::future::Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    futures_util::stream::iter(futures)
        .buffered(limit.max(1))
        .collect()
        .await
}

impl<P, L, C, Q, K> Router<P, L, C, Q, K>
where
    P: ProfileStore,
    L: EffectLedger,
    C: CrmConnector,
    Q: MessageQueue + Redelivery,
    K: Clock,
{
    /// Handles one SQS batch without a deadline (tests, tools). See [`Router::handle_until`].
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_until(event, Deadline::none()).await
    }

    /// Handles one SQS batch. The response lists only the messages SQS should redeliver.
    ///
    /// `deadline` is when new work must stop: Lambda's deadline less [`fluxo::config::router::DEADLINE_MARGIN`].
    /// CRM calls stop [`CRM_RESERVE`] before it, to leave time to record their outcomes and fan out.
    pub async fn handle_until(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let mut items = Vec::with_capacity(event.records.len());
        let mut prepares = Vec::with_capacity(event.records.len());
        for record in &event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %message_id, lead_id = tracing::field::Empty);
            prepares.push(
                self.prepare(record.body.as_deref(), deadline)
                    .instrument(span.clone()),
            );
            items.push(Item {
                message_id,
                receipt_handle: record.receipt_handle.clone(),
                span,
                routed: None,
                failure: None,
                redeliver_after: None,
            });
        }
        for (item, prepared) in items
            .iter_mut()
            .zip(bounded(prepares, self.concurrency).await)
        {
            match prepared {
                Ok(routed) => {
                    let now = self.clock.now();
                    crate::analytics::routed(
                        &routed.lead_id,
                        routed.profile.decision.as_ref(),
                        now,
                    );
                    item.routed = Some(routed);
                }
                Err(e) => item.fail(e),
            }
        }
        if self.crm.enabled() {
            self.upsert_crm(&mut items, deadline).await;
        }
        self.fan_out(&mut items, deadline).await;
        self.hold_back(&items, deadline).await;

        let mut response = SqsBatchResponse::default();
        let mut routed = 0;
        for item in &items {
            if item.failure.is_some() {
                if item.message_id.is_empty() {
                    tracing::error!(
                        "a failed message has no id and cannot be reported; SQS will not redeliver it"
                    );
                } else {
                    response.add_failure(item.message_id.clone());
                }
            } else {
                routed += 1;
            }
        }
        fluxo::analytics::flush().await;
        let failed = response.batch_item_failures.len();
        tracing::info!(messages = items.len(), routed, failed, config_version = %self.config_version, "batch handled");
        fluxo::observability::count("Fluxo", FUNCTION, "LeadsRouted", routed as u64);
        if failed > 0 {
            fluxo::observability::count("Fluxo", FUNCTION, "BatchItemFailures", failed as u64);
        }
        response
    }

    /// Phase 1: parse, merge into the profile with a conditional write, decide.
    async fn prepare(&self, body: Option<&str>, deadline: Deadline) -> Result<Routed, StepError> {
        if deadline.passed() {
            return Err(StepError::Deadline);
        }
        let body = body.ok_or(StepError::NoBody)?;
        let envelope = LeadEnvelope::from_json(body)?;
        Span::current().record("lead_id", envelope.lead_id.as_str());
        let key = envelope.lead.email.sha256_hex();
        for _ in 0..MAX_MERGE_ATTEMPTS {
            if deadline.passed() {
                return Err(StepError::Deadline);
            }
            let now = self.clock.now();
            let (mut profile, expected, merge) = match self.profiles.load(&key).await? {
                None => (Profile::new(&envelope, now), None, Merge::Added),
                Some(stored) => {
                    let mut profile = stored.value;
                    let merge = profile.merge(&envelope, now);
                    (profile, Some(stored.version), merge)
                }
            };
            let submission = profile
                .submissions
                .iter()
                .find(|s| s.lead_id == envelope.lead_id)
                .cloned()
                .unwrap_or_else(|| Submission::of(&envelope));
            let decision = self.rules.evaluate(&profile, &submission);
            let routed = |profile| Routed {
                lead_id: envelope.lead_id.clone(),
                submission: submission.clone(),
                profile,
            };
            if merge == Merge::AlreadyMerged && profile.decision.as_ref() == Some(&decision) {
                tracing::info!(profile = %envelope.lead.email.fingerprint(), "redelivery: profile already holds this lead");
                let mut profile = profile;
                profile.decision = Some(decision);
                return Ok(routed(profile));
            }
            tracing::info!(
                profile = %envelope.lead.email.fingerprint(),
                segment = decision.segment.as_deref().unwrap_or(""),
                score = decision.score,
                rules = ?decision.matched_rules,
                submissions = profile.submissions.len(),
                "lead merged and qualified"
            );
            profile.decision = Some(decision);
            match self.profiles.save(&profile, expected).await? {
                Saved::Saved => return Ok(routed(profile)),
                Saved::Conflict => tracing::debug!("profile changed concurrently; merging again"),
            }
        }
        Err(StepError::Contention)
    }

    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(60))
    }

    /// Phase 2: claim each lead's CRM effect, upsert the claimed ones together, record each outcome.
    async fn upsert_crm(&self, items: &mut [Item], deadline: Deadline) {
        let crm_deadline = deadline.earlier(CRM_RESERVE);
        if crm_deadline.passed() {
            fail_unfinished(items);
            return;
        }
        let now = self.clock.now();
        let until = self.lease_until(now);
        let destination = format!("crm:{}", self.crm.name());
        let mut claims = Vec::new();
        let mut claimed_items = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = &item.routed {
                let key = effect_key(r.lead_id.as_str(), &destination, "upsert");
                claimed_items.push((i, key.clone()));
                claims
                    .push(async move { (key.clone(), self.ledger.claim(&key, now, until).await) });
            }
        }
        let mut contacts: Vec<CrmContact> = Vec::new();
        let mut owners: Vec<(usize, String)> = Vec::new();
        for ((i, _), (key, claim)) in claimed_items
            .into_iter()
            .zip(bounded(claims, self.concurrency).await)
        {
            let item = &mut items[i];
            match claim {
                Ok(Claim::Acquired) => {
                    if let Some(r) = &item.routed {
                        let view = RoutingView {
                            profile: &r.profile,
                            submission: &r.submission,
                            decision: r.profile.decision.as_ref(),
                        };
                        contacts.push(self.crm.mapping().contact(&r.lead_id, &view));
                        owners.push((i, key));
                    }
                }
                Ok(Claim::Done) => {
                    item.span
                        .in_scope(|| tracing::info!("CRM upsert already done; skipped"));
                    if let Some(r) = &item.routed {
                        crate::analytics::crm_skipped(
                            &r.lead_id,
                            self.crm.name(),
                            "already_done",
                            now,
                        )
                    }
                }
                Ok(Claim::Failed(reason)) => {
                    item.span.in_scope(|| tracing::info!(reason = %redact(&reason), "CRM upsert failed permanently before; skipped"));
                    if let Some(r) = &item.routed {
                        crate::analytics::crm_skipped(
                            &r.lead_id,
                            self.crm.name(),
                            "failed_before",
                            now,
                        )
                    }
                }
                Ok(Claim::Busy) => item.fail(StepError::Busy("crm upsert")),
                Err(e) => item.fail(e.into()),
            }
        }
        if contacts.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let upsert = self.crm.upsert(&contacts, crm_deadline);
        // The connector stops at `crm_deadline`; this is the safety net should one not.
        let results = match deadline.instant() {
            Some(at) => tokio::time::timeout_at(at, upsert)
                .await
                .unwrap_or_else(|_| {
                    contacts
                        .iter()
                        .map(|_| {
                            Err(ConnectorError::Exhausted {
                                vendor: "crm",
                                attempts: 0,
                                reason: DEADLINE_REASON.to_string(),
                            })
                        })
                        .collect()
                }),
            None => upsert.await,
        };
        let latency = started.elapsed();
        let mut records = Vec::with_capacity(owners.len());
        for ((i, key), result) in owners.into_iter().zip(results) {
            let Some(r) = &items[i].routed else { continue };
            crate::analytics::crm(
                &r.lead_id,
                self.crm.name(),
                result.as_ref().map(|_| ()),
                latency,
                now,
            );
            let span = items[i].span.clone();
            let profile_key = r.profile.key();
            let base = CrmRecord {
                connector: self.crm.name().to_string(),
                lead_id: r.lead_id.clone(),
                at: now,
                state: String::new(),
                contact_id: None,
                reason: None,
                request: None,
            };
            let (record, outcome, failure) = match result {
                Ok(receipt) => {
                    span.in_scope(|| tracing::info!(crm = %base.connector, dry_run = receipt.dry_run.is_some(), "CRM upsert done"));
                    let record = CrmRecord {
                        state: "done".into(),
                        contact_id: receipt.contact_id,
                        request: receipt.dry_run,
                        ..base
                    };
                    (record, Some(EffectOutcome::Done), None)
                }
                Err(e) if !e.is_retryable() => {
                    span.in_scope(|| tracing::warn!(error = %redact(&e.to_string()), "CRM rejected the lead; recorded on the profile, not retried"));
                    fluxo::observability::count("Fluxo", FUNCTION, "CrmPermanentFailures", 1);
                    let reason = e.reason().to_string();
                    let record = CrmRecord {
                        state: "permanent_failure".into(),
                        reason: Some(reason.clone()),
                        ..base
                    };
                    (record, Some(EffectOutcome::Failed(reason)), None)
                }
                Err(e) => {
                    let record = CrmRecord {
                        state: "retryable_failure".into(),
                        reason: Some(e.to_string()),
                        ..base
                    };
                    (record, None, Some(StepError::Crm(e)))
                }
            };
            records.push(async move {
                let ledger = match &outcome {
                    Some(o) => self.ledger.complete(&key, o, now).await,
                    None => self.ledger.release(&key).await,
                };
                let stored = self.profiles.record_crm(&profile_key, &record).await;
                (i, failure, ledger.and(stored))
            });
        }
        for (i, failure, stored) in bounded(records, self.concurrency).await {
            if let Some(StepError::Crm(e)) = &failure {
                items[i].redeliver_after = e.wait();
            }
            if let Some(e) = failure {
                items[i].fail(e);
            }
            if let Err(e) = stored {
                items[i].fail(e.into());
            }
        }
    }

    /// Holds back, on the leads queue, every failed message whose CRM upsert was paused, until the pause
    /// ends (at most [`MAX_REDELIVERY_DELAY`]): SQS then redelivers it only once the CRM takes calls
    /// again, instead of after the queue's visibility timeout, and it does not burn receives toward the
    /// DLQ meanwhile. A failure here is logged and otherwise harmless: the message is still reported as
    /// a batch item failure and comes back after the visibility timeout.
    async fn hold_back(&self, items: &[Item], deadline: Deadline) {
        let mut delays = Vec::new();
        for item in items {
            let (Some(_), Some(wait)) = (&item.failure, item.redeliver_after) else {
                continue;
            };
            let after = wait.min(MAX_REDELIVERY_DELAY);
            let span = item.span.clone();
            let Some(handle) = item.receipt_handle.as_deref().filter(|h| !h.is_empty()) else {
                span.in_scope(|| tracing::warn!("the CRM is paused but the message has no receipt handle; SQS redelivers it after the visibility timeout"));
                continue;
            };
            delays.push(async move {
                match self.leads_queue.redeliver_after(handle, after).await {
                    Ok(()) => span.in_scope(|| {
                        tracing::info!(
                            redeliver_in_secs = after.as_secs(),
                            "the CRM is paused; the message is held back on the leads queue until then"
                        )
                    }),
                    Err(e) => span.in_scope(|| {
                        tracing::warn!(error = %redact(&e.to_string()), class = e.class().as_str(), "could not hold the message back; SQS redelivers it after the visibility timeout")
                    }),
                }
            });
        }
        if delays.is_empty() {
            return;
        }
        let held = bounded(delays, self.concurrency);
        // Past the deadline, part of the margin is still Lambda's: use half of it, no more.
        match deadline.instant() {
            Some(at) => {
                if tokio::time::timeout_at(at + DEADLINE_MARGIN / 2, held)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "holding messages back ran into the deadline; the rest come back after the visibility timeout"
                    );
                }
            }
            None => {
                held.await;
            }
        }
    }

    /// Phase 3: claim each destination effect and send the messages in batches, per queue.
    async fn fan_out(&self, items: &mut [Item], deadline: Deadline) {
        if deadline.passed() {
            fail_unfinished(items);
            return;
        }
        let now = self.clock.now();
        let until = self.lease_until(now);
        let mut email = Vec::new();
        let mut audience = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let Some(r) = &item.routed else { continue };
            // The router dedups only redeliveries of this submission (the dispatch key); the
            // consumer's ledger is the exactly-once authority for the effect itself, so a later
            // submission (a consent granted since) reaches the consumer again.
            let plan = fanout::plan(&r.profile, &r.lead_id, now);
            for action in plan.email {
                match serde_json::to_string(&action) {
                    Ok(body) => email.push((
                        i,
                        OutboundMessage {
                            id: fanout::FanOut::dispatch_key(&r.lead_id, &action.header.effect_key),
                            body,
                        },
                    )),
                    Err(e) => serialize_failed(item, &e),
                }
            }
            for action in plan.audience {
                match serde_json::to_string(&action) {
                    Ok(body) => audience.push((
                        i,
                        OutboundMessage {
                            id: fanout::FanOut::dispatch_key(&r.lead_id, &action.header.effect_key),
                            body,
                        },
                    )),
                    Err(e) => serialize_failed(item, &e),
                }
            }
        }
        let email = self.claim_all(items, email, now, until).await;
        let audience = self.claim_all(items, audience, now, until).await;
        self.send_all(items, &self.email_queue, email, "email", now)
            .await;
        self.send_all(items, &self.audience_queue, audience, "audience", now)
            .await;
    }

    /// Claims every message's effect; keeps the ones this delivery must send.
    async fn claim_all(
        &self,
        items: &mut [Item],
        messages: Vec<(usize, OutboundMessage)>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<(usize, OutboundMessage)> {
        let mut seen = HashSet::new();
        // The same person twice in one batch: one message per effect is enough.
        let messages: Vec<_> = messages
            .into_iter()
            .filter(|(_, m)| seen.insert(m.id.clone()))
            .collect();
        let claims: Vec<_> = messages
            .iter()
            .map(|(_, m)| self.ledger.claim(&m.id, now, until))
            .collect();
        let claimed = bounded(claims, self.concurrency).await;
        let mut keep = Vec::with_capacity(messages.len());
        for ((i, message), claim) in messages.into_iter().zip(claimed) {
            match claim {
                Ok(Claim::Acquired) => keep.push((i, message)),
                Ok(Claim::Done | Claim::Failed(_)) => {
                    items[i].span.in_scope(
                        || tracing::info!(effect = %message.id, "fan-out already done; skipped"),
                    );
                }
                Ok(Claim::Busy) => items[i].fail(StepError::Busy("fan-out")),
                Err(e) => items[i].fail(e.into()),
            }
        }
        keep
    }

    /// Sends claimed messages in batches; completes the sent effects and releases the others.
    async fn send_all(
        &self,
        items: &mut [Item],
        queue: &Q,
        messages: Vec<(usize, OutboundMessage)>,
        kind: &str,
        now: DateTime<Utc>,
    ) {
        if messages.is_empty() {
            return;
        }
        let outbound: Vec<OutboundMessage> = messages.iter().map(|(_, m)| m.clone()).collect();
        let failed_ids: Result<HashSet<String>, QueueError> = queue
            .send_batch(&outbound)
            .await
            .map(|f| f.into_iter().collect());
        let mut updates = Vec::with_capacity(messages.len());
        for (i, message) in &messages {
            let sent = failed_ids
                .as_ref()
                .is_ok_and(|failed| !failed.contains(&message.id));
            let key = message.id.clone();
            let i = *i;
            updates.push(async move {
                let result = if sent {
                    self.ledger.complete(&key, &EffectOutcome::Done, now).await
                } else {
                    self.ledger.release(&key).await
                };
                (i, sent, result)
            });
        }
        let unsent = match &failed_ids {
            Ok(failed) => failed.len(),
            Err(_) => messages.len(),
        };
        if unsent > 0 {
            // Watched by the template's RouterQueueSendFailuresAlarm.
            fluxo::observability::count("Fluxo", FUNCTION, "QueueSendFailed", unsent as u64);
        }
        for (i, sent, result) in bounded(updates, self.concurrency).await {
            if !sent {
                let error = match &failed_ids {
                    Err(e) => QueueError::Unavailable(format!("{kind} queue: {e}")),
                    Ok(_) => QueueError::Unavailable(format!(
                        "{kind} queue refused a message of the batch"
                    )),
                };
                items[i].fail(error.into());
            } else {
                items[i]
                    .span
                    .in_scope(|| tracing::info!(queue = kind, "fan-out message sent"));
            }
            if let Err(e) = result {
                items[i].fail(e.into());
            }
        }
    }
}

/// When this invocation must stop starting new work: Lambda's deadline (`Context::deadline`, ms since the
/// epoch) less [`DEADLINE_MARGIN`]. A deadline that is not ahead of `now` by at most Lambda's 15-minute
/// ceiling cannot be Lambda's; the function's own timeout from `now` is used instead.
pub fn invocation_deadline(deadline_ms: u64, now: SystemTime) -> Deadline {
    let lambda = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let plausible = lambda
        .duration_since(now)
        .is_ok_and(|left| left > Duration::ZERO && left <= Duration::from_secs(15 * 60));
    if plausible {
        Deadline::from_epoch_millis(deadline_ms, DEADLINE_MARGIN, now)
    } else {
        tracing::warn!(
            deadline_ms,
            "the invocation's deadline is implausible; using the function's timeout"
        );
        Deadline::after(Duration::from_secs(FUNCTION_TIMEOUT_SECS).saturating_sub(DEADLINE_MARGIN))
    }
}

/// Fails, for redelivery, every routed message that has not failed yet: the deadline stopped its work.
fn fail_unfinished(items: &mut [Item]) {
    for item in items.iter_mut() {
        if item.routed.is_some() && item.failure.is_none() {
            item.fail(StepError::Deadline);
        }
    }
}

fn serialize_failed(item: &Item, e: &serde_json::Error) {
    item.span
        .in_scope(|| tracing::error!(error = %e, "fan-out message did not serialize"));
}

/// Vendor error bodies can echo the lead's data: mask anything that looks like an email before logging.
fn redact(text: &str) -> String {
    text.split(' ')
        .map(|word| if word.contains('@') { "[email]" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use fluxo::config::load_str;
    use fluxo::crm::config::Mapping;
    use fluxo::crm::rest::config::default_body;
    use fluxo::crm::{CrmReceipt, RecordedRequest};
    use fluxo::domain::{Consent, Email, Lead};
    use fluxo::routing::memory::{MemoryLedger, MemoryProfiles, MemoryQueue};
    use fluxo::routing::{AudienceAction, EmailAction};
    use fluxo::testing::FixedClock;
    use serde_json::json;

    use super::*;

    /// A CRM that records every call and answers per email: ok, permanent or retryable.
    struct FakeCrm {
        mapping: Mapping,
        calls: Mutex<Vec<Vec<CrmContact>>>,
        reject: Vec<&'static str>,
        down: Mutex<Vec<&'static str>>,
        /// Emails the CRM answers with a pause of this length (HubSpot's daily limit).
        paused: Vec<(&'static str, Duration)>,
        /// How long each call takes.
        delay: Option<Duration>,
    }

    impl FakeCrm {
        fn new() -> Self {
            FakeCrm {
                mapping: Mapping::compile(&default_body()).unwrap(),
                calls: Mutex::default(),
                reject: vec![],
                down: Mutex::default(),
                paused: vec![],
                delay: None,
            }
        }
        fn contacts(&self) -> usize {
            self.calls.lock().unwrap().iter().map(Vec::len).sum()
        }
    }

    impl CrmConnector for FakeCrm {
        fn name(&self) -> &str {
            "fake"
        }
        fn enabled(&self) -> bool {
            true
        }
        fn mapping(&self) -> &Mapping {
            &self.mapping
        }
        async fn upsert(
            &self,
            contacts: &[CrmContact],
            _deadline: Deadline,
        ) -> Vec<Result<CrmReceipt, ConnectorError>> {
            self.calls.lock().unwrap().push(contacts.to_vec());
            if let Some(delay) = self.delay {
                tokio::time::sleep(delay).await;
            }
            let down = self.down.lock().unwrap().clone();
            contacts
                .iter()
                .map(|c| {
                    if self.reject.contains(&c.email.as_str()) {
                        Err(ConnectorError::Permanent {
                            vendor: "fake",
                            reason: "HTTP 400: invalid email".into(),
                        })
                    } else if let Some((_, wait)) =
                        self.paused.iter().find(|(e, _)| *e == c.email.as_str())
                    {
                        Err(ConnectorError::Paused {
                            vendor: "fake",
                            reason: "daily limit".into(),
                            wait: *wait,
                        })
                    } else if down.contains(&c.email.as_str()) {
                        Err(ConnectorError::Exhausted {
                            vendor: "fake",
                            attempts: 3,
                            reason: "HTTP 500: down".into(),
                        })
                    } else {
                        let request = RecordedRequest {
                            method: "POST".into(),
                            url: "https://crm.example/leads".into(),
                            headers: vec![],
                            body: json!({"email": c.email.as_str()}),
                        };
                        Ok(CrmReceipt {
                            contact_id: Some(format!("c-{}", c.email.as_str())),
                            dry_run: Some(request),
                        })
                    }
                })
                .collect()
        }
    }

    type TestRouter = Router<MemoryProfiles, MemoryLedger, FakeCrm, MemoryQueue, FixedClock>;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000, 0).unwrap()
    }

    fn router(crm: FakeCrm) -> TestRouter {
        let config = load_str("t.toml", include_str!("../../../config/fluxo.toml"))
            .unwrap()
            .config;
        Router {
            profiles: MemoryProfiles::default(),
            ledger: MemoryLedger::default(),
            crm,
            email_queue: MemoryQueue::default(),
            audience_queue: MemoryQueue::default(),
            leads_queue: MemoryQueue::default(),
            clock: FixedClock::at(at()),
            rules: RuleSet::compile(&config.lead_router).unwrap(),
            concurrency: 4,
            lease: Duration::from_secs(60),
            config_version: "test".into(),
        }
    }

    /// The article's webhook payload, as the receiver normalizes it.
    fn joao(n: u128) -> LeadEnvelope {
        let mut lead = Lead::with_email(Email::parse("joao@exemplo.com").unwrap());
        lead.name = Some("João".into());
        lead.source = Some("Webinar XYZ".into());
        lead.interest = Some("Software A".into());
        LeadEnvelope::new(LeadId::new(at(), n), format!("k{n}"), at(), None, lead)
    }

    fn lead(email: &str, n: u128) -> LeadEnvelope {
        let lead = Lead::with_email(Email::parse(email).unwrap());
        LeadEnvelope::new(LeadId::new(at(), n), format!("k{n}"), at(), None, lead)
    }

    fn event(messages: &[(&str, String)]) -> SqsEvent {
        let records: Vec<_> = messages
            .iter()
            .map(|(id, body)| json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body}))
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<String> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    #[test]
    fn emails_in_vendor_errors_are_masked_before_logging() {
        assert_eq!(
            redact("HTTP 400: joao@exemplo.com is invalid"),
            "HTTP 400: [email] is invalid"
        );
    }

    #[tokio::test]
    async fn the_articles_lead_is_merged_upserted_segmented_and_fanned_out() {
        let r = router(FakeCrm::new());
        let envelope = joao(1);
        let response = r
            .handle(event(&[("m1", envelope.to_json().unwrap())]))
            .await;
        assert!(failed_ids(&response).is_empty());

        let (profile, version, crm) = r.profiles.get(&envelope.lead.email.sha256_hex()).unwrap();
        assert_eq!(version, 1);
        assert_eq!(
            profile.decision.unwrap().segment.as_deref(),
            Some("interesse_software_a")
        );
        assert_eq!(crm.len(), 1);
        assert_eq!(crm[0].state, "done");
        assert!(
            crm[0].request.is_some(),
            "the dry-run request is kept on the profile"
        );

        let emails = r.email_queue.sent();
        assert_eq!(emails.len(), 1);
        let email = EmailAction::from_json(&emails[0].body).unwrap();
        assert_eq!(email.sequence, "nutricao_interesse_software_a");
        let audiences = r.audience_queue.sent();
        assert_eq!(audiences.len(), 1);
        assert_eq!(
            AudienceAction::from_json(&audiences[0].body)
                .unwrap()
                .audience,
            "leads_qualificados"
        );
    }

    #[tokio::test]
    async fn a_redelivered_message_makes_no_second_crm_call_and_no_second_fan_out_message() {
        let r = router(FakeCrm::new());
        let body = joao(1).to_json().unwrap();
        r.handle(event(&[("m1", body.clone())])).await;
        let response = r.handle(event(&[("m1-again", body)])).await;
        assert!(failed_ids(&response).is_empty());
        assert_eq!(r.crm.contacts(), 1);
        assert_eq!(r.email_queue.sent().len(), 1);
        assert_eq!(r.audience_queue.sent().len(), 1);
        let (profile, _, _) = r.profiles.get(&joao(1).lead.email.sha256_hex()).unwrap();
        assert_eq!(profile.submissions.len(), 1);
    }

    #[tokio::test]
    async fn a_batch_reaches_the_crm_in_one_connector_call() {
        let r = router(FakeCrm::new());
        let messages: Vec<_> = (0..10u128)
            .map(|n| {
                (
                    format!("m{n}"),
                    lead(&format!("p{n}@exemplo.com"), n).to_json().unwrap(),
                )
            })
            .collect();
        let messages: Vec<(&str, String)> = messages
            .iter()
            .map(|(id, b)| (id.as_str(), b.clone()))
            .collect();
        let response = r.handle(event(&messages)).await;
        assert!(failed_ids(&response).is_empty());
        assert_eq!(r.crm.calls.lock().unwrap().len(), 1);
        assert_eq!(r.crm.contacts(), 10);
        assert_eq!(r.email_queue.sent().len(), 10);
    }

    #[tokio::test]
    async fn a_permanent_crm_failure_is_recorded_on_the_profile_and_not_retried() {
        let mut crm = FakeCrm::new();
        crm.reject = vec!["bad@exemplo.com"];
        let r = router(crm);
        let envelope = lead("bad@exemplo.com", 1);
        let response = r
            .handle(event(&[("m1", envelope.to_json().unwrap())]))
            .await;
        assert!(
            failed_ids(&response).is_empty(),
            "a permanent failure deletes the message"
        );
        let (_, _, crm) = r.profiles.get(&envelope.lead.email.sha256_hex()).unwrap();
        assert_eq!(crm[0].state, "permanent_failure");
        assert_eq!(crm[0].reason.as_deref(), Some("HTTP 400: invalid email"));
        // Redelivered anyway: the CRM is not called again.
        r.handle(event(&[("m1", envelope.to_json().unwrap())]))
            .await;
        assert_eq!(r.crm.contacts(), 1);
        assert_eq!(
            r.email_queue.sent().len(),
            1,
            "the other destinations still get the lead"
        );
    }

    #[tokio::test]
    async fn a_mixed_batch_reports_only_the_failing_message_and_a_retry_completes_only_what_is_left()
     {
        let crm = FakeCrm::new();
        crm.down.lock().unwrap().push("down@exemplo.com");
        let r = router(crm);
        let ok = lead("ok@exemplo.com", 1).to_json().unwrap();
        let down = lead("down@exemplo.com", 2).to_json().unwrap();
        let response = r
            .handle(event(&[
                ("ok", ok),
                ("down", down.clone()),
                ("junk", "{not json".into()),
            ]))
            .await;
        assert_eq!(failed_ids(&response), vec!["down", "junk"]);
        assert_eq!(
            r.email_queue.sent().len(),
            2,
            "fan-out does not wait for the CRM"
        );

        r.crm.down.lock().unwrap().clear();
        let response = r.handle(event(&[("down", down)])).await;
        assert!(failed_ids(&response).is_empty());
        assert_eq!(r.crm.contacts(), 3);
        assert_eq!(
            r.email_queue.sent().len(),
            2,
            "no second fan-out message on the retry"
        );
    }

    #[tokio::test]
    async fn a_crm_pause_holds_back_exactly_the_paused_messages_for_the_pause() {
        let mut crm = FakeCrm::new();
        crm.paused = vec![
            ("p1@exemplo.com", Duration::from_secs(1200)),
            ("p2@exemplo.com", Duration::from_millis(1_500)),
        ];
        crm.down.lock().unwrap().push("down@exemplo.com");
        let r = router(crm);
        let body = |email, n| lead(email, n).to_json().unwrap();
        let response = r
            .handle(event(&[
                ("ok", body("ok@exemplo.com", 1)),
                ("p1", body("p1@exemplo.com", 2)),
                ("down", body("down@exemplo.com", 3)),
                ("p2", body("p2@exemplo.com", 4)),
                ("junk", "{not json".into()),
            ]))
            .await;
        assert_eq!(
            failed_ids(&response),
            vec!["p1", "down", "p2", "junk"],
            "paused messages are still handed back"
        );
        let mut delayed = r.leads_queue.delayed();
        delayed.sort();
        assert_eq!(
            delayed,
            vec![
                ("rh-p1".to_string(), Duration::from_secs(1200)),
                ("rh-p2".to_string(), Duration::from_millis(1_500)),
            ],
            "only the paused messages are held back, each by its pause"
        );
        assert!(r.email_queue.delayed().is_empty());
        assert!(r.audience_queue.delayed().is_empty());
        let (_, _, crm) = r
            .profiles
            .get(&Email::parse("p1@exemplo.com").unwrap().sha256_hex())
            .unwrap();
        assert_eq!(crm[0].state, "retryable_failure");
    }

    #[tokio::test]
    async fn a_pause_longer_than_sqs_allows_holds_the_message_back_for_the_longest_sqs_allows() {
        let mut crm = FakeCrm::new();
        crm.paused = vec![("p@exemplo.com", Duration::from_secs(30 * 3600))];
        let r = router(crm);
        let response = r
            .handle(event(&[("p", lead("p@exemplo.com", 1).to_json().unwrap())]))
            .await;
        assert_eq!(failed_ids(&response), vec!["p"]);
        assert_eq!(
            r.leads_queue.delayed(),
            vec![("rh-p".to_string(), MAX_REDELIVERY_DELAY)]
        );
        assert!(MAX_REDELIVERY_DELAY < Duration::from_secs(12 * 3600));
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_held_back_is_still_handed_back() {
        let mut crm = FakeCrm::new();
        crm.paused = vec![("p@exemplo.com", Duration::from_secs(600))];
        let r = router(crm);
        r.leads_queue.refuse_delays();
        let response = r
            .handle(event(&[
                ("p", lead("p@exemplo.com", 1).to_json().unwrap()),
                ("ok", lead("ok@exemplo.com", 2).to_json().unwrap()),
            ]))
            .await;
        assert_eq!(failed_ids(&response), vec!["p"]);
        assert!(r.leads_queue.delayed().is_empty());
    }

    #[tokio::test]
    async fn a_queue_refusal_fails_only_the_messages_it_refused() {
        let r = router(FakeCrm::new());
        r.audience_queue.fail_when_body_contains("b@exemplo.com");
        let a = lead("a@exemplo.com", 1).to_json().unwrap();
        let b = lead("b@exemplo.com", 2).to_json().unwrap();
        let response = r.handle(event(&[("a", a), ("b", b.clone())])).await;
        assert_eq!(failed_ids(&response), vec!["b"]);
        assert_eq!(r.email_queue.sent().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_invocation_deadline_is_lambdas_less_the_margin_or_the_timeout_when_implausible() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let in_20s = 1_764_000_020_000;
        assert_eq!(
            invocation_deadline(in_20s, now).remaining(),
            Some(Duration::from_secs(17))
        );
        for implausible in [0, 123, 1_764_000_000_000, 1_764_100_000_000] {
            assert_eq!(
                invocation_deadline(implausible, now).remaining(),
                Some(Duration::from_secs(27)),
                "{implausible}"
            );
        }
    }

    #[tokio::test]
    async fn messages_not_started_before_the_deadline_are_handed_back_untouched() {
        let r = router(FakeCrm::new());
        let a = joao(1);
        let b = lead("b@exemplo.com", 2);
        let response = r
            .handle_until(
                event(&[("a", a.to_json().unwrap()), ("b", b.to_json().unwrap())]),
                Deadline::after(Duration::ZERO),
            )
            .await;
        assert_eq!(failed_ids(&response), vec!["a", "b"]);
        assert_eq!(r.crm.contacts(), 0);
        assert!(r.profiles.get(&a.lead.email.sha256_hex()).is_none());
        assert!(r.email_queue.sent().is_empty());
        assert!(r.audience_queue.sent().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_crm_call_running_into_the_deadline_is_abandoned_and_the_batch_handed_back() {
        let mut crm = FakeCrm::new();
        crm.delay = Some(Duration::from_secs(60));
        let r = router(crm);
        let body = joao(1).to_json().unwrap();
        let started = tokio::time::Instant::now();
        let response = r
            .handle_until(
                event(&[("m1", body.clone())]),
                Deadline::after(Duration::from_secs(10)),
            )
            .await;
        assert!(
            started.elapsed() <= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(failed_ids(&response), vec!["m1"]);
        assert!(
            r.email_queue.sent().is_empty(),
            "no new work after the deadline"
        );

        // The claim was released: the redelivery upserts and fans out, once.
        r.crm.calls.lock().unwrap().clear();
        let mut fast = FakeCrm::new();
        fast.delay = None;
        let r = Router { crm: fast, ..r };
        let response = r.handle(event(&[("m1", body)])).await;
        assert!(failed_ids(&response).is_empty());
        assert_eq!(r.crm.contacts(), 1);
        assert_eq!(r.email_queue.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_second_submission_sends_the_enrollment_again_for_the_consumers_ledger_to_decide() {
        let r = router(FakeCrm::new());
        let mut later = joao(2);
        later.lead.company = Some("Empresa X".into());
        later.lead.consent = Some(Consent {
            granted: true,
            at: None,
            text: None,
        });
        r.handle(event(&[("m1", joao(1).to_json().unwrap())])).await;
        r.handle(event(&[("m2", later.to_json().unwrap())])).await;
        let (profile, version, _) = r.profiles.get(&later.lead.email.sha256_hex()).unwrap();
        assert_eq!(version, 2);
        assert_eq!(profile.submissions.len(), 2);
        assert_eq!(profile.field("company"), Some("Empresa X"));
        assert_eq!(
            r.crm.contacts(),
            2,
            "each submission updates the CRM contact"
        );
        let sent: Vec<EmailAction> = r
            .email_queue
            .sent()
            .iter()
            .map(|m| EmailAction::from_json(&m.body).unwrap())
            .collect();
        assert_eq!(sent.len(), 2, "the later grant reaches email-trigger");
        assert_eq!(
            sent[0].header.effect_key, sent[1].header.effect_key,
            "one effect (person x sequence): email-trigger's ledger enrolls once"
        );
        assert_eq!(sent[0].header.consent.status, "unknown");
        assert_eq!(sent[1].header.consent.status, "granted");
        // Redelivering the second submission sends nothing more.
        r.handle(event(&[("m2-again", later.to_json().unwrap())]))
            .await;
        assert_eq!(r.email_queue.sent().len(), 2);
        assert_eq!(r.audience_queue.sent().len(), 2);
    }

    #[tokio::test]
    async fn a_withdrawal_sends_an_unsubscribe_and_audience_removals_instead_of_enrollments() {
        let r = router(FakeCrm::new());
        let mut no = joao(2);
        no.lead.consent = Some(Consent {
            granted: false,
            at: None,
            text: None,
        });
        r.handle(event(&[("m1", joao(1).to_json().unwrap())])).await;
        r.handle(event(&[("m2", no.to_json().unwrap())])).await;
        let emails = r.email_queue.sent();
        assert_eq!(emails.len(), 2);
        let unsubscribe = EmailAction::from_json(&emails[1].body).unwrap();
        assert_eq!(unsubscribe.header.kind, fanout::EMAIL_UNSUBSCRIBE);
        assert_eq!(unsubscribe.header.reason.as_deref(), Some("withdrawal"));
        let audiences = r.audience_queue.sent();
        assert_eq!(audiences.len(), 2);
        let remove = AudienceAction::from_json(&audiences[1].body).unwrap();
        assert_eq!(remove.header.kind, fanout::AUDIENCE_REMOVE);
        assert_eq!(remove.audience, "leads_qualificados");
        assert_eq!(remove.header.reason.as_deref(), Some("withdrawal"));
    }
}
