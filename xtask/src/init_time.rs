//! `cargo xtask init-time`: time from process start to the first Lambda runtime API request, for every
//! function against a hello-world lambda_http binary in the same run, with the config read from the local stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::local::{self, PortChoice};
use crate::perf::build::{self, HELLO};
use crate::perf::process::lambda_variables;
use crate::{paths, proc};

const NEXT_INVOCATION: &str = "GET /2018-06-01/runtime/invocation/next";

/// The budget: each function's median cold start within this many times hello-world's.
pub const BUDGET_RATIO: f64 = 2.0;

/// Arguments of `cargo xtask init-time`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitTimeArgs {
    /// How many cold starts to measure per binary (at least 1)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub runs: usize,
    /// Measure the release binaries already built in DIR (DIR/NAME for each function and hello-lambda)
    /// instead of building them into target/release
    #[arg(long, value_name = "DIR")]
    pub binaries: Option<std::path::PathBuf>,
}

/// One binary's cold starts.
#[derive(Debug, Clone)]
pub struct InitTime {
    pub name: String,
    pub median: Duration,
    pub p90: Duration,
    /// Median over hello-world's median, in the same run.
    pub ratio: f64,
}

/// Builds every function and the hello-world in release (or takes them from `--binaries`), starts moto
/// with the demo config pushed (the functions read it at cold start, as in AWS), and measures each
/// `runs` times.
pub async fn run(args: InitTimeArgs) -> Result<()> {
    let runs = args.runs.max(1);
    crate::venv::ensure(&[crate::venv::TOOLS])?;
    match &args.binaries {
        Some(dir) => build::use_binaries(dir),
        None => {
            let mut packages = build::functions()?;
            packages.push(HELLO.to_string());
            build::release(&packages).await?;
        }
    }
    let aws = local::start_aws(
        PortChoice::Any,
        Some(&local::demo_config()),
        &BTreeMap::new(),
        "init-time",
    )
    .await?;
    crate::demo_sources::put_secrets(&aws.sdk).await?;
    let results = measure_all(&aws.env, runs).await;
    let mut moto = aws.moto;
    moto.stop(Duration::from_secs(5)).await;
    print(&results?);
    Ok(())
}

/// Prints one line per binary.
pub fn print(results: &[InitTime]) {
    for r in results {
        println!(
            "  {:<18} median {:>7.2} ms   p90 {:>7.2} ms   {:>5.2}x hello-world{}",
            r.name,
            ms(r.median),
            ms(r.p90),
            r.ratio,
            if r.name != HELLO && r.ratio > BUDGET_RATIO {
                "   over the 2x budget"
            } else {
                ""
            }
        );
    }
}

/// Measures hello-world, then every function, `runs` cold starts each, with `env` (the local stack's).
pub async fn measure_all(env: &BTreeMap<String, String>, runs: usize) -> Result<Vec<InitTime>> {
    let mut names = vec![HELLO.to_string()];
    names.extend(build::functions()?);
    println!("▶ Cold starts: {runs} per binary, process start to the first runtime API request");
    let mut out: Vec<InitTime> = Vec::new();
    for name in names {
        let binary = build::binary(&name);
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            samples.push(
                measure_once(&name, &binary, env)
                    .await
                    .with_context(|| format!("measuring {name}"))?,
            );
        }
        samples.sort();
        let median = percentile(&samples, 50);
        let hello = out.first().map_or(median, |h| h.median);
        out.push(InitTime {
            ratio: ms(median) / ms(hello).max(0.001),
            name,
            median,
            p90: percentile(&samples, 90),
        });
    }
    Ok(out)
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

async fn measure_once(
    name: &str,
    binary: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut cmd = proc::command(binary, &paths::root());
    cmd.envs(env)
        .envs(lambda_variables(name, &addr.to_string()))
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
