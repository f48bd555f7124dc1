//! Webhook endpoints, their signing-secret seeds, deliveries (claimed with leases) and attempts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AsExec, Backend, StoreError, StoreResult};
use crate::domain::ids::{AttemptId, EndpointId, EventId, PspId, WebhookSecretId};
use crate::with_conn;

/// A webhook endpoint as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    pub endpoint_id: EndpointId,
    /// The same as `endpoint_id` (kept for clients written before it).
    pub id: EndpointId,
    pub url: String,
    pub description: Option<String>,
    /// Event types sent to this endpoint; empty means all.
    pub event_types: Vec<String>,
    /// `enabled` or `disabled` (after 410 Gone, or failing for five days).
    pub status: String,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: EndpointId,
    url: String,
    description: Option<String>,
    event_types: String,
    status: String,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<EndpointRow> for Endpoint {
    type Error = StoreError;
    fn try_from(r: EndpointRow) -> Result<Endpoint, StoreError> {
        Ok(Endpoint {
            endpoint_id: r.id,
            id: r.id,
            url: r.url,
            description: r.description,
            event_types: serde_json::from_str(&r.event_types)
                .map_err(|e| StoreError::Corrupt(format!("webhook_endpoints.event_types: {e}")))?,
            status: r.status,
            disabled_reason: r.disabled_reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, status, disabled_reason, created_at, updated_at";

pub async fn insert_endpoint(
    tx: &mut impl AsExec,
    psp_id: PspId,
    url: &str,
    description: Option<&str>,
    event_types: &[String],
    now: DateTime<Utc>,
) -> StoreResult<Endpoint> {
    let id = EndpointId::new();
    let types = serde_json::to_string(event_types).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let row: EndpointRow = with_conn!(tx, c => {
        sqlx::query_as(&format!(
            "INSERT INTO webhook_endpoints (id, psp_id, url, description, event_types, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'enabled', $6, $6) RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(id).bind(psp_id).bind(url).bind(description).bind(types).bind(now)
        .fetch_one(&mut *c).await?
    });
    row.try_into()
}

/// A PSP's endpoint (not deleted); another PSP's is `None`.
pub async fn get_endpoint(conn: &mut impl AsExec, psp_id: PspId, id: EndpointId) -> StoreResult<Option<Endpoint>> {
    let row: Option<EndpointRow> = with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND psp_id = $2 AND status <> 'deleted'"
        ))
        .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    });
    row.map(Endpoint::try_from).transpose()
}

pub async fn list_endpoints(
    conn: &mut impl AsExec,
    psp_id: PspId,
    limit: i64,
    starting_after: Option<EndpointId>,
) -> StoreResult<Vec<Endpoint>> {
    let after = starting_after.unwrap_or(EndpointId(uuid::Uuid::max()));
    let rows: Vec<EndpointRow> = with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE psp_id = $1 AND status <> 'deleted' AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(psp_id).bind(after).bind(limit).fetch_all(&mut *c).await?
    });
    rows.into_iter().map(Endpoint::try_from).collect()
}

/// Marks an endpoint deleted; its pending deliveries are dropped. `false` if there was none.
pub async fn delete_endpoint(
    tx: &mut impl AsExec,
    psp_id: PspId,
    id: EndpointId,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        let n = sqlx::query(
            "UPDATE webhook_endpoints SET status = 'deleted', updated_at = $3 WHERE id = $1 AND psp_id = $2 AND status <> 'deleted'",
        )
        .bind(id).bind(psp_id).bind(now).execute(&mut *c).await?.rows_affected();
        sqlx::query("UPDATE webhook_deliveries SET status = 'failed', lease_until = NULL, updated_at = $2 WHERE endpoint_id = $1 AND status = 'pending'")
            .bind(id).bind(now).execute(&mut *c).await?;
        n == 1
    }))
}

/// Disables an endpoint (410 Gone, or failing too long).
pub async fn disable_endpoint(
    tx: &mut impl AsExec,
    id: EndpointId,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, updated_at = $3 WHERE id = $1 AND status = 'enabled'",
        )
        .bind(id).bind(reason).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// Adds a signing-secret seed. Existing active seeds expire at `old_expire_at` (rotation overlap).
