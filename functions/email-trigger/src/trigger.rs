//! The use case: one email-queue message at a time, every platform call claimed in the ledger first.
//!
//! - `email.enroll`: claim the enrollment (person x sequence); a marketing sequence needs the person's
//!   current marketing consent (read from the profile), else it is recorded `skipped: no_consent` and a
//!   later message (a consent granted since) may claim it again. Then each platform of the sequence is
//!   its own effect (claim -> perform -> complete), so a retry never repeats a platform that already
//!   answered: exactly one call per person, sequence and platform.
//! - `email.unsubscribe`: unsubscribe on every platform the person was sent to, then forget their
//!   enrollments so that a later grant enrolls them again.
//! - `commerce.product_viewed` / `commerce.order_completed`: keep the person's latest views and purchases;
//!   the first view of a window schedules an `email.recommend` delayed by the window.
//! - `email.recommend`: at most one per person and period, the last N distinct products viewed, most
//!   recent first, none already bought, to known people with consent only.
//!
//! Platform calls across the whole batch share one semaphore (`concurrency`, at most 10: Mailchimp's
//! connection limit), so a batch of ten costs about one call's latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use fluxo::config::email::{DEADLINE_MARGIN, FUNCTION_TIMEOUT_SECS};
use fluxo::connector::{ConnectorError, Deadline};
use fluxo::email::messages::{
    CommerceEvent, EMAIL_RECOMMEND, EmailMessage, ORDER_COMPLETED, PRODUCT_VIEWED, RecommendAction,
};
use fluxo::email::ports::{DelayedQueue, EmailLedger, EmailOutcome, EmailPeople, View};
use fluxo::email::recommend::{period_allows, pick};
use fluxo::email::{Contact, EmailPlatforms, EmailReceipt, Job, Operation, Platform};
use fluxo::error::{ErrorClass, Retryable};
use fluxo::idempotency::{effect_key, key_of};
use fluxo::ports::{Clock, QueueError, StoreError};
use fluxo::routing::fanout::{
    ActionError, ConsentSnapshot, EMAIL_ENROLL, EMAIL_UNSUBSCRIBE, EmailAction,
};
use fluxo::routing::{Claim, ProfileStore};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Function name in metrics.
const FUNCTION: &str = "email-trigger";
/// Product views kept per person.
const KEEP_VIEWS: usize = 50;

/// email-trigger and everything it talks to, built once per config version.
pub struct Trigger<S, P, Q, K> {
    /// The ledger and the per-person records.
    pub store: S,
    /// Profiles: whether a person is known, and their current consent.
    pub profiles: P,
    /// The email queue, for the delayed recommendation messages.
    pub queue: Q,
    pub clock: K,
    pub platforms: EmailPlatforms,
    /// The CRM connector of `[lead_router.crm]`: erasures delete the person there too.
    pub crm: fluxo::crm::Crm,
    /// Platform calls in flight at once, across the batch.
    pub calls: Arc<Semaphore>,
    /// How long a claim keeps a duplicate delivery away.
    pub lease: Duration,
    /// Version of the config, for logs.
    pub config_version: String,
}

/// Why one message failed; SQS redelivers it (and finally moves it to the DLQ).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Message(#[from] ActionError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Platform(#[from] ConnectorError),
    #[error("effect in flight in another delivery")]
    Busy,
    #[error("message has no body")]
    NoBody,
    #[error("not started before the function's deadline; SQS redelivers it")]
    Deadline,
}

impl Retryable for StepError {
    fn class(&self) -> ErrorClass {
        match self {
            StepError::Message(e) => e.class(),
            StepError::Store(e) => e.class(),
            StepError::Queue(e) => e.class(),
            StepError::Platform(e) => e.class(),
            StepError::Busy | StepError::Deadline => ErrorClass::Retryable,
            StepError::NoBody => ErrorClass::Permanent,
        }
    }
}

/// What a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done now, on these platforms.
    Done(Vec<Platform>),
    /// Done or failed for good by an earlier delivery.
    AlreadyHandled,
    /// Not done, on purpose, with the reason (`no_consent`, `unmapped`, `throttled`...).
    Skipped(String),
    /// Failed for good on a platform, with the reason (recorded, not retried).
    Failed(String),
    /// Kept (a view or a purchase), nothing sent.
    Recorded,
}

/// One platform's part of a job.
enum PlatformResult {
    Done(EmailReceipt),
    Already,
    Failed(String),
    Retry(StepError),
}

