//! Normalization and hashing of audience identifiers, by each platform's published rules.
//!
//! The two platforms differ, so each key has a Meta and a Google form:
//! - **Email.** Meta: trim, lowercase (periods kept). Google: remove all whitespace, lowercase, and for
//!   `gmail.com` / `googlemail.com` drop the periods of the local part (required for Google's enhanced
//!   conversions; Customer Match accepts it either way).
//! - **Phone.** Meta: digits only with the country code, no `+`, no leading zeros (`16505551212`).
//!   Google: E.164 with the `+` (`+16505551212`). A number stored without its country code is left out
//!   on both platforms: neither can match it.
//! - **Names** (Meta `FN` / `LN`): lowercase, letters only (UTF-8 kept: `valéry`).
//! - **Country** (Meta `COUNTRY`): ISO 3166-1 alpha-2, lowercase.
//!
//! Every normalized value is hashed with SHA-256 and written as lowercase hex.

use sha2::{Digest, Sha256};

/// SHA-256 of a normalized value, lowercase hex.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Meta's `EMAIL`: trimmed and lowercased.
pub fn meta_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    (e.contains('@')).then_some(e)
}

/// Google's `hashedEmail` input: no whitespace anywhere, lowercase, and no periods before
/// `@gmail.com` / `@googlemail.com`.
pub fn google_email(email: &str) -> Option<String> {
    let e: String = email
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    let (local, domain) = e.rsplit_once('@')?;
    if domain == "gmail.com" || domain == "googlemail.com" {
        let local: String = local.chars().filter(|c| *c != '.').collect();
        return Some(format!("{local}@{domain}"));
    }
    Some(e)
}

/// The digits of an international number (`+` or `00` prefix), or `None` when the number has no
/// country code (a national number stored as digits).
fn international_digits(phone: &str) -> Option<String> {
    let t = phone.trim();
    let rest = t.strip_prefix('+').or_else(|| t.strip_prefix("00"))?;
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0').to_string();
    (7..=15).contains(&digits.len()).then_some(digits)
}

/// Meta's `PHONE`: country code and number, digits only, no leading zeros.
pub fn meta_phone(phone: &str) -> Option<String> {
    international_digits(phone)
}

/// Google's `hashedPhoneNumber` input: E.164 (`+` and digits).
pub fn google_phone(phone: &str) -> Option<String> {
    international_digits(phone).map(|d| format!("+{d}"))
}

/// Meta's `FN` / `LN`: lowercase letters only.
pub fn meta_name(name: &str) -> Option<String> {
    let n: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect();
    (!n.is_empty()).then_some(n)
}

/// Meta's `COUNTRY`: two lowercase letters.
pub fn meta_country(country: &str) -> Option<String> {
    let c = country.trim().to_lowercase();
    (c.len() == 2 && c.chars().all(|c| c.is_ascii_lowercase())).then_some(c)
}

/// The country (ISO 3166-1 alpha-2, lowercase) of an E.164 number, when it can be told.
pub fn country_of_phone(phone: &str) -> Option<String> {
    let digits = international_digits(phone)?;
    let util = &*rlibphonenumber::PHONE_NUMBER_UTIL;
    let parsed = util.parse(format!("+{digits}"), None).ok()?;
    let region = util.get_region_for_number(&parsed)?;
    meta_country(&region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from Meta's customer information parameters page (normalized input -> SHA-256).
    #[test]
    fn metas_published_vectors_hash_as_documented() {
        assert_eq!(
            sha256_hex(&meta_email("John_Smith@gmail.com").unwrap()),
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        );
        assert_eq!(
            meta_phone("+1 (650) 555-1212").as_deref(),
            Some("16505551212")
        );
        assert_eq!(
            sha256_hex(&meta_phone("+1 (650) 555-1212").unwrap()),
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
        );
        assert_eq!(
            sha256_hex(&meta_name("Mary").unwrap()),
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
        );
        assert_eq!(
            sha256_hex(&meta_name("Valéry").unwrap()),
            "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"
        );
    }

    #[test]
    fn meta_keeps_gmail_periods_and_google_drops_them() {
        assert_eq!(
            meta_email(" John.Smith@Gmail.com ").as_deref(),
            Some("john.smith@gmail.com")
        );
        assert_eq!(
            google_email(" John.Smith@Gmail.com ").as_deref(),
            Some("johnsmith@gmail.com")
        );
        assert_eq!(
            google_email("j.o.h.n@googlemail.com").as_deref(),
            Some("john@googlemail.com")
        );
        assert_eq!(
            google_email("ana.silva@exemplo.com.br").as_deref(),
            Some("ana.silva@exemplo.com.br"),
            "periods stay outside Gmail"
        );
        assert_eq!(
            sha256_hex(&google_email("John.Smith@gmail.com").unwrap()),
            "3586de92bb3636d0885a12eff961429a32e4ebd764b96f50d85d016f9338d586"
        );
    }

    #[test]
    fn meta_phones_have_no_plus_and_google_phones_are_e164() {
        assert_eq!(
            google_phone("+1 650-555-1212").as_deref(),
            Some("+16505551212")
        );
        assert_eq!(
            sha256_hex(&google_phone("+16505551212").unwrap()),
            "1e231c66011e7a2d867a9cfae267a6aff103cf4913640b6e71a99850fc0ffbc8"
        );
        assert_eq!(
            meta_phone("+5511987654321").as_deref(),
            Some("5511987654321")
        );
        assert_eq!(
            meta_phone("0055 11 98765-4321").as_deref(),
            Some("5511987654321")
        );
        assert_eq!(meta_phone("11987654321"), None, "no country code: left out");
        assert_eq!(google_phone("11987654321"), None);
    }

    #[test]
    fn the_country_comes_from_the_phone_number() {
        assert_eq!(country_of_phone("+5511987654321").as_deref(), Some("br"));
        assert_eq!(country_of_phone("+16505551212").as_deref(), Some("us"));
        assert_eq!(meta_country("BR").as_deref(), Some("br"));
        assert_eq!(meta_country("Brazil"), None);
    }
}
