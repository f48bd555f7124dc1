//! Checkout: sessions of both flows, the buyer's authorization with its credit decision, the
//! PSP's confirmation, manual review, and expiry of unconfirmed authorizations.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use crate::config::Environment;
use crate::domain::decision::{self, Facts, Outcome};
use crate::domain::events::{AuthorizationEvent, Event, OrderEventData, OrderEventKind};
use crate::domain::ids::{BuyerId, MerchantId, OrderId, PspId, SessionId};
use crate::domain::merchant::{Address, MerchantStatus};
use crate::domain::order::{
    Amount, DebtorCompany, DebtorPerson, DeclineReason, LineItem, OrderData, OrderEvent, OrderInput, OrderState,
};
use crate::domain::validate::{self, FieldError, Violations};
use crate::domain::{iban, legal_forms};
use crate::secrets::{ALPHANUMERIC, Purpose};
use crate::store::checkout::{self as store, ExposureOf, NewOrder, OrderRow, SessionRow};
use crate::store::{StoreError, Tx, events, merchants};

/// How long a session can be used.
pub const SESSION_TTL: Duration = Duration::hours(48);

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

fn conflict(msg: impl Into<String>) -> CheckoutError {
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

/// The body of `POST /v1/payment-page-sessions`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PaymentPageSessionInput {
    #[schema(required = true)]
    pub merchant_id: Option<MerchantId>,
    #[schema(required = true)]
    pub order: Option<OrderInput>,
    #[schema(required = true)]
    pub redirect_urls: Option<RedirectUrls>,
    /// `de` or `en` (default `de`).
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentPageSession {
    pub session_id: SessionId,
    /// The buyer's credential for this session (in `payment_page_url`); keep it out of logs.
    #[schema(example = "cs_0192f0c4d2a87c3e9b1f6a2d4e8c0b7a_Xq3LmN8pR2sT5vW9yZ1bC4dF6gH8jK0m")]
    pub client_secret: String,
    /// Send the buyer here.
    pub payment_page_url: String,
    pub expires_at: DateTime<Utc>,
    pub status: String,
}

/// The body of `POST /v1/widget-sessions`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct WidgetSessionInput {
    #[schema(required = true)]
    pub merchant_id: Option<MerchantId>,
    pub merchant_customer_id: Option<String>,
    /// Origins of the pages that may host the widget, e.g. `https://shop.example`.
    #[schema(required = true)]
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WidgetSession {
    pub session_id: SessionId,
    /// The buyer's credential for this session: pass it to `NettermsCheckout.mount`.
    #[schema(example = "cs_0192f0c4d2a87c3e9b1f6a2d4e8c0b7a_Xq3LmN8pR2sT5vW9yZ1bC4dF6gH8jK0m")]
    pub client_secret: String,
    pub expires_at: DateTime<Utc>,
    pub status: String,
}

/// What the page or widget needs to render (`GET /checkout-api/v1/sessions/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub session_id: SessionId,
    /// `payment_page` or `widget`.
    pub kind: String,
    pub status: String,
    pub merchant_name: String,
    pub locale: String,
    pub expires_at: DateTime<Utc>,
    /// The order of a payment-page session, while it is open (or declined and retryable); a
    /// completed, expired or canceled session no longer shows it.
    pub order: Option<OrderData>,
    pub payment_terms: crate::domain::merchant::PaymentTerms,
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

/// A company found by the search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompanyHit {
    pub name: String,
    pub legal_form: String,
    pub address: Address,
}

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

fn sandbox(s: &Services) -> bool {
    s.config.environment == Environment::Sandbox
}

/// A redirect target: absolute https, or http to localhost in sandbox.
fn check_redirect(s: &Services, v: &mut Violations, path: &str, url: Option<String>) -> Option<String> {
    let url = v.text(path, url, 2048)?;
    let checked = validate::redirect_url(&url, sandbox(s));
    if checked.is_none() {
        v.add(path, "must be an absolute https URL without user or password (http only for localhost in sandbox)");
    }
    checked
}

