use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::order_body;
use crate::helpers::*;

/// A confirmed (`created`) order of 11,900 and its id.
pub async fn created_order(app: &TestApp, psp: &TestPsp, mid: &str) -> String {
    created_order_paying(app, psp, mid, json!({"payment_method": "bank_transfer"})).await
}

/// An order authorized in the widget with `payment` (`payment_method`, and `iban` for direct
/// debit) and confirmed by the PSP.
pub async fn created_order_paying(app: &TestApp, psp: &TestPsp, mid: &str, payment: Value) -> String {
    created_order_with(app, psp, mid, order_body("anna@kunde.example", 11900), payment).await
}

/// [`created_order_paying`] for another order body.
pub async fn created_order_with(app: &TestApp, psp: &TestPsp, mid: &str, order: Value, payment: Value) -> String {
    let s = app
        .send(
            app.psp(psp, Method::POST, "/v1/widget-sessions")
                .json(&json!({"merchant_id": mid, "allowed_origins": ["https://shop.example"]})),
        )
        .await
        .json();
    let sid = s["client_secret"].as_str().unwrap();
    let a = app
        .send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{sid}/authorize"))).json(&{
            let mut body = json!({"order": order, "terms_accepted": true});
            body.as_object_mut().unwrap().extend(payment.as_object().unwrap().clone());
            body
        }))
        .await
        .json();
    assert_eq!(a["state"], "authorized", "{a}");
    let c = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/widget-sessions/{}/confirm-authorization", session_id_of(sid)))
                .json(&order),
        )
        .await;
    assert_eq!(c.json()["state"], "created");
    a["order_id"].as_str().unwrap().to_owned()
}

pub fn amount(gross: i64) -> Value {
    json!({"currency": "EUR", "gross": gross, "net": gross, "tax": 0})
}

pub async fn verify_ledger(app: &TestApp) {
    let mut conn = app.db().conn().await.unwrap();
    let diffs = netterms::store::ledger::verify(&mut conn).await.unwrap();
    assert!(diffs.is_empty(), "ledger differs: {diffs:?}");
}

pub async fn setup() -> (TestApp, TestPsp, String) {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    (app, psp, mid)
}

