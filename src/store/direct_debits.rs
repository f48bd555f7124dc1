//! SEPA direct debits: collections (one per invoice and attempt), the pain.008 files that carry
//! them, and what the bank did with them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AsExec, Backend, StoreResult};
use crate::domain::ids::{BuyerId, CaptureId, PspId};
use crate::with_conn;

/// The invoice, PSP and buyer of the collection with this end-to-end id.
pub async fn by_end_to_end(conn: &mut impl AsExec, e2e: &str) -> StoreResult<Option<(CaptureId, PspId, BuyerId)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT capture_id, psp_id, buyer_id FROM direct_debits WHERE end_to_end_id = $1")
            .bind(e2e).fetch_optional(&mut *c).await?
    }))
}

/// The buyer who gave the mandate with this reference (at checkout).
pub async fn buyer_of_mandate(
    conn: &mut impl AsExec,
    mandate: &str,
    psp_id: Option<PspId>,
) -> StoreResult<Option<BuyerId>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT buyer_id FROM orders WHERE mandate_reference = $1 AND buyer_id IS NOT NULL AND ($2 IS NULL OR psp_id = $2) LIMIT 1",
        )
        .bind(mandate).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}

/// A collection.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DirectDebitRow {
    pub id: uuid::Uuid,
    pub capture_id: CaptureId,
    pub psp_id: PspId,
    pub buyer_id: BuyerId,
    pub attempt: i64,
    pub file_id: Option<uuid::Uuid>,
    pub end_to_end_id: String,
    pub mandate_reference: String,
    pub sequence: String,
    pub currency: String,
    pub amount: i64,
    pub collection_date: String,
    pub state: String,
    pub payment_id: Option<uuid::Uuid>,
    pub return_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, capture_id, psp_id, buyer_id, attempt, file_id, end_to_end_id, mandate_reference, sequence, \
     currency, amount, collection_date, state, payment_id, return_reason, created_at";

/// The collection with this end-to-end id, locked on PostgreSQL.
pub async fn get_by_end_to_end(tx: &mut impl AsExec, e2e: &str) -> StoreResult<Option<DirectDebitRow>> {
    Ok(with_conn!(tx, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM direct_debits WHERE end_to_end_id = $1{l}"))
            .bind(e2e).fetch_optional(&mut *c).await?
    }))
}

/// The collections under mandate `mandate` the bank booked and did not return (locked), oldest first.
pub async fn collected_by_mandate(tx: &mut impl AsExec, mandate: &str) -> StoreResult<Vec<DirectDebitRow>> {
    Ok(with_conn!(tx, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM direct_debits WHERE mandate_reference = $1 AND state = 'collected' ORDER BY collection_date, id{l}"
        ))
        .bind(mandate).fetch_all(&mut *c).await?
    }))
}

/// The latest collection of an invoice.
pub async fn latest_of_capture(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Option<DirectDebitRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM direct_debits WHERE capture_id = $1 ORDER BY attempt DESC LIMIT 1"))
            .bind(capture_id).fetch_optional(&mut *c).await?
    }))
}

/// A pending collection was booked by the bank as payment `payment_id`; `false` if it was not pending.
pub async fn mark_collected(
    tx: &mut impl AsExec,
    e2e: &str,
    payment_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE direct_debits SET state = 'collected', payment_id = $2, updated_at = $3 WHERE end_to_end_id = $1 AND state = 'pending'",
        )
        .bind(e2e).bind(payment_id).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// A collected debit came back with `reason`; `false` if it was not collected.
pub async fn mark_returned(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE direct_debits SET state = 'returned', return_reason = $2, updated_at = $3 WHERE id = $1 AND state = 'collected'",
        )
        .bind(id).bind(reason).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// The bank refused to present a pending collection (a pain.002) with `reason`; `false` if it
/// was not pending.
pub async fn mark_rejected(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE direct_debits SET state = 'rejected', return_reason = $2, updated_at = $3 WHERE id = $1 AND state = 'pending'",
        )
        .bind(id).bind(reason).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// The file whose pain.008 has this `MsgId`.
pub async fn file_by_message_id(conn: &mut impl AsExec, message_id: &str) -> StoreResult<Option<FileRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT id, message_id, collection_date, currency, count, total, xml, created_at FROM direct_debit_files WHERE message_id = $1")
            .bind(message_id).fetch_optional(&mut *c).await?
    }))
}

