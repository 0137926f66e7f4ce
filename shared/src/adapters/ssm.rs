//! The secret store: SSM Parameter Store (SDK) and, with `sigv4`, Secrets Manager (signed calls), behind
//! [`SecretRef`]s, with a time-bounded cache.

use crate::secrets::{DEFAULT_CACHE_TTL, SecretError, SecretRef, named};

/// The former name of [`SecretStore`].
pub type SsmSecrets = SecretStore;

/// Reads secrets from the environment, then SSM Parameter Store (with decryption), then Secrets Manager,
/// keeping each value read from a store for [`DEFAULT_CACHE_TTL`] (a config reload does not re-read
/// them; two references to one secret read it once).
pub struct SecretStore {
    ssm: aws_sdk_ssm::Client,
    #[cfg(feature = "sigv4")]
    secrets_manager: Option<crate::adapters::signed::SignedClient>,
    cache: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
    ttl: std::time::Duration,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

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
