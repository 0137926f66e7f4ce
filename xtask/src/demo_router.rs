//! Demo step for the lead-router: each demo lead's CRM upsert (the dry-run request), its segment and its fan-out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::routing::{AudienceAction, CrmRecord, EmailAction, Profile};
use serde_json::Value;

use crate::demo::{DemoContext, Step, mask_email};

/// How long the event-source mapping and the router get to route the demo leads.
const ROUTING_TIMEOUT: Duration = Duration::from_secs(90);

/// A routed profile as stored by the lead-router.
struct Routed {
    profile: Profile,
    crm: Option<CrmRecord>,
}

/// The demo step: listed in `demo::steps()` after the receiver's steps.
pub fn step() -> Step {
    Step {
        title: "Lead routing: CRM upsert (dry-run), segment and fan-out",
        run: |ctx| Box::pin(show_routing(ctx)),
    }
}

/// Starts the event-source mapping, waits until every accepted lead is routed, and shows the outcome.
pub async fn show_routing(ctx: &mut DemoContext<'_>) -> Result<()> {
    // Only the leads queue: the email and audience messages stay on their queues to be shown here;
    // the email and audience steps start their consumers.
    ctx.stack.start_event_sources_for(&["LeadsQueue"])?;
    println!(
        "  event-source mapping started: LeadsQueue → lead-router (batches of up to 10, partial failures)"
    );
    let expected: BTreeSet<String> = ctx.accepted.iter().cloned().collect();
    let routed = wait_for_profiles(ctx, &expected).await?;
    let (emails, audiences) = peek_fan_out(ctx, routed.len()).await?;

    // audience-sync may take the audience messages first; its own step checks them.
    let audience_sync_took = crate::demo_audience::taken_by_audience_sync(ctx).await?;
    let mut problems = Vec::new();
    for r in routed.values() {
        let p = &r.profile;
        let email = p.email.as_str();
        let decision = p.decision.clone().unwrap_or_default();
        println!(
            "\n  ● {}  ({} submission(s), consent: {})",
            mask_email(email),
            p.submissions.len(),
            consent_label(p)
        );
        println!(
            "    segment: {}  score: {}  rules: {}",
            decision.segment.as_deref().unwrap_or("-"),
            decision.score,
            decision.matched_rules.join(", ")
        );
        match r.crm.as_ref() {
            Some(crm) => {
                println!("    CRM ({}): {}", crm.connector, crm.state);
                match &crm.request {
                    Some(request) => {
                        println!("      {} {}", request.method, request.url);
                        for (name, value) in &request.headers {
                            println!("      {name}: {value}");
                        }
                        println!("      {}", masked_body(&request.body));
                    }
                    None => problems.push(format!(
                        "{}: the dry-run request was not recorded",
                        mask_email(email)
                    )),
                }
            }
            None => problems.push(format!("{}: no CRM upsert recorded", mask_email(email))),
        }
        let mine_e: Vec<&EmailAction> = emails
            .iter()
            .filter(|a| a.header.email.as_str() == email)
            .collect();
        let mine_a: Vec<&AudienceAction> = audiences
            .iter()
            .filter(|a| a.header.email.as_str() == email)
            .collect();
        for a in &mine_e {
            println!(
                "    → email queue: {} v{} sequence={} effect={}…",
                a.header.kind,
                a.header.version,
                a.sequence,
                &a.header.effect_key[..12]
            );
        }
        for a in &mine_a {
            println!(
                "    → audience queue: {} v{} audience={} effect={}…",
                a.header.kind,
                a.header.version,
                a.audience,
                &a.header.effect_key[..12]
            );
        }
        let want_sequences: BTreeSet<&str> =
            decision.sequences.iter().map(String::as_str).collect();
        let got_sequences: BTreeSet<&str> = mine_e.iter().map(|a| a.sequence.as_str()).collect();
        if want_sequences != got_sequences {
            problems.push(format!(
                "{}: email queue holds {got_sequences:?}, expected {want_sequences:?}",
                mask_email(email)
            ));
        }
        if !mine_a.iter().any(|a| a.audience == "leads_qualificados") && !audience_sync_took {
            problems.push(format!(
                "{}: not on the audience queue for leads_qualificados",
                mask_email(email)
            ));
        }
        let interest = p.field("interest");
        let want_segment = if interest == Some("Software A") {
            "interesse_software_a"
        } else {
            "geral"
        };
        if decision.segment.as_deref() != Some(want_segment) {
            problems.push(format!(
                "{}: segment {:?}, expected {want_segment}",
                mask_email(email),
                decision.segment
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    println!(
        "\n  ✓ {} leads routed: CRM upsert recorded (dry-run), segmented, {} email and {} audience messages queued",
        routed.len(),
        emails.len(),
        audiences.len()
    );
    Ok(())
}

fn consent_label(p: &Profile) -> &'static str {
    match p.consent() {
        Some(c) if c.granted => "granted",
        Some(_) => "refused",
        None => "not given",
    }
}

/// The request body with email values masked for the terminal (the profile keeps the exact request).
fn masked_body(body: &Value) -> String {
    let mut v = body.clone();
    mask_emails(&mut v);
    v.to_string()
}

fn mask_emails(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('@') => *s = mask_email(s),
        Value::Object(map) => map.values_mut().for_each(mask_emails),
        Value::Array(items) => items.iter_mut().for_each(mask_emails),
        _ => {}
    }
}

async fn wait_for_profiles(
    ctx: &mut DemoContext<'_>,
    expected: &BTreeSet<String>,
) -> Result<BTreeMap<String, Routed>> {
    let table = ctx.stack.info.table("LeadsTable")?.to_string();
    let started = Instant::now();
    loop {
        ctx.stack.check_alive()?;
        let out = ctx
            .ddb
            .scan()
            .table_name(&table)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        let mut routed = BTreeMap::new();
        let mut covered = BTreeSet::new();
        for item in out.items() {
            let Some(AttributeValue::S(pk)) = item.get("pk") else {
                continue;
            };
            if !pk.starts_with("PROFILE#") {
                continue;
            }
            let Some(AttributeValue::S(json)) = item.get("profile") else {
                continue;
            };
            let profile: Profile =
                serde_json::from_str(json).context("a stored profile is unreadable")?;
            let crm = match item.get("crm") {
                Some(AttributeValue::S(json)) => Some(
                    serde_json::from_str::<CrmRecord>(json)
                        .context("a CRM record is unreadable")?,
                ),
                _ => None,
            };
            covered.extend(profile.submissions.iter().map(|s| s.lead_id.to_string()));
            let done = crm.as_ref().is_some_and(|c| c.state == "done");
            if done {
                routed.insert(pk.clone(), Routed { profile, crm });
            }
        }
        let routed_leads: BTreeSet<String> = routed
            .values()
            .flat_map(|r| r.profile.submissions.iter().map(|s| s.lead_id.to_string()))
            .collect();
        if expected.is_subset(&routed_leads) {
            return Ok(routed);
        }
        if started.elapsed() > ROUTING_TIMEOUT {
            bail!(
                "after {}s, lead-router routed {:?} of {expected:?} (merged: {covered:?}); see .fluxo/logs/",
                ROUTING_TIMEOUT.as_secs(),
                routed_leads
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Peeks (visibility 0) at the email and audience queues until each holds at least one message per lead.
async fn peek_fan_out(
    ctx: &mut DemoContext<'_>,
    leads: usize,
) -> Result<(Vec<EmailAction>, Vec<AudienceAction>)> {
    let email_url = ctx.stack.info.queue("EmailQueue")?.url.clone();
    let audience_url = ctx.stack.info.queue("AudienceQueue")?.url.clone();
    let mut emails: BTreeMap<String, EmailAction> = BTreeMap::new();
    let mut audiences: BTreeMap<String, AudienceAction> = BTreeMap::new();
    let started = Instant::now();
    while (emails.len() < leads || audiences.len() < leads)
        && started.elapsed() < Duration::from_secs(20)
    {
        for (url, is_email) in [(&email_url, true), (&audience_url, false)] {
            let out = ctx
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            for body in out.messages().iter().filter_map(|m| m.body()) {
                if is_email {
                    let a = EmailAction::from_json(body)
                        .context("an email-queue message is not email.enroll v1")?;
                    emails.insert(a.header.effect_key.clone(), a);
                } else {
                    let a = AudienceAction::from_json(body)
                        .context("an audience-queue message is not audience.add v1")?;
                    audiences.insert(a.header.effect_key.clone(), a);
                }
            }
        }
    }
    Ok((
        emails.into_values().collect(),
        audiences.into_values().collect(),
    ))
}
