//! The buyer's e-mails (SPEC §9.2): one per cause, kept without an SMTP server, retried when the
//! server refuses or hangs, never slowing the request that caused them.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::dunning::capture;
use crate::helpers::*;
use crate::orders::{amount, setup};
use crate::smtp::{Mode, SmtpServer, parse};

async fn messages(app: &TestApp, query: &str) -> Vec<serde_json::Value> {
    let r = app.send(app.admin(Method::GET, &format!("/admin/v1/messages{query}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"].as_array().unwrap().clone()
}

/// Makes every queued job due now (as if its backoff had passed).
async fn jobs_due_now(app: &TestApp) {
    app.services.clock.advance(chrono::Duration::hours(2));
}

#[tokio::test]
async fn without_an_smtp_server_messages_are_stored_and_shown() {
    let (app, psp, mid) = setup().await;
    let c = capture(&app, &psp, &mid, "M-1").await;
    let id = c["capture_id"].as_str().unwrap();
    // Kept in the capture's own transaction: no job is queued only to mark it so (issue 20).
    let list = messages(&app, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "stored");
    assert_eq!(app.count("jobs WHERE kind = 'send_message'").await, 0);
    // Its body is stored once, as parts; text and HTML are made from them when read.
    assert_eq!(app.count("messages WHERE body IS NOT NULL AND body_text IS NULL AND body_html IS NULL").await, 1);
    let text = list[0]["text"].as_str().unwrap();
    assert!(text.starts_with("Guten Tag") && text.contains("Verwendungszweck"), "{text}");
    assert!(list[0]["html"].as_str().unwrap().contains("<table"), "{}", list[0]["html"]);
    app.run_jobs().await;
    let list = messages(&app, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["kind"].as_str(), list[0]["status"].as_str()), (Some("payment_information"), Some("stored")));
    assert_eq!(list[0]["capture_id"], id);
    // A refund writes its credit note message, in the buyer's language, with what is left.
    let r = app
        .send(
            app.psp(&psp, Method::POST, &format!("/v1/captures/{id}/refunds"))
                .json(&json!({"amount": amount(1900), "external_credit_note_number": "CN-1"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let list = messages(&app, &format!("?capture_id={id}")).await;
    assert_eq!(list[0]["kind"], "credit_note");
    assert!(
        list[0]["text"].as_str().unwrap().contains("19,00 €") && list[0]["text"].as_str().unwrap().contains("100,00 €")
    );
    // The sandbox page shows them to the PSP.
    let page = app.send(app.psp(&psp, Method::GET, "/v1/sandbox/mailbox")).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Gutschrift zu Rechnung M-1"), "{}", page.text());
    // Another PSP sees none of them.
    let other = app.create_psp().await;
    let theirs = app.send(app.psp(&other, Method::GET, "/v1/sandbox/messages")).await.json();
    assert!(theirs["data"].as_array().unwrap().is_empty());
    let r = app.send(app.psp(&other, Method::GET, "/v1/sandbox/mailbox")).await;
    assert!(!r.text().contains("M-1"));
    // A message written before bodies were stored as parts reads as it was stored.
    app.execute("UPDATE messages SET body_text = 'Alter Text', body_html = '<p>Alt</p>', body = NULL WHERE kind = 'credit_note'")
        .await;
    let list = messages(&app, &format!("?capture_id={id}")).await;
    assert_eq!((list[0]["text"].as_str(), list[0]["html"].as_str()), (Some("Alter Text"), Some("<p>Alt</p>")));
    app.send(app.admin(Method::GET, "/admin/v1/messages?status=lost"))
        .await
        .assert_error(422, "request_validation_error");
}

#[tokio::test]
async fn a_refusing_then_hanging_server_delays_the_mail_not_the_request() {
    let smtp = SmtpServer::start().await;
    smtp.set_mode(Mode::Refuse);
    let app = TestApp::spawn_with(|c| {
        c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()));
        c.smtp_timeout_secs = 1;
    })
    .await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    capture(&app, &psp, &mid, "R-1").await;
    assert!(started.elapsed() < Duration::from_secs(5), "the capture did not wait for SMTP");
    app.run_jobs().await;
    let m = &messages(&app, "").await[0];
    assert_eq!((m["status"].as_str(), m["attempts"].as_i64()), (Some("queued"), Some(1)));
    assert!(m["last_error"].as_str().unwrap().contains("451"), "{m}");
    let message_id = m["message_id"].as_str().unwrap().to_owned();

    // Now it hangs: the attempt times out and counts as failed.
    smtp.set_mode(Mode::Hang);
    jobs_due_now(&app).await;
    let t = Instant::now();
    app.run_jobs().await;
    assert!(t.elapsed() < Duration::from_secs(10));
    let m = &messages(&app, "").await[0];
    assert_eq!((m["status"].as_str(), m["attempts"].as_i64()), (Some("queued"), Some(2)));

    // Then it takes it: sent once, with the same Message-ID as every attempt had.
    smtp.set_mode(Mode::Accept);
    jobs_due_now(&app).await;
    app.run_jobs().await;
    let m = &messages(&app, "").await[0];
    assert_eq!((m["status"].as_str(), m["attempts"].as_i64()), (Some("sent"), Some(3)));
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(parse(&got[0].data).message_id, message_id);
    jobs_due_now(&app).await;
    app.run_jobs().await;
    assert_eq!(smtp.received_count(), 1, "not sent again");
}

#[tokio::test]
async fn a_message_is_written_once_per_cause_and_gives_up_visibly() {
    let smtp = SmtpServer::start().await;
    smtp.set_mode(Mode::Refuse);
    let app = TestApp::spawn_with(|c| c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()))).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    capture(&app, &psp, &mid, "F-1").await;
    for _ in 0..10 {
        app.run_jobs().await;
        jobs_due_now(&app).await;
    }
    let m = &messages(&app, "").await[0];
    assert_eq!((m["status"].as_str(), m["attempts"].as_i64()), (Some("failed"), Some(8)));
    let failed = app.send(app.admin(Method::GET, "/admin/v1/jobs?state=failed")).await.json();
    let job = failed["data"].as_array().unwrap().iter().find(|j| j["kind"] == "send_message").unwrap().clone();
    // The operator retries once the server is back.
    smtp.set_mode(Mode::Accept);
    let r = app.send(app.admin(Method::POST, &format!("/admin/v1/jobs/{}/retry", job["id"].as_str().unwrap()))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.run_jobs().await;
    assert_eq!(messages(&app, "").await[0]["status"], "sent");
    assert_eq!(smtp.received().len(), 1);
    // Writing the same cause again adds nothing.
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn a_telesales_session_emails_its_link_and_lives_a_week() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(|c| c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()))).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let body = |channel: &str, order: serde_json::Value| {
        json!({
            "merchant_id": mid, "order": order, "locale": "en", "channel": channel,
            "redirect_urls": {"accept_url": "https://shop.example/ok", "decline_url": "https://shop.example/no",
                              "cancel_url": "https://shop.example/cancel"}
        })
    };
    let order = crate::checkout::order_body("anna@kunde.example", 11900);
    let r =
        app.send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&body("phone", order.clone()))).await;
    r.assert_error(422, "request_validation_error");
    assert_eq!(r.sources(), vec!["channel"]);
    let mut no_person = order.clone();
    no_person.as_object_mut().unwrap().remove("debtor_person");
    let r =
        app.send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&body("telesales", no_person))).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(app.count("messages").await, 0);

    let r = app.send(app.psp(&psp, Method::POST, "/v1/payment-page-sessions").json(&body("telesales", order))).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.json();
    assert_eq!(s["channel"], "telesales");
    let expires: chrono::DateTime<chrono::Utc> = s["expires_at"].as_str().unwrap().parse().unwrap();
    let life = expires - app.services.clock.now();
    assert!(
        life > chrono::Duration::days(7) - chrono::Duration::minutes(1) && life <= chrono::Duration::days(7),
        "{life}"
    );
    app.run_jobs().await;
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].from.contains("rechnung@netterms.example"), "{:?}", got[0].from);
    assert_eq!(got[0].to.len(), 1);
    assert!(got[0].to[0].contains("anna@kunde.example"));
    let mail = parse(&got[0].data);
    assert_eq!(mail.to, "anna@kunde.example");
    assert!(mail.subject.contains("complete your purchase on invoice"), "{}", mail.subject);
    let url = s["payment_page_url"].as_str().unwrap();
    assert!(mail.text.contains(url) && mail.html.contains(url), "{}", mail.text);
    // The link works.
    assert_eq!(app.send(app.client.get(url)).await.status, 200);
}

