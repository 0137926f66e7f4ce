//! The declarative config file (TOML): connectors, qualification rules and campaigns, in one place.
//!
//! Loading validates the whole file. Every error names the file, the line and column, and the field.

pub mod audience;
pub mod email;
pub mod live;
pub mod optimizer;
pub mod router;
pub mod source;
pub mod sources;

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluxoConfig {
    /// Lead routing: CRM connector, qualification rules, destinations.
    #[serde(default)]
    pub lead_router: router::RouterConfig,
    /// Hourly optimizer: platforms, campaigns, notifications.
    #[serde(default)]
    pub optimizer: optimizer::OptimizerConfig,
    /// Inbound lead sources (`[[sources]]`), read by the webhook-receiver.
    #[serde(default)]
    pub sources: Vec<sources::SourceConfig>,
    /// email-trigger: email platforms, sequence mappings, recommendations.
    #[serde(default)]
    pub email_trigger: email::EmailTriggerConfig,
    /// Audience sync: named audiences and their Meta / Google destinations.
    #[serde(default)]
    pub audience_sync: audience::AudienceSyncConfig,
}

/// A loaded config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: FluxoConfig,
    /// The first 12 hex digits of the SHA-256 of the file's text, recorded in journals.
    pub version: String,
    /// The file name, for messages.
    pub origin: String,
}

/// A config error, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field, e.g. `lead_router.rules[2].when.field`; `(file)` for whole-file errors.
    pub field: String,
    pub message: String,
}

impl crate::error::Retryable for ConfigError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Permanent
    }
}

impl ConfigError {
    /// An error at a byte span of the file's text.
    pub fn at_span(
        file: &str,
        text: &str,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError {
            file: file.to_string(),
            line,
            column,
            field: if field.is_empty() {
                "(file)".to_string()
            } else {
                field.to_string()
            },
            message: message.into(),
        }
    }

    /// An error about the file as a whole (unreadable, missing).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Self::at_span(file, "", None, "", message)
    }
}

/// Checks that a secret reference names a place to look (`{ env = .. }` and/or `{ ssm = .. }`).
pub(crate) fn check_secret(secret: &crate::secrets::SecretRef) -> Result<(), String> {
    if secret.is_set() {
        Ok(())
    } else {
        Err(
            "name where the secret lives: { env = \"NAME\" } and/or { ssm = \"/parameter\" }"
                .into(),
        )
    }
}

/// Whether a text is an http(s) URL (by its scheme).
pub(crate) fn is_http_url(text: &str) -> bool {
    text.starts_with("https://") || text.starts_with("http://")
}

/// Checks a concurrency limit: 1 to 1000.
pub(crate) fn check_concurrency(n: usize) -> Result<(), String> {
    if (1..=1000).contains(&n) {
        Ok(())
    } else {
        Err(format!("must be between 1 and 1000, got {n}"))
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Version label of a config text.
pub fn version_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// Parses and validates a config text. `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<LoadedConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::at_span(file, text, e.span(), "", e.message().to_string()))?;
    let config: FluxoConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `toml::Spanned` wrappers show up as a path segment; they are not part of the field's name.
        let field = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        ConfigError::at_span(
            file,
            text,
            inner.span(),
            if field == "." { "" } else { &field },
            inner.message().to_string(),
        )
    })?;
    let located = Located { file, text };
    config.lead_router.validate(&located)?;
    config.optimizer.validate(&located)?;
    sources::validate(&config.sources, &located)?;
    config.email_trigger.validate(&located)?;
    config.audience_sync.validate(&located)?;
    Ok(LoadedConfig {
        config,
        version: version_of(text),
        origin: file.to_string(),
    })
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(&name, format!("cannot read the file: {e}")))?;
    load_str(&name, &text)
}

/// The file and its text, for validations that report a located error.
#[derive(Debug, Clone, Copy)]
pub struct Located<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Located<'_> {
    /// An error at a span (from a `toml::Spanned` field), naming the field.
    pub fn error(
        &self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at_span(self.file, self.text, span, field, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_a_valid_config() {
        let loaded = load_str("empty.toml", "").unwrap();
        assert_eq!(loaded.version.len(), 12);
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let err = load_str("bad.toml", "\n\n[lead_router\n").unwrap_err();
        assert_eq!(err.file, "bad.toml");
        assert_eq!(err.line, 3);
    }

    #[test]
    fn unknown_sections_name_the_field() {
        let err = load_str("bad.toml", "[nope]\nx = 1\n").unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
        assert_eq!(err.line, 1);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Every example config beside the deployable one loads; the demo's is the only one with a local address.
    #[test]
    fn every_example_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let loaded = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                let text = std::fs::read_to_string(&path).unwrap();
                assert_eq!(text.contains("127.0.0.1"), name == "demo.toml", "{name}");
                assert_eq!(loaded.config.lead_router.rules.len(), 2, "{name}");
                names.push(name);
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "demo.toml",
                "google-ads.toml",
                "hubspot.toml",
                "meta.toml",
                "rest-crm.toml"
            ]
        );
    }
}
