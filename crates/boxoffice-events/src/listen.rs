//! One LISTEN connection per process, database and channel, shared by every
//! consumer group (and relay) of the process that waits on that channel:
//! each NOTIFY of a producer wakes one PostgreSQL backend and one
//! connection task here, which wakes the subscribers in-process, instead
//! of one backend and connection per group.
//!
//! A subscriber is woken the way a [`Notify`] is (a wake-up that finds
//! nobody waiting is kept for the next wait), on every notification and
//! whenever the connection is lost (its events may have come meanwhile:
//! read now). While the connection is down the hub reconnects, and
//! subscribers rely on their polling until it is back. The connection
//! closes when the last subscriber goes.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio::sync::{Notify, oneshot, watch};
use tokio_postgres::{AsyncMessage, NoTls};

/// How long a subscriber waits for the shared connection to be listening.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

struct Hub {
    waiters: Mutex<Vec<Weak<Notify>>>,
    /// Whether the connection is listening now.
    listening: watch::Sender<bool>,
    /// Dropped with the hub: stops its connection task.
    _stop: oneshot::Sender<()>,
}

impl Hub {
    fn wake_all(&self) {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        waiters.retain(|waiter| match waiter.upgrade() {
            Some(waiter) => {
                waiter.notify_one();
                true
            }
            None => false,
        });
    }
}

type Registry = Vec<(tokio_postgres::Config, String, Weak<Hub>)>;

static HUBS: Mutex<Registry> = Mutex::new(Vec::new());

/// A subscriber's place at its hub; dropping it unsubscribes (and closes
/// the connection when it was the last).
pub struct Subscription {
    hub: Arc<Hub>,
    waiter: Weak<Notify>,
}

impl Subscription {
    /// Whether the shared connection listens now (while it does not,
    /// notifications are missed: poll).
    pub fn is_listening(&self) -> bool {
        *self.hub.listening.borrow()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut waiters = self
            .hub
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at) = waiters.iter().position(|w| w.ptr_eq(&self.waiter)) {
            waiters.swap_remove(at);
        }
    }
}

/// Wakes `wake` on every NOTIFY on `channel` (and on a lost connection)
/// until the answer is dropped. Returns once the shared connection
/// listens, so a notification sent after this returns is not missed.
pub async fn subscribe(
    config: &tokio_postgres::Config,
    channel: &str,
    wake: &Arc<Notify>,
) -> anyhow::Result<Subscription> {
    let hub = hub(config, channel);
    let waiter = Arc::downgrade(wake);
    hub.waiters
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(waiter.clone());
    // Unsubscribes on every way out, the failed ones included.
    let subscription = Subscription { hub, waiter };
    let mut listening = subscription.hub.listening.subscribe();
    tokio::time::timeout(READY_TIMEOUT, listening.wait_for(|listening| *listening))
        .await
        .context("connecting to LISTEN: timed out")?
        .context("connecting to LISTEN")?;
    Ok(subscription)
}

/// The hub of `(config, channel)`, started if there is none.
fn hub(config: &tokio_postgres::Config, channel: &str) -> Arc<Hub> {
    let mut hubs = HUBS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    hubs.retain(|(_, _, hub)| hub.strong_count() > 0);
    if let Some(hub) = hubs
        .iter()
        .find(|(c, ch, _)| c == config && ch == channel)
        .and_then(|(_, _, hub)| hub.upgrade())
    {
        return hub;
    }
    let (stop, stopped) = oneshot::channel();
    let hub = Arc::new(Hub {
        waiters: Mutex::new(Vec::new()),
        listening: watch::Sender::new(false),
        _stop: stop,
    });
    hubs.push((config.clone(), channel.to_owned(), Arc::downgrade(&hub)));
    tokio::spawn(run(
        config.clone(),
        channel.to_owned(),
        Arc::downgrade(&hub),
        stopped,
    ));
    hub
}

/// The hub's connection: listens, wakes, reconnects, until the hub is gone.
async fn run(
    config: tokio_postgres::Config,
    channel: String,
    hub: Weak<Hub>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut retry = RETRY_FIRST;
    loop {
        tokio::select! {
            listened = listen_once(&config, &channel, &hub) => {
                if listened {
                    retry = RETRY_FIRST;
                }
            }
            _ = &mut stopped => return,
        }
        let Some(live) = hub.upgrade() else { return };
        live.listening.send_replace(false);
        // Whatever was notified while the connection was going down.
        live.wake_all();
        drop(live);
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = &mut stopped => return,
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// One connection's life: answers whether it got as far as listening.
async fn listen_once(config: &tokio_postgres::Config, channel: &str, hub: &Weak<Hub>) -> bool {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(error) => {
            tracing::debug!(%error, channel, "event LISTEN connection failed");
            return false;
        }
    };
    let (lost, mut gone) = oneshot::channel::<()>();
    let driver_hub = hub.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => match driver_hub.upgrade() {
                    Some(hub) => hub.wake_all(),
                    None => break,
                },
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "event LISTEN connection failed");
                    break;
                }
            }
        }
        drop(lost);
    });
    if let Err(error) = client.batch_execute(&format!("LISTEN {channel}")).await {
        tracing::debug!(%error, channel, "LISTEN failed");
        driver.abort();
        return false;
    }
    match hub.upgrade() {
        Some(live) => {
            live.listening.send_replace(true);
        }
        None => {
            driver.abort();
            return true;
        }
    }
    // Until the connection drops (the client is kept alive meanwhile).
    let _ = (&mut gone).await;
    drop(client);
    true
}
