//! Sends signed webhook events: the body is signed at send time (the timestamp is part of it).

use crate::connector::{Outcome, Reply};
use crate::email::Call;

use super::request::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// Vendor label in logs and errors.
pub const VENDOR: &str = "webhook";

/// Serializes the body, then adds `webhook-timestamp` (now) and `webhook-signature` over exactly those
/// bytes.
pub fn authorize(
    builder: reqwest::RequestBuilder,
    call: &Call,
    key: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> reqwest::RequestBuilder {
    let body = call
        .body
        .as_ref()
        .and_then(|b| serde_json::to_vec(b).ok())
        .unwrap_or_default();
    let id = call
        .headers
        .iter()
        .find(|(k, _)| k == ID_HEADER)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let timestamp = now.timestamp();
    builder
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, sign(key, id, timestamp, &body))
        .header("content-type", "application/json")
        .body(body)
}

/// 2xx done; 408/429/5xx retryable (honouring `Retry-After`); any other status permanent.
pub fn classify(_call: &Call, reply: &Reply) -> Outcome<Option<String>> {
    if (200..300).contains(&reply.status) {
        Outcome::Success(None)
    } else {
        reply.failure_outcome()
    }
}
