//! IBAN validation (ISO 13616: country length table and mod-97 check digits).

/// Lengths of IBANs per country (the SEPA countries and a few others that are common).
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("VA", 22),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    #[error("IBAN may contain only letters and digits")]
    Characters,
    #[error("IBAN country is not supported")]
    Country,
    #[error("IBAN has the wrong length for its country")]
    Length,
    #[error("IBAN check digits are wrong")]
    Checksum,
}

/// Removes spaces and upper-cases, the form in which IBANs are stored.
pub fn normalize(input: &str) -> String {
    input.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase()
}

/// The remainder mod 97 of the IBAN's numeric form (country code and check digits moved to the end).
fn mod97(iban: &str) -> Option<u32> {
    let (head, tail) = iban.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = c.to_digit(36)?;
        rem = if v < 10 { (rem * 10 + v) % 97 } else { (rem * 100 + v) % 97 };
    }
    Some(rem)
}

/// Validates an IBAN and returns its normalized form.
pub fn validate(input: &str) -> Result<String, IbanError> {
    let iban = normalize(input);
    if iban.len() < 5 || !iban.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(IbanError::Characters);
    }
    let country = &iban[..2];
    let len = LENGTHS.iter().find(|(c, _)| *c == country).map(|(_, l)| *l).ok_or(IbanError::Country)?;
    if iban.len() != len {
        return Err(IbanError::Length);
    }
    if !iban[2..4].chars().all(|c| c.is_ascii_digit()) {
        return Err(IbanError::Checksum);
    }
    match mod97(&iban) {
        Some(1) => Ok(iban),
        _ => Err(IbanError::Checksum),
    }
}

/// The EEA: the EU, Iceland, Liechtenstein and Norway. A SEPA transfer to an account outside it
/// (Switzerland, the United Kingdom, Monaco, …) must name the payee's bank by its BIC.
const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT",
    "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// Whether a (valid) IBAN's account is held in the EEA.
pub fn in_eea(iban: &str) -> bool {
    iban.get(..2).is_some_and(|c| EEA.contains(&c))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BicError {
    #[error(
        "a BIC has 8 or 11 characters: 4 letters (bank), 2 letters (country), 2 letters or digits (location), optionally 3 letters or digits (branch)"
    )]
    Format,
}

/// Validates a BIC (ISO 9362) and returns it upper-cased without spaces.
pub fn validate_bic(input: &str) -> Result<String, BicError> {
    let bic = normalize(input);
    let b = bic.as_bytes();
    let ok = (b.len() == 8 || b.len() == 11)
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && b[6..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok { Ok(bic) } else { Err(BicError::Format) }
}

/// Builds an IBAN from a country and a BBAN, computing the check digits.
pub fn with_check_digits(country: &str, bban: &str) -> Option<String> {
    let provisional = format!("{country}00{bban}");
    let rem = mod97(&provisional)?;
    Some(format!("{country}{:02}{bban}", 98 - rem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_good_ibans() {
        assert_eq!(validate("DE89 3704 0044 0532 0130 00").unwrap(), "DE89370400440532013000");
        assert!(validate("GB82WEST12345698765432").is_ok());
        assert!(validate("NL91ABNA0417164300").is_ok());
    }

    #[test]
    fn bad_ibans() {
        assert_eq!(validate("DE89370400440532013001"), Err(IbanError::Checksum));
        assert_eq!(validate("DE8937040044053201300"), Err(IbanError::Length));
        assert_eq!(validate("XX89370400440532013000"), Err(IbanError::Country));
        assert_eq!(validate("DE89-3704"), Err(IbanError::Characters));
    }

    #[test]
    fn bics_and_the_eea() {
        assert_eq!(validate_bic("cobadeff xxx").unwrap(), "COBADEFFXXX");
        assert_eq!(validate_bic("POFICHBE").unwrap(), "POFICHBE");
        for bad in ["", "COBADEF", "COBADEFFXX", "C0BADEFFXXX", "COBADEFF-XX", "COBADEFFXXXX", "ÄOBADEFF"] {
            assert_eq!(validate_bic(bad), Err(BicError::Format), "{bad}");
        }
        assert!(in_eea("DE89370400440532013000") && in_eea("NO9386011117947") && in_eea("LI21088100002324013AA"));
        assert!(
            !in_eea("CH9300762011623852957")
                && !in_eea("GB82WEST12345698765432")
                && !in_eea("MC5811222000010123456789030")
        );
    }

    #[test]
    fn computed_check_digits_validate() {
        let iban = with_check_digits("DE", "370400440532013000").unwrap();
        assert_eq!(iban, "DE89370400440532013000");
    }
}
