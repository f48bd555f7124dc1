//! Bank statements for tests, written in the dialects of the real files in `shared/fixtures`:
//! camt.053.001.02 as Dutch and Belgian banks write it (`Sts` as text, `Dbtr/Nm`,
//! `AmtDtls/TxAmt`), camt.053/054.001.08 (`Sts/Cd`, `Dbtr/Pty/Nm`, a transaction's own `Amt` and
//! `CdtDbtInd`, `BICFI`), batch entries (`Btch/NbOfTxs`) and returns (`RtrInf/Rsn/Cd`). They carry
//! our own RF references, virtual IBANs and end-to-end ids.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V02,
    V08,
}

#[derive(Clone, Default)]
pub struct Tx {
    pub amount: Option<i64>,
    pub e2e: Option<String>,
    pub mandate: Option<String>,
    pub debtor: Option<String>,
    pub debtor_iban: Option<String>,
    pub creditor_iban: Option<String>,
    pub rf: Option<String>,
    pub text: Option<String>,
    pub return_code: Option<String>,
}

#[derive(Clone)]
pub struct Ntry {
    pub bank_ref: Option<String>,
    pub amount: i64,
    pub credit: bool,
    pub status: &'static str,
    pub batch: Option<u32>,
    pub txs: Vec<Tx>,
}

