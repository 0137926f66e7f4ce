//! `cargo xtask optimizer ...`: operate the hourly optimizer of a running `cargo xtask dev` stack.
//!
//! - `revert CAMPAIGN [--entity ID] [--force]`: restores the campaign's entity to its bid before the last
//!   change; `--force` does so even when the platform's bid was changed since (by hand).
//! - `run [--time RFC3339]`: runs the optimizer now, for the hour of `--time` (default now).
//!
//! Both accept `--invoke-url URL` (default `http://127.0.0.1:9000`) and print the run's report.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::esm;

/// Usage of the subcommand.
pub const USAGE: &str = "\
usage: cargo xtask optimizer revert CAMPAIGN [--entity ID] [--force] [--invoke-url URL]
       cargo xtask optimizer run [--time RFC3339] [--invoke-url URL]";

/// A parsed `optimizer` command line: the payload and where to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub payload: Value,
    pub invoke_url: String,
}

/// Parses `revert ...` / `run ...`.
pub fn parse(args: &[String]) -> Result<Request> {
    let (action, rest) = args.split_first().ok_or_else(|| anyhow!("{USAGE}"))?;
    let mut invoke_url = format!("http://127.0.0.1:{}", crate::local::DEFAULT_API_PORT);
    let mut campaign = None;
    let mut entity = None;
    let mut time = None;
    let mut force = false;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{flag} needs a value"))
        };
        match a.as_str() {
            "--invoke-url" => invoke_url = value(a)?,
            "--entity" => entity = Some(value(a)?),
            "--time" => time = Some(value(a)?),
            "--force" => force = true,
            f if !f.starts_with('-') && campaign.is_none() => campaign = Some(f.to_string()),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let payload = match action.as_str() {
        "revert" => {
            let campaign =
                campaign.ok_or_else(|| anyhow!("revert needs the campaign's name\n{USAGE}"))?;
            let mut p = json!({"action": "revert", "campaign": campaign});
            if let Some(e) = entity {
                p["entity"] = json!(e);
            }
            if force {
                p["force"] = json!(true);
            }
            p
        }
        "run" => {
            let mut p = json!({"action": "run"});
            if let Some(t) = time {
                chrono::DateTime::parse_from_rfc3339(&t)
                    .with_context(|| format!("--time {t}: not RFC 3339"))?;
                p["time"] = json!(t);
            }
            p
        }
        other => bail!("unknown optimizer command {other}\n{USAGE}"),
    };
    Ok(Request {
        payload,
        invoke_url,
    })
}

/// Runs `cargo xtask optimizer ...`.
pub async fn run(args: &[String]) -> Result<()> {
    let request = parse(args)?;
    let http = reqwest::Client::new();
    let invocation = esm::invoke(
        &http,
        &request.invoke_url,
        "hourly-optimizer",
        &request.payload,
        Duration::from_secs(310),
    )
    .await
    .with_context(|| {
        format!(
            "is `cargo xtask dev` running with its invoke API on {}?",
            request.invoke_url
        )
    })?;
    let body: Value = serde_json::from_slice(&invocation.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&invocation.body)));
    if !invocation.succeeded() {
        bail!(
            "hourly-optimizer failed: HTTP {} {}",
            invocation.status,
            body
        );
    }
    crate::demo_optimizer::print_outcomes(&body);
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn revert_builds_the_documented_payload() {
        let r = parse(&args(&["revert", "brand-search", "--entity", "555"])).unwrap();
        assert_eq!(
            r.payload,
            json!({"action": "revert", "campaign": "brand-search", "entity": "555"})
        );
        assert!(r.invoke_url.starts_with("http://127.0.0.1:"));
    }

    #[test]
    fn run_checks_the_time() {
        assert!(parse(&args(&["run", "--time", "yesterday"])).is_err());
        let r = parse(&args(&[
            "run",
            "--time",
            "2026-11-27T20:00:00Z",
            "--invoke-url",
            "http://x",
        ]))
        .unwrap();
        assert_eq!(r.payload["time"], "2026-11-27T20:00:00Z");
        assert_eq!(r.invoke_url, "http://x");
    }

    #[test]
    fn revert_force_is_sent_in_the_payload() {
        let r = parse(&args(&["revert", "brand-search", "--force"])).unwrap();
        assert_eq!(
            r.payload,
            json!({"action": "revert", "campaign": "brand-search", "force": true})
        );
        assert!(parse(&args(&["run", "--force"])).is_ok_and(|r| r.payload.get("force").is_none()));
    }

    #[test]
    fn revert_needs_a_campaign() {
        assert!(parse(&args(&["revert"])).is_err());
        assert!(parse(&args(&["explode"])).is_err());
    }
}
