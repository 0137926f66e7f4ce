//! The chaos client: posts leads with an `Idempotency-Key` each, resends some (client duplicates), and
//! records every answer, so the ledger check knows which leads were accepted with a 2xx.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures_util::StreamExt;

/// One lead the client sent, and what became of it.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub email: String,
    pub key: String,
    /// Every HTTP status the receiver answered for this lead, in order (0: no answer).
    pub statuses: Vec<u16>,
    /// The lead id of the 2xx answers (all must be the same).
    pub lead_ids: Vec<String>,
}

impl Sent {
    /// The lead id the receiver accepted it under.
    pub fn lead_id(&self) -> Option<&str> {
        self.lead_ids.first().map(String::as_str)
    }
    pub fn accepted(&self) -> bool {
        self.lead_id().is_some()
    }
}

/// The leads of one run, by email.
pub type Ledger = BTreeMap<String, Sent>;

/// `n` leads of run `run`: unique emails, the article's fields, half of them interested in Software A.
pub fn make(run: &str, n: usize) -> Vec<(String, String, serde_json::Value)> {
    (0..n)
        .map(|i| {
            let email = format!("chaos-{run}-{i}@exemplo.com");
            let key = format!("chaos-{run}-{i}");
            let body = serde_json::json!({
                "nome": format!("Lead {i}"),
                "email": email,
                "origem": "chaos",
                "interesse": if i % 2 == 0 { "Software A" } else { "Software B" },
            });
            (email, key, body)
        })
        .collect()
}

/// Posts one lead once; `0` when no answer came.
async fn post(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, Option<String>) {
    match http
        .post(format!("{api}/leads"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            let lead_id = r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.get("lead_id")?.as_str().map(str::to_string));
            (status, lead_id.filter(|_| (200..300).contains(&status)))
        }
        Err(_) => (0, None),
    }
}

/// Posts every lead (`concurrency` at a time), each a second time when `duplicate(i)` says so.
pub async fn post_all(
    http: &reqwest::Client,
    api: &str,
    leads: &[(String, String, serde_json::Value)],
    concurrency: usize,
    duplicate: impl Fn(usize) -> bool,
    ledger: &mut Ledger,
) {
    let jobs = leads.iter().enumerate().map(|(i, (email, key, body))| {
        let times = if duplicate(i) { 2 } else { 1 };
        async move {
            let mut answers = Vec::new();
            for _ in 0..times {
                answers.push(post(http, api, key, body).await);
            }
            (email.clone(), key.clone(), answers)
        }
    });
    let results: Vec<_> = futures_util::stream::iter(jobs)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (email, key, answers) in results {
        let sent = ledger.entry(email.clone()).or_insert_with(|| Sent {
            email,
            key,
            ..Sent::default()
        });
        for (status, lead_id) in answers {
            sent.statuses.push(status);
            sent.lead_ids.extend(lead_id);
        }
    }
}

/// Resends, as a client must, every lead not yet accepted (503, no answer), until all are or the
/// attempts run out.
pub async fn retry_unaccepted(
    http: &reqwest::Client,
    api: &str,
    leads: &[(String, String, serde_json::Value)],
    ledger: &mut Ledger,
    attempts: u32,
) -> Result<()> {
    for _ in 0..attempts {
        let pending: Vec<_> = leads
            .iter()
            .filter(|(email, _, _)| ledger.get(email).is_none_or(|s| !s.accepted()))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        post_all(http, api, &pending, 8, |_| false, ledger).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
