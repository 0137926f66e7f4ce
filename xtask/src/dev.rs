//! `cargo xtask dev`: the local stack in the foreground until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::local::{self, PortChoice, StackOptions};
use crate::venv;

/// Options of `cargo xtask dev`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DevOptions {
    /// The Fluxo config pushed to the local config bucket (default config/examples/demo.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// moto's port (default 4566)
    #[arg(long, value_name = "N")]
    pub moto_port: Option<u16>,
    /// The API's and the invoke API's port (default 9000)
    #[arg(long, value_name = "N")]
    pub api_port: Option<u16>,
    /// Run the template's schedules (the optimizer hourly)
    #[arg(long = "schedule")]
    pub schedules: bool,
    /// Override a template parameter, e.g. --param DefaultCountry=BR (repeatable)
    #[arg(long = "param", value_name = "Name=Value", value_parser = parse_param)]
    pub parameters: Vec<(String, String)>,
}

/// Parses `--param Name=Value`.
fn parse_param(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "--param takes Name=Value".to_string())
}

/// Runs the stack until Ctrl-C (or until moto or watch dies).
pub async fn run(opts: DevOptions) -> Result<()> {
    venv::ensure(&[venv::TOOLS])?;
    let mut stack = local::start(StackOptions {
        moto_port: PortChoice::Exactly(opts.moto_port.unwrap_or(local::DEFAULT_MOTO_PORT)),
        api_port: PortChoice::Exactly(opts.api_port.unwrap_or(local::DEFAULT_API_PORT)),
        config: Some(opts.config.unwrap_or_else(local::demo_config)),
        parameters: opts.parameters.into_iter().collect(),
        reload: true,
        schedules: opts.schedules,
        event_sources: true,
        show_output: true,
        label: "dev".into(),
        extra_env: Default::default(),
        instances: 1,
    })
    .await?;
    stack.print_urls();
    println!();
    println!(
        "  Try: curl -si -X POST {}/leads -H 'content-type: application/json' \\",
        stack.api_url
    );
    println!("         -d '{{\"nome\": \"João\", \"email\": \"joao@exemplo.com\"}}'");
    println!("  Ctrl-C stops everything.");
    let outcome = loop {
        tokio::select! {
            _ = crate::shutdown_signal() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Err(e) = stack.check_alive() {
                    break Err(e);
                }
            }
        }
    };
    stack.stop().await;
    outcome
}
