//! Standard Webhooks: signatures over `id.timestamp.body`, their verification, and the retry
//! schedule. Pure functions; delivery lives in the service layer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Duration;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a receiver tolerates a `webhook-timestamp` from its own clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Delays before attempts 2, 3, …: about three days in all. Attempt 1 is immediate.
pub const RETRY_DELAYS_SECS: &[i64] =
    &[5, 30, 2 * 60, 10 * 60, 30 * 60, 60 * 60, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 24 * 3600];

/// The delay after failed attempt `attempt` (1-based), with ±20 % jitter from `jitter` in [0, 1);
/// `None` when the schedule is exhausted.
pub fn retry_delay(attempt: i64, jitter: f64) -> Option<Duration> {
    let idx = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let base = *RETRY_DELAYS_SECS.get(idx)?;
    // Jitter in whole milliseconds; the factor is 0.8..1.2.
    let base_ms = base * 1000;
    let spread = base_ms / 5;
    let offset = ((jitter.clamp(0.0, 1.0) * 2.0 - 1.0) * spread as f64) as i64;
    Some(Duration::milliseconds(base_ms + offset))
}

/// A signing secret as shown to PSPs: `whsec_` + base64 of the key bytes.
pub fn format_secret(key: &[u8]) -> String {
    format!("whsec_{}", B64.encode(key))
}

/// The key bytes of a `whsec_…` secret.
pub fn parse_secret(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_")?).ok()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is missing or not a number")]
    BadTimestamp,
    #[error("webhook-timestamp is too far from now")]
    TimestampOutOfTolerance,
    #[error("no signature matches")]
    NoMatch,
    #[error("the secret is not a whsec_ secret")]
    BadSecret,
}

/// Verifies a delivery as a receiver would: the timestamp within [`TOLERANCE_SECS`] of `now`,
/// and one of the space-separated `v1,` signatures matching.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let key = parse_secret(secret).ok_or(VerifyError::BadSecret)?;
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    let expected = sign(&key, id, ts, body);
    let matched = signatures
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
    if matched { Ok(()) } else { Err(VerifyError::NoMatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = parse_secret(secret).unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &sig, body, 1614265330).is_ok());
    }

    #[test]
    fn verification_rejects_tampering_wrong_secret_and_old_timestamps() {
        let secret = format_secret(b"0123456789abcdef0123456789abcdef");
        let other = format_secret(b"fedcba9876543210fedcba9876543210");
        let key = parse_secret(&secret).unwrap();
        let sig = sign(&key, "evt_1", 1_000_000, b"{}");
        assert_eq!(verify(&secret, "evt_1", "1000000", &sig, b"{ }", 1_000_000), Err(VerifyError::NoMatch));
        assert_eq!(verify(&other, "evt_1", "1000000", &sig, b"{}", 1_000_000), Err(VerifyError::NoMatch));
        assert_eq!(verify(&secret, "evt_2", "1000000", &sig, b"{}", 1_000_000), Err(VerifyError::NoMatch));
        assert_eq!(
            verify(&secret, "evt_1", "1000000", &sig, b"{}", 1_000_301),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(verify(&secret, "evt_1", "x", &sig, b"{}", 1_000_000), Err(VerifyError::BadTimestamp));
        // Several signatures (rotation): any one may match.
        let both = format!("v1,AAAA {sig}");
        assert!(verify(&secret, "evt_1", "1000000", &both, b"{}", 1_000_100).is_ok());
    }

    #[test]
    fn schedule_spans_about_three_days_with_bounded_jitter() {
        let total: i64 = RETRY_DELAYS_SECS.iter().sum();
        assert!((2 * 86_400..4 * 86_400).contains(&total), "{total}");
        assert_eq!(retry_delay(1, 0.5), Some(Duration::seconds(5)));
        assert_eq!(retry_delay(1, 0.0), Some(Duration::milliseconds(4000)));
        assert_eq!(retry_delay(1, 0.999_999), Some(Duration::milliseconds(5999)));
        let n = i64::try_from(RETRY_DELAYS_SECS.len()).unwrap();
        assert!(retry_delay(n, 0.5).is_some());
        assert_eq!(retry_delay(n + 1, 0.5), None);
        assert_eq!(retry_delay(0, 0.5), None);
    }
}
