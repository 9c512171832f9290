//! Upstream clusters: each a set of endpoints reached over plain HTTP/2
//! (h2c), balanced by power of two choices on outstanding requests, watched
//! through `grpc.health.v1.Health/Watch` and ejected on failure.
//!
//! The client is the `h2` crate used directly: a request is opened on the
//! connection from the calling task and its response is polled there too, so
//! a call costs no task hand-offs besides the connection's own I/O task
//! (hyper's client adds a dispatch channel, a spawned task per request and a
//! oneshot back). Each endpoint keeps [`MIN_CONNECTIONS_PER_ENDPOINT`]
//! connections so both cores can drive upstream I/O at once, and opens
//! another when every one carries [`STREAMS_PER_CONNECTION`] requests, so
//! thousands of long-lived streams do not queue behind a server's stream
//! limit.
//!
//! A cluster's endpoints change when a configured name resolves to other
//! addresses ([`crate::discovery`]): requests take a snapshot of the list,
//! a new address gets an endpoint (and a health watch), and a removed one
//! leaves the list, so it gets no new request, while the calls already on
//! its connections finish (the connections close when their last call and
//! the endpoint's last holder are gone).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use rand::Rng as _;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::ClusterConfig;
use crate::discovery::{Resolver, Target};
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::transport::Transport;

/// Opening a new connection beats queueing behind a busy one past this
/// (servers usually allow 100–200 concurrent streams per connection).
pub(crate) const STREAMS_PER_CONNECTION: usize = 100;
pub(crate) const MAX_CONNECTIONS_PER_ENDPOINT: usize = 256;
/// Connections kept per endpoint even when lightly loaded: one connection's
/// I/O runs on one task, which would make a single core the ceiling.
pub(crate) const MIN_CONNECTIONS_PER_ENDPOINT: usize = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// One HTTP/2 connection to an endpoint.
struct Connection {
    send: h2::client::SendRequest<Bytes>,
    outstanding: AtomicUsize,
    /// Set when the connection task ends or the peer said GOAWAY.
    closed: Arc<AtomicBool>,
}

impl Connection {
    fn is_usable(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }
}

/// One instance of a service.
pub(crate) struct Endpoint {
    pub authority: String,
    /// `authority`, parsed once for every request's URI.
    pub uri_authority: Authority,
    pub cluster: String,
    healthy: AtomicBool,
    outstanding: AtomicUsize,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    connections: Mutex<Vec<Arc<Connection>>>,
    next_connection: AtomicUsize,
    dial_lock: tokio::sync::Mutex<()>,
    /// Restarts the health watch (after a passive ejection).
    recheck: Notify,
    /// Called when health changes, so the cluster's health can be published.
    on_change: Arc<Notify>,
    /// Asks the cluster to resolve its names again (a connection failed).
    resolve_now: Arc<Notify>,
    /// Out of the cluster's list (its address went away): its health watch
    /// ends; calls already on it finish.
    retired: AtomicBool,
}

/// A request slot on an endpoint connection, released on drop.
pub(crate) struct Outstanding {
    endpoint: Arc<Endpoint>,
    connection: Arc<Connection>,
}

impl Outstanding {
    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Takes this connection out of rotation (it refused new streams).
    pub(crate) fn retire_connection(&self) {
        self.connection.closed.store(true, Ordering::Relaxed);
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.connection.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Endpoint {
    fn new(
        authority: String,
        cluster: String,
        on_change: Arc<Notify>,
        resolve_now: Arc<Notify>,
    ) -> Self {
        let uri_authority = Authority::try_from(authority.as_str())
            .unwrap_or_else(|_| Authority::from_static("invalid.invalid"));
        Self {
            authority,
            uri_authority,
            cluster,
            // Optimistic until the first health answer: a failure ejects it
            // at once, and `up` serves from its first moment.
            healthy: AtomicBool::new(true),
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
            next_connection: AtomicUsize::new(0),
            dial_lock: tokio::sync::Mutex::new(()),
            recheck: Notify::new(),
            on_change,
            resolve_now,
            retired: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(cluster = %self.cluster, endpoint = %self.authority, "endpoint admitted");
            } else {
                tracing::warn!(cluster = %self.cluster, endpoint = %self.authority, "endpoint ejected");
            }
            self.on_change.notify_one();
        }
    }

    /// Passive ejection: a transport failure takes the endpoint out of
    /// rotation until its health watch says SERVING again.
    pub(crate) fn report_transport_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.set_healthy(false);
        self.recheck.notify_one();
        // Perhaps the instance is gone and its name says so already.
        self.resolve_now.notify_one();
    }

