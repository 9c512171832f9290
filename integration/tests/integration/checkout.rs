//! Checkout end to end: catalog and inventory on one server, checkout on
//! another calling inventory over gRPC, real PostgreSQL and Redis, and the
//! simulated payment provider. Booking, paying, declines, seats gone,
//! idempotency under concurrency, ownership, cancellation with refunds,
//! ticket codes.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_checkout::payment::{ProviderStatus, SimulatedProvider};
use boxoffice_checkout::{CheckoutComponent, CheckoutConfig, FailPoints};
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::status::{field_of, reason_of};
use boxoffice_runtime::{Caller, Shutdown};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::harness::{InventoryWorld, RunningServer, as_caller, customer, redis_url, spawn_server};
use crate::inventory::{
    OnSale, PLACES, availability, event_on_sale, hold_seats, seats_in, sold_tickets,
};

pub type Checkout = CheckoutServiceClient<Channel>;

/// Seated tier price and the default fee per ticket.
pub const SEAT_PRICE: i64 = 4500;
pub const FEE: i64 = 150;

/// Catalog + inventory on one server, checkout on its own server and
/// webhook listener, all over one fresh database.
pub struct CheckoutWorld {
    // Servers first: they stop before the database goes (last field).
    // Held only to stop checkout's server when the world is dropped.
    pub _checkout_server: RunningServer,
    pub client: Checkout,
    pub component: CheckoutComponent,
    pub fail_points: Arc<FailPoints>,
    pub event: OnSale,
    pub world: InventoryWorld,
}

