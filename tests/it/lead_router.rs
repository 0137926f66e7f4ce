//! lead-router against moto (real SDK clients) with wiremock as the CRM, plus the end-to-end flow on the stack.
//!
//! The in-process tests drive the handler the way Lambda's SQS event source does: receive a batch from an
//! isolated copy of the leads queue, invoke the handler, delete what succeeded, and make the failed
//! messages visible again, so the queue's redrive policy moves a message that keeps failing to the DLQ.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::adapters::profiles::DynamoProfiles;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::config::load_str;
use fluxo::connector::{Deadline, Secret};
use fluxo::crm::Crm;
use fluxo::domain::{Email, Lead, LeadId};
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::SystemClock;
use fluxo::routing::profile::{MAX_CRM_FAILURES, MAX_CUSTOM_FIELDS};
use fluxo::routing::{AudienceAction, CrmRecord, EmailAction, RuleSet};
use lead_router::{LiveRouter, Router, SqsBatchResponse, SqsEvent};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};
use xtask::stack::StackInfo;

use crate::support;

const TOKEN: &str = "it-crm-token";

/// The article's rules with the REST CRM live at `crm_url`, and quick retries.
fn config_text(crm_url: &str) -> String {
    let article = include_str!("../../config/fluxo.toml");
    let rules_end = article.find("[lead_router.crm]").unwrap_or(article.len());
    format!(
        r#"{rules}
[lead_router.crm]
connector = "rest"
dry_run = false
connect_timeout_ms = 500
timeout_ms = 3000
max_attempts = 3
base_delay_ms = 20
max_delay_ms = 2000

[lead_router.crm.rest]
url = "{crm_url}"
token = {{ env = "IT_CRM_TOKEN_UNUSED" }}
"#,
        rules = &article[..rules_end]
    )
}

struct Harness {
    sdk: SdkConfig,
    stack: StackInfo,
    crm: MockServer,
    router: LiveRouter,
}

impl Harness {
    async fn new(test: &str) -> Result<Harness> {
        let (sdk, stack) = support::isolated_stack(test).await;
        let crm = MockServer::start().await;
        let config = load_str("it.toml", &config_text(&format!("{}/v1/leads", crm.uri())))?.config;
        let router_config = config.lead_router;
        let profiles = DynamoProfiles::from_sdk_config(&sdk, stack.table("LeadsTable")?);
        let router = Router {
            profiles: profiles.clone(),
            ledger: profiles,
            crm: Crm::from_config(&router_config.crm, Some(Secret::new(TOKEN)), 10)?,
            email_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("EmailQueue")?.url),
            audience_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("AudienceQueue")?.url),
            leads_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("LeadsQueue")?.url),
            clock: SystemClock,
            rules: RuleSet::compile(&router_config)?,
            concurrency: 10,
            lease: Duration::from_secs(60),
            config_version: "it".into(),
        };
        Ok(Harness {
            sdk,
            stack,
            crm,
            router,
        })
    }

    fn queue_url(&self, logical_id: &str) -> Result<String> {
        Ok(self.stack.queue(logical_id)?.url.clone())
    }

    async fn enqueue(&self, envelope: &LeadEnvelope) -> Result<()> {
        aws_sdk_sqs::Client::new(&self.sdk)
            .send_message()
            .queue_url(self.queue_url("LeadsQueue")?)
            .message_body(envelope.to_json()?)
            .send()
            .await?;
        Ok(())
    }

    /// One poll of the event source: receive a batch, invoke, delete the successes, release the failures.
    /// Returns the response and the ids of the messages in the batch.
    async fn deliver(&self) -> Result<(SqsBatchResponse, Vec<String>)> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = self.queue_url("LeadsQueue")?;
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .wait_time_seconds(1)
            .send()
            .await?;
        let messages = out.messages().to_vec();
        let records: Vec<Value> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(), "eventSource": "aws:sqs"}))
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))?;
        let response = self.router.handle(event).await;
        let failed: BTreeSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for m in &messages {
            let handle = m.receipt_handle().unwrap_or_default();
            if failed.contains(m.message_id().unwrap_or_default()) {
                sqs.change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await?;
            } else {
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
        let ids = messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect();
        Ok((response, ids))
    }

    async fn drained(&self, logical_id: &str) -> Result<Vec<String>> {
        Ok(support::drain(&self.sdk, &self.queue_url(logical_id)?, 30)
            .await
            .iter()
            .filter_map(|m| m.body().map(str::to_string))
            .collect())
    }

    async fn profile_item(&self, email: &Email) -> Result<HashMap<String, AttributeValue>> {
        Ok(aws_sdk_dynamodb::Client::new(&self.sdk)
            .get_item()
            .table_name(self.stack.table("LeadsTable")?)
            .key(
                "pk",
                AttributeValue::S(format!("PROFILE#{}", email.sha256_hex())),
            )
            .key("sk", AttributeValue::S("PROFILE".into()))
            .consistent_read(true)
            .send()
            .await?
            .item()
            .cloned()
            .unwrap_or_default())
    }

    async fn crm_record(&self, email: &Email) -> Result<CrmRecord> {
        let item = self.profile_item(email).await?;
        let json = item
            .get("crm")
            .and_then(|v| v.as_s().ok())
            .context("a CRM record on the profile")?;
        Ok(serde_json::from_str(json)?)
    }

    async fn crm_requests(&self) -> Vec<Request> {
        self.crm.received_requests().await.unwrap_or_default()
    }
}

