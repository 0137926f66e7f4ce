//! Google Ads REST requests and responses, pure: GAQL metrics queries, the daily account report, mutate
//! bodies, error classification.

use std::time::Duration;

use serde_json::{Value, json};

use chrono::NaiveDate;

use crate::ads::DailyCampaign;
use crate::connector::{Outcome, Reply};
use crate::optimizer::ports::{Change, Observation, Window};
use crate::optimizer::{EntityKind, Metrics};

/// `POST {endpoint}/{version}/customers/{cid}/googleAds:searchStream`.
pub fn search_stream_url(endpoint: &str, version: &str, customer_id: &str) -> String {
    format!(
        "{}/{version}/customers/{customer_id}/googleAds:searchStream",
        endpoint.trim_end_matches('/')
    )
}

/// `POST {endpoint}/{version}/customers/{cid}/adGroups:mutate` or `campaigns:mutate`.
pub fn mutate_url(endpoint: &str, version: &str, customer_id: &str, kind: EntityKind) -> String {
    let service = match kind {
        EntityKind::AdGroup => "adGroups",
        _ => "campaigns",
    };
    format!(
        "{}/{version}/customers/{customer_id}/{service}:mutate",
        endpoint.trim_end_matches('/')
    )
}

/// The field a bid change sets on a Google Ads entity, chosen by the campaign's bidding strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidField {
    /// `ad_group.cpc_bid_micros` (manual CPC bidding).
    CpcBid,
    /// `campaign.maximize_conversions.target_cpa_micros`.
    MaximizeConversionsTargetCpa,
    /// `campaign.target_cpa.target_cpa_micros` (the standard Target CPA strategy).
    TargetCpa,
}

/// The field a bid change may set under `strategy` (`campaign.bidding_strategy_type`), or why none: an ad
/// group's `cpc_bid_micros` is ignored under Smart Bidding (only manual CPC bidding uses it), and a target
/// CPA exists only under Maximize Conversions or Target CPA (elsewhere Google refuses it or switches the
/// strategy).
pub fn bid_field(kind: EntityKind, strategy: Option<&str>) -> Result<BidField, String> {
    match (kind, strategy) {
        (_, None) => Err(
            "Google reported no campaign.bidding_strategy_type (no rows in the window), so the field \
             to change is unknown"
                .into(),
        ),
        (EntityKind::AdGroup, Some("MANUAL_CPC" | "ENHANCED_CPC")) => Ok(BidField::CpcBid),
        (EntityKind::AdGroup, Some(other)) => Err(format!(
            "the campaign bids with {other}: Google ignores ad_group.cpc_bid_micros under it \
             (only MANUAL_CPC / ENHANCED_CPC use ad group bids)"
        )),
        (_, Some("MAXIMIZE_CONVERSIONS")) => Ok(BidField::MaximizeConversionsTargetCpa),
        (_, Some("TARGET_CPA")) => Ok(BidField::TargetCpa),
        (_, Some(other)) => Err(format!(
            "the campaign bids with {other}: a target CPA applies only to MAXIMIZE_CONVERSIONS or \
             TARGET_CPA campaigns"
        )),
    }
}

/// The GAQL query for one entity's metrics, bid, status and the campaign's bidding strategy over the
/// window. `entity_id` is digits (checked when the config is loaded), so it cannot alter the query.
pub fn metrics_query(kind: EntityKind, entity_id: &str, window: Window) -> String {
    let (resource, fields) = match kind {
        EntityKind::AdGroup => (
            "ad_group",
            "ad_group.id, ad_group.status, ad_group.cpc_bid_micros, campaign.bidding_strategy_type",
        ),
        _ => (
            "campaign",
            "campaign.id, campaign.status, campaign.bidding_strategy_type, \
             campaign.maximize_conversions.target_cpa_micros, campaign.target_cpa.target_cpa_micros",
        ),
    };
    format!(
        "SELECT {fields}, metrics.cost_micros, metrics.conversions, metrics.clicks, metrics.average_cpc \
         FROM {resource} WHERE {resource}.id = {entity_id} \
         AND segments.date BETWEEN '{}' AND '{}'",
        window.since.format("%Y-%m-%d"),
        window.until.format("%Y-%m-%d")
    )
}

