//! The buyer portal over HTTP (SPEC §9.6): signing in with a one-time link read from a real SMTP
//! server, what a signed-in address sees and may change, and every way a buyer could reach
//! another's objects — all of it refused with 404 and nothing changed.

use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::order_body;
use crate::helpers::*;
use crate::orders::{amount, created_order_with, verify_ledger};
use crate::smtp::{SmtpServer, parse};

/// An invoice of an order placed by `email` for `company`.
pub async fn invoice_for(
    app: &TestApp,
    psp: &TestPsp,
    mid: &str,
    email: &str,
    company: &str,
    number: &str,
    gross: i64,
) -> Value {
    let mut order = order_body(email, gross);
    order["debtor_company"]["name"] = json!(company);
    // Another company is another register entry (buyers are told apart by it).
    let register = 10_000 + company.bytes().map(u32::from).sum::<u32>();
    order["debtor_company"]["registration_number"] = json!(format!("HRB {register}"));
    let oid = created_order_with(app, psp, mid, order, json!({"payment_method": "bank_transfer"})).await;
    let c = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(gross), "external_invoice_number": number})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    c.json()
}

pub fn cid(c: &Value) -> String {
    c["capture_id"].as_str().unwrap().to_owned()
}

/// The portal seen with one session cookie.
pub struct Buyer<'a> {
    pub app: &'a TestApp,
    pub cookie: String,
}

impl Buyer<'_> {
    pub async fn get(&self, path: &str) -> Resp {
        self.app
            .send(self.app.client.get(self.app.url(path)).header("cookie", format!("nt_portal={}", self.cookie)))
            .await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.app
            .send(
                self.app
                    .client
                    .post(self.app.url(path))
                    .header("cookie", format!("nt_portal={}", self.cookie))
                    .form(fields),
            )
            .await
    }

    /// The CSRF token of the forms on `path`.
    pub async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        csrf_of(&page.text())
    }
}

pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Asks for a link and returns its token as the e-mail carries it.
pub async fn link_for(app: &TestApp, smtp: &SmtpServer, email: &str) -> String {
    let before = sign_in_mails(smtp).len();
    let r = app.send(app.client.post(app.url("/portal/login")).form(&[("email", email), ("lang", "de")])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.run_jobs().await;
    let mails = sign_in_mails(smtp);
    assert_eq!(mails.len(), before + 1, "one sign-in e-mail");
    let mail = mails.last().unwrap().clone();
    assert!(mail.to.contains(email) || mail.to.to_lowercase().contains(&email.to_lowercase()), "{}", mail.to);
    let at = mail.text.find("/portal/login/").expect("a sign-in link") + 14;
    let token: String =
        mail.text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    app.secret(&token);
    token
}

/// The sign-in e-mails received so far.
pub fn sign_in_mails(smtp: &SmtpServer) -> Vec<crate::smtp::Mail> {
    smtp.received().iter().map(|r| parse(&r.data)).filter(|m| m.text.contains("/portal/login/")).collect()
}

/// Uses a link: the session cookie it sets.
pub async fn sign_in_with(app: &TestApp, token: &str) -> Resp {
    app.send(app.client.post(app.url(&format!("/portal/login/{token}")))).await
}

pub fn cookie_of(r: &Resp) -> String {
    let set = r.headers.get("set-cookie").expect("a session cookie").to_str().unwrap().to_owned();
    let value = set.split(';').next().unwrap().strip_prefix("nt_portal=").unwrap().to_owned();
    assert!(!value.is_empty());
    value
}

pub async fn signed_in<'a>(app: &'a TestApp, smtp: &SmtpServer, email: &str) -> Buyer<'a> {
    let token = link_for(app, smtp, email).await;
    let r = sign_in_with(app, &token).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = cookie_of(&r);
    app.secret(&cookie);
    Buyer { app, cookie }
}

/// An app sending mail to `smtp`, its link limits out of the way (they have their own test).
async fn portal_app(smtp: &SmtpServer) -> TestApp {
    TestApp::spawn_with(|c| {
        c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()));
        c.portal_links_per_address = 100;
    })
    .await
}

/// An app, a PSP with a merchant, and Anna's invoice R-1 of 119.00.
async fn one_invoice(smtp: &SmtpServer) -> (TestApp, TestPsp, String, Value) {
    let app = portal_app(smtp).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let inv = invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "R-1", 11900).await;
    (app, psp, mid, inv)
}

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

