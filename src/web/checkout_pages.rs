//! The buyer's pages: the hosted payment page (`/pay/{id}`), the widget frame (`/widget/{id}`),
//! and the scripts they and merchants' pages load. German and English, no third-party assets;
//! both pages submit through the checkout API.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::AppState;
use super::extract::ApiPath;
use crate::domain::ids::SessionId;
use crate::domain::legal_forms::{LEGAL_FORMS, RequiredInput};
use crate::domain::order::{DebtorCompany, OrderData};
use crate::service::checkout::{self, CheckoutError};
use crate::service::sessions::{self, SessionView};

const FORM_JS: &str = include_str!("../../assets/form.js");
const SDK_JS: &str = include_str!("../../assets/checkout.js");

/// The texts of the buyer's pages.
struct Texts {
    lang: &'static str,
    title: &'static str,
    pay_by_invoice: &'static str,
    terms_days: &'static str,
    total: &'static str,
    net: &'static str,
    tax: &'static str,
    company: &'static str,
    company_name: &'static str,
    legal_form: &'static str,
    registration_number: &'static str,
    registration_court: &'static str,
    tax_id: &'static str,
    street: &'static str,
    house_number: &'static str,
    postal_code: &'static str,
    city: &'static str,
    country: &'static str,
    contact: &'static str,
    email: &'static str,
    method: &'static str,
    bank_transfer: &'static str,
    direct_debit: &'static str,
    iban: &'static str,
    mandate_reference: &'static str,
    /// "I accept the ", "payment terms", " and the ", "privacy notice", "." (the two links between).
    accept_terms: (&'static str, &'static str, &'static str, &'static str, &'static str),
    submit: &'static str,
    cancel: &'static str,
    back: &'static str,
    gone: &'static str,
    wait_order: &'static str,
    messages: &'static str,
}

const DE: Texts = Texts {
    lang: "de",
    title: "Kauf auf Rechnung",
    pay_by_invoice: "Bezahlen Sie bequem per Rechnung",
    terms_days: "Zahlbar in {days} Tagen nach Versand",
    total: "Gesamt",
    net: "Netto",
    tax: "USt.",
    company: "Ihr Unternehmen",
    company_name: "Firmenname",
    legal_form: "Rechtsform",
    registration_number: "Handelsregisternummer (z. B. HRB 12345)",
    registration_court: "Registergericht",
    tax_id: "USt-IdNr. (z. B. DE123456789)",
    street: "Straße",
    house_number: "Hausnummer",
    postal_code: "PLZ",
    city: "Ort",
    country: "Land",
    contact: "Kontakt",
    email: "E-Mail für die Rechnung",
    method: "Zahlungsart",
    bank_transfer: "Überweisung",
    direct_debit: "SEPA-Firmenlastschrift",
    iban: "IBAN",
    mandate_reference: "Mandatsreferenz",
    accept_terms: ("Ich akzeptiere die ", "Zahlungsbedingungen", " und die ", "Datenschutzhinweise", " von netterms."),
    submit: "Kostenpflichtig bestellen",
    cancel: "Abbrechen",
    back: "Zurück zum Shop",
    gone: "Diese Zahlungssitzung ist nicht mehr gültig.",
    wait_order: "Bestelldaten werden geladen …",
    messages: r#"{"needs_register":"Für diese Rechtsform brauchen wir die Handelsregisternummer.","needs_tax_id":"Für diese Rechtsform brauchen wir die USt-IdNr.","fix":"Bitte prüfen Sie Ihre Angaben:","checking":"Wir prüfen Ihre Bestellung …","approved":"Vielen Dank – Ihr Kauf auf Rechnung ist bestätigt.","declined":"Leider können wir diesen Kauf auf Rechnung nicht anbieten. Bitte wählen Sie im Shop eine andere Zahlungsart.","failed":"Das hat nicht geklappt. Bitte versuchen Sie es erneut.","wait":"Die Bestelldaten fehlen noch.","total":"Gesamt","terms_days":"Zahlbar in {days} Tagen"}"#,
};

const EN: Texts = Texts {
    lang: "en",
    title: "Pay by invoice",
    pay_by_invoice: "Buy now, pay by invoice",
    terms_days: "Pay by invoice in {days} days after shipping",
    total: "Total",
    net: "Net",
    tax: "VAT",
    company: "Your company",
    company_name: "Company name",
    legal_form: "Legal form",
    registration_number: "Commercial register number (e.g. HRB 12345)",
    registration_court: "Register court",
    tax_id: "VAT ID (e.g. DE123456789)",
    street: "Street",
    house_number: "House number",
    postal_code: "Postal code",
    city: "City",
    country: "Country",
    contact: "Contact",
    email: "E-mail for the invoice",
    method: "Payment method",
    bank_transfer: "Bank transfer",
    direct_debit: "SEPA B2B direct debit",
    iban: "IBAN",
    mandate_reference: "Mandate reference",
    accept_terms: ("I accept netterms' ", "payment terms", " and ", "privacy notice", "."),
    submit: "Place order",
    cancel: "Cancel",
    back: "Back to the shop",
    gone: "This payment session is no longer valid.",
    wait_order: "Loading the order …",
    messages: r#"{"needs_register":"This legal form needs the commercial register number.","needs_tax_id":"This legal form needs the VAT ID.","fix":"Please check:","checking":"Checking your order …","approved":"Thank you – your purchase on invoice is confirmed.","declined":"We are sorry: we cannot offer payment by invoice for this purchase. Please choose another payment method in the shop.","failed":"That did not work. Please try again.","wait":"The order data has not arrived yet.","total":"Total","terms_days":"Pay in {days} days"}"#,
};

fn texts(lang: &str) -> &'static Texts {
    if lang == "en" { &EN } else { &DE }
}

