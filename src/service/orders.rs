//! Orders after checkout: captures (invoices), refunds (credit notes), direct payments, longer
//! terms and cancellation. Each use case changes its row with a compare-and-set and posts its
//! ledger entry in the same transaction, with its event.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::Services;
use super::checkout::{CheckoutError, Order};
use crate::domain::iban;
use crate::domain::ids::{CaptureId, OrderId, PspId, RefundId};
use crate::domain::ledger;
use crate::domain::money::{Currency, Money};
use crate::domain::order::{Amount, AmountInput};
use crate::domain::psp::FeeBand;
use crate::domain::validate::{self, Violations};
use crate::store::orders::{self as store, CaptureRow, NewCapture};
use crate::store::{StoreError, Tx, checkout as orders_store, events};

/// BIC of the account behind the virtual IBANs.
pub const BIC: &str = "NTRMDEB1XXX";

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
    /// `open`, `late`, `paid` or `canceled`.
    pub state: String,
    pub external_invoice_number: String,
    pub invoice_url: Option<String>,
    pub amount: Amount,
    /// netterms' fee on this capture (minor units).
    pub fee: i64,
    pub refunded: i64,
    /// Paid by the buyer directly to the merchant (confirm-payment).
    pub paid_to_merchant: i64,
    pub outstanding: i64,
    pub duration: i64,
    pub due_date: NaiveDate,
    pub payment_instructions: PaymentInstructions,
    pub shipping_info: Option<serde_json::Value>,
    pub line_items: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(r: &CaptureRow) -> Result<Capture, StoreError> {
    let corrupt = |w: &str| StoreError::Corrupt(format!("captures.{w}"));
    let due_date: NaiveDate = r.due_date.parse().map_err(|_| corrupt("due_date"))?;
    let currency = Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?;
    Ok(Capture {
        capture_id: r.id,
        order_id: r.order_id,
        state: r.state.clone(),
        external_invoice_number: r.external_invoice_number.clone(),
        invoice_url: r.invoice_url.clone(),
        amount: Amount { currency, gross: r.gross, net: r.net, tax: r.tax },
        fee: r.fee,
        refunded: r.refunded,
        paid_to_merchant: r.paid_direct,
        outstanding: r.outstanding(),
        duration: r.duration,
        due_date,
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
    /// `[{external_id, quantity}]` of the order's line items.
    pub line_items: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
}

/// The body of `POST /v1/captures/{id}/refunds`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RefundInput {
    #[schema(required = true)]
    pub amount: Option<AmountInput>,
    pub external_credit_note_number: Option<String>,
    pub reason: Option<String>,
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
    pub capture: Capture,
}

/// The body of `POST /v1/captures/{id}/confirm-payment`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ConfirmPaymentInput {
    /// Gross paid by the buyer to the merchant (minor units).
    #[schema(required = true)]
    pub amount: Option<i64>,
}

/// The body of `POST /v1/captures/{id}/extend-duration`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ExtendInput {
    /// The new payment term in days, longer than the current one (at most 120).
    #[schema(required = true)]
    pub duration: Option<i64>,
}

/// An ISO 11649 creditor reference for a capture.
pub fn rf_reference(id: CaptureId) -> String {
    let body = id.0.simple().to_string().to_ascii_uppercase();
    iban::with_check_digits("RF", &body[..21]).unwrap_or_default()
}

/// The fee on `gross` for a term of `duration` days: the PSP's rate (or its band's) plus the fixed fee.
fn fee(rate_bps: i64, fixed: i64, bands: &[FeeBand], gross: Money, duration: i64) -> Result<i64, CheckoutError> {
    let rate = bands.iter().find(|b| duration <= b.max_duration).map_or(rate_bps, |b| b.fee_rate_bps);
    let variable = gross.basis_points(rate).map_err(|_| invalid("amount", "amount out of range"))?;
    Ok(variable.minor.saturating_add(fixed).min(gross.minor))
}

