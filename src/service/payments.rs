//! Buyer payments (SPEC §9.5): deciding which invoices a payment pays, booking it — dunning
//! fees and interest first, the oldest due invoice first, the rest as the buyer's credit — and
//! the operator's unmatched queue. A bank statement entry, a sandbox payment and an operator's
//! assignment all go through [`decide`] and [`apply`].
//!
//! Booking locks the invoices it pays (oldest due first, the order every payment locks them in)
//! and changes each by compare-and-set, so a payment racing a refund or another payment of the
//! same invoice books against what the other left, never against a stale amount.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::captures::capture_state;
use super::orders::{OrderError, conflict, invalid, settle_order};
use super::payment_messages::{Booked, queue_payment_received};
use crate::clock::PspTime;
use crate::domain::camt::TxDetails;
use crate::domain::events::{CaptureEventData, CaptureEventKind, Event, PaymentEvent, PaymentEventKind};
use crate::domain::ids::{BuyerId, CaptureId, PspId};
use crate::domain::ledger::{self, Applied};
use crate::domain::matching::{self, OpenInvoice, Rule};
use crate::domain::validate::Violations;
use crate::store::captures::{self as captures_store, CaptureRow};
use crate::store::payments::{self as store, PaymentRow};
use crate::store::{AsExec, StoreError, Tx, events, ledger as journal};

/// Where the money being applied sits: it just arrived at the bank, or it was held as unapplied
/// cash (an operator assigns it from the unmatched queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bank,
    Unapplied,
}

/// Which invoices a payment pays and why.
#[derive(Debug, Clone)]
pub struct Decision {
    pub rule: Rule,
    pub buyer: BuyerId,
    /// The invoices named; empty: every unpaid invoice of the buyer.
    pub targets: Vec<CaptureId>,
    pub explanation: String,
}

/// The part of a statement entry (or a sandbox payment) that is one payment.
#[derive(Debug, Clone, Default)]
pub struct Part {
    pub amount: i64,
    pub currency: String,
    pub tx: TxDetails,
    /// The statement's account, when the transaction names no creditor account.
    pub account: Option<String>,
    /// The entry's additional information, searched for references too.
    pub info: Option<String>,
    pub booking_date: Option<String>,
}

fn corrupt(e: impl std::fmt::Display) -> OrderError {
    OrderError::Store(StoreError::Corrupt(e.to_string()))
}

/// Decides what `part` pays, by the rules of SPEC §9.5 in their order; `Err` with the reason when
/// nothing matches. `scope`: only this PSP's invoices (sandbox payments).
pub async fn decide(
    s: &Services,
    conn: &mut impl AsExec,
    part: &Part,
    scope: Option<PspId>,
) -> Result<Result<Decision, String>, OrderError> {
    if !s.config.currencies.contains(&part.currency) {
        return Ok(Err(format!("the currency {} is not one netterms serves", part.currency)));
    }
    let t = &part.tx;
    // 1. RF references in the structured remittance.
    let structured: Vec<String> =
        t.structured_refs.iter().map(|r| crate::domain::iban::normalize(r)).filter(|r| matching::is_rf(r)).collect();
    if let Some(d) = by_references(conn, &structured, scope, Rule::StructuredReference).await? {
        return Ok(Ok(d));
    }
    // 2. An RF reference in the free text (also in structured references that are not RF-shaped).
    let mut text: Vec<&str> = t.unstructured.iter().map(String::as_str).collect();
    text.extend(t.structured_refs.iter().map(String::as_str));
    text.extend(part.info.as_deref());
    let candidates = matching::rf_candidates(&text.join(" "));
    if let Some(d) = by_references(conn, &candidates, scope, Rule::TextReference).await? {
        return Ok(Ok(d));
    }
    // 3. The buyer's virtual IBAN as the creditor account.
    for iban in [t.creditor_account.as_deref(), part.account.as_deref()].into_iter().flatten() {
        if let Some(buyer) = store::buyer_by_virtual_iban(conn, iban).await? {
            return Ok(Ok(Decision {
                rule: Rule::VirtualIban,
                buyer,
                targets: Vec::new(),
                explanation: format!("paid to the buyer's virtual IBAN {iban}"),
            }));
        }
    }
    // 4. Our own direct debits: the end-to-end id of a collection, or a mandate reference.
    if let Some(d) = by_direct_debit(conn, t, scope).await? {
        return Ok(Ok(d));
    }
    // 5. The amount of exactly one unpaid invoice of a buyer of the payer's name.
    let names: Vec<String> = [t.debtor_name.as_deref(), t.ultimate_debtor.as_deref()]
        .into_iter()
        .flatten()
        .map(matching::name_key)
        .collect();
    if names.iter().any(|n| !n.is_empty()) {
        let found = store::unpaid_with_total(conn, &part.currency, part.amount, scope, 50).await?;
        let hits: Vec<_> = found.iter().filter(|(_, _, name)| names.contains(&matching::name_key(name))).collect();
        if let [(capture, buyer, name)] = hits.as_slice() {
            return Ok(Ok(Decision {
                rule: Rule::AmountAndName,
                buyer: *buyer,
                targets: vec![*capture],
                explanation: format!("the amount is exactly what {name} owes on one invoice"),
            }));
        }
        if hits.len() > 1 {
            return Ok(Err(format!("{} invoices of buyers of that name are open with this amount", hits.len())));
        }
    }
    Ok(Err("no invoice reference, virtual IBAN, direct debit or payer name and amount matched".into()))
}