/// An origin: scheme and host (and port), no path; https, or http://localhost in sandbox.
fn check_origin(s: &Services, v: &mut Violations, path: &str, o: &str) -> Option<String> {
    let checked = validate::web_origin(o.trim(), sandbox(s));
    if checked.is_none() {
        v.add(path, "must be an origin such as https://shop.example (http only for localhost in sandbox)");
    }
    checked
}

async fn active_merchant(
    tx: &mut Tx,
    v: &mut Violations,
    psp_id: PspId,
    id: Option<MerchantId>,
) -> Result<Option<crate::domain::merchant::Merchant>, CheckoutError> {
    let Some(id) = v.required("merchant_id", id) else { return Ok(None) };
    let m = merchants::get(tx, psp_id, id).await?;
    match m {
        None => {
            v.add("merchant_id", "no such merchant");
            Ok(None)
        }
        Some(m) if m.status == MerchantStatus::Inactive => Err(CheckoutError::MerchantInactive),
        Some(m) => Ok(Some(m)),
    }
}

pub async fn create_payment_page_session(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    input: PaymentPageSessionInput,
) -> Result<PaymentPageSession, CheckoutError> {
    let mut v = Violations::new();
    let merchant = active_merchant(tx, &mut v, psp_id, input.merchant_id).await?;
    let order = match v.required("order", input.order).map(|o| o.validate(&s.config.currencies, "order")) {
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => {
            for err in e {
                v.add(err.source, err.title);
            }
            None
        }
        None => None,
    };
    if let (Some(m), Some(o)) = (&merchant, &order) {
        let t = m.payment_terms;
        if !(t.min_duration..=t.max_duration).contains(&o.duration) {
            v.add(
                "order.duration",
                format!("duration must lie within the merchant's terms ({}–{} days)", t.min_duration, t.max_duration),
            );
        }
    }
    let urls = v.required("redirect_urls", input.redirect_urls).unwrap_or_default();
    let accept = check_redirect(s, &mut v, "redirect_urls.accept_url", urls.accept_url);
    let decline = check_redirect(s, &mut v, "redirect_urls.decline_url", urls.decline_url);
    let cancel = check_redirect(s, &mut v, "redirect_urls.cancel_url", urls.cancel_url);
    let locale = input.locale.unwrap_or_else(|| "de".into());
    if locale != "de" && locale != "en" {
        v.add("locale", "locale must be de or en");
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    let (Some(m), Some(order)) = (merchant, order) else { return Err(CheckoutError::Invalid(Vec::new())) };
    let now = s.clock.now();
    let urls = RedirectUrls { accept_url: accept, decline_url: decline, cancel_url: cancel };
    let row = store::insert_session(
        tx,
        "payment_page",
        psp_id,
        m.merchant_id,
        Some(&serde_json::to_string(&order).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        order.debtor_company.merchant_customer_id.as_deref(),
        "[]",
        Some(&serde_json::to_string(&urls).map_err(|e| StoreError::Corrupt(e.to_string()))?),
        &locale,
        now + SESSION_TTL,
        now,
    )
    .await?;
    let secret = client_secret(s, row.id);
    Ok(PaymentPageSession {
        session_id: row.id,
        payment_page_url: format!("{}/pay/{secret}", s.config.public_url()),
        client_secret: secret,
        expires_at: row.expires_at,
        status: row.status,
    })
}

pub async fn create_widget_session(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    input: WidgetSessionInput,
) -> Result<WidgetSession, CheckoutError> {
    let mut v = Violations::new();
    let merchant = active_merchant(tx, &mut v, psp_id, input.merchant_id).await?;
    let customer = v.opt_text("merchant_customer_id", input.merchant_customer_id, 255);
    let origins = v.required("allowed_origins", input.allowed_origins).unwrap_or_default();
    if origins.is_empty() || origins.len() > 10 {
        v.add("allowed_origins", "give 1 to 10 origins");
    }
    let origins: Vec<String> = origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| check_origin(s, &mut v, &format!("allowed_origins[{i}]"), o))
        .collect();
    v.finish().map_err(CheckoutError::Invalid)?;
    let Some(m) = merchant else { return Err(CheckoutError::Invalid(Vec::new())) };
    let now = s.clock.now();
    let origins = serde_json::to_string(&origins).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let row = store::insert_session(
        tx,
        "widget",
        psp_id,
        m.merchant_id,
        None,
        customer.as_deref(),
        &origins,
        None,
        "de",
        now + SESSION_TTL,
        now,
    )
    .await?;
    Ok(WidgetSession {
        session_id: row.id,
        client_secret: client_secret(s, row.id),
        expires_at: row.expires_at,
        status: row.status,
    })
}

/// The origins that may host a widget session (empty for payment-page sessions).
pub fn allowed_origins(row: &SessionRow) -> Vec<String> {
    serde_json::from_str(&row.allowed_origins).unwrap_or_default()
}

/// A session's status, with an open session past its expiry reported as expired.
fn effective_status(row: &SessionRow, now: DateTime<Utc>) -> String {
    if matches!(row.status.as_str(), "open" | "declined") && row.expires_at <= now {
        "expired".into()
    } else {
        row.status.clone()
    }
}

pub async fn session_view(s: &Services, id: SessionId) -> Result<(SessionView, Vec<String>), CheckoutError> {
    let mut conn = s.db.conn().await?;
    let row = store::get_session(&mut conn, id, false).await?.ok_or(CheckoutError::NotFound("session"))?;
    let merchant =
        merchants::get(&mut conn, row.psp_id, row.merchant_id).await?.ok_or(CheckoutError::NotFound("session"))?;
    let status = effective_status(&row, s.clock.now());
    // The order (with the buyer's data) only while the buyer can still act on it.
    let order = match &row.order_data {
        Some(d) if matches!(status.as_str(), "open" | "declined") => {
            Some(serde_json::from_str(d).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        }
        _ => None,
    };
    let view = SessionView {
        session_id: row.id,
        kind: row.kind.clone(),
        status,
        merchant_name: merchant.name,
        locale: row.locale.clone(),
        expires_at: row.expires_at,
        order,
        payment_terms: merchant.payment_terms,
    };
    Ok((view, allowed_origins(&row)))
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

/// `url` with `params` added to its query, before any `#fragment`.
fn redirect_with(url: &str, params: &[(&str, String)]) -> String {
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

/// The SEPA B2B mandate reference of a session (shown on the page before the buyer agrees,
/// stored with the order): `NT` and 24 letters and digits derived from the session with the
/// server key — its own value, which says nothing of the session — within SEPA's 35 characters.
pub fn mandate_reference(s: &Services, session_id: SessionId) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    format!("NT{}", s.keyring.derive(Purpose::MandateReference, session_id.0.as_bytes(), UPPER, 24))
}

/// Length of the secret part of a client secret: 32 of 62 characters, about 190 bits.
const CLIENT_SECRET_LEN: usize = 32;

/// The buyer's credential for a checkout session, used in the page and widget URLs and by the
/// checkout API: `cs_<session id>_<secret>`, the secret derived from the id with the server key
/// (so it is never stored, and cannot be guessed from the id, which PSPs and redirects see).
pub fn client_secret(s: &Services, id: SessionId) -> String {
    let secret = s.keyring.derive(Purpose::SessionSecret, id.0.as_bytes(), ALPHANUMERIC, CLIENT_SECRET_LEN);
    format!("cs_{}_{secret}", id.0.simple())
}

/// The session a client secret opens, if it is one (checked in constant time).
pub fn session_of_secret(s: &Services, client_secret: &str) -> Option<SessionId> {
    let (id, secret) = client_secret.strip_prefix("cs_")?.split_once('_')?;
    if id.len() != 32 || secret.len() != CLIENT_SECRET_LEN {
        return None;
    }
    let id = SessionId(uuid::Uuid::try_parse(id).ok()?);
    let expected = s.keyring.derive(Purpose::SessionSecret, id.0.as_bytes(), ALPHANUMERIC, CLIENT_SECRET_LEN);
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), secret.as_bytes())).then_some(id)
}

