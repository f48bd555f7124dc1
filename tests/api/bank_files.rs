//! What banks and buyers would notice in the files netterms reads and writes (issue 19, items
//! 1–5 and 9): collection days, payment-block ids, no transfer reminder for an invoice being
//! collected, entries whose bank reference repeats, entries with their amount in the
//! transaction, and a BIC for payouts outside the EEA.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use reqwest::Method;
use serde_json::{Value, json};

use crate::camt::{Dialect, Ntry, Tx, camt053, camt054};
use crate::helpers::*;
use crate::orders::verify_ledger;
use crate::payments::{capture_of, direct_debit_capture, events_of, get_capture, id, import, rf};

/// Moves `c`'s due date forward to `target`.
async fn due_on(app: &TestApp, psp: &TestPsp, c: &Value, target: NaiveDate) {
    let duration = c["duration"].as_i64().unwrap() + (target - due_of(c)).num_days();
    let r = app
        .send(
            app.psp(psp, Method::POST, &format!("/v1/captures/{}/extend-duration", id(c)))
                .json(&json!({"duration": duration})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["due_date"], target.to_string());
}

/// The first `weekday` after `d`.
fn next(d: NaiveDate, weekday: Weekday) -> NaiveDate {
    let mut t = d + Duration::days(1);
    while t.weekday() != weekday {
        t += Duration::days(1);
    }
    t
}

/// The kinds of the messages sent about invoice `c`, newest first.
pub async fn kinds_of_messages(app: &TestApp, psp: &TestPsp, c: &Value) -> Vec<String> {
    let m = app.send(app.psp(psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={}", id(c)))).await.json();
    m["data"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap().to_owned()).collect()
}

/// An invoice due on a Saturday is collected on the Monday after (and one due on the Tuesday on
/// that Tuesday): the file has two payment blocks with their own ids, the pre-notification names
/// the Monday, the sandbox bank books it on the Monday, and the invoice is never late nor
/// reminded to be paid by transfer. Dunning starts only once a collection came back.
#[tokio::test]
async fn collections_fall_on_business_days_and_are_never_reminded_as_transfers() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = direct_debit_capture(&app, &psp, &mid, "WE-1").await;
    let b = direct_debit_capture(&app, &psp, &mid, "WE-2").await;
    let saturday = next(due_of(&a), Weekday::Sat);
    let monday = saturday + Duration::days(2);
    let tuesday = saturday + Duration::days(3);
    due_on(&app, &psp, &a, saturday).await;
    due_on(&app, &psp, &b, tuesday).await;

    // Written two days before Saturday, the file holds both: two collection days, two blocks.
    let pid = netterms::domain::ids::PspId(uuid::Uuid::parse_str(&psp.psp_id).unwrap());
    let today = crate::dunning::psp_today(&app, &psp).await;
    let now = app.services.clock.now() + Duration::days((saturday - Duration::days(2) - today).num_days());
    let file =
        netterms::service::direct_debit::export_for(&app.services, pid, netterms::clock::PspTime { now, wall: now })
            .await
            .unwrap()
            .unwrap();
    let day_of = |c: &Value| {
        let x = file.collections.iter().find(|x| x.capture_id.0.to_string() == id(c)).unwrap();
        x.collection_date.clone()
    };
    assert_eq!(day_of(&a), monday.to_string(), "Saturday's invoice is collected on Monday: {file:?}");
    assert_eq!(day_of(&b), tuesday.to_string(), "{file:?}");
    let xml = app.send(app.admin(Method::GET, &format!("/admin/v1/direct-debit-files/{}", file.file_id))).await.text();
    assert_eq!(xml.matches("<PmtInf>").count(), 2, "{xml}");
    assert!(xml.contains(&format!("<ReqdColltnDt>{monday}</ReqdColltnDt>")), "{xml}");
    // Unique block ids, business days, within 35 characters: the bank's rules and the XSD.
    crate::sepa_xsd::validate(&xml, "pain.008.001.08.xsd");

    // Saturday and Sunday: still on its way, neither booked nor late.
    crate::dunning::advance_to(&app, &psp, saturday + Duration::days(1)).await;
    let v = get_capture(&app, &psp, &id(&a)).await;
    assert_eq!(v["state"], "open", "{v}");
    // Monday: the bank books it.
    let adv = crate::dunning::advance_to(&app, &psp, monday).await;
    assert!(adv.to_string().contains("\"collections_booked\":1"), "{adv}");
    assert_eq!(get_capture(&app, &psp, &id(&a)).await["state"], "paid");
    crate::dunning::advance_to(&app, &psp, tuesday).await;
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "paid");
    assert!(events_of(&app, &psp, "capture.late").await.is_empty(), "collected invoices are never late");
    for c in [&a, &b] {
        let kinds = kinds_of_messages(&app, &psp, c).await;
        assert!(!kinds.iter().any(|k| k == "payment_reminder" || k == "dunning"), "{kinds:?}");
    }

    // B comes back (insufficient funds): now it is dunned like any unpaid invoice.
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/sandbox/direct-debit-returns")
                .json(&json!({"capture_id": id(&b), "reason_code": "AM04"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The buyer has ten days to pay by transfer; then dunning starts.
    crate::dunning::advance_to(&app, &psp, tuesday + Duration::days(10)).await;
    let kinds = kinds_of_messages(&app, &psp, &b).await;
    assert!(!kinds.iter().any(|k| k == "dunning"), "not before the new date: {kinds:?}");
    crate::dunning::advance_to(&app, &psp, tuesday + Duration::days(12)).await;
    let kinds = kinds_of_messages(&app, &psp, &b).await;
    assert!(kinds.iter().any(|k| k == "dunning"), "dunned after the return: {kinds:?}");
    assert!(!kinds.iter().any(|k| k == "payment_reminder"), "{kinds:?}");
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "late");
    verify_ledger(&app).await;
}

fn due_of(c: &Value) -> NaiveDate {
    c["due_date"].as_str().unwrap().parse().unwrap()
}

/// The pre-notification (e-mail and PDF) names the collection day, not a due date on a weekend.
#[tokio::test]
async fn the_pre_notification_names_the_business_day_of_the_collection() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    // A due date 30 days on falls on a Saturday when the clock starts 30 days before one.
    let today = crate::dunning::psp_today(&app, &psp).await;
    let mut start = today + Duration::days(1);
    while (start + Duration::days(30)).weekday() != Weekday::Sat {
        start += Duration::days(1);
    }
    crate::dunning::advance_to(&app, &psp, start).await;
    let c = direct_debit_capture(&app, &psp, &mid, "PN-1").await;
    assert_eq!(c["duration"], 30, "{c}");
    let saturday = due_of(&c);
    assert_eq!(saturday.weekday(), Weekday::Sat);
    let monday = saturday + Duration::days(2);
    let m = app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={}", id(&c)))).await.json();
    let info = m["data"].as_array().unwrap().iter().find(|m| m["kind"] == "payment_information").unwrap().clone();
    let text = info["text"].as_str().unwrap();
    let german = monday.format("%d.%m.%Y").to_string();
    let english = monday.format("%-d %B %Y").to_string();
    assert!(text.contains(&german) || text.contains(&english), "{text}");
    let saturday_de = saturday.format("%d.%m.%Y").to_string();
    let saturday_en = saturday.format("%-d %B %Y").to_string();
    assert!(!text.contains(&saturday_de) && !text.contains(&saturday_en), "{text}");
    let pdf = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{}/payment-information.pdf", id(&c)))).await;
    assert_eq!(pdf.status, 200);
    if let Some(t) = pdf_text(&pdf.bytes) {
        assert!(t.contains(&german) || t.contains(&english), "{t}");
    }
}

/// The text of a PDF by pdftotext (poppler-utils), or `None` where it is missing outside CI.
fn pdf_text(pdf: &[u8]) -> Option<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pdf).unwrap();
    match std::process::Command::new("pdftotext").arg(file.path()).arg("-").output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(_) => {
            assert!(std::env::var("NETTERMS_REQUIRE_TOOLS").is_err(), "pdftotext is missing");
            eprintln!("skipped: reading the PDF needs pdftotext");
            None
        }
    }
}

