//! Captures (invoices), refunds (credit notes) and direct payments, each guarded by a
//! compare-and-set on the row it changes.

use chrono::{DateTime, NaiveDate, Utc};

use super::{AsExec, Backend, StoreResult, Tx};
use crate::domain::ids::{BuyerId, CaptureId, MerchantId, OrderId, PspId, RefundId};
use crate::with_conn;

/// Whether the merchant already has an invoice numbered `number`.
pub async fn invoice_number_taken(conn: &mut impl AsExec, merchant_id: MerchantId, number: &str) -> StoreResult<bool> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM captures WHERE merchant_id = $1 AND external_invoice_number = $2")
            .bind(merchant_id).bind(number).fetch_one(&mut *c).await? > 0
    }))
}

/// A capture row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaptureRow {
    pub id: CaptureId,
    pub order_id: OrderId,
    pub psp_id: PspId,
    pub merchant_id: MerchantId,
    pub buyer_id: BuyerId,
    pub external_invoice_number: String,
    pub invoice_url: Option<String>,
    pub currency: String,
    pub gross: i64,
    pub net: i64,
    pub tax: i64,
    pub fee: i64,
    pub refunded: i64,
    pub paid_direct: i64,
    pub state: String,
    pub duration: i64,
    pub due_date: String,
    pub payment_reference: String,
    pub shipping_info: Option<String>,
    pub line_items: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub virtual_iban: String,
    pub dunning_level: i64,
    pub dunning_stage: i64,
    pub next_dunning_on: Option<String>,
    pub last_dunning_on: Option<String>,
    pub dunning_paused_until: Option<DateTime<Utc>>,
    pub dunning_pause_reason: Option<String>,
    pub collection_at: Option<DateTime<Utc>>,
    pub dunning_fees: i64,
    pub dunning_interest: i64,
    pub dunning_waived: i64,
    pub interest_through: Option<String>,
    /// Principal the buyer paid into netterms' account (transfer or direct debit).
    pub paid_bank: i64,
    /// Dunning fees and interest the buyer paid.
    pub dunning_paid: i64,
    /// Open disputes: dunning waits while there is one.
    pub disputes_open: i64,
    /// What chargebacks took off the invoice: the buyer owes it no longer, the PSP bears it.
    pub charged_back: i64,
}

impl CaptureRow {
    /// What the buyer still owes on this invoice.
    pub fn outstanding(&self) -> i64 {
        (self.gross - self.refunded - self.charged_back - self.paid_direct - self.paid_bank).max(0)
    }

    /// Dunning fees and default interest charged, neither waived nor paid.
    pub fn dunning_charges(&self) -> i64 {
        self.dunning_fees + self.dunning_interest - self.dunning_waived - self.dunning_paid
    }

    /// Not paid and not canceled: the buyer still owes on it.
    pub fn is_unpaid(&self) -> bool {
        matches!(self.state.as_str(), "open" | "late")
    }
}

const CAPTURE_SELECT: &str = "SELECT c.id, c.order_id, c.psp_id, c.merchant_id, c.buyer_id, c.external_invoice_number, c.invoice_url, \
     c.currency, c.gross, c.net, c.tax, c.fee, c.refunded, c.paid_direct, c.state, c.duration, c.due_date, c.payment_reference, \
     c.shipping_info, c.line_items, c.created_at, c.updated_at, b.virtual_iban, c.dunning_level, c.dunning_stage, \
     c.next_dunning_on, c.last_dunning_on, c.dunning_paused_until, c.dunning_pause_reason, c.collection_at, c.dunning_fees, c.dunning_interest, \
     c.dunning_waived, c.interest_through, c.paid_bank, c.dunning_paid, c.disputes_open, c.charged_back FROM captures c JOIN buyers b ON b.id = c.buyer_id";

