//! Peak memory of every function under a realistic load, on moto, one release binary at a time. The
//! pipeline runs for real: the receiver's 1,000 leads are the router's batches of 10, whose fan-out is
//! email-trigger's and audience-sync's input (audience-sync's repeated into the largest batch Lambda
//! delivers: 10,000 messages, or fewer when their event would pass the 6 MB invocation payload),
//! and everything they send to the analytics queue is report-export's. Then report-api renders the
//! dashboard over that lake, and hourly-optimizer runs over 1,000 campaigns on the fake ad platform.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::build;
use super::process::Function;
use crate::esm;
use crate::events::{self, ReceivedMessage};
use crate::local::AwsStack;
use crate::runtime_api::Answer;
use crate::template::LOCAL_REGION;

/// Leads the receiver takes.
pub const RECEIVER_REQUESTS: usize = 1_000;
/// Messages in audience-sync's one batch (the template's `AudienceBatchSize`).
pub const AUDIENCE_BATCH: usize = 10_000;
/// The largest event Lambda hands a function (its synchronous invocation payload, which an SQS event
/// source's batch also stops at): 6 MB.
pub const MAX_EVENT_BYTES: usize = 6 * 1024 * 1024;
/// Campaigns of the optimizer's run.
pub const OPTIMIZER_CAMPAIGNS: usize = 1_000;

/// The dashboard's charts: report-api's `charts::NAMES` (xtask does not link the function crates).
const CHARTS: [&str; 6] = [
    "leads-by-source",
    "funnel",
    "cpa",
    "platforms",
    "bid-changes",
    "failures",
];

/// One function's peak memory and what it handled, or why it was not measured.
#[derive(Debug, Clone)]
pub struct Peak {
    pub function: String,
    pub bytes: Result<u64, String>,
    pub workload: String,
}

/// Runs every function's workload in pipeline order. The config pushed to the stack must hold the
/// optimizer's campaigns ([`crate::cost::cost_config`]) and the fake platform must be serving them.
///
/// A step that fails (a function error, or moto too slow to hand over a queue) ends the pipeline: that
/// function and the ones after it are reported as not measured, with the reason. The optimizer's run
/// does not depend on the pipeline and is measured either way.
pub async fn measure(aws: &AwsStack) -> Vec<Peak> {
    let mut peaks = Vec::new();
    if let Err(e) = pipeline(aws, &mut peaks).await {
        let reason = format!("{e:#}");
        println!("  ✗ {reason}");
        // The pipeline: every function but the optimizer, in the order a lead meets them.
        let missing: Vec<&str> = build::ORDER
            .iter()
            .copied()
            .filter(|f| *f != "hourly-optimizer")
            .filter(|f| !peaks.iter().any(|p: &Peak| p.function == *f))
            .collect();
        for f in missing {
            peaks.push(Peak {
                function: f.to_string(),
                bytes: Err(reason.clone()),
                workload: "the pipeline's step".into(),
            });
        }
    }
    if let Err(e) = optimizer(aws, &mut peaks).await {
        peaks.push(Peak {
            function: "hourly-optimizer".into(),
            bytes: Err(format!("{e:#}")),
            workload: format!("one run over {OPTIMIZER_CAMPAIGNS} campaigns"),
        });
    }
    peaks
}

