//! Every test gets its own world: a fresh PostgreSQL database (dropped when
//! the test ends, even on panic), its own Redis key prefix, and servers on
//! port 0. Nothing is shared between tests, so they run in any order.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_catalog::CatalogComponent;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::role;
use boxoffice_runtime::config::ENV_REDIS_URL;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Caller, Shutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

pub use boxoffice_runtime::test_util::{TestDb, postgres_server_url, redis_url, test_config};

/// A gRPC server running in the test, stopped when dropped.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
}

impl RunningServer {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("server address")
            .connect()
            .await
            .expect("connecting to the test server")
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Serves in the background until `shutdown` fires; a serving error fails loudly.
pub fn spawn_server(server: GrpcServer, shutdown: &Shutdown) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = server
            .run_until_stopped(shutdown, Duration::from_secs(1))
            .await
        {
            panic!("test server failed: {error:#}");
        }
    });
}

/// The catalog on its own, over a fresh database.
pub struct CatalogWorld {
    pub server: RunningServer,
    pub client: CatalogServiceClient<Channel>,
    // Last, so the servers stop before the database goes.
    pub db: TestDb,
}

impl CatalogWorld {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let config = test_config(&db, &[]);
        let shutdown = Shutdown::new();
        let mut server = GrpcServer::bind(config.listen)
            .await
            .expect("binding the test server");
        let component = CatalogComponent::start(&config, db.pool.clone(), shutdown.clone())
            .await
            .expect("starting the catalog");
        component.register(&mut server);
        let addr = server.local_addr();
        spawn_server(server, &shutdown);
        let server = RunningServer { addr, shutdown };
        let client = CatalogServiceClient::new(server.channel().await);
        drop(component);
        Self { server, client, db }
    }
}

pub fn admin() -> Caller {
    Caller::user(Uuid::new_v4(), &[role::ADMIN])
}

pub fn customer() -> Caller {
    Caller::user(Uuid::new_v4(), &[role::CUSTOMER])
}

/// A request carrying the identity the edge would set.
pub fn as_caller<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    caller.write_to(request.metadata_mut());
    request
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another catalog instance over the same database as `world` (its own cache
/// and change listener), as a second replica would be.
pub async fn second_catalog(world: &CatalogWorld) -> RunningServer {
    let config = test_config(&world.db, &[]);
    let shutdown = Shutdown::new();
    let mut server = GrpcServer::bind(config.listen)
        .await
        .expect("binding the second server");
    let component = CatalogComponent::start(&config, world.db.pool.clone(), shutdown.clone())
        .await
        .expect("starting the second catalog");
    component.register(&mut server);
    let addr = server.local_addr();
    spawn_server(server, &shutdown);
    RunningServer { addr, shutdown }
}

// ------------------------------------------------------------- inventory

/// Deletes every Redis key under `prefix` (what a Redis flush or restart
/// does to one test's world, without touching anyone else's keys).
pub async fn delete_redis_keys(url: &str, prefix: &str) -> usize {
    use fred::prelude::{ClientLike as _, KeysInterface as _};
    use futures::StreamExt as _;
    let config = fred::prelude::Config::from_url(url).expect("redis url");
    let client = fred::prelude::Builder::from_config(config)
        .build()
        .expect("redis client");
    client.init().await.expect("connecting to redis");
    let keys: Vec<fred::types::Key> = client
        .scan_buffered(format!("{prefix}*"), Some(1_000), None)
        .filter_map(|key| async move { key.ok() })
        .collect()
        .await;
    for key in &keys {
        let _: i64 = client.del(key.clone()).await.expect("deleting a key");
    }
    let _ = client.quit().await;
    keys.len()
}

/// The catalog and inventory in one server over a fresh database, with a
/// Redis key prefix of their own (deleted when the world is dropped).
pub struct InventoryWorld {
    pub server: RunningServer,
    pub catalog: CatalogServiceClient<Channel>,
    pub inventory:
        boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient<
            Channel,
        >,
    pub component: boxoffice_inventory::InventoryComponent,
    /// Kept so the catalog's cache listener lives as long as the world.
    pub _catalog_component: CatalogComponent,
    pub redis_url: String,
    pub key_prefix: String,
    // Last, so the servers stop before the database goes.
    pub db: TestDb,
}

impl InventoryWorld {
    pub async fn new() -> Self {
        Self::with(&redis_url(), &[]).await
    }

    /// `settings` are inventory variables such as `BOXOFFICE_HOLD_TTL_SECS`.
    pub async fn with(redis: &str, settings: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let config = test_config(&db, &[(ENV_REDIS_URL, redis)]);
        let key_prefix = format!("test-{}:", Uuid::new_v4().simple());
        let mut vars = BTreeMap::from([(
            boxoffice_inventory::config::ENV_REDIS_KEY_PREFIX.to_owned(),
            key_prefix.clone(),
        )]);
        // Tests wait on conditions; quick background loops keep them short.
        vars.insert(
            boxoffice_inventory::config::ENV_FEED_INTERVAL.to_owned(),
            "50".to_owned(),
        );
        for (key, value) in settings {
            vars.insert((*key).to_owned(), (*value).to_owned());
        }
        let inventory_config = boxoffice_inventory::InventoryConfig::from_vars(&vars)
            .expect("inventory test settings");
        let shutdown = Shutdown::new();
        let mut server = GrpcServer::bind(config.listen)
            .await
            .expect("binding the test server");
        let catalog_component = CatalogComponent::start(&config, db.pool.clone(), shutdown.clone())
            .await
            .expect("starting the catalog");
        catalog_component.register(&mut server);
        let component = boxoffice_inventory::InventoryComponent::start_with(
            &config,
            inventory_config,
            db.pool.clone(),
            shutdown.clone(),
        )
        .await
        .expect("starting inventory");
        component.register(&mut server);
        let addr = server.local_addr();
        spawn_server(server, &shutdown);
        let server = RunningServer { addr, shutdown };
        let channel = server.channel().await;
        Self {
            catalog: CatalogServiceClient::new(channel.clone()),
            inventory: boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient::new(
                channel,
            ),
            server,
            component,
            _catalog_component: catalog_component,
            redis_url: redis.to_owned(),
            key_prefix,
            db,
        }
    }

    /// Deletes this world's Redis state, as a flush or restart would.
    pub async fn flush_redis(&self) -> usize {
        delete_redis_keys(&self.redis_url, &self.key_prefix).await
    }
}

impl Drop for InventoryWorld {
    fn drop(&mut self) {
        self.server.shutdown.trigger();
        if self.redis_url.starts_with("redis-cluster://") {
            // The cluster's processes go away with the test.
            return;
        }
        let url = self.redis_url.clone();
        let prefix = self.key_prefix.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move { delete_redis_keys(&url, &prefix).await });
            Some(())
        })
        .join();
    }
}

