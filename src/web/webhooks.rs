//! `/v1/webhook-endpoints` and `/v1/events`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthedPsp, ListParams};
use super::idempotency::{Idem, respond};
use super::merchants::Page;
use crate::domain::ids::{AttemptId, EndpointId, EventId};
use crate::service::webhooks::{self, CreatedEndpoint, EndpointInput, EventDetail, RotatedSecret, WebhookError};
use crate::store::events::Event;
use crate::store::webhooks::{Attempt, Endpoint};

/// Redeliveries a PSP may ask for per minute (per process) before 429.
pub const REDELIVERIES_PER_MINUTE: u32 = 60;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        match e {
            WebhookError::NotFound(what) => ApiError::not_found(what),
            WebhookError::Invalid(v) => ApiError::Validation(v),
            WebhookError::TooMany => ApiError::conflict(e.to_string()),
            WebhookError::Store(s) => s.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(list_attempts))
        .routes(routes!(redeliver))
}

/// Create a webhook endpoint.
///
/// Deliveries follow Standard Webhooks: headers `webhook-id` (the event id, stable across
/// retries), `webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
/// "id.timestamp.body">` under the endpoint's secret). Any answer but 2xx is a failure and is
/// retried with exponential backoff for about three days; 410 disables the endpoint.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "Webhooks",
    request_body = EndpointInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses(
        (status = 201, description = "Endpoint created; the secret is shown only here", body = CreatedEndpoint),
        (status = 400, description = "Unreadable body", body = ErrorBody),
        (status = 409, description = "Too many endpoints", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("basic" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiJson(body): ApiJson<EndpointInput>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let created = webhooks::create_endpoint(&state.services, &mut tx, psp.psp_id, body).await?;
    respond(tx, &idem, StatusCode::CREATED, &created).await
}

/// List webhook endpoints.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "Webhooks", params(ListParams),
    responses((status = 200, description = "Endpoints, newest first", body = Page<Endpoint>)),
    security(("basic" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Endpoint>>, ApiError> {
    let limit = q.limit()?;
    let rows =
        webhooks::list_endpoints(&state.services, psp.psp_id, limit + 1, q.starting_after.map(EndpointId)).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Get a webhook endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "Webhooks",
    params(("endpoint_id" = EndpointId, Path)),
    responses((status = 200, description = "The endpoint", body = Endpoint),
              (status = 404, description = "No such endpoint", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<EndpointId>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(webhooks::get_endpoint(&state.services, psp.psp_id, id).await?))
}

/// Delete a webhook endpoint.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "Webhooks",
    params(("endpoint_id" = EndpointId, Path)),
    responses((status = 204, description = "Deleted; pending deliveries to it are dropped"),
              (status = 404, description = "No such endpoint", body = ErrorBody)),
    security(("basic" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<EndpointId>,
) -> Result<StatusCode, ApiError> {
    webhooks::delete_endpoint(&state.services, psp.psp_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an endpoint's secret.
///
/// The new secret signs every delivery from now on; the old one adds a second signature for 24 h.
/// With an `Idempotency-Key`, a retry answers the same new secret instead of rotating again.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "Webhooks",
    params(("endpoint_id" = EndpointId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 200, description = "The new secret, shown only here", body = RotatedSecret),
              (status = 404, description = "No such endpoint", body = ErrorBody)),
    security(("basic" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<EndpointId>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin().await?;
    let rotated = webhooks::rotate_secret(&state.services, &mut tx, psp.psp_id, id).await?;
    respond(tx, &idem, StatusCode::OK, &rotated).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// How many events to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Return events older than this id.
    starting_after: Option<uuid::Uuid>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
}

/// List events.
#[utoipa::path(get, path = "/v1/events", tag = "Webhooks", params(EventQuery),
    responses((status = 200, description = "Events, newest first", body = Page<Event>)),
    security(("basic" = [])))]
async fn list_events(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    let limit = ListParams { limit: q.limit, starting_after: None }.limit()?;
    let rows = webhooks::list_events(
        &state.services,
        psp.psp_id,
        limit + 1,
        q.starting_after.map(EventId),
        q.event_type.as_deref(),
    )
    .await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Get an event with its deliveries and every attempt.
#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "Webhooks",
    params(("event_id" = EventId, Path)),
    responses((status = 200, description = "The event", body = EventDetail),
              (status = 404, description = "No such event", body = ErrorBody)),
    security(("basic" = [])))]
async fn get_event(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<EventId>,
) -> Result<Json<EventDetail>, ApiError> {
    Ok(Json(webhooks::get_event(&state.services, psp.psp_id, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AttemptQuery {
    /// How many attempts to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Return attempts older than this one (the last `attempt_id` of the previous page).
    starting_after: Option<AttemptId>,
    /// Only the attempts to this endpoint.
    endpoint_id: Option<EndpointId>,
}

/// List an event's delivery attempts.
///
/// Every attempt to every endpoint, newest first, in pages; the event itself shows only the latest
/// few of each delivery (and `attempts_total`).
#[utoipa::path(get, path = "/v1/events/{event_id}/attempts", tag = "Webhooks",
    params(("event_id" = EventId, Path), AttemptQuery),
    responses((status = 200, description = "Attempts, newest first", body = Page<Attempt>),
              (status = 404, description = "No such event", body = ErrorBody)),
    security(("basic" = [])))]
async fn list_attempts(
    State(state): State<AppState>,
    psp: AuthedPsp,
    ApiPath(id): ApiPath<EventId>,
    ApiQuery(q): ApiQuery<AttemptQuery>,
) -> Result<Json<Page<Attempt>>, ApiError> {
    let limit = ListParams { limit: q.limit, starting_after: None }.limit()?;
    let rows = webhooks::attempts(&state.services, psp.psp_id, id, q.endpoint_id, q.starting_after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Redeliver an event.
///
/// Schedules the event again, at once, to every enabled endpoint that wants its type. At most 60
/// redeliveries per minute per PSP; more are answered 429 with `Retry-After`.
#[utoipa::path(post, path = "/v1/events/{event_id}/redeliver", tag = "Webhooks",
    params(("event_id" = EventId, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    responses((status = 202, description = "Scheduled", body = EventDetail),
              (status = 404, description = "No such event", body = ErrorBody),
              (status = 429, description = "Too many redeliveries in the last minute (`rate_limited`)", body = ErrorBody)),
    security(("basic" = [])))]
async fn redeliver(
    State(state): State<AppState>,
    psp: AuthedPsp,
    idem: Idem,
    ApiPath(id): ApiPath<EventId>,
) -> Result<Response, ApiError> {
    state.redeliveries.hit(psp.psp_id).map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let mut tx = state.db.begin().await?;
    let detail = webhooks::redeliver(&state.services, &mut tx, psp.psp_id, id).await?;
    respond(tx, &idem, StatusCode::ACCEPTED, &detail).await
}
