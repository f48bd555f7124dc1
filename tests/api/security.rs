//! Checkout and operations security: bounded unauthenticated writes, tenant-scoped company
//! search, strict origins and redirects, bounded metrics, response headers, idempotent rotation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::order_body;
use crate::helpers::*;

async fn page_session(app: &TestApp, psp: &TestPsp, mid: &str, email: &str, urls: Value) -> Resp {
    app.send(app.psp(psp, Method::POST, "/v1/payment-page-sessions").json(&json!({
        "merchant_id": mid, "order": order_body(email, 11900), "locale": "en", "redirect_urls": urls
    })))
    .await
}

fn urls() -> Value {
    json!({"accept_url": "https://shop.example/ok#thanks", "decline_url": "https://shop.example/no",
           "cancel_url": "https://shop.example/cancel"})
}

fn authorize_body() -> Value {
    json!({"payment_method": "bank_transfer", "terms_accepted": true})
}

#[tokio::test]
async fn a_declined_session_is_retried_a_bounded_number_of_times() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let s = page_session(&app, &psp, &mid, "anna+decline@kunde.example", urls()).await.json();
    let cs = s["client_secret"].as_str().unwrap();
    let path = format!("/checkout-api/v1/sessions/{cs}/authorize");
    for _ in 0..5 {
        let r = app.send(app.client.post(app.url(&path)).json(&authorize_body())).await;
        assert_eq!(r.json()["state"], "declined", "{}", r.text());
    }
    let (orders, events) = (app.count("orders").await, app.count("events").await);
    let r = app.send(app.client.post(app.url(&path)).json(&authorize_body())).await;
    r.assert_error(409, "state_conflict");
    assert_eq!((app.count("orders").await, app.count("events").await), (orders, events));
}

