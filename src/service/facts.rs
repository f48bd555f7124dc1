//! What the buyer's messages and documents about an invoice are made from: the buyer as its
//! order names it, the invoice's figures, and what a dunning notice states (with its paragraphs,
//! which the e-mail and the PDF share). Below both the messages and the documents.

use chrono::NaiveDate;

use super::Services;
use crate::domain::ids::{CaptureId, OrderId, PspId};
use crate::domain::locale::Locale;
use crate::store::StoreError;
use crate::store::captures::CaptureRow;
use crate::store::messages as store;

/// BIC of the account behind the virtual IBANs.
pub const BIC: &str = "NTRMDEB1XXX";

/// What every message about one invoice names: its buyer (as the order names it) and the
/// invoice's own figures.
#[derive(Debug, Clone)]
pub struct InvoiceFacts {
    pub psp_id: PspId,
    pub order_id: OrderId,
    pub capture_id: CaptureId,
    pub buyer: Buyer,
    pub invoice_number: String,
    /// The day the invoice was issued (the capture), on the PSP's clock.
    pub invoice_date: NaiveDate,
    pub currency: String,
    pub gross: i64,
    pub outstanding: i64,
    pub due: NaiveDate,
    pub iban: String,
    pub bic: String,
    pub reference: String,
    pub creditor_id: String,
    pub line_items: Vec<crate::domain::order::LineItem>,
}

/// Who a buyer's messages about one order go to, and in which language.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub locale: Locale,
    /// The e-mail address (empty when the order names none: nothing is sent then).
    pub to: String,
    /// "Anna Einkauf", or the company when no person is named.
    pub addressee: String,
    pub company: String,
    /// The company's postal address, line by line.
    pub address: Vec<String>,
    pub merchant: String,
    /// For SEPA direct debit: the mandate reference (and netterms' creditor id).
    pub mandate_reference: Option<String>,
    pub order_lines: Vec<crate::domain::order::LineItem>,
}

/// The buyer of order `order_id` (`to` is empty when the order names no e-mail address).
/// Only reads: callers with deferred writes call it before them.
pub async fn buyer(tx: &mut impl crate::store::AsExec, psp_id: PspId, order_id: OrderId) -> Result<Buyer, StoreError> {
    let order = store::order_contact(tx, psp_id, order_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("capture without its order".into()))?;
    buyer_of(order)
}

/// The buyer as an order's contact record names it.
pub fn buyer_of(order: store::OrderContact) -> Result<Buyer, StoreError> {
    let data: crate::domain::order::OrderData =
        serde_json::from_str(&order.order_data).map_err(|e| StoreError::Corrupt(format!("orders.order_data: {e}")))?;
    let person = data.debtor_person.clone().unwrap_or_default();
    let locale = Locale::parse(order.locale.as_deref().unwrap_or("de"));
    let merchant = order.merchant_name.unwrap_or_default();
    let name =
        [person.first_name.as_deref(), person.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let a = &data.debtor_company.address;
    let street = [Some(a.street.as_str()), a.house_number.as_deref()].into_iter().flatten().collect::<Vec<_>>();
    let mut address = vec![street.join(" "), format!("{} {}", a.postal_code, a.city)];
    if a.country != "DE" {
        address.push(a.country.clone());
    }
    Ok(Buyer {
        locale,
        to: person.email,
        addressee: if name.is_empty() { data.debtor_company.name.clone() } else { name },
        company: data.debtor_company.name,
        address,
        merchant,
        mandate_reference: (order.payment_method == "direct_debit").then(|| order.mandate_reference.clone()).flatten(),
        order_lines: data.line_items,
    })
}

impl InvoiceFacts {
    /// The facts of invoice `c` of `buyer`'s order.
    pub fn of(s: &Services, b: &Buyer, c: &CaptureRow) -> Result<InvoiceFacts, StoreError> {
        let items: Vec<crate::domain::order::LineItem> = serde_json::from_str(&c.line_items).unwrap_or_default();
        Ok(InvoiceFacts {
            psp_id: c.psp_id,
            order_id: c.order_id,
            capture_id: c.id,
            buyer: b.clone(),
            invoice_number: c.external_invoice_number.clone(),
            invoice_date: c.created_at.date_naive(),
            currency: c.currency.clone(),
            gross: c.gross,
            outstanding: c.outstanding(),
            due: c.due_date.parse().map_err(|_| StoreError::Corrupt("captures.due_date".into()))?,
            iban: c.virtual_iban.clone(),
            bic: BIC.into(),
            reference: c.payment_reference.clone(),
            creditor_id: s.config.sepa_creditor_id.clone(),
            line_items: if items.is_empty() { b.order_lines.clone() } else { items },
        })
    }
}

/// The facts of invoice `c` for its buyer's messages and documents.
pub async fn invoice_facts(
    s: &Services,
    tx: &mut impl crate::store::AsExec,
    c: &CaptureRow,
) -> Result<InvoiceFacts, StoreError> {
    let b = buyer(tx, c.psp_id, c.order_id).await?;
    InvoiceFacts::of(s, &b, c)
}

/// What a dunning notice states.
#[derive(Debug, Clone)]
pub struct DunningFacts {
    pub level: i64,
    /// Where the level stands: the first, one between, or the last before collection.
    pub stage: NoticeStage,
    pub title: String,
    /// Default interest that runs: its yearly rate (basis points, base rate included), the base
    /// rate, and the day it runs from (§ 288 Abs. 2 BGB).
    pub interest_rate: Option<(i64, i64, NaiveDate)>,
    /// The day the claim goes to collection if still unpaid (the last notice says it).
    pub collection_on: Option<NaiveDate>,
    pub fees: i64,
    /// Default interest up to the deadline (charged so far, and what runs until then).
    pub interest: i64,
    /// What settles the invoice if paid by the deadline.
    pub total: i64,
    pub deadline: NaiveDate,
}

/// Where a dunning level stands among the policy's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeStage {
    First,
    Between,
    Last,
}

