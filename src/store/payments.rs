//! Money in: imported statements, their entries (once each, by key), the buyer payments they
//! hold, and what each payment paid on each invoice.

use chrono::{DateTime, Utc};

use super::{AsExec, Backend, StoreResult, Tx};
use crate::domain::ids::{BuyerId, CaptureId, PspId};
use crate::with_conn;

/// An import of a document.
pub struct StatementRow<'a> {
    pub id: uuid::Uuid,
    pub kind: &'a str,
    pub version: &'a str,
    /// SHA-256 of the document.
    pub digest: &'a str,
    /// Who brought it: `api`, `cli`, `sandbox`.
    pub source: &'a str,
}

/// Records an import (deferred); its summary follows when it is done.
pub fn insert_statement(tx: &mut Tx, r: &StatementRow<'_>, now: DateTime<Utc>) {
    tx.defer(
        "INSERT INTO bank_statements (id, kind, version, digest, source, summary, created_at) \
         VALUES ($1, $2, $3, $4, $5, '{}', $6)",
        vec![r.id.into(), r.kind.into(), r.version.into(), r.digest.into(), r.source.into(), now.into()],
    );
}

/// An import as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatementRecord {
    pub id: uuid::Uuid,
    pub kind: String,
    pub version: String,
    pub source: String,
    /// `{}` until the import finished.
    pub summary: String,
    pub created_at: DateTime<Utc>,
    /// A later import of the same document that finished.
    pub completed_by: Option<uuid::Uuid>,
}

/// Imports, newest first, after `starting_after`.
pub async fn list_statements(
    conn: &mut impl AsExec,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<StatementRecord>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT s.id, s.kind, s.version, s.source, s.summary, s.created_at, \
                    (SELECT b.id FROM bank_statements b WHERE b.digest = s.digest AND b.id > s.id \
                       AND b.summary <> '{}' ORDER BY b.id LIMIT 1) AS completed_by \
             FROM bank_statements s WHERE s.kind <> 'sandbox' AND ($1 IS NULL OR s.id < $1) ORDER BY s.id DESC LIMIT $2",
        )
        .bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// A statement entry to record.
pub struct NewEntry<'a> {
    pub id: uuid::Uuid,
    pub key: &'a str,
    pub statement_id: uuid::Uuid,
    pub account: Option<&'a str>,
    pub currency: &'a str,
    pub amount: i64,
    pub credit: bool,
    pub status: &'a str,
    pub state: &'a str,
    pub booking_date: Option<String>,
    pub details: Option<String>,
    pub note: Option<String>,
}

/// Records an entry unless one with its key exists; `true` if this call recorded it. A
/// concurrent import of the same entry waits for the first to commit, then finds it.
pub async fn claim_entry(tx: &mut impl AsExec, e: &NewEntry<'_>, now: DateTime<Utc>) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar::<_, uuid::Uuid>(
            "INSERT INTO bank_entries (id, entry_key, statement_id, account, currency, amount, credit, status, state, \
             booking_date, details, note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (entry_key) DO NOTHING RETURNING id",
        )
        .bind(e.id).bind(e.key).bind(e.statement_id).bind(e.account).bind(e.currency).bind(e.amount).bind(e.credit)
        .bind(e.status).bind(e.state).bind(e.booking_date.as_deref()).bind(e.details.as_deref()).bind(e.note.as_deref())
        .bind(now)
        .fetch_optional(&mut *c).await?.is_some()
    }))
}

/// An entry already recorded under a key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntryRow {
    pub id: uuid::Uuid,
    pub state: String,
    pub currency: String,
    pub amount: i64,
    pub details: Option<String>,
}

/// The entry recorded under `key`, locked on PostgreSQL.
pub async fn entry_by_key(tx: &mut impl AsExec, key: &str) -> StoreResult<Option<EntryRow>> {
    Ok(with_conn!(tx, c, b => {
        let lock = if b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT id, state, currency, amount, details FROM bank_entries WHERE entry_key = $1{lock}"))
            .bind(key).fetch_optional(&mut *c).await?
    }))
}

/// Moves an entry from `from` to `to`; `false` if it is no longer in `from`.
pub async fn move_entry(tx: &mut impl AsExec, id: uuid::Uuid, from: &str, to: &str) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query("UPDATE bank_entries SET state = $3 WHERE id = $1 AND state = $2")
            .bind(id).bind(from).bind(to).execute(&mut *c).await?.rows_affected() == 1
    }))
}

