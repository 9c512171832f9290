//! The whole boxoffice in one process, as `boxoffice up` runs it: every
//! service on an internal loopback listener and the edge in front, as in
//! production, except that calls between parts of this process (the edge's
//! to every service, checkout's to inventory and catalog) go straight into
//! the callee's gRPC service rather than through the loopback socket. The
//! binary, the load generator and end-to-end tests all start it through
//! [`System::start`], so what is measured is what runs.

use std::net::SocketAddr;

use boxoffice_accounts::config::TokenConfig;
use boxoffice_accounts::server::AccountsComponent;
use boxoffice_catalog::CatalogComponent;
use boxoffice_catalog::store::CatalogStore;
use boxoffice_checkout::config::CheckoutConfig;
use boxoffice_checkout::server::CheckoutComponent;
use boxoffice_edge::config::EdgeConfig;
use boxoffice_edge::server::Edge;
use boxoffice_events::{Relay, Transport};
use boxoffice_inventory::InventoryComponent;
use boxoffice_inventory::config::InventoryConfig;
use boxoffice_notify::{NotifyComponent, NotifyConfig};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use boxoffice_stats::StatsComponent;
use boxoffice_webhooks::WebhooksComponent;
pub use boxoffice_webhooks::WebhooksConfig;
use tokio::task::JoinHandle;

/// What this process adds to a `/metrics` page beside its RPCs and pool:
/// its event consumers (handled, dead letters, lag) and, where inventory
/// runs, the hold sweeper's progress and the latency of its Redis calls,
/// and where notifications run, their sender (sent, failures, waiting).
pub fn process_metrics() -> String {
    let mut page = boxoffice_events::metrics::render();
    page.push_str(&boxoffice_inventory::metrics());
    page.push_str(&boxoffice_notify::metrics::render());
    page
}

/// Creates or upgrades every service's schema, producers before the
/// services that consume their streams: what `boxoffice migrate` runs
/// before a deployment, and what [`System`] runs before it starts anything,
/// so no consumer group starts reading an outbox whose table is not there
/// yet. Each component still migrates its own schema when it starts alone
/// (`serve <service>`); a schema already current is one read.
pub async fn migrate_all(pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
    use boxoffice_runtime::postgres::migrate;
    migrate(
        pool,
        boxoffice_catalog::store::SCHEMA,
        boxoffice_catalog::store::MIGRATIONS,
    )
    .await?;
    migrate(
        pool,
        boxoffice_inventory::store::SCHEMA,
        boxoffice_inventory::store::MIGRATIONS,
    )
    .await?;
    migrate(
        pool,
        boxoffice_accounts::store::SCHEMA,
        boxoffice_accounts::store::MIGRATIONS,
    )
    .await?;
    migrate(
        pool,
        boxoffice_checkout::store::SCHEMA,
        boxoffice_checkout::store::MIGRATIONS,
    )
    .await?;
    boxoffice_audit::migrate(pool).await?;
    boxoffice_webhooks::migrate(pool).await?;
    boxoffice_stats::migrate(pool).await?;
    boxoffice_notify::migrate(pool).await?;
    Ok(())
}

/// When `BOXOFFICE_NATS_URL` is set, relays the outboxes of `producers`
/// (service schemas) to NATS JetStream until shutdown; with the default
/// transport consumers read the outboxes themselves and nothing runs.
/// Relays of one producer in many processes take turns by a lease, so
/// every process relays the producers it runs. (Catalog starts its own.)
pub async fn start_relays(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    producers: &[&str],
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let listen = boxoffice_runtime::postgres::parse_url(&config.database_url)?;
    let Transport::Nats(nats) = Transport::from_env(listen.clone()).await? else {
        return Ok(Vec::new());
    };
    producers
        .iter()
        .map(|producer| {
            let relay = Relay::new(pool.clone(), listen.clone(), producer, nats.clone())?;
            Ok(tokio::spawn(relay.run(shutdown.clone())))
        })
        .collect()
}

