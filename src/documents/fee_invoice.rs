//! The fee invoice as Factur-X / ZUGFeRD (profile EN 16931): a PDF/A-3b page that shows the
//! invoice, with its CII XML embedded as `factur-x.xml` (relationship `Alternative`) and the
//! Factur-X XMP properties (with their PDF/A extension schema) that validators look for.
//!
//! krilla writes PDF/A-3b with the embedded file but has no hook for custom XMP, so the packet
//! it writes (uncompressed, as PDF/A wants) is extended afterwards: the stream, its `/Length` and
//! every cross-reference offset behind it are rewritten.

use krilla::Document;
use krilla::configure::{ConfigurationBuilder, Validator};
use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::{SerializeSettings, configure::validate::Archival};

use super::RenderError;
use super::layout::{A4_HEIGHT, A4_WIDTH, Canvas, Fonts, MARGIN, Weight};
use crate::domain::einvoice::{self, FeeInvoice, Guideline, VatCategory};
use crate::domain::locale::Locale;
use crate::domain::text::counted;

const RIGHT: f32 = A4_WIDTH - MARGIN;

/// The Factur-X properties.
const FX_XMP: &str = concat!(
    "<rdf:Description rdf:about=\"\" xmlns:fx=\"urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#\">",
    "<fx:DocumentType>INVOICE</fx:DocumentType>",
    "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>",
    "<fx:Version>1.0</fx:Version>",
    "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>",
    "</rdf:Description>",
);

/// The PDF/A extension schema that declares them: one more entry of the packet's one
/// `pdfaExtension:schemas` bag (a second bag is a duplicate property, which XMP parsers refuse).
const FX_SCHEMA: &str = concat!(
    "<rdf:li rdf:parseType=\"Resource\">",
    "<pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>",
    "<pdfaSchema:namespaceURI>urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#</pdfaSchema:namespaceURI>",
    "<pdfaSchema:prefix>fx</pdfaSchema:prefix>",
    "<pdfaSchema:property><rdf:Seq>",
    "<rdf:li rdf:parseType=\"Resource\"><pdfaProperty:name>DocumentFileName</pdfaProperty:name>",
    "<pdfaProperty:valueType>Text</pdfaProperty:valueType><pdfaProperty:category>external</pdfaProperty:category>",
    "<pdfaProperty:description>name of the embedded XML invoice file</pdfaProperty:description></rdf:li>",
    "<rdf:li rdf:parseType=\"Resource\"><pdfaProperty:name>DocumentType</pdfaProperty:name>",
    "<pdfaProperty:valueType>Text</pdfaProperty:valueType><pdfaProperty:category>external</pdfaProperty:category>",
    "<pdfaProperty:description>INVOICE</pdfaProperty:description></rdf:li>",
    "<rdf:li rdf:parseType=\"Resource\"><pdfaProperty:name>Version</pdfaProperty:name>",
    "<pdfaProperty:valueType>Text</pdfaProperty:valueType><pdfaProperty:category>external</pdfaProperty:category>",
    "<pdfaProperty:description>The actual version of the Factur-X XML schema</pdfaProperty:description></rdf:li>",
    "<rdf:li rdf:parseType=\"Resource\"><pdfaProperty:name>ConformanceLevel</pdfaProperty:name>",
    "<pdfaProperty:valueType>Text</pdfaProperty:valueType><pdfaProperty:category>external</pdfaProperty:category>",
    "<pdfaProperty:description>The conformance level of the embedded Factur-X data</pdfaProperty:description></rdf:li>",
    "</rdf:Seq></pdfaSchema:property></rdf:li>",
);

fn pdf_date(d: chrono::NaiveDate) -> DateTime {
    use chrono::Datelike;
    DateTime::new(d.year() as u16).month(d.month() as u8).day(d.day() as u8).hour(0).minute(0).second(0)
}