async fn by_references(
    conn: &mut impl AsExec,
    refs: &[String],
    scope: Option<PspId>,
    rule: Rule,
) -> Result<Option<Decision>, OrderError> {
    if refs.is_empty() {
        return Ok(None);
    }
    let found = store::captures_by_reference(conn, refs).await?;
    // In the order the references were found, within scope, of the first buyer named. A
    // reference that names more than one invoice (references issued before they were drawn from
    // random bits could repeat) decides nothing.
    let mut hits: Vec<(String, CaptureId, BuyerId)> = Vec::new();
    for r in refs {
        if found.iter().filter(|f| f.3 == *r).count() > 1 {
            continue;
        }
        for (id, psp, buyer, reference) in &found {
            if reference == r && scope.is_none_or(|p| p == *psp) && hits.first().is_none_or(|h| h.2 == *buyer) {
                hits.push((r.clone(), *id, *buyer));
            }
        }
    }
    let Some(first) = hits.first() else { return Ok(None) };
    let where_ = if rule == Rule::StructuredReference { "structured remittance" } else { "remittance text" };
    let list = hits.iter().map(|h| h.0.as_str()).collect::<Vec<_>>().join(", ");
    Ok(Some(Decision {
        rule,
        buyer: first.2,
        targets: hits.iter().map(|h| h.1).collect(),
        explanation: format!("the {where_} names {list}"),
    }))
}

async fn by_direct_debit(
    conn: &mut impl AsExec,
    t: &TxDetails,
    scope: Option<PspId>,
) -> Result<Option<Decision>, OrderError> {
    if let Some(e2e) = &t.end_to_end_id
        && let Some((capture, psp, buyer)) = crate::store::direct_debits::by_end_to_end(conn, e2e).await?
        && scope.is_none_or(|p| p == psp)
    {
        return Ok(Some(Decision {
            rule: Rule::DirectDebit,
            buyer,
            targets: vec![capture],
            explanation: format!("our direct debit {e2e}"),
        }));
    }
    if let Some(m) = &t.mandate_id
        && let Some(buyer) = crate::store::direct_debits::buyer_of_mandate(conn, m, scope).await?
    {
        return Ok(Some(Decision {
            rule: Rule::DirectDebit,
            buyer,
            targets: Vec::new(),
            explanation: format!("collected under our mandate {m}"),
        }));
    }
    Ok(None)
}

/// What [`apply`] booked.
#[derive(Debug, Clone, Default)]
pub struct Booking {
    pub allocations: Vec<(CaptureId, i64, i64)>,
    pub credit: i64,
    pub psp_id: Option<PspId>,
}