fn invalid(source: &str, title: &str) -> CheckoutError {
    CheckoutError::Invalid(vec![validate::FieldError { source: source.into(), title: title.into() }])
}

fn conflict(msg: impl Into<String>) -> CheckoutError {
    CheckoutError::Conflict(msg.into())
}

async fn order_view(tx: &mut Tx, psp_id: PspId, id: OrderId) -> Result<Order, CheckoutError> {
    let row = orders_store::get_order(tx, Some(psp_id), id, false).await?.ok_or(CheckoutError::NotFound("order"))?;
    Ok(Order::from_row(&row)?)
}

/// Captures part or all of an order. The sum of captures never exceeds the authorized amount:
/// the order row's `UPDATE` checks it atomically.
pub async fn capture(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    order_id: OrderId,
    input: CaptureInput,
) -> Result<Capture, CheckoutError> {
    let now = s.clock.now();
    let mut v = Violations::new();
    let amount =
        v.required("amount", input.amount).and_then(|a| a.validate(&mut v, "amount", &s.config.currencies, true));
    let number = v.text("external_invoice_number", input.external_invoice_number, 255);
    let url = v.opt_text("invoice_url", input.invoice_url, 2048);
    v.finish().map_err(CheckoutError::Invalid)?;
    let (Some(amount), Some(number)) = (amount, number) else { return Err(CheckoutError::Invalid(Vec::new())) };
    // One statement checks and reserves the amount, locks the order and returns what the capture
    // needs; only when it refuses is the order read, to say why.
    let Some(reserved) =
        store::reserve_capture(tx, psp_id, order_id, amount.gross, amount.currency.as_str(), &number, now).await?
    else {
        let order = orders_store::get_order(tx, Some(psp_id), order_id, false)
            .await?
            .ok_or(CheckoutError::NotFound("order"))?;
        let data = order.data()?;
        if amount.currency != data.amount.currency {
            return Err(invalid("amount.currency", "currency must be the order's"));
        }
        if store::invoice_number_taken(tx, order.merchant_id, &number).await? {
            return Err(CheckoutError::AlreadyExists(format!(
                "the merchant already has an invoice numbered {number:?}"
            )));
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
    let reference = rf_reference(id);
    let shipping = input.shipping_info.map(|m| serde_json::Value::Object(m).to_string());
    let items = serde_json::Value::Array(
        input.line_items.unwrap_or_default().into_iter().map(serde_json::Value::Object).collect(),
    );
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
            payment_reference: &reference,
            shipping_info: shipping.as_deref(),
            line_items: &items.to_string(),
        },
        now,
    );
    let entry = ledger::capture(buyer, psp_id, amount.gross, fee).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store::post(tx, &entry, amount.currency.as_str(), id.0, now).await?;
    events::append(
        tx,
        psp_id,
        "capture.created",
        &json!({ "capture_id": id, "order_id": order_id, "gross": amount.gross }),
        now,
    )
    .await?;
    // The order's event only when its state changed: it was `created` before its first capture
    // (nothing captured yet), and a capture that ships the rest always changes it.
    if reserved.state == "shipped" || reserved.captured == amount.gross {
        let order_event = if reserved.state == "shipped" { "order.shipped" } else { "order.partially_shipped" };
        events::append(tx, psp_id, order_event, &json!({ "order_id": order_id, "state": reserved.state }), now).await?;
    }
    // The capture, its ledger entry and events are deferred: they reach the database in one round
    // trip with the idempotent response, just before the commit.
    // The capture as stored, without reading it back.
    let row = CaptureRow {
        id,
        order_id,
        psp_id,
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
    };
    Ok(view(&row)?)
}

pub async fn get_capture(s: &Services, psp_id: PspId, id: CaptureId) -> Result<Capture, CheckoutError> {
    let mut conn = s.db.conn().await?;
    let row = store::get_capture(&mut conn, psp_id, id, false).await?.ok_or(CheckoutError::NotFound("capture"))?;
    Ok(view(&row)?)
}

