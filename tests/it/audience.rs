//! audience-sync: the Meta and Google connectors against wiremock servers that assert the documented
//! request shapes, and the syncer against moto (real SDK clients, an isolated copy of the template's
//! table and audience queue) driven the way Lambda's SQS event source drives it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audience_sync::{LiveSync, Message, Syncer};
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use fluxo::adapters::memberships::DynamoMemberships;
use fluxo::adapters::profiles::DynamoProfiles;
use fluxo::audience::normalize::sha256_hex;
use fluxo::audience::ports::{MembershipLedger, State};
use fluxo::audience::{
    AudienceConnector, AudienceSecrets, Audiences, ConsentStatus, Destination, Mode, Op, Person,
    PlatformAudience,
};
use fluxo::config::load_str;
use fluxo::connector::{ConnectorError, Deadline, Secret};
use fluxo::domain::{Consent, Email, Lead, LeadId};
use fluxo::envelope::LeadEnvelope;
use fluxo::error::Retryable;
use fluxo::ports::SystemClock;
use fluxo::routing::fanout::{
    AUDIENCE_ADD, AUDIENCE_REMOVE, ActionHeader, AudienceAction, ConsentSnapshot,
};
use fluxo::routing::{Profile, ProfileStore};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use xtask::stack::StackInfo;

use crate::support;

const META_TOKEN: &str = "it-meta-token";
const GOOGLE_TOKEN: &str = "it-google-token";
const META_AUDIENCE: &str = "23850000000000001";
const CUSTOMER: &str = "1234567890";
const USER_LIST: &str = "5550001";
const MANAGER: &str = "9998887776";

fn config_text(meta: &str, google: &str, mode: &str, attempts: u32) -> String {
    config_rows(meta, google, mode, attempts, 3)
}

fn config_rows(meta: &str, google: &str, mode: &str, attempts: u32, rows: usize) -> String {
    format!(
        r#"
[audience_sync]
lease_secs = 30

[audience_sync.meta]
endpoint = "{meta}"
access_token = {{ env = "IT_META_TOKEN_UNUSED" }}
rows_per_request = {rows}
max_attempts = {attempts}
base_delay_ms = 10
max_delay_ms = 200
timeout_secs = 5

[audience_sync.google]
endpoint = "{google}"
access_token = {{ env = "IT_GOOGLE_TOKEN_UNUSED" }}
max_attempts = {attempts}
base_delay_ms = 10
max_delay_ms = 200
timeout_secs = 5

[audience_sync.audiences.leads_qualificados]
meta = [{{ audience_id = "{META_AUDIENCE}", mode = "{mode}" }}]
google = [{{ customer_id = "{CUSTOMER}", user_list_id = "{USER_LIST}", login_customer_id = "{MANAGER}", mode = "{mode}" }}]
"#
    )
}

fn secrets() -> AudienceSecrets {
    AudienceSecrets {
        meta_token: Some(Secret::new(META_TOKEN)),
        google_token: Some(Secret::new(GOOGLE_TOKEN)),
        ..AudienceSecrets::default()
    }
}

fn connector(meta: &str, google: &str, attempts: u32) -> Audiences {
    let config = load_str("it.toml", &config_text(meta, google, "apply", attempts))
        .unwrap()
        .config
        .audience_sync;
    Audiences::from_config(&config, secrets()).unwrap()
}

fn person(email: &str, phone: Option<&str>, first: Option<&str>) -> Person {
    Person {
        profile_key: sha256_hex(email),
        email: email.into(),
        phone: phone.map(str::to_string),
        first_name: first.map(str::to_string),
        last_name: None,
        country: None,
        consent: ConsentStatus::Granted,
    }
}

fn meta_destination() -> Destination {
    Destination {
        audience: PlatformAudience::Meta {
            audience_id: META_AUDIENCE.into(),
        },
        mode: Mode::Apply,
    }
}

fn google_destination() -> Destination {
    Destination {
        audience: PlatformAudience::Google {
            customer_id: CUSTOMER.into(),
            user_list_id: USER_LIST.into(),
            login_customer_id: Some(MANAGER.into()),
        },
        mode: Mode::Apply,
    }
}