const STYLE: &str = "[hidden]{display:none!important}*{box-sizing:border-box}body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;\
background:#f4f6f8;color:#1b1f24;line-height:1.45}main{max-width:40rem;margin:0 auto;padding:1rem}\
.card{background:#fff;border-radius:12px;padding:1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:1rem}\
h1{font-size:1.4rem;margin:.2rem 0 1rem}.merchant{color:#555;margin:0}table{width:100%;border-collapse:collapse}\
td,th{padding:.35rem 0;text-align:left}td.num,th.num{text-align:right;white-space:nowrap;padding-left:.75rem}tfoot td{font-weight:600;border-top:1px solid #ddd}\
fieldset{border:0;padding:0;margin:0 0 1rem}legend{font-weight:600;margin-bottom:.5rem}\
label{display:block;font-size:.9rem;margin:.5rem 0 .2rem}input,select{width:100%;font-size:1rem;padding:.55rem;\
border:1px solid #b8c0c8;border-radius:6px;background:#fff}input[type=radio],input[type=checkbox]{width:auto;margin-right:.5rem}\
.row{display:grid;grid-template-columns:2fr 1fr;gap:.75rem}.choice{display:flex;align-items:center;margin:.4rem 0}\
.choice label{margin:0}[aria-invalid=true]{border-color:#c92a2a;outline:2px solid #ffc9c9}\
button,.button{font-size:1rem;padding:.75rem 1.2rem;border-radius:8px;border:1px solid #0b5cad;background:#0b5cad;color:#fff;\
cursor:pointer;text-decoration:none;display:inline-block}button.secondary{background:#fff;color:#0b5cad}\
button:focus-visible,a:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #f59f00;outline-offset:2px}\
.actions{display:flex;gap:.75rem;flex-wrap:wrap;margin-top:1rem}.nt-status{margin-top:1rem;min-height:1.5rem}\
.nt-status.error{color:#c92a2a}.nt-status.ok{color:#2b8a3e}.hint{font-size:.85rem;color:#555}\
.mandate{font-size:.85rem;background:#f8f9fa;padding:.6rem;border-radius:6px}@media(max-width:30rem){.row{grid-template-columns:1fr}}";

/// Formats minor units for people: `1.234,56 €` in German, `€1,234.56` in English.
pub fn format_money(minor: i64, currency: &str, lang: &str) -> String {
    let neg = minor < 0;
    let abs = minor.unsigned_abs();
    let (units, cents) = (abs / 100, abs % 100);
    let digits = units.to_string();
    let sep = if lang == "en" { ',' } else { '.' };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(sep);
        }
        grouped.push(c);
    }
    let sign = if neg { "-" } else { "" };
    let symbol = if currency == "EUR" { "€" } else { currency };
    if lang == "en" {
        format!("{sign}{symbol}{grouped}.{cents:02}")
    } else {
        format!("{sign}{grouped},{cents:02} {symbol}")
    }
}

/// The `<head>` of the buyer's pages (payment page, widget, portal).
pub fn head(title: &str, style: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="robots" content="noindex";
            title { (title) " · netterms" }
            link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
            style { (PreEscaped(style)) }
        }
    }
}

