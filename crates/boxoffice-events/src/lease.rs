//! A dedicated PostgreSQL connection that holds a session advisory lock:
//! the lease that makes one instance of a consumer group (or of a relay)
//! the active one per stream. When the process dies the connection drops
//! and PostgreSQL frees the lock, so another instance takes over. The
//! holder is woken by the producer's appends through the process's shared
//! LISTEN connection ([`crate::listen`]), subscribed for as long as the
//! lease is held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio::sync::Notify;
use tokio_postgres::NoTls;

pub(crate) struct Lease {
    // Kept: dropping the client closes the connection and frees the lock.
    client: tokio_postgres::Client,
    _wakeups: crate::listen::Subscription,
    alive: Arc<AtomicBool>,
}

impl Lease {
    /// Subscribes `wake` to `channel` (each notification wakes it), connects
    /// and tries to take `key`. `None` when another session holds it.
    pub(crate) async fn try_acquire(
        config: &tokio_postgres::Config,
        channel: &str,
        key: &str,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Option<Self>> {
        let wakeups = crate::listen::subscribe(config, channel, &wake).await?;
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .context("connecting for the lease")?;
        let alive = Arc::new(AtomicBool::new(true));
        let driver_alive = alive.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                if let Err(error) = message {
                    tracing::debug!(%error, "event lease connection failed");
                    break;
                }
            }
            driver_alive.store(false, Ordering::Release);
            // Whoever waits for work must notice the loss at once.
            wake.notify_one();
        });
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
            .await
            .context("taking the lease")?
            .get(0);
        if !taken {
            return Ok(None);
        }
        // What the holder writes on this session (a consumer's
        // checkpoint) commits without waiting for its WAL flush: a
        // checkpoint lost in a crash replays events, which handlers are
        // idempotent for (at least once).
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .context("configuring the lease session")?;
        Ok(Some(Self {
            client,
            _wakeups: wakeups,
            alive,
        }))
    }

    /// The lease's own session: a write through it fails once the lease
    /// is lost, so an instance that lost it cannot move the checkpoint.
    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}
