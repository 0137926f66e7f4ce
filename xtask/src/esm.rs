//! The local event-source mapping: polls each SQS queue the template wires to a function and invokes it, as Lambda would.
//!
//! Honours `BatchSize` (up to Lambda's 10,000, gathered 10 per receive), `MaximumBatchingWindowInSeconds`
//! (up to 300 s), the queue's visibility
//! timeout (failed messages are left alone and reappear), `ReportBatchItemFailures`, and the redrive policy.
//! Also sends EventBridge scheduled events to functions with `Schedule` events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use tokio::task::JoinSet;

use crate::events::{self, BatchOutcome, MessageAttribute, ReceivedMessage};
use crate::stack::{QueueInfo, StackInfo};
use crate::template::{EventSource, LOCAL_ACCOUNT, LOCAL_REGION, Template, rate_interval};

/// Largest batch one ReceiveMessage returns.
const MAX_RECEIVE: u32 = 10;

/// One SQS queue -> function wiring.
#[derive(Debug, Clone)]
pub struct SqsMapping {
    pub function: String,
    pub queue_id: String,
    pub queue: QueueInfo,
    pub batch_size: u32,
    pub window: Duration,
    pub report_batch_item_failures: bool,
    /// `(maxReceiveCount, dead-letter queue)` from the queue's redrive policy.
    pub redrive: Option<(u32, QueueInfo)>,
    pub invoke_timeout: Duration,
}

/// One schedule -> function wiring.
#[derive(Debug, Clone)]
pub struct ScheduleMapping {
    pub function: String,
    pub rule_name: String,
    pub expression: String,
    pub interval: Option<Duration>,
    pub invoke_timeout: Duration,
}

/// The invoke timeout for a function: its own timeout plus slack for the local runtime.
fn invoke_timeout(timeout_secs: u64) -> Duration {
    Duration::from_secs(timeout_secs + 10)
}

/// Every enabled SQS mapping of the template.
pub fn sqs_mappings(template: &Template, stack: &StackInfo) -> Result<Vec<SqsMapping>> {
    let queues = template.queues()?;
    let mut out = Vec::new();
    for f in template.functions()? {
        for (name, source) in &f.events {
            let EventSource::Sqs(s) = source else {
                continue;
            };
            if !s.enabled {
                continue;
            }
            let queue = stack
                .queue(&s.queue)
                .with_context(|| format!("{}.{name}", f.logical_id))?
                .clone();
            let redrive = match queues
                .iter()
                .find(|q| q.logical_id == s.queue)
                .and_then(|q| q.redrive.clone())
            {
                Some(r) => Some((
                    r.max_receive_count,
                    stack.queue(&r.dead_letter_queue)?.clone(),
                )),
                None => None,
            };
            out.push(SqsMapping {
                function: f.binary.clone(),
                queue_id: s.queue.clone(),
                queue,
                batch_size: s.batch_size.max(1),
                window: Duration::from_secs(u64::from(s.max_batching_window_secs)),
                report_batch_item_failures: s.report_batch_item_failures,
                redrive,
                invoke_timeout: invoke_timeout(f.timeout_secs),
            });
        }
    }
    Ok(out)
}

/// Every enabled schedule of the template.
pub fn schedule_mappings(template: &Template) -> Result<Vec<ScheduleMapping>> {
    let mut out = Vec::new();
    for f in template.functions()? {
        for (name, source) in &f.events {
            let EventSource::Schedule(s) = source else {
                continue;
            };
            if !s.enabled {
                continue;
            }
            out.push(ScheduleMapping {
                function: f.binary.clone(),
                rule_name: format!("{}-{name}", f.logical_id),
                expression: s.expression.clone(),
                interval: rate_interval(&s.expression),
                invoke_timeout: invoke_timeout(f.timeout_secs),
            });
        }
    }
    Ok(out)
}

/// The invoke API URL of a function.
pub fn invoke_url(invoke_base: &str, function: &str) -> String {
    format!(
        "{}/2015-03-31/functions/{function}/invocations",
        invoke_base.trim_end_matches('/')
    )
}

/// What an invocation returned.
#[derive(Debug)]
pub struct Invocation {
    pub status: u16,
    pub function_error: Option<String>,
    pub body: Vec<u8>,
}

impl Invocation {
    /// Whether the function ran and returned normally.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) && self.function_error.is_none()
    }
}

