//! The receiver: verify -> parse -> validate -> normalize -> conditional write -> queue -> answer; and the
//! sweep that queues every stored lead a request could not queue.

use chrono::Duration;
use fluxo::domain::LeadId;
use fluxo::domain::intake::{self, FieldProblem, IntakeSettings, Submission};
use fluxo::envelope::LeadEnvelope;
use fluxo::idempotency;
use fluxo::observability;
use fluxo::ports::{
    Clock, CreateOutcome, DedupWindow, IntakeRecord, IntakeStatus, IntakeStore, LeadQueue,
    Randomness, RawRequest, StoreError,
};
use http::{HeaderMap, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::body::{self, BodyError};
use crate::config::ReceiverConfig;
use crate::cors::{Origin, RedirectTarget};
use crate::response::{self, AcceptedBody};

const FUNCTION: &str = "webhook-receiver";
const NAMESPACE: &str = "Fluxo";
const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const ALLOWED_METHODS: &str = "POST, OPTIONS";
const ALLOWED_HEADERS: &str = "content-type, idempotency-key";
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
}

/// Header names that may carry secrets; they are never stored with the raw request.
fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "x-amz-security-token"
    ) || ["token", "secret", "signature", "password", "auth"]
        .iter()
        .any(|s| name.contains(s))
}

/// The receiver and the ports it writes through. Built once at cold start.
pub struct Receiver<S, Q, C, R> {
    config: ReceiverConfig,
    intake: IntakeSettings,
    store: S,
    queue: Q,
    clock: C,
    random: R,
}

/// How a request ended, before it becomes a response.
enum Answer {
    Accepted {
        lead_id: LeadId,
        replayed: bool,
        redirect: Option<String>,
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
    fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        Answer::Rejected {
            status,
            message: message.into(),
            fields: Vec::new(),
        }
    }
}