/// A buyer payment (or a collection) as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: uuid::Uuid,
    pub payment_key: String,
    pub entry_id: uuid::Uuid,
    pub psp_id: Option<PspId>,
    pub buyer_id: Option<BuyerId>,
    pub currency: String,
    pub amount: i64,
    pub debtor_name: Option<String>,
    pub debtor_iban: Option<String>,
    pub creditor_iban: Option<String>,
    pub reference: Option<String>,
    pub remittance: Option<String>,
    pub end_to_end_id: Option<String>,
    pub mandate_id: Option<String>,
    pub booking_date: Option<String>,
    pub state: String,
    pub rule: Option<String>,
    pub explanation: Option<String>,
    pub credit: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PAYMENT_COLUMNS: &str = "id, payment_key, entry_id, psp_id, buyer_id, currency, amount, debtor_name, debtor_iban, \
     creditor_iban, reference, remittance, end_to_end_id, mandate_id, booking_date, state, rule, explanation, credit, \
     created_at, updated_at";

/// Records a payment unless one with its key exists; `true` if this call recorded it.
pub async fn claim_payment(tx: &mut impl AsExec, p: &PaymentRow) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar::<_, uuid::Uuid>(&format!(
            "INSERT INTO bank_payments ({PAYMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21) ON CONFLICT (payment_key) DO NOTHING RETURNING id"
        ))
        .bind(p.id).bind(&p.payment_key).bind(p.entry_id).bind(p.psp_id).bind(p.buyer_id).bind(&p.currency)
        .bind(p.amount).bind(&p.debtor_name).bind(&p.debtor_iban).bind(&p.creditor_iban).bind(&p.reference)
        .bind(&p.remittance).bind(&p.end_to_end_id).bind(&p.mandate_id).bind(&p.booking_date).bind(&p.state)
        .bind(&p.rule).bind(&p.explanation).bind(p.credit).bind(p.created_at).bind(p.updated_at)
        .fetch_optional(&mut *c).await?.is_some()
    }))
}

/// What a payment became: its state, whose it is and how it was matched (deferred). Guarded by
/// the state it was read in.
#[allow(clippy::too_many_arguments)]
pub fn settle_payment(
    tx: &mut Tx,
    id: uuid::Uuid,
    from: &str,
    state: &str,
    psp_id: Option<PspId>,
    buyer_id: Option<BuyerId>,
    rule: Option<&str>,
    explanation: &str,
    credit: i64,
    now: DateTime<Utc>,
) {
    tx.defer(
        "UPDATE bank_payments SET state = $3, psp_id = $4, buyer_id = $5, rule = $6, explanation = $7, credit = $8, \
         updated_at = $9 WHERE id = $1 AND state = $2",
        vec![
            id.into(),
            from.into(),
            state.into(),
            psp_id.map(|p| p.0).into(),
            buyer_id.map(|b| b.0).into(),
            rule.into(),
            explanation.into(),
            credit.into(),
            now.into(),
        ],
    );
}

/// A payment, optionally locked (and, for a PSP, only one of its own).
pub async fn get_payment(
    conn: &mut impl AsExec,
    id: uuid::Uuid,
    psp_id: Option<PspId>,
    lock: bool,
) -> StoreResult<Option<PaymentRow>> {
    Ok(with_conn!(conn, c, b => {
        let l = if lock && b == Backend::Postgres { " FOR UPDATE" } else { "" };
        let scope = if psp_id.is_some() { " AND psp_id = $2" } else { "" };
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM bank_payments WHERE id = $1{scope}{l}");
        let mut q = sqlx::query_as(&sql).bind(id);
        if let Some(p) = psp_id {
            q = q.bind(p);
        }
        q.fetch_optional(&mut *c).await?
    }))
}

