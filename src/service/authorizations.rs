//! What becomes of an authorization after the buyer's submission: the PSP confirms it (widget),
//! an operator reviews it, or it expires; and the order as the API shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Services;
use super::checkout::{CheckoutError, PaymentMethod, conflict};
use crate::clock::PspTime;
use crate::domain::events::{Event, OrderEventData, OrderEventKind};
use crate::domain::ids::{MerchantId, OrderId, PspId, SessionId};
use crate::domain::merchant::Address;
use crate::domain::order::{
    Amount, DebtorCompany, DebtorPerson, DeclineReason, LineItem, OrderData, OrderEvent, OrderInput, OrderState,
};
use crate::domain::validate::FieldError;
use crate::store::checkout as store;
use crate::store::orders::{self as orders_store, OrderRow};
use crate::store::{StoreError, Tx, events};

/// Payment instructions for bank transfer: the buyer's virtual IBAN.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BankAccount {
    pub iban: String,
}

/// An order as the PSP API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    pub state: OrderState,
    pub decline_reason: Option<DeclineReason>,
    pub external_order_id: Option<String>,
    pub amount: Amount,
    pub duration: i64,
    pub debtor_company: DebtorCompany,
    pub debtor_person: Option<DebtorPerson>,
    pub delivery_address: Option<Address>,
    pub billing_address: Option<Address>,
    pub line_items: Vec<LineItem>,
    pub comment: Option<String>,
    pub payment_method: PaymentMethod,
    /// The buyer's virtual IBAN, where bank transfers for this order go.
    pub bank_account: Option<BankAccount>,
    pub mandate_reference: Option<String>,
    /// Gross amount captured so far (minor units).
    pub captured: i64,
    /// Gross amount that can still be captured.
    pub uncaptured: i64,
    /// Gross amount released by cancellation.
    pub canceled: i64,
    /// Until when an unconfirmed authorization can be confirmed.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    pub fn from_row(r: &OrderRow) -> Result<Order, StoreError> {
        let d = r.data()?;
        Ok(Order {
            order_id: r.id,
            merchant_id: r.merchant_id,
            session_id: r.session_id,
            state: r.state()?,
            decline_reason: r.decline_reason.as_deref().and_then(DeclineReason::parse),
            external_order_id: r.external_order_id.clone(),
            amount: d.amount,
            duration: d.duration,
            debtor_company: d.debtor_company,
            debtor_person: d.debtor_person,
            delivery_address: d.delivery_address,
            billing_address: d.billing_address,
            line_items: d.line_items,
            comment: d.comment,
            payment_method: if r.payment_method == "direct_debit" {
                PaymentMethod::DirectDebit
            } else {
                PaymentMethod::BankTransfer
            },
            bank_account: r.virtual_iban.clone().map(|iban| BankAccount { iban }),
            mandate_reference: r.mandate_reference.clone(),
            captured: r.captured,
            uncaptured: if matches!(r.state.as_str(), "created" | "partially_shipped") {
                d.amount.gross - r.captured - r.canceled_amount
            } else {
                0
            },
            canceled: r.canceled_amount,
            expires_at: r.expires_at.filter(|_| matches!(r.state.as_str(), "authorized" | "pre_waiting")),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Compares the PSP's confirmation with what the buyer authorized: one error per differing field.
fn mismatches(authorized: &OrderData, confirmed: &OrderData) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut differ = |source: &str| {
        out.push(FieldError {
            source: source.into(),
            title: format!("Value of [{source}] does not match the authorized one."),
        })
    };
    if authorized.amount != confirmed.amount {
        differ("amount");
    }
    if authorized.duration != confirmed.duration {
        differ("duration");
    }
    let (a, c) = (&authorized.debtor_company, &confirmed.debtor_company);
    if a.name != c.name || a.address != c.address {
        differ("debtor_company");
    }
    if authorized.delivery_address != confirmed.delivery_address {
        differ("delivery_address");
    }
    out
}

async fn load_order(tx: &mut Tx, id: OrderId) -> Result<Order, CheckoutError> {
    let row = orders_store::get_order(tx, None, id, false).await?.ok_or(CheckoutError::NotFound("order"))?;
    Ok(Order::from_row(&row)?)
}

/// Moves an order by `event` (the one state machine), writing its webhook event; returns the new state.
async fn apply(
    s: &Services,
    tx: &mut Tx,
    row: &OrderRow,
    event: OrderEvent,
    external_order_id: Option<&str>,
    event_kind: Option<OrderEventKind>,
) -> Result<OrderState, CheckoutError> {
    let at = s.now_for(tx, row.psp_id).await?;
    let now = at.now;
    let from = row.state()?;
    let to = from
        .next(event)
        .ok_or_else(|| conflict(format!("the order is {} and cannot be {:?}ed", from.as_str(), event)))?;
    if !orders_store::transition_order(tx, row.id, from, to, external_order_id, now).await? {
        return Err(conflict("the order changed meanwhile; read it and retry"));
    }
    if let Some(kind) = event_kind.or(OrderEventKind::for_state(to)) {
        let data = OrderEventData { order_id: row.id, merchant_id: row.merchant_id, state: to, decline_reason: None };
        events::append(tx, row.psp_id, &Event::Order(kind, data), at).await?;
    }
    Ok(to)
}

/// The PSP confirms a widget authorization with the same order data.
pub async fn confirm(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    session_id: SessionId,
    input: OrderInput,
) -> Result<Order, CheckoutError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let session = store::get_session(tx, session_id, true).await?.ok_or(CheckoutError::NotFound("widget session"))?;
    if session.psp_id != psp_id || session.kind != "widget" {
        return Err(CheckoutError::NotFound("widget session"));
    }
    let confirmed = input.validate(&s.config.currencies, "").map_err(CheckoutError::Invalid)?;
    let Some(order_id) = session.order_id else {
        return Err(conflict("this session has no authorization to confirm"));
    };
    let row = orders_store::get_order(tx, Some(psp_id), order_id, true)
        .await?
        .ok_or(CheckoutError::NotFound("widget session"))?;
    let state = row.state()?;
    if !matches!(state, OrderState::Authorized | OrderState::PreWaiting) {
        return Err(conflict(format!("the authorization is {} and cannot be confirmed", state.as_str())));
    }
    if row.expires_at.is_some_and(|e| e <= now) {
        return Err(conflict("the authorization has expired"));
    }
    let diff = mismatches(&row.data()?, &confirmed);
    if !diff.is_empty() {
        return Err(CheckoutError::Mismatch(diff));
    }
    apply(s, tx, &row, OrderEvent::Confirm, confirmed.external_order_id.as_deref(), None).await?;
    store::set_session_status(tx, session_id, "completed", None, 0, now).await?;
    load_order(tx, order_id).await
}

