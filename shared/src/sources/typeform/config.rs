//! Settings of a `typeform` source: its secret (and the previous one while it rotates) and how answers
//! map to Fluxo's fields.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secrets::SecretRef;

/// `[[sources]] kind = "typeform"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeformConfig {
    /// The source's name: its route is `POST /leads/{name}`.
    pub name: String,
    /// The webhook's secret, as set in Typeform, by reference.
    pub secret: SecretRef,
    /// The secret being rotated out; requests signed with it are accepted too.
    #[serde(default)]
    pub previous_secret: Option<SecretRef>,
    /// Answer field `ref` -> Fluxo field (`email`, `name`, `phone`, `company`, `consent`, or any custom
    /// name). Answers whose ref is not listed are kept as custom fields named by their ref.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}
