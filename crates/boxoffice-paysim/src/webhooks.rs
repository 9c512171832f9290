//! Webhook deliveries the way Stripe makes them: an event object posted to
//! every endpoint subscribed to its type, signed with
//! `Stripe-Signature: t={unix seconds},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`,
//! delivered at least once (sometimes twice), after a random delay so
//! deliveries overtake each other, and retried with backoff until the
//! endpoint answers 2xx.

use std::time::Duration;

use rand::Rng as _;
use tokio::sync::mpsc;

pub(crate) use boxoffice_contracts::signature::sign;

/// The header Stripe signs webhooks in.
pub(crate) const SIGNATURE_HEADER: &str = "stripe-signature";
/// Deliveries of one event are attempted this many times at most.
const MAX_DELIVERY_ATTEMPTS: u32 = 8;

/// One event for one endpoint.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub url: String,
    pub body: Vec<u8>,
    pub event_id: String,
}

#[derive(Clone, Debug)]
pub(crate) struct DeliveryOptions {
    pub secret: Vec<u8>,
    pub duplicate_percent: u8,
    pub max_delay: Duration,
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
                let (url, body, event_id) = (
                    delivery.url.clone(),
                    delivery.body.clone(),
                    delivery.event_id.clone(),
                );
                tokio::spawn(async move {
                    let max_ms = options.max_delay.as_millis() as u64;
                    if max_ms > 0 {
                        let delay = rand::rng().random_range(0..=max_ms);
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    for attempt in 0..MAX_DELIVERY_ATTEMPTS {
                        let signature =
                            sign(&options.secret, chrono::Utc::now().timestamp(), &body);
                        let sent = client
                            .post(&url)
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .header(SIGNATURE_HEADER, signature)
                            .body(body.clone())
                            .send()
                            .await;
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
