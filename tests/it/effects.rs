//! The lake's `effects` table gets a row from email-trigger and audience-sync too (issue 12): on the local
//! stack, a form post with consent is enrolled in its sequence and added to its audience, and each of
//! those effects leaves exactly one `effects` row in the lake, written by report-export from the
//! analytics queue.

use std::time::{Duration, Instant};

use chrono::Utc;
use fluxo::adapters::s3::{Fetched, S3Objects};
use fluxo::analytics::lake;
use serde_json::{Map, Value, json};
use xtask::stack::StackInfo;

use crate::support;

/// Every `effects` row of today's partition about this lead.
async fn effects_of(s3: &S3Objects, bucket: &str, lead_id: &str) -> Vec<Map<String, Value>> {
    let dt = Utc::now().date_naive().format("%Y-%m-%d").to_string();
    let mut rows = Vec::new();
    for o in s3
        .list(bucket, &format!("effects/dt={dt}/"), None)
        .await
        .unwrap()
    {
        if let Ok(Fetched::Object { body, .. }) = s3.get(bucket, &o.key, None).await {
            rows.extend(
                lake::read(body)
                    .unwrap()
                    .into_iter()
                    .filter(|r| r["lead_id"] == lead_id),
            );
        }
    }
    rows
}

fn of<'a>(rows: &'a [Map<String, Value>], destination: &str) -> Vec<&'a Map<String, Value>> {
    rows.iter()
        .filter(|r| r["destination"] == destination)
        .collect()
}

#[tokio::test]
async fn an_enrollment_and_an_audience_add_each_leave_exactly_one_effects_row_in_the_lake() {
    let email = format!(
        "effects-{}@exemplo.com",
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    // tests/e2e/fluxo.toml: "Software A" -> sequence nutricao_interesse_software_a (email-trigger,
    // Mailchimp in dry-run); every lead -> audience leads_qualificados (audience-sync, Meta in dry-run).
    let posted = reqwest::Client::new()
        .post(format!("{}/leads", support::api_url()))
        .json(
            &json!({"email": email, "nome": "Ana", "interesse": "Software A",
                      "origem": "effects-test", "consent": "yes"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    let lead_id = posted.json::<Value>().await.unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sdk = support::sdk().await;
    let info = StackInfo::load_from_env().unwrap();
    let s3 = S3Objects::from_sdk_config(&sdk).unwrap();
    let bucket = info.bucket("LakeBucket").unwrap().to_string();
    let deadline = Instant::now() + xtask::demo_reports::LAKE_WAIT;
    let rows = loop {
        let rows = effects_of(&s3, &bucket, &lead_id).await;
        if !of(&rows, "email").is_empty() && of(&rows, "audience").len() >= 2 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "lead {lead_id}: no email and audience effects rows in time; rows: {rows:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let email_rows = of(&rows, "email");
    assert_eq!(email_rows.len(), 1, "one enrollment row: {email_rows:?}");
    let row = email_rows[0];
    assert_eq!(row["vendor"], "mailchimp");
    assert_eq!(row["target"], "nutricao_interesse_software_a");
    assert_eq!(row["action"], "enroll");
    assert_eq!(row["outcome"], "done");
    assert!(
        row["latency_ms"].as_i64().is_some(),
        "latency recorded: {row:?}"
    );
    // leads_qualificados lives on Meta and on Google: one add each, one row each.
    let audience_rows = of(&rows, "audience");
    for vendor in ["meta", "google"] {
        let mine: Vec<_> = audience_rows
            .iter()
            .filter(|r| r["vendor"] == vendor)
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "one {vendor} audience row: {audience_rows:?}"
        );
        assert_eq!(mine[0]["target"], "leads_qualificados");
        assert_eq!(mine[0]["action"], "add");
        assert_eq!(mine[0]["outcome"], "done");
    }
    assert_eq!(audience_rows.len(), 2, "{audience_rows:?}");
    let text = serde_json::to_string(&rows).unwrap();
    assert!(!text.contains(&email), "no raw email in the lake: {text}");
}
