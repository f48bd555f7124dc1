//! SEPA B2B direct debit (SPEC §9.5): collection files (pain.008.001.08) for invoices due in
//! the configured window, booked when the statement shows the collection, and returns that
//! reopen the invoice, reverse the booking and, for codes that mean the mandate cannot be used,
//! switch the buyer to bank transfer.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::orders::{OrderError, conflict, order_event};
use super::payment_messages::{DebitFailure, Returned, queue_direct_debit_failure};
use crate::clock::PspTime;
use crate::domain::events::{Event, OrderEventKind, PaymentEvent, PaymentEventKind};
use crate::domain::ids::{CaptureId, PspId};
use crate::domain::ledger::{self, Applied};
use crate::domain::order::OrderState;
use crate::domain::pain002::RejectOutcome;
use crate::domain::sepa::{self, Collection, CollectionGroup, Party};
use crate::store::captures as captures_store;
use crate::store::direct_debits::{self as store, DirectDebitRow, FileRow};
use crate::store::payments as payments_store;
use crate::store::{StoreError, Tx, events, ledger as journal, orders as orders_store};

/// Return codes after which the mandate is not used again: the buyer pays by transfer.
pub const SWITCH_TO_TRANSFER: [&str; 6] = ["MD01", "MS02", "AC01", "AC04", "AG01", "MD07"];

/// The most collections one file carries.
const MAX_PER_FILE: i64 = 5_000;

/// A collection file with its collections.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    pub file_id: uuid::Uuid,
    /// `MsgId` of the pain.008.
    pub message_id: String,
    /// The earliest requested collection date in it.
    pub collection_date: String,
    pub currency: String,
    pub count: i64,
    /// Sum of the collections (minor units).
    pub total: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub collections: Vec<CollectionView>,
}

/// One collection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CollectionView {
    pub capture_id: CaptureId,
    pub end_to_end_id: String,
    pub mandate_reference: String,
    /// `FRST` or `RCUR`.
    pub sequence: String,
    pub amount: i64,
    pub collection_date: String,
    /// `pending` (in a file), `collected` (the statement showed it), `returned` (the bank took
    /// it back), `rejected` (the bank refused to present it, a pain.002: nothing was debited).
    pub state: String,
    /// The bank's reason code of a return or reject, e.g. `AM04`.
    pub return_reason: Option<String>,
}

fn collection_view(d: &DirectDebitRow) -> CollectionView {
    CollectionView {
        capture_id: d.capture_id,
        end_to_end_id: d.end_to_end_id.clone(),
        mandate_reference: d.mandate_reference.clone(),
        sequence: d.sequence.clone(),
        amount: d.amount,
        collection_date: d.collection_date.clone(),
        state: d.state.clone(),
        return_reason: d.return_reason.clone(),
    }
}

async fn file_view(conn: &mut impl crate::store::AsExec, f: FileRow) -> Result<FileView, OrderError> {
    let debits = store::debits_of_file(conn, f.id).await?;
    Ok(FileView {
        file_id: f.id,
        message_id: f.message_id,
        collection_date: f.collection_date,
        currency: f.currency,
        count: f.count,
        total: f.total,
        created_at: f.created_at,
        collections: debits.iter().map(collection_view).collect(),
    })
}

/// The day an invoice due on `due` is collected when its file is written `today`: the due date,
/// never before the next day (B2B: presented a day ahead), moved to the next TARGET2 business
/// day (the pre-notification names the same day).
pub fn collection_day(due: NaiveDate, today: NaiveDate) -> NaiveDate {
    sepa::business_day_from(due.max(today + Duration::days(1)))
}

/// Writes the collection file for `psp_id`'s invoices due within the window on its clock `at`;
/// `None` when nothing is due. Each invoice is collected once: a concurrent export of the same
/// invoice fails on its unique attempt and this one is retried without it.
pub async fn export_for(s: &Services, psp_id: PspId, at: PspTime) -> Result<Option<FileView>, OrderError> {
    for _ in 0..3 {
        match try_export(s, psp_id, at).await {
            Err(OrderError::Store(e)) if e.is_retryable() => continue,
            other => return other,
        }
    }
    Err(conflict("another export is collecting the same invoices; retry"))
}

