//! A local stand-in for the generic ad platform (demo and benchmark): serves metrics JSON and accepts bids.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, `Content-Length` bodies) for the optimizer's generic
//! connector. `GET /metrics/<id>` answers the configured JSON for `<id>` (or the default), `POST /bids/<id>`
//! answers `{"ok":true}` and records the body. Every answer waits `delay` first, like a remote platform.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the fake platform answers, and what it received.
#[derive(Debug, Default)]
pub struct FakePlatform {
    /// Metrics JSON by campaign id (the path segment after `/metrics/`).
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

    fn answer(&self, method: &str, path: &str, body: String) -> (u16, String) {
        if method == "GET"
            && let Some(id) = path.strip_prefix("/metrics/")
        {
            return match self.metrics.get(id).or(self.default_metrics.as_ref()) {
                Some(json) => (200, json.clone()),
                None => (404, r#"{"error":"unknown campaign"}"#.to_string()),
            };
        }
        if method == "POST" && path.starts_with("/bids/") {
            if let Ok(mut r) = self.received.lock() {
                r.push((path.to_string(), body));
            }
            return (200, r#"{"ok":true}"#.to_string());
        }
        (404, r#"{"error":"not found"}"#.to_string())
    }
}

/// Serves `platform` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, platform: Arc<FakePlatform>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let platform = platform.clone();
        tokio::spawn(async move {
            // A broken connection only ends that connection.
            let _ = connection(stream, platform).await;
        });
    }
}

async fn connection(stream: TcpStream, platform: Arc<FakePlatform>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        tokio::time::sleep(platform.delay).await;
        let (status, answer) =
            platform.answer(&method, &path, String::from_utf8_lossy(&body).into_owned());
        let reason = if status == 200 { "OK" } else { "Not Found" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        reader.get_mut().write_all(response.as_bytes()).await?;
    }
}
