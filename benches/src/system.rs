//! A whole boxoffice started inside the load generator, on a database of its
//! own (dropped afterwards), so one command reproduces every number. Also the
//! trivial echo server that serves as the gRPC baseline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_catalog::CatalogComponent;
use boxoffice_catalog::store::CatalogStore;
use boxoffice_contracts::testing::v1 as echo_pb;
use boxoffice_runtime::config::{ENV_DATABASE_URL, ENV_LISTEN, Secret};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use tonic::transport::Channel;

pub const ENV_BENCH_POSTGRES: &str = "BOXOFFICE_BENCH_POSTGRES_URL";

/// The trivial tonic service: answers what it is sent.
#[derive(Clone, Copy, Default)]
pub struct Echo;

#[tonic::async_trait]
impl echo_pb::echo_service_server::EchoService for Echo {
    async fn echo(
        &self,
        request: tonic::Request<echo_pb::EchoRequest>,
    ) -> Result<tonic::Response<echo_pb::EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(echo_pb::EchoResponse {
            message: request.into_inner().message,
        }))
    }
}

pub struct System {
    pub catalog_addr: SocketAddr,
    pub echo_addr: SocketAddr,
    pub pool: deadpool_postgres::Pool,
    shutdown: Shutdown,
    server_url: String,
    database: String,
}

fn server_url() -> String {
    std::env::var(ENV_BENCH_POSTGRES).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl System {
    pub async fn start() -> anyhow::Result<Self> {
        let server_url = server_url();
        let database = format!("boxoffice_bench_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL (run scripts/services first)")?;
        tokio::spawn(connection);
        // Two statements: CREATE DATABASE cannot share an implicit transaction.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .context("dropping a leftover benchmark database")?;
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .context("creating the benchmark database")?;
        let mut pg: tokio_postgres::Config = server_url.parse()?;
        pg.dbname(&database);
        let url = url_with_database(&server_url, &database);
        let config = Config::from_vars(BTreeMap::from([
            (ENV_DATABASE_URL.to_owned(), url.clone()),
            (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
        ]))?;
        let pool = boxoffice_runtime::postgres::pool(&Secret::new(url), 32)?;
        let shutdown = Shutdown::new();

        let mut catalog_server = GrpcServer::bind(config.listen).await?;
        let catalog = CatalogComponent::start(&config, pool.clone(), shutdown.clone()).await?;
        catalog.register(&mut catalog_server);
        eprintln!("loading demo data into {database} ...");
        boxoffice_catalog::seed::seed(&CatalogStore::new(pool.clone()), 520).await?;
        let catalog_addr = catalog_server.local_addr();
        tokio::spawn(catalog_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));

        let mut echo_server = GrpcServer::bind(config.listen).await?;
        echo_server.add_service(echo_pb::echo_service_server::EchoServiceServer::new(Echo));
        let echo_addr = echo_server.local_addr();
        tokio::spawn(echo_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));

        Ok(Self {
            catalog_addr,
            echo_addr,
            pool,
            shutdown,
            server_url,
            database,
        })
    }

    /// Stops the servers and drops the benchmark database.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        self.pool.close();
        let (client, connection) = tokio_postgres::connect(&self.server_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
            .await?;
        Ok(())
    }
}

fn url_with_database(server_url: &str, database: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server_url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..host_end])
}

/// A few HTTP/2 connections to spread load over (one connection serializes
/// on a single socket and a single server task).
pub async fn channels(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(channels)
}
