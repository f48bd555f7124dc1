//! Durable idempotency keys. A key is claimed in its own short transaction (so a concurrent
//! duplicate sees it and gets 409), and its response is stored in the transaction of the effect.

use chrono::{DateTime, Duration, Utc};

use super::{Arg, Db, StoreResult, Tx};
use crate::domain::ids::PspId;
use crate::with_conn;

/// How long a claimed key counts as in flight before another request may take it over (a
/// process that died mid-request leaves its claim behind); `idempotency_lock_secs` configures it.
pub const LOCK_FOR: Duration = Duration::seconds(60);
/// How long a completed response is replayed.
pub const RETAIN_FOR: Duration = Duration::hours(24);

/// What a request with an `Idempotency-Key` should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use (or a takeover of an abandoned or expired claim): run the request. The token
    /// fences the claim: only a transaction that still holds it can store the response.
    Run { token: uuid::Uuid },
    /// Completed before: answer with the stored response.
    Replay { status: u16, body: Vec<u8> },
    /// Another request with this key is running.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: Vec<u8>,
    locked_until: Option<DateTime<Utc>>,
    response_status: Option<i64>,
    response_body: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
}

/// Claims `key` for `psp_id`, holding it for `lock_for`.
pub async fn claim(
    db: &Db,
    psp_id: PspId,
    key: &str,
    fingerprint: &[u8],
    now: DateTime<Utc>,
    lock_for: Duration,
) -> StoreResult<Claim> {
    let lock = now + lock_for;
    let token = uuid::Uuid::new_v4();
    // The common case, a new key, is one autocommitted statement. It need not be durable by
    // itself: the request's effect commits synchronously after it (and so makes it durable),
    // and a claim lost in a crash had no effect yet, so the client's retry simply claims again.
    let mut conn = db.relaxed_conn().await?;
    let inserted = with_conn!(&mut conn, c => {
        sqlx::query(
            "INSERT INTO idempotency_keys (psp_id, key, fingerprint, locked_until, created_at, token) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (psp_id, key) DO NOTHING",
        )
        .bind(psp_id).bind(key).bind(fingerprint).bind(lock).bind(now).bind(token)
        .execute(&mut *c).await?
        .rows_affected()
    });
    drop(conn);
    if inserted == 1 {
        return Ok(Claim::Run { token });
    }
    let mut tx = db.begin().await?;
    let claim = with_conn!(&mut tx, c => {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (psp_id, key, fingerprint, locked_until, created_at, token) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (psp_id, key) DO NOTHING",
        )
        .bind(psp_id).bind(key).bind(fingerprint).bind(lock).bind(now).bind(token)
        .execute(&mut *c).await?
        .rows_affected();
        if inserted == 1 {
            Claim::Run { token }
        } else {
            let row: Option<Row> = sqlx::query_as(
                "SELECT fingerprint, locked_until, response_status, response_body, created_at \
                 FROM idempotency_keys WHERE psp_id = $1 AND key = $2",
            )
            .bind(psp_id).bind(key).fetch_optional(&mut *c).await?;
            match row {
                // Deleted between our insert and select (a failed first attempt released it): retry later.
                None => Claim::InFlight,
                Some(r) if r.created_at + RETAIN_FOR <= now || (r.response_status.is_none() && r.locked_until.is_none_or(|l| l <= now)) => {
                    // Expired, or abandoned by a request that crashed or took too long: take it over
                    // if nobody else did. A new token fences the old holder out: its transaction can
                    // no longer store a response (see `complete_and_commit`). An unexpired key is taken only
                    // while it still has no response (re-checked under the row lock).
                    let expired = r.created_at + RETAIN_FOR <= now;
                    let taken = sqlx::query(
                        "UPDATE idempotency_keys SET fingerprint = $3, locked_until = $4, response_status = NULL, \
                         response_body = NULL, created_at = $5, token = $7, \
                         pinned = CASE WHEN fingerprint = $3 AND NOT $8 THEN pinned ELSE NULL END \
                         WHERE psp_id = $1 AND key = $2 AND created_at = $6 AND (response_status IS NULL OR $8)",
                    )
                    .bind(psp_id).bind(key).bind(fingerprint).bind(lock).bind(now).bind(r.created_at).bind(token).bind(expired)
                    .execute(&mut *c).await?
                    .rows_affected();
                    if taken == 1 { Claim::Run { token } } else { Claim::InFlight }
                }
                Some(r) if r.fingerprint != fingerprint => Claim::Mismatch,
                Some(Row { response_status: Some(status), response_body: Some(body), .. }) => {
                    Claim::Replay { status: u16::try_from(status).unwrap_or(500), body }
                }
                Some(_) => Claim::InFlight,
            }
        }
    });
    tx.commit().await?;
    Ok(claim)
}

