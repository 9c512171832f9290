//! ConfirmBooking alone, over gRPC through the real system
//! ([`boxoffice::System`], edge in front, as `boxoffice up` runs it), next to
//! `pgbench` running the same kind of sale statement (synchronous commit on)
//! in the same process run, before and after the confirmations, with the
//! ratio to the mean of the two printed. Target: ≥ 0.5× the
//! pgbench rate, p99 ≤ 25 ms.
//!
//! Holds and pending bookings are made before the timed part (2 seats each,
//! like the pgbench sale), so only confirmations are measured: each one is
//! checkout's read, authorize, inventory's CommitHold (the sale), capture
//! and checkout's one write, plus the provider's webhooks arriving meanwhile.
//!
//! `cargo bench -p boxoffice-benches --bench checkout` (PostgreSQL and Redis
//! on 127.0.0.1). Knobs: `BOXOFFICE_BENCH_CONCURRENCY` (comma-separated
//! levels, default `16,32,64,96,128`), `BOXOFFICE_BENCH_BOOKINGS` (measured
//! confirmations per level, default 20000, about three seconds' worth), `BOXOFFICE_BENCH_VIA` (`edge`,
//! the default, or `internal` to skip the gateway),
//! `BOXOFFICE_BENCH_PGBENCH_SECS` (default 10), and
//! `BOXOFFICE_BENCH_PAYMENTS` (comma-separated payment paths, each on a
//! system of its own, all in the one run and against the same pgbench:
//! `in-process`, the simulated provider inside checkout; `card`, the card
//! gateway over Stripe's HTTP API to the simulator running as its own
//! process with its fsynced journal, as `boxoffice up` pays; `paypal`,
//! PayPal's HTTP API on the same simulator, where one payment is
//! ConfirmBooking, the buyer's approval on PayPal's page and ConfirmBooking
//! again; default all three),
//! `BOXOFFICE_BENCH_GROUPS_OFF` (comma-separated consumer groups paused
//! while confirmations are measured, e.g. `stats,webhooks`, or `all`: what
//! the groups cost beside the confirmations; they catch up before the next
//! level).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_benches::load::Summary;
use boxoffice_benches::load::{self, LoadSpec, Mode, Outcome};
use boxoffice_benches::system::{BenchSystem, PaysimProcess, channels, serve_paysim_if_asked};
use boxoffice_benches::{baselines, cpu};
use boxoffice_checkout::payment::ProviderStatus;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_runtime::Caller;
use tonic::transport::Channel;
use uuid::Uuid;

/// Seats per booking, as in the pgbench sale.
const SEATS_PER_BOOKING: u32 = 2;
/// Confirmations before each measured level (connections, caches, JIT of
/// the database's plans), not timed.
const WARMUP_CONFIRMATIONS: usize = 300;
/// Users the bookings are spread over (each may hold many times).
const USERS: usize = 500;
/// The consumer groups that follow confirmations (checkout's and
/// inventory's streams): `BOXOFFICE_BENCH_GROUPS_OFF=all` pauses these.
const CONFIRMATION_GROUPS: [&str; 6] = [
    "stats",
    "webhooks",
    "checkout-loyalty",
    "checkout-erasure",
    "catalog-reviews",
    "catalog-prices",
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn concurrency_levels() -> Vec<usize> {
    let raw =
        std::env::var("BOXOFFICE_BENCH_CONCURRENCY").unwrap_or_else(|_| "16,32,64,96,128".into());
    let levels: Vec<usize> = raw
        .split(',')
        .filter_map(|level| level.trim().parse().ok())
        .filter(|level| *level > 0)
        .collect();
    if levels.is_empty() {
        vec![16, 32, 64, 96, 128]
    } else {
        levels
    }
}

/// How a confirmation pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaymentPath {
    /// The simulated provider inside checkout (no hop).
    InProcess,
    /// The card gateway: Stripe's HTTP API, served by the simulator in a
    /// process of its own.
    Card,
    /// PayPal's HTTP API on the same simulator: ConfirmBooking, the
    /// buyer's approval on PayPal's page, ConfirmBooking again.
    Paypal,
}

