//! Invoices and what happens to them: captures (with payment instructions and fees), refunds
//! (credit notes), payments made to the merchant directly, longer terms, and lateness. Each use
//! case changes its row with a compare-and-set and posts its ledger entry in the same transaction,
//! with its event.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::Services;
use super::orders::{OrderError, Outcome, conflict, invalid, merchant_terms, order_event, settle_order, within_terms};
use crate::clock::PspTime;
use crate::domain::events::{
    CaptureCreatedEvent, CaptureEventData, CaptureEventKind, CaptureUpdatedEvent, Event, OrderEventKind,
    RefundCreatedEvent,
};
use crate::domain::iban;
use crate::domain::ids::{CaptureId, OrderId, PspId, RefundId};
use crate::domain::ledger;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{Amount, AmountInput, LineItem, LineItemInput, OrderState, validate_line_items};
use crate::domain::psp::FeeBand;
use crate::domain::validate::{self, Violations};
use crate::store::captures::{self as store, CaptureRow, NewCapture, RefundRow};
use crate::store::{StoreError, Tx, events, ledger as journal, orders as orders_store};

use super::facts::BIC;

/// Where and how the buyer pays an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentInstructions {
    /// The buyer's virtual IBAN.
    pub iban: String,
    pub bic: String,
    /// Structured creditor reference (ISO 11649, `RF…`) to quote with the transfer.
    pub reference: String,
    pub due_date: NaiveDate,
    /// What the buyer still owes (minor units).
    pub amount: i64,
    pub currency: String,
}

/// A capture = an invoice to the buyer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Capture {
    pub capture_id: CaptureId,
    pub order_id: OrderId,
    /// `open`, `late`, `paid`, `canceled` or `collection` (handed over to collection, unpaid).
    pub state: String,
    pub external_invoice_number: String,
    pub invoice_url: Option<String>,
    pub amount: Amount,
    /// netterms' fee on this capture (minor units).
    pub fee: i64,
    pub refunded: i64,
    /// Taken off the invoice by chargebacks of disputes (the buyer owes it no longer; the PSP's
    /// payout bears it).
    pub charged_back: i64,
    /// Paid by the buyer directly to the merchant (confirm-payment).
    pub paid_to_merchant: i64,
    /// Principal paid by the buyer to netterms (bank transfer or direct debit).
    pub paid: i64,
    pub outstanding: i64,
    /// What the buyer owes on this invoice: the outstanding amount plus dunning fees and default
    /// interest charged and not waived.
    pub total_due: i64,
    pub duration: i64,
    pub due_date: NaiveDate,
    pub dunning: DunningView,
    pub payment_instructions: PaymentInstructions,
    pub shipping_info: Option<serde_json::Value>,
    pub line_items: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where an invoice stands in dunning (SPEC §9.3).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DunningView {
    /// The dunning level reached (0: none yet).
    pub level: i64,
    /// The date its next reminder, level or hand-over is due (on the PSP's clock), if any.
    pub next_step_on: Option<NaiveDate>,
    /// Paused by an operator until then.
    pub paused_until: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    /// Flat fees charged (minor units).
    pub fees: i64,
    /// Default interest charged (minor units).
    pub interest: i64,
    /// Fees and interest waived when the invoice was settled by a refund or a direct payment.
    pub waived: i64,
    /// Fees and interest the buyer paid.
    pub paid: i64,
    /// When the claim was handed over to collection.
    pub collection_at: Option<DateTime<Utc>>,
}

