//! Time-based one-time passwords (RFC 6238: SHA-1, six digits, 30-second steps), as every
//! authenticator app reads them from an `otpauth://` QR code. Pure: the time is given.

use totp_rs::{Algorithm, Secret, TOTP};

pub const STEP_SECS: i64 = 30;
/// Steps before and after the current one that are accepted (clocks drift; typing takes time).
pub const SKEW_STEPS: i64 = 1;

fn totp(secret: &[u8]) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, 6, SKEW_STEPS as u8, STEP_SECS as u64, secret.to_vec())
}

/// The time step of a Unix time.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code of a time step.
pub fn code_at(secret: &[u8], step: i64) -> String {
    totp(secret).generate(u64::try_from(step.max(0) * STEP_SECS).unwrap_or(0))
}

/// The step `code` belongs to, if it is the code of a step within the skew of `unix_secs` and
/// later than `last_step` (a code accepted once is never accepted again, nor an older one).
pub fn verify(secret: &[u8], code: &str, unix_secs: i64, last_step: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(unix_secs);
    (now - SKEW_STEPS..=now + SKEW_STEPS).filter(|s| last_step.is_none_or(|l| *s > l)).find(|s| {
        use subtle::ConstantTimeEq;
        bool::from(code_at(secret, *s).as_bytes().ct_eq(code.as_bytes()))
    })
}

/// The secret in base32, as an authenticator app shows and takes it.
pub fn base32(secret: &[u8]) -> String {
    Secret::Raw(secret.to_vec()).to_encoded().to_string()
}

/// The secret of a base32 key, as typed from an authenticator app's screen (spaces ignored).
pub fn from_base32(key: &str) -> Option<Vec<u8>> {
    let k: String = key.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    Secret::Encoded(k).to_bytes().ok()
}

/// The `otpauth://` URI of a secret, for the QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B (SHA-1, the last six of the eight digits).
    #[test]
    fn codes_are_those_of_the_rfc() {
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, step_of(59)), "287082");
        assert_eq!(code_at(secret, step_of(1_111_111_109)), "081804");
        assert_eq!(code_at(secret, step_of(1_234_567_890)), "005924");
        assert_eq!(code_at(secret, step_of(2_000_000_000)), "279037");
    }

    #[test]
    fn a_code_is_accepted_once_within_the_skew() {
        let secret = b"an example secret of 20b";
        let t = 1_800_000_000;
        let code = code_at(secret, step_of(t));
        let step = verify(secret, &code, t, None).unwrap();
        assert_eq!(step, step_of(t));
        assert_eq!(verify(secret, &code, t, Some(step)), None, "replayed");
        assert_eq!(verify(secret, &code, t + 30, None), Some(step), "one step late");
        assert_eq!(verify(secret, &code, t + 90, None), None, "too late");
        let next = code_at(secret, step_of(t) + 1);
        assert_eq!(verify(secret, &next, t, Some(step)), Some(step + 1), "the next step's code");
        assert_eq!(verify(secret, "12345", t, None), None);
        assert_eq!(verify(secret, "abcdef", t, None), None);
        assert_eq!(verify(secret, &format!("{} {}", &code[..3], &code[3..]), t, None), Some(step));
    }

    #[test]
    fn the_uri_names_issuer_account_and_secret() {
        let u = otpauth_uri("netterms sandbox", "anna@ops.example", b"12345678901234567890");
        assert!(
            u.starts_with(
                "otpauth://totp/netterms%20sandbox:anna%40ops.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            ),
            "{u}"
        );
        assert!(u.contains("&issuer=netterms%20sandbox&"));
        assert_eq!(from_base32("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ").unwrap(), b"12345678901234567890");
    }
}