#[tokio::test]
async fn the_whole_life_of_an_order() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    let cap = |gross: i64, number: &str| {
        app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({
            "amount": amount(gross), "external_invoice_number": number, "invoice_url": "https://shop.example/inv.pdf",
            "shipping_info": {"carrier": "DHL", "tracking_number": "00340434"}
        }))
    };
    let c1 = app.send(cap(5000, "INV-1")).await;
    assert_eq!(c1.status, 201, "{}", c1.text());
    let c1 = c1.json();
    assert_eq!(c1["state"], "open");
    // What the capture answered is what is stored.
    let stored = app
        .send(app.psp(&psp, Method::GET, &format!("/v1/captures/{}", c1["capture_id"].as_str().unwrap())))
        .await
        .json();
    assert_eq!(stored, c1);
    assert_eq!(c1["outstanding"], 5000);
    // 150 bps of 5,000 plus the fixed 25.
    assert_eq!(c1["fee"], 100);
    let pi = &c1["payment_instructions"];
    assert!(netterms::domain::iban::validate(pi["iban"].as_str().unwrap()).is_ok());
    assert!(pi["reference"].as_str().unwrap().starts_with("RF"));
    let due = chrono::NaiveDate::parse_from_str(c1["due_date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!(due, (app.services.clock.now() + chrono::Duration::days(30)).date_naive());
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json();
    assert_eq!(order["state"], "partially_shipped");
    assert_eq!(order["uncaptured"], 6900);

    // Preconditions: over-capture and a duplicate invoice number change nothing.
    let before = app.count("captures").await;
    app.send(cap(6901, "INV-2")).await.assert_error(409, "state_conflict");
    app.send(cap(100, "INV-1")).await.assert_error(409, "resource_already_exists");
    assert_eq!(app.count("captures").await, before);
    assert_eq!(app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json()["captured"], 5000);

    let c2 = app.send(cap(6900, "INV-2")).await.json();
    assert_eq!(app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json()["state"], "shipped");
    let (id1, id2) = (c1["capture_id"].as_str().unwrap(), c2["capture_id"].as_str().unwrap());

    // Refund before payment lowers what the buyer owes.
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id1}/refunds"))
                .json(&json!({"amount": amount(1000), "reason": "damaged", "external_credit_note_number": "CN-1"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["owed_to_buyer"], 0);
    assert_eq!(r.json()["capture"]["outstanding"], 4000);
    // The buyer pays the merchant directly.
    let p = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id1}/confirm-payment"))
                .json(&json!({"amount": 4000, "external_payment_id": "P-1"})),
        )
        .await;
    assert_eq!(p.json()["state"], "paid");
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/captures/{id1}/confirm-payment"))
            .json(&json!({"amount": 1, "external_payment_id": "P-2"})),
    )
    .await
    .assert_error(409, "state_conflict");
    // A refund after payment is owed back to the buyer.
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id1}/refunds"))
                .json(&json!({"amount": amount(500), "external_credit_note_number": "CN-2"})),
        )
        .await;
    assert_eq!(r.json()["owed_to_buyer"], 500);
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/captures/{id1}/refunds"))
            .json(&json!({"amount": amount(3501), "external_credit_note_number": "CN-3"})),
    )
    .await
    .assert_error(409, "state_conflict");

    // Longer terms only, on unpaid invoices.
    let e = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id2}/extend-duration")).json(&json!({"duration": 60})),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["duration"], 60);
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/captures/{id2}/extend-duration")).json(&json!({"duration": 45})),
    )
    .await
    .assert_error(409, "state_conflict");
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/captures/{id1}/extend-duration")).json(&json!({"duration": 55})),
    )
    .await
    .assert_error(409, "state_conflict");

    let p = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id2}/confirm-payment"))
                .header("idempotency-key", "pay-id2")
                .json(&json!({"amount": 6900})),
        )
        .await;
    assert_eq!(p.json()["state"], "paid");
    assert_eq!(app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json()["state"], "complete");
    let caps = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}/captures"))).await.json();
    assert_eq!(caps["data"].as_array().unwrap().len(), 2);
    verify_ledger(&app).await;

    // Every step announced itself, with a type and payload the OpenAPI document's webhooks describe.
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events?limit=100")).await.json();
    let spec = app.send(app.client.get(app.url("/openapi.json"))).await.json();
    for e in events["data"].as_array().unwrap() {
        let t = e["type"].as_str().unwrap();
        let body = &spec["webhooks"][t]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["properties"]["type"]["const"], t, "{t} is not in the webhook catalogue");
        let name = body["properties"]["data"]["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        let schema = &spec["components"]["schemas"][name];
        for field in schema["required"].as_array().unwrap() {
            assert!(e["data"].get(field.as_str().unwrap()).is_some(), "{t} lacks {field}: {}", e["data"]);
        }
    }
    let types: Vec<_> =
        events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    for t in [
        "capture.created",
        "capture.updated",
        "order.partially_shipped",
        "order.shipped",
        "refund.created",
        "capture.paid",
        "order.complete",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing in {types:?}");
    }
}