async fn pipeline(aws: &AwsStack, peaks: &mut Vec<Peak>) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);

    // The receiver: 1,000 posts of the article's JSON lead, one per invocation.
    let events: Vec<Value> = (0..RECEIVER_REQUESTS).map(lead_post).collect();
    let answers = run(
        "webhook-receiver",
        aws,
        &events,
        Duration::from_secs(600),
        peaks,
        format!("{RECEIVER_REQUESTS} lead posts"),
    )
    .await?;
    expect_http(&answers, "webhook-receiver", 202)?;

    // The router: the leads queue, 10 messages per batch.
    let batches = drain(&sqs, aws, "LeadsQueue", 10).await?;
    let n: usize = batches.iter().map(Vec::len).sum();
    let events = sqs_events(&batches, aws, "LeadsQueue")?;
    let answers = run(
        "lead-router",
        aws,
        &events,
        Duration::from_secs(900),
        peaks,
        format!("{n} leads in batches of 10"),
    )
    .await?;
    expect_no_failures(&answers, "lead-router")?;

    // email-trigger: the email queue, 10 per batch (the template's EmailBatchSize).
    let batches = drain(&sqs, aws, "EmailQueue", 10).await?;
    let n: usize = batches.iter().map(Vec::len).sum();
    let events = sqs_events(&batches, aws, "EmailQueue")?;
    let answers = run(
        "email-trigger",
        aws,
        &events,
        Duration::from_secs(900),
        peaks,
        format!("{n} email actions in batches of 10"),
    )
    .await?;
    expect_no_failures(&answers, "email-trigger")?;

    // audience-sync: the audience queue's messages, repeated into one batch of 10,000 (each copy a
    // distinct message, as redeliveries and repeat leads are), cut to what fits in Lambda's 6 MB.
    let received: Vec<ReceivedMessage> = drain(&sqs, aws, "AudienceQueue", 10)
        .await?
        .into_iter()
        .flatten()
        .collect();
    if received.is_empty() {
        bail!(
            "the router queued no audience action: the config's rules sent no lead to an audience"
        );
    }
    let mut batch: Vec<ReceivedMessage> = (0..AUDIENCE_BATCH)
        .map(|i| {
            let mut m = received[i % received.len()].clone();
            m.message_id = format!("{}-{i}", m.message_id);
            m.receipt_handle = format!("{}-{i}", m.receipt_handle);
            m
        })
        .collect();
    let (events, bytes) = loop {
        let events = sqs_events(std::slice::from_ref(&batch), aws, "AudienceQueue")?;
        let bytes = serde_json::to_vec(&events[0])?.len();
        match fitting(batch.len(), bytes) {
            Some(n) => batch.truncate(n),
            None => break (events, bytes),
        }
    };
    let answers = run(
        "audience-sync",
        aws,
        &events,
        Duration::from_secs(1_200),
        peaks,
        format!(
            "one batch of {} audience actions, {:.1} MB ({} distinct; the largest Lambda delivers is 10,000 or 6 MB)",
            batch.len(),
            bytes as f64 / 1e6,
            received.len()
        ),
    )
    .await?;
    expect_no_failures(&answers, "audience-sync")?;

    // report-export: everything the pipeline sent to the analytics queue, 1,000 per batch.
    let batches = drain(&sqs, aws, "AnalyticsQueue", 1_000).await?;
    let n: usize = batches.iter().map(Vec::len).sum();
    let events = sqs_events(&batches, aws, "AnalyticsQueue")?;
    let answers = run(
        "report-export",
        aws,
        &events,
        Duration::from_secs(900),
        peaks,
        format!("{n} analytics records in batches of up to 1,000"),
    )
    .await?;
    expect_no_failures(&answers, "report-export")?;

    // report-api: the dashboard page and each chart, over 90 days of that lake.
    let events: Vec<Value> = std::iter::once("/reports".to_string())
        .chain(CHARTS.iter().map(|c| format!("/reports/{c}.json")))
        .map(|p| report_get(&p))
        .collect();
    let answers = run(
        "report-api",
        aws,
        &events,
        Duration::from_secs(300),
        peaks,
        "the dashboard and its charts over 90 days".into(),
    )
    .await?;
    expect_http(&answers, "report-api", 200)?;

    Ok(())
}

/// hourly-optimizer: one scheduled run over the config's 1,000 campaigns.
async fn optimizer(aws: &AwsStack, peaks: &mut Vec<Peak>) -> Result<()> {
    let event = serde_json::to_value(esm::scheduled_event_now("HourlyOptimizerFunction-Hourly"))?;
    let answers = run(
        "hourly-optimizer",
        aws,
        &[event],
        Duration::from_secs(900),
        peaks,
        format!("one run over {OPTIMIZER_CAMPAIGNS} campaigns"),
    )
    .await?;
    if let Some(a) = answers.iter().find(|a| !a.ok) {
        bail!(
            "hourly-optimizer failed: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    Ok(())
}

async fn run(
    name: &str,
    aws: &AwsStack,
    events: &[Value],
    timeout: Duration,
    peaks: &mut Vec<Peak>,
    workload: String,
) -> Result<Vec<Answer>> {
    println!("▶ {name}: {workload}");
    let mut f = Function::start(name, &build::binary(name), &aws.env, events).await?;
    let result = f.answers(timeout).await;
    let peak = f.peak_rss();
    f.stop().await;
    let answers = result?;
    let bytes = peak?;
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1_048_576.0;
    println!("  peak RSS {mb:.1} MB");
    peaks.push(Peak {
        function: name.to_string(),
        bytes: Ok(bytes),
        workload,
    });
    Ok(answers)
}

/// Receives everything on a queue, `batch` messages per group (SQS gives at most 10 per call), deleting
/// each message once read: moto's ReceiveMessage slows down with every message left in flight. Gives up
/// after [`DRAIN_LIMIT`].
async fn drain(
    sqs: &aws_sdk_sqs::Client,
    aws: &AwsStack,
    queue: &str,
    batch: usize,
) -> Result<Vec<Vec<ReceivedMessage>>> {
    let url = &aws.info.queue(queue)?.url;
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let mut all = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "reading {queue} took over {DRAIN_LIMIT:?} ({} messages read): moto is too slow here",
                all.len()
            );
        }
        let got = esm::receive(sqs, url, 10, 1).await?;
        if got.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in &got {
            esm::delete(sqs, url, &m.receipt_handle).await?;
        }
        all.extend(got);
    }
    Ok(all.chunks(batch.max(1)).map(<[_]>::to_vec).collect())
}

