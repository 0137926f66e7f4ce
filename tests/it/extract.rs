//! The daily ad-platform extract (issue 12): the Google Ads GAQL report and the Meta account insights
//! against wiremock servers that assert the documented request shapes, then the optimizer's
//! `daily_extract` invocation emitting to a copy of the template's analytics queue on moto, report-export
//! (under `cargo lambda watch`) writing what it emitted to the lake, and the dashboard's reader counting
//! a re-run day once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use fluxo::adapters::journal::DynamoOptimizerStore;
use fluxo::adapters::s3::S3Objects;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::ads::generic::{GenericClient, GenericConfig};
use fluxo::ads::google::{GoogleAdsClient, GoogleAdsConfig, GoogleAuth};
use fluxo::ads::meta::{MetaClient, MetaConfig};
use fluxo::ads::{DailyCampaign, Platforms};
use fluxo::analytics::sink::Message;
use fluxo::analytics::{QueueSink, Record};
use fluxo::connector::{ConnectorError, RetryPolicy, Secret, http_client};
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::slack::{RunNotifier, SlackPreview};
use hourly_optimizer::engine::Engine;
use report_api::Filter;
use report_api::facts::{Facts, FileCache, S3Lake};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support;

const GOOGLE_TOKEN: &str = "ya29.daily-token";
const META_TOKEN: &str = "EAAB-daily-token";
const MANAGER: &str = "9999999999";

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(5),
    }
}

fn google(server: &MockServer) -> GoogleAdsClient {
    GoogleAdsClient::new(
        http_client(Duration::from_secs(2), Duration::from_secs(10)).unwrap(),
        GoogleAdsConfig {
            endpoint: server.uri(),
            api_version: "v25".into(),
            auth: GoogleAuth::Static(Secret::new(GOOGLE_TOKEN)),
            login_customer_id: Some(MANAGER.into()),
            retry: quick_retry(),
        },
    )
}

fn meta(server: &MockServer) -> MetaClient {
    MetaClient::new(
        http_client(Duration::from_secs(2), Duration::from_secs(10)).unwrap(),
        MetaConfig {
            endpoint: server.uri(),
            api_version: "v25.0".into(),
            access_token: Secret::new(META_TOKEN),
            retry: quick_retry(),
        },
    )
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()
}

/// The GAQL report the extract sends for `day`.
fn gaql(day: NaiveDate) -> String {
    let d = day.format("%Y-%m-%d");
    format!(
        "SELECT customer.currency_code, campaign.id, segments.date, metrics.cost_micros, \
         metrics.clicks, metrics.conversions FROM campaign WHERE segments.date BETWEEN '{d}' AND '{d}'"
    )
}

/// A searchStream answer (an array of batches) with two campaigns, the second in a second batch.
fn google_stream(day: NaiveDate) -> Value {
    let d = day.format("%Y-%m-%d").to_string();
    json!([
        {"results": [{
            "customer": {"resourceName": "customers/1234567890", "currencyCode": "BRL"},
            "campaign": {"resourceName": "customers/1234567890/campaigns/701", "id": "701"},
            "segments": {"date": d},
            "metrics": {"costMicros": "25000000", "clicks": "50", "conversions": 5.0}
        }], "fieldMask": "customer.currencyCode,campaign.id,segments.date,metrics.costMicros,metrics.clicks,metrics.conversions", "requestId": "r1"},
        {"results": [{
            "customer": {"resourceName": "customers/1234567890", "currencyCode": "BRL"},
            "campaign": {"resourceName": "customers/1234567890/campaigns/702", "id": "702"},
            "segments": {"date": d},
            "metrics": {"costMicros": "3000000", "clicks": "7", "conversions": 0.0}
        }], "fieldMask": "customer.currencyCode,campaign.id,segments.date,metrics.costMicros,metrics.clicks,metrics.conversions", "requestId": "r1"}
    ])
}

