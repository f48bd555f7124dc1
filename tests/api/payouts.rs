//! Paying PSPs (SPEC §10) on the sandbox clock: weekly payouts of what the ledger owes, their
//! lines and CSV reports adding up to the cent, the SEPA file for the bank, the statement that
//! marks them paid, and runs that never pay twice.

use reqwest::Method;
use serde_json::{Value, json};

use crate::camt::{Dialect, Ntry, Tx, camt053};
use crate::helpers::*;
use crate::orders::{amount, verify_ledger};
use crate::payments::{events_of, import};

/// What the ledger says the PSP is owed by its captures, refunds and direct payments (all
/// movements but payouts), in cents.
async fn owed_by_ledger(app: &TestApp, psp: &TestPsp) -> i64 {
    let mut conn = app.db().conn().await.unwrap();
    let account = format!("psp_payable:{}", psp.psp_id);
    let sum: netterms::store::StoreResult<i64> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account = $1 AND e.kind <> 'payout'",
            )
            .bind(account).fetch_one(&mut *c).await?
        }))
    }
    .await;
    -sum.unwrap()
}

/// The fees of the captures a payout paid out.
async fn fees_of(app: &TestApp, psp: &TestPsp, payout: &str) -> i64 {
    let lines = app.send(app.psp(psp, Method::GET, &format!("/v1/payouts/{payout}?limit=1000"))).await.json();
    let mut fees = 0;
    for l in lines["lines"].as_array().unwrap().iter().filter(|l| l["kind"] == "capture") {
        let c = crate::payments::get_capture(app, psp, l["capture_id"].as_str().unwrap()).await;
        fees += c["fee"].as_i64().unwrap();
    }
    fees
}

