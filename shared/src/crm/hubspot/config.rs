//! Settings of the HubSpot connector: base URL, token reference, batch size and the property mapping.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{ConfigError, Located};
use crate::crm::config::{FieldSource, check_url, validate_mapping};
use crate::secrets::SecretRef;

/// Most inputs HubSpot takes in one batch call.
pub const MAX_BATCH: usize = 100;

/// `[lead_router.crm.hubspot]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    /// API base URL.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Private-app or OAuth access token, by reference. Optional in dry-run.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Inputs per batch-upsert call (1-100).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Contact properties: key = HubSpot property, value = field (or list, or `{ value = "..." }`).
    /// `email` is always sent: it is the upsert's id property.
    #[serde(default = "default_properties")]
    pub properties: BTreeMap<String, FieldSource>,
}

fn default_base_url() -> String {
    "https://api.hubapi.com".to_string()
}

fn default_batch() -> usize {
    MAX_BATCH
}

/// First name, last name, company and phone. Lead status is left out by default: HubSpot accepts only
/// the portal's own option values for `hs_lead_status`.
pub fn default_properties() -> BTreeMap<String, FieldSource> {
    BTreeMap::from([
        (
            "firstname".to_string(),
            FieldSource::Field("first_name".into()),
        ),
        (
            "lastname".to_string(),
            FieldSource::Field("last_name".into()),
        ),
        ("company".to_string(), FieldSource::Field("company".into())),
        ("phone".to_string(), FieldSource::Field("phone".into())),
    ])
}

impl HubSpotConfig {
    /// Checks the URL, the batch size, the mapping, and the token unless in dry-run.
    pub fn validate(&self, at: &Located<'_>, dry_run: bool) -> Result<(), ConfigError> {
        let p = "lead_router.crm.hubspot";
        check_url(&self.base_url).map_err(|m| at.error(None, &format!("{p}.base_url"), m))?;
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(at.error(
                None,
                &format!("{p}.batch_size"),
                format!("must be between 1 and {MAX_BATCH}"),
            ));
        }
        validate_mapping(at, &format!("{p}.properties"), &self.properties)?;
        if !dry_run && !self.token.as_ref().is_some_and(SecretRef::is_set) {
            return Err(at.error(
                None,
                &format!("{p}.token"),
                "is required when dry_run = false, e.g. token = { env = \"HUBSPOT_TOKEN\", ssm = \"/fluxo/hubspot/token\" }",
            ));
        }
        Ok(())
    }
}
