//! The events netterms announces to PSPs (webhooks), typed: each type's payload is a struct, so
//! the catalogue in the OpenAPI document and what the code can emit are one list.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::ids::{CaptureId, MerchantId, OrderId, RefundId, SessionId};
use super::order::{DeclineReason, OrderState};

/// `authorization`: the buyer submitted a checkout; approved (`success`) or declined.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizationEvent {
    pub order_id: OrderId,
    pub success: bool,
    pub session_id: SessionId,
    pub merchant_id: MerchantId,
    pub state: OrderState,
    pub decline_reason: Option<DeclineReason>,
}

/// `order.*`: an order changed state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderEventData {
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    /// The order's state after the change.
    pub state: OrderState,
    /// Set on `order.declined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<DeclineReason>,
}

/// `capture.created`: an invoice was issued.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaptureCreatedEvent {
    pub capture_id: CaptureId,
    pub order_id: OrderId,
    /// The invoice's gross amount (minor units).
    pub gross: i64,
}

/// `capture.updated`: the invoice's payment term was extended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaptureUpdatedEvent {
    pub capture_id: CaptureId,
    pub duration: i64,
    pub due_date: NaiveDate,
}

/// `capture.canceled`, `capture.late`, `capture.paid`: an invoice changed state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaptureEventData {
    pub capture_id: CaptureId,
}

/// `refund.created`: a credit note was issued.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundCreatedEvent {
    pub refund_id: RefundId,
    pub capture_id: CaptureId,
    pub gross: i64,
}

/// `merchant.activated`, `merchant.deactivated`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MerchantEventData {
    pub merchant_id: MerchantId,
}

/// `dunning.reminder`, `dunning.level_changed`, `dunning.collection`: a dunning step was taken.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DunningEvent {
    pub capture_id: CaptureId,
    pub order_id: OrderId,
    /// `reminder`, `level_1`, `level_2`, …, or `collection`.
    pub step: String,
    /// The invoice's dunning level after the step (0 before the first level).
    pub level: i64,
    pub currency: String,
    /// The invoice amount still open (minor units).
    pub outstanding: i64,
    /// Flat fee charged by this step.
    pub fee_charged: i64,
    /// Default interest charged by this step.
    pub interest_charged: i64,
    /// Everything the buyer owes on this invoice now: open amount, fees and interest.
    pub total_due: i64,
    /// The new payment deadline the buyer's notice names, if any.
    pub deadline: Option<NaiveDate>,
    /// What the notice asks the buyer to pay by `deadline`: `total_due` with default interest
    /// up to the deadline. Paid by then, it settles the invoice.
    pub total_by_deadline: Option<i64>,
}

/// `dunning.paused`, `dunning.resumed`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DunningPauseEvent {
    pub capture_id: CaptureId,
    pub reason: String,
    /// Until when dunning is paused (on `dunning.paused`; none while a dispute is open).
    pub until: Option<DateTime<Utc>>,
}

/// `payment.received`: a buyer's payment was booked on an invoice (one event per invoice it
/// paid); `payment.returned`: a booked direct debit came back and the invoice is open again.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentEvent {
    pub payment_id: uuid::Uuid,
    pub capture_id: CaptureId,
    pub order_id: OrderId,
    pub currency: String,
    /// What the payment paid on this invoice (minor units; negative on a return).
    pub amount: i64,
    /// Of it, towards dunning fees and default interest.
    pub charges: i64,
    /// Of it, towards the invoice amount.
    pub principal: i64,
    /// How it was matched: `structured_reference`, `text_reference`, `virtual_iban`,
    /// `direct_debit`, `amount_and_name` or `operator`.
    pub matched_by: String,
    /// What the buyer still owes on the invoice afterwards (principal).
    pub outstanding: i64,
    /// The bank's reason code of a return (e.g. `AM04`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_reason: Option<String>,
}

/// Which payment event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEventKind {
    Received,
    Returned,
}

impl PaymentEventKind {
    pub const ALL: [PaymentEventKind; 2] = [Self::Received, Self::Returned];

