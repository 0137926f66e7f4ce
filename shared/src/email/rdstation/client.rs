//! Sends RD Station conversions: the API key as a query parameter (or a bearer token), errors classified.

use crate::connector::{Outcome, Reply, Secret};
use crate::email::Call;

use super::config::RdAuth;
use super::request::error_message;

/// Vendor label in logs and errors.
pub const VENDOR: &str = "rdstation";

/// Adds the credentials of the configured mode to a call: the `api_key` query parameter (the one RD
/// Station documents for conversions with an API key), or nothing here for a bearer token (see
/// [`authorize`]). The URL then holds the key: it is never logged (transport errors drop URLs) nor
/// recorded (dry-run records the call before this).
pub fn with_key(mut call: Call, auth: RdAuth, token: &Secret) -> Call {
    if auth == RdAuth::ApiKey {
        let sep = if call.url.contains('?') { '&' } else { '?' };
        call.url = format!(
            "{}{sep}api_key={}",
            call.url,
            crate::email::brevo::request::path_segment(token.expose())
        );
    }
    call
}

/// Adds the bearer token in bearer mode.
pub fn authorize(
    builder: reqwest::RequestBuilder,
    auth: RdAuth,
    token: &Secret,
) -> reqwest::RequestBuilder {
    match auth {
        RdAuth::ApiKey => builder,
        RdAuth::Bearer => builder.bearer_auth(token.expose()),
    }
}

/// Sorts a reply: 2xx done; 400 (validation) and 401 permanent with RD's `error_message`; 429 and 5xx
/// retryable. Each call records a new conversion (no idempotency key), so the ledger is what keeps it
/// to one.
pub fn classify(_call: &Call, reply: &Reply) -> Outcome<Option<String>> {
    if (200..300).contains(&reply.status) {
        return Outcome::Success(None);
    }
    if reply.status == 400
        && let Some(message) = error_message(&reply.body)
    {
        return Outcome::Permanent {
            reason: format!("HTTP 400: {message}"),
        };
    }
    reply.failure_outcome()
}
