//! Release builds of each function alone, as `sam build` compiles them (so no feature of a sibling is
//! unified in), and the size of each binary.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{paths, proc, tools};

/// The hello-world baseline's package and binary.
pub const HELLO: &str = "hello-lambda";

/// The functions in the order a lead meets them, then the scheduled optimizer.
pub const ORDER: [&str; 7] = [
    "webhook-receiver",
    "lead-router",
    "email-trigger",
    "audience-sync",
    "report-export",
    "report-api",
    "hourly-optimizer",
];

/// The function packages (package name = binary name), in [`ORDER`]; any other package comes last.
pub fn functions() -> Result<Vec<String>> {
    let mut found = tools::function_packages()?;
    found.sort_by_key(|f| ORDER.iter().position(|o| o == f).unwrap_or(ORDER.len()));
    Ok(found)
}

/// `cargo build --release -p NAME` for each package, one at a time.
pub async fn release(packages: &[String]) -> Result<()> {
    for p in packages {
        println!("▶ cargo build --release -p {p}");
        proc::run(
            "cargo build --release",
            proc::command("cargo", &paths::root()).args([
                "build",
                "--release",
                "-p",
                p,
                "--bin",
                p,
            ]),
        )
        .await?;
    }
    Ok(())
}

static BINARIES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Measures the binaries in `dir` instead of `target/release` (`cargo xtask bench --binaries DIR`).
pub fn use_binaries(dir: &std::path::Path) {
    let _ = BINARIES.set(dir.to_path_buf());
}

/// `target/release/NAME`, or `DIR/NAME` after [`use_binaries`].
pub fn binary(name: &str) -> PathBuf {
    BINARIES
        .get()
        .cloned()
        .unwrap_or_else(|| paths::root().join("target").join("release"))
        .join(name)
}

/// The size in bytes of a built release binary.
pub fn size(name: &str) -> Result<u64> {
    let path = binary(name);
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("{} was not built", path.display()))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_function_with_the_receiver_first() {
        let f = functions().unwrap();
        assert_eq!(f.first().map(String::as_str), Some("webhook-receiver"));
        for name in [
            "lead-router",
            "email-trigger",
            "audience-sync",
            "report-api",
        ] {
            assert!(f.iter().any(|x| x == name), "{name} missing from {f:?}");
        }
        assert!(!f.iter().any(|x| x == HELLO));
    }
}
