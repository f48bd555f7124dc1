//! Four-eyes proposals (SPEC §14.2). A decision is a conditional update from `pending`, so of
//! two approvers, or an approval and the expiry, exactly one wins; an approval's update is made
//! by the first commit of its effect, in that transaction (see [`Tx::commit`]).

use chrono::{DateTime, Utc};

use super::{AsExec, StoreError, StoreResult, Tx};
use crate::with_conn;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ApprovalRow {
    pub id: uuid::Uuid,
    pub action: String,
    pub method: String,
    pub route: String,
    pub path: String,
    #[serde(skip)]
    pub body: String,
    pub summary: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub proposer_kind: String,
    pub proposer_id: Option<String>,
    pub proposer_label: String,
    pub reason: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decider_id: Option<String>,
    pub decider_label: Option<String>,
    pub decision_reason: Option<String>,
    pub result: Option<String>,
}

const COLUMNS: &str = "id, action, method, route, path, body, summary, object_kind, object_id, proposer_kind, \
                       proposer_id, proposer_label, reason, state, created_at, expires_at, decided_at, decider_id, \
                       decider_label, decision_reason, result";

pub async fn insert(tx: &mut impl AsExec, r: &ApprovalRow) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(&format!("INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                              $13, $14, $15, $16, $17, $18, $19, $20, $21)"))
            .bind(r.id).bind(&r.action).bind(&r.method).bind(&r.route).bind(&r.path).bind(&r.body).bind(&r.summary)
            .bind(&r.object_kind).bind(&r.object_id).bind(&r.proposer_kind).bind(&r.proposer_id).bind(&r.proposer_label)
            .bind(&r.reason).bind(&r.state).bind(r.created_at).bind(r.expires_at).bind(r.decided_at).bind(&r.decider_id)
            .bind(&r.decider_label).bind(&r.decision_reason).bind(&r.result).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn get(conn: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Option<ApprovalRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1")).bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Proposals in `state` (all when `None`), oldest first, at most `limit`.
pub async fn list(conn: &mut impl AsExec, state: Option<&str>, limit: i64) -> StoreResult<Vec<ApprovalRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE ($1 IS NULL OR state = $1) ORDER BY created_at, id LIMIT $2"
        ))
        .bind(state).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Pending proposals past their expiry become `expired`; the ids that did.
pub async fn expire_due(tx: &mut impl AsExec, now: DateTime<Utc>) -> StoreResult<Vec<uuid::Uuid>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar("UPDATE approvals SET state = 'expired', decided_at = $1 WHERE state = 'pending' AND expires_at <= $1 RETURNING id")
            .bind(now).fetch_all(&mut *c).await?
    }))
}

/// A rejection: from `pending` only; true if this one decided it.
pub async fn reject(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    decider: (Option<&str>, &str),
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE approvals SET state = 'rejected', decided_at = $2, decider_id = $3, decider_label = $4, decision_reason = $5 \
             WHERE id = $1 AND state = 'pending' AND expires_at > $2",
        )
        .bind(id).bind(now).bind(decider.0).bind(decider.1).bind(reason).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// An approval being carried out: who decided, and when.
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: uuid::Uuid,
    pub decider_id: Option<String>,
    pub decider_label: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

tokio::task_local! {
    /// The approval whose effect this task runs: the effect's first commit marks it approved in
    /// the same transaction, or fails if it is no longer pending.
    static PENDING: std::sync::Mutex<Option<Decision>>;
}

/// Runs the effect `f` of an approval.
pub async fn scope<F: std::future::Future>(d: Decision, f: F) -> F::Output {
    PENDING.scope(std::sync::Mutex::new(Some(d)), f).await
}

pub(crate) fn take_pending() -> Option<Decision> {
    PENDING.try_with(|p| p.lock().ok().and_then(|mut g| g.take())).ok().flatten()
}

pub(crate) fn put_back(d: Decision) {
    let _ = PENDING.try_with(|p| {
        if let Ok(mut g) = p.lock() {
            *g = Some(d);
        }
    });
}

/// Marks the approval approved inside `tx`; a conflict if another decision or the expiry came
/// first (the transaction must then not commit).
pub(crate) async fn approve_in(tx: &mut Tx, d: &Decision) -> StoreResult<()> {
    let done = approve(tx, d).await?;
    if done { Ok(()) } else { Err(StoreError::Conflict("the proposal was decided or expired meanwhile".into())) }
}

/// Marks the approval approved if still pending and unexpired; true if this one decided it.
pub async fn approve(tx: &mut impl AsExec, d: &Decision) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE approvals SET state = 'approved', decided_at = $2, decider_id = $3, decider_label = $4, decision_reason = $5 \
             WHERE id = $1 AND state = 'pending' AND expires_at > $2",
        )
        .bind(d.id).bind(d.at).bind(&d.decider_id).bind(&d.decider_label).bind(&d.reason).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Keeps the effect's answer with the decided approval.
pub async fn set_result(tx: &mut impl AsExec, id: uuid::Uuid, result: &str) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE approvals SET result = $2 WHERE id = $1").bind(id).bind(result).execute(&mut *c).await?;
    });
    Ok(())
}
