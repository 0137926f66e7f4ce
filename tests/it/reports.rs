//! Unified reporting on the local stack: report-export's Parquet files on moto's S3 read back by an
//! independent reader (pyarrow), the Glue tables against the Parquet schema, an accepted lead reaching
//! the lake through the analytics queue, and the dashboard (access control, filters, headless Chromium).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use fluxo::adapters::s3::{Fetched, S3Objects};
use fluxo::analytics::lake::{self, Kind};
use fluxo::analytics::{
    AdMetricRecord, Batch, BidChangeRecord, Destination, EffectOutcome, EffectRecord, LeadRecord,
    Record, Table,
};
use serde_json::{Map, Value, json};
use xtask::stack::StackInfo;

use crate::support;

fn lead(i: usize, at: DateTime<Utc>, source: &str) -> LeadRecord {
    LeadRecord {
        lead_id: format!("01REPORTLEAD{}{i:06}", at.timestamp()),
        received_at: at + chrono::Duration::microseconds(i as i64 * 1_001),
        source_kind: "form".into(),
        source_name: (i % 2 == 1).then(|| "site".to_string()),
        form: Some("contact".into()),
        utm_source: Some(source.into()),
        utm_medium: Some("cpc".into()),
        utm_campaign: Some("brand".into()),
        utm_term: None,
        utm_content: i.is_multiple_of(3).then(|| "banner, \"a\"".to_string()),
        has_gclid: i.is_multiple_of(2),
        has_fbclid: false,
        campaign_id: Some("1234".into()),
        adset_id: None,
        ad_id: None,
        interest: Some("Software A".into()),
        consent: i.is_multiple_of(2),
        email_fingerprint: format!("{:032x}", i * 7919),
    }
}

/// One record of each kind per lead, plus a campaign's metrics and journal entry, at `at`.
fn records(at: DateTime<Utc>, leads: usize, source: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..leads {
        let l = lead(i, at, source);
        let mut routing = EffectRecord::new(
            at,
            &l.lead_id,
            Destination::Routing,
            Some("warm"),
            "route",
            EffectOutcome::Done,
        );
        routing.segment = Some("warm".into());
        routing.score = Some(40);
        let crm = if i == 0 {
            EffectRecord::new(
                at,
                &l.lead_id,
                Destination::Crm,
                None,
                "upsert",
                EffectOutcome::Failed,
            )
            .vendor("rest")
            .timing(3, Duration::from_millis(420))
            .failure(fluxo::ErrorClass::Permanent, "rejected")
        } else {
            EffectRecord::new(
                at,
                &l.lead_id,
                Destination::Crm,
                None,
                "upsert",
                EffectOutcome::Done,
            )
            .vendor("rest")
            .timing(1, Duration::from_millis(180))
        };
        out.extend([
            Record::Leads(l),
            Record::Effects(routing),
            Record::Effects(crm),
        ]);
    }
    for (k, hour) in [0i64, 1].into_iter().enumerate() {
        let t = at + chrono::Duration::hours(hour);
        out.push(Record::AdMetrics(AdMetricRecord {
            metric_id: format!("google#123#555#{}#{hour}", at.timestamp()),
            at: t,
            origin: "optimizer".into(),
            platform: "google".into(),
            account: "123".into(),
            campaign_id: "brand-search".into(),
            entity_kind: "campaign".into(),
            entity_id: "555".into(),
            window_start: t.date_naive() - chrono::Days::new(6),
            window_end: t.date_naive(),
            spend: 150.25 + k as f64,
            clicks: 300,
            conversions: 10.5,
            cpa: Some(14.31),
            target_cpa: Some(12.0),
            currency: "USD".into(),
        }));
        out.push(Record::BidChanges(BidChangeRecord {
            entry_id: format!("01ENTRY{}{hour}", at.timestamp()),
            at: t,
            run_id: t.to_rfc3339(),
            kind: "evaluation".into(),
            campaign_id: "brand-search".into(),
            platform: "google".into(),
            account: "123".into(),
            entity_kind: "campaign".into(),
            entity_id: "555".into(),
            mode: "dry_run".into(),
            config_version: "v1".into(),
            rule: Some("cpa_above_target".into()),
            change: Some("set_bid".into()),
            bid_before: Some(1.0),
            bid_after: Some(0.9),
            cpa: Some(14.31),
            target_cpa: Some(12.0),
            currency: "USD".into(),
            outcome: "dry_run".into(),
            reason: "CPA 14.31 above 1.2 x target".into(),
        }));
    }
    out
}

