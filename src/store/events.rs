//! The event outbox: every state change writes its event in the same transaction.

use chrono::{DateTime, Utc};

use super::{AsExec, StoreResult};
use crate::domain::ids::{EventId, PspId};
use crate::with_conn;

/// Appends an event for `psp_id` inside the caller's transaction.
pub async fn append(
    tx: &mut impl AsExec,
    psp_id: PspId,
    event_type: &str,
    data: &serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<EventId> {
    let id = EventId::new();
    let data = data.to_string();
    with_conn!(tx, c => {
        sqlx::query("INSERT INTO events (id, psp_id, type, data, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id).bind(psp_id).bind(event_type).bind(data).bind(now)
            .execute(&mut *c).await?;
    });
    Ok(id)
}

/// The types of a PSP's events, oldest first (for tests and diagnostics).
pub async fn types_for_psp(conn: &mut impl AsExec, psp_id: PspId) -> StoreResult<Vec<String>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT type FROM events WHERE psp_id = $1 ORDER BY id").bind(psp_id).fetch_all(&mut *c).await?
    }))
}
