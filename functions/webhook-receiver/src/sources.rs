//! The configured lead sources, built from each config version with their secrets resolved, and the
//! signed-source use case: verify -> (replay check) -> map -> store, and the sweep's lead-ad fetches.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use fluxo::config::LoadedConfig;
use fluxo::config::sources::SourceConfig;
use fluxo::connector::{Deadline, RetryPolicy, Secret};
use fluxo::domain::LeadId;
use fluxo::observability;
use fluxo::ports::{
    Clock, EventStore, IntakeStore, LeadQueue, MessageQueue, Randomness, StoreError,
};
use fluxo::secrets::{SecretError, SecretStore};
use fluxo::sources::meta_lead_ads::client::{FetchError, GraphClient};
use fluxo::sources::meta_lead_ads::config::MetaLeadAdsConfig;
use fluxo::sources::meta_lead_ads::request::LeadgenNotice;
use fluxo::sources::ports::{NoticeInbox, NoticeState, PendingNotice, ReplayGuard};
use fluxo::sources::{
    self as kinds, Request, SignedLead, SigningKey, SigningKeys, TIMESTAMP_TOLERANCE_SECS,
    VerifyError,
};
use http::StatusCode;

use crate::events::EventPorts;
use crate::intake::{Answer, Candidate, FUNCTION, Inbound, NAMESPACE, Receiver};

/// Most lead-ad notices one sweep fetches; the next sweep takes the rest, oldest first.
const NOTICE_BATCH: usize = 10;
/// How long one sweep spends starting lead-ad fetches (the function's timeout is 10 s).
const NOTICE_BUDGET: StdDuration = StdDuration::from_secs(5);
/// How long one sweep holds the right to fetch a notice.
const NOTICE_CLAIM_SECS: i64 = 60;
/// Notices are kept this long after they arrive (DynamoDB TTL): Meta keeps leads 90 days.
const NOTICE_RETENTION_DAYS: i64 = 90;

/// One configured source, its secrets resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// Meta lead ads: app secrets, verify tokens, the Graph client with the Page token.
    Meta {
        app_secrets: SigningKeys,
        verify_tokens: SigningKeys,
        graph: GraphClient,
        config: Box<MetaLeadAdsConfig>,
    },
    /// Google Ads lead forms.
    Google {
        keys: SigningKeys,
        forward_tests: bool,
    },
    /// Typeform.
    Typeform {
        keys: SigningKeys,
        fields: BTreeMap<String, String>,
    },
    /// Standard Webhooks.
    StandardWebhooks { keys: SigningKeys },
    /// A named browser form: today's intake.
    Form,
    /// A signed source whose secrets could not be read: its requests get `503` (nothing stored, the
    /// platform retries), while every other source keeps working. Counted in `SourceUnavailable`.
    Unavailable(String),
}

/// Every configured source by name.
#[derive(Debug, Clone, Default)]
pub struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// No sources: every `/leads/{name}` is a form endpoint.
    pub fn none() -> Self {
        Sources::default()
    }

    /// The source named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.0.get(name)
    }

    /// Whether a configured source could not be built (its secret is missing or SSM was down): the
    /// receiver then builds the config version again every few seconds until it can.
    pub fn degraded(&self) -> bool {
        self.0.values().any(|s| matches!(s, Source::Unavailable(_)))
    }

    /// Adds a source (tests and tools).
    pub fn with(mut self, name: &str, source: Source) -> Self {
        self.0.insert(name.to_string(), source);
        self
    }
}

/// Why the sources could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("sources {source_name}.{field}: {error}")]
    Secret {
        source_name: String,
        field: &'static str,
        error: SecretError,
    },
    #[error("sources {source_name}.{field}: {problem}")]
    Invalid {
        source_name: String,
        field: &'static str,
        problem: String,
    },
}

async fn key(
    secrets: &SecretStore,
    name: &str,
    field: &'static str,
    reference: &fluxo::secrets::SecretRef,
) -> Result<String, SourcesError> {
    secrets
        .resolve(reference)
        .await
        .map_err(|error| SourcesError::Secret {
            source_name: name.to_string(),
            field,
            error,
        })
}

