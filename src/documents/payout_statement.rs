//! The payout statement (SPEC §10): one page that says what a payout is made of — captures
//! (gross, netterms' fees, net), refunds, direct payments and chargebacks recovered — and that it
//! adds up to the amount transferred; the movements one by one are in the report (CSV).

use krilla::Document;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use serde::{Deserialize, Serialize};

use super::RenderError;
use super::layout::{A4_HEIGHT, A4_WIDTH, Canvas, Fonts, MARGIN, Weight};
use crate::domain::locale::Locale;

const RIGHT: f32 = A4_WIDTH - MARGIN;

/// What the statement shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub payout_id: uuid::Uuid,
    pub psp_name: String,
    pub iban: String,
    pub end_to_end_id: String,
    pub currency: String,
    /// The cut-off day (exclusive) and when the payout was made.
    pub period_end: String,
    pub created: chrono::NaiveDate,
    pub state: String,
    pub amount: i64,
    /// Captures: how many, their gross, netterms' fees on them.
    pub captures: (i64, i64, i64),
    /// (kind, how many, sum) of the recoveries: refunds, direct payments, chargebacks.
    pub recoveries: Vec<(String, i64, i64)>,
    pub fee_invoice: Option<String>,
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "refund" => "Erstattungen (Gutschriften) / Refunds",
        "direct_payment" => "Direkt an den Händler gezahlt / Paid to the merchant",
        "chargeback" => "Rückbelastungen aus Reklamationen / Chargebacks",
        "payout_rejected" => "Von der Bank abgewiesene Auszahlung, erneut gezahlt / Rejected payout paid again",
        _ => "Sonstige Buchungen / Other movements",
    }
}

pub fn render(st: &Statement, imprint: &[String]) -> Result<Vec<u8>, RenderError> {
    let fonts = Fonts::load().ok_or(RenderError::Fonts)?;
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new().title(format!("Auszahlung {}", st.payout_id)).creator("netterms".into()).language("de".into()),
    );
    {
        let mut page = doc.start_page_with(
            PageSettings::from_wh(A4_WIDTH, A4_HEIGHT).ok_or_else(|| RenderError::Pdf("page size".into()))?,
        );
        let mut surface = page.surface();
        let mut c = Canvas::new(&mut surface, &fonts);
        draw(&mut c, st);
        super::footer_lines(&mut c, "netterms – Auszahlungsbeleg / payout statement", imprint);
        surface.finish();
        page.finish();
    }
    doc.finish().map_err(|e| RenderError::Pdf(format!("{e:?}")))
}

fn draw(c: &mut Canvas<'_, '_>, st: &Statement) {
    let l = Locale::De;
    let cur = st.currency.as_str();
    c.text(MARGIN, 64.0, "netterms", Weight::Bold, 18.0);
    c.text_right(RIGHT, 64.0, "Auszahlungsbeleg / Payout statement", Weight::Regular, 9.0);
    c.rule(MARGIN, RIGHT, 76.0);
    let mut y = 112.0;
    for (label, value) in [
        ("Empfänger / Payee", st.psp_name.clone()),
        ("IBAN", st.iban.clone()),
        ("Auszahlung / Payout", st.payout_id.to_string()),
        ("End-to-End-ID", st.end_to_end_id.clone()),
        (
            "Stichtag (exklusiv) / Cut-off",
            st.period_end.parse::<chrono::NaiveDate>().map_or_else(|_| st.period_end.clone(), |d| l.date(d)),
        ),
        ("Erstellt / Made", l.date(st.created)),
        ("Status / State", st.state.clone()),
    ] {
        c.text(MARGIN, y, label, Weight::Regular, 9.0);
        c.text(MARGIN + 170.0, y, &value, Weight::Regular, 10.0);
        y += 14.0;
    }
    y += 20.0;
    c.text(MARGIN, y, "Zusammensetzung / What it is made of", Weight::Bold, 12.0);
    c.text_right(RIGHT - 110.0, y, "Anzahl", Weight::Bold, 9.0);
    c.text_right(RIGHT, y, "Betrag", Weight::Bold, 9.0);
    c.rule(MARGIN, RIGHT, y + 5.0);
    y += 20.0;
    let (n, gross, fees) = st.captures;
    let mut rows: Vec<(String, Option<i64>, i64)> = vec![
        ("Rechnungen (brutto) / Invoices captured".into(), Some(n), gross),
        ("abzüglich netterms-Gebühren / less netterms' fees".into(), None, -fees),
    ];
    for (kind, count, sum) in &st.recoveries {
        rows.push((kind_label(kind).into(), Some(*count), *sum));
    }
    for (label, count, amount) in rows {
        c.text(MARGIN, y, &label, Weight::Regular, 10.0);
        if let Some(count) = count {
            c.text_right(RIGHT - 110.0, y, &count.to_string(), Weight::Regular, 10.0);
        }
        c.text_right(RIGHT, y, &l.money(amount, cur), Weight::Regular, 10.0);
        y += 15.0;
    }
    c.rule(MARGIN, RIGHT, y - 6.0);
    y += 8.0;
    c.text(MARGIN, y, "Auszahlungsbetrag / Amount paid out", Weight::Bold, 11.0);
    c.text_right(RIGHT, y, &l.money(st.amount, cur), Weight::Bold, 11.0);
    y += 30.0;
    let mut note = "Jede Buchung einzeln, mit Bestellung, Rechnung, Gutschrift, Reklamation und den Referenzen des \
                    Händlers, steht im Auszahlungsbericht (report.csv); seine Beträge ergeben zusammen den \
                    Auszahlungsbetrag."
        .to_owned();
    if let Some(number) = &st.fee_invoice {
        note.push_str(&format!(
            " Die Gebühren stellt netterms mit der Rechnung {number} in Rechnung (fee-invoice.pdf, E-Rechnung)."
        ));
    }
    c.paragraph(MARGIN, y, RIGHT - MARGIN, &note, Weight::Regular, 9.0);
}
