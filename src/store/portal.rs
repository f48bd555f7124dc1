//! The buyer portal's storage (SPEC §9.6): sign-in links and sessions (by digest only), what a
//! signed-in address may see, the merchant's documents, "I have paid", support requests and
//! standing payment methods.

use chrono::{DateTime, Utc};

use super::{AsExec, Backend, StoreResult, Tx};
use crate::domain::ids::{BuyerId, CaptureId, OrderId, PspId};
use crate::with_conn;

// ---------------------------------------------------------------------------------------------
// Sign-in links and sessions

pub async fn insert_link(
    tx: &mut impl AsExec,
    digest: &[u8],
    email: &str,
    locale: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query("INSERT INTO portal_links (token_digest, email, locale, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(digest).bind(email).bind(locale).bind(now).bind(expires_at).execute(&mut *c).await?;
    });
    Ok(())
}

/// Whether a link is there and still usable (unused, unexpired).
pub async fn link_usable(conn: &mut impl AsExec, digest: &[u8], now: DateTime<Utc>) -> StoreResult<Option<bool>> {
    let row: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = with_conn!(conn, c => {
        sqlx::query_as("SELECT expires_at, used_at FROM portal_links WHERE token_digest = $1")
            .bind(digest).fetch_optional(&mut *c).await?
    });
    Ok(row.map(|(expires, used)| used.is_none() && expires > now))
}

/// Uses a link up: its address and locale if it was unused and unexpired (once, whoever asks).
pub async fn consume_link(
    tx: &mut impl AsExec,
    digest: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<Option<(String, String)>> {
    Ok(with_conn!(tx, c => {
        sqlx::query_as(
            "UPDATE portal_links SET used_at = $2 WHERE token_digest = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING email, locale",
        )
        .bind(digest).bind(now).fetch_optional(&mut *c).await?
    }))
}

/// A signed-in session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub email: String,
    pub csrf_token: String,
    pub locale: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_session(
    tx: &mut impl AsExec,
    digest: &[u8],
    email: &str,
    csrf: &str,
    locale: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO portal_sessions (id_digest, email, csrf_token, locale, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(digest).bind(email).bind(csrf).bind(locale).bind(now).bind(expires_at).execute(&mut *c).await?;
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
            "SELECT email, csrf_token, locale, created_at, last_seen_at, expires_at FROM portal_sessions \
             WHERE id_digest = $1 AND ended_at IS NULL AND expires_at > $2 AND last_seen_at > $3",
        )
        .bind(digest).bind(now).bind(idle_since).fetch_optional(&mut *c).await?
    }))
}

/// Records activity (and optionally a new language) on a session.
pub async fn touch_session(
    conn: &mut impl AsExec,
    digest: &[u8],
    now: DateTime<Utc>,
    locale: Option<&str>,
) -> StoreResult<()> {
    with_conn!(conn, c => {
        sqlx::query("UPDATE portal_sessions SET last_seen_at = $2, locale = COALESCE($3, locale) WHERE id_digest = $1 AND ended_at IS NULL")
            .bind(digest).bind(now).bind(locale).execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn end_session(conn: &mut impl AsExec, digest: &[u8], now: DateTime<Utc>) -> StoreResult<()> {
    with_conn!(conn, c => {
        sqlx::query("UPDATE portal_sessions SET ended_at = $2 WHERE id_digest = $1 AND ended_at IS NULL")
            .bind(digest).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// What an address sees

/// Whether any order names this address, and the newest such order's PSP, id and locale (the
/// sign-in e-mail is written in its name).
pub async fn newest_order_of(
    conn: &mut impl AsExec,
    email: &str,
) -> StoreResult<Option<(PspId, OrderId, Option<String>)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT o.psp_id, o.id, s.locale FROM orders o LEFT JOIN checkout_sessions s ON s.id = o.session_id \
             WHERE o.contact_email = $1 AND o.buyer_id IS NOT NULL ORDER BY o.created_at DESC, o.id DESC LIMIT 1",
        )
        .bind(email).fetch_optional(&mut *c).await?
    }))
}

/// An invoice as the portal lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: CaptureId,
    pub psp_id: PspId,
    pub order_id: OrderId,
    pub buyer_id: BuyerId,
    pub company: String,
    pub merchant: String,
    pub external_invoice_number: String,
    pub currency: String,
    pub gross: i64,
    /// Refunds and chargebacks: what the buyer was credited.
    pub refunded: i64,
    pub paid_direct: i64,
    pub paid_bank: i64,
    pub state: String,
    pub due_date: String,
    pub dunning_level: i64,
    pub dunning_fees: i64,
    pub dunning_interest: i64,
    pub dunning_waived: i64,
    pub dunning_paid: i64,
    pub payment_method: String,
    pub created_at: DateTime<Utc>,
    pub collection_at: Option<DateTime<Utc>>,
}

