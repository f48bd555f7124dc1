//! Checkout over HTTP: the PSP's session and confirmation calls, and the public checkout API the
//! payment page and the widget use (authenticated by the session's client secret, CORS-limited
//! to the session's allowed origins).

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp};
use super::idempotency::{Idem, respond};
use crate::domain::decision::Policy;
use crate::domain::ids::{BuyerId, OrderId, SessionId};
use crate::domain::order::OrderInput;
use crate::service::authorizations::{self, Order};
use crate::service::checkout::{self, AuthorizeInput, AuthorizeResult, CheckoutError};
use crate::service::sessions::{
    self, CompanyHit, PaymentPageSession, PaymentPageSessionInput, SessionView, WidgetSession, WidgetSessionInput,
};

impl From<CheckoutError> for ApiError {
    fn from(e: CheckoutError) -> ApiError {
        match e {
            CheckoutError::NotFound(what) => ApiError::not_found(what),
            CheckoutError::Invalid(v) => ApiError::Validation(v),
            CheckoutError::Mismatch(v) => ApiError::Mismatch(v),
            CheckoutError::Conflict(t) => ApiError::conflict(t),
            CheckoutError::AlreadyExists(t) => ApiError::already_exists(t),
            CheckoutError::MerchantInactive => {
                ApiError::Forbidden { code: "merchant_inactive", title: "the merchant is deactivated".into() }
            }
            CheckoutError::Store(s) => s.into(),
        }
    }
}

pub fn psp_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_payment_page_session))
        .routes(routes!(create_widget_session))
        .routes(routes!(confirm_authorization))
}

pub fn checkout_api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_session))
        .routes(routes!(authorize))
        .routes(routes!(cancel))
        .routes(routes!(companies))
}

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approve_order))
        .routes(routes!(decline_order))
        .routes(routes!(update_buyer))
        .routes(routes!(get_credit_policy, put_credit_policy))
}

/// Get the credit policy in force (operator).
#[utoipa::path(get, path = "/admin/v1/credit-policy", tag = "Operator",
    responses((status = 200, description = "The policy: the stored one, else the configuration's", body = Policy)),
    security(("admin" = [])))]
async fn get_credit_policy(State(state): State<AppState>) -> Result<Json<Policy>, ApiError> {
    let mut conn = state.db.conn().await?;
    Ok(Json(checkout::credit_policy(&state.services, &mut conn).await?))
}

/// Replace the credit policy (operator).
///
/// Takes effect for the next decision on every node. Amounts in minor units.
#[utoipa::path(put, path = "/admin/v1/credit-policy", tag = "Operator", request_body = Policy,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "The new policy", body = Policy),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("admin" = [])))]
async fn put_credit_policy(
    State(state): State<AppState>,
    ApiJson(policy): ApiJson<Policy>,
) -> Result<Json<Policy>, ApiError> {
    checkout::set_credit_policy(&state.services, &policy).await?;
    Ok(Json(policy))
}

/// Create a payment-page session.
///
/// Validates the order (amount arithmetic, line items adding up, duration within the merchant's
/// terms) and returns the hosted page's URL, valid for 48 hours. Approved orders are `created`
/// at once; the buyer returns to `accept_url` or `decline_url` with `session_id`, `order_id`,
/// `state` (and `decline_reason`) appended.
#[utoipa::path(post, path = "/v1/payment-page-sessions", tag = "Checkout",
    request_body = PaymentPageSessionInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, description = "Session created", body = PaymentPageSession),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 403, description = "Merchant inactive (`merchant_inactive`)", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn create_payment_page_session(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<PaymentPageSessionInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let session = sessions::create_payment_page_session(&state.services, &mut tx, psp.psp_id, body).await?;
    respond(tx, &idem, StatusCode::CREATED, &session).await
}

