//! Operations endpoints: health, readiness, Prometheus metrics, the OpenAPI document and its page.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Liveness: the process serves HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Prometheus text exposition; behind `metrics_token` (bearer) when one is configured.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let a = state.keyring.digest(crate::secrets::Purpose::AdminToken, given.as_bytes());
        let b = state.keyring.digest(crate::secrets::Purpose::AdminToken, token.expose().as_bytes());
        if given.is_empty() || !bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &b[..])) {
            return super::error::ApiError::Unauthorized { challenge: "Bearer realm=\"netterms-metrics\"" }
                .into_response();
        }
    }
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut resp = state.openapi_json.clone().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `/`: what this server is and where its reference is.
pub async fn home(State(state): State<AppState>) -> Response {
    let env = state.config.environment.as_str();
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "netterms" }
                style { "body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#0f172a}\
                    a{color:#1d4ed8}code{background:#f1f5f9;padding:.1rem .3rem;border-radius:4px}" }
            }
            body {
                h1 { "netterms" }
                p { "B2B buy now, pay later for payment service providers — " (env) "." }
                ul {
                    li { a href="/docs/" { "API reference" } " — every operation and webhook, with examples and a console" }
                    li { a href="/openapi.json" { "OpenAPI document" } " (" code { "openapi.json" } ")" }
                    li { a href="/healthz" { "Health" } }
                }
            }
        }
    };
    page.into_response()
}
