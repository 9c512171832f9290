//! The sender: claims recorded messages that are due, renders and sends
//! them over SMTP (several at once), and records each outcome. The claim
//! counts the attempt and moves the message's next attempt a claim
//! timeout ahead *before* sending, so a sender that dies mid-send leaves
//! a message that another attempt takes up after the timeout: a message
//! is sent at least once, and a crash between the server's acceptance and
//! the `sent` record sends it once more (with the same `Message-ID`).
//! A server that is down or refuses for now is retried with exponential
//! backoff, for as long as it takes; the waiting count and the failures
//! are on `/metrics`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use boxoffice_runtime::Shutdown;
use futures::StreamExt as _;
use uuid::Uuid;

use crate::config::NotifyConfig;
use crate::message::{Facts, render};
use crate::metrics::SenderStats;
use crate::smtp::{SendError, SmtpPool};
use crate::store::{Claimed, NotifyStore, Recipient};
use crate::token::UnsubscribeTokens;

/// A message without an address after this long is given up (the user's
/// registration never reached us, or they were erased).
const NO_ADDRESS_GIVE_UP: Duration = Duration::from_secs(7 * 24 * 3600);

enum Outcome {
    Sent {
        id: Uuid,
        to: String,
    },
    Retry {
        id: Uuid,
        after: Duration,
        why: String,
    },
    Finish {
        id: Uuid,
        status: &'static str,
        why: String,
    },
}

pub(crate) struct Sender {
    store: NotifyStore,
    mailer: SmtpPool,
    config: NotifyConfig,
    tokens: UnsubscribeTokens,
    stats: Arc<SenderStats>,
    wake: Arc<tokio::sync::Notify>,
}

