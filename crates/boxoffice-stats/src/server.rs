//! Assembling stats: migrations, the consumer group and the tonic service.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_contracts::stats::v1::stats_service_server::StatsServiceServer;
use boxoffice_events::{ConsumerConfig, ConsumerGroup, ConsumerStats};
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::transport::Transport;
use boxoffice_runtime::{Config, Shutdown};
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::consumer::{GROUP, STREAMS, StatsHandler};
use crate::grpc::StatsGrpc;
use crate::store::{MIGRATIONS, SCHEMA, StatsStore};

/// How often `WatchEventStats` looks for changes.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The running stats: its consumer and its service.
pub struct StatsComponent {
    store: StatsStore,
    inventory: Transport,
    pub consumer: JoinHandle<()>,
    /// The consumer's counters (events handled, lag, dead letters).
    pub consumer_stats: Arc<ConsumerStats>,
}

impl StatsComponent {
    /// `inventory` reaches inventory's service (for the seats held now).
    /// The producers' outboxes must exist (their services migrated) before
    /// this starts.
    pub async fn start(
        config: &Config,
        pool: Pool,
        inventory: Transport,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the stats schema")?;
        let transport = boxoffice_events::Transport::from_env(
            boxoffice_runtime::postgres::parse_url(&config.database_url)?,
        )
        .await?;
        let mut consumer_config = ConsumerConfig::new(GROUP, SCHEMA, STREAMS);
        // Figures trail sales by about this much when idle notifications
        // are lost; a notification wakes the group at once.
        consumer_config.idle_poll = Duration::from_millis(500);
        let group = ConsumerGroup::start(
            &transport,
            pool.clone(),
            consumer_config,
            Arc::new(StatsHandler::new(pool.clone())),
            shutdown,
        )
        .await
        .context("starting the stats consumer")?;
        let consumer_stats = group.stats.clone();
        Ok(Self {
            store: StatsStore::new(pool),
            inventory,
            consumer: tokio::spawn(group.join()),
            consumer_stats,
        })
    }

    pub fn store(&self) -> &StatsStore {
        &self.store
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            StatsServiceServer::new(StatsGrpc::new(
                self.store.clone(),
                self.inventory.clone(),
                WATCH_EVERY,
            ))
            .max_decoding_message_size(boxoffice_runtime::limits::STATS_MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }
}
