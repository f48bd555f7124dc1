//! Checks netterms' fee invoices with independent validators: PyPI `factur-x` (Akretion) — the
//! Factur-X EN 16931 XSD of the XML, and the extraction of `factur-x.xml` from the PDF — pypdf's
//! strict reader for the file's structure, Exempi (Adobe's XMP toolkit, through PyPI
//! `python-xmp-toolkit`) for the XMP packet, and the official Schematron rules — CEN/TC 434's
//! EN 16931 rules for CII and KoSIT's XRechnung rules, compiled to XSLT in
//! `../shared/validators/einvoice` — run with Saxon (PyPI `saxonche`): every failed assert, fatal
//! or warning, fails the test. `NETTERMS_FACTURX_PYTHON` names a Python with them installed
//! (`.ci/run` makes one). Without it the check says it skipped, unless `NETTERMS_REQUIRE_TOOLS`
//! is set (CI), where it fails.

const CHECK: &str = r#"
import sys
from lxml import etree
import facturx, pypdf
kind, path = sys.argv[1], sys.argv[2]
data = open(path, 'rb').read()
if kind == 'pdf':
    name, xml = facturx.get_xml_from_pdf(data, check_xsd=True)
    assert name == 'factur-x.xml', name
    level = facturx.get_level(etree.fromstring(xml))
    assert level == 'en16931', level
    reader = pypdf.PdfReader(path, strict=True)
    meta = reader.xmp_metadata
    assert meta is not None, 'no XMP'
    raw = meta.rdf_root.toxml()
    assert 'urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#' in raw, 'no fx: XMP'
    assert 'EN 16931' in raw and 'factur-x.xml' in raw, raw[:300]
    assert reader.trailer['/Root'].get('/AF') is not None, 'no /AF'
    # Exempi refuses what Adobe's XMPCore refuses (a duplicate property, code 203, among others).
    from libxmp import XMPMeta
    fx = 'urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#'
    XMPMeta.register_namespace(fx, 'fx')
    XMPMeta.register_namespace('http://www.aiim.org/pdfa/ns/id/', 'pdfaid')
    # The document's own packet (the catalog's /Metadata stream), as Exempi parses it.
    packet = reader.trailer['/Root']['/Metadata'].get_object().get_data().decode('utf-8')
    ours = XMPMeta(xmp_str=packet)
    for ns, prop, want in [(fx, 'ConformanceLevel', 'EN 16931'), (fx, 'DocumentFileName', 'factur-x.xml'),
                           ('http://www.aiim.org/pdfa/ns/id/', 'part', '3')]:
        assert ours.does_property_exist(ns, prop) and ours.get_property(ns, prop) == want, prop
    print(len(reader.pages), 'page(s);', name, level, '; XMP ok')
else:
    facturx.xml_check_xsd(data, flavor='factur-x', level='en16931')
    if len(sys.argv) > 3:
        import re
        from saxonche import PySaxonProcessor
        failed = []
        with PySaxonProcessor(license=False) as p:
            doc = p.parse_xml(xml_file_name=path)
            for sheet in sys.argv[3:]:
                svrl = p.new_xslt30_processor().compile_stylesheet(stylesheet_file=sheet).transform_to_string(xdm_node=doc)
                for m in re.finditer(r'<svrl:failed-assert\b[^>]*>.*?</svrl:failed-assert>', svrl, re.S):
                    rule = re.search(r'\bid="([^"]*)"', m.group(0))
                    text = re.sub(r'<[^>]+>|\s+', ' ', m.group(0)).strip()
                    failed.append(sheet.rsplit('/', 1)[-1] + ' ' + (rule.group(1) if rule else '?') + ': ' + text[:300])
        assert not failed, '\n'.join(failed)
        print('XSD and', len(sys.argv) - 3, 'Schematron rule sets ok')
    else:
        print('XSD ok')
"#;

