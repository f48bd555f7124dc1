//! Order data shared by both checkout flows, its validation, and the order state machine.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::legal_forms;
use super::merchant::{Address, AddressInput};
use super::money::Currency;
use super::validate::{self, FieldError, Violations};

/// An amount as clients send it: integer minor units; `gross = net + tax`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AmountInput {
    /// ISO 4217; default EUR.
    #[schema(example = "EUR")]
    pub currency: Option<String>,
    #[schema(required = true, example = 11900)]
    pub gross: Option<i64>,
    #[schema(required = true, example = 10000)]
    pub net: Option<i64>,
    #[schema(required = true, example = 1900)]
    pub tax: Option<i64>,
}

/// A checked amount in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Amount {
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    pub gross: i64,
    pub net: i64,
    pub tax: i64,
}

impl AmountInput {
    /// Checks the amount; `positive` requires gross and net above zero.
    pub fn validate(self, v: &mut Violations, path: &str, currencies: &[String], positive: bool) -> Option<Amount> {
        let currency = match self.currency.as_deref().unwrap_or("EUR") {
            c if currencies.iter().any(|x| x == c) => Currency::parse(c).ok(),
            _ => {
                v.add(format!("{path}.currency"), format!("currency must be one of {}", currencies.join(", ")));
                None
            }
        };
        let gross = v.required(&format!("{path}.gross"), self.gross);
        let net = v.required(&format!("{path}.net"), self.net);
        let tax = v.required(&format!("{path}.tax"), self.tax);
        let (Some(currency), Some(gross), Some(net), Some(tax)) = (currency, gross, net, tax) else { return None };
        let mut ok = true;
        let min = i64::from(positive);
        if gross < min || net < min {
            v.add(format!("{path}.gross"), format!("gross and net must be at least {min}"));
            ok = false;
        }
        if tax < 0 {
            v.add(format!("{path}.tax"), "tax must not be negative");
            ok = false;
        }
        if gross > 100_000_000_000 {
            v.add(format!("{path}.gross"), "gross is too large");
            ok = false;
        }
        if ok && net.checked_add(tax) != Some(gross) {
            v.add(format!("{path}.gross"), "gross must equal net + tax");
            ok = false;
        }
        ok.then_some(Amount { currency, gross, net, tax })
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct DebtorCompanyInput {
    #[schema(required = true, example = "Kunde Maschinenbau GmbH")]
    pub name: Option<String>,
    #[schema(required = true, example = "10001")]
    pub legal_form: Option<String>,
    #[schema(example = "HRB 54321")]
    pub registration_number: Option<String>,
    #[schema(example = "Amtsgericht München")]
    pub registration_court: Option<String>,
    #[schema(example = "DE987654321")]
    pub tax_id: Option<String>,
    #[schema(required = true)]
    pub address: Option<AddressInput>,
    /// The merchant's own id of this customer.
    pub merchant_customer_id: Option<String>,
}

/// The buying company as the order carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DebtorCompany {
    pub name: String,
    pub legal_form: String,
    pub registration_number: Option<String>,
    pub registration_court: Option<String>,
    pub tax_id: Option<String>,
    pub address: Address,
    pub merchant_customer_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct DebtorPersonInput {
    /// `m` or `f`.
    pub salutation: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[schema(required = true, example = "einkauf@kunde.example")]
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// The person acting for the buyer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DebtorPerson {
    pub salutation: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: String,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct LineItemInput {
    #[schema(required = true)]
    pub external_id: Option<String>,
    #[schema(required = true)]
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(required = true, example = 1)]
    pub quantity: Option<i64>,
    /// The line's total (not the unit price).
    #[schema(required = true)]
    pub amount: Option<AmountInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineItem {
    pub external_id: String,
    pub title: String,
    pub description: Option<String>,
    pub quantity: i64,
    pub amount: Amount,
}

/// Order data as both checkout flows send it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct OrderInput {
    /// The merchant's order number.
    pub external_order_id: Option<String>,
    #[schema(required = true)]
    pub amount: Option<AmountInput>,
    /// Payment term in days (7–120, within the merchant's terms).
    #[schema(required = true, example = 30)]
    pub duration: Option<i64>,
    #[schema(required = true)]
    pub debtor_company: Option<DebtorCompanyInput>,
    pub debtor_person: Option<DebtorPersonInput>,
    pub delivery_address: Option<AddressInput>,
    pub billing_address: Option<AddressInput>,
    pub line_items: Option<Vec<LineItemInput>>,
    pub comment: Option<String>,
}

/// Checked order data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderData {
    pub external_order_id: Option<String>,
    pub amount: Amount,
    pub duration: i64,
    pub debtor_company: DebtorCompany,
    pub debtor_person: Option<DebtorPerson>,
    pub delivery_address: Option<Address>,
    pub billing_address: Option<Address>,
    pub line_items: Vec<LineItem>,
    pub comment: Option<String>,
}

fn address(v: &mut Violations, path: &str, a: Option<AddressInput>, required: bool) -> Option<Address> {
    let a = if required { v.required(path, a)? } else { a? };
    match a.validate() {
        Ok(a) => Some(a),
        Err(e) => {
            v.extend_prefixed(path, e);
            None
        }
    }
}

impl DebtorCompanyInput {
    pub fn validate(self, v: &mut Violations, path: &str) -> Option<DebtorCompany> {
        let name = v.text(&format!("{path}.name"), self.name, 255);
        let legal_form = v.text(&format!("{path}.legal_form"), self.legal_form, 10);
        if legal_form.as_deref().is_some_and(|c| legal_forms::find(c).is_none()) {
            v.add(format!("{path}.legal_form"), "legal_form is not a code from /v1/legal-forms");
        }
        let registration_number = v.opt_text(&format!("{path}.registration_number"), self.registration_number, 100);
        let registration_court = v.opt_text(&format!("{path}.registration_court"), self.registration_court, 255);
        let tax_id =
            v.opt_text(&format!("{path}.tax_id"), self.tax_id, 20).map(|t| t.to_ascii_uppercase().replace(' ', ""));
        if tax_id.as_deref().is_some_and(|t| !t.chars().all(|c| c.is_ascii_alphanumeric())) {
            v.add(format!("{path}.tax_id"), "tax_id must consist of letters and digits, like DE123456789");
        }
        let address = address(v, &format!("{path}.address"), self.address, true);
        let merchant_customer_id = v.opt_text(&format!("{path}.merchant_customer_id"), self.merchant_customer_id, 255);
        Some(DebtorCompany {
            name: name?,
            legal_form: legal_form?,
            registration_number,
            registration_court,
            tax_id,
            address: address?,
            merchant_customer_id,
        })
    }
}

impl DebtorPersonInput {
    pub fn validate(self, v: &mut Violations, path: &str) -> Option<DebtorPerson> {
        let salutation = v.opt_text(&format!("{path}.salutation"), self.salutation, 1);
        if salutation.as_deref().is_some_and(|s| s != "m" && s != "f") {
            v.add(format!("{path}.salutation"), "salutation must be m or f");
        }
        let first_name = v.opt_text(&format!("{path}.first_name"), self.first_name, 255);
        let last_name = v.opt_text(&format!("{path}.last_name"), self.last_name, 255);
        let email = v.text(&format!("{path}.email"), self.email, 254);
        if email.as_deref().is_some_and(|e| !validate::is_email(e)) {
            v.add(format!("{path}.email"), "email must be an e-mail address");
        }
        let phone = v.opt_text(&format!("{path}.phone"), self.phone, 21);
        if phone.as_deref().is_some_and(|p| !validate::is_phone(p)) {
            v.add(format!("{path}.phone"), "phone must be a phone number of 5 to 21 characters");
        }
        Some(DebtorPerson { salutation, first_name, last_name, email: email?, phone })
    }
}

/// At most this many line items in one order, capture or refund.
pub const MAX_LINE_ITEMS: usize = 100;

/// Checks line items (at `path`, e.g. `line_items`): each complete and in range, at most
/// [`MAX_LINE_ITEMS`], and, when `total` is known and items are given, adding up to it.
pub fn validate_line_items(
    v: &mut Violations,
    path: &str,
    items: Option<Vec<LineItemInput>>,
    currencies: &[String],
    total: Option<Amount>,
) -> Vec<LineItem> {
    let items = items.unwrap_or_default();
    if items.len() > MAX_LINE_ITEMS {
        v.add(path, format!("at most {MAX_LINE_ITEMS} line items"));
        return Vec::new();
    }
    let mut line_items = Vec::new();
    for (i, li) in items.into_iter().enumerate() {
        let lp = format!("{path}[{i}]");
        let external_id = v.text(&format!("{lp}.external_id"), li.external_id, 255);
        let title = v.text(&format!("{lp}.title"), li.title, 255);
        let description = v.opt_text(&format!("{lp}.description"), li.description, 1000);
        let quantity = v.required(&format!("{lp}.quantity"), li.quantity);
        if quantity.is_some_and(|q| !(1..=1_000_000).contains(&q)) {
            v.add(format!("{lp}.quantity"), "quantity must be between 1 and 1000000");
        }
        let amount = v
            .required(&format!("{lp}.amount"), li.amount)
            .and_then(|a| a.validate(v, &format!("{lp}.amount"), currencies, false));
        if let (Some(external_id), Some(title), Some(quantity), Some(amount)) = (external_id, title, quantity, amount) {
            line_items.push(LineItem { external_id, title, description, quantity, amount });
        }
    }
    if let Some(a) = total
        && !line_items.is_empty()
    {
        let sum = line_items.iter().try_fold((0i64, 0i64, 0i64), |(g, n, t), li| {
            if li.amount.currency != a.currency {
                return None;
            }
            Some((g.checked_add(li.amount.gross)?, n.checked_add(li.amount.net)?, t.checked_add(li.amount.tax)?))
        });
        if sum != Some((a.gross, a.net, a.tax)) {
            v.add(path, "line items must add up to the amount (gross, net and tax, same currency)");
        }
    }
    line_items
}

impl OrderInput {
    /// Checks order data; `path` prefixes every `source` (e.g. `order`).
    pub fn validate(self, currencies: &[String], path: &str) -> Result<OrderData, Vec<FieldError>> {
        let p = |f: &str| if path.is_empty() { f.to_owned() } else { format!("{path}.{f}") };
        let mut v = Violations::new();
        let external_order_id = v.opt_text(&p("external_order_id"), self.external_order_id, 255);
        let amount =
            v.required(&p("amount"), self.amount).and_then(|a| a.validate(&mut v, &p("amount"), currencies, true));
        let duration = v.required(&p("duration"), self.duration);
        if duration.is_some_and(|d| !(7..=120).contains(&d)) {
            v.add(p("duration"), "duration must be between 7 and 120 days");
        }
        let debtor_company = v
            .required(&p("debtor_company"), self.debtor_company)
            .and_then(|c| c.validate(&mut v, &p("debtor_company")));
        let debtor_person = self.debtor_person.map(|d| d.validate(&mut v, &p("debtor_person")));
        let delivery_address = address(&mut v, &p("delivery_address"), self.delivery_address, false);
        let billing_address = address(&mut v, &p("billing_address"), self.billing_address, false);
        let line_items = validate_line_items(&mut v, &p("line_items"), self.line_items, currencies, amount);
        let comment = v.opt_text(&p("comment"), self.comment, 255);
        v.finish()?;
        match (amount, duration, debtor_company, debtor_person) {
            (Some(amount), Some(duration), Some(debtor_company), person) => Ok(OrderData {
                external_order_id,
                amount,
                duration,
                debtor_company,
                debtor_person: person.flatten(),
                delivery_address,
                billing_address,
                line_items,
                comment,
            }),
            _ => Err(vec![FieldError { source: path.to_owned(), title: "order data is incomplete".into() }]),
        }
    }
}

/// An order's state: `pre_waiting`/`authorized` (not yet confirmed), `waiting` (in review),
/// `created`, `partially_shipped`, `shipped`, `complete`, or the ends `declined`, `canceled`,
/// `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    PreWaiting,
    Authorized,
    Waiting,
    Created,
    Declined,
    PartiallyShipped,
    Shipped,
    Complete,
    Canceled,
    Expired,
}