/// Books payment `p` (recorded, not yet settled, in state `from`) as `d` decides: locks the
/// invoices, brings their default interest up to today, spreads the amount (charges first,
/// oldest due first), settles what it pays in full, and posts the ledger entry. What is left is
/// the buyer's credit.
pub async fn apply(
    s: &Services,
    tx: &mut Tx,
    p: &PaymentRow,
    from: &str,
    d: &Decision,
    source: Source,
    scope: Option<PspId>,
) -> Result<Booking, OrderError> {
    let mut rows = if d.targets.is_empty() {
        captures_store::unpaid_of_buyer(tx, d.buyer, &p.currency, scope).await?
    } else {
        captures_store::lock_many(tx, &d.targets).await?
    };
    rows.retain(|c| c.is_unpaid() && c.currency == p.currency && c.buyer_id == d.buyer);
    // A virtual-IBAN payment of exactly one invoice's total pays that invoice.
    let mut explanation = d.explanation.clone();
    if d.targets.is_empty() {
        let exact: Vec<&CaptureRow> =
            rows.iter().filter(|c| c.outstanding() + c.dunning_charges() == p.amount).collect();
        if let [one] = exact.as_slice() {
            explanation.push_str(&format!(", with the amount of invoice {}", one.external_invoice_number));
            let id = one.id;
            rows.retain(|c| c.id == id);
        }
    }
    // Interest that runs is charged up to today before the payment is spread — or up to the
    // pay-by date of the notices whose totals the payment pays.
    let through = super::dunning::interest_through_for_payment(s, tx, &rows, p.amount).await?;
    let mut current = Vec::with_capacity(rows.len());
    for (c, through) in rows.into_iter().zip(through) {
        if let Some(through) = through {
            let at = s.now_for(tx, c.psp_id).await?;
            super::dunning::on_settlement_change_through(s, tx, &c, &c.state, at, through).await?;
            let fresh =
                captures_store::get_capture(tx, c.psp_id, c.id, false).await?.ok_or(OrderError::NotFound("capture"))?;
            current.push(fresh);
        } else {
            current.push(c);
        }
    }
    let open: Vec<OpenInvoice> = current
        .iter()
        .map(|c| OpenInvoice {
            id: c.id.0,
            due: c.due_date.parse().unwrap_or_default(),
            charges: c.dunning_charges(),
            principal: c.outstanding(),
        })
        .collect();
    let (allocations, credit) = matching::allocate(p.amount, &open);
    let mut out = Booking { credit, ..Booking::default() };
    let mut applied = Applied { credit, ..Applied::default() };
    for a in &allocations {
        let Some(c) = current.iter().find(|c| c.id.0 == a.invoice) else { continue };
        let at = s.now_for(tx, c.psp_id).await?;
        let paid_bank = c.paid_bank + a.principal;
        let state = capture_state(c.gross, c.refunded + c.charged_back, c.paid_direct, paid_bank, &c.state);
        if !captures_store::apply_payment(tx, c, a.charges, a.principal, state, at.now).await? {
            return Err(conflict("the invoice changed meanwhile; retry"));
        }
        store::insert_allocation(tx, p.id, c.id, a.charges, a.principal);
        crate::store::portal::end_claims_by_payment(tx, &[(c.id, p.id)], at.now);
        applied.charges += a.charges;
        applied.principal += a.principal;
        out.allocations.push((c.id, a.charges, a.principal));
        out.psp_id = out.psp_id.or(Some(c.psp_id));
        let after =
            captures_store::get_capture(tx, c.psp_id, c.id, false).await?.ok_or(OrderError::NotFound("capture"))?;
        if state == "paid" {
            super::dunning::on_settlement_change(s, tx, &after, state, at).await?;
            events::append(
                tx,
                c.psp_id,
                &Event::Capture(CaptureEventKind::Paid, CaptureEventData { capture_id: c.id }),
                at,
            )
            .await?;
        }
        let ev = PaymentEvent {
            payment_id: p.id,
            capture_id: c.id,
            order_id: c.order_id,
            currency: c.currency.clone(),
            amount: a.charges + a.principal,
            charges: a.charges,
            principal: a.principal,
            matched_by: d.rule.as_str().into(),
            outstanding: after.outstanding(),
            return_reason: None,
        };
        events::append(tx, c.psp_id, &Event::Payment(PaymentEventKind::Received, ev), at).await?;
        let facts = super::messages::invoice_facts(s, tx, &after).await?;
        let booked = Booked {
            amount: a.charges + a.principal,
            charges: a.charges,
            still_owed: after.outstanding() + after.dunning_charges(),
        };
        queue_payment_received(s, tx, &facts, p.id, booked, at);
        if state == "paid" {
            settle_order(s, tx, c.psp_id, c.order_id).await?;
        }
    }
    if credit > 0 {
        explanation.push_str(&format!("; {credit} more than owed became the buyer's credit"));
    }
    let entry = match source {
        Source::Bank => ledger::bank_payment(d.buyer, applied),
        Source::Unapplied => ledger::unapplied_assignment(d.buyer, applied),
    }
    .map_err(corrupt)?;
    let now = time_of(s, tx, out.psp_id.or(scope)).await?.now;
    journal::post(tx, &entry, &p.currency, p.id, now).await?;
    store::settle_payment(
        tx,
        p.id,
        from,
        "matched",
        out.psp_id.or(scope),
        Some(d.buyer),
        Some(d.rule.as_str()),
        &explanation,
        credit,
        now,
    );
    Ok(out)
}

/// Holds payment `p` in the unmatched queue: the money is unapplied cash until an operator
/// assigns or returns it.
pub async fn hold(
    s: &Services,
    tx: &mut Tx,
    p: &PaymentRow,
    why: &str,
    scope: Option<PspId>,
) -> Result<(), OrderError> {
    let now = time_of(s, tx, scope).await?.now;
    let entry = ledger::unapplied_receipt(p.amount).map_err(corrupt)?;
    journal::post(tx, &entry, &p.currency, p.id, now).await?;
    store::settle_payment(tx, p.id, "unmatched", "unmatched", scope, None, None, why, 0, now);
    Ok(())
}