/// The buyer pays by bank transfer from now on: its orders' direct-debit mandates are no longer used.
pub async fn switch_buyer_to_transfer(tx: &mut impl AsExec, buyer_id: BuyerId, now: DateTime<Utc>) -> StoreResult<u64> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE orders SET payment_method = 'bank_transfer', updated_at = $2 WHERE buyer_id = $1 AND payment_method = 'direct_debit'",
        )
        .bind(buyer_id).bind(now).execute(&mut *c).await?.rows_affected()
    }))
}

/// An invoice to collect by direct debit, with what its collection needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDebit {
    pub capture_id: CaptureId,
    pub psp_id: PspId,
    pub buyer_id: BuyerId,
    pub amount: i64,
    pub due_date: String,
    pub payment_reference: String,
    pub external_invoice_number: String,
    pub mandate_reference: String,
    pub debit_iban: String,
    pub signed_at: DateTime<Utc>,
    pub debtor_name: String,
    /// Whether the mandate was used for a collection before (then `RCUR`, else `FRST`); one the
    /// bank rejected before presenting it does not count.
    pub mandate_used: bool,
}

/// `psp_id`'s unpaid euro invoices paid by direct debit, due by `until`, never collected (one
/// automatic collection per invoice: after a return or a reject the buyer transfers).
pub async fn due_for_collection(
    conn: &mut impl AsExec,
    psp_id: PspId,
    until: NaiveDate,
    limit: i64,
) -> StoreResult<Vec<DueDebit>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT c.id AS capture_id, c.psp_id, c.buyer_id, c.gross - c.refunded - c.charged_back - c.paid_direct - c.paid_bank AS amount, \
                    c.due_date, c.payment_reference, c.external_invoice_number, o.mandate_reference, o.debit_iban, \
                    COALESCE(o.mandate_signed_at, o.created_at) AS signed_at, b.name AS debtor_name, \
                    EXISTS (SELECT 1 FROM direct_debits u WHERE u.mandate_reference = o.mandate_reference AND u.state <> 'rejected') AS mandate_used \
             FROM captures c JOIN orders o ON o.id = c.order_id JOIN buyers b ON b.id = c.buyer_id \
             WHERE c.psp_id = $1 AND c.state IN ('open', 'late') AND c.currency = 'EUR' AND c.due_date <= $2 \
               AND o.payment_method = 'direct_debit' AND o.mandate_reference IS NOT NULL AND o.debit_iban IS NOT NULL \
               AND c.gross - c.refunded - c.charged_back - c.paid_direct - c.paid_bank > 0 \
               AND NOT EXISTS (SELECT 1 FROM direct_debits d WHERE d.capture_id = c.id) \
             ORDER BY c.due_date, c.id LIMIT $3",
        )
        .bind(psp_id).bind(until.to_string()).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Records a collection; fails on a concurrent collection of the same invoice (unique attempt).
pub async fn insert_debit(tx: &mut impl AsExec, d: &DirectDebitRow) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(&format!(
            "INSERT INTO direct_debits ({COLUMNS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)"
        ))
        .bind(d.id).bind(d.capture_id).bind(d.psp_id).bind(d.buyer_id).bind(d.attempt).bind(d.file_id)
        .bind(&d.end_to_end_id).bind(&d.mandate_reference).bind(&d.sequence).bind(&d.currency).bind(d.amount)
        .bind(&d.collection_date).bind(&d.state).bind(d.payment_id).bind(&d.return_reason).bind(d.created_at)
        .execute(&mut *c).await?;
    });
    Ok(())
}

/// A collection file.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: uuid::Uuid,
    pub message_id: String,
    pub collection_date: String,
    pub currency: String,
    pub count: i64,
    pub total: i64,
    pub xml: String,
    pub created_at: DateTime<Utc>,
}

/// Records a collection file (deferred).
pub fn insert_file(tx: &mut super::Tx, f: &FileRow) {
    tx.defer(
        "INSERT INTO direct_debit_files (id, message_id, collection_date, currency, count, total, xml, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            f.id.into(),
            f.message_id.as_str().into(),
            f.collection_date.as_str().into(),
            f.currency.as_str().into(),
            f.count.into(),
            f.total.into(),
            f.xml.as_str().into(),
            f.created_at.into(),
        ],
    );
}

