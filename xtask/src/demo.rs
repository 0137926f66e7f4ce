//! `cargo xtask demo`: starts the local stack, runs the demo steps against it over HTTP, shows what happened, stops everything.
//!
//! A step is an async function over [`DemoContext`]. Later flows add theirs (e.g. `demo_router.rs`,
//! `demo_optimizer.rs`) and list them in [`steps`].

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;

use crate::local::{self, PortChoice, RunningStack, StackOptions};
use crate::{paths, venv};

/// What the steps share: the running stack, an HTTP client and what earlier steps found.
pub struct DemoContext<'a> {
    pub stack: &'a mut RunningStack,
    pub http: reqwest::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// Lead ids the receiver accepted, in order.
    pub accepted: Vec<String>,
}

/// A demo step's future.
pub type StepFuture<'c> = Pin<Box<dyn Future<Output = Result<()>> + 'c>>;

/// A demo step: a title and what it does.
pub struct Step {
    pub title: &'static str,
    pub run: for<'c, 'a> fn(&'c mut DemoContext<'a>) -> StepFuture<'c>,
}

/// The demo's steps, in order. The event-source mapping is off until a step starts it
/// (`ctx.stack.start_event_sources()`), so the first steps can show the queues as the receiver left them.
pub fn steps() -> Vec<Step> {
    vec![
        crate::demo_sources::step(),
        Step {
            title: "Post sample leads to the webhook receiver",
            run: |ctx| Box::pin(post_sample_leads(ctx)),
        },
        Step {
            title: "What was stored (DynamoDB leads table)",
            run: |ctx| Box::pin(show_stored(ctx)),
        },
        Step {
            title: "What was queued (SQS leads queue)",
            run: |ctx| Box::pin(show_queued(ctx)),
        },
        crate::demo_router::step(),
        crate::demo_email::step(),
        crate::demo_audience::step(),
        crate::demo_optimizer::step(),
        crate::demo_reports::step(),
    ]
}

/// Arguments of `cargo xtask demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {
    /// The Fluxo config pushed to the local config bucket (default config/examples/demo.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs the demo. Succeeds only if every step's checks pass.
pub async fn run(config: Option<PathBuf>) -> Result<()> {
    println!(
        "Fluxo demo: a website form posts leads; they are validated, stored durably and queued."
    );
    println!(
        "The first run installs the local tools and compiles the workspace: allow 5-10 minutes.\n"
    );
    venv::ensure(&[venv::TOOLS])?;
    let mut stack = local::start(StackOptions {
        moto_port: PortChoice::Prefer(local::DEFAULT_MOTO_PORT),
        api_port: PortChoice::Prefer(local::DEFAULT_API_PORT),
        config: Some(config.unwrap_or_else(local::demo_config)),
        parameters: Default::default(),
        reload: false,
        schedules: false,
        event_sources: false,
        show_output: false,
        label: "demo".into(),
        extra_env: Default::default(),
        instances: 1,
    })
    .await?;
    let outcome = async {
        crate::demo_sources::put_secrets(&stack.sdk).await?;
        stack.warm_up().await?;
        stack.print_urls();
        run_steps(&mut stack).await
    }
    .await;
    stack.stop().await;
    match &outcome {
        Ok(()) => println!(
            "\n✓ Demo passed: every step's checks held (leads from a signed lead ad and two forms stored, routed, enrolled and synced in dry-run; the invalid lead rejected; one optimizer pass; the reports)."
        ),
        Err(_) => println!("\n✗ Demo failed (logs are in .fluxo/logs/)."),
    }
    outcome
}

async fn run_steps(stack: &mut RunningStack) -> Result<()> {
    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let mut ctx = DemoContext {
        stack,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        ddb,
        sqs,
        accepted: Vec::new(),
    };
    for (i, step) in steps().iter().enumerate() {
        println!("\n━━ Step {}: {}", i + 1, step.title);
        (step.run)(&mut ctx)
            .await
            .with_context(|| format!("step {}: {}", i + 1, step.title))?;
    }
    Ok(())
}

/// One sample request.
struct Sample {
    label: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: String,
    expect: u16,
}

