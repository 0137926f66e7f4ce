//! Signed lead sources against moto through the real SDK clients (replay markers, lead-ad notices,
//! intake records), with a wiremock Graph API for the Meta lead fetch.

use std::time::Duration;

use aws_config::SdkConfig;
use fluxo::adapters::dynamodb::DynamoIntakeStore;
use fluxo::adapters::sources::DynamoSources;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::connector::{RetryPolicy, Secret};
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::sources::meta_lead_ads::client::GraphClient;
use fluxo::sources::meta_lead_ads::request as meta;
use fluxo::sources::standard_webhooks::request as standard;
use fluxo::sources::typeform::request as typeform;
use fluxo::sources::{SigningKey, SigningKeys};
use lambda_http::{Body, Request};
use webhook_receiver::Receiver;
use webhook_receiver::setup::Settings as ReceiverSettings;
use webhook_receiver::sources::{Source, Sources};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};
use xtask::stack::StackInfo;

use crate::support;

const APP_SECRET: &str = "it-meta-app-secret";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type SignedReceiver =
    Receiver<DynamoIntakeStore, SqsQueue, SystemClock, ThreadRandomness, DynamoSources>;

fn receiver(sdk: &SdkConfig, stack: &StackInfo) -> SignedReceiver {
    let table = stack.table("LeadsTable").unwrap().to_string();
    let queue = stack.queue("LeadsQueue").unwrap().url.clone();
    let settings = ReceiverSettings::from_source(&[
        ("LEADS_TABLE", table.as_str()),
        ("LEADS_QUEUE_URL", queue.as_str()),
        ("MAX_BODY_BYTES", "4096"),
    ])
    .unwrap();
    Receiver::new(
        settings,
        DynamoIntakeStore::from_sdk_config(sdk, table.clone()),
        SqsQueue::from_sdk_config(sdk, queue),
        SystemClock,
        ThreadRandomness,
    )
    .with_source_store(DynamoSources::from_sdk_config(sdk, table))
}

fn sources(graph: &MockServer) -> Sources {
    let config = toml::from_str(&format!(
        r#"name = "meta"
app_secret = {{ env = "UNUSED" }}
verify_token = {{ env = "UNUSED" }}
page_token = {{ env = "UNUSED" }}
graph_url = "{}/v25.0"
consent_checkbox = "marketing""#,
        graph.uri()
    ))
    .unwrap();
    Sources::none()
        .with(
            "meta",
            Source::Meta {
                app_secrets: SigningKeys::new(
                    SigningKey::new(APP_SECRET.as_bytes().to_vec()),
                    None,
                ),
                verify_tokens: SigningKeys::new(SigningKey::new(b"vt".to_vec()), None),
                graph: GraphClient::new(
                    fluxo::connector::http_client(Duration::from_secs(2), Duration::from_secs(4))
                        .unwrap(),
                    format!("{}/v25.0", graph.uri()),
                    Secret::new("it-page-token"),
                    RetryPolicy {
                        max_attempts: 2,
                        base_delay: Duration::from_millis(5),
                        max_delay: Duration::from_millis(20),
                    },
                ),
                config: Box::new(config),
            },
        )
        .with(
            "backend",
            Source::StandardWebhooks {
                keys: SigningKeys::new(standard::key_from_secret(SW_SECRET).unwrap(), None),
            },
        )
}

fn notification(leadgen_id: &str) -> String {
    format!(
        r#"{{"object":"page","entry":[{{"id":"1","time":1764324000,"changes":[{{"field":"leadgen","value":{{"leadgen_id":"{leadgen_id}","page_id":"1","form_id":"555","ad_id":"666","adgroup_id":"777"}}}}]}}]}}"#
    )
}

fn post(path: &str, headers: &[(&str, String)], body: &str) -> Request {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    builder.body(Body::Text(body.to_string())).unwrap()
}

async fn intake_leads(sdk: &SdkConfig, stack: &StackInfo) -> Vec<LeadEnvelope> {
    support::scan_all(sdk, stack.table("LeadsTable").unwrap())
        .await
        .into_iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|p| p.starts_with("INTAKE#"))
        })
        .filter_map(|i| LeadEnvelope::from_json(i.get("envelope")?.as_s().ok()?).ok())
        .collect()
}

fn lead_reply(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string(format!(
        r#"{{"id":"{id}","created_time":"2026-11-28T10:00:00+0000","campaign_id":"888","adset_id":"777","ad_id":"666","form_id":"555","field_data":[{{"name":"email","values":["lead.{id}@exemplo.com"]}},{{"name":"full_name","values":["Lead {id}"]}}],"custom_disclaimer_responses":[{{"checkbox_key":"marketing","is_checked":"1"}}]}}"#
    ))
}

