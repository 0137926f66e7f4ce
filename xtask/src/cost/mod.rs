//! `cargo xtask cost`: a measured AWS bill per million leads (issue 15, part 4). Runs a fixed workload
//! on the local stack (1,000 leads posted to the receiver with the demo config's rules, every
//! destination in dry-run, until every queue is drained; then one hourly-optimizer run over 50
//! campaigns), counts every AWS request the functions make through a counting proxy in front of moto
//! (`count.rs`, callers found by `caller.rs`) and the event-source mapping's own SQS requests
//! (`esm::usage`), and multiplies them by the list prices of `infra/prices.toml` (`prices.rs`).
//! Prints the bill per service and per function, and writes it to `target/perf/cost.json`.

pub mod caller;
pub mod count;
pub mod prices;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use serde_json::{Value, json};

use self::count::{Call, Counter, DdbUnits, Phase, Tables};
use self::prices::{Bill, PriceKey, PriceTable};
use crate::chaos::proxy;
use crate::esm::{self, EsmUsage};
use crate::local::{self, PortChoice, RunningStack, StackOptions};
use crate::{paths, proc, venv};

/// The goal of issue 15: the lead pipeline at or under this many USD per million leads.
pub const GOAL_USD_PER_MILLION: f64 = 3.0;

/// The queue consumed after the others have drained.
const LATE_QUEUE: &str = "AudienceQueue";

/// Optimizer runs a month: hourly, 30 days.
const OPTIMIZER_RUNS_PER_MONTH: f64 = 24.0 * 30.0;

/// Arguments of `cargo xtask cost`.
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    /// Leads posted to the receiver
    #[arg(long, default_value_t = 1000)]
    pub leads: usize,
    /// Campaigns of the optimizer run
    #[arg(long, default_value_t = 50)]
    pub campaigns: usize,
}

/// What one phase of the workload used.
#[derive(Debug, Clone, Default)]
pub struct PhaseUsage {
    /// The AWS requests the functions made.
    pub calls: Vec<Call>,
    /// The event-source mapping's invocations and SQS requests, per function.
    pub esm: BTreeMap<String, EsmUsage>,
    /// Invocations made directly (HTTP API requests, the scheduled run): function -> (count, ms).
    pub direct: BTreeMap<String, (u64, f64)>,
    /// HTTP API requests (API Gateway).
    pub http_requests: u64,
    /// Bytes the functions logged.
    pub log_bytes: u64,
    /// Leads the client posted again after a 5xx (not billed as API requests).
    pub client_retries: u64,
}

/// What the bill does not price, for the notes.
#[derive(Debug, Clone, Default)]
pub struct Unpriced {
    /// Calls to services the table does not price (SSM standard parameters are free), by service.
    pub calls: BTreeMap<String, u64>,
    /// Writes whose item size was unknown (billed as 1 unit).
    pub unknown_size_writes: u64,
    /// AWS calls whose calling process was not found.
    pub unattributed_calls: u64,
    /// Empty long polls of the event-source mapping (a fixed cost per queue, not per lead).
    pub empty_receives: u64,
    /// Calls moto answered with a 5xx (not billed: the SDK retried them).
    pub server_errors: u64,
    /// Batches that failed as a whole and came back, per function (their invocations are billed).
    pub failed_batches: BTreeMap<String, u64>,
}

/// Requests per (service, operation).
pub type RequestCounts = BTreeMap<(String, String), u64>;

