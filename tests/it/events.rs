//! `POST /events` on the receiver: through the real SDK clients against moto (an isolated copy of the
//! template's table and queues per test), and over HTTP under cargo lambda watch.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::adapters::dynamodb::{DynamoEventStore, DynamoIntakeStore};
use fluxo::adapters::sqs::SqsQueue;
use fluxo::email::messages::{EmailMessage, ORDER_COMPLETED, PRODUCT_VIEWED};
use fluxo::ports::{SystemClock, ThreadRandomness};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use webhook_receiver::Receiver;
use webhook_receiver::events::EventPorts;
use webhook_receiver::setup::Settings as ReceiverSettings;
use xtask::stack::StackInfo;

use crate::support;

type EventReceiver = Receiver<
    DynamoIntakeStore,
    SqsQueue,
    SystemClock,
    ThreadRandomness,
    webhook_receiver::sources::NoSourceStore,
    EventPorts<DynamoEventStore, SqsQueue>,
>;

/// Settings for one test receiver.
struct Settings(Vec<(String, String)>);

impl fluxo::settings::Source for Settings {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A receiver on the isolated stack: DynamoDB (and the leads queue) through `sdk`, the email queue
/// through `queue_sdk`.
fn receiver(
    sdk: &SdkConfig,
    queue_sdk: &SdkConfig,
    stack: &StackInfo,
    extra: &[(&str, &str)],
) -> EventReceiver {
    let table = stack.table("LeadsTable").unwrap().to_string();
    let email_queue = stack.queue("EmailQueue").unwrap().url.clone();
    let mut env: Vec<(String, String)> = vec![
        ("LEADS_TABLE".into(), table.clone()),
        (
            "LEADS_QUEUE_URL".into(),
            stack.queue("LeadsQueue").unwrap().url.clone(),
        ),
        ("EMAIL_QUEUE_URL".into(), email_queue.clone()),
        ("MAX_BODY_BYTES".into(), "4096".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = ReceiverSettings::from_source(&Settings(env)).unwrap();
    Receiver::new(
        settings,
        DynamoIntakeStore::from_sdk_config(sdk, table.clone()),
        SqsQueue::from_sdk_config(sdk, stack.queue("LeadsQueue").unwrap().url.clone()),
        SystemClock,
        ThreadRandomness,
    )
    .with_events(
        DynamoEventStore::from_sdk_config(sdk, table),
        SqsQueue::from_sdk_config(queue_sdk, email_queue),
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

fn post(path: &str, content_type: &str, body: &str, key: Option<&str>) -> Request {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", content_type);
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(Body::Text(body.to_string())).unwrap()
}

fn json_body(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

fn text_attr<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}

fn view(email: &str) -> Value {
    json!({
        "event": "product_viewed",
        "email": email,
        "customer_id": "c-1",
        "product": {"id": "sku-1", "name": "Tênis", "url": "https://loja.example/p/sku-1",
                    "image_url": "https://loja.example/i/sku-1.jpg", "price": 199.9,
                    "currency": "BRL", "category": "tenis"}
    })
}

/// The event records (`sk = EVENT`) of the isolated table.
async fn event_records(sdk: &SdkConfig, stack: &StackInfo) -> Vec<HashMap<String, AttributeValue>> {
    support::scan_all(sdk, stack.table("LeadsTable").unwrap())
        .await
        .into_iter()
        .filter(|i| text_attr(i, "sk") == "EVENT")
        .collect()
}

/// The event records the sweep would find (the sparse `Unqueued` index, partition `EVENT`).
async fn unqueued_events(sdk: &SdkConfig, stack: &StackInfo) -> usize {
    aws_sdk_dynamodb::Client::new(sdk)
        .query()
        .table_name(stack.table("LeadsTable").unwrap())
        .index_name(fluxo::adapters::dynamodb::UNQUEUED_INDEX)
        .key_condition_expression("unqueued = :e")
        .expression_attribute_values(":e", AttributeValue::S("EVENT".into()))
        .send()
        .await
        .unwrap()
        .items()
        .len()
}

async fn email_messages(sdk: &SdkConfig, stack: &StackInfo) -> Vec<String> {
    support::drain(sdk, &stack.queue("EmailQueue").unwrap().url, 30)
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect()
}

fn commerce(body: &str) -> fluxo::email::messages::CommerceEvent {
    match EmailMessage::from_json(body).unwrap() {
        EmailMessage::Commerce(event) => event,
        other => panic!("not a commerce event: {other:?}"),
    }
}

#[tokio::test]
async fn a_product_view_is_stored_queued_once_as_a_commerce_event_and_answered_202() {
    let (sdk, stack) = support::isolated_stack("ev-view").await;
    let r = receiver(&sdk, &sdk, &stack, &[]);
    let email = "Ana.View@Example.com";
    let response = r
        .handle(post(
            "/events",
            "application/json",
            &view(email).to_string(),
            None,
        ))
        .await;
    assert_eq!(response.status(), 202);
    let body = json_body(&response);
    assert_eq!(body["status"], "accepted");
    let event_id = body["event_id"].as_str().unwrap().to_string();
    assert_eq!(event_id.len(), 26, "a ULID: {event_id}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");

    let messages = email_messages(&sdk, &stack).await;
    assert_eq!(messages.len(), 1);
    let event = commerce(&messages[0]);
    assert_eq!(event.kind, PRODUCT_VIEWED);
    assert_eq!(event.event_id, event_id, "a redelivery counts once");
    assert_eq!(event.email.unwrap().as_str(), "ana.view@example.com");
    assert_eq!(event.customer_id.as_deref(), Some("c-1"));
    assert_eq!(event.products[0].id, "sku-1");
    assert_eq!(event.products[0].price, Some(199.9));

    let records = event_records(&sdk, &stack).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert!(text_attr(record, "pk").starts_with("EVENT#"));
    assert_eq!(text_attr(record, "event_id"), event_id);
    assert_eq!(text_attr(record, "status"), "queued");
    assert!(record.contains_key("expires_at"));
    assert!(!record.contains_key("unqueued"));
    assert_eq!(
        text_attr(record, "email_fp"),
        fluxo::domain::Email::parse(email).unwrap().fingerprint()
    );
    // The raw email is in the queued message only, never in another attribute.
    for (name, value) in record.iter().filter(|(n, _)| n.as_str() != "message") {
        let shown = format!("{value:?}").to_lowercase();
        assert!(!shown.contains("ana.view@"), "{name} holds the raw email");
    }
    assert_eq!(unqueued_events(&sdk, &stack).await, 0);
}

#[tokio::test]
async fn an_order_with_several_products_is_queued_with_all_of_them() {
    let (sdk, stack) = support::isolated_stack("ev-order").await;
    let r = receiver(&sdk, &sdk, &stack, &[]);
    let order = json!({"event": "order_completed", "customer_id": "c-9",
                       "occurred_at": chrono::Utc::now().to_rfc3339(),
                       "products": [{"id": "a", "name": "A"}, {"id": "b", "name": "B", "price": 10}]});
    let response = r
        .handle(post(
            "/events",
            "application/json",
            &order.to_string(),
            None,
        ))
        .await;
    assert_eq!(response.status(), 202);
    let messages = email_messages(&sdk, &stack).await;
    assert_eq!(messages.len(), 1);
    let event = commerce(&messages[0]);
    assert_eq!(event.kind, ORDER_COMPLETED);
    assert!(event.email.is_none());
    let ids: Vec<&str> = event.products.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    // No email: no fingerprint either.
    assert!(!event_records(&sdk, &stack).await[0].contains_key("email_fp"));
}

#[tokio::test]
async fn each_invalid_event_gets_400_naming_the_field_and_nothing_is_stored_or_queued() {
    let (sdk, stack) = support::isolated_stack("ev-bad").await;
    let r = receiver(&sdk, &sdk, &stack, &[]);
    let with = |path: &str, value: Value| {
        let mut v = view("ana@example.com");
        let mut slot = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            slot = &mut slot[*p];
        }
        slot[parts[parts.len() - 1]] = value;
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("event", json!("page_viewed")), "event"),
        (with("email", json!("not-an-email")), "email"),
        (
            json!({"event": "product_viewed", "product": {"id": "a", "name": "A"}}),
            "email",
        ),
        (with("customer_id", json!("x".repeat(129))), "customer_id"),
        (with("event_id", json!("")), "event_id"),
        (with("occurred_at", json!("yesterday")), "occurred_at"),
        (
            with(
                "occurred_at",
                json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()),
            ),
            "occurred_at",
        ),
        (
            with(
                "occurred_at",
                json!((chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339()),
            ),
            "occurred_at",
        ),
        (with("product.id", json!(null)), "product.id"),
        (with("product.name", json!("")), "product.name"),
        (
            with("product.url", json!("javascript:alert(1)")),
            "product.url",
        ),
        (
            with("product.image_url", json!("/i.jpg")),
            "product.image_url",
        ),
        (with("product.price", json!(-1)), "product.price"),
        (with("product.currency", json!("real")), "product.currency"),
        (with("product.size", json!("42")), "product.size"),
        (with("coupon", json!("X")), "coupon"),
        (
            json!({"event": "order_completed", "email": "ana@example.com", "products": []}),
            "products",
        ),
    ];
    for (body, field) in cases {
        let response = r
            .handle(post("/events", "application/json", &body.to_string(), None))
            .await;
        assert_eq!(response.status(), 400, "{field}: {body}");
        let json = json_body(&response);
        assert_eq!(json["error"], "invalid event");
        let fields: Vec<&str> = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{body}");
    }
    // The problem never quotes the input.
    let hostile = with("product.url", json!("<script>alert(1)</script>"));
    let response = r
        .handle(post(
            "/events",
            "application/json",
            &hostile.to_string(),
            None,
        ))
        .await;
    let Body::Text(text) = response.body() else {
        panic!("a text body")
    };
    assert!(!text.contains("<script>"), "{text}");

    let malformed = r
        .handle(post("/events", "application/json", "{\"event\":", None))
        .await;
    assert_eq!(malformed.status(), 400);
    let form = r
        .handle(post(
            "/events",
            "application/x-www-form-urlencoded",
            "event=product_viewed",
            None,
        ))
        .await;
    assert_eq!(form.status(), 415);
    let mut big = view("ana@example.com");
    big["product"]["name"] = json!("x".repeat(5000));
    let too_large = r
        .handle(post("/events", "application/json", &big.to_string(), None))
        .await;
    assert_eq!(too_large.status(), 413);

    assert!(event_records(&sdk, &stack).await.is_empty());
    assert!(email_messages(&sdk, &stack).await.is_empty());
}

#[tokio::test]
async fn an_idempotency_key_replay_returns_the_same_id_and_queues_one_message() {
    let (sdk, stack) = support::isolated_stack("ev-key").await;
    let r = receiver(&sdk, &sdk, &stack, &[]);
    let body = view("ana@example.com").to_string();
    let first = r
        .handle(post("/events", "application/json", &body, Some("view-1")))
        .await;
    let replay = r
        .handle(post("/events", "application/json", &body, Some("view-1")))
        .await;
    assert_eq!(first.status(), 202);
    assert_eq!(replay.status(), 202);
    assert_eq!(
        json_body(&first)["event_id"],
        json_body(&replay)["event_id"]
    );
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert!(!first.headers().contains_key("idempotent-replayed"));

    // The same key for other content is refused, and changes nothing.
    let other = view("bia@example.com").to_string();
    let reused = r
        .handle(post("/events", "application/json", &other, Some("view-1")))
        .await;
    assert_eq!(reused.status(), 422);

    assert_eq!(event_records(&sdk, &stack).await.len(), 1);
    let messages = email_messages(&sdk, &stack).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        commerce(&messages[0]).event_id,
        json_body(&first)["event_id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_client_event_id_names_the_event_and_without_one_each_post_is_new() {
    let (sdk, stack) = support::isolated_stack("ev-id").await;
    let r = receiver(&sdk, &sdk, &stack, &[]);
    let mut named = view("ana@example.com");
    named["event_id"] = json!("shop-evt-1");
    let a = r
        .handle(post(
            "/events",
            "application/json",
            &named.to_string(),
            None,
        ))
        .await;
    let b = r
        .handle(post(
            "/events",
            "application/json",
            &named.to_string(),
            None,
        ))
        .await;
    assert_eq!(json_body(&a)["event_id"], json_body(&b)["event_id"]);
    assert_eq!(b.headers()["idempotent-replayed"], "true");
    named["product"]["price"] = json!(1);
    let changed = r
        .handle(post(
            "/events",
            "application/json",
            &named.to_string(),
            None,
        ))
        .await;
    assert_eq!(changed.status(), 422);

    let plain = view("ana@example.com").to_string();
    let c = r
        .handle(post("/events", "application/json", &plain, None))
        .await;
    let d = r
        .handle(post("/events", "application/json", &plain, None))
        .await;
    assert_eq!(c.status(), 202);
    assert_eq!(d.status(), 202);
    assert_ne!(json_body(&c)["event_id"], json_body(&d)["event_id"]);
    assert!(!d.headers().contains_key("idempotent-replayed"));

    assert_eq!(event_records(&sdk, &stack).await.len(), 3);
    assert_eq!(email_messages(&sdk, &stack).await.len(), 3);
}

#[tokio::test]
async fn with_the_email_queue_unreachable_the_event_is_accepted_and_the_sweep_queues_it_once() {
    let (sdk, stack) = support::isolated_stack("ev-sweep").await;
    let broken = receiver(&sdk, &unreachable_sdk().await, &stack, &[]);
    let accepted = broken
        .handle(post(
            "/events",
            "application/json",
            &view("ana@example.com").to_string(),
            None,
        ))
        .await;
    // Stored durably: 202, no client retry needed.
    assert_eq!(accepted.status(), 202);
    let event_id = json_body(&accepted)["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let records = event_records(&sdk, &stack).await;
    assert_eq!(text_attr(&records[0], "status"), "stored");
    assert_eq!(unqueued_events(&sdk, &stack).await, 1);

    // A sweep while the queue is still unreachable keeps it stored.
    let report = broken.sweep().await.unwrap();
    assert_eq!((report.events_found, report.events_queued), (1, 0));
    assert_eq!(unqueued_events(&sdk, &stack).await, 1);

    let healthy = receiver(&sdk, &sdk, &stack, &[]);
    let report = healthy.sweep().await.unwrap();
    assert_eq!(
        (
            report.events_found,
            report.events_queued,
            report.events_overdue
        ),
        (1, 1, 0)
    );
    assert_eq!((report.found, report.queued), (0, 0), "no lead was touched");
    assert_eq!(healthy.sweep().await.unwrap().events_found, 0);

    let messages = email_messages(&sdk, &stack).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(commerce(&messages[0]).event_id, event_id);
    assert_eq!(
        text_attr(&event_records(&sdk, &stack).await[0], "status"),
        "queued"
    );
    assert_eq!(unqueued_events(&sdk, &stack).await, 0);
}

#[tokio::test]
async fn with_the_table_unreachable_the_event_gets_503_and_nothing_is_queued() {
    let (sdk, stack) = support::isolated_stack("ev-down").await;
    // DynamoDB behind a closed port, the queues reachable.
    let r = receiver(&unreachable_sdk().await, &sdk, &stack, &[]);
    let response = r
        .handle(post(
            "/events",
            "application/json",
            &view("ana@example.com").to_string(),
            None,
        ))
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(event_records(&sdk, &stack).await.is_empty());
    assert!(email_messages(&sdk, &stack).await.is_empty());
}

#[tokio::test]
async fn events_share_the_cors_rules_of_leads_and_unknown_paths_get_404() {
    let (sdk, stack) = support::isolated_stack("ev-cors").await;
    let r = receiver(
        &sdk,
        &sdk,
        &stack,
        &[("ALLOWED_ORIGINS", "https://loja.example")],
    );
    let preflight = |origin: &str| {
        http::Request::builder()
            .method("OPTIONS")
            .uri("/events")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::Empty)
            .unwrap()
    };
    let allowed = r.handle(preflight("https://loja.example")).await;
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://loja.example"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-methods"],
        "POST, OPTIONS"
    );
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("idempotency-key")
    );
    assert_eq!(
        r.handle(preflight("https://evil.example")).await.status(),
        403
    );

    let from_shop = http::Request::builder()
        .method("POST")
        .uri("/events")
        .header("origin", "https://loja.example")
        .header("content-type", "application/json")
        .body(Body::Text(view("ana@example.com").to_string()))
        .unwrap();
    let response = r.handle(from_shop).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://loja.example"
    );
    let from_elsewhere = http::Request::builder()
        .method("POST")
        .uri("/events")
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(Body::Text(view("ana@example.com").to_string()))
        .unwrap();
    assert_eq!(r.handle(from_elsewhere).await.status(), 403);

    let get = http::Request::builder()
        .method("GET")
        .uri("/events")
        .body(Body::Empty)
        .unwrap();
    let get = r.handle(get).await;
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");

    // A stage or base path in front of the route does not matter.
    let staged = r
        .handle(post(
            "/prod/events",
            "application/json",
            &view("ana@example.com").to_string(),
            None,
        ))
        .await;
    assert_eq!(staged.status(), 202);

    for path in ["/event", "/leads/a/b", "/"] {
        let response = r.handle(post(path, "application/json", "{}", None)).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            json_body(&response)["error"]
                .as_str()
                .unwrap()
                .contains("POST /events")
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    // Only the two accepted events reached the queue.
    assert_eq!(email_messages(&sdk, &stack).await.len(), 2);
}

#[tokio::test]
async fn the_binary_under_cargo_lambda_watch_serves_post_events() {
    let shared = StackInfo::load_from_env().unwrap();
    let sdk = support::sdk().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let key = format!(
        "it-events-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let url = format!("{}/events", support::api_url());
    let send = || {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", &key)
            .body(view("http-view@example.com").to_string())
            .send()
    };
    let response = send().await.unwrap();
    assert_eq!(response.status(), 202);
    let event_id = response.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    let stored: Vec<_> = support::scan_all(&sdk, shared.table("LeadsTable").unwrap())
        .await
        .into_iter()
        .filter(|i| text_attr(i, "event_id") == event_id)
        .collect();
    assert_eq!(stored.len(), 1, "the event is stored once");
    assert_eq!(text_attr(&stored[0], "status"), "queued");

    let bad = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"event":"product_viewed","email":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let json: Value = bad.json().await.unwrap();
    let fields: Vec<&str> = json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["email", "product"]);
}
