//! Reading ISO 20022 bank-to-customer statements: camt.053 (statement), camt.054 (debit/credit
//! notification) and camt.052 (account report), any version, as banks really write them.
//!
//! Lenient where banks differ: elements are matched by local name whatever their namespace or
//! version (`Sts` or `Sts/Cd`, `Dbtr/Nm` or `Dbtr/Pty/Nm`), unknown elements are skipped, headers
//! and balances are optional, and the XSD is never required. Strict where a file could hurt: a
//! DOCTYPE (the door to external entities and entity expansion) is refused, and so are documents
//! larger than [`MAX_BYTES`], nested deeper than [`MAX_DEPTH`], with a text longer than
//! [`MAX_TEXT`] or an entry with more than [`MAX_TX_PER_ENTRY`] transactions. The reader streams:
//! each entry is handed to the caller as soon as it is read, so memory does not grow with the file.

use std::io::BufRead;

use chrono::NaiveDate;
use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// The largest document read (50 MiB).
pub const MAX_BYTES: u64 = 50 * 1024 * 1024;
/// The deepest nesting of elements accepted (real statements nest about 12 deep).
pub const MAX_DEPTH: usize = 100;
/// The longest text of one element, in bytes (remittance lines are at most 140 characters).
pub const MAX_TEXT: usize = 10_000;
/// The most transaction details one entry may carry.
pub const MAX_TX_PER_ENTRY: usize = 100_000;

/// Which message a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// camt.052 account report (intraday).
    Report,
    /// camt.053 statement (end of day).
    Statement,
    /// camt.054 debit/credit notification (single bookings, batch details, returns).
    Notification,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Report => "camt.052",
            Kind::Statement => "camt.053",
            Kind::Notification => "camt.054",
        }
    }
}

/// What the document says about itself, known once its first elements are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// The message version from the namespace, e.g. `camt.053.001.08` (the kind alone if none).
    pub version: String,
}

/// One entry (`Ntry`) of a statement, with the statement it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Position of the entry in the document, from 0.
    pub index: u32,
    /// `Stmt/Id` (or `Ntfctn/Id`, `Rpt/Id`).
    pub statement_id: Option<String>,
    /// The account the statement is for: `Acct/Id/IBAN`, else `Acct/Id/Othr/Id`.
    pub account: Option<String>,
    /// Minor units of `currency`, never negative.
    pub amount: i64,
    pub currency: String,
    /// `CdtDbtInd` = `CRDT` (money in); `DBIT` otherwise.
    pub credit: bool,
    /// `RvslInd` = true: the entry reverses an earlier one (e.g. a returned direct debit).
    pub reversal: bool,
    /// `BOOK`, `PDNG`, `INFO`, … (`BOOK` when the bank leaves it out).
    pub status: String,
    pub booking_date: Option<NaiveDate>,
    pub value_date: Option<NaiveDate>,
    /// `AcctSvcrRef`: the bank's own reference of the entry.
    pub bank_ref: Option<String>,
    /// `NtryRef`.
    pub entry_ref: Option<String>,
    /// `NtryDtls/Btch/NbOfTxs`: the entry books this many transactions together.
    pub batch_count: Option<u32>,
    /// The bank transaction code: `Domn/Fmly/SubFmly` (e.g. `PMNT/RCDT/ESCT`), else the proprietary code.
    pub bank_tx_code: Option<String>,
    /// `AddtlNtryInf`.
    pub info: Option<String>,
    pub transactions: Vec<TxDetails>,
}

/// One transaction's details (`TxDtls`) within an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxDetails {
    /// Its own amount, when given (`AmtDtls/TxAmt/Amt`, `Amt`, else `AmtDtls/InstdAmt/Amt`).
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// Its own `CdtDbtInd` (camt .08 and later), when given.
    pub credit: Option<bool>,
    pub end_to_end_id: Option<String>,
    pub tx_id: Option<String>,
    pub mandate_id: Option<String>,
    pub bank_ref: Option<String>,
    pub instruction_id: Option<String>,
    pub payment_info_id: Option<String>,
    pub debtor_name: Option<String>,
    pub debtor_account: Option<String>,
    pub creditor_account: Option<String>,
    pub ultimate_debtor: Option<String>,
    /// `RmtInf/Strd/CdtrRefInf/Ref`: creditor references, as given.
    pub structured_refs: Vec<String>,
    /// `RmtInf/Ustrd` lines and `AddtlTxInf`.
    pub unstructured: Vec<String>,
    /// `RtrInf/Rsn/Cd` (or `Prtry`): set when the transaction is a return.
    pub return_reason: Option<String>,
}

