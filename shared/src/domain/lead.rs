//! Lead value types. Each one is valid by construction, and none prints a raw email or phone number in `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A lead's id: a ULID, so ids sort by the time they were accepted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeadId(String);

impl LeadId {
    /// Builds an id from a time and 80 random bits.
    pub fn new(at: DateTime<Utc>, random: u128) -> Self {
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        LeadId(ulid::Ulid::from_parts(ms, random).to_string())
    }

    /// Wraps an id read back from storage.
    pub fn from_stored(id: impl Into<String>) -> Self {
        LeadId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeadId({})", self.0)
    }
}

/// A validated, lowercased email address.
///
/// `Debug` prints only a fingerprint, so an email never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why a text is not an acceptable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Empty after trimming.
    #[error("is required")]
    Empty,
    /// Longer than the 254 characters SMTP allows.
    #[error("is longer than 254 characters")]
    TooLong,
    /// Rejected by the address parser.
    #[error("is not a valid email address")]
    Invalid,
}

impl Email {
    /// The longest address SMTP can carry (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Trims, lowercases and validates an address with the `email_address` crate.
    ///
    /// Display names (`Ana <ana@x.com>`) and domain literals are refused, and the domain must have a dot.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let lowered = trimmed.to_lowercase();
        let options = email_address::Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        match email_address::EmailAddress::parse_with_options(&lowered, options) {
            Ok(parsed) => Ok(Email(parsed.email().to_string())),
            Err(_) => Err(EmailError::Invalid),
        }
    }

    /// The address, for the adapters that must send it (CRM, email platform).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stable, non-reversible label for logs and keys: the first 16 hex digits of HMAC-SHA256 under
    /// the process's fingerprint key (see [`crate::domain::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        super::fingerprint::fingerprint(self.0.as_bytes())
    }

    /// The full lowercase-hex SHA-256 of the normalized address, as ad platforms expect it.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.fingerprint())
    }
}

/// A phone number: E.164 when it could be parsed, otherwise the digits as given.
///
/// `Debug` prints only the last two digits.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

/// Why a text is not an acceptable phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a number in the configured country, nor a valid international number.
    #[error("is not a valid phone number")]
    Invalid,
}

impl Phone {
    /// Parses a phone number.
    ///
    /// With a default country (ISO 3166 alpha-2), national numbers are accepted and the result is E.164.
    /// Without one, numbers starting with `+` become E.164 and any other text with 6 to 20 digits is kept
    /// as its digits.
    pub fn parse(
        raw: &str,
        default_country: Option<rlibphonenumber::Region>,
    ) -> Result<Self, PhoneError> {
        let trimmed = raw.trim();
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        if default_country.is_some() || international {
            let candidate = trimmed.strip_prefix("00").map(|rest| format!("+{rest}"));
            let text = candidate.as_deref().unwrap_or(trimmed);
            let util = &*rlibphonenumber::PHONE_NUMBER_UTIL;
            let parsed = util
                .parse(text, default_country)
                .map_err(|_| PhoneError::Invalid)?;
            if !util.is_valid_number(&parsed) {
                return Err(PhoneError::Invalid);
            }
            return Ok(Phone(
                util.format(&parsed, rlibphonenumber::PhoneNumberFormat::E164)
                    .into_owned(),
            ));
        }
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        let only_phone_chars = trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')' | '/'));
        if only_phone_chars && (6..=20).contains(&digits.len()) {
            Ok(Phone(digits))
        } else {
            Err(PhoneError::Invalid)
        }
    }

    /// The number as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the number is in E.164 form.
    pub fn is_e164(&self) -> bool {
        self.0.starts_with('+')
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(f, "Phone(…{tail})")
    }
}

/// Marketing consent as the form captured it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Whether the person opted in to marketing.
    pub granted: bool,
    /// When consent was given (or refused). Defaults to the time the request was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// The text or the version of the text the person agreed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The five UTM parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    /// True when no UTM parameter was sent.
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.campaign.is_none()
            && self.term.is_none()
            && self.content.is_none()
    }
}

