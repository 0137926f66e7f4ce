//! Typeform webhooks: `Typeform-Signature: sha256=` + base64 HMAC-SHA256 of the raw body; answers mapped
//! to Fluxo's fields by their field `ref`, as configured.

pub mod config;
pub mod request;
