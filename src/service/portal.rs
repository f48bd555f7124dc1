//! The buyer portal's use cases (SPEC §9.6): a person signs in with a one-time link sent to an
//! address its orders name, then sees those orders' invoices across merchants and PSPs, pays
//! differently, says it has paid, asks for help or disputes an invoice.
//!
//! Whose objects: everything is found through `orders.contact_email` = the signed-in address;
//! an object of any other order is "not found", exactly as one that does not exist.
//! Time: links and sessions run on the deployment's clock (they belong to no PSP); what happens
//! to an invoice (pauses, claims, disputes) on its PSP's clock.

use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Services;
use super::disputes::{self, REASON_CODES};
use super::messages::{self, Composed, Locale, Outgoing};
use super::orders::{OrderError, conflict, invalid};
use crate::domain::ids::{CaptureId, PspId};
use crate::domain::validate::Violations;
use crate::secrets::Purpose;
use crate::store::captures::{self as captures_store, CaptureRow};
use crate::store::disputes::{self as disputes_store, DisputeRow};
use crate::store::portal::{self as store, ClaimRow, InvoiceRow, PreferenceRow, SupportRow};
use crate::store::{AsExec, StoreError};

/// How long "I have paid" holds dunning.
pub const PAID_PAUSE_DAYS: i64 = 5;
pub use crate::domain::files::MAX_FILE_BYTES;
/// Invoices one page lists.
pub const MAX_INVOICES: i64 = 500;

/// 32 random bytes, URL-safe.
fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token as typed into a URL: only its own alphabet, its own length.
fn plausible_token(t: &str) -> bool {
    t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An address as orders store it (trimmed, lower-cased), if it is one.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    (e.len() <= 254 && crate::domain::validate::is_email(&e)).then_some(e)
}

// ---------------------------------------------------------------------------------------------
// Signing in

/// The job that sends a sign-in link.
pub const LINK_JOB: &str = "portal_link";

#[derive(Serialize, Deserialize)]
struct LinkRequest {
    email: String,
    lang: String,
}

/// Asks for a sign-in link for `email`: one job row, whether or not any order names the address,
/// so the answer takes the same path and time either way; the job looks the address up and
/// sends the link ([`send_link`]).
pub async fn request_link(s: &Services, email: &str, lang: Locale) -> Result<(), OrderError> {
    let payload = serde_json::to_string(&LinkRequest { email: email.to_owned(), lang: lang.as_str().to_owned() })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let job = crate::store::jobs::NewJob {
        kind: LINK_JOB,
        psp_id: None,
        payload: &payload,
        unique_key: None,
        run_at: now,
        max_attempts: 5,
    };
    crate::store::jobs::enqueue(&mut tx, &job, now);
    tx.commit().await?;
    Ok(())
}

/// The job of [`request_link`]: sends a sign-in link to the address if any order names it.
pub async fn send_link(s: &Services, payload: &str) -> anyhow::Result<()> {
    let r: LinkRequest = serde_json::from_str(payload)?;
    let lang = Locale::parse(&r.lang);
    let email = r.email.as_str();
    let mut tx = s.db.begin().await?;
    let Some((psp_id, order_id, _)) = store::newest_order_of(&mut tx, email).await? else { return Ok(()) };
    let token = random_token();
    let digest = s.keyring.digest(Purpose::PortalLink, token.as_bytes());
    let wall = s.clock.now();
    let ttl = Duration::seconds(s.config.portal_link_ttl_secs);
    store::insert_link(&mut tx, &digest, email, lang.as_str(), wall, wall + ttl).await?;
    let at = s.now_for(&mut tx, psp_id).await?;
    let url = format!("{}/portal/login/{token}", s.config.public_url());
    let out = Outgoing {
        psp_id,
        order_id: Some(order_id),
        capture_id: None,
        kind: "portal_login",
        cause_key: format!("portal_login:{}", hex::encode(&digest[..16])),
        locale: lang,
        to: email,
        attachment: None,
    };
    messages::enqueue(s, &mut tx, &out, &login_message(lang, &url, s.config.portal_link_ttl_secs / 60), at);
    tx.commit().await?;
    Ok(())
}

