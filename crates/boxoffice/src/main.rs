//! The `boxoffice` binary: `up` runs every service in one process with demo
//! data, `serve <service>` runs one (as Kubernetes does), `migrate` and
//! `seed` prepare a database.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use boxoffice::DEMO_EVENTS;
use boxoffice_accounts::AccountsComponent;
use boxoffice_accounts::TokenConfig;
use boxoffice_accounts::config::MissingSecret;
use boxoffice_catalog::CatalogComponent;
use boxoffice_catalog::store::{CatalogStore, EventFilter};
use boxoffice_checkout::CheckoutComponent;
use boxoffice_edge::{Edge, EdgeConfig};
use boxoffice_inventory::InventoryComponent;
use boxoffice_runtime::config::EXIT_BAD_CONFIG;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::telemetry::Telemetry;
use boxoffice_runtime::{Config, Shutdown};
use clap::{Parser, Subcommand, ValueEnum};

/// Every request allocates and frees many small buffers on several threads;
/// mimalloc does that with a fraction of glibc malloc's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "boxoffice",
    version,
    about = "Ticketing backend: catalog, inventory, checkout behind one edge"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on one address, with demo data on first start (the default).
    Up {
        /// Do not load demo data into an empty database.
        #[arg(long)]
        no_demo_data: bool,
    },
    /// One service, as a Kubernetes deployment runs it.
    Serve {
        #[arg(value_enum)]
        service: Service,
    },
    /// Create the database if needed and apply every schema migration.
    Migrate,
    /// Load the demo data (only into an empty catalog).
    Seed,
    /// Rebuild the search index (Meilisearch, or the embedded index in BOXOFFICE_SEARCH_DIR) from PostgreSQL.
    Reindex,
    /// The payment provider simulator (Stripe's API shape, durable ledger) as its own process.
    Paysim,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Service {
    Catalog,
    Inventory,
    Accounts,
    Checkout,
    /// The gateway; reads its upstreams from BOXOFFICE_EDGE_CONFIG / BOXOFFICE_EDGE_UPSTREAM_*.
    Edge,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("boxoffice: bad configuration: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("boxoffice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let telemetry = Telemetry::init(&config)?;
        let result = match cli.command.unwrap_or(Command::Up {
            no_demo_data: false,
        }) {
            Command::Up { no_demo_data } => up(&config, !no_demo_data).await,
            Command::Serve { service } => serve(&config, service).await,
            Command::Migrate => migrate(&config).await,
            Command::Seed => seed(&config).await,
            Command::Reindex => reindex(&config).await,
            Command::Paysim => paysim().await,
        };
        telemetry.shutdown();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.downcast_ref::<BadConfig>().is_some() => {
            eprintln!("boxoffice: {error:#}");
            ExitCode::from(EXIT_BAD_CONFIG as u8)
        }
        Err(error) => {
            eprintln!("boxoffice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A configuration value that cannot be used: the process stops before it
/// binds anything, with [`EXIT_BAD_CONFIG`] and the variable named.
#[derive(Debug)]
struct BadConfig(String);

impl std::fmt::Display for BadConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "bad configuration: {}", self.0)
    }
}

impl std::error::Error for BadConfig {}

fn bad_config(error: impl std::fmt::Display) -> anyhow::Error {
    BadConfig(error.to_string()).into()
}

/// Reads and validates everything `service` will read from the
/// environment, so a bad value stops `serve` before it binds a port.
fn check_config(config: &Config, service: Service) -> anyhow::Result<()> {
    match service {
        Service::Catalog => {
            boxoffice_search::SearchConfig::from_env().map_err(bad_config)?;
        }
        Service::Inventory => {
            boxoffice_inventory::config::InventoryConfig::from_env().map_err(bad_config)?;
        }
        Service::Accounts => {
            token_config(MissingSecret::Refuse)?;
            boxoffice_accounts::AccountsConfig::from_env().map_err(bad_config)?;
            boxoffice_notify::NotifyConfig::from_env().map_err(bad_config)?;
        }
        Service::Checkout => {
            boxoffice_checkout::config::CheckoutConfig::from_env().map_err(bad_config)?;
        }
        Service::Edge => {
            token_config(MissingSecret::Refuse)?;
            EdgeConfig::from_env(config.listen).map_err(bad_config)?;
        }
    }
    Ok(())
}

/// `up` is for development: webhook endpoints may be local unless
/// `BOXOFFICE_WEBHOOKS_ALLOW_PRIVATE` says otherwise.
fn up_webhooks_config() -> anyhow::Result<boxoffice::WebhooksConfig> {
    let mut webhooks = boxoffice::WebhooksConfig::from_env().map_err(bad_config)?;
    if std::env::var(boxoffice_webhooks::config::ENV_ALLOW_PRIVATE).is_err() {
        webhooks.allow_private = true;
    }
    Ok(webhooks)
}

async fn database(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    boxoffice_runtime::postgres::ensure_database(&config.database_url)
        .await
        .context("preparing the database (is PostgreSQL running? see README)")?;
    boxoffice_runtime::postgres::pool(&config.database_url, config.db_pool_size)
}

/// Every service `up` runs in this process, registered on one server.
/// Each service adds itself here; `up` and `serve` both go through it.
struct Services {
    catalog: Option<CatalogComponent>,
    inventory: Option<InventoryComponent>,
    accounts: Option<AccountsComponent>,
    checkout: Option<CheckoutComponent>,
    stats: Option<boxoffice_stats::StatsComponent>,
    /// Webhooks for integrators, beside checkout.
    webhooks: Option<boxoffice_webhooks::WebhooksComponent>,
    /// Notifications, beside accounts.
    notify: Option<boxoffice_notify::NotifyComponent>,
    /// Relays of this process's outboxes to NATS (with `BOXOFFICE_NATS_URL`).
    relays: Vec<tokio::task::JoinHandle<()>>,
}

/// One token configuration per process, so accounts (signing) and the edge
/// (verifying) in `up` share the same per-process key.
static TOKENS: std::sync::OnceLock<TokenConfig> = std::sync::OnceLock::new();

/// `up` may make a random per-process key (tokens die with the process);
/// `serve` refuses to start without `BOXOFFICE_JWT_SECRET`, so no deployment
/// ever runs on a key that is known or differs between accounts and the edge.
fn token_config(missing: MissingSecret) -> anyhow::Result<&'static TokenConfig> {
    if let Some(tokens) = TOKENS.get() {
        return Ok(tokens);
    }
    let tokens = TokenConfig::from_env(missing).map_err(bad_config)?;
    if tokens.ephemeral_secret {
        tracing::warn!(
            "BOXOFFICE_JWT_SECRET is not set: signing tokens with a random per-process key (development only; tokens end with the process)"
        );
    }
    Ok(TOKENS.get_or_init(|| tokens))
}