async fn try_export(s: &Services, psp_id: PspId, at: PspTime) -> Result<Option<FileView>, OrderError> {
    let today = at.now.date_naive();
    let until = today + Duration::days(s.config.direct_debit_days_ahead);
    let mut tx = s.db.begin().await?;
    let due = store::due_for_collection(&mut tx, psp_id, until, MAX_PER_FILE).await?;
    if due.is_empty() {
        return Ok(None);
    }
    let file_id = uuid::Uuid::now_v7();
    let message_id = format!("NT{}", file_id.simple());
    let mut groups: Vec<CollectionGroup> = Vec::new();
    let mut rows = Vec::with_capacity(due.len());
    let mut used_now: Vec<String> = Vec::new();
    for d in &due {
        let due_date: NaiveDate = d.due_date.parse().map_err(|_| StoreError::Corrupt("captures.due_date".into()))?;
        let date = collection_day(due_date, today);
        let sequence = if d.mandate_used || used_now.contains(&d.mandate_reference) { "RCUR" } else { "FRST" };
        used_now.push(d.mandate_reference.clone());
        let id = uuid::Uuid::now_v7();
        let row = DirectDebitRow {
            id,
            capture_id: d.capture_id,
            psp_id: d.psp_id,
            buyer_id: d.buyer_id,
            attempt: 1,
            file_id: Some(file_id),
            end_to_end_id: format!("NT{}", id.simple()),
            mandate_reference: d.mandate_reference.clone(),
            sequence: sequence.into(),
            currency: "EUR".into(),
            amount: d.amount,
            collection_date: date.to_string(),
            state: "pending".into(),
            payment_id: None,
            return_reason: None,
            created_at: at.now,
        };
        let item = Collection {
            end_to_end_id: row.end_to_end_id.clone(),
            amount: d.amount,
            mandate_id: d.mandate_reference.clone(),
            signed_on: d.signed_at.date_naive(),
            debtor: Party { name: d.debtor_name.clone(), iban: d.debit_iban.clone(), bic: None },
            remittance: format!("{} {}", d.payment_reference, d.external_invoice_number),
        };
        match groups.iter_mut().find(|g| g.sequence == sequence && g.date == date) {
            Some(g) => g.items.push(item),
            None => groups.push(CollectionGroup { sequence: sequence.into(), date, items: vec![item] }),
        }
        rows.push(row);
    }
    let creditor = Party {
        name: s.config.creditor_name.clone(),
        iban: s.config.bank_iban.clone(),
        bic: Some(s.config.bank_bic.clone()),
    };
    let xml = sepa::pain008(&message_id, at.wall, &creditor, &s.config.sepa_creditor_id, &groups);
    let earliest = groups.iter().map(|g| g.date).min().unwrap_or(today);
    let file = FileRow {
        id: file_id,
        message_id,
        collection_date: earliest.to_string(),
        currency: "EUR".into(),
        count: rows.len() as i64,
        total: rows.iter().map(|r| r.amount).sum(),
        xml,
        created_at: at.now,
    };
    // The file first: its collections refer to it.
    store::insert_file(&mut tx, &file);
    for r in &rows {
        store::insert_debit(&mut tx, r).await?;
    }
    tx.commit().await?;
    tracing::info!(file_id = %file.id, count = file.count, total = file.total, "direct-debit collection file written");
    let mut conn = s.db.conn().await?;
    Ok(Some(file_view(&mut conn, file).await?))
}

/// Writes collection files for every PSP's due invoices (CLI and admin API, on demand).
pub async fn export_all(s: &Services) -> Result<Vec<FileView>, OrderError> {
    let mut out = Vec::new();
    for (p, at) in s.psp_times().await? {
        if let Some(f) = export_for(s, p, at).await? {
            out.push(f);
        }
    }
    Ok(out)
}

pub async fn list_files(
    s: &Services,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<(Vec<FileView>, bool), OrderError> {
    let mut conn = s.db.conn().await?;
    let mut rows = store::list_files(&mut conn, starting_after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let mut out = Vec::new();
    for f in rows {
        out.push(file_view(&mut conn, f).await?);
    }
    Ok((out, more))
}

/// A file's pain.008 XML.
pub async fn file_xml(s: &Services, id: uuid::Uuid) -> Result<String, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::get_file(&mut conn, id).await?.ok_or(OrderError::NotFound("direct-debit file"))?.xml)
}

