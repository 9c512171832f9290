//! The revocation feed behind `WatchRevocations`: one task per accounts
//! process LISTENs on `accounts_revocations` (every revocation, from any
//! accounts instance, inserts into `accounts.revocations` and notifies),
//! reads the revocations it has not seen yet and broadcasts them to every
//! watching edge. A watcher gets all live revocations first, then the new
//! ones; one that falls behind is cut off and reconnects for a fresh start,
//! so nothing is ever skipped silently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_runtime::Shutdown;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::error::AccountsError;
use crate::store::AccountsStore;

/// The PostgreSQL channel the revocations table's trigger notifies.
pub(crate) const CHANNEL: &str = "accounts_revocations";
/// Looks for revocations this often even without a notification.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Revocations buffered per watcher before it is cut off.
const BUFFER: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revoked {
    pub session_id: Uuid,
    pub forget_at: DateTime<Utc>,
}

pub struct RevocationHub {
    store: AccountsStore,
    sender: broadcast::Sender<Revoked>,
    /// Ends every watch at shutdown, so draining does not wait on them.
    shutdown: Shutdown,
}

impl RevocationHub {
    pub fn new(store: AccountsStore, shutdown: Shutdown) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BUFFER);
        Arc::new(Self {
            store,
            sender,
            shutdown,
        })
    }

    /// Resolves when the process is shutting down.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shutdown = self.shutdown.clone();
        async move { shutdown.cancelled().await }
    }

    /// What a new watcher gets: the live revocations, then everything
    /// broadcast after it subscribed (subscribed first, so nothing falls in
    /// between; a revocation may come twice, which is harmless).
    pub async fn watch(
        &self,
    ) -> Result<(Vec<Revoked>, broadcast::Receiver<Revoked>), AccountsError> {
        let receiver = self.sender.subscribe();
        let live = self
            .store
            .live_revocations()
            .await?
            .into_iter()
            .map(|(session_id, forget_at)| Revoked {
                session_id,
                forget_at,
            })
            .collect();
        Ok((live, receiver))
    }

    /// Follows the table until shutdown: on every notification (and every
    /// few seconds without one) broadcasts the revocations not sent yet.
    pub async fn run(self: Arc<Self>, listen: tokio_postgres::Config) {
        let shutdown = self.shutdown.clone();
        let mut sent: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
        let mut backoff = Duration::from_millis(100);
        let mut last_cleanup = tokio::time::Instant::now();
        while !shutdown.is_triggered() {
            let session = async {
                let (client, mut connection) = listen.connect(NoTls).await.context("connecting")?;
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                let statement = format!("LISTEN {CHANNEL}");
                let listening = client.batch_execute(&statement);
                let mut listening = std::pin::pin!(listening);
                loop {
                    tokio::select! {
                        result = &mut listening => { result.context("LISTEN")?; break; }
                        message = messages.next() => match message {
                            Some(Ok(_)) => {}
                            Some(Err(error)) => return Err(anyhow::Error::from(error).context("connection")),
                            None => anyhow::bail!("connection closed"),
                        }
                    }
                }
                loop {
                    self.publish_new(&mut sent).await?;
                    if last_cleanup.elapsed() > Duration::from_secs(60) {
                        last_cleanup = tokio::time::Instant::now();
                        self.store.forget_old_revocations().await?;
                    }
                    // Wait for a notification (draining any burst) or the poll.
                    let wait = tokio::time::sleep(IDLE_POLL);
                    tokio::pin!(wait);
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(Ok(AsyncMessage::Notification(_)) | Ok(_)) => {}
                            Some(Err(error)) => return Err(anyhow::Error::from(error).context("connection")),
                            None => anyhow::bail!("connection closed"),
                        },
                        () = &mut wait => {}
                    }
                }
            };
            let result: anyhow::Result<()> = tokio::select! {
                result = session => result,
                () = shutdown.cancelled() => return,
            };
            if let Err(error) = result {
                tracing::warn!(
                    error = format!("{error:#}"),
                    retry_in_ms = backoff.as_millis() as u64,
                    "revocation listener lost"
                );
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn publish_new(&self, sent: &mut HashMap<Uuid, DateTime<Utc>>) -> anyhow::Result<()> {
        let live = self
            .store
            .live_revocations()
            .await
            .map_err(|error| anyhow::anyhow!("reading revocations: {error}"))?;
        let now = Utc::now();
        sent.retain(|_, forget_at| *forget_at > now);
        for (session_id, forget_at) in live {
            if sent.insert(session_id, forget_at).is_none() {
                // No receivers is fine: no edge is watching yet.
                let _ = self.sender.send(Revoked {
                    session_id,
                    forget_at,
                });
            }
        }
        Ok(())
    }
}
