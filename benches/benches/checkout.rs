//! ConfirmBooking throughput and latency over gRPC, next to `pgbench`
//! running inventory's commit statement (the one statement every
//! confirmation must pay for) against the same database in the same run,
//! with the ratio printed. Target: ≥ 0.5× the pgbench rate, p99 ≤ 25 ms.
//!
//! `cargo bench -p boxoffice-benches --bench checkout` (PostgreSQL and
//! Redis on 127.0.0.1; BOXOFFICE_BENCH_BOOKINGS and
//! BOXOFFICE_BENCH_CONCURRENCY change the size).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_catalog::CatalogComponent;
use boxoffice_checkout::{CheckoutComponent, CheckoutConfig};
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_runtime::config::{ENV_DATABASE_URL, ENV_LISTEN, ENV_REDIS_URL, Secret};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Caller, Config, Shutdown};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

const PLACES: u32 = 40_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn with_identity<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    caller.write_to(request.metadata_mut());
    request
}

fn days_from_now(days: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|now| now.as_secs() as i64)
            .unwrap_or(0)
            + days * 86_400,
        nanos: 0,
    }
}

async fn serve(server: GrpcServer, shutdown: &Shutdown) -> anyhow::Result<Channel> {
    let addr = server.local_addr();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        server
            .run_until_stopped(shutdown, Duration::from_secs(1))
            .await
    });
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