fn login_message(l: Locale, url: &str, minutes: i64) -> Composed {
    let (subject, greeting, p1, p2) = match l {
        Locale::De => (
            "Ihr Anmeldelink für das netterms-Kundenportal".to_owned(),
            "Guten Tag,".to_owned(),
            format!(
                "mit diesem Link melden Sie sich im netterms-Kundenportal an. Er gilt {minutes} Minuten und nur einmal:"
            ),
            "Wenn Sie keinen Link angefordert haben, können Sie diese E-Mail ignorieren.".to_owned(),
        ),
        Locale::En => (
            "Your sign-in link for the netterms buyer portal".to_owned(),
            "Hello,".to_owned(),
            format!("use this link to sign in to the netterms buyer portal. It works once, for {minutes} minutes:"),
            "If you did not ask for a link, you can ignore this e-mail.".to_owned(),
        ),
    };
    messages::compose(subject, greeting, &[p1, url.to_owned(), p2], &[], messages::closing_portal(l))
}

/// What a link is, before the button is pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Usable,
    /// Used or expired.
    Spent,
    Unknown,
}

pub async fn link_state(s: &Services, token: &str) -> Result<LinkState, OrderError> {
    if !plausible_token(token) {
        return Ok(LinkState::Unknown);
    }
    let digest = s.keyring.digest(Purpose::PortalLink, token.as_bytes());
    let mut conn = s.db.conn().await?;
    Ok(match store::link_usable(&mut conn, &digest, s.clock.now()).await? {
        Some(true) => LinkState::Usable,
        Some(false) => LinkState::Spent,
        None => LinkState::Unknown,
    })
}

/// A new session: the cookie value to set (shown once, stored as a digest).
pub struct NewSession {
    pub cookie: String,
    pub max_age_secs: i64,
}

/// Uses a link up and opens a new session for its address; a session the browser still held is
/// ended (the id changes at sign-in).
pub async fn sign_in(s: &Services, token: &str, previous: Option<&str>) -> Result<Option<NewSession>, OrderError> {
    if !plausible_token(token) {
        return Ok(None);
    }
    let digest = s.keyring.digest(Purpose::PortalLink, token.as_bytes());
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let Some((email, locale)) = store::consume_link(&mut tx, &digest, now).await? else { return Ok(None) };
    if let Some(old) = previous {
        store::end_session(&mut tx, &s.keyring.digest(Purpose::PortalSession, old.as_bytes()), now).await?;
    }
    let id = random_token();
    let csrf = random_token();
    let max = s.config.portal_session_max_secs;
    let sid = s.keyring.digest(Purpose::PortalSession, id.as_bytes());
    store::insert_session(&mut tx, &sid, &email, &csrf, &locale, now, now + Duration::seconds(max)).await?;
    tx.commit().await?;
    Ok(Some(NewSession { cookie: id, max_age_secs: max }))
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    digest: [u8; 32],
    pub email: String,
    pub csrf: String,
    pub locale: Locale,
}