/// A rate in basis points as people write it: "10,27 %" / "10.27%".
fn percent(l: Locale, bps: i64) -> String {
    let s = format!("{}{}.{:02}", if bps < 0 { "-" } else { "" }, bps.abs() / 100, bps.abs() % 100);
    match l {
        Locale::De => format!("{} %", s.replace('.', ",")),
        Locale::En => format!("{s}%"),
    }
}

/// What a notice says beyond "please pay": the first asks kindly, the ones between state the
/// default and its interest (rate and period, § 288 BGB), the last what happens next and when.
pub(crate) fn notice_paragraphs(l: Locale, f: &InvoiceFacts, d: &DunningFacts) -> Vec<String> {
    let mut out = Vec::new();
    match (d.stage, l) {
        (NoticeStage::First, Locale::De) => out.push(
            "Vielleicht ist Ihnen die Zahlung im Tagesgeschäft entgangen – das kann passieren. Bitte holen Sie \
             sie nach; bei Fragen zur Rechnung antworten Sie einfach auf diese E-Mail."
                .into(),
        ),
        (NoticeStage::First, Locale::En) => out.push(
            "Perhaps the payment slipped through in day-to-day business; that happens. Please make it now; if you \
             have a question about the invoice, simply reply to this e-mail."
                .into(),
        ),
        (_, Locale::De) => out.push(format!(
            "Sie befinden sich mit der Zahlung in Verzug (§ 286 BGB). Wir berechnen deshalb die gesetzlichen \
             Verzugskosten für Forderungen zwischen Unternehmen (§ 288 BGB), wie unten aufgeführt, im Auftrag von {}.",
            f.buyer.merchant
        )),
        (_, Locale::En) => out.push(format!(
            "You are in default of payment (§ 286 BGB). We therefore charge the statutory costs of default between \
             businesses (§ 288 BGB), as listed below, on behalf of {}.",
            f.buyer.merchant
        )),
    }
    if let Some((rate, base, from)) = d.interest_rate {
        out.push(match l {
            Locale::De => format!(
                "Verzugszinsen: 9 Prozentpunkte über dem jeweiligen Basiszinssatz (§ 288 Abs. 2, § 247 BGB; derzeit \
                 {} Basiszinssatz, also {} im Jahr) auf den offenen Rechnungsbetrag, vom {} bis zum Zahlungsziel {}.",
                percent(l, base),
                percent(l, rate),
                l.date(from),
                l.date(d.deadline)
            ),
            Locale::En => format!(
                "Default interest: 9 percentage points above the base rate in force (§ 288(2), § 247 BGB; now {} \
                 base rate, so {} a year) on the invoice amount open, from {} to the pay-by date {}.",
                percent(l, base),
                percent(l, rate),
                l.date(from),
                l.date(d.deadline)
            ),
        });
    }
    if d.stage == NoticeStage::Last {
        out.push(match (l, d.collection_on) {
            (Locale::De, Some(on)) => format!(
                "Dies ist unsere letzte Mahnung. Geht der Gesamtbetrag nicht bis zum {} ein, übergeben wir die \
                 Forderung am {} an das Inkasso; dadurch können Ihnen weitere Kosten entstehen.",
                l.date(d.deadline),
                l.date(on.max(d.deadline + chrono::Duration::days(1)))
            ),
            (Locale::En, Some(on)) => format!(
                "This is our final notice. If the total has not arrived by {}, we hand the claim over to collection \
                 on {}, which may cause you further costs.",
                l.date(d.deadline),
                l.date(on.max(d.deadline + chrono::Duration::days(1)))
            ),
            (Locale::De, None) => format!(
                "Dies ist unsere letzte Mahnung. Geht der Gesamtbetrag nicht bis zum {} ein, behalten wir uns \
                 weitere Schritte vor.",
                l.date(d.deadline)
            ),
            (Locale::En, None) => format!(
                "This is our final notice. If the total has not arrived by {}, we reserve further steps.",
                l.date(d.deadline)
            ),
        });
    }
    out
}
