//! A buyer sent to their card's 3-D Secure page or to PayPal's approval
//! page keeps their seats while they are there: ConfirmBooking's "action
//! required" answer extends the booking's hold (inventory's ExtendHold,
//! checkout's call only) within a bound past its original lifetime, and the
//! booking's expiry follows. Approved within the bound, the booking
//! confirms after its original hold would have run out; past the bound it
//! does not, and the seats go back on sale.

use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_checkout::payment::PaymentProvider as _;
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_inventory::config::{ENV_HOLD_MAX_EXTENSION, ENV_HOLD_TTL};
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::reason_of;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::checkout_gateway::PaysimProcess;
use crate::edge_world::{connect, login, with_token};
use crate::harness::{as_caller, eventually};
use crate::system_world::{SystemWorld, standing_event_on_sale};

type Checkout = CheckoutServiceClient<Channel>;
type Inventory = InventoryServiceClient<Channel>;

const THREE_D_SECURE_CARD: &str = "tok_threeDSecure2Required";

async fn registered_buyer(edge: &Channel) -> String {
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let email = format!("extend-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: "Buyer".into(),
        })
        .await
        .expect("registering");
    login(&mut accounts, &email, "correct horse battery").await
}

fn hold_request(event_id: &str) -> inventory_pb::HoldSeatsRequest {
    inventory_pb::HoldSeatsRequest {
        event_id: event_id.to_owned(),
        selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
            inventory_pb::BestAvailable {
                quantity: 1,
                ..Default::default()
            },
        )),
        admission_token: String::new(),
    }
}

