//! Meta Marketing API requests and responses, pure: insights (per ad set, and per account for the daily
//! extract), ad set reads and edits, rate-limit signals.

use std::time::Duration;

use serde_json::Value;

use chrono::NaiveDate;

use crate::ads::DailyCampaign;
use crate::connector::{Outcome, Reply};
use crate::optimizer::ports::{Change, Observation, Window};
use crate::optimizer::{Metrics, units};

/// Error codes Meta uses for throttling: 4 (app), 17 (user), 32 (page), 613 (calls), 80000-80014 (BUC).
const RATE_LIMIT_CODES: &[i64] = &[4, 17, 32, 613];

fn base(endpoint: &str, version: &str) -> String {
    format!("{}/{version}", endpoint.trim_end_matches('/'))
}

/// `GET /{adset_id}/insights?fields=spend,actions,cpc,clicks&time_range={"since":..,"until":..}`.
pub fn insights_url(endpoint: &str, version: &str, adset_id: &str, window: Window) -> String {
    let time_range = format!(
        r#"{{"since":"{}","until":"{}"}}"#,
        window.since.format("%Y-%m-%d"),
        window.until.format("%Y-%m-%d")
    );
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("fields", "spend,actions,cpc,clicks")
        .append_pair("time_range", &time_range)
        .finish();
    format!("{}/{adset_id}/insights?{query}", base(endpoint, version))
}

/// `GET /{adset_id}?fields=bid_amount,status,bid_strategy`.
pub fn adset_url(endpoint: &str, version: &str, adset_id: &str) -> String {
    format!(
        "{}/{adset_id}?fields=bid_amount%2Cstatus%2Cbid_strategy",
        base(endpoint, version)
    )
}

/// Why an ad set's `bid_amount` cannot be moved under its `bid_strategy`, if it cannot: without a cap
/// (`LOWEST_COST_WITHOUT_CAP`) there is no bid, and a minimum ROAS (`LOWEST_COST_WITH_MIN_ROAS`) is not one.
/// With no strategy reported, an ad set with a `bid_amount` is taken as capped.
pub fn bid_fixed(strategy: Option<&str>, has_bid: bool) -> Option<String> {
    match strategy {
        Some("LOWEST_COST_WITH_BID_CAP" | "COST_CAP" | "TARGET_COST") => None,
        Some(other @ ("LOWEST_COST_WITHOUT_CAP" | "LOWEST_COST_WITH_MIN_ROAS")) => Some(format!(
            "the ad set bids with {other}: it has no bid_amount to move"
        )),
        Some(other) => Some(format!(
            "the ad set bids with {other}: only LOWEST_COST_WITH_BID_CAP and COST_CAP use bid_amount"
        )),
        None if has_bid => None,
        None => Some("the ad set reports neither bid_strategy nor bid_amount".into()),
    }
}

/// `POST /{adset_id}` (form fields from [`update_form`]).
pub fn update_url(endpoint: &str, version: &str, adset_id: &str) -> String {
    format!("{}/{adset_id}", base(endpoint, version))
}

/// The form body of an ad set edit: `bid_amount` in Meta's offset units for the currency
/// ([`units::meta_amount_digits`]), or `status`. `validate_only` adds `execution_options=["validate_only"]`:
/// Meta checks without changing.
pub fn update_form(change: Change, currency: &str, validate_only: bool) -> String {
    let currency_digits = units::meta_amount_digits(currency);
    let mut form = form_urlencoded::Serializer::new(String::new());
    match change {
        Change::SetBid { to_micros, .. } => {
            form.append_pair(
                "bid_amount",
                &units::micros_to_minor(to_micros, currency_digits).to_string(),
            );
        }
        Change::Pause => {
            form.append_pair("status", "PAUSED");
        }
        Change::Resume => {
            form.append_pair("status", "ACTIVE");
        }
    }
    if validate_only {
        form.append_pair("execution_options", r#"["validate_only"]"#);
    }
    form.finish()
}

fn number(value: &Value, scale: u32) -> Option<i64> {
    match value {
        Value::String(s) => units::parse_decimal(s, scale),
        Value::Number(n) => n
            .as_f64()
            .map(|f| (f * 10f64.powi(scale as i32)).round() as i64),
        _ => None,
    }
}

/// Sums insights rows: spend (a decimal string in the account currency), clicks, and the actions whose
/// type is one of `conversion_types`.
pub fn parse_insights(body: &str, conversion_types: &[String]) -> Result<Metrics, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("insights response is not JSON: {e}"))?;
    let rows = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or("insights response has no data array")?;
    let mut m = Metrics::default();
    for row in rows {
        m.spend_micros += row.get("spend").and_then(|v| number(v, 6)).unwrap_or(0);
        m.clicks += row
            .get("clicks")
            .and_then(|v| number(v, 0))
            .map(|c| c.max(0) as u64)
            .unwrap_or(0);
        if let Some(cpc) = row.get("cpc").and_then(|v| number(v, 6)) {
            m.cpc_micros = Some(cpc);
        }
        for action in row
            .get("actions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let kind = action
                .get("action_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            if conversion_types.iter().any(|t| t == kind) {
                m.conversions_milli += action.get("value").and_then(|v| number(v, 3)).unwrap_or(0);
            }
        }
    }
    if rows.len() > 1 && m.clicks > 0 {
        m.cpc_micros = Some(m.spend_micros / m.clicks as i64);
    }
    Ok(m)
}

