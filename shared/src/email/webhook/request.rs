//! Builds signed webhook events and their Standard Webhooks signature: pure, no I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::WebhookSequence;
use crate::email::{Call, Job, Operation};

/// Header carrying the message id (the same on every retry, so the receiver can dedupe).
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the send time, in integer Unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying the signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of a `whsec_…` secret: the base64 after the prefix, decoded.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the webhook secret must be whsec_ followed by base64".to_string())
}

/// `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // new_from_slice accepts keys of any length for HMAC.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The event of one job: `{type, timestamp, data}`, posted to `url` with the job's key as `webhook-id`.
pub fn plan(
    url: &str,
    job: &Job,
    sequence: Option<&WebhookSequence>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Call> {
    let c = &job.contact;
    let (event_type, data) = match &job.operation {
        Operation::Enroll {
            sequence: name,
            consent,
        } => (
            sequence
                .and_then(|s| s.event_type.clone())
                .unwrap_or_else(|| "email.enroll".into()),
            json!({"sequence": name, "email": c.email.as_str(), "first_name": c.first_name,
                   "last_name": c.last_name, "consent": consent}),
        ),
        Operation::Unsubscribe { reason } => (
            "email.unsubscribe".into(),
            json!({"email": c.email.as_str(), "reason": reason}),
        ),
        Operation::Erase => ("person.erased".into(), json!({"email": c.email.as_str()})),
        Operation::Recommend {
            event_name,
            products,
            ..
        } => (
            event_name.clone(),
            json!({"email": c.email.as_str(), "first_name": c.first_name, "products": products}),
        ),
    };
    let body: Value = json!({"type": event_type, "timestamp": now.to_rfc3339(), "data": data});
    vec![Call {
        method: "POST",
        url: url.to_string(),
        headers: vec![(ID_HEADER.to_string(), format!("msg_{}", job.key))],
        body: Some(body),
        purpose: "signed webhook",
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's reference libraries' tests.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        assert!(secret_key("whsec_***").is_err());
    }
}
