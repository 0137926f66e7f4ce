//! Settings of the RD Station Marketing connector (`[email_trigger.rdstation]`) and of a sequence's
//! conversion.

use serde::Deserialize;

use crate::config::{ConfigError, Located};
use crate::crm::config::check_url;
use crate::secrets::SecretRef;

/// How calls are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RdAuth {
    /// The account's API key, as the `api_key` query parameter of `POST /platform/conversions`.
    #[default]
    ApiKey,
    /// An OAuth2 access token: `POST /platform/events?event_type=conversion` with `Authorization: Bearer`.
    Bearer,
}

/// `[email_trigger.rdstation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdStationConfig {
    /// `api_key` or `bearer`.
    #[serde(default)]
    pub auth: RdAuth,
    /// The API key or the access token, by reference. Optional in dry-run.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// API base URL.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Conversion recorded when a person withdraws consent (its `legal_bases` say `declined`).
    #[serde(default = "default_withdrawal")]
    pub withdrawal_conversion: String,
    /// Custom field (`cf_…`) receiving the recommended products' names, comma-separated.
    #[serde(default = "default_names_field")]
    pub recommendation_names_field: String,
    /// Custom field (`cf_…`) receiving the recommended products' URLs, space-separated.
    #[serde(default = "default_urls_field")]
    pub recommendation_urls_field: String,
}

fn default_base_url() -> String {
    "https://api.rd.services".to_string()
}
fn default_withdrawal() -> String {
    "fluxo_consentimento_retirado".to_string()
}
fn default_names_field() -> String {
    "cf_fluxo_produtos_recomendados".to_string()
}
fn default_urls_field() -> String {
    "cf_fluxo_links_recomendados".to_string()
}

/// A sequence's RD Station conversion.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdStationSequence {
    /// The `conversion_identifier`; the sequence's name when not given.
    #[serde(default)]
    pub conversion_identifier: Option<String>,
}

impl RdStationConfig {
    /// Checks the URL, the custom field names, and the token unless in dry-run.
    pub fn validate(&self, at: &Located<'_>, dry_run: bool) -> Result<(), ConfigError> {
        let p = "email_trigger.rdstation";
        check_url(&self.base_url).map_err(|m| at.error(None, &format!("{p}.base_url"), m))?;
        for (field, value) in [
            (
                "recommendation_names_field",
                &self.recommendation_names_field,
            ),
            ("recommendation_urls_field", &self.recommendation_urls_field),
        ] {
            if !value.starts_with("cf_") {
                return Err(at.error(
                    None,
                    &format!("{p}.{field}"),
                    "must be a custom field's API id, starting with cf_",
                ));
            }
        }
        if !dry_run && !self.token.as_ref().is_some_and(SecretRef::is_set) {
            return Err(at.error(
                None,
                &format!("{p}.token"),
                "is required when dry_run = false, e.g. token = { env = \"RDSTATION_API_KEY\", ssm = \"/fluxo/email/rdstation\" }",
            ));
        }
        Ok(())
    }
}