pub async fn get_file(conn: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Option<FileRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT id, message_id, collection_date, currency, count, total, xml, created_at FROM direct_debit_files WHERE id = $1")
            .bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Files newest first, after the cursor.
pub async fn list_files(
    conn: &mut impl AsExec,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<FileRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, message_id, collection_date, currency, count, total, xml, created_at FROM direct_debit_files \
             WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// The collections in a file.
pub async fn debits_of_file(conn: &mut impl AsExec, file_id: uuid::Uuid) -> StoreResult<Vec<DirectDebitRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM direct_debits WHERE file_id = $1 ORDER BY end_to_end_id"))
            .bind(file_id).fetch_all(&mut *c).await?
    }))
}

/// `psp_id`'s collections in files whose collection date is `today` or earlier, not yet booked.
pub async fn pending_due(conn: &mut impl AsExec, psp_id: PspId, today: NaiveDate) -> StoreResult<Vec<DirectDebitRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM direct_debits WHERE psp_id = $1 AND state = 'pending' AND collection_date <= $2 ORDER BY collection_date, id"
        ))
        .bind(psp_id).bind(today.to_string()).fetch_all(&mut *c).await?
    }))
}

/// A direct-debit return that matched no collection, as the operator's queue shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct UnmatchedReturn {
    pub unmatched_return_id: uuid::Uuid,
    /// The bank statement entry it came in.
    pub entry_id: uuid::Uuid,
    pub currency: String,
    /// What the bank took back (minor units), perhaps with its fee.
    pub amount: i64,
    /// The ISO 20022 return reason (`AM04`, `MD06`, …).
    pub reason: String,
    /// The reason in words.
    #[sqlx(skip)]
    pub reason_text: String,
    pub end_to_end_id: Option<String>,
    pub mandate_id: Option<String>,
    pub debtor_name: Option<String>,
    pub booking_date: Option<String>,
    /// `open` (waits for an operator), `applied` (to a collection) or `dismissed`.
    pub state: String,
    /// The end-to-end id of the collection it was applied to.
    pub applied_to: Option<String>,
    /// Why it was dismissed.
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const RETURN_COLUMNS: &str = "id AS unmatched_return_id, entry_id, currency, amount, reason, end_to_end_id, mandate_id, \
     debtor_name, booking_date, state, applied_to, note, created_at, resolved_at";

/// What an unmatched return records.
pub struct NewUnmatchedReturn<'a> {
    pub entry_id: uuid::Uuid,
    pub seq: i64,
    pub currency: &'a str,
    pub amount: i64,
    pub reason: &'a str,
    pub end_to_end_id: Option<&'a str>,
    pub mandate_id: Option<&'a str>,
    pub debtor_name: Option<&'a str>,
    pub booking_date: Option<String>,
}

/// Holds a return in the queue (once per entry and position).
pub async fn hold_return(tx: &mut impl AsExec, r: &NewUnmatchedReturn<'_>, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO unmatched_returns (id, entry_id, seq, currency, amount, reason, end_to_end_id, mandate_id, \
             debtor_name, booking_date, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11) \
             ON CONFLICT (entry_id, seq) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7()).bind(r.entry_id).bind(r.seq).bind(r.currency).bind(r.amount).bind(r.reason)
        .bind(r.end_to_end_id).bind(r.mandate_id).bind(r.debtor_name).bind(r.booking_date.as_deref()).bind(now)
        .execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// The queue: returns in `state` (any if `None`), newest first.
pub async fn unmatched_returns(
    conn: &mut impl AsExec,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<UnmatchedReturn>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {RETURN_COLUMNS} FROM unmatched_returns WHERE ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(state).bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// One held return, locked on PostgreSQL.
pub async fn unmatched_return(tx: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Option<UnmatchedReturn>> {
    Ok(with_conn!(tx, c, b => {
        let l = if b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {RETURN_COLUMNS} FROM unmatched_returns WHERE id = $1{l}"))
            .bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Resolves an open return; `false` if it was no longer open.
pub async fn resolve_return(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    state: &str,
    applied_to: Option<&str>,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE unmatched_returns SET state = $2, applied_to = $3, note = $4, resolved_at = $5 \
             WHERE id = $1 AND state = 'open'",
        )
        .bind(id).bind(state).bind(applied_to).bind(note).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}
