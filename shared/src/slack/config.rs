//! `[optimizer.slack]`: the incoming-webhook URL (a secret, by reference) and the pacing gap.

use serde::Deserialize;

use crate::config::{ConfigError, Located, check_secret};
use crate::secrets::SecretRef;

/// Slack incoming-webhook settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The webhook URL (it embeds a token, so it is a secret).
    pub webhook_url: SecretRef,
    /// Minimum gap between two messages, in milliseconds. Slack allows 1 message/s. Default 1000.
    #[serde(default = "default_slack_interval")]
    pub min_interval_ms: u64,
}

fn default_slack_interval() -> u64 {
    1000
}

impl SlackSettings {
    /// Checks the webhook reference.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        check_secret(&self.webhook_url)
            .map_err(|m| at.error(None, "optimizer.slack.webhook_url", m))
    }
}
