//! Throughput of one optimizer run: 10,000 campaigns against a local platform answering in 50 ms.
//!
//! Each campaign costs 2 calls (metrics, then the bid change: the article's metrics always reduce), at most
//! C in flight. The floor is 10,000 x 2 x 50 ms / C; the run must stay within 1.25x of it. Run with
//! `cargo bench -p hourly-optimizer --bench optimizer` (or `cargo xtask bench`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use fake_ad_platform::{self as fake_platform, FakePlatform};
use fluxo::ads::Platforms;
use fluxo::ads::generic::{GenericClient, GenericConfig};
use fluxo::connector::{RetryPolicy, http_client};
use fluxo::optimizer::memory::MemoryStore;
use fluxo::optimizer::{Campaign, EntityKind, GenericEndpoints, Guardrails, Mode, Platform};
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::slack::SlackPreview;
use hourly_optimizer::engine::{Engine, EngineSettings};

const CAMPAIGNS: usize = 10_000;
const CALLS_PER_CAMPAIGN: u32 = 2;
const LATENCY: Duration = Duration::from_millis(50);
const CONCURRENCY: usize = 200;
const PASSES: u32 = 2;
const ARTICLE: &str = r#"{"cpc": 0.50, "conversions": 10, "spend": 50.0, "target_cpa": 4.0}"#;

fn campaign(i: usize, base: &str) -> Campaign {
    Campaign {
        id: format!("c{i}"),
        platform: Platform::Generic,
        account: "bench".into(),
        entity_kind: EntityKind::Campaign,
        entity_id: format!("e{i}"),
        currency: "USD".into(),
        target_cpa_micros: None,
        mode: Mode::Apply,
        guardrails: Guardrails::article_defaults("USD"),
        lookback_days: 7,
        initial_bid_micros: Some(1_000_000),
        conversion_action_types: vec![],
        generic: Some(GenericEndpoints {
            metrics_url: format!("{base}/metrics/c{i}"),
            bid_url: format!("{base}/bids/c{i}"),
        }),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let platform = Arc::new(FakePlatform::new(Some(ARTICLE.to_string()), LATENCY));
        tokio::spawn(fake_platform::serve(listener, platform.clone()));

        let http = http_client(Duration::from_secs(2), Duration::from_secs(30))?;
        let platforms = Platforms {
            google_ads: None,
            meta: None,
            generic: GenericClient::new(http, GenericConfig { token: None, retry: RetryPolicy::default() }),
        };
        let campaigns: Vec<Campaign> = (0..CAMPAIGNS).map(|i| campaign(i, &base)).collect();
        let settings = EngineSettings { concurrency_generic: CONCURRENCY, ..EngineSettings::default() };
        let engine = Engine::new(
            platforms,
            MemoryStore::default(),
            SlackPreview::default(),
            Arc::new(SystemClock),
            Arc::new(ThreadRandomness),
            campaigns,
            settings,
            "bench".into(),
        );
        let floor = LATENCY * (CAMPAIGNS as u32) * CALLS_PER_CAMPAIGN / (CONCURRENCY as u32);
        println!(
            "optimizer run: {CAMPAIGNS} campaigns x {CALLS_PER_CAMPAIGN} calls x {} ms / C={CONCURRENCY} -> floor {:.2} s",
            LATENCY.as_millis(),
            floor.as_secs_f64()
        );
        let mut worst = 0.0f64;
        for pass in 0..PASSES {
            // A new scheduled hour per pass, so the cooldown and the hourly claim let every change through.
            let hour = Utc.with_ymd_and_hms(2026, 11, 27, 10 + pass, 0, 0).single().ok_or("bad hour")?;
            let event = serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": hour.to_rfc3339(), "detail": {}});
            let started = Instant::now();
            let report = hourly_optimizer::handler::handle(&engine, event, &SystemClock).await?;
            let wall = started.elapsed();
            let applied = report["counts"]["applied"].as_u64().unwrap_or(0);
            let failed = report["counts"]["failed"].as_u64().unwrap_or(0);
            let ratio = wall.as_secs_f64() / floor.as_secs_f64();
            worst = worst.max(ratio);
            println!("pass {}: wall {:.2} s = {ratio:.3}x floor ({applied} applied, {failed} failed)", pass + 1, wall.as_secs_f64());
            if applied != CAMPAIGNS as u64 {
                return Err(format!("expected {CAMPAIGNS} changes, got {applied} ({failed} failed)").into());
            }
        }
        let served = platform.bids().len();
        println!("bid requests served: {served}");
        // Every change reached the platform: the wall time measured real calls.
        if served != CAMPAIGNS * PASSES as usize {
            return Err(format!("expected {} bid requests, the platform served {served}", CAMPAIGNS * PASSES as usize).into());
        }
        if worst > 1.25 {
            return Err(format!("wall time {worst:.3}x the floor exceeds 1.25x").into());
        }
        println!("ok: within 1.25x of the floor (worst {worst:.3}x)");
        Ok(())
    })
}