/// The bill of one phase.
pub fn bill(
    usage: &PhaseUsage,
    tables: &Tables,
    memory_mb: &BTreeMap<String, u64>,
) -> (Bill, RequestCounts, Unpriced) {
    let mut b = Bill::default();
    let mut counts = RequestCounts::new();
    let mut unpriced = Unpriced::default();
    let gb_s = |function: &str, ms: f64| {
        ms / 1000.0 * memory_mb.get(function).copied().unwrap_or(128) as f64 / 1024.0
    };
    for (function, (n, ms)) in &usage.direct {
        b.add(
            function,
            "Lambda",
            "invocations",
            *n as f64,
            PriceKey::LambdaRequest,
        );
        b.add(
            function,
            "Lambda",
            "GB-seconds",
            gb_s(function, *ms),
            PriceKey::LambdaGbSecond,
        );
    }
    for (function, u) in &usage.esm {
        b.add(
            function,
            "Lambda",
            "invocations",
            u.invocations as f64,
            PriceKey::LambdaRequest,
        );
        b.add(
            function,
            "Lambda",
            "GB-seconds",
            gb_s(function, u.invoke_ms),
            PriceKey::LambdaGbSecond,
        );
        b.add(
            function,
            "SQS",
            "requests",
            u.receive_billed as f64,
            PriceKey::SqsRequest,
        );
        b.add(
            function,
            "SQS",
            "requests",
            u.delete_batches as f64,
            PriceKey::SqsRequest,
        );
        *counts
            .entry(("SQS".into(), "ReceiveMessage (event source)".into()))
            .or_default() += u.receives;
        *counts
            .entry(("SQS".into(), "DeleteMessageBatch (event source)".into()))
            .or_default() += u.delete_batches;
        unpriced.empty_receives += u.empty_receives;
        if u.failed_batches > 0 {
            unpriced
                .failed_batches
                .insert(function.clone(), u.failed_batches);
        }
    }
    if usage.http_requests > 0 {
        b.add(
            "webhook-receiver",
            "API Gateway",
            "HTTP API requests",
            usage.http_requests as f64,
            PriceKey::ApiGatewayHttpRequest,
        );
        *counts
            .entry(("API Gateway".into(), "POST /leads".into()))
            .or_default() += usage.http_requests;
    }
    for call in &usage.calls {
        let f = call.caller.as_str();
        if call.status >= 500 {
            unpriced.server_errors += 1;
            continue;
        }
        if f == count::UNATTRIBUTED {
            unpriced.unattributed_calls += 1;
        }
        *counts
            .entry((call.service.to_string(), call.operation.clone()))
            .or_default() += 1;
        match call.service {
            "DynamoDB" => {
                let request = count::json(&call.request);
                let answer = count::json(&call.answer);
                let u: DdbUnits =
                    count::dynamodb_units(tables, &call.operation, &request, call.status, &answer);
                unpriced.unknown_size_writes += u.unknown_size;
                b.add(
                    f,
                    "DynamoDB",
                    "write request units",
                    u.write,
                    PriceKey::DynamodbWriteRequestUnit,
                );
                b.add(
                    f,
                    "DynamoDB",
                    "index write units",
                    u.index_write,
                    PriceKey::DynamodbWriteRequestUnit,
                );
                b.add(
                    f,
                    "DynamoDB",
                    "read request units",
                    u.read,
                    PriceKey::DynamodbReadRequestUnit,
                );
            }
            "SQS" => {
                let request = count::json(&call.request);
                let answer = count::json(&call.answer);
                let payload = count::sqs_payload(&call.operation, &request, &answer);
                b.add(
                    f,
                    "SQS",
                    "requests",
                    count::sqs_billed_requests(payload) as f64,
                    PriceKey::SqsRequest,
                );
            }
            "S3" => match call.operation.as_str() {
                "PUT" => b.add(
                    f,
                    "S3",
                    "PUT/POST/LIST requests",
                    1.0,
                    PriceKey::S3PutRequest,
                ),
                "GET" => b.add(f, "S3", "GET requests", 1.0, PriceKey::S3GetRequest),
                _ => {}
            },
            other => *unpriced.calls.entry(other.to_string()).or_default() += 1,
        }
    }
    b.add(
        "all functions (logs)",
        "CloudWatch Logs",
        "GB ingested",
        usage.log_bytes as f64 / 1e9,
        PriceKey::CloudwatchLogsIngestedGb,
    );
    (b, counts, unpriced)
}

/// Each function's `MemorySize` (binary -> MB) from the template, with the `Globals` default.
pub fn memory_sizes(template_text: &str) -> Result<BTreeMap<String, u64>> {
    let doc = crate::template::intrinsic::read_yaml(template_text)?;
    let number = |v: &Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let default = number(&doc["Globals"]["Function"]["MemorySize"]).unwrap_or(128);
    let mut out = BTreeMap::new();
    for (id, r) in doc["Resources"].as_object().cloned().unwrap_or_default() {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or(&id)
            .to_string();
        out.insert(
            binary,
            number(&r["Properties"]["MemorySize"]).unwrap_or(default),
        );
    }
    Ok(out)
}