/// A new capture's fields.
pub struct NewCapture<'a> {
    pub id: CaptureId,
    pub order_id: OrderId,
    pub psp_id: PspId,
    pub merchant_id: MerchantId,
    pub buyer_id: BuyerId,
    pub external_invoice_number: &'a str,
    pub invoice_url: Option<&'a str>,
    pub currency: &'a str,
    pub gross: i64,
    pub net: i64,
    pub tax: i64,
    pub fee: i64,
    pub duration: i64,
    pub due_date: NaiveDate,
    /// When its first reminder or dunning step is due.
    pub next_dunning_on: Option<NaiveDate>,
    pub payment_reference: &'a str,
    pub shipping_info: Option<&'a str>,
    pub line_items: &'a str,
}

/// Inserts a capture (deferred). The merchant's invoice numbers are unique.
pub fn insert_capture(tx: &mut Tx, n: &NewCapture<'_>, now: DateTime<Utc>) {
    tx.defer(
        "INSERT INTO captures (id, order_id, psp_id, merchant_id, buyer_id, external_invoice_number, invoice_url, currency, \
         gross, net, tax, fee, state, duration, due_date, payment_reference, shipping_info, line_items, created_at, updated_at, \
         next_dunning_on) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'open', $13, $14, $15, $16, $17, $18, $18, $19)",
        vec![
            n.id.0.into(),
            n.order_id.0.into(),
            n.psp_id.0.into(),
            n.merchant_id.0.into(),
            n.buyer_id.0.into(),
            n.external_invoice_number.into(),
            n.invoice_url.into(),
            n.currency.into(),
            n.gross.into(),
            n.net.into(),
            n.tax.into(),
            n.fee.into(),
            n.duration.into(),
            n.due_date.to_string().into(),
            n.payment_reference.into(),
            n.shipping_info.into(),
            n.line_items.into(),
            now.into(),
            n.next_dunning_on.map(|d| d.to_string()).into(),
        ],
    );
}

/// A capture of `psp_id`, optionally locked for the transaction.
pub async fn get_capture(
    conn: &mut impl AsExec,
    psp_id: PspId,
    id: CaptureId,
    lock: bool,
) -> StoreResult<Option<CaptureRow>> {
    Ok(with_conn!(conn, c, b => {
        let l = if lock && b == Backend::Postgres { " FOR UPDATE OF c" } else { "" };
        sqlx::query_as(&format!("{CAPTURE_SELECT} WHERE c.id = $1 AND c.psp_id = $2{l}"))
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}

/// A capture with what its buyer's messages need from its order, locked (for the dunning scan:
/// one read per invoice).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaptureWithContact {
    #[sqlx(flatten)]
    pub capture: CaptureRow,
    #[sqlx(flatten)]
    pub contact: super::messages::OrderContact,
}

/// [`CAPTURE_SELECT`] with the order's contact columns.
fn select_with_contact() -> String {
    CAPTURE_SELECT.replacen(
        " FROM captures c JOIN buyers b ON b.id = c.buyer_id",
        ", o.order_data, o.payment_method, o.mandate_reference, s.locale, m.name AS merchant_name \
         FROM captures c JOIN buyers b ON b.id = c.buyer_id JOIN orders o ON o.id = c.order_id \
         LEFT JOIN checkout_sessions s ON s.id = o.session_id LEFT JOIN merchants m ON m.id = o.merchant_id",
        1,
    )
}

pub async fn get_capture_with_contact(
    conn: &mut impl AsExec,
    psp_id: PspId,
    id: CaptureId,
) -> StoreResult<Option<CaptureWithContact>> {
    Ok(with_conn!(conn, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE OF c" } else { "" };
        let select = select_with_contact();
        sqlx::query_as(&format!("{select} WHERE c.id = $1 AND c.psp_id = $2{l}"))
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}

/// Marks these open captures late in one statement; the ids it marked.
pub async fn mark_late_many(
    tx: &mut impl AsExec,
    ids: &[CaptureId],
    now: DateTime<Utc>,
) -> StoreResult<Vec<CaptureId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = (0..ids.len()).map(|i| format!("${}", i + 2)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "UPDATE captures SET state = 'late', updated_at = $1 WHERE state = 'open' AND id IN ({list}) RETURNING id"
    );
    Ok(with_conn!(tx, c => {
        let mut q = sqlx::query_scalar(&sql).bind(now);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *c).await?
    }))
}

/// The PSP a capture belongs to (for operators, who name captures by id alone).
pub async fn psp_of(conn: &mut impl AsExec, id: CaptureId) -> StoreResult<Option<PspId>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT psp_id FROM captures WHERE id = $1").bind(id).fetch_optional(&mut *c).await?
    }))
}

