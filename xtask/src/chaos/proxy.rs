//! A small HTTP/1.1 fault proxy on tokio: one request per connection, each forwarded to an upstream (a
//! wiremock vendor fake, or moto), or failed the way a [`Plan`] decides: an HTTP error, a connection
//! reset before or after the upstream took the request, a stall, a malformed body, or a process kill
//! after the upstream took the request. wiremock answers HTTP but cannot reset a connection or fail
//! after its own effect, hence this proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The head and body of one proxied request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address (who called: `cargo xtask cost` finds the calling process from it).
    pub peer: Option<std::net::SocketAddr>,
}

impl Request {
    /// A header value, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to do after the upstream took the request (its effect happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Hold the answer past the client's timeout, then drop the connection.
    Stall(Duration),
    /// Replace the body with bytes that are not the vendor's format.
    Malformed,
    /// Reset the connection instead of answering.
    Reset,
    /// Run the plan's kill hook (SIGKILL the calling function), then drop the connection.
    Kill,
}

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Answer without forwarding: the upstream never sees the request.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Reset the connection without forwarding.
    Reset,
    /// Wait, then forward.
    Stall(Duration),
    /// Forward, then fail the answer.
    Then(After),
}

impl Action {
    /// A short label for the tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Forward => "forwarded",
            Action::Respond {
                status, headers, ..
            } => match status {
                429 if headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("retry-after")) =>
                {
                    "429 with Retry-After"
                }
                429 => "429 without Retry-After",
                s if *s >= 500 => "5xx",
                _ => "error status",
            },
            Action::Reset => "connection reset",
            Action::Stall(_) => "stalled, then forwarded",
            Action::Then(After::Stall(_)) => "slow answer after the effect",
            Action::Then(After::Malformed) => "malformed body after the effect",
            Action::Then(After::Reset) => "reset after the effect",
            Action::Then(After::Kill) => "function killed after the effect",
        }
    }
}

/// Decides each request's fate. Shared by every connection.
pub trait Plan: Send + Sync + 'static {
    fn decide(&self, request: &Request) -> Action;
    /// Called for [`After::Kill`], after the upstream answered.
    fn kill(&self) {}
    /// Called with each decision, for tallies.
    fn record(&self, _request: &Request, _action: &Action) {}
    /// Called with the upstream's answer (status and body) to a forwarded request, before the proxy
    /// passes it on (`cargo xtask cost` reads the items a DynamoDB read returned).
    fn answered(&self, _request: &Request, _status: u16, _body: &[u8]) {}
}

/// A running proxy. Dropping it stops it.
pub struct Proxy {
    pub url: String,
    pub handled: Arc<AtomicU64>,
    tasks: JoinSet<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (`port` 0: any free port) and forwards to `upstream` (`http://host:port`).
    pub async fn start(port: u16, upstream: &str, plan: Arc<dyn Plan>) -> Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("fault proxy cannot listen on 127.0.0.1:{port}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(120))
            .build()?;
        let upstream = upstream.trim_end_matches('/').to_string();
        let handled = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let count = handled.clone();
        tasks.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let plan = plan.clone();
                let http = http.clone();
                let upstream = upstream.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = serve(stream, &http, &upstream, plan.as_ref()).await;
                });
            }
        });
        Ok(Proxy {
            url,
            handled,
            tasks,
        })
    }

    /// Stops accepting.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Largest request the proxy reads.
const MAX_REQUEST: usize = 8 * 1024 * 1024;

async fn serve(
    mut stream: TcpStream,
    http: &reqwest::Client,
    upstream: &str,
    plan: &dyn Plan,
) -> Result<()> {
    let mut request = read_request(&mut stream).await?;
    request.peer = stream.peer_addr().ok();
    let action = plan.decide(&request);
    plan.record(&request, &action);
    match &action {
        Action::Respond {
            status,
            headers,
            body,
        } => {
            write_response(&mut stream, *status, headers, body.as_bytes()).await?;
            return Ok(());
        }
        Action::Reset => {
            reset(stream);
            return Ok(());
        }
        Action::Stall(d) => tokio::time::sleep(*d).await,
        Action::Forward | Action::Then(_) => {}
    }
    let (status, headers, body) = forward(http, upstream, &request).await?;
    plan.answered(&request, status, &body);
    match action {
        Action::Then(After::Stall(d)) => {
            tokio::time::sleep(d).await;
            drop(stream);
        }
        Action::Then(After::Malformed) => {
            write_response(&mut stream, status, &headers, b"<html>\x00\xff{\"id\": ").await?;
        }
        Action::Then(After::Reset) => reset(stream),
        Action::Then(After::Kill) => {
            plan.kill();
            reset(stream);
        }
        _ => write_response(&mut stream, status, &headers, &body).await?,
    }
    Ok(())
}

/// Closes with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn read_request(stream: &mut TcpStream) -> Result<Request> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the request head");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            bail!("request head too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            if let Some(decoded) = dechunk(&body) {
                body = decoded;
                break;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 || body.len() > MAX_REQUEST {
                bail!("chunked body ended early");
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if len > MAX_REQUEST {
            bail!("request body too large");
        }
        while body.len() < len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed in the body");
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    }
    Ok(Request {
        method,
        path,
        headers,
        body,
        peer: None,
    })
}

/// The decoded body once the whole chunked body is in `raw`.
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&raw[at..], b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        let start = line_end + 2;
        if size == 0 {
            return Some(out);
        }
        let end = start + size;
        if raw.len() < end + 2 {
            return None;
        }
        out.extend_from_slice(&raw[start..end]);
        at = end + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "upgrade",
];

async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    request: &Request,
) -> Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
    let mut builder = http.request(method, format!("{upstream}{}", request.path));
    for (k, v) in &request.headers {
        if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            builder = builder.header(k, v);
        }
    }
    let response = builder.body(request.body.clone()).send().await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(k, _)| {
            !HOP_BY_HOP
                .iter()
                .any(|h| k.as_str().eq_ignore_ascii_case(h))
        })
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = response.bytes().await?.to_vec();
    Ok((status, headers, body))
}

async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        if !HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Action);
    impl Plan for Fixed {
        fn decide(&self, _: &Request) -> Action {
            self.0.clone()
        }
    }

    async fn upstream() -> wiremock::MockServer {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(201).set_body_string(r#"{"id":"c1"}"#))
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn a_forwarded_request_reaches_the_upstream_and_its_answer_comes_back() {
        let server = upstream().await;
        let proxy = Proxy::start(0, &server.uri(), Arc::new(Fixed(Action::Forward)))
            .await
            .unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/v1/leads", proxy.url))
            .json(&serde_json::json!({"email": "a@b.c"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(r.text().await.unwrap(), r#"{"id":"c1"}"#);
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_reset_fails_the_call_and_the_upstream_never_sees_it() {
        let server = upstream().await;
        let proxy = Proxy::start(0, &server.uri(), Arc::new(Fixed(Action::Reset)))
            .await
            .unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/v1/leads", proxy.url))
            .body("{}")
            .send()
            .await;
        assert!(r.is_err(), "{r:?}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_malformed_answer_comes_after_the_upstream_took_the_request() {
        let server = upstream().await;
        let proxy = Proxy::start(
            0,
            &server.uri(),
            Arc::new(Fixed(Action::Then(After::Malformed))),
        )
        .await
        .unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/v1/leads", proxy.url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        assert!(serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).is_err());
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[test]
    fn a_chunked_body_is_decoded_once_complete() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            Some(b"abcde".to_vec())
        );
        assert_eq!(dechunk(b"3\r\nab"), None);
    }
}
