//! netterms' own documents as PDF (SPEC §9.4): the payment information per invoice and the
//! dunning notice per level. Each renders from a plain data record, so the same record gives the
//! same bytes (no clock, no system fonts: the fonts ship in the binary), and a message stores the
//! record to attach the document when it is sent.
//!
//! The engine is krilla (the PDF backend of typst): it embeds and subsets fonts, writes PDF/A
//! (PDF/A-3 with embedded files, for EN 16931 invoices later) and builds in a fraction of typst's
//! time; the layout here is by hand, which these one-page documents allow.

pub mod epc;
pub mod fee_invoice;
pub mod layout;
pub mod payout_statement;

use chrono::NaiveDate;
use krilla::Document;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use serde::{Deserialize, Serialize};

use crate::domain::locale::Locale;
use layout::{A4_HEIGHT, A4_WIDTH, Canvas, Fonts, MARGIN, Weight};

/// One line of the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub title: String,
    pub quantity: i64,
    pub gross: i64,
}

/// What both documents show about the invoice and how to pay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub locale: String,
    pub merchant: String,
    pub company: String,
    pub addressee: String,
    pub address: Vec<String>,
    pub invoice_number: String,
    pub invoice_date: NaiveDate,
    pub due: NaiveDate,
    pub currency: String,
    pub gross: i64,
    pub outstanding: i64,
    pub lines: Vec<Line>,
    pub payee: String,
    pub iban: String,
    pub bic: String,
    pub reference: String,
    /// Set for SEPA direct debit: the mandate reference and netterms' creditor id.
    pub mandate_reference: Option<String>,
    pub creditor_id: String,
}

/// A dunning notice's own figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dunning {
    pub level: i64,
    pub title: String,
    pub notice_date: NaiveDate,
    pub fees: i64,
    pub interest: i64,
    pub total: i64,
    pub deadline: NaiveDate,
    /// What this level says beyond the request to pay (the default and its interest, what
    /// happens next), as its e-mail says it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A document to render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "document", rename_all = "snake_case")]
pub enum Spec {
    PaymentInformation { invoice: Invoice },
    DunningNotice { invoice: Invoice, dunning: Dunning },
}

/// A rendered document.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub filename: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the fonts could not be loaded")]
    Fonts,
    #[error("PDF: {0}")]
    Pdf(String),
}

fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// Renders a document.
pub fn render(spec: &Spec) -> Result<Rendered, RenderError> {
    render_with(spec, &[])
}

/// [`render`] with the issuer's imprint (its lines) at the foot of the page.
pub fn render_with(spec: &Spec, imprint: &[String]) -> Result<Rendered, RenderError> {
    let fonts = Fonts::load().ok_or(RenderError::Fonts)?;
    let (invoice, dunning) = match spec {
        Spec::PaymentInformation { invoice } => (invoice, None),
        Spec::DunningNotice { invoice, dunning } => (invoice, Some(dunning)),
    };
    let l = Locale::parse(&invoice.locale);
    let title = match dunning {
        Some(d) => d.title.clone(),
        None => pick(l, "Zahlungsinformationen", "Payment information").to_owned(),
    };
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(format!("{title} – {}", invoice.invoice_number))
            .creator("netterms".into())
            .language(l.as_str().into()),
    );
    {
        let mut page = doc.start_page_with(
            PageSettings::from_wh(A4_WIDTH, A4_HEIGHT).ok_or_else(|| RenderError::Pdf("page size".into()))?,
        );
        let mut surface = page.surface();
        let mut c = Canvas::new(&mut surface, &fonts);
        draw(&mut c, l, &title, invoice, dunning, imprint);
        surface.finish();
        page.finish();
    }
    let bytes = doc.finish().map_err(|e| RenderError::Pdf(format!("{e:?}")))?;
    let filename = match dunning {
        Some(d) => {
            format!("{}-{}-{}.pdf", pick(l, "Mahnung", "dunning-notice"), d.level, safe_name(&invoice.invoice_number))
        }
        None => format!(
            "{}-{}.pdf",
            pick(l, "Zahlungsinformationen", "payment-information"),
            safe_name(&invoice.invoice_number)
        ),
    };
    Ok(Rendered { filename, bytes })
}

fn pick(l: Locale, de: &'static str, en: &'static str) -> &'static str {
    if l == Locale::De { de } else { en }
}

const RIGHT: f32 = A4_WIDTH - MARGIN;

