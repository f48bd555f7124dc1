//! The buyer's e-mails (SPEC §9.2): composed in German or English from the facts of their cause,
//! written to the outbox in the cause's transaction (one per cause), and sent over SMTP by a job
//! with a stable `Message-ID`, retried until the server takes it.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, NaiveDate, Utc};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Services;
use super::facts::notice_paragraphs;
/// The language of what people read (it lives in `domain`; re-exported where it always was).
pub use super::facts::{Buyer, DunningFacts, InvoiceFacts, NoticeStage, buyer, buyer_of, invoice_facts};
use crate::clock::PspTime;
use crate::domain::ids::{CaptureId, OrderId, PspId};
pub use crate::domain::locale::Locale;
use crate::domain::mail::Body;
use crate::domain::sepa;
use crate::domain::text::grouped;

use crate::store::jobs::{self, NewJob};
use crate::store::messages::{self as store, NewMessage};
use crate::store::{StoreError, Tx};

/// The job kind that sends one message.
pub const SEND_JOB: &str = "send_message";
/// Attempts before a message counts as failed: about four hours of backoff.
const MAX_ATTEMPTS: i64 = 8;

/// The SMTP client, shared (it keeps a pool of connections).
#[derive(Clone)]
pub struct Mailer(Arc<AsyncSmtpTransport<Tokio1Executor>>);

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailer")
    }
}

impl Mailer {
    /// From `smtp_url` (validated at start-up); `None` without one.
    pub fn from_config(c: &crate::config::Config) -> anyhow::Result<Option<Mailer>> {
        let Some(url) = &c.smtp_url else { return Ok(None) };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|_| anyhow::anyhow!("smtp_url is not a usable SMTP URL"))?
            .timeout(Some(StdDuration::from_secs(c.smtp_timeout_secs)))
            // As many connections as a worker sends messages at once.
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(32))
            .build();
        Ok(Some(Mailer(Arc::new(transport))))
    }
}

/// A composed message: its subject and the parts of its body (text and HTML are made from them).
#[derive(Debug, Clone)]
pub struct Composed {
    pub subject: String,
    pub body: Body,
}

pub(super) fn compose(
    subject: String,
    greeting: String,
    paragraphs: &[String],
    rows: &[(String, String)],
    closing: &str,
) -> Composed {
    Composed {
        subject,
        body: Body { greeting, paragraphs: paragraphs.to_vec(), rows: rows.to_vec(), closing: closing.to_owned() },
    }
}

pub(super) fn greeting(f: &InvoiceFacts) -> String {
    match f.buyer.locale {
        Locale::De => format!("Guten Tag {},", f.buyer.addressee),
        Locale::En => format!("Dear {},", f.buyer.addressee),
    }
}

/// The closing of messages from the portal (not about one merchant's invoice).
pub(super) fn closing_portal(l: Locale) -> &'static str {
    l.pick("Mit freundlichen Grüßen\nIhr netterms-Kundenservice", "Kind regards\nnetterms customer service")
}

pub(super) fn closing(l: Locale) -> &'static str {
    l.pick(
        "Mit freundlichen Grüßen\nnetterms – im Auftrag des Händlers",
        "Kind regards\nnetterms – on behalf of the merchant",
    )
}

/// The rows a buyer needs to pay by bank transfer.
pub(super) fn payment_rows(f: &InvoiceFacts, amount: i64, due: NaiveDate) -> Vec<(String, String)> {
    let l = f.buyer.locale;
    vec![
        (l.pick("Betrag", "Amount").into(), l.money(amount, &f.currency)),
        (l.pick("Fällig am", "Due on").into(), l.date(due)),
        (l.pick("Empfänger", "Payee").into(), "netterms".into()),
        ("IBAN".into(), f.iban.clone()),
        ("BIC".into(), f.bic.clone()),
        (l.pick("Verwendungszweck", "Reference").into(), grouped(&f.reference, 4)),
        (l.pick("Rechnungsnummer", "Invoice number").into(), f.invoice_number.clone()),
    ]
}

