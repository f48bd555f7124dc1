use netterms::domain::webhook::verify;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

pub fn order_body(email: &str, gross: i64) -> Value {
    let tax = gross * 19 / 119;
    json!({
        "external_order_id": "SO-1001",
        "amount": {"currency": "EUR", "gross": gross, "net": gross - tax, "tax": tax},
        "duration": 30,
        "debtor_company": {
            "name": "Kunde Maschinenbau GmbH", "legal_form": "10001", "registration_number": "HRB 54321",
            "registration_court": "Amtsgericht München",
            "address": {"street": "Leopoldstraße", "house_number": "10", "postal_code": "80802", "city": "München", "country": "DE"}
        },
        "debtor_person": {"salutation": "f", "first_name": "Anna", "last_name": "Einkauf", "email": email},
        "delivery_address": {"street": "Werkstraße", "house_number": "5", "postal_code": "85748", "city": "Garching", "country": "DE"},
        "line_items": [{"external_id": "sku-1", "title": "Drehmaschine", "quantity": 1,
                        "amount": {"currency": "EUR", "gross": gross, "net": gross - tax, "tax": tax}}]
    })
}

async fn page_session(app: &TestApp, psp: &TestPsp, merchant_id: &str, order: Value) -> Value {
    let r = app
        .send(app.psp(psp, Method::POST, "/v1/payment-page-sessions").json(&json!({
            "merchant_id": merchant_id, "order": order, "locale": "en",
            "redirect_urls": {"accept_url": "https://shop.example/ok", "decline_url": "https://shop.example/no?x=1",
                              "cancel_url": "http://localhost:3000/cancel"}
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

pub async fn widget_session(app: &TestApp, psp: &TestPsp, merchant_id: &str) -> String {
    let r = app
        .send(app.psp(psp, Method::POST, "/v1/widget-sessions").json(&json!({
            "merchant_id": merchant_id, "merchant_customer_id": "c-1", "allowed_origins": ["https://shop.example"]
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["client_secret"].as_str().unwrap().to_owned()
}

pub async fn authorize(app: &TestApp, session_id: &str, body: Value) -> Resp {
    app.send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{session_id}/authorize"))).json(&body)).await
}

#[tokio::test]
async fn payment_page_flow_approves_redirects_and_sends_a_verifiable_authorization_webhook() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let rx = Receiver::start(vec![]).await;
    let (_, secret) = app.create_endpoint(&psp, &rx.url, &["authorization"]).await;
    let m = app.create_merchant(&psp, "shop").await;
    let mid = m["merchant_id"].as_str().unwrap();
    let s = page_session(&app, &psp, mid, order_body("anna@kunde.example", 11900)).await;
    let sid = s["session_id"].as_str().unwrap();
    let cs = s["client_secret"].as_str().unwrap();
    assert_eq!(s["status"], "open");
    assert_eq!(s["payment_page_url"], format!("{}/pay/{cs}", app.base));
    app.secret(cs);

    let view = app.send(app.client.get(app.url(&format!("/checkout-api/v1/sessions/{cs}")))).await.json();
    assert_eq!(view["merchant_name"], "Beispiel Handels GmbH");
    assert_eq!(view["order"]["amount"]["gross"], 11900);
    assert_eq!(view["locale"], "en");
    // The session id is an identifier, not a credential: it opens nothing.
    app.send(app.client.get(app.url(&format!("/checkout-api/v1/sessions/{sid}"))))
        .await
        .assert_error(404, "resource_not_found");
    assert_eq!(app.send(app.client.get(app.url(&format!("/pay/{sid}")))).await.status, 404);

    let r = authorize(&app, cs, json!({"payment_method": "bank_transfer", "terms_accepted": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    assert_eq!(a["state"], "created");
    let oid = a["order_id"].as_str().unwrap();
    assert_eq!(a["redirect_url"], format!("https://shop.example/ok?session_id={sid}&order_id={oid}&state=created"));

    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json();
    assert_eq!(order["state"], "created");
    let viban = order["bank_account"]["iban"].as_str().unwrap();
    assert!(netterms::domain::iban::validate(viban).is_ok());

    // A completed session cannot be authorized again, and no longer shows the buyer's data.
    let view = app.send(app.client.get(app.url(&format!("/checkout-api/v1/sessions/{cs}")))).await.json();
    assert_eq!(view["status"], "completed");
    assert!(view["order"].is_null(), "{view}");
    authorize(&app, cs, json!({"payment_method": "bank_transfer", "terms_accepted": true}))
        .await
        .assert_error(409, "state_conflict");

    app.deliver_all().await;
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    verify(&secret, &h.id, &h.timestamp, &h.signature, &h.body, chrono::Utc::now().timestamp()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut tampered = h.body.clone();
    tampered[5] ^= 1;
    assert!(verify(&secret, &h.id, &h.timestamp, &h.signature, &tampered, now).is_err());
    let wrong = netterms::domain::webhook::format_secret(b"not-the-endpoint-secret!");
    assert!(verify(&wrong, &h.id, &h.timestamp, &h.signature, &h.body, now).is_err());
    let ts: i64 = h.timestamp.parse().unwrap();
    assert!(verify(&secret, &h.id, &h.timestamp, &h.signature, &h.body, ts + 5 * 60 + 1).is_err());
    let body: Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(body["type"], "authorization");
    assert_eq!(
        body["data"],
        json!({"order_id": oid, "success": true, "session_id": sid, "merchant_id": mid, "state": "created", "decline_reason": null})
    );
}

#[tokio::test]
async fn a_declined_payment_page_session_may_be_retried_and_cancel_redirects() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let s = page_session(&app, &psp, &mid, order_body("anna+decline@kunde.example", 11900)).await;
    let sid = s["client_secret"].as_str().unwrap();
    let a = authorize(&app, sid, json!({"payment_method": "bank_transfer", "terms_accepted": true})).await.json();
    assert_eq!(a["state"], "declined");
    assert_eq!(a["decline_reason"], "risk_policy");
    let url = a["redirect_url"].as_str().unwrap();
    assert!(url.starts_with("https://shop.example/no?x=1&session_id="), "{url}");
    assert!(url.ends_with("&state=declined&decline_reason=risk_policy"), "{url}");

    // The buyer corrects the contact and retries on the same session.
    let a = authorize(
        &app,
        sid,
        json!({"order": {"debtor_person": {"email": "anna@kunde.example"}}, "payment_method": "direct_debit",
               "iban": "DE89370400440532013000", "terms_accepted": true}),
    )
    .await
    .json();
    assert_eq!(a["state"], "created");
    let mandate = a["mandate_reference"].as_str().unwrap();
    assert!(mandate.starts_with("NT") && mandate.len() == 26, "{mandate}");
    // Its own value: nothing of the session id in it.
    let session_hex = s["session_id"].as_str().unwrap().replace('-', "").to_ascii_uppercase();
    assert!(!mandate.contains(&session_hex[..12]) && !mandate.contains(&session_hex[20..]));
    // The mandate text the buyer agreed to is stored with the order.
    let mut conn = app.db().conn().await.unwrap();
    let text: netterms::store::StoreResult<Option<String>> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar("SELECT mandate_text FROM orders WHERE mandate_reference IS NOT NULL").fetch_one(&mut *c).await?
        }))
    }
    .await;
    let text = text.unwrap();
    assert!(text.unwrap().contains("SEPA"));

    let s2 = page_session(&app, &psp, &mid, order_body("b@kunde.example", 11900)).await;
    let sid2 = s2["session_id"].as_str().unwrap();
    let cs2 = s2["client_secret"].as_str().unwrap();
    let c = app.send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{cs2}/cancel")))).await;
    assert_eq!(c.json()["redirect_url"], format!("http://localhost:3000/cancel?session_id={sid2}"));
    authorize(&app, cs2, json!({"payment_method": "bank_transfer", "terms_accepted": true}))
        .await
        .assert_error(409, "state_conflict");
}

#[tokio::test]
async fn bad_checkout_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let before = app.snapshot().await;
    let mut order = order_body("a@kunde.example", 11900);
    order["amount"]["net"] = json!(10001);
    order["duration"] = json!(90);
    let r = app
        .send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&json!({
            "merchant_id": mid, "order": order, "locale": "fr",
            "redirect_urls": {"accept_url": "http://shop.example/ok", "decline_url": "https://shop.example/no"}
        })))
        .await;
    r.assert_error(422, "request_validation_error");
    let mut sources = r.sources();
    sources.sort();
    assert_eq!(sources, ["locale", "order.amount.gross", "redirect_urls.accept_url", "redirect_urls.cancel_url"]);
    // The duration must lie within the merchant's terms (14–60 days here).
    let mut order = order_body("a@kunde.example", 11900);
    order["duration"] = json!(90);
    let r = app
        .send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&json!({
            "merchant_id": mid, "order": order,
            "redirect_urls": {"accept_url": "https://s.example/a", "decline_url": "https://s.example/b", "cancel_url": "https://s.example/c"}
        })))
        .await;
    assert_eq!(r.sources(), ["order.duration"]);
    let r = app.send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&json!({"merchant_id": 7}))).await;
    r.assert_error(400, "request_invalid");
    assert_eq!(app.snapshot().await, before);

    // A session for an inactive merchant is refused.
    app.send(app.psp(&psp, Method::POST, &format!("/v1/merchants/{mid}/deactivate"))).await;
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/widget-sessions")
                .json(&json!({"merchant_id": mid, "allowed_origins": ["https://a.example"]})),
        )
        .await;
    r.assert_error(403, "merchant_inactive");
    app.send(app.psp(&psp, Method::POST, &format!("/v1/merchants/{mid}/reactivate"))).await;

    let sid = widget_session(&app, &psp, &mid).await;
    let before = app.snapshot().await;
    let r = authorize(
        &app,
        &sid,
        json!({"order": order_body("a@kunde.example", 11900), "payment_method": "direct_debit",
        "iban": "DE00370400440532013000", "terms_accepted": false}),
    )
    .await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["iban", "terms_accepted"]);
    authorize(&app, &sid, json!({"payment_method": 5})).await.assert_error(400, "request_invalid");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.count("orders").await, 0);
    let unknown = uuid::Uuid::now_v7();
    authorize(&app, &unknown.to_string(), json!({"payment_method": "bank_transfer", "terms_accepted": true}))
        .await
        .assert_error(404, "resource_not_found");
}

