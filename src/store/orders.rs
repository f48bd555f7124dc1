//! Orders: the rows checkout creates and the use cases after it change, each change a
//! compare-and-set or a guarded `UPDATE` on the order's row.

use chrono::{DateTime, Utc};

use super::{AsExec, Backend, StoreResult};
use super::{corrupt, to_json};
use crate::domain::ids::{BuyerId, MerchantId, OrderId, PspId, SessionId};
use crate::domain::order::{OrderData, OrderState};
use crate::with_conn;

/// What reserving a capture on an order returned: the order after the change, with what the
/// capture needs of its PSP (fees) and buyer (virtual IBAN), so a capture reads nothing else.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reserved {
    pub state: String,
    pub captured: i64,
    pub buyer_id: Option<BuyerId>,
    pub merchant_id: MerchantId,
    pub duration: i64,
    pub fee_rate_bps: i64,
    pub fee_fixed_minor: i64,
    pub fee_bands: String,
    pub virtual_iban: Option<String>,
    /// Whom the invoice's e-mail goes to, and in which language.
    #[sqlx(flatten)]
    pub contact: super::messages::OrderContact,
    /// The operator's dunning policy (settings), if one was set.
    pub dunning_policy: Option<String>,
}

/// Adds `gross` to the order's captured amount if it still fits under the authorized amount (less
/// any canceled part), the order can be captured and the merchant has no invoice numbered
/// `number`; `None` otherwise. Atomic on both backends: the check is in the `UPDATE`, which also
/// locks the order row until the transaction ends. (The invoice number's unique key still decides
/// a race between two orders of one merchant.)
pub async fn reserve_capture(
    tx: &mut impl AsExec,
    psp_id: PspId,
    order_id: OrderId,
    gross: i64,
    currency: &str,
    number: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<Reserved>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_as(
            "UPDATE orders SET captured = captured + $3, updated_at = $5, \
             state = CASE WHEN captured + $3 + canceled_amount = gross THEN 'shipped' ELSE 'partially_shipped' END \
             WHERE id = $1 AND psp_id = $2 AND currency = $4 AND state IN ('created', 'partially_shipped') \
               AND captured + $3 + canceled_amount <= gross \
               AND NOT EXISTS (SELECT 1 FROM captures c WHERE c.merchant_id = orders.merchant_id \
                               AND c.external_invoice_number = $6) \
             RETURNING state, captured, buyer_id, merchant_id, duration, \
               (SELECT p.fee_rate_bps FROM psps p WHERE p.id = orders.psp_id) AS fee_rate_bps, \
               (SELECT p.fee_fixed_minor FROM psps p WHERE p.id = orders.psp_id) AS fee_fixed_minor, \
               (SELECT p.fee_bands FROM psps p WHERE p.id = orders.psp_id) AS fee_bands, \
               (SELECT b.virtual_iban FROM buyers b WHERE b.id = orders.buyer_id) AS virtual_iban, \
               order_data, payment_method, mandate_reference, \
               (SELECT s.locale FROM checkout_sessions s WHERE s.id = orders.session_id) AS locale, \
               (SELECT m.name FROM merchants m WHERE m.id = orders.merchant_id) AS merchant_name, \
               (SELECT v.value FROM settings v WHERE v.name = 'dunning_policy') AS dunning_policy",
        )
        .bind(order_id).bind(psp_id).bind(gross).bind(currency).bind(now).bind(number)
        .fetch_optional(&mut *c).await?
    }))
}

/// Locks an order row until the transaction ends (PostgreSQL; SQLite transactions are serial).
/// Decisions that read the order's captures take it first, so two of them never decide on the
/// same snapshot (write skew).
pub async fn lock_order(tx: &mut impl AsExec, id: OrderId) -> StoreResult<()> {
    with_conn!(tx, c, b => {
        if b == Backend::Postgres {
            sqlx::query("SELECT id FROM orders WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Ends an order at what it captured: the rest is released. Its new state and merchant, or
/// `None` if it cannot be canceled.
pub async fn cancel_order(
    tx: &mut impl AsExec,
    psp_id: PspId,
    id: OrderId,
    now: DateTime<Utc>,
) -> StoreResult<Option<(String, MerchantId)>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_as(
            "UPDATE orders SET canceled_amount = gross - captured, updated_at = $3, \
             state = CASE WHEN captured = 0 THEN 'canceled' ELSE 'shipped' END \
             WHERE id = $1 AND psp_id = $2 AND state IN ('created', 'partially_shipped', 'waiting') \
             RETURNING state, merchant_id",
        )
        .bind(id).bind(psp_id).bind(now)
        .fetch_optional(&mut *c).await?
    }))
}

/// Marks the order complete when it is fully shipped and every capture is settled. The caller
/// holds the order's lock ([`lock_order`]) taken in an earlier statement, so this statement's
/// snapshot includes every settlement committed before it.
/// Its merchant if the order was completed, `None` if it is not settled yet.
pub async fn complete_if_settled(
    tx: &mut impl AsExec,
    id: OrderId,
    now: DateTime<Utc>,
) -> StoreResult<Option<MerchantId>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar(
            "UPDATE orders SET state = 'complete', updated_at = $2 WHERE id = $1 AND state = 'shipped' \
             AND NOT EXISTS (SELECT 1 FROM captures WHERE order_id = $1 AND state IN ('open', 'late')) \
             RETURNING merchant_id",
        )
        .bind(id).bind(now).fetch_optional(&mut *c).await?
    }))
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
    /// When the mandate was accepted, if before the order (a standing one from the portal).
    pub mandate_signed_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The address whose portal shows the order: its person's e-mail, lower-cased (SPEC §9.6).
