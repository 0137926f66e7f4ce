//! The cold start every function shares: its settings from the environment, the AWS config, the secret
//! store, the optional installs (analytics queue, fingerprint key), and the config source that
//! `LiveConfig` takes over. A function's `setup.rs` adds only its own clients and `build(..)`.

use crate::config::source::{ConfigSource, Location, SourceError};
use crate::domain::fingerprint::FingerprintSetupError;
use crate::secrets::SecretStore;
use crate::settings::{Env, SettingError};

/// What a cold start builds once and every config version reuses.
pub struct ColdStart<S> {
    /// The function's own settings.
    pub settings: S,
    /// The shared AWS config (credentials, region, `AWS_ENDPOINT_URL`); the clients are built from it.
    pub sdk_config: aws_config::SdkConfig,
    /// The secret store (environment, then SSM), caching what it reads.
    pub secrets: SecretStore,
}

/// Why a cold start failed; each names the setting or secret at fault.
#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    /// A setting is missing or invalid.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The config source cannot be built.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The fingerprint key cannot be read.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintSetupError),
}

/// How one function starts: its name and what it installs besides the common parts.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    function: &'static str,
    #[cfg(feature = "sqs")]
    analytics: bool,
    fingerprint: bool,
}

impl Start {
    /// The cold start of `function` (its name in logs and analytics records).
    pub fn new(function: &'static str) -> Self {
        Start {
            function,
            #[cfg(feature = "sqs")]
            analytics: false,
            fingerprint: false,
        }
    }

    /// Also installs the analytics queue named by `ANALYTICS_QUEUE_URL`, if set.
    #[cfg(feature = "sqs")]
    pub fn with_analytics(self) -> Self {
        Start {
            analytics: true,
            ..self
        }
    }

    /// Also installs the fingerprint key (read through the secret store), for the keyed hashes that stand
    /// in for emails in logs and records.
    pub fn with_fingerprint(self) -> Self {
        Start {
            fingerprint: true,
            ..self
        }
    }

    /// Reads the settings (`settings`, e.g. `Settings::from_env`), loads the AWS config, builds the secret
    /// store, installs what was asked for, and builds the config source from `CONFIG_BUCKET` /
    /// `CONFIG_FILE`, whose first read is made while the fingerprint key is read (the source's first
    /// `load` returns it). A bad setting fails here, by name.
    pub async fn run<S>(
        self,
        settings: impl FnOnce() -> Result<S, SettingError>,
    ) -> Result<(ColdStart<S>, ConfigSource), ColdStartError> {
        let settings = settings()?;
        let sdk_config = crate::adapters::load_aws_config().await;
        let secrets = SecretStore::from_sdk_config(&sdk_config);
        #[cfg(feature = "sqs")]
        if self.analytics {
            crate::analytics::install_queue(self.function, &sdk_config);
        }
        let mut source =
            ConfigSource::from_sdk_config(Location::from_settings(&Env)?, &sdk_config)?;
        // The fingerprint key (SSM) and the config (S3) are two round trips: made at the same time.
        let fingerprint = async {
            match self.fingerprint {
                true => crate::domain::fingerprint::install_from(&secrets).await,
                false => Ok(()),
            }
        };
        let ((), installed) = tokio::join!(source.prefetch(), fingerprint);
        installed?;
        tracing::debug!(function = self.function, "cold start done");
        let cold = ColdStart {
            settings,
            sdk_config,
            secrets,
        };
        Ok((cold, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_setting_fails_the_cold_start_by_name() {
        let result = Start::new("test")
            .run(|| crate::settings::required(&Env, "FLUXO_TEST_SETTING_THAT_IS_NEVER_SET"))
            .await;
        let Err(err) = result else {
            panic!("a missing setting must fail the cold start");
        };
        assert_eq!(
            err.to_string(),
            "setting FLUXO_TEST_SETTING_THAT_IS_NEVER_SET is required but not set"
        );
    }

    #[test]
    fn the_installs_are_off_until_asked_for() {
        let start = Start::new("f");
        assert!(!start.fingerprint);
        assert!(start.with_fingerprint().fingerprint);
        #[cfg(feature = "sqs")]
        {
            assert!(!start.analytics);
            assert!(start.with_analytics().analytics);
        }
    }
}
