//! Inbound lead sources: verifying that a request really comes from the platform it claims, and turning
//! the platform's own payload into a Fluxo lead.
//!
//! A request starts [`Unverified`]. Only the verification functions of this module tree can make it
//! [`Verified`], and only a verified request can be mapped into a [`SourceLead`], the one thing the
//! receiver stores for a signed source. Code that stores a lead from an unverified request does not
//! compile (typestate, as svix's bridge does):
//!
//! ```compile_fail
//! use fluxo::sources::{Request, standard_webhooks};
//! let headers: Vec<(String, String)> = vec![];
//! let request = Request::new(&headers, br#"{"email":"a@b.com"}"#);
//! // expected `&Request<'_, Verified>`, found `&Request<'_, Unverified>`
//! let lead = standard_webhooks::request::lead(&request);
//! ```
//!
//! Every check runs over the raw body bytes, before any parsing, and compares in constant time
//! (`hmac`'s `verify_slice` and `subtle`). Each source has one or two keys: while a secret rotates, a
//! request signed with either is accepted.
//!
//! Kinds: [`meta_lead_ads`] (Facebook/Instagram lead ads: a signed notification, then a Graph API
//! fetch), [`google_ads_lead_form`] (a key in the body), [`typeform`] (a base64 HMAC header) and
//! [`standard_webhooks`] (id, timestamp and signature headers; a team's own backend). Browser forms
//! (`form`) stay in the receiver's intake, unauthenticated as before.

pub mod google_ads_lead_form;
pub mod meta_lead_ads;
pub mod ports;
pub mod standard_webhooks;
pub mod typeform;

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::intake::{self, FieldProblem, IntakeSettings, RawFields, Submission};
use crate::domain::{AdAttribution, Lead};

/// The timestamp tolerance of sources that sign a timestamp: older or newer requests are refused.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// One key a source's requests are signed (or authenticated) with. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key from its bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        SigningKey(bytes.into())
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The keys a source accepts: the current one and, while a secret rotates, the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeys(Vec<SigningKey>);

impl SigningKeys {
    /// The current key and an optional previous one.
    pub fn new(current: SigningKey, previous: Option<SigningKey>) -> Self {
        SigningKeys(std::iter::once(current).chain(previous).collect())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &SigningKey> {
        self.0.iter()
    }
}

/// Why a request was refused as not coming from its platform. The receiver answers every one of them
/// with the same bare `401`; the variant is only logged and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed")]
    MalformedHeader(&'static str),
    #[error("no signature matches the body with any configured key")]
    BadSignature,
    #[error("the signed timestamp is more than 5 minutes old")]
    TimestampTooOld,
    #[error("the signed timestamp is more than 5 minutes in the future")]
    TimestampTooNew,
    #[error("the message id was already received within the tolerance window")]
    Replayed,
    #[error("the body carries no key, or the wrong one")]
    BadKey,
}

/// Request state: nothing checked yet.
#[derive(Debug, Clone, Copy)]
pub struct Unverified;

/// Request state: the platform's signature (or key) matched, and the timestamp, if signed, is fresh.
#[derive(Debug, Clone)]
pub struct Verified {
    message_id: Option<String>,
    timestamp: Option<DateTime<Utc>>,
}

/// An inbound request: its headers (names lowercase) and raw body, unverified until a kind's `verify`
/// says otherwise.
#[derive(Debug, Clone)]
pub struct Request<'a, State = Unverified> {
    headers: &'a [(String, String)],
    body: &'a [u8],
    state: State,
    _state: PhantomData<State>,
}

impl<'a> Request<'a, Unverified> {
    /// Wraps a request's headers (lowercase names) and raw body bytes.
    pub fn new(headers: &'a [(String, String)], body: &'a [u8]) -> Self {
        Request {
            headers,
            body,
            state: Unverified,
            _state: PhantomData,
        }
    }

