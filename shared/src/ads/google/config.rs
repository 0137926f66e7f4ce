//! `[optimizer.google_ads]`: the Google Ads API endpoint, version, credentials (by reference) and limits.

use serde::Deserialize;

use crate::config::{ConfigError, Located, check_concurrency, check_secret, is_http_url};
use crate::secrets::SecretRef;

/// Google Ads REST API access.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsSettings {
    /// Base URL. Default `https://googleads.googleapis.com`.
    #[serde(default = "default_google_endpoint")]
    pub endpoint: String,
    /// API version path segment. Default `v25`.
    #[serde(default = "default_google_version")]
    pub api_version: String,
    /// A fixed OAuth2 access token (Bearer). Google's tokens expire after about an hour, so prefer the
    /// refresh-token settings below, which mint and renew access tokens.
    #[serde(default)]
    pub access_token: Option<SecretRef>,
    /// OAuth2 client id (not a secret), for the refresh-token flow.
    #[serde(default)]
    pub oauth_client_id: Option<String>,
    /// OAuth2 client secret.
    #[serde(default)]
    pub oauth_client_secret: Option<SecretRef>,
    /// OAuth2 refresh token of the user that authorised the client.
    #[serde(default)]
    pub oauth_refresh_token: Option<SecretRef>,
    /// Token endpoint. Default `https://oauth2.googleapis.com/token`.
    #[serde(default = "default_google_token_url")]
    pub oauth_token_url: String,
    /// Manager (MCC) account id, digits only, sent as `login-customer-id`.
    #[serde(default)]
    pub login_customer_id: Option<String>,
    /// Concurrent calls to Google Ads. Default 10.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts per call (429/5xx/timeouts are retried). Default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Total timeout per call, seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_google_endpoint() -> String {
    "https://googleads.googleapis.com".into()
}
fn default_google_token_url() -> String {
    "https://oauth2.googleapis.com/token".into()
}
fn default_google_version() -> String {
    "v25".into()
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

impl GoogleAdsSettings {
    /// Checks the credentials (a token, or the whole refresh-token flow, not both), URLs, the manager id
    /// and the concurrency.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        let g = self;
        match (
            &g.access_token,
            &g.oauth_client_id,
            &g.oauth_client_secret,
            &g.oauth_refresh_token,
        ) {
            (Some(token), None, None, None) => check_secret(token)
                .map_err(|m| at.error(None, "optimizer.google_ads.access_token", m))?,
            (None, Some(id), Some(secret), Some(refresh)) if !id.trim().is_empty() => {
                check_secret(secret)
                    .map_err(|m| at.error(None, "optimizer.google_ads.oauth_client_secret", m))?;
                check_secret(refresh)
                    .map_err(|m| at.error(None, "optimizer.google_ads.oauth_refresh_token", m))?;
                if !is_http_url(&g.oauth_token_url) {
                    return Err(at.error(
                        None,
                        "optimizer.google_ads.oauth_token_url",
                        "must be an http(s) URL",
                    ));
                }
            }
            _ => {
                return Err(at.error(
                    None,
                    "optimizer.google_ads",
                    "give either access_token, or oauth_client_id + oauth_client_secret + oauth_refresh_token",
                ));
            }
        }
        if !is_http_url(&g.endpoint) {
            return Err(at.error(
                None,
                "optimizer.google_ads.endpoint",
                "must be an http(s) URL",
            ));
        }
        if let Some(id) = &g.login_customer_id
            && (id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(at.error(
                None,
                "optimizer.google_ads.login_customer_id",
                "must be digits only (no dashes)",
            ));
        }
        check_concurrency(g.concurrency)
            .map_err(|m| at.error(None, "optimizer.google_ads.concurrency", m))
    }
}
