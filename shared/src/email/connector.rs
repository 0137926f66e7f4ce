//! The configured email platforms: builds each vendor's calls for a job, then records them (dry-run) or
//! sends them through the connector contract.

use std::collections::BTreeMap;

use super::brevo::client as brevo_client;
use super::mailchimp::client as mailchimp_client;
use super::mailchimp::request::Target as MailchimpTarget;
use super::rdstation::client as rd_client;
use super::rdstation::config::RdAuth;
use super::send::Sender;
use super::webhook::client as webhook_client;
use super::{Call, EmailReceipt, Job, Operation, Platform, brevo, mailchimp, rdstation, webhook};
use crate::config::email::{EmailTriggerConfig, SequenceConfig};
use crate::connector::{ConnectorError, Deadline, Secret, http_client};
use crate::crm::RecordedRequest;
use crate::error::{ErrorClass, Retryable};
use crate::secrets::SecretRef;

/// A platform could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("email_trigger.{platform}: {message}")]
    Config {
        platform: &'static str,
        message: String,
    },
    #[error("email_trigger: the HTTP client could not be built: {0}")]
    Http(String),
}

impl Retryable for EmailSetupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Every configured platform, ready to record or send.
#[derive(Debug, Clone)]
pub struct EmailPlatforms {
    config: EmailTriggerConfig,
    sender: Option<reqwest::Client>,
    secrets: BTreeMap<Platform, Secret>,
    mailchimp: Option<MailchimpTarget>,
    webhook_key: Option<Vec<u8>>,
}