    /// Only this crate's verification functions take a request to [`Verified`].
    pub(crate) fn verified(
        self,
        message_id: Option<String>,
        timestamp: Option<DateTime<Utc>>,
    ) -> Request<'a, Verified> {
        Request {
            headers: self.headers,
            body: self.body,
            state: Verified {
                message_id,
                timestamp,
            },
            _state: PhantomData,
        }
    }

    /// The raw body, for the verification functions only.
    pub(crate) fn unverified_body(&self) -> &'a [u8] {
        self.body
    }
}

impl<'a, S> Request<'a, S> {
    /// A header's value (name lowercase), trimmed.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The body's length; the body itself is readable only once verified.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
}

impl<'a> Request<'a, Verified> {
    /// The verified raw body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The platform's message id, when it signs one (Standard Webhooks' `webhook-id`).
    pub fn message_id(&self) -> Option<&str> {
        self.state.message_id.as_deref()
    }

    /// The signed timestamp, when the platform signs one.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        self.state.timestamp
    }
}

/// HMAC-SHA256 of `parts` (concatenated) under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}

/// Whether `signature` is the HMAC-SHA256 of `parts` under any of `keys`, compared in constant time
/// (`hmac`'s `verify_slice` uses `subtle`). Every key is tried, so the time does not tell which matched.
pub(crate) fn any_key_signs(keys: &SigningKeys, parts: &[&[u8]], signature: &[u8]) -> bool {
    let mut matched = subtle::Choice::from(0);
    for key in keys.iter() {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.bytes()) else {
            continue;
        };
        for part in parts {
            mac.update(part);
        }
        matched |= subtle::Choice::from(u8::from(mac.verify_slice(signature).is_ok()));
    }
    matched.into()
}

/// Whether `given` equals any of `keys`, in constant time: both sides are hashed first, so neither the
/// content nor the length of a key leaks through timing.
pub(crate) fn any_key_equals(keys: &SigningKeys, given: &[u8]) -> bool {
    use sha2::Digest;
    let given = Sha256::digest(given);
    let mut matched = subtle::Choice::from(0);
    for key in keys.iter() {
        let expected = Sha256::digest(key.bytes());
        matched |= expected.as_slice().ct_eq(given.as_slice());
    }
    matched.into()
}

/// A lead mapped from a verified platform payload, before intake's validation.
///
/// It can only be built from a [`Request<Verified>`]: its constructor is private to this crate.
#[derive(Debug, Clone)]
pub struct SourceLead {
    /// The platform's own id of this lead (Meta's `leadgen_id`, Google's `lead_id`, Typeform's
    /// `token`, Standard Webhooks' `webhook-id`): the record key, so a redelivery is one lead.
    platform_id: String,
    fields: RawFields,
    attribution: AdAttribution,
    test: bool,
}

impl SourceLead {
    pub(crate) fn new(
        platform_id: String,
        fields: RawFields,
        attribution: AdAttribution,
        test: bool,
    ) -> Self {
        SourceLead {
            platform_id,
            fields,
            attribution,
            test,
        }
    }

    /// The platform's id of the lead.
    pub fn platform_id(&self) -> &str {
        &self.platform_id
    }

    /// Whether the platform marked the lead as a test (Google's `is_test`).
    pub fn is_test(&self) -> bool {
        self.test
    }

    /// Validates and normalizes the mapped fields through intake, as a form's would be, then adds the
    /// platform's attribution ids. `source` names the configured source (the lead's `source` unless the
    /// payload names one).
    pub fn normalize(
        self,
        source: &str,
        received_at: DateTime<Utc>,
        settings: &IntakeSettings,
    ) -> Result<SignedLead, Vec<FieldProblem>> {
        // Controls (honeypot, redirect) mean nothing for a signed source.
        let settings = IntakeSettings {
            honeypot_field: "\u{0}".to_string(),
            ..settings.clone()
        };
        let fields: RawFields = self
            .fields
            .into_iter()
            .filter(|(k, _)| !k.trim_start().starts_with('_'))
            .collect();
        match intake::normalize(&fields, Some(source), received_at, &settings)? {
            Submission::Lead {
                mut lead,
                fingerprint,
                ..
            } => {
                lead.ad = self.attribution;
                lead.test = self.test;
                Ok(SignedLead {
                    lead: *lead,
                    fingerprint,
                    platform_id: self.platform_id,
                })
            }
            Submission::Spam { .. } => Err(vec![FieldProblem {
                field: "(source)".into(),
                problem: "was read as spam".into(),
            }]),
        }
    }
}

