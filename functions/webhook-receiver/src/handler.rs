//! The receiver: verify -> parse -> validate -> normalize -> conditional write -> queue -> answer.

use chrono::Duration;
use fluxo::domain::intake::{self, FieldProblem, IntakeSettings, Submission};
use fluxo::domain::{Lead, LeadId};
use fluxo::envelope::LeadEnvelope;
use fluxo::idempotency;
use fluxo::observability;
use fluxo::ports::{
    Clock, CreateOutcome, IntakeRecord, IntakeStatus, IntakeStore, LeadQueue, Randomness,
    RawRequest,
};
use http::{HeaderMap, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::body::{self, BodyError};
use crate::config::ReceiverConfig;
use crate::cors::Origin;
use crate::response::{self, AcceptedBody};

const FUNCTION: &str = "webhook-receiver";
const NAMESPACE: &str = "Fluxo";
const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const ALLOWED_METHODS: &str = "POST, OPTIONS";
const ALLOWED_HEADERS: &str = "content-type, idempotency-key";

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
    Busy,
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
            Answer::Busy => {
                let mut r = response::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the same request is being processed; retry shortly",
                    &[],
                );
                response::set(&mut r, header::RETRY_AFTER, "2");
                r
            }
            Answer::Unavailable => {
                let mut r = response::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the lead could not be queued; retry the same request",
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
        let lead = match submission {
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
            Submission::Lead { lead, .. } => *lead,
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
        let key = match header_key {
            Some(k) => idempotency::request_key_from_header(k),
            None => idempotency::request_key_from_content(
                lead.source.as_deref().unwrap_or(""),
                lead.email.as_str(),
                lead.form.as_deref().unwrap_or(""),
                received_at,
                self.config.dedup_window_secs,
            ),
        };
        let content_hash = content_hash(&lead);
        let lead_id = LeadId::new(received_at, self.random.random_u128());
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
        let claim_until =
            received_at + Duration::seconds(i64::from(self.config.enqueue_claim_secs));

        match self.store.create(&record, claim_until).await {
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
                        match self.store.claim(&key, received_at, claim_until).await {
                            Ok(true) => {
                                self.enqueue(&key, &existing.envelope, true, redirect).await
                            }
                            Ok(false) => Answer::Busy,
                            Err(e) => {
                                tracing::error!(error = %e, "claiming a stored lead failed");
                                Answer::Unavailable
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = fluxo::Retryable::is_retryable(&e), "storing the lead failed");
                Answer::Unavailable
            }
        }
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
        if let Err(e) = self.queue.send_lead(envelope).await {
            observability::count(NAMESPACE, FUNCTION, "QueueSendFailed", 1);
            tracing::error!(error = %e, "queueing the lead failed; the stored lead waits for a retry");
            if let Err(e) = self.store.release_claim(key).await {
                tracing::warn!(error = %e, "releasing the enqueue claim failed; it expires on its own");
            }
            return Answer::Unavailable;
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

    /// The 303 target for plain HTML forms: `_redirect` if on an allowed origin, else `THANK_YOU_URL`.
    fn redirect_target(&self, requested: Option<&str>) -> Result<Option<String>, FieldProblem> {
        let thank_you = self.config.thank_you_url.as_deref();
        let Some(target) = requested else {
            return Ok(thank_you.map(str::to_string));
        };
        let problem = |p: &str| FieldProblem {
            field: "_redirect".into(),
            problem: p.into(),
        };
        let origin = Origin::of_url(target)
            .ok_or_else(|| problem("must be an absolute http or https URL"))?;
        let allowed = self.config.allowed_origins.allows(&origin)
            || thank_you
                .and_then(Origin::of_url)
                .is_some_and(|t| t == origin);
        if allowed && target.len() <= 2048 {
            Ok(Some(target.to_string()))
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

/// A hash of the normalized lead, to notice an `Idempotency-Key` reused for another lead.
fn content_hash(lead: &Lead) -> String {
    let json = serde_json::to_string(lead).unwrap_or_default();
    idempotency::key_of("fluxo.lead.content.v1", &[&json])
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use fluxo::ports::{ExistingIntake, QueueError, StoreError};

    use super::*;

    /// A stored record, its status and its enqueue claim.
    type StoredIntake = (IntakeRecord, IntakeStatus, Option<DateTime<Utc>>);

    /// In-memory intake store with the same conditional semantics as the DynamoDB adapter.
    #[derive(Default)]
    struct MemoryStore {
        records: Mutex<Vec<StoredIntake>>,
        fail: bool,
    }

    impl IntakeStore for MemoryStore {
        async fn create(
            &self,
            record: &IntakeRecord,
            claim_until: DateTime<Utc>,
        ) -> Result<CreateOutcome, StoreError> {
            if self.fail {
                return Err(StoreError::Unavailable("down".into()));
            }
            let mut records = self.records.lock().unwrap();
            if let Some((r, status, _)) = records.iter().find(|(r, _, _)| r.key == record.key) {
                return Ok(CreateOutcome::Exists(Box::new(ExistingIntake {
                    lead_id: r.lead_id.clone(),
                    content_hash: r.content_hash.clone(),
                    status: *status,
                    envelope: r.envelope.clone(),
                })));
            }
            records.push((record.clone(), IntakeStatus::Stored, Some(claim_until)));
            Ok(CreateOutcome::Created)
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

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(1_764_000_000, 0).unwrap()
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
            FixedClock,
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

    #[tokio::test]
    async fn a_queue_failure_answers_503_and_the_retry_completes_once() {
        let r = receiver();
        r.queue
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = r.handle(json_post(SEED)).await;
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failed.headers()["retry-after"], "1");
        r.queue
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let retried = r.handle(json_post(SEED)).await;
        assert_eq!(retried.status(), StatusCode::ACCEPTED);
        let again = r.handle(json_post(SEED)).await;
        assert_eq!(body_json(&again)["lead_id"], body_json(&retried)["lead_id"]);
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
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
