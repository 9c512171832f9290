//! One confirmation of a booking at a time in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Concurrent confirmations of one booking in this process wait for each
/// other, so duplicates see the first one's answer instead of an
/// in-progress error. Across processes the database decides.
#[derive(Default)]
pub(super) struct SingleFlight {
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl SingleFlight {
    pub(super) async fn run<T>(&self, key: Uuid, work: impl Future<Output = T>) -> T {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(key).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            work.await
        };
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The map's copy plus ours: nobody else waits, forget the key.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&key);
        }
        result
    }
}
