//! PSPs, their API credentials and one-time password links.

use chrono::{DateTime, Utc};

use super::{AsExec, StoreError, StoreResult};
use crate::domain::ids::{CredentialId, PspId};
use crate::domain::psp::{Billing, FeeBand, PayoutFrequency, Psp, PspSettings};
use crate::with_conn;

#[derive(sqlx::FromRow)]
struct PspRow {
    id: PspId,
    name: String,
    fee_rate_bps: i64,
    fee_fixed_minor: i64,
    fee_bands: String,
    payout_iban: String,
    payout_bic: Option<String>,
    payout_frequency: String,
    billing: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PspRow> for Psp {
    type Error = StoreError;
    fn try_from(r: PspRow) -> Result<Psp, StoreError> {
        let fee_bands: Vec<FeeBand> =
            serde_json::from_str(&r.fee_bands).map_err(|e| StoreError::Corrupt(format!("psps.fee_bands: {e}")))?;
        let payout_frequency = PayoutFrequency::parse(&r.payout_frequency)
            .ok_or_else(|| StoreError::Corrupt("psps.payout_frequency".into()))?;
        Ok(Psp {
            psp_id: r.id,
            name: r.name,
            fee_rate_bps: r.fee_rate_bps,
            fee_fixed: r.fee_fixed_minor,
            fee_bands,
            iban: r.payout_iban,
            bic: r.payout_bic,
            payout_frequency,
            billing: match r.billing {
                Some(b) => serde_json::from_str(&b).map_err(|e| StoreError::Corrupt(format!("psps.billing: {e}")))?,
                None => Billing::default(),
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const PSP_COLUMNS: &str = "id, name, fee_rate_bps, fee_fixed_minor, fee_bands, payout_iban, payout_bic, payout_frequency, billing, created_at, updated_at";

fn billing_json(b: &Billing) -> Option<String> {
    (b != &Billing::default()).then(|| serde_json::to_string(b).unwrap_or_else(|_| "{}".into()))
}

fn bands_json(bands: &[FeeBand]) -> String {
    serde_json::to_string(bands).unwrap_or_else(|_| "[]".into())
}

pub async fn insert(tx: &mut impl AsExec, id: PspId, s: &PspSettings, now: DateTime<Utc>) -> StoreResult<Psp> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO psps (id, name, fee_rate_bps, fee_fixed_minor, fee_bands, payout_iban, payout_frequency, created_at, \
             updated_at, billing, payout_bic) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)",
        )
        .bind(id).bind(&s.name).bind(s.fee_rate_bps).bind(s.fee_fixed_minor).bind(bands_json(&s.fee_bands))
        .bind(&s.payout_iban).bind(s.payout_frequency.as_str()).bind(now).bind(billing_json(&s.billing))
        .bind(&s.payout_bic).execute(&mut *c).await?;
    });
    get(tx, id).await?.ok_or_else(|| StoreError::Corrupt("inserted psp vanished".into()))
}

pub async fn update(tx: &mut impl AsExec, id: PspId, s: &PspSettings, now: DateTime<Utc>) -> StoreResult<Option<Psp>> {
    with_conn!(tx, c => {
        sqlx::query(
            "UPDATE psps SET name = $2, fee_rate_bps = $3, fee_fixed_minor = $4, fee_bands = $5, payout_iban = $6, \
             payout_frequency = $7, updated_at = $8, billing = $9, payout_bic = $10 WHERE id = $1",
        )
        .bind(id).bind(&s.name).bind(s.fee_rate_bps).bind(s.fee_fixed_minor).bind(bands_json(&s.fee_bands))
        .bind(&s.payout_iban).bind(s.payout_frequency.as_str()).bind(now).bind(billing_json(&s.billing))
        .bind(&s.payout_bic).execute(&mut *c).await?;
    });
    get(tx, id).await
}

pub async fn get(conn: &mut impl AsExec, id: PspId) -> StoreResult<Option<Psp>> {
    let row: Option<PspRow> = with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {PSP_COLUMNS} FROM psps WHERE id = $1")).bind(id).fetch_optional(&mut *c).await?
    });
    row.map(Psp::try_from).transpose()
}

/// Locks the PSP row for the rest of the transaction (PostgreSQL; SQLite transactions are serial).
pub async fn get_for_update(tx: &mut impl AsExec, id: PspId) -> StoreResult<Option<Psp>> {
    let row: Option<PspRow> = with_conn!(tx, c, b => {
        let lock = if b == super::Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {PSP_COLUMNS} FROM psps WHERE id = $1{lock}")).bind(id).fetch_optional(&mut *c).await?
    });
    row.map(Psp::try_from).transpose()
}

/// PSPs newest first, after `starting_after` if given.
pub async fn list(conn: &mut impl AsExec, limit: i64, starting_after: Option<PspId>) -> StoreResult<Vec<Psp>> {
    let rows: Vec<PspRow> = with_conn!(conn, c => {
        match starting_after {
            Some(after) => sqlx::query_as(&format!("SELECT {PSP_COLUMNS} FROM psps WHERE id < $1 ORDER BY id DESC LIMIT $2"))
                .bind(after).bind(limit).fetch_all(&mut *c).await?,
            None => sqlx::query_as(&format!("SELECT {PSP_COLUMNS} FROM psps ORDER BY id DESC LIMIT $1"))
                .bind(limit).fetch_all(&mut *c).await?,
        }
    });
    rows.into_iter().map(Psp::try_from).collect()
}