/// Why an order was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    RiskPolicy,
    DebtorNotIdentified,
    DebtorAddress,
    DebtorLimitExceeded,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::RiskPolicy => "risk_policy",
            DeclineReason::DebtorNotIdentified => "debtor_not_identified",
            DeclineReason::DebtorAddress => "debtor_address",
            DeclineReason::DebtorLimitExceeded => "debtor_limit_exceeded",
        }
    }

    pub fn parse(s: &str) -> Option<DeclineReason> {
        [Self::RiskPolicy, Self::DebtorNotIdentified, Self::DebtorAddress, Self::DebtorLimitExceeded]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What happens to an order; each is allowed from some states only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The PSP confirmed a widget authorization.
    Confirm,
    /// An operator approved an order in review.
    Approve,
    /// An operator declined an order in review.
    Decline,
    /// An unconfirmed authorization ran out.
    Expire,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::PreWaiting => "pre_waiting",
            OrderState::Authorized => "authorized",
            OrderState::Waiting => "waiting",
            OrderState::Created => "created",
            OrderState::Declined => "declined",
            OrderState::PartiallyShipped => "partially_shipped",
            OrderState::Shipped => "shipped",
            OrderState::Complete => "complete",
            OrderState::Canceled => "canceled",
            OrderState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<OrderState> {
        use OrderState::*;
        [PreWaiting, Authorized, Waiting, Created, Declined, PartiallyShipped, Shipped, Complete, Canceled, Expired]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// The state after `event`, or `None` if `event` is not allowed now. The one place that says
    /// which transitions exist.
    pub fn next(self, event: OrderEvent) -> Option<OrderState> {
        use OrderEvent::*;
        use OrderState::*;
        match (self, event) {
            (Authorized, Confirm) => Some(Created),
            (PreWaiting, Confirm) => Some(Waiting),
            (Waiting, Approve) => Some(Created),
            (PreWaiting, Approve) => Some(Authorized),
            (Waiting | PreWaiting, Decline) => Some(Declined),
            (Authorized | PreWaiting, Expire) => Some(Expired),
            _ => None,
        }
    }

    /// Whether the order's amount counts against the buyer's limit (authorized, not yet captured).
    pub fn holds_exposure(self) -> bool {
        matches!(self, OrderState::PreWaiting | OrderState::Authorized | OrderState::Waiting | OrderState::Created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cur() -> Vec<String> {
        vec!["EUR".into()]
    }

    fn order() -> serde_json::Value {
        json!({
            "amount": {"gross": 11900, "net": 10000, "tax": 1900},
            "duration": 30,
            "debtor_company": {"name": "Kunde GmbH", "legal_form": "10001", "registration_number": "HRB 1",
                "address": {"street": "A", "postal_code": "10115", "city": "Berlin", "country": "DE"}},
            "line_items": [
                {"external_id": "a", "title": "A", "quantity": 1, "amount": {"gross": 5950, "net": 5000, "tax": 950}},
                {"external_id": "b", "title": "B", "quantity": 2, "amount": {"gross": 5950, "net": 5000, "tax": 950}}
            ]
        })
    }

    #[test]
    fn valid_order() {
        let o: OrderInput = serde_json::from_value(order()).unwrap();
        let d = o.validate(&cur(), "").unwrap();
        assert_eq!(d.amount.gross, 11900);
        assert_eq!(d.line_items.len(), 2);
    }

    #[test]
    fn arithmetic_and_sums_are_checked() {
        let mut o = order();
        o["amount"]["gross"] = json!(12000);
        let errs = serde_json::from_value::<OrderInput>(o).unwrap().validate(&cur(), "order").unwrap_err();
        assert_eq!(errs[0].source, "order.amount.gross");
        let mut o = order();
        o["line_items"][1]["amount"] = json!({"gross": 119, "net": 100, "tax": 19});
        let errs = serde_json::from_value::<OrderInput>(o).unwrap().validate(&cur(), "").unwrap_err();
        assert_eq!(errs[0].source, "line_items");
        let mut o = order();
        o["amount"]["currency"] = json!("USD");
        o["duration"] = json!(5);
        let errs = serde_json::from_value::<OrderInput>(o).unwrap().validate(&cur(), "").unwrap_err();
        let s: Vec<_> = errs.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(s, ["amount.currency", "duration"]);
    }

    #[test]
    fn state_machine() {
        use OrderEvent::*;
        use OrderState::*;
        assert_eq!(Authorized.next(Confirm), Some(Created));
        assert_eq!(PreWaiting.next(Confirm), Some(Waiting));
        assert_eq!(Created.next(Confirm), None);
        assert_eq!(Declined.next(Approve), None);
        assert_eq!(Waiting.next(Approve), Some(Created));
        assert_eq!(Created.next(Expire), None);
        for s in
            [PreWaiting, Authorized, Waiting, Created, Declined, PartiallyShipped, Shipped, Complete, Canceled, Expired]
        {
            assert_eq!(OrderState::parse(s.as_str()), Some(s));
        }
    }
}
