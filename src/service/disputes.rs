//! Disputes (SPEC §10). A dispute is opened on an invoice — by the buyer in the portal, by an
//! operator, or in a sandbox by the PSP — with a reason code, an amount and a deadline for the
//! PSP's defence; while it is open the invoice's dunning waits. The PSP defends once, with a reason
//! and documents; an operator closes it as `resolved` (dunning resumes) or `chargeback`; a
//! dispute still undefended at its deadline becomes a chargeback by itself.
//!
//! A chargeback is borne by the PSP, as a refund is: the buyer owes the amount no longer (what it
//! had paid of it becomes its credit), the ledger moves it off the PSP's payable, and the next
//! payout is that much smaller. Every change locks the invoice first, so two closes, a close and
//! the deadline scan, or a defence and the deadline cannot both win.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::captures::{capture_event, capture_state};
use super::orders::{OrderError, conflict, invalid, settle_order};
use crate::clock::PspTime;
use crate::domain::events::{CaptureEventKind, DisputeEvent, DisputeEventKind, DunningPauseEvent, Event};
use crate::domain::ids::{CaptureId, PspId};
use crate::domain::ledger;
use crate::domain::validate::Violations;
use crate::store::captures::{self as captures_store, CaptureRow};
use crate::store::disputes::{self as store, DisputeRow, DocumentRow};
use crate::store::{StoreError, Tx, events, ledger as journal};

/// A dispute's defence deadline unless the operator names one (SPEC §10).
pub const DEADLINE_DAYS: i64 = 12;
/// The longest deadline an operator may give.
pub const MAX_DEADLINE_DAYS: i64 = 90;
/// The reason codes of a dispute (SPEC §10).
pub const REASON_CODES: [&str; 6] =
    ["return", "goods_not_received", "faulty_goods", "already_paid", "incorrect_invoice", "unauthorized_purchase"];
/// One document of a defence, decoded.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;
/// Documents one defence may carry.
pub const MAX_DOCUMENTS: usize = 3;
/// The body of a defence: its documents in base64 and room for the rest.
pub const MAX_DEFENCE_BODY: usize = MAX_DOCUMENTS * (MAX_DOCUMENT_BYTES / 3 * 4 + 8) + 64 * 1024;
/// Disputes the deadline scan closes per PSP and round.
const DEADLINE_BATCH: i64 = 200;

/// `POST /admin/v1/disputes` and `POST /v1/sandbox/disputes`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenInput {
    #[schema(required = true, value_type = Option<uuid::Uuid>)]
    pub capture_id: Option<CaptureId>,
    /// `return`, `goods_not_received`, `faulty_goods`, `already_paid`, `incorrect_invoice` or
    /// `unauthorized_purchase`.
    #[schema(required = true)]
    pub reason_code: Option<String>,
    /// Disputed, minor units; at most what the invoice still bills (gross less refunds and
    /// chargebacks). Default: all of that.
    pub amount: Option<i64>,
    /// What the buyer says (≤ 5,000 characters).
    pub description: Option<String>,
    /// Days the PSP has to defend (1–90, default 12), on the PSP's clock.
    pub deadline_days: Option<i64>,
}

/// `POST /v1/disputes/{id}/defend`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefendInput {
    /// The PSP's (or merchant's) answer (≤ 5,000 characters).
    #[schema(required = true)]
    pub reason: Option<String>,
    /// Up to 3 documents: PDF, PNG or JPEG, each at most 10 MB.
    #[serde(default)]
    pub documents: Vec<DocumentInput>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// A file name to show (optional).
    pub name: Option<String>,
    /// `application/pdf`, `image/png` or `image/jpeg`; when given it must be what the content is.
    pub content_type: Option<String>,
    /// The file, base64 (standard alphabet).
    #[schema(required = true)]
    pub content: Option<String>,
}

/// `POST /admin/v1/disputes/{id}/close`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseInput {
    /// `resolved` (the buyer owes the invoice as before; dunning resumes) or `chargeback` (the
    /// buyer owes the disputed amount no longer; the PSP's next payout bears it).
    #[schema(required = true)]
    pub result: Option<String>,
}