fn view(r: &CaptureRow) -> Result<Capture, StoreError> {
    let corrupt = |w: &str| StoreError::Corrupt(format!("captures.{w}"));
    let due_date: NaiveDate = r.due_date.parse().map_err(|_| corrupt("due_date"))?;
    let currency = Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?;
    Ok(Capture {
        capture_id: r.id,
        order_id: r.order_id,
        state: if r.collection_at.is_some() && r.is_unpaid() { "collection".into() } else { r.state.clone() },
        external_invoice_number: r.external_invoice_number.clone(),
        invoice_url: r.invoice_url.clone(),
        amount: Amount { currency, gross: r.gross, net: r.net, tax: r.tax },
        fee: r.fee,
        refunded: r.refunded,
        charged_back: r.charged_back,
        paid_to_merchant: r.paid_direct,
        paid: r.paid_bank,
        outstanding: r.outstanding(),
        total_due: r.outstanding() + r.dunning_charges(),
        duration: r.duration,
        due_date,
        dunning: DunningView {
            level: r.dunning_level,
            next_step_on: if r.is_unpaid() { r.next_dunning_on.as_deref().and_then(|d| d.parse().ok()) } else { None },
            // A settled invoice is dunned no more: no pause to show.
            paused_until: if r.is_unpaid() { r.dunning_paused_until } else { None },
            pause_reason: if r.is_unpaid() { r.dunning_pause_reason.clone() } else { None },
            fees: r.dunning_fees,
            interest: r.dunning_interest,
            waived: r.dunning_waived,
            paid: r.dunning_paid,
            collection_at: r.collection_at,
        },
        payment_instructions: PaymentInstructions {
            iban: r.virtual_iban.clone(),
            bic: BIC.into(),
            reference: r.payment_reference.clone(),
            due_date,
            amount: r.outstanding(),
            currency: r.currency.clone(),
        },
        shipping_info: r.shipping_info.as_deref().and_then(|s| serde_json::from_str(s).ok()),
        line_items: serde_json::from_str(&r.line_items).unwrap_or(json!([])),
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The body of `POST /v1/orders/{id}/captures`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CaptureInput {
    #[schema(required = true)]
    pub amount: Option<AmountInput>,
    /// The merchant's invoice number, unique per merchant.
    #[schema(required = true, example = "INV-2026-0042")]
    pub external_invoice_number: Option<String>,
    pub invoice_url: Option<String>,
    /// Carrier, tracking number, …: stored and shown as given.
    pub shipping_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// What this invoice bills (at most 100; line totals adding up to `amount` when given).
    pub line_items: Option<Vec<LineItemInput>>,
}

/// The body of `POST /v1/captures/{id}/refunds`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RefundInput {
    #[schema(required = true)]
    pub amount: Option<AmountInput>,
    /// The merchant's credit note number, unique per merchant. A retry with the same body answers
    /// the existing refund (200); another refund under this number is refused (409).
    #[schema(required = true, example = "CN-2026-0007")]
    pub external_credit_note_number: Option<String>,
    pub reason: Option<String>,
    /// What this credit note credits (at most 100; line totals adding up to `amount` when given).
    pub line_items: Option<Vec<LineItemInput>>,
}

/// A refund = a credit note.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Refund {
    pub refund_id: RefundId,
    pub capture_id: CaptureId,
    pub amount: Amount,
    /// The part the buyer had already paid, owed back to it and recovered from the PSP's payout.
    pub owed_to_buyer: i64,
    pub external_credit_note_number: Option<String>,
    pub reason: Option<String>,
    pub line_items: Vec<LineItem>,
    pub created_at: DateTime<Utc>,
    pub capture: Capture,
}

/// The body of `POST /v1/captures/{id}/confirm-payment`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ConfirmPaymentInput {
    /// Gross paid by the buyer to the merchant (minor units).
    #[schema(required = true)]
    pub amount: Option<i64>,
    /// The PSP's or merchant's id of this payment, unique per capture: a retry with the same id
    /// and amount answers the capture without recording the payment again. Required unless the
    /// request carries an `Idempotency-Key`.
    #[schema(example = "PAY-2026-0815")]
    pub external_payment_id: Option<String>,
}

/// The body of `POST /v1/captures/{id}/extend-duration`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ExtendInput {
    /// The new payment term in days, longer than the current one (at most 120).
    #[schema(required = true)]
    pub duration: Option<i64>,
}