/// Create a widget session.
///
/// The merchant's page passes the session's `client_secret` to `NettermsCheckout.mount`. Only pages of
/// `allowed_origins` may host the widget.
#[utoipa::path(post, path = "/v1/widget-sessions", tag = "Checkout",
    request_body = WidgetSessionInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, description = "Session created", body = WidgetSession),
        (status = 403, description = "Merchant inactive (`merchant_inactive`)", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn create_widget_session(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<WidgetSessionInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let session = sessions::create_widget_session(&state.services, &mut tx, psp.psp_id, body).await?;
    respond(tx, &idem, StatusCode::CREATED, &session).await
}

/// Confirm a widget authorization.
///
/// Send the same order data the widget authorized. Amount, duration, debtor company (name and
/// address) and delivery address must match: each difference is one error of a 400
/// (`authorization_mismatch`, `source` = the field). On a match the order moves
/// `authorized → created` (or `pre_waiting → waiting`).
#[utoipa::path(post, path = "/v1/widget-sessions/{session_id}/confirm-authorization", tag = "Checkout",
    request_body = OrderInput,
    params(("session_id" = SessionId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 200, description = "The confirmed order", body = Order),
        (status = 400, description = "Unreadable body, or data differing from the authorization", body = ErrorBody),
        (status = 404, description = "No such widget session for this PSP", body = ErrorBody),
        (status = 409, description = "Nothing to confirm (not authorized, already confirmed, expired)", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn confirm_authorization(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<SessionId>,
    ApiJson(body): ApiJson<OrderInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let order = authorizations::confirm(&state.services, &mut tx, psp.psp_id, id, body).await?;
    respond(tx, &idem, StatusCode::OK, &order).await
}

/// The checkout session a request's client secret opens (path `{client_secret}`); anything else
/// is 404, like an unknown session.
pub struct ClientSecret(pub SessionId);

impl FromRequestParts<AppState> for ClientSecret {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ApiPath(secret) = ApiPath::<String>::from_request_parts(parts, state).await?;
        sessions::session_of_secret(&state.services, &secret)
            .map(ClientSecret)
            .ok_or_else(|| ApiError::not_found("session"))
    }
}

/// Get a checkout session (checkout API).
///
/// What the payment page or widget needs to render. The session's `client_secret` is the
/// credential.
#[utoipa::path(get, path = "/checkout-api/v1/sessions/{client_secret}", tag = "Checkout API",
    params(("client_secret" = String, Path, description = "The session's client secret")),
    responses((status = 200, description = "The session", body = SessionView),
              (status = 404, description = "No such session", body = ErrorBody)))]
async fn get_session(
    State(state): State<AppState>,
    ClientSecret(id): ClientSecret,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(sessions::session_view(&state.services, id).await?.0))
}

/// Authorize (checkout API).
///
/// The buyer's submission: netterms decides at once. A decline is a 200 with `state: declined`
/// and a `decline_reason`; a declined session may be retried while it is open.
#[utoipa::path(post, path = "/checkout-api/v1/sessions/{client_secret}/authorize", tag = "Checkout API",
    request_body = AuthorizeInput,
    params(("client_secret" = String, Path, description = "The session's client secret")),
    responses((status = 200, description = "The decision", body = AuthorizeResult),
              (status = 400, description = "Unreadable body", body = ErrorBody),
              (status = 403, description = "Merchant inactive", body = ErrorBody),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "Session completed, expired or canceled", body = ErrorBody),
              (status = 422, description = "Invalid fields (terms not accepted, bad IBAN, …)", body = ErrorBody)))]
async fn authorize(
    State(state): State<AppState>,
    ClientSecret(id): ClientSecret,
    ApiJson(body): ApiJson<AuthorizeInput>,
) -> Result<Json<AuthorizeResult>, ApiError> {
    Ok(Json(checkout::authorize(&state.services, id, body).await?))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Canceled {
    /// Where the browser goes: the session's `cancel_url` with `session_id` appended.
    pub redirect_url: String,
}

/// Cancel (checkout API): the buyer leaves without authorizing.
#[utoipa::path(post, path = "/checkout-api/v1/sessions/{client_secret}/cancel", tag = "Checkout API",
    params(("client_secret" = String, Path, description = "The session's client secret")),
    responses((status = 200, description = "Canceled", body = Canceled),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "Session no longer open", body = ErrorBody)))]
