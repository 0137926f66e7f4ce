//! Hourly optimizer against moto (real SDK) with wiremock as Google Ads, Meta, the generic platform and Slack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, TimeZone, Utc};
use fluxo::adapters::journal::DynamoOptimizerStore;
use fluxo::ads::Platforms;
use fluxo::ads::generic::{GenericClient, GenericConfig};
use fluxo::ads::google::{GoogleAdsClient, GoogleAdsConfig, GoogleAuth};
use fluxo::ads::meta::{MetaClient, MetaConfig};
use fluxo::connector::{RetryPolicy, Secret, http_client};
use fluxo::optimizer::engine::Engine;
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::slack::{RunNotifier, SlackConfig, SlackNotifier};
use serde_json::{Value, json};
use wiremock::matchers::{
    body_partial_json, body_string_contains, header, method, path, query_param,
};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GOOGLE_TOKEN: &str = "ya29.test-token";
const META_TOKEN: &str = "EAAB-test-token";

/// An isolated copy of the template's tables on moto.
async fn journal_store(test: &str) -> Result<DynamoOptimizerStore> {
    let endpoint = std::env::var(xtask::stack::ENV_AWS_ENDPOINT).map_err(|_| {
        anyhow!(
            "{} is not set: run through `cargo xtask test`",
            xtask::stack::ENV_AWS_ENDPOINT
        )
    })?;
    let sdk = xtask::stack::local_sdk_config(&endpoint).await;
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let stack = xtask::stack::provision(
        &sdk,
        &xtask::paths::template(),
        &format!("t-opt-{test}-{nanos}-"),
    )
    .await?;
    Ok(DynamoOptimizerStore::from_sdk_config(
        &sdk,
        stack.table("OptimizerTable")?,
    ))
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(5),
    }
}

/// Platform clients and a Slack notifier, all pointed at one wiremock server.
fn platforms(server: &MockServer) -> Result<(Platforms, RunNotifier)> {
    platforms_with(server, GoogleAuth::Static(Secret::new(GOOGLE_TOKEN)))
}

/// Google through the OAuth2 refresh-token flow, with the token endpoint on the mock server.
fn platforms_refreshing(server: &MockServer) -> Result<(Platforms, RunNotifier)> {
    platforms_with(
        server,
        GoogleAuth::Refresh {
            token_url: format!("{}/token", server.uri()),
            client_id: "123-abc.apps.googleusercontent.com".into(),
            client_secret: Secret::new("client-secret"),
            refresh_token: Secret::new("1//refresh"),
        },
    )
}

fn platforms_with(server: &MockServer, auth: GoogleAuth) -> Result<(Platforms, RunNotifier)> {
    let http = http_client(Duration::from_secs(2), Duration::from_secs(10))?;
    let platforms = Platforms {
        google_ads: Some(GoogleAdsClient::new(
            http.clone(),
            GoogleAdsConfig {
                endpoint: server.uri(),
                api_version: "v25".into(),
                auth,
                login_customer_id: Some("9999999999".into()),
                retry: quick_retry(),
            },
        )),
        meta: Some(MetaClient::new(
            http.clone(),
            MetaConfig {
                endpoint: server.uri(),
                api_version: "v25.0".into(),
                access_token: Secret::new(META_TOKEN),
                retry: quick_retry(),
            },
        )),
        generic: GenericClient::new(
            http.clone(),
            GenericConfig {
                token: None,
                retry: quick_retry(),
            },
        ),
    };
    let slack = RunNotifier::Slack(SlackNotifier::new(
        http,
        SlackConfig {
            webhook_url: Secret::new(format!("{}/services/T000/B000/XXXX", server.uri())),
            min_interval: Duration::from_millis(1000),
            retry: quick_retry(),
        },
    ));
    Ok((platforms, slack))
}

/// The config's `[optimizer]` section with the given campaigns, URLs pointed at the mock server.
fn config(server: &MockServer, campaigns: &str) -> Result<fluxo::config::LoadedConfig> {
    let text = format!(
        r#"
[optimizer]
[optimizer.slack]
webhook_url = {{ env = "SLACK_WEBHOOK_URL_UNUSED" }}
[optimizer.google_ads]
oauth_client_id = "123-abc.apps.googleusercontent.com"
oauth_client_secret = {{ env = "GOOGLE_ADS_CLIENT_SECRET_UNUSED" }}
oauth_refresh_token = {{ env = "GOOGLE_ADS_REFRESH_TOKEN_UNUSED" }}
login_customer_id = "9999999999"
[optimizer.meta]
access_token = {{ env = "META_TOKEN_UNUSED" }}
{}
"#,
        campaigns.replace("{uri}", &server.uri())
    );
    Ok(fluxo::config::load_str("it.toml", &text)?)
}

