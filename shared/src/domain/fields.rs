//! The canonical lead fields: ONE table of their names, the aliases forms send for them (intake reads
//! it), and their length limits. Routing's `FieldRef` names these same fields (plus its own).

use super::lead::Email;

/// One of the five UTM parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UtmPart {
    Source,
    Medium,
    Campaign,
    Term,
    Content,
}

/// A canonical field of a lead, as intake fills it and routing reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeadField {
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
    Utm(UtmPart),
    Gclid,
    Fbclid,
    PageUrl,
}

/// Every canonical field and its name, as stored on a profile, named in errors and in the API contract.
const NAMES: [(&str, LeadField); 20] = [
    ("email", LeadField::Email),
    ("name", LeadField::Name),
    ("first_name", LeadField::FirstName),
    ("last_name", LeadField::LastName),
    ("company", LeadField::Company),
    ("phone", LeadField::Phone),
    ("source", LeadField::Source),
    ("interest", LeadField::Interest),
    ("form", LeadField::Form),
    ("consent", LeadField::Consent),
    ("consent_at", LeadField::ConsentAt),
    ("consent_text", LeadField::ConsentText),
    ("utm_source", LeadField::Utm(UtmPart::Source)),
    ("utm_medium", LeadField::Utm(UtmPart::Medium)),
    ("utm_campaign", LeadField::Utm(UtmPart::Campaign)),
    ("utm_term", LeadField::Utm(UtmPart::Term)),
    ("utm_content", LeadField::Utm(UtmPart::Content)),
    ("gclid", LeadField::Gclid),
    ("fbclid", LeadField::Fbclid),
    ("page_url", LeadField::PageUrl),
];

/// Every accepted field name (normalized: lowercase, `-` and spaces as `_`), sorted for binary search.
/// Each canonical name is also its own alias.
const ALIASES: &[(&str, LeadField)] = &[
    ("_form", LeadField::Form),
    ("accepts_marketing", LeadField::Consent),
    ("aceite", LeadField::Consent),
    ("celular", LeadField::Phone),
    ("company", LeadField::Company),
    ("company_name", LeadField::Company),
    ("consent", LeadField::Consent),
    ("consent_at", LeadField::ConsentAt),
    ("consent_given_at", LeadField::ConsentAt),
    ("consent_text", LeadField::ConsentText),
    ("consent_timestamp", LeadField::ConsentAt),
    ("consent_version", LeadField::ConsentText),
    ("consentimento", LeadField::Consent),
    ("consentimento_em", LeadField::ConsentAt),
    ("consentimento_texto", LeadField::ConsentText),
    ("correo", LeadField::Email),
    ("e_mail", LeadField::Email),
    ("email", LeadField::Email),
    ("email_address", LeadField::Email),
    ("emailaddress", LeadField::Email),
    ("empresa", LeadField::Company),
    ("family_name", LeadField::LastName),
    ("fbclid", LeadField::Fbclid),
    ("first_name", LeadField::FirstName),
    ("firstname", LeadField::FirstName),
    ("fname", LeadField::FirstName),
    ("fone", LeadField::Phone),
    ("fonte", LeadField::Source),
    ("form", LeadField::Form),
    ("form_id", LeadField::Form),
    ("form_name", LeadField::Form),
    ("formulario", LeadField::Form),
    ("full_name", LeadField::Name),
    ("fullname", LeadField::Name),
    ("gclid", LeadField::Gclid),
    ("gdpr", LeadField::Consent),
    ("given_name", LeadField::FirstName),
    ("interesse", LeadField::Interest),
    ("interest", LeadField::Interest),
    ("landing_page", LeadField::PageUrl),
    ("last_name", LeadField::LastName),
    ("lastname", LeadField::LastName),
    ("lead_source", LeadField::Source),
    ("lgpd", LeadField::Consent),
    ("lname", LeadField::LastName),
    ("mail", LeadField::Email),
    ("marketing_consent", LeadField::Consent),
    ("mobile", LeadField::Phone),
    ("mobile_phone", LeadField::Phone),
    ("name", LeadField::Name),
    ("nombre", LeadField::Name),
    ("nome", LeadField::Name),
    ("nome_completo", LeadField::Name),
    ("opt_in", LeadField::Consent),
    ("optin", LeadField::Consent),
    ("organisation", LeadField::Company),
    ("organizacao", LeadField::Company),
    ("organization", LeadField::Company),
    ("origem", LeadField::Source),
    ("page", LeadField::PageUrl),
    ("page_uri", LeadField::PageUrl),
    ("page_url", LeadField::PageUrl),
    ("pageurl", LeadField::PageUrl),
    ("pagina", LeadField::PageUrl),
    ("phone", LeadField::Phone),
    ("phone_number", LeadField::Phone),
    ("primeiro_nome", LeadField::FirstName),
    ("product", LeadField::Interest),
    ("produto", LeadField::Interest),
    ("sobrenome", LeadField::LastName),
    ("source", LeadField::Source),
    ("surname", LeadField::LastName),
    ("tel", LeadField::Phone),
    ("telefone", LeadField::Phone),
    ("telephone", LeadField::Phone),
    ("url", LeadField::PageUrl),
    ("utm_campaign", LeadField::Utm(UtmPart::Campaign)),
    ("utm_content", LeadField::Utm(UtmPart::Content)),
    ("utm_medium", LeadField::Utm(UtmPart::Medium)),
    ("utm_source", LeadField::Utm(UtmPart::Source)),
    ("utm_term", LeadField::Utm(UtmPart::Term)),
    ("whatsapp", LeadField::Phone),
    ("your_email", LeadField::Email),
    ("your_name", LeadField::Name),
    ("your_phone", LeadField::Phone),
];