#[tokio::test]
async fn signing_in_by_link_rotating_and_ending_sessions() {
    let smtp = SmtpServer::start().await;
    let app = portal_app(&smtp).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    invoice_for(&app, &psp, &mid, "Anna@Kunde.example", "Kunde GmbH", "R-1", 11900).await;

    // Unknown and known addresses get the same page; only the known one gets mail.
    let unknown = app.send(app.client.post(app.url("/portal/login")).form(&[("email", "nobody@else.example")])).await;
    let known_page = app.send(app.client.post(app.url("/portal/login")).form(&[("email", "anna@kunde.example")])).await;
    assert_eq!((unknown.status, known_page.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(unknown.text(), known_page.text(), "the same answer whether or not the address is known");
    app.run_jobs().await;
    let mails = sign_in_mails(&smtp);
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].subject.contains("Anmeldelink") && mails[0].to.contains("anna@kunde.example"),
        "{}",
        mails[0].subject
    );
    // The sandbox mailbox of the PSP of the address's newest order shows it too.
    let stored = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/messages")).await.text();
    assert!(stored.contains("portal_login") && stored.contains("/portal/login/"), "{stored}");
    // The address is matched whatever its case; the link is the 32-byte token.
    let token = link_for(&app, &smtp, "ANNA@kunde.example").await;
    assert_eq!(token.len(), 43);
    // Looking at the link (a mail scanner does) uses nothing up.
    for _ in 0..2 {
        let r = app.send(app.client.get(app.url(&format!("/portal/login/{token}")))).await;
        assert_eq!(r.status, 200);
        assert!(r.text().contains("<form method=\"post\""));
    }
    let r = sign_in_with(&app, &token).await;
    assert_eq!(r.status, 303);
    let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/portal", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "a sandbox on plain http loopback: {set}");
    let first = cookie_of(&r);
    app.secret(&first);
    // A used link fails, and so does one never issued.
    assert_eq!(sign_in_with(&app, &token).await.status, 410);
    assert_eq!(sign_in_with(&app, "A".repeat(43).as_str()).await.status, 410);
    assert_eq!(sign_in_with(&app, "short").await.status, 410);
    let anna = Buyer { app: &app, cookie: first.clone() };
    assert!(anna.get("/portal").await.text().contains("R-1"));

    // Signing in again from the same browser rotates the id: the old one stops working.
    let token = link_for(&app, &smtp, "anna@kunde.example").await;
    let r = app
        .send(
            app.client.post(app.url(&format!("/portal/login/{token}"))).header("cookie", format!("nt_portal={first}")),
        )
        .await;
    let second = cookie_of(&r);
    app.secret(&second);
    assert_ne!(first, second);
    assert_eq!(anna.get("/portal/help").await.status, 200, "help needs no session");
    assert!(!anna.get("/portal").await.text().contains("R-1"), "the old session ended");
    assert_eq!(anna.get("/portal/support").await.status, 303);
    let anna = Buyer { app: &app, cookie: second };

    // Sign-out needs the form's token; then the cookie is worthless.
    let csrf = anna.csrf("/portal").await;
    assert_eq!(anna.post("/portal/logout", &[("csrf", "wrong")]).await.status, 403);
    assert!(anna.get("/portal").await.text().contains("R-1"), "still signed in");
    let out = anna.post("/portal/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303, "{}", out.text());
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert!(!anna.get("/portal").await.text().contains("R-1"));
    assert_eq!(anna.get("/portal/support").await.status, 303);

    // A link expires after 15 minutes; a session after 30 idle minutes and 12 hours in any case.
    let late = link_for(&app, &smtp, "anna@kunde.example").await;
    app.services.clock.advance(chrono::Duration::minutes(16));
    assert_eq!(app.send(app.client.get(app.url(&format!("/portal/login/{late}")))).await.status, 410);
    assert_eq!(sign_in_with(&app, &late).await.status, 410);
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    app.services.clock.advance(chrono::Duration::minutes(29));
    assert!(anna.get("/portal").await.text().contains("R-1"), "activity keeps it alive");
    app.services.clock.advance(chrono::Duration::minutes(31));
    assert!(!anna.get("/portal").await.text().contains("R-1"), "idle too long");
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    for _ in 0..26 {
        app.services.clock.advance(chrono::Duration::minutes(29));
        let _ = anna.get("/portal").await;
    }
    assert!(!anna.get("/portal").await.text().contains("R-1"), "past the absolute expiry");

    // No token or session id reached a log line (checked for every secret when the app drops).
    let logs = captured_logs();
    assert!(!logs.contains(&token) && !logs.contains(&first));
}

use reqwest::StatusCode;

#[tokio::test]
async fn link_requests_are_limited_per_address_and_per_client() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(|c| {
        c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()));
        c.portal_links_per_address = 3;
        c.portal_links_per_client = 10;
    })
    .await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "R-1", 11900).await;
    let ask = |email: &'static str| app.send(app.client.post(app.url("/portal/login")).form(&[("email", email)]));
    // Per address, known or not, with the same answers.
    let mut seen = Vec::new();
    for email in ["anna@kunde.example", "x@unknown.example"] {
        for _ in 0..4 {
            seen.push(ask(email).await.status.as_u16());
        }
    }
    assert_eq!(seen, [200, 200, 200, 429, 200, 200, 200, 429]);
    app.run_jobs().await;
    assert_eq!(sign_in_mails(&smtp).len(), 3, "no mail past the limit");
    // Per client: 10 requests in the window, whatever the addresses (8 counted above).
    assert_eq!(ask("c@unknown.example").await.status, 200);
    assert_eq!(ask("d@unknown.example").await.status, 200);
    assert_eq!(ask("e@unknown.example").await.status, 429);
}

