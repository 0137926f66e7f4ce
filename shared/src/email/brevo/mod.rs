//! Brevo: contact upsert into lists (which starts a Brevo automation on list entry), the events API,
//! unsubscribe (blacklist) and delete. `api-key` header; `x-sib-ratelimit-*` honoured.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
