//! Where the deployed config lives, and reading it: an S3 object in the stack's config bucket (AWS and the
//! local stack), a file (`FLUXO_CONFIG`, for hand-run functions), or the built-in default.
//!
//! The built-in default is `config/fluxo.toml`: the article's rules and no destinations. It is used only
//! when no config is deployed, and the function logs that it is.

use std::path::PathBuf;

use super::{ConfigError, LoadedConfig, load_str, version_of};
use crate::error::{ErrorClass, Retryable};
use crate::settings::{self, SettingError, Source};

/// Name of the built-in default in messages and journals.
pub const BUILT_IN_NAME: &str = "config/fluxo.toml (built in)";
/// The built-in default: the article's rules, no connector, no campaign.
pub const BUILT_IN: &str = include_str!("../../../config/fluxo.toml");
/// The bucket holding the deployed config (set by the template).
pub const ENV_BUCKET: &str = "FLUXO_CONFIG_BUCKET";
/// The config object's key in that bucket (set by the template). Default [`DEFAULT_KEY`].
pub const ENV_KEY: &str = "FLUXO_CONFIG_KEY";
/// A config file path, for functions run by hand (`cargo lambda watch`); ignored when a bucket is set.
pub const ENV_FILE: &str = "FLUXO_CONFIG";
/// The config object's default key.
pub const DEFAULT_KEY: &str = "fluxo.toml";

/// Where the config is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An object in S3.
    S3 { bucket: String, key: String },
    /// A file on disk.
    File(PathBuf),
    /// The compiled-in default.
    BuiltIn,
}

impl Location {
    /// `FLUXO_CONFIG_BUCKET` (+ `FLUXO_CONFIG_KEY`), else `FLUXO_CONFIG`, else the built-in default.
    pub fn from_settings(src: &impl Source) -> Result<Location, SettingError> {
        if let Some(bucket) = settings::optional(src, ENV_BUCKET)? {
            let key = settings::optional(src, ENV_KEY)?.unwrap_or_else(|| DEFAULT_KEY.into());
            return Ok(Location::S3 { bucket, key });
        }
        Ok(match settings::optional(src, ENV_FILE)? {
            Some(path) => Location::File(PathBuf::from(path)),
            None => Location::BuiltIn,
        })
    }

    /// The location as named in messages: `s3://bucket/key`, the path, or the built-in's name.
    pub fn describe(&self) -> String {
        match self {
            Location::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            Location::File(path) => path.display().to_string(),
            Location::BuiltIn => BUILT_IN_NAME.to_string(),
        }
    }
}

/// The config could not be read, or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Invalid: `file:line:col: field: message`.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// Unreadable (store unreachable, access denied).
    #[error("cannot read the config at {location}: {problem}")]
    Unreadable {
        location: String,
        problem: String,
        class: ErrorClass,
    },
}

impl Retryable for SourceError {
    fn class(&self) -> ErrorClass {
        match self {
            SourceError::Invalid(_) => ErrorClass::Permanent,
            SourceError::Unreadable { class, .. } => *class,
        }
    }
}

/// The answer to a poll.
#[derive(Debug)]
pub enum Poll {
    /// Same version as last time (a `304` on S3).
    Unchanged,
    /// A new version: valid, or the error that refuses it.
    Changed(Box<Result<LoadedConfig, ConfigError>>),
}

enum Backend {
    Local,
    #[cfg(feature = "s3")]
    S3(crate::adapters::s3::S3Objects),
}

/// Reads the config from its location, remembering the last version seen so re-reads are cheap.
pub struct ConfigSource {
    location: Location,
    #[cfg_attr(
        not(feature = "s3"),
        expect(dead_code, reason = "only an S3 location reads its backend")
    )]
    backend: Backend,
    /// S3: the ETag last seen; files: the content version; none for the built-in default.
    tag: Option<String>,
    /// The first read, made by [`ConfigSource::prefetch`] beside other cold-start work; the next
    /// [`ConfigSource::load`] takes it instead of reading again.
    prefetched: Option<Result<LoadedConfig, SourceError>>,
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("location", &self.location)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// The built-in default, loaded. It is checked by a unit test, so this cannot fail in a release.
fn built_in() -> Result<LoadedConfig, ConfigError> {
    load_str(BUILT_IN_NAME, BUILT_IN)
}

impl ConfigSource {
    /// A source for a file or the built-in default. An S3 location needs [`ConfigSource::from_sdk_config`].
    pub fn local(location: Location) -> Self {
        ConfigSource {
            location,
            backend: Backend::Local,
            tag: None,
            prefetched: None,
        }
    }