impl Session {
    /// Whether a form's token is this session's (constant time).
    pub fn csrf_ok(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        token.len() == self.csrf.len() && bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The live session of a cookie, if any; records the activity (and a new language).
pub async fn session(s: &Services, cookie: &str, lang: Option<Locale>) -> Result<Option<Session>, OrderError> {
    if !plausible_token(cookie) {
        return Ok(None);
    }
    let digest = s.keyring.digest(Purpose::PortalSession, cookie.as_bytes());
    let now = s.clock.now();
    let idle = Duration::seconds(s.config.portal_session_idle_secs);
    let mut conn = s.db.conn().await?;
    let Some(row) = store::live_session(&mut conn, &digest, now, now - idle).await? else { return Ok(None) };
    drop(conn);
    let mut locale = Locale::parse(&row.locale);
    let changed = lang.filter(|l| *l != locale);
    // Activity is written at most once a minute per session (more often when the idle time is
    // short: by half of it, so any request within half the idle time keeps the session), and
    // whenever the language changes.
    let every = Duration::seconds((s.config.portal_session_idle_secs / 2).clamp(1, 60));
    if changed.is_some() || now - row.last_seen_at >= every {
        let mut tx = s.db.begin().await?;
        store::touch_session(&mut tx, &digest, now, changed.map(Locale::as_str)).await?;
        tx.commit().await?;
    }
    if let Some(l) = changed {
        locale = l;
    }
    Ok(Some(Session { digest, email: row.email, csrf: row.csrf_token, locale }))
}

pub async fn sign_out(s: &Services, session: &Session) -> Result<(), OrderError> {
    let mut tx = s.db.begin().await?;
    store::end_session(&mut tx, &session.digest, s.clock.now()).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Invoices

pub async fn invoices(s: &Services, who: &Session) -> Result<Vec<InvoiceRow>, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::invoices_of(&mut conn, &who.email, MAX_INVOICES).await?)
}

/// Everything the invoice page shows.
pub struct InvoiceDetail {
    pub row: InvoiceRow,
    pub capture: CaptureRow,
    pub facts: messages::InvoiceFacts,
    pub refunds: Vec<store::RefundRow>,
    pub documents: Vec<store::DocumentMeta>,
    /// What was paid on it: each payment's fees and interest and its amount.
    pub payments: Vec<store::PaidRow>,
    /// The e-mails about it that carried a PDF: (message id, kind, subject, when).
    pub sent: Vec<(uuid::Uuid, String, String, DateTime<Utc>)>,
    pub claims: Vec<ClaimRow>,
    pub disputes: Vec<DisputeRow>,
    /// Direct debit: the account and mandate reference.
    pub mandate: Option<(String, String)>,
    pub collection_pending: bool,
    /// The mandate reference a switch to direct debit would use, and whether a standing mandate
    /// for future orders exists.
    pub portal_mandate: String,
    pub standing: Option<PreferenceRow>,
    /// The invoice's PSP's clock.
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
}

impl InvoiceDetail {
    /// Everything paid on the invoice: to netterms (with fees and interest, less what came back)
    /// and directly to the merchant.
    pub fn paid_total(&self) -> i64 {
        let to_us: i64 = self.payments.iter().filter(|p| p.state == "matched").map(|p| p.charges + p.principal).sum();
        to_us + self.row.paid_direct
    }