/// The cost config: the demo's (its rules, every destination in dry-run) with the optimizer's
/// campaigns replaced by `campaigns` generic dry-run campaigns on the fake platform at `platform`.
pub fn cost_config(demo: &str, platform: &str, campaigns: usize) -> String {
    // Everything before the demo's first campaign, and everything from the email trigger on.
    let start = demo.find("[[optimizer.campaigns]]").unwrap_or(demo.len());
    let end = demo
        .find("# ------------------------------------------------------------------------------------ email trigger")
        .unwrap_or(demo.len())
        .max(start);
    let mut text = demo[..start].to_string();
    for i in 0..campaigns {
        text.push_str(&format!(
            "[[optimizer.campaigns]]\nname = \"cost-{i:03}\"\nplatform = \"generic\"\naccount = \"cost\"\nentity = \"campaign\"\nentity_id = \"c{i:03}\"\ncurrency = \"USD\"\nmode = \"dry_run\"\ntarget_cpa = 4.00\ninitial_bid = 1.00\nmin_clicks = 50\nmetrics_url = \"http://{platform}/metrics/c{i:03}\"\nbid_url = \"http://{platform}/bids/c{i:03}\"\n\n"
        ));
    }
    text.push_str(&demo[end..]);
    text
}

/// The fake platform's metrics for campaign `i`: a CPA above, below and at the target, and too few
/// clicks, in turn, so the run takes every kind of decision.
fn campaign_metrics(i: usize) -> String {
    match i % 4 {
        0 => r#"{"cpc": 0.50, "conversions": 10, "spend": 50.0, "clicks": 100}"#,
        1 => r#"{"cpc": 0.50, "conversions": 10, "spend": 20.0, "clicks": 300}"#,
        2 => r#"{"cpc": 0.50, "conversions": 10, "spend": 40.0, "clicks": 200}"#,
        _ => r#"{"cpc": 0.25, "conversions": 1, "spend": 10.0, "clicks": 40}"#,
    }
    .to_string()
}

fn lead(run: &str, i: usize) -> Value {
    json!({
        "nome": format!("Lead {i}"),
        "email": format!("cost-{run}-{i}@exemplo.com"),
        "origem": "Webinar XYZ",
        "interesse": if i.is_multiple_of(2) { "Software A" } else { "Software B" },
        "consent": "sim",
        "consent_text": "Quero receber novidades por e-mail (v1)",
    })
}

/// The figures of the run, as written to `target/perf/cost.json`.
#[derive(Debug, Clone)]
pub struct CostReport {
    pub leads: usize,
    pub total_per_million: f64,
    pub by_function: BTreeMap<String, f64>,
    pub by_service: BTreeMap<String, f64>,
    pub optimizer_run_usd: f64,
}

impl CostReport {
    pub fn to_json(&self, measured_at: &str) -> Value {
        json!({
            "measured_at": measured_at,
            "leads": self.leads,
            "per_million_leads": {
                "total": self.total_per_million,
                "by_function": self.by_function,
                "by_service": self.by_service,
            },
            "optimizer_run_usd": self.optimizer_run_usd,
            "optimizer_month_usd": self.optimizer_run_usd * OPTIMIZER_RUNS_PER_MONTH,
            "goal_usd": GOAL_USD_PER_MILLION,
        })
    }
}

