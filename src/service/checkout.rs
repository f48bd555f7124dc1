//! Checkout: the buyer's authorization with its credit decision (rules, limits, buyers and their
//! virtual IBANs), the operator's credit policy, and the errors of the checkout use cases.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use crate::config::Environment;
use crate::domain::decision::{self, Facts, Outcome};
use crate::domain::events::{AuthorizationEvent, Event, OrderEventData, OrderEventKind};
use crate::domain::ids::{BuyerId, OrderId, SessionId};
use crate::domain::merchant::{Address, MerchantStatus};
use crate::domain::order::{Amount, DebtorCompany, DeclineReason, OrderData, OrderInput, OrderState};
use crate::domain::validate::{FieldError, Violations};
use crate::domain::{iban, legal_forms};
use crate::secrets::Purpose;
use crate::store::checkout::{self as store, ExposureOf, SessionRow};
use crate::store::orders::{self as orders_store, NewOrder};
use crate::store::{StoreError, Tx, events, merchants};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("not found")]
    NotFound(&'static str),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("the confirmation differs from the authorization")]
    Mismatch(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the merchant is inactive")]
    MerchantInactive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn conflict(msg: impl Into<String>) -> CheckoutError {
    CheckoutError::Conflict(msg.into())
}

/// `{accept_url, decline_url, cancel_url}` of a payment-page session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RedirectUrls {
    #[schema(required = true, example = "https://shop.example/checkout/accept")]
    pub accept_url: Option<String>,
    #[schema(required = true, example = "https://shop.example/checkout/decline")]
    pub decline_url: Option<String>,
    #[schema(required = true, example = "https://shop.example/checkout/cancel")]
    pub cancel_url: Option<String>,
}

/// A session's status, with an open session past its expiry reported as expired.
pub(crate) fn effective_status(row: &SessionRow, now: DateTime<Utc>) -> String {
    if matches!(row.status.as_str(), "open" | "declined") && row.expires_at <= now {
        "expired".into()
    } else {
        row.status.clone()
    }
}

/// `url` with `params` added to its query, before any `#fragment`.
pub(crate) fn redirect_with(url: &str, params: &[(&str, String)]) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = base.to_owned();
    for (k, v) in params {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(k);
        out.push('=');
        out.push_str(&v.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect::<String>());
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Payment methods a buyer can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    BankTransfer,
    DirectDebit,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::BankTransfer => "bank_transfer",
            PaymentMethod::DirectDebit => "direct_debit",
        }
    }
}

/// The body of `POST /checkout-api/v1/sessions/{id}/authorize`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AuthorizeInput {
    /// Widget: the order data the merchant page passed to `mount`. Payment page: omitted, or
    /// only the buyer's corrections of `debtor_company` / `debtor_person`.
    pub order: Option<OrderInput>,
    #[schema(required = true)]
    pub payment_method: Option<PaymentMethod>,
    /// The buyer's IBAN (direct debit only).
    pub iban: Option<String>,
    #[schema(required = true)]
    pub terms_accepted: Option<bool>,
    /// The language the buyer read the page in (`de` or `en`; default: the session's), which
    /// selects the mandate text stored with a direct debit.
    pub locale: Option<String>,
}

/// The SEPA B2B mandate text the buyer agrees to, in German or English.
pub fn mandate_text(lang: &str) -> &'static str {
    if lang == "en" {
        "I authorise netterms to collect payments from my account by SEPA business-to-business direct debit and \
         instruct my bank to debit my account accordingly. I am not entitled to a refund and must inform my bank \
         of this mandate before the first debit."
    } else {
        "Ich ermächtige netterms, Zahlungen von meinem Konto mittels SEPA-Firmenlastschrift einzuziehen. Zugleich \
         weise ich mein Kreditinstitut an, die Lastschriften einzulösen. Es besteht kein Erstattungsanspruch; ich \
         muss mein Kreditinstitut vor der Belastung über das Mandat informieren."
    }
}