pub async fn add_secret(
    tx: &mut impl AsExec,
    endpoint_id: EndpointId,
    seed: &str,
    now: DateTime<Utc>,
    old_expire_at: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE webhook_secrets SET expires_at = $2 WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > $2)")
            .bind(endpoint_id).bind(old_expire_at).execute(&mut *c).await?;
        sqlx::query("INSERT INTO webhook_secrets (id, endpoint_id, seed, created_at) VALUES ($1, $2, $3, $4)")
            .bind(WebhookSecretId::new()).bind(endpoint_id).bind(seed).bind(now)
            .execute(&mut *c).await?;
    });
    Ok(())
}

/// Seeds of the secrets an endpoint's deliveries are signed with now, newest first.
pub async fn active_seeds(
    conn: &mut impl AsExec,
    endpoint_id: EndpointId,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT seed FROM webhook_secrets WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id DESC")
            .bind(endpoint_id).bind(now).fetch_all(&mut *c).await?
    }))
}

/// A delivery claimed by a worker: attempt number `attempt` is this worker's alone.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub attempt: i64,
}

/// Claims up to `limit` due deliveries of enabled endpoints for `worker` until `lease_until`.
/// On PostgreSQL concurrent workers skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite
/// runs write transactions one at a time.
pub async fn claim_due(
    tx: &mut impl AsExec,
    worker: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Claimed>> {
    Ok(with_conn!(tx, c, b => {
        let lock = if b == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        sqlx::query_as(&format!(
            "UPDATE webhook_deliveries SET lease_until = $2, lease_owner = $3, attempts = attempts + 1, updated_at = $1 \
             WHERE (event_id, endpoint_id) IN ( \
                 SELECT d.event_id, d.endpoint_id FROM webhook_deliveries d \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until < $1) \
                   AND d.endpoint_id IN (SELECT id FROM webhook_endpoints WHERE status = 'enabled') \
                 ORDER BY d.next_attempt_at LIMIT $4 {lock}) \
             RETURNING event_id, endpoint_id, attempts AS attempt"
        ))
        .bind(now).bind(lease_until).bind(worker).bind(limit)
        .fetch_all(&mut *c).await?
    }))
}

/// What a worker needs to send a claimed delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Outgoing {
    pub url: String,
    pub payload: String,
    pub failing_since: Option<DateTime<Utc>>,
    /// When the delivery was queued (deployment clock).
    pub queued_at: DateTime<Utc>,
}

pub async fn outgoing(
    conn: &mut impl AsExec,
    event_id: EventId,
    endpoint_id: EndpointId,
) -> StoreResult<Option<Outgoing>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT e.url, v.payload, e.failing_since, d.created_at AS queued_at FROM webhook_endpoints e, events v, webhook_deliveries d \
             WHERE e.id = $1 AND v.id = $2 AND d.event_id = v.id AND d.endpoint_id = e.id",
        )
        .bind(endpoint_id).bind(event_id).fetch_optional(&mut *c).await?
    }))
}

/// The result of one attempt, to store.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub response_status: Option<i64>,
    pub error: Option<String>,
}

