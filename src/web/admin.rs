//! `/admin/v1`: the operator's API (bearer token).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, ListParams};
use super::merchants::Page;
use crate::domain::ids::{CredentialId, PspId};
use crate::domain::psp::{Psp, PspInput, PspPatch};
use crate::service::psps::{self, CreatedPsp, IssuedCredential, PspError};
use crate::store::psps::CredentialInfo;

impl From<PspError> for ApiError {
    fn from(e: PspError) -> ApiError {
        match e {
            PspError::NotFound => ApiError::not_found("psp"),
            PspError::CredentialNotFound => ApiError::not_found("credential"),
            PspError::Invalid(v) => ApiError::Validation(v),
            PspError::Store(s) => s.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_psp, list_psps))
        .routes(routes!(get_psp, update_psp))
        .routes(routes!(issue_credential, list_credentials))
        .routes(routes!(revoke_credential))
}

/// Activate a PSP.
///
/// Creates the PSP with its first API credential. The password is never part of a response: it
/// is revealed once at `password_url`.
#[utoipa::path(post, path = "/admin/v1/psps", tag = "Operator",
    request_body = PspInput,
    responses(
        (status = 201, description = "PSP created", body = CreatedPsp),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 401, description = "Missing or bad admin token", body = ErrorBody),
        (status = 403, description = "Admin API disabled", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("admin" = [])))]
async fn create_psp(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PspInput>,
) -> Result<(StatusCode, Json<CreatedPsp>), ApiError> {
    let settings = body.validate().map_err(ApiError::Validation)?;
    Ok((StatusCode::CREATED, Json(psps::create(&state.services, &settings).await?)))
}

/// List PSPs.
#[utoipa::path(get, path = "/admin/v1/psps", tag = "Operator",
    params(ListParams),
    responses((status = 200, description = "PSPs, newest first", body = Page<Psp>),
              (status = 401, description = "Missing or bad admin token", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_psps(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Psp>>, ApiError> {
    let limit = q.limit()?;
    let rows = psps::list(&state.services, limit + 1, q.starting_after.map(PspId)).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Get a PSP.
#[utoipa::path(get, path = "/admin/v1/psps/{psp_id}", tag = "Operator",
    params(("psp_id" = PspId, Path)),
    responses((status = 200, description = "The PSP", body = Psp),
              (status = 404, description = "No such PSP", body = ErrorBody)),
    security(("admin" = [])))]
async fn get_psp(State(state): State<AppState>, ApiPath(id): ApiPath<PspId>) -> Result<Json<Psp>, ApiError> {
    Ok(Json(psps::get(&state.services, id).await?))
}

/// Change a PSP's fees, payout account or payout frequency.
#[utoipa::path(patch, path = "/admin/v1/psps/{psp_id}", tag = "Operator",
    params(("psp_id" = PspId, Path)),
    request_body = PspPatch,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 200, description = "The updated PSP", body = Psp),
              (status = 404, description = "No such PSP", body = ErrorBody),
              (status = 422, description = "Invalid fields", body = ErrorBody)),
    security(("admin" = [])))]
async fn update_psp(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<PspId>,
    ApiJson(body): ApiJson<PspPatch>,
) -> Result<Json<Psp>, ApiError> {
    Ok(Json(psps::update(&state.services, id, body).await?))
}

/// Issue another credential (rotation).
///
/// The old credentials keep working until they are revoked.
#[utoipa::path(post, path = "/admin/v1/psps/{psp_id}/credentials", tag = "Operator",
    params(("psp_id" = PspId, Path)),
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),(status = 201, description = "New credential; its password is behind password_url", body = IssuedCredential),
              (status = 404, description = "No such PSP", body = ErrorBody)),
    security(("admin" = [])))]
async fn issue_credential(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<PspId>,
) -> Result<(StatusCode, Json<IssuedCredential>), ApiError> {
    Ok((StatusCode::CREATED, Json(psps::issue_credential(&state.services, id).await?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialList {
    pub data: Vec<CredentialInfo>,
}

/// List a PSP's credentials.
#[utoipa::path(get, path = "/admin/v1/psps/{psp_id}/credentials", tag = "Operator",
    params(("psp_id" = PspId, Path)),
    responses((status = 200, description = "Credentials, newest first (never their secrets)", body = CredentialList),
              (status = 404, description = "No such PSP", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_credentials(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<PspId>,
) -> Result<Json<CredentialList>, ApiError> {
    Ok(Json(CredentialList { data: psps::list_credentials(&state.services, id).await? }))
}

/// Revoke a credential.
///
/// It stops working at once. Revoking a revoked credential changes nothing.
#[utoipa::path(post, path = "/admin/v1/psps/{psp_id}/credentials/{credential_id}/revoke", tag = "Operator",
    params(("psp_id" = PspId, Path), ("credential_id" = CredentialId, Path)),
    responses((status = 200, description = "The revoked credential", body = CredentialInfo),
              (status = 404, description = "No such credential for this PSP", body = ErrorBody)),
    security(("admin" = [])))]
async fn revoke_credential(
    State(state): State<AppState>,
    ApiPath((psp_id, id)): ApiPath<(PspId, CredentialId)>,
) -> Result<Json<CredentialInfo>, ApiError> {
    Ok(Json(psps::revoke_credential(&state.services, psp_id, id).await?))
}
