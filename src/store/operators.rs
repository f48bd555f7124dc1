//! Operators and what signs them in: set-password links, second factor, recovery codes,
//! console sessions, admin API tokens; and failed authentications counted per key in the
//! database, so that every node sees the same counts.

use chrono::{DateTime, Utc};

use super::{AsExec, StoreResult};
use crate::with_conn;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRow {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: String,
    pub roles: String,
    pub password_hash: Option<String>,
    pub totp_seed: Option<Vec<u8>>,
    pub totp_pending: Option<Vec<u8>>,
    pub totp_last_step: Option<i64>,
    pub locale: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, name, roles, password_hash, totp_seed, totp_pending, totp_last_step, locale, active, \
                       created_at, updated_at";

pub async fn insert(tx: &mut impl AsExec, r: &OperatorRow) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(&format!("INSERT INTO operators ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
            .bind(r.id).bind(&r.email).bind(&r.name).bind(&r.roles).bind(&r.password_hash).bind(&r.totp_seed)
            .bind(&r.totp_pending).bind(r.totp_last_step).bind(&r.locale).bind(r.active).bind(r.created_at)
            .bind(r.updated_at).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn count(conn: &mut impl AsExec) -> StoreResult<i64> {
    Ok(with_conn!(conn, c => sqlx::query_scalar("SELECT COUNT(*) FROM operators").fetch_one(&mut *c).await?))
}

pub async fn get(conn: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Option<OperatorRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators WHERE id = $1")).bind(id).fetch_optional(&mut *c).await?
    }))
}

/// The operator row, locked for the rest of the transaction (PostgreSQL; SQLite's one writer).
pub async fn get_for_update(conn: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Option<OperatorRow>> {
    Ok(with_conn!(conn, c, b => {
        let lock = if b == super::Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators WHERE id = $1{lock}")).bind(id).fetch_optional(&mut *c).await?
    }))
}

pub async fn by_email(conn: &mut impl AsExec, email: &str) -> StoreResult<Option<OperatorRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators WHERE email = $1"))
            .bind(email).fetch_optional(&mut *c).await?
    }))
}

/// Locks every operator row for the rest of the transaction (PostgreSQL; SQLite's one writer
/// serializes anyway).
pub async fn lock_all(tx: &mut impl AsExec) -> StoreResult<()> {
    with_conn!(tx, c, b => {
        if b == super::Backend::Postgres {
            sqlx::query("SELECT id FROM operators ORDER BY id FOR UPDATE").execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Operators by name, at most `limit`.
pub async fn list(conn: &mut impl AsExec, limit: i64) -> StoreResult<Vec<OperatorRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators ORDER BY lower(name), id LIMIT $1"))
            .bind(limit).fetch_all(&mut *c).await?
    }))
}

pub async fn set_password(tx: &mut impl AsExec, id: uuid::Uuid, hash: &str, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(hash).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn set_roles(tx: &mut impl AsExec, id: uuid::Uuid, roles: &str, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET roles = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(roles).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn set_active(tx: &mut impl AsExec, id: uuid::Uuid, active: bool, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET active = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(active).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn set_locale(tx: &mut impl AsExec, id: uuid::Uuid, locale: &str) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET locale = $2 WHERE id = $1").bind(id).bind(locale).execute(&mut *c).await?;
    });
    Ok(())
}

/// Starts (or restarts) an enrolment: the pending seed, until a code of it is confirmed.
pub async fn set_pending_totp(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    seed: Option<&[u8]>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET totp_pending = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(seed).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// Sets (or with `None` removes) the second factor; the last accepted step goes with it.
pub async fn set_totp(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    seed: Option<&[u8]>,
    last_step: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET totp_seed = $2, totp_pending = NULL, totp_last_step = $3, updated_at = $4 WHERE id = $1")
            .bind(id).bind(seed).bind(last_step).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// Records that a code of `step` was used — only if no code of that step or a later one was
/// (so two requests with the same code cannot both pass). True when it was recorded.
pub async fn use_totp_step(tx: &mut impl AsExec, id: uuid::Uuid, step: i64) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE operators SET totp_last_step = $2 WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)")
            .bind(id).bind(step).execute(&mut *c).await?.rows_affected() == 1
    }))
}