/// The searchStream body.
pub fn search_body(query: &str) -> Value {
    json!({ "query": query })
}

/// The headers of every call: OAuth bearer and, through a manager account, `login-customer-id`.
pub fn headers(access_token: &str, login_customer_id: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("authorization", format!("Bearer {access_token}"))];
    if let Some(id) = login_customer_id {
        headers.push(("login-customer-id", id.to_string()));
    }
    headers
}

/// The mutate body for one change. A bid change sets the field [`bid_field`] picks for the campaign's
/// bidding strategy (`strategy`), and is refused (`Err`, never sent) when there is none. `validate_only`
/// makes Google check without applying (dry-run).
pub fn mutate_body(
    customer_id: &str,
    kind: EntityKind,
    entity_id: &str,
    change: Change,
    validate_only: bool,
    strategy: Option<&str>,
) -> Result<Value, String> {
    let collection = match kind {
        EntityKind::AdGroup => "adGroups",
        _ => "campaigns",
    };
    let resource_name = format!("customers/{customer_id}/{collection}/{entity_id}");
    let (update, mask) = match change {
        Change::SetBid { to_micros, .. } => {
            let micros = to_micros.to_string();
            match bid_field(kind, strategy)? {
                BidField::CpcBid => (
                    json!({ "resourceName": resource_name, "cpcBidMicros": micros }),
                    "cpc_bid_micros",
                ),
                BidField::MaximizeConversionsTargetCpa => (
                    json!({ "resourceName": resource_name, "maximizeConversions": { "targetCpaMicros": micros } }),
                    "maximize_conversions.target_cpa_micros",
                ),
                BidField::TargetCpa => (
                    json!({ "resourceName": resource_name, "targetCpa": { "targetCpaMicros": micros } }),
                    "target_cpa.target_cpa_micros",
                ),
            }
        }
        Change::Pause => (
            json!({ "resourceName": resource_name, "status": "PAUSED" }),
            "status",
        ),
        Change::Resume => (
            json!({ "resourceName": resource_name, "status": "ENABLED" }),
            "status",
        ),
    };
    Ok(json!({
        "operations": [{ "updateMask": mask, "update": update }],
        "partialFailure": false,
        "validateOnly": validate_only
    }))
}

/// The form body that exchanges a refresh token for an access token (OAuth2 `refresh_token` grant).
pub fn token_request_body(client_id: &str, client_secret: &str, refresh_token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret)
        .append_pair("refresh_token", refresh_token)
        .finish()
}

/// Reads `{"access_token": "...", "expires_in": 3599, "token_type": "Bearer"}`.
pub fn parse_token(body: &str) -> Result<(String, u64), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("token response is not JSON: {e}"))?;
    let token = value
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("token response has no access_token")?;
    let expires_in = value
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(3600);
    Ok((token.to_string(), expires_in))
}

/// Sorts a token endpoint reply: `invalid_grant` / `invalid_client` (400/401) are permanent, 429/5xx retryable.
/// The body is never quoted in the reason beyond the OAuth error code: it could echo credentials.
pub fn classify_token(reply: &Reply) -> Outcome<()> {
    let error = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let reason = format!("token endpoint HTTP {} {error}", reply.status);
    match reply.default_outcome() {
        Outcome::Success(()) => Outcome::Success(()),
        Outcome::Retryable { retry_after, .. } => Outcome::Retryable {
            reason,
            retry_after,
        },
        Outcome::Permanent { .. } => Outcome::Permanent { reason },
    }
}

fn int64(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        _ => None,
    }
}

