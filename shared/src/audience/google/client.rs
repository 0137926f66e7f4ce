//! Sends Customer Match jobs through the connector contract: OAuth2 (the ads connector's token flow),
//! `login-customer-id` for managed accounts, Google's error classification.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::config::GoogleAudienceConfig;
use super::request;
use crate::ads::google::GoogleAuth;
use crate::audience::connector::call;
use crate::audience::{JobStatus, RecordedRequest};
use crate::connector::{ConnectorError, Deadline, RetryPolicy, Secret};

const VENDOR: &str = "google_customer_match";
/// Renew access tokens this long before Google says they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The Customer Match client.
#[derive(Debug)]
pub struct GoogleAudienceClient {
    http: reqwest::Client,
    config: GoogleAudienceConfig,
    auth: GoogleAuth,
    policy: RetryPolicy,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

/// What one job run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    pub job: String,
    /// `(operation index, reason)` for the operations Google refused.
    pub failed: Vec<(usize, String)>,
    pub calls: u32,
}

/// The retry policy of a config.
pub fn policy(config: &GoogleAudienceConfig) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.max_attempts,
        base_delay: Duration::from_millis(config.base_delay_ms),
        max_delay: Duration::from_millis(config.max_delay_ms),
    }
}

fn record(url: String, login: Option<&str>, body: Value) -> RecordedRequest {
    let mut headers = vec![
        ("authorization".to_string(), "Bearer [redacted]".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    if let Some(l) = login {
        headers.push(("login-customer-id".to_string(), l.to_string()));
    }
    RecordedRequest {
        method: "POST".into(),
        url,
        headers,
        body,
    }
}

/// The requests one run makes, as a dry run records them: create (with `validateOnly`), the
/// `addOperations` requests, and `:run`, against a placeholder job name.
pub fn recorded(
    config: &GoogleAudienceConfig,
    customer_id: &str,
    user_list_id: &str,
    login: Option<&str>,
    job_consent: Option<crate::audience::ConsentStatus>,
    operations: Vec<Value>,
) -> Vec<RecordedRequest> {
    let (e, v) = (&config.endpoint, &config.api_version);
    let job = request::dry_run_job(customer_id);
    let mut out = vec![record(
        request::create_url(e, v, customer_id),
        login,
        request::create_body(customer_id, user_list_id, job_consent, true),
    )];
    let per = config.operations_per_request.max(1);
    let mut ops = operations;
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(per));
        out.push(record(
            request::add_operations_url(e, v, &job),
            login,
            request::add_operations_body(ops, true),
        ));
        ops = rest;
    }
    out.push(record(
        request::run_url(e, v, &job),
        login,
        request::run_body(true),
    ));
    out
}

impl GoogleAudienceClient {
    /// A client over a shared HTTP client.
    pub fn new(http: reqwest::Client, config: GoogleAudienceConfig, auth: GoogleAuth) -> Self {
        let policy = policy(&config);
        GoogleAudienceClient {
            http,
            config,
            auth,
            policy,
            token: tokio::sync::Mutex::new(None),
        }
    }

    async fn access_token(&self, deadline: Deadline) -> Result<Secret, ConnectorError> {
        let (token_url, client_id, client_secret, refresh_token) = match &self.auth {
            GoogleAuth::Static(token) => return Ok(token.clone()),
            GoogleAuth::Refresh {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => (token_url, client_id, client_secret, refresh_token),
        };
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let body = crate::ads::google::request::token_request_body(
            client_id,
            client_secret.expose(),
            refresh_token.expose(),
        );
        let (token, expires_in) = call(
            VENDOR,
            &self.policy,
            deadline,
            || {
                self.http
                    .post(token_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
            },
            crate::ads::google::request::classify_token,
            |reply| crate::ads::google::request::parse_token(&reply.body),
        )
        .await?;
        let token = Secret::new(token);
        let lifetime = Duration::from_secs(expires_in).saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn post<T>(
        &self,
        url: &str,
        login: Option<&str>,
        body: &Value,
        deadline: Deadline,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConnectorError> {
        let token = self.access_token(deadline).await?;
        call(
            VENDOR,
            &self.policy,
            deadline,
            || {
                let mut b = self.http.post(url).json(body);
                for (name, value) in crate::ads::google::request::headers(token.expose(), login) {
                    b = b.header(name, value);
                }
                b
            },
            crate::ads::google::request::classify,
            |reply| parse(&reply.body),
        )
        .await
    }

    /// Creates one job, adds every operation (in requests of `operations_per_request`), runs it.
    pub async fn run_job(
        &self,
        customer_id: &str,
        user_list_id: &str,
        login: Option<&str>,
        job_consent: Option<crate::audience::ConsentStatus>,
        operations: Vec<Value>,
        deadline: Deadline,
    ) -> Result<Ran, ConnectorError> {
        let (e, v) = (&self.config.endpoint, &self.config.api_version);
        let mut ran = Ran::default();
        let create = request::create_body(customer_id, user_list_id, job_consent, false);
        ran.job = self
            .post(
                &request::create_url(e, v, customer_id),
                login,
                &create,
                deadline,
                request::parse_job,
            )
            .await?;
        ran.calls += 1;
        let per = self.config.operations_per_request.max(1);
        let mut offset = 0;
        let mut ops = operations;
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(per));
            let n = ops.len();
            let body = request::add_operations_body(ops, false);
            let failed = self
                .post(
                    &request::add_operations_url(e, v, &ran.job),
                    login,
                    &body,
                    deadline,
                    |b| Ok(request::parse_partial_failure(b)),
                )
                .await?;
            ran.calls += 1;
            ran.failed
                .extend(failed.into_iter().map(|(i, r)| (i + offset, r)));
            offset += n;
            ops = rest;
        }
        self.post(
            &request::run_url(e, v, &ran.job),
            login,
            &request::run_body(false),
            deadline,
            |_| Ok(()),
        )
        .await?;
        ran.calls += 1;
        Ok(ran)
    }

    /// The status of a job.
    pub async fn job_status(
        &self,
        customer_id: &str,
        login: Option<&str>,
        job: &str,
        deadline: Deadline,
    ) -> Result<JobStatus, ConnectorError> {
        let (e, v) = (&self.config.endpoint, &self.config.api_version);
        self.post(
            &request::search_url(e, v, customer_id),
            login,
            &request::status_body(job),
            deadline,
            request::parse_status,
        )
        .await
    }
}
