//! Intake: turns the fields a form or webhook sent into a normalized [`Lead`], or a list of every problem.
//!
//! Field names are matched case-insensitively after turning `-` and spaces into `_`, so `E-mail`,
//! `e_mail` and `e-mail` are one field. Each canonical field has aliases (the table is
//! [`crate::domain::fields`]), including the Portuguese names Brazilian forms send. Unknown fields become
//! custom fields; names starting with `_` are controls (honeypot, redirect) and are never stored.
//!
//! `values.rs` reads single values, `consent.rs` builds the consent record; [`normalize`] collects the
//! fields, validates them together and builds the lead.

mod consent;
#[cfg(test)]
mod tests;
mod values;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lead::{CustomFields, Email, EmailError, Lead, Phone, Utm};
use crate::domain::fields::{LeadField, UtmPart};
pub use crate::domain::fields::{canonical_field, normalize_key};
pub use values::collapse_whitespace;
use values::{flat_text, is_safe_custom_key};

/// A value as the sender sent it, before normalization.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Text(String),
    Bool(bool),
    /// A JSON number, kept as its text.
    Number(String),
    /// A JSON object; only `consent` may be one.
    Object(Vec<(String, RawValue)>),
    /// A JSON array; never accepted.
    List,
    /// JSON `null`: the same as not sent.
    Null,
}

/// The fields of one submission, in the order they were sent.
pub type RawFields = Vec<(String, RawValue)>;

/// Intake limits and options, read once at cold start.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Country for national phone numbers; numbers become E.164 when set.
    pub default_country: Option<rlibphonenumber::Region>,
    /// The honeypot field's name (normalized), `_gotcha` by default.
    pub honeypot_field: String,
    /// Most custom fields one lead may carry.
    pub max_custom_fields: usize,
    /// Longest custom field value, in characters.
    pub max_custom_value_len: usize,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            default_country: None,
            honeypot_field: "_gotcha".to_string(),
            max_custom_fields: 50,
            max_custom_value_len: 1000,
        }
    }
}

/// One problem with one field. `field` is the canonical name, never unescaped sender text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

