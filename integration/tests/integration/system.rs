//! The whole system as `boxoffice up` runs it ([`boxoffice::System`]: one
//! internal server, checkout reaching inventory and the catalog in process,
//! the edge in front), used only through the edge, the way its users do:
//! the demo admin puts an event on sale, a new customer registers, logs in,
//! watches the seat map, holds, books, pays, finds the booking in their list
//! and cancels it.

use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::stats::v1 as stats_pb;
use boxoffice_contracts::stats::v1::stats_service_client::StatsServiceClient;
use uuid::Uuid;

use crate::edge_world::{login, with_token};
use crate::harness::eventually;
use crate::inventory::timestamp;
use crate::system_world::{SystemWorld, standing_event_on_sale};

/// The event's availability once `wanted` holds (within `deadline`).
async fn availability_once(
    inventory: &InventoryServiceClient<tonic::transport::Channel>,
    event_id: &str,
    deadline: Duration,
    what: &str,
    wanted: impl Fn(&inventory_pb::Availability) -> bool,
) -> inventory_pb::Availability {
    eventually(deadline, what, || {
        let mut inventory = inventory.clone();
        let event_id = event_id.to_owned();
        let wanted = &wanted;
        async move {
            inventory
                .get_availability(inventory_pb::GetAvailabilityRequest { event_id })
                .await
                .ok()
                .map(tonic::Response::into_inner)
                .filter(|availability| wanted(availability))
        }
    })
    .await
}