pub async fn captures_of_order(conn: &mut impl AsExec, order_id: OrderId) -> StoreResult<Vec<CaptureRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("{CAPTURE_SELECT} WHERE c.order_id = $1 ORDER BY c.id")).bind(order_id).fetch_all(&mut *c).await?
    }))
}

/// Sets a capture's refunded and paid_direct amounts and state, if they are still `expected` (its
/// values when read); `false` if another request changed it meanwhile.
pub async fn update_capture_amounts(
    tx: &mut impl AsExec,
    id: CaptureId,
    expected: (i64, i64),
    refunded: i64,
    paid_direct: i64,
    state: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE captures SET refunded = $4, paid_direct = $5, state = $6, updated_at = $7 \
             WHERE id = $1 AND refunded = $2 AND paid_direct = $3",
        )
        .bind(id).bind(expected.0).bind(expected.1).bind(refunded).bind(paid_direct).bind(state).bind(now)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Extends an unpaid capture's term; `false` if it is not longer or the capture is settled.
pub async fn extend_capture(
    tx: &mut impl AsExec,
    id: CaptureId,
    duration: i64,
    due_date: NaiveDate,
    next_dunning_on: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE captures SET duration = $2, due_date = $3, state = 'open', updated_at = $4, next_dunning_on = $5 \
             WHERE id = $1 AND duration < $2 AND state IN ('open', 'late')",
        )
        .bind(id).bind(duration).bind(due_date.to_string()).bind(now).bind(next_dunning_on.map(|d| d.to_string()))
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// A refund row (a credit note).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: RefundId,
    pub capture_id: CaptureId,
    pub psp_id: PspId,
    pub merchant_id: MerchantId,
    pub external_credit_note_number: Option<String>,
    pub reason: Option<String>,
    pub currency: String,
    pub gross: i64,
    pub net: i64,
    pub tax: i64,
    pub owed_to_buyer: i64,
    pub line_items: String,
    pub created_at: DateTime<Utc>,
}

/// The merchant's credit note numbered `number`, if any.
pub async fn find_refund(
    conn: &mut impl AsExec,
    merchant_id: MerchantId,
    number: &str,
) -> StoreResult<Option<RefundRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, capture_id, psp_id, merchant_id, external_credit_note_number, reason, currency, gross, net, tax, \
             owed_to_buyer, line_items, created_at FROM refunds WHERE merchant_id = $1 AND external_credit_note_number = $2",
        )
        .bind(merchant_id).bind(number).fetch_optional(&mut *c).await?
    }))
}

/// Inserts a refund (deferred). Credit note numbers are unique per merchant: a concurrent
/// duplicate fails at commit.
pub fn insert_refund(tx: &mut Tx, r: &RefundRow) {
    tx.defer(
        "INSERT INTO refunds (id, capture_id, psp_id, merchant_id, external_credit_note_number, reason, currency, gross, \
         net, tax, owed_to_buyer, line_items, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        vec![
            r.id.0.into(),
            r.capture_id.0.into(),
            r.psp_id.0.into(),
            r.merchant_id.0.into(),
            r.external_credit_note_number.as_deref().into(),
            r.reason.as_deref().into(),
            r.currency.as_str().into(),
            r.gross.into(),
            r.net.into(),
            r.tax.into(),
            r.owed_to_buyer.into(),
            r.line_items.as_str().into(),
            r.created_at.into(),
        ],
    );
}