/// Rows per page of the account insights report.
pub const ACCOUNT_INSIGHTS_PAGE: u32 = 500;

/// The ad account's path segment, `act_<digits>`, from `act_<digits>` or bare digits; anything else is
/// refused (it would go into the URL path).
pub fn ad_account_path(account: &str) -> Result<String, String> {
    let digits = account
        .trim()
        .strip_prefix("act_")
        .unwrap_or(account.trim());
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("a Meta ad account id is act_ followed by digits".into());
    }
    Ok(format!("act_{digits}"))
}

/// `GET /act_{id}/insights?level=campaign&fields=campaign_id,spend,clicks,actions,account_currency&
/// time_range={"since":day,"until":day}&limit=500[&after=cursor]`: every campaign of the account for one
/// day (in the account's time zone). `after` is the cursor of the page before.
pub fn account_insights_url(
    endpoint: &str,
    version: &str,
    account: &str,
    day: NaiveDate,
    after: Option<&str>,
) -> Result<String, String> {
    let account = ad_account_path(account)?;
    let d = day.format("%Y-%m-%d");
    let time_range = format!(r#"{{"since":"{d}","until":"{d}"}}"#);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("level", "campaign")
        .append_pair(
            "fields",
            "campaign_id,spend,clicks,actions,account_currency",
        )
        .append_pair("time_range", &time_range)
        .append_pair("limit", &ACCOUNT_INSIGHTS_PAGE.to_string());
    if let Some(after) = after {
        query.append_pair("after", after);
    }
    Ok(format!(
        "{}/{account}/insights?{}",
        base(endpoint, version),
        query.finish()
    ))
}

/// Reads one page of account insights: a [`DailyCampaign`] per row (spend a decimal string in the account
/// currency, clicks, and the actions whose type is one of `conversion_types`), and the cursor of the next
/// page when Meta says there is one (`paging.next` present).
pub fn parse_account_insights(
    body: &str,
    conversion_types: &[String],
) -> Result<(Vec<DailyCampaign>, Option<String>), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("insights response is not JSON: {e}"))?;
    let rows = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or("insights response has no data array")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let campaign_id = row
            .get("campaign_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or("an insights row has no campaign_id")?
            .to_string();
        let conversions_milli = row
            .get("actions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter(|a| {
                let kind = a.get("action_type").and_then(Value::as_str).unwrap_or("");
                conversion_types.iter().any(|t| t == kind)
            })
            .filter_map(|a| a.get("value").and_then(|v| number(v, 3)))
            .sum();
        out.push(DailyCampaign {
            campaign_id,
            spend_micros: row.get("spend").and_then(|v| number(v, 6)).unwrap_or(0),
            clicks: row
                .get("clicks")
                .and_then(|v| number(v, 0))
                .map(|c| c.max(0) as u64)
                .unwrap_or(0),
            conversions_milli,
            currency: row
                .get("account_currency")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    let paging = value.get("paging");
    let next = paging
        .filter(|p| p.get("next").and_then(Value::as_str).is_some())
        .and_then(|p| p.get("cursors"))
        .and_then(|c| c.get("after"))
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    Ok((out, next))
}

/// What an ad set read reports: its bid, status and bid strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdSet {
    /// `bid_amount` in micros.
    pub bid_micros: Option<i64>,
    pub paused: bool,
    pub bid_strategy: Option<String>,
}

