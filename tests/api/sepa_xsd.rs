//! Validates the SEPA files netterms writes against the official XSDs with an independent tool:
//! `xmllint` (Debian's libxml2-utils) and the schemas the PyPI package `sepaxml` ships, found in
//! `NETTERMS_SEPA_XSD_DIR` (`.ci/run` installs both). Without them the check says it skipped,
//! unless `NETTERMS_REQUIRE_TOOLS` is set (CI), where it fails.

pub fn validate(xml: &str, xsd: &str) {
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