fn engine(
    loaded: &fluxo::config::LoadedConfig,
    platforms: Platforms,
    store: DynamoOptimizerStore,
    notifier: RunNotifier,
) -> Result<Engine<Platforms, DynamoOptimizerStore, RunNotifier>> {
    let o = &loaded.config.optimizer;
    let campaigns = o.resolve_campaigns().map_err(|e| anyhow!(e))?;
    Ok(Engine::new(
        platforms,
        store,
        notifier,
        Arc::new(SystemClock),
        Arc::new(ThreadRandomness),
        campaigns,
        o.engine_settings(),
        loaded.version.clone(),
    ))
}

/// A real EventBridge scheduled event for `time`.
fn scheduled_event(time: DateTime<Utc>) -> Value {
    json!({
        "version": "0",
        "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/fluxo-HourlyOptimizerFunctionHourly"],
        "detail": {}
    })
}

fn hour() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 20, 0, 7)
        .single()
        .unwrap_or_else(Utc::now)
}

async fn invoke(
    e: &Engine<Platforms, DynamoOptimizerStore, RunNotifier>,
    payload: Value,
) -> Result<Value> {
    hourly_optimizer::handler::handle(e, payload, &SystemClock)
        .await
        .map_err(|err| anyhow!("{err}"))
}

fn stream(cost_micros: i64, conversions: f64, clicks: i64, bid_micros: i64) -> Value {
    json!([{
        "results": [{
            "adGroup": {"resourceName": "customers/1234567890/adGroups/555", "id": "555", "status": "ENABLED", "cpcBidMicros": bid_micros.to_string()},
            "metrics": {"costMicros": cost_micros.to_string(), "conversions": conversions, "clicks": clicks.to_string(), "averageCpc": 500000.0}
        }],
        "fieldMask": "adGroup.id,adGroup.status,adGroup.cpcBidMicros,metrics.costMicros,metrics.conversions,metrics.clicks,metrics.averageCpc",
        "requestId": "req-1"
    }])
}

const GOOGLE_CAMPAIGN: &str = r#"
[[optimizer.campaigns]]
name = "brand-search"
platform = "google_ads"
account = "1234567890"
entity = "ad_group"
entity_id = "555"
currency = "USD"
target_cpa = 4.00
mode = "MODE"
min_bid = 0.10
max_bid = 5.00
"#;

const META_CAMPAIGN: &str = r#"
[[optimizer.campaigns]]
name = "lead-ads"
platform = "meta"
account = "act_42"
entity = "ad_set"
entity_id = "238"
currency = "USD"
target_cpa = 4.00
mode = "MODE"
"#;

const GENERIC_CAMPAIGN: &str = r#"
[[optimizer.campaigns]]
name = "article-example"
platform = "generic"
account = "demo"
entity = "campaign"
entity_id = "article"
currency = "USD"
mode = "MODE"
initial_bid = 1.00
metrics_url = "{uri}/metrics/article"
bid_url = "{uri}/bids/article"
"#;

fn campaign(template: &str, mode: &str) -> String {
    template.replace("MODE", mode)
}

async fn mount_slack(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(server)
        .await;
}

