//! The `[audience_sync]` section: named audiences (e.g. `leads_qualificados`), each mapped to Meta custom
//! audiences and Google Customer Match lists; which consent counts; platform access.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, Located};
use crate::audience::google::config::{GoogleAudienceConfig, GoogleTarget};
use crate::audience::meta::config::{MetaAudienceConfig, MetaTarget};
use crate::audience::{Destination, Mode, PlatformAudience};

/// `[audience_sync]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceSyncConfig {
    /// Which consent lets a person be added: `marketing` (the lead's marketing consent, the default) or
    /// `custom.<field>` (a form field whose value is yes/true/sim/1/granted).
    #[serde(default = "default_consent")]
    pub consent: String,
    /// How long a claim keeps another delivery of the same person x audience away, seconds. Default 300.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Platform calls and ledger requests in flight at once. Default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Meta access. Defaults apply when absent (enough for dry runs).
    #[serde(default)]
    pub meta: MetaAudienceConfig,
    /// Google Ads access. Defaults apply when absent (enough for dry runs).
    #[serde(default)]
    pub google: GoogleAudienceConfig,
    /// Named audiences, as the router's rules name them.
    #[serde(default)]
    pub audiences: BTreeMap<String, AudienceDestinations>,
}

impl Default for AudienceSyncConfig {
    fn default() -> Self {
        AudienceSyncConfig {
            consent: default_consent(),
            lease_secs: default_lease(),
            concurrency: default_concurrency(),
            meta: MetaAudienceConfig::default(),
            google: GoogleAudienceConfig::default(),
            audiences: BTreeMap::new(),
        }
    }
}

/// `[audience_sync.audiences.<name>]`: the platform audiences a named audience maps to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceDestinations {
    #[serde(default)]
    pub meta: Vec<MetaTarget>,
    #[serde(default)]
    pub google: Vec<GoogleTarget>,
}

/// Which consent counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentRule {
    /// The lead's marketing consent.
    Marketing,
    /// A custom form field (`custom.<name>`), granted when yes/true/sim/1/granted.
    Field(String),
}

fn default_consent() -> String {
    "marketing".to_string()
}
fn default_lease() -> u64 {
    300
}
fn default_concurrency() -> usize {
    8
}

impl AudienceSyncConfig {
    /// The consent rule, or why the setting is wrong.
    pub fn consent_rule(&self) -> Result<ConsentRule, String> {
        match self.consent.as_str() {
            "marketing" => Ok(ConsentRule::Marketing),
            other => match other.strip_prefix("custom.") {
                Some(name) if !name.is_empty() => Ok(ConsentRule::Field(other.to_string())),
                _ => Err("must be \"marketing\" or \"custom.<field>\"".to_string()),
            },
        }
    }

    /// The destinations of a named audience (empty when it is not configured).
    pub fn destinations(&self, audience: &str) -> Vec<Destination> {
        let Some(d) = self.audiences.get(audience) else {
            return Vec::new();
        };
        let meta = d.meta.iter().map(|m| Destination {
            audience: PlatformAudience::Meta {
                audience_id: m.audience_id.clone(),
            },
            mode: m.mode,
        });
        let google = d.google.iter().map(|g| Destination {
            audience: PlatformAudience::Google {
                customer_id: g.customer_id.clone(),
                user_list_id: g.user_list_id.clone(),
                login_customer_id: g.login_customer_id.clone(),
            },
            mode: g.mode,
        });
        meta.chain(google).collect()
    }

    /// Whether any destination of `platform` applies changes (its credentials are then required).
    pub fn applies(&self, platform: &str) -> bool {
        self.audiences.values().any(|d| match platform {
            "meta" => d.meta.iter().any(|m| m.mode == Mode::Apply),
            _ => d.google.iter().any(|g| g.mode == Mode::Apply),
        })
    }

    /// Checks the whole section.
    pub fn validate(&self, at: &Located<'_>) -> Result<(), ConfigError> {
        let p = "audience_sync";
        self.consent_rule()
            .map_err(|m| at.error(None, &format!("{p}.consent"), m))?;
        if !(1..=64).contains(&self.concurrency) {
            return Err(at.error(
                None,
                &format!("{p}.concurrency"),
                "must be between 1 and 64",
            ));
        }
        if !(10..=3600).contains(&self.lease_secs) {
            return Err(at.error(
                None,
                &format!("{p}.lease_secs"),
                "must be between 10 and 3600",
            ));
        }
        for (name, d) in &self.audiences {
            if d.meta.is_empty() && d.google.is_empty() {
                return Err(at.error(
                    None,
                    &format!("{p}.audiences.{name}"),
                    "maps to no platform audience: add meta = [...] or google = [...]",
                ));
            }
            for (i, m) in d.meta.iter().enumerate() {
                m.validate(at, &format!("{p}.audiences.{name}.meta[{i}]"))?;
            }
            for (i, g) in d.google.iter().enumerate() {
                g.validate(at, &format!("{p}.audiences.{name}.google[{i}]"))?;
            }
        }
        self.meta.validate(at, self.applies("meta"))?;
        self.google.validate(at, self.applies("google"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    #[test]
    fn a_named_audience_maps_to_meta_and_google_destinations() {
        let text = r#"
[audience_sync.audiences.leads_qualificados]
meta = [{ audience_id = "23850000000000001" }]
google = [{ customer_id = "1234567890", user_list_id = "555", login_customer_id = "9998887776", mode = "dry_run" }]
"#;
        let c = load_str("a.toml", text).unwrap().config.audience_sync;
        let d = c.destinations("leads_qualificados");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].audience.key(), "meta:23850000000000001");
        assert_eq!(d[1].audience.key(), "google:1234567890:555");
        assert!(c.destinations("other").is_empty());
    }

    #[test]
    fn applying_without_a_token_is_refused_by_name() {
        let text = r#"
[audience_sync.audiences.a]
meta = [{ audience_id = "1", mode = "apply" }]
"#;
        let err = load_str("a.toml", text).unwrap_err();
        assert_eq!(err.field, "audience_sync.meta.access_token");
    }

    #[test]
    fn bad_ids_and_consent_rules_are_named() {
        let err = load_str(
            "a.toml",
            "[audience_sync.audiences.a]\ngoogle = [{ customer_id = \"123-456\", user_list_id = \"1\" }]\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "audience_sync.audiences.a.google[0].customer_id");
        let err = load_str("a.toml", "[audience_sync]\nconsent = \"ads\"\n").unwrap_err();
        assert_eq!(err.field, "audience_sync.consent");
        let ok = load_str("a.toml", "[audience_sync]\nconsent = \"custom.ads_ok\"\n").unwrap();
        assert_eq!(
            ok.config.audience_sync.consent_rule(),
            Ok(super::ConsentRule::Field("custom.ads_ok".into()))
        );
    }
}
