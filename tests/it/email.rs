//! email-trigger against moto (real SDK clients) with wiremock platforms asserting the documented request
//! shapes, plus the end-to-end flow on the local stack (form post -> router -> email-trigger, dry-run).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use email_trigger::setup::LiveTrigger;
use email_trigger::trigger::{Handled, enrollment_key};
use email_trigger::{SqsEvent, Trigger};
use fluxo::adapters::email::{DynamoEmail, SqsDelayed};
use fluxo::adapters::profiles::DynamoProfiles;
use fluxo::config::load_str;
use fluxo::connector::{Deadline, Secret};
use fluxo::domain::{Consent, Email, Lead, LeadId};
use fluxo::email::messages::{CommerceEvent, PRODUCT_VIEWED};
use fluxo::email::{EmailPlatforms, Platform, Product, subscriber_hash};
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::SystemClock;
use fluxo::routing::fanout;
use fluxo::routing::{Decision, Profile, ProfileStore};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Semaphore;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use xtask::stack::StackInfo;

use crate::support;

const MAILCHIMP_KEY: &str = "it-mailchimp-key-us21";
const BREVO_KEY: &str = "it-brevo-key";
const RD_KEY: &str = "it-rd-key";
const HUBSPOT_TOKEN: &str = "it-hubspot-token";
/// A Standard Webhooks secret: `whsec_` + base64 of the key bytes.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LIST: &str = "it0list";

struct Harness {
    sdk: SdkConfig,
    stack: StackInfo,
    trigger: LiveTrigger,
    profiles: DynamoProfiles,
}

/// The `[email_trigger]` section, live, with every platform at `base`.
fn config(base: &str, extra: &str) -> String {
    format!(
        r#"
[email_trigger]
dry_run = false
concurrency = 10
max_attempts = 3
base_delay_ms = 10
max_delay_ms = 200
timeout_ms = 3000

[email_trigger.mailchimp]
base_url = "{base}/3.0"
api_key = {{ env = "UNUSED_MC" }}
list_id = "{LIST}"

[email_trigger.brevo]
base_url = "{base}/v3"
api_key = {{ env = "UNUSED_BREVO" }}

[email_trigger.rdstation]
base_url = "{base}"
token = {{ env = "UNUSED_RD" }}

[email_trigger.webhook]
url = "{base}/hooks/fluxo"
secret = {{ env = "UNUSED_WH" }}

{extra}
"#
    )
}

impl Harness {
    async fn new(test: &str, config_text: &str) -> Harness {
        let (sdk, stack) = support::isolated_stack(test).await;
        let full = load_str("it.toml", config_text).unwrap().config;
        let cfg = full.email_trigger;
        // The CRM of [lead_router.crm] (none unless the test configures one): erasures reach it.
        let crm = fluxo::crm::Crm::from_config(
            &full.lead_router.crm,
            Some(Secret::new(HUBSPOT_TOKEN)),
            1,
        )
        .unwrap();
        let secrets = BTreeMap::from([
            (Platform::Mailchimp, Secret::new(MAILCHIMP_KEY)),
            (Platform::Brevo, Secret::new(BREVO_KEY)),
            (Platform::Rdstation, Secret::new(RD_KEY)),
            (Platform::Webhook, Secret::new(WEBHOOK_SECRET)),
        ]);
        let table = stack.table("LeadsTable").unwrap().to_string();
        let profiles = DynamoProfiles::from_sdk_config(&sdk, table.clone());
        let trigger = Trigger {
            store: DynamoEmail::from_sdk_config(&sdk, table.clone()),
            profiles: profiles.clone(),
            queue: SqsDelayed::from_sdk_config(
                &sdk,
                stack.queue("EmailQueue").unwrap().url.clone(),
            ),
            clock: SystemClock,
            platforms: EmailPlatforms::from_config(&cfg, secrets).unwrap(),
            crm,
            calls: Arc::new(Semaphore::new(cfg.concurrency)),
            lease: Duration::from_secs(30),
            config_version: "it".into(),
        };
        Harness {
            sdk,
            stack,
            trigger,
            profiles,
        }
    }

