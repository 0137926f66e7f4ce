//! `cargo xtask erase EMAIL`: erases a person through email-trigger's erasure payload, on a running
//! `cargo xtask dev` (in AWS, invoke the function with the same payload: `{"action": "erase", "email": ...}`).

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::esm;

/// Arguments of `cargo xtask erase`.
#[derive(Debug, Clone, clap::Args)]
pub struct EraseArgs {
    /// The email of the person to erase
    #[arg(value_name = "EMAIL")]
    pub email: String,
    /// The invoke API of `cargo xtask dev` (default http://127.0.0.1:9000)
    #[arg(long, value_name = "URL")]
    pub invoke_url: Option<String>,
}

/// The erasure payload email-trigger accepts.
pub fn payload(email: &str) -> serde_json::Value {
    serde_json::json!({ "action": "erase", "email": email.trim() })
}

/// Invokes the erasure and prints its report (no personal data in it).
pub async fn run(args: EraseArgs) -> Result<()> {
    let base = args
        .invoke_url
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", crate::local::DEFAULT_API_PORT));
    let http = reqwest::Client::new();
    let r = esm::invoke(
        &http,
        &base,
        "email-trigger",
        &payload(&args.email),
        Duration::from_secs(40),
    )
    .await
    .with_context(|| format!("is `cargo xtask dev` running with its invoke API on {base}?"))?;
    println!("{}", String::from_utf8_lossy(&r.body));
    if !r.succeeded() {
        bail!(
            "the erasure failed (HTTP {}{}); run it again: it is safe to repeat",
            r.status,
            r.function_error
                .as_deref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_functions_erasure_request() {
        assert_eq!(
            payload(" ana@exemplo.com "),
            serde_json::json!({"action": "erase", "email": "ana@exemplo.com"})
        );
    }
}
