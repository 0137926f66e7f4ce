//! Demo step for email-trigger: the seed lead's sequence (skipped without consent, enrolled once a new
//! submission grants it, with the exact dry-run requests), then product views posted to `POST /events`
//! turning into a throttled recommendation trigger.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::domain::Email;
use fluxo::idempotency::effect_key;
use serde_json::{Value, json};

use crate::demo::{DemoContext, Step, mask_email};

/// How long email-trigger gets to handle a message.
const TIMEOUT: Duration = Duration::from_secs(90);
/// The seed lead's sequence (interesse = "Software A").
const SEQUENCE: &str = "nutricao_interesse_software_a";

/// The demo step: listed in `demo::steps()` after the routing step (event sources are running).
pub fn step() -> Step {
    Step {
        title: "Email: the seed lead's sequence (dry-run) and a product view's recommendation",
        run: |ctx| Box::pin(show_email(ctx)),
    }
}

fn seed_email() -> Result<String> {
    let text = std::fs::read_to_string(crate::paths::fixtures().join("seed-webhook-lead.json"))
        .context("cannot read the seed lead")?;
    let v: Value = serde_json::from_str(&text)?;
    v.get("email")
        .and_then(Value::as_str)
        .map(str::to_string)
        .context("the seed lead has no email")
}

