//! The rush's end at the edge: once inventory says an event is sold out the
//! edge answers its holds and queue joins itself, and a cancellation that
//! puts seats back reopens it there.

use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::inventory::v1::waiting_room_service_client::WaitingRoomServiceClient;
use boxoffice_runtime::status::reason_of;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{connect, login, with_token};
use crate::harness::{as_caller, eventually};
use crate::inventory::checkout;
use crate::system_world::{SystemWorld, standing_event_on_sale};

fn hold_request(event_id: &str, seats: &[u32]) -> pb::HoldSeatsRequest {
    pb::HoldSeatsRequest {
        event_id: event_id.to_owned(),
        selection: Some(pb::hold_seats_request::Selection::Seats(
            pb::SeatSelection {
                seat_indexes: seats.to_vec(),
            },
        )),
        admission_token: String::new(),
    }
}

async fn customer_token(edge: &Channel) -> String {
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let email = format!("fan-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: "Fan".into(),
        })
        .await
        .expect("registering");
    login(&mut accounts, &email, "correct horse battery").await
}

#[tokio::test]
async fn the_edge_answers_sold_out_itself_and_reopens_when_a_cancellation_frees_seats() {
    let world = SystemWorld::start("soldout", &[]).await;
    sold_out_then_back_on_sale(world, Duration::from_secs(20)).await;
}

/// Inventory's watchers poll every 10 s here, but the sold-out set follows
/// the sale and the cancellation within 3 s each: it is pushed when they
/// commit, not found by a poll (looks 10 s apart cannot fall into both
/// windows, one right after the other).
#[tokio::test]
async fn the_sold_out_set_follows_sales_and_cancellations_as_they_commit() {
    let world = SystemWorld::start_with_inventory(
        "soldoutnotify",
        &[],
        &[("BOXOFFICE_WATCH_POLL_MS", "10000")],
    )
    .await;
    sold_out_then_back_on_sale(world, Duration::from_secs(3)).await;
}

/// Sells an event out through the mesh, expects the edge to refuse its rush
/// within `within`, cancels, and expects the edge to let buyers through
/// again within `within`.
async fn sold_out_then_back_on_sale(world: SystemWorld, within: Duration) {
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Last Two Places", 2).await;
    let (buyer, late) = (customer_token(&edge).await, customer_token(&edge).await);
    let mut inventory = InventoryServiceClient::new(edge.clone());
    let mut room = WaitingRoomServiceClient::new(edge.clone());

    // The buyer takes both places; checkout (inside the mesh) sells them.
    let hold = inventory
        .hold_seats(with_token(&buyer, hold_request(&event.id, &[0, 1])))
        .await
        .expect("holding both places")
        .into_inner();
    let mut mesh = InventoryServiceClient::new(connect(world.system.internal_addr).await);
    let booking_id = Uuid::new_v4();
    let buyer_id = hold.user_id.clone();
    mesh.commit_hold(as_caller(
        &checkout(),
        pb::CommitHoldRequest {
            name: hold.name.clone(),
            booking_id: booking_id.to_string(),
            user_id: buyer_id,
            sale_id: String::new(),
        },
    ))
    .await
    .expect("selling both places");

    // The edge learns it from inventory and answers the rush itself.
    let refused = eventually(within, "the edge says sold out", || {
        let (mut inventory, request) = (
            inventory.clone(),
            with_token(&late, hold_request(&event.id, &[0])),
        );
        async move {
            let status = inventory
                .hold_seats(request)
                .await
                .expect_err("nothing left");
            (reason_of(&status).as_deref() == Some("EVENT_SOLD_OUT")).then_some(status)
        }
    })
    .await;
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let joined = room
        .join_queue(with_token(
            &late,
            pb::JoinQueueRequest {
                event_id: event.id.clone(),
            },
        ))
        .await
        .expect_err("no line for a sold-out event");
    assert_eq!(reason_of(&joined).as_deref(), Some("EVENT_SOLD_OUT"));
    // Only the sold-out event: another event still reaches inventory.
    let other = standing_event_on_sale(&edge, &admin, "Brudenell 2", "Plenty Left", 5).await;
    inventory
        .hold_seats(with_token(&late, hold_request(&other.id, &[0])))
        .await
        .expect("another event sells on");

    // The booking is cancelled: its places go back on sale, and the edge
    // lets the next buyer through to inventory again.
    let released = mesh
        .release_seats(as_caller(
            &checkout(),
            pb::ReleaseSeatsRequest {
                event_id: event.id.clone(),
                booking_id: booking_id.to_string(),
            },
        ))
        .await
        .expect("cancelling")
        .into_inner();
    assert_eq!(released.seat_indexes.len(), 2);
    let held = eventually(within, "the edge reopens the event", || {
        let (mut inventory, request) = (
            inventory.clone(),
            with_token(&late, hold_request(&event.id, &[1])),
        );
        async move { inventory.hold_seats(request).await.ok() }
    })
    .await
    .into_inner();
    assert_eq!(held.seats.len(), 1);
    world.stop().await;
}
