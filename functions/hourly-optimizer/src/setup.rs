//! Cold start: settings from the environment, every client (AWS config, secret store, optimizer table,
//! config source) built once; and `engine`, which builds the engine from each config version (secrets,
//! HTTP clients, connectors).

use std::sync::Arc;
use std::time::Duration;

use fluxo::adapters::journal::DynamoOptimizerStore;
use fluxo::ads::Platforms;
use fluxo::ads::generic::{GenericClient, GenericConfig};
use fluxo::ads::google::{GoogleAdsClient, GoogleAdsConfig, GoogleAdsSettings, GoogleAuth};
use fluxo::ads::meta::{MetaClient, MetaConfig};
use fluxo::config::source::{ConfigSource, SourceError};
use fluxo::config::{ConfigError, LoadedConfig};
use fluxo::connector::{RetryPolicy, Secret, http_client};
use fluxo::domain::fingerprint::FingerprintSetupError;
use fluxo::error::{ErrorClass, Retryable};
use fluxo::optimizer::ports::OptimizerStore;
use fluxo::ports::{Clock, Randomness, SystemClock, ThreadRandomness};
use fluxo::secrets::{SecretError, SecretRef, SecretStore};
use fluxo::settings::{self, Env, SettingError, Source};
use fluxo::slack::{RunNotifier, SlackConfig, SlackNotifier, SlackPreview};

use crate::engine::Engine;

/// The engine as deployed: the configured platforms, the DynamoDB optimizer table, Slack or a preview.
pub type LiveEngine = Engine<Platforms, DynamoOptimizerStore, RunNotifier>;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `OPTIMIZER_TABLE`: snapshots, the journal and the per-entity change records.
    pub table: String,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_source(&Env)
    }

    /// Reads the settings from any source.
    pub fn from_source(src: &impl Source) -> Result<Self, SettingError> {
        Ok(Settings {
            table: settings::required(src, "OPTIMIZER_TABLE")?,
        })
    }
}

/// What a cold start builds once and every config version reuses.
pub struct ColdStart {
    /// The optimizer table.
    pub store: DynamoOptimizerStore,
    /// The secret store (environment, then SSM).
    pub secrets: SecretStore,
}

/// Settings, the AWS config and every client, once per cold start; the fingerprint key installed. A bad
/// setting fails here, by name. Returns the clients and the config source (`LiveConfig` takes it over).
pub async fn cold_start() -> Result<(ColdStart, ConfigSource), SetupError> {
    let (cold, source) = fluxo::lambda::Start::new("hourly-optimizer")
        .with_analytics()
        .with_fingerprint()
        .run(Settings::from_env)
        .await?;
    let cold = ColdStart {
        store: DynamoOptimizerStore::from_sdk_config(&cold.sdk_config, cold.settings.table),
        secrets: cold.secrets,
    };
    Ok((cold, source))
}

impl ColdStart {
    /// The live engine for one config version, on the wall clock and the thread's randomness.
    pub async fn build(&self, loaded: LoadedConfig) -> Result<LiveEngine, SetupError> {
        engine(
            &loaded,
            self.store.clone(),
            &self.secrets,
            Arc::new(SystemClock),
            Arc::new(ThreadRandomness),
        )
        .await
    }
}

/// A cold-start failure; each names the setting, file field or secret at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    ColdStart(#[from] fluxo::lambda::ColdStartError),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Fingerprint(#[from] FingerprintSetupError),
    #[error("secret {what}: {source}")]
    Secret { what: String, source: SecretError },
    #[error("invalid campaign: {0}")]
    Campaign(String),
    #[error("HTTP client could not be built: {0}")]
    Http(String),
}

impl Retryable for SetupError {
    fn class(&self) -> ErrorClass {
        match self {
            SetupError::Secret { source, .. } => source.class(),
            _ => ErrorClass::Permanent,
        }
    }
}

/// A secret's value through the store (the environment first, then SSM or Secrets Manager). `what`
/// names the setting in errors; the value is never logged.
async fn resolve(
    secrets: &SecretStore,
    what: &str,
    reference: &SecretRef,
) -> Result<Secret, SetupError> {
    secrets
        .resolve(reference)
        .await
        .map(Secret::new)
        .map_err(|source| SetupError::Secret {
            what: what.to_string(),
            source,
        })
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: max_attempts.max(1),
        ..RetryPolicy::default()
    }
}

/// The shared HTTP client settings: 5 s to connect, `timeout_secs` in total.
macro_rules! client {
    ($timeout_secs:expr) => {
        http_client(
            Duration::from_secs(5),
            Duration::from_secs(($timeout_secs as u64).max(1)),
        )
        .map_err(|e| SetupError::Http(e.to_string()))
    };
}

