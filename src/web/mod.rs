//! The HTTP layer: routers, middleware and handlers. Handlers parse, authorize and call a use case
//! in [`crate::service`]; nothing here decides business rules.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::service::Services;
pub use openapi::{openapi_pretty, openapi_value};

pub mod admin;
pub mod approvals;
pub mod auth;
pub mod checkout;
pub mod checkout_pages;
pub mod console;
pub mod disputes;
pub mod documents;
pub mod dunning;
pub mod error;
pub mod examples;
pub mod extract;
pub mod idempotency;
pub mod jobs;
pub mod merchants;
pub mod messages;
pub mod openapi;
pub mod operators;
pub mod ops;
pub mod orders;
pub mod pages;
pub mod payments;
pub mod payouts;
pub mod permissions;
pub mod portal;
pub mod sandbox;
pub mod server;
pub mod throttle;
pub mod webhooks;

use error::{ApiError, REQUEST_ID};
use extract::AuthedPsp;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub services: Services,
    /// Failed PSP authentications per (client address, username).
    pub psp_auth_failures: throttle::Throttle<(std::net::IpAddr, String)>,
    /// Failed PSP authentications per client address, whatever the username (spraying).
    pub auth_failures_per_address: throttle::Throttle<std::net::IpAddr>,
    /// Failed admin authentications per client address (counted apart from the PSPs').
    pub admin_auth_failures: throttle::Throttle<std::net::IpAddr>,
    /// Checkout API calls per client address and per session (unauthenticated writes).
    pub checkout_per_address: throttle::Throttle<std::net::IpAddr>,
    pub checkout_per_session: throttle::Throttle<crate::domain::ids::SessionId>,
    /// Portal sign-in links asked for per address and per client address.
    pub portal_links_per_address: throttle::Throttle<String>,
    pub portal_links_per_client: throttle::Throttle<std::net::IpAddr>,
    /// Event redeliveries per PSP and minute.
    pub redeliveries: throttle::Throttle<crate::domain::ids::PspId>,
    pub metrics: PrometheusHandle,
    pub openapi_json: String,
    /// The admin API's router with its middleware, for approvals to run a proposal again.
    pub admin_router: std::sync::OnceLock<Router>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl std::ops::Deref for AppInner {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.services
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "netterms",
        description = "B2B buy now, pay later for payment service providers. PSPs authenticate with HTTP Basic; \
            every error answers with the envelope {\"errors\": [{code, title, source}], \"request_id\"}; every POST \
            accepts an Idempotency-Key.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecurityAddon),
    components(schemas(
        crate::domain::events::AuthorizationEvent,
        crate::domain::events::OrderEventData,
        crate::domain::events::CaptureCreatedEvent,
        crate::domain::events::CaptureUpdatedEvent,
        crate::domain::events::CaptureEventData,
        crate::domain::events::RefundCreatedEvent,
        crate::domain::events::MerchantEventData,
        crate::domain::events::DunningEvent,
        crate::domain::events::DunningPauseEvent,
        crate::domain::events::PaymentEvent,
        crate::domain::events::PayoutEvent,
        crate::domain::events::DisputeEvent,
        crate::web::jobs::JobState,
    )),
    tags(
        (name = "Merchants", description = "Activate and manage the merchants a PSP serves"),
        (name = "Checkout", description = "Payment-page and widget sessions, and confirming a widget authorization"),
        (name = "Orders", description = "Orders after checkout: captures (invoices), refunds (credit notes), direct payments, cancellation"),
        (name = "Payouts", description = "What netterms pays the PSP: payouts at its frequency, their lines and reports"),
        (name = "Disputes", description = "Disputes of invoices: read them, defend them with documents; a chargeback is recovered from the next payout"),
        (name = "Webhooks", description = "Signed event deliveries (Standard Webhooks) and the event log; every event type is listed under Webhooks at the end"),
        (name = "Reference data", description = "Lists clients need to build requests"),
        (name = "Checkout API", description = "Called by the hosted payment page and the widget in the buyer's browser; the session's client secret is the credential"),
        (name = "Sandbox", description = "Test helpers of a sandbox deployment: the PSP's own clock, and later its buyers' payments and messages; 403 in production"),
        (name = "Operator", description = "The operator's admin API: bearer token of an operator (`ntop_…`, acting with that operator's roles) or the bootstrap `admin_token`. Every operation needs a permission of the caller's roles (403 otherwise, nothing changed). Every change is audited in its own transaction; changes that move money, change a policy or change access need a reason in the `Audit-Reason` header (one line, at most 500 characters; 422 without it)."),
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("admin", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// A file to download: its type, and its name in `Content-Disposition` (`inline` to show it in
/// the browser, else as an attachment). Names are ours or sanitized; one that is no valid header
/// value is left out.
pub(crate) fn download(
    bytes: impl Into<axum::body::Body>,
    content_type: &str,
    filename: &str,
    inline: bool,
) -> Response {
    let disposition = format!("{}; filename=\"{filename}\"", if inline { "inline" } else { "attachment" });
    let mut r = (StatusCode::OK, bytes.into()).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A file someone else sent us (a buyer's attachment, a PSP's dispute document), to download:
/// never cached, and were a browser to render it, it runs nothing and reaches nothing
/// (`Content-Security-Policy: default-src 'none'; sandbox`).
pub(crate) fn download_untrusted(bytes: Vec<u8>, content_type: &str, filename: &str, inline: bool) -> Response {
    let mut r = download(bytes, content_type, filename, inline);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// The API routes with their OpenAPI description, before state and middleware.
fn api_routes() -> ApiRoutes {
    ApiRoutes {
        psp: merchants::router()
            .merge(webhooks::router())
            .merge(checkout::psp_router())
            .merge(orders::router())
            .merge(sandbox::router())
            .merge(payments::sandbox_router())
            .merge(messages::sandbox_router())
            .merge(documents::psp_router())
            .merge(payouts::psp_router())
            .merge(disputes::psp_router()),
        public: merchants::public_router(),
        checkout: checkout::checkout_api_router(),
        admin: admin::router()
            .merge(checkout::admin_router())
            .merge(jobs::router())
            .merge(dunning::router())
            .merge(messages::admin_router())
            .merge(payments::admin_router())
            .merge(documents::admin_router())
            .merge(payouts::admin_router())
            .merge(disputes::admin_router())
            .merge(operators::router())
            .merge(approvals::router()),
    }
}

/// The routers of the API, by how their callers authenticate.
struct ApiRoutes {
    psp: OpenApiRouter<AppState>,
    public: OpenApiRouter<AppState>,
    checkout: OpenApiRouter<AppState>,
    admin: OpenApiRouter<AppState>,
}

/// The OpenAPI document generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let r = api_routes();
    OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(r.psp)
        .merge(r.public)
        .merge(r.checkout)
        .merge(r.admin)
        .into_openapi()
}

impl AppState {
    pub fn new(services: Services, metrics: PrometheusHandle) -> AppState {
        let c = &services.config;
        let auth_window = Duration::from_secs(c.auth_failure_window_secs);
        let minute = Duration::from_secs(60);
        AppState(Arc::new(AppInner {
            psp_auth_failures: throttle::Throttle::new(c.auth_failure_limit, auth_window),
            admin_auth_failures: throttle::Throttle::new(c.auth_failure_limit, auth_window),
            auth_failures_per_address: throttle::Throttle::new(c.auth_failures_per_address, auth_window),
            checkout_per_address: throttle::Throttle::new(c.checkout_requests_per_minute_per_address, minute),
            checkout_per_session: throttle::Throttle::new(c.checkout_requests_per_minute_per_session, minute),
            portal_links_per_address: throttle::Throttle::new(c.portal_links_per_address, 15 * minute),
            portal_links_per_client: throttle::Throttle::new(c.portal_links_per_client, 15 * minute),
            redeliveries: throttle::Throttle::new(webhooks::REDELIVERIES_PER_MINUTE, minute),
            metrics,
            openapi_json: openapi_pretty(),
            admin_router: std::sync::OnceLock::new(),
            services,
        }))
    }
}

/// Builds the whole application: every route with its middleware.
pub fn router(services: Services, metrics: PrometheusHandle) -> Router {
    let state = AppState::new(services, metrics);
    let ApiRoutes { psp, public, checkout, admin } = api_routes();
    let max_body = state.config.max_body_bytes;

    let psp_api: Router<AppState> = Router::from(psp)
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(middleware::from_fn_with_state(state.clone(), auth::psp_auth));
    let admin_api: Router<AppState> =
        Router::from(admin).layer(middleware::from_fn_with_state(state.clone(), auth::admin_auth));
    let _ = state.admin_router.set(admin_api.clone().with_state(state.clone()));

    Router::new()
        .merge(psp_api)
        .merge(Router::from(checkout).layer(middleware::from_fn_with_state(state.clone(), checkout::limits)))
        .merge(admin_api)
        .merge(Router::from(public))
        .route("/credentials/{token}", get(pages::password_link).post(pages::reveal_password_form))
        .route("/pay/{client_secret}", get(checkout_pages::payment_page))
        .route("/widget/{client_secret}", get(checkout_pages::widget_frame))
        .route("/sdk/v1/checkout.js", get(checkout_pages::sdk))
        .route("/assets/form.js", get(checkout_pages::form_js))
        .route("/assets/favicon.svg", get(checkout_pages::favicon))
        .route("/legal/{which}", get(checkout_pages::legal))
        .merge(portal::routes())
        .merge(console::routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        .route("/", get(ops::home))
        .merge(reference_page())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // After the 405 fallback is set, so that preflights (OPTIONS) reach it too.
        .layer(middleware::from_fn_with_state(state.clone(), checkout::cors))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// `/docs`: the API reference, Swagger UI (shipped inside the binary) over `/openapi.json`, with
/// a console to try requests against this server.
fn reference_page() -> Router<AppState> {
    use utoipa_swagger_ui::{Config, SwaggerUi};
    let config = Config::new(["/openapi.json"])
        .try_it_out_enabled(false)
        .doc_expansion("list")
        .default_models_expand_depth(0)
        .display_request_duration(true)
        .filter(true)
        .persist_authorization(false)
        .deep_linking(true);
    Router::from(SwaggerUi::new("/docs").config(config)).layer(middleware::map_response(docs_headers))
}

/// The reference page loads nothing from elsewhere; say so.
async fn docs_headers(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal("handler panicked".into()).into_response()
}

/// A client's `X-Request-Id` if it is short and plain, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Outermost middleware: request id, one log line per request, metrics. Logs the route
/// template, never the raw path (it may hold a one-time token) or any header.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = request_id(&req);
    // Labels are bounded: any method a client invents is one label, never a new series each.
    let method = match *req.method() {
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS => {
            req.method().as_str().to_owned()
        }
        _ => "OTHER".to_owned(),
    };
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = resp.status();
    let psp_id = resp.extensions().get::<AuthedPsp>().map(|a| a.psp_id.to_string());
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms = ms, psp_id = psp_id.as_deref(), "request");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms = ms, psp_id = psp_id.as_deref(), "request");
        }
    });
    let labels = [("method", method), ("route", route), ("status", status.as_u16().to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if state.config.environment == crate::config::Environment::Production {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        metrics::counter!("http_server_errors_total").increment(1);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_answers_500_in_the_envelope_revealing_nothing() {
        let resp = REQUEST_ID.scope("rid-1".into(), async { panic_response(Box::new("secret detail")) }).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 10_000).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "internal_error");
        assert_eq!(v["request_id"], "rid-1");
        assert!(!String::from_utf8_lossy(&body).contains("secret detail"));
    }

    /// Every `$ref` of the published document resolves, and every list filter by state names its
    /// values (so an empty or unknown one is invalid by the document too, as the server says).
    #[test]
    fn the_document_refers_only_to_what_it_defines_and_declares_its_filters() {
        let doc = crate::web::openapi::openapi_value();
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r.to_owned());
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.iter().any(|r| r.ends_with("/JobState")));
        for r in all {
            let pointer = r.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "{r} is referenced but not defined");
        }
        let mut filters = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "query" && matches!(p["name"].as_str(), Some("state" | "status")) {
                        filters += 1;
                        let s = &p["schema"];
                        let named = s.get("enum").is_some() || s.get("$ref").is_some();
                        assert!(named, "{method} {path}: {} declares no values", p["name"]);
                    }
                }
            }
        }
        assert!(filters >= 9, "{filters}");
        let valid_from = &doc["paths"]["/admin/v1/base-rates/{valid_from}"]["put"]["parameters"][0]["schema"];
        assert_eq!(valid_from["format"], "date", "{valid_from}");
    }
}