    /// The least loaded usable connection, unless a new one should be
    /// dialed (too few, or every one is full).
    fn pick_connection(&self) -> Option<Arc<Connection>> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if connections.iter().any(|connection| !connection.is_usable()) {
            connections.retain(|connection| connection.is_usable());
        }
        if connections.len() < MIN_CONNECTIONS_PER_ENDPOINT {
            return None;
        }
        // Start the scan at a rotating position so equally loaded
        // connections take turns.
        let start = self.next_connection.fetch_add(1, Ordering::Relaxed) % connections.len();
        let (first, rest) = connections.split_at(start);
        let best = rest
            .iter()
            .chain(first)
            .min_by_key(|connection| connection.outstanding.load(Ordering::Relaxed))?;
        if best.outstanding.load(Ordering::Relaxed) >= STREAMS_PER_CONNECTION
            && connections.len() < MAX_CONNECTIONS_PER_ENDPOINT
        {
            return None;
        }
        Some(best.clone())
    }

    /// A connection with room for one more request, dialing if needed.
    pub(crate) async fn connection(
        self: &Arc<Self>,
    ) -> std::io::Result<(h2::client::SendRequest<Bytes>, Outstanding)> {
        let connection = match self.pick_connection() {
            Some(connection) => connection,
            None => {
                let _dialing = self.dial_lock.lock().await;
                match self.pick_connection() {
                    Some(connection) => connection,
                    None => {
                        let connection = Arc::new(self.dial().await?);
                        self.connections
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .push(connection.clone());
                        connection
                    }
                }
            }
        };
        connection.outstanding.fetch_add(1, Ordering::Relaxed);
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok((
            connection.send.clone(),
            Outstanding {
                endpoint: self.clone(),
                connection,
            },
        ))
    }

    async fn dial(&self) -> std::io::Result<Connection> {
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.authority.as_str()))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
        stream.set_nodelay(true)?;
        let (send, mut connection) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            h2::client::Builder::new()
                .enable_push(false)
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(stream),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
        .map_err(std::io::Error::other)?;
        let closed = Arc::new(AtomicBool::new(false));
        let ping_pong = connection.ping_pong();
        let authority = self.authority.clone();
        let task_closed = closed.clone();
        tokio::spawn(async move {
            let keepalive = async move {
                let Some(mut ping_pong) = ping_pong else {
                    return std::future::pending().await;
                };
                loop {
                    tokio::time::sleep(KEEPALIVE_INTERVAL).await;
                    match tokio::time::timeout(
                        KEEPALIVE_TIMEOUT,
                        ping_pong.ping(h2::Ping::opaque()),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            tracing::debug!(endpoint = %authority, "upstream keepalive timed out");
                            return;
                        }
                    }
                }
            };
            tokio::select! {
                // The connection first, and no random pick per wake-up: it
                // is polled for every frame, the keepalive twice a minute.
                biased;
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "upstream connection closed");
                    }
                }
                () = keepalive => {}
            }
            task_closed.store(true, Ordering::Relaxed);
        });
        tracing::debug!(endpoint = %self.authority, "opened upstream connection");
        Ok(Connection {
            send,
            outstanding: AtomicUsize::new(0),
            closed,
        })
    }
}