    pub fn event_type(self) -> &'static str {
        match self {
            Self::Received => "payment.received",
            Self::Returned => "payment.returned",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Received => "A payment of the buyer was booked on the invoice (fees and interest first)",
            Self::Returned => "A collected direct debit came back from the buyer's bank; the invoice is open again",
        }
    }
}

/// `payout.created`: a payout to the PSP was made up (its lines are what the ledger owed up to
/// the cut-off); `payout.paid`: it left netterms' bank account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayoutEvent {
    pub payout_id: uuid::Uuid,
    pub currency: String,
    /// Minor units.
    pub amount: i64,
    /// The cut-off (exclusive): everything booked before this day's start on the PSP's clock.
    pub period_end: NaiveDate,
    /// `pending`, `sent` or `paid`.
    pub state: String,
}

/// Which payout event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEventKind {
    Created,
    Paid,
    Rejected,
}

impl PayoutEventKind {
    pub const ALL: [PayoutEventKind; 3] = [Self::Created, Self::Paid, Self::Rejected];

    pub fn event_type(self) -> &'static str {
        match self {
            Self::Created => "payout.created",
            Self::Paid => "payout.paid",
            Self::Rejected => "payout.rejected",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Created => "A payout was made up at the PSP's cut-off (report and SEPA file available)",
            Self::Paid => "The payout left netterms' bank account (seen on the statement, or marked by an operator)",
            Self::Rejected => {
                "The bank refused the payout's transfer (a wrong or closed account, say): the amount is owed again \
                 and paid with the next payout"
            }
        }
    }
}

/// `dispute.opened`: a dispute of an invoice was opened (dunning of it pauses); `dispute.closed`:
/// an operator closed it, or its deadline passed without a defence (`result`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeEvent {
    pub dispute_id: uuid::Uuid,
    pub capture_id: CaptureId,
    /// `return`, `goods_not_received`, `faulty_goods`, `already_paid`, `incorrect_invoice` or
    /// `unauthorized_purchase`.
    pub reason_code: String,
    pub currency: String,
    /// Disputed, minor units.
    pub amount: i64,
    /// The PSP's defence is due by then.
    pub deadline: DateTime<Utc>,
    /// `open`, `resolved` or `chargeback`.
    pub state: String,
    /// What a chargeback took off the invoice (recovered from the PSP's next payout); 0 otherwise.
    pub charged_back: i64,
}

/// Which dispute event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeEventKind {
    Opened,
    Closed,
}

impl DisputeEventKind {
    pub const ALL: [DisputeEventKind; 2] = [Self::Opened, Self::Closed];

    pub fn event_type(self) -> &'static str {
        match self {
            Self::Opened => "dispute.opened",
            Self::Closed => "dispute.closed",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Opened => {
                "A dispute of an invoice was opened (by the buyer, an operator or the sandbox); its dunning pauses"
            }
            Self::Closed => {
                "A dispute was closed: `resolved` (dunning resumes) or `chargeback` (recovered from the next payout), \
                 by an operator or because its deadline passed without a defence"
            }
        }
    }
}

/// Which dunning step event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DunningEventKind {
    Reminder,
    LevelChanged,
    Collection,
}

impl DunningEventKind {
    pub const ALL: [DunningEventKind; 3] = [Self::Reminder, Self::LevelChanged, Self::Collection];

    pub fn event_type(self) -> &'static str {
        match self {
            Self::Reminder => "dunning.reminder",
            Self::LevelChanged => "dunning.level_changed",
            Self::Collection => "dunning.collection",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Reminder => "A friendly payment reminder went to the buyer before the due date",
            Self::LevelChanged => {
                "The invoice reached a dunning level (notice sent; fee and interest charged per the policy)"
            }
            Self::Collection => "The claim was handed over to collection",
        }
    }
}

/// Which `order.*` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEventKind {
    Created,
    Declined,
    Waiting,
    Approved,
    PartiallyShipped,
    Shipped,
    Canceled,
    Complete,
    Expired,
}

impl OrderEventKind {
    pub const ALL: [OrderEventKind; 9] = [
        Self::Created,
        Self::Declined,
        Self::Waiting,
        Self::Approved,
        Self::PartiallyShipped,
        Self::Shipped,
        Self::Canceled,
        Self::Complete,
        Self::Expired,
    ];