fn envelope(email: &str, interest: Option<&str>) -> Result<LeadEnvelope> {
    let now = chrono::Utc::now();
    let mut lead = Lead::with_email(Email::parse(email)?);
    lead.name = Some("João".into());
    lead.company = Some("Empresa X".into());
    lead.source = Some("Webinar XYZ".into());
    lead.interest = interest.map(str::to_string);
    let random = u128::try_from(now.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
    Ok(LeadEnvelope::new(
        LeadId::new(now, random),
        format!("it-{email}"),
        now,
        None,
        lead,
    ))
}

fn created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"id": "crm-1"}))
}

#[tokio::test]
async fn a_lead_is_upserted_into_the_crm_and_fanned_out_to_both_queues() {
    let h = Harness::new("lr-happy").await.unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/leads"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_partial_json(
            json!({"email": "joao@exemplo.com", "status": "novo_lead", "company": "Empresa X"}),
        ))
        .respond_with(created())
        .expect(1)
        .mount(&h.crm)
        .await;
    let lead = envelope("joao@exemplo.com", Some("Software A")).unwrap();
    h.enqueue(&lead).await.unwrap();

    let (response, ids) = h.deliver().await.unwrap();

    assert_eq!(ids.len(), 1);
    assert!(response.batch_item_failures.is_empty());
    let emails = h.drained("EmailQueue").await.unwrap();
    assert_eq!(emails.len(), 1);
    let email = EmailAction::from_json(&emails[0]).unwrap();
    assert_eq!(email.sequence, "nutricao_interesse_software_a");
    assert_eq!(email.header.lead_id, lead.lead_id);
    let audiences = h.drained("AudienceQueue").await.unwrap();
    assert_eq!(audiences.len(), 1);
    assert_eq!(
        AudienceAction::from_json(&audiences[0]).unwrap().audience,
        "leads_qualificados"
    );
    let record = h.crm_record(&lead.lead.email).await.unwrap();
    assert_eq!(record.state, "done");
    assert_eq!(record.contact_id.as_deref(), Some("crm-1"));
    let item = h.profile_item(&lead.lead.email).await.unwrap();
    assert_eq!(
        item.get("segment")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("interesse_software_a")
    );
    assert!(
        h.drained("LeadsQueue").await.unwrap().is_empty(),
        "the message was deleted"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_within_the_invocation_and_then_succeeds() {
    let h = Harness::new("lr-429").await.unwrap();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(created())
        .with_priority(2)
        .mount(&h.crm)
        .await;
    let lead = envelope("ana@exemplo.com", None).unwrap();
    h.enqueue(&lead).await.unwrap();

    let started = Instant::now();
    let (response, _) = h.deliver().await.unwrap();

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.crm_requests().await.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the Retry-After of 1 s was honoured"
    );
    assert_eq!(h.crm_record(&lead.lead.email).await.unwrap().state, "done");
}

#[tokio::test]
async fn repeated_500s_end_in_the_dead_letter_queue_with_the_reason_kept() {
    let h = Harness::new("lr-500").await.unwrap();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("crm is down"))
        .mount(&h.crm)
        .await;
    let lead = envelope("maria@exemplo.com", None).unwrap();
    h.enqueue(&lead).await.unwrap();

    let mut deliveries = 0;
    let mut dead = Vec::new();
    for _ in 0..10 {
        let (response, ids) = h.deliver().await.unwrap();
        if !ids.is_empty() {
            deliveries += 1;
            assert_eq!(response.batch_item_failures.len(), 1);
        }
        dead = h.drained("LeadsDeadLetterQueue").await.unwrap();
        if !dead.is_empty() {
            break;
        }
    }

    assert_eq!(
        deliveries, 5,
        "maxReceiveCount of the template's redrive policy"
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(
        LeadEnvelope::from_json(&dead[0]).unwrap().lead_id,
        lead.lead_id,
        "the DLQ holds the original envelope"
    );
    let record = h.crm_record(&lead.lead.email).await.unwrap();
    assert_eq!(record.state, "retryable_failure");
    assert!(
        record
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("HTTP 500: crm is down"),
        "{record:?}"
    );
    assert_eq!(
        h.crm_requests().await.len(),
        5 * 3,
        "3 attempts per delivery"
    );
    assert_eq!(
        h.drained("EmailQueue").await.unwrap().len(),
        1,
        "the other destinations got the lead once"
    );
}

