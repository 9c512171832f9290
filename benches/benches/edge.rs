//! The edge's cost, measured in one run: cached `GetEvent` straight to the
//! catalog and through the edge, next to a trivial tonic echo server (also
//! straight and through the edge), each with the same number of requests in
//! flight. Prints requests/s, p50/p99, and the ratios the edge is held to
//! (≥ 0.6× the direct rate, ≤ 1 ms added at p99 with 8 in flight).
//!
//! `cargo bench -p boxoffice-benches --bench edge` (PostgreSQL on
//! 127.0.0.1:5432 or `BOXOFFICE_BENCH_POSTGRES_URL`; `EDGE_BENCH_SECS`,
//! `EDGE_BENCH_IN_FLIGHT` tune it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_accounts::TokenConfig;
use boxoffice_catalog::CatalogComponent;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::testing::v1 as echo_pb;
use boxoffice_edge::config::{ClusterConfig, RateLimit, RouteConfig};
use boxoffice_edge::routes::Access;
use boxoffice_edge::{Edge, EdgeConfig};
use boxoffice_runtime::config::{ENV_DATABASE_URL, ENV_LISTEN, Secret};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

#[derive(Clone, Copy, Default)]
struct Echo;

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

struct Outcome {
    name: &'static str,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

async fn measure<F, Fut>(
    name: &'static str,
    in_flight: usize,
    duration: Duration,
    call: F,
) -> Outcome
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    // Warm up connections and caches first.
    for _ in 0..200 {
        call().await;
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram bounds are constants");
            let mut errors = 0u64;
            while start.elapsed() < duration {
                let sent = Instant::now();
                if !call().await {
                    errors += 1;
                }
                let _ = histogram.record(sent.elapsed().as_micros() as u64);
            }
            (histogram, errors)
        }));
    }
    let mut histogram = Histogram::<u64>::new(3).expect("histogram bounds are constants");
    let mut errors = 0;
    for worker in workers {
        let (part, part_errors) = worker.await.expect("worker");
        let _ = histogram.add(part);
        errors += part_errors;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Outcome {
        name,
        per_second: histogram.len() as f64 / elapsed,
        p50: Duration::from_micros(histogram.value_at_quantile(0.5)),
        p99: Duration::from_micros(histogram.value_at_quantile(0.99)),
        errors,
    }
}

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("EDGE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let in_flight: usize = std::env::var("EDGE_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let duration = Duration::from_secs(seconds);

    // A database of its own.
    let server_url = std::env::var("BOXOFFICE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = format!("boxoffice_edge_bench_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let base = server_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&server_url);
    let database_url = format!("{base}/{database}");
    let config = Config::from_vars(BTreeMap::from([
        (ENV_DATABASE_URL.to_owned(), database_url.clone()),
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
    ]))?;
    let pool = boxoffice_runtime::postgres::pool(&Secret::new(database_url), 8)?;
    let shutdown = Shutdown::new();

    let result = async {
        let mut catalog_server = GrpcServer::bind(config.listen).await?;
        let catalog = CatalogComponent::start(&config, pool.clone(), shutdown.clone()).await?;
        catalog.register(&mut catalog_server);
        let catalog_addr = catalog_server.local_addr();
        tokio::spawn(catalog_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));
        let store = boxoffice_catalog::store::CatalogStore::new(pool.clone());
        boxoffice_catalog::seed::seed_if_empty(&store, 5).await?;

        let mut echo_server = GrpcServer::bind(config.listen).await?;
        echo_server.add_service(echo_pb::echo_service_server::EchoServiceServer::new(Echo));
        let echo_addr = echo_server.local_addr();
        tokio::spawn(echo_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));

        let mut edge_config = EdgeConfig::defaults("127.0.0.1:0".parse()?).with_upstream_everywhere(catalog_addr);
        edge_config.admin_listen = None;
        edge_config.access_log = false;
        let unlimited = RateLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        edge_config.rate_per_address = unlimited;
        edge_config.rate_per_user = unlimited;
        edge_config.clusters.insert(
            "echo".to_owned(),
            ClusterConfig {
                endpoints: vec![echo_addr.to_string()],
                health_service: String::new(),
                max_concurrent_requests: None,
            },
        );
        edge_config.routes.push(RouteConfig {
            service: "boxoffice.testing.v1.EchoService".to_owned(),
            cluster: "echo".to_owned(),
            default_access: Access::Public,
            methods: BTreeMap::new(),
        });
        let edge = Edge::bind(edge_config, &TokenConfig::ephemeral()).await?;
        let edge_addr = edge.local_addr();
        tokio::spawn(edge.run_until_stopped(shutdown.clone()));

        let direct = channel(catalog_addr).await?;
        let event = pb::catalog_service_client::CatalogServiceClient::new(direct.clone())
            .list_events(pb::ListEventsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await?
            .into_inner()
            .events
            .into_iter()
            .next()
            .context("a seeded event")?;
        let id = Arc::new(event.id);

        let get_event = |channel: Channel, id: Arc<String>| {
            move || {
                let mut client = pb::catalog_service_client::CatalogServiceClient::new(channel.clone());
                let id = id.clone();
                async move { client.get_event(pb::GetEventRequest { id: (*id).clone() }).await.is_ok() }
            }
        };
        let echo = |channel: Channel| {
            move || {
                let mut client = echo_pb::echo_service_client::EchoServiceClient::new(channel.clone());
                async move {
                    client
                        .echo(echo_pb::EchoRequest {
                            message: "ping".into(),
                        })
                        .await
                        .is_ok()
                }
            }
        };
        let through_edge = channel(edge_addr).await?;
        let echo_direct = channel(echo_addr).await?;
        println!("edge benchmark: {in_flight} in flight, {seconds} s per scenario (same process, same machine)");
        let outcomes = vec![
            measure("echo, direct", in_flight, duration, echo(echo_direct)).await,
            measure("echo, through the edge", in_flight, duration, echo(through_edge.clone())).await,
            measure("GetEvent, direct", in_flight, duration, get_event(direct, id.clone())).await,
            measure("GetEvent, through the edge", in_flight, duration, get_event(through_edge, id)).await,
        ];
        println!("{:<28} {:>10} {:>10} {:>10} {:>7}", "scenario", "req/s", "p50", "p99", "errors");
        for outcome in &outcomes {
            println!(
                "{:<28} {:>10.0} {:>10.2?} {:>10.2?} {:>7}",
                outcome.name, outcome.per_second, outcome.p50, outcome.p99, outcome.errors
            );
        }
        let (echo_direct, echo_edge, catalog_direct, catalog_edge) =
            (&outcomes[0], &outcomes[1], &outcomes[2], &outcomes[3]);
        println!(
            "GetEvent through the edge / direct: {:.2}x requests/s (target >= 0.60x); p99 added {:.3} ms (target <= 1 ms)",
            catalog_edge.per_second / catalog_direct.per_second,
            (catalog_edge.p99.as_secs_f64() - catalog_direct.p99.as_secs_f64()) * 1000.0
        );
        println!(
            "echo through the edge / direct: {:.2}x; GetEvent direct / echo direct: {:.2}x",
            echo_edge.per_second / echo_direct.per_second,
            catalog_direct.per_second / echo_direct.per_second
        );
        anyhow::Ok(())
    }
    .await;
    shutdown.trigger();
    pool.close();
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;
    result
}
