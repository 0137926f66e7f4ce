//! Cold-start set-up: settings from the environment, the secret, the clients; the router built from each
//! config version (`fluxo::config::live` loads it and swaps in new versions).

use std::time::Duration;

use fluxo::adapters::profiles::DynamoProfiles;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::config::source::ConfigSource;
use fluxo::config::{ConfigError, LoadedConfig};
use fluxo::connector::Secret;
use fluxo::crm::{Crm, CrmSetupError};
use fluxo::lambda::{ColdStartError, Start};
use fluxo::ports::SystemClock;
use fluxo::routing::RuleSet;
use fluxo::secrets::{SecretError, SecretStore};
use fluxo::settings::{self, Env, SettingError, Source};

use crate::handler::Router;

/// The router as deployed: DynamoDB profiles and ledger, SQS queues, the configured CRM, the wall clock.
pub type LiveRouter = Router<DynamoProfiles, DynamoProfiles, Crm, SqsQueue, SystemClock>;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LEADS_TABLE`: profiles and effect records.
    pub table: String,
    /// `EMAIL_QUEUE_URL`.
    pub email_queue_url: String,
    /// `AUDIENCE_QUEUE_URL`.
    pub audience_queue_url: String,
    /// `LEADS_QUEUE_URL`: the queue this function consumes, where a message is held back while the CRM
    /// is paused.
    pub leads_queue_url: String,
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
            email_queue_url: settings::required(src, "EMAIL_QUEUE_URL")?,
            audience_queue_url: settings::required(src, "AUDIENCE_QUEUE_URL")?,
            leads_queue_url: settings::required(src, "LEADS_QUEUE_URL")?,
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
    #[error("lead_router.crm token: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Crm(#[from] CrmSetupError),
    #[error("lead_router rules: {0}")]
    Rules(#[from] fluxo::routing::rules::RuleError),
}

/// What a cold start builds once and every config version reuses: the settings, the AWS config and the
/// secret store.
pub type ColdStart = fluxo::lambda::ColdStart<Settings>;

/// Settings, the AWS config and every client, once per cold start; the analytics queue and the
/// fingerprint key installed. A bad setting fails here, by name. Returns the clients and the config
/// source (`LiveConfig` takes it over).
pub async fn cold_start() -> Result<(ColdStart, ConfigSource), SetupError> {
    Ok(Start::new("lead-router")
        .with_analytics()
        .with_fingerprint()
        .run(Settings::from_env)
        .await?)
}

/// The live router for one config version, from what the cold start built.
pub async fn rebuild(cold: &ColdStart, loaded: LoadedConfig) -> Result<LiveRouter, SetupError> {
    build(&cold.sdk_config, &cold.settings, &cold.secrets, loaded).await
}

/// Builds the live router for one config version: reads the CRM secret (cached by `secrets`) and builds
/// every client.
pub async fn build(
    sdk_config: &aws_config::SdkConfig,
    settings: &Settings,
    secrets: &SecretStore,
    loaded: LoadedConfig,
) -> Result<LiveRouter, SetupError> {
    let router_config = &loaded.config.lead_router;
    let rules = RuleSet::compile(router_config)?;
    let token = match Crm::token_ref(&router_config.crm) {
        Some(reference) => Some(Secret::new(secrets.resolve(reference).await?)),
        None => None,
    };
    let concurrency = router_config.processing.concurrency;
    let crm = Crm::from_config(&router_config.crm, token, concurrency)?;
    let profiles = DynamoProfiles::from_sdk_config(sdk_config, settings.table.clone());
    tracing::info!(
        config = %loaded.origin,
        config_version = %loaded.version,
        rules = rules.len(),
        crm = %fluxo::crm::CrmConnector::name(&crm),
        "lead-router configured"
    );
    Ok(Router {
        profiles: profiles.clone(),
        ledger: profiles,
        crm,
        email_queue: SqsQueue::from_sdk_config(sdk_config, settings.email_queue_url.clone()),
        audience_queue: SqsQueue::from_sdk_config(sdk_config, settings.audience_queue_url.clone()),
        leads_queue: SqsQueue::from_sdk_config(sdk_config, settings.leads_queue_url.clone()),
        clock: SystemClock,
        rules,
        concurrency,
        lease: Duration::from_secs(router_config.processing.lease_secs),
        config_version: loaded.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_queue_url_is_named() {
        let src = [("LEADS_TABLE", "t"), ("EMAIL_QUEUE_URL", "e")];
        let err = Settings::from_source(&src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting AUDIENCE_QUEUE_URL is required but not set"
        );
    }

    #[test]
    fn the_leads_queue_url_is_required_to_hold_messages_back() {
        let src = [
            ("LEADS_TABLE", "t"),
            ("EMAIL_QUEUE_URL", "e"),
            ("AUDIENCE_QUEUE_URL", "a"),
        ];
        let err = Settings::from_source(&src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting LEADS_QUEUE_URL is required but not set"
        );
        let src = [
            ("LEADS_TABLE", "t"),
            ("EMAIL_QUEUE_URL", "e"),
            ("AUDIENCE_QUEUE_URL", "a"),
            ("LEADS_QUEUE_URL", "l"),
        ];
        assert_eq!(Settings::from_source(&src).unwrap().leads_queue_url, "l");
    }
}
