//! The edge's cost, measured in one run.
//!
//! **Throughput and latency**: cached `GetEvent` straight to the catalog and
//! through the edge, a trivial tonic echo server (also straight and through
//! the edge), and `HoldSeats` with a bearer token against an inventory stub
//! (the on-sale rush's path through auth, routing and proxying, without
//! Redis), each with the same number of requests in flight. Prints
//! requests/s, p50/p99, and the ratios the edge is held to (≥ 0.6× the
//! direct rate, ≤ 1 ms added at p99 with 8 in flight).
//!
//! **Revocation check**: cached `GetEvent` with a bearer token through an
//! edge that follows accounts' revocation feed (with 1,000 sessions revoked
//! and 20 more revoked every second while it runs, each of which makes
//! every cached token look in the set once more) and through one that does
//! not, alternating off, on, on, off in one run. Target: on ≥ 0.95× off.
//!
//! **Idle streams**: the edge's memory with 10,000 open `WatchAvailability`
//! streams. The edge runs alone in a child process (this same binary,
//! re-executed), so its `/proc/<pid>/status` `VmRSS` counts nothing but the
//! edge; the clients and an inventory stub (one snapshot, then silence) stay
//! in this process. Measured over a few client connections (one HTTP/2
//! connection multiplexing many watches) and over one connection per stream
//! (10,000 browsers).
//!
//! `cargo bench -p boxoffice-benches --bench edge` (PostgreSQL on
//! 127.0.0.1:5432 or `BOXOFFICE_BENCH_POSTGRES_URL`). Tuning:
//! `EDGE_BENCH_SECS` (5) and `EDGE_BENCH_IN_FLIGHT` (8); `EDGE_BENCH_REQUESTS`
//! runs a fixed number of requests per scenario instead of a duration (for
//! `valgrind --tool=callgrind`: instructions per request are reproducible on
//! a busy machine); `EDGE_BENCH_ONLY` is a comma-separated list of words
//! picking scenarios (`echo`, `GetEvent`, `HoldSeats`, `direct`, `edge`,
//! `revocation`, `streams`, `throughput`); `EDGE_BENCH_STREAMS` (10000) and
//! `EDGE_BENCH_STREAM_CONNECTIONS` ("100,10000") shape the memory test.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_accounts::TokenConfig;
use boxoffice_accounts::token::TokenIssuer;
use boxoffice_catalog::CatalogComponent;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::testing::v1 as echo_pb;
use boxoffice_edge::config::{ClusterConfig, RateLimit, RouteConfig};
use boxoffice_edge::routes::Access;
use boxoffice_edge::{Edge, EdgeConfig};
use boxoffice_runtime::config::{ENV_DATABASE_URL, ENV_LISTEN, Secret};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use futures::{Stream, StreamExt as _};
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Set in the child process: run only an edge in front of this upstream.
const ENV_CHILD_UPSTREAM: &str = "EDGE_BENCH_CHILD_UPSTREAM";
const WATCH_SEATS: u32 = 20_000;

#[derive(Clone, Copy, Default)]
struct Echo;

#[tonic::async_trait]
impl echo_pb::echo_service_server::EchoService for Echo {
    async fn echo(
        &self,
        request: Request<echo_pb::EchoRequest>,
    ) -> Result<Response<echo_pb::EchoResponse>, Status> {
        Ok(Response::new(echo_pb::EchoResponse {
            message: request.into_inner().message,
        }))
    }
}

/// Inventory as the edge sees it, with nothing behind it: `HoldSeats`
/// answers a fixed hold, `WatchAvailability` sends one snapshot and then
/// stays open and silent (an idle watch), counting the watches open.
#[derive(Clone, Default)]
struct InventoryStub {
    open_watches: Arc<AtomicUsize>,
}