// ---------------------------------------------------------------------------------------------
// Set-password links

pub async fn insert_link(
    tx: &mut impl AsExec,
    digest: &[u8],
    operator_id: uuid::Uuid,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("INSERT INTO operator_links (token_digest, operator_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(digest).bind(operator_id).bind(now).bind(expires_at).execute(&mut *c).await?;
    });
    Ok(())
}

/// The operator of a link that is unused and unexpired.
pub async fn link_operator(
    conn: &mut impl AsExec,
    digest: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<Option<uuid::Uuid>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT operator_id FROM operator_links WHERE token_digest = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(digest).bind(now).fetch_optional(&mut *c).await?
    }))
}

/// Uses a link up; its operator if it was still usable (one request wins a race).
pub async fn consume_link(tx: &mut impl AsExec, digest: &[u8], now: DateTime<Utc>) -> StoreResult<Option<uuid::Uuid>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar(
            "UPDATE operator_links SET used_at = $2 WHERE token_digest = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING operator_id",
        )
        .bind(digest).bind(now).fetch_optional(&mut *c).await?
    }))
}

/// Ends every open link of an operator (a new one replaces them).
pub async fn end_links(tx: &mut impl AsExec, operator_id: uuid::Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE operator_links SET used_at = $2 WHERE operator_id = $1 AND used_at IS NULL")
            .bind(operator_id).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Recovery codes

pub async fn replace_recovery_codes(
    tx: &mut impl AsExec,
    operator_id: uuid::Uuid,
    digests: &[[u8; 32]],
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("DELETE FROM operator_recovery_codes WHERE operator_id = $1").bind(operator_id).execute(&mut *c).await?;
        for d in digests {
            sqlx::query("INSERT INTO operator_recovery_codes (operator_id, code_digest) VALUES ($1, $2)")
                .bind(operator_id).bind(&d[..]).execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Uses a recovery code up; true if it was unused (one request wins a race).
pub async fn use_recovery_code(
    tx: &mut impl AsExec,
    operator_id: uuid::Uuid,
    digest: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE operator_recovery_codes SET used_at = $3 WHERE operator_id = $1 AND code_digest = $2 AND used_at IS NULL")
            .bind(operator_id).bind(digest).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

pub async fn recovery_codes_left(conn: &mut impl AsExec, operator_id: uuid::Uuid) -> StoreResult<i64> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM operator_recovery_codes WHERE operator_id = $1 AND used_at IS NULL")
            .bind(operator_id).fetch_one(&mut *c).await?
    }))
}

// ---------------------------------------------------------------------------------------------
// Console sessions

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub operator_id: uuid::Uuid,
    pub stage: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_session(
    tx: &mut impl AsExec,
    digest: &[u8],
    operator_id: uuid::Uuid,
    stage: &str,
    csrf: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO operator_sessions (id_digest, operator_id, stage, csrf_token, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(digest).bind(operator_id).bind(stage).bind(csrf).bind(now).bind(expires_at).execute(&mut *c).await?;
    });
    Ok(())
}

/// A session that has not ended, not expired and not been idle since `idle_since`.
pub async fn live_session(
    conn: &mut impl AsExec,
    digest: &[u8],
    now: DateTime<Utc>,
    idle_since: DateTime<Utc>,
) -> StoreResult<Option<SessionRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT operator_id, stage, csrf_token, created_at, last_seen_at, expires_at FROM operator_sessions \
             WHERE id_digest = $1 AND ended_at IS NULL AND expires_at > $2 AND last_seen_at > $3",
        )
        .bind(digest).bind(now).bind(idle_since).fetch_optional(&mut *c).await?
    }))
}