#[tokio::test]
async fn a_buyer_sees_its_invoices_across_psps_and_nothing_of_anyone_else() {
    let smtp = SmtpServer::start().await;
    let app = portal_app(&smtp).await;
    let (p1, p2) = (app.create_psp().await, app.create_psp().await);
    let m1 = app.create_merchant(&p1, "shop-a").await["merchant_id"].as_str().unwrap().to_owned();
    let m2 = app.create_merchant(&p2, "shop-b").await["merchant_id"].as_str().unwrap().to_owned();
    let a1 = invoice_for(&app, &p1, &m1, "anna@kunde.example", "Kunde GmbH", "A-1", 11900).await;
    let a2 = invoice_for(&app, &p2, &m2, "anna@kunde.example", "Zweite Firma AG", "B-7", 59500).await;
    let bob = invoice_for(&app, &p1, &m1, "bob@kunde.example", "Kunde GmbH", "A-2", 2380).await;
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let page = anna.get("/portal").await.text();
    assert!(page.contains("A-1") && page.contains("B-7"), "both merchants' invoices");
    assert!(page.contains("Kunde GmbH") && page.contains("Zweite Firma AG"), "grouped by company");
    assert!(!page.contains("A-2"), "not another person's order of the same company");
    let detail = anna.get(&format!("/portal/invoices/{}", cid(&a1))).await;
    assert_eq!(detail.status, 200);
    let d = detail.text();
    let reference = netterms::domain::text::grouped(a1["payment_instructions"]["reference"].as_str().unwrap(), 4);
    assert!(d.contains(&reference), "payment instructions, the reference in groups of four");
    assert!(d.contains("girocode.svg"));
    let qr = anna.get(&format!("/portal/invoices/{}/girocode.svg", cid(&a1))).await;
    assert_eq!(qr.headers["content-type"], "image/svg+xml");
    let pdf = anna.get(&format!("/portal/invoices/{}/payment-information.pdf", cid(&a2))).await;
    assert_eq!(pdf.status, 200);
    assert!(pdf.bytes.starts_with(b"%PDF-"));

    // Bob's invoice, its documents and forms: 404 by id, by path and by a hidden field.
    let b = cid(&bob);
    let before = app.snapshot().await;
    let csrf = anna.csrf("/portal").await;
    for path in [
        format!("/portal/invoices/{b}"),
        format!("/portal/invoices/{b}/payment-information.pdf"),
        format!("/portal/invoices/{b}/invoice.pdf"),
        format!("/portal/invoices/{b}/girocode.svg"),
        format!("/portal/invoices/{}", uuid::Uuid::now_v7()),
        "/portal/invoices/not-an-id".to_owned(),
    ] {
        assert_eq!(anna.get(&path).await.status, 404, "{path}");
    }
    let iban =
        [("csrf", csrf.as_str()), ("method", "direct_debit"), ("iban", "DE89370400440532013000"), ("mandate", "1")];
    assert_eq!(anna.post(&format!("/portal/invoices/{b}/payment-method"), &iban).await.status, 404);
    let paid = [("csrf", csrf.as_str()), ("paid_on", "2026-01-01"), ("amount", "23,80")];
    assert_eq!(anna.post(&format!("/portal/invoices/{b}/paid"), &paid).await.status, 404);
    let dispute = [("csrf", csrf.as_str()), ("reason_code", "faulty_goods")];
    assert_eq!(anna.post(&format!("/portal/invoices/{b}/dispute"), &dispute).await.status, 404);
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("capture_id", b.clone())
        .text("body", "show me bob's invoice");
    let r = app
        .send(
            app.client
                .post(app.url("/portal/support"))
                .header("cookie", format!("nt_portal={}", anna.cookie))
                .multipart(form),
        )
        .await;
    assert_eq!(r.status, 404, "a hidden field naming another's invoice");
    assert_eq!(app.snapshot().await, before, "nothing changed");

    // Bob's support request and its attachment are not Anna's either.
    let bob_session = signed_in(&app, &smtp, "bob@kunde.example").await;
    let bcsrf = bob_session.csrf("/portal/support").await;
    let png = b"\x89PNG\r\n\x1a\nrest-of-a-png".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("csrf", bcsrf)
        .text("subject", "Lieferung")
        .text("body", "Wo bleibt die Lieferung?")
        .part("attachment", reqwest::multipart::Part::bytes(png.clone()).file_name("foto.png"));
    let r = app
        .send(
            app.client
                .post(app.url("/portal/support"))
                .header("cookie", format!("nt_portal={}", bob_session.cookie))
                .multipart(form),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let queue = app.send(app.admin(Method::GET, "/admin/v1/support-requests?state=open")).await.json();
    let sid = queue["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(queue["data"][0]["attachment"]["content_type"], "image/png");
    assert_eq!(bob_session.get(&format!("/portal/support/{sid}/attachment")).await.bytes, png);
    assert_eq!(anna.get(&format!("/portal/support/{sid}")).await.status, 404);
    assert_eq!(anna.get(&format!("/portal/support/{sid}/attachment")).await.status, 404);
    assert!(!anna.get("/portal/support").await.text().contains("Lieferung"));
}

#[tokio::test]
async fn forms_change_only_with_the_sessions_token() {
    let smtp = SmtpServer::start().await;
    let (app, _, _, inv) = one_invoice(&smtp).await;
    let id = cid(&inv);
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let other = signed_in(&app, &smtp, "anna@kunde.example").await;
    let foreign = other.csrf("/portal").await;
    let before = app.snapshot().await;
    for token in ["", "wrong", foreign.as_str()] {
        let paid = [("csrf", token), ("paid_on", "2026-01-01"), ("amount", "119,00")];
        assert_eq!(anna.post(&format!("/portal/invoices/{id}/paid"), &paid).await.status, 403, "{token:?}");
        let dd = [("csrf", token), ("method", "direct_debit"), ("iban", "DE89370400440532013000"), ("mandate", "1")];
        assert_eq!(anna.post(&format!("/portal/invoices/{id}/payment-method"), &dd).await.status, 403);
        let dispute = [("csrf", token), ("reason_code", "faulty_goods")];
        assert_eq!(anna.post(&format!("/portal/invoices/{id}/dispute"), &dispute).await.status, 403);
        let form = reqwest::multipart::Form::new().text("csrf", token.to_owned()).text("body", "hello");
        let r = app
            .send(
                app.client
                    .post(app.url("/portal/support"))
                    .header("cookie", format!("nt_portal={}", anna.cookie))
                    .multipart(form),
            )
            .await;
        assert_eq!(r.status, 403);
    }
    // Without a form at all.
    let r = app
        .send(app.client.post(app.url("/portal/support")).header("cookie", format!("nt_portal={}", anna.cookie)))
        .await;
    assert_eq!(r.status, 403);
    // Without a session: to the sign-in page.
    let r = app.send(app.client.post(app.url(&format!("/portal/invoices/{id}/paid"))).form(&[("csrf", "x")])).await;
    assert_eq!(r.status, 303);
    assert_eq!(app.snapshot().await, before, "nothing changed");
}

#[tokio::test]
async fn switching_to_direct_debit_reaches_the_next_collection_file() {
    let smtp = SmtpServer::start().await;
    let (app, psp, mid, inv) = one_invoice(&smtp).await;
    let id = cid(&inv);
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let page = anna.get(&format!("/portal/invoices/{id}")).await.text();
    let csrf = csrf_of(&page);
    // The mandate text and reference are shown before the buyer agrees.
    assert!(page.contains("SEPA-Firmenlastschrift"));
    let at = page.find("Mandatsreferenz: <strong>").unwrap() + 25;
    let reference: String = page[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    assert!(reference.starts_with("NTP") && reference.len() == 25, "{reference}");
    let before = app.snapshot().await;
    for bad in [
        vec![("csrf", csrf.as_str()), ("method", "direct_debit"), ("iban", "DE00370400440532013000"), ("mandate", "1")],
        vec![("csrf", csrf.as_str()), ("method", "direct_debit"), ("iban", "DE89370400440532013000")],
        vec![("csrf", csrf.as_str()), ("method", "cash")],
    ] {
        let r = anna.post(&format!("/portal/invoices/{id}/payment-method"), &bad).await;
        assert_eq!(r.status, 422, "{bad:?}: {}", r.text());
    }
    assert_eq!(app.snapshot().await, before);
    let ok = [
        ("csrf", csrf.as_str()),
        ("method", "direct_debit"),
        ("iban", "DE89 3704 0044 0532 0130 00"),
        ("mandate", "1"),
        ("future", "1"),
    ];
    let r = anna.post(&format!("/portal/invoices/{id}/payment-method"), &ok).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let page = anna.get(r.headers["location"].to_str().unwrap()).await.text();
    assert!(page.contains("DE89370400440532013000") && page.contains(&reference), "the pre-notification data");
    // The next collection file (five days before the due date) collects it, under the portal's
    // mandate, signed now.
    let due: chrono::NaiveDate = inv["due_date"].as_str().unwrap().parse().unwrap();
    crate::dunning::advance_to(&app, &psp, due - chrono::Duration::days(5)).await;
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await;
    assert_eq!(files.status, 200, "{}", files.text());
    let files = files.json()["data"].clone();
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    let fid = files[0]["file_id"].as_str().unwrap();
    let xml = app.send(app.admin(Method::GET, &format!("/admin/v1/direct-debit-files/{fid}"))).await.text();
    assert!(xml.contains(&format!("<MndtId>{reference}</MndtId>")) && xml.contains("DE89370400440532013000"), "{xml}");
    crate::sepa_xsd::validate(&xml, "pain.008.001.08.xsd");
    // Once it is on its way, the method stays.
    let back = [("csrf", csrf.as_str()), ("method", "bank_transfer")];
    assert_eq!(anna.post(&format!("/portal/invoices/{id}/payment-method"), &back).await.status, 409);
    // "Future ones": the next order of this company placed with this address pays so too.
    let next = invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "R-2", 5950).await;
    let order = app
        .send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", next["order_id"].as_str().unwrap())))
        .await
        .json();
    assert_eq!(order["payment_method"], "direct_debit", "{order}");
    let other = invoice_for(&app, &psp, &mid, "anna@kunde.example", "Andere GmbH", "R-3", 5950).await;
    let order = app
        .send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", other["order_id"].as_str().unwrap())))
        .await
        .json();
    assert_eq!(order["payment_method"], "bank_transfer", "another company: {order}");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn i_have_paid_pauses_dunning_until_the_payment_comes() {
    let smtp = SmtpServer::start().await;
    let (app, psp, mid, inv) = one_invoice(&smtp).await;
    let id = cid(&inv);
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let csrf = anna.csrf(&format!("/portal/invoices/{id}")).await;
    let today = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json()["now"].as_str().unwrap()[..10]
        .to_owned();
    let before = app.snapshot().await;
    for (on, amt) in [
        ("2099-01-01", "119,00"),
        ("yesterday", "119,00"),
        (today.as_str(), "abc"),
        (today.as_str(), "0"),
        (today.as_str(), "99999,00"),
    ] {
        let r = anna
            .post(&format!("/portal/invoices/{id}/paid"), &[("csrf", &csrf), ("paid_on", on), ("amount", amt)])
            .await;
        assert_eq!(r.status, 422, "{on} {amt}");
    }
    assert_eq!(app.snapshot().await, before);
    let r = anna
        .post(&format!("/portal/invoices/{id}/paid"), &[("csrf", &csrf), ("paid_on", &today), ("amount", "119,00")])
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let claims = app.send(app.admin(Method::GET, "/admin/v1/payment-claims?state=open")).await.json();
    assert_eq!(claims["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        (claims["data"][0]["amount"].as_i64(), claims["data"][0]["paid_on"].as_str()),
        (Some(11900), Some(today.as_str()))
    );
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{id}"))).await.json();
    let until = c["dunning"]["paused_until"].as_str().unwrap_or_default().to_owned();
    assert!(!until.is_empty(), "{c}");
    let paused = crate::payments::events_of(&app, &psp, "dunning.paused").await;
    assert!(paused[0]["reason"].as_str().unwrap().contains("says it paid"), "{paused:?}");
    // The payment arrives: the claim is matched to it.
    let pay = app
        .send(app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&json!({
            "iban": "DE89370400440532013000", "amount": {"currency": "EUR", "value": 11900},
            "reference": inv["payment_instructions"]["reference"], "debtor_name": "Kunde GmbH"
        })))
        .await;
    assert!(pay.status.is_success(), "{}", pay.text());
    let claims = app.send(app.admin(Method::GET, "/admin/v1/payment-claims")).await.json();
    assert_eq!(claims["data"][0]["state"], "matched", "{claims}");
    assert!(claims["data"][0]["payment_id"].is_string());
    let page = anna.get(&format!("/portal/invoices/{id}")).await.text();
    assert!(page.contains("Bezahlt"));
    // The same through a bank statement (its set-wise booking of RF references).
    let second = invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "R-2", 5950).await;
    let id2 = cid(&second);
    let r = anna
        .post(&format!("/portal/invoices/{id2}/paid"), &[("csrf", &csrf), ("paid_on", &today), ("amount", "59.50")])
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let rf = second["payment_instructions"]["reference"].as_str().unwrap().to_owned();
    let entry = crate::camt::Ntry::credit("BANK-REF-1", 5950, crate::camt::Tx { rf: Some(rf), ..Default::default() });
    crate::payments::import(&app, &crate::camt::camt053(crate::camt::Dialect::V08, "S-1", &[entry])).await;
    let claims = app.send(app.admin(Method::GET, "/admin/v1/payment-claims")).await.json();
    let c2 = claims["data"].as_array().unwrap().iter().find(|c| c["capture_id"] == id2.as_str()).unwrap().clone();
    assert_eq!(c2["state"], "matched", "{claims}");
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/payment-claims?state=open")).await.json()["data"], json!([]));
    verify_ledger(&app).await;
}

#[tokio::test]
async fn support_requests_and_disputes_reach_the_operator() {
    let smtp = SmtpServer::start().await;
    let (app, psp, _, inv) = one_invoice(&smtp).await;
    let id = cid(&inv);
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let csrf = anna.csrf("/portal/support").await;
    let send = |fields: Vec<(&'static str, String)>, file: Option<(Vec<u8>, &'static str)>| {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k, v);
        }
        if let Some((bytes, name)) = file {
            form = form.part("attachment", reqwest::multipart::Part::bytes(bytes).file_name(name));
        }
        app.client
            .post(app.url("/portal/support"))
            .header("cookie", format!("nt_portal={}", anna.cookie))
            .multipart(form)
    };
    let before = app.snapshot().await;
    // A file that is not a PDF, PNG or JPEG, one over 10 MB, and no text: refused, nothing stored.
    let r = app
        .send(send(vec![("csrf", csrf.clone()), ("body", "hi".into())], Some((b"MZ\x90\x00exe".to_vec(), "x.exe"))))
        .await;
    assert_eq!(r.status, 422);
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize(10 * 1024 * 1024 + 10, b'x');
    let r = app.send(send(vec![("csrf", csrf.clone()), ("body", "hi".into())], Some((big, "big.pdf")))).await;
    assert!(r.status == 422 || r.status == 413, "{}", r.status);
    let r = app.send(send(vec![("csrf", csrf.clone()), ("body", "  ".into())], None)).await;
    assert_eq!(r.status, 422);
    assert_eq!(app.snapshot().await, before);
    // A question on the invoice with a PDF.
    let r = app
        .send(send(
            vec![
                ("csrf", csrf.clone()),
                ("capture_id", id.clone()),
                ("subject", "Rechnung R-1".into()),
                ("body", "Bitte Kopie".into()),
            ],
            // A name with a path and an extension the file is not.
            Some((PDF.to_vec(), "../../beleg; X-Evil: 1.html")),
        ))
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let queue = app.send(app.admin(Method::GET, "/admin/v1/support-requests?state=open")).await.json();
    assert_eq!(queue["data"][0]["attachment"]["name"], "beleg X-Evil 1.pdf", "{queue}");
    let req = &queue["data"][0];
    assert_eq!((req["capture_id"].as_str(), req["email"].as_str()), (Some(id.as_str()), Some("anna@kunde.example")));
    let sid = req["id"].as_str().unwrap().to_owned();
    let att = app.send(app.admin(Method::GET, &format!("/admin/v1/support-requests/{sid}/attachment"))).await;
    assert_eq!((att.status.as_u16(), att.bytes.as_slice()), (200, PDF));
    // Served as what it is, under its safe name, and unable to run anything if a browser showed it.
    assert_eq!(att.headers["content-disposition"], "attachment; filename=\"beleg X-Evil 1.pdf\"");
    assert_eq!(att.headers["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(att.headers["cache-control"], "private, no-store");
    // The operator answers: e-mailed, shown in the portal, once.
    let bad =
        app.send(app.admin(Method::POST, &format!("/admin/v1/support-requests/{sid}/answer")).json(&json!({}))).await;
    bad.assert_error(422, "request_validation_error");
    let r = app
        .send(
            app.admin(Method::POST, &format!("/admin/v1/support-requests/{sid}/answer"))
                .json(&json!({"text": "Anbei die Kopie."})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "answered");
    let again = app
        .send(app.admin(Method::POST, &format!("/admin/v1/support-requests/{sid}/answer")).json(&json!({"text": "x"})))
        .await;
    again.assert_error(409, "state_conflict");
    app.run_jobs().await;
    let mail = parse(&smtp.received().last().unwrap().data);
    assert!(mail.text.contains("Anbei die Kopie.") && mail.subject.contains("Rechnung R-1"), "{}", mail.text);
    assert!(anna.get(&format!("/portal/support/{sid}")).await.text().contains("Anbei die Kopie."));
    let empty = app.send(app.admin(Method::GET, "/admin/v1/support-requests?state=open")).await.json();
    assert_eq!(empty["data"], json!([]));
    let bad = app.send(app.admin(Method::GET, "/admin/v1/support-requests?state=closed")).await;
    bad.assert_error(422, "request_validation_error");

    // "Problem with this invoice": a dispute the operator sees; dunning waits.
    let csrf = anna.csrf(&format!("/portal/invoices/{id}")).await;
    let r = anna.post(&format!("/portal/invoices/{id}/dispute"), &[("csrf", &csrf), ("reason_code", "stolen")]).await;
    assert_eq!(r.status, 422);
    let r = anna
        .post(
            &format!("/portal/invoices/{id}/dispute"),
            &[("csrf", &csrf), ("reason_code", "faulty_goods"), ("description", "Kratzer")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let again =
        anna.post(&format!("/portal/invoices/{id}/dispute"), &[("csrf", &csrf), ("reason_code", "return")]).await;
    assert_eq!(again.status, 409, "one open dispute per invoice");
    let disputes = app.send(app.admin(Method::GET, "/admin/v1/disputes?state=open")).await.json();
    let d = &disputes["data"][0];
    assert_eq!(
        (d["capture_id"].as_str(), d["reason_code"].as_str(), d["opened_by"].as_str()),
        (Some(id.as_str()), Some("faulty_goods"), Some("buyer"))
    );
    assert_eq!(d["amount"], 11900);
    // Past every dunning date nothing is sent for this invoice while the dispute is open.
    let due: chrono::NaiveDate = inv["due_date"].as_str().unwrap().parse().unwrap();
    crate::dunning::advance_to(&app, &psp, due + chrono::Duration::days(60)).await;
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{id}"))).await.json();
    assert_eq!(c["dunning"]["level"], 0, "{c}");
    assert!(crate::payments::events_of(&app, &psp, "dunning.level_changed").await.is_empty());
    assert!(
        crate::payments::events_of(&app, &psp, "dunning.paused").await[0]["reason"]
            .as_str()
            .unwrap()
            .contains("dispute")
    );
}

#[tokio::test]
async fn the_merchants_documents_are_uploaded_checked_and_shown() {
    let smtp = SmtpServer::start().await;
    let app = portal_app(&smtp).await;
    let (psp, other) = (app.create_psp().await, app.create_psp().await);
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let inv = invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "R-1", 11900).await;
    let id = cid(&inv);
    let put = |who: &TestPsp, path: String, ct: &str, body: Vec<u8>| {
        app.psp(who, Method::PUT, &path).header("content-type", ct).body(body)
    };
    let path = format!("/v1/captures/{id}/invoice-document");
    let before = app.snapshot().await;
    app.send(put(&psp, path.clone(), "application/pdf", b"<html>not a pdf</html>".to_vec()))
        .await
        .assert_error(422, "request_validation_error");
    app.send(put(&psp, path.clone(), "application/pdf", PDF[..40].to_vec()))
        .await
        .assert_error(422, "request_validation_error");
    app.send(put(&psp, path.clone(), "text/plain", PDF.to_vec())).await.assert_error(400, "request_invalid");
    let mut big = PDF.to_vec();
    big.resize(10 * 1024 * 1024 + 1, b' ');
    app.send(put(&psp, path.clone(), "application/pdf", big)).await.assert_error(413, "request_too_large");
    app.send(put(&other, path.clone(), "application/pdf", PDF.to_vec())).await.assert_error(404, "resource_not_found");
    assert_eq!(app.snapshot().await, before, "nothing stored");
    let r = app.send(put(&psp, path.clone(), "application/pdf", PDF.to_vec())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["kind"].as_str(), r.json()["source"].as_str(), r.json()["size"].as_i64()),
        (Some("invoice"), Some("upload"), Some(PDF.len() as i64))
    );
    // A refund's credit note.
    let refund = app
        .send(app.psp(&psp, Method::POST, &format!("/v1/captures/{id}/refunds")).json(&json!({
            "amount": amount(1190), "external_credit_note_number": "GS-1"
        })))
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text());
    let rid = refund.json()["refund_id"].as_str().unwrap().to_owned();
    let cn = format!("/v1/refunds/{rid}/credit-note-document");
    app.send(put(&other, cn.clone(), "application/pdf", PDF.to_vec())).await.assert_error(404, "resource_not_found");
    app.send(put(
        &psp,
        format!("/v1/refunds/{}/credit-note-document", uuid::Uuid::now_v7()),
        "application/pdf",
        PDF.to_vec(),
    ))
    .await
    .assert_error(404, "resource_not_found");
    let mut note = PDF.to_vec();
    note.splice(9..9, b"% credit note\n".iter().copied());
    assert_eq!(app.send(put(&psp, cn, "application/pdf", note.clone())).await.status, 200);
    // The buyer downloads both.
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let page = anna.get(&format!("/portal/invoices/{id}")).await.text();
    assert!(page.contains("GS-1"));
    assert_eq!(anna.get(&format!("/portal/invoices/{id}/invoice.pdf")).await.bytes, PDF);
    let got = anna.get(&format!("/portal/invoices/{id}/credit-notes/{rid}.pdf")).await;
    assert_eq!((got.status.as_u16(), got.bytes), (200, note));
    assert_eq!(anna.get(&format!("/portal/invoices/{id}/credit-notes/{}.pdf", uuid::Uuid::now_v7())).await.status, 404);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn an_invoice_url_is_fetched_once_within_limits() {
    let smtp = SmtpServer::start().await;
    let app = portal_app(&smtp).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    // A document server on loopback (the sandbox may reach private addresses, as for webhooks).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let docs = axum::Router::new()
        .route(
            "/inv.pdf",
            axum::routing::get(move || {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { ([("content-type", "application/pdf")], PDF.to_vec()) }
            }),
        )
        .route("/page.html", axum::routing::get(|| async { "<html></html>" }))
        .route(
            "/big.pdf",
            axum::routing::get(|| async {
                let mut b = PDF.to_vec();
                b.resize(11 * 1024 * 1024, b' ');
                b
            }),
        );
    tokio::spawn(async move { axum::serve(listener, docs).await.unwrap() });
    let mut ids = Vec::new();
    for (n, path) in [("U-1", "/inv.pdf"), ("U-2", "/page.html"), ("U-3", "/big.pdf")] {
        let oid = created_order_with(
            &app,
            &psp,
            &mid,
            order_body("anna@kunde.example", 11900),
            json!({"payment_method": "bank_transfer"}),
        )
        .await;
        let c = app
            .send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({
                "amount": amount(11900), "external_invoice_number": n, "invoice_url": format!("{base}{path}")
            })))
            .await;
        assert_eq!(c.status, 201, "{}", c.text());
        ids.push(cid(&c.json()));
    }
    app.run_jobs().await;
    app.run_jobs().await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "fetched once");
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    assert_eq!(anna.get(&format!("/portal/invoices/{}/invoice.pdf", ids[0])).await.bytes, PDF);
    for id in &ids[1..] {
        assert_eq!(anna.get(&format!("/portal/invoices/{id}/invoice.pdf")).await.status, 404, "not a PDF, too large");
    }
    let failed = app.send(app.admin(Method::GET, "/admin/v1/jobs?state=failed")).await.json();
    assert_eq!(failed["data"], json!([]), "refusals are final, not failures: {failed}");
}

