//! Money-moving POSTs are safe to retry, with or without an Idempotency-Key; keys are fenced;
//! concurrent settlements complete their order; limits hold under concurrency.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::checkout::order_body;
use crate::helpers::*;
use crate::orders::{amount, created_order, setup, verify_ledger};

async fn capture(app: &TestApp, psp: &TestPsp, oid: &str, gross: i64, number: &str) -> String {
    let r = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(gross), "external_invoice_number": number})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["capture_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_refund_retried_without_a_key_makes_one_credit_note() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    let cid = capture(&app, &psp, &oid, 5000, "INV-1").await;
    let cid2 = capture(&app, &psp, &oid, 5000, "INV-2").await;
    let refund =
        |cid: &str, body: Value| app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/refunds")).json(&body);
    let body = json!({"amount": amount(1000), "external_credit_note_number": "CN-1", "reason": "damaged"});

    let first = app.send(refund(&cid, body.clone())).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let entries = app.count("ledger_entries").await;
    let events = app.count("events").await;
    let again = app.send(refund(&cid, body.clone())).await;
    assert_eq!(again.status, 200, "the same body again answers the existing refund: {}", again.text());
    assert_eq!(again.json()["refund_id"], first.json()["refund_id"]);
    assert_eq!(again.json()["capture"]["refunded"], 1000);
    assert_eq!(app.count("refunds").await, 1);
    assert_eq!(app.count("ledger_entries").await, entries);
    assert_eq!(app.count("events").await, events);

    // The number with another body, or on another capture of the merchant: 409, nothing changes.
    let other = json!({"amount": amount(999), "external_credit_note_number": "CN-1", "reason": "damaged"});
    app.send(refund(&cid, other)).await.assert_error(409, "resource_already_exists");
    app.send(refund(&cid2, body.clone())).await.assert_error(409, "resource_already_exists");
    // No number at all: 422.
    let r = app.send(refund(&cid, json!({"amount": amount(10)}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["external_credit_note_number"]);
    assert_eq!(app.count("refunds").await, 1);
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{cid}"))).await.json();
    assert_eq!(c["refunded"], 1000);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn confirm_payment_retried_records_the_payment_once() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    let cid = capture(&app, &psp, &oid, 11900, "INV-1").await;
    let confirm = |body: Value| app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/confirm-payment")).json(&body);

    // Neither key nor external id: refused, since a retry could not be recognised.
    let r = app.send(confirm(json!({"amount": 2000}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["external_payment_id"]);

    let body = json!({"amount": 2000, "external_payment_id": "PAY-1"});
    assert_eq!(app.send(confirm(body.clone())).await.status, 200);
    let entries = app.count("ledger_entries").await;
    let again = app.send(confirm(body)).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["paid_to_merchant"], 2000, "not 4,000");
    assert_eq!(app.count("ledger_entries").await, entries);
    app.send(confirm(json!({"amount": 3000, "external_payment_id": "PAY-1"})))
        .await
        .assert_error(409, "resource_already_exists");

    // With an Idempotency-Key instead, the key replays.
    let keyed = || {
        app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/confirm-payment"))
            .header("idempotency-key", "pay-2")
            .json(&json!({"amount": 500}))
    };
    let a = app.send(keyed()).await;
    let b = app.send(keyed()).await;
    assert_eq!(a.status, 200);
    assert_eq!(b.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(a.bytes, b.bytes);
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{cid}"))).await.json();
    assert_eq!(c["paid_to_merchant"], 2500);
    assert_eq!(app.count("direct_payments").await, 2);
    verify_ledger(&app).await;
}

/// Holds a row lock on a capture from a connection of its own, as a slow transaction would.
enum Holder {
    Pg(sqlx::PgConnection),
    Lite(sqlx::SqliteConnection),
}

async fn hold_capture_lock(app: &TestApp, cid: &str) -> Holder {
    use sqlx::Connection;
    let url = app.services.config.database_url.clone();
    let id: uuid::Uuid = cid.parse().unwrap();
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut c).await.unwrap();
        sqlx::query("SELECT id FROM captures WHERE id = $1 FOR UPDATE").bind(id).execute(&mut c).await.unwrap();
        Holder::Pg(c)
    } else {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
        Holder::Lite(c)
    }
}

async fn release(h: Holder) {
    match h {
        Holder::Pg(mut c) => {
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        }
        Holder::Lite(mut c) => {
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_whose_claim_was_taken_over_yields_one_effect() {
    // The claim lasts one second and statements wait without bound: the first request outlives
    // its claim behind a lock, a retry takes the key over, and only one of them may commit.
    let app = TestApp::spawn_with(|c| {
        c.idempotency_lock_secs = 1;
        c.db_statement_timeout_ms = Some(0);
    })
    .await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let oid = created_order(&app, &psp, &mid).await;
    let cid = capture(&app, &psp, &oid, 5000, "INV-1").await;
    // A payment confirmed by its key alone: nothing but the key tells the two requests apart.
    let send = || {
        let req = app
            .psp(&psp, Method::POST, &format!("/v1/captures/{cid}/confirm-payment"))
            .header("idempotency-key", "slow-payment")
            .json(&json!({"amount": 700}));
        let app_client = req;
        tokio::spawn(async move {
            let r = app_client.send().await.unwrap();
            (r.status().as_u16(), r.headers().clone(), r.bytes().await.unwrap().to_vec())
        })
    };
    let holder = hold_capture_lock(&app, &cid).await;
    let first = send();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = send();
    tokio::time::sleep(Duration::from_millis(500)).await;
    release(holder).await;
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    let statuses = [a.0, b.0];
    assert!(
        statuses.contains(&200) && statuses.iter().all(|s| [200, 409].contains(s)),
        "one request recorded the payment, the other was fenced out (409) or replayed it: {statuses:?}"
    );
    assert_eq!(app.count("direct_payments").await, 1, "one key, one effect");
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{cid}"))).await.json();
    assert_eq!(c["paid_to_merchant"], 700);
    // The key now replays the effect that committed.
    let winner = if a.0 == 200 && a.1.get("idempotent-replayed").is_none() { &a } else { &b };
    let replay = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/confirm-payment"))
                .header("idempotency-key", "slow-payment")
                .json(&json!({"amount": 700})),
        )
        .await;
    assert_eq!(replay.bytes, winner.2);
    verify_ledger(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settling_two_captures_at_once_always_completes_the_order() {
    let (app, psp, mid) = setup().await;
    let mut orders = Vec::new();
    for i in 0..10 {
        let oid = created_order(&app, &psp, &mid).await;
        let a = capture(&app, &psp, &oid, 5950, &format!("A-{i}")).await;
        let b = capture(&app, &psp, &oid, 5950, &format!("B-{i}")).await;
        orders.push((oid, a, b));
    }
    let refunds = orders.iter().flat_map(|(_, a, b)| [a.clone(), b.clone()]).map(|cid| {
        app.send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/refunds"))
                .json(&json!({"amount": amount(5950), "external_credit_note_number": format!("CN-{cid}")})),
        )
    });
    let results = futures::future::join_all(refunds).await;
    assert!(results.iter().all(|r| r.status == 201), "{:?}", results.iter().map(|r| r.text()).collect::<Vec<_>>());
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events?limit=100")).await.json();
    for (oid, _, _) in &orders {
        let o = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await.json();
        assert_eq!(o["state"], "complete", "order {oid} left {}", o["state"]);
        let completes = events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "order.complete" && e["data"]["order_id"] == oid.as_str())
            .count();
        assert_eq!(completes, 1);
    }
    verify_ledger(&app).await;
}

#[tokio::test]
async fn order_changes_keep_to_states_terms_and_events() {
    let (app, psp, mid) = setup().await;
    // Lowering the amount to exactly what is captured ships the order.
    let oid = created_order(&app, &psp, &mid).await;
    let cid = capture(&app, &psp, &oid, 4000, "INV-1").await;
    let patch = |body: Value| app.psp(&psp, Method::PATCH, &format!("/v1/orders/{oid}")).json(&body);
    let o = app.send(patch(json!({"amount": amount(4000)}))).await;
    assert_eq!(o.status, 200, "{}", o.text());
    assert_eq!(o.json()["state"], "shipped");

    // Durations keep to the merchant's terms (14–60 days).
    let oid2 = created_order(&app, &psp, &mid).await;
    let r = app.send(app.psp(&psp, Method::PATCH, &format!("/v1/orders/{oid2}")).json(&json!({"duration": 90}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["duration"]);
    let ext = |d: i64| {
        app.psp(&psp, Method::POST, &format!("/v1/captures/{cid}/extend-duration")).json(&json!({"duration": d}))
    };
    app.send(ext(61)).await.assert_error(422, "request_validation_error");
    let e = app.send(ext(60)).await;
    assert_eq!(e.status, 200, "{}", e.text());

    // Cancelling the rest of a partly captured order says it is shipped too; a longer term is announced.
    let oid3 = created_order(&app, &psp, &mid).await;
    capture(&app, &psp, &oid3, 1000, "INV-3").await;
    app.send(app.psp(&psp, Method::POST, &format!("/v1/orders/{oid3}/cancel"))).await;
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events?limit=100")).await.json();
    let of = |t: &str, key: &str, id: &str| {
        events["data"].as_array().unwrap().iter().filter(|e| e["type"] == t && e["data"][key] == id).count()
    };
    assert_eq!(of("order.canceled", "order_id", &oid3), 1);
    assert_eq!(of("order.shipped", "order_id", &oid3), 1);
    assert_eq!(of("order.shipped", "order_id", &oid), 1);
    assert_eq!(of("capture.updated", "capture_id", &cid), 1);
    verify_ledger(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merchant_and_psp_limits_hold_under_concurrent_checkouts() {
    for merchant_limit in [true, false] {
        let app = TestApp::spawn_with(|c| {
            c.credit.min_order_amount = 1;
            if merchant_limit {
                c.credit.merchant_limit = Some(10_000);
            } else {
                c.credit.psp_limit = Some(10_000);
            }
        })
        .await;
        let psp = app.create_psp().await;
        let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
        let mut sessions = Vec::new();
        for _ in 0..12 {
            let r = app
                .send(
                    app.psp(&psp, Method::POST, "/v1/widget-sessions")
                        .json(&json!({"merchant_id": mid, "allowed_origins": ["https://shop.example"]})),
                )
                .await;
            sessions.push(r.json()["client_secret"].as_str().unwrap().to_owned());
        }
        // Twelve different buyers at once.
        let results = futures::future::join_all(sessions.iter().enumerate().map(|(i, sid)| {
            let mut order = order_body("anna@kunde.example", 3000);
            order["debtor_company"]["name"] = json!(format!("Kunde {i} GmbH"));
            order["debtor_company"]["registration_number"] = json!(format!("HRB {}", 1000 + i));
            app.send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{sid}/authorize"))).json(&json!({
                "order": order, "payment_method": "bank_transfer", "terms_accepted": true
            })))
        }))
        .await;
        let approved = results.iter().filter(|r| r.json()["state"] == "authorized").count();
        assert_eq!(approved, 3, "10,000 fits three orders of 3,000 (merchant limit: {merchant_limit})");
        assert_eq!(app.count("buyers").await, 12);
    }
}

/// A database that cannot be reached is not the client's conflict: every request is answered
/// 503 `service_unavailable` with `Retry-After`, so a client retries instead of giving up (the
/// soak's driver gave up on imports answered 409 during an outage).
#[tokio::test]
async fn an_unreachable_database_is_answered_503_with_retry_after() {
    let (app, psp, mid) = setup().await;
    let oid = created_order(&app, &psp, &mid).await;
    app.db().close().await;
    let capture = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(11900), "external_invoice_number": "DOWN-1"})),
        )
        .await;
    let read = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{oid}"))).await;
    let import = app
        .send(
            app.admin(Method::POST, "/admin/v1/bank-statements")
                .header("content-type", "application/xml")
                .body(crate::camt::camt053(crate::camt::Dialect::V02, "S-DOWN", &[])),
        )
        .await;
    for r in [&capture, &read, &import] {
        r.assert_error(503, "service_unavailable");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
}