    /// Until when dunning is paused, if it is.
    pub fn dunning_paused_until(&self) -> Option<DateTime<Utc>> {
        self.capture.dunning_paused_until.filter(|u| *u > self.now)
    }
}

/// The signed-in person's invoice `id` ("not found" for anyone else's).
async fn owned(conn: &mut impl AsExec, who: &Session, id: CaptureId) -> Result<InvoiceRow, OrderError> {
    store::invoice_of(conn, &who.email, id).await?.ok_or(OrderError::NotFound("invoice"))
}

pub async fn invoice(s: &Services, who: &Session, id: CaptureId) -> Result<InvoiceDetail, OrderError> {
    let mut conn = s.db.conn().await?;
    let row = owned(&mut conn, who, id).await?;
    let capture =
        captures_store::get_capture(&mut conn, row.psp_id, id, false).await?.ok_or(OrderError::NotFound("invoice"))?;
    let facts = messages::invoice_facts(s, &mut conn, &capture).await?;
    let refunds = store::refunds_of(&mut conn, id).await?;
    let documents = store::documents_of(&mut conn, id).await?;
    let payments = store::payments_of(&mut conn, id).await?;
    let sent = store::documents_sent(&mut conn, id).await?;
    let claims = store::claims_of(&mut conn, id).await?;
    let disputes = disputes_store::of_capture(&mut conn, id).await?;
    let mandate = store::order_mandate(&mut conn, row.order_id).await?;
    let collection_pending = store::collection_pending(&mut conn, row.order_id).await?;
    let standing = store::preference(&mut conn, &who.email, row.buyer_id).await?;
    let now = s.now_for(&mut conn, row.psp_id).await?.now;
    let portal_mandate = portal_mandate_reference(s, &who.email, row.buyer_id);
    Ok(InvoiceDetail {
        row,
        capture,
        facts,
        refunds,
        documents,
        payments,
        sent,
        claims,
        disputes,
        mandate,
        collection_pending,
        portal_mandate,
        standing,
        now,
        today: now.date_naive(),
    })
}

/// The PDF a message about the person's invoice carried (a dunning notice …), with the imprint.
pub async fn sent_document(
    s: &Services,
    who: &Session,
    id: CaptureId,
    message_id: uuid::Uuid,
) -> Result<crate::documents::Rendered, OrderError> {
    let mut conn = s.db.conn().await?;
    let row = owned(&mut conn, who, id).await?;
    let m = crate::store::messages::get(&mut conn, message_id, Some(row.psp_id))
        .await?
        .filter(|m| m.capture_id == Some(id))
        .ok_or(OrderError::NotFound("document"))?;
    let spec = m.attachment.ok_or(OrderError::NotFound("document"))?;
    let imprint = super::imprint::lines(&s.config, Locale::parse(&m.locale));
    super::documents::render_attachment(&spec, &imprint).map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

/// The payment-information PDF of the person's invoice.
pub async fn payment_information_pdf(
    s: &Services,
    who: &Session,
    id: CaptureId,
) -> Result<crate::documents::Rendered, OrderError> {
    let psp_id = {
        let mut conn = s.db.conn().await?;
        owned(&mut conn, who, id).await?.psp_id
    };
    super::captures::payment_information_pdf(s, psp_id, id).await
}

/// The merchant's invoice or a credit note of the person's invoice.
pub async fn merchant_document(
    s: &Services,
    who: &Session,
    id: CaptureId,
    kind: &str,
    subject: uuid::Uuid,
) -> Result<Vec<u8>, OrderError> {
    let mut conn = s.db.conn().await?;
    owned(&mut conn, who, id).await?;
    store::document_content(&mut conn, kind, subject, id).await?.ok_or(OrderError::NotFound("document"))
}

// ---------------------------------------------------------------------------------------------
// Paying differently

/// The SEPA mandate reference of a person's mandates in the portal for one company: `NTP` and
/// 22 letters and digits derived with the server key (the same each time it is shown).
pub fn portal_mandate_reference(s: &Services, email: &str, buyer: crate::domain::ids::BuyerId) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let input = format!("portal:{email}:{}", buyer.0);
    format!("NTP{}", s.keyring.derive(Purpose::MandateReference, input.as_bytes(), UPPER, 22))
}

/// How the person wants to pay an invoice (and, if `future`, its later orders with that company).
#[derive(Debug, Clone)]
pub struct SwitchInput {
    pub method: String,
    pub iban: Option<String>,
    pub mandate_accepted: bool,
    pub future: bool,
}

/// What a switch did (for the confirmation).
#[derive(Debug, Clone)]
pub struct Switched {
    pub method: &'static str,
    pub mandate_reference: Option<String>,
    pub iban: Option<String>,
    /// The day a collection would be made (direct debit).
    pub collection_on: Option<NaiveDate>,
}

pub async fn switch_method(
    s: &Services,
    who: &Session,
    id: CaptureId,
    input: SwitchInput,
) -> Result<Switched, OrderError> {
    let mut tx = s.db.begin().await?;
    let row = owned(&mut tx, who, id).await?;
    let c = captures_store::get_capture(&mut tx, row.psp_id, id, true).await?.ok_or(OrderError::NotFound("invoice"))?;
    if !c.is_unpaid() {
        return Err(conflict("this invoice is settled: nothing is left to pay"));
    }
    if store::collection_pending(&mut tx, row.order_id).await? {
        return Err(conflict(
            "a direct debit of this invoice is on its way to the bank; the payment method can be changed after it",
        ));
    }
    let at = s.now_for(&mut tx, row.psp_id).await?;
    let out = match input.method.as_str() {
        "direct_debit" => {
            let mut v = Violations::new();
            let iban = match input.iban.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
                None => {
                    v.add("iban", "enter the IBAN of the account to collect from");
                    None
                }
                Some(raw) => match crate::domain::iban::validate(raw) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        v.add("iban", format!("this IBAN is not valid: {e}"));
                        None
                    }
                },
            };
            if !input.mandate_accepted {
                v.add("mandate", "accept the SEPA business direct-debit mandate to pay by direct debit");
            }
            if c.currency != "EUR" {
                v.add("method", "direct debit is only available for invoices in euro");
            }
            v.finish().map_err(OrderError::Invalid)?;
            let Some(iban) = iban else { return Err(OrderError::Invalid(Vec::new())) };
            let mandate = PreferenceRow {
                debit_iban: iban.clone(),
                mandate_reference: portal_mandate_reference(s, &who.email, row.buyer_id),
                mandate_text: super::checkout::mandate_text(who.locale.as_str()).to_owned(),
                signed_at: at.now,
            };
            store::set_order_method(&mut tx, row.order_id, Some(&mandate), at.now).await?;
            if input.future {
                store::set_preference(&mut tx, &who.email, row.buyer_id, Some(&mandate), at.now).await?;
            }
            let due: NaiveDate = c.due_date.parse().map_err(|_| StoreError::Corrupt("captures.due_date".into()))?;
            Switched {
                method: "direct_debit",
                mandate_reference: Some(mandate.mandate_reference),
                iban: Some(iban),
                collection_on: Some(super::direct_debit::collection_day(due, at.now.date_naive())),
            }
        }
        "bank_transfer" => {
            store::set_order_method(&mut tx, row.order_id, None, at.now).await?;
            if input.future {
                store::set_preference(&mut tx, &who.email, row.buyer_id, None, at.now).await?;
            }
            Switched { method: "bank_transfer", mandate_reference: None, iban: None, collection_on: None }
        }
        _ => return Err(invalid("method", "choose bank_transfer or direct_debit")),
    };
    tx.commit().await?;
    tracing::info!(capture_id = %id, method = out.method, future = input.future, "buyer changed the payment method");
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// "I have paid"

