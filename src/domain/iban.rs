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
    fn computed_check_digits_validate() {
        let iban = with_check_digits("DE", "370400440532013000").unwrap();
        assert_eq!(iban, "DE89370400440532013000");
    }
}