/// Banks repeat their entry references (PostFinance gave CHF 1,692.22 and CHF 1,537.00 one, GLS a
/// return and a credit): entries that share a reference but book something else are all booked;
/// the same file again, and a notification of one of them, book nothing.
#[tokio::test]
async fn a_bank_reference_repeated_for_other_bookings_loses_no_payment() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let invoice =
        |n: &'static str, gross| crate::portal::invoice_for(&app, &psp, &mid, "r@kunde.example", "Rep AG", n, gross);
    let a = invoice("REP-1", 169_222).await;
    let b = invoice("REP-2", 153_700).await;
    let pay = |c: &Value, amount| Ntry::credit("PF-0001", amount, Tx { rf: Some(rf(c)), ..Tx::default() });
    // And a debit under the same reference (a charge of the bank): not a payment, not a duplicate.
    let charge =
        Ntry { credit: false, ..Ntry::credit("PF-0001", 500, Tx { text: Some("Gebuehr".into()), ..Tx::default() }) };
    let doc = camt053(Dialect::V08, "S-REP", &[pay(&a, 169_222), pay(&b, 153_700), charge]);
    let s = import(&app, &doc).await;
    assert_eq!((s["entries"].as_u64(), s["matched"].as_u64()), (Some(3), Some(2)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&a)).await["state"], "paid");
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "paid");
    let again = import(&app, &doc).await;
    assert_eq!((again["payments"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(3)), "{again}");
    let note = import(&app, &camt054("N-REP", &[pay(&b, 153_700)])).await;
    assert_eq!(note["payments"], 0, "{note}");
    // The operator's list of imports: each complete, with what it booked.
    let list = app.send(app.admin(Method::GET, "/admin/v1/bank-statements?limit=2")).await.json();
    assert_eq!(list["has_more"], true, "{list}");
    let newest = &list["data"][0];
    assert_eq!((newest["state"].as_str(), newest["kind"].as_str()), (Some("complete"), Some("camt.054")), "{list}");
    assert_eq!(newest["summary"]["duplicates"], 1, "{list}");
    // Two identical entries under one reference in one document are two payments.
    let c = invoice("REP-3", 10_000).await;
    let half = || Ntry::credit("PF-0002", 5_000, Tx { rf: Some(rf(&c)), ..Tx::default() });
    let s = import(&app, &camt053(Dialect::V02, "S-REP2", &[half(), half()])).await;
    assert_eq!(s["matched"], 2, "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["state"], "paid");
    assert_eq!(import(&app, &camt053(Dialect::V02, "S-REP2", &[half(), half()])).await["payments"], 0);
    verify_ledger(&app).await;
}

/// PostFinance writes camt.054.001.08 entries without their own `Amt`: the amount and direction
/// are those of the one transaction. A broken entry is named counting from 1.
#[tokio::test]
async fn an_entry_with_its_amount_only_in_the_transaction_is_booked() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "PF-1", 11900).await;
    let entry = Ntry::credit("PF-TX-1", 11900, Tx { amount: Some(11900), rf: Some(rf(&c)), ..Tx::default() });
    let doc = camt054("N-PF", &[entry]);
    let own = "<Amt Ccy=\"EUR\">119.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>";
    assert!(doc.contains(own), "{doc}");
    let doc = doc.replacen(own, "<Sts>", 1);
    assert_eq!(doc.matches("<Amt ").count(), 1, "only the transaction's amount: {doc}");
    let s = import(&app, &doc).await;
    assert_eq!(s["matched"], 1, "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["state"], "paid");
    // Entry 2 of 2 has no amount at all: the error says "entry 2", and nothing is booked.
    let d = crate::portal::invoice_for(&app, &psp, &mid, "p@kunde.example", "PF AG", "PF-2", 5000).await;
    let ok = Ntry::credit("PF-TX-2", 5000, Tx { rf: Some(rf(&d)), ..Tx::default() });
    let broken = Ntry::credit("PF-TX-3", 777, Tx::default());
    let doc = camt053(Dialect::V02, "S-PF2", &[ok, broken])
        .replace("<Amt Ccy=\"EUR\">7.77</Amt><CdtDbtInd>CRDT</CdtDbtInd>", "<CdtDbtInd>CRDT</CdtDbtInd>");
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/bank-statements").header("content-type", "application/xml").body(doc))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("entry 2 (counted from 1)"), "{}", r.text());
    assert_eq!(get_capture(&app, &psp, &id(&d)).await["state"], "open");
    verify_ledger(&app).await;
}

