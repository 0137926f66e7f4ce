//! report-api's render time for 90 days of data: 100,000 leads and 50 campaigns (hourly metrics and
//! journal entries), from decoded facts to the HTML page with every chart; and the Parquet decode of
//! those leads (what a cold instance reads first).
//!
//! The set-up asserts what it built: a benchmark must not quietly measure nothing.

// A set-up failure must stop the benchmark loudly rather than let it measure nothing.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use fluxo::analytics::lake;
use fluxo::analytics::{
    AdMetricRecord, BidChangeRecord, Destination, EffectOutcome, EffectRecord, LeadRecord, Record,
    Table,
};
use report_api::charts::Dashboard;
use report_api::{Facts, Filter};

const DAYS: i64 = 90;
const LEADS: usize = 100_000;
const CAMPAIGNS: usize = 50;

fn facts() -> Facts {
    let start = Utc
        .with_ymd_and_hms(2026, 9, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let sources = ["google", "facebook", "newsletter", "linkedin", "direct"];
    let mut f = Facts::default();
    for i in 0..LEADS {
        let at = start + chrono::Duration::seconds((i as i64 * DAYS * 86_400) / LEADS as i64);
        let id = format!("01L{i:023}");
        f.leads.push(LeadRecord {
            lead_id: id.clone(),
            received_at: at,
            source_kind: "form".into(),
            source_name: None,
            form: Some("contact".into()),
            utm_source: Some(sources[i % 5].into()),
            utm_medium: Some("cpc".into()),
            utm_campaign: Some(format!("campaign-{}", i % CAMPAIGNS)),
            utm_term: None,
            utm_content: None,
            has_gclid: i.is_multiple_of(2),
            has_fbclid: i % 5 == 1,
            campaign_id: None,
            adset_id: None,
            ad_id: None,
            interest: None,
            consent: i % 3 != 0,
            email_fingerprint: format!("{i:032x}"),
        });
        let mut routing = EffectRecord::new(
            at,
            &id,
            Destination::Routing,
            None,
            "route",
            EffectOutcome::Done,
        );
        routing.segment = Some("warm".into());
        f.effects.push(routing);
        let crm = if i.is_multiple_of(50) {
            EffectOutcome::Failed
        } else {
            EffectOutcome::Done
        };
        f.effects.push(EffectRecord::new(
            at,
            &id,
            Destination::Crm,
            None,
            "upsert",
            crm,
        ));
    }
    for c in 0..CAMPAIGNS {
        for h in 0..(DAYS * 24) {
            let at = start + chrono::Duration::hours(h);
            let spend = 100.0 + (h % 24) as f64 * 3.0 + c as f64;
            let conversions = 10.0 + ((h + c as i64) % 7) as f64;
            let campaign = format!("campaign-{c}");
            f.ad_metrics.push(AdMetricRecord {
                metric_id: format!("{c}#{h}"),
                at,
                origin: "optimizer".into(),
                platform: ["google", "meta"][c % 2].into(),
                account: "123".into(),
                campaign_id: campaign.clone(),
                entity_kind: "campaign".into(),
                entity_id: c.to_string(),
                window_start: at.date_naive() - chrono::Days::new(6),
                window_end: at.date_naive(),
                spend,
                clicks: 400,
                conversions,
                cpa: Some(spend / conversions),
                target_cpa: Some(12.0),
                currency: "USD".into(),
            });
            f.bid_changes.push(BidChangeRecord {
                entry_id: format!("{c}#{h}"),
                at,
                run_id: at.to_rfc3339(),
                kind: "evaluation".into(),
                campaign_id: campaign,
                platform: ["google", "meta"][c % 2].into(),
                account: "123".into(),
                entity_kind: "campaign".into(),
                entity_id: c.to_string(),
                mode: "apply".into(),
                config_version: "v1".into(),
                rule: Some("cpa".into()),
                change: (h % 12 == 0).then(|| "set_bid".into()),
                bid_before: Some(1.0),
                bid_after: Some(if h % 12 == 0 { 0.9 } else { 1.0 }),
                cpa: Some(spend / conversions),
                target_cpa: Some(12.0),
                currency: "USD".into(),
                outcome: if h % 12 == 0 {
                    "applied".into()
                } else {
                    "unchanged".into()
                },
                reason: "CPA above target".into(),
            });
        }
    }
    // The daily extract's rows (issue 12): one per campaign per day, read at 03:30 the next day.
    for c in 0..CAMPAIGNS {
        for d in 0..DAYS {
            let at = start + chrono::Duration::days(d + 1) + chrono::Duration::minutes(210);
            let day = (start + chrono::Duration::days(d)).date_naive();
            let spend = 2_400.0 + c as f64;
            f.ad_metrics.push(AdMetricRecord {
                metric_id: format!("daily_extract#google_ads#123#{c}#{day}"),
                at,
                origin: "daily_extract".into(),
                platform: ["google_ads", "meta"][c % 2].into(),
                account: "123".into(),
                campaign_id: c.to_string(),
                entity_kind: "campaign".into(),
                entity_id: c.to_string(),
                window_start: day,
                window_end: day,
                spend,
                clicks: 9_600,
                conversions: 240.0,
                cpa: Some(spend / 240.0),
                target_cpa: None,
                currency: "USD".into(),
            });
        }
    }
    every_chart_has_data(&f);
    f
}

/// Stops the bench before it measures anything if a chart of the 90 days would be empty.
fn every_chart_has_data(facts: &Facts) {
    let filter = Filter {
        from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
        to: NaiveDate::from_ymd_opt(2026, 11, 29).unwrap_or_default(),
        source: None,
    };
    assert_eq!(facts.leads.len(), LEADS, "the set-up made every lead");
    for table in Dashboard::of(facts, &filter).tables {
        assert!(
            !table.rows.is_empty(),
            "chart {} has no data: the bench would measure nothing",
            table.name
        );
    }
}

fn render(c: &mut Criterion) {
    let facts = facts();
    let filter = Filter {
        from: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap_or_default(),
        to: NaiveDate::from_ymd_opt(2026, 11, 29).unwrap_or_default(),
        source: None,
    };
    let page = report_api::page::render(&Dashboard::of(&facts, &filter), "bench");
    assert!(
        page.contains("<svg"),
        "the dashboard rendered no chart: the benchmark would measure an empty page"
    );
    println!("page size: {} KiB", page.len() / 1024);
    let rows: Vec<_> = facts
        .leads
        .iter()
        .cloned()
        .map(Record::Leads)
        .map(|r| r.row())
        .collect();
    let file = lake::write(Table::Leads, &rows).expect("the leads' Parquet file");
    assert_eq!(
        lake::read(file.clone())
            .expect("the Parquet file reads back")
            .len(),
        LEADS,
        "the Parquet file holds every lead"
    );
    println!(
        "100,000 leads as one Parquet file: {} KiB",
        file.len() / 1024
    );
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("render_90_days_100k_leads_50_campaigns", |b| {
        b.iter(|| report_api::page::render(&Dashboard::of(black_box(&facts), &filter), "bench"))
    });
    group.bench_function("decode_parquet_100k_leads", |b| {
        b.iter(|| lake::read(black_box(file.clone())))
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
