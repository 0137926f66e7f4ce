//! `cargo xtask bench`: the performance budget. Runs the criterion benchmarks, builds every function in
//! release, measures its size, its cold start against hello-world and its peak memory under load on the
//! local stack, reads the last cost report, and prints one table with a budget column.

pub mod bloat;
pub mod build;
pub mod process;
pub mod rss;
pub mod table;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::init_time::{self, BUDGET_RATIO};
use crate::local::{self, PortChoice};
use crate::{paths, proc};
use table::Row;

/// Bootstrap budget (arm64 release).
pub const SIZE_BUDGET: u64 = 6 * 1024 * 1024;
/// Peak RSS budget per function.
pub const RSS_BUDGET: u64 = 32 * 1024 * 1024;
/// Intake throughput floor, leads per second on one core.
pub const INTAKE_FLOOR: f64 = 100_000.0;
/// Cost goal of the lead pipeline, US dollars per million leads.
pub const COST_GOAL: f64 = 3.0;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchArgs {
    /// Skip the criterion benchmarks: the throughput rows show their last results
    #[arg(long)]
    pub skip_criterion: bool,
    /// Cold starts measured per binary
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub runs: usize,
    /// Measure the release binaries already built in DIR (DIR/NAME for each function and hello-lambda)
    /// instead of building them into target/release
    #[arg(long, value_name = "DIR")]
    pub binaries: Option<std::path::PathBuf>,
    /// Only run `cargo bench --workspace ARGS` (e.g. `-p hourly-optimizer --bench optimizer`), no table
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Runs everything and prints the table. Returns whether every budgeted figure holds.
pub async fn run(args: BenchArgs) -> Result<bool> {
    if !args.args.is_empty() {
        criterion(&args.args).await?;
        return Ok(true);
    }
    if !args.skip_criterion {
        criterion(&[]).await?;
    }
    crate::venv::ensure(&[crate::venv::TOOLS])?;
    let functions = build::functions()?;
    match &args.binaries {
        Some(dir) => build::use_binaries(dir),
        None => {
            let mut packages = functions.clone();
            packages.push(build::HELLO.to_string());
            build::release(&packages).await?;
        }
    }

    let mut rows = Vec::new();
    for f in &functions {
        let size = build::size(f)?;
        rows.push(Row::new(
            "size (x86_64)",
            f,
            table::mb(size),
            "<= 6 MB arm64",
            Some(size <= SIZE_BUDGET),
        ));
    }

    // The fake ad platform for the optimizer's 1,000 campaigns, then the AWS half of the stack.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let platform_addr = listener.local_addr()?.to_string();
    let platform = rss::serve_platform(listener)?;
    let aws = local::start_aws(
        PortChoice::Any,
        Some(&local::demo_config()),
        &BTreeMap::new(),
        "bench",
    )
    .await?;
    let measured = measure(&aws, &platform_addr, args.runs).await;
    platform.abort();
    let mut moto = aws.moto;
    moto.stop(Duration::from_secs(5)).await;
    let (inits, peaks) = measured?;

    for i in inits.iter().filter(|i| i.name != build::HELLO) {
        rows.push(Row::new(
            "init vs hello-world",
            &i.name,
            format!(
                "{:.2}x ({:.1} ms)",
                i.ratio,
                i.median.as_secs_f64() * 1000.0
            ),
            "<= 2x",
            Some(i.ratio <= BUDGET_RATIO),
        ));
    }
    if let Some(h) = inits.iter().find(|i| i.name == build::HELLO) {
        rows.push(Row::new(
            "init (baseline)",
            build::HELLO,
            format!("{:.1} ms", h.median.as_secs_f64() * 1000.0),
            "-",
            None,
        ));
    }
    for p in &peaks {
        let subject = format!("{} ({})", p.function, p.workload);
        rows.push(match &p.bytes {
            Ok(bytes) => Row::new(
                "peak RSS",
                &subject,
                table::mb(*bytes),
                "<= 32 MB",
                Some(*bytes <= RSS_BUDGET),
            ),
            Err(why) => Row::new(
                "peak RSS",
                &subject,
                format!("not measured: {why}"),
                "<= 32 MB",
                None,
            ),
        });
    }
    rows.extend(throughput_rows());
    let cost_file = paths::root().join("target").join("perf").join("cost.json");
    match table::cost_per_million(&cost_file) {
        Some((usd, at)) => rows.push(Row::new(
            "AWS cost per million leads",
            &format!("lead pipeline (cargo xtask cost, {at})"),
            format!("${usd:.2}"),
            "<= $3.00",
            Some(usd <= COST_GOAL),
        )),
        None => rows.push(Row::new(
            "AWS cost per million leads",
            "lead pipeline",
            "not measured: run `cargo xtask cost`".into(),
            "<= $3.00",
            None,
        )),
    }

    println!("\n════ Performance budget\n");
    print!("{}", table::text(&rows));
    let out = paths::root().join("target").join("perf");
    std::fs::create_dir_all(&out)?;
    let md = out.join("budget.md");
    std::fs::write(&md, table::markdown(&rows))?;
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.within == Some(false))
        .map(|r| format!("{} of {}", r.figure, r.subject))
        .collect();
    println!("\n  table (Markdown): {}", md.display());
    if over.is_empty() {
        println!("  every figure is within its budget");
    } else {
        println!("  {} over budget: {}", over.len(), over.join("; "));
    }
    Ok(over.is_empty())
}