/// Records a payment of `part` under `key` and books it; `None` if it was booked before.
pub async fn receive(
    s: &Services,
    tx: &mut Tx,
    entry_id: uuid::Uuid,
    key: String,
    part: &Part,
    scope: Option<PspId>,
) -> Result<Option<PaymentView>, OrderError> {
    // A sandbox payment is on its PSP's clock; a statement's, on the deployment's.
    let now = time_of(s, tx, scope).await?.now;
    let t = &part.tx;
    let row = PaymentRow {
        id: uuid::Uuid::now_v7(),
        payment_key: key,
        entry_id,
        psp_id: scope,
        buyer_id: None,
        currency: part.currency.clone(),
        amount: part.amount,
        debtor_name: t.debtor_name.clone().or(t.ultimate_debtor.clone()),
        debtor_iban: t.debtor_account.clone(),
        creditor_iban: t.creditor_account.clone().or(part.account.clone()),
        reference: (!t.structured_refs.is_empty()).then(|| t.structured_refs.join(" ")),
        remittance: (!t.unstructured.is_empty()).then(|| t.unstructured.join(" ")),
        end_to_end_id: t.end_to_end_id.clone(),
        mandate_id: t.mandate_id.clone(),
        booking_date: part.booking_date.clone(),
        state: "unmatched".into(),
        rule: None,
        explanation: None,
        credit: 0,
        created_at: now,
        updated_at: now,
    };
    if row.amount <= 0 {
        return Ok(None);
    }
    if !store::claim_payment(tx, &row).await? {
        return Ok(None);
    }
    match decide(s, tx, part, scope).await? {
        Ok(d) => {
            let applied = apply(s, tx, &row, "unmatched", &d, Source::Bank, scope).await?;
            if d.rule == Rule::DirectDebit
                && let Some(e2e) = &t.end_to_end_id
            {
                let at = time_of(s, tx, applied.psp_id).await?;
                crate::store::direct_debits::mark_collected(tx, e2e, row.id, at.now).await?;
            }
            Ok(Some(view_applied(&row, &d, &applied)))
        }
        Err(why) => {
            hold(s, tx, &row, &why, scope).await?;
            Ok(Some(PaymentView::of(&row, "unmatched", None, Some(why), Vec::new())))
        }
    }
}

/// A payment as operators and PSPs see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: uuid::Uuid,
    /// `matched`, `unmatched`, `refunded` (sent back to the payer) or `returned` (a collection
    /// that came back).
    pub state: String,
    pub currency: String,
    pub amount: i64,
    pub debtor_name: Option<String>,
    pub debtor_iban: Option<String>,
    pub creditor_iban: Option<String>,
    /// Structured creditor references, as the bank gave them.
    pub reference: Option<String>,
    /// The free remittance text.
    pub remittance: Option<String>,
    pub end_to_end_id: Option<String>,
    pub booking_date: Option<String>,
    /// How it was matched (see `payment.received`), when it was.
    pub matched_by: Option<String>,
    /// Why it matched, or why it could not be.
    pub explanation: Option<String>,
    /// What it paid on each invoice.
    pub allocations: Vec<AllocationView>,
    /// The part that became the buyer's credit (an over-payment).
    pub credit: i64,
    pub created_at: DateTime<Utc>,
}

/// What a payment paid on one invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AllocationView {
    pub capture_id: CaptureId,
    /// Towards dunning fees and interest.
    pub charges: i64,
    /// Towards the invoice amount.
    pub principal: i64,
}

impl PaymentView {
    fn of(
        r: &PaymentRow,
        state: &str,
        rule: Option<&str>,
        explanation: Option<String>,
        allocations: Vec<(CaptureId, i64, i64)>,
    ) -> PaymentView {
        PaymentView {
            payment_id: r.id,
            state: state.into(),
            currency: r.currency.clone(),
            amount: r.amount,
            debtor_name: r.debtor_name.clone(),
            debtor_iban: r.debtor_iban.clone(),
            creditor_iban: r.creditor_iban.clone(),
            reference: r.reference.clone(),
            remittance: r.remittance.clone(),
            end_to_end_id: r.end_to_end_id.clone(),
            booking_date: r.booking_date.clone(),
            matched_by: rule.map(str::to_owned),
            explanation,
            allocations: allocations
                .into_iter()
                .map(|(capture_id, charges, principal)| AllocationView { capture_id, charges, principal })
                .collect(),
            credit: r.credit,
            created_at: r.created_at,
        }
    }
}

