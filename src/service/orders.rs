//! Orders after checkout: cancellation, changes to their details, listing; completion once every
//! invoice is settled; and the errors of the order and invoice use cases.

use serde::Deserialize;
use utoipa::ToSchema;

use super::Services;
use super::authorizations::Order;
use crate::clock::PspTime;
use crate::domain::events::{Event, OrderEventData, OrderEventKind};
use crate::domain::ids::{MerchantId, OrderId, PspId};
use crate::domain::order::{AmountInput, OrderState};
use crate::domain::validate::{self, FieldError, Violations};
use crate::store::{StoreError, Tx, events, orders as orders_store};

/// What an order use case can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("not found")]
    NotFound(&'static str),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a POST made something new (201) or found what an earlier identical request made (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Existing,
}

pub(crate) fn invalid(source: &str, title: &str) -> OrderError {
    OrderError::Invalid(vec![validate::FieldError { source: source.into(), title: title.into() }])
}

pub(crate) fn conflict(msg: impl Into<String>) -> OrderError {
    OrderError::Conflict(msg.into())
}

async fn order_view(tx: &mut Tx, psp_id: PspId, id: OrderId) -> Result<Order, OrderError> {
    let row = orders_store::get_order(tx, Some(psp_id), id, false).await?.ok_or(OrderError::NotFound("order"))?;
    Ok(Order::from_row(&row)?)
}

/// Completes the order if this transaction settled its last open capture. The order is locked
/// first, in a statement of its own: two transactions settling two captures of one order then
/// decide one after the other, and the second sees the first's settlement (no write skew).
pub(crate) async fn settle_order(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    order_id: OrderId,
) -> Result<(), OrderError> {
    orders_store::lock_order(tx, order_id).await?;
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    if let Some(merchant_id) = orders_store::complete_if_settled(tx, order_id, now).await? {
        order_event(tx, psp_id, OrderEventKind::Complete, order_id, merchant_id, OrderState::Complete, at).await?;
    }
    Ok(())
}

/// Writes an `order.*` event.
pub(crate) async fn order_event(
    tx: &mut Tx,
    psp_id: PspId,
    kind: OrderEventKind,
    order_id: OrderId,
    merchant_id: MerchantId,
    state: OrderState,
    at: PspTime,
) -> Result<(), OrderError> {
    let data = OrderEventData { order_id, merchant_id, state, decline_reason: None };
    events::append(tx, psp_id, &Event::Order(kind, data), at).await?;
    Ok(())
}

/// The merchant's payment terms of an order or capture.
pub(crate) async fn merchant_terms(
    tx: &mut Tx,
    psp_id: PspId,
    merchant_id: crate::domain::ids::MerchantId,
) -> Result<crate::domain::merchant::PaymentTerms, OrderError> {
    let m = crate::store::merchants::get(tx, psp_id, merchant_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("an order's merchant is missing".into()))?;
    Ok(m.payment_terms)
}

pub(crate) fn within_terms(v: &mut Violations, source: &str, d: i64, t: crate::domain::merchant::PaymentTerms) {
    if !(t.min_duration..=t.max_duration).contains(&d) {
        v.add(
            source,
            format!("duration must lie within the merchant's terms ({}–{} days)", t.min_duration, t.max_duration),
        );
    }
}

/// Cancels what is not captured: nothing captured → `canceled`; else the order ends at the
/// captured amount (`shipped`, with `order.shipped` after `order.canceled`). Retry-safe by
/// state: an order whose rest is already canceled answers as it is, with no new event.
pub async fn cancel(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    order_id: OrderId,
) -> Result<(Order, Outcome), OrderError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let Some((state, merchant_id)) = orders_store::cancel_order(tx, psp_id, order_id, now).await? else {
        let o =
            orders_store::get_order(tx, Some(psp_id), order_id, false).await?.ok_or(OrderError::NotFound("order"))?;
        if o.state == "canceled" || o.canceled_amount > 0 {
            return Ok((Order::from_row(&o)?, Outcome::Existing));
        }
        return Err(conflict(format!("the order is {} and cannot be canceled", o.state)));
    };
    let state = OrderState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("orders.state {state:?}")))?;
    order_event(tx, psp_id, OrderEventKind::Canceled, order_id, merchant_id, state, at).await?;
    if state == OrderState::Shipped {
        order_event(tx, psp_id, OrderEventKind::Shipped, order_id, merchant_id, state, at).await?;
    }
    settle_order(s, tx, psp_id, order_id).await?;
    Ok((order_view(tx, psp_id, order_id).await?, Outcome::Created))
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
) -> Result<Order, OrderError> {
    let row = orders_store::get_order(tx, Some(psp_id), order_id, true).await?.ok_or(OrderError::NotFound("order"))?;
    let mut data = row.data()?;
    let mut v = Violations::new();
    let external = v.opt_text("external_order_id", patch.external_order_id, 255);
    let amount = patch.amount.and_then(|a| a.validate(&mut v, "amount", &s.config.currencies, true));
    if let Some(d) = patch.duration {
        let terms = merchant_terms(tx, psp_id, row.merchant_id).await?;
        within_terms(&mut v, "duration", d, terms);
    }
    v.finish().map_err(OrderError::Invalid)?;
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
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    // Lowered to exactly what is captured (and canceled): nothing is left to ship.
    let ships = row.captured > 0 && a.gross == row.captured + row.canceled_amount && state.as_str() != "shipped";
    let new_state = if ships { "shipped" } else { state.as_str() };
    if !orders_store::update_order_details(
        tx,
        order_id,
        row.updated_at,
        external_order_id.as_deref(),
        (a.gross, a.net, a.tax),
        data.duration,
        &json,
        new_state,
        now,
    )
    .await?
    {
        return Err(conflict("the order changed meanwhile; read it and retry"));
    }
    if ships {
        let (merchant_id, shipped) = (row.merchant_id, OrderState::Shipped);
        order_event(tx, psp_id, OrderEventKind::Shipped, order_id, merchant_id, shipped, at).await?;
        settle_order(s, tx, psp_id, order_id).await?;
    }
    order_view(tx, psp_id, order_id).await
}

/// A PSP's orders, newest first.
pub async fn list_orders(
    s: &Services,
    psp_id: PspId,
    merchant_id: Option<crate::domain::ids::MerchantId>,
    state: Option<&str>,
    limit: i64,
    after: Option<OrderId>,
) -> Result<Vec<Order>, OrderError> {
    let mut conn = s.db.conn().await?;
    let rows = orders_store::list_orders(&mut conn, psp_id, merchant_id, state, limit, after).await?;
    rows.iter().map(|r| Order::from_row(r).map_err(OrderError::from)).collect()
}
