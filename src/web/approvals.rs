//! `/admin/v1/approvals` (SPEC §14.2): the proposals four eyes holds back, and their decision.
//! An approval runs the proposed request again through the admin router as the approver (so
//! the same permission check, operation and use case apply, against the state of that moment);
//! its first commit marks the proposal approved in the same transaction.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tower::ServiceExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::service::approvals::{self, Approval, ApprovalError};
use crate::service::audit::Actor;
use crate::store::approvals::Decision;

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> ApiError {
        match e {
            ApprovalError::NotFound => ApiError::not_found("approval"),
            ApprovalError::Conflict(t) => ApiError::conflict(t),
            ApprovalError::Forbidden(t) => ApiError::Forbidden { code: "forbidden", title: t },
            ApprovalError::Invalid(t) => {
                ApiError::Validation(vec![crate::domain::validate::FieldError { source: "reason".into(), title: t }])
            }
            ApprovalError::Store(s) => s.into(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_approvals)).routes(routes!(approve)).routes(routes!(reject))
}

/// A request made again on approval, as the approver (set only by [`approve`], never by a client).
#[derive(Clone)]
pub struct Replay {
    pub actor: Actor,
    pub decision: Decision,
    pub proposed_by: String,
}

/// The audit action four eyes names for this request, if it holds it back (`None`: it runs).
pub async fn four_eyes_action(
    state: &AppState,
    action: &str,
    body: &serde_json::Value,
    object_id: Option<&str>,
) -> Option<&'static str> {
    let held = match action {
        "payment.refunded" => "payment.refunded",
        "buyer.credit_refunded" => "buyer.credit_refunded",
        "payout.marked_paid" => "payout.marked_paid",
        "psp.credential_issued" => "psp.credential_issued",
        "credit_policy.changed" => "credit_policy.changed",
        "dunning_policy.changed" => "dunning_policy.changed",
        "base_rate.set" => "base_rate.set",
        "operator.created" => "operator.created",
        // A PSP's payout account, not its other fields.
        "psp.updated" if body.get("iban").is_some() || body.get("bic").is_some() => "psp.bank_account_changed",
        "order.approved" if order_above(state, object_id).await => "order.approved_above_four_eyes_amount",
        "operator.updated" if role_added(state, body, object_id).await => "operator.role_added",
        _ => return None,
    };
    state.config.four_eyes.iter().any(|a| a == held).then_some(held)
}

/// Whether the change gives the operator a role it does not have.
async fn role_added(state: &AppState, body: &serde_json::Value, id: Option<&str>) -> bool {
    let Some(id) = id.and_then(|i| uuid::Uuid::parse_str(i).ok()) else { return false };
    let Ok(patch) = serde_json::from_value::<crate::service::operators::OperatorPatch>(body.clone()) else {
        return false;
    };
    crate::service::operators::adds_a_role(&state.services, id, &patch).await
}

/// Whether the order's gross amount is above `four_eyes_amount` (an unknown order: no, and the
/// operation answers 404 itself).
async fn order_above(state: &AppState, id: Option<&str>) -> bool {
    let Some(id) = id.and_then(|i| uuid::Uuid::parse_str(i).ok()) else { return false };
    let Ok(mut conn) = state.db.conn().await else { return false };
    match crate::store::orders::get_order(&mut conn, None, crate::domain::ids::OrderId(id), false).await {
        Ok(Some(o)) => o.data().is_ok_and(|d| d.amount.gross > state.config.four_eyes_amount),
        _ => false,
    }
}

/// The 202 answer of a held-back request.
pub fn proposed(a: Approval) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(a)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalParams {
    /// Only proposals in this state.
    #[param(inline)]
    pub state: Option<ApprovalState>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ApprovalState {
    fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
        }
    }
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ApprovalList {
    pub data: Vec<Approval>,
}

/// List proposals (four eyes), oldest first.
#[utoipa::path(get, path = "/admin/v1/approvals", tag = "Operator",
    params(ApprovalParams),
    responses((status = 200, description = "Proposals, oldest first (at most 500)", body = ApprovalList),
              (status = 401, description = "Missing or bad token", body = ErrorBody)),
    security(("admin" = [])))]
async fn list_approvals(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ApprovalParams>,
) -> Result<Json<ApprovalList>, ApiError> {
    Ok(Json(ApprovalList { data: approvals::list(&state.services, q.state.map(ApprovalState::as_str), 500).await? }))
}

/// A decision's reason.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecisionInput {
    #[schema(example = "checked against the bank's advice")]
    pub reason: Option<String>,
}

