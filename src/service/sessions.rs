//! Checkout sessions: the PSP opens a payment-page or widget session, the buyer's browser holds
//! its client secret, and the checkout API reads, cancels and searches within it.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::checkout::{CheckoutError, RedirectUrls, conflict, effective_status, redirect_with, sandbox};
use crate::domain::ids::{MerchantId, PspId, SessionId};
use crate::domain::merchant::{Address, MerchantStatus};
use crate::domain::order::{OrderData, OrderInput};
use crate::domain::validate::{self, Violations};
use crate::secrets::{ALPHANUMERIC, Purpose};
use crate::store::checkout::{self as store, SessionRow};
use crate::store::{StoreError, Tx, merchants};

/// How long a session can be used.
pub const SESSION_TTL: Duration = Duration::hours(48);
/// How long a telesales session's page stays open (the link travels by e-mail).
pub const TELESALES_TTL: Duration = Duration::days(7);

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
    /// `ecommerce` (default: the buyer is sent to the page, which lives 48 hours) or `telesales`
    /// (an order taken by phone: netterms e-mails the page's link to `order.debtor_person.email`,
    /// and the page lives 7 days).
    pub channel: Option<String>,
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
    /// `ecommerce` or `telesales`.
    pub channel: String,
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

/// A company found by the search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompanyHit {
    pub name: String,
    pub legal_form: String,
    pub address: Address,
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
    let telesales = match input.channel.as_deref() {
        None | Some("ecommerce") => false,
        Some("telesales") => true,
        Some(_) => {
            v.add("channel", "channel must be ecommerce or telesales");
            false
        }
    };
    if telesales && order.as_ref().is_some_and(|o| o.debtor_person.is_none()) {
        v.add("order.debtor_person.email", "a telesales session e-mails its link: give the buyer's e-mail address");
    }
    v.finish().map_err(CheckoutError::Invalid)?;
    let (Some(m), Some(order)) = (merchant, order) else { return Err(CheckoutError::Invalid(Vec::new())) };
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
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
        now + if telesales { TELESALES_TTL } else { SESSION_TTL },
        now,
    )
    .await?;
    let secret = client_secret(s, row.id);
    let url = format!("{}/pay/{secret}", s.config.public_url());
    if let (true, Some(person)) = (telesales, &order.debtor_person) {
        let l = crate::service::messages::Locale::parse(&locale);
        let name =
            [person.first_name.as_deref(), person.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>();
        let addressee = if name.is_empty() { order.debtor_company.name.clone() } else { name.join(" ") };
        let composed = crate::service::messages::payment_link(l, &addressee, &m.name, &url, row.expires_at);
        let outgoing = crate::service::messages::Outgoing {
            psp_id,
            order_id: None,
            capture_id: None,
            kind: "payment_link",
            cause_key: format!("session:{}:payment_link", row.id),
            locale: l,
            to: &person.email,
            attachment: None,
        };
        crate::service::messages::enqueue(s, tx, &outgoing, &composed, at);
    }
    Ok(PaymentPageSession {
        session_id: row.id,
        payment_page_url: url,
        client_secret: secret,
        expires_at: row.expires_at,
        status: row.status,
        channel: if telesales { "telesales" } else { "ecommerce" }.into(),
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
    let now = s.now_for(tx, psp_id).await?.now;
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

pub async fn session_view(s: &Services, id: SessionId) -> Result<(SessionView, Vec<String>), CheckoutError> {
    let mut conn = s.db.conn().await?;
    let row = store::get_session(&mut conn, id, false).await?.ok_or(CheckoutError::NotFound("session"))?;
    let merchant =
        merchants::get(&mut conn, row.psp_id, row.merchant_id).await?.ok_or(CheckoutError::NotFound("session"))?;
    let status = effective_status(&row, s.now_for(&mut conn, row.psp_id).await?.now);
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

/// The buyer leaves the payment page without authorizing.
pub async fn cancel_session(s: &Services, session_id: SessionId) -> Result<String, CheckoutError> {
    let mut tx = s.db.begin().await?;
    let session = store::get_session(&mut tx, session_id, true).await?.ok_or(CheckoutError::NotFound("session"))?;
    let now = s.now_for(&mut tx, session.psp_id).await?.now;
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
    if effective_status(&session, s.now_for(&mut conn, session.psp_id).await?.now) != "open"
        && session.status != "declined"
    {
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

#[cfg(test)]
mod tests {
    use super::*;

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