/// Parses an amount as people type it (`119,00`, `119.00`, `1.234,56`, `1,234.56`, `119`) into
/// minor units, without floating point.
pub fn parse_amount(raw: &str) -> Option<i64> {
    let t: String = raw.trim().trim_end_matches('€').trim().chars().filter(|c| !c.is_whitespace()).collect();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.') {
        return None;
    }
    // The decimal separator is the last ',' or '.' followed by one or two digits.
    let (units, cents) = match t.rfind([',', '.']) {
        Some(i) if t.len() - i - 1 <= 2 && t.len() - i > 1 => (&t[..i], &t[i + 1..]),
        Some(i) if t.len() - i - 1 == 3 => (t.as_str(), ""),
        Some(_) => return None,
        None => (t.as_str(), ""),
    };
    let digits: String = units.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let cents = match cents.len() {
        0 => 0,
        1 => cents.parse::<i64>().ok()? * 10,
        _ => cents.parse::<i64>().ok()?,
    };
    digits.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents)
}

pub async fn claim_paid(
    s: &Services,
    who: &Session,
    id: CaptureId,
    paid_on: &str,
    amount: &str,
) -> Result<ClaimRow, OrderError> {
    let mut tx = s.db.begin().await?;
    let row = owned(&mut tx, who, id).await?;
    let c = captures_store::get_capture(&mut tx, row.psp_id, id, true).await?.ok_or(OrderError::NotFound("invoice"))?;
    let at = s.now_for(&mut tx, row.psp_id).await?;
    let today = at.now.date_naive();
    let mut v = Violations::new();
    let date = NaiveDate::parse_from_str(paid_on.trim(), "%Y-%m-%d").ok();
    match date {
        None => v.add("paid_on", "enter the day you paid (YYYY-MM-DD)"),
        Some(d) if d > today => v.add("paid_on", "the day you paid cannot be in the future"),
        Some(d) if d < c.created_at.date_naive() - Duration::days(1) => {
            v.add("paid_on", "the day you paid is before the invoice was issued")
        }
        Some(_) => {}
    }
    let minor = parse_amount(amount);
    match minor {
        None => v.add("amount", "enter the amount you paid, e.g. 119,00"),
        Some(m) if m <= 0 => v.add("amount", "the amount must be more than zero"),
        Some(m) if m > c.gross + c.dunning_fees + c.dunning_interest => {
            v.add("amount", "the amount is more than this invoice ever asked for")
        }
        Some(_) => {}
    }
    if !c.is_unpaid() {
        return Err(conflict("this invoice is settled already"));
    }
    v.finish().map_err(OrderError::Invalid)?;
    let (Some(date), Some(minor)) = (date, minor) else { return Err(OrderError::Invalid(Vec::new())) };
    let claim = ClaimRow {
        id: uuid::Uuid::now_v7(),
        psp_id: row.psp_id,
        capture_id: id,
        email: who.email.clone(),
        paid_on: date.to_string(),
        currency: c.currency.clone(),
        amount: minor,
        state: "open".into(),
        payment_id: None,
        created_at: at.now,
        updated_at: at.now,
    };
    store::insert_claim(&mut tx, &claim).await?;
    if c.collection_at.is_none() {
        let until = at.now + Duration::days(PAID_PAUSE_DAYS);
        let reason = format!("the buyer says it paid {} on {date}", messages::Locale::En.money(minor, &c.currency));
        super::dunning::pause_locked(&mut tx, &c, reason, Some(until), false, at).await?;
    }
    tx.commit().await?;
    Ok(claim)
}