/// The invoice as a Factur-X PDF.
pub fn render(inv: &FeeInvoice) -> Result<Vec<u8>, RenderError> {
    let fonts = Fonts::load().ok_or(RenderError::Fonts)?;
    let configuration = ConfigurationBuilder::new()
        .set_validator(Validator::A(Archival::A3_B))
        .finish()
        .map_err(|e| RenderError::Pdf(format!("{e:?}")))?;
    let mut doc = Document::new_with(SerializeSettings { configuration, ..SerializeSettings::default() });
    let date = pdf_date(inv.issue_date);
    doc.set_metadata(
        Metadata::new()
            .title(format!("Rechnung {}", inv.number))
            .creator("netterms".into())
            .authors(vec![inv.seller.name.clone()])
            .language("de".into())
            .creation_date(date),
    );
    let xml = einvoice::cii(inv, Guideline::FacturX);
    doc.embed_file(EmbeddedFile {
        path: "factur-x.xml".into(),
        mime_type: MimeType::new("text/xml"),
        description: Some("Factur-X invoice (EN 16931)".into()),
        association_kind: AssociationKind::Alternative,
        data: xml.into_bytes().into(),
        modification_date: Some(date),
        compress: Some(true),
        location: None,
    })
    .ok_or_else(|| RenderError::Pdf("factur-x.xml embedded twice".into()))?;
    {
        let mut page = doc.start_page_with(
            PageSettings::from_wh(A4_WIDTH, A4_HEIGHT).ok_or_else(|| RenderError::Pdf("page size".into()))?,
        );
        let mut surface = page.surface();
        let mut c = Canvas::new(&mut surface, &fonts);
        draw(&mut c, inv);
        surface.finish();
        page.finish();
    }
    let bytes = doc.finish().map_err(|e| RenderError::Pdf(format!("{e:?}")))?;
    with_xmp(bytes, FX_XMP, FX_SCHEMA)
}

