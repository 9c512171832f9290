//! The whole system as `boxoffice up` runs it ([`boxoffice::System`]), on a
//! test database and Redis key prefix of its own, without the demo
//! catalogue (its users are there): what every test through the edge of a
//! whole system starts from, and the event it puts on sale.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use boxoffice::{System, SystemOptions};
use boxoffice_accounts::config::{MissingSecret, TokenConfig};
use boxoffice_checkout::config::CheckoutConfig;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_edge::EdgeConfig;
use boxoffice_inventory::config::InventoryConfig;
use boxoffice_runtime::Shutdown;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{connect, with_token};
use crate::harness::{TestDb, delete_redis_keys, eventually, redis_url, test_config};
use crate::inventory::timestamp;

/// Variables as the configurations read them.
pub fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// A running whole system; [`SystemWorld::stop`] ends it and clears its
/// Redis keys (the database goes with `db`).
pub struct SystemWorld {
    pub db: TestDb,
    pub system: System,
    pub shutdown: Shutdown,
    /// The Redis key prefix of this system's inventory.
    pub prefix: String,
    /// The keys its accounts signs tokens with (a second edge verifies them).
    pub tokens: TokenConfig,
    /// The edge's configuration (a second edge starts from it).
    pub edge_config: EdgeConfig,
}

impl SystemWorld {
    /// Starts everything; `checkout_vars` add to checkout's configuration
    /// (its webhook listener is on a free port unless they say otherwise).
    pub async fn start(name: &str, checkout_vars: &[(&str, &str)]) -> Self {
        Self::start_with_notify(name, checkout_vars, None).await
    }

    /// As [`SystemWorld::start`], with notifications sent as `notify` says.
    pub async fn start_with_notify(
        name: &str,
        checkout_vars: &[(&str, &str)],
        notify: Option<boxoffice_notify::NotifyConfig>,
    ) -> Self {
        Self::start_with_all(
            name,
            checkout_vars,
            notify,
            boxoffice::WebhooksConfig::development(),
            &[],
        )
        .await
    }

    /// As [`SystemWorld::start`], with webhooks delivered as `webhooks` says.
    pub async fn start_with_webhooks(name: &str, webhooks: boxoffice::WebhooksConfig) -> Self {
        Self::start_with_all(name, &[], None, webhooks, &[]).await
    }

    /// As [`SystemWorld::start`], with `inventory_vars` added to
    /// inventory's configuration (short holds, say).
    pub async fn start_with_inventory(
        name: &str,
        checkout_vars: &[(&str, &str)],
        inventory_vars: &[(&str, &str)],
    ) -> Self {
        Self::start_with_all(
            name,
            checkout_vars,
            None,
            boxoffice::WebhooksConfig::development(),
            inventory_vars,
        )
        .await
    }

    /// As [`SystemWorld::start`], with every part configurable.
    pub async fn start_with_all(
        name: &str,
        checkout_vars: &[(&str, &str)],
        notify: Option<boxoffice_notify::NotifyConfig>,
        webhooks: boxoffice::WebhooksConfig,
        inventory_vars: &[(&str, &str)],
    ) -> Self {
        let db = TestDb::new().await;
        let config = test_config(&db, &[]);
        let prefix = format!("{name}{}:", Uuid::new_v4().simple());
        let tokens = TokenConfig::from_vars(&BTreeMap::new(), MissingSecret::GenerateEphemeral)
            .expect("token configuration");
        let mut inventory_pairs = vec![("BOXOFFICE_REDIS_KEY_PREFIX", prefix.as_str())];
        inventory_pairs.extend_from_slice(inventory_vars);
        let inventory =
            InventoryConfig::from_vars(&vars(&inventory_pairs)).expect("inventory configuration");
        let mut checkout_pairs = vec![("BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN", "127.0.0.1:0")];
        checkout_pairs.extend_from_slice(checkout_vars);
        let checkout =
            CheckoutConfig::from_vars(&vars(&checkout_pairs)).expect("checkout configuration");
        let mut edge_config = EdgeConfig::defaults(SocketAddr::from(([127, 0, 0, 1], 0)));
        edge_config.admin_listen = None;
        edge_config.access_log = false;
        let shutdown = Shutdown::new();
        let system = System::start(
            &config,
            SystemOptions {
                edge: edge_config.clone(),
                tokens: tokens.clone(),
                inventory,
                checkout,
                demo_data: false,
                notify,
                webhooks,
            },
            shutdown.clone(),
        )
        .await
        .expect("starting the system");
        system
            .accounts
            .ensure_demo_users()
            .await
            .expect("demo users");
        Self {
            db,
            system,
            shutdown,
            prefix,
            tokens,
            edge_config,
        }
    }

    /// A client connection to the system's edge.
    pub async fn edge(&self) -> Channel {
        connect(self.system.edge_addr).await
    }

    /// Stops the system within its grace period and clears its Redis keys.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.system.wait())
            .await
            .expect("the system stops within its grace period")
            .expect("the system stops cleanly");
        delete_redis_keys(&redis_url(), &self.prefix).await;
    }
}

/// An admin (by `admin_token`) creates a one-section, standing-only venue
/// for `capacity` people and an event there in 30 days at 25.00 GBP,
/// publishes it, and waits until inventory has it on sale.
pub async fn standing_event_on_sale(
    edge: &Channel,
    admin_token: &str,
    venue_name: &str,
    title: &str,
    capacity: u32,
) -> catalog_pb::Event {
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let venue = catalog
        .create_venue(with_token(
            admin_token,
            catalog_pb::CreateVenueRequest {
                name: venue_name.into(),
                address: Some(catalog_pb::PostalAddress {
                    street: "33 Queen's Road".into(),
                    city: "Leeds".into(),
                    region: String::new(),
                    postal_code: "LS6 1NY".into(),
                    country_code: "GB".into(),
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections: vec![catalog_pb::SectionSpec {
                    name: "Floor".into(),
                    kind: catalog_pb::SectionKind::GeneralAdmission as i32,
                    capacity,
                    rows: vec![],
                }],
            },
        ))
        .await
        .expect("creating a venue")
        .into_inner();
    let event = catalog
        .create_event(with_token(
            admin_token,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: title.into(),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(timestamp(30)),
                    end_time: Some(timestamp(31)),
                    price_tiers: vec![catalog_pb::PriceTier {
                        name: "Floor".into(),
                        price: Some(catalog_pb::Money {
                            currency_code: "GBP".into(),
                            amount_minor: 2_500,
                        }),
                        section_ids: vec![venue.sections[0].id.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating an event")
        .into_inner();
    catalog
        .publish_event(with_token(
            admin_token,
            catalog_pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await
        .expect("publishing the event");
    let inventory = InventoryServiceClient::new(edge.clone());
    eventually(Duration::from_secs(30), "the event goes on sale", || {
        let mut inventory = inventory.clone();
        let event_id = event.id.clone();
        async move {
            inventory
                .get_availability(inventory_pb::GetAvailabilityRequest { event_id })
                .await
                .ok()
                .filter(|availability| availability.get_ref().on_sale)
        }
    })
    .await;
    event
}
