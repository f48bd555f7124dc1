//! Reading ISO 20022 customer payment status reports (pain.002): what a bank says about a
//! pain.008 or pain.001 it received from us — accepted, or rejected with a reason — for the whole
//! file (`OrgnlGrpInfAndSts`), a payment block (`OrgnlPmtInfAndSts`) or one transaction
//! (`TxInfAndSts`), any version (pain.002.001.03 to .14, the DK's pain.002.002.03/.003.03).
//!
//! Lenient as the statement reader is (elements by local name, any namespace, unknown elements
//! skipped) and as strict where a file could hurt: a DOCTYPE, more than [`camt::MAX_BYTES`],
//! nesting deeper than [`camt::MAX_DEPTH`], a text longer than [`camt::MAX_TEXT`] or more than
//! [`MAX_TRANSACTIONS`] transaction statuses are refused.

use std::io::BufRead;

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::camt::{self, Limited};

/// The most transaction statuses one report may carry.
pub const MAX_TRANSACTIONS: usize = 100_000;

/// A status and why (the reason code, e.g. `AC04`, or the bank's own, and its free text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `RJCT`, `ACCP`, `ACSC`, `ACTC`, `PART`, `PDNG`, … (`None` when the level states none).
    pub code: Option<String>,
    /// `StsRsnInf/Rsn/Cd`, else `StsRsnInf/Rsn/Prtry`.
    pub reason: Option<String>,
    /// `StsRsnInf/AddtlInf`, lines joined.
    pub info: Option<String>,
}

impl Status {
    pub fn rejected(&self) -> bool {
        self.code.as_deref() == Some("RJCT")
    }
}

/// One transaction's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxStatus {
    pub end_to_end_id: Option<String>,
    pub instruction_id: Option<String>,
    pub status: Status,
    /// The amount the original transaction named, in minor units, with its currency.
    pub amount: Option<(i64, String)>,
}

/// One payment block's status and the transactions it lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockStatus {
    /// `OrgnlPmtInfId`.
    pub id: Option<String>,
    pub status: Status,
    pub transactions: Vec<TxStatus>,
}

/// A status report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The message version from the namespace, e.g. `pain.002.001.03` (`pain.002` if none).
    pub version: String,
    /// The report's own `GrpHdr/MsgId`.
    pub message_id: Option<String>,
    /// `OrgnlMsgId`: the `MsgId` of our file it is about.
    pub original_message_id: String,
    /// `OrgnlMsgNmId`, e.g. `pain.008.001.08`.
    pub original_message_type: Option<String>,
    /// The whole file's status.
    pub group: Status,
    pub blocks: Vec<BlockStatus>,
}

impl Report {
    /// Each transaction listed with the status that applies to it: its own, else its block's,
    /// else the file's.
    pub fn transactions(&self) -> impl Iterator<Item = (&BlockStatus, TxStatus)> {
        self.blocks.iter().flat_map(move |b| {
            b.transactions.iter().map(move |t| {
                let levels = [&t.status, &b.status, &self.group];
                let code = levels.iter().find_map(|s| s.code.clone());
                // The reason of the nearest level that states it for this status.
                let why = levels.iter().find(|s| s.reason.is_some() && (s.code.is_none() || s.code == code));
                let status = Status {
                    reason: why.and_then(|s| s.reason.clone()),
                    info: t.status.info.clone().or_else(|| why.and_then(|s| s.info.clone())),
                    code,
                };
                (b, TxStatus { status, ..t.clone() })
            })
        })
    }

    /// The status that applies to a block listing no transactions: its own, else the file's.
    pub fn block_status(&self, b: &BlockStatus) -> Status {
        if b.status.code.is_some() { b.status.clone() } else { self.group.clone() }
    }
}

