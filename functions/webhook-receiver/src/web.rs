//! HTTP concerns of the receiver: routing, CORS, method checks, redirects and rendering. The intake
//! pipeline itself (`intake.rs`) never sees an HTTP type.
//!
//! Routing lives in [`Receiver::handle_with`]: one `match` on the path's trailing segments, one arm per
//! route, so a stage or base-path prefix in front of `/leads` or `/events` does not matter. CORS,
//! preflight, method checks, origin rejection and response hardening are the same for every route.

use fluxo::domain::intake::FieldProblem;
use fluxo::observability;
use fluxo::ports::{Clock, EventStore, IntakeStore, LeadQueue, MessageQueue, Randomness};
use fluxo::sources::ports::{NoticeInbox, ReplayGuard};
use http::{HeaderMap, Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::cors::{Origin, RedirectTarget};
use crate::events::{EventAnswer, EventPorts};
use crate::intake::{Answer, FUNCTION, Inbound, NAMESPACE, Receiver, is_secret_header};
use crate::response::{self, AcceptedBody, EventAcceptedBody};
use crate::sources::{SignedAnswer, Source, Sources};

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const ALLOWED_METHODS: &str = "POST, OPTIONS";
const ALLOWED_HEADERS: &str = "content-type, idempotency-key";

/// The routes the receiver serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/leads` and `/leads/{source}`: the validated source, `None` for `/leads`.
    Leads(Option<String>),
    /// `/events`: e-commerce events.
    Events,
    /// Any other path: `404`.
    Unknown,
}

