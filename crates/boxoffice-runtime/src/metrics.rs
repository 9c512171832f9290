//! What a service answers, per RPC, in the Prometheus text format: calls by
//! gRPC status code and a latency histogram (from the request's arrival to
//! the end of its response body, so a stream counts until it closes).
//!
//! The status is read where gRPC puts it: the response headers of a
//! trailers-only answer (every error), else the trailers. A response whose
//! body is dropped before its trailers (the client went away) counts as
//! `CANCELLED`. Only the methods of services this server registered get a
//! series of their own; any other path is counted under `unknown`, so a
//! caller cannot create series at will.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::Frame;

/// Upper bounds of the latency buckets, in milliseconds.
const BUCKETS_MS: [f64; 14] = [
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 10_000.0,
];
/// gRPC codes are 0..=16.
const CODES: usize = 17;

#[derive(Default)]
struct MethodStats {
    by_code: [AtomicU64; CODES],
    buckets: [AtomicU64; BUCKETS_MS.len()],
    sum_micros: AtomicU64,
}

impl MethodStats {
    fn record(&self, code: usize, started: Instant) {
        let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        // A code past the known ones counts as UNKNOWN.
        let code = if code < CODES { code } else { 2 };
        self.by_code[code].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let ms = micros as f64 / 1_000.0;
        if let Some(bucket) = BUCKETS_MS.iter().position(|bound| ms <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The latency of one kind of outgoing call (a dependency such as Redis),
/// with how many failed: lock-free, so it can be a `static` beside the
/// code that makes the calls, and cheap enough for every call on a hot
/// path (three atomic adds).
pub struct CallLatency {
    buckets: [AtomicU64; BUCKETS_MS.len()],
    count: AtomicU64,
    failed: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for CallLatency {
    fn default() -> Self {
        Self::new()
    }
}

impl CallLatency {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_MS.len()],
            count: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// One call that started at `started`; `ok` says whether it succeeded.
    pub fn record(&self, started: Instant, ok: bool) {
        let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        let ms = micros as f64 / 1_000.0;
        if let Some(bucket) = BUCKETS_MS.iter().position(|bound| ms <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus lines of the histogram `{name}_duration_seconds`
    /// and the counter `{name}_failures_total`, with `labels` (e.g.
    /// `store="inventory"`), to `out`. `HELP`/`TYPE` lines are the caller's.
    pub fn render_into(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                bound / 1_000.0
            );
        }
        let total = self.count();
        let _ = writeln!(
            out,
            "{name}_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "{name}_duration_seconds_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0
        );
        let _ = writeln!(out, "{name}_duration_seconds_count{{{labels}}} {total}");
        let _ = writeln!(
            out,
            "{name}_failures_total{{{labels}}} {}",
            self.failed.load(Ordering::Relaxed)
        );
    }
}

/// The server's per-method figures.
#[derive(Default)]
pub struct RpcMetrics {
    /// Service names whose methods get their own series.
    services: RwLock<Vec<String>>,
    methods: RwLock<HashMap<String, Arc<MethodStats>>>,
}

const UNKNOWN: &str = "unknown/unknown";

impl RpcMetrics {
    /// Methods of `service` (e.g. `boxoffice.inventory.v1.InventoryService`)
    /// get their own series.
    pub fn register_service(&self, service: &str) {
        self.services
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(service.to_owned());
    }

    fn stats(&self, path: &str) -> Arc<MethodStats> {
        let known = path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .filter(|(service, method)| {
                !method.is_empty()
                    && !method.contains('/')
                    && self
                        .services
                        .read()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .iter()
                        .any(|known| known == service)
            })
            .map(|(service, method)| format!("{service}/{method}"));
        let key = known.as_deref().unwrap_or(UNKNOWN);
        if let Some(stats) = self
            .methods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
        {
            return stats.clone();
        }
        self.methods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The Prometheus text of every method seen so far.
    pub fn render(&self) -> String {
        let methods = self
            .methods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut keys: Vec<&String> = methods.keys().collect();
        keys.sort();
        let mut out = String::new();
        out.push_str(
            "# HELP boxoffice_rpc_requests_total Calls answered, by method and gRPC status.\n",
        );
        out.push_str("# TYPE boxoffice_rpc_requests_total counter\n");
        for key in &keys {
            let (service, method) = key.split_once('/').unwrap_or((key, ""));
            for (code, count) in methods[*key].by_code.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "boxoffice_rpc_requests_total{{service=\"{service}\",method=\"{method}\",code=\"{}\"}} {count}",
                        code_name(code)
                    );
                }
            }
        }
        out.push_str("# HELP boxoffice_rpc_duration_seconds Time from a call's arrival to the end of its answer.\n");
        out.push_str("# TYPE boxoffice_rpc_duration_seconds histogram\n");
        for key in &keys {
            let (service, method) = key.split_once('/').unwrap_or((key, ""));
            let stats = &methods[*key];
            let labels = format!("service=\"{service}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (bound, count) in BUCKETS_MS.iter().zip(&stats.buckets) {
                cumulative += count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "boxoffice_rpc_duration_seconds_bucket{{{labels},le=\"{}\"}} {cumulative}",
                    bound / 1_000.0
                );
            }
            let total: u64 = stats
                .by_code
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            let _ = writeln!(
                out,
                "boxoffice_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(
                out,
                "boxoffice_rpc_duration_seconds_sum{{{labels}}} {}",
                stats.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0
            );
            let _ = writeln!(
                out,
                "boxoffice_rpc_duration_seconds_count{{{labels}}} {total}"
            );
        }
        out
    }
}