/// A PSP paid to a Swiss account must give its bank's BIC (the EPC rulebook requires it outside
/// the EEA); the payout's credit transfer names it.
#[tokio::test]
async fn payouts_outside_the_eea_name_the_bank() {
    let app = TestApp::spawn().await;
    let body = |bic: Option<&str>| {
        json!({"name": "Zuerich Pay AG", "fee_rate_bps": 150, "fee_fixed": 25, "iban": "CH9300762011623852957",
               "payout_frequency": "daily", "bic": bic})
    };
    let before = app.count("psps").await;
    let r = app.send(app.admin(Method::POST, "/admin/v1/psps").json(&body(None))).await;
    r.assert_error(422, "request_validation_error");
    assert!(r.text().contains("\"bic\"") && r.text().contains("outside the EEA"), "{}", r.text());
    let r = app.send(app.admin(Method::POST, "/admin/v1/psps").json(&body(Some("POFI-CHBE")))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(app.count("psps").await, before, "nothing made");
    let r = app.send(app.admin(Method::POST, "/admin/v1/psps").json(&body(Some("pofichbexxx")))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["psp"]["bic"], "POFICHBEXXX", "{v}");
    let psp = TestPsp {
        psp_id: v["psp_id"].as_str().unwrap().to_owned(),
        username: v["username"].as_str().unwrap().to_owned(),
        password: app.reveal(v["password_url"].as_str().unwrap()).await,
        credential_id: String::new(),
    };
    // Removing the BIC of a Swiss account is refused too.
    let r =
        app.send(app.admin(Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id)).json(&json!({"bic": ""}))).await;
    r.assert_error(422, "request_validation_error");
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    capture_of(&app, &psp, &mid, "CH-1", 11900).await;
    let today = crate::dunning::psp_today(&app, &psp).await;
    crate::dunning::advance_to(&app, &psp, today + Duration::days(1)).await;
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    let payout = &list["data"][0];
    assert_eq!(payout["creditor_bic"], "POFICHBEXXX", "{list}");
    let xml = app
        .send(app.admin(Method::GET, &format!("/admin/v1/payouts/{}/pain.001", payout["payout_id"].as_str().unwrap())))
        .await
        .text();
    assert!(xml.contains("<CdtrAgt><FinInstnId><BICFI>POFICHBEXXX</BICFI></FinInstnId></CdtrAgt>"), "{xml}");
    crate::sepa_xsd::validate(&xml, "pain.001.001.09.xsd");
    verify_ledger(&app).await;
}

/// What a file writer of the export says went wrong.
#[derive(Debug, PartialEq)]
struct WriteFailed(String);

impl From<netterms::service::orders::OrderError> for WriteFailed {
    fn from(e: netterms::service::orders::OrderError) -> WriteFailed {
        WriteFailed(e.to_string())
    }
}

async fn first_payout_state(app: &TestApp, psp: &TestPsp) -> Value {
    app.send(app.psp(psp, Method::GET, "/v1/payouts")).await.json()["data"][0]["state"].clone()
}

