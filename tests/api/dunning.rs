//! An invoice's unpaid life on the PSP's clock (SPEC §9.3): reminder, late, dunning levels with
//! the flat fee and default interest across a base-rate change, collection; stopped by a refund
//! or a direct payment; each step once, whoever scans.

use chrono::{Datelike, Duration, NaiveDate};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::orders::{amount, created_order, setup, verify_ledger};
use crate::smtp::{Mail, SmtpServer, parse, pdf_qr_codes, pdf_text, pdf_tools};

pub async fn psp_today(app: &TestApp, psp: &TestPsp) -> NaiveDate {
    let v = app.send(app.psp(psp, Method::GET, "/v1/sandbox/clock")).await.json();
    v["today"].as_str().unwrap().parse().unwrap()
}

pub async fn advance_to(app: &TestApp, psp: &TestPsp, to: NaiveDate) -> Value {
    let r =
        app.send(app.psp(psp, Method::POST, "/v1/sandbox/clock/advance").json(&json!({"to": to.to_string()}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

pub async fn capture(app: &TestApp, psp: &TestPsp, mid: &str, number: &str) -> Value {
    crate::payments::capture_of(app, psp, mid, number, 11900).await
}

async fn get_capture(app: &TestApp, psp: &TestPsp, id: &str) -> Value {
    app.send(app.psp(psp, Method::GET, &format!("/v1/captures/{id}"))).await.json()
}

/// The PSP's dunning and capture events, oldest first: (type, data, date).
async fn dunning_events(app: &TestApp, psp: &TestPsp) -> Vec<(String, Value, NaiveDate)> {
    let v = app.send(app.psp(psp, Method::GET, "/v1/events?limit=100")).await.json();
    let mut out: Vec<(String, Value, NaiveDate)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let t = e["type"].as_str().unwrap();
            t.starts_with("dunning.") || t == "capture.late" || t == "capture.paid" || t == "capture.canceled"
        })
        .map(|e| {
            let at: chrono::DateTime<chrono::Utc> = e["created_at"].as_str().unwrap().parse().unwrap();
            (e["type"].as_str().unwrap().to_owned(), e["data"].clone(), at.date_naive())
        })
        .collect();
    out.reverse();
    out
}

async fn put_base_rate(app: &TestApp, from: NaiveDate, bps: i64) {
    let r = app
        .send(
            app.admin(Method::PUT, &format!("/admin/v1/base-rates/{from}"))
                .json(&json!({"rate_bps": bps, "source": "test"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The dunning entries of the ledger: (kind, amount on dunning income, negated), sorted.
async fn ledger_kinds(app: &TestApp) -> Vec<(String, i64)> {
    let mut conn = app.db().conn().await.unwrap();
    let rows: netterms::store::StoreResult<Vec<(String, i64)>> = async {
        Ok(netterms::with_conn!(&mut conn, c => {
            sqlx::query_as(
                "SELECT e.kind, CAST(-l.amount AS BIGINT) FROM ledger_entries e JOIN ledger_lines l ON l.entry_id = e.id \
                 WHERE l.account = 'dunning_income' ORDER BY e.kind, -l.amount",
            )
            .fetch_all(&mut *c).await?
        }))
    }
    .await;
    rows.unwrap()
}

/// The first 1 January or 1 July after `d`.
fn next_half_year(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() < 7 { (d.year(), 7) } else { (d.year() + 1, 1) };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap()
}

/// Default interest by hand: per day, open × (base + 9 points) / 365, summed, rounded half up.
fn by_hand(open: i64, days: &[(i64, i64)]) -> i64 {
    // (number of days, yearly rate in bps)
    let sum: i64 = days.iter().map(|(n, bps)| n * bps * open).sum();
    (sum + 3_650_000 / 2) / 3_650_000
}

#[tokio::test]
async fn an_unpaid_invoice_goes_from_reminder_to_collection_with_fee_and_interest() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(|c| c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()))).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let other = app.create_psp().await;
    let other_mid = app.create_merchant(&other, "other").await["merchant_id"].as_str().unwrap().to_owned();
    let theirs = capture(&app, &other, &other_mid, "B-1").await;

    // Place the due date ten days before a base-rate change (B), so that interest crosses it.
    let today = psp_today(&app, &psp).await;
    let b = next_half_year(today + Duration::days(41));
    let start = b - Duration::days(40);
    if start > today {
        advance_to(&app, &psp, start).await;
    }
    let before_b = if b.month() == 1 {
        NaiveDate::from_ymd_opt(b.year() - 1, 7, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(b.year(), 1, 1).unwrap()
    };
    put_base_rate(&app, before_b, 127).await;
    put_base_rate(&app, b, 250).await;

    let c = capture(&app, &psp, &mid, "A-1").await;
    let id = c["capture_id"].as_str().unwrap().to_owned();
    let due: NaiveDate = c["due_date"].as_str().unwrap().parse().unwrap();
    assert_eq!(due, b - Duration::days(10));
    assert_eq!(c["dunning"]["next_step_on"], (due - Duration::days(3)).to_string(), "the reminder first");

    // The payment information reaches the buyer by SMTP, with its PDF.
    app.run_jobs().await;
    let mails: Vec<Mail> = smtp.received().iter().map(|r| parse(&r.data)).collect();
    assert_eq!(mails.len(), 2, "one for each PSP's invoice");
    let info = mails.iter().find(|m| m.subject.contains("A-1")).unwrap();
    assert_eq!(info.to, "anna@kunde.example");
    assert!(info.subject.starts_with("Zahlungsinformationen zu Rechnung A-1"), "{}", info.subject);
    let iban = c["payment_instructions"]["iban"].as_str().unwrap();
    let reference = c["payment_instructions"]["reference"].as_str().unwrap();
    // The reference as people read it, in groups of four (the QR code carries it whole).
    let grouped = netterms::domain::text::grouped(reference, 4);
    assert!(grouped.starts_with("RF") && grouped.contains(' '), "{grouped}");
    for part in [&info.text, &info.html] {
        assert!(part.contains("119,00 €") && part.contains(iban) && part.contains(&grouped), "{part}");
        assert!(part.contains(&format!("{:02}.{:02}.{}", due.day(), due.month(), due.year())), "{part}");
        // Every e-mail ends with the imprint (issue 19, item 29).
        assert!(part.contains("HRB 000000 B") && part.contains("Geschäftsführung: Erika Mustermann"), "{part}");
    }
    assert_eq!(info.attachments.len(), 1);
    let (name, ctype, pdf) = &info.attachments[0];
    assert_eq!((name.as_str(), ctype.as_str()), ("Zahlungsinformationen-A-1.pdf", "application/pdf"));
    if pdf_tools() {
        let text = pdf_text(pdf);
        for needle in
            ["Zahlungsinformationen", "A-1", "119,00 €", iban, grouped.as_str(), "NTRMDEB1XXX", "HRB 000000 B"]
        {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        let codes = pdf_qr_codes(pdf);
        let expected = format!("BCD\n002\n1\nSCT\nNTRMDEB1XXX\nnetterms\n{iban}\nEUR119.00\n\n{reference}");
        assert_eq!(codes.iter().map(|c| c.trim_end()).collect::<Vec<_>>(), vec![expected.as_str()]);
    }
    // The same document for the PSP.
    let r = app.send(app.psp(&psp, Method::GET, &format!("/v1/captures/{id}/payment-information.pdf"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert_eq!(&r.bytes, pdf, "deterministic: the same invoice gives the same bytes");

    // Day by day to the collection day: due + 49.
    let r = advance_to(&app, &psp, due + Duration::days(49)).await;
    assert_eq!(r["ran"]["dunning"], json!({"reminders": 1, "levels": 3, "collections": 1, "resumed": 0}));
    assert_eq!(r["ran"]["late_invoices"], 1);

    // Interest from due+1 to level 2 (due+21): 10 days before B at 1.27+9, 11 days from B at
    // 2.50+9; then 14 days at 11.50 % to level 3 and 14 more to collection.
    let i2 = by_hand(11900, &[(10, 1027), (11, 1150)]);
    let i3 = by_hand(11900, &[(14, 1150)]);
    let i4 = by_hand(11900, &[(14, 1150)]);
    assert_eq!((i2, i3, i4), (75, 52, 52), "11900 × (10×1027 + 11×1150) / 3,650,000 = 74.73; × 14×1150 = 52.49");

    let events = dunning_events(&app, &psp).await;
    let summary: Vec<(String, i64, i64, i64, NaiveDate)> = events
        .iter()
        .map(|(t, d, at)| {
            let n = |k: &str| d[k].as_i64().unwrap_or(-1);
            (t.clone(), n("level"), n("fee_charged"), n("interest_charged"), *at)
        })
        .collect();
    let day = |n: i64| due + Duration::days(n);
    assert_eq!(
        summary,
        vec![
            ("dunning.reminder".into(), 0, 0, 0, day(-3)),
            ("capture.late".into(), -1, -1, -1, day(1)),
            ("dunning.level_changed".into(), 1, 0, 0, day(7)),
            ("dunning.level_changed".into(), 2, 4000, i2, day(21)),
            ("dunning.level_changed".into(), 3, 0, i3, day(35)),
            ("dunning.collection".into(), 3, 0, i4, day(49)),
        ]
    );
    let level2 = &events[3].1;
    assert_eq!(level2["deadline"], day(31).to_string());
    assert_eq!(level2["total_due"], 11900 + 4000 + i2);
    // The notice asks for interest up to its pay-by date (day 31): 10 more days at 11.50 %.
    let d2 = by_hand(11900, &[(10, 1150)]);
    assert_eq!(level2["total_by_deadline"], 11900 + 4000 + i2 + d2);

    let c = get_capture(&app, &psp, &id).await;
    assert_eq!(c["state"], "collection");
    assert_eq!(c["dunning"]["level"], 3);
    assert_eq!(c["dunning"]["fees"], 4000);
    assert_eq!(c["dunning"]["interest"], i2 + i3 + i4);
    assert_eq!(c["total_due"], 11900 + 4000 + i2 + i3 + i4);
    assert!(c["dunning"]["next_step_on"].is_null());

    // Each step's e-mail, dated at its own moment, the notices with their PDFs.
    app.run_jobs().await;
    let mails: Vec<Mail> = smtp.received().iter().skip(2).map(|r| parse(&r.data)).collect();
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            format!("Erinnerung: Rechnung A-1 ist am {} fällig", due.format("%d.%m.%Y")).as_str(),
            "Zahlungserinnerung: Rechnung A-1",
            "1. Mahnung: Rechnung A-1",
            "Letzte Mahnung: Rechnung A-1",
            "Übergabe an das Inkasso: Rechnung A-1",
        ]
    );
    let level2 = &mails[2];
    let total2 = 11900 + 4000 + i2 + d2;
    let euros = |minor: i64| format!("{},{:02} €", minor / 100, minor % 100);
    assert!(level2.text.contains("40,00 €") && level2.text.contains(&euros(i2 + d2)), "{}", level2.text);
    assert!(level2.text.contains(&format!("bis {}", day(31).format("%d.%m.%Y"))), "{}", level2.text);
    // The level is named as its title says ("1. Mahnung"), not by a number that disagrees with it.
    let level_line = level2.text.lines().find(|l| l.starts_with("Mahnstufe")).unwrap();
    assert!(level_line.trim_end().ends_with("1. Mahnung"), "{level_line}");
    assert!(level2.text.contains(&euros(total2)), "{}", level2.text);
    // The three levels say different things: the first asks kindly, the next states the default
    // and its interest (rate and period), the last what happens next and when.
    let (first, last) = (&mails[1].text, &mails[3].text);
    assert!(first.contains("entgangen") && !first.contains("Verzug (§ 286 BGB)"), "{first}");
    let interest = format!(
        "derzeit 2,50 % Basiszinssatz, also 11,50 % im Jahr) auf den offenen Rechnungsbetrag, vom {}",
        day(1).format("%d.%m.%Y")
    );
    assert!(level2.text.contains("Verzug (§ 286 BGB)") && level2.text.contains(&interest), "{}", level2.text);
    assert!(level2.text.contains(&format!("bis zum Zahlungsziel {}", day(31).format("%d.%m.%Y"))), "{}", level2.text);
    let next = format!("übergeben wir die Forderung am {} an das Inkasso", day(49).format("%d.%m.%Y"));
    assert!(last.contains("letzte Mahnung") && last.contains(&next), "{last}");
    assert!(!level2.text.contains("letzte Mahnung") && !level2.text.contains("entgangen"), "{}", level2.text);
    assert_eq!(mails.iter().map(|m| m.attachments.len()).collect::<Vec<_>>(), [0, 1, 1, 1, 0]);
    if pdf_tools() {
        let text = pdf_text(&level2.attachments[0].2);
        for needle in ["1. Mahnung", "Verzugspauschale", "40,00 €", euros(i2 + d2).as_str(), euros(total2).as_str()] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        let codes = pdf_qr_codes(&level2.attachments[0].2);
        assert!(codes[0].contains(&format!("EUR{}.{:02}", total2 / 100, total2 % 100)), "{codes:?}");
        // The notices say in their PDFs what their e-mails say: the interest's rate and period,
        // and, in the last, when the claim goes to collection.
        let flat = |pdf: &[u8]| pdf_text(pdf).split_whitespace().collect::<Vec<_>>().join(" ");
        let text2 = flat(&level2.attachments[0].2);
        assert!(text2.contains("also 11,50 % im Jahr") && text2.contains("Verzug (§ 286 BGB)"), "{text2}");
        let text3 = flat(&mails[3].attachments[0].2);
        assert!(text3.contains(&format!("am {} an das Inkasso", day(49).format("%d.%m.%Y"))), "{text3}");
        if let Some(dir) = std::env::var_os("NETTERMS_SHOTS") {
            std::fs::write(std::path::Path::new(&dir).join("final-notice.pdf"), &mails[3].attachments[0].2).unwrap();
        }
    }
    let collection = &mails[4];
    assert!(collection.text.contains(&euros(11900 + 4000 + i2 + i3 + i4)), "{}", collection.text);
    let listed = app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={id}"))).await.json();
    let kinds: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["collection_notice", "dunning", "dunning", "dunning", "payment_reminder", "payment_information"]
    );
    assert!(listed["data"].as_array().unwrap().iter().all(|m| m["status"] == "sent"), "{listed}");
    // Every attached document is reachable in the sandbox: the link in the messages JSON and on
    // the mailbox page, the same PDF the e-mail carried (issue 19, item 28).
    let notices: Vec<&Value> = listed["data"].as_array().unwrap().iter().filter(|m| m["kind"] == "dunning").collect();
    let mailbox = app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/mailbox?capture_id={id}"))).await.text();
    for notice in &notices {
        let url = notice["attachment_url"].as_str().expect("a dunning notice has its PDF");
        assert!(mailbox.contains(url), "the mailbox links {url}");
        let pdf = app.send(app.psp(&psp, Method::GET, url)).await;
        assert_eq!((pdf.status.as_u16(), pdf.headers["content-type"].to_str().unwrap()), (200, "application/pdf"));
        if pdf_tools() {
            let text = pdf_text(&pdf.bytes);
            assert!(text.contains("Mahnstufe") && text.contains("Rechnung: A-1"), "{text}");
            assert!(text.contains("HRB 000000 B"), "{text}");
        }
        let other = app.create_psp().await;
        app.send(app.psp(&other, Method::GET, url)).await.assert_error(404, "resource_not_found");
        let admin_url = url.replace("/v1/sandbox/messages", "/admin/v1/messages");
        assert_eq!(app.send(app.admin(Method::GET, &admin_url)).await.status, 200);
    }
    assert_eq!(notices.len(), 3);
    let reminder = listed["data"].as_array().unwrap().iter().find(|m| m["kind"] == "payment_reminder").unwrap();
    assert!(reminder.get("attachment_url").is_none(), "{reminder}");
    let created: Vec<NaiveDate> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["created_at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap().date_naive())
        .collect();
    assert_eq!(created, [day(49), day(35), day(21), day(7), day(-3), due - Duration::days(30)]);

    // The ledger holds each charge, against dunning income.
    let kinds = ledger_kinds(&app).await;
    assert_eq!(
        kinds,
        vec![
            ("default_interest".to_owned(), i3),
            ("default_interest".to_owned(), i4),
            ("default_interest".to_owned(), i2),
            ("dunning_fee".to_owned(), 4000),
        ]
    );
    verify_ledger(&app).await;

    // Nothing more happens, however far the clock goes.
    let r = advance_to(&app, &psp, due + Duration::days(120)).await;
    assert_eq!(r["ran"]["dunning"], json!({"reminders": 0, "levels": 0, "collections": 0, "resumed": 0}));

    // The other PSP's invoice did not move.
    let t = get_capture(&app, &other, theirs["capture_id"].as_str().unwrap()).await;
    assert_eq!((t["state"].as_str(), t["dunning"]["level"].as_i64()), (Some("open"), Some(0)));
    assert!(dunning_events(&app, &other).await.is_empty());
}

#[tokio::test]
async fn a_refund_or_a_direct_payment_that_settles_the_invoice_stops_dunning() {
    let (app, psp, mid) = setup().await;
    let refunded = capture(&app, &psp, &mid, "R-1").await;
    let paid = capture(&app, &psp, &mid, "P-1").await;
    let due: NaiveDate = refunded["due_date"].as_str().unwrap().parse().unwrap();
    advance_to(&app, &psp, due + Duration::days(21)).await;
    for c in [&refunded, &paid] {
        let c = get_capture(&app, &psp, c["capture_id"].as_str().unwrap()).await;
        assert_eq!(c["dunning"]["level"], 2);
        assert_eq!(c["dunning"]["fees"], 4000);
        assert!(c["dunning"]["interest"].as_i64().unwrap() > 0);
    }
    // A partial direct payment: interest runs up to today on what was open until now.
    advance_to(&app, &psp, due + Duration::days(25)).await;
    let pid = paid["capture_id"].as_str().unwrap();
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{pid}/confirm-payment"))
                .json(&json!({"amount": 5900, "external_payment_id": "pay-1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let interest_to_21 = by_hand(11900, &[(21, 127 + 900)]);
    let four_more = by_hand(11900, &[(4, 127 + 900)]);
    assert_eq!(r.json()["dunning"]["interest"], interest_to_21 + four_more);
    // Then settled: dunning stops, fee and interest are waived.
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{pid}/confirm-payment"))
                .json(&json!({"amount": 6000, "external_payment_id": "pay-2"})),
        )
        .await;
    let v = r.json();
    assert_eq!(v["state"], "paid");
    assert_eq!(v["dunning"]["waived"], 4000 + interest_to_21 + four_more);
    assert_eq!(v["total_due"], 0);

    let rid = refunded["capture_id"].as_str().unwrap();
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{rid}/refunds"))
                .json(&json!({"amount": amount(11900), "external_credit_note_number": "CN-1"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json()["capture"].clone();
    assert_eq!(v["state"], "canceled");
    assert_eq!(v["total_due"], 0);
    verify_ledger(&app).await;

    let r = advance_to(&app, &psp, due + Duration::days(100)).await;
    assert_eq!(r["ran"]["dunning"], json!({"reminders": 0, "levels": 0, "collections": 0, "resumed": 0}));
    verify_ledger(&app).await;
}

#[tokio::test]
async fn a_buyer_at_the_configured_dunning_level_is_declined() {
    let (app, psp, mid) = setup().await;
    let c = capture(&app, &psp, &mid, "D-1").await;
    let due: NaiveDate = c["due_date"].as_str().unwrap().parse().unwrap();
    advance_to(&app, &psp, due + Duration::days(7)).await;
    // Level 1: still served.
    created_order(&app, &psp, &mid).await;
    advance_to(&app, &psp, due + Duration::days(21)).await;
    // Level 2: the same company is declined.
    let s = app
        .send(
            app.psp(&psp, Method::POST, "/v1/widget-sessions")
                .json(&json!({"merchant_id": mid, "allowed_origins": ["https://shop.example"]})),
        )
        .await
        .json();
    let sid = s["client_secret"].as_str().unwrap();
    let order = crate::checkout::order_body("anna@kunde.example", 11900);
    let a = app
        .send(app.client.post(app.url(&format!("/checkout-api/v1/sessions/{sid}/authorize"))).json(&json!({
            "order": order, "payment_method": "bank_transfer", "terms_accepted": true
        })))
        .await
        .json();
    assert_eq!((a["state"].as_str(), a["decline_reason"].as_str()), (Some("declined"), Some("risk_policy")), "{a}");
}

#[tokio::test]
async fn an_operator_pauses_and_resumes_dunning() {
    let (app, psp, mid) = setup().await;
    let c = capture(&app, &psp, &mid, "Z-1").await;
    let id = c["capture_id"].as_str().unwrap().to_owned();
    let due: NaiveDate = c["due_date"].as_str().unwrap().parse().unwrap();
    advance_to(&app, &psp, due + Duration::days(7)).await;
    let until = format!("{}T00:00:00Z", due + Duration::days(30));
    let pause = |body: Value| app.admin(Method::POST, &format!("/admin/v1/captures/{id}/dunning/pause")).json(&body);
    // Bad input changes nothing.
    app.send(pause(json!({"reason": "x"}))).await.assert_error(422, "request_validation_error");
    let r = app.send(pause(json!({"reason": "", "until": until}))).await;
    assert_eq!(r.sources(), vec!["reason"]);
    let r = app.send(pause(json!({"reason": "x", "until": "2020-01-01T00:00:00Z"}))).await;
    assert_eq!(r.sources(), vec!["until"]);
    let r = app.send(pause(json!({"reason": "the buyer disputes the delivery", "until": until}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["dunning"]["pause_reason"], "the buyer disputes the delivery");
    // Level 2 would be due at +21: paused, nothing happens.
    let r = advance_to(&app, &psp, due + Duration::days(25)).await;
    assert_eq!(r["ran"]["dunning"]["levels"], 0);
    // The pause runs out at +30: resumed by itself, and level 2 follows at once.
    let r = advance_to(&app, &psp, due + Duration::days(30)).await;
    assert_eq!(r["ran"]["dunning"], json!({"reminders": 0, "levels": 1, "collections": 0, "resumed": 1}));
    let events = dunning_events(&app, &psp).await;
    let types: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "dunning.reminder",
            "capture.late",
            "dunning.level_changed",
            "dunning.paused",
            "dunning.resumed",
            "dunning.level_changed"
        ]
    );
    // Pause and resume by hand.
    let r =
        app.send(pause(json!({"reason": "again", "until": format!("{}T00:00:00Z", due + Duration::days(60))}))).await;
    assert_eq!(r.status, 200);
    let resume =
        app.admin(Method::POST, &format!("/admin/v1/captures/{id}/dunning/resume")).json(&json!({"reason": "checked"}));
    let r = app.send(resume).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["dunning"]["paused_until"].is_null());
    let resume =
        app.admin(Method::POST, &format!("/admin/v1/captures/{id}/dunning/resume")).json(&json!({"reason": "checked"}));
    app.send(resume).await.assert_error(409, "state_conflict");
    let unknown = app.admin(Method::POST, &format!("/admin/v1/captures/{}/dunning/resume", uuid::Uuid::now_v7()));
    app.send(unknown.json(&json!({"reason": "x"}))).await.assert_error(404, "resource_not_found");
    // Paused, then paid: a settled invoice shows no pause.
    let r =
        app.send(pause(json!({"reason": "last", "until": format!("{}T00:00:00Z", due + Duration::days(90))}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = get_capture(&app, &psp, &id).await;
    let total = c["total_due"].as_i64().unwrap();
    let r = app
        .send(app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&json!({
            "iban": c["payment_instructions"]["iban"], "amount": {"currency": "EUR", "value": total},
            "reference": c["payment_instructions"]["reference"]
        })))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let c = get_capture(&app, &psp, &id).await;
    assert_eq!(c["state"], "paid", "{c}");
    assert!(c["dunning"]["paused_until"].is_null() && c["dunning"]["pause_reason"].is_null(), "{c}");
}

#[tokio::test]
async fn a_malformed_policy_is_refused_with_field_paths_and_changes_nothing() {
    let (app, psp, mid) = setup().await;
    let before = app.send(app.admin(Method::GET, "/admin/v1/dunning-policy")).await.json();
    let mut bad = before.clone();
    bad["levels"][1]["days_after_due"] = json!(3);
    bad["collection_days_after_due"] = json!(2);
    bad["flat_fee"] = json!(-1);
    let r = app.send(app.admin(Method::PUT, "/admin/v1/dunning-policy").json(&bad)).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), vec!["levels[1].days_after_due", "collection_days_after_due", "flat_fee"]);
    let r = app.send(app.admin(Method::PUT, "/admin/v1/dunning-policy").json(&json!({"levels": "many"}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(app.send(app.admin(Method::GET, "/admin/v1/dunning-policy")).await.json(), before);
    // A good one takes effect; fields left out keep their defaults.
    let r = app
        .send(app.admin(Method::PUT, "/admin/v1/dunning-policy").json(&json!({"reminder_days_before_due": 5})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let now = app.send(app.admin(Method::GET, "/admin/v1/dunning-policy")).await.json();
    assert_eq!(now["reminder_days_before_due"], 5);
    assert_eq!(now["levels"], before["levels"]);
    // The next capture's first step follows it (the capture reads the policy with its order).
    let c = capture(&app, &psp, &mid, "P-1").await;
    let due: NaiveDate = c["due_date"].as_str().unwrap().parse().unwrap();
    assert_eq!(c["dunning"]["next_step_on"], (due - Duration::days(5)).to_string(), "{c}");
    // Base rates: only on 1 January or 1 July.
    let r = app
        .send(app.admin(Method::PUT, "/admin/v1/base-rates/2027-02-01").json(&json!({"rate_bps": 1, "source": "x"})))
        .await;
    assert_eq!(r.sources(), vec!["valid_from"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_scans_at_the_same_moment_take_each_step_once() {
    let (app, psp, mid) = setup().await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(capture(&app, &psp, &mid, &format!("S-{i}")).await["capture_id"].as_str().unwrap().to_owned());
    }
    let due: NaiveDate = get_capture(&app, &psp, &ids[0]).await["due_date"].as_str().unwrap().parse().unwrap();
    let psp_id: netterms::domain::ids::PspId = serde_json::from_value(json!(psp.psp_id)).unwrap();
    for day in [-3, 7, 21, 35, 49] {
        let wall = app.services.clock.now();
        let target = (due + Duration::days(day)).and_hms_opt(12, 0, 0).unwrap().and_utc();
        let at = netterms::clock::PspTime::ahead(wall, (target - wall).num_microseconds().unwrap().max(0));
        let s = &app.services;
        let (a, b) = tokio::join!(
            netterms::service::clock::run_due(s, psp_id, at),
            netterms::service::clock::run_due(s, psp_id, at)
        );
        let (a, b) = (a.unwrap().dunning, b.unwrap().dunning);
        let taken = a.reminders + b.reminders + a.levels + b.levels + a.collections + b.collections;
        assert_eq!(taken, 8, "day {day}: each invoice's step once ({a:?} {b:?})");
    }
    assert_eq!(app.count("dunning_steps").await, 8 * 5);
    verify_ledger(&app).await;
}

#[tokio::test]
async fn start_up_warns_when_the_half_year_has_no_base_rate() {
    let app = TestApp::spawn().await;
    let day = |s: &str| s.parse::<NaiveDate>().unwrap();
    let s = &app.services;
    assert!(netterms::service::dunning::warn_if_base_rate_missing(s, day("2026-03-01")).await.unwrap());
    assert!(!netterms::service::dunning::warn_if_base_rate_missing(s, day("2031-08-01")).await.unwrap());
    assert!(captured_logs().contains("no row for the current half-year"));
    assert!(captured_logs().contains("PUT /admin/v1/base-rates/2031-07-01"), "the log names the half-year to add");
    put_base_rate(&app, day("2031-07-01"), 150).await;
    assert!(netterms::service::dunning::warn_if_base_rate_missing(s, day("2031-08-01")).await.unwrap());
}

/// Property over the days of a notice: paying exactly the total a dunning notice asks (the one
/// its GiroCode carries) on any day from the notice to its pay-by date settles the invoice — no
/// cents of interest left open, no further e-mail. (Interest is stated up to the pay-by date.)
#[tokio::test]
async fn paying_a_notices_total_by_its_date_settles_the_invoice() {
    let app = TestApp::spawn().await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    // A base rate for every half-year the test may cross.
    let today = psp_today(&app, &psp).await;
    let mut h = NaiveDate::from_ymd_opt(today.year() - 1, 1, 1).unwrap();
    while h < today + Duration::days(400) {
        put_base_rate(&app, h, 127).await;
        h = next_half_year(h);
    }
    // One invoice for each day from the notice to its pay-by date (10 days later).
    let mut invoices = Vec::new();
    for i in 0..=10 {
        invoices.push(capture(&app, &psp, &mid, &format!("T-{i}")).await);
    }
    let due: NaiveDate = invoices[0]["due_date"].as_str().unwrap().parse().unwrap();
    // Level 2 ("1. Mahnung") at due + 21: the flat fee, and interest from the day after the due date.
    let notice_day = due + Duration::days(21);
    advance_to(&app, &psp, notice_day).await;
    let notices = crate::payments::events_of(&app, &psp, "dunning.level_changed").await;
    for (i, c) in invoices.iter().enumerate() {
        let id = c["capture_id"].as_str().unwrap();
        let n = notices.iter().find(|n| n["capture_id"] == id && n["level"] == 2).unwrap();
        let deadline: NaiveDate = n["deadline"].as_str().unwrap().parse().unwrap();
        assert_eq!(deadline, notice_day + Duration::days(10));
        let total = n["total_by_deadline"].as_i64().unwrap();
        assert!(total > n["total_due"].as_i64().unwrap(), "interest runs until the deadline: {n}");
        // The notice the buyer got asks exactly that total.
        let mail = app.send(app.psp(&psp, Method::GET, &format!("/v1/sandbox/messages?capture_id={id}"))).await.json();
        let text = mail["data"].as_array().unwrap().iter().find(|m| m["kind"] == "dunning").unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let euros = format!("{},{:02}", total / 100, total % 100);
        assert!(text.contains(&euros), "{euros} in {text}");
        // Paid on day i after the notice, exactly that amount.
        let day = notice_day + Duration::days(i64::try_from(i).unwrap());
        if day > psp_today(&app, &psp).await {
            advance_to(&app, &psp, day).await;
        }
        let r = app
            .send(app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&json!({
                "iban": c["payment_instructions"]["iban"], "amount": {"currency": "EUR", "value": total},
                "reference": c["payment_instructions"]["reference"], "debtor_name": "Kunde GmbH"
            })))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["credit"], 0, "nothing paid too much: {}", r.text());
        let after = get_capture(&app, &psp, id).await;
        assert_eq!(after["state"], "paid", "paid {total} on day {i} of the notice: {after}");
        assert_eq!(after["outstanding"], 0, "{after}");
    }
    // Nothing more happens to them: no further notice, no credit left over.
    advance_to(&app, &psp, notice_day + Duration::days(40)).await;
    for c in &invoices {
        let id = c["capture_id"].as_str().unwrap();
        let after = get_capture(&app, &psp, id).await;
        assert_eq!((after["state"].as_str(), after["dunning"]["level"].as_i64()), (Some("paid"), Some(2)), "{after}");
    }
    crate::orders::verify_ledger(&app).await;
}
