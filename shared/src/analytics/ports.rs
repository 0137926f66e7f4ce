//! The analytics port: where packed analytics messages go.

use std::future::Future;
use std::pin::Pin;

use super::sink::Batch;
use crate::error::{ErrorClass, Retryable};

/// Why analytics records could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyticsError {
    /// The queue was unreachable or throttled.
    #[error("analytics queue unavailable: {0}")]
    Unavailable(String),
    /// The queue refused the messages (permissions, size).
    #[error("analytics queue refused the messages: {0}")]
    Rejected(String),
}

impl Retryable for AnalyticsError {
    fn class(&self) -> ErrorClass {
        match self {
            AnalyticsError::Unavailable(_) => ErrorClass::Retryable,
            AnalyticsError::Rejected(_) => ErrorClass::Permanent,
        }
    }
}

/// A boxed send future (the sink is installed once per process, behind a `dyn`).
pub type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<usize>, AnalyticsError>> + Send + 'a>>;

/// Sends packed analytics messages.
pub trait AnalyticsSink: Send + Sync {
    /// Sends every message of the batch; answers the indexes of the messages that were not taken.
    fn send<'a>(&'a self, batch: &'a Batch) -> SendFuture<'a>;
}