impl TxDetails {
    /// Empty details: nothing that identifies or remits (e.g. a batch's placeholder).
    pub fn is_bare(&self) -> bool {
        self.end_to_end_id.is_none()
            && self.tx_id.is_none()
            && self.mandate_id.is_none()
            && self.bank_ref.is_none()
            && self.debtor_name.is_none()
            && self.debtor_account.is_none()
            && self.structured_refs.is_empty()
            && self.unstructured.is_empty()
            && self.return_reason.is_none()
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CamtError {
    #[error("the document is empty")]
    Empty,
    #[error("the document is larger than {} MiB", MAX_BYTES / 1024 / 1024)]
    TooLarge,
    #[error("the document nests elements deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error(
        "the document has a DOCTYPE declaration; bank statements never need one and it could define external or \
         expanding entities, so it is refused"
    )]
    Doctype,
    #[error("the document refers to the entity &{0}; which XML does not define")]
    UndefinedEntity(String),
    #[error("not a bank statement: {0}")]
    NotAStatement(String),
    #[error("the XML is malformed at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("entry {} (counted from 1): {message}", u64::from(*index) + 1)]
    Entry { index: u32, message: String },
}

/// A reader that fails once more than [`MAX_BYTES`] were read from it.
pub(crate) struct Limited<R> {
    inner: R,
    read: u64,
}

impl<R: BufRead> Limited<R> {
    pub(crate) fn new(inner: R) -> Limited<R> {
        Limited { inner, read: 0 }
    }
}

/// Whether a reader's error says the document was larger than [`MAX_BYTES`].
pub(crate) fn is_too_large(message: &str) -> bool {
    message.contains(TOO_LARGE)
}

/// The character an entity or character reference stands for: only XML's own five entities are
/// known (a document cannot define more: its DOCTYPE is refused); `Err` names an unknown one.
pub(crate) fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<Result<char, String>, quick_xml::Error> {
    Ok(match r.resolve_char_ref()? {
        Some(c) => Ok(c),
        None => match r.xml10_content().as_ref() {
            "amp" => Ok('&'),
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "quot" => Ok('"'),
            "apos" => Ok('\''),
            other => Err(other.to_owned()),
        },
    })
}

impl<R: BufRead> std::io::Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(n)?;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Limited<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        // The size is checked on the next read; `consume` cannot fail.
        self.read = self.read.saturating_add(n as u64);
    }
}

impl<R> Limited<R> {
    fn count(&mut self, n: usize) -> std::io::Result<()> {
        self.read = self.read.saturating_add(n as u64);
        self.check()
    }
    fn check(&self) -> std::io::Result<()> {
        if self.read > MAX_BYTES { Err(std::io::Error::other(TOO_LARGE)) } else { Ok(()) }
    }
}

const TOO_LARGE: &str = "netterms: document too large";

/// The minor-unit exponent of an ISO 4217 currency (2 unless listed).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Parses a decimal amount such as `119.00` or `20` into minor units of `currency`. Fraction
/// digits beyond the currency's may only be zeros.
pub fn parse_amount(text: &str, currency: &str) -> Result<i64, String> {
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || int.len() > 15 {
        return Err(format!("amount {t:?} is not a decimal number"));
    }
    let exp = exponent(currency) as usize;
    let (kept, extra) = if frac.len() > exp { frac.split_at(exp) } else { (frac, "") };
    if extra.bytes().any(|b| b != b'0') {
        return Err(format!("amount {t:?} has more decimals than {currency} allows ({exp})"));
    }
    let mut minor: i64 = 0;
    for b in int.bytes().chain(kept.bytes()).chain(std::iter::repeat_n(b'0', exp - kept.len())) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or_else(|| format!("amount {t:?} is out of range"))?;
    }
    Ok(minor)
}

/// A date, or the date part of a date-time.
fn parse_date(text: &str) -> Option<NaiveDate> {
    text.trim().get(..10).and_then(|d| d.parse().ok())
}

fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// What the message's top element says it is, from its local name.
fn kind_of(name: &str) -> Result<Kind, CamtError> {
    Ok(match name {
        "BkToCstmrStmt" => Kind::Statement,
        "BkToCstmrDbtCdtNtfctn" => Kind::Notification,
        "BkToCstmrAcctRpt" => Kind::Report,
        "CstmrDrctDbtInitn" => {
            return Err(CamtError::NotAStatement("this is a pain.008 direct-debit initiation".into()));
        }
        "CstmrCdtTrfInitn" => {
            return Err(CamtError::NotAStatement("this is a pain.001 credit-transfer initiation".into()));
        }
        "CstmrPmtStsRpt" => return Err(CamtError::NotAStatement("this is a pain.002 payment status report".into())),
        other => {
            return Err(CamtError::NotAStatement(format!(
                "expected BkToCstmrStmt (camt.053), BkToCstmrDbtCdtNtfctn (camt.054) or BkToCstmrAcctRpt (camt.052), \
                 found <{other}>"
            )));
        }
    })
}