/// A payout's credit-transfer file that could not be written leaves the payout pending: the next
/// export writes it (`netterms payouts export --out DIR` with a missing DIR once lost payouts).
#[tokio::test]
async fn a_payout_is_sent_only_once_its_file_is_written() {
    use netterms::service::payouts::export_pending;
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    capture_of(&app, &psp, &mid, "EXP-1", 11900).await;
    let today = crate::dunning::psp_today(&app, &psp).await;
    crate::dunning::advance_to(&app, &psp, next(today, Weekday::Mon) + Duration::days(1)).await;
    assert_eq!(first_payout_state(&app, &psp).await, "pending");
    let failed = export_pending(&app.services, |_, _| Err(WriteFailed("disk full".into()))).await;
    assert_eq!(failed.unwrap_err(), WriteFailed("disk full".into()));
    assert_eq!(first_payout_state(&app, &psp).await, "pending", "not sent: its file was not written");
    let mut written = Vec::new();
    let sent = export_pending(&app.services, |p, xml| -> Result<(), WriteFailed> {
        written.push((p.payout_id, xml.to_owned()));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!((sent.len(), written.len()), (1, 1));
    assert_eq!(sent[0].state, "sent");
    assert_eq!(first_payout_state(&app, &psp).await, "sent");
    crate::sepa_xsd::validate(&written[0].1, "pain.001.001.09.xsd");
    let again = export_pending(&app.services, |_, _| -> Result<(), WriteFailed> { Ok(()) }).await.unwrap();
    assert!(again.is_empty(), "sent once");
}

/// A return in the DK "Rücklastschrift" layout names the mandate and the amount with the bank's
/// fee, not our end-to-end id: it is matched to the collection under that mandate, the invoice
/// reopens; the same return again changes nothing, one naming an unknown mandate waits for an
/// operator.
#[tokio::test]
async fn a_return_naming_only_the_mandate_reopens_its_invoice() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let d = direct_debit_capture(&app, &psp, &mid, "RL-1").await;
    let on = crate::sepa_xsd::collection_day(due_of(&d));
    crate::dunning::advance_to(&app, &psp, on).await;
    assert_eq!(get_capture(&app, &psp, &id(&d)).await["state"], "paid");
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let mandate = files["data"][0]["collections"][0]["mandate_reference"].as_str().unwrap().to_owned();
    let ret = |mandate: &str| Ntry {
        credit: false,
        txs: vec![Tx {
            amount: Some(11900 + 350),
            mandate: Some(mandate.to_owned()),
            return_code: Some("AM04".into()),
            ..Tx::default()
        }],
        ..Ntry::credit("RL-RET-1", 11900 + 350, Tx::default())
    };
    let unknown = Ntry { bank_ref: Some("RL-RET-0".into()), ..ret("NTUNKNOWNMANDATE") };
    let s = import(&app, &camt053(Dialect::V02, "S-RL0", &[unknown])).await;
    assert_eq!((s["returns"].as_u64(), s["unmatched"].as_u64()), (Some(0), Some(1)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&d)).await["state"], "paid");
    let s = import(&app, &camt053(Dialect::V02, "S-RL1", &[ret(&mandate)])).await;
    assert_eq!(s["returns"], 1, "{s}");
    let v = get_capture(&app, &psp, &id(&d)).await;
    let reopened = if due_of(&d) < on { "late" } else { "open" };
    assert_eq!((v["state"].as_str(), v["outstanding"].as_i64()), (Some(reopened), Some(11900)), "{v}");
    let returned = events_of(&app, &psp, "payment.returned").await;
    assert_eq!((returned.len(), returned[0]["return_reason"].as_str()), (1, Some("AM04")));
    assert_eq!(import(&app, &camt053(Dialect::V02, "S-RL1", &[ret(&mandate)])).await["returns"], 0);
    verify_ledger(&app).await;
}