impl CheckoutWorld {
    /// The checkout a process restarted after a crash runs: the same
    /// database and inventory, `provider` for its payments.
    pub fn restarted(
        &self,
        provider: Arc<dyn boxoffice_checkout::payment::PaymentProvider>,
    ) -> Arc<boxoffice_checkout::service::Checkout> {
        let first = &self.component.checkout;
        let upstream = boxoffice_runtime::transport::over_channel(
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.world.server.addr))
                .expect("url")
                .connect_lazy(),
        );
        Arc::new(boxoffice_checkout::service::Checkout::new(
            first.store().clone(),
            provider,
            boxoffice_checkout::upstream::Upstream::new(upstream.clone(), upstream),
            first.config().clone(),
        ))
    }

    pub async fn new() -> Self {
        Self::with(&[], |_| {}).await
    }

    /// `inventory_settings` are inventory variables; `adjust` edits
    /// checkout's configuration before it starts.
    pub async fn with(
        inventory_settings: &[(&str, &str)],
        adjust: impl FnOnce(&mut CheckoutConfig),
    ) -> Self {
        let world = InventoryWorld::with(&redis_url(), inventory_settings).await;
        let event = event_on_sale(&world).await;
        let mut config = CheckoutConfig {
            inventory_url: format!("http://{}", world.server.addr),
            catalog_url: format!("http://{}", world.server.addr),
            webhook_listen: "127.0.0.1:0".parse().expect("address"),
            // Tests run passes themselves; the loop stays out of the way.
            reconcile_interval: Duration::from_secs(3600),
            ..CheckoutConfig::default()
        };
        adjust(&mut config);
        let fail_points = config.fail_points.clone();
        let shutdown = Shutdown::new();
        // Inventory and catalog are reached in-process, as `boxoffice up`
        // does (the second instance in
        // `two_instances_paying_one_booking_with_different_keys_charge_once`
        // goes over the network, as `serve checkout` alone does).
        let mut local = GrpcServer::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("binding");
        world.component.register(&mut local);
        world._catalog_component.register(&mut local);
        let component = CheckoutComponent::start_with(
            config,
            world.db.pool.clone(),
            shutdown.clone(),
            Some(local.in_process()),
        )
        .await
        .expect("starting checkout");
        let mut server = GrpcServer::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("binding the checkout server");
        component.register(&mut server);
        let addr = server.local_addr();
        spawn_server(server, &shutdown);
        let checkout_server = RunningServer { addr, shutdown };
        let client = CheckoutServiceClient::new(checkout_server.channel().await);
        Self {
            _checkout_server: checkout_server,
            client,
            component,
            fail_points,
            event,
            world,
        }
    }

    /// The in-process simulated provider this world pays through.
    pub fn simulated(&self) -> &Arc<SimulatedProvider> {
        self.component
            .simulated
            .as_ref()
            .expect("this world pays through the in-process provider")
    }

    pub fn inventory(&self) -> crate::inventory::Inventory {
        self.world.inventory.clone()
    }

    /// Holds `seats` for `user` and creates a booking for the hold.
    pub async fn booking_for(
        &self,
        user: &Caller,
        seats: &[u32],
    ) -> (inventory_pb::Hold, pb::Booking) {
        let hold = hold_seats(&mut self.inventory(), user, &self.event.event_id, seats)
            .await
            .expect("holding seats");
        let booking = create(&mut self.client.clone(), user, &hold.name)
            .await
            .expect("creating a booking");
        (hold, booking)
    }

    pub async fn sold_seats(&self) -> Vec<u32> {
        let availability = availability(&mut self.inventory(), &self.event.event_id).await;
        seats_in(&availability.sold, PLACES)
    }

    pub async fn held_seats(&self) -> Vec<u32> {
        let availability = availability(&mut self.inventory(), &self.event.event_id).await;
        seats_in(&availability.held, PLACES)
    }

    /// (booking id, state) of every booking, from PostgreSQL.
    pub async fn booking_states(&self) -> Vec<(Uuid, String)> {
        self.world
            .db
            .client()
            .await
            .query("SELECT id, state FROM checkout.bookings ORDER BY id", &[])
            .await
            .expect("reading bookings")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Payments the provider holds, by status.
    pub fn provider_count(&self, status: ProviderStatus) -> usize {
        self.simulated()
            .payments()
            .iter()
            .filter(|payment| payment.status == status)
            .count()
    }

    /// Every paid booking ends confirmed or refunded, and nothing else is
    /// sold: captured payments = confirmed bookings, refunded payments =
    /// cancelled paid bookings, seats sold only to confirmed bookings, and
    /// no booking in flight.
    pub async fn assert_money_and_seats_agree(&self) {
        let states = self.booking_states().await;
        let count = |state: &str| states.iter().filter(|(_, s)| s == state).count();
        assert_eq!(
            count("confirming"),
            0,
            "no booking left confirming: {states:?}"
        );
        assert_eq!(
            count("cancelling"),
            0,
            "no booking left cancelling: {states:?}"
        );
        assert_eq!(
            self.provider_count(ProviderStatus::Captured),
            count("confirmed"),
            "captured = confirmed"
        );
        let paid_and_cancelled: i64 = self
            .world
            .db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM checkout.bookings WHERE state = 'cancelled' AND payment_id IS NOT NULL",
                &[],
            )
            .await
            .expect("counting")
            .get(0);
        assert_eq!(
            self.provider_count(ProviderStatus::Refunded),
            paid_and_cancelled as usize,
            "refunded = cancelled paid"
        );
        assert_eq!(
            self.provider_count(ProviderStatus::Authorized),
            0,
            "no authorization left dangling"
        );
        let confirmed: Vec<Uuid> = states
            .iter()
            .filter(|(_, s)| s == "confirmed")
            .map(|(id, _)| *id)
            .collect();
        for (seat, booking) in sold_tickets(&self.world, &self.event.event_id).await {
            assert!(
                confirmed.contains(&booking),
                "seat {seat} is sold to {booking}, which is not confirmed"
            );
        }
        crate::events::assert_events_match_tables(&self.world.db).await;
    }
}