/// What a reject did to the collection or payout it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectOutcome {
    /// Rejected now.
    Rejected,
    /// Rejected before (the same report, read again): nothing changed.
    Known,
    /// Not rejected: it is in this state (e.g. `collected`, `paid`: the bank's statement showed
    /// it go through, so the report contradicts it).
    Left(String),
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pain002Error {
    #[error("the document is empty")]
    Empty,
    #[error("the document is larger than {} MiB", camt::MAX_BYTES / 1024 / 1024)]
    TooLarge,
    #[error("the document nests elements deeper than {} levels", camt::MAX_DEPTH)]
    TooDeep,
    #[error(
        "the document has a DOCTYPE declaration; payment status reports never need one and it could define external \
         or expanding entities, so it is refused"
    )]
    Doctype,
    #[error("the document refers to the entity &{0}; which XML does not define")]
    UndefinedEntity(String),
    #[error("not a payment status report: {0}")]
    NotAReport(String),
    #[error("the XML is malformed at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("the report lists more than {MAX_TRANSACTIONS} transactions")]
    TooMany,
}

/// Reads a whole report.
pub fn read<R: BufRead>(input: R) -> Result<Report, Pain002Error> {
    let mut reader = Reader::from_reader(Limited::new(input));
    reader.config_mut().trim_text(false);
    let malformed = |reader: &Reader<Limited<R>>, e: &dyn std::fmt::Display| {
        let message = e.to_string();
        if camt::is_too_large(&message) {
            return Pain002Error::TooLarge;
        }
        Pain002Error::Malformed { position: reader.error_position(), message }
    };
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut ccy: Option<String> = None;
    let mut saw_root = false;
    let mut root_ns: Option<String> = None;
    // The depth of `CstmrPmtStsRpt`, once seen.
    let mut report_depth: Option<usize> = None;
    let mut report = Report::default();
    let mut transactions = 0usize;
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| malformed(&reader, &e))?;
        match ev {
            Event::DocType(_) => return Err(Pain002Error::Doctype),
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = s.local_name().as_ref().to_owned();
                if path.len() >= camt::MAX_DEPTH {
                    return Err(Pain002Error::TooDeep);
                }
                let attr = |key: &str| {
                    s.try_get_attribute(key)
                        .ok()
                        .flatten()
                        .and_then(|a| a.normalized_value(XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()))
                };
                if !saw_root {
                    saw_root = true;
                    root_ns = attr("xmlns");
                    if name != "Document" {
                        check_top(&name)?;
                        report_depth = Some(0);
                        report.version = version_of(root_ns.as_deref());
                    }
                } else if report_depth.is_none() && path.len() == 1 {
                    check_top(&name)?;
                    report_depth = Some(1);
                    report.version = version_of(attr("xmlns").or_else(|| root_ns.clone()).as_deref());
                }
                if let Some(d) = report_depth {
                    let rel = path.len().saturating_sub(d);
                    match name.as_str() {
                        "OrgnlPmtInfAndSts" if rel == 1 => report.blocks.push(BlockStatus::default()),
                        // pain.002.001.02 lists transactions under the group.
                        "TxInfAndSts" if rel == 1 || rel == 2 => {
                            transactions += 1;
                            if transactions > MAX_TRANSACTIONS {
                                return Err(Pain002Error::TooMany);
                            }
                            if rel == 1 || report.blocks.is_empty() {
                                report.blocks.push(BlockStatus::default());
                            }
                            if let Some(b) = report.blocks.last_mut() {
                                b.transactions.push(TxStatus::default());
                            }
                        }
                        _ => {}
                    }
                }
                if name == "InstdAmt" || name == "Amt" {
                    ccy = attr("Ccy");
                }
                path.push(name);
                text.clear();
                if empty {
                    close(&mut path, &mut text, &mut ccy, report_depth, &mut report)?;
                }
            }
            Event::Text(t) => push_text(&mut text, &t.xml_content(XmlVersion::Implicit1_0))?,
            Event::CData(t) => push_text(&mut text, &t.into_inner())?,
            Event::GeneralRef(r) => {
                let c = match camt::resolve_reference(&r) {
                    Ok(Ok(c)) => c,
                    Ok(Err(other)) => return Err(Pain002Error::UndefinedEntity(other)),
                    Err(e) => return Err(malformed(&reader, &e)),
                };
                let mut b = [0u8; 4];
                push_text(&mut text, c.encode_utf8(&mut b))?;
            }
            Event::End(_) => close(&mut path, &mut text, &mut ccy, report_depth, &mut report)?,
            Event::Eof => {
                if let Some(last) = path.last() {
                    return Err(Pain002Error::Malformed {
                        position: reader.buffer_position(),
                        message: format!("the document ends before </{last}>"),
                    });
                }
                break;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(Pain002Error::Empty);
    }
    if report_depth.is_none() {
        return Err(Pain002Error::NotAReport("the document holds no CstmrPmtStsRpt".into()));
    }
    if report.original_message_id.is_empty() {
        return Err(Pain002Error::NotAReport("it names no original message (OrgnlMsgId)".into()));
    }
    Ok(report)
}