/// The name of the stored credit policy in `settings`.
const POLICY_SETTING: &str = "credit_policy";

/// The credit policy in force: the operator's stored one, else the configuration's.
pub async fn credit_policy(
    s: &Services,
    conn: &mut impl crate::store::AsExec,
) -> Result<decision::Policy, CheckoutError> {
    match store::get_setting(conn, POLICY_SETTING).await? {
        Some(v) => serde_json::from_str(&v)
            .map_err(|e| CheckoutError::Store(StoreError::Corrupt(format!("settings.credit_policy: {e}")))),
        None => Ok(s.config.credit.clone()),
    }
}

/// Replaces the credit policy (operator).
pub async fn set_credit_policy(s: &Services, policy: &decision::Policy) -> Result<(), CheckoutError> {
    let v = policy.violations();
    if !v.is_empty() {
        return Err(CheckoutError::Invalid(v));
    }
    let mut tx = s.db.begin().await?;
    let value = serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store::put_setting(&mut tx, POLICY_SETTING, &value, s.clock.now()).await?;
    tx.commit().await?;
    tracing::info!("credit policy replaced");
    Ok(())
}

/// The answer to an authorization (a decline is an answer, not an error).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizeResult {
    pub state: OrderState,
    pub decline_reason: Option<DeclineReason>,
    pub order_id: OrderId,
    pub debtor_company: DebtorCompany,
    pub amount: Amount,
    pub duration: i64,
    pub delivery_address: Option<Address>,
    /// Payment page: where the browser goes next.
    pub redirect_url: Option<String>,
    /// Direct debit: the SEPA B2B mandate reference the buyer agreed to.
    pub mandate_reference: Option<String>,
}

pub(crate) fn sandbox(s: &Services) -> bool {
    s.config.environment == Environment::Sandbox
}

/// The key that makes two mentions of one company the same buyer.
pub fn dedup_key(c: &DebtorCompany) -> String {
    let norm = |s: &str| s.to_lowercase().chars().filter(|c| c.is_alphanumeric()).collect::<String>();
    if let Some(t) = c.tax_id.as_deref().filter(|t| legal_forms::is_vat_id(t)) {
        return format!("vat:{}", t.to_ascii_uppercase());
    }
    if let (Some(r), Some(court)) = (c.registration_number.as_deref(), c.registration_court.as_deref()) {
        return format!("reg:{}|{}", norm(r), norm(court));
    }
    format!("name:{}|{}|{}", norm(&c.name), norm(&c.address.postal_code), c.address.country)
}

/// The buyer for `key`, created if new, locked until commit. A new buyer's virtual IBAN is
/// derived from its key; in the rare case that another buyer holds it, the next derivation is tried.
async fn buyer_locked(
    s: &Services,
    tx: &mut Tx,
    key: &str,
    company: &DebtorCompany,
    now: DateTime<Utc>,
) -> Result<store::Buyer, CheckoutError> {
    for attempt in 0..8u32 {
        let salted = if attempt == 0 { key.to_owned() } else { format!("{key}#{attempt}") };
        let iban = virtual_iban(&s.config.virtual_iban_bank_code, &salted);
        if let Some(b) = store::upsert_buyer_locked(tx, key, company, &iban, now).await? {
            return Ok(b);
        }
    }
    Err(CheckoutError::Store(StoreError::Corrupt("no free virtual IBAN after 8 derivations".into())))
}

/// A virtual IBAN for a new buyer: the configured bank code and a 10-digit account number derived
/// from the buyer's key, with valid check digits.
pub fn virtual_iban(bank_code: &str, key: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    let mut n: u64 = 0;
    for b in &h[..8] {
        n = (n << 8) | u64::from(*b);
    }
    let account = n % 10_000_000_000;
    iban::with_check_digits("DE", &format!("{bank_code}{account:010}")).unwrap_or_default()
}

