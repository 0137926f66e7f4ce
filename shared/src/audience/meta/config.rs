//! `[audience_sync.meta]`: Graph API access for custom audiences, and the Meta destinations of a named
//! audience.

use serde::Deserialize;

use super::request::MAX_ROWS;
use crate::audience::Mode;
use crate::config::{ConfigError, Located};
use crate::secrets::SecretRef;

/// `[audience_sync.meta]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaAudienceConfig {
    /// Base URL. Default `https://graph.facebook.com`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Graph API version. Default `v25.0`.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// System-user access token (Bearer), by reference. Required when a Meta destination applies.
    #[serde(default)]
    pub access_token: Option<SecretRef>,
    /// Rows per request (1-10,000). Default 10,000.
    #[serde(default = "default_rows")]
    pub rows_per_request: usize,
    /// Attempts per request within one invocation. Default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff delay, ms. Default 500.
    #[serde(default = "default_base_delay")]
    pub base_delay_ms: u64,
    /// Longest in-process wait, ms; a longer throttle goes back to SQS. Default 5000.
    #[serde(default = "default_max_delay")]
    pub max_delay_ms: u64,
    /// Total timeout per request, seconds. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl Default for MetaAudienceConfig {
    fn default() -> Self {
        MetaAudienceConfig {
            endpoint: default_endpoint(),
            api_version: default_version(),
            access_token: None,
            rows_per_request: default_rows(),
            max_attempts: default_attempts(),
            base_delay_ms: default_base_delay(),
            max_delay_ms: default_max_delay(),
            timeout_secs: default_timeout(),
        }
    }
}

/// One Meta custom audience of a named audience.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaTarget {
    /// The custom audience id (digits).
    pub audience_id: String,
    /// `apply` or `dry_run` (default).
    #[serde(default)]
    pub mode: Mode,
}

fn default_endpoint() -> String {
    "https://graph.facebook.com".to_string()
}
fn default_version() -> String {
    "v25.0".to_string()
}
fn default_rows() -> usize {
    MAX_ROWS
}
fn default_attempts() -> u32 {
    3
}
fn default_base_delay() -> u64 {
    500
}
fn default_max_delay() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    60
}

impl MetaAudienceConfig {
    /// Checks the bounds, and the token when `applies`.
    pub fn validate(&self, at: &Located<'_>, applies: bool) -> Result<(), ConfigError> {
        let p = "audience_sync.meta";
        if !(1..=MAX_ROWS).contains(&self.rows_per_request) {
            return Err(at.error(
                None,
                &format!("{p}.rows_per_request"),
                format!("must be between 1 and {MAX_ROWS}"),
            ));
        }
        if !self.endpoint.starts_with("http") {
            return Err(at.error(None, &format!("{p}.endpoint"), "must be an http(s) URL"));
        }
        if applies && !self.access_token.as_ref().is_some_and(SecretRef::is_set) {
            return Err(at.error(
                None,
                &format!("{p}.access_token"),
                "is required when a Meta destination has mode = \"apply\", e.g. access_token = { env = \"META_TOKEN\", ssm = \"/fluxo/meta/token\" }",
            ));
        }
        Ok(())
    }
}

impl MetaTarget {
    /// Checks the audience id.
    pub fn validate(&self, at: &Located<'_>, field: &str) -> Result<(), ConfigError> {
        if self.audience_id.is_empty() || !self.audience_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(at.error(
                None,
                &format!("{field}.audience_id"),
                "must be the custom audience's numeric id",
            ));
        }
        Ok(())
    }
}
