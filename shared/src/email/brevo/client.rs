//! Sends Brevo calls: the `api-key` header, errors classified, `x-sib-ratelimit-reset` as the retry hint.

use crate::connector::{Outcome, Reply, Secret};
use crate::email::Call;
use crate::email::send::seconds_header;

use super::request::{DUPLICATE, error_code};

/// Vendor label in logs and errors.
pub const VENDOR: &str = "brevo";

/// Adds the credentials: the `api-key` header.
pub fn authorize(builder: reqwest::RequestBuilder, key: &Secret) -> reqwest::RequestBuilder {
    builder.header("api-key", key.expose())
}

/// Sorts a Brevo reply.
///
/// - 201 (created) and 204 (updated, or no body): done.
/// - 404 on an unsubscribe or delete: the contact does not exist; nothing to do.
/// - 429: retryable after `x-sib-ratelimit-reset` seconds (Brevo's limit headers; no `Retry-After`).
/// - 400 `duplicate_parameter`: another contact already holds one of the identifiers sent: permanent,
///   with Brevo's message.
/// - 5xx retryable, any other 4xx permanent.
pub fn classify(call: &Call, reply: &Reply) -> Outcome<Option<String>> {
    if (200..300).contains(&reply.status) {
        return Outcome::Success(None);
    }
    if reply.status == 404 && matches!(call.purpose, "unsubscribe contact" | "delete contact") {
        return Outcome::Success(Some(format!("{}: no such contact", call.purpose)));
    }
    if reply.status == 429 {
        return Outcome::Retryable {
            reason: reply.summary(),
            retry_after: seconds_header(reply, "x-sib-ratelimit-reset").or(reply.retry_after()),
        };
    }
    if reply.status == 400 && error_code(&reply.body).as_deref() == Some(DUPLICATE) {
        return Outcome::Permanent {
            reason: format!(
                "{} (another contact already holds one of these identifiers)",
                reply.summary()
            ),
        };
    }
    reply.failure_outcome()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_429_waits_for_the_rate_limit_reset() {
        let reply = Reply {
            status: 429,
            headers: vec![("x-sib-ratelimit-reset".into(), "7".into())],
            body: String::new(),
        };
        let call = Call::json("POST", "u".into(), serde_json::json!({}), "upsert contact");
        assert!(matches!(
            classify(&call, &reply),
            Outcome::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
    }
}