/// The SEPA B2B mandate reference of a session (shown on the page before the buyer agrees,
/// stored with the order): `NT` and 24 letters and digits derived from the session with the
/// server key — its own value, which says nothing of the session — within SEPA's 35 characters.
pub fn mandate_reference(s: &Services, session_id: SessionId) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    format!("NT{}", s.keyring.derive(Purpose::MandateReference, session_id.0.as_bytes(), UPPER, 24))
}

/// The buyer authorizes: checks, decides, and records the order and its decision.
pub async fn authorize(
    s: &Services,
    session_id: SessionId,
    input: AuthorizeInput,
) -> Result<AuthorizeResult, CheckoutError> {
    let mut tx = s.db.begin().await?;
    let session = store::get_session(&mut tx, session_id, true).await?.ok_or(CheckoutError::NotFound("session"))?;
    let at = s.now_for(&mut tx, session.psp_id).await?;
    let now = at.now;
    match effective_status(&session, now).as_str() {
        "open" | "declined" => {}
        "expired" => return Err(conflict("this session has expired")),
        other => return Err(conflict(format!("this session is {other} and cannot be authorized again"))),
    }
    // Each submission writes an order, a decision and events: a declined session may be retried,
    // but not without bound.
    if session.attempts >= i64::from(s.config.checkout_max_attempts) {
        return Err(conflict(format!(
            "this session was submitted {} times, the most allowed; start a new checkout",
            session.attempts
        )));
    }

    let mut v = Violations::new();
    let data: Option<OrderData> = if session.kind == "payment_page" {
        let mut base: OrderData = serde_json::from_str(session.order_data.as_deref().unwrap_or("null"))
            .map_err(|e| StoreError::Corrupt(format!("checkout_sessions.order_data: {e}")))?;
        let corrections = input.order.unwrap_or_default();
        // Only the buyer's own data may change on the page; the merchant's order stands.
        for (field, present) in [
            ("external_order_id", corrections.external_order_id.is_some()),
            ("amount", corrections.amount.is_some()),
            ("duration", corrections.duration.is_some()),
            ("delivery_address", corrections.delivery_address.is_some()),
            ("billing_address", corrections.billing_address.is_some()),
            ("line_items", corrections.line_items.is_some()),
            ("comment", corrections.comment.is_some()),
        ] {
            if present {
                v.add(
                    format!("order.{field}"),
                    "only debtor_company and debtor_person can be corrected on a payment page",
                );
            }
        }
        if let Some(c) = corrections.debtor_company
            && let Some(c) = c.validate(&mut v, "order.debtor_company")
        {
            base.debtor_company = c;
        }
        if let Some(mut p) = corrections.debtor_person {
            // The page sends what the buyer typed; what the PSP sent and the page does not ask for
            // (salutation, names, phone) stays.
            if let Some(known) = &base.debtor_person {
                p.salutation = p.salutation.or_else(|| known.salutation.clone());
                p.first_name = p.first_name.or_else(|| known.first_name.clone());
                p.last_name = p.last_name.or_else(|| known.last_name.clone());
                p.phone = p.phone.or_else(|| known.phone.clone());
            }
            base.debtor_person = p.validate(&mut v, "order.debtor_person");
        }
        Some(base)
    } else {
        match v.required("order", input.order).map(|o| o.validate(&s.config.currencies, "order")) {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                for err in e {
                    v.add(err.source, err.title);
                }
                None
            }
            None => None,
        }
    };
    let method = v.required("payment_method", input.payment_method);
    if input.locale.as_deref().is_some_and(|l| l != "de" && l != "en") {
        v.add("locale", "locale must be de or en");
    }
    let debit_iban = match method {
        Some(PaymentMethod::DirectDebit) => match v.text("iban", input.iban, 64).map(|i| iban::validate(&i)) {
            Some(Ok(i)) => Some(i),
            Some(Err(e)) => {
                v.add("iban", format!("iban is not valid: {e}"));
                None
            }
            None => None,
        },
        _ => None,
    };
    if input.terms_accepted != Some(true) {
        v.add("terms_accepted", "the buyer must accept the terms");
    }
    let merchant = merchants::get(&mut tx, session.psp_id, session.merchant_id)
        .await?
        .ok_or(CheckoutError::NotFound("session"))?;
    if let Some(d) = &data {
        let t = merchant.payment_terms;
        if !(t.min_duration..=t.max_duration).contains(&d.duration) {
            v.add(
                "order.duration",
                format!("duration must lie within the merchant's terms ({}–{} days)", t.min_duration, t.max_duration),
            );
        }
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    if merchant.status == MerchantStatus::Inactive {
        return Err(CheckoutError::MerchantInactive);
    }
    let (Some(data), Some(method)) = (data, method) else { return Err(CheckoutError::Invalid(Vec::new())) };

    // One buyer at a time from here on: the buyer row is locked until commit.
    let key = dedup_key(&data.debtor_company);
    let buyer = buyer_locked(s, &mut tx, &key, &data.debtor_company, now).await?;
    let cur = data.amount.currency.as_str().to_owned();
    let policy = &credit_policy(s, &mut tx).await?;
    let buyer_exposure = store::exposure(&mut tx, ExposureOf::Buyer, buyer.id.0, &cur).await?;
    let buyer_dunning_level = match policy.decline_at_dunning_level {
        Some(_) => crate::store::dunning::buyer_level(&mut tx, buyer.id).await?,
        None => 0,
    };
    // Merchant and PSP limits are decided under their rows' locks too (after the buyer's).
    let merchant_exposure = match policy.merchant_limit {
        Some(_) => {
            store::lock_for_exposure(&mut tx, ExposureOf::Merchant, merchant.merchant_id.0).await?;
            store::exposure(&mut tx, ExposureOf::Merchant, merchant.merchant_id.0, &cur).await?
        }
        None => 0,
    };
    let psp_exposure = match policy.psp_limit {
        Some(_) => {
            store::lock_for_exposure(&mut tx, ExposureOf::Psp, session.psp_id.0).await?;
            store::exposure(&mut tx, ExposureOf::Psp, session.psp_id.0, &cur).await?
        }
        None => 0,
    };
    let decision = decision::decide(
        &Facts {
            company: &data.debtor_company,
            person_email: data.debtor_person.as_ref().map(|p| p.email.as_str()),
            amount: data.amount,
            buyer_limit: buyer.credit_limit,
            buyer_exposure,
            buyer_blocked: buyer.blocked,
            buyer_dunning_level,
            merchant_exposure,
            psp_exposure,
            sandbox: sandbox(s),
        },
        policy,
    );
    let page = session.kind == "payment_page";
    let state = match (decision.outcome, page) {
        (Outcome::Approved, true) => OrderState::Created,
        (Outcome::Approved, false) => OrderState::Authorized,
        (Outcome::Review, true) => OrderState::Waiting,
        (Outcome::Review, false) => OrderState::PreWaiting,
        (Outcome::Declined, _) => OrderState::Declined,
    };
    let mut mandate = (method == PaymentMethod::DirectDebit && state != OrderState::Declined)
        .then(|| mandate_reference(s, session_id));
    let lang = input.locale.as_deref().filter(|l| *l == "de" || *l == "en").unwrap_or(&session.locale);
    let mut stored_mandate_text = mandate.as_ref().map(|_| mandate_text(lang).to_owned());
    let (mut method, mut debit_iban, mut mandate_signed_at) = (method, debit_iban, None);
    // A buyer who chose direct debit for its future orders in the portal (SPEC §9.6) pays this
    // one so too, under that mandate, unless it gave another account here.
    if method == PaymentMethod::BankTransfer
        && state != OrderState::Declined
        && let Some(email) = orders_store::contact_email(&data)
        && let Some(p) = crate::store::portal::preference(&mut tx, &email, buyer.id).await?
    {
        method = PaymentMethod::DirectDebit;
        debit_iban = Some(p.debit_iban);
        mandate = Some(p.mandate_reference);
        stored_mandate_text = Some(p.mandate_text);
        mandate_signed_at = Some(p.signed_at);
    }
    let expires_at = (!page && matches!(state, OrderState::Authorized | OrderState::PreWaiting))
        .then(|| now + Duration::hours(s.config.authorization_ttl_hours));
    let reason = decision.decline_reason.map(DeclineReason::as_str);
    let order_id = orders_store::insert_order(
        &mut tx,
        &NewOrder {
            psp_id: session.psp_id,
            merchant_id: session.merchant_id,
            session_id,
            buyer_id: Some(buyer.id),
            state,
            decline_reason: reason,
            data: &data,
            payment_method: method.as_str(),
            debit_iban: debit_iban.as_deref(),
            mandate_reference: mandate.as_deref(),
            mandate_text: stored_mandate_text.as_deref(),
            mandate_signed_at,
            expires_at,
        },
        now,
    )
    .await?;
    let rules = serde_json::to_string(&decision.rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let outcome = match decision.outcome {
        Outcome::Approved => "approved",
        Outcome::Review => "review",
        Outcome::Declined => "declined",
    };
    store::insert_decision(&mut tx, order_id, Some(buyer.id), outcome, reason, &rules, now).await?;
    let session_status = match (state, page) {
        (OrderState::Declined, _) => "declined",
        (_, true) => "completed",
        (_, false) => "authorized",
    };
    store::set_session_status(&mut tx, session_id, session_status, Some(order_id), 1, now).await?;
    let success = state != OrderState::Declined;
    let event = Event::Authorization(AuthorizationEvent {
        order_id,
        success,
        session_id,
        merchant_id: session.merchant_id,
        state,
        decline_reason: decision.decline_reason,
    });
    events::append(&mut tx, session.psp_id, &event, at).await?;
    if let Some(kind) = OrderEventKind::for_state(state) {
        let data = OrderEventData {
            order_id,
            merchant_id: session.merchant_id,
            state,
            decline_reason: decision.decline_reason,
        };
        events::append(&mut tx, session.psp_id, &Event::Order(kind, data), at).await?;
    }
    tx.commit().await?;
    tracing::info!(%order_id, state = state.as_str(), decline_reason = reason, "checkout decided");

    let redirect_url = if page {
        let urls: RedirectUrls =
            serde_json::from_str(session.redirect_urls.as_deref().unwrap_or("{}")).unwrap_or_default();
        let target = if success { urls.accept_url } else { urls.decline_url };
        let mut params = vec![
            ("session_id", session_id.to_string()),
            ("order_id", order_id.to_string()),
            ("state", state.as_str().to_owned()),
        ];
        if let Some(r) = reason {
            params.push(("decline_reason", r.to_owned()));
        }
        target.map(|u| redirect_with(&u, &params))
    } else {
        None
    };
    Ok(AuthorizeResult {
        state,
        decline_reason: decision.decline_reason,
        order_id,
        debtor_company: data.debtor_company,
        amount: data.amount,
        duration: data.duration,
        delivery_address: data.delivery_address,
        redirect_url,
        mandate_reference: mandate,
    })
}

/// Sets a buyer's own credit limit or blocks it (operator).
pub async fn set_buyer(
    s: &Services,
    id: BuyerId,
    credit_limit: Option<Option<i64>>,
    blocked: Option<bool>,
) -> Result<store::Buyer, CheckoutError> {
    let mut tx = s.db.begin().await?;
    let b = store::set_buyer_overrides(&mut tx, id, credit_limit, blocked, s.clock.now())
        .await?
        .ok_or(CheckoutError::NotFound("buyer"))?;
    tx.commit().await?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_ibans_are_valid_and_stable() {
        let a = virtual_iban("10010010", "vat:DE123456789");
        assert!(iban::validate(&a).is_ok(), "{a}");
        assert_eq!(a, virtual_iban("10010010", "vat:DE123456789"));
        assert_ne!(a, virtual_iban("10010010", "vat:DE987654321"));
    }
}
