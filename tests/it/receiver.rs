//! The webhook receiver against moto through the real SDK clients, and over HTTP under cargo lambda watch.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::adapters::dynamodb::DynamoIntakeStore;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::{SystemClock, ThreadRandomness};
use lambda_http::{Body, Request};
use webhook_receiver::Receiver;
use webhook_receiver::setup::Settings as ReceiverSettings;
use xtask::stack::StackInfo;

use crate::support;

const SEED: &str = include_str!("../../xtask/fixtures/seed-webhook-lead.json");

type RealReceiver = Receiver<DynamoIntakeStore, SqsQueue, SystemClock, ThreadRandomness>;

fn receiver(sdk: &SdkConfig, queue_sdk: &SdkConfig, stack: &StackInfo) -> RealReceiver {
    receiver_with(sdk, queue_sdk, stack, &[("MAX_BODY_BYTES", "2048")])
}

fn receiver_with(
    sdk: &SdkConfig,
    queue_sdk: &SdkConfig,
    stack: &StackInfo,
    settings: &[(&str, &str)],
) -> RealReceiver {
    let table = stack.table("LeadsTable").unwrap().to_string();
    let queue = stack.queue("LeadsQueue").unwrap().url.clone();
    let mut env = vec![
        ("LEADS_TABLE", table.as_str()),
        ("LEADS_QUEUE_URL", queue.as_str()),
        ("DEFAULT_COUNTRY", "BR"),
    ];
    env.extend_from_slice(settings);
    let config = ReceiverSettings::from_source(&Settings(env)).unwrap();
    Receiver::new(
        config,
        DynamoIntakeStore::from_sdk_config(sdk, table),
        SqsQueue::from_sdk_config(queue_sdk, queue),
        SystemClock,
        ThreadRandomness,
    )
}

/// Settings for one test receiver.
struct Settings<'a>(Vec<(&'a str, &'a str)>);

impl fluxo::settings::Source for Settings<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// SDK config whose endpoint is a closed port: every call fails to connect.
async fn unreachable_sdk() -> SdkConfig {
    let base = xtask::stack::local_sdk_config("http://127.0.0.1:9").await;
    base.into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(2))
                .build(),
        )
        .build()
}

fn request(method: &str, content_type: &str, body: &str) -> Request {
    http::Request::builder()
        .method(method)
        .uri("/leads")
        .header("content-type", content_type)
        .body(Body::Text(body.to_string()))
        .unwrap()
}

fn json_body(response: &lambda_http::Response<Body>) -> serde_json::Value {
    match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

fn text_attr<'a>(
    item: &'a std::collections::HashMap<String, AttributeValue>,
    name: &str,
) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}

#[tokio::test]
async fn a_lead_is_stored_once_and_queued_once() {
    let (sdk, stack) = support::isolated_stack("once").await;
    let r = receiver(&sdk, &sdk, &stack);
    let response = r.handle(request("POST", "application/json", SEED)).await;
    assert_eq!(response.status(), 202);
    let lead_id = json_body(&response)["lead_id"]
        .as_str()
        .unwrap()
        .to_string();

    let items = intake_records(support::scan_all(&sdk, stack.table("LeadsTable").unwrap()).await);
    assert_eq!(items.len(), 1);
    assert_eq!(text_attr(&items[0], "lead_id"), lead_id);
    assert_eq!(text_attr(&items[0], "status"), "queued");
    assert_eq!(
        items[0]["raw_body"].as_b().unwrap().as_ref(),
        SEED.as_bytes()
    );
    assert!(items[0].contains_key("expires_at"));

    let messages = support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30).await;
    assert_eq!(messages.len(), 1);
    let envelope = LeadEnvelope::from_json(messages[0].body().unwrap()).unwrap();
    assert_eq!(envelope.lead_id.as_str(), lead_id);
    assert_eq!(envelope.lead.email.as_str(), "joao@exemplo.com");
    assert_eq!(envelope.lead.source.as_deref(), Some("Webinar XYZ"));
}

#[tokio::test]
async fn a_duplicate_request_returns_the_same_lead_id_and_queues_nothing_more() {
    let (sdk, stack) = support::isolated_stack("dup").await;
    let r = receiver(&sdk, &sdk, &stack);
    let first = r.handle(request("POST", "application/json", SEED)).await;
    let second = r.handle(request("POST", "application/json", SEED)).await;
    assert_eq!(first.status(), 202);
    assert_eq!(second.status(), 202);
    assert_eq!(json_body(&first)["lead_id"], json_body(&second)["lead_id"]);
    assert_eq!(second.headers()["idempotent-replayed"], "true");

    assert_eq!(
        intake_records(support::scan_all(&sdk, stack.table("LeadsTable").unwrap()).await).len(),
        1
    );
    assert_eq!(
        support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30)
            .await
            .len(),
        1
    );
}

