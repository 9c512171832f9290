//! Token-bucket rate limits keyed by client address or user. Buckets live in
//! sharded maps; idle (full) buckets are swept so memory follows the number
//! of active clients, not the number ever seen.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

const SHARDS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub(crate) struct RateLimiter<K> {
    limit: RateLimit,
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Takes one token; `Err(wait)` says when the next one is due.
    pub(crate) fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.limit.is_off() {
            return Ok(());
        }
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut buckets = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.limit.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / self.limit.per_second)
                .max(Duration::from_millis(1)))
        }
    }

    /// Drops buckets that have refilled completely: they behave exactly
    /// like a fresh bucket.
    pub(crate) fn sweep(&self, now: Instant) {
        if self.limit.is_off() {
            return;
        }
        let refill = Duration::from_secs_f64(self.limit.burst / self.limit.per_second);
        for shard in &self.shards {
            let mut buckets = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.updated) < refill);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(&"a", start).is_ok());
        }
        let wait = limiter.take(&"a", start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(limiter.take(&"b", start).is_ok(), "keys are independent");
        assert!(
            limiter
                .take(&"a", start + Duration::from_millis(100))
                .is_ok()
        );
    }

    #[test]
    fn full_buckets_are_swept_and_off_means_off() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 2.0,
        });
        let start = Instant::now();
        limiter.take(&1, start).unwrap();
        limiter.sweep(start + Duration::from_secs(1));
        assert_eq!(limiter.len(), 0);
        let off = RateLimiter::new(RateLimit {
            per_second: 0.0,
            burst: 0.0,
        });
        for _ in 0..1000 {
            assert!(off.take(&1, start).is_ok());
        }
    }
}
