//! Cold-start set-up: settings from the environment, the AWS clients, the secret store and the config
//! source; `build` makes the trigger of each config version (`fluxo::config::live` swaps in new ones).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fluxo::adapters::email::{DynamoEmail, SqsDelayed};
use fluxo::adapters::profiles::DynamoProfiles;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::config::live::{LiveConfig, StartError};
use fluxo::config::{ConfigError, LoadedConfig};
use fluxo::connector::Secret;
use fluxo::email::{EmailPlatforms, EmailSetupError};
use fluxo::lambda::{ColdStart, ColdStartError, Start};
use fluxo::ports::SystemClock;
use fluxo::secrets::SecretError;
use fluxo::settings::{self, Env, SettingError, Source};
use tokio::sync::Semaphore;

use crate::trigger::Trigger;

/// The trigger as deployed: DynamoDB ledger and records, profiles, the email queue, the wall clock.
pub type LiveTrigger = Trigger<DynamoEmail, DynamoProfiles, SqsDelayed, SystemClock>;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LEADS_TABLE`: profiles, intake records and the email ledger.
    pub table: String,
    /// `EMAIL_QUEUE_URL`: the queue this function consumes; delayed recommendations go back to it.
    pub email_queue_url: String,
    /// `AUDIENCE_QUEUE_URL`: where an erasure sends `audience.remove`.
    pub audience_queue_url: String,
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
        })
    }
}

/// Why the function could not start, or a config version could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    ColdStart(#[from] ColdStartError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("email_trigger secret: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Platforms(#[from] EmailSetupError),
    #[error(transparent)]
    Crm(#[from] fluxo::crm::CrmSetupError),
    #[error("config: {0}")]
    Start(String),
}

/// Clients built once per cold start: the settings, the AWS config and the secret store.
pub type Clients = ColdStart<Settings>;

/// Everything the handler needs: the clients, the current trigger, and the audience queue for erasures.
pub struct Live {
    pub clients: Clients,
    pub config: LiveConfig<LiveTrigger>,
    pub audience_queue: SqsQueue,
}

impl Live {
    /// The trigger of the current config version (a new version is picked up within a minute).
    pub async fn current(&self) -> Arc<LiveTrigger> {
        self.config
            .current(|loaded| build(&self.clients, loaded))
            .await
    }
}

/// Cold start: settings, AWS config, the fingerprint key, the config source, the first trigger.
pub async fn start() -> Result<Live, SetupError> {
    let (clients, source) = Start::new("email-trigger")
        .with_fingerprint()
        .with_analytics()
        .run(Settings::from_env)
        .await?;
    let audience_queue = SqsQueue::from_sdk_config(
        &clients.sdk_config,
        clients.settings.audience_queue_url.clone(),
    );
    let config = LiveConfig::start(source, "email-trigger", |loaded| build(&clients, loaded))
        .await
        .map_err(|e: StartError<SetupError>| SetupError::Start(e.to_string()))?;
    Ok(Live {
        clients,
        config,
        audience_queue,
    })
}

/// Builds the trigger for one config version: reads the platforms' secrets (cached by the store).
pub async fn build(clients: &Clients, loaded: LoadedConfig) -> Result<LiveTrigger, SetupError> {
    let config = &loaded.config.email_trigger;
    let mut secrets = BTreeMap::new();
    for (platform, reference) in EmailPlatforms::secret_refs(config) {
        secrets.insert(
            platform,
            Secret::new(clients.secrets.resolve(reference).await?),
        );
    }
    let platforms = EmailPlatforms::from_config(config, secrets)?;
    // Erasures reach the CRM of [lead_router.crm] too, with its token.
    let crm_config = &loaded.config.lead_router.crm;
    let crm_token = match fluxo::crm::Crm::token_ref(crm_config) {
        Some(reference) => Some(Secret::new(clients.secrets.resolve(reference).await?)),
        None => None,
    };
    let crm = fluxo::crm::Crm::from_config(crm_config, crm_token, 1)?;
    tracing::info!(
        config = %loaded.origin,
        config_version = %loaded.version,
        mode = platforms.mode(),
        sequences = config.sequences.len(),
        "email-trigger configured"
    );
    let table = clients.settings.table.clone();
    Ok(Trigger {
        store: DynamoEmail::from_sdk_config(&clients.sdk_config, table.clone()),
        profiles: DynamoProfiles::from_sdk_config(&clients.sdk_config, table),
        queue: SqsDelayed::from_sdk_config(
            &clients.sdk_config,
            clients.settings.email_queue_url.clone(),
        ),
        clock: SystemClock,
        platforms,
        crm,
        calls: Arc::new(Semaphore::new(config.concurrency)),
        lease: Duration::from_secs(config.lease_secs),
        config_version: loaded.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_setting_is_named() {
        let src = [("LEADS_TABLE", "t"), ("EMAIL_QUEUE_URL", "e")];
        assert_eq!(
            Settings::from_source(&src).unwrap_err().to_string(),
            "setting AUDIENCE_QUEUE_URL is required but not set"
        );
    }
}
