//! Keyed fingerprints of personal data (HMAC-SHA256), so logs and keys never carry a reversible hash.
//!
//! An unsalted SHA-256 of an email is reversed by hashing a list of known addresses. A keyed HMAC is
//! not, as long as the key stays secret. Every function installs the same key at cold start (from SSM
//! in AWS, from the environment locally), so the fingerprint of one address is the same everywhere and
//! still joins the intake records, the profile and the logs for erasure.

use std::fmt;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable holding the key locally (and in tests).
pub const KEY_ENV: &str = "FINGERPRINT_KEY";

/// The environment variable naming the SSM SecureString parameter that holds the key in AWS.
pub const KEY_PARAMETER_ENV: &str = "FINGERPRINT_KEY_PARAMETER";

/// The shortest key accepted: 16 bytes, the HMAC-SHA256 security level's floor for a secret key.
pub const MIN_KEY_LEN: usize = 16;

/// Used only by processes that never installed a key: unit tests, benchmarks and tools. Functions
/// refuse to start without a real key (see [`FingerprintKey::parse`]).
const UNINSTALLED_KEY: &[u8] = b"fluxo-fingerprint-key-not-installed";

static KEY: OnceLock<FingerprintKey> = OnceLock::new();

/// The secret key of the fingerprints. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerprintKey(Vec<u8>);

/// Why a fingerprint key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintKeyError {
    /// Shorter than [`MIN_KEY_LEN`] bytes.
    #[error("the fingerprint key must be at least {MIN_KEY_LEN} bytes long")]
    TooShort,
    /// A different key was installed earlier in this process.
    #[error("a different fingerprint key is already installed")]
    AlreadyInstalled,
}

impl crate::error::Retryable for FingerprintKeyError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Permanent
    }
}

impl FingerprintKey {
    /// A key from its secret text (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, FingerprintKeyError> {
        let trimmed = text.trim();
        if trimmed.len() < MIN_KEY_LEN {
            return Err(FingerprintKeyError::TooShort);
        }
        Ok(FingerprintKey(trimmed.as_bytes().to_vec()))
    }

    /// The first 16 hex digits of HMAC-SHA256(key, data).
    pub fn fingerprint(&self, data: &[u8]) -> String {
        hmac_prefix(&self.0, data)
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey([redacted])")
    }
}

/// Installs the process-wide key. Installing the same key again is a no-op; another key is refused,
/// so fingerprints never change within a process.
pub fn install(key: FingerprintKey) -> Result<(), FingerprintKeyError> {
    let installed = KEY.get_or_init(|| key.clone());
    if *installed == key {
        Ok(())
    } else {
        Err(FingerprintKeyError::AlreadyInstalled)
    }
}

/// Whether a key was installed in this process.
pub fn is_installed() -> bool {
    KEY.get().is_some()
}

/// The fingerprint of `data` under the installed key.
pub fn fingerprint(data: &[u8]) -> String {
    match KEY.get() {
        Some(key) => key.fingerprint(data),
        None => hmac_prefix(UNINSTALLED_KEY, data),
    }
}

/// Where a function finds the key: `FINGERPRINT_KEY` when set (local runs), otherwise the SSM
/// SecureString named by `FINGERPRINT_KEY_PARAMETER` (set by the template).
pub fn key_ref() -> crate::secrets::SecretRef {
    crate::secrets::SecretRef {
        env: Some(KEY_ENV.to_string()),
        ssm: std::env::var(KEY_PARAMETER_ENV).ok(),
        ..Default::default()
    }
}

/// Why a function could not install its fingerprint key at cold start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintSetupError {
    /// The key could not be read from the environment or SSM.
    #[error(
        "the fingerprint key ({KEY_ENV}, or the SSM parameter named by {KEY_PARAMETER_ENV}): {0}"
    )]
    Secret(#[from] crate::secrets::SecretError),
    /// The key was read but refused.
    #[error("the fingerprint key: {0}")]
    Key(#[from] FingerprintKeyError),
}

/// Reads the key from the environment or SSM and installs it; a function calls this once at cold
/// start and refuses to start without a key.
#[cfg(feature = "ssm")]
pub async fn install_from(
    secrets: &crate::secrets::SecretStore,
) -> Result<(), FingerprintSetupError> {
    let text = secrets.resolve(&key_ref()).await?;
    install(FingerprintKey::parse(&text)?)?;
    Ok(())
}

fn hmac_prefix(key: &[u8], data: &[u8]) -> String {
    // HMAC takes a key of any length, so `new_from_slice` cannot fail here.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            hex::encode(&mac.finalize().into_bytes()[..8])
        }
        Err(_) => String::from("0000000000000000"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn a_fingerprint_is_the_rfc_4231_hmac_prefix() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_prefix(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e"
        );
    }

    #[test]
    fn a_fingerprint_is_not_the_unsalted_sha256_of_the_address() {
        let key = FingerprintKey::parse("a-key-of-sixteen-bytes-or-more").unwrap();
        let email = b"joao@exemplo.com";
        let unsalted = hex::encode(&sha2::Sha256::digest(email)[..8]);
        assert_ne!(key.fingerprint(email), unsalted);
    }

    #[test]
    fn two_keys_give_two_fingerprints_of_one_address() {
        let a = FingerprintKey::parse("first-key-of-16-bytes").unwrap();
        let b = FingerprintKey::parse("second-key-of-16-bytes").unwrap();
        assert_ne!(a.fingerprint(b"ana@x.com"), b.fingerprint(b"ana@x.com"));
        assert_eq!(a.fingerprint(b"ana@x.com").len(), 16);
    }

    #[test]
    fn a_short_key_is_refused() {
        assert_eq!(
            FingerprintKey::parse(" short "),
            Err(FingerprintKeyError::TooShort)
        );
    }

    #[test]
    fn a_key_prints_redacted() {
        let key = FingerprintKey::parse("super-secret-key-value").unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("super-secret"));
        assert!(shown.contains("[redacted]"));
    }
}