/// Longest time to read one queue.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// How many of `count` messages fit when their event is `bytes` long: `None` when all of them do.
fn fitting(count: usize, bytes: usize) -> Option<usize> {
    (bytes > MAX_EVENT_BYTES).then(|| {
        let fit = (count as u128 * MAX_EVENT_BYTES as u128 / bytes as u128) as usize;
        // The event's envelope is a few hundred bytes: cutting in proportion lands within a message or
        // two, and the loop re-measures.
        fit.min(count.saturating_sub(1))
    })
}

fn sqs_events(batches: &[Vec<ReceivedMessage>], aws: &AwsStack, queue: &str) -> Result<Vec<Value>> {
    let arn = &aws.info.queue(queue)?.arn;
    batches
        .iter()
        .map(|b| {
            Ok(serde_json::to_value(events::sqs_event(
                b,
                arn,
                LOCAL_REGION,
            ))?)
        })
        .collect()
}

/// An HTTP API (payload 2.0) request, as API Gateway sends it.
fn http_event(method: &str, path: &str, headers: Value, body: Option<String>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "fluxo-bench"},
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "29/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1_795_910_400_000_u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// The article's lead, with consent so that it also reaches the audiences; half of them interested
/// in Software A (the article's qualifying rule).
fn lead_post(i: usize) -> Value {
    let body = json!({
        "nome": format!("Lead {i}"),
        "email": format!("bench-{i}@exemplo.com.br"),
        "telefone": format!("(11) 98765-{:04}", i % 10_000),
        "origem": "Webinar XYZ",
        "interesse": if i.is_multiple_of(2) { "Software A" } else { "Software B" },
        "consentimento": "sim",
    });
    http_event(
        "POST",
        "/leads",
        json!({"content-type": "application/json", "user-agent": "fluxo-bench", "x-forwarded-for": "203.0.113.9"}),
        Some(body.to_string()),
    )
}

fn report_get(path: &str) -> Value {
    http_event(
        "GET",
        path,
        json!({"authorization": format!("Bearer {}", crate::local::local_report_token()), "user-agent": "fluxo-bench"}),
        None,
    )
}

fn expect_http(answers: &[Answer], name: &str, status: u64) -> Result<()> {
    for a in answers {
        let v: Value = serde_json::from_slice(&a.body)
            .with_context(|| format!("{name}'s answer is not JSON"))?;
        if !a.ok || v["statusCode"].as_u64() != Some(status) {
            bail!(
                "{name} answered {} instead of {status}: {}",
                v["statusCode"],
                String::from_utf8_lossy(&a.body)
                    .chars()
                    .take(400)
                    .collect::<String>()
            );
        }
    }
    Ok(())
}

fn expect_no_failures(answers: &[Answer], name: &str) -> Result<()> {
    for a in answers {
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        let failures = v["batchItemFailures"].as_array().map_or(0, Vec::len);
        if !a.ok || failures > 0 {
            bail!(
                "{name} failed part of a batch: {}",
                String::from_utf8_lossy(&a.body)
                    .chars()
                    .take(400)
                    .collect::<String>()
            );
        }
    }
    Ok(())
}

/// Serves the fake ad platform on `listener`, every campaign answering the article's metrics.
pub fn serve_platform(listener: tokio::net::TcpListener) -> Result<tokio::task::JoinHandle<()>> {
    let metrics =
        std::fs::read_to_string(crate::paths::fixtures().join("seed-campaign-metrics.json"))
            .context("xtask/fixtures/seed-campaign-metrics.json")?;
    let platform = Arc::new(fake_ad_platform::FakePlatform::new(
        Some(metrics),
        Duration::ZERO,
    ));
    Ok(tokio::spawn(fake_ad_platform::serve(listener, platform)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_batch_is_cut_to_what_lambda_delivers_in_six_mb() {
        assert_eq!(fitting(10_000, 5_000_000), None);
        assert_eq!(fitting(10_000, MAX_EVENT_BYTES), None);
        assert_eq!(fitting(10_000, 2 * MAX_EVENT_BYTES), Some(5_000));
        // Always at least one message fewer, so that the loop ends.
        assert_eq!(fitting(10_000, MAX_EVENT_BYTES + 1), Some(9_999));
    }

    #[test]
    fn the_generated_optimizer_config_is_valid_and_holds_every_campaign() {
        let demo = std::fs::read_to_string(crate::local::demo_config()).unwrap();
        let text = crate::cost::cost_config(&demo, "127.0.0.1:18199", OPTIMIZER_CAMPAIGNS);
        let dir = std::env::temp_dir().join(format!("fluxo-bench-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bench.toml");
        std::fs::write(&path, text).unwrap();
        let loaded = fluxo::config::load_file(&path).unwrap();
        let campaigns = loaded.config.optimizer.campaigns.len();
        assert!(campaigns >= 1_000, "{campaigns}");
    }

    #[test]
    fn a_lead_post_is_an_http_api_request_with_the_articles_fields() {
        let e = lead_post(8);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["email"], "bench-8@exemplo.com.br");
        assert_eq!(body["interesse"], "Software A");
    }
}
