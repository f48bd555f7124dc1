//! netterms' fee invoice to a PSP as an EN 16931 e-invoice in UN/CEFACT CII syntax (SPEC §10):
//! the same content as Factur-X / ZUGFeRD profile EN 16931 (embedded in the PDF as
//! `factur-x.xml`) and as XRechnung 3.0 CII (the `.xml`). Pure: the record in, the XML out.
//!
//! The fees were withheld from the payout, so the invoice is settled when issued: payment means
//! 97 (clearing between partners), prepaid = grand total, nothing due. Fees are quoted including
//! VAT where VAT applies; the taxable amount is what, with its VAT rounded to the cent, makes up
//! the fees.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The member states of the EU (ISO 3166-1 alpha-2; Greece as `GR`).
const EU: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV",
    "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// Two upper-case letters.
pub fn is_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// A party of the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub name: String,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: String,
    pub vat_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The legal registration identifier (BT-30), e.g. the commercial register number.
    #[serde(default)]
    pub registration: Option<String>,
    /// Additional legal information (BT-33): register court, managing directors.
    #[serde(default)]
    pub legal_info: Option<String>,
}

/// The VAT treatment of the fees (UNTDID 5305 category).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VatCategory {
    /// `S`: standard rate, netterms charges VAT.
    Standard,
    /// `AE`: reverse charge, the PSP (elsewhere in the EU, with a VAT id) accounts for it.
    ReverseCharge,
    /// `O`: not subject to VAT here (PSP outside the EU).
    OutsideScope,
}

impl VatCategory {
    pub fn code(self) -> &'static str {
        match self {
            Self::Standard => "S",
            Self::ReverseCharge => "AE",
            Self::OutsideScope => "O",
        }
    }

    /// The exemption reason the invoice must state (BT-120), if any.
    pub fn exemption(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Standard => None,
            Self::ReverseCharge => Some((
                "VATEX-EU-AE",
                "Steuerschuldnerschaft des Leistungsempfängers (Reverse charge, Art. 196 MwStSystRL)",
            )),
            Self::OutsideScope => Some(("VATEX-EU-O", "Nicht im Inland steuerbare Leistung (not subject to VAT)")),
        }
    }
}

/// How the fees to a PSP in `buyer_country` (with `buyer_vat_id`) are taxed by a seller in
/// `seller_country`.
pub fn vat_category(seller_country: &str, buyer_country: &str, buyer_vat_id: Option<&str>) -> VatCategory {
    if buyer_country == seller_country {
        VatCategory::Standard
    } else if EU.contains(&buyer_country) {
        if buyer_vat_id.is_some_and(|v| !v.trim().is_empty()) && EU.contains(&seller_country) {
            VatCategory::ReverseCharge
        } else {
            VatCategory::Standard
        }
    } else {
        VatCategory::OutsideScope
    }
}

/// `amount × bps / 10000`, rounded half up (amounts are not negative).
fn percent_of(amount: i64, bps: i64) -> i64 {
    (i128::from(amount) * i128::from(bps) * 2 + 10_000).div_euclid(20_000) as i64
}

/// Splits fees `gross` (VAT included at `rate_bps`) into (taxable amount, VAT): the taxable
/// amount whose VAT, rounded to the cent as EN 16931 computes it, adds up to `gross`; where no
/// amount does (rounding skips a cent), the one nearest below, and the VAT makes up the rest.
pub fn split_vat(gross: i64, rate_bps: i64) -> (i64, i64) {
    if rate_bps == 0 || gross <= 0 {
        return (gross, 0);
    }
    let guess = (i128::from(gross) * 10_000 / i128::from(10_000 + rate_bps)) as i64;
    for net in [guess, guess + 1, guess - 1, guess + 2, guess - 2] {
        if net >= 0 && net + percent_of(net, rate_bps) == gross {
            return (net, gross - net);
        }
    }
    (guess, gross - guess)
}

/// Which CII flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guideline {
    /// Factur-X / ZUGFeRD, profile EN 16931 (COMFORT).
    FacturX,
    /// XRechnung 3.0 (a CIUS of EN 16931).
    XRechnung,
}

impl Guideline {
    fn id(self) -> &'static str {
        match self {
            Self::FacturX => "urn:cen.eu:en16931:2017",
            Self::XRechnung => "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0",
        }
    }
}

/// A fee invoice as issued (stored, so it renders the same every time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeInvoice {
    pub number: String,
    pub issue_date: NaiveDate,
    /// The payout it belongs to (the fees were withheld from it).
    pub payout_id: uuid::Uuid,
    /// Captures booked from (inclusive) … to (exclusive), the payout's period.
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub currency: String,
    /// Captures whose fees it bills.
    pub captures: i64,
    /// Taxable amount, VAT, and their sum (the fees withheld), minor units.
    pub net: i64,
    pub vat: i64,
    pub gross: i64,
    pub vat_rate_bps: i64,
    pub category: VatCategory,
    pub seller: Party,
    pub buyer: Party,
    /// The PSP's id, as the buyer reference (BT-10).
    pub buyer_reference: String,
}