async fn cancel(State(state): State<AppState>, ClientSecret(id): ClientSecret) -> Result<Json<Canceled>, ApiError> {
    Ok(Json(Canceled { redirect_url: sessions::cancel_session(&state.services, id).await? }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CompanyQuery {
    /// The client secret of an open session (the credential of this call).
    client_secret: String,
    /// 2 to 100 characters of the company name (`%`, `_` and `\\` are not searched for and do not count).
    #[param(
        min_length = 2,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^%_\\\\\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*[^%_\\\\\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    q: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CompanyList {
    pub data: Vec<CompanyHit>,
}

/// Search companies (checkout API).
///
/// Known buyers whose name contains `q`; at most 10, without identifiers.
#[utoipa::path(get, path = "/checkout-api/v1/companies", tag = "Checkout API", params(CompanyQuery),
    responses((status = 200, description = "Matching companies", body = CompanyList),
              (status = 404, description = "No such session", body = ErrorBody),
              (status = 409, description = "The session is no longer open", body = ErrorBody),
              (status = 422, description = "q too short", body = ErrorBody)))]
async fn companies(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CompanyQuery>,
) -> Result<Json<CompanyList>, ApiError> {
    let id =
        sessions::session_of_secret(&state.services, &q.client_secret).ok_or_else(|| ApiError::not_found("session"))?;
    Ok(Json(CompanyList { data: sessions::search_companies(&state.services, id, &q.q).await? }))
}

/// The session a checkout API request names by its client secret (in the path, or the
/// `client_secret` query parameter), if the secret is valid.
fn session_in(state: &AppState, req: &Request) -> Option<SessionId> {
    let secret = req
        .uri()
        .path()
        .strip_prefix("/checkout-api/v1/sessions/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
        .or_else(|| {
            req.uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("client_secret=")).map(str::to_owned))
        })?;
    sessions::session_of_secret(&state.services, &secret)
}

/// Rate limits of the (unauthenticated) checkout API: per client address and per session, each
/// call counted; over either → 429 with `Retry-After`.
pub async fn limits(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let limited = |s| ApiError::RateLimited { retry_after_secs: s };
    state.checkout_per_address.hit(super::throttle::client_ip(&req)).map_err(limited)?;
    if let Some(id) = session_in(&state, &req) {
        state.checkout_per_session.hit(id).map_err(limited)?;
    }
    Ok(next.run(req).await)
}

/// CORS for the checkout API: an `Origin` among the session's allowed origins may call it; a
/// preflight from any other origin is refused.
pub async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    if !req.uri().path().starts_with("/checkout-api/") {
        return Ok(next.run(req).await);
    }
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned) else {
        return Ok(next.run(req).await);
    };
    let session = session_in(&state, &req);
    // The pages' own origin (the public URL may carry a path or a trailing slash).
    let public = state.config.public_url();
    let own = crate::domain::validate::origin_of(&public).unwrap_or(public);
    let allowed = match session {
        _ if origin == own => true,
        Some(id) => match sessions::session_view(&state.services, id).await {
            Ok((_, origins)) => origins.contains(&origin),
            Err(_) => false,
        },
        None => false,
    };
    if req.method() == Method::OPTIONS {
        if !allowed {
            return Err(ApiError::Forbidden { code: "forbidden", title: "origin not allowed for this session".into() });
        }
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        if let Ok(v) = HeaderValue::from_str(&origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return Ok(resp);
    }
    // A browser on another site may not change a session: simple cross-site POSTs (a form, or a
    // fetch without a preflight) carry an Origin that is not the session's.
    if req.method() == Method::POST && !allowed {
        return Err(ApiError::Forbidden { code: "forbidden", title: "origin not allowed for this session".into() });
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    if allowed && let Ok(v) = HeaderValue::from_str(&origin) {
        resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    Ok(resp)
}

/// Approve an order in manual review (operator).
#[utoipa::path(post, path = "/admin/v1/orders/{order_id}/approve", tag = "Operator",
    params(("order_id" = OrderId, Path)),
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "Approved: `waiting → created`, `pre_waiting → authorized`", body = Order),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 409, description = "Not in review", body = ErrorBody)),
    security(("admin" = [])))]
async fn approve_order(State(state): State<AppState>, ApiPath(id): ApiPath<OrderId>) -> Result<Json<Order>, ApiError> {
    Ok(Json(authorizations::review(&state.services, id, true).await?))
}

/// Decline an order in manual review (operator).
#[utoipa::path(post, path = "/admin/v1/orders/{order_id}/decline", tag = "Operator",
    params(("order_id" = OrderId, Path)),
    responses((status = 200, description = "Declined", body = Order),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 409, description = "Not in review", body = ErrorBody)),
    security(("admin" = [])))]
async fn decline_order(State(state): State<AppState>, ApiPath(id): ApiPath<OrderId>) -> Result<Json<Order>, ApiError> {
    Ok(Json(authorizations::review(&state.services, id, false).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BuyerPatch {
    /// The buyer's own credit limit in minor units; `null` returns to the default.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub credit_limit: Option<Option<i64>>,
    pub blocked: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Ok(Some(Option::<i64>::deserialize(d)?))
    }
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BuyerView {
    pub buyer_id: BuyerId,
    pub name: String,
    pub credit_limit: Option<i64>,
    pub blocked: bool,
    pub virtual_iban: String,
}

/// Set a buyer's credit limit or block it (operator).
#[utoipa::path(patch, path = "/admin/v1/buyers/{buyer_id}", tag = "Operator",
    params(("buyer_id" = BuyerId, Path)), request_body = BuyerPatch,
    responses((status = 200, description = "The buyer", body = BuyerView),
              (status = 404, description = "No such buyer", body = ErrorBody),
              (status = 422, description = "Negative limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn update_buyer(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<BuyerId>,
    ApiJson(body): ApiJson<BuyerPatch>,
) -> Result<Json<BuyerView>, ApiError> {
    if body.credit_limit.flatten().is_some_and(|l| l < 0) {
        return Err(ApiError::Validation(vec![crate::domain::validate::FieldError {
            source: "credit_limit".into(),
            title: "credit_limit must not be negative".into(),
        }]));
    }
    let b = checkout::set_buyer(&state.services, id, body.credit_limit, body.blocked).await?;
    Ok(Json(BuyerView {
        buyer_id: b.id,
        name: b.name,
        credit_limit: b.credit_limit,
        blocked: b.blocked,
        virtual_iban: b.virtual_iban,
    }))
}