/// An ISO 11649 creditor reference for a capture: its id's last 21 hex digits, which hold the
/// UUIDv7's random bits (the leading ones are a timestamp and a per-millisecond counter, and
/// repeated across invoices captured in the same millisecond by different threads).
pub fn rf_reference(id: CaptureId) -> String {
    let body = id.0.simple().to_string().to_ascii_uppercase();
    iban::with_check_digits("RF", &body[11..]).unwrap_or_default()
}

/// The fee on `gross` for a term of `duration` days: the PSP's rate (or its band's) plus the fixed fee.
fn fee(rate_bps: i64, fixed: i64, bands: &[FeeBand], gross: Money, duration: i64) -> Result<i64, OrderError> {
    let rate = bands.iter().find(|b| duration <= b.max_duration).map_or(rate_bps, |b| b.fee_rate_bps);
    let variable = gross.basis_points(rate).map_err(|_| invalid("amount", "amount out of range"))?;
    Ok(variable.minor.saturating_add(fixed).min(gross.minor))
}

/// Captures part or all of an order. The sum of captures never exceeds the authorized amount:
/// the order row's `UPDATE` checks it atomically.
pub async fn capture(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    order_id: OrderId,
    input: CaptureInput,
) -> Result<Capture, OrderError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let mut v = Violations::new();
    let amount =
        v.required("amount", input.amount).and_then(|a| a.validate(&mut v, "amount", &s.config.currencies, true));
    let number = v.text("external_invoice_number", input.external_invoice_number, 255);
    let url = v.opt_text("invoice_url", input.invoice_url, 2048);
    if let Some(u) = &url
        && let Err(e) = super::outbound::check_url(u, s.config.webhooks_may_reach_private())
    {
        v.add("invoice_url", format!("invoice_url {e}"));
    }
    let items = validate_line_items(&mut v, "line_items", input.line_items, &s.config.currencies, amount);
    let shipping = input.shipping_info.map(serde_json::Value::Object);
    if let Some(info) = &shipping {
        validate::json_value(&mut v, "shipping_info", info);
    }
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(amount), Some(number)) = (amount, number) else { return Err(OrderError::Invalid(Vec::new())) };
    // One statement checks and reserves the amount, locks the order and returns what the capture
    // needs; only when it refuses is the order read, to say why.
    let Some(reserved) =
        orders_store::reserve_capture(tx, psp_id, order_id, amount.gross, amount.currency.as_str(), &number, now)
            .await?
    else {
        let order =
            orders_store::get_order(tx, Some(psp_id), order_id, false).await?.ok_or(OrderError::NotFound("order"))?;
        let data = order.data()?;
        if amount.currency != data.amount.currency {
            return Err(invalid("amount.currency", "currency must be the order's"));
        }
        if store::invoice_number_taken(tx, order.merchant_id, &number).await? {
            return Err(OrderError::AlreadyExists(format!("the merchant already has an invoice numbered {number:?}")));
        }
        return Err(conflict(format!(
            "the order is {} with {} of {} captured and {} canceled: this capture does not fit",
            order.state, order.captured, data.amount.gross, order.canceled_amount
        )));
    };
    let buyer = reserved.buyer_id.ok_or_else(|| StoreError::Corrupt("captured order without buyer".into()))?;
    let bands: Vec<FeeBand> =
        serde_json::from_str(&reserved.fee_bands).map_err(|e| StoreError::Corrupt(format!("psps.fee_bands: {e}")))?;
    let fee = fee(
        reserved.fee_rate_bps,
        reserved.fee_fixed_minor,
        &bands,
        Money::new(amount.gross, amount.currency),
        reserved.duration,
    )?;
    let id = CaptureId::new();
    let due = (now + Duration::days(reserved.duration)).date_naive();
    // The policy and whom the payment information goes to came with the reservation: a capture
    // makes no other read while it holds the order (issue 20).
    let next_dunning_on = super::dunning::policy_of(s, reserved.dunning_policy.as_deref())?
        .next_step(due, 0, now.date_naive())
        .map(|(_, on)| on);
    let buyer_to_tell = super::messages::buyer_of(reserved.contact)?;
    let reference = rf_reference(id);
    let shipping = shipping.map(|v| v.to_string());
    let items = serde_json::to_value(&items).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store::insert_capture(
        tx,
        &NewCapture {
            id,
            order_id,
            psp_id,
            merchant_id: reserved.merchant_id,
            buyer_id: buyer,
            external_invoice_number: &number,
            invoice_url: url.as_deref(),
            currency: amount.currency.as_str(),
            gross: amount.gross,
            net: amount.net,
            tax: amount.tax,
            fee,
            duration: reserved.duration,
            due_date: due,
            next_dunning_on,
            payment_reference: &reference,
            shipping_info: shipping.as_deref(),
            line_items: &items.to_string(),
        },
        now,
    );
    if url.is_some() {
        // The merchant's invoice is fetched once from there (SPEC §9.4), unless uploaded first.
        super::merchant_documents::queue_fetch(tx, psp_id, id, at.wall);
    }
    let entry = ledger::capture(buyer, psp_id, amount.gross, fee).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    journal::post(tx, &entry, amount.currency.as_str(), id.0, now).await?;
    events::append(
        tx,
        psp_id,
        &Event::CaptureCreated(CaptureCreatedEvent { capture_id: id, order_id, gross: amount.gross }),
        at,
    )
    .await?;
    // The order's event only when its state changed: it was `created` before its first capture
    // (nothing captured yet), and a capture that ships the rest always changes it.
    if reserved.state == "shipped" || reserved.captured == amount.gross {
        let state = OrderState::parse(&reserved.state)
            .ok_or_else(|| StoreError::Corrupt(format!("orders.state {:?}", reserved.state)))?;
        let kind =
            if state == OrderState::Shipped { OrderEventKind::Shipped } else { OrderEventKind::PartiallyShipped };
        order_event(tx, psp_id, kind, order_id, reserved.merchant_id, state, at).await?;
    }
    // The capture, its ledger entry and events are deferred: they reach the database in one round
    // trip with the idempotent response, just before the commit.
    // The capture as stored, without reading it back.
    let row = CaptureRow {
        id,
        order_id,
        psp_id,
        merchant_id: reserved.merchant_id,
        buyer_id: buyer,
        external_invoice_number: number,
        invoice_url: url,
        currency: amount.currency.as_str().to_owned(),
        gross: amount.gross,
        net: amount.net,
        tax: amount.tax,
        fee,
        refunded: 0,
        paid_direct: 0,
        state: "open".into(),
        duration: reserved.duration,
        due_date: due.to_string(),
        payment_reference: reference,
        shipping_info: shipping,
        line_items: items.to_string(),
        created_at: now,
        updated_at: now,
        virtual_iban: reserved.virtual_iban.unwrap_or_default(),
        dunning_level: 0,
        dunning_stage: 0,
        next_dunning_on: next_dunning_on.map(|d| d.to_string()),
        last_dunning_on: None,
        dunning_paused_until: None,
        dunning_pause_reason: None,
        collection_at: None,
        dunning_fees: 0,
        dunning_interest: 0,
        dunning_waived: 0,
        interest_through: None,
        paid_bank: 0,
        dunning_paid: 0,
        disputes_open: 0,
        charged_back: 0,
    };
    let facts = super::messages::InvoiceFacts::of(s, &buyer_to_tell, &row)?;
    super::messages::queue_payment_information(s, tx, &facts, at);
    Ok(view(&row)?)
}

