//! `/v1/orders/{id}/…` and `/v1/captures/{id}/…`: the order's life after checkout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp, ListParams};
use super::idempotency::{Idem, respond};
use super::merchants::Page;
use crate::domain::ids::{CaptureId, MerchantId, OrderId};
use crate::domain::order::OrderState;
use crate::service::authorizations::{self, Order};
use crate::service::captures::{self, Capture, CaptureInput, ConfirmPaymentInput, ExtendInput, Refund, RefundInput};
use crate::service::orders::{self, OrderError, OrderPatch, Outcome};

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> ApiError {
        match e {
            OrderError::NotFound(what) => ApiError::not_found(what),
            OrderError::Invalid(v) => ApiError::Validation(v),
            OrderError::Conflict(t) => ApiError::conflict(t),
            OrderError::AlreadyExists(t) => ApiError::already_exists(t),
            OrderError::Store(s) => s.into(),
        }
    }
}

/// 201 for what a POST created, 200 for what an identical earlier request had created.
fn created_or_ok(o: Outcome) -> StatusCode {
    match o {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Existing => StatusCode::OK,
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(get_order, update_order))
        .routes(routes!(create_capture, list_captures))
        .routes(routes!(cancel_order))
        .routes(routes!(get_capture))
        .routes(routes!(payment_information_pdf))
        .routes(routes!(create_refund))
        .routes(routes!(confirm_payment))
        .routes(routes!(extend_duration))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OrderQuery {
    /// How many orders to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Return orders older than this id.
    starting_after: Option<uuid::Uuid>,
    merchant_id: Option<MerchantId>,
    state: Option<OrderState>,
}

/// List orders.
#[utoipa::path(get, path = "/v1/orders", tag = "Orders", params(OrderQuery),
    responses((status = 200, description = "Orders, newest first", body = Page<Order>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid limit", body = ErrorBody)),
    security(("basic" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<OrderQuery>,
) -> Result<Json<Page<Order>>, ApiError> {
    let limit = ListParams { limit: q.limit, starting_after: None }.limit()?;
    let rows = orders::list_orders(
        &state.services,
        psp.psp_id,
        q.merchant_id,
        q.state.map(OrderState::as_str),
        limit + 1,
        q.starting_after.map(OrderId),
    )
    .await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Get an order.
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "Orders",
    params(("order_id" = OrderId, Path)),
    responses((status = 200, description = "The order", body = Order),
              (status = 404, description = "No such order for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_order(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(authorizations::get_order(&state.services, psp.psp_id, id).await?))
}

/// Update an order's details.
///
/// Set `external_order_id` once, lower the amount (never raise it, never below what is
/// captured), change `duration` before the first capture.
#[utoipa::path(patch, path = "/v1/orders/{order_id}", tag = "Orders",
    request_body = OrderPatch,
    params(("order_id" = OrderId, Path)),
    responses((status = 200, description = "The order", body = Order),
              (status = 404, description = "No such order for this PSP", body = ErrorBody),
              (status = 409, description = "Not allowed in the order's state", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("basic" = [])))]
async fn update_order(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<OrderId>,
    ApiJson(body): ApiJson<OrderPatch>,
) -> Result<Json<Order>, ApiError> {
    let mut tx = state.db.begin().await?;
    let order = orders::update_order(&state.services, &mut tx, psp.psp_id, id, body).await?;
    tx.commit().await?;
    Ok(Json(order))
}

/// Capture against an order (create an invoice).
///
/// The sum of captures never exceeds the authorized amount, under any concurrency. The buyer
/// pays to its virtual IBAN with the `RF` reference by `due_date` = today + the order's duration.
/// The order moves to `partially_shipped` or `shipped`.
#[utoipa::path(post, path = "/v1/orders/{order_id}/captures", tag = "Orders",
    request_body = CaptureInput,
    params(("order_id" = OrderId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, description = "The capture (invoice)", body = Capture),
        (status = 404, description = "No such order for this PSP", body = ErrorBody),
        (status = 409, description = "Does not fit the uncaptured amount, order not capturable, or duplicate invoice number", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn create_capture(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<OrderId>,
    ApiJson(body): ApiJson<CaptureInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let capture = captures::capture(&state.services, &mut tx, psp.psp_id, id, body).await?;
    respond(tx, &idem, StatusCode::CREATED, &capture).await
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CaptureList {
    pub data: Vec<Capture>,
}

/// List an order's captures.
#[utoipa::path(get, path = "/v1/orders/{order_id}/captures", tag = "Orders",
    params(("order_id" = OrderId, Path)),
    responses((status = 200, description = "Captures, oldest first", body = CaptureList),
              (status = 404, description = "No such order for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn list_captures(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Json<CaptureList>, ApiError> {
    Ok(Json(CaptureList { data: captures::captures_of_order(&state.services, psp.psp_id, id).await? }))
}

/// Cancel the uncaptured rest of an order.
///
/// Nothing captured → `canceled`; otherwise the order ends at the captured amount (`shipped`,
/// with `order.canceled` then `order.shipped`). Safe to retry: an order whose rest is already
/// canceled answers 200 as it is.
#[utoipa::path(post, path = "/v1/orders/{order_id}/cancel", tag = "Orders",
    params(("order_id" = OrderId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 200, description = "The order", body = Order),
              (status = 404, description = "No such order for this PSP", body = ErrorBody),
              (status = 409, description = "The order cannot be canceled in its state", body = ErrorBody)),
    security(("basic" = [])))]
async fn cancel_order(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let (order, _) = orders::cancel(&state.services, &mut tx, psp.psp_id, id).await?;
    respond(tx, &idem, StatusCode::OK, &order).await
}

/// Get a capture.
#[utoipa::path(get, path = "/v1/captures/{capture_id}", tag = "Orders",
    params(("capture_id" = CaptureId, Path)),
    responses((status = 200, description = "The capture", body = Capture),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_capture(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<CaptureId>,
) -> Result<Json<Capture>, ApiError> {
    Ok(Json(captures::get_capture(&state.services, psp.psp_id, id).await?))
}

/// Get an invoice's payment information as PDF.
///
/// The document netterms sends the buyer with the payment-information e-mail, rendered from the
/// invoice as it is now (what is still open): the merchant, the buyer, the invoice number and
/// lines, the amount and due date, and how to pay — IBAN, BIC, RF reference and an EPC069-12
/// GiroCode that banking apps scan (or, for SEPA direct debit, the pre-notification).
#[utoipa::path(get, path = "/v1/captures/{capture_id}/payment-information.pdf", tag = "Orders",
    params(("capture_id" = CaptureId, Path)),
    responses((status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn payment_information_pdf(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<CaptureId>,
) -> Result<Response, ApiError> {
    let doc = captures::payment_information_pdf(&state.services, psp.psp_id, id).await?;
    Ok(super::download(doc.bytes, "application/pdf", &doc.filename, true))
}

/// Refund a capture (credit note).
///
/// At most what was captured and not yet refunded. Before the buyer paid it lowers what the buyer
/// owes; after, it is owed back to the buyer and recovered from the PSP's next payout.
/// `external_credit_note_number` identifies the refund: the same request again answers the
/// existing refund with 200; another refund under that number gets 409.
#[utoipa::path(post, path = "/v1/captures/{capture_id}/refunds", tag = "Orders",
    request_body = RefundInput,
    params(("capture_id" = CaptureId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 201, description = "The refund", body = Refund),
              (status = 200, description = "The refund an identical earlier request made", body = Refund),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody),
              (status = 409, description = "Above the refundable amount", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("basic" = [])))]
async fn create_refund(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<CaptureId>,
    ApiJson(body): ApiJson<RefundInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let (refund, outcome) = captures::refund(&state.services, &mut tx, psp.psp_id, id, body).await?;
    respond(tx, &idem, created_or_ok(outcome), &refund).await
}

/// Confirm a payment the buyer made to the merchant directly.
///
/// Needs an `Idempotency-Key` or an `external_payment_id` (unique per capture; the same id and
/// amount again answers the capture without recording the payment twice, another amount 409).
#[utoipa::path(post, path = "/v1/captures/{capture_id}/confirm-payment", tag = "Orders",
    request_body = ConfirmPaymentInput,
    params(("capture_id" = CaptureId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 200, description = "The capture", body = Capture),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody),
              (status = 409, description = "Above the outstanding amount", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("basic" = [])))]
async fn confirm_payment(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<CaptureId>,
    ApiJson(body): ApiJson<ConfirmPaymentInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let (capture, _) =
        captures::confirm_payment(&state.services, &mut tx, psp.psp_id, id, body, idem.0.is_some()).await?;
    respond(tx, &idem, StatusCode::OK, &capture).await
}

/// Extend a capture's payment term.
#[utoipa::path(post, path = "/v1/captures/{capture_id}/extend-duration", tag = "Orders",
    request_body = ExtendInput,
    params(("capture_id" = CaptureId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 200, description = "The capture with its new due date", body = Capture),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody),
              (status = 409, description = "Not longer, or the invoice is settled", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("basic" = [])))]
async fn extend_duration(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<CaptureId>,
    ApiJson(body): ApiJson<ExtendInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let capture = captures::extend_duration(&state.services, &mut tx, psp.psp_id, id, body).await?;
    respond(tx, &idem, StatusCode::OK, &capture).await
}