fn view_applied(r: &PaymentRow, d: &Decision, a: &Booking) -> PaymentView {
    let mut v =
        PaymentView::of(r, "matched", Some(d.rule.as_str()), Some(d.explanation.clone()), a.allocations.clone());
    v.credit = a.credit;
    v
}

/// A stored payment with its allocations.
pub async fn view(conn: &mut impl AsExec, r: PaymentRow) -> Result<PaymentView, OrderError> {
    let allocations = store::allocations(conn, r.id).await?;
    Ok(PaymentView::of(&r, &r.state, r.rule.as_deref(), r.explanation.clone(), allocations))
}

/// `GET /admin/v1/unmatched-payments`: what could not be matched, newest first.
pub async fn unmatched(
    s: &Services,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<(Vec<PaymentView>, bool), OrderError> {
    let mut conn = s.db.conn().await?;
    let mut rows = store::list_payments(&mut conn, Some("unmatched"), None, starting_after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view(&mut conn, r).await?);
    }
    Ok((out, more))
}

/// One payment (operator), or one of a PSP's own (sandbox).
pub async fn get(s: &Services, id: uuid::Uuid, psp: Option<PspId>) -> Result<PaymentView, OrderError> {
    let mut conn = s.db.conn().await?;
    let r = store::get_payment(&mut conn, id, psp, false).await?.ok_or(OrderError::NotFound("payment"))?;
    view(&mut conn, r).await
}

/// `POST /admin/v1/unmatched-payments/{id}/assign`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// The invoice it pays; what is more than the invoice owes becomes its buyer's credit.
    #[schema(required = true)]
    pub capture_id: Option<CaptureId>,
}

/// An operator assigns an unmatched payment to an invoice.
pub async fn assign(s: &Services, id: uuid::Uuid, input: AssignInput) -> Result<PaymentView, OrderError> {
    let mut v = Violations::new();
    let capture_id = v.required("capture_id", input.capture_id);
    v.finish().map_err(OrderError::Invalid)?;
    let Some(capture_id) = capture_id else { return Err(OrderError::Invalid(Vec::new())) };
    let mut tx = s.db.begin().await?;
    let p = store::get_payment(&mut tx, id, None, true).await?.ok_or(OrderError::NotFound("payment"))?;
    if p.state != "unmatched" {
        return Err(conflict(format!("the payment is {}, not unmatched", p.state)));
    }
    let psp =
        captures_store::psp_of(&mut tx, capture_id).await?.ok_or_else(|| invalid("capture_id", "no such capture"))?;
    let c =
        captures_store::get_capture(&mut tx, psp, capture_id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    if c.currency != p.currency {
        return Err(invalid("capture_id", "the invoice is in another currency than the payment"));
    }
    if !c.is_unpaid() {
        return Err(conflict(format!("the invoice is {}", c.state)));
    }
    let d = Decision {
        rule: Rule::Operator,
        buyer: c.buyer_id,
        targets: vec![capture_id],
        explanation: format!("assigned by an operator to invoice {}", c.external_invoice_number),
    };
    let applied = apply(s, &mut tx, &p, "unmatched", &d, Source::Unapplied, None).await?;
    tx.commit().await?;
    tracing::info!(payment_id = %id, capture_id = %capture_id, "unmatched payment assigned");
    Ok(view_applied(&p, &d, &applied))
}

/// `POST /v1/sandbox/payments`: a buyer's transfer as a bank statement would bring it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxPaymentInput {
    /// The account paid into: the buyer's virtual IBAN from the payment instructions.
    #[schema(required = true, example = "DE12500105170648489890")]
    pub iban: Option<String>,
    #[schema(required = true)]
    pub amount: Option<SandboxAmount>,
    /// What the buyer wrote: the RF reference, or any free text (searched for one).
    pub reference: Option<String>,
    /// Who paid.
    pub debtor_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxAmount {
    #[schema(required = true, example = "EUR")]
    pub currency: Option<String>,
    /// Minor units.
    #[schema(required = true, example = 11900)]
    pub value: Option<i64>,
}

/// Books a sandbox payment through the same matching as a statement entry, among the PSP's own
/// invoices, in `tx` (the caller commits it with the idempotent response).
pub async fn sandbox_payment(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    input: SandboxPaymentInput,
) -> Result<PaymentView, OrderError> {
    let mut v = Violations::new();
    let iban = v.text("iban", input.iban, 34).map(|i| crate::domain::iban::normalize(&i));
    let (currency, value) = match v.required("amount", input.amount) {
        Some(a) => (v.text("amount.currency", a.currency, 3), v.required("amount.value", a.value)),
        None => (None, None),
    };
    if let Some(c) = &currency
        && !s.config.currencies.contains(c)
    {
        v.add("amount.currency", "currency must be one netterms serves");
    }
    if value.is_some_and(|x| !(1..=1_000_000_000_000).contains(&x)) {
        v.add("amount.value", "value must be 1 to 1000000000000");
    }
    let reference = v.opt_text("reference", input.reference, 140);
    let debtor_name = v.opt_text("debtor_name", input.debtor_name, 140);
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(iban), Some(currency), Some(amount)) = (iban, currency, value) else {
        return Err(OrderError::Invalid(Vec::new()));
    };
    let reference_norm = reference.as_deref().map(crate::domain::iban::normalize);
    let tx_details = TxDetails {
        amount: Some(amount),
        currency: Some(currency.clone()),
        creditor_account: Some(iban),
        debtor_name,
        structured_refs: reference_norm.filter(|r| matching::is_rf(r)).into_iter().collect(),
        unstructured: reference.into_iter().collect(),
        ..TxDetails::default()
    };
    let at = s.now_for(tx, psp_id).await?;
    let part = Part {
        amount,
        currency,
        tx: tx_details,
        booking_date: Some(at.now.date_naive().to_string()),
        ..Part::default()
    };
    let key = format!("sandbox:{}", uuid::Uuid::now_v7());
    let entry_id = sandbox_entry(s, tx, &key, &part).await?;
    receive(s, tx, entry_id, key, &part, Some(psp_id)).await?.ok_or_else(|| corrupt("new payment"))
}

