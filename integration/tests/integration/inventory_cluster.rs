//! The hold tests again on a 3-node Redis Cluster started for each test:
//! every key of an event shares its `{event-id}` hash tag, so every script
//! runs on one node.

use std::time::Duration;

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_contracts::inventory::v1::waiting_room_service_client::WaitingRoomServiceClient;
use boxoffice_inventory::config::{ENV_HOLD_TTL, ENV_WAITING_ROOM_KEY, ENV_WATCH_POLL};
use boxoffice_inventory::domain::{DrawSeed, draw_order};
use tonic::Code;

use crate::harness::{InventoryWorld, RedisCluster, customer};
use crate::inventory::{
    PLACES, availability, event_on_sale, hold_get_release, hold_seats, race_many_clients, seats_in,
};
use crate::waiting_room::{
    KEY, assert_reason, at_ms, configure_capped, hold, join, join_all, now_ms, release,
    room_report, watch_until_admitted,
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
async fn cluster_waiting_room_draws_admits_under_its_cap_and_spends_tokens() {
    let cluster = RedisCluster::start().await;
    let world = InventoryWorld::with(
        &cluster.url(),
        &[(ENV_WAITING_ROOM_KEY, KEY), (ENV_WATCH_POLL, "20")],
    )
    .await;
    let mut room = WaitingRoomServiceClient::new(world.server.channel().await);
    let mut inventory = world.inventory.clone();
    let sale = event_on_sale(&world).await;
    configure_capped(
        &mut room,
        &sale.event_id,
        true,
        1_000,
        1,
        Some(at_ms(now_ms() + 3_600_000)),
    )
    .await
    .expect("turning the room on");
    let users: Vec<_> = (0..10).map(|_| customer()).collect();
    for status in join_all(&room, &users, &sale.event_id).await {
        assert_eq!(status.state, pb::WaitingRoomState::PreQueue as i32);
    }
    configure_capped(
        &mut room,
        &sale.event_id,
        true,
        1_000,
        1,
        Some(at_ms(now_ms())),
    )
    .await
    .expect("opening now");
    let first_status = crate::harness::eventually(Duration::from_secs(20), "the draw", || {
        let (mut room, user, event_id) = (room.clone(), users[0].clone(), sale.event_id.clone());
        async move {
            let status = join(&mut room, &user, &event_id).await.expect("joining");
            (status.state != pb::WaitingRoomState::PreQueue as i32).then_some(status)
        }
    })
    .await;
    assert!(first_status.join_number >= 1);
    let seed = DrawSeed::from_hex(&room_report(&mut room, &sale.event_id).await.draw_seed)
        .expect("a published seed");
    let ids: Vec<_> = users.iter().map(|u| u.user_id.expect("a user")).collect();
    let order = draw_order(&seed, &ids);
    let by_id = |id| {
        users
            .iter()
            .find(|u| u.user_id == Some(id))
            .expect("a user")
            .clone()
    };
    let (first, second) = (by_id(order[0]), by_id(order[1]));

    // A cap of one: the second in line waits while the first shops.
    let token = watch_until_admitted(&mut room, &first, &sale.event_id, Duration::from_secs(10))
        .await
        .pop()
        .expect("the admitted update")
        .admission_token;
    let held = hold(&mut inventory, &first, &sale.event_id, &[0], &token)
        .await
        .expect("the first holds");
    let waiting = join(&mut room, &second, &sale.event_id)
        .await
        .expect("joined");
    assert_eq!((waiting.join_number, waiting.position), (2, 1));
    let report = room_report(&mut room, &sale.event_id).await;
    assert_eq!((report.active_shoppers, report.admitted_count), (1, 1));
    // Releasing ends the first's sequence and lets the second in.
    release(&mut inventory, &first, &held).await;
    watch_until_admitted(&mut room, &second, &sale.event_id, Duration::from_secs(10)).await;
    let refused = hold(&mut inventory, &first, &sale.event_id, &[0], &token)
        .await
        .expect_err("a spent token");
    assert_reason(&refused, Code::FailedPrecondition, "ADMISSION_USED");
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
