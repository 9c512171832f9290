//! Webhook signatures the way Stripe makes them: the header
//! `t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{raw body}")}`, checked
//! in constant time, and refused outside a tolerance window so a captured
//! delivery cannot be replayed later. Also the webhook's JSON body.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "boxoffice-signature";
/// The header a Stripe-shaped gateway signs with (same scheme).
pub const STRIPE_SIGNATURE_HEADER: &str = "stripe-signature";
/// The path checkout receives provider webhooks on.
pub const WEBHOOK_PATH: &str = "/webhooks/payments";

/// A provider event as delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event; deliveries of the same event repeat it.
    pub id: String,
    /// `payment.authorized`, `payment.captured`, `payment.voided`,
    /// `payment.declined`, `payment.refunded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds when the provider created the event.
    pub created: i64,
    pub data: WebhookPayment,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayment {
    pub provider_ref: String,
    /// The authorization's idempotency key: checkout's payment id.
    pub idempotency_key: String,
    pub status: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
}

/// Reads a Stripe event (`payment_intent.*` with an intent, `charge.refunded`
/// with a charge) as the provider event checkout records; `None` when the
/// body is not an event. Event types checkout does not know come back with
/// an empty status (acknowledged, ignored).
pub fn stripe_event(body: &[u8]) -> Option<WebhookEvent> {
    let event: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = event["type"].as_str()?.to_owned();
    let object = &event["data"]["object"];
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let refunded_minor = object["amount_refunded"].as_i64().unwrap_or(0);
    let (provider_ref, status) = match kind.as_str() {
        "charge.refunded" => (text(&object["payment_intent"]), "refunded"),
        "payment_intent.amount_capturable_updated" => (text(&object["id"]), "authorized"),
        "payment_intent.succeeded" => (text(&object["id"]), "captured"),
        "payment_intent.canceled" => (text(&object["id"]), "voided"),
        "payment_intent.payment_failed" => (text(&object["id"]), "declined"),
        _ => (text(&object["id"]), ""),
    };
    Some(WebhookEvent {
        id: event["id"].as_str()?.to_owned(),
        kind,
        created: event["created"].as_i64().unwrap_or(0),
        data: WebhookPayment {
            provider_ref,
            idempotency_key: text(&object["metadata"]["payment_id"]),
            status: status.to_owned(),
            amount_minor: object["amount"].as_i64().unwrap_or(0),
            refunded_minor,
        },
    })
}

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
    fn stripe_events_read_as_provider_events() {
        let refund = br#"{"id":"evt_1","object":"event","type":"charge.refunded","created":7,
            "data":{"object":{"id":"ch_1","object":"charge","amount":4650,"amount_refunded":4650,
            "payment_intent":"pi_1","metadata":{"payment_id":"p1","booking":"b1"}}}}"#;
        let event = stripe_event(refund).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.data.provider_ref, "pi_1");
        assert_eq!(event.data.idempotency_key, "p1");
        assert_eq!(event.data.status, "refunded");
        assert_eq!(event.data.refunded_minor, 4650);
        let cancel = br#"{"id":"evt_2","type":"payment_intent.canceled","created":7,
            "data":{"object":{"id":"pi_2","amount":100,"metadata":{"payment_id":"p2"}}}}"#;
        assert_eq!(stripe_event(cancel).unwrap().data.status, "voided");
        let other = br#"{"id":"evt_3","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        assert_eq!(stripe_event(other).unwrap().data.status, "");
        assert!(stripe_event(b"[]").is_none());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }
}
