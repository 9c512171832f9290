//! The consumer groups running in this process, as Prometheus metrics:
//! events handled, dead-lettered, skipped and retried, and the lag (events
//! behind, and milliseconds from an event's commit to its handler). Whoever
//! serves this process's `/metrics` appends [`render`].

use std::sync::{Arc, Mutex, Weak};

use crate::group::ConsumerStats;

/// (schema, group, stats) of every group started in this process; a group
/// that is gone drops out.
static GROUPS: Mutex<Vec<(String, String, Weak<ConsumerStats>)>> = Mutex::new(Vec::new());

pub(crate) fn register(schema: &str, group: &str, stats: &Arc<ConsumerStats>) {
    let mut groups = GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    groups.retain(|(_, _, stats)| stats.strong_count() > 0);
    groups.push((schema.to_owned(), group.to_owned(), Arc::downgrade(stats)));
}

/// The metrics of every live group, in the Prometheus text format.
pub fn render() -> String {
    let groups: Vec<(String, String, Arc<ConsumerStats>)> = GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter_map(|(schema, group, stats)| {
            stats
                .upgrade()
                .map(|stats| (schema.clone(), group.clone(), stats))
        })
        .collect();
    let mut out = String::new();
    type Field = fn(&crate::group::StatsSnapshot) -> u64;
    let families: [(&str, &str, &str, Field); 6] = [
        (
            "boxoffice_event_consumer_handled_total",
            "counter",
            "Events the group's handler finished.",
            |s| s.handled,
        ),
        (
            "boxoffice_event_consumer_dead_lettered_total",
            "counter",
            "Events the group put in its dead-letter table.",
            |s| s.dead_lettered,
        ),
        (
            "boxoffice_event_consumer_skipped_unknown_total",
            "counter",
            "Events of a type this build does not know, skipped.",
            |s| s.skipped_unknown,
        ),
        (
            "boxoffice_event_consumer_retries_total",
            "counter",
            "Handler calls that failed and were retried.",
            |s| s.retries,
        ),
        (
            "boxoffice_event_consumer_lag_events",
            "gauge",
            "Events in the group's streams after its last batch.",
            |s| s.lag_events,
        ),
        (
            "boxoffice_event_consumer_lag_milliseconds",
            "gauge",
            "From the last handled event's commit to the end of its batch.",
            |s| s.lag_ms,
        ),
    ];
    for (name, kind, help, field) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (schema, group, stats) in &groups {
            out.push_str(&format!(
                "{name}{{schema=\"{schema}\",group=\"{group}\"}} {}\n",
                field(&stats.snapshot())
            ));
        }
    }
    out
}
