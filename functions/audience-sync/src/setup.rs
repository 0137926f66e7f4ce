//! Cold-start set-up: settings from the environment, the clients, and the syncer built from each
//! config version (`fluxo::config::live` loads it and swaps in new versions).

use fluxo::adapters::memberships::DynamoMemberships;
use fluxo::audience::{AudienceSecrets, AudienceSetupError, Audiences};
use fluxo::config::source::ConfigSource;
use fluxo::config::{ConfigError, LoadedConfig};
use fluxo::connector::Secret;
use fluxo::lambda::{ColdStartError, Start};
use fluxo::ports::SystemClock;
use fluxo::secrets::{SecretError, SecretStore};
use fluxo::settings::{self, Env, SettingError, Source};

use crate::sync::Syncer;

/// The syncer as deployed: the DynamoDB ledger, the configured platforms, the wall clock.
pub type LiveSync = Syncer<DynamoMemberships, Audiences, SystemClock>;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LEADS_TABLE`: profiles (read) and the membership ledger.
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
            table: settings::required(src, "LEADS_TABLE")?,
        })
    }
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    ColdStart(#[from] ColdStartError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("audience_sync {0}: {1}")]
    Secret(&'static str, SecretError),
    #[error(transparent)]
    Audiences(#[from] AudienceSetupError),
    #[error("audience_sync.consent: {0}")]
    Consent(String),
}

/// What a cold start builds once and every config version reuses: the settings, the AWS config and the
/// secret store.
pub type ColdStart = fluxo::lambda::ColdStart<Settings>;

/// Settings, the AWS config and every client, once per cold start. A bad setting fails here, by name.
/// Returns the clients and the config source (`LiveConfig` takes it over).
pub async fn cold_start() -> Result<(ColdStart, ConfigSource), SetupError> {
    Ok(Start::new("audience-sync")
        .with_analytics()
        .run(Settings::from_env)
        .await?)
}

/// The live syncer for one config version, from what the cold start built.
pub async fn rebuild(cold: &ColdStart, loaded: LoadedConfig) -> Result<LiveSync, SetupError> {
    build(&cold.sdk_config, &cold.settings, &cold.secrets, loaded).await
}

/// Builds the syncer for one config version: resolves the platform secrets (cached by `secrets`) and
/// builds every client.
pub async fn build(
    sdk_config: &aws_config::SdkConfig,
    settings: &Settings,
    secrets: &SecretStore,
    loaded: LoadedConfig,
) -> Result<LiveSync, SetupError> {
    let config = loaded.config.audience_sync;
    let mut resolved = AudienceSecrets::default();
    for (name, reference) in Audiences::secret_refs(&config) {
        let value = Secret::new(
            secrets
                .resolve(reference)
                .await
                .map_err(|e| SetupError::Secret(name, e))?,
        );
        match name {
            "meta_token" => resolved.meta_token = Some(value),
            "google_token" => resolved.google_token = Some(value),
            "google_client_secret" => resolved.google_client_secret = Some(value),
            _ => resolved.google_refresh_token = Some(value),
        }
    }
    let connector = Audiences::from_config(&config, resolved)?;
    tracing::info!(
        config = %loaded.origin,
        config_version = %loaded.version,
        audiences = config.audiences.len(),
        "audience-sync configured"
    );
    Syncer::new(
        DynamoMemberships::from_sdk_config(sdk_config, settings.table.clone()),
        connector,
        SystemClock,
        config,
        loaded.version,
    )
    .map_err(SetupError::Consent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_table_is_named() {
        let src: [(&str, &str); 0] = [];
        let err = Settings::from_source(&src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting LEADS_TABLE is required but not set"
        );
    }
}
