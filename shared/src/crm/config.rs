//! The `[lead_router.crm]` table: which connector, dry-run, timeouts and retries, and the field mapping type.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::CrmContact;
use super::hubspot::config::HubSpotConfig;
use super::rest::config::RestConfig;
use crate::config::{ConfigError, Located};
use crate::domain::LeadId;
use crate::routing::fields::{Facts, FieldRef};
use crate::routing::profile::RoutingView;

/// Which CRM the router upserts leads into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// No CRM: the CRM step is skipped.
    #[default]
    None,
    /// The generic REST CRM of the article: one `POST` per lead.
    Rest,
    /// HubSpot contacts, batch upsert by email: one call per batch.
    Hubspot,
}

/// CRM connector settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    /// `none`, `rest` or `hubspot`.
    #[serde(default)]
    pub connector: ConnectorKind,
    /// Build and record the exact request on the lead's profile instead of sending it.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// TCP/TLS connect timeout, in milliseconds.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts within one invocation, the first included; then SQS redelivers.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff delay, in milliseconds (exponential, with jitter).
    #[serde(default = "default_base_ms")]
    pub base_delay_ms: u64,
    /// Longest wait between attempts, in milliseconds, whatever the vendor asks for.
    #[serde(default = "default_max_ms")]
    pub max_delay_ms: u64,
    /// Settings of the generic REST CRM.
    #[serde(default)]
    pub rest: Option<RestConfig>,
    /// Settings of HubSpot.
    #[serde(default)]
    pub hubspot: Option<HubSpotConfig>,
}

fn yes() -> bool {
    true
}
fn default_connect_ms() -> u64 {
    2_000
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    3
}
fn default_base_ms() -> u64 {
    200
}
fn default_max_ms() -> u64 {
    5_000
}

impl Default for CrmConfig {
    fn default() -> Self {
        CrmConfig {
            connector: ConnectorKind::None,
            dry_run: true,
            connect_timeout_ms: default_connect_ms(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_attempts(),
            base_delay_ms: default_base_ms(),
            max_delay_ms: default_max_ms(),
            rest: None,
            hubspot: None,
        }
    }
}

impl CrmConfig {
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Whole-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks ranges, URLs, mappings and that the chosen connector has its table and its token.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        let p = "lead_router.crm";
        if !(100..=60_000).contains(&self.connect_timeout_ms) {
            return Err(at.error(
                None,
                &format!("{p}.connect_timeout_ms"),
                "must be between 100 and 60000",
            ));
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err(at.error(
                None,
                &format!("{p}.timeout_ms"),
                "must be between 100 and 120000",
            ));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(at.error(
                None,
                &format!("{p}.max_attempts"),
                "must be between 1 and 10",
            ));
        }
        if self.base_delay_ms == 0
            || self.base_delay_ms > self.max_delay_ms
            || self.max_delay_ms > 60_000
        {
            return Err(at.error(
                None,
                &format!("{p}.base_delay_ms"),
                "must be above 0 and at most max_delay_ms, which must be at most 60000",
            ));
        }
        if let Some(rest) = &self.rest {
            rest.validate(at, self.dry_run)?;
        }
        if let Some(hubspot) = &self.hubspot {
            hubspot.validate(at, self.dry_run)?;
        }
        match self.connector {
            ConnectorKind::Rest if self.rest.is_none() => Err(at.error(
                None,
                &format!("{p}.rest"),
                "connector = \"rest\" needs a [lead_router.crm.rest] table",
            )),
            ConnectorKind::Hubspot if self.hubspot.is_none() => Err(at.error(
                None,
                &format!("{p}.hubspot"),
                "connector = \"hubspot\" needs a [lead_router.crm.hubspot] table",
            )),
            _ => Ok(()),
        }
    }
}

/// Where one CRM property takes its value: a field, a list of fields (the first non-empty wins), or
/// a fixed text (`{ value = "..." }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FieldSource {
    Field(String),
    FirstOf(Vec<String>),
    Fixed { value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Fields(Vec<FieldRef>),
    Fixed(String),
}

/// A compiled CRM property mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    entries: Vec<(String, Source)>,
}

impl Mapping {
    /// Resolves every field name. The error is `(property, message)`.
    pub fn compile(map: &BTreeMap<String, FieldSource>) -> Result<Self, (String, String)> {
        let mut entries = Vec::with_capacity(map.len());
        for (property, source) in map {
            if property.trim().is_empty() {
                return Err((
                    property.clone(),
                    "property names must not be empty".to_string(),
                ));
            }
            let source = match source {
                FieldSource::Fixed { value } => Source::Fixed(value.clone()),
                FieldSource::Field(f) => {
                    Source::Fields(vec![FieldRef::parse(f).map_err(|m| (property.clone(), m))?])
                }
                FieldSource::FirstOf(list) => {
                    if list.is_empty() {
                        return Err((property.clone(), "needs at least one field".to_string()));
                    }
                    Source::Fields(
                        list.iter()
                            .map(|f| FieldRef::parse(f))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|m| (property.clone(), m))?,
                    )
                }
            };
            entries.push((property.clone(), source));
        }
        Ok(Mapping { entries })
    }

    /// The contact a lead maps to. Properties without a value are left out.
    pub fn contact(&self, lead_id: &LeadId, view: &RoutingView<'_>) -> CrmContact {
        let properties = self
            .entries
            .iter()
            .filter_map(|(property, source)| {
                let value = match source {
                    Source::Fixed(v) => Some(v.clone()),
                    Source::Fields(fields) => fields
                        .iter()
                        .find_map(|f| view.get(f).map(|v| v.into_owned())),
                };
                value
                    .filter(|v| !v.is_empty())
                    .map(|v| (property.clone(), v))
            })
            .collect();
        CrmContact {
            lead_id: lead_id.clone(),
            email: view.profile.email.clone(),
            properties,
        }
    }
}

/// Validates a mapping table at `path`, naming the property in errors.
pub(crate) fn validate_mapping(
    at: &Located<'_>,
    path: &str,
    map: &BTreeMap<String, FieldSource>,
) -> Result<(), ConfigError> {
    Mapping::compile(map)
        .map(|_| ())
        .map_err(|(property, message)| at.error(None, &format!("{path}.{property}"), message))
}

/// Checks that a URL is absolute http(s) with a host.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with https:// or http://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(format!("`{url}` is not a valid URL"));
    }
    Ok(())
}