    /// A source for any location, reading S3 with the shared AWS config.
    #[cfg(feature = "s3")]
    pub fn from_sdk_config(
        location: Location,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, SourceError> {
        let backend = match &location {
            Location::S3 { .. } => Backend::S3(
                crate::adapters::s3::S3Objects::from_sdk_config(sdk)
                    .map_err(|e| unreadable(&location, e))?,
            ),
            _ => Backend::Local,
        };
        Ok(ConfigSource {
            location,
            backend,
            tag: None,
            prefetched: None,
        })
    }

    /// Makes the first [`ConfigSource::load`] now, so that a cold start can wait for it together with
    /// its other requests; the result (config or error) is what that `load` returns.
    pub async fn prefetch(&mut self) {
        let first = self.load().await;
        self.prefetched = Some(first);
    }

    /// Where this source reads.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Reads and validates the config (cold start). An invalid config is an error; no deployed config at
    /// all means the built-in default, which is logged.
    pub async fn load(&mut self) -> Result<LoadedConfig, SourceError> {
        if let Some(first) = self.prefetched.take() {
            return first;
        }
        self.tag = None;
        match self.poll().await? {
            Poll::Changed(result) => Ok((*result)?),
            // Only the built-in default (or a missing object) answers Unchanged to a first read.
            Poll::Unchanged => {
                tracing::warn!(
                    location = %self.location.describe(),
                    "no config is deployed: running the built-in default (the article's rules, no destinations)"
                );
                Ok(built_in()?)
            }
        }
    }

    /// Re-reads the config if it changed since the last read.
    pub async fn poll(&mut self) -> Result<Poll, SourceError> {
        match &self.location {
            Location::BuiltIn => Ok(match self.tag.replace("built-in".into()) {
                None => Poll::Changed(Box::new(built_in())),
                Some(_) => Poll::Unchanged,
            }),
            Location::File(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| SourceError::Unreadable {
                    location: name.clone(),
                    problem: e.to_string(),
                    class: ErrorClass::Permanent,
                })?;
                let version = version_of(&text);
                if self.tag.as_deref() == Some(version.as_str()) {
                    return Ok(Poll::Unchanged);
                }
                self.tag = Some(version);
                Ok(Poll::Changed(Box::new(load_str(&name, &text))))
            }
            #[cfg(feature = "s3")]
            Location::S3 { bucket, key } => {
                let Backend::S3(s3) = &self.backend else {
                    return Err(no_s3(&self.location));
                };
                use crate::adapters::s3::Fetched;
                match s3.get(bucket, key, self.tag.as_deref()).await {
                    Ok(Fetched::NotModified) | Ok(Fetched::Missing) => Ok(Poll::Unchanged),
                    Ok(Fetched::Object {
                        body,
                        etag,
                        version_id,
                    }) => {
                        self.tag = Some(etag);
                        let name = self.location.describe();
                        let text = String::from_utf8(body).map_err(|_| {
                            ConfigError::whole_file(&name, "the object is not UTF-8 text")
                        });
                        Ok(Poll::Changed(Box::new(text.and_then(|text| {
                            let mut loaded = load_str(&name, &text)?;
                            if let Some(v) = version_id {
                                loaded.origin = format!("{name} (S3 version {v})");
                            }
                            Ok(loaded)
                        }))))
                    }
                    Err(e) => Err(unreadable(&self.location, e)),
                }
            }
            #[cfg(not(feature = "s3"))]
            Location::S3 { .. } => Err(no_s3(&self.location)),
        }
    }
}

#[cfg(feature = "s3")]
fn unreadable(location: &Location, e: impl std::fmt::Display + Retryable) -> SourceError {
    SourceError::Unreadable {
        location: location.describe(),
        problem: e.to_string(),
        class: e.class(),
    }
}

fn no_s3(location: &Location) -> SourceError {
    SourceError::Unreadable {
        location: location.describe(),
        problem: "this build cannot read S3 (fluxo's `s3` feature is off)".into(),
        class: ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_wins_over_a_file_and_the_key_has_a_default() {
        let src = [(ENV_BUCKET, "cfg-bucket"), (ENV_FILE, "/x.toml")];
        assert_eq!(
            Location::from_settings(&src).unwrap(),
            Location::S3 {
                bucket: "cfg-bucket".into(),
                key: "fluxo.toml".into()
            }
        );
        assert_eq!(
            Location::from_settings(&[(ENV_FILE, "/x.toml")]).unwrap(),
            Location::File("/x.toml".into())
        );
        assert_eq!(
            Location::from_settings(&[("OTHER", "x")]).unwrap(),
            Location::BuiltIn
        );
    }

    #[test]
    fn the_built_in_default_is_the_articles_rules_with_no_destination() {
        let loaded = built_in().unwrap();
        let router = &loaded.config.lead_router;
        assert_eq!(router.rules.len(), 2);
        assert!(
            !BUILT_IN.contains("127.0.0.1"),
            "the deployable config must not point at a local address"
        );
        assert!(loaded.config.optimizer.campaigns.is_empty());
        assert!(loaded.config.optimizer.slack.is_none());
        assert_eq!(
            router.crm.connector,
            crate::crm::config::ConnectorKind::None,
            "no CRM connector is configured by default"
        );
    }

    #[tokio::test]
    async fn a_file_is_re_read_only_when_its_text_changes() {
        let dir = std::env::temp_dir().join(format!("fluxo-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(&path, "[lead_router]\nmode = \"first_match\"\n").unwrap();
        let mut source = ConfigSource::local(Location::File(path.clone()));
        let first = source.load().await.unwrap();
        assert!(matches!(source.poll().await.unwrap(), Poll::Unchanged));
        std::fs::write(&path, "[lead_router]\nmode = \"nope\"\n").unwrap();
        match source.poll().await.unwrap() {
            Poll::Changed(result) if result.is_err() => {
                let e = result.unwrap_err();
                assert_eq!(e.line, 2, "{e}");
                assert_eq!(e.field, "lead_router.mode");
            }
            other => panic!("expected a refused change, got {other:?}"),
        }
        assert!(!first.version.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_prefetched_read_is_what_the_next_load_returns_and_is_taken_once() {
        let dir = std::env::temp_dir().join(format!("fluxo-src-pre-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(&path, "[lead_router]\nmode = \"first_match\"\n").unwrap();
        let mut source = ConfigSource::local(Location::File(path.clone()));
        source.prefetch().await;
        // The file changes after the prefetch: the first load is the prefetched read...
        std::fs::write(&path, "[lead_router]\nmode = \"nope\"\n").unwrap();
        let first = source.load().await.unwrap();
        assert_eq!(
            first.version,
            version_of("[lead_router]\nmode = \"first_match\"\n")
        );
        // ...and the next one reads the file again, and refuses what it now holds.
        let second = source.load().await.unwrap_err();
        assert!(second.to_string().contains("lead_router.mode"), "{second}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