/// A credential as the operator sees it (never its secret).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CredentialInfo {
    #[sqlx(rename = "id")]
    pub credential_id: CredentialId,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn insert_credential(
    tx: &mut impl AsExec,
    id: CredentialId,
    psp_id: PspId,
    username: &str,
    secret_digest: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("INSERT INTO psp_credentials (id, psp_id, username, secret_digest, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id).bind(psp_id).bind(username).bind(secret_digest).bind(now)
            .execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn list_credentials(conn: &mut impl AsExec, psp_id: PspId) -> StoreResult<Vec<CredentialInfo>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, username, created_at, revoked_at, last_used_at FROM psp_credentials WHERE psp_id = $1 ORDER BY id DESC",
        )
        .bind(psp_id).fetch_all(&mut *c).await?
    }))
}

/// Revokes a credential of `psp_id`; `None` when no such credential exists. Revoking twice keeps
/// the first revocation time.
pub async fn revoke_credential(
    tx: &mut impl AsExec,
    psp_id: PspId,
    id: CredentialId,
    now: DateTime<Utc>,
) -> StoreResult<Option<CredentialInfo>> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE psp_credentials SET revoked_at = $3 WHERE id = $1 AND psp_id = $2 AND revoked_at IS NULL")
            .bind(id).bind(psp_id).bind(now).execute(&mut *c).await?;
        sqlx::query_as(
            "SELECT id, username, created_at, revoked_at, last_used_at FROM psp_credentials WHERE id = $1 AND psp_id = $2",
        )
        .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}

/// What Basic auth needs to check a username.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthRecord {
    pub credential_id: CredentialId,
    pub psp_id: PspId,
    pub secret_digest: Vec<u8>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub async fn auth_record(conn: &mut impl AsExec, username: &str) -> StoreResult<Option<AuthRecord>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id AS credential_id, psp_id, secret_digest, revoked_at, last_used_at FROM psp_credentials WHERE username = $1",
        )
        .bind(username).fetch_optional(&mut *c).await?
    }))
}

pub async fn touch_credential(tx: &mut impl AsExec, id: CredentialId, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE psp_credentials SET last_used_at = $2 WHERE id = $1").bind(id).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn insert_password_link(
    tx: &mut impl AsExec,
    token_digest: &[u8],
    credential_id: CredentialId,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("INSERT INTO password_links (token_digest, credential_id, expires_at) VALUES ($1, $2, $3)")
            .bind(token_digest).bind(credential_id).bind(expires_at)
            .execute(&mut *c).await?;
    });
    Ok(())
}

/// The state of a password link.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkState {
    Unknown,
    Usable,
    /// Already used or expired.
    Gone,
}

pub async fn password_link_state(
    conn: &mut impl AsExec,
    token_digest: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<LinkState> {
    let row: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = with_conn!(conn, c => {
        sqlx::query_as("SELECT expires_at, used_at FROM password_links WHERE token_digest = $1")
            .bind(token_digest).fetch_optional(&mut *c).await?
    });
    Ok(match row {
        None => LinkState::Unknown,
        Some((expires_at, used_at)) if used_at.is_some() || expires_at <= now => LinkState::Gone,
        Some(_) => LinkState::Usable,
    })
}

/// Marks a link used, atomically: only one caller ever gets `true`, and only before it expires.
pub async fn consume_password_link(tx: &mut impl AsExec, token_digest: &[u8], now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE password_links SET used_at = $2 WHERE token_digest = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(token_digest).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// How far a PSP's clock runs ahead of the deployment's, in microseconds (`None`: no such PSP).
pub async fn clock_offset(conn: &mut impl AsExec, id: PspId) -> StoreResult<Option<i64>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT clock_offset_us FROM psps WHERE id = $1").bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Every PSP with its clock offset (for the scans of what is due, which run per PSP).
pub async fn clock_offsets(conn: &mut impl AsExec) -> StoreResult<Vec<(PspId, i64)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT id, clock_offset_us FROM psps ORDER BY id").fetch_all(&mut *c).await?
    }))
}

/// Moves a PSP's clock to `offset_us` ahead of the deployment's, never back.
pub async fn set_clock_offset(tx: &mut impl AsExec, id: PspId, offset_us: i64) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE psps SET clock_offset_us = $2 WHERE id = $1 AND clock_offset_us < $2")
            .bind(id).bind(offset_us).execute(&mut *c).await?;
    });
    Ok(())
}

/// Takes the right to advance a PSP's clock until `until`, unless someone else holds it.
pub async fn lease_clock(
    tx: &mut impl AsExec,
    id: PspId,
    wall: DateTime<Utc>,
    until: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE psps SET clock_lease_until = $3 WHERE id = $1 AND (clock_lease_until IS NULL OR clock_lease_until <= $2)")
            .bind(id).bind(wall).bind(until).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Gives the right to advance a PSP's clock back.
pub async fn release_clock(tx: &mut impl AsExec, id: PspId) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE psps SET clock_lease_until = NULL WHERE id = $1").bind(id).execute(&mut *c).await?;
    });
    Ok(())
}

/// Extends the advance lease of a PSP's clock.
pub async fn renew_clock_lease(tx: &mut impl AsExec, id: PspId, until: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE psps SET clock_lease_until = $2 WHERE id = $1").bind(id).bind(until).execute(&mut *c).await?;
    });
    Ok(())
}
