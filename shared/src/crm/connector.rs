//! The CRM port and the configured connector behind it: REST, HubSpot, dry-run of either, or none.

use std::future::Future;

use futures_util::StreamExt;

use super::config::{ConnectorKind, CrmConfig, Mapping};
use super::hubspot::client::HubSpotClient;
use super::rest::client::RestClient;
use super::{CrmContact, CrmErasure, CrmReceipt, RecordedRequest, hubspot, rest};
use crate::connector::{ConnectorError, Deadline, RetryPolicy, Secret, http_client};
use crate::domain::Email;
use crate::error::{ErrorClass, Retryable};
use crate::secrets::SecretRef;

/// Upserts leads into a CRM. One result per contact, in order.
pub trait CrmConnector: Send + Sync {
    /// Label recorded on profiles and in logs: `rest`, `hubspot`, `dry_run:rest`, `none`.
    fn name(&self) -> &str;
    /// Whether there is a CRM step at all.
    fn enabled(&self) -> bool;
    /// How a lead's fields become the CRM's properties.
    fn mapping(&self) -> &Mapping;
    /// Upserts the contacts, as concurrently or as batched as the connector allows. No call starts and no
    /// retry waits past `deadline`; what is left then fails as retryable.
    fn upsert(
        &self,
        contacts: &[CrmContact],
        deadline: Deadline,
    ) -> impl Future<Output = Vec<Result<CrmReceipt, ConnectorError>>> + Send;
    /// Erases one person (GDPR / LGPD): HubSpot's GDPR delete, the REST CRM's configured erase call,
    /// the recorded request in dry-run. A person already gone is not an error. A connector without an
    /// erase call answers [`CrmErasure::NotConfigured`] and sends nothing.
    fn erase(
        &self,
        email: &Email,
        deadline: Deadline,
    ) -> impl Future<Output = Result<CrmErasure, ConnectorError>> + Send {
        let _ = (email, deadline);
        std::future::ready(Ok(CrmErasure::NotConfigured))
    }
}

/// The connector could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum CrmSetupError {
    #[error("lead_router.crm: {0}")]
    Config(String),
    #[error("lead_router.crm: the HTTP client could not be built: {0}")]
    Http(String),
}

impl Retryable for CrmSetupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

#[derive(Debug, Clone)]
enum Target {
    None,
    DryRunRest {
        url: String,
        erase: Option<rest::config::RestErase>,
    },
    DryRunHubSpot {
        base_url: String,
        batch_size: usize,
    },
    Rest(RestClient),
    HubSpot(HubSpotClient),
}

/// The configured CRM connector.
#[derive(Debug, Clone)]
pub struct Crm {
    name: String,
    mapping: Mapping,
    target: Target,
    concurrency: usize,
}

impl Crm {
    /// The secret the connector needs resolved at cold start, if any (none in dry-run).
    pub fn token_ref(config: &CrmConfig) -> Option<&SecretRef> {
        if config.dry_run {
            return None;
        }
        match config.connector {
            ConnectorKind::None => None,
            ConnectorKind::Rest => config.rest.as_ref().and_then(|r| r.token.as_ref()),
            ConnectorKind::Hubspot => config.hubspot.as_ref().and_then(|h| h.token.as_ref()),
        }
    }

    /// Builds the connector. `token` is the resolved [`Crm::token_ref`]; `concurrency` bounds the
    /// REST calls in flight.
    pub fn from_config(
        config: &CrmConfig,
        token: Option<Secret>,
        concurrency: usize,
    ) -> Result<Self, CrmSetupError> {
        let policy = RetryPolicy {
            max_attempts: config.max_attempts,
            base_delay: std::time::Duration::from_millis(config.base_delay_ms),
            max_delay: std::time::Duration::from_millis(config.max_delay_ms),
        };
        let http = || {
            http_client(config.connect_timeout(), config.timeout())
                .map_err(|e| CrmSetupError::Http(e.to_string()))
        };
        let missing = |what: &str| {
            CrmSetupError::Config(format!(
                "connector = \"{what}\" needs its [lead_router.crm.{what}] table"
            ))
        };
        let no_token =
            || CrmSetupError::Config("the CRM token is required when dry_run = false".to_string());
        let (name, mapping, target) = match config.connector {
            ConnectorKind::None => ("none".to_string(), Mapping::default(), Target::None),
            ConnectorKind::Rest => {
                let rest = config.rest.as_ref().ok_or_else(|| missing("rest"))?;
                let mapping = Mapping::compile(&rest.body)
                    .map_err(|(p, m)| CrmSetupError::Config(format!("rest.body.{p}: {m}")))?;
                let url = rest.url.get_ref().clone();
                if config.dry_run {
                    let erase = rest.erase.clone();
                    (
                        "dry_run:rest".to_string(),
                        mapping,
                        Target::DryRunRest { url, erase },
                    )
                } else {
                    let token = token
                        .clone()
                        .filter(|t| !t.is_empty())
                        .ok_or_else(no_token)?;
                    let client =
                        RestClient::new(http()?, url, token, rest.success_status.clone(), policy)
                            .with_erase(rest.erase.clone());
                    ("rest".to_string(), mapping, Target::Rest(client))
                }
            }
            ConnectorKind::Hubspot => {
                let hs = config.hubspot.as_ref().ok_or_else(|| missing("hubspot"))?;
                let mapping = Mapping::compile(&hs.properties).map_err(|(p, m)| {
                    CrmSetupError::Config(format!("hubspot.properties.{p}: {m}"))
                })?;
                if config.dry_run {
                    let target = Target::DryRunHubSpot {
                        base_url: hs.base_url.clone(),
                        batch_size: hs.batch_size,
                    };
                    ("dry_run:hubspot".to_string(), mapping, target)
                } else {
                    let token = token
                        .clone()
                        .filter(|t| !t.is_empty())
                        .ok_or_else(no_token)?;
                    let client = HubSpotClient::new(
                        http()?,
                        hs.base_url.clone(),
                        token,
                        hs.batch_size,
                        policy,
                    );
                    ("hubspot".to_string(), mapping, Target::HubSpot(client))
                }
            }
        };
        Ok(Crm {
            name,
            mapping,
            target,
            concurrency: concurrency.max(1),
        })
    }
}