#[tokio::test]
async fn widget_flow_confirm_compares_field_by_field() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let other = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let sid = widget_session(&app, &psp, &mid).await;
    let order = order_body("anna@kunde.example", 11900);
    let a =
        authorize(&app, &sid, json!({"order": order, "payment_method": "bank_transfer", "terms_accepted": true})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = a.json();
    assert_eq!(a["state"], "authorized");
    assert!(a["redirect_url"].is_null());
    let oid = a["order_id"].as_str().unwrap().to_owned();

    let confirm = |body: Value, who: &TestPsp| {
        app.psp(who, Method::POST, &format!("/v1/widget-sessions/{}/confirm-authorization", session_id_of(&sid)))
            .json(&body)
    };
    let mut changed = order.clone();
    changed["amount"] = json!({"currency": "EUR", "gross": 11901, "net": 10001, "tax": 1900});
    changed["line_items"][0]["amount"] = changed["amount"].clone();
    changed["debtor_company"]["name"] = json!("Andere GmbH");
    changed["delivery_address"]["city"] = json!("Freising");
    let before = app.snapshot().await;
    let r = app.send(confirm(changed, &psp)).await;
    r.assert_error(400, "authorization_mismatch");
    assert_eq!(r.sources(), ["amount", "debtor_company", "delivery_address"]);
    let mut addr = order.clone();
    addr["debtor_company"]["address"]["postal_code"] = json!("80801");
    assert_eq!(app.send(confirm(addr, &psp)).await.sources(), ["debtor_company"]);
    // Another PSP cannot see the session.
    app.send(confirm(order.clone(), &other)).await.assert_error(404, "resource_not_found");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json()["state"], "authorized");

    let ok = app.send(confirm(order.clone(), &psp)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["state"], "created");
    assert_eq!(ok.json()["external_order_id"], "SO-1001");
    app.send(confirm(order, &psp)).await.assert_error(409, "state_conflict");
    app.send(app.psp(&other, Method::GET, &format!("/v1/orders/{oid}"))).await.assert_error(404, "resource_not_found");
}