impl FieldProblem {
    fn new(field: &str, problem: impl Into<String>) -> Self {
        FieldProblem {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// Control fields that steer the response and are never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Controls {
    redirect: Option<String>,
    honeypot_filled: bool,
}

/// A submission that passed intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// A lead to store and queue.
    Lead {
        lead: Box<Lead>,
        /// `_redirect` (or `_next`): where a plain HTML form wants the browser sent afterwards.
        redirect: Option<String>,
        /// What the client sent, and only that: see [`client_fingerprint`].
        fingerprint: String,
    },
    /// The honeypot field was filled: a bot. Nothing it sent was validated or is to be kept.
    Spam { redirect: Option<String> },
}

impl Submission {
    /// The redirect target the form asked for, if any.
    pub fn redirect(&self) -> Option<&str> {
        match self {
            Submission::Lead { redirect, .. } | Submission::Spam { redirect } => {
                redirect.as_deref()
            }
        }
    }
}

/// Collected canonical values, before they are validated together.
#[derive(Default)]
struct Collected {
    values: Vec<(LeadField, String)>,
    consent_object: Option<Vec<(String, RawValue)>>,
    consent_flag: Option<RawValue>,
}

impl Collected {
    fn get(&self, field: LeadField) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    fn owned(&self, field: LeadField) -> Option<String> {
        self.get(field).map(str::to_string)
    }
}

/// Everything one pass over the sent fields gathers.
#[derive(Default)]
struct Gathered {
    collected: Collected,
    controls: Controls,
    custom: CustomFields,
    too_many_custom: bool,
    problems: Vec<FieldProblem>,
}

/// Normalizes and validates one submission.
///
/// `endpoint_source` is the `{source}` path segment, used when the body names no source.
/// Every problem is reported, not just the first.
pub fn normalize(
    fields: &RawFields,
    endpoint_source: Option<&str>,
    received_at: DateTime<Utc>,
    settings: &IntakeSettings,
) -> Result<Submission, Vec<FieldProblem>> {
    let Gathered {
        collected,
        controls,
        custom,
        too_many_custom,
        mut problems,
    } = gather(fields, settings);
    if too_many_custom {
        problems.push(FieldProblem::new(
            "(custom fields)",
            format!(
                "at most {} custom fields are accepted",
                settings.max_custom_fields
            ),
        ));
    }
    if controls.honeypot_filled {
        // Bots get a success-looking answer; nothing they sent is validated or kept.
        return Ok(Submission::Spam {
            redirect: controls.redirect,
        });
    }

    let email = email_of(&collected, &mut problems);
    let phone = phone_of(&collected, settings, &mut problems);
    let (consent, consent_at_derived) =
        match consent::consent_of(&collected, received_at, &mut problems) {
            Some((consent, derived)) => (Some(consent), derived),
            None => (None, false),
        };
    let page_url = page_url_of(&collected, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(email) = email else {
        return Err(vec![FieldProblem::new("email", "is required")]);
    };

    let owned = |f: LeadField| collected.owned(f);
    let first_name = owned(LeadField::FirstName);
    let last_name = owned(LeadField::LastName);
    let name = owned(LeadField::Name).or_else(|| full_name(&first_name, &last_name));
    let mut lead = Lead {
        email,
        name,
        first_name,
        last_name,
        company: owned(LeadField::Company),
        phone,
        source: owned(LeadField::Source).or_else(|| endpoint_source.map(str::to_string)),
        interest: owned(LeadField::Interest),
        form: owned(LeadField::Form),
        consent,
        utm: Utm {
            source: owned(LeadField::Utm(UtmPart::Source)),
            medium: owned(LeadField::Utm(UtmPart::Medium)),
            campaign: owned(LeadField::Utm(UtmPart::Campaign)),
            term: owned(LeadField::Utm(UtmPart::Term)),
            content: owned(LeadField::Utm(UtmPart::Content)),
        },
        gclid: owned(LeadField::Gclid),
        fbclid: owned(LeadField::Fbclid),
        page_url,
        custom,
        ad: Default::default(),
        test: false,
    };
    let fingerprint =
        fingerprint_as_sent(&mut lead, consent_at_derived, received_at, endpoint_source);
    Ok(Submission::Lead {
        lead: Box::new(lead),
        redirect: controls.redirect,
        fingerprint,
    })
}

/// One pass over the sent fields: the honeypot, canonical fields, controls and custom fields.
fn gather(fields: &RawFields, settings: &IntakeSettings) -> Gathered {
    let mut g = Gathered::default();
    for (raw_key, value) in fields {
        let key = normalize_key(raw_key);
        if key == settings.honeypot_field {
            if matches!(value, RawValue::Text(t) if !t.trim().is_empty())
                || matches!(value, RawValue::Bool(true) | RawValue::Number(_))
            {
                g.controls.honeypot_filled = true;
            }
        } else if let Some(field) = LeadField::from_alias(&key) {
            gather_canonical(&mut g, field, raw_key, value);
        } else if key == "_redirect" || key == "_next" {
            let mut sink = Vec::new();
            g.controls.redirect = flat_text("_redirect", value, &mut sink);
            g.problems.extend(sink);
        } else if !key.starts_with('_') {
            gather_custom(&mut g, raw_key.trim(), value, settings);
        }
    }
    g
}

/// A canonical field: consent is kept raw for [`consent::consent_of`]; other values are checked for
/// length, and a second alias with another value (telefone and whatsapp, say) is kept as a custom field.
fn gather_canonical(g: &mut Gathered, field: LeadField, raw_key: &str, value: &RawValue) {
    if field == LeadField::Consent {
        match value {
            RawValue::Object(inner) => g.collected.consent_object = Some(inner.clone()),
            RawValue::Null => {}
            other => g.collected.consent_flag = Some(other.clone()),
        }
        return;
    }
    let Some(text) = flat_text(field.name(), value, &mut g.problems) else {
        return;
    };
    if text.chars().count() > field.max_len() {
        g.problems.push(FieldProblem::new(
            field.name(),
            format!("is longer than {} characters", field.max_len()),
        ));
        return;
    }
    match g.collected.get(field) {
        None => g.collected.values.push((field, text)),
        Some(first) if first != text && is_safe_custom_key(raw_key.trim()) => {
            g.custom.insert(raw_key.trim().to_string(), text);
        }
        Some(_) => {}
    }
}

/// A custom field: a safe name, a bounded value, and at most `max_custom_fields` of them.
fn gather_custom(g: &mut Gathered, name: &str, value: &RawValue, settings: &IntakeSettings) {
    if !is_safe_custom_key(name) {
        g.problems.push(FieldProblem::new(
            "(custom field name)",
            "custom field names must be 1 to 64 letters, digits, spaces, '_', '-' or '.'",
        ));
        return;
    }
    let Some(text) = flat_text(name, value, &mut g.problems) else {
        return;
    };
    if text.chars().count() > settings.max_custom_value_len {
        g.problems.push(FieldProblem::new(
            name,
            format!(
                "is longer than {} characters",
                settings.max_custom_value_len
            ),
        ));
        return;
    }
    if g.custom.len() >= settings.max_custom_fields && !g.custom.contains_key(name) {
        g.too_many_custom = true;
        return;
    }
    g.custom.insert(name.to_string(), text);
}

/// The email: required and valid.
fn email_of(collected: &Collected, problems: &mut Vec<FieldProblem>) -> Option<Email> {
    match collected.get(LeadField::Email).map(Email::parse) {
        None => {
            problems.push(FieldProblem::new("email", "is required"));
            None
        }
        Some(Ok(email)) => Some(email),
        Some(Err(EmailError::TooLong)) => {
            problems.push(FieldProblem::new("email", "is longer than 254 characters"));
            None
        }
        Some(Err(_)) => {
            problems.push(FieldProblem::new("email", "is not a valid email address"));
            None
        }
    }
}

/// The phone, in E.164 when a default country is set; a number that does not parse is a problem.
fn phone_of(
    collected: &Collected,
    settings: &IntakeSettings,
    problems: &mut Vec<FieldProblem>,
) -> Option<Phone> {
    let raw = collected.get(LeadField::Phone)?;
    match Phone::parse(raw, settings.default_country) {
        Ok(phone) => Some(phone),
        Err(_) => {
            let problem = match settings.default_country {
                Some(country) => {
                    format!("is not a valid phone number for {country:?} or in international form")
                }
                None => "is not a valid phone number".to_string(),
            };
            problems.push(FieldProblem::new("phone", problem));
            None
        }
    }
}

/// The page URL, which must be http(s).
fn page_url_of(collected: &Collected, problems: &mut Vec<FieldProblem>) -> Option<String> {
    let page_url = collected.owned(LeadField::PageUrl);
    if let Some(url) = &page_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        problems.push(FieldProblem::new(
            "page_url",
            "must be an http or https URL",
        ));
    }
    page_url
}

/// First and last name as the full name, when the form sent no full name.
fn full_name(first: &Option<String>, last: &Option<String>) -> Option<String> {
    match (first, last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(f), None) => Some(f.clone()),
        (None, Some(l)) => Some(l.clone()),
        (None, None) => None,
    }
}

