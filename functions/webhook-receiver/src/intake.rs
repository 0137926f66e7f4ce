//! The intake pipeline: parse -> validate -> normalize -> conditional write -> queue; and the sweep that
//! queues every stored lead a request could not queue. No HTTP here: `web.rs` turns requests into
//! [`Inbound`] and [`Answer`]s into responses.

use chrono::{DateTime, Duration, Utc};
use fluxo::domain::intake::{self, FieldProblem, IntakeSettings, Submission};
use fluxo::domain::{Lead, LeadId};
use fluxo::envelope::LeadEnvelope;
use fluxo::idempotency;
use fluxo::observability;
use fluxo::ports::{
    Clock, CreateOutcome, DedupWindow, EventStore, IntakeRecord, IntakeStatus, IntakeStore,
    LeadQueue, MessageQueue, Randomness, RawRequest, StoreError,
};
use http::StatusCode;

use fluxo::sources::ports::{NoticeInbox, ReplayGuard};

use crate::body::{self, BodyError};
use crate::events::{EventPorts, NoEvents};
use crate::setup::Settings;
use crate::sources::NoSourceStore;

pub(crate) const FUNCTION: &str = "webhook-receiver";
pub(crate) const NAMESPACE: &str = "Fluxo";
/// Most stored leads one sweep re-queues; the next sweep takes the rest, oldest first.
const SWEEP_BATCH: usize = 100;
/// SQS's limit on one message, attributes included.
const SQS_MESSAGE_LIMIT: usize = 256 * 1024;
/// DynamoDB's limit on one item, attribute names included.
const DYNAMODB_ITEM_LIMIT: usize = 400 * 1024;
/// Room for the message attributes, the item's other attributes and their names.
const SIZE_MARGIN: usize = 4 * 1024;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Stored leads not yet queued that the sweep looked at.
    pub found: usize,
    /// Of those, the ones it queued now.
    pub queued: usize,
    /// Leads still not queued after this sweep that were received longer than `UNQUEUED_ALERT_SECS`
    /// ago (the `LeadsUnqueued` metric).
    pub overdue: usize,
    /// Stored e-commerce events (`POST /events`) not yet on the email queue that the sweep looked at.
    pub events_found: usize,
    /// Of those, the ones it queued now.
    pub events_queued: usize,
    /// Events still not queued received longer than `UNQUEUED_ALERT_SECS` ago (`EventsUnqueued`).
    pub events_overdue: usize,
}

/// Header names that may carry secrets; they are never stored with the raw request.
pub(crate) fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "x-amz-security-token"
    ) || ["token", "secret", "signature", "password", "auth"]
        .iter()
        .any(|s| name.contains(s))
}

/// The receiver and the ports it writes through. Built once at cold start. `P` keeps the signed
/// sources' replay markers and lead-ad notices ([`NoSourceStore`] when none is wired); `E` holds the
/// e-commerce events' store and the email queue ([`EventPorts`], of [`NoEvents`] when none is wired).
pub struct Receiver<S, Q, C, R, P = NoSourceStore, E = EventPorts<NoEvents, NoEvents>> {
    pub(crate) settings: Settings,
    pub(crate) intake: IntakeSettings,
    pub(crate) store: S,
    pub(crate) queue: Q,
    pub(crate) clock: C,
    pub(crate) random: R,
    pub(crate) source_store: P,
    pub(crate) events: E,
}

/// A request as the pipeline sees it: no HTTP types, only what it stores and reads.
#[derive(Debug, Clone)]
pub(crate) struct Inbound<'a> {
    /// The validated `{source}` path segment, `None` for `/leads`.
    pub endpoint: Option<String>,
    pub content_type: Option<&'a str>,
    /// Every header that carries no secret, as kept with the raw request.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// The trimmed, non-empty `Idempotency-Key` header.
    pub idempotency_key: Option<&'a str>,
}