/// The ad platform ids a lead came through (lead-ad forms), kept for attribution: the profile and the
/// reports count Fluxo's own leads per campaign with them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdAttribution {
    /// `meta` or `google`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Meta's ad set, Google's ad group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adset_id: Option<String>,
    /// Meta's ad, Google's creative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    /// The platform's lead form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_id: Option<String>,
    /// The platform's own id of the lead (Meta's `leadgen_id`, Google's `lead_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
}

impl AdAttribution {
    /// True when no platform id is known.
    pub fn is_empty(&self) -> bool {
        *self == AdAttribution::default()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Fields a form sent that Fluxo has no canonical name for: flat strings, bounded in count and length.
pub type CustomFields = BTreeMap<String, String>;

/// A normalized lead, as the receiver accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    /// Where the lead came from: the form's `source` field, or else the `{source}` path segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<String>,
    /// The form's identifier, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "CustomFields::is_empty")]
    pub custom: CustomFields,
    /// Ad platform ids, for lead-ad forms (Meta, Google).
    #[serde(default, skip_serializing_if = "AdAttribution::is_empty")]
    pub ad: AdAttribution,
    /// A platform's test lead (Google's `is_test`): stored, and sent on only if its source says so.
    #[serde(default, skip_serializing_if = "is_false")]
    pub test: bool,
}

impl Lead {
    /// A lead with only an email, for tests and builders.
    pub fn with_email(email: Email) -> Self {
        Lead {
            email,
            name: None,
            first_name: None,
            last_name: None,
            company: None,
            phone: None,
            source: None,
            interest: None,
            form: None,
            consent: None,
            utm: Utm::default(),
            gclid: None,
            fbclid: None,
            page_url: None,
            custom: CustomFields::new(),
            ad: AdAttribution::default(),
            test: false,
        }
    }

    /// The best first name: the explicit one, or the first word of the full name.
    pub fn display_first_name(&self) -> Option<&str> {
        self.first_name
            .as_deref()
            .or_else(|| self.name.as_deref().and_then(|n| n.split(' ').next()))
    }

    /// Whether the lead opted in to marketing.
    pub fn has_marketing_consent(&self) -> bool {
        self.consent.as_ref().is_some_and(|c| c.granted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let email = Email::parse("  Ana.Silva@Exemplo.COM ").unwrap();
        assert_eq!(email.as_str(), "ana.silva@exemplo.com");
    }

    #[test]
    fn email_without_a_dotted_domain_is_refused() {
        assert_eq!(Email::parse("ana@localhost"), Err(EmailError::Invalid));
        assert_eq!(Email::parse("not an email"), Err(EmailError::Invalid));
        assert_eq!(Email::parse("Ana <ana@x.com>"), Err(EmailError::Invalid));
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
    }

    #[test]
    fn email_debug_never_shows_the_address() {
        let email = Email::parse("joao@exemplo.com").unwrap();
        let printed = format!("{email:?}");
        assert!(!printed.contains("joao"), "{printed}");
        assert!(!printed.contains("exemplo"), "{printed}");
    }

    #[test]
    fn brazilian_mobile_becomes_e164_with_a_default_country() {
        let phone = Phone::parse("(11) 98765-4321", Some(rlibphonenumber::Region::BR)).unwrap();
        assert_eq!(phone.as_str(), "+5511987654321");
        assert!(phone.is_e164());
    }

    #[test]
    fn international_number_becomes_e164_without_a_default_country() {
        let phone = Phone::parse("+1 (415) 555-2671", None).unwrap();
        assert_eq!(phone.as_str(), "+14155552671");
    }

    #[test]
    fn national_number_without_a_default_country_keeps_its_digits() {
        let phone = Phone::parse("(11) 98765-4321", None).unwrap();
        assert_eq!(phone.as_str(), "11987654321");
        assert!(Phone::parse("call me maybe", None).is_err());
    }

    #[test]
    fn phone_debug_shows_only_the_last_two_digits() {
        let phone = Phone::parse("+14155552671", None).unwrap();
        assert_eq!(format!("{phone:?}"), "Phone(…71)");
    }

    #[test]
    fn lead_ids_sort_by_time() {
        let early = LeadId::new(DateTime::from_timestamp(1_700_000_000, 0).unwrap(), 7);
        let late = LeadId::new(DateTime::from_timestamp(1_700_000_001, 0).unwrap(), 1);
        assert!(early < late);
        assert_eq!(early.as_str().len(), 26);
    }
}