/// An SQS event of the records packed as the functions pack them, with fixed message ids.
fn sqs_event(records: &[Record], id_prefix: &str) -> Value {
    let batch = Batch::pack(records);
    let messages: Vec<Value> = batch
        .messages
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("{id_prefix}-{i}"),
                "receiptHandle": format!("rh-{id_prefix}-{i}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:AnalyticsQueue",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": messages })
}

async fn invoke_export(event: &Value) -> Value {
    let invoke = std::env::var(xtask::stack::ENV_INVOKE_URL).expect("the invoke URL");
    let response = reqwest::Client::new()
        .post(format!(
            "{invoke}/2015-03-31/functions/report-export/invocations"
        ))
        .timeout(Duration::from_secs(120))
        .json(event)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

async fn lake() -> (S3Objects, String) {
    let sdk = support::sdk().await;
    let info = StackInfo::load_from_env().unwrap();
    (
        S3Objects::from_sdk_config(&sdk).unwrap(),
        info.bucket("LakeBucket").unwrap().to_string(),
    )
}

/// A day of its own for one test run (the lake bucket is shared by the tests).
fn unique_day(offset: i64) -> DateTime<Utc> {
    let days = (Utc::now().timestamp_millis() / 7) % 3000 + offset;
    Utc.with_ymd_and_hms(2001, 1, 1, 9, 30, 0).unwrap() + chrono::Duration::days(days)
}

/// The pyarrow reading of one Parquet file: its rows (timestamps as epoch micros, dates ISO) and the
/// compression codec of its columns.
fn pyarrow_rows(file: &[u8]) -> (Vec<Map<String, Value>>, Vec<String>) {
    let dir = xtask::paths::root().join("target").join("reports-it");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.parquet", fastrand_name()));
    std::fs::write(&path, file).unwrap();
    let script = r#"
import datetime, json, sys
import pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
codecs = sorted({f.metadata.row_group(0).column(i).compression for i in range(f.metadata.num_columns)})
epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def norm(v):
    if isinstance(v, datetime.datetime):
        return (v - epoch) // datetime.timedelta(microseconds=1)
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v
rows = [{k: norm(v) for k, v in r.items()} for r in f.read().to_pylist()]
print(json.dumps({"codecs": codecs, "rows": rows}))
"#;
    let out = std::process::Command::new(xtask::venv::TOOLS.bin("python"))
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();
    let codecs = v["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (rows, codecs)
}

fn fastrand_name() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    )
}

/// A record's row as pyarrow gives it: timestamps as epoch micros.
fn expected_row(table: Table, record: &Record) -> Map<String, Value> {
    let mut row = record.row();
    for c in lake::columns(table) {
        if c.kind == Kind::Timestamp
            && let Some(Value::String(s)) = row.get(c.name)
        {
            let micros = DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
            row.insert(c.name.to_string(), Value::from(micros));
        }
    }
    row
}

#[tokio::test]
async fn parquet_files_written_on_moto_read_back_row_for_row_with_pyarrow_and_a_redelivery_overwrites()
 {
    let day = unique_day(0);
    let records = records(day, 25, "google");
    let event = sqs_event(&records, &format!("readback-{}", day.timestamp()));
    let answer = invoke_export(&event).await;
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");

    let (s3, bucket) = lake().await;
    let dt = day.date_naive().format("%Y-%m-%d").to_string();
    let mut keys = Vec::new();
    for table in Table::ALL {
        let listed = s3
            .list(&bucket, &format!("{}/dt={dt}/", table.name()), None)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "one file for {} on {dt}", table.name());
        let key = listed[0].key.clone();
        assert!(key.ends_with(".zstd.parquet"), "{key}");
        let Fetched::Object { body, .. } = s3.get(&bucket, &key, None).await.unwrap() else {
            panic!("{key} is gone");
        };
        let (rows, codecs) = pyarrow_rows(&body);
        assert_eq!(codecs, ["ZSTD"], "{key}");
        let expected: Vec<Map<String, Value>> = records
            .iter()
            .filter(|r| r.table() == table)
            .map(|r| expected_row(table, r))
            .collect();
        assert_eq!(rows.len(), expected.len(), "{key}");
        for (got, want) in rows.iter().zip(&expected) {
            assert_eq!(got, want, "{key}");
        }
        keys.push(key);
    }

    // The same batch again (SQS redelivers it): the same keys are overwritten, nothing is added.
    let answer = invoke_export(&event).await;
    assert_eq!(answer["batchItemFailures"], json!([]));
    for (table, key) in Table::ALL.into_iter().zip(&keys) {
        let listed = s3
            .list(&bucket, &format!("{}/dt={dt}/", table.name()), None)
            .await
            .unwrap();
        let now: Vec<&str> = listed.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(now, [key.as_str()]);
    }
}

