//! Money in (SPEC §9.5): bank statements in the banks' dialects pay invoices by every matching
//! rule, batches resolved by a later camt.054, partial, multiple and over-payments, the
//! unmatched queue, idempotent imports, hostile files, races, and the sandbox payment.

use reqwest::Method;
use serde_json::{Value, json};

use crate::camt::{Dialect, Ntry, Tx, camt053, camt054};
use crate::helpers::*;
use crate::orders::{amount, created_order, verify_ledger};

pub async fn import(app: &TestApp, xml: &str) -> Value {
    let r = app
        .send(
            app.admin(Method::POST, "/admin/v1/bank-statements")
                .header("content-type", "application/xml")
                .body(xml.to_owned()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

pub async fn capture_of(app: &TestApp, psp: &TestPsp, mid: &str, number: &str, gross: i64) -> Value {
    let oid = created_order(app, psp, mid).await;
    let c = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(gross), "external_invoice_number": number})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    c.json()
}

pub async fn get_capture(app: &TestApp, psp: &TestPsp, id: &str) -> Value {
    app.send(app.psp(psp, Method::GET, &format!("/v1/captures/{id}"))).await.json()
}

pub fn rf(c: &Value) -> String {
    c["payment_instructions"]["reference"].as_str().unwrap().to_owned()
}

pub fn id(c: &Value) -> String {
    c["capture_id"].as_str().unwrap().to_owned()
}

/// The PSP's events of `t`, oldest first.
pub async fn events_of(app: &TestApp, psp: &TestPsp, t: &str) -> Vec<Value> {
    let v = app.send(app.psp(psp, Method::GET, "/v1/events?limit=100")).await.json();
    let mut out: Vec<Value> =
        v["data"].as_array().unwrap().iter().filter(|e| e["type"] == t).map(|e| e["data"].clone()).collect();
    out.reverse();
    out
}

/// Row counts of everything an import may write.
async fn booked(app: &TestApp) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in ["bank_entries", "bank_payments", "payment_allocations", "ledger_entries", "events", "messages"] {
        out.push((t.to_owned(), app.count(t).await));
    }
    out
}