/// The amount of the direct payment `external_payment_id` confirmed on a capture, if any.
pub async fn find_direct_payment(
    conn: &mut impl AsExec,
    capture_id: CaptureId,
    external_payment_id: &str,
) -> StoreResult<Option<i64>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT amount FROM direct_payments WHERE capture_id = $1 AND external_payment_id = $2")
            .bind(capture_id).bind(external_payment_id).fetch_optional(&mut *c).await?
    }))
}

/// Records a payment made to the merchant directly (deferred; `(capture, external_payment_id)`
/// is unique, so a concurrent duplicate fails at commit).
pub fn insert_direct_payment(
    tx: &mut Tx,
    id: uuid::Uuid,
    capture: &CaptureRow,
    external_payment_id: Option<&str>,
    amount: i64,
    now: DateTime<Utc>,
) {
    tx.defer(
        "INSERT INTO direct_payments (id, capture_id, psp_id, external_payment_id, currency, amount, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            id.into(),
            capture.id.0.into(),
            capture.psp_id.0.into(),
            external_payment_id.into(),
            capture.currency.as_str().into(),
            amount.into(),
            now.into(),
        ],
    );
}

/// Open captures whose due date has passed (at most `limit`).
pub async fn overdue(
    conn: &mut impl AsExec,
    psp_id: PspId,
    today: NaiveDate,
    limit: i64,
) -> StoreResult<Vec<CaptureId>> {
    Ok(with_conn!(conn, c => {
        // An invoice whose direct debit is on its way is not late: its collection day may fall
        // after the due date (weekends, holidays).
        sqlx::query_scalar(
            "SELECT id FROM captures WHERE psp_id = $1 AND state = 'open' AND due_date < $2 \
             AND NOT EXISTS (SELECT 1 FROM direct_debits d WHERE d.capture_id = captures.id AND d.state = 'pending') \
             ORDER BY due_date, id LIMIT $3",
        )
            .bind(psp_id).bind(today.to_string()).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// These invoices, locked, oldest due first (the order every payment locks them in).
pub async fn lock_many(tx: &mut impl AsExec, ids: &[CaptureId]) -> StoreResult<Vec<CaptureRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    Ok(with_conn!(tx, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE OF c" } else { "" };
        let sql = format!("{CAPTURE_SELECT} WHERE c.id IN ({list}) ORDER BY c.due_date, c.id{l}");
        let mut q = sqlx::query_as(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&mut *c).await?
    }))
}

/// A buyer's unpaid invoices in `currency` (optionally of one PSP), locked, oldest due first.
pub async fn unpaid_of_buyer(
    tx: &mut impl AsExec,
    buyer_id: BuyerId,
    currency: &str,
    psp_id: Option<PspId>,
) -> StoreResult<Vec<CaptureRow>> {
    Ok(with_conn!(tx, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE OF c" } else { "" };
        sqlx::query_as(&format!(
            "{CAPTURE_SELECT} WHERE c.buyer_id = $1 AND c.currency = $2 AND c.state IN ('open', 'late') \
             AND ($3 IS NULL OR c.psp_id = $3) ORDER BY c.due_date, c.id{l}"
        ))
        .bind(buyer_id).bind(currency).bind(psp_id).fetch_all(&mut *c).await?
    }))
}

/// Books a payment's part on an invoice read (and locked) as `c`: `charges` towards its dunning
/// charges and `principal` towards the invoice, with its new state; `false` if it changed since.
pub async fn apply_payment(
    tx: &mut impl AsExec,
    c: &CaptureRow,
    charges: i64,
    principal: i64,
    state: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, x => {
        sqlx::query(
            "UPDATE captures SET paid_bank = paid_bank + $2, dunning_paid = dunning_paid + $3, state = $4, updated_at = $5 \
             WHERE id = $1 AND paid_bank = $6 AND dunning_paid = $7 AND refunded = $8 AND paid_direct = $9",
        )
        .bind(c.id).bind(principal).bind(charges).bind(state).bind(now)
        .bind(c.paid_bank).bind(c.dunning_paid).bind(c.refunded).bind(c.paid_direct)
        .execute(&mut *x).await?.rows_affected() == 1
    }))
}

