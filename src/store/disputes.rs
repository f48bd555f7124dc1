//! Disputes (SPEC §10): opened on an invoice by the buyer, an operator or a sandbox; answered by
//! the PSP with a reason and documents; closed as `resolved` or `chargeback`.

use chrono::{DateTime, Utc};

use super::{AsExec, StoreResult};
use crate::domain::ids::{CaptureId, PspId};
use crate::with_conn;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DisputeRow {
    pub id: uuid::Uuid,
    pub psp_id: PspId,
    pub capture_id: CaptureId,
    pub opened_by: String,
    pub email: Option<String>,
    pub reason_code: String,
    pub description: String,
    pub currency: String,
    pub amount: i64,
    pub state: String,
    pub deadline: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub defense_reason: Option<String>,
    pub defended_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    /// What the chargeback took off the invoice (0 unless `chargeback`).
    pub charged_back: i64,
    /// Of that, what the buyer had paid already: owed back to it (its credit).
    pub owed_to_buyer: i64,
}

const COLUMNS: &str = "id, psp_id, capture_id, opened_by, email, reason_code, description, currency, amount, \
     state, deadline, created_at, updated_at, defense_reason, defended_at, closed_by, closed_at, charged_back, owed_to_buyer";

/// Records a dispute and counts it on its invoice (dunning waits while one is open).
pub async fn insert(tx: &mut impl AsExec, d: &DisputeRow) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(&format!("INSERT INTO disputes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                              NULL, NULL, NULL, NULL, 0, 0)"))
            .bind(d.id).bind(d.psp_id).bind(d.capture_id).bind(&d.opened_by).bind(&d.email).bind(&d.reason_code)
            .bind(&d.description).bind(&d.currency).bind(d.amount).bind(&d.state).bind(d.deadline)
            .bind(d.created_at).bind(d.updated_at)
            .execute(&mut *c).await?;
        sqlx::query("UPDATE captures SET disputes_open = disputes_open + 1, updated_at = $2 WHERE id = $1")
            .bind(d.capture_id).bind(d.updated_at).execute(&mut *c).await?;
    });
    Ok(())
}

/// One dispute; of `psp` only when given (`None`: an operator's read).
pub async fn get(conn: &mut impl AsExec, psp: Option<PspId>, id: uuid::Uuid) -> StoreResult<Option<DisputeRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM disputes WHERE id = $1 AND ($2 IS NULL OR psp_id = $2)"))
            .bind(id).bind(psp).fetch_optional(&mut *c).await?
    }))
}

pub async fn of_capture(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Vec<DisputeRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM disputes WHERE capture_id = $1 ORDER BY id"))
            .bind(capture_id).fetch_all(&mut *c).await?
    }))
}

/// Disputes newest first, of one PSP or (`None`) all, by state.
pub async fn list(
    conn: &mut impl AsExec,
    psp: Option<PspId>,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<DisputeRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM disputes WHERE ($1 IS NULL OR psp_id = $1) AND ($2 IS NULL OR state = $2) \
             AND id < $3 ORDER BY id DESC LIMIT $4"
        ))
        .bind(psp).bind(state).bind(starting_after.unwrap_or(uuid::Uuid::max())).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Stores the PSP's defence of an open, undefended dispute; `false` if it was not (any more).
pub async fn defend(tx: &mut impl AsExec, id: uuid::Uuid, reason: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE disputes SET defense_reason = $2, defended_at = $3, updated_at = $3 \
             WHERE id = $1 AND state = 'open' AND defended_at IS NULL AND deadline > $3",
        )
        .bind(id).bind(reason).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// A document of a defence.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentRow {
    pub seq: i64,
    pub name: String,
    pub content_type: String,
    pub size: i64,
}

pub async fn insert_document(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    seq: i64,
    name: &str,
    content_type: &str,
    content: &[u8],
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("INSERT INTO dispute_documents (dispute_id, seq, name, content_type, size, content) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id).bind(seq).bind(name).bind(content_type).bind(content.len() as i64).bind(content)
            .execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn documents(conn: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Vec<DocumentRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT seq, name, content_type, size FROM dispute_documents WHERE dispute_id = $1 ORDER BY seq")
            .bind(id).fetch_all(&mut *c).await?
    }))
}

/// A document's type, name and bytes.
pub async fn document(
    conn: &mut impl AsExec,
    id: uuid::Uuid,
    seq: i64,
) -> StoreResult<Option<(String, String, Vec<u8>)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT content_type, name, content FROM dispute_documents WHERE dispute_id = $1 AND seq = $2")
            .bind(id).bind(seq).fetch_optional(&mut *c).await?
    }))
}

/// Closes an open dispute and counts it off its invoice, with what a chargeback took off it;
/// `false` if it was closed already.
pub async fn close(
    tx: &mut impl AsExec,
    d: &DisputeRow,
    result: &str,
    closed_by: &str,
    (charged_back, owed_to_buyer): (i64, i64),
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        let done = sqlx::query(
            "UPDATE disputes SET state = $2, closed_by = $3, closed_at = $4, charged_back = $5, owed_to_buyer = $6, \
             updated_at = $4 WHERE id = $1 AND state = 'open'",
        )
        .bind(d.id).bind(result).bind(closed_by).bind(now).bind(charged_back).bind(owed_to_buyer)
        .execute(&mut *c).await?.rows_affected() == 1;
        if done {
            sqlx::query(
                "UPDATE captures SET disputes_open = disputes_open - 1, charged_back = charged_back + $2, updated_at = $3 \
                 WHERE id = $1",
            )
            .bind(d.capture_id).bind(charged_back).bind(now).execute(&mut *c).await?;
        }
        done
    }))
}

/// Open disputes of `psp` without a defence whose deadline passed by `now`, oldest first.
pub async fn past_deadline(
    conn: &mut impl AsExec,
    psp: PspId,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<(uuid::Uuid, CaptureId)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, capture_id FROM disputes WHERE state = 'open' AND deadline <= $2 AND psp_id = $1 \
             AND defended_at IS NULL ORDER BY deadline, id LIMIT $3",
        )
        .bind(psp).bind(now).bind(limit).fetch_all(&mut *c).await?
    }))
}