/// The bank refused to present the collection with end-to-end id `e2e` (a pain.002) with
/// `reason`: it is `rejected`, nothing was debited. The invoice stays open and is paid by
/// transfer — the buyer is told how and by when (a fair new date; dunning waits for it) — and
/// after a code that means the mandate cannot be used the buyer pays by transfer from now on.
/// `None` if no collection has that id.
pub(crate) async fn rejected_in(
    s: &Services,
    tx: &mut Tx,
    e2e: &str,
    reason: &str,
) -> Result<Option<RejectOutcome>, OrderError> {
    let Some(dd) = store::get_by_end_to_end(tx, e2e).await? else { return Ok(None) };
    match dd.state.as_str() {
        "rejected" => return Ok(Some(RejectOutcome::Known)),
        "pending" => {}
        other => return Ok(Some(RejectOutcome::Left(other.to_owned()))),
    }
    let at = s.now_for(tx, dd.psp_id).await?;
    if !store::mark_rejected(tx, dd.id, reason, at.now).await? {
        return Err(conflict("the collection changed meanwhile; import the report again"));
    }
    let c = captures_store::get_capture(tx, dd.psp_id, dd.capture_id, true)
        .await?
        .ok_or(OrderError::NotFound("capture"))?;
    if matches!(c.state.as_str(), "open" | "late") {
        let policy = super::dunning::policy(s, tx).await?;
        let due: NaiveDate = c.due_date.parse().map_err(|_| StoreError::Corrupt("captures.due_date".into()))?;
        let pay_by = due.max(at.now.date_naive() + Duration::days(policy.payment_deadline_days));
        let next = policy.next_step(due, c.dunning_stage, pay_by + Duration::days(1)).map(|(_, on)| on);
        captures_store::set_next_dunning(tx, c.id, next, at.now).await?;
        let facts = super::messages::invoice_facts(s, tx, &c).await?;
        let rejected = Returned { code: reason, amount: dd.amount, pay_by };
        queue_direct_debit_failure(s, tx, &facts, dd.id, DebitFailure::Rejected, rejected, at);
    }
    if SWITCH_TO_TRANSFER.contains(&reason) {
        let n = store::switch_buyer_to_transfer(tx, dd.buyer_id, at.now).await?;
        tracing::info!(orders = n, reason, "buyer switched to bank transfer after a rejected direct debit");
    }
    tracing::warn!(end_to_end_id = e2e, reason, "the bank rejected a direct-debit collection");
    Ok(Some(RejectOutcome::Rejected))
}

/// The most a bank adds to a returned collection as its fee (DK returns carry the amount with it).
const MAX_RETURN_FEE: i64 = 5_000;

/// What became of a return in a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnOutcome {
    /// It reversed the collection it names.
    Reversed,
    /// The collection was already returned (the same return, read again).
    Known,
    /// It matched no collection: it waits in the unmatched-returns queue.
    Held,
}