/// Items of the sparse index of leads not yet queued (what the sweep reads).
async fn unqueued_index(
    sdk: &SdkConfig,
    table: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    aws_sdk_dynamodb::Client::new(sdk)
        .query()
        .table_name(table)
        .index_name(fluxo::adapters::dynamodb::UNQUEUED_INDEX)
        .key_condition_expression("unqueued = :i")
        .expression_attribute_values(":i", AttributeValue::S("INTAKE".into()))
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

fn intake_records(
    items: Vec<std::collections::HashMap<String, AttributeValue>>,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    items
        .into_iter()
        .filter(|i| text_attr(i, "sk") == "INTAKE")
        .collect()
}

fn keyed(key: &str, body: &str) -> Request {
    http::Request::builder()
        .method("POST")
        .uri("/leads")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::Text(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn with_sqs_unreachable_the_lead_is_accepted_and_the_sweep_queues_it_exactly_once() {
    let (sdk, stack) = support::isolated_stack("sqsdown").await;
    let table = stack.table("LeadsTable").unwrap();
    let broken = receiver(&sdk, &unreachable_sdk().await, &stack);
    let accepted = broken
        .handle(request("POST", "application/json", SEED))
        .await;
    // Stored durably: 202, no client retry needed.
    assert_eq!(accepted.status(), 202);
    let lead_id = json_body(&accepted)["lead_id"]
        .as_str()
        .unwrap()
        .to_string();

    let items = intake_records(support::scan_all(&sdk, table).await);
    assert_eq!(items.len(), 1);
    assert_eq!(text_attr(&items[0], "status"), "stored");
    assert_eq!(unqueued_index(&sdk, table).await.len(), 1);

    // A sweep while SQS is still unreachable keeps the lead stored.
    let report = broken.sweep().await.unwrap();
    assert_eq!((report.found, report.queued), (1, 0));

    let healthy = receiver(&sdk, &sdk, &stack);
    let report = healthy.sweep().await.unwrap();
    assert_eq!((report.found, report.queued, report.overdue), (1, 1, 0));
    assert_eq!(healthy.sweep().await.unwrap().found, 0);

    let messages = support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        LeadEnvelope::from_json(messages[0].body().unwrap())
            .unwrap()
            .lead_id
            .as_str(),
        lead_id
    );
    let items = intake_records(support::scan_all(&sdk, table).await);
    assert_eq!(text_attr(&items[0], "status"), "queued");
    assert!(!items[0].contains_key("unqueued"));
    assert!(unqueued_index(&sdk, table).await.is_empty());
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_when_consent_came_without_a_time() {
    let (sdk, stack) = support::isolated_stack("keyretry").await;
    let body = r#"{"email":"ana@exemplo.com","nome":"Ana","consentimento":"sim"}"#;
    let broken = receiver(&sdk, &unreachable_sdk().await, &stack);
    let first = broken.handle(keyed("checkout-7", body)).await;
    assert_eq!(first.status(), 202);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // The form retries: same key, same body, a later consent time filled in by the server.
    let healthy = receiver(&sdk, &sdk, &stack);
    let retry = healthy.handle(keyed("checkout-7", body)).await;
    assert_eq!(retry.status(), 202, "{:?}", retry.body());
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(json_body(&retry)["lead_id"], json_body(&first)["lead_id"]);

    // The retry queued the stored lead, once; the same key with other content is refused.
    let messages = support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30).await;
    assert_eq!(messages.len(), 1);
    let other = healthy
        .handle(keyed("checkout-7", &body.replace("Ana", "Bia")))
        .await;
    assert_eq!(other.status(), 422);
}

#[tokio::test]
async fn without_a_key_only_identical_submissions_inside_the_window_are_collapsed() {
    let (sdk, stack) = support::isolated_stack("window").await;
    let r = receiver_with(&sdk, &sdk, &stack, &[("DEDUP_WINDOW_SECS", "3")]);
    let lead = |interest: &str, form: Option<&str>| {
        let form = form
            .map(|f| format!(r#","form":"{f}""#))
            .unwrap_or_default();
        request(
            "POST",
            "application/json",
            &format!(r#"{{"email":"caio@exemplo.com","interesse":"{interest}"{form}}}"#),
        )
    };
    let first = r.handle(lead("Software A", None)).await;
    let double_click = r.handle(lead("Software A", None)).await;
    assert_eq!(double_click.headers()["idempotent-replayed"], "true");
    assert_eq!(
        json_body(&double_click)["lead_id"],
        json_body(&first)["lead_id"]
    );

    // Another interest, or another form, from the same person in the window: new leads.
    let other_interest = r.handle(lead("Software B", None)).await;
    let other_form = r.handle(lead("Software A", Some("webinar"))).await;
    for other in [&other_interest, &other_form] {
        assert_eq!(other.status(), 202);
        assert!(other.headers().get("idempotent-replayed").is_none());
        assert_ne!(json_body(other)["lead_id"], json_body(&first)["lead_id"]);
    }

    // The window opened at the first submission; once it closed, the same content is a new lead.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let later = r.handle(lead("Software A", None)).await;
    assert!(later.headers().get("idempotent-replayed").is_none());
    assert_ne!(json_body(&later)["lead_id"], json_body(&first)["lead_id"]);

    let table = stack.table("LeadsTable").unwrap();
    assert_eq!(
        intake_records(support::scan_all(&sdk, table).await).len(),
        4
    );
    let messages = support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30).await;
    assert_eq!(messages.len(), 4);
}

#[tokio::test]
async fn a_lead_too_large_to_queue_gets_413_not_503_and_nothing_is_stored() {
    let (sdk, stack) = support::isolated_stack("toolarge").await;
    let r = receiver_with(&sdk, &sdk, &stack, &[]);
    // 50 custom fields of 1,000 control characters: 52 KB as sent (under the 64 KiB default), over 300 KB
    // once escaped in the envelope, more than one SQS message holds.
    let value = "\u{1}".repeat(1000);
    let body = (0..50)
        .map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n{value}\r\n"))
        .collect::<String>()
        + "--B\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@exemplo.com\r\n--B--\r\n";
    assert!(body.len() < 64 * 1024);
    for _attempt in 0..2 {
        let response = r
            .handle(request("POST", "multipart/form-data; boundary=B", &body))
            .await;
        assert_eq!(response.status(), 413);
    }
    assert!(
        support::scan_all(&sdk, stack.table("LeadsTable").unwrap())
            .await
            .is_empty()
    );
    assert!(
        support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn every_class_of_bad_input_gets_its_4xx_and_nothing_is_stored_or_queued() {
    let (sdk, stack) = support::isolated_stack("bad").await;
    let r = receiver(&sdk, &sdk, &stack);
    let big = format!(
        r#"{{"email":"a@exemplo.com","notes":"{}"}}"#,
        "x".repeat(3000)
    );
    let file = "--B\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"a.pdf\"\r\n\r\n%PDF\r\n--B--\r\n";
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "POST",
            "application/json",
            r#"{"email":"not-an-email"}"#.into(),
            400,
            "invalid lead",
        ),
        (
            "POST",
            "application/json",
            r#"{"nome":"Ana"}"#.into(),
            400,
            "invalid lead",
        ),
        (
            "POST",
            "application/json",
            r#"{"email":"a@exemplo.com","telefone":"12"}"#.into(),
            400,
            "invalid lead",
        ),
        (
            "POST",
            "application/json",
            "{\"email\":".into(),
            400,
            "body is not valid JSON (line 1, column 9)",
        ),
        (
            "POST",
            "application/json",
            "[\"a@exemplo.com\"]".into(),
            400,
            "JSON body must be an object of fields",
        ),
        (
            "POST",
            "application/json",
            format!(
                r#"{{"email":"a@exemplo.com","empresa":"{}"}}"#,
                "e".repeat(300)
            ),
            400,
            "invalid lead",
        ),
        (
            "POST",
            "text/plain",
            "email=a@exemplo.com".into(),
            415,
            "unsupported Content-Type: send application/json, application/x-www-form-urlencoded or multipart/form-data",
        ),
        (
            "POST",
            "multipart/form-data; boundary=B",
            file.into(),
            400,
            "file uploads are not accepted; send text fields only",
        ),
        (
            "POST",
            "application/json",
            big,
            413,
            "body is larger than 2048 bytes",
        ),
        (
            "PUT",
            "application/json",
            SEED.into(),
            405,
            "method not allowed; use POST",
        ),
        (
            "POST",
            "application/x-www-form-urlencoded",
            vec!["f=v"; 201].join("&"),
            400,
            "body has more than 200 fields",
        ),
    ];
    for (method, content_type, body, status, error) in cases {
        let response = r.handle(request(method, content_type, &body)).await;
        assert_eq!(
            response.status(),
            status,
            "{method} {content_type} {body:.60}"
        );
        let json = json_body(&response);
        assert_eq!(json["error"], error, "{method} {content_type} {body:.60}");
        assert!(json["fields"].is_array());
    }
    assert!(
        support::scan_all(&sdk, stack.table("LeadsTable").unwrap())
            .await
            .is_empty()
    );
    assert!(
        support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_binary_under_cargo_lambda_watch_accepts_a_lead_over_http() {
    let shared = StackInfo::load_from_env().unwrap();
    let sdk = support::sdk().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let unique = format!(
        "e2e-{}@exemplo.com",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let body = format!(
        r#"{{"nome":"João","email":"{unique}","origem":"Webinar XYZ","interesse":"Software A"}}"#
    );
    let response = client
        .post(format!("{}/leads/site", support::api_url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let json: serde_json::Value = response.json().await.unwrap();
    let lead_id = json["lead_id"].as_str().unwrap().to_string();

    let items = support::scan_all(&sdk, shared.table("LeadsTable").unwrap()).await;
    let stored: Vec<_> = items
        .iter()
        .filter(|i| text_attr(i, "lead_id") == lead_id)
        .collect();
    assert_eq!(stored.len(), 1, "the lead is stored once");
    let envelope = LeadEnvelope::from_json(text_attr(stored[0], "envelope")).unwrap();
    assert_eq!(envelope.endpoint.as_deref(), Some("site"));
    assert_eq!(envelope.lead.email.as_str(), unique);
}

#[tokio::test]
async fn the_binary_under_cargo_lambda_watch_answers_bad_input_and_other_methods_itself() {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("{}/leads", support::api_url());
    let bad = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let json: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(json["fields"][0]["field"], "email");

    let get = client.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");

    let unsupported = client
        .post(&url)
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), 415);
}

/// End to end with the real binaries: the leads queue is gone while a lead is posted, the client never
/// retries, the queue comes back, the receiver's scheduled sweep runs (invoked as EventBridge would) and the
/// lead-router, polling the queue, routes the lead into its profile.
#[tokio::test]
async fn a_lead_posted_while_the_leads_queue_is_gone_is_routed_without_any_client_retry() {
    let shared = StackInfo::load_from_env().unwrap();
    let sdk = support::sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = shared.table("LeadsTable").unwrap();
    let queue_url = shared.queue("LeadsQueue").unwrap().url.clone();
    let email = format!(
        "sweep-{}@exemplo.com",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );

    // The queue is unavailable: deleted, so every SendMessage to it fails.
    sqs.delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .unwrap();
    let posted = reqwest::Client::new()
        .post(format!("{}/leads/site", support::api_url()))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"email":"{email}","nome":"Rita","interesse":"Software A"}}"#
        ))
        .send()
        .await;
    // Whatever happens next, the queue comes back for the other tests.
    let restored = xtask::stack::provision(&sdk, &xtask::paths::template(), "").await;
    let posted = posted.unwrap();
    restored.unwrap();
    assert_eq!(posted.status(), 202, "stored durably, so accepted");
    let lead_id = posted.json::<serde_json::Value>().await.unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = support::scan_all(&sdk, table)
        .await
        .into_iter()
        .find(|i| text_attr(i, "lead_id") == lead_id)
        .expect("the intake record");
    assert_eq!(
        text_attr(&record, "status"),
        "stored",
        "the send really failed"
    );

    // The schedule fires: EventBridge's event, through the invoke API, to the receiver binary.
    let invoke_base = std::env::var(xtask::stack::ENV_INVOKE_URL).unwrap();
    let http = reqwest::Client::new();
    let invocation = xtask::esm::invoke(
        &http,
        &invoke_base,
        "webhook-receiver",
        &xtask::esm::scheduled_event_now("webhook-receiver-sweep"),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&invocation.body).unwrap_or_default();
    assert!(invocation.succeeded(), "{} {report}", invocation.status);
    assert!(report["queued"].as_u64().unwrap_or(0) >= 1, "{report}");

    // The lead-router consumes the leads queue and merges the lead into the person's profile.
    let profile_key = format!(
        "PROFILE#{}",
        fluxo::domain::Email::parse(&email).unwrap().sha256_hex()
    );
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut routed = false;
    while !routed && std::time::Instant::now() < deadline {
        let item = ddb
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(profile_key.clone()))
            .key("sk", AttributeValue::S("PROFILE".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        routed = item
            .item()
            .is_some_and(|i| text_attr(i, "profile").contains(&lead_id));
        if !routed {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    assert!(
        routed,
        "the lead-router routed lead {lead_id} into its profile"
    );
    let record = support::scan_all(&sdk, table)
        .await
        .into_iter()
        .find(|i| text_attr(i, "lead_id") == lead_id)
        .unwrap();
    assert_eq!(text_attr(&record, "status"), "queued");
}