impl EmailPlatforms {
    /// The secrets to resolve at cold start: one per configured platform, none in dry-run.
    pub fn secret_refs(config: &EmailTriggerConfig) -> Vec<(Platform, &SecretRef)> {
        if config.dry_run {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(r) = config.mailchimp.as_ref().and_then(|c| c.api_key.as_ref()) {
            out.push((Platform::Mailchimp, r));
        }
        if let Some(r) = config.brevo.as_ref().and_then(|c| c.api_key.as_ref()) {
            out.push((Platform::Brevo, r));
        }
        if let Some(r) = config.rdstation.as_ref().and_then(|c| c.token.as_ref()) {
            out.push((Platform::Rdstation, r));
        }
        if let Some(r) = config.webhook.as_ref().and_then(|c| c.secret.as_ref()) {
            out.push((Platform::Webhook, r));
        }
        out
    }

    /// Builds the platforms. `secrets` are the resolved [`EmailPlatforms::secret_refs`].
    pub fn from_config(
        config: &EmailTriggerConfig,
        secrets: BTreeMap<Platform, Secret>,
    ) -> Result<Self, EmailSetupError> {
        let live = !config.dry_run;
        for platform in config.platforms() {
            if live && secrets.get(&platform).is_none_or(Secret::is_empty) {
                return Err(EmailSetupError::Config {
                    platform: platform.as_str(),
                    message: "its secret is required when dry_run = false".into(),
                });
            }
        }
        let mailchimp = match &config.mailchimp {
            Some(m) => {
                let key = secrets.get(&Platform::Mailchimp).map(Secret::expose);
                let base = m.resolved_base_url(key).ok_or(EmailSetupError::Config {
                    platform: "mailchimp",
                    message: "set data_center (e.g. us21) or an API key ending in -<dc>".into(),
                })?;
                let mut lists: Vec<String> = config
                    .sequences
                    .values()
                    .filter_map(|s| s.mailchimp.as_ref().map(|m| m.list_id.clone()))
                    .chain(m.list_id.clone())
                    .collect();
                lists.sort();
                lists.dedup();
                Some(MailchimpTarget {
                    base,
                    status_if_new: m.status_if_new,
                    lists,
                    events_list: m.list_id.clone(),
                })
            }
            None => None,
        };
        let webhook_key = match secrets.get(&Platform::Webhook) {
            Some(s) if live => Some(webhook::request::secret_key(s.expose()).map_err(|m| {
                EmailSetupError::Config {
                    platform: "webhook",
                    message: m,
                }
            })?),
            _ => None,
        };
        let sender = if live {
            Some(
                http_client(
                    std::time::Duration::from_millis(config.connect_timeout_ms),
                    std::time::Duration::from_millis(config.timeout_ms),
                )
                .map_err(|e| EmailSetupError::Http(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(EmailPlatforms {
            config: config.clone(),
            sender,
            secrets,
            mailchimp,
            webhook_key,
        })
    }

    /// `dry_run` or `live`, for logs and records.
    pub fn mode(&self) -> &'static str {
        if self.sender.is_some() {
            "live"
        } else {
            "dry_run"
        }
    }

    /// The config the platforms were built from.
    pub fn config(&self) -> &EmailTriggerConfig {
        &self.config
    }

    /// A sequence's mapping, if the config has one.
    pub fn sequence(&self, name: &str) -> Option<&SequenceConfig> {
        self.config.sequences.get(name)
    }

    /// The calls a job makes on a platform, in order. An error is permanent (a mapping missing).
    pub fn calls(&self, platform: Platform, job: &Job) -> Result<Vec<Call>, String> {
        let sequence = match &job.operation {
            Operation::Enroll { sequence, .. } => Some(
                self.sequence(sequence)
                    .ok_or_else(|| format!("sequence {sequence} is not mapped"))?,
            ),
            _ => None,
        };
        let missing = || format!("[email_trigger.{}] is not configured", platform.as_str());
        match platform {
            Platform::Mailchimp => {
                let target = self.mailchimp.as_ref().ok_or_else(missing)?;
                let marketing = sequence.is_none_or(|s| s.marketing);
                mailchimp::request::plan(
                    target,
                    job,
                    sequence.and_then(|s| s.mailchimp.as_ref()),
                    marketing,
                )
            }
            Platform::Brevo => {
                let c = self.config.brevo.as_ref().ok_or_else(missing)?;
                brevo::request::plan(
                    c.base_url.trim_end_matches('/'),
                    job,
                    sequence.and_then(|s| s.brevo.as_ref()),
                )
            }
            Platform::Rdstation => {
                let c = self.config.rdstation.as_ref().ok_or_else(missing)?;
                rdstation::request::plan(c, job, sequence.and_then(|s| s.rdstation.as_ref()))
            }
            Platform::Webhook => {
                let c = self.config.webhook.as_ref().ok_or_else(missing)?;
                Ok(webhook::request::plan(
                    &c.url,
                    job,
                    sequence.and_then(|s| s.webhook.as_ref()),
                    chrono::Utc::now(),
                ))
            }
        }
    }

    /// Performs a job on one platform: records the exact requests in dry-run, else sends them in order.
    /// Nothing starts, and no retry waits, past `deadline`.
    pub async fn perform(
        &self,
        platform: Platform,
        job: &Job,
        deadline: Deadline,
    ) -> Result<EmailReceipt, ConnectorError> {
        let vendor = platform.as_str();
        let calls = self
            .calls(platform, job)
            .map_err(|reason| ConnectorError::Permanent { vendor, reason })?;
        if calls.is_empty() {
            return Ok(Self::nothing_to_send(platform, job));
        }
        let mut receipt = EmailReceipt::default();
        let mut notes = Vec::new();
        for call in &calls {
            let one = self.send(platform, call, deadline).await?;
            receipt.dry_run.extend(one.dry_run);
            notes.extend(one.note);
        }
        receipt.note = (!notes.is_empty()).then(|| notes.join("; "));
        Ok(receipt)
    }

    /// The receipt of a job the platform has no API call for.
    pub fn nothing_to_send(platform: Platform, job: &Job) -> EmailReceipt {
        EmailReceipt {
            dry_run: Vec::new(),
            note: Some(format!(
                "{} offers no API call for {}: nothing sent",
                platform.as_str(),
                job.operation.name()
            )),
        }
    }

    /// Records (dry-run) or sends one call, with its retries.
    pub async fn send(
        &self,
        platform: Platform,
        call: &Call,
        deadline: Deadline,
    ) -> Result<EmailReceipt, ConnectorError> {
        let vendor = platform.as_str();
        let Some(http) = &self.sender else {
            return Ok(EmailReceipt {
                dry_run: vec![self.record(platform, call)],
                note: None,
            });
        };
        let secret = self
            .secrets
            .get(&platform)
            .cloned()
            .ok_or(ConnectorError::Permanent {
                vendor,
                reason: "no secret".into(),
            })?;
        let sender = Sender {
            vendor,
            http: http.clone(),
            policy: self.config.retry_policy(),
        };
        let calls = std::slice::from_ref(call);
        let notes = match platform {
            Platform::Mailchimp => {
                sender
                    .run(
                        calls,
                        deadline,
                        |b, _| mailchimp_client::authorize(b, &secret),
                        mailchimp_client::classify,
                    )
                    .await?
            }
            Platform::Brevo => {
                sender
                    .run(
                        calls,
                        deadline,
                        |b, _| brevo_client::authorize(b, &secret),
                        brevo_client::classify,
                    )
                    .await?
            }
            Platform::Rdstation => {
                let auth = self
                    .config
                    .rdstation
                    .as_ref()
                    .map(|c| c.auth)
                    .unwrap_or_default();
                let keyed = [rd_client::with_key(call.clone(), auth, &secret)];
                sender
                    .run(
                        &keyed,
                        deadline,
                        |b, _| rd_client::authorize(b, auth, &secret),
                        rd_client::classify,
                    )
                    .await?
            }
            Platform::Webhook => {
                let key = self.webhook_key.clone().unwrap_or_default();
                sender
                    .run(
                        calls,
                        deadline,
                        |b, call| webhook_client::authorize(b, call, &key, chrono::Utc::now()),
                        webhook_client::classify,
                    )
                    .await?
            }
        };
        Ok(EmailReceipt {
            dry_run: Vec::new(),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        })
    }

    /// A call as dry-run records it: the credentials as the vendor sends them, redacted.
    fn record(&self, platform: Platform, call: &Call) -> RecordedRequest {
        match platform {
            Platform::Mailchimp => call.recorded(&[("authorization", "Basic [redacted]")]),
            Platform::Brevo => call.recorded(&[("api-key", "[redacted]")]),
            Platform::Rdstation => {
                let auth = self
                    .config
                    .rdstation
                    .as_ref()
                    .map(|c| c.auth)
                    .unwrap_or_default();
                match auth {
                    RdAuth::ApiKey => {
                        let mut r = call.recorded(&[]);
                        r.url = format!("{}?api_key=[redacted]", r.url);
                        r
                    }
                    RdAuth::Bearer => call.recorded(&[("authorization", "Bearer [redacted]")]),
                }
            }
            Platform::Webhook => call.recorded(&[
                (webhook::request::TIMESTAMP_HEADER, "<send time>"),
                (
                    webhook::request::SIGNATURE_HEADER,
                    "v1,<HMAC-SHA256 at send time>",
                ),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::domain::Email;
    use crate::email::Contact;
    use crate::routing::fanout::ConsentSnapshot;

    const CONFIG: &str = r#"
[email_trigger.mailchimp]
data_center = "us21"
[email_trigger.sequences.nutricao_interesse_software_a]
mailchimp = { list_id = "a1b2c3", tags = ["software_a"], journey = { journey_id = 11, step_id = 22 } }
"#;

    #[tokio::test]
    async fn dry_run_records_the_exact_requests_with_the_key_redacted() {
        let cfg = load_str("t.toml", CONFIG).unwrap().config;
        let platforms = EmailPlatforms::from_config(&cfg.email_trigger, BTreeMap::new()).unwrap();
        assert_eq!(platforms.mode(), "dry_run");
        let job = Job {
            key: "k".into(),
            contact: Contact {
                email: Email::parse("joao@exemplo.com").unwrap(),
                first_name: Some("João".into()),
                last_name: None,
            },
            operation: Operation::Enroll {
                sequence: "nutricao_interesse_software_a".into(),
                consent: ConsentSnapshot {
                    status: "granted".into(),
                    at: None,
                    text: None,
                },
            },
        };
        let receipt = platforms
            .perform(Platform::Mailchimp, &job, Deadline::none())
            .await
            .unwrap();
        let methods: Vec<_> = receipt.dry_run.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["PUT", "POST", "POST"]);
        assert!(
            receipt.dry_run[0]
                .url
                .starts_with("https://us21.api.mailchimp.com/3.0/lists/a1b2c3/members/")
        );
        assert!(
            receipt.dry_run[2]
                .url
                .ends_with("/journeys/11/steps/22/actions/trigger")
        );
        assert!(
            receipt.dry_run[0]
                .headers
                .contains(&("authorization".into(), "Basic [redacted]".into()))
        );
    }

    #[tokio::test]
    async fn an_unmapped_sequence_is_a_permanent_failure_with_its_reason() {
        let cfg = load_str("t.toml", CONFIG).unwrap().config;
        let platforms = EmailPlatforms::from_config(&cfg.email_trigger, BTreeMap::new()).unwrap();
        let job = Job {
            key: "k".into(),
            contact: Contact {
                email: Email::parse("joao@exemplo.com").unwrap(),
                first_name: None,
                last_name: None,
            },
            operation: Operation::Enroll {
                sequence: "other".into(),
                consent: ConsentSnapshot {
                    status: "granted".into(),
                    at: None,
                    text: None,
                },
            },
        };
        let err = platforms
            .perform(Platform::Mailchimp, &job, Deadline::none())
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.reason().contains("not mapped"), "{err}");
    }
}
