//! The files netterms gives its bank: SEPA B2B direct-debit collections (ISO 20022
//! pain.008.001.08) and SEPA credit transfers (pain.001.001.09), written to validate against
//! the official XSDs. Texts are reduced to the SEPA character set (EPC guidance: Latin letters,
//! digits and `/ - ? : ( ) . , ' +` and space), umlauts spelled out, and cut to their maximum
//! lengths; amounts are euro with two decimals.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use quick_xml::escape::escape;

/// Easter Sunday of `year` (Gregorian; the anonymous algorithm of Meeus/Jones/Butcher).
pub fn easter(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)
}

/// Whether SEPA settles on `d`: a TARGET2 business day (not a weekend, 1 January, Good Friday,
/// Easter Monday, 1 May, 25 or 26 December).
pub fn is_business_day(d: NaiveDate) -> bool {
    if matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
        return false;
    }
    if matches!((d.month(), d.day()), (1, 1) | (5, 1) | (12, 25) | (12, 26)) {
        return false;
    }
    match easter(d.year()) {
        Some(e) => d != e - Duration::days(2) && d != e + Duration::days(1),
        None => true,
    }
}

/// `d` if it is a TARGET2 business day, else the next one (what a bank collects on).
pub fn business_day_from(d: NaiveDate) -> NaiveDate {
    let mut day = d;
    // At most five closed days follow each other (e.g. Good Friday to Easter Monday).
    for _ in 0..7 {
        if is_business_day(day) {
            return day;
        }
        day += Duration::days(1);
    }
    day
}

/// A party with an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub name: String,
    pub iban: String,
    pub bic: Option<String>,
}

/// One collection of a pain.008.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub end_to_end_id: String,
    /// Euro cents.
    pub amount: i64,
    pub mandate_id: String,
    pub signed_on: NaiveDate,
    pub debtor: Party,
    pub remittance: String,
}

/// Collections sharing a sequence type and a collection date: one `PmtInf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionGroup {
    /// `FRST`, `RCUR`, `OOFF` or `FNAL`.
    pub sequence: String,
    pub date: NaiveDate,
    pub items: Vec<Collection>,
}

/// One transfer of a pain.001.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub end_to_end_id: String,
    /// Euro cents.
    pub amount: i64,
    pub creditor: Party,
    pub remittance: String,
}

/// `text` in the SEPA character set, at most `max` characters.
pub fn sepa_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'Ä' => out.push_str("Ae"),
            'Ö' => out.push_str("Oe"),
            'Ü' => out.push_str("Ue"),
            'ß' => out.push_str("ss"),
            'é' | 'è' | 'ê' => out.push('e'),
            'á' | 'à' | 'â' => out.push('a'),
            '&' => out.push('+'),
            c if c.is_ascii_alphanumeric() || "/-?:().,'+ ".contains(c) => out.push(c),
            _ => out.push(' '),
        }
    }
    let squeezed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = squeezed.chars().take(max).collect();
    let cut = cut.trim().to_owned();
    if cut.is_empty() { "NOTPROVIDED".into() } else { cut }
}

/// Euro cents as `12.34`.
pub fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100)
}

/// A tiny writer of well-formed XML: elements nest, text is escaped.
struct Xml {
    out: String,
    open: Vec<&'static str>,
}

impl Xml {
    fn new(namespace: &str) -> Xml {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!(
            "<Document xmlns=\"{namespace}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
        ));
        Xml { out, open: vec!["Document"] }
    }
    fn start(&mut self, name: &'static str) -> &mut Xml {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.open.push(name);
        self
    }
    fn end(&mut self) -> &mut Xml {
        if let Some(n) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(n);
            self.out.push('>');
        }
        self
    }
    fn leaf(&mut self, name: &'static str, text: &str) -> &mut Xml {
        self.out.push_str(&format!("<{name}>{}</{name}>", escape(text)));
        self
    }
    fn amount(&mut self, name: &'static str, cents: i64) -> &mut Xml {
        self.out.push_str(&format!("<{name} Ccy=\"EUR\">{}</{name}>", decimal(cents)));
        self
    }
    fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out.push('\n');
        self.out
    }
}