    pub fn event_type(self) -> &'static str {
        match self {
            Self::Created => "order.created",
            Self::Declined => "order.declined",
            Self::Waiting => "order.waiting",
            Self::Approved => "order.approved",
            Self::PartiallyShipped => "order.partially_shipped",
            Self::Shipped => "order.shipped",
            Self::Canceled => "order.canceled",
            Self::Complete => "order.complete",
            Self::Expired => "order.expired",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Created => "The order is created: approved on the payment page, or a widget authorization confirmed",
            Self::Declined => "The order is declined (by the credit decision or an operator)",
            Self::Waiting => "The order waits for an operator's review",
            Self::Approved => "An operator approved an order in review",
            Self::PartiallyShipped => "Part of the order is captured",
            Self::Shipped => "Nothing is left to capture (captured in full, or the rest canceled)",
            Self::Canceled => "The order, or its uncaptured rest, is canceled",
            Self::Complete => "Every invoice of the order is paid or settled",
            Self::Expired => "An unconfirmed widget authorization ran out",
        }
    }

    /// The event announcing that an order reached `state`, if any does.
    pub fn for_state(state: OrderState) -> Option<OrderEventKind> {
        match state {
            OrderState::PreWaiting | OrderState::Authorized => None,
            OrderState::Waiting => Some(Self::Waiting),
            OrderState::Created => Some(Self::Created),
            OrderState::Declined => Some(Self::Declined),
            OrderState::PartiallyShipped => Some(Self::PartiallyShipped),
            OrderState::Shipped => Some(Self::Shipped),
            OrderState::Complete => Some(Self::Complete),
            OrderState::Canceled => Some(Self::Canceled),
            OrderState::Expired => Some(Self::Expired),
        }
    }
}

/// Which state change of an invoice `CaptureEventData` announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureEventKind {
    Canceled,
    Late,
    Paid,
}

impl CaptureEventKind {
    pub const ALL: [CaptureEventKind; 3] = [Self::Canceled, Self::Late, Self::Paid];

    pub fn event_type(self) -> &'static str {
        match self {
            Self::Canceled => "capture.canceled",
            Self::Late => "capture.late",
            Self::Paid => "capture.paid",
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Self::Canceled => "The invoice is refunded in full",
            Self::Late => "The invoice is past its due date",
            Self::Paid => "The invoice is paid",
        }
    }
}

/// Every event netterms emits. An event can only be written as one of these.
#[derive(Debug, Clone)]
pub enum Event {
    Authorization(AuthorizationEvent),
    Order(OrderEventKind, OrderEventData),
    CaptureCreated(CaptureCreatedEvent),
    CaptureUpdated(CaptureUpdatedEvent),
    Capture(CaptureEventKind, CaptureEventData),
    RefundCreated(RefundCreatedEvent),
    MerchantActivated(MerchantEventData),
    MerchantDeactivated(MerchantEventData),
    Dunning(DunningEventKind, DunningEvent),
    DunningPaused(DunningPauseEvent),
    DunningResumed(DunningPauseEvent),
    Payment(PaymentEventKind, PaymentEvent),
    Payout(PayoutEventKind, PayoutEvent),
    Dispute(DisputeEventKind, DisputeEvent),
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Authorization(_) => "authorization",
            Event::Order(k, _) => k.event_type(),
            Event::CaptureCreated(_) => "capture.created",
            Event::CaptureUpdated(_) => "capture.updated",
            Event::Capture(k, _) => k.event_type(),
            Event::RefundCreated(_) => "refund.created",
            Event::MerchantActivated(_) => "merchant.activated",
            Event::MerchantDeactivated(_) => "merchant.deactivated",
            Event::Dunning(k, _) => k.event_type(),
            Event::DunningPaused(_) => "dunning.paused",
            Event::DunningResumed(_) => "dunning.resumed",
            Event::Payment(k, _) => k.event_type(),
            Event::Payout(k, _) => k.event_type(),
            Event::Dispute(k, _) => k.event_type(),
        }
    }

    /// The payload, as the `data` of the delivered body.
    pub fn data(&self) -> serde_json::Value {
        let v = match self {
            Event::Authorization(d) => serde_json::to_value(d),
            Event::Order(_, d) => serde_json::to_value(d),
            Event::CaptureCreated(d) => serde_json::to_value(d),
            Event::CaptureUpdated(d) => serde_json::to_value(d),
            Event::Capture(_, d) => serde_json::to_value(d),
            Event::RefundCreated(d) => serde_json::to_value(d),
            Event::MerchantActivated(d) | Event::MerchantDeactivated(d) => serde_json::to_value(d),
            Event::Dunning(_, d) => serde_json::to_value(d),
            Event::DunningPaused(d) | Event::DunningResumed(d) => serde_json::to_value(d),
            Event::Payment(_, d) => serde_json::to_value(d),
            Event::Payout(_, d) => serde_json::to_value(d),
            Event::Dispute(_, d) => serde_json::to_value(d),
        };
        // Plain structs of ids, numbers and strings always serialize.
        v.unwrap_or_default()
    }
}

