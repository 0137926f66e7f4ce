//! Field references: the names that rules and CRM mappings use to read a lead's profile. The canonical
//! lead fields and their names are `domain::fields`' one table; this adds the router's own.

use std::borrow::Cow;
use std::fmt;

pub use crate::domain::fields::{LeadField, UtmPart};

/// A field a rule condition or a CRM mapping can read.
///
/// Canonical lead fields ([`LeadField`], named by the one table in `domain::fields`) read the merged
/// profile (latest non-empty value), except UTM, click ids and the page, which read the submission being
/// routed (last touch); `segment`, `score`, `crm_status` and `crm_owner` read the routing decision so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldRef {
    /// A canonical lead field (`consent_at` and `consent_text` excepted: rules read `consent`).
    Lead(LeadField),
    /// The part of the email after the `@`.
    EmailDomain,
    /// The `{source}` path segment the lead was posted to.
    Endpoint,
    /// A custom field, by the name the form sent.
    Custom(String),
    /// How many submissions the profile holds, this one included.
    SubmissionCount,
    Segment,
    Score,
    CrmStatus,
    CrmOwner,
}

/// The router's own names, beside the canonical lead fields.
const ROUTER_NAMES: &[(&str, FieldRef)] = &[
    ("email_domain", FieldRef::EmailDomain),
    ("endpoint", FieldRef::Endpoint),
    ("submission_count", FieldRef::SubmissionCount),
    ("segment", FieldRef::Segment),
    ("score", FieldRef::Score),
    ("crm_status", FieldRef::CrmStatus),
    ("crm_owner", FieldRef::CrmOwner),
];

impl FieldRef {
    /// Resolves a field name: a canonical name or alias (form aliases such as `nome` or `interesse` are
    /// resolved by the intake's alias table, so a rule can name a field the way the form sends it),
    /// `utm.<part>`, the router's own names, or `custom.<name>`.
    pub fn parse(name: &str) -> Result<Self, String> {
        let trimmed = name.trim();
        if let Some(custom) = trimmed.strip_prefix("custom.") {
            if custom.is_empty() {
                return Err("`custom.` needs a field name after the dot".to_string());
            }
            return Ok(FieldRef::Custom(custom.to_string()));
        }
        let lowered = trimmed.to_lowercase();
        let lowered = match lowered.strip_prefix("utm.") {
            Some(part) => format!("utm_{part}"),
            None => lowered,
        };
        let name = crate::domain::fields::canonical_field(trimmed).unwrap_or(&lowered);
        let lead = LeadField::from_name(name)
            .filter(|f| !matches!(f, LeadField::ConsentAt | LeadField::ConsentText))
            .map(FieldRef::Lead);
        lead.or_else(|| {
            ROUTER_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| f.clone())
        })
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
            FieldRef::Lead(field) => Cow::Borrowed(field.name()),
            FieldRef::Custom(name) => Cow::Owned(format!("custom.{name}")),
            other => Cow::Borrowed(
                ROUTER_NAMES
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
    fn consent_companions_are_not_rule_fields() {
        assert!(FieldRef::parse("consent_at").is_err());
        assert!(FieldRef::parse("consent_text").is_err());
        assert_eq!(
            FieldRef::parse("consent").unwrap(),
            FieldRef::Lead(LeadField::Consent)
        );
    }

    #[test]
    fn portuguese_aliases_resolve_to_canonical_fields() {
        assert_eq!(
            FieldRef::parse("interesse").unwrap(),
            FieldRef::Lead(LeadField::Interest)
        );
        assert_eq!(
            FieldRef::parse("nome").unwrap(),
            FieldRef::Lead(LeadField::Name)
        );
        assert_eq!(
            FieldRef::parse("Origem").unwrap(),
            FieldRef::Lead(LeadField::Source)
        );
        assert_eq!(
            FieldRef::parse("whatsapp").unwrap(),
            FieldRef::Lead(LeadField::Phone)
        );
        assert_eq!(
            FieldRef::parse("E-mail").unwrap(),
            FieldRef::Lead(LeadField::Email)
        );
        assert_eq!(
            FieldRef::parse("lead_source").unwrap(),
            FieldRef::Lead(LeadField::Source)
        );
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
        for name in [
            "email",
            "interest",
            "utm_source",
            "custom.x",
            "score",
            "email_domain",
        ] {
            assert_eq!(FieldRef::parse(name).unwrap().canonical(), name);
        }
    }
}
