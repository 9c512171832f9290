//! Assembling the catalog: migrations, the cache and its change listener,
//! and the tonic service with its message limits.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::catalog::v1::catalog_service_server::CatalogServiceServer;
use boxoffice_runtime::server::{GrpcServer, MAX_DECODING_MESSAGE_SIZE, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::{Config, Shutdown};
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::cache::listen_for_changes;
use crate::grpc::CatalogGrpc;
use crate::service::Catalog;
use crate::store::{CatalogStore, MIGRATIONS, SCHEMA};

/// The running catalog: its service, plus the background listener that
/// keeps the cache fresh.
pub struct CatalogComponent {
    pub catalog: Arc<Catalog>,
    pub listener: JoinHandle<()>,
}

impl CatalogComponent {
    /// Applies migrations, starts the change listener and returns the
    /// component; add it to a server with [`CatalogComponent::register`].
    pub async fn start(config: &Config, pool: Pool, shutdown: Shutdown) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the catalog schema")?;
        let catalog = Arc::new(Catalog::new(CatalogStore::new(pool), config.cache_ttl));
        let pg_config = boxoffice_runtime::postgres::parse_url(&config.database_url)?;
        let listener = tokio::spawn({
            let on_change = catalog.clone();
            let on_reset = catalog.clone();
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
        Ok(Self { catalog, listener })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            CatalogServiceServer::new(CatalogGrpc::new(self.catalog.clone()))
                .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }
}