#[tokio::test]
async fn a_message_that_is_not_analytics_is_reported_alone_and_the_rest_is_written() {
    let day = unique_day(1);
    let mut event = sqs_event(
        &records(day, 2, "bing"),
        &format!("mixed-{}", day.timestamp()),
    );
    let mut bad = event["Records"][0].clone();
    bad["messageId"] = json!("not-analytics");
    bad["body"] = json!("{\"email\":\"ana@example.com\"}");
    event["Records"].as_array_mut().unwrap().push(bad);
    let answer = invoke_export(&event).await;
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "not-analytics"}])
    );
    let (s3, bucket) = lake().await;
    let dt = day.date_naive().format("%Y-%m-%d").to_string();
    assert_eq!(
        s3.list(&bucket, &format!("leads/dt={dt}/"), None)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn the_glue_tables_columns_match_the_parquet_schema() {
    let text = std::fs::read_to_string(xtask::paths::template()).unwrap();
    let template: Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut seen = BTreeMap::new();
    for (id, r) in template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Glue::Table")
    {
        let input = &r["Properties"]["TableInput"];
        let name = input["Name"].as_str().unwrap();
        let table = Table::from_name(name).unwrap_or_else(|| panic!("{id}: no lake table {name}"));
        let columns: Vec<(String, String)> = input["StorageDescriptor"]["Columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_string(),
                    c["Type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let parquet: Vec<(String, String)> = lake::columns(table)
            .iter()
            .map(|c| (c.name.to_string(), c.kind.glue_type().to_string()))
            .collect();
        assert_eq!(columns, parquet, "{id}");
        assert_eq!(input["PartitionKeys"][0]["Name"], lake::PARTITION_COLUMN);
        assert_eq!(input["Parameters"]["projection.enabled"], "true");
        assert_eq!(input["Parameters"]["projection.dt.format"], "yyyy-MM-dd");
        let location = input["Parameters"]["storage.location.template"]["Fn::Sub"]
            .as_str()
            .unwrap();
        assert_eq!(
            location,
            format!("s3://${{LakeBucket}}/{name}/dt=${{!dt}}/")
        );
        seen.insert(name.to_string(), id.clone());
    }
    let mut all: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    all.sort_unstable();
    assert_eq!(seen.keys().map(String::as_str).collect::<Vec<_>>(), all);
}

#[tokio::test]
async fn an_accepted_lead_reaches_the_lake_through_the_analytics_queue() {
    let email = format!(
        "lake-{}@exemplo.com",
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let posted = reqwest::Client::new()
        .post(format!("{}/leads", support::api_url()))
        .json(&json!({"email": email, "name": "Ana", "utm_source": "lake-test", "consent": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    let lead_id = posted.json::<Value>().await.unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s3, bucket) = lake().await;
    let dt = Utc::now().date_naive().format("%Y-%m-%d").to_string();
    let deadline = Instant::now() + xtask::demo_reports::LAKE_WAIT;
    loop {
        let mut found = None;
        for o in s3
            .list(&bucket, &format!("leads/dt={dt}/"), None)
            .await
            .unwrap()
        {
            if let Ok(Fetched::Object { body, .. }) = s3.get(&bucket, &o.key, None).await {
                let rows = lake::read(body).unwrap();
                found = found.or(rows.into_iter().find(|r| r["lead_id"] == lead_id.as_str()));
            }
        }
        if let Some(row) = found {
            assert_eq!(row["utm_source"], "lake-test");
            assert_eq!(row["consent"], true);
            let text = serde_json::to_string(&row).unwrap();
            assert!(!text.contains(&email), "no raw email in the lake: {text}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lead {lead_id} never reached the lake"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn token() -> String {
    xtask::local::local_report_token()
}

#[tokio::test]
async fn the_dashboard_refuses_requests_without_the_secret() {
    let api = support::api_url();
    let client = reqwest::Client::new();
    for auth in [
        None,
        Some("Bearer wrong-token-of-some-length"),
        Some("Basic Zm9vOmJhcg=="),
    ] {
        let mut request = client.get(format!("{api}/reports/funnel.json"));
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{auth:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body = response.text().await.unwrap();
        assert!(!body.contains("rows"), "{body}");
    }
}

#[tokio::test]
async fn bad_filters_are_a_400_that_names_the_problem_and_never_echoes_the_input() {
    let api = support::api_url();
    let client = reqwest::Client::new();
    for (query, want) in [
        ("from=%3Cscript%3E", "from must be a date"),
        ("from=2026-11-10&to=2026-11-01", "from must not be after to"),
        ("source=%3Cimg%20src%3Dx%3E", "source must be"),
        ("%3Cb%3E=1", "unknown query parameter"),
    ] {
        let response = client
            .get(format!("{api}/reports?{query}"))
            .bearer_auth(token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body = response.text().await.unwrap();
        assert!(body.contains(want), "{query}: {body}");
        assert!(!body.contains('<'), "{query}: {body}");
    }
}

#[tokio::test]
async fn the_dashboard_renders_every_chart_with_data_in_headless_chromium() {
    // Today's facts through the real export (the demo's flows add theirs the same way).
    let now = Utc::now() - chrono::Duration::hours(2);
    let mut facts = records(now, 12, "google");
    facts.extend(records(now - chrono::Duration::days(1), 8, "newsletter"));
    let answer = invoke_export(&sqs_event(&facts, &format!("dash-{}", now.timestamp()))).await;
    assert_eq!(answer["batchItemFailures"], json!([]));

    let api = support::api_url();
    let client = reqwest::Client::new();
    for name in report_api::charts::NAMES {
        let response = client
            .get(format!("{api}/reports/{name}.json"))
            .bearer_auth(token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let body: Value = response.json().await.unwrap();
        assert!(
            !body["rows"].as_array().unwrap().is_empty(),
            "{name} has no data: {body}"
        );
        let csv = client
            .get(format!("{api}/reports/{name}.csv"))
            .bearer_auth(token())
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status().as_u16(), 200);
        assert!(csv.text().await.unwrap().lines().count() >= 2, "{name}.csv");
    }

    let screenshot = xtask::paths::root()
        .join("target")
        .join("reports")
        .join("dashboard-it.png");
    let url = xtask::demo_reports::authenticated_url(&api, &token(), "/reports");
    let page = xtask::demo_reports::open_page(&url, &screenshot)
        .await
        .unwrap();
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    assert!(page.dom.contains("Fluxo reports"), "{}", page.dom);
    assert!(
        !page.dom.contains("No data in this range"),
        "a chart is empty"
    );
    assert!(!page.dom.contains("<script"), "the page has no script");
    for name in report_api::charts::NAMES {
        assert!(page.dom.contains(&format!("id=\"{name}\"")), "{name}");
    }
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