/// The PSP time of `psp_id`, or the deployment's when there is none.
pub async fn time_of(s: &Services, conn: &mut impl AsExec, psp: Option<PspId>) -> Result<PspTime, OrderError> {
    Ok(match psp {
        Some(p) => s.now_for(conn, p).await?,
        None => {
            let now = s.clock.now();
            PspTime { now, wall: now }
        }
    })
}

/// `POST /admin/v1/unmatched-payments/{id}/refund`: where to send the money back. Both default
/// to the payer's account and name as the statement gave them.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    /// The payer's IBAN (required when the statement named none).
    pub iban: Option<String>,
    /// The payer's name (required when the statement named none).
    pub name: Option<String>,
}

/// A credit transfer netterms sends back (its pain.001 at `GET /admin/v1/credit-transfers/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditTransferView {
    pub credit_transfer_id: uuid::Uuid,
    /// `unmatched_refund` (an unmatched payment sent back) or `credit_refund` (a buyer's credit).
    pub kind: String,
    pub payment_id: Option<uuid::Uuid>,
    pub buyer_id: Option<BuyerId>,
    pub currency: String,
    pub amount: i64,
    pub creditor_name: String,
    pub creditor_iban: String,
    pub remittance: String,
    /// `EndToEndId` of the transfer.
    pub end_to_end_id: String,
    pub created_at: DateTime<Utc>,
}

/// Sends an unmatched payment back to the payer: a pain.001 credit transfer from netterms'
/// account, the unapplied cash paid out.
pub async fn refund_unmatched(
    s: &Services,
    id: uuid::Uuid,
    input: RefundInput,
) -> Result<CreditTransferView, OrderError> {
    let mut tx = s.db.begin().await?;
    let p = store::get_payment(&mut tx, id, None, true).await?.ok_or(OrderError::NotFound("payment"))?;
    if p.state != "unmatched" {
        return Err(conflict(format!("the payment is {}, not unmatched", p.state)));
    }
    let mut v = Violations::new();
    let given = v.opt_text("iban", input.iban, 34).or(p.debtor_iban.clone());
    let iban = payee_iban(
        &mut v,
        given,
        "the statement names no account of the payer: give the iban to send the money back to",
    );
    let name = v.opt_text("name", input.name, 70).or(p.debtor_name.clone());
    if name.is_none() {
        v.add("name", "the statement names no payer: give the name to send the money back to");
    }
    if p.currency != "EUR" {
        v.add("", "only euro payments can be sent back by SEPA credit transfer");
    }
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(iban), Some(name)) = (iban, name) else { return Err(OrderError::Invalid(Vec::new())) };
    let now = time_of(s, &mut tx, p.psp_id).await?.now;
    let transfer_id = uuid::Uuid::now_v7();
    let remittance = format!(
        "Rueckzahlung Ihrer Zahlung vom {} {}",
        p.booking_date.clone().unwrap_or_default(),
        p.reference.clone().or(p.remittance.clone()).unwrap_or_default()
    );
    let (row, e2e) = credit_transfer(
        s,
        transfer_id,
        "unmatched_refund",
        Some(p.id),
        None,
        &p.currency,
        p.amount,
        name,
        iban,
        &remittance,
        now,
    );
    store::insert_credit_transfer(&mut tx, &row);
    let entry = ledger::unapplied_refund(p.amount).map_err(corrupt)?;
    journal::post(&mut tx, &entry, &p.currency, transfer_id, now).await?;
    store::move_payment(&mut tx, p.id, "unmatched", "refunded", now);
    tx.commit().await?;
    tracing::info!(payment_id = %id, credit_transfer_id = %transfer_id, "unmatched payment sent back");
    Ok(transfer_view(row, e2e))
}