#[tokio::test]
async fn a_new_customer_buys_and_cancels_through_the_edge_of_a_whole_system() {
    // The demo catalog (520 events, millions of tickets) is not what this
    // test is about; the demo users are.
    let world = SystemWorld::start("system", &[]).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());

    // The admin puts a small general-admission event on sale.
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Whole System Night", 10).await;
    let mut inventory = InventoryServiceClient::new(edge.clone());

    // A customer of their own: register, log in.
    let email = format!("buyer-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: "Buyer".into(),
        })
        .await
        .expect("registering through the edge");
    let buyer = login(&mut accounts, &email, "correct horse battery").await;

    // The live seat map, streamed through the edge as a browser watches it.
    let mut watch = inventory
        .watch_availability(inventory_pb::WatchAvailabilityRequest {
            event_id: event.id.clone(),
            cursor: String::new(),
        })
        .await
        .expect("watching availability through the edge")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watch's first update in time")
        .expect("a well-formed update")
        .expect("an open stream");
    assert!(
        matches!(
            first.update,
            Some(inventory_pb::availability_update::Update::Snapshot(_))
        ),
        "a watch starts with a snapshot: {first:?}"
    );

    // Hold the best two, book, pay.
    let hold = inventory
        .hold_seats(with_token(
            &buyer,
            inventory_pb::HoldSeatsRequest {
                event_id: event.id.clone(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity: 2,
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .expect("holding two places")
        .into_inner();
    assert_eq!(hold.seats.len(), 2);
    let held: Vec<u32> = hold.seats.iter().map(|seat| seat.seat_index).collect();
    let change = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = watch
                .message()
                .await
                .expect("a well-formed update")
                .expect("the stream stays open");
            if let Some(inventory_pb::availability_update::Update::Change(change)) = update.update {
                return change;
            }
        }
    })
    .await
    .expect("the hold streamed to the watcher in time");
    assert_eq!(change.kind, inventory_pb::ChangeKind::Held as i32);
    assert_eq!(change.seat_indexes, held, "the watcher sees the seats held");
    drop(watch);
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let booking = checkout
        .create_booking(with_token(
            &buyer,
            checkout_pb::CreateBookingRequest {
                hold: hold.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("creating a booking")
        .into_inner();
    assert_eq!(booking.state, checkout_pb::BookingState::Pending as i32);
    let confirmed = checkout
        .confirm_booking(with_token(
            &buyer,
            checkout_pb::ConfirmBookingRequest {
                name: booking.name.clone(),
                payment_method: Some(checkout_pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: "whole-system-1".into(),
            },
        ))
        .await
        .expect("paying")
        .into_inner();
    assert_eq!(confirmed.state, checkout_pb::BookingState::Confirmed as i32);
    assert_eq!(confirmed.tickets.len(), 2);
    assert!(
        confirmed
            .tickets
            .iter()
            .all(|ticket| !ticket.code.is_empty())
    );
    let availability = inventory
        .get_availability(inventory_pb::GetAvailabilityRequest {
            event_id: event.id.clone(),
        })
        .await
        .expect("availability")
        .into_inner();
    assert_eq!(availability.available_count, 8, "two of ten sold");

    // The organiser's figures follow the sale (kept from the events); the
    // buyer and strangers may not read them.
    let mut stats = StatsServiceClient::new(edge.clone());
    let stats_request = || stats_pb::GetEventStatsRequest {
        event_id: event.id.clone(),
    };
    let figures = eventually(Duration::from_secs(10), "the sale in the figures", || {
        let mut stats = stats.clone();
        let request = with_token(&admin, stats_request());
        async move {
            stats
                .get_event_stats(request)
                .await
                .ok()
                .map(tonic::Response::into_inner)
                .filter(|figures| figures.bookings_confirmed == 1)
        }
    })
    .await;
    let seats = figures.seats.expect("seat counts");
    assert_eq!((seats.capacity, seats.sold), (10, 2));
    assert_eq!(figures.title, "Whole System Night");
    assert_eq!(figures.sections.len(), 1);
    assert_eq!(figures.tiers[0].seats.map(|s| s.sold), Some(2));
    let revenue = figures.revenue.expect("revenue");
    assert_eq!(
        revenue.gross.map(|money| money.amount_minor),
        confirmed.total.as_ref().map(|money| money.amount_minor)
    );
    assert_eq!(figures.sales_by_hour.len(), 1);
    assert_eq!(figures.sales_by_hour[0].tickets, 2);
    let refused = stats
        .get_event_stats(with_token(&buyer, stats_request()))
        .await
        .expect_err("a buyer may not read the figures");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let anonymous = stats
        .get_event_stats(stats_request())
        .await
        .expect_err("nor may anyone unnamed");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    // The consumer behind them shows on this process's metrics (the edge's
    // /metrics appends these): events handled and how far behind it is.
    let metrics = boxoffice_events::metrics::render();
    let handled = metrics
        .lines()
        .filter(|line| {
            line.starts_with(
                "boxoffice_event_consumer_handled_total{schema=\"stats\",group=\"stats\"}",
            )
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .max();
    assert!(handled.is_some_and(|n| n > 0), "{metrics}");
    assert!(metrics.contains("boxoffice_event_consumer_lag_milliseconds{schema=\"stats\""));

    // Their list shows it; the admin's does not.
    let listed = checkout
        .list_bookings(with_token(
            &buyer,
            checkout_pb::ListBookingsRequest {
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .expect("listing")
        .into_inner();
    assert_eq!(listed.bookings.len(), 1);
    assert_eq!(listed.bookings[0].name, booking.name);
    assert_eq!(listed.bookings[0].tickets.len(), 2);
    let theirs = checkout
        .list_bookings(with_token(
            &admin,
            checkout_pb::ListBookingsRequest {
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .expect("listing as the admin")
        .into_inner();
    assert!(theirs.bookings.is_empty());

    // Cancel: refunded, and the places are on sale again.
    let cancelled = checkout
        .cancel_booking(with_token(
            &buyer,
            checkout_pb::CancelBookingRequest {
                name: booking.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling")
        .into_inner();
    assert_eq!(cancelled.state, checkout_pb::BookingState::Cancelled as i32);
    assert!(
        cancelled
            .refunded
            .as_ref()
            .is_some_and(|refunded| refunded.amount_minor > 0),
        "a refund: {:?}",
        cancelled.refunded
    );
    availability_once(
        &inventory,
        &event.id,
        Duration::from_secs(10),
        "the places are back on sale",
        |availability| availability.available_count == 10,
    )
    .await;
    let after = eventually(Duration::from_secs(10), "the refund in the figures", || {
        let mut stats = stats.clone();
        let request = with_token(&admin, stats_request());
        async move {
            stats
                .get_event_stats(request)
                .await
                .ok()
                .map(tonic::Response::into_inner)
                .filter(|figures| figures.bookings_cancelled == 1)
        }
    })
    .await;
    assert_eq!(after.seats.map(|s| s.sold), Some(0));
    let revenue = after.revenue.expect("revenue");
    assert_eq!(
        revenue.refunds.map(|money| money.amount_minor),
        cancelled.refunded.as_ref().map(|money| money.amount_minor)
    );
    // Across events: the range holding this one.
    let range = stats
        .list_event_stats(with_token(
            &admin,
            stats_pb::ListEventStatsRequest {
                start_from: Some(timestamp(29)),
                start_to: Some(timestamp(32)),
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .expect("listing figures")
        .into_inner();
    assert_eq!(range.events.len(), 1);
    assert_eq!(range.events[0].event_id, event.id);
    assert_eq!(range.capacity, 10);

    world.stop().await;
}