async fn keys(
    secrets: &SecretStore,
    name: &str,
    fields: (&'static str, &'static str),
    current: &fluxo::secrets::SecretRef,
    previous: Option<&fluxo::secrets::SecretRef>,
    decode: impl Fn(&str) -> Result<SigningKey, String>,
) -> Result<SigningKeys, SourcesError> {
    let invalid = |field, problem| SourcesError::Invalid {
        source_name: name.to_string(),
        field,
        problem,
    };
    let current =
        decode(&key(secrets, name, fields.0, current).await?).map_err(|p| invalid(fields.0, p))?;
    let previous = match previous {
        Some(r) => Some(
            decode(&key(secrets, name, fields.1, r).await?).map_err(|p| invalid(fields.1, p))?,
        ),
        None => None,
    };
    Ok(SigningKeys::new(current, previous))
}

fn raw(text: &str) -> Result<SigningKey, String> {
    Ok(SigningKey::new(text.as_bytes().to_vec()))
}

/// [`build`] for `LiveConfig`, which hands over each loaded version.
pub async fn build_owned(
    secrets: &SecretStore,
    loaded: LoadedConfig,
) -> Result<Sources, SourcesError> {
    let sources = build(secrets, &loaded).await?;
    tracing::info!(config_version = %loaded.version, sources = sources.0.len(), "sources configured");
    Ok(sources)
}

/// Builds the sources of one config version: resolves every secret (cached by `secrets`), decodes the
/// Standard Webhooks keys and builds one Graph client per Meta source. The sources are built at the
/// same time, so a cold start waits for one secret read, not one per source.
pub async fn build(secrets: &SecretStore, loaded: &LoadedConfig) -> Result<Sources, SourcesError> {
    let built =
        futures_util::future::join_all(loaded.config.sources.iter().map(|config| async move {
            (config.name().to_string(), build_one(secrets, config).await)
        }))
        .await;
    let mut out = Sources::none();
    for (name, built) in built {
        let source = match built {
            Ok(source) => source,
            Err(e) => {
                observability::count(NAMESPACE, FUNCTION, "SourceUnavailable", 1);
                tracing::error!(error = %e, source = %name, "source not available; its requests get 503");
                Source::Unavailable(e.to_string())
            }
        };
        out.0.insert(name, source);
    }
    Ok(out)
}

async fn build_one(secrets: &SecretStore, config: &SourceConfig) -> Result<Source, SourcesError> {
    let name = config.name().to_string();
    Ok({
        match config {
            SourceConfig::MetaLeadAds(c) => {
                let http = fluxo::connector::http_client(
                    StdDuration::from_secs(2),
                    StdDuration::from_secs(4),
                )
                .map_err(|e| SourcesError::Invalid {
                    source_name: name.clone(),
                    field: "graph_url",
                    problem: e.to_string(),
                })?;
                // Three secrets, read at the same time.
                let (token, app_secrets, verify_tokens) = tokio::try_join!(
                    key(secrets, &name, "page_token", &c.page_token),
                    keys(
                        secrets,
                        &name,
                        ("app_secret", "previous_app_secret"),
                        &c.app_secret,
                        c.previous_app_secret.as_ref(),
                        raw,
                    ),
                    keys(
                        secrets,
                        &name,
                        ("verify_token", "verify_token"),
                        &c.verify_token,
                        None,
                        raw,
                    ),
                )?;
                Source::Meta {
                    app_secrets,
                    verify_tokens,
                    graph: GraphClient::new(
                        http,
                        c.graph_url.clone(),
                        Secret::new(token),
                        RetryPolicy::default(),
                    ),
                    config: c.clone(),
                }
            }
            SourceConfig::GoogleAdsLeadForm(c) => Source::Google {
                keys: keys(
                    secrets,
                    &name,
                    ("google_key", "previous_google_key"),
                    &c.google_key,
                    c.previous_google_key.as_ref(),
                    raw,
                )
                .await?,
                forward_tests: c.forward_tests,
            },
            SourceConfig::Typeform(c) => Source::Typeform {
                keys: keys(
                    secrets,
                    &name,
                    ("secret", "previous_secret"),
                    &c.secret,
                    c.previous_secret.as_ref(),
                    raw,
                )
                .await?,
                fields: c.fields.clone(),
            },
            SourceConfig::StandardWebhooks(c) => Source::StandardWebhooks {
                keys: keys(
                    secrets,
                    &name,
                    ("secret", "previous_secret"),
                    &c.secret,
                    c.previous_secret.as_ref(),
                    kinds::standard_webhooks::request::key_from_secret,
                )
                .await?,
            },
            SourceConfig::Form(_) => Source::Form,
        }
    })
}