/// The form fields of a Meta request, JSON-decoded.
fn meta_form(r: &Request) -> (Value, Value) {
    let fields: HashMap<String, String> = form_pairs(&r.body);
    (
        serde_json::from_str(&fields["payload"]).unwrap(),
        serde_json::from_str(&fields["session"]).unwrap(),
    )
}

fn form_pairs(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn meta_ok(n: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "audience_id": META_AUDIENCE, "session_id": "1", "num_received": n,
        "num_invalid_entries": 0, "invalid_entry_samples": {}
    }))
}

// ---------------------------------------------------------------- connectors against wiremock

#[tokio::test]
async fn meta_adds_are_posted_as_hashed_multi_key_rows_in_one_session_of_requests() {
    let meta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v25.0/{META_AUDIENCE}/users")))
        .and(header(
            "authorization",
            format!("Bearer {META_TOKEN}").as_str(),
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(meta_ok(3))
        .expect(2)
        .mount(&meta)
        .await;
    let c = connector(&meta.uri(), "http://127.0.0.1:9", 1);
    // Meta's documented vectors: John_Smith@gmail.com, (650)555-1212 (US), Mary.
    let mut people = vec![person(
        "John_Smith@gmail.com",
        Some("+1 (650) 555-1212"),
        Some("Mary"),
    )];
    for i in 0..3 {
        people.push(person(&format!("p{i}@exemplo.com"), None, None));
    }
    let upload = c
        .sync(&meta_destination(), Op::Add, &people, Deadline::none())
        .await
        .unwrap();
    assert_eq!(upload.calls, 2, "4 rows at 3 rows per request");
    assert_eq!(upload.received, 6);
    let requests = meta.received_requests().await.unwrap();
    let (payload, session) = meta_form(&requests[0]);
    assert_eq!(
        payload["schema"],
        json!(["EMAIL", "PHONE", "FN", "LN", "COUNTRY"])
    );
    assert_eq!(
        payload["data"][0],
        json!([
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
            "",
            sha256_hex("us")
        ])
    );
    assert_eq!(payload["data"].as_array().unwrap().len(), 3);
    let (payload2, session2) = meta_form(&requests[1]);
    assert_eq!(payload2["data"].as_array().unwrap().len(), 1);
    assert_eq!(session["session_id"], session2["session_id"], "one session");
    assert_eq!(
        (&session["batch_seq"], &session["last_batch_flag"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(
        (&session2["batch_seq"], &session2["last_batch_flag"]),
        (&json!(2), &json!(true))
    );
    assert_eq!(session2["estimated_num_total"], json!(4));
}

#[tokio::test]
async fn meta_removes_are_a_delete_on_the_same_edge() {
    let meta = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v25.0/{META_AUDIENCE}/users")))
        .and(header(
            "authorization",
            format!("Bearer {META_TOKEN}").as_str(),
        ))
        .respond_with(meta_ok(1))
        .expect(1)
        .mount(&meta)
        .await;
    let c = connector(&meta.uri(), "http://127.0.0.1:9", 1);
    let people = vec![person("ana@exemplo.com", None, None)];
    c.sync(&meta_destination(), Op::Remove, &people, Deadline::none())
        .await
        .unwrap();
    let requests = meta.received_requests().await.unwrap();
    let (payload, _) = meta_form(&requests[0]);
    assert_eq!(payload["data"][0][0], json!(sha256_hex("ana@exemplo.com")));
}

#[tokio::test]
async fn metas_throttling_codes_are_retryable_and_other_400s_are_permanent() {
    for (code, retryable) in [
        (4, true),
        (17, true),
        (32, true),
        (613, true),
        (80000, true),
        (80014, true),
        (100, false),
        (190, false),
    ] {
        let meta = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
                "message": "x", "type": "OAuthException", "code": code, "fbtrace_id": "t"}})))
            .mount(&meta)
            .await;
        let c = connector(&meta.uri(), "http://127.0.0.1:9", 2);
        let err = c
            .sync(
                &meta_destination(),
                Op::Add,
                &[person("a@b.com", None, None)],
                Deadline::none(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "code {code}: {err}");
        let calls = meta.received_requests().await.unwrap().len();
        assert_eq!(calls, if retryable { 2 } else { 1 }, "code {code}");
    }
}

#[tokio::test]
async fn a_long_meta_throttle_goes_back_to_the_queue_without_waiting() {
    let meta = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header(
                    "x-business-use-case-usage",
                    r#"{"1":[{"type":"ads_management","call_count":100,"estimated_time_to_regain_access":15}]}"#,
                )
                .set_body_json(json!({"error": {"message": "limit", "code": 80003, "fbtrace_id": "t"}})),
        )
        .mount(&meta)
        .await;
    let c = connector(&meta.uri(), "http://127.0.0.1:9", 3);
    let started = std::time::Instant::now();
    let err = c
        .sync(
            &meta_destination(),
            Op::Add,
            &[person("a@b.com", None, None)],
            Deadline::none(),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(err, ConnectorError::Paused { wait, .. } if wait == Duration::from_secs(900)),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_eq!(meta.received_requests().await.unwrap().len(), 1);
}

/// Answers Customer Match calls: `:create` a job, `:addOperations` (refusing listed operation indexes),
/// `:run`, and the status search.
#[derive(Clone, Default)]
struct GoogleEmulator {
    next_job: Arc<Mutex<u64>>,
    refuse: Vec<usize>,
    status: Option<&'static str>,
}

impl Respond for GoogleEmulator {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let p = r.url.path();
        if p.ends_with("offlineUserDataJobs:create") {
            let mut n = self.next_job.lock().unwrap();
            *n += 1;
            return ResponseTemplate::new(200).set_body_json(json!({
                "resourceName": format!("customers/{CUSTOMER}/offlineUserDataJobs/{}", *n)}));
        }
        if p.ends_with(":addOperations") {
            if self.refuse.is_empty() {
                return ResponseTemplate::new(200).set_body_json(json!({}));
            }
            let errors: Vec<Value> = self.refuse.iter().map(|i| json!({
                "errorCode": {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"},
                "message": "The SHA256 encoded value is malformed.",
                "location": {"fieldPathElements": [{"fieldName": "operations", "index": i}, {"fieldName": "create"}]}
            })).collect();
            return ResponseTemplate::new(200).set_body_json(json!({"partialFailureError": {
                "code": 3, "message": "Multiple errors in 'details'.",
                "details": [{"@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure", "errors": errors}]}}));
        }
        if p.ends_with(":run") {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"name": "customers/1/operations/x"}));
        }
        if p.ends_with("googleAds:search") {
            let status = self.status.unwrap_or("RUNNING");
            return ResponseTemplate::new(200).set_body_json(json!({"results": [{"offlineUserDataJob": {
                "resourceName": "x", "status": status, "failureReason": "INSUFFICIENT_MATCHED_TRANSACTIONS"}}]}));
        }
        ResponseTemplate::new(404)
    }
}