    /// Stores a routed profile for `email` (consent as given, these sequences) and returns its
    /// `email.enroll` messages as the router would send them.
    async fn person(&self, email: &str, consent: Option<bool>, sequences: &[&str]) -> Vec<String> {
        let at = chrono::Utc::now();
        let id = LeadId::new(at, fastrand_u128());
        let mut lead = Lead::with_email(Email::parse(email).unwrap());
        lead.name = Some("Ana Silva".into());
        lead.first_name = Some("Ana".into());
        lead.consent = consent.map(|granted| Consent {
            granted,
            at: None,
            text: Some("Aceito receber emails".into()),
        });
        let envelope = LeadEnvelope::new(id.clone(), format!("k-{email}"), at, None, lead);
        let mut profile = match self
            .profiles
            .load(&envelope.lead.email.sha256_hex())
            .await
            .unwrap()
        {
            Some(stored) => {
                let mut p = stored.value;
                p.merge(&envelope, at);
                self.save(&p, Some(stored.version)).await;
                p
            }
            None => {
                let mut p = Profile::new(&envelope, at);
                p.decision = Some(Decision {
                    sequences: sequences.iter().map(|s| s.to_string()).collect(),
                    audiences: vec!["leads_qualificados".into()],
                    ..Decision::default()
                });
                self.save(&p, None).await;
                p
            }
        };
        profile.decision = Some(Decision {
            sequences: sequences.iter().map(|s| s.to_string()).collect(),
            audiences: vec!["leads_qualificados".into()],
            ..Decision::default()
        });
        fanout::plan(&profile, &id, at)
            .email
            .iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect()
    }

    async fn save(&self, p: &Profile, expected: Option<u64>) {
        let saved = self.profiles.save(p, expected).await.unwrap();
        assert_eq!(saved, fluxo::routing::Saved::Saved);
    }

    async fn deliver(&self, bodies: &[String]) -> Vec<String> {
        let response = self.trigger.handle(sqs_event(bodies)).await;
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    async fn effect(&self, key: &str) -> Option<(String, Option<String>)> {
        self.trigger.store.effect(key).await.unwrap()
    }
}

fn fastrand_u128() -> u128 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    (chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u128) << 16
        | NEXT.fetch_add(1, Ordering::SeqCst) as u128
}

fn sqs_event(bodies: &[String]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"messageId": format!("m{i}"), "receiptHandle": format!("rh{i}"), "body": b}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}@exemplo.com", fastrand_u128())
}

fn basic(key: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("fluxo:{key}")))
}

