//! `/v1/merchants` and `/v1/legal-forms`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp, ListParams};
use super::idempotency::{Idem, respond};
use crate::domain::ids::MerchantId;
use crate::domain::legal_forms::{LEGAL_FORMS, LegalForm};
use crate::domain::merchant::{Merchant, MerchantActivation, MerchantStatus};
use crate::service::merchants::{self, MerchantError};

impl From<MerchantError> for ApiError {
    fn from(e: MerchantError) -> ApiError {
        match e {
            MerchantError::NotFound => ApiError::not_found("merchant"),
            MerchantError::DuplicateExternalId(_) => ApiError::already_exists(e.to_string()),
            MerchantError::Store(s) => s.into(),
        }
    }
}

/// A page of a list, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Whether older objects follow; fetch them with `starting_after` = the last id.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows.
    pub fn from_rows(mut rows: Vec<T>, limit: i64) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Page { data: rows, has_more }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(activate_merchant, list_merchants))
        .routes(routes!(get_merchant))
        .routes(routes!(deactivate_merchant))
        .routes(routes!(reactivate_merchant))
}

pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(legal_forms))
}

/// Activate a merchant.
///
/// Registers one of the PSP's merchants with netterms. `external_id` is the PSP's own reference
/// and must be unique among the PSP's merchants.
#[utoipa::path(post, path = "/v1/merchants", tag = "Merchants",
    request_body = MerchantActivation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, description = "Merchant activated", body = Merchant),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 401, description = "Missing or bad credentials", body = ErrorBody),
        (status = 409, description = "Duplicate external_id, or the same Idempotency-Key in flight", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn activate_merchant(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<MerchantActivation>,
) -> Result<Response, ApiError> {
    let new = body.validate().map_err(ApiError::Validation)?;
    let mut tx = state.db.begin().await?;
    let merchant = merchants::activate(&state.services, &mut tx, psp.psp_id, &new).await?;
    tracing::info!(merchant_id = %merchant.merchant_id, "merchant activated");
    respond(tx, &idem, StatusCode::CREATED, &merchant).await
}

/// List merchants.
#[utoipa::path(get, path = "/v1/merchants", tag = "Merchants",
    params(ListParams),
    responses(
        (status = 200, description = "The PSP's merchants, newest first", body = Page<Merchant>),
        (status = 401, description = "Missing or bad credentials", body = ErrorBody),
        (status = 422, description = "Invalid limit", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn list_merchants(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Merchant>>, ApiError> {
    let limit = q.limit()?;
    let rows = merchants::list(&state.services, psp.psp_id, limit + 1, q.starting_after.map(MerchantId)).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Get a merchant.
#[utoipa::path(get, path = "/v1/merchants/{merchant_id}", tag = "Merchants",
    params(("merchant_id" = MerchantId, Path)),
    responses(
        (status = 200, description = "The merchant", body = Merchant),
        (status = 401, description = "Missing or bad credentials", body = ErrorBody),
        (status = 404, description = "No such merchant for this PSP", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn get_merchant(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<MerchantId>,
) -> Result<Json<Merchant>, ApiError> {
    Ok(Json(merchants::get(&state.services, psp.psp_id, id).await?))
}

async fn set_status(
    state: AppState,
    psp: AuthedPsp,
    idem: Idem,
    id: MerchantId,
    to: MerchantStatus,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let merchant = merchants::set_status(&state.services, &mut tx, psp.psp_id, id, to).await?;
    respond(tx, &idem, StatusCode::OK, &merchant).await
}

/// Deactivate a merchant.
///
/// New checkout sessions for the merchant are refused with 403 `merchant_inactive`; existing
/// orders run on. Deactivating an inactive merchant changes nothing.
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/deactivate", tag = "Merchants",
    params(("merchant_id" = MerchantId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 200, description = "The merchant, now inactive", body = Merchant),
        (status = 401, description = "Missing or bad credentials", body = ErrorBody),
        (status = 404, description = "No such merchant for this PSP", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn deactivate_merchant(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<MerchantId>,
) -> Result<Response, ApiError> {
    set_status(state, psp, idem, id, MerchantStatus::Inactive).await
}

/// Reactivate a merchant.
#[utoipa::path(post, path = "/v1/merchants/{merchant_id}/reactivate", tag = "Merchants",
    params(("merchant_id" = MerchantId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 200, description = "The merchant, active again", body = Merchant),
        (status = 401, description = "Missing or bad credentials", body = ErrorBody),
        (status = 404, description = "No such merchant for this PSP", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn reactivate_merchant(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<MerchantId>,
) -> Result<Response, ApiError> {
    set_status(state, psp, idem, id, MerchantStatus::Active).await
}

/// The legal forms netterms knows.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegalFormList {
    pub data: Vec<LegalForm>,
}

/// List legal forms.
///
/// The codes accepted as `legal_form`, and which identifier each requires. No authentication.
#[utoipa::path(get, path = "/v1/legal-forms", tag = "Reference data",
    responses((status = 200, description = "All legal forms", body = LegalFormList)))]
async fn legal_forms() -> Json<LegalFormList> {
    Json(LegalFormList { data: LEGAL_FORMS.to_vec() })
}
