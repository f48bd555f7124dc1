//! Validates the SEPA files netterms writes against the official XSDs with an independent tool:
//! `xmllint` (Debian's libxml2-utils) and the schemas the PyPI package `sepaxml` ships, found in
//! `NETTERMS_SEPA_XSD_DIR` (`.ci/run` installs both). Without them the check says it skipped,
//! unless `NETTERMS_REQUIRE_TOOLS` is set (CI), where it fails.
//!
//! Every file also passes the rules banks apply beyond the XSD (EPC rulebooks, DK
//! "Spezifikation der Datenformate"), checked here without any tool: `MsgId`, `PmtInfId` and
//! `EndToEndId` unique (a message id never reused by another file), at most 35 characters and not
//! ending in a bare `-`; collection dates on TARGET2 business days; a BIC for every account
//! outside the EEA.

use std::collections::HashMap;
use std::sync::Mutex;

/// Every message id seen in this test process, with the end-to-end ids of its file.
static MESSAGES: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

/// The texts of every `<tag>` element (no attributes, no nesting of the same tag).
fn values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(&open).skip(1).filter_map(|rest| rest.split(&close).next()).collect()
}

/// TARGET2 closing days 2026–2030 besides weekends, written out by hand (not computed like the
/// code under test computes them): 1 January, Good Friday, Easter Monday, 1 May, 25/26 December.
const CLOSED: &[&str] = &[
    "2026-01-01",
    "2026-04-03",
    "2026-04-06",
    "2026-05-01",
    "2026-12-25",
    "2026-12-26",
    "2027-01-01",
    "2027-03-26",
    "2027-03-29",
    "2027-05-01",
    "2027-12-25",
    "2027-12-26",
    "2028-01-01",
    "2028-04-14",
    "2028-04-17",
    "2028-05-01",
    "2028-12-25",
    "2028-12-26",
    "2029-01-01",
    "2029-03-30",
    "2029-04-02",
    "2029-05-01",
    "2029-12-25",
    "2029-12-26",
    "2030-01-01",
    "2030-04-19",
    "2030-04-22",
    "2030-05-01",
    "2030-12-25",
    "2030-12-26",
];

pub fn is_target2_business_day(day: &str) -> bool {
    use chrono::Datelike;
    let d: chrono::NaiveDate = day.parse().unwrap_or_else(|_| panic!("not a date: {day}"));
    assert!((2026..=2030).contains(&d.year()), "extend CLOSED to cover {day}");
    !matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) && !CLOSED.contains(&day)
}

/// The day a bank collects a debit due on `due`: that day or the next business day.
pub fn collection_day(due: chrono::NaiveDate) -> chrono::NaiveDate {
    let mut d = due;
    while !is_target2_business_day(&d.to_string()) {
        d += chrono::Duration::days(1);
    }
    d
}

const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT",
    "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The rules beyond the XSD (see the module's head).
pub fn check_rules(xml: &str) {
    let ids = |tag: &str| {
        let v = values(xml, tag);
        for id in &v {
            assert!(!id.is_empty() && id.len() <= 35 && !id.ends_with('-'), "{tag} {id:?}: {xml}");
        }
        let mut seen = std::collections::HashSet::new();
        for id in &v {
            assert!(seen.insert(*id), "{tag} {id} twice in one file: {xml}");
        }
        v
    };
    let msg = ids("MsgId");
    assert_eq!(msg.len(), 1, "one message id: {xml}");
    ids("PmtInfId");
    let mut e2e: Vec<String> = ids("EndToEndId").into_iter().map(str::to_owned).collect();
    e2e.sort();
    {
        // The same file fetched again names the same transactions; another file may not reuse the id.
        let mut seen = MESSAGES.lock().unwrap();
        let seen = seen.get_or_insert_with(HashMap::new);
        if let Some(before) = seen.insert(msg[0].to_owned(), e2e.clone()) {
            assert_eq!(before, e2e, "MsgId {} names two different files", msg[0]);
        }
    }
    for day in values(xml, "ReqdColltnDt") {
        assert!(is_target2_business_day(day), "collection on {day}, not a TARGET2 business day: {xml}");
    }
    // A transaction with the other party's account outside the EEA names that party's bank.
    for (block, agent) in [("CdtTrfTxInf", "CdtrAgt"), ("DrctDbtTxInf", "DbtrAgt")] {
        for tx in values(xml, block) {
            for iban in values(tx, "IBAN") {
                if !EEA.contains(&&iban[..2]) {
                    let named = values(tx, agent).iter().any(|a| a.contains("<BICFI>"));
                    assert!(named, "account {iban} outside the EEA without its bank's BIC in {agent}: {xml}");
                }
            }
        }
    }
}

pub fn validate(xml: &str, xsd: &str) {
    check_rules(xml);
    let dir = std::env::var("NETTERMS_SEPA_XSD_DIR").ok().filter(|d| !d.is_empty());
    let xmllint = std::process::Command::new("xmllint").arg("--version").output().is_ok();
    let Some(dir) = dir.filter(|_| xmllint) else {
        assert!(
            std::env::var("NETTERMS_REQUIRE_TOOLS").is_err(),
            "NETTERMS_REQUIRE_TOOLS is set but xmllint or NETTERMS_SEPA_XSD_DIR is missing"
        );
        eprintln!("skipped: XSD validation of {xsd} needs xmllint and NETTERMS_SEPA_XSD_DIR (the sepaxml schemas)");
        return;
    };
    let schema = std::path::Path::new(&dir).join(xsd);
    assert!(schema.exists(), "{} is missing", schema.display());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(&schema)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{xsd}: {}\n{}\n{xml}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}
