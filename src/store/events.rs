//! The event outbox: every state change writes its event in the same transaction, and with it one
//! pending delivery for each of the PSP's enabled webhook endpoints that wants that type.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AsExec, StoreError, StoreResult, Tx};
use crate::clock::PspTime;
use crate::domain::ids::{EventId, PspId};
use crate::with_conn;

/// Appends an event for `psp_id` inside the caller's transaction and schedules its deliveries.
/// Both writes are deferred: they go to the database with the transaction's other deferred
/// writes, at the latest when it commits.
pub async fn append(
    tx: &mut Tx,
    psp_id: PspId,
    event: &crate::domain::events::Event,
    at: PspTime,
) -> StoreResult<EventId> {
    let id = EventId::new();
    let event_type = event.event_type();
    let data = &event.data();
    // The body every delivery sends, fixed now so that retries are byte-identical. The event is
    // dated on its PSP's clock; its deliveries are due at once on the deployment's.
    let payload = serde_json::json!({ "id": id, "type": event_type, "created_at": at.now, "data": data }).to_string();
    tx.defer(
        "INSERT INTO events (id, psp_id, type, data, created_at, payload) VALUES ($1, $2, $3, $4, $5, $6)",
        vec![id.0.into(), psp_id.0.into(), event_type.into(), data.to_string().into(), at.now.into(), payload.into()],
    );
    tx.defer(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT $1, e.id, 'pending', 0, $2, $2, $2 FROM webhook_endpoints e \
         WHERE e.psp_id = $3 AND e.status = 'enabled' AND (e.event_types = '[]' OR e.event_types LIKE $4)",
        vec![id.0.into(), at.wall.into(), psp_id.0.into(), format!("%\"{event_type}\"%").into()],
    );
    Ok(id)
}

/// Appends many events with their deliveries in two statements (deferred), as [`append`] does
/// one by one.
pub fn append_many(tx: &mut Tx, items: &[(PspId, crate::domain::events::Event, PspTime)]) {
    if items.is_empty() {
        return;
    }
    let backend = tx.backend();
    let mut rows = Vec::with_capacity(items.len());
    let mut fan = Vec::with_capacity(items.len());
    for (psp_id, event, at) in items {
        let id = EventId::new();
        let event_type = event.event_type();
        let data = event.data();
        let payload =
            serde_json::json!({ "id": id, "type": event_type, "created_at": at.now, "data": &data }).to_string();
        rows.push(vec![
            id.0.into(),
            psp_id.0.into(),
            event_type.into(),
            data.to_string().into(),
            at.now.into(),
            payload.into(),
        ]);
        fan.push((id, *psp_id, format!("%\"{event_type}\"%"), at.wall));
    }
    tx.defer_rows("INSERT INTO events (id, psp_id, type, data, created_at, payload) VALUES", rows, "");
    // Deliveries: every enabled endpoint of the event's PSP whose filter takes its type.
    let cast = |p: String, t: &str| match backend {
        super::Backend::Postgres => format!("CAST({p} AS {t})"),
        super::Backend::Sqlite => p,
    };
    for part in fan.chunks(super::rows_per_statement(4)) {
        defer_deliveries(tx, part, &cast);
    }
}

/// One statement of [`append_many`]'s deliveries.
fn defer_deliveries(
    tx: &mut Tx,
    fan: &[(EventId, PspId, String, chrono::DateTime<chrono::Utc>)],
    cast: &dyn Fn(String, &str) -> String,
) {
    let mut values = Vec::with_capacity(fan.len());
    let mut args = Vec::with_capacity(fan.len() * 4);
    for (i, (id, psp, pattern, wall)) in fan.iter().enumerate() {
        let n = 4 * i + 1;
        values.push(format!(
            "({}, {}, {}, {})",
            cast(format!("${n}"), "UUID"),
            cast(format!("${}", n + 1), "UUID"),
            cast(format!("${}", n + 2), "TEXT"),
            cast(format!("${}", n + 3), "TIMESTAMPTZ")
        ));
        args.extend([id.0.into(), psp.0.into(), pattern.as_str().into(), (*wall).into()]);
    }
    tx.defer(
        &format!(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT v.column1, e.id, 'pending', 0, v.column4, v.column4, v.column4 FROM (VALUES {}) AS v \
             JOIN webhook_endpoints e ON e.psp_id = v.column2 \
             WHERE e.status = 'enabled' AND (e.event_types = '[]' OR e.event_types LIKE v.column3)",
            values.join(", ")
        ),
        args,
    );
}

/// The types of a PSP's events, oldest first (for tests and diagnostics).
pub async fn types_for_psp(conn: &mut impl AsExec, psp_id: PspId) -> StoreResult<Vec<String>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT type FROM events WHERE psp_id = $1 ORDER BY id").bind(psp_id).fetch_all(&mut *c).await?
    }))
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: EventId,
    #[sqlx(rename = "type")]
    event_type: String,
    created_at: DateTime<Utc>,
    data: String,
}

impl TryFrom<Row> for Event {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Event, StoreError> {
        Ok(Event {
            id: r.id,
            event_type: r.event_type,
            created_at: r.created_at,
            data: serde_json::from_str(&r.data).map_err(|e| StoreError::Corrupt(format!("events.data: {e}")))?,
        })
    }
}

/// A PSP's event; another PSP's is `None`.
pub async fn get(conn: &mut impl AsExec, psp_id: PspId, id: EventId) -> StoreResult<Option<Event>> {
    let row: Option<Row> = with_conn!(conn, c => {
        sqlx::query_as("SELECT id, type, created_at, data FROM events WHERE id = $1 AND psp_id = $2")
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    });
    row.map(Event::try_from).transpose()
}

/// A PSP's events, newest first, optionally of one type.
pub async fn list(
    conn: &mut impl AsExec,
    psp_id: PspId,
    limit: i64,
    starting_after: Option<EventId>,
    event_type: Option<&str>,
) -> StoreResult<Vec<Event>> {
    // A far-future bound stands in for "no cursor", so one statement serves every case.
    let after = starting_after.unwrap_or(EventId(uuid::Uuid::max()));
    let rows: Vec<Row> = with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, type, created_at, data FROM events WHERE psp_id = $1 AND id < $2 AND ($3 IS NULL OR type = $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(psp_id).bind(after).bind(event_type).bind(limit)
        .fetch_all(&mut *c).await?
    });
    rows.into_iter().map(Event::try_from).collect()
}
