//! Payouts (SPEC §10): runs claimed once per PSP and cut-off, payouts made up set-wise from the
//! PSP's ledger movements not yet paid out, their lines and states.

use chrono::{DateTime, NaiveDate, Utc};

use super::{AsExec, Backend, StoreResult};
use crate::domain::ids::PspId;
use crate::with_conn;

/// Claims the run of `psp_id` at `period_end`; `false` if it ran (or runs) already.
pub async fn claim_run(
    tx: &mut impl AsExec,
    psp_id: PspId,
    period_end: NaiveDate,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO payout_runs (psp_id, period_end, payouts, created_at, cutoff) VALUES ($1, $2, 0, $3, $4) \
             ON CONFLICT (psp_id, period_end) DO NOTHING",
        )
        .bind(psp_id).bind(period_end.to_string()).bind(now).bind(cutoff).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Whether the run of `psp_id` at `period_end` is done (a read: the scan asks every minute).
pub async fn run_done(conn: &mut impl AsExec, psp_id: PspId, period_end: NaiveDate) -> StoreResult<bool> {
    let n: i64 = with_conn!(conn, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM payout_runs WHERE psp_id = $1 AND period_end = $2")
            .bind(psp_id).bind(period_end.to_string()).fetch_one(&mut *c).await?
    });
    Ok(n > 0)
}

pub async fn count_run(tx: &mut impl AsExec, psp_id: PspId, period_end: NaiveDate, payouts: i64) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE payout_runs SET payouts = $3 WHERE psp_id = $1 AND period_end = $2")
            .bind(psp_id).bind(period_end.to_string()).bind(payouts).execute(&mut *c).await?;
    });
    Ok(())
}

/// The currencies of the PSP's movements booked before `cutoff` and not yet paid out.
pub async fn open_currencies(conn: &mut impl AsExec, psp_id: PspId, cutoff: DateTime<Utc>) -> StoreResult<Vec<String>> {
    let account = crate::domain::ledger::Account::PspPayable(psp_id).key();
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT DISTINCT e.currency FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
             WHERE l.account = $1 AND e.created_at < $2 AND e.kind <> 'payout' \
             AND NOT EXISTS (SELECT 1 FROM payout_lines p WHERE p.entry_id = e.id) ORDER BY e.currency",
        )
        .bind(account).bind(cutoff).fetch_all(&mut *c).await?
    }))
}

/// A payout as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PayoutRow {
    pub id: uuid::Uuid,
    pub psp_id: PspId,
    pub currency: String,
    pub period_end: String,
    pub cutoff: DateTime<Utc>,
    pub amount: i64,
    pub line_count: i64,
    pub state: String,
    pub creditor_name: String,
    pub creditor_iban: String,
    pub creditor_bic: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub reject_reason: Option<String>,
    pub rejected_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, psp_id, currency, period_end, cutoff, amount, line_count, state, creditor_name, creditor_iban, \
     creditor_bic, sent_at, paid_at, created_at, updated_at, reject_reason, rejected_at";

/// Makes up the payout of `psp_id` in `currency` at `cutoff`: every movement of its payable booked
/// before it and not paid out yet becomes a line. Returns the lines' count and sum; the caller
/// keeps the payout if the sum is positive, and rolls back otherwise (it carries over).
#[allow(clippy::too_many_arguments)]
pub async fn make_up(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    psp_id: PspId,
    currency: &str,
    period_end: NaiveDate,
    cutoff: DateTime<Utc>,
    creditor: (&str, &str, Option<&str>),
    now: DateTime<Utc>,
) -> StoreResult<(i64, i64)> {
    let account = crate::domain::ledger::Account::PspPayable(psp_id).key();
    Ok(with_conn!(tx, c => {
        sqlx::query(&format!(
            "INSERT INTO payouts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 0, 0, 'pending', $6, $7, $9, NULL, NULL, $8, $8, \
             NULL, NULL)"
        ))
        .bind(id).bind(psp_id).bind(currency).bind(period_end.to_string()).bind(cutoff).bind(creditor.0)
        .bind(creditor.1).bind(now).bind(creditor.2).execute(&mut *c).await?;
        sqlx::query(
            "INSERT INTO payout_lines (entry_id, payout_id, amount) \
             SELECT e.id, $1, -l.amount FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
             WHERE l.account = $2 AND e.currency = $3 AND e.created_at < $4 AND e.kind <> 'payout' \
             AND NOT EXISTS (SELECT 1 FROM payout_lines p WHERE p.entry_id = e.id)",
        )
        .bind(id).bind(&account).bind(currency).bind(cutoff).execute(&mut *c).await?;
        let (n, sum): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payout_lines WHERE payout_id = $1",
        )
        .bind(id).fetch_one(&mut *c).await?;
        sqlx::query("UPDATE payouts SET amount = $2, line_count = $3 WHERE id = $1")
            .bind(id).bind(sum.max(0)).bind(n).execute(&mut *c).await?;
        (n, sum)
    }))
}

