//! Demo step of the hourly optimizer: one dry-run pass of the sample campaigns (the article's example
//! included) through the real function under `cargo lambda watch`, with a local fake ad platform.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fake_ad_platform::{self as fake_platform, FakePlatform};
use fluxo::adapters::journal::DynamoOptimizerStore;
use serde_json::Value;

use crate::demo::{DemoContext, Step};
use crate::{esm, paths};

/// Where `config/examples/demo.toml`'s sample campaigns read their metrics.
pub const FAKE_PLATFORM_ADDR: &str = "127.0.0.1:18185";

/// The step, for [`crate::demo::steps`].
pub fn step() -> Step {
    Step {
        title: "Hourly optimizer: one dry-run pass over the sample campaigns",
        run: |ctx| Box::pin(run(ctx)),
    }
}

/// The metrics each sample campaign of `config/examples/demo.toml` gets: the article's fixture, word for word,
/// for `article`, and one case per guardrail for the others.
fn sample_platform() -> Result<FakePlatform> {
    let article = std::fs::read_to_string(paths::fixtures().join("seed-campaign-metrics.json"))
        .context("xtask/fixtures/seed-campaign-metrics.json")?;
    let mut platform = FakePlatform::new(None, Duration::from_millis(20));
    platform.metrics = HashMap::from([
        ("article".to_string(), article.trim().to_string()),
        // CPA 15.00 < 0.8 x 25.00: raise 5%, capped at max_bid 2.05.
        (
            "webinar".to_string(),
            r#"{"cpc": 0.50, "conversions": 10, "spend": 150.0, "clicks": 300}"#.to_string(),
        ),
        // 40 clicks < min_clicks 100: no change.
        (
            "landing".to_string(),
            r#"{"cpc": 0.25, "conversions": 1, "spend": 10.0, "clicks": 40}"#.to_string(),
        ),
        // JPY 2,000 spent, no conversion, > 2 x 600: pause (notify-only).
        (
            "broad".to_string(),
            r#"{"cpc": 40, "conversions": 0, "spend": 2000, "clicks": 50}"#.to_string(),
        ),
    ]);
    Ok(platform)
}

fn money(micros: &Value, currency: &str) -> String {
    let digits = fluxo::optimizer::units::minor_unit_digits(currency);
    micros
        .as_i64()
        .map(|m| fluxo::optimizer::units::format_amount(m, digits))
        .unwrap_or_else(|| "-".into())
}

/// Prints one line per campaign: the decision, its rule, the bids and the outcome.
pub fn print_outcomes(report: &Value) {
    println!(
        "  {:<22} {:<12} {:<28} {:>16}  reason",
        "campaign", "outcome", "rule", "bid before → after"
    );
    for o in report["outcomes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let currency = o["currency"].as_str().unwrap_or("USD");
        let bids = match o["change"]["kind"].as_str() {
            Some("pause") => "pause".to_string(),
            Some("resume") => "resume".to_string(),
            _ => format!(
                "{} → {} {currency}",
                money(&o["bid_before_micros"], currency),
                money(&o["bid_after_micros"], currency)
            ),
        };
        println!(
            "  {:<22} {:<12} {:<28} {:>16}  {}",
            o["campaign_id"].as_str().unwrap_or("?"),
            o["outcome"].as_str().unwrap_or("?"),
            o["rule"].as_str().unwrap_or("-"),
            bids,
            o["reason"].as_str().unwrap_or("")
        );
    }
}

async fn run(ctx: &mut DemoContext<'_>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(FAKE_PLATFORM_ADDR)
        .await
        .with_context(|| format!("the demo's fake ad platform needs {FAKE_PLATFORM_ADDR}"))?;
    let platform = Arc::new(sample_platform()?);
    let server = tokio::spawn(fake_platform::serve(listener, platform.clone()));
    println!(
        "A fake generic ad platform serves the sample campaigns' metrics on http://{FAKE_PLATFORM_ADDR}."
    );
    println!(
        "Invoking hourly-optimizer with an EventBridge scheduled event (the same path as every hour)..."
    );
    let event = esm::scheduled_event_now("HourlyOptimizerFunction-Hourly");
    let result = esm::invoke(
        &ctx.http,
        &ctx.stack.invoke_url,
        "hourly-optimizer",
        &event,
        Duration::from_secs(300),
    )
    .await;
    server.abort();
    let invocation = result?;
    let report: Value =
        serde_json::from_slice(&invocation.body).context("the function's result is not JSON")?;
    if !invocation.succeeded() {
        bail!(
            "hourly-optimizer failed: HTTP {} {}",
            invocation.status,
            report
        );
    }
    println!(
        "\nRun {} (config version {}):",
        report["run_id"].as_str().unwrap_or("?"),
        report["config_version"].as_str().unwrap_or("?")
    );
    print_outcomes(&report);

    match report["notification"]["status"].as_str() {
        Some("rendered") => {
            println!("\nThe Slack message it would send (no webhook configured):");
            for message in report["notification"]["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                println!("{}", serde_json::to_string_pretty(message)?);
            }
        }
        Some(other) => println!("\nSlack notification: {other}"),
        None => {}
    }

    let table = ctx.stack.info.table("OptimizerTable")?;
    let store = DynamoOptimizerStore::new(ctx.ddb.clone(), table);
    let outcomes = report["outcomes"].as_array().cloned().unwrap_or_default();
    let mut journaled = 0;
    for o in &outcomes {
        let id = o["campaign_id"].as_str().unwrap_or_default();
        journaled += store.journal(id).await.map(|j| j.len()).unwrap_or(0);
    }
    println!(
        "\nJournal entries in DynamoDB table {table}: {journaled}; bid calls made to the platform: {} (dry-run)",
        platform.bids().len()
    );

    // The article's example must come out as the article says.
    if let Some(article) = outcomes
        .iter()
        .find(|o| o["campaign_id"] == "article-example")
    {
        let ok = article["outcome"] == "dry_run"
            && article["rule"] == "cpa_above_target"
            && article["bid_before_micros"] == 1_000_000
            && article["bid_after_micros"] == 900_000;
        if !ok {
            bail!(
                "the article's example should reduce the bid 10% (1.00 → 0.90) in dry-run: {article}"
            );
        }
        println!(
            "✓ The article's example: CPA 5.00 > 4.80 (1.2 x 4.00) → reduce the bid 10%, 1.00 → 0.90 (dry-run)."
        );
    }
    if !platform.bids().is_empty() {
        bail!("a dry-run must not change any bid");
    }
    Ok(())
}