#[tokio::test]
async fn a_400_is_recorded_as_a_permanent_failure_and_not_retried() {
    let h = Harness::new("lr-400").await.unwrap();
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"error": "company is required"})),
        )
        .mount(&h.crm)
        .await;
    let lead = envelope("pedro@exemplo.com", None).unwrap();
    h.enqueue(&lead).await.unwrap();

    let (response, _) = h.deliver().await.unwrap();

    assert!(
        response.batch_item_failures.is_empty(),
        "a permanent failure is not retried"
    );
    assert_eq!(h.crm_requests().await.len(), 1);
    let record = h.crm_record(&lead.lead.email).await.unwrap();
    assert_eq!(record.state, "permanent_failure");
    assert!(
        record.reason.as_deref().unwrap_or("").contains("HTTP 400"),
        "{record:?}"
    );
    let item = h.profile_item(&lead.lead.email).await.unwrap();
    assert_eq!(
        item.get("crm_failures")
            .and_then(|v| v.as_l().ok())
            .map(Vec::len),
        Some(1)
    );
    assert!(
        h.drained("LeadsQueue").await.unwrap().is_empty(),
        "the message was deleted"
    );
    assert!(h.drained("LeadsDeadLetterQueue").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_duplicate_delivery_makes_exactly_one_crm_call_and_one_message_per_destination() {
    let h = Harness::new("lr-dup").await.unwrap();
    Mock::given(method("POST"))
        .respond_with(created())
        .mount(&h.crm)
        .await;
    let lead = envelope("dup@exemplo.com", Some("Software A")).unwrap();

    h.enqueue(&lead).await.unwrap();
    h.deliver().await.unwrap();
    h.enqueue(&lead).await.unwrap();
    let (response, ids) = h.deliver().await.unwrap();

    assert_eq!(ids.len(), 1);
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.crm_requests().await.len(), 1);
    assert_eq!(h.drained("EmailQueue").await.unwrap().len(), 1);
    assert_eq!(h.drained("AudienceQueue").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_mixed_batch_reports_only_the_failing_message_ids() {
    let h = Harness::new("lr-mixed").await.unwrap();
    Mock::given(body_partial_json(json!({"email": "down@exemplo.com"})))
        .respond_with(ResponseTemplate::new(503))
        .mount(&h.crm)
        .await;
    Mock::given(body_partial_json(json!({"email": "bad@exemplo.com"})))
        .respond_with(ResponseTemplate::new(422).set_body_string("invalid"))
        .mount(&h.crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(created())
        .with_priority(10)
        .mount(&h.crm)
        .await;
    let leads = [
        envelope("ok@exemplo.com", None).unwrap(),
        envelope("down@exemplo.com", None).unwrap(),
        envelope("bad@exemplo.com", None).unwrap(),
    ];
    for lead in &leads {
        h.enqueue(lead).await.unwrap();
    }

    // The batch may arrive in more than one receive; collect the responses until every message was seen.
    let mut failed = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let (response, ids) = h.deliver().await.unwrap();
        for id in &ids {
            seen.insert(id.clone());
        }
        for f in &response.batch_item_failures {
            failed.insert(f.item_identifier.clone());
        }
        if seen.len() >= 3 {
            break;
        }
    }

    assert_eq!(seen.len(), 3);
    assert_eq!(
        failed.len(),
        1,
        "only the message whose CRM was down is reported: {failed:?}"
    );
    let remaining = h.drained("LeadsQueue").await.unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(
        LeadEnvelope::from_json(&remaining[0])
            .unwrap()
            .lead
            .email
            .as_str(),
        "down@exemplo.com"
    );
    assert_eq!(
        h.crm_record(&leads[2].lead.email).await.unwrap().state,
        "permanent_failure"
    );
    assert_eq!(
        h.crm_record(&leads[0].lead.email).await.unwrap().state,
        "done"
    );
}

/// The fixed local port of the end-to-end CRM (tests/e2e/fluxo.toml points the stack's lead-router at it).
const E2E_CRM_ADDR: &str = "127.0.0.1:18181";

#[tokio::test]
async fn end_to_end_a_posted_lead_reaches_the_crm_once_and_its_fan_out_reaches_both_queues() {
    let api = support::api_url();
    let shared = StackInfo::load_from_env().unwrap();
    let listener = std::net::TcpListener::bind(E2E_CRM_ADDR).unwrap();
    let crm = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .and(path("/v1/leads"))
        .respond_with(created())
        .mount(&crm)
        .await;

    let email = format!(
        "e2e-{}@exemplo.com",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    // The article's payload (seed-webhook-lead.json) with a unique email.
    let payload =
        json!({"nome": "João", "email": email, "origem": "Webinar XYZ", "interesse": "Software A"});
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

    let sdk = support::sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut email_action = None;
    let mut audience_action = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    // audience-sync (on the same stack) may take the audience message first: its membership record for
    // the person is then the evidence that the message reached the audience queue.
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let member_pk = format!(
        "AUDIENCE#{}",
        fluxo::audience::normalize::sha256_hex(&email)
    );
    let mut audience_synced = false;
    // Likewise email-trigger may take the enrollment first: its ledger record for the person x
    // sequence is then the evidence.
    let enrollment_pk = format!(
        "EFFECT#{}",
        email_trigger::trigger::enrollment_key(
            &fluxo::Email::parse(&email).unwrap().sha256_hex(),
            "nutricao_interesse_software_a"
        )
    );
    let mut email_taken = false;
    while ((email_action.is_none() && !email_taken)
        || (audience_action.is_none() && !audience_synced))
        && Instant::now() < deadline
    {
        email_taken = !ddb
            .query()
            .table_name(shared.table("LeadsTable").unwrap())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(enrollment_pk.clone()))
            .send()
            .await
            .unwrap()
            .items()
            .is_empty();
        audience_synced = !ddb
            .query()
            .table_name(shared.table("LeadsTable").unwrap())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(member_pk.clone()))
            .send()
            .await
            .unwrap()
            .items()
            .is_empty();
        for (queue, is_email) in [("EmailQueue", true), ("AudienceQueue", false)] {
            let out = sqs
                .receive_message()
                .queue_url(&shared.queue(queue).unwrap().url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for body in out.messages().iter().filter_map(|m| m.body()) {
                if !body.contains(&email) {
                    continue;
                }
                if is_email {
                    email_action = EmailAction::from_json(body).ok();
                } else {
                    audience_action = AudienceAction::from_json(body).ok();
                }
            }
        }
    }
    match email_action {
        Some(a) => assert_eq!(a.sequence, "nutricao_interesse_software_a"),
        None => assert!(
            email_taken,
            "the lead's enrollment is neither on the email queue nor taken by email-trigger"
        ),
    }
    match audience_action {
        Some(a) => assert_eq!(a.audience, "leads_qualificados"),
        None => assert!(
            audience_synced,
            "the lead's audience add is neither on the audience queue nor taken by audience-sync"
        ),
    }

    let mine: Vec<Value> = crm
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|b| b["email"] == email.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "exactly one CRM call for the lead");
    assert_eq!(mine[0]["first_name"], "João");
    assert_eq!(mine[0]["status"], "novo_lead");
}

#[tokio::test]
async fn a_batch_goes_to_hubspot_in_one_upsert_call_after_a_rate_limited_attempt() {
    let (sdk, stack) = support::isolated_stack("lr-hubspot").await;
    let hubspot = MockServer::start().await;
    let limited = ResponseTemplate::new(429)
        .insert_header("X-HubSpot-RateLimit-Interval-Milliseconds", "200")
        .insert_header("X-HubSpot-RateLimit-Remaining", "0")
        .set_body_json(json!({"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}));
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .respond_with(limited)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hubspot)
        .await;
    let leads: Vec<LeadEnvelope> = (0..3)
        .map(|n| envelope(&format!("hs{n}@exemplo.com"), None).unwrap())
        .collect();
    // The documented result schema: each result carries its input's objectWriteTraceId (the lead id).
    let results: Vec<Value> = leads
        .iter()
        .enumerate()
        .map(|(n, l)| json!({"id": format!("50{n}"), "new": true, "objectWriteTraceId": l.lead_id.as_str(), "properties": {"email": format!("hs{n}@exemplo.com")}}))
        .collect();
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "COMPLETE", "results": results})),
        )
        .with_priority(2)
        .mount(&hubspot)
        .await;
    let article = include_str!("../../config/fluxo.toml");
    let rules = &article[..article.find("[lead_router.crm]").unwrap()];
    let text = format!(
        "{rules}\n[lead_router.crm]\nconnector = \"hubspot\"\ndry_run = false\nbase_delay_ms = 20\n[lead_router.crm.hubspot]\nbase_url = \"{}\"\ntoken = {{ env = \"UNUSED\" }}\n",
        hubspot.uri()
    );
    let config = load_str("hubspot.toml", &text).unwrap().config.lead_router;
    let profiles = DynamoProfiles::from_sdk_config(&sdk, stack.table("LeadsTable").unwrap());
    let router = Router {
        profiles: profiles.clone(),
        ledger: profiles.clone(),
        crm: Crm::from_config(&config.crm, Some(Secret::new(TOKEN)), 10).unwrap(),
        email_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("EmailQueue").unwrap().url),
        audience_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("AudienceQueue").unwrap().url),
        leads_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("LeadsQueue").unwrap().url),
        clock: SystemClock,
        rules: RuleSet::compile(&config).unwrap(),
        concurrency: 10,
        lease: Duration::from_secs(60),
        config_version: "it".into(),
    };
    let records: Vec<Value> = leads
        .iter()
        .enumerate()
        .map(|(n, l)| json!({"messageId": format!("m{n}"), "body": l.to_json().unwrap()}))
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    let response = router.handle(event).await;

    assert!(response.batch_item_failures.is_empty());
    let requests = hubspot.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "one rate-limited attempt, then the whole batch in one call"
    );
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body["inputs"].as_array().unwrap().len(), 3);
    assert_eq!(body["inputs"][0]["idProperty"], "email");
    assert_eq!(
        body["inputs"][0]["objectWriteTraceId"],
        leads[0].lead_id.as_str()
    );
    for (n, lead) in leads.iter().enumerate() {
        let record = profiles
            .crm_record(&lead.lead.email.sha256_hex())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.state, "done");
        assert_eq!(record.contact_id, Some(format!("50{n}")));
    }
}