/// A return in a statement (`t`, in entry `entry` at position `seq`): matched by end-to-end id,
/// else by mandate and the amount of a collection not yet returned (exactly, or with at most the
/// bank's fee on top). Reverses the collection it matches; one it cannot match is held, with its
/// reason, for an operator.
#[allow(clippy::too_many_arguments)]
pub async fn returned(
    s: &Services,
    tx: &mut Tx,
    entry: &crate::domain::camt::Entry,
    entry_id: uuid::Uuid,
    seq: i64,
    t: &crate::domain::camt::TxDetails,
    reason: &str,
) -> Result<ReturnOutcome, OrderError> {
    let amount = t.amount.unwrap_or(entry.amount);
    let e2e = t.end_to_end_id.as_deref().unwrap_or("");
    let mut dd = if e2e.is_empty() { None } else { store::get_by_end_to_end(tx, e2e).await? };
    if dd.is_none()
        && let Some(mandate) = t.mandate_id.as_deref().filter(|m| !m.is_empty())
    {
        let open = store::collected_by_mandate(tx, mandate).await?;
        let exact: Vec<&DirectDebitRow> = open.iter().filter(|d| d.amount == amount).collect();
        let with_fee: Vec<&DirectDebitRow> =
            open.iter().filter(|d| d.amount < amount && amount - d.amount <= MAX_RETURN_FEE).collect();
        dd = match (exact.as_slice(), with_fee.as_slice()) {
            ([one], _) | ([], [one]) => Some((*one).clone()),
            _ => None,
        };
    }
    let reason = if reason.is_empty() { "MS03" } else { reason };
    match dd {
        Some(dd) if dd.state == "collected" => {
            reverse(s, tx, &dd, reason).await?;
            Ok(ReturnOutcome::Reversed)
        }
        Some(dd) if dd.state == "returned" => Ok(ReturnOutcome::Known),
        _ => {
            let held = store::NewUnmatchedReturn {
                entry_id,
                seq,
                currency: t.currency.as_deref().unwrap_or(&entry.currency),
                amount,
                reason,
                end_to_end_id: t.end_to_end_id.as_deref().filter(|x| !x.is_empty()),
                mandate_id: t.mandate_id.as_deref().filter(|x| !x.is_empty()),
                debtor_name: t.debtor_name.as_deref(),
                booking_date: entry.booking_date.map(|d| d.to_string()),
            };
            store::hold_return(tx, &held, s.clock.now()).await?;
            tracing::warn!(reason, "a direct-debit return matched no collection; held for an operator");
            Ok(ReturnOutcome::Held)
        }
    }
}

/// The unmatched-returns queue, newest first, with each reason in words.
pub async fn unmatched_returns(
    s: &Services,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<store::UnmatchedReturn>, OrderError> {
    let mut conn = s.db.conn().await?;
    let mut rows = store::unmatched_returns(&mut conn, state, starting_after, limit).await?;
    rows.iter_mut().for_each(explain);
    Ok(rows)
}

fn explain(r: &mut store::UnmatchedReturn) {
    r.reason_text = super::payment_messages::return_reason_text(&r.reason, super::messages::Locale::En).0.to_owned();
}

/// An operator applies a held return to the collection with `end_to_end_id`: it is reversed
/// exactly as a matched return reverses it (the invoice reopens, the buyer is told). The
/// collection must be collected, in the return's currency, and not more than the return.
pub async fn apply_return(
    s: &Services,
    id: uuid::Uuid,
    end_to_end_id: &str,
) -> Result<store::UnmatchedReturn, OrderError> {
    let mut tx = s.db.begin().await?;
    let r = store::unmatched_return(&mut tx, id).await?.ok_or(OrderError::NotFound("unmatched return"))?;
    if r.state != "open" {
        return Err(conflict(format!("the return is {} already", r.state)));
    }
    let invalid = |title: &str| {
        OrderError::Invalid(vec![crate::domain::validate::FieldError {
            source: "end_to_end_id".into(),
            title: title.into(),
        }])
    };
    let dd = store::get_by_end_to_end(&mut tx, end_to_end_id).await?.ok_or_else(|| invalid("no such collection"))?;
    if dd.currency != r.currency || dd.amount > r.amount {
        return Err(invalid("the collection is in another currency or more than the bank took back"));
    }
    if dd.state != "collected" {
        return Err(conflict(format!("the collection is {}, not collected", dd.state)));
    }
    reverse(s, &mut tx, &dd, &r.reason).await?;
    let now = s.now_for(&mut tx, dd.psp_id).await?.now;
    if !store::resolve_return(&mut tx, id, "applied", Some(&dd.end_to_end_id), None, now).await? {
        return Err(conflict("the return was resolved meanwhile"));
    }
    let mut out = store::unmatched_return(&mut tx, id).await?.ok_or(OrderError::NotFound("unmatched return"))?;
    tx.commit().await?;
    explain(&mut out);
    Ok(out)
}

/// An operator dismisses a held return (it was no collection of ours, or was settled otherwise),
/// saying why.
pub async fn dismiss_return(s: &Services, id: uuid::Uuid, note: &str) -> Result<store::UnmatchedReturn, OrderError> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return Err(OrderError::Invalid(vec![crate::domain::validate::FieldError {
            source: "reason".into(),
            title: "reason must be 1 to 500 characters".into(),
        }]));
    }
    let mut tx = s.db.begin().await?;
    let r = store::unmatched_return(&mut tx, id).await?.ok_or(OrderError::NotFound("unmatched return"))?;
    if r.state != "open" {
        return Err(conflict(format!("the return is {} already", r.state)));
    }
    if !store::resolve_return(&mut tx, id, "dismissed", None, Some(note), s.clock.now()).await? {
        return Err(conflict("the return was resolved meanwhile"));
    }
    let mut out = store::unmatched_return(&mut tx, id).await?.ok_or(OrderError::NotFound("unmatched return"))?;
    tx.commit().await?;
    explain(&mut out);
    Ok(out)
}

