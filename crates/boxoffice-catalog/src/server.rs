//! Assembling the catalog: migrations, the cache and its change listener,
//! the search index and its indexer, the events relay (when the events go
//! through NATS), and the tonic service with its message limits.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::catalog::v1::catalog_service_server::CatalogServiceServer;
use boxoffice_events::{Relay, Transport};
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::{Config, Shutdown};
use boxoffice_search::SearchIndex;
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::cache::listen_for_changes;
use crate::grpc::CatalogGrpc;
use crate::search::{EventSearch, Indexer, IndexerSettings};
use crate::service::Catalog;
use crate::store::{CatalogStore, MIGRATIONS, SCHEMA};

/// The running catalog: its service, plus the background listener that
/// keeps the cache fresh and the indexer that keeps search in step.
pub struct CatalogComponent {
    pub catalog: Arc<Catalog>,
    pub listener: JoinHandle<()>,
    pub search: Arc<EventSearch>,
    pub indexer: JoinHandle<()>,
    /// Publishes the catalog's outbox to JetStream (NATS transport only).
    pub relay: Option<JoinHandle<()>>,
    /// Keeps who may review which event from checkout's events.
    pub review_attendance: JoinHandle<()>,
    /// Keeps dynamically priced tiers' current prices from inventory's
    /// events.
    pub current_prices: JoinHandle<()>,
}

impl CatalogComponent {
    /// Applies migrations, starts the change listener and returns the
    /// component; add it to a server with [`CatalogComponent::register`].
    pub async fn start(config: &Config, pool: Pool, shutdown: Shutdown) -> anyhow::Result<Self> {
        let index = crate::search::open_index_from_env().await?;
        Self::start_with_search_index(config, pool, shutdown, index).await
    }

    /// [`CatalogComponent::start`] with a given search index (tests pick
    /// the engine this way).
    pub async fn start_with_search_index(
        config: &Config,
        pool: Pool,
        shutdown: Shutdown,
        index: Arc<dyn SearchIndex>,
    ) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the catalog schema")?;
        let store = CatalogStore::new(pool.clone());
        let backfilled = store
            .publish_existing_catalog()
            .await
            .map_err(|error| anyhow::anyhow!("publishing the existing catalog: {error}"))?;
        if backfilled > 0 {
            tracing::info!(
                events = backfilled,
                "published the existing catalog as events"
            );
        }
        let catalog = Arc::new(Catalog::new(store, config.cache_ttl));
        let pg_config = boxoffice_runtime::postgres::parse_url(&config.database_url)?;
        let transport = Transport::from_env(pg_config.clone()).await?;
        let listener = tokio::spawn({
            let on_change = catalog.clone();
            let on_reset = catalog.clone();
            let shutdown = shutdown.clone();
            async move {
                listen_for_changes(
                    pg_config,
                    shutdown,
                    move |change| on_change.apply_change(change),
                    move || on_reset.reset(),
                )
                .await;
            }
        });
        let relay = match &transport {
            Transport::Nats(nats) => Some(tokio::spawn(
                Relay::new(
                    pool.clone(),
                    boxoffice_runtime::postgres::parse_url(&config.database_url)?,
                    crate::events::PRODUCER,
                    nats.clone(),
                )?
                .run(shutdown.clone()),
            )),
            Transport::Postgres { .. } => None,
        };
        let search = Arc::new(EventSearch::new(index.clone()));
        // Checkout may start after the catalog (its outbox appears then):
        // the group retries reading it every two seconds at most.
        let mut attendance_config = boxoffice_events::ConsumerConfig::new(
            crate::reviews::GROUP,
            SCHEMA,
            crate::reviews::STREAMS,
        );
        attendance_config.idle_poll = std::time::Duration::from_millis(500);
        attendance_config.max_backoff = std::time::Duration::from_secs(2);
        let attendance = boxoffice_events::ConsumerGroup::start(
            &transport,
            pool.clone(),
            attendance_config,
            Arc::new(crate::reviews::AttendanceHandler::new(pool.clone())),
            shutdown.clone(),
        )
        .await
        .context("starting the review attendance consumer")?;
        let review_attendance = tokio::spawn(attendance.join());
        // Inventory may start after the catalog too.
        let mut prices_config = boxoffice_events::ConsumerConfig::new(
            crate::prices::GROUP,
            SCHEMA,
            crate::prices::STREAMS,
        );
        prices_config.idle_poll = std::time::Duration::from_millis(500);
        prices_config.max_backoff = std::time::Duration::from_secs(2);
        let prices = boxoffice_events::ConsumerGroup::start(
            &transport,
            pool.clone(),
            prices_config,
            Arc::new(crate::prices::CurrentPriceHandler::new(pool.clone())),
            shutdown.clone(),
        )
        .await
        .context("starting the current price consumer")?;
        let current_prices = tokio::spawn(prices.join());
        let indexer = Indexer::new(pool, transport, index, IndexerSettings::default());
        let indexer = tokio::spawn(indexer.run(shutdown));
        Ok(Self {
            catalog,
            listener,
            search,
            indexer,
            relay,
            review_attendance,
            current_prices,
        })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        let service =
            CatalogServiceServer::new(CatalogGrpc::new(self.catalog.clone(), self.search.clone()))
                .max_decoding_message_size(boxoffice_runtime::limits::CATALOG_MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE);
        server.add_service(service);
    }
}