/// `payment_information`: how to pay, with the payment-information PDF.
pub fn payment_information(f: &InvoiceFacts) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Zahlungsinformationen zu Rechnung {} von {}", f.invoice_number, f.buyer.merchant),
        Locale::En => format!("Payment information for invoice {} from {}", f.invoice_number, f.buyer.merchant),
    };
    let (paragraphs, rows) = match &f.buyer.mandate_reference {
        Some(mandate) => {
            let p = match l {
                Locale::De => format!(
                    "Ihre Bestellung bei {} wird per Rechnungskauf über netterms abgewickelt. Wir ziehen den Betrag \
                     von {} per SEPA-Firmenlastschrift zum unten genannten Einzugstag von Ihrem Konto ein (Vorabankündigung).",
                    f.buyer.merchant,
                    l.money(f.outstanding, &f.currency)
                ),
                Locale::En => format!(
                    "Your purchase from {} is paid on invoice through netterms. We will collect {} by SEPA B2B direct \
                     debit from your account on the collection date below (pre-notification).",
                    f.buyer.merchant,
                    l.money(f.outstanding, &f.currency)
                ),
            };
            let rows = vec![
                (l.pick("Betrag", "Amount").into(), l.money(f.outstanding, &f.currency)),
                (l.pick("Einzug am", "Collection date").into(), l.date(sepa::business_day_from(f.due))),
                (l.pick("Mandatsreferenz", "Mandate reference").into(), mandate.clone()),
                (l.pick("Gläubiger-ID", "Creditor identifier").into(), f.creditor_id.clone()),
                (l.pick("Rechnungsnummer", "Invoice number").into(), f.invoice_number.clone()),
            ];
            (vec![p], rows)
        }
        None => {
            let p = match l {
                Locale::De => format!(
                    "Ihre Bestellung bei {} wird per Rechnungskauf über netterms abgewickelt. Bitte überweisen Sie \
                     den Rechnungsbetrag bis zum Fälligkeitstag auf das folgende Konto. Die Zahlungsinformationen \
                     finden Sie auch im angehängten PDF; Banking-Apps lesen den QR-Code darin.",
                    f.buyer.merchant
                ),
                Locale::En => format!(
                    "Your purchase from {} is paid on invoice through netterms. Please transfer the invoice amount \
                     to the account below by the due date. The attached PDF holds the same data; banking apps can \
                     scan its QR code.",
                    f.buyer.merchant
                ),
            };
            (vec![p], payment_rows(f, f.outstanding, f.due))
        }
    };
    compose(subject, greeting(f), &paragraphs, &rows, closing(l))
}

/// `payment_reminder`: a friendly reminder before the due date.
pub fn payment_reminder(f: &InvoiceFacts) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Erinnerung: Rechnung {} ist am {} fällig", f.invoice_number, l.date(f.due)),
        Locale::En => format!("Reminder: invoice {} is due on {}", f.invoice_number, l.date(f.due)),
    };
    let p = match l {
        Locale::De => format!(
            "eine freundliche Erinnerung: Ihre Rechnung {} von {} wird in Kürze fällig. Falls Sie bereits bezahlt \
             haben, betrachten Sie diese Nachricht bitte als gegenstandslos.",
            f.invoice_number, f.buyer.merchant
        ),
        Locale::En => format!(
            "A friendly reminder: your invoice {} from {} is due soon. If you have already paid, please disregard \
             this message.",
            f.invoice_number, f.buyer.merchant
        ),
    };
    compose(subject, greeting(f), &[p], &payment_rows(f, f.outstanding, f.due), closing(l))
}

/// `dunning`: one per level, with the dunning-notice PDF.
pub fn dunning_notice(f: &InvoiceFacts, d: &DunningFacts) -> Composed {
    let l = f.buyer.locale;
    let subject = format!("{}: {} {}", d.title, l.pick("Rechnung", "invoice"), f.invoice_number);
    let p = match l {
        Locale::De => format!(
            "Ihre Rechnung {} von {} war am {} fällig und ist noch nicht bezahlt. Bitte überweisen Sie den \
             offenen Gesamtbetrag bis spätestens {}. Haben Sie inzwischen bezahlt, ist diese Nachricht \
             gegenstandslos.",
            f.invoice_number,
            f.buyer.merchant,
            l.date(f.due),
            l.date(d.deadline)
        ),
        Locale::En => format!(
            "Your invoice {} from {} was due on {} and is still unpaid. Please transfer the total now open by {} \
             at the latest. If you have paid meanwhile, please disregard this message.",
            f.invoice_number,
            f.buyer.merchant,
            l.date(f.due),
            l.date(d.deadline)
        ),
    };
    let mut rows = vec![
        (l.pick("Mahnstufe", "Dunning level").into(), d.title.clone()),
        (l.pick("Offener Rechnungsbetrag", "Invoice amount open").into(), l.money(f.outstanding, &f.currency)),
    ];
    if d.fees > 0 {
        rows.push((
            l.pick("Verzugspauschale (§ 288 Abs. 5 BGB)", "Flat fee (§ 288(5) BGB)").into(),
            l.money(d.fees, &f.currency),
        ));
    }
    if d.interest > 0 {
        let label = match l {
            Locale::De => format!("Verzugszinsen (§ 288 Abs. 2 BGB) bis {}", l.date(d.deadline)),
            Locale::En => format!("Default interest (§ 288(2) BGB) to {}", l.date(d.deadline)),
        };
        rows.push((label, l.money(d.interest, &f.currency)));
    }
    rows.push((l.pick("Gesamtbetrag", "Total due").into(), l.money(d.total, &f.currency)));
    rows.push((l.pick("Zahlbar bis", "Pay by").into(), l.date(d.deadline)));
    rows.extend(payment_rows(f, d.total, d.deadline).into_iter().skip(2));
    let mut paragraphs = vec![p];
    paragraphs.extend(notice_paragraphs(l, f, d));
    compose(subject, greeting(f), &paragraphs, &rows, closing(l))
}