#[tokio::test]
async fn manual_review_and_expiry() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();

    let sid = widget_session(&app, &psp, &mid).await;
    let order = order_body("anna+review@kunde.example", 11900);
    let a = authorize(&app, &sid, json!({"order": order, "payment_method": "bank_transfer", "terms_accepted": true}))
        .await
        .json();
    assert_eq!(a["state"], "pre_waiting");
    let oid = a["order_id"].as_str().unwrap().to_owned();
    let c = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/widget-sessions/{}/confirm-authorization", session_id_of(&sid)))
                .json(&order),
        )
        .await;
    assert_eq!(c.json()["state"], "waiting");
    let approved = app.send(app.admin(Method::POST, &format!("/admin/v1/orders/{oid}/approve"))).await;
    assert_eq!(approved.json()["state"], "created");
    app.send(app.admin(Method::POST, &format!("/admin/v1/orders/{oid}/decline")))
        .await
        .assert_error(409, "state_conflict");
    let types = app.send(app.psp(&psp, Method::GET, "/v1/events?limit=100")).await.json();
    let types: Vec<_> =
        types["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert!(types.contains(&"order.approved".to_owned()) && types.contains(&"order.waiting".to_owned()));

    // An authorization that is never confirmed expires and frees the buyer's limit.
    let sid = widget_session(&app, &psp, &mid).await;
    let order = order_body("anna@kunde.example", 11900);
    let a = authorize(&app, &sid, json!({"order": order, "payment_method": "bank_transfer", "terms_accepted": true}))
        .await
        .json();
    let oid = a["order_id"].as_str().unwrap().to_owned();
    assert_eq!(netterms::service::clock::run_due_for_all(&app.services).await.unwrap().expired_authorizations, 0);
    app.services.clock.advance(chrono::Duration::hours(73));
    assert_eq!(netterms::service::clock::run_due_for_all(&app.services).await.unwrap().expired_authorizations, 1);
    assert_eq!(app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json()["state"], "expired");
    let c = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/widget-sessions/{}/confirm-authorization", session_id_of(&sid)))
                .json(&order),
        )
        .await;
    c.assert_error(409, "state_conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_checkouts_for_one_buyer_never_exceed_its_limit() {
    let app = TestApp::spawn_with(|c| {
        c.credit.default_buyer_limit = 10_000;
        c.credit.min_order_amount = 1;
    })
    .await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(widget_session(&app, &psp, &mid).await);
    }
    let results = futures::future::join_all(sessions.iter().map(|sid| {
        authorize(
            &app,
            sid,
            json!({"order": order_body("anna@kunde.example", 3000), "payment_method": "bank_transfer", "terms_accepted": true}),
        )
    }))
    .await;
    let states: Vec<Value> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        })
        .collect();
    let approved = states.iter().filter(|s| s["state"] == "authorized").count();
    assert_eq!(approved, 3, "10,000 fits three orders of 3,000");
    assert!(
        states.iter().filter(|s| s["state"] != "authorized").all(|s| s["decline_reason"] == "debtor_limit_exceeded")
    );
    assert_eq!(app.count("buyers").await, 1);
    assert_eq!(app.count("decisions").await, 20);
}