/// Number of demo events a fresh system gets.
pub const DEMO_EVENTS: usize = 520;

pub struct SystemOptions {
    /// The edge's settings; its upstreams are pointed at the internal listener.
    pub edge: EdgeConfig,
    pub tokens: TokenConfig,
    pub inventory: InventoryConfig,
    pub checkout: CheckoutConfig,
    /// Load demo data (and demo users) into an empty database.
    pub demo_data: bool,
    /// Send notifications (beside accounts) with these settings; `None`
    /// runs none (e.g. a test that runs them in a process of their own).
    pub notify: Option<NotifyConfig>,
    /// Webhooks for integrators (beside checkout).
    pub webhooks: WebhooksConfig,
}

/// A running system. Stop it with the [`Shutdown`] it was started with.
pub struct System {
    pub edge_addr: SocketAddr,
    pub edge_admin_addr: Option<SocketAddr>,
    /// Where the services listen behind the edge (loopback).
    pub internal_addr: SocketAddr,
    pub pool: deadpool_postgres::Pool,
    pub catalog: CatalogComponent,
    pub inventory: InventoryComponent,
    pub accounts: AccountsComponent,
    pub checkout: CheckoutComponent,
    pub stats: StatsComponent,
    pub notify: Option<NotifyComponent>,
    pub webhooks: WebhooksComponent,
    internal: JoinHandle<anyhow::Result<()>>,
    edge: JoinHandle<anyhow::Result<()>>,
    relays: Vec<JoinHandle<()>>,
}

impl System {
    pub async fn start(
        config: &Config,
        options: SystemOptions,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        // `System` is development and tests (`up`, the load generator): a
        // reset or verification token is logged and kept in memory until
        // notifications deliver it, unless a real signing secret is set.
        // Social login's providers come from the environment either way.
        let accounts_config = if options.tokens.ephemeral_secret {
            boxoffice_accounts::AccountsConfig {
                social: boxoffice_accounts::config::SocialLoginConfig::from_env()
                    .map_err(|error| anyhow::anyhow!("bad accounts configuration: {error}"))?,
                ..boxoffice_accounts::AccountsConfig::development()
            }
        } else {
            boxoffice_accounts::AccountsConfig::from_env()
                .map_err(|error| anyhow::anyhow!("bad accounts configuration: {error}"))?
        };
        Self::start_with_accounts(config, options, accounts_config, shutdown).await
    }