/// The receiver's store for the sources when none is wired (tests of form intake): every call fails,
/// so a signed source is answered `503` and nothing is half-written.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSourceStore;

impl ReplayGuard for NoSourceStore {
    async fn first_sighting(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Rejected("no source store is wired".into()))
    }
    async fn forget(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

impl NoticeInbox for NoSourceStore {
    async fn put_notice(&self, _: &PendingNotice, _: i64) -> Result<bool, StoreError> {
        Err(StoreError::Rejected("no source store is wired".into()))
    }
    async fn pending_notices(&self, _: usize) -> Result<Vec<PendingNotice>, StoreError> {
        Ok(Vec::new())
    }
    async fn claim_notice(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn settle_notice(
        &self,
        _: &str,
        _: &str,
        _: NoticeState,
        _: Option<&str>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a signed source's `POST` came to.
#[derive(Debug)]
pub(crate) enum SignedAnswer {
    /// Refused as not from the platform: a bare `401`.
    Unauthorized,
    /// Meta's notification stored: `200` with how many leads it named.
    Noticed(usize),
    /// A lead: stored (or replayed), or refused with detail (the sender is authenticated).
    Lead(Answer),
}

/// What one sweep of lead-ad notices did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoticeReport {
    /// Notices looked at.
    pub found: usize,
    /// Leads fetched and stored.
    pub stored: usize,
    /// Left pending for a later sweep (Meta failing or throttling, an expired token).
    pub waiting: usize,
    /// Refused by Meta for good.
    pub failed: usize,
}

fn refuse(source: &str, error: &VerifyError) -> SignedAnswer {
    observability::count(NAMESPACE, FUNCTION, "SourceRejected", 1);
    tracing::warn!(source, reason = %error, "signed source request refused");
    SignedAnswer::Unauthorized
}

/// The record key of a platform's lead: one per source and platform id.
fn platform_key(source: &str, platform_id: &str) -> String {
    fluxo::idempotency::key_of("fluxo.source.lead.v1", &[source, platform_id])
}

impl<S, Q, C, R, P, ES, EQ> Receiver<S, Q, C, R, P, EventPorts<ES, EQ>>
where
    S: IntakeStore,
    Q: LeadQueue,
    C: Clock,
    R: Randomness,
    P: ReplayGuard + NoticeInbox,
    ES: EventStore,
    EQ: MessageQueue,
{
    /// A signed source's `POST`: verify over the raw bytes, then map and store. Nothing is stored for a
    /// request that fails verification.
    pub(crate) async fn post_signed(
        &self,
        name: &str,
        source: &Source,
        headers: &[(String, String)],
        raw: &[u8],
        inbound: &Inbound<'_>,
    ) -> SignedAnswer {
        if raw.len() > self.settings.max_body_bytes {
            return SignedAnswer::Lead(self.too_large());
        }
        let now = self.clock.now();
        let request = Request::new(headers, raw);
        let mapped = match source {
            Source::Meta {
                app_secrets,
                config: _,
                ..
            } => {
                let verified = match kinds::meta_lead_ads::request::verify(request, app_secrets) {
                    Ok(v) => v,
                    Err(e) => return refuse(name, &e),
                };
                return match kinds::meta_lead_ads::request::notices(&verified) {
                    Ok(notices) => self.store_notices(name, &notices, now).await,
                    Err(problem) => {
                        SignedAnswer::Lead(Answer::rejected(StatusCode::BAD_REQUEST, problem))
                    }
                };
            }
            Source::Google { keys, .. } => {
                match kinds::google_ads_lead_form::request::verify(request, keys) {
                    Ok(v) => kinds::google_ads_lead_form::request::lead(&v),
                    Err(e) => return refuse(name, &e),
                }
            }
            Source::Typeform { keys, fields } => {
                match kinds::typeform::request::verify(request, keys) {
                    Ok(v) => kinds::typeform::request::lead(&v, fields),
                    Err(e) => return refuse(name, &e),
                }
            }
            Source::StandardWebhooks { keys } => {
                let verified = match kinds::standard_webhooks::request::verify(request, keys, now) {
                    Ok(v) => v,
                    Err(e) => return refuse(name, &e),
                };
                let id = verified.message_id().unwrap_or_default().to_string();
                let until = now + Duration::seconds(2 * TIMESTAMP_TOLERANCE_SECS);
                match self
                    .source_store
                    .first_sighting(name, &id, now, until)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        observability::count(NAMESPACE, FUNCTION, "SourceReplayRejected", 1);
                        return refuse(name, &VerifyError::Replayed);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "recording the message id failed; nothing was stored");
                        return SignedAnswer::Lead(Answer::Unavailable);
                    }
                }
                let answer = match kinds::standard_webhooks::request::lead(&verified) {
                    Ok(lead) => self.store_signed(name, lead, false, inbound, now).await,
                    Err(problem) => Answer::rejected(StatusCode::BAD_REQUEST, problem),
                };
                if !matches!(answer, Answer::Accepted { .. })
                    && let Err(e) = self.source_store.forget(name, &id).await
                {
                    tracing::warn!(error = %e, "forgetting the message id failed; it expires on its own");
                }
                return SignedAnswer::Lead(answer);
            }
            Source::Form | Source::Unavailable(_) => {
                observability::count(NAMESPACE, FUNCTION, "SourceUnavailable", 1);
                return SignedAnswer::Lead(Answer::Unavailable);
            }
        };
        let hold = matches!(
            source,
            Source::Google {
                forward_tests: false,
                ..
            }
        );
        SignedAnswer::Lead(match mapped {
            Ok(lead) => {
                let hold = hold && lead.is_test();
                self.store_signed(name, lead, hold, inbound, now).await
            }
            Err(problem) => Answer::rejected(StatusCode::BAD_REQUEST, problem),
        })
    }

    /// Normalizes a mapped lead and stores it under its platform id.
    async fn store_signed(
        &self,
        name: &str,
        lead: kinds::SourceLead,
        hold: bool,
        inbound: &Inbound<'_>,
        received_at: DateTime<Utc>,
    ) -> Answer {
        match lead.normalize(name, received_at, &self.intake) {
            Ok(signed) => {
                self.store_signed_lead(name, signed, hold, inbound, received_at)
                    .await
            }
            Err(fields) => Answer::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "invalid lead".into(),
                fields,
            },
        }
    }

    async fn store_signed_lead(
        &self,
        name: &str,
        signed: SignedLead,
        hold: bool,
        inbound: &Inbound<'_>,
        received_at: DateTime<Utc>,
    ) -> Answer {
        let (lead, fingerprint, platform_id) = signed.into_parts();
        self.store_lead(Candidate {
            key: platform_key(name, &platform_id),
            dedup: None,
            keyed: true,
            lead,
            fingerprint,
            lead_id: LeadId::new(received_at, self.random.random_u128()),
            received_at,
            inbound,
            hold,
        })
        .await
    }

    /// Stores each leadgen notice before Meta gets its `200`; the sweep fetches the leads.
    async fn store_notices(
        &self,
        name: &str,
        notices: &[LeadgenNotice],
        now: DateTime<Utc>,
    ) -> SignedAnswer {
        let expires_at = (now + Duration::days(NOTICE_RETENTION_DAYS)).timestamp();
        for notice in notices {
            let pending = PendingNotice {
                source: name.to_string(),
                notice: serde_json::to_string(notice).unwrap_or_default(),
                leadgen_id: notice.leadgen_id.clone(),
                received_at: now,
                attempts: 0,
            };
            match self.source_store.put_notice(&pending, expires_at).await {
                Ok(true) => observability::count(NAMESPACE, FUNCTION, "LeadAdNoticed", 1),
                Ok(false) => {
                    tracing::info!(leadgen_id = %notice.leadgen_id, "lead-ad notice already stored")
                }
                Err(e) => {
                    tracing::error!(error = %e, "storing a lead-ad notice failed; Meta retries the notification");
                    return SignedAnswer::Lead(Answer::Unavailable);
                }
            }
        }
        SignedAnswer::Noticed(notices.len())
    }

    /// Fetches the leads of stored lead-ad notices and stores them, once per `leadgen_id`. A Graph
    /// failure or throttling leaves the notice for the next sweep; an expired token too, counted in
    /// `LeadAdTokenExpired` (alarmed) until a new token is deployed; a refusal marks it failed
    /// (`LeadAdFetchFailed`, alarmed).
    pub async fn sweep_notices(&self, sources: &Sources) -> Result<NoticeReport, StoreError> {
        let pending = self.source_store.pending_notices(NOTICE_BATCH).await?;
        let deadline = Deadline::after(NOTICE_BUDGET);
        let mut report = NoticeReport {
            found: pending.len(),
            ..NoticeReport::default()
        };
        for notice in pending {
            let now = self.clock.now();
            let Some(Source::Meta { graph, config, .. }) = sources.get(&notice.source) else {
                tracing::warn!(source = %notice.source, "a lead-ad notice names no configured Meta source; kept");
                report.waiting += 1;
                continue;
            };
            if deadline.passed() {
                report.waiting += 1;
                continue;
            }
            let claimed = self
                .source_store
                .claim_notice(
                    &notice.source,
                    &notice.leadgen_id,
                    now,
                    now + Duration::seconds(NOTICE_CLAIM_SECS),
                )
                .await?;
            if !claimed {
                report.waiting += 1;
                continue;
            }
            let state = self.fetch_one(&notice, graph, config, deadline).await;
            let (state, reason) = match state {
                Ok(lead_id) => {
                    report.stored += 1;
                    (NoticeState::Done(lead_id), None)
                }
                Err((NoticeState::Failed, reason)) => {
                    report.failed += 1;
                    (NoticeState::Failed, Some(reason))
                }
                Err((state, reason)) => {
                    report.waiting += 1;
                    (state, Some(reason))
                }
            };
            self.source_store
                .settle_notice(&notice.source, &notice.leadgen_id, state, reason.as_deref())
                .await?;
        }
        if report.found > 0 {
            tracing::info!(
                found = report.found,
                stored = report.stored,
                waiting = report.waiting,
                failed = report.failed,
                "sweep of lead-ad notices"
            );
        }
        Ok(report)
    }

    async fn fetch_one(
        &self,
        pending: &PendingNotice,
        graph: &GraphClient,
        config: &MetaLeadAdsConfig,
        deadline: Deadline,
    ) -> Result<LeadId, (NoticeState, String)> {
        let span = tracing::info_span!("lead_ad", leadgen_id = %pending.leadgen_id);
        let _entered = span.enter();
        let notice: LeadgenNotice = serde_json::from_str(&pending.notice).map_err(|e| {
            (
                NoticeState::Failed,
                format!("stored notice unreadable: {e}"),
            )
        })?;
        let fetched = match graph.fetch_lead(&notice.leadgen_id, deadline).await {
            Ok(f) => f,
            Err(FetchError::TokenExpired(reason)) => {
                observability::count(NAMESPACE, FUNCTION, "LeadAdTokenExpired", 1);
                tracing::error!(%reason, "the Page token expired; the notice waits for a new token");
                return Err((NoticeState::Pending, reason));
            }
            Err(FetchError::Refused(reason)) => {
                observability::count(NAMESPACE, FUNCTION, "LeadAdFetchFailed", 1);
                tracing::error!(%reason, "Meta refused the lead");
                return Err((NoticeState::Failed, reason));
            }
            Err(FetchError::Retryable(e)) => {
                observability::count(NAMESPACE, FUNCTION, "LeadAdFetchRetried", 1);
                tracing::warn!(error = %e, "fetching the lead failed; the next sweep retries");
                return Err((NoticeState::Pending, e.to_string()));
            }
        };
        let source_lead = fetched.into_source_lead(&notice, config);
        let received_at = self.clock.now();
        let signed = match source_lead.normalize(&pending.source, received_at, &self.intake) {
            Ok(s) => s,
            Err(fields) => {
                observability::count(NAMESPACE, FUNCTION, "LeadAdFetchFailed", 1);
                let fields: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{} {}", f.field, f.problem))
                    .collect();
                return Err((
                    NoticeState::Failed,
                    format!("invalid lead: {}", fields.join("; ")),
                ));
            }
        };
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        let inbound = Inbound {
            endpoint: Some(pending.source.clone()),
            content_type: Some("application/json"),
            headers,
            body: pending.notice.as_bytes(),
            idempotency_key: None,
        };
        match self
            .store_signed_lead(&pending.source, signed, false, &inbound, received_at)
            .await
        {
            Answer::Accepted { lead_id, .. } => Ok(lead_id),
            Answer::Unavailable => Err((NoticeState::Pending, "storing the lead failed".into())),
            Answer::Rejected { message, .. } => Err((NoticeState::Failed, message)),
        }
    }
}
