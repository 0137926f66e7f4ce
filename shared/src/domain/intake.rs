//! Intake: turns the fields a form or webhook sent into a normalized [`Lead`], or a list of every problem.
//!
//! Field names are matched case-insensitively after turning `-` and spaces into `_`, so `E-mail`,
//! `e_mail` and `e-mail` are one field. Each canonical field has aliases, including the Portuguese names
//! Brazilian forms send. Unknown fields become custom fields; names starting with `_` are controls
//! (honeypot, redirect) and are never stored.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lead::{Consent, CustomFields, Email, EmailError, Lead, Phone, Utm};

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
    pub default_country: Option<phonenumber::country::Id>,
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

/// Canonical fields Fluxo knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Canon {
    Email,
    Name,
    FirstName,
    LastName,
    Company,
    Phone,
    Source,
    Interest,
    Form,
    Consent,
    ConsentAt,
    ConsentText,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    Gclid,
    Fbclid,
    PageUrl,
}

/// Every accepted field name (normalized: lowercase, `-` and spaces as `_`), sorted for binary search.
const ALIASES: &[(&str, Canon)] = &[
    ("_form", Canon::Form),
    ("accepts_marketing", Canon::Consent),
    ("aceite", Canon::Consent),
    ("celular", Canon::Phone),
    ("company", Canon::Company),
    ("company_name", Canon::Company),
    ("consent", Canon::Consent),
    ("consent_at", Canon::ConsentAt),
    ("consent_given_at", Canon::ConsentAt),
    ("consent_text", Canon::ConsentText),
    ("consent_timestamp", Canon::ConsentAt),
    ("consent_version", Canon::ConsentText),
    ("consentimento", Canon::Consent),
    ("consentimento_em", Canon::ConsentAt),
    ("consentimento_texto", Canon::ConsentText),
    ("correo", Canon::Email),
    ("e_mail", Canon::Email),
    ("email", Canon::Email),
    ("email_address", Canon::Email),
    ("emailaddress", Canon::Email),
    ("empresa", Canon::Company),
    ("family_name", Canon::LastName),
    ("fbclid", Canon::Fbclid),
    ("first_name", Canon::FirstName),
    ("firstname", Canon::FirstName),
    ("fname", Canon::FirstName),
    ("fone", Canon::Phone),
    ("fonte", Canon::Source),
    ("form", Canon::Form),
    ("form_id", Canon::Form),
    ("form_name", Canon::Form),
    ("formulario", Canon::Form),
    ("full_name", Canon::Name),
    ("fullname", Canon::Name),
    ("gclid", Canon::Gclid),
    ("gdpr", Canon::Consent),
    ("given_name", Canon::FirstName),
    ("interesse", Canon::Interest),
    ("interest", Canon::Interest),
    ("landing_page", Canon::PageUrl),
    ("last_name", Canon::LastName),
    ("lastname", Canon::LastName),
    ("lead_source", Canon::Source),
    ("lgpd", Canon::Consent),
    ("lname", Canon::LastName),
    ("mail", Canon::Email),
    ("marketing_consent", Canon::Consent),
    ("mobile", Canon::Phone),
    ("mobile_phone", Canon::Phone),
    ("name", Canon::Name),
    ("nombre", Canon::Name),
    ("nome", Canon::Name),
    ("nome_completo", Canon::Name),
    ("opt_in", Canon::Consent),
    ("optin", Canon::Consent),
    ("organisation", Canon::Company),
    ("organizacao", Canon::Company),
    ("organization", Canon::Company),
    ("origem", Canon::Source),
    ("page", Canon::PageUrl),
    ("page_uri", Canon::PageUrl),
    ("page_url", Canon::PageUrl),
    ("pageurl", Canon::PageUrl),
    ("pagina", Canon::PageUrl),
    ("phone", Canon::Phone),
    ("phone_number", Canon::Phone),
    ("primeiro_nome", Canon::FirstName),
    ("product", Canon::Interest),
    ("produto", Canon::Interest),
    ("sobrenome", Canon::LastName),
    ("source", Canon::Source),
    ("surname", Canon::LastName),
    ("tel", Canon::Phone),
    ("telefone", Canon::Phone),
    ("telephone", Canon::Phone),
    ("url", Canon::PageUrl),
    ("utm_campaign", Canon::UtmCampaign),
    ("utm_content", Canon::UtmContent),
    ("utm_medium", Canon::UtmMedium),
    ("utm_source", Canon::UtmSource),
    ("utm_term", Canon::UtmTerm),
    ("whatsapp", Canon::Phone),
    ("your_email", Canon::Email),
    ("your_name", Canon::Name),
    ("your_phone", Canon::Phone),
];

