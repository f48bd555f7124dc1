//! Buyers, checkout sessions, orders and decisions.

use chrono::{DateTime, Utc};

use super::to_json;
use super::{AsExec, Backend, StoreResult};
use crate::domain::ids::{BuyerId, DecisionId, MerchantId, OrderId, PspId, SessionId};
use crate::domain::order::DebtorCompany;
use crate::with_conn;

/// A buyer as the decision needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Buyer {
    pub id: BuyerId,
    pub name: String,
    pub credit_limit: Option<i64>,
    pub blocked: bool,
    pub virtual_iban: String,
}

/// Finds the buyer with `dedup_key`, creating it with `virtual_iban` if new, and locks it for the
/// rest of the transaction, so that decisions for one buyer run one after another. `None` when
/// the buyer is new but `virtual_iban` is taken by another buyer (the caller picks another).
pub async fn upsert_buyer_locked(
    tx: &mut impl AsExec,
    dedup_key: &str,
    company: &DebtorCompany,
    virtual_iban: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<Buyer>> {
    let address = to_json(&company.address)?;
    let search = company.name.to_lowercase();
    Ok(with_conn!(tx, c, b => {
        // No conflict target: a taken dedup key and a taken IBAN both leave the row out, without
        // aborting the transaction.
        sqlx::query(
            "INSERT INTO buyers (id, dedup_key, name, legal_form, registration_number, registration_court, tax_id, address, \
             search_name, blocked, virtual_iban, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, FALSE, $10, $11, $11) ON CONFLICT DO NOTHING",
        )
        .bind(BuyerId::new()).bind(dedup_key).bind(&company.name).bind(&company.legal_form)
        .bind(&company.registration_number).bind(&company.registration_court).bind(&company.tax_id)
        .bind(&address).bind(&search).bind(virtual_iban).bind(now)
        .execute(&mut *c).await?;
        let lock = if b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!(
            "SELECT id, name, credit_limit, blocked, virtual_iban FROM buyers WHERE dedup_key = $1{lock}"
        ))
        .bind(dedup_key).fetch_optional(&mut *c).await?
    }))
}

/// Exposure in `currency` of a buyer, merchant or PSP: authorized and not yet captured, plus
/// captured and not yet paid.
pub async fn exposure(tx: &mut impl AsExec, column: ExposureOf, id: uuid::Uuid, currency: &str) -> StoreResult<i64> {
    let col = match column {
        ExposureOf::Buyer => "buyer_id",
        ExposureOf::Merchant => "merchant_id",
        ExposureOf::Psp => "psp_id",
    };
    let (uncaptured, unpaid): (Option<i64>, Option<i64>) = with_conn!(tx, c => {
        sqlx::query_as(&format!(
            "SELECT (SELECT CAST(SUM(gross - captured - canceled_amount) AS BIGINT) FROM orders WHERE {col} = $1 \
                     AND currency = $2 AND state IN ('pre_waiting', 'authorized', 'waiting', 'created', 'partially_shipped')), \
                    (SELECT CAST(SUM(gross - refunded - charged_back - paid_direct - paid_bank) AS BIGINT) FROM captures WHERE {col} = $1 \
                     AND currency = $2 AND state IN ('open', 'late'))"
        ))
        .bind(id).bind(currency).fetch_one(&mut *c).await?
    });
    Ok(uncaptured.unwrap_or(0).saturating_add(unpaid.unwrap_or(0)))
}

/// Locks the merchant or PSP row until the transaction ends (PostgreSQL; SQLite transactions are
/// serial), so that decisions against its limit are made one at a time, like a buyer's.
/// Decisions lock buyer, then merchant, then PSP: always in that order, so they cannot deadlock.
pub async fn lock_for_exposure(tx: &mut impl AsExec, of: ExposureOf, id: uuid::Uuid) -> StoreResult<()> {
    let table = match of {
        ExposureOf::Buyer => "buyers",
        ExposureOf::Merchant => "merchants",
        ExposureOf::Psp => "psps",
    };
    with_conn!(tx, c, b => {
        if b == Backend::Postgres {
            sqlx::query(&format!("SELECT id FROM {table} WHERE id = $1 FOR UPDATE")).bind(id).execute(&mut *c).await?;
        }
    });
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum ExposureOf {
    Buyer,
    Merchant,
    Psp,
}

/// Companies among known buyers whose name contains `q` (case-insensitive), at most `limit`.
/// Buyers with an order of `psp_id` whose name contains `term` (lower case, without LIKE
/// wildcards), at most `limit`.
pub async fn search_buyers(
    conn: &mut impl AsExec,
    psp_id: PspId,
    term: &str,
    limit: i64,
) -> StoreResult<Vec<(String, String, String)>> {
    let pattern = format!("%{}%", term.to_lowercase().replace(['%', '_', '\\'], ""));
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT b.name, b.legal_form, b.address FROM buyers b WHERE b.search_name LIKE $1 \
             AND EXISTS (SELECT 1 FROM orders o WHERE o.buyer_id = b.id AND o.psp_id = $2) ORDER BY b.name LIMIT $3",
        )
        .bind(pattern).bind(psp_id).bind(limit).fetch_all(&mut *c).await?
    }))
}