/// One place held by the token's user through the edge, and a booking of it.
async fn hold_and_book(
    edge: &Channel,
    token: &str,
    event_id: &str,
) -> (inventory_pb::Hold, pb::Booking) {
    let hold = Inventory::new(edge.clone())
        .hold_seats(with_token(token, hold_request(event_id)))
        .await
        .expect("holding a place")
        .into_inner();
    let booking = Checkout::new(edge.clone())
        .create_booking(with_token(
            token,
            pb::CreateBookingRequest {
                hold: hold.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("booking it")
        .into_inner();
    (hold, booking)
}

fn payment(kind: pb::PaymentMethodType) -> pb::PaymentMethod {
    match kind {
        pb::PaymentMethodType::Paypal => pb::PaymentMethod {
            token: String::new(),
            r#type: kind as i32,
        },
        _ => pb::PaymentMethod {
            token: THREE_D_SECURE_CARD.into(),
            ..Default::default()
        },
    }
}

async fn confirm(
    edge: &Channel,
    token: &str,
    booking: &pb::Booking,
    kind: pb::PaymentMethodType,
) -> Result<pb::Booking, tonic::Status> {
    Checkout::new(edge.clone())
        .confirm_booking(with_token(
            token,
            pb::ConfirmBookingRequest {
                name: booking.name.clone(),
                payment_method: Some(payment(kind)),
                idempotency_key: "pay".into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The buyer's browser at the provider's page (3-D Secure or PayPal's
/// approval): it loads, then the buyer approves. Whether the provider
/// still took the answer.
async fn approve_at_provider(url: &str) -> bool {
    let http = reqwest::Client::new();
    let page = http.get(url).send().await.expect("loading the page");
    if !page.status().is_success() {
        return false;
    }
    boxoffice_paysim::answer_buyer_page(&http, url, "approve")
        .await
        .expect("answering the page")
        .status()
        .is_success()
}

fn millis(time: &Option<prost_types::Timestamp>) -> i64 {
    let time = time.as_ref().expect("a time");
    time.seconds * 1_000 + i64::from(time.nanos) / 1_000_000
}

fn bit(bitmap: &[u8], seat: u32) -> bool {
    bitmap
        .get(seat as usize / 8)
        .is_some_and(|byte| byte & (0x80 >> (seat % 8)) != 0)
}

async fn availability(edge: &Channel, event_id: &str) -> inventory_pb::Availability {
    Inventory::new(edge.clone())
        .get_availability(inventory_pb::GetAvailabilityRequest {
            event_id: event_id.to_owned(),
        })
        .await
        .expect("reading availability")
        .into_inner()
}

/// Waits until `seat` is neither held nor sold (its hold ran out and the
/// sweeper freed it).
async fn until_free(edge: &Channel, event_id: &str, seat: u32, what: &str) {
    eventually(Duration::from_secs(30), what, || async move {
        let now = availability(edge, event_id).await;
        (!bit(&now.held, seat) && !bit(&now.sold, seat)).then_some(())
    })
    .await;
}

/// Holds of 4 s, extended by at most 6 s more: a buyer approving a 3-D
/// Secure payment (and another a PayPal one) after the original 4 s still
/// gets their booking; one approving after the 10 s does not, and their
/// place is on sale again. A buyer cannot extend a hold themselves.
#[tokio::test]
async fn a_payment_approved_after_the_hold_lifetime_but_within_the_extension_confirms() {
    let paysim = PaysimProcess::start().await;
    let world = SystemWorld::start_with_inventory(
        "extend",
        &[
            ("BOXOFFICE_PAYMENTS_URL", paysim.url.as_str()),
            ("BOXOFFICE_PAYPAL_URL", paysim.url.as_str()),
        ],
        &[(ENV_HOLD_TTL, "4"), (ENV_HOLD_MAX_EXTENSION, "6")],
    )
    .await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = standing_event_on_sale(&edge, &admin, "Hare & Hounds", "Late Approvals", 10).await;
    let alice = registered_buyer(&edge).await;
    let bob = registered_buyer(&edge).await;
    let carol = registered_buyer(&edge).await;
    let dave = registered_buyer(&edge).await;

    // Bob holds and walks away: his place coming back marks the end of
    // the original lifetime. Alice (3-D Secure), Dave (PayPal) and Carol
    // (3-D Secure) are sent to their provider.
    let (bob_hold, _) = hold_and_book(&edge, &bob, &event.id).await;
    let (alice_hold, alice_booking) = hold_and_book(&edge, &alice, &event.id).await;
    let (dave_hold, dave_booking) = hold_and_book(&edge, &dave, &event.id).await;
    let (carol_hold, carol_booking) = hold_and_book(&edge, &carol, &event.id).await;
    let card = pb::PaymentMethodType::Unspecified;
    let paypal = pb::PaymentMethodType::Paypal;
    let mut waiting = Vec::new();
    for (token, hold, booking, kind) in [
        (&alice, &alice_hold, &alice_booking, card),
        (&dave, &dave_hold, &dave_booking, paypal),
        (&carol, &carol_hold, &carol_booking, card),
    ] {
        let answer = confirm(&edge, token, booking, kind)
            .await
            .expect("an answer that sends the buyer to the provider");
        assert_eq!(answer.state, pb::BookingState::Pending as i32);
        let action = answer.payment_action.clone().expect("where the buyer goes");
        assert!(action.url.starts_with(&paysim.url), "{}", action.url);
        // The booking the buyer sees now expires later than its hold
        // would have, and no later than the bound allows.
        let (original, extended) = (millis(&hold.expire_time), millis(&answer.expire_time));
        assert!(extended > original, "the booking's expiry moved later");
        assert!(extended <= original + 6_000, "within the bound");
        assert!(millis(&booking.expire_time) <= original);
        waiting.push((action.url, extended));
    }

    let seat = |hold: &inventory_pb::Hold| hold.seats[0].seat_index;
    until_free(&edge, &event.id, seat(&bob_hold), "Bob's hold ran out").await;
    let now = availability(&edge, &event.id).await;
    for hold in [&alice_hold, &dave_hold, &carol_hold] {
        assert!(
            bit(&now.held, seat(hold)),
            "an extended hold keeps its place"
        );
    }

    // Alice and Dave approve now, after the original lifetime.
    for (token, booking, kind, (url, _)) in [
        (&alice, &alice_booking, card, &waiting[0]),
        (&dave, &dave_booking, paypal, &waiting[1]),
    ] {
        assert!(
            approve_at_provider(url).await,
            "the provider took the approval"
        );
        let paid = confirm(&edge, token, booking, kind)
            .await
            .expect("confirming within the extension");
        assert_eq!(paid.state, pb::BookingState::Confirmed as i32);
    }
    let now = availability(&edge, &event.id).await;
    assert!(bit(&now.sold, seat(&alice_hold)) && bit(&now.sold, seat(&dave_hold)));

    // Carol is too late: her extended hold runs out, her place goes back
    // on sale, and approving then buys nothing.
    until_free(
        &edge,
        &event.id,
        seat(&carol_hold),
        "Carol's extended hold ran out",
    )
    .await;
    let (url, extended) = &waiting[2];
    assert!(chrono::Utc::now().timestamp_millis() >= *extended);
    let _ = approve_at_provider(url).await;
    let late = confirm(&edge, &carol, &carol_booking, card)
        .await
        .expect_err("too late to confirm");
    assert!(
        matches!(late.code(), Code::Aborted | Code::FailedPrecondition),
        "{late:?}"
    );
    assert_eq!(
        reason_of(&late).as_deref(),
        Some("HOLD_EXPIRED"),
        "{late:?}"
    );
    let now = availability(&edge, &event.id).await;
    assert!(
        !bit(&now.sold, seat(&carol_hold)),
        "nothing was sold to Carol"
    );
    let carol_now = Checkout::new(edge.clone())
        .get_booking(with_token(
            &carol,
            pb::GetBookingRequest {
                name: carol_booking.name.clone(),
            },
        ))
        .await
        .expect("reading Carol's booking")
        .into_inner();
    assert_ne!(carol_now.state, pb::BookingState::Confirmed as i32);
    let charged = paysim
        .client()
        .search(carol_booking.name.trim_start_matches("bookings/"))
        .await
        .expect("searching the gateway");
    assert!(
        charged
            .iter()
            .all(|payment| payment.status != boxoffice_checkout::payment::ProviderStatus::Captured),
        "Carol was not charged: {charged:?}"
    );

    // A buyer cannot extend a hold: the edge does not route ExtendHold.
    let (eve_hold, _) = hold_and_book(&edge, &bob, &event.id).await;
    let refused = Inventory::new(edge.clone())
        .extend_hold(with_token(
            &bob,
            inventory_pb::ExtendHoldRequest {
                name: eve_hold.name.clone(),
                user_id: eve_hold.user_id.clone(),
                extension: None,
            },
        ))
        .await
        .expect_err("a customer calling ExtendHold");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused:?}");
    world.stop().await;
}

async fn extend(
    inventory: &mut Inventory,
    caller: &Caller,
    hold: &inventory_pb::Hold,
    extension: Option<prost_types::Duration>,
) -> Result<inventory_pb::Hold, tonic::Status> {
    inventory
        .extend_hold(as_caller(
            caller,
            inventory_pb::ExtendHoldRequest {
                name: hold.name.clone(),
                user_id: hold.user_id.clone(),
                extension,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn refused_with(result: Result<inventory_pb::Hold, tonic::Status>, code: Code, reason: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "{status:?}");
}

/// ExtendHold as checkout calls it, behind the edge: bounded however often
/// it is asked, the owner's live holds only, the service role only, and
/// bad input refused without changing anything.
#[tokio::test]
async fn extend_hold_is_bounded_and_for_checkout_only() {
    let world = SystemWorld::start_with_inventory(
        "extendrpc",
        &[],
        &[(ENV_HOLD_TTL, "60"), (ENV_HOLD_MAX_EXTENSION, "30")],
    )
    .await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = standing_event_on_sale(&edge, &admin, "Cluny", "Bounded Holds", 10).await;
    let mut inventory = Inventory::new(connect(world.system.internal_addr).await);
    let (ann, ben) = (Uuid::new_v4(), Uuid::new_v4());
    let customer = Caller::user(ann, &[]);
    let checkout = Caller::user(ann, &[Caller::SERVICE]);
    let hold = inventory
        .hold_seats(as_caller(&customer, hold_request(&event.id)))
        .await
        .expect("a hold")
        .into_inner();
    let original = millis(&hold.expire_time);

    // The customer themself, straight behind the edge: refused.
    refused_with(
        extend(&mut inventory, &customer, &hold, None).await,
        Code::PermissionDenied,
        "SERVICE_ROLE_REQUIRED",
    );
    // Bad input changes nothing.
    let status = extend(
        &mut inventory,
        &checkout,
        &hold,
        Some(prost_types::Duration {
            seconds: 7_200,
            nanos: 0,
        }),
    )
    .await
    .expect_err("an extension over an hour");
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut bens = hold.clone();
    bens.user_id = ben.to_string();
    refused_with(
        extend(&mut inventory, &checkout, &bens, None).await,
        Code::NotFound,
        "HOLD_NOT_FOUND",
    );
    let unchanged = inventory
        .get_hold(as_caller(
            &customer,
            inventory_pb::GetHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .expect("reading the hold")
        .into_inner();
    assert_eq!(millis(&unchanged.expire_time), original);

    // Asked for less than it has left, it keeps its expiry; asked for an
    // hour, it gets the bound; asked again, it stays there.
    let seconds = |seconds: i64| Some(prost_types::Duration { seconds, nanos: 0 });
    let less = extend(&mut inventory, &checkout, &hold, seconds(10))
        .await
        .unwrap();
    assert_eq!(millis(&less.expire_time), original, "never earlier");
    let hour = extend(&mut inventory, &checkout, &hold, seconds(3_600))
        .await
        .unwrap();
    assert_eq!(millis(&hour.expire_time), original + 30_000);
    let again = extend(&mut inventory, &checkout, &hold, None)
        .await
        .unwrap();
    assert_eq!(millis(&again.expire_time), original + 30_000);
    let shown = inventory
        .get_hold(as_caller(
            &customer,
            inventory_pb::GetHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .expect("reading the hold")
        .into_inner();
    assert_eq!(millis(&shown.expire_time), original + 30_000);

    // A released hold is not extended.
    inventory
        .release_hold(as_caller(
            &customer,
            inventory_pb::ReleaseHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .expect("releasing");
    refused_with(
        extend(&mut inventory, &checkout, &hold, None).await,
        Code::FailedPrecondition,
        "HOLD_RELEASED",
    );
    world.stop().await;
}