/// The gRPC name of a status code (`UNKNOWN` beyond the known ones).
pub fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; CODES] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code).copied().unwrap_or("UNKNOWN")
}

fn grpc_status(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// Records every call of the service it wraps into [`RpcMetrics`].
#[derive(Clone)]
pub struct RpcMetricsLayer(pub Arc<RpcMetrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let stats = self.metrics.stats(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let Some(code) = grpc_status(response.headers()) {
                stats.record(code, started);
                return Ok(response);
            }
            Ok(response.map(|body| {
                tonic::body::Body::new(MeteredBody {
                    inner: body,
                    stats: Some(stats),
                    started,
                })
            }))
        })
    }
}

/// A response body that records its call when its trailers arrive (or it
/// is dropped without them).
struct MeteredBody {
    inner: tonic::body::Body,
    stats: Option<Arc<MethodStats>>,
    started: Instant,
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.record(1, self.started);
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(2);
                    if let Some(stats) = self.stats.take() {
                        stats.record(code, self.started);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(stats) = self.stats.take() {
                    stats.record(2, self.started);
                }
            }
            Poll::Ready(None) => {
                // Ended without trailers: a gRPC answer always has them.
                if let Some(stats) = self.stats.take() {
                    stats.record(2, self.started);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_latency_renders_a_cumulative_histogram_and_its_failures() {
        let calls = CallLatency::new();
        calls.record(Instant::now(), true);
        calls.record(Instant::now(), false);
        let mut page = String::new();
        calls.render_into(&mut page, "boxoffice_redis_call", "store=\"inventory\"");
        assert!(page.contains(
            "boxoffice_redis_call_duration_seconds_bucket{store=\"inventory\",le=\"+Inf\"} 2"
        ));
        assert!(
            page.contains("boxoffice_redis_call_duration_seconds_count{store=\"inventory\"} 2")
        );
        assert!(page.contains("boxoffice_redis_call_failures_total{store=\"inventory\"} 1"));
        // Cumulative: the last finite bucket holds both (each took < 10 s).
        assert!(page.contains(
            "boxoffice_redis_call_duration_seconds_bucket{store=\"inventory\",le=\"10\"} 2"
        ));
    }

    #[test]
    fn only_registered_services_get_series_of_their_own() {
        let metrics = RpcMetrics::default();
        metrics.register_service("boxoffice.inventory.v1.InventoryService");
        let started = Instant::now();
        metrics
            .stats("/boxoffice.inventory.v1.InventoryService/HoldSeats")
            .record(0, started);
        metrics
            .stats("/boxoffice.inventory.v1.InventoryService/HoldSeats")
            .record(9, started);
        metrics.stats("/attacker.Made/Up1").record(12, started);
        metrics.stats("/attacker.Made/Up2").record(12, started);
        let text = metrics.render();
        assert!(text.contains(
            "boxoffice_rpc_requests_total{service=\"boxoffice.inventory.v1.InventoryService\",method=\"HoldSeats\",code=\"OK\"} 1"
        ), "{text}");
        assert!(text.contains("code=\"FAILED_PRECONDITION\"} 1"), "{text}");
        assert!(text.contains(
            "boxoffice_rpc_requests_total{service=\"unknown\",method=\"unknown\",code=\"UNIMPLEMENTED\"} 2"
        ), "{text}");
        assert!(!text.contains("attacker"), "{text}");
        assert!(text.contains(
            "boxoffice_rpc_duration_seconds_count{service=\"boxoffice.inventory.v1.InventoryService\",method=\"HoldSeats\"} 2"
        ), "{text}");
    }
}
