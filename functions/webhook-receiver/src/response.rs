//! Responses: JSON bodies, error shapes and the headers every answer carries.

use fluxo::domain::intake::FieldProblem;
use http::{HeaderName, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

/// The error body: `{"error": "...", "fields": [{"field": "...", "problem": "..."}]}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub fields: &'a [FieldProblem],
}

/// The success body: `{"lead_id": "...", "status": "accepted"}`.
#[derive(Debug, Serialize)]
pub struct AcceptedBody<'a> {
    pub lead_id: &'a str,
    pub status: &'static str,
}

/// The success body of `POST /events`: `{"event_id": "...", "status": "accepted"}`.
#[derive(Debug, Serialize)]
pub struct EventAcceptedBody<'a> {
    pub event_id: &'a str,
    pub status: &'static str,
}

/// A response with a status, a body and no headers yet.
pub fn with_body(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// A JSON response. Serializing our own types cannot fail; if it ever did, the body is `{}`.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    let mut response = with_body(status, Body::Text(text));
    set(
        &mut response,
        http::header::CONTENT_TYPE,
        "application/json; charset=utf-8",
    );
    response
}

/// A JSON error response.
pub fn error(status: StatusCode, message: &str, fields: &[FieldProblem]) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: message,
            fields,
        },
    )
}

/// Sets a header; values that are not valid header text are skipped, never panicked on.
pub fn set(response: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Headers every response carries.
pub fn harden(response: &mut Response<Body>) {
    set(response, http::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(response, http::header::CACHE_CONTROL, "no-store");
}
