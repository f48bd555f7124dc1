//! `/v1/sandbox/…`: the helpers a PSP uses to see what happens after the purchase without waiting
//! for it (SPEC §11). Every one answers 403 `forbidden` in production.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, AuthedPsp};
use super::idempotency::{Idem, respond};
use crate::service::clock::{self, AdvanceInput, Advanced, ClockView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_clock)).routes(routes!(advance_clock))
}

/// The sandbox helpers exist only in a sandbox.
pub fn sandbox_only(state: &AppState) -> Result<(), ApiError> {
    if state.config.is_sandbox() {
        Ok(())
    } else {
        Err(ApiError::Forbidden { code: "forbidden", title: "sandbox helpers are not available in production".into() })
    }
}

/// Read the PSP's sandbox clock.
///
/// Each sandbox PSP has its own clock: every time-dependent rule about its objects (session and
/// authorization expiry, due dates, reminders, dunning) reads it. It starts at the real time and
/// only moves forward.
#[utoipa::path(get, path = "/v1/sandbox/clock", tag = "Sandbox",
    responses((status = 200, description = "The PSP's clock", body = ClockView),
              (status = 403, description = "Production", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_clock(State(state): State<AppState>, psp: AuthedPsp) -> Result<Json<ClockView>, ApiError> {
    sandbox_only(&state)?;
    Ok(Json(clock::get(&state.services, psp.psp_id).await?))
}

/// Advance the PSP's sandbox clock.
///
/// Moves the clock forward by `days` or to the date `to` (at most 366 days, never back) and
/// answers once everything that became due for this PSP's objects on the way has run, day by
/// day in time order (reminders before dunning levels), each event and message dated at its own
/// moment. Webhooks are then delivered as usual. Other PSPs' clocks do not move.
#[utoipa::path(post, path = "/v1/sandbox/clock/advance", tag = "Sandbox",
    request_body = AdvanceInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 200, description = "The clock after the advance, and what ran", body = Advanced),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 403, description = "Production", body = ErrorBody),
        (status = 409, description = "Another advance of this clock is running", body = ErrorBody),
        (status = 422, description = "Backwards, more than 366 days, or not exactly one of days and to", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn advance_clock(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<AdvanceInput>,
) -> Result<Response, ApiError> {
    sandbox_only(&state)?;
    let advanced = match &idem.0 {
        // With a key, `days` means the date it reaches from where the clock stood at the first
        // attempt: a retry after a crash finishes that advance rather than starting another.
        Some(k) => {
            let target = clock::target_of(&state.services, psp.psp_id, &body).await;
            let fresh = target.as_ref().ok().map(ToString::to_string);
            let pinned = crate::store::idempotency::pin(&state.db, k.psp_id, &k.key, k.token, fresh.as_deref()).await?;
            match pinned.and_then(|p| p.parse::<chrono::NaiveDate>().ok()) {
                Some(t) => clock::advance_until(&state.services, psp.psp_id, t).await?,
                None => {
                    return Err(target
                        .err()
                        .map_or_else(|| ApiError::Internal("unreadable pinned target".into()), Into::into));
                }
            }
        }
        None => clock::advance(&state.services, psp.psp_id, &body).await?,
    };
    let tx = state.db.begin().await?;
    respond(tx, &idem, StatusCode::OK, &advanced).await
}