#[tokio::test]
async fn google_makes_one_job_with_its_operations_and_runs_it_through_the_manager_account() {
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v25/customers/1234567890/.*"))
        .and(header(
            "authorization",
            format!("Bearer {GOOGLE_TOKEN}").as_str(),
        ))
        .and(header("login-customer-id", MANAGER))
        .respond_with(GoogleEmulator::default())
        .expect(3)
        .mount(&google)
        .await;
    let c = connector("http://127.0.0.1:9", &google.uri(), 1);
    let mut people = vec![person(
        "John.Smith@gmail.com",
        Some("+1 650 555 1212"),
        None,
    )];
    people.push(person("ana@exemplo.com", None, None));
    let upload = c
        .sync(&google_destination(), Op::Add, &people, Deadline::none())
        .await
        .unwrap();
    assert_eq!(upload.calls, 3, "create, addOperations, run");
    assert_eq!(
        upload.job.as_deref(),
        Some("customers/1234567890/offlineUserDataJobs/1")
    );
    let requests = google.received_requests().await.unwrap();
    let create: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        requests[0].url.path(),
        "/v25/customers/1234567890/offlineUserDataJobs:create"
    );
    assert_eq!(
        create,
        json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {
            "userList": "customers/1234567890/userLists/5550001",
            "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}},
            "validateOnly": false})
    );
    assert_eq!(
        requests[1].url.path(),
        "/v25/customers/1234567890/offlineUserDataJobs/1:addOperations"
    );
    let add: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(add["enablePartialFailure"], json!(true));
    assert_eq!(
        add["operations"][0],
        json!({"create": {"userIdentifiers": [
            {"hashedEmail": sha256_hex("johnsmith@gmail.com")},
            {"hashedPhoneNumber": sha256_hex("+16505551212")}],
            "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}})
    );
    assert_eq!(
        add["operations"][1]["create"]["userIdentifiers"],
        json!([{"hashedEmail": sha256_hex("ana@exemplo.com")}])
    );
    assert_eq!(
        requests[2].url.path(),
        "/v25/customers/1234567890/offlineUserDataJobs/1:run"
    );
}

#[tokio::test]
async fn googles_consent_fields_reflect_each_persons_own_answer() {
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(GoogleEmulator::default())
        .mount(&google)
        .await;
    let c = connector("http://127.0.0.1:9", &google.uri(), 1);
    let mut unsure = person("b@exemplo.com", None, None);
    unsure.consent = ConsentStatus::Unspecified;
    let people = vec![person("a@exemplo.com", None, None), unsure];
    c.sync(&google_destination(), Op::Add, &people, Deadline::none())
        .await
        .unwrap();
    let requests = google.received_requests().await.unwrap();
    let create: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert!(
        create["job"]["customerMatchUserListMetadata"]["consent"].is_null(),
        "people differ: the job states no consent"
    );
    let add: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(
        add["operations"][1]["create"]["consent"],
        json!({"adUserData": "UNSPECIFIED", "adPersonalization": "UNSPECIFIED"})
    );
}

#[tokio::test]
async fn googles_partial_failure_refuses_only_the_operations_it_names() {
    let google = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(GoogleEmulator {
            refuse: vec![1],
            ..GoogleEmulator::default()
        })
        .mount(&google)
        .await;
    let c = connector("http://127.0.0.1:9", &google.uri(), 1);
    // The first person has nothing Google can match: operations are indexed without them.
    let people = vec![
        person("not-an-email", None, None),
        person("a@exemplo.com", None, None),
        person("b@exemplo.com", None, None),
    ];
    let upload = c
        .sync(&google_destination(), Op::Add, &people, Deadline::none())
        .await
        .unwrap();
    assert_eq!(upload.unmatchable, vec![0]);
    assert_eq!(upload.failed.len(), 1);
    assert_eq!(upload.failed[0].0, 2, "operation 1 is the third person");
    assert!(upload.failed[0].1.contains("INVALID_SHA256_FORMAT"));
}

// ---------------------------------------------------------------- the syncer on moto

struct Harness {
    sdk: SdkConfig,
    stack: StackInfo,
    meta: MockServer,
    google: MockServer,
    syncer: LiveSync,
}

impl Harness {
    async fn new(test: &str, mode: &str, attempts: u32) -> Harness {
        Self::with_rows(test, mode, attempts, 3).await
    }

    async fn with_rows(test: &str, mode: &str, attempts: u32, rows: usize) -> Harness {
        let (sdk, stack) = support::isolated_stack(test).await;
        let meta = MockServer::start().await;
        let google = MockServer::start().await;
        let config = load_str(
            "it.toml",
            &config_rows(&meta.uri(), &google.uri(), mode, attempts, rows),
        )
        .unwrap()
        .config
        .audience_sync;
        let connector = Audiences::from_config(&config, secrets()).unwrap();
        let ledger = DynamoMemberships::from_sdk_config(&sdk, stack.table("LeadsTable").unwrap());
        let syncer = Syncer::new(ledger, connector, SystemClock, config, "it").unwrap();
        Harness {
            sdk,
            stack,
            meta,
            google,
            syncer,
        }
    }

    fn queue(&self, id: &str) -> String {
        self.stack.queue(id).unwrap().url.clone()
    }

    async fn enqueue(&self, actions: &[AudienceAction]) {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for a in actions {
            sqs.send_message()
                .queue_url(self.queue("AudienceQueue"))
                .message_body(serde_json::to_string(a).unwrap())
                .send()
                .await
                .unwrap();
        }
    }

    /// Polls like Lambda's event source until the queue is empty: batches of at most `batch`, the
    /// successes deleted, the failures made visible again.
    async fn drain(&self, batch: usize) {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = self.queue("AudienceQueue");
        for _ in 0..60 {
            let mut received = Vec::new();
            while received.len() < batch {
                let out = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10.min(i32::try_from(batch - received.len()).unwrap()))
                    .visibility_timeout(60)
                    .wait_time_seconds(0)
                    .send()
                    .await
                    .unwrap();
                if out.messages().is_empty() {
                    break;
                }
                received.extend(out.messages().to_vec());
            }
            if received.is_empty() {
                return;
            }
            let messages = received
                .iter()
                .map(|m| Message {
                    id: m.message_id().unwrap().to_string(),
                    body: m.body().map(str::to_string),
                })
                .collect();
            let report = self.syncer.run(messages, Deadline::none()).await;
            let failed: BTreeSet<String> = report.failed.into_iter().collect();
            for m in &received {
                let handle = m.receipt_handle().unwrap();
                if failed.contains(m.message_id().unwrap()) {
                    sqs.change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .unwrap();
                } else {
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
        panic!("the audience queue did not drain");
    }

    async fn memberships(&self, email: &str) -> Vec<fluxo::audience::ports::Membership> {
        self.syncer
            .ledger()
            .of_person(&sha256_hex(email))
            .await
            .unwrap()
    }

    async fn save_profile(&self, email: &str, granted: Option<bool>, at: DateTime<Utc>) {
        let profiles =
            DynamoProfiles::from_sdk_config(&self.sdk, self.stack.table("LeadsTable").unwrap());
        let mut lead = Lead::with_email(Email::parse(email).unwrap());
        lead.first_name = Some("Maria".into());
        lead.consent = granted.map(|g| Consent {
            granted: g,
            at: Some(at),
            text: None,
        });
        let envelope = LeadEnvelope::new(LeadId::new(at, 7), "k".into(), at, None, lead);
        let profile = Profile::new(&envelope, at);
        let existing = profiles.load(&profile.key()).await.unwrap();
        profiles
            .save(&profile, existing.map(|v| v.version))
            .await
            .unwrap();
    }
}

fn action(kind: &str, email: &str, consent: &str, at: DateTime<Utc>) -> AudienceAction {
    AudienceAction {
        header: ActionHeader {
            version: AudienceAction::VERSION,
            kind: kind.into(),
            effect_key: format!("{kind}-{email}"),
            lead_id: LeadId::new(at, 1),
            profile_key: sha256_hex(email),
            email: Email::parse(email).unwrap(),
            segment: None,
            consent: ConsentSnapshot {
                status: consent.into(),
                at: None,
                text: None,
            },
            created_at: at,
            reason: (kind == AUDIENCE_REMOVE).then(|| "withdrawal".to_string()),
        },
        phone: None,
        audience: "leads_qualificados".into(),
    }
}

/// Fails 3 calls in 10, sometimes two in a row (a Meta throttle or a 503), and counts, per hashed email, the rows of the calls
/// that succeeded: Meta rows, and Google operations of jobs whose `:run` succeeded.
#[derive(Clone, Default)]
struct Flaky {
    calls: Arc<Mutex<u64>>,
    added: Arc<Mutex<HashMap<String, u32>>>,
    jobs: Arc<Mutex<HashMap<String, Vec<String>>>>,
    google: GoogleEmulator,
}

impl Flaky {
    fn fails(&self) -> bool {
        let mut n = self.calls.lock().unwrap();
        *n += 1;
        // Two in a row sometimes, so some calls fail even after the in-process retry and go back to SQS.
        matches!(*n % 10, 1 | 2 | 5)
    }
}

impl Respond for Flaky {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let p = r.url.path().to_string();
        if p.ends_with("/users") {
            if self.fails() {
                return ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "message": "User request limit reached", "code": 17, "error_subcode": 2446079}}));
            }
            let (payload, _) = meta_form(r);
            let mut added = self.added.lock().unwrap();
            let rows = payload["data"].as_array().unwrap();
            for row in rows {
                *added
                    .entry(format!("meta:{}", row[0].as_str().unwrap()))
                    .or_default() += 1;
            }
            return meta_ok(rows.len() as u64);
        }
        if self.fails() {
            return ResponseTemplate::new(503).set_body_json(json!({"error": {
                "code": 503, "status": "UNAVAILABLE", "message": "try again"}}));
        }
        let response = self.google.respond(r);
        if p.ends_with(":addOperations") {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let job = p
                .trim_start_matches("/v25/")
                .trim_end_matches(":addOperations")
                .to_string();
            let emails: Vec<String> = body["operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    o["create"]["userIdentifiers"][0]["hashedEmail"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            self.jobs
                .lock()
                .unwrap()
                .entry(job)
                .or_default()
                .extend(emails);
        }
        if p.ends_with(":run") {
            let job = p
                .trim_start_matches("/v25/")
                .trim_end_matches(":run")
                .to_string();
            let emails = self
                .jobs
                .lock()
                .unwrap()
                .get(&job)
                .cloned()
                .unwrap_or_default();
            let mut added = self.added.lock().unwrap();
            for e in emails {
                *added.entry(format!("google:{e}")).or_default() += 1;
            }
        }
        response
    }
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap()
}

