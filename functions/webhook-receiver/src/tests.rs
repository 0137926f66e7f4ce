//! The receiver's unit tests, through its HTTP entry, on in-memory ports with the adapters' semantics.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::{
    Clock, CreateOutcome, DedupWindow, ExistingIntake, IntakeRecord, IntakeStatus, IntakeStore,
    LeadQueue, PendingIntake, QueueError, StoreError,
};
use http::StatusCode;
use lambda_http::{Body, Request, Response};

use fluxo::testing::{Counter, FixedClock};

use crate::intake::{Receiver, SweepReport};
use crate::setup::Settings;

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
    let config = Settings::from_source(&Map(vars)).unwrap();
    Receiver::new(
        config,
        MemoryStore::default(),
        MemoryQueue::default(),
        FixedClock::default(),
        Counter::new(),
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
    r.clock.advance(Duration::milliseconds(31_000));
    assert_eq!(r.sweep().await.unwrap().queued, 1);
}

#[tokio::test]
async fn the_sweep_counts_leads_unqueued_longer_than_the_alert_time() {
    let r = receiver_with(&[("UNQUEUED_ALERT_SECS", "300")]);
    set_queue_down(&r, true);
    r.handle(json_post(SEED)).await;
    r.clock.advance(Duration::milliseconds(299_000));
    assert_eq!(r.sweep().await.unwrap().overdue, 0);
    r.clock.advance(Duration::milliseconds(2_000));
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

const WITH_CONSENT: &str = r#"{"email":"joao@exemplo.com","nome":"João","consentimento":"sim"}"#;

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
    r.clock.advance(Duration::milliseconds(1_500));
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
    r.clock.advance(Duration::milliseconds(1_500));
    let other = WITH_CONSENT.replace("João", "Joana");
    let response = r.handle(keyed("form-43", &other)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_key_a_different_lead_from_the_same_person_is_a_new_lead() {
    let r = receiver();
    let first = r.handle(json_post(SEED)).await;
    r.clock.advance(Duration::milliseconds(60_000));
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
    r.clock.advance(Duration::milliseconds(599_900));
    let first = r.handle(json_post(SEED)).await;
    r.clock.advance(Duration::milliseconds(200));
    let double_click = r.handle(json_post(SEED)).await;
    assert_eq!(double_click.headers()["idempotent-replayed"], "true");
    assert_eq!(
        body_json(&double_click)["lead_id"],
        body_json(&first)["lead_id"]
    );
    // Still inside the window that opened at the first submission.
    r.clock.advance(Duration::milliseconds(599_000));
    let late = r.handle(json_post(SEED)).await;
    assert_eq!(body_json(&late)["lead_id"], body_json(&first)["lead_id"]);
    // Past it: the same content again is a new submission.
    r.clock.advance(Duration::milliseconds(1_000));
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
        .map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n{value}\r\n"))
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

mod signed_sources {
    //! Signed sources through the HTTP entry: verification before anything is stored.

    use std::collections::BTreeMap;

    use fluxo::sources::ports::{NoticeInbox, NoticeState, PendingNotice, ReplayGuard};
    use fluxo::sources::standard_webhooks::request as standard;
    use fluxo::sources::{SigningKey, SigningKeys};

    use super::*;
    use crate::sources::{Source, Sources};

    /// Replay markers and notices in memory, with the DynamoDB adapter's conditional semantics.
    #[derive(Default)]
    struct MemorySources {
        seen: Mutex<BTreeMap<String, DateTime<Utc>>>,
        notices: Mutex<Vec<(PendingNotice, NoticeState)>>,
    }

    impl ReplayGuard for MemorySources {
        async fn first_sighting(
            &self,
            source: &str,
            id: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let mut seen = self.seen.lock().unwrap();
            let key = format!("{source}#{id}");
            if seen.get(&key).is_some_and(|u| *u > now) {
                return Ok(false);
            }
            seen.insert(key, until);
            Ok(true)
        }
        async fn forget(&self, source: &str, id: &str) -> Result<(), StoreError> {
            self.seen.lock().unwrap().remove(&format!("{source}#{id}"));
            Ok(())
        }
    }

    impl NoticeInbox for MemorySources {
        async fn put_notice(&self, notice: &PendingNotice, _: i64) -> Result<bool, StoreError> {
            let mut notices = self.notices.lock().unwrap();
            if notices
                .iter()
                .any(|(n, _)| n.source == notice.source && n.leadgen_id == notice.leadgen_id)
            {
                return Ok(false);
            }
            notices.push((notice.clone(), NoticeState::Pending));
            Ok(true)
        }
        async fn pending_notices(&self, _: usize) -> Result<Vec<PendingNotice>, StoreError> {
            Ok(self
                .notices
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| *s == NoticeState::Pending)
                .map(|(n, _)| n.clone())
                .collect())
        }
        async fn claim_notice(
            &self,
            _: &str,
            _: &str,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn settle_notice(
            &self,
            source: &str,
            leadgen_id: &str,
            state: NoticeState,
            _: Option<&str>,
        ) -> Result<(), StoreError> {
            for (n, s) in self.notices.lock().unwrap().iter_mut() {
                if n.source == source && n.leadgen_id == leadgen_id {
                    *s = state.clone();
                }
            }
            Ok(())
        }
    }

    type SignedReceiver = Receiver<MemoryStore, MemoryQueue, FixedClock, Counter, MemorySources>;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const LEAD: &str = r#"{"email":"ana@exemplo.com","nome":"Ana"}"#;

    fn setup(env: &[(&str, &str)]) -> (SignedReceiver, Sources) {
        let r = receiver_with(env).with_source_store(MemorySources::default());
        let key = standard::key_from_secret(SECRET).unwrap();
        let sources = Sources::none()
            .with(
                "backend",
                Source::StandardWebhooks {
                    keys: SigningKeys::new(key, None),
                },
            )
            .with(
                "google",
                Source::Google {
                    keys: SigningKeys::new(SigningKey::new(b"gkey".to_vec()), None),
                    forward_tests: false,
                },
            )
            .with("broken", Source::Unavailable("no secret".into()))
            .with("landing", Source::Form);
        (r, sources)
    }

    fn signed_post(id: &str, ts: i64, body: &str, signature: Option<String>) -> Request {
        let key = standard::key_from_secret(SECRET).unwrap();
        let signature = signature.unwrap_or_else(|| standard::sign(&key, id, ts, body.as_bytes()));
        post("/leads/backend", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(Body::Text(body.to_string()))
            .unwrap()
    }

    const NOW: i64 = 1_764_000_000;

    #[tokio::test]
    async fn a_signed_lead_is_stored_and_queued_with_its_source() {
        let (r, sources) = setup(&[]);
        let response = r
            .handle_with(signed_post("msg_1", NOW, LEAD, None), &sources)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let sent = r.queue.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].lead.source.as_deref(), Some("backend"));
        // The signature is never stored with the raw request.
        let records = r.store.records.lock().unwrap();
        assert!(
            !records[0]
                .0
                .raw
                .headers
                .iter()
                .any(|(k, _)| k.contains("signature"))
        );
    }

    #[tokio::test]
    async fn hostile_signed_requests_get_a_bare_401_and_nothing_is_stored() {
        let (r, sources) = setup(&[("MAX_BODY_BYTES", "1024")]);
        let bare = post("/leads/backend", "application/json")
            .body(Body::Text(LEAD.into()))
            .unwrap();
        let wrong_key = standard::sign(
            &standard::key_from_secret("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            "msg_2",
            NOW,
            LEAD.as_bytes(),
        );
        let other_body = standard::sign(
            &standard::key_from_secret(SECRET).unwrap(),
            "msg_3",
            NOW,
            br#"{"email":"eve@exemplo.com"}"#,
        );
        for request in [
            bare,
            signed_post("msg_2", NOW, LEAD, Some(wrong_key)),
            signed_post("msg_3", NOW, LEAD, Some(other_body)),
            signed_post("msg_4", NOW - 301, LEAD, None),
        ] {
            let response = r.handle_with(request, &sources).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(body_json(&response)["error"], "unauthorized");
            assert_eq!(body_json(&response)["fields"], serde_json::json!([]));
        }
        let big = format!(r#"{{"email":"a@exemplo.com","x":"{}"}}"#, "y".repeat(2000));
        let response = r
            .handle_with(signed_post("msg_5", NOW, &big, None), &sources)
            .await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.store.records.lock().unwrap().is_empty());
        assert!(r.queue.sent.lock().unwrap().is_empty());
        assert!(r.source_store.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_replayed_message_id_is_refused_inside_the_window() {
        let (r, sources) = setup(&[]);
        let first = r
            .handle_with(signed_post("msg_1", NOW, LEAD, None), &sources)
            .await;
        assert_eq!(first.status(), StatusCode::OK);
        r.clock.advance(Duration::milliseconds(60_000));
        let replay = r
            .handle_with(signed_post("msg_1", NOW + 60, LEAD, None), &sources)
            .await;
        assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_message_whose_lead_is_refused_can_be_sent_again_fixed() {
        let (r, sources) = setup(&[]);
        let bad = r
            .handle_with(
                signed_post("msg_7", NOW, r#"{"email":"nope"}"#, None),
                &sources,
            )
            .await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body_json(&bad)["fields"][0]["field"], "email");
        assert!(r.source_store.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_google_test_lead_is_stored_marked_and_not_queued() {
        let (r, sources) = setup(&[]);
        let body = r#"{"lead_id":"L1","google_key":"gkey","is_test":true,"campaign_id":123,"user_column_data":[{"column_id":"EMAIL","string_value":"t@example.com"}]}"#;
        let request = post("/leads/google", "application/json")
            .body(Body::Text(body.into()))
            .unwrap();
        let response = r.handle_with(request, &sources).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(r.queue.sent.lock().unwrap().is_empty());
        let records = r.store.records.lock().unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].0.envelope.lead.test);
        assert_eq!(
            records[0].0.envelope.lead.ad.campaign_id.as_deref(),
            Some("123")
        );
        // The key never reaches the stored raw body.
        assert!(!String::from_utf8_lossy(&records[0].0.raw.body).contains("gkey"));
        assert_eq!(records[0].1, IntakeStatus::Queued);
    }

    #[tokio::test]
    async fn a_source_without_its_secret_answers_503_and_forms_keep_working() {
        let (r, sources) = setup(&[]);
        let request = post("/leads/broken", "application/json")
            .body(Body::Text(LEAD.into()))
            .unwrap();
        let response = r.handle_with(request, &sources).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let request = post("/leads/landing", "application/json")
            .body(Body::Text(LEAD.into()))
            .unwrap();
        assert_eq!(
            r.handle_with(request, &sources).await.status(),
            StatusCode::ACCEPTED
        );
    }

    #[tokio::test]
    async fn a_signed_source_answers_405_to_other_methods() {
        let (r, sources) = setup(&[]);
        let request = http::Request::builder()
            .method("GET")
            .uri("/leads/backend")
            .body(Body::Empty)
            .unwrap();
        let response = r.handle_with(request, &sources).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST");
    }
}