impl<S, Q, C, R, P, ES, EQ> Receiver<S, Q, C, R, P, EventPorts<ES, EQ>>
where
    S: IntakeStore,
    Q: LeadQueue,
    C: Clock,
    R: Randomness,
    P: ReplayGuard + NoticeInbox,
    ES: EventStore,
    EQ: MessageQueue,
{
    /// Handles one HTTP request with no signed source configured: every `/leads/{name}` is a form.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.handle_with(request, &Sources::none()).await
    }

    /// Handles one HTTP request. Never fails: every outcome is an HTTP answer.
    pub async fn handle_with(&self, request: Request, sources: &Sources) -> Response<Body> {
        let route = route(&request);
        let signed = match &route {
            Ok(Route::Leads(Some(name))) => sources
                .get(name)
                .filter(|s| !matches!(s, Source::Form))
                .map(|s| (name.clone(), s)),
            _ => None,
        };
        if let Some((name, source)) = signed {
            let mut response = self.signed(&request, &name, source).await;
            response::harden(&mut response);
            return response;
        }
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|v| Origin::parse(v).ok_or(()));
        let allowed_origin = match &origin {
            Some(Ok(o)) if self.settings.allowed_origins.allows(o) => Some(o.clone()),
            _ => None,
        };

        let mut response = if matches!(route, Ok(Route::Unknown)) {
            response::error(
                StatusCode::NOT_FOUND,
                "not found; the receiver serves POST /leads, POST /leads/{source} and POST /events",
                &[],
            )
        } else if request.method() == Method::OPTIONS {
            self.preflight(allowed_origin.is_some(), origin.is_some())
        } else if request.method() != Method::POST {
            let mut r = response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; use POST",
                &[],
            );
            response::set(&mut r, header::ALLOW, ALLOWED_METHODS);
            r
        } else if origin.is_some()
            && allowed_origin.is_none()
            && self.settings.allowed_origins.is_set()
        {
            observability::count(NAMESPACE, FUNCTION, "OriginRejected", 1);
            response::error(StatusCode::FORBIDDEN, "origin not allowed", &[])
        } else {
            match route {
                Err(answer) => render(answer, None, false),
                Ok(Route::Leads(source)) => self.post_form(&request, source).await,
                Ok(Route::Events) => render_event(self.post_event(&inbound(&request, None)).await),
                // Answered above.
                Ok(Route::Unknown) => response::error(StatusCode::NOT_FOUND, "not found", &[]),
            }
        };

        if let Some(o) = &allowed_origin {
            response::set(
                &mut response,
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                o.as_str(),
            );
            response::set(
                &mut response,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "idempotent-replayed",
            );
        }
        if self.settings.allowed_origins.is_set() {
            response::set(&mut response, header::VARY, "Origin");
        }
        response::harden(&mut response);
        response
    }

    /// A signed source's request: `GET` is Meta's subscription handshake, `POST` a delivery.
    async fn signed(&self, request: &Request, name: &str, source: &Source) -> Response<Body> {
        let method = request.method();
        match source {
            Source::Meta { verify_tokens, .. } if method == Method::GET => {
                let query = request.query_string_parameters();
                let challenge = fluxo::sources::meta_lead_ads::request::handshake(
                    query.first("hub.mode"),
                    query.first("hub.verify_token"),
                    query.first("hub.challenge"),
                    verify_tokens,
                );
                match challenge {
                    Some(challenge) => {
                        let mut r =
                            response::with_body(StatusCode::OK, Body::Text(challenge.into()));
                        response::set(&mut r, header::CONTENT_TYPE, "text/plain; charset=utf-8");
                        r
                    }
                    None => {
                        observability::count(NAMESPACE, FUNCTION, "SourceRejected", 1);
                        response::error(StatusCode::FORBIDDEN, "forbidden", &[])
                    }
                }
            }
            _ if method == Method::POST => {
                let headers: Vec<(String, String)> = request
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| {
                        v.to_str()
                            .ok()
                            .map(|v| (k.as_str().to_string(), v.to_string()))
                    })
                    .collect();
                let redacted;
                let mut inbound = inbound(request, Some(name.to_string()));
                if matches!(source, Source::Google { .. }) {
                    // The key is in the body: the stored raw body leaves it out.
                    redacted = without_google_key(inbound.body);
                    inbound.body = &redacted;
                }
                let raw = raw_body(request);
                match self
                    .post_signed(name, source, &headers, raw, &inbound)
                    .await
                {
                    SignedAnswer::Unauthorized => {
                        response::error(StatusCode::UNAUTHORIZED, "unauthorized", &[])
                    }
                    SignedAnswer::Noticed(leads) => response::json(
                        StatusCode::OK,
                        &serde_json::json!({ "status": "received", "leads": leads }),
                    ),
                    SignedAnswer::Lead(Answer::Accepted { lead_id, replayed }) => {
                        let mut r = response::json(
                            StatusCode::OK,
                            &AcceptedBody {
                                lead_id: lead_id.as_str(),
                                status: "accepted",
                            },
                        );
                        if replayed {
                            response::set(
                                &mut r,
                                http::HeaderName::from_static("idempotent-replayed"),
                                "true",
                            );
                        }
                        r
                    }
                    SignedAnswer::Lead(answer) => render(answer, None, false),
                }
            }
            _ => {
                let allow = if matches!(source, Source::Meta { .. }) {
                    "GET, POST"
                } else {
                    "POST"
                };
                let mut r = response::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("method not allowed; use {allow}"),
                    &[],
                );
                response::set(&mut r, header::ALLOW, allow);
                r
            }
        }
    }

    /// `POST /leads[/{source}]` from a form: parse, check the redirect, store, answer (303 for browsers
    /// that asked for HTML and named an allowed target).
    async fn post_form(&self, request: &Request, endpoint: Option<String>) -> Response<Body> {
        let inbound = inbound(request, endpoint);
        let received_at = self.clock.now();
        let submission = match self.parse_form(&inbound, received_at).await {
            Ok(submission) => submission,
            Err(answer) => return render(answer, None, false),
        };
        let redirect = match self.redirect_target(submission.redirect()) {
            Ok(target) => target,
            Err(problem) => {
                let answer = Answer::Rejected {
                    status: StatusCode::BAD_REQUEST,
                    message: "invalid redirect".into(),
                    fields: vec![problem],
                };
                return render(answer, None, false);
            }
        };
        let answer = self.accept_form(submission, &inbound, received_at).await;
        render(answer, redirect, accepts_html(request.headers()))
    }

    fn preflight(&self, allowed: bool, has_origin: bool) -> Response<Body> {
        if has_origin && !allowed {
            return response::error(StatusCode::FORBIDDEN, "origin not allowed", &[]);
        }
        let mut r = response::with_body(StatusCode::NO_CONTENT, Body::Empty);
        response::set(&mut r, header::ALLOW, ALLOWED_METHODS);
        if allowed {
            response::set(
                &mut r,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                ALLOWED_METHODS,
            );
            response::set(
                &mut r,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                ALLOWED_HEADERS,
            );
            response::set(&mut r, header::ACCESS_CONTROL_MAX_AGE, "600");
        }
        r
    }

    /// The 303 target for plain HTML forms: `_redirect` if its origin is listed in `ALLOWED_ORIGINS` (a
    /// `*` lists none) or is `THANK_YOU_URL`'s, else `THANK_YOU_URL`.
    fn redirect_target(&self, requested: Option<&str>) -> Result<Option<String>, FieldProblem> {
        let thank_you = self.settings.thank_you_url.as_ref();
        let Some(requested) = requested else {
            return Ok(thank_you.map(|t| t.url.clone()));
        };
        let problem = |p: &str| FieldProblem {
            field: "_redirect".into(),
            problem: p.into(),
        };
        let target = RedirectTarget::parse(requested)
            .ok_or_else(|| problem("must be an absolute http or https URL"))?;
        let allowed = self.settings.allowed_origins.lists(&target.origin)
            || thank_you.is_some_and(|t| t.origin == target.origin);
        if allowed && target.url.len() <= 2048 {
            Ok(Some(target.url))
        } else {
            Err(problem("is not on an allowed origin"))
        }
    }
}

/// The request's body as bytes (API Gateway may have sent it base64-encoded; lambda_http decoded it).
pub(crate) fn raw_body(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// What the intake pipeline needs from a request.
pub(crate) fn inbound(request: &Request, endpoint: Option<String>) -> Inbound<'_> {
    let headers = request.headers();
    Inbound {
        endpoint,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        headers: headers
            .iter()
            .filter(|(name, _)| !is_secret_header(name.as_str()))
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_string(), v.to_string()))
            })
            .collect(),
        body: raw_body(request),
        idempotency_key: headers
            .get(IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty()),
    }
}