#[tokio::test]
async fn consenting_people_are_added_exactly_once_per_audience_despite_duplicates_and_failing_calls()
 {
    // Two attempts per call: with SQS's 5 receives before the dead-letter queue, a three-call Google
    // run failing 30% of single attempts would otherwise dead-letter some people by chance.
    let h = Harness::new("aud-once", "apply", 2).await;
    let flaky = Flaky::default();
    Mock::given(method("POST"))
        .respond_with(flaky.clone())
        .mount(&h.meta)
        .await;
    Mock::given(method("POST"))
        .respond_with(flaky.clone())
        .mount(&h.google)
        .await;
    let emails: Vec<String> = (0..20).map(|i| format!("pessoa{i}@exemplo.com")).collect();
    for e in &emails[..10] {
        h.save_profile(e, Some(true), t(0)).await;
    }
    let actions: Vec<AudienceAction> = emails
        .iter()
        .map(|e| action(AUDIENCE_ADD, e, "granted", t(1)))
        .collect();
    // Every message delivered twice: in the same batch, and again after the first ones are done.
    h.enqueue(&actions).await;
    h.enqueue(&actions[..10]).await;
    h.drain(7).await;
    h.enqueue(&actions).await;
    h.drain(50).await;

    let added = flaky.added.lock().unwrap().clone();
    for e in &emails {
        let hash = sha256_hex(e);
        assert_eq!(
            added.get(&format!("meta:{hash}")),
            Some(&1),
            "Meta adds of {e}"
        );
        assert_eq!(
            added.get(&format!("google:{hash}")),
            Some(&1),
            "Google adds of {e}"
        );
        let members = h.memberships(e).await;
        assert_eq!(members.len(), 2, "{e}");
        assert!(
            members
                .iter()
                .all(|m| m.state == State::Added && !m.dry_run),
            "{members:?}"
        );
    }
    let calls = *flaky.calls.lock().unwrap();
    assert!(calls > 0);
    let dlq = support::drain(&h.sdk, &h.queue("AudienceDeadLetterQueue"), 0).await;
    assert!(dlq.is_empty(), "nothing in the dead-letter queue");
}