pub async fn get_capture(s: &Services, psp_id: PspId, id: CaptureId) -> Result<Capture, OrderError> {
    let mut conn = s.db.conn().await?;
    let row = store::get_capture(&mut conn, psp_id, id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    Ok(view(&row)?)
}

/// The payment information of an invoice as it is now, as PDF.
pub async fn payment_information_pdf(
    s: &Services,
    psp_id: PspId,
    id: CaptureId,
) -> Result<crate::documents::Rendered, OrderError> {
    let mut conn = s.db.conn().await?;
    let row = store::get_capture(&mut conn, psp_id, id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    let facts = super::messages::invoice_facts(s, &mut conn, &row).await?;
    drop(conn);
    let spec = super::documents::payment_information(&facts);
    let imprint = super::imprint::lines(&s.config, facts.buyer.locale);
    crate::documents::render_with(&spec, &imprint).map_err(|e| OrderError::Store(StoreError::Corrupt(e.to_string())))
}

/// The state a capture has with these amounts (`paid_bank`: principal paid to netterms).
pub(crate) fn capture_state(
    gross: i64,
    refunded: i64,
    paid_direct: i64,
    paid_bank: i64,
    current: &str,
) -> &'static str {
    if gross - refunded - paid_direct - paid_bank > 0 {
        if current == "late" { "late" } else { "open" }
    } else if paid_direct > 0 || paid_bank > 0 {
        "paid"
    } else {
        "canceled"
    }
}

/// Writes a `capture.canceled`, `capture.late` or `capture.paid` event.
pub(crate) async fn capture_event(
    tx: &mut Tx,
    psp_id: PspId,
    kind: CaptureEventKind,
    capture_id: CaptureId,
    at: PspTime,
) -> Result<(), OrderError> {
    events::append(tx, psp_id, &Event::Capture(kind, CaptureEventData { capture_id }), at).await?;
    Ok(())
}

fn refund_view(r: &RefundRow, capture: &CaptureRow) -> Result<Refund, OrderError> {
    let corrupt = |w: &str| StoreError::Corrupt(format!("refunds.{w}"));
    Ok(Refund {
        refund_id: r.id,
        capture_id: r.capture_id,
        amount: Amount {
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?,
            gross: r.gross,
            net: r.net,
            tax: r.tax,
        },
        owed_to_buyer: r.owed_to_buyer,
        external_credit_note_number: r.external_credit_note_number.clone(),
        reason: r.reason.clone(),
        line_items: serde_json::from_str(&r.line_items).map_err(|_| corrupt("line_items"))?,
        created_at: r.created_at,
        capture: view(capture)?,
    })
}

/// Refunds part or all of a capture. Before the buyer paid it lowers what the buyer owes; beyond
/// that it is owed back to the buyer. The PSP bears it (from its next payout). The credit note
/// number identifies the refund: the same request again answers the refund it made.
pub async fn refund(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    capture_id: CaptureId,
    input: RefundInput,
) -> Result<(Refund, Outcome), OrderError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let c = store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(OrderError::NotFound("capture"))?;
    let mut v = Violations::new();
    let amount =
        v.required("amount", input.amount).and_then(|a| a.validate(&mut v, "amount", &s.config.currencies, true));
    let number = v.text("external_credit_note_number", input.external_credit_note_number, 255);
    let reason = v.opt_text("reason", input.reason, 1000);
    let items = validate_line_items(&mut v, "line_items", input.line_items, &s.config.currencies, amount);
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(amount), Some(number)) = (amount, number) else { return Err(OrderError::Invalid(Vec::new())) };
    let items_json = serde_json::to_string(&items).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(existing) = store::find_refund(tx, c.merchant_id, &number).await? {
        let same = existing.capture_id == capture_id
            && existing.currency == amount.currency.as_str()
            && (existing.gross, existing.net, existing.tax) == (amount.gross, amount.net, amount.tax)
            && existing.reason == reason
            && serde_json::from_str::<Vec<LineItem>>(&existing.line_items).ok().as_ref() == Some(&items);
        if !same {
            return Err(OrderError::AlreadyExists(format!(
                "the merchant already has a credit note numbered {number:?} for another refund"
            )));
        }
        return Ok((refund_view(&existing, &c)?, Outcome::Existing));
    }
    if amount.currency.as_str() != c.currency {
        return Err(invalid("amount.currency", "currency must be the capture's"));
    }
    let refundable = c.gross - c.refunded - c.charged_back;
    if amount.gross > refundable {
        return Err(conflict(format!("only {refundable} of this capture can still be refunded")));
    }
    let against_receivable = amount.gross.min(c.outstanding());
    let owed = amount.gross - against_receivable;
    let refunded = c.refunded + amount.gross;
    let state = capture_state(c.gross, refunded + c.charged_back, c.paid_direct, c.paid_bank, &c.state);
    super::dunning::on_settlement_change(s, tx, &c, state, at).await?;
    if !store::update_capture_amounts(tx, capture_id, (c.refunded, c.paid_direct), refunded, c.paid_direct, state, now)
        .await?
    {
        return Err(conflict("the capture changed meanwhile; read it and retry"));
    }
    let row = RefundRow {
        id: RefundId::new(),
        capture_id,
        psp_id,
        merchant_id: c.merchant_id,
        external_credit_note_number: Some(number),
        reason,
        currency: c.currency.clone(),
        gross: amount.gross,
        net: amount.net,
        tax: amount.tax,
        owed_to_buyer: owed,
        line_items: items_json,
        created_at: now,
    };
    store::insert_refund(tx, &row);
    let entry = ledger::refund(c.buyer_id, psp_id, amount.gross, against_receivable)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    journal::post(tx, &entry, &c.currency, row.id.0, now).await?;
    let created = RefundCreatedEvent { refund_id: row.id, capture_id, gross: amount.gross };
    events::append(tx, psp_id, &Event::RefundCreated(created), at).await?;
    if state == "canceled" {
        capture_event(tx, psp_id, CaptureEventKind::Canceled, capture_id, at).await?;
    }
    settle_order(s, tx, psp_id, c.order_id).await?;
    let after = store::get_capture(tx, psp_id, capture_id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    let f = super::messages::invoice_facts(s, tx, &after).await?;
    super::messages::queue_credit_note(s, tx, &f, row.id, (amount.gross, after.outstanding(), owed), at);
    Ok((refund_view(&row, &after)?, Outcome::Created))
}