// ------------------------------------------------------------------ HubSpot batch upsert (issue 7, item 6)

/// Answers `POST /crm/v3/objects/contacts/batch/upsert` as HubSpot documents it, and checks the request
/// shape on the way: a batch naming one record twice, or holding an input whose email contains
/// `invalid`, is refused whole with a 400; otherwise a 200 (or a 207 when `multi_status`) whose results
/// carry each input's `objectWriteTraceId` but, unlike the request, no echoed email, in reverse order.
struct HubSpotEmulator {
    multi_status_reject: Option<&'static str>,
}

impl Respond for HubSpotEmulator {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"status": "error", "message": "Invalid input JSON"}));
        };
        let inputs = body["inputs"].as_array().cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for input in &inputs {
            // The documented input shape; a violation is an unmistakable 422 the tests would see.
            let email = input["id"].as_str().unwrap_or_default();
            if input["idProperty"] != "email"
                || input["properties"]["email"] != email
                || input["objectWriteTraceId"]
                    .as_str()
                    .is_none_or(str::is_empty)
            {
                return ResponseTemplate::new(422)
                    .set_body_json(json!({"status": "error", "message": "shape"}));
            }
            if !seen.insert(email.to_string()) {
                return ResponseTemplate::new(400).set_body_json(json!({
                    "status": "error", "category": "VALIDATION_ERROR",
                    "message": "Duplicate IDs found in batch input: [".to_string() + email + "]. IDs must be unique"}));
            }
            if email.contains("invalid") {
                return ResponseTemplate::new(400).set_body_json(json!({
                    "status": "error", "category": "VALIDATION_ERROR",
                    "message": "Property values were not valid: [{\"isValid\":false,\"message\":\"Email address is invalid\"}]"}));
            }
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in inputs.iter().rev() {
            let trace = input["objectWriteTraceId"].clone();
            let email = input["id"].as_str().unwrap_or_default();
            if self.multi_status_reject.is_some_and(|r| email.contains(r)) {
                errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                    "message": "Property \"company\" is read-only", "context": {"objectWriteTraceId": [trace]}}));
            } else {
                results.push(
                    json!({"id": format!("hs-{}", email.split('@').next().unwrap_or_default()),
                    "new": true, "objectWriteTraceId": trace, "properties": {"hs_object_id": "1"}}),
                );
            }
        }
        if errors.is_empty() {
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "COMPLETE", "results": results}))
        } else {
            ResponseTemplate::new(207).set_body_json(json!({"status": "COMPLETE", "results": results, "numErrors": errors.len(), "errors": errors}))
        }
    }
}