/// The version in a namespace such as `urn:iso:std:iso:20022:tech:xsd:camt.053.001.08`.
fn version_of(namespace: Option<&str>, kind: Kind) -> String {
    namespace
        .and_then(|ns| ns.rsplit(':').next())
        .filter(|v| v.starts_with("camt.05"))
        .map_or_else(|| kind.as_str().to_owned(), str::to_owned)
}

/// An element path being read: local names joined by `/`, with where each level starts.
#[derive(Default)]
struct Path {
    text: String,
    starts: Vec<usize>,
}

impl Path {
    fn push(&mut self, name: &str) {
        self.starts.push(self.text.len());
        if !self.text.is_empty() {
            self.text.push('/');
        }
        self.text.push_str(name);
    }
    fn pop(&mut self) {
        if let Some(s) = self.starts.pop() {
            self.text.truncate(s);
        }
    }
    fn depth(&self) -> usize {
        self.starts.len()
    }
    /// The path below level `depth` (exclusive), e.g. `Amt` for `…/Ntry/Amt` below `Ntry`.
    fn below(&self, depth: usize) -> &str {
        match self.starts.get(depth) {
            Some(&s) => self.text[s..].trim_start_matches('/'),
            None => "",
        }
    }
    fn last(&self) -> &str {
        self.starts.last().map_or("", |&s| self.text[s..].trim_start_matches('/'))
    }
}

/// Reads the document, handing each entry to `on_entry` as soon as it is complete. Returns the
/// header and the number of entries. An error from `on_entry` stops the reading and is returned.
pub fn read<R: BufRead, E: From<CamtError>>(
    input: R,
    mut on_entry: impl FnMut(&Header, Entry) -> Result<(), E>,
) -> Result<(Header, u32), E> {
    let mut reader = Reader::from_reader(Limited::new(input));
    // Texts are trimmed whole when their element closes (trimming each chunk would eat the
    // spaces around an entity reference).
    reader.config_mut().trim_text(false);
    let mut buf = Vec::new();
    let mut path = Path::default();
    let mut header: Option<Header> = None;
    // Document-level state.
    let mut saw_root = false;
    // The root's default namespace, which names the message version.
    let mut root_ns: Option<String> = None;
    let mut statement_depth: Option<usize> = None;
    let mut statement_id: Option<String> = None;
    let mut account: Option<String> = None;
    let mut entry_depth: Option<usize> = None;
    let mut tx_depth: Option<usize> = None;
    let mut entry = Entry::default();
    let mut tx = TxDetails::default();
    let mut count: u32 = 0;
    // Text of the innermost element, and the currency of the amount being read.
    let mut text = String::new();
    let mut ccy: Option<String> = None;
    let mut tx_amount_rank = 0u8;
    let mut domain = (String::new(), String::new(), String::new());

    let malformed = |reader: &Reader<Limited<R>>, e: &dyn std::fmt::Display| {
        let message = e.to_string();
        if is_too_large(&message) {
            return CamtError::TooLarge;
        }
        CamtError::Malformed { position: reader.error_position(), message }
    };

    // The state a closing element may change, borrowed afresh for each close.
    macro_rules! ctx {
        () => {
            Ctx {
                statement_depth: &mut statement_depth,
                statement_id: &mut statement_id,
                account: &mut account,
                entry_depth: &mut entry_depth,
                tx_depth: &mut tx_depth,
                entry: &mut entry,
                tx: &mut tx,
                tx_amount_rank: &mut tx_amount_rank,
                domain: &mut domain,
            }
        };
    }
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| E::from(malformed(&reader, &e)))?;
        match ev {
            Event::DocType(_) => return Err(CamtError::Doctype.into()),
            Event::Start(ref s) | Event::Empty(ref s) => {
                let empty = matches!(ev, Event::Empty(_));
                let local = s.local_name();
                let name = local.as_ref();
                if path.depth() >= MAX_DEPTH {
                    return Err(CamtError::TooDeep.into());
                }
                let xmlns = || {
                    s.try_get_attribute("xmlns")
                        .ok()
                        .flatten()
                        .and_then(|a| a.normalized_value(XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()))
                };
                if !saw_root {
                    saw_root = true;
                    root_ns = xmlns();
                    if name != "Document" {
                        // Lenient: a message without the Document wrapper.
                        let kind = kind_of(name)?;
                        header = Some(Header { kind, version: kind.as_str().to_owned() });
                    }
                } else if header.is_none() && path.depth() == 1 {
                    let kind = kind_of(name)?;
                    let ns = xmlns().or_else(|| root_ns.clone());
                    header = Some(Header { kind, version: version_of(ns.as_deref(), kind) });
                }
                path.push(name);
                text.clear();
                if name == "Amt" || name == "InstdAmt" || name == "TxAmt" {
                    ccy = s
                        .try_get_attribute("Ccy")
                        .ok()
                        .flatten()
                        .and_then(|a| a.normalized_value(XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()));
                }
                if header.is_some() {
                    match name {
                        "Stmt" | "Ntfctn" | "Rpt" if statement_depth.is_none() => {
                            statement_depth = Some(path.depth());
                            statement_id = None;
                            account = None;
                        }
                        "Ntry" if statement_depth.is_some() && entry_depth.is_none() => {
                            entry_depth = Some(path.depth());
                            entry = Entry {
                                index: count,
                                statement_id: statement_id.clone(),
                                account: account.clone(),
                                status: String::new(),
                                ..Entry::default()
                            };
                            domain = Default::default();
                        }
                        "TxDtls" if entry_depth.is_some() && tx_depth.is_none() => {
                            tx_depth = Some(path.depth());
                            tx = TxDetails::default();
                            tx_amount_rank = 0;
                        }
                        _ => {}
                    }
                }
                if empty {
                    // An empty element has no text: close it at once.
                    close(&mut path, &mut text, &mut ccy, ctx!())
                        .map_err(E::from)?
                        .map(|e| emit(&header, e, &mut count, &mut on_entry))
                        .transpose()?;
                }
            }
            Event::Text(t) => {
                push_text(&mut text, &t.xml_content(XmlVersion::Implicit1_0))?;
            }
            Event::CData(t) => {
                let raw = t.into_inner();
                push_text(&mut text, &raw)?;
            }
            Event::GeneralRef(r) => {
                let c = match resolve_reference(&r) {
                    Ok(Ok(c)) => c,
                    Ok(Err(other)) => return Err(CamtError::UndefinedEntity(other).into()),
                    Err(e) => return Err(malformed(&reader, &e).into()),
                };
                let mut b = [0u8; 4];
                push_text(&mut text, c.encode_utf8(&mut b))?;
            }
            Event::End(_) => {
                let done = close(&mut path, &mut text, &mut ccy, ctx!()).map_err(E::from)?;
                if let Some(e) = done {
                    emit(&header, e, &mut count, &mut on_entry)?;
                }
            }
            Event::Eof => {
                if path.depth() > 0 {
                    return Err(CamtError::Malformed {
                        position: reader.buffer_position(),
                        message: format!("the document ends before </{}>", path.last()),
                    }
                    .into());
                }
                break;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
        buf.clear();
    }
    match header {
        Some(h) => Ok((h, count)),
        None if !saw_root => Err(CamtError::Empty.into()),
        None => Err(CamtError::NotAStatement("the document holds no statement message".into()).into()),
    }
}

