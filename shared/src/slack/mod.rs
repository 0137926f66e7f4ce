//! Slack incoming-webhook notifier for optimizer runs: Block Kit sections, 1 message/s pacing, `Retry-After`.
//!
//! The connector roles: `config.rs` (the file section), `request.rs` (pure message rendering and reply
//! classification), `client.rs` (the webhook calls). This module holds the preview and the notifier
//! chosen from the config.

#[cfg(feature = "http-client")]
pub mod client;
pub mod config;
#[cfg(feature = "http-client")]
pub mod request;

#[cfg(feature = "http-client")]
pub use client::{SlackConfig, SlackNotifier};
pub use config::SlackSettings;
#[cfg(feature = "http-client")]
pub use notifier::{RunNotifier, SlackPreview};

#[cfg(feature = "http-client")]
mod notifier {
    use std::sync::Mutex;

    use serde_json::Value;

    use super::{SlackNotifier, request};
    use crate::optimizer::ports::{Delivery, Notifier, NotifyError, RunSummary};

    /// Renders the messages a run would send, without sending them (demo, Slack not configured).
    #[derive(Debug, Default)]
    pub struct SlackPreview {
        messages: Mutex<Vec<Value>>,
    }

    impl SlackPreview {
        /// The messages rendered so far.
        pub fn messages(&self) -> Vec<Value> {
            self.messages.lock().map(|m| m.clone()).unwrap_or_default()
        }
    }

    impl Notifier for SlackPreview {
        async fn notify(&self, summary: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
            let rendered = request::run_messages(summary);
            if let Ok(mut messages) = self.messages.lock() {
                messages.extend(rendered.iter().cloned());
            }
            Ok(Delivery::Rendered(rendered))
        }
    }

    /// Either a real webhook or a preview, chosen from the config at cold start.
    #[derive(Debug)]
    pub enum RunNotifier {
        Slack(SlackNotifier),
        Preview(SlackPreview),
    }

    impl Notifier for RunNotifier {
        async fn notify(&self, summary: &RunSummary<'_>) -> Result<Delivery, NotifyError> {
            match self {
                RunNotifier::Slack(s) => s.notify(summary).await,
                RunNotifier::Preview(p) => p.notify(summary).await,
            }
        }
    }
}