impl CrmConnector for Crm {
    fn name(&self) -> &str {
        &self.name
    }

    fn enabled(&self) -> bool {
        !matches!(self.target, Target::None)
    }

    fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    async fn upsert(
        &self,
        contacts: &[CrmContact],
        deadline: Deadline,
    ) -> Vec<Result<CrmReceipt, ConnectorError>> {
        match &self.target {
            Target::None => contacts.iter().map(|_| Ok(CrmReceipt::default())).collect(),
            Target::DryRunRest { url, .. } => contacts
                .iter()
                .map(|c| {
                    let recorded = RecordedRequest::bearer(&rest::request::build(url, c));
                    Ok(CrmReceipt {
                        contact_id: None,
                        dry_run: Some(recorded),
                    })
                })
                .collect(),
            Target::DryRunHubSpot {
                base_url,
                batch_size,
            } => {
                let inputs = hubspot::request::merge_inputs(contacts);
                let mut out = vec![Ok(CrmReceipt::default()); contacts.len()];
                for chunk in inputs.chunks((*batch_size).max(1)) {
                    let refs: Vec<_> = chunk.iter().collect();
                    let recorded =
                        RecordedRequest::bearer(&hubspot::request::build(base_url, &refs));
                    for m in chunk.iter().flat_map(|i| &i.members) {
                        if let Some(slot) = out.get_mut(*m) {
                            *slot = Ok(CrmReceipt {
                                contact_id: None,
                                dry_run: Some(recorded.clone()),
                            });
                        }
                    }
                }
                out
            }
            // One call per lead: run them concurrently so a batch costs about one call's latency.
            Target::Rest(client) => {
                let mut calls = Vec::with_capacity(contacts.len());
                for contact in contacts {
                    calls.push(client.upsert(contact, deadline));
                }
                futures_util::stream::iter(calls)
                    .buffered(self.concurrency)
                    .collect()
                    .await
            }
            Target::HubSpot(client) => client.upsert(contacts, deadline).await,
        }
    }