impl LeadField {
    /// Every canonical field.
    pub const ALL: [LeadField; 20] = {
        let mut all = [LeadField::Email; 20];
        let mut i = 0;
        while i < NAMES.len() {
            all[i] = NAMES[i].1;
            i += 1;
        }
        all
    };

    /// The canonical name.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }

    /// The field a canonical name denotes (exact, already normalized).
    pub fn from_name(name: &str) -> Option<LeadField> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The field a normalized key (see [`normalize_key`]) is an alias of: `nome` gives `Name`.
    pub fn from_alias(normalized_key: &str) -> Option<LeadField> {
        ALIASES
            .binary_search_by(|(alias, _)| (*alias).cmp(normalized_key))
            .ok()
            .map(|i| ALIASES[i].1)
    }

    /// Accepted names, normalized (lowercase, `-` and spaces as `_`).
    pub fn aliases(self) -> impl Iterator<Item = &'static str> {
        ALIASES
            .iter()
            .filter(move |(_, f)| *f == self)
            .map(|(a, _)| *a)
    }

    /// Longest accepted value, in characters.
    pub fn max_len(self) -> usize {
        match self {
            LeadField::Email => Email::MAX_LEN,
            LeadField::Phone => 40,
            LeadField::ConsentText => 2000,
            LeadField::Gclid | LeadField::Fbclid => 512,
            LeadField::PageUrl => 2048,
            LeadField::Consent | LeadField::ConsentAt => 64,
            _ => 200,
        }
    }
}

/// Lowercases a field name and turns `-` and spaces into `_`.
pub fn normalize_key(key: &str) -> String {
    key.trim()
        .chars()
        .map(|c| if c == '-' || c == ' ' { '_' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The canonical name of a field a form may send under any of its aliases (`nome` gives `name`).
pub fn canonical_field(name: &str) -> Option<&'static str> {
    LeadField::from_alias(&normalize_key(name)).map(LeadField::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alias_table_is_sorted_and_has_no_duplicates() {
        assert!(ALIASES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn every_canonical_name_is_its_own_alias_and_round_trips() {
        for field in LeadField::ALL {
            assert_eq!(
                LeadField::from_alias(field.name()),
                Some(field),
                "{field:?}"
            );
            assert_eq!(LeadField::from_name(field.name()), Some(field));
        }
    }

    #[test]
    fn portuguese_aliases_reach_their_fields() {
        assert_eq!(canonical_field("Nome"), Some("name"));
        assert_eq!(canonical_field("E-mail"), Some("email"));
        assert_eq!(canonical_field("utm-source"), Some("utm_source"));
        assert_eq!(canonical_field("cargo"), None);
    }
}
