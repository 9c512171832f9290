//! The edge in front of service processes, measured in one run.
//!
//! **Scale-out**: cached `GetEvent` through an edge in front of one catalog
//! process and through one in front of two, and `HoldSeats` (with a bearer
//! token) through an edge in front of one and two inventory stub processes
//! (the stub answers a fixed hold: the edge's balancing, not Redis, is
//! measured). Each service process is this same binary re-executed, running
//! the catalog as `boxoffice serve catalog` does (its own pool and cache over
//! one shared database), so the services' CPU is not the client's.
//!
//! **Discovery**: cached `GetEvent` through an edge whose catalog cluster is
//! a DNS name (re-resolved every 200 ms from a DNS server in this process,
//! answering one address) next to one configured with that address, in
//! static, DNS, DNS, static order; prints the p99 the name adds.
//!
//! `cargo bench -p boxoffice-benches --bench mesh` (PostgreSQL on
//! 127.0.0.1:5432 or `BOXOFFICE_BENCH_POSTGRES_URL`). Tuning:
//! `MESH_BENCH_SECS` (5) per scenario, `MESH_BENCH_IN_FLIGHT` (32).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_accounts::TokenConfig;
use boxoffice_accounts::token::TokenIssuer;
use boxoffice_catalog::CatalogComponent;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_edge::config::{DiscoveryConfig, RateLimit};
use boxoffice_edge::{Edge, EdgeConfig, EdgeHandle};
use boxoffice_runtime::config::{ENV_DATABASE_URL, ENV_LISTEN, Secret};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use futures::Stream;
use hdrhistogram::Histogram;
use tokio::net::UdpSocket;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Set in a child process: which service it runs (`catalog`, `inventory-stub`).
const ENV_CHILD_SERVICE: &str = "MESH_BENCH_CHILD_SERVICE";
/// The name the discovery scenario's edge resolves.
const CATALOG_NAME: &str = "catalog.mesh.bench";

/// Inventory as the edge sees it, with nothing behind it: `HoldSeats`
/// answers a fixed hold.
#[derive(Clone, Copy, Default)]
struct InventoryStub;

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<inventory_pb::AvailabilityUpdate, Status>> + Send>>;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the stub"))
}

#[tonic::async_trait]
impl inventory_pb::inventory_service_server::InventoryService for InventoryStub {
    async fn get_availability(
        &self,
        _: Request<inventory_pb::GetAvailabilityRequest>,
    ) -> Result<Response<inventory_pb::Availability>, Status> {
        unimplemented()
    }

    type WatchAvailabilityStream = WatchStream;

    async fn watch_availability(
        &self,
        _: Request<inventory_pb::WatchAvailabilityRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        unimplemented()
    }

    async fn hold_seats(
        &self,
        request: Request<inventory_pb::HoldSeatsRequest>,
    ) -> Result<Response<inventory_pb::Hold>, Status> {
        let request = request.into_inner();
        Ok(Response::new(inventory_pb::Hold {
            name: format!("holds/{}", uuid::Uuid::new_v4()),
            event_id: request.event_id,
            state: inventory_pb::HoldState::Active as i32,
            ..Default::default()
        }))
    }

    async fn get_hold(
        &self,
        _: Request<inventory_pb::GetHoldRequest>,
    ) -> Result<Response<inventory_pb::Hold>, Status> {
        unimplemented()
    }

    async fn release_hold(
        &self,
        _: Request<inventory_pb::ReleaseHoldRequest>,
    ) -> Result<Response<inventory_pb::Hold>, Status> {
        unimplemented()
    }

    async fn commit_hold(
        &self,
        _: Request<inventory_pb::CommitHoldRequest>,
    ) -> Result<Response<inventory_pb::CommitHoldResponse>, Status> {
        unimplemented()
    }

    async fn release_seats(
        &self,
        _: Request<inventory_pb::ReleaseSeatsRequest>,
    ) -> Result<Response<inventory_pb::ReleaseSeatsResponse>, Status> {
        unimplemented()
    }

