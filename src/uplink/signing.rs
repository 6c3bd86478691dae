//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), for the box that signs
//! and for receivers that verify (see docs/api.md "Verifying webhooks" and
//! `examples/verify_webhook.rs`).
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` is
//! `v1,` + base64(HMAC-SHA256(key, signed content)). The key is the secret's bytes: for a
//! secret of the form `whsec_<base64>` the base64-decoded part, otherwise the secret string's
//! UTF-8 bytes. Several space-separated signatures may be sent (secret rotation); one valid
//! `v1` signature is enough.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `webhook-timestamp` may be from the receiver's clock (5 minutes, as Standard
/// Webhooks recommends): older deliveries are refused as possible replays.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not usable: {0}")]
    Secret(String),
    #[error("`webhook-timestamp` is not a Unix time in seconds: `{0}`")]
    BadTimestamp(String),
    #[error("`webhook-timestamp` is {skew_secs} s away from now (tolerance {tolerance_secs} s): stale or replayed")]
    Stale { skew_secs: i64, tolerance_secs: i64 },
    #[error("no `v1` signature in `webhook-signature` matches the body")]
    BadSignature,
}

/// The HMAC key of a secret: `whsec_<base64>` is decoded, anything else is used as is.
pub fn key_bytes(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => match STANDARD.decode(b64) {
            Ok(k) if !k.is_empty() => Ok(k),
            Ok(_) => Err("`whsec_` secret has an empty key".into()),
            Err(e) => Err(format!("`whsec_` secret is not valid base64: {e}")),
        },
        None if secret.is_empty() => Err("secret is empty".into()),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` header value for one delivery: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body).finalize().into_bytes()))
}

/// Verifies one delivery as a receiver should: `secret` as configured on the box, the
/// three headers as received, the raw body bytes (before any JSON parsing), and the
/// receiver's clock `now_unix` (seconds). Returns Ok only if the timestamp is within
/// `tolerance_secs` of now and a `v1` signature matches (compared in constant time).
pub fn verify(
    secret: &str,
    webhook_id: &str,
    webhook_timestamp: &str,
    webhook_signature: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let key = key_bytes(secret).map_err(VerifyError::Secret)?;
    let ts: i64 = webhook_timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(webhook_timestamp.to_string()))?;
    let skew = now_unix.saturating_sub(ts);
    // `abs_diff`: `skew.abs()` overflows when the subtraction saturates at `i64::MIN`.
    if now_unix.abs_diff(ts) > tolerance_secs.max(0).unsigned_abs() {
        return Err(VerifyError::Stale { skew_secs: skew, tolerance_secs });
    }
    for sig in webhook_signature.split_whitespace() {
        let Some(b64) = sig.strip_prefix("v1,") else { continue };
        let Ok(given) = STANDARD.decode(b64) else { continue };
        if mac(&key, webhook_id, ts, body).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key_bytes(secret).unwrap(), id, ts, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify(secret, id, "1614265330", &sig, body, ts + 10, DEFAULT_TOLERANCE_SECS),
            Ok(())
        );
    }

    /// Found by tests/fuzz.rs: a skew that saturates at `i64::MIN` panicked in `abs()`.
    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let secret = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";
        for (ts, now) in [(i64::MAX, i64::MIN), (i64::MIN, i64::MAX), (i64::MAX, -1)] {
            let r = verify(secret, "x", &ts.to_string(), "v1,AAAA", b"{}", now, 300);
            assert!(matches!(r, Err(VerifyError::Stale { .. })), "{ts} at {now}: {r:?}");
        }
    }

    #[test]
    fn rejects_tampering_staleness_and_wrong_secrets() {
        let secret = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";
        let key = key_bytes(secret).unwrap();
        let body = br#"{"id":"x","seq":1}"#;
        let sig = sign(&key, "x", 1000, body);
        assert_eq!(verify(secret, "x", "1000", &sig, body, 1000, 300), Ok(()));
        assert_eq!(
            verify(secret, "x", "1000", &sig, br#"{"id":"x","seq":2}"#, 1000, 300),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(secret, "y", "1000", &sig, body, 1000, 300),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(secret, "x", "1001", &sig, body, 1000, 300),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(secret, "x", "1000", &sig, body, 1000 + 301, 300),
            Err(VerifyError::Stale { skew_secs: 301, tolerance_secs: 300 })
        );
        assert!(matches!(
            verify(secret, "x", "soon", &sig, body, 1000, 300),
            Err(VerifyError::BadTimestamp(_))
        ));
        assert_eq!(
            verify("whsec_b3RoZXI=", "x", "1000", &sig, body, 1000, 300),
            Err(VerifyError::BadSignature)
        );
        // A plain (non-whsec) secret is used as its bytes; rotation: any one valid signature passes.
        let plain = sign(b"plain secret", "x", 1000, body);
        assert_eq!(
            verify("plain secret", "x", "1000", &format!("v1,AAAA {plain}"), body, 1000, 300),
            Ok(())
        );
        assert!(key_bytes("whsec_not base64!").is_err());
    }
}
