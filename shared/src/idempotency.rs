//! Idempotency keys: one per request at the receiver, one per effect (lead x destination x action) downstream.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Hashes parts into a key. Parts are length-prefixed so `("ab","c")` and `("a","bc")` differ.
pub fn key_of(namespace: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(namespace.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The receiver's key for a request that carried an `Idempotency-Key` header.
pub fn request_key_from_header(header: &str) -> String {
    key_of("fluxo.request.header.v1", &[header.trim()])
}

/// The receiver's key for a request without the header: source, normalized email, form and time window.
///
/// Two identical submissions inside the same window share a key; `window_secs` of 0 disables the window
/// (every submission of the same person to the same form and source is the same request).
pub fn request_key_from_content(
    source: &str,
    email: &str,
    form: &str,
    received_at: DateTime<Utc>,
    window_secs: u64,
) -> String {
    let bucket = match i64::try_from(window_secs) {
        Ok(w) if w > 0 => received_at.timestamp().div_euclid(w).to_string(),
        _ => String::new(),
    };
    key_of("fluxo.request.content.v1", &[source, email, form, &bucket])
}

/// The key of one external effect: a lead, a destination and an action.
pub fn effect_key(lead_key: &str, destination: &str, action: &str) -> String {
    key_of("fluxo.effect.v1", &[lead_key, destination, action])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(key_of("n", &["ab", "c"]), key_of("n", &["a", "bc"]));
    }

    #[test]
    fn same_submission_in_the_same_window_shares_a_key() {
        let t1 = DateTime::from_timestamp(1_000_000_200, 0).unwrap();
        let t2 = DateTime::from_timestamp(1_000_000_250, 0).unwrap();
        let a = request_key_from_content("site", "a@b.co", "f", t1, 600);
        let b = request_key_from_content("site", "a@b.co", "f", t2, 600);
        assert_eq!(a, b);
    }

    #[test]
    fn a_later_window_gives_a_new_key() {
        let t1 = DateTime::from_timestamp(1_000_000_200, 0).unwrap();
        let t2 = DateTime::from_timestamp(1_000_001_000, 0).unwrap();
        let a = request_key_from_content("site", "a@b.co", "f", t1, 600);
        let b = request_key_from_content("site", "a@b.co", "f", t2, 600);
        assert_ne!(a, b);
    }

    #[test]
    fn header_keys_ignore_surrounding_whitespace() {
        assert_eq!(
            request_key_from_header(" abc "),
            request_key_from_header("abc")
        );
    }
}
