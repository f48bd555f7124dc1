//! Disputes (SPEC §10): the PSP reads and defends its disputes (and opens one in a sandbox); the
//! operator opens, reads and closes them and fetches the defence's documents.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::documents::{QueueParams, page};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp, parse_json};
use super::idempotency::{Idem, respond};
use super::merchants::Page;
use super::sandbox::sandbox_only;
use crate::service::disputes::{self, CloseInput, DefendInput, DisputeView, MAX_DEFENCE_BODY, OpenInput};

pub(crate) const STATES: [&str; 3] = ["open", "resolved", "chargeback"];

pub fn psp_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_disputes))
        .routes(routes!(get_dispute))
        .routes(routes!(defend))
        .routes(routes!(sandbox_dispute))
}

pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list, admin_open))
        .routes(routes!(admin_get))
        .routes(routes!(admin_close))
        .routes(routes!(admin_document))
}

/// The largest body a POST to `path` may have: a defence carries its documents.
pub fn body_limit(path: &str, default: usize) -> usize {
    if path.starts_with("/v1/disputes/") && path.ends_with("/defend") { MAX_DEFENCE_BODY.max(default) } else { default }
}

/// List disputes.
///
/// Newest first, `state` = `open`, `resolved` or `chargeback`. A dispute is opened on an invoice
/// by the buyer (portal), an operator or, in a sandbox, by `POST /v1/sandbox/disputes`.
#[utoipa::path(get, path = "/v1/disputes", tag = "Disputes", params(QueueParams),
    responses((status = 200, description = "A page of disputes", body = Page<DisputeView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid state or limit", body = ErrorBody)),
    security(("basic" = [])))]
async fn list_disputes(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<QueueParams>,
) -> Result<Json<Page<DisputeView>>, ApiError> {
    let (st, limit) = q.checked(&STATES)?;
    let rows = disputes::list(&state.services, Some(psp.psp_id), st, q.starting_after, limit + 1).await?;
    Ok(Json(page(rows, limit)))
}