/// The buyer paid (part of) the invoice to the merchant directly. Retry-safe by the request's
/// Idempotency-Key (`keyed`) or by `external_payment_id`; one of them is required.
pub async fn confirm_payment(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    capture_id: CaptureId,
    input: ConfirmPaymentInput,
    keyed: bool,
) -> Result<(Capture, Outcome), OrderError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let c = store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(OrderError::NotFound("capture"))?;
    let mut v = Violations::new();
    let amount = v.required("amount", input.amount);
    if amount.is_some_and(|a| a < 1) {
        v.add("amount", "amount must be at least 1");
    }
    let external = v.opt_text("external_payment_id", input.external_payment_id, 255);
    if external.is_none() && !keyed {
        v.add(
            "external_payment_id",
            "external_payment_id is required without an Idempotency-Key header, so that a retry cannot record the payment twice",
        );
    }
    v.finish().map_err(OrderError::Invalid)?;
    let Some(amount) = amount else { return Err(OrderError::Invalid(Vec::new())) };
    if let Some(ext) = &external
        && let Some(recorded) = store::find_direct_payment(tx, capture_id, ext).await?
    {
        if recorded != amount {
            return Err(OrderError::AlreadyExists(format!(
                "payment {ext:?} was confirmed on this capture with another amount ({recorded})"
            )));
        }
        return Ok((view(&c)?, Outcome::Existing));
    }
    if amount > c.outstanding() {
        return Err(conflict(format!("only {} of this capture is outstanding", c.outstanding())));
    }
    let paid = c.paid_direct + amount;
    let state = capture_state(c.gross, c.refunded + c.charged_back, paid, c.paid_bank, &c.state);
    super::dunning::on_settlement_change(s, tx, &c, state, at).await?;
    if !store::update_capture_amounts(tx, capture_id, (c.refunded, c.paid_direct), c.refunded, paid, state, now).await?
    {
        return Err(conflict("the capture changed meanwhile; read it and retry"));
    }
    let payment_id = uuid::Uuid::now_v7();
    store::insert_direct_payment(tx, payment_id, &c, external.as_deref(), amount, now);
    let entry = ledger::direct_payment(c.buyer_id, psp_id, amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    journal::post(tx, &entry, &c.currency, payment_id, now).await?;
    if state == "paid" {
        capture_event(tx, psp_id, CaptureEventKind::Paid, capture_id, at).await?;
    }
    settle_order(s, tx, psp_id, c.order_id).await?;
    let row = store::get_capture(tx, psp_id, capture_id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    Ok((view(&row)?, Outcome::Created))
}

/// Gives the buyer longer to pay an unpaid invoice, within the merchant's payment terms.
pub async fn extend_duration(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    capture_id: CaptureId,
    input: ExtendInput,
) -> Result<Capture, OrderError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let c = store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(OrderError::NotFound("capture"))?;
    let terms = merchant_terms(tx, psp_id, c.merchant_id).await?;
    let mut v = Violations::new();
    let duration = v.required("duration", input.duration);
    if let Some(d) = duration {
        within_terms(&mut v, "duration", d, terms);
    }
    v.finish().map_err(OrderError::Invalid)?;
    let Some(duration) = duration else { return Err(OrderError::Invalid(Vec::new())) };
    let due = (c.created_at + Duration::days(duration)).date_naive();
    let next = super::dunning::policy(s, tx).await?.next_step(due, c.dunning_stage, now.date_naive()).map(|(_, on)| on);
    if !store::extend_capture(tx, capture_id, duration, due, next, now).await? {
        return Err(conflict(format!(
            "the term can only be extended beyond {} days on an unpaid invoice (it is {})",
            c.duration, c.state
        )));
    }
    let updated = CaptureUpdatedEvent { capture_id, duration, due_date: due };
    events::append(tx, psp_id, &Event::CaptureUpdated(updated), at).await?;
    let row = store::get_capture(tx, psp_id, capture_id, false).await?.ok_or(OrderError::NotFound("capture"))?;
    Ok(view(&row)?)
}