pub async fn set_buyer_overrides(
    tx: &mut impl AsExec,
    id: BuyerId,
    credit_limit: Option<Option<i64>>,
    blocked: Option<bool>,
    now: DateTime<Utc>,
) -> StoreResult<Option<Buyer>> {
    Ok(with_conn!(tx, c => {
        if let Some(limit) = credit_limit {
            sqlx::query("UPDATE buyers SET credit_limit = $2, updated_at = $3 WHERE id = $1").bind(id).bind(limit).bind(now).execute(&mut *c).await?;
        }
        if let Some(b) = blocked {
            sqlx::query("UPDATE buyers SET blocked = $2, updated_at = $3 WHERE id = $1").bind(id).bind(b).bind(now).execute(&mut *c).await?;
        }
        sqlx::query_as("SELECT id, name, credit_limit, blocked, virtual_iban FROM buyers WHERE id = $1").bind(id).fetch_optional(&mut *c).await?
    }))
}

/// A checkout session row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: SessionId,
    pub kind: String,
    pub psp_id: PspId,
    pub merchant_id: MerchantId,
    pub status: String,
    pub order_data: Option<String>,
    pub merchant_customer_id: Option<String>,
    pub allowed_origins: String,
    pub redirect_urls: Option<String>,
    pub locale: String,
    pub order_id: Option<OrderId>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// How many times the buyer submitted it.
    pub attempts: i64,
}

const SESSION_COLUMNS: &str = "id, kind, psp_id, merchant_id, status, order_data, merchant_customer_id, allowed_origins, \
     redirect_urls, locale, order_id, expires_at, created_at, CAST(attempts AS BIGINT) AS attempts";

#[allow(clippy::too_many_arguments)]
pub async fn insert_session(
    tx: &mut impl AsExec,
    kind: &str,
    psp_id: PspId,
    merchant_id: MerchantId,
    order_data: Option<&str>,
    merchant_customer_id: Option<&str>,
    allowed_origins: &str,
    redirect_urls: Option<&str>,
    locale: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<SessionRow> {
    Ok(with_conn!(tx, c => {
        sqlx::query_as(&format!(
            "INSERT INTO checkout_sessions (id, kind, psp_id, merchant_id, status, order_data, merchant_customer_id, \
             allowed_origins, redirect_urls, locale, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $10, $11, $11) RETURNING {SESSION_COLUMNS}"
        ))
        .bind(SessionId::new()).bind(kind).bind(psp_id).bind(merchant_id).bind(order_data).bind(merchant_customer_id)
        .bind(allowed_origins).bind(redirect_urls).bind(locale).bind(expires_at).bind(now)
        .fetch_one(&mut *c).await?
    }))
}

/// A session by id, optionally locked for the transaction.
pub async fn get_session(conn: &mut impl AsExec, id: SessionId, lock: bool) -> StoreResult<Option<SessionRow>> {
    Ok(with_conn!(conn, c, b => {
        let l = if lock && b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {SESSION_COLUMNS} FROM checkout_sessions WHERE id = $1{l}"))
            .bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Sets a session's status (and order), counting `attempts` more submissions.
pub async fn set_session_status(
    tx: &mut impl AsExec,
    id: SessionId,
    status: &str,
    order_id: Option<OrderId>,
    attempts: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "UPDATE checkout_sessions SET status = $2, order_id = COALESCE($3, order_id), updated_at = $4, \
             attempts = attempts + $5 WHERE id = $1",
        )
        .bind(id).bind(status).bind(order_id).bind(now).bind(attempts).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn insert_decision(
    tx: &mut impl AsExec,
    order_id: OrderId,
    buyer_id: Option<BuyerId>,
    outcome: &str,
    decline_reason: Option<&str>,
    rules: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO decisions (id, order_id, buyer_id, outcome, decline_reason, rules, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(DecisionId::new()).bind(order_id).bind(buyer_id).bind(outcome).bind(decline_reason).bind(rules).bind(now)
        .execute(&mut *c).await?;
    });
    Ok(())
}

/// The stored decisions of an order, oldest first: (outcome, decline reason, rules JSON).
pub async fn decisions_for_order(
    conn: &mut impl AsExec,
    order_id: OrderId,
) -> StoreResult<Vec<(String, Option<String>, String)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT outcome, decline_reason, rules FROM decisions WHERE order_id = $1 ORDER BY id")
            .bind(order_id).fetch_all(&mut *c).await?
    }))
}

/// A stored setting, if the operator set one.
pub async fn get_setting(conn: &mut impl AsExec, name: &str) -> StoreResult<Option<String>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&mut *c).await?
    }))
}

pub async fn put_setting(tx: &mut impl AsExec, name: &str, value: &str, now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = $2, updated_at = $3",
        )
        .bind(name).bind(value).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}
