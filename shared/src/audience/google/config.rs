//! `[audience_sync.google]`: Google Ads API access for Customer Match, and the Google destinations of a
//! named audience.

use serde::Deserialize;

use super::request::MAX_OPERATIONS;
use crate::audience::Mode;
use crate::config::{ConfigError, Located};
use crate::secrets::SecretRef;

/// `[audience_sync.google]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAudienceConfig {
    /// Base URL. Default `https://googleads.googleapis.com`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// API version path segment. Default `v25`.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// A fixed OAuth2 access token. Prefer the refresh-token settings, which renew it.
    #[serde(default)]
    pub access_token: Option<SecretRef>,
    /// OAuth2 client id (not a secret).
    #[serde(default)]
    pub oauth_client_id: Option<String>,
    /// OAuth2 client secret.
    #[serde(default)]
    pub oauth_client_secret: Option<SecretRef>,
    /// OAuth2 refresh token.
    #[serde(default)]
    pub oauth_refresh_token: Option<SecretRef>,
    /// Token endpoint. Default `https://oauth2.googleapis.com/token`.
    #[serde(default = "default_token_url")]
    pub oauth_token_url: String,
    /// Operations per `addOperations` request (1-50,000; two identifiers each at most, under Google's
    /// 100,000 identifiers per request). Default 10,000.
    #[serde(default = "default_operations")]
    pub operations_per_request: usize,
    /// Attempts per request within one invocation. Default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff delay, ms. Default 500.
    #[serde(default = "default_base_delay")]
    pub base_delay_ms: u64,
    /// Longest in-process wait, ms; a longer `retryDelay` goes back to SQS. Default 5000.
    #[serde(default = "default_max_delay")]
    pub max_delay_ms: u64,
    /// Total timeout per request, seconds. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl Default for GoogleAudienceConfig {
    fn default() -> Self {
        GoogleAudienceConfig {
            endpoint: default_endpoint(),
            api_version: default_version(),
            access_token: None,
            oauth_client_id: None,
            oauth_client_secret: None,
            oauth_refresh_token: None,
            oauth_token_url: default_token_url(),
            operations_per_request: default_operations(),
            max_attempts: default_attempts(),
            base_delay_ms: default_base_delay(),
            max_delay_ms: default_max_delay(),
            timeout_secs: default_timeout(),
        }
    }
}

/// One Customer Match user list of a named audience.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleTarget {
    /// The account that owns the list (digits, no dashes).
    pub customer_id: String,
    /// The user list id (digits).
    pub user_list_id: String,
    /// The manager (MCC) account the call goes through, sent as `login-customer-id`.
    #[serde(default)]
    pub login_customer_id: Option<String>,
    /// `apply` or `dry_run` (default; requests carry `validateOnly`).
    #[serde(default)]
    pub mode: Mode,
}

fn default_endpoint() -> String {
    "https://googleads.googleapis.com".to_string()
}
fn default_version() -> String {
    "v25".to_string()
}
fn default_token_url() -> String {
    "https://oauth2.googleapis.com/token".to_string()
}
fn default_operations() -> usize {
    10_000
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

fn digits(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())
}

impl GoogleAudienceConfig {
    /// Whether the refresh-token flow is configured.
    pub fn uses_refresh_token(&self) -> bool {
        self.oauth_refresh_token
            .as_ref()
            .is_some_and(SecretRef::is_set)
    }

    /// Checks the bounds, and the credentials when `applies`.
    pub fn validate(&self, at: &Located<'_>, applies: bool) -> Result<(), ConfigError> {
        let p = "audience_sync.google";
        if !(1..=MAX_OPERATIONS).contains(&self.operations_per_request) {
            return Err(at.error(
                None,
                &format!("{p}.operations_per_request"),
                format!("must be between 1 and {MAX_OPERATIONS}"),
            ));
        }
        if !self.endpoint.starts_with("http") {
            return Err(at.error(None, &format!("{p}.endpoint"), "must be an http(s) URL"));
        }
        if !applies {
            return Ok(());
        }
        let fixed = self.access_token.as_ref().is_some_and(SecretRef::is_set);
        let refresh = self.uses_refresh_token()
            && self
                .oauth_client_id
                .as_deref()
                .is_some_and(|c| !c.is_empty())
            && self
                .oauth_client_secret
                .as_ref()
                .is_some_and(SecretRef::is_set);
        if !fixed && !refresh {
            return Err(at.error(
                None,
                p,
                "a Google destination has mode = \"apply\": set oauth_client_id, oauth_client_secret and oauth_refresh_token (or access_token)",
            ));
        }
        Ok(())
    }
}

impl GoogleTarget {
    /// Checks the ids.
    pub fn validate(&self, at: &Located<'_>, field: &str) -> Result<(), ConfigError> {
        if !digits(&self.customer_id) {
            return Err(at.error(
                None,
                &format!("{field}.customer_id"),
                "must be the account's digits, without dashes",
            ));
        }
        if !digits(&self.user_list_id) {
            return Err(at.error(
                None,
                &format!("{field}.user_list_id"),
                "must be the user list's numeric id",
            ));
        }
        if let Some(login) = &self.login_customer_id
            && !digits(login)
        {
            return Err(at.error(
                None,
                &format!("{field}.login_customer_id"),
                "must be the manager account's digits, without dashes",
            ));
        }
        Ok(())
    }
}