#[tokio::test]
async fn people_without_consent_are_skipped_and_recorded_and_a_later_grant_adds_them() {
    let h = Harness::new("aud-consent", "apply", 1).await;
    Mock::given(method("POST"))
        .and(path(format!("/v25.0/{META_AUDIENCE}/users")))
        .respond_with(meta_ok(1))
        .mount(&h.meta)
        .await;
    Mock::given(method("POST"))
        .respond_with(GoogleEmulator::default())
        .mount(&h.google)
        .await;
    // One refused on the profile (although the message said granted: the profile's latest answer
    // wins), one who never answered.
    h.save_profile("recusou@exemplo.com", Some(false), t(5))
        .await;
    h.enqueue(&[
        action(AUDIENCE_ADD, "recusou@exemplo.com", "granted", t(1)),
        action(AUDIENCE_ADD, "nunca@exemplo.com", "unknown", t(1)),
    ])
    .await;
    h.drain(10).await;
    assert!(
        h.meta.received_requests().await.unwrap().is_empty(),
        "no Meta call"
    );
    assert!(
        h.google.received_requests().await.unwrap().is_empty(),
        "no Google call"
    );
    for e in ["recusou@exemplo.com", "nunca@exemplo.com"] {
        let members = h.memberships(e).await;
        assert_eq!(members.len(), 2);
        assert!(
            members
                .iter()
                .all(|m| m.state == State::Skipped && m.reason.as_deref() == Some("no_consent")),
            "{members:?}"
        );
    }
    // The grant comes later: the router sends the add again.
    h.save_profile("recusou@exemplo.com", Some(true), t(10))
        .await;
    h.enqueue(&[action(
        AUDIENCE_ADD,
        "recusou@exemplo.com",
        "granted",
        t(11),
    )])
    .await;
    h.drain(10).await;
    assert_eq!(h.meta.received_requests().await.unwrap().len(), 1);
    assert_eq!(h.google.received_requests().await.unwrap().len(), 3);
    let members = h.memberships("recusou@exemplo.com").await;
    assert!(
        members.iter().all(|m| m.state == State::Added),
        "{members:?}"
    );
}