/// A dispute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeView {
    pub dispute_id: uuid::Uuid,
    /// The same as `dispute_id` (kept for clients written before it).
    pub id: uuid::Uuid,
    /// `open`, `resolved` or `chargeback`.
    pub state: String,
    pub psp_id: PspId,
    #[schema(value_type = uuid::Uuid)]
    pub capture_id: CaptureId,
    /// `buyer` (portal), `operator` or `sandbox`.
    pub opened_by: String,
    /// The buyer's address, when the buyer opened it.
    pub email: Option<String>,
    pub reason_code: String,
    pub description: String,
    pub currency: String,
    /// Disputed, minor units.
    pub amount: i64,
    /// The defence is due by then (PSP's clock); undefended by then, it becomes a chargeback.
    pub deadline: DateTime<Utc>,
    pub defense: Option<DefenseView>,
    /// `operator`, or `deadline` when it passed without a defence.
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    /// What the chargeback took off the invoice (recovered from the PSP's next payout).
    pub charged_back: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DefenseView {
    pub reason: String,
    pub defended_at: DateTime<Utc>,
    pub documents: Vec<DocumentView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocumentView {
    /// Its number within the defence (operators fetch it at
    /// `GET /admin/v1/disputes/{id}/documents/{seq}`).
    pub seq: i64,
    pub name: String,
    pub content_type: String,
    pub size: i64,
}

pub fn view(r: DisputeRow, documents: Vec<DocumentRow>) -> DisputeView {
    let defense = match (r.defense_reason, r.defended_at) {
        (Some(reason), Some(defended_at)) => Some(DefenseView {
            reason,
            defended_at,
            documents: documents
                .into_iter()
                .map(|d| DocumentView { seq: d.seq, name: d.name, content_type: d.content_type, size: d.size })
                .collect(),
        }),
        _ => None,
    };
    DisputeView {
        dispute_id: r.id,
        id: r.id,
        state: r.state,
        psp_id: r.psp_id,
        capture_id: r.capture_id,
        opened_by: r.opened_by,
        email: r.email,
        reason_code: r.reason_code,
        description: r.description,
        currency: r.currency,
        amount: r.amount,
        deadline: r.deadline,
        defense,
        closed_by: r.closed_by,
        closed_at: r.closed_at,
        charged_back: r.charged_back,
        created_at: r.created_at,
    }
}

fn event(d: &DisputeRow) -> DisputeEvent {
    DisputeEvent {
        dispute_id: d.id,
        capture_id: d.capture_id,
        reason_code: d.reason_code.clone(),
        currency: d.currency.clone(),
        amount: d.amount,
        deadline: d.deadline,
        state: d.state.clone(),
        charged_back: d.charged_back,
    }
}

fn corrupt(e: impl std::fmt::Display) -> OrderError {
    OrderError::Store(StoreError::Corrupt(e.to_string()))
}

/// What an invoice still bills and a dispute may take: gross less refunds and chargebacks.
fn disputable(c: &CaptureRow) -> i64 {
    c.gross - c.refunded - c.charged_back
}

/// The checked fields of an opening.
pub struct Opening {
    pub opened_by: &'static str,
    pub email: Option<String>,
    pub reason_code: String,
    pub amount: Option<i64>,
    pub description: String,
    pub deadline_days: i64,
}

impl Opening {
    /// Checks an operator's or a sandbox's input; the capture it names.
    pub fn from_input(input: OpenInput, opened_by: &'static str) -> Result<(CaptureId, Opening), OrderError> {
        let mut v = Violations::new();
        let capture_id = v.required("capture_id", input.capture_id);
        let reason_code = v.required("reason_code", input.reason_code);
        if let Some(r) = &reason_code
            && !REASON_CODES.contains(&r.as_str())
        {
            v.add("reason_code", format!("choose one of {}", REASON_CODES.join(", ")));
        }
        if input.amount.is_some_and(|a| a < 1) {
            v.add("amount", "amount must be at least 1");
        }
        let description = input.description.unwrap_or_default().trim().to_owned();
        if description.chars().count() > 5000 {
            v.add("description", "the description is longer than 5,000 characters");
        }
        let deadline_days = input.deadline_days.unwrap_or(DEADLINE_DAYS);
        if !(1..=MAX_DEADLINE_DAYS).contains(&deadline_days) {
            v.add("deadline_days", format!("deadline_days must be 1 to {MAX_DEADLINE_DAYS}"));
        }
        v.finish().map_err(OrderError::Invalid)?;
        let (Some(capture_id), Some(reason_code)) = (capture_id, reason_code) else {
            return Err(OrderError::Invalid(Vec::new()));
        };
        Ok((
            capture_id,
            Opening { opened_by, email: None, reason_code, amount: input.amount, description, deadline_days },
        ))
    }
}

/// Opens a dispute on `c` (locked by the caller): `dispute.opened`, and dunning waits while it is
/// open. One open dispute per invoice.
pub async fn open_locked(tx: &mut Tx, c: &CaptureRow, o: Opening, at: PspTime) -> Result<DisputeRow, OrderError> {
    let room = disputable(c);
    if room <= 0 {
        return Err(conflict("nothing of this invoice is left to dispute (refunded or charged back)"));
    }
    if c.disputes_open > 0 {
        return Err(conflict("a dispute of this invoice is open already"));
    }
    let amount = o.amount.unwrap_or(room);
    if amount > room {
        return Err(invalid("amount", &format!("at most {room} of this invoice can be disputed")));
    }
    let d = DisputeRow {
        id: uuid::Uuid::now_v7(),
        psp_id: c.psp_id,
        capture_id: c.id,
        opened_by: o.opened_by.into(),
        email: o.email,
        reason_code: o.reason_code,
        description: o.description,
        currency: c.currency.clone(),
        amount,
        state: "open".into(),
        deadline: at.now + Duration::days(o.deadline_days),
        created_at: at.now,
        updated_at: at.now,
        defense_reason: None,
        defended_at: None,
        closed_by: None,
        closed_at: None,
        charged_back: 0,
        owed_to_buyer: 0,
    };
    store::insert(tx, &d).await?;
    events::append(tx, c.psp_id, &Event::Dispute(DisputeEventKind::Opened, event(&d)), at).await?;
    if c.is_unpaid() {
        let reason = format!("dispute opened ({}, by the {})", d.reason_code, d.opened_by);
        super::dunning::pause_locked(tx, c, reason, None, false, at).await?;
    }
    Ok(d)
}

/// An operator's (`psp` = `None`) or a sandbox PSP's opening, in the caller's transaction.
pub async fn open(
    s: &Services,
    tx: &mut Tx,
    psp: Option<PspId>,
    input: OpenInput,
    opened_by: &'static str,
) -> Result<DisputeView, OrderError> {
    let (capture_id, o) = Opening::from_input(input, opened_by)?;
    let psp_id = match psp {
        Some(p) => p,
        None => captures_store::psp_of(tx, capture_id).await?.ok_or(OrderError::NotFound("capture"))?,
    };
    let c = captures_store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(OrderError::NotFound("capture"))?;
    let at = s.now_for(tx, psp_id).await?;
    let d = open_locked(tx, &c, o, at).await?;
    Ok(view(d, Vec::new()))
}

/// A decoded, checked document of a defence.
struct Document {
    name: String,
    content_type: &'static str,
    bytes: Vec<u8>,
}

fn documents(v: &mut Violations, docs: Vec<DocumentInput>) -> Vec<Document> {
    if docs.len() > MAX_DOCUMENTS {
        v.add("documents", format!("at most {MAX_DOCUMENTS} documents"));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let at = format!("documents[{i}].content");
        let Some(content) = d.content else {
            v.add(at, "content is required");
            continue;
        };
        if content.len() > MAX_DOCUMENT_BYTES / 3 * 4 + 8 {
            v.add(at, "the document is larger than 10 MB");
            continue;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(content.trim()) else {
            v.add(at, "content is not base64");
            continue;
        };
        if bytes.is_empty() {
            v.add(at, "the document is empty");
            continue;
        }
        if bytes.len() > MAX_DOCUMENT_BYTES {
            v.add(at, "the document is larger than 10 MB");
            continue;
        }
        let Some(sniffed) = crate::domain::files::sniff(&bytes) else {
            v.add(at, "the document is not a PDF, PNG or JPEG");
            continue;
        };
        if sniffed == "application/pdf" && !crate::domain::files::is_pdf(&bytes) {
            v.add(at, "the document is not a whole PDF");
            continue;
        }
        if let Some(t) = d.content_type.as_deref()
            && t != sniffed
        {
            v.add(format!("documents[{i}].content_type"), format!("the content is {sniffed}, not {t}"));
            continue;
        }
        let name = crate::domain::files::safe_name(d.name.as_deref().unwrap_or(""), sniffed);
        out.push(Document { name, content_type: sniffed, bytes });
    }
    out
}

/// The PSP defends an open dispute once, before its deadline.
pub async fn defend(
    s: &Services,
    psp_id: PspId,
    id: uuid::Uuid,
    input: DefendInput,
) -> Result<DisputeView, OrderError> {
    let mut v = Violations::new();
    let reason = v.text("reason", input.reason, 5000);
    let docs = documents(&mut v, input.documents);
    v.finish().map_err(OrderError::Invalid)?;
    let Some(reason) = reason else { return Err(OrderError::Invalid(Vec::new())) };
    let mut tx = s.db.begin().await?;
    let d = store::get(&mut tx, Some(psp_id), id).await?.ok_or(OrderError::NotFound("dispute"))?;
    // The invoice's lock orders this against a close and the deadline scan.
    captures_store::get_capture(&mut tx, psp_id, d.capture_id, true).await?.ok_or(OrderError::NotFound("dispute"))?;
    let d = store::get(&mut tx, Some(psp_id), id).await?.ok_or(OrderError::NotFound("dispute"))?;
    let at = s.now_for(&mut tx, psp_id).await?;
    if d.state != "open" {
        return Err(conflict(format!("the dispute is closed ({})", d.state)));
    }
    if d.defended_at.is_some() {
        return Err(conflict("the dispute was defended already"));
    }
    if at.now >= d.deadline {
        return Err(conflict(format!("the deadline to defend passed at {}", d.deadline.to_rfc3339())));
    }
    if !store::defend(&mut tx, id, &reason, at.now).await? {
        return Err(conflict("the dispute changed meanwhile; read it and retry"));
    }
    for (i, doc) in docs.iter().enumerate() {
        store::insert_document(&mut tx, id, i as i64 + 1, &doc.name, doc.content_type, &doc.bytes).await?;
    }
    let d = store::get(&mut tx, Some(psp_id), id).await?.ok_or(OrderError::NotFound("dispute"))?;
    let documents = store::documents(&mut tx, id).await?;
    tx.commit().await?;
    Ok(view(d, documents))
}

/// An operator closes an open dispute.
pub async fn close(s: &Services, id: uuid::Uuid, input: CloseInput) -> Result<(PspId, DisputeView), OrderError> {
    let result = match input.result.as_deref() {
        Some(r @ ("resolved" | "chargeback")) => r,
        Some(_) => return Err(invalid("result", "result must be resolved or chargeback")),
        None => return Err(invalid("result", "result is required")),
    };
    let mut tx = s.db.begin().await?;
    let d = store::get(&mut tx, None, id).await?.ok_or(OrderError::NotFound("dispute"))?;
    let c = captures_store::get_capture(&mut tx, d.psp_id, d.capture_id, true)
        .await?
        .ok_or(OrderError::NotFound("dispute"))?;
    let d = store::get(&mut tx, None, id).await?.ok_or(OrderError::NotFound("dispute"))?;
    if d.state != "open" {
        return Err(conflict(format!("the dispute is closed already ({})", d.state)));
    }
    let at = s.now_for(&mut tx, d.psp_id).await?;
    close_locked(s, &mut tx, &c, &d, result, "operator", at).await?;
    let d = store::get(&mut tx, None, id).await?.ok_or(OrderError::NotFound("dispute"))?;
    let documents = store::documents(&mut tx, id).await?;
    tx.commit().await?;
    Ok((d.psp_id, view(d, documents)))
}

/// Closes `d` (open) on `c` (locked). A chargeback takes the disputed amount off the invoice — at
/// most what it still bills — and moves it off the PSP's payable; what the buyer had paid of it
/// becomes the buyer's credit.
async fn close_locked(
    s: &Services,
    tx: &mut Tx,
    c: &CaptureRow,
    d: &DisputeRow,
    result: &str,
    closed_by: &str,
    at: PspTime,
) -> Result<(), OrderError> {
    let (taken, owed) = if result == "chargeback" {
        let taken = d.amount.min(disputable(c)).max(0);
        let against = taken.min(c.outstanding());
        (taken, taken - against)
    } else {
        (0, 0)
    };
    let state = capture_state(c.gross, c.refunded + c.charged_back + taken, c.paid_direct, c.paid_bank, &c.state);
    if taken > 0 {
        super::dunning::on_settlement_change(s, tx, c, state, at).await?;
    }
    if !store::close(tx, d, result, closed_by, (taken, owed), at.now).await? {
        return Err(conflict("the dispute changed meanwhile; read it and retry"));
    }
    if taken > 0 {
        if !captures_store::update_capture_amounts(
            tx,
            c.id,
            (c.refunded, c.paid_direct),
            c.refunded,
            c.paid_direct,
            state,
            at.now,
        )
        .await?
        {
            return Err(conflict("the invoice changed meanwhile; retry"));
        }
        let entry = ledger::chargeback(c.buyer_id, c.psp_id, taken, taken - owed).map_err(corrupt)?;
        journal::post(tx, &entry, &c.currency, d.id, at.now).await?;
    }
    let mut closed = d.clone();
    closed.state = result.into();
    closed.charged_back = taken;
    events::append(tx, c.psp_id, &Event::Dispute(DisputeEventKind::Closed, event(&closed)), at).await?;
    if c.is_unpaid() && state != c.state.as_str() && !matches!(state, "open" | "late") {
        let kind = if state == "paid" { CaptureEventKind::Paid } else { CaptureEventKind::Canceled };
        capture_event(tx, c.psp_id, kind, c.id, at).await?;
    }
    if c.is_unpaid() && matches!(state, "open" | "late") && c.disputes_open == 1 {
        let reason = format!("dispute closed ({result})");
        let ev = DunningPauseEvent { capture_id: c.id, reason, until: None };
        events::append(tx, c.psp_id, &Event::DunningResumed(ev), at).await?;
    }
    if taken > 0 {
        settle_order(s, tx, c.psp_id, c.order_id).await?;
    }
    Ok(())
}

/// Closes as `chargeback` the open disputes of `psp` left undefended past their deadline by `at`
/// (one transaction each); how many it closed.
pub async fn expire(s: &Services, psp_id: PspId, at: PspTime) -> Result<usize, OrderError> {
    let mut done = 0;
    loop {
        let due = {
            let mut conn = s.db.conn().await?;
            store::past_deadline(&mut conn, psp_id, at.now, DEADLINE_BATCH).await?
        };
        let n = due.len();
        let mut closed = 0;
        for (id, capture_id) in due {
            let mut tx = s.db.begin().await?;
            let Some(c) = captures_store::get_capture(&mut tx, psp_id, capture_id, true).await? else { continue };
            let Some(d) = store::get(&mut tx, Some(psp_id), id).await? else { continue };
            // Another node, a defence or an operator may have come first.
            if d.state != "open" || d.defended_at.is_some() || d.deadline > at.now {
                continue;
            }
            close_locked(s, &mut tx, &c, &d, "chargeback", "deadline", at).await?;
            tx.commit().await?;
            closed += 1;
        }
        done += closed;
        if n < DEADLINE_BATCH as usize || closed == 0 {
            return Ok(done);
        }
    }
}

pub async fn list(
    s: &Services,
    psp: Option<PspId>,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<DisputeView>, OrderError> {
    let mut conn = s.db.conn().await?;
    let rows = store::list(&mut conn, psp, state, starting_after, limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let docs = if r.defended_at.is_some() { store::documents(&mut conn, r.id).await? } else { Vec::new() };
        out.push(view(r, docs));
    }
    Ok(out)
}

/// One dispute; of `psp` only when given.
pub async fn get(s: &Services, psp: Option<PspId>, id: uuid::Uuid) -> Result<DisputeView, OrderError> {
    let mut conn = s.db.conn().await?;
    let d = store::get(&mut conn, psp, id).await?.ok_or(OrderError::NotFound("dispute"))?;
    let docs = store::documents(&mut conn, id).await?;
    Ok(view(d, docs))
}

/// A defence's document (operator): its type, name and bytes.
pub async fn document(s: &Services, id: uuid::Uuid, seq: i64) -> Result<(String, String, Vec<u8>), OrderError> {
    let mut conn = s.db.conn().await?;
    store::document(&mut conn, id, seq).await?.ok_or(OrderError::NotFound("document"))
}
