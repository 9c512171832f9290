//! Which events are sold out, for the edge: one PostgreSQL poller per
//! process (only while someone follows it) publishes the set of events on
//! sale with no ticket left, and every WatchSoldOut stream forwards each new
//! set. PostgreSQL is the truth that sales and releases commit to, so a
//! cancellation that puts seats back takes the event out of the set on the
//! next look, whichever instance made it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use boxoffice_runtime::Shutdown;
use tokio::sync::watch;
use uuid::Uuid;

use crate::store::postgres::TicketStore;

/// The sold-out events; `None` until the first look.
pub type SoldOutSet = Option<Arc<BTreeSet<Uuid>>>;

pub struct SoldOutFeed {
    tickets: TicketStore,
    poll: Duration,
    sender: watch::Sender<SoldOutSet>,
    running: AtomicBool,
}

impl SoldOutFeed {
    pub fn new(tickets: TicketStore, poll: Duration) -> Self {
        Self {
            tickets,
            poll,
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
        loop {
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
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = shutdown.cancelled() => {
                    self.running.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}
