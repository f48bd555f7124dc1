//! Disputes (SPEC §10) on the sandbox clock: opened in the sandbox and by an operator, defended by
//! the PSP with checked documents, closed as resolved or chargeback (by the operator or by the
//! deadline), the ledger and the invoice following, and races that close a dispute once.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::orders::verify_ledger;
use crate::payments::{capture_of, events_of, get_capture};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn id(v: &Value) -> String {
    // Named like every other id; `id` stays for older clients.
    assert_eq!(v["dispute_id"], v["id"], "{v}");
    v["dispute_id"].as_str().unwrap().to_owned()
}

/// The PSP's sandbox clock.
async fn psp_now(app: &TestApp, psp: &TestPsp) -> chrono::DateTime<chrono::Utc> {
    app.send(app.psp(psp, Method::GET, "/v1/sandbox/clock")).await.json()["now"].as_str().unwrap().parse().unwrap()
}

async fn open(app: &TestApp, psp: &TestPsp, body: Value) -> Resp {
    app.send(app.psp(psp, Method::POST, "/v1/sandbox/disputes").json(&body)).await
}

async fn defend(app: &TestApp, psp: &TestPsp, dispute: &str, body: Value) -> Resp {
    app.send(app.psp(psp, Method::POST, &format!("/v1/disputes/{dispute}/defend")).json(&body)).await
}

async fn close(app: &TestApp, dispute: &str, result: &str) -> Resp {
    app.send(app.admin(Method::POST, &format!("/admin/v1/disputes/{dispute}/close")).json(&json!({"result": result})))
        .await
}

/// What the disputes, their documents and the invoices hold: bad input must change none of it.
async fn snapshot(app: &TestApp) -> (i64, i64, i64) {
    (app.count("disputes").await, app.count("dispute_documents").await, app.count("ledger_entries").await)
}