/// `cargo xtask cost`. Returns whether the lead pipeline is within the goal.
pub async fn run(args: CostArgs) -> Result<bool> {
    let prices = PriceTable::load(&PriceTable::path())?;
    venv::ensure(&[venv::TOOLS])?;
    let template_text = std::fs::read_to_string(paths::template())?;
    let memory = memory_sizes(&template_text)?;
    let run_id = chrono::Utc::now().format("%H%M%S").to_string();
    println!(
        "════ cost: {} leads through the whole pipeline, then one optimizer run over {} campaigns",
        args.leads, args.campaigns
    );

    let moto_port = proc::free_port()?;
    let moto_url = format!("http://127.0.0.1:{moto_port}");
    let proxy_listener_port = proc::free_port()?;
    let counter = Arc::new(Counter::new(caller::Callers::new(
        memory.keys().cloned().collect(),
        proxy_listener_port,
    )));
    let mut aws_proxy =
        proxy::Proxy::start(proxy_listener_port, &moto_url, counter.clone()).await?;
    println!(
        "  moto {moto_url} behind the counting proxy {}",
        aws_proxy.url
    );

    let platform_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let platform_addr = platform_listener.local_addr()?.to_string();
    let mut platform = fake_ad_platform::FakePlatform::new(None, Duration::from_millis(20));
    platform.metrics = (0..args.campaigns)
        .map(|i| (format!("c{i:03}"), campaign_metrics(i)))
        .collect();
    let platform = Arc::new(platform);
    let platform_task = tokio::spawn(fake_ad_platform::serve(platform_listener, platform));

    let config = write_config(&platform_addr, args.campaigns)?;
    let mut stack = local::start(StackOptions {
        moto_port: PortChoice::Exactly(moto_port),
        api_port: PortChoice::Any,
        config: Some(config),
        parameters: Default::default(),
        reload: false,
        schedules: false,
        event_sources: false,
        show_output: false,
        label: "cost".into(),
        extra_env: [("AWS_ENDPOINT_URL".to_string(), aws_proxy.url.clone())].into(),
        instances: 1,
    })
    .await?;
    let outcome = workload(&mut stack, &counter, &args, &run_id).await;
    if outcome.is_err() {
        for log in &stack.logs {
            println!("  log: {}", log.display());
        }
    }
    let tables = match &outcome {
        Ok(_) => final_tables(&stack, &counter.calls()).await,
        Err(_) => Ok(Tables::default()),
    };
    stack.stop().await;
    aws_proxy.stop();
    platform_task.abort();
    let (leads_usage, optimizer_usage) = outcome?;
    let tables = tables?;

    let (leads_bill, leads_counts, leads_unpriced) = bill(&leads_usage, &tables, &memory);
    let (opt_bill, opt_counts, _) = bill(&optimizer_usage, &tables, &memory);
    let scale = 1e6 / args.leads as f64;
    let report = CostReport {
        leads: args.leads,
        total_per_million: leads_bill.total(&prices) * scale,
        by_function: leads_bill
            .by_function(&prices)
            .into_iter()
            .map(|(k, v)| (k, v * scale))
            .collect(),
        by_service: leads_bill
            .by_service(&prices)
            .into_iter()
            .map(|(k, v)| (k, v * scale))
            .collect(),
        optimizer_run_usd: opt_bill.total(&prices),
    };
    print_report(
        &prices,
        &report,
        &leads_bill,
        &leads_counts,
        &leads_unpriced,
        &memory,
    );
    print_optimizer(&prices, &opt_bill, &opt_counts, &report);

    let out = paths::root().join("target").join("perf");
    std::fs::create_dir_all(&out)?;
    let file = out.join("cost.json");
    let measured_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&report.to_json(&measured_at))?,
    )?;
    println!("\n  written: {}", file.display());
    Ok(report.total_per_million <= GOAL_USD_PER_MILLION)
}

fn write_config(platform: &str, campaigns: usize) -> Result<PathBuf> {
    let demo = std::fs::read_to_string(local::demo_config())?;
    let text = cost_config(&demo, platform, campaigns);
    let dir = paths::state_dir().join("cost");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fluxo.toml");
    std::fs::write(&path, text)?;
    fluxo::config::load_file(&path).map_err(|e| anyhow!("the cost config is invalid: {e}"))?;
    Ok(path)
}

fn log_size(stack: &RunningStack) -> u64 {
    stack
        .logs
        .iter()
        .filter(|l| {
            l.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("watch-"))
        })
        .filter_map(|l| std::fs::metadata(l).ok())
        .map(|m| m.len())
        .sum()
}

