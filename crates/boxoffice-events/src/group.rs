//! What a consumer group is made of, shared by the group's runner
//! ([`crate::consumer`]), its transports ([`crate::postgres`],
//! [`crate::nats`]) and [`crate::metrics`]: its configuration, its
//! counters, and an event as a transport hands it over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::outbox::check_identifier;

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// The group's name: every instance with this name shares one
    /// checkpoint per stream.
    pub group: String,
    /// The consumer service's own schema, which holds the group's
    /// checkpoints, dead letters and processed events.
    pub schema: String,
    /// The producers whose streams the group reads.
    pub streams: Vec<String>,
    /// Events per batch (and per handler call, at most).
    pub batch_size: usize,
    /// Looks for new events this often even without a notification.
    pub idle_poll: Duration,
    /// How long a consumer that caught up waits after a notification
    /// before reading: the commits of that moment are read in one batch
    /// rather than one read (and one handler transaction) per commit. Adds
    /// at most this much to the lag.
    pub linger: Duration,
    /// The least time between two reads of a stream by a caught-up
    /// consumer: under a steady flow of commits, a notification that comes
    /// sooner than this after the last read waits until it has passed, so
    /// the consumer reads (and runs its handler transaction and checkpoint)
    /// at most about `1 / pace` times a second per stream however many
    /// commits wake it. A consumer woken after a quiet spell reads after
    /// `linger` alone. Adds at most this much to the lag under load.
    pub pace: Duration,
    /// Attempts at an event the handler reports as failed before it is
    /// dead-lettered.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// JetStream: how long a delivered batch may stay unacknowledged before
    /// the server offers it again (a crashed consumer's batch comes back
    /// after this).
    pub ack_wait: Duration,
    /// A group of this process alone (e.g. one feeding an in-memory
    /// index): its position is dropped when it stops (PostgreSQL) or
    /// expires an hour after its last read (JetStream).
    pub ephemeral: bool,
}

/// `BOXOFFICE_EVENTS_LINGER_MS`: how long a caught-up consumer (and the
/// NATS relay) waits after a notification before reading, in every group
/// of the process; unset or unreadable, [`DEFAULT_LINGER`]. Longer makes
/// fewer, larger batches (less work per event on the cores the
/// confirmations run on) for more lag.
pub const ENV_LINGER_MS: &str = "BOXOFFICE_EVENTS_LINGER_MS";
pub const DEFAULT_LINGER: Duration = Duration::from_millis(10);
/// The most [`ENV_LINGER_MS`] may ask for.
const MAX_LINGER: Duration = Duration::from_secs(1);

/// `BOXOFFICE_EVENTS_PACE_MS`: [`ConsumerConfig::pace`] for every group of
/// the process; unset or unreadable, [`DEFAULT_PACE`] (never below the
/// linger).
pub const ENV_PACE_MS: &str = "BOXOFFICE_EVENTS_PACE_MS";
/// Measured (benches/HISTORY.md, 2026-12-07): at 10 ms, the consumers
/// following confirmations cost a third of ConfirmBooking's throughput on
/// 2 cores; at 50 ms nearly nothing, with the lag at 1,000 events/s still
/// within issue 18's 100 ms.
pub const DEFAULT_PACE: Duration = Duration::from_millis(50);

pub(crate) fn default_pace() -> Duration {
    static PACE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PACE.get_or_init(|| millis_from_env(ENV_PACE_MS, DEFAULT_PACE).max(default_linger()))
}

pub(crate) fn default_linger() -> Duration {
    static LINGER: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LINGER.get_or_init(|| millis_from_env(ENV_LINGER_MS, DEFAULT_LINGER))
}

/// Milliseconds from `variable`, at most [`MAX_LINGER`]; `default` when
/// unset or unreadable.
fn millis_from_env(variable: &str, default: Duration) -> Duration {
    std::env::var(variable)
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(default, Duration::from_millis)
        .min(MAX_LINGER)
}

impl ConsumerConfig {
    pub fn new(group: &str, schema: &str, streams: &[&str]) -> Self {
        Self {
            group: group.to_owned(),
            schema: schema.to_owned(),
            streams: streams.iter().map(|s| (*s).to_owned()).collect(),
            batch_size: 500,
            idle_poll: Duration::from_secs(1),
            linger: default_linger(),
            pace: default_pace(),
            max_attempts: 5,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(10),
            ack_wait: Duration::from_secs(30),
            ephemeral: false,
        }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        check_identifier(&self.schema)?;
        anyhow::ensure!(
            !self.group.is_empty()
                && self.group.len() <= 64
                && self
                    .group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "group names are letters, digits, '-' and '_'"
        );
        anyhow::ensure!(
            !self.streams.is_empty(),
            "a group reads at least one stream"
        );
        for stream in &self.streams {
            check_identifier(stream)?;
        }
        anyhow::ensure!(self.batch_size > 0, "batch size must be positive");
        anyhow::ensure!(self.max_attempts > 0, "max attempts must be positive");
        Ok(())
    }
}

/// Counters of one group in this process (all streams together).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub(crate) handled: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) skipped_unknown: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) lag_events: AtomicU64,
    pub(crate) lag_ms: AtomicU64,
}

/// A copy of [`ConsumerStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events the handler finished.
    pub handled: u64,
    pub batches: u64,
    /// Events of a type this build does not know.
    pub skipped_unknown: u64,
    pub dead_lettered: u64,
    /// Handler calls that failed and were retried.
    pub retries: u64,
    /// Events in the stream after the last batch (the backlog).
    pub lag_events: u64,
    /// From the last handled event's `occurred_at` to the end of its batch.
    pub lag_ms: u64,
}

impl ConsumerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            handled: self.handled.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            skipped_unknown: self.skipped_unknown.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            lag_events: self.lag_events.load(Ordering::Relaxed),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_lag(&self, events: u64) {
        self.lag_events.store(events, Ordering::Relaxed);
    }
}

/// One event as a transport hands it over: still bytes.
pub(crate) struct Raw {
    pub(crate) position: u64,
    pub(crate) bytes: bytes::Bytes,
    pub(crate) ack: Option<async_nats::jetstream::Message>,
}