fn shell(t: &Texts, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(t.lang) {
            (head(title, STYLE))
            body {
                main { (body) }
                footer style="max-width:40rem;margin:0 auto;padding:1rem;font-size:.88rem" {
                    a href=(format!("/portal/imprint?lang={}", t.lang)) { (if t.lang == "de" { "Impressum" } else { "Imprint" }) }
                }
            }
        }
    }
}

/// The company, contact, payment-method and terms fields, prefilled from `company`.
fn buyer_fields(
    t: &Texts,
    company: Option<&DebtorCompany>,
    email: Option<&str>,
    mandate_reference: &str,
    countries: &[String],
) -> Markup {
    let c = company;
    let a = c.map(|c| &c.address);
    html! {
        fieldset {
            legend { (t.company) }
            label for="company_name" { (t.company_name) }
            input id="company_name" name="company_name" list="nt-companies" autocomplete="organization" required
                value=[c.map(|c| c.name.as_str())];
            datalist id="nt-companies" {}
            label for="legal_form" { (t.legal_form) }
            select id="legal_form" name="legal_form" required {
                @for f in LEGAL_FORMS {
                    option value=(f.code) selected[c.is_some_and(|c| c.legal_form == f.code)]
                        data-requires=(match f.required_input { RequiredInput::RegistrationNumber => "registration_number", RequiredInput::TaxId => "tax_id" }) {
                        (if t.lang == "en" { f.name_en } else { f.name })
                    }
                }
            }
            p.hint id="nt-id-hint" aria-live="polite" {}
            div.row {
                div { label for="registration_number" { (t.registration_number) }
                      input id="registration_number" name="registration_number" value=[c.and_then(|c| c.registration_number.as_deref())]; }
                div { label for="registration_court" { (t.registration_court) }
                      input id="registration_court" name="registration_court" value=[c.and_then(|c| c.registration_court.as_deref())]; }
            }
            label for="tax_id" { (t.tax_id) }
            input id="tax_id" name="tax_id" value=[c.and_then(|c| c.tax_id.as_deref())];
            div.row {
                div { label for="street" { (t.street) }
                      input id="street" name="street" autocomplete="address-line1" required value=[a.map(|a| a.street.as_str())]; }
                div { label for="house_number" { (t.house_number) }
                      input id="house_number" name="house_number" value=[a.and_then(|a| a.house_number.as_deref())]; }
            }
            div.row {
                div { label for="city" { (t.city) }
                      input id="city" name="city" autocomplete="address-level2" required value=[a.map(|a| a.city.as_str())]; }
                div { label for="postal_code" { (t.postal_code) }
                      input id="postal_code" name="postal_code" autocomplete="postal-code" required value=[a.map(|a| a.postal_code.as_str())]; }
            }
            label for="country" { (t.country) }
            select id="country" name="country" autocomplete="country" {
                @for cc in countries {
                    option value=(cc) selected[a.map_or(cc == "DE", |a| &a.country == cc)] { (country_name(cc, t.lang)) }
                }
            }
        }
        fieldset {
            legend { (t.contact) }
            label for="email" { (t.email) }
            input id="email" name="email" type="email" autocomplete="email" required value=[email];
        }
        fieldset {
            legend { (t.method) }
            div.choice { input id="pm_bt" type="radio" name="payment_method" value="bank_transfer" checked; label for="pm_bt" { (t.bank_transfer) } }
            div.choice { input id="pm_dd" type="radio" name="payment_method" value="direct_debit"; label for="pm_dd" { (t.direct_debit) } }
            div id="nt-debit" hidden {
                label for="iban" { (t.iban) }
                input id="iban" name="iban" autocomplete="off" inputmode="text" spellcheck="false";
                p.mandate { (checkout::mandate_text(t.lang)) br; (t.mandate_reference) ": " strong { (mandate_reference) } }
            }
        }
        div.choice {
            input id="terms" type="checkbox" name="terms" required;
            label for="terms" {
                (t.accept_terms.0) a href=(format!("/legal/terms?lang={}", t.lang)) target="_blank" rel="noopener" { (t.accept_terms.1) }
                (t.accept_terms.2) a href=(format!("/legal/privacy?lang={}", t.lang)) target="_blank" rel="noopener" { (t.accept_terms.3) }
                (t.accept_terms.4)
            }
        }
    }
}