/// Stores the response of a claimed key and commits the transaction that makes the request's
/// effect — only while the claim is still this request's (`token`). `false`: the claim was taken
/// over meanwhile, so nothing was committed (the transaction rolled back).
pub async fn complete_and_commit(
    tx: Tx,
    psp_id: PspId,
    key: &str,
    token: uuid::Uuid,
    status: u16,
    body: &[u8],
) -> StoreResult<bool> {
    // The fence goes with the effect's other deferred writes, in the same round trip.
    tx.commit_guarded(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4, locked_until = NULL \
         WHERE psp_id = $1 AND key = $2 AND token = $5 AND response_status IS NULL RETURNING key",
        vec![psp_id.0.into(), key.into(), i64::from(status).into(), Arg::Bytes(body.to_vec()), token.into()],
    )
    .await
}

/// Gives up a claim whose request made no effect (it failed), so the key can be used again; a
/// claim taken over meanwhile is the other request's and stays.
pub async fn release(db: &Db, psp_id: PspId, key: &str, token: uuid::Uuid) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    with_conn!(&mut tx, c => {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE psp_id = $1 AND key = $2 AND token = $3 AND response_status IS NULL \
             AND pinned IS NULL",
        )
        .bind(psp_id).bind(key).bind(token).execute(&mut *c).await?;
        // A request that pinned what it does may have done part of it: its retry, with the same
        // body, finishes the same thing (see [`pin`]); the key is only unlocked.
        sqlx::query(
            "UPDATE idempotency_keys SET locked_until = NULL WHERE psp_id = $1 AND key = $2 AND token = $3 \
             AND response_status IS NULL",
        )
        .bind(psp_id).bind(key).bind(token).execute(&mut *c).await?;
    });
    tx.commit().await?;
    Ok(())
}

/// Fixes what a claimed request does, for every retry of it: the first call stores `value` under
/// the key (claimed with `token`), and every call, this one and those of retries that took the
/// claim over, answers the value stored first. Used where a request's meaning depends on when it
/// runs (a sandbox advance by `days` means a date): a retry after a crash finishes the same work
/// instead of doing it again from where the first attempt stopped.
pub async fn pin(
    db: &Db,
    psp_id: PspId,
    key: &str,
    token: uuid::Uuid,
    value: Option<&str>,
) -> StoreResult<Option<String>> {
    let mut tx = db.begin().await?;
    let pinned: Option<Option<String>> = with_conn!(&mut tx, c => {
        sqlx::query_scalar(
            "UPDATE idempotency_keys SET pinned = COALESCE(pinned, $4) WHERE psp_id = $1 AND key = $2 AND token = $3 \
             RETURNING pinned",
        )
        .bind(psp_id).bind(key).bind(token).bind(value).fetch_optional(&mut *c).await?
    });
    tx.commit().await?;
    Ok(pinned.flatten())
}

/// Deletes keys older than the retention window; returns how many.
pub async fn purge_expired(db: &Db, now: DateTime<Utc>) -> StoreResult<u64> {
    let mut tx = db.begin().await?;
    let n = with_conn!(&mut tx, c => {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now - RETAIN_FOR).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n)
}
