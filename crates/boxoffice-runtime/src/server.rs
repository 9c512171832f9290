//! Serving gRPC: one listener with the given services plus `grpc.health.v1`
//! and reflection (v1 and v1alpha, so both `grpcurl` and `buf curl` work),
//! explicit message limits, a span per call continuing the caller's trace
//! ([`crate::telemetry`]), the request checks of [`crate::wire`] (over the
//! network and in-process alike), and graceful shutdown: health turns
//! NOT_SERVING, the listener stops accepting, in-flight calls get the grace
//! period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::limits::TRANSPORT_MAX_HEADER_LIST_BYTES;
use crate::metrics::{RpcMetrics, RpcMetricsLayer};
use crate::shutdown::Shutdown;
use crate::transport::Transport;
use crate::wire::WireGuardLayer;

/// Largest request a service decodes unless it says otherwise (each
/// boxoffice service does: see [`crate::limits`]).
pub const MAX_DECODING_MESSAGE_SIZE: usize = crate::limits::DEFAULT_MAX_REQUEST_BYTES;
/// Largest response any boxoffice service encodes.
pub const MAX_ENCODING_MESSAGE_SIZE: usize = crate::limits::MAX_RESPONSE_BYTES;

/// A bound listener plus everything it will serve.
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: RoutesBuilder,
    health: HealthReporter,
    service_names: Vec<&'static str>,
    metrics: Arc<RpcMetrics>,
    ready: Arc<AtomicBool>,
}

impl GrpcServer {
    /// Binds now (port 0 picks a free port), so callers learn the address
    /// before serving starts.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local_addr = listener.local_addr()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(boxoffice_contracts::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building reflection v1")?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(boxoffice_contracts::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("building reflection v1alpha")?;
        routes.add_service(reflection_v1);
        routes.add_service(reflection_v1alpha);
        let metrics = Arc::new(RpcMetrics::default());
        metrics.register_service("grpc.health.v1.Health");
        Ok(Self {
            listener,
            local_addr,
            routes,
            health,
            service_names: Vec::new(),
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a service; its health status becomes SERVING when serving starts.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tonic::server::NamedService
            + tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.metrics.register_service(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Calls answered per method (see [`crate::metrics`]).
    pub fn metrics(&self) -> Arc<RpcMetrics> {
        self.metrics.clone()
    }

    /// True while the server serves: from its start until shutdown begins.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// A transport straight into the services added so far, for a service
    /// of this process that calls them (see [`crate::transport`]).
    pub fn in_process(&self) -> Transport {
        crate::transport::in_process(tower::Layer::layer(
            &WireGuardLayer,
            self.routes.clone().routes(),
        ))
    }

    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves until `shutdown` fires, then drains for at most `grace`.
    pub async fn run_until_stopped(
        self,
        shutdown: Shutdown,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            local_addr,
            routes,
            health,
            service_names,
            metrics,
            ready,
        } = self;
        for name in service_names.iter().copied().chain([""]) {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        ready.store(true, Ordering::Relaxed);
        let stop_signal = {
            let shutdown = shutdown.clone();
            let health = health.clone();
            let service_names = service_names.clone();
            async move {
                shutdown.cancelled().await;
                ready.store(false, Ordering::Relaxed);
                for name in service_names.iter().copied().chain([""]) {
                    health
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
                tracing::info!(%local_addr, "draining");
            }
        };
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .http2_max_header_list_size(TRANSPORT_MAX_HEADER_LIST_BYTES)
            .layer(RpcMetricsLayer(metrics))
            .layer(crate::telemetry::TraceLayer)
            .layer(WireGuardLayer)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, stop_signal);
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result.context("serving gRPC"),
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
                Ok(())
            }
        }
    }
}