/// The fingerprint covers what the client sent: a consent time the server filled in is left out, so
/// a retry of the same form a second later is the same submission.
fn fingerprint_as_sent(
    lead: &mut Lead,
    consent_at_derived: bool,
    received_at: DateTime<Utc>,
    endpoint_source: Option<&str>,
) -> String {
    if consent_at_derived && let Some(c) = &mut lead.consent {
        c.at = None;
    }
    let fingerprint = client_fingerprint(lead, endpoint_source);
    if consent_at_derived && let Some(c) = &mut lead.consent {
        c.at = Some(received_at);
    }
    fingerprint
}

/// A hash of a lead as the client sent it (no server-derived values) and the path it was posted to.
///
/// Two submissions with the same fingerprint carry the same lead; it decides whether a request reusing
/// an `Idempotency-Key` is a replay (same fingerprint) or a different lead (`422`), and which requests
/// without a key are duplicates.
pub fn client_fingerprint(sent: &Lead, endpoint: Option<&str>) -> String {
    let json = serde_json::to_string(sent).unwrap_or_default();
    crate::idempotency::key_of(
        "fluxo.lead.client-content.v2",
        &[endpoint.unwrap_or(""), &json],
    )
}

/// The de-duplication key of a request without an `Idempotency-Key`: its client fingerprint.
///
/// Requests with the same key inside the de-duplication window (which starts at the first of them) are
/// one submission; any difference in what the client sent makes another key.
pub fn content_dedup_key(fingerprint: &str) -> String {
    crate::idempotency::key_of("fluxo.request.content.v2", &[fingerprint])
}
