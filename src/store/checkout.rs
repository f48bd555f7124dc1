//! Buyers, checkout sessions, orders and decisions.

use chrono::{DateTime, Utc};

use super::{AsExec, Backend, StoreError, StoreResult};
use crate::domain::ids::{BuyerId, DecisionId, MerchantId, OrderId, PspId, SessionId};
use crate::domain::order::{DebtorCompany, OrderData, OrderState};
use crate::with_conn;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| corrupt("json", e))
}

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
                    (SELECT CAST(SUM(gross - refunded - paid_direct) AS BIGINT) FROM captures WHERE {col} = $1 \
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

/// An order row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: OrderId,
    pub psp_id: PspId,
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    pub buyer_id: Option<BuyerId>,
    pub state: String,
    pub decline_reason: Option<String>,
    pub external_order_id: Option<String>,
    pub order_data: String,
    pub payment_method: String,
    pub debit_iban: Option<String>,
    pub mandate_reference: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub virtual_iban: Option<String>,
    pub captured: i64,
    pub canceled_amount: i64,
}

impl OrderRow {
    pub fn state(&self) -> StoreResult<OrderState> {
        OrderState::parse(&self.state).ok_or_else(|| corrupt("orders.state", &self.state))
    }

    pub fn data(&self) -> StoreResult<OrderData> {
        serde_json::from_str(&self.order_data).map_err(|e| corrupt("orders.order_data", e))
    }
}

const ORDER_SELECT: &str = "SELECT o.id, o.psp_id, o.merchant_id, o.session_id, o.buyer_id, o.state, o.decline_reason, \
     o.external_order_id, o.order_data, o.payment_method, o.debit_iban, o.mandate_reference, o.expires_at, o.created_at, \
     o.updated_at, b.virtual_iban, o.captured, o.canceled_amount FROM orders o LEFT JOIN buyers b ON b.id = o.buyer_id";

/// What a new order is made of.
pub struct NewOrder<'a> {
    pub psp_id: PspId,
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    pub buyer_id: Option<BuyerId>,
    pub state: OrderState,
    pub decline_reason: Option<&'a str>,
    pub data: &'a OrderData,
    pub payment_method: &'a str,
    pub debit_iban: Option<&'a str>,
    pub mandate_reference: Option<&'a str>,
    pub mandate_text: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert_order(tx: &mut impl AsExec, o: &NewOrder<'_>, now: DateTime<Utc>) -> StoreResult<OrderId> {
    let id = OrderId::new();
    let data = to_json(o.data)?;
    let a = o.data.amount;
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO orders (id, psp_id, merchant_id, session_id, buyer_id, state, decline_reason, external_order_id, \
             currency, gross, net, tax, duration, order_data, payment_method, debit_iban, mandate_reference, expires_at, \
             created_at, updated_at, mandate_text) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $20)",
        )
        .bind(id).bind(o.psp_id).bind(o.merchant_id).bind(o.session_id).bind(o.buyer_id).bind(o.state.as_str())
        .bind(o.decline_reason).bind(&o.data.external_order_id).bind(a.currency.as_str()).bind(a.gross).bind(a.net).bind(a.tax)
        .bind(o.data.duration).bind(data).bind(o.payment_method).bind(o.debit_iban).bind(o.mandate_reference)
        .bind(o.expires_at).bind(now).bind(o.mandate_text)
        .execute(&mut *c).await?;
    });
    Ok(id)
}

/// An order of `psp_id` (any PSP if `None`), optionally locked.
pub async fn get_order(
    conn: &mut impl AsExec,
    psp_id: Option<PspId>,
    id: OrderId,
    lock: bool,
) -> StoreResult<Option<OrderRow>> {
    Ok(with_conn!(conn, c, b => {
        let l = if lock && b == Backend::Postgres { " FOR UPDATE OF o" } else { "" };
        sqlx::query_as(&format!("{ORDER_SELECT} WHERE o.id = $1 AND ($2 IS NULL OR o.psp_id = $2){l}"))
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}

/// Moves an order from `from` to `to` if it is still in `from`; `false` otherwise.
pub async fn transition_order(
    tx: &mut impl AsExec,
    id: OrderId,
    from: OrderState,
    to: OrderState,
    external_order_id: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE orders SET state = $3, external_order_id = COALESCE($4, external_order_id), updated_at = $5 \
             WHERE id = $1 AND state = $2",
        )
        .bind(id).bind(from.as_str()).bind(to.as_str()).bind(external_order_id).bind(now)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Sets the decline reason of an order declined in review.
pub async fn set_decline_reason(tx: &mut impl AsExec, id: OrderId, reason: &str) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE orders SET decline_reason = $2 WHERE id = $1").bind(id).bind(reason).execute(&mut *c).await?;
    });
    Ok(())
}

/// Ids of unconfirmed authorizations whose time has run out.
pub async fn due_expiries(conn: &mut impl AsExec, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<OrderId>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT id FROM orders WHERE state IN ('authorized', 'pre_waiting') AND expires_at <= $1 LIMIT $2")
            .bind(now).bind(limit).fetch_all(&mut *c).await?
    }))
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

/// A PSP's orders, newest first, optionally of one merchant and one state.
pub async fn list_orders(
    conn: &mut impl AsExec,
    psp_id: PspId,
    merchant_id: Option<MerchantId>,
    state: Option<&str>,
    limit: i64,
    starting_after: Option<OrderId>,
) -> StoreResult<Vec<OrderRow>> {
    let after = starting_after.unwrap_or(OrderId(uuid::Uuid::max()));
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "{ORDER_SELECT} WHERE o.psp_id = $1 AND o.id < $2 AND ($3 IS NULL OR o.merchant_id = $3) \
             AND ($4 IS NULL OR o.state = $4) ORDER BY o.id DESC LIMIT $5"
        ))
        .bind(psp_id).bind(after).bind(merchant_id).bind(state).bind(limit)
        .fetch_all(&mut *c).await?
    }))
}

/// Changes an order's details if it is still as `expected_updated_at` says (compare-and-set):
/// `false` if another request changed it meanwhile.
#[allow(clippy::too_many_arguments)]
pub async fn update_order_details(
    tx: &mut impl AsExec,
    id: OrderId,
    expected_updated_at: DateTime<Utc>,
    external_order_id: Option<&str>,
    amounts: (i64, i64, i64),
    duration: i64,
    order_data: &str,
    state: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE orders SET external_order_id = $3, gross = $4, net = $5, tax = $6, duration = $7, order_data = $8, \
             updated_at = $9, state = $10 WHERE id = $1 AND updated_at = $2 AND captured + canceled_amount <= $4",
        )
        .bind(id).bind(expected_updated_at).bind(external_order_id).bind(amounts.0).bind(amounts.1).bind(amounts.2)
        .bind(duration).bind(order_data).bind(now).bind(state)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}