    async fn erase(&self, email: &Email, deadline: Deadline) -> Result<CrmErasure, ConnectorError> {
        match &self.target {
            Target::None => Ok(CrmErasure::NoCrm),
            Target::DryRunRest { erase: None, .. } => Ok(CrmErasure::NotConfigured),
            Target::DryRunRest {
                erase: Some(erase), ..
            } => {
                let prepared = rest::request::erase(erase, email);
                let mut recorded = RecordedRequest::bearer(&prepared);
                if prepared.body.is_null() {
                    recorded.headers.retain(|(k, _)| k != "content-type");
                }
                Ok(CrmErasure::DryRun(recorded))
            }
            Target::DryRunHubSpot { base_url, .. } => Ok(CrmErasure::DryRun(
                RecordedRequest::bearer(&hubspot::request::gdpr_delete(base_url, email)),
            )),
            Target::Rest(client) => Ok(match client.erase(email, deadline).await? {
                None => CrmErasure::NotConfigured,
                Some(true) => CrmErasure::Deleted,
                Some(false) => CrmErasure::AlreadyGone,
            }),
            Target::HubSpot(client) => Ok(match client.erase(email, deadline).await? {
                hubspot::request::Erased::Deleted => CrmErasure::Deleted,
                hubspot::request::Erased::AlreadyGone => CrmErasure::AlreadyGone,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::crm::CrmErasure;
    use crate::domain::{Email, LeadId};
    use chrono::DateTime;

    fn contact() -> CrmContact {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        CrmContact {
            lead_id: LeadId::new(at, 1),
            email: Email::parse("ana.silva@exemplo.com").unwrap(),
            properties: vec![("email".into(), "ana.silva@exemplo.com".into())],
        }
    }

    #[tokio::test]
    async fn dry_run_records_the_exact_request_with_the_token_redacted() {
        let cfg = load_str(
            "t.toml",
            "[lead_router.crm]\nconnector = \"rest\"\n[lead_router.crm.rest]\nurl = \"https://api.crmdigital.com/v1/leads\"\n",
        )
        .unwrap()
        .config;
        let crm = Crm::from_config(&cfg.lead_router.crm, None, 4).unwrap();
        assert_eq!(crm.name(), "dry_run:rest");
        let out = crm.upsert(&[contact()], Deadline::none()).await;
        let recorded = out[0].as_ref().unwrap().dry_run.clone().unwrap();
        assert_eq!(recorded.method, "POST");
        assert_eq!(recorded.url, "https://api.crmdigital.com/v1/leads");
        assert!(
            recorded
                .headers
                .contains(&("authorization".into(), "Bearer [redacted]".into()))
        );
        assert_eq!(recorded.body["email"], "ana.silva@exemplo.com");
    }

    #[tokio::test]
    async fn a_dry_run_erasure_records_hubspots_exact_gdpr_delete() {
        let cfg = load_str(
            "t.toml",
            "[lead_router.crm]\nconnector = \"hubspot\"\n[lead_router.crm.hubspot]\n",
        )
        .unwrap()
        .config;
        let crm = Crm::from_config(&cfg.lead_router.crm, None, 4).unwrap();
        let email = Email::parse("ana.silva@exemplo.com").unwrap();
        let CrmErasure::DryRun(recorded) = crm.erase(&email, Deadline::none()).await.unwrap()
        else {
            panic!("dry-run records the request")
        };
        assert_eq!(recorded.method, "POST");
        assert_eq!(
            recorded.url,
            "https://api.hubapi.com/crm/v3/objects/contacts/gdpr-delete"
        );
        assert_eq!(
            recorded.body,
            serde_json::json!({"objectId": "ana.silva@exemplo.com", "idProperty": "email"})
        );
        assert!(
            recorded
                .headers
                .contains(&("authorization".into(), "Bearer [redacted]".into()))
        );
    }

    #[tokio::test]
    async fn a_rest_crm_erases_only_with_a_configured_erase_call() {
        let without = load_str(
            "t.toml",
            "[lead_router.crm]\nconnector = \"rest\"\n[lead_router.crm.rest]\nurl = \"https://x.example/leads\"\n",
        )
        .unwrap()
        .config;
        let email = Email::parse("ana.silva@exemplo.com").unwrap();
        let crm = Crm::from_config(&without.lead_router.crm, None, 4).unwrap();
        let erased = crm.erase(&email, Deadline::none()).await.unwrap();
        assert_eq!(erased, CrmErasure::NotConfigured);
        assert_eq!(erased.describe(crm.name()), "not configured for erasure");
        let with = load_str(
            "t.toml",
            "[lead_router.crm]\nconnector = \"rest\"\n[lead_router.crm.rest]\nurl = \"https://x.example/leads\"\nerase = { url = \"https://x.example/leads/{email_sha256}\" }\n",
        )
        .unwrap()
        .config;
        let crm = Crm::from_config(&with.lead_router.crm, None, 4).unwrap();
        let CrmErasure::DryRun(recorded) = crm.erase(&email, Deadline::none()).await.unwrap()
        else {
            panic!("dry-run records the request")
        };
        assert_eq!(recorded.method, "DELETE");
        assert_eq!(
            recorded.url,
            format!("https://x.example/leads/{}", email.sha256_hex())
        );
        assert_eq!(
            recorded.headers,
            vec![("authorization".to_string(), "Bearer [redacted]".to_string())]
        );
    }

    #[test]
    fn an_erase_url_with_an_unknown_placeholder_is_refused() {
        let bad = load_str(
            "t.toml",
            "[lead_router.crm]\nconnector = \"rest\"\n[lead_router.crm.rest]\nurl = \"https://x.example/leads\"\nerase = { url = \"https://x.example/leads/{id}\" }\n",
        );
        let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("erase.url"), "{message}");
    }

    #[test]
    fn a_live_connector_without_a_token_is_refused() {
        let cfg = load_str(
            "t.toml",
            "[lead_router.crm]\nconnector = \"rest\"\ndry_run = false\n[lead_router.crm.rest]\nurl = \"https://x.example/leads\"\ntoken = { env = \"CRM_TOKEN\" }\n",
        )
        .unwrap()
        .config;
        assert!(Crm::from_config(&cfg.lead_router.crm, None, 4).is_err());
        assert_eq!(
            Crm::token_ref(&cfg.lead_router.crm)
                .and_then(|r| r.env.clone())
                .as_deref(),
            Some("CRM_TOKEN")
        );
    }
}