impl InvoiceRow {
    pub fn open_amount(&self) -> i64 {
        (self.gross - self.refunded - self.paid_direct - self.paid_bank).max(0)
    }

    pub fn charges(&self) -> i64 {
        (self.dunning_fees + self.dunning_interest - self.dunning_waived - self.dunning_paid).max(0)
    }
}

const INVOICE_SELECT: &str = "SELECT c.id, c.psp_id, c.order_id, c.buyer_id, b.name AS company, m.name AS merchant, \
     c.external_invoice_number, c.currency, c.gross, c.refunded + c.charged_back AS refunded, c.paid_direct, c.paid_bank, c.state, c.due_date, \
     c.dunning_level, c.dunning_fees, c.dunning_interest, c.dunning_waived, c.dunning_paid, o.payment_method, c.created_at, c.collection_at \
     FROM captures c JOIN orders o ON o.id = c.order_id JOIN buyers b ON b.id = c.buyer_id JOIN merchants m ON m.id = c.merchant_id";

/// The invoices of the orders placed with `email`, by company, newest first (at most `limit`).
pub async fn invoices_of(conn: &mut impl AsExec, email: &str, limit: i64) -> StoreResult<Vec<InvoiceRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "{INVOICE_SELECT} WHERE o.contact_email = $1 ORDER BY b.name, c.buyer_id, c.created_at DESC, c.id DESC LIMIT $2"
        ))
        .bind(email).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// One invoice, if it belongs to an order placed with `email`.
pub async fn invoice_of(conn: &mut impl AsExec, email: &str, id: CaptureId) -> StoreResult<Option<InvoiceRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("{INVOICE_SELECT} WHERE c.id = $1 AND o.contact_email = $2"))
            .bind(id).bind(email).fetch_optional(&mut *c).await?
    }))
}

/// A refund (credit note) of an invoice.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: uuid::Uuid,
    pub capture_id: CaptureId,
    pub external_credit_note_number: Option<String>,
    pub gross: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

pub async fn refunds_of(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Vec<RefundRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, capture_id, external_credit_note_number, gross, currency, created_at FROM refunds \
             WHERE capture_id = $1 ORDER BY created_at, id",
        )
        .bind(capture_id).fetch_all(&mut *c).await?
    }))
}

/// A refund with its invoice's PSP, if the refund exists.
pub async fn refund_owner(conn: &mut impl AsExec, refund_id: uuid::Uuid) -> StoreResult<Option<(PspId, CaptureId)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as("SELECT psp_id, capture_id FROM refunds WHERE id = $1").bind(refund_id).fetch_optional(&mut *c).await?
    }))
}

// ---------------------------------------------------------------------------------------------
// The merchant's documents

/// A stored document's description (without its bytes).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentMeta {
    pub kind: String,
    pub subject_id: uuid::Uuid,
    pub source: String,
    pub size: i64,
    pub sha256: String,
    pub updated_at: DateTime<Utc>,
}

/// Stores a document (a later one for the same invoice or refund replaces it).
#[allow(clippy::too_many_arguments)]
pub async fn put_document(
    tx: &mut impl AsExec,
    kind: &str,
    subject_id: uuid::Uuid,
    psp_id: PspId,
    capture_id: CaptureId,
    source: &str,
    content: &[u8],
    sha256: &str,
    now: DateTime<Utc>,
) -> StoreResult<DocumentMeta> {
    let size = i64::try_from(content.len()).unwrap_or(i64::MAX);
    Ok(with_conn!(tx, c => {
        sqlx::query_as(
            "INSERT INTO merchant_documents (id, kind, subject_id, psp_id, capture_id, source, content, size, sha256, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (kind, subject_id) DO UPDATE SET source = excluded.source, content = excluded.content, \
             size = excluded.size, sha256 = excluded.sha256, updated_at = excluded.updated_at \
             RETURNING kind, subject_id, source, size, sha256, updated_at",
        )
        .bind(uuid::Uuid::now_v7()).bind(kind).bind(subject_id).bind(psp_id).bind(capture_id).bind(source)
        .bind(content).bind(size).bind(sha256).bind(now).fetch_one(&mut *c).await?
    }))
}