fn decimal(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn csv_sum(csv: &str) -> (usize, i64) {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header = lines.next().unwrap();
    assert!(header.starts_with("payout_id,entry_id,booked_at,kind,amount,currency,"), "{header}");
    let mut n = 0;
    let mut sum = 0;
    for l in lines {
        let cols: Vec<&str> = l.split(',').collect();
        sum += cols[4].parse::<i64>().unwrap();
        n += 1;
    }
    (n, sum)
}

#[tokio::test]
async fn weekly_payouts_add_up_are_sent_and_paid_once() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let other = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let omid = app.create_merchant(&other, "other").await["merchant_id"].as_str().unwrap().to_owned();
    // Week 1: two invoices and a refund.
    let a = crate::portal::invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "W1-A", 11900).await;
    let b = crate::portal::invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "W1-B", 59500).await;
    crate::portal::invoice_for(&app, &other, &omid, "anna@kunde.example", "Kunde GmbH", "O-1", 23800).await;
    let refund = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{}/refunds", b["capture_id"].as_str().unwrap()))
                .json(&json!({"amount": amount(5950), "external_credit_note_number": "GS-1"})),
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text());
    let week1 = owed_by_ledger(&app, &psp).await;
    // To the next Monday: one payout of all of it.
    let today: chrono::NaiveDate = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json()["today"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    use chrono::Datelike;
    let monday = today + chrono::Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    let adv = crate::dunning::advance_to(&app, &psp, monday).await;
    assert_eq!(adv["ran"]["payouts"], 1, "{adv}");
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let p1 = list["data"][0].clone();
    assert_eq!((p1["amount"].as_i64(), p1["state"].as_str()), (Some(week1), Some("pending")), "{p1}");
    assert_eq!(p1["period_end"], monday.to_string());
    assert_eq!(p1["line_count"], 3);
    // Another PSP sees none of it; its own run is its own.
    let p1_id = p1["payout_id"].as_str().unwrap().to_owned();
    app.send(app.psp(&other, Method::GET, &format!("/v1/payouts/{p1_id}")))
        .await
        .assert_error(404, "resource_not_found");
    app.send(app.psp(&other, Method::GET, &format!("/v1/payouts/{p1_id}/report.csv")))
        .await
        .assert_error(404, "resource_not_found");

    // Its lines (paged) and its CSV add up to it.
    let page = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p1_id}?limit=2"))).await.json();
    assert_eq!((page["lines"].as_array().unwrap().len(), page["has_more"].as_bool()), (2, Some(true)));
    let last = page["lines"][1]["entry_id"].as_str().unwrap();
    let rest = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p1_id}?starting_after={last}"))).await.json();
    let lines: Vec<Value> =
        page["lines"].as_array().unwrap().iter().chain(rest["lines"].as_array().unwrap()).cloned().collect();
    assert_eq!(lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum::<i64>(), week1);
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["capture", "capture", "refund"]);
    let refund_line = &lines[2];
    assert_eq!(
        (refund_line["amount"].as_i64(), refund_line["external_credit_note_number"].as_str()),
        (Some(-5950), Some("GS-1"))
    );
    assert_eq!(refund_line["external_invoice_number"], "W1-B");
    assert_eq!(lines[0]["merchant_external_id"], "shop");
    assert_eq!(lines[0]["capture_id"], a["capture_id"]);
    let csv = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p1_id}/report.csv"))).await;
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv_sum(&csv.text()), (3, week1));
    // Gross, fee and net per line (a PSP splits them per merchant): a capture's gross less
    // netterms' fee is what it adds; a refund gives no fee back.
    let text = csv.text();
    let mut rows = text.split("\r\n").filter(|l| !l.is_empty());
    assert!(rows.next().unwrap().ends_with(",merchant_external_id,gross,fee,net"), "{text}");
    for row in rows {
        let cols: Vec<&str> = row.split(',').collect();
        let n = |i: usize| cols[i].parse::<i64>().unwrap();
        let (kind, amount, gross, fee, net) = (cols[3], n(4), n(16), n(17), n(18));
        assert_eq!((gross - fee, net), (net, amount), "{row}");
        match kind {
            "capture" => assert!(fee > 0 && gross > net, "{row}"),
            _ => assert_eq!(fee, 0, "{row}"),
        }
    }
    for l in &lines {
        assert_eq!(l["gross"].as_i64().unwrap() - l["fee"].as_i64().unwrap(), l["amount"].as_i64().unwrap(), "{l}");
    }

    // Running again — the scan, another node — makes nothing more.
    let again = netterms::service::clock::run_due_for_all(&app.services).await.unwrap();
    assert_eq!(again.payouts, 0);
    let psp_id = netterms::domain::ids::PspId(uuid::Uuid::parse_str(&psp.psp_id).unwrap());
    let at = app.services.now_for(&mut app.db().conn().await.unwrap(), psp_id).await.unwrap();
    let (x, y) = tokio::join!(
        netterms::service::payouts::run_for(&app.services, psp_id, at),
        netterms::service::payouts::run_for(&app.services, psp_id, at)
    );
    assert_eq!((x.unwrap(), y.unwrap()), (0, 0));
    assert_eq!(app.count("payouts").await, 1, "the other PSP's clock has not reached its Monday");
    assert_eq!(app.count("fee_invoices").await, 1, "one fee invoice with the one payout");
    crate::dunning::advance_to(&app, &other, monday).await;
    let theirs = app.send(app.psp(&other, Method::GET, "/v1/payouts")).await.json();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["data"][0]["amount"], owed_by_ledger(&app, &other).await);

    // Week 2: a third invoice, and the buyer paid the merchant directly on the first.
    crate::portal::invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "W2-C", 23800).await;
    let direct = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{}/confirm-payment", a["capture_id"].as_str().unwrap()))
                .json(&json!({"amount": 11900, "external_payment_id": "DP-1"})),
        )
        .await;
    assert!(direct.status.is_success(), "{}", direct.text());
    // And a dispute of part of the second, charged back: the PSP bears it.
    let d = app
        .send(app.psp(&psp, Method::POST, "/v1/sandbox/disputes").json(&json!({
            "capture_id": b["capture_id"], "reason_code": "faulty_goods", "amount": 5000})))
        .await;
    assert_eq!(d.status, 201, "{}", d.text());
    let dispute_id = d.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .send(
            app.admin(Method::POST, &format!("/admin/v1/disputes/{dispute_id}/close"))
                .json(&json!({"result": "chargeback"})),
        )
        .await;
    assert_eq!(r.json()["charged_back"], 5000, "{}", r.text());
    crate::dunning::advance_to(&app, &psp, monday + chrono::Duration::days(7)).await;
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let p2 = list["data"][0].clone();
    let p2_id = p2["payout_id"].as_str().unwrap().to_owned();
    let total = owed_by_ledger(&app, &psp).await;
    assert_eq!(
        p1["amount"].as_i64().unwrap() + p2["amount"].as_i64().unwrap(),
        total,
        "every cent the ledger owes, once"
    );
    let csv = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p2_id}/report.csv"))).await.text();
    assert_eq!(csv_sum(&csv), (3, p2["amount"].as_i64().unwrap()));
    let lines = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p2_id}"))).await.json()["lines"].clone();
    let cb = lines.as_array().unwrap().iter().find(|l| l["kind"] == "chargeback").expect("a chargeback line").clone();
    assert_eq!(
        (cb["amount"].as_i64(), cb["dispute_id"].as_str(), cb["external_invoice_number"].as_str()),
        (Some(-5000), Some(dispute_id.as_str()), Some("W1-B")),
        "{cb}"
    );
    assert!(csv.contains(&dispute_id), "the CSV names the dispute");
    verify_ledger(&app).await;

    // The SEPA file for the bank: valid, to the PSP's IBAN, the payout id as end-to-end id.
    let xml = app.send(app.admin(Method::GET, &format!("/admin/v1/payouts/{p1_id}/pain.001"))).await;
    assert_eq!(xml.status, 200, "{}", xml.text());
    let xml = xml.text();
    let e2e = p1["end_to_end_id"].as_str().unwrap().to_owned();
    assert_eq!(e2e, p1_id.replace('-', ""));
    assert!(
        xml.contains(&format!("<EndToEndId>{e2e}</EndToEndId>")) && xml.contains("DE89370400440532013000"),
        "{xml}"
    );
    crate::sepa_xsd::validate(&xml, "pain.001.001.09.xsd");
    let p = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p1_id}"))).await.json();
    assert_eq!(p["state"], "sent");

    // The statement shows the debit: paid, once; another amount under that id changes nothing.
    let debit = |bank_ref: &str, cents: i64| Ntry {
        bank_ref: Some(bank_ref.into()),
        amount: cents,
        credit: false,
        status: "BOOK",
        batch: None,
        txs: vec![Tx { e2e: Some(e2e.clone()), amount: Some(cents), ..Tx::default() }],
    };
    let wrong = import(&app, &camt053(Dialect::V08, "S-PO-0", &[debit("PO-0", 1)])).await;
    assert_eq!(wrong["payouts_paid"], 0, "{wrong}");
    let sum = import(&app, &camt053(Dialect::V08, "S-PO-1", &[debit("PO-1", p1["amount"].as_i64().unwrap())])).await;
    assert_eq!(sum["payouts_paid"], 1, "{sum}");
    let p = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p1_id}"))).await.json();
    assert_eq!(p["state"], "paid");
    let again = import(&app, &camt053(Dialect::V08, "S-PO-1", &[debit("PO-1", p1["amount"].as_i64().unwrap())])).await;
    assert_eq!((again["payouts_paid"].as_i64(), again["duplicates"].as_i64()), (Some(0), Some(1)));
    app.send(app.admin(Method::POST, &format!("/admin/v1/payouts/{p1_id}/mark-paid")))
        .await
        .assert_error(409, "state_conflict");
    // The second by the operator.
    let r = app.send(app.admin(Method::POST, &format!("/admin/v1/payouts/{p2_id}/mark-paid"))).await;
    assert_eq!((r.status.as_u16(), r.json()["state"].as_str()), (200, Some("paid")), "{}", r.text());
    app.send(app.admin(Method::POST, &format!("/admin/v1/payouts/{}/mark-paid", uuid::Uuid::now_v7())))
        .await
        .assert_error(404, "resource_not_found");
    // The fee invoice of each payout: the fees it withheld, valid as Factur-X and as XRechnung.
    for (pid, captures) in [(&p1_id, 2), (&p2_id, 1)] {
        let pdf = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{pid}/fee-invoice.pdf"))).await;
        assert_eq!((pdf.status.as_u16(), pdf.headers["content-type"].to_str().unwrap()), (200, "application/pdf"));
        crate::einvoice::check_pdf(&pdf.bytes);
        let xml = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{pid}/fee-invoice.xml"))).await.text();
        crate::einvoice::check_rules(&xml);
        assert!(xml.contains("urn:xeinkauf.de:kosit:xrechnung_3.0"), "{xml}");
        let fees: i64 = fees_of(&app, &psp, pid).await;
        assert!(
            xml.contains(&format!("<ram:GrandTotalAmount>{}</ram:GrandTotalAmount>", decimal(fees))),
            "{fees} {xml}"
        );
        let counted = if captures == 1 { "1 Rechnung,".to_owned() } else { format!("{captures} Rechnungen,") };
        assert!(xml.contains(&format!("Gebühren für {counted}")), "{xml}");
        let text = crate::smtp::pdf_text(&pdf.bytes);
        assert!(text.contains("NT-") && text.contains(&decimal(fees).replace('.', ",")), "{text}");
        // The issuer's register entry and managing directors (§ 35a GmbHG), in the XML too.
        assert!(text.contains("Registergericht") && text.contains("Geschäftsführung"), "{text}");
        assert!(xml.contains("<ram:SpecifiedLegalOrganization><ram:ID>HRB"), "{xml}");
    }
    app.send(app.psp(&other, Method::GET, &format!("/v1/payouts/{p1_id}/fee-invoice.xml")))
        .await
        .assert_error(404, "resource_not_found");
    // The statement: what the second payout is made of, adding up to it.
    let st = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{p2_id}/statement.pdf"))).await;
    assert_eq!((st.status.as_u16(), st.headers["content-type"].to_str().unwrap()), (200, "application/pdf"));
    let text = crate::smtp::pdf_text(&st.bytes);
    let euros = |m: i64| format!("{},{:02}", m / 100, (m % 100).abs());
    let amount = euros(p2["amount"].as_i64().unwrap());
    for needle in ["Rückbelastungen", "Direkt an den Händler", &euros(-5000), &amount, "HRB 000000 B"] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    app.send(app.psp(&other, Method::GET, &format!("/v1/payouts/{p2_id}/statement.pdf")))
        .await
        .assert_error(404, "resource_not_found");
    let created = events_of(&app, &psp, "payout.created").await;
    let paid = events_of(&app, &psp, "payout.paid").await;
    assert_eq!((created.len(), paid.len()), (2, 2));
    assert_eq!(paid[0]["payout_id"], p1_id.as_str());
    verify_ledger(&app).await;
}