/// One entry of the event catalogue.
#[derive(Debug, Clone)]
pub struct EventDoc {
    pub event_type: &'static str,
    pub summary: &'static str,
    /// The name of the payload's schema among the OpenAPI components.
    pub schema: String,
}

fn doc<T: ToSchema>(event_type: &'static str, summary: &'static str) -> EventDoc {
    EventDoc { event_type, summary, schema: T::name().into_owned() }
}

/// Every event type with its payload schema, in the order a reader meets them.
pub fn catalogue() -> Vec<EventDoc> {
    let mut out = vec![doc::<AuthorizationEvent>(
        "authorization",
        "The buyer submitted a checkout: approved (`success: true`) or declined, with the reason",
    )];
    out.extend(OrderEventKind::ALL.iter().map(|k| doc::<OrderEventData>(k.event_type(), k.summary())));
    out.push(doc::<CaptureCreatedEvent>("capture.created", "An invoice was issued (a capture)"));
    out.push(doc::<CaptureUpdatedEvent>("capture.updated", "The invoice's payment term was extended"));
    out.extend(CaptureEventKind::ALL.iter().map(|k| doc::<CaptureEventData>(k.event_type(), k.summary())));
    out.push(doc::<RefundCreatedEvent>("refund.created", "A credit note was issued (a refund)"));
    out.extend(DunningEventKind::ALL.iter().map(|k| doc::<DunningEvent>(k.event_type(), k.summary())));
    out.push(doc::<DunningPauseEvent>(
        "dunning.paused",
        "Dunning of the invoice is paused: by an operator, for 5 days after the buyer said it paid, or while a \
         dispute is open (`until` null)",
    ));
    out.push(doc::<DunningPauseEvent>(
        "dunning.resumed",
        "Dunning of the invoice resumed (by an operator, or its pause ran out)",
    ));
    out.extend(PaymentEventKind::ALL.iter().map(|k| doc::<PaymentEvent>(k.event_type(), k.summary())));
    out.extend(PayoutEventKind::ALL.iter().map(|k| doc::<PayoutEvent>(k.event_type(), k.summary())));
    out.extend(DisputeEventKind::ALL.iter().map(|k| doc::<DisputeEvent>(k.event_type(), k.summary())));
    out.push(doc::<MerchantEventData>("merchant.activated", "A merchant was activated or reactivated"));
    out.push(doc::<MerchantEventData>("merchant.deactivated", "A merchant was deactivated"));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// One event of every variant and kind. The match makes a new variant fail to compile here
    /// until it is given an example, and the test below then requires it in the catalogue.
    fn examples() -> Vec<Event> {
        let order = OrderEventData {
            order_id: OrderId::new(),
            merchant_id: MerchantId::new(),
            state: OrderState::Created,
            decline_reason: None,
        };
        let capture = CaptureEventData { capture_id: CaptureId::new() };
        let merchant = MerchantEventData { merchant_id: MerchantId::new() };
        let mut all = vec![
            Event::Authorization(AuthorizationEvent {
                order_id: OrderId::new(),
                success: true,
                session_id: SessionId::new(),
                merchant_id: MerchantId::new(),
                state: OrderState::Created,
                decline_reason: None,
            }),
            Event::CaptureCreated(CaptureCreatedEvent {
                capture_id: CaptureId::new(),
                order_id: OrderId::new(),
                gross: 1,
            }),
            Event::CaptureUpdated(CaptureUpdatedEvent {
                capture_id: CaptureId::new(),
                duration: 60,
                due_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            }),
            Event::RefundCreated(RefundCreatedEvent {
                refund_id: RefundId::new(),
                capture_id: CaptureId::new(),
                gross: 1,
            }),
            Event::MerchantActivated(merchant.clone()),
            Event::MerchantDeactivated(merchant),
        ];
        all.extend(OrderEventKind::ALL.iter().map(|k| Event::Order(*k, order.clone())));
        all.extend(CaptureEventKind::ALL.iter().map(|k| Event::Capture(*k, capture.clone())));
        let dunning = DunningEvent {
            capture_id: CaptureId::new(),
            order_id: OrderId::new(),
            step: "level_2".into(),
            level: 2,
            currency: "EUR".into(),
            outstanding: 11900,
            fee_charged: 4000,
            interest_charged: 72,
            total_due: 15972,
            deadline: None,
            total_by_deadline: None,
        };
        all.extend(DunningEventKind::ALL.iter().map(|k| Event::Dunning(*k, dunning.clone())));
        let pause = DunningPauseEvent { capture_id: CaptureId::new(), reason: "buyer disputes".into(), until: None };
        all.push(Event::DunningPaused(pause.clone()));
        all.push(Event::DunningResumed(pause));
        let payment = PaymentEvent {
            payment_id: uuid::Uuid::now_v7(),
            capture_id: CaptureId::new(),
            order_id: OrderId::new(),
            currency: "EUR".into(),
            amount: 11900,
            charges: 0,
            principal: 11900,
            matched_by: "structured_reference".into(),
            outstanding: 0,
            return_reason: None,
        };
        all.extend(PaymentEventKind::ALL.iter().map(|k| Event::Payment(*k, payment.clone())));
        let payout = PayoutEvent {
            payout_id: uuid::Uuid::now_v7(),
            currency: "EUR".into(),
            amount: 11424,
            period_end: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            state: "pending".into(),
        };
        all.extend(PayoutEventKind::ALL.iter().map(|k| Event::Payout(*k, payout.clone())));
        let dispute = DisputeEvent {
            dispute_id: uuid::Uuid::now_v7(),
            capture_id: CaptureId::new(),
            reason_code: "faulty_goods".into(),
            currency: "EUR".into(),
            amount: 11900,
            deadline: DateTime::<Utc>::UNIX_EPOCH,
            state: "open".into(),
            charged_back: 0,
        };
        all.extend(DisputeEventKind::ALL.iter().map(|k| Event::Dispute(*k, dispute.clone())));
        for e in &all {
            match e {
                Event::Authorization(_)
                | Event::Order(..)
                | Event::CaptureCreated(_)
                | Event::CaptureUpdated(_)
                | Event::Capture(..)
                | Event::RefundCreated(_)
                | Event::MerchantActivated(_)
                | Event::MerchantDeactivated(_)
                | Event::Dunning(..)
                | Event::DunningPaused(_)
                | Event::DunningResumed(_)
                | Event::Payment(..)
                | Event::Payout(..)
                | Event::Dispute(..) => {}
            }
        }
        all
    }

    #[test]
    fn every_event_the_code_can_emit_is_in_the_catalogue_once() {
        let catalogue = catalogue();
        let types: Vec<&str> = catalogue.iter().map(|d| d.event_type).collect();
        let mut unique = types.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), types.len(), "no type twice");
        let examples = examples();
        for e in &examples {
            assert!(types.contains(&e.event_type()), "{} is not documented", e.event_type());
            assert!(e.data().is_object());
        }
        assert_eq!(examples.len(), types.len(), "every documented type can be emitted");
    }
}
