//! Mailchimp Marketing API v3.0: member upsert by subscriber hash, tags, Customer Journey triggers,
//! member events, unsubscribe and permanent delete. HTTP Basic auth with the API key.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