/// Invokes a function through the invoke API, with a timeout.
pub async fn invoke(
    http: &reqwest::Client,
    invoke_base: &str,
    function: &str,
    payload: &impl serde::Serialize,
    timeout: Duration,
) -> Result<Invocation> {
    let response = http
        .post(invoke_url(invoke_base, function))
        .timeout(timeout)
        .json(payload)
        .send()
        .await
        .with_context(|| format!("invoking {function} (timeout {}s)", timeout.as_secs()))?;
    let status = response.status().as_u16();
    let function_error = response
        .headers()
        .get("x-amz-function-error")
        .map(|v| v.to_str().unwrap_or("Unhandled").to_string());
    let body = response
        .bytes()
        .await
        .context("reading the invocation response")?
        .to_vec();
    Ok(Invocation {
        status,
        function_error,
        body,
    })
}

/// A scheduled event for a rule, stamped now.
pub fn scheduled_event_now(rule_name: &str) -> EventBridgeEvent {
    let rule_arn = format!("arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/{rule_name}");
    events::scheduled_event(
        &ulid::Ulid::new().to_string(),
        &rule_arn,
        LOCAL_ACCOUNT,
        LOCAL_REGION,
        chrono::Utc::now(),
    )
}

/// Starts a poller per SQS mapping and, when `schedules` is set, a timer per `rate(...)` schedule.
pub fn start(
    tasks: &mut JoinSet<()>,
    sqs: aws_sdk_sqs::Client,
    invoke_base: String,
    mappings: Vec<SqsMapping>,
    schedules: Vec<ScheduleMapping>,
) -> Result<()> {
    let http = reqwest::Client::builder().build()?;
    for m in mappings {
        println!(
            "  ✓ event source: {} -> {} (batch {}, window {}s{})",
            m.queue_id,
            m.function,
            m.batch_size,
            m.window.as_secs(),
            if m.report_batch_item_failures {
                ", partial batch failures"
            } else {
                ""
            }
        );
        tasks.spawn(poll_forever(
            sqs.clone(),
            http.clone(),
            invoke_base.clone(),
            m,
        ));
    }
    for s in schedules {
        let Some(interval) = s.interval else {
            println!(
                "  ! schedule {} ({}) has no fixed interval: use `cargo xtask invoke {} --scheduled`",
                s.rule_name, s.expression, s.function
            );
            continue;
        };
        println!(
            "  ✓ schedule: {} every {}s -> {}",
            s.rule_name,
            interval.as_secs(),
            s.function
        );
        let http = http.clone();
        let base = invoke_base.clone();
        tasks.spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                ticker.tick().await;
                let event = scheduled_event_now(&s.rule_name);
                match invoke(&http, &base, &s.function, &event, s.invoke_timeout).await {
                    Ok(r) if r.succeeded() => {
                        println!("[schedule] {} -> {}: ok", s.rule_name, s.function)
                    }
                    Ok(r) => println!(
                        "[schedule] {} -> {}: failed (HTTP {}, {})",
                        s.rule_name,
                        s.function,
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ),
                    Err(e) => println!("[schedule] {} -> {}: {e:#}", s.rule_name, s.function),
                }
            }
        });
    }
    Ok(())
}

async fn poll_forever(
    sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
    invoke_base: String,
    m: SqsMapping,
) {
    loop {
        if let Err(e) = poll_once(&sqs, &http, &invoke_base, &m).await {
            println!("[esm] {} -> {}: {e:#}", m.queue_id, m.function);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Receives one batch (waiting up to the batching window to fill it) and delivers it.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    http: &reqwest::Client,
    invoke_base: &str,
    m: &SqsMapping,
) -> Result<()> {
    let mut batch: Vec<ReceivedMessage> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let want = m
            .batch_size
            .saturating_sub(u32::try_from(batch.len()).unwrap_or(u32::MAX));
        let wait_secs = match deadline {
            None => 2,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                i32::try_from(left.as_secs().min(2)).unwrap_or(2)
            }
        };
        let received = receive(sqs, &m.queue.url, want, wait_secs).await?;
        note_receive(&m.function, &received);
        let received = redrive_exhausted(sqs, m, received).await?;
        if !received.is_empty() && deadline.is_none() {
            deadline = Some(Instant::now() + m.window);
        }
        batch.extend(received);
        let full = batch.len() >= usize::try_from(m.batch_size).unwrap_or(usize::MAX);
        match deadline {
            Some(d) if full || Instant::now() >= d => break,
            None => return Ok(()),
            Some(_) => {}
        }
    }
    deliver(sqs, http, invoke_base, m, batch).await
}

/// One `ReceiveMessage` of up to `max` messages (1 to 10), waiting up to `wait_secs`.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: u32,
    wait_secs: i32,
) -> Result<Vec<ReceivedMessage>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(i32::try_from(max.clamp(1, MAX_RECEIVE)).unwrap_or(10))
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    Ok(out.messages().iter().map(from_sdk).collect())
}