impl PaymentPath {
    fn label(self) -> &'static str {
        match self {
            Self::InProcess => "in-process provider",
            Self::Card => "card gateway over HTTP",
            Self::Paypal => "PayPal over HTTP (with the buyer's approval)",
        }
    }
}

fn payment_paths() -> anyhow::Result<Vec<PaymentPath>> {
    let raw = std::env::var("BOXOFFICE_BENCH_PAYMENTS")
        .unwrap_or_else(|_| "in-process,card,paypal".to_owned());
    raw.split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(|path| match path {
            "in-process" => Ok(PaymentPath::InProcess),
            "card" => Ok(PaymentPath::Card),
            "paypal" => Ok(PaymentPath::Paypal),
            other => anyhow::bail!(
                "BOXOFFICE_BENCH_PAYMENTS: {other:?} is not a payment path (in-process, card, paypal)"
            ),
        })
        .collect()
}

/// One measured level.
struct Measured {
    path: PaymentPath,
    concurrency: usize,
    summary: Summary,
    cpu_ms: Option<f64>,
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

/// How requests reach checkout: through the edge with a bearer token, or
/// straight to the internal listener with the identity the edge would set.
#[derive(Clone)]
enum Route {
    Edge(Arc<Vec<String>>),
    Internal(Arc<Vec<Caller>>),
}

impl Route {
    fn request<T>(&self, user: usize, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        match self {
            Route::Edge(tokens) => {
                if let Ok(value) = format!("Bearer {}", tokens[user % tokens.len()]).parse() {
                    request.metadata_mut().insert("authorization", value);
                }
            }
            Route::Internal(callers) => {
                callers[user % callers.len()].write_to(request.metadata_mut());
            }
        }
        request
    }
}

/// A general-admission event big enough for every booking, on sale.
async fn event_on_sale(
    edge: Channel,
    admin_token: &str,
    places: u32,
) -> anyhow::Result<(String, String)> {
    let admin = Route::Edge(Arc::new(vec![admin_token.to_owned()]));
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let venue = catalog
        .create_venue(admin.request(
            0,
            catalog_pb::CreateVenueRequest {
                name: "Confirm Arena".into(),
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
                    capacity: places,
                    rows: vec![],
                }],
            },
        ))
        .await
        .context("creating the venue")?
        .into_inner();
    let event = catalog
        .create_event(admin.request(
            0,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Confirm Night".into(),
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
        .await
        .context("creating the event")?
        .into_inner();
    catalog
        .publish_event(admin.request(
            0,
            catalog_pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await
        .context("publishing the event")?;
    let mut inventory = InventoryServiceClient::new(edge);
    let started = Instant::now();
    loop {
        let availability = inventory
            .get_availability(inventory_pb::GetAvailabilityRequest {
                event_id: event.id.clone(),
            })
            .await;
        if availability.as_ref().is_ok_and(|a| a.get_ref().on_sale) {
            return Ok((event.id, venue.sections[0].id.clone()));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "inventory never put the event on sale"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` pending bookings of 2 seats each, made through the edge (not
/// timed): (user index, booking name).
async fn prepare_bookings(
    edge: &[Channel],
    route: &Route,
    event_id: &str,
    section_id: &str,
    count: usize,
) -> anyhow::Result<Vec<(usize, String)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let channel = edge[worker % edge.len()].clone();
        let (route, next) = (route.clone(), next.clone());
        let (event_id, section_id) = (event_id.to_owned(), section_id.to_owned());
        workers.spawn(async move {
            let mut inventory = InventoryServiceClient::new(channel.clone());
            let mut checkout = CheckoutServiceClient::new(channel);
            let mut made = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return anyhow::Ok(made);
                }
                let user = n % USERS;
                let hold = inventory
                    .hold_seats(route.request(
                        user,
                        inventory_pb::HoldSeatsRequest {
                            event_id: event_id.clone(),
                            selection: Some(
                                inventory_pb::hold_seats_request::Selection::BestAvailable(
                                    inventory_pb::BestAvailable {
                                        quantity: SEATS_PER_BOOKING,
                                        section_id: section_id.clone(),
                                        ..Default::default()
                                    },
                                ),
                            ),
                            admission_token: String::new(),
                        },
                    ))
                    .await
                    .context("holding seats")?
                    .into_inner();
                let booking = checkout
                    .create_booking(route.request(
                        user,
                        pb::CreateBookingRequest {
                            hold: hold.name,
                            idempotency_key: String::new(),
                        },
                    ))
                    .await
                    .context("creating a booking")?
                    .into_inner();
                made.push((user, booking.name));
            }
        });
    }
    let mut bookings = Vec::with_capacity(count);
    while let Some(made) = workers.join_next().await {
        bookings.extend(made??);
    }
    Ok(bookings)
}

fn confirm_request(
    route: &Route,
    path: PaymentPath,
    user: usize,
    name: String,
    key: String,
) -> tonic::Request<pb::ConfirmBookingRequest> {
    let payment_method = match path {
        PaymentPath::InProcess | PaymentPath::Card => pb::PaymentMethod {
            token: "tok_visa".into(),
            ..Default::default()
        },
        PaymentPath::Paypal => pb::PaymentMethod {
            token: String::new(),
            r#type: pb::PaymentMethodType::Paypal as i32,
        },
    };
    route.request(
        user,
        pb::ConfirmBookingRequest {
            name,
            payment_method: Some(payment_method),
            idempotency_key: key,
        },
    )
}

/// Pays for one booking the way its path does: one ConfirmBooking, or for
/// PayPal ConfirmBooking, the buyer's approval on the page it names (what
/// the buyer's browser posts), and ConfirmBooking again with the same key.
async fn pay(
    client: &mut CheckoutServiceClient<Channel>,
    http: &reqwest::Client,
    route: &Route,
    path: PaymentPath,
    user: usize,
    name: String,
) -> Result<(), tonic::Code> {
    let key = Uuid::new_v4().to_string();
    let answer = client
        .confirm_booking(confirm_request(
            route,
            path,
            user,
            name.clone(),
            key.clone(),
        ))
        .await
        .map_err(|status| status.code())?
        .into_inner();
    if path != PaymentPath::Paypal {
        return Ok(());
    }
    let Some(action) = answer.payment_action else {
        return Err(tonic::Code::FailedPrecondition);
    };
    let approved = boxoffice_paysim::answer_buyer_page(http, &action.url, "approve")
        .await
        .map_err(|_| tonic::Code::Unavailable)?;
    if !(approved.status().is_success() || approved.status().is_redirection()) {
        return Err(tonic::Code::Aborted);
    }
    let paid = client
        .confirm_booking(confirm_request(route, path, user, name, key))
        .await
        .map_err(|status| status.code())?
        .into_inner();
    if paid.state == pb::BookingState::Confirmed as i32 {
        Ok(())
    } else {
        Err(tonic::Code::FailedPrecondition)
    }
}

fn main() -> std::process::ExitCode {
    // Started again by itself to be the payment gateway simulator.
    if let Some(code) = serve_paysim_if_asked() {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    let levels = concurrency_levels();
    let per_level = env_number("BOXOFFICE_BENCH_BOOKINGS", 20_000);
    // A level's bookings are places of one venue section (at most 120,000).
    anyhow::ensure!(
        per_level <= 50_000,
        "BOXOFFICE_BENCH_BOOKINGS is at most 50000 (one event's section per level)"
    );
    let pgbench_secs = env_number("BOXOFFICE_BENCH_PGBENCH_SECS", 10) as u64;
    let via_edge = std::env::var("BOXOFFICE_BENCH_VIA").map_or(true, |via| via != "internal");
    let paths = payment_paths()?;
    anyhow::ensure!(
        !paths.is_empty(),
        "BOXOFFICE_BENCH_PAYMENTS names no payment path"
    );

    let groups_off: Vec<String> = std::env::var("BOXOFFICE_BENCH_GROUPS_OFF")
        .unwrap_or_default()
        .split(',')
        .map(|group| group.trim().to_owned())
        .filter(|group| !group.is_empty())
        .flat_map(|group| {
            if group == "all" {
                CONFIRMATION_GROUPS
                    .iter()
                    .map(|g| (*g).to_owned())
                    .collect()
            } else {
                vec![group]
            }
        })
        .collect();
    // pgbench runs before the first path and after the last, and every
    // row is compared with the mean of the two: a shared machine's speed
    // drifts by a tenth or more between one minute and the next.
    let pgbench_clients = 16;
    let pgbench = |database: &str| {
        eprintln!("baseline: pgbench running the sale statement for {pgbench_secs} s ...");
        baselines::pgbench_sale(
            database,
            400_000,
            pgbench_clients,
            Duration::from_secs(pgbench_secs),
        )
    };
    let mut pg_before = None;
    let mut pg_after = None;
    let mut results = Vec::new();
    let mut money = Vec::new();
    for (place, &path) in paths.iter().enumerate() {
        let paysim = match path {
            PaymentPath::InProcess => None,
            PaymentPath::Card | PaymentPath::Paypal => Some(PaysimProcess::start().await?),
        };
        let checkout_vars = paysim
            .as_ref()
            .map(PaysimProcess::gateway_vars)
            .unwrap_or_default();
        let bench = BenchSystem::start_paying_through(true, &checkout_vars).await?;
        eprintln!(
            "paying through the {}; waiting for start-up work (the demo data's tickets) to finish ...",
            path.label()
        );
        let measured = async {
            bench.settle(Duration::from_secs(600)).await?;
            bench.drain_consumers(Duration::from_secs(300)).await?;
            // The demo data just wrote millions of tickets: vacuum and
            // analyze them now, or autovacuum does it during the first
            // baseline and measurement.
            bench.analyze().await?;
            if place == 0 {
                pg_before = Some(pgbench(&bench.database)?);
            }
            let measured = run(&bench, path, &levels, per_level, via_edge, &groups_off).await?;
            let captured = match &paysim {
                Some(paysim) => paysim.captured()?,
                None => bench
                    .system
                    .checkout
                    .simulated
                    .as_ref()
                    .context("the in-process path has no simulated provider")?
                    .payments()
                    .iter()
                    .filter(|payment| payment.status == ProviderStatus::Captured)
                    .count(),
            };
            let confirmed: i64 = bench
                .system
                .pool
                .get()
                .await?
                .query_one(
                    "SELECT count(*) FROM checkout.bookings WHERE state = 'confirmed'",
                    &[],
                )
                .await?
                .get(0);
            if place + 1 == paths.len() {
                pg_after = Some(pgbench(&bench.database)?);
            }
            Ok::<_, anyhow::Error>((measured, captured, confirmed))
        }
        .await;
        bench.stop().await?;
        if let Some(paysim) = paysim {
            paysim.stop().await;
        }
        let (measured, captured, confirmed) = measured?;
        results.extend(measured);
        money.push((path, captured, confirmed));
    }
    let (Some(pg_before), Some(pg_after)) = (pg_before, pg_after) else {
        anyhow::bail!("pgbench did not run");
    };
    report(
        &results,
        &money,
        &pg_before,
        &pg_after,
        pgbench_clients,
        per_level,
        via_edge,
    )
}

/// Measures every level on one system, each on fresh pending bookings.
async fn run(
    bench: &BenchSystem,
    path: PaymentPath,
    levels: &[usize],
    per_level: usize,
    via_edge: bool,
    groups_off: &[String],
) -> anyhow::Result<Vec<Measured>> {
    let edge = channels(bench.system.edge_addr, 4).await?;
    // The buyers' browsers at PayPal's approval page.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .context("an HTTP client for PayPal's page")?;
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
    let tokens: Vec<String> = users
        .iter()
        .map(|user| bench.token(*user, &["customer"]))
        .collect::<anyhow::Result<_>>()?;
    let by_edge = Route::Edge(Arc::new(tokens));
    let (route, targets) = if via_edge {
        (by_edge.clone(), edge.clone())
    } else {
        let callers = users
            .iter()
            .map(|user| Caller::user(*user, &["customer"]))
            .collect();
        (
            Route::Internal(Arc::new(callers)),
            channels(bench.system.internal_addr, 4).await?,
        )
    };
    let batches: Vec<usize> = levels
        .iter()
        .map(|concurrency| WARMUP_CONFIRMATIONS + per_level + concurrency)
        .collect();
    let admin_token = bench.token(Uuid::new_v4(), &["admin"])?;
    // BOXOFFICE_BENCH_PG_STATEMENTS=1: what PostgreSQL ran per confirmation
    // in each window, consumers included (needs `pg_stat_statements` in
    // the server's `shared_preload_libraries`).
    let profile_statements = env_number("BOXOFFICE_BENCH_PG_STATEMENTS", 0) == 1;

    let mut results = Vec::new();
    for (&concurrency, &count) in levels.iter().zip(&batches) {
        eprintln!("preparing {count} pending bookings for {concurrency} in flight ...");
        let prepared = Instant::now();
        // An event of its own per level: the same table sizes for every
        // level, within a venue section's size limit.
        let (event_id, section_id) = event_on_sale(
            edge[0].clone(),
            &admin_token,
            count as u32 * SEATS_PER_BOOKING,
        )
        .await?;
        let bookings = prepare_bookings(&edge, &by_edge, &event_id, &section_id, count).await?;
        eprintln!("  prepared in {:.1} s", prepared.elapsed().as_secs_f64());
        let (warmup, measured) = bookings.split_at(WARMUP_CONFIRMATIONS.min(bookings.len()));

        // Warm-up, untimed, at the same concurrency.
        let warm = Arc::new(warmup.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let mut warmers = tokio::task::JoinSet::new();
        for worker in 0..concurrency {
            let (warm, next, route, http) =
                (warm.clone(), next.clone(), route.clone(), http.clone());
            let mut client = CheckoutServiceClient::new(targets[worker % targets.len()].clone());
            warmers.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((user, name)) = warm.get(n).cloned() else {
                        return;
                    };
                    let _ = pay(&mut client, &http, &route, path, user, name).await;
                }
            });
        }
        while warmers.join_next().await.is_some() {}
        // Preparing and warming up published events: their consumers
        // finish before the window opens.
        bench.drain_consumers(Duration::from_secs(300)).await?;
        bench.analyze().await?;
        bench.checkpoint().await?;

        let queue = Arc::new(measured.to_vec());
        let clients: Arc<Vec<CheckoutServiceClient<Channel>>> = Arc::new(
            targets
                .iter()
                .map(|channel| CheckoutServiceClient::new(channel.clone()))
                .collect(),
        );
        let spec = LoadSpec {
            name: format!("ConfirmBooking x{concurrency}"),
            mode: Mode::Closed { concurrency },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(300),
            max_requests: Some(per_level as u64),
        };
        let (route_for_run, http_for_run) = (route.clone(), http.clone());
        let statements = if profile_statements {
            Some(StatementProfile::start(&bench.system.pool).await?)
        } else {
            None
        };
        for group in groups_off {
            boxoffice_events::pause_group(group);
        }
        let busy_before = cpu::busy();
        let recording = load::run(&spec, move |n| {
            let booking = queue.get(n as usize).cloned();
            let mut client = clients[n as usize % clients.len()].clone();
            let (route, http) = (route_for_run.clone(), http_for_run.clone());
            async move {
                let Some((user, name)) = booking else {
                    return Outcome::Err(tonic::Code::ResourceExhausted);
                };
                pay(&mut client, &http, &route, path, user, name).await
            }
        })
        .await;
        // The window's events are handled (statistics) before its CPU is
        // counted: that work is part of what a confirmation costs. Paused
        // groups catch up after it is counted.
        let drained = if groups_off.is_empty() {
            bench.drain_consumers(Duration::from_secs(300)).await?
        } else {
            Duration::ZERO
        };
        let busy_after = cpu::busy();
        let summary = recording.summary();
        if !groups_off.is_empty() {
            for group in groups_off {
                boxoffice_events::resume_group(group);
            }
            // What the paused groups cost when they catch up in full
            // batches: their CPU per confirmation of the window.
            let caught_up = bench.drain_consumers(Duration::from_secs(300)).await?;
            let busy_caught_up = cpu::busy();
            eprintln!(
                "  paused groups caught up in {:.2} s: {:.3} ms of machine CPU per confirmation",
                caught_up.as_secs_f64(),
                cpu::ms_per_operation(busy_after, busy_caught_up, summary.ok).unwrap_or(f64::NAN)
            );
        }
        let cpu_ms = cpu::ms_per_operation(busy_before, busy_after, summary.ok);
        eprintln!(
            "  event consumers finished {:.2} s after the window",
            drained.as_secs_f64()
        );
        if let Some(statements) = statements {
            statements.report(&bench.system.pool, summary.ok).await?;
        }
        results.push(Measured {
            path,
            concurrency,
            summary,
            cpu_ms,
        });
    }
    Ok(results)
}

/// The level with the highest throughput.
fn fastest<'a>(rows: impl Iterator<Item = &'a Measured>) -> Option<&'a Measured> {
    rows.max_by(|a, b| {
        a.summary
            .requests_per_sec
            .partial_cmp(&b.summary.requests_per_sec)
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// The table: every path's levels against the same pgbench, then the
/// targets and the money check.
fn report(
    results: &[Measured],
    money: &[(PaymentPath, usize, i64)],
    pg_before: &baselines::BaselineResult,
    pg_after: &baselines::BaselineResult,
    pgbench_clients: u32,
    per_level: usize,
    via_edge: bool,
) -> anyhow::Result<()> {
    let pg = baselines::BaselineResult::mean(pg_before, pg_after);

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "ConfirmBooking over gRPC via {} ({cpus} cpus; {per_level} measured confirmations per level, {SEATS_PER_BOOKING} seats each)",
        if via_edge {
            "the edge"
        } else {
            "checkout's internal listener"
        }
    );
    let cpu_cell = |ms: Option<f64>| ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.3}"));
    println!(
        "  {:<40} {:>9} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10}",
        "scenario", "per sec", "p50 ms", "p90 ms", "p99 ms", "errors", "ratio", "cpu ms/op"
    );
    for Measured {
        path,
        concurrency,
        summary,
        cpu_ms,
    } in results
    {
        let errors: u64 = summary.errors.values().sum();
        let ratio = summary.requests_per_sec / pg.per_second;
        println!(
            "  {:<40} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>8.2} {:>10}",
            match path {
                PaymentPath::InProcess => format!("ConfirmBooking, {concurrency} in flight"),
                PaymentPath::Card => format!("  card gateway, {concurrency} in flight"),
                PaymentPath::Paypal => format!("  PayPal + approval, {concurrency} in flight"),
            },
            summary.requests_per_sec,
            summary.p50_ms,
            summary.p90_ms,
            summary.p99_ms,
            errors,
            ratio,
            cpu_cell(*cpu_ms)
        );
        if errors > 0 {
            println!("    errors: {:?}", summary.errors);
        }
    }
    for (when, run) in [("before", pg_before), ("after", pg_after), ("mean", &pg)] {
        println!(
            "  {:<40} {:>9.0} {:>8.2} {:>8} {:>8} {:>7} {:>8} {:>10}",
            format!("pgbench: 2-seat sale, {pgbench_clients} clients, {when}"),
            run.per_second,
            run.p50_ms,
            "-",
            "-",
            0,
            format!("{:.2}", run.per_second / pg.per_second),
            cpu_cell(run.cpu_ms_per_op)
        );
    }
    for path in [
        PaymentPath::InProcess,
        PaymentPath::Card,
        PaymentPath::Paypal,
    ] {
        let rows: Vec<&Measured> = results.iter().filter(|row| row.path == path).collect();
        if rows.is_empty() {
            continue;
        }
        // The card gateway's target is lower: it adds a hop per payment
        // step (issue 19: ≥ 0.4x).
        let target = match path {
            PaymentPath::InProcess => 0.5,
            PaymentPath::Card | PaymentPath::Paypal => 0.4,
        };
        println!("  {}:", path.label());
        // CPU per operation drifts less than throughput on a shared
        // machine: how many pgbench sales one confirmation costs, all
        // processes counted.
        if let (Some(sale_ms), Some(confirm_ms)) = (
            pg.cpu_ms_per_op,
            rows.iter().filter_map(|row| row.cpu_ms).reduce(f64::min),
        ) {
            println!(
                "    machine CPU: {confirm_ms:.3} ms per confirmation (cheapest level) against {sale_ms:.3} ms per pgbench sale: {:.2} sales' worth ({target}x throughput needs at most {:.2})",
                confirm_ms / sale_ms,
                1.0 / target
            );
        }
        if let Some(best) = fastest(rows.iter().copied()) {
            let ratio = best.summary.requests_per_sec / pg.per_second;
            println!(
                "    best: {} in flight; ratio {ratio:.2} (target ≥ {target:.2}: {}); p99 {:.1} ms (target ≤ 25 ms: {})",
                best.concurrency,
                if ratio >= target { "met" } else { "BELOW" },
                best.summary.p99_ms,
                if best.summary.p99_ms <= 25.0 {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
        // Both targets hold together or not at all: the fastest level
        // whose p99 is within 25 ms, if any.
        match fastest(
            rows.iter()
                .copied()
                .filter(|row| row.summary.p99_ms <= 25.0),
        ) {
            Some(within) => println!(
                "    fastest within p99 ≤ 25 ms: {} in flight, {:.0}/s, ratio {:.2}",
                within.concurrency,
                within.summary.requests_per_sec,
                within.summary.requests_per_sec / pg.per_second
            ),
            None => println!("    no level kept p99 within 25 ms"),
        }
    }
    // What each gateway's hop costs, level by level.
    for card in results
        .iter()
        .filter(|row| matches!(row.path, PaymentPath::Card | PaymentPath::Paypal))
    {
        let Some(local) = results
            .iter()
            .find(|row| row.path == PaymentPath::InProcess && row.concurrency == card.concurrency)
        else {
            continue;
        };
        println!(
            "  hop of the {} at {} in flight: {:.2}x the in-process throughput, p50 +{:.1} ms, {}",
            card.path.label(),
            card.concurrency,
            card.summary.requests_per_sec / local.summary.requests_per_sec,
            card.summary.p50_ms - local.summary.p50_ms,
            match (card.cpu_ms, local.cpu_ms) {
                (Some(card), Some(local)) =>
                    format!("+{:.3} ms of machine CPU per confirmation", card - local),
                _ => "CPU not measured".to_owned(),
            }
        );
    }
    // The money must add up before the numbers mean anything.
    let mut agree = true;
    for (path, captured, confirmed) in money {
        let agrees = *captured as i64 == *confirmed;
        agree &= agrees;
        println!(
            "  {}: captured payments {captured}, confirmed bookings {confirmed}: {}",
            path.label(),
            if agrees { "agree" } else { "DISAGREE" }
        );
    }
    anyhow::ensure!(agree, "captured payments and confirmed bookings disagree");
    Ok(())
}

/// `pg_stat_statements` over one measured window: every statement the
/// benchmark database ran (the confirmations and the event consumers that
/// follow them), per confirmation.
struct StatementProfile;

impl StatementProfile {
    async fn start(pool: &deadpool_postgres::Pool) -> anyhow::Result<Self> {
        let client = pool.get().await?;
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .context("pg_stat_statements (is it in shared_preload_libraries?)")?;
        client
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await?;
        Ok(Self)
    }

    async fn report(
        self,
        pool: &deadpool_postgres::Pool,
        confirmations: u64,
    ) -> anyhow::Result<()> {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT calls, total_exec_time, rows,
                        left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS query
                 FROM pg_stat_statements
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 ORDER BY calls DESC",
                &[],
            )
            .await?;
        let per = confirmations.max(1) as f64;
        let calls: i64 = rows.iter().map(|row| row.get::<_, i64>(0)).sum();
        let ms: f64 = rows.iter().map(|row| row.get::<_, f64>(1)).sum();
        eprintln!(
            "  PostgreSQL per confirmation: {:.2} statements, {:.3} ms executing ({} kinds)",
            calls as f64 / per,
            ms / per,
            rows.len()
        );
        eprintln!("  {:>8} {:>9}  statement", "calls/op", "ms/op");
        for row in rows.iter().take(30) {
            let calls: i64 = row.get(0);
            let ms: f64 = row.get(1);
            let query: String = row.get(3);
            eprintln!("  {:>8.3} {:>9.4}  {query}", calls as f64 / per, ms / per);
        }
        Ok(())
    }
}
