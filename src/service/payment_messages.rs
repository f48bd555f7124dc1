//! The buyer's messages about money that arrived or came back (SPEC §9.2): `payment_received`,
//! `direct_debit_returned` and `direct_debit_rejected`, in German and English.

use super::Services;
use super::messages::{Composed, InvoiceFacts, Locale, closing, compose, enqueue, greeting, outgoing, payment_rows};
use crate::clock::PspTime;
use crate::store::Tx;

/// What one payment did to one invoice.
#[derive(Debug, Clone, Copy)]
pub struct Booked {
    pub amount: i64,
    pub charges: i64,
    /// Principal still open afterwards (plus charges still open).
    pub still_owed: i64,
}

/// `payment_received`: the amount, what it settled, what is left.
pub fn payment_received(f: &InvoiceFacts, b: Booked) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Zahlungseingang zu Rechnung {} von {}", f.invoice_number, f.buyer.merchant),
        Locale::En => format!("Payment received for invoice {} from {}", f.invoice_number, f.buyer.merchant),
    };
    let money = |m| l.money(m, &f.currency);
    let mut paragraphs = vec![match (l, b.still_owed > 0) {
        (Locale::De, false) => format!(
            "vielen Dank: Ihre Zahlung über {} ist eingegangen. Rechnung {} ist damit vollständig bezahlt.",
            money(b.amount),
            f.invoice_number
        ),
        (Locale::De, true) => format!(
            "vielen Dank: Ihre Zahlung über {} ist eingegangen und auf Rechnung {} verbucht. Offen sind noch {}.",
            money(b.amount),
            f.invoice_number,
            money(b.still_owed)
        ),
        (Locale::En, false) => format!(
            "Thank you: your payment of {} has arrived. Invoice {} is now paid in full.",
            money(b.amount),
            f.invoice_number
        ),
        (Locale::En, true) => format!(
            "Thank you: your payment of {} has arrived and was booked on invoice {}. {} is still open.",
            money(b.amount),
            f.invoice_number,
            money(b.still_owed)
        ),
    }];
    if b.charges > 0 {
        paragraphs.push(match l {
            Locale::De => format!(
                "Davon haben wir {} auf Mahngebühren und Verzugszinsen angerechnet (§ 367 BGB).",
                money(b.charges)
            ),
            Locale::En => format!("Of it, {} went to dunning fees and default interest first.", money(b.charges)),
        });
    }
    let mut rows = vec![(l.pick("Eingegangen", "Received").into(), money(b.amount))];
    if b.still_owed > 0 {
        // The payment data name the invoice number too.
        rows.extend(payment_rows(f, b.still_owed, f.due));
    } else {
        rows.push((l.pick("Rechnungsnummer", "Invoice number").into(), f.invoice_number.clone()));
    }
    compose(subject, greeting(f), &paragraphs, &rows, closing(l))
}

