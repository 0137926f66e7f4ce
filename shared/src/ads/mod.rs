//! Ad platform connectors (Google Ads, Meta, generic) and the dispatcher that serves the optimizer's
//! `AdPlatforms` port. Each vendor folder has the connector roles: `config.rs` (its file section),
//! `request.rs` (pure request building and parsing), `client.rs` (the HTTP calls); `connector.rs`
//! dispatches a campaign to its platform's client.

pub mod generic;
pub mod google;
pub mod meta;

#[cfg(feature = "http-client")]
mod connector;
#[cfg(feature = "http-client")]
pub use connector::Platforms;
#[cfg(feature = "http-client")]
pub(crate) use connector::call;

/// Concurrent calls to one platform, unless its section says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Attempts per platform call (429/5xx/timeouts are retried), unless its section says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Total timeout per platform call, in seconds, unless its section says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
