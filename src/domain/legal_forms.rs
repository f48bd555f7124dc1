//! Legal forms of German companies, with the identifier each requires (Billie's codes).

use serde::Serialize;
use utoipa::ToSchema;

/// Which identifier a legal form needs for the company to be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequiredInput {
    /// Commercial register number (HR-NR), with its court.
    RegistrationNumber,
    /// VAT identification number (USt-IdNr).
    TaxId,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct LegalForm {
    /// The code to send as `legal_form`.
    pub code: &'static str,
    pub name: &'static str,
    /// The name for English readers.
    pub name_en: &'static str,
    pub required_input: RequiredInput,
    /// Whether the identifier must be given (false: asked for, but optional).
    pub required: bool,
}

const fn lf(
    code: &'static str,
    name: &'static str,
    name_en: &'static str,
    required_input: RequiredInput,
    required: bool,
) -> LegalForm {
    LegalForm { code, name, name_en, required_input, required }
}

use RequiredInput::{RegistrationNumber as HR, TaxId as UST};

pub const LEGAL_FORMS: &[LegalForm] = &[
    lf("10001", "GmbH (Gesellschaft mit beschränkter Haftung)", "GmbH (private limited company)", HR, true),
    lf("90001", "GmbH & Co. KG", "GmbH & Co. KG (limited partnership with a GmbH as general partner)", HR, true),
    lf("6022", "Einzelunternehmer (ohne HR-Eintrag)", "Sole proprietor (not in the commercial register)", UST, true),
    lf(
        "6001",
        "Einzelfirma (im Handelsregister eingetragen)",
        "Sole proprietor (in the commercial register)",
        HR,
        true,
    ),
    lf("3001", "Gewerbebetrieb", "Trade business", UST, true),
    lf("4001", "GbR (Gesellschaft bürgerlichen Rechts)", "GbR (civil-law partnership)", UST, false),
    lf(
        "10201",
        "UG (Unternehmergesellschaft haftungsbeschränkt)",
        "UG (entrepreneurial company, limited liability)",
        HR,
        true,
    ),
    lf("11001", "AG (Aktiengesellschaft)", "AG (stock corporation)", HR, true),
    lf("90101", "AG & Co. KG", "AG & Co. KG", HR, true),
    lf("8001", "KG (Kommanditgesellschaft)", "KG (limited partnership)", HR, true),
    lf("7001", "OHG (Offene Handelsgesellschaft)", "OHG (general partnership)", HR, true),
    lf("18001", "Stiftung", "Foundation", UST, true),
    lf("13001", "e.V. (eingetragener Verein)", "e.V. (registered association)", HR, false),
    lf("12001", "e.G. (eingetragene Genossenschaft)", "eG (registered cooperative)", HR, true),
    lf("10101", "Ltd. (Limited)", "Ltd. (private limited company)", HR, true),
    lf("99998", "Öffentliche Einrichtung", "Public body", HR, false),
    lf("99999", "Sonstige", "Other", HR, false),
];

pub fn find(code: &str) -> Option<&'static LegalForm> {
    LEGAL_FORMS.iter().find(|f| f.code == code)
}

/// A German register number: court register type and number, e.g. `HRB 12345` or `HRB 12345 B`.
pub fn is_register_number(s: &str) -> bool {
    let mut parts = s.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let number = parts.next().unwrap_or("");
    let suffix = parts.next();
    let kind_ok = matches!(kind, "HRA" | "HRB" | "GnR" | "PR" | "VR");
    let number_ok = !number.is_empty() && number.len() <= 8 && number.chars().all(|c| c.is_ascii_digit());
    let suffix_ok = suffix.is_none_or(|x| x.len() <= 2 && x.chars().all(|c| c.is_ascii_uppercase()));
    kind_ok && number_ok && suffix_ok && parts.next().is_none()
}

/// A VAT identification number: German `DE` + 9 digits; other EU countries by general shape.
pub fn is_vat_id(s: &str) -> bool {
    let s = s.trim();
    // Only ASCII can be valid, and checking it first keeps the byte slicing below on char boundaries.
    if !s.is_ascii() {
        return false;
    }
    if let Some(rest) = s.strip_prefix("DE") {
        return rest.len() == 9 && rest.chars().all(|c| c.is_ascii_digit());
    }
    let (cc, rest) = s.split_at(s.len().min(2));
    cc.len() == 2
        && cc.chars().all(|c| c.is_ascii_uppercase())
        && (2..=13).contains(&rest.len())
        && rest.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_register_number("HRB 12345"));
        assert!(is_register_number("HRA 1 B"));
        assert!(!is_register_number("HRX 12345"));
        assert!(!is_register_number("HRB"));
        assert!(!is_register_number("HRB 12a"));
        assert!(is_vat_id("DE123456789"));
        assert!(!is_vat_id("DE12345678"));
        assert!(is_vat_id("ATU12345678"));
        assert!(!is_vat_id("12"));
        assert!(!is_vat_id("Xé1"), "non-ASCII is refused, not sliced inside a character");
        assert!(!is_vat_id("é"));
    }

    #[test]
    fn codes_are_unique() {
        for (i, a) in LEGAL_FORMS.iter().enumerate() {
            assert!(LEGAL_FORMS[i + 1..].iter().all(|b| b.code != a.code));
        }
        assert_eq!(find("10001").map(|f| f.required_input), Some(RequiredInput::RegistrationNumber));
    }
}
