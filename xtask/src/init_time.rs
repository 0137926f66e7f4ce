//! `cargo xtask init-time`: time from process start to the first Lambda runtime API request, webhook-receiver vs. a hello-world lambda_http binary.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::{paths, proc};

const NEXT_INVOCATION: &str = "GET /2018-06-01/runtime/invocation/next";

/// Arguments of `cargo xtask init-time`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitTimeArgs {
    /// How many cold starts to measure per binary (at least 1)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub runs: usize,
}

/// Builds both release binaries natively and measures each `runs` times.
pub async fn run(runs: usize) -> Result<()> {
    let root = paths::root();
    println!("▶ cargo build --release (webhook-receiver, hello-lambda)");
    proc::run(
        "cargo build --release",
        proc::command("cargo", &root).args([
            "build",
            "--release",
            "-p",
            "webhook-receiver",
            "-p",
            "xtask",
            "--bin",
            "webhook-receiver",
            "--bin",
            "hello-lambda",
        ]),
    )
    .await?;
    let release = root.join("target").join("release");
    let mut results = Vec::new();
    for name in ["hello-lambda", "webhook-receiver"] {
        let binary = release.join(name);
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            samples.push(
                measure_once(&binary)
                    .await
                    .with_context(|| format!("measuring {name}"))?,
            );
        }
        samples.sort();
        let (median, p90) = (percentile(&samples, 50), percentile(&samples, 90));
        println!(
            "  {name:<18} median {:>7.2} ms   p90 {:>7.2} ms   ({runs} runs)",
            ms(median),
            ms(p90)
        );
        results.push(median);
    }
    if let [hello, receiver] = results.as_slice() {
        let ratio = ms(*receiver) / ms(*hello).max(0.001);
        println!(
            "  ratio (webhook-receiver / hello-lambda, medians): {ratio:.2}x  (target: within 3x)"
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn measure_once(binary: &std::path::Path) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut cmd = proc::command(binary, &paths::root());
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "init-time")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "init-time")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "init-time")
        .env("LEADS_TABLE", "LeadsTable")
        .env(
            "LEADS_QUEUE_URL",
            "http://127.0.0.1:1/123456789012/LeadsQueue",
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut guard = proc::Guard::spawn("function", &mut cmd)?;
    let elapsed = tokio::time::timeout(Duration::from_secs(10), async {
        let (mut socket, _) = listener.accept().await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let elapsed = start.elapsed();
        if !head.starts_with(NEXT_INVOCATION.as_bytes()) {
            bail!(
                "the first request was not {NEXT_INVOCATION}: {}",
                String::from_utf8_lossy(&head)
            );
        }
        Ok(elapsed)
    })
    .await;
    guard.stop(Duration::from_millis(500)).await;
    match elapsed {
        Ok(r) => r,
        Err(_) => match guard.try_exited() {
            Some(status) => bail!("the binary exited ({status}) without calling the runtime API"),
            None => bail!("no runtime API request within 10 s"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50), Duration::from_millis(5));
        assert_eq!(percentile(&samples, 90), Duration::from_millis(9));
        assert_eq!(percentile(&[], 90), Duration::ZERO);
    }
}
