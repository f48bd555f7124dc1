//! Secrets: generation, keyed digests (HMAC-SHA-256) and a wrapper that never prints its value.

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distributions::Alphanumeric;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// A secret string whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret's value; call sites are where it is deliberately used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `n` random characters from `[A-Za-z0-9]`, from the operating system's CSPRNG.
pub fn random_alphanumeric(n: usize) -> String {
    rand::rngs::OsRng.sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

/// `[A-Za-z0-9]`, the alphabet of generated secrets.
pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The server's key for keyed digests. Derived sub-keys separate the purposes it serves.
#[derive(Clone)]
pub struct Keyring {
    key: Vec<u8>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(***)")
    }
}

/// What a keyed digest is for; each purpose gets its own derived key.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// Digest of a PSP API password, stored to check Basic auth.
    CredentialSecret,
    /// Digest of a one-time password link token, stored to find the link.
    PasswordLinkToken,
    /// Derivation of a PSP password from its link token.
    PasswordFromToken,
    /// Digest of an idempotency request fingerprint.
    Fingerprint,
    /// Derivation of a webhook signing secret from its stored seed.
    WebhookSecret,
    /// Digests of admin tokens, compared in constant time whatever their lengths.
    AdminToken,
    /// The secret part of a checkout session's client secret, derived from the session id.
    SessionSecret,
    /// A SEPA mandate reference, derived from its checkout session (and unlinkable to it).
    MandateReference,
    /// Digests of the buyer portal's one-time sign-in tokens.
    PortalLink,
    /// Digests of the buyer portal's session ids.
    PortalSession,
    /// Digests of operators' one-time set-password link tokens.
    OperatorLink,
    /// Digests of the console's session ids.
    OperatorSession,
    /// Digests of operators' admin API tokens (`ntop_…`).
    OperatorToken,
    /// Digests of operators' recovery codes.
    RecoveryCode,
    /// Derivation of an operator's TOTP secret from its stored seed.
    TotpSecret,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::CredentialSecret => b"netterms/credential-secret/v1",
            Purpose::PasswordLinkToken => b"netterms/password-link-token/v1",
            Purpose::PasswordFromToken => b"netterms/password-from-token/v1",
            Purpose::Fingerprint => b"netterms/fingerprint/v1",
            Purpose::WebhookSecret => b"netterms/webhook-secret/v1",
            Purpose::AdminToken => b"netterms/admin-token/v1",
            Purpose::SessionSecret => b"netterms/session-secret/v1",
            Purpose::MandateReference => b"netterms/mandate-reference/v1",
            Purpose::PortalLink => b"netterms/portal-link/v1",
            Purpose::PortalSession => b"netterms/portal-session/v1",
            Purpose::OperatorLink => b"netterms/operator-link/v1",
            Purpose::OperatorSession => b"netterms/operator-session/v1",
            Purpose::OperatorToken => b"netterms/operator-token/v1",
            Purpose::RecoveryCode => b"netterms/recovery-code/v1",
            Purpose::TotpSecret => b"netterms/totp-secret/v1",
        }
    }
}

impl Keyring {
    pub fn new(key: &[u8]) -> Keyring {
        Keyring { key: key.to_vec() }
    }

    fn mac(&self, purpose: Purpose) -> HmacSha256 {
        // HMAC accepts keys of any length; construction cannot fail.
        let mut outer = <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        outer.update(purpose.label());
        let sub = outer.finalize().into_bytes();
        <HmacSha256 as Mac>::new_from_slice(&sub).unwrap_or_else(|_| unreachable!())
    }

    /// HMAC-SHA-256 of `data` under the purpose's key.
    pub fn digest(&self, purpose: Purpose, data: &[u8]) -> [u8; 32] {
        let mut m = self.mac(purpose);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Checks `data` against a stored digest in constant time.
    pub fn verify(&self, purpose: Purpose, data: &[u8], stored: &[u8]) -> bool {
        let d = self.digest(purpose, data);
        d.ct_eq(stored).into()
    }

    /// The PSP password that belongs to a link token: 40 characters of `[A-Za-z0-9]`, derived with
    /// the server key, so neither the password nor anything that yields it without the key is stored.
    pub fn password_for_token(&self, token: &str) -> Secret {
        Secret(self.derive(Purpose::PasswordFromToken, token.as_bytes(), ALPHANUMERIC, 40))
    }

    /// `len` characters of `alphabet` (at most 128 letters) derived from `input` under the
    /// purpose's key: unpredictable without the key, the same every time with it.
    pub fn derive(&self, purpose: Purpose, input: &[u8], alphabet: &[u8], len: usize) -> String {
        let n = alphabet.len().clamp(1, 128);
        // Rejection sampling keeps the characters uniform: only bytes below a multiple of n count.
        let limit = 256 - 256 % n;
        let mut out = String::with_capacity(len);
        let mut counter: u8 = 0;
        while out.len() < len {
            let mut m = self.mac(purpose);
            m.update(input);
            m.update(&[counter]);
            for b in m.finalize().into_bytes() {
                if usize::from(b) < limit && out.len() < len {
                    out.push(char::from(alphabet[usize::from(b) % n]));
                }
            }
            counter = counter.wrapping_add(1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_masked() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    #[test]
    fn passwords_are_derived_deterministically_and_differ_by_key() {
        let a = Keyring::new(b"key-a");
        let b = Keyring::new(b"key-b");
        let pa = a.password_for_token("tok");
        assert_eq!(pa.expose().len(), 40);
        assert!(pa.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(pa, a.password_for_token("tok"));
        assert_ne!(pa, b.password_for_token("tok"));
        assert_ne!(pa, a.password_for_token("tok2"));
    }

    #[test]
    fn verify_is_keyed() {
        let k = Keyring::new(b"k");
        let d = k.digest(Purpose::CredentialSecret, b"pw");
        assert!(k.verify(Purpose::CredentialSecret, b"pw", &d));
        assert!(!k.verify(Purpose::CredentialSecret, b"pw2", &d));
        assert!(!k.verify(Purpose::PasswordLinkToken, b"pw", &d));
        assert!(!Keyring::new(b"k2").verify(Purpose::CredentialSecret, b"pw", &d));
    }
}