impl Canon {
    #[cfg(test)]
    const ALL: [Canon; 20] = [
        Canon::Email,
        Canon::Name,
        Canon::FirstName,
        Canon::LastName,
        Canon::Company,
        Canon::Phone,
        Canon::Source,
        Canon::Interest,
        Canon::Form,
        Canon::Consent,
        Canon::ConsentAt,
        Canon::ConsentText,
        Canon::UtmSource,
        Canon::UtmMedium,
        Canon::UtmCampaign,
        Canon::UtmTerm,
        Canon::UtmContent,
        Canon::Gclid,
        Canon::Fbclid,
        Canon::PageUrl,
    ];

    /// The name used in errors and in the API contract.
    fn name(self) -> &'static str {
        match self {
            Canon::Email => "email",
            Canon::Name => "name",
            Canon::FirstName => "first_name",
            Canon::LastName => "last_name",
            Canon::Company => "company",
            Canon::Phone => "phone",
            Canon::Source => "source",
            Canon::Interest => "interest",
            Canon::Form => "form",
            Canon::Consent => "consent",
            Canon::ConsentAt => "consent_at",
            Canon::ConsentText => "consent_text",
            Canon::UtmSource => "utm_source",
            Canon::UtmMedium => "utm_medium",
            Canon::UtmCampaign => "utm_campaign",
            Canon::UtmTerm => "utm_term",
            Canon::UtmContent => "utm_content",
            Canon::Gclid => "gclid",
            Canon::Fbclid => "fbclid",
            Canon::PageUrl => "page_url",
        }
    }

    /// Accepted names, normalized (lowercase, `-` and spaces as `_`).
    #[cfg(test)]
    fn aliases(self) -> Vec<&'static str> {
        ALIASES
            .iter()
            .filter(|(_, c)| *c == self)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Longest accepted value, in characters.
    fn max_len(self) -> usize {
        match self {
            Canon::Email => Email::MAX_LEN,
            Canon::Phone => 40,
            Canon::ConsentText => 2000,
            Canon::Gclid | Canon::Fbclid => 512,
            Canon::PageUrl => 2048,
            Canon::Consent | Canon::ConsentAt => 64,
            _ => 200,
        }
    }

    fn lookup(normalized_key: &str) -> Option<Canon> {
        ALIASES
            .binary_search_by(|(alias, _)| (*alias).cmp(normalized_key))
            .ok()
            .map(|i| ALIASES[i].1)
    }
}

