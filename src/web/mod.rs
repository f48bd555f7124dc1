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

pub mod admin;
pub mod auth;
pub mod checkout;
pub mod checkout_pages;
pub mod error;
pub mod examples;
pub mod extract;
pub mod idempotency;
pub mod merchants;
pub mod ops;
pub mod orders;
pub mod pages;
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
    /// Failed admin authentications per client address (counted apart from the PSPs').
    pub admin_auth_failures: throttle::Throttle<std::net::IpAddr>,
    /// Checkout API calls per client address and per session (unauthenticated writes).
    pub checkout_per_address: throttle::Throttle<std::net::IpAddr>,
    pub checkout_per_session: throttle::Throttle<crate::domain::ids::SessionId>,
    pub metrics: PrometheusHandle,
    pub openapi_json: String,
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
    )),
    tags(
        (name = "Merchants", description = "Activate and manage the merchants a PSP serves"),
        (name = "Checkout", description = "Payment-page and widget sessions, and confirming a widget authorization"),
        (name = "Orders", description = "Orders after checkout: captures (invoices), refunds (credit notes), direct payments, cancellation"),
        (name = "Webhooks", description = "Signed event deliveries (Standard Webhooks) and the event log; every event type is listed under Webhooks at the end"),
        (name = "Reference data", description = "Lists clients need to build requests"),
        (name = "Checkout API", description = "Called by the hosted payment page and the widget in the buyer's browser; the session's client secret is the credential"),
        (name = "Operator", description = "The operator's admin API (bearer token)"),
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

/// The API routes with their OpenAPI description, before state and middleware.
fn api_routes() -> ApiRoutes {
    ApiRoutes {
        psp: merchants::router().merge(webhooks::router()).merge(checkout::psp_router()).merge(orders::router()),
        public: merchants::public_router(),
        checkout: checkout::checkout_api_router(),
        admin: admin::router().merge(checkout::admin_router()),
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

/// The OpenAPI document with its `webhooks` (OpenAPI 3.1), which utoipa does not model: one
/// entry per event type of the catalogue, the body's `data` referring to the payload's schema.
pub fn openapi_value() -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
    let header = |name: &str, description: &str| {
        serde_json::json!({"name": name, "in": "header", "required": true, "description": description,
                           "schema": {"type": "string"}})
    };
    let mut hooks = serde_json::Map::new();
    for d in crate::domain::events::catalogue() {
        let body = serde_json::json!({
            "type": "object",
            "required": ["id", "type", "created_at", "data"],
            "properties": {
                "id": {"type": "string", "format": "uuid", "description": "The event's id, also sent as `webhook-id`"},
                "type": {"type": "string", "const": d.event_type},
                "created_at": {"type": "string", "format": "date-time"},
                "data": {"$ref": format!("#/components/schemas/{}", d.schema)}
            }
        });
        hooks.insert(
            d.event_type.to_owned(),
            serde_json::json!({"post": {
                "tags": ["Webhooks"],
                "summary": d.summary,
                "description": format!("Sent to every enabled endpoint that subscribed to `{}` (or to every type). \
                    Verify the signature with any Standard Webhooks library and the endpoint's `whsec_` secret; answer \
                    2xx within 15 s, anything else is retried for about three days.", d.event_type),
                "operationId": format!("webhook_{}", d.event_type.replace('.', "_")),
                "parameters": [
                    header("webhook-id", "The event id; the same on every retry"),
                    header("webhook-timestamp", "Seconds since the Unix epoch when this attempt was signed"),
                    header("webhook-signature", "`v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">`, space-separated when several secrets sign"),
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                "responses": {"2XX": {"description": "Received"}}
            }}),
        );
    }
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("webhooks".into(), serde_json::Value::Object(hooks));
    }
    let inputs = request_schemas(&doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(|v| v.as_object_mut()) {
        schemas.values_mut().for_each(required_means_not_null);
        for (name, schema) in schemas.iter_mut() {
            if inputs.contains(name) {
                text_rules(name, schema);
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for (path, ops) in paths.iter_mut() {
            let Some(ops) = ops.as_object_mut() else { continue };
            for (method, op) in ops.iter_mut() {
                common_answers(path, method, op);
                let Some(media) =
                    op.pointer_mut("/requestBody/content/application~1json").and_then(|m| m.as_object_mut())
                else {
                    continue;
                };
                if let Some(example) = examples::request_body(method, path) {
                    media.insert("example".into(), example);
                }
            }
        }
    }
    doc
}

/// The answers every operation of a kind gives, added to what its handler documents: the
/// middleware's (authentication, throttling, body limits, idempotency) and the extractors'.
fn common_answers(path: &str, method: &str, op: &mut serde_json::Value) {
    let authed = op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
    let has_query = op
        .get("parameters")
        .and_then(|p| p.as_array())
        .is_some_and(|ps| ps.iter().any(|p| p.get("in").and_then(|i| i.as_str()) == Some("query")));
    let has_body = op.get("requestBody").is_some();
    let keyed = method == "post" && path.starts_with("/v1/");
    let mut add: Vec<(&str, &str)> = Vec::new();
    if authed {
        add.push(("401", "Missing or invalid credentials (`unauthorized`)"));
        add.push(("429", "Too many failed authentications from this client (`rate_limited`, see `Retry-After`)"));
    }
    if path.starts_with("/checkout-api/") {
        add.push(("429", "Too many calls for this session or from this client (`rate_limited`, see `Retry-After`)"));
        if method == "post" {
            add.push(("403", "Called from an origin the session does not allow (`forbidden`)"));
        }
    }
    let has_limit = op
        .get("parameters")
        .and_then(|p| p.as_array())
        .is_some_and(|ps| ps.iter().any(|p| p.get("name").and_then(|n| n.as_str()) == Some("limit")));
    if has_limit {
        add.push(("422", "`limit` out of 1–100 (`request_validation_error`)"));
    }
    if has_query || has_body || keyed {
        add.push((
            "400",
            "Unreadable request: malformed JSON, wrong types, text after the JSON object, \
            control characters in the query, a malformed `Idempotency-Key` (`request_invalid`)",
        ));
    }
    if has_body {
        add.push(("413", "Body larger than allowed (`request_too_large`)"));
        add.push(("422", "Readable but invalid: one entry per field (`request_validation_error`)"));
    }
    if keyed {
        add.push(("409", "A request with this `Idempotency-Key` is still running (`idempotency_in_progress`), or a conflict with the resource's state"));
        add.push((
            "422",
            "This `Idempotency-Key` was used with another request (`idempotency_key_reused`), or invalid fields",
        ));
    }
    let error = serde_json::json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
        for (status, description) in add {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| serde_json::json!({"description": description, "content": error.clone()}));
        }
    }
    // Query text as the extractor checks it: no control characters.
    if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
        for p in params.iter_mut().filter(|p| p.get("in").and_then(|i| i.as_str()) == Some("query")) {
            let Some(schema) = p.get_mut("schema").and_then(|s| s.as_object_mut()) else { continue };
            let text = schema
                .get("type")
                .is_some_and(|t| t == "string" || t.as_array().is_some_and(|a| a.contains(&"string".into())));
            if text && !schema.contains_key("pattern") && !schema.contains_key("format") && !schema.contains_key("enum")
            {
                schema.insert("pattern".into(), NO_CONTROLS.into());
            }
        }
    }
    // The key header as the middleware checks it.
    if let Some(params) = op.get_mut("parameters").and_then(|p| p.as_array_mut()) {
        for p in params.iter_mut().filter(|p| p.get("name").and_then(|n| n.as_str()) == Some("Idempotency-Key")) {
            p["schema"] =
                serde_json::json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"});
        }
    }
}

/// The component schemas a request body can contain (reachable from a `requestBody`).
fn request_schemas(doc: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.trim_start_matches("#/components/schemas/").to_owned());
                }
                m.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut todo = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for op in paths.values().filter_map(|o| o.as_object()).flat_map(|o| o.values()) {
            if let Some(body) = op.get("requestBody") {
                refs(body, &mut todo);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            if let Some(s) = doc.pointer(&format!("/components/schemas/{name}")) {
                refs(s, &mut todo);
            }
        }
    }
    seen
}

/// No text field accepts control characters (SPEC §4: C0 but tab and line breaks, DEL, C1).
const NO_CONTROLS: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";
/// A required text field also needs something besides white space (it is trimmed).
const NOT_BLANK: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*\
    [^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

/// The text rules the server applies to an input schema's string fields, written into it:
/// no control characters, required text not blank, and the two closed vocabularies (`locale`,
/// `salutation`) as enums.
fn text_rules(schema_name: &str, schema: &mut serde_json::Value) {
    let required: Vec<String> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { return };
    for (name, p) in props.iter_mut() {
        let Some(p) = p.as_object_mut() else { continue };
        let types = match p.get("type") {
            Some(serde_json::Value::String(t)) => vec![t.clone()],
            Some(serde_json::Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            _ => continue,
        };
        if name == "countries" && types.iter().any(|t| t == "array") {
            p.insert("items".into(), serde_json::json!({"type": "string", "enum": crate::domain::validate::COUNTRIES}));
            continue;
        }
        if types.iter().any(|t| t == "integer") {
            if let Some((min, max)) = integer_range(schema_name, name) {
                p.entry("minimum").or_insert(min.into());
                if let Some(max) = max {
                    p.entry("maximum").or_insert(max.into());
                }
            }
            continue;
        }
        if !types.iter().any(|t| t == "string") {
            continue;
        }
        match name.as_str() {
            "locale" => {
                p.insert("enum".into(), serde_json::json!(["de", "en", null]));
                continue;
            }
            "salutation" => {
                p.insert("enum".into(), serde_json::json!(["m", "f", null]));
                continue;
            }
            "country" => {
                let mut codes = serde_json::json!(crate::domain::validate::COUNTRIES);
                if let Some(list) = codes.as_array_mut().filter(|_| !required.contains(name)) {
                    list.push(serde_json::Value::Null);
                }
                p.insert("enum".into(), codes);
                continue;
            }
            "email" => {
                p.insert("format".into(), "email".into());
            }
            _ => {}
        }
        if let Some(max) = max_length(schema_name, name) {
            p.entry("maxLength").or_insert(max.into());
        }
        if p.contains_key("pattern") || p.contains_key("format") || p.contains_key("enum") {
            continue;
        }
        let rule = if required.contains(name) { NOT_BLANK } else { NO_CONTROLS };
        p.insert("pattern".into(), rule.into());
    }
}

/// The range the server accepts for an input's integer field, where it checks one.
fn integer_range(schema: &str, field: &str) -> Option<(i64, Option<i64>)> {
    Some(match (schema, field) {
        ("FeeBand", "max_duration") => (1, Some(120)),
        (_, "fee_rate_bps") => (0, Some(10_000)),
        (_, "duration" | "min_duration" | "max_duration" | "default_duration") => (7, Some(120)),
        (_, "quantity") => (1, Some(1_000_000)),
        ("AmountInput", "tax") => (0, None),
        (_, "min_order_amount") => (1, None),
        (
            _,
            "fee_fixed"
            | "credit_limit"
            | "default_buyer_limit"
            | "review_above"
            | "max_order_amount"
            | "merchant_limit"
            | "psp_limit",
        ) => (0, None),
        (_, "amount") if schema == "ConfirmPaymentInput" => (1, None),
        _ => return None,
    })
}

/// The longest text the server accepts in an input field (the `Violations::text` limits).
fn max_length(schema: &str, field: &str) -> Option<u64> {
    Some(match (schema, field) {
        ("EndpointInput", "description") => 255,
        (_, "legal_form") => 10,
        (_, "registration_number") => 100,
        (_, "tax_id" | "postal_code") => 20,
        (_, "phone") => 21,
        (_, "house_number") => 50,
        (_, "iban") => 64,
        (_, "email") => 254,
        (_, "description" | "reason") => 1000,
        (_, "url" | "website" | "invoice_url" | "accept_url" | "decline_url" | "cancel_url") => 2048,
        (
            _,
            "name"
            | "registration_court"
            | "merchant_customer_id"
            | "first_name"
            | "last_name"
            | "external_id"
            | "title"
            | "external_order_id"
            | "comment"
            | "street"
            | "addition"
            | "city"
            | "industry_sector"
            | "external_invoice_number"
            | "external_credit_note_number"
            | "external_payment_id",
        ) => 255,
        _ => return None,
    })
}

/// Input fields are `Option`s so that a missing one is reported as a 422 naming it, not a serde
/// error; utoipa then documents required fields as nullable. A required field is never null
/// (null is refused like absence), so the document says so.
fn required_means_not_null(schema: &mut serde_json::Value) {
    let required: Vec<String> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { return };
    for name in required {
        let Some(p) = props.get_mut(&name).and_then(|p| p.as_object_mut()) else { continue };
        if let Some(types) = p.get_mut("type").and_then(|t| t.as_array_mut()) {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                p.insert("type".into(), only);
            }
        }
        let inner = p.get("oneOf").and_then(|o| o.as_array()).and_then(|alts| {
            let rest: Vec<&serde_json::Value> = alts.iter().filter(|a| a.get("type") != Some(&"null".into())).collect();
            (rest.len() == 1 && rest.len() < alts.len()).then(|| rest[0].clone())
        });
        if let Some(serde_json::Value::Object(inner)) = inner {
            p.remove("oneOf");
            for (k, v) in inner {
                p.entry(k).or_insert(v);
            }
        }
    }
}

/// The OpenAPI document as committed to the repository (pretty JSON with a final newline).
pub fn openapi_pretty() -> String {
    let mut s = serde_json::to_string_pretty(&openapi_value()).unwrap_or_default();
    s.push('\n');
    s
}

impl AppState {
    pub fn new(services: Services, metrics: PrometheusHandle) -> AppState {
        let c = &services.config;
        let auth_window = Duration::from_secs(c.auth_failure_window_secs);
        let minute = Duration::from_secs(60);
        AppState(Arc::new(AppInner {
            psp_auth_failures: throttle::Throttle::new(c.auth_failure_limit, auth_window),
            admin_auth_failures: throttle::Throttle::new(c.auth_failure_limit, auth_window),
            checkout_per_address: throttle::Throttle::new(c.checkout_requests_per_minute_per_address, minute),
            checkout_per_session: throttle::Throttle::new(c.checkout_requests_per_minute_per_session, minute),
            metrics,
            openapi_json: openapi_pretty(),
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
}