// ---------------------------------------------------------------------------------------------
// Support requests and disputes

/// A file the buyer attached: checked to be what its first bytes say.
pub struct Attachment {
    pub bytes: Vec<u8>,
    pub name: String,
}

pub async fn open_support(
    s: &Services,
    who: &Session,
    capture: Option<CaptureId>,
    subject: &str,
    body: &str,
    attachment: Option<Attachment>,
) -> Result<SupportRow, OrderError> {
    let mut v = Violations::new();
    let subject = subject.trim();
    let body = body.trim();
    if subject.chars().count() > 200 {
        v.add("subject", "the subject is longer than 200 characters");
    }
    if body.is_empty() {
        v.add("body", "describe what we can help with");
    } else if body.chars().count() > 10_000 {
        v.add("body", "the message is longer than 10,000 characters");
    }
    let mut file = None;
    if let Some(a) = attachment {
        if a.bytes.len() > MAX_FILE_BYTES {
            v.add("attachment", "the attachment is larger than 10 MB");
        } else {
            match crate::domain::files::sniff(&a.bytes) {
                Some(ty) => file = Some((a.bytes, ty, crate::domain::files::safe_name(&a.name, ty))),
                None => v.add("attachment", "attach a PDF, PNG or JPEG file"),
            }
        }
    }
    v.finish().map_err(OrderError::Invalid)?;
    let mut tx = s.db.begin().await?;
    let psp_id: PspId = match capture {
        Some(id) => owned(&mut tx, who, id).await?.psp_id,
        None => store::newest_order_of(&mut tx, &who.email).await?.ok_or(OrderError::NotFound("order"))?.0,
    };
    let now = s.now_for(&mut tx, psp_id).await?.now;
    let id = uuid::Uuid::now_v7();
    let subject = if subject.is_empty() { who.locale.pick("Anfrage", "Request") } else { subject };
    let n = store::NewSupport {
        id,
        email: &who.email,
        psp_id,
        capture_id: capture,
        locale: who.locale.as_str(),
        subject,
        body,
        attachment: file.as_ref().map(|(b, t, n)| (b.as_slice(), *t, n.as_str())),
    };
    store::insert_support(&mut tx, &n, now).await?;
    let row = store::get_support(&mut tx, id, None, false).await?.ok_or(OrderError::NotFound("support request"))?;
    tx.commit().await?;
    Ok(row)
}