/// Submit, cancel, the back link shown after a decline, and the status line screen readers announce.
fn form_actions(t: &Texts) -> Markup {
    html! {
        div.actions {
            button type="submit" { (t.submit) }
            button.secondary type="button" id="nt-cancel" { (t.cancel) }
            a.button id="nt-back" hidden href="#" { (t.back) }
        }
        p id="nt-status" class="nt-status" role="status" aria-live="assertive" tabindex="-1" {}
    }
}

/// The form's messages in the page's language, and its script.
fn form_script(t: &Texts) -> Markup {
    html! {
        script id="nt-messages" type="application/json" { (PreEscaped(t.messages)) }
        script src="/assets/form.js" {}
    }
}

fn order_summary(t: &Texts, d: &OrderData) -> Markup {
    let cur = d.amount.currency.as_str();
    html! {
        table {
            tbody {
                @for li in &d.line_items {
                    tr { td { (li.quantity) " × " (li.title) } td.num { (format_money(li.amount.gross, cur, t.lang)) } }
                }
            }
            tfoot {
                tr { td { (t.net) } td.num { (format_money(d.amount.net, cur, t.lang)) } }
                tr { td { (t.tax) } td.num { (format_money(d.amount.tax, cur, t.lang)) } }
                tr { td { (t.total) } td.num { (format_money(d.amount.gross, cur, t.lang)) } }
            }
        }
        p { strong { (t.terms_days.replace("{days}", &d.duration.to_string())) } }
    }
}

