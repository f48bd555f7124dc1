//! Both checkout flows in headless Chromium against a real server and the demo shop: the
//! payment page to approval and to decline (checking the redirects' parameters), and the widget
//! on the shop's page to `authorized` followed by the PSP's confirm. Screenshots go to
//! `test-artifacts/`. Without chromedriver the test says so and passes, unless
//! `NETTERMS_REQUIRE_BROWSER=1` (as `.ci/run` sets), when it fails.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

pub(crate) struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(bin: &str) -> Option<String> {
    ["/usr/bin/", "/usr/local/bin/", "/usr/lib/chromium/"]
        .iter()
        .map(|d| format!("{d}{bin}"))
        .find(|p| std::path::Path::new(p).exists())
}

pub(crate) async fn browser(dir: &std::path::Path) -> Option<(Driver, Client)> {
    let (Some(driver), Some(chromium)) = (find("chromedriver"), find("chromium")) else {
        assert!(std::env::var("NETTERMS_REQUIRE_BROWSER").is_err(), "chromium and chromedriver are required");
        eprintln!(
            "chromium/chromedriver not installed: browser test skipped (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = Driver(child);
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--disable-sync",
                     "--window-size=1200,1400", format!("--user-data-dir={}", dir.display())]
        }
    }))
    .unwrap();
    for _ in 0..100 {
        if let Ok(c) = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            return Some((guard, c));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

pub(crate) async fn wait_url(c: &Client, prefix: &str) -> url::Url {
    for _ in 0..100 {
        let u = c.current_url().await.unwrap();
        if u.as_str().starts_with(prefix) {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached {prefix}; at {}", c.current_url().await.unwrap());
}

/// The text of the first element matching `css`, waiting up to 10 s for it. A click that
/// navigates may leave the old page's element found and then gone (stale): look again.
pub(crate) async fn text(c: &Client, css: &str) -> String {
    let mut last = None;
    for _ in 0..50 {
        match c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
            Ok(e) => match e.text().await {
                Ok(t) => return t,
                Err(err) => last = Some(err),
            },
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no text at {css}: {last:?}");
}

/// Waits until the first element matching `css` holds `needle` — after a click the old page may
/// still be there for a moment — and returns its text.
pub(crate) async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let mut seen = String::new();
    for _ in 0..50 {
        seen = text(c, css).await;
        if seen.contains(needle) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} never held {needle:?}; last: {seen:?}");
}

/// A screenshot of the whole page at `width`: the window grows to the page's height first.
pub(crate) async fn full_shot(c: &Client, name: &str, width: u32) {
    c.set_window_size(width, 900).await.unwrap();
    let h = c.execute("return document.documentElement.scrollHeight", vec![]).await.unwrap();
    let h = u32::try_from(h.as_u64().unwrap_or(900)).unwrap().clamp(600, 6000);
    c.set_window_size(width, h + 120).await.unwrap();
    shot(c, name).await;
    c.set_window_size(1200, 1400).await.unwrap();
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), c.screenshot().await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_page_and_widget_in_a_real_browser() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = browser(profile.path()).await else { return };
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_url = format!("http://{}", listener.local_addr().unwrap());
    let shop = netterms::demo::provision(&app.services, &app.base, &shop_url).await.unwrap();
    app.secret(&shop.password);
    let (user, pw) = (shop.username.clone(), shop.password.clone());
    tokio::spawn(netterms::demo::serve(listener, shop));
    let psp = TestPsp { psp_id: String::new(), username: user, password: pw, credential_id: String::new() };

    // Payment page → approval → accept_url with the parameters.
    c.goto(&format!("{shop_url}/pay?email=anna@kunde.example")).await.unwrap();
    wait_url(&c, &format!("{}/pay/", app.base)).await;
    c.wait().for_element(Locator::Css("#nt-form")).await.unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("Zahlbar in 30 Tagen"));
    // Nothing to go back to before the buyer submits; the terms and privacy notice are linked.
    assert!(!c.find(Locator::Css("#nt-back")).await.unwrap().is_displayed().await.unwrap());
    assert!(page.contains("href=\"/legal/terms?lang=de\"") && page.contains("href=\"/legal/privacy?lang=de\""));
    assert!(page.contains("/assets/favicon.svg"));
    // Only the countries the credit policy serves, by name.
    let countries = c.find_all(Locator::Css("#country option")).await.unwrap();
    assert_eq!(countries.len(), netterms::domain::decision::Policy::default().countries.len());
    assert_eq!(text(&c, "#country option[value=DE]").await, "Deutschland");
    full_shot(&c, "payment-page-de.png", 1200).await;
    full_shot(&c, "payment-page-phone.png", 390).await;
    let german = c.current_url().await.unwrap();
    c.goto(&format!("{german}?lang=en")).await.unwrap();
    c.wait().for_element(Locator::Css("#nt-form")).await.unwrap();
    assert_eq!(text(&c, "#legal_form option[value='10001']").await, "GmbH (private limited company)");
    assert!(!c.find(Locator::Css("#nt-back")).await.unwrap().is_displayed().await.unwrap());
    full_shot(&c, "payment-page-en.png", 1200).await;
    c.goto(german.as_str()).await.unwrap();
    c.wait().for_element(Locator::Css("#nt-form")).await.unwrap();
    c.find(Locator::Css("#terms")).await.unwrap().click().await.unwrap();
    shot(&c, "payment-page.png").await;
    c.find(Locator::Css("#nt-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let u = wait_url(&c, &format!("{shop_url}/return/accept")).await;
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "created");
    assert!(q.contains_key("session_id") && !q.contains_key("decline_reason"));
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", q["order_id"]))).await.json();
    assert_eq!(order["state"], "created");
    // What the PSP sent of the buyer and the page did not ask for stays on the order.
    let person = &order["debtor_person"];
    assert_eq!(
        (&person["salutation"], &person["first_name"], &person["last_name"]),
        (&json!("f"), &json!("Anna"), &json!("Einkauf")),
        "{order}"
    );

    // Payment page → decline: a clear message, then back to decline_url.
    c.goto(&format!("{shop_url}/pay?email=anna%2Bdecline@kunde.example")).await.unwrap();
    wait_url(&c, &format!("{}/pay/", app.base)).await;
    c.find(Locator::Css("#terms")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#nt-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let back =
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#nt-back:not([hidden])")).await.unwrap();
    wait_text(&c, "#nt-status", "nicht anbieten").await;
    shot(&c, "payment-page-declined.png").await;
    back.click().await.unwrap();
    let u = wait_url(&c, &format!("{shop_url}/return/decline")).await;
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "declined");
    assert_eq!(q["decline_reason"], "risk_policy");

    // Widget on the shop's page → authorized → the PSP confirms → created.
    c.goto(&shop_url).await.unwrap();
    c.find(Locator::Css("#widget-button")).await.unwrap().click().await.unwrap();
    let frame = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("iframe[title='netterms checkout']"))
        .await
        .unwrap();
    frame.enter_frame().await.unwrap();
    // The order arrives by postMessage and fills the form.
    for _ in 0..100 {
        let v = c.find(Locator::Css("#company_name")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
        if !v.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text(&c, "#nt-summary").await.contains("595,00 €"), "the amount in the page's language");
    c.find(Locator::Css("#terms")).await.unwrap().click().await.unwrap();
    c.enter_parent_frame().await.unwrap();
    shot(&c, "widget.png").await;
    let frame = c.find(Locator::Css("iframe[title='netterms checkout']")).await.unwrap();
    frame.enter_frame().await.unwrap();
    c.find(Locator::Css("#nt-form button[type=submit]")).await.unwrap().click().await.unwrap();
    c.enter_parent_frame().await.unwrap();
    let done = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#result[data-state=created]"))
        .await
        .unwrap();
    assert!(done.text().await.unwrap().ends_with("is created"));
    shot(&c, "widget-confirmed.png").await;

    let events = app.send(app.psp(&psp, Method::GET, "/v1/events?type=authorization")).await.json();
    assert_eq!(events["data"].as_array().unwrap().len(), 3);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_renders_in_a_real_browser() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = browser(profile.path()).await else { return };
    let app = TestApp::spawn().await;
    // The front page points to the reference.
    c.goto(&app.base).await.unwrap();
    c.find(Locator::Css("a[href='/docs/']")).await.unwrap().click().await.unwrap();
    wait_url(&c, &format!("{}/docs/", app.base)).await;
    c.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css(".opblock-tag-section")).await.unwrap();
    // Navigation by tag, the PSP API first and the operator's last.
    let tags = c
        .find_all(Locator::Css(".opblock-tag-section h3 .nostyle span, .opblock-tag-section h3 a span"))
        .await
        .unwrap();
    let mut names = Vec::new();
    for t in tags {
        names.push(t.text().await.unwrap());
    }
    assert_eq!(names.first().map(String::as_str), Some("Merchants"), "{names:?}");
    assert!(names.iter().position(|n| n == "Operator") > names.iter().position(|n| n == "Orders"), "{names:?}");
    // Descriptions are rendered Markdown (no literal backticks), operations open with examples
    // and a console.
    c.find(Locator::Css("#operations-Orders-create_capture .opblock-summary")).await.unwrap().click().await.unwrap();
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(".try-out__btn")).await.unwrap();
    let description = text(&c, "#operations-Orders-create_capture .opblock-description-wrapper").await;
    assert!(!description.contains('`'), "Markdown is rendered: {description}");
    assert!(c.source().await.unwrap().contains("<code>due_date</code>"), "inline code is rendered as code");
    let example = text(
        &c,
        "#operations-Orders-create_capture .body-param__example, #operations-Orders-create_capture .highlight-code",
    )
    .await;
    assert!(example.contains("external_invoice_number"), "{example}");
    shot(&c, "docs.png").await;
    // The webhooks of OpenAPI 3.1 are listed too, each a POST of its own.
    let hooks = c.find_all(Locator::Css("[id^='operations-webhooks-webhook_']")).await.unwrap();
    assert_eq!(hooks.len(), netterms::domain::events::catalogue().len(), "one entry per event type");
    c.set_window_size(390, 900).await.unwrap();
    shot(&c, "docs-phone.png").await;
    c.close().await.unwrap();
}

