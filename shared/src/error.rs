//! Error classification shared by every function: is a failure worth retrying or not.

/// Whether a failure can succeed when tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient: throttling, a timeout, a dependency that is down. Retry with backoff.
    Retryable,
    /// Permanent: the input or the configuration is wrong. Retrying gives the same answer.
    Permanent,
}

/// Implemented by every error type in Fluxo, so callers decide retries in one place.
pub trait Retryable {
    /// The class of this failure.
    fn class(&self) -> ErrorClass;

    /// Shorthand for `class() == ErrorClass::Retryable`.
    fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }
}

impl ErrorClass {
    /// The label used in the Lambda `Diagnostic.error_type` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "Retryable",
            ErrorClass::Permanent => "NonRetryable",
        }
    }
}