fn spaced(rf: &str) -> String {
    rf.to_lowercase()
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn statements_pay_invoices_by_every_rule_and_a_second_import_books_nothing() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let structured = capture_of(&app, &psp, &mid, "R-1", 11900).await;
    let text = capture_of(&app, &psp, &mid, "R-2", 11900).await;
    let partial = capture_of(&app, &psp, &mid, "R-3", 11900).await;
    let over = capture_of(&app, &psp, &mid, "R-4", 11900).await;
    let named = capture_of(&app, &psp, &mid, "R-5", 4321).await;
    let by_iban_a = capture_of(&app, &psp, &mid, "R-6", 1000).await;
    let by_iban_b = capture_of(&app, &psp, &mid, "R-7", 2000).await;
    let viban = structured["payment_instructions"]["iban"].as_str().unwrap().to_owned();

    let tx = |f: &dyn Fn(&mut Tx)| {
        let mut t = Tx {
            debtor: Some("Kunde Maschinenbau GmbH".into()),
            debtor_iban: Some("DE89370400440532013000".into()),
            ..Tx::default()
        };
        f(&mut t);
        t
    };
    let entries = vec![
        // 1. RF in the structured remittance.
        Ntry::credit("B-1", 11900, tx(&|t| t.rf = Some(rf(&structured)))),
        // 2. RF in the free text, spaced and in lower case.
        Ntry::credit("B-2", 11900, tx(&|t| t.text = Some(format!("Rechnung R-2 {} vielen Dank", spaced(&rf(&text)))))),
        // A partial payment by reference.
        Ntry::credit("B-3", 5000, tx(&|t| t.rf = Some(rf(&partial)))),
        // An over-payment: the rest becomes the buyer's credit.
        Ntry::credit("B-4", 12900, tx(&|t| t.rf = Some(rf(&over)))),
        // 5. Amount and payer name (no reference at all).
        Ntry::credit("B-5", 4321, tx(&|t| t.debtor = Some("KUNDE MASCHINENBAU".into()))),
        // 3. The virtual IBAN with the sum of the two open invoices it pays, oldest first —
        //    the partial invoice (6,900 open) comes first, so this pays it and R-6 and leaves R-7.
        Ntry::credit("B-6", 6900 + 1000, tx(&|t| t.creditor_iban = Some(viban.clone()))),
        // Nothing matches.
        Ntry::credit(
            "B-7",
            777,
            Tx { debtor: Some("Unbekannt AG".into()), text: Some("Spende".into()), ..Tx::default() },
        ),
        // A debit of the account (not a buyer payment).
        Ntry { credit: false, ..Ntry::credit("B-8", 5000, Tx::default()) },
    ];
    let xml = camt053(Dialect::V02, "STMT-1", &entries);
    let s = import(&app, &xml).await;
    assert_eq!(s["kind"], "camt.053");
    assert_eq!(s["version"], "camt.053.001.02");
    assert_eq!((s["entries"].as_u64(), s["payments"].as_u64()), (Some(8), Some(7)), "{s}");
    assert_eq!(
        (s["matched"].as_u64(), s["unmatched"].as_u64(), s["ignored"].as_u64()),
        (Some(6), Some(1), Some(1)),
        "{s}"
    );

    for (c, state, paid) in [
        (&structured, "paid", 11900),
        (&text, "paid", 11900),
        (&partial, "paid", 11900),
        (&over, "paid", 11900),
        (&named, "paid", 4321),
        (&by_iban_a, "paid", 1000),
        (&by_iban_b, "open", 0),
    ] {
        let v = get_capture(&app, &psp, &id(c)).await;
        assert_eq!(
            (v["state"].as_str().unwrap(), v["paid"].as_i64().unwrap()),
            (state, paid),
            "{}: {v}",
            c["external_invoice_number"]
        );
    }
    // Each booking explains itself.
    let received = events_of(&app, &psp, "payment.received").await;
    let by: Vec<(String, String)> = received
        .iter()
        .map(|e| {
            let inv = e["capture_id"].as_str().unwrap().to_owned();
            (inv, e["matched_by"].as_str().unwrap().to_owned())
        })
        .collect();
    for (c, rule) in [
        (&structured, "structured_reference"),
        (&text, "text_reference"),
        (&over, "structured_reference"),
        (&named, "amount_and_name"),
        (&by_iban_a, "virtual_iban"),
    ] {
        assert!(by.contains(&(id(c), rule.to_owned())), "{} by {rule}: {by:?}", c["external_invoice_number"]);
    }
    // Seven bookings on invoices: the virtual-IBAN payment paid two (the partial one's rest and R-6).
    assert_eq!(received.len(), 7, "{received:?}");
    assert_eq!(events_of(&app, &psp, "capture.paid").await.len(), 6);
    // The orders of the paid invoices are complete.
    let order = app
        .send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", structured["order_id"].as_str().unwrap())))
        .await
        .json();
    assert_eq!(order["state"], "complete", "{order}");
    // The over-payment is the buyer's credit; the unmatched one waits for an operator.
    let q = app.send(app.admin(Method::GET, "/admin/v1/unmatched-payments")).await.json();
    assert_eq!(q["data"].as_array().unwrap().len(), 1, "{q}");
    assert_eq!(q["data"][0]["amount"], 777);
    assert!(q["data"][0]["explanation"].as_str().unwrap().contains("no invoice reference"), "{q}");
    let payment = received.iter().find(|e| e["capture_id"] == over["capture_id"]).unwrap();
    let p = app
        .send(app.admin(Method::GET, &format!("/admin/v1/payments/{}", payment["payment_id"].as_str().unwrap())))
        .await
        .json();
    assert_eq!((p["credit"].as_i64(), p["state"].as_str()), (Some(1000), Some("matched")), "{p}");
    verify_ledger(&app).await;

    // The same file again, and a camt.054 that notified the same entries: nothing twice.
    let before = booked(&app).await;
    let again = import(&app, &xml).await;
    assert_eq!((again["payments"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(8)), "{again}");
    let overlapping = camt054("NTF-1", &entries[..3]);
    let n = import(&app, &overlapping).await;
    assert_eq!((n["payments"].as_u64(), n["duplicates"].as_u64()), (Some(0), Some(3)), "{n}");
    assert_eq!(booked(&app).await, before);

    // The ISO 2019 dialect: Sts/Cd, Dbtr/Pty/Nm, the transaction's own amount.
    let v8 = capture_of(&app, &psp, &mid, "R-8", 11900).await;
    let s8 =
        import(&app, &camt053(Dialect::V08, "STMT-2", &[Ntry::credit("B-9", 11900, tx(&|t| t.rf = Some(rf(&v8))))]))
            .await;
    assert_eq!((s8["version"].as_str(), s8["matched"].as_u64()), (Some("camt.053.001.08"), Some(1)), "{s8}");
    assert_eq!(get_capture(&app, &psp, &id(&v8)).await["state"], "paid");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn fees_and_interest_are_paid_first_and_a_paid_invoice_stops_dunning() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "D-1", 11900).await;
    // Into dunning level 2: the flat fee and interest run.
    let due: chrono::NaiveDate = c["due_date"].as_str().unwrap().parse().unwrap();
    crate::dunning::advance_to(&app, &psp, due + chrono::Duration::days(22)).await;
    let before = get_capture(&app, &psp, &id(&c)).await;
    assert_eq!(before["dunning"]["level"], 2, "{before}");
    let charges = before["total_due"].as_i64().unwrap() - 11900;
    assert!(charges > 4000, "{before}");
    // A payment of the invoice amount alone pays the charges first and leaves principal open.
    let s = import(
        &app,
        &camt053(Dialect::V02, "S-D", &[Ntry::credit("D-B1", 11900, Tx { rf: Some(rf(&c)), ..Tx::default() })]),
    )
    .await;
    assert_eq!(s["matched"], 1);
    let after = get_capture(&app, &psp, &id(&c)).await;
    assert!(after["dunning"]["paid"].as_i64().unwrap() >= charges, "{after}");
    assert_eq!(
        after["outstanding"].as_i64().unwrap(),
        after["amount"]["gross"].as_i64().unwrap() - after["paid"].as_i64().unwrap()
    );
    assert_eq!(after["state"], "late");
    let rest = after["total_due"].as_i64().unwrap();
    assert!(rest > 0 && rest <= charges + 100, "{after}");
    verify_ledger(&app).await;
    // The rest settles it: paid, dunning stops.
    let s = import(
        &app,
        &camt053(Dialect::V02, "S-D2", &[Ntry::credit("D-B2", rest, Tx { rf: Some(rf(&c)), ..Tx::default() })]),
    )
    .await;
    assert_eq!(s["matched"], 1, "{s}");
    let paid = get_capture(&app, &psp, &id(&c)).await;
    assert_eq!((paid["state"].as_str(), paid["total_due"].as_i64()), (Some("paid"), Some(0)), "{paid}");
    assert!(paid["dunning"]["next_step_on"].is_null());
    let steps = app.count("dunning_steps").await;
    crate::dunning::advance_to(&app, &psp, due + chrono::Duration::days(60)).await;
    assert_eq!(app.count("dunning_steps").await, steps, "no dunning after the payment");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn a_batch_entry_is_booked_when_a_later_camt054_brings_its_transactions() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = capture_of(&app, &psp, &mid, "BA-1", 11900).await;
    let b = capture_of(&app, &psp, &mid, "BA-2", 5000).await;
    // The statement books the batch as one entry without its transactions.
    let batch = Ntry {
        batch: Some(2),
        txs: vec![Tx { amount: Some(16900), ..Tx::default() }],
        ..Ntry::credit("BATCH-1", 16900, Tx::default())
    };
    let s = import(&app, &camt053(Dialect::V08, "S-B", &[batch])).await;
    assert_eq!((s["awaiting_details"].as_u64(), s["payments"].as_u64()), (Some(1), Some(0)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&a)).await["state"], "open");
    // The notification brings them under the same bank reference.
    let details = Ntry {
        batch: Some(2),
        txs: vec![
            Tx { amount: Some(11900), rf: Some(rf(&a)), debtor: Some("Kunde".into()), ..Tx::default() },
            Tx { amount: Some(5000), text: Some(format!("ref {}", rf(&b))), ..Tx::default() },
        ],
        ..Ntry::credit("BATCH-1", 16900, Tx::default())
    };
    let n = import(&app, &camt054("N-B", std::slice::from_ref(&details))).await;
    assert_eq!((n["payments"].as_u64(), n["matched"].as_u64()), (Some(2), Some(2)), "{n}");
    assert_eq!(get_capture(&app, &psp, &id(&a)).await["state"], "paid");
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "paid");
    let again = import(&app, &camt054("N-B", &[details])).await;
    assert_eq!(again["payments"], 0, "{again}");
    verify_ledger(&app).await;

    // Details first (INFO), the booking after: booked once, when the booking comes.
    let c = capture_of(&app, &psp, &mid, "BA-3", 3000).await;
    let info = Ntry {
        status: "INFO",
        batch: Some(2),
        txs: vec![
            Tx { amount: Some(3000), rf: Some(rf(&c)), ..Tx::default() },
            Tx { amount: Some(100), text: Some("nothing".into()), ..Tx::default() },
        ],
        ..Ntry::credit("BATCH-2", 3100, Tx::default())
    };
    let n = import(&app, &camt054("N-C", &[info])).await;
    assert_eq!((n["details_held"].as_u64(), n["payments"].as_u64()), (Some(1), Some(0)), "{n}");
    let booking = Ntry { batch: Some(2), txs: vec![], ..Ntry::credit("BATCH-2", 3100, Tx::default()) };
    let s = import(&app, &camt053(Dialect::V02, "S-C", &[booking])).await;
    assert_eq!(
        (s["payments"].as_u64(), s["matched"].as_u64(), s["unmatched"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["state"], "paid");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn operators_assign_an_unmatched_payment_or_send_it_back() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "U-1", 11900).await;
    let entries = [
        Ntry::credit(
            "U-B1",
            12000,
            Tx { debtor: Some("Irgendwer".into()), text: Some("Rechnung U eins".into()), ..Tx::default() },
        ),
        Ntry::credit(
            "U-B2",
            2500,
            Tx {
                debtor: Some("Zahler &amp; Söhne".into()),
                debtor_iban: Some("DE89370400440532013000".into()),
                ..Tx::default()
            },
        ),
    ];
    import(&app, &camt053(Dialect::V02, "S-U", &entries)).await;
    let q = app.send(app.admin(Method::GET, "/admin/v1/unmatched-payments")).await.json();
    let list = q["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let to_assign = list.iter().find(|p| p["amount"] == 12000).unwrap()["payment_id"].as_str().unwrap().to_owned();
    let to_refund = list.iter().find(|p| p["amount"] == 2500).unwrap()["payment_id"].as_str().unwrap().to_owned();
    verify_ledger(&app).await;

    // Assigned: it pays the invoice, the 100 more is the buyer's credit.
    let r = app
        .send(
            app.admin(Method::POST, &format!("/admin/v1/unmatched-payments/{to_assign}/assign"))
                .json(&json!({"capture_id": id(&c)})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["matched_by"].as_str(), v["credit"].as_i64()), (Some("operator"), Some(100)), "{v}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["state"], "paid");
    let again = app
        .send(
            app.admin(Method::POST, &format!("/admin/v1/unmatched-payments/{to_assign}/assign"))
                .json(&json!({"capture_id": id(&c)})),
        )
        .await;
    again.assert_error(409, "state_conflict");
    let bad = app
        .send(
            app.admin(Method::POST, &format!("/admin/v1/unmatched-payments/{to_refund}/assign"))
                .json(&json!({"capture_id": uuid::Uuid::now_v7()})),
        )
        .await;
    bad.assert_error(422, "request_validation_error");
    verify_ledger(&app).await;

    // Sent back: a pain.001 to the payer's account.
    let r = app
        .send(app.admin(Method::POST, &format!("/admin/v1/unmatched-payments/{to_refund}/refund")).json(&json!({})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    assert_eq!((t["amount"].as_i64(), t["creditor_iban"].as_str()), (Some(2500), Some("DE89370400440532013000")));
    let x = app
        .send(
            app.admin(
                Method::GET,
                &format!("/admin/v1/credit-transfers/{}", t["credit_transfer_id"].as_str().unwrap()),
            ),
        )
        .await;
    assert_eq!(x.status, 200);
    assert!(x.headers["content-type"].to_str().unwrap().starts_with("application/xml"));
    let xml = x.text();
    assert!(xml.contains("pain.001.001.09") && xml.contains("<InstdAmt Ccy=\"EUR\">25.00</InstdAmt>"), "{xml}");
    assert!(xml.contains("<Nm>Zahler + Soehne</Nm>"), "{xml}");
    crate::sepa_xsd::validate(&xml, "pain.001.001.09.xsd");
    let q = app.send(app.admin(Method::GET, "/admin/v1/unmatched-payments")).await.json();
    assert!(q["data"].as_array().unwrap().is_empty(), "{q}");
    verify_ledger(&app).await;
}

#[tokio::test]
async fn refused_statements_name_the_problem_and_book_nothing() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "X-1", 11900).await;
    let good = camt053(Dialect::V02, "S-X", &[Ntry::credit("X-B1", 11900, Tx { rf: Some(rf(&c)), ..Tx::default() })]);
    let before = booked(&app).await;
    let post = |body: String, ct: &'static str| {
        app.admin(Method::POST, "/admin/v1/bank-statements").header("content-type", ct).body(body)
    };
    let cases: Vec<(String, &'static str, u16, &str)> = vec![
        ("<Document><BkToCstmrStmt><Stmt>".into(), "application/xml", 400, "ends before"),
        (good[..good.len() / 2].to_owned(), "application/xml", 400, "ends before"),
        ("<Document><BkToCstmrStmt><a></b></BkToCstmrStmt></Document>".into(), "application/xml", 400, "malformed"),
        (String::new(), "application/xml", 400, "empty"),
        (
            format!("<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}", &good[good.find("<Document").unwrap()..]),
            "application/xml",
            400,
            "DOCTYPE",
        ),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><Document>&c;</Document>".into(),
            "application/xml",
            400,
            "DOCTYPE",
        ),
        (
            format!("<Document><BkToCstmrStmt>{}</BkToCstmrStmt></Document>", "<x>".repeat(150) + &"</x>".repeat(150)),
            "application/xml",
            400,
            "deeper",
        ),
        (
            "<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.008.001.08\"><CstmrDrctDbtInitn/></Document>".into(),
            "application/xml",
            422,
            "pain.008",
        ),
        (good.replace("<Amt Ccy=\"EUR\">119.00</Amt><CdtDbtInd>CRDT", "<Amt Ccy=\"EURO\">119.00</Amt><CdtDbtInd>CRDT"), "application/xml", 422, "EURO"),
        (good.replace("<Amt Ccy=\"EUR\">119.00</Amt><CdtDbtInd>CRDT", "<Amt Ccy=\"EUR\">119,00</Amt><CdtDbtInd>CRDT"), "application/xml", 422, "119,00"),
        (good.clone(), "application/json", 400, "application/xml"),
    ];
    for (body, ct, status, needle) in cases {
        let r = app.send(post(body, ct)).await;
        let code = if status == 422 { "request_validation_error" } else { "request_invalid" };
        r.assert_error(status, code);
        assert!(r.text().contains(needle), "{needle}: {}", r.text());
        assert_eq!(booked(&app).await, before, "{needle}: nothing booked");
    }
    // Larger than 50 MiB: 413 before anything is read.
    let huge =
        format!("<Document><BkToCstmrStmt><Stmt>{}</Stmt></BkToCstmrStmt></Document>", " ".repeat(51 * 1024 * 1024));
    app.send(post(huge, "application/xml")).await.assert_error(413, "request_too_large");
    // Another PSP's sandbox cannot post statements (admin only).
    let r = app.send(app.psp(&psp, Method::POST, "/admin/v1/bank-statements").body(good.clone())).await;
    assert_eq!(r.status, 401);
    assert_eq!(booked(&app).await, before);
    assert_eq!(app.count("bank_statements").await, 0);
    // The good file still books.
    assert_eq!(import(&app, &good).await["matched"], 1);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn the_same_statement_imported_by_two_nodes_at_once_books_once() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let mut entries = Vec::new();
    let mut captures = Vec::new();
    for i in 0..12 {
        let c = capture_of(&app, &psp, &mid, &format!("N-{i}"), 1000 + i).await;
        entries.push(Ntry::credit(&format!("N-B{i}"), 1000 + i, Tx { rf: Some(rf(&c)), ..Tx::default() }));
        captures.push(c);
    }
    // A second node: its own services on the same database.
    let other = netterms::service::Services::open((*app.services.config).clone(), false).await.unwrap();
    let xml = bytes::Bytes::from(camt053(Dialect::V02, "S-N", &entries));
    let doc = || netterms::service::statements::Document::Bytes(xml.clone());
    let (a, b) = tokio::join!(
        netterms::service::statements::import(&app.services, doc(), "test"),
        netterms::service::statements::import(&other, doc(), "test"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.payments + b.payments, 12, "{a:?} {b:?}");
    assert_eq!(a.duplicates + b.duplicates, 12);
    assert_eq!(app.count("bank_payments").await, 12);
    assert_eq!(app.count("payment_allocations").await, 12);
    for c in &captures {
        assert_eq!(get_capture(&app, &psp, &id(c)).await["state"], "paid");
    }
    assert_eq!(events_of(&app, &psp, "payment.received").await.len(), 12);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn an_import_racing_a_refund_of_the_same_invoice_books_once_and_balances() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    for i in 0..6 {
        let c = capture_of(&app, &psp, &mid, &format!("RR-{i}"), 11900).await;
        let xml = camt053(
            Dialect::V02,
            &format!("S-RR{i}"),
            &[Ntry::credit(&format!("RR-B{i}"), 11900, Tx { rf: Some(rf(&c)), ..Tx::default() })],
        );
        let refund = app.psp(&psp, Method::POST, &format!("/v1/captures/{}/refunds", id(&c))).json(&json!({
            "amount": amount(11900), "external_credit_note_number": format!("CN-{i}")
        }));
        let (s, r) = tokio::join!(import(&app, &xml), app.send(refund));
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(s["payments"], 1);
        let v = get_capture(&app, &psp, &id(&c)).await;
        // Whichever came first, the buyer paid 11,900 and was credited 11,900: owed back.
        assert_eq!(v["outstanding"], 0, "{v}");
        assert_eq!(app.count("bank_payments").await, i + 1);
        verify_ledger(&app).await;
    }
}

#[tokio::test]
async fn sandbox_payments_run_the_same_matching_among_the_psps_own_invoices() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let other = app.create_psp().await;
    let omid = app.create_merchant(&other, "other").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "SB-1", 11900).await;
    let theirs = capture_of(&app, &other, &omid, "SB-2", 11900).await;
    let pay = |psp: &TestPsp, body: Value| app.psp(psp, Method::POST, "/v1/sandbox/payments").json(&body);
    let iban = c["payment_instructions"]["iban"].as_str().unwrap();
    let r = app
        .send(pay(&psp, json!({"iban": iban, "amount": {"currency": "EUR", "value": 11900}, "reference": spaced(&rf(&c)), "debtor_name": "Kunde"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    // An RF reference as the reference is read as a structured one, whatever its spacing.
    assert_eq!((v["state"].as_str(), v["matched_by"].as_str()), (Some("matched"), Some("structured_reference")), "{v}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["state"], "paid");
    let mail =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={}", id(&c)))).await.json();
    assert!(mail["data"].as_array().unwrap().iter().any(|m| m["kind"] == "payment_received"), "{mail}");
    // Another PSP's invoice is out of reach: unmatched.
    let r = app
        .send(pay(&psp, json!({"iban": "DE89370400440532013000", "amount": {"currency": "EUR", "value": 11900}, "reference": rf(&theirs)})))
        .await;
    assert_eq!(r.json()["state"], "unmatched", "{}", r.text());
    assert_eq!(get_capture(&app, &other, &id(&theirs)).await["state"], "open");
    // A sandbox payment is on its PSP's clock: booked and created on the PSP's day.
    crate::dunning::advance_to(&app, &psp, crate::dunning::psp_today(&app, &psp).await + chrono::Duration::days(40))
        .await;
    let r = app
        .send(pay(&psp, json!({"iban": "DE89370400440532013000", "amount": {"currency": "EUR", "value": 500}})))
        .await;
    let later = r.json();
    let today = crate::dunning::psp_today(&app, &psp).await.to_string();
    assert_eq!(later["booking_date"], today.as_str(), "{later}");
    assert!(later["created_at"].as_str().unwrap().starts_with(&today), "{later}");
    // Bad input changes nothing.
    let before = booked(&app).await;
    for body in [
        json!({"amount": {"currency": "EUR", "value": 1}}),
        json!({"iban": iban, "amount": {"currency": "USD", "value": 1}}),
        json!({"iban": iban, "amount": {"currency": "EUR", "value": 0}}),
        json!({"iban": iban, "amount": {"currency": "EUR", "value": 1}, "reference": "x".repeat(141)}),
    ] {
        app.send(pay(&psp, body)).await.assert_error(422, "request_validation_error");
    }
    app.send(pay(&psp, json!({"iban": iban, "amount": 5}))).await.assert_error(400, "request_invalid");
    assert_eq!(booked(&app).await, before);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn every_real_statement_in_the_fixtures_imports() {
    let Some(dir) = crate::helpers::fixtures("") else { return };
    let app = TestApp::spawn().await;
    let mut n = 0;
    for sub in ["camt053", "camt054"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let xml = std::fs::read_to_string(&f).unwrap();
            let s = import(&app, &xml).await;
            assert!(s["entries"].as_u64().unwrap() > 0, "{}: {s}", f.display());
            let again = import(&app, &xml).await;
            assert_eq!(again["payments"], 0, "{}: booked twice: {again}", f.display());
            n += 1;
        }
    }
    assert!(n >= 10, "{n} fixtures");
    verify_ledger(&app).await;
}

/// A direct-debit order's invoice (mandate given at checkout).
pub async fn direct_debit_capture(app: &TestApp, psp: &TestPsp, mid: &str, number: &str) -> Value {
    let payment = json!({"payment_method": "direct_debit", "iban": "DE89370400440532013000"});
    let oid = crate::orders::created_order_paying(app, psp, mid, payment).await;
    let c = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/orders/{oid}/captures"))
                .json(&json!({"amount": amount(11900), "external_invoice_number": number})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text());
    c.json()
}

#[tokio::test]
async fn direct_debits_are_collected_booked_from_the_statement_and_returned() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = direct_debit_capture(&app, &psp, &mid, "DD-1").await;
    let b = direct_debit_capture(&app, &psp, &mid, "DD-2").await;
    let transfer = capture_of(&app, &psp, &mid, "DD-3", 11900).await;
    // Nothing is due for collection yet.
    let r = app.send(app.admin(Method::POST, "/admin/v1/direct-debit-files")).await;
    assert_eq!(r.json(), json!([]));
    // Five days before the due date the job writes the collection file.
    let due: chrono::NaiveDate = a["due_date"].as_str().unwrap().parse().unwrap();
    let adv = crate::dunning::advance_to(&app, &psp, due - chrono::Duration::days(5)).await;
    assert!(adv.to_string().contains("\"direct_debit_files\":1"), "{adv}");
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let file = &files["data"][0];
    assert_eq!((file["count"].as_i64(), file["total"].as_i64()), (Some(2), Some(23800)), "{files}");
    let cols = file["collections"].as_array().unwrap();
    let on = crate::sepa_xsd::collection_day(due).to_string();
    assert!(cols.iter().all(|c| c["state"] == "pending" && c["collection_date"] == on), "{files}");
    // The same mandate? Each checkout gave its own: both first collections.
    assert!(cols.iter().all(|c| c["sequence"] == "FRST"), "{files}");
    let xml = app
        .send(app.admin(Method::GET, &format!("/admin/v1/direct-debit-files/{}", file["file_id"].as_str().unwrap())))
        .await
        .text();
    assert!(xml.contains("<LclInstrm><Cd>B2B</Cd></LclInstrm><SeqTp>FRST</SeqTp>"), "{xml}");
    assert!(xml.contains("<Id>DE98ZZZ09999999999</Id>") && xml.contains(&rf(&a)), "{xml}");
    crate::sepa_xsd::validate(&xml, "pain.008.001.08.xsd");
    // Asking again collects nothing twice; the transfer invoice is never collected.
    assert_eq!(app.send(app.admin(Method::POST, "/admin/v1/direct-debit-files")).await.json(), json!([]));
    assert!(!xml.contains(&rf(&transfer)));
    // The pre-notification went with the payment information.
    let mail =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={}", id(&a)))).await.json();
    let info = mail["data"].as_array().unwrap().iter().find(|m| m["kind"] == "payment_information").unwrap().clone();
    assert!(info["text"].as_str().unwrap().contains("DE98ZZZ09999999999"), "{info}");

    // The bank credits the batch with both end-to-end ids (camt.054 before the day's statement).
    let e2e = |c: &Value| {
        cols.iter().find(|x| x["capture_id"] == c["capture_id"]).unwrap()["end_to_end_id"].as_str().unwrap().to_owned()
    };
    let credit = Ntry {
        batch: Some(2),
        txs: vec![
            Tx { amount: Some(11900), e2e: Some(e2e(&a)), mandate: None, ..Tx::default() },
            Tx { amount: Some(11900), e2e: Some(e2e(&b)), ..Tx::default() },
        ],
        ..Ntry::credit("DD-COLL-1", 23800, Tx::default())
    };
    let n = import(&app, &camt054("N-DD", &[credit])).await;
    assert_eq!(n["matched"], 2, "{n}");
    for c in [&a, &b] {
        assert_eq!(get_capture(&app, &psp, &id(c)).await["state"], "paid");
    }
    let received = events_of(&app, &psp, "payment.received").await;
    assert!(received.iter().all(|e| e["matched_by"] == "direct_debit"), "{received:?}");
    verify_ledger(&app).await;

    // A's debit comes back for lack of funds (camt.053 RtrInf AM04).
    let ret = Ntry {
        credit: false,
        txs: vec![Tx { amount: Some(11900), e2e: Some(e2e(&a)), return_code: Some("AM04".into()), ..Tx::default() }],
        ..Ntry::credit("DD-RET-1", 11900, Tx::default())
    };
    let s = import(&app, &camt053(Dialect::V02, "S-RET", std::slice::from_ref(&ret))).await;
    assert_eq!(s["returns"], 1, "{s}");
    let reopened = get_capture(&app, &psp, &id(&a)).await;
    assert_eq!(
        (reopened["state"].as_str(), reopened["outstanding"].as_i64()),
        (Some("open"), Some(11900)),
        "{reopened}"
    );
    let order =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", a["order_id"].as_str().unwrap()))).await.json();
    assert_eq!(order["state"], "shipped", "the order is no longer complete: {order}");
    let returned = events_of(&app, &psp, "payment.returned").await;
    assert_eq!((returned.len(), returned[0]["return_reason"].as_str()), (1, Some("AM04")));
    assert_eq!(returned[0]["amount"], -11900);
    let mail =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={}", id(&a)))).await.json();
    let m = mail["data"].as_array().unwrap().iter().find(|m| m["kind"] == "direct_debit_returned").unwrap().clone();
    assert!(m["text"].as_str().unwrap().contains("AM04"), "{m}");
    // AM04 keeps the mandate.
    assert_eq!(payment_method(&app, &a).await, "direct_debit");
    // The same return again books nothing.
    assert_eq!(import(&app, &camt053(Dialect::V02, "S-RET", &[ret])).await["returns"], 0);
    verify_ledger(&app).await;

    // B's comes back in the sandbox with MD01: no mandate at the bank, the buyer pays by transfer.
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/sandbox/direct-debit-returns")
                .json(&json!({"capture_id": id(&b), "reason_code": "MD01"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["switched_to_bank_transfer"], true);
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "open");
    assert_eq!(payment_method(&app, &b).await, "bank_transfer");
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/sandbox/direct-debit-returns")
                .json(&json!({"capture_id": id(&b), "reason_code": "MD01"})),
        )
        .await;
    r.assert_error(409, "state_conflict");
    app.send(
        app.psp(&psp, Method::POST, "/v1/sandbox/direct-debit-returns")
            .json(&json!({"capture_id": id(&b), "reason_code": "bad!"})),
    )
    .await
    .assert_error(422, "request_validation_error");
    verify_ledger(&app).await;
    // The reopened invoices are paid by transfer later, by reference.
    let s = import(
        &app,
        &camt053(Dialect::V08, "S-LATE", &[Ntry::credit("DD-T1", 11900, Tx { rf: Some(rf(&b)), ..Tx::default() })]),
    )
    .await;
    assert_eq!(s["matched"], 1);
    verify_ledger(&app).await;
}

async fn payment_method(app: &TestApp, c: &Value) -> String {
    let mut conn = app.db().conn().await.unwrap();
    let oid = uuid::Uuid::parse_str(c["order_id"].as_str().unwrap()).unwrap();
    let r: netterms::store::StoreResult<String> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar("SELECT payment_method FROM orders WHERE id = $1").bind(oid).fetch_one(&mut *c).await?
        }))
    }
    .await;
    r.unwrap()
}

