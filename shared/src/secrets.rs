//! Secrets by reference: the config names where a secret lives (an env var locally, an SSM parameter or a
//! Secrets Manager secret in AWS), never the value. The store that reads them is an AWS adapter
//! (`adapters::ssm`), re-exported here.

use serde::Deserialize;

use crate::error::{ErrorClass, Retryable};

/// Where a secret comes from: `{ env = "CRM_TOKEN", ssm = "/fluxo/crm/token" }` or
/// `{ env = "CRM_TOKEN", secretsmanager = "fluxo/crm/token" }`.
///
/// The environment variable wins when it is set (local runs, tests). Otherwise the SSM Parameter Store
/// SecureString, else the Secrets Manager secret (its `SecretString`, as is) is read and cached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the value.
    #[serde(default)]
    pub env: Option<String>,
    /// SSM parameter name (SecureString) holding the value.
    #[serde(default)]
    pub ssm: Option<String>,
    /// Secrets Manager secret name or ARN whose `SecretString` is the value.
    #[serde(default)]
    pub secretsmanager: Option<String>,
}

pub(crate) fn named(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl SecretRef {
    /// Whether the reference names at least one place.
    pub fn is_set(&self) -> bool {
        named(&self.env).is_some()
            || named(&self.ssm).is_some()
            || named(&self.secretsmanager).is_some()
    }

    /// Where the secret is looked up, for error messages (names only, never values).
    pub fn describe(&self) -> String {
        let places: Vec<String> = [
            named(&self.env).map(|e| format!("env {e}")),
            named(&self.ssm).map(|s| format!("SSM parameter {s}")),
            named(&self.secretsmanager).map(|s| format!("Secrets Manager secret {s}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if places.is_empty() {
            "nowhere".to_string()
        } else {
            places.join(" or ")
        }
    }

    /// The value from the environment, when the env var is set and non-empty.
    pub fn from_env(&self) -> Option<String> {
        let name = self.env.as_deref()?;
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// A secret that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret not found in {0}")]
    NotFound(String),
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    #[error("secret store refused the request: {0}")]
    Rejected(String),
}

impl Retryable for SecretError {
    fn class(&self) -> ErrorClass {
        match self {
            SecretError::Unavailable(_) => ErrorClass::Retryable,
            SecretError::NotFound(_) | SecretError::Rejected(_) => ErrorClass::Permanent,
        }
    }
}

/// How long a secret read from a store is kept before it is read again (rotation is picked up after it).
pub const DEFAULT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[cfg(feature = "ssm")]
pub use crate::adapters::ssm::{SecretStore, SsmSecrets};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_describes_where_it_looks_without_any_value() {
        let r = SecretRef {
            env: Some("CRM_TOKEN".into()),
            ssm: Some("/fluxo/crm/token".into()),
            secretsmanager: None,
        };
        assert_eq!(
            r.describe(),
            "env CRM_TOKEN or SSM parameter /fluxo/crm/token"
        );
        assert!(r.is_set());
        assert!(!SecretRef::default().is_set());
    }

    #[test]
    fn a_secrets_manager_reference_is_a_place_to_look() {
        let r: SecretRef = toml::from_str("secretsmanager = \"fluxo/crm/token\"").unwrap();
        assert!(r.is_set());
        assert_eq!(r.describe(), "Secrets Manager secret fluxo/crm/token");
    }
}
