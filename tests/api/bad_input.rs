//! Input that once crashed or slipped through: every case answers in the envelope, the same on
//! both backends, and changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::checkout::order_body;
use crate::helpers::*;
use crate::orders::{amount, created_order, setup};

#[tokio::test]
async fn reversed_payment_terms_and_non_ascii_tax_ids_are_422_not_a_crash() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let before = app.snapshot().await;
    // max_duration below 7 with no default once panicked in `clamp`.
    let mut m = merchant_body("terms");
    m["payment_terms"] = json!({"max_duration": 5});
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["payment_terms.max_duration", "payment_terms.min_duration"]);
    // A key used with a request that failed is free again at once.
    let keyed = app.psp(&psp, Method::POST, "/v1/merchants").header("idempotency-key", "t-1").json(&m);
    app.send(keyed).await.assert_error(422, "request_validation_error");

    // Byte slicing inside a character once panicked.
    let mut m = merchant_body("vat");
    m["tax_id"] = json!("Xé1");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["tax_id"]);
    assert_eq!(app.snapshot().await, before);

    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let s = app
        .send(
            app.psp(&psp, Method::POST, "/v1/widget-sessions")
                .json(&json!({"merchant_id": mid, "allowed_origins": ["https://shop.example"]})),
        )
        .await
        .json();
    let sid = s["client_secret"].as_str().unwrap();
    let mut order = order_body("anna@kunde.example", 11900);
    order["debtor_company"]["tax_id"] = json!("Xé1");
    let orders = app.count("orders").await;
    let r = app
        .send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{sid}/authorize"))).json(&json!({
            "order": order, "payment_method": "bank_transfer", "terms_accepted": true
        })))
        .await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["order.debtor_company.tax_id"]);
    // The widget's locale is de or en, nothing else.
    let r = app
        .send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{sid}/authorize"))).json(&json!({
            "order": order_body("anna@kunde.example", 11900), "payment_method": "bank_transfer",
            "terms_accepted": true, "locale": "fr"
        })))
        .await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["locale"]);
    assert_eq!(app.count("orders").await, orders);
}

#[tokio::test]
async fn control_characters_are_refused_in_every_text_and_query() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let before = app.snapshot().await;
    for bad in ["Beispiel\u{0}GmbH", "Bei\u{1b}[31mspiel", "Beispiel\u{7f}", "x\u{85}y"] {
        let mut m = merchant_body("ctl");
        m["name"] = json!(bad);
        let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
        r.assert_error(422, "request_validation_error");
        assert_eq!(r.sources(), ["name"], "{bad:?}");
    }
    // Nested and in a list, by path.
    let mut m = merchant_body("ctl");
    m["address"]["city"] = json!("Ber\u{0}lin");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
    assert_eq!(r.sources(), ["address.city"]);
    // Fields the server does not know are ignored, whatever they hold.
    let mut m = merchant_body("unknown-fields");
    m["x_unknown"] = json!("any\u{0}thing");
    m["address"]["x_note"] = json!({"deep": ["\u{1}"]});
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Tabs and new lines are text in multi-line fields only; a name is one line.
    let mut m = merchant_body("ok-lines");
    m["industry_sector"] = json!("G");
    m["name"] = json!("Beispiel\tHandels GmbH");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
    assert_eq!(r.sources(), ["name"], "{}", r.text());
    m["name"] = json!("Beispiel Handels GmbH");
    assert_eq!(app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await.status, 201);
    let after_ok = app.snapshot().await;
    assert_ne!(after_ok, before);
    // Query parameters: 400 naming the parameter.
    let r = app.send(app.psp(&psp, Method::GET, "/v1/events?type=order.created%00")).await;
    r.assert_error(400, "request_invalid");
    let r = app.send(app.psp(&psp, Method::GET, "/v1/orders?state=created%00")).await;
    r.assert_error(400, "request_invalid");
    assert_eq!(r.sources(), ["state"]);
    assert_eq!(app.snapshot().await, after_ok);
}

#[tokio::test]
async fn a_body_is_exactly_one_json_object() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let before = app.snapshot().await;
    let raw = |method: Method, path: &str, body: &str| {
        app.psp(&psp, method, path).header("content-type", "application/json").body(body.to_owned())
    };
    let body = serde_json::to_string(&merchant_body("trail")).unwrap();
    for text in [format!("{body} this is not json"), format!("{body}{body}"), format!("[{body}]"), "42".into()] {
        let r = app.send(raw(Method::POST, "/v1/merchants", &text)).await;
        r.assert_error(400, "request_invalid");
    }
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/webhook-endpoints")
                .header("content-type", "application/json")
                .body("{\"url\": \"https://hooks.example/x\"} trailing"),
        )
        .await;
    r.assert_error(400, "request_invalid");
    assert_eq!(app.snapshot().await, before);

    // The credit policy is an object with known fields only.
    let policy = app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json();
    let put = |body: String| {
        app.admin(Method::PUT, "/admin/v1/credit-policy").header("content-type", "application/json").body(body)
    };
    app.send(put("[1, 2, 3]".into())).await.assert_error(400, "request_invalid");
    app.send(put("{\"default_buyer_limit\": 5, \"nonsense\": 1}".into())).await.assert_error(400, "request_invalid");
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/credit-policy")).await.json(), policy);
}

