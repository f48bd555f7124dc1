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

struct Driver(std::process::Child);

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

async fn browser(dir: &std::path::Path) -> Option<(Driver, Client)> {
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

async fn wait_url(c: &Client, prefix: &str) -> url::Url {
    for _ in 0..100 {
        let u = c.current_url().await.unwrap();
        if u.as_str().starts_with(prefix) {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached {prefix}; at {}", c.current_url().await.unwrap());
}

async fn text(c: &Client, css: &str) -> String {
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// A screenshot of the whole page at `width`: the window grows to the page's height first.
async fn full_shot(c: &Client, name: &str, width: u32) {
    c.set_window_size(width, 900).await.unwrap();
    let h = c.execute("return document.documentElement.scrollHeight", vec![]).await.unwrap();
    let h = u32::try_from(h.as_u64().unwrap_or(900)).unwrap().clamp(600, 6000);
    c.set_window_size(width, h + 120).await.unwrap();
    shot(c, name).await;
    c.set_window_size(1200, 1400).await.unwrap();
}

async fn shot(c: &Client, name: &str) {
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
    assert!(text(&c, "#nt-status").await.contains("nicht anbieten"));
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