fn double(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Sums the searchStream batches into one observation. No rows means no activity in the window.
pub fn parse_search_stream(body: &str, kind: EntityKind) -> Result<Observation, String> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| format!("searchStream response is not JSON: {e}"))?;
    let batches = match value {
        Value::Array(batches) => batches,
        single @ Value::Object(_) => vec![single],
        _ => return Err("searchStream response is not an array of batches".into()),
    };
    let mut metrics = Metrics::default();
    let mut bid = None;
    let mut strategy: Option<String> = None;
    let mut paused = false;
    let mut cpc_sum = 0.0;
    let mut cpc_rows = 0u32;
    for batch in &batches {
        let rows = batch
            .get("results")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for row in rows {
            let m = row.get("metrics").cloned().unwrap_or(Value::Null);
            metrics.spend_micros += m.get("costMicros").and_then(int64).unwrap_or(0);
            metrics.conversions_milli += m
                .get("conversions")
                .and_then(double)
                .map(|c| (c * 1000.0).round() as i64)
                .unwrap_or(0);
            metrics.clicks += m
                .get("clicks")
                .and_then(int64)
                .map(|c| c.max(0) as u64)
                .unwrap_or(0);
            if let Some(cpc) = m.get("averageCpc").and_then(double) {
                cpc_sum += cpc;
                cpc_rows += 1;
            }
            let (entity, status) = match kind {
                EntityKind::AdGroup => {
                    let g = row.get("adGroup");
                    (
                        g.and_then(|g| g.get("cpcBidMicros")).and_then(int64),
                        g.and_then(|g| g.get("status")),
                    )
                }
                _ => {
                    let c = row.get("campaign");
                    let target = |field: &str| {
                        c.and_then(|c| c.get(field))
                            .and_then(|m| m.get("targetCpaMicros"))
                            .and_then(int64)
                    };
                    let by_strategy = match campaign_strategy(row) {
                        Some("TARGET_CPA") => target("targetCpa"),
                        _ => target("maximizeConversions"),
                    };
                    (by_strategy, c.and_then(|c| c.get("status")))
                }
            };
            if strategy.is_none() {
                strategy = campaign_strategy(row).map(str::to_string);
            }
            if bid.is_none() {
                bid = entity;
            }
            if status.and_then(Value::as_str) == Some("PAUSED") {
                paused = true;
            }
        }
    }
    if metrics.clicks > 0 && metrics.spend_micros > 0 {
        metrics.cpc_micros = Some(metrics.spend_micros / metrics.clicks as i64);
    } else if cpc_rows > 0 {
        metrics.cpc_micros = Some((cpc_sum / f64::from(cpc_rows)).round() as i64);
    }
    let bid_fixed = bid_field(kind, strategy.as_deref()).err();
    Ok(Observation {
        metrics,
        bid_micros: bid,
        paused,
        target_cpa_micros: None,
        bid_strategy: strategy,
        bid_fixed,
    })
}

/// The daily extract's GAQL report of one account: every campaign with activity on `day` (in the account's
/// time zone), its cost, clicks and conversions, and the account currency. A campaign without impressions
/// that day has no row (GAQL leaves zero-metric rows out when metrics are selected).
pub fn daily_campaigns_query(day: NaiveDate) -> String {
    let d = day.format("%Y-%m-%d");
    format!(
        "SELECT customer.currency_code, campaign.id, segments.date, metrics.cost_micros, \
         metrics.clicks, metrics.conversions FROM campaign \
         WHERE segments.date BETWEEN '{d}' AND '{d}'"
    )
}