fn agent(x: &mut Xml, name: &'static str, bic: Option<&str>) {
    x.start(name).start("FinInstnId");
    match bic {
        Some(b) => {
            x.leaf("BICFI", b);
        }
        None => {
            x.start("Othr").leaf("Id", "NOTPROVIDED").end();
        }
    }
    x.end().end();
}

fn account(x: &mut Xml, name: &'static str, iban: &str) {
    x.start(name).start("Id").leaf("IBAN", iban).end().end();
}

fn header(x: &mut Xml, message_id: &str, created: DateTime<Utc>, count: usize, sum: i64, initiator: &str) {
    x.start("GrpHdr")
        .leaf("MsgId", &sepa_text(message_id, 35))
        .leaf("CreDtTm", &created.format("%Y-%m-%dT%H:%M:%S").to_string())
        .leaf("NbOfTxs", &count.to_string())
        .leaf("CtrlSum", &decimal(sum))
        .start("InitgPty")
        .leaf("Nm", &sepa_text(initiator, 70))
        .end()
        .end();
}

/// The id of the `n`-th payment block of message `message_id`: the message id with `-n`, within
/// the 35 characters allowed. Where both do not fit, the message id gives up its leading
/// characters (netterms' ids end in their random bits), so every block keeps its number.
pub fn block_id(message_id: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let id = sepa_text(message_id, 35);
    let keep = 35usize.saturating_sub(suffix.len());
    let skip = id.chars().count().saturating_sub(keep);
    let head: String = id.chars().skip(skip).collect();
    format!("{head}{suffix}")
}

/// A pain.008.001.08 of SEPA B2B collections for `creditor` (netterms' account) under its
/// creditor identifier, one `PmtInf` per group.
pub fn pain008(
    message_id: &str,
    created: DateTime<Utc>,
    creditor: &Party,
    creditor_id: &str,
    groups: &[CollectionGroup],
) -> String {
    let all: Vec<&Collection> = groups.iter().flat_map(|g| &g.items).collect();
    let mut x = Xml::new("urn:iso:std:iso:20022:tech:xsd:pain.008.001.08");
    x.start("CstmrDrctDbtInitn");
    header(&mut x, message_id, created, all.len(), all.iter().map(|c| c.amount).sum(), &creditor.name);
    for (i, g) in groups.iter().enumerate() {
        x.start("PmtInf")
            .leaf("PmtInfId", &block_id(message_id, i + 1))
            .leaf("PmtMtd", "DD")
            .leaf("BtchBookg", "true")
            .leaf("NbOfTxs", &g.items.len().to_string())
            .leaf("CtrlSum", &decimal(g.items.iter().map(|c| c.amount).sum()))
            .start("PmtTpInf")
            .start("SvcLvl")
            .leaf("Cd", "SEPA")
            .end()
            .start("LclInstrm")
            .leaf("Cd", "B2B")
            .end()
            .leaf("SeqTp", &g.sequence)
            .end()
            .leaf("ReqdColltnDt", &g.date.to_string())
            .start("Cdtr")
            .leaf("Nm", &sepa_text(&creditor.name, 70))
            .end();
        account(&mut x, "CdtrAcct", &creditor.iban);
        agent(&mut x, "CdtrAgt", creditor.bic.as_deref());
        x.leaf("ChrgBr", "SLEV")
            .start("CdtrSchmeId")
            .start("Id")
            .start("PrvtId")
            .start("Othr")
            .leaf("Id", creditor_id)
            .start("SchmeNm")
            .leaf("Prtry", "SEPA")
            .end()
            .end()
            .end()
            .end()
            .end();
        for c in &g.items {
            x.start("DrctDbtTxInf").start("PmtId").leaf("EndToEndId", &sepa_text(&c.end_to_end_id, 35)).end();
            x.amount("InstdAmt", c.amount)
                .start("DrctDbtTx")
                .start("MndtRltdInf")
                .leaf("MndtId", &sepa_text(&c.mandate_id, 35))
                .leaf("DtOfSgntr", &c.signed_on.to_string())
                .end()
                .end();
            agent(&mut x, "DbtrAgt", c.debtor.bic.as_deref());
            x.start("Dbtr").leaf("Nm", &sepa_text(&c.debtor.name, 70)).end();
            account(&mut x, "DbtrAcct", &c.debtor.iban);
            x.start("RmtInf").leaf("Ustrd", &sepa_text(&c.remittance, 140)).end().end();
        }
        x.end();
    }
    x.finish()
}

