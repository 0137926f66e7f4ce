//! Settings of a `standard_webhooks` source: its `whsec_` secret, and the previous one while it rotates.

use serde::Deserialize;

use crate::secrets::SecretRef;

/// `[[sources]] kind = "standard_webhooks"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksConfig {
    /// The source's name: its route is `POST /leads/{name}`.
    pub name: String,
    /// The signing secret (`whsec_` + base64), by reference.
    pub secret: SecretRef,
    /// The secret being rotated out; requests signed with it are accepted too.
    #[serde(default)]
    pub previous_secret: Option<SecretRef>,
}