/// The state a capture has with these amounts.
fn capture_state(gross: i64, refunded: i64, paid_direct: i64, current: &str) -> &'static str {
    if gross - refunded - paid_direct > 0 {
        if current == "late" { "late" } else { "open" }
    } else if paid_direct > 0 {
        "paid"
    } else {
        "canceled"
    }
}

async fn settle_order(s: &Services, tx: &mut Tx, psp_id: PspId, order_id: OrderId) -> Result<(), CheckoutError> {
    if store::complete_if_settled(tx, order_id, s.clock.now()).await? {
        events::append(
            tx,
            psp_id,
            "order.complete",
            &json!({ "order_id": order_id, "state": "complete" }),
            s.clock.now(),
        )
        .await?;
    }
    Ok(())
}

/// Refunds part or all of a capture. Before the buyer paid it lowers what the buyer owes; beyond
/// that it is owed back to the buyer. The PSP bears it (from its next payout).
pub async fn refund(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    capture_id: CaptureId,
    input: RefundInput,
) -> Result<Refund, CheckoutError> {
    let now = s.clock.now();
    let c = store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(CheckoutError::NotFound("capture"))?;
    let mut v = Violations::new();
    let amount =
        v.required("amount", input.amount).and_then(|a| a.validate(&mut v, "amount", &s.config.currencies, true));
    let number = v.opt_text("external_credit_note_number", input.external_credit_note_number, 255);
    let reason = v.opt_text("reason", input.reason, 1000);
    v.finish().map_err(CheckoutError::Invalid)?;
    let Some(amount) = amount else { return Err(CheckoutError::Invalid(Vec::new())) };
    if amount.currency.as_str() != c.currency {
        return Err(invalid("amount.currency", "currency must be the capture's"));
    }
    let refundable = c.gross - c.refunded;
    if amount.gross > refundable {
        return Err(conflict(format!("only {refundable} of this capture can still be refunded")));
    }
    let against_receivable = amount.gross.min(c.outstanding());
    let owed = amount.gross - against_receivable;
    let refunded = c.refunded + amount.gross;
    let state = capture_state(c.gross, refunded, c.paid_direct, &c.state);
    if !store::update_capture_amounts(tx, capture_id, (c.refunded, c.paid_direct), refunded, c.paid_direct, state, now)
        .await?
    {
        return Err(conflict("the capture changed meanwhile; read it and retry"));
    }
    let id = RefundId::new();
    store::insert_refund(
        tx,
        id,
        capture_id,
        psp_id,
        number.as_deref(),
        reason.as_deref(),
        &c.currency,
        (amount.gross, amount.net, amount.tax),
        owed,
        now,
    )
    .await?;
    let entry = ledger::refund(c.buyer_id, psp_id, amount.gross, against_receivable)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store::post(tx, &entry, &c.currency, id.0, now).await?;
    events::append(
        tx,
        psp_id,
        "refund.created",
        &json!({ "refund_id": id, "capture_id": capture_id, "gross": amount.gross }),
        now,
    )
    .await?;
    if state == "canceled" {
        events::append(tx, psp_id, "capture.canceled", &json!({ "capture_id": capture_id }), now).await?;
    }
    settle_order(s, tx, psp_id, c.order_id).await?;
    let row = store::get_capture(tx, psp_id, capture_id, false).await?.ok_or(CheckoutError::NotFound("capture"))?;
    Ok(Refund {
        refund_id: id,
        capture_id,
        amount,
        owed_to_buyer: owed,
        external_credit_note_number: number,
        reason,
        capture: view(&row)?,
    })
}