pub async fn create(
    client: &mut Checkout,
    user: &Caller,
    hold: &str,
) -> Result<pb::Booking, Status> {
    client
        .create_booking(as_caller(
            user,
            pb::CreateBookingRequest {
                hold: hold.to_owned(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn confirm(
    client: &mut Checkout,
    user: &Caller,
    booking: &str,
    token: &str,
    key: &str,
) -> Result<pb::Booking, Status> {
    client
        .confirm_booking(as_caller(
            user,
            pb::ConfirmBookingRequest {
                name: booking.to_owned(),
                payment_method: Some(pb::PaymentMethod {
                    token: token.to_owned(),
                    ..Default::default()
                }),
                idempotency_key: key.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn get(
    client: &mut Checkout,
    user: &Caller,
    booking: &str,
) -> Result<pb::Booking, Status> {
    client
        .get_booking(as_caller(
            user,
            pb::GetBookingRequest {
                name: booking.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn cancel(
    client: &mut Checkout,
    user: &Caller,
    booking: &str,
) -> Result<pb::Booking, Status> {
    client
        .cancel_booking(as_caller(
            user,
            pb::CancelBookingRequest {
                name: booking.to_owned(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn list(
    client: &mut Checkout,
    user: &Caller,
    page_size: i32,
    page_token: &str,
) -> pb::ListBookingsResponse {
    client
        .list_bookings(as_caller(
            user,
            pb::ListBookingsRequest {
                page_size,
                page_token: page_token.to_owned(),
            },
        ))
        .await
        .expect("listing bookings")
        .into_inner()
}

pub fn state(booking: &pb::Booking) -> pb::BookingState {
    pb::BookingState::try_from(booking.state).unwrap_or(pb::BookingState::Unspecified)
}

pub fn booking_id(booking: &pb::Booking) -> Uuid {
    Uuid::parse_str(booking.name.trim_start_matches("bookings/")).expect("booking name")
}

pub fn assert_reason(result: Result<pb::Booking, Status>, code: Code, reason: &str) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "{status:?}");
    status
}

fn money(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "GBP".into(),
        amount_minor,
    })
}

#[tokio::test]
async fn hold_book_pay_list_cancel_and_resell() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (hold, booking) = world.booking_for(&alice, &[3, 4]).await;

    // Priced by the server from the hold, with a fees line, expiring with it.
    assert_eq!(state(&booking), pb::BookingState::Pending);
    assert_eq!(booking.hold, hold.name);
    assert_eq!(booking.subtotal, money(2 * SEAT_PRICE));
    assert_eq!(booking.fees, money(2 * FEE));
    assert_eq!(booking.total, money(2 * SEAT_PRICE + 2 * FEE));
    assert_eq!(booking.expire_time, hold.expire_time);
    assert_eq!(booking.line_items.len(), 3);
    assert_eq!(
        booking.line_items.last().map(|item| item.kind),
        Some(pb::LineItemKind::Fee as i32)
    );
    assert!(
        booking.tickets.iter().all(|ticket| ticket.code.is_empty()),
        "no codes before payment"
    );
    // Asking again for the same hold answers the same booking.
    let again = create(&mut client, &alice, &hold.name).await.unwrap();
    assert_eq!(again.name, booking.name);

    let confirmed = confirm(&mut client, &alice, &booking.name, "tok_visa", "pay-1")
        .await
        .unwrap();
    assert_eq!(state(&confirmed), pb::BookingState::Confirmed);
    assert!(confirmed.confirm_time.is_some());
    assert_eq!(world.sold_seats().await, vec![3, 4]);
    let signer = world.component.ticket_signer();
    let first_codes: Vec<String> = confirmed
        .tickets
        .iter()
        .map(|ticket| ticket.code.clone())
        .collect();
    for ticket in &confirmed.tickets {
        let claims = signer.verify(&ticket.code).expect("a genuine ticket code");
        assert_eq!(claims.booking_id, booking_id(&confirmed));
        assert_eq!(claims.seat_index, ticket.seat_index);
        assert_eq!(claims.event_id.to_string(), world.event.event_id);
    }
    assert_eq!(world.provider_count(ProviderStatus::Captured), 1);

    let listed = list(&mut client, &alice, 10, "").await;
    assert_eq!(listed.bookings.len(), 1);
    assert_eq!(listed.bookings[0].name, booking.name);
    assert_eq!(state(&listed.bookings[0]), pb::BookingState::Confirmed);
    assert_eq!(listed.bookings[0].tickets.len(), 2);
    assert_eq!(listed.bookings[0].tickets[0].code, first_codes[0]);

    // Cancel: the ticket prices come back (fees are kept), seats go on sale.
    let cancelled = cancel(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(state(&cancelled), pb::BookingState::Cancelled);
    assert_eq!(cancelled.refunded, money(2 * SEAT_PRICE));
    assert!(
        cancelled
            .tickets
            .iter()
            .all(|ticket| ticket.code.is_empty())
    );
    let refunded = world.simulated().payments();
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0].status, ProviderStatus::Refunded);
    assert_eq!(refunded[0].refunded_minor, 2 * SEAT_PRICE);
    assert!(world.sold_seats().await.is_empty(), "seats back on sale");
    // Cancelling again changes nothing.
    let twice = cancel(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(twice.refunded, money(2 * SEAT_PRICE));
    assert_eq!(
        world.simulated().payments()[0].refunded_minor,
        2 * SEAT_PRICE
    );

    // Resold to someone else: new codes.
    let bob = customer();
    let (_, resale) = world.booking_for(&bob, &[3, 4]).await;
    let resold = confirm(&mut client, &bob, &resale.name, "tok_mastercard", "bob-1")
        .await
        .unwrap();
    assert_eq!(state(&resold), pb::BookingState::Confirmed);
    for (ticket, old) in resold.tickets.iter().zip(&first_codes) {
        assert_ne!(&ticket.code, old, "a resold seat gets a new code");
        assert!(signer.verify(&ticket.code).is_some());
    }
    world.assert_money_and_seats_agree().await;
}

#[tokio::test]
async fn a_decline_keeps_the_seats_held_and_the_booking_payable() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[7]).await;

    let declined = confirm(
        &mut client,
        &alice,
        &booking.name,
        "tok_chargeDeclined",
        "k1",
    )
    .await;
    assert_reason(declined, Code::FailedPrecondition, "PAYMENT_DECLINED");
    assert_eq!(
        state(&get(&mut client, &alice, &booking.name).await.unwrap()),
        pb::BookingState::Pending
    );
    assert_eq!(world.held_seats().await, vec![7], "seats stay held");
    assert!(world.sold_seats().await.is_empty());
    // The same key answers the same decline, even with a good card now.
    let replay = confirm(
        &mut client,
        &alice,
        &booking.name,
        "tok_chargeDeclined",
        "k1",
    )
    .await;
    assert_reason(replay, Code::FailedPrecondition, "PAYMENT_DECLINED");
    let reused = confirm(&mut client, &alice, &booking.name, "tok_visa", "k1").await;
    assert_reason(reused, Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED");

    let paid = confirm(&mut client, &alice, &booking.name, "tok_visa", "k2")
        .await
        .unwrap();
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    assert_eq!(world.sold_seats().await, vec![7]);
    world.assert_money_and_seats_agree().await;
}

#[tokio::test]
async fn seats_gone_void_the_authorization_and_abort() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (hold, booking) = world.booking_for(&alice, &[1, 2]).await;
    // The hold ends before payment (released here; expiry behaves alike).
    world
        .inventory()
        .release_hold(as_caller(
            &alice,
            inventory_pb::ReleaseHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .expect("releasing the hold");

    let gone = confirm(&mut client, &alice, &booking.name, "tok_visa", "k").await;
    let status = assert_reason(gone, Code::Aborted, "HOLD_RELEASED");
    assert!(status.message().contains("voided"), "{status:?}");
    assert_eq!(world.provider_count(ProviderStatus::Voided), 1);
    assert_eq!(world.provider_count(ProviderStatus::Captured), 0);
    let after = get(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(state(&after), pb::BookingState::Expired);
    assert_eq!(after.failure_reason, "HOLD_RELEASED");
    // A retry answers the same, and charges nothing.
    let replay = confirm(&mut client, &alice, &booking.name, "tok_visa", "k").await;
    assert_reason(replay, Code::Aborted, "HOLD_RELEASED");
    assert_eq!(world.simulated().payments().len(), 1);
    assert!(world.sold_seats().await.is_empty());
    world.assert_money_and_seats_agree().await;
}

#[tokio::test]
async fn fifty_concurrent_confirmations_with_one_key_charge_once() {
    let world = CheckoutWorld::new().await;
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[10, 11]).await;
    let calls = (0..50).map(|_| {
        let mut client = world.client.clone();
        let (alice, name) = (alice.clone(), booking.name.clone());
        tokio::spawn(
            async move { confirm(&mut client, &alice, &name, "tok_visa", "same-key").await },
        )
    });
    let results = futures::future::join_all(calls).await;
    let mut codes = Vec::new();
    for result in results {
        let booking = result
            .expect("task")
            .expect("every duplicate gets the same answer");
        assert_eq!(state(&booking), pb::BookingState::Confirmed);
        codes.push(booking.tickets[0].code.clone());
    }
    codes.dedup();
    assert_eq!(codes.len(), 1, "one booking, one set of tickets");
    assert_eq!(world.simulated().payments().len(), 1, "exactly one charge");
    let rows: i64 = world
        .world
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM checkout.payments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);

    // Other keys on a paid booking charge nothing more.
    let other = confirm(
        &mut world.client.clone(),
        &alice,
        &booking.name,
        "tok_visa",
        "other-key",
    )
    .await;
    assert_reason(other, Code::FailedPrecondition, "BOOKING_NOT_PENDING");
    // The same key for another booking is refused.
    let (_, second) = world.booking_for(&alice, &[12]).await;
    let reused = confirm(
        &mut world.client.clone(),
        &alice,
        &second.name,
        "tok_visa",
        "same-key",
    )
    .await;
    assert_reason(reused, Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(world.simulated().payments().len(), 1);
    world.assert_money_and_seats_agree().await;
}

#[tokio::test]
async fn fifty_concurrent_confirmations_with_different_keys_charge_once() {
    let world = CheckoutWorld::new().await;
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[5]).await;
    let calls = (0..50).map(|i| {
        let mut client = world.client.clone();
        let (alice, name) = (alice.clone(), booking.name.clone());
        tokio::spawn(async move {
            confirm(&mut client, &alice, &name, "tok_visa", &format!("key-{i}")).await
        })
    });
    let results = futures::future::join_all(calls).await;
    let succeeded = results
        .iter()
        .filter(|result| matches!(result, Ok(Ok(_))))
        .count();
    assert_eq!(succeeded, 1);
    for result in results.into_iter().flatten() {
        if let Err(status) = result {
            let reason = reason_of(&status).unwrap_or_default();
            assert!(
                reason == "BOOKING_NOT_PENDING" || reason == "CONFIRMATION_IN_PROGRESS",
                "{status:?}"
            );
        }
    }
    assert_eq!(world.simulated().payments().len(), 1);
    world.assert_money_and_seats_agree().await;
}

/// Two checkout instances (no shared in-process lock between them) paying
/// one booking at once with different keys: inventory sells the hold under
/// one attempt only, so exactly one charge goes through and every other
/// authorization is voided.
#[tokio::test]
async fn two_instances_paying_one_booking_with_different_keys_charge_once() {
    // Provider calls take a while, as over a network, so the two instances'
    // attempts overlap.
    let world = CheckoutWorld::with(&[], |config| {
        config.provider.latency = Duration::from_millis(20);
    })
    .await;
    let first = world.component.checkout.clone();
    let upstream = boxoffice_runtime::transport::over_channel(
        tonic::transport::Endpoint::from_shared(format!("http://{}", world.world.server.addr))
            .expect("url")
            .connect_lazy(),
    );
    let second = Arc::new(boxoffice_checkout::service::Checkout::new(
        first.store().clone(),
        world.simulated().clone(),
        boxoffice_checkout::upstream::Upstream::new(upstream.clone(), upstream),
        first.config().clone(),
    ));
    for round in 0..6u32 {
        let alice = customer();
        let (_, booking) = world.booking_for(&alice, &[20 + round]).await;
        let id = booking_id(&booking);
        let calls = (0..8).map(|attempt| {
            let instance = if attempt % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let alice = alice.clone();
            tokio::spawn(async move {
                instance
                    .confirm_booking(&alice, id, "tok_visa".into(), format!("key-{attempt}"))
                    .await
            })
        });
        let mut paid = 0;
        for result in futures::future::join_all(calls).await {
            match result.expect("task") {
                Ok(booking) => {
                    assert_eq!(booking.state.as_str(), "confirmed");
                    paid += 1;
                }
                Err(error) => {
                    let status = tonic::Status::from(error);
                    let reason = reason_of(&status).unwrap_or_default();
                    assert!(
                        reason == "BOOKING_NOT_PENDING" || reason == "CONFIRMATION_IN_PROGRESS",
                        "{status:?}"
                    );
                }
            }
        }
        assert_eq!(paid, 1, "round {round}: one attempt pays");
        assert_eq!(
            world.provider_count(ProviderStatus::Captured),
            round as usize + 1,
            "round {round}: one charge per booking"
        );
        world.assert_money_and_seats_agree().await;
    }
}

/// The instance that made a booking starts paying for it without reading it
/// back, trusting that it is still pending. When another instance (which
/// shares none of its memory) has paid for it or cancelled it meanwhile,
/// the answer is still the database's, nothing is charged twice, and no
/// authorization is left standing.
#[tokio::test]
async fn a_booking_changed_by_another_instance_is_answered_as_it_now_stands() {
    let world = CheckoutWorld::new().await;
    let first = world.component.checkout.clone();
    let upstream = boxoffice_runtime::transport::over_channel(
        tonic::transport::Endpoint::from_shared(format!("http://{}", world.world.server.addr))
            .expect("url")
            .connect_lazy(),
    );
    let second = boxoffice_checkout::service::Checkout::new(
        boxoffice_checkout::store::CheckoutStore::new(first.store().pool().clone()),
        world.simulated().clone(),
        boxoffice_checkout::upstream::Upstream::new(upstream.clone(), upstream),
        first.config().clone(),
    );
    let alice = customer();

    // Paid through the other instance, then again here with another key.
    let (_, paid) = world.booking_for(&alice, &[116]).await;
    let paid_id = booking_id(&paid);
    let elsewhere = second
        .confirm_booking(&alice, paid_id, "tok_visa".into(), "key-elsewhere".into())
        .await
        .expect("paid through the other instance");
    assert_eq!(elsewhere.state.as_str(), "confirmed");
    let again = first
        .confirm_booking(&alice, paid_id, "tok_visa".into(), "key-here".into())
        .await
        .expect_err("a confirmed booking is not paid twice");
    let status = tonic::Status::from(again);
    assert_eq!(
        reason_of(&status).as_deref(),
        Some("BOOKING_NOT_PENDING"),
        "{status:?}"
    );
    // The same key as the other instance used answers what it did.
    let retried = first
        .confirm_booking(&alice, paid_id, "tok_visa".into(), "key-elsewhere".into())
        .await
        .expect("a retry with the paying key");
    assert_eq!(retried.state.as_str(), "confirmed");
    assert_eq!(retried.payment_id, elsewhere.payment_id);

    // Cancelled through the other instance, then paid for here.
    let (_, cancelled) = world.booking_for(&alice, &[117]).await;
    let cancelled_id = booking_id(&cancelled);
    second
        .cancel_booking(&alice, cancelled_id)
        .await
        .expect("cancelled through the other instance");
    let late = first
        .confirm_booking(&alice, cancelled_id, "tok_visa".into(), "key-late".into())
        .await
        .expect_err("a cancelled booking is not paid for");
    let status = tonic::Status::from(late);
    assert_eq!(
        reason_of(&status).as_deref(),
        Some("BOOKING_NOT_PENDING"),
        "{status:?}"
    );

    assert_eq!(
        world.provider_count(ProviderStatus::Captured),
        1,
        "one charge"
    );
    assert_eq!(
        world.provider_count(ProviderStatus::Authorized),
        0,
        "every authorization that did not pay was voided"
    );
    world.assert_money_and_seats_agree().await;
}

/// Many buyers paying at the same moment: their claims and finishes are
/// written together (group commit), yet each buyer gets their own answer:
/// paid, declined, or refused for reusing their key on a second booking.
#[tokio::test]
async fn many_buyers_confirming_at_once_each_get_their_own_answer() {
    let world = CheckoutWorld::new().await;
    let mut buyers = Vec::new();
    for index in 0..40u32 {
        let buyer = customer();
        let (_, booking) = world.booking_for(&buyer, &[60 + index]).await;
        buyers.push((index, buyer, booking.name));
    }
    // One more buyer with two bookings, paying both with one key at once.
    let carol = customer();
    let (_, first) = world.booking_for(&carol, &[110]).await;
    let (_, second) = world.booking_for(&carol, &[111]).await;
    let mut calls = tokio::task::JoinSet::new();
    for (index, buyer, name) in buyers {
        let mut client = world.client.clone();
        let token = if index % 5 == 0 {
            "tok_chargeDeclinedInsufficientFunds"
        } else {
            "tok_visa"
        };
        calls.spawn(async move {
            let answer = confirm(&mut client, &buyer, &name, token, "pay").await;
            (Some(index), answer)
        });
    }
    for name in [first.name.clone(), second.name.clone()] {
        let mut client = world.client.clone();
        let carol = carol.clone();
        calls.spawn(async move {
            (
                None,
                confirm(&mut client, &carol, &name, "tok_visa", "carol-key").await,
            )
        });
    }
    let (mut paid, mut declined, mut carol_paid, mut carol_refused) = (0, 0, 0, 0);
    while let Some(joined) = calls.join_next().await {
        match joined.expect("task") {
            (Some(index), answer) if index % 5 == 0 => {
                assert_reason(answer, Code::FailedPrecondition, "PAYMENT_DECLINED");
                declined += 1;
            }
            (Some(index), answer) => {
                let booking = answer.unwrap_or_else(|status| panic!("buyer {index}: {status:?}"));
                assert_eq!(state(&booking), pb::BookingState::Confirmed);
                assert_eq!(booking.tickets.len(), 1);
                paid += 1;
            }
            (None, Ok(booking)) => {
                assert_eq!(state(&booking), pb::BookingState::Confirmed);
                carol_paid += 1;
            }
            (None, Err(status)) => {
                assert_eq!(
                    reason_of(&status).as_deref(),
                    Some("IDEMPOTENCY_KEY_REUSED"),
                    "{status:?}"
                );
                carol_refused += 1;
            }
        }
    }
    assert_eq!((paid, declined), (32, 8));
    assert_eq!(
        (carol_paid, carol_refused),
        (1, 1),
        "one key pays one booking"
    );
    // Exactly the paying buyers' seats are sold, plus one of Carol's two.
    let sold = world.sold_seats().await;
    let buyers_seats: Vec<u32> = sold.iter().copied().filter(|seat| *seat < 100).collect();
    let expected: Vec<u32> = (0..40)
        .filter(|index| index % 5 != 0)
        .map(|index| 60 + index)
        .collect();
    assert_eq!(buyers_seats, expected);
    let carols: Vec<u32> = sold.iter().copied().filter(|seat| *seat >= 100).collect();
    assert!(carols == [110] || carols == [111], "{carols:?}");
    world.assert_money_and_seats_agree().await;
}

#[tokio::test]
async fn nobody_else_can_see_pay_or_cancel_a_booking() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let (alice, bob) = (customer(), customer());
    let (hold, booking) = world.booking_for(&alice, &[8]).await;

    // Bob cannot book Alice's hold, nor see, pay or cancel her booking.
    assert_reason(
        create(&mut client, &bob, &hold.name).await,
        Code::NotFound,
        "HOLD_NOT_FOUND",
    );
    assert_reason(
        get(&mut client, &bob, &booking.name).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_reason(
        confirm(&mut client, &bob, &booking.name, "tok_visa", "bob").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_reason(
        cancel(&mut client, &bob, &booking.name).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert!(list(&mut client, &bob, 10, "").await.bookings.is_empty());
    assert!(
        world.simulated().payments().is_empty(),
        "bob charged nothing"
    );

    let paid = confirm(&mut client, &alice, &booking.name, "tok_visa", "alice")
        .await
        .unwrap();
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    assert_reason(
        get(&mut client, &bob, &booking.name).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_reason(
        cancel(&mut client, &bob, &booking.name).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_eq!(
        state(&get(&mut client, &alice, &booking.name).await.unwrap()),
        pb::BookingState::Confirmed
    );

    // Without an identity nothing works.
    let anonymous = Caller::anonymous();
    assert_reason(
        get(&mut client, &anonymous, &booking.name).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert_reason(
        create(&mut client, &anonymous, &hold.name).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let listed = client
        .list_bookings(pb::ListBookingsRequest::default())
        .await
        .expect_err("anonymous listing");
    assert_eq!(listed.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn bookings_list_newest_first_in_pages() {
    let world = CheckoutWorld::with(
        &[(boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10")],
        |_| {},
    )
    .await;
    let mut client = world.client.clone();
    let alice = customer();
    let mut names = Vec::new();
    for seat in 0..5 {
        names.push(world.booking_for(&alice, &[seat]).await.1.name);
    }
    names.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(&mut client, &alice, 2, &token).await;
        assert!(page.bookings.len() <= 2);
        seen.extend(page.bookings.into_iter().map(|booking| booking.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, names);
    let bad = client
        .list_bookings(as_caller(
            &alice,
            pb::ListBookingsRequest {
                page_size: 1,
                page_token: "garbage!".into(),
            },
        ))
        .await
        .expect_err("a forged page token");
    assert_eq!(field_of(&bad).as_deref(), Some("page_token"));
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[9]).await;
    let field = |result: Result<pb::Booking, Status>| {
        let status = result.expect_err("bad input");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        field_of(&status).unwrap_or_default()
    };
    assert_eq!(field(create(&mut client, &alice, "holds/x").await), "hold");
    assert_eq!(
        field(get(&mut client, &alice, "bookings/nope").await),
        "name"
    );
    assert_eq!(
        field(confirm(&mut client, &alice, &booking.name, "tok_visa", "").await),
        "idempotency_key"
    );
    assert_eq!(
        field(confirm(&mut client, &alice, &booking.name, "", "k").await),
        "payment_method.token"
    );
    assert_eq!(
        field(
            confirm(
                &mut client,
                &alice,
                &booking.name,
                "tok_visa",
                &"k".repeat(300)
            )
            .await
        ),
        "idempotency_key"
    );
    let unknown = format!("bookings/{}", Uuid::new_v4());
    assert_reason(
        get(&mut client, &alice, &unknown).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert!(world.simulated().payments().is_empty());
    assert_eq!(
        state(&get(&mut client, &alice, &booking.name).await.unwrap()),
        pb::BookingState::Pending
    );
}

#[tokio::test]
async fn cancelling_inside_the_refund_window_is_refused() {
    // The test event starts in ten days; a 20-day window covers it.
    let world = CheckoutWorld::with(&[], |config| {
        config.refund_cutoff = Duration::from_secs(20 * 24 * 3600)
    })
    .await;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[6]).await;
    confirm(&mut client, &alice, &booking.name, "tok_visa", "k")
        .await
        .unwrap();
    assert_reason(
        cancel(&mut client, &alice, &booking.name).await,
        Code::FailedPrecondition,
        "REFUND_WINDOW_CLOSED",
    );
    assert_eq!(
        state(&get(&mut client, &alice, &booking.name).await.unwrap()),
        pb::BookingState::Confirmed
    );
    assert_eq!(world.sold_seats().await, vec![6]);
    world.assert_money_and_seats_agree().await;
}

#[tokio::test]
async fn cancelling_a_pending_booking_frees_its_seats_at_once() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[15, 16]).await;
    let cancelled = cancel(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(state(&cancelled), pb::BookingState::Cancelled);
    assert!(world.held_seats().await.is_empty());
    assert_reason(
        confirm(&mut client, &alice, &booking.name, "tok_visa", "late").await,
        Code::FailedPrecondition,
        "BOOKING_NOT_PENDING",
    );
    assert!(world.simulated().payments().is_empty());
}
