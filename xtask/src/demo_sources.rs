//! Demo step for the signed lead sources: a signed Meta lead-ad notification becomes a lead through a
//! local fake Graph API (wiremock, inside xtask), and the same notification with a bad signature is
//! refused. Its secrets are put into (moto) SSM before the functions start (`put_secrets`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use fluxo::envelope::LeadEnvelope;
use fluxo::sources::meta_lead_ads::request as meta;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::demo::{DemoContext, Step};

/// The demo source's name (its route is `/leads/demo-meta`), as in `config/examples/demo.toml`.
const SOURCE: &str = "demo-meta";
/// The fake Graph API's address, as `graph_url` in `config/examples/demo.toml` names it.
const GRAPH_ADDR: &str = "127.0.0.1:4591";
const APP_SECRET: &str = "demo-meta-app-secret";
const VERIFY_TOKEN: &str = "demo-verify-token";
const PAGE_TOKEN: &str = "demo-page-token";
const LEADGEN_ID: &str = "900000000001";

/// The demo step: listed first in `demo::steps()`.
pub fn step() -> Step {
    Step {
        title: "A signed Meta lead-ad notification becomes a lead (fake Graph API); a bad signature is refused",
        run: |ctx| Box::pin(run(ctx)),
    }
}

/// Puts the demo source's secrets into (moto) SSM. The demo calls it before the functions start, as a
/// deploy has its parameters in place before the first request.
pub async fn put_secrets(sdk: &aws_config::SdkConfig) -> Result<()> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    for (name, value) in [
        ("app-secret", APP_SECRET),
        ("verify-token", VERIFY_TOKEN),
        ("page-token", PAGE_TOKEN),
    ] {
        ssm.put_parameter()
            .name(format!("/fluxo/sources/{SOURCE}/{name}"))
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .with_context(|| format!("putting the demo source's {name} into SSM"))?;
    }
    Ok(())
}

async fn fake_graph() -> Result<MockServer> {
    let listener = std::net::TcpListener::bind(GRAPH_ADDR)
        .with_context(|| format!("the fake Graph API needs {GRAPH_ADDR}"))?;
    let server = MockServer::builder().listener(listener).start().await;
    let lead = serde_json::json!({
        "id": LEADGEN_ID,
        "created_time": "2026-11-28T10:00:00+0000",
        "ad_id": "600000000001",
        "adset_id": "700000000001",
        "campaign_id": "800000000001",
        "form_id": "500000000001",
        "field_data": [
            {"name": "email", "values": ["marina.lead@exemplo.com"]},
            {"name": "full_name", "values": ["Marina Costa"]},
            {"name": "phone_number", "values": ["+5511912345678"]},
            {"name": "qual_o_seu_orcamento?", "values": ["10-20k"]}
        ],
        "custom_disclaimer_responses": [{"checkbox_key": "marketing", "is_checked": "1"}]
    });
    Mock::given(method("GET"))
        .and(path(format!("/v25.0/{LEADGEN_ID}")))
        .and(query_param("access_token", PAGE_TOKEN))
        .and(query_param("fields", meta::LEAD_FIELDS))
        .respond_with(ResponseTemplate::new(200).set_body_json(lead))
        .mount(&server)
        .await;
    Ok(server)
}

fn notification() -> String {
    serde_json::json!({
        "object": "page",
        "entry": [{"id": "100000000001", "time": 1_764_324_000, "changes": [{"field": "leadgen", "value": {
            "leadgen_id": LEADGEN_ID, "page_id": "100000000001", "form_id": "500000000001",
            "ad_id": "600000000001", "adgroup_id": "700000000001", "created_time": 1_764_324_000
        }}]}]
    })
    .to_string()
}

async fn run(ctx: &mut DemoContext<'_>) -> Result<()> {
    let graph = fake_graph().await?;
    let url = format!("{}/leads/{SOURCE}", ctx.stack.api_url);

    let handshake = ctx
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        ))
        .send()
        .await?;
    let status = handshake.status();
    let challenge = handshake.text().await?;
    println!("  GET  /leads/{SOURCE} (Meta's subscription handshake) -> {status} {challenge}");
    if challenge != "1158201444" {
        bail!("the handshake did not echo the challenge");
    }

    let body = notification();
    let signature = meta::sign(APP_SECRET.as_bytes(), body.as_bytes());
    let response = ctx
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &signature)
        .body(body.clone())
        .send()
        .await?;
    println!(
        "  POST /leads/{SOURCE} signed notification (leadgen_id {LEADGEN_ID}) -> {} {}",
        response.status(),
        response.text().await?
    );

    let sweep = crate::esm::invoke(
        &ctx.http,
        &ctx.stack.invoke_url,
        "webhook-receiver",
        &crate::esm::scheduled_event_now("Sweep"),
        Duration::from_secs(60),
    )
    .await?;
    println!(
        "  receiver sweep (schedule) -> {}",
        String::from_utf8_lossy(&sweep.body)
    );
    let fetched = graph.received_requests().await.unwrap_or_default().len();
    println!(
        "  fake Graph API served {fetched} lead fetch(es) (GET /v25.0/{LEADGEN_ID}, Page token)"
    );

    let lead = find_lead(ctx).await?;
    let l = &lead.lead;
    println!(
        "  lead {}: email {} | source {} | campaign {} | ad set {} | ad {} | consent {} | budget {}",
        lead.lead_id,
        crate::demo::mask_email(l.email.as_str()),
        l.source.as_deref().unwrap_or("-"),
        l.ad.campaign_id.as_deref().unwrap_or("-"),
        l.ad.adset_id.as_deref().unwrap_or("-"),
        l.ad.ad_id.as_deref().unwrap_or("-"),
        l.has_marketing_consent(),
        l.custom
            .get("qual_o_seu_orcamento")
            .map_or("-", String::as_str),
    );
    ctx.accepted.push(lead.lead_id.to_string());

    let forged = meta::sign(b"not-the-app-secret", body.as_bytes());
    let refused = ctx
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", forged)
        .body(body)
        .send()
        .await?;
    let status = refused.status();
    println!(
        "  POST /leads/{SOURCE} same notification, bad signature -> {status} {}",
        refused.text().await?
    );
    if status != reqwest::StatusCode::UNAUTHORIZED {
        bail!("a notification with a bad signature was not refused with 401");
    }
    Ok(())
}

/// The stored lead whose Meta lead id is the demo's.
async fn find_lead(ctx: &DemoContext<'_>) -> Result<LeadEnvelope> {
    let table = ctx
        .stack
        .info
        .table("LeadsTable")
        .context("the stack has no LeadsTable")?;
    let items = ctx
        .ddb
        .scan()
        .table_name(table)
        .send()
        .await?
        .items
        .unwrap_or_default();
    for item in items {
        let Some(AttributeValue::S(envelope)) = item.get("envelope") else {
            continue;
        };
        if let Ok(envelope) = LeadEnvelope::from_json(envelope)
            && envelope.lead.ad.lead_id.as_deref() == Some(LEADGEN_ID)
        {
            return Ok(envelope);
        }
    }
    bail!("no lead was stored for leadgen_id {LEADGEN_ID}: see the receiver's log")
}
