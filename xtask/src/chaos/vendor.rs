//! The CRM fake (wiremock, asserting the REST CRM's documented request shape) behind the fault proxy,
//! whose plan fails a share of calls with every kind of vendor fault and kills the router mid-batch.
//!
//! wiremock's request log is the CRM's state: a request the proxy answered itself (5xx, 429, reset)
//! never reached it; a request that reached it is an effect, whatever the caller then saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::kill;
use super::proxy::{Action, After, Plan, Request};

/// The CRM path the chaos config points the REST connector at.
pub const CRM_PATH: &str = "/v1/leads";
/// The bearer token the stack gives the router (`CRM_TOKEN`), which the fake requires.
pub const CRM_TOKEN: &str = "chaos-token";

/// Starts the CRM fake: `POST /v1/leads` with the bearer token, a JSON body and an idempotency key
/// answers 201 with an id; anything else gets wiremock's 404, which the router records as a permanent
/// failure (and the ledger check reports it).
pub async fn crm_fake() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CRM_PATH))
        .and(header(
            "authorization",
            format!("Bearer {CRM_TOKEN}").as_str(),
        ))
        .and(header("content-type", "application/json"))
        .and(header_exists("idempotency-key"))
        .respond_with(ResponseTemplate::new(201).set_body_string(r#"{"id":"contact"}"#))
        .mount(&server)
        .await;
    server
}

/// The fault kinds, in the order the plan cycles through them.
pub const FAULTS: [&str; 6] = [
    "5xx",
    "429 with Retry-After",
    "429 without Retry-After",
    "connection reset",
    "slow answer after the effect",
    "malformed body after the effect",
];

/// Fails `share` of the CRM calls (cycling through [`FAULTS`], seeded), and kills the router after the
/// effect of one call in `kill_every` while kills remain.
pub struct VendorFaults {
    /// Share of calls to fail, in percent.
    pub percent: AtomicU32,
    /// Kills still to make.
    pub kills_left: AtomicU32,
    /// Kill after the effect of every n-th call (0: never).
    pub kill_every: u64,
    /// How long a slow answer holds, past the client's timeout.
    pub slow: Duration,
    /// Where the router runs: its binary and the endpoint in its environment, to find its pid.
    pub router: kill::Target,
    calls: AtomicU64,
    rng: Mutex<fastrand::Rng>,
    /// Decisions made, by label.
    pub tally: Mutex<BTreeMap<&'static str, u64>>,
    /// Kills made.
    pub kills: AtomicU32,
}

impl VendorFaults {
    pub fn new(
        percent: u32,
        kills: u32,
        kill_every: u64,
        slow: Duration,
        router: kill::Target,
    ) -> Arc<Self> {
        Arc::new(VendorFaults {
            percent: AtomicU32::new(percent),
            kills_left: AtomicU32::new(kills),
            kill_every,
            slow,
            router,
            calls: AtomicU64::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(13)),
            tally: Mutex::new(BTreeMap::new()),
            kills: AtomicU32::new(0),
        })
    }

    /// Turns faults off (kills included), e.g. to let the last redeliveries settle.
    pub fn calm(&self) {
        self.percent.store(0, Ordering::SeqCst);
        self.kills_left.store(0, Ordering::SeqCst);
    }
}

impl Plan for VendorFaults {
    fn decide(&self, _request: &Request) -> Action {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.kill_every > 0
            && n.is_multiple_of(self.kill_every)
            && self
                .kills_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
                .is_ok()
        {
            return Action::Then(After::Kill);
        }
        let (roll, kind) = match self.rng.lock() {
            Ok(mut rng) => (rng.u32(0..100), rng.usize(0..FAULTS.len())),
            Err(_) => (100, 0),
        };
        if roll >= self.percent.load(Ordering::SeqCst) {
            return Action::Forward;
        }
        let respond = |status: u16, headers: Vec<(String, String)>, body: &str| Action::Respond {
            status,
            headers,
            body: body.to_string(),
        };
        match kind {
            0 => respond(503, vec![], "upstream unavailable"),
            1 => respond(429, vec![("Retry-After".into(), "1".into())], "slow down"),
            2 => respond(429, vec![], "slow down"),
            3 => Action::Reset,
            4 => Action::Then(After::Stall(self.slow)),
            _ => Action::Then(After::Malformed),
        }
    }

    fn kill(&self) {
        match kill::sigkill(&self.router) {
            Ok(pids) if !pids.is_empty() => {
                self.kills.fetch_add(1, Ordering::SeqCst);
                println!("  ☠ SIGKILL lead-router (pid {pids:?}) after its CRM call took effect");
                if let Err(e) = kill::restart_under_watch(&self.router.source) {
                    println!("  ! could not ask watch to restart lead-router: {e:#}");
                }
            }
            Ok(_) => println!("  ! no lead-router process found to kill"),
            Err(e) => println!("  ! killing lead-router failed: {e:#}"),
        }
    }

    fn record(&self, _request: &Request, action: &Action) {
        if let Ok(mut t) = self.tally.lock() {
            *t.entry(action.label()).or_default() += 1;
        }
    }
}

/// The CRM calls the fake took, per idempotency key (= lead id), with the email each carried.
pub async fn crm_calls(server: &MockServer) -> Result<BTreeMap<String, (u32, String)>> {
    let mut out: BTreeMap<String, (u32, String)> = BTreeMap::new();
    for r in server.received_requests().await.unwrap_or_default() {
        let key = r
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let email = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("email").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
        let entry = out.entry(key).or_insert((0, email));
        entry.0 += 1;
    }
    Ok(out)
}