#[tokio::test]
async fn disputes_are_opened_defended_resolved_and_charged_back() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let other = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = capture_of(&app, &psp, &mid, "D-A", 11900).await;
    let b = capture_of(&app, &psp, &mid, "D-B", 11900).await;
    let a_id = a["capture_id"].as_str().unwrap().to_owned();
    let b_id = b["capture_id"].as_str().unwrap().to_owned();

    // Bad openings change nothing.
    let before = snapshot(&app).await;
    for body in [
        json!({"capture_id": a_id}),
        json!({"capture_id": a_id, "reason_code": "changed_my_mind"}),
        json!({"capture_id": a_id, "reason_code": "return", "amount": 0}),
        json!({"capture_id": a_id, "reason_code": "return", "amount": 11901}),
        json!({"capture_id": a_id, "reason_code": "return", "deadline_days": 0}),
        json!({"reason_code": "return"}),
    ] {
        open(&app, &psp, body).await.assert_error(422, "request_validation_error");
    }
    open(&app, &other, json!({"capture_id": a_id, "reason_code": "return"}))
        .await
        .assert_error(404, "resource_not_found");
    open(&app, &psp, json!({"capture_id": a_id, "reason_code": 5})).await.assert_error(400, "request_invalid");
    // The operator's opening checks the same way; an unknown capture is 404.
    let admin_open = |body: Value| app.send(app.admin(Method::POST, "/admin/v1/disputes").json(&body));
    admin_open(json!({"reason_code": "return"})).await.assert_error(422, "request_validation_error");
    admin_open(json!({"capture_id": a_id, "reason_code": "return", "deadline_days": 91}))
        .await
        .assert_error(422, "request_validation_error");
    admin_open(json!({"capture_id": uuid::Uuid::now_v7(), "reason_code": "return"}))
        .await
        .assert_error(404, "resource_not_found");
    admin_open(json!({"capture_id": a_id, "reason_code": "return", "extra": 1}))
        .await
        .assert_error(400, "request_invalid");
    assert_eq!(snapshot(&app).await, before);

    // Opened in the sandbox: 12 days to defend, dunning paused, `dispute.opened`.
    let r = open(&app, &psp, json!({"capture_id": a_id, "reason_code": "faulty_goods", "description": "defekt"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let d = r.json();
    let now = psp_now(&app, &psp).await;
    let deadline: chrono::DateTime<chrono::Utc> = d["deadline"].as_str().unwrap().parse().unwrap();
    let created: chrono::DateTime<chrono::Utc> = d["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(deadline - created, chrono::Duration::days(12), "{d}");
    assert!(created <= now, "on the PSP's clock");
    assert_eq!(
        (d["state"].as_str(), d["amount"].as_i64(), d["opened_by"].as_str()),
        (Some("open"), Some(11900), Some("sandbox"))
    );
    let dispute = id(&d);
    assert_eq!(events_of(&app, &psp, "dispute.opened").await[0]["dispute_id"], dispute.as_str());
    assert!(events_of(&app, &psp, "dunning.paused").await.iter().any(|e| e["capture_id"] == a_id.as_str()));
    open(&app, &psp, json!({"capture_id": a_id, "reason_code": "return"})).await.assert_error(409, "state_conflict");
    // The PSP reads its own; another PSP sees nothing of it.
    let list = app.send(app.psp(&psp, Method::GET, "/v1/disputes?state=open")).await.json();
    assert_eq!(list["data"][0]["dispute_id"], dispute.as_str(), "{list}");
    let theirs = app.send(app.psp(&other, Method::GET, "/v1/disputes")).await.json();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    for (m, path) in
        [(Method::GET, format!("/v1/disputes/{dispute}")), (Method::POST, format!("/v1/disputes/{dispute}/defend"))]
    {
        app.send(app.psp(&other, m, &path).json(&json!({"reason": "x"}))).await.assert_error(404, "resource_not_found");
    }

    // Documents of the wrong type or size, or too many: 422, nothing stored.
    let before = snapshot(&app).await;
    let big = vec![b'%'; 10 * 1024 * 1024 + 1];
    let mut big_pdf = b"%PDF-1.4\n".to_vec();
    big_pdf.resize(10 * 1024 * 1024 + 1, b' ');
    big_pdf.extend_from_slice(b"\n%%EOF\n");
    let doc = |c: &[u8]| json!({"content": b64(c)});
    for docs in [
        vec![doc(b"hello, this is text")],
        vec![doc(&big)],
        vec![doc(&big_pdf)],
        vec![doc(b"%PDF-1.4 but never ends")],
        vec![json!({"content": "!!not base64!!"})],
        vec![json!({"content": b64(PDF), "content_type": "image/png"})],
        vec![json!({"name": "x.pdf"})],
        vec![doc(PDF), doc(PDF), doc(PDF), doc(PDF)],
    ] {
        defend(&app, &psp, &dispute, json!({"reason": "geliefert", "documents": docs}))
            .await
            .assert_error(422, "request_validation_error");
    }
    defend(&app, &psp, &dispute, json!({"documents": [doc(PDF)]})).await.assert_error(422, "request_validation_error");
    // Not JSON, or not sent as JSON, or of the wrong shape: 400.
    let path = format!("/v1/disputes/{dispute}/defend");
    let raw = |ct: &'static str, body: &'static str| {
        app.send(app.psp(&psp, Method::POST, &path).header("content-type", ct).body(body))
    };
    raw("application/json", "{not json").await.assert_error(400, "request_invalid");
    raw("text/plain", "{\"reason\": \"x\"}").await.assert_error(400, "request_invalid");
    raw("application/json", "{\"reason\": \"x\", \"documents\": \"all\"}").await.assert_error(400, "request_invalid");
    assert_eq!(snapshot(&app).await, before);
    assert!(app.send(app.psp(&psp, Method::GET, &format!("/v1/disputes/{dispute}"))).await.json()["defense"].is_null());

    // Defended once, with a PDF and a PNG; operators fetch the documents.
    let body = json!({"reason": "Zugestellt am 3. März", "documents": [
        {"name": "lieferschein.pdf", "content_type": "application/pdf", "content": b64(PDF)},
        {"name": "foto.png", "content": b64(PNG)}]});
    let r = defend(&app, &psp, &dispute, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let docs = v["defense"]["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2, "{v}");
    assert_eq!(
        (docs[1]["content_type"].as_str(), docs[1]["size"].as_i64()),
        (Some("image/png"), Some(PNG.len() as i64))
    );
    let got = app.send(app.admin(Method::GET, &format!("/admin/v1/disputes/{dispute}/documents/1"))).await;
    assert_eq!((got.status.as_u16(), got.bytes.as_ref()), (200, PDF));
    assert_eq!(got.headers["content-type"], "application/pdf");
    app.send(app.admin(Method::GET, &format!("/admin/v1/disputes/{dispute}/documents/3")))
        .await
        .assert_error(404, "resource_not_found");
    defend(&app, &psp, &dispute, body).await.assert_error(409, "state_conflict");

    // Resolved: the buyer owes the invoice as before, dunning resumes, `dispute.closed`.
    close(&app, &dispute, "won").await.assert_error(422, "request_validation_error");
    let r = close(&app, &dispute, "resolved").await;
    assert_eq!((r.status.as_u16(), r.json()["state"].as_str()), (200, Some("resolved")), "{}", r.text());
    close(&app, &dispute, "chargeback").await.assert_error(409, "state_conflict");
    close(&app, &uuid::Uuid::now_v7().to_string(), "resolved").await.assert_error(404, "resource_not_found");
    defend(&app, &psp, &dispute, json!({"reason": "noch etwas"})).await.assert_error(409, "state_conflict");
    let c = get_capture(&app, &psp, &a_id).await;
    assert_eq!((c["outstanding"].as_i64(), c["charged_back"].as_i64()), (Some(11900), Some(0)));
    let closed = events_of(&app, &psp, "dispute.closed").await;
    assert_eq!((closed[0]["state"].as_str(), closed[0]["charged_back"].as_i64()), (Some("resolved"), Some(0)));
    assert!(events_of(&app, &psp, "dunning.resumed").await.iter().any(|e| e["capture_id"] == a_id.as_str()));

    // An operator's dispute of part of B, charged back: the buyer owes that no longer.
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/disputes").json(&json!({
            "capture_id": b_id, "reason_code": "goods_not_received", "amount": 10000, "deadline_days": 14})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let db = r.json();
    assert_eq!((db["opened_by"].as_str(), db["psp_id"].as_str()), (Some("operator"), Some(psp.psp_id.as_str())));
    let r = close(&app, &id(&db), "chargeback").await;
    assert_eq!((r.json()["charged_back"].as_i64(), r.json()["closed_by"].as_str()), (Some(10000), Some("operator")));
    let c = get_capture(&app, &psp, &b_id).await;
    assert_eq!(
        (c["state"].as_str(), c["outstanding"].as_i64(), c["charged_back"].as_i64()),
        (Some("open"), Some(1900), Some(10000)),
        "{c}"
    );
    verify_ledger(&app).await;

    // Undefended past its deadline: a chargeback by itself, the invoice owes nothing more.
    let r = open(&app, &psp, json!({"capture_id": a_id, "reason_code": "return", "deadline_days": 1})).await;
    let late = id(&r.json());
    let adv = crate::dunning::advance_to(&app, &psp, (now + chrono::Duration::days(2)).date_naive()).await;
    assert_eq!(adv["ran"]["disputes_charged_back"], 1, "{adv}");
    let v = app.send(app.psp(&psp, Method::GET, &format!("/v1/disputes/{late}"))).await.json();
    assert_eq!(
        (v["state"].as_str(), v["closed_by"].as_str(), v["charged_back"].as_i64()),
        (Some("chargeback"), Some("deadline"), Some(11900))
    );
    defend(&app, &psp, &late, json!({"reason": "zu spät"})).await.assert_error(409, "state_conflict");
    let c = get_capture(&app, &psp, &a_id).await;
    assert_eq!((c["state"].as_str(), c["outstanding"].as_i64()), (Some("canceled"), Some(0)), "{c}");
    assert!(events_of(&app, &psp, "capture.canceled").await.iter().any(|e| e["capture_id"] == a_id.as_str()));
    open(&app, &psp, json!({"capture_id": a_id, "reason_code": "return"})).await.assert_error(409, "state_conflict");
    let all = app.send(app.admin(Method::GET, "/admin/v1/disputes?state=chargeback")).await.json();
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn a_defence_in_time_holds_past_the_deadline_and_a_late_one_is_refused() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = capture_of(&app, &psp, &mid, "T-A", 11900).await;
    let b = capture_of(&app, &psp, &mid, "T-B", 11900).await;
    let now = psp_now(&app, &psp).await;
    let da = id(&open(&app, &psp, json!({"capture_id": a["capture_id"], "reason_code": "return", "deadline_days": 3}))
        .await
        .json());
    let db = id(&open(&app, &psp, json!({"capture_id": b["capture_id"], "reason_code": "return", "deadline_days": 3}))
        .await
        .json());
    assert_eq!(defend(&app, &psp, &da, json!({"reason": "Ware nie zurückgekommen"})).await.status, 200);
    let adv = crate::dunning::advance_to(&app, &psp, (now + chrono::Duration::days(4)).date_naive()).await;
    assert_eq!(adv["ran"]["disputes_charged_back"], 1, "only the undefended one: {adv}");
    let va = app.send(app.psp(&psp, Method::GET, &format!("/v1/disputes/{da}"))).await.json();
    assert_eq!(va["state"], "open", "a defended dispute waits for the operator");
    defend(&app, &psp, &db, json!({"reason": "zu spät"})).await.assert_error(409, "state_conflict");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn a_chargeback_of_a_partly_paid_invoice_owes_the_payment_back() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "P-A", 11900).await;
    let cid = c["capture_id"].as_str().unwrap().to_owned();
    let pay = json!({"iban": c["payment_instructions"]["iban"], "amount": {"currency": "EUR", "value": 5000},
                     "reference": c["payment_instructions"]["reference"]});
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&pay)).await;
    assert_eq!(r.json()["state"], "matched", "{}", r.text());
    let d = open(&app, &psp, json!({"capture_id": cid, "reason_code": "incorrect_invoice"})).await.json();
    assert_eq!(d["amount"], 11900, "all the invoice bills, paid or not");
    let r = close(&app, &id(&d), "chargeback").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = get_capture(&app, &psp, &cid).await;
    assert_eq!((after["state"].as_str(), after["outstanding"].as_i64()), (Some("paid"), Some(0)), "{after}");
    // The 5,000 paid are the buyer's credit now.
    let mut conn = app.db().conn().await.unwrap();
    let credit: netterms::store::StoreResult<i64> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_lines WHERE account LIKE 'buyer_credit:%'",
            )
            .fetch_one(&mut *c).await?
        }))
    }
    .await;
    assert_eq!(credit.unwrap(), -5000);
    drop(conn);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn a_dispute_closed_twice_at_once_or_racing_its_deadline_closes_once() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    for round in 0..3 {
        let c = capture_of(&app, &psp, &mid, &format!("R-{round}"), 11900).await;
        let d = id(&open(&app, &psp, json!({"capture_id": c["capture_id"], "reason_code": "return"})).await.json());
        let (x, y) = tokio::join!(close(&app, &d, "chargeback"), close(&app, &d, "resolved"));
        let mut codes = [x.status.as_u16(), y.status.as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 409], "{} / {}", x.text(), y.text());
    }
    // An operator's close racing the deadline scan of another node.
    let c = capture_of(&app, &psp, &mid, "R-D", 11900).await;
    let d = id(&open(&app, &psp, json!({"capture_id": c["capture_id"], "reason_code": "return", "deadline_days": 1}))
        .await
        .json());
    let now = psp_now(&app, &psp).await;
    let psp_id = netterms::domain::ids::PspId(uuid::Uuid::parse_str(&psp.psp_id).unwrap());
    let at = netterms::clock::PspTime { now: now + chrono::Duration::days(2), wall: chrono::Utc::now() };
    let (scan, op) =
        tokio::join!(netterms::service::disputes::expire(&app.services, psp_id, at), close(&app, &d, "resolved"));
    let scanned = scan.unwrap();
    assert!(
        (scanned == 1 && op.status == 409) || (scanned == 0 && op.status == 200),
        "scan closed {scanned}, operator got {}",
        op.status
    );
    let closed = events_of(&app, &psp, "dispute.closed").await;
    assert_eq!(closed.len(), 4, "each dispute closed once");
    assert_eq!(app.count("disputes").await, 4);
    verify_ledger(&app).await;
}
