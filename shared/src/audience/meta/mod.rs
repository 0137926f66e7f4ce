//! Meta custom audiences: `POST /{audience_id}/users` adds, `DELETE` on the same edge removes; multi-key
//! hashed rows, at most 10,000 per request, grouped by a `session` when a batch spans requests.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