pub async fn get_order(s: &Services, psp_id: PspId, id: OrderId) -> Result<Order, CheckoutError> {
    let mut conn = s.db.conn().await?;
    let row =
        orders_store::get_order(&mut conn, Some(psp_id), id, false).await?.ok_or(CheckoutError::NotFound("order"))?;
    Ok(Order::from_row(&row)?)
}

/// An operator approves or declines an order in manual review.
pub async fn review(s: &Services, id: OrderId, approve: bool) -> Result<Order, CheckoutError> {
    let mut tx = s.db.begin().await?;
    let row = orders_store::get_order(&mut tx, None, id, true).await?.ok_or(CheckoutError::NotFound("order"))?;
    let state = row.state()?;
    if !matches!(state, OrderState::Waiting | OrderState::PreWaiting) {
        return Err(conflict(format!("the order is {} and not in review", state.as_str())));
    }
    let decided_at = s.now_for(&mut tx, row.psp_id).await?.now;
    if approve {
        apply(s, &mut tx, &row, OrderEvent::Approve, None, Some(OrderEventKind::Approved)).await?;
    } else {
        apply(s, &mut tx, &row, OrderEvent::Decline, None, Some(OrderEventKind::Declined)).await?;
        orders_store::set_decline_reason(&mut tx, id, DeclineReason::RiskPolicy.as_str()).await?;
    }
    store::insert_decision(
        &mut tx,
        id,
        row.buyer_id,
        if approve { "approved" } else { "declined" },
        (!approve).then_some("risk_policy"),
        r#"[{"rule":"manual_review","passed":true,"detail":"decided by an operator"}]"#,
        decided_at,
    )
    .await?;
    let order = load_order(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Expires `psp_id`'s unconfirmed authorizations whose time ran out on its clock (`at`),
/// releasing their exposure.
pub async fn expire_due(s: &Services, psp_id: PspId, at: PspTime) -> Result<usize, CheckoutError> {
    let mut n = 0;
    loop {
        let mut conn = s.db.conn().await?;
        let due = orders_store::due_expiries(&mut conn, psp_id, at.now, 100).await?;
        drop(conn);
        let mut expired = 0;
        for id in &due {
            let mut tx = s.db.begin().await?;
            let Some(row) = orders_store::get_order(&mut tx, None, *id, true).await? else { continue };
            if row.expires_at.is_none_or(|e| e > at.now) {
                continue;
            }
            match apply(s, &mut tx, &row, OrderEvent::Expire, None, None).await {
                Ok(_) => {
                    store::set_session_status(&mut tx, row.session_id, "expired", None, 0, at.now).await?;
                    tx.commit().await?;
                    expired += 1;
                }
                // Confirmed or reviewed meanwhile: nothing to expire.
                Err(CheckoutError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        n += expired;
        if due.len() < 100 || expired == 0 {
            return Ok(n);
        }
    }
}
