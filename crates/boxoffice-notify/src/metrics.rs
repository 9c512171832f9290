//! The senders running in this process, as Prometheus metrics: messages
//! sent, attempts that failed (the SMTP server down or refusing), messages
//! given up or suppressed, and what waits (how many, and the oldest's age).
//! Whoever serves this process's `/metrics` appends [`render`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Counters of one sender.
#[derive(Debug, Default)]
pub struct SenderStats {
    pub(crate) sent: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) suppressed: AtomicU64,
    pub(crate) given_up: AtomicU64,
    pub(crate) waiting: AtomicU64,
    pub(crate) oldest_waiting_ms: AtomicU64,
}

/// A copy of [`SenderStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderSnapshot {
    pub sent: u64,
    /// Send attempts that failed and will be retried (or were permanent).
    pub failed_attempts: u64,
    /// Marketing mail not sent because the user opted out.
    pub suppressed: u64,
    /// Messages that will never be sent (no address, a permanent refusal).
    pub given_up: u64,
    /// Messages recorded and not yet sent, at the last look.
    pub waiting: u64,
    pub oldest_waiting_ms: u64,
}

impl SenderStats {
    pub fn snapshot(&self) -> SenderSnapshot {
        SenderSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            suppressed: self.suppressed.load(Ordering::Relaxed),
            given_up: self.given_up.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            oldest_waiting_ms: self.oldest_waiting_ms.load(Ordering::Relaxed),
        }
    }
}

static SENDERS: Mutex<Vec<Weak<SenderStats>>> = Mutex::new(Vec::new());

pub(crate) fn register(stats: &Arc<SenderStats>) {
    let mut senders = SENDERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    senders.retain(|stats| stats.strong_count() > 0);
    senders.push(Arc::downgrade(stats));
}

/// The metrics of every live sender (summed), in the Prometheus text format.
pub fn render() -> String {
    let senders: Vec<Arc<SenderStats>> = SENDERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    if senders.is_empty() {
        return String::new();
    }
    let mut total = SenderSnapshot::default();
    for stats in &senders {
        let snapshot = stats.snapshot();
        total.sent += snapshot.sent;
        total.failed_attempts += snapshot.failed_attempts;
        total.suppressed += snapshot.suppressed;
        total.given_up += snapshot.given_up;
        total.waiting = total.waiting.max(snapshot.waiting);
        total.oldest_waiting_ms = total.oldest_waiting_ms.max(snapshot.oldest_waiting_ms);
    }
    let families: [(&str, &str, &str, u64); 6] = [
        (
            "boxoffice_notify_sent_total",
            "counter",
            "Messages the SMTP server accepted.",
            total.sent,
        ),
        (
            "boxoffice_notify_send_failures_total",
            "counter",
            "Send attempts that failed (server down or refusing); the message is retried.",
            total.failed_attempts,
        ),
        (
            "boxoffice_notify_suppressed_total",
            "counter",
            "Marketing messages not sent because the user opted out.",
            total.suppressed,
        ),
        (
            "boxoffice_notify_given_up_total",
            "counter",
            "Messages that will never be sent (no address, permanent refusal).",
            total.given_up,
        ),
        (
            "boxoffice_notify_waiting_messages",
            "gauge",
            "Messages recorded and not yet sent.",
            total.waiting,
        ),
        (
            "boxoffice_notify_oldest_waiting_milliseconds",
            "gauge",
            "Age of the oldest message not yet sent.",
            total.oldest_waiting_ms,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}