/// Payments in `state` (all when `None`), newest first, after the cursor; optionally one PSP's.
pub async fn list_payments(
    conn: &mut impl AsExec,
    state: Option<&str>,
    psp_id: Option<PspId>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<PaymentRow>> {
    Ok(with_conn!(conn, c => {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM bank_payments WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR psp_id = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        sqlx::query_as(&sql).bind(state).bind(psp_id).bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// What a payment paid on an invoice (deferred).
pub fn insert_allocation(tx: &mut Tx, payment_id: uuid::Uuid, capture_id: CaptureId, charges: i64, principal: i64) {
    tx.defer(
        "INSERT INTO payment_allocations (payment_id, capture_id, charges, principal) VALUES ($1, $2, $3, $4)",
        vec![payment_id.into(), capture_id.0.into(), charges.into(), principal.into()],
    );
}

/// A payment's allocations: (invoice, charges, principal).
pub async fn allocations(conn: &mut impl AsExec, payment_id: uuid::Uuid) -> StoreResult<Vec<(CaptureId, i64, i64)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT capture_id, charges, principal FROM payment_allocations WHERE payment_id = $1 ORDER BY capture_id")
            .bind(payment_id).fetch_all(&mut *c).await?
    }))
}

/// Invoices carrying one of these payment references: (invoice, its PSP, its buyer, the reference).
pub async fn captures_by_reference(
    conn: &mut impl AsExec,
    refs: &[String],
) -> StoreResult<Vec<(CaptureId, PspId, BuyerId, String)>> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let list = (1..=refs.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql =
        format!("SELECT id, psp_id, buyer_id, payment_reference FROM captures WHERE payment_reference IN ({list})");
    Ok(with_conn!(conn, c => {
        let mut q = sqlx::query_as(&sql);
        for r in refs {
            q = q.bind(r.as_str());
        }
        q.fetch_all(&mut *c).await?
    }))
}

/// The buyer whose virtual IBAN this is.
pub async fn buyer_by_virtual_iban(conn: &mut impl AsExec, iban: &str) -> StoreResult<Option<BuyerId>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT id FROM buyers WHERE virtual_iban = $1").bind(iban).fetch_optional(&mut *c).await?
    }))
}

/// Unpaid invoices in `currency` whose total due (principal and dunning charges) is exactly
/// `amount`, with their buyer's name; at most `limit`.
pub async fn unpaid_with_total(
    conn: &mut impl AsExec,
    currency: &str,
    amount: i64,
    psp_id: Option<PspId>,
    limit: i64,
) -> StoreResult<Vec<(CaptureId, BuyerId, String)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT c.id, c.buyer_id, b.name FROM captures c JOIN buyers b ON b.id = c.buyer_id \
             WHERE c.state IN ('open', 'late') AND c.currency = $1 AND ($3 IS NULL OR c.psp_id = $3) \
             AND c.gross - c.refunded - c.charged_back - c.paid_direct - c.paid_bank + c.dunning_fees + c.dunning_interest \
                 - c.dunning_waived - c.dunning_paid = $2 \
             ORDER BY c.due_date, c.id LIMIT $4",
        )
        .bind(currency).bind(amount).bind(psp_id).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Stores an import's summary once it is done.
pub async fn set_statement_summary(tx: &mut impl AsExec, id: uuid::Uuid, summary: &str) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("UPDATE bank_statements SET summary = $2 WHERE id = $1").bind(id).bind(summary).execute(&mut *c).await?;
    });
    Ok(())
}

/// Moves a payment from `from` to `to` (deferred).
pub fn move_payment(tx: &mut Tx, id: uuid::Uuid, from: &str, to: &str, now: DateTime<Utc>) {
    tx.defer(
        "UPDATE bank_payments SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2",
        vec![id.into(), from.into(), to.into(), now.into()],
    );
}

/// A credit transfer netterms sends (pain.001).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CreditTransferRow {
    pub id: uuid::Uuid,
    pub kind: String,
    pub payment_id: Option<uuid::Uuid>,
    pub buyer_id: Option<BuyerId>,
    pub currency: String,
    pub amount: i64,
    pub creditor_name: String,
    pub creditor_iban: String,
    pub remittance: String,
    pub xml: String,
    pub created_at: DateTime<Utc>,
}

const TRANSFER_COLUMNS: &str =
    "id, kind, payment_id, buyer_id, currency, amount, creditor_name, creditor_iban, remittance, xml, created_at";

/// Records a credit transfer (deferred); one per payment at most.
pub fn insert_credit_transfer(tx: &mut Tx, t: &CreditTransferRow) {
    tx.defer(
        &format!(
            "INSERT INTO credit_transfers ({TRANSFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        vec![
            t.id.into(),
            t.kind.as_str().into(),
            t.payment_id.into(),
            t.buyer_id.map(|b| b.0).into(),
            t.currency.as_str().into(),
            t.amount.into(),
            t.creditor_name.as_str().into(),
            t.creditor_iban.as_str().into(),
            t.remittance.as_str().into(),
            t.xml.as_str().into(),
            t.created_at.into(),
        ],
    );
}

pub async fn get_credit_transfer(conn: &mut impl AsExec, id: uuid::Uuid) -> StoreResult<Option<CreditTransferRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {TRANSFER_COLUMNS} FROM credit_transfers WHERE id = $1"))
            .bind(id).fetch_optional(&mut *c).await?
    }))
}