#[tokio::test]
async fn a_signed_meta_notice_is_stored_then_fetched_into_one_lead_on_the_queue() {
    let (sdk, stack) = support::isolated_stack("meta").await;
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/1001"))
        .and(query_param("access_token", "it-page-token"))
        .and(query_param("fields", meta::LEAD_FIELDS))
        .respond_with(lead_reply("1001"))
        .expect(1)
        .mount(&graph)
        .await;
    let r = receiver(&sdk, &stack);
    let sources = sources(&graph);
    let body = notification("1001");
    let signed = [(
        "x-hub-signature-256",
        meta::sign(APP_SECRET.as_bytes(), body.as_bytes()),
    )];
    let response = r
        .handle_with(post("/leads/meta", &signed, &body), &sources)
        .await;
    assert_eq!(response.status(), 200);
    // Meta redelivers: the same leadgen_id is one notice.
    let again = r
        .handle_with(post("/leads/meta", &signed, &body), &sources)
        .await;
    assert_eq!(again.status(), 200);
    assert!(
        intake_leads(&sdk, &stack).await.is_empty(),
        "no lead before the fetch"
    );

    let report = r.sweep_notices(&sources).await.unwrap();
    assert_eq!((report.found, report.stored), (1, 1));
    let leads = intake_leads(&sdk, &stack).await;
    assert_eq!(leads.len(), 1);
    let lead = &leads[0].lead;
    assert_eq!(lead.email.as_str(), "lead.1001@exemplo.com");
    assert_eq!(lead.ad.campaign_id.as_deref(), Some("888"));
    assert!(lead.has_marketing_consent());
    let queued = support::drain(&sdk, &stack.queue("LeadsQueue").unwrap().url, 30).await;
    assert_eq!(queued.len(), 1);
    // Nothing is left to fetch.
    assert_eq!(r.sweep_notices(&sources).await.unwrap().found, 0);
}

#[tokio::test]
async fn an_expired_page_token_keeps_the_notice_for_a_later_sweep() {
    let (sdk, stack) = support::isolated_stack("metaexp").await;
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/2002"))
        .respond_with(ResponseTemplate::new(400).set_body_string(
            r#"{"error":{"message":"Session has expired","type":"OAuthException","code":190}}"#,
        ))
        .expect(1)
        .mount(&graph)
        .await;
    let r = receiver(&sdk, &stack);
    let sources = sources(&graph);
    let body = notification("2002");
    let signed = [(
        "x-hub-signature-256",
        meta::sign(APP_SECRET.as_bytes(), body.as_bytes()),
    )];
    assert_eq!(
        r.handle_with(post("/leads/meta", &signed, &body), &sources)
            .await
            .status(),
        200
    );
    let report = r.sweep_notices(&sources).await.unwrap();
    assert_eq!((report.stored, report.waiting, report.failed), (0, 1, 0));
    assert!(intake_leads(&sdk, &stack).await.is_empty());
    // Still pending: a later sweep (with a new token) fetches it.
    graph.reset().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/2002"))
        .respond_with(lead_reply("2002"))
        .mount(&graph)
        .await;
    assert_eq!(r.sweep_notices(&sources).await.unwrap().stored, 1);
}