#[tokio::test]
async fn a_week_owing_nothing_pays_nothing_and_carries_over() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let a = crate::portal::invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "N-1", 11900).await;
    let today: chrono::NaiveDate = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json()["today"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    use chrono::Datelike;
    let monday = today + chrono::Duration::days(7 - i64::from(today.weekday().num_days_from_monday()));
    crate::dunning::advance_to(&app, &psp, monday).await;
    // Week 2: the invoice is refunded in full — the PSP owes it back: nothing is paid.
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{}/refunds", a["capture_id"].as_str().unwrap()))
                .json(&json!({"amount": amount(11900), "external_credit_note_number": "GS-9"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let adv = crate::dunning::advance_to(&app, &psp, monday + chrono::Duration::days(7)).await;
    assert_eq!(adv["ran"]["payouts"], 0, "{adv}");
    // Week 3: a new invoice outweighs it; the refund is recovered from this payout.
    crate::portal::invoice_for(&app, &psp, &mid, "anna@kunde.example", "Kunde GmbH", "N-2", 59500).await;
    crate::dunning::advance_to(&app, &psp, monday + chrono::Duration::days(14)).await;
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    let amounts: Vec<i64> = list["data"].as_array().unwrap().iter().map(|p| p["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts.len(), 2, "{list}");
    assert_eq!(amounts.iter().sum::<i64>(), owed_by_ledger(&app, &psp).await);
    let newest = list["data"][0]["payout_id"].as_str().unwrap();
    let detail = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{newest}"))).await.json();
    let kinds: Vec<&str> = detail["lines"].as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["refund", "capture"], "the refund carried over into it");
    verify_ledger(&app).await;
}

/// A PSP paying out at `frequency`.
async fn psp_paid(app: &TestApp, frequency: &str) -> TestPsp {
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&json!({
            "name": "Model Payments GmbH", "fee_rate_bps": 150, "fee_fixed": 25,
            "iban": "DE89370400440532013000", "payout_frequency": frequency,
            "billing": {"street": "Zahlweg 5", "postal_code": "60311", "city": "Frankfurt am Main", "country": "DE"}
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let password = app.reveal(v["password_url"].as_str().unwrap()).await;
    TestPsp {
        psp_id: v["psp_id"].as_str().unwrap().to_owned(),
        username: v["username"].as_str().unwrap().to_owned(),
        password,
        credential_id: String::new(),
    }
}

/// An invoice as the model sees it.
struct Inv {
    id: String,
    reference: String,
    iban: String,
    gross: i64,
    refunded: i64,
    paid: i64,
    charged_back: i64,
    /// An open dispute: its id and amount.
    dispute: Option<(String, i64)>,
}

impl Inv {
    /// What the buyer still owes on it.
    fn open(&self) -> i64 {
        (self.gross - self.refunded - self.charged_back - self.paid).max(0)
    }

    /// What a refund or a dispute may still take.
    fn room(&self) -> i64 {
        self.gross - self.refunded - self.charged_back
    }
}

/// Property: for random sequences of captures, refunds, direct payments, buyer payments,
/// disputes (resolved or charged back) and days passing, the payouts are exactly those of a model that pays, at each cut-off, the sum of the
/// movements booked before it and not yet paid when that sum is positive (else carries it over);
/// so all payouts plus what is still open equal what the ledger owes the PSP. Buyer payments
/// change nothing of it. Seeded, so a failure names its case.
#[tokio::test]
async fn payouts_follow_the_model_for_random_histories() {
    use rand::{Rng, SeedableRng};
    let mut chargebacks = 0;
    for seed in 0..4u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let app = TestApp::spawn().await;
        let frequency = ["daily", "weekly", "monthly"][(seed % 3) as usize];
        let psp = psp_paid(&app, frequency).await;
        let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
        let freq = netterms::domain::psp::PayoutFrequency::parse(frequency).unwrap();
        // The model: movements (day booked, amount owed to the PSP), the payouts made.
        let mut movements: Vec<(chrono::NaiveDate, i64, bool)> = Vec::new();
        let mut expected: Vec<i64> = Vec::new();
        let mut invoices: Vec<Inv> = Vec::new();
        let mut day: chrono::NaiveDate =
            app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json()["today"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        let mut last_cut = netterms::service::payouts::cutoff(freq, day.and_hms_opt(12, 0, 0).unwrap().and_utc()).0;
        for step in 0..40 {
            match rng.gen_range(0..12) {
                0..=2 => {
                    let gross = rng.gen_range(500..60_000);
                    let c = crate::portal::invoice_for(
                        &app,
                        &psp,
                        &mid,
                        "m@kunde.example",
                        &format!("Modell {seed}-{step} GmbH"),
                        &format!("M-{seed}-{step}"),
                        gross,
                    )
                    .await;
                    movements.push((day, gross - c["fee"].as_i64().unwrap(), false));
                    let pi = &c["payment_instructions"];
                    invoices.push(Inv {
                        id: c["capture_id"].as_str().unwrap().to_owned(),
                        reference: pi["reference"].as_str().unwrap().to_owned(),
                        iban: pi["iban"].as_str().unwrap().to_owned(),
                        gross,
                        refunded: 0,
                        paid: 0,
                        charged_back: 0,
                        dispute: None,
                    });
                }
                3 | 4 if !invoices.is_empty() => {
                    let i = rng.gen_range(0..invoices.len());
                    let inv = &mut invoices[i];
                    let room = inv.room();
                    if room > 0 {
                        let x = rng.gen_range(1..=room);
                        let r = app
                            .send(app.psp(&psp, Method::POST, &format!("/v1/captures/{}/refunds", inv.id)).json(
                                &json!({"amount": amount(x), "external_credit_note_number": format!("GS-{step}")}),
                            ))
                            .await;
                        assert_eq!(r.status, 201, "seed {seed}: {}", r.text());
                        inv.refunded += x;
                        movements.push((day, -x, false));
                    }
                }
                5 if !invoices.is_empty() => {
                    let i = rng.gen_range(0..invoices.len());
                    let inv = &mut invoices[i];
                    let open = inv.open();
                    if open > 0 {
                        let x = rng.gen_range(1..=open);
                        let r = app
                            .send(
                                app.psp(&psp, Method::POST, &format!("/v1/captures/{}/confirm-payment", inv.id))
                                    .json(&json!({"amount": x, "external_payment_id": format!("DP-{step}")})),
                            )
                            .await;
                        assert!(r.status.is_success(), "seed {seed}: {}", r.text());
                        inv.paid += x;
                        movements.push((day, -x, false));
                    }
                }
                6 if !invoices.is_empty() => {
                    // The buyer pays netterms: nothing the PSP is owed changes.
                    let i = rng.gen_range(0..invoices.len());
                    let inv = &mut invoices[i];
                    let open = inv.open();
                    if open > 0 {
                        let x = rng.gen_range(1..=open);
                        let r = app
                            .send(app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&json!({
                                "iban": inv.iban, "amount": {"currency": "EUR", "value": x},
                                "reference": inv.reference, "debtor_name": "Modell GmbH"
                            })))
                            .await;
                        assert!(r.status.is_success(), "seed {seed}: {}", r.text());
                        inv.paid += x;
                    }
                }
                10 if !invoices.is_empty() => {
                    // A dispute, defended at once (so that no deadline decides it).
                    let i = rng.gen_range(0..invoices.len());
                    let inv = &mut invoices[i];
                    if inv.dispute.is_none() && inv.room() > 0 {
                        let x = rng.gen_range(1..=inv.room());
                        let r = app
                            .send(app.psp(&psp, Method::POST, "/v1/sandbox/disputes").json(&json!({
                                "capture_id": inv.id, "reason_code": "faulty_goods", "amount": x})))
                            .await;
                        assert_eq!(r.status, 201, "seed {seed}: {}", r.text());
                        let d = r.json()["id"].as_str().unwrap().to_owned();
                        let r = app
                            .send(
                                app.psp(&psp, Method::POST, &format!("/v1/disputes/{d}/defend"))
                                    .json(&json!({"reason": "geliefert"})),
                            )
                            .await;
                        assert_eq!(r.status, 200, "seed {seed}: {}", r.text());
                        inv.dispute = Some((d, x));
                    }
                }
                11 if invoices.iter().any(|i| i.dispute.is_some()) => {
                    let inv = invoices.iter_mut().find(|i| i.dispute.is_some()).unwrap();
                    let (d, x) = inv.dispute.take().unwrap();
                    let result = if rng.gen_bool(0.5) { "chargeback" } else { "resolved" };
                    let r = app
                        .send(
                            app.admin(Method::POST, &format!("/admin/v1/disputes/{d}/close"))
                                .json(&json!({"result": result})),
                        )
                        .await;
                    assert_eq!(r.status, 200, "seed {seed}: {}", r.text());
                    if result == "chargeback" {
                        let taken = x.min(inv.room());
                        assert_eq!(r.json()["charged_back"], taken, "seed {seed}");
                        inv.charged_back += taken;
                        if taken > 0 {
                            chargebacks += 1;
                            movements.push((day, -taken, false));
                        }
                    }
                }
                _ => {
                    let days = rng.gen_range(1..=9);
                    let to = day + chrono::Duration::days(days);
                    crate::dunning::advance_to(&app, &psp, to).await;
                    // The model's runs: each cut-off passed, in order.
                    let mut d = day + chrono::Duration::days(1);
                    while d <= to {
                        let cut = netterms::service::payouts::cutoff(freq, d.and_hms_opt(0, 0, 0).unwrap().and_utc()).0;
                        if cut > last_cut {
                            last_cut = cut;
                            let open: i64 = movements.iter().filter(|m| !m.2 && m.0 < cut).map(|m| m.1).sum();
                            if open > 0 {
                                expected.push(open);
                                for m in movements.iter_mut().filter(|m| !m.2 && m.0 < cut) {
                                    m.2 = true;
                                }
                            }
                        }
                        d += chrono::Duration::days(1);
                    }
                    day = to;
                }
            }
        }
        let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts?limit=100")).await.json();
        let mut got: Vec<i64> =
            list["data"].as_array().unwrap().iter().map(|p| p["amount"].as_i64().unwrap()).collect();
        got.reverse();
        assert_eq!(got, expected, "seed {seed} ({frequency})");
        let open: i64 = movements.iter().filter(|m| !m.2).map(|m| m.1).sum();
        assert_eq!(got.iter().sum::<i64>() + open, owed_by_ledger(&app, &psp).await, "seed {seed}");
        for p in list["data"].as_array().unwrap() {
            let id = p["payout_id"].as_str().unwrap();
            let csv = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{id}/report.csv"))).await.text();
            assert_eq!(csv_sum(&csv).1, p["amount"].as_i64().unwrap(), "seed {seed}");
        }
        verify_ledger(&app).await;
    }
    assert!(chargebacks > 0, "the histories include chargebacks");
}

/// A PSP activated with these billing details.
async fn psp_billed(app: &TestApp, iban: &str, billing: Value) -> TestPsp {
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&json!({
            "name": "Billed Payments GmbH", "fee_rate_bps": 150, "fee_fixed": 25,
            "iban": iban, "payout_frequency": "daily", "billing": billing,
            // Outside the EEA the payout bank's BIC is required.
            "bic": iban.starts_with("CH").then_some("POFICHBEXXX")
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["psp"]["billing"]["country"], billing["country"], "{v}");
    let password = app.reveal(v["password_url"].as_str().unwrap()).await;
    TestPsp {
        psp_id: v["psp_id"].as_str().unwrap().to_owned(),
        username: v["username"].as_str().unwrap().to_owned(),
        password,
        credential_id: String::new(),
    }
}

/// Fee invoices: one per payout with fees, numbered without gaps across PSPs, taxed by where the
/// PSP is, each valid as Factur-X and XRechnung, and like the official samples.
#[tokio::test]
async fn fee_invoices_are_numbered_without_gaps_and_taxed_by_where_the_psp_is() {
    let app = TestApp::spawn().await;
    let address = |country: &str, vat: Option<&str>| {
        json!({"street": "Zahlweg 5", "postal_code": "1010", "city": "Wien", "country": country, "vat_id": vat,
               "email": "buchhaltung@psp.example"})
    };
    // Bad billing details are refused and make nothing.
    let before = app.count("psps").await;
    for billing in [json!({"country": "Austria"}), json!({"email": "not-an-address"}), json!({"town": "Wien"})] {
        let r = app
            .send(app.admin(Method::POST, "/admin/v1/psps").json(&json!({
                "name": "X", "fee_rate_bps": 150, "fee_fixed": 25, "iban": "DE89370400440532013000",
                "payout_frequency": "daily", "billing": billing})))
            .await;
        assert!(r.status == 422 || r.status == 400, "{}", r.text());
    }
    assert_eq!(app.count("psps").await, before);
    let cases = [
        ("DE89370400440532013000", address("DE", Some("DE987654321")), "S", "19"),
        ("AT611904300234573201", address("AT", Some("ATU12345678")), "AE", "0"),
        ("CH9300762011623852957", address("CH", Some("CHE-123.456.789")), "O", ""),
        ("AT611904300234573201", address("AT", None), "S", "19"),
    ];
    let mut numbers = Vec::new();
    for (i, (iban, billing, category, rate)) in cases.iter().enumerate() {
        let psp = psp_billed(&app, iban, billing.clone()).await;
        let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
        let c =
            crate::portal::invoice_for(&app, &psp, &mid, "f@kunde.example", "Fee GmbH", &format!("F-{i}"), 59500).await;
        let fee = c["fee"].as_i64().unwrap();
        let today: chrono::NaiveDate = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/clock")).await.json()["today"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        crate::dunning::advance_to(&app, &psp, today + chrono::Duration::days(1)).await;
        let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
        let pid = list["data"][0]["payout_id"].as_str().unwrap().to_owned();
        let xml = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{pid}/fee-invoice.xml"))).await;
        assert_eq!(xml.status, 200, "{}", xml.text());
        let xml = xml.text();
        crate::einvoice::check_rules(&xml);
        crate::einvoice::compare_with_fixtures(&xml);
        let pdf = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{pid}/fee-invoice.pdf"))).await;
        crate::einvoice::check_pdf(&pdf.bytes);
        assert!(xml.contains(&format!("<ram:CategoryCode>{category}</ram:CategoryCode>")), "{xml}");
        if rate.is_empty() {
            // Outside the scope of VAT: no rate on the line (BR-O-05), 0 in the breakdown
            // (XRechnung BR-DE-14), and no VAT identifier of either party (BR-O-02).
            assert_eq!(xml.matches("<ram:RateApplicablePercent>0</ram:RateApplicablePercent>").count(), 1, "{xml}");
            assert!(!xml.contains("schemeID=\"VA\""), "{xml}");
        } else {
            assert!(xml.contains(&format!("<ram:RateApplicablePercent>{rate}</ram:RateApplicablePercent>")), "{xml}");
        }
        if *category != "S" {
            assert!(xml.contains("<ram:ExemptionReasonCode>"), "{xml}");
        }
        // The totals: what was withheld, split into taxable amount and VAT; nothing due.
        let (net, vat) = netterms::domain::einvoice::split_vat(fee, if *category == "S" { 1900 } else { 0 });
        for (el, v) in [("TaxBasisTotalAmount", net), ("GrandTotalAmount", fee), ("TotalPrepaidAmount", fee)] {
            assert!(xml.contains(&format!("<ram:{el}>{}</ram:{el}>", decimal(v))), "{el}: {xml}");
        }
        assert!(xml.contains(&format!(">{}</ram:TaxTotalAmount>", decimal(vat))));
        assert!(xml.contains("<ram:DuePayableAmount>0.00</ram:DuePayableAmount>"));
        let number = xml.split("<ram:ID>NT-").nth(1).unwrap().split('<').next().unwrap().to_owned();
        numbers.push(number);
        // Another PSP's invoice is 404; so is a payout's without one.
        app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{}/fee-invoice.pdf", uuid::Uuid::now_v7())))
            .await
            .assert_error(404, "resource_not_found");
    }
    // `YYYY-NNNNNN`: the year of issue on the PSP's clock, then one number after the other.
    let year = &numbers[0][..4];
    let expected: Vec<String> = (1..=4).map(|n| format!("{year}-{n:06}")).collect();
    assert_eq!(numbers, expected, "one number after the other");
    verify_ledger(&app).await;
}

/// Two PSPs' payout runs at once (two nodes): each issues its fee invoice, and the numbers of the
/// year are 1 and 2 — none twice, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fee_invoice_numbers_stay_gap_free_when_runs_race() {
    let app = TestApp::spawn().await;
    let mut psps = Vec::new();
    for i in 0..2 {
        let psp = psp_paid(&app, "daily").await;
        let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
        crate::portal::invoice_for(&app, &psp, &mid, "r@kunde.example", "Race GmbH", &format!("RACE-{i}"), 23800).await;
        psps.push(netterms::domain::ids::PspId(uuid::Uuid::parse_str(&psp.psp_id).unwrap()));
    }
    let at = netterms::clock::PspTime { now: chrono::Utc::now() + chrono::Duration::days(1), wall: chrono::Utc::now() };
    let (a, b) = tokio::join!(
        netterms::service::payouts::run_for(&app.services, psps[0], at),
        netterms::service::payouts::run_for(&app.services, psps[1], at)
    );
    assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
    let year = i64::from(chrono::Datelike::year(&at.now.date_naive()));
    let mut conn = app.db().conn().await.unwrap();
    let seqs = netterms::store::fee_invoices::numbers_of_year(&mut conn, year).await.unwrap();
    assert_eq!(seqs, [1, 2]);
    drop(conn);
    verify_ledger(&app).await;
}

/// A PSP without a billing address (as `psp create` makes one without billing flags) gets no
/// fee invoice that would break XRechnung (BR-DE-8/9: the buyer's city and post code): the
/// invoice is held, and issued — valid under both Schematrons — once the operator gives the
/// address; the numbers stay without gaps.
#[tokio::test]
async fn a_fee_invoice_waits_for_the_psps_billing_address() {
    let app = TestApp::spawn().await;
    let r = app
        .send(app.admin(Method::POST, "/admin/v1/psps").json(&json!({
            "name": "Addressless Pay GmbH", "fee_rate_bps": 150, "fee_fixed": 25,
            "iban": "DE89370400440532013000", "payout_frequency": "daily"
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let psp = TestPsp {
        psp_id: v["psp_id"].as_str().unwrap().to_owned(),
        username: v["username"].as_str().unwrap().to_owned(),
        password: app.reveal(v["password_url"].as_str().unwrap()).await,
        credential_id: String::new(),
    };
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    crate::portal::invoice_for(&app, &psp, &mid, "f@kunde.example", "Fee GmbH", "H-1", 59500).await;
    let today = crate::dunning::psp_today(&app, &psp).await;
    crate::dunning::advance_to(&app, &psp, today + chrono::Duration::days(1)).await;
    let list = app.send(app.psp(&psp, Method::GET, "/v1/payouts")).await.json();
    let pid = list["data"][0]["payout_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/payouts/{pid}/fee-invoice.xml");
    app.send(app.psp(&psp, Method::GET, &path)).await.assert_error(404, "resource_not_found");
    assert_eq!(app.count("fee_invoices").await, 0, "held");
    verify_ledger(&app).await;
    // A billing address without a city is not enough.
    let patch = |billing: Value| {
        app.admin(Method::PATCH, &format!("/admin/v1/psps/{}", psp.psp_id)).json(&json!({"billing": billing}))
    };
    let r = app.send(patch(json!({"street": "Zahlweg 5", "country": "DE"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.count("fee_invoices").await, 0, "still held");
    let r = app
        .send(patch(
            json!({"street": "Zahlweg 5", "postal_code": "60311", "city": "Frankfurt am Main", "country": "DE"}),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.count("fee_invoices").await, 1, "issued once the address is there");
    let xml = app.send(app.psp(&psp, Method::GET, &path)).await;
    assert_eq!(xml.status, 200, "{}", xml.text());
    let xml = xml.text();
    crate::einvoice::check_rules(&xml);
    assert!(xml.contains("<ram:CityName>Frankfurt am Main</ram:CityName>"), "{xml}");
    let pdf = app.send(app.psp(&psp, Method::GET, &format!("/v1/payouts/{pid}/fee-invoice.pdf"))).await;
    crate::einvoice::check_pdf(&pdf.bytes);
    // Changing the address again issues nothing twice.
    app.send(patch(
        json!({"street": "Zahlweg 7", "postal_code": "60311", "city": "Frankfurt am Main", "country": "DE"}),
    ))
    .await;
    assert_eq!(app.count("fee_invoices").await, 1);
    verify_ledger(&app).await;
}

/// Captures posted while sandbox advances cross cut-offs (issue 19, item 6): every movement of
/// the PSP's payable dated before a run's cut-off is in that run's payout (or an earlier one),
/// and none of a later payout is dated before an earlier cut-off.
#[tokio::test]
async fn every_movement_dated_before_a_cut_off_is_in_its_payout() {
    let app = TestApp::spawn_with(|c| c.db_max_connections = 12).await;
    let psp = psp_billed(
        &app,
        "DE89370400440532013000",
        json!({"street": "Zahlweg 5", "postal_code": "60311", "city": "Frankfurt am Main", "country": "DE"}),
    )
    .await;
    let mid = app.create_merchant(&psp, "race").await["merchant_id"].as_str().unwrap().to_owned();
    let mut orders = Vec::new();
    for _ in 0..120 {
        orders.push(crate::orders::created_order(&app, &psp, &mid).await);
    }
    let writers = orders.chunks(20).enumerate().map(|(w, chunk)| {
        let (app, psp) = (&app, &psp);
        async move {
            for (i, oid) in chunk.iter().enumerate() {
                let r = app
                    .send(app.psp(psp, Method::POST, &format!("/v1/orders/{oid}/captures")).json(&json!({
                        "amount": amount(11900), "external_invoice_number": format!("RACE-{w}-{i}")
                    })))
                    .await;
                assert!(r.status == 201 || r.status == 409, "{} {}", r.status, r.text());
            }
        }
    });
    let advances = async {
        for _ in 0..6 {
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 1}))).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    tokio::join!(futures::future::join_all(writers), advances);
    let r = app.send(app.psp(&psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"days": 1}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let account = format!("psp_payable:{}", psp.psp_id);
    let mut conn = app.db().conn().await.unwrap();
    let counts: netterms::store::StoreResult<(i64, i64, i64)> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            // Paid later than its date says.
            let late: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM payout_lines pl JOIN payouts p ON p.id = pl.payout_id \
                 JOIN ledger_entries e ON e.id = pl.entry_id WHERE EXISTS (SELECT 1 FROM payouts q \
                 WHERE q.psp_id = p.psp_id AND q.currency = p.currency AND q.cutoff < p.cutoff AND e.created_at < q.cutoff)",
            )
            .fetch_one(&mut *c).await?;
            // Not paid although dated before the last cut-off.
            let unpaid: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id \
                 WHERE l.account = $1 AND e.kind <> 'payout' \
                 AND e.created_at < (SELECT MAX(cutoff) FROM payout_runs WHERE psp_id = $2) \
                 AND NOT EXISTS (SELECT 1 FROM payout_lines pl WHERE pl.entry_id = e.id)",
            )
            .bind(&account).bind(uuid::Uuid::parse_str(&psp.psp_id).unwrap()).fetch_one(&mut *c).await?;
            let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payouts").fetch_one(&mut *c).await?;
            (late, unpaid, runs)
        }))
    }
    .await;
    drop(conn);
    let (late, unpaid, payouts) = counts.unwrap();
    assert!(payouts >= 2, "{payouts} payouts");
    assert_eq!((late, unpaid), (0, 0), "movements paid out late / not at all");
    verify_ledger(&app).await;
}