/// Marks `psp_id`'s open invoices past their due date (on the PSP's clock, `at`) `late`, each
/// with its `capture.late` event. Idempotent: an invoice is marked once, whoever scans.
pub async fn mark_overdue(s: &Services, psp_id: PspId, at: PspTime) -> Result<usize, OrderError> {
    let mut n = 0;
    loop {
        let mut conn = s.db.conn().await?;
        let due = store::overdue(&mut conn, psp_id, at.now.date_naive(), 200).await?;
        drop(conn);
        let mut marked = 0;
        // Fifty to a transaction: fewer commits, short write locks.
        for chunk in due.chunks(50) {
            let mut tx = s.db.begin().await?;
            for id in store::mark_late_many(&mut tx, chunk, at.now).await? {
                capture_event(&mut tx, psp_id, CaptureEventKind::Late, id, at).await?;
                marked += 1;
            }
            tx.commit().await?;
        }
        n += marked;
        if due.len() < 200 || marked == 0 {
            return Ok(n);
        }
    }
}

/// The captures of an order.
pub async fn captures_of_order(s: &Services, psp_id: PspId, order_id: OrderId) -> Result<Vec<Capture>, OrderError> {
    let mut conn = s.db.conn().await?;
    orders_store::get_order(&mut conn, Some(psp_id), order_id, false).await?.ok_or(OrderError::NotFound("order"))?;
    let rows = store::captures_of_order(&mut conn, order_id).await?;
    rows.iter().map(|r| view(r).map_err(OrderError::from)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rf_references_validate() {
        let r = rf_reference(CaptureId::new());
        assert!(r.starts_with("RF") && r.len() == 25, "{r}");
        // ISO 11649 uses the IBAN check: moving the first four characters to the end gives 1 mod 97.
        let moved = format!("{}{}", &r[4..], &r[..4]);
        let rem = moved.chars().fold(0u32, |acc, c| {
            let v = c.to_digit(36).unwrap();
            if v < 10 { (acc * 10 + v) % 97 } else { (acc * 100 + v) % 97 }
        });
        assert_eq!(rem, 1);
    }

    #[test]
    fn rf_references_of_ids_made_at_once_differ() {
        // Many ids in the same milliseconds, from several threads, as concurrent captures make them.
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5_000).map(|_| rf_reference(CaptureId::new())).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }
}
