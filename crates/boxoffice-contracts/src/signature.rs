//! Timestamped webhook signatures, the scheme Stripe made common: the header
//! `t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{raw body}")}`,
//! checked in constant time and refused outside a tolerance window so a
//! captured delivery cannot be replayed later. One implementation for every
//! side that signs or checks one: the payment gateway simulator, checkout's
//! webhook endpoint, and deliveries to integrators.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed signature header")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the tolerance window")]
    Stale,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac takes keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signature header for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let signature = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex(&signature))
}

/// Checks a signature header against the raw body. Any `v1` entry may match
/// (the provider sends several while rotating secrets).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(unhex(value).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let genuine = signatures
        .iter()
        .any(|signature| mac(secret, timestamp, body).verify_slice(signature).is_ok());
    if !genuine {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bodies_verify() {
        let header = sign(b"whsec_test", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(b"whsec_test", &header, b"{\"a\":1}", 1_700_000_010, 300),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_and_malformed_are_refused() {
        let header = sign(b"whsec_test", 1_700_000_000, b"body");
        assert_eq!(
            verify(b"whsec_other", &header, b"body", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec_test", &header, b"body!", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec_test", &header, b"body", 1_700_000_301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"whsec_test", "v1=00", b"body", 0, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"whsec_test", "t=1", b"body", 0, 300),
            Err(SignatureError::Malformed)
        );
        // A forged timestamp breaks the signature rather than passing as fresh.
        let moved = header.replace("t=1700000000", "t=1700000500");
        assert_eq!(
            verify(b"whsec_test", &moved, b"body", 1_700_000_500, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }
}
