//! Four eyes (SPEC §14.2): the listed actions, made by one operator, take effect only when a
//! second operator with the permission approves them. A proposal keeps the request as it was
//! made; on approval the same request runs again, as the approver, through the same operation
//! and use case (`web::auth`), checked against the state of that moment, and its first commit
//! carries the decision — so of two approvers, or an approval and the expiry, one wins.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Services;
use super::audit::{self, Actor, ActorKind, Entry};
use crate::store::StoreError;
use crate::store::approvals::{self as store, ApprovalRow};

/// How long a proposal waits for its decision.
pub const EXPIRES_AFTER_DAYS: i64 = 7;

/// Every action four eyes can apply to, as its audit action names it (SPEC §14.2).
pub const ACTIONS: &[&str] = &[
    "payment.refunded",
    "buyer.credit_refunded",
    "payout.marked_paid",
    "psp.bank_account_changed",
    "psp.credential_issued",
    "credit_policy.changed",
    "dunning_policy.changed",
    "base_rate.set",
    "order.approved_above_four_eyes_amount",
    "operator.created",
    "operator.role_added",
];

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no such proposal")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A proposal as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Approval {
    pub approval_id: uuid::Uuid,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub state: String,
    /// What is proposed, e.g. `payout.marked_paid`.
    pub action: String,
    /// The operation that runs on approval.
    pub method: String,
    pub path: String,
    /// The request as it will be made (in full: the decider checks what is approved; the audit
    /// trail keeps it with personal data masked).
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub proposed_by: String,
    /// The proposing operator's id (none for `admin_token`).
    pub proposed_by_id: Option<String>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    /// On approval, the operation's answer: `{"status", "body"}`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

impl From<&ApprovalRow> for Approval {
    fn from(r: &ApprovalRow) -> Approval {
        Approval {
            approval_id: r.id,
            state: r.state.clone(),
            action: r.action.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            changes: serde_json::from_str(if r.body.is_empty() { &r.summary } else { &r.body })
                .unwrap_or(serde_json::Value::Null),
            object_kind: r.object_kind.clone(),
            object_id: r.object_id.clone(),
            proposed_by: r.proposer_label.clone(),
            proposed_by_id: r.proposer_id.clone(),
            reason: r.reason.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            decided_at: r.decided_at,
            decided_by: r.decider_label.clone(),
            decision_reason: r.decision_reason.clone(),
            result: r.result.as_deref().and_then(|x| serde_json::from_str(x).ok()),
        }
    }
}

/// A request that four eyes holds back.
pub struct Proposal<'a> {
    pub action: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub body: String,
    pub summary: serde_json::Value,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub reason: &'a str,
}

/// Stores a proposal (and its audit record) instead of doing it.
pub async fn propose(s: &Services, actor: &Actor, p: Proposal<'_>) -> Result<Approval, ApprovalError> {
    let now = s.clock.now();
    let row = ApprovalRow {
        id: uuid::Uuid::now_v7(),
        action: p.action.into(),
        method: p.method.into(),
        route: p.route.into(),
        path: p.path.into(),
        body: p.body,
        summary: p.summary.to_string(),
        object_kind: p.object_kind,
        object_id: p.object_id,
        proposer_kind: actor.kind.as_str().into(),
        proposer_id: actor.operator_id.map(|i| i.to_string()),
        proposer_label: actor.label.clone(),
        reason: p.reason.into(),
        state: "pending".into(),
        created_at: now,
        expires_at: now + Duration::days(EXPIRES_AFTER_DAYS),
        decided_at: None,
        decider_id: None,
        decider_label: None,
        decision_reason: None,
        result: None,
    };
    let mut tx = s.db.begin().await?;
    store::insert(&mut tx, &row).await?;
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "approval.proposed",
            object_kind: Some("approval"),
            object_id: Some(row.id.to_string()),
            reason: Some(p.reason),
            changes: serde_json::json!({"action": row.action, "path": row.path, "changes": p.summary}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Approval::from(&row))
}

/// The actor of expiries.
fn system() -> Actor {
    Actor {
        kind: ActorKind::System,
        operator_id: None,
        label: "netterms".into(),
        roles: Default::default(),
        request_id: None,
        client_ip: None,
    }
}