/// Reads the daily report's searchStream batches: one [`DailyCampaign`] per campaign id (rows of one
/// campaign are summed). A row without `campaign.id` is an unexpected answer.
pub fn parse_daily_campaigns(body: &str) -> Result<Vec<DailyCampaign>, String> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| format!("searchStream response is not JSON: {e}"))?;
    let batches = match value {
        Value::Array(batches) => batches,
        single @ Value::Object(_) => vec![single],
        _ => return Err("searchStream response is not an array of batches".into()),
    };
    let mut out: Vec<DailyCampaign> = Vec::new();
    for batch in &batches {
        let rows = batch
            .get("results")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for row in rows {
            let id = row
                .get("campaign")
                .and_then(|c| c.get("id"))
                .and_then(int64)
                .ok_or("a searchStream row has no campaign.id")?
                .to_string();
            let currency = row
                .get("customer")
                .and_then(|c| c.get("currencyCode"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let m = row.get("metrics").cloned().unwrap_or(Value::Null);
            let index = match out.iter().position(|c| c.campaign_id == id) {
                Some(i) => i,
                None => {
                    out.push(DailyCampaign {
                        campaign_id: id,
                        ..DailyCampaign::default()
                    });
                    out.len() - 1
                }
            };
            let c = &mut out[index];
            c.spend_micros += m.get("costMicros").and_then(int64).unwrap_or(0);
            c.clicks += m
                .get("clicks")
                .and_then(int64)
                .map(|n| n.max(0) as u64)
                .unwrap_or(0);
            c.conversions_milli += m
                .get("conversions")
                .and_then(double)
                .map(|n| (n * 1000.0).round() as i64)
                .unwrap_or(0);
            if c.currency.is_none() {
                c.currency = currency;
            }
        }
    }
    Ok(out)
}

/// A row's `campaign.biddingStrategyType`.
fn campaign_strategy(row: &Value) -> Option<&str> {
    row.get("campaign")
        .and_then(|c| c.get("biddingStrategyType"))
        .and_then(Value::as_str)
}

/// Parses a protobuf JSON duration (`"30s"`, `"1.5s"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    // `Duration::from_secs_f64` panics on absurd values (`1e20s`); this form refuses them instead.
    Duration::try_from_secs_f64(secs).ok()
}

/// The first `retryDelay` anywhere in the error (GoogleAdsFailure `quotaErrorDetails.retryDelay`, or
/// `google.rpc.RetryInfo`).
fn find_retry_delay(value: &Value) -> Option<Duration> {
    match value {
        Value::Object(map) => map
            .get("retryDelay")
            .and_then(Value::as_str)
            .and_then(parse_duration)
            .or_else(|| map.values().find_map(find_retry_delay)),
        Value::Array(items) => items.iter().find_map(find_retry_delay),
        _ => None,
    }
}

/// The first Google Ads error code (e.g. `quotaError: RESOURCE_EXHAUSTED`), for reasons.
fn first_error_code(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map
            .get("errorCode")
            .and_then(Value::as_object)
            .and_then(|codes| {
                codes
                    .iter()
                    .next()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("")))
            })
            .or_else(|| map.values().find_map(first_error_code)),
        Value::Array(items) => items.iter().find_map(first_error_code),
        _ => None,
    }
}

/// Whether any `errorCode` in the error has the value `code` (whatever its error family).
fn has_error_code(value: &Value, code: &str) -> bool {
    match value {
        Value::Object(map) => {
            map.get("errorCode")
                .and_then(Value::as_object)
                .is_some_and(|codes| codes.values().any(|v| v.as_str() == Some(code)))
                || map.values().any(|v| has_error_code(v, code))
        }
        Value::Array(items) => items.iter().any(|v| has_error_code(v, code)),
        _ => false,
    }
}