fn draw(c: &mut Canvas<'_, '_>, l: Locale, title: &str, inv: &Invoice, dunning: Option<&Dunning>, imprint: &[String]) {
    let cur = inv.currency.as_str();
    // Letterhead: the merchant's name right of the logo, in at most two lines, never over it.
    c.text(MARGIN, 64.0, "netterms", Weight::Bold, 18.0);
    let beside = MARGIN + layout::width("netterms", Weight::Bold, 18.0) + 24.0;
    let head = format!("{} {}", pick(l, "Rechnungskauf für", "Pay on invoice for"), inv.merchant);
    let head = layout::fit(&head, Weight::Regular, 9.0, RIGHT - beside, 2);
    let top = 64.0 - 11.0 * (head.len() as f32 - 1.0);
    for (i, line) in head.iter().enumerate() {
        c.text_right(RIGHT, top + 11.0 * i as f32, line, Weight::Regular, 9.0);
    }
    c.rule(MARGIN, RIGHT, 76.0);
    // Dates on the right; the addressee left of them, wrapped within its column.
    let date = dunning.map_or(inv.invoice_date, |d| d.notice_date);
    let dated = format!("{}: {}", pick(l, "Datum", "Date"), l.date(date));
    let numbered = format!("{}: {}", pick(l, "Rechnung", "Invoice"), inv.invoice_number);
    c.text_right(RIGHT, 112.0, &dated, Weight::Regular, 10.0);
    c.text_right(RIGHT, 125.0, &numbered, Weight::Regular, 10.0);
    let right_column =
        layout::width(&dated, Weight::Regular, 10.0).max(layout::width(&numbered, Weight::Regular, 10.0));
    let column = RIGHT - right_column - 24.0 - MARGIN;
    let mut y = 112.0;
    for line in std::iter::once(&inv.company).chain(std::iter::once(&inv.addressee)).chain(inv.address.iter()) {
        for part in layout::fit(line, Weight::Regular, 10.0, column, 3) {
            if !part.is_empty() {
                c.text(MARGIN, y, &part, Weight::Regular, 10.0);
                y += 13.0;
            }
        }
    }

    let mut y = (y + 24.0).max(200.0);
    c.text(MARGIN, y, title, Weight::Bold, 16.0);
    y += 24.0;
    let intro = match (dunning, l, &inv.mandate_reference) {
        (Some(d), Locale::De, _) => format!(
            "Ihre Rechnung {} von {} vom {} war am {} fällig und ist bis heute nicht bezahlt. Bitte überweisen Sie \
             den offenen Gesamtbetrag bis spätestens {}.",
            inv.invoice_number,
            inv.merchant,
            l.date(inv.invoice_date),
            l.date(inv.due),
            l.date(d.deadline)
        ),
        (Some(d), Locale::En, _) => format!(
            "Your invoice {} from {} of {} was due on {} and is unpaid to date. Please transfer the total now \
             open by {} at the latest.",
            inv.invoice_number,
            inv.merchant,
            l.date(inv.invoice_date),
            l.date(inv.due),
            l.date(d.deadline)
        ),
        (None, Locale::De, Some(_)) => format!(
            "{} hat Ihre Bestellung auf Rechnung an netterms übertragen. Wir ziehen den Betrag am {} per \
             SEPA-Firmenlastschrift ein (Vorabankündigung).",
            inv.merchant,
            l.date(inv.due)
        ),
        (None, Locale::En, Some(_)) => format!(
            "{} has passed your purchase on invoice to netterms. We will collect the amount by SEPA B2B direct \
             debit on {} (pre-notification).",
            inv.merchant,
            l.date(inv.due)
        ),
        (None, Locale::De, None) => format!(
            "{} hat Ihre Bestellung auf Rechnung an netterms übertragen. Bitte zahlen Sie mit schuldbefreiender \
             Wirkung nur an netterms, bis zum Fälligkeitstag {}.",
            inv.merchant,
            l.date(inv.due)
        ),
        (None, Locale::En, None) => format!(
            "{} has passed your purchase on invoice to netterms. To discharge your debt, please pay netterms \
             only, by the due date, {}.",
            inv.merchant,
            l.date(inv.due)
        ),
    };
    y = c.paragraph(MARGIN, y, RIGHT - MARGIN, &intro, Weight::Regular, 10.0) + 14.0;
    for note in dunning.map(|d| d.notes.as_slice()).unwrap_or_default() {
        y = c.paragraph(MARGIN, y - 6.0, RIGHT - MARGIN, note, Weight::Regular, 9.5) + 10.0;
    }

    // The invoice's lines, or the figures of the notice.
    match dunning {
        None => {
            c.text(MARGIN, y, pick(l, "Position", "Item"), Weight::Bold, 9.0);
            c.text_right(RIGHT - 110.0, y, pick(l, "Menge", "Qty"), Weight::Bold, 9.0);
            c.text_right(RIGHT, y, pick(l, "Betrag", "Amount"), Weight::Bold, 9.0);
            c.rule(MARGIN, RIGHT, y + 5.0);
            y += 18.0;
            let fallback =
                [Line { title: pick(l, "Rechnungsbetrag", "Invoice amount").into(), quantity: 1, gross: inv.gross }];
            let lines: &[Line] = if inv.lines.is_empty() { &fallback } else { &inv.lines };
            for line in lines.iter().take(20) {
                let wrapped = layout::wrap(&line.title, Weight::Regular, 10.0, RIGHT - MARGIN - 170.0);
                c.text_right(RIGHT - 110.0, y, &line.quantity.to_string(), Weight::Regular, 10.0);
                c.text_right(RIGHT, y, &l.money(line.gross, cur), Weight::Regular, 10.0);
                for w in wrapped.iter().take(2) {
                    c.text(MARGIN, y, w, Weight::Regular, 10.0);
                    y += 13.0;
                }
                y += 2.0;
            }
            if inv.lines.len() > 20 {
                let more = format!("… {} {}", inv.lines.len() - 20, pick(l, "weitere Positionen", "more items"));
                c.text(MARGIN, y, &more, Weight::Regular, 9.0);
                y += 13.0;
            }
            c.rule(MARGIN, RIGHT, y - 6.0);
            y += 8.0;
            c.text(MARGIN, y, pick(l, "Rechnungsbetrag", "Invoice total"), Weight::Bold, 10.0);
            c.text_right(RIGHT, y, &l.money(inv.gross, cur), Weight::Bold, 10.0);
            if inv.outstanding != inv.gross {
                y += 14.0;
                c.text(MARGIN, y, pick(l, "Noch offen", "Still open"), Weight::Bold, 10.0);
                c.text_right(RIGHT, y, &l.money(inv.outstanding, cur), Weight::Bold, 10.0);
            }
            y += 30.0;
        }
        Some(d) => {
            let mut rows = vec![
                (pick(l, "Mahnstufe", "Dunning level").to_owned(), d.title.clone()),
                (pick(l, "Offener Rechnungsbetrag", "Invoice amount open").to_owned(), l.money(inv.outstanding, cur)),
            ];
            if d.fees > 0 {
                rows.push((
                    pick(l, "Verzugspauschale (§ 288 Abs. 5 BGB)", "Flat fee for late payment (§ 288(5) BGB)")
                        .to_owned(),
                    l.money(d.fees, cur),
                ));
            }
            if d.interest > 0 {
                let label = match l {
                    Locale::De => format!("Verzugszinsen (§ 288 Abs. 2 BGB) bis {}", l.date(d.deadline)),
                    Locale::En => format!("Default interest (§ 288(2) BGB) to {}", l.date(d.deadline)),
                };
                rows.push((label, l.money(d.interest, cur)));
            }
            for (k, v) in &rows {
                c.text(MARGIN, y, k, Weight::Regular, 10.0);
                c.text_right(RIGHT, y, v, Weight::Regular, 10.0);
                y += 15.0;
            }
            c.rule(MARGIN, RIGHT, y - 8.0);
            y += 6.0;
            c.text(MARGIN, y, pick(l, "Gesamtbetrag", "Total due"), Weight::Bold, 11.0);
            c.text_right(RIGHT, y, &l.money(d.total, cur), Weight::Bold, 11.0);
            y += 16.0;
            c.text(
                MARGIN,
                y,
                &format!("{} {}", pick(l, "Zahlbar bis", "Pay by"), l.date(d.deadline)),
                Weight::Bold,
                10.0,
            );
            y += 30.0;
        }
    }

    // How to pay, with the GiroCode.
    let amount = dunning.map_or(inv.outstanding, |d| d.total);
    let box_h = 150.0;
    c.shade(MARGIN - 8.0, y - 18.0, RIGHT - MARGIN + 16.0, box_h);
    match (&inv.mandate_reference, dunning) {
        (Some(mandate), None) => {
            c.text(MARGIN, y, pick(l, "SEPA-Lastschrift", "SEPA direct debit"), Weight::Bold, 11.0);
            let rows = [
                (pick(l, "Betrag", "Amount"), l.money(amount, cur)),
                (pick(l, "Einzug am", "Collection date"), l.date(crate::domain::sepa::business_day_from(inv.due))),
                (pick(l, "Mandatsreferenz", "Mandate reference"), mandate.clone()),
                (pick(l, "Gläubiger-ID", "Creditor identifier"), inv.creditor_id.clone()),
            ];
            let mut yy = y + 20.0;
            for (k, v) in rows {
                c.text(MARGIN, yy, k, Weight::Regular, 10.0);
                c.text(MARGIN + 130.0, yy, &v, Weight::Bold, 10.0);
                yy += 15.0;
            }
        }
        _ => {
            c.text(MARGIN, y, pick(l, "Bitte überweisen Sie an", "Please transfer to"), Weight::Bold, 11.0);
            let due = dunning.map_or(inv.due, |d| d.deadline);
            let rows = [
                (pick(l, "Empfänger", "Payee"), inv.payee.clone()),
                ("IBAN", inv.iban.clone()),
                ("BIC", inv.bic.clone()),
                (pick(l, "Verwendungszweck", "Reference"), crate::domain::text::grouped(&inv.reference, 4)),
                (pick(l, "Betrag", "Amount"), l.money(amount, cur)),
                (pick(l, "Fällig am", "Due on"), l.date(due)),
            ];
            let mut yy = y + 20.0;
            for (k, v) in rows {
                c.text(MARGIN, yy, k, Weight::Regular, 10.0);
                c.text(MARGIN + 110.0, yy, &v, Weight::Bold, 10.0);
                yy += 15.0;
            }
            if let Some((modules, width)) =
                epc::payload(&inv.bic, &inv.payee, &inv.iban, cur, amount, &inv.reference).and_then(|p| epc::qr(&p))
            {
                let size = 118.0;
                c.qr(RIGHT - size, y - 14.0, size, &modules, width);
                c.text_right(RIGHT - 8.0, y - 18.0 + box_h - 4.0, "GiroCode", Weight::Regular, 7.0);
            }
        }
    }
    // Footer.
    let footer = pick(
        l,
        "netterms übernimmt den Forderungseinzug im Auftrag des Händlers. Zahlungen an den Händler befreien nicht.",
        "netterms collects this claim on behalf of the merchant. Payments to the merchant do not discharge the debt.",
    );
    footer_lines(c, footer, imprint);
}

