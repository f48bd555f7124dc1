//! The buyer portal at `/portal` (SPEC §9.6): server-rendered, German and English, no scripts
//! and no third-party assets, usable on a phone and by keyboard. Every form carries the
//! session's CSRF token; every object is looked up through the signed-in address, so another
//! buyer's is "not found".

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{FromRequestParts, Multipart, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use maud::{DOCTYPE, Markup, html};

use super::AppState;
use super::checkout_pages::format_money;
use super::extract::ApiPath;
use crate::domain::ids::CaptureId;
use crate::service::disputes::REASON_CODES;
use crate::service::messages::Locale;
use crate::service::orders::OrderError;
use crate::service::portal::{self, InvoiceDetail, LinkState, Session};
use crate::store::portal::InvoiceRow;

/// The session cookie (its value is a random id; the database holds only its digest).
const COOKIE: &str = "nt_portal";

/// The client's address (behind `trusted_proxies`, from `X-Forwarded-For`).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp(super::throttle::client_ip_of(&parts.extensions)))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and responses

pub(crate) fn params(raw: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect()
}

pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(crate) fn lang_param(q: &HashMap<String, String>) -> Option<Locale> {
    match q.get("lang").map(String::as_str) {
        Some("en") => Some(Locale::En),
        Some("de") => Some(Locale::De),
        _ => None,
    }
}

/// The language of a visitor without a session: `?lang=`, else the browser's first choice.
pub(crate) fn guess_lang(q: &HashMap<String, String>, headers: &HeaderMap) -> Locale {
    lang_param(q).unwrap_or_else(|| {
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.trim_start().to_ascii_lowercase().starts_with("en") { Locale::En } else { Locale::De }
    })
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    super::console::cookie_named(headers, COOKIE)
}

/// `Secure` everywhere but a sandbox reached over plain http (loopback trials).
pub(crate) fn secure_flag(state: &AppState) -> &'static str {
    let c = &state.config;
    if c.is_sandbox() && c.public_url().starts_with("http://") { "" } else { "; Secure" }
}

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/portal; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        secure_flag(state)
    ))
    .ok()
}

/// A page with the portal's headers: nothing cached, not framed, nothing loaded from elsewhere.
fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, markup).into_response();
    harden(resp.headers_mut());
    resp
}

fn harden(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    );
}

fn see_other(to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    harden(r.headers_mut());
    r
}

fn file(bytes: Vec<u8>, content_type: &str, filename: &str, inline: bool) -> Response {
    super::download_untrusted(bytes, content_type, filename, inline)
}

fn t(l: Locale, de: &'static str, en: &'static str) -> &'static str {
    l.pick(de, en)
}

/// The signed-in person of this request, with the language to use.
async fn signed_in(state: &AppState, headers: &HeaderMap, q: &HashMap<String, String>) -> Option<Session> {
    let cookie = cookie_of(headers)?;
    match portal::session(&state.services, &cookie, lang_param(q)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "portal session could not be read");
            None
        }
    }
}

