//! Small commands: check-config, invoke, package.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::template::{EventSource, Template};
use crate::{esm, paths, proc, progress, venv};

/// `.fluxo/tools/bin/NAME`, a tool from crates.io installed with `cargo install --locked` at a pinned
/// version the first time it is needed. `version_args` make it print its version (`["--version"]`).
pub async fn cargo_tool(name: &str, version: &str, version_args: &[&str]) -> Result<PathBuf> {
    let root = paths::state_dir().join("tools");
    let bin = root.join("bin").join(name);
    let installed = std::process::Command::new(&bin)
        .args(version_args)
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains(version)
                || String::from_utf8_lossy(&o.stderr).contains(version)
        });
    if installed {
        return Ok(bin);
    }
    println!("▶ cargo install {name} {version} into .fluxo/tools (first time: several minutes)");
    proc::run(
        &format!("cargo install {name}"),
        proc::command("cargo", &paths::root())
            .args(["install", name, "--locked", "--version", version, "--root"])
            .arg(&root),
    )
    .await?;
    Ok(bin)
}

/// `cargo xtask check-config FILE`: validates a config file. Returns whether it is valid.
pub fn check_config(path: &Path) -> bool {
    match fluxo::config::load_file(path) {
        Ok(loaded) => {
            println!("ok (version {})", loaded.version);
            true
        }
        Err(e) => {
            eprintln!("{e}");
            false
        }
    }
}

/// Arguments of `cargo xtask check-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file to validate
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Options of `cargo xtask invoke`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InvokeOptions {
    /// The function's binary name or logical id, e.g. hourly-optimizer
    #[arg(value_name = "FUNCTION")]
    pub function: String,
    /// Send a scheduled (EventBridge) event from the function's schedule
    #[arg(long)]
    pub scheduled: bool,
    /// The event to send, as JSON (default {})
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// The invoke API of `cargo xtask dev` (default http://127.0.0.1:9000)
    #[arg(long, value_name = "URL")]
    pub invoke_url: Option<String>,
}

/// `cargo xtask invoke FUNCTION [--scheduled] [--payload JSON]`: invokes a function of a running dev stack.
pub async fn invoke(opts: InvokeOptions) -> Result<()> {
    let template = Template::load(&paths::template())?;
    let f = template.function(&opts.function)?;
    let payload = match (&opts.payload, opts.scheduled) {
        (Some(p), _) => serde_json::from_str(p).context("--payload is not JSON")?,
        (None, true) => {
            let rule = f
                .events
                .iter()
                .find(|(_, e)| matches!(e, EventSource::Schedule(_)))
                .map(|(name, _)| format!("{}-{name}", f.logical_id))
                .unwrap_or_else(|| format!("{}-manual", f.logical_id));
            serde_json::to_value(esm::scheduled_event_now(&rule))?
        }
        (None, false) => serde_json::json!({}),
    };
    let base = opts
        .invoke_url
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", crate::local::DEFAULT_API_PORT));
    let http = reqwest::Client::new();
    let timeout = Duration::from_secs(f.timeout_secs + 10);
    let r = esm::invoke(&http, &base, &f.binary, &payload, timeout)
        .await
        .with_context(|| format!("is `cargo xtask dev` running with its invoke API on {base}?"))?;
    println!(
        "HTTP {}{}",
        r.status,
        r.function_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    println!("{}", String::from_utf8_lossy(&r.body));
    if !r.succeeded() {
        bail!("{} failed", f.binary);
    }
    Ok(())
}

/// The function packages under `functions/` (package name = binary name).
pub fn function_packages() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(paths::root().join("functions")).context("cannot list functions/")?
    {
        let manifest = entry?.path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
        let name = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| anyhow!("{} has no package.name", manifest.display()))?;
        out.push(name.to_string());
    }
    out.sort();
    Ok(out)
}

/// Largest bootstrap the project accepts.
const MAX_BOOTSTRAP_BYTES: u64 = 6 * 1024 * 1024;

/// `cargo xtask package`: release arm64 bootstraps with cargo-lambda (cross-compiled with zig), and their sizes.
pub async fn package() -> Result<()> {
    venv::ensure(&[venv::TOOLS])?;
    let root = paths::root();
    let packages = function_packages()?;
    if has_rustup() {
        let log = progress::log_path("install-rustup-target.log")?;
        progress::start_log(&log, "rustup target add aarch64-unknown-linux-gnu")?;
        progress::run_logged(
            "rustup target add aarch64-unknown-linux-gnu",
            std::process::Command::new("rustup")
                .current_dir(&root)
                .args(["target", "add", "aarch64-unknown-linux-gnu"]),
            &log,
        )?;
    }
    println!(
        "▶ cargo lambda build --release --arm64 ({})",
        packages.join(", ")
    );
    let mut cmd = proc::command(venv::TOOLS.bin("cargo-lambda"), &root);
    cmd.args(["lambda", "build", "--release", "--arm64"]);
    for p in &packages {
        cmd.args(["--package", p]);
    }
    cmd.env("PATH", venv::TOOLS.path_env());
    proc::run("cargo lambda build", &mut cmd).await?;
    let mut too_big = Vec::new();
    println!("▶ Bootstraps");
    for p in &packages {
        let path: PathBuf = root.join("target").join("lambda").join(p).join("bootstrap");
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} was not built", path.display()))?
            .len();
        let flag = if size > MAX_BOOTSTRAP_BYTES {
            "  OVER the 6 MB budget"
        } else {
            ""
        };
        #[allow(clippy::cast_precision_loss)]
        let mb = size as f64 / (1024.0 * 1024.0);
        println!(
            "  {p:<24} {mb:>6.2} MB  ({size} bytes)  {}{flag}",
            path.display()
        );
        if size > MAX_BOOTSTRAP_BYTES {
            too_big.push(p.clone());
        }
    }
    if !too_big.is_empty() {
        println!("  ! over the 6 MB budget: {}", too_big.join(", "));
    }
    Ok(())
}

fn has_rustup() -> bool {
    std::process::Command::new("rustup")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