fn push_text(text: &mut String, s: &str) -> Result<(), CamtError> {
    if text.len() + s.len() > MAX_TEXT {
        return Err(CamtError::Malformed {
            position: 0,
            message: format!("an element's text is longer than {MAX_TEXT} bytes"),
        });
    }
    text.push_str(s);
    Ok(())
}

fn emit<E: From<CamtError>>(
    header: &Option<Header>,
    e: Entry,
    count: &mut u32,
    on_entry: &mut impl FnMut(&Header, Entry) -> Result<(), E>,
) -> Result<(), E> {
    let Some(h) = header else { return Ok(()) };
    *count += 1;
    on_entry(h, e)
}

/// The reader's state a closing element may change.
struct Ctx<'a> {
    statement_depth: &'a mut Option<usize>,
    statement_id: &'a mut Option<String>,
    account: &'a mut Option<String>,
    entry_depth: &'a mut Option<usize>,
    tx_depth: &'a mut Option<usize>,
    entry: &'a mut Entry,
    tx: &'a mut TxDetails,
    tx_amount_rank: &'a mut u8,
    domain: &'a mut (String, String, String),
}

fn set(slot: &mut Option<String>, text: &str) {
    if slot.is_none() && !text.is_empty() {
        *slot = Some(text.to_owned());
    }
}