/// Quick in-invocation retries.
const QUICK: &str = "base_delay_ms = 20";

/// A router on an isolated stack whose CRM is HubSpot at `base_url`; `extra_crm` adds `[lead_router.crm]` keys.
async fn hubspot_router(
    test: &str,
    base_url: &str,
    extra_crm: &str,
) -> (SdkConfig, StackInfo, LiveRouter) {
    let (sdk, stack) = support::isolated_stack(test).await;
    let article = include_str!("../../config/fluxo.toml");
    let rules = &article[..article.find("[lead_router.crm]").unwrap()];
    let text = format!(
        "{rules}\n[lead_router.crm]\nconnector = \"hubspot\"\ndry_run = false\n{extra_crm}\n[lead_router.crm.hubspot]\nbase_url = \"{base_url}\"\ntoken = {{ env = \"UNUSED\" }}\n"
    );
    let config = load_str("hubspot.toml", &text).unwrap().config.lead_router;
    let profiles = DynamoProfiles::from_sdk_config(&sdk, stack.table("LeadsTable").unwrap());
    let router = Router {
        profiles: profiles.clone(),
        ledger: profiles,
        crm: Crm::from_config(&config.crm, Some(Secret::new(TOKEN)), 10).unwrap(),
        email_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("EmailQueue").unwrap().url),
        audience_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("AudienceQueue").unwrap().url),
        leads_queue: SqsQueue::from_sdk_config(&sdk, &stack.queue("LeadsQueue").unwrap().url),
        clock: SystemClock,
        rules: RuleSet::compile(&config).unwrap(),
        concurrency: 10,
        lease: Duration::from_secs(60),
        config_version: "it".into(),
    };
    (sdk, stack, router)
}