async fn workload(
    stack: &mut RunningStack,
    counter: &Counter,
    args: &CostArgs,
    run_id: &str,
) -> Result<(PhaseUsage, PhaseUsage)> {
    crate::demo_sources::put_secrets(&stack.sdk).await?;
    shorten_visibility(stack).await?;
    // The audience queue is consumed once the rest has drained, in the large batches its mapping is
    // made for (AudienceBatchSize up to 10,000): at volume its batches are full. Consuming it while
    // the leads flow makes small batches, and moto fails audience-sync's transactions under
    // concurrent writes (see the notes).
    let first: Vec<String> = esm::sqs_mappings(&stack.template, &stack.info)?
        .into_iter()
        .map(|m| m.queue_id)
        .filter(|q| q != LATE_QUEUE)
        .collect();
    stack.start_event_sources_for(&first.iter().map(String::as_str).collect::<Vec<_>>())?;
    stack.warm_up().await?;
    stack.print_urls();

    // Leads.
    println!(
        "\n▶ {} leads posted to {}/leads, one at a time",
        args.leads, stack.api_url
    );
    esm::reset_usage();
    let logs_before = log_size(stack);
    counter.set_phase(Phase::Leads);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let api = stack.api_url.clone();
    let answers: Vec<(u16, f64, u32)> = futures_util::stream::iter((0..args.leads).map(|i| {
        let http = http.clone();
        let api = api.clone();
        let body = lead(run_id, i);
        let key = format!("cost-{run_id}-{i}");
        async move { post_lead(&http, &api, &key, &body).await }
    }))
    // One at a time: watch runs one receiver instance, so concurrent posts would queue there and the
    // measured durations would include the wait.
    .buffer_unordered(1)
    .collect()
    .await;
    let accepted = answers.iter().filter(|(s, _, _)| *s == 202).count();
    let retries: u32 = answers.iter().map(|(_, _, r)| r).sum();
    println!(
        "  {accepted} of {} accepted (202); {retries} client retries after a 5xx (moto's TransactWriteItems is not thread-safe: see the notes)",
        args.leads
    );
    if accepted != args.leads {
        return Err(anyhow!(
            "only {accepted} of {} leads were accepted: the figures would not be per lead",
            args.leads
        ));
    }
    settle(stack, Duration::from_secs(1_800), &[LATE_QUEUE]).await?;
    println!("  the audience queue's event source starts now");
    stack.start_event_sources()?;
    settle(stack, Duration::from_secs(900), &[]).await?;
    let mut leads = PhaseUsage {
        esm: esm::usage(),
        http_requests: answers.len() as u64,
        log_bytes: log_size(stack).saturating_sub(logs_before),
        ..PhaseUsage::default()
    };
    leads.direct.insert(
        "webhook-receiver".into(),
        (
            answers.len() as u64,
            answers.iter().map(|(_, ms, _)| ms).sum(),
        ),
    );
    leads.client_retries = u64::from(retries);

    // One optimizer run.
    println!(
        "\n▶ one hourly-optimizer run over {} campaigns",
        args.campaigns
    );
    esm::reset_usage();
    let logs_before = log_size(stack);
    counter.set_phase(Phase::Optimizer);
    let started = Instant::now();
    let event = esm::scheduled_event_now("HourlyOptimizerFunction-Hourly");
    let r = esm::invoke(
        &http,
        &stack.invoke_url,
        "hourly-optimizer",
        &event,
        Duration::from_secs(300),
    )
    .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let result: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if !r.succeeded() {
        return Err(anyhow!(
            "hourly-optimizer failed: HTTP {} {result}",
            r.status
        ));
    }
    println!(
        "  {} campaigns evaluated in {:.0} ms",
        result["outcomes"].as_array().map_or(0, Vec::len),
        ms
    );
    settle(stack, Duration::from_secs(600), &[]).await?;
    counter.set_phase(Phase::Setup);
    let mut optimizer = PhaseUsage {
        esm: esm::usage(),
        log_bytes: log_size(stack).saturating_sub(logs_before),
        ..PhaseUsage::default()
    };
    optimizer.direct.insert("hourly-optimizer".into(), (1, ms));

    for call in counter.calls() {
        match call.phase {
            Phase::Leads => leads.calls.push(call),
            Phase::Optimizer => optimizer.calls.push(call),
            Phase::Setup => {}
        }
    }
    Ok((leads, optimizer))
}