/// Whether the invoice or refund has its document.
pub async fn has_document(conn: &mut impl AsExec, kind: &str, subject_id: uuid::Uuid) -> StoreResult<bool> {
    let n: i64 = with_conn!(conn, c => {
        sqlx::query_scalar("SELECT COUNT(*) FROM merchant_documents WHERE kind = $1 AND subject_id = $2")
            .bind(kind).bind(subject_id).fetch_one(&mut *c).await?
    });
    Ok(n > 0)
}

pub async fn documents_of(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Vec<DocumentMeta>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT kind, subject_id, source, size, sha256, updated_at FROM merchant_documents WHERE capture_id = $1 \
             ORDER BY kind DESC, created_at",
        )
        .bind(capture_id).fetch_all(&mut *c).await?
    }))
}

/// A document's bytes, if it belongs to `capture_id`.
pub async fn document_content(
    conn: &mut impl AsExec,
    kind: &str,
    subject_id: uuid::Uuid,
    capture_id: CaptureId,
) -> StoreResult<Option<Vec<u8>>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_scalar("SELECT content FROM merchant_documents WHERE kind = $1 AND subject_id = $2 AND capture_id = $3")
            .bind(kind).bind(subject_id).bind(capture_id).fetch_optional(&mut *c).await?
    }))
}

// ---------------------------------------------------------------------------------------------
// "I have paid"

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimRow {
    pub id: uuid::Uuid,
    pub psp_id: PspId,
    pub capture_id: CaptureId,
    pub email: String,
    pub paid_on: String,
    pub currency: String,
    pub amount: i64,
    pub state: String,
    pub payment_id: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CLAIM_COLUMNS: &str =
    "id, psp_id, capture_id, email, paid_on, currency, amount, state, payment_id, created_at, updated_at";

pub async fn insert_claim(tx: &mut impl AsExec, r: &ClaimRow) -> StoreResult<()> {
    with_conn!(tx, c => {
        sqlx::query(&format!("INSERT INTO payment_claims ({CLAIM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
            .bind(r.id).bind(r.psp_id).bind(r.capture_id).bind(&r.email).bind(&r.paid_on).bind(&r.currency)
            .bind(r.amount).bind(&r.state).bind(r.payment_id).bind(r.created_at).bind(r.updated_at)
            .execute(&mut *c).await?;
    });
    Ok(())
}

pub async fn claims_of(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Vec<ClaimRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!("SELECT {CLAIM_COLUMNS} FROM payment_claims WHERE capture_id = $1 ORDER BY id"))
            .bind(capture_id).fetch_all(&mut *c).await?
    }))
}

