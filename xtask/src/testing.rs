//! `cargo xtask test`: formatting, lints, the three template checks, unit tests, then integration tests against a fresh local stack.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::local::{self, PortChoice, StackOptions};
use crate::stack::{ENV_API_URL, ENV_AWS_ENDPOINT, ENV_INVOKE_URL, ENV_STACK};
use crate::{paths, proc, venv};

/// The integration-test package.
const IT_PACKAGE: &str = "fluxo-tests";

/// Arguments of `cargo xtask test`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TestArgs {
    /// The Fluxo config of the integration tests' stack (default tests/e2e/fluxo.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs every check in order and stops at the first failure.
pub async fn run(config: Option<PathBuf>) -> Result<()> {
    let root = paths::root();
    let config = config.or_else(|| {
        let default = root.join("tests").join("e2e").join("fluxo.toml");
        default.exists().then_some(default)
    });
    let total = 10;
    let header = |n: usize, what: &str| println!("\n════ [{n}/{total}] {what}");

    header(1, "Python tools");
    venv::ensure(&[venv::TOOLS, venv::SAM, venv::CHECKOV])?;

    header(2, "cargo fmt --all -- --check");
    proc::run(
        "cargo fmt",
        proc::command("cargo", &root).args(["fmt", "--all", "--", "--check"]),
    )
    .await?;

    header(3, "cargo clippy --workspace --all-targets -- -D warnings");
    proc::run(
        "cargo clippy",
        proc::command("cargo", &root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )
    .await?;

    header(4, "cfn-lint infra/template.yaml");
    proc::run(
        "cfn-lint",
        proc::command(venv::TOOLS.bin("cfn-lint"), &root).arg("infra/template.yaml"),
    )
    .await?;
    println!("  ✓ cfn-lint: no errors");

    header(5, "sam validate --lint");
    proc::run(
        "sam validate",
        proc::command(venv::SAM.bin("sam"), &root)
            .args([
                "validate",
                "--lint",
                "--template-file",
                "infra/template.yaml",
            ])
            .env("SAM_CLI_TELEMETRY", "0")
            .env("AWS_DEFAULT_REGION", "us-east-1"),
    )
    .await?;

    header(
        6,
        "checkov (suppressions only in the template, each with its reason)",
    );
    proc::run(
        "checkov",
        proc::command(venv::CHECKOV.bin("checkov"), &root).args([
            "--file",
            "infra/template.yaml",
            "--framework",
            "cloudformation",
            "--compact",
            "--quiet",
            "--skip-download",
        ]),
    )
    .await?;
    println!("  ✓ checkov: no failed checks");

    header(
        7,
        "offline deploy rehearsal: the transformed template on moto's CloudFormation; sam build",
    );
    crate::rehearsal::cfn_on_moto().await?;
    println!(
        "\n▶ sam build --beta-features (cargo-lambda, SAM_BUILD_MODE=debug), then cfn-lint on the built template"
    );
    crate::rehearsal::sam_build().await?;

    header(
        8,
        &format!("unit tests: cargo test --workspace --exclude {IT_PACKAGE}"),
    );
    proc::run(
        "cargo test",
        proc::command("cargo", &root).args(["test", "--workspace", "--exclude", IT_PACKAGE]),
    )
    .await?;

    header(
        9,
        &format!("integration tests ({IT_PACKAGE}) against a local stack"),
    );
    let binaries = build_integration_tests(&root).await?;
    let mut stack = local::start(StackOptions {
        moto_port: PortChoice::Any,
        api_port: PortChoice::Any,
        config,
        parameters: Default::default(),
        reload: false,
        schedules: false,
        event_sources: true,
        show_output: false,
        label: "test".into(),
        // tests/e2e/fluxo.toml names the CRM token by `env = "CRM_TOKEN"`; the wiremock CRM expects this value.
        extra_env: [("CRM_TOKEN".to_string(), "e2e-token".to_string())].into(),
        instances: 1,
    })
    .await?;
    let outcome = async {
        stack.warm_up().await?;
        stack.print_urls();
        for binary in &binaries {
            // Run the built test binary directly: `cargo test` would hold the build lock that
            // `cargo lambda watch` needs to (re)start a function.
            println!("\n▶ {}", binary.display());
            proc::run(
                "integration tests",
                proc::command(binary, &root.join("tests"))
                    .env(ENV_AWS_ENDPOINT, &stack.moto_url)
                    .env(ENV_API_URL, &stack.api_url)
                    .env(ENV_INVOKE_URL, &stack.invoke_url)
                    .env(ENV_STACK, &stack.stack_file)
                    .env("CARGO_MANIFEST_DIR", root.join("tests")),
            )
            .await?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    if outcome.is_err() {
        for log in &stack.logs {
            print_tail(log, 40);
        }
    }
    stack.stop().await;
    outcome?;

    header(
        10,
        "reliability harness, short profile: faults, duplicates, a kill and hostile input; the ledger check",
    );
    let held = crate::chaos::run(crate::chaos::ChaosArgs {
        profile: crate::chaos::ProfileName::Short,
        only: Vec::new(),
    })
    .await?;
    if !held {
        bail!(
            "the reliability harness found a lead lost, an effect done twice or a 5xx (see its table above)"
        );
    }

    println!("\n✓ all checks passed");
    Ok(())
}

/// Builds the integration tests and returns their executables.
async fn build_integration_tests(root: &Path) -> Result<Vec<PathBuf>> {
    println!("▶ cargo test -p {IT_PACKAGE} --no-run");
    let mut cmd = proc::command("cargo", root);
    cmd.args([
        "test",
        "-p",
        IT_PACKAGE,
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .process_group(0)
    .kill_on_drop(true);
    let output = cmd
        .output()
        .await
        .context("cannot run cargo test --no-run")?;
    if !output.status.success() {
        bail!("building the integration tests failed ({})", output.status);
    }
    let binaries = test_executables(&String::from_utf8_lossy(&output.stdout));
    if binaries.is_empty() {
        return Err(anyhow!(
            "cargo built no integration test binary for {IT_PACKAGE}"
        ));
    }
    Ok(binaries)
}

/// The test executables in cargo's JSON messages.
fn test_executables(messages: &str) -> Vec<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m.get("reason").and_then(Value::as_str) == Some("compiler-artifact"))
        .filter(|m| m.pointer("/profile/test").and_then(Value::as_bool) == Some(true))
        .filter_map(|m| {
            m.get("executable")
                .and_then(Value::as_str)
                .map(PathBuf::from)
        })
        .collect()
}

fn print_tail(path: &Path, lines: usize) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let all: Vec<&str> = text.lines().collect();
    println!("\n── last {lines} lines of {}", path.display());
    for l in &all[all.len().saturating_sub(lines)..] {
        println!("{l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_executables_in_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/t/debug/deps/it-abc"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            test_executables(messages),
            vec![PathBuf::from("/t/debug/deps/it-abc")]
        );
    }
}