/// Reads an ad set's `bid_amount` (Meta's offset units for `currency`), `status` and `bid_strategy`.
pub fn parse_adset(body: &str, currency: &str) -> Result<AdSet, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("ad set response is not JSON: {e}"))?;
    let digits = units::meta_amount_digits(currency);
    let bid_micros = value
        .get("bid_amount")
        .and_then(|v| number(v, 0))
        .map(|minor| units::minor_to_micros(minor, digits));
    let paused = matches!(
        value.get("status").and_then(Value::as_str),
        Some("PAUSED" | "ARCHIVED")
    );
    let bid_strategy = value
        .get("bid_strategy")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(AdSet {
        bid_micros,
        paused,
        bid_strategy,
    })
}

/// Combines both reads.
pub fn observation(metrics: Metrics, adset: AdSet) -> Observation {
    let bid_fixed = bid_fixed(adset.bid_strategy.as_deref(), adset.bid_micros.is_some());
    Observation {
        bid_strategy: adset.bid_strategy,
        bid_fixed,
        ..Observation::plain(metrics, adset.bid_micros, adset.paused)
    }
}

/// The wait Meta's usage headers ask for: the BUC header's `estimated_time_to_regain_access` (minutes)
/// and the ad account header's `reset_time_duration` (seconds), whichever is longer.
pub fn usage_wait(reply: &Reply) -> Option<Duration> {
    let mut wait: Option<Duration> = None;
    let mut consider = |d: Duration| {
        if d > Duration::ZERO && wait.is_none_or(|w| d > w) {
            wait = Some(d);
        }
    };
    if let Some(header) = reply.header("x-business-use-case-usage")
        && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(header)
    {
        for entries in map.values() {
            for entry in entries.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(mins) = entry
                    .get("estimated_time_to_regain_access")
                    .and_then(Value::as_f64)
                {
                    // An absurd value is ignored rather than allowed to panic.
                    if let Ok(d) = Duration::try_from_secs_f64(mins.max(0.0) * 60.0) {
                        consider(d);
                    }
                }
            }
        }
    }
    if let Some(header) = reply.header("x-ad-account-usage")
        && let Ok(value) = serde_json::from_str::<Value>(header)
        && let Some(secs) = value.get("reset_time_duration").and_then(Value::as_f64)
        && let Ok(d) = Duration::try_from_secs_f64(secs.max(0.0))
    {
        consider(d);
    }
    wait
}