#[tokio::test]
async fn in_a_sandbox_the_bank_books_collections_on_their_day() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = direct_debit_capture(&app, &psp, &mid, "SDD-1").await;
    let due: chrono::NaiveDate = a["due_date"].as_str().unwrap().parse().unwrap();
    // Not before its collection day (the due date, or the next business day after it).
    let on = crate::sepa_xsd::collection_day(due);
    if on > due {
        let adv = crate::dunning::advance_to(&app, &psp, on - chrono::Duration::days(1)).await;
        assert!(adv.to_string().contains("\"collections_booked\":0"), "{adv}");
    }
    let adv = crate::dunning::advance_to(&app, &psp, on).await;
    assert!(adv.to_string().contains("\"collections_booked\":1"), "{adv}");
    let v = get_capture(&app, &psp, &id(&a)).await;
    assert_eq!(v["state"], "paid", "{v}");
    assert!(events_of(&app, &psp, "capture.late").await.is_empty(), "collected on its due date, never late");
    verify_ledger(&app).await;
}

/// References issued before they were drawn from random bits could repeat across invoices: a
/// payment naming such a reference pays neither invoice and waits for an operator.
#[tokio::test]
async fn a_reference_that_names_two_invoices_decides_nothing() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = capture_of(&app, &psp, &mid, "AMB-1", 11900).await;
    let b = capture_of(&app, &psp, &mid, "AMB-2", 11900).await;
    app.execute(&format!(
        "UPDATE captures SET payment_reference = '{}' WHERE external_invoice_number = 'AMB-2'",
        rf(&a)
    ))
    .await;
    let s = import(
        &app,
        &camt053(Dialect::V02, "S-AMB", &[Ntry::credit("AMB-B1", 11900, Tx { rf: Some(rf(&a)), ..Tx::default() })]),
    )
    .await;
    assert_eq!((s["matched"].as_u64(), s["unmatched"].as_u64()), (Some(0), Some(1)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&a)).await["state"], "open");
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "open");
    verify_ledger(&app).await;
}

