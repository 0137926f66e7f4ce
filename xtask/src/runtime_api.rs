//! A local Lambda Runtime API (on wiremock) that hands a release binary a fixed list of events, one per
//! `GET /next`, and records each answer: how `cargo xtask bench` drives a function without watch, so
//! that what it measures (peak memory) is the function's own process and nothing else.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// How one invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub request_id: String,
    /// `false` when the function posted to `/error`.
    pub ok: bool,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    pending: VecDeque<(String, Vec<u8>)>,
    answers: Vec<Answer>,
    init_error: Option<String>,
}

/// A running Runtime API. Events are queued with [`RuntimeApi::push`]; when none is left, `GET /next`
/// is held open (as Lambda does between invocations).
pub struct RuntimeApi {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

struct NextEvent(Arc<Mutex<State>>);

impl Respond for NextEvent {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let next = self.0.lock().ok().and_then(|mut s| s.pending.pop_front());
        match next {
            Some((id, body)) => {
                let deadline = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() + 900_000)
                    .unwrap_or_default();
                ResponseTemplate::new(200)
                    .insert_header("Lambda-Runtime-Aws-Request-Id", id.as_str())
                    .insert_header("Lambda-Runtime-Deadline-Ms", deadline.to_string().as_str())
                    .insert_header(
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:bench",
                    )
                    .insert_header(
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-00000000-000000000000000000000000",
                    )
                    .insert_header("Content-Type", "application/json")
                    .set_body_bytes(body)
            }
            None => ResponseTemplate::new(200).set_delay(Duration::from_secs(3_600)),
        }
    }
}

struct Record {
    state: Arc<Mutex<State>>,
    ok: bool,
}

impl Respond for Record {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request
            .url
            .path()
            .trim_start_matches("/2018-06-01/runtime/invocation/")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Ok(mut s) = self.state.lock() {
            s.answers.push(Answer {
                request_id: id,
                ok: self.ok,
                body: request.body.clone(),
            });
        }
        ResponseTemplate::new(202).set_body_string(r#"{"status":"OK"}"#)
    }
}

struct InitError(Arc<Mutex<State>>);

impl Respond for InitError {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Ok(mut s) = self.0.lock() {
            s.init_error = Some(String::from_utf8_lossy(&request.body).into_owned());
        }
        ResponseTemplate::new(202)
    }
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(method("GET"))
            .and(path(NEXT))
            .respond_with(NextEvent(state.clone()))
            .mount(&server)
            .await;
        for (suffix, ok) in [("response", true), ("error", false)] {
            Mock::given(method("POST"))
                .and(path_regex(format!(
                    "^/2018-06-01/runtime/invocation/[^/]+/{suffix}$"
                )))
                .respond_with(Record {
                    state: state.clone(),
                    ok,
                })
                .mount(&server)
                .await;
        }
        Mock::given(method("POST"))
            .and(path("/2018-06-01/runtime/init/error"))
            .respond_with(InitError(state.clone()))
            .mount(&server)
            .await;
        RuntimeApi { server, state }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.server.address().to_string()
    }

    /// Queues one event; returns its request id.
    pub fn push(&self, event: &serde_json::Value) -> Result<String> {
        let id = ulid::Ulid::new().to_string();
        let body = serde_json::to_vec(event)?;
        match self.state.lock() {
            Ok(mut s) => s.pending.push_back((id.clone(), body)),
            Err(_) => bail!("runtime API state poisoned"),
        }
        Ok(id)
    }

    /// Waits until `count` answers have arrived in all (or the function reported an init error).
    pub async fn wait_for_answers(&self, count: usize, timeout: Duration) -> Result<Vec<Answer>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (answers, init_error) = match self.state.lock() {
                Ok(s) => (s.answers.clone(), s.init_error.clone()),
                Err(_) => bail!("runtime API state poisoned"),
            };
            if let Some(e) = init_error {
                bail!("the function failed its cold start: {e}");
            }
            if answers.len() >= count {
                return Ok(answers);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} of {count} invocations answered within {timeout:?}",
                    answers.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_out_events_in_order_and_records_each_answer() {
        let api = RuntimeApi::start().await;
        let first = api.push(&serde_json::json!({"n": 1})).unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://{}", api.address());
        let r = http.get(format!("{base}{NEXT}")).send().await.unwrap();
        assert_eq!(
            r.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap(),
            first
        );
        assert_eq!(r.text().await.unwrap(), r#"{"n":1}"#);
        http.post(format!(
            "{base}/2018-06-01/runtime/invocation/{first}/response"
        ))
        .body("done")
        .send()
        .await
        .unwrap();
        let answers = api
            .wait_for_answers(1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            answers,
            [Answer {
                request_id: first,
                ok: true,
                body: b"done".to_vec()
            }]
        );
    }

    #[tokio::test]
    async fn an_init_error_ends_the_wait_with_its_message() {
        let api = RuntimeApi::start().await;
        reqwest::Client::new()
            .post(format!(
                "http://{}/2018-06-01/runtime/init/error",
                api.address()
            ))
            .body("no config")
            .send()
            .await
            .unwrap();
        let e = api
            .wait_for_answers(1, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no config"), "{e}");
    }
}
