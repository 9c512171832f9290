//! Revoked sessions, as the edge knows them: a set of session ids fed by
//! accounts' `WatchRevocations` stream (no database call per request), each
//! kept until every access token of that session has expired.
//!
//! The hot path pays almost nothing: the set has an epoch that moves on
//! every change, and a cached [`Identity`](crate::auth::Identity) remembers
//! the epoch it was last checked at, so a request whose token was checked
//! since the last revocation costs two atomic loads; only after a change
//! does each token look in the set once more (a read lock on one shard).
//!
//! When the feed is down the edge keeps what it knows and keeps trying;
//! tokens revoked meanwhile are refused once it is back (the stream starts
//! with every live revocation). That is the trade-off of failing open:
//! refusing every token while accounts is unreachable would take the whole
//! site down with it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_runtime::transport::Transport;
use boxoffice_runtime::{Caller, Shutdown};
use futures::StreamExt as _;
use uuid::Uuid;

const SHARDS: usize = 16;

pub(crate) struct Revocations {
    epoch: AtomicU64,
    connected: AtomicBool,
    /// Session id → unix seconds after which it can be forgotten.
    shards: Box<[RwLock<HashMap<Uuid, u64>>]>,
    hasher: RandomState,
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl Revocations {
    pub(crate) fn new() -> Self {
        Self {
            // Never 0, so a fresh identity (epoch 0) is always checked once.
            epoch: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, session: &Uuid) -> &RwLock<HashMap<Uuid, u64>> {
        &self.shards[(self.hasher.hash_one(session) as usize) % SHARDS]
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn is_revoked(&self, session: &Uuid) -> bool {
        self.shard(session)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(session)
    }

    pub(crate) fn revoke(&self, session: Uuid, forget_at: u64) {
        let inserted = self
            .shard(&session)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(session, forget_at)
            .is_none();
        if inserted {
            // After the insert: whoever sees the new epoch finds the session.
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Drops revocations whose tokens have all expired by `now` (unix s).
    pub(crate) fn forget_expired(&self, now: u64) {
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .retain(|_, forget_at| *forget_at > now);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .len()
            })
            .sum()
    }

    /// Whether the feed is connected right now.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Follows accounts' revocation feed until shutdown, reconnecting with a
/// backoff; forgets expired revocations once a minute.
pub(crate) async fn follow(
    revocations: std::sync::Arc<Revocations>,
    accounts: Transport,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(100);
    let mut sweep = tokio::time::interval(Duration::from_secs(60));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_triggered() {
        let session = async {
            let mut client =
                pb::accounts_service_client::AccountsServiceClient::new(accounts.clone());
            let mut request = tonic::Request::new(pb::WatchRevocationsRequest {});
            Caller::user(Uuid::nil(), &[Caller::SERVICE]).write_to(request.metadata_mut());
            let mut stream = client.watch_revocations(request).await?.into_inner();
            revocations.connected.store(true, Ordering::Relaxed);
            tracing::info!("following the revocation feed");
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(Ok(revocation)) => {
                            let Ok(session) = Uuid::parse_str(&revocation.session_id) else {
                                continue;
                            };
                            let forget_at = revocation
                                .forget_time
                                .map_or(0, |time| time.seconds.max(0) as u64);
                            revocations.revoke(session, forget_at);
                            backoff = Duration::from_millis(100);
                        }
                        Some(Err(status)) => return Err(status),
                        None => return Err(tonic::Status::unavailable("revocation feed ended")),
                    },
                    _ = sweep.tick() => {
                        revocations.forget_expired(boxoffice_accounts::token::unix_now());
                    }
                }
            }
        };
        let result: Result<(), tonic::Status> = tokio::select! {
            result = session => result,
            () = shutdown.cancelled() => return,
        };
        revocations.connected.store(false, Ordering::Relaxed);
        if let Err(status) = result {
            tracing::warn!(
                code = ?status.code(),
                retry_in_ms = backoff.as_millis() as u64,
                "revocation feed lost"
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

    #[test]
    fn revoking_moves_the_epoch_once_and_expiry_forgets() {
        let revocations = Revocations::new();
        let session = Uuid::new_v4();
        let before = revocations.epoch();
        assert!(!revocations.is_revoked(&session));
        revocations.revoke(session, 100);
        revocations.revoke(session, 100);
        assert_eq!(revocations.epoch(), before + 1);
        assert!(revocations.is_revoked(&session));
        revocations.forget_expired(99);
        assert!(revocations.is_revoked(&session));
        revocations.forget_expired(100);
        assert!(!revocations.is_revoked(&session));
    }
}