async fn mount_google(server: &MockServer, day: NaiveDate) {
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .and(header(
            "authorization",
            format!("Bearer {GOOGLE_TOKEN}").as_str(),
        ))
        .and(header("login-customer-id", MANAGER))
        .and(body_json(json!({ "query": gaql(day) })))
        .respond_with(ResponseTemplate::new(200).set_body_json(google_stream(day)))
        .mount(server)
        .await;
}

/// Two pages of account insights: the first names the cursor of the second in `paging.next`.
async fn mount_meta(server: &MockServer, day: NaiveDate) {
    let d = day.format("%Y-%m-%d").to_string();
    let time_range = format!(r#"{{"since":"{d}","until":"{d}"}}"#);
    let page = |id: &str, spend: &str, leads: &str| {
        json!({"campaign_id": id, "spend": spend, "clicks": "20", "account_currency": "BRL",
               "actions": [{"action_type": "lead", "value": leads}, {"action_type": "link_click", "value": "20"}],
               "date_start": d, "date_stop": d})
    };
    let base = || {
        Mock::given(method("GET"))
            .and(path("/v25.0/act_777/insights"))
            .and(header(
                "authorization",
                format!("Bearer {META_TOKEN}").as_str(),
            ))
            .and(query_param("level", "campaign"))
            .and(query_param(
                "fields",
                "campaign_id,spend,clicks,actions,account_currency",
            ))
            .and(query_param("time_range", time_range.as_str()))
            .and(query_param("limit", "500"))
    };
    base()
        .and(query_param("after", "CURSOR-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [page("2385002", "4.50", "0")],
            "paging": {"cursors": {"before": "CURSOR-2", "after": "CURSOR-2"}}
        })))
        .with_priority(1)
        .mount(server)
        .await;
    base()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [page("2385001", "12.00", "3")],
            "paging": {"cursors": {"before": "MAZDZD", "after": "CURSOR-2"},
                       "next": format!("{}/v25.0/act_777/insights?after=CURSOR-2", server.uri())}
        })))
        .with_priority(10)
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_google_daily_report_is_one_gaql_stream_per_account_with_the_documented_headers() {
    let server = MockServer::start().await;
    mount_google(&server, day()).await;
    let rows = google(&server)
        .daily_campaigns("1234567890", day())
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            DailyCampaign {
                campaign_id: "701".into(),
                spend_micros: 25_000_000,
                clicks: 50,
                conversions_milli: 5_000,
                currency: Some("BRL".into()),
            },
            DailyCampaign {
                campaign_id: "702".into(),
                spend_micros: 3_000_000,
                clicks: 7,
                conversions_milli: 0,
                currency: Some("BRL".into()),
            },
        ]
    );
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "one report per account");
    // Developer tokens were sunset on 2026-09-09: the header is not sent.
    assert!(received[0].headers.get("developer-token").is_none());
}