async fn reverse(s: &Services, tx: &mut Tx, dd: &DirectDebitRow, reason: &str) -> Result<(), OrderError> {
    let at = s.now_for(tx, dd.psp_id).await?;
    let payment_id = dd.payment_id.ok_or_else(|| StoreError::Corrupt("collected debit without payment".into()))?;
    let p = payments_store::get_payment(tx, payment_id, None, true)
        .await?
        .ok_or_else(|| StoreError::Corrupt("collected debit's payment".into()))?;
    if p.state != "matched" {
        return Err(conflict(format!("the collection's payment is {}", p.state)));
    }
    let buyer = p.buyer_id.ok_or_else(|| StoreError::Corrupt("matched payment without buyer".into()))?;
    let policy = super::dunning::policy(s, tx).await?;
    let today = at.now.date_naive();
    // A fair new date to pay by transfer; dunning waits for it.
    let pay_by = today + chrono::Duration::days(policy.payment_deadline_days);
    let mut undone = Applied { credit: p.credit, ..Applied::default() };
    for (capture_id, charges, principal) in payments_store::allocations(tx, p.id).await? {
        let c = captures_store::get_capture(tx, dd.psp_id, capture_id, true)
            .await?
            .ok_or(OrderError::NotFound("capture"))?;
        let due: NaiveDate = c.due_date.parse().map_err(|_| StoreError::Corrupt("captures.due_date".into()))?;
        let state = if due < today { "late" } else { "open" };
        // Dunning picks up where the invoice stands, once the new date to pay by has passed.
        let next = policy.next_step(due, c.dunning_stage, pay_by.max(due) + Duration::days(1)).map(|(_, on)| on);
        if !captures_store::reopen_after_return(tx, &c, charges, principal, state, next, at.now).await? {
            return Err(conflict("the invoice changed meanwhile; retry"));
        }
        undone.charges += charges;
        undone.principal += principal;
        if let Some(merchant_id) = orders_store::reopen_if_complete(tx, c.order_id, at.now).await? {
            order_event(tx, dd.psp_id, OrderEventKind::Shipped, c.order_id, merchant_id, OrderState::Shipped, at)
                .await?;
        }
        let after = captures_store::get_capture(tx, dd.psp_id, capture_id, false)
            .await?
            .ok_or(OrderError::NotFound("capture"))?;
        let ev = PaymentEvent {
            payment_id: p.id,
            capture_id,
            order_id: c.order_id,
            currency: c.currency.clone(),
            amount: -(charges + principal),
            charges: -charges,
            principal: -principal,
            matched_by: p.rule.clone().unwrap_or_default(),
            outstanding: after.outstanding(),
            return_reason: Some(reason.to_owned()),
        };
        events::append(tx, dd.psp_id, &Event::Payment(PaymentEventKind::Returned, ev), at).await?;
        let facts = super::messages::invoice_facts(s, tx, &after).await?;
        let returned = Returned { code: reason, amount: charges + principal, pay_by: pay_by.max(due) };
        queue_direct_debit_failure(s, tx, &facts, dd.id, DebitFailure::Returned, returned, at);
    }
    let entry = ledger::bank_payment(buyer, undone).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reversal = ledger::Entry { kind: "direct_debit_return", ..entry.reversal() };
    journal::post(tx, &reversal, &p.currency, p.id, at.now).await?;
    payments_store::move_payment(tx, p.id, "matched", "returned", at.now);
    if !store::mark_returned(tx, dd.id, reason, at.now).await? {
        return Err(conflict("the collection was returned meanwhile"));
    }
    if SWITCH_TO_TRANSFER.contains(&reason) {
        let n = store::switch_buyer_to_transfer(tx, buyer, at.now).await?;
        tracing::info!(orders = n, reason, "buyer switched to bank transfer after a direct-debit return");
    }
    Ok(())
}