/// The effect key of one platform's part of an effect.
pub fn platform_key(effect: &str, platform: Platform) -> String {
    key_of("fluxo.email.platform.v1", &[effect, platform.as_str()])
}

/// The effect key of one call of a platform's part (`platform` is [`platform_key`]).
pub fn call_key(platform: &str, index: usize) -> String {
    key_of("fluxo.email.call.v1", &[platform, &index.to_string()])
}

/// Most calls one job makes on one platform (Mailchimp: member, tags, journey).
const MAX_CALLS: usize = 4;

/// The effect key of an enrollment (the router's, see `fluxo::routing::fanout::plan`).
pub fn enrollment_key(profile_key: &str, sequence: &str) -> String {
    effect_key(profile_key, &EmailAction::destination(sequence), "enroll")
}

/// The effect key of a window's recommendation.
pub fn recommendation_key(profile_key: &str, window_id: i64) -> String {
    effect_key(profile_key, "email:recommend", &window_id.to_string())
}

/// Masks anything that looks like an email in text bound for logs.
pub fn redact(text: &str) -> String {
    text.split(' ')
        .map(|w| if w.contains('@') { "[email]" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// When this invocation must stop starting new work: Lambda's deadline less the margin, or the function's
/// timeout from now when the deadline is implausible.
pub fn invocation_deadline(deadline_ms: u64, now: SystemTime) -> Deadline {
    let lambda = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let plausible = lambda
        .duration_since(now)
        .is_ok_and(|left| left > Duration::ZERO && left <= Duration::from_secs(15 * 60));
    if plausible {
        Deadline::from_epoch_millis(deadline_ms, DEADLINE_MARGIN, now)
    } else {
        Deadline::after(Duration::from_secs(FUNCTION_TIMEOUT_SECS).saturating_sub(DEADLINE_MARGIN))
    }
}

impl<S, P, Q, K> Trigger<S, P, Q, K>
where
    S: EmailLedger + EmailPeople,
    P: ProfileStore,
    Q: DelayedQueue,
    K: Clock,
{
    /// Handles one SQS batch without a deadline (tests, tools).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_until(event, Deadline::none()).await
    }

    /// Handles one SQS batch, its messages concurrently. The response lists only the messages SQS should
    /// redeliver.
    pub async fn handle_until(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let work: Vec<_> = event
            .records
            .iter()
            .map(|record| {
                let id = record.message_id.clone().unwrap_or_default();
                let span = tracing::info_span!("message", message_id = %id);
                let body = record.body.as_deref();
                async move { (id, self.process(body, deadline).await) }.instrument(span)
            })
            .collect();
        let results: Vec<_> = futures_util::stream::iter(work)
            .buffer_unordered(10)
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        let mut done = 0u64;
        for (id, result) in results {
            match result {
                Ok(handled) => {
                    if matches!(handled, Handled::Done(_)) {
                        done += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %redact(&e.to_string()), class = e.class().as_str(), "message failed; SQS will redeliver it");
                    if id.is_empty() {
                        tracing::error!("a failed message has no id and cannot be reported");
                    } else {
                        response.add_failure(id);
                    }
                }
            }
        }
        // The effects rows: after the work, bounded by the flush timeout, never failing the batch.
        fluxo::analytics::flush().await;
        let failed = response.batch_item_failures.len();
        tracing::info!(messages = event.records.len(), done, failed, config_version = %self.config_version, mode = self.platforms.mode(), "batch handled");
        fluxo::observability::count("Fluxo", FUNCTION, "EmailEffectsDone", done);
        if failed > 0 {
            fluxo::observability::count("Fluxo", FUNCTION, "BatchItemFailures", failed as u64);
        }
        response
    }

    /// One message.
    pub async fn process(
        &self,
        body: Option<&str>,
        deadline: Deadline,
    ) -> Result<Handled, StepError> {
        if deadline.passed() {
            return Err(StepError::Deadline);
        }
        let body = body.ok_or(StepError::NoBody)?;
        let handled = match EmailMessage::from_json(body)? {
            EmailMessage::Action(a) if a.header.kind == EMAIL_ENROLL => {
                let handled = self.enroll(&a, deadline).await?;
                if let Handled::Skipped(reason) = &handled {
                    let lead = a.header.lead_id.as_str();
                    let now = self.clock.now();
                    crate::analytics::skipped(
                        lead,
                        Some(a.sequence.as_str()),
                        "enroll",
                        reason,
                        now,
                    );
                }
                handled
            }
            EmailMessage::Action(a) if a.header.kind == EMAIL_UNSUBSCRIBE => {
                self.unsubscribe(&a, deadline).await?
            }
            EmailMessage::Action(a) => {
                tracing::warn!(kind = %a.header.kind, "unknown email action; dropped");
                Handled::Skipped(format!("unknown kind {}", a.header.kind))
            }
            EmailMessage::Commerce(e) => self.commerce(&e).await?,
            EmailMessage::Recommend(r) if r.kind == EMAIL_RECOMMEND => {
                self.recommend(&r, deadline).await?
            }
            EmailMessage::Recommend(r) => Handled::Skipped(format!("unknown kind {}", r.kind)),
        };
        tracing::info!(outcome = ?handled, "message handled");
        Ok(handled)
    }

    fn lease_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(60))
    }

    /// Claims an effect; `Ok(None)` when it was handled before.
    async fn claim(&self, key: &str, now: DateTime<Utc>) -> Result<Option<()>, StepError> {
        match self.store.claim(key, now, self.lease_until(now)).await? {
            Claim::Acquired => Ok(Some(())),
            Claim::Done | Claim::Failed(_) => Ok(None),
            Claim::Busy => Err(StepError::Busy),
        }
    }

    /// The person's current marketing consent, from their profile (`None`: not a known person).
    async fn consent_of(&self, profile_key: &str) -> Result<Option<ConsentSnapshot>, StepError> {
        Ok(self
            .profiles
            .load(profile_key)
            .await?
            .map(|p| ConsentSnapshot::of(&p.value)))
    }

    async fn skip(&self, key: &str, fp: &str, reason: &str) -> Result<Handled, StepError> {
        let now = self.clock.now();
        self.store
            .complete(
                key,
                fp,
                &EmailOutcome::Skipped(reason.to_string()),
                None,
                now,
            )
            .await?;
        Ok(Handled::Skipped(reason.to_string()))
    }

    async fn enroll(&self, action: &EmailAction, deadline: Deadline) -> Result<Handled, StepError> {
        let now = self.clock.now();
        let fp = action.header.email.fingerprint();
        if self.claim(&action.header.effect_key, now).await?.is_none() {
            return Ok(Handled::AlreadyHandled);
        }
        let Some(sequence) = self.platforms.sequence(&action.sequence).cloned() else {
            return self
                .skip(
                    &action.header.effect_key,
                    &fp,
                    &format!(
                        "unmapped: sequence {} has no [email_trigger.sequences] entry",
                        action.sequence
                    ),
                )
                .await;
        };
        let consent = match self.consent_of(&action.header.profile_key).await? {
            Some(c) => c,
            None => {
                return self
                    .skip(&action.header.effect_key, &fp, "unknown_person")
                    .await;
            }
        };
        if sequence.marketing && !consent.is_granted() {
            fluxo::observability::count("Fluxo", FUNCTION, "SkippedNoConsent", 1);
            return self
                .skip(&action.header.effect_key, &fp, "no_consent")
                .await;
        }
        let job = Job {
            key: action.header.effect_key.clone(),
            contact: Contact {
                email: action.header.email.clone(),
                first_name: action.first_name.clone(),
                last_name: action.last_name.clone(),
            },
            operation: Operation::Enroll {
                sequence: action.sequence.clone(),
                consent,
            },
        };
        self.run_job(
            &job,
            action.header.lead_id.as_str(),
            &action.header.profile_key,
            &fp,
            &sequence.platforms(),
            Some(&action.sequence),
            deadline,
        )
        .await
    }

    async fn unsubscribe(
        &self,
        action: &EmailAction,
        deadline: Deadline,
    ) -> Result<Handled, StepError> {
        let now = self.clock.now();
        let fp = action.header.email.fingerprint();
        if self.claim(&action.header.effect_key, now).await?.is_none() {
            return Ok(Handled::AlreadyHandled);
        }
        let record = self
            .store
            .load(&action.header.profile_key)
            .await?
            .unwrap_or_default();
        let platforms: Vec<Platform> = record.platforms.iter().copied().collect();
        let job = Job {
            key: action.header.effect_key.clone(),
            contact: Contact {
                email: action.header.email.clone(),
                first_name: None,
                last_name: None,
            },
            operation: Operation::Unsubscribe {
                reason: action
                    .header
                    .reason
                    .clone()
                    .unwrap_or_else(|| "withdrawal".into()),
            },
        };
        let handled = self
            .run_job(
                &job,
                action.header.lead_id.as_str(),
                &action.header.profile_key,
                &fp,
                &platforms,
                None,
                deadline,
            )
            .await?;
        // A later grant enrolls the person again: forget their enrollments.
        if matches!(handled, Handled::Done(_)) {
            for sequence in &record.sequences {
                self.forget_effect(&enrollment_key(&action.header.profile_key, sequence))
                    .await?;
            }
        }
        Ok(handled)
    }

    /// Runs a job on each platform (each its own effect), then completes the job's effect: done when every
    /// platform answered, failed when one refused for good; released (and the message retried) when one
    /// failed in a way worth retrying.
    #[allow(clippy::too_many_arguments)]
    async fn run_job(
        &self,
        job: &Job,
        lead_id: &str,
        profile_key: &str,
        fp: &str,
        platforms: &[Platform],
        sequence: Option<&str>,
        deadline: Deadline,
    ) -> Result<Handled, StepError> {
        let parts = futures_util::future::join_all(platforms.iter().map(|p| async move {
            let started = std::time::Instant::now();
            let part = self.on_platform(*p, job, fp, deadline).await;
            (part, started.elapsed())
        }))
        .await;
        let now = self.clock.now();
        for (platform, (part, latency)) in platforms.iter().zip(&parts) {
            use crate::analytics::PlatformOutcome as O;
            let outcome = match part {
                PlatformResult::Done(_) => O::Done,
                PlatformResult::Failed(_) => O::Failed,
                PlatformResult::Retry(_) => O::Retrying,
                // Done by an earlier delivery, which emitted its row.
                PlatformResult::Already => continue,
            };
            let action = job.operation.name();
            crate::analytics::platform(
                lead_id, sequence, action, *platform, outcome, *latency, now,
            );
        }
        let parts = parts.into_iter().map(|(part, _)| part);
        let mut done = Vec::new();
        let mut failures = Vec::new();
        let mut retry = None;
        let mut detail = BTreeMap::new();
        for (platform, part) in platforms.iter().zip(parts) {
            match part {
                PlatformResult::Done(receipt) => {
                    done.push(*platform);
                    detail.insert(platform.as_str(), receipt);
                }
                PlatformResult::Already => done.push(*platform),
                PlatformResult::Failed(reason) => {
                    failures.push(format!("{}: {reason}", platform.as_str()))
                }
                PlatformResult::Retry(e) => retry = Some(e),
            }
        }
        let now = self.clock.now();
        self.store
            .add_platforms(
                profile_key,
                fp,
                &done,
                sequence.filter(|_| !done.is_empty()),
                now,
            )
            .await?;
        if let Some(e) = retry {
            self.store.release(&job.key).await?;
            return Err(e);
        }
        let detail = serde_json::to_string(&detail).ok();
        if failures.is_empty() {
            self.store
                .complete(
                    &job.key,
                    fp,
                    &EmailOutcome::Done {
                        platforms: done.clone(),
                    },
                    detail,
                    now,
                )
                .await?;
            Ok(Handled::Done(done))
        } else {
            let reason = failures.join("; ");
            self.store
                .complete(
                    &job.key,
                    fp,
                    &EmailOutcome::Failed(reason.clone()),
                    detail,
                    now,
                )
                .await?;
            fluxo::observability::count("Fluxo", FUNCTION, "EmailPermanentFailures", 1);
            Ok(Handled::Failed(reason))
        }
    }

    /// One platform's part of a job, as its own effect, and each of its calls as an effect too: a retry
    /// resumes after the last call that answered, so even a call that is not idempotent (a journey
    /// trigger, an RD Station conversion) is made once.
    async fn on_platform(
        &self,
        platform: Platform,
        job: &Job,
        fp: &str,
        deadline: Deadline,
    ) -> PlatformResult {
        let key = platform_key(&job.key, platform);
        let now = self.clock.now();
        match self.store.claim(&key, now, self.lease_until(now)).await {
            Ok(Claim::Acquired) => {}
            Ok(Claim::Done) => return PlatformResult::Already,
            Ok(Claim::Failed(reason)) => return PlatformResult::Failed(reason),
            Ok(Claim::Busy) => return PlatformResult::Retry(StepError::Busy),
            Err(e) => return PlatformResult::Retry(e.into()),
        }
        let calls = match self.platforms.calls(platform, job) {
            Ok(calls) => calls,
            Err(reason) => return self.platform_failed(&key, fp, platform, reason).await,
        };
        let mut receipt = if calls.is_empty() {
            EmailPlatforms::nothing_to_send(platform, job)
        } else {
            EmailReceipt::default()
        };
        let mut notes: Vec<String> = receipt.note.take().into_iter().collect();
        for (i, call) in calls.iter().enumerate() {
            let ckey = call_key(&key, i);
            let now = self.clock.now();
            match self.store.claim(&ckey, now, self.lease_until(now)).await {
                Ok(Claim::Acquired) => {}
                Ok(Claim::Done) => continue,
                Ok(Claim::Failed(reason)) => {
                    return self.platform_failed(&key, fp, platform, reason).await;
                }
                Ok(Claim::Busy) => return self.platform_retry(&key, StepError::Busy).await,
                Err(e) => return self.platform_retry(&key, e.into()).await,
            }
            let result = {
                let Ok(_permit) = self.calls.acquire().await else {
                    return self.platform_retry(&key, StepError::Busy).await;
                };
                self.platforms.send(platform, call, deadline).await
            };
            let now = self.clock.now();
            match result {
                Ok(one) => {
                    let detail = serde_json::to_string(&one).ok();
                    let done = EmailOutcome::Done {
                        platforms: vec![platform],
                    };
                    if let Err(e) = self.store.complete(&ckey, fp, &done, detail, now).await {
                        return self.platform_retry(&key, e.into()).await;
                    }
                    receipt.dry_run.extend(one.dry_run);
                    notes.extend(one.note);
                }
                Err(e) if !e.is_retryable() => {
                    let reason = e.reason().to_string();
                    let failed = EmailOutcome::Failed(reason.clone());
                    if let Err(e) = self.store.complete(&ckey, fp, &failed, None, now).await {
                        return self.platform_retry(&key, e.into()).await;
                    }
                    return self.platform_failed(&key, fp, platform, reason).await;
                }
                Err(e) => {
                    if let Err(release) = self.store.release(&ckey).await {
                        tracing::warn!(error = %release, "could not release the call's claim; it expires with its lease");
                    }
                    return self.platform_retry(&key, e.into()).await;
                }
            }
        }
        receipt.note = (!notes.is_empty()).then(|| notes.join("; "));
        tracing::info!(
            platform = platform.as_str(),
            operation = job.operation.name(),
            dry_run = !receipt.dry_run.is_empty(),
            "platform done"
        );
        let detail = serde_json::to_string(&receipt).ok();
        let done = EmailOutcome::Done {
            platforms: vec![platform],
        };
        match self
            .store
            .complete(&key, fp, &done, detail, self.clock.now())
            .await
        {
            Ok(()) => PlatformResult::Done(receipt),
            Err(e) => PlatformResult::Retry(e.into()),
        }
    }

    async fn platform_failed(
        &self,
        key: &str,
        fp: &str,
        platform: Platform,
        reason: String,
    ) -> PlatformResult {
        tracing::warn!(platform = platform.as_str(), error = %redact(&reason), "platform refused; recorded, not retried");
        let failed = EmailOutcome::Failed(reason.clone());
        match self
            .store
            .complete(key, fp, &failed, None, self.clock.now())
            .await
        {
            Ok(()) => PlatformResult::Failed(reason),
            Err(e) => PlatformResult::Retry(e.into()),
        }
    }

    async fn platform_retry(&self, key: &str, error: StepError) -> PlatformResult {
        if let Err(release) = self.store.release(key).await {
            tracing::warn!(error = %release, "could not release the claim; it expires with its lease");
        }
        PlatformResult::Retry(error)
    }

    /// Forgets an effect, its platforms' parts and their calls.
    async fn forget_effect(&self, key: &str) -> Result<(), StoreError> {
        for platform in Platform::ALL {
            let pkey = platform_key(key, platform);
            for i in 0..MAX_CALLS {
                self.store.forget(&call_key(&pkey, i)).await?;
            }
            self.store.forget(&pkey).await?;
        }
        self.store.forget(key).await
    }

    /// Resolves who an e-commerce event is about: the email's profile key, else the linked customer id.
    async fn person_of(&self, event: &CommerceEvent) -> Result<Option<String>, StepError> {
        if let Some(email) = &event.email {
            let key = email.sha256_hex();
            if let Some(customer) = &event.customer_id {
                self.store
                    .link_customer(customer, &key, &email.fingerprint())
                    .await?;
            }
            return Ok(Some(key));
        }
        match &event.customer_id {
            Some(customer) => Ok(self.store.customer(customer).await?),
            None => Ok(None),
        }
    }

    async fn commerce(&self, event: &CommerceEvent) -> Result<Handled, StepError> {
        let config = &self.platforms.config().recommendations;
        let Some(profile_key) = self.person_of(event).await? else {
            return Ok(Handled::Skipped("unknown_person".into()));
        };
        // Only known people: the profile gives the fingerprint every record carries.
        let Some(profile) = self.profiles.load(&profile_key).await? else {
            return Ok(Handled::Skipped("unknown_person".into()));
        };
        let fp = profile.value.email.fingerprint();
        let now = self.clock.now();
        match event.kind.as_str() {
            ORDER_COMPLETED => {
                let ids: Vec<String> = event.products.iter().map(|p| p.id.clone()).collect();
                self.store
                    .record_purchase(&profile_key, &fp, &ids, now)
                    .await?;
                Ok(Handled::Recorded)
            }
            PRODUCT_VIEWED if config.enabled => {
                let window =
                    chrono::Duration::seconds(i64::try_from(config.window_secs).unwrap_or(900));
                let mut open = None;
                for (i, product) in event.products.iter().enumerate() {
                    let view = View {
                        event_id: format!("{}#{i}", event.event_id),
                        at: event.occurred_at,
                        product: product.clone(),
                    };
                    open = Some(
                        self.store
                            .record_view(&profile_key, &fp, &view, KEEP_VIEWS, window, now)
                            .await?,
                    );
                }
                if let Some(w) = open.filter(|w| !w.scheduled) {
                    let message = RecommendAction {
                        version: RecommendAction::VERSION,
                        kind: EMAIL_RECOMMEND.to_string(),
                        profile_key: profile_key.clone(),
                        window_id: w.id,
                    };
                    let body = serde_json::to_string(&message)
                        .map_err(|e| QueueError::Rejected(e.to_string()))?;
                    let delay = (w.until - now).to_std().unwrap_or(Duration::ZERO);
                    self.queue.send_delayed(&body, delay).await?;
                    self.store.mark_scheduled(&profile_key, w.id).await?;
                    tracing::info!(
                        window_secs = delay.as_secs(),
                        "view window opened; its recommendation is scheduled"
                    );
                }
                Ok(Handled::Recorded)
            }
            _ => Ok(Handled::Skipped("recommendations disabled".into())),
        }
    }

    async fn recommend(
        &self,
        action: &RecommendAction,
        deadline: Deadline,
    ) -> Result<Handled, StepError> {
        let config = self.platforms.config().recommendations.clone();
        let key = recommendation_key(&action.profile_key, action.window_id);
        let now = self.clock.now();
        if self.claim(&key, now).await?.is_none() {
            return Ok(Handled::AlreadyHandled);
        }
        let Some(profile) = self.profiles.load(&action.profile_key).await? else {
            return self.skip(&key, "", "unknown_person").await;
        };
        let profile = profile.value;
        let fp = profile.email.fingerprint();
        if !profile.has_marketing_consent() {
            return self.skip(&key, &fp, "no_consent").await;
        }
        let record = self
            .store
            .load(&action.profile_key)
            .await?
            .unwrap_or_default();
        let period = chrono::Duration::hours(i64::try_from(config.period_hours).unwrap_or(24));
        if !period_allows(record.last_recommended_at, period, now) {
            return self.skip(&key, &fp, "throttled").await;
        }
        let products = pick(&record.views, &record.bought, config.max_products);
        if products.is_empty() {
            return self.skip(&key, &fp, "no_products").await;
        }
        let job = Job {
            key: key.clone(),
            contact: Contact {
                email: profile.email.clone(),
                first_name: profile.display_first_name().map(str::to_string),
                last_name: profile.field("last_name").map(str::to_string),
            },
            operation: Operation::Recommend {
                event_name: config.event_name.clone(),
                products,
                at: now,
            },
        };
        let handled = self
            .run_job(
                &job,
                profile.last_touch.lead_id.as_str(),
                &action.profile_key,
                &fp,
                &config.platforms,
                None,
                deadline,
            )
            .await?;
        if matches!(handled, Handled::Done(_)) {
            self.store
                .mark_recommended(&action.profile_key, now)
                .await?;
        }
        Ok(handled)
    }
}
