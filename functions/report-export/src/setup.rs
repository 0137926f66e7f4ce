//! Cold-start set-up: the settings and the S3 client of the lake bucket.

use fluxo::adapters::s3::{S3Error, S3Objects};
use fluxo::settings::{self, Env, SettingError, Source};

use crate::export::{Exporter, LakeFiles};

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LAKE_BUCKET`: the bucket of the Parquet files.
    pub bucket: String,
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
        })
    }
}

/// The lake bucket through SigV4-signed S3 calls.
#[derive(Debug, Clone)]
pub struct S3Lake {
    pub objects: S3Objects,
    pub bucket: String,
}

impl LakeFiles for S3Lake {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), S3Error> {
        self.objects
            .put_object(&self.bucket, key, body, "application/vnd.apache.parquet")
            .await
            .map(|_| ())
    }
}

/// Builds the exporter over the lake bucket.
pub fn build(
    sdk_config: &aws_config::SdkConfig,
    settings: &Settings,
) -> Result<Exporter<S3Lake>, S3Error> {
    Ok(Exporter {
        lake: S3Lake {
            objects: S3Objects::from_sdk_config(sdk_config)?,
            bucket: settings.bucket.clone(),
        },
        concurrency: 8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lake_bucket_is_required_and_named() {
        let err = Settings::from_source(&[("X", "y")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting LAKE_BUCKET is required but not set"
        );
    }
}