#[tokio::test]
async fn a_withdrawal_removes_the_person_from_every_audience_and_an_older_add_does_not_return() {
    let h = Harness::new("aud-remove", "apply", 1).await;
    Mock::given(method("POST"))
        .respond_with(meta_ok(1))
        .mount(&h.meta)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/v25.0/{META_AUDIENCE}/users")))
        .respond_with(meta_ok(1))
        .expect(1)
        .mount(&h.meta)
        .await;
    Mock::given(method("POST"))
        .respond_with(GoogleEmulator::default())
        .mount(&h.google)
        .await;
    let add = action(AUDIENCE_ADD, "sai@exemplo.com", "granted", t(1));
    h.enqueue(std::slice::from_ref(&add)).await;
    h.drain(10).await;
    // The person withdraws: the router sends audience.remove (reason withdrawal).
    h.enqueue(&[action(AUDIENCE_REMOVE, "sai@exemplo.com", "refused", t(20))])
        .await;
    h.drain(10).await;
    let members = h.memberships("sai@exemplo.com").await;
    assert_eq!(members.len(), 2);
    assert!(
        members
            .iter()
            .all(|m| m.state == State::Removed && m.reason.as_deref() == Some("withdrawal")),
        "{members:?}"
    );
    let google = h.google.received_requests().await.unwrap();
    let remove_ops: Vec<Value> = google
        .iter()
        .filter(|r| r.url.path().ends_with(":addOperations"))
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["operations"][0]["remove"].is_object())
        .collect();
    assert_eq!(remove_ops.len(), 1, "one Google remove job");
    assert_eq!(
        remove_ops[0]["operations"][0]["remove"]["userIdentifiers"][0]["hashedEmail"],
        json!(sha256_hex("sai@exemplo.com"))
    );
    let creates: Vec<Value> = google
        .iter()
        .filter(|r| r.url.path().ends_with(":create"))
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .collect();
    assert!(
        creates[1]["job"]["customerMatchUserListMetadata"]["consent"].is_null(),
        "a remove job states no consent"
    );
    // The old add, redelivered, does not put the person back.
    let before = h.meta.received_requests().await.unwrap().len();
    h.enqueue(&[add]).await;
    h.drain(10).await;
    assert_eq!(h.meta.received_requests().await.unwrap().len(), before);
    let members = h.memberships("sai@exemplo.com").await;
    assert!(members.iter().all(|m| m.state == State::Removed));
}

