//! AWS faults: the plan of the fault proxy the functions reach moto through (`AWS_ENDPOINT_URL`). While
//! on, a share of DynamoDB and SQS calls fail (500 before the call, a reset before or after it), or stall
//! for a while before reaching moto.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::proxy::{Action, After, Plan, Request};

/// The AWS fault plan; off until [`AwsFaults::set`].
pub struct AwsFaults {
    on: AtomicBool,
    percent: AtomicU32,
    stall: Duration,
    rng: Mutex<fastrand::Rng>,
    /// Decisions made while on, by service and label.
    pub tally: Mutex<BTreeMap<String, u64>>,
}

impl AwsFaults {
    pub fn new(stall: Duration) -> Arc<Self> {
        Arc::new(AwsFaults {
            on: AtomicBool::new(false),
            percent: AtomicU32::new(0),
            stall,
            rng: Mutex::new(fastrand::Rng::with_seed(1300)),
            tally: Mutex::new(BTreeMap::new()),
        })
    }

    /// Fails `percent` of the calls from now on (0: none).
    pub fn set(&self, percent: u32) {
        self.percent.store(percent, Ordering::SeqCst);
        self.on.store(percent > 0, Ordering::SeqCst);
    }
}

/// `DynamoDB` or `SQS`, from the JSON protocol's `X-Amz-Target`; other calls (S3 config reads) pass.
fn service(request: &Request) -> Option<&'static str> {
    let target = request.header("x-amz-target")?;
    if target.starts_with("DynamoDB_") {
        Some("DynamoDB")
    } else if target.starts_with("AmazonSQS") {
        Some("SQS")
    } else {
        None
    }
}

impl Plan for AwsFaults {
    fn decide(&self, request: &Request) -> Action {
        if !self.on.load(Ordering::SeqCst) {
            return Action::Forward;
        }
        let Some(service) = service(request) else {
            return Action::Forward;
        };
        let (roll, kind) = match self.rng.lock() {
            Ok(mut rng) => (rng.u32(0..100), rng.u8(0..4)),
            Err(_) => (100, 0),
        };
        if roll >= self.percent.load(Ordering::SeqCst) {
            return Action::Forward;
        }
        match kind {
            0 => {
                let code = if service == "DynamoDB" {
                    "com.amazonaws.dynamodb.v20120810#InternalServerError"
                } else {
                    "com.amazonaws.sqs#InternalError"
                };
                Action::Respond {
                    status: 500,
                    headers: vec![("content-type".into(), "application/x-amz-json-1.0".into())],
                    body: format!(r#"{{"__type":"{code}","message":"chaos: injected fault"}}"#),
                }
            }
            1 => Action::Reset,
            2 => Action::Stall(self.stall),
            _ => Action::Then(After::Reset),
        }
    }

    fn record(&self, request: &Request, action: &Action) {
        if !self.on.load(Ordering::SeqCst) || matches!(action, Action::Forward) {
            return;
        }
        let what = format!(
            "{} {}: {}",
            service(request).unwrap_or("other"),
            request
                .header("x-amz-target")
                .and_then(|t| t.split('.').next_back())
                .unwrap_or("?"),
            action.label()
        );
        if let Ok(mut t) = self.tally.lock() {
            *t.entry(what).or_default() += 1;
        }
    }
}