/// The body of `POST /admin/v1/buyers/{buyer_id}/credit-refunds`: what of a buyer's credit to
/// send back, and where.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRefundInput {
    /// Minor units; default: the whole credit.
    pub amount: Option<i64>,
    /// Default `EUR` (SEPA credit transfers are in euro).
    pub currency: Option<String>,
    /// The buyer's IBAN; default: the account it last paid from.
    pub iban: Option<String>,
    /// The account holder; default: the name it last paid under, else the buyer's name.
    pub name: Option<String>,
}

/// A buyer's credit in one currency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuyerCredit {
    pub buyer_id: BuyerId,
    pub currency: String,
    /// What netterms owes the buyer back (minor units): over-payments, refunds and disputes of
    /// paid invoices, less what was sent back.
    pub amount: i64,
}

/// Buyer `buyer`'s credit in `currency`.
pub async fn buyer_credit(s: &Services, buyer: BuyerId, currency: &str) -> Result<BuyerCredit, OrderError> {
    let mut conn = s.db.conn().await?;
    if !store::buyer_exists(&mut conn, buyer).await? {
        return Err(OrderError::NotFound("buyer"));
    }
    let amount = store::buyer_credit(&mut conn, buyer, currency).await?;
    Ok(BuyerCredit { buyer_id: buyer, currency: currency.to_owned(), amount })
}

/// Sends (part of) a buyer's credit back: a pain.001 credit transfer from netterms' account to
/// the buyer's, booked as `credit_refund` (buyer credit against bank cash). Never more than the
/// credit, also when two refunds race (the buyer is locked while its credit is read and booked).
pub async fn refund_credit(
    s: &Services,
    buyer: BuyerId,
    input: CreditRefundInput,
) -> Result<CreditTransferView, OrderError> {
    refund_credit_written(s, buyer, input, |_, _| Ok::<(), OrderError>(())).await
}

/// [`refund_credit`], handing the pain.001 to `write` before the transfer is booked: a file that
/// could not be written books nothing.
pub async fn refund_credit_written<E: From<OrderError>>(
    s: &Services,
    buyer: BuyerId,
    input: CreditRefundInput,
    write: impl FnOnce(&CreditTransferView, &str) -> Result<(), E>,
) -> Result<CreditTransferView, E> {
    let mut v = Violations::new();
    let currency = input.currency.unwrap_or_else(|| "EUR".into());
    if currency != "EUR" {
        v.add("currency", "only euro credit can be sent back by SEPA credit transfer");
    }
    if input.amount.is_some_and(|a| a <= 0) {
        v.add("amount", "amount must be positive");
    }
    let iban = v.opt_text("iban", input.iban, 34);
    let name = v.opt_text("name", input.name, 70);
    v.finish().map_err(OrderError::Invalid)?;
    let mut tx = s.db.begin().await.map_err(OrderError::from)?;
    let buyer_name =
        store::lock_buyer(&mut tx, buyer).await.map_err(OrderError::from)?.ok_or(OrderError::NotFound("buyer"))?;
    let credit = store::buyer_credit(&mut tx, buyer, &currency).await.map_err(OrderError::from)?;
    if credit <= 0 {
        return Err(conflict("the buyer has no credit to send back").into());
    }
    let amount = input.amount.unwrap_or(credit);
    let mut v = Violations::new();
    if amount > credit {
        v.add("amount", format!("amount is more than the buyer's credit ({credit})"));
    }
    let last = store::last_payer_account(&mut tx, buyer).await.map_err(OrderError::from)?;
    let iban = payee_iban(
        &mut v,
        iban.or(last.as_ref().map(|(i, _)| i.clone())),
        "no account of the buyer is known: give the iban to send the credit to",
    );
    v.finish().map_err(OrderError::Invalid)?;
    let Some(iban) = iban else { return Err(OrderError::Invalid(Vec::new()).into()) };
    let name = name.or(last.and_then(|(_, n)| n)).unwrap_or(buyer_name);
    // A buyer belongs to no one PSP: the deployment's clock.
    let now = s.clock.now();
    let transfer_id = uuid::Uuid::now_v7();
    let remittance = "Rueckzahlung Ihres Guthabens bei netterms".to_owned();
    let (row, e2e) = credit_transfer(
        s,
        transfer_id,
        "credit_refund",
        None,
        Some(buyer),
        &currency,
        amount,
        name,
        iban,
        &remittance,
        now,
    );
    store::insert_credit_transfer(&mut tx, &row);
    let entry = ledger::credit_refund(buyer, amount).map_err(corrupt)?;
    journal::post(&mut tx, &entry, &currency, transfer_id, now).await.map_err(OrderError::from)?;
    let xml = row.xml.clone();
    let view = transfer_view(row, e2e);
    write(&view, &xml)?;
    tx.commit().await.map_err(OrderError::from)?;
    tracing::info!(%buyer, credit_transfer_id = %transfer_id, "buyer credit sent back");
    Ok(view)
}