/// Runs a proposal's request again as `actor`, with `decision` to commit with its effect.
pub async fn carry_out(
    state: &AppState,
    actor: &Actor,
    id: uuid::Uuid,
    reason: Option<&str>,
) -> Result<(StatusCode, Approval), ApiError> {
    let reason = approvals::check_reason(reason)?;
    let row = approvals::get_row(&state.services, id).await?;
    let now = state.clock.now();
    approvals::check_decider(&row, actor, now)?;
    may_decide(actor, &row)?;
    let decision = Decision {
        id,
        decider_id: actor.operator_id.map(|i| i.to_string()),
        decider_label: actor.label.clone(),
        reason: reason.clone(),
        at: now,
    };
    let method =
        Method::from_bytes(row.method.as_bytes()).map_err(|_| ApiError::conflict("stored proposal unreadable"))?;
    let mut req = Request::builder().method(method).uri(&row.path);
    if !row.body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req
        .body(axum::body::Body::from(row.body.clone()))
        .map_err(|_| ApiError::conflict("stored proposal unreadable"))?;
    req.extensions_mut().insert(Replay {
        actor: actor.clone(),
        decision: decision.clone(),
        proposed_by: row.proposer_label.clone(),
    });
    let Some(router) = state.admin_router.get().cloned() else {
        return Err(ApiError::Unavailable { retry_after_secs: 1 });
    };
    let Ok(resp) = router.oneshot(req).await;
    let status = resp.status();
    let bytes = super::extract::read_body(resp.into_body(), 4 * 1024 * 1024).await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        // Checked against the state now, the action no longer holds: the proposal stays
        // pending (reject it, or approve again once the state allows), the error is the answer.
        return Err(ApiError::Conflict {
            code: "approval_failed",
            title: format!(
                "the proposed action was refused now ({}): {}",
                status.as_u16(),
                body["errors"][0]["title"].as_str().unwrap_or("no reason given")
            ),
        });
    }
    // Kept without secrets (a password link is shown to the approver this once, never stored).
    let stored = super::auth::masked(body.clone());
    let mut approval = approvals::finish(&state.services, &decision, status.as_u16(), stored).await?;
    if approval.state != "approved" {
        return Err(ApiError::conflict("the proposal was decided or expired meanwhile"));
    }
    approval.result = Some(serde_json::json!({"status": status.as_u16(), "body": body}));
    Ok((StatusCode::OK, approval))
}

/// Approve a proposal.
///
/// Another operator than the proposer, whose roles have the permission the proposed operation
/// needs, approves; the operation then runs as the approver, checked against the state now, and
/// commits together with the decision. 409 if it is decided, expired, or refused now (it stays
/// pending then).
#[utoipa::path(post, path = "/admin/v1/approvals/{approval_id}/approve", tag = "Operator",
    params(("approval_id" = uuid::Uuid, Path)),
    request_body = DecisionInput,
    responses((status = 200, description = "Approved; `result` is the operation's answer", body = Approval),
              (status = 403, description = "The proposer, or roles without the permission", body = ErrorBody),
              (status = 404, description = "No such proposal", body = ErrorBody),
              (status = 409, description = "Decided, expired, or refused now", body = ErrorBody),
              (status = 422, description = "No reason", body = ErrorBody)),
    security(("admin" = [])))]
async fn approve(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<DecisionInput>,
) -> Result<(StatusCode, Json<Approval>), ApiError> {
    let (status, a) = carry_out(&state, &actor, id, body.reason.as_deref()).await?;
    Ok((status, Json(a)))
}

/// Reject a proposal.
#[utoipa::path(post, path = "/admin/v1/approvals/{approval_id}/reject", tag = "Operator",
    params(("approval_id" = uuid::Uuid, Path)),
    request_body = DecisionInput,
    responses((status = 200, description = "Rejected", body = Approval),
              (status = 403, description = "The proposer, or roles without the permission", body = ErrorBody),
              (status = 404, description = "No such proposal", body = ErrorBody),
              (status = 409, description = "Decided or expired", body = ErrorBody),
              (status = 422, description = "No reason", body = ErrorBody)),
    security(("admin" = [])))]
async fn reject(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<uuid::Uuid>,
    ApiJson(body): ApiJson<DecisionInput>,
) -> Result<Json<Approval>, ApiError> {
    decide_reject(&state, &actor, id, body.reason.as_deref()).await.map(Json)
}

/// Rejects, if `actor`'s roles have the proposed operation's permission.
pub async fn decide_reject(
    state: &AppState,
    actor: &Actor,
    id: uuid::Uuid,
    reason: Option<&str>,
) -> Result<Approval, ApiError> {
    let row = approvals::get_row(&state.services, id).await?;
    may_decide(actor, &row)?;
    Ok(approvals::reject(&state.services, actor, id, reason).await?)
}

/// Whether `actor`'s roles have the permission the proposed operation needs.
fn may_decide(actor: &Actor, row: &crate::store::approvals::ApprovalRow) -> Result<(), ApiError> {
    let method = Method::from_bytes(row.method.as_bytes()).unwrap_or(Method::POST);
    let allowed = super::permissions::admin(&method, &row.route).is_some_and(|(p, _)| actor.may(p));
    if !allowed {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            title: "your roles do not allow the proposed action".into(),
        });
    }
    Ok(())
}