fn sqs_event(leads: &[LeadEnvelope]) -> SqsEvent {
    let records: Vec<Value> = leads
        .iter()
        .enumerate()
        .map(|(n, l)| json!({"messageId": format!("m{n}"), "body": l.to_json().unwrap()}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failed(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

async fn upsert_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn mount_emulator(server: &MockServer, multi_status_reject: Option<&'static str>) {
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(HubSpotEmulator {
            multi_status_reject,
        })
        .mount(server)
        .await;
}

#[tokio::test]
async fn two_leads_of_one_person_in_a_batch_reach_hubspot_as_one_input() {
    let hubspot = MockServer::start().await;
    mount_emulator(&hubspot, None).await;
    let (_sdk, _stack, router) = hubspot_router("lr-hs-dup", &hubspot.uri(), QUICK).await;
    let first = envelope("twice@exemplo.com", None).unwrap();
    let mut second = envelope("twice@exemplo.com", Some("Software A")).unwrap();
    second.lead.company = Some("Empresa Y".into());
    let other = envelope("once@exemplo.com", None).unwrap();

    let response = router
        .handle(sqs_event(&[first.clone(), other.clone(), second.clone()]))
        .await;

    assert!(failed(&response).is_empty(), "{:?}", failed(&response));
    let bodies = upsert_bodies(&hubspot).await;
    assert_eq!(bodies.len(), 1, "one call for the batch");
    let inputs = bodies[0]["inputs"].as_array().unwrap();
    let ids: Vec<&str> = inputs.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["twice@exemplo.com", "once@exemplo.com"]);
    assert_eq!(
        inputs[0]["properties"]["company"], "Empresa Y",
        "the latest values win"
    );
    let record = router
        .profiles
        .crm_record(&first.lead.email.sha256_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, "done");
    assert_eq!(record.contact_id.as_deref(), Some("hs-twice"));
    let record = router
        .profiles
        .crm_record(&other.lead.email.sha256_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.contact_id.as_deref(), Some("hs-once"));
}

#[tokio::test]
async fn one_invalid_input_fails_alone_and_the_rest_of_the_hubspot_batch_goes_through() {
    let hubspot = MockServer::start().await;
    mount_emulator(&hubspot, None).await;
    let (_sdk, _stack, router) = hubspot_router("lr-hs-bisect", &hubspot.uri(), QUICK).await;
    let leads: Vec<LeadEnvelope> = ["a", "b", "invalid", "d", "e", "f", "g"]
        .iter()
        .map(|n| envelope(&format!("{n}@exemplo.com"), None).unwrap())
        .collect();

    let response = router.handle(sqs_event(&leads)).await;

    assert!(
        failed(&response).is_empty(),
        "a permanent failure is not retried and the others succeeded: {:?}",
        failed(&response)
    );
    for lead in &leads {
        let record = router
            .profiles
            .crm_record(&lead.lead.email.sha256_hex())
            .await
            .unwrap()
            .unwrap();
        if lead.lead.email.as_str().starts_with("invalid") {
            assert_eq!(record.state, "permanent_failure");
            assert!(
                record
                    .reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("Email address is invalid"),
                "{record:?}"
            );
        } else {
            assert_eq!(record.state, "done", "{record:?}");
            let name = lead.lead.email.as_str().split('@').next().unwrap();
            assert_eq!(record.contact_id, Some(format!("hs-{name}")));
        }
    }
    let bodies = upsert_bodies(&hubspot).await;
    assert!(
        bodies.len() > 1 && bodies.len() <= 2 * leads.len(),
        "{} calls",
        bodies.len()
    );
    let alone: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["inputs"].as_array().unwrap().len() == 1)
        .collect();
    assert!(
        alone
            .iter()
            .any(|b| b["inputs"][0]["id"] == "invalid@exemplo.com"),
        "the bad input was isolated"
    );
}

#[tokio::test]
async fn multi_status_results_are_matched_by_trace_id_without_echoed_properties() {
    let hubspot = MockServer::start().await;
    mount_emulator(&hubspot, Some("readonly")).await;
    let (_sdk, _stack, router) = hubspot_router("lr-hs-207", &hubspot.uri(), QUICK).await;
    let leads: Vec<LeadEnvelope> = ["ana", "readonly", "bia"]
        .iter()
        .map(|n| envelope(&format!("{n}@exemplo.com"), None).unwrap())
        .collect();

    let response = router.handle(sqs_event(&leads)).await;

    assert!(failed(&response).is_empty());
    assert_eq!(upsert_bodies(&hubspot).await.len(), 1);
    let state = |n: usize| {
        let router = &router;
        let email = leads[n].lead.email.sha256_hex();
        async move { router.profiles.crm_record(&email).await.unwrap().unwrap() }
    };
    assert_eq!(state(0).await.contact_id.as_deref(), Some("hs-ana"));
    assert_eq!(state(2).await.contact_id.as_deref(), Some("hs-bia"));
    let rejected = state(1).await;
    assert_eq!(rejected.state, "permanent_failure");
    assert!(
        rejected
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("read-only"),
        "{rejected:?}"
    );
}

#[tokio::test]
async fn a_daily_limit_429_hands_the_batch_back_to_sqs_without_retrying() {
    let hubspot = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-HubSpot-RateLimit-Daily-Remaining", "0")
                .set_body_json(
                    json!({"status": "error", "message": "You have reached your daily limit.",
                    "errorType": "RATE_LIMIT", "correlationId": "c-1", "policyName": "DAILY"}),
                ),
        )
        .mount(&hubspot)
        .await;
    let (_sdk, _stack, router) = hubspot_router(
        "lr-hs-daily",
        &hubspot.uri(),
        "max_attempts = 5\ntimeout_ms = 2000\nbase_delay_ms = 1500\nmax_delay_ms = 1500",
    )
    .await;
    let leads: Vec<LeadEnvelope> = (0..3)
        .map(|n| envelope(&format!("daily{n}@exemplo.com"), None).unwrap())
        .collect();

    let started = Instant::now();
    let response = router.handle(sqs_event(&leads)).await;
    let again = router.handle(sqs_event(&leads)).await;

    assert_eq!(
        failed(&response),
        ["m0", "m1", "m2"],
        "every lead goes back to SQS"
    );
    assert_eq!(failed(&again), ["m0", "m1", "m2"]);
    assert_eq!(
        hubspot.received_requests().await.unwrap().len(),
        1,
        "no retry, and no call while the daily limit holds"
    );
    // Retrying would sleep 4 x 1.5 s.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no backoff sleep: {:?}",
        started.elapsed()
    );
    let record = router
        .profiles
        .crm_record(&leads[0].lead.email.sha256_hex())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, "retryable_failure");
    assert!(
        record.reason.as_deref().unwrap_or("").contains("daily"),
        "{record:?}"
    );
}