/// How a request ended, before it becomes a response.
#[derive(Debug)]
pub(crate) enum Answer {
    Accepted {
        lead_id: LeadId,
        replayed: bool,
    },
    Rejected {
        status: StatusCode,
        message: String,
        fields: Vec<FieldProblem>,
    },
    /// Nothing was stored: the client must retry.
    Unavailable,
}

impl Answer {
    pub(crate) fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        Answer::Rejected {
            status,
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

/// A lead ready to be stored: the record's key, its de-duplication window, and what the client sent.
pub(crate) struct Candidate<'a> {
    pub key: String,
    pub dedup: Option<DedupWindow>,
    /// An `Idempotency-Key` (or a platform's own id) names the request: reusing it for other content
    /// is a `422`.
    pub keyed: bool,
    pub lead: Lead,
    pub fingerprint: String,
    pub lead_id: LeadId,
    pub received_at: DateTime<Utc>,
    pub inbound: &'a Inbound<'a>,
    /// Store it, and do not queue it (a platform's test lead its source does not forward).
    pub hold: bool,
}

impl<S, Q, C, R> Receiver<S, Q, C, R>
where
    S: IntakeStore,
    Q: LeadQueue,
    C: Clock,
    R: Randomness,
{
    /// Wires the receiver, for forms only (no store for the signed sources).
    pub fn new(settings: Settings, store: S, queue: Q, clock: C, random: R) -> Self {
        let intake = settings.intake_settings();
        Receiver {
            settings,
            intake,
            store,
            queue,
            clock,
            random,
            source_store: NoSourceStore,
            events: EventPorts {
                store: NoEvents,
                queue: NoEvents,
            },
        }
    }

    /// Adds the store of the signed sources (replay markers, lead-ad notices).
    pub fn with_source_store<P>(self, source_store: P) -> Receiver<S, Q, C, R, P>
    where
        P: ReplayGuard + NoticeInbox,
    {
        Receiver {
            settings: self.settings,
            intake: self.intake,
            store: self.store,
            queue: self.queue,
            clock: self.clock,
            random: self.random,
            source_store,
            events: self.events,
        }
    }
}

impl<S, Q, C, R, P> Receiver<S, Q, C, R, P> {
    /// Adds the e-commerce events' store and the email queue `POST /events` writes to.
    pub fn with_events<St, Mq>(
        self,
        store: St,
        queue: Mq,
    ) -> Receiver<S, Q, C, R, P, EventPorts<St, Mq>>
    where
        St: EventStore,
        Mq: MessageQueue,
    {
        Receiver {
            settings: self.settings,
            intake: self.intake,
            store: self.store,
            queue: self.queue,
            clock: self.clock,
            random: self.random,
            source_store: self.source_store,
            events: EventPorts { store, queue },
        }
    }
}

impl<S, Q, C, R, P, ES, EQ> Receiver<S, Q, C, R, P, EventPorts<ES, EQ>>
where
    S: IntakeStore,
    Q: LeadQueue,
    C: Clock,
    R: Randomness,
    P: ReplayGuard + NoticeInbox,
    ES: EventStore,
    EQ: MessageQueue,
{
    /// Decodes and normalizes a form's body. `Err` is the answer for a body that is refused.
    pub(crate) async fn parse_form(
        &self,
        inbound: &Inbound<'_>,
        received_at: DateTime<Utc>,
    ) -> Result<Submission, Answer> {
        if inbound.body.len() > self.settings.max_body_bytes {
            return Err(self.too_large());
        }
        let fields = match body::decode(inbound.content_type, inbound.body).await {
            Ok(fields) => fields,
            Err(e @ (BodyError::UnsupportedMediaType | BodyError::MissingContentType)) => {
                return Err(Answer::rejected(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    e.to_string(),
                ));
            }
            Err(e) => return Err(Answer::rejected(StatusCode::BAD_REQUEST, e.to_string())),
        };
        intake::normalize(
            &fields,
            inbound.endpoint.as_deref(),
            received_at,
            &self.intake,
        )
        .map_err(|fields| Answer::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: "invalid lead".into(),
            fields,
        })
    }