fn draw(c: &mut Canvas<'_, '_>, inv: &FeeInvoice) {
    let l = Locale::De;
    let cur = inv.currency.as_str();
    let s = &inv.seller;
    c.text(MARGIN, 64.0, "netterms", Weight::Bold, 18.0);
    let sender = format!(
        "{} · {} · {} {} · USt-IdNr. {}",
        s.name,
        s.street.as_deref().unwrap_or(""),
        s.postal_code.as_deref().unwrap_or(""),
        s.city.as_deref().unwrap_or(""),
        s.vat_id.as_deref().unwrap_or("")
    );
    c.text_right(RIGHT, 64.0, &sender, Weight::Regular, 8.0);
    c.rule(MARGIN, RIGHT, 76.0);
    let b = &inv.buyer;
    let mut y = 112.0;
    let city = format!("{} {}", b.postal_code.as_deref().unwrap_or(""), b.city.as_deref().unwrap_or(""));
    for line in
        [Some(b.name.as_str()), b.street.as_deref(), Some(city.trim()), Some(b.country.as_str())].into_iter().flatten()
    {
        if !line.is_empty() {
            c.text(MARGIN, y, line, Weight::Regular, 10.0);
            y += 13.0;
        }
    }
    if let Some(vat) = b.vat_id.as_ref().filter(|_| inv.category != VatCategory::OutsideScope) {
        c.text(MARGIN, y, &format!("USt-IdNr. {vat}"), Weight::Regular, 10.0);
    }
    c.text_right(RIGHT, 112.0, &format!("Rechnungsnummer: {}", inv.number), Weight::Regular, 10.0);
    c.text_right(RIGHT, 125.0, &format!("Rechnungsdatum: {}", l.date(inv.issue_date)), Weight::Regular, 10.0);
    let last = inv.period_end.pred_opt().unwrap_or(inv.period_end).max(inv.period_start);
    c.text_right(
        RIGHT,
        138.0,
        &format!("Leistungszeitraum: {} – {}", l.date(inv.period_start), l.date(last)),
        Weight::Regular,
        10.0,
    );

    let mut y = 210.0;
    c.text(MARGIN, y, "Rechnung / Invoice", Weight::Bold, 16.0);
    y += 24.0;
    let intro = format!(
        "Für den Rechnungskauf über netterms berechnen wir unsere Gebühren für {} Ihrer Händler. \
         Fees for pay-on-invoice through netterms, {} of your merchants.",
        counted(inv.captures, "Rechnung", "Rechnungen"),
        counted(inv.captures, "invoice", "invoices")
    );
    y = c.paragraph(MARGIN, y, RIGHT - MARGIN, &intro, Weight::Regular, 10.0) + 14.0;
    c.text(MARGIN, y, "Position", Weight::Bold, 9.0);
    c.text_right(RIGHT, y, "Netto", Weight::Bold, 9.0);
    c.rule(MARGIN, RIGHT, y + 5.0);
    y += 18.0;
    c.text(
        MARGIN,
        y,
        &format!("netterms-Gebühren, {}", counted(inv.captures, "Rechnung", "Rechnungen")),
        Weight::Regular,
        10.0,
    );
    c.text_right(RIGHT, y, &l.money(inv.net, cur), Weight::Regular, 10.0);
    y += 10.0;
    c.rule(MARGIN, RIGHT, y);
    y += 16.0;
    let vat_label = match inv.category {
        VatCategory::Standard => format!("Umsatzsteuer {} %", einvoice::rate(inv.vat_rate_bps)),
        VatCategory::ReverseCharge => "Umsatzsteuer 0 % (Reverse charge)".to_owned(),
        VatCategory::OutsideScope => "Umsatzsteuer: nicht steuerbar".to_owned(),
    };
    for (label, amount, weight) in [
        ("Summe netto".to_owned(), inv.net, Weight::Regular),
        (vat_label, inv.vat, Weight::Regular),
        ("Rechnungsbetrag / Total".to_owned(), inv.gross, Weight::Bold),
        ("Bereits mit der Auszahlung einbehalten".to_owned(), -inv.gross, Weight::Regular),
        ("Zu zahlen / Amount due".to_owned(), 0, Weight::Bold),
    ] {
        c.text(MARGIN, y, &label, weight, 10.0);
        c.text_right(RIGHT, y, &l.money(amount, cur), weight, 10.0);
        y += 15.0;
    }
    y += 12.0;
    if let Some((_, reason)) = inv.category.exemption() {
        y = c.paragraph(MARGIN, y, RIGHT - MARGIN, reason, Weight::Regular, 9.0) + 6.0;
    }
    let note = format!(
        "Die Gebühren wurden mit der Auszahlung {} verrechnet; bitte nichts überweisen. Die Aufstellung je \
         Rechnung steht im Auszahlungsbericht (report.csv). Diese Rechnung enthält ihre Daten als EN-16931-\
         E-Rechnung (Factur-X / ZUGFeRD, factur-x.xml).",
        inv.payout_id
    );
    c.paragraph(MARGIN, y, RIGHT - MARGIN, &note, Weight::Regular, 9.0);
    // The issuer's legal details at the foot of the page (§ 35a GmbHG).
    c.rule(MARGIN, RIGHT, A4_HEIGHT - 62.0);
    let foot = format!("{} · {}", s.name, s.legal_info.as_deref().unwrap_or(""));
    c.paragraph(MARGIN, A4_HEIGHT - 50.0, RIGHT - MARGIN, &foot, Weight::Regular, 7.5);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn digits_at(b: &[u8], at: usize) -> (usize, usize) {
    let len = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    let v = std::str::from_utf8(&b[at..at + len]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    (v, len)
}

/// `pdf` with `description` (rdf:Description elements) added to its XMP packet and `schema` (an
/// `rdf:li` of a PDF/A extension schema) added to the packet's `pdfaExtension:schemas` bag (or in
/// a bag of its own if the packet has none): the metadata stream, its length and the offsets of
/// the cross-reference table rewritten to match.
pub fn with_xmp(pdf: Vec<u8>, description: &str, schema: &str) -> Result<Vec<u8>, RenderError> {
    let bad = |w: &str| RenderError::Pdf(format!("XMP: {w}"));
    let packet_end = find(&pdf, b"<?xpacket end=").ok_or_else(|| bad("no packet"))?;
    let rdf_end = rfind(&pdf[..packet_end], b"</rdf:RDF>").ok_or_else(|| bad("no rdf:RDF"))?;
    let stream_kw = rfind(&pdf[..rdf_end], b"stream\n").ok_or_else(|| bad("no stream"))?;
    let length_kw = rfind(&pdf[..stream_kw], b"/Length ").ok_or_else(|| bad("no /Length"))? + b"/Length ".len();
    // Where the schema goes: into the packet's bag of extension schemas, before it closes.
    let bag_end = rfind(&pdf[stream_kw..rdf_end], b"</pdfaExtension:schemas>")
        .and_then(|e| rfind(&pdf[stream_kw..stream_kw + e], b"</rdf:Bag>"))
        .map(|b| stream_kw + b);
    let own_bag;
    let inserts: Vec<(usize, &str)> = match bag_end {
        Some(at) => vec![(at, schema), (rdf_end, description)],
        None => {
            own_bag = format!(
                "{description}<rdf:Description rdf:about=\"\" xmlns:pdfaExtension=\"http://www.aiim.org/pdfa/ns/extension/\" \
                 xmlns:pdfaSchema=\"http://www.aiim.org/pdfa/ns/schema#\" xmlns:pdfaProperty=\"http://www.aiim.org/pdfa/ns/property#\">\
                 <pdfaExtension:schemas><rdf:Bag>{schema}</rdf:Bag></pdfaExtension:schemas></rdf:Description>"
            );
            vec![(rdf_end, own_bag.as_str())]
        }
    };
    let added: usize = inserts.iter().map(|(_, t)| t.len()).sum();
    let (old_len, old_digits) = digits_at(&pdf, length_kw);
    let new_len = old_len + added;
    let new_digits = new_len.to_string();
    let d1 = new_digits.len() as i64 - old_digits as i64;
    let d2 = d1 + added as i64;
    let insert = stream_kw;
    let xref_at = rfind(&pdf, b"startxref").ok_or_else(|| bad("no startxref"))?;
    let (xref_offset, _) = digits_at(&pdf, xref_at + b"startxref\n".len());
    if pdf.get(xref_offset..xref_offset + 4) != Some(b"xref".as_slice()) || xref_offset < insert {
        return Err(bad("no classic cross-reference table after the metadata"));
    }
    let shift = |o: usize| -> usize {
        let o = o as i64;
        let n = if o > insert as i64 {
            o + d2
        } else if o > length_kw as i64 {
            o + d1
        } else {
            o
        };
        n as usize
    };
    let mut out = Vec::with_capacity(pdf.len() + added + 8);
    out.extend_from_slice(&pdf[..length_kw]);
    out.extend_from_slice(new_digits.as_bytes());
    let mut from = length_kw + old_digits;
    for (at, text) in &inserts {
        out.extend_from_slice(&pdf[from..*at]);
        out.extend_from_slice(text.as_bytes());
        from = *at;
    }
    out.extend_from_slice(&pdf[from..xref_offset]);
    // The table: `xref`, then sections `first count` each followed by 20-byte entries.
    let table = &pdf[xref_offset..xref_at];
    let mut i = table.iter().position(|&c| c == b'\n').ok_or_else(|| bad("xref"))? + 1;
    out.extend_from_slice(&table[..i]);
    while i < table.len() && table[i].is_ascii_digit() {
        let eol = i + table[i..].iter().position(|&c| c == b'\n').ok_or_else(|| bad("xref section"))? + 1;
        let header = std::str::from_utf8(&table[i..eol]).map_err(|_| bad("xref section"))?;
        let count: usize =
            header.split_whitespace().nth(1).and_then(|n| n.parse().ok()).ok_or_else(|| bad("xref count"))?;
        out.extend_from_slice(&table[i..eol]);
        i = eol;
        for _ in 0..count {
            let entry = table.get(i..i + 20).ok_or_else(|| bad("xref entry"))?;
            let (offset, _) = digits_at(entry, 0);
            if entry[17] == b'n' {
                out.extend_from_slice(format!("{:010}", shift(offset)).as_bytes());
                out.extend_from_slice(&entry[10..]);
            } else {
                out.extend_from_slice(entry);
            }
            i += 20;
        }
    }
    out.extend_from_slice(&table[i..]);
    out.extend_from_slice(b"startxref\n");
    out.extend_from_slice(shift(xref_offset).to_string().as_bytes());
    out.extend_from_slice(b"\n%%EOF");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::einvoice::Party;

    pub fn sample(category: VatCategory) -> FeeInvoice {
        let party = |name: &str, country: &str| Party {
            name: name.into(),
            street: Some("Musterstraße 1".into()),
            postal_code: Some("10115".into()),
            city: Some("Berlin".into()),
            country: country.into(),
            vat_id: Some(format!("{country}123456789")),
            email: Some("rechnung@netterms.example".into()),
            phone: Some("+49 30 1234567".into()),
            registration: Some("HRB 000000 B".into()),
            legal_info: Some("Registergericht: Amtsgericht Berlin-Charlottenburg, HRB 000000 B".into()),
        };
        FeeInvoice {
            number: "NT-2026-000001".into(),
            issue_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            payout_id: uuid::Uuid::nil(),
            period_start: chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            period_end: chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            currency: "EUR".into(),
            captures: 2,
            net: 1000,
            vat: if category == VatCategory::Standard { 190 } else { 0 },
            gross: if category == VatCategory::Standard { 1190 } else { 1000 },
            vat_rate_bps: 1900,
            category,
            seller: party("netterms GmbH", "DE"),
            buyer: Party {
                registration: None,
                legal_info: None,
                ..party(
                    "Example Payments GmbH",
                    match category {
                        VatCategory::Standard => "DE",
                        VatCategory::ReverseCharge => "AT",
                        VatCategory::OutsideScope => "CH",
                    },
                )
            },
            buyer_reference: "psp".into(),
        }
    }

    #[test]
    fn the_pdf_holds_the_xml_and_the_factur_x_metadata_with_consistent_offsets() {
        let pdf = render(&sample(VatCategory::Standard)).unwrap();
        let has = |n: &str| find(&pdf, n.as_bytes()).is_some();
        assert!(has("<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>"));
        assert!(has("pdfaid:part"), "PDF/A identification");
        assert!(has("/AFRelationship/Alternative"));
        // Every in-use entry of the table points at its object.
        let xref = rfind(&pdf, b"\nxref\n").unwrap() + 1;
        let sx = rfind(&pdf, b"startxref\n").unwrap() + 10;
        assert_eq!(digits_at(&pdf, sx).0, xref);
        let table = std::str::from_utf8(&pdf[xref..sx]).unwrap();
        let mut lines = table.lines().skip(1);
        let count: usize = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let mut checked = 0;
        for (id, line) in lines.take(count).enumerate() {
            if line.trim_end().ends_with('n') {
                let off: usize = line[..10].parse().unwrap();
                assert!(pdf[off..].starts_with(format!("{id} 0 obj").as_bytes()), "object {id} at {off}");
                checked += 1;
            }
        }
        assert!(checked > 5);
        // The metadata stream's /Length is its content.
        let meta = find(&pdf, b"<?xpacket begin").unwrap();
        let end = find(&pdf, b"<?xpacket end=").unwrap() + "<?xpacket end=\"r\"?>".len();
        let len_at = rfind(&pdf[..meta], b"/Length ").unwrap() + 8;
        assert_eq!(digits_at(&pdf, len_at).0, end - meta);
    }
}
