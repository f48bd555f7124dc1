//! Documents from the service's side: the records they render from, built from an invoice's
//! facts, and rendering a message's attachment.

use super::facts::{DunningFacts, InvoiceFacts, notice_paragraphs};
use crate::documents::{self, Dunning, Invoice, Line, Rendered, Spec};

/// The payment information's record of an invoice.
pub fn invoice_record(f: &InvoiceFacts) -> Invoice {
    Invoice {
        locale: f.buyer.locale.as_str().into(),
        merchant: f.buyer.merchant.clone(),
        company: f.buyer.company.clone(),
        addressee: if f.buyer.addressee == f.buyer.company { String::new() } else { f.buyer.addressee.clone() },
        address: f.buyer.address.clone(),
        invoice_number: f.invoice_number.clone(),
        invoice_date: f.invoice_date,
        due: f.due,
        currency: f.currency.clone(),
        gross: f.gross,
        outstanding: f.outstanding,
        lines: f
            .line_items
            .iter()
            .map(|i| Line { title: i.title.clone(), quantity: i.quantity, gross: i.amount.gross })
            .collect(),
        payee: "netterms".into(),
        iban: f.iban.clone(),
        bic: f.bic.clone(),
        reference: f.reference.clone(),
        mandate_reference: f.buyer.mandate_reference.clone(),
        creditor_id: f.creditor_id.clone(),
    }
}

pub fn payment_information(f: &InvoiceFacts) -> Spec {
    Spec::PaymentInformation { invoice: invoice_record(f) }
}

pub fn dunning_notice(f: &InvoiceFacts, d: &DunningFacts, notice_date: chrono::NaiveDate) -> Spec {
    Spec::DunningNotice {
        invoice: invoice_record(f),
        dunning: Dunning {
            level: d.level,
            title: d.title.clone(),
            notice_date,
            fees: d.fees,
            interest: d.interest,
            total: d.total,
            deadline: d.deadline,
            notes: notice_paragraphs(f.buyer.locale, f, d),
        },
    }
}

/// Renders a message's stored attachment record, with the issuer's imprint at its foot.
pub fn render_attachment(spec: &str, imprint: &[String]) -> anyhow::Result<Rendered> {
    let spec: Spec = serde_json::from_str(spec)?;
    Ok(documents::render_with(&spec, imprint)?)
}
