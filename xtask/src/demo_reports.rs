//! Demo step of unified reporting: the analytics records of the earlier steps reach the data lake
//! (report-export), and the dashboard (report-api) is opened in headless Chromium, with a screenshot.
//! Also the Chromium helpers the integration tests use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fluxo::adapters::s3::S3Objects;

use crate::demo::{DemoContext, Step};
use crate::paths;

/// Longest wait for the lake: report-export's batching window (template default 60 s) plus its run.
pub const LAKE_WAIT: Duration = Duration::from_secs(150);

/// The step, for [`crate::demo::steps`].
pub fn step() -> Step {
    Step {
        title: "Reports: the data lake and the dashboard",
        run: |ctx| Box::pin(run(ctx)),
    }
}

/// The Chromium flags of every headless run (no sandbox as root, no network beyond the page).
const CHROMIUM_FLAGS: [&str; 6] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
];

/// The `chromium` binary: on `PATH`, else installed with apt-get (Debian's `chromium`) when running
/// as root, else an error that says how to install it.
pub fn ensure_chromium() -> Result<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
                .find(|c| c.is_file())
        })
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        bail!("chromium is not installed: `sudo apt-get install -y chromium` (Debian's package)");
    }
    println!("▶ Installing Debian's chromium (apt-get; once)");
    for args in [
        vec!["update", "-qq"],
        vec!["install", "-y", "-qq", "chromium"],
    ] {
        let status = std::process::Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    find().context("apt-get installed chromium but it is not on PATH")
}

/// What a headless Chromium run of a page saw.
#[derive(Debug, Clone)]
pub struct PageRun {
    /// The DOM after loading.
    pub dom: String,
    /// The console messages Chromium logged (a page without script should have none).
    pub console: Vec<String>,
    pub screenshot: PathBuf,
}

async fn chromium(binary: &Path, profile: &Path, args: &[String]) -> Result<(String, String)> {
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(binary)
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--enable-logging=stderr", "--v=0"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("chromium did not finish within 90 s")?
    .context("running chromium")?;
    Ok((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Opens `url` in headless Chromium at a phone's width: its DOM, its console messages, and a
/// full-height screenshot saved at `screenshot`.
pub async fn open_page(url: &str, screenshot: &Path) -> Result<PageRun> {
    let binary = ensure_chromium()?;
    if let Some(dir) = screenshot.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let profile = paths::root()
        .join("target")
        .join(format!("chromium-profile-{}", std::process::id()));
    let (dom, log1) = chromium(&binary, &profile, &["--dump-dom".into(), url.into()]).await?;
    let (_, log2) = chromium(
        &binary,
        &profile,
        &[
            "--window-size=412,3600".into(),
            format!("--screenshot={}", screenshot.display()),
            url.into(),
        ],
    )
    .await?;
    let _ = std::fs::remove_dir_all(&profile);
    let console = log1
        .lines()
        .chain(log2.lines())
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    if !screenshot.is_file() {
        bail!("chromium wrote no screenshot at {}", screenshot.display());
    }
    Ok(PageRun {
        dom,
        console,
        screenshot: screenshot.to_path_buf(),
    })
}

/// The dashboard URL with HTTP Basic credentials (the password is the dashboard secret).
pub fn authenticated_url(api_url: &str, token: &str, path_and_query: &str) -> String {
    let rest = api_url
        .strip_prefix("http://")
        .unwrap_or(api_url)
        .trim_end_matches('/');
    format!("http://fluxo:{token}@{rest}{path_and_query}")
}

/// Waits until every table in `tables` has at least one file in the lake bucket.
pub async fn wait_for_tables(s3: &S3Objects, bucket: &str, tables: &[&str]) -> Result<()> {
    let deadline = Instant::now() + LAKE_WAIT;
    loop {
        let mut missing = Vec::new();
        for t in tables {
            if s3.list(bucket, &format!("{t}/"), None).await?.is_empty() {
                missing.push(*t);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no lake files for {missing:?} after {}s (see .fluxo/logs/ for report-export)",
                LAKE_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn run(ctx: &mut DemoContext<'_>) -> Result<()> {
    ctx.stack.start_event_sources()?;
    let bucket = ctx.stack.info.bucket("LakeBucket")?.to_string();
    let s3 = S3Objects::from_sdk_config(&ctx.stack.sdk)?;
    println!(
        "  The functions emitted analytics records; report-export writes them (batching window up to 60 s)..."
    );
    wait_for_tables(
        &s3,
        &bucket,
        &["leads", "effects", "ad_metrics", "bid_changes"],
    )
    .await?;
    let files = s3.list(&bucket, "", None).await?;
    for f in &files {
        println!("  ✓ s3://{bucket}/{} ({} bytes)", f.key, f.size);
    }
    let token = crate::local::local_report_token();
    let refused = ctx
        .http
        .get(format!("{}/reports", ctx.stack.api_url))
        .send()
        .await?;
    if refused.status().as_u16() != 401 {
        bail!(
            "the dashboard answered {} without credentials",
            refused.status()
        );
    }
    println!("  ✓ without credentials the dashboard answers 401");
    let screenshot = paths::root()
        .join("target")
        .join("reports")
        .join("dashboard.png");
    let page = open_page(
        &authenticated_url(&ctx.stack.api_url, &token, "/reports"),
        &screenshot,
    )
    .await?;
    if !page.console.is_empty() {
        bail!("the dashboard logged console messages: {:?}", page.console);
    }
    let charts = page.dom.matches("<svg").count();
    println!("  ✓ the dashboard rendered {charts} SVG charts, no console message");
    println!(
        "\n  Dashboard: {}/reports  (HTTP Basic: any user, password = REPORT_TOKEN, locally {token:?})",
        ctx.stack.api_url
    );
    println!("  Screenshot: {}", screenshot.display());
    println!("  (`cargo xtask dev` keeps the stack and the dashboard running.)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_into_the_url_for_chromium() {
        assert_eq!(
            authenticated_url("http://127.0.0.1:9000", "tok", "/reports?from=2026-11-01"),
            "http://fluxo:tok@127.0.0.1:9000/reports?from=2026-11-01"
        );
    }
}
