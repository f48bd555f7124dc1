//! The merchant's documents (SPEC §9.4) from the PSP, and the portal's operator queues (SPEC
//! §9.6): support requests with their answers, "I have paid" claims, disputes.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp};
use super::merchants::Page;
use crate::domain::ids::CaptureId;
use crate::service::merchant_documents::{self, DocumentView};
use crate::service::portal::{self, AnswerInput, ClaimView, MAX_FILE_BYTES, SupportView};

pub fn psp_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_invoice_document)).routes(routes!(put_credit_note_document))
}

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_support_requests))
        .routes(routes!(get_support_request))
        .routes(routes!(support_attachment))
        .routes(routes!(answer_support_request))
        .routes(routes!(list_payment_claims))
}

/// The body of a document upload: `application/pdf`, at most 10 MB.
async fn pdf_body(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/pdf" {
        return Err(ApiError::bad_request("send the document as application/pdf", None));
    }
    crate::web::extract::read_body(body, MAX_FILE_BYTES).await
}

/// Upload the merchant's invoice of a capture.
///
/// The legal invoice document (PDF, at most 10 MB, checked to be a PDF) that the buyer sees in
/// the portal next to netterms' payment information. A later upload replaces it; an upload wins
/// over a fetch from `invoice_url`.
#[utoipa::path(put, path = "/v1/captures/{capture_id}/invoice-document", tag = "Orders",
    params(("capture_id" = CaptureId, Path)),
    request_body(content = Vec<u8>, content_type = "application/pdf", description = "The PDF"),
    responses((status = 200, description = "The stored document", body = DocumentView),
              (status = 400, description = "Not sent as application/pdf", body = ErrorBody),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody),
              (status = 413, description = "Larger than 10 MB", body = ErrorBody),
              (status = 422, description = "Not a PDF", body = ErrorBody)),
    security(("basic" = [])))]
async fn put_invoice_document(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<CaptureId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DocumentView>, ApiError> {
    let bytes = pdf_body(&headers, body).await?;
    Ok(Json(merchant_documents::put_invoice(&state.services, psp.psp_id, id, &bytes).await?))
}

/// Upload the merchant's credit note of a refund.
///
/// As the invoice document: PDF, at most 10 MB, shown to the buyer with the invoice.
#[utoipa::path(put, path = "/v1/refunds/{refund_id}/credit-note-document", tag = "Orders",
    params(("refund_id" = uuid::Uuid, Path)),
    request_body(content = Vec<u8>, content_type = "application/pdf", description = "The PDF"),
    responses((status = 200, description = "The stored document", body = DocumentView),
              (status = 400, description = "Not sent as application/pdf", body = ErrorBody),
              (status = 404, description = "No such refund for this PSP", body = ErrorBody),
              (status = 413, description = "Larger than 10 MB", body = ErrorBody),
              (status = 422, description = "Not a PDF", body = ErrorBody)),
    security(("basic" = [])))]
async fn put_credit_note_document(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DocumentView>, ApiError> {
    let bytes = pdf_body(&headers, body).await?;
    Ok(Json(merchant_documents::put_credit_note(&state.services, psp.psp_id, id, &bytes).await?))
}

/// The states a support request can be listed by.
pub(crate) const SUPPORT_STATES: [&str; 2] = ["open", "answered"];
/// The states a payment claim can be listed by.
pub(crate) const CLAIM_STATES: [&str; 2] = ["open", "matched"];

/// `?state=&limit=&starting_after=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueParams {
    /// Only these (e.g. `open`).
    pub(crate) state: Option<String>,
    /// How many to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<i64>,
    /// Return objects older than this id (the last id of the previous page).
    pub(crate) starting_after: Option<uuid::Uuid>,
}

impl QueueParams {
    pub(crate) fn checked(&self, states: &[&str]) -> Result<(Option<&str>, i64), ApiError> {
        let lp = super::extract::ListParams { limit: self.limit, starting_after: self.starting_after };
        let limit = lp.limit()?;
        if let Some(s) = self.state.as_deref()
            && !states.contains(&s)
        {
            return Err(ApiError::Validation(vec![crate::domain::validate::FieldError {
                source: "state".into(),
                title: format!("state must be one of {}", states.join(", ")),
            }]));
        }
        Ok((self.state.as_deref(), limit))
    }
}

pub(crate) fn page<T>(mut rows: Vec<T>, limit: i64) -> Page<T> {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Page { data: rows, has_more }
}

/// List buyers' support requests (operator).
///
/// From the buyer portal, newest first; `state=open` is the queue to answer.
#[utoipa::path(get, path = "/admin/v1/support-requests", tag = "Operator", params(QueueParams),
    responses((status = 200, description = "A page of requests", body = Page<SupportView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid state or limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_support_requests(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<QueueParams>,
) -> Result<Json<Page<SupportView>>, ApiError> {
    let (st, limit) = q.checked(&SUPPORT_STATES)?;
    Ok(Json(page(portal::list_support(&state.services, st, q.starting_after, limit + 1).await?, limit)))
}

/// Get a support request (operator).
#[utoipa::path(get, path = "/admin/v1/support-requests/{support_request_id}", tag = "Operator",
    params(("support_request_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The request", body = SupportView),
              (status = 404, description = "No such request", body = ErrorBody)),
    security(("admin" = [])))]
async fn get_support_request(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<SupportView>, ApiError> {
    Ok(Json(portal::get_support(&state.services, id).await?))
}

/// Get a support request's attachment (operator).
#[utoipa::path(get, path = "/admin/v1/support-requests/{support_request_id}/attachment", tag = "Operator",
    params(("support_request_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The file (PDF, PNG or JPEG)", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, description = "No such request or no attachment", body = ErrorBody)),
    security(("admin" = [])))]
async fn support_attachment(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, ApiError> {
    let (bytes, ty, name) = portal::support_attachment(&state.services, None, id).await?;
    Ok(super::download_untrusted(bytes, &ty, &name, false))
}

/// Answer a support request (operator).
///
/// Once: the answer is stored, shown to the buyer in the portal and e-mailed (`support_answer`).
#[utoipa::path(post, path = "/admin/v1/support-requests/{support_request_id}/answer", tag = "Operator",
    params(("support_request_id" = uuid::Uuid, Path)), request_body = AnswerInput,
    responses((status = 200, description = "The answered request", body = SupportView),
              (status = 404, description = "No such request", body = ErrorBody),
              (status = 409, description = "Answered already", body = ErrorBody),
              (status = 422, description = "No answer text", body = ErrorBody)),
    security(("admin" = [])))]
async fn answer_support_request(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<AnswerInput>,
) -> Result<Json<SupportView>, ApiError> {
    Ok(Json(portal::answer_support(&state.services, id, body).await?))
}

/// List buyers' "I have paid" claims (operator).
///
/// What buyers say they paid (day and amount), newest first: look for it next to the unmatched
/// payments. `open` until a payment is booked on the invoice, then `matched`.
#[utoipa::path(get, path = "/admin/v1/payment-claims", tag = "Operator", params(QueueParams),
    responses((status = 200, description = "A page of claims", body = Page<ClaimView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid state or limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_payment_claims(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<QueueParams>,
) -> Result<Json<Page<ClaimView>>, ApiError> {
    let (st, limit) = q.checked(&CLAIM_STATES)?;
    Ok(Json(page(portal::list_claims(&state.services, st, q.starting_after, limit + 1).await?, limit)))
}