/// The mails read as a person would: sent as automatic (`Auto-Submitted`), the HTML in the
/// buyer's language; a partial payment names the invoice number once; a returned direct debit
/// says why in words and gives a new date to pay by (not today), before which dunning waits.
#[tokio::test]
async fn mails_say_what_they_mean_once() {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(|c| c.smtp_url = Some(netterms::secrets::Secret::new(smtp.url()))).await;
    let psp = app.create_psp().await;
    let mid = app.create_merchant(&psp, "shop").await["merchant_id"].as_str().unwrap().to_owned();
    let c = capture(&app, &psp, &mid, "MT-1").await;
    let pay = |amount: i64| {
        app.psp(&psp, Method::POST, "/v1/sandbox/payments").json(&json!({
            "iban": c["payment_instructions"]["iban"], "amount": {"currency": "EUR", "value": amount},
            "reference": c["payment_instructions"]["reference"], "debtor_name": "Kunde GmbH"
        }))
    };
    assert_eq!(app.send(pay(5000)).await.status, 201);
    app.run_jobs().await;
    let mails: Vec<_> =
        smtp.received().iter().map(|r| (String::from_utf8_lossy(&r.data).into_owned(), parse(&r.data))).collect();
    for (raw, m) in &mails {
        assert!(raw.contains("Auto-Submitted: auto-generated"), "{raw}");
        assert!(m.html.contains("<html lang=\"de\">"), "{}", m.html);
    }
    let partial = &mails.iter().find(|(_, m)| m.subject.starts_with("Zahlungseingang")).unwrap().1;
    assert_eq!(partial.text.matches("Rechnungsnummer").count(), 1, "{}", partial.text);
    assert!(partial.text.contains("69,00 €"), "still open: {}", partial.text);

    // A direct debit that comes back: the reason in words, a fair date to pay by.
    let d = crate::payments::direct_debit_capture(&app, &psp, &mid, "MT-2").await;
    let due: chrono::NaiveDate = d["due_date"].as_str().unwrap().parse().unwrap();
    let on = crate::sepa_xsd::collection_day(due);
    crate::dunning::advance_to(&app, &psp, on).await;
    let r = app
        .send(
            app.psp(&psp, Method::POST, "/v1/sandbox/direct-debit-returns")
                .json(&json!({"capture_id": d["capture_id"], "reason_code": "SL01"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.run_jobs().await;
    let received = smtp.received();
    let ret = received
        .iter()
        .map(|r| parse(&r.data))
        .find(|m| m.subject.starts_with("Lastschrift zu Rechnung MT-2"))
        .unwrap();
    assert!(ret.text.contains("Regel") && ret.text.contains("SL01"), "{}", ret.text);
    let today = crate::dunning::psp_today(&app, &psp).await;
    let pay_by = (today + chrono::Duration::days(10)).format("%d.%m.%Y").to_string();
    assert!(ret.text.contains(&pay_by), "pay by {pay_by}: {}", ret.text);
    assert!(!ret.text.contains(&format!("Fällig am {}", today.format("%d.%m.%Y"))), "{}", ret.text);
    // No dunning before that date.
    crate::dunning::advance_to(&app, &psp, today + chrono::Duration::days(10)).await;
    let kinds = crate::bank_files::kinds_of_messages(&app, &psp, &d).await;
    assert!(!kinds.iter().any(|k| k == "dunning"), "{kinds:?}");
    crate::dunning::advance_to(&app, &psp, today + chrono::Duration::days(12)).await;
    let kinds = crate::bank_files::kinds_of_messages(&app, &psp, &d).await;
    assert!(kinds.iter().any(|k| k == "dunning"), "dunned after the date: {kinds:?}");
}
