//! A generic signed webhook, as Standard Webhooks specifies: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed by a `whsec_` secret).

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