#[tokio::test]
async fn the_google_daily_report_waits_the_retry_delay_of_a_quota_error_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Resource has been exhausted",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
              "errors": [{"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"},
                "details": {"quotaErrorDetails": {"rateScope": "ACCOUNT", "retryDelay": "1s"}}}]}]}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_google(&server, day()).await;
    let started = std::time::Instant::now();
    let rows = google(&server)
        .daily_campaigns("1234567890", day())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retryDelay was waited"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_meta_account_insights_follow_the_after_cursor_page_by_page() {
    let server = MockServer::start().await;
    mount_meta(&server, day()).await;
    let rows = meta(&server)
        .daily_campaigns("act_777", day(), &["lead".to_string()])
        .await
        .unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.campaign_id.as_str(), r.spend_micros, r.conversions_milli))
        .collect();
    assert_eq!(
        got,
        [("2385001", 12_000_000, 3_000), ("2385002", 4_500_000, 0)]
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_meta_report_is_permanent_and_asked_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/act_777/insights"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#100) Tried accessing nonexisting field", "type": "OAuthException",
            "code": 100, "fbtrace_id": "x"}})))
        .mount(&server)
        .await;
    let err = meta(&server)
        .daily_campaigns("act_777", day(), &["lead".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Permanent { .. }), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // An account id that is not `act_<digits>` is never sent.
    let err = meta(&server)
        .daily_campaigns("act_1/../me", day(), &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not sent"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

const CAMPAIGNS: &str = r#"
[optimizer.google_ads]
access_token = { env = "GOOGLE_ADS_TOKEN_UNUSED" }
login_customer_id = "9999999999"
[optimizer.meta]
access_token = { env = "META_TOKEN_UNUSED" }

[[optimizer.campaigns]]
name = "brand-search"
platform = "google_ads"
account = "1234567890"
entity = "campaign"
entity_id = "701"
currency = "BRL"
target_cpa = 4.00
mode = "dry_run"

[[optimizer.campaigns]]
name = "lead-ads"
platform = "meta"
account = "act_777"
entity = "ad_set"
entity_id = "238"
currency = "BRL"
target_cpa = 4.00
mode = "dry_run"
conversion_action_types = ["lead"]
"#;

/// A day of its own for one test run, so the rows' day keys are new to the stack's lake.
fn unique_day() -> NaiveDate {
    let days = (Utc::now().timestamp_millis() / 7) % 3000;
    NaiveDate::from_ymd_opt(2001, 1, 1).unwrap() + chrono::Days::new(days.unsigned_abs())
}

/// The SQS event report-export receives for these queue messages.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AnalyticsQueue",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// End to end: the `daily_extract` payload the template's schedule sends, handled twice for the same day
/// (a re-run), against wiremock Google Ads and Meta; the records reach an isolated copy of the analytics
/// queue on moto, report-export (under `cargo lambda watch`) writes them to the lake, and the dashboard's
/// reader finds each campaign's day exactly once.
#[tokio::test]
async fn a_daily_extract_run_twice_puts_every_campaigns_day_in_the_lake_once() {
    let (sdk, stack) = support::isolated_stack("extract").await;
    let queue_url = stack.queue("AnalyticsQueue").unwrap().url.clone();
    fluxo::analytics::install(
        "hourly-optimizer",
        QueueSink::new(SqsQueue::from_sdk_config(&sdk, queue_url.clone())),
    );
    assert!(
        fluxo::analytics::enabled(),
        "the test's analytics sink is installed"
    );

    let day = unique_day();
    let server = MockServer::start().await;
    mount_google(&server, day).await;
    mount_meta(&server, day).await;
    let http = http_client(Duration::from_secs(2), Duration::from_secs(10)).unwrap();
    let platforms = Platforms {
        google_ads: Some(google(&server)),
        meta: Some(meta(&server)),
        generic: GenericClient::new(
            http,
            GenericConfig {
                token: None,
                retry: quick_retry(),
            },
        ),
    };
    let loaded = fluxo::config::load_str("extract.toml", CAMPAIGNS).unwrap();
    let o = &loaded.config.optimizer;
    let engine = Engine::new(
        platforms,
        DynamoOptimizerStore::from_sdk_config(&sdk, stack.table("OptimizerTable").unwrap()),
        RunNotifier::Preview(SlackPreview::default()),
        Arc::new(SystemClock),
        Arc::new(ThreadRandomness),
        o.resolve_campaigns().unwrap(),
        o.engine_settings(),
        loaded.version.clone(),
    );

    let payload = json!({"action": "daily_extract", "date": day.format("%Y-%m-%d").to_string()});
    for _ in 0..2 {
        let report = hourly_optimizer::handler::handle(&engine, payload.clone(), &SystemClock)
            .await
            .unwrap();
        assert_eq!(report["rows"], 4, "{report:#}");
        assert_eq!(
            report["accounts"].as_array().unwrap().len(),
            2,
            "{report:#}"
        );
    }
    // Google: one report per run; Meta: two pages per run.
    assert_eq!(server.received_requests().await.unwrap().len(), 6);

    // The analytics queue holds both runs' rows, with the same day keys.
    let messages = support::drain(&sdk, &queue_url, 120).await;
    let mine = |r: &Record| match r {
        Record::AdMetrics(m) if m.origin == "daily_extract" && m.window_start == day => {
            Some(m.clone())
        }
        _ => None,
    };
    let emitted: Vec<_> = messages
        .iter()
        .flat_map(|m| {
            Message::parse(m.body().unwrap_or_default())
                .unwrap()
                .records
        })
        .filter_map(|r| mine(&r))
        .collect();
    assert_eq!(emitted.len(), 8, "two runs of four campaigns");
    let mut ids: Vec<_> = emitted.iter().map(|m| m.metric_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let d = day.format("%Y-%m-%d");
    assert_eq!(
        ids,
        [
            format!("daily_extract#google_ads#1234567890#701#{d}"),
            format!("daily_extract#google_ads#1234567890#702#{d}"),
            format!("daily_extract#meta#act_777#2385001#{d}"),
            format!("daily_extract#meta#act_777#2385002#{d}"),
        ]
    );

    // report-export writes them to the lake; the dashboard's reader counts each campaign's day once.
    let invoke = std::env::var(xtask::stack::ENV_INVOKE_URL).expect("the invoke URL");
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{invoke}/2015-03-31/functions/report-export/invocations"
        ))
        .timeout(Duration::from_secs(120))
        .json(&sqs_event(&messages))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["batchItemFailures"].as_array().map(Vec::len),
        Some(0),
        "{answer}"
    );
    let info = xtask::stack::StackInfo::load_from_env().unwrap();
    let lake = S3Lake::new(
        S3Objects::from_sdk_config(&support::sdk().await).unwrap(),
        info.bucket("LakeBucket").unwrap(),
    );
    let today = Utc::now().date_naive();
    let facts = Facts::load(
        &lake,
        &FileCache::default(),
        &Filter {
            from: today,
            to: today,
            source: None,
        },
    )
    .await
    .unwrap();
    let read: Vec<_> = facts
        .ad_metrics
        .iter()
        .filter(|m| m.origin == "daily_extract" && m.window_start == day)
        .collect();
    assert_eq!(read.len(), 4, "each campaign's day once: {read:#?}");
    let google = read.iter().find(|m| m.campaign_id == "701").unwrap();
    assert_eq!(
        (google.spend, google.clicks, google.conversions, google.cpa),
        (25.0, 50, 5.0, Some(5.0))
    );
    assert_eq!(
        (google.platform.as_str(), google.currency.as_str()),
        ("google_ads", "BRL")
    );
    let meta = read.iter().find(|m| m.campaign_id == "2385001").unwrap();
    assert_eq!(
        (meta.spend, meta.conversions, meta.cpa),
        (12.0, 3.0, Some(4.0))
    );
}

/// The deployed path: the optimizer binary under `cargo lambda watch` takes the schedule's payload and
/// answers a daily extract report (the test stack's config has no Google Ads or Meta account, so it
/// reads none).
#[tokio::test]
async fn the_binary_under_cargo_lambda_watch_takes_the_schedules_daily_extract_payload() {
    let invoke = std::env::var(xtask::stack::ENV_INVOKE_URL).expect("the invoke URL");
    let response = reqwest::Client::new()
        .post(format!(
            "{invoke}/2015-03-31/functions/hourly-optimizer/invocations"
        ))
        .timeout(Duration::from_secs(300))
        .json(&json!({"action": "daily_extract"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let report: Value = response.json().await.unwrap();
    let yesterday = Utc::now().date_naive() - chrono::Days::new(1);
    assert_eq!(report["action"], "daily_extract", "{report:#}");
    assert_eq!(
        report["day"],
        yesterday.format("%Y-%m-%d").to_string(),
        "{report:#}"
    );
    assert_eq!(report["rows"], 0, "{report:#}");
}