/// `collection_notice`: the claim goes to collection.
pub fn collection_notice(f: &InvoiceFacts, total: i64, contact: &str) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Übergabe an das Inkasso: Rechnung {}", f.invoice_number),
        Locale::En => format!("Handed over to collection: invoice {}", f.invoice_number),
    };
    let p = match l {
        Locale::De => format!(
            "trotz unserer Mahnungen ist Ihre Rechnung {} von {} nicht bezahlt. Wir haben die Forderung über {} \
             heute an das Inkasso übergeben. Bitte wenden Sie sich an: {}.",
            f.invoice_number,
            f.buyer.merchant,
            l.money(total, &f.currency),
            contact
        ),
        Locale::En => format!(
            "Despite our dunning notices your invoice {} from {} is unpaid. Today we handed the claim of {} over \
             to collection. Please contact: {}.",
            f.invoice_number,
            f.buyer.merchant,
            l.money(total, &f.currency),
            contact
        ),
    };
    let rows = vec![
        (l.pick("Gesamtforderung", "Total claim").into(), l.money(total, &f.currency)),
        (l.pick("Rechnungsnummer", "Invoice number").into(), f.invoice_number.clone()),
        (l.pick("Verwendungszweck", "Reference").into(), grouped(&f.reference, 4)),
    ];
    compose(subject, greeting(f), &[p], &rows, closing(l))
}

/// `credit_note`: a refund lowered what the buyer owes, or is owed back.
pub fn credit_note(f: &InvoiceFacts, amount: i64, still_owed: i64, owed_back: i64) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Gutschrift zu Rechnung {} von {}", f.invoice_number, f.buyer.merchant),
        Locale::En => format!("Credit note for invoice {} from {}", f.invoice_number, f.buyer.merchant),
    };
    let p = match (l, still_owed > 0) {
        (Locale::De, true) => format!(
            "{} hat Ihnen zu Rechnung {} eine Gutschrift über {} erteilt. Offen sind noch {}.",
            f.buyer.merchant,
            f.invoice_number,
            l.money(amount, &f.currency),
            l.money(still_owed, &f.currency)
        ),
        (Locale::De, false) => format!(
            "{} hat Ihnen zu Rechnung {} eine Gutschrift über {} erteilt. Die Rechnung ist damit ausgeglichen.",
            f.buyer.merchant,
            f.invoice_number,
            l.money(amount, &f.currency)
        ),
        (Locale::En, true) => format!(
            "{} issued a credit note of {} for invoice {}. {} is still open.",
            f.buyer.merchant,
            l.money(amount, &f.currency),
            f.invoice_number,
            l.money(still_owed, &f.currency)
        ),
        (Locale::En, false) => format!(
            "{} issued a credit note of {} for invoice {}. The invoice is now settled.",
            f.buyer.merchant,
            l.money(amount, &f.currency),
            f.invoice_number
        ),
    };
    let mut paragraphs = vec![p];
    if owed_back > 0 {
        paragraphs.push(match l {
            Locale::De => format!("Sie erhalten {} von uns zurück.", l.money(owed_back, &f.currency)),
            Locale::En => format!("We will pay {} back to you.", l.money(owed_back, &f.currency)),
        });
    }
    let mut rows = vec![(l.pick("Gutschrift", "Credit note").into(), l.money(amount, &f.currency))];
    if still_owed > 0 {
        rows.extend(payment_rows(f, still_owed, f.due));
    }
    compose(subject, greeting(f), &paragraphs, &rows, closing(l))
}