fn python() -> Option<String> {
    let py = std::env::var("NETTERMS_FACTURX_PYTHON").ok().filter(|p| !p.is_empty());
    if py.is_none() {
        assert!(
            std::env::var("NETTERMS_REQUIRE_TOOLS").is_err(),
            "NETTERMS_REQUIRE_TOOLS is set but NETTERMS_FACTURX_PYTHON (a Python with factur-x) is missing"
        );
        eprintln!("skipped: e-invoice validation needs NETTERMS_FACTURX_PYTHON (a Python with PyPI factur-x)");
    }
    py
}

/// The official Schematron rule sets (XSLT), where this checkout has `../shared` (CI does).
fn schematrons() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/validators/einvoice");
    if !dir.exists() {
        assert!(
            std::env::var("NETTERMS_REQUIRE_FIXTURES").is_err(),
            "NETTERMS_REQUIRE_FIXTURES is set but {} is missing",
            dir.display()
        );
        eprintln!("skipped: the Schematron rules in {} are not there (CI has them)", dir.display());
        return Vec::new();
    }
    ["EN16931-CII-validation.xslt", "xrechnung-cii.xsl"].iter().map(|f| dir.join(f)).collect()
}

fn run(kind: &str, bytes: &[u8], rules: &[std::path::PathBuf]) {
    let Some(py) = python() else { return };
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let out =
        std::process::Command::new(py).arg("-c").arg(CHECK).arg(kind).arg(file.path()).args(rules).output().unwrap();
    assert!(
        out.status.success(),
        "factur-x refused the {kind}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A Factur-X PDF: the XML extracted and valid, the Factur-X XMP as Exempi reads it, a sound file.
pub fn check_pdf(pdf: &[u8]) {
    run("pdf", pdf, &[]);
}

/// A CII XML against the EN 16931 XSD.
pub fn check_xml(xml: &str) {
    run("xml", xml.as_bytes(), &[]);
}

/// One of our CII invoices against the XSD and both official Schematron rule sets (EN 16931 and
/// XRechnung), with no failed assert.
pub fn check_rules(xml: &str) {
    run("xml", xml.as_bytes(), &schematrons());
}

/// The element paths (local names from the root) of a CII document.
pub fn paths(xml: &str) -> std::collections::BTreeSet<String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = std::collections::BTreeSet::new();
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => {
                stack.push(e.local_name().into_inner().to_owned());
                out.insert(stack.join("/"));
            }
            Event::Empty(e) => {
                stack.push(e.local_name().into_inner().to_owned());
                out.insert(stack.join("/"));
                stack.pop();
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// Every element our invoice uses appears, at the same place, in the official samples (but the
/// exemption reasons, see below)
/// (`../shared/fixtures/einvoice`: KoSIT's XRechnung 3.0 test case and the ZUGFeRD EN 16931
/// ones), and those samples pass the same validator ours does.
pub fn compare_with_fixtures(ours: &str) {
    let Some(dir) = crate::helpers::fixtures("einvoice") else { return };
    let mut known = std::collections::BTreeSet::new();
    for name in [
        "xrechnung-3.0-01.01a-cii.xml",
        "xrechnung-einfach.cii.xml",
        "zugferd-en16931-einfach.cii.xml",
        "zugferd-en16931-gutschrift.cii.xml",
        "zugferd-en16931-sepa-prenotification.cii.xml",
        "zugferd-en16931-rechnungskorrektur.cii.xml",
    ] {
        let sample = std::fs::read_to_string(dir.join(name)).unwrap();
        check_xml(&sample);
        known.extend(paths(&sample));
    }
    // The samples are all taxed at the standard rate; reverse charge and "not subject to VAT"
    // must state their exemption reason (BT-120/121, EN 16931 BR-AE-10, BR-O-10) — the XSD checks
    // those, the samples cannot.
    let exemption =
        "CrossIndustryInvoice/SupplyChainTradeTransaction/ApplicableHeaderTradeSettlement/ApplicableTradeTax/";
    for el in ["ExemptionReason", "ExemptionReasonCode"] {
        known.insert(format!("{exemption}{el}"));
    }
    let unknown: Vec<String> = paths(ours).into_iter().filter(|p| !known.contains(p)).collect();
    assert!(unknown.is_empty(), "elements no official sample has: {unknown:?}");
    check_pdf(&std::fs::read(dir.join("zugferd-en16931-einfach.pdf")).unwrap());
}