#[tokio::test]
async fn a_daily_limit_429_holds_the_message_back_on_the_leads_queue_until_the_limit_may_reset() {
    let hubspot = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"status": "error", "message": "You have reached your daily limit.",
                    "errorType": "RATE_LIMIT", "correlationId": "c-2", "policyName": "DAILY"}),
        ))
        .mount(&hubspot)
        .await;
    // The pause lasts until the next full hour: keep clear of one so it outlasts the checks below.
    let into_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 3600;
    if into_hour > 3600 - 20 {
        tokio::time::sleep(Duration::from_secs(3600 - into_hour + 1)).await;
    }
    let (sdk, stack, router) = hubspot_router("lr-hs-daily-hold", &hubspot.uri(), QUICK).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = stack.queue("LeadsQueue").unwrap().url.clone();
    let lead = envelope("held@exemplo.com", None).unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body(lead.to_json().unwrap())
        .send()
        .await
        .unwrap();

    // Received as the event source would, but with a 2 s visibility timeout: left alone, the message
    // would be back on the queue 2 s later.
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .visibility_timeout(2)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages().to_vec();
    assert_eq!(messages.len(), 1);
    let records: Vec<Value> = messages
        .iter()
        .map(|m| json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(), "eventSource": "aws:sqs"}))
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    let response = router.handle(event).await;

    assert_eq!(
        failed(&response),
        [messages[0].message_id().unwrap_or_default()],
        "the message is still handed back"
    );
    assert_eq!(hubspot.received_requests().await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        again.messages().is_empty(),
        "held back past the 2 s it was received for: {:?}",
        again.messages()
    );
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let attribute = |name| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name).cloned())
            .unwrap_or_default()
    };
    assert_eq!(
        attribute(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "1",
        "still on the queue, in flight until the pause ends"
    );
    assert_eq!(
        attribute(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
}

// ------------------------------------------------------------------ deadline and Retry-After (items 8, 9)

#[tokio::test]
async fn a_slow_failing_crm_is_abandoned_at_the_deadline_and_the_message_handed_back() {
    let h = Harness::new("lr-deadline").await.unwrap();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(1500)))
        .mount(&h.crm)
        .await;
    let lead = envelope("slow@exemplo.com", Some("Software A")).unwrap();
    h.enqueue(&lead).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&h.sdk);
    let out = sqs
        .receive_message()
        .queue_url(h.queue_url("LeadsQueue").unwrap())
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let records: Vec<Value> = out
        .messages()
        .iter()
        .map(|m| json!({"messageId": m.message_id(), "body": m.body()}))
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    // CRM calls may run until 2 s from now (the router keeps CRM_RESERVE for what follows).
    let deadline = Deadline::after(Duration::from_secs(2) + fluxo::config::router::CRM_RESERVE);
    let started = Instant::now();
    let response = h.router.handle_until(event, deadline).await;

    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(3_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        h.crm_requests().await.len(),
        2,
        "no attempt starts past the deadline (3 allowed)"
    );
    let record = h.crm_record(&lead.lead.email).await.unwrap();
    assert_eq!(record.state, "retryable_failure");
    assert!(
        record.reason.as_deref().unwrap_or("").contains("deadline"),
        "{record:?}"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_neither_crashes_nor_stalls_the_batch() {
    let h = Harness::new("lr-retry-after").await.unwrap();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1e20"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
        )
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&h.crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(created())
        .with_priority(3)
        .mount(&h.crm)
        .await;
    let lead = envelope("later@exemplo.com", None).unwrap();
    h.enqueue(&lead).await.unwrap();

    let started = Instant::now();
    let (response, _) = h.deliver().await.unwrap();

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.crm_requests().await.len(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the far-future date waits max_delay_ms (2 s) at most"
    );
    assert_eq!(h.crm_record(&lead.lead.email).await.unwrap().state, "done");
}