/// `payment_link`: a telesales order's payment page.
pub fn payment_link(locale: Locale, addressee: &str, merchant: &str, url: &str, expires: DateTime<Utc>) -> Composed {
    let l = locale;
    let subject = match l {
        Locale::De => format!("Ihre Bestellung bei {merchant}: Kauf auf Rechnung abschließen"),
        Locale::En => format!("Your order from {merchant}: complete your purchase on invoice"),
    };
    let greeting = match l {
        Locale::De => format!("Guten Tag {addressee},"),
        Locale::En => format!("Dear {addressee},"),
    };
    let p = match l {
        Locale::De => format!(
            "wie telefonisch besprochen können Sie Ihre Bestellung bei {merchant} auf Rechnung bezahlen. Bitte \
             prüfen und bestätigen Sie sie bis {} auf dieser Seite:",
            l.date(expires.date_naive())
        ),
        Locale::En => format!(
            "As agreed on the phone, you can pay for your order from {merchant} on invoice. Please review and \
             confirm it by {} on this page:",
            l.date(expires.date_naive())
        ),
    };
    compose(subject, greeting, &[p, url.to_owned()], &[], closing(l))
}

/// Where a message belongs and what caused it.
pub struct Outgoing<'a> {
    pub psp_id: PspId,
    pub order_id: Option<OrderId>,
    pub capture_id: Option<CaptureId>,
    pub kind: &'a str,
    /// Unique per cause, e.g. `capture:<id>:payment_information`.
    pub cause_key: String,
    pub locale: Locale,
    pub to: &'a str,
    /// The document to attach and the data it renders from (JSON), if any.
    pub attachment: Option<String>,
}

/// The host part of `mail_from`, for Message-IDs.
fn mail_domain(s: &Services) -> String {
    s.config
        .mail_from
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_owned())
        .unwrap_or_else(|_| "netterms.invalid".into())
}

/// Writes the message and the job that sends it into `tx` (deferred). A second message for the
/// same cause is not written; without a recipient nothing is.
pub fn enqueue(s: &Services, tx: &mut Tx, o: &Outgoing<'_>, c: &Composed, at: PspTime) {
    enqueue_many(s, tx, &[(o, c, at)]);
}

/// [`enqueue`] for many messages: two statements for all of them (deferred). Without an SMTP
/// server a message is kept, not sent (SPEC §9.2): it is written `stored` at once, and no job is
/// queued for it — a send job would only have marked it so, two more writes per message.
pub fn enqueue_many(s: &Services, tx: &mut Tx, items: &[(&Outgoing<'_>, &Composed, PspTime)]) {
    let domain = mail_domain(s);
    let status = if s.mailer.is_some() { "queued" } else { "stored" };
    let mut ids = Vec::with_capacity(items.len());
    let mut payloads = Vec::with_capacity(items.len());
    for (o, c, _) in items {
        let id = uuid::Uuid::now_v7();
        ids.push((id, format!("<{}@{domain}>", id.simple()), c.body.to_json()));
        payloads
            .push((serde_json::json!({ "cause_key": o.cause_key }).to_string(), format!("{SEND_JOB}:{}", o.cause_key)));
    }
    let mut messages = Vec::new();
    let mut jobs_ = Vec::new();
    for (((o, c, at), (id, message_id, body)), (payload, unique)) in items.iter().zip(&ids).zip(&payloads) {
        if o.to.is_empty() {
            // The order names no one to write to (no debtor person): nothing to send.
            continue;
        }
        messages.push((
            NewMessage {
                id: *id,
                psp_id: o.psp_id,
                order_id: o.order_id,
                capture_id: o.capture_id,
                kind: o.kind,
                cause_key: &o.cause_key,
                locale: o.locale.as_str(),
                to: o.to,
                subject: &c.subject,
                body,
                attachment: o.attachment.as_deref(),
                message_id,
                status,
            },
            at.now,
        ));
        if s.mailer.is_none() {
            continue;
        }
        jobs_.push((
            NewJob {
                kind: SEND_JOB,
                psp_id: Some(o.psp_id),
                payload,
                unique_key: Some(unique),
                run_at: at.wall,
                max_attempts: MAX_ATTEMPTS,
            },
            at.wall,
        ));
    }
    store::insert_many(tx, &messages);
    jobs::enqueue_many(tx, &jobs_);
}

pub(super) fn outgoing<'a>(
    f: &'a InvoiceFacts,
    kind: &'a str,
    cause: String,
    attachment: Option<String>,
) -> Outgoing<'a> {
    Outgoing {
        psp_id: f.psp_id,
        order_id: Some(f.order_id),
        capture_id: Some(f.capture_id),
        kind,
        cause_key: cause,
        locale: f.buyer.locale,
        to: &f.buyer.to,
        attachment,
    }
}