struct OpenWatch(Arc<AtomicUsize>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

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
        request: Request<inventory_pb::WatchAvailabilityRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.open_watches.fetch_add(1, Ordering::Relaxed);
        let open = OpenWatch(self.open_watches.clone());
        let bitmap = vec![0u8; WATCH_SEATS.div_ceil(8) as usize];
        let snapshot = inventory_pb::AvailabilityUpdate {
            update: Some(inventory_pb::availability_update::Update::Snapshot(
                inventory_pb::Availability {
                    event_id: request.into_inner().event_id,
                    seat_count: WATCH_SEATS,
                    sold: bitmap.clone(),
                    held: bitmap,
                    available_count: WATCH_SEATS,
                    on_sale: true,
                    cursor: "0-0".to_owned(),
                    tier_prices: Vec::new(),
                },
            )),
        };
        let stream = futures::stream::once(async move { Ok(snapshot) })
            .chain(futures::stream::pending())
            .inspect(move |_| {
                let _ = &open;
            });
        Ok(Response::new(Box::pin(stream)))
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

struct Outcome {
    name: &'static str,
    requests: u64,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// How long a scenario runs.
#[derive(Clone, Copy)]
enum Amount {
    Duration(Duration),
    /// Requests in total, split over the workers.
    Requests(u64),
}

async fn measure<F, Fut>(name: &'static str, in_flight: usize, amount: Amount, call: F) -> Outcome
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
    for worker in 0..in_flight {
        let call = call.clone();
        let quota = match amount {
            Amount::Requests(total) => {
                let share = total / in_flight as u64;
                share + u64::from((worker as u64) < total % in_flight as u64)
            }
            Amount::Duration(_) => u64::MAX,
        };
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram bounds are constants");
            let mut errors = 0u64;
            let mut done = 0u64;
            while done < quota
                && match amount {
                    Amount::Duration(duration) => start.elapsed() < duration,
                    Amount::Requests(_) => true,
                }
            {
                let sent = Instant::now();
                if !call().await {
                    errors += 1;
                }
                let _ = histogram.record(sent.elapsed().as_micros() as u64);
                done += 1;
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

/// `EDGE_BENCH_ONLY=echo,edge` runs the scenarios whose name (or group)
/// contains every listed word; unset runs everything.
fn selected(name: &str) -> bool {
    match std::env::var("EDGE_BENCH_ONLY") {
        Ok(words) if !words.trim().is_empty() => words
            .split(',')
            .map(str::trim)
            .filter(|word| !word.is_empty())
            .all(|word| name.to_lowercase().contains(&word.to_lowercase())),
        _ => true,
    }
}

fn unlimited(config: &mut EdgeConfig) {
    let off = RateLimit {
        per_second: 0.0,
        burst: 0.0,
    };
    config.rate_per_address = off;
    config.rate_per_user = off;
    config.admin_listen = None;
    config.access_log = false;
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Ok(upstream) = std::env::var(ENV_CHILD_UPSTREAM) {
        return runtime.block_on(child_edge(upstream.parse()?));
    }
    runtime.block_on(async {
        if selected("throughput echo GetEvent HoldSeats direct edge revocation") {
            throughput().await?;
        }
        if selected("streams memory") {
            idle_streams().await?;
        }
        anyhow::Ok(())
    })
}

async fn throughput() -> anyhow::Result<()> {
    let seconds: u64 = env_number("EDGE_BENCH_SECS").unwrap_or(5);
    let in_flight: usize = env_number("EDGE_BENCH_IN_FLIGHT").unwrap_or(8);
    let amount = match env_number::<u64>("EDGE_BENCH_REQUESTS") {
        Some(requests) => Amount::Requests(requests),
        None => Amount::Duration(Duration::from_secs(seconds)),
    };

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
    let database_url = boxoffice_runtime::postgres::url_with_database(&server_url, &database);
    let config = Config::from_vars(BTreeMap::from([
        (ENV_DATABASE_URL.to_owned(), database_url.clone()),
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
    ]))?;
    let pool = boxoffice_runtime::postgres::pool(&Secret::new(database_url), 8)?;
    let shutdown = Shutdown::new();

    let result = async {
        let tokens = TokenConfig::ephemeral();
        let mut catalog_server = GrpcServer::bind(config.listen).await?;
        let catalog = CatalogComponent::start(&config, pool.clone(), shutdown.clone()).await?;
        catalog.register(&mut catalog_server);
        // Accounts beside the catalog: the edges follow its revocation feed.
        let accounts = boxoffice_accounts::AccountsComponent::start(
            &config,
            &tokens,
            boxoffice_accounts::AccountsConfig::development(),
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        accounts.register(&mut catalog_server);
        let catalog_addr = catalog_server.local_addr();
        tokio::spawn(catalog_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));
        let store = boxoffice_catalog::store::CatalogStore::new(pool.clone());
        boxoffice_catalog::seed::seed_if_empty(&store, 5).await?;

        let mut echo_server = GrpcServer::bind(config.listen).await?;
        echo_server.add_service(echo_pb::echo_service_server::EchoServiceServer::new(Echo));
        let echo_addr = echo_server.local_addr();
        tokio::spawn(echo_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));

        let mut inventory_server = GrpcServer::bind(config.listen).await?;
        inventory_server.add_service(
            inventory_pb::inventory_service_server::InventoryServiceServer::new(InventoryStub::default()),
        );
        let inventory_addr = inventory_server.local_addr();
        tokio::spawn(inventory_server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));

        let mut edge_config = EdgeConfig::defaults("127.0.0.1:0".parse()?).with_upstream_everywhere(catalog_addr);
        unlimited(&mut edge_config);
        if let Some(inventory) = edge_config.clusters.get_mut("inventory") {
            inventory.endpoints = vec![inventory_addr.to_string()];
        }
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
        let edge = Edge::bind(edge_config.clone(), &tokens).await?;
        let edge_addr = edge.local_addr();
        let edge_handle = edge.handle();
        tokio::spawn(edge.run_until_stopped(shutdown.clone()));
        let edge_off = Edge::bind(edge_config, &tokens).await?.without_revocation_feed();
        let edge_off_addr = edge_off.local_addr();
        tokio::spawn(edge_off.run_until_stopped(shutdown.clone()));
        // 1,000 revoked sessions, as after a busy quarter of an hour.
        pool.get()
            .await?
            .execute(
                "INSERT INTO accounts.revocations (session_id, forget_at)
                 SELECT gen_random_uuid(), now() + interval '15 minutes' FROM generate_series(1, 1000)",
                &[],
            )
            .await?;
        let started = Instant::now();
        while edge_handle.revocations().is_none_or(|(known, _)| known < 1000) {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "the edge never learned the revocations");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

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
        let (token, _) = TokenIssuer::new(&tokens).issue(uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), &["customer".to_owned()])?;
        let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}").parse()?;

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
        let hold_seats = |channel: Channel, id: Arc<String>, bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>| {
            move || {
                let mut client = inventory_pb::inventory_service_client::InventoryServiceClient::new(channel.clone());
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
                if let Some(bearer) = &bearer {
                    request.metadata_mut().insert("authorization", bearer.clone());
                }
                async move { client.hold_seats(request).await.is_ok() }
            }
        };
        let get_event_with_token = |channel: Channel, id: Arc<String>, bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>| {
            move || {
                let mut client = pb::catalog_service_client::CatalogServiceClient::new(channel.clone());
                let mut request = Request::new(pb::GetEventRequest { id: (*id).clone() });
                request.metadata_mut().insert("authorization", bearer.clone());
                async move { client.get_event(request).await.is_ok() }
            }
        };
        let through_edge = channel(edge_addr).await?;
        let through_edge_off = channel(edge_off_addr).await?;
        let echo_direct = channel(echo_addr).await?;
        let inventory_direct = channel(inventory_addr).await?;
        match amount {
            Amount::Duration(_) => println!("edge benchmark: {in_flight} in flight, {seconds} s per scenario (same process, same machine)"),
            Amount::Requests(requests) => println!("edge benchmark: {in_flight} in flight, {requests} requests per scenario (same process, same machine)"),
        }
        let mut outcomes = Vec::new();
        let scenarios: [&'static str; 10] = [
            "echo, direct",
            "echo, through the edge",
            "GetEvent, direct",
            "GetEvent, through the edge",
            "HoldSeats stub, direct",
            "HoldSeats stub, edge + JWT",
            // Off, on, on, off: a machine that slows down (or speeds up)
            // during the run weighs on both sides alike.
            "GetEvent+JWT revocation off",
            "GetEvent+JWT revocation on",
            "GetEvent+JWT revocation on",
            "GetEvent+JWT revocation off",
        ];
        for name in scenarios {
            if !selected(name) {
                continue;
            }
            // While the revocation check is measured, sessions keep being
            // revoked (20 a second): each one sends every cached token back
            // to the set once.
            let churn = name.ends_with("revocation on").then(|| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_millis(50));
                    loop {
                        every.tick().await;
                        if let Ok(client) = pool.get().await {
                            let _ = client
                                .execute(
                                    "INSERT INTO accounts.revocations (session_id, forget_at)
                                     VALUES (gen_random_uuid(), now() + interval '15 minutes')",
                                    &[],
                                )
                                .await;
                        }
                    }
                })
            });
            let outcome = match name {
                "GetEvent+JWT revocation off" => measure(name, in_flight, amount, get_event_with_token(through_edge_off.clone(), id.clone(), bearer.clone())).await,
                "GetEvent+JWT revocation on" => measure(name, in_flight, amount, get_event_with_token(through_edge.clone(), id.clone(), bearer.clone())).await,
                "echo, direct" => measure(name, in_flight, amount, echo(echo_direct.clone())).await,
                "echo, through the edge" => measure(name, in_flight, amount, echo(through_edge.clone())).await,
                "GetEvent, direct" => measure(name, in_flight, amount, get_event(direct.clone(), id.clone())).await,
                "GetEvent, through the edge" => measure(name, in_flight, amount, get_event(through_edge.clone(), id.clone())).await,
                "HoldSeats stub, direct" => measure(name, in_flight, amount, hold_seats(inventory_direct.clone(), id.clone(), None)).await,
                _ => measure(name, in_flight, amount, hold_seats(through_edge.clone(), id.clone(), Some(bearer.clone()))).await,
            };
            if let Some(churn) = churn {
                churn.abort();
            }
            outcomes.push(outcome);
        }
        println!("{:<28} {:>9} {:>10} {:>10} {:>10} {:>7}", "scenario", "requests", "req/s", "p50", "p99", "errors");
        for outcome in &outcomes {
            println!(
                "{:<28} {:>9} {:>10.0} {:>10.2?} {:>10.2?} {:>7}",
                outcome.name, outcome.requests, outcome.per_second, outcome.p50, outcome.p99, outcome.errors
            );
        }
        let find = |name: &str| outcomes.iter().find(|outcome| outcome.name == name);
        let compare = |label: &str, direct: &str, edge: &str| {
            if let (Some(direct), Some(edge)) = (find(direct), find(edge)) {
                println!(
                    "{label} through the edge / direct: {:.2}x requests/s (target >= 0.60x); p99 added {:.3} ms (target <= 1 ms)",
                    edge.per_second / direct.per_second,
                    (edge.p99.as_secs_f64() - direct.p99.as_secs_f64()) * 1000.0
                );
            }
        };
        compare("GetEvent", "GetEvent, direct", "GetEvent, through the edge");
        compare("echo", "echo, direct", "echo, through the edge");
        compare("HoldSeats stub (with JWT)", "HoldSeats stub, direct", "HoldSeats stub, edge + JWT");
        let rate = |name: &str| {
            let runs: Vec<f64> = outcomes.iter().filter(|outcome| outcome.name == name).map(|outcome| outcome.per_second).collect();
            (!runs.is_empty()).then(|| runs.iter().sum::<f64>() / runs.len() as f64)
        };
        if let (Some(off), Some(on)) = (rate("GetEvent+JWT revocation off"), rate("GetEvent+JWT revocation on")) {
            println!(
                "GetEvent with a bearer token, revocation check on / off: {:.3}x requests/s ({on:.0} vs {off:.0}, mean of two runs each; target >= 0.95x); revoked sessions known: {}",
                on / off,
                edge_handle.revocations().map_or(0, |(known, _)| known)
            );
        }
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