/// A venue of standing places and a published event on sale in inventory.
async fn event_on_sale(
    catalog: &mut CatalogServiceClient<Channel>,
    inventory: &mut InventoryServiceClient<Channel>,
) -> anyhow::Result<(String, String)> {
    let admin = Caller::user(Uuid::new_v4(), &["admin"]);
    let venue = catalog
        .create_venue(with_identity(
            &admin,
            catalog_pb::CreateVenueRequest {
                name: "Bench Arena".into(),
                address: Some(catalog_pb::PostalAddress {
                    street: "1 Bench Road".into(),
                    city: "Leeds".into(),
                    region: String::new(),
                    postal_code: "LS1".into(),
                    country_code: "GB".into(),
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections: vec![catalog_pb::SectionSpec {
                    name: "Floor".into(),
                    kind: catalog_pb::SectionKind::GeneralAdmission as i32,
                    capacity: PLACES,
                    rows: vec![],
                }],
            },
        ))
        .await?
        .into_inner();
    let event = catalog
        .create_event(with_identity(
            &admin,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Bench Night".into(),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(days_from_now(30)),
                    end_time: Some(days_from_now(31)),
                    price_tiers: vec![catalog_pb::PriceTier {
                        name: "Floor".into(),
                        price: Some(catalog_pb::Money {
                            currency_code: "GBP".into(),
                            amount_minor: 5_000,
                        }),
                        section_ids: vec![venue.sections[0].id.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
        ))
        .await?
        .into_inner();
    catalog
        .publish_event(with_identity(
            &admin,
            catalog_pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await?;
    let started = Instant::now();
    loop {
        let request = inventory_pb::GetAvailabilityRequest {
            event_id: event.id.clone(),
        };
        if inventory.get_availability(request).await.is_ok() {
            return Ok((event.id, venue.sections[0].id.clone()));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(180),
            "inventory never put the event on sale"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `pgbench` with inventory's commit statement on distinct seats.
fn pgbench(
    database: &str,
    event_id: &str,
    first_seat: u32,
    transactions: usize,
    clients: usize,
) -> anyhow::Result<(f64, f64)> {
    let script = format!(
        "WITH params AS (
             SELECT '{event_id}'::uuid AS event_id,
                    ARRAY[(nextval('public.bench_seats') % {PLACES})::int4] AS seats,
                    gen_random_uuid() AS booking_id, gen_random_uuid() AS hold_id,
                    now() + interval '10 minutes' AS expires_at, 5000::float8 AS margin_ms
         ),
         locked AS (
             SELECT t.seat_index, t.status, t.booking_id FROM inventory.tickets t, params p
             WHERE t.event_id = p.event_id AND t.seat_index = ANY(p.seats)
             ORDER BY t.seat_index
             FOR UPDATE OF t
         ),
         counts AS (
             SELECT count(*) FILTER (WHERE status = 'available') AS free,
                    count(*) FILTER (WHERE status = 'sold' AND locked.booking_id = (SELECT booking_id FROM params)) AS mine,
                    count(*) AS total
             FROM locked
         ),
         checks AS (
             SELECT (p.expires_at - p.margin_ms * interval '1 millisecond') > now() AS lease_ok,
                    coalesce((SELECT status = 'on_sale' FROM inventory.events e WHERE e.event_id = p.event_id), false) AS on_sale
             FROM params p
         ),
         sold AS (
             UPDATE inventory.tickets t
             SET status = 'sold', booking_id = p.booking_id, hold_id = p.hold_id, version = t.version + 1, sold_at = now()
             FROM counts, checks, params p
             WHERE t.event_id = p.event_id AND t.seat_index = ANY(p.seats) AND t.status = 'available'
               AND counts.free = cardinality(p.seats) AND checks.lease_ok AND checks.on_sale
             RETURNING t.seat_index
         )
         SELECT (SELECT count(*) FROM sold) AS sold, counts.free, counts.mine, counts.total, checks.lease_ok, checks.on_sale
         FROM counts, checks;\n"
    )
    .replace('\n', " ")
        + "\n";
    let path =
        std::env::temp_dir().join(format!("boxoffice-commit-{}.sql", Uuid::new_v4().simple()));
    std::fs::write(&path, script)?;
    let binary = ["pgbench", "/usr/lib/postgresql/15/bin/pgbench"]
        .into_iter()
        .find(|binary| {
            std::process::Command::new(binary)
                .arg("--version")
                .output()
                .is_ok()
        })
        .context("pgbench is not installed (apt install postgresql-contrib)")?;
    let prepare = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-qc"])
        .arg(format!(
            "CREATE SEQUENCE public.bench_seats START {first_seat}"
        ))
        .status()?;
    anyhow::ensure!(prepare.success(), "creating the seat sequence failed");
    let per_client = (transactions / clients).max(1);
    let output = std::process::Command::new(binary)
        .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared"])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-t",
            &per_client.to_string(),
        ])
        .arg("-f")
        .arg(&path)
        .arg(database)
        .output()?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let number_after = |label: &str| {
        stdout
            .lines()
            .find(|line| line.contains(label))
            .and_then(|line| line.split('=').nth(1))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    let tps = number_after("tps").context("no tps in pgbench output")?;
    let latency = number_after("latency average").unwrap_or(0.0);
    Ok((tps, latency))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bookings = env_number("BOXOFFICE_BENCH_BOOKINGS", 4_000);
    let concurrency = env_number("BOXOFFICE_BENCH_CONCURRENCY", 32);
    let database = format!("boxoffice_bench_checkout_{}", Uuid::new_v4().simple());
    let server_url = "postgres://postgres@127.0.0.1:5432";
    let url = Secret::new(format!("{server_url}/{database}"));
    boxoffice_runtime::postgres::ensure_database(&url).await?;
    let vars = BTreeMap::from([
        (ENV_DATABASE_URL.to_owned(), url.expose().to_owned()),
        (
            ENV_REDIS_URL.to_owned(),
            "redis://127.0.0.1:6379".to_owned(),
        ),
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
    ]);
    let config = Config::from_vars(vars).map_err(|error| anyhow::anyhow!("{error}"))?;
    let pool = boxoffice_runtime::postgres::pool(&url, 64)?;
    let shutdown = Shutdown::new();

    let mut upstream = GrpcServer::bind(config.listen).await?;
    let catalog = CatalogComponent::start(&config, pool.clone(), shutdown.clone()).await?;
    catalog.register(&mut upstream);
    let inventory_config = boxoffice_inventory::InventoryConfig {
        key_prefix: format!("bench-{}:", Uuid::new_v4().simple()),
        redis_pool_size: 16,
        ..Default::default()
    };
    let inventory = boxoffice_inventory::InventoryComponent::start_with(
        &config,
        inventory_config,
        pool.clone(),
        shutdown.clone(),
    )
    .await?;
    inventory.register(&mut upstream);
    let upstream_addr = upstream.local_addr();
    let upstream_channel = serve(upstream, &shutdown).await?;

    let checkout_config = CheckoutConfig {
        inventory_url: format!("http://{upstream_addr}"),
        catalog_url: format!("http://{upstream_addr}"),
        webhook_listen: "127.0.0.1:0".parse()?,
        ..CheckoutConfig::default()
    };
    let checkout =
        CheckoutComponent::start_with(checkout_config, pool.clone(), shutdown.clone(), None)
            .await?;
    let mut checkout_server = GrpcServer::bind("127.0.0.1:0".parse()?).await?;
    checkout.register(&mut checkout_server);
    let checkout_channel = serve(checkout_server, &shutdown).await?;

    let mut inventory_client = InventoryServiceClient::new(upstream_channel.clone());
    let (event_id, section_id) = event_on_sale(
        &mut CatalogServiceClient::new(upstream_channel.clone()),
        &mut inventory_client,
    )
    .await?;
    eprintln!("event {event_id} on sale; preparing {bookings} pending bookings");

    // One user, one seat, one pending booking per confirmation.
    let prepared = Arc::new(Mutex::new(Vec::with_capacity(bookings)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (prepared, next) = (prepared.clone(), next.clone());
        let (mut inventory, mut client) = (
            inventory_client.clone(),
            CheckoutServiceClient::new(checkout_channel.clone()),
        );
        let (event_id, section_id) = (event_id.clone(), section_id.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < bookings {
                let user = Caller::user(Uuid::new_v4(), &["customer"]);
                let hold = inventory
                    .hold_seats(with_identity(
                        &user,
                        inventory_pb::HoldSeatsRequest {
                            event_id: event_id.clone(),
                            selection: Some(
                                inventory_pb::hold_seats_request::Selection::BestAvailable(
                                    inventory_pb::BestAvailable {
                                        quantity: 1,
                                        section_id: section_id.clone(),
                                        ..Default::default()
                                    },
                                ),
                            ),
                            admission_token: String::new(),
                        },
                    ))
                    .await?
                    .into_inner();
                let booking = client
                    .create_booking(with_identity(
                        &user,
                        pb::CreateBookingRequest {
                            hold: hold.name,
                            idempotency_key: String::new(),
                        },
                    ))
                    .await?
                    .into_inner();
                prepared.lock().await.push((user, booking.name));
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let queue = Arc::new(Mutex::new(std::mem::take(&mut *prepared.lock().await)));

    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let queue = queue.clone();
        let mut client = CheckoutServiceClient::new(checkout_channel.clone());
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            loop {
                let Some((user, name)) = queue.lock().await.pop() else {
                    break;
                };
                let began = Instant::now();
                let result = client
                    .confirm_booking(with_identity(
                        &user,
                        pb::ConfirmBookingRequest {
                            name,
                            payment_method: Some(pb::PaymentMethod {
                                token: "tok_visa".into(),
                            }),
                            idempotency_key: Uuid::new_v4().to_string(),
                        },
                    ))
                    .await;
                histogram.record(began.elapsed().as_micros().max(1) as u64)?;
                if result.is_err() {
                    errors += 1;
                }
            }
            anyhow::Ok((histogram, errors))
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for worker in workers {
        let (part, part_errors) = worker.await??;
        histogram.add(part)?;
        errors += part_errors;
    }
    let elapsed = started.elapsed();
    let rate = bookings as f64 / elapsed.as_secs_f64();
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;

    let captured = checkout
        .provider
        .payments()
        .iter()
        .filter(|payment| payment.status == boxoffice_checkout::payment::ProviderStatus::Captured)
        .count();
    let remaining = (PLACES as usize).saturating_sub(bookings + 100);
    let (pgbench_tps, pgbench_latency) = pgbench(
        &database,
        &event_id,
        bookings as u32 + 100,
        remaining.min(20_000),
        concurrency,
    )?;

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "checkout ConfirmBooking over gRPC ({cpus} cpus, {concurrency} concurrent callers, {bookings} bookings)"
    );
    println!(
        "  {:<34} {:>10} {:>9} {:>9} {:>9}",
        "scenario", "per sec", "p50 ms", "p99 ms", "errors"
    );
    println!(
        "  {:<34} {:>10.0} {:>9.2} {:>9.2} {:>9}",
        "ConfirmBooking (gRPC)",
        rate,
        ms(0.5),
        ms(0.99),
        errors
    );
    println!(
        "  {:<34} {:>10.0} {:>9.2} {:>9} {:>9}",
        "pgbench: inventory commit statement", pgbench_tps, pgbench_latency, "-", 0
    );
    let ratio = rate / pgbench_tps;
    println!(
        "  ratio ConfirmBooking / pgbench: {ratio:.2} (target ≥ 0.50: {}); p99 target ≤ 25 ms: {}",
        if ratio >= 0.5 { "met" } else { "BELOW TARGET" },
        if ms(0.99) <= 25.0 { "met" } else { "MISSED" }
    );
    println!(
        "  captured payments: {captured} (confirmed without errors: {})",
        bookings as u64 - errors
    );

    shutdown.trigger();
    drop(pool);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
        .arg(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .status();
    Ok(())
}
