//! The configured audience connector: Meta and Google clients built from `[audience_sync]`, each
//! destination applied or dry-run; and the call helper both use (a wait longer than the policy allows
//! becomes [`ConnectorError::Paused`], so the work goes back to SQS instead of sleeping).

use std::sync::Mutex;
use std::time::Duration;

use super::google::client::{self as google_client, GoogleAudienceClient};
use super::meta::client::{self as meta_client, MetaAudienceClient};
use super::{
    AudienceConnector, Destination, JobStatus, Mode, Op, Person, PlatformAudience, Upload, google,
    meta,
};
use crate::ads::google::GoogleAuth;
use crate::config::audience::AudienceSyncConfig;
use crate::connector::{
    self, ConnectorError, Deadline, Outcome, Reply, RetryPolicy, Secret, http_client,
};
use crate::error::{ErrorClass, Retryable};
use crate::secrets::SecretRef;

/// The connector could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum AudienceSetupError {
    #[error("audience_sync: {0}")]
    Config(String),
    #[error("audience_sync: the HTTP client could not be built: {0}")]
    Http(String),
}

impl Retryable for AudienceSetupError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// The resolved secrets the connector needs (only for platforms with a destination in `apply`).
#[derive(Debug, Clone, Default)]
pub struct AudienceSecrets {
    pub meta_token: Option<Secret>,
    pub google_token: Option<Secret>,
    pub google_client_secret: Option<Secret>,
    pub google_refresh_token: Option<Secret>,
}

/// Sends with retries until `deadline`, classifies, parses a success. A retryable answer whose wait is
/// longer than `policy.max_delay` stops at once as [`ConnectorError::Paused`].
pub(crate) async fn call<T, B, P>(
    vendor: &'static str,
    policy: &RetryPolicy,
    deadline: Deadline,
    build: B,
    classify: fn(&Reply) -> Outcome<()>,
    parse: P,
) -> Result<T, ConnectorError>
where
    B: Fn() -> reqwest::RequestBuilder,
    P: Fn(&Reply) -> Result<T, String>,
{
    let paused: Mutex<Option<(String, Duration)>> = Mutex::new(None);
    let max_delay = policy.max_delay;
    let result = connector::send_with_retry_until(vendor, policy, deadline, |_| {
        let request = build();
        let (parse, paused) = (&parse, &paused);
        async move {
            let reply = match connector::send(request).await {
                Err(reason) => {
                    return Outcome::Retryable {
                        reason,
                        retry_after: None,
                    };
                }
                Ok(reply) => reply,
            };
            match classify(&reply) {
                Outcome::Success(()) => match parse(&reply) {
                    Ok(v) => Outcome::Success(v),
                    Err(reason) => Outcome::Permanent {
                        reason: format!("unexpected response: {reason}"),
                    },
                },
                Outcome::Retryable {
                    reason,
                    retry_after: Some(wait),
                } if wait > max_delay => {
                    if let Ok(mut p) = paused.lock() {
                        *p = Some((reason.clone(), wait));
                    }
                    Outcome::Permanent { reason }
                }
                Outcome::Retryable {
                    reason,
                    retry_after,
                } => Outcome::Retryable {
                    reason,
                    retry_after,
                },
                Outcome::Permanent { reason } => Outcome::Permanent { reason },
            }
        }
    })
    .await;
    if let Some((reason, wait)) = paused.lock().ok().and_then(|mut p| p.take()) {
        return Err(ConnectorError::Paused {
            vendor,
            reason,
            wait,
        });
    }
    result
}

/// Meta and Google, as configured.
#[derive(Debug)]
pub struct Audiences {
    meta_config: meta::config::MetaAudienceConfig,
    google_config: google::config::GoogleAudienceConfig,
    meta: Option<MetaAudienceClient>,
    google: Option<GoogleAudienceClient>,
}

impl Audiences {
    /// The secret references to resolve at cold start: `(name, reference)`; only for platforms that
    /// apply changes.
    pub fn secret_refs(config: &AudienceSyncConfig) -> Vec<(&'static str, &SecretRef)> {
        let mut out = Vec::new();
        if config.applies("meta")
            && let Some(r) = &config.meta.access_token
        {
            out.push(("meta_token", r));
        }
        if config.applies("google") {
            let g = &config.google;
            if g.uses_refresh_token() {
                if let Some(r) = &g.oauth_client_secret {
                    out.push(("google_client_secret", r));
                }
                if let Some(r) = &g.oauth_refresh_token {
                    out.push(("google_refresh_token", r));
                }
            } else if let Some(r) = &g.access_token {
                out.push(("google_token", r));
            }
        }
        out
    }

