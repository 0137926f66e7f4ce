//! Settings of a `meta_lead_ads` source: the app secret (and the previous one while it rotates), the
//! verify token of the subscription handshake, the Page token for the Graph API, and the field mapping.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secrets::SecretRef;

/// `[[sources]] kind = "meta_lead_ads"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaLeadAdsConfig {
    /// The source's name: its routes are `GET` and `POST /leads/{name}`.
    pub name: String,
    /// The Meta app's secret (signs every notification), by reference.
    pub app_secret: SecretRef,
    /// The app secret being rotated out; notifications signed with it are accepted too.
    #[serde(default)]
    pub previous_app_secret: Option<SecretRef>,
    /// The verify token typed in the app's Webhooks settings, by reference.
    pub verify_token: SecretRef,
    /// A Page access token with `leads_retrieval`, by reference.
    pub page_token: SecretRef,
    /// The Graph API base, with its version.
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    /// Lead-ad field name (a custom question's key) -> Fluxo field. Standard fields (`email`,
    /// `full_name`, `phone_number`, `company_name`...) need no entry; unlisted questions are kept as
    /// custom fields.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The checkbox key of the marketing consent in the form's custom disclaimer. Unset: consent is
    /// granted when every checkbox of the disclaimer was ticked.
    #[serde(default)]
    pub consent_checkbox: Option<String>,
    /// The form's disclaimer text (or its version label), recorded with the consent.
    #[serde(default)]
    pub consent_text: Option<String>,
}

/// Graph API v25.0.
pub fn default_graph_url() -> String {
    "https://graph.facebook.com/v25.0".to_string()
}