#[tokio::test]
async fn capture_and_refund_line_items_are_checked_and_bounded() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    let item = |q: serde_json::Value, title: &str, gross: i64| json!({"external_id": "sku-1", "title": title, "quantity": q, "amount": amount(gross)});
    let cap = |items: serde_json::Value| {
        app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({
            "amount": amount(1000), "external_invoice_number": "INV-L", "line_items": items
        }))
    };
    let before = (app.count("captures").await, app.count("ledger_entries").await);
    for (items, status, source) in [
        (json!([item(json!(-1), "a", 1000)]), 422, "line_items[0].quantity"),
        (json!([item(json!(0), "a", 1000)]), 422, "line_items[0].quantity"),
        (json!([item(json!(1.5), "a", 1000)]), 400, "line_items[0].quantity"),
        (json!([item(json!("1"), "a", 1000)]), 400, "line_items[0].quantity"),
        (json!([item(json!(1), &"x".repeat(100_000), 1000)]), 422, "line_items[0].title"),
        (json!([item(json!(1), "a", 999)]), 422, "line_items"),
        (json!((0..101).map(|_| item(json!(1), "a", 10)).collect::<Vec<_>>()), 422, "line_items"),
    ] {
        let r = app.send(cap(items)).await;
        assert_eq!(r.status.as_u16(), status, "{}", r.text());
        assert_eq!(r.sources(), [source]);
    }
    assert_eq!((app.count("captures").await, app.count("ledger_entries").await), before);
    // A well-formed list is stored and shown as checked.
    let ok = app.send(cap(json!([item(json!(2), "Drehteil", 1000)]))).await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(ok.json()["line_items"][0]["quantity"], 2);
    let cid = ok.json()["capture_id"].as_str().unwrap().to_owned();
    let r = app
        .send(app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/refunds")).json(&json!({
            "amount": amount(100), "external_credit_note_number": "CN-L", "line_items": [item(json!(-3), "a", 100)]
        })))
        .await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["line_items[0].quantity"]);
    let r = app
        .send(app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/refunds")).json(&json!({
            "amount": amount(100), "external_credit_note_number": "CN-L", "line_items": [item(json!(1), "a", 100)]
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["line_items"][0]["title"], "a");
}

/// Names and other one-line texts with a line break, a tab or a direction override (U+202E)
/// would show as something else on the payment page, in PDFs and bank files: refused, naming the
/// field, and nothing is made. Multi-line texts keep their line breaks but not overrides.
#[tokio::test]
async fn names_with_line_breaks_or_direction_overrides_are_refused() {
    let (app, psp, mid) = setup().await;
    let before = app.snapshot().await;
    let cases = [
        ("/debtor_company/name", json!("Kunde GmbH\r\nBcc: victim@example.com"), "order.debtor_company.name"),
        ("/debtor_company/name", json!("Kunde \u{202E}HbmG fdp.exe"), "order.debtor_company.name"),
        ("/debtor_person/last_name", json!("Ein\u{2066}kauf"), "order.debtor_person.last_name"),
        ("/line_items/0/title", json!("Dreh\tmaschine"), "order.line_items[0].title"),
        ("/external_order_id", json!("SO-1\n001"), "order.external_order_id"),
    ];
    for (pointer, value, source) in cases {
        let mut order = order_body("anna@kunde.example", 11900);
        *order.pointer_mut(pointer).unwrap() = value;
        let r = app
            .send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&json!({
                "merchant_id": mid, "order": order, "locale": "en",
                "redirect_urls": {"accept_url": "https://shop.example/ok", "decline_url": "https://shop.example/no",
                                  "cancel_url": "https://shop.example/cancel"}
            })))
            .await;
        r.assert_error(422, "request_validation_error");
        assert!(r.sources().iter().any(|s| s == source), "{source}: {}", r.text());
    }
    let mut m = merchant_body("bidi");
    m["name"] = json!("Shop \u{202E}GmbH");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/merchants").json(&m)).await;
    assert_eq!(r.sources(), ["name"], "{}", r.text());
    assert_eq!(app.snapshot().await, before);
}
