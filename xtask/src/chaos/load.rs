//! Load: `oha` (crates.io, installed by xtask into `.fluxo/tools` at a pinned version) posts a mix of
//! valid, duplicate and invalid leads at the receiver; its JSON summary gives rps, p50/p99 and statuses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{paths, proc};

/// The pinned oha version.
pub const OHA_VERSION: &str = "1.16.0";

/// `.fluxo/tools/bin/oha`, installed with `cargo install --locked` the first time it is needed.
pub async fn ensure_oha() -> Result<PathBuf> {
    crate::tools::cargo_tool("oha", OHA_VERSION, &["--version"]).await
}

/// What the load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub concurrency: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// The valid leads' emails in the body file (each may be sent several times).
    pub valid_emails: Vec<String>,
}

impl LoadReport {
    pub fn count_5xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The body lines: `unique` valid leads, each of the first tenth also repeated (duplicates, the same
/// content without an idempotency key: the receiver's window makes them one lead), and invalid ones.
fn body_lines(run: &str, unique: usize) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut emails = Vec::new();
    for i in 0..unique {
        let email = format!("load-{run}-{i}@exemplo.com");
        let line = serde_json::json!({"nome": format!("Load {i}"), "email": email, "interesse": "Software A"}).to_string();
        if i < unique / 10 {
            for _ in 0..3 {
                lines.push(line.clone());
            }
        }
        lines.push(line);
        emails.push(email);
    }
    for i in 0..unique / 5 {
        lines.push(
            serde_json::json!({"nome": format!("Bad {i}"), "email": format!("not-an-email-{i}")})
                .to_string(),
        );
    }
    (lines, emails)
}

/// Runs oha: `requests` POSTs at `concurrency`, each with a random line of the body file.
pub async fn run(api: &str, run: &str, requests: u64, concurrency: u64) -> Result<LoadReport> {
    let oha = ensure_oha().await?;
    let (lines, emails) = body_lines(run, (requests as usize / 3).max(10));
    let dir = paths::state_dir().join("chaos");
    std::fs::create_dir_all(&dir)?;
    let body = dir.join(format!("load-{run}.jsonl"));
    std::fs::write(&body, lines.join("\n"))?;
    let out = dir.join(format!("oha-{run}.json"));
    println!(
        "▶ oha: {requests} requests at concurrency {concurrency} ({} valid leads, duplicates and invalid ones mixed)",
        emails.len()
    );
    proc::run(
        "oha",
        proc::command(&oha, &paths::root())
            .args([
                "--no-tui",
                "--output-format",
                "json",
                "-m",
                "POST",
                "-T",
                "application/json",
            ])
            .args(["-n", &requests.to_string(), "-c", &concurrency.to_string()])
            .args(["-t", "60s"])
            .arg("-Z")
            .arg(&body)
            .arg("-o")
            .arg(&out)
            .arg(format!("{api}/leads")),
    )
    .await?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("oha's JSON output")?;
    let map = |key: &str| -> BTreeMap<String, u64> {
        v.get(key)
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pct = |p: &str| {
        v.pointer(&format!("/latencyPercentiles/{p}"))
            .and_then(|x| x.as_f64())
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    let report = LoadReport {
        requests,
        concurrency,
        rps: v
            .pointer("/summary/requestsPerSec")
            .and_then(|x| x.as_f64())
            .unwrap_or(0.0),
        p50_ms: pct("p50"),
        p99_ms: pct("p99"),
        statuses: map("statusCodeDistribution"),
        errors: map("errorDistribution"),
        valid_emails: emails,
    };
    if report.statuses.is_empty() {
        bail!("oha got no answer at all: {:?}", report.errors);
    }
    Ok(report)
}
