//! The read path built for a stampede: an in-process read-through cache.
//! A hit takes a read lock and clones an `Arc` — no I/O. Concurrent misses
//! of one key share a single database load. PostgreSQL triggers NOTIFY
//! `catalog_changes` on every change, and [`listen_for_changes`] invalidates
//! the affected entries within milliseconds of the commit; a TTL is the
//! safety net for anything missed while the listener reconnects.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_runtime::Shutdown;
use futures::StreamExt as _;
use tokio::sync::OnceCell;
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

/// Beyond this many entries the cache starts over rather than grow without
/// bound under a flood of distinct (possibly made-up) ids.
const MAX_ENTRIES: usize = 100_000;

/// What one load produced: the value, or `None` when it does not exist (cached
/// too, so a flood of requests for an unknown id costs one query per TTL).
type Loaded<V> = Option<Arc<V>>;

enum Slot<V> {
    Ready {
        value: Loaded<V>,
        loaded_at: Instant,
    },
    Loading(Arc<OnceCell<Loaded<V>>>),
}

pub(crate) struct ReadThroughCache<K, V> {
    slots: RwLock<HashMap<K, Slot<V>>>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V> ReadThroughCache<K, V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            slots: RwLock::new(HashMap::new()),
            ttl,
        }
    }

    /// The cached value, or the result of `load` (shared with every
    /// concurrent caller for the same key).
    pub(crate) async fn get_or_load<E, F, Fut>(&self, key: &K, load: F) -> Result<Loaded<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let cell = {
            if let Some(hit) = self.fresh(key) {
                return Ok(hit);
            }
            let mut slots = self
                .slots
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match slots.get(key) {
                Some(Slot::Ready { value, loaded_at }) if loaded_at.elapsed() < self.ttl => {
                    return Ok(value.clone());
                }
                Some(Slot::Loading(cell)) => cell.clone(),
                _ => {
                    if slots.len() >= MAX_ENTRIES {
                        slots.clear();
                    }
                    let cell = Arc::new(OnceCell::new());
                    slots.insert(key.clone(), Slot::Loading(cell.clone()));
                    cell
                }
            }
        };
        // If the loader fails, the next waiter runs its own load.
        let value = cell
            .get_or_try_init(|| async { load().await.map(|loaded| loaded.map(Arc::new)) })
            .await?
            .clone();
        let mut slots = self
            .slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Store only if no invalidation removed our slot while we loaded: an
        // invalidated load may have read the old row.
        if let Some(Slot::Loading(current)) = slots.get(key)
            && Arc::ptr_eq(current, &cell)
        {
            slots.insert(
                key.clone(),
                Slot::Ready {
                    value: value.clone(),
                    loaded_at: Instant::now(),
                },
            );
        }
        Ok(value)
    }

    fn fresh(&self, key: &K) -> Option<Loaded<V>> {
        let slots = self
            .slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slots.get(key) {
            Some(Slot::Ready { value, loaded_at }) if loaded_at.elapsed() < self.ttl => {
                Some(value.clone())
            }
            _ => None,
        }
    }

    pub(crate) fn invalidate(&self, key: &K) {
        self.slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }

    pub(crate) fn clear(&self) {
        self.slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

/// A change notification from the `catalog_changes` channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Event(Uuid),
    Performer(Uuid),
    Venue(Uuid),
}

impl Change {
    pub fn parse(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "event" => Some(Self::Event(id)),
            "performer" => Some(Self::Performer(id)),
            "venue" => Some(Self::Venue(id)),
            _ => None,
        }
    }
}

/// LISTENs on `catalog_changes` over a dedicated connection and passes each
/// change to `on_change`. Whenever the connection is (re)established,
/// `on_reset` runs first: notifications sent while we were away are lost, so
/// everything cached must be dropped.
pub(crate) async fn listen_for_changes(
    config: tokio_postgres::Config,
    shutdown: Shutdown,
    on_change: impl Fn(Change) + Send + Sync,
    on_reset: impl Fn() + Send + Sync,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        let session = async {
            let (client, mut connection) = config.connect(NoTls).await.context("connecting")?;
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let listen = client.batch_execute("LISTEN catalog_changes");
            // The LISTEN only completes while the connection is polled.
            let mut listen = std::pin::pin!(listen);
            loop {
                tokio::select! {
                    result = &mut listen => { result.context("LISTEN")?; break; }
                    message = messages.next() => match message {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Err(anyhow::Error::from(error).context("connection")),
                        None => anyhow::bail!("connection closed"),
                    }
                }
            }
            on_reset();
            tracing::debug!("listening for catalog changes");
            while let Some(message) = messages.next().await {
                match message.context("connection")? {
                    AsyncMessage::Notification(notification) => {
                        match Change::parse(notification.payload()) {
                            Some(change) => on_change(change),
                            None => tracing::warn!(
                                payload = notification.payload(),
                                "unknown catalog change"
                            ),
                        }
                    }
                    AsyncMessage::Notice(_) => {}
                    _ => {}
                }
            }
            anyhow::Ok(())
        };
        let result = tokio::select! {
            result = session => result,
            () = shutdown.cancelled() => return,
        };
        if let Err(error) = result {
            tracing::warn!(
                error = format!("{error:#}"),
                retry_in_ms = backoff.as_millis() as u64,
                "catalog change listener lost"
            );
        }
        on_reset();
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache: Arc<ReadThroughCache<u32, String>> =
            Arc::new(ReadThroughCache::new(Duration::from_secs(60)));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let cache = cache.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(&1, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(Some("one".to_owned()))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(
                task.await.unwrap().unwrap().as_deref().map(String::as_str),
                Some("one")
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidation_during_a_load_is_not_overwritten() {
        let cache: ReadThroughCache<u32, u32> = ReadThroughCache::new(Duration::from_secs(60));
        let value = cache
            .get_or_load(&7, || async {
                // The row changes while this (stale) load is in flight.
                cache.invalidate(&7);
                Ok::<_, ()>(Some(1))
            })
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(&1));
        let next = cache
            .get_or_load(&7, || async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(
            next.as_deref(),
            Some(&2),
            "the stale value must not have been cached"
        );
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let cache: ReadThroughCache<u32, u32> = ReadThroughCache::new(Duration::from_secs(60));
        assert!(
            cache
                .get_or_load(&1, || async { Err::<Option<u32>, _>("down") })
                .await
                .is_err()
        );
        let value = cache
            .get_or_load(&1, || async { Ok::<_, &str>(Some(5)) })
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(&5));
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache: ReadThroughCache<u32, u32> = ReadThroughCache::new(Duration::from_millis(0));
        cache
            .get_or_load(&1, || async { Ok::<_, ()>(Some(1)) })
            .await
            .unwrap();
        let value = cache
            .get_or_load(&1, || async { Ok::<_, ()>(Some(2)) })
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(&2));
    }

    #[test]
    fn change_payloads() {
        let id = Uuid::new_v4();
        assert_eq!(
            Change::parse(&format!("event:{id}")),
            Some(Change::Event(id))
        );
        assert_eq!(
            Change::parse(&format!("venue:{id}")),
            Some(Change::Venue(id))
        );
        assert_eq!(Change::parse("event:nope"), None);
        assert_eq!(Change::parse("other"), None);
    }
}
