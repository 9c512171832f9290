//! Assembling inventory: migrations, the Redis connection and scripts, the
//! consumer of the catalog's events, the hold sweeper, and the tonic services (inventory and
//! the waiting room) with their limits.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::inventory::v1::inventory_service_server::InventoryServiceServer;
use boxoffice_contracts::inventory::v1::waiting_room_service_server::WaitingRoomServiceServer;
use boxoffice_contracts::inventory::v1::waitlist_service_server::WaitlistServiceServer;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::{Config, Shutdown};
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::config::InventoryConfig;
use crate::feed::{CATALOG, CatalogFeed, GROUP};
use crate::grpc::InventoryGrpc;
use crate::service::Inventory;
use crate::sold_out::SoldOutFeed;
use crate::store::{HoldStore, MIGRATIONS, SCHEMA, TicketStore, WaitingRoomStore};
use crate::waiting_room::WaitingRoom;
use crate::waiting_room_grpc::WaitingRoomGrpc;
use crate::waitlist::Waitlist;
use crate::waitlist_grpc::WaitlistGrpc;
use crate::watch_hub::WatchHub;

/// Largest inventory request (see [`boxoffice_runtime::limits`], where the
/// edge reads it too).
pub const MAX_REQUEST_BYTES: usize = boxoffice_runtime::limits::INVENTORY_MAX_REQUEST_BYTES;

/// The running inventory: its service plus the background feed and sweeper.
pub struct InventoryComponent {
    pub inventory: Arc<Inventory>,
    pub waiting_room: Arc<WaitingRoom>,
    watch_hub: Arc<WatchHub>,
    sold_out: Arc<SoldOutFeed>,
    pub feed: JoinHandle<()>,
    pub sweeper: JoinHandle<()>,
    waitlist: Arc<Waitlist>,
    /// The waitlist's offer passes.
    pub waitlist_offers: JoinHandle<()>,
    shutdown: Shutdown,
}

impl InventoryComponent {
    /// Reads inventory's settings from the environment, then starts.
    pub async fn start(config: &Config, pool: Pool, shutdown: Shutdown) -> anyhow::Result<Self> {
        let inventory_config = InventoryConfig::from_env()
            .map_err(|error| anyhow::anyhow!("bad inventory configuration: {error}"))?;
        Self::start_with(config, inventory_config, pool, shutdown).await
    }

    /// Applies migrations, connects to Redis, starts the catalog feed and
    /// the sweeper; add it to a server with [`InventoryComponent::register`].
    pub async fn start_with(
        config: &Config,
        inventory_config: InventoryConfig,
        pool: Pool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the inventory schema")?;
        let holds = HoldStore::connect(config.redis_url.expose(), &inventory_config)
            .await
            .context("connecting to redis (is it running? see README)")?;
        if inventory_config.uses_development_waiting_room_key() {
            tracing::warn!(
                "BOXOFFICE_WAITING_ROOM_KEY is not set: admission tokens are signed with the development key (development only; anyone can forge them)"
            );
        }
        let feed_interval = inventory_config.feed_interval;
        let sweep_interval = inventory_config.sweep_interval;
        let tickets = TicketStore::new(pool.clone());
        let rooms = WaitingRoomStore::new(holds.pool().clone(), &inventory_config.key_prefix);
        let sold_out = Arc::new(SoldOutFeed::new(
            tickets.clone(),
            inventory_config.watch_poll,
            Some(boxoffice_runtime::postgres::parse_url(
                &config.database_url,
            )?),
        ));
        let inventory = Arc::new(Inventory::new(tickets.clone(), holds, inventory_config));
        let waiting_room = Arc::new(WaitingRoom::new(
            inventory.clone(),
            tickets,
            rooms,
            inventory.config(),
        ));
        let watch_hub = Arc::new(WatchHub::new(
            inventory.clone(),
            inventory.config().watch_poll,
        ));
        let transport = boxoffice_events::Transport::from_env(
            boxoffice_runtime::postgres::parse_url(&config.database_url)?,
        )
        .await?;
        let mut feed_config = boxoffice_events::ConsumerConfig::new(GROUP, SCHEMA, &[CATALOG]);
        feed_config.idle_poll = feed_interval;
        feed_config.batch_size = 100;
        let waitlist = Arc::new(
            Waitlist::new(inventory.clone(), pool.clone())
                .await
                .context("starting the waitlist")?,
        );
        let waitlist_offers =
            tokio::spawn(crate::waitlist::run(waitlist.clone(), shutdown.clone()));
        let feed = boxoffice_events::ConsumerGroup::start(
            &transport,
            pool.clone(),
            feed_config,
            Arc::new(CatalogFeed::new(inventory.clone(), pool)),
            shutdown.clone(),
        )
        .await
        .context("starting the catalog feed")?;
        let feed = tokio::spawn(feed.join());
        let sweeper = tokio::spawn(crate::sweeper::run(
            inventory.clone(),
            sweep_interval,
            shutdown.clone(),
        ));
        Ok(Self {
            inventory,
            waiting_room,
            watch_hub,
            sold_out,
            feed,
            sweeper,
            waitlist,
            waitlist_offers,
            shutdown,
        })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            InventoryServiceServer::new(
                InventoryGrpc::new(
                    self.inventory.clone(),
                    self.watch_hub.clone(),
                    self.shutdown.clone(),
                )
                .with_sold_out(self.sold_out.clone()),
            )
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
        server.add_service(
            WaitingRoomServiceServer::new(WaitingRoomGrpc::new(
                self.waiting_room.clone(),
                self.shutdown.clone(),
            ))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
        server.add_service(
            WaitlistServiceServer::new(WaitlistGrpc::new(self.waitlist.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }
}