async fn measure(
    aws: &local::AwsStack,
    platform_addr: &str,
    runs: usize,
) -> Result<(Vec<init_time::InitTime>, Vec<rss::Peak>)> {
    crate::demo_sources::put_secrets(&aws.sdk).await?;
    // Cold starts read the demo config, as a deployed stack reads its own.
    let inits = init_time::measure_all(&aws.env, runs).await?;
    init_time::print(&inits);
    // The load runs with the demo config's rules and 1,000 optimizer campaigns on the fake platform.
    let demo = std::fs::read_to_string(local::demo_config())?;
    let path = paths::root()
        .join("target")
        .join("perf")
        .join("bench-config.toml");
    std::fs::create_dir_all(path.parent().context("target/perf")?)?;
    std::fs::write(
        &path,
        crate::cost::cost_config(&demo, platform_addr, rss::OPTIMIZER_CAMPAIGNS),
    )?;
    let object = crate::deploy::local_object(&aws.info, &aws.template, &BTreeMap::new())?;
    crate::deploy::push(&aws.sdk, &object, &path).await?;
    let peaks = rss::measure(aws).await;
    Ok((inits, peaks))
}

/// `cargo bench --workspace ARGS`.
async fn criterion(args: &[String]) -> Result<()> {
    proc::run(
        "cargo bench",
        proc::command("cargo", &paths::root())
            .args(["bench", "--workspace"])
            .args(args),
    )
    .await
}

/// The criterion results that have a throughput meaning, from their last run.
fn throughput_rows() -> Vec<Row> {
    let dir = paths::root().join("target").join("criterion");
    let mut rows = Vec::new();
    let per_sec = |ns: f64| 1e9 / ns.max(1e-9);
    for (bench, label) in [
        ("urlencoded_form_with_phone", "form with a phone"),
        ("article_json_payload", "the article's JSON"),
    ] {
        if let Some(ns) = table::criterion_estimate_ns(&dir, "intake", bench) {
            let rate = per_sec(ns);
            rows.push(Row::new(
                "intake leads/s/core",
                &format!("webhook-receiver ({label})"),
                format!("{rate:.0}"),
                ">= 100,000",
                Some(rate >= INTAKE_FLOOR),
            ));
        }
    }
    if let Some(ns) = table::criterion_estimate_ns(&dir, "rules", "evaluate_50_rules") {
        rows.push(Row::new(
            "rules leads/s/core",
            "lead-router (50 rules)",
            format!("{:.0}", per_sec(ns)),
            "-",
            None,
        ));
    }
    for bench in ["rest_concurrent", "hubspot_one_call"] {
        if let Some(ns) = table::criterion_estimate_ns(&dir, "batch_of_10_with_200ms_crm", bench) {
            let ms = ns / 1e6;
            rows.push(Row::new(
                "batch of 10, 200 ms CRM",
                &format!("lead-router ({bench})"),
                format!("{ms:.0} ms"),
                "about one call: <= 400 ms",
                Some(ms <= 400.0),
            ));
        }
    }
    if let Some(ns) = table::criterion_estimate_ns(&dir, "export", "10k_leads_to_parquet") {
        rows.push(Row::new(
            "export rows/s/core",
            "report-export (10,000 leads to Parquet)",
            format!("{:.0}", 10_000.0 * per_sec(ns)),
            "-",
            None,
        ));
    }
    if let Some(ns) =
        table::criterion_estimate_ns(&dir, "report", "render_90_days_100k_leads_50_campaigns")
    {
        rows.push(Row::new(
            "render time",
            "report-api (90 days, 100,000 leads, 50 campaigns)",
            format!("{:.0} ms", ns / 1e6),
            "-",
            None,
        ));
    }
    rows
}
