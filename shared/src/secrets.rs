//! Secrets by reference: the config names where a secret lives (an env var locally, SSM in AWS), never the value.

use serde::Deserialize;

use crate::error::{ErrorClass, Retryable};

/// Where a secret comes from: `{ env = "CRM_TOKEN", ssm = "/fluxo/crm/token" }`.
///
/// The environment variable wins when it is set (local runs, tests). Otherwise the SSM Parameter Store
/// SecureString is read once at cold start and kept for the life of the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Environment variable holding the value.
    #[serde(default)]
    pub env: Option<String>,
    /// SSM parameter name (SecureString) holding the value.
    #[serde(default)]
    pub ssm: Option<String>,
}

impl SecretRef {
    /// Whether the reference names at least one place.
    pub fn is_set(&self) -> bool {
        self.env.as_deref().is_some_and(|s| !s.trim().is_empty())
            || self.ssm.as_deref().is_some_and(|s| !s.trim().is_empty())
    }

    /// Where the secret is looked up, for error messages (names only, never values).
    pub fn describe(&self) -> String {
        match (&self.env, &self.ssm) {
            (Some(e), Some(s)) => format!("env {e} or SSM parameter {s}"),
            (Some(e), None) => format!("env {e}"),
            (None, Some(s)) => format!("SSM parameter {s}"),
            (None, None) => "nowhere".to_string(),
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

/// Reads secrets from the environment, then from SSM Parameter Store (with decryption).
#[cfg(feature = "ssm")]
#[derive(Debug, Clone)]
pub struct SsmSecrets {
    client: aws_sdk_ssm::Client,
}

#[cfg(feature = "ssm")]
impl SsmSecrets {
    /// Wraps an SSM client built once in `main`.
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmSecrets { client }
    }

    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_ssm::Client::new(config))
    }

    /// Resolves a reference: the env var when set, otherwise the SSM SecureString.
    pub async fn resolve(&self, reference: &SecretRef) -> Result<String, SecretError> {
        if let Some(value) = reference.from_env() {
            return Ok(value);
        }
        let Some(name) = reference.ssm.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Err(SecretError::NotFound(reference.describe()));
        };
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_ssm::error::ProvideErrorMetadata;
                let code = e.code().unwrap_or("unknown").to_string();
                match code.as_str() {
                    "ParameterNotFound" | "ParameterVersionNotFound" => {
                        SecretError::NotFound(reference.describe())
                    }
                    "AccessDeniedException" | "ValidationException" => SecretError::Rejected(code),
                    _ => SecretError::Unavailable(code),
                }
            })?;
        out.parameter
            .and_then(|p| p.value)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SecretError::NotFound(reference.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_describes_where_it_looks_without_any_value() {
        let r = SecretRef {
            env: Some("CRM_TOKEN".into()),
            ssm: Some("/fluxo/crm/token".into()),
        };
        assert_eq!(
            r.describe(),
            "env CRM_TOKEN or SSM parameter /fluxo/crm/token"
        );
        assert!(r.is_set());
        assert!(!SecretRef::default().is_set());
    }
}
