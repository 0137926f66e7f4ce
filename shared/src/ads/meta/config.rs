//! `[optimizer.meta]`: the Meta Marketing API endpoint, version, token (by reference) and limits.

use serde::Deserialize;

use crate::config::{ConfigError, Located, check_concurrency, check_secret, is_http_url};
use crate::secrets::SecretRef;

/// Meta Marketing API access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSettings {
    /// Base URL. Default `https://graph.facebook.com`.
    #[serde(default = "default_meta_endpoint")]
    pub endpoint: String,
    /// Graph API version. Default `v25.0`.
    #[serde(default = "default_meta_version")]
    pub api_version: String,
    /// System-user access token (Bearer).
    pub access_token: SecretRef,
    /// Concurrent calls to Meta. Default 10.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts per call. Default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Total timeout per call, seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_meta_endpoint() -> String {
    "https://graph.facebook.com".into()
}
fn default_meta_version() -> String {
    "v25.0".into()
}
fn default_concurrency() -> usize {
    crate::ads::DEFAULT_CONCURRENCY
}
fn default_attempts() -> u32 {
    crate::ads::DEFAULT_ATTEMPTS
}
fn default_timeout() -> u64 {
    crate::ads::DEFAULT_TIMEOUT_SECS
}

impl MetaSettings {
    /// Checks the token reference, the endpoint and the concurrency.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        check_secret(&self.access_token)
            .map_err(|msg| at.error(None, "optimizer.meta.access_token", msg))?;
        if !is_http_url(&self.endpoint) {
            return Err(at.error(None, "optimizer.meta.endpoint", "must be an http(s) URL"));
        }
        check_concurrency(self.concurrency)
            .map_err(|msg| at.error(None, "optimizer.meta.concurrency", msg))
    }
}