/// Closes the innermost element: files its text where it belongs; returns an entry once its
/// `Ntry` closes.
fn close(path: &mut Path, text: &mut String, ccy: &mut Option<String>, c: Ctx<'_>) -> Result<Option<Entry>, CamtError> {
    let depth = path.depth();
    let t = std::mem::take(text);
    let t = t.trim();
    let mut finished = None;
    if let Some(td) = *c.tx_depth {
        if depth == td {
            if c.entry.transactions.len() >= MAX_TX_PER_ENTRY {
                return Err(CamtError::Entry {
                    index: c.entry.index,
                    message: format!("more than {MAX_TX_PER_ENTRY} transactions"),
                });
            }
            c.entry.transactions.push(std::mem::take(c.tx));
            *c.tx_depth = None;
        } else {
            let rel = path.below(td);
            tx_field(rel, t, ccy, c.tx, c.tx_amount_rank, c.entry.index)?;
        }
    } else if let Some(ed) = *c.entry_depth {
        if depth == ed {
            let mut e = std::mem::take(c.entry);
            if e.currency.is_empty() {
                amount_from_transactions(&mut e)?;
            }
            if e.status.is_empty() {
                e.status = "BOOK".into();
            }
            let (d, f, s) = std::mem::take(c.domain);
            if !d.is_empty() {
                e.bank_tx_code = Some([d, f, s].into_iter().filter(|x| !x.is_empty()).collect::<Vec<_>>().join("/"));
            }
            *c.entry_depth = None;
            finished = Some(e);
        } else {
            entry_field(path.below(ed), t, ccy, c.entry, c.domain)?;
        }
    } else if let Some(sd) = *c.statement_depth {
        if depth == sd {
            *c.statement_depth = None;
        } else {
            match path.below(sd) {
                "Id" => set(c.statement_id, t),
                "Acct/Id/IBAN" => set(c.account, &t.replace(' ', "").to_ascii_uppercase()),
                "Acct/Id/Othr/Id" => set(c.account, t),
                _ => {}
            }
        }
    }
    path.pop();
    Ok(finished)
}

/// An entry without its own `Amt` (PostFinance's camt.054 gives it only in the transaction):
/// the sum of its transactions' amounts, all in one currency, each signed by its own
/// `CdtDbtInd` or else the entry's.
fn amount_from_transactions(e: &mut Entry) -> Result<(), CamtError> {
    let bad = |message: &str| CamtError::Entry { index: e.index, message: message.to_owned() };
    if e.transactions.is_empty() || e.transactions.iter().any(|t| t.amount.is_none()) {
        return Err(bad("the entry has no amount (Amt), neither its own nor in each of its transactions"));
    }
    let currency = e.transactions[0].currency.clone().unwrap_or_default();
    let mut net: i64 = 0;
    for t in &e.transactions {
        if t.currency.as_deref() != Some(currency.as_str()) {
            return Err(bad("the entry has no amount (Amt) and its transactions are in different currencies"));
        }
        let a = t.amount.unwrap_or(0);
        let signed = if t.credit.unwrap_or(e.credit) { a } else { -a };
        net = net.checked_add(signed).ok_or_else(|| bad("the entry's transactions add up beyond any amount"))?;
    }
    e.amount = net.abs();
    e.credit = if net == 0 { e.credit } else { net > 0 };
    e.currency = currency;
    Ok(())
}

fn amount_of(t: &str, ccy: &Option<String>, index: u32) -> Result<(i64, String), CamtError> {
    let bad = |message: String| CamtError::Entry { index, message };
    let currency = ccy.clone().ok_or_else(|| bad(format!("amount {t:?} has no currency (Ccy)")))?;
    if !valid_currency(&currency) {
        return Err(bad(format!("currency {currency:?} is not an ISO 4217 code")));
    }
    let minor = parse_amount(t, &currency).map_err(bad)?;
    Ok((minor, currency))
}

fn entry_field(
    rel: &str,
    t: &str,
    ccy: &Option<String>,
    e: &mut Entry,
    domain: &mut (String, String, String),
) -> Result<(), CamtError> {
    match rel {
        "Amt" => (e.amount, e.currency) = amount_of(t, ccy, e.index)?,
        "CdtDbtInd" => e.credit = t == "CRDT",
        "RvslInd" => e.reversal = t == "true" || t == "1",
        "Sts" | "Sts/Cd" | "Sts/Prtry" if !t.is_empty() => e.status = t.to_owned(),
        "BookgDt/Dt" | "BookgDt/DtTm" => e.booking_date = e.booking_date.or(parse_date(t)),
        "ValDt/Dt" | "ValDt/DtTm" => e.value_date = e.value_date.or(parse_date(t)),
        "AcctSvcrRef" if t != "NONREF" => set(&mut e.bank_ref, t),
        "NtryRef" => set(&mut e.entry_ref, t),
        "AddtlNtryInf" => set(&mut e.info, t),
        "NtryDtls/Btch/NbOfTxs" => e.batch_count = t.parse().ok(),
        "BkTxCd/Domn/Cd" => domain.0 = t.to_owned(),
        "BkTxCd/Domn/Fmly/Cd" => domain.1 = t.to_owned(),
        "BkTxCd/Domn/Fmly/SubFmlyCd" => domain.2 = t.to_owned(),
        "BkTxCd/Prtry/Cd" if domain.0.is_empty() => set(&mut e.bank_tx_code, t),
        _ => {}
    }
    Ok(())
}