/// A named set of endpoints with a cap on concurrent requests.
pub(crate) struct Cluster {
    pub name: String,
    /// The current instances; see [`Cluster::endpoints`].
    endpoints: RwLock<Arc<[Arc<Endpoint>]>>,
    /// What the configuration names (addresses and DNS names).
    targets: Vec<Target>,
    resolve_now: Arc<Notify>,
    /// The cluster's services running in this very process (`boxoffice
    /// up`): calls go straight into them instead of over HTTP/2 to an
    /// endpoint. The endpoints are still watched, so the edge's health
    /// follows theirs.
    pub in_process: Option<Transport>,
    pub health_service: String,
    pub max_concurrent: usize,
    in_flight: AtomicUsize,
    pub rejected: AtomicU64,
    pub on_change: Arc<Notify>,
}

/// A slot in a cluster's concurrency cap, released on drop.
pub(crate) struct ClusterSlot {
    cluster: Arc<Cluster>,
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        self.cluster.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cluster {
    pub(crate) fn new(name: &str, config: &ClusterConfig, default_max_concurrent: usize) -> Self {
        let on_change = Arc::new(Notify::new());
        let resolve_now = Arc::new(Notify::new());
        Self {
            name: name.to_owned(),
            // Until names are resolved, a name is one endpoint dialed by
            // name (as a plain `host:port` always was).
            endpoints: RwLock::new(
                config
                    .endpoints
                    .iter()
                    .map(|authority| {
                        Arc::new(Endpoint::new(
                            authority.clone(),
                            name.to_owned(),
                            on_change.clone(),
                            resolve_now.clone(),
                        ))
                    })
                    .collect(),
            ),
            targets: config
                .endpoints
                .iter()
                .filter_map(|authority| Target::parse(authority))
                .collect(),
            resolve_now,
            health_service: config.health_service.clone(),
            in_process: None,
            max_concurrent: config
                .max_concurrent_requests
                .unwrap_or(default_max_concurrent),
            in_flight: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            on_change,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The instances now: a request picks from one snapshot for all its
    /// attempts (indexes are into it).
    pub(crate) fn endpoints(&self) -> Arc<[Arc<Endpoint>]> {
        self.endpoints
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether any configured upstream is a name to resolve.
    pub(crate) fn has_names(&self) -> bool {
        self.targets
            .iter()
            .any(|target| matches!(target, Target::Name { .. }))
    }

    /// Makes the instances exactly `addresses`: an endpoint kept for every
    /// address still there (its connections and counters with it), a new
    /// one for a new address, and the others retired. Answers the new
    /// endpoints (they need health watches).
    fn replace_endpoints(&self, addresses: &BTreeSet<SocketAddr>) -> Vec<Arc<Endpoint>> {
        let mut current = self
            .endpoints
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let wanted: BTreeSet<String> = addresses.iter().map(ToString::to_string).collect();
        let known: BTreeSet<&str> = current.iter().map(|e| e.authority.as_str()).collect();
        if known.len() == wanted.len() && wanted.iter().all(|a| known.contains(a.as_str())) {
            return Vec::new();
        }
        let mut next: Vec<Arc<Endpoint>> = Vec::with_capacity(wanted.len());
        let mut added = Vec::new();
        for authority in &wanted {
            match current.iter().find(|e| &e.authority == authority) {
                Some(kept) => next.push(kept.clone()),
                None => {
                    let endpoint = Arc::new(Endpoint::new(
                        authority.clone(),
                        self.name.clone(),
                        self.on_change.clone(),
                        self.resolve_now.clone(),
                    ));
                    added.push(endpoint.clone());
                    next.push(endpoint);
                }
            }
        }
        for gone in current.iter().filter(|e| !wanted.contains(&e.authority)) {
            gone.retired.store(true, Ordering::Relaxed);
            gone.recheck.notify_one();
            tracing::info!(cluster = %self.name, endpoint = %gone.authority, "endpoint removed");
        }
        for new in &added {
            tracing::info!(cluster = %self.name, endpoint = %new.authority, "endpoint added");
        }
        *current = next.into();
        drop(current);
        self.on_change.notify_one();
        added
    }

    /// Resolves the cluster's names now and then (every `interval`, and at
    /// most every `interval / 10` after a connection failure asks), until
    /// shutdown. A round that cannot resolve a name changes nothing.
    pub(crate) fn spawn_discovery(
        self: &Arc<Self>,
        resolver: Resolver,
        interval: Duration,
        shutdown: &Shutdown,
    ) {
        if !self.has_names() {
            return;
        }
        let (cluster, shutdown) = (self.clone(), shutdown.clone());
        tokio::spawn(async move {
            let quiet = interval / 10;
            loop {
                match resolver.resolve(&cluster.targets).await {
                    Some(addresses) => {
                        for endpoint in cluster.replace_endpoints(&addresses) {
                            tokio::spawn(watch_health(
                                endpoint,
                                cluster.health_service.clone(),
                                shutdown.clone(),
                            ));
                        }
                    }
                    None => {
                        tracing::warn!(cluster = %cluster.name, "could not resolve the cluster's names; keeping its endpoints");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = async {
                        cluster.resolve_now.notified().await;
                        tokio::time::sleep(quiet).await;
                    } => {}
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Takes a slot, or `None` at the cap (answered at once, never queued).
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<ClusterSlot> {
        let previous = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= self.max_concurrent {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(ClusterSlot {
            cluster: self.clone(),
        })
    }

    pub(crate) fn healthy_count(&self) -> usize {
        self.endpoints()
            .iter()
            .filter(|endpoint| endpoint.is_healthy())
            .count()
    }

    /// Power of two choices among healthy endpoints not in `exclude`. When
    /// none is healthy, every endpoint is tried ("panic mode", as Envoy
    /// does): a health checker that is wrong must not turn a working service
    /// off, and a dead endpoint fails fast on connect anyway.
    pub(crate) fn pick(&self, endpoints: &[Arc<Endpoint>], exclude: &[usize]) -> Option<usize> {
        let allowed = |index: usize| !exclude.contains(&index);
        let healthy = |index: usize| allowed(index) && endpoints[index].is_healthy();
        let mut count = (0..endpoints.len()).filter(|i| healthy(*i)).count();
        let panic_mode = count == 0 && !endpoints.iter().any(|e| e.is_healthy());
        if panic_mode {
            count = (0..endpoints.len()).filter(|i| allowed(*i)).count();
        }
        // The n-th candidate, without collecting them (no allocation on
        // the request path).
        let nth = |n: usize| {
            (0..endpoints.len())
                .filter(|i| if panic_mode { allowed(*i) } else { healthy(*i) })
                .nth(n)
        };
        match count {
            0 => None,
            1 => nth(0),
            n => {
                let mut rng = rand::rng();
                let first = rng.random_range(0..n);
                let mut second = rng.random_range(0..n - 1);
                if second == first {
                    second = n - 1;
                }
                let (first, second) = (nth(first)?, nth(second)?);
                let load = |index: usize| endpoints[index].outstanding();
                Some(if load(second) < load(first) {
                    second
                } else {
                    first
                })
            }
        }
    }

    /// Starts one health watch per endpoint.
    pub(crate) fn spawn_health_checks(self: &Arc<Self>, shutdown: &Shutdown) {
        for endpoint in self.endpoints().iter() {
            tokio::spawn(watch_health(
                endpoint.clone(),
                self.health_service.clone(),
                shutdown.clone(),
            ));
        }
    }
}

/// Keeps `endpoint.healthy` equal to what its `grpc.health.v1` Watch says;
/// any failure to connect or a broken stream ejects it.
async fn watch_health(endpoint: Arc<Endpoint>, service: String, shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(50);
    let uri = format!("http://{}", endpoint.authority);
    loop {
        if shutdown.is_triggered() || endpoint.is_retired() {
            return;
        }
        let outcome = async {
            let channel = tonic::transport::Endpoint::from_shared(uri.clone())
                .map_err(|error| error.to_string())?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|error| error.to_string())?;
            let mut client = HealthClient::new(channel);
            let mut stream = match client
                .watch(HealthCheckRequest {
                    service: service.clone(),
                })
                .await
            {
                Ok(response) => response.into_inner(),
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    // No health service: healthy while it accepts connections.
                    endpoint.set_healthy(true);
                    endpoint.recheck.notified().await;
                    return Ok(());
                }
                Err(status) => return Err(status.to_string()),
            };
            loop {
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(update)) => {
                            let serving = update.status == ServingStatus::Serving as i32;
                            endpoint.set_healthy(serving);
                        }
                        Ok(None) => return Err("health stream ended".to_owned()),
                        Err(status) => return Err(status.to_string()),
                    },
                    () = endpoint.recheck.notified() => return Ok(()),
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(error) => {
                tracing::debug!(endpoint = %endpoint.authority, %error, "health watch failed");
                endpoint.set_healthy(false);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(endpoints: &[&str]) -> Arc<Cluster> {
        Arc::new(Cluster::new(
            "test",
            &ClusterConfig {
                endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
                health_service: String::new(),
                max_concurrent_requests: Some(2),
            },
            10,
        ))
    }

    #[test]
    fn picks_only_healthy_endpoints() {
        let cluster = cluster(&["127.0.0.1:1", "127.0.0.1:2"]);
        let endpoints = cluster.endpoints();
        endpoints[0].set_healthy(false);
        for _ in 0..20 {
            assert_eq!(cluster.pick(&endpoints, &[]), Some(1));
        }
        assert_eq!(cluster.pick(&endpoints, &[1]), None);
        endpoints[1].set_healthy(false);
        assert!(
            cluster.pick(&endpoints, &[]).is_some(),
            "panic mode tries everything"
        );
    }

    #[test]
    fn two_choices_prefer_the_less_loaded_and_reach_every_endpoint() {
        let cluster = cluster(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let endpoints = cluster.endpoints();
        endpoints[0].outstanding.store(50, Ordering::Relaxed);
        let mut seen = [0usize; 3];
        for _ in 0..600 {
            seen[cluster.pick(&endpoints, &[]).unwrap()] += 1;
        }
        assert!(seen[1] > 0 && seen[2] > 0, "{seen:?}");
        assert!(seen[0] < seen[1] && seen[0] < seen[2], "{seen:?}");
        for _ in 0..50 {
            assert_ne!(cluster.pick(&endpoints, &[2]), Some(2));
        }
    }

    #[test]
    fn a_new_address_list_keeps_known_endpoints_and_retires_gone_ones() {
        let cluster = cluster(&["inventory:8080"]);
        let addresses = |list: &[&str]| -> BTreeSet<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        let added = cluster.replace_endpoints(&addresses(&["10.0.0.1:8080", "10.0.0.2:8080"]));
        assert_eq!(added.len(), 2);
        let first = cluster.endpoints();
        first[0].requests.store(7, Ordering::Relaxed);
        let added = cluster.replace_endpoints(&addresses(&["10.0.0.1:8080", "10.0.0.3:8080"]));
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].authority, "10.0.0.3:8080");
        let second = cluster.endpoints();
        let names: Vec<&str> = second.iter().map(|e| e.authority.as_str()).collect();
        assert_eq!(names, ["10.0.0.1:8080", "10.0.0.3:8080"]);
        assert_eq!(
            second[0].requests.load(Ordering::Relaxed),
            7,
            "kept, not rebuilt"
        );
        assert!(first[1].is_retired(), "10.0.0.2 is retired");
        assert!(!second[0].is_retired());
        // The same list again changes nothing.
        assert!(
            cluster
                .replace_endpoints(&addresses(&["10.0.0.3:8080", "10.0.0.1:8080"]))
                .is_empty()
        );
    }

    #[test]
    fn the_concurrency_cap_refuses_at_once() {
        let cluster = cluster(&["127.0.0.1:1"]);
        let first = cluster.try_acquire();
        let second = cluster.try_acquire();
        assert!(first.is_some() && second.is_some());
        assert!(cluster.try_acquire().is_none());
        drop(first);
        assert!(cluster.try_acquire().is_some());
    }
}