/// Records many entries at once, skipping keys that exist; the keys this call recorded.
pub async fn claim_entries(
    tx: &mut impl AsExec,
    rows: &[NewEntry<'_>],
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let mut out = Vec::with_capacity(rows.len());
    for part in rows.chunks(super::rows_per_statement(12)) {
        out.extend(claim_entries_once(tx, part, now).await?);
    }
    Ok(out)
}

async fn claim_entries_once(
    tx: &mut impl AsExec,
    rows: &[NewEntry<'_>],
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let values = (0..rows.len())
        .map(|i| {
            let n = 12 * i + 2;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $1)",
                n,
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8,
                n + 9,
                n + 10,
                n + 11
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO bank_entries (id, entry_key, statement_id, account, currency, amount, credit, status, state, \
         booking_date, details, note, created_at) VALUES {values} ON CONFLICT (entry_key) DO NOTHING RETURNING entry_key"
    );
    Ok(with_conn!(tx, c => {
        let mut q = sqlx::query_scalar(&sql).bind(now);
        for e in rows {
            q = q.bind(e.id).bind(e.key).bind(e.statement_id).bind(e.account).bind(e.currency).bind(e.amount)
                .bind(e.credit).bind(e.status).bind(e.state).bind(e.booking_date.as_deref()).bind(e.details.as_deref())
                .bind(e.note.as_deref());
        }
        q.fetch_all(&mut *c).await?
    }))
}

/// Records payments already decided, with their allocations (deferred, a few statements).
pub fn insert_booked(tx: &mut Tx, rows: &[(PaymentRow, CaptureId, i64)]) {
    let payments = rows
        .iter()
        .map(|(p, _, _)| {
            vec![
                p.id.into(),
                p.payment_key.as_str().into(),
                p.entry_id.into(),
                p.psp_id.map(|x| x.0).into(),
                p.buyer_id.map(|x| x.0).into(),
                p.currency.as_str().into(),
                p.amount.into(),
                p.debtor_name.clone().into(),
                p.debtor_iban.clone().into(),
                p.creditor_iban.clone().into(),
                p.reference.clone().into(),
                p.remittance.clone().into(),
                p.end_to_end_id.clone().into(),
                p.mandate_id.clone().into(),
                p.booking_date.clone().into(),
                p.state.as_str().into(),
                p.rule.clone().into(),
                p.explanation.clone().into(),
                p.credit.into(),
                p.created_at.into(),
                p.updated_at.into(),
            ]
        })
        .collect();
    tx.defer_rows(&format!("INSERT INTO bank_payments ({PAYMENT_COLUMNS}) VALUES"), payments, "");
    let allocations = rows
        .iter()
        .map(|(p, capture, principal)| vec![p.id.into(), capture.0.into(), 0i64.into(), (*principal).into()])
        .collect();
    tx.defer_rows(
        "INSERT INTO payment_allocations (payment_id, capture_id, charges, principal) VALUES",
        allocations,
        "",
    );
}

/// What netterms owes buyer `buyer` back in `currency` (its credit: over-payments, refunds of
/// paid invoices, disputes, less what was sent back), from the ledger.
pub async fn buyer_credit(conn: &mut impl AsExec, buyer: BuyerId, currency: &str) -> StoreResult<i64> {
    let account = crate::domain::ledger::Account::BuyerCredit(buyer).key();
    let sum: Option<i64> = with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT CAST(SUM(l.amount) AS BIGINT) FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
             WHERE l.account = $1 AND e.currency = $2",
        )
        .bind(account).bind(currency).fetch_one(&mut *c).await?
    });
    Ok(-sum.unwrap_or(0))
}

/// Takes buyer `buyer` for this transaction (a row lock on PostgreSQL, the write lock on
/// SQLite), so two refunds of its credit never both see it; its name, if it exists.
pub async fn lock_buyer(tx: &mut impl AsExec, buyer: BuyerId) -> StoreResult<Option<String>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_scalar("UPDATE buyers SET updated_at = updated_at WHERE id = $1 RETURNING name")
            .bind(buyer).fetch_optional(&mut *c).await?
    }))
}

/// The account and name the buyer last paid from, as a statement named them.
pub async fn last_payer_account(
    conn: &mut impl AsExec,
    buyer: BuyerId,
) -> StoreResult<Option<(String, Option<String>)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT debtor_iban, debtor_name FROM bank_payments WHERE buyer_id = $1 AND debtor_iban IS NOT NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(buyer).fetch_optional(&mut *c).await?
    }))
}

/// Whether buyer `buyer` exists.
pub async fn buyer_exists(conn: &mut impl AsExec, buyer: BuyerId) -> StoreResult<bool> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar::<_, i64>("SELECT CAST(1 AS BIGINT) FROM buyers WHERE id = $1").bind(buyer).fetch_optional(&mut *c).await?.is_some()
    }))
}
