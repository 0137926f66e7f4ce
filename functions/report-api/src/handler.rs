//! The HTTP requests: `GET /reports` (the page) and `GET /reports/{name}.json|.csv` (one chart's data),
//! behind the dashboard secret. Every refusal is a clear 4xx; nothing from the request is echoed.

use std::time::Instant;

use chrono::Utc;
use fluxo::secrets::{SecretRef, SecretStore};
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

use crate::auth::{self, MIN_SECRET_LEN};
use crate::charts::{Dashboard, NAMES};
use crate::facts::{Facts, FileCache, LakeReader};
use crate::query;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Page,
    Data { name: &'static str, csv: bool },
}

fn route(path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    if path == "/reports" {
        return Some(Route::Page);
    }
    let file = path.strip_prefix("/reports/")?;
    let (name, ext) = file.rsplit_once('.')?;
    let name = NAMES.into_iter().find(|n| *n == name)?;
    match ext {
        "json" => Some(Route::Data { name, csv: false }),
        "csv" => Some(Route::Data { name, csv: true }),
        _ => None,
    }
}

/// The dashboard, built once per cold start.
pub struct Reports<L> {
    lake: L,
    cache: FileCache,
    secrets: SecretStore,
    token: SecretRef,
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::Text(format!("{message}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn secure(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

impl<L: LakeReader> Reports<L> {
    /// The dashboard over a lake, with the secret's reference.
    pub fn new(lake: L, secrets: SecretStore, token: SecretRef) -> Self {
        Reports {
            lake,
            cache: FileCache::default(),
            secrets,
            token,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        secure(self.answer(&request).await)
    }

    async fn answer(&self, request: &Request) -> Response<Body> {
        let Some(route) = route(request.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "no such report");
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let secret = match self.secrets.resolve(&self.token).await {
            Ok(s) if s.len() >= MIN_SECRET_LEN => s,
            Ok(_) => {
                tracing::error!(
                    min = MIN_SECRET_LEN,
                    "the dashboard secret is too short; the dashboard stays closed"
                );
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the dashboard is not configured",
                );
            }
            Err(error) => {
                tracing::error!(%error, "the dashboard secret could not be read");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the dashboard is not configured",
                );
            }
        };
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !auth::authorized(authorization, &secret) {
            let mut r = text(StatusCode::UNAUTHORIZED, "authentication required");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Fluxo reports\", charset=\"UTF-8\""),
            );
            return r;
        }
        let filter = match query::parse(request.uri().query(), Utc::now().date_naive()) {
            Ok(f) => f,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let started = Instant::now();
        let facts = match Facts::load(&self.lake, &self.cache, &filter).await {
            Ok(f) => f,
            Err(error) => {
                tracing::error!(%error, "the lake could not be read");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the data lake could not be read; try again",
                );
            }
        };
        let loaded = started.elapsed();
        let dashboard = Dashboard::of(&facts, &filter);
        let (body, content_type) = match route {
            Route::Page => {
                let note = format!(
                    "{} to {}: {} leads, {} effect outcomes, {} metric rows, {} journal entries from {} Parquet files ({} KiB).",
                    filter.from,
                    filter.to,
                    facts.leads.len(),
                    facts.effects.len(),
                    facts.ad_metrics.len(),
                    facts.bid_changes.len(),
                    facts.files,
                    facts.bytes / 1024
                );
                (
                    crate::page::render(&dashboard, &note),
                    "text/html; charset=utf-8",
                )
            }
            Route::Data { name, csv } => {
                let Some(t) = dashboard.table(name) else {
                    return text(StatusCode::NOT_FOUND, "no such report");
                };
                if csv {
                    (t.to_csv(), "text/csv; charset=utf-8")
                } else {
                    (t.to_json(&filter).to_string(), "application/json")
                }
            }
        };
        tracing::info!(
            files = facts.files,
            bytes = facts.bytes,
            load_ms = loaded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "report served"
        );
        let mut r = Response::new(Body::Text(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_page_and_each_charts_data() {
        assert_eq!(route("/reports"), Some(Route::Page));
        assert_eq!(route("/reports/"), Some(Route::Page));
        assert_eq!(
            route("/reports/funnel.csv"),
            Some(Route::Data {
                name: "funnel",
                csv: true
            })
        );
        assert_eq!(
            route("/reports/leads-by-source.json"),
            Some(Route::Data {
                name: "leads-by-source",
                csv: false
            })
        );
        assert_eq!(route("/reports/secrets.json"), None);
        assert_eq!(route("/reports/funnel.xml"), None);
        assert_eq!(route("/other"), None);
    }
}