    async fn extend_hold(
        &self,
        _: Request<inventory_pb::ExtendHoldRequest>,
    ) -> Result<Response<inventory_pb::Hold>, Status> {
        unimplemented()
    }

    type WatchSoldOutStream =
        Pin<Box<dyn Stream<Item = Result<inventory_pb::SoldOutEvents, Status>> + Send>>;

    async fn watch_sold_out(
        &self,
        _: Request<inventory_pb::WatchSoldOutRequest>,
    ) -> Result<Response<Self::WatchSoldOutStream>, Status> {
        unimplemented()
    }

    async fn set_pricing_rule(
        &self,
        _: Request<inventory_pb::SetPricingRuleRequest>,
    ) -> Result<Response<inventory_pb::PricingRule>, Status> {
        unimplemented()
    }
}

/// A child process: one service on a free loopback port. Prints its
/// address, then serves until its stdin closes (the parent exiting, even by
/// a crash, ends it).
async fn child_service(service: &str) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let shutdown = Shutdown::new();
    let mut server = GrpcServer::bind(config.listen).await?;
    let _catalog = match service {
        "catalog" => {
            let pool = boxoffice_runtime::postgres::pool(&config.database_url, 8)?;
            let catalog = CatalogComponent::start(&config, pool, shutdown.clone()).await?;
            catalog.register(&mut server);
            Some(catalog)
        }
        "inventory-stub" => {
            server.add_service(
                inventory_pb::inventory_service_server::InventoryServiceServer::new(InventoryStub),
            );
            None
        }
        other => anyhow::bail!("no service {other}"),
    };
    println!("SERVICE_LISTENING {}", server.local_addr());
    std::io::stdout().flush()?;
    let serving = tokio::spawn(server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await?;
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    Ok(())
}

struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServiceProcess {
    fn spawn(service: &str, database_url: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ENV_CHILD_SERVICE, service)
            .env(ENV_DATABASE_URL, database_url)
            .env(ENV_LISTEN, "127.0.0.1:0")
            .env("BOXOFFICE_LOG", "warn")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a service process")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("SERVICE_LISTENING ")
            .with_context(|| format!("the {service} process said {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS server answering every A question with `address` (what a
/// headless Service with one ready pod answers).
async fn dns_server(address: Ipv4Addr) -> anyhow::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok((read, from)) = socket.recv_from(&mut buffer).await {
            let query = &buffer[..read];
            // Header, then the question's labels, then type and class.
            let mut at = 12;
            while at < query.len() && query[at] != 0 {
                at += 1 + query[at] as usize;
            }
            let question_end = at + 5;
            if read < 12 || question_end > read {
                continue;
            }
            let mut answer = query[..question_end].to_vec();
            answer[2] = 0x81;
            answer[3] = 0x80;
            answer[6..8].copy_from_slice(&1u16.to_be_bytes());
            answer[8..12].fill(0);
            answer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
            answer.extend_from_slice(&address.octets());
            let _ = socket.send_to(&answer, from).await;
        }
    });
    Ok(addr)
}