/// Sandbox: the simulated bank books `psp_id`'s collections due by `at` as a statement would,
/// through the same matching (their end-to-end ids). Idempotent by the collection.
pub async fn sandbox_book_collections(s: &Services, psp_id: PspId, at: PspTime) -> Result<usize, OrderError> {
    let mut conn = s.db.conn().await?;
    let due = store::pending_due(&mut conn, psp_id, at.now.date_naive()).await?;
    drop(conn);
    let mut n = 0;
    for d in due {
        let mut tx = s.db.begin().await?;
        let part = super::payments::Part {
            amount: d.amount,
            currency: d.currency.clone(),
            tx: crate::domain::camt::TxDetails {
                amount: Some(d.amount),
                end_to_end_id: Some(d.end_to_end_id.clone()),
                mandate_id: Some(d.mandate_reference.clone()),
                ..Default::default()
            },
            booking_date: Some(d.collection_date.clone()),
            ..Default::default()
        };
        let key = format!("sandbox-collection:{}", d.end_to_end_id);
        let entry = super::payments::sandbox_entry(s, &mut tx, &key, &part).await;
        let entry = match entry {
            Ok(e) => e,
            Err(OrderError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        };
        if super::payments::receive(s, &mut tx, entry, key, &part, Some(psp_id)).await?.is_some() {
            n += 1;
        }
        tx.commit().await?;
    }
    Ok(n)
}

/// `POST /v1/sandbox/direct-debit-returns`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxReturnInput {
    #[schema(required = true)]
    pub capture_id: Option<CaptureId>,
    /// The SEPA reason code, e.g. `AM04` (insufficient funds) or `MD01` (no mandate).
    #[schema(required = true, example = "AM04")]
    pub reason_code: Option<String>,
}

/// What a sandbox return did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReturnView {
    pub capture_id: CaptureId,
    pub end_to_end_id: String,
    pub reason_code: String,
    /// Whether the buyer now pays by bank transfer (the code means the mandate cannot be used).
    pub switched_to_bank_transfer: bool,
}

/// The collected direct debit of one of the PSP's invoices comes back, as a bank would return it.
pub async fn sandbox_return(s: &Services, psp_id: PspId, input: SandboxReturnInput) -> Result<ReturnView, OrderError> {
    let mut v = crate::domain::validate::Violations::new();
    let capture_id = v.required("capture_id", input.capture_id);
    let code = v.text("reason_code", input.reason_code, 4);
    if let Some(c) = &code
        && !(c.len() == 4 && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    {
        v.add("reason_code", "reason_code must be a four-character SEPA reason code such as AM04");
    }
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(capture_id), Some(code)) = (capture_id, code) else { return Err(OrderError::Invalid(Vec::new())) };
    let mut tx = s.db.begin().await?;
    captures_store::get_capture(&mut tx, psp_id, capture_id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    let dd = store::latest_of_capture(&mut tx, capture_id).await?;
    let Some(dd) = dd.filter(|d| d.psp_id == psp_id) else {
        return Err(conflict("the invoice has no direct debit collected"));
    };
    if dd.state != "collected" {
        return Err(conflict(format!("the invoice's direct debit is {}, not collected", dd.state)));
    }
    let dd = store::get_by_end_to_end(&mut tx, &dd.end_to_end_id).await?.ok_or(OrderError::NotFound("direct debit"))?;
    reverse(s, &mut tx, &dd, &code).await?;
    tx.commit().await?;
    Ok(ReturnView {
        capture_id,
        end_to_end_id: dd.end_to_end_id,
        switched_to_bank_transfer: SWITCH_TO_TRANSFER.contains(&code.as_str()),
        reason_code: code,
    })
}
