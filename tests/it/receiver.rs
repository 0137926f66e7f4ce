//! The webhook receiver against moto through the real SDK clients, and over HTTP under cargo lambda watch.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::adapters::dynamodb::DynamoIntakeStore;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::{SystemClock, ThreadRandomness};
use lambda_http::{Body, Request};
use webhook_receiver::{Receiver, ReceiverConfig};
use xtask::stack::StackInfo;

use crate::support;

const SEED: &str = include_str!("../../xtask/fixtures/seed-webhook-lead.json");

type RealReceiver = Receiver<DynamoIntakeStore, SqsQueue, SystemClock, ThreadRandomness>;

fn receiver(sdk: &SdkConfig, queue_sdk: &SdkConfig, stack: &StackInfo) -> RealReceiver {
    let table = stack.table("LeadsTable").unwrap().to_string();
    let queue = stack.queue("LeadsQueue").unwrap().url.clone();
    let config = ReceiverConfig::from_source(&[
        ("LEADS_TABLE", table.as_str()),
        ("LEADS_QUEUE_URL", queue.as_str()),
        ("MAX_BODY_BYTES", "2048"),
        ("DEFAULT_COUNTRY", "BR"),
    ])
    .unwrap();
    Receiver::new(
        config,
        DynamoIntakeStore::from_sdk_config(sdk, table),
        SqsQueue::from_sdk_config(queue_sdk, queue),
        SystemClock,
        ThreadRandomness,
    )
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

    let items = support::scan_all(&sdk, stack.table("LeadsTable").unwrap()).await;
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
        support::scan_all(&sdk, stack.table("LeadsTable").unwrap())
            .await
            .len(),
        1
    );
    assert_eq!(
        support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn with_sqs_unreachable_the_receiver_answers_503_and_a_retry_completes_exactly_once() {
    let (sdk, stack) = support::isolated_stack("sqsdown").await;
    let broken = receiver(&sdk, &unreachable_sdk().await, &stack);
    let failed = broken
        .handle(request("POST", "application/json", SEED))
        .await;
    assert_eq!(failed.status(), 503);
    assert_eq!(failed.headers()["retry-after"], "1");

    // The lead is stored, waiting to be queued.
    let items = support::scan_all(&sdk, stack.table("LeadsTable").unwrap()).await;
    assert_eq!(items.len(), 1);
    assert_eq!(text_attr(&items[0], "status"), "stored");
    let stored_id = text_attr(&items[0], "lead_id").to_string();

    let healthy = receiver(&sdk, &sdk, &stack);
    let retried = healthy
        .handle(request("POST", "application/json", SEED))
        .await;
    assert_eq!(retried.status(), 202);
    assert_eq!(json_body(&retried)["lead_id"], stored_id.as_str());
    let again = healthy
        .handle(request("POST", "application/json", SEED))
        .await;
    assert_eq!(json_body(&again)["lead_id"], stored_id.as_str());

    let messages = support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        LeadEnvelope::from_json(messages[0].body().unwrap())
            .unwrap()
            .lead_id
            .as_str(),
        stored_id
    );
    let items = support::scan_all(&sdk, stack.table("LeadsTable").unwrap()).await;
    assert_eq!(text_attr(&items[0], "status"), "queued");
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
