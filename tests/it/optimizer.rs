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
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::slack::{RunNotifier, SlackConfig, SlackNotifier};
use hourly_optimizer::engine::Engine;
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
    stream_under("MANUAL_CPC", cost_micros, conversions, clicks, bid_micros)
}

/// A searchStream answer for ad group 555, whose campaign bids with `strategy`.
fn stream_under(
    strategy: &str,
    cost_micros: i64,
    conversions: f64,
    clicks: i64,
    bid_micros: i64,
) -> Value {
    json!([{
        "results": [{
            "campaign": {"resourceName": "customers/1234567890/campaigns/77", "biddingStrategyType": strategy},
            "adGroup": {"resourceName": "customers/1234567890/adGroups/555", "id": "555", "status": "ENABLED", "cpcBidMicros": bid_micros.to_string()},
            "metrics": {"costMicros": cost_micros.to_string(), "conversions": conversions, "clicks": clicks.to_string(), "averageCpc": 500000.0}
        }],
        "fieldMask": "adGroup.id,adGroup.status,adGroup.cpcBidMicros,campaign.biddingStrategyType,metrics.costMicros,metrics.conversions,metrics.clicks,metrics.averageCpc",
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
        .and(body_string_contains("campaign.bidding_strategy_type"))
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
        .and(query_param("fields", "bid_amount,status,bid_strategy"))
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

    let again = invoke(
        &e,
        json!({"action": "revert", "campaign": "article-example"}),
    )
    .await?;
    assert_eq!(again["outcomes"][0]["outcome"], "applied", "{again:#}");
    let bids = requests_to(&server, "/bids/article").await;
    assert_eq!(bids.len(), 3, "reverting the revert redoes the change");
    let redo: Value = serde_json::from_slice(&bids[2].body)?;
    assert_eq!(redo["bid"], 0.9);
    assert_eq!(redo["previous_bid"], 1.0);
    let unknown = hourly_optimizer::handler::handle(
        &e,
        json!({"action": "revert", "campaign": "nope"}),
        &SystemClock,
    )
    .await;
    assert!(unknown.is_err());
    Ok(())
}

/// A searchStream mock for ad group 555: the first `first_times` answers from `first`, then `then`.
async fn mount_stream_sequence(server: &MockServer, first: Value, first_times: u64, then: Value) {
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .up_to_n_times(first_times)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(ResponseTemplate::new(200).set_body_json(then))
        .with_priority(2)
        .mount(server)
        .await;
}

#[tokio::test]
async fn google_cpc_bids_under_smart_bidding_are_skipped_and_never_sent() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .and(body_string_contains("campaign.bidding_strategy_type"))
        .respond_with(ResponseTemplate::new(200).set_body_json(stream_under(
            "TARGET_CPA",
            50_000_000,
            10.0,
            100,
            1_000_000,
        )))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .expect(0)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("smart").await?;
    for (mode, test) in [("apply", "apply"), ("dry_run", "dry")] {
        let loaded = config(&server, &campaign(GOOGLE_CAMPAIGN, mode))?;
        let (platforms, slack) = platforms(&server)?;
        let e = engine(&loaded, platforms, store.clone(), slack)?;
        let report = invoke(
            &e,
            scheduled_event(hour() + chrono::Duration::hours(i64::from(test == "dry"))),
        )
        .await?;
        let entry = &report["outcomes"][0];
        assert_eq!(entry["outcome"], "skipped", "{report:#}");
        let reason = entry["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains("TARGET_CPA") && reason.contains("ignores ad_group.cpc_bid_micros"),
            "{reason}"
        );
    }
    assert!(
        requests_to(&server, "/v25/customers/1234567890/adGroups:mutate")
            .await
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn google_target_cpa_changes_follow_the_campaigns_bidding_strategy() -> Result<()> {
    let server = MockServer::start().await;
    let campaign_row = |strategy: &str| {
        json!([{"results": [{
            "campaign": {"resourceName": "customers/1234567890/campaigns/77", "id": "77", "status": "ENABLED",
                         "biddingStrategyType": strategy, "targetCpa": {"targetCpaMicros": "4000000"},
                         "maximizeConversions": {"targetCpaMicros": "4000000"}},
            "metrics": {"costMicros": "50000000", "conversions": 10.0, "clicks": "100"}
        }]}])
    };
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .and(body_string_contains("FROM campaign WHERE campaign.id = 77"))
        .and(body_string_contains("campaign.bidding_strategy_type"))
        .respond_with(ResponseTemplate::new(200).set_body_json(campaign_row("TARGET_CPA")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(ResponseTemplate::new(200).set_body_json(campaign_row("TARGET_ROAS")))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/campaigns:mutate"))
        .and(body_partial_json(json!({"operations": [{"updateMask": "target_cpa.target_cpa_micros",
            "update": {"resourceName": "customers/1234567890/campaigns/77", "targetCpa": {"targetCpaMicros": "3600000"}}}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .expect(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let text = r#"
[[optimizer.campaigns]]
name = "pmax"
platform = "google_ads"
account = "1234567890"
entity = "campaign"
entity_id = "77"
currency = "USD"
target_cpa = 4.00
mode = "apply"
"#;
    let store = journal_store("tcpa").await?;
    let loaded = config(&server, text)?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    // Target CPA: the standard strategy's field is set.
    let report = invoke(&e, scheduled_event(hour())).await?;
    assert_eq!(report["counts"]["applied"], 1, "{report:#}");
    // Target ROAS: a target CPA would be refused or switch the strategy, so nothing is sent.
    let report = invoke(&e, scheduled_event(hour() + chrono::Duration::hours(1))).await?;
    assert_eq!(report["outcomes"][0]["outcome"], "skipped", "{report:#}");
    assert!(
        report["outcomes"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("TARGET_ROAS"),
        "{report:#}"
    );
    assert_eq!(
        requests_to(&server, "/v25/customers/1234567890/campaigns:mutate")
            .await
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn google_concurrent_modification_is_retried() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/googleAds:searchStream"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(stream(50_000_000, 10.0, 100, 1_000_000)),
        )
        .mount(&server)
        .await;
    let concurrent = json!({"error": {"code": 409, "message": "Multiple requests were attempting to modify the same resource at once. Retry the request.",
        "status": "ABORTED", "details": [{"@type": "type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
            "errors": [{"errorCode": {"databaseError": "CONCURRENT_MODIFICATION"},
                "message": "Multiple requests were attempting to modify the same resource at once. Retry the request."}],
            "requestId": "r"}]}});
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .respond_with(ResponseTemplate::new(409).set_body_json(concurrent))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .and(body_partial_json(json!({"operations": [{"updateMask": "cpc_bid_micros",
            "update": {"resourceName": "customers/1234567890/adGroups/555", "cpcBidMicros": "900000"}}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .with_priority(2)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("concurrent").await?;
    let loaded = config(&server, &campaign(GOOGLE_CAMPAIGN, "apply"))?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store, slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    assert_eq!(report["counts"]["applied"], 1, "{report:#}");
    assert_eq!(
        requests_to(&server, "/v25/customers/1234567890/adGroups:mutate")
            .await
            .len(),
        2,
        "CONCURRENT_MODIFICATION was retried once"
    );
    Ok(())
}

#[tokio::test]
async fn a_google_change_that_timed_out_but_applied_is_read_back_and_recorded() -> Result<()> {
    let server = MockServer::start().await;
    // Before the change the bid is 1.00; every read after the mutate shows 0.90.
    mount_stream_sequence(
        &server,
        stream(50_000_000, 10.0, 100, 1_000_000),
        1,
        stream(50_000_000, 10.0, 100, 900_000),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
        ))
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("readback").await?;
    let loaded = config(&server, &campaign(GOOGLE_CAMPAIGN, "apply"))?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    let entry = &report["outcomes"][0];
    assert_eq!(entry["outcome"], "applied", "{report:#}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap_or("")
            .contains("reading the entity back shows")
    );
    // Recorded with its journal entry and as the entity's latest change, in one transaction.
    let journal = store.journal("brand-search").await?;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["outcome"], "applied");
    let state = fluxo::optimizer::ports::OptimizerStore::entity_state(
        &store,
        "google_ads#1234567890#ad_group#555",
    )
    .await?;
    assert_eq!(state.latest.map(|l| l.bid_after_micros), Some(900_000));
    assert_eq!(state.pending, None);
    Ok(())
}

#[tokio::test]
async fn revert_refuses_a_hand_changed_google_bid_unless_forced() -> Result<()> {
    let server = MockServer::start().await;
    // The run sees 1.00 and sets 0.90; by the revert someone has set 1.50 by hand.
    mount_stream_sequence(
        &server,
        stream(50_000_000, 10.0, 100, 1_000_000),
        1,
        stream(50_000_000, 10.0, 100, 1_500_000),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v25/customers/1234567890/adGroups:mutate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("handchanged").await?;
    let loaded = config(&server, &campaign(GOOGLE_CAMPAIGN, "apply"))?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    assert_eq!(report["counts"]["applied"], 1, "{report:#}");

    let refused = invoke(&e, json!({"action": "revert", "campaign": "brand-search"}))
        .await
        .err()
        .ok_or_else(|| anyhow!("the revert of a hand-changed bid went ahead"))?
        .to_string();
    assert!(
        refused.contains("1.50 USD") && refused.contains("0.90 USD") && refused.contains("--force"),
        "{refused}"
    );
    assert_eq!(
        requests_to(&server, "/v25/customers/1234567890/adGroups:mutate")
            .await
            .len(),
        1
    );

    let forced = invoke(
        &e,
        json!({"action": "revert", "campaign": "brand-search", "force": true}),
    )
    .await?;
    assert_eq!(forced["outcomes"][0]["outcome"], "applied", "{forced:#}");
    let mutates = requests_to(&server, "/v25/customers/1234567890/adGroups:mutate").await;
    assert_eq!(mutates.len(), 2);
    let body: Value = serde_json::from_slice(&mutates[1].body)?;
    assert_eq!(body["operations"][0]["update"]["cpcBidMicros"], "1000000");
    Ok(())
}

#[tokio::test]
async fn meta_reads_the_bid_strategy_and_leaves_an_uncapped_ad_set_alone() -> Result<()> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238/insights"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"spend": "30.00", "clicks": "100", "actions": [{"action_type": "lead", "value": "10"}]}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238"))
        .and(query_param("fields", "bid_amount,status,bid_strategy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "ACTIVE", "bid_strategy": "LOWEST_COST_WITHOUT_CAP", "id": "238"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25.0/238"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(0)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let store = journal_store("uncapped").await?;
    let text = campaign(META_CAMPAIGN, "apply") + "initial_bid = 1.00\n";
    let loaded = config(&server, &text)?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store, slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    let entry = &report["outcomes"][0];
    assert_eq!(entry["outcome"], "skipped", "{report:#}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap_or("")
            .contains("LOWEST_COST_WITHOUT_CAP"),
        "{entry}"
    );
    Ok(())
}

#[tokio::test]
async fn meta_bid_amounts_use_metas_currency_offsets() -> Result<()> {
    let server = MockServer::start().await;
    // COP (Meta offset 1): 1000 is 1,000 pesos. CPA 30,000 < 0.8 x 40,000: raise 5%, capped at 1,020.
    Mock::given(method("GET"))
        .and(path("/v25.0/238/insights"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"spend": "300000", "clicks": "100", "actions": [{"action_type": "lead", "value": "10"}]}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/238"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"bid_amount": 1000, "status": "ACTIVE", "bid_strategy": "LOWEST_COST_WITH_BID_CAP"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25.0/238"))
        .and(body_string_contains("bid_amount=1020"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    // BHD (Meta offset 100, not ISO's 1000): 150 is 1.50 BHD. CPA 5 > 1.2 x 4: reduce 10%, floored at 1.40.
    Mock::given(method("GET"))
        .and(path("/v25.0/239/insights"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"spend": "50.000", "clicks": "100", "actions": [{"action_type": "lead", "value": "10"}]}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v25.0/239"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"bid_amount": 150, "status": "ACTIVE", "bid_strategy": "COST_CAP"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v25.0/239"))
        .and(body_string_contains("bid_amount=140"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    mount_slack(&server).await;
    let text = r#"
[[optimizer.campaigns]]
name = "leads-co"
platform = "meta"
account = "act_42"
entity = "ad_set"
entity_id = "238"
currency = "COP"
target_cpa = 40000.0
max_bid = 1020.0
mode = "apply"

[[optimizer.campaigns]]
name = "leads-bh"
platform = "meta"
account = "act_42"
entity = "ad_set"
entity_id = "239"
currency = "BHD"
target_cpa = 4.0
min_bid = 1.40
mode = "apply"
"#;
    let store = journal_store("offsets").await?;
    let loaded = config(&server, text)?;
    let (platforms, slack) = platforms(&server)?;
    let e = engine(&loaded, platforms, store.clone(), slack)?;
    let report = invoke(&e, scheduled_event(hour())).await?;
    assert_eq!(report["counts"]["applied"], 2, "{report:#}");
    let co = &store.journal("leads-co").await?[0];
    assert_eq!(co["bid_before_micros"], 1_000_000_000i64, "{co}");
    assert_eq!(co["bid_after_micros"], 1_020_000_000i64, "{co}");
    let bh = &store.journal("leads-bh").await?[0];
    assert_eq!(bh["bid_before_micros"], 1_500_000, "{bh}");
    assert_eq!(bh["bid_after_micros"], 1_400_000, "{bh}");
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

mod transactions {
    //! The journal adapter's claim and record transactions, on moto through the real SDK.

    use anyhow::Result;
    use chrono::{DateTime, TimeZone, Utc};
    use fluxo::optimizer::Mode;
    use fluxo::optimizer::ports::{
        Change, ChangeRecord, ChangeStatus, Claim, EntryKind, JournalEntry, OptimizerStore,
        OutcomeKind,
    };

    const ENTITY: &str = "generic#acc#campaign#tx";

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0)
            .single()
            .unwrap_or_else(Utc::now)
    }

    fn record(hour: u32, from: i64, to: i64) -> ChangeRecord {
        ChangeRecord {
            entity_key: ENTITY.into(),
            claim_id: format!("2026-11-27T{hour}:00:00Z"),
            campaign_id: "tx".into(),
            run_hour: at(hour),
            change: Change::SetBid {
                from_micros: from,
                to_micros: to,
            },
            bid_before_micros: from,
            bid_after_micros: to,
            at: at(hour),
        }
    }

    fn entry(r: &ChangeRecord, outcome: OutcomeKind, id: &str) -> JournalEntry {
        JournalEntry {
            entry_id: id.into(),
            kind: EntryKind::Evaluation,
            run_id: r.claim_id.clone(),
            at: r.at,
            campaign_id: r.campaign_id.clone(),
            platform: "generic",
            account: "acc".into(),
            entity_kind: "campaign",
            entity_id: "tx".into(),
            currency: "USD".into(),
            mode: Mode::Apply,
            config_version: "v1".into(),
            metrics: None,
            target_cpa_micros: None,
            decision: None,
            rule: Some("cpa_above_target".into()),
            change: Some(r.change),
            bid_before_micros: Some(r.bid_before_micros),
            bid_after_micros: Some(r.bid_after_micros),
            outcome,
            reason: "test".into(),
        }
    }

    #[tokio::test]
    async fn a_claim_locks_the_entity_and_the_outcome_is_written_with_the_journal_in_one_transaction()
    -> Result<()> {
        let store = super::journal_store("txn").await?;
        let lease = at(23);
        let a = record(20, 1_000_000, 900_000);
        let b = record(21, 900_000, 810_000);
        assert_eq!(store.claim_change(&a, None, lease).await?, Claim::Claimed);
        // The same claim again is taken; another claim meets the lock.
        assert_eq!(
            store.claim_change(&a, None, lease).await?,
            Claim::Taken(ChangeStatus::Pending)
        );
        match store.claim_change(&b, None, lease).await? {
            Claim::Conflict(why) => assert!(why.contains(&a.claim_id), "{why}"),
            other => anyhow::bail!("the lock let {other:?} through"),
        }
        let state = store.entity_state(ENTITY).await?;
        assert_eq!(state.latest, None);
        assert_eq!(
            state.pending.map(|p| (p.record, p.lease_until)),
            Some((a.clone(), lease))
        );

        // The outcome, LATEST and the journal entry: all at once.
        store
            .record_change(
                &a,
                ChangeStatus::Applied,
                &entry(&a, OutcomeKind::Applied, "01A"),
            )
            .await?;
        let state = store.entity_state(ENTITY).await?;
        assert_eq!(state.latest.as_ref(), Some(&a));
        assert_eq!(state.pending, None);
        assert_eq!(store.journal("tx").await?.len(), 1);
        assert_eq!(
            store.change(ENTITY, &a.claim_id).await?.map(|(s, _)| s),
            Some(ChangeStatus::Applied)
        );

        // Recording a claim no longer held writes nothing, not even the journal entry.
        assert!(
            store
                .record_change(
                    &a,
                    ChangeStatus::Failed,
                    &entry(&a, OutcomeKind::Failed, "01B")
                )
                .await
                .is_err()
        );
        assert_eq!(store.journal("tx").await?.len(), 1);
        assert_eq!(store.entity_state(ENTITY).await?.latest.as_ref(), Some(&a));

        // A claim decided on an older view of the entity is refused; on the current one it goes ahead.
        match store.claim_change(&b, None, lease).await? {
            Claim::Conflict(why) => assert!(why.contains("last change is now"), "{why}"),
            other => anyhow::bail!("a stale claim got {other:?}"),
        }
        assert_eq!(
            store.claim_change(&b, Some(&a.claim_id), lease).await?,
            Claim::Claimed
        );
        store
            .record_change(
                &b,
                ChangeStatus::Failed,
                &entry(&b, OutcomeKind::Failed, "01C"),
            )
            .await?;
        let state = store.entity_state(ENTITY).await?;
        assert_eq!(
            state.latest.as_ref(),
            Some(&a),
            "a failed change is not the latest"
        );
        assert_eq!(state.pending, None);
        assert_eq!(store.journal("tx").await?.len(), 2);
        Ok(())
    }
}
