//! `cargo xtask optimizer ...`: operate the hourly optimizer of a running `cargo xtask dev` stack.
//!
//! - `revert CAMPAIGN [--entity ID] [--force]`: restores the campaign's entity to its bid before the last
//!   change; `--force` does so even when the platform's bid was changed since (by hand).
//! - `run [--time RFC3339]`: runs the optimizer now, for the hour of `--time` (default now).
//!
//! Both accept `--invoke-url URL` (default `http://127.0.0.1:9000`) and print the run's report.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::esm;

/// Arguments of `cargo xtask optimizer`.
#[derive(Debug, Clone, clap::Args)]
pub struct OptimizerArgs {
    #[command(subcommand)]
    pub action: Action,
    /// The invoke API of `cargo xtask dev`
    #[arg(long, global = true, value_name = "URL", default_value_t = default_invoke_url())]
    pub invoke_url: String,
}

/// What to ask the optimizer.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Restore a campaign's entity to its bid before the last change, and journal it
    Revert {
        /// The campaign's name, e.g. brand-search
        #[arg(value_name = "CAMPAIGN")]
        campaign: String,
        /// The entity (ad group, ad set) whose bid to restore
        #[arg(long, value_name = "ID")]
        entity: Option<String>,
        /// Revert even when the platform's bid was changed since (by hand)
        #[arg(long)]
        force: bool,
    },
    /// Run the optimizer now, for the hour of --time (default now)
    Run {
        /// The run's time, RFC 3339, e.g. 2026-11-27T20:00:00Z
        #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
        time: Option<String>,
    },
}

fn default_invoke_url() -> String {
    format!("http://127.0.0.1:{}", crate::local::DEFAULT_API_PORT)
}

/// Checks `--time`: RFC 3339, kept as given.
fn rfc3339(value: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|_| value.to_string())
        .map_err(|e| format!("not RFC 3339: {e}"))
}

/// A parsed `optimizer` command line: the payload and where to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub payload: Value,
    pub invoke_url: String,
}

/// The payload the optimizer's handler takes for `args`.
pub fn request(args: OptimizerArgs) -> Request {
    let payload = match args.action {
        Action::Revert {
            campaign,
            entity,
            force,
        } => {
            let mut p = json!({"action": "revert", "campaign": campaign});
            if let Some(e) = entity {
                p["entity"] = json!(e);
            }
            if force {
                p["force"] = json!(true);
            }
            p
        }
        Action::Run { time } => {
            let mut p = json!({"action": "run"});
            if let Some(t) = time {
                p["time"] = json!(t);
            }
            p
        }
    };
    Request {
        payload,
        invoke_url: args.invoke_url,
    }
}

/// Runs `cargo xtask optimizer ...`.
pub async fn run(args: OptimizerArgs) -> Result<()> {
    let request = request(args);
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
    use clap::Parser;

    /// `cargo xtask optimizer` alone, to parse its arguments as the CLI does.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: OptimizerArgs,
    }

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("optimizer")
            .chain(list.iter().copied())
            .map(str::to_string)
            .collect()
    }

    fn parse(args: &[String]) -> Result<Request, clap::Error> {
        Cli::try_parse_from(args).map(|cli| request(cli.args))
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
        assert!(parse(&args(&["run"])).is_ok_and(|r| r.payload.get("force").is_none()));
        // --force means nothing to a run: refused, as every unknown option is.
        assert!(parse(&args(&["run", "--force"])).is_err());
    }

    #[test]
    fn revert_needs_a_campaign() {
        assert!(parse(&args(&["revert"])).is_err());
        assert!(parse(&args(&["explode"])).is_err());
    }
}
