//! Reading settings from the environment at cold start, with errors that name the setting.

use std::str::FromStr;

/// A missing or malformed setting. Always permanent: the deployment must be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("setting {name} is required but not set")]
    Missing { name: &'static str },
    #[error("setting {name} is invalid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

impl crate::error::Retryable for SettingError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Permanent
    }
}

/// Where settings come from. The environment in production; a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

/// A required, non-empty setting.
pub fn required(src: &impl Source, name: &'static str) -> Result<String, SettingError> {
    optional(src, name)?.ok_or(SettingError::Missing { name })
}

/// An optional setting; empty counts as unset.
pub fn optional(src: &impl Source, name: &'static str) -> Result<Option<String>, SettingError> {
    Ok(src
        .get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty()))
}

/// An optional setting parsed with `FromStr`, with a default.
pub fn parsed<T>(src: &impl Source, name: &'static str, default: T) -> Result<T, SettingError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(src, name)? {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| SettingError::Invalid {
            name,
            problem: e.to_string(),
        }),
    }
}

/// A comma-separated list; empty items are dropped.
pub fn list(src: &impl Source, name: &'static str) -> Result<Vec<String>, SettingError> {
    Ok(optional(src, name)?
        .map(|raw| {
            raw.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_setting_names_it() {
        let src = [("OTHER", "x")];
        let err = required(&src, "LEADS_TABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting LEADS_TABLE is required but not set"
        );
    }

    #[test]
    fn malformed_number_names_the_setting_and_the_problem() {
        let src = [("MAX_BODY_BYTES", "lots")];
        let err = parsed::<usize>(&src, "MAX_BODY_BYTES", 1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("setting MAX_BODY_BYTES is invalid"),
            "{err}"
        );
    }

    #[test]
    fn lists_drop_empty_items() {
        let src = [("ORIGINS", " https://a.com, ,https://b.com ")];
        assert_eq!(
            list(&src, "ORIGINS").unwrap(),
            vec!["https://a.com", "https://b.com"]
        );
    }
}