fn attachment(spec: &crate::documents::Spec) -> Option<String> {
    serde_json::to_string(spec).ok()
}

/// Queues a new invoice's payment information, with its PDF.
pub fn queue_payment_information(s: &Services, tx: &mut Tx, f: &InvoiceFacts, at: PspTime) {
    let spec = super::documents::payment_information(f);
    let cause = format!("capture:{}:payment_information", f.capture_id);
    enqueue(s, tx, &outgoing(f, "payment_information", cause, attachment(&spec)), &payment_information(f), at);
}

/// Queues the reminder before the due date.
pub fn queue_reminder(s: &Services, tx: &mut Tx, f: &InvoiceFacts, at: PspTime) {
    let cause = format!("capture:{}:dunning:reminder", f.capture_id);
    enqueue(s, tx, &outgoing(f, "payment_reminder", cause, None), &payment_reminder(f), at);
}

/// Queues a dunning level's notice, with its PDF.
pub fn queue_dunning(s: &Services, tx: &mut Tx, f: &InvoiceFacts, d: &DunningFacts, at: PspTime) {
    let spec = super::documents::dunning_notice(f, d, at.now.date_naive());
    let cause = format!("capture:{}:dunning:level_{}", f.capture_id, d.level);
    enqueue(s, tx, &outgoing(f, "dunning", cause, attachment(&spec)), &dunning_notice(f, d), at);
}

/// Queues the notice of the hand-over to collection.
pub fn queue_collection(s: &Services, tx: &mut Tx, f: &InvoiceFacts, total: i64, contact: &str, at: PspTime) {
    let cause = format!("capture:{}:dunning:collection", f.capture_id);
    enqueue(s, tx, &outgoing(f, "collection_notice", cause, None), &collection_notice(f, total, contact), at);
}

/// Queues a credit note's message.
pub fn queue_credit_note(
    s: &Services,
    tx: &mut Tx,
    f: &InvoiceFacts,
    refund_id: crate::domain::ids::RefundId,
    amounts: (i64, i64, i64),
    at: PspTime,
) {
    let cause = format!("refund:{refund_id}:credit_note");
    let (amount, still_owed, owed_back) = amounts;
    enqueue(s, tx, &outgoing(f, "credit_note", cause, None), &credit_note(f, amount, still_owed, owed_back), at);
}

/// The send job: sends the message of `payload.cause_key` unless it went already. Without an SMTP
/// server the message is kept as `stored`. An SMTP failure is recorded and returned, so the job
/// is retried with backoff; on its last attempt the message becomes `failed`. A message sent or
/// stored is recorded in one transaction with the job's end (`worker`'s claim, fenced), so each
/// message costs one write after its SMTP conversation, not two.
pub async fn send(s: &Services, job: &jobs::Job, worker: &str) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Payload {
        cause_key: String,
    }
    let (attempt, max_attempts) = (job.attempts, job.max_attempts);
    let p: Payload = serde_json::from_str(&job.payload)?;
    let done = Some((job, worker));
    let mut conn = s.db.conn().await?;
    let m = store::by_cause(&mut conn, &p.cause_key).await?;
    drop(conn);
    let Some(m) = m.filter(|m| !matches!(m.status.as_str(), "sent" | "stored")) else {
        // Gone already (or never written): the job has nothing left to do.
        finish(s, job, worker).await?;
        return Ok(());
    };
    let Some(mailer) = &s.mailer else {
        record(s, m.id, "stored", None, None, done).await?;
        return Ok(());
    };
    // Rendering the PDF is CPU work: off the async threads, so that the sends of other lanes that
    // the SMTP server already accepted are recorded without waiting behind it (a node that dies in
    // between sends those again).
    let email = {
        let (s, m) = (s.clone(), m.clone());
        tokio::task::spawn_blocking(move || build(&s, &m)).await??
    };
    // The whole delivery is bounded, whatever stage a server stalls in (lettre's own timeout does
    // not cover every read, e.g. a greeting that never comes).
    let limit = StdDuration::from_secs(s.config.smtp_timeout_secs);
    let result = match tokio::time::timeout(limit, mailer.0.send(email)).await {
        Ok(r) => r.map_err(|e| {
            let error =
                if e.is_permanent() { "refused by the SMTP server (permanent)" } else { "SMTP delivery failed" };
            e.status().map(|c| format!("{error}: {c}")).unwrap_or_else(|| error.to_owned())
        }),
        Err(_) => Err(format!("the SMTP server did not answer within {} s", s.config.smtp_timeout_secs)),
    };
    match result {
        Ok(_) => {
            record(s, m.id, "sent", None, Some(s.clock.now()), done).await?;
            metrics::counter!("messages_sent_total").increment(1);
            Ok(())
        }
        Err(detail) => {
            // The server's answer, never the message's content or address.
            let status = if attempt >= max_attempts { "failed" } else { "queued" };
            record(s, m.id, status, Some(&detail), None, None).await?;
            metrics::counter!("messages_failed_attempts_total").increment(1);
            Err(anyhow::anyhow!("{detail}"))
        }
    }
}

