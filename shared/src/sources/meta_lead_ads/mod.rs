//! Meta (Facebook/Instagram) lead ads: the `GET` subscription handshake (`hub.challenge`), signed
//! `leadgen` notifications (`X-Hub-Signature-256`), and the Graph API fetch of each `leadgen_id` with the
//! Page token, through the connector contract.

pub mod config;
#[cfg(feature = "http-client")]
pub mod request;

#[cfg(feature = "http-client")]
pub mod client;