fn member_path(email: &str) -> String {
    format!(
        "/3.0/lists/{LIST}/members/{}",
        subscriber_hash(&Email::parse(email).unwrap())
    )
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn an_enrollment_reaches_mailchimp_as_documented_member_tags_and_journey_with_basic_auth() {
    let server = MockServer::start().await;
    let h = Harness::new(
        "em-mc",
        &config(
            &server.uri(),
            &format!(
                "[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\", tags = [\"software_a\"], journey = {{ journey_id = 11, step_id = 22 }} }}\n"
            ),
        ),
    )
    .await;
    let email = unique("mc");
    Mock::given(method("PUT"))
        .and(path(member_path(&email)))
        .and(header("authorization", basic(MAILCHIMP_KEY).as_str()))
        .and(body_partial_json(
            json!({"email_address": email, "status_if_new": "subscribed",
                                       "merge_fields": {"FNAME": "Ana"}}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "h", "status": "subscribed"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/tags", member_path(&email))))
        .and(body_partial_json(
            json!({"tags": [{"name": "software_a", "status": "active"}]}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/3.0/customer-journeys/journeys/11/steps/22/actions/trigger",
        ))
        .and(body_partial_json(json!({"email_address": email})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let messages = h.person(&email, Some(true), &["s1"]).await;
    assert!(h.deliver(&messages).await.is_empty());
    // Delivered again: nothing more reaches Mailchimp.
    assert!(h.deliver(&messages).await.is_empty());
    let key = enrollment_key(&Email::parse(&email).unwrap().sha256_hex(), "s1");
    assert_eq!(h.effect(&key).await.unwrap().0, "done");
    server.verify().await;
}

#[tokio::test]
async fn mailchimp_member_exists_is_done_a_forgotten_email_is_recorded_and_a_429_is_retried() {
    let server = MockServer::start().await;
    let h = Harness::new(
        "em-mc-err",
        &config(
            &server.uri(),
            &format!("[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\" }}\n"),
        ),
    )
    .await;
    let exists = unique("exists");
    let forgotten = unique("forgotten");
    let busy = unique("busy");
    let problem = |title: &str| {
        ResponseTemplate::new(400)
            .insert_header("content-type", "application/problem+json")
            .set_body_json(
                json!({"type": "https://mailchimp.com/developer/marketing/docs/errors/",
                                   "title": title, "status": 400, "detail": "d", "instance": "i"}),
            )
    };
    Mock::given(method("PUT"))
        .and(path(member_path(&exists)))
        .respond_with(problem("Member Exists"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(member_path(&forgotten)))
        .respond_with(problem("Forgotten Email Not Subscribed"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(member_path(&busy)))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(json!({"title": "Too Many Requests", "status": 429})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(member_path(&busy)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"})))
        .expect(1)
        .mount(&server)
        .await;
    let mut messages = Vec::new();
    for e in [&exists, &forgotten, &busy] {
        messages.extend(h.person(e, Some(true), &["s1"]).await);
    }
    assert!(
        h.deliver(&messages).await.is_empty(),
        "no message needs a retry"
    );
    let key = |e: &str| enrollment_key(&Email::parse(e).unwrap().sha256_hex(), "s1");
    assert_eq!(h.effect(&key(&exists)).await.unwrap().0, "done");
    assert_eq!(h.effect(&key(&busy)).await.unwrap().0, "done");
    let (state, reason) = h.effect(&key(&forgotten)).await.unwrap();
    assert_eq!(state, "failed");
    assert!(
        reason.unwrap().contains("re-subscribe"),
        "the reason is recorded"
    );
    // A permanent failure is not retried on a redelivery.
    assert!(h.deliver(&messages).await.is_empty());
    server.verify().await;
}

#[tokio::test]
async fn brevo_upserts_with_its_api_key_honours_its_rate_limit_and_records_a_duplicate_parameter() {
    let server = MockServer::start().await;
    let h = Harness::new(
        "em-brevo",
        &config(
            &server.uri(),
            "[email_trigger.sequences.s1]\nbrevo = { list_ids = [2, 7] }\n",
        ),
    )
    .await;
    let ok = unique("brevo");
    let dup = unique("dup");
    Mock::given(method("POST"))
        .and(path("/v3/contacts"))
        .and(header("api-key", BREVO_KEY))
        .and(body_partial_json(
            json!({"email": ok, "listIds": [2, 7], "updateEnabled": true}),
        ))
        .respond_with(ResponseTemplate::new(429).insert_header("x-sib-ratelimit-reset", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/contacts"))
        .and(header("api-key", BREVO_KEY))
        .and(body_partial_json(json!({"email": ok})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 123})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/contacts"))
        .and(body_partial_json(json!({"email": dup})))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"code": "duplicate_parameter", "message": "Unable to create contact, SMS is already associated with another Contact"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let mut messages = h.person(&ok, Some(true), &["s1"]).await;
    messages.extend(h.person(&dup, Some(true), &["s1"]).await);
    let started = Instant::now();
    assert!(h.deliver(&messages).await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "the retry waited for x-sib-ratelimit-reset (capped by max_delay_ms)"
    );
    let key = |e: &str| enrollment_key(&Email::parse(e).unwrap().sha256_hex(), "s1");
    assert_eq!(h.effect(&key(&ok)).await.unwrap().0, "done");
    let (state, reason) = h.effect(&key(&dup)).await.unwrap();
    assert_eq!(state, "failed");
    assert!(reason.unwrap().contains("duplicate_parameter"));
    server.verify().await;
}

#[tokio::test]
async fn rd_station_gets_a_conversion_with_the_consents_legal_basis_and_a_400_is_recorded() {
    let server = MockServer::start().await;
    let h = Harness::new(
        "em-rd",
        &config(
            &server.uri(),
            "[email_trigger.sequences.nutricao_geral]\nrdstation = {}\n",
        ),
    )
    .await;
    let ok = unique("rd");
    let bad = unique("rdbad");
    Mock::given(method("POST"))
        .and(path("/platform/conversions"))
        .and(wiremock::matchers::query_param("api_key", RD_KEY))
        .and(body_partial_json(json!({"event_type": "CONVERSION", "event_family": "CDP", "payload": {
            "conversion_identifier": "nutricao_geral", "email": ok,
            "legal_bases": [{"category": "communications", "type": "consent", "status": "granted"}]}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"event_uuid": "u1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/platform/conversions"))
        .and(body_partial_json(json!({"payload": {"email": bad}})))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"errors": [{"error_type": "INVALID_OPTION",
            "error_message": "Must be one of [CONVERSION]", "path": "$.body.event_type"}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut messages = h.person(&ok, Some(true), &["nutricao_geral"]).await;
    messages.extend(h.person(&bad, Some(true), &["nutricao_geral"]).await);
    assert!(h.deliver(&messages).await.is_empty());
    let key = enrollment_key(&Email::parse(&bad).unwrap().sha256_hex(), "nutricao_geral");
    let (state, reason) = h.effect(&key).await.unwrap();
    assert_eq!(state, "failed");
    assert!(reason.unwrap().contains("Must be one of"));
    server.verify().await;
}

/// A webhook receiver that checks Standard Webhooks signatures with its own implementation (the `hmac`
/// crate directly, not Fluxo's signer) and counts the deliveries it accepted.
struct Verifier {
    accepted: Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Respond for Verifier {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let h = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (id, ts, sig) = (
            h("webhook-id"),
            h("webhook-timestamp"),
            h("webhook-signature"),
        );
        let key = STANDARD
            .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&request.body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        let fresh = ts
            .parse::<i64>()
            .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
        if id.is_empty() || !fresh || !sig.split(' ').any(|s| s == expected) {
            return ResponseTemplate::new(401);
        }
        self.accepted
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&request.body).unwrap());
        ResponseTemplate::new(204)
    }
}

#[tokio::test]
async fn the_signed_webhook_passes_an_independent_standard_webhooks_verification() {
    let server = MockServer::start().await;
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/hooks/fluxo"))
        .respond_with(Verifier {
            accepted: accepted.clone(),
        })
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-hook",
        &config(
            &server.uri(),
            "[email_trigger.sequences.s1]\nwebhook = { event_type = \"sequence.start\" }\n",
        ),
    )
    .await;
    let email = unique("hook");
    let messages = h.person(&email, Some(true), &["s1"]).await;
    assert!(h.deliver(&messages).await.is_empty());
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one accepted, verified delivery");
    assert_eq!(got[0]["type"], "sequence.start");
    assert_eq!(got[0]["data"]["email"], email.as_str());
    assert_eq!(got[0]["data"]["consent"]["status"], "granted");
}

/// Fails three calls in ten with a 503, deterministically, and counts what it answered 2xx, per path.
struct Flaky {
    n: AtomicUsize,
    ok: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

impl Respond for Flaky {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        if n % 10 < 3 {
            return ResponseTemplate::new(503);
        }
        *self
            .ok
            .lock()
            .unwrap()
            .entry(format!("{} {}", request.method, request.url.path()))
            .or_default() += 1;
        ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"}))
    }
}

#[tokio::test]
async fn with_consent_every_message_twice_and_30_percent_failures_make_exactly_one_call_per_sequence()
 {
    let server = MockServer::start().await;
    let ok = Arc::new(std::sync::Mutex::new(HashMap::new()));
    Mock::given(wiremock::matchers::any())
        .respond_with(Flaky {
            n: AtomicUsize::new(0),
            ok: ok.clone(),
        })
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-flaky",
        // One attempt per delivery: every failure goes back to SQS, the worst case for duplicates.
        &config(
            &server.uri(),
            &format!(
                "[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\", journey = {{ journey_id = 1, step_id = 2 }} }}\n[email_trigger.sequences.s2]\nrdstation = {{}}\n"
            ),
        )
        .replace("max_attempts = 3", "max_attempts = 1"),
    )
    .await;
    let people: Vec<String> = (0..5).map(|i| unique(&format!("flaky{i}"))).collect();
    let mut messages = Vec::new();
    for p in &people {
        messages.extend(h.person(p, Some(true), &["s1", "s2"]).await);
    }
    // Every message delivered twice (both copies queued), and every failed delivery queued again, as
    // SQS does, until nothing fails.
    let mut queue: Vec<String> = messages
        .iter()
        .flat_map(|m| [m.clone(), m.clone()])
        .collect();
    let mut rounds = 0;
    while !queue.is_empty() && rounds < 60 {
        let batch: Vec<String> = queue.drain(..queue.len().min(10)).collect();
        for id in h.deliver(&batch).await {
            let i: usize = id.trim_start_matches('m').parse().unwrap();
            queue.push(batch[i].clone());
        }
        rounds += 1;
    }
    assert!(queue.is_empty(), "every message was handled in the end");
    let ok = ok.lock().unwrap().clone();
    for p in &people {
        let member = format!("PUT {}", member_path(p));
        assert_eq!(
            ok.get(&member),
            Some(&1),
            "one member upsert for {p}: {ok:?}"
        );
        let key = Email::parse(p).unwrap().sha256_hex();
        for s in ["s1", "s2"] {
            assert_eq!(
                h.effect(&enrollment_key(&key, s)).await.unwrap().0,
                "done",
                "{p} {s}"
            );
        }
    }
    let journeys = ok.get("POST /3.0/customer-journeys/journeys/1/steps/2/actions/trigger");
    assert_eq!(
        journeys,
        Some(&people.len()),
        "one journey trigger per person: {ok:?}"
    );
    let conversions = ok.get("POST /platform/conversions");
    assert_eq!(
        conversions,
        Some(&people.len()),
        "one RD conversion per person: {ok:?}"
    );
}

#[tokio::test]
async fn without_consent_nothing_is_sent_and_a_later_grant_enrolls_then() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"})))
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-consent",
        &config(
            &server.uri(),
            &format!("[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\" }}\n"),
        ),
    )
    .await;
    let email = unique("noconsent");
    let key = enrollment_key(&Email::parse(&email).unwrap().sha256_hex(), "s1");
    let first = h.person(&email, None, &["s1"]).await;
    assert!(h.deliver(&first).await.is_empty());
    assert!(
        requests(&server).await.is_empty(),
        "no platform call without consent"
    );
    assert_eq!(
        h.effect(&key).await.unwrap(),
        ("skipped".to_string(), Some("no_consent".to_string()))
    );
    // A later submission grants consent: the router sends the enrollment again, and now it happens.
    let later = h.person(&email, Some(true), &["s1"]).await;
    assert!(h.deliver(&later).await.is_empty());
    assert_eq!(h.effect(&key).await.unwrap().0, "done");
    assert_eq!(requests(&server).await.len(), 1);
    // The first message redelivered now changes nothing.
    assert!(h.deliver(&first).await.is_empty());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_withdrawal_unsubscribes_on_each_platform_the_person_was_sent_to() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "unsubscribed"})))
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-withdraw",
        &config(
            &server.uri(),
            &format!("[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\" }}\n"),
        ),
    )
    .await;
    let email = unique("withdraw");
    let enroll = h.person(&email, Some(true), &["s1"]).await;
    assert!(h.deliver(&enroll).await.is_empty());
    // The withdrawal: a submission with consent `no` makes the router send email.unsubscribe.
    let parsed = Email::parse(&email).unwrap();
    let unsubscribe = fanout::unsubscribe(
        &parsed.sha256_hex(),
        &parsed,
        &LeadId::new(chrono::Utc::now(), fastrand_u128()),
        fanout::ConsentSnapshot {
            status: "refused".into(),
            at: None,
            text: None,
        },
        fanout::REASON_WITHDRAWAL,
        chrono::Utc::now(),
    );
    let body = serde_json::to_string(&unsubscribe).unwrap();
    assert!(h.deliver(std::slice::from_ref(&body)).await.is_empty());
    let patches: Vec<Request> = requests(&server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == "PATCH")
        .collect();
    assert_eq!(
        patches.len(),
        1,
        "Mailchimp, the one platform the person was sent to"
    );
    assert_eq!(patches[0].url.path(), member_path(&email));
    let sent: Value = serde_json::from_slice(&patches[0].body).unwrap();
    assert_eq!(sent, json!({"status": "unsubscribed"}));
    assert_eq!(
        h.effect(&unsubscribe.header.effect_key).await.unwrap().0,
        "done"
    );
    // The enrollment is forgotten: a later grant would enroll again.
    assert!(
        h.effect(&enrollment_key(&parsed.sha256_hex(), "s1"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_batch_of_ten_at_200_ms_per_call_takes_about_one_calls_latency() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(wiremock::matchers::path_regex("^/3.0/lists/fastlist/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(wiremock::matchers::path_regex(format!(
            "^/3.0/lists/{LIST}/"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "subscribed"}))
                .set_delay(Duration::from_millis(200)),
        )
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-batch",
        &config(
            &server.uri(),
            &format!(
                "[email_trigger.sequences.fast]\nmailchimp = {{ list_id = \"fastlist\" }}\n[email_trigger.sequences.slow]\nmailchimp = {{ list_id = \"{LIST}\" }}\n"
            ),
        ),
    )
    .await;
    // The same batch twice: platform calls answering at once, then taking 200 ms each. The difference
    // is what the platform's latency costs a batch (the rest is the ledger's writes, on moto).
    let mut timings = Vec::new();
    for sequence in ["fast", "slow"] {
        let mut messages = Vec::new();
        for i in 0..10 {
            messages.extend(
                h.person(&unique(&format!("{sequence}{i}")), Some(true), &[sequence])
                    .await,
            );
        }
        let started = Instant::now();
        assert!(h.deliver(&messages).await.is_empty());
        timings.push(started.elapsed());
    }
    let added = timings[1].saturating_sub(timings[0]);
    println!(
        "FIGURE email-trigger batch of 10: {} ms with instant platform calls, {} ms with 200 ms calls: +{} ms",
        timings[0].as_millis(),
        timings[1].as_millis(),
        added.as_millis()
    );
    assert_eq!(requests(&server).await.len(), 20);
    assert!(
        added < Duration::from_millis(800),
        "ten 200 ms calls ran concurrently, not one after the other (2000 ms): +{added:?}"
    );
}

#[tokio::test]
async fn product_views_become_one_throttled_recommendation_without_bought_products() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-reco",
        &config(
            &server.uri(),
            "[email_trigger.recommendations]\nenabled = true\nwindow_secs = 8\nperiod_hours = 24\nmax_products = 2\nplatforms = [\"mailchimp\"]\n",
        ),
    )
    .await;
    let email = unique("reco");
    h.person(&email, Some(true), &[]).await;
    let product = |id: &str| Product {
        id: id.into(),
        name: format!("Produto {id}"),
        url: Some(format!("https://loja.example/p/{id}")),
        image_url: None,
        price: Some(99.9),
        currency: Some("BRL".into()),
        category: Some("tenis".into()),
    };
    let event = |id: &str, kind: &str, products: Vec<Product>| {
        serde_json::to_string(&CommerceEvent {
            version: 1,
            kind: kind.into(),
            event_id: format!("ev-{id}-{}", fastrand_u128()),
            email: Some(Email::parse(&email).unwrap()),
            customer_id: Some(format!("cust-{email}")),
            products,
            occurred_at: chrono::Utc::now(),
        })
        .unwrap()
    };
    let views = vec![
        event("a", PRODUCT_VIEWED, vec![product("a")]),
        event("b", PRODUCT_VIEWED, vec![product("b")]),
        event("c", PRODUCT_VIEWED, vec![product("c")]),
        event(
            "o",
            fluxo::email::messages::ORDER_COMPLETED,
            vec![product("b")],
        ),
    ];
    for v in &views {
        assert!(h.deliver(std::slice::from_ref(v)).await.is_empty());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first view scheduled one delayed email.recommend on the email queue, visible once its 8 s
    // window has passed. (The deliveries above must all fall in that window, even on a loaded machine.)
    let email_queue = h.stack.queue("EmailQueue").unwrap().url.clone();
    // Polls the email queue until a message is visible (a delayed one shows once its delay is over),
    // then drains what is there; empty after `within`.
    let delayed = |within: Duration| {
        let (sdk, url) = (h.sdk.clone(), email_queue.clone());
        async move {
            let deadline = Instant::now() + within;
            loop {
                let got = support::drain(&sdk, &url, 30).await;
                if !got.is_empty() || Instant::now() > deadline {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let queued = delayed(Duration::from_secs(30)).await;
    let bodies: Vec<String> = queued
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect();
    assert_eq!(bodies.len(), 1, "one recommendation per window: {bodies:?}");
    assert!(bodies[0].contains("email.recommend"));
    let handled = h
        .trigger
        .process(Some(&bodies[0]), Deadline::none())
        .await
        .unwrap();
    assert_eq!(handled, Handled::Done(vec![Platform::Mailchimp]));
    let events: Vec<Request> = requests(&server).await;
    let sent: Vec<Value> = events
        .iter()
        .filter(|r| r.url.path().ends_with("/events"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["name"], "product_recommendation");
    // The last two distinct products, most recent first, without the one bought (b).
    assert_eq!(sent[0]["properties"]["product_1_id"], "c");
    assert_eq!(sent[0]["properties"]["product_2_id"], "a");
    assert!(sent[0]["properties"].get("product_3_id").is_none());
    // A new view by customer id alone (linked by the events above) opens a new window; its
    // recommendation is throttled by the 24-hour period.
    let by_customer = serde_json::to_string(&CommerceEvent {
        version: 1,
        kind: PRODUCT_VIEWED.into(),
        event_id: format!("ev-d-{}", fastrand_u128()),
        email: None,
        customer_id: Some(format!("cust-{email}")),
        products: vec![product("d")],
        occurred_at: chrono::Utc::now(),
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        h.deliver(std::slice::from_ref(&by_customer))
            .await
            .is_empty()
    );
    // Its recommendation is delayed by the new 8 s window: wait for it, with a bound.
    let queued = delayed(Duration::from_secs(30)).await;
    assert_eq!(queued.len(), 1);
    let handled = h
        .trigger
        .process(queued[0].body(), Deadline::none())
        .await
        .unwrap();
    assert_eq!(handled, Handled::Skipped("throttled".into()));
}

#[tokio::test]
async fn an_erasure_deletes_the_person_everywhere_it_can_and_journals_it_without_pii() {
    let server = MockServer::start().await;
    // HubSpot's GDPR delete, as documented: POST, bearer token, the email as objectId; 204.
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/gdpr-delete"))
        .and(header(
            "authorization",
            format!("Bearer {HUBSPOT_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-erase",
        &config(
            &server.uri(),
            &format!(
                "[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\" }}\n\n{}",
                hubspot_crm(&server.uri())
            ),
        ),
    )
    .await;
    let email = unique("erase");
    let enroll = h.person(&email, Some(true), &["s1"]).await;
    assert!(h.deliver(&enroll).await.is_empty());
    let table = h.stack.table("LeadsTable").unwrap().to_string();
    let fp = Email::parse(&email).unwrap().fingerprint();
    let mine = |items: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
        items
            .into_iter()
            .filter(|i| i.get("email_fp").and_then(|v| v.as_s().ok()) == Some(&fp))
            .count()
    };
    assert!(
        mine(support::scan_all(&h.sdk, &table).await) >= 3,
        "profile, email record, ledger"
    );
    let audience = fluxo::adapters::sqs::SqsQueue::from_sdk_config(
        &h.sdk,
        h.stack.queue("AudienceQueue").unwrap().url.clone(),
    );
    let report = email_trigger::erase::erase(&h.trigger, &audience, &email, Deadline::none())
        .await
        .unwrap();
    assert_eq!(
        mine(support::scan_all(&h.sdk, &table).await),
        0,
        "nothing left under the fingerprint"
    );
    assert!(report.records_deleted >= 3);
    assert_eq!(
        report.platforms.get("mailchimp").map(String::as_str),
        Some("deleted")
    );
    assert_eq!(report.crm, "deleted (hubspot)");
    let all = requests(&server).await;
    let deletes: Vec<&Request> = all
        .iter()
        .filter(|r| r.url.path().ends_with("/actions/delete-permanent"))
        .collect();
    assert_eq!(deletes.len(), 1);
    let gdpr: Vec<&Request> = all
        .iter()
        .filter(|r| r.url.path() == "/crm/v3/objects/contacts/gdpr-delete")
        .collect();
    assert_eq!(gdpr.len(), 1, "one GDPR delete in HubSpot");
    assert_eq!(gdpr[0].method.as_str(), "POST");
    assert_eq!(
        serde_json::from_slice::<Value>(&gdpr[0].body).unwrap(),
        json!({"objectId": email, "idProperty": "email"})
    );
    let removals = support::drain(&h.sdk, &h.stack.queue("AudienceQueue").unwrap().url, 30).await;
    assert_eq!(removals.len(), 1);
    let removal = fluxo::routing::AudienceAction::from_json(removals[0].body().unwrap()).unwrap();
    assert_eq!(removal.header.kind, fanout::AUDIENCE_REMOVE);
    assert_eq!(removal.header.reason.as_deref(), Some("erasure"));
    let journal: Vec<_> = support::scan_all(&h.sdk, &table)
        .await
        .into_iter()
        .filter(|i| i.get("erased_fp").and_then(|v| v.as_s().ok()) == Some(&fp))
        .collect();
    assert_eq!(journal.len(), 1, "the erasure is journaled");
    let text = format!("{:?}", journal[0]);
    assert!(!text.contains(&email), "no raw email in the journal");
    assert!(
        text.contains("deleted (hubspot)"),
        "the CRM outcome is journaled"
    );
}

/// `[lead_router.crm]` live on HubSpot at `base`, with quick retries.
fn hubspot_crm(base: &str) -> String {
    format!(
        "[lead_router.crm]\nconnector = \"hubspot\"\ndry_run = false\nmax_attempts = 2\nbase_delay_ms = 10\nmax_delay_ms = 50\n\n[lead_router.crm.hubspot]\nbase_url = \"{base}\"\ntoken = {{ env = \"UNUSED_HS\" }}\n"
    )
}

/// A CRM that keeps failing fails the erasure before Fluxo deletes anything, so a rerun still finds
/// where the person was sent; the rerun, once the CRM answers, erases them, and a CRM that no longer
/// knows them (404) is reported already gone.
#[tokio::test]
async fn a_crm_failure_fails_the_erasure_before_fluxos_records_are_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/gdpr-delete"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/gdpr-delete"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "subscribed"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let h = Harness::new(
        "em-erase-crm",
        &config(
            &server.uri(),
            &format!(
                "[email_trigger.sequences.s1]\nmailchimp = {{ list_id = \"{LIST}\" }}\n\n{}",
                hubspot_crm(&server.uri())
            ),
        ),
    )
    .await;
    let email = unique("erase-crm");
    let enroll = h.person(&email, Some(true), &["s1"]).await;
    assert!(h.deliver(&enroll).await.is_empty());
    let table = h.stack.table("LeadsTable").unwrap().to_string();
    let fp = Email::parse(&email).unwrap().fingerprint();
    let mine = |items: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
        items
            .into_iter()
            .filter(|i| i.get("email_fp").and_then(|v| v.as_s().ok()) == Some(&fp))
            .count()
    };
    let before = mine(support::scan_all(&h.sdk, &table).await);
    let audience = fluxo::adapters::sqs::SqsQueue::from_sdk_config(
        &h.sdk,
        h.stack.queue("AudienceQueue").unwrap().url.clone(),
    );
    let failed = email_trigger::erase::erase(&h.trigger, &audience, &email, Deadline::none())
        .await
        .unwrap_err();
    assert!(
        matches!(failed, email_trigger::erase::EraseError::Crm { .. }),
        "{failed}"
    );
    assert_eq!(
        mine(support::scan_all(&h.sdk, &table).await),
        before,
        "nothing deleted in Fluxo"
    );
    let report = email_trigger::erase::erase(&h.trigger, &audience, &email, Deadline::none())
        .await
        .unwrap();
    assert_eq!(report.crm, "already gone (hubspot)");
    assert_eq!(mine(support::scan_all(&h.sdk, &table).await), 0);
}

/// End to end on the stack: the form posts reach email-trigger (dry-run in tests/e2e/fluxo.toml).
#[tokio::test]
async fn end_to_end_a_form_post_with_consent_is_enrolled_once_and_one_without_consent_is_not() {
    let api = support::api_url();
    let shared = StackInfo::load_from_env().unwrap();
    let table = shared.table("LeadsTable").unwrap().to_string();
    let sdk = support::sdk().await;
    let store = DynamoEmail::from_sdk_config(&sdk, table);
    let yes = unique("e2e-yes");
    let no = unique("e2e-no");
    for (email, consent) in [(&yes, true), (&no, false)] {
        // Consent "yes", or never answered (a "no" would be a withdrawal, which unsubscribes instead).
        let mut payload = json!({"nome": "João", "email": email, "origem": "Webinar XYZ",
                                 "interesse": "Software A"});
        if consent {
            payload["consent"] = json!("yes");
        }
        let posted = reqwest::Client::new()
            .post(format!("{api}/leads"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(
            posted.status().as_u16(),
            202,
            "{}",
            posted.text().await.unwrap_or_default()
        );
    }
    let key = |e: &str| {
        enrollment_key(
            &Email::parse(e).unwrap().sha256_hex(),
            "nutricao_interesse_software_a",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut done, mut skipped) = (None, None);
    while (done.is_none() || skipped.is_none()) && Instant::now() < deadline {
        done = store
            .effect(&key(&yes))
            .await
            .unwrap()
            .filter(|(s, _)| s == "done");
        skipped = store
            .effect(&key(&no))
            .await
            .unwrap()
            .filter(|(s, _)| s == "skipped");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(done.is_some(), "the lead with consent reached its sequence");
    assert_eq!(skipped.unwrap().1.as_deref(), Some("no_consent"));
    let detail: Value =
        serde_json::from_str(&store.effect_detail(&key(&yes)).await.unwrap().unwrap()).unwrap();
    let put = &detail["mailchimp"]["dry_run"][0];
    assert_eq!(put["method"], "PUT");
    assert_eq!(put["body"]["email_address"], yes.as_str());
}