/// Proposals past their 7 days become `expired` (each audited); a conditional update from
/// `pending`, so an approval at the same moment either came first or finds it expired.
pub async fn expire_due(s: &Services) -> Result<usize, ApprovalError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let ids = store::expire_due(&mut tx, now).await?;
    for id in &ids {
        let entry = Entry {
            action: "approval.expired",
            object_kind: Some("approval"),
            object_id: Some(id.to_string()),
            reason: None,
            changes: serde_json::json!({"state": {"before": "pending", "after": "expired"}}),
        };
        audit::record(&mut tx, &system(), entry, now).await?;
    }
    tx.commit().await?;
    Ok(ids.len())
}

pub async fn list(s: &Services, state: Option<&str>, limit: i64) -> Result<Vec<Approval>, ApprovalError> {
    expire_due(s).await?;
    let mut conn = s.db.conn().await?;
    Ok(store::list(&mut conn, state, limit).await?.iter().map(Approval::from).collect())
}

pub async fn get_row(s: &Services, id: uuid::Uuid) -> Result<ApprovalRow, ApprovalError> {
    expire_due(s).await?;
    let mut conn = s.db.conn().await?;
    store::get(&mut conn, id).await?.ok_or(ApprovalError::NotFound)
}

/// Whether `actor` proposed `row` (the same operator, or the same non-operator credential).
fn is_proposer(row: &ApprovalRow, actor: &Actor) -> bool {
    match (&row.proposer_id, actor.operator_id) {
        (Some(p), Some(a)) => *p == a.to_string(),
        (None, None) => row.proposer_kind == actor.kind.as_str(),
        _ => false,
    }
}

/// Checks that `actor` may decide `row` now: pending, not the proposer.
pub fn check_decider(row: &ApprovalRow, actor: &Actor, now: DateTime<Utc>) -> Result<(), ApprovalError> {
    if row.state != "pending" || row.expires_at <= now {
        let state = if row.state == "pending" { "expired" } else { row.state.as_str() };
        return Err(ApprovalError::Conflict(format!("the proposal is {state}")));
    }
    if is_proposer(row, actor) {
        return Err(ApprovalError::Forbidden("a proposal is decided by another operator than its proposer".into()));
    }
    Ok(())
}

/// A decision's reason: one line of 1 to 500 characters.
pub fn check_reason(reason: Option<&str>) -> Result<String, ApprovalError> {
    let r = reason.map(str::trim).unwrap_or("");
    if r.is_empty() || r.chars().count() > 500 || r.chars().any(|c| c.is_control()) {
        return Err(ApprovalError::Invalid("reason must be one line of 1 to 500 characters".into()));
    }
    Ok(r.to_owned())
}

/// Rejects a pending proposal.
pub async fn reject(
    s: &Services,
    actor: &Actor,
    id: uuid::Uuid,
    reason: Option<&str>,
) -> Result<Approval, ApprovalError> {
    let reason = check_reason(reason)?;
    let row = get_row(s, id).await?;
    let now = s.clock.now();
    check_decider(&row, actor, now)?;
    let mut tx = s.db.begin().await?;
    if !store::reject(&mut tx, id, (actor.operator_id.map(|i| i.to_string()).as_deref(), &actor.label), &reason, now)
        .await?
    {
        return Err(ApprovalError::Conflict("the proposal was decided or expired meanwhile".into()));
    }
    audit::record(
        &mut tx,
        actor,
        Entry {
            action: "approval.rejected",
            object_kind: Some("approval"),
            object_id: Some(id.to_string()),
            reason: Some(&reason),
            changes: serde_json::json!({"action": row.action, "state": {"before": "pending", "after": "rejected"}}),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    let mut conn = s.db.conn().await?;
    Ok(Approval::from(&store::get(&mut conn, id).await?.ok_or(ApprovalError::NotFound)?))
}

/// After the effect of an approval answered: keeps the answer, and marks the proposal approved
/// if the effect committed nothing that did (an operation without a write). The approval.
pub async fn finish(
    s: &Services,
    d: &store::Decision,
    status: u16,
    body: serde_json::Value,
) -> Result<Approval, ApprovalError> {
    let mut tx = s.db.begin().await?;
    let row = store::get(&mut tx, d.id).await?.ok_or(ApprovalError::NotFound)?;
    if row.state == "pending" && (200..300).contains(&status) {
        store::approve(&mut tx, d).await?;
    }
    store::set_result(&mut tx, d.id, &serde_json::json!({"status": status, "body": body}).to_string()).await?;
    tx.commit().await?;
    let mut conn = s.db.conn().await?;
    Ok(Approval::from(&store::get(&mut conn, d.id).await?.ok_or(ApprovalError::NotFound)?))
}
