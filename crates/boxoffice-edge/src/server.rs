//! The edge's listeners: the public one (HTTP/1.1 and HTTP/2 on one port),
//! and the admin one (`/metrics`, `/ready`). Binding happens in
//! [`Edge::bind`], so callers learn both addresses before serving starts;
//! shutdown drains connections within the grace period.
//!
//! Each public connection is served by [`ConnectionService`]: plain gRPC
//! over HTTP/2 without an `Origin` (services, grpcurl, the load generator)
//! goes straight to the proxy with hyper's own body types; everything else
//! (grpc-web, CORS preflights, browsers, HTTP/1.1) goes through the CORS →
//! grpc-web translation layers first, built once per edge.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_accounts::TokenConfig;
use boxoffice_accounts::token::TokenVerifier;
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::transport::Transport;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::audit::AuditTrail;
use crate::auth::Authenticator;
use crate::config::EdgeConfig;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::proxy::{self, EdgeState, Limits, PeerAddr, ResponseBody};
use crate::revocation::Revocations;
use crate::routes::RouteTable;
use crate::upstream::Cluster;
use crate::web::WebFiles;

/// Streams one client connection may have open at once (idle watches
/// included); HTTP/2's usual 100–200 is too few for a browser tab that
/// watches many seat maps through one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4096;

/// A bound edge, ready to serve.
pub struct Edge {
    listener: TcpListener,
    admin: Option<TcpListener>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    state: Arc<EdgeState>,
    health: HealthReporter,
    cors: CorsLayer,
    grace: Duration,
    web: Option<Arc<WebFiles>>,
    discovery: crate::config::DiscoveryConfig,
    /// How the edge reaches accounts' revocation feed (none: no accounts
    /// route, or turned off).
    revocation_feed: Option<Transport>,
    /// How the edge reaches inventory's sold-out feed.
    sold_out_feed: Option<Transport>,
}

/// The service that publishes revocations.
const ACCOUNTS_SERVICE: &str = "boxoffice.accounts.v1.AccountsService";
/// The service that publishes sold-out events.
const INVENTORY_SERVICE: &str = "boxoffice.inventory.v1.InventoryService";

/// A balanced channel over the endpoints of the cluster `service` is routed
/// to, if it has any.
fn cluster_transport(config: &EdgeConfig, service: &str) -> Option<Transport> {
    config
        .routes
        .iter()
        .find(|route| route.service == service)
        .and_then(|route| config.clusters.get(&route.cluster))
        .filter(|cluster| !cluster.endpoints.is_empty())
        .map(|cluster| {
            let endpoints = cluster
                .endpoints
                .iter()
                .filter_map(|endpoint| {
                    tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
                        .ok()
                        .map(|endpoint| {
                            endpoint
                                .connect_timeout(Duration::from_secs(5))
                                .tcp_nodelay(true)
                        })
                })
                .collect::<Vec<_>>();
            boxoffice_runtime::transport::over_channel(tonic::transport::Channel::balance_list(
                endpoints.into_iter(),
            ))
        })
}

/// Read-only view of a running edge (tests, the admin listener).
#[derive(Clone)]
pub struct EdgeHandle {
    state: Arc<EdgeState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStats {
    pub cluster: String,
    pub endpoint: String,
    pub healthy: bool,
    pub requests: u64,
    pub failures: u64,
}

impl EdgeHandle {
    /// How many events the edge answers "sold out" for, and whether it
    /// follows inventory's feed now.
    pub fn sold_out(&self) -> (usize, bool) {
        (
            self.state.sold_out.len(),
            self.state.sold_out.is_connected(),
        )
    }