#[tokio::test]
async fn racing_a_link_or_a_dispute_wins_once() {
    let smtp = SmtpServer::start().await;
    let (app, _, _, inv) = one_invoice(&smtp).await;
    let id = cid(&inv);
    // Two browsers press the button of one link at once: one session.
    let token = link_for(&app, &smtp, "anna@kunde.example").await;
    let (a, b) = tokio::join!(sign_in_with(&app, &token), sign_in_with(&app, &token));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 410]);
    let won = if a.status == 303 { &a } else { &b };
    let cookie = cookie_of(won);
    app.secret(&cookie);
    let anna = Buyer { app: &app, cookie };
    assert_eq!(app.count("portal_sessions").await, 1);
    // Two reports of a problem with the invoice at once: one dispute, counted once.
    let csrf = anna.csrf(&format!("/portal/invoices/{id}")).await;
    let path = format!("/portal/invoices/{id}/dispute");
    let form = [("csrf", csrf.as_str()), ("reason_code", "faulty_goods")];
    let (x, y) = tokio::join!(anna.post(&path, &form), anna.post(&path, &form));
    let mut statuses = [x.status.as_u16(), y.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 409]);
    assert_eq!(app.count("disputes").await, 1);
    let disputes = app.send(app.admin(Method::GET, "/admin/v1/disputes")).await.json();
    assert_eq!(disputes["data"].as_array().unwrap().len(), 1);
}