/// The buyer paid (part of) the invoice to the merchant directly.
pub async fn confirm_payment(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    capture_id: CaptureId,
    input: ConfirmPaymentInput,
) -> Result<Capture, CheckoutError> {
    let now = s.clock.now();
    let c = store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(CheckoutError::NotFound("capture"))?;
    let mut v = Violations::new();
    let amount = v.required("amount", input.amount);
    if amount.is_some_and(|a| a < 1) {
        v.add("amount", "amount must be at least 1");
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    let Some(amount) = amount else { return Err(CheckoutError::Invalid(Vec::new())) };
    if amount > c.outstanding() {
        return Err(conflict(format!("only {} of this capture is outstanding", c.outstanding())));
    }
    let paid = c.paid_direct + amount;
    let state = capture_state(c.gross, c.refunded, paid, &c.state);
    if !store::update_capture_amounts(tx, capture_id, (c.refunded, c.paid_direct), c.refunded, paid, state, now).await?
    {
        return Err(conflict("the capture changed meanwhile; read it and retry"));
    }
    let entry = ledger::direct_payment(c.buyer_id, psp_id, amount).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store::post(tx, &entry, &c.currency, capture_id.0, now).await?;
    if state == "paid" {
        events::append(tx, psp_id, "capture.paid", &json!({ "capture_id": capture_id }), now).await?;
    }
    settle_order(s, tx, psp_id, c.order_id).await?;
    let row = store::get_capture(tx, psp_id, capture_id, false).await?.ok_or(CheckoutError::NotFound("capture"))?;
    Ok(view(&row)?)
}

/// Gives the buyer longer to pay an unpaid invoice.
pub async fn extend_duration(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    capture_id: CaptureId,
    input: ExtendInput,
) -> Result<Capture, CheckoutError> {
    let c = store::get_capture(tx, psp_id, capture_id, true).await?.ok_or(CheckoutError::NotFound("capture"))?;
    let mut v = Violations::new();
    let duration = v.required("duration", input.duration);
    if duration.is_some_and(|d| !(1..=120).contains(&d)) {
        v.add("duration", "duration must be between 1 and 120 days");
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    let Some(duration) = duration else { return Err(CheckoutError::Invalid(Vec::new())) };
    let due = (c.created_at + Duration::days(duration)).date_naive();
    if !store::extend_capture(tx, capture_id, duration, due, s.clock.now()).await? {
        return Err(conflict(format!(
            "the term can only be extended beyond {} days on an unpaid invoice (it is {})",
            c.duration, c.state
        )));
    }
    let row = store::get_capture(tx, psp_id, capture_id, false).await?.ok_or(CheckoutError::NotFound("capture"))?;
    Ok(view(&row)?)
}

/// Cancels what is not captured: nothing captured → `canceled`; else the order ends at the
/// captured amount.
pub async fn cancel(s: &Services, tx: &mut Tx, psp_id: PspId, order_id: OrderId) -> Result<Order, CheckoutError> {
    let now = s.clock.now();
    let Some(state) = store::cancel_order(tx, psp_id, order_id, now).await? else {
        let o = orders_store::get_order(tx, Some(psp_id), order_id, false)
            .await?
            .ok_or(CheckoutError::NotFound("order"))?;
        return Err(conflict(format!("the order is {} and cannot be canceled", o.state)));
    };
    events::append(tx, psp_id, "order.canceled", &json!({ "order_id": order_id, "state": state }), now).await?;
    settle_order(s, tx, psp_id, order_id).await?;
    order_view(tx, psp_id, order_id).await
}

/// The body of `PATCH /v1/orders/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct OrderPatch {
    /// Set once, when the order has none.
    pub external_order_id: Option<String>,
    /// A lower amount (never higher, never below what is captured).
    pub amount: Option<AmountInput>,
    /// A new payment term, before anything is captured.
    pub duration: Option<i64>,
}

/// Updates an order's details: set the external id once, lower the amount, change the term
/// before the first capture.
pub async fn update_order(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    order_id: OrderId,
    patch: OrderPatch,
) -> Result<Order, CheckoutError> {
    let row =
        orders_store::get_order(tx, Some(psp_id), order_id, true).await?.ok_or(CheckoutError::NotFound("order"))?;
    let mut data = row.data()?;
    let mut v = Violations::new();
    let external = v.opt_text("external_order_id", patch.external_order_id, 255);
    let amount = patch.amount.and_then(|a| a.validate(&mut v, "amount", &s.config.currencies, true));
    if patch.duration.is_some_and(|d| !(7..=120).contains(&d)) {
        v.add("duration", "duration must be between 7 and 120 days");
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    let state = row.state()?;
    if !matches!(state.as_str(), "authorized" | "pre_waiting" | "waiting" | "created" | "partially_shipped") {
        return Err(conflict(format!("the order is {} and can no longer be changed", state.as_str())));
    }
    let mut external_order_id = row.external_order_id.clone();
    if let Some(e) = external {
        if row.external_order_id.as_deref().is_some_and(|x| x != e) {
            return Err(conflict("external_order_id is already set"));
        }
        external_order_id = Some(e);
    }
    if let Some(a) = amount {
        let cur = data.amount;
        if a.currency != cur.currency || a.gross > cur.gross || a.net > cur.net || a.tax > cur.tax {
            return Err(conflict("the amount can only be lowered, in the order's currency"));
        }
        if a.gross < row.captured + row.canceled_amount {
            return Err(conflict(format!("the amount cannot go below what is captured ({})", row.captured)));
        }
        data.amount = a;
    }
    if let Some(d) = patch.duration {
        if row.captured > 0 {
            return Err(conflict("the duration cannot change after a capture; extend the capture instead"));
        }
        data.duration = d;
    }
    data.external_order_id.clone_from(&external_order_id);
    let json = serde_json::to_string(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let a = data.amount;
    let now = s.clock.now();
    if !orders_store::update_order_details(
        tx,
        order_id,
        row.updated_at,
        external_order_id.as_deref(),
        (a.gross, a.net, a.tax),
        data.duration,
        &json,
        now,
    )
    .await?
    {
        return Err(conflict("the order changed meanwhile; read it and retry"));
    }
    order_view(tx, psp_id, order_id).await
}

/// Marks open invoices past their due date `late`, each with its `capture.late` event.
pub async fn mark_overdue(s: &Services) -> Result<usize, CheckoutError> {
    let now = s.clock.now();
    let mut conn = s.db.conn().await?;
    let due = store::overdue(&mut conn, now.date_naive(), 500).await?;
    drop(conn);
    let mut n = 0;
    for (id, psp_id) in due {
        let mut tx = s.db.begin().await?;
        if store::mark_late(&mut tx, id, now).await? {
            events::append(&mut tx, psp_id, "capture.late", &json!({ "capture_id": id }), now).await?;
            tx.commit().await?;
            n += 1;
        }
    }
    Ok(n)
}

/// A PSP's orders, newest first.
pub async fn list_orders(
    s: &Services,
    psp_id: PspId,
    merchant_id: Option<crate::domain::ids::MerchantId>,
    state: Option<&str>,
    limit: i64,
    after: Option<OrderId>,
) -> Result<Vec<Order>, CheckoutError> {
    let mut conn = s.db.conn().await?;
    let rows = orders_store::list_orders(&mut conn, psp_id, merchant_id, state, limit, after).await?;
    rows.iter().map(|r| Order::from_row(r).map_err(CheckoutError::from)).collect()
}

/// The captures of an order.
pub async fn captures_of_order(s: &Services, psp_id: PspId, order_id: OrderId) -> Result<Vec<Capture>, CheckoutError> {
    let mut conn = s.db.conn().await?;
    orders_store::get_order(&mut conn, Some(psp_id), order_id, false).await?.ok_or(CheckoutError::NotFound("order"))?;
    let rows = store::captures_of_order(&mut conn, order_id).await?;
    rows.iter().map(|r| view(r).map_err(CheckoutError::from)).collect()
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
}