fn with_headers(status: StatusCode, markup: Markup, frame_ancestors: &str) -> Response {
    let mut resp = (status, markup).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    );
    match HeaderValue::from_str(&csp) {
        Ok(v) => {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        // Never serve a page without its policy: without one it could be framed by anyone.
        Err(_) => return StatusCode::FORBIDDEN.into_response(),
    }
    // Browsers without CSP level 2: a page not meant to be framed says so the old way too.
    if frame_ancestors == "'none'" {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

fn gone(t: &Texts, status: StatusCode) -> Response {
    with_headers(status, shell(t, t.title, html! { div.card { h1 { (t.title) } p { (t.gone) } } }), "'none'")
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

async fn load(state: &AppState, id: SessionId) -> Option<(SessionView, Vec<String>)> {
    match sessions::session_view(&state.services, id).await {
        Ok(v) => Some(v),
        Err(CheckoutError::NotFound(_)) => None,
        Err(e) => {
            tracing::warn!(error = %super::error::error_chain(&e), "session could not be loaded");
            None
        }
    }
}

/// `GET /pay/{client_secret}`: the hosted payment page.
pub async fn payment_page(
    State(state): State<AppState>,
    ApiPath(secret): ApiPath<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(id) = sessions::session_of_secret(&state.services, &secret) else {
        return gone(&DE, StatusCode::NOT_FOUND);
    };
    let Some((view, _)) = load(&state, id).await else { return gone(&DE, StatusCode::NOT_FOUND) };
    let t = texts(q.lang.as_deref().unwrap_or(&view.locale));
    let (Some(order), "payment_page") = (view.order.as_ref(), view.kind.as_str()) else {
        return gone(t, StatusCode::NOT_FOUND);
    };
    if !matches!(view.status.as_str(), "open" | "declined") {
        return gone(t, StatusCode::GONE);
    }
    let countries = served_countries(&state).await;
    let other = if t.lang == "de" { ("en", "English") } else { ("de", "Deutsch") };
    let body = html! {
        div.card {
            p.merchant { (view.merchant_name) }
            h1 { (t.pay_by_invoice) }
            (order_summary(t, order))
            p.hint { a href=(format!("?lang={}", other.0)) lang=(other.0) { (other.1) } }
        }
        form.card id="nt-form" data-mode="page" data-session=(secret) novalidate {
            (buyer_fields(t, Some(&order.debtor_company), order.debtor_person.as_ref().map(|p| p.email.as_str()),
                &checkout::mandate_reference(&state.services, view.session_id), &countries))
            (form_actions(t))
        }
        (form_script(t))
    };
    with_headers(StatusCode::OK, shell(t, t.title, body), "'none'")
}

#[derive(Debug, Deserialize)]
pub struct WidgetQuery {
    origin: Option<String>,
    lang: Option<String>,
}

/// `GET /widget/{client_secret}?origin=…`: the widget's frame. Only the session's allowed origins
/// may embed it (CSP `frame-ancestors`), and it talks only to that origin.
pub async fn widget_frame(
    State(state): State<AppState>,
    ApiPath(secret): ApiPath<String>,
    Query(q): Query<WidgetQuery>,
) -> Response {
    let t = texts(q.lang.as_deref().unwrap_or("de"));
    let Some(id) = sessions::session_of_secret(&state.services, &secret) else {
        return gone(t, StatusCode::NOT_FOUND);
    };
    let Some((view, origins)) = load(&state, id).await else { return gone(t, StatusCode::NOT_FOUND) };
    let origin = q.origin.unwrap_or_default();
    if view.kind != "widget" || !origins.contains(&origin) {
        return gone(t, StatusCode::FORBIDDEN);
    }
    if !matches!(view.status.as_str(), "open" | "declined") {
        return gone(t, StatusCode::GONE);
    }
    let countries = served_countries(&state).await;
    let body = html! {
        div.card {
            p.merchant id="nt-summary" { (t.wait_order) }
            h1 { (t.pay_by_invoice) }
        }
        form.card id="nt-form" data-mode="widget" data-session=(secret) data-parent-origin=(origin) novalidate {
            div id="nt-ready" hidden {}
            (buyer_fields(t, None, None, &checkout::mandate_reference(&state.services, view.session_id), &countries))
            (form_actions(t))
        }
        (form_script(t))
    };
    with_headers(StatusCode::OK, shell(t, t.title, body), &origins.join(" "))
}

/// The countries the credit policy serves (what the buyer can choose; others would be declined).
async fn served_countries(state: &AppState) -> Vec<String> {
    let policy = match state.db.conn().await {
        Ok(mut conn) => checkout::credit_policy(&state.services, &mut conn).await.ok(),
        Err(_) => None,
    };
    policy.map_or_else(|| state.config.credit.countries.clone(), |p| p.countries)
}

/// A country's name for people, by ISO code.
fn country_name(code: &str, lang: &str) -> &'static str {
    const NAMES: &[(&str, &str, &str)] = &[
        ("AT", "Österreich", "Austria"),
        ("BE", "Belgien", "Belgium"),
        ("BG", "Bulgarien", "Bulgaria"),
        ("CH", "Schweiz", "Switzerland"),
        ("CY", "Zypern", "Cyprus"),
        ("CZ", "Tschechien", "Czechia"),
        ("DE", "Deutschland", "Germany"),
        ("DK", "Dänemark", "Denmark"),
        ("EE", "Estland", "Estonia"),
        ("ES", "Spanien", "Spain"),
        ("FI", "Finnland", "Finland"),
        ("FR", "Frankreich", "France"),
        ("GB", "Vereinigtes Königreich", "United Kingdom"),
        ("GR", "Griechenland", "Greece"),
        ("HR", "Kroatien", "Croatia"),
        ("HU", "Ungarn", "Hungary"),
        ("IE", "Irland", "Ireland"),
        ("IS", "Island", "Iceland"),
        ("IT", "Italien", "Italy"),
        ("LI", "Liechtenstein", "Liechtenstein"),
        ("LT", "Litauen", "Lithuania"),
        ("LU", "Luxemburg", "Luxembourg"),
        ("LV", "Lettland", "Latvia"),
        ("MT", "Malta", "Malta"),
        ("NL", "Niederlande", "Netherlands"),
        ("NO", "Norwegen", "Norway"),
        ("PL", "Polen", "Poland"),
        ("PT", "Portugal", "Portugal"),
        ("RO", "Rumänien", "Romania"),
        ("SE", "Schweden", "Sweden"),
        ("SI", "Slowenien", "Slovenia"),
        ("SK", "Slowakei", "Slovakia"),
    ];
    NAMES.iter().find(|(c, _, _)| *c == code).map_or("", |(_, de, en)| if lang == "en" { en } else { de })
}

#[derive(Debug, Deserialize)]
pub struct LegalQuery {
    lang: Option<String>,
}

/// `GET /legal/terms` and `/legal/privacy`: what the buyer agrees to on the page, in its language.
pub async fn legal(axum::extract::Path(which): axum::extract::Path<String>, Query(q): Query<LegalQuery>) -> Response {
    let t = texts(q.lang.as_deref().unwrap_or("de"));
    let en = t.lang == "en";
    let (title, paragraphs): (&str, &[&str]) = match (which.as_str(), en) {
        ("terms", false) => (
            "Zahlungsbedingungen",
            &[
                "Mit dem Kauf auf Rechnung tritt der Händler seine Forderung an netterms ab. Sie zahlen den Rechnungsbetrag \
             bis zum Fälligkeitsdatum an netterms – auf die IBAN und mit der Referenz aus der Zahlungsinformation.",
                "Das Zahlungsziel nennt Ihnen der Shop; es beginnt mit dem Versand. Bei SEPA-Firmenlastschrift ziehen wir \
             den Betrag zum Fälligkeitsdatum ein und kündigen das vorher an.",
                "Zahlen Sie nicht rechtzeitig, erinnern und mahnen wir. Im Verzug fallen Verzugszinsen von 9 Prozentpunkten \
             über dem Basiszinssatz (§ 288 Abs. 2 BGB) und die Pauschale von 40 € (§ 288 Abs. 5 BGB) an; danach kann \
             die Forderung an ein Inkasso übergeben werden.",
                "Reklamationen zur Ware klären Sie mit dem Händler; eine Gutschrift des Händlers mindert Ihre Rechnung.",
            ],
        ),
        ("terms", true) => (
            "Payment terms",
            &[
                "When you buy on invoice, the merchant assigns its claim to netterms. You pay the invoice amount to netterms \
             by the due date — to the IBAN and with the reference in the payment information.",
                "The shop tells you the payment term; it starts with shipping. With SEPA B2B direct debit we collect the \
             amount on the due date and notify you beforehand.",
                "If you do not pay on time we remind you and send dunning letters. Once in default, interest of 9 percentage \
             points above the base rate (§ 288(2) BGB) and the flat fee of €40 (§ 288(5) BGB) are due; the claim may \
             then be handed to a collection agency.",
                "Complaints about the goods are settled with the merchant; a credit note from the merchant lowers your invoice.",
            ],
        ),
        ("privacy", false) => (
            "Datenschutzhinweise",
            &[
                "netterms verarbeitet die Angaben zu Ihrem Unternehmen, Ihre Kontaktdaten und die Bestelldaten, um über den \
             Kauf auf Rechnung zu entscheiden, die Forderung zu verwalten und Zahlungen zuzuordnen (Art. 6 Abs. 1 lit. b \
             und f DSGVO).",
                "Wir geben Daten nur an den Händler, seinen Zahlungsdienstleister und – im Verzug – an ein Inkasso weiter. \
             Buchungsrelevante Daten bewahren wir so lange auf, wie es das Handels- und Steuerrecht verlangt.",
                "Sie haben das Recht auf Auskunft, Berichtigung, Löschung, Einschränkung und Widerspruch. Wenden Sie sich \
             dazu an den Betreiber dieser netterms-Installation.",
            ],
        ),
        ("privacy", true) => (
            "Privacy notice",
            &[
                "netterms processes your company's details, your contact data and the order to decide on the purchase on \
             invoice, to manage the claim and to match payments (Art. 6(1)(b) and (f) GDPR).",
                "We share data only with the merchant, its payment service provider and — in default — a collection agency. \
             Bookkeeping records are kept as long as commercial and tax law require.",
                "You have the right to access, rectification, erasure, restriction and objection. Contact the operator of \
             this netterms installation.",
            ],
        ),
        _ => return gone(t, StatusCode::NOT_FOUND),
    };
    let body = html! {
        div.card {
            h1 { (title) }
            @for p in paragraphs { p { (p) } }
        }
    };
    with_headers(StatusCode::OK, shell(t, title, body), "'none'")
}

/// `GET /assets/favicon.svg`.
pub async fn favicon() -> Response {
    let mut resp = FAVICON.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    resp
}

const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"7\" fill=\"#0b5cad\"/>\
<path d=\"M9 23V9h3l8 9.5V9h3v14h-3l-8-9.5V23z\" fill=\"#fff\"/></svg>";

fn script(body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// `GET /sdk/v1/checkout.js`: the SDK merchants' pages load.
pub async fn sdk() -> Response {
    script(SDK_JS)
}

/// `GET /assets/form.js`: the buyer form's script.
pub async fn form_js() -> Response {
    script(FORM_JS)
}

#[cfg(test)]
mod tests {
    use super::format_money;

    #[test]
    fn money_for_people() {
        assert_eq!(format_money(123_456, "EUR", "de"), "1.234,56 €");
        assert_eq!(format_money(123_456, "EUR", "en"), "€1,234.56");
        assert_eq!(format_money(5, "EUR", "de"), "0,05 €");
        assert_eq!(format_money(-100_000_000, "CHF", "en"), "-CHF1,000,000.00");
    }
}