struct Outcome {
    name: &'static str,
    requests: u64,
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
        requests: histogram.len(),
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

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// An edge in this process with the catalog and inventory clusters at the
/// given `host:port`s, unlimited, without its admin listener.
async fn edge(
    catalog: &[String],
    inventory: &[String],
    discovery: DiscoveryConfig,
    tokens: &TokenConfig,
    shutdown: &Shutdown,
) -> anyhow::Result<(SocketAddr, EdgeHandle)> {
    let mut config = EdgeConfig::defaults("127.0.0.1:0".parse()?);
    let off = RateLimit {
        per_second: 0.0,
        burst: 0.0,
    };
    config.rate_per_address = off;
    config.rate_per_user = off;
    config.admin_listen = None;
    config.access_log = false;
    config.discovery = discovery;
    for (cluster, endpoints) in [("catalog", catalog), ("inventory", inventory)] {
        if let Some(cluster) = config.clusters.get_mut(cluster) {
            cluster.endpoints = endpoints.to_vec();
        }
    }
    let edge = Edge::bind(config, tokens).await?.without_revocation_feed();
    let (addr, handle) = (edge.local_addr(), edge.handle());
    tokio::spawn(edge.run_until_stopped(shutdown.clone()));
    Ok((addr, handle))
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Ok(service) = std::env::var(ENV_CHILD_SERVICE) {
        return runtime.block_on(child_service(&service));
    }
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let seconds: u64 = env_number("MESH_BENCH_SECS").unwrap_or(5);
    let in_flight: usize = env_number("MESH_BENCH_IN_FLIGHT").unwrap_or(32);
    let duration = Duration::from_secs(seconds);

    // A database of its own, seeded before the processes start.
    let server_url = std::env::var("BOXOFFICE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = format!("boxoffice_mesh_bench_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let database_url = boxoffice_runtime::postgres::url_with_database(&server_url, &database);
    let pool = boxoffice_runtime::postgres::pool(&Secret::new(database_url.clone()), 4)?;
    let shutdown = Shutdown::new();

    let result = async {
        let config = Config::from_vars(BTreeMap::from([
            (ENV_DATABASE_URL.to_owned(), database_url.clone()),
            (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
        ]))?;
        // Migrated and seeded once here, so the processes start on a
        // ready catalog.
        {
            let seeding = CatalogComponent::start(&config, pool.clone(), shutdown.clone()).await?;
            let store = boxoffice_catalog::store::CatalogStore::new(pool.clone());
            boxoffice_catalog::seed::seed_if_empty(&store, 5).await?;
            drop(seeding);
        }
        let catalogs = [
            ServiceProcess::spawn("catalog", &database_url)?,
            ServiceProcess::spawn("catalog", &database_url)?,
        ];
        let stubs = [
            ServiceProcess::spawn("inventory-stub", &database_url)?,
            ServiceProcess::spawn("inventory-stub", &database_url)?,
        ];
        let address = |process: &ServiceProcess| process.addr.to_string();
        let tokens = TokenConfig::ephemeral();
        let static_discovery = DiscoveryConfig::default();
        let (edge_one, _) = edge(
            &[address(&catalogs[0])],
            &[address(&stubs[0])],
            static_discovery,
            &tokens,
            &shutdown,
        )
        .await?;
        let (edge_two, edge_two_handle) = edge(
            &catalogs.iter().map(address).collect::<Vec<_>>(),
            &stubs.iter().map(address).collect::<Vec<_>>(),
            static_discovery,
            &tokens,
            &shutdown,
        )
        .await?;
        let dns = dns_server(Ipv4Addr::LOCALHOST).await?;
        let (edge_named, _) = edge(
            &[format!("{CATALOG_NAME}:{}", catalogs[0].addr.port())],
            &[address(&stubs[0])],
            DiscoveryConfig {
                interval: Duration::from_millis(200),
                dns_server: Some(dns),
            },
            &tokens,
            &shutdown,
        )
        .await?;

        let event = pb::catalog_service_client::CatalogServiceClient::new(channel(edge_one).await?)
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
        let (token, _) = TokenIssuer::new(&tokens).issue(
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            &["customer".to_owned()],
        )?;
        let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {token}").parse()?;
        let get_event = |channel: Channel, id: Arc<String>| {
            move || {
                let mut client =
                    pb::catalog_service_client::CatalogServiceClient::new(channel.clone());
                let id = id.clone();
                async move {
                    client
                        .get_event(pb::GetEventRequest { id: (*id).clone() })
                        .await
                        .is_ok()
                }
            }
        };
        let hold_seats = |channel: Channel,
                          id: Arc<String>,
                          bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>| {
            move || {
                let mut client =
                    inventory_pb::inventory_service_client::InventoryServiceClient::new(
                        channel.clone(),
                    );
                let mut request = Request::new(inventory_pb::HoldSeatsRequest {
                    event_id: (*id).clone(),
                    selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                        inventory_pb::BestAvailable {
                            quantity: 2,
                            ..Default::default()
                        },
                    )),
                    admission_token: String::new(),
                });
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
                async move { client.hold_seats(request).await.is_ok() }
            }
        };
        let (one, two, named) = (
            channel(edge_one).await?,
            channel(edge_two).await?,
            channel(edge_named).await?,
        );
        println!(
            "mesh benchmark: {in_flight} in flight, {seconds} s per scenario; services in child processes, edges and clients in this one"
        );
        let scenarios: [&'static str; 8] = [
            "GetEvent, 1 catalog",
            "GetEvent, 2 catalogs",
            "HoldSeats stub, 1 process",
            "HoldSeats stub, 2 processes",
            // Static, DNS, DNS, static: drift in the machine weighs on both.
            "GetEvent, static address",
            "GetEvent, DNS name",
            "GetEvent, DNS name",
            "GetEvent, static address",
        ];
        let mut outcomes = Vec::new();
        for name in scenarios {
            let outcome = match name {
                "GetEvent, 1 catalog" | "GetEvent, static address" => {
                    measure(name, in_flight, duration, get_event(one.clone(), id.clone())).await
                }
                "GetEvent, 2 catalogs" => {
                    measure(name, in_flight, duration, get_event(two.clone(), id.clone())).await
                }
                "GetEvent, DNS name" => {
                    measure(name, in_flight, duration, get_event(named.clone(), id.clone())).await
                }
                "HoldSeats stub, 1 process" => {
                    let call = hold_seats(one.clone(), id.clone(), bearer.clone());
                    measure(name, in_flight, duration, call).await
                }
                _ => {
                    let call = hold_seats(two.clone(), id.clone(), bearer.clone());
                    measure(name, in_flight, duration, call).await
                }
            };
            outcomes.push(outcome);
        }
        println!(
            "{:<28} {:>9} {:>10} {:>10} {:>10} {:>7}",
            "scenario", "requests", "req/s", "p50", "p99", "errors"
        );
        for outcome in &outcomes {
            println!(
                "{:<28} {:>9} {:>10.0} {:>10.2?} {:>10.2?} {:>7}",
                outcome.name,
                outcome.requests,
                outcome.per_second,
                outcome.p50,
                outcome.p99,
                outcome.errors
            );
        }
        let mean = |name: &str, value: fn(&Outcome) -> f64| {
            let runs: Vec<f64> = outcomes
                .iter()
                .filter(|outcome| outcome.name == name)
                .map(value)
                .collect();
            runs.iter().sum::<f64>() / runs.len().max(1) as f64
        };
        let rate = |outcome: &Outcome| outcome.per_second;
        let p99_ms = |outcome: &Outcome| outcome.p99.as_secs_f64() * 1000.0;
        println!(
            "GetEvent, 2 catalog processes / 1: {:.2}x requests/s",
            mean("GetEvent, 2 catalogs", rate) / mean("GetEvent, 1 catalog", rate)
        );
        println!(
            "HoldSeats stub, 2 processes / 1: {:.2}x requests/s",
            mean("HoldSeats stub, 2 processes", rate) / mean("HoldSeats stub, 1 process", rate)
        );
        println!(
            "GetEvent, DNS-named cluster vs static address: p99 added {:.3} ms, {:.2}x requests/s (mean of two runs each)",
            mean("GetEvent, DNS name", p99_ms) - mean("GetEvent, static address", p99_ms),
            mean("GetEvent, DNS name", rate) / mean("GetEvent, static address", rate)
        );
        // Both processes behind the second edge took their share.
        for stats in edge_two_handle.endpoints() {
            println!(
                "edge in front of two: {} {} answered {} calls ({} failed attempts)",
                stats.cluster, stats.endpoint, stats.requests, stats.failures
            );
        }
        drop(catalogs);
        drop(stubs);
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