/// A validated lead from a verified source: what the receiver stores for a signed source.
#[derive(Debug, Clone)]
pub struct SignedLead {
    lead: Lead,
    fingerprint: String,
    platform_id: String,
}

impl SignedLead {
    /// The lead.
    pub fn lead(&self) -> &Lead {
        &self.lead
    }

    /// The lead, taken out to be stored.
    pub fn into_parts(self) -> (Lead, String, String) {
        (self.lead, self.fingerprint, self.platform_id)
    }
}

/// The fields of a JSON object, as intake reads them. `Err` names the problem (never the content).
pub(crate) fn json_fields(value: &serde_json::Value) -> Result<RawFields, String> {
    let serde_json::Value::Object(map) = value else {
        return Err("the body must be a JSON object of fields".into());
    };
    Ok(map
        .iter()
        .map(|(k, v)| (k.clone(), raw_value(v, true)))
        .collect())
}

fn raw_value(value: &serde_json::Value, nested: bool) -> intake::RawValue {
    use intake::RawValue;
    match value {
        serde_json::Value::Null => RawValue::Null,
        serde_json::Value::Bool(b) => RawValue::Bool(*b),
        serde_json::Value::Number(n) => RawValue::Number(n.to_string()),
        serde_json::Value::String(s) => RawValue::Text(s.clone()),
        serde_json::Value::Array(_) => RawValue::List,
        serde_json::Value::Object(map) if nested => RawValue::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), raw_value(v, false)))
                .collect(),
        ),
        serde_json::Value::Object(_) => RawValue::List,
    }
}

/// A JSON value as text: strings as they are, numbers and booleans printed (platform ids are int64
/// numbers in some payloads and strings in others).
pub(crate) fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Makes a platform's field name a safe custom-field name (letters, digits, `_`, `-`, `.`, space; at
/// most 64 characters), so an odd question label never refuses a whole lead.
pub(crate) fn safe_field_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let cleaned = cleaned.trim_matches('_').to_string();
    if cleaned.is_empty() {
        "field".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_prints_redacted() {
        let key = SigningKey::new(b"s3cret".to_vec());
        assert_eq!(format!("{key:?}"), "[redacted]");
        let keys = SigningKeys::new(key, None);
        assert!(!format!("{keys:?}").contains("s3cret"));
    }

    #[test]
    fn either_key_of_a_rotation_signs() {
        let old = SigningKey::new(b"old".to_vec());
        let new = SigningKey::new(b"new".to_vec());
        let keys = SigningKeys::new(new.clone(), Some(old.clone()));
        let by_old = hmac_sha256(old.bytes(), &[b"body"]).unwrap();
        let by_new = hmac_sha256(new.bytes(), &[b"body"]).unwrap();
        assert!(any_key_signs(&keys, &[b"body"], &by_old));
        assert!(any_key_signs(&keys, &[b"body"], &by_new));
        assert!(!any_key_signs(&keys, &[b"other"], &by_new));
        let only_new = SigningKeys::new(new, None);
        assert!(!any_key_signs(&only_new, &[b"body"], &by_old));
    }

    #[test]
    fn key_equality_is_exact() {
        let keys = SigningKeys::new(SigningKey::new(b"abc".to_vec()), None);
        assert!(any_key_equals(&keys, b"abc"));
        assert!(!any_key_equals(&keys, b"abcd"));
        assert!(!any_key_equals(&keys, b""));
    }

    #[test]
    fn odd_question_labels_become_safe_custom_field_names() {
        assert_eq!(
            safe_field_name("what_is_your_budget?"),
            "what_is_your_budget"
        );
        assert_eq!(safe_field_name("¿Cuál?"), "Cuál");
        assert_eq!(safe_field_name("???"), "field");
        assert_eq!(safe_field_name(&"x".repeat(100)).len(), 64);
    }
}
