//! Settings of the generic REST CRM: URL, token reference, accepted statuses and the body mapping.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, Located};
use crate::crm::config::{FieldSource, check_url, validate_mapping};
use crate::secrets::SecretRef;

/// `[lead_router.crm.rest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Endpoint the lead is posted to, e.g. `https://api.crmdigital.com/v1/leads`.
    pub url: Spanned<String>,
    /// Bearer token, by reference. Optional in dry-run.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Statuses that mean the lead was accepted. The article: 201 only.
    #[serde(default = "default_success")]
    pub success_status: Vec<u16>,
    /// JSON body: key = property sent, value = field (or list of fields, or `{ value = "..." }`).
    #[serde(default = "default_body")]
    pub body: BTreeMap<String, FieldSource>,
}

fn default_success() -> Vec<u16> {
    vec![201]
}

/// The article's body: `{first_name, email, company, status}`. Its `first_name` holds the full name
/// ("Ana Silva"), so the full name comes first and the explicit first name is the fallback.
pub fn default_body() -> BTreeMap<String, FieldSource> {
    BTreeMap::from([
        (
            "first_name".to_string(),
            FieldSource::FirstOf(vec!["name".into(), "first_name".into()]),
        ),
        ("email".to_string(), FieldSource::Field("email".into())),
        ("company".to_string(), FieldSource::Field("company".into())),
        (
            "status".to_string(),
            FieldSource::Field("crm_status".into()),
        ),
    ])
}

impl RestConfig {
    /// Checks the URL, the statuses, the mapping, and the token unless in dry-run.
    pub fn validate(&self, at: &Located<'_>, dry_run: bool) -> Result<(), ConfigError> {
        let p = "lead_router.crm.rest";
        check_url(self.url.get_ref())
            .map_err(|m| at.error(Some(self.url.span()), &format!("{p}.url"), m))?;
        if self.success_status.is_empty()
            || self.success_status.iter().any(|s| !(200..=299).contains(s))
        {
            return Err(at.error(
                None,
                &format!("{p}.success_status"),
                "must list one or more 2xx statuses",
            ));
        }
        validate_mapping(at, &format!("{p}.body"), &self.body)?;
        if !self
            .body
            .values()
            .any(|s| *s == FieldSource::Field("email".into()))
        {
            return Err(at.error(
                None,
                &format!("{p}.body"),
                "must send the `email` field: it is the CRM's dedupe key",
            ));
        }
        if !dry_run && !self.token.as_ref().is_some_and(SecretRef::is_set) {
            return Err(at.error(
                Some(self.url.span()),
                &format!("{p}.token"),
                "is required when dry_run = false, e.g. token = { env = \"CRM_TOKEN\", ssm = \"/fluxo/crm/token\" }",
            ));
        }
        Ok(())
    }
}
