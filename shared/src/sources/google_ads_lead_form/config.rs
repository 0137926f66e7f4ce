//! Settings of a `google_ads_lead_form` source: the webhook key (and the previous one while it rotates),
//! and whether test leads go on to destinations.

use serde::Deserialize;

use crate::secrets::SecretRef;

/// `[[sources]] kind = "google_ads_lead_form"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsLeadFormConfig {
    /// The source's name: its route is `POST /leads/{name}`.
    pub name: String,
    /// The key pasted in the form's webhook settings, by reference.
    pub google_key: SecretRef,
    /// The key being rotated out; leads carrying it are accepted too.
    #[serde(default)]
    pub previous_google_key: Option<SecretRef>,
    /// Whether `is_test` leads (the form builder's "Send test data") go on to the lead-router. Default
    /// false: they are stored, marked as tests, and go nowhere.
    #[serde(default)]
    pub forward_tests: bool,
}