/// The account a transfer goes to: given (or known), and a valid IBAN; else a violation of `iban`.
fn payee_iban(v: &mut Violations, iban: Option<String>, missing: &str) -> Option<String> {
    let Some(i) = iban else {
        v.add("iban", missing);
        return None;
    };
    match crate::domain::iban::validate(&i) {
        Ok(i) => Some(i),
        Err(e) => {
            v.add("iban", format!("iban is not valid: {e}"));
            None
        }
    }
}

/// Records the synthetic statement entry a sandbox booking (a simulated transfer, a collection
/// the simulated bank books) comes in under.
pub async fn sandbox_entry(s: &Services, tx: &mut Tx, key: &str, part: &Part) -> Result<uuid::Uuid, OrderError> {
    let now = s.clock.now();
    let statement = uuid::Uuid::now_v7();
    let row =
        store::StatementRow { id: statement, kind: "sandbox", version: "sandbox", digest: key, source: "sandbox" };
    store::insert_statement(tx, &row, now);
    let id = uuid::Uuid::now_v7();
    let row = store::NewEntry {
        id,
        key,
        statement_id: statement,
        account: part.tx.creditor_account.as_deref(),
        currency: &part.currency,
        amount: part.amount,
        credit: true,
        status: "BOOK",
        state: "booked",
        booking_date: part.booking_date.clone(),
        details: None,
        note: Some("sandbox payment".into()),
    };
    if !store::claim_entry(tx, &row, now).await? {
        return Err(OrderError::Conflict("the sandbox payment exists already".into()));
    }
    Ok(id)
}

/// A credit transfer from netterms' account (its pain.001, executed the next day) as stored.
#[allow(clippy::too_many_arguments)]
fn credit_transfer(
    s: &Services,
    id: uuid::Uuid,
    kind: &str,
    payment_id: Option<uuid::Uuid>,
    buyer_id: Option<BuyerId>,
    currency: &str,
    amount: i64,
    name: String,
    iban: String,
    remittance: &str,
    now: DateTime<Utc>,
) -> (store::CreditTransferRow, String) {
    let e2e = format!("NT{}", id.simple());
    let debtor = crate::domain::sepa::Party {
        name: s.config.creditor_name.clone(),
        iban: s.config.bank_iban.clone(),
        bic: Some(s.config.bank_bic.clone()),
    };
    let transfer = crate::domain::sepa::Transfer {
        end_to_end_id: e2e.clone(),
        amount,
        creditor: crate::domain::sepa::Party { name: name.clone(), iban: iban.clone(), bic: None },
        remittance: remittance.to_owned(),
    };
    let xml = crate::domain::sepa::pain001(
        &e2e,
        now,
        &debtor,
        now.date_naive() + chrono::Duration::days(1),
        std::slice::from_ref(&transfer),
    );
    let row = store::CreditTransferRow {
        id,
        kind: kind.into(),
        payment_id,
        buyer_id,
        currency: currency.to_owned(),
        amount,
        creditor_name: name,
        creditor_iban: iban,
        remittance: crate::domain::sepa::sepa_text(remittance, 140),
        xml,
        created_at: now,
    };
    (row, e2e)
}

fn transfer_view(row: store::CreditTransferRow, e2e: String) -> CreditTransferView {
    CreditTransferView {
        credit_transfer_id: row.id,
        kind: row.kind,
        payment_id: row.payment_id,
        buyer_id: row.buyer_id,
        currency: row.currency,
        amount: row.amount,
        creditor_name: row.creditor_name,
        creditor_iban: row.creditor_iban,
        remittance: row.remittance,
        end_to_end_id: e2e,
        created_at: row.created_at,
    }
}

/// A credit transfer's pain.001 XML.
pub async fn credit_transfer_xml(s: &Services, id: uuid::Uuid) -> Result<String, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::get_credit_transfer(&mut conn, id).await?.ok_or(OrderError::NotFound("credit transfer"))?.xml)
}