#[tokio::test]
async fn hostile_meta_notifications_get_401_and_nothing_is_stored() {
    let (sdk, stack) = support::isolated_stack("metabad").await;
    let graph = MockServer::start().await;
    let r = receiver(&sdk, &stack);
    let sources = sources(&graph);
    let body = notification("3003");
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("x-hub-signature-256", meta::sign(b"wrong", body.as_bytes()))],
        vec![(
            "x-hub-signature-256",
            meta::sign(APP_SECRET.as_bytes(), b"{}"),
        )],
    ];
    for headers in cases {
        let response = r
            .handle_with(post("/leads/meta", &headers, &body), &sources)
            .await;
        assert_eq!(response.status(), 401);
    }
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(5000));
    let signed = [(
        "x-hub-signature-256",
        meta::sign(APP_SECRET.as_bytes(), big.as_bytes()),
    )];
    assert_eq!(
        r.handle_with(post("/leads/meta", &signed, &big), &sources)
            .await
            .status(),
        413
    );
    assert!(
        support::scan_all(&sdk, stack.table("LeadsTable").unwrap())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_replayed_standard_webhook_id_is_refused_by_the_dynamodb_marker() {
    let (sdk, stack) = support::isolated_stack("swreplay").await;
    let graph = MockServer::start().await;
    let r = receiver(&sdk, &stack);
    let sources = sources(&graph);
    let body = r#"{"email":"ana@exemplo.com"}"#;
    let now = chrono::Utc::now().timestamp();
    let key = standard::key_from_secret(SW_SECRET).unwrap();
    let headers = |ts: i64| {
        vec![
            ("webhook-id", "msg_it_1".to_string()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                standard::sign(&key, "msg_it_1", ts, body.as_bytes()),
            ),
        ]
    };
    let first = r
        .handle_with(post("/leads/backend", &headers(now), body), &sources)
        .await;
    assert_eq!(first.status(), 200);
    let replay = r
        .handle_with(post("/leads/backend", &headers(now + 1), body), &sources)
        .await;
    assert_eq!(replay.status(), 401);
    let old = r
        .handle_with(post("/leads/backend", &headers(now - 600), body), &sources)
        .await;
    assert_eq!(old.status(), 401);
    assert_eq!(intake_leads(&sdk, &stack).await.len(), 1);
}

#[tokio::test]
async fn hostile_google_and_typeform_deliveries_get_4xx_store_nothing_and_a_redelivery_counts_once()
{
    let (sdk, stack) = support::isolated_stack("gtbad").await;
    let graph = MockServer::start().await;
    let r = receiver(&sdk, &stack);
    let tf_secret = b"it-typeform-secret";
    let sources = sources(&graph)
        .with(
            "google",
            Source::Google {
                keys: SigningKeys::new(SigningKey::new(b"it-google-key".to_vec()), None),
                forward_tests: false,
            },
        )
        .with(
            "typeform",
            Source::Typeform {
                keys: SigningKeys::new(SigningKey::new(tf_secret.to_vec()), None),
                fields: [("email_ref".to_string(), "email".to_string())].into(),
            },
        );
    let google = |key: Option<&str>| {
        let mut body = serde_json::json!({
            "lead_id": "gl-it-1",
            "form_id": 42,
            "campaign_id": 7,
            "gcl_id": "gcl-it",
            "user_column_data": [{"column_id": "EMAIL", "string_value": "g.lead@exemplo.com"}]
        });
        if let Some(k) = key {
            body["google_key"] = serde_json::Value::from(k);
        }
        body.to_string()
    };
    let typeform = serde_json::json!({
        "event_id": "tf-ev-1",
        "event_type": "form_response",
        "form_response": {
            "token": "tf-token-1",
            "answers": [{"type": "email", "email": "t.lead@exemplo.com", "field": {"ref": "email_ref"}}]
        }
    })
    .to_string();
    let status = |path: &'static str, headers: Vec<(&'static str, String)>, body: String| {
        let request = post(path, &headers, &body);
        let sources = &sources;
        let r = &r;
        async move { r.handle_with(request, sources).await.status().as_u16() }
    };

    // Google: no key, a wrong key, a body that is not JSON.
    assert_eq!(status("/leads/google", vec![], google(None)).await, 401);
    assert_eq!(
        status("/leads/google", vec![], google(Some("wrong"))).await,
        401
    );
    assert_eq!(
        status("/leads/google", vec![], "not json".into()).await,
        401
    );
    // Typeform: no header, a malformed one, a wrong secret, a signature over another body.
    let tf = typeform.as_bytes();
    for headers in [
        vec![],
        vec![("typeform-signature", "sha256=%%%".to_string())],
        vec![("typeform-signature", typeform::sign(b"wrong", tf))],
        vec![("typeform-signature", typeform::sign(tf_secret, b"{}"))],
    ] {
        assert_eq!(
            status("/leads/typeform", headers, typeform.clone()).await,
            401
        );
    }
    // Oversized bodies (the test receiver's MAX_BODY_BYTES is 4096), even when signed.
    let big = format!(
        "{{\"google_key\":\"it-google-key\",\"x\":\"{}\"}}",
        "y".repeat(5000)
    );
    assert_eq!(status("/leads/google", vec![], big.clone()).await, 413);
    let signed_big = vec![(
        "typeform-signature",
        typeform::sign(tf_secret, big.as_bytes()),
    )];
    assert_eq!(status("/leads/typeform", signed_big, big).await, 413);
    assert!(
        support::scan_all(&sdk, stack.table("LeadsTable").unwrap())
            .await
            .is_empty(),
        "a refused delivery stored something"
    );

    // A platform's redelivery of the same lead (its lead id, its response token) is one lead.
    for _ in 0..2 {
        assert_eq!(
            status("/leads/google", vec![], google(Some("it-google-key"))).await,
            200
        );
        let signed = vec![("typeform-signature", typeform::sign(tf_secret, tf))];
        assert_eq!(
            status("/leads/typeform", signed, typeform.clone()).await,
            200
        );
    }
    let leads = intake_leads(&sdk, &stack).await;
    assert_eq!(leads.len(), 2, "one lead per platform id: {leads:?}");
}