async fn mount_article_metrics(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/metrics/article"))
        .respond_with(ResponseTemplate::new(200).set_body_string(include_str!(
            "../../xtask/fixtures/seed-campaign-metrics.json"
        )))
        .mount(server)
        .await;
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

#[tokio::test]
async fn google_apply_path_sends_the_documented_requests_and_journals_the_change() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .and(header(
            "authorization",
            format!("Bearer {GOOGLE_TOKEN}").as_str(),
        ))
        .and(header("login-customer-id", "9999999999"))
        .and(body_string_contains(
            "FROM ad_group WHERE ad_group.id = 555",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stream(50_000_000, 10.0, 100, 1_000_000)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .and(header("authorization", format!("Bearer {GOOGLE_TOKEN}").as_str()))
        .and(body_partial_json(json!({
            "operations": [{"updateMask": "cpc_bid_micros", "update": {"resourceName": "customers/1234567890/adGroups/555", "cpcBidMicros": "900000"}}],
            "partialFailure": false,
            "validateOnly": false
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"resourceName": "customers/1234567890/adGroups/555"}]})))
        .expect(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;

    let store = journal_store("google").await?;
    let loaded = config(&server, &campaign(GOOGLE_CAMPAIGN, "apply"))?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;

    assert_eq!(report["run_id"], "2026-11-27T20:00:00Z");
    assert_eq!(report["counts"]["applied"], 1, "{report:#}");
    assert_eq!(
        report["notification"],
        json!({"status": "sent", "messages": 1})
    );
    let journal = store.journal("brand-search").await?;
    assert_eq!(journal.len(), 1);
    let entry = &journal[0];
    assert_eq!(entry["outcome"], "applied");
    assert_eq!(entry["rule"], "cpa_above_target");
    assert_eq!(entry["bid_before_micros"], 1_000_000);
    assert_eq!(entry["bid_after_micros"], 900_000);
    assert_eq!(entry["metrics"]["spend_micros"], 50_000_000);
    assert_eq!(entry["config_version"], loaded.version.as_str());
    assert!(
        store
            .snapshot("brand-search", "2026-11-27T20:00:00Z")
            .await?
            .is_some()
    );

    let slack = requests_to(&server, "/services/T000/B000/XXXX").await;
    let message: Value = serde_json::from_slice(&slack[0].body)?;
    let text = message["blocks"].to_string();
    assert!(
        text.contains("brand-search") && text.contains("bid 1.00 → 0.90 USD"),
        "{text}"
    );
    assert!(!text.contains(GOOGLE_TOKEN));
    Ok(())
}

#[tokio::test]
async fn dry_runs_ask_google_and_meta_to_validate_only_and_change_nothing() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stream(50_000_000, 10.0, 100, 1_000_000)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .and(body_partial_json(json!({"validateOnly": true})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238/insights"))
        .and(query_param("fields", "spend,actions,cpc,clicks"))
        .and(header("authorization", format!("Bearer {META_TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"spend": "50.00", "cpc": "0.50", "clicks": "100", "actions": [{"action_type": "lead", "value": "10"}],
                      "date_start": "2026-11-21", "date_stop": "2026-11-27"}],
            "paging": {"cursors": {"before": "a", "after": "b"}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238"))
        .and(query_param("fields", "bid_amount,status"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"bid_amount": 100, "status": "ACTIVE", "id": "238"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25.0/238"))
        .and(body_string_contains("bid_amount=90"))
        .and(body_string_contains(
            "execution_options=%5B%22validate_only%22%5D",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    mount_article_metrics(&server).await;
    mount_slack(&server).await;

    let store = journal_store("dry").await?;
    let campaigns = [
        campaign(GOOGLE_CAMPAIGN, "dry_run"),
        campaign(META_CAMPAIGN, "dry_run"),
        campaign(GENERIC_CAMPAIGN, "dry_run"),
    ]
    .concat();
    let loaded = config(&server, &campaigns)?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;

    assert_eq!(report["counts"]["dry_run"], 3, "{report:#}");
    assert!(
        requests_to(&server, "/bids/article").await.is_empty(),
        "a generic dry-run never calls the bid URL"
    );
    let article = &store.journal("article-example").await?[0];
    assert_eq!(article["outcome"], "dry_run");
    assert_eq!(article["bid_after_micros"], 900_000);
    assert!(
        article["reason"]
            .as_str()
            .unwrap_or("")
            .contains("CPA 5.00 > 4.80")
    );
    Ok(())
}

#[tokio::test]
async fn meta_apply_sends_bid_amount_in_minor_units() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238/insights"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"spend": "30.00", "clicks": "100", "actions": [{"action_type": "lead", "value": "10"}, {"action_type": "link_click", "value": "99"}]}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"bid_amount": 100, "status": "ACTIVE"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25.0/238"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("bid_amount=105"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("meta").await?;
    let loaded = config(&server, &campaign(META_CAMPAIGN, "apply"))?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    // CPA 3.00 < 0.8 x 4.00: raise 1.00 by 5%.
    assert_eq!(
        report["outcomes"][0]["rule"], "cpa_below_target",
        "{report:#}"
    );
    assert_eq!(report["counts"]["applied"], 1);
    Ok(())
}

#[tokio::test]
async fn google_quota_errors_and_slack_429_are_retried_after_the_delay_they_ask_for() -> Result<()>
{
    let server = MockServer::start().await;
    let quota = json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
            "errors": [{"errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}, "message": "Too many requests. Retry in 1 seconds.",
                "details": {"quotaErrorDetails": {"rateScope": "ACCOUNT", "rateName": "Requests per service per method", "retryDelay": "1s"}}}],
            "requestId": "r"}]}});
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(ResponseTemplate::new(429).set_body_json(quota))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stream(50_000_000, 10.0, 100, 1_000_000)),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .and(header(
            "authorization",
            format!("Bearer {GOOGLE_TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_string("rate_limited"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;

    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=1%2F%2Frefresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": GOOGLE_TOKEN, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/adwords", "token_type": "Bearer"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let store = journal_store("quota").await?;
    let loaded = config(&server, &campaign(GOOGLE_CAMPAIGN, "apply"))?;
    // Through the refresh-token flow: one token for the run's three Google calls.
    let (platforms, slack) = platforms_refreshing(&server)?;
    let e = engine(&loaded, platforms, store, slack)?;
    let started = Instant::now();
    let report = invoke(&e, scheduled_event(hour())).await?;
    assert_eq!(report["counts"]["applied"], 1, "{report:#}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited retryDelay (1s) and Retry-After (1s): {:?}",
        started.elapsed()
    );
    assert_eq!(
        requests_to(&server, "/v25/customers/1234567890/googleAds:searchStream")
            .await
            .len(),
        2
    );
    assert_eq!(
        requests_to(&server, "/services/T000/B000/XXXX").await.len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_platform_that_is_down_fails_its_campaigns_and_never_stops_the_others() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238/insights"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream connect error"))
        .mount(&server)
        .await;
    mount_article_metrics(&server).await;
    Mock::given(method("POST"))
        .and(path("/bids/article"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("down").await?;
    let loaded = config(
        &server,
        &[
            campaign(META_CAMPAIGN, "apply"),
            campaign(GENERIC_CAMPAIGN, "apply"),
        ]
        .concat(),
    )?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    assert_eq!(report["counts"]["failed"], 1, "{report:#}");
    assert_eq!(report["counts"]["applied"], 1);
    let failed = &store.journal("lead-ads").await?[0];
    assert_eq!(failed["outcome"], "failed");
    assert!(
        failed["reason"].as_str().unwrap_or("").contains("HTTP 503"),
        "{failed}"
    );
    assert_eq!(
        requests_to(&server, "/v25.0/238/insights").await.len(),
        3,
        "retried up to max_attempts"
    );
    let slack = requests_to(&server, "/services/T000/B000/XXXX").await;
    let text = String::from_utf8_lossy(&slack[0].body).to_string();
    assert!(
        text.contains("*Failures*") && text.contains("lead-ads"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_invocation_for_the_same_hour_changes_no_bid_twice_even_when_racing() -> Result<()>
{
    let server = MockServer::start().await;
    mount_article_metrics(&server).await;
    Mock::given(method("POST"))
        .and(path("/bids/article"))
        .and(body_partial_json(json!({"campaign": "article-example", "action": "set_bid", "bid": 0.9, "previous_bid": 1.0, "currency": "USD"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("idem").await?;
    let loaded = config(&server, &campaign(GENERIC_CAMPAIGN, "apply"))?;
    let (p1, s1) = platforms(&server)?;
    let (p2, s2) = platforms(&server)?;
    // Two execution environments racing on the same scheduled event.
    let e1 = engine(&loaded, p1, store.clone(), s1)?;
    let e2 = engine(&loaded, p2, store.clone(), s2)?;
    let (a, b) = tokio::join!(
        invoke(&e1, scheduled_event(hour())),
        invoke(&e2, scheduled_event(hour()))
    );
    let (a, b) = (a?, b?);
    let applied =
        a["counts"]["applied"].as_u64().unwrap_or(0) + b["counts"]["applied"].as_u64().unwrap_or(0);
    assert_eq!(applied, 1, "{a:#} {b:#}");
    // A later retry of the same hour: still nothing.
    let c = invoke(&e1, scheduled_event(hour() + chrono::Duration::minutes(20))).await?;
    assert_eq!(c["counts"]["applied"], 0, "{c:#}");
    assert_eq!(c["outcomes"][0]["outcome"], "skipped");
    let bids = requests_to(&server, "/bids/article").await;
    assert_eq!(bids.len(), 1);
    let key = bids[0]
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert_eq!(key.len(), 64);
    Ok(())
}

#[tokio::test]
async fn revert_restores_the_previous_bid_and_is_journaled() -> Result<()> {
    let server = MockServer::start().await;
    mount_article_metrics(&server).await;
    Mock::given(method("POST"))
        .and(path("/bids/article"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("revert").await?;
    let loaded = config(&server, &campaign(GENERIC_CAMPAIGN, "apply"))?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    invoke(&e, scheduled_event(hour())).await?;
    let report = invoke(
        &e,
        json!({"action": "revert", "campaign": "article-example", "entity": "article"}),
    )
    .await?;
    assert_eq!(report["kind"], "revert");
    assert_eq!(report["outcomes"][0]["outcome"], "applied", "{report:#}");

    let bids = requests_to(&server, "/bids/article").await;
    assert_eq!(bids.len(), 2);
    let revert: Value = serde_json::from_slice(&bids[1].body)?;
    assert_eq!(revert["bid"], 1.0);
    assert_eq!(revert["previous_bid"], 0.9);

    let journal = store.journal("article-example").await?;
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1]["kind"], "revert");
    assert_eq!(journal[1]["rule"], "revert");
    assert_eq!(journal[1]["bid_before_micros"], 900_000);
    assert_eq!(journal[1]["bid_after_micros"], 1_000_000);

    let again = hourly_optimizer::handler::handle(
        &e,
        json!({"action": "revert", "campaign": "article-example"}),
        &SystemClock,
    )
    .await;
    assert!(again.is_ok(), "reverting the revert redoes the change");
    let unknown = hourly_optimizer::handler::handle(
        &e,
        json!({"action": "revert", "campaign": "nope"}),
        &SystemClock,
    )
    .await;
    assert!(unknown.is_err());
    Ok(())
}

/// End to end: the hourly-optimizer binary under `cargo lambda watch`, invoked with a scheduled event
/// through the Lambda invoke API, against the stack's table and the wiremock platform of
/// `tests/e2e/fluxo.toml` (127.0.0.1:18182).
#[tokio::test]
async fn the_scheduled_event_path_runs_the_binary_under_cargo_lambda_watch() -> Result<()> {
    let invoke_url = std::env::var(xtask::stack::ENV_INVOKE_URL).map_err(|_| {
        anyhow!(
            "{} is not set: run through `cargo xtask test`",
            xtask::stack::ENV_INVOKE_URL
        )
    })?;
    let endpoint = std::env::var(xtask::stack::ENV_AWS_ENDPOINT)?;
    let stack = xtask::stack::StackInfo::load_from_env()?;
    let sdk = xtask::stack::local_sdk_config(&endpoint).await;
    let store = DynamoOptimizerStore::from_sdk_config(&sdk, stack.table("OptimizerTable")?);

    let listener = std::net::TcpListener::bind("127.0.0.1:18182")
        .context("port 18182 (tests/e2e/fluxo.toml) is busy")?;
    let server = MockServer::builder().listener(listener).start().await;
    mount_article_metrics_at(&server, "/metrics/e2e-article").await;
    Mock::given(method("POST"))
        .and(path("/bids/e2e-article"))
        .and(body_partial_json(
            json!({"action": "set_bid", "bid": 0.9, "previous_bid": 1.0}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&server)
        .await;

    // A scheduled hour no earlier run on this stack used: later every second, so the cooldown never hides it.
    let secs = Utc::now().timestamp() - 1_790_000_000;
    let time = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 5)
        .single()
        .unwrap_or_else(Utc::now)
        + chrono::Duration::hours(secs.max(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let response = http
        .post(format!(
            "{}/2015-03-31/functions/hourly-optimizer/invocations",
            invoke_url.trim_end_matches('/')
        ))
        .json(&scheduled_event(time))
        .send()
        .await?;
    let status = response.status();
    let report: Value = response.json().await?;
    assert!(status.is_success(), "{status}: {report}");
    assert_eq!(report["counts"]["applied"], 1, "{report:#}");
    let run_id = report["run_id"].as_str().unwrap_or_default().to_string();

    let journal = store.journal("e2e-article").await?;
    let entry = journal
        .iter()
        .find(|e| e["run_id"] == run_id.as_str())
        .ok_or_else(|| anyhow!("no journal entry for {run_id}"))?;
    assert_eq!(entry["outcome"], "applied");
    assert_eq!(entry["bid_after_micros"], 900_000);
    Ok(())
}

async fn mount_article_metrics_at(server: &MockServer, p: &str) {
    Mock::given(method("GET"))
        .and(path(p))
        .respond_with(ResponseTemplate::new(200).set_body_string(include_str!(
            "../../xtask/fixtures/seed-campaign-metrics.json"
        )))
        .mount(server)
        .await;
}