async fn record(
    s: &Services,
    id: uuid::Uuid,
    status: &str,
    error: Option<&str>,
    sent_at: Option<DateTime<Utc>>,
    done: Option<(&jobs::Job, &str)>,
) -> Result<(), StoreError> {
    // In its own transaction on the main pool: between the SMTP server's acceptance and this
    // record the message would go out again if the node died (issue 19, item 25), so it does not
    // queue for the few connections of the relaxed pool, which a fresh node opens only on demand.
    // With it, the job ends (`done`), if the claim is still this worker's.
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    store::record_attempt(&mut tx, id, status, error, sent_at, now).await?;
    if let Some((job, worker)) = done {
        jobs::finish(&mut tx, job, worker, now).await?;
    }
    tx.commit().await
}

/// Ends the send job of a message that went already.
async fn finish(s: &Services, job: &jobs::Job, worker: &str) -> Result<(), StoreError> {
    let mut tx = s.db.begin().await?;
    jobs::finish(&mut tx, job, worker, s.clock.now()).await?;
    tx.commit().await
}

/// The e-mail of a stored message: text and HTML alternatives, the attachment if any.
fn build(s: &Services, m: &store::Message) -> anyhow::Result<lettre::Message> {
    let from: Mailbox = s.config.mail_from.parse()?;
    let to: Mailbox = m.to_address.parse()?;
    // Every e-mail and its PDF end with who netterms is (the imprint).
    let imprint = super::imprint::lines(&s.config, Locale::parse(&m.locale));
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(super::imprint::text_with(&m.body_text, &imprint)))
        .singlepart(SinglePart::html(super::imprint::html_with(&m.body_html, &imprint)));
    // (`m` comes from the store with its text and HTML made from the stored parts.)
    let body = match &m.attachment {
        Some(spec) => {
            let doc = super::documents::render_attachment(spec, &imprint)?;
            MultiPart::mixed()
                .multipart(alternative)
                .singlepart(Attachment::new(doc.filename).body(doc.bytes, ContentType::parse("application/pdf")?))
        }
        None => alternative,
    };
    let date: std::time::SystemTime = m.created_at.into();
    Ok(lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .message_id(Some(m.message_id.clone()))
        // RFC 3834: sent by a machine, so auto-responders do not answer it.
        .header(AutoSubmitted)
        .date(date)
        .multipart(body)?)
}

/// `Auto-Submitted: auto-generated` (RFC 3834).
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_dates_in_each_locale() {
        assert_eq!(Locale::De.money(123_456, "EUR"), "1.234,56 €");
        assert_eq!(Locale::En.money(123_456, "EUR"), "€1,234.56");
        assert_eq!(Locale::De.money(5, "EUR"), "0,05 €");
        assert_eq!(Locale::En.money(100_000_000, "CHF"), "CHF 1,000,000.00");
        let d = NaiveDate::from_ymd_opt(2026, 12, 27).unwrap();
        assert_eq!(Locale::De.date(d), "27.12.2026");
        assert_eq!(Locale::En.date(d), "27 December 2026");
    }
}
