//! `[[sources]]`: the inbound lead sources the webhook-receiver verifies, each with its own route
//! (`/leads/{name}`), kind and secrets, composed of each kind's `config.rs`.

use serde::Deserialize;

use super::{ConfigError, Located};
use crate::secrets::SecretRef;
use crate::sources::google_ads_lead_form::config::GoogleAdsLeadFormConfig;
use crate::sources::meta_lead_ads::config::MetaLeadAdsConfig;
use crate::sources::standard_webhooks::config::StandardWebhooksConfig;
use crate::sources::typeform::config::TypeformConfig;

/// One `[[sources]]` entry, by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Facebook/Instagram lead ads.
    MetaLeadAds(Box<MetaLeadAdsConfig>),
    /// Google Ads lead form webhooks.
    GoogleAdsLeadForm(GoogleAdsLeadFormConfig),
    /// Typeform webhooks.
    Typeform(TypeformConfig),
    /// Standard Webhooks: a team's own backend or an event tool, posting Fluxo's lead JSON.
    StandardWebhooks(StandardWebhooksConfig),
    /// A browser form, unauthenticated (origin checks, honeypot, consent rules), named explicitly.
    Form(FormSourceConfig),
}

/// `[[sources]] kind = "form"`: today's form intake under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormSourceConfig {
    pub name: String,
}

impl SourceConfig {
    /// The source's name (its path segment).
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::MetaLeadAds(c) => &c.name,
            SourceConfig::GoogleAdsLeadForm(c) => &c.name,
            SourceConfig::Typeform(c) => &c.name,
            SourceConfig::StandardWebhooks(c) => &c.name,
            SourceConfig::Form(c) => &c.name,
        }
    }

    /// The kind, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::MetaLeadAds(_) => "meta_lead_ads",
            SourceConfig::GoogleAdsLeadForm(_) => "google_ads_lead_form",
            SourceConfig::Typeform(_) => "typeform",
            SourceConfig::StandardWebhooks(_) => "standard_webhooks",
            SourceConfig::Form(_) => "form",
        }
    }

    /// Every secret reference the source needs, with its field name.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut refs: Vec<(&'static str, &SecretRef)> = Vec::new();
        match self {
            SourceConfig::MetaLeadAds(c) => {
                refs.push(("app_secret", &c.app_secret));
                refs.push(("verify_token", &c.verify_token));
                refs.push(("page_token", &c.page_token));
                refs.extend(
                    c.previous_app_secret
                        .iter()
                        .map(|r| ("previous_app_secret", r)),
                );
            }
            SourceConfig::GoogleAdsLeadForm(c) => {
                refs.push(("google_key", &c.google_key));
                refs.extend(
                    c.previous_google_key
                        .iter()
                        .map(|r| ("previous_google_key", r)),
                );
            }
            SourceConfig::Typeform(c) => {
                refs.push(("secret", &c.secret));
                refs.extend(c.previous_secret.iter().map(|r| ("previous_secret", r)));
            }
            SourceConfig::StandardWebhooks(c) => {
                refs.push(("secret", &c.secret));
                refs.extend(c.previous_secret.iter().map(|r| ("previous_secret", r)));
            }
            SourceConfig::Form(_) => {}
        }
        refs
    }
}

/// Names are unique path segments (1-64 letters, digits, `-`, `_`); every secret names a place.
pub fn validate(sources: &[SourceConfig], at: &Located<'_>) -> Result<(), ConfigError> {
    for (i, source) in sources.iter().enumerate() {
        let field = format!("sources[{i}]");
        let name = source.name();
        let valid = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(at.error(
                None,
                &format!("{field}.name"),
                "must be 1 to 64 letters, digits, '-' or '_' (it is the path segment of /leads/{name})",
            ));
        }
        if sources[..i].iter().any(|s| s.name() == name) {
            return Err(at.error(
                None,
                &format!("{field}.name"),
                format!("{name:?} is used by another source"),
            ));
        }
        for (secret, reference) in source.secret_refs() {
            if !reference.is_set() {
                return Err(at.error(
                    None,
                    &format!("{field}.{secret}"),
                    "must name where the secret is, e.g. { env = \"X\", ssm = \"/fluxo/sources/NAME/secret\" }",
                ));
            }
        }
        if let SourceConfig::MetaLeadAds(c) = source
            && crate::crm::config::check_url(&c.graph_url).is_err()
        {
            return Err(at.error(
                None,
                &format!("{field}.graph_url"),
                "must be an http(s) URL",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const SOURCES: &str = r#"
[[sources]]
name = "meta-leads"
kind = "meta_lead_ads"
app_secret = { env = "META_APP_SECRET", ssm = "/fluxo/sources/meta-leads/app-secret" }
previous_app_secret = { ssm = "/fluxo/sources/meta-leads/app-secret-previous" }
verify_token = { env = "META_VERIFY_TOKEN" }
page_token = { env = "META_PAGE_TOKEN" }

[[sources]]
name = "google-leads"
kind = "google_ads_lead_form"
google_key = { env = "GOOGLE_LEAD_KEY" }

[[sources]]
name = "typeform"
kind = "typeform"
secret = { env = "TYPEFORM_SECRET" }
fields = { work_email = "email" }

[[sources]]
name = "backend"
kind = "standard_webhooks"
secret = { env = "BACKEND_WEBHOOK_SECRET" }

[[sources]]
name = "landing"
kind = "form"
"#;

    #[test]
    fn every_kind_loads() {
        let loaded = load_str("sources.toml", SOURCES).unwrap();
        let kinds: Vec<_> = loaded.config.sources.iter().map(|s| s.kind()).collect();
        assert_eq!(
            kinds,
            [
                "meta_lead_ads",
                "google_ads_lead_form",
                "typeform",
                "standard_webhooks",
                "form"
            ]
        );
    }

    #[test]
    fn a_duplicate_name_is_refused() {
        let text = format!("{SOURCES}\n[[sources]]\nname = \"typeform\"\nkind = \"form\"\n");
        let err = load_str("sources.toml", &text).unwrap_err();
        assert!(err.message.contains("used by another source"), "{err}");
        assert_eq!(err.field, "sources[5].name");
    }

    #[test]
    fn an_unknown_kind_or_field_is_refused() {
        let err = load_str("s.toml", "[[sources]]\nname = \"x\"\nkind = \"fax\"\n").unwrap_err();
        assert!(err.message.contains("unknown variant"), "{err}");
        let err = load_str(
            "s.toml",
            "[[sources]]\nname = \"x\"\nkind = \"form\"\nsecret = { env = \"X\" }\n",
        )
        .unwrap_err();
        assert!(err.message.contains("unknown field"), "{err}");
    }

    #[test]
    fn a_secret_that_names_no_place_is_refused() {
        let err = load_str(
            "s.toml",
            "[[sources]]\nname = \"b\"\nkind = \"standard_webhooks\"\nsecret = {}\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "sources[0].secret");
    }
}