/// The buyer authorizes: checks, decides, and records the order and its decision.
pub async fn authorize(
    s: &Services,
    session_id: SessionId,
    input: AuthorizeInput,
) -> Result<AuthorizeResult, CheckoutError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let session = store::get_session(&mut tx, session_id, true).await?.ok_or(CheckoutError::NotFound("session"))?;
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
        if let Some(c) = corrections.debtor_company {
            if let Some(c) = c.validate(&mut v, "order.debtor_company") {
                base.debtor_company = c;
            }
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
    let mandate = (method == PaymentMethod::DirectDebit && state != OrderState::Declined)
        .then(|| mandate_reference(s, session_id));
    let lang = input.locale.as_deref().filter(|l| *l == "de" || *l == "en").unwrap_or(&session.locale);
    let stored_mandate_text = mandate.as_ref().map(|_| mandate_text(lang));
    let expires_at = (!page && matches!(state, OrderState::Authorized | OrderState::PreWaiting))
        .then(|| now + Duration::hours(s.config.authorization_ttl_hours));
    let reason = decision.decline_reason.map(DeclineReason::as_str);
    let order_id = store::insert_order(
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
            mandate_text: stored_mandate_text,
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
    events::append(&mut tx, session.psp_id, &event, now).await?;
    if let Some(kind) = OrderEventKind::for_state(state) {
        let data = OrderEventData {
            order_id,
            merchant_id: session.merchant_id,
            state,
            decline_reason: decision.decline_reason,
        };
        events::append(&mut tx, session.psp_id, &Event::Order(kind, data), now).await?;
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

/// The buyer leaves the payment page without authorizing.
pub async fn cancel_session(s: &Services, session_id: SessionId) -> Result<String, CheckoutError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let session = store::get_session(&mut tx, session_id, true).await?.ok_or(CheckoutError::NotFound("session"))?;
    if !matches!(effective_status(&session, now).as_str(), "open" | "declined") {
        return Err(conflict("this session can no longer be canceled"));
    }
    store::set_session_status(&mut tx, session_id, "canceled", None, 0, now).await?;
    tx.commit().await?;
    let urls: RedirectUrls = serde_json::from_str(session.redirect_urls.as_deref().unwrap_or("{}")).unwrap_or_default();
    Ok(urls.cancel_url.map(|u| redirect_with(&u, &[("session_id", session_id.to_string())])).unwrap_or_default())
}

pub async fn search_companies(s: &Services, session_id: SessionId, q: &str) -> Result<Vec<CompanyHit>, CheckoutError> {
    // Wildcards are not searched for; what remains must still be 2 characters long.
    let term: String = q.to_lowercase().chars().filter(|c| !matches!(c, '%' | '_' | '\\')).collect();
    let term = term.trim();
    let mut v = Violations::new();
    if term.chars().count() < 2 {
        v.add("q", "q must have at least 2 characters (wildcards do not count)");
    } else if q.chars().count() > 100 {
        v.add("q", "q must have at most 100 characters");
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    let mut conn = s.db.conn().await?;
    let session = store::get_session(&mut conn, session_id, false).await?.ok_or(CheckoutError::NotFound("session"))?;
    if effective_status(&session, s.clock.now()) != "open" && session.status != "declined" {
        return Err(conflict("this session is no longer open"));
    }
    // Only companies that bought through the session's PSP: one PSP never learns of another's buyers.
    let rows = store::search_buyers(&mut conn, session.psp_id, term, 10).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, legal_form, address)| {
            serde_json::from_str(&address).ok().map(|address| CompanyHit { name, legal_form, address })
        })
        .collect())
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
    let row = store::get_order(tx, None, id, false).await?.ok_or(CheckoutError::NotFound("order"))?;
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
    let now = s.clock.now();
    let from = row.state()?;
    let to = from
        .next(event)
        .ok_or_else(|| conflict(format!("the order is {} and cannot be {:?}ed", from.as_str(), event)))?;
    if !store::transition_order(tx, row.id, from, to, external_order_id, now).await? {
        return Err(conflict("the order changed meanwhile; read it and retry"));
    }
    if let Some(kind) = event_kind.or(OrderEventKind::for_state(to)) {
        let data = OrderEventData { order_id: row.id, merchant_id: row.merchant_id, state: to, decline_reason: None };
        events::append(tx, row.psp_id, &Event::Order(kind, data), now).await?;
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
    let now = s.clock.now();
    let session = store::get_session(tx, session_id, true).await?.ok_or(CheckoutError::NotFound("widget session"))?;
    if session.psp_id != psp_id || session.kind != "widget" {
        return Err(CheckoutError::NotFound("widget session"));
    }
    let confirmed = input.validate(&s.config.currencies, "").map_err(CheckoutError::Invalid)?;
    let Some(order_id) = session.order_id else {
        return Err(conflict("this session has no authorization to confirm"));
    };
    let row =
        store::get_order(tx, Some(psp_id), order_id, true).await?.ok_or(CheckoutError::NotFound("widget session"))?;
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
    let row = store::get_order(&mut conn, Some(psp_id), id, false).await?.ok_or(CheckoutError::NotFound("order"))?;
    Ok(Order::from_row(&row)?)
}

/// An operator approves or declines an order in manual review.
pub async fn review(s: &Services, id: OrderId, approve: bool) -> Result<Order, CheckoutError> {
    let mut tx = s.db.begin().await?;
    let row = store::get_order(&mut tx, None, id, true).await?.ok_or(CheckoutError::NotFound("order"))?;
    let state = row.state()?;
    if !matches!(state, OrderState::Waiting | OrderState::PreWaiting) {
        return Err(conflict(format!("the order is {} and not in review", state.as_str())));
    }
    if approve {
        apply(s, &mut tx, &row, OrderEvent::Approve, None, Some(OrderEventKind::Approved)).await?;
    } else {
        apply(s, &mut tx, &row, OrderEvent::Decline, None, Some(OrderEventKind::Declined)).await?;
        store::set_decline_reason(&mut tx, id, DeclineReason::RiskPolicy.as_str()).await?;
    }
    store::insert_decision(
        &mut tx,
        id,
        row.buyer_id,
        if approve { "approved" } else { "declined" },
        (!approve).then_some("risk_policy"),
        r#"[{"rule":"manual_review","passed":true,"detail":"decided by an operator"}]"#,
        s.clock.now(),
    )
    .await?;
    let order = load_order(&mut tx, id).await?;
    tx.commit().await?;
    Ok(order)
}

/// Expires unconfirmed authorizations whose time ran out, releasing their exposure.
pub async fn expire_due(s: &Services) -> Result<usize, CheckoutError> {
    let mut conn = s.db.conn().await?;
    let due = store::due_expiries(&mut conn, s.clock.now(), 100).await?;
    drop(conn);
    let mut n = 0;
    for id in due {
        let mut tx = s.db.begin().await?;
        let Some(row) = store::get_order(&mut tx, None, id, true).await? else { continue };
        if row.expires_at.is_none_or(|e| e > s.clock.now()) {
            continue;
        }
        match apply(s, &mut tx, &row, OrderEvent::Expire, None, None).await {
            Ok(_) => {
                store::set_session_status(&mut tx, row.session_id, "expired", None, 0, s.clock.now()).await?;
                tx.commit().await?;
                n += 1;
            }
            // Confirmed or reviewed meanwhile: nothing to expire.
            Err(CheckoutError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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

    #[test]
    fn redirect_parameters_are_appended() {
        assert_eq!(
            redirect_with("https://s.example/a", &[("x", "1".into()), ("y", "b c".into())]),
            "https://s.example/a?x=1&y=bc"
        );
        assert_eq!(redirect_with("https://s.example/a?t=1", &[("x", "1".into())]), "https://s.example/a?t=1&x=1");
        assert_eq!(
            redirect_with("https://s.example/a?t=1#step-3", &[("x", "1".into())]),
            "https://s.example/a?t=1&x=1#step-3"
        );
    }
}
