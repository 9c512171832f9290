//! The latency and failures of inventory's Redis script calls (holds,
//! sweeps, the waiting room), recorded by both Redis stores and shown on
//! `/metrics`.

/// Every script call of inventory's Redis stores (holds, sweeps, the
/// waiting room): latency and failures, on `/metrics`.
pub(crate) static REDIS_CALLS: boxoffice_runtime::metrics::CallLatency =
    boxoffice_runtime::metrics::CallLatency::new();

/// The latency of inventory's Redis calls (nothing before the first).
pub(crate) fn render_calls() -> String {
    let calls = &REDIS_CALLS;
    if calls.count() == 0 {
        return String::new();
    }
    let mut page = String::from(
        "# HELP boxoffice_redis_call_duration_seconds Time of one Redis script call, from sending to the answer.\n\
         # TYPE boxoffice_redis_call_duration_seconds histogram\n\
         # HELP boxoffice_redis_call_failures_total Redis script calls that failed (connection, timeout, script error).\n\
         # TYPE boxoffice_redis_call_failures_total counter\n",
    );
    calls.render_into(&mut page, "boxoffice_redis_call", "store=\"inventory\"");
    page
}
