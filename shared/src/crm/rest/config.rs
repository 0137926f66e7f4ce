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
    /// How an erasure deletes a person in this CRM. Without it, an erasure does not reach the CRM and its
    /// report says `not configured for erasure`.
    #[serde(default)]
    pub erase: Option<RestErase>,
}

/// `erase = { method = "DELETE", url = "https://api.crm.example/v1/leads/{email}" }`.
///
/// The URL may hold `{email}` (the lowercased email, percent-encoded as one path segment or query value)
/// and `{email_sha256}` (the lowercase hex SHA-256 of the lowercased email). `DELETE` sends no body;
/// `POST` sends `{"email": "<email>"}`. A status in `success_status` means deleted, one in
/// `gone_status` means there was nothing to delete; 408/425/429/5xx are retried (honouring
/// `Retry-After`); anything else fails the erasure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestErase {
    /// `DELETE` (default) or `POST`.
    #[serde(default)]
    pub method: EraseMethod,
    /// The URL template.
    pub url: Spanned<String>,
    /// Statuses that mean deleted. Default 200, 202, 204.
    #[serde(default = "default_erase_success")]
    pub success_status: Vec<u16>,
    /// Statuses that mean there was no such contact. Default 404, 410.
    #[serde(default = "default_gone")]
    pub gone_status: Vec<u16>,
}

/// The HTTP method of the REST CRM's erase call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EraseMethod {
    #[default]
    Delete,
    Post,
}

fn default_erase_success() -> Vec<u16> {
    vec![200, 202, 204]
}

fn default_gone() -> Vec<u16> {
    vec![404, 410]
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
        if let Some(erase) = &self.erase {
            let url = erase.url.get_ref();
            let probe = url.replace("{email_sha256}", "0").replace("{email}", "0");
            check_url(&probe)
                .map_err(|m| at.error(Some(erase.url.span()), &format!("{p}.erase.url"), m))?;
            if probe.contains(['{', '}']) {
                return Err(at.error(
                    Some(erase.url.span()),
                    &format!("{p}.erase.url"),
                    "the only placeholders are {email} and {email_sha256}",
                ));
            }
            if erase.success_status.is_empty()
                || erase
                    .success_status
                    .iter()
                    .any(|s| !(200..=299).contains(s))
            {
                return Err(at.error(
                    None,
                    &format!("{p}.erase.success_status"),
                    "must list one or more 2xx statuses",
                ));
            }
            if erase.gone_status.iter().any(|s| !(400..=499).contains(s)) {
                return Err(at.error(
                    None,
                    &format!("{p}.erase.gone_status"),
                    "must list 4xx statuses only",
                ));
            }
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