/// Sorts a Google Ads reply: 2xx success; 429 / `RESOURCE_EXHAUSTED` retryable after `retryDelay`;
/// 5xx and 408 retryable; other 4xx (bad request, auth, permission) permanent.
pub fn classify(reply: &Reply) -> Outcome<()> {
    if (200..300).contains(&reply.status) {
        return Outcome::Success(());
    }
    let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let error = body.get("error").cloned().unwrap_or(Value::Null);
    let status = error.get("status").and_then(Value::as_str).unwrap_or("");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let code = first_error_code(&error)
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    let reason = if message.is_empty() && status.is_empty() {
        reply.summary()
    } else {
        format!("HTTP {} {status}: {message}{code}", reply.status)
    };
    // Two changes to the same entity at once: Google asks for a retry (`databaseError` or `mutateError`
    // CONCURRENT_MODIFICATION, HTTP 409 ABORTED).
    if has_error_code(&error, "CONCURRENT_MODIFICATION") || status == "ABORTED" {
        return Outcome::Retryable {
            reason,
            retry_after: None,
        };
    }
    if reply.status == 429 || status == "RESOURCE_EXHAUSTED" || status == "UNAVAILABLE" {
        let retry_after = find_retry_delay(&error).or_else(|| reply.retry_after());
        return Outcome::Retryable {
            reason,
            retry_after,
        };
    }
    match reply.default_outcome() {
        Outcome::Retryable { retry_after, .. } => Outcome::Retryable {
            reason,
            retry_after,
        },
        _ => Outcome::Permanent { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn window() -> Window {
        Window {
            since: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
            until: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
        }
    }

    #[test]
    fn the_metrics_query_selects_cost_conversions_clicks_and_the_bid() {
        let q = metrics_query(EntityKind::AdGroup, "555", window());
        assert!(q.starts_with("SELECT ad_group.id, ad_group.status, ad_group.cpc_bid_micros, campaign.bidding_strategy_type, metrics.cost_micros, metrics.conversions, metrics.clicks, metrics.average_cpc FROM ad_group WHERE ad_group.id = 555"), "{q}");
        assert!(
            q.ends_with("segments.date BETWEEN '2026-11-21' AND '2026-11-27'"),
            "{q}"
        );
        let q = metrics_query(EntityKind::Campaign, "9", window());
        assert!(q.contains("campaign.maximize_conversions.target_cpa_micros"));
        assert!(q.contains("FROM campaign WHERE campaign.id = 9"));
    }

    #[test]
    fn urls_follow_the_rest_bindings() {
        assert_eq!(
            search_stream_url("https://googleads.googleapis.com/", "v25", "1234567890"),
            "https://googleads.googleapis.com/v25/customers/1234567890/googleAds:searchStream"
        );
        assert_eq!(
            mutate_url(
                "https://googleads.googleapis.com",
                "v25",
                "1",
                EntityKind::AdGroup
            ),
            "https://googleads.googleapis.com/v25/customers/1/adGroups:mutate"
        );
        assert_eq!(
            mutate_url(
                "https://googleads.googleapis.com",
                "v25",
                "1",
                EntityKind::Campaign
            ),
            "https://googleads.googleapis.com/v25/customers/1/campaigns:mutate"
        );
    }

    #[test]
    fn ad_group_bid_changes_send_cpc_bid_micros_as_a_string() {
        let body = mutate_body(
            "123",
            EntityKind::AdGroup,
            "456",
            Change::SetBid {
                from_micros: 1_000_000,
                to_micros: 900_000,
            },
            false,
            Some("MANUAL_CPC"),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"operations":[{"updateMask":"cpc_bid_micros","update":{"resourceName":"customers/123/adGroups/456","cpcBidMicros":"900000"}}],"partialFailure":false,"validateOnly":false})
        );
    }

    #[test]
    fn campaign_changes_set_the_maximize_conversions_target_cpa() {
        let body = mutate_body(
            "123",
            EntityKind::Campaign,
            "9",
            Change::SetBid {
                from_micros: 1,
                to_micros: 25_000_000,
            },
            true,
            Some("MAXIMIZE_CONVERSIONS"),
        )
        .unwrap();
        assert_eq!(
            body["operations"][0]["updateMask"],
            "maximize_conversions.target_cpa_micros"
        );
        assert_eq!(
            body["operations"][0]["update"]["maximizeConversions"]["targetCpaMicros"],
            "25000000"
        );
        assert_eq!(body["validateOnly"], true);
    }

    #[test]
    fn pauses_set_the_status() {
        // A pause is sent under any strategy (the status is not a bid).
        let body = mutate_body("1", EntityKind::AdGroup, "2", Change::Pause, false, None).unwrap();
        assert_eq!(body["operations"][0]["updateMask"], "status");
        assert_eq!(body["operations"][0]["update"]["status"], "PAUSED");
    }

    #[test]
    fn headers_carry_the_bearer_token_and_the_manager_id() {
        let h = headers("tok", Some("999"));
        assert_eq!(
            h,
            vec![
                ("authorization", "Bearer tok".to_string()),
                ("login-customer-id", "999".to_string())
            ]
        );
    }

    #[test]
    fn search_stream_batches_are_summed_and_the_bid_read() {
        let body = r#"[{"results":[{"adGroup":{"resourceName":"customers/1/adGroups/2","id":"2","status":"ENABLED","cpcBidMicros":"1000000"},
            "metrics":{"costMicros":"30000000","conversions":6.0,"clicks":"60","averageCpc":500000.0}}],"fieldMask":"x","requestId":"r"},
            {"results":[{"adGroup":{"cpcBidMicros":"1000000"},"metrics":{"costMicros":"20000000","conversions":4.0,"clicks":"40"}}]}]"#;
        let obs = parse_search_stream(body, EntityKind::AdGroup).unwrap();
        assert_eq!(obs.metrics.spend_micros, 50_000_000);
        assert_eq!(obs.metrics.conversions_milli, 10_000);
        assert_eq!(obs.metrics.clicks, 100);
        assert_eq!(obs.metrics.cpc_micros, Some(500_000));
        assert_eq!(obs.bid_micros, Some(1_000_000));
        assert!(!obs.paused);
    }

    #[test]
    fn an_empty_stream_means_no_activity() {
        let obs = parse_search_stream("[]", EntityKind::Campaign).unwrap();
        assert_eq!(obs.metrics, Metrics::default());
        assert_eq!(obs.bid_micros, None);
    }

    #[test]
    fn quota_errors_are_retryable_after_the_retry_delay() {
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED",
          "details":[{"@type":"type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
          "errors":[{"errorCode":{"quotaError":"RESOURCE_EXHAUSTED"},"message":"Too many requests",
          "details":{"quotaErrorDetails":{"rateScope":"ACCOUNT","rateName":"Requests per account","retryDelay":"7s"}}}]}]}}"#;
        let reply = Reply {
            status: 429,
            headers: vec![],
            body: body.into(),
        };
        match classify(&reply) {
            Outcome::Retryable {
                reason,
                retry_after,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert!(
                    reason.contains("quotaError: RESOURCE_EXHAUSTED"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auth_and_validation_errors_are_permanent() {
        let reply = Reply {
            status: 401,
            headers: vec![],
            body: r#"{"error":{"code":401,"status":"UNAUTHENTICATED","message":"bad token"}}"#
                .into(),
        };
        assert!(matches!(classify(&reply), Outcome::Permanent { .. }));
        let reply = Reply {
            status: 400,
            headers: vec![],
            body: r#"{"error":{"status":"INVALID_ARGUMENT","message":"x"}}"#.into(),
        };
        assert!(matches!(classify(&reply), Outcome::Permanent { .. }));
        let reply = Reply {
            status: 503,
            headers: vec![],
            body: String::new(),
        };
        assert!(matches!(classify(&reply), Outcome::Retryable { .. }));
    }

    #[test]
    fn the_refresh_token_grant_is_form_encoded() {
        assert_eq!(
            token_request_body("id.apps", "s/cret", "1//r"),
            "grant_type=refresh_token&client_id=id.apps&client_secret=s%2Fcret&refresh_token=1%2F%2Fr"
        );
        assert_eq!(
            parse_token(r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#)
                .unwrap(),
            ("ya29.x".to_string(), 3599)
        );
        assert!(parse_token(r#"{"error":"invalid_grant"}"#).is_err());
        let bad = Reply {
            status: 400,
            headers: vec![],
            body: r#"{"error":"invalid_grant","error_description":"Bad Request"}"#.into(),
        };
        assert_eq!(
            classify_token(&bad),
            Outcome::Permanent {
                reason: "token endpoint HTTP 400 invalid_grant".into()
            }
        );
    }

    #[test]
    fn both_queries_select_the_campaigns_bidding_strategy_type() {
        for kind in [EntityKind::AdGroup, EntityKind::Campaign] {
            let q = metrics_query(kind, "9", window());
            assert!(q.contains("campaign.bidding_strategy_type"), "{q}");
        }
        assert!(
            metrics_query(EntityKind::Campaign, "9", window())
                .contains("campaign.target_cpa.target_cpa_micros")
        );
    }

    #[test]
    fn ad_group_bids_move_only_under_manual_cpc() {
        assert_eq!(
            bid_field(EntityKind::AdGroup, Some("MANUAL_CPC")),
            Ok(BidField::CpcBid)
        );
        for smart in [
            "TARGET_CPA",
            "MAXIMIZE_CONVERSIONS",
            "TARGET_ROAS",
            "MAXIMIZE_CONVERSION_VALUE",
        ] {
            let why = bid_field(EntityKind::AdGroup, Some(smart)).unwrap_err();
            assert!(
                why.contains(smart) && why.contains("ignores ad_group.cpc_bid_micros"),
                "{why}"
            );
        }
        assert!(bid_field(EntityKind::AdGroup, None).is_err());
    }

    #[test]
    fn target_cpa_moves_only_under_maximize_conversions_or_target_cpa() {
        assert_eq!(
            bid_field(EntityKind::Campaign, Some("MAXIMIZE_CONVERSIONS")),
            Ok(BidField::MaximizeConversionsTargetCpa)
        );
        assert_eq!(
            bid_field(EntityKind::Campaign, Some("TARGET_CPA")),
            Ok(BidField::TargetCpa)
        );
        for other in ["MANUAL_CPC", "TARGET_ROAS", "TARGET_SPEND"] {
            assert!(
                bid_field(EntityKind::Campaign, Some(other)).is_err(),
                "{other}"
            );
        }
    }

    #[test]
    fn a_bid_change_the_strategy_ignores_is_never_built() {
        let change = Change::SetBid {
            from_micros: 1_000_000,
            to_micros: 900_000,
        };
        assert!(
            mutate_body(
                "1",
                EntityKind::AdGroup,
                "2",
                change,
                false,
                Some("TARGET_CPA")
            )
            .is_err()
        );
        assert!(
            mutate_body(
                "1",
                EntityKind::Campaign,
                "2",
                change,
                false,
                Some("MANUAL_CPC")
            )
            .is_err()
        );
        let body = mutate_body(
            "1",
            EntityKind::Campaign,
            "2",
            change,
            false,
            Some("TARGET_CPA"),
        )
        .unwrap();
        assert_eq!(
            body["operations"][0]["updateMask"],
            "target_cpa.target_cpa_micros"
        );
        assert_eq!(
            body["operations"][0]["update"]["targetCpa"]["targetCpaMicros"],
            "900000"
        );
    }

    #[test]
    fn the_strategy_is_read_and_a_smart_bidding_ad_group_is_marked_fixed() {
        let body = r#"[{"results":[{"campaign":{"biddingStrategyType":"TARGET_CPA"},"adGroup":{"cpcBidMicros":"1000000","status":"ENABLED"},
            "metrics":{"costMicros":"1","conversions":0.0,"clicks":"1"}}]}]"#;
        let obs = parse_search_stream(body, EntityKind::AdGroup).unwrap();
        assert_eq!(obs.bid_strategy.as_deref(), Some("TARGET_CPA"));
        assert!(obs.bid_fixed.is_some());
        let body = r#"[{"results":[{"campaign":{"biddingStrategyType":"TARGET_CPA","targetCpa":{"targetCpaMicros":"25000000"}},
            "metrics":{"costMicros":"1","conversions":0.0,"clicks":"1"}}]}]"#;
        let obs = parse_search_stream(body, EntityKind::Campaign).unwrap();
        assert_eq!(obs.bid_micros, Some(25_000_000));
        assert_eq!(obs.bid_fixed, None);
    }

    #[test]
    fn concurrent_modification_is_retried() {
        let body = r#"{"error":{"code":409,"message":"Multiple requests were attempting to modify the same resource at once. Retry the request.","status":"ABORTED",
          "details":[{"@type":"type.googleapis.com/google.ads.googleads.v25.errors.GoogleAdsFailure",
          "errors":[{"errorCode":{"databaseError":"CONCURRENT_MODIFICATION"},"message":"Multiple requests were attempting to modify the same resource at once. Retry the request."}]}]}}"#;
        let reply = Reply {
            status: 409,
            headers: vec![],
            body: body.into(),
        };
        assert!(matches!(classify(&reply), Outcome::Retryable { .. }));
        // The same code under a 400 is still retryable.
        let reply = Reply {
            status: 400,
            headers: vec![],
            body: body.replace("ABORTED", "INVALID_ARGUMENT"),
        };
        assert!(matches!(classify(&reply), Outcome::Retryable { .. }));
    }

    #[test]
    fn durations_parse_in_protobuf_json_form() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn absurd_retry_delays_are_refused_without_panicking() {
        assert_eq!(parse_duration("1e20s"), None);
        assert_eq!(parse_duration("infs"), None);
        assert_eq!(parse_duration("NaNs"), None);
        assert_eq!(parse_duration("-5s"), None);
    }

    #[test]
    fn the_daily_report_asks_for_every_campaign_of_one_day_with_the_currency() {
        let q = daily_campaigns_query(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert_eq!(
            q,
            "SELECT customer.currency_code, campaign.id, segments.date, metrics.cost_micros, \
             metrics.clicks, metrics.conversions FROM campaign \
             WHERE segments.date BETWEEN '2026-11-27' AND '2026-11-27'"
        );
        assert!(!q.contains("campaign.id ="), "every campaign, not one: {q}");
    }

    #[test]
    fn daily_rows_are_read_per_campaign_across_batches() {
        let body = r#"[{"results":[
            {"customer":{"resourceName":"customers/1","currencyCode":"BRL"},"campaign":{"resourceName":"customers/1/campaigns/11","id":"11"},
             "segments":{"date":"2026-11-27"},"metrics":{"costMicros":"12500000","clicks":"40","conversions":2.5}},
            {"customer":{"currencyCode":"BRL"},"campaign":{"id":"12"},"segments":{"date":"2026-11-27"},"metrics":{"costMicros":"0","clicks":"3"}}],
            "fieldMask":"customer.currencyCode,campaign.id,segments.date,metrics.costMicros,metrics.clicks,metrics.conversions","requestId":"r1"},
            {"results":[{"customer":{"currencyCode":"BRL"},"campaign":{"id":"11"},"metrics":{"costMicros":"500000","clicks":"2","conversions":0.5}}]}]"#;
        let rows = parse_daily_campaigns(body).unwrap();
        assert_eq!(
            rows,
            vec![
                DailyCampaign {
                    campaign_id: "11".into(),
                    spend_micros: 13_000_000,
                    clicks: 42,
                    conversions_milli: 3_000,
                    currency: Some("BRL".into()),
                },
                DailyCampaign {
                    campaign_id: "12".into(),
                    spend_micros: 0,
                    clicks: 3,
                    conversions_milli: 0,
                    currency: Some("BRL".into()),
                },
            ]
        );
        assert_eq!(parse_daily_campaigns("[]").unwrap(), vec![]);
        assert!(parse_daily_campaigns(r#"[{"results":[{"metrics":{}}]}]"#).is_err());
        assert!(parse_daily_campaigns("<html>").is_err());
    }
}