/// Counts rows of `table` (`portal_links`, `messages`, or the jobs of kind `portal_link`).
async fn rows(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.db().conn().await.unwrap();
    let n: netterms::store::StoreResult<i64> =
        async { Ok(netterms::with_conn!(&mut conn, c => sqlx::query_scalar(sql).fetch_one(&mut *c).await?)) }.await;
    n.unwrap()
}

/// Issue 19, item 18: asking for a link does the same work for a known and an unknown address
/// (one job; the job looks the address up), a sign-in from another site is refused, and a
/// session lives on as long as it is used.
#[tokio::test]
async fn sign_in_looks_the_same_for_every_address_is_same_site_and_slides() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(|c| {
        c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()));
        c.portal_links_per_address = 100;
        c.portal_session_idle_secs = 4;
    })
    .await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "R-1", 11900).await;
    app.run_jobs().await;
    let messages_before = rows(&app, "SELECT COUNT(*) FROM messages").await;
    for email in ["anna@kunde.example", "nobody@else.example"] {
        let r = app.send(app.client.post(app.url("/portal/login")).form(&[("email", email)])).await;
        assert_eq!(r.status, 200);
    }
    // Before the jobs run, both requests wrote the same: one job each, no link, no message.
    assert_eq!(rows(&app, "SELECT COUNT(*) FROM jobs WHERE kind = 'portal_link'").await, 2);
    assert_eq!(rows(&app, "SELECT COUNT(*) FROM portal_links").await, 0);
    assert_eq!(rows(&app, "SELECT COUNT(*) FROM messages").await, messages_before);
    app.run_jobs().await;
    assert_eq!(rows(&app, "SELECT COUNT(*) FROM portal_links").await, 1);
    assert_eq!(sign_in_mails(&smtp).len(), 1, "only the known address gets a link");

    // Another site's form may neither ask for links nor sign a browser in.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = app
            .send(
                app.client.post(app.url("/portal/login")).header(name, value).form(&[("email", "anna@kunde.example")]),
            )
            .await;
        assert_eq!(r.status, 403, "{name}: {value}");
    }
    assert_eq!(rows(&app, "SELECT COUNT(*) FROM jobs WHERE kind = 'portal_link'").await, 2, "no job queued");
    let token = link_for(&app, &smtp, "anna@kunde.example").await;
    let evil = app
        .send(app.client.post(app.url(&format!("/portal/login/{token}"))).header("origin", "https://evil.example"))
        .await;
    assert_eq!(evil.status, 403);
    assert!(evil.headers.get("set-cookie").is_none());
    // The link is still good; from this deployment's own page it signs in.
    let r =
        app.send(app.client.post(app.url(&format!("/portal/login/{token}"))).header("origin", app.base.as_str())).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let anna = Buyer { app: &app, cookie: cookie_of(&r) };

    // Idle 4 s: a request every 1.5 s (on the deployment's clock) keeps the session for 12 s.
    for _ in 0..8 {
        app.services.clock.advance(chrono::Duration::milliseconds(1500));
        let page = anna.get("/portal").await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains("R-1"), "still signed in");
    }
    // The imprint: linked from every portal page and the payment page, readable without signing in.
    assert!(anna.get("/portal").await.text().contains("href=\"/portal/imprint?lang="));
    let imprint = app.send(app.client.get(app.url("/portal/imprint?lang=en"))).await;
    assert_eq!(imprint.status, 200);
    let page = imprint.text();
    for needle in
        ["netterms GmbH", "Amtsgericht Berlin-Charlottenburg", "HRB 000000 B", "Erika Mustermann", "DE123456789"]
    {
        assert!(page.contains(needle), "{needle} not on the imprint page");
    }
    let session = app
        .send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&serde_json::json!({
            "merchant_id": mid, "order": crate::checkout::order_body("anna@kunde.example", 11900), "locale": "en",
            "redirect_urls": {"accept_url": "https://shop.example/ok", "decline_url": "https://shop.example/no",
                              "cancel_url": "https://shop.example/cancel"}
        })))
        .await
        .json();
    let page = app.send(app.client.get(session["payment_page_url"].as_str().unwrap())).await.text();
    assert!(page.contains("href=\"/portal/imprint?lang=en\""), "the payment page links the imprint");
    // Then 4 s without a request end it.
    app.services.clock.advance(chrono::Duration::seconds(4));
    assert!(!anna.get("/portal").await.text().contains("R-1"), "signed out after the idle time");
}

