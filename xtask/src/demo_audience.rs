//! Demo step for audience-sync: the routed leads reach `leads_qualificados` through the consent gate,
//! and the seed lead, once it grants consent, as the hashed, batched requests a dry run records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::audience::normalize::{google_email, meta_email, sha256_hex};
use fluxo::routing::Profile;
use fluxo::routing::fanout::{AUDIENCE_ADD, ActionHeader, AudienceAction};
use serde_json::Value;

use crate::demo::{DemoContext, Step, mask_email};
use crate::paths;

/// How long audience-sync gets (its event source gathers messages for the batching window first).
const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
const AUDIENCE: &str = "leads_qualificados";

/// The demo step: listed in `demo::steps()` after the router's.
pub fn step() -> Step {
    Step {
        title: "Audience sync: leads_qualificados as hashed, batched requests (dry-run)",
        run: |ctx| Box::pin(show_audiences(ctx)),
    }
}

type Item = std::collections::HashMap<String, AttributeValue>;

async fn scan(ctx: &DemoContext<'_>) -> Result<Vec<Item>> {
    let table = ctx.stack.info.table("LeadsTable")?.to_string();
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = ctx
            .ddb
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(items),
        }
    }
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        _ => "",
    }
}

/// Whether audience-sync has taken audience messages off the queue (in flight, or already recorded):
/// the router's step then cannot peek at them.
pub async fn taken_by_audience_sync(ctx: &DemoContext<'_>) -> Result<bool> {
    let url = ctx.stack.info.queue("AudienceQueue")?.url.clone();
    let (_, in_flight) = crate::esm::queue_depth(&ctx.sqs, &url).await?;
    if in_flight > 0 {
        return Ok(true);
    }
    Ok(scan(ctx)
        .await?
        .iter()
        .any(|i| s(i, "pk").starts_with("AUDIENCE#")))
}

/// Memberships by profile key: `(audience key, state, reason, dry_run)`.
async fn memberships(
    ctx: &DemoContext<'_>,
) -> Result<BTreeMap<String, Vec<(String, String, String, bool)>>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for i in scan(ctx).await? {
        let Some(key) = s(&i, "pk").strip_prefix("AUDIENCE#") else {
            continue;
        };
        let dry = matches!(i.get("dry_run"), Some(AttributeValue::Bool(true)));
        out.entry(key.to_string()).or_default().push((
            s(&i, "sk").to_string(),
            s(&i, "state").to_string(),
            s(&i, "reason").to_string(),
            dry,
        ));
    }
    Ok(out)
}

async fn profiles(ctx: &DemoContext<'_>) -> Result<BTreeMap<String, Profile>> {
    let mut out = BTreeMap::new();
    for i in scan(ctx).await? {
        if !s(&i, "pk").starts_with("PROFILE#") {
            continue;
        }
        let p: Profile =
            serde_json::from_str(s(&i, "profile")).context("a profile is unreadable")?;
        out.insert(p.key(), p);
    }
    Ok(out)
}