fn tx_field(
    rel: &str,
    t: &str,
    ccy: &Option<String>,
    tx: &mut TxDetails,
    rank: &mut u8,
    index: u32,
) -> Result<(), CamtError> {
    // Which amount wins when several are given: the transaction amount, then the plain amount,
    // then the instructed amount.
    let amount_rank = match rel {
        "AmtDtls/TxAmt/Amt" => 3,
        "Amt" => 2,
        "AmtDtls/InstdAmt/Amt" => 1,
        _ => 0,
    };
    if amount_rank > 0 {
        if amount_rank > *rank {
            let (minor, currency) = amount_of(t, ccy, index)?;
            tx.amount = Some(minor);
            tx.currency = Some(currency);
            *rank = amount_rank;
        }
        return Ok(());
    }
    let iban = || t.replace(' ', "").to_ascii_uppercase();
    match rel {
        "CdtDbtInd" => tx.credit = Some(t == "CRDT"),
        "Refs/EndToEndId" if t != "NOTPROVIDED" => set(&mut tx.end_to_end_id, t),
        "Refs/TxId" => set(&mut tx.tx_id, t),
        "Refs/MndtId" => set(&mut tx.mandate_id, t),
        "Refs/AcctSvcrRef" if t != "NONREF" => set(&mut tx.bank_ref, t),
        "Refs/InstrId" => set(&mut tx.instruction_id, t),
        "Refs/PmtInfId" => set(&mut tx.payment_info_id, t),
        "RltdPties/Dbtr/Nm" | "RltdPties/Dbtr/Pty/Nm" => set(&mut tx.debtor_name, t),
        "RltdPties/DbtrAcct/Id/IBAN" => set(&mut tx.debtor_account, &iban()),
        "RltdPties/DbtrAcct/Id/Othr/Id" => set(&mut tx.debtor_account, t),
        "RltdPties/CdtrAcct/Id/IBAN" => set(&mut tx.creditor_account, &iban()),
        "RltdPties/UltmtDbtr/Nm" | "RltdPties/UltmtDbtr/Pty/Nm" => set(&mut tx.ultimate_debtor, t),
        "RmtInf/Strd/CdtrRefInf/Ref" if !t.is_empty() => tx.structured_refs.push(t.to_owned()),
        "RmtInf/Ustrd" | "AddtlTxInf" if !t.is_empty() => tx.unstructured.push(t.to_owned()),
        "RtrInf/Rsn/Cd" | "RtrInf/Rsn/Prtry" => set(&mut tx.return_reason, t),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(xml: &str) -> Result<(Header, Vec<Entry>), CamtError> {
        let mut out = Vec::new();
        let (h, n) = read(xml.as_bytes(), |_, e| {
            out.push(e);
            Ok::<_, CamtError>(())
        })?;
        assert_eq!(n as usize, out.len());
        Ok((h, out))
    }

    const V02: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
 <GrpHdr><MsgId>M1</MsgId></GrpHdr>
 <Stmt><Id>S1</Id><Acct><Id><IBAN>DE02 1203 0000 0000 2020 51</IBAN></Id><Ccy>EUR</Ccy></Acct>
  <Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd></Bal>
  <Ntry><NtryRef>N1</NtryRef><Amt Ccy="EUR">119.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
   <BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><DtTm>2026-03-02T10:00:00+01:00</DtTm></ValDt>
   <AcctSvcrRef>BANK-1</AcctSvcrRef>
   <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
   <NtryDtls><TxDtls>
    <Refs><EndToEndId>E2E-1</EndToEndId></Refs>
    <AmtDtls><TxAmt><Amt Ccy="EUR">119.00</Amt></TxAmt></AmtDtls>
    <RltdPties><Dbtr><Nm>Kunde GmbH &amp; Co. KG</Nm></Dbtr><DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct></RltdPties>
    <RmtInf><Ustrd>Rechnung 4711</Ustrd><Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>RF18539007547034</Ref></CdtrRefInf></Strd></RmtInf>
   </TxDtls></NtryDtls>
  </Ntry>
 </Stmt></BkToCstmrStmt></Document>"#;

    #[test]
    fn a_version_02_statement_is_read_by_element_names() {
        let (h, e) = read_all(V02).unwrap();
        assert_eq!(h, Header { kind: Kind::Statement, version: "camt.053.001.02".into() });
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!((e.amount, e.currency.as_str(), e.credit, e.status.as_str()), (11900, "EUR", true, "BOOK"));
        assert_eq!(e.account.as_deref(), Some("DE02120300000000202051"));
        assert_eq!(e.statement_id.as_deref(), Some("S1"));
        assert_eq!(e.bank_ref.as_deref(), Some("BANK-1"));
        assert_eq!(e.bank_tx_code.as_deref(), Some("PMNT/RCDT/ESCT"));
        assert_eq!(e.booking_date, NaiveDate::from_ymd_opt(2026, 3, 2));
        assert_eq!(e.value_date, NaiveDate::from_ymd_opt(2026, 3, 2));
        let t = &e.transactions[0];
        assert_eq!(t.amount, Some(11900));
        assert_eq!(t.debtor_name.as_deref(), Some("Kunde GmbH & Co. KG"));
        assert_eq!(t.debtor_account.as_deref(), Some("DE89370400440532013000"));
        assert_eq!(t.structured_refs, vec!["RF18539007547034"]);
        assert_eq!(t.unstructured, vec!["Rechnung 4711"]);
        assert_eq!(t.end_to_end_id.as_deref(), Some("E2E-1"));
    }

    #[test]
    fn version_08_shapes_and_a_missing_wrapper_are_read_too() {
        let xml = r#"<BkToCstmrDbtCdtNtfctn><Ntfctn><Id>X</Id><Acct><Id><Othr><Id>ACC-9</Id></Othr></Id></Acct>
          <Ntry><Amt Ccy="JPY">1500</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd><Sts><Cd>PDNG</Cd></Sts>
           <NtryDtls><Btch><NbOfTxs>3</NbOfTxs></Btch><TxDtls><Amt Ccy="JPY">500</Amt><CdtDbtInd>CRDT</CdtDbtInd>
            <RltdPties><Dbtr><Pty><Nm>Pty Name</Nm></Pty></Dbtr></RltdPties>
            <RtrInf><Rsn><Cd>AM04</Cd></Rsn></RtrInf><Refs><MndtId>M-1</MndtId></Refs></TxDtls></NtryDtls></Ntry>
          <Ntry><Amt Ccy="EUR">1</Amt><CdtDbtInd>CRDT</CdtDbtInd></Ntry></Ntfctn></BkToCstmrDbtCdtNtfctn>"#;
        let (h, e) = read_all(xml).unwrap();
        assert_eq!(h.kind, Kind::Notification);
        assert_eq!((e[0].amount, e[0].credit, e[0].reversal, e[0].status.as_str()), (1500, false, true, "PDNG"));
        assert_eq!(e[0].batch_count, Some(3));
        assert_eq!(e[0].account.as_deref(), Some("ACC-9"));
        let t = &e[0].transactions[0];
        assert_eq!((t.amount, t.credit), (Some(500), Some(true)));
        assert_eq!(t.debtor_name.as_deref(), Some("Pty Name"));
        assert_eq!(t.return_reason.as_deref(), Some("AM04"));
        assert_eq!(t.mandate_id.as_deref(), Some("M-1"));
        assert_eq!((e[1].amount, e[1].status.as_str(), e[1].index), (100, "BOOK", 1));
    }

    #[test]
    fn amounts_follow_the_currency_exponent() {
        assert_eq!(parse_amount("119.5", "EUR"), Ok(11950));
        assert_eq!(parse_amount("20", "EUR"), Ok(2000));
        assert_eq!(parse_amount("1500", "JPY"), Ok(1500));
        assert_eq!(parse_amount("1500.00", "JPY"), Ok(1500));
        assert_eq!(parse_amount("1.234", "KWD"), Ok(1234));
        assert!(parse_amount("1.005", "EUR").is_err());
        assert!(parse_amount("-5.00", "EUR").is_err());
        assert!(parse_amount("1e5", "EUR").is_err());
        assert!(parse_amount("9999999999999999", "EUR").is_err());
    }

    #[test]
    fn hostile_and_broken_documents_are_refused_with_their_reason() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document><BkToCstmrStmt><Stmt><Ntry><Amt Ccy="EUR">1</Amt><AddtlNtryInf>&x;</AddtlNtryInf></Ntry></Stmt></BkToCstmrStmt></Document>"#;
        assert_eq!(read_all(xxe).unwrap_err(), CamtError::Doctype);
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><Document>&lol2;</Document>"#;
        assert_eq!(read_all(laughs).unwrap_err(), CamtError::Doctype);
        let undefined = r#"<Document><BkToCstmrStmt><Stmt><Id>&nope;</Id></Stmt></BkToCstmrStmt></Document>"#;
        assert_eq!(read_all(undefined).unwrap_err(), CamtError::UndefinedEntity("nope".into()));
        let deep =
            format!("<Document><BkToCstmrStmt>{}{}</BkToCstmrStmt></Document>", "<a>".repeat(120), "</a>".repeat(120));
        assert_eq!(read_all(&deep).unwrap_err(), CamtError::TooDeep);
        assert_eq!(read_all("").unwrap_err(), CamtError::Empty);
        assert_eq!(read_all("  \n ").unwrap_err(), CamtError::Empty);
        let truncated = &V02[..V02.len() / 2];
        assert!(matches!(read_all(truncated).unwrap_err(), CamtError::Malformed { .. }));
        assert!(matches!(read_all("<Document><BkToCstmrStmt></Stmt>").unwrap_err(), CamtError::Malformed { .. }));
        let pain = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.008.001.08"><CstmrDrctDbtInitn><GrpHdr/></CstmrDrctDbtInitn></Document>"#;
        assert!(matches!(read_all(pain).unwrap_err(), CamtError::NotAStatement(m) if m.contains("pain.008")));
        assert!(matches!(read_all("<html><body/></html>").unwrap_err(), CamtError::NotAStatement(_)));
        let bad_amount = V02.replace(">119.00</Amt><CdtDbtInd>", ">11,90</Amt><CdtDbtInd>");
        let e = read_all(&bad_amount).unwrap_err();
        assert!(matches!(e, CamtError::Entry { index: 0, .. }));
        assert!(e.to_string().starts_with("entry 1 (counted from 1): "), "{e}");
        let bad_currency =
            V02.replace(r#"<Amt Ccy="EUR">119.00</Amt><CdtDbtInd>"#, r#"<Amt Ccy="EURO">119.00</Amt><CdtDbtInd>"#);
        assert!(
            matches!(read_all(&bad_currency).unwrap_err(), CamtError::Entry { message, .. } if message.contains("EURO"))
        );
        let no_amount = r#"<Document><BkToCstmrStmt><Stmt><Ntry><CdtDbtInd>CRDT</CdtDbtInd></Ntry></Stmt></BkToCstmrStmt></Document>"#;
        assert!(matches!(read_all(no_amount).unwrap_err(), CamtError::Entry { .. }));
        let long = format!(
            "<Document><BkToCstmrStmt><Stmt><Id>{}</Id></Stmt></BkToCstmrStmt></Document>",
            "x".repeat(MAX_TEXT + 1)
        );
        assert!(matches!(read_all(&long).unwrap_err(), CamtError::Malformed { .. }));
    }

    /// PostFinance's camt.054.001.08 states the amount of an entry only in its transaction.
    #[test]
    fn an_entry_without_its_own_amount_takes_its_transactions() {
        let doc = |txs: &str| {
            format!(
                r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn><Ntfctn><Id>PF1</Id>
                <Ntry><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2027-01-05</Dt></BookgDt><AcctSvcrRef>PF-REF</AcctSvcrRef>
                <NtryDtls>{txs}</NtryDtls></Ntry></Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"#
            )
        };
        let tx = |amount: &str, ccy: &str, ind: &str| {
            format!(
                r#"<TxDtls><Refs><EndToEndId>E2E-{amount}</EndToEndId></Refs><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{ind}</CdtDbtInd></TxDtls>"#
            )
        };
        let one = read_all(&doc(&tx("1692.22", "CHF", "CRDT"))).unwrap().1;
        assert_eq!((one[0].amount, one[0].currency.as_str(), one[0].credit), (169_222, "CHF", true));
        assert_eq!(one[0].transactions[0].amount, Some(169_222));
        let debit = read_all(&doc(&tx("15.00", "EUR", "DBIT"))).unwrap().1;
        assert_eq!((debit[0].amount, debit[0].credit), (1_500, false));
        let two = read_all(&doc(&format!("{}{}", tx("10.00", "EUR", "CRDT"), tx("2.50", "EUR", "DBIT")))).unwrap().1;
        assert_eq!((two[0].amount, two[0].credit), (750, true));
        let mixed = doc(&format!("{}{}", tx("10.00", "EUR", "CRDT"), tx("2.50", "CHF", "CRDT")));
        assert!(
            matches!(read_all(&mixed).unwrap_err(), CamtError::Entry { message, .. } if message.contains("currencies"))
        );
        let none = doc("<TxDtls><Refs><EndToEndId>X</EndToEndId></Refs></TxDtls>");
        assert!(matches!(read_all(&none).unwrap_err(), CamtError::Entry { index: 0, .. }));
    }

    #[test]
    fn a_document_over_the_size_limit_is_refused() {
        use std::io::Read;
        let head = b"<Document><BkToCstmrStmt><Stmt><Id>x</Id>".as_slice();
        let filler = std::io::repeat(b' ').take(MAX_BYTES + 1);
        let input = std::io::BufReader::new(head.chain(filler));
        let r = read(input, |_, _| Ok::<_, CamtError>(()));
        assert_eq!(r.unwrap_err(), CamtError::TooLarge);
    }
}