/// Google's credentials: a fixed access token, or the refresh-token flow.
async fn google_auth(
    g: &GoogleAdsSettings,
    secrets: &SecretStore,
) -> Result<GoogleAuth, SetupError> {
    match (
        &g.access_token,
        &g.oauth_client_id,
        &g.oauth_client_secret,
        &g.oauth_refresh_token,
    ) {
        (Some(token), ..) => Ok(GoogleAuth::Static(
            resolve(secrets, "optimizer.google_ads.access_token", token).await?,
        )),
        (None, Some(client_id), Some(client_secret), Some(refresh_token)) => {
            Ok(GoogleAuth::Refresh {
                token_url: g.oauth_token_url.clone(),
                client_id: client_id.clone(),
                client_secret: resolve(
                    secrets,
                    "optimizer.google_ads.oauth_client_secret",
                    client_secret,
                )
                .await?,
                refresh_token: resolve(
                    secrets,
                    "optimizer.google_ads.oauth_refresh_token",
                    refresh_token,
                )
                .await?,
            })
        }
        _ => Err(SetupError::Campaign(
            "optimizer.google_ads: give access_token or the oauth_* settings".into(),
        )),
    }
}

/// The platform clients for the config (only the platforms it configures).
pub async fn platforms(
    loaded: &LoadedConfig,
    secrets: &SecretStore,
) -> Result<Platforms, SetupError> {
    let o = &loaded.config.optimizer;
    let google_ads = match &o.google_ads {
        Some(g) => Some(GoogleAdsClient::new(
            client!(g.timeout_secs)?,
            GoogleAdsConfig {
                endpoint: g.endpoint.clone(),
                api_version: g.api_version.clone(),
                auth: google_auth(g, secrets).await?,
                login_customer_id: g.login_customer_id.clone(),
                retry: policy(g.max_attempts),
            },
        )),
        None => None,
    };
    let meta = match &o.meta {
        Some(m) => Some(MetaClient::new(
            client!(m.timeout_secs)?,
            MetaConfig {
                endpoint: m.endpoint.clone(),
                api_version: m.api_version.clone(),
                access_token: resolve(secrets, "optimizer.meta.access_token", &m.access_token)
                    .await?,
                retry: policy(m.max_attempts),
            },
        )),
        None => None,
    };
    let token = match &o.generic.token {
        Some(t) => Some(resolve(secrets, "optimizer.generic.token", t).await?),
        None => None,
    };
    let generic = GenericClient::new(
        client!(o.generic.timeout_secs)?,
        GenericConfig {
            token,
            retry: policy(o.generic.max_attempts),
        },
    );
    Ok(Platforms {
        google_ads,
        meta,
        generic,
    })
}

/// The Slack notifier, or a preview (rendered, not sent) when no webhook is configured.
pub async fn notifier(
    loaded: &LoadedConfig,
    secrets: &SecretStore,
) -> Result<RunNotifier, SetupError> {
    match &loaded.config.optimizer.slack {
        Some(slack) => Ok(RunNotifier::Slack(SlackNotifier::new(
            client!(10)?,
            SlackConfig {
                webhook_url: resolve(secrets, "optimizer.slack.webhook_url", &slack.webhook_url)
                    .await?,
                min_interval: Duration::from_millis(slack.min_interval_ms),
                retry: RetryPolicy {
                    max_attempts: 3,
                    base_delay: Duration::from_millis(500),
                    max_delay: Duration::from_secs(30),
                },
            },
        ))),
        None => Ok(RunNotifier::Preview(SlackPreview::default())),
    }
}

/// The engine over `store`, with the config's campaigns, platforms and notifier.
pub async fn engine<S: OptimizerStore>(
    loaded: &LoadedConfig,
    store: S,
    secrets: &SecretStore,
    clock: Arc<dyn Clock>,
    randomness: Arc<dyn Randomness>,
) -> Result<Engine<Platforms, S, RunNotifier>, SetupError> {
    let o = &loaded.config.optimizer;
    let campaigns = o.resolve_campaigns().map_err(SetupError::Campaign)?;
    let platforms = platforms(loaded, secrets).await?;
    let notifier = notifier(loaded, secrets).await?;
    Ok(Engine::new(
        platforms,
        store,
        notifier,
        clock,
        randomness,
        campaigns,
        o.engine_settings(),
        loaded.version.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_optimizer_table_is_named() {
        let err = Settings::from_source(&[("OTHER", "x")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting OPTIMIZER_TABLE is required but not set"
        );
        let settings = Settings::from_source(&[("OPTIMIZER_TABLE", "t")]).unwrap();
        assert_eq!(settings.table, "t");
    }
}