impl Sender {
    pub(crate) fn new(
        store: NotifyStore,
        config: NotifyConfig,
        stats: Arc<SenderStats>,
        wake: Arc<tokio::sync::Notify>,
    ) -> anyhow::Result<Self> {
        let mailer = SmtpPool::from_url(
            config.smtp_url.expose(),
            config.concurrency,
            Duration::from_secs(30),
        )?;
        Ok(Self {
            store,
            mailer,
            tokens: UnsubscribeTokens::new(config.unsubscribe_secret.expose().as_bytes()),
            config,
            stats,
            wake,
        })
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let base = self
            .config
            .first_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.config.max_backoff);
        base + base.mul_f64(rand::random::<f64>() / 4.0)
    }

    /// Sends until shut down, in two lanes of half the concurrency each: a
    /// round ends with its slowest message and its records, and while one
    /// lane does that the other is sending (a lane that found work wakes
    /// the other), so the connections are never idle behind that barrier.
    pub(crate) async fn run(self, shutdown: Shutdown) {
        let lanes = self.config.concurrency.clamp(1, 2);
        let per_lane = self.config.concurrency.div_ceil(lanes);
        futures::future::join_all((0..lanes).map(|_| self.lane(per_lane, &shutdown))).await;
    }

    async fn lane(&self, concurrency: usize, shutdown: &Shutdown) {
        let mut pause = self.config.first_backoff;
        while !shutdown.is_triggered() {
            match self.round(concurrency).await {
                Ok(0) => {
                    pause = self.config.first_backoff;
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.config.poll) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                Ok(_) => pause = self.config.first_backoff,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = pause.as_millis() as u64,
                        "the notification sender cannot reach its database"
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

    /// Sends what is due; answers how many messages it claimed.
    async fn round(&self, concurrency: usize) -> anyhow::Result<usize> {
        if let Ok(waiting) = self.store.waiting().await {
            self.stats
                .waiting
                .store(u64::try_from(waiting.count).unwrap_or(0), Ordering::Relaxed);
            self.stats
                .oldest_waiting_ms
                .store((waiting.oldest_seconds * 1000.0) as u64, Ordering::Relaxed);
        }
        let claimed = self
            .store
            .claim_due(self.config.batch, self.config.claim)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        // More may be due: the other lane claims the next batch meanwhile.
        self.wake.notify_one();
        let users: Vec<Uuid> = claimed.iter().map(|message| message.user_id).collect();
        let recipients = self.store.recipients(&users).await?;
        let count = claimed.len();
        let recipients = &recipients;
        let outcomes: Vec<Outcome> = futures::stream::iter(claimed)
            .map(|message| async move { self.send(&message, recipients).await })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut sent = Vec::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Sent { id, to } => sent.push((id, to)),
                Outcome::Retry { id, after, why } => {
                    self.store.retry_later(id, after, &why).await?;
                }
                Outcome::Finish { id, status, why } => {
                    self.store.finish(id, status, &why).await?;
                }
            }
        }
        self.store.mark_sent(&sent).await?;
        Ok(count)
    }

    async fn send(&self, message: &Claimed, recipients: &HashMap<Uuid, Recipient>) -> Outcome {
        let id = message.id;
        let facts: Facts = match serde_json::from_value(message.facts.clone()) {
            Ok(facts) => facts,
            Err(_) => return self.give_up(id, "failed", "unreadable facts".into()),
        };
        let Some(recipient) = recipients.get(&message.user_id) else {
            let age = chrono::Utc::now() - message.created_at;
            if age.to_std().unwrap_or_default() > NO_ADDRESS_GIVE_UP {
                return self.give_up(id, "failed", "no address for the user".into());
            }
            // Their registration may still be on its way through the stream.
            return Outcome::Retry {
                id,
                after: self.backoff(message.attempts),
                why: "no address for the user yet".into(),
            };
        };
        if message.marketing && !recipient.marketing {
            self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
            return Outcome::Finish {
                id,
                status: "suppressed",
                why: "the user opted out of marketing".into(),
            };
        }
        let to = match recipient.email.parse::<lettre::Address>() {
            Ok(address) => {
                lettre::message::Mailbox::new(Some(recipient.display_name.clone()), address)
            }
            Err(_) => return self.give_up(id, "failed", "the address is not valid".into()),
        };
        let unsubscribe = message.marketing.then(|| {
            format!(
                "{}/unsubscribe?token={}",
                self.config.public_url,
                self.tokens.token(message.user_id)
            )
        });
        // Templates, QR images and MIME encoding are CPU work: off the
        // async threads.
        let from = self.config.from.clone();
        let name = recipient.display_name.clone();
        let public_url = self.config.public_url.clone();
        let built = tokio::task::spawn_blocking(move || {
            let facts = facts.with_public_url(&public_url);
            let rendered = render(&facts, &name, unsubscribe.as_deref());
            let tickets = match &facts {
                Facts::BookingConfirmed { tickets, .. } => tickets.as_slice(),
                _ => &[],
            };
            let email =
                crate::mail::build(&from, to, id, &rendered, tickets, unsubscribe.as_deref())?;
            anyhow::Ok((email.envelope().clone(), email.formatted()))
        })
        .await;
        let (envelope, email) = match built {
            Ok(Ok(built)) => built,
            Ok(Err(error)) => return self.give_up(id, "failed", format!("{error:#}")),
            Err(error) => return self.give_up(id, "failed", format!("rendering: {error}")),
        };
        match self.mailer.send(&envelope, &email).await {
            Ok(_) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                Outcome::Sent {
                    id,
                    to: recipient.email.clone(),
                }
            }
            Err(error) => {
                self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                if let SendError::Permanent(_) = error {
                    tracing::warn!(message_id = %id, error = %error, "the SMTP server refused a message");
                    self.give_up(id, "failed", error.to_string())
                } else {
                    let after = self.backoff(message.attempts);
                    tracing::warn!(message_id = %id, attempts = message.attempts,
                        retry_in_ms = after.as_millis() as u64, error = %error, "sending failed; retrying");
                    Outcome::Retry {
                        id,
                        after,
                        why: "the SMTP server could not take it".into(),
                    }
                }
            }
        }
    }

    fn give_up(&self, id: Uuid, status: &'static str, why: String) -> Outcome {
        self.stats.given_up.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(message_id = %id, why, "a message will not be sent");
        Outcome::Finish { id, status, why }
    }
}
