//! A local stand-in for the generic ad platform (the demo and the optimizer benchmark), served by axum.
//!
//! `GET /metrics/<id>` answers the configured JSON for `<id>` (or the default, else 404), `POST /bids/<id>`
//! answers `{"ok":true}` and records the path and body; anything else is 404. Every answer waits `delay`
//! first, like a remote platform.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

/// What the fake platform answers, and what it received.
#[derive(Debug, Default)]
pub struct FakePlatform {
    /// Metrics JSON by campaign id (the path after `/metrics/`).
    pub metrics: HashMap<String, String>,
    /// Answer for ids not in `metrics`.
    pub default_metrics: Option<String>,
    /// Wait before every answer.
    pub delay: Duration,
    received: Mutex<Vec<(String, String)>>,
}

impl FakePlatform {
    /// A platform answering `default_metrics` for every campaign after `delay`.
    pub fn new(default_metrics: Option<String>, delay: Duration) -> Self {
        FakePlatform {
            metrics: HashMap::new(),
            default_metrics,
            delay,
            received: Mutex::new(Vec::new()),
        }
    }

    /// The bid requests received so far: (path, body).
    pub fn bids(&self) -> Vec<(String, String)> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The platform's routes.
pub fn router(platform: Arc<FakePlatform>) -> Router {
    Router::new()
        .route("/metrics/{*id}", get(metrics))
        .route("/bids/{*id}", post(bid))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(platform)
}

/// Serves `platform` on `listener` until the task is dropped (or the listener fails).
pub async fn serve(listener: TcpListener, platform: Arc<FakePlatform>) {
    let _ = axum::serve(listener, router(platform)).await;
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(platform): State<Arc<FakePlatform>>, Path(id): Path<String>) -> Response {
    tokio::time::sleep(platform.delay).await;
    match platform
        .metrics
        .get(&id)
        .or(platform.default_metrics.as_ref())
    {
        Some(body) => json(StatusCode::OK, body.clone()),
        None => json(
            StatusCode::NOT_FOUND,
            r#"{"error":"unknown campaign"}"#.into(),
        ),
    }
}

async fn bid(State(platform): State<Arc<FakePlatform>>, uri: Uri, body: Bytes) -> Response {
    tokio::time::sleep(platform.delay).await;
    if let Ok(mut received) = platform.received.lock() {
        received.push((
            uri.path().to_string(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    json(StatusCode::OK, r#"{"ok":true}"#.into())
}

async fn not_found(State(platform): State<Arc<FakePlatform>>) -> Response {
    tokio::time::sleep(platform.delay).await;
    json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(platform: FakePlatform) -> (String, Arc<FakePlatform>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let platform = Arc::new(platform);
        tokio::spawn(serve(listener, platform.clone()));
        (base, platform)
    }

    #[tokio::test]
    async fn answers_each_campaigns_metrics_or_the_default() {
        let mut p = FakePlatform::new(Some(r#"{"cpc":1}"#.into()), Duration::ZERO);
        p.metrics.insert("article".into(), r#"{"cpc":0.5}"#.into());
        let (base, _) = start(p).await;
        let http = reqwest::Client::new();
        let article = http
            .get(format!("{base}/metrics/article"))
            .send()
            .await
            .unwrap();
        assert_eq!(article.status(), 200);
        assert_eq!(article.headers()["content-type"], "application/json");
        assert_eq!(article.text().await.unwrap(), r#"{"cpc":0.5}"#);
        let other = http.get(format!("{base}/metrics/c7")).send().await.unwrap();
        assert_eq!(other.text().await.unwrap(), r#"{"cpc":1}"#);
    }

    #[tokio::test]
    async fn an_unknown_campaign_or_path_is_404() {
        let (base, _) = start(FakePlatform::new(None, Duration::ZERO)).await;
        let http = reqwest::Client::new();
        let unknown = http
            .get(format!("{base}/metrics/nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
        assert_eq!(
            unknown.text().await.unwrap(),
            r#"{"error":"unknown campaign"}"#
        );
        let elsewhere = http.get(format!("{base}/bids/x")).send().await.unwrap();
        assert_eq!(elsewhere.status(), 404, "bids are POSTed");
    }

    #[tokio::test]
    async fn records_every_bid_with_its_path_and_body() {
        let (base, platform) = start(FakePlatform::new(None, Duration::ZERO)).await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/bids/c1"))
            .body(r#"{"bid":0.48}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"ok":true}"#);
        assert_eq!(
            platform.bids(),
            vec![("/bids/c1".to_string(), r#"{"bid":0.48}"#.to_string())]
        );
    }

    #[tokio::test]
    async fn waits_the_delay_before_answering() {
        let (base, _) = start(FakePlatform::new(
            Some("{}".into()),
            Duration::from_millis(150),
        ))
        .await;
        let started = std::time::Instant::now();
        reqwest::get(format!("{base}/metrics/x")).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