impl<S, Q, C, R> Receiver<S, Q, C, R>
where
    S: IntakeStore,
    Q: LeadQueue,
    C: Clock,
    R: Randomness,
{
    /// Wires the receiver.
    pub fn new(config: ReceiverConfig, store: S, queue: Q, clock: C, random: R) -> Self {
        let intake = config.intake_settings();
        Receiver {
            config,
            intake,
            store,
            queue,
            clock,
            random,
        }
    }

    /// Handles one HTTP request. Never fails: every outcome is an HTTP answer.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|v| Origin::parse(v).ok_or(()));
        let allowed_origin = match &origin {
            Some(Ok(o)) if self.config.allowed_origins.allows(o) => Some(o.clone()),
            _ => None,
        };

        let mut response = if request.method() == Method::OPTIONS {
            self.preflight(allowed_origin.is_some(), origin.is_some())
        } else if request.method() != Method::POST {
            let mut r = response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; use POST",
                &[],
            );
            response::set(&mut r, header::ALLOW, ALLOWED_METHODS);
            r
        } else if origin.is_some()
            && allowed_origin.is_none()
            && self.config.allowed_origins.is_set()
        {
            observability::count(NAMESPACE, FUNCTION, "OriginRejected", 1);
            response::error(StatusCode::FORBIDDEN, "origin not allowed", &[])
        } else {
            let wants_html = accepts_html(request.headers());
            let answer = self.receive(&request).await;
            self.render(answer, wants_html)
        };

        if let Some(o) = &allowed_origin {
            response::set(
                &mut response,
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                o.as_str(),
            );
            response::set(
                &mut response,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "idempotent-replayed",
            );
        }
        if self.config.allowed_origins.is_set() {
            response::set(&mut response, header::VARY, "Origin");
        }
        response::harden(&mut response);
        response
    }

    fn preflight(&self, allowed: bool, has_origin: bool) -> Response<Body> {
        if has_origin && !allowed {
            return response::error(StatusCode::FORBIDDEN, "origin not allowed", &[]);
        }
        let mut r = response::with_body(StatusCode::NO_CONTENT, Body::Empty);
        response::set(&mut r, header::ALLOW, ALLOWED_METHODS);
        if allowed {
            response::set(
                &mut r,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                ALLOWED_METHODS,
            );
            response::set(
                &mut r,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                ALLOWED_HEADERS,
            );
            response::set(&mut r, header::ACCESS_CONTROL_MAX_AGE, "600");
        }
        r
    }

    fn render(&self, answer: Answer, wants_html: bool) -> Response<Body> {
        match answer {
            Answer::Accepted {
                lead_id,
                replayed,
                redirect,
            } => {
                let mut r = match redirect.filter(|_| wants_html) {
                    Some(target) => {
                        let mut r = response::with_body(StatusCode::SEE_OTHER, Body::Empty);
                        response::set(&mut r, header::LOCATION, &target);
                        r
                    }
                    None => response::json(
                        StatusCode::ACCEPTED,
                        &AcceptedBody {
                            lead_id: lead_id.as_str(),
                            status: "accepted",
                        },
                    ),
                };
                if replayed {
                    response::set(
                        &mut r,
                        http::HeaderName::from_static("idempotent-replayed"),
                        "true",
                    );
                }
                r
            }
            Answer::Rejected {
                status,
                message,
                fields,
            } => {
                observability::count(NAMESPACE, FUNCTION, "LeadRejected", 1);
                response::error(status, &message, &fields)
            }
            Answer::Unavailable => {
                let mut r = response::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the lead could not be stored; nothing was kept; retry the same request",
                    &[],
                );
                response::set(&mut r, header::RETRY_AFTER, "1");
                r
            }
        }
    }

    async fn receive(&self, request: &Request) -> Answer {
        let endpoint = match endpoint_source(request) {
            Ok(source) => source,
            Err(answer) => return answer,
        };
        let raw_body: &[u8] = match request.body() {
            Body::Empty => &[],
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => &[],
        };
        if raw_body.len() > self.config.max_body_bytes {
            return Answer::rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {} bytes", self.config.max_body_bytes),
            );
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let fields = match body::decode(content_type, raw_body).await {
            Ok(fields) => fields,
            Err(e @ (BodyError::UnsupportedMediaType | BodyError::MissingContentType)) => {
                return Answer::rejected(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
            }
            Err(e) => return Answer::rejected(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let received_at = self.clock.now();
        let submission =
            match intake::normalize(&fields, endpoint.as_deref(), received_at, &self.intake) {
                Ok(submission) => submission,
                Err(fields) => {
                    return Answer::Rejected {
                        status: StatusCode::BAD_REQUEST,
                        message: "invalid lead".into(),
                        fields,
                    };
                }
            };
        let redirect = match self.redirect_target(submission.redirect()) {
            Ok(target) => target,
            Err(problem) => {
                return Answer::Rejected {
                    status: StatusCode::BAD_REQUEST,
                    message: "invalid redirect".into(),
                    fields: vec![problem],
                };
            }
        };
        let (lead, fingerprint) = match submission {
            Submission::Spam { .. } => {
                observability::count(NAMESPACE, FUNCTION, "SpamRejected", 1);
                tracing::info!("honeypot filled; answered as accepted, nothing stored");
                let decoy = LeadId::new(received_at, self.random.random_u128());
                return Answer::Accepted {
                    lead_id: decoy,
                    replayed: false,
                    redirect,
                };
            }
            Submission::Lead {
                lead, fingerprint, ..
            } => (*lead, fingerprint),
        };

        let header_key = request
            .headers()
            .get(IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if header_key.is_some_and(|k| k.len() > 255) {
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
        let (key, dedup) = match header_key {
            Some(k) => (idempotency::request_key_from_header(k), None),
            None => {
                let content_key = intake::content_dedup_key(&fingerprint);
                let window = i64::try_from(self.config.dedup_window_secs).unwrap_or(i64::MAX);
                let dedup = (window > 0).then(|| DedupWindow {
                    key: content_key.clone(),
                    until: received_at
                        .checked_add_signed(Duration::seconds(window))
                        .unwrap_or(received_at),
                });
                (format!("{content_key}.{lead_id}"), dedup)
            }
        };
        let content_hash = fingerprint;
        let span =
            tracing::info_span!("lead", lead_id = %lead_id, email_fp = %lead.email.fingerprint());
        let _entered = span.enter();
        let envelope = LeadEnvelope::new(lead_id.clone(), key.clone(), received_at, endpoint, lead);
        let record = IntakeRecord {
            key: key.clone(),
            lead_id: lead_id.clone(),
            content_hash: content_hash.clone(),
            raw: RawRequest {
                body: raw_body.to_vec(),
                content_type: content_type.map(str::to_string),
                headers: request
                    .headers()
                    .iter()
                    .filter(|(name, _)| !is_secret_header(name.as_str()))
                    .filter_map(|(name, value)| {
                        value
                            .to_str()
                            .ok()
                            .map(|v| (name.as_str().to_string(), v.to_string()))
                    })
                    .collect(),
                received_at,
            },
            envelope,
            expires_at: (received_at + Duration::days(i64::from(self.config.raw_retention_days)))
                .timestamp(),
        };
        if let Err(problem) = storable(&record) {
            return Answer::rejected(StatusCode::PAYLOAD_TOO_LARGE, problem);
        }
        let claim_until =
            received_at + Duration::seconds(i64::from(self.config.enqueue_claim_secs));

        match self
            .store
            .create(&record, claim_until, dedup.as_ref())
            .await
        {
            Ok(CreateOutcome::Created) => {
                self.enqueue(&key, &record.envelope, false, redirect).await
            }
            Ok(CreateOutcome::Exists(existing)) => {
                if header_key.is_some() && existing.content_hash != content_hash {
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
                            redirect,
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
                            Ok(true) => {
                                self.enqueue(&existing_key, &existing.envelope, true, redirect)
                                    .await
                            }
                            Ok(false) => {
                                tracing::info!(lead_id = %existing.lead_id, "duplicate request; the lead is being queued");
                                Answer::Accepted {
                                    lead_id: existing.lead_id,
                                    replayed: true,
                                    redirect,
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "claiming a stored lead failed; the sweep queues it");
                                Answer::Accepted {
                                    lead_id: existing.lead_id,
                                    replayed: true,
                                    redirect,
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
        let claim_until = now + Duration::seconds(i64::from(self.config.enqueue_claim_secs));
        let overdue_since = now - Duration::seconds(i64::from(self.config.unqueued_alert_secs));
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
        observability::count(NAMESPACE, FUNCTION, "LeadsSwept", report.queued as u64);
        observability::count(NAMESPACE, FUNCTION, "LeadsUnqueued", report.overdue as u64);
        if report.found > 0 {
            tracing::info!(
                found = report.found,
                queued = report.queued,
                overdue = report.overdue,
                "sweep of stored leads"
            );
        }
        Ok(report)
    }

    /// Queues one stored lead if nobody else holds its claim. `Ok(true)` when it is on the queue.
    async fn requeue(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
        claim_until: chrono::DateTime<chrono::Utc>,
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
    async fn enqueue(
        &self,
        key: &str,
        envelope: &LeadEnvelope,
        replayed: bool,
        redirect: Option<String>,
    ) -> Answer {
        if !replayed {
            // Analytics (issue 12): the stored lead is accepted; its record is sent beside the queue send.
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
                redirect,
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
            redirect,
        }
    }

    /// The 303 target for plain HTML forms: `_redirect` if its origin is listed in `ALLOWED_ORIGINS` (a
    /// `*` lists none) or is `THANK_YOU_URL`'s, else `THANK_YOU_URL`.
    fn redirect_target(&self, requested: Option<&str>) -> Result<Option<String>, FieldProblem> {
        let thank_you = self.config.thank_you_url.as_ref();
        let Some(requested) = requested else {
            return Ok(thank_you.map(|t| t.url.clone()));
        };
        let problem = |p: &str| FieldProblem {
            field: "_redirect".into(),
            problem: p.into(),
        };
        let target = RedirectTarget::parse(requested)
            .ok_or_else(|| problem("must be an absolute http or https URL"))?;
        let allowed = self.config.allowed_origins.lists(&target.origin)
            || thank_you.is_some_and(|t| t.origin == target.origin);
        if allowed && target.url.len() <= 2048 {
            Ok(Some(target.url))
        } else {
            Err(problem("is not on an allowed origin"))
        }
    }
}

/// Whether the client asked for HTML (a browser submitting a plain form).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/html"))
}

/// The `{source}` path segment, validated: `None` for `/leads`.
fn endpoint_source(request: &Request) -> Result<Option<String>, Answer> {
    let from_params = request
        .path_parameters()
        .first("source")
        .map(str::to_string);
    let source = from_params.or_else(|| {
        // Local emulators may not fill path parameters; read the raw path instead.
        let raw = request.raw_http_path();
        let path = if raw.is_empty() {
            request.uri().path()
        } else {
            raw
        };
        let mut segments = path.trim_end_matches('/').rsplit('/');
        let last = segments.next()?;
        (segments.next() == Some("leads")).then(|| last.to_string())
    });
    match source {
        None => Ok(None),
        Some(s)
            if (1..=64).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(Answer::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: "invalid source".into(),
            fields: vec![FieldProblem {
                field: "source".into(),
                problem: "the path segment must be 1 to 64 letters, digits, '-' or '_'".into(),
            }],
        }),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use fluxo::ports::{ExistingIntake, PendingIntake, QueueError, StoreError};

    use super::*;

    /// A stored record, its status and its enqueue claim.
    type StoredIntake = (IntakeRecord, IntakeStatus, Option<DateTime<Utc>>);

    /// In-memory intake store with the same conditional semantics as the DynamoDB adapter.
    #[derive(Default)]
    struct MemoryStore {
        records: Mutex<Vec<StoredIntake>>,
        /// De-duplication markers: content key, the record's key, the end of the window.
        markers: Mutex<Vec<(String, String, DateTime<Utc>)>>,
        fail: bool,
    }

    fn existing(entry: &StoredIntake) -> ExistingIntake {
        let (r, status, _) = entry;
        ExistingIntake {
            lead_id: r.lead_id.clone(),
            content_hash: r.content_hash.clone(),
            status: *status,
            envelope: r.envelope.clone(),
        }
    }

    impl IntakeStore for MemoryStore {
        async fn create(
            &self,
            record: &IntakeRecord,
            claim_until: DateTime<Utc>,
            dedup: Option<&DedupWindow>,
        ) -> Result<CreateOutcome, StoreError> {
            if self.fail {
                return Err(StoreError::Unavailable("down".into()));
            }
            let mut records = self.records.lock().unwrap();
            let mut markers = self.markers.lock().unwrap();
            if let Some(d) = dedup {
                let now = record.raw.received_at;
                if let Some((_, key, _)) = markers
                    .iter()
                    .find(|(k, _, until)| *k == d.key && *until > now)
                {
                    let entry = records.iter().find(|(r, _, _)| r.key == *key).unwrap();
                    return Ok(CreateOutcome::Exists(Box::new(existing(entry))));
                }
                markers.retain(|(k, _, _)| *k != d.key);
                markers.push((d.key.clone(), record.key.clone(), d.until));
            }
            if let Some(entry) = records.iter().find(|(r, _, _)| r.key == record.key) {
                return Ok(CreateOutcome::Exists(Box::new(existing(entry))));
            }
            records.push((record.clone(), IntakeStatus::Stored, Some(claim_until)));
            Ok(CreateOutcome::Created)
        }
        async fn load(&self, key: &str) -> Result<Option<ExistingIntake>, StoreError> {
            let records = self.records.lock().unwrap();
            Ok(records.iter().find(|(r, _, _)| r.key == key).map(existing))
        }
        async fn unqueued(&self, limit: usize) -> Result<Vec<PendingIntake>, StoreError> {
            let records = self.records.lock().unwrap();
            let mut pending: Vec<_> = records
                .iter()
                .filter(|(_, status, _)| *status == IntakeStatus::Stored)
                .map(|(r, _, _)| PendingIntake {
                    key: r.key.clone(),
                    received_at: r.raw.received_at,
                })
                .collect();
            pending.sort_by_key(|p| p.received_at);
            pending.truncate(limit);
            Ok(pending)
        }
        async fn claim(
            &self,
            key: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let mut records = self.records.lock().unwrap();
            let Some(entry) = records.iter_mut().find(|(r, _, _)| r.key == key) else {
                return Ok(false);
            };
            if entry.1 == IntakeStatus::Stored && entry.2.is_none_or(|c| c < now) {
                entry.2 = Some(until);
                return Ok(true);
            }
            Ok(false)
        }
        async fn mark_queued(&self, key: &str) -> Result<(), StoreError> {
            let mut records = self.records.lock().unwrap();
            if let Some(entry) = records.iter_mut().find(|(r, _, _)| r.key == key) {
                entry.1 = IntakeStatus::Queued;
                entry.2 = None;
            }
            Ok(())
        }
        async fn release_claim(&self, key: &str) -> Result<(), StoreError> {
            let mut records = self.records.lock().unwrap();
            if let Some(entry) = records.iter_mut().find(|(r, _, _)| r.key == key) {
                entry.2 = None;
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct MemoryQueue {
        sent: Mutex<Vec<LeadEnvelope>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl LeadQueue for MemoryQueue {
        async fn send_lead(&self, envelope: &LeadEnvelope) -> Result<(), QueueError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(QueueError::Unavailable("down".into()));
            }
            self.sent.lock().unwrap().push(envelope.clone());
            Ok(())
        }
    }

    /// A clock that stands still until a test moves it.
    #[derive(Default)]
    struct FixedClock(std::sync::atomic::AtomicI64);
    impl FixedClock {
        fn advance(&self, millis: i64) {
            self.0
                .fetch_add(millis, std::sync::atomic::Ordering::SeqCst);
        }
    }
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(1_764_000_000, 0).unwrap()
                + chrono::Duration::milliseconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    struct Counter(std::sync::atomic::AtomicU64);
    impl Randomness for Counter {
        fn random_u128(&self) -> u128 {
            u128::from(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        }
    }

    type TestReceiver = Receiver<MemoryStore, MemoryQueue, FixedClock, Counter>;

    fn receiver_with(env: &[(&str, &str)]) -> TestReceiver {
        struct Map(Vec<(String, String)>);
        impl fluxo::settings::Source for Map {
            fn get(&self, name: &str) -> Option<String> {
                self.0
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }
        }
        let mut vars = vec![
            ("LEADS_TABLE".to_string(), "t".to_string()),
            ("LEADS_QUEUE_URL".to_string(), "q".to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = ReceiverConfig::from_source(&Map(vars)).unwrap();
        Receiver::new(
            config,
            MemoryStore::default(),
            MemoryQueue::default(),
            FixedClock::default(),
            Counter(1.into()),
        )
    }

    fn receiver() -> TestReceiver {
        receiver_with(&[])
    }

    fn post(path: &str, content_type: &str) -> http::request::Builder {
        http::Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", content_type)
    }

    fn json_post(body: &str) -> Request {
        post("/leads", "application/json")
            .body(Body::Text(body.to_string()))
            .unwrap()
    }

    fn body_json(response: &Response<Body>) -> serde_json::Value {
        match response.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    const SEED: &str = r#"{"nome": "João", "email": "joao@exemplo.com", "origem": "Webinar XYZ", "interesse": "Software A"}"#;

    #[tokio::test]
    async fn the_articles_payload_is_accepted_stored_and_queued() {
        let r = receiver();
        let response = r.handle(json_post(SEED)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body = body_json(&response);
        assert_eq!(body["status"], "accepted");
        let sent = r.queue.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(body["lead_id"], sent[0].lead_id.as_str());
        assert_eq!(sent[0].lead.name.as_deref(), Some("João"));
        assert_eq!(sent[0].lead.interest.as_deref(), Some("Software A"));
        let records = r.store.records.lock().unwrap();
        assert_eq!(records[0].1, IntakeStatus::Queued);
        assert_eq!(records[0].0.raw.body, SEED.as_bytes());
    }

    #[tokio::test]
    async fn a_duplicate_request_returns_the_same_lead_id_and_is_not_queued_again() {
        let r = receiver();
        let first = body_json(&r.handle(json_post(SEED)).await);
        let second_response = r.handle(json_post(SEED)).await;
        assert_eq!(second_response.headers()["idempotent-replayed"], "true");
        assert_eq!(body_json(&second_response)["lead_id"], first["lead_id"]);
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    }

    fn set_queue_down(r: &TestReceiver, down: bool) {
        r.queue
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    #[tokio::test]
    async fn a_stored_lead_is_answered_202_when_the_queue_is_down_and_the_sweep_queues_it_once() {
        let r = receiver();
        set_queue_down(&r, true);
        let accepted = r.handle(json_post(SEED)).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        let lead_id = body_json(&accepted)["lead_id"].clone();
        // A sweep while the queue is still down queues nothing and loses nothing.
        let report = r.sweep().await.unwrap();
        assert_eq!((report.found, report.queued), (1, 0));
        set_queue_down(&r, false);
        let report = r.sweep().await.unwrap();
        assert_eq!((report.found, report.queued, report.overdue), (1, 1, 0));
        let sent = r.queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].lead_id.as_str(), lead_id);
        assert_eq!(r.store.records.lock().unwrap()[0].1, IntakeStatus::Queued);
        // Nothing is left for the next sweep.
        assert_eq!(r.sweep().await.unwrap(), SweepReport::default());
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_sweep_leaves_a_lead_whose_request_still_holds_the_claim() {
        let r = receiver();
        let envelope_key = {
            set_queue_down(&r, true);
            r.handle(json_post(SEED)).await;
            set_queue_down(&r, false);
            r.store.records.lock().unwrap()[0].0.key.clone()
        };
        // The request still holds its claim (as if it were sending right now).
        let now = r.clock.now();
        assert!(
            r.store
                .claim(&envelope_key, now, now + Duration::seconds(30))
                .await
                .unwrap()
        );
        assert_eq!(r.sweep().await.unwrap().queued, 0);
        assert!(r.queue.sent.lock().unwrap().is_empty());
        r.clock.advance(31_000);
        assert_eq!(r.sweep().await.unwrap().queued, 1);
    }

    #[tokio::test]
    async fn the_sweep_counts_leads_unqueued_longer_than_the_alert_time() {
        let r = receiver_with(&[("UNQUEUED_ALERT_SECS", "300")]);
        set_queue_down(&r, true);
        r.handle(json_post(SEED)).await;
        r.clock.advance(299_000);
        assert_eq!(r.sweep().await.unwrap().overdue, 0);
        r.clock.advance(2_000);
        assert_eq!(r.sweep().await.unwrap().overdue, 1);
        set_queue_down(&r, false);
        let report = r.sweep().await.unwrap();
        assert_eq!((report.queued, report.overdue), (1, 0));
    }

    #[tokio::test]
    async fn a_storage_failure_is_the_only_503_and_nothing_is_kept() {
        let mut r = receiver();
        r.store.fail = true;
        let response = r.handle(json_post(SEED)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body_json(&response)["error"],
            "the lead could not be stored; nothing was kept; retry the same request"
        );
    }

    #[tokio::test]
    async fn a_storage_failure_answers_503() {
        let mut r = receiver();
        r.store.fail = true;
        let response = r.handle(json_post(SEED)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.queue.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_idempotency_key_header_decides_what_a_duplicate_is() {
        let r = receiver();
        let with_key = |body: &str| {
            post("/leads", "application/json")
                .header("idempotency-key", "abc-1")
                .body(Body::Text(body.into()))
                .unwrap()
        };
        let first = body_json(&r.handle(with_key(SEED)).await);
        let replay = body_json(&r.handle(with_key(SEED)).await);
        assert_eq!(first["lead_id"], replay["lead_id"]);
        let other = r.handle(with_key(r#"{"email":"outro@exemplo.com"}"#)).await;
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    }

    const WITH_CONSENT: &str =
        r#"{"email":"joao@exemplo.com","nome":"João","consentimento":"sim"}"#;

    fn keyed(key: &str, body: &str) -> Request {
        post("/leads", "application/json")
            .header("idempotency-key", key)
            .body(Body::Text(body.into()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_retry_with_the_same_key_replays_even_when_consent_came_without_a_time() {
        let r = receiver();
        set_queue_down(&r, true);
        let first = r.handle(keyed("form-42", WITH_CONSENT)).await;
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        set_queue_down(&r, false);
        // The retry comes later: the server-filled consent time differs, the client content does not.
        r.clock.advance(1_500);
        let retry = r.handle(keyed("form-42", WITH_CONSENT)).await;
        assert_eq!(retry.status(), StatusCode::ACCEPTED);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(body_json(&retry)["lead_id"], body_json(&first)["lead_id"]);
        // The retry took the released claim and queued the stored lead, once.
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
        assert_eq!(r.store.records.lock().unwrap()[0].1, IntakeStatus::Queued);
    }

    #[tokio::test]
    async fn a_key_reused_for_different_client_content_gets_422() {
        let r = receiver();
        r.handle(keyed("form-43", WITH_CONSENT)).await;
        r.clock.advance(1_500);
        let other = WITH_CONSENT.replace("João", "Joana");
        let response = r.handle(keyed("form-43", &other)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn without_a_key_a_different_lead_from_the_same_person_is_a_new_lead() {
        let r = receiver();
        let first = r.handle(json_post(SEED)).await;
        r.clock.advance(60_000);
        let other_interest = SEED.replace("Software A", "Software B");
        let second = r.handle(json_post(&other_interest)).await;
        assert_eq!(second.status(), StatusCode::ACCEPTED);
        assert!(second.headers().get("idempotent-replayed").is_none());
        assert_ne!(body_json(&second)["lead_id"], body_json(&first)["lead_id"]);
        let with_phone = SEED.replace(r#""nome""#, r#""telefone": "+5511987654321", "nome""#);
        let third = r.handle(json_post(&with_phone)).await;
        assert!(third.headers().get("idempotent-replayed").is_none());
        assert_eq!(r.queue.sent.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn without_a_key_the_window_slides_from_the_first_submission() {
        // 1_764_000_000 is a multiple of 600, so the old fixed 600 s slots had a boundary at +600 s: a
        // double-click at +599.9 s and +600.1 s straddled it and became two leads.
        let r = receiver();
        r.clock.advance(599_900);
        let first = r.handle(json_post(SEED)).await;
        r.clock.advance(200);
        let double_click = r.handle(json_post(SEED)).await;
        assert_eq!(double_click.headers()["idempotent-replayed"], "true");
        assert_eq!(
            body_json(&double_click)["lead_id"],
            body_json(&first)["lead_id"]
        );
        // Still inside the window that opened at the first submission.
        r.clock.advance(599_000);
        let late = r.handle(json_post(SEED)).await;
        assert_eq!(body_json(&late)["lead_id"], body_json(&first)["lead_id"]);
        // Past it: the same content again is a new submission.
        r.clock.advance(1_000);
        let next = r.handle(json_post(SEED)).await;
        assert!(next.headers().get("idempotent-replayed").is_none());
        assert_ne!(body_json(&next)["lead_id"], body_json(&first)["lead_id"]);
        assert_eq!(r.queue.sent.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn invalid_leads_get_400_listing_every_problem_and_nothing_is_stored() {
        let r = receiver();
        let response = r
            .handle(json_post(r#"{"email":"nope","telefone":"abc"}"#))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(&response);
        assert_eq!(body["error"], "invalid lead");
        assert_eq!(body["fields"][0]["field"], "email");
        assert_eq!(body["fields"][0]["problem"], "is not a valid email address");
        assert_eq!(body["fields"][1]["field"], "phone");
        assert!(r.store.records.lock().unwrap().is_empty());
        assert!(r.queue.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_json_and_non_objects_get_400() {
        let r = receiver();
        let response = r.handle(json_post("{\"email\":")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(
            body_json(&response)["error"]
                .as_str()
                .unwrap()
                .starts_with("body is not valid JSON")
        );
        let response = r.handle(json_post("[]")).await;
        assert_eq!(
            body_json(&response)["error"],
            "JSON body must be an object of fields"
        );
        assert_eq!(body_json(&response)["fields"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn an_unsupported_content_type_gets_415() {
        let r = receiver();
        let request = post("/leads", "text/xml")
            .body(Body::Text("<lead/>".into()))
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(!format!("{:?}", response.body()).contains("text/xml"));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let r = receiver_with(&[("MAX_BODY_BYTES", "100")]);
        let big = format!(
            r#"{{"email":"a@exemplo.com","notes":"{}"}}"#,
            "x".repeat(200)
        );
        let response = r.handle(json_post(&big)).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body_json(&response)["error"],
            "body is larger than 100 bytes"
        );
    }

    #[tokio::test]
    async fn other_methods_get_405_with_allow() {
        let r = receiver();
        let request = http::Request::builder()
            .method("GET")
            .uri("/leads")
            .body(Body::Empty)
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST, OPTIONS");
    }

    #[tokio::test]
    async fn a_base64_body_from_api_gateway_is_read() {
        let r = receiver();
        let request = post("/leads", "application/x-www-form-urlencoded")
            .body(Body::Binary(
                b"email=ana%40exemplo.com&empresa=Empresa+X".to_vec(),
            ))
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            r.queue.sent.lock().unwrap()[0].lead.company.as_deref(),
            Some("Empresa X")
        );
    }

    #[tokio::test]
    async fn the_path_source_is_recorded_and_validated() {
        let r = receiver();
        let request = post("/leads/landing-1", "application/json")
            .body(Body::Text(r#"{"email":"a@exemplo.com"}"#.into()))
            .unwrap();
        assert_eq!(r.handle(request).await.status(), StatusCode::ACCEPTED);
        let sent = r.queue.sent.lock().unwrap().clone();
        assert_eq!(sent[0].endpoint.as_deref(), Some("landing-1"));
        assert_eq!(sent[0].lead.source.as_deref(), Some("landing-1"));
        let request = post("/leads/%3Cscript%3E", "application/json")
            .body(Body::Text(r#"{"email":"a@exemplo.com"}"#.into()))
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(!format!("{:?}", response.body()).contains("script"));
    }

    #[tokio::test]
    async fn a_filled_honeypot_looks_accepted_but_nothing_is_stored() {
        let r = receiver();
        let response = r
            .handle(json_post(r#"{"email":"bot@spam.com","_gotcha":"buy now"}"#))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(body_json(&response)["status"], "accepted");
        assert!(r.store.records.lock().unwrap().is_empty());
        assert!(r.queue.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn preflight_from_an_allowed_origin_gets_cors_headers() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "https://site.com")]);
        let request = http::Request::builder()
            .method("OPTIONS")
            .uri("/leads")
            .header("origin", "https://site.com")
            .header("access-control-request-method", "POST")
            .body(Body::Empty)
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://site.com"
        );
        assert_eq!(
            response.headers()["access-control-allow-methods"],
            "POST, OPTIONS"
        );
        assert_eq!(response.headers()["vary"], "Origin");
    }

    #[tokio::test]
    async fn a_post_from_an_origin_not_allowed_gets_403_and_is_not_stored() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "https://site.com")]);
        let request = post("/leads", "application/json")
            .header("origin", "https://evil.com")
            .body(Body::Text(SEED.into()))
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
        assert!(r.store.records.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_post_from_an_allowed_origin_carries_the_allow_origin_header() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "https://site.com")]);
        let request = post("/leads", "application/json")
            .header("origin", "https://site.com")
            .body(Body::Text(SEED.into()))
            .unwrap();
        let response = r.handle(request).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://site.com"
        );
    }

    fn html_form(body: &str) -> Request {
        post("/leads", "application/x-www-form-urlencoded")
            .header("accept", "text/html,application/xhtml+xml")
            .body(Body::Text(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn an_html_form_with_an_allowed_redirect_gets_303() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "https://site.com")]);
        let response = r
            .handle(html_form(
                "email=a%40exemplo.com&_redirect=https%3A%2F%2Fsite.com%2Fobrigado",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "https://site.com/obrigado");
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_html_form_goes_to_the_thank_you_url_when_it_names_no_redirect() {
        let r = receiver_with(&[("THANK_YOU_URL", "https://site.com/obrigado")]);
        let response = r.handle(html_form("email=a%40exemplo.com")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "https://site.com/obrigado");
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_refused_before_anything_is_stored() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "https://site.com")]);
        let response = r
            .handle(html_form(
                "email=a%40exemplo.com&_redirect=https%3A%2F%2Fevil.com%2F",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_json(&response)["fields"][0]["field"], "_redirect");
        assert!(r.store.records.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_wildcard_origin_allows_no_redirect_target() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "*")]);
        let response = r
            .handle(html_form(
                "email=a%40exemplo.com&_redirect=https%3A%2F%2Fevil.com%2Fphish",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("location").is_none());
        assert!(r.store.records.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn with_a_wildcard_only_the_thank_you_origin_is_a_redirect_target() {
        let r = receiver_with(&[
            ("ALLOWED_ORIGINS", "*"),
            ("THANK_YOU_URL", "https://site.com/obrigado"),
        ]);
        let response = r
            .handle(html_form(
                "email=a%40exemplo.com&_redirect=https%3A%2F%2Fsite.com%2Foutra",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "https://site.com/outra");
    }

    #[tokio::test]
    async fn redirect_targets_are_compared_as_a_url_parser_reads_them() {
        let r = receiver_with(&[("ALLOWED_ORIGINS", "https://site.com")]);
        // A browser reads the backslash as a slash and goes to evil.com.
        for target in [
            "https%3A%2F%2Fevil.com%5C%40site.com%2F",
            "https%3A%2F%2Fsite.com%40evil.com%2F",
            "%2F%2Fevil.com%2F",
            "javascript%3Aalert(1)",
        ] {
            let response = r
                .handle(html_form(&format!(
                    "email=a%40exemplo.com&_redirect={target}"
                )))
                .await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{target}");
        }
        let response = r
            .handle(html_form(
                "email=a%40exemplo.com&_redirect=HTTPS%3A%2F%2FSITE.com%3A443%2Fobrigado",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], "https://site.com/obrigado");
    }

    #[tokio::test]
    async fn a_body_with_too_many_fields_gets_400() {
        let r = receiver();
        let body = format!(
            "email=a%40exemplo.com&{}",
            (0..200)
                .map(|i| format!("f{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        );
        let response = r
            .handle(
                post("/leads", "application/x-www-form-urlencoded")
                    .body(Body::Text(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(&response)["error"],
            "body has more than 200 fields"
        );
    }

    /// A multipart body whose 50 custom fields are 1,000 control characters each: 52 KB as sent, over
    /// 300 KB once escaped in the JSON envelope, more than one SQS message holds.
    pub(crate) fn unqueueable_multipart() -> String {
        let value = "\u{1}".repeat(1000);
        (0..50)
            .map(|i| {
                format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n{value}\r\n")
            })
            .collect::<String>()
            + "--B\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@exemplo.com\r\n--B--\r\n"
    }

    #[tokio::test]
    async fn a_lead_too_large_to_queue_gets_413_and_nothing_is_stored() {
        let r = receiver();
        let body = unqueueable_multipart();
        assert!(body.len() < 64 * 1024);
        let response = r
            .handle(
                post("/leads", "multipart/form-data; boundary=B")
                    .body(Body::Text(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            body_json(&response)["error"]
                .as_str()
                .unwrap()
                .starts_with("the lead is too large to queue")
        );
        assert!(r.store.records.lock().unwrap().is_empty());
        assert!(r.queue.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_json_client_gets_202_even_when_a_redirect_is_configured() {
        let r = receiver_with(&[("THANK_YOU_URL", "https://site.com/obrigado")]);
        let response = r.handle(json_post(SEED)).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn secret_headers_are_not_stored_with_the_raw_request() {
        let r = receiver();
        let request = post("/leads", "application/json")
            .header("authorization", "Bearer s3cret")
            .header("x-hub-signature-256", "sha256=abc")
            .header("user-agent", "form/1.0")
            .body(Body::Text(SEED.into()))
            .unwrap();
        r.handle(request).await;
        let records = r.store.records.lock().unwrap();
        let headers = &records[0].0.raw.headers;
        assert!(headers.iter().any(|(k, _)| k == "user-agent"));
        assert!(
            !headers
                .iter()
                .any(|(k, _)| k == "authorization" || k.contains("signature"))
        );
    }

    #[tokio::test]
    async fn every_response_is_hardened() {
        let r = receiver();
        let response = r.handle(json_post("[]")).await;
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
    }
}
