//! Assembling notifications: migrations, the consumer group (recording
//! messages), the sender (delivering them) and the tonic service.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::notify::v1::notification_service_server::NotificationServiceServer;
use boxoffice_contracts::notify::v1::support_service_server::SupportServiceServer;
use boxoffice_events::{ConsumerConfig, ConsumerGroup, ConsumerStats};
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::transport::Transport;
use boxoffice_runtime::{Config, Shutdown};
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::config::NotifyConfig;
use crate::consumer::{GROUP, NotifyHandler, STREAMS};
use crate::grpc::NotifyGrpc;
use crate::metrics::SenderStats;
use crate::sender::Sender;
use crate::store::{MIGRATIONS, NotifyStore, SCHEMA};
use crate::token::UnsubscribeTokens;

/// Running notifications.
pub struct NotifyComponent {
    store: NotifyStore,
    tokens: UnsubscribeTokens,
    questions: crate::questions::Questions,
    checkout: Transport,
    wake: Arc<tokio::sync::Notify>,
    pub consumer: JoinHandle<()>,
    pub sender: JoinHandle<()>,
    /// The consumer's counters (events handled, lag, dead letters).
    pub consumer_stats: Arc<ConsumerStats>,
    /// The sender's counters (sent, failures, waiting).
    pub sender_stats: Arc<SenderStats>,
}

impl NotifyComponent {
    /// `checkout` reaches checkout's service (for ticket codes). The
    /// producers' outboxes must exist (their services migrated) first.
    pub async fn start(
        config: &Config,
        notify: NotifyConfig,
        pool: Pool,
        checkout: Transport,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        if notify.ephemeral_secret {
            tracing::warn!(
                "BOXOFFICE_UNSUBSCRIBE_SECRET is not set: unsubscribe links are signed with a random per-process key (development only)"
            );
        }
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the notify schema")?;
        let transport = boxoffice_events::Transport::from_env(
            boxoffice_runtime::postgres::parse_url(&config.database_url)?,
        )
        .await?;
        // The webhooks' stream is the newest producer: a notify upgraded
        // before the checkout process that runs webhooks (which migrates
        // it) still finds its outbox, empty until then (idempotent DDL).
        boxoffice_events::outbox::install(&pool, "webhooks")
            .await
            .context("installing the webhooks outbox")?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut consumer_config = ConsumerConfig::new(GROUP, SCHEMA, STREAMS);
        consumer_config.idle_poll = std::time::Duration::from_millis(500);
        let group = ConsumerGroup::start(
            &transport,
            pool.clone(),
            consumer_config,
            Arc::new(NotifyHandler::new(
                pool.clone(),
                checkout.clone(),
                wake.clone(),
            )),
            shutdown.clone(),
        )
        .await
        .context("starting the notify consumer")?;
        let consumer_stats = group.stats.clone();
        let questions = crate::questions::Questions::new(pool.clone());
        let store = NotifyStore::new(pool);
        let sender_stats = Arc::new(SenderStats::default());
        crate::metrics::register(&sender_stats);
        let tokens = UnsubscribeTokens::new(notify.unsubscribe_secret.expose().as_bytes());
        tracing::info!(smtp = %redacted(notify.smtp_url.expose()), "sending notifications");
        let sender = Sender::new(store.clone(), notify, sender_stats.clone(), wake.clone())?;
        Ok(Self {
            store,
            tokens,
            questions,
            checkout,
            wake,
            consumer: tokio::spawn(group.join()),
            sender: tokio::spawn(sender.run(shutdown)),
            consumer_stats,
            sender_stats,
        })
    }

    pub fn store(&self) -> &NotifyStore {
        &self.store
    }

    /// The token of `user_id`'s unsubscribe links.
    pub fn unsubscribe_token(&self, user_id: uuid::Uuid) -> String {
        self.tokens.token(user_id)
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            NotificationServiceServer::new(NotifyGrpc::new(
                self.store.clone(),
                self.tokens.clone(),
            ))
            .max_decoding_message_size(boxoffice_runtime::limits::NOTIFY_MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
        server.add_service(
            SupportServiceServer::new(crate::support_grpc::SupportGrpc::new(
                self.questions.clone(),
                self.checkout.clone(),
                self.wake.clone(),
            ))
            .max_decoding_message_size(boxoffice_runtime::limits::SUPPORT_MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }
}

/// The SMTP URL without its credentials, for logs.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}
