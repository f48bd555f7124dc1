//! The buyer's e-mails: the outbox rows, written with their cause and sent by a job.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AsExec, StoreResult, Tx};
use crate::domain::ids::{CaptureId, OrderId, PspId};
use crate::with_conn;

/// A message to write.
pub struct NewMessage<'a> {
    pub id: uuid::Uuid,
    pub psp_id: PspId,
    pub order_id: Option<OrderId>,
    pub capture_id: Option<CaptureId>,
    pub kind: &'a str,
    pub cause_key: &'a str,
    pub locale: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    /// The body's parts ([`crate::domain::mail::Body`] as JSON).
    pub body: &'a str,
    pub attachment: Option<&'a str>,
    pub message_id: &'a str,
    /// `queued` (a job sends it) or `stored` (no SMTP server: kept, not sent).
    pub status: &'static str,
}

/// Writes messages with the transaction's other writes (deferred), in one statement; a message
/// with the same cause already there wins.
pub fn insert_many(tx: &mut Tx, rows: &[(NewMessage<'_>, DateTime<Utc>)]) {
    let rows = rows
        .iter()
        .map(|(m, now)| {
            vec![
                m.id.into(),
                m.psp_id.0.into(),
                m.order_id.map(|o| o.0).into(),
                m.capture_id.map(|c| c.0).into(),
                m.kind.into(),
                m.cause_key.into(),
                m.locale.into(),
                m.to.into(),
                m.subject.into(),
                m.body.into(),
                m.attachment.into(),
                m.message_id.into(),
                m.status.into(),
                0i64.into(),
                (*now).into(),
                (*now).into(),
            ]
        })
        .collect();
    tx.defer_rows(
        "INSERT INTO messages (id, psp_id, order_id, capture_id, kind, cause_key, locale, to_address, subject, body, \
         attachment, message_id, status, attempts, created_at, updated_at) VALUES",
        rows,
        "ON CONFLICT (cause_key) DO NOTHING",
    );
}

/// A stored message.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Message {
    pub id: uuid::Uuid,
    #[serde(skip)]
    pub psp_id: PspId,
    pub order_id: Option<OrderId>,
    pub capture_id: Option<CaptureId>,
    /// `payment_information`, `payment_reminder`, `dunning`, `collection_notice`, `credit_note`,
    /// `payment_link`.
    pub kind: String,
    #[serde(skip)]
    pub cause_key: String,
    /// `de` or `en`.
    pub locale: String,
    #[serde(rename = "to")]
    pub to_address: String,
    pub subject: String,
    // Both made from `body` when read (`rendered`); messages written before issue 20 stored them.
    #[serde(rename = "text")]
    pub body_text: String,
    #[serde(rename = "html")]
    pub body_html: String,
    /// The body's parts, from which text and HTML are made.
    #[serde(skip)]
    pub body: Option<String>,
    /// The attached document, if any: its kind and the data it is rendered from.
    #[serde(skip)]
    pub attachment: Option<String>,
    /// Where the attached PDF is, if the message has one (the same PDF the e-mail carried).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_url: Option<String>,
    /// The SMTP `Message-ID`, the same on every attempt.
    pub message_id: String,
    /// `queued` (to be sent), `sent`, `stored` (no SMTP server configured: kept, not sent) or
    /// `failed` (gave up after retries).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When its cause happened, on the PSP's clock.
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, psp_id, order_id, capture_id, kind, cause_key, locale, to_address, subject, \
     COALESCE(body_text, '') AS body_text, COALESCE(body_html, '') AS body_html, body, \
     attachment, message_id, status, attempts, last_error, created_at, sent_at";

/// A message as read, with its text and HTML made from its stored parts.
fn rendered(mut m: Message) -> StoreResult<Message> {
    if let Some(body) = &m.body {
        let parts: crate::domain::mail::Body =
            serde_json::from_str(body).map_err(|e| super::StoreError::Corrupt(format!("messages.body: {e}")))?;
        m.body_text = parts.text();
        m.body_html = parts.html(&m.locale, &m.subject);
    }
    Ok(m)
}

/// One message (of `psp_id`'s buyers if given).
pub async fn get(conn: &mut impl AsExec, id: uuid::Uuid, psp_id: Option<PspId>) -> StoreResult<Option<Message>> {
    with_conn!(conn, c => {
        sqlx::query_as::<_, Message>(&format!("SELECT {COLUMNS} FROM messages WHERE id = $1 AND ($2 IS NULL OR psp_id = $2)"))
            .bind(id).bind(psp_id).fetch_optional(&mut *c).await?
    }).map(rendered).transpose()
}

pub async fn by_cause(conn: &mut impl AsExec, cause_key: &str) -> StoreResult<Option<Message>> {
    with_conn!(conn, c => {
        sqlx::query_as::<_, Message>(&format!("SELECT {COLUMNS} FROM messages WHERE cause_key = $1"))
            .bind(cause_key).fetch_optional(&mut *c).await?
    })
    .map(rendered)
    .transpose()
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub psp_id: Option<PspId>,
    pub order_id: Option<OrderId>,
    pub capture_id: Option<CaptureId>,
    pub status: Option<String>,
    pub starting_after: Option<uuid::Uuid>,
}

/// Messages, newest first.
pub async fn list(conn: &mut impl AsExec, f: &Filter, limit: i64) -> StoreResult<Vec<Message>> {
    with_conn!(conn, c => {
        sqlx::query_as::<_, Message>(&format!(
            "SELECT {COLUMNS} FROM messages WHERE ($1 IS NULL OR psp_id = $1) AND ($2 IS NULL OR order_id = $2) \
             AND ($3 IS NULL OR capture_id = $3) AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(f.psp_id).bind(f.order_id).bind(f.capture_id).bind(f.status.as_deref()).bind(f.starting_after).bind(limit)
        .fetch_all(&mut *c).await?
    })
    .into_iter()
    .map(rendered)
    .collect::<StoreResult<Vec<Message>>>()
}

/// Records an attempt's outcome: `sent`, `stored`, back to `queued` with the error, or `failed`.
pub async fn record_attempt(
    conn: &mut impl AsExec,
    id: uuid::Uuid,
    status: &str,
    error: Option<&str>,
    sent_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    with_conn!(conn, c => {
        sqlx::query(
            "UPDATE messages SET status = $2, attempts = attempts + 1, last_error = $3, sent_at = $4, updated_at = $5 \
             WHERE id = $1 AND status <> 'sent'",
        )
        .bind(id).bind(status).bind(error).bind(sent_at).bind(now).execute(&mut *c).await?;
    });
    Ok(())
}

/// What the buyer's messages about an order need from it, in one read: its data, payment method
/// and mandate, the checkout's locale and the merchant's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderContact {
    pub order_data: String,
    pub payment_method: String,
    pub mandate_reference: Option<String>,
    pub locale: Option<String>,
    pub merchant_name: Option<String>,
}

pub async fn order_contact(
    conn: &mut impl AsExec,
    psp_id: PspId,
    order_id: OrderId,
) -> StoreResult<Option<OrderContact>> {
    Ok(with_conn!(conn, c => {
        sqlx::query_as(
            "SELECT o.order_data, o.payment_method, o.mandate_reference, s.locale, m.name AS merchant_name \
             FROM orders o LEFT JOIN checkout_sessions s ON s.id = o.session_id LEFT JOIN merchants m ON m.id = o.merchant_id \
             WHERE o.id = $1 AND o.psp_id = $2",
        )
        .bind(order_id).bind(psp_id).fetch_optional(&mut *c).await?
    }))
}