/// A pain.001.001.09 of SEPA credit transfers from `debtor` (netterms' account), executed on `on`.
pub fn pain001(
    message_id: &str,
    created: DateTime<Utc>,
    debtor: &Party,
    on: NaiveDate,
    transfers: &[Transfer],
) -> String {
    let mut x = Xml::new("urn:iso:std:iso:20022:tech:xsd:pain.001.001.09");
    x.start("CstmrCdtTrfInitn");
    let sum = transfers.iter().map(|t| t.amount).sum();
    header(&mut x, message_id, created, transfers.len(), sum, &debtor.name);
    x.start("PmtInf")
        .leaf("PmtInfId", &block_id(message_id, 1))
        .leaf("PmtMtd", "TRF")
        .leaf("BtchBookg", "true")
        .leaf("NbOfTxs", &transfers.len().to_string())
        .leaf("CtrlSum", &decimal(sum))
        .start("PmtTpInf")
        .start("SvcLvl")
        .leaf("Cd", "SEPA")
        .end()
        .end()
        .start("ReqdExctnDt")
        .leaf("Dt", &on.to_string())
        .end()
        .start("Dbtr")
        .leaf("Nm", &sepa_text(&debtor.name, 70))
        .end();
    account(&mut x, "DbtrAcct", &debtor.iban);
    agent(&mut x, "DbtrAgt", debtor.bic.as_deref());
    x.leaf("ChrgBr", "SLEV");
    for t in transfers {
        x.start("CdtTrfTxInf").start("PmtId").leaf("EndToEndId", &sepa_text(&t.end_to_end_id, 35)).end();
        x.start("Amt").amount("InstdAmt", t.amount).end();
        if let Some(b) = &t.creditor.bic {
            agent(&mut x, "CdtrAgt", Some(b));
        }
        x.start("Cdtr").leaf("Nm", &sepa_text(&t.creditor.name, 70)).end();
        account(&mut x, "CdtrAcct", &t.creditor.iban);
        x.start("RmtInf").leaf("Ustrd", &sepa_text(&t.remittance, 140)).end().end();
    }
    x.finish()
}

