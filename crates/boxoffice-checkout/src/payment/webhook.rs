//! Payment webhooks: the headers and path they arrive on, and their JSON
//! body. The card gateway's signatures are `boxoffice_contracts::signature`'s
//! (Stripe's `t=…,v1=…` scheme), re-exported here; PayPal's are checked by
//! asking PayPal (see `paypal.rs`), and arrive on their own path.

pub use boxoffice_contracts::signature::{SignatureError, sign, verify};
use serde::{Deserialize, Serialize};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "boxoffice-signature";
/// The header a Stripe-shaped gateway signs with (same scheme).
pub const STRIPE_SIGNATURE_HEADER: &str = "stripe-signature";
/// The path checkout receives provider webhooks on.
pub const WEBHOOK_PATH: &str = "/webhooks/payments";
/// The path checkout receives PayPal's webhooks on.
pub const PAYPAL_WEBHOOK_PATH: &str = "/webhooks/paypal";
/// PayPal's transmission time header (checked against the tolerance).
pub const PAYPAL_TRANSMISSION_TIME: &str = "paypal-transmission-time";

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

/// Reads a PayPal event (`PAYMENT.AUTHORIZATION.*` with an authorization,
/// `PAYMENT.CAPTURE.*` with a capture or a refund) as the provider event
/// checkout records, its provider reference the gateways' `paypal:{order}`;
/// `None` when the body is not an event. Other types come back with an
/// empty status (acknowledged, ignored).
pub fn paypal_event(body: &[u8]) -> Option<WebhookEvent> {
    let event: serde_json::Value = serde_json::from_slice(body).ok()?;
    let kind = event["event_type"].as_str()?.to_owned();
    let resource = &event["resource"];
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let status = match kind.as_str() {
        "PAYMENT.AUTHORIZATION.CREATED" => "authorized",
        "PAYMENT.AUTHORIZATION.VOIDED" => "voided",
        "PAYMENT.CAPTURE.COMPLETED" => "captured",
        "PAYMENT.CAPTURE.DENIED" => "declined",
        "PAYMENT.CAPTURE.REFUNDED" => "refunded",
        _ => "",
    };
    let currency = resource["amount"]["currency_code"]
        .as_str()
        .unwrap_or_default();
    let amount = resource["amount"]["value"]
        .as_str()
        .and_then(|value| super::paypal::parse_value(value, currency))
        .unwrap_or(0);
    let order = text(&resource["supplementary_data"]["related_ids"]["order_id"]);
    Some(WebhookEvent {
        id: event["id"].as_str()?.to_owned(),
        kind,
        created: event["create_time"]
            .as_str()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map_or(0, |at| at.timestamp()),
        data: WebhookPayment {
            provider_ref: format!("paypal:{order}"),
            idempotency_key: text(&resource["invoice_id"]),
            status: status.to_owned(),
            amount_minor: if status == "refunded" { 0 } else { amount },
            refunded_minor: if status == "refunded" { amount } else { 0 },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn paypal_events_read_as_provider_events() {
        let refund = br#"{"id":"WH-1","event_type":"PAYMENT.CAPTURE.REFUNDED","create_time":"2026-01-01T00:00:00Z",
            "resource_type":"refund","resource":{"id":"R1","status":"COMPLETED","invoice_id":"p1",
            "amount":{"currency_code":"EUR","value":"45.00"},
            "supplementary_data":{"related_ids":{"order_id":"O1","capture_id":"C1"}}}}"#;
        let event = paypal_event(refund).unwrap();
        assert_eq!(event.id, "WH-1");
        assert_eq!(event.data.provider_ref, "paypal:O1");
        assert_eq!(event.data.idempotency_key, "p1");
        assert_eq!(event.data.status, "refunded");
        assert_eq!(event.data.refunded_minor, 4500);
        let approved =
            br#"{"id":"WH-2","event_type":"CHECKOUT.ORDER.APPROVED","resource":{"id":"O2"}}"#;
        assert_eq!(paypal_event(approved).unwrap().data.status, "");
        assert!(paypal_event(b"{}").is_none());
    }
}