async fn item(ctx: &DemoContext<'_>, pk: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
    let table = ctx.stack.info.table("LeadsTable")?;
    let out = ctx
        .ddb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_string()))
        .key("sk", AttributeValue::S("EMAIL".into()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out.item().cloned())
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// Waits until the effect's record is in one of `states`; returns (state, reason, detail).
async fn wait_effect(
    ctx: &DemoContext<'_>,
    key: &str,
    states: &[&str],
) -> Result<(String, Option<String>, Option<String>)> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(i) = item(ctx, &format!("EFFECT#{key}")).await? {
            let state = text(&i, "state").unwrap_or_default();
            if states.contains(&state.as_str()) {
                return Ok((state, text(&i, "reason"), text(&i, "detail")));
            }
        }
        if Instant::now() > deadline {
            bail!("email-trigger did not record the effect as {states:?} within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn masked(v: &Value) -> String {
    fn mask(v: &mut Value) {
        match v {
            Value::String(s) if s.contains('@') => *s = mask_email(s),
            Value::Object(m) => m.values_mut().for_each(mask),
            Value::Array(a) => a.iter_mut().for_each(mask),
            _ => {}
        }
    }
    let mut v = v.clone();
    mask(&mut v);
    v.to_string()
}

/// Prints the dry-run requests in an effect's detail (`{platform: {dry_run: [...]}}`).
fn print_requests(detail: Option<&str>) -> usize {
    let Some(detail) = detail.and_then(|d| serde_json::from_str::<Value>(d).ok()) else {
        return 0;
    };
    let mut n = 0;
    for (platform, receipt) in detail.as_object().into_iter().flatten() {
        for r in receipt["dry_run"].as_array().into_iter().flatten() {
            n += 1;
            println!(
                "    [{platform}] {} {}",
                r["method"].as_str().unwrap_or(""),
                r["url"].as_str().unwrap_or("")
            );
            for h in r["headers"].as_array().into_iter().flatten() {
                println!(
                    "      {}: {}",
                    h[0].as_str().unwrap_or(""),
                    h[1].as_str().unwrap_or("")
                );
            }
            if !r["body"].is_null() {
                println!("      {}", masked(&r["body"]));
            }
        }
    }
    n
}

/// Posts one product view to the receiver's `POST /events`, as a shop would, and prints the answer.
async fn post_view(
    ctx: &DemoContext<'_>,
    email: &str,
    id: &str,
    name: &str,
    price: f64,
) -> Result<()> {
    let body = json!({"event": "product_viewed", "email": email,
                      "product": {"id": id, "name": name, "url": format!("https://loja.example/p/{id}"),
                                  "image_url": format!("https://loja.example/img/{id}.jpg"),
                                  "price": price, "currency": "BRL", "category": "software"}});
    let response = ctx
        .http
        .post(format!("{}/events", ctx.stack.api_url))
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or_default();
    println!("  ← POST /events ({id}): {status} {answer}");
    if status != 202 {
        bail!("POST /events answered {status}: {answer}");
    }
    Ok(())
}

/// Invokes email-trigger with one SQS record (what the event source does once the delay is over).
async fn close_window(ctx: &DemoContext<'_>, profile_key: &str) -> Result<Value> {
    let deadline = Instant::now() + TIMEOUT;
    let window_id = loop {
        if let Some(i) = item(ctx, &format!("EMAIL#{profile_key}")).await?
            && let Some(id) = i.get("window_id").and_then(|v| v.as_n().ok())
            && i.get("window_scheduled").and_then(|v| v.as_bool().ok()) == Some(&true)
        {
            break id.parse::<i64>()?;
        }
        if Instant::now() > deadline {
            bail!("the product view did not open a window");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let body = json!({"version": 1, "kind": "email.recommend", "profile_key": profile_key, "window_id": window_id});
    let event = json!({"Records": [{"messageId": format!("demo-{window_id}"), "receiptHandle": "demo",
                                     "eventSource": "aws:sqs", "body": body.to_string()}]});
    let http = reqwest::Client::new();
    let r = crate::esm::invoke(
        &http,
        &ctx.stack.invoke_url,
        "email-trigger",
        &event,
        TIMEOUT,
    )
    .await?;
    if !r.succeeded() {
        bail!(
            "email-trigger failed on the recommendation: HTTP {}",
            r.status
        );
    }
    Ok(json!(window_id))
}

/// The step.
pub async fn show_email(ctx: &mut DemoContext<'_>) -> Result<()> {
    let email = seed_email()?;
    let parsed = Email::parse(&email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let profile_key = parsed.sha256_hex();
    let enroll = effect_key(&profile_key, &format!("email:{SEQUENCE}"), "enroll");
    // The router's step showed the email and audience queues; their consumers start now.
    ctx.stack.start_event_sources()?;

    println!("\n  ● {} → sequence {SEQUENCE}", mask_email(&email));
    let (state, reason, _) = wait_effect(ctx, &enroll, &["skipped", "done"]).await?;
    println!(
        "    first submission (no consent answer): {state}{}",
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );

    println!("\n  → the same person submits again, now with consent (\"consent\": \"yes\")");
    let mut again: Value = serde_json::from_str(&std::fs::read_to_string(
        crate::paths::fixtures().join("seed-webhook-lead.json"),
    )?)?;
    again["consent"] = json!("yes");
    let posted = ctx
        .http
        .post(format!("{}/leads", ctx.stack.api_url))
        .json(&again)
        .send()
        .await?;
    println!("  ← {}", posted.status().as_u16());
    let (state, _, detail) = wait_effect(ctx, &enroll, &["done", "failed"]).await?;
    println!(
        "    enrollment: {state}, once (person x sequence); the exact requests (dry-run, not sent):"
    );
    if print_requests(detail.as_deref()) == 0 {
        bail!("the enrollment recorded no dry-run request");
    }

    println!("\n  → the shop posts two product views for the same person to POST /events");
    post_view(ctx, &email, "sw-a-pro", "Software A Pro", 499.0).await?;
    post_view(ctx, &email, "sw-a-cloud", "Software A Cloud", 99.9).await?;
    println!(
        "    views are gathered for window_secs (900 in the demo config); the demo closes the window now"
    );
    let window = close_window(ctx, &profile_key).await?;
    let key = effect_key(&profile_key, "email:recommend", &window.to_string());
    let (state, reason, detail) = wait_effect(ctx, &key, &["done", "skipped", "failed"]).await?;
    println!(
        "    recommendation: {state}{}",
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    );
    if state != "done" || print_requests(detail.as_deref()) == 0 {
        bail!("the recommendation was not triggered");
    }

    println!("\n  → another view in a new window, within the 24-hour period");
    // A new window opens only once the first has ended: end it now, as its 15 minutes would.
    let table = ctx.stack.info.table("LeadsTable")?.to_string();
    ctx.ddb
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("EMAIL#{profile_key}")))
        .key("sk", AttributeValue::S("EMAIL".into()))
        .update_expression("SET window_until = :past")
        .expression_attribute_values(":past", AttributeValue::N("0".into()))
        .send()
        .await?;
    post_view(ctx, &email, "sw-b", "Software B", 199.0).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = close_window(ctx, &profile_key).await?;
    if second == window {
        bail!("the second view did not open a new window");
    }
    let key = effect_key(&profile_key, "email:recommend", &second.to_string());
    let (state, reason, _) = wait_effect(ctx, &key, &["done", "skipped", "failed"]).await?;
    println!(
        "    second recommendation: {state}{}",
        reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    if reason.as_deref() != Some("throttled") {
        bail!("the second recommendation was not throttled");
    }
    Ok(())
}