/// Minor units as a decimal with two places.
pub fn decimal(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

/// A rate in basis points as a percentage (`1900` → `19`, `750` → `7.5`).
pub fn rate(bps: i64) -> String {
    let whole = bps / 100;
    let frac = bps % 100;
    if frac == 0 {
        whole.to_string()
    } else if frac % 10 == 0 {
        format!("{whole}.{}", frac / 10)
    } else {
        format!("{whole}.{frac:02}")
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn date(d: NaiveDate) -> String {
    format!("<udt:DateTimeString format=\"102\">{}</udt:DateTimeString>", d.format("%Y%m%d"))
}

/// A trade party. `vat_id`: whether its VAT identifier is named (not on an invoice outside the
/// scope of VAT, BR-O-02).
fn party(out: &mut String, p: &Party, seller: bool, vat_id: bool) {
    out.push_str(&format!("<ram:Name>{}</ram:Name>", esc(&p.name)));
    if let Some(info) = &p.legal_info {
        out.push_str(&format!("<ram:Description>{}</ram:Description>", esc(info)));
    }
    if let Some(id) = &p.registration {
        out.push_str(&format!(
            "<ram:SpecifiedLegalOrganization><ram:ID>{}</ram:ID></ram:SpecifiedLegalOrganization>",
            esc(id)
        ));
    }
    if seller {
        out.push_str("<ram:DefinedTradeContact>");
        out.push_str(&format!("<ram:PersonName>{}</ram:PersonName>", esc(&p.name)));
        if let Some(phone) = &p.phone {
            out.push_str(&format!(
                "<ram:TelephoneUniversalCommunication><ram:CompleteNumber>{}</ram:CompleteNumber></ram:TelephoneUniversalCommunication>",
                esc(phone)
            ));
        }
        if let Some(email) = &p.email {
            out.push_str(&format!(
                "<ram:EmailURIUniversalCommunication><ram:URIID>{}</ram:URIID></ram:EmailURIUniversalCommunication>",
                esc(email)
            ));
        }
        out.push_str("</ram:DefinedTradeContact>");
    }
    out.push_str("<ram:PostalTradeAddress>");
    if let Some(pc) = &p.postal_code {
        out.push_str(&format!("<ram:PostcodeCode>{}</ram:PostcodeCode>", esc(pc)));
    }
    if let Some(street) = &p.street {
        out.push_str(&format!("<ram:LineOne>{}</ram:LineOne>", esc(street)));
    }
    if let Some(city) = &p.city {
        out.push_str(&format!("<ram:CityName>{}</ram:CityName>", esc(city)));
    }
    out.push_str(&format!("<ram:CountryID>{}</ram:CountryID></ram:PostalTradeAddress>", esc(&p.country)));
    if let Some(email) = &p.email {
        out.push_str(&format!(
            "<ram:URIUniversalCommunication><ram:URIID schemeID=\"EM\">{}</ram:URIID></ram:URIUniversalCommunication>",
            esc(email)
        ));
    }
    if let Some(vat) = p.vat_id.as_ref().filter(|_| vat_id) {
        out.push_str(&format!(
            "<ram:SpecifiedTaxRegistration><ram:ID schemeID=\"VA\">{}</ram:ID></ram:SpecifiedTaxRegistration>",
            esc(vat)
        ));
    }
}

/// The invoice as CII XML (UTF-8).
pub fn cii(inv: &FeeInvoice, g: Guideline) -> String {
    let cur = esc(&inv.currency);
    let category = inv.category.code();
    // The line: no rate for `O` (BR-O-05), 0 for reverse charge, the configured one otherwise.
    // The breakdown always names one (XRechnung BR-DE-14): 0 for `O` too.
    let zero = "<ram:RateApplicablePercent>0</ram:RateApplicablePercent>".to_owned();
    let rate_el = match inv.category {
        VatCategory::OutsideScope => String::new(),
        VatCategory::ReverseCharge => zero.clone(),
        VatCategory::Standard => {
            format!("<ram:RateApplicablePercent>{}</ram:RateApplicablePercent>", rate(inv.vat_rate_bps))
        }
    };
    let breakdown_rate = if inv.category == VatCategory::OutsideScope { zero } else { rate_el.clone() };
    // Outside the scope of VAT neither party's VAT identifier is named (BR-O-02).
    let vat_ids = inv.category != VatCategory::OutsideScope;
    let mut x = String::with_capacity(6000);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(
        "<rsm:CrossIndustryInvoice xmlns:rsm=\"urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100\" \
         xmlns:ram=\"urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100\" \
         xmlns:qdt=\"urn:un:unece:uncefact:data:standard:QualifiedDataType:100\" \
         xmlns:udt=\"urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100\">",
    );
    x.push_str("<rsm:ExchangedDocumentContext>");
    x.push_str("<ram:BusinessProcessSpecifiedDocumentContextParameter><ram:ID>urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</ram:ID></ram:BusinessProcessSpecifiedDocumentContextParameter>");
    x.push_str(&format!(
        "<ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>{}</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>",
        g.id()
    ));
    x.push_str("</rsm:ExchangedDocumentContext>");
    x.push_str("<rsm:ExchangedDocument>");
    x.push_str(&format!("<ram:ID>{}</ram:ID><ram:TypeCode>380</ram:TypeCode>", esc(&inv.number)));
    x.push_str(&format!("<ram:IssueDateTime>{}</ram:IssueDateTime>", date(inv.issue_date)));
    x.push_str(&format!(
        "<ram:IncludedNote><ram:Content>Gebühren für {}, mit der Auszahlung {} verrechnet.</ram:Content></ram:IncludedNote>",
        super::text::counted(inv.captures, "Rechnung", "Rechnungen"),
        inv.payout_id
    ));
    if let Some((_, reason)) = inv.category.exemption() {
        x.push_str(&format!("<ram:IncludedNote><ram:Content>{}</ram:Content></ram:IncludedNote>", esc(reason)));
    }
    x.push_str("</rsm:ExchangedDocument>");
    x.push_str("<rsm:SupplyChainTradeTransaction>");
    // One line: the fees of the period.
    x.push_str("<ram:IncludedSupplyChainTradeLineItem>");
    x.push_str("<ram:AssociatedDocumentLineDocument><ram:LineID>1</ram:LineID></ram:AssociatedDocumentLineDocument>");
    x.push_str(&format!(
        "<ram:SpecifiedTradeProduct><ram:Name>netterms-Gebühren (Rechnungskauf), {}</ram:Name></ram:SpecifiedTradeProduct>",
        super::text::counted(inv.captures, "Rechnung", "Rechnungen")
    ));
    x.push_str(&format!(
        "<ram:SpecifiedLineTradeAgreement><ram:NetPriceProductTradePrice><ram:ChargeAmount>{}</ram:ChargeAmount></ram:NetPriceProductTradePrice></ram:SpecifiedLineTradeAgreement>",
        decimal(inv.net)
    ));
    x.push_str("<ram:SpecifiedLineTradeDelivery><ram:BilledQuantity unitCode=\"C62\">1</ram:BilledQuantity></ram:SpecifiedLineTradeDelivery>");
    x.push_str("<ram:SpecifiedLineTradeSettlement>");
    x.push_str(&format!(
        "<ram:ApplicableTradeTax><ram:TypeCode>VAT</ram:TypeCode><ram:CategoryCode>{category}</ram:CategoryCode>\
         {rate_el}</ram:ApplicableTradeTax>"
    ));
    // The period of the service (BT-134/135): the days the billed captures were booked.
    let last_day = inv.period_end.pred_opt().unwrap_or(inv.period_end).max(inv.period_start);
    x.push_str(&format!(
        "<ram:BillingSpecifiedPeriod><ram:StartDateTime>{}</ram:StartDateTime><ram:EndDateTime>{}</ram:EndDateTime></ram:BillingSpecifiedPeriod>",
        date(inv.period_start),
        date(last_day)
    ));
    x.push_str(&format!(
        "<ram:SpecifiedTradeSettlementLineMonetarySummation><ram:LineTotalAmount>{}</ram:LineTotalAmount></ram:SpecifiedTradeSettlementLineMonetarySummation>",
        decimal(inv.net)
    ));
    x.push_str("</ram:SpecifiedLineTradeSettlement></ram:IncludedSupplyChainTradeLineItem>");
    x.push_str("<ram:ApplicableHeaderTradeAgreement>");
    x.push_str(&format!("<ram:BuyerReference>{}</ram:BuyerReference>", esc(&inv.buyer_reference)));
    x.push_str("<ram:SellerTradeParty>");
    party(&mut x, &inv.seller, true, vat_ids);
    x.push_str("</ram:SellerTradeParty><ram:BuyerTradeParty>");
    party(&mut x, &inv.buyer, false, vat_ids);
    x.push_str("</ram:BuyerTradeParty></ram:ApplicableHeaderTradeAgreement>");
    // The service was rendered over the line's period; BG-13 needs no more.
    x.push_str("<ram:ApplicableHeaderTradeDelivery/>");
    x.push_str("<ram:ApplicableHeaderTradeSettlement>");
    x.push_str(&format!("<ram:InvoiceCurrencyCode>{cur}</ram:InvoiceCurrencyCode>"));
    x.push_str("<ram:SpecifiedTradeSettlementPaymentMeans><ram:TypeCode>97</ram:TypeCode>\
                <ram:Information>Verrechnung mit der Auszahlung</ram:Information></ram:SpecifiedTradeSettlementPaymentMeans>");
    x.push_str(&format!(
        "<ram:ApplicableTradeTax><ram:CalculatedAmount>{}</ram:CalculatedAmount><ram:TypeCode>VAT</ram:TypeCode>",
        decimal(inv.vat)
    ));
    if let Some((_, reason)) = inv.category.exemption() {
        x.push_str(&format!("<ram:ExemptionReason>{}</ram:ExemptionReason>", esc(reason)));
    }
    x.push_str(&format!(
        "<ram:BasisAmount>{}</ram:BasisAmount><ram:CategoryCode>{category}</ram:CategoryCode>",
        decimal(inv.net)
    ));
    if let Some((code, _)) = inv.category.exemption() {
        x.push_str(&format!("<ram:ExemptionReasonCode>{code}</ram:ExemptionReasonCode>"));
    }
    x.push_str(&format!("{breakdown_rate}</ram:ApplicableTradeTax>"));
    x.push_str(&format!(
        "<ram:SpecifiedTradePaymentTerms><ram:Description>Bereits beglichen: mit der Auszahlung {} einbehalten. Nichts zu zahlen.</ram:Description></ram:SpecifiedTradePaymentTerms>",
        inv.payout_id
    ));
    x.push_str("<ram:SpecifiedTradeSettlementHeaderMonetarySummation>");
    x.push_str(&format!("<ram:LineTotalAmount>{}</ram:LineTotalAmount>", decimal(inv.net)));
    x.push_str(&format!("<ram:TaxBasisTotalAmount>{}</ram:TaxBasisTotalAmount>", decimal(inv.net)));
    x.push_str(&format!("<ram:TaxTotalAmount currencyID=\"{cur}\">{}</ram:TaxTotalAmount>", decimal(inv.vat)));
    x.push_str(&format!("<ram:GrandTotalAmount>{}</ram:GrandTotalAmount>", decimal(inv.gross)));
    x.push_str(&format!("<ram:TotalPrepaidAmount>{}</ram:TotalPrepaidAmount>", decimal(inv.gross)));
    x.push_str("<ram:DuePayableAmount>0.00</ram:DuePayableAmount>");
    x.push_str("</ram:SpecifiedTradeSettlementHeaderMonetarySummation>");
    x.push_str("</ram:ApplicableHeaderTradeSettlement></rsm:SupplyChainTradeTransaction></rsm:CrossIndustryInvoice>\n");
    x
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn where_the_psp_is_decides_the_vat() {
        assert_eq!(vat_category("DE", "DE", None), VatCategory::Standard);
        assert_eq!(vat_category("DE", "AT", Some("ATU12345678")), VatCategory::ReverseCharge);
        assert_eq!(vat_category("DE", "AT", None), VatCategory::Standard, "no VAT id: no reverse charge");
        assert_eq!(vat_category("DE", "CH", Some("CHE-123.456.789")), VatCategory::OutsideScope);
    }

    #[test]
    fn amounts_and_rates_print_as_the_standard_wants() {
        assert_eq!(
            (decimal(0), decimal(5), decimal(11900), decimal(-250)),
            ("0.00".into(), "0.05".into(), "119.00".into(), "-2.50".into())
        );
        assert_eq!(
            (rate(1900), rate(750), rate(0), rate(1925)),
            ("19".into(), "7.5".into(), "0".into(), "19.25".into())
        );
        assert_eq!(split_vat(11900, 1900), (10000, 1900));
        assert_eq!(split_vat(100, 0), (100, 0));
    }

    proptest! {
        /// The split always adds up, and the VAT is the rate of the taxable amount to within the
        /// cent rounding can leave.
        #[test]
        fn the_vat_split_adds_up(gross in 0i64..100_000_000, bps in 0i64..3000) {
            let (net, vat) = split_vat(gross, bps);
            prop_assert_eq!(net + vat, gross);
            prop_assert!(net >= 0 && vat >= 0);
            prop_assert!((vat - percent_of(net, bps)).abs() <= 1, "{} {} {}", gross, net, vat);
        }
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("A & B <C> \"d\" 'e'\u{1}"), "A &amp; B &lt;C&gt; &quot;d&quot; &apos;e&apos; ");
    }
}
