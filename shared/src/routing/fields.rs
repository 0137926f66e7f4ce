//! Field references: the names that rules and CRM mappings use to read a lead's profile.

use std::borrow::Cow;
use std::fmt;

/// One of the five UTM parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UtmPart {
    Source,
    Medium,
    Campaign,
    Term,
    Content,
}

/// A field a rule condition or a CRM mapping can read.
///
/// Canonical fields read the merged profile (latest non-empty value); UTM, click ids and the page read
/// the submission being routed (last touch); `segment`, `score`, `crm_status` and `crm_owner` read the
/// routing decision so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldRef {
    Email,
    EmailDomain,
    Name,
    FirstName,
    LastName,
    Company,
    Phone,
    Source,
    Interest,
    Form,
    PageUrl,
    Gclid,
    Fbclid,
    /// The `{source}` path segment the lead was posted to.
    Endpoint,
    /// `granted`, `refused`, or absent when the person never answered.
    Consent,
    Utm(UtmPart),
    /// A custom field, by the name the form sent.
    Custom(String),
    /// How many submissions the profile holds, this one included.
    SubmissionCount,
    Segment,
    Score,
    CrmStatus,
    CrmOwner,
}

/// The canonical fields and the router's own names. Form aliases (`nome`, `interesse`, ...) are resolved
/// first by the intake's alias table, so a rule can name a field the way the form sends it.
const NAMES: &[(&str, FieldRef)] = &[
    ("email", FieldRef::Email),
    ("email_domain", FieldRef::EmailDomain),
    ("name", FieldRef::Name),
    ("first_name", FieldRef::FirstName),
    ("last_name", FieldRef::LastName),
    ("company", FieldRef::Company),
    ("phone", FieldRef::Phone),
    ("source", FieldRef::Source),
    ("interest", FieldRef::Interest),
    ("form", FieldRef::Form),
    ("page_url", FieldRef::PageUrl),
    ("gclid", FieldRef::Gclid),
    ("fbclid", FieldRef::Fbclid),
    ("endpoint", FieldRef::Endpoint),
    ("consent", FieldRef::Consent),
    ("utm_source", FieldRef::Utm(UtmPart::Source)),
    ("utm_medium", FieldRef::Utm(UtmPart::Medium)),
    ("utm_campaign", FieldRef::Utm(UtmPart::Campaign)),
    ("utm_term", FieldRef::Utm(UtmPart::Term)),
    ("utm_content", FieldRef::Utm(UtmPart::Content)),
    ("utm.source", FieldRef::Utm(UtmPart::Source)),
    ("utm.medium", FieldRef::Utm(UtmPart::Medium)),
    ("utm.campaign", FieldRef::Utm(UtmPart::Campaign)),
    ("utm.term", FieldRef::Utm(UtmPart::Term)),
    ("utm.content", FieldRef::Utm(UtmPart::Content)),
    ("submission_count", FieldRef::SubmissionCount),
    ("segment", FieldRef::Segment),
    ("score", FieldRef::Score),
    ("crm_status", FieldRef::CrmStatus),
    ("crm_owner", FieldRef::CrmOwner),
];

impl FieldRef {
    /// Resolves a field name: a canonical name or alias, `utm.<part>`, or `custom.<name>`.
    pub fn parse(name: &str) -> Result<Self, String> {
        let trimmed = name.trim();
        if let Some(custom) = trimmed.strip_prefix("custom.") {
            if custom.is_empty() {
                return Err("`custom.` needs a field name after the dot".to_string());
            }
            return Ok(FieldRef::Custom(custom.to_string()));
        }
        let lowered = trimmed.to_lowercase();
        let name = crate::domain::intake::canonical_field(trimmed).unwrap_or(&lowered);
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.clone())
            .ok_or_else(|| {
                format!(
                    "unknown field `{trimmed}`: use a canonical field (email, name, company, interest, source, \
                     utm_source, ...) or `custom.{trimmed}` for a custom form field"
                )
            })
    }

    /// The canonical name, as it is stored on a profile and shown in messages.
    pub fn canonical(&self) -> Cow<'static, str> {
        match self {
            FieldRef::Custom(name) => Cow::Owned(format!("custom.{name}")),
            FieldRef::Utm(part) => Cow::Borrowed(match part {
                UtmPart::Source => "utm_source",
                UtmPart::Medium => "utm_medium",
                UtmPart::Campaign => "utm_campaign",
                UtmPart::Term => "utm_term",
                UtmPart::Content => "utm_content",
            }),
            other => Cow::Borrowed(
                NAMES
                    .iter()
                    .find(|(_, f)| f == other)
                    .map(|(n, _)| *n)
                    .unwrap_or("unknown"),
            ),
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Anything rules and mappings can read fields from.
pub trait Facts {
    /// The field's value, or `None` when it is absent or empty.
    fn get(&self, field: &FieldRef) -> Option<Cow<'_, str>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portuguese_aliases_resolve_to_canonical_fields() {
        assert_eq!(FieldRef::parse("interesse").unwrap(), FieldRef::Interest);
        assert_eq!(FieldRef::parse("nome").unwrap(), FieldRef::Name);
        assert_eq!(FieldRef::parse("Origem").unwrap(), FieldRef::Source);
        assert_eq!(FieldRef::parse("whatsapp").unwrap(), FieldRef::Phone);
        assert_eq!(FieldRef::parse("E-mail").unwrap(), FieldRef::Email);
        assert_eq!(FieldRef::parse("lead_source").unwrap(), FieldRef::Source);
    }

    #[test]
    fn utm_fields_accept_both_spellings() {
        assert_eq!(
            FieldRef::parse("utm.campaign").unwrap(),
            FieldRef::parse("utm_campaign").unwrap()
        );
    }

    #[test]
    fn custom_fields_need_the_custom_prefix() {
        assert_eq!(
            FieldRef::parse("custom.cargo").unwrap(),
            FieldRef::Custom("cargo".into())
        );
        let err = FieldRef::parse("cargo").unwrap_err();
        assert!(err.contains("custom.cargo"), "{err}");
    }

    #[test]
    fn canonical_names_round_trip() {
        for name in ["email", "interest", "utm_source", "custom.x", "score"] {
            assert_eq!(FieldRef::parse(name).unwrap().canonical(), name);
        }
    }
}