    /// As [`System::start`], with accounts configured by the caller (tests
    /// with their own OpenID providers).
    pub async fn start_with_accounts(
        config: &Config,
        options: SystemOptions,
        accounts_config: boxoffice_accounts::AccountsConfig,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let pool = boxoffice_runtime::postgres::pool(&config.database_url, config.db_pool_size)?;
        migrate_all(&pool).await?;
        let mut server = GrpcServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let internal_addr = server.local_addr();
        let catalog = CatalogComponent::start(config, pool.clone(), shutdown.clone()).await?;
        catalog.register(&mut server);
        let inventory = InventoryComponent::start_with(
            config,
            options.inventory,
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        inventory.register(&mut server);
        let accounts = AccountsComponent::start(
            config,
            &options.tokens,
            accounts_config,
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        accounts.register(&mut server);
        // Inventory and catalog are on this same server: checkout calls
        // their services directly, not through the loopback listener.
        let local = server.in_process();
        let checkout = CheckoutComponent::start_with(
            options.checkout,
            pool.clone(),
            shutdown.clone(),
            Some(local),
        )
        .await?;
        checkout.register(&mut server);
        // Exports read the caller's bookings from checkout, in this process.
        accounts.connect_checkout(server.in_process());
        // Sales statistics run beside checkout and read its events (and
        // inventory's and the catalog's), so they start once those exist.
        let stats =
            StatsComponent::start(config, pool.clone(), checkout.inventory(), shutdown.clone())
                .await?;
        stats.register(&mut server);
        // Webhooks read the same streams as the statistics, beside checkout;
        // so does the audit log, which checkout's payments write to.
        let webhooks =
            WebhooksComponent::start(config, options.webhooks, pool.clone(), shutdown.clone())
                .await?;
        webhooks.register(&mut server);
        boxoffice_audit::AuditComponent::start(pool.clone())
            .await?
            .register(&mut server);
        // Notifications run beside accounts (a user's mail and
        // preferences) and read ticket codes from checkout in this process.
        let notify = match options.notify {
            Some(notify_config) => {
                let notify = NotifyComponent::start(
                    config,
                    notify_config,
                    pool.clone(),
                    server.in_process(),
                    shutdown.clone(),
                )
                .await?;
                notify.register(&mut server);
                Some(notify)
            }
            None => None,
        };
        // Checkout anonymises the bookings of erased users (accounts' stream).
        let erasure = boxoffice_checkout::erasure::start(
            &Transport::from_env(boxoffice_runtime::postgres::parse_url(
                &config.database_url,
            )?)
            .await?,
            pool.clone(),
            shutdown.clone(),
        )
        .await?;
        let erasure = tokio::spawn(erasure.join());
        // Loyalty points follow confirmations and cancellations (checkout's
        // own stream).
        let loyalty = boxoffice_checkout::loyalty::start(
            &Transport::from_env(boxoffice_runtime::postgres::parse_url(
                &config.database_url,
            )?)
            .await?,
            checkout.checkout.store().clone(),
            checkout.checkout.config().loyalty_points_per_unit,
            shutdown.clone(),
        )
        .await?;
        let loyalty = tokio::spawn(loyalty.join());
        let mut relays = start_relays(
            config,
            &pool,
            &[
                boxoffice_inventory::store::SCHEMA,
                boxoffice_accounts::store::SCHEMA,
                boxoffice_checkout::store::SCHEMA,
                boxoffice_webhooks::PRODUCER,
            ],
            &shutdown,
        )
        .await?;
        relays.push(erasure);
        relays.push(loyalty);
        if options.demo_data {
            if let Some(report) = boxoffice_catalog::seed::seed_if_empty(
                &CatalogStore::new(pool.clone()),
                DEMO_EVENTS,
            )
            .await?
            {
                tracing::info!(
                    venues = report.venues,
                    performers = report.performers,
                    events = report.events,
                    seats = report.seats,
                    reviews = report.reviews,
                    "loaded demo data"
                );
            }
            accounts.ensure_demo_users().await?;
        }
        // The edge, too, calls the services in this process directly; the
        // internal listener stays for its health checks (and anything else
        // that dials it).
        let mut edge_config = options.edge.with_upstream_everywhere(internal_addr);
        edge_config.shutdown_grace = config.shutdown_grace;
        // Its /metrics also shows this process's event consumers.
        let edge = Edge::bind_in_process(edge_config, &options.tokens, server.in_process())
            .await?
            .with_process_metrics(process_metrics);
        let edge_addr = edge.local_addr();
        let edge_admin_addr = edge.admin_addr();
        let internal =
            tokio::spawn(server.run_until_stopped(shutdown.clone(), config.shutdown_grace));
        let edge = tokio::spawn(edge.run_until_stopped(shutdown));
        Ok(Self {
            edge_addr,
            edge_admin_addr,
            internal_addr,
            pool,
            catalog,
            inventory,
            accounts,
            checkout,
            stats,
            notify,
            webhooks,
            internal,
            edge,
            relays,
        })
    }

    /// Waits until both listeners have stopped (after shutdown).
    pub async fn wait(self) -> anyhow::Result<()> {
        let edge = self.edge.await;
        let internal = self.internal.await;
        for relay in self.relays {
            // A relay ends at shutdown; one that panicked lost nothing (the
            // next start resumes from its checkpoint).
            let _ = relay.await;
        }
        edge??;
        internal??;
        Ok(())
    }
}
