//! Wall time of one batch of 10 leads when every CRM call takes 200 ms (wiremock with a fixed delay).
//!
//! The REST CRM gets one call per lead, made concurrently; HubSpot gets the batch in one call. Either way a
//! batch should take about one call's latency, not ten. Stores and queues are in memory, so the figure is
//! the CRM's latency plus the router's own overhead.
//!
//! The set-up asserts what it built, and every measured batch must reach the CRM and the queues: a
//! benchmark must not quietly measure nothing.

// A set-up failure must stop the benchmark loudly rather than let it measure nothing.
#![allow(clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use fluxo::config::load_str;
use fluxo::connector::Secret;
use fluxo::crm::Crm;
use fluxo::domain::{Email, Lead, LeadId};
use fluxo::envelope::LeadEnvelope;
use fluxo::ports::SystemClock;
use fluxo::routing::RuleSet;
use fluxo::routing::memory::{MemoryLedger, MemoryProfiles, MemoryQueue};
use lead_router::{Router, SqsEvent};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CRM_LATENCY: Duration = Duration::from_millis(200);
static NEXT: AtomicU64 = AtomicU64::new(0);

type BenchRouter = Router<MemoryProfiles, MemoryLedger, Crm, MemoryQueue, SystemClock>;

fn router(crm_section: &str) -> Option<BenchRouter> {
    let article = include_str!("../../../config/fluxo.toml");
    let rules = &article[..article.find("[lead_router.crm]")?];
    let config = load_str("bench.toml", &format!("{rules}\n{crm_section}"))
        .ok()?
        .config
        .lead_router;
    Some(Router {
        profiles: MemoryProfiles::default(),
        ledger: MemoryLedger::default(),
        crm: Crm::from_config(
            &config.crm,
            Some(Secret::new("bench")),
            config.processing.concurrency,
        )
        .ok()?,
        email_queue: MemoryQueue::default(),
        audience_queue: MemoryQueue::default(),
        leads_queue: MemoryQueue::default(),
        clock: SystemClock,
        rules: RuleSet::compile(&config).ok()?,
        concurrency: config.processing.concurrency,
        lease: Duration::from_secs(60),
        config_version: "bench".into(),
    })
}

/// Ten new leads (fresh emails, so no effect is skipped as already done).
fn batch() -> Option<SqsEvent> {
    let records: Vec<_> = (0..10)
        .map(|_| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let mut lead = Lead::with_email(Email::parse(&format!("lead{n}@exemplo.com")).ok()?);
            lead.interest = Some("Software A".into());
            let envelope = LeadEnvelope::new(
                LeadId::new(Utc::now(), u128::from(n)),
                format!("k{n}"),
                Utc::now(),
                None,
                lead,
            );
            Some(json!({"messageId": format!("m{n}"), "body": envelope.to_json().ok()?}))
        })
        .collect::<Option<_>>()?;
    serde_json::from_value(json!({ "Records": records })).ok()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the benchmark's runtime starts");
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        let created = ResponseTemplate::new(201).set_delay(CRM_LATENCY);
        Mock::given(method("POST"))
            .respond_with(created)
            .mount(&server)
            .await;
        server
    });
    let rest = format!(
        "[lead_router.crm]\nconnector = \"rest\"\ndry_run = false\n[lead_router.crm.rest]\nurl = \"{}/v1/leads\"\ntoken = {{ env = \"BENCH_UNUSED\" }}\n",
        server.uri()
    );
    let hubspot = format!(
        "[lead_router.crm]\nconnector = \"hubspot\"\ndry_run = false\n[lead_router.crm.hubspot]\nbase_url = \"{}\"\ntoken = {{ env = \"BENCH_UNUSED\" }}\n",
        server.uri()
    );
    let mut group = c.benchmark_group("batch_of_10_with_200ms_crm");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for (name, section) in [("rest_concurrent", rest), ("hubspot_one_call", hubspot)] {
        let router = router(&section).expect("the benchmark's router builds from its config");
        let crm_calls_before = rt
            .block_on(server.received_requests())
            .map_or(0, |r| r.len());
        let mut batches = 0usize;
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let event = batch().expect("the benchmark's batch of 10 leads builds");
                    let started = Instant::now();
                    let response = rt.block_on(router.handle(event));
                    total += started.elapsed();
                    assert!(response.batch_item_failures.is_empty());
                    batches += 1;
                }
                total
            })
        });
        // Every measured lead reached the CRM and was fanned out: the figure is not an empty run.
        let crm_calls = rt
            .block_on(server.received_requests())
            .map_or(0, |r| r.len())
            - crm_calls_before;
        assert!(
            batches > 0 && crm_calls > 0,
            "{name}: no batch reached the CRM"
        );
        assert!(
            router.profiles.len() >= batches * 10,
            "{name}: {} profiles stored for {batches} batches of 10",
            router.profiles.len()
        );
        assert!(
            !router.email_queue.sent().is_empty(),
            "{name}: nothing was fanned out to the email queue"
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