#[tokio::test]
async fn cancel_releases_the_rest() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
            .json(&json!({"amount": amount(4000), "external_invoice_number": "A"})),
    )
    .await;
    let o = app.send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/cancel"))).await;
    assert_eq!(o.status, 200, "{}", o.text());
    let o = o.json();
    assert_eq!(o["state"], "shipped");
    assert_eq!(o["canceled"], 7900);
    assert_eq!(o["uncaptured"], 0);
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
            .json(&json!({"amount": amount(1), "external_invoice_number": "B"})),
    )
    .await
    .assert_error(409, "state_conflict");
    // A retried cancel answers the order as it is, with no second event.
    let events = app.count("events").await;
    let again = app.send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/cancel"))).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["state"], "shipped");
    assert_eq!(app.count("events").await, events);

    let oid2 = created_order(&app, &psp, &mid).await;
    let o = app.send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid2}/cancel"))).await.json();
    assert_eq!(o["state"], "canceled");
    // Another PSP sees none of it.
    let other = app.create_psp().await;
    app.send(app.psp(&other, Method::POST, &format!("/v1/orders/{oid}/cancel")))
        .await
        .assert_error(404, "resource_not_found");
    app.send(app.psp(&other, Method::GET, &format!("/v1/orders/{oid}/captures")))
        .await
        .assert_error(404, "resource_not_found");
    verify_ledger(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_captures_never_exceed_the_authorization() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    let results = futures::future::join_all((0..50).map(|i| {
        app.send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({
            "amount": amount(1000), "external_invoice_number": format!("INV-{i}")
        })))
    }))
    .await;
    let ok = results.iter().filter(|r| r.status == 201).count();
    assert!(results.iter().all(|r| r.status == 201 || r.codes() == ["state_conflict"]));
    assert_eq!(ok, 11, "11 × 1,000 fit into 11,900");
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json();
    assert_eq!(order["captured"], 11_000);
    assert_eq!(app.count("captures").await, 11);
    verify_ledger(&app).await;

    // Concurrent refunds of one capture never exceed it.
    let cap = results.iter().find(|r| r.status == 201).unwrap().json();
    let id = cap["capture_id"].as_str().unwrap();
    let refunds = futures::future::join_all((0..20).map(|i| {
        app.send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id}/refunds"))
                .json(&json!({"amount": amount(100), "external_credit_note_number": format!("CN-{i}")})),
        )
    }))
    .await;
    let ok = refunds.iter().filter(|r| r.status == 201).count();
    assert!(refunds.iter().all(|r| r.status == 201 || r.codes() == ["state_conflict"]));
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{id}"))).await.json();
    assert_eq!(c["refunded"], i64::try_from(ok).unwrap() * 100);
    assert!(c["refunded"].as_i64().unwrap() <= 1000);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn one_invoice_number_raced_over_several_orders_is_captured_once() {
    let (app, psp, mid) = setup().await;
    let mut orders = Vec::new();
    for _ in 0..8 {
        orders.push(created_order(&app, &psp, &mid).await);
    }
    // The same merchant's invoice number on eight orders at once: the number's unique key decides.
    let results = futures::future::join_all(orders.iter().map(|oid| {
        app.send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(1000), "external_invoice_number": "SAME-1"})),
        )
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.status == 201).count(), 1);
    for r in results.iter().filter(|r| r.status != 201) {
        r.assert_error(409, "resource_already_exists");
    }
    assert_eq!(app.count("captures").await, 1);
    let mut captured = 0;
    for oid in &orders {
        captured += app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json()["captured"]
            .as_i64()
            .unwrap();
    }
    assert_eq!(captured, 1000, "only the winning order's amount is captured");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn ledger_verify_names_a_difference() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
            .json(&json!({"amount": amount(4000), "external_invoice_number": "A"})),
    )
    .await;
    verify_ledger(&app).await;
    // A capture whose amount changes behind the ledger's back is found.
    app.execute("UPDATE captures SET gross = gross + 1, net = net + 1").await;
    let mut conn = app.db().conn().await.unwrap();
    let diffs = netterms::store::ledger::verify(&mut conn).await.unwrap();
    assert!(diffs.iter().any(|(what, _, _)| what.starts_with("buyer_receivable:")), "{diffs:?}");
    assert!(diffs.iter().any(|(what, _, _)| what.starts_with("psp_payable:")), "{diffs:?}");
}