/// The reason code of a returned direct debit in plain words, and what the buyer should do.
pub fn return_reason_text(code: &str, l: Locale) -> (&'static str, &'static str) {
    match code {
        "AM04" => (
            l.pick("Das Konto war nicht ausreichend gedeckt.", "The account did not have sufficient funds."),
            l.pick(
                "Bitte überweisen Sie den Betrag mit den Zahlungsdaten unten.",
                "Please transfer the amount using the payment details below.",
            ),
        ),
        "MD01" => (
            l.pick(
                "Für das Konto liegt Ihrer Bank kein SEPA-Firmenlastschrift-Mandat vor.",
                "Your bank holds no SEPA business direct-debit mandate for the account.",
            ),
            l.pick(
                "Wir buchen Ihre Rechnungen künftig nicht mehr ab. Bitte überweisen Sie den Betrag; wenn Sie wieder \
                 per Lastschrift zahlen möchten, hinterlegen Sie das Mandat bei Ihrer Bank.",
                "We will no longer debit your invoices. Please transfer the amount; to pay by direct debit again, \
                 register the mandate with your bank.",
            ),
        ),
        "MS02" => (
            l.pick(
                "Die Lastschrift wurde von Ihnen oder Ihrer Bank abgelehnt.",
                "You or your bank refused the direct debit.",
            ),
            l.pick(
                "Wir buchen Ihre Rechnungen künftig nicht mehr ab. Bitte überweisen Sie den Betrag.",
                "We will no longer debit your invoices. Please transfer the amount.",
            ),
        ),
        "AC01" | "AC04" | "AC06" => (
            l.pick("Das Konto ist falsch, aufgelöst oder gesperrt.", "The account is wrong, closed or blocked."),
            l.pick("Bitte überweisen Sie den Betrag.", "Please transfer the amount."),
        ),
        "AM05" => (
            l.pick("Die Lastschrift wurde doppelt eingereicht.", "The direct debit was presented twice."),
            l.pick("Bitte überweisen Sie den Betrag.", "Please transfer the amount."),
        ),
        "AG01" | "AG02" => (
            l.pick(
                "Ihre Bank lässt für dieses Konto keine Firmenlastschrift zu.",
                "Your bank does not allow business direct debits on this account.",
            ),
            l.pick(
                "Wir buchen Ihre Rechnungen künftig nicht mehr ab. Bitte überweisen Sie den Betrag.",
                "We will no longer debit your invoices. Please transfer the amount.",
            ),
        ),
        "MD07" => (
            l.pick("Der Kontoinhaber ist laut Bank verstorben.", "The bank reports that the account holder has died."),
            l.pick("Bitte überweisen Sie den Betrag.", "Please transfer the amount."),
        ),
        "SL01" => (
            l.pick(
                "Ihre Bank hat die Lastschrift nach einer von Ihnen hinterlegten Regel abgewiesen (z. B. einer \
                 Lastschriftsperre oder einer Positivliste).",
                "Your bank rejected the direct debit under a rule you set up with it (such as a block or an \
                 allow list).",
            ),
            l.pick(
                "Bitte überweisen Sie den Betrag, oder lassen Sie unsere Gläubiger-ID bei Ihrer Bank zu.",
                "Please transfer the amount, or allow our creditor identifier with your bank.",
            ),
        ),
        "RC01" | "BE05" | "FF01" => (
            l.pick(
                "Die Lastschrift konnte wegen fehlerhafter Angaben nicht ausgeführt werden.",
                "The direct debit could not be carried out because of incorrect details.",
            ),
            l.pick("Bitte überweisen Sie den Betrag.", "Please transfer the amount."),
        ),
        "MS03" => (
            l.pick(
                "Ihre Bank hat die Lastschrift ohne Angabe von Gründen zurückgegeben.",
                "Your bank returned the direct debit without giving a reason.",
            ),
            l.pick("Bitte überweisen Sie den Betrag.", "Please transfer the amount."),
        ),
        _ => (
            l.pick("Ihre Bank hat die Lastschrift zurückgegeben.", "Your bank returned the direct debit."),
            l.pick("Bitte überweisen Sie den Betrag.", "Please transfer the amount."),
        ),
    }
}

/// A returned collection, as the buyer is told of it.
pub struct Returned<'a> {
    /// The bank's reason code.
    pub code: &'a str,
    /// What came back.
    pub amount: i64,
    /// The new date to pay by transfer.
    pub pay_by: chrono::NaiveDate,
}

/// `direct_debit_returned`: the reason in plain words, what to do, how to pay now and by when
/// (`pay_by`, a fair new date: the invoice's due date has passed or is today).
pub fn direct_debit_returned(f: &InvoiceFacts, code: &str, amount: i64, pay_by: chrono::NaiveDate) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Lastschrift zu Rechnung {} zurückgegeben", f.invoice_number),
        Locale::En => format!("Direct debit for invoice {} was returned", f.invoice_number),
    };
    let (why, what) = return_reason_text(code, l);
    let p = match l {
        Locale::De => format!(
            "die Lastschrift über {} zu Rechnung {} von {} wurde von Ihrer Bank zurückgegeben. {why} \
             (Rückgabegrund {code})",
            l.money(amount, &f.currency),
            f.invoice_number,
            f.buyer.merchant
        ),
        Locale::En => format!(
            "The direct debit of {} for invoice {} from {} was returned by your bank. {why} (return reason {code})",
            l.money(amount, &f.currency),
            f.invoice_number,
            f.buyer.merchant
        ),
    };
    let rows = payment_rows(f, f.outstanding, pay_by);
    compose(subject, greeting(f), &[p, what.to_owned()], &rows, closing(l))
}