/// A throwaway 3-node Redis Cluster started from the local `redis-server`
/// binary on free ports; the processes are killed and their files removed
/// when dropped (also when a test fails).
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<tokio::process::Child>,
    dir: std::path::PathBuf,
}

fn free_port() -> u16 {
    spare_port(&[std::net::Ipv4Addr::LOCALHOST])
}

/// A spare port on 127.0.0.1 (see [`spare_port`]), as an address.
pub fn spare_addr() -> SocketAddr {
    SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        spare_port(&[std::net::Ipv4Addr::LOCALHOST]),
    ))
}

/// A port free now on every one of `addresses`, for a child process to
/// bind, picked below the kernel's ephemeral range. `bind(0)` and every
/// outgoing connection (all the tests' PostgreSQL and Redis clients) take
/// their ports from that range, so a port picked from it can be gone before
/// the child binds it; below it, only another pick like this one can take
/// it, and picks are random.
pub fn spare_port(addresses: &[std::net::Ipv4Addr]) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_100));
    for _ in 0..200 {
        let port = low + (Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        let held: Vec<std::net::TcpListener> = addresses
            .iter()
            .filter_map(|address| std::net::TcpListener::bind((*address, port)).ok())
            .collect();
        if held.len() == addresses.len() {
            return port;
        }
    }
    panic!("no spare port below {high}");
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "boxoffice-redis-cluster-{}",
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("creating the cluster directory");
        let mut cluster = Self {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            // A free port can be taken by another test's node between the
            // look and the bind (that node then exits): try other ports,
            // and only count a node that answers with its own process id.
            let mut started = None;
            for _attempt in 0..5 {
                let (port, bus_port) = (free_port(), free_port());
                let mut child = tokio::process::Command::new("redis-server")
                    .args(["--port", &port.to_string()])
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-port", &bus_port.to_string()])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .args(["--cluster-node-timeout", "5000"])
                    .arg("--dir")
                    .arg(&cluster.dir)
                    .args([
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("starting redis-server (is it installed? see README)");
                let pid = child.id().unwrap_or_default();
                let up = eventually(
                    Duration::from_secs(10),
                    "redis-server to accept connections or exit",
                    || {
                        let exited = matches!(child.try_wait(), Ok(Some(_)));
                        async move {
                            if exited {
                                return Some(false);
                            }
                            let info = tokio::process::Command::new("redis-cli")
                                .args(["-p", &port.to_string(), "info", "server"])
                                .output()
                                .await
                                .ok()?;
                            String::from_utf8_lossy(&info.stdout)
                                .contains(&format!("process_id:{pid}\r"))
                                .then_some(true)
                        }
                    },
                )
                .await;
                if up {
                    started = Some((port, child));
                    break;
                }
            }
            let (port, child) = started.expect("redis-server would not start on five free ports");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("running redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in cluster.ports.clone() {
            eventually(
                Duration::from_secs(20),
                "the redis cluster to be ok",
                || async move {
                    let info = tokio::process::Command::new("redis-cli")
                        .args(["-p", &port.to_string(), "cluster", "info"])
                        .output()
                        .await
                        .ok()?;
                    String::from_utf8_lossy(&info.stdout)
                        .contains("cluster_state:ok")
                        .then_some(())
                },
            )
            .await;
        }
        cluster
    }

    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.ports[0]);
        for (index, port) in self.ports.iter().enumerate().skip(1) {
            url.push(if index == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{port}"));
        }
        url
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP forwarder in front of a server (an upstream, PostgreSQL) that can be
/// killed like a crashed machine: the listener closes and every open
/// connection drops at once.
pub struct KillableProxy {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl KillableProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        Self::serve(listener, target)
    }

    /// A proxy listening on `bind` exactly (`None` when it is taken).
    pub async fn start_on(bind: SocketAddr, target: SocketAddr) -> Option<Self> {
        let listener = TcpListener::bind(bind).await.ok()?;
        Some(Self::serve(listener, target))
    }

    fn serve(listener: TcpListener, target: SocketAddr) -> Self {
        let addr = listener.local_addr().expect("proxy address");
        let connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(task);
            }
        });
        Self {
            addr,
            accept,
            connections,
        }
    }

    pub fn kill(&self) {
        self.accept.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}
