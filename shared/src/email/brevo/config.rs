//! Settings of the Brevo connector (`[email_trigger.brevo]`) and of a sequence's Brevo action.

use serde::Deserialize;

use crate::config::{ConfigError, Located};
use crate::crm::config::check_url;
use crate::secrets::SecretRef;

/// `[email_trigger.brevo]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrevoConfig {
    /// The API key, by reference. Optional in dry-run.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// API base URL.
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.brevo.com/v3".to_string()
}

/// A sequence's Brevo action: the lists the contact joins (a list-entry automation starts the sequence).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrevoSequence {
    pub list_ids: Vec<u64>,
}

impl BrevoConfig {
    /// Checks the URL, and the key unless in dry-run.
    pub fn validate(&self, at: &Located<'_>, dry_run: bool) -> Result<(), ConfigError> {
        let p = "email_trigger.brevo";
        check_url(&self.base_url).map_err(|m| at.error(None, &format!("{p}.base_url"), m))?;
        if !dry_run && !self.api_key.as_ref().is_some_and(SecretRef::is_set) {
            return Err(at.error(
                None,
                &format!("{p}.api_key"),
                "is required when dry_run = false, e.g. api_key = { env = \"BREVO_API_KEY\", ssm = \"/fluxo/email/brevo\" }",
            ));
        }
        Ok(())
    }
}

impl BrevoSequence {
    /// At least one list.
    pub fn validate(&self, at: &Located<'_>, path: &str) -> Result<(), ConfigError> {
        if self.list_ids.is_empty() || self.list_ids.contains(&0) {
            return Err(at.error(
                None,
                &format!("{path}.list_ids"),
                "must list one or more Brevo list ids",
            ));
        }
        Ok(())
    }
}