/// The foot of a page: a rule, `note`, then the issuer's imprint, each line in small type.
pub(crate) fn footer_lines(c: &mut Canvas<'_, '_>, note: &str, imprint: &[String]) {
    let line = 7.5 * 1.35;
    let top = A4_HEIGHT - 50.0 - line * imprint.len() as f32;
    c.rule(MARGIN, RIGHT, top - 14.0);
    let mut y = c.paragraph(MARGIN, top, RIGHT - MARGIN, note, Weight::Regular, 7.5);
    for l in imprint {
        for part in layout::fit(l, Weight::Regular, 7.0, RIGHT - MARGIN, 1) {
            c.text(MARGIN, y, &part, Weight::Regular, 7.0);
        }
        y += line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn invoice() -> Invoice {
        Invoice {
            locale: "de".into(),
            merchant: "Werkzeug Müller GmbH".into(),
            company: "Kunde Maschinenbau GmbH".into(),
            addressee: "Anna Einkauf".into(),
            address: vec!["Leopoldstraße 10".into(), "80802 München".into()],
            invoice_number: "INV-2026-0042".into(),
            invoice_date: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            due: NaiveDate::from_ymd_opt(2026, 12, 27).unwrap(),
            currency: "EUR".into(),
            gross: 11_900,
            outstanding: 11_900,
            lines: vec![Line { title: "Drehmaschine DM-200".into(), quantity: 1, gross: 11_900 }],
            payee: "netterms".into(),
            iban: "DE31100100102438644014".into(),
            bic: "NTRMDEB1XXX".into(),
            reference: "RF18539007547034".into(),
            mandate_reference: None,
            creditor_id: "DE98ZZZ09999999999".into(),
        }
    }

    #[test]
    fn the_same_record_gives_the_same_bytes_and_a_small_file() {
        let spec = Spec::PaymentInformation { invoice: invoice() };
        let a = render(&spec).unwrap();
        let b = render(&spec).unwrap();
        assert_eq!(a.bytes, b.bytes, "deterministic");
        assert!(a.bytes.starts_with(b"%PDF-"));
        assert!(a.bytes.len() < 100_000, "{} bytes", a.bytes.len());
        assert_eq!(a.filename, "Zahlungsinformationen-INV-2026-0042.pdf");
        let d = Spec::DunningNotice {
            invoice: invoice(),
            dunning: Dunning {
                level: 2,
                title: "1. Mahnung".into(),
                notice_date: NaiveDate::from_ymd_opt(2027, 1, 17).unwrap(),
                fees: 4000,
                interest: 75,
                total: 15_975,
                deadline: NaiveDate::from_ymd_opt(2027, 1, 27).unwrap(),
                notes: vec!["Sie befinden sich mit der Zahlung in Verzug (§ 286 BGB).".into()],
            },
        };
        assert_ne!(render(&d).unwrap().bytes, a.bytes);
    }

    /// A word and its box: (word, x_min, y_min, x_max, y_max).
    type WordBox = (String, f32, f32, f32, f32);

    /// Word boxes of a PDF by poppler (`pdftotext -bbox`).
    fn boxes(pdf: &[u8]) -> Option<Vec<WordBox>> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("d.pdf");
        std::fs::write(&path, pdf).ok()?;
        let out = match std::process::Command::new("pdftotext").arg("-bbox").arg(&path).arg("-").output() {
            Ok(o) => o,
            Err(_) if std::env::var_os("NETTERMS_REQUIRE_TOOLS").is_some() => panic!("pdftotext is required"),
            Err(_) => return None,
        };
        let html = String::from_utf8_lossy(&out.stdout).into_owned();
        let attr = |w: &str, name: &str| -> f32 {
            let at = w.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            w[at..].split('"').next().unwrap().parse().unwrap()
        };
        Some(
            html.split("<word ")
                .skip(1)
                .map(|w| {
                    let text = w.split('>').nth(1).unwrap().split('<').next().unwrap().to_owned();
                    (text, attr(w, "xMin"), attr(w, "yMin"), attr(w, "xMax"), attr(w, "yMax"))
                })
                .collect(),
        )
    }

    /// Issue 19, item 14: 120-character names of buyer and merchant stay within the page, clear
    /// of the logo and of the dates, in both languages.
    #[test]
    fn long_names_wrap_within_their_columns() {
        let long = |stem: &str| {
            format!("{stem} {}", "Sehr Lange Firmenbezeichnung Und Noch Mehr ".repeat(3))[..120].to_owned()
        };
        for (lang, date) in [("de", "Datum:"), ("en", "Date:")] {
            let mut inv = invoice();
            inv.locale = lang.into();
            inv.company = long("Kunde");
            inv.addressee = "X".repeat(120);
            inv.merchant = long("Händler");
            let imprint = crate::service::imprint::lines(&crate::config::Config::default(), Locale::parse(lang));
            let pdf = render_with(&Spec::PaymentInformation { invoice: inv }, &imprint).unwrap();
            let Some(words) = boxes(&pdf.bytes) else { return };
            let find = |w: &str| words.iter().find(|b| b.0 == w).cloned().unwrap_or_else(|| panic!("{w} in {words:?}"));
            let logo = find("netterms");
            let dated = find(date);
            for (text, x0, y0, x1, y1) in &words {
                assert!(
                    *x1 <= A4_WIDTH - MARGIN + 0.5 && *x0 >= MARGIN - 0.5,
                    "{text:?} leaves the margins: {x0}–{x1}"
                );
                let overlaps = |b: &WordBox| x0 < &b.3 && x1 > &b.1 && y0 < &b.4 && y1 > &b.2;
                if text != "netterms" {
                    assert!(!overlaps(&logo), "{text:?} overprints the logo");
                }
                if text != &dated.0 && !dated.0.ends_with(text.as_str()) {
                    assert!(!overlaps(&dated), "{text:?} runs over {date}");
                }
            }
            assert!(words.iter().any(|w| w.0.starts_with("XXXX")), "the long addressee is printed");
            assert!(words.iter().any(|w| w.0 == "HRB"), "the imprint is at the foot");
            if let Some(dir) = std::env::var_os("NETTERMS_SHOTS") {
                std::fs::write(std::path::Path::new(&dir).join(format!("long-names-{lang}.pdf")), &pdf.bytes).unwrap();
            }
        }
    }

    #[test]
    fn the_spec_round_trips_as_json() {
        let spec = Spec::PaymentInformation { invoice: invoice() };
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.starts_with(r#"{"document":"payment_information""#));
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);
    }
}
