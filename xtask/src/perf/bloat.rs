//! `cargo xtask bloat [FUNCTION]`: where a function's bytes go, per crate, with `cargo bloat` (crates.io,
//! installed by xtask into `.fluxo/tools` at a pinned version). It builds with the `bloat` profile: the
//! release profile with its symbols kept, since a stripped binary cannot be attributed.

use anyhow::Result;

use crate::{paths, proc, tools};

/// The pinned cargo-bloat version.
pub const CARGO_BLOAT_VERSION: &str = "0.12.1";

/// Arguments of `cargo xtask bloat`.
#[derive(Debug, Clone, clap::Args)]
pub struct BloatArgs {
    /// The function package (default webhook-receiver, the largest)
    #[arg(value_name = "FUNCTION", default_value = "webhook-receiver")]
    pub function: String,
    /// How many crates to list
    #[arg(short = 'n', long, default_value_t = 30)]
    pub lines: usize,
}

/// Builds the function with the `bloat` profile and prints its size per crate.
pub async fn run(args: BloatArgs) -> Result<()> {
    let bloat =
        tools::cargo_tool("cargo-bloat", CARGO_BLOAT_VERSION, &["bloat", "--version"]).await?;
    println!(
        "▶ cargo bloat --profile bloat -p {} --crates (a release build with symbols: several minutes)",
        args.function
    );
    let mut path = std::ffi::OsString::from(bloat.parent().unwrap_or(&paths::root()));
    if let Some(p) = std::env::var_os("PATH") {
        path.push(":");
        path.push(p);
    }
    proc::run(
        "cargo bloat",
        proc::command("cargo", &paths::root())
            .args([
                "bloat",
                "--profile",
                "bloat",
                "-p",
                &args.function,
                "--bin",
                &args.function,
                "--crates",
                "-n",
                &args.lines.to_string(),
            ])
            .env("PATH", path),
    )
    .await
}
