//! The hold tests again on a 3-node Redis Cluster started for each test:
//! every key of an event shares its `{event-id}` hash tag, so every script
//! runs on one node.

use std::time::Duration;

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_inventory::config::ENV_HOLD_TTL;
use tonic::Code;

use crate::harness::{InventoryWorld, RedisCluster, customer};
use crate::inventory::{
    PLACES, availability, event_on_sale, hold_get_release, hold_seats, race_many_clients, seats_in,
};

#[tokio::test]
async fn cluster_holds_are_all_or_nothing_and_owner_only() {
    let cluster = RedisCluster::start().await;
    let world = InventoryWorld::with(&cluster.url(), &[]).await;
    hold_get_release(&world).await;
}

#[tokio::test]
async fn cluster_two_hundred_clients_racing_never_share_a_seat() {
    let cluster = RedisCluster::start().await;
    let world = InventoryWorld::with(&cluster.url(), &[]).await;
    race_many_clients(&world, 200).await;
}

#[tokio::test]
async fn cluster_expired_holds_are_swept_and_rebuilt_state_survives() {
    let cluster = RedisCluster::start().await;
    let world = InventoryWorld::with(&cluster.url(), &[(ENV_HOLD_TTL, "1")]).await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    hold_seats(&mut inventory, &customer(), &sale.event_id, &[3])
        .await
        .unwrap();
    let refused = hold_seats(&mut inventory, &customer(), &sale.event_id, &[3])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted);
    let event_id = sale.event_id.clone();
    crate::harness::eventually(
        Duration::from_secs(5),
        "the sweeper to free the seat",
        || {
            let mut inventory = inventory.clone();
            let event_id = event_id.clone();
            async move {
                seats_in(&availability(&mut inventory, &event_id).await.held, PLACES)
                    .is_empty()
                    .then_some(())
            }
        },
    )
    .await;
    let snapshot: pb::Availability = availability(&mut inventory, &sale.event_id).await;
    assert_eq!(snapshot.available_count, PLACES);
}
