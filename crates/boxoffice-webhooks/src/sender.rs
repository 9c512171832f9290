//! The sender: claims due deliveries, POSTs them signed (several at once),
//! and records every attempt. A 2xx answer delivers; anything else, a
//! timeout or a refused connection is a failed attempt, retried with
//! exponential backoff (with jitter) until the delivery's three-day window
//! closes. Sending is at least once: a sender that dies between the
//! receiver's answer and the record sends again after the claim runs out,
//! with the same `Boxoffice-Webhook-Id`, so receivers de-duplicate by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_runtime::Shutdown;
use chrono::Utc;
use futures::StreamExt as _;

use crate::address::{PublicOnly, check_url};
use crate::config::WebhooksConfig;
use crate::store::{AttemptResult, Claimed, DisablePolicy, WebhookStore};

/// The headers of a delivery.
pub const ID_HEADER: &str = "boxoffice-webhook-id";
pub const TIMESTAMP_HEADER: &str = "boxoffice-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "boxoffice-signature";

/// The most of a receiver's answer kept in the attempt log.
const EXCERPT_BYTES: usize = 512;

pub(crate) struct Sender {
    store: WebhookStore,
    client: reqwest::Client,
    config: WebhooksConfig,
    wake: Arc<tokio::sync::Notify>,
}

/// How one POST went.
struct Answer {
    status_code: i32,
    error: String,
    excerpt: String,
}

impl Sender {
    pub(crate) fn new(
        store: WebhookStore,
        config: WebhooksConfig,
        wake: Arc<tokio::sync::Notify>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: config.allow_private,
            }))
            .user_agent(concat!("boxoffice-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| anyhow::anyhow!("building the webhook client: {error}"))?;
        Ok(Self {
            store,
            client,
            config,
            wake,
        })
    }

    fn backoff(&self, attempt: i32) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let base = self
            .config
            .first_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.config.max_backoff);
        base + base.mul_f64(rand::random::<f64>() / 4.0)
    }

    /// A claim outlasts the longest attempt, so only a dead sender's
    /// deliveries are claimed again.
    fn claim(&self) -> Duration {
        self.config.timeout * 3
    }

    pub(crate) async fn run(self, shutdown: Shutdown) {
        let mut pause = Duration::from_millis(200);
        while !shutdown.is_triggered() {
            match self.round().await {
                Ok(0) => {
                    pause = Duration::from_millis(200);
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.poll()) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                Ok(_) => pause = Duration::from_millis(200),
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = pause.as_millis() as u64,
                        "the webhook sender cannot reach its database"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Polls at least as often as the shortest backoff, so a retry is not
    /// held back much past its time.
    fn poll(&self) -> Duration {
        self.config.poll.min(self.config.first_backoff)
    }

    /// Sends what is due; answers how many deliveries it claimed.
    async fn round(&self) -> anyhow::Result<usize> {
        let claimed = self
            .store
            .claim_due(self.config.batch, self.claim())
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let count = claimed.len();
        let results: Vec<AttemptResult> = futures::stream::iter(claimed)
            .map(|delivery| async move { self.attempt(delivery).await })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let policy = DisablePolicy {
            failures: i32::try_from(self.config.disable_after_failures).unwrap_or(i32::MAX),
            after: self.config.disable_after,
        };
        for endpoint_id in self.store.record_attempts(&results, policy).await? {
            tracing::warn!(%endpoint_id, "a webhook endpoint kept failing and was disabled; its admin is notified");
        }
        Ok(count)
    }

    async fn attempt(&self, delivery: Claimed) -> AttemptResult {
        let at = Utc::now();
        let started = Instant::now();
        let answer = self.post(&delivery, at.timestamp()).await;
        let accepted = (200..300).contains(&answer.status_code) && answer.error.is_empty();
        if !accepted {
            tracing::info!(delivery_id = %delivery.id, attempt = delivery.attempt,
                status = answer.status_code, error = %answer.error, "webhook attempt failed");
        }
        AttemptResult {
            delivery_id: delivery.id,
            endpoint_id: delivery.endpoint_id,
            number: delivery.attempt,
            manual: delivery.manual,
            at,
            status_code: answer.status_code,
            duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
            error: answer.error,
            response_excerpt: answer.excerpt,
            accepted,
            retry_after: if accepted {
                Duration::ZERO
            } else {
                self.backoff(delivery.attempt)
            },
        }
    }

    async fn post(&self, delivery: &Claimed, timestamp: i64) -> Answer {
        let failed = |error: String| Answer {
            status_code: 0,
            error,
            excerpt: String::new(),
        };
        // Checked again at every attempt: the rules may have tightened
        // since the endpoint was registered.
        let url = match check_url(&delivery.url, self.config.allow_private) {
            Ok(url) => url,
            Err(refusal) => return failed(format!("url {refusal}")),
        };
        let signature = boxoffice_contracts::signature::sign(
            delivery.secret.as_bytes(),
            timestamp,
            delivery.body.as_bytes(),
        );
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, delivery.id.to_string())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(delivery.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return failed(describe(&error)),
        };
        let status_code = i32::from(response.status().as_u16());
        let mut excerpt = Vec::new();
        // Only the start of the answer is read; the rest is dropped with
        // the connection.
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        excerpt.truncate(EXCERPT_BYTES);
        let excerpt: String = String::from_utf8_lossy(&excerpt)
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect();
        Answer {
            status_code,
            error: if (200..300).contains(&status_code) {
                String::new()
            } else {
                format!("status {status_code}")
            },
            excerpt,
        }
    }
}

/// A short, stable description of a transport failure (no internals).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        let mut cause: Option<&dyn std::error::Error> = Some(error);
        let mut refused = false;
        while let Some(current) = cause {
            refused |= current
                .to_string()
                .contains("no address webhooks may reach");
            cause = current.source();
        }
        if refused {
            "the host has no address webhooks may reach".into()
        } else {
            "connection failed".into()
        }
    } else {
        "request failed".into()
    }
}
