//! Cold-start set-up: the settings, the lake bucket's S3 client and the secret store.

use fluxo::adapters::s3::{S3Error, S3Objects};
use fluxo::secrets::{SecretRef, SecretStore};
use fluxo::settings::{self, Env, SettingError, Source};

use crate::facts::S3Lake;
use crate::handler::Reports;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LAKE_BUCKET`.
    pub bucket: String,
    /// The dashboard secret: `REPORT_TOKEN` (local runs) or the SSM parameter `REPORT_TOKEN_PARAMETER`.
    pub token: SecretRef,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_source(&Env)
    }

    /// Reads the settings from any source.
    pub fn from_source(src: &impl Source) -> Result<Self, SettingError> {
        Ok(Settings {
            bucket: settings::required(src, "LAKE_BUCKET")?,
            token: SecretRef {
                env: Some("REPORT_TOKEN".into()),
                ssm: src.get("REPORT_TOKEN_PARAMETER"),
                secretsmanager: None,
            },
        })
    }
}

/// Builds the dashboard over the lake bucket.
pub fn build(
    sdk_config: &aws_config::SdkConfig,
    settings: &Settings,
) -> Result<Reports<S3Lake>, S3Error> {
    Ok(Reports::new(
        S3Lake::new(S3Objects::from_sdk_config(sdk_config)?, &settings.bucket),
        SecretStore::from_sdk_config(sdk_config),
        settings.token.clone(),
    ))
}
