//! Export throughput: analytics records grouped by partition and encoded as zstd Parquet files, on one
//! core (the encoding is single-threaded; S3 writes are not measured). Also prints Parquet bytes per
//! 1,000 leads.

use std::hint::black_box;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxo::analytics::{LeadRecord, Record};
use report_export::files_of;

/// `n` leads over three days, with realistic variety.
pub fn leads(n: usize) -> Vec<Record> {
    let sources = ["google", "facebook", "newsletter", "linkedin", "direct"];
    let start = Utc
        .with_ymd_and_hms(2026, 11, 26, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..n)
        .map(|i| {
            Record::Leads(LeadRecord {
                lead_id: format!("01JDX{i:021}"),
                received_at: start
                    + chrono::Duration::seconds((i as i64 * 259_200) / n.max(1) as i64),
                source_kind: if i.is_multiple_of(7) {
                    "meta".into()
                } else {
                    "form".into()
                },
                source_name: Some(format!("site-{}", i % 3)),
                form: Some("contact".into()),
                utm_source: Some(sources[i % sources.len()].into()),
                utm_medium: Some("cpc".into()),
                utm_campaign: Some(format!("campaign-{}", i % 50)),
                utm_term: None,
                utm_content: (i.is_multiple_of(4)).then(|| "banner-a".into()),
                has_gclid: i.is_multiple_of(2),
                has_fbclid: i.is_multiple_of(5),
                campaign_id: Some(format!("{}", 1_000_000 + i % 50)),
                adset_id: None,
                ad_id: None,
                interest: Some(["demo", "pricing", "support"][i % 3].into()),
                consent: i % 3 != 0,
                email_fingerprint: format!(
                    "{:032x}",
                    (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
            })
        })
        .collect()
}

fn export(c: &mut Criterion) {
    let records = leads(10_000);
    if let Ok(files) = files_of(&records, "bench") {
        let bytes: usize = files.iter().map(|f| f.body.len()).sum();
        println!(
            "Parquet (zstd) bytes per 1,000 leads: {} ({} files, {} rows)",
            bytes * 1000 / records.len(),
            files.len(),
            records.len()
        );
    }
    let mut group = c.benchmark_group("export");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.measurement_time(Duration::from_secs(10));
    group.sample_size(10);
    group.bench_function("10k_leads_to_parquet", |b| {
        b.iter(|| files_of(black_box(&records), "bench"))
    });
    group.finish();
}

criterion_group!(benches, export);
criterion_main!(benches);
