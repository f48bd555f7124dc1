//! The EPC069-12 "GiroCode" payload: a SEPA credit transfer that banking apps read from a QR code
//! (version 002, UTF-8, error correction level M).

/// Builds the payload; `None` when the transfer cannot be expressed (not in euro, amount out of
/// the standard's range 0.01–999,999,999.99, or a field too long).
pub fn payload(bic: &str, name: &str, iban: &str, currency: &str, minor: i64, reference: &str) -> Option<String> {
    if currency != "EUR" || !(1..=99_999_999_999).contains(&minor) {
        return None;
    }
    let name: String = name.chars().take(70).collect();
    if bic.len() > 11 || iban.len() > 34 || reference.len() > 35 {
        return None;
    }
    // Lines: service tag, version, character set (1 = UTF-8), identification, BIC, name, IBAN,
    // amount, purpose, structured reference (ISO 11649 RF), unstructured remittance, information.
    let lines = [
        "BCD".to_owned(),
        "002".to_owned(),
        "1".to_owned(),
        "SCT".to_owned(),
        bic.to_owned(),
        name,
        iban.replace(' ', ""),
        format!("EUR{}.{:02}", minor / 100, minor % 100),
        String::new(),
        reference.to_owned(),
        String::new(),
    ];
    let text = lines.join("\n");
    (text.len() <= 331).then_some(text)
}

/// The QR code's modules, row by row (`true`: dark), and its width.
pub fn qr(payload: &str) -> Option<(Vec<bool>, usize)> {
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M).ok()?;
    let width = code.width();
    let modules = code.to_colors().into_iter().map(|c| c == qrcode::Color::Dark).collect();
    Some((modules, width))
}

/// A QR code's modules as an SVG image with a quiet zone of four modules.
pub fn svg(modules: &[bool], width: usize) -> String {
    use std::fmt::Write as _;
    let quiet = 4;
    let size = width + 2 * quiet;
    let mut path = String::new();
    for (i, dark) in modules.iter().enumerate() {
        if *dark {
            let _ = write!(path, "M{} {}h1v1h-1z", i % width + quiet, i / width + quiet);
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_follows_epc069_12() {
        let p = payload("NTRMDEB1XXX", "netterms", "DE31 1001 0010 2438 6440 14", "EUR", 11_900, "RF18539007547034")
            .unwrap();
        assert_eq!(
            p,
            "BCD\n002\n1\nSCT\nNTRMDEB1XXX\nnetterms\nDE31100100102438644014\nEUR119.00\n\nRF18539007547034\n"
        );
        assert!(payload("X", "n", "DE31", "CHF", 100, "RF18").is_none());
        assert!(payload("X", "n", "DE31", "EUR", 0, "RF18").is_none());
        let (m, w) = qr(&p).unwrap();
        assert_eq!(m.len(), w * w);
    }
}