/// Claims in `state`, newest first, older than `starting_after`.
pub async fn list_claims(
    conn: &mut impl AsExec,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<ClaimRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {CLAIM_COLUMNS} FROM payment_claims WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(state).bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// Payments booked on invoices end the invoices' open claims: (invoice, payment) pairs
/// (deferred; the payment is named, not read back, as deferred writes may not see each other).
pub fn end_claims_by_payment(tx: &mut Tx, paid: &[(CaptureId, uuid::Uuid)], now: DateTime<Utc>) {
    for chunk in paid.chunks(100) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
        let mut args: Vec<super::Arg> = vec![now.into()];
        for (c, p) in chunk {
            args.push(c.0.into());
            args.push((*p).into());
        }
        tx.defer(
            &format!(
                "UPDATE payment_claims SET state = 'matched', updated_at = $1, payment_id = v.column2 \
                 FROM (VALUES {}) AS v WHERE payment_claims.state = 'open' AND payment_claims.capture_id = v.column1",
                values.join(", ")
            ),
            args,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Support requests

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SupportRow {
    pub id: uuid::Uuid,
    pub email: String,
    pub psp_id: PspId,
    pub capture_id: Option<CaptureId>,
    pub locale: String,
    pub subject: String,
    pub body: String,
    pub attachment_type: Option<String>,
    pub attachment_name: Option<String>,
    pub attachment_size: Option<i64>,
    pub state: String,
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SUPPORT_COLUMNS: &str = "id, email, psp_id, capture_id, locale, subject, body, attachment_type, attachment_name, \
     CAST(LENGTH(attachment) AS BIGINT) AS attachment_size, state, answer, answered_at, created_at, updated_at";

/// A new support request.
pub struct NewSupport<'a> {
    pub id: uuid::Uuid,
    pub email: &'a str,
    pub psp_id: PspId,
    pub capture_id: Option<CaptureId>,
    pub locale: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// (bytes, content type, file name)
    pub attachment: Option<(&'a [u8], &'a str, &'a str)>,
}

pub async fn insert_support(tx: &mut impl AsExec, n: &NewSupport<'_>, now: DateTime<Utc>) -> StoreResult<()> {
    let (bytes, ty, name) = match n.attachment {
        Some((b, t, f)) => (Some(b), Some(t), Some(f)),
        None => (None, None, None),
    };
    with_conn!(tx, c => {
        sqlx::query(
            "INSERT INTO support_requests (id, email, psp_id, capture_id, locale, subject, body, attachment, attachment_type, \
             attachment_name, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11, $11)",
        )
        .bind(n.id).bind(n.email).bind(n.psp_id).bind(n.capture_id).bind(n.locale).bind(n.subject).bind(n.body)
        .bind(bytes).bind(ty).bind(name).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// Support requests, newest first: of one address, or (operators) all, by state.
pub async fn list_support(
    conn: &mut impl AsExec,
    email: Option<&str>,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> StoreResult<Vec<SupportRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&format!(
            "SELECT {SUPPORT_COLUMNS} FROM support_requests WHERE ($1 IS NULL OR email = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(email).bind(state).bind(starting_after).bind(limit).fetch_all(&mut *c).await?
    }))
}

/// One support request (of `email` if given), optionally locked.
pub async fn get_support(
    conn: &mut impl AsExec,
    id: uuid::Uuid,
    email: Option<&str>,
    lock: bool,
) -> StoreResult<Option<SupportRow>> {
    Ok(with_conn!(conn, c, b => {
        let l = if lock && b == Backend::Postgres { " FOR UPDATE" } else { "" };
        sqlx::query_as(&format!("SELECT {SUPPORT_COLUMNS} FROM support_requests WHERE id = $1 AND ($2 IS NULL OR email = $2){l}"))
            .bind(id).bind(email).fetch_optional(&mut *c).await?
    }))
}

/// A support request's attachment (of `email` if given): bytes, type, name.
pub async fn support_attachment(
    conn: &mut impl AsExec,
    id: uuid::Uuid,
    email: Option<&str>,
) -> StoreResult<Option<(Vec<u8>, String, String)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT attachment, attachment_type, attachment_name FROM support_requests \
             WHERE id = $1 AND ($2 IS NULL OR email = $2) AND attachment IS NOT NULL",
        )
        .bind(id).bind(email).fetch_optional(&mut *c).await?
    }))
}

/// Answers an open request; `false` if it was answered already.
pub async fn answer_support(
    tx: &mut impl AsExec,
    id: uuid::Uuid,
    answer: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(with_conn!(tx, c => {
        sqlx::query(
            "UPDATE support_requests SET state = 'answered', answer = $2, answered_at = $3, updated_at = $3 \
             WHERE id = $1 AND state = 'open'",
        )
        .bind(id).bind(answer).bind(now).execute(&mut *c).await?.rows_affected() == 1
    }))
}

// ---------------------------------------------------------------------------------------------
// How the buyer pays

/// A standing direct-debit mandate for an address's future orders with one company.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PreferenceRow {
    pub debit_iban: String,
    pub mandate_reference: String,
    pub mandate_text: String,
    pub signed_at: DateTime<Utc>,
}

pub async fn preference(conn: &mut impl AsExec, email: &str, buyer_id: BuyerId) -> StoreResult<Option<PreferenceRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT debit_iban, mandate_reference, mandate_text, signed_at FROM payment_preferences WHERE email = $1 AND buyer_id = $2",
        )
        .bind(email).bind(buyer_id).fetch_optional(&mut *c).await?
    }))
}