pub async fn touch_session(conn: &mut impl AsExec, digest: &[u8], now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(conn, c => {
        sqlx::query("UPDATE operator_sessions SET last_seen_at = $2 WHERE id_digest = $1 AND ended_at IS NULL")
            .bind(digest).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// Ends a session; true if it was open (one of two racing requests ends it).
pub async fn end_session(conn: &mut impl AsExec, digest: &[u8], now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(conn, c => {
        sqlx::query("UPDATE operator_sessions SET ended_at = $2 WHERE id_digest = $1 AND ended_at IS NULL")
            .bind(digest).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Ends every open session of an operator; how many.
pub async fn end_sessions_of(conn: &mut impl AsExec, operator_id: uuid::Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
    Ok(with_conn!(conn, c => {
        sqlx::query("UPDATE operator_sessions SET ended_at = $2 WHERE operator_id = $1 AND ended_at IS NULL")
            .bind(operator_id).bind(now).execute(&mut *c).await?.rows_affected()
    }))
}

// ---------------------------------------------------------------------------------------------
// Admin API tokens

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: uuid::Uuid,
    pub operator_id: uuid::Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "id, operator_id, name, created_at, expires_at, revoked_at, last_used_at";

pub async fn insert_token(tx: &mut impl AsExec, r: &TokenRow, digest: &[u8]) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(&format!("INSERT INTO operator_tokens ({TOKEN_COLUMNS}, token_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .bind(r.id).bind(r.operator_id).bind(&r.name).bind(r.created_at).bind(r.expires_at).bind(r.revoked_at)
            .bind(r.last_used_at).bind(digest).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn token_by_digest(conn: &mut impl AsExec, digest: &[u8]) -> StoreResult<Option<TokenRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM operator_tokens WHERE token_digest = $1"))
            .bind(digest).fetch_optional(&mut *c).await?
    }))
}

pub async fn tokens_of(conn: &mut impl AsExec, operator_id: uuid::Uuid) -> StoreResult<Vec<TokenRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM operator_tokens WHERE operator_id = $1 ORDER BY created_at DESC, id"))
            .bind(operator_id).fetch_all(&mut *c).await?
    }))
}

pub async fn touch_token(conn: &mut impl AsExec, id: uuid::Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(conn, c => {
        sqlx::query("UPDATE operator_tokens SET last_used_at = $2 WHERE id = $1").bind(id).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// Revokes a token of the operator; true if it was live.
pub async fn revoke_token(
    tx: &mut impl AsExec,
    operator_id: uuid::Uuid,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE operator_tokens SET revoked_at = $3 WHERE id = $2 AND operator_id = $1 AND revoked_at IS NULL")
            .bind(operator_id).bind(id).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

// ---------------------------------------------------------------------------------------------
// Failed authentications, shared by every node

/// Failures counted for `key` in its window that started after `window_start_after`.
pub async fn failures(conn: &mut impl AsExec, key: &str, window_start_after: DateTime<Utc>) -> StoreResult<i64> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i64>("SELECT failures FROM auth_failures WHERE key = $1 AND window_start > $2")
            .bind(key).bind(window_start_after).fetch_optional(&mut *c).await?.unwrap_or(0)
    }))
}

/// Counts one failure for `key`: a window older than `window_start_after` starts again at
/// `now`. One statement, so failures on two nodes at once both count. The new count.
pub async fn record_failure(
    tx: &mut impl AsExec,
    key: &str,
    now: DateTime<Utc>,
    window_start_after: DateTime<Utc>,
) -> StoreResult<i64> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar(
            "INSERT INTO auth_failures (key, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN auth_failures.window_start > $3 THEN auth_failures.failures + 1 ELSE 1 END, \
               window_start = CASE WHEN auth_failures.window_start > $3 THEN auth_failures.window_start ELSE $2 END \
             RETURNING failures",
        )
        .bind(key).bind(now).bind(window_start_after).fetch_one(&mut *c).await?
    }))
}

pub async fn clear_failures(tx: &mut impl AsExec, key: &str) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("DELETE FROM auth_failures WHERE key = $1").bind(key).execute(&mut *c).await?;
    });
    Ok(())
}