/// Posts one lead as a client should: again (same `Idempotency-Key`) after a 5xx or no answer, up to
/// 5 times. Answers the last status, the accepted attempt's wall time in ms, and the retries.
async fn post_lead(http: &reqwest::Client, api: &str, key: &str, body: &Value) -> (u16, f64, u32) {
    let mut last = (0, 0.0, 0);
    for attempt in 0..5 {
        let started = Instant::now();
        let status = http
            .post(format!("{api}/leads"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        last = (status, started.elapsed().as_secs_f64() * 1000.0, attempt);
        if status != 0 && status < 500 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    last
}

/// Every consumed queue's visibility timeout (up to 1,020 s in the template) becomes 120 s, so a batch
/// failed by a moto error comes back within the run.
async fn shorten_visibility(stack: &RunningStack) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    for m in esm::sqs_mappings(&stack.template, &stack.info)? {
        sqs.set_queue_attributes()
            .queue_url(&m.queue.url)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "120",
            )
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    }
    Ok(())
}

/// Waits until every queue with an event source (but `skip`) holds nothing, visible or in flight, three checks in
/// a row.
async fn settle(stack: &RunningStack, limit: Duration, skip: &[&str]) -> Result<()> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queues: Vec<(String, String)> = esm::sqs_mappings(&stack.template, &stack.info)?
        .into_iter()
        .filter(|m| !skip.contains(&m.queue_id.as_str()))
        .map(|m| (m.queue_id, m.queue.url))
        .collect();
    let deadline = Instant::now() + limit;
    let started = Instant::now();
    let mut quiet = 0;
    let mut last_print = Instant::now();
    while Instant::now() < deadline {
        let mut waiting = Vec::new();
        for (id, url) in &queues {
            let (visible, in_flight) = esm::queue_depth(&sqs, url).await?;
            if visible + in_flight > 0 {
                waiting.push(format!("{id} {visible}+{in_flight}"));
            }
        }
        if waiting.is_empty() {
            quiet += 1;
            if quiet >= 3 {
                println!(
                    "  ✓ every queue drained ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        } else {
            quiet = 0;
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            println!("  … waiting (visible+in flight): {}", waiting.join(", "));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Err(anyhow!("the queues did not drain within {limit:?}"))
}

/// Every table's keys, and every item's size at the end (a scan straight at moto, not counted).
async fn final_tables(stack: &RunningStack, calls: &[Call]) -> Result<Tables> {
    let mut tables = Tables::default();
    for spec in stack.template.tables()? {
        let Ok(name) = stack.info.table(&spec.logical_id) else {
            continue;
        };
        tables.keys.insert(
            name.to_string(),
            count::TableKeys {
                key: spec.key_schema.iter().map(|(a, _)| a.clone()).collect(),
                indexes: spec
                    .global_indexes
                    .iter()
                    .map(|i| {
                        (
                            i.name.clone(),
                            i.key_schema.iter().map(|(a, _)| a.clone()).collect(),
                        )
                    })
                    .collect(),
            },
        );
    }
    for call in calls.iter().filter(|c| c.service == "DynamoDB") {
        tables.add_seen_from(
            &call.operation,
            &count::json(&call.request),
            &count::json(&call.answer),
        );
    }
    let http = reqwest::Client::new();
    let names: Vec<String> = tables.keys.keys().cloned().collect();
    for name in names {
        let mut start: Option<Value> = None;
        loop {
            let mut body = json!({"TableName": name});
            if let Some(k) = &start {
                body["ExclusiveStartKey"] = k.clone();
            }
            let answer: Value = http
                .post(&stack.moto_url)
                .header("x-amz-target", "DynamoDB_20120810.Scan")
                .header("content-type", "application/x-amz-json-1.0")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=test/20261129/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                )
                .body(body.to_string())
                .send()
                .await
                .with_context(|| format!("scanning {name}"))?
                .json()
                .await
                .with_context(|| format!("scanning {name}"))?;
            for item in answer["Items"].as_array().cloned().unwrap_or_default() {
                if let Some(item) = item.as_object() {
                    tables.add_final(&name, item);
                }
            }
            match answer.get("LastEvaluatedKey") {
                Some(k) if !k.is_null() => start = Some(k.clone()),
                _ => break,
            }
        }
    }
    Ok(tables)
}

fn print_report(
    prices: &PriceTable,
    report: &CostReport,
    bill: &Bill,
    counts: &RequestCounts,
    unpriced: &Unpriced,
    memory: &BTreeMap<String, u64>,
) {
    let per_k = 1000.0 / report.leads as f64;
    let scale = 1e6 / report.leads as f64;
    println!(
        "\n════ cost of the lead pipeline (prices: {} {}, infra/prices.toml)\n",
        prices.region, prices.architecture
    );
    println!("Requests per 1,000 leads:\n");
    println!("| service | request | per 1,000 leads |\n|---|---|---:|");
    for ((service, op), n) in counts {
        println!("| {service} | {op} | {:.0} |", *n as f64 * per_k);
    }
    println!("\nBilled units per 1,000 leads, and cost per million leads:\n");
    println!(
        "| service | billed unit | per 1,000 leads | USD per million leads |\n|---|---|---:|---:|"
    );
    let mut by_unit: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for l in &bill.lines {
        let e = by_unit
            .entry((l.service.to_string(), l.what.clone()))
            .or_default();
        e.0 += l.quantity;
        e.1 += bill.cost(prices, l);
    }
    for ((service, what), (q, usd)) in &by_unit {
        println!(
            "| {service} | {what} | {:.2} | {:.4} |",
            q * per_k,
            usd * scale
        );
    }
    println!("\nPer service:\n\n| service | USD per million leads |\n|---|---:|");
    for (s, usd) in &report.by_service {
        println!("| {s} | {usd:.4} |");
    }
    println!("\nPer function (Lambda, and the AWS requests it makes):\n");
    println!("| function | memory | USD per million leads |\n|---|---:|---:|");
    for (f, usd) in &report.by_function {
        let mem = memory
            .get(f)
            .map(|m| format!("{m} MB"))
            .unwrap_or_else(|| "-".into());
        println!("| {f} | {mem} | {usd:.4} |");
    }
    println!(
        "\n**Total: ${:.4} per million leads** (goal ${GOAL_USD_PER_MILLION:.2}: {})",
        report.total_per_million,
        if report.total_per_million <= GOAL_USD_PER_MILLION {
            "pass"
        } else {
            "MISS"
        }
    );
    let mut lines: Vec<_> = bill.lines.iter().collect();
    lines.sort_by(|a, b| bill.cost(prices, b).total_cmp(&bill.cost(prices, a)));
    println!("\nLargest items:");
    for l in lines.iter().take(8) {
        println!(
            "  ${:.4}/M  {} {} of {} ({:.2} per lead)",
            bill.cost(prices, l) * scale,
            l.service,
            l.what,
            l.function,
            l.quantity / report.leads as f64
        );
    }
    println!("\nNotes:");
    println!(
        "  - Lambda durations are the wall time of each local invocation of a DEBUG build under cargo lambda watch on moto, on a loaded 2-core machine: an upper bound of the release build's duration in AWS."
    );
    println!(
        "  - Not counted: cold starts (the warm-up's requests), the event-source mapping's empty long polls ({} during the run: a fixed cost per queue, not per lead), the receiver's scheduled sweep, DynamoDB storage, S3 storage and data transfer, X-Ray traces, KMS.",
        unpriced.empty_receives
    );
    println!(
        "  - CloudWatch Logs: the bytes cargo lambda watch logged (the functions' output), without Lambda's own START/END/REPORT records."
    );
    if !unpriced.calls.is_empty() {
        println!(
            "  - Counted but not priced (no line in infra/prices.toml): {:?}",
            unpriced.calls
        );
    }
    if unpriced.unknown_size_writes > 0 {
        println!(
            "  - {} DynamoDB writes of items gone by the end and never seen whole: billed as 1 unit each.",
            unpriced.unknown_size_writes
        );
    }
    if unpriced.server_errors > 0 {
        println!(
            "  - {} AWS calls answered 5xx by moto (its TransactWriteItems copies a table while other threads write it: `dictionary changed size during iteration`). Not billed; the SDK's and the client's retries, and redelivered batches, are counted: a small overcount.",
            unpriced.server_errors
        );
    }
    if !unpriced.failed_batches.is_empty() {
        println!(
            "  - Batches failed whole and delivered again (each attempt's invocation and requests are billed): {:?}",
            unpriced.failed_batches
        );
    }
    if unpriced.unattributed_calls > 0 {
        println!(
            "  - {} AWS requests whose calling function was not found: listed as `unattributed`.",
            unpriced.unattributed_calls
        );
    }
}

fn print_optimizer(prices: &PriceTable, bill: &Bill, counts: &RequestCounts, report: &CostReport) {
    println!("\n════ one hourly-optimizer run\n");
    println!("| service | request | per run |\n|---|---|---:|");
    for ((service, op), n) in counts {
        println!("| {service} | {op} | {n} |");
    }
    println!("\n| function | USD per run |\n|---|---:|");
    for (f, usd) in bill.by_function(prices) {
        println!("| {f} | {usd:.6} |");
    }
    println!(
        "\n**Optimizer: ${:.6} per run, ${:.4} per month** (24 runs a day, 30 days)",
        report.optimizer_run_usd,
        report.optimizer_run_usd * OPTIMIZER_RUNS_PER_MONTH
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_gets_its_template_memory_size() {
        let text = std::fs::read_to_string(paths::template()).unwrap();
        let memory = memory_sizes(&text).unwrap();
        assert_eq!(memory["webhook-receiver"], 128);
        assert_eq!(memory["audience-sync"], 256);
        assert_eq!(memory["report-export"], 512);
        assert!(memory.len() >= 7, "{memory:?}");
    }

    #[test]
    fn the_cost_config_is_the_demo_with_50_campaigns_and_is_valid() {
        let demo = std::fs::read_to_string(local::demo_config()).unwrap();
        let text = cost_config(&demo, "127.0.0.1:1", 50);
        assert_eq!(text.matches("[[optimizer.campaigns]]").count(), 50);
        assert!(text.contains("[email_trigger]") && text.contains("[audience_sync]"));
        assert!(text.contains("[lead_router.crm]"));
        let dir = std::env::temp_dir().join(format!("fluxo-cost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fluxo.toml");
        std::fs::write(&path, &text).unwrap();
        let config = fluxo::config::load_file(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(config.is_ok(), "{:?}", config.err());
    }

    #[test]
    fn the_bill_charges_lambda_by_memory_and_time_and_aws_requests_to_their_caller() {
        let prices = PriceTable::load(&PriceTable::path()).unwrap();
        let memory = BTreeMap::from([("lead-router".to_string(), 256)]);
        let mut usage = PhaseUsage {
            http_requests: 10,
            log_bytes: 2_000_000_000,
            ..PhaseUsage::default()
        };
        usage.direct.insert("webhook-receiver".into(), (10, 1000.0));
        usage.esm.insert(
            "lead-router".into(),
            EsmUsage {
                invocations: 1,
                invoke_ms: 2000.0,
                receives: 1,
                receive_billed: 1,
                deleted: 10,
                delete_batches: 1,
                ..EsmUsage::default()
            },
        );
        usage.calls.push(Call {
            phase: Phase::Leads,
            caller: "lead-router".into(),
            service: "SQS",
            operation: "SendMessage".into(),
            request: br#"{"MessageBody": "hi"}"#.to_vec(),
            status: 200,
            answer: b"{}".to_vec(),
        });
        usage.calls.push(Call {
            phase: Phase::Leads,
            caller: count::UNATTRIBUTED.into(),
            service: "SSM",
            operation: "GetParameter".into(),
            request: b"{}".to_vec(),
            status: 200,
            answer: b"{}".to_vec(),
        });
        let (bill, counts, unpriced) = bill(&usage, &Tables::default(), &memory);
        let q = bill.quantities();
        // Receiver: 1 s at the 128 MB default = 0.125 GB-s; router: 2 s at 256 MB = 0.5 GB-s.
        assert_eq!(q[&("Lambda".into(), "GB-seconds".into())], 0.625);
        assert_eq!(q[&("Lambda".into(), "invocations".into())], 11.0);
        // The router's own send, and its mapping's receive and delete batch.
        assert_eq!(q[&("SQS".into(), "requests".into())], 3.0);
        assert_eq!(q[&("API Gateway".into(), "HTTP API requests".into())], 10.0);
        assert_eq!(q[&("CloudWatch Logs".into(), "GB ingested".into())], 2.0);
        assert_eq!(counts[&("SSM".into(), "GetParameter".into())], 1);
        assert_eq!(unpriced.calls["SSM"], 1);
        assert_eq!(unpriced.unattributed_calls, 1);
        let by_function = bill.by_function(&prices);
        let router = 1.0 * 0.2e-6 + 0.5 * 0.0000133334 + 3.0 * 0.4e-6;
        assert!((by_function["lead-router"] - router).abs() < 1e-12);
        assert!((by_function["all functions (logs)"] - 1.0).abs() < 1e-12);
    }
}