/// Entries without a bank reference are keyed by what they book: two equal payments in one file
/// stay two, and a later document with the same bookings at other positions books none again.
#[tokio::test]
async fn entries_without_a_bank_reference_are_booked_once_wherever_they_stand() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "NR-1", 11900).await;
    let pay = || Ntry {
        bank_ref: None,
        ..Ntry::credit("-", 5000, Tx { rf: Some(rf(&c)), debtor: Some("Kunde".into()), ..Tx::default() })
    };
    let other = Ntry { bank_ref: None, ..Ntry::credit("-", 777, Tx { text: Some("Spende".into()), ..Tx::default() }) };
    let s = import(&app, &camt053(Dialect::V02, "S-NR1", &[pay(), pay()])).await;
    assert_eq!(s["matched"], 2, "two equal payments are two: {s}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["paid"], 10000);
    // Another statement id, another order, one more entry in front: only that one is new.
    let s = import(&app, &camt053(Dialect::V08, "S-NR2", &[other, pay(), pay()])).await;
    assert_eq!((s["payments"].as_u64(), s["duplicates"].as_u64()), (Some(1), Some(2)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["paid"], 10000);
    verify_ledger(&app).await;
}

/// Two nodes writing collection files at the same moment collect each invoice once.
#[tokio::test]
async fn two_nodes_exporting_at_once_collect_each_invoice_once() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(id(&direct_debit_capture(&app, &psp, &mid, &format!("X2-{i}")).await));
    }
    let other = netterms::service::Services::open((*app.services.config).clone(), false).await.unwrap();
    let pid = netterms::domain::ids::PspId(uuid::Uuid::parse_str(&psp.psp_id).unwrap());
    let now = app.services.clock.now() + chrono::Duration::days(28);
    let at = netterms::clock::PspTime { now, wall: now };
    let (a, b) = tokio::join!(
        netterms::service::direct_debit::export_for(&app.services, pid, at),
        netterms::service::direct_debit::export_for(&other, pid, at),
    );
    let files: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    let collected: usize = files.iter().map(|f| f.collections.len()).sum();
    assert_eq!(collected, 4, "{files:?}");
    assert_eq!(app.count("direct_debits").await, 4);
    for c in &ids {
        assert!(files.iter().any(|f| f.collections.iter().any(|x| x.capture_id.0.to_string() == *c)));
    }
}