/// A return that matches no collection waits in the unmatched-returns queue with its reason; an
/// operator applies it to the collection it belongs to (which reverses that collection as a
/// matched return would) or dismisses it with a reason.
#[tokio::test]
async fn an_unmatched_return_waits_for_an_operator() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let d = direct_debit_capture(&app, &psp, &mid, "UR-1").await;
    let on = crate::sepa_xsd::collection_day(due_of(&d));
    crate::dunning::advance_to(&app, &psp, on).await;
    assert_eq!(get_capture(&app, &psp, &id(&d)).await["state"], "paid");
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let e2e = files["data"][0]["collections"][0]["end_to_end_id"].as_str().unwrap().to_owned();
    let stray = |r: &str, e2e: &str, amount: i64| Ntry {
        credit: false,
        bank_ref: Some(r.into()),
        txs: vec![Tx {
            amount: Some(amount),
            e2e: Some(e2e.into()),
            return_code: Some("AM04".into()),
            ..Tx::default()
        }],
        ..Ntry::credit(r, amount, Tx::default())
    };
    let file = camt053(Dialect::V02, "S-UR1", &[stray("UR-RET-1", "SOMEONE-ELSES-E2E", 11900 + 300)]);
    let s = import(&app, &file).await;
    assert_eq!((s["returns"].as_u64(), s["unmatched"].as_u64()), (Some(0), Some(1)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&d)).await["state"], "paid", "nothing is reversed on a guess");
    let queue = app.send(app.admin(Method::GET, "/admin/v1/unmatched-returns?state=open")).await.json();
    let held = &queue["data"][0];
    assert_eq!(queue["data"].as_array().unwrap().len(), 1, "{queue}");
    assert_eq!((held["reason"].as_str(), held["amount"].as_i64()), (Some("AM04"), Some(12200)));
    assert!(held["reason_text"].as_str().unwrap().contains("sufficient funds"), "{held}");
    assert_eq!(held["end_to_end_id"], "SOMEONE-ELSES-E2E");
    let rid = held["unmatched_return_id"].as_str().unwrap().to_owned();
    // The same file again holds nothing twice.
    assert_eq!(import(&app, &file).await["unmatched"], 0);
    let apply = |body: Value| app.admin(Method::POST, &format!("/admin/v1/unmatched-returns/{rid}/apply")).json(&body);
    let r = app.send(apply(json!({"end_to_end_id": "NO-SUCH-COLLECTION"}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["end_to_end_id"]);
    app.send(apply(json!({}))).await.assert_error(422, "request_validation_error");
    // Two operators apply it at once: one applies it, the other is told it is applied already.
    let (a, b) =
        tokio::join!(app.send(apply(json!({"end_to_end_id": e2e}))), app.send(apply(json!({"end_to_end_id": e2e}))));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text(), b.text());
    let r = if a.status == 200 { a } else { b };
    let applied = r.json();
    assert_eq!((applied["state"].as_str(), applied["applied_to"].as_str()), (Some("applied"), Some(e2e.as_str())));
    let v = get_capture(&app, &psp, &id(&d)).await;
    assert_eq!(v["outstanding"], 11900, "{v}");
    let returned = events_of(&app, &psp, "payment.returned").await;
    assert_eq!((returned.len(), returned[0]["return_reason"].as_str()), (1, Some("AM04")));
    app.send(apply(json!({"end_to_end_id": e2e}))).await.assert_error(409, "state_conflict");
    // Another stray return is dismissed, with a reason.
    import(&app, &camt053(Dialect::V02, "S-UR2", &[stray("UR-RET-2", "X-E2E", 5000)])).await;
    let queue = app.send(app.admin(Method::GET, "/admin/v1/unmatched-returns?state=open")).await.json();
    let rid2 = queue["data"][0]["unmatched_return_id"].as_str().unwrap().to_owned();
    let dismiss =
        |body: Value| app.admin(Method::POST, &format!("/admin/v1/unmatched-returns/{rid2}/dismiss")).json(&body);
    app.send(dismiss(json!({"reason": " "}))).await.assert_error(422, "request_validation_error");
    let r = app.send(dismiss(json!({"reason": "another creditor's debit"}))).await;
    assert_eq!((r.status.as_u16(), r.json()["state"].as_str().map(str::to_owned)), (200, Some("dismissed".into())));
    let open = app.send(app.admin(Method::GET, "/admin/v1/unmatched-returns?state=open")).await.json();
    assert_eq!(open["data"].as_array().unwrap().len(), 0);
    let all = app.send(app.admin(Method::GET, "/admin/v1/unmatched-returns")).await.json();
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    app.send(app.admin(Method::GET, "/admin/v1/unmatched-returns?state="))
        .await
        .assert_error(422, "request_validation_error");
    verify_ledger(&app).await;
}