#[tokio::test]
async fn list_and_update_orders() {
    let (app, psp, mid) = setup().await;
    let first = created_order(&app, &psp, &mid).await;
    let second = created_order(&app, &psp, &mid).await;
    let page = app.send(app.psp(&psp, Method::GET, "/v1/orders?limit=1")).await.json();
    assert_eq!(page["data"][0]["order_id"], second.as_str());
    assert_eq!(page["has_more"], true);
    let page =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/orders?limit=1&starting_after={second}"))).await.json();
    assert_eq!(page["data"][0]["order_id"], first.as_str());
    let filtered =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/orders?merchant_id={mid}&state=created"))).await.json();
    assert_eq!(filtered["data"].as_array().unwrap().len(), 2);
    let none = app.send(app.psp(&psp, Method::GET, "/v1/orders?state=shipped")).await.json();
    assert_eq!(none["data"], json!([]));
    app.send(app.psp(&psp, Method::GET, "/v1/orders?state=flying")).await.assert_error(400, "request_invalid");
    let other = app.create_psp().await;
    assert_eq!(app.send(app.psp(&other, Method::GET, "/v1/orders")).await.json()["data"], json!([]));
    app.send(app.psp(&other, Method::PATCH, &format!("/v1/orders/{first}")).json(&json!({"duration": 45})))
        .await
        .assert_error(404, "resource_not_found");

    let patch = |body: Value| app.psp(&psp, Method::PATCH, &format!("/v1/orders/{first}")).json(&body);
    app.send(patch(json!({"external_order_id": "OTHER"}))).await.assert_error(409, "state_conflict");
    let o = app.send(patch(json!({"amount": {"gross": 10000, "net": 8403, "tax": 1597}, "duration": 45}))).await;
    assert_eq!(o.status, 200, "{}", o.text());
    let o = o.json();
    assert_eq!(o["amount"]["gross"], 10000);
    assert_eq!(o["duration"], 45);
    assert_eq!(o["uncaptured"], 10000);
    app.send(patch(json!({"amount": {"gross": 10001, "net": 8404, "tax": 1597}})))
        .await
        .assert_error(409, "state_conflict");
    app.send(patch(json!({"duration": 3}))).await.assert_error(422, "request_validation_error");
    app.send(patch(json!({"duration": "long"}))).await.assert_error(400, "request_invalid");

    let c = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{first}/captures"))
                .json(&json!({"amount": amount(6000), "external_invoice_number": "I"})),
        )
        .await
        .json();
    assert_eq!(c["duration"], 45);
    app.send(patch(json!({"duration": 60}))).await.assert_error(409, "state_conflict");
    app.send(patch(json!({"amount": {"gross": 5999, "net": 5999, "tax": 0}})))
        .await
        .assert_error(409, "state_conflict");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn overdue_invoices_become_late_until_extended() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    let c = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(6000), "external_invoice_number": "I"})),
        )
        .await
        .json();
    let id = c["capture_id"].as_str().unwrap();
    assert_eq!(netterms::service::clock::run_due_for_all(&app.services).await.unwrap().late_invoices, 0);
    app.services.clock.advance(chrono::Duration::days(32));
    assert_eq!(netterms::service::clock::run_due_for_all(&app.services).await.unwrap().late_invoices, 1);
    assert_eq!(app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{id}"))).await.json()["state"], "late");
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events?type=capture.late")).await.json();
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    let e = app
        .send(app.psp(&psp, Method::POST, &format!("/v1/captures/{id}/extend-duration")).json(&json!({"duration": 60})))
        .await;
    assert_eq!(e.json()["state"], "open");
}

#[tokio::test]
async fn bad_input_to_order_endpoints_changes_nothing() {
    let (app, psp, mid) = setup().await;
    let other = app.create_psp().await;
    let oid = created_order(&app, &psp, &mid).await;
    let c = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(1000), "external_invoice_number": "I"})),
        )
        .await
        .json();
    let cid = c["capture_id"].as_str().unwrap().to_owned();
    let before = (app.count("captures").await, app.count("refunds").await, app.count("ledger_entries").await);

    let r = app.send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["amount", "external_invoice_number"]);
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": {"gross": 10, "net": 5, "tax": 1}, "external_invoice_number": "J"})),
        )
        .await;
    assert_eq!(r.sources(), ["amount.gross"]);
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .header("content-type", "application/json")
                .body("{\"amount\":"),
        )
        .await;
    r.assert_error(400, "request_invalid");
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/refunds"))
                .json(&json!({"amount": {"gross": "ten"}})),
        )
        .await;
    r.assert_error(400, "request_invalid");
    assert_eq!(r.sources(), ["amount.gross"]);
    let r =
        app.send(app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/confirm-payment")).json(&json!({}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["amount", "external_payment_id"]);
    app.send(app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/confirm-payment")).json(&json!({"amount": 0})))
        .await
        .assert_error(422, "request_validation_error");
    app.send(
        app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/extend-duration")).json(&json!({"duration": 500})),
    )
    .await
    .assert_error(422, "request_validation_error");

    // Another PSP's order and capture are unknown to it, on every route.
    for (m, path, body) in [
        (
            Method::POST,
            format!("/v1/orders/{oid}/captures"),
            json!({"amount": amount(1), "external_invoice_number": "X"}),
        ),
        (Method::GET, format!("/v1/orders/{oid}"), json!(null)),
        (Method::GET, format!("/v1/captures/{cid}"), json!(null)),
        (
            Method::POST,
            format!("/v1/captures/{cid}/refunds"),
            json!({"amount": amount(1), "external_credit_note_number": "X"}),
        ),
        (Method::POST, format!("/v1/captures/{cid}/confirm-payment"), json!({"amount": 1, "external_payment_id": "X"})),
        (Method::POST, format!("/v1/captures/{cid}/extend-duration"), json!({"duration": 60})),
    ] {
        let req = app.psp(&other, m, &path);
        let req = if body.is_null() { req } else { req.json(&body) };
        app.send(req).await.assert_error(404, "resource_not_found");
    }
    let after = (app.count("captures").await, app.count("refunds").await, app.count("ledger_entries").await);
    assert_eq!(after, before);
    verify_ledger(&app).await;
}
