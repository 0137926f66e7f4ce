//! Idempotency keys: one per request at the receiver, one per effect (lead x destination x action) downstream.

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
    fn header_keys_ignore_surrounding_whitespace() {
        assert_eq!(
            request_key_from_header(" abc "),
            request_key_from_header("abc")
        );
    }
}