    /// The `413` of a body over `MAX_BODY_BYTES`.
    pub(crate) fn too_large(&self) -> Answer {
        Answer::rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {} bytes", self.settings.max_body_bytes),
        )
    }

    /// Stores and queues a normalized form submission (spam is answered as accepted, and dropped).
    pub(crate) async fn accept_form(
        &self,
        submission: Submission,
        inbound: &Inbound<'_>,
        received_at: DateTime<Utc>,
    ) -> Answer {
        let (lead, fingerprint) = match submission {
            Submission::Spam { .. } => {
                observability::count(NAMESPACE, FUNCTION, "SpamRejected", 1);
                tracing::info!("honeypot filled; answered as accepted, nothing stored");
                let decoy = LeadId::new(received_at, self.random.random_u128());
                return Answer::Accepted {
                    lead_id: decoy,
                    replayed: false,
                };
            }
            Submission::Lead {
                lead, fingerprint, ..
            } => (*lead, fingerprint),
        };
        if inbound.idempotency_key.is_some_and(|k| k.len() > 255) {
            return Answer::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "invalid Idempotency-Key".into(),
                fields: vec![FieldProblem {
                    field: "Idempotency-Key".into(),
                    problem: "is longer than 255 characters".into(),
                }],
            };
        }
        let lead_id = LeadId::new(received_at, self.random.random_u128());
        // With a key, the key is the request. Without one, each submission is a record of its own, and a
        // marker keyed by what the client sent makes identical ones inside the window one request.
        let (key, dedup) = match inbound.idempotency_key {
            Some(k) => (idempotency::request_key_from_header(k), None),
            None => {
                let content_key = intake::content_dedup_key(&fingerprint);
                let window = i64::try_from(self.settings.dedup_window_secs).unwrap_or(i64::MAX);
                let dedup = (window > 0).then(|| DedupWindow {
                    key: content_key.clone(),
                    until: received_at
                        .checked_add_signed(Duration::seconds(window))
                        .unwrap_or(received_at),
                });
                (format!("{content_key}.{lead_id}"), dedup)
            }
        };
        self.store_lead(Candidate {
            key,
            dedup,
            keyed: inbound.idempotency_key.is_some(),
            lead,
            fingerprint,
            lead_id,
            received_at,
            inbound,
            hold: false,
        })
        .await
    }

    /// Writes the record (raw request + envelope) conditionally and queues it. A record already there
    /// under the same key is a replay: answered with its lead id, queued by whoever holds its claim.
    pub(crate) async fn store_lead(&self, candidate: Candidate<'_>) -> Answer {
        let Candidate {
            key,
            dedup,
            keyed,
            lead,
            fingerprint: content_hash,
            lead_id,
            received_at,
            inbound,
            hold,
        } = candidate;
        let span =
            tracing::info_span!("lead", lead_id = %lead_id, email_fp = %lead.email.fingerprint());
        let _entered = span.enter();
        let envelope = LeadEnvelope::new(
            lead_id.clone(),
            key.clone(),
            received_at,
            inbound.endpoint.clone(),
            lead,
        );
        let record = IntakeRecord {
            key: key.clone(),
            lead_id: lead_id.clone(),
            content_hash: content_hash.clone(),
            raw: RawRequest {
                body: inbound.body.to_vec(),
                content_type: inbound.content_type.map(str::to_string),
                headers: inbound.headers.clone(),
                received_at,
            },
            envelope,
            expires_at: (received_at + Duration::days(i64::from(self.settings.raw_retention_days)))
                .timestamp(),
        };
        if let Err(problem) = storable(&record) {
            return Answer::rejected(StatusCode::PAYLOAD_TOO_LARGE, problem);
        }
        let claim_until =
            received_at + Duration::seconds(i64::from(self.settings.enqueue_claim_secs));

        match self
            .store
            .create(&record, claim_until, dedup.as_ref())
            .await
        {
            Ok(CreateOutcome::Created) if hold => {
                // A test lead its source does not forward: kept, marked as a test, never queued.
                if let Err(e) = self.store.mark_queued(&key).await {
                    tracing::warn!(error = %e, "marking a held test lead failed; the sweep may queue it, marked as a test");
                }
                observability::count(NAMESPACE, FUNCTION, "TestLeadHeld", 1);
                Answer::Accepted {
                    lead_id,
                    replayed: false,
                }
            }
            Ok(CreateOutcome::Created) => self.enqueue(&key, &record.envelope, false).await,
            Ok(CreateOutcome::Exists(existing)) => {
                if keyed && existing.content_hash != content_hash {
                    return Answer::Rejected {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        message: "Idempotency-Key was already used for a different lead".into(),
                        fields: vec![],
                    };
                }
                match existing.status {
                    IntakeStatus::Queued => {
                        observability::count(NAMESPACE, FUNCTION, "LeadReplayed", 1);
                        tracing::info!(lead_id = %existing.lead_id, "duplicate request; already queued");
                        Answer::Accepted {
                            lead_id: existing.lead_id,
                            replayed: true,
                        }
                    }
                    IntakeStatus::Stored => {
                        // Stored is durable: whoever holds the claim, or the sweep, queues it.
                        let existing_key = existing.envelope.idempotency_key.clone();
                        match self
                            .store
                            .claim(&existing_key, received_at, claim_until)
                            .await
                        {
                            Ok(true) => self.enqueue(&existing_key, &existing.envelope, true).await,
                            Ok(false) => {
                                tracing::info!(lead_id = %existing.lead_id, "duplicate request; the lead is being queued");
                                Answer::Accepted {
                                    lead_id: existing.lead_id,
                                    replayed: true,
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "claiming a stored lead failed; the sweep queues it");
                                Answer::Accepted {
                                    lead_id: existing.lead_id,
                                    replayed: true,
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = fluxo::Retryable::is_retryable(&e), "storing the lead failed; nothing was stored");
                Answer::Unavailable
            }
        }
    }

    /// Queues every stored lead that its request could not queue (the queue was down, the function timed
    /// out): the lead reaches the leads queue with no client retry. Runs once a minute.
    ///
    /// A lead whose request still holds the enqueue claim is left to it. The `LeadsUnqueued` metric
    /// counts leads still not queued that were received longer than `UNQUEUED_ALERT_SECS` ago.
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let now = self.clock.now();
        let claim_until = now + Duration::seconds(i64::from(self.settings.enqueue_claim_secs));
        let overdue_since = now - Duration::seconds(i64::from(self.settings.unqueued_alert_secs));
        let pending = self.store.unqueued(SWEEP_BATCH).await?;
        let mut report = SweepReport {
            found: pending.len(),
            ..SweepReport::default()
        };
        for lead in pending {
            match self.requeue(&lead.key, now, claim_until).await {
                Ok(true) => report.queued += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "re-queueing a stored lead failed"),
            }
        }
        // Counted after the attempts, from a fresh look: what is still waiting.
        if report.found > report.queued {
            report.overdue = match self.store.unqueued(SWEEP_BATCH).await {
                Ok(left) => left
                    .iter()
                    .filter(|l| l.received_at <= overdue_since)
                    .count(),
                Err(e) => {
                    tracing::error!(error = %e, "listing unqueued leads failed");
                    return Err(e);
                }
            };
        }
        // Events have their own records and queue; a failure there does not hold the leads back.
        match self.sweep_events(now, claim_until, overdue_since).await {
            Ok((found, queued, overdue)) => {
                report.events_found = found;
                report.events_queued = queued;
                report.events_overdue = overdue;
            }
            Err(e) => tracing::error!(error = %e, "sweeping stored events failed"),
        }
        observability::count(
            NAMESPACE,
            FUNCTION,
            "EventsSwept",
            report.events_queued as u64,
        );
        observability::count(
            NAMESPACE,
            FUNCTION,
            "EventsUnqueued",
            report.events_overdue as u64,
        );
        observability::count(NAMESPACE, FUNCTION, "LeadsSwept", report.queued as u64);
        observability::count(NAMESPACE, FUNCTION, "LeadsUnqueued", report.overdue as u64);
        if report.found > 0 || report.events_found > 0 {
            tracing::info!(
                found = report.found,
                queued = report.queued,
                overdue = report.overdue,
                events_found = report.events_found,
                events_queued = report.events_queued,
                events_overdue = report.events_overdue,
                "sweep of stored leads and events"
            );
        }
        Ok(report)
    }

    /// Queues one stored lead if nobody else holds its claim. `Ok(true)` when it is on the queue.
    async fn requeue(
        &self,
        key: &str,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if !self.store.claim(key, now, claim_until).await? {
            return Ok(false);
        }
        let Some(existing) = self.store.load(key).await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("lead", lead_id = %existing.lead_id);
        let _entered = span.enter();
        if let Err(e) = self.queue.send_lead(&existing.envelope).await {
            observability::count(NAMESPACE, FUNCTION, "QueueSendFailed", 1);
            tracing::error!(error = %e, "queueing a stored lead failed; the next sweep retries");
            if let Err(e) = self.store.release_claim(key).await {
                tracing::warn!(error = %e, "releasing the enqueue claim failed; it expires on its own");
            }
            return Ok(false);
        }
        if let Err(e) = self.store.mark_queued(key).await {
            tracing::warn!(error = %e, "marking the lead as queued failed; it may be queued again, and the router dedups by lead id");
        }
        tracing::info!("stored lead queued by the sweep");
        Ok(true)
    }

    /// Sends the stored envelope and marks it queued. On failure the claim is dropped so a retry can
    /// finish the job at once.
    async fn enqueue(&self, key: &str, envelope: &LeadEnvelope, replayed: bool) -> Answer {
        if !replayed {
            // Analytics (the lake's `leads` table): the stored lead is accepted; its record is sent
            // beside the queue send and never delays or fails the answer.
            fluxo::analytics::emit([fluxo::analytics::Record::Leads(
                fluxo::analytics::LeadRecord::of(envelope),
            )]);
        }
        let (sent, ()) = tokio::join!(self.queue.send_lead(envelope), fluxo::analytics::flush());
        if let Err(e) = sent {
            // The lead is durable: answer 202 and let the sweep queue it within a minute or two.
            observability::count(NAMESPACE, FUNCTION, "QueueSendFailed", 1);
            tracing::error!(error = %e, "queueing the lead failed; the sweep queues the stored lead");
            if let Err(e) = self.store.release_claim(key).await {
                tracing::warn!(error = %e, "releasing the enqueue claim failed; it expires on its own");
            }
            return Answer::Accepted {
                lead_id: envelope.lead_id.clone(),
                replayed,
            };
        }
        if let Err(e) = self.store.mark_queued(key).await {
            // The lead is queued; a later duplicate may queue it again, and the router dedups by lead id.
            tracing::warn!(error = %e, "marking the lead as queued failed");
        }
        observability::count(NAMESPACE, FUNCTION, "LeadAccepted", 1);
        tracing::info!(lead_id = %envelope.lead_id, replayed, "lead stored and queued");
        Answer::Accepted {
            lead_id: envelope.lead_id.clone(),
            replayed,
        }
    }
}

/// Whether a record fits the services that must hold it: its envelope in one SQS message, the envelope
/// and the raw request in one DynamoDB item. The problem names the limit, never the content.
fn storable(record: &IntakeRecord) -> Result<(), String> {
    let envelope = serde_json::to_string(&record.envelope).map_or(usize::MAX, |j| j.len());
    if envelope.saturating_add(SIZE_MARGIN) > SQS_MESSAGE_LIMIT {
        return Err(
            "the lead is too large to queue (its fields exceed 252 KiB once normalized)".into(),
        );
    }
    let headers: usize = record
        .raw
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let item = record.raw.body.len() + envelope + headers + SIZE_MARGIN;
    if item > DYNAMODB_ITEM_LIMIT {
        return Err(
            "the lead is too large to store (body and normalized fields exceed 396 KiB)".into(),
        );
    }
    Ok(())
}
