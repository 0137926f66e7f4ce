//! Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, `whsec_` secrets). The body
//! is Fluxo's own lead JSON: how a team's backend, or an event registration tool, posts leads.

pub mod config;
pub mod request;