/// Sorts a Meta reply. Throttling arrives as HTTP 400 with codes 4/17/32/613 or 80000-80014, so those are
/// retryable (after the usage headers' wait), as are `is_transient` errors and 5xx; other errors are permanent.
pub fn classify(reply: &Reply) -> Outcome<()> {
    if (200..300).contains(&reply.status) {
        return Outcome::Success(());
    }
    let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let error = body.get("error").cloned().unwrap_or(Value::Null);
    let code = error.get("code").and_then(Value::as_i64);
    let subcode = error.get("error_subcode").and_then(Value::as_i64);
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let transient = error
        .get("is_transient")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reason = match code {
        Some(code) => format!(
            "HTTP {} code {code}{}: {message}",
            reply.status,
            subcode.map(|s| format!("/{s}")).unwrap_or_default()
        ),
        None => reply.summary(),
    };
    let rate_limited =
        code.is_some_and(|c| RATE_LIMIT_CODES.contains(&c) || (80_000..=80_014).contains(&c));
    if rate_limited || transient || reply.status == 429 || reply.status >= 500 {
        return Outcome::Retryable {
            reason,
            retry_after: usage_wait(reply).or_else(|| reply.retry_after()),
        };
    }
    Outcome::Permanent { reason }
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
    fn insights_ask_for_spend_actions_cpc_and_clicks_over_the_window() {
        let url = insights_url("https://graph.facebook.com", "v25.0", "238", window());
        assert_eq!(
            url,
            "https://graph.facebook.com/v25.0/238/insights?fields=spend%2Cactions%2Ccpc%2Cclicks&time_range=%7B%22since%22%3A%222026-11-21%22%2C%22until%22%3A%222026-11-27%22%7D"
        );
    }

    #[test]
    fn bids_are_sent_in_minor_units() {
        let change = Change::SetBid {
            from_micros: 1_000_000,
            to_micros: 1_500_000,
        };
        assert_eq!(update_form(change, "USD", false), "bid_amount=150");
        let yen = Change::SetBid {
            from_micros: 0,
            to_micros: 140_000_000,
        };
        assert_eq!(update_form(yen, "JPY", false), "bid_amount=140");
    }

    #[test]
    fn dry_runs_ask_meta_to_validate_only() {
        assert_eq!(
            update_form(Change::Pause, "USD", true),
            "status=PAUSED&execution_options=%5B%22validate_only%22%5D"
        );
    }

    #[test]
    fn insights_numbers_are_strings_and_only_configured_actions_count() {
        let body = r#"{"data":[{"spend":"50.00","cpc":"0.5","clicks":"100","actions":[{"action_type":"lead","value":"10"},{"action_type":"link_click","value":"100"}],"date_start":"2026-11-21","date_stop":"2026-11-27"}],"paging":{}}"#;
        let m = parse_insights(body, &["lead".to_string()]).unwrap();
        assert_eq!(m.spend_micros, 50_000_000);
        assert_eq!(m.conversions_milli, 10_000);
        assert_eq!(m.clicks, 100);
        assert_eq!(m.cpc_micros, Some(500_000));
    }

    #[test]
    fn an_ad_set_without_delivery_has_empty_insights() {
        assert_eq!(
            parse_insights(r#"{"data":[]}"#, &["lead".to_string()]).unwrap(),
            Metrics::default()
        );
    }

    #[test]
    fn the_ad_set_bid_is_read_in_minor_units() {
        let a = parse_adset(r#"{"bid_amount":100,"status":"ACTIVE","id":"1"}"#, "USD").unwrap();
        assert_eq!((a.bid_micros, a.paused), (Some(1_000_000), false));
        let a = parse_adset(r#"{"status":"PAUSED"}"#, "USD").unwrap();
        assert_eq!((a.bid_micros, a.paused), (None, true));
    }

    #[test]
    fn bid_amounts_use_metas_currency_offsets() {
        let to = |micros| Change::SetBid {
            from_micros: 0,
            to_micros: micros,
        };
        // COP, CRC, HUF, IDR and TWD have offset 1 (ISO gives them 2 digits): whole units.
        for whole in ["COP", "CRC", "HUF", "IDR", "TWD"] {
            assert_eq!(
                update_form(to(150_000_000), whole, false),
                "bid_amount=150",
                "{whole}"
            );
            let a = parse_adset(r#"{"bid_amount":150}"#, whole).unwrap();
            assert_eq!(a.bid_micros, Some(150_000_000), "{whole}");
        }
        // BHD and JOD have offset 100 (ISO gives them 3 digits): hundredths.
        for hundredths in ["BHD", "JOD"] {
            assert_eq!(
                update_form(to(1_500_000), hundredths, false),
                "bid_amount=150"
            );
            let a = parse_adset(r#"{"bid_amount":150}"#, hundredths).unwrap();
            assert_eq!(a.bid_micros, Some(1_500_000));
        }
    }

    #[test]
    fn the_ad_set_read_asks_for_the_bid_strategy() {
        assert_eq!(
            adset_url("https://graph.facebook.com", "v25.0", "238"),
            "https://graph.facebook.com/v25.0/238?fields=bid_amount%2Cstatus%2Cbid_strategy"
        );
    }

    #[test]
    fn an_ad_set_without_a_bid_cap_has_no_bid_to_move() {
        let a = parse_adset(
            r#"{"status":"ACTIVE","bid_strategy":"LOWEST_COST_WITHOUT_CAP"}"#,
            "USD",
        )
        .unwrap();
        let obs = observation(Metrics::default(), a);
        assert_eq!(obs.bid_strategy.as_deref(), Some("LOWEST_COST_WITHOUT_CAP"));
        assert!(
            obs.bid_fixed
                .as_deref()
                .is_some_and(|r| r.contains("LOWEST_COST_WITHOUT_CAP")),
            "{obs:?}"
        );
        for capped in ["LOWEST_COST_WITH_BID_CAP", "COST_CAP"] {
            assert_eq!(bid_fixed(Some(capped), true), None);
        }
        assert!(bid_fixed(Some("LOWEST_COST_WITH_MIN_ROAS"), false).is_some());
    }

    #[test]
    fn user_and_account_rate_limits_are_retryable_after_the_buc_wait() {
        let reply = Reply {
            status: 400,
            headers: vec![(
                "x-business-use-case-usage".into(),
                r#"{"123":[{"type":"ads_management","call_count":100,"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":2}]}"#.into(),
            )],
            body: r#"{"error":{"message":"User request limit reached","type":"OAuthException","code":17,"error_subcode":2446079,"fbtrace_id":"x"}}"#.into(),
        };
        match classify(&reply) {
            Outcome::Retryable {
                reason,
                retry_after,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(120)));
                assert!(reason.contains("code 17/2446079"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        for code in [613, 80004] {
            let reply = Reply {
                status: 400,
                headers: vec![],
                body: format!(r#"{{"error":{{"code":{code},"message":"slow down"}}}}"#),
            };
            assert!(
                matches!(classify(&reply), Outcome::Retryable { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn invalid_parameters_are_permanent() {
        let reply = Reply {
            status: 400,
            headers: vec![],
            body: r#"{"error":{"code":100,"message":"Invalid parameter"}}"#.into(),
        };
        assert!(matches!(classify(&reply), Outcome::Permanent { .. }));
        let reply = Reply {
            status: 400,
            headers: vec![],
            body: r#"{"error":{"code":190,"message":"token expired"}}"#.into(),
        };
        assert!(matches!(classify(&reply), Outcome::Permanent { .. }));
    }

    #[test]
    fn absurd_usage_waits_are_ignored_without_panicking() {
        let reply = Reply {
            status: 400,
            headers: vec![
                (
                    "x-business-use-case-usage".into(),
                    r#"{"1":[{"estimated_time_to_regain_access":1e300}]}"#.into(),
                ),
                (
                    "x-ad-account-usage".into(),
                    r#"{"reset_time_duration":1e20}"#.into(),
                ),
            ],
            body: String::new(),
        };
        assert_eq!(usage_wait(&reply), None);
    }

    #[test]
    fn account_insights_ask_for_every_campaign_of_one_day() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let url =
            account_insights_url("https://graph.facebook.com/", "v25.0", "act_123", day, None)
                .unwrap();
        assert_eq!(
            url,
            "https://graph.facebook.com/v25.0/act_123/insights?level=campaign\
             &fields=campaign_id%2Cspend%2Cclicks%2Cactions%2Caccount_currency\
             &time_range=%7B%22since%22%3A%222026-11-27%22%2C%22until%22%3A%222026-11-27%22%7D&limit=500"
        );
        let next = account_insights_url("https://g", "v25.0", "123", day, Some("QVFI+x=")).unwrap();
        assert!(
            next.starts_with("https://g/v25.0/act_123/insights?"),
            "{next}"
        );
        assert!(next.ends_with("&after=QVFI%2Bx%3D"), "{next}");
        for bad in ["", "act_", "act_12/../me", "12 3"] {
            assert!(
                account_insights_url("https://g", "v25.0", bad, day, None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn account_insights_rows_count_the_configured_actions_and_give_the_next_cursor() {
        let types = vec!["lead".to_string()];
        let body = r#"{"data":[
            {"campaign_id":"2385","spend":"12.34","clicks":"30","account_currency":"BRL",
             "actions":[{"action_type":"lead","value":"3"},{"action_type":"link_click","value":"30"}],
             "date_start":"2026-11-27","date_stop":"2026-11-27"},
            {"campaign_id":"2386","spend":"0.5","clicks":"1","account_currency":"BRL","date_start":"2026-11-27","date_stop":"2026-11-27"}],
            "paging":{"cursors":{"before":"MAZDZD","after":"MjQZD"},"next":"https://graph.facebook.com/v25.0/act_1/insights?after=MjQZD"}}"#;
        let (rows, next) = parse_account_insights(body, &types).unwrap();
        assert_eq!(next.as_deref(), Some("MjQZD"));
        assert_eq!(
            rows[0],
            DailyCampaign {
                campaign_id: "2385".into(),
                spend_micros: 12_340_000,
                clicks: 30,
                conversions_milli: 3_000,
                currency: Some("BRL".into()),
            }
        );
        assert_eq!(rows[1].conversions_milli, 0);
        // The last page has cursors but no `next`.
        let last = r#"{"data":[],"paging":{"cursors":{"before":"MAZDZD","after":"MAZDZD"}}}"#;
        assert_eq!(
            parse_account_insights(last, &types).unwrap(),
            (vec![], None)
        );
        assert!(parse_account_insights(r#"{"data":[{"spend":"1"}]}"#, &types).is_err());
    }
}