#[tokio::test]
async fn checkout_api_cors_and_company_search() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let sid = widget_session(&app, &psp, &mid).await;
    let path = format!("/checkout-api/v1/sessions/{sid}");
    let ok = app.send(app.client.get(app.url(&path)).header("origin", "https://shop.example")).await;
    assert_eq!(ok.headers["access-control-allow-origin"], "https://shop.example");
    let foreign = app.send(app.client.get(app.url(&path)).header("origin", "https://evil.example")).await;
    assert!(foreign.headers.get("access-control-allow-origin").is_none());
    let pre = app
        .send(
            app.client
                .request(Method::OPTIONS, app.url(&format!("{path}/authorize")))
                .header("origin", "https://shop.example"),
        )
        .await;
    assert_eq!(pre.status, 204);
    let pre = app
        .send(
            app.client
                .request(Method::OPTIONS, app.url(&format!("{path}/authorize")))
                .header("origin", "https://evil.example"),
        )
        .await;
    pre.assert_error(403, "forbidden");

    authorize(&app, &sid, json!({"order": order_body("anna@kunde.example", 11900), "payment_method": "bank_transfer", "terms_accepted": true})).await;
    let sid2 = widget_session(&app, &psp, &mid).await;
    let r = app
        .send(app.client.get(app.url(&format!("/checkout-api/v1/companies?client_secret={sid2}&q=maschinen"))))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let hits = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["name"], "Kunde Maschinenbau GmbH");
    assert!(hits[0].get("registration_number").is_none());
    let r = app.send(app.client.get(app.url(&format!("/checkout-api/v1/companies?client_secret={sid2}&q=m")))).await;
    r.assert_error(422, "request_validation_error");
}