/// `direct_debit_rejected`: the bank refused to present the collection (nothing was debited);
/// the reason in plain words, how to pay by transfer and by when.
pub fn direct_debit_rejected(f: &InvoiceFacts, code: &str, amount: i64, pay_by: chrono::NaiveDate) -> Composed {
    let l = f.buyer.locale;
    let subject = match l {
        Locale::De => format!("Lastschrift zu Rechnung {} nicht eingezogen", f.invoice_number),
        Locale::En => format!("Direct debit for invoice {} could not be collected", f.invoice_number),
    };
    let (why, what) = return_reason_text(code, l);
    // The catch-all and "no reason given" texts speak of a return; a reject says enough without them.
    let why = if code == "MS03" || why == return_reason_text("", l).0 { String::new() } else { format!(" {why}") };
    let p = match l {
        Locale::De => format!(
            "die Lastschrift über {} zu Rechnung {} von {} konnte nicht eingezogen werden: Ihre Bank hat sie \
             abgelehnt.{why} (Grund {code}) Von Ihrem Konto wurde nichts abgebucht.",
            l.money(amount, &f.currency),
            f.invoice_number,
            f.buyer.merchant
        ),
        Locale::En => format!(
            "The direct debit of {} for invoice {} from {} could not be collected: your bank rejected it.{why} \
             (reason {code}) Nothing was debited from your account.",
            l.money(amount, &f.currency),
            f.invoice_number,
            f.buyer.merchant
        ),
    };
    let rows = payment_rows(f, f.outstanding, pay_by);
    compose(subject, greeting(f), &[p, what.to_owned()], &rows, closing(l))
}

/// Queues the message that a payment was booked on an invoice.
pub fn queue_payment_received(
    s: &Services,
    tx: &mut Tx,
    f: &InvoiceFacts,
    payment_id: uuid::Uuid,
    b: Booked,
    at: PspTime,
) {
    let (o, c) = payment_received_message(f, payment_id, b);
    enqueue(s, tx, &o, &c, at);
}

/// What [`queue_payment_received`] queues, for queueing many at once.
pub fn payment_received_message<'a>(
    f: &'a InvoiceFacts,
    payment_id: uuid::Uuid,
    b: Booked,
) -> (super::messages::Outgoing<'a>, Composed) {
    let cause = format!("payment:{payment_id}:capture:{}:payment_received", f.capture_id);
    (outgoing(f, "payment_received", cause, None), payment_received(f, b))
}

/// Why a collection did not pay the invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebitFailure {
    /// The bank booked it and took it back (a return).
    Returned,
    /// The bank refused to present it (a pain.002 reject): nothing was debited.
    Rejected,
}

/// Queues the message that a collection came back or was refused.
pub fn queue_direct_debit_failure(
    s: &Services,
    tx: &mut Tx,
    f: &InvoiceFacts,
    debit_id: uuid::Uuid,
    failure: DebitFailure,
    r: Returned<'_>,
    at: PspTime,
) {
    let (kind, composed) = match failure {
        DebitFailure::Returned => ("returned", direct_debit_returned(f, r.code, r.amount, r.pay_by)),
        DebitFailure::Rejected => ("rejected", direct_debit_rejected(f, r.code, r.amount, r.pay_by)),
    };
    let cause = format!("direct_debit:{debit_id}:{kind}");
    enqueue(s, tx, &outgoing(f, &format!("direct_debit_{kind}"), cause, None), &composed, at);
}
