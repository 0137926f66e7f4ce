//! Access control: a bearer token, or HTTP Basic whose password is the token (any user name), compared
//! in constant time with the secret from SSM (or `REPORT_TOKEN` locally).

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest secret accepted: a shorter one is a deployment error, and the dashboard stays closed.
pub const MIN_SECRET_LEN: usize = 16;

/// Whether the `Authorization` header carries the secret.
pub fn authorized(header: Option<&str>, secret: &str) -> bool {
    let Some(presented) = header.and_then(credential) else {
        return false;
    };
    // Hashing both sides first makes the comparison's time independent of the lengths too.
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    bool::from(a.ct_eq(&b))
}

/// The token in `Bearer <token>` or the password in `Basic base64(user:password)`.
fn credential(header: &str) -> Option<String> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-dashboard-secret-of-32-chars!!";

    #[test]
    fn a_bearer_token_or_basic_password_equal_to_the_secret_is_let_in() {
        assert!(authorized(Some(&format!("Bearer {SECRET}")), SECRET));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{SECRET}"));
        assert!(authorized(Some(&format!("Basic {basic}")), SECRET));
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(!authorized(None, SECRET));
        assert!(!authorized(Some("Bearer wrong"), SECRET));
        assert!(!authorized(Some(&format!("Token {SECRET}")), SECRET));
        assert!(!authorized(Some("Basic !!!notbase64"), SECRET));
        let no_colon = base64::engine::general_purpose::STANDARD.encode(SECRET);
        assert!(!authorized(Some(&format!("Basic {no_colon}")), SECRET));
        assert!(!authorized(Some("Bearer "), SECRET));
    }
}