async fn post_sample_leads(ctx: &mut DemoContext<'_>) -> Result<()> {
    let article = std::fs::read_to_string(paths::fixtures().join("seed-webhook-lead.json"))
        .context("cannot read xtask/fixtures/seed-webhook-lead.json")?;
    let form = [
        ("nome", "Maria  Souza"),
        ("e-mail", "Maria.Souza@Exemplo.com.br"),
        ("empresa", "Padaria Pão Quente"),
        ("telefone", "+55 11 98765-4321"),
        ("origem", "Landing page"),
        ("interesse", "Software B"),
        ("utm_source", "google"),
        ("utm_campaign", "inverno"),
    ];
    let form = form_body(&form);
    let samples = [
        Sample {
            label: "the article's payload (JSON)",
            path: "/leads",
            content_type: "application/json",
            body: article.trim().to_string(),
            expect: 202,
        },
        Sample {
            label: "a website form (urlencoded, Portuguese field names)",
            path: "/leads/site",
            content_type: "application/x-www-form-urlencoded",
            body: form,
            expect: 202,
        },
        Sample {
            label: "an invalid lead (bad email)",
            path: "/leads",
            content_type: "application/json",
            body: r#"{"nome": "Sem Email", "email": "isto-nao-e-um-email"}"#.to_string(),
            expect: 400,
        },
    ];
    let mut problems = Vec::new();
    for s in &samples {
        println!("\n→ POST {} — {}", s.path, s.label);
        println!("  {}", s.body);
        let response = ctx
            .http
            .post(format!("{}{}", ctx.stack.api_url, s.path))
            .header("content-type", s.content_type)
            .header("accept", "application/json")
            .body(s.body.clone())
            .send()
            .await
            .with_context(|| format!("POST {}", s.path))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        println!("← {status} {body}");
        if status != s.expect {
            problems.push(format!("{}: expected {}, got {status}", s.label, s.expect));
            continue;
        }
        if status == 202 {
            let lead_id = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("lead_id").and_then(Value::as_str).map(str::to_string));
            match lead_id {
                Some(id) => ctx.accepted.push(id),
                None => problems.push(format!("{}: 202 without a lead_id", s.label)),
            }
        } else {
            let fields = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("fields").cloned());
            println!(
                "  rejected because: {}",
                fields.map(|f| f.to_string()).unwrap_or(body)
            );
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    println!(
        "\n  ✓ 2 accepted (202) with lead ids {:?}, 1 rejected (400)",
        ctx.accepted
    );
    Ok(())
}

async fn show_stored(ctx: &mut DemoContext<'_>) -> Result<()> {
    let table = ctx.stack.info.table("LeadsTable")?;
    let out = ctx
        .ddb
        .scan()
        .table_name(table)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    let mut stored = BTreeSet::new();
    for item in out.items() {
        let Some(AttributeValue::S(lead_id)) = item.get("lead_id") else {
            continue;
        };
        let status = match item.get("status") {
            Some(AttributeValue::S(s)) => s.as_str(),
            _ => "?",
        };
        let envelope = match item.get("envelope") {
            Some(AttributeValue::S(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        println!(
            "  lead {lead_id}  status={status}  email={}  name={}  source={}  interest={}",
            find_str(&envelope, "email")
                .map(|e| mask_email(&e))
                .unwrap_or_else(|| "-".into()),
            find_str(&envelope, "name").unwrap_or_else(|| "-".into()),
            find_str(&envelope, "source").unwrap_or_else(|| "-".into()),
            find_str(&envelope, "interest").unwrap_or_else(|| "-".into()),
        );
        stored.insert(lead_id.clone());
    }
    let expected: BTreeSet<String> = ctx.accepted.iter().cloned().collect();
    if stored != expected {
        bail!("expected the stored leads {expected:?}, found {stored:?}");
    }
    println!("  ✓ {} leads stored in table {table}", stored.len());
    Ok(())
}

async fn show_queued(ctx: &mut DemoContext<'_>) -> Result<()> {
    let queue = ctx.stack.info.queue("LeadsQueue")?;
    // Peek: VisibilityTimeout 0 leaves every message on the queue.
    let mut seen = BTreeSet::new();
    let mut lead_ids = BTreeSet::new();
    let expected: BTreeSet<String> = ctx.accepted.iter().cloned().collect();
    for _ in 0..3 {
        if lead_ids == expected {
            break;
        }
        let out = ctx
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        for m in out.messages() {
            let id = m.message_id().unwrap_or_default().to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let body: Value =
                serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
            let lead_id = body
                .get("lead_id")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string();
            println!(
                "  message {id}  kind={}  version={}  lead_id={lead_id}",
                body.get("kind").and_then(Value::as_str).unwrap_or("-"),
                body.get("version")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "-".into()),
            );
            lead_ids.insert(lead_id);
        }
    }
    if seen.len() != expected.len() || lead_ids != expected {
        bail!(
            "expected {} messages for leads {expected:?}, found {} for {lead_ids:?}",
            expected.len(),
            seen.len()
        );
    }
    println!("  ✓ {} messages on {}", seen.len(), queue.name);
    Ok(())
}

/// The first string value under `key`, searched depth first.
fn find_str(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(map) => {
            if let Some(s) = map.get(key).and_then(Value::as_str) {
                return Some(s.to_string());
            }
            map.values().find_map(|child| find_str(child, key))
        }
        Value::Array(items) => items.iter().find_map(|child| find_str(child, key)),
        _ => None,
    }
}

/// `joao@exemplo.com` -> `j***@exemplo.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_first_letter_of_an_email() {
        assert_eq!(mask_email("joao@exemplo.com"), "j***@exemplo.com");
        assert_eq!(mask_email("ñandu@exemplo.com"), "ñ***@exemplo.com");
        assert_eq!(mask_email("nonsense"), "***");
    }

    #[test]
    fn urlencodes_form_values() {
        assert_eq!(
            form_body(&[("empresa", "Pão Quente+1"), ("e-mail", "a@b.c")]),
            "empresa=P%C3%A3o+Quente%2B1&e-mail=a%40b.c"
        );
    }

    #[test]
    fn finds_nested_fields() {
        let v = serde_json::json!({"lead": {"contact": {"email": "a@b.c"}}});
        assert_eq!(find_str(&v, "email").as_deref(), Some("a@b.c"));
    }
}
