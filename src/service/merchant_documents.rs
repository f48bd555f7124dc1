//! The merchant's own invoice and credit notes (SPEC §9.4): uploaded by the PSP as PDF, or
//! fetched once from the capture's `invoice_url` — through the webhooks' address guard, without
//! redirects, at most 10 MB — and shown to the buyer in the portal.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::Digest;
use utoipa::ToSchema;

use super::Services;
use super::orders::{OrderError, invalid};
use crate::domain::files::MAX_FILE_BYTES;
use crate::domain::files::is_pdf;
use crate::domain::ids::{CaptureId, PspId};
use crate::store::captures as captures_store;
use crate::store::jobs::{self, NewJob};
use crate::store::portal::{self as store, DocumentMeta};
use crate::store::{StoreError, Tx};

/// The job that fetches an invoice from `invoice_url`.
pub const FETCH_JOB: &str = "fetch_invoice_document";

/// A stored document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    /// `invoice` or `credit_note`.
    pub kind: String,
    /// The capture (invoice) or refund (credit note) it belongs to.
    pub subject_id: uuid::Uuid,
    /// `upload` or `invoice_url`.
    pub source: String,
    pub size: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    pub updated_at: DateTime<Utc>,
}

impl From<DocumentMeta> for DocumentView {
    fn from(m: DocumentMeta) -> DocumentView {
        DocumentView {
            kind: m.kind,
            subject_id: m.subject_id,
            source: m.source,
            size: m.size,
            sha256: m.sha256,
            updated_at: m.updated_at,
        }
    }
}

fn check_pdf(bytes: &[u8]) -> Result<(), OrderError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(invalid("body", "the document is larger than 10 MB"));
    }
    if !is_pdf(bytes) {
        return Err(invalid("body", "the document is not a PDF (it must start with %PDF- and end with %%EOF)"));
    }
    Ok(())
}

/// `PUT /v1/captures/{id}/invoice-document`: the merchant's invoice (replaces an earlier one).
pub async fn put_invoice(s: &Services, psp_id: PspId, id: CaptureId, bytes: &[u8]) -> Result<DocumentView, OrderError> {
    check_pdf(bytes)?;
    let mut tx = s.db.begin().await?;
    captures_store::get_capture(&mut tx, psp_id, id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    let now = s.now_for(&mut tx, psp_id).await?.now;
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    let meta = store::put_document(&mut tx, "invoice", id.0, psp_id, id, "upload", bytes, &digest, now).await?;
    tx.commit().await?;
    Ok(meta.into())
}

/// `PUT /v1/refunds/{id}/credit-note-document`: the merchant's credit note of a refund.
pub async fn put_credit_note(
    s: &Services,
    psp_id: PspId,
    refund_id: uuid::Uuid,
    bytes: &[u8],
) -> Result<DocumentView, OrderError> {
    check_pdf(bytes)?;
    let mut tx = s.db.begin().await?;
    let (owner, capture_id) = store::refund_owner(&mut tx, refund_id).await?.ok_or(OrderError::NotFound("refund"))?;
    if owner != psp_id {
        return Err(OrderError::NotFound("refund"));
    }
    let now = s.now_for(&mut tx, psp_id).await?.now;
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    let meta =
        store::put_document(&mut tx, "credit_note", refund_id, psp_id, capture_id, "upload", bytes, &digest, now)
            .await?;
    tx.commit().await?;
    Ok(meta.into())
}

/// Queues the fetch of a new capture's `invoice_url` (deferred, with the capture).
pub fn queue_fetch(tx: &mut Tx, psp_id: PspId, id: CaptureId, wall: DateTime<Utc>) {
    let payload = serde_json::json!({ "capture_id": id }).to_string();
    let key = format!("{FETCH_JOB}:{id}");
    let job = NewJob {
        kind: FETCH_JOB,
        psp_id: Some(psp_id),
        payload: &payload,
        unique_key: Some(&key),
        run_at: wall,
        max_attempts: 5,
    };
    jobs::enqueue(tx, &job, wall);
}

/// Runs a fetch job: once the invoice has a document (fetched or uploaded) there is nothing to do.
/// A refused answer (not a PDF, too large, not 200) is final and logged; a network failure retries.
pub async fn fetch(s: &Services, payload: &str) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Payload {
        capture_id: CaptureId,
    }
    let p: Payload = serde_json::from_str(payload)?;
    let (psp_id, url) = {
        let mut conn = s.db.conn().await?;
        let Some(psp_id) = captures_store::psp_of(&mut conn, p.capture_id).await? else { return Ok(()) };
        if store::has_document(&mut conn, "invoice", p.capture_id.0).await? {
            return Ok(());
        }
        let c = captures_store::get_capture(&mut conn, psp_id, p.capture_id, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("capture vanished".into()))?;
        let Some(url) = c.invoice_url else { return Ok(()) };
        (psp_id, url)
    };
    let outbound = super::outbound::Outbound::new(s, concat!("netterms-documents/", env!("CARGO_PKG_VERSION")))?;
    let request = match outbound.request(reqwest::Method::GET, &url) {
        Ok(r) => r,
        Err(e) => {
            // Final: the same address would be refused again.
            tracing::warn!(capture_id = %p.capture_id, reason = %e, "invoice_url refused: not fetched");
            return Ok(());
        }
    };
    let mut resp = request.send().await?;
    if !resp.status().is_success() {
        if resp.status().is_server_error() {
            anyhow::bail!("invoice_url answered {}", resp.status());
        }
        tracing::warn!(capture_id = %p.capture_id, status = resp.status().as_u16(), "invoice_url refused: not fetched");
        return Ok(());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_FILE_BYTES {
            tracing::warn!(capture_id = %p.capture_id, "invoice_url document larger than 10 MB: not stored");
            return Ok(());
        }
        body.extend_from_slice(&chunk);
    }
    if !is_pdf(&body) {
        tracing::warn!(capture_id = %p.capture_id, "invoice_url answered no PDF: not stored");
        return Ok(());
    }
    let mut tx = s.db.begin().await?;
    // An upload that came meanwhile wins.
    if !store::has_document(&mut tx, "invoice", p.capture_id.0).await? {
        let now = s.now_for(&mut tx, psp_id).await?.now;
        let digest = hex::encode(sha2::Sha256::digest(&body));
        store::put_document(
            &mut tx,
            "invoice",
            p.capture_id.0,
            psp_id,
            p.capture_id,
            "invoice_url",
            &body,
            &digest,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