/// The payment blocks of one of our own pain.001/pain.008 files: each `PmtInfId` with the
/// `EndToEndId`s of its transactions, in file order (what a bank's reject of a whole block covers).
pub fn blocks_of(xml: &str) -> Vec<(String, Vec<String>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<&'static str> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(s)) => {
                current = match s.local_name().as_ref() {
                    "PmtInf" => {
                        blocks.push((String::new(), Vec::new()));
                        None
                    }
                    "PmtInfId" => Some("block"),
                    "EndToEndId" => Some("e2e"),
                    _ => None,
                }
            }
            Ok(Event::Text(t)) => {
                let text = t.xml_content(quick_xml::XmlVersion::Implicit1_0).trim().to_owned();
                match (current, blocks.last_mut()) {
                    (Some("block"), Some(b)) => b.0 = text,
                    (Some("e2e"), Some(b)) => b.1.push(text),
                    _ => {}
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    blocks
}

/// An ISO 20022 status reason code (pain.002 `StsRsnInf/Rsn/Cd`) in words, for operators.
pub fn status_reason_text(code: &str) -> &'static str {
    match code {
        "AC01" => "The account number (IBAN) is wrong.",
        "AC04" => "The account is closed.",
        "AC06" => "The account is blocked.",
        "AC13" => "The debtor is a consumer; a business direct debit is not allowed.",
        "AG01" => "The bank does not allow this transaction on the account.",
        "AG02" => "The bank operation code is not valid.",
        "AM04" => "The account did not have sufficient funds.",
        "AM05" => "The transaction is a duplicate.",
        "BE05" => "The bank does not know the initiating party (our creditor identifier or contract).",
        "CNOR" => "The creditor's bank is not registered for this scheme.",
        "DNOR" => "The debtor's bank is not registered for this scheme.",
        "DUPL" => "The file or payment was sent before (duplicate).",
        "ED05" => "Settlement failed.",
        "FF01" => "The file format is not valid.",
        "FF05" => "The direct-debit type (local instrument) is not valid.",
        "MD01" => "The debtor's bank holds no mandate.",
        "MD02" => "Mandate data are missing or wrong.",
        "MD07" => "The account holder has died.",
        "MS02" => "The debtor refused the transaction without saying why.",
        "MS03" => "The bank gave no reason.",
        "RC01" => "The bank identifier (BIC) is wrong.",
        "RR01" | "RR02" | "RR03" | "RR04" => "Regulatory reasons: information about a party is missing or refused.",
        "SL01" => "A service agreed by the debtor with its bank refused it (a block or an allow list).",
        _ => "The bank rejected it (see the reason code and the bank's text).",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(name: &str, iban: &str) -> Party {
        Party { name: name.into(), iban: iban.into(), bic: None }
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn collections_fall_on_target2_business_days() {
        assert_eq!(easter(2027), Some(day("2027-03-28")));
        assert_eq!(easter(2026), Some(day("2026-04-05")));
        assert_eq!(easter(2024), Some(day("2024-03-31")));
        assert_eq!(easter(2038), Some(day("2038-04-25")));
        // Saturday 2 January 2027 → Monday 4 January; Easter Sunday 2027 → Tuesday after Easter
        // Monday; Good Friday → Tuesday.
        assert_eq!(business_day_from(day("2027-01-02")), day("2027-01-04"));
        assert_eq!(business_day_from(day("2027-03-28")), day("2027-03-30"));
        assert_eq!(business_day_from(day("2027-03-26")), day("2027-03-30"));
        assert_eq!(business_day_from(day("2027-01-01")), day("2027-01-04"));
        assert_eq!(business_day_from(day("2026-05-01")), day("2026-05-04"));
        assert_eq!(business_day_from(day("2026-12-25")), day("2026-12-28"));
        assert_eq!(business_day_from(day("2027-12-24")), day("2027-12-24"), "a Friday, open");
        assert_eq!(business_day_from(day("2027-12-25")), day("2027-12-27"));
        assert_eq!(business_day_from(day("2027-03-31")), day("2027-03-31"));
        // Every day of a decade maps to a business day no more than five days on.
        let mut d = day("2026-01-01");
        while d < day("2036-01-01") {
            let b = business_day_from(d);
            assert!(is_business_day(b) && b >= d && (b - d).num_days() <= 5, "{d} → {b}");
            d += Duration::days(1);
        }
    }

    #[test]
    fn payment_blocks_have_their_own_ids() {
        let long = format!("NT{}", "0123456789abcdef".repeat(2));
        let ids: Vec<String> = (1..=12).map(|n| block_id(&long, n)).collect();
        assert!(ids.iter().all(|i| i.len() <= 35 && !i.ends_with('-')), "{ids:?}");
        assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 12);
        assert_eq!(block_id("NTMSG1", 2), "NTMSG1-2");
    }

    #[test]
    fn texts_keep_to_the_sepa_character_set() {
        assert_eq!(sepa_text("Müller & Söhne GmbH <x>", 70), "Mueller + Soehne GmbH x");
        assert_eq!(sepa_text("ÄÖÜß", 3), "AeO");
        assert_eq!(sepa_text("€€€", 10), "NOTPROVIDED");
        assert_eq!(decimal(11900), "119.00");
        assert_eq!(decimal(5), "0.05");
    }

    #[test]
    fn a_collection_file_reads_back_as_what_it_collects() {
        let created = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z").unwrap().with_timezone(&Utc);
        let day = NaiveDate::from_ymd_opt(2026, 3, 3).unwrap();
        let c = |e2e: &str, amount| Collection {
            end_to_end_id: e2e.into(),
            amount,
            mandate_id: "NTMANDATE1".into(),
            signed_on: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
            debtor: party("Kunde GmbH", "DE89370400440532013000"),
            remittance: "RF18539007547034 Rechnung 1".into(),
        };
        let xml = pain008(
            "NTMSG1",
            created,
            &party("netterms", "DE02120300000000202051"),
            "DE98ZZZ09999999999",
            &[
                CollectionGroup { sequence: "FRST".into(), date: day, items: vec![c("E1", 11900)] },
                CollectionGroup { sequence: "RCUR".into(), date: day, items: vec![c("E2", 100), c("E3", 1)] },
            ],
        );
        assert!(xml.contains("<NbOfTxs>3</NbOfTxs><CtrlSum>120.01</CtrlSum>"), "{xml}");
        assert!(xml.contains("<LclInstrm><Cd>B2B</Cd></LclInstrm><SeqTp>RCUR</SeqTp>"));
        assert!(xml.contains("<Othr><Id>DE98ZZZ09999999999</Id><SchmeNm><Prtry>SEPA</Prtry></SchmeNm></Othr>"));
        assert!(xml.contains("<MndtId>NTMANDATE1</MndtId><DtOfSgntr>2026-01-05</DtOfSgntr>"));
        assert!(xml.contains("<InstdAmt Ccy=\"EUR\">119.00</InstdAmt>"));
        // A bank's reject of a whole block covers that block's collections.
        let blocks = blocks_of(&xml);
        let ids: Vec<(&str, Vec<&str>)> =
            blocks.iter().map(|(b, e)| (b.as_str(), e.iter().map(String::as_str).collect())).collect();
        assert_eq!(ids, [("NTMSG1-1", vec!["E1"]), ("NTMSG1-2", vec!["E2", "E3"])]);
        // Well-formed: every element closes (the statement reader refuses it as a pain.008).
        let r = crate::domain::camt::read(xml.as_bytes(), |_, _| Ok::<_, crate::domain::camt::CamtError>(()));
        assert!(matches!(r, Err(crate::domain::camt::CamtError::NotAStatement(m)) if m.contains("pain.008")));
    }

    #[test]
    fn a_transfer_file_has_one_transaction_per_transfer() {
        let created = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z").unwrap().with_timezone(&Utc);
        let xml = pain001(
            "NTMSG2",
            created,
            &Party { bic: Some("NTRMDEB1XXX".into()), ..party("netterms", "DE02120300000000202051") },
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            &[Transfer {
                end_to_end_id: "NTREFUND1".into(),
                amount: 2500,
                creditor: party("Zahler AG", "DE89370400440532013000"),
                remittance: "Rueckzahlung".into(),
            }],
        );
        assert!(xml.contains("<PmtMtd>TRF</PmtMtd>") && xml.contains("<EndToEndId>NTREFUND1</EndToEndId>"));
        assert!(xml.contains("<Amt><InstdAmt Ccy=\"EUR\">25.00</InstdAmt></Amt>"));
        assert!(xml.contains("<DbtrAgt><FinInstnId><BICFI>NTRMDEB1XXX</BICFI></FinInstnId></DbtrAgt>"));
    }
}
