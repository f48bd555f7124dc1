//! netterms' fee invoices to PSPs: gap-free numbers per year and the invoices as issued.

use chrono::{DateTime, Utc};

use super::{AsExec, StoreResult};
use crate::domain::ids::PspId;
use crate::with_conn;

/// The next number of `year`, taken in the caller's transaction (a rollback gives it back, so
/// the numbers have no gaps; concurrent issuers wait for each other on the year's row).
pub async fn next_seq(tx: &mut impl AsExec, year: i64) -> StoreResult<i64> {
    Ok(with_conn!(tx, c => {
        sqlx::query("INSERT INTO fee_invoice_numbers (year, last_seq) VALUES ($1, 0) ON CONFLICT (year) DO NOTHING")
            .bind(year).execute(&mut *c).await?;
        sqlx::query_scalar("UPDATE fee_invoice_numbers SET last_seq = last_seq + 1 WHERE year = $1 RETURNING last_seq")
            .bind(year).fetch_one(&mut *c).await?
    }))
}

/// The fees a payout withheld: how many captures, their fees, and when the first was booked.
pub async fn fees_of_payout(
    tx: &mut impl AsExec,
    payout_id: uuid::Uuid,
) -> StoreResult<(i64, i64, Option<DateTime<Utc>>)> {
    Ok(with_conn!(tx, c => {
        sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(c.fee), 0) AS BIGINT), MIN(e.created_at) FROM payout_lines pl \
             JOIN ledger_entries e ON e.id = pl.entry_id JOIN captures c ON c.id = e.ref_id \
             WHERE pl.payout_id = $1 AND e.kind = 'capture'",
        )
        .bind(payout_id).fetch_one(&mut *c).await?
    }))
}

/// `psp_id`'s payouts without a fee invoice (id, currency, period end), oldest first.
pub async fn payouts_without_invoice(
    tx: &mut impl AsExec,
    psp_id: PspId,
) -> StoreResult<Vec<(uuid::Uuid, String, String)>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_as(
            "SELECT p.id, p.currency, p.period_end FROM payouts p WHERE p.psp_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM fee_invoices f WHERE f.payout_id = p.id) ORDER BY p.id",
        )
        .bind(psp_id).fetch_all(&mut *c).await?
    }))
}

pub struct NewFeeInvoice<'a> {
    pub id: uuid::Uuid,
    pub payout_id: uuid::Uuid,
    pub psp_id: PspId,
    pub year: i64,
    pub seq: i64,
    pub number: &'a str,
    pub currency: &'a str,
    pub net: i64,
    pub vat: i64,
    pub gross: i64,
    pub document: &'a str,
    pub now: DateTime<Utc>,
}

pub async fn insert(tx: &mut impl AsExec, f: &NewFeeInvoice<'_>) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO fee_invoices (id, payout_id, psp_id, year, seq, number, currency, net, vat, gross, document, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(f.id).bind(f.payout_id).bind(f.psp_id).bind(f.year).bind(f.seq).bind(f.number).bind(f.currency)
        .bind(f.net).bind(f.vat).bind(f.gross).bind(f.document).bind(f.now)
        .execute(&mut *c).await?;
    });
    Ok(())
}

/// The invoice of a payout of `psp` as issued (its JSON document), if it has one.
pub async fn of_payout(conn: &mut impl AsExec, psp: PspId, payout_id: uuid::Uuid) -> StoreResult<Option<String>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT document FROM fee_invoices WHERE payout_id = $1 AND psp_id = $2")
            .bind(payout_id).bind(psp).fetch_optional(&mut *c).await?
    }))
}

/// Every number issued in `year`, in order (to show there are no gaps).
pub async fn numbers_of_year(conn: &mut impl AsExec, year: i64) -> StoreResult<Vec<i64>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT seq FROM fee_invoices WHERE year = $1 ORDER BY seq").bind(year).fetch_all(&mut *c).await?
    }))
}
