//! Assembling webhooks: migrations, the consumer group (recording
//! deliveries), the sender (posting them) and the tonic service.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::webhooks::v1::webhook_service_server::WebhookServiceServer;
use boxoffice_events::{ConsumerConfig, ConsumerGroup, ConsumerStats};
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::{Config, Shutdown};
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::config::WebhooksConfig;
use crate::consumer::{GROUP, WebhookHandler};
use crate::event_types::STREAMS;
use crate::grpc::WebhookGrpc;
use crate::sender::Sender;
use crate::store::{MIGRATIONS, SCHEMA, WebhookStore};

/// Running webhooks.
pub struct WebhooksComponent {
    store: WebhookStore,
    config: WebhooksConfig,
    wake: Arc<tokio::sync::Notify>,
    pub consumer: JoinHandle<()>,
    pub sender: JoinHandle<()>,
    /// The consumer's counters (events handled, lag, dead letters).
    pub consumer_stats: Arc<ConsumerStats>,
}

impl WebhooksComponent {
    /// The producers' outboxes (catalog, inventory, checkout) must exist
    /// (their services migrated) before this starts.
    pub async fn start(
        config: &Config,
        webhooks: WebhooksConfig,
        pool: Pool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        if webhooks.allow_private {
            tracing::warn!(
                "webhook endpoints may point at private and loopback addresses (development only)"
            );
        }
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the webhooks schema")?;
        let transport = boxoffice_events::Transport::from_env(
            boxoffice_runtime::postgres::parse_url(&config.database_url)?,
        )
        .await?;
        let store = WebhookStore::new(pool.clone());
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut consumer_config = ConsumerConfig::new(GROUP, SCHEMA, STREAMS);
        consumer_config.idle_poll = std::time::Duration::from_millis(500);
        let group = ConsumerGroup::start(
            &transport,
            pool,
            consumer_config,
            Arc::new(WebhookHandler::new(
                store.clone(),
                webhooks.retry_window,
                wake.clone(),
            )),
            shutdown.clone(),
        )
        .await
        .context("starting the webhooks consumer")?;
        let consumer_stats = group.stats.clone();
        let sender = Sender::new(store.clone(), webhooks.clone(), wake.clone())?;
        Ok(Self {
            store,
            config: webhooks,
            wake,
            consumer: tokio::spawn(group.join()),
            sender: tokio::spawn(sender.run(shutdown)),
            consumer_stats,
        })
    }

    /// The database pool (tests read the schema through it).
    pub fn pool(&self) -> &Pool {
        self.store.pool()
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            WebhookServiceServer::new(WebhookGrpc::new(
                self.store.clone(),
                self.config.clone(),
                self.wake.clone(),
            ))
            .max_decoding_message_size(boxoffice_runtime::limits::WEBHOOKS_MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }
}
