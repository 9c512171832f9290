//! Logs and traces. Structured logs go to stderr (text or JSON); when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP
//! gRPC. The returned guard flushes the exporter on shutdown.
//!
//! Traces cross processes as W3C `traceparent` headers: [`server_span`]
//! continues the caller's trace for a call this process serves (the
//! [`TraceLayer`] every server runs), [`client_span`] and [`inject`] start a
//! call to another service or the payment provider as its child. Without an
//! exporter every one of them is [`Span::none`]: no span is created, nothing
//! is allocated and no header is written.
//!
//! Stores mark their PostgreSQL and Redis work with TRACE spans under the
//! [`DB_TARGET`] target (`#[instrument(level = "trace", target =
//! "boxoffice::db", fields(otel.kind = "client", db.system = …))]`): the
//! exporter takes them, the logs never do, so without an exporter they are
//! disabled call sites that cost a cached check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing::instrument::{Instrument as _, Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{Config, LogFormat};

/// Keeps the span exporter alive; call [`Telemetry::shutdown`] last.
#[must_use = "dropping the guard without shutdown loses buffered spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber. Must run inside the Tokio runtime,
    /// which the OTLP exporter uses.
    pub fn init(config: &Config) -> anyhow::Result<Self> {
        let filter = EnvFilter::try_new(&config.log_filter)
            .with_context(|| format!("log filter '{}' is not valid", config.log_filter))?;
        let provider = match &config.otlp_endpoint {
            Some(endpoint) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .build()
                    .context("building the OTLP span exporter")?;
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(
                            opentelemetry_sdk::Resource::builder()
                                .with_service_name(config.service_name.clone())
                                .build(),
                        )
                        .build(),
                )
            }
            None => None,
        };
        // The log filter applies to the logs alone: spans of INFO and up
        // (and the stores' TRACE spans) are exported whatever the log level:
        // a quiet `warn` log still exports whole traces.
        let otel_layer = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("boxoffice"))
                .with_filter(
                    Targets::new()
                        .with_default(LevelFilter::INFO)
                        .with_target(DB_TARGET, LevelFilter::TRACE),
                )
        });
        let registry = tracing_subscriber::registry().with(otel_layer);
        let result = match config.log_format {
            LogFormat::Text => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
                )
                .try_init(),
            LogFormat::Json => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
                )
                .try_init(),
        };
        // A second init (tests, embedded use) keeps the first subscriber.
        if result.is_err() {
            tracing::debug!("a tracing subscriber was already installed");
        }
        if let Some(provider) = &provider
            && result.is_ok()
        {
            EXPORTING.store(true, Ordering::Relaxed);
            opentelemetry::global::set_tracer_provider(provider.clone());
            tracing::info!(
                endpoint = config.otlp_endpoint.as_deref().unwrap_or_default(),
                "exporting traces over OTLP"
            );
        }
        Ok(Self { provider })
    }

    /// Flushes buffered spans.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing telemetry failed: {error}");
        }
    }
}

/// Whether spans leave this process (an exporter is installed): until then
/// the span helpers below answer [`Span::none`].
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// True when this process exports traces.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The target of the stores' spans (see the module's documentation).
pub const DB_TARGET: &str = "boxoffice::db";

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// `/package.Service/Method` as its service and method.
fn rpc_parts(path: &str) -> (&str, &str) {
    path.strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or(("", ""))
}

/// The span of one call this process serves (`path` is the gRPC method),
/// continuing the trace of the caller's `traceparent` when it sent one.
pub fn server_span(path: &str, headers: &HeaderMap) -> Span {
    if !exporting() {
        return Span::none();
    }
    let (service, method) = rpc_parts(path);
    let span = tracing::info_span!(
        target: "boxoffice::rpc",
        "grpc.server",
        otel.name = path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if headers.contains_key(TRACEPARENT) {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Fails only when the span is disabled, and then there is nothing
        // to continue.
        let _ = span.set_parent(parent);
    }
    span
}

/// The span of one gRPC call this process makes (`path` is the method), a
/// child of the current span; [`inject`] it into the call's headers.
pub fn client_span(path: &str) -> Span {
    if !exporting() {
        return Span::none();
    }
    let (service, method) = rpc_parts(path);
    tracing::info_span!(
        target: "boxoffice::rpc",
        "grpc.client",
        otel.name = path,
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    )
}

/// The span of one HTTP call to another system (`name` says which), a
/// child of the current span; [`inject`] it into the request's headers.
pub fn http_client_span(name: &'static str, method: &'static str) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!(
        target: "boxoffice::http",
        "http.client",
        otel.name = name,
        otel.kind = "client",
        http.request.method = method,
    )
}

/// Writes `span`'s trace context as `traceparent` into outgoing headers
/// (nothing for a disabled span).
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_none() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The span of every call a server serves ([`server_span`]); the calls
/// the handler makes inside it become its children.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct TraceService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = server_span(request.uri().path(), request.headers());
        let _entered = span.enter();
        self.inner.call(request).instrument(span.clone())
    }
}

/// A client transport that makes every call a [`client_span`] carried in
/// its `traceparent`.
#[derive(Clone, Debug)]
pub struct TracedClient<S> {
    inner: S,
}

impl<S> TracedClient<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for TracedClient<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = client_span(request.uri().path());
        inject(&span, request.headers_mut());
        let _entered = span.enter();
        self.inner.call(request).instrument(span.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_no_span_is_made_and_no_header_written() {
        assert!(!exporting());
        let mut headers = HeaderMap::new();
        let span = client_span("/boxoffice.inventory.v1.InventoryService/CommitHold");
        assert!(span.is_none());
        inject(&span, &mut headers);
        assert!(headers.is_empty());
        assert!(server_span("/a.B/C", &headers).is_none());
    }

    #[test]
    fn rpc_paths_split_into_service_and_method() {
        assert_eq!(
            rpc_parts("/boxoffice.inventory.v1.InventoryService/HoldSeats"),
            ("boxoffice.inventory.v1.InventoryService", "HoldSeats")
        );
        assert_eq!(rpc_parts("nonsense"), ("", ""));
    }
}