/// Issue 19, item 28: the portal shows what was paid, fees and interest included, payment by
/// payment, and lists the dunning notices the buyer was sent (each opens as the e-mail carried it).
#[tokio::test]
async fn the_portal_shows_payments_with_fees_and_every_notice() {
    let smtp = SmtpServer::start().await;
    let (app, psp, mid, c) = one_invoice(&smtp).await;
    let id = cid(&c);
    let due: chrono::NaiveDate = c["due_date"].as_str().unwrap().parse().unwrap();
    crate::dunning::advance_to(&app, &psp, due + chrono::Duration::days(22)).await;
    let v = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{id}"))).await.json();
    let total = v["total_due"].as_i64().unwrap();
    assert!(total > 11900, "fees and interest are due: {v}");
    let r = app
        .send(app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&json!({
            "iban": c["payment_instructions"]["iban"], "amount": {"currency": "EUR", "value": total},
            "reference": c["payment_instructions"]["reference"]
        })))
        .await;
    assert_eq!(r.json()["state"], "matched", "{}", r.text());
    app.run_jobs().await;
    let anna = signed_in(&app, &smtp, "anna@kunde.example").await;
    let page = anna.get(&format!("/portal/invoices/{id}?lang=en")).await.text();
    let euros = netterms::web::checkout_pages::format_money(total, "EUR", "en");
    assert!(page.contains(&format!("<dt>Paid</dt><dd>{euros}</dd>")), "paid with fees and interest ({euros})");
    assert!(page.contains("id=\"payments-h\"") && page.contains("Of it fees and interest"), "a payments card");
    // The notices sent, each as its PDF.
    let links: Vec<String> = page
        .match_indices(&format!("/portal/invoices/{id}/documents/"))
        .map(|(at, _)| page[at..].split('"').next().unwrap().to_owned())
        .collect();
    assert!(links.len() >= 2, "the reminder's and the notices' PDFs: {links:?}");
    for link in &links {
        let pdf = anna.get(link).await;
        assert_eq!((pdf.status.as_u16(), pdf.headers["content-type"].to_str().unwrap()), (200, "application/pdf"));
    }
    // Nobody else's.
    let bob_invoice = invoice_for(&app, &psp, &mid, "bob@andere.example", "Andere Firma AG", "R-9", 2380).await;
    let bob = signed_in(&app, &smtp, "bob@andere.example").await;
    assert_eq!(bob.get(&links[0]).await.status, 404);
    let foreign = links[0].replace(&id, &cid(&bob_invoice));
    assert_eq!(anna.get(&foreign).await.status, 404);
}