/// Stores an attempt and moves its delivery on: delivered, retried at `next_attempt_at`, or
/// failed for good (`next_attempt_at` = `None`). Only the worker holding the attempt's lease
/// may do this; `false` if it no longer does (its lease ran out and another took over).
#[allow(clippy::too_many_arguments)]
pub async fn finish_attempt(
    tx: &mut impl AsExec,
    claim: &Claimed,
    record: &AttemptRecord,
    delivered: bool,
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let status = match (delivered, next_attempt_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let next = next_attempt_at.unwrap_or(now);
    Ok(with_conn!(tx, c => {
        let owned = sqlx::query(
            "UPDATE webhook_deliveries SET status = $4, next_attempt_at = $5, lease_until = NULL, lease_owner = NULL, updated_at = $6 \
             WHERE event_id = $1 AND endpoint_id = $2 AND attempts = $3 AND lease_owner = $7 AND status = 'pending'",
        )
        .bind(claim.event_id).bind(claim.endpoint_id).bind(claim.attempt).bind(status).bind(next).bind(now).bind(&record.worker)
        .execute(&mut *c).await?.rows_affected() == 1;
        sqlx::query(
            "INSERT INTO webhook_attempts (id, event_id, endpoint_id, attempt, worker, started_at, duration_ms, response_status, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(AttemptId::new()).bind(claim.event_id).bind(claim.endpoint_id).bind(claim.attempt).bind(&record.worker)
        .bind(record.started_at).bind(record.duration_ms).bind(record.response_status).bind(&record.error)
        .execute(&mut *c).await?;
        if delivered {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                .bind(claim.endpoint_id).execute(&mut *c).await?;
        } else {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL")
                .bind(claim.endpoint_id).bind(now).execute(&mut *c).await?;
        }
        owned
    }))
}

/// One delivery of an event, with its latest attempts, as `GET /v1/events/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub endpoint_id: EndpointId,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// How many attempts this delivery has had.
    pub attempts_total: i64,
    /// The latest attempts (at most [`INLINE_ATTEMPTS`], oldest first); every attempt is under
    /// `GET /v1/events/{event_id}/attempts`.
    pub attempts: Vec<Attempt>,
}

/// How many attempts per delivery an event shows inline.
pub const INLINE_ATTEMPTS: usize = 10;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Attempt {
    pub attempt_id: AttemptId,
    pub endpoint_id: EndpointId,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The receiver's HTTP status, if it answered.
    pub response_status: Option<i64>,
    /// Why the attempt failed without an answer (timeout, connection refused, refused address).
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    endpoint_id: EndpointId,
    status: String,
    next_attempt_at: DateTime<Utc>,
    attempts_total: i64,
}

pub async fn deliveries(conn: &mut impl AsExec, event_id: EventId) -> StoreResult<Vec<Delivery>> {
    let limit = INLINE_ATTEMPTS as i64;
    let (rows, attempts): (Vec<DeliveryRow>, Vec<Attempt>) = with_conn!(conn, c => {
        let rows = sqlx::query_as(
            "SELECT d.endpoint_id, d.status, d.next_attempt_at, \
             (SELECT COUNT(*) FROM webhook_attempts a WHERE a.event_id = d.event_id AND a.endpoint_id = d.endpoint_id) AS attempts_total \
             FROM webhook_deliveries d WHERE d.event_id = $1 ORDER BY d.endpoint_id",
        )
        .bind(event_id).fetch_all(&mut *c).await?;
        // The latest few of each delivery, however many there were.
        let attempts = sqlx::query_as(
            "SELECT id AS attempt_id, endpoint_id, attempt, started_at, duration_ms, response_status, error \
             FROM webhook_attempts a WHERE event_id = $1 AND attempt > \
             (SELECT COALESCE(MAX(b.attempt), 0) FROM webhook_attempts b WHERE b.event_id = a.event_id AND b.endpoint_id = a.endpoint_id) - $2 \
             ORDER BY endpoint_id, attempt",
        )
        .bind(event_id).bind(limit).fetch_all(&mut *c).await?;
        (rows, attempts)
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut mine: Vec<Attempt> = attempts.iter().filter(|a| a.endpoint_id == r.endpoint_id).cloned().collect();
            let extra = mine.len().saturating_sub(INLINE_ATTEMPTS);
            mine.drain(..extra);
            Delivery {
                endpoint_id: r.endpoint_id,
                next_attempt_at: (r.status == "pending").then_some(r.next_attempt_at),
                status: r.status,
                attempts_total: r.attempts_total,
                attempts: mine,
            }
        })
        .collect())
}

/// Every attempt of an event (of one endpoint if given), newest first, in pages.
pub async fn attempts(
    conn: &mut impl AsExec,
    event_id: EventId,
    endpoint: Option<EndpointId>,
    starting_after: Option<AttemptId>,
    limit: i64,
) -> StoreResult<Vec<Attempt>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id AS attempt_id, endpoint_id, attempt, started_at, duration_ms, response_status, error \
             FROM webhook_attempts WHERE event_id = $1 AND ($2 IS NULL OR endpoint_id = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(event_id).bind(endpoint).bind(starting_after).bind(limit)
        .fetch_all(&mut *c).await?
    }))
}

/// Schedules an event again, now, to every enabled endpoint of its PSP that wants its type
/// (also endpoints created after the event). Returns how many deliveries are pending.
pub async fn redeliver(
    tx: &mut impl AsExec,
    psp_id: PspId,
    event_id: EventId,
    event_type: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let type_pattern = format!("%\"{event_type}\"%");
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT $1, e.id, 'pending', 0, $2, $2, $2 FROM webhook_endpoints e \
             WHERE e.psp_id = $3 AND e.status = 'enabled' AND (e.event_types = '[]' OR e.event_types LIKE $4) \
             ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', next_attempt_at = $2, lease_until = NULL, \
             lease_owner = NULL, updated_at = $2",
        )
        .bind(event_id).bind(now).bind(psp_id).bind(type_pattern)
        .execute(&mut *c).await?.rows_affected()
    }))
}
