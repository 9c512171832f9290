//! Sold-out events, as inventory pushes them: the edge follows inventory's
//! `WatchSoldOut` stream (the whole set on every change) and answers
//! HoldSeats, JoinQueue and WatchQueue for those events itself, so the rest
//! of a rush never reaches inventory. Seats coming back on sale take the
//! event out of the next set. While the feed is down the edge forgets the
//! set (failing open: inventory answers every call truthfully) rather than
//! keep an answer that may have stopped being true.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_runtime::transport::Transport;
use boxoffice_runtime::{Caller, Shutdown};
use futures::StreamExt as _;
use prost::Message as _;
use uuid::Uuid;

/// The calls the edge answers for a sold-out event; each request's field 1
/// is the event id.
const ANSWERED_HERE: [&str; 3] = [
    "/boxoffice.inventory.v1.InventoryService/HoldSeats",
    "/boxoffice.inventory.v1.WaitingRoomService/JoinQueue",
    "/boxoffice.inventory.v1.WaitingRoomService/WatchQueue",
];

#[derive(Default)]
pub(crate) struct SoldOut {
    /// Whether any event is sold out: the common case costs one load.
    any: AtomicBool,
    connected: AtomicBool,
    events: RwLock<Arc<HashSet<Uuid>>>,
}

impl SoldOut {
    fn replace(&self, events: HashSet<Uuid>) {
        let any = !events.is_empty();
        *self
            .events
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(events);
        self.any.store(any, Ordering::Release);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.events
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    fn contains(&self, event_id: &Uuid) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .events
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(event_id)
    }

    /// Whether this call (`path`, its buffered gRPC frame) is for an event
    /// that is sold out.
    pub(crate) fn answers(&self, path: &str, frame: &[u8]) -> bool {
        if !self.any.load(Ordering::Acquire) || !ANSWERED_HERE.contains(&path) {
            return false;
        }
        // One uncompressed frame: flag, 4-byte length, the message.
        let Some(message) = frame
            .get(5..)
            .filter(|_| frame.first() == Some(&0))
            .and_then(|rest| {
                let length = u32::from_be_bytes(frame.get(1..5)?.try_into().ok()?) as usize;
                rest.get(..length)
            })
        else {
            return false;
        };
        // Every answered request has `string event_id = 1`; the other
        // fields are skipped.
        pb::JoinQueueRequest::decode(message)
            .ok()
            .and_then(|request| Uuid::parse_str(&request.event_id).ok())
            .is_some_and(|event_id| self.contains(&event_id))
    }
}

/// Follows inventory's sold-out feed until shutdown, reconnecting with
/// backoff.
pub(crate) async fn follow(sold_out: Arc<SoldOut>, inventory: Transport, shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        let session = async {
            let mut client =
                pb::inventory_service_client::InventoryServiceClient::new(inventory.clone());
            let mut request = tonic::Request::new(pb::WatchSoldOutRequest {});
            Caller::user(Uuid::nil(), &[Caller::SERVICE]).write_to(request.metadata_mut());
            let mut stream = client.watch_sold_out(request).await?.into_inner();
            sold_out.connected.store(true, Ordering::Relaxed);
            tracing::info!("following the sold-out feed");
            loop {
                match stream.next().await {
                    Some(Ok(set)) => {
                        let events: HashSet<Uuid> = set
                            .event_ids
                            .iter()
                            .filter_map(|id| Uuid::parse_str(id).ok())
                            .collect();
                        tracing::debug!(sold_out = events.len(), "sold-out events changed");
                        sold_out.replace(events);
                        backoff = Duration::from_millis(100);
                    }
                    Some(Err(status)) => return Err(status),
                    None => return Err(tonic::Status::unavailable("sold-out feed ended")),
                }
            }
        };
        let result: Result<(), tonic::Status> = tokio::select! {
            result = session => result,
            () = shutdown.cancelled() => return,
        };
        sold_out.connected.store(false, Ordering::Relaxed);
        sold_out.replace(HashSet::new());
        if let Err(status) = result
            && status.code() != tonic::Code::Unimplemented
        {
            tracing::warn!(
                code = ?status.code(),
                retry_in_ms = backoff.as_millis() as u64,
                "sold-out feed lost"
            );
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &impl prost::Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn only_the_rush_calls_of_sold_out_events_are_answered_here() {
        let sold_out = SoldOut::default();
        let (gone, open) = (Uuid::new_v4(), Uuid::new_v4());
        let hold = |event: Uuid| {
            frame(&pb::HoldSeatsRequest {
                event_id: event.to_string(),
                selection: None,
                admission_token: "wr1.x".into(),
            })
        };
        assert!(
            !sold_out.answers(ANSWERED_HERE[0], &hold(gone)),
            "nothing sold out yet"
        );
        sold_out.replace([gone].into_iter().collect());
        assert!(sold_out.answers(ANSWERED_HERE[0], &hold(gone)));
        assert!(!sold_out.answers(ANSWERED_HERE[0], &hold(open)));
        let join = frame(&pb::JoinQueueRequest {
            event_id: gone.to_string(),
        });
        assert!(sold_out.answers(ANSWERED_HERE[1], &join));
        assert!(sold_out.answers(ANSWERED_HERE[2], &join));
        assert!(
            !sold_out.answers(
                "/boxoffice.inventory.v1.InventoryService/GetAvailability",
                &join
            ),
            "availability is always inventory's"
        );
        let mut compressed = join.clone();
        compressed[0] = 1;
        assert!(!sold_out.answers(ANSWERED_HERE[1], &compressed));
        assert!(!sold_out.answers(ANSWERED_HERE[1], &join[..join.len() - 1]));
        assert!(!sold_out.answers(ANSWERED_HERE[1], b"junk"));
        sold_out.replace(HashSet::new());
        assert!(!sold_out.answers(ANSWERED_HERE[1], &join), "back on sale");
    }
}