async fn start_services(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    shutdown: &Shutdown,
    server: &mut GrpcServer,
    which: &[Service],
) -> anyhow::Result<Services> {
    let mut services = Services {
        catalog: None,
        inventory: None,
        accounts: None,
        checkout: None,
        stats: None,
        webhooks: None,
        notify: None,
        relays: Vec::new(),
    };
    let mut producers = Vec::new();
    let mut background = Vec::new();
    if which.contains(&Service::Catalog) {
        let catalog = CatalogComponent::start(config, pool.clone(), shutdown.clone()).await?;
        catalog.register(server);
        services.catalog = Some(catalog);
    }
    if which.contains(&Service::Inventory) {
        let inventory = InventoryComponent::start(config, pool.clone(), shutdown.clone()).await?;
        inventory.register(server);
        services.inventory = Some(inventory);
        producers.push(boxoffice_inventory::store::SCHEMA);
    }
    if which.contains(&Service::Accounts) {
        let accounts_config = boxoffice_accounts::AccountsConfig::from_env().map_err(bad_config)?;
        let accounts = AccountsComponent::start(
            config,
            token_config(MissingSecret::Refuse)?,
            accounts_config,
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        accounts.register(server);
        // Exports read bookings from checkout: in this process when it
        // runs here (connected below), otherwise at BOXOFFICE_CHECKOUT_URL.
        if !which.contains(&Service::Checkout)
            && let Some(url) = boxoffice_accounts::config::checkout_url()
        {
            accounts.connect_checkout(boxoffice_runtime::transport::over_channel(
                tonic::transport::Endpoint::from_shared(url.clone())
                    .with_context(|| {
                        format!("bad {} {url}", boxoffice_accounts::config::ENV_CHECKOUT_URL)
                    })?
                    .connect_lazy(),
            ));
        }
        services.accounts = Some(accounts);
        producers.push(boxoffice_accounts::store::SCHEMA);
    }
    if which.contains(&Service::Checkout) {
        // With inventory in this process it is on this same server, and
        // checkout calls it directly. Alone, checkout uses
        // BOXOFFICE_INVENTORY_URL / _CATALOG_URL.
        let local = match which.contains(&Service::Inventory) {
            true => Some(server.in_process()),
            false => None,
        };
        let checkout = CheckoutComponent::start(pool.clone(), shutdown.clone(), local).await?;
        checkout.register(server);
        // The sales statistics run beside checkout (see ARCHITECTURE.md).
        let stats = boxoffice_stats::StatsComponent::start(
            config,
            pool.clone(),
            checkout.inventory(),
            shutdown.clone(),
        )
        .await?;
        stats.register(server);
        // So do webhooks and the audit log (checkout's payments write it).
        let webhooks = boxoffice_webhooks::WebhooksComponent::start(
            config,
            boxoffice_webhooks::WebhooksConfig::from_env().map_err(bad_config)?,
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        webhooks.register(server);
        boxoffice_audit::AuditComponent::start(pool.clone())
            .await?
            .register(server);
        if let Some(accounts) = &services.accounts {
            accounts.connect_checkout(server.in_process());
        }
        // Checkout anonymises the bookings of erased users.
        let erasure = boxoffice_checkout::erasure::start(
            &boxoffice_events::Transport::from_env(boxoffice_runtime::postgres::parse_url(
                &config.database_url,
            )?)
            .await?,
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        background.push(tokio::spawn(erasure.join()));
        // Loyalty points follow confirmations and cancellations.
        let loyalty = boxoffice_checkout::loyalty::start(
            &boxoffice_events::Transport::from_env(boxoffice_runtime::postgres::parse_url(
                &config.database_url,
            )?)
            .await?,
            checkout.checkout.store().clone(),
            checkout.checkout.config().loyalty_points_per_unit,
            shutdown.clone(),
        )
        .await?;
        background.push(tokio::spawn(loyalty.join()));
        services.checkout = Some(checkout);
        services.stats = Some(stats);
        services.webhooks = Some(webhooks);
        producers.push(boxoffice_checkout::store::SCHEMA);
        producers.push(boxoffice_webhooks::PRODUCER);
    }
    if which.contains(&Service::Accounts) {
        // Notifications run beside accounts; they read ticket codes from
        // checkout: in this process when it runs here, otherwise at
        // BOXOFFICE_CHECKOUT_URL (default: the edge's usual address).
        let notify_config = boxoffice_notify::NotifyConfig::from_env().map_err(bad_config)?;
        let checkout = match which.contains(&Service::Checkout) {
            true => server.in_process(),
            false => {
                let url = boxoffice_accounts::config::checkout_url()
                    .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
                boxoffice_runtime::transport::over_channel(
                    tonic::transport::Endpoint::from_shared(url.clone())
                        .with_context(|| {
                            format!("bad {} {url}", boxoffice_accounts::config::ENV_CHECKOUT_URL)
                        })?
                        .connect_lazy(),
                )
            }
        };
        let notify = boxoffice_notify::NotifyComponent::start(
            config,
            notify_config,
            pool.clone(),
            checkout,
            shutdown.clone(),
        )
        .await?;
        notify.register(server);
        services.notify = Some(notify);
    }
    services.relays = boxoffice::start_relays(config, pool, &producers, shutdown).await?;
    services.relays.extend(background);
    Ok(services)
}

async fn up(config: &Config, demo_data: bool) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals();
    // Everything goes through the edge exactly as in production: the
    // services listen on an internal loopback port, the edge on `listen`.
    let tokens = token_config(MissingSecret::GenerateEphemeral)?.clone();
    let edge = EdgeConfig::from_env(config.listen).map_err(bad_config)?;
    let serves_web = edge.web_dir.is_some();
    let inventory = boxoffice_inventory::config::InventoryConfig::from_env().map_err(bad_config)?;
    let mut checkout =
        boxoffice_checkout::config::CheckoutConfig::from_env().map_err(bad_config)?;
    boxoffice_search::SearchConfig::from_env().map_err(bad_config)?;
    boxoffice_accounts::config::SocialLoginConfig::from_env().map_err(bad_config)?;
    let notify = boxoffice_notify::NotifyConfig::from_env().map_err(bad_config)?;
    let smtp = notify.smtp_url.expose().to_owned();
    // The card gateway runs as its own process, as a real provider would:
    // the simulator, unless BOXOFFICE_PAYMENTS_URL names another. It lives
    // as long as this process (and dies with it).
    // The same simulator speaks PayPal's API: PayPal pays through it too,
    // unless BOXOFFICE_PAYPAL_URL names another.
    let _paysim = match (&checkout.payments, &checkout.paypal) {
        (Some(_), Some(_)) => None,
        _ => {
            let (child, url) = start_paysim(&checkout).await?;
            if checkout.payments.is_none() {
                checkout.payments = Some(
                    boxoffice_checkout::payment::stripe::HttpProviderConfig::development(
                        url.clone(),
                    ),
                );
            }
            if checkout.paypal.is_none() {
                checkout.paypal =
                    Some(boxoffice_checkout::payment::paypal::PaypalConfig::development(url));
            }
            Some(child)
        }
    };
    boxoffice_runtime::postgres::ensure_database(&config.database_url)
        .await
        .context("preparing the database (is PostgreSQL running? see README)")?;
    let system = boxoffice::System::start(
        config,
        boxoffice::SystemOptions {
            edge,
            tokens,
            inventory,
            checkout,
            demo_data,
            notify: Some(notify),
            webhooks: up_webhooks_config()?,
        },
        shutdown,
    )
    .await?;
    print_banner(
        system.edge_addr,
        &CatalogStore::new(system.pool.clone()),
        serves_web,
    )
    .await;
    if let Some(admin) = system.edge_admin_addr {
        println!("  edge metrics:       curl http://{admin}/metrics");
    }
    println!(
        "  notifications:      mail goes to {} (BOXOFFICE_SMTP_URL)",
        smtp.split_once('@').map_or(smtp.as_str(), |(_, host)| host)
    );
    println!("stop with ctrl-c");
    system.wait().await
}

async fn paysim() -> anyhow::Result<()> {
    let config = boxoffice_paysim::PaysimConfig::from_env().map_err(bad_config)?;
    boxoffice_paysim::serve(config).await
}

/// Starts `boxoffice paysim` as a child process (on a free loopback port
/// unless BOXOFFICE_PAYSIM_LISTEN says otherwise, its ledger in
/// BOXOFFICE_PAYSIM_LEDGER or `.boxoffice/paysim-ledger.jsonl`) and
/// answers it with its URL once it listens.
async fn start_paysim(
    checkout: &boxoffice_checkout::config::CheckoutConfig,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("paysim")
        .env(
            boxoffice_paysim::config::ENV_WEBHOOK_SECRET,
            checkout.webhook_secret.expose(),
        )
        .env(
            boxoffice_paysim::config::ENV_PARENT_PID,
            std::process::id().to_string(),
        );
    if std::env::var_os(boxoffice_paysim::config::ENV_LISTEN).is_none() {
        command.env(boxoffice_paysim::config::ENV_LISTEN, "127.0.0.1:0");
    }
    if std::env::var_os(boxoffice_paysim::config::ENV_LEDGER).is_none() {
        command.env(
            boxoffice_paysim::config::ENV_LEDGER,
            ".boxoffice/paysim-ledger.jsonl",
        );
    }
    let (child, url) = boxoffice_paysim::start_process(command).await?;
    tracing::info!(%url, "payment simulator started as its own process");
    Ok((child, url))
}

async fn serve_edge(config: &Config) -> anyhow::Result<()> {
    let tokens = token_config(MissingSecret::Refuse)?;
    let edge_config = EdgeConfig::from_env(config.listen).map_err(bad_config)?;
    let shutdown = Shutdown::on_signals();
    let edge = Edge::bind(edge_config, tokens).await?;
    tracing::info!(listen = %edge.local_addr(), "serving the edge");
    edge.run_until_stopped(shutdown).await
}

async fn serve(config: &Config, service: Service) -> anyhow::Result<()> {
    check_config(config, service)?;
    if service == Service::Edge {
        return serve_edge(config).await;
    }
    // Read with the rest of the configuration, before anything binds.
    let admin_addr = admin_address()?;
    let shutdown = Shutdown::on_signals();
    let pool = database(config).await?;
    let mut server = GrpcServer::bind(config.listen).await?;
    let _services = start_services(config, &pool, &shutdown, &mut server, &[service]).await?;
    if let Some(addr) = admin_addr {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin listener on {addr}"))?;
        let (rpc, pool) = (server.metrics(), pool.clone());
        let render: boxoffice_runtime::admin::Render = Arc::new(move || {
            let mut page = rpc.render();
            page.push_str(&boxoffice_runtime::postgres::pool_metrics(&pool));
            page.push_str(&boxoffice::process_metrics());
            page
        });
        tracing::info!(admin = %admin.local_addr()?, "serving /metrics and /ready");
        tokio::spawn(boxoffice_runtime::admin::serve(
            admin,
            render,
            server.readiness(),
            shutdown.clone(),
        ));
    }
    tracing::info!(listen = %server.local_addr(), service = ?service, "serving");
    server
        .run_until_stopped(shutdown, config.shutdown_grace)
        .await
}

/// The admin listener's address (`BOXOFFICE_ADMIN_LISTEN`); `None` when unset.
fn admin_address() -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(raw) = std::env::var(boxoffice_runtime::admin::ENV_ADMIN_LISTEN)
        .ok()
        .filter(|raw| !raw.trim().is_empty())
    else {
        return Ok(None);
    };
    raw.parse().map(Some).map_err(|_| {
        bad_config(boxoffice_runtime::ConfigError {
            variable: boxoffice_runtime::admin::ENV_ADMIN_LISTEN,
            problem: format!("'{raw}' is not an address like 0.0.0.0:9090"),
        })
    })
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = database(config).await?;
    boxoffice::migrate_all(&pool).await?;
    println!("migrations applied");
    Ok(())
}

async fn seed(config: &Config) -> anyhow::Result<()> {
    let pool = database(config).await?;
    boxoffice_runtime::postgres::migrate(
        &pool,
        boxoffice_catalog::store::SCHEMA,
        boxoffice_catalog::store::MIGRATIONS,
    )
    .await?;
    match boxoffice_catalog::seed::seed_if_empty(&CatalogStore::new(pool), DEMO_EVENTS).await? {
        Some(report) => println!(
            "seeded {} venues ({} places), {} performers, {} events, {} reviews of past shows",
            report.venues, report.seats, report.performers, report.events, report.reviews
        ),
        None => println!("the catalog already has data; nothing seeded"),
    }
    Ok(())
}

async fn reindex(config: &Config) -> anyhow::Result<()> {
    let pool = database(config).await?;
    boxoffice_runtime::postgres::migrate(
        &pool,
        boxoffice_catalog::store::SCHEMA,
        boxoffice_catalog::store::MIGRATIONS,
    )
    .await?;
    match boxoffice_catalog::search::reindex_from_env(&pool).await? {
        Some(report) => println!(
            "search index rebuilt: {} events, up to outbox row {}",
            report.events, report.checkpoint
        ),
        None => println!(
            "the embedded search index lives in memory and is rebuilt at every start; nothing to do \
             (set BOXOFFICE_SEARCH_DIR or BOXOFFICE_MEILISEARCH_URL for an index that persists)"
        ),
    }
    Ok(())
}

async fn print_banner(addr: std::net::SocketAddr, store: &CatalogStore, serves_web: bool) {
    let filter = EventFilter {
        status: boxoffice_catalog::domain::EventStatus::Published,
        start_after: chrono::Utc::now(),
        start_before: None,
        venue_id: None,
        performer_id: None,
    };
    let example = store
        .list_events(&filter, None, 1)
        .await
        .ok()
        .and_then(|(events, _)| events.into_iter().next());
    println!("boxoffice is up on {addr}");
    if serves_web {
        println!("  open the web app:   http://{addr}/");
    }
    println!("  list the services:  grpcurl -plaintext {addr} list");
    if let Some(event) = example {
        println!(
            "  look at an event:   grpcurl -plaintext -d '{{\"id\":\"{}\"}}' {addr} boxoffice.catalog.v1.CatalogService/GetEvent",
            event.id
        );
        println!(
            "  its seat map:       grpcurl -plaintext -d '{{\"event_id\":\"{}\"}}' {addr} boxoffice.catalog.v1.CatalogService/GetSeatMap",
            event.id
        );
    }
    println!(
        "  upcoming events:    grpcurl -plaintext -d '{{\"page_size\":5}}' {addr} boxoffice.catalog.v1.CatalogService/ListEvents"
    );
    println!(
        "  log in (demo admin): grpcurl -plaintext -d '{{\"email\":\"{}\",\"password\":\"{}\"}}' {addr} boxoffice.accounts.v1.AccountsService/Login",
        boxoffice_accounts::server::DEMO_ADMIN_EMAIL,
        boxoffice_accounts::server::DEMO_PASSWORD
    );
    println!(
        "  (demo customer: {}, same password); then add  -H 'authorization: Bearer <accessToken>'",
        boxoffice_accounts::server::DEMO_CUSTOMER_EMAIL
    );
}
