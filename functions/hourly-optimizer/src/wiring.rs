//! Builds the optimizer engine at cold start: config file, secrets (env or SSM), HTTP clients, connectors.

use std::sync::Arc;
use std::time::Duration;

use fluxo::ads::Platforms;
use fluxo::ads::generic::{GenericClient, GenericConfig};
use fluxo::ads::google::{GoogleAdsClient, GoogleAdsConfig, GoogleAuth};
use fluxo::ads::meta::{MetaClient, MetaConfig};
use fluxo::config::{ConfigError, LoadedConfig};
use fluxo::connector::{RetryPolicy, Secret, http_client};
use fluxo::error::{ErrorClass, Retryable};
use fluxo::optimizer::engine::Engine;
use fluxo::optimizer::ports::OptimizerStore;
use fluxo::ports::{Clock, Randomness};
use fluxo::secrets::{SecretError, SecretRef, SsmSecrets};
use fluxo::settings::SettingError;
use fluxo::slack::{RunNotifier, SlackConfig, SlackNotifier, SlackPreview};

/// A cold-start failure; each names the setting, file field or secret at fault.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("secret {what}: {source}")]
    Secret { what: String, source: SecretError },
    #[error("invalid campaign: {0}")]
    Campaign(String),
    #[error("HTTP client could not be built: {0}")]
    Http(String),
}

impl Retryable for WiringError {
    fn class(&self) -> ErrorClass {
        match self {
            WiringError::Secret { source, .. } => source.class(),
            _ => ErrorClass::Permanent,
        }
    }
}

/// Where secrets are read: the environment only (tests, demo) or the environment then SSM (Lambda).
pub enum Secrets {
    EnvOnly,
    Ssm(SsmSecrets),
}

impl Secrets {
    /// The secret's value. `what` names the setting in errors; the value is never logged.
    pub async fn resolve(&self, what: &str, reference: &SecretRef) -> Result<Secret, WiringError> {
        let value = match self {
            Secrets::EnvOnly => reference
                .from_env()
                .ok_or_else(|| SecretError::NotFound(reference.describe())),
            Secrets::Ssm(ssm) => ssm.resolve(reference).await,
        };
        value
            .map(Secret::new)
            .map_err(|source| WiringError::Secret {
                what: what.to_string(),
                source,
            })
    }
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
        .map_err(|e| WiringError::Http(e.to_string()))
    };
}

/// Google's credentials: a fixed access token, or the refresh-token flow.
async fn google_auth(
    g: &fluxo::config::optimizer::GoogleAdsSettings,
    secrets: &Secrets,
) -> Result<GoogleAuth, WiringError> {
    match (
        &g.access_token,
        &g.oauth_client_id,
        &g.oauth_client_secret,
        &g.oauth_refresh_token,
    ) {
        (Some(token), ..) => Ok(GoogleAuth::Static(
            secrets
                .resolve("optimizer.google_ads.access_token", token)
                .await?,
        )),
        (None, Some(client_id), Some(client_secret), Some(refresh_token)) => {
            Ok(GoogleAuth::Refresh {
                token_url: g.oauth_token_url.clone(),
                client_id: client_id.clone(),
                client_secret: secrets
                    .resolve("optimizer.google_ads.oauth_client_secret", client_secret)
                    .await?,
                refresh_token: secrets
                    .resolve("optimizer.google_ads.oauth_refresh_token", refresh_token)
                    .await?,
            })
        }
        _ => Err(WiringError::Campaign(
            "optimizer.google_ads: give access_token or the oauth_* settings".into(),
        )),
    }
}

/// The platform clients for the config (only the platforms it configures).
pub async fn platforms(loaded: &LoadedConfig, secrets: &Secrets) -> Result<Platforms, WiringError> {
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
                access_token: secrets
                    .resolve("optimizer.meta.access_token", &m.access_token)
                    .await?,
                retry: policy(m.max_attempts),
            },
        )),
        None => None,
    };
    let token = match &o.generic.token {
        Some(t) => Some(secrets.resolve("optimizer.generic.token", t).await?),
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
    secrets: &Secrets,
) -> Result<RunNotifier, WiringError> {
    match &loaded.config.optimizer.slack {
        Some(slack) => Ok(RunNotifier::Slack(SlackNotifier::new(
            client!(10)?,
            SlackConfig {
                webhook_url: secrets
                    .resolve("optimizer.slack.webhook_url", &slack.webhook_url)
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
    secrets: &Secrets,
    clock: Arc<dyn Clock>,
    randomness: Arc<dyn Randomness>,
) -> Result<Engine<Platforms, S, RunNotifier>, WiringError> {
    let o = &loaded.config.optimizer;
    let campaigns = o.resolve_campaigns().map_err(WiringError::Campaign)?;
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