/// A buyer's credit (here an over-payment) is sent back by credit transfer: never more than the
/// credit, also when two refunds race; the pain.001 validates; the ledger agrees.
#[tokio::test]
async fn a_buyers_credit_is_sent_back_once() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "CR-1", 11900).await;
    let tx = Tx { rf: Some(rf(&c)), debtor_iban: Some("DE89370400440532013000".into()), ..Tx::default() };
    let s = import(&app, &camt053(Dialect::V02, "S-CR1", &[Ntry::credit("CR-PAY-1", 16000, tx)])).await;
    assert_eq!(s["matched"], 1, "{s}");
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", c["order_id"].as_str().unwrap()))).await;
    let mut conn = app.db().conn().await.unwrap();
    let order_id = uuid::Uuid::parse_str(order.json()["order_id"].as_str().unwrap()).unwrap();
    let buyer: netterms::store::StoreResult<uuid::Uuid> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar("SELECT buyer_id FROM orders WHERE id = $1").bind(order_id).fetch_one(&mut *c).await?
        }))
    }
    .await;
    drop(conn);
    let buyer = buyer.unwrap();
    let credit = app.send(app.admin(Method::GET, &format!("/admin/v1/buyers/{buyer}/credit"))).await.json();
    assert_eq!(credit["amount"], 16000 - 11900, "{credit}");
    let refund = |body: Value| app.admin(Method::POST, &format!("/admin/v1/buyers/{buyer}/credit-refunds")).json(&body);
    let r = app.send(refund(json!({"amount": 4101}))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), ["amount"]);
    app.send(refund(json!({"currency": "CHF"}))).await.assert_error(422, "request_validation_error");
    app.send(refund(json!({"amount": 0}))).await.assert_error(422, "request_validation_error");
    let unknown = uuid::Uuid::now_v7();
    let r = app.send(app.admin(Method::POST, &format!("/admin/v1/buyers/{unknown}/credit-refunds")).json(&json!({})));
    assert_eq!(r.await.status, 404);
    // A transfer whose file could not be written is not booked.
    let failed = netterms::service::payments::refund_credit_written(
        &app.services,
        netterms::domain::ids::BuyerId(buyer),
        Default::default(),
        |_, _| Err(WriteFailed("disk full".into())),
    )
    .await;
    assert_eq!(failed.unwrap_err(), WriteFailed("disk full".into()));
    let credit = app.send(app.admin(Method::GET, &format!("/admin/v1/buyers/{buyer}/credit"))).await.json();
    assert_eq!(credit["amount"], 4100, "nothing was booked: {credit}");
    // Two refunds of 3,000 of a credit of 4,100 at once: exactly one goes out.
    let (a, b) = tokio::join!(app.send(refund(json!({"amount": 3000}))), app.send(refund(json!({"amount": 3000}))));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert!(matches!(statuses, [201, 409] | [201, 422]), "{statuses:?}: {} / {}", a.text(), b.text());
    let first = if a.status == 201 { a.json() } else { b.json() };
    assert_eq!((first["kind"].as_str(), first["amount"].as_i64()), (Some("credit_refund"), Some(3000)));
    // The account it last paid from.
    assert_eq!(first["creditor_iban"], "DE89370400440532013000");
    // The rest, by default the whole remaining credit, to a given account.
    let r = app.send(refund(json!({"iban": "DE02 1203 0000 0000 2020 51", "name": "Kunde GmbH"}))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rest = r.json();
    assert_eq!((rest["amount"].as_i64(), rest["creditor_name"].as_str()), (Some(1100), Some("Kunde GmbH")));
    let xml = app
        .send(app.admin(
            Method::GET,
            &format!("/admin/v1/credit-transfers/{}", rest["credit_transfer_id"].as_str().unwrap()),
        ))
        .await
        .text();
    assert!(xml.contains("<InstdAmt Ccy=\"EUR\">11.00</InstdAmt>"), "{xml}");
    crate::sepa_xsd::validate(&xml, "pain.001.001.09.xsd");
    let credit = app.send(app.admin(Method::GET, &format!("/admin/v1/buyers/{buyer}/credit"))).await.json();
    assert_eq!(credit["amount"], 0, "{credit}");
    app.send(refund(json!({}))).await.assert_error(409, "state_conflict");
    verify_ledger(&app).await;
}