fn check_top(name: &str) -> Result<(), Pain002Error> {
    match name {
        "CstmrPmtStsRpt" => Ok(()),
        "BkToCstmrStmt" | "BkToCstmrDbtCdtNtfctn" | "BkToCstmrAcctRpt" => {
            Err(Pain002Error::NotAReport("this is a bank statement (camt); import it as a statement".into()))
        }
        other => Err(Pain002Error::NotAReport(format!("expected CstmrPmtStsRpt (pain.002), found <{other}>"))),
    }
}

fn version_of(namespace: Option<&str>) -> String {
    namespace
        .and_then(|ns| ns.rsplit(':').next())
        .filter(|v| v.starts_with("pain.002"))
        .map_or_else(|| "pain.002".to_owned(), str::to_owned)
}

fn push_text(text: &mut String, s: &str) -> Result<(), Pain002Error> {
    if text.len() + s.len() > camt::MAX_TEXT {
        return Err(Pain002Error::Malformed {
            position: 0,
            message: format!("an element's text is longer than {} bytes", camt::MAX_TEXT),
        });
    }
    text.push_str(s);
    Ok(())
}

fn set(slot: &mut Option<String>, text: &str) {
    if slot.is_none() && !text.is_empty() {
        *slot = Some(text.to_owned());
    }
}

/// Files a status's own fields (`rel` is the path below the level that holds the status).
fn status_field(rel: &[String], t: &str, st: &mut Status) {
    let names: Vec<&str> = rel.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["GrpSts"] | ["PmtInfSts"] | ["TxSts"] => set(&mut st.code, t),
        ["StsRsnInf", "Rsn", "Cd"] | ["StsRsnInf", "StsRsn", "Cd"] => set(&mut st.reason, t),
        ["StsRsnInf", "Rsn", "Prtry"] | ["StsRsnInf", "StsRsn", "Prtry"] => set(&mut st.reason, t),
        ["StsRsnInf", "AddtlInf"] if !t.is_empty() => {
            let info = st.info.get_or_insert_with(String::new);
            if info.len() < 1_000 {
                if !info.is_empty() {
                    info.push(' ');
                }
                info.push_str(t);
            }
        }
        _ => {}
    }
}

fn close(
    path: &mut Vec<String>,
    text: &mut String,
    ccy: &mut Option<String>,
    report_depth: Option<usize>,
    report: &mut Report,
) -> Result<(), Pain002Error> {
    let t = std::mem::take(text);
    let t = t.trim();
    if let Some(d) = report_depth
        && path.len() > d + 1
    {
        let rel = &path[d + 1..];
        let names: Vec<&str> = rel.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["GrpHdr", "MsgId"] => set(&mut report.message_id, t),
            ["OrgnlGrpInfAndSts", "OrgnlMsgId"] if report.original_message_id.is_empty() => {
                report.original_message_id = t.to_owned();
            }
            ["OrgnlGrpInfAndSts", "OrgnlMsgNmId"] => set(&mut report.original_message_type, t),
            ["OrgnlGrpInfAndSts", "TxInfAndSts", rest @ ..] | ["OrgnlPmtInfAndSts", "TxInfAndSts", rest @ ..] => {
                if let Some(tx) = report.blocks.last_mut().and_then(|b| b.transactions.last_mut()) {
                    tx_field(rest, &rel[2..], t, ccy, tx)?;
                }
            }
            ["OrgnlGrpInfAndSts", ..] => status_field(&rel[1..], t, &mut report.group),
            ["OrgnlPmtInfAndSts", "OrgnlPmtInfId"] => {
                if let Some(b) = report.blocks.last_mut() {
                    set(&mut b.id, t);
                }
            }
            ["OrgnlPmtInfAndSts", ..] => {
                if let Some(b) = report.blocks.last_mut() {
                    status_field(&rel[1..], t, &mut b.status);
                }
            }
            _ => {}
        }
    }
    path.pop();
    Ok(())
}