fn from_sdk(m: &aws_sdk_sqs::types::Message) -> ReceivedMessage {
    ReceivedMessage {
        message_id: m.message_id().unwrap_or_default().to_string(),
        receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
        body: m.body().unwrap_or_default().to_string(),
        md5_of_body: m.md5_of_body().unwrap_or_default().to_string(),
        attributes: m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        message_attributes: m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            MessageAttribute {
                                data_type: v.data_type().to_string(),
                                string_value: v.string_value().map(str::to_string),
                                binary_value: v.binary_value().map(|b| b.as_ref().to_vec()),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Moves messages received more often than `maxReceiveCount` to the dead-letter queue, as SQS does,
/// in case the local server does not enforce the redrive policy itself. Returns the rest.
async fn redrive_exhausted(
    sqs: &aws_sdk_sqs::Client,
    m: &SqsMapping,
    received: Vec<ReceivedMessage>,
) -> Result<Vec<ReceivedMessage>> {
    let Some((max, dlq)) = &m.redrive else {
        return Ok(received);
    };
    let mut keep = Vec::with_capacity(received.len());
    for msg in received {
        if msg.receive_count() <= *max {
            keep.push(msg);
            continue;
        }
        let mut send = sqs
            .send_message()
            .queue_url(&dlq.url)
            .message_body(&msg.body);
        for (k, a) in &msg.message_attributes {
            let mut v =
                aws_sdk_sqs::types::MessageAttributeValue::builder().data_type(&a.data_type);
            if let Some(s) = &a.string_value {
                v = v.string_value(s);
            }
            if let Some(b) = &a.binary_value {
                v = v.binary_value(aws_sdk_sqs::primitives::Blob::new(b.clone()));
            }
            send = send.message_attributes(k, v.build()?);
        }
        send.send()
            .await
            .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        delete(sqs, &m.queue.url, &msg.receipt_handle).await?;
        println!(
            "[esm] {}: message {} received {} times (max {max}) -> moved to {}",
            m.queue_id,
            msg.message_id,
            msg.receive_count(),
            dlq.name
        );
    }
    Ok(keep)
}

/// Deletes one received message.
pub async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, receipt_handle: &str) -> Result<()> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(receipt_handle)
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    Ok(())
}

async fn deliver(
    sqs: &aws_sdk_sqs::Client,
    http: &reqwest::Client,
    invoke_base: &str,
    m: &SqsMapping,
    batch: Vec<ReceivedMessage>,
) -> Result<()> {
    let event = events::sqs_event(&batch, &m.queue.arn, LOCAL_REGION);
    let ids: BTreeSet<String> = batch.iter().map(|b| b.message_id.clone()).collect();
    let started = Instant::now();
    let first = invoke(http, invoke_base, &m.function, &event, m.invoke_timeout);
    let invoked = if duplicate_delivery() {
        // Chaos: SQS is at-least-once; this delivery's twin runs at the same time. The first
        // delivery's answer decides what is deleted.
        let twin = invoke(http, invoke_base, &m.function, &event, m.invoke_timeout);
        let (first, twin) = tokio::join!(first, twin);
        if let Err(e) = twin {
            println!(
                "[esm] {} -> {}: duplicate delivery failed: {e:#}",
                m.queue_id, m.function
            );
        }
        first
    } else {
        first.await
    };
    note(&m.function, |u| {
        u.invocations += if duplicate_delivery() { 2 } else { 1 };
        u.invoke_ms += started.elapsed().as_secs_f64() * 1000.0;
    });
    let outcome = match invoked {
        Err(e) => BatchOutcome::AllFailed(format!("{e:#}")),
        Ok(r) if !r.succeeded() => BatchOutcome::AllFailed(format!(
            "HTTP {} {}: {}",
            r.status,
            r.function_error.unwrap_or_default(),
            String::from_utf8_lossy(&r.body)
        )),
        Ok(r) => events::batch_outcome(&r.body, &ids, m.report_batch_item_failures),
    };
    let failed: BTreeSet<String> = match &outcome {
        BatchOutcome::AllSucceeded => BTreeSet::new(),
        BatchOutcome::PartiallyFailed(f) => f.clone(),
        BatchOutcome::AllFailed(_) => ids.clone(),
    };
    let handles: BTreeMap<&str, &str> = batch
        .iter()
        .map(|b| (b.message_id.as_str(), b.receipt_handle.as_str()))
        .collect();
    let mut deleted = 0u64;
    for (id, handle) in &handles {
        if !failed.contains(*id) {
            delete(sqs, &m.queue.url, handle).await?;
            deleted += 1;
        }
    }
    // Lambda deletes a batch's successes with DeleteMessageBatch, 10 entries a call.
    note(&m.function, |u| {
        u.deleted += deleted;
        u.delete_batches += deleted.div_ceil(10);
    });
    if matches!(outcome, BatchOutcome::AllFailed(_)) {
        note(&m.function, |u| u.failed_batches += 1);
    }
    match outcome {
        BatchOutcome::AllFailed(why) => println!(
            "[esm] {} -> {}: batch of {} failed, retried after the visibility timeout: {why}",
            m.queue_id,
            m.function,
            batch.len()
        ),
        _ => println!(
            "[esm] {} -> {}: {} delivered, {} failed",
            m.queue_id,
            m.function,
            batch.len() - failed.len(),
            failed.len()
        ),
    }
    Ok(())
}

/// What the event-source mapping did for one function since [`reset_usage`] (`cargo xtask cost`
/// counts these: in AWS the mapping's poller makes the same SQS requests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EsmUsage {
    /// Invocations made (each delivery of a batch).
    pub invocations: u64,
    /// Wall time of those invocations, summed, in milliseconds.
    pub invoke_ms: f64,
    /// ReceiveMessage calls that returned messages, and their billed requests (64 KiB chunks).
    pub receives: u64,
    pub receive_billed: u64,
    /// ReceiveMessage calls that returned nothing (long polls of an idle queue: a fixed cost).
    pub empty_receives: u64,
    /// Messages received.
    pub received: u64,
    /// Messages deleted after success, and the DeleteMessageBatch calls Lambda makes for them.
    pub deleted: u64,
    pub delete_batches: u64,
    /// Batches that failed as a whole (redelivered after the visibility timeout).
    pub failed_batches: u64,
}

