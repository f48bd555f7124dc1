//! Each sandbox PSP's own clock (SPEC §11): advancing it runs what became due for that PSP only,
//! day by day; it never goes back; production has no sandbox helpers.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;
use crate::orders::{amount, created_order, setup};

async fn capture(app: &TestApp, psp: &TestPsp, mid: &str, number: &str) -> String {
    let oid = created_order(app, psp, mid).await;
    let c = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(6000), "external_invoice_number": number})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    c.json()["capture_id"].as_str().unwrap().to_owned()
}

fn today(v: &serde_json::Value) -> chrono::NaiveDate {
    v["today"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn advancing_one_psps_clock_makes_its_invoices_late_and_leaves_another_psp_alone() {
    let (app, psp, mid) = setup().await;
    let other = app.create_psp().await;
    let other_mid = app.create_merchant(&other, "other-shop").await["merchant_id"].as_str().unwrap().to_owned();
    let mine = capture(&app, &psp, &mid, "A-1").await;
    let theirs = capture(&app, &other, &other_mid, "B-1").await;
    let before = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json();
    let start = today(&before);

    // Due in 30 days: day 30 is still on time, day 31 is late.
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 30}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(today(&r.json()), start + chrono::Duration::days(30));
    assert_eq!(r.json()["ran"]["late_invoices"], 0);
    let to = (start + chrono::Duration::days(31)).to_string();
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"to": to}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["days"], 1);
    assert_eq!(r.json()["ran"]["late_invoices"], 1);
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{mine}"))).await.json();
    assert_eq!(c["state"], "late");

    // The event is dated on the PSP's clock, at the day it happened.
    let events = app.send(app.psp(&psp, Method::GET, "/v1/events?type=capture.late")).await.json();
    let created: chrono::DateTime<chrono::Utc> = events["data"][0]["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(created.date_naive(), start + chrono::Duration::days(31));

    // The other PSP: clock, invoice and events untouched, also after a background scan.
    netterms::service::clock::run_due_for_all(&app.services).await.unwrap();
    let other_clock = app.send(app.psp(&other, Method::GET, "/v1/sandbox/clock")).await.json();
    assert_eq!(today(&other_clock), start);
    let c = app.send(app.psp(&other, Method::GET, &format!("/v1/captures/{theirs}"))).await.json();
    assert_eq!(c["state"], "open");
    // Another PSP's invoice is unknown here, its document too.
    let r = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{theirs}/payment-information.pdf"))).await;
    r.assert_error(404, "resource_not_found");
    let events = app.send(app.psp(&other, Method::GET, "/v1/events?type=capture.late")).await.json();
    assert!(events["data"].as_array().unwrap().is_empty());

    // A capture made now is due 30 days from the PSP's date, not the deployment's.
    let later = capture(&app, &psp, &mid, "A-2").await;
    let c = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{later}"))).await.json();
    assert_eq!(c["due_date"], (start + chrono::Duration::days(61)).to_string());
    crate::orders::verify_ledger(&app).await;
}

#[tokio::test]
async fn the_clock_refuses_to_go_back_or_too_far_and_changes_nothing() {
    let (app, psp, _mid) = setup().await;
    let before = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json();
    let start = today(&before);
    let cases = [
        (json!({"days": 0}), "days"),
        (json!({"days": -1}), "days"),
        (json!({"days": 367}), "days"),
        (json!({"to": start.to_string()}), "to"),
        (json!({"to": (start - chrono::Duration::days(1)).to_string()}), "to"),
        (json!({"to": (start + chrono::Duration::days(367)).to_string()}), "to"),
        (json!({"to": "next tuesday"}), "to"),
        (json!({}), ""),
        (json!({"days": 1, "to": (start + chrono::Duration::days(1)).to_string()}), ""),
    ];
    for (body, field) in cases {
        let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&body)).await;
        r.assert_error(422, "request_validation_error");
        let expected: Vec<String> = if field.is_empty() { vec![] } else { vec![field.to_owned()] };
        assert_eq!(r.sources(), expected, "{body}");
    }
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": "1"}))).await;
    assert_eq!(r.status, 400);
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"weeks": 1}))).await;
    assert_eq!(r.status, 400);
    let after = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json();
    assert_eq!(today(&after), start);
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 366}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(today(&r.json()), start + chrono::Duration::days(366));
}

#[tokio::test]
async fn sandbox_helpers_are_forbidden_in_production() {
    let app = TestApp::spawn_with(|c| {
        c.environment = netterms::config::Environment::Production;
        c.public_url = Some("https://api.netterms.example".into());
    })
    .await;
    let psp = app.create_psp().await;
    let r = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await;
    r.assert_error(403, "forbidden");
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 1}))).await;
    r.assert_error(403, "forbidden");
    for path in ["/v1/sandbox/messages", "/v1/sandbox/mailbox"] {
        app.send(app.psp(&psp, Method::GET, path)).await.assert_error(403, "forbidden");
    }
}

#[tokio::test]
async fn two_advances_of_one_clock_do_not_run_at_once() {
    let (app, psp, _mid) = setup().await;
    let start = today(&app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json());
    let a = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 40})));
    let b = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 40})));
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    // Either both ran one after the other (80 days) or one was refused while the other ran.
    let end = today(&app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json());
    match statuses {
        [200, 200] => assert_eq!(end, start + chrono::Duration::days(80)),
        [200, 409] => assert_eq!(end, start + chrono::Duration::days(40)),
        other => panic!("unexpected {other:?}: {} {}", a.text(), b.text()),
    }
}