/// Takes a returned payment's part off an invoice read (and locked) as `c`: it is unpaid again
/// in `state`, its dunning due next on `next_dunning_on`; `false` if it changed since.
pub async fn reopen_after_return(
    tx: &mut impl AsExec,
    c: &CaptureRow,
    charges: i64,
    principal: i64,
    state: &str,
    next_dunning_on: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, x => {
        sqlx::query(
            "UPDATE captures SET paid_bank = paid_bank - $2, dunning_paid = dunning_paid - $3, state = $4, \
             next_dunning_on = $5, updated_at = $6 WHERE id = $1 AND paid_bank = $7 AND dunning_paid = $8 \
             AND paid_bank >= $2 AND dunning_paid >= $3",
        )
        .bind(c.id).bind(principal).bind(charges).bind(state).bind(next_dunning_on.map(|d| d.to_string())).bind(now)
        .bind(c.paid_bank).bind(c.dunning_paid)
        .execute(&mut *x).await?.rows_affected() == 1
    }))
}

/// The invoice's next dunning step falls due on `next` (an unpaid invoice only).
pub async fn set_next_dunning(
    tx: &mut impl AsExec,
    id: CaptureId,
    next: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, x => {
        sqlx::query("UPDATE captures SET next_dunning_on = $2, updated_at = $3 WHERE id = $1 AND state IN ('open', 'late')")
            .bind(id).bind(next.map(|d| d.to_string())).bind(now).execute(&mut *x).await?;
    });
    Ok(())
}

/// The invoices carrying these payment references, with their orders' contacts, locked.
pub async fn lock_by_references(tx: &mut impl AsExec, refs: &[String]) -> StoreResult<Vec<CaptureWithContact>> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let list = (1..=refs.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    Ok(with_conn!(tx, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE OF c" } else { "" };
        let select = select_with_contact();
        let sql = format!("{select} WHERE c.payment_reference IN ({list}) ORDER BY c.due_date, c.id{l}");
        let mut q = sqlx::query_as(&sql);
        for r in refs {
            q = q.bind(r.as_str());
        }
        q.fetch_all(&mut *c).await?
    }))
}

/// Books principal on many invoices read (and locked) as given, in one statement: each row is
/// (invoice as read, principal, new state). How many it changed (fewer: one changed meanwhile).
pub async fn apply_payments(
    tx: &mut impl AsExec,
    rows: &[(&CaptureRow, i64, &str)],
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let mut n = 0;
    for part in rows.chunks(super::rows_per_statement(4)) {
        n += apply_payments_once(tx, part, now).await?;
    }
    Ok(n)
}

async fn apply_payments_once(
    tx: &mut impl AsExec,
    rows: &[(&CaptureRow, i64, &str)],
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    Ok(with_conn!(tx, c, b => {
        let values = (0..rows.len())
            .map(|i| {
                let n = 4 * i + 2;
                match b {
                    Backend::Postgres => format!("(CAST(${} AS UUID), CAST(${} AS BIGINT), CAST(${} AS TEXT), CAST(${} AS BIGINT))", n, n + 1, n + 2, n + 3),
                    Backend::Sqlite => format!("(${}, ${}, ${}, ${})", n, n + 1, n + 2, n + 3),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH v (id, principal, state, before) AS (VALUES {values}) \
             UPDATE captures SET paid_bank = captures.paid_bank + v.principal, state = v.state, updated_at = $1 \
             FROM v WHERE captures.id = v.id AND captures.paid_bank = v.before"
        );
        let mut q = sqlx::query(&sql).bind(now);
        for (r, principal, state) in rows {
            q = q.bind(r.id).bind(*principal).bind(*state).bind(r.paid_bank);
        }
        q.execute(&mut *c).await?.rows_affected()
    }))
}