/// Screenshots of the page at `path` in German and English, at desktop and phone width.
async fn portal_shots(c: &Client, base: &str, path: &str, name: &str) {
    let sep = if path.contains('?') { '&' } else { '?' };
    for lang in ["en", "de"] {
        c.goto(&format!("{base}{path}{sep}lang={lang}")).await.unwrap();
        c.wait().for_element(Locator::Css("main")).await.unwrap();
        assert_eq!(c.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap().as_deref(), Some(lang));
        full_shot(c, &format!("portal-{name}-{lang}-desktop.png"), 1200).await;
        full_shot(c, &format!("portal-{name}-{lang}-phone.png"), 390).await;
    }
}

/// The buyer portal in a real browser: a link read from the SMTP server, two invoices of two
/// merchants of two PSPs, their PDFs, a switch to direct debit, "I have paid", a support
/// request, sign-out; every page shot in both languages at phone and desktop width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buyer_portal_in_a_real_browser() {
    let profile = tempfile::tempdir().unwrap();
    let Some((_driver, c)) = browser(profile.path()).await else { return };
    let smtp = crate::smtp::SmtpServer::start().await;
    let app = TestApp::spawn_with(|cfg| cfg.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()))).await;
    let (p1, p2) = (app.create_psp().await, app.create_psp().await);
    let m1 = app.create_merchant(&p1, "werkzeug").await["merchant_id"].as_str().unwrap().to_owned();
    let m2 = app.create_merchant(&p2, "buero").await["merchant_id"].as_str().unwrap().to_owned();
    let a = crate::portal::invoice_for(
        &app,
        &p1,
        &m1,
        "anna@kunde.example",
        "Kunde Maschinenbau GmbH",
        "RE-2026-0815",
        11900,
    )
    .await;
    let b =
        crate::portal::invoice_for(&app, &p2, &m2, "anna@kunde.example", "Kunde Maschinenbau GmbH", "B-4711", 59500)
            .await;
    let (a_id, b_id) = (crate::portal::cid(&a), crate::portal::cid(&b));
    // A real PDF stands in for the merchant's invoice.
    let pdf = app.send(app.psp(&p1, Method::GET, &format!("/v1/captures/{a_id}/payment-information.pdf"))).await.bytes;
    let up = app
        .send(
            app.psp(&p1, Method::PUT, &format!("/v1/captures/{a_id}/invoice-document"))
                .header("content-type", "application/pdf")
                .body(pdf.clone()),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text());
    let base = app.base.clone();

    // Sign-in page, then the link from the mailbox.
    portal_shots(&c, &base, "/portal", "sign-in").await;
    // Asked for in English first, then in German (the German link is the one used).
    for (lang, heading) in [("en", "inbox"), ("de", "Postfach")] {
        c.goto(&format!("{base}/portal?lang={lang}")).await.unwrap();
        c.find(Locator::Css("#email")).await.unwrap().send_keys("Anna@Kunde.example").await.unwrap();
        c.find(Locator::Css("form[action='/portal/login'] button")).await.unwrap().click().await.unwrap();
        wait_text(&c, "main h1", heading).await;
        full_shot(&c, &format!("portal-link-sent-{lang}-desktop.png"), 1200).await;
        full_shot(&c, &format!("portal-link-sent-{lang}-phone.png"), 390).await;
        app.run_jobs().await;
    }
    let mail = crate::portal::sign_in_mails(&smtp).pop().expect("the sign-in e-mail");
    let at = mail.text.find("/portal/login/").unwrap();
    let token: String =
        mail.text[at + 14..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).collect();
    app.secret(&token);
    portal_shots(&c, &base, &format!("/portal/login/{token}"), "confirm").await;
    c.find(Locator::Css("main form button")).await.unwrap().click().await.unwrap();
    wait_url(&c, &format!("{base}/portal")).await;
    let list = text(&c, "main").await;
    assert!(list.contains("RE-2026-0815") && list.contains("B-4711"), "{list}");
    assert!(list.contains("119,00 €") && list.contains("595,00 €"), "{list}");
    let cookie = c.get_named_cookie("nt_portal").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    let session = cookie.value().to_owned();
    app.secret(&session);
    // The keyboard: the first Tab reaches the skip link.
    c.find(Locator::Css("body")).await.unwrap().send_keys("\u{E004}").await.unwrap();
    assert_eq!(c.active_element().await.unwrap().text().await.unwrap(), "Zum Inhalt");
    portal_shots(&c, &base, "/portal", "invoices").await;
    portal_shots(&c, &base, &format!("/portal/invoices/{a_id}"), "invoice").await;

    // The PDFs, with the browser's session: netterms' payment information and the merchant's invoice.
    let get = |path: String| app.client.get(app.url(&path)).header("cookie", format!("nt_portal={session}"));
    let info = app.send(get(format!("/portal/invoices/{b_id}/payment-information.pdf"))).await;
    assert_eq!((info.status.as_u16(), info.headers["content-type"].to_str().unwrap()), (200, "application/pdf"));
    let merchant = app.send(get(format!("/portal/invoices/{a_id}/invoice.pdf"))).await;
    assert_eq!(merchant.bytes, pdf);
    if crate::smtp::pdf_tools() {
        let t = crate::smtp::pdf_text(&info.bytes);
        assert!(t.contains("B-4711") && t.contains("595,00"), "{t}");
        assert!(!crate::smtp::pdf_text(&merchant.bytes).trim().is_empty());
    }

    // Invoice A to direct debit.
    c.goto(&format!("{base}/portal/invoices/{a_id}?lang=de")).await.unwrap();
    c.find(Locator::Css("#iban")).await.unwrap().send_keys("DE89 3704 0044 0532 0130 00").await.unwrap();
    c.find(Locator::Css("#mandate")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form[action$='/payment-method'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".notice.ok", "Firmenlastschrift").await;
    wait_text(&c, "#pay-h", "Firmenlastschrift").await;
    full_shot(&c, "portal-direct-debit-de-desktop.png", 1200).await;
    let order =
        app.send(app.psp(&p1, Method::GET, &format!("/v1/orders/{}", a["order_id"].as_str().unwrap()))).await.json();
    assert_eq!(order["payment_method"], "direct_debit");

    // "I have paid" on invoice B (its form is open and filled with today and the open amount).
    c.goto(&format!("{base}/portal/invoices/{b_id}")).await.unwrap();
    c.find(Locator::Css("form[action$='/paid'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".notice.ok", "5 Tage").await;
    full_shot(&c, "portal-paid-de-desktop.png", 1200).await;
    full_shot(&c, "portal-paid-de-phone.png", 390).await;
    let claims = app.send(app.admin(Method::GET, "/admin/v1/payment-claims")).await.json();
    assert_eq!(
        (claims["data"][0]["capture_id"].as_str(), claims["data"][0]["amount"].as_i64()),
        (Some(b_id.as_str()), Some(59500))
    );

    // A support request.
    portal_shots(&c, &base, "/portal/support", "support").await;
    c.find(Locator::Css("#subject")).await.unwrap().send_keys("Lieferschein").await.unwrap();
    c.find(Locator::Css("#body"))
        .await
        .unwrap()
        .send_keys("Bitte schicken Sie mir den Lieferschein zu B-4711.")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/portal/support'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".notice.ok", "Anfrage").await;
    wait_text(&c, "main table", "Lieferschein").await;
    full_shot(&c, "portal-support-sent-de-desktop.png", 1200).await;
    let queue = app.send(app.admin(Method::GET, "/admin/v1/support-requests")).await.json();
    assert_eq!(queue["data"][0]["subject"], "Lieferschein");
    portal_shots(&c, &base, "/portal/help", "help").await;
    portal_shots(&c, &base, "/portal/help/reminders", "help-reminders").await;
    portal_shots(&c, &base, "/portal/imprint", "imprint").await;

    // Sign out: the session is gone.
    c.goto(&format!("{base}/portal")).await.unwrap();
    c.find(Locator::Css("form[action='/portal/logout'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, ".notice.ok", "abgemeldet").await;
    c.goto(&format!("{base}/portal/invoices/{a_id}")).await.unwrap();
    wait_url(&c, &format!("{base}/portal")).await;
    assert!(c.find(Locator::Css("#email")).await.is_ok(), "back at the sign-in form");
    assert_eq!(app.send(get(format!("/portal/invoices/{a_id}"))).await.status, 303, "the old cookie is worthless");
    crate::orders::verify_ledger(&app).await;
    c.close().await.unwrap();
}