pub async fn set_preference(
    tx: &mut impl AsExec,
    email: &str,
    buyer_id: BuyerId,
    p: Option<&PreferenceRow>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(tx, c => {
        match p {
            Some(p) => {
                sqlx::query(
                    "INSERT INTO payment_preferences (email, buyer_id, debit_iban, mandate_reference, mandate_text, signed_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email, buyer_id) DO UPDATE SET debit_iban = excluded.debit_iban, \
                     mandate_reference = excluded.mandate_reference, mandate_text = excluded.mandate_text, \
                     signed_at = excluded.signed_at, updated_at = excluded.updated_at",
                )
                .bind(email).bind(buyer_id).bind(&p.debit_iban).bind(&p.mandate_reference).bind(&p.mandate_text)
                .bind(p.signed_at).bind(now).execute(&mut *c).await?;
            }
            None => {
                sqlx::query("DELETE FROM payment_preferences WHERE email = $1 AND buyer_id = $2")
                    .bind(email).bind(buyer_id).execute(&mut *c).await?;
            }
        }
    });
    Ok(())
}

/// The order's payment method from now on (its invoices not yet in a collection file follow).
pub async fn set_order_method(
    tx: &mut impl AsExec,
    order_id: OrderId,
    mandate: Option<&PreferenceRow>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let method = if mandate.is_some() { "direct_debit" } else { "bank_transfer" };
    with_conn!(tx, c => {
        match mandate {
            Some(m) => sqlx::query(
                "UPDATE orders SET payment_method = $2, debit_iban = $3, mandate_reference = $4, mandate_text = $5, \
                 mandate_signed_at = $6, updated_at = $7 WHERE id = $1",
            )
            .bind(order_id).bind(method).bind(&m.debit_iban).bind(&m.mandate_reference).bind(&m.mandate_text)
            .bind(m.signed_at).bind(now).execute(&mut *c).await?,
            None => sqlx::query("UPDATE orders SET payment_method = $2, updated_at = $3 WHERE id = $1")
                .bind(order_id).bind(method).bind(now).execute(&mut *c).await?,
        };
    });
    Ok(())
}

/// Whether an invoice of this order is in a collection file not yet booked or returned.
pub async fn collection_pending(conn: &mut impl AsExec, order_id: OrderId) -> StoreResult<bool> {
    let n: i64 = with_conn!(conn, c => {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM direct_debits d JOIN captures c ON c.id = d.capture_id WHERE c.order_id = $1 AND d.state = 'pending'",
        )
        .bind(order_id).fetch_one(&mut *c).await?
    });
    Ok(n > 0)
}

/// The order's direct-debit details: IBAN and mandate reference (if it pays so).
pub async fn order_mandate(conn: &mut impl AsExec, order_id: OrderId) -> StoreResult<Option<(String, String)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT debit_iban, mandate_reference FROM orders WHERE id = $1 AND payment_method = 'direct_debit' \
             AND debit_iban IS NOT NULL AND mandate_reference IS NOT NULL",
        )
        .bind(order_id).fetch_optional(&mut *c).await?
    }))
}

/// A payment that paid (part of) an invoice, as the buyer sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaidRow {
    pub booking_date: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Dunning fees and interest it paid.
    pub charges: i64,
    /// Of the invoice's amount.
    pub principal: i64,
    /// `matched`, or `returned` (a direct debit that came back).
    pub state: String,
    /// How it was matched (`direct_debit` for a collection).
    pub rule: Option<String>,
}

/// The payments that paid (part of) an invoice, oldest first.
pub async fn payments_of(conn: &mut impl AsExec, capture_id: CaptureId) -> StoreResult<Vec<PaidRow>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT p.booking_date, p.created_at, a.charges, a.principal, p.state, p.rule \
             FROM payment_allocations a JOIN bank_payments p ON p.id = a.payment_id \
             WHERE a.capture_id = $1 ORDER BY p.created_at, p.id",
        )
        .bind(capture_id).fetch_all(&mut *c).await?
    }))
}

/// The messages about an invoice that carried a PDF (dunning notices, payment information):
/// (message id, kind, subject, created_at).
pub async fn documents_sent(
    conn: &mut impl AsExec,
    capture_id: CaptureId,
) -> StoreResult<Vec<(uuid::Uuid, String, String, DateTime<Utc>)>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT id, kind, subject, created_at FROM messages WHERE capture_id = $1 AND attachment IS NOT NULL \
             ORDER BY created_at, id",
        )
        .bind(capture_id).fetch_all(&mut *c).await?
    }))
}