/// Lowercases a field name and turns `-`, `.` runs and spaces into `_`.
pub fn normalize_key(key: &str) -> String {
    key.trim()
        .chars()
        .map(|c| if c == '-' || c == ' ' { '_' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The canonical name of a field a form may send under any of its aliases (`nome` gives `name`).
pub fn canonical_field(name: &str) -> Option<&'static str> {
    Canon::lookup(&normalize_key(name)).map(Canon::name)
}

/// Trims and collapses every run of whitespace into one space. Unicode is kept as is.
pub fn collapse_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Whether a custom field name is safe to store and to name in an error.
fn is_safe_custom_key(key: &str) -> bool {
    let len = key.chars().count();
    (1..=64).contains(&len)
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
}

/// Reads a flat value as text; `None` when absent or empty.
fn flat_text(field: &str, value: &RawValue, problems: &mut Vec<FieldProblem>) -> Option<String> {
    let text = match value {
        RawValue::Text(s) => collapse_whitespace(s),
        RawValue::Number(n) => n.clone(),
        RawValue::Bool(b) => b.to_string(),
        RawValue::Null => return None,
        RawValue::List => {
            problems.push(FieldProblem::new(
                field,
                "must be a single value, not a list",
            ));
            return None;
        }
        RawValue::Object(_) => {
            problems.push(FieldProblem::new(
                field,
                "must be a single value, not an object",
            ));
            return None;
        }
    };
    (!text.is_empty()).then_some(text)
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" | "sim" | "s" | "checked" | "granted" | "accepted"
        | "aceito" | "agree" => Some(true),
        "false" | "no" | "n" | "off" | "0" | "não" | "nao" | "denied" | "refused" | "recusado" => {
            Some(false)
        }
        _ => None,
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // Epoch seconds or milliseconds, as many form tools send.
    let n: i64 = text.parse().ok()?;
    if n > 10_000_000_000 {
        DateTime::from_timestamp_millis(n)
    } else {
        DateTime::from_timestamp(n, 0)
    }
}

/// Collected canonical values, before they are validated together.
#[derive(Default)]
struct Collected {
    values: Vec<(Canon, String)>,
    consent_object: Option<Vec<(String, RawValue)>>,
    consent_flag: Option<RawValue>,
}

impl Collected {
    fn get(&self, canon: Canon) -> Option<&str> {
        self.values
            .iter()
            .find(|(c, _)| *c == canon)
            .map(|(_, v)| v.as_str())
    }
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
    let mut problems = Vec::new();
    let mut collected = Collected::default();
    let mut controls = Controls::default();
    let mut custom = CustomFields::new();
    let mut too_many_custom = false;

    for (raw_key, value) in fields {
        let key = normalize_key(raw_key);
        if key == settings.honeypot_field {
            if matches!(value, RawValue::Text(t) if !t.trim().is_empty())
                || matches!(value, RawValue::Bool(true) | RawValue::Number(_))
            {
                controls.honeypot_filled = true;
            }
            continue;
        }
        if let Some(canon) = Canon::lookup(&key) {
            if canon == Canon::Consent {
                match value {
                    RawValue::Object(inner) => collected.consent_object = Some(inner.clone()),
                    RawValue::Null => {}
                    other => collected.consent_flag = Some(other.clone()),
                }
                continue;
            }
            let Some(text) = flat_text(canon.name(), value, &mut problems) else {
                continue;
            };
            if text.chars().count() > canon.max_len() {
                problems.push(FieldProblem::new(
                    canon.name(),
                    format!("is longer than {} characters", canon.max_len()),
                ));
                continue;
            }
            match collected.get(canon) {
                None => collected.values.push((canon, text)),
                // A second alias with another value (telefone and whatsapp, say) is kept as a custom field.
                Some(first) if first != text && is_safe_custom_key(raw_key.trim()) => {
                    custom.insert(raw_key.trim().to_string(), text);
                }
                Some(_) => {}
            }
            continue;
        }
        if key == "_redirect" || key == "_next" {
            let mut sink = Vec::new();
            controls.redirect = flat_text("_redirect", value, &mut sink);
            problems.extend(sink);
            continue;
        }
        if key.starts_with('_') {
            continue;
        }
        let name = raw_key.trim();
        if !is_safe_custom_key(name) {
            problems.push(FieldProblem::new(
                "(custom field name)",
                "custom field names must be 1 to 64 letters, digits, spaces, '_', '-' or '.'",
            ));
            continue;
        }
        let Some(text) = flat_text(name, value, &mut problems) else {
            continue;
        };
        if text.chars().count() > settings.max_custom_value_len {
            problems.push(FieldProblem::new(
                name,
                format!(
                    "is longer than {} characters",
                    settings.max_custom_value_len
                ),
            ));
            continue;
        }
        if custom.len() >= settings.max_custom_fields && !custom.contains_key(name) {
            too_many_custom = true;
            continue;
        }
        custom.insert(name.to_string(), text);
    }
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

    let email = match collected.get(Canon::Email).map(Email::parse) {
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
    };

    let phone = collected.get(Canon::Phone).and_then(|raw| {
        match Phone::parse(raw, settings.default_country) {
            Ok(phone) => Some(phone),
            Err(_) => {
                let problem = match settings.default_country {
                    Some(country) => format!(
                        "is not a valid phone number for {country:?} or in international form"
                    ),
                    None => "is not a valid phone number".to_string(),
                };
                problems.push(FieldProblem::new("phone", problem));
                None
            }
        }
    });

    let (consent, consent_at_derived) = match consent_of(&collected, received_at, &mut problems) {
        Some((consent, derived)) => (Some(consent), derived),
        None => (None, false),
    };

    let page_url = collected.get(Canon::PageUrl).map(str::to_string);
    if let Some(url) = &page_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        problems.push(FieldProblem::new(
            "page_url",
            "must be an http or https URL",
        ));
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(email) = email else {
        return Err(vec![FieldProblem::new("email", "is required")]);
    };

    let owned = |c: Canon| collected.get(c).map(str::to_string);
    let first_name = owned(Canon::FirstName);
    let last_name = owned(Canon::LastName);
    let name = owned(Canon::Name).or_else(|| match (&first_name, &last_name) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(f), None) => Some(f.clone()),
        (None, Some(l)) => Some(l.clone()),
        (None, None) => None,
    });
    let mut lead = Lead {
        email,
        name,
        first_name,
        last_name,
        company: owned(Canon::Company),
        phone,
        source: owned(Canon::Source).or_else(|| endpoint_source.map(str::to_string)),
        interest: owned(Canon::Interest),
        form: owned(Canon::Form),
        consent,
        utm: Utm {
            source: owned(Canon::UtmSource),
            medium: owned(Canon::UtmMedium),
            campaign: owned(Canon::UtmCampaign),
            term: owned(Canon::UtmTerm),
            content: owned(Canon::UtmContent),
        },
        gclid: owned(Canon::Gclid),
        fbclid: owned(Canon::Fbclid),
        page_url,
        custom,
        ad: Default::default(),
        test: false,
    };
    // The fingerprint covers what the client sent: a consent time the server filled in is left out, so
    // a retry of the same form a second later is the same submission.
    if consent_at_derived && let Some(c) = &mut lead.consent {
        c.at = None;
    }
    let fingerprint = client_fingerprint(&lead, endpoint_source);
    if consent_at_derived && let Some(c) = &mut lead.consent {
        c.at = Some(received_at);
    }
    Ok(Submission::Lead {
        lead: Box::new(lead),
        redirect: controls.redirect,
        fingerprint,
    })
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

/// Builds the consent record from a flag (`consent=yes`), its companions (`consent_at`,
/// `consent_text`) or an object (`{"granted": true, "at": "...", "text": "..."}`). The flag says whether
/// the time was filled in with `received_at` because the client sent none.
fn consent_of(
    collected: &Collected,
    received_at: DateTime<Utc>,
    problems: &mut Vec<FieldProblem>,
) -> Option<(Consent, bool)> {
    let mut flag = collected.consent_flag.clone();
    let mut at_text = collected.get(Canon::ConsentAt).map(str::to_string);
    let mut text = collected.get(Canon::ConsentText).map(str::to_string);
    if let Some(object) = &collected.consent_object {
        for (k, v) in object {
            let mut sink = Vec::new();
            match normalize_key(k).as_str() {
                "granted" | "given" | "value" | "opt_in" | "accepted" => flag = Some(v.clone()),
                "at" | "timestamp" | "given_at" | "time" => {
                    at_text = flat_text("consent_at", v, &mut sink)
                }
                "text" | "version" | "wording" => text = flat_text("consent_text", v, &mut sink),
                _ => sink.push(FieldProblem::new(
                    "consent",
                    "has an unknown key (expected granted, at, text)",
                )),
            }
            problems.extend(sink);
        }
    }
    let granted = match flag {
        None => {
            if at_text.is_some() || text.is_some() {
                problems.push(FieldProblem::new(
                    "consent",
                    "is required when consent_at or consent_text is sent",
                ));
            }
            return None;
        }
        Some(RawValue::Bool(b)) => b,
        Some(RawValue::Number(n)) if n == "1" || n == "0" => n == "1",
        Some(RawValue::Text(t)) => match parse_flag(t.trim()) {
            Some(b) => b,
            None => {
                problems.push(FieldProblem::new(
                    "consent",
                    "must be yes or no (true/false, sim/não, on/off, 1/0)",
                ));
                return None;
            }
        },
        Some(_) => {
            problems.push(FieldProblem::new("consent", "must be yes or no"));
            return None;
        }
    };
    if text
        .as_ref()
        .is_some_and(|t| t.chars().count() > Canon::ConsentText.max_len())
    {
        problems.push(FieldProblem::new(
            "consent_text",
            "is longer than 2000 characters",
        ));
    }
    let derived = at_text.is_none();
    let at = match at_text {
        None => Some(received_at),
        Some(t) => match parse_time(&t) {
            Some(at) => Some(at),
            None => {
                problems.push(FieldProblem::new(
                    "consent_at",
                    "must be an RFC 3339 time or epoch seconds",
                ));
                None
            }
        },
    };
    Some((Consent { granted, at, text }, derived))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pairs: &[(&str, &str)]) -> RawFields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), RawValue::Text(v.to_string())))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000, 0).unwrap()
    }

    fn lead_of(submission: Submission) -> Lead {
        match submission {
            Submission::Lead { lead, .. } => *lead,
            Submission::Spam { .. } => panic!("unexpected spam"),
        }
    }

    fn accept(fields: &RawFields) -> Lead {
        lead_of(normalize(fields, None, now(), &IntakeSettings::default()).unwrap())
    }

    fn problems(fields: &RawFields) -> Vec<FieldProblem> {
        normalize(fields, None, now(), &IntakeSettings::default()).unwrap_err()
    }

    #[test]
    fn the_articles_payload_is_accepted_as_sent() {
        let fields = text(&[
            ("nome", "João"),
            ("email", "joao@exemplo.com"),
            ("origem", "Webinar XYZ"),
            ("interesse", "Software A"),
        ]);
        let lead = accept(&fields);
        assert_eq!(lead.name.as_deref(), Some("João"));
        assert_eq!(lead.email.as_str(), "joao@exemplo.com");
        assert_eq!(lead.source.as_deref(), Some("Webinar XYZ"));
        assert_eq!(lead.interest.as_deref(), Some("Software A"));
        assert!(lead.custom.is_empty());
    }

    #[test]
    fn every_alias_reaches_its_canonical_field() {
        for canon in Canon::ALL {
            for alias in &canon.aliases() {
                let value = match canon {
                    Canon::Email => "a@exemplo.com",
                    Canon::Phone => "+5511987654321",
                    Canon::Consent => "yes",
                    Canon::ConsentAt => "2026-01-02T03:04:05Z",
                    Canon::PageUrl => "https://exemplo.com/a",
                    _ => "valor",
                };
                let mut fields = text(&[(alias, value)]);
                if canon != Canon::Email {
                    fields.push(("email".into(), RawValue::Text("a@exemplo.com".into())));
                }
                if matches!(canon, Canon::ConsentAt | Canon::ConsentText) {
                    fields.push(("consent".into(), RawValue::Text("yes".into())));
                }
                let lead = lead_of(
                    normalize(&fields, None, now(), &IntakeSettings::default())
                        .unwrap_or_else(|p| panic!("alias {alias} refused: {p:?}")),
                );
                assert!(
                    lead.custom.is_empty(),
                    "alias {alias} became a custom field"
                );
                let got = match canon {
                    Canon::Email => Some(lead.email.as_str().to_string()),
                    Canon::Name => lead.name.clone(),
                    Canon::FirstName => lead.first_name.clone(),
                    Canon::LastName => lead.last_name.clone(),
                    Canon::Company => lead.company.clone(),
                    Canon::Phone => lead.phone.as_ref().map(|p| p.as_str().to_string()),
                    Canon::Source => lead.source.clone(),
                    Canon::Interest => lead.interest.clone(),
                    Canon::Form => lead.form.clone(),
                    Canon::Consent => lead.consent.as_ref().map(|c| c.granted.to_string()),
                    Canon::ConsentAt => lead
                        .consent
                        .as_ref()
                        .and_then(|c| c.at)
                        .map(|t| t.to_rfc3339()),
                    Canon::ConsentText => lead.consent.as_ref().and_then(|c| c.text.clone()),
                    Canon::UtmSource => lead.utm.source.clone(),
                    Canon::UtmMedium => lead.utm.medium.clone(),
                    Canon::UtmCampaign => lead.utm.campaign.clone(),
                    Canon::UtmTerm => lead.utm.term.clone(),
                    Canon::UtmContent => lead.utm.content.clone(),
                    Canon::Gclid => lead.gclid.clone(),
                    Canon::Fbclid => lead.fbclid.clone(),
                    Canon::PageUrl => lead.page_url.clone(),
                };
                assert!(got.is_some(), "alias {alias} did not fill {}", canon.name());
            }
        }
    }

    #[test]
    fn the_alias_table_is_sorted_and_has_no_duplicates() {
        assert!(ALIASES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn field_names_match_case_and_dash_insensitively() {
        let lead = accept(&text(&[
            ("E-Mail", "a@exemplo.com"),
            ("Nome", "Ana"),
            ("UTM_Source", "google"),
        ]));
        assert_eq!(lead.email.as_str(), "a@exemplo.com");
        assert_eq!(lead.name.as_deref(), Some("Ana"));
        assert_eq!(lead.utm.source.as_deref(), Some("google"));
    }

    #[test]
    fn values_are_trimmed_and_whitespace_collapsed_but_unicode_kept() {
        let lead = accept(&text(&[
            ("email", " A@Exemplo.com "),
            ("name", "  José \t da   Silva\n"),
            ("company", "Café ☕ Ltda"),
        ]));
        assert_eq!(lead.name.as_deref(), Some("José da Silva"));
        assert_eq!(lead.company.as_deref(), Some("Café ☕ Ltda"));
        assert_eq!(lead.email.as_str(), "a@exemplo.com");
    }

    #[test]
    fn first_and_last_name_make_the_full_name() {
        let lead = accept(&text(&[
            ("email", "a@exemplo.com"),
            ("first_name", "Ana"),
            ("last_name", "Silva"),
        ]));
        assert_eq!(lead.name.as_deref(), Some("Ana Silva"));
        assert_eq!(lead.first_name.as_deref(), Some("Ana"));
    }

    #[test]
    fn missing_email_is_reported() {
        let p = problems(&text(&[("nome", "Ana")]));
        assert_eq!(p, vec![FieldProblem::new("email", "is required")]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let fields = text(&[
            ("email", "nope"),
            ("telefone", "abc"),
            ("company", &"x".repeat(201)),
        ]);
        let p = problems(&fields);
        let names: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(names, vec!["company", "email", "phone"]);
    }

    #[test]
    fn over_long_values_are_refused() {
        let p = problems(&text(&[
            ("email", "a@exemplo.com"),
            ("utm_campaign", &"c".repeat(201)),
        ]));
        assert_eq!(
            p,
            vec![FieldProblem::new(
                "utm_campaign",
                "is longer than 200 characters"
            )]
        );
    }

    #[test]
    fn phone_becomes_e164_with_a_default_country() {
        let settings = IntakeSettings {
            default_country: Some(phonenumber::country::Id::BR),
            ..Default::default()
        };
        let fields = text(&[("email", "a@exemplo.com"), ("whatsapp", "(11) 98765-4321")]);
        let lead = lead_of(normalize(&fields, None, now(), &settings).unwrap());
        assert_eq!(lead.phone.unwrap().as_str(), "+5511987654321");
    }

    #[test]
    fn a_second_phone_alias_is_kept_as_a_custom_field() {
        let lead = accept(&text(&[
            ("email", "a@exemplo.com"),
            ("telefone", "+5511987654321"),
            ("whatsapp", "+5511912345678"),
        ]));
        assert_eq!(lead.phone.unwrap().as_str(), "+5511987654321");
        assert_eq!(
            lead.custom.get("whatsapp").map(String::as_str),
            Some("+5511912345678")
        );
    }

    #[test]
    fn consent_flag_records_the_time_received_and_the_text() {
        let lead = accept(&text(&[
            ("email", "a@exemplo.com"),
            ("consentimento", "sim"),
            ("consent_version", "v3"),
        ]));
        let consent = lead.consent.unwrap();
        assert!(consent.granted);
        assert_eq!(consent.at, Some(now()));
        assert_eq!(consent.text.as_deref(), Some("v3"));
    }

    #[test]
    fn consent_object_is_read_from_json() {
        let fields = vec![
            ("email".to_string(), RawValue::Text("a@exemplo.com".into())),
            (
                "consent".to_string(),
                RawValue::Object(vec![
                    ("granted".into(), RawValue::Bool(false)),
                    (
                        "at".into(),
                        RawValue::Text("2026-11-01T10:00:00-03:00".into()),
                    ),
                ]),
            ),
        ];
        let consent = accept(&fields).consent.unwrap();
        assert!(!consent.granted);
        assert_eq!(
            consent.at.unwrap().to_rfc3339(),
            "2026-11-01T13:00:00+00:00"
        );
    }

    #[test]
    fn unreadable_consent_is_refused() {
        let p = problems(&text(&[("email", "a@exemplo.com"), ("consent", "maybe")]));
        assert_eq!(p[0].field, "consent");
        let p = problems(&text(&[("email", "a@exemplo.com"), ("consent_text", "v1")]));
        assert_eq!(
            p[0].problem,
            "is required when consent_at or consent_text is sent"
        );
    }

    #[test]
    fn unknown_fields_become_custom_fields() {
        let lead = accept(&text(&[
            ("email", "a@exemplo.com"),
            ("cargo", "CTO"),
            ("Número de funcionários", "50"),
        ]));
        assert_eq!(lead.custom.get("cargo").map(String::as_str), Some("CTO"));
        assert_eq!(
            lead.custom
                .get("Número de funcionários")
                .map(String::as_str),
            Some("50")
        );
    }

    #[test]
    fn custom_fields_are_bounded_in_count_and_length() {
        let mut fields = text(&[("email", "a@exemplo.com")]);
        for i in 0..51 {
            fields.push((format!("f{i}"), RawValue::Text("v".into())));
        }
        let p = problems(&fields);
        assert_eq!(
            p,
            vec![FieldProblem::new(
                "(custom fields)",
                "at most 50 custom fields are accepted"
            )]
        );

        let p = problems(&text(&[
            ("email", "a@exemplo.com"),
            ("notes", &"n".repeat(1001)),
        ]));
        assert_eq!(
            p,
            vec![FieldProblem::new("notes", "is longer than 1000 characters")]
        );
    }

    #[test]
    fn custom_field_names_with_markup_are_refused_without_echoing_them() {
        let p = problems(&text(&[
            ("email", "a@exemplo.com"),
            ("<script>alert(1)</script>", "x"),
        ]));
        assert_eq!(p[0].field, "(custom field name)");
        assert!(!p[0].problem.contains("<script>"));
    }

    #[test]
    fn nested_values_are_refused() {
        let fields = vec![
            ("email".to_string(), RawValue::Text("a@exemplo.com".into())),
            ("company".to_string(), RawValue::List),
            ("extra".to_string(), RawValue::Object(vec![])),
        ];
        let p = problems(&fields);
        assert_eq!(
            p[0],
            FieldProblem::new("company", "must be a single value, not a list")
        );
        assert_eq!(
            p[1],
            FieldProblem::new("extra", "must be a single value, not an object")
        );
    }

    #[test]
    fn numbers_and_booleans_are_kept_as_text() {
        let fields = vec![
            ("email".to_string(), RawValue::Text("a@exemplo.com".into())),
            ("employees".to_string(), RawValue::Number("50".into())),
            ("newsletter".to_string(), RawValue::Bool(true)),
        ];
        let lead = accept(&fields);
        assert_eq!(lead.custom.get("employees").map(String::as_str), Some("50"));
        assert_eq!(
            lead.custom.get("newsletter").map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn a_filled_honeypot_is_flagged_and_skips_validation() {
        let fields = text(&[("email", "not valid"), ("_gotcha", "http://spam")]);
        let submission = normalize(&fields, None, now(), &IntakeSettings::default()).unwrap();
        assert_eq!(submission, Submission::Spam { redirect: None });
    }

    #[test]
    fn an_empty_honeypot_is_ignored() {
        let fields = text(&[("email", "a@exemplo.com"), ("_gotcha", "")]);
        let lead = lead_of(normalize(&fields, None, now(), &IntakeSettings::default()).unwrap());
        assert!(lead.custom.is_empty());
    }

    #[test]
    fn the_honeypot_field_name_is_configurable() {
        let settings = IntakeSettings {
            honeypot_field: "website".into(),
            ..Default::default()
        };
        let fields = text(&[("email", "a@exemplo.com"), ("website", "x")]);
        assert!(matches!(
            normalize(&fields, None, now(), &settings).unwrap(),
            Submission::Spam { .. }
        ));
    }

    #[test]
    fn redirect_and_other_control_fields_are_not_stored() {
        let submission = normalize(
            &text(&[
                ("email", "a@exemplo.com"),
                ("_redirect", "https://site.com/obrigado"),
                ("_subject", "x"),
            ]),
            None,
            now(),
            &IntakeSettings::default(),
        )
        .unwrap();
        assert_eq!(submission.redirect(), Some("https://site.com/obrigado"));
        assert!(lead_of(submission).custom.is_empty());
    }

    #[test]
    fn the_path_source_is_used_when_the_body_names_none() {
        let fields = text(&[("email", "a@exemplo.com")]);
        let lead = lead_of(
            normalize(&fields, Some("landing"), now(), &IntakeSettings::default()).unwrap(),
        );
        assert_eq!(lead.source.as_deref(), Some("landing"));
        let fields = text(&[("email", "a@exemplo.com"), ("origem", "Webinar")]);
        let lead = lead_of(
            normalize(&fields, Some("landing"), now(), &IntakeSettings::default()).unwrap(),
        );
        assert_eq!(lead.source.as_deref(), Some("Webinar"));
    }

    #[test]
    fn page_url_must_be_http() {
        let p = problems(&text(&[
            ("email", "a@exemplo.com"),
            ("page_url", "javascript:alert(1)"),
        ]));
        assert_eq!(
            p,
            vec![FieldProblem::new(
                "page_url",
                "must be an http or https URL"
            )]
        );
    }

    fn fingerprint_at(fields: &RawFields, endpoint: Option<&str>, at: DateTime<Utc>) -> String {
        match normalize(fields, endpoint, at, &IntakeSettings::default()).unwrap() {
            Submission::Lead { fingerprint, .. } => fingerprint,
            Submission::Spam { .. } => panic!("unexpected spam"),
        }
    }

    #[test]
    fn a_consent_time_filled_in_by_the_server_is_not_part_of_the_fingerprint() {
        let fields = text(&[("email", "a@exemplo.com"), ("consent", "yes")]);
        let later = now() + chrono::Duration::milliseconds(1500);
        assert_eq!(
            fingerprint_at(&fields, None, now()),
            fingerprint_at(&fields, None, later)
        );
        // The lead itself still records when consent was received.
        let lead = lead_of(normalize(&fields, None, later, &IntakeSettings::default()).unwrap());
        assert_eq!(lead.consent.unwrap().at, Some(later));
    }

    #[test]
    fn a_consent_time_the_client_sent_is_part_of_the_fingerprint() {
        let at = |t: &str| {
            fingerprint_at(
                &text(&[
                    ("email", "a@exemplo.com"),
                    ("consent", "yes"),
                    ("consent_at", t),
                ]),
                None,
                now(),
            )
        };
        assert_ne!(at("2026-01-02T03:04:05Z"), at("2026-01-02T03:04:06Z"));
    }

    #[test]
    fn any_difference_in_what_the_client_sent_changes_the_fingerprint() {
        let base = [("email", "a@exemplo.com"), ("interesse", "Software A")];
        let print = |extra: &[(&str, &str)], endpoint: Option<&str>| {
            let mut fields = text(&base);
            fields.extend(text(extra));
            fingerprint_at(&fields, endpoint, now())
        };
        let first = print(&[], None);
        assert_eq!(first, print(&[], None));
        assert_ne!(first, print(&[("telefone", "+5511987654321")], None));
        assert_ne!(first, print(&[("cargo", "CTO")], None));
        assert_ne!(first, print(&[], Some("landing")));
        let other_interest = fingerprint_at(
            &text(&[("email", "a@exemplo.com"), ("interesse", "Software B")]),
            None,
            now(),
        );
        assert_ne!(first, other_interest);
        assert_ne!(
            content_dedup_key(&first),
            content_dedup_key(&other_interest)
        );
    }
}