/// Undoes a payout made up in this transaction (its sum was not positive).
pub async fn discard(tx: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("DELETE FROM payout_lines WHERE payout_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM payouts WHERE id = $1").bind(id).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn get(
    conn: &mut impl AsExec,
    id: uuid::Uuid,
    psp_id: Option<PspId>,
    lock: bool,
) -> StoreResult<Option<PayoutRow>> {
    Ok(with_conn!(conn, c, b => {
        let l = if lock && b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM payouts WHERE id = $1 AND ($2 IS NULL OR psp_id = $2){l}"))
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}

/// A PSP's payouts, newest first.
pub async fn list(
    conn: &mut impl AsExec,
    psp_id: PspId,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<PayoutRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM payouts WHERE psp_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(psp_id).bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Euro payouts not yet sent to the bank, oldest first.
pub async fn pending_euro(conn: &mut impl AsExec) -> StoreResult<Vec<uuid::Uuid>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT id FROM payouts WHERE state = 'pending' AND currency = 'EUR' ORDER BY id")
            .fetch_all(&mut *c).await?
    }))
}

/// Moves a payout from one of `from` to `to`; `false` if it was in neither.
pub async fn transition(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    from: &[&str],
    to: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let marks: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
    let column = if to == "paid" { "paid_at" } else { "sent_at" };
    Ok(with_conn!(tx, c => {
        let sql = format!(
            "UPDATE payouts SET state = $2, {column} = $3, updated_at = $3 WHERE id = $1 AND state IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(id).bind(to).bind(now);
        for f in from {
            q = q.bind(*f);
        }
        q.execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// The bank refused the payout's transfer with `reason`; `false` if it was not pending or sent.
pub async fn reject(tx: &mut impl AsExec, id: uuid::Uuid, reason: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE payouts SET state = 'rejected', reject_reason = $2, rejected_at = $3, updated_at = $3 \
             WHERE id = $1 AND state IN ('pending', 'sent')",
        )
        .bind(id).bind(reason).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// Payouts whose transfer went to the bank (or was refused by it), for matching a status report
/// by its file's message id.
pub async fn sent_or_rejected(conn: &mut impl AsExec) -> StoreResult<Vec<uuid::Uuid>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT id FROM payouts WHERE state IN ('sent', 'rejected') ORDER BY id")
            .fetch_all(&mut *c).await?
    }))
}

/// One line of a payout, with what it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub entry_id: uuid::Uuid,
    pub booked_at: DateTime<Utc>,
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    pub capture_id: Option<uuid::Uuid>,
    pub refund_id: Option<uuid::Uuid>,
    pub direct_payment_id: Option<uuid::Uuid>,
    pub dispute_id: Option<uuid::Uuid>,
    pub order_id: Option<uuid::Uuid>,
    pub external_order_id: Option<String>,
    pub external_invoice_number: Option<String>,
    pub external_credit_note_number: Option<String>,
    pub merchant_id: Option<uuid::Uuid>,
    pub merchant_external_id: Option<String>,
    /// netterms' fee withheld by this movement (a capture's; 0 for every other kind).
    pub fee: i64,
}

/// A page of a payout's lines in booking order, after `after` (an entry id).
pub async fn lines(
    conn: &mut impl AsExec,
    payout_id: uuid::Uuid,
    after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<LineRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT p.entry_id, e.created_at AS booked_at, e.kind, p.amount, e.currency, \
                    cc.id AS capture_id, r.id AS refund_id, dp.id AS direct_payment_id, d.id AS dispute_id, o.id AS order_id, \
                    o.external_order_id, cc.external_invoice_number, r.external_credit_note_number, \
                    m.id AS merchant_id, m.external_id AS merchant_external_id, \
                    CAST(CASE WHEN e.kind = 'capture' THEN cc.fee ELSE 0 END AS BIGINT) AS fee \
             FROM (SELECT entry_id, amount FROM payout_lines WHERE payout_id = $1 AND entry_id > $2 \
                   ORDER BY entry_id LIMIT $3) p \
             JOIN ledger_entries e ON e.id = p.entry_id \
             LEFT JOIN refunds r ON e.kind = 'refund' AND r.id = e.ref_id \
             LEFT JOIN direct_payments dp ON e.kind = 'direct_payment' AND dp.id = e.ref_id \
             LEFT JOIN disputes d ON e.kind = 'chargeback' AND d.id = e.ref_id \
             LEFT JOIN captures cc ON cc.id = CASE WHEN e.kind = 'capture' THEN e.ref_id \
                                                   WHEN e.kind = 'refund' THEN r.capture_id \
                                                   WHEN e.kind = 'chargeback' THEN d.capture_id ELSE dp.capture_id END \
             LEFT JOIN orders o ON o.id = cc.order_id LEFT JOIN merchants m ON m.id = cc.merchant_id \
             ORDER BY p.entry_id",
        )
        // From the start: after the nil id (every id is above it). A plain range keeps the
        // index on (payout_id, entry_id) usable page after page (an `$2 IS NULL OR …` does not).
        .bind(payout_id).bind(after.unwrap_or(uuid::Uuid::nil())).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// A payout's lines summed by kind: (kind, how many, their sum), in a fixed order.
pub async fn summary(conn: &mut impl AsExec, payout_id: uuid::Uuid) -> StoreResult<Vec<(String, i64, i64)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT e.kind, COUNT(*), CAST(SUM(p.amount) AS BIGINT) FROM payout_lines p \
             JOIN ledger_entries e ON e.id = p.entry_id WHERE p.payout_id = $1 GROUP BY e.kind ORDER BY e.kind",
        )
        .bind(payout_id).fetch_all(&mut *c).await?
    }))
}
