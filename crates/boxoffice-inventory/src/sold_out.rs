//! Which events are sold out, for the edge: one PostgreSQL watcher per
//! process (only while someone follows it) publishes the set of events on
//! sale with no ticket left, and every WatchSoldOut stream forwards each new
//! set. PostgreSQL is the truth that sales and releases commit to, and the
//! set is looked up there again whenever it may have changed: every
//! transaction that sells an event out, puts one back on sale (whichever
//! instance made it) or changes which events are on sale notifies
//! `boxoffice_inventory_sold_out` at its commit (triggers, migration 0012),
//! which this watcher LISTENs to. No look is made while nothing changes;
//! a look at least every [`SAFETY_LOOK`] anyway, and every `poll` while the
//! LISTEN connection is down.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use boxoffice_events::listen::Subscription;
use boxoffice_runtime::Shutdown;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::store::postgres::TicketStore;

/// The sold-out events; `None` until the first look.
pub type SoldOutSet = Option<Arc<BTreeSet<Uuid>>>;

/// The channel the triggers of migration 0012 notify.
pub const CHANNEL: &str = "boxoffice_inventory_sold_out";
/// How often the set is looked up even without a notification.
pub const SAFETY_LOOK: Duration = Duration::from_secs(30);
/// Notified changes are looked up at most every `poll`, and at most this
/// long after the previous look however long `poll` is.
const MAX_GAP: Duration = Duration::from_millis(100);

pub struct SoldOutFeed {
    tickets: TicketStore,
    /// The polling period while notifications cannot be received, and
    /// the least time between two looks (up to [`MAX_GAP`]).
    poll: Duration,
    /// Where to LISTEN (`None`: poll every `poll`).
    listen: Option<tokio_postgres::Config>,
    sender: watch::Sender<SoldOutSet>,
    running: AtomicBool,
}

impl SoldOutFeed {
    pub fn new(
        tickets: TicketStore,
        poll: Duration,
        listen: Option<tokio_postgres::Config>,
    ) -> Self {
        Self {
            tickets,
            poll,
            listen,
            sender: watch::Sender::new(None),
            running: AtomicBool::new(false),
        }
    }

    /// Follows the set, starting the poller if nobody did.
    pub fn subscribe(self: &Arc<Self>, shutdown: &Shutdown) -> watch::Receiver<SoldOutSet> {
        let receiver = self.sender.subscribe();
        if !self.running.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().poll_while_followed(shutdown.clone()));
        }
        receiver
    }

    async fn poll_while_followed(self: Arc<Self>, shutdown: Shutdown) {
        let changed = Arc::new(Notify::new());
        let mut listening: Option<Subscription> = None;
        loop {
            let looked = Instant::now();
            // Subscribed before the look: a change committed after it is
            // notified.
            if listening.is_none()
                && let Some(config) = &self.listen
            {
                match boxoffice_events::listen::subscribe(config, CHANNEL, &changed).await {
                    Ok(subscription) => listening = Some(subscription),
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot LISTEN for sold-out changes; polling"
                        )
                    }
                }
            }
            match self.tickets.sold_out_events().await {
                Ok(events) => {
                    let events: BTreeSet<Uuid> = events.into_iter().collect();
                    self.sender.send_if_modified(|current| {
                        let changed = current.as_deref() != Some(&events);
                        if changed {
                            *current = Some(Arc::new(events));
                        }
                        changed
                    });
                }
                Err(error) => tracing::warn!(error = %error, "reading the sold-out events"),
            }
            if self.sender.receiver_count() == 0 {
                self.running.store(false, Ordering::SeqCst);
                // Someone may have subscribed after the count and before
                // the flag went down: they rely on this poller.
                if self.sender.receiver_count() == 0 || self.running.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
            let notified = listening.as_ref().is_some_and(Subscription::is_listening);
            let next_look = if notified { SAFETY_LOOK } else { self.poll };
            tokio::select! {
                () = changed.notified(), if notified => {
                    // Changes arriving together make one look.
                    let gap = self.poll.min(MAX_GAP);
                    tokio::time::sleep_until((looked + gap).into()).await;
                }
                () = tokio::time::sleep(next_look) => {}
                () = shutdown.cancelled() => {
                    self.running.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}