impl Ntry {
    pub fn credit(bank_ref: &str, amount: i64, tx: Tx) -> Ntry {
        Ntry { bank_ref: Some(bank_ref.into()), amount, credit: true, status: "BOOK", batch: None, txs: vec![tx] }
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn tx_xml(d: Dialect, t: &Tx, credit: bool) -> String {
    let mut x = String::from("<TxDtls><Refs>");
    x.push_str("<AcctSvcrRef>NONREF</AcctSvcrRef>");
    if let Some(e) = &t.e2e {
        x.push_str(&format!("<EndToEndId>{e}</EndToEndId>"));
    } else {
        x.push_str("<EndToEndId>NOTPROVIDED</EndToEndId>");
    }
    if let Some(m) = &t.mandate {
        x.push_str(&format!("<MndtId>{m}</MndtId>"));
    }
    x.push_str("</Refs>");
    if let Some(a) = t.amount {
        match d {
            Dialect::V02 => x.push_str(&format!(
                "<AmtDtls><InstdAmt><Amt Ccy=\"EUR\">{0}</Amt></InstdAmt><TxAmt><Amt Ccy=\"EUR\">{0}</Amt></TxAmt></AmtDtls>",
                money(a)
            )),
            Dialect::V08 => x.push_str(&format!(
                "<Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>{}</CdtDbtInd>",
                money(a),
                if credit { "CRDT" } else { "DBIT" }
            )),
        }
    }
    x.push_str("<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>");
    x.push_str("<RltdPties>");
    if let Some(n) = &t.debtor {
        match d {
            Dialect::V02 => x.push_str(&format!("<Dbtr><Nm>{n}</Nm><PstlAdr><Ctry>DE</Ctry></PstlAdr></Dbtr>")),
            Dialect::V08 => x.push_str(&format!("<Dbtr><Pty><Nm>{n}</Nm></Pty></Dbtr>")),
        }
    }
    if let Some(i) = &t.debtor_iban {
        x.push_str(&format!("<DbtrAcct><Id><IBAN>{i}</IBAN></Id></DbtrAcct>"));
    }
    if let Some(i) = &t.creditor_iban {
        x.push_str(&format!("<Cdtr><Nm>netterms</Nm></Cdtr><CdtrAcct><Id><IBAN>{i}</IBAN></Id></CdtrAcct>"));
    }
    x.push_str("</RltdPties>");
    let bic = if d == Dialect::V02 { "BIC" } else { "BICFI" };
    x.push_str(&format!("<RltdAgts><DbtrAgt><FinInstnId><{bic}>COBADEFFXXX</{bic}></FinInstnId></DbtrAgt></RltdAgts>"));
    if t.rf.is_some() || t.text.is_some() {
        x.push_str("<RmtInf>");
        if let Some(u) = &t.text {
            x.push_str(&format!("<Ustrd>{u}</Ustrd>"));
        }
        if let Some(r) = &t.rf {
            x.push_str(&format!(
                "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>ISO</Issr></Tp><Ref>{r}</Ref></CdtrRefInf></Strd>"
            ));
        }
        x.push_str("</RmtInf>");
    }
    if let Some(c) = &t.return_code {
        x.push_str(&format!("<RtrInf><Rsn><Cd>{c}</Cd></Rsn><AddtlInf>Rueckgabe</AddtlInf></RtrInf>"));
    }
    x.push_str("</TxDtls>");
    x
}

fn entries_xml(d: Dialect, entries: &[Ntry]) -> String {
    let mut x = String::new();
    for (i, e) in entries.iter().enumerate() {
        x.push_str("<Ntry>");
        x.push_str(&format!("<NtryRef>{}</NtryRef>", i + 1));
        x.push_str(&format!(
            "<Amt Ccy=\"EUR\">{}</Amt><CdtDbtInd>{}</CdtDbtInd>",
            money(e.amount),
            if e.credit { "CRDT" } else { "DBIT" }
        ));
        match d {
            Dialect::V02 => x.push_str(&format!("<Sts>{}</Sts>", e.status)),
            Dialect::V08 => x.push_str(&format!("<Sts><Cd>{}</Cd></Sts>", e.status)),
        }
        x.push_str("<BookgDt><Dt>2026-03-02</Dt></BookgDt><ValDt><Dt>2026-03-02</Dt></ValDt>");
        if let Some(r) = &e.bank_ref {
            x.push_str(&format!("<AcctSvcrRef>{r}</AcctSvcrRef>"));
        }
        x.push_str("<BkTxCd><Prtry><Cd>NTRF+166+00931</Cd><Issr>DK</Issr></Prtry></BkTxCd><NtryDtls>");
        if let Some(n) = e.batch {
            x.push_str(&format!("<Btch><NbOfTxs>{n}</NbOfTxs></Btch>"));
        }
        for t in &e.txs {
            x.push_str(&tx_xml(d, t, e.credit));
        }
        x.push_str("</NtryDtls><AddtlNtryInf>SEPA Gutschrift</AddtlNtryInf></Ntry>");
    }
    x
}

const ACCOUNT: &str = "DE02120300000000202051";

/// A camt.053 statement of netterms' account.
pub fn camt053(d: Dialect, id: &str, entries: &[Ntry]) -> String {
    let v = if d == Dialect::V02 { "02" } else { "08" };
    let bal = |cd: &str| {
        format!(
            "<Bal><Tp><CdOrPrtry><Cd>{cd}</Cd></CdOrPrtry></Tp><Amt Ccy=\"EUR\">1000.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>\
             <Dt><Dt>2026-03-02</Dt></Dt></Bal>"
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.{v}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><BkToCstmrStmt><GrpHdr><MsgId>{id}</MsgId>\
         <CreDtTm>2026-03-02T18:00:00</CreDtTm></GrpHdr><Stmt><Id>{id}</Id><ElctrncSeqNb>1</ElctrncSeqNb>\
         <CreDtTm>2026-03-02T18:00:00</CreDtTm><Acct><Id><IBAN>{ACCOUNT}</IBAN></Id><Ccy>EUR</Ccy>\
         <Svcr><FinInstnId><BIC>NTRMDEB1XXX</BIC></FinInstnId></Svcr></Acct>{}{}{}</Stmt></BkToCstmrStmt></Document>\n",
        bal("OPBD"),
        bal("CLBD"),
        entries_xml(d, entries)
    )
}

/// A camt.054 notification of netterms' account (version .08).
pub fn camt054(id: &str, entries: &[Ntry]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.054.001.08\">\
         <BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>{id}</MsgId><CreDtTm>2026-03-02T12:00:00+01:00</CreDtTm></GrpHdr>\
         <Ntfctn><Id>{id}</Id><Acct><Id><IBAN>{ACCOUNT}</IBAN></Id></Acct>{}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>\n",
        entries_xml(Dialect::V08, entries)
    )
}