pub fn contact_email(d: &OrderData) -> Option<String> {
    d.debtor_person.as_ref().map(|p| p.email.trim().to_lowercase()).filter(|e| !e.is_empty())
}

fn contact_email_of_json(order_data: &str) -> Option<String> {
    serde_json::from_str::<OrderData>(order_data).ok().as_ref().and_then(contact_email)
}

pub async fn insert_order(tx: &mut impl AsExec, o: &NewOrder<'_>, now: DateTime<Utc>) -> StoreResult<OrderId> {
    let id = OrderId::new();
    let data = to_json(o.data)?;
    let a = o.data.amount;
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO orders (id, psp_id, merchant_id, session_id, buyer_id, state, decline_reason, external_order_id, \
             currency, gross, net, tax, duration, order_data, payment_method, debit_iban, mandate_reference, expires_at, \
             created_at, updated_at, mandate_text, contact_email, mandate_signed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $20, $21, $22)",
        )
        .bind(id).bind(o.psp_id).bind(o.merchant_id).bind(o.session_id).bind(o.buyer_id).bind(o.state.as_str())
        .bind(o.decline_reason).bind(&o.data.external_order_id).bind(a.currency.as_str()).bind(a.gross).bind(a.net).bind(a.tax)
        .bind(o.data.duration).bind(data).bind(o.payment_method).bind(o.debit_iban).bind(o.mandate_reference)
        .bind(o.expires_at).bind(now).bind(o.mandate_text).bind(contact_email(o.data)).bind(o.mandate_signed_at)
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
pub async fn due_expiries(
    conn: &mut impl AsExec,
    psp_id: PspId,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<OrderId>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT id FROM orders WHERE state IN ('authorized', 'pre_waiting') AND expires_at <= $1 AND psp_id = $2 ORDER BY expires_at LIMIT $3")
            .bind(now).bind(psp_id).bind(limit).fetch_all(&mut *c).await?
    }))
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
             updated_at = $9, state = $10, contact_email = $11 WHERE id = $1 AND updated_at = $2 AND captured + canceled_amount <= $4",
        )
        .bind(id).bind(expected_updated_at).bind(external_order_id).bind(amounts.0).bind(amounts.1).bind(amounts.2)
        .bind(duration).bind(order_data).bind(now).bind(state).bind(contact_email_of_json(order_data))
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// A complete order whose invoice is unpaid again (a returned direct debit) goes back to
/// `shipped`; its merchant if it did.
pub async fn reopen_if_complete(
    tx: &mut impl AsExec,
    id: OrderId,
    now: DateTime<Utc>,
) -> StoreResult<Option<MerchantId>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar("UPDATE orders SET state = 'shipped', updated_at = $2 WHERE id = $1 AND state = 'complete' RETURNING merchant_id")
            .bind(id).bind(now).fetch_optional(&mut *c).await?
    }))
}

/// Locks these orders (PostgreSQL), in id order.
pub async fn lock_orders(tx: &mut impl AsExec, ids: &[OrderId]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    with_conn!(tx, c, b => {
        if b == Backend::Postgres {
            let sql = format!("SELECT id FROM orders WHERE id IN ({list}) ORDER BY id FOR UPDATE");
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(*id);
            }
            q.execute(&mut *c).await?;
        }
    });
    Ok(())
}

/// Completes those of these (locked) orders whose every invoice is settled: (order, merchant).
pub async fn complete_many_if_settled(
    tx: &mut impl AsExec,
    ids: &[OrderId],
    now: DateTime<Utc>,
) -> StoreResult<Vec<(OrderId, MerchantId)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = (2..ids.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "UPDATE orders SET state = 'complete', updated_at = $1 WHERE id IN ({list}) AND state = 'shipped' \
         AND NOT EXISTS (SELECT 1 FROM captures WHERE order_id = orders.id AND state IN ('open', 'late')) \
         RETURNING id, merchant_id"
    );
    Ok(with_conn!(tx, c => {
        let mut q = sqlx::query_as(&sql).bind(now);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *c).await?
    }))
}