/// Pages that need a session send visitors without one to the sign-in page.
macro_rules! session_or_sign_in {
    ($state:expr, $headers:expr, $q:expr) => {
        match signed_in($state, $headers, $q).await {
            Some(s) => s,
            None => return see_other("/portal"),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The frame of every page

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;\
background:#f4f6f8;color:#1b1f24;line-height:1.45}main{max-width:52rem;margin:0 auto;padding:1rem}\
header{background:#0b3d6e;color:#fff}header .bar{max-width:52rem;margin:0 auto;padding:.6rem 1rem;display:flex;flex-wrap:wrap;\
gap:.4rem 1rem;align-items:center}header a,header button.link{color:#fff}.brand{font-weight:700;margin-right:auto;text-decoration:none}\
nav{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}nav form{margin:0}\
.card{background:#fff;border-radius:12px;padding:1.1rem 1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:1rem}\
h1{font-size:1.45rem;margin:.4rem 0 1rem}h2{font-size:1.15rem;margin:.2rem 0 .8rem}h3{font-size:1rem;margin:.8rem 0 .4rem}\
table{width:100%;border-collapse:collapse}td,th{padding:.45rem .4rem;text-align:left;vertical-align:top;border-bottom:1px solid #e7eaee}\
th{font-size:.85rem;color:#555;font-weight:600}td.num,th.num{text-align:right;white-space:nowrap}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}dt{color:#555}dd{margin:0;font-weight:600;word-break:break-word}\
label{display:block;font-size:.92rem;margin:.6rem 0 .2rem}input,select,textarea{width:100%;font-size:1rem;padding:.55rem;\
border:1px solid #8a96a3;border-radius:6px;background:#fff;font-family:inherit}textarea{min-height:7rem}\
input[type=radio],input[type=checkbox]{width:auto;margin:0 .5rem 0 0}.choice{display:flex;align-items:flex-start;margin:.5rem 0}\
.choice label{margin:0}button,.button{font-size:1rem;padding:.65rem 1.1rem;border-radius:8px;border:1px solid #0b5cad;\
background:#0b5cad;color:#fff;cursor:pointer;text-decoration:none;display:inline-block;margin-top:.8rem}\
button.secondary,.button.secondary{background:#fff;color:#0b5cad}button.link{background:none;border:0;padding:0;margin:0;\
text-decoration:underline;font-size:1rem;cursor:pointer}\
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible,summary:focus-visible\
{outline:3px solid #f59f00;outline-offset:2px}a{color:#0b5cad}.badge{display:inline-block;padding:.1rem .5rem;border-radius:999px;\
font-size:.8rem;font-weight:600;background:#e7eaee;color:#1b1f24}.badge.open{background:#dbe9ff;color:#0b3d6e}\
.badge.late,.badge.collection{background:#ffe3e3;color:#a61e1e}.badge.paid{background:#d3f9d8;color:#1e6b2e}\
.notice{padding:.75rem 1rem;border-radius:8px;margin-bottom:1rem}.notice.ok{background:#d3f9d8}.notice.error{background:#ffe3e3}\
.hint{font-size:.88rem;color:#555}.mandate{font-size:.88rem;background:#f8f9fa;padding:.7rem;border-radius:6px}\
.grid{display:grid;grid-template-columns:1fr 13rem;gap:1rem;align-items:start}.qr svg{width:100%;height:auto;max-width:13rem}\
.filters{display:flex;gap:.8rem;flex-wrap:wrap;margin-bottom:.8rem}.filters a[aria-current=page]{font-weight:700;color:#1b1f24}\
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600;padding:.4rem 0}.skip{position:absolute;left:-999px}\
.skip:focus{left:1rem;top:1rem;background:#fff;color:#0b5cad;padding:.5rem;z-index:2}\
footer.site{max-width:52rem;margin:0 auto;padding:1rem;font-size:.88rem}\
@media(max-width:40rem){.grid{grid-template-columns:1fr}.hide-phone{display:none}td,th{padding:.4rem .2rem}}";

fn shell(l: Locale, title: &str, who: Option<&Session>, here: &str, body: Markup) -> Markup {
    let other = if l == Locale::De { ("en", "English") } else { ("de", "Deutsch") };
    html! {
        (DOCTYPE)
        html lang=(l.as_str()) {
            (super::checkout_pages::head(title, STYLE))
            body {
                a.skip href="#main" { (t(l, "Zum Inhalt", "Skip to content")) }
                header {
                    div.bar {
                        a.brand href="/portal" { "netterms " (t(l, "Kundenportal", "buyer portal")) }
                        nav aria-label=(t(l, "Hauptnavigation", "Main navigation")) {
                            @if who.is_some() {
                                a href="/portal" { (t(l, "Rechnungen", "Invoices")) }
                                a href="/portal/support" { (t(l, "Anfragen", "Support")) }
                            }
                            a href="/portal/help" { (t(l, "Hilfe", "Help")) }
                            a href=(format!("{here}{}lang={}", if here.contains('?') { "&" } else { "?" }, other.0)) lang=(other.0) { (other.1) }
                            @if let Some(s) = who {
                                form method="post" action="/portal/logout" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button.link type="submit" { (t(l, "Abmelden", "Sign out")) }
                                }
                            }
                        }
                    }
                }
                main id="main" { (body) }
                footer.site {
                    a href=(format!("/portal/imprint?lang={}", l.as_str())) { (t(l, "Impressum", "Imprint")) }
                }
            }
        }
    }
}

/// `GET /portal/imprint`: who netterms is (also without signing in).
pub async fn imprint(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = params(raw.as_deref());
    let who = signed_in(&state, &headers, &q).await;
    let l = who.as_ref().map(|w| w.locale).unwrap_or_else(|| guess_lang(&q, &headers));
    let c = &state.services.config;
    let title = t(l, "Impressum", "Imprint");
    let body = html! {
        h1 { (title) }
        div.card {
            p { strong { (c.issuer_name) } br; (c.issuer_street) br; (c.issuer_postal_code) " " (c.issuer_city) br; (c.issuer_country) }
            dl {
                dt { (t(l, "Registergericht", "Register court")) } dd { (c.issuer_register_court) }
                dt { (t(l, "Registernummer", "Register number")) } dd { (c.issuer_register_number) }
                dt { (t(l, "Geschäftsführung", "Managing directors")) } dd { (c.issuer_managing_directors) }
                dt { (t(l, "USt-IdNr.", "VAT ID")) } dd { (c.issuer_vat_id) }
                dt { (t(l, "E-Mail", "E-mail")) } dd { a href=(format!("mailto:{}", c.issuer_email)) { (c.issuer_email) } }
                dt { (t(l, "Telefon", "Phone")) } dd { (c.issuer_phone) }
            }
        }
    };
    respond(StatusCode::OK, shell(l, title, who.as_ref(), "/portal/imprint", body))
}

fn message_page(l: Locale, who: Option<&Session>, status: StatusCode, title: &str, text: &str) -> Response {
    respond(
        status,
        shell(
            l,
            title,
            who,
            "/portal",
            html! {
                div.card {
                    h1 { (title) }
                    p { (text) }
                    p { a href="/portal" { (t(l, "Zur Übersicht", "Back to the overview")) } }
                }
            },
        ),
    )
}

fn not_found(l: Locale, who: Option<&Session>) -> Response {
    message_page(
        l,
        who,
        StatusCode::NOT_FOUND,
        t(l, "Nicht gefunden", "Not found"),
        t(
            l,
            "Diese Seite gibt es nicht, oder sie gehört nicht zu Ihrem Konto.",
            "This page does not exist or is not yours.",
        ),
    )
}

fn csrf_failed(l: Locale, who: Option<&Session>) -> Response {
    message_page(
        l,
        who,
        StatusCode::FORBIDDEN,
        t(l, "Formular abgelaufen", "Form expired"),
        t(
            l,
            "Das Formular war nicht mehr gültig; es wurde nichts geändert. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
            "The form was no longer valid; nothing was changed. Please reload the page and try again.",
        ),
    )
}

/// An error of a use case as a page.
fn failure(l: Locale, who: Option<&Session>, e: OrderError) -> Response {
    match e {
        OrderError::NotFound(_) => not_found(l, who),
        OrderError::Conflict(m) | OrderError::AlreadyExists(m) => {
            let title = t(l, "Nicht möglich", "Not possible");
            respond(
                StatusCode::CONFLICT,
                shell(
                    l,
                    title,
                    who,
                    "/portal",
                    html! { div.card { h1 { (title) } p { (m) } p { a href="/portal" { (t(l, "Zur Übersicht", "Back to the overview")) } } } },
                ),
            )
        }
        OrderError::Invalid(errs) => {
            let title = t(l, "Bitte prüfen Sie Ihre Angaben", "Please check your entries");
            respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                shell(
                    l,
                    title,
                    who,
                    "/portal",
                    html! {
                        div.card role="alert" {
                            h1 { (title) }
                            ul { @for e in &errs { li { (e.title) } } }
                            p { (t(l, "Es wurde nichts geändert. Gehen Sie zurück und korrigieren Sie die Eingabe.", "Nothing was changed. Go back and correct the entry.")) }
                        }
                    },
                ),
            )
        }
        OrderError::Store(e) => {
            tracing::error!(error = %super::error::error_chain(&e), "portal request failed");
            message_page(
                l,
                who,
                StatusCode::INTERNAL_SERVER_ERROR,
                t(l, "Technischer Fehler", "Technical error"),
                t(
                    l,
                    "Das hat nicht geklappt. Bitte versuchen Sie es später noch einmal.",
                    "That did not work. Please try again later.",
                ),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

fn sign_in_page(l: Locale, notice: Option<Markup>) -> Markup {
    let title = t(l, "Anmelden", "Sign in");
    shell(
        l,
        title,
        None,
        "/portal",
        html! {
            @if let Some(n) = notice { (n) }
            div.card {
                h1 { (t(l, "Ihre Rechnungen bei netterms", "Your invoices with netterms")) }
                p { (t(l, "Sehen Sie alle Rechnungen, die Sie bei Händlern mit netterms auf Rechnung gekauft haben, laden Sie sie herunter, wählen Sie, wie Sie bezahlen, und erreichen Sie unseren Kundenservice.",
                       "See every invoice you received for a purchase on account with netterms, from any shop: download them, choose how to pay and reach our customer service.")) }
                form method="post" action="/portal/login" {
                    input type="hidden" name="lang" value=(l.as_str());
                    label for="email" { (t(l, "E-Mail-Adresse aus Ihrer Bestellung", "The e-mail address of your order")) }
                    input id="email" name="email" type="email" autocomplete="email" required;
                    p.hint { (t(l, "Wir senden Ihnen einen Anmeldelink, der 15 Minuten gilt. Ein Passwort brauchen Sie nicht.", "We send you a sign-in link that works for 15 minutes. No password needed.")) }
                    button type="submit" { (t(l, "Anmeldelink senden", "Send sign-in link")) }
                }
            }
        },
    )
}

/// `GET /portal`: the invoices of the signed-in person, else the sign-in form.
pub async fn home(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = params(raw.as_deref());
    let Some(who) = signed_in(&state, &headers, &q).await else {
        let l = guess_lang(&q, &headers);
        let notice = q.contains_key("signed_out").then(|| {
            html! { div.notice.ok role="status" { (t(l, "Sie sind abgemeldet.", "You are signed out.")) } }
        });
        return respond(StatusCode::OK, sign_in_page(l, notice));
    };
    let l = who.locale;
    let rows = match portal::invoices(&state.services, &who).await {
        Ok(r) => r,
        Err(e) => return failure(l, Some(&who), e),
    };
    let filter = q.get("filter").map(String::as_str).unwrap_or("all");
    let shown: Vec<&InvoiceRow> = rows
        .iter()
        .filter(|r| match filter {
            "open" => matches!(r.state.as_str(), "open" | "late"),
            "paid" => matches!(r.state.as_str(), "paid" | "canceled"),
            _ => true,
        })
        .collect();
    let mut groups: Vec<(&str, Vec<&InvoiceRow>)> = Vec::new();
    for r in shown {
        match groups.last_mut() {
            Some((_, g)) if g[0].buyer_id == r.buyer_id => g.push(r),
            _ => groups.push((r.company.as_str(), vec![r])),
        }
    }
    let title = t(l, "Ihre Rechnungen", "Your invoices");
    let here = format!("/portal?filter={filter}");
    let body = html! {
        h1 { (title) }
        p.hint { (t(l, "Angemeldet als ", "Signed in as ")) strong { (who.email) } }
        nav.filters aria-label=(t(l, "Filter", "Filter")) {
            @for (key, de, en) in [("all", "Alle", "All"), ("open", "Offen", "Open"), ("paid", "Bezahlt", "Paid")] {
                a href=(format!("/portal?filter={key}")) aria-current=[(filter == key).then_some("page")] { (t(l, de, en)) }
            }
        }
        @if groups.is_empty() {
            div.card { p { (t(l, "Keine Rechnungen in dieser Ansicht.", "No invoices in this view.")) } }
        }
        @for (company, invoices) in &groups {
            section.card aria-label=(company) {
                h2 { (company) }
                table {
                    thead { tr {
                        th { (t(l, "Rechnung", "Invoice")) }
                        th.hide-phone { (t(l, "Händler", "Merchant")) }
                        th { (t(l, "Fällig", "Due")) }
                        th.num { (t(l, "Offen", "Open")) }
                        th { (t(l, "Status", "Status")) }
                    } }
                    tbody {
                        @for r in invoices {
                            tr {
                                td { a href=(format!("/portal/invoices/{}", r.id)) { (r.external_invoice_number) } }
                                td.hide-phone { (r.merchant) }
                                td { (date(l, &r.due_date)) }
                                td.num { (format_money(r.open_amount() + r.charges(), &r.currency, l.as_str())) }
                                td { (state_badge(l, r)) }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, shell(l, title, Some(&who), &here, body))
}

fn date(l: Locale, iso: &str) -> String {
    iso.parse::<chrono::NaiveDate>().map(|d| l.date(d)).unwrap_or_else(|_| iso.to_owned())
}

fn state_badge(l: Locale, r: &InvoiceRow) -> Markup {
    let (class, text) = if r.collection_at.is_some() && matches!(r.state.as_str(), "open" | "late") {
        ("collection", t(l, "Inkasso", "Collection"))
    } else {
        match r.state.as_str() {
            "open" => ("open", t(l, "Offen", "Open")),
            "late" => ("late", t(l, "Überfällig", "Overdue")),
            "paid" => ("paid", t(l, "Bezahlt", "Paid")),
            _ => ("canceled", t(l, "Storniert", "Canceled")),
        }
    };
    html! { span class=(format!("badge {class}")) { (text) } }
}

/// Whether a POST came from another site (login CSRF: a form elsewhere signing a browser in, or
/// asking links in its name). A browser says where a request comes from in `Sec-Fetch-Site`: only
/// `same-origin` and `none` (typed or bookmarked) pass. Without it, `Origin` must be this
/// deployment's public origin or the host the request went to (`null`, which our pages' referrer
/// policy makes browsers send, passes only with `Sec-Fetch-Site`). Neither header (not a browser):
/// passes.
pub(crate) fn cross_site(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").to_ascii_lowercase();
        return !matches!(site.as_str(), "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return false };
    let Ok(origin) = origin.to_str() else { return true };
    let ours = url::Url::parse(&state.services.config.public_url()).map(|u| u.origin().ascii_serialization());
    // This deployment's public origin, or the very host the request was sent to (a sandbox
    // reached as localhost as well as 127.0.0.1).
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same_host = host.is_some_and(|h| {
        origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|a| a == h)
    });
    !(same_host || ours.is_ok_and(|o| o == origin))
}

fn cross_site_refused(l: Locale) -> Response {
    message_page(
        l,
        None,
        StatusCode::FORBIDDEN,
        t(l, "Anfrage abgelehnt", "Request refused"),
        t(
            l,
            "Diese Anmeldung kam von einer anderen Website. Öffnen Sie das Kundenportal direkt und versuchen Sie es erneut.",
            "This sign-in came from another website. Open the buyer portal directly and try again.",
        ),
    )
}

/// `POST /portal/login`: sends a link if an order names the address; the same answer either way.
pub async fn request_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let l = lang_param(&f).unwrap_or(Locale::De);
    if cross_site(&state, &headers) {
        return cross_site_refused(l);
    }
    let Some(email) = f.get("email").and_then(|e| portal::normalize_email(e)) else {
        let n = html! { div.notice.error role="alert" { (t(l, "Bitte geben Sie eine gültige E-Mail-Adresse ein.", "Please enter a valid e-mail address.")) } };
        return respond(StatusCode::UNPROCESSABLE_ENTITY, sign_in_page(l, Some(n)));
    };
    if state.portal_links_per_client.hit(ip).is_err() || state.portal_links_per_address.hit(email.clone()).is_err() {
        let n = html! { div.notice.error role="alert" { (t(l, "Zu viele Anfragen. Bitte warten Sie einige Minuten und versuchen Sie es dann erneut.", "Too many requests. Please wait a few minutes and try again.")) } };
        return respond(StatusCode::TOO_MANY_REQUESTS, sign_in_page(l, Some(n)));
    }
    if let Err(e) = portal::request_link(&state.services, &email, l).await {
        return failure(l, None, e);
    }
    let title = t(l, "Bitte prüfen Sie Ihr Postfach", "Please check your inbox");
    respond(
        StatusCode::OK,
        shell(
            l,
            title,
            None,
            "/portal",
            html! {
                div.card role="status" {
                    h1 { (title) }
                    p { (t(l, "Wenn diese Adresse bei einer Bestellung mit netterms angegeben wurde, haben wir Ihnen einen Anmeldelink geschickt. Er gilt 15 Minuten und nur einmal.",
                           "If this address was given with an order paid with netterms, we have sent you a sign-in link. It works once, for 15 minutes.")) }
                    p.hint { (t(l, "Keine E-Mail? Prüfen Sie den Spam-Ordner oder die Schreibweise der Adresse.", "No e-mail? Check your spam folder and the spelling of the address.")) }
                }
            },
        ),
    )
}

fn link_gone(l: Locale) -> Response {
    message_page(
        l,
        None,
        StatusCode::GONE,
        t(l, "Link nicht mehr gültig", "Link no longer valid"),
        t(
            l,
            "Dieser Anmeldelink wurde schon benutzt, ist abgelaufen oder unbekannt. Fordern Sie einfach einen neuen an.",
            "This sign-in link was used already, has expired or is unknown. Simply ask for a new one.",
        ),
    )
}

/// `GET /portal/login/{token}`: a button, so that link scanners cannot use the link up.
pub async fn confirm_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ApiPath(token): ApiPath<String>,
) -> Response {
    let q = params(raw.as_deref());
    let l = guess_lang(&q, &headers);
    match portal::link_state(&state.services, &token).await {
        Ok(LinkState::Usable) => {
            let title = t(l, "Anmelden", "Sign in");
            respond(
                StatusCode::OK,
                shell(
                    l,
                    title,
                    None,
                    "/portal",
                    html! {
                        div.card {
                            h1 { (t(l, "Beim Kundenportal anmelden", "Sign in to the buyer portal")) }
                            p { (t(l, "Bestätigen Sie, dass Sie sich anmelden möchten.", "Confirm that you want to sign in.")) }
                            form method="post" { button type="submit" autofocus { (t(l, "Jetzt anmelden", "Sign in now")) } }
                        }
                    },
                ),
            )
        }
        Ok(_) => link_gone(l),
        Err(e) => failure(l, None, e),
    }
}

/// `POST /portal/login/{token}`: uses the link up and opens a new session.
pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, ApiPath(token): ApiPath<String>) -> Response {
    if cross_site(&state, &headers) {
        return cross_site_refused(guess_lang(&HashMap::new(), &headers));
    }
    let previous = cookie_of(&headers);
    match portal::sign_in(&state.services, &token, previous.as_deref()).await {
        Ok(Some(s)) => {
            let mut r = see_other("/portal");
            if let Some(c) = session_cookie(&state, &s.cookie, s.max_age_secs) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            r
        }
        Ok(None) => link_gone(guess_lang(&HashMap::new(), &headers)),
        Err(e) => failure(Locale::De, None, e),
    }
}

/// `POST /portal/logout`.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    if !f.get("csrf").is_some_and(|c| who.csrf_ok(c)) {
        return csrf_failed(who.locale, Some(&who));
    }
    if let Err(e) = portal::sign_out(&state.services, &who).await {
        return failure(who.locale, Some(&who), e);
    }
    let mut r = see_other(&format!("/portal?signed_out=1&lang={}", who.locale.as_str()));
    if let Some(c) = session_cookie(&state, "", 0) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// One invoice

fn capture_id(raw: &str) -> Option<CaptureId> {
    raw.parse::<uuid::Uuid>().ok().map(CaptureId)
}

/// `GET /portal/invoices/{id}`.
pub async fn invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let q = params(raw.as_deref());
    let who = session_or_sign_in!(&state, &headers, &q);
    let l = who.locale;
    let Some(id) = capture_id(&id) else { return not_found(l, Some(&who)) };
    let d = match portal::invoice(&state.services, &who, id).await {
        Ok(d) => d,
        Err(e) => return failure(l, Some(&who), e),
    };
    let notice = match q.get("done").map(String::as_str) {
        Some("direct_debit") => Some(t(
            l,
            "Sie zahlen diese Rechnung jetzt per SEPA-Firmenlastschrift.",
            "You now pay this invoice by SEPA business direct debit.",
        )),
        Some("bank_transfer") => {
            Some(t(l, "Sie zahlen diese Rechnung jetzt per Überweisung.", "You now pay this invoice by bank transfer."))
        }
        Some("paid") => Some(t(
            l,
            "Danke! Wir haben Ihre Zahlung notiert und pausieren Mahnungen 5 Tage, bis sie eingeht.",
            "Thank you! We noted your payment and pause reminders for 5 days until it arrives.",
        )),
        Some("dispute") => Some(t(
            l,
            "Ihr Problem ist gemeldet. Bis es geklärt ist, erhalten Sie zu dieser Rechnung keine Mahnungen.",
            "Your problem is reported. Until it is settled, you receive no reminders for this invoice.",
        )),
        _ => None,
    };
    let title = format!("{} {}", t(l, "Rechnung", "Invoice"), d.row.external_invoice_number);
    let here = format!("/portal/invoices/{id}");
    respond(StatusCode::OK, shell(l, &title, Some(&who), &here, invoice_body(l, &who, &d, notice)))
}

fn invoice_body(l: Locale, who: &Session, d: &InvoiceDetail, notice: Option<&str>) -> Markup {
    let r = &d.row;
    let cur = r.currency.as_str();
    let money = |m: i64| format_money(m, cur, l.as_str());
    let total = r.open_amount() + r.charges();
    let unpaid = matches!(r.state.as_str(), "open" | "late");
    let id = r.id;
    let paused = d.dunning_paused_until();
    let open_dispute = d.disputes.iter().any(|x| x.state == "open");
    html! {
        @if let Some(n) = notice { div.notice.ok role="status" { (n) } }
        h1 { (t(l, "Rechnung", "Invoice")) " " (r.external_invoice_number) " " (state_badge(l, r)) }
        div.card {
            dl {
                dt { (t(l, "Händler", "Merchant")) } dd { (r.merchant) }
                dt { (t(l, "Käufer", "Buyer")) } dd { (r.company) }
                dt { (t(l, "Rechnungsbetrag", "Invoice amount")) } dd { (money(r.gross)) }
                @if r.refunded > 0 { dt { (t(l, "Gutgeschrieben", "Credited")) } dd { (money(r.refunded)) } }
                @if d.paid_total() > 0 { dt { (t(l, "Bezahlt", "Paid")) } dd { (money(d.paid_total())) } }
                dt { (t(l, "Fällig am", "Due on")) } dd { (date(l, &r.due_date)) }
                dt { (t(l, "Mahnstufe", "Dunning level")) } dd { (dunning_level(l, r)) }
                @if r.dunning_fees > 0 { dt { (t(l, "Mahngebühren", "Dunning fees")) } dd { (money(r.dunning_fees)) } }
                @if r.dunning_interest > 0 { dt { (t(l, "Verzugszinsen", "Default interest")) } dd { (money(r.dunning_interest)) } }
                dt { (t(l, "Noch offen", "Still open")) } dd { (money(total)) }
                @if let Some(u) = paused { dt { (t(l, "Mahnungen pausiert bis", "Reminders paused until")) } dd { (l.date(u.date_naive())) } }
                @if open_dispute { dt { (t(l, "Problem gemeldet", "Problem reported")) } dd { (t(l, "ja – Mahnungen ruhen", "yes – no reminders meanwhile")) } }
            }
        }
        @if unpaid && total > 0 { (pay_card(l, d, total)) }
        @if !d.payments.is_empty() || r.paid_direct > 0 { (payments_card(l, d)) }
        (documents_card(l, d))
        @if unpaid {
            (method_card(l, who, d))
            (paid_card(l, who, d, total))
        }
        (problem_card(l, who, d, open_dispute))
        div.card {
            h2 { (t(l, "Frage zu dieser Rechnung?", "A question about this invoice?")) }
            form method="post" action="/portal/support" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name="capture_id" value=(id);
                input type="hidden" name="subject" value=(format!("{} {}", t(l, "Rechnung", "Invoice"), r.external_invoice_number));
                label for="q-body" { (t(l, "Ihre Nachricht", "Your message")) }
                textarea id="q-body" name="body" required maxlength="10000" {}
                label for="q-file" { (t(l, "Anhang (PDF, PNG oder JPEG, bis 10 MB, optional)", "Attachment (PDF, PNG or JPEG, up to 10 MB, optional)")) }
                input id="q-file" name="attachment" type="file" accept="application/pdf,image/png,image/jpeg";
                button type="submit" { (t(l, "Anfrage senden", "Send request")) }
            }
        }
    }
}

fn dunning_level(l: Locale, r: &InvoiceRow) -> String {
    if r.collection_at.is_some() {
        return t(l, "Inkasso", "Collection").to_owned();
    }
    match r.dunning_level {
        0 => t(l, "keine", "none").to_owned(),
        1 => t(l, "1 – Zahlungserinnerung", "1 – payment reminder").to_owned(),
        2 => t(l, "2 – 1. Mahnung", "2 – first dunning notice").to_owned(),
        3 => t(l, "3 – Letzte Mahnung", "3 – final notice").to_owned(),
        n => n.to_string(),
    }
}

fn pay_card(l: Locale, d: &InvoiceDetail, total: i64) -> Markup {
    let f = &d.facts;
    let cur = d.row.currency.as_str();
    if let Some((iban, mandate)) = &d.mandate {
        let on = d
            .row
            .due_date
            .parse::<chrono::NaiveDate>()
            .ok()
            .map(|due| crate::service::direct_debit::collection_day(due, d.today));
        return html! {
            section.card aria-labelledby="pay-h" {
                h2 id="pay-h" { (t(l, "So bezahlen Sie: SEPA-Firmenlastschrift", "How you pay: SEPA business direct debit")) }
                @if d.collection_pending {
                    p { (t(l, "Die Lastschrift ist bei der Bank eingereicht.", "The direct debit has been sent to the bank.")) }
                } @else {
                    p { (t(l, "Wir ziehen den offenen Betrag ab dem unten genannten Tag von Ihrem Konto ein. Sie müssen nichts tun.", "We collect the open amount from your account from the day below. You need not do anything.")) }
                }
                dl {
                    dt { (t(l, "Betrag", "Amount")) } dd { (format_money(total, cur, l.as_str())) }
                    @if let Some(on) = on { dt { (t(l, "Einzug frühestens am", "Collected on or after")) } dd { (l.date(on)) } }
                    dt { "IBAN" } dd { (iban) }
                    dt { (t(l, "Mandatsreferenz", "Mandate reference")) } dd { (mandate) }
                    dt { (t(l, "Gläubiger-ID", "Creditor identifier")) } dd { (f.creditor_id) }
                }
            }
        };
    }
    let payload = crate::documents::epc::payload(&f.bic, "netterms", &f.iban, cur, total, &f.reference);
    html! {
        section.card aria-labelledby="pay-h" {
            h2 id="pay-h" { (t(l, "So bezahlen Sie: Überweisung", "How you pay: bank transfer")) }
            div.grid {
                dl {
                    dt { (t(l, "Empfänger", "Payee")) } dd { "netterms" }
                    dt { "IBAN" } dd { (f.iban) }
                    dt { "BIC" } dd { (f.bic) }
                    dt { (t(l, "Betrag", "Amount")) } dd { (format_money(total, cur, l.as_str())) }
                    dt { (t(l, "Verwendungszweck", "Reference")) } dd { (crate::domain::text::grouped(&f.reference, 4)) }
                }
                @if payload.is_some() {
                    figure.qr style="margin:0" {
                        img src=(format!("/portal/invoices/{}/girocode.svg", d.row.id)) width="208" height="208"
                            alt=(t(l, "GiroCode: mit der Banking-App scannen, um die Überweisung auszufüllen", "GiroCode: scan with your banking app to fill in the transfer"));
                        figcaption.hint { (t(l, "GiroCode für Ihre Banking-App", "GiroCode for your banking app")) }
                    }
                }
            }
            p.hint { (t(l, "Bitte geben Sie den Verwendungszweck genau so an, damit wir Ihre Zahlung sofort zuordnen.", "Please give the reference exactly as shown so that we can match your payment at once.")) }
        }
    }
}

/// What was paid on the invoice, payment by payment: its date, amount, and how much of it went
/// to fees and interest.
fn payments_card(l: Locale, d: &InvoiceDetail) -> Markup {
    let cur = d.row.currency.as_str();
    let money = |m: i64| format_money(m, cur, l.as_str());
    html! {
        section.card aria-labelledby="payments-h" {
            h2 id="payments-h" { (t(l, "Zahlungen", "Payments")) }
            table {
                thead { tr {
                    th scope="col" { (t(l, "Gebucht am", "Booked on")) }
                    th scope="col" { (t(l, "Art", "How")) }
                    th.num scope="col" { (t(l, "Davon Gebühren und Zinsen", "Of it fees and interest")) }
                    th.num scope="col" { (t(l, "Betrag", "Amount")) }
                } }
                tbody {
                    @for p in &d.payments {
                        tr {
                            td { (p.booking_date.as_deref().map_or_else(|| l.date(p.created_at.date_naive()), |b| date(l, b))) }
                            td {
                                @if p.rule.as_deref() == Some("direct_debit") { (t(l, "Lastschrift", "Direct debit")) }
                                @else { (t(l, "Überweisung", "Transfer")) }
                                @if p.state == "returned" { " – " (t(l, "zurückgebucht", "returned")) }
                            }
                            td.num { (money(p.charges)) }
                            td.num { (money(p.charges + p.principal)) }
                        }
                    }
                    @if d.row.paid_direct > 0 {
                        tr {
                            td { "–" }
                            td { (t(l, "Direkt an den Händler", "Paid to the merchant")) }
                            td.num { (money(0)) }
                            td.num { (money(d.row.paid_direct)) }
                        }
                    }
                }
            }
        }
    }
}

fn documents_card(l: Locale, d: &InvoiceDetail) -> Markup {
    let id = d.row.id;
    let invoice_doc = d.documents.iter().any(|m| m.kind == "invoice");
    html! {
        section.card aria-labelledby="docs-h" {
            h2 id="docs-h" { (t(l, "Dokumente", "Documents")) }
            ul {
                li { a href=(format!("/portal/invoices/{id}/payment-information.pdf")) { (t(l, "Zahlungsinformation (PDF)", "Payment information (PDF)")) } }
                // The notices the e-mails carried, as sent.
                @for (mid, kind, subject, at) in d.sent.iter().filter(|s| s.1 != "payment_information") {
                    li {
                        a href=(format!("/portal/invoices/{id}/documents/{mid}.pdf")) {
                            (if kind == "dunning" { t(l, "Mahnschreiben", "Dunning notice") } else { subject.as_str() })
                            " " (l.date(at.date_naive())) " (PDF)"
                        }
                    }
                }
                @if invoice_doc {
                    li { a href=(format!("/portal/invoices/{id}/invoice.pdf")) { (t(l, "Rechnung des Händlers (PDF)", "The merchant's invoice (PDF)")) } }
                } @else {
                    li.hint { (t(l, "Die Rechnung des Händlers liegt uns noch nicht vor.", "We have not received the merchant's invoice yet.")) }
                }
                @for r in &d.refunds {
                    @let has = d.documents.iter().any(|m| m.kind == "credit_note" && m.subject_id == r.id);
                    li {
                        (t(l, "Gutschrift", "Credit note")) " "
                        (r.external_credit_note_number.as_deref().unwrap_or("")) " "
                        (format_money(r.gross, &r.currency, l.as_str()))
                        @if has { " – " a href=(format!("/portal/invoices/{id}/credit-notes/{}.pdf", r.id)) { "PDF" } }
                    }
                }
            }
        }
    }
}

fn method_card(l: Locale, who: &Session, d: &InvoiceDetail) -> Markup {
    let id = d.row.id;
    let dd = d.mandate.is_some();
    html! {
        section.card aria-labelledby="method-h" {
            h2 id="method-h" { (t(l, "Zahlungsart ändern", "Change how you pay")) }
            @if d.collection_pending {
                p { (t(l, "Eine Lastschrift ist unterwegs; die Zahlungsart lässt sich danach wieder ändern.", "A direct debit is on its way; you can change the method after it.")) }
            } @else if dd {
                form method="post" action=(format!("/portal/invoices/{id}/payment-method")) {
                    input type="hidden" name="csrf" value=(who.csrf);
                    input type="hidden" name="method" value="bank_transfer";
                    p { (t(l, "Sie zahlen per Lastschrift. Lieber selbst überweisen?", "You pay by direct debit. Rather transfer yourself?")) }
                    div.choice { input id="bt-future" type="checkbox" name="future" value="1"; label for="bt-future" { (t(l, "Auch für künftige Bestellungen dieses Unternehmens", "Also for future orders of this company")) } }
                    button.secondary type="submit" { (t(l, "Auf Überweisung umstellen", "Switch to bank transfer")) }
                }
            } @else if d.row.currency == "EUR" {
                form method="post" action=(format!("/portal/invoices/{id}/payment-method")) {
                    input type="hidden" name="csrf" value=(who.csrf);
                    input type="hidden" name="method" value="direct_debit";
                    p { (t(l, "Bequem per SEPA-Firmenlastschrift zahlen: wir ziehen den Betrag zum Fälligkeitstag ein.", "Pay by SEPA business direct debit: we collect the amount on the due date.")) }
                    label for="iban" { "IBAN" }
                    input id="iban" name="iban" required autocomplete="off" spellcheck="false" inputmode="text" placeholder="DE..";
                    p.mandate {
                        (crate::service::checkout::mandate_text(l.as_str())) br;
                        (t(l, "Gläubiger-ID", "Creditor identifier")) ": " strong { (d.facts.creditor_id) } br;
                        (t(l, "Mandatsreferenz", "Mandate reference")) ": " strong { (d.portal_mandate) }
                    }
                    div.choice { input id="mandate" type="checkbox" name="mandate" value="1" required; label for="mandate" { (t(l, "Ich erteile dieses SEPA-Firmenlastschrift-Mandat.", "I give this SEPA business direct-debit mandate.")) } }
                    div.choice { input id="dd-future" type="checkbox" name="future" value="1" checked[d.standing.is_some()]; label for="dd-future" { (t(l, "Auch für künftige Bestellungen dieses Unternehmens", "Also for future orders of this company")) } }
                    p.hint { (t(l, "Informieren Sie Ihre Bank vor dem ersten Einzug über das Mandat (bei Firmenlastschriften vorgeschrieben).", "Tell your bank about the mandate before the first collection (required for business direct debits).")) }
                    button type="submit" { (t(l, "Auf Lastschrift umstellen", "Switch to direct debit")) }
                }
            }
        }
    }
}

fn paid_card(l: Locale, who: &Session, d: &InvoiceDetail, total: i64) -> Markup {
    let id = d.row.id;
    let open_claims: Vec<_> = d.claims.iter().filter(|c| c.state == "open").collect();
    let amount = format!("{},{:02}", total / 100, total % 100);
    let amount = if l == Locale::En { amount.replace(',', ".") } else { amount };
    html! {
        section.card aria-labelledby="paid-h" {
            h2 id="paid-h" { (t(l, "Schon bezahlt?", "Paid already?")) }
            @for c in &open_claims {
                p { (t(l, "Sie haben uns gesagt: bezahlt am ", "You told us: paid on ")) (date(l, &c.paid_on)) ", " (format_money(c.amount, &c.currency, l.as_str())) "." }
            }
            details open[open_claims.is_empty()] {
                summary { (t(l, "Ich habe bezahlt", "I have paid")) }
                form method="post" action=(format!("/portal/invoices/{id}/paid")) {
                    input type="hidden" name="csrf" value=(who.csrf);
                    p.hint { (t(l, "Überweisungen brauchen ein bis zwei Bankarbeitstage. Sagen Sie uns, wann und wie viel Sie gezahlt haben – wir pausieren Mahnungen 5 Tage.", "Transfers take one or two banking days. Tell us when and how much you paid – we pause reminders for 5 days.")) }
                    label for="paid_on" { (t(l, "Bezahlt am", "Paid on")) }
                    input id="paid_on" name="paid_on" type="date" required max=(d.today.to_string()) value=(d.today.to_string());
                    label for="amount" { (t(l, "Betrag", "Amount")) " (" (d.row.currency) ")" }
                    input id="amount" name="amount" inputmode="decimal" required value=(amount);
                    button type="submit" { (t(l, "Zahlung melden", "Report payment")) }
                }
            }
        }
    }
}

fn reason_label(l: Locale, code: &str) -> &'static str {
    match code {
        "return" => t(l, "Ich habe die Ware zurückgeschickt", "I returned the goods"),
        "goods_not_received" => t(l, "Ware nicht erhalten", "Goods not received"),
        "faulty_goods" => t(l, "Ware mangelhaft", "Goods faulty"),
        "already_paid" => t(l, "Bereits bezahlt", "Already paid"),
        "incorrect_invoice" => t(l, "Rechnung fehlerhaft", "Invoice incorrect"),
        _ => t(l, "Nicht von uns bestellt", "Not ordered by us"),
    }
}

fn problem_card(l: Locale, who: &Session, d: &InvoiceDetail, open_dispute: bool) -> Markup {
    let id = d.row.id;
    html! {
        section.card aria-labelledby="problem-h" {
            h2 id="problem-h" { (t(l, "Problem mit dieser Rechnung", "Problem with this invoice")) }
            @for x in &d.disputes {
                p { (reason_label(l, &x.reason_code)) " – " (l.date(x.created_at.date_naive())) " – "
                    (match x.state.as_str() { "open" => t(l, "in Klärung", "being looked into"), "resolved" => t(l, "geklärt", "settled"), _ => t(l, "zu Ihren Gunsten entschieden", "decided in your favour") }) }
            }
            @if !open_dispute && d.row.state != "canceled" {
                details {
                    summary { (t(l, "Problem melden", "Report a problem")) }
                    form method="post" action=(format!("/portal/invoices/{id}/dispute")) {
                        input type="hidden" name="csrf" value=(who.csrf);
                        fieldset style="border:0;padding:0;margin:0" {
                            legend { (t(l, "Was ist passiert?", "What happened?")) }
                            @for (i, code) in REASON_CODES.iter().enumerate() {
                                div.choice {
                                    input id=(format!("r-{code}")) type="radio" name="reason_code" value=(code) required checked[i == 0];
                                    label for=(format!("r-{code}")) { (reason_label(l, code)) }
                                }
                            }
                        }
                        label for="description" { (t(l, "Beschreibung (optional)", "Description (optional)")) }
                        textarea id="description" name="description" maxlength="5000" {}
                        p.hint { (t(l, "Wir klären das mit dem Händler. Bis dahin erhalten Sie keine Mahnungen zu dieser Rechnung.", "We settle it with the merchant. Meanwhile you receive no reminders for this invoice.")) }
                        button type="submit" { (t(l, "Problem melden", "Report problem")) }
                    }
                }
            }
        }
    }
}

/// `GET /portal/invoices/{id}/girocode.svg`: the EPC QR code of the open amount.
pub async fn girocode(State(state): State<AppState>, headers: HeaderMap, ApiPath(id): ApiPath<String>) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let l = who.locale;
    let Some(id) = capture_id(&id) else { return not_found(l, Some(&who)) };
    let d = match portal::invoice(&state.services, &who, id).await {
        Ok(d) => d,
        Err(e) => return failure(l, Some(&who), e),
    };
    let total = d.row.open_amount() + d.row.charges();
    let f = &d.facts;
    let Some((modules, width)) =
        crate::documents::epc::payload(&f.bic, "netterms", &f.iban, &f.currency, total, &f.reference)
            .and_then(|p| crate::documents::epc::qr(&p))
    else {
        return not_found(l, Some(&who));
    };
    let svg = crate::documents::epc::svg(&modules, width);
    file(svg.into_bytes(), "image/svg+xml", "girocode.svg", true)
}

/// `GET /portal/invoices/{id}/payment-information.pdf`.
pub async fn payment_information(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let Some(id) = capture_id(&id) else { return not_found(who.locale, Some(&who)) };
    match portal::payment_information_pdf(&state.services, &who, id).await {
        Ok(doc) => file(doc.bytes, "application/pdf", &doc.filename, true),
        Err(e) => failure(who.locale, Some(&who), e),
    }
}

/// `GET /portal/invoices/{id}/invoice.pdf`: the merchant's invoice.
pub async fn merchant_invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let Some(id) = capture_id(&id) else { return not_found(who.locale, Some(&who)) };
    match portal::merchant_document(&state.services, &who, id, "invoice", id.0).await {
        Ok(bytes) => file(bytes, "application/pdf", "invoice.pdf", true),
        Err(e) => failure(who.locale, Some(&who), e),
    }
}

/// `GET /portal/invoices/{id}/documents/{message}.pdf`: a notice as its e-mail carried it.
pub async fn sent_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, message)): ApiPath<(String, String)>,
) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let message = message.strip_suffix(".pdf").and_then(|r| r.parse::<uuid::Uuid>().ok());
    let (Some(id), Some(message)) = (capture_id(&id), message) else { return not_found(who.locale, Some(&who)) };
    match portal::sent_document(&state.services, &who, id, message).await {
        Ok(doc) => file(doc.bytes, "application/pdf", &doc.filename, true),
        Err(e) => failure(who.locale, Some(&who), e),
    }
}

/// `GET /portal/invoices/{id}/credit-notes/{refund}.pdf`.
pub async fn credit_note(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, refund)): ApiPath<(String, String)>,
) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let refund = refund.strip_suffix(".pdf").and_then(|r| r.parse::<uuid::Uuid>().ok());
    let (Some(id), Some(refund)) = (capture_id(&id), refund) else { return not_found(who.locale, Some(&who)) };
    match portal::merchant_document(&state.services, &who, id, "credit_note", refund).await {
        Ok(bytes) => file(bytes, "application/pdf", "credit-note.pdf", true),
        Err(e) => failure(who.locale, Some(&who), e),
    }
}

/// What every invoice form starts with: the session (else the sign-in page), the session's
/// CSRF token in the form (else 403, nothing changed), an invoice id in the path (else 404).
async fn invoice_form(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    body: &Bytes,
) -> Result<(Session, CaptureId, HashMap<String, String>), Response> {
    let f = form(body);
    let Some(who) = signed_in(state, headers, &HashMap::new()).await else { return Err(see_other("/portal")) };
    if !f.get("csrf").is_some_and(|c| who.csrf_ok(c)) {
        return Err(csrf_failed(who.locale, Some(&who)));
    }
    let Some(id) = capture_id(id) else { return Err(not_found(who.locale, Some(&who))) };
    Ok((who, id, f))
}

/// `POST /portal/invoices/{id}/payment-method`.
pub async fn payment_method(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Response {
    let (who, id, f) = match invoice_form(&state, &headers, &id, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = who.locale;
    let input = portal::SwitchInput {
        method: f.get("method").cloned().unwrap_or_default(),
        iban: f.get("iban").cloned(),
        mandate_accepted: f.get("mandate").is_some_and(|v| v == "1" || v == "on"),
        future: f.get("future").is_some_and(|v| v == "1" || v == "on"),
    };
    match portal::switch_method(&state.services, &who, id, input).await {
        Ok(s) => see_other(&format!("/portal/invoices/{id}?done={}", s.method)),
        Err(e) => failure(l, Some(&who), e),
    }
}

/// `POST /portal/invoices/{id}/paid`: "I have paid".
pub async fn paid(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Response {
    let (who, id, f) = match invoice_form(&state, &headers, &id, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = who.locale;
    let (on, amount) =
        (f.get("paid_on").map(String::as_str).unwrap_or(""), f.get("amount").map(String::as_str).unwrap_or(""));
    match portal::claim_paid(&state.services, &who, id, on, amount).await {
        Ok(_) => see_other(&format!("/portal/invoices/{id}?done=paid")),
        Err(e) => failure(l, Some(&who), e),
    }
}

/// `POST /portal/invoices/{id}/dispute`: "Problem with this invoice".
pub async fn dispute(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Response {
    let (who, id, f) = match invoice_form(&state, &headers, &id, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let l = who.locale;
    let reason = f.get("reason_code").map(String::as_str).unwrap_or("");
    let description = f.get("description").map(String::as_str).unwrap_or("");
    match portal::open_dispute(&state.services, &who, id, reason, description).await {
        Ok(_) => see_other(&format!("/portal/invoices/{id}?done=dispute")),
        Err(e) => failure(l, Some(&who), e),
    }
}

// ---------------------------------------------------------------------------------------------
// Support

/// `GET /portal/support`: the person's requests and a form for a new one.
pub async fn support(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = params(raw.as_deref());
    let who = session_or_sign_in!(&state, &headers, &q);
    let l = who.locale;
    let rows = match portal::support_requests(&state.services, &who).await {
        Ok(r) => r,
        Err(e) => return failure(l, Some(&who), e),
    };
    let title = t(l, "Ihre Anfragen", "Your requests");
    let body = html! {
        h1 { (title) }
        @if q.get("done").is_some_and(|d| d == "sent") {
            div.notice.ok role="status" { (t(l, "Danke, Ihre Anfrage ist bei uns. Wir antworten per E-Mail und hier.", "Thank you, we have your request. We answer by e-mail and here.")) }
        }
        div.card {
            @if rows.is_empty() {
                p { (t(l, "Noch keine Anfragen.", "No requests yet.")) }
            } @else {
                table {
                    thead { tr { th { (t(l, "Betreff", "Subject")) } th { (t(l, "Gesendet", "Sent")) } th { (t(l, "Status", "Status")) } } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href=(format!("/portal/support/{}", r.id)) { (r.subject) } }
                                td { (l.date(r.created_at.date_naive())) }
                                td { @if r.state == "answered" { span.badge.paid { (t(l, "Beantwortet", "Answered")) } } @else { span.badge.open { (t(l, "Offen", "Open")) } } }
                            }
                        }
                    }
                }
            }
        }
        div.card {
            h2 { (t(l, "Neue Anfrage", "New request")) }
            form method="post" action="/portal/support" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(who.csrf);
                label for="subject" { (t(l, "Betreff", "Subject")) }
                input id="subject" name="subject" maxlength="200";
                label for="body" { (t(l, "Ihre Nachricht", "Your message")) }
                textarea id="body" name="body" required maxlength="10000" {}
                label for="attachment" { (t(l, "Anhang (PDF, PNG oder JPEG, bis 10 MB, optional)", "Attachment (PDF, PNG or JPEG, up to 10 MB, optional)")) }
                input id="attachment" name="attachment" type="file" accept="application/pdf,image/png,image/jpeg";
                button type="submit" { (t(l, "Anfrage senden", "Send request")) }
            }
        }
    };
    respond(StatusCode::OK, shell(l, title, Some(&who), "/portal/support", body))
}

/// `POST /portal/support` (multipart): a new request, on an invoice or in general.
pub async fn open_support(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let l = who.locale;
    // Not a form of ours: no token could be read, nothing changes.
    let Ok(mut mp) = multipart else { return csrf_failed(l, Some(&who)) };
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut attachment: Option<portal::Attachment> = None;
    let mut too_large = false;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                too_large = true;
                break;
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().map(str::to_owned);
        let Ok(bytes) = field.bytes().await else {
            too_large = true;
            break;
        };
        if name == "attachment" {
            if !bytes.is_empty() {
                attachment = Some(portal::Attachment { bytes: bytes.to_vec(), name: filename.unwrap_or_default() });
            }
        } else if bytes.len() <= 64 * 1024 {
            fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    if !fields.get("csrf").is_some_and(|c| who.csrf_ok(c)) {
        return csrf_failed(l, Some(&who));
    }
    if too_large {
        return failure(
            l,
            Some(&who),
            crate::service::orders::invalid(
                "attachment",
                t(l, "Der Anhang ist größer als 10 MB.", "The attachment is larger than 10 MB."),
            ),
        );
    }
    let capture = match fields.get("capture_id").map(String::as_str).filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => match capture_id(raw) {
            Some(id) => Some(id),
            None => return not_found(l, Some(&who)),
        },
    };
    let subject = fields.get("subject").map(String::as_str).unwrap_or("");
    let body = fields.get("body").map(String::as_str).unwrap_or("");
    match portal::open_support(&state.services, &who, capture, subject, body, attachment).await {
        Ok(_) => see_other("/portal/support?done=sent"),
        Err(e) => failure(l, Some(&who), e),
    }
}

/// `GET /portal/support/{id}`.
pub async fn support_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let q = params(raw.as_deref());
    let who = session_or_sign_in!(&state, &headers, &q);
    let l = who.locale;
    let Ok(id) = id.parse::<uuid::Uuid>() else { return not_found(l, Some(&who)) };
    let r = match portal::support_request(&state.services, &who, id).await {
        Ok(r) => r,
        Err(e) => return failure(l, Some(&who), e),
    };
    let body = html! {
        h1 { (r.subject) }
        div.card {
            p.hint { (t(l, "Gesendet am ", "Sent on ")) (l.date(r.created_at.date_naive())) }
            p style="white-space:pre-wrap" { (r.body) }
            @if let Some(name) = &r.attachment_name {
                p { (t(l, "Anhang: ", "Attachment: ")) a href=(format!("/portal/support/{}/attachment", r.id)) { (name) } }
            }
            @if let Some(c) = r.capture_id { p { a href=(format!("/portal/invoices/{c}")) { (t(l, "Zur Rechnung", "To the invoice")) } } }
        }
        div.card {
            h2 { (t(l, "Antwort", "Answer")) }
            @match &r.answer {
                Some(a) => { p style="white-space:pre-wrap" { (a) } }
                None => { p { (t(l, "Wir melden uns so bald wie möglich.", "We will answer as soon as we can.")) } }
            }
        }
    };
    respond(StatusCode::OK, shell(l, &r.subject, Some(&who), &format!("/portal/support/{id}"), body))
}

/// `GET /portal/support/{id}/attachment`.
pub async fn support_attachment(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let who = session_or_sign_in!(&state, &headers, &HashMap::new());
    let Ok(id) = id.parse::<uuid::Uuid>() else { return not_found(who.locale, Some(&who)) };
    match portal::support_attachment(&state.services, Some(&who.email), id).await {
        Ok((bytes, ty, name)) => file(bytes, &ty, &name, false),
        Err(e) => failure(who.locale, Some(&who), e),
    }
}

// ---------------------------------------------------------------------------------------------
// Help center

struct Topic {
    slug: &'static str,
    title: (&'static str, &'static str),
    paragraphs: &'static [(&'static str, &'static str)],
}

const TOPICS: &[Topic] = &[
    Topic {
        slug: "paying",
        title: ("So bezahlen Sie", "How to pay"),
        paragraphs: &[
            (
                "Sie zahlen an netterms, nicht an den Händler: netterms hat die Rechnung übernommen und den Händler schon bezahlt.",
                "You pay netterms, not the merchant: netterms took over the invoice and has paid the merchant already.",
            ),
            (
                "Überweisen Sie den offenen Betrag auf die IBAN, die bei der Rechnung steht – sie gehört nur Ihrem Unternehmen – und geben Sie den Verwendungszweck (RF…) genau so an. Mit dem GiroCode füllt Ihre Banking-App alles aus.",
                "Transfer the open amount to the IBAN shown with the invoice – it belongs to your company alone – and give the reference (RF…) exactly as shown. The GiroCode fills everything in for your banking app.",
            ),
            (
                "Mehrere Rechnungen können Sie mit einer Überweisung bezahlen; wir ordnen sie der ältesten zuerst zu. Zu viel Gezahltes schreiben wir Ihnen gut.",
                "You can pay several invoices with one transfer; we apply it to the oldest first. Whatever you pay too much is credited to you.",
            ),
        ],
    },
    Topic {
        slug: "reminders",
        title: ("Was die Erinnerungen bedeuten", "What the reminders mean"),
        paragraphs: &[
            (
                "Drei Tage vor der Fälligkeit erinnern wir freundlich. Ist die Rechnung danach offen, folgen eine Zahlungserinnerung (7 Tage nach Fälligkeit), die 1. Mahnung (21 Tage) und die letzte Mahnung (35 Tage); 49 Tage nach Fälligkeit geht die Forderung ins Inkasso.",
                "Three days before the due date we send a friendly reminder. If the invoice is still open, a payment reminder follows (7 days after the due date), the first dunning notice (21 days) and the final notice (35 days); 49 days after the due date the claim goes to collection.",
            ),
            (
                "Ab der 1. Mahnung berechnen wir die gesetzliche Pauschale von 40 € (§ 288 Abs. 5 BGB) und Verzugszinsen von 9 Prozentpunkten über dem Basiszinssatz (§ 288 Abs. 2 BGB). Zahlungen verrechnen wir zuerst auf Kosten und Zinsen, dann auf die Rechnung (§ 367 BGB).",
                "From the first dunning notice we charge the statutory flat fee of €40 (§ 288(5) BGB) and default interest of 9 percentage points above the base rate (§ 288(2) BGB). Payments settle fees and interest first, then the invoice (§ 367 BGB).",
            ),
            (
                "Haben Sie schon bezahlt, sagen Sie es uns mit „Ich habe bezahlt“ bei der Rechnung: wir pausieren Mahnungen 5 Tage. Gibt es ein Problem mit der Lieferung oder der Rechnung, melden Sie es dort – solange es geklärt wird, ruhen die Mahnungen.",
                "If you have paid already, tell us with \"I have paid\" on the invoice: we pause reminders for 5 days. If there is a problem with the delivery or the invoice, report it there – reminders rest while it is being settled.",
            ),
        ],
    },
    Topic {
        slug: "direct-debit",
        title: ("SEPA-Firmenlastschrift", "SEPA business direct debit"),
        paragraphs: &[
            (
                "Mit einer SEPA-Firmenlastschrift ziehen wir den Betrag zum Fälligkeitstag von Ihrem Geschäftskonto ein. Sie stellen das bei jeder offenen Rechnung um – auf Wunsch auch für künftige Bestellungen.",
                "With a SEPA business direct debit we collect the amount from your business account on the due date. You switch to it on any open invoice – on request for future orders too.",
            ),
            (
                "Firmenlastschriften müssen Sie Ihrer Bank vor dem ersten Einzug bestätigen; ein Erstattungsanspruch wie bei der Basislastschrift besteht nicht. Vor jedem Einzug nennen wir Betrag, Tag, Mandatsreferenz und unsere Gläubiger-ID.",
                "Business direct debits must be confirmed to your bank before the first collection; there is no refund right as with the core scheme. Before each collection we tell you the amount, the day, the mandate reference and our creditor identifier.",
            ),
            (
                "Kommt eine Lastschrift zurück, schreiben wir Ihnen, warum, und die Rechnung ist wieder per Überweisung zu zahlen.",
                "If a direct debit comes back, we write to you why, and the invoice is to be paid by transfer again.",
            ),
        ],
    },
    Topic {
        slug: "privacy",
        title: ("Datenschutz", "Data protection"),
        paragraphs: &[
            (
                "Im Portal sehen Sie die Bestellungen, bei denen Ihre E-Mail-Adresse angegeben wurde – nicht alle Bestellungen Ihres Unternehmens. Die Anmeldung läuft über Einmal-Links; wir speichern weder Passwörter noch die Links selbst, nur deren Prüfsummen.",
                "The portal shows the orders placed with your e-mail address – not every order of your company. Sign-in works with one-time links; we store neither passwords nor the links themselves, only their digests.",
            ),
            (
                "Wir verarbeiten Ihre Daten, um die Rechnung abzuwickeln (Art. 6 Abs. 1 lit. b DSGVO) und um Forderungen zu verfolgen (lit. f). Auskunft, Berichtigung und Löschung erhalten Sie über eine Anfrage hier im Portal oder beim Datenschutzbeauftragten des Betreibers.",
                "We process your data to handle the invoice (Art. 6(1)(b) GDPR) and to pursue claims (point (f)). For access, correction or erasure, send a request here in the portal or contact the operator's data protection officer.",
            ),
        ],
    },
];

/// `GET /portal/help` (no sign-in needed).
pub async fn help_index(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    help(state, headers, raw, None).await
}

/// `GET /portal/help/{topic}`.
pub async fn help_topic(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    ApiPath(topic): ApiPath<String>,
) -> Response {
    help(state, headers, raw, Some(topic)).await
}

async fn help(state: AppState, headers: HeaderMap, raw: Option<String>, topic: Option<String>) -> Response {
    let q = params(raw.as_deref());
    let who = signed_in(&state, &headers, &q).await;
    let l = who.as_ref().map(|w| w.locale).unwrap_or_else(|| guess_lang(&q, &headers));
    let pick = |p: &(&'static str, &'static str)| if l == Locale::En { p.1 } else { p.0 };
    match topic {
        None => {
            let title = t(l, "Hilfe", "Help");
            let body = html! {
                h1 { (title) }
                div.card { ul { @for tp in TOPICS { li { a href=(format!("/portal/help/{}", tp.slug)) { (pick(&tp.title)) } } } } }
            };
            respond(StatusCode::OK, shell(l, title, who.as_ref(), "/portal/help", body))
        }
        Some(slug) => {
            let Some(tp) = TOPICS.iter().find(|tp| tp.slug == slug) else { return not_found(l, who.as_ref()) };
            let title = pick(&tp.title);
            let body = html! {
                p { a href="/portal/help" { "← " (t(l, "Hilfe", "Help")) } }
                h1 { (title) }
                div.card { @for p in tp.paragraphs { p { (pick(p)) } } }
            };
            respond(StatusCode::OK, shell(l, title, who.as_ref(), &format!("/portal/help/{slug}"), body))
        }
    }
}

/// The portal's routes, with the body limit its uploads need.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    let upload_limit = portal::MAX_FILE_BYTES + 256 * 1024;
    axum::Router::new()
        .route("/portal", get(home))
        .route("/portal/login", post(request_link))
        .route("/portal/login/{token}", get(confirm_page).post(sign_in))
        .route("/portal/logout", post(sign_out))
        .route("/portal/invoices/{id}", get(invoice))
        .route("/portal/invoices/{id}/girocode.svg", get(girocode))
        .route("/portal/invoices/{id}/payment-information.pdf", get(payment_information))
        .route("/portal/invoices/{id}/documents/{message}", get(sent_document))
        .route("/portal/invoices/{id}/invoice.pdf", get(merchant_invoice))
        .route("/portal/invoices/{id}/credit-notes/{refund}", get(credit_note))
        .route("/portal/invoices/{id}/payment-method", post(payment_method))
        .route("/portal/invoices/{id}/paid", post(paid))
        .route("/portal/invoices/{id}/dispute", post(dispute))
        .route(
            "/portal/support",
            get(support).post(open_support).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/portal/support/{id}", get(support_request))
        .route("/portal/support/{id}/attachment", get(support_attachment))
        .route("/portal/help", get(help_index))
        .route("/portal/imprint", get(imprint))
        .route("/portal/help/{topic}", get(help_topic))
}