#[tokio::test]
async fn a_failed_google_job_is_reported_on_a_later_invocation() {
    let h = Harness::new("aud-job", "apply", 1).await;
    Mock::given(method("POST"))
        .respond_with(meta_ok(1))
        .mount(&h.meta)
        .await;
    Mock::given(method("POST"))
        .respond_with(GoogleEmulator {
            status: Some("FAILED"),
            ..GoogleEmulator::default()
        })
        .mount(&h.google)
        .await;
    h.enqueue(&[action(AUDIENCE_ADD, "job@exemplo.com", "granted", t(1))])
        .await;
    h.drain(10).await;
    let report = h.syncer.run(Vec::new(), Deadline::none()).await;
    assert_eq!(report.jobs_failed, 1);
    let searched = h
        .google
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("googleAds:search"))
        .count();
    assert_eq!(searched, 1);
    let again = h.syncer.run(Vec::new(), Deadline::none()).await;
    assert_eq!(again.jobs_failed, 0, "a failed job is reported once");
}

#[tokio::test]
async fn a_dry_run_records_the_exact_hashed_requests_and_sends_nothing() {
    let h = Harness::new("aud-dry", "dry_run", 1).await;
    h.enqueue(&[action(
        AUDIENCE_ADD,
        "John.Smith@gmail.com",
        "granted",
        t(1),
    )])
    .await;
    h.drain(10).await;
    assert!(h.meta.received_requests().await.unwrap().is_empty());
    assert!(h.google.received_requests().await.unwrap().is_empty());
    let items = support::scan_all(&h.sdk, h.stack.table("LeadsTable").unwrap()).await;
    let runs: Vec<Value> = items
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("AUDIENCE_RUN#"))
        .map(|i| serde_json::from_str(i["run"].as_s().unwrap()).unwrap())
        .collect();
    assert_eq!(runs.len(), 2);
    let meta = runs
        .iter()
        .find(|r| r["audience"]["platform"] == "meta")
        .unwrap();
    assert_eq!(meta["dry_run"], json!(true));
    assert_eq!(meta["requests"][0]["method"], "POST");
    assert_eq!(
        meta["requests"][0]["body"]["payload"]["data"][0][0],
        json!(sha256_hex("john.smith@gmail.com")),
        "Meta keeps the periods"
    );
    let google = runs
        .iter()
        .find(|r| r["audience"]["platform"] == "google")
        .unwrap();
    assert_eq!(google["requests"][0]["body"]["validateOnly"], json!(true));
    assert_eq!(
        google["requests"][1]["body"]["operations"][0]["create"]["userIdentifiers"][0]["hashedEmail"],
        json!(sha256_hex("johnsmith@gmail.com")),
        "Google drops Gmail periods"
    );
    let members = h.memberships("john.smith@gmail.com").await;
    assert!(members.iter().all(|m| m.state == State::Added && m.dry_run));
}