static USAGE: std::sync::Mutex<BTreeMap<String, EsmUsage>> = std::sync::Mutex::new(BTreeMap::new());

fn note(function: &str, f: impl FnOnce(&mut EsmUsage)) {
    if let Ok(mut usage) = USAGE.lock() {
        f(usage.entry(function.to_string()).or_default());
    }
}

fn note_receive(function: &str, received: &[ReceivedMessage]) {
    let payload: usize = received
        .iter()
        .map(|m| {
            m.body.len()
                + m.message_attributes
                    .iter()
                    .map(|(k, a)| {
                        k.len()
                            + a.data_type.len()
                            + a.string_value.as_ref().map_or(0, String::len)
                            + a.binary_value.as_ref().map_or(0, Vec::len)
                    })
                    .sum::<usize>()
        })
        .sum();
    note(function, |u| {
        if received.is_empty() {
            u.empty_receives += 1;
        } else {
            u.receives += 1;
            u.receive_billed += crate::cost::count::sqs_billed_requests(payload);
            u.received += received.len() as u64;
        }
    });
}

/// The event-source mapping's usage per function since the last [`reset_usage`].
pub fn usage() -> BTreeMap<String, EsmUsage> {
    USAGE.lock().map(|u| u.clone()).unwrap_or_default()
}

/// Starts counting from zero.
pub fn reset_usage() {
    if let Ok(mut usage) = USAGE.lock() {
        usage.clear();
    }
}

/// Chaos mode (`cargo xtask chaos`): every batch is delivered twice.
static DUPLICATE_DELIVERY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Turns the duplicate-delivery mode on or off for every mapping of this process.
pub fn set_duplicate_delivery(on: bool) {
    DUPLICATE_DELIVERY.store(on, std::sync::atomic::Ordering::SeqCst);
}

fn duplicate_delivery() -> bool {
    DUPLICATE_DELIVERY.load(std::sync::atomic::Ordering::SeqCst)
}

/// The queue's attributes, for display.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64)> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let get = |k: QueueAttributeName| {
        out.attributes()
            .and_then(|a| a.get(&k))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lambdas_largest_batches_without_cutting_them_to_one_receive() {
        let template = Template::parse(
            r#"
Resources:
  Bulk:
    Type: AWS::SQS::Queue
  Worker:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: worker } }
    Properties:
      Timeout: 60
      Events:
        Bulk:
          Type: SQS
          Properties:
            Queue: !GetAtt Bulk.Arn
            BatchSize: 10000
            MaximumBatchingWindowInSeconds: 300
"#,
        )
        .unwrap();
        let mut stack = StackInfo::default();
        stack.queues.insert(
            "Bulk".into(),
            QueueInfo {
                url: "http://127.0.0.1:1/123456789012/Bulk".into(),
                arn: "arn:aws:sqs:us-east-1:123456789012:Bulk".into(),
                name: "Bulk".into(),
            },
        );
        let mappings = sqs_mappings(&template, &stack).unwrap();
        assert_eq!(mappings.len(), 1);
        assert_eq!(mappings[0].function, "worker");
        assert_eq!(mappings[0].batch_size, 10_000);
        assert_eq!(mappings[0].window, Duration::from_secs(300));
        assert_eq!(mappings[0].invoke_timeout, Duration::from_secs(70));
    }
}
