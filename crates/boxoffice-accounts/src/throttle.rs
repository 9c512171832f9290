//! Slowing down password guessing: after a few failed logins for one email
//! (whether or not it exists, so the throttle reveals nothing), each further
//! attempt must wait an exponentially growing delay, answered at once as
//! `RESOURCE_EXHAUSTED` with a `RetryInfo` instead of holding a connection.
//!
//! State is per process: with several replicas a guesser gets at most
//! replicas × the allowance, which still bounds guessing to a crawl.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before delays start.
pub(crate) const FREE_FAILURES: u32 = 5;
/// First delay; doubles with every further failure.
pub(crate) const BASE_DELAY: Duration = Duration::from_secs(1);
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(300);
/// A quiet period after which an email's failures are forgotten.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Bounds memory under a spray of random emails.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// `Err(wait)` when `key` must not try again yet.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match failures.get(key).and_then(|entry| entry.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub(crate) fn record_failure(&self, key: &str, now: Instant) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, entry| now.duration_since(entry.last) < FORGET_AFTER);
            if failures.len() >= MAX_TRACKED {
                // Still full of live entries: drop the oldest half rather
                // than grow without bound.
                let mut ages: Vec<Instant> = failures.values().map(|entry| entry.last).collect();
                ages.sort();
                let cutoff = ages[ages.len() / 2];
                failures.retain(|_, entry| entry.last > cutoff);
            }
        }
        let entry = failures.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES).min(16);
            let delay = BASE_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
            entry.locked_until = Some(now + delay);
        }
    }

    pub(crate) fn record_success(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_grow() {
        let throttle = LoginThrottle::new();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.record_failure("a@b.c", start);
            assert!(throttle.check("a@b.c", start).is_ok());
        }
        throttle.record_failure("a@b.c", start);
        assert_eq!(throttle.check("a@b.c", start), Err(BASE_DELAY));
        let later = start + BASE_DELAY;
        assert!(throttle.check("a@b.c", later).is_ok());
        throttle.record_failure("a@b.c", later);
        assert_eq!(throttle.check("a@b.c", later), Err(BASE_DELAY * 2));
        assert!(throttle.check("other@b.c", later).is_ok());
        throttle.record_success("a@b.c");
        assert!(throttle.check("a@b.c", later).is_ok());
    }
}
