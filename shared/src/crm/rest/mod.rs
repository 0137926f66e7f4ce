//! The generic REST CRM of the source article: `POST <url>` with a JSON body and a bearer token; 201 = created.

pub mod config;
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