#[tokio::test]
async fn the_operator_sets_the_credit_policy() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let mut policy = app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json();
    assert_eq!(policy["review_above"], 2_500_000);
    policy["review_above"] = json!(10_000);
    let r = app.send(app.admin(Method::PUT, "/admin/v1/credit-policy").json(&policy)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = widget_session(&app, &psp, &mid).await;
    let a = authorize(&app, &sid, json!({"order": order_body("anna@kunde.example", 11900), "payment_method": "bank_transfer", "terms_accepted": true})).await;
    assert_eq!(a.json()["state"], "pre_waiting");

    let mut bad = policy.clone();
    bad["min_order_amount"] = json!(0);
    bad["countries"] = json!(["XX"]);
    let r = app.send(app.admin(Method::PUT, "/admin/v1/credit-policy").json(&bad)).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["min_order_amount", "countries"]);
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json()["review_above"], 10_000);
}

#[tokio::test]
async fn pages_and_sdk_are_served_with_their_guards() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let sdk = app.send(app.client.get(app.url("/sdk/v1/checkout.js"))).await;
    assert_eq!(sdk.status, 200);
    assert!(sdk.headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(sdk.text().contains("NettermsCheckout"));

    let sid = widget_session(&app, &psp, &mid).await;
    let ok = app.send(app.client.get(app.url(&format!("/widget/{sid}?origin=https://shop.example")))).await;
    assert_eq!(ok.status, 200);
    let csp = ok.headers["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors https://shop.example"), "{csp}");
    assert!(!ok.text().contains("https://cdn"));
    let evil = app.send(app.client.get(app.url(&format!("/widget/{sid}?origin=https://evil.example")))).await;
    assert_eq!(evil.status, 403);

    let s = page_session(&app, &psp, &mid, order_body("anna@kunde.example", 11900)).await;
    let page = app.send(app.client.get(s["payment_page_url"].as_str().unwrap())).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("lang=\"en\"") && html.contains("Pay by invoice in 30 days"));
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let de = app.send(app.client.get(format!("{}?lang=de", s["payment_page_url"].as_str().unwrap()))).await;
    assert!(de.text().contains("Zahlbar in 30 Tagen") && de.text().contains("119,00 €"));
    let unknown = app.send(app.client.get(app.url(&format!("/pay/{}", uuid::Uuid::now_v7())))).await;
    // A forged secret for a real session opens nothing either.
    let forged = format!("{}{}", &sid[..sid.len() - 4], "AAAA");
    assert_eq!(
        app.send(app.client.get(app.url(&format!("/widget/{forged}?origin=https://shop.example")))).await.status,
        404
    );
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_taken_virtual_iban_does_not_create_a_buyer_twice() {
    use netterms::store::checkout::upsert_buyer_locked;
    let app = TestApp::spawn().await;
    let order: netterms::domain::order::OrderInput =
        serde_json::from_value(order_body("a@kunde.example", 100)).unwrap();
    let company = order.validate(&["EUR".to_owned()], "").unwrap().debtor_company;
    let now = app.services.clock.now();
    let mut tx = app.db().begin().await.unwrap();
    let a = upsert_buyer_locked(&mut tx, "key-a", &company, "DE89370400440532013000", now).await.unwrap().unwrap();
    // Another buyer whose derived IBAN is taken is not created (and the transaction stays usable) …
    assert!(upsert_buyer_locked(&mut tx, "key-b", &company, "DE89370400440532013000", now).await.unwrap().is_none());
    // … and gets one with the next derivation; the first buyer is found again by its key.
    let b = upsert_buyer_locked(&mut tx, "key-b", &company, "DE44500105175407324931", now).await.unwrap().unwrap();
    assert_ne!(a.id, b.id);
    let again = upsert_buyer_locked(&mut tx, "key-a", &company, "DE02120300000000202051", now).await.unwrap().unwrap();
    assert_eq!(again.id, a.id);
    assert_eq!(again.virtual_iban, "DE89370400440532013000");
    tx.commit().await.unwrap();
}
