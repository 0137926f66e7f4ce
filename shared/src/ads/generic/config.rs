//! `[optimizer.generic]`: the generic platform's optional token (by reference) and limits.

use serde::Deserialize;

use crate::config::{ConfigError, Located, check_concurrency, check_secret};
use crate::secrets::SecretRef;

/// Generic platform settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSettings {
    /// Optional Bearer token sent to the metrics and bid URLs.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Concurrent calls. Default 10.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Attempts per call. Default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Total timeout per call, seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl Default for GenericSettings {
    fn default() -> Self {
        GenericSettings {
            token: None,
            concurrency: default_concurrency(),
            max_attempts: default_attempts(),
            timeout_secs: default_timeout(),
        }
    }
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

impl GenericSettings {
    /// Checks the token reference (when given) and the concurrency.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        if let Some(token) = &self.token {
            check_secret(token).map_err(|m| at.error(None, "optimizer.generic.token", m))?;
        }
        check_concurrency(self.concurrency)
            .map_err(|m| at.error(None, "optimizer.generic.concurrency", m))
    }
}
