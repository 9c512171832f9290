//! One poller per watched event per process: it reads the event's change
//! stream every `watch_poll` and broadcasts each batch to every
//! WatchAvailability stream of that event, so idle streams cost nothing and
//! busy ones share one read. Each batch says where it starts; a stream that
//! is not exactly there (it resumed from an older cursor, fell behind the
//! broadcast buffer, or is on another epoch) catches up by reading the change
//! stream itself from its own cursor, so delivery stays gap-free and the
//! epoch rules (a rebuilt state means start again from a snapshot) are the
//! change script's, unchanged. The poller stops when its last stream goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{Change, ChangesOutcome};
use crate::error::InventoryError;

/// Changes one read of the change stream takes at most.
pub(crate) const CHANGES_PER_READ: u32 = 500;
/// Batches buffered per event before a slow stream must catch up itself.
const BROADCAST_BUFFER: usize = 64;

/// What a poller reads, and nothing more of the service.
pub trait ChangeSource: Send + Sync + 'static {
    /// The event's current (epoch, last change id), from a read that
    /// started after this call.
    fn position(&self, event_id: Uuid) -> BoxFuture<'_, Result<(String, String), InventoryError>>;

    /// Up to `count` changes after `after` in `epoch`.
    fn changes<'a>(
        &'a self,
        event_id: Uuid,
        epoch: &'a str,
        after: &'a str,
        count: u32,
    ) -> BoxFuture<'a, Result<ChangesOutcome, InventoryError>>;
}

/// What the poller read.
#[derive(Debug)]
pub enum Batch {
    /// The changes after `after` in `epoch`, in order.
    Changes {
        epoch: String,
        after: String,
        changes: Vec<Change>,
    },
    /// The poller's position no longer exists (state rebuilt, stream
    /// trimmed, or a read failed): streams check their own.
    Lost,
}

/// The pollers of this process, one per watched event.
pub struct WatchHub {
    source: Arc<dyn ChangeSource>,
    /// How often a poller reads its event's change stream.
    interval: Duration,
    feeds: Mutex<HashMap<Uuid, broadcast::Sender<Arc<Batch>>>>,
}

impl WatchHub {
    pub fn new(source: Arc<dyn ChangeSource>, interval: Duration) -> Self {
        Self {
            source,
            interval,
            feeds: Mutex::default(),
        }
    }

    /// Batches of `event_id` from now on, starting its poller if needed.
    pub fn subscribe(self: &Arc<Self>, event_id: Uuid) -> broadcast::Receiver<Arc<Batch>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = feeds.get(&event_id) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(BROADCAST_BUFFER);
        feeds.insert(event_id, sender.clone());
        tokio::spawn(poll(self.clone(), event_id, sender));
        receiver
    }

    /// Removes the event's poller unless a stream joined meanwhile; true
    /// when it must stop.
    fn retire(&self, event_id: Uuid, sender: &broadcast::Sender<Arc<Batch>>) -> bool {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if sender.receiver_count() > 0 {
            return false;
        }
        if feeds
            .get(&event_id)
            .is_some_and(|current| current.same_channel(sender))
        {
            feeds.remove(&event_id);
        }
        true
    }
}

async fn poll(hub: Arc<WatchHub>, event_id: Uuid, sender: broadcast::Sender<Arc<Batch>>) {
    let interval = hub.interval;
    let mut position: Option<(String, String)> = None;
    loop {
        if sender.receiver_count() == 0 && hub.retire(event_id, &sender) {
            return;
        }
        let (epoch, after) = match position.take() {
            Some(position) => position,
            None => match hub.source.position(event_id).await {
                Ok(position) => position,
                Err(_) => {
                    // Streams find out themselves (and report it).
                    let _ = sender.send(Arc::new(Batch::Lost));
                    tokio::time::sleep(interval).await;
                    continue;
                }
            },
        };
        match hub
            .source
            .changes(event_id, &epoch, &after, CHANGES_PER_READ)
            .await
        {
            Ok(ChangesOutcome::Changes(changes)) => {
                let full = changes.len() as u32 >= CHANGES_PER_READ;
                let last = changes
                    .last()
                    .map_or_else(|| after.clone(), |change| change.id.clone());
                if !changes.is_empty() {
                    let _ = sender.send(Arc::new(Batch::Changes {
                        epoch: epoch.clone(),
                        after,
                        changes,
                    }));
                }
                position = Some((epoch, last));
                if full {
                    continue;
                }
            }
            Ok(ChangesOutcome::Reset | ChangesOutcome::NeedsRebuild) | Err(_) => {
                let _ = sender.send(Arc::new(Batch::Lost));
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// A stream id (`ms-seq`) as numbers, to order cursors.
pub(crate) fn stream_position(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The changes of `batch` a stream at (`epoch`, `last`) has not seen, or
/// `None` when the batch does not start at or before `last` in its epoch
/// (the stream must catch up itself).
pub(crate) fn unseen<'a>(batch: &'a Batch, epoch: &str, last: &str) -> Option<&'a [Change]> {
    let Batch::Changes {
        epoch: batch_epoch,
        after,
        changes,
    } = batch
    else {
        return None;
    };
    let last = stream_position(last)?;
    if batch_epoch != epoch || stream_position(after)? > last {
        return None;
    }
    let first_unseen = changes
        .iter()
        .position(|change| stream_position(&change.id).is_some_and(|id| id > last))
        .unwrap_or(changes.len());
    Some(&changes[first_unseen..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChangeKind;

    fn change(id: &str) -> Change {
        Change {
            id: id.to_owned(),
            kind: ChangeKind::Held,
            seats: vec![1],
        }
    }

    #[test]
    fn streams_take_only_what_follows_their_cursor_without_gaps() {
        let batch = Batch::Changes {
            epoch: "e1".into(),
            after: "10-0".into(),
            changes: vec![change("10-1"), change("11-0"), change("12-0")],
        };
        let ids = |changes: Option<&[Change]>| {
            changes.map(|changes| changes.iter().map(|c| c.id.clone()).collect::<Vec<_>>())
        };
        assert_eq!(
            ids(unseen(&batch, "e1", "10-0")),
            Some(vec!["10-1".into(), "11-0".into(), "12-0".into()])
        );
        assert_eq!(ids(unseen(&batch, "e1", "11-0")), Some(vec!["12-0".into()]));
        assert_eq!(ids(unseen(&batch, "e1", "12-0")), Some(vec![]));
        assert_eq!(ids(unseen(&batch, "e1", "9-5")), None, "a gap");
        assert_eq!(ids(unseen(&batch, "e2", "11-0")), None, "another epoch");
        assert_eq!(ids(unseen(&Batch::Lost, "e1", "11-0")), None);
        assert!(stream_position("2-10") > stream_position("2-9"));
    }
}