fn tx_field(
    names: &[&str],
    rel: &[String],
    t: &str,
    ccy: &mut Option<String>,
    tx: &mut TxStatus,
) -> Result<(), Pain002Error> {
    match names {
        ["OrgnlEndToEndId"] => set(&mut tx.end_to_end_id, t),
        ["OrgnlInstrId"] => set(&mut tx.instruction_id, t),
        ["OrgnlTxRef", "Amt", "InstdAmt"] | ["OrgnlTxRef", "InstdAmt"] => {
            if tx.amount.is_none()
                && let Some(c) = ccy.take()
            {
                let minor =
                    camt::parse_amount(t, &c).map_err(|message| Pain002Error::Malformed { position: 0, message })?;
                tx.amount = Some((minor, c));
            }
        }
        _ => status_field(rel, t, &mut tx.status),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const REJECT_ONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03">
 <CstmrPmtStsRpt>
  <GrpHdr><MsgId>BANK-1</MsgId><CreDtTm>2027-01-04T08:00:00</CreDtTm></GrpHdr>
  <OrgnlGrpInfAndSts><OrgnlMsgId>NT0001</OrgnlMsgId><OrgnlMsgNmId>pain.008.001.08</OrgnlMsgNmId>
   <GrpSts>PART</GrpSts></OrgnlGrpInfAndSts>
  <OrgnlPmtInfAndSts><OrgnlPmtInfId>NT0001-1</OrgnlPmtInfId><PmtInfSts>PART</PmtInfSts>
   <TxInfAndSts><OrgnlEndToEndId>E2E-A</OrgnlEndToEndId><TxSts>RJCT</TxSts>
    <StsRsnInf><Orgtr><Nm>Bank</Nm></Orgtr><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>Konto erloschen</AddtlInf></StsRsnInf>
    <OrgnlTxRef><Amt><InstdAmt Ccy="EUR">119.00</InstdAmt></Amt></OrgnlTxRef></TxInfAndSts>
   <TxInfAndSts><OrgnlEndToEndId>E2E-B</OrgnlEndToEndId><TxSts>ACCP</TxSts></TxInfAndSts>
  </OrgnlPmtInfAndSts>
 </CstmrPmtStsRpt>
</Document>"#;

    #[test]
    fn reads_transaction_rejects_with_reason_and_amount() {
        let r = read(REJECT_ONE.as_bytes()).unwrap();
        assert_eq!(r.version, "pain.002.001.03");
        assert_eq!(r.message_id.as_deref(), Some("BANK-1"));
        assert_eq!(r.original_message_id, "NT0001");
        assert_eq!(r.original_message_type.as_deref(), Some("pain.008.001.08"));
        assert_eq!(r.group.code.as_deref(), Some("PART"));
        let txs: Vec<TxStatus> = r.transactions().map(|(_, t)| t).collect();
        assert_eq!(txs.len(), 2);
        assert_eq!(txs[0].end_to_end_id.as_deref(), Some("E2E-A"));
        assert!(txs[0].status.rejected());
        assert_eq!(txs[0].status.reason.as_deref(), Some("AC04"));
        assert_eq!(txs[0].status.info.as_deref(), Some("Konto erloschen"));
        assert_eq!(txs[0].amount, Some((11_900, "EUR".into())));
        assert!(!txs[1].status.rejected());
    }

    #[test]
    fn a_group_reject_applies_to_what_it_lists_and_to_blocks_without_detail() {
        let xml = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt>
          <GrpHdr><MsgId>X</MsgId></GrpHdr>
          <OrgnlGrpInfAndSts><OrgnlMsgId>NTPO1</OrgnlMsgId><GrpSts>RJCT</GrpSts>
            <StsRsnInf><Rsn><Prtry>DU01</Prtry></Rsn></StsRsnInf></OrgnlGrpInfAndSts>
          <OrgnlPmtInfAndSts><OrgnlPmtInfId>B-1</OrgnlPmtInfId>
            <TxInfAndSts><OrgnlEndToEndId>P1</OrgnlEndToEndId></TxInfAndSts></OrgnlPmtInfAndSts>
        </CstmrPmtStsRpt></Document>"#;
        let r = read(xml.as_bytes()).unwrap();
        assert_eq!(r.version, "pain.002.001.10");
        assert!(r.group.rejected());
        assert_eq!(r.group.reason.as_deref(), Some("DU01"));
        let (b, t) = r.transactions().next().unwrap();
        assert_eq!(b.id.as_deref(), Some("B-1"));
        assert!(t.status.rejected());
        assert_eq!(t.status.reason.as_deref(), Some("DU01"));
    }

    #[test]
    fn the_old_layout_lists_transactions_under_the_group() {
        let xml = r#"<Document><CstmrPmtStsRpt><GrpHdr><MsgId>X</MsgId></GrpHdr>
          <OrgnlGrpInfAndSts><OrgnlMsgId>M</OrgnlMsgId><GrpSts>PART</GrpSts>
            <TxInfAndSts><OrgnlEndToEndId>E</OrgnlEndToEndId><TxSts>RJCT</TxSts>
              <StsRsnInf><Rsn><Cd>MD01</Cd></Rsn></StsRsnInf></TxInfAndSts></OrgnlGrpInfAndSts>
        </CstmrPmtStsRpt></Document>"#;
        let r = read(xml.as_bytes()).unwrap();
        let (_, t) = r.transactions().next().unwrap();
        assert_eq!(t.end_to_end_id.as_deref(), Some("E"));
        assert_eq!(t.status.reason.as_deref(), Some("MD01"));
        assert!(t.status.rejected());
    }

    #[test]
    fn hostile_and_wrong_documents_are_refused() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document><CstmrPmtStsRpt><GrpHdr><MsgId>&x;</MsgId></GrpHdr></CstmrPmtStsRpt></Document>"#;
        assert_eq!(read(xxe.as_bytes()), Err(Pain002Error::Doctype));
        assert_eq!(read(&b""[..]), Err(Pain002Error::Empty));
        let unknown = "<Document><CstmrPmtStsRpt><GrpHdr><MsgId>&x;</MsgId></GrpHdr></CstmrPmtStsRpt></Document>";
        assert_eq!(read(unknown.as_bytes()), Err(Pain002Error::UndefinedEntity("x".into())));
        let deep = format!("<Document><CstmrPmtStsRpt>{}</CstmrPmtStsRpt></Document>", "<a>".repeat(200));
        assert_eq!(read(deep.as_bytes()), Err(Pain002Error::TooDeep));
        let camt = "<Document><BkToCstmrStmt></BkToCstmrStmt></Document>";
        assert!(matches!(read(camt.as_bytes()), Err(Pain002Error::NotAReport(m)) if m.contains("statement")));
        let truncated = &REJECT_ONE[..REJECT_ONE.len() / 2];
        assert!(matches!(read(truncated.as_bytes()), Err(Pain002Error::Malformed { .. })));
        let no_original = "<Document><CstmrPmtStsRpt><GrpHdr><MsgId>X</MsgId></GrpHdr></CstmrPmtStsRpt></Document>";
        assert!(matches!(read(no_original.as_bytes()), Err(Pain002Error::NotAReport(_))));
        let filler = std::io::Read::take(std::io::repeat(b' '), camt::MAX_BYTES + 1);
        let big = std::io::Read::chain(&b"<Document><CstmrPmtStsRpt>"[..], filler);
        assert_eq!(read(std::io::BufReader::new(big)), Err(Pain002Error::TooLarge));
        let bad_amount = REJECT_ONE.replace("119.00", "1.1.9");
        assert!(matches!(read(bad_amount.as_bytes()), Err(Pain002Error::Malformed { .. })));
    }
}