/// A Google lead body without its `google_key`, to be stored; the body as sent if it is not JSON.
fn without_google_key(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.remove("google_key");
            serde_json::to_vec(&map).unwrap_or_default()
        }
        _ => body.to_vec(),
    }
}

/// Turns an answer into a response. `redirect` is used only for browsers that asked for HTML.
fn render(answer: Answer, redirect: Option<String>, wants_html: bool) -> Response<Body> {
    match answer {
        Answer::Accepted { lead_id, replayed } => {
            let mut r = match redirect.filter(|_| wants_html) {
                Some(target) => {
                    let mut r = response::with_body(StatusCode::SEE_OTHER, Body::Empty);
                    response::set(&mut r, header::LOCATION, &target);
                    r
                }
                None => response::json(
                    StatusCode::ACCEPTED,
                    &AcceptedBody {
                        lead_id: lead_id.as_str(),
                        status: "accepted",
                    },
                ),
            };
            if replayed {
                response::set(
                    &mut r,
                    http::HeaderName::from_static("idempotent-replayed"),
                    "true",
                );
            }
            r
        }
        Answer::Rejected {
            status,
            message,
            fields,
        } => {
            observability::count(NAMESPACE, FUNCTION, "LeadRejected", 1);
            response::error(status, &message, &fields)
        }
        Answer::Unavailable => {
            let mut r = response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the lead could not be stored; nothing was kept; retry the same request",
                &[],
            );
            response::set(&mut r, header::RETRY_AFTER, "1");
            r
        }
    }
}

/// Whether the client asked for HTML (a browser submitting a plain form).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/html"))
}

/// Which route a request is for, by the path's trailing segments (`.../leads`, `.../leads/{source}`,
/// `.../events`): the same in API Gateway (with or without a stage in the path) and locally.
/// `/leads/{source}` with an invalid segment is a `400`.
fn route(request: &Request) -> Result<Route, Answer> {
    let raw = request.raw_http_path();
    let path = if raw.is_empty() {
        request.uri().path()
    } else {
        raw
    };
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = segments.next().unwrap_or_default();
    let before = segments.next();
    if before == Some("leads") {
        return valid_source(last).map(|s| Route::Leads(Some(s)));
    }
    Ok(match last {
        "leads" => Route::Leads(None),
        "events" => Route::Events,
        _ => Route::Unknown,
    })
}

/// The `{source}` path segment, validated.
fn valid_source(segment: &str) -> Result<String, Answer> {
    if (1..=64).contains(&segment.len())
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Ok(segment.to_string());
    }
    Err(Answer::Rejected {
        status: StatusCode::BAD_REQUEST,
        message: "invalid source".into(),
        fields: vec![FieldProblem {
            field: "source".into(),
            problem: "the path segment must be 1 to 64 letters, digits, '-' or '_'".into(),
        }],
    })
}

/// Turns an event answer into a response: `202 {"event_id", "status"}`, a `4xx` naming the problems,
/// or a `503` (nothing stored).
fn render_event(answer: EventAnswer) -> Response<Body> {
    match answer {
        EventAnswer::Accepted { event_id, replayed } => {
            let mut r = response::json(
                StatusCode::ACCEPTED,
                &EventAcceptedBody {
                    event_id: &event_id,
                    status: "accepted",
                },
            );
            if replayed {
                response::set(
                    &mut r,
                    http::HeaderName::from_static("idempotent-replayed"),
                    "true",
                );
            }
            r
        }
        EventAnswer::Refused(Answer::Rejected {
            status,
            message,
            fields,
        }) => {
            observability::count(NAMESPACE, FUNCTION, "EventRejected", 1);
            response::error(status, &message, &fields)
        }
        EventAnswer::Refused(_) => {
            let mut r = response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event could not be stored; nothing was kept; retry the same request",
                &[],
            );
            response::set(&mut r, header::RETRY_AFTER, "1");
            r
        }
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    fn at(path: &str) -> Result<Route, Answer> {
        route(
            &http::Request::builder()
                .uri(path)
                .body(Body::Empty)
                .unwrap(),
        )
    }

    #[test]
    fn routes_follow_the_trailing_path_segments_whatever_the_prefix() {
        assert_eq!(at("/leads").ok(), Some(Route::Leads(None)));
        assert_eq!(at("/leads/").ok(), Some(Route::Leads(None)));
        assert_eq!(
            at("/prod/leads/site").ok(),
            Some(Route::Leads(Some("site".into())))
        );
        assert_eq!(at("/events").ok(), Some(Route::Events));
        assert_eq!(at("/api/v1/events").ok(), Some(Route::Events));
        // A source named `events` is still a lead source.
        assert_eq!(
            at("/leads/events").ok(),
            Some(Route::Leads(Some("events".into())))
        );
        for unknown in ["/", "/event", "/leads/a/b", "/events/x"] {
            assert_eq!(at(unknown).ok(), Some(Route::Unknown), "{unknown}");
        }
        assert!(at("/leads/%3Cscript%3E").is_err());
    }
}