// ------------------------------------------------------------------ bounded profiles (item 7)

/// A hostile post for the victim's email, at the receiver's limits: 50 new custom fields of 1,000
/// characters, long attribution, a consent answer with a 2,000-character text.
fn hostile(email: &str, n: usize) -> LeadEnvelope {
    let mut lead = envelope(email, None).unwrap();
    lead.lead_id = LeadId::new(lead.received_at, 1_000_000 + n as u128);
    lead.lead.company = Some(format!("hostile {n} {}", "x".repeat(180)));
    lead.lead.page_url = Some(format!("https://evil.example/{}", "p".repeat(2000)));
    lead.lead.gclid = Some("g".repeat(512));
    lead.lead.utm.campaign = Some("c".repeat(200));
    lead.lead.consent = Some(fluxo::domain::Consent {
        granted: false,
        at: None,
        text: Some("t".repeat(2000)),
    });
    for k in 0..50 {
        lead.lead
            .custom
            .insert(format!("h{n}_{k}"), "v".repeat(1000));
    }
    lead
}

#[tokio::test]
async fn a_thousand_hostile_posts_leave_the_victims_next_genuine_lead_routed_normally() {
    let mut h = Harness::new("lr-hostile").await.unwrap();
    // The CRM refuses every hostile lead for good (each one a crm_failures entry on the old code) and
    // takes the genuine one.
    Mock::given(method("POST"))
        .and(body_string_contains("Empresa Genuina"))
        .respond_with(created())
        .with_priority(1)
        .mount(&h.crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_string(format!("invalid company {}", "e".repeat(2000))),
        )
        .with_priority(2)
        .mount(&h.crm)
        .await;
    // One person's posts are merged one after the other, as they would be across batches.
    h.router.concurrency = 1;
    let victim = "victim@exemplo.com";
    for chunk in (0..1_000).collect::<Vec<_>>().chunks(10) {
        let leads: Vec<LeadEnvelope> = chunk.iter().map(|&n| hostile(victim, n)).collect();
        let response = h.router.handle(sqs_event(&leads)).await;
        assert!(
            failed(&response).is_empty(),
            "hostile batch {chunk:?}: {:?}",
            failed(&response)
        );
    }

    let mut genuine = envelope(victim, Some("Software A")).unwrap();
    genuine.lead.company = Some("Empresa Genuina".into());
    genuine.lead.custom.insert("cargo".into(), "CTO".into());
    let response = h
        .router
        .handle(sqs_event(std::slice::from_ref(&genuine)))
        .await;

    assert!(
        failed(&response).is_empty(),
        "the genuine lead is routed: {:?}",
        failed(&response)
    );
    let record = h.crm_record(&genuine.lead.email).await.unwrap();
    assert_eq!(record.state, "done");
    assert_eq!(record.lead_id, genuine.lead_id);
    let item = h.profile_item(&genuine.lead.email).await.unwrap();
    let size: usize = item
        .iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::L(l) => l
                        .iter()
                        .map(|x| x.as_s().map(String::len).unwrap_or(8))
                        .sum(),
                    _ => 8,
                }
        })
        .sum();
    assert!(size < 400 * 1024, "the profile item is {size} bytes");
    assert_eq!(
        item.get("segment")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("interesse_software_a")
    );
    let failures = item
        .get("crm_failures")
        .and_then(|v| v.as_l().ok())
        .unwrap();
    assert_eq!(
        failures.len(),
        MAX_CRM_FAILURES,
        "only the latest permanent failures are kept"
    );
    let profile: fluxo::routing::Profile =
        serde_json::from_str(item.get("profile").unwrap().as_s().unwrap()).unwrap();
    assert!(
        profile
            .fields
            .keys()
            .filter(|k| k.starts_with("custom."))
            .count()
            <= MAX_CUSTOM_FIELDS
    );
    assert_eq!(profile.field("custom.cargo"), Some("CTO"));
    let emails = h.drained("EmailQueue").await.unwrap();
    assert!(
        emails
            .iter()
            .any(|b| EmailAction::from_json(b).is_ok_and(|e| e.header.lead_id == genuine.lead_id)),
        "the genuine lead's enrollment was sent"
    );
}