    pub fn endpoints(&self) -> Vec<EndpointStats> {
        self.state
            .clusters
            .iter()
            .flat_map(|cluster| {
                cluster
                    .endpoints()
                    .iter()
                    .map(|endpoint| EndpointStats {
                        cluster: cluster.name.clone(),
                        endpoint: endpoint.authority.clone(),
                        healthy: endpoint.is_healthy(),
                        requests: endpoint.requests.load(Ordering::Relaxed),
                        failures: endpoint.failures.load(Ordering::Relaxed),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Sessions this edge knows to be revoked, and whether its feed is up.
    pub fn revocations(&self) -> Option<(usize, bool)> {
        self.state
            .auth
            .revocations()
            .map(|revocations| (revocations.len(), revocations.is_connected()))
    }

    pub fn metrics_text(&self) -> String {
        let mut text = self.state.metrics.render(&self.state.clusters);
        if let Some(render) = self.state.process_metrics.get() {
            text.push_str(&render());
        }
        text
    }
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| origin.parse().ok())
        .collect();
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("x-request-id"),
            header("traceparent"),
            header("tracestate"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
            header("x-request-id"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

impl Edge {
    /// Validates routes against the contracts and binds both listeners.
    pub async fn bind(config: EdgeConfig, tokens: &TokenConfig) -> anyhow::Result<Self> {
        Self::bind_serving(config, tokens, None).await
    }

    /// An edge in the same process as the services it routes to (`boxoffice
    /// up`): every call goes straight into `services` (the process's own
    /// gRPC services, see [`GrpcServer::in_process`]) instead of over a
    /// loopback connection, saving an HTTP/2 hop each way. Everything else
    /// (auth, limits, deadlines, metrics, access log) is as over the
    /// network, and the configured endpoints are still health-checked.
    ///
    /// [`GrpcServer::in_process`]: boxoffice_runtime::server::GrpcServer::in_process
    pub async fn bind_in_process(
        config: EdgeConfig,
        tokens: &TokenConfig,
        services: Transport,
    ) -> anyhow::Result<Self> {
        Self::bind_serving(config, tokens, Some(services)).await
    }

    async fn bind_serving(
        config: EdgeConfig,
        tokens: &TokenConfig,
        services: Option<Transport>,
    ) -> anyhow::Result<Self> {
        let cluster_names: Vec<String> = config.clusters.keys().cloned().collect();
        let cluster_index: HashMap<String, usize> = cluster_names
            .iter()
            .enumerate()
            .map(|(index, name)| (name.clone(), index))
            .collect();
        let clusters: Vec<Arc<Cluster>> = config
            .clusters
            .iter()
            .map(|(name, cluster)| {
                let mut cluster = Cluster::new(name, cluster, config.max_concurrent_per_upstream);
                cluster.in_process = services.clone();
                Arc::new(cluster)
            })
            .collect();
        let routes = RouteTable::compile(
            &config.routes,
            &[boxoffice_contracts::FILE_DESCRIPTOR_SET],
            &cluster_index,
        )?;
        for (service, cluster) in routes.routed_services() {
            if clusters[cluster].endpoints().is_empty() && clusters[cluster].in_process.is_none() {
                tracing::warn!(%service, cluster = %clusters[cluster].name, "no upstream endpoints; calls will be UNAVAILABLE");
            }
        }

        let (health, health_service) = tonic_health::server::health_reporter();
        // Reflection advertises what the edge routes (plus health and
        // reflection themselves), not every contract compiled in: the
        // testing echo service, for one, is nobody's business here.
        let mut advertised: Vec<String> = routes
            .routed_services()
            .into_iter()
            .map(|(service, _)| service)
            .collect();
        advertised.extend(
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
            .map(str::to_owned),
        );
        let reflection = || {
            advertised.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(boxoffice_contracts::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(name.clone()),
            )
        };
        let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .context("building reflection v1alpha")?;
        let local = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .prepare();

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the edge to {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let admin = match config.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the edge admin port {addr}"))?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;

        let web = match &config.web_dir {
            Some(dir) => Some(Arc::new(WebFiles::load(dir)?)),
            None => None,
        };
        let metrics = Metrics::new(&routes);
        // The revocation feed comes from accounts: in this process, or
        // over the network from the accounts cluster's endpoints.
        let revocation_feed = match &services {
            Some(local) => Some(local.clone()),
            None => cluster_transport(&config, ACCOUNTS_SERVICE),
        };
        // So does inventory's sold-out feed.
        let sold_out_feed = match &services {
            Some(local) => Some(local.clone()),
            None => cluster_transport(&config, INVENTORY_SERVICE),
        };
        // Admin calls are recorded by the audit service beside checkout:
        // in this process, or over the network.
        let audit_service = match &services {
            Some(local) => Some(local.clone()),
            None => cluster_transport(&config, crate::audit::AUDIT_SERVICE),
        };
        if audit_service.is_none() {
            tracing::warn!("no audit service is routed: admin calls are not recorded");
        }
        let audit = audit_service
            .map(|service| AuditTrail::start(service, metrics.audit_outcomes_lost.clone()));
        let mut auth = Authenticator::new(TokenVerifier::new(tokens));
        if revocation_feed.is_some() {
            auth = auth.with_revocations(Arc::new(Revocations::new()));
        }
        let state = Arc::new(EdgeState {
            routes,
            clusters,
            auth,
            by_address: RateLimiter::new(config.rate_per_address),
            by_user: RateLimiter::new(config.rate_per_user),
            joins_by_address: RateLimiter::new(config.joins_per_address),
            joins_by_user: RateLimiter::new(config.joins_per_user),
            sold_out: Arc::default(),
            metrics,
            limits: Limits {
                default_timeout: config.default_timeout,
                max_timeout: config.max_timeout,
                max_message_bytes: config.max_message_bytes,
                access_log: config.access_log,
            },
            local,
            process_metrics: std::sync::OnceLock::new(),
            audit,
        });
        Ok(Self {
            listener,
            admin,
            local_addr,
            admin_addr,
            state,
            health,
            cors: cors_layer(&config.cors_origins),
            grace: config.shutdown_grace,
            web,
            discovery: config.discovery,
            revocation_feed,
            sold_out_feed,
        })
    }

    /// Serves without following revocations: a revoked session's access
    /// tokens then work until they expire (benchmarks compare the two).
    pub fn without_revocation_feed(mut self) -> Self {
        self.revocation_feed = None;
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.auth.disable_revocations();
        }
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Adds `render`'s text (more of this process's metrics, in the
    /// Prometheus format) to the admin listener's `/metrics`.
    pub fn with_process_metrics(self, render: fn() -> String) -> Self {
        let _ = self.state.process_metrics.set(render);
        self
    }

    pub fn handle(&self) -> EdgeHandle {
        EdgeHandle {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` fires, then drains for at most the grace period.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            listener,
            admin,
            local_addr,
            admin_addr,
            state,
            health,
            cors,
            grace,
            web,
            discovery,
            revocation_feed,
            sold_out_feed,
        } = self;
        let resolver = match discovery.dns_server {
            Some(server) => crate::discovery::Resolver::Server(server),
            None => crate::discovery::Resolver::System,
        };
        if let (Some(feed), Some(revocations)) = (revocation_feed, state.auth.revocations()) {
            tokio::spawn(crate::revocation::follow(
                revocations.clone(),
                feed,
                shutdown.clone(),
            ));
        }
        if let Some(feed) = sold_out_feed {
            tokio::spawn(crate::sold_out::follow(
                state.sold_out.clone(),
                feed,
                shutdown.clone(),
            ));
        }
        for cluster in &state.clusters {
            cluster.spawn_health_checks(&shutdown);
            cluster.spawn_discovery(resolver, discovery.interval, &shutdown);
        }
        health.set_service_status("", ServingStatus::Serving).await;
        tokio::spawn(publish_cluster_health(
            state.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(sweep_rate_limits(state.clone(), shutdown.clone()));
        if let Some(admin) = admin {
            tokio::spawn(serve_admin(
                admin,
                EdgeHandle {
                    state: state.clone(),
                },
                shutdown.clone(),
            ));
        }
        tracing::info!(listen = %local_addr, admin = ?admin_addr, "edge serving");

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            // Oversized headers must reach the proxy, which refuses that one
            // request, instead of closing the connection (see the constant).
            .max_header_list_size(boxoffice_runtime::limits::TRANSPORT_MAX_HEADER_LIST_BYTES)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10));
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let browser = Arc::new(browser_stack(state.clone(), cors));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let service = ConnectionService {
                state: state.clone(),
                peer,
                browser: browser.clone(),
                web: web.clone(),
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
            });
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for (service, _) in state.routes.routed_services() {
            health
                .set_service_status(&service, ServingStatus::NotServing)
                .await;
        }
        tracing::info!(%local_addr, "edge draining");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
            }
        }
        Ok(())
    }
}

/// The CORS → grpc-web → proxy stack for browsers and HTTP/1.1, built once
/// and cloned per request that needs it.
type BrowserStack = BoxCloneSyncService<Request<Incoming>, Response<ResponseBody>, Infallible>;

fn browser_stack(state: Arc<EdgeState>, cors: CorsLayer) -> BrowserStack {
    let stack = ServiceBuilder::new()
        .map_response(|response: Response<tonic::body::Body>| response.map(ResponseBody::Local))
        .layer(cors)
        .layer(tonic_web::GrpcWebLayer::new())
        .service(tower::service_fn(
            move |request: Request<tonic::body::Body>| {
                let state = state.clone();
                async move {
                    let peer = request.extensions().get::<PeerAddr>().map(|peer| peer.0);
                    Ok::<_, Infallible>(proxy::handle(state, peer, request).await)
                }
            },
        ));
    BoxCloneSyncService::new(stack)
}

/// Serves one client connection's requests.
struct ConnectionService {
    state: Arc<EdgeState>,
    peer: SocketAddr,
    /// Shared by every connection; cloned only for a request that uses it.
    browser: Arc<BrowserStack>,
    /// The web app, for GET/HEAD requests that are not RPC paths.
    web: Option<Arc<WebFiles>>,
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(web) = &self.web
            && WebFiles::wants(&request)
        {
            return Box::pin(std::future::ready(Ok(web.respond(&request))));
        }
        if proxy::is_plain_grpc(&request) {
            let state = self.state.clone();
            let peer = self.peer;
            Box::pin(async move { Ok(proxy::handle(state, Some(peer), request).await) })
        } else {
            request.extensions_mut().insert(PeerAddr(self.peer));
            Box::pin(BrowserStack::clone(&self.browser).oneshot(request))
        }
    }
}

/// The edge's health for each routed service follows its cluster: SERVING
/// while at least one endpoint is in rotation.
async fn publish_cluster_health(state: Arc<EdgeState>, health: HealthReporter, shutdown: Shutdown) {
    let services = state.routes.routed_services();
    loop {
        for (service, cluster) in &services {
            let status = if state.clusters[*cluster].healthy_count() > 0 {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(service, status).await;
        }
        let changes = futures::future::select_all(
            state
                .clusters
                .iter()
                .map(|cluster| Box::pin(cluster.on_change.notified())),
        );
        tokio::select! {
            _ = changes => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn sweep_rate_limits(state: Arc<EdgeState>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = every.tick() => {
                let now = Instant::now();
                state.by_address.sweep(now);
                state.by_user.sweep(now);
                state.joins_by_address.sweep(now);
                state.joins_by_user.sweep(now);
            }
            () = shutdown.cancelled() => return,
        }
    }
}

async fn serve_admin(listener: TcpListener, handle: EdgeHandle, shutdown: Shutdown) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => return,
        };
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let handle = handle.clone();
            async move {
                match (request.method(), request.uri().path()) {
                    (&Method::GET, "/metrics") => Response::builder()
                        .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                        .body(http_body_util::Full::new(Bytes::from(
                            handle.metrics_text(),
                        ))),
                    (&Method::GET, "/ready") => Response::builder()
                        .body(http_body_util::Full::new(Bytes::from_static(b"ok\n"))),
                    _ => Response::builder().status(StatusCode::NOT_FOUND).body(
                        http_body_util::Full::new(Bytes::from_static(b"not found\n")),
                    ),
                }
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
