//! The operator's dunning: the policy, the base-rate table, and pausing one invoice's dunning.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use crate::domain::dunning::{BaseRate, Policy};
use crate::domain::ids::CaptureId;
use crate::service::captures::{self, Capture};
use crate::service::dunning::{self, BaseRateInput, PauseInput, ResumeInput};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(list_base_rates))
        .routes(routes!(put_base_rate))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

/// Get the dunning policy in force (operator).
#[utoipa::path(get, path = "/admin/v1/dunning-policy", tag = "Operator",
    responses((status = 200, description = "The policy: the stored one, else the configuration's", body = Policy)),
    security(("admin" = [])))]
async fn get_policy(State(state): State<AppState>) -> Result<Json<Policy>, ApiError> {
    let mut conn = state.db.conn().await?;
    Ok(Json(dunning::policy(&state.services, &mut conn).await?))
}

/// Replace the dunning policy (operator).
///
/// The reminder before the due date, the levels with their days after it, whether each charges
/// the flat fee (once per invoice) and starts default interest, and the day of hand-over to
/// collection. Fields left out take the defaults (SPEC §9.3). Invoices keep the steps they have
/// taken; their next step follows the new policy.
#[utoipa::path(put, path = "/admin/v1/dunning-policy", tag = "Operator", request_body = Policy,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "The new policy", body = Policy),
              (status = 400, description = "Unreadable body or unknown field", body = ErrorBody),
              (status = 422, description = "Invalid fields, with their paths", body = ErrorBody)),
    security(("admin" = [])))]
async fn put_policy(State(state): State<AppState>, ApiJson(policy): ApiJson<Policy>) -> Result<Json<Policy>, ApiError> {
    Ok(Json(dunning::set_policy(&state.services, policy).await?))
}

/// List the base rates (operator).
///
/// The base rate of §247 BGB by the date it took effect; default interest for each day uses the
/// row in force that day, plus the policy's points.
#[utoipa::path(get, path = "/admin/v1/base-rates", tag = "Operator",
    responses((status = 200, description = "The table, oldest first", body = Vec<BaseRate>)),
    security(("admin" = [])))]
async fn list_base_rates(State(state): State<AppState>) -> Result<Json<Vec<BaseRate>>, ApiError> {
    Ok(Json(dunning::base_rates(&state.services).await?))
}

/// Add or correct a base rate (operator).
///
/// The Bundesbank publishes the rate for each half-year; enter it before 1 January and 1 July.
#[utoipa::path(put, path = "/admin/v1/base-rates/{valid_from}", tag = "Operator",
    params(("valid_from" = chrono::NaiveDate, Path, description = "The date it takes effect: YYYY-01-01 or YYYY-07-01")),
    request_body = BaseRateInput,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "The row", body = BaseRate),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("admin" = [])))]
async fn put_base_rate(
    State(state): State<AppState>,
    ApiPath(valid_from): ApiPath<String>,
    ApiJson(body): ApiJson<BaseRateInput>,
) -> Result<Json<BaseRate>, ApiError> {
    Ok(Json(dunning::put_base_rate(&state.services, &valid_from, body).await?))
}

/// Pause an invoice's dunning (operator).
///
/// No reminder, level or hand-over happens until `until` (on the PSP's clock) or a resume;
/// `dunning.paused` goes to the PSP with the reason.
#[utoipa::path(post, path = "/admin/v1/captures/{capture_id}/dunning/pause", tag = "Operator",
    params(("capture_id" = CaptureId, Path)), request_body = PauseInput,
    responses((status = 200, description = "The invoice", body = Capture),
              (status = 404, description = "No such invoice", body = ErrorBody),
              (status = 409, description = "Paid, canceled or in collection", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("admin" = [])))]
async fn pause(
    State(state): State<AppState>,
    axum::Extension(actor): axum::Extension<crate::service::audit::Actor>,
    ApiPath(id): ApiPath<CaptureId>,
    ApiJson(body): ApiJson<PauseInput>,
) -> Result<Json<Capture>, ApiError> {
    let psp_id = dunning::pause(&state.services, id, body, actor.roles.pause_limit_days()).await?;
    Ok(Json(captures::get_capture(&state.services, psp_id, id).await?))
}

/// Resume an invoice's paused dunning (operator).
#[utoipa::path(post, path = "/admin/v1/captures/{capture_id}/dunning/resume", tag = "Operator",
    params(("capture_id" = CaptureId, Path)), request_body = ResumeInput,
    responses((status = 200, description = "The invoice", body = Capture),
              (status = 404, description = "No such invoice", body = ErrorBody),
              (status = 409, description = "Not paused", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("admin" = [])))]
async fn resume(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<CaptureId>,
    ApiJson(body): ApiJson<ResumeInput>,
) -> Result<Json<Capture>, ApiError> {
    let psp_id = dunning::resume(&state.services, id, body).await?;
    Ok(Json(captures::get_capture(&state.services, psp_id, id).await?))
}