#[tokio::test]
async fn the_checkout_api_is_rate_limited_per_session_and_per_address() {
    let app = TestApp::spawn_with(|c| c.checkout_requests_per_minute_per_session = 3).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let s = page_session(&app, &psp, &mid, "anna@kunde.example", urls()).await.json();
    let cs = s["client_secret"].as_str().unwrap();
    let get = || app.client.get(app.url(&format!("/checkout-api/v1/sessions/{cs}")));
    for _ in 0..3 {
        assert_eq!(app.send(get()).await.status, 200);
    }
    let r = app.send(get()).await;
    r.assert_error(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // Another session is not affected.
    let s2 = page_session(&app, &psp, &mid, "anna@kunde.example", urls()).await.json();
    let cs2 = s2["client_secret"].as_str().unwrap();
    assert_eq!(app.send(app.client.get(app.url(&format!("/checkout-api/v1/sessions/{cs2}")))).await.status, 200);

    let app = TestApp::spawn_with(|c| c.checkout_requests_per_minute_per_address = 4).await;
    for i in 0..6 {
        let r = app.send(app.client.get(app.url("/checkout-api/v1/sessions/cs_nothing_here"))).await;
        assert_eq!(r.status, if i < 4 { 404 } else { 429 }, "request {i}");
    }
}

#[tokio::test]
async fn company_search_stays_within_the_sessions_psp_and_counts_without_wildcards() {
    let app = TestApp::spawn().await;
    let a = app.create_psp().await;
    let b = app.create_psp().await;
    let mid_a = app.create_merchant(&a, "shop-a").await["merchant_id"].as_str().unwrap().to_owned();
    let mid_b = app.create_merchant(&b, "shop-b").await["merchant_id"].as_str().unwrap().to_owned();
    // A buyer of PSP A.
    let s = page_session(&app, &a, &mid_a, "anna@kunde.example", urls()).await.json();
    let cs = s["client_secret"].as_str().unwrap();
    let r = app
        .send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{cs}/authorize"))).json(&authorize_body()))
        .await;
    assert_eq!(r.json()["state"], "created");
    let search = |cs: &str, q: &str| {
        app.client.get(app.url("/checkout-api/v1/companies")).query(&[("client_secret", cs), ("q", q)])
    };
    let sa = page_session(&app, &a, &mid_a, "x@kunde.example", urls()).await.json();
    let sb = page_session(&app, &b, &mid_b, "x@kunde.example", urls()).await.json();
    let (csa, csb) = (sa["client_secret"].as_str().unwrap(), sb["client_secret"].as_str().unwrap());
    let hits = app.send(search(csa, "maschinen")).await.json();
    assert_eq!(hits["data"].as_array().unwrap().len(), 1, "PSP A finds its own buyer");
    let hits = app.send(search(csb, "maschinen")).await.json();
    assert_eq!(hits["data"].as_array().unwrap().len(), 0, "PSP B does not learn of PSP A's buyers");
    for q in ["%%", "__", "%_", " %\\ "] {
        let r = app.send(search(csa, q)).await;
        r.assert_error(422, "request_validation_error");
        assert_eq!(r.sources(), ["q"], "{q:?}");
    }
    assert_eq!(app.send(search(csa, "%ma%")).await.json()["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn origins_and_redirects_are_strict_and_cross_site_posts_are_refused() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let before = app.count("checkout_sessions").await;
    for origin in
        ["http://localhost.evil.example", "http://localhost@evil.example", "https://shop.example/path", "javascript:x"]
    {
        let r = app
            .send(
                app.psp(&psp, Method::POST, "/v1/widget-sessions")
                    .json(&json!({"merchant_id": mid, "allowed_origins": [origin]})),
            )
            .await;
        r.assert_error(422, "request_validation_error");
        assert_eq!(r.sources(), ["allowed_origins[0]"], "{origin}");
    }
    for bad in ["http://127.0.0.1:80@evil.example/", "http://localhost.evil.example/", "https://u:p@shop.example/"] {
        let mut u = urls();
        u["accept_url"] = json!(bad);
        let r = page_session(&app, &psp, &mid, "anna@kunde.example", u).await;
        r.assert_error(422, "request_validation_error");
        assert_eq!(r.sources(), ["redirect_urls.accept_url"], "{bad}");
    }
    assert_eq!(app.count("checkout_sessions").await, before);

    // Redirect parameters go before the fragment.
    let s = page_session(&app, &psp, &mid, "anna@kunde.example", urls()).await.json();
    let cs = s["client_secret"].as_str().unwrap();
    // A POST from another site is refused and changes nothing; the page's own origin may.
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/checkout-api/v1/sessions/{cs}/cancel")))
                .header("origin", "https://evil.example"),
        )
        .await;
    r.assert_error(403, "forbidden");
    let view = app.send(app.client.get(app.url(&format!("/checkout-api/v1/sessions/{cs}")))).await.json();
    assert_eq!(view["status"], "open");
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/checkout-api/v1/sessions/{cs}/authorize")))
                .header("origin", app.base.as_str())
                .json(&authorize_body()),
        )
        .await;
    let url = r.json()["redirect_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://shop.example/ok?session_id=") && url.ends_with("&state=created#thanks"), "{url}");

    // Pages carry their framing rules: the payment page may not be framed at all.
    let s = page_session(&app, &psp, &mid, "anna@kunde.example", urls()).await.json();
    let page = app.send(app.client.get(s["payment_page_url"].as_str().unwrap())).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn metrics_labels_are_bounded_and_headers_are_set() {
    let app = TestApp::spawn().await;
    for i in 0..40 {
        let m = Method::from_bytes(format!("X{i}METHOD").as_bytes()).unwrap();
        app.send(app.client.request(m, app.url("/v1/merchants"))).await;
    }
    let metrics = app.send(app.client.get(app.url("/metrics"))).await.text();
    assert!(!metrics.contains("X1METHOD") && !metrics.contains("X39METHOD"), "invented methods are not labels");
    assert!(metrics.contains("method=\"OTHER\""));
    let r = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert!(!r.headers.contains_key("strict-transport-security"), "no HSTS in a sandbox on http");

    let app = TestApp::spawn_with(|c| {
        c.environment = netterms::config::Environment::Production;
        c.public_url = Some("https://api.netterms.example".into());
        c.metrics_token = Some(netterms::secrets::Secret::new("metrics-token-0123456789"));
    })
    .await;
    let r = app.send(app.client.get(app.url("/healthz"))).await;
    assert!(r.headers["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    app.send(app.client.get(app.url("/metrics"))).await.assert_error(401, "unauthorized");
    let r = app.send(app.client.get(app.url("/metrics")).bearer_auth("metrics-token-0123456789")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn rotating_a_secret_honours_the_idempotency_key() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let (id, _) = app.create_endpoint(&psp, "https://hooks.example/a", &[]).await;
    let rotate = || {
        app.psp(&psp, Method::POST, &format!("/v1/webhook-endpoints/{id}/rotate-secret"))
            .header("idempotency-key", "rot-1")
    };
    let a = app.send(rotate()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    app.secret(a.json()["secret"].as_str().unwrap());
    let secrets = app.count("webhook_secrets").await;
    let b = app.send(rotate()).await;
    assert_eq!(b.headers["idempotent-replayed"], "true");
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(app.count("webhook_secrets").await, secrets, "rotated once");
}

/// A server on loopback that counts the connections made to it (TLS or not).
async fn loopback_counter() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, hits)
}

/// An IP address written into `invoice_url` in any notation (`127.0.0.1`, `2130706433`,
/// `0x7f.1`, `[::ffff:127.0.0.1]`) is refused when the capture is made, and a document fetch to
/// such an address stored before never connects: one guard checks every outbound request.
#[tokio::test]
async fn an_address_written_into_a_url_never_leads_a_request_to_loopback() {
    let app = TestApp::spawn_with(|c| c.webhook_allow_private = Some(false)).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let (port, hits) = loopback_counter().await;
    let capture = |oid: String, url: String| {
        app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({
            "amount": crate::orders::amount(11900), "external_invoice_number": "SSRF-1", "invoice_url": url
        }))
    };
    let oid = crate::orders::created_order(&app, &psp, &mid).await;
    for host in ["127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "localhost"] {
        let r = app.send(capture(oid.clone(), format!("https://{host}:{port}/inv.pdf"))).await;
        r.assert_error(422, "request_validation_error");
        assert_eq!(r.sources(), ["invoice_url"], "{host}");
    }
    assert_eq!(app.count("captures").await, 0, "nothing made");
    // A capture whose address is changed to loopback behind its back (or was stored before).
    let r = app.send(capture(oid, "https://documents.shop.example/inv.pdf".into())).await;
    assert_eq!(r.status, 201, "{}", r.text());
    app.execute(&format!("UPDATE captures SET invoice_url = 'https://2130706433:{port}/inv.pdf'")).await;
    app.run_jobs().await;
    app.run_jobs().await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection to loopback");
    let failed = app.send(app.admin(Method::GET, "/admin/v1/jobs?state=failed")).await.json();
    assert_eq!(failed["data"], json!([]), "a refusal is final, not a failure to retry: {failed}");
}