#[tokio::test]
async fn end_to_end_a_posted_lead_with_consent_reaches_leads_qualificados_as_dry_run_requests() {
    let api = support::api_url();
    let shared = StackInfo::load_from_env().unwrap();
    let email = format!(
        "aud-e2e-{}@exemplo.com",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let posted = reqwest::Client::new()
        .post(format!("{api}/leads"))
        .json(&json!({"nome": "Ana", "email": email, "interesse": "Software A", "consentimento": "sim"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    let sdk = support::sdk().await;
    let ledger = DynamoMemberships::from_sdk_config(&sdk, shared.table("LeadsTable").unwrap());
    let key = sha256_hex(&email);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let members = loop {
        let members = ledger.of_person(&key).await.unwrap();
        if members.len() == 2 && members.iter().all(|m| m.state == State::Added) {
            break members;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audience-sync did not add the lead: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        members
            .iter()
            .all(|m| m.dry_run && m.name == "leads_qualificados")
    );
    let items = support::scan_all(&sdk, shared.table("LeadsTable").unwrap()).await;
    let recorded = items
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("AUDIENCE_RUN#"))
        .any(|i| i["run"].as_s().unwrap().contains(&key));
    assert!(
        recorded,
        "the dry-run request with the lead's hashed email is recorded"
    );
}
