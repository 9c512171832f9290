//! Assembling the catalog: migrations, the cache and its change listener,
//! the search index and its indexer, and the tonic service with its message
//! limits.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::catalog::v1::catalog_service_server::CatalogServiceServer;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::{Config, Shutdown};
use boxoffice_search::SearchIndex;
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cache::{Change, listen_for_changes};
use crate::grpc::CatalogGrpc;
use crate::search::{EventSearch, Indexer, IndexerSettings, WithSearch};
use crate::service::Catalog;
use crate::store::{CatalogStore, MIGRATIONS, SCHEMA};

/// The running catalog: its service, plus the background listener that
/// keeps the cache fresh and the indexer that keeps search in step.
pub struct CatalogComponent {
    pub catalog: Arc<Catalog>,
    pub listener: JoinHandle<()>,
    pub search: Arc<EventSearch>,
    pub indexer: JoinHandle<()>,
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
        let catalog = Arc::new(Catalog::new(store, config.cache_ttl));
        let pg_config = boxoffice_runtime::postgres::parse_url(&config.database_url)?;
        // Event changes wake the indexer at once; it also polls, so a lost
        // notification only delays search by a poll interval.
        let wake_indexer = Arc::new(Notify::new());
        let listener = tokio::spawn({
            let on_change = catalog.clone();
            let on_reset = catalog.clone();
            let (wake_on_change, wake_on_reset) = (wake_indexer.clone(), wake_indexer.clone());
            let shutdown = shutdown.clone();
            async move {
                listen_for_changes(
                    pg_config,
                    shutdown,
                    move |change| {
                        if matches!(change, Change::Event(_)) {
                            wake_on_change.notify_one();
                        }
                        on_change.apply_change(change)
                    },
                    move || {
                        wake_on_reset.notify_one();
                        on_reset.reset()
                    },
                )
                .await;
            }
        });
        let search = Arc::new(EventSearch::new(index.clone()));
        let indexer = Indexer::new(pool, index, wake_indexer, IndexerSettings::default());
        let indexer = tokio::spawn(indexer.run(shutdown));
        Ok(Self {
            catalog,
            listener,
            search,
            indexer,
        })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        let service = CatalogServiceServer::new(CatalogGrpc::new(self.catalog.clone()))
            .max_decoding_message_size(boxoffice_runtime::limits::CATALOG_MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE);
        server.add_service(WithSearch::new(service, self.search.clone()));
    }
}
