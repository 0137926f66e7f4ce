//! Secrets by reference: the config names where a secret lives (an env var locally, an SSM parameter or a
//! Secrets Manager secret in AWS), never the value.

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

fn named(v: &Option<String>) -> Option<&str> {
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

/// The former name of [`SecretStore`].
#[cfg(feature = "ssm")]
pub type SsmSecrets = SecretStore;

/// Reads secrets from the environment, then SSM Parameter Store (with decryption), then Secrets Manager,
/// keeping each value read from a store for [`DEFAULT_CACHE_TTL`] (a config reload does not re-read
/// them; two references to one secret read it once).
#[cfg(feature = "ssm")]
pub struct SecretStore {
    ssm: aws_sdk_ssm::Client,
    #[cfg(feature = "sigv4")]
    secrets_manager: Option<crate::adapters::signed::SignedClient>,
    cache: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
    ttl: std::time::Duration,
}

#[cfg(feature = "ssm")]
impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "ssm")]
impl SecretStore {
    /// Wraps an SSM client built once in `main`; Secrets Manager references are refused by this store.
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SecretStore {
            ssm: client,
            #[cfg(feature = "sigv4")]
            secrets_manager: None,
            cache: Default::default(),
            ttl: DEFAULT_CACHE_TTL,
        }
    }

    /// Builds both stores' clients from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        let store = Self::new(aws_sdk_ssm::Client::new(config));
        #[cfg(feature = "sigv4")]
        let store = SecretStore {
            secrets_manager: crate::adapters::signed::SignedClient::from_sdk_config(config).ok(),
            ..store
        };
        store
    }

    /// Keeps values for `ttl` instead of [`DEFAULT_CACHE_TTL`].
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cached(&self, key: &str) -> Option<String> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn remember(&self, key: String, value: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (value.to_string(), std::time::Instant::now()));
        }
    }

    /// Resolves a reference: the env var when set, otherwise the SSM SecureString, otherwise the
    /// Secrets Manager secret.
    pub async fn resolve(&self, reference: &SecretRef) -> Result<String, SecretError> {
        if let Some(value) = reference.from_env() {
            return Ok(value);
        }
        let (key, fetched) = if let Some(name) = named(&reference.ssm) {
            let key = format!("ssm:{name}");
            if let Some(v) = self.cached(&key) {
                return Ok(v);
            }
            (key, self.read_ssm(reference, name).await?)
        } else if let Some(id) = named(&reference.secretsmanager) {
            let key = format!("secretsmanager:{id}");
            if let Some(v) = self.cached(&key) {
                return Ok(v);
            }
            (key, self.read_secrets_manager(reference, id).await?)
        } else {
            return Err(SecretError::NotFound(reference.describe()));
        };
        self.remember(key, &fetched);
        Ok(fetched)
    }

    async fn read_ssm(&self, reference: &SecretRef, name: &str) -> Result<String, SecretError> {
        let out = self
            .ssm
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

    /// Without the `sigv4` feature, a function links no Secrets Manager client.
    #[cfg(not(feature = "sigv4"))]
    async fn read_secrets_manager(
        &self,
        _reference: &SecretRef,
        _id: &str,
    ) -> Result<String, SecretError> {
        Err(SecretError::Rejected(
            "this function reads secrets from SSM only".into(),
        ))
    }

    #[cfg(feature = "sigv4")]
    async fn read_secrets_manager(
        &self,
        reference: &SecretRef,
        id: &str,
    ) -> Result<String, SecretError> {
        use crate::adapters::signed::{Service, SignedError};
        let client = self.secrets_manager.as_ref().ok_or_else(|| {
            SecretError::Rejected("no Secrets Manager client in this store".into())
        })?;
        let url = match client.endpoint_override() {
            Some(endpoint) => format!("{endpoint}/"),
            None => {
                let region = client
                    .region()
                    .map_err(|e| SecretError::Rejected(e.to_string()))?;
                format!("https://secretsmanager.{region}.amazonaws.com/")
            }
        };
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_string()),
            ("x-amz-target", "secretsmanager.GetSecretValue".to_string()),
        ];
        let body = serde_json::json!({ "SecretId": id })
            .to_string()
            .into_bytes();
        let reply = client
            .send(Service::SecretsManager, "POST", &url, &headers, body)
            .await
            .map_err(|e| match e {
                SignedError::Transport(p) => SecretError::Unavailable(p),
                SignedError::Setup(p) => SecretError::Rejected(p),
            })?;
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        if reply.status == 200 {
            return json["SecretString"]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| SecretError::NotFound(reference.describe()));
        }
        let kind = json["__type"].as_str().unwrap_or("unknown");
        let kind = kind.rsplit('#').next().unwrap_or(kind).to_string();
        Err(match (reply.status, kind.as_str()) {
            (_, "ResourceNotFoundException") => SecretError::NotFound(reference.describe()),
            (s, _) if s >= 500 || s == 429 || kind == "ThrottlingException" => {
                SecretError::Unavailable(kind)
            }
            _ => SecretError::Rejected(kind),
        })
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