/// The child process: an edge alone, every cluster pointed at `upstream`.
/// Prints its address, then serves until its stdin closes (the parent
/// exiting, even by a crash, ends it).
async fn child_edge(upstream: SocketAddr) -> anyhow::Result<()> {
    let mut config =
        EdgeConfig::defaults("127.0.0.1:0".parse()?).with_upstream_everywhere(upstream);
    unlimited(&mut config);
    let edge = Edge::bind(config, &TokenConfig::ephemeral()).await?;
    println!("EDGE_LISTENING {}", edge.local_addr());
    std::io::stdout().flush()?;
    let shutdown = Shutdown::new();
    let serving = tokio::spawn(edge.run_until_stopped(shutdown.clone()));
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await?;
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    Ok(())
}

/// `VmRSS` and `RssAnon` of a process, in KiB.
fn resident_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

struct ChildEdge {
    child: Child,
    addr: SocketAddr,
}

impl ChildEdge {
    fn spawn(upstream: SocketAddr) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ENV_CHILD_UPSTREAM, upstream.to_string())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the edge process")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("EDGE_LISTENING ")
            .with_context(|| format!("the edge process said {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildEdge {
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

async fn wait_for(
    what: &str,
    deadline: Duration,
    condition: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    while !condition() {
        anyhow::ensure!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Opens `streams` watches through the edge over `connections` client
/// connections; returns them (open) once each has its snapshot.
async fn open_watches(
    edge: SocketAddr,
    streams: usize,
    connections: usize,
) -> anyhow::Result<(
    Vec<Channel>,
    Vec<tonic::Streaming<inventory_pb::AvailabilityUpdate>>,
)> {
    let channels: Vec<Channel> = futures::stream::iter(0..connections)
        .map(|_| channel(edge))
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let event_id = uuid::Uuid::new_v4().to_string();
    let opened: Vec<_> = futures::stream::iter(0..streams)
        .map(|index| {
            let mut client = inventory_pb::inventory_service_client::InventoryServiceClient::new(
                channels[index % connections].clone(),
            );
            let event_id = event_id.clone();
            async move {
                let mut stream = client
                    .watch_availability(inventory_pb::WatchAvailabilityRequest {
                        event_id,
                        cursor: String::new(),
                    })
                    .await?
                    .into_inner();
                let first = stream.message().await?;
                anyhow::ensure!(first.is_some(), "the watch ended before its snapshot");
                anyhow::Ok(stream)
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let opened = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((channels, opened))
}

async fn idle_streams() -> anyhow::Result<()> {
    let streams: usize = env_number("EDGE_BENCH_STREAMS").unwrap_or(10_000);
    let layouts: Vec<usize> = std::env::var("EDGE_BENCH_STREAM_CONNECTIONS")
        .unwrap_or_else(|_| "100,10000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    if streams == 0 {
        return Ok(());
    }
    let shutdown = Shutdown::new();
    let stub = InventoryStub::default();
    let mut server = GrpcServer::bind("127.0.0.1:0".parse()?).await?;
    server.add_service(
        inventory_pb::inventory_service_server::InventoryServiceServer::new(stub.clone()),
    );
    let upstream = server.local_addr();
    tokio::spawn(server.run_until_stopped(shutdown.clone(), Duration::from_secs(1)));

    println!();
    println!(
        "edge memory with {streams} idle WatchAvailability streams (the edge alone in a child process; VmRSS)"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "clients", "idle MiB", "open MiB", "added MiB", "per stream", "closed MiB"
    );
    for connections in layouts {
        let connections = connections.min(streams);
        let edge = ChildEdge::spawn(upstream)?;
        // Warm up: one watch opened and closed, so the upstream connection
        // and the runtime's first allocations are part of the baseline.
        {
            let (_channels, _open) = open_watches(edge.addr, 1, 1).await?;
        }
        wait_for(
            "the warm-up watch to close",
            Duration::from_secs(10),
            || stub.open_watches.load(Ordering::Relaxed) == 0,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (idle, _) = resident_kib(edge.pid())?;
        let started = Instant::now();
        let (channels, open) = open_watches(edge.addr, streams, connections).await?;
        let opening = started.elapsed();
        wait_for(
            "every watch to reach the upstream",
            Duration::from_secs(30),
            || stub.open_watches.load(Ordering::Relaxed) == streams,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (with_streams, anon) = resident_kib(edge.pid())?;
        drop(open);
        drop(channels);
        wait_for("every watch to close", Duration::from_secs(30), || {
            stub.open_watches.load(Ordering::Relaxed) == 0
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (closed, _) = resident_kib(edge.pid())?;
        let added = with_streams.saturating_sub(idle);
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "{:<34} {:>10.1} {:>10.1} {:>10.1} {:>10.2} KiB {:>10.1}",
            format!("{streams} streams / {connections} connections"),
            mib(idle),
            mib(with_streams),
            mib(added),
            added as f64 / streams as f64,
            mib(closed),
        );
        println!(
            "    (opened in {:.1} s; anonymous memory with the streams open {:.1} MiB; target < 200 MiB for 10,000 streams)",
            opening.as_secs_f64(),
            mib(anon)
        );
    }
    shutdown.trigger();
    Ok(())
}