async fn wait_until<F>(ctx: &mut DemoContext<'_>, what: &str, mut done: F) -> Result<()>
where
    F: FnMut(&BTreeMap<String, Vec<(String, String, String, bool)>>) -> bool,
{
    let started = Instant::now();
    loop {
        ctx.stack.check_alive()?;
        if done(&memberships(ctx).await?) {
            return Ok(());
        }
        if started.elapsed() > SYNC_TIMEOUT {
            bail!(
                "after {}s, {what}; see .fluxo/logs/",
                SYNC_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Shows the consent gate on the routed leads, then the seed lead's dry-run requests after it grants
/// consent.
pub async fn show_audiences(ctx: &mut DemoContext<'_>) -> Result<()> {
    println!(
        "  event source: AudienceQueue → audience-sync (batches of up to 10,000 within the batching window)"
    );
    let routed = profiles(ctx).await?;
    let keys: Vec<String> = routed.keys().cloned().collect();
    wait_until(
        ctx,
        "audience-sync recorded no membership for the routed leads",
        |m| keys.iter().all(|k| m.get(k).is_some_and(|l| l.len() >= 2)),
    )
    .await?;
    let found = memberships(ctx).await?;
    for (key, p) in &routed {
        println!("\n  ● {}", mask_email(p.email.as_str()));
        for (audience, state, reason, dry) in found.get(key).into_iter().flatten() {
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            println!(
                "    {AUDIENCE} → {audience}: {state}{reason}{}",
                if *dry { " (dry-run)" } else { "" }
            );
        }
    }

    // The seed lead (the article's payload) comes back with consent: the router merges the grant, and
    // audience.add reaches audience-sync again.
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string(paths::fixtures().join("seed-webhook-lead.json"))
            .context("cannot read the seed lead")?,
    )?;
    let email = seed["email"]
        .as_str()
        .unwrap_or("joao@exemplo.com")
        .to_string();
    let mut granted = seed.clone();
    granted["consentimento"] = Value::String("sim".into());
    println!("\n→ POST /leads — the seed lead again, now with consent: {granted}");
    let response = ctx
        .http
        .post(format!("{}/leads", ctx.stack.api_url))
        .json(&granted)
        .send()
        .await?;
    println!("← {}", response.status().as_u16());
    if response.status().as_u16() != 202 {
        bail!("the seed lead with consent was not accepted");
    }
    let key = sha256_hex(&email);
    let started = Instant::now();
    let profile = loop {
        ctx.stack.check_alive()?;
        if let Some(p) = profiles(ctx).await?.remove(&key)
            && p.has_marketing_consent()
        {
            break p;
        }
        if started.elapsed() > SYNC_TIMEOUT {
            bail!("the router did not merge the seed lead's consent");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // What the router sends when consent is granted later (sent here too: audience-sync's ledger makes
    // a second copy harmless).
    let action = AudienceAction {
        header: ActionHeader::new(
            AudienceAction::VERSION,
            AUDIENCE_ADD,
            &profile,
            &profile.last_touch.lead_id,
            (&AudienceAction::destination(AUDIENCE), "add"),
            chrono::Utc::now(),
        ),
        phone: profile.field("phone").map(str::to_string),
        audience: AUDIENCE.to_string(),
    };
    ctx.sqs
        .send_message()
        .queue_url(ctx.stack.info.queue("AudienceQueue")?.url.clone())
        .message_body(serde_json::to_string(&action)?)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    println!("  → audience queue: audience.add audience={AUDIENCE} consent=granted");
    wait_until(ctx, "the seed lead was not added in dry-run", |m| {
        m.get(&key).is_some_and(|l| {
            l.len() >= 2 && l.iter().all(|(_, state, _, dry)| state == "added" && *dry)
        })
    })
    .await?;

    // The recorded requests: what would be sent.
    let mut runs: Vec<Value> = scan(ctx)
        .await?
        .iter()
        .filter(|i| s(i, "pk").starts_with("AUDIENCE_RUN#"))
        .filter_map(|i| serde_json::from_str(s(i, "run")).ok())
        .collect();
    runs.sort_by_key(|r| r["at"].as_str().unwrap_or("").to_string());
    let meta_hash = meta_email(&email)
        .map(|e| sha256_hex(&e))
        .unwrap_or_default();
    let google_hash = google_email(&email)
        .map(|e| sha256_hex(&e))
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mine: Vec<&Value> = runs
        .iter()
        .filter(|r| {
            let text = r.to_string();
            r["op"] == "add" && (text.contains(&meta_hash) || text.contains(&google_hash))
        })
        .collect();
    for run in &mine {
        println!(
            "\n  {} {} — {} person(s), dry-run, {} request(s):",
            run["audience"]["platform"].as_str().unwrap_or("?"),
            run["op"].as_str().unwrap_or("?"),
            run["people"],
            run["requests"].as_array().map(Vec::len).unwrap_or(0)
        );
        for r in run["requests"].as_array().into_iter().flatten() {
            println!(
                "    {} {}",
                r["method"].as_str().unwrap_or(""),
                r["url"].as_str().unwrap_or("")
            );
            for h in r["headers"].as_array().into_iter().flatten() {
                println!(
                    "    {}: {}",
                    h[0].as_str().unwrap_or(""),
                    h[1].as_str().unwrap_or("")
                );
            }
            println!("    {}", r["body"]);
        }
    }
    let meta = mine.iter().find(|r| r["audience"]["platform"] == "meta");
    match meta {
        Some(run) => {
            let body = &run["requests"][0]["body"];
            if body["payload"]["schema"]
                != serde_json::json!(["EMAIL", "PHONE", "FN", "LN", "COUNTRY"])
            {
                problems.push("the Meta request does not use the multi-key schema".to_string());
            }
            if !run.to_string().contains(&meta_hash) {
                problems
                    .push("the Meta request does not carry the seed's hashed email".to_string());
            }
        }
        None => problems.push("no Meta request recorded for the seed lead".to_string()),
    }
    match mine.iter().find(|r| r["audience"]["platform"] == "google") {
        Some(run) => {
            let requests = run["requests"].as_array().cloned().unwrap_or_default();
            if requests.len() != 3 || requests[0]["body"]["validateOnly"] != Value::Bool(true) {
                problems.push(
                    "the Google run is not create + addOperations + run with validateOnly"
                        .to_string(),
                );
            }
            if requests[0]["body"]["job"]["customerMatchUserListMetadata"]["consent"]["adPersonalization"]
                != "GRANTED"
            {
                problems.push("the Google job does not carry the lead's consent".to_string());
            }
        }
        None => problems.push("no Google request recorded for the seed lead".to_string()),
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    println!(
        "\n  ✓ consent gate applied to the routed leads; the seed lead, once it granted consent, is in {AUDIENCE} as {} hashed, batched request(s) (dry-run, nothing sent)",
        mine.iter()
            .map(|r| r["requests"].as_array().map(Vec::len).unwrap_or(0))
            .sum::<usize>()
    );
    Ok(())
}
