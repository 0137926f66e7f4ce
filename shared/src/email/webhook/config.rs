//! Settings of the signed webhook (`[email_trigger.webhook]`) and of a sequence's webhook event.

use serde::Deserialize;

use crate::config::{ConfigError, Located};
use crate::crm::config::check_url;
use crate::secrets::SecretRef;

/// `[email_trigger.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are posted.
    pub url: String,
    /// The signing secret (`whsec_` + base64), by reference. Optional in dry-run.
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// A sequence's webhook event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSequence {
    /// The event `type`; `email.enroll` when not given.
    #[serde(default)]
    pub event_type: Option<String>,
}

impl WebhookConfig {
    /// Checks the URL, and the secret unless in dry-run.
    pub fn validate(&self, at: &Located<'_>, dry_run: bool) -> Result<(), ConfigError> {
        let p = "email_trigger.webhook";
        check_url(&self.url).map_err(|m| at.error(None, &format!("{p}.url"), m))?;
        if !dry_run && !self.secret.as_ref().is_some_and(SecretRef::is_set) {
            return Err(at.error(
                None,
                &format!("{p}.secret"),
                "is required when dry_run = false, e.g. secret = { env = \"EMAIL_WEBHOOK_SECRET\", ssm = \"/fluxo/email/webhook\" }",
            ));
        }
        Ok(())
    }
}
