//! Prometheus metrics without a registry crate: per-method request counts by
//! gRPC code and latency histograms are plain atomics indexed by the route
//! table, so recording costs a few relaxed adds; the admin port renders the
//! text format on demand.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::routes::RouteTable;
use crate::upstream::Cluster;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const CODES: usize = 17;

struct MethodStats {
    service: String,
    method: String,
    by_code: [AtomicU64; CODES],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl MethodStats {
    fn new(service: &str, method: &str) -> Self {
        Self {
            service: service.to_owned(),
            method: method.to_owned(),
            by_code: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

pub(crate) struct Metrics {
    methods: Vec<MethodStats>,
    /// Requests that matched no route (and local services).
    other: MethodStats,
    pub rate_limited_address: AtomicU64,
    pub rate_limited_user: AtomicU64,
    /// JoinQueue calls refused by the join limits.
    pub rate_limited_joins: AtomicU64,
    /// Rush calls answered "sold out" by the edge itself.
    pub sold_out_answers: AtomicU64,
    pub unauthenticated: AtomicU64,
    pub retries: AtomicU64,
    /// Outcomes of admin calls the audit log could not take.
    pub audit_outcomes_lost: Arc<AtomicU64>,
}

impl Metrics {
    pub(crate) fn new(routes: &RouteTable) -> Self {
        Self {
            methods: routes
                .methods()
                .iter()
                .map(|route| MethodStats::new(&route.service, &route.method))
                .collect(),
            other: MethodStats::new("", "unrouted"),
            rate_limited_address: AtomicU64::new(0),
            rate_limited_user: AtomicU64::new(0),
            rate_limited_joins: AtomicU64::new(0),
            sold_out_answers: AtomicU64::new(0),
            unauthenticated: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            audit_outcomes_lost: Arc::default(),
        }
    }

    pub(crate) fn record(&self, method: Option<usize>, code: i32, duration: Duration) {
        let stats = method
            .and_then(|index| self.methods.get(index))
            .unwrap_or(&self.other);
        let code = usize::try_from(code)
            .ok()
            .filter(|code| *code < CODES)
            .unwrap_or(2);
        stats.by_code[code].fetch_add(1, Ordering::Relaxed);
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        stats
            .sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        stats.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub(crate) fn render(&self, clusters: &[Arc<Cluster>]) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP boxoffice_edge_requests_total Requests through the edge by method and gRPC code.\n");
        out.push_str("# TYPE boxoffice_edge_requests_total counter\n");
        for stats in self.methods.iter().chain([&self.other]) {
            for (code, count) in stats.by_code.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "boxoffice_edge_requests_total{{service=\"{}\",method=\"{}\",code=\"{}\"}} {count}",
                        stats.service,
                        stats.method,
                        code_name(code)
                    );
                }
            }
        }
        out.push_str(
            "# HELP boxoffice_edge_request_duration_seconds Time from request to response end.\n",
        );
        out.push_str("# TYPE boxoffice_edge_request_duration_seconds histogram\n");
        for stats in self.methods.iter().chain([&self.other]) {
            let count = stats.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("service=\"{}\",method=\"{}\"", stats.service, stats.method);
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "boxoffice_edge_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "boxoffice_edge_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "boxoffice_edge_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "boxoffice_edge_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out.push_str(
            "# HELP boxoffice_edge_upstream_healthy 1 when the endpoint is in rotation.\n",
        );
        out.push_str("# TYPE boxoffice_edge_upstream_healthy gauge\n");
        for cluster in clusters {
            for endpoint in cluster.endpoints().iter() {
                let _ = writeln!(
                    out,
                    "boxoffice_edge_upstream_healthy{{cluster=\"{}\",endpoint=\"{}\"}} {}",
                    cluster.name,
                    endpoint.authority,
                    u8::from(endpoint.is_healthy())
                );
            }
        }
        out.push_str("# TYPE boxoffice_edge_upstream_requests_total counter\n");
        for cluster in clusters {
            for endpoint in cluster.endpoints().iter() {
                let _ = writeln!(
                    out,
                    "boxoffice_edge_upstream_requests_total{{cluster=\"{}\",endpoint=\"{}\"}} {}",
                    cluster.name,
                    endpoint.authority,
                    endpoint.requests.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# TYPE boxoffice_edge_upstream_failures_total counter\n");
        for cluster in clusters {
            for endpoint in cluster.endpoints().iter() {
                let _ = writeln!(
                    out,
                    "boxoffice_edge_upstream_failures_total{{cluster=\"{}\",endpoint=\"{}\"}} {}",
                    cluster.name,
                    endpoint.authority,
                    endpoint.failures.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# TYPE boxoffice_edge_upstream_in_flight gauge\n");
        out.push_str("# TYPE boxoffice_edge_upstream_rejected_total counter\n");
        for cluster in clusters {
            let _ = writeln!(
                out,
                "boxoffice_edge_upstream_in_flight{{cluster=\"{}\"}} {}",
                cluster.name,
                cluster.in_flight()
            );
            let _ = writeln!(
                out,
                "boxoffice_edge_upstream_rejected_total{{cluster=\"{}\"}} {}",
                cluster.name,
                cluster.rejected.load(Ordering::Relaxed)
            );
        }
        out.push_str("# TYPE boxoffice_edge_rate_limited_total counter\n");
        let _ = writeln!(
            out,
            "boxoffice_edge_rate_limited_total{{key=\"address\"}} {}",
            self.rate_limited_address.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "boxoffice_edge_rate_limited_total{{key=\"user\"}} {}",
            self.rate_limited_user.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "boxoffice_edge_rate_limited_total{{key=\"join\"}} {}",
            self.rate_limited_joins.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE boxoffice_edge_sold_out_answers_total counter\n");
        let _ = writeln!(
            out,
            "boxoffice_edge_sold_out_answers_total {}",
            self.sold_out_answers.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE boxoffice_edge_rejected_tokens_total counter\n");
        let _ = writeln!(
            out,
            "boxoffice_edge_rejected_tokens_total {}",
            self.unauthenticated.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE boxoffice_edge_audit_outcomes_lost_total counter\n");
        let _ = writeln!(
            out,
            "boxoffice_edge_audit_outcomes_lost_total {}",
            self.audit_outcomes_lost.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE boxoffice_edge_retries_total counter\n");
        let _ = writeln!(
            out,
            "boxoffice_edge_retries_total {}",
            self.retries.load(Ordering::Relaxed)
        );
        out
    }
}

pub(crate) use boxoffice_runtime::metrics::code_name;
