//! `/admin/v1/operators` and `/admin/v1/audit-events` (SPEC §14.1, §14.2).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::operator_error;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::extract::{ApiJson, ApiQuery};
use crate::domain::validate::Violations;
use crate::service::audit::{self, Actor};
use crate::service::operators::{self, CreatedOperator, NewOperator, Operator, OperatorPatch};
use crate::store::audit::{AuditFilter, AuditRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_operator, list_operators))
        .routes(routes!(update_operator))
        .routes(routes!(reset_second_factor))
        .routes(routes!(list_audit_events))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorList {
    pub data: Vec<Operator>,
}

/// Create an operator.
///
/// The new operator sets a password through `set_password_url` (one-time, expiring) and, in
/// production, enrols a second factor at first sign-in. Audited with the caller as actor.
#[utoipa::path(post, path = "/admin/v1/operators", tag = "Operator",
    request_body = NewOperator,
    responses(
        (status = 202, description = "Held back by four eyes: a proposal that waits for another operator's approval (`POST /admin/v1/approvals/{approval_id}/approve`)", body = crate::service::approvals::Approval),
        (status = 201, description = "Operator created", body = CreatedOperator),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "The caller's roles do not allow it", body = ErrorBody),
        (status = 409, description = "An operator with this address exists", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("admin" = [])))]
async fn create_operator(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<NewOperator>,
) -> Result<(StatusCode, Json<CreatedOperator>), ApiError> {
    let created = operators::create(&state.services, &actor, body).await.map_err(operator_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List operators.
#[utoipa::path(get, path = "/admin/v1/operators", tag = "Operator",
    responses((status = 200, description = "Operators by name", body = OperatorList),
              (status = 401, description = "Missing or bad token", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_operators(State(state): State<AppState>) -> Result<Json<OperatorList>, ApiError> {
    Ok(Json(OperatorList { data: operators::list(&state.services).await.map_err(operator_error)? }))
}

/// Change an operator's roles, or deactivate/reactivate it.
///
/// Adding a role waits for a second operator (four eyes, 202). The last active admin keeps the
/// role and its access (409).
#[utoipa::path(patch, path = "/admin/v1/operators/{operator_id}", tag = "Operator",
    params(("operator_id" = uuid::Uuid, Path)),
    request_body = OperatorPatch,
    responses(
        (status = 200, description = "The operator", body = Operator),
        (status = 202, description = "Held back by four eyes (a role is added): a proposal that waits for another operator's approval", body = crate::service::approvals::Approval),
        (status = 403, description = "The caller's roles do not allow it", body = ErrorBody),
        (status = 404, description = "No such operator", body = ErrorBody),
        (status = 409, description = "The last active admin", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
    ),
    security(("admin" = [])))]
async fn update_operator(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<OperatorPatch>,
) -> Result<Json<Operator>, ApiError> {
    Ok(Json(operators::update(&state.services, &actor, id, body).await.map_err(operator_error)?))
}

/// Remove an operator's second factor (a lost phone): its sessions end and it enrols again.
#[utoipa::path(post, path = "/admin/v1/operators/{operator_id}/second-factor-reset", tag = "Operator",
    params(("operator_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "The operator", body = Operator),
        (status = 403, description = "The caller's roles do not allow it", body = ErrorBody),
        (status = 404, description = "No such operator", body = ErrorBody),
    ),
    security(("admin" = [])))]
async fn reset_second_factor(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Json<Operator>, ApiError> {
    Ok(Json(operators::reset_second_factor(&state.services, &actor, id).await.map_err(operator_error)?))
}

/// Filters of the audit trail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// An operator's id, or an actor's label (`cli`, `admin_token`, a name).
    pub actor: Option<String>,
    /// An action, e.g. `operator.created`.
    pub action: Option<String>,
    /// The id of the object acted on.
    pub object: Option<String>,
    /// From this time (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Up to this time (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Records older than this sequence number (the last `seq` of the previous page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// How many records to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

impl AuditParams {
    pub fn filter(&self) -> Result<(AuditFilter, i64), ApiError> {
        let mut v = Violations::new();
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            v.add("limit", "limit must be between 1 and 100");
        }
        if self.before.is_some_and(|b| b < 1) {
            v.add("before", "before must be at least 1");
        }
        let text = |v: &mut Violations, name: &str, s: &Option<String>| {
            let s = s.as_deref().map(str::trim).filter(|s| !s.is_empty());
            if s.is_some_and(|s| s.chars().count() > 200) {
                v.add(name, format!("{name} must be at most 200 characters"));
            }
            s.map(str::to_owned)
        };
        let f = AuditFilter {
            actor: text(&mut v, "actor", &self.actor),
            action: text(&mut v, "action", &self.action),
            object: text(&mut v, "object", &self.object),
            from: self.from,
            to: self.to,
            before_seq: self.before,
        };
        v.finish().map_err(ApiError::Validation)?;
        Ok((f, limit))
    }
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    pub audit_event_id: uuid::Uuid,
    pub at: DateTime<Utc>,
    /// `operator`, `token`, `cli`, `admin_token` or `anonymous` (a sign-in attempt).
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub reason: Option<String>,
    /// What changed (before → after) or the facts of the action; secrets never, personal data
    /// masked where the change does not need it.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// SHA-256 of this record's content and the previous record's hash (hex).
    pub hash: String,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> AuditEvent {
        AuditEvent {
            seq: r.seq,
            audit_event_id: r.id,
            at: r.at,
            actor_kind: r.actor_kind,
            actor_id: r.actor_id,
            actor: r.actor_label,
            action: r.action,
            object_kind: r.object_kind,
            object_id: r.object_id,
            reason: r.reason,
            changes: serde_json::from_str(&r.changes).unwrap_or(serde_json::Value::Null),
            request_id: r.request_id,
            client_ip: r.client_ip,
            hash: hex::encode(&r.hash),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEvent>,
    pub has_more: bool,
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/admin/v1/audit-events", tag = "Operator",
    params(AuditParams),
    responses((status = 200, description = "Audit records, newest first", body = AuditPage),
              (status = 401, description = "Missing or bad token", body = ErrorBody),
              (status = 422, description = "Invalid filter", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_audit_events(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    let (f, limit) = q.filter()?;
    let mut rows = audit::list(&state.services, &f, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(20));
    Ok(Json(AuditPage { data: rows.into_iter().map(AuditEvent::from).collect(), has_more }))
}