/// Get a dispute.
#[utoipa::path(get, path = "/v1/disputes/{dispute_id}", tag = "Disputes",
    params(("dispute_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The dispute", body = DisputeView),
              (status = 404, description = "No such dispute for this PSP", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_dispute(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<DisputeView>, ApiError> {
    Ok(Json(disputes::get(&state.services, Some(psp.psp_id), id).await?))
}

/// Defend a dispute.
///
/// Once, before its deadline: the answer and up to 3 documents (base64 PDF, PNG or JPEG, each at
/// most 10 MB; checked by their content). The operator then decides. Undefended at the deadline,
/// the dispute becomes a chargeback.
#[utoipa::path(post, path = "/v1/disputes/{dispute_id}/defend", tag = "Disputes",
    params(("dispute_id" = uuid::Uuid, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    request_body = DefendInput,
    responses((status = 200, description = "The dispute with its defence", body = DisputeView),
              (status = 400, description = "Unreadable body", body = ErrorBody),
              (status = 404, description = "No such dispute for this PSP", body = ErrorBody),
              (status = 409, description = "Closed, defended already, or past its deadline", body = ErrorBody),
              (status = 413, description = "Body larger than the documents allow", body = ErrorBody),
              (status = 422, description = "No reason, or a document of the wrong type or size", body = ErrorBody)),
    security(("basic" = [])))]
async fn defend(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<uuid::Uuid>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !super::extract::is_json(headers.get(header::CONTENT_TYPE)) {
        return Err(ApiError::bad_request("Content-Type must be application/json", None));
    }
    let bytes = crate::web::extract::read_body(body, MAX_DEFENCE_BODY).await?;
    let input: DefendInput = parse_json(&bytes)?;
    drop(bytes);
    let view = disputes::defend(&state.services, psp.psp_id, id, input).await?;
    let tx = state.db.begin().await?;
    respond(tx, &idem, StatusCode::OK, &view).await
}

/// Simulate a dispute.
///
/// Opens a dispute on one of this PSP's invoices, as a buyer or an operator would: reason code,
/// amount (default: what the invoice still bills), deadline (default 12 days on the PSP's clock).
/// Sends `dispute.opened`; dunning of the invoice pauses while it is open.
#[utoipa::path(post, path = "/v1/sandbox/disputes", tag = "Sandbox", request_body = OpenInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 201, description = "The dispute", body = DisputeView),
              (status = 400, description = "Unreadable body", body = ErrorBody),
              (status = 403, description = "Production", body = ErrorBody),
              (status = 404, description = "No such capture for this PSP", body = ErrorBody),
              (status = 409, description = "A dispute is open already, or nothing is left to dispute", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("basic" = [])))]
async fn sandbox_dispute(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<OpenInput>,
) -> Result<Response, ApiError> {
    sandbox_only(&state)?;
    let mut tx = state.db.begin().await?;
    let view = disputes::open(&state.services, &mut tx, Some(psp.psp_id), body, "sandbox").await?;
    respond(tx, &idem, StatusCode::CREATED, &view).await
}

/// List disputes (operator).
///
/// Of every PSP, newest first; `state=open` is the queue to decide.
#[utoipa::path(get, path = "/admin/v1/disputes", tag = "Operator", params(QueueParams),
    responses((status = 200, description = "A page of disputes", body = Page<DisputeView>),
              (status = 400, description = "Unreadable query", body = ErrorBody),
              (status = 422, description = "Invalid state or limit", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<QueueParams>,
) -> Result<Json<Page<DisputeView>>, ApiError> {
    let (st, limit) = q.checked(&STATES)?;
    Ok(Json(page(disputes::list(&state.services, None, st, q.starting_after, limit + 1).await?, limit)))
}

/// Open a dispute (operator).
///
/// On any invoice, with a reason code, an amount (default: what the invoice still bills) and a
/// deadline for the PSP's defence (`deadline_days`, default 12). Sends `dispute.opened`.
#[utoipa::path(post, path = "/admin/v1/disputes", tag = "Operator", request_body = OpenInput,
    responses((status = 201, description = "The dispute", body = DisputeView),
              (status = 400, description = "Unreadable body", body = ErrorBody),
              (status = 404, description = "No such capture", body = ErrorBody),
              (status = 409, description = "A dispute is open already, or nothing is left to dispute", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_open(State(state): State<AppState>, ApiJson(body): ApiJson<OpenInput>) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let view = disputes::open(&state.services, &mut tx, None, body, "operator").await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Get a dispute (operator).
#[utoipa::path(get, path = "/admin/v1/disputes/{dispute_id}", tag = "Operator",
    params(("dispute_id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The dispute", body = DisputeView),
              (status = 404, description = "No such dispute", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<DisputeView>, ApiError> {
    Ok(Json(disputes::get(&state.services, None, id).await?))
}

/// Close a dispute (operator).
///
/// `resolved`: the buyer owes the invoice as before and dunning resumes. `chargeback`: the buyer
/// owes the disputed amount no longer (what it had paid of it becomes its credit) and the PSP's
/// next payout bears it. Sends `dispute.closed`.
#[utoipa::path(post, path = "/admin/v1/disputes/{dispute_id}/close", tag = "Operator",
    params(("dispute_id" = uuid::Uuid, Path)), request_body = CloseInput,
    responses((status = 200, description = "The closed dispute", body = DisputeView),
              (status = 400, description = "Unreadable body", body = ErrorBody),
              (status = 404, description = "No such dispute", body = ErrorBody),
              (status = 409, description = "Closed already", body = ErrorBody),
              (status = 422, description = "Invalid result", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_close(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<CloseInput>,
) -> Result<Json<DisputeView>, ApiError> {
    Ok(Json(disputes::close(&state.services, id, body).await?.1))
}

/// A document of a dispute's defence (operator).
#[utoipa::path(get, path = "/admin/v1/disputes/{dispute_id}/documents/{seq}", tag = "Operator",
    params(("dispute_id" = uuid::Uuid, Path), ("seq" = i64, Path)),
    responses((status = 200, description = "The document", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, description = "No such document", body = ErrorBody)),
    security(("admin" = [])))]
async fn admin_document(
    State(state): State<AppState>,
    ApiPath((id, seq)): ApiPath<(uuid::Uuid, i64)>,
) -> Result<Response, ApiError> {
    let (ty, name, bytes) = disputes::document(&state.services, id, seq).await?;
    Ok(super::download_untrusted(bytes, &ty, &name, false))
}