pub async fn support_requests(s: &Services, who: &Session) -> Result<Vec<SupportRow>, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::list_support(&mut conn, Some(&who.email), None, None, 200).await?)
}

pub async fn support_request(s: &Services, who: &Session, id: uuid::Uuid) -> Result<SupportRow, OrderError> {
    let mut conn = s.db.conn().await?;
    store::get_support(&mut conn, id, Some(&who.email), false).await?.ok_or(OrderError::NotFound("support request"))
}

pub async fn support_attachment(
    s: &Services,
    email: Option<&str>,
    id: uuid::Uuid,
) -> Result<(Vec<u8>, String, String), OrderError> {
    let mut conn = s.db.conn().await?;
    store::support_attachment(&mut conn, id, email).await?.ok_or(OrderError::NotFound("attachment"))
}

/// "Problem with this invoice": a dispute, stored and shown to operators; dunning waits.
pub async fn open_dispute(
    s: &Services,
    who: &Session,
    id: CaptureId,
    reason_code: &str,
    description: &str,
) -> Result<DisputeRow, OrderError> {
    let mut v = Violations::new();
    if !REASON_CODES.contains(&reason_code) {
        v.add("reason_code", format!("choose one of {}", REASON_CODES.join(", ")));
    }
    let description = description.trim();
    if description.chars().count() > 5000 {
        v.add("description", "the description is longer than 5,000 characters");
    }
    v.finish().map_err(OrderError::Invalid)?;
    let mut tx = s.db.begin().await?;
    let row = owned(&mut tx, who, id).await?;
    let c = captures_store::get_capture(&mut tx, row.psp_id, id, true).await?.ok_or(OrderError::NotFound("invoice"))?;
    if c.state == "canceled" {
        return Err(conflict("this invoice was canceled"));
    }
    let at = s.now_for(&mut tx, row.psp_id).await?;
    let opening = disputes::Opening {
        opened_by: "buyer",
        email: Some(who.email.clone()),
        reason_code: reason_code.to_owned(),
        amount: None,
        description: description.to_owned(),
        deadline_days: disputes::DEADLINE_DAYS,
    };
    let d = disputes::open_locked(&mut tx, &c, opening, at).await?;
    tx.commit().await?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Operators

/// A support request as operators read it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SupportView {
    pub id: uuid::Uuid,
    /// `open` or `answered`.
    pub state: String,
    pub email: String,
    pub psp_id: PspId,
    pub capture_id: Option<CaptureId>,
    pub locale: String,
    pub subject: String,
    pub body: String,
    /// The attached file, fetched at `GET /admin/v1/support-requests/{id}/attachment`.
    pub attachment: Option<AttachmentView>,
    pub answer: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentView {
    pub name: String,
    pub content_type: String,
    pub size: i64,
}

impl From<SupportRow> for SupportView {
    fn from(r: SupportRow) -> SupportView {
        let attachment = match (r.attachment_name, r.attachment_type) {
            (Some(name), Some(content_type)) => {
                Some(AttachmentView { name, content_type, size: r.attachment_size.unwrap_or(0) })
            }
            _ => None,
        };
        SupportView {
            id: r.id,
            state: r.state,
            email: r.email,
            psp_id: r.psp_id,
            capture_id: r.capture_id,
            locale: r.locale,
            subject: r.subject,
            body: r.body,
            attachment,
            answer: r.answer,
            answered_at: r.answered_at,
            created_at: r.created_at,
        }
    }
}

pub async fn list_support(
    s: &Services,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<SupportView>, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::list_support(&mut conn, None, state, starting_after, limit).await?.into_iter().map(Into::into).collect())
}

pub async fn get_support(s: &Services, id: uuid::Uuid) -> Result<SupportView, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::get_support(&mut conn, id, None, false).await?.ok_or(OrderError::NotFound("support request"))?.into())
}

/// `POST /admin/v1/support-requests/{id}/answer`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerInput {
    /// The answer, e-mailed to the buyer and shown in the portal.
    #[schema(required = true)]
    pub text: Option<String>,
}