    /// Builds the clients a config needs.
    pub fn from_config(
        config: &AudienceSyncConfig,
        secrets: AudienceSecrets,
    ) -> Result<Self, AudienceSetupError> {
        let http = |timeout_secs: u64| {
            http_client(Duration::from_secs(5), Duration::from_secs(timeout_secs))
                .map_err(|e| AudienceSetupError::Http(e.to_string()))
        };
        let meta = if config.applies("meta") {
            let token = secrets
                .meta_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    AudienceSetupError::Config("the Meta access token is required".into())
                })?;
            Some(MetaAudienceClient::new(
                http(config.meta.timeout_secs)?,
                config.meta.clone(),
                token,
            ))
        } else {
            None
        };
        let google = if config.applies("google") {
            let g = &config.google;
            let auth = if g.uses_refresh_token() {
                GoogleAuth::Refresh {
                    token_url: g.oauth_token_url.clone(),
                    client_id: g.oauth_client_id.clone().unwrap_or_default(),
                    client_secret: secrets.google_client_secret.unwrap_or_default(),
                    refresh_token: secrets.google_refresh_token.unwrap_or_default(),
                }
            } else {
                GoogleAuth::Static(secrets.google_token.filter(|t| !t.is_empty()).ok_or_else(
                    || AudienceSetupError::Config("the Google access token is required".into()),
                )?)
            };
            Some(GoogleAudienceClient::new(
                http(g.timeout_secs)?,
                g.clone(),
                auth,
            ))
        } else {
            None
        };
        Ok(Audiences {
            meta_config: config.meta.clone(),
            google_config: config.google.clone(),
            meta,
            google,
        })
    }

    fn not_configured(platform: &str) -> ConnectorError {
        ConnectorError::Permanent {
            vendor: "audiences",
            reason: format!(
                "no {platform} credentials: the destination is in apply mode in no current config"
            ),
        }
    }
}

impl AudienceConnector for Audiences {
    async fn sync(
        &self,
        destination: &Destination,
        op: Op,
        people: &[Person],
        deadline: Deadline,
    ) -> Result<Upload, ConnectorError> {
        let mut upload = Upload::default();
        match &destination.audience {
            PlatformAudience::Meta { audience_id } => {
                let mut rows = Vec::with_capacity(people.len());
                let mut owners = Vec::with_capacity(people.len());
                for (i, p) in people.iter().enumerate() {
                    match meta::request::row(p) {
                        Some(r) => {
                            rows.push(r);
                            owners.push(i);
                        }
                        None => upload.unmatchable.push(i),
                    }
                }
                if rows.is_empty() {
                    return Ok(upload);
                }
                if destination.mode == Mode::DryRun {
                    let session = fastrand::u64(1..u64::MAX / 2);
                    upload.requests =
                        meta_client::recorded(&self.meta_config, audience_id, op, &rows, session);
                    upload.received = rows.len() as u64;
                    return Ok(upload);
                }
                let client = self
                    .meta
                    .as_ref()
                    .ok_or_else(|| Self::not_configured("Meta"))?;
                let sent = match client.send(audience_id, op, &rows, deadline).await {
                    Ok(sent) => sent,
                    // Nothing was done: the whole upload failed.
                    Err((sent, e)) if sent.rows_done == 0 => return Err(e),
                    Err((sent, e)) if !e.is_retryable() => {
                        let reason = e.reason().to_string();
                        upload.failed = owners[sent.rows_done..]
                            .iter()
                            .map(|i| (*i, reason.clone()))
                            .collect();
                        sent
                    }
                    Err((sent, e)) => {
                        upload.unfinished = owners[sent.rows_done..].to_vec();
                        upload.unfinished_reason = Some(e.to_string());
                        sent
                    }
                };
                upload.calls = sent.calls;
                upload.received = sent.num_received;
                upload.invalid = sent.num_invalid_entries;
            }
            PlatformAudience::Google {
                customer_id,
                user_list_id,
                login_customer_id,
            } => {
                let mut operations = Vec::with_capacity(people.len());
                let mut owners = Vec::with_capacity(people.len());
                for (i, p) in people.iter().enumerate() {
                    match google::request::operation(op, p) {
                        Some(o) => {
                            operations.push(o);
                            owners.push(i);
                        }
                        None => upload.unmatchable.push(i),
                    }
                }
                if operations.is_empty() {
                    return Ok(upload);
                }
                let included: Vec<&Person> = owners.iter().map(|i| &people[*i]).collect();
                let consent = google::request::job_consent(op, &included);
                let login = login_customer_id.as_deref();
                if destination.mode == Mode::DryRun {
                    upload.requests = google_client::recorded(
                        &self.google_config,
                        customer_id,
                        user_list_id,
                        login,
                        consent,
                        operations,
                    );
                    upload.received = owners.len() as u64;
                    return Ok(upload);
                }
                let client = self
                    .google
                    .as_ref()
                    .ok_or_else(|| Self::not_configured("Google"))?;
                let ran = client
                    .run_job(
                        customer_id,
                        user_list_id,
                        login,
                        consent,
                        operations,
                        deadline,
                    )
                    .await?;
                upload.calls = ran.calls;
                upload.job = Some(ran.job);
                upload.received = owners.len() as u64;
                upload.failed = ran
                    .failed
                    .into_iter()
                    .filter_map(|(i, r)| owners.get(i).map(|o| (*o, r)))
                    .collect();
            }
        }
        Ok(upload)
    }

    async fn job_status(
        &self,
        audience: &PlatformAudience,
        job: &str,
        deadline: Deadline,
    ) -> Result<JobStatus, ConnectorError> {
        match audience {
            PlatformAudience::Google {
                customer_id,
                login_customer_id,
                ..
            } => {
                let client = self
                    .google
                    .as_ref()
                    .ok_or_else(|| Self::not_configured("Google"))?;
                client
                    .job_status(customer_id, login_customer_id.as_deref(), job, deadline)
                    .await
            }
            PlatformAudience::Meta { .. } => Ok(JobStatus::Succeeded),
        }
    }
}