/// The README's sample statement (`examples/camt053.xml`) imports and, with an invoice's
/// reference in place of its own, pays that invoice.
#[tokio::test]
async fn the_sample_statement_pays_an_invoice() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture_of(&app, &psp, &mid, "SAMPLE-1", 11900).await;
    let sample = include_str!("../../examples/camt053.xml");
    assert!(sample.contains("RF18 5390 0754 7034"));
    let xml = sample.replace("RF18 5390 0754 7034", c["payment_instructions"]["reference"].as_str().unwrap());
    let s = import(&app, &xml).await;
    assert_eq!((s["payments"].as_u64(), s["matched"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(get_capture(&app, &psp, &id(&c)).await["state"], "paid");
    verify_ledger(&app).await;
}

/// A bank's pain.002 about one of our files: `original` is the file's `MsgId`, `group` the whole
/// file's status (with a reason), `txs` each (end-to-end id, status, reason).
pub fn pain002(original: &str, group: Option<(&str, &str)>, txs: &[(&str, &str, Option<&str>)]) -> String {
    let group = group
        .map(|(st, why)| format!("<GrpSts>{st}</GrpSts><StsRsnInf><Rsn><Cd>{why}</Cd></Rsn></StsRsnInf>"))
        .unwrap_or_else(|| "<GrpSts>PART</GrpSts>".into());
    let txs: String = txs
        .iter()
        .map(|(e2e, st, why)| {
            let why = why
                .map(|w| format!("<StsRsnInf><Rsn><Cd>{w}</Cd></Rsn><AddtlInf>Bank text {w}</AddtlInf></StsRsnInf>"))
                .unwrap_or_default();
            format!(
                "<TxInfAndSts><StsId>S-{e2e}</StsId><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>{st}</TxSts>{why}\
                 <OrgnlTxRef><Amt><InstdAmt Ccy=\"EUR\">119.00</InstdAmt></Amt></OrgnlTxRef></TxInfAndSts>"
            )
        })
        .collect();
    let blocks = if txs.is_empty() {
        String::new()
    } else {
        format!("<OrgnlPmtInfAndSts><OrgnlPmtInfId>{original}-1</OrgnlPmtInfId>{txs}</OrgnlPmtInfAndSts>")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.002.001.03\">\
         <CstmrPmtStsRpt><GrpHdr><MsgId>BANK-{original}</MsgId><CreDtTm>2027-01-04T08:00:00</CreDtTm>\
         <InitgPty><Nm>Bank</Nm></InitgPty></GrpHdr><OrgnlGrpInfAndSts><OrgnlMsgId>{original}</OrgnlMsgId>\
         <OrgnlMsgNmId>pain.008.001.08</OrgnlMsgNmId>{group}</OrgnlGrpInfAndSts>{blocks}</CstmrPmtStsRpt></Document>"
    )
}

pub async fn import_status_report(app: &TestApp, xml: &str) -> Value {
    let r = app
        .send(
            app.admin(Method::POST, "/admin/v1/payment-status-reports")
                .header("content-type", "application/xml")
                .body(xml.to_owned()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// A collection the bank rejects before presenting it (pain.002, reason AC04: account closed) is
/// `rejected`: nothing is booked, the invoice stays open and is never collected again, the buyer
/// is told to pay by transfer and by when, dunning waits for that date; the other collection of
/// the file goes through. The same report again changes nothing; hostile or wrong files change
/// nothing.
#[tokio::test]
async fn a_collection_the_bank_rejects_is_paid_by_transfer() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = direct_debit_capture(&app, &psp, &mid, "RJ-1").await;
    let b = direct_debit_capture(&app, &psp, &mid, "RJ-2").await;
    let due = due_of(&a);
    let today = due - Duration::days(5);
    crate::dunning::advance_to(&app, &psp, today).await;
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let file = &files["data"][0];
    let msg_id = file["message_id"].as_str().unwrap().to_owned();
    let e2e_of = |c: &Value| {
        file["collections"].as_array().unwrap().iter().find(|x| x["capture_id"] == c["capture_id"]).unwrap()
            ["end_to_end_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ea, eb) = (e2e_of(&a), e2e_of(&b));

    // Refused whole, nothing changed: a DOCTYPE, a statement, no XML, the wrong content type.
    let report = pain002(&msg_id, None, &[(&ea, "RJCT", Some("AC04")), (&eb, "ACCP", None)]);
    let send = |body: String, ct: &str| {
        app.admin(Method::POST, "/admin/v1/payment-status-reports").header("content-type", ct).body(body)
    };
    let xxe = report.replacen("<Document", "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Document", 1);
    app.send(send(xxe, "application/xml")).await.assert_error(400, "request_invalid");
    let statement = camt053(Dialect::V02, "S-RJ", &[]);
    let r = app.send(send(statement, "application/xml")).await;
    r.assert_error(422, "request_validation_error");
    assert!(r.text().contains("statement"), "{}", r.text());
    app.send(send(report[..report.len() / 2].to_owned(), "application/xml")).await.assert_error(400, "request_invalid");
    app.send(send(report.clone(), "application/json")).await.assert_error(400, "request_invalid");
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let states: Vec<&str> =
        files["data"][0]["collections"].as_array().unwrap().iter().map(|x| x["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["pending", "pending"]);

    let sum = import_status_report(&app, &report).await;
    assert_eq!((sum["original"].as_str(), sum["accepted"].as_u64()), (Some("direct_debit_file"), Some(1)), "{sum}");
    let items = sum["rejected"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{sum}");
    let item = &items[0];
    assert_eq!(
        (item["kind"].as_str(), item["id"].as_str(), item["reason_code"].as_str(), item["outcome"].as_str()),
        (Some("collection"), a["capture_id"].as_str(), Some("AC04"), Some("rejected")),
        "{sum}"
    );
    let text = item["reason_text"].as_str().unwrap();
    assert!(text.contains("closed") && text.contains("Bank text AC04"), "{text}");
    let files = app.send(app.admin(Method::GET, "/admin/v1/direct-debit-files")).await.json();
    let coll = |e2e: &str| {
        files["data"][0]["collections"].as_array().unwrap().iter().find(|x| x["end_to_end_id"] == e2e).unwrap().clone()
    };
    assert_eq!((coll(&ea)["state"].as_str(), coll(&ea)["return_reason"].as_str()), (Some("rejected"), Some("AC04")));
    assert_eq!(coll(&eb)["state"], "pending");
    let kinds = kinds_of_messages(&app, &psp, &a).await;
    assert_eq!(kinds.iter().filter(|k| *k == "direct_debit_rejected").count(), 1, "{kinds:?}");
    let mail =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={}", id(&a)))).await.json();
    let rejected_mail = mail["data"].as_array().unwrap().iter().find(|m| m["kind"] == "direct_debit_rejected").unwrap();
    let body = rejected_mail.to_string();
    assert!(body.contains("konnte nicht eingezogen werden") || body.contains("could not be collected"), "{body}");

    // Read again: known, nothing new.
    let again = import_status_report(&app, &report).await;
    assert_eq!(again["rejected"][0]["outcome"], "known", "{again}");
    assert_eq!(kinds_of_messages(&app, &psp, &a).await.len(), kinds.len());

    // The collection day: B is booked, A is neither booked nor collected again, and not late.
    let on = crate::sepa_xsd::collection_day(due);
    crate::dunning::advance_to(&app, &psp, on).await;
    assert_eq!(get_capture(&app, &psp, &id(&b)).await["state"], "paid");
    let v = get_capture(&app, &psp, &id(&a)).await;
    assert_eq!(v["outstanding"], 11900, "{v}");
    let r = app.send(app.admin(Method::POST, "/admin/v1/direct-debit-files")).await;
    assert_eq!(r.json(), json!([]), "a rejected collection is not presented again");
    // AC04 ends the mandate's use: the buyer pays by transfer now.
    let order = app.send(app.psp(&psp, Method::GET, &format!("/v1/orders/{}", a["order_id"].as_str().unwrap()))).await;
    assert!(order.text().contains("bank_transfer"), "{}", order.text());
    // Dunning waits for the date the e-mail gave (ten days), then starts.
    let pay_by = due.max(today + Duration::days(10));
    crate::dunning::advance_to(&app, &psp, pay_by).await;
    assert!(!kinds_of_messages(&app, &psp, &a).await.iter().any(|k| k == "dunning"));
    crate::dunning::advance_to(&app, &psp, pay_by + Duration::days(20)).await;
    let kinds = kinds_of_messages(&app, &psp, &a).await;
    assert!(kinds.iter().any(|k| k == "dunning"), "dunned after the date: {kinds:?}");
    assert!(!kinds.iter().any(|k| k == "payment_reminder" || k == "direct_debit_returned"), "{kinds:?}");
    verify_ledger(&app).await;
}

/// A payout whose transfer the bank rejects as a whole file (pain.002 group status `RJCT`, no
/// transaction detail) is `rejected` once, also when two operators import the report at once: `payout.rejected` goes out, the amount is owed to the PSP
/// again, and the next payout pays it as a line of its own; the ledger agrees throughout. A
/// report about a file netterms does not know changes nothing and says so.
#[tokio::test]
async fn a_payout_the_bank_rejects_is_paid_with_the_next() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    capture_of(&app, &psp, &mid, "PR-1", 11900).await;
    let today = crate::dunning::psp_today(&app, &psp).await;
    let monday = next(today, Weekday::Mon);
    crate::dunning::advance_to(&app, &psp, monday + Duration::days(1)).await;
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    let first = list["data"][0].clone();
    let pid = first["payout_id"].as_str().unwrap().to_owned();
    let amount = first["amount"].as_i64().unwrap();
    let xml = app.send(app.admin(Method::GET, &format!("/admin/v1/payouts/{pid}/pain.001"))).await.text();
    let msg_id = xml.split("<MsgId>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(first_payout_state(&app, &psp).await, "sent");

    let unknown = import_status_report(&app, &pain002("NTPOUNKNOWN", Some(("RJCT", "AC01")), &[])).await;
    assert_eq!(unknown["original"], "unknown", "{unknown}");
    assert_eq!(unknown["rejected"][0]["outcome"], "not_applied", "{unknown}");
    assert_eq!(first_payout_state(&app, &psp).await, "sent");

    // Two operators import the bank's report at once: the payout is rejected once.
    let report = pain002(&msg_id, Some(("RJCT", "AC04")), &[]);
    let (a, b) = tokio::join!(import_status_report(&app, &report), import_status_report(&app, &report));
    let mut outcomes = [a["rejected"][0]["outcome"].clone(), b["rejected"][0]["outcome"].clone()];
    outcomes.sort_by_key(|o| o.to_string());
    assert_eq!(outcomes, [json!("known"), json!("rejected")], "{a} / {b}");
    let sum = if a["rejected"][0]["outcome"] == "rejected" { a } else { b };
    assert_eq!(sum["original"], "payout", "{sum}");
    let item = &sum["rejected"][0];
    assert_eq!(
        (item["kind"].as_str(), item["id"].as_str(), item["outcome"].as_str(), item["reason_code"].as_str()),
        (Some("payout"), Some(pid.as_str()), Some("rejected"), Some("AC04")),
        "{sum}"
    );
    assert_eq!(
        app.count("ledger_entries WHERE kind = 'payout_rejected'").await,
        1,
        "one movement owes the payout again"
    );
    let p = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{pid}"))).await.json();
    assert_eq!((p["state"].as_str(), p["reject_reason"].as_str()), (Some("rejected"), Some("AC04")), "{p}");
    let ev = events_of(&app, &psp, "payout.rejected").await;
    assert_eq!((ev.len(), ev[0]["payout_id"].as_str()), (1, Some(pid.as_str())));
    verify_ledger(&app).await;
    assert_eq!(import_status_report(&app, &report).await["rejected"][0]["outcome"], "known");
    assert_eq!(events_of(&app, &psp, "payout.rejected").await.len(), 1);
    // A statement that shows it paid later changes nothing: the payout stays rejected.
    let r = app.send(app.admin(Method::POST, &format!("/admin/v1/payouts/{pid}/mark-paid"))).await;
    r.assert_error(409, "state_conflict");

    // The next cut-off pays it again, with a new capture.
    capture_of(&app, &psp, &mid, "PR-2", 5000).await;
    crate::dunning::advance_to(&app, &psp, monday + Duration::days(8)).await;
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    let next = list["data"].as_array().unwrap().iter().find(|p| p["payout_id"] != pid.as_str()).unwrap().clone();
    let detail =
        app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{}", next["payout_id"].as_str().unwrap()))).await;
    let detail = detail.json();
    let lines = detail["lines"].as_array().unwrap();
    let again: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "payout_rejected").collect();
    assert_eq!(again.len(), 1, "{detail}");
    assert_eq!(again[0]["amount"], amount);
    assert!(next["amount"].as_i64().unwrap() > amount, "{next}");
    verify_ledger(&app).await;
}