/// Answers a support request once: stored, shown in the portal, e-mailed.
pub async fn answer_support(s: &Services, id: uuid::Uuid, input: AnswerInput) -> Result<SupportView, OrderError> {
    let mut v = Violations::new();
    let text = v.text("text", input.text, 10_000);
    v.finish().map_err(OrderError::Invalid)?;
    let Some(text) = text else { return Err(OrderError::Invalid(Vec::new())) };
    let mut tx = s.db.begin().await?;
    let row = store::get_support(&mut tx, id, None, true).await?.ok_or(OrderError::NotFound("support request"))?;
    let at = s.now_for(&mut tx, row.psp_id).await?;
    if !store::answer_support(&mut tx, id, &text, at.now).await? {
        return Err(conflict("this support request is answered already"));
    }
    let l = Locale::parse(&row.locale);
    let subject = format!("{}: {}", l.pick("Antwort auf Ihre Anfrage", "Answer to your request"), row.subject);
    let url = format!("{}/portal/support/{}", s.config.public_url(), row.id);
    let composed = messages::compose(
        subject,
        l.pick("Guten Tag,", "Hello,").to_owned(),
        &[text.clone(), format!("{} {url}", l.pick("Ihre Anfrage im Kundenportal:", "Your request in the portal:"))],
        &[],
        messages::closing_portal(l),
    );
    let out = Outgoing {
        psp_id: row.psp_id,
        order_id: None,
        capture_id: row.capture_id,
        kind: "support_answer",
        cause_key: format!("support:{id}:answer"),
        locale: l,
        to: &row.email,
        attachment: None,
    };
    messages::enqueue(s, &mut tx, &out, &composed, at);
    let row = store::get_support(&mut tx, id, None, false).await?.ok_or(OrderError::NotFound("support request"))?;
    tx.commit().await?;
    Ok(row.into())
}

/// "I have paid" as operators read it, next to the unmatched payments.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimView {
    pub id: uuid::Uuid,
    /// `open` until a payment is booked on the invoice, then `matched`.
    pub state: String,
    pub psp_id: PspId,
    pub capture_id: CaptureId,
    pub email: String,
    /// The day the buyer says it paid.
    pub paid_on: String,
    pub currency: String,
    /// In minor units.
    pub amount: i64,
    /// The payment booked on the invoice afterwards.
    pub payment_id: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ClaimRow> for ClaimView {
    fn from(r: ClaimRow) -> ClaimView {
        ClaimView {
            id: r.id,
            state: r.state,
            psp_id: r.psp_id,
            capture_id: r.capture_id,
            email: r.email,
            paid_on: r.paid_on,
            currency: r.currency,
            amount: r.amount,
            payment_id: r.payment_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub async fn list_claims(
    s: &Services,
    state: Option<&str>,
    starting_after: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<ClaimView>, OrderError> {
    let mut conn = s.db.conn().await?;
    Ok(store::list_claims(&mut conn, state, starting_after, limit).await?.into_iter().map(Into::into).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_as_people_type_them() {
        for (raw, minor) in [
            ("119,00", 11900),
            ("119.00", 11900),
            ("119", 11900),
            ("119,5", 11950),
            ("1.234,56", 123456),
            ("1,234.56", 123456),
            ("1.234", 123400),
            ("0,01", 1),
            (" 42,10 € ", 4210),
        ] {
            assert_eq!(parse_amount(raw), Some(minor), "{raw}");
        }
        for raw in ["", "abc", "1,2345", "-5", "1e3", ",", "12,", "9999999999999"] {
            assert_eq!(parse_amount(raw), None, "{raw}");
        }
    }

    #[test]
    fn tokens_are_32_random_bytes() {
        let a = random_token();
        assert!(plausible_token(&a));
        assert_ne!(a, random_token());
        assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&a).map(|b| b.len()).ok(), Some(32));
        assert!(!plausible_token("short") && !plausible_token(&format!("{}/", &a[..42])));
    }
}
