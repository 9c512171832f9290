//! The waitlist of a sold-out event, through the edge of a whole system
//! with a real SMTP server: joining is for sold-out events only and checks
//! its input; a cancelled booking's seat is offered to the first in line,
//! with a mail, and nobody else can hold it while the offered user books
//! and pays it; the race (two offers outstanding, a seat released twice
//! over) sells each seat once in line order; an offer not taken in time
//! passes to the next; entries and offers are their owners' alone; an
//! offer on a dynamically priced tier locks, and is charged, the tier's
//! current price as any hold would; a waitlist for one price tier is joined
//! when that tier is sold out and offered only its seats.

use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::inventory::v1::waitlist_service_client::WaitlistServiceClient;
use boxoffice_notify::NotifyConfig;
use boxoffice_runtime::status::reason_of;
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::checkout::booking_id as booking_id_of;
use crate::edge_world::{login, with_token};
use crate::harness::eventually;
use crate::notify::{SmtpServer, buy, register, wait_for_mails};
use crate::pricing::{rule, set_rule};
use crate::system_world::{SystemWorld, standing_event_on_sale};

use inventory_pb::WaitlistEntryState as State;

/// A whole system whose waitlist offers last `offer_secs`, passing every
/// 50 ms, mailing through `smtp`.
async fn world(smtp: &SmtpServer, offer_secs: &str) -> SystemWorld {
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    SystemWorld::start_with_all(
        "waitlist",
        &[],
        Some(notify),
        boxoffice::WebhooksConfig::development(),
        &[
            ("BOXOFFICE_WAITLIST_OFFER_SECS", offer_secs),
            ("BOXOFFICE_WAITLIST_POLL_MS", "50"),
            ("BOXOFFICE_HOLD_COMMIT_MARGIN_MS", "500"),
        ],
    )
    .await
}

async fn join(
    edge: &Channel,
    token: &str,
    event_id: &str,
    quantity: u32,
) -> Result<inventory_pb::WaitlistEntry, Status> {
    join_for(edge, token, event_id, quantity, "").await
}

/// Joins for `quantity` places of the tier `price_tier_id` ("": any).
async fn join_for(
    edge: &Channel,
    token: &str,
    event_id: &str,
    quantity: u32,
    price_tier_id: &str,
) -> Result<inventory_pb::WaitlistEntry, Status> {
    WaitlistServiceClient::new(edge.clone())
        .join_waitlist(with_token(
            token,
            inventory_pb::JoinWaitlistRequest {
                event_id: event_id.to_owned(),
                quantity,
                price_tier_id: price_tier_id.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn entry(
    edge: &Channel,
    token: &str,
    event_id: &str,
) -> Result<inventory_pb::WaitlistEntry, Status> {
    WaitlistServiceClient::new(edge.clone())
        .get_waitlist_entry(with_token(
            token,
            inventory_pb::GetWaitlistEntryRequest {
                event_id: event_id.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until the caller's entry is in `state`.
async fn entry_in_state(
    edge: &Channel,
    token: &str,
    event_id: &str,
    state: State,
) -> inventory_pb::WaitlistEntry {
    eventually(
        Duration::from_secs(30),
        "the waitlist entry's state",
        || {
            let (edge, token, event_id) = (edge.clone(), token.to_owned(), event_id.to_owned());
            async move {
                entry(&edge, &token, &event_id)
                    .await
                    .ok()
                    .filter(|entry| entry.state == state as i32)
            }
        },
    )
    .await
}

async fn hold_best(
    edge: &Channel,
    token: &str,
    event_id: &str,
    quantity: u32,
) -> Result<inventory_pb::Hold, Status> {
    InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity,
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn hold_seats(
    edge: &Channel,
    token: &str,
    event_id: &str,
    seats: Vec<u32>,
) -> Result<inventory_pb::Hold, Status> {
    InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(inventory_pb::hold_seats_request::Selection::Seats(
                    inventory_pb::SeatSelection {
                        seat_indexes: seats,
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Books and pays `hold` as its owner, through the edge.
async fn book_and_pay(
    edge: &Channel,
    token: &str,
    hold: &str,
) -> Result<checkout_pb::Booking, Status> {
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let booking = checkout
        .create_booking(with_token(
            token,
            checkout_pb::CreateBookingRequest {
                hold: hold.to_owned(),
                idempotency_key: String::new(),
            },
        ))
        .await?
        .into_inner();
    checkout
        .confirm_booking(with_token(
            token,
            checkout_pb::ConfirmBookingRequest {
                name: booking.name,
                payment_method: Some(checkout_pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn cancel(edge: &Channel, token: &str, booking: &str) -> Result<(), Status> {
    CheckoutServiceClient::new(edge.clone())
        .cancel_booking(with_token(
            token,
            checkout_pb::CancelBookingRequest {
                name: booking.to_owned(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .map(drop)
}

/// (seat, booking) of every sold ticket of the event, from PostgreSQL.
async fn sold(world: &SystemWorld, event_id: &str) -> Vec<(i32, Uuid)> {
    let event_id = Uuid::parse_str(event_id).expect("an event id");
    world
        .db
        .pool
        .get()
        .await
        .expect("a connection")
        .query(
            "SELECT seat_index, booking_id FROM inventory.tickets
             WHERE event_id = $1 AND status = 'sold' ORDER BY seat_index",
            &[&event_id],
        )
        .await
        .expect("reading tickets")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

/// Someone outside the line is refused every way of holding seats that
/// are offered: sold out at the edge, or unavailable at inventory.
fn assert_refused_hold(result: Result<inventory_pb::Hold, Status>) {
    let status = result.expect_err("nobody outside the waitlist holds an offered seat");
    let reason = reason_of(&status).unwrap_or_default();
    assert!(
        ["SEAT_UNAVAILABLE", "NO_SEATS_MATCH", "EVENT_SOLD_OUT"].contains(&reason.as_str()),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_returned_seat_is_offered_to_the_first_in_line_who_alone_can_buy_it() {
    let smtp = SmtpServer::start().await;
    let world = world(&smtp, "600").await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Waitlist Hall", "Full <House>", 2).await;
    let (_, first_buyer) = register(&mut accounts, "FirstBuyer").await;
    let (_, second_buyer) = register(&mut accounts, "SecondBuyer").await;
    let (ada_email, ada) = register(&mut accounts, "Ada").await;
    let (bob_email, bob) = register(&mut accounts, "Bob").await;
    let (_, outsider) = register(&mut accounts, "Outsider").await;

    // Bad input changes nothing; seats still free: hold them instead.
    let zero = join(&edge, &ada, &event.id, 0).await.unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument, "{zero:?}");
    let many = join(&edge, &ada, &event.id, 11).await.unwrap_err();
    assert_eq!(many.code(), Code::InvalidArgument, "{many:?}");
    let unknown = join(&edge, &ada, &Uuid::new_v4().to_string(), 1)
        .await
        .unwrap_err();
    assert_reason(&unknown, Code::NotFound, "EVENT_NOT_FOUND");
    let not_yet = join(&edge, &ada, &event.id, 1).await.unwrap_err();
    assert_reason(&not_yet, Code::FailedPrecondition, "EVENT_NOT_SOLD_OUT");
    assert_reason(
        &entry(&edge, &ada, &event.id).await.unwrap_err(),
        Code::NotFound,
        "WAITLIST_ENTRY_NOT_FOUND",
    );

    let first = buy(&edge, &first_buyer, &event.id, 1).await;
    buy(&edge, &second_buyer, &event.id, 1).await;

    let ada_entry = join(&edge, &ada, &event.id, 1).await.expect("Ada joins");
    assert_eq!(ada_entry.state, State::Waiting as i32);
    assert_eq!(ada_entry.position, 1);
    let bob_entry = join(&edge, &bob, &event.id, 2).await.expect("Bob joins");
    assert_eq!(bob_entry.position, 2);
    let again = join(&edge, &ada, &event.id, 2)
        .await
        .expect("joining again");
    assert_eq!(
        (again.position, again.quantity),
        (1, 1),
        "one entry per user: joining again keeps the place"
    );

    // Lists: a customer sees only their own; the event's line is admins'.
    let mine = WaitlistServiceClient::new(edge.clone())
        .list_my_waitlist_entries(with_token(
            &bob,
            inventory_pb::ListMyWaitlistEntriesRequest {},
        ))
        .await
        .expect("Bob's entries")
        .into_inner();
    assert_eq!(mine.entries.len(), 1);
    assert_eq!(mine.entries[0].user_id, bob_entry.user_id);
    let line_request = || inventory_pb::ListWaitlistRequest {
        event_id: event.id.clone(),
    };
    let denied = WaitlistServiceClient::new(edge.clone())
        .list_waitlist(with_token(&bob, line_request()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let line = WaitlistServiceClient::new(edge.clone())
        .list_waitlist(with_token(&admin, line_request()))
        .await
        .expect("the admin's list")
        .into_inner();
    let users: Vec<&str> = line.entries.iter().map(|e| e.user_id.as_str()).collect();
    assert_eq!(
        users,
        [ada_entry.user_id.as_str(), bob_entry.user_id.as_str()]
    );

    // Someone not in line can neither see nor leave an entry.
    assert_reason(
        &entry(&edge, &outsider, &event.id).await.unwrap_err(),
        Code::NotFound,
        "WAITLIST_ENTRY_NOT_FOUND",
    );
    let left = WaitlistServiceClient::new(edge.clone())
        .leave_waitlist(with_token(
            &outsider,
            inventory_pb::LeaveWaitlistRequest {
                event_id: event.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(&left, Code::NotFound, "WAITLIST_ENTRY_NOT_FOUND");

    // A cancellation brings one seat back: it goes to Ada, first in line.
    cancel(&edge, &first_buyer, &first.name)
        .await
        .expect("cancelling");
    let offered = entry_in_state(&edge, &ada, &event.id, State::Offered).await;
    let offer = offered.offer.expect("an open offer");
    assert_eq!(offer.seat_indexes.len(), 1);
    assert!(offer.expire_time.is_some());
    let bob_now = entry(&edge, &bob, &event.id).await.expect("Bob's entry");
    assert_eq!(bob_now.state, State::Waiting as i32, "one seat, one offer");

    let mails = wait_for_mails(&smtp, &ada_email, 1).await;
    let mail = mails
        .iter()
        .find(|mail| mail["subject"] == "Seats for you: Full <House>")
        .expect("the offer's mail");
    let text = mail["text"].as_str().expect("a text body");
    assert!(
        text.contains(&offer.hold),
        "the mail names the hold: {text}"
    );
    assert!(text.contains("1 seat(s)"), "{text}");
    assert!(
        mail["html"]
            .as_str()
            .expect("an HTML body")
            .contains("Full &lt;House&gt;")
    );
    assert!(smtp.mails_to(&bob_email).is_empty(), "Bob has no offer yet");

    // Nobody else holds or books the offered seat.
    assert_refused_hold(hold_best(&edge, &outsider, &event.id, 1).await);
    assert_refused_hold(hold_seats(&edge, &outsider, &event.id, offer.seat_indexes.clone()).await);
    let stolen = book_and_pay(&edge, &outsider, &offer.hold)
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), Code::NotFound, "{stolen:?}");

    // Ada books and pays it; her entry is served, Bob still waits.
    let booking = book_and_pay(&edge, &ada, &offer.hold)
        .await
        .expect("Ada buys her offer");
    assert_eq!(booking.state, checkout_pb::BookingState::Confirmed as i32);
    entry_in_state(&edge, &ada, &event.id, State::Fulfilled).await;
    let tickets = sold(&world, &event.id).await;
    assert_eq!(tickets.len(), 2);
    assert!(tickets.iter().any(|(seat, booking_id)| {
        *seat as u32 == offer.seat_indexes[0] && *booking_id == booking_id_of(&booking)
    }));
    let bob_entry = entry(&edge, &bob, &event.id).await.expect("Bob's entry");
    assert_eq!(
        (bob_entry.state, bob_entry.position),
        (State::Waiting as i32, 1)
    );

    // Bob leaves: out of line.
    let left = WaitlistServiceClient::new(edge.clone())
        .leave_waitlist(with_token(
            &bob,
            inventory_pb::LeaveWaitlistRequest {
                event_id: event.id.clone(),
            },
        ))
        .await
        .expect("leaving")
        .into_inner();
    assert_eq!((left.state, left.position), (State::Left as i32, 0));
    world.stop().await;
}

#[tokio::test]
async fn waitlist_race_two_offers_and_a_seat_released_twice_over_sell_each_seat_once_in_order() {
    let smtp = SmtpServer::start().await;
    let world = world(&smtp, "600").await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Race Hall", "Two Seats", 2).await;
    let (_, buyer) = register(&mut accounts, "Buyer").await;
    let (_, holder) = register(&mut accounts, "Holder").await;
    let mut line = Vec::new();
    for name in ["First", "Second", "Third"] {
        line.push(register(&mut accounts, name).await.1);
    }

    // Sold out: one seat sold, the other held.
    let booking = buy(&edge, &buyer, &event.id, 1).await;
    let hold = hold_best(&edge, &holder, &event.id, 1)
        .await
        .expect("holding the last seat");
    for token in &line {
        join(&edge, token, &event.id, 1).await.expect("joining");
    }

    // Both seats come back at once, each released twice over: the booking
    // cancelled twice and the hold released twice, all concurrently.
    let inventory = InventoryServiceClient::new(edge.clone());
    let release = || {
        let mut inventory = inventory.clone();
        let (holder, name) = (holder.clone(), hold.name.clone());
        async move {
            inventory
                .release_hold(with_token(
                    &holder,
                    inventory_pb::ReleaseHoldRequest { name },
                ))
                .await
        }
    };
    let (first_cancel, second_cancel, first_release, second_release) = tokio::join!(
        cancel(&edge, &buyer, &booking.name),
        cancel(&edge, &buyer, &booking.name),
        release(),
        release(),
    );
    assert!(first_cancel.is_ok() || second_cancel.is_ok());
    assert!(first_release.is_ok() || second_release.is_ok());

    // Two offers outstanding, to the first two in line, on different seats.
    let first = entry_in_state(&edge, &line[0], &event.id, State::Offered).await;
    let second = entry_in_state(&edge, &line[1], &event.id, State::Offered).await;
    let (first_offer, second_offer) = (first.offer.unwrap(), second.offer.unwrap());
    let mut offered: Vec<u32> = first_offer
        .seat_indexes
        .iter()
        .chain(&second_offer.seat_indexes)
        .copied()
        .collect();
    offered.sort_unstable();
    assert_eq!(offered, [0, 1], "each seat offered once");
    let third = entry(&edge, &line[2], &event.id).await.expect("the third");
    assert_eq!(
        third.state,
        State::Waiting as i32,
        "no seat left for the third"
    );
    assert_refused_hold(hold_best(&edge, &buyer, &event.id, 1).await);
    // The holder's old hold stays released: it cannot be booked.
    assert!(
        book_and_pay(&edge, &holder, &hold.name).await.is_err(),
        "a released hold sells nothing"
    );

    // Both buy at once: each seat sold once, to its offered user.
    let (a, b) = tokio::join!(
        book_and_pay(&edge, &line[0], &first_offer.hold),
        book_and_pay(&edge, &line[1], &second_offer.hold),
    );
    let (a, b) = (a.expect("the first buys"), b.expect("the second buys"));
    let tickets = sold(&world, &event.id).await;
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let owner = |seat: u32| {
        tickets
            .iter()
            .find(|(sold, _)| *sold as u32 == seat)
            .map(|(_, booking)| *booking)
    };
    assert_eq!(owner(first_offer.seat_indexes[0]), Some(booking_id_of(&a)));
    assert_eq!(owner(second_offer.seat_indexes[0]), Some(booking_id_of(&b)));
    entry_in_state(&edge, &line[0], &event.id, State::Fulfilled).await;
    entry_in_state(&edge, &line[1], &event.id, State::Fulfilled).await;
    let third = entry(&edge, &line[2], &event.id).await.expect("the third");
    assert_eq!((third.state, third.position), (State::Waiting as i32, 1));
    world.stop().await;
}

#[tokio::test]
async fn an_offer_not_taken_in_time_passes_to_the_next_in_line() {
    let smtp = SmtpServer::start().await;
    let world = world(&smtp, "2").await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Slow Hall", "One Seat", 1).await;
    let (_, buyer) = register(&mut accounts, "Buyer").await;
    let (first_email, first) = register(&mut accounts, "Slow").await;
    let (second_email, second) = register(&mut accounts, "Quick").await;
    let booking = buy(&edge, &buyer, &event.id, 1).await;
    join(&edge, &first, &event.id, 1).await.expect("joining");
    join(&edge, &second, &event.id, 1).await.expect("joining");

    cancel(&edge, &buyer, &booking.name)
        .await
        .expect("cancelling");
    let offered = entry_in_state(&edge, &first, &event.id, State::Offered).await;
    let seat = offered.offer.expect("an offer").seat_indexes;
    wait_for_mails(&smtp, &first_email, 1).await;

    // Two seconds later the offer has run out: out of line, and the seat
    // is the next one's.
    let lapsed = entry_in_state(&edge, &first, &event.id, State::Lapsed).await;
    assert_eq!(lapsed.position, 0);
    assert!(lapsed.offer.is_none());
    let next = entry_in_state(&edge, &second, &event.id, State::Offered).await;
    assert_eq!(next.offer.expect("the next offer").seat_indexes, seat);
    let mails = wait_for_mails(&smtp, &second_email, 1).await;
    assert!(
        mails
            .iter()
            .any(|mail| mail["subject"] == "Seats for you: One Seat")
    );
    world.stop().await;
}

/// Checkout's default fee per ticket.
const FEE: i64 = 150;

#[tokio::test]
async fn an_offer_on_a_dynamically_priced_tier_is_charged_the_current_price_its_hold_shows() {
    let smtp = SmtpServer::start().await;
    let world = world(&smtp, "600").await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Demand Hall", "Rising Night", 2).await;
    let tier = event.price_tiers[0].id.clone();
    // 25.00 GBP, +50% of it for every half of the two places sold.
    set_rule(
        &edge,
        &admin,
        &event.id,
        vec![rule(&tier, 5_000, 5_000, 2_500, 10_000)],
    )
    .await
    .expect("setting the rule");
    let (_, first_buyer) = register(&mut accounts, "First").await;
    let (_, second_buyer) = register(&mut accounts, "Second").await;
    let (_, ada) = register(&mut accounts, "Ada").await;

    let first = buy(&edge, &first_buyer, &event.id, 1).await;
    let second = buy(&edge, &second_buyer, &event.id, 1).await;
    let total = |booking: &checkout_pb::Booking| booking.total.as_ref().map(|m| m.amount_minor);
    assert_eq!(total(&first), Some(2_500 + FEE));
    assert_eq!(
        total(&second),
        Some(3_750 + FEE),
        "the price rose after one sale"
    );
    join(&edge, &ada, &event.id, 1).await.expect("Ada joins");

    // One place comes back: one of two sold, so the current price is 37.50
    // (the base is 25.00, and 50.00 before the cancellation).
    cancel(&edge, &first_buyer, &first.name)
        .await
        .expect("cancelling");
    let offered = entry_in_state(&edge, &ada, &event.id, State::Offered).await;
    let offer = offered.offer.expect("an open offer");
    let hold = InventoryServiceClient::new(edge.clone())
        .get_hold(with_token(
            &ada,
            inventory_pb::GetHoldRequest {
                name: offer.hold.clone(),
            },
        ))
        .await
        .expect("Ada reads her offer's hold")
        .into_inner();
    let amount = |money: &Option<inventory_pb::Money>| money.as_ref().map(|m| m.amount_minor);
    assert_eq!(amount(&hold.total_price), Some(3_750), "{hold:?}");
    assert_eq!(hold.seats.len(), 1);
    assert_eq!(amount(&hold.seats[0].price), Some(3_750));
    assert_eq!(hold.price_locks.len(), 1, "{hold:?}");
    let lock = &hold.price_locks[0];
    assert_eq!(lock.price_tier_id, tier);
    assert_eq!((amount(&lock.price), lock.sold_count), (Some(3_750), 1));

    // Ada pays exactly what her offer shows (plus the fee).
    let booking = book_and_pay(&edge, &ada, &offer.hold)
        .await
        .expect("Ada buys her offer");
    assert_eq!(booking.state, checkout_pb::BookingState::Confirmed as i32);
    assert_eq!(total(&booking), Some(3_750 + FEE));
    entry_in_state(&edge, &ada, &event.id, State::Fulfilled).await;
    world.stop().await;
}

/// An admin's event with two standing areas of one place each, "Stalls"
/// and "Circle", each its own price tier; on sale. Answers the event and
/// the tiers' ids (stalls, circle).
async fn two_tier_event(edge: &Channel, admin: &str) -> (String, String, String) {
    use boxoffice_contracts::catalog::v1 as catalog_pb;
    use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let area = |name: &str| catalog_pb::SectionSpec {
        name: name.into(),
        kind: catalog_pb::SectionKind::GeneralAdmission as i32,
        capacity: 1,
        rows: vec![],
    };
    let venue = catalog
        .create_venue(with_token(
            admin,
            catalog_pb::CreateVenueRequest {
                name: "Two Rooms".into(),
                address: Some(catalog_pb::PostalAddress {
                    street: "2 Call Lane".into(),
                    city: "Leeds".into(),
                    region: String::new(),
                    postal_code: "LS1 6DT".into(),
                    country_code: "GB".into(),
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections: vec![area("Stalls"), area("Circle")],
            },
        ))
        .await
        .expect("creating a venue")
        .into_inner();
    let tier = |name: &str, section: usize| catalog_pb::PriceTier {
        name: name.into(),
        price: Some(catalog_pb::Money {
            currency_code: "GBP".into(),
            amount_minor: 2_500,
        }),
        section_ids: vec![venue.sections[section].id.clone()],
        ..Default::default()
    };
    let event = catalog
        .create_event(with_token(
            admin,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Two Tiers".into(),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(crate::inventory::timestamp(30)),
                    end_time: Some(crate::inventory::timestamp(31)),
                    price_tiers: vec![tier("Stalls", 0), tier("Circle", 1)],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating an event")
        .into_inner();
    catalog
        .publish_event(with_token(
            admin,
            catalog_pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await
        .expect("publishing");
    let inventory = InventoryServiceClient::new(edge.clone());
    crate::harness::eventually(Duration::from_secs(30), "the event on sale", || {
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
    let id_of = |name: &str| {
        event
            .price_tiers
            .iter()
            .find(|tier| tier.name == name)
            .map(|tier| tier.id.clone())
            .expect("the tier")
    };
    (event.id.clone(), id_of("Stalls"), id_of("Circle"))
}

#[tokio::test]
async fn a_waitlist_for_one_tier_is_joined_when_it_is_sold_out_and_offered_only_its_seats() {
    let smtp = SmtpServer::start().await;
    let world = world(&smtp, "600").await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let (event_id, stalls, circle) = two_tier_event(&edge, &admin).await;
    // Seat 0 is the stalls' place, seat 1 the circle's.
    let (_, stalls_buyer) = register(&mut accounts, "StallsBuyer").await;
    let (_, circle_buyer) = register(&mut accounts, "CircleBuyer").await;
    let (_, wants_stalls) = register(&mut accounts, "WantsStalls").await;
    let (_, wants_circle) = register(&mut accounts, "WantsCircle").await;
    let stalls_hold = hold_seats(&edge, &stalls_buyer, &event_id, vec![0])
        .await
        .expect("holding the stalls");
    let stalls_booking = book_and_pay(&edge, &stalls_buyer, &stalls_hold.name)
        .await
        .expect("buying the stalls");

    // The stalls are sold out, the circle is not: the event's waitlist and
    // the circle's refuse, the stalls' takes the user.
    let whole = join(&edge, &wants_circle, &event_id, 1).await.unwrap_err();
    assert_reason(&whole, Code::FailedPrecondition, "EVENT_NOT_SOLD_OUT");
    let free_tier = join_for(&edge, &wants_circle, &event_id, 1, &circle)
        .await
        .unwrap_err();
    assert_reason(&free_tier, Code::FailedPrecondition, "EVENT_NOT_SOLD_OUT");
    let unknown = join_for(
        &edge,
        &wants_stalls,
        &event_id,
        1,
        &Uuid::new_v4().to_string(),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
    let malformed = join_for(&edge, &wants_stalls, &event_id, 1, "stalls")
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    let entry_for_stalls = join_for(&edge, &wants_stalls, &event_id, 1, &stalls)
        .await
        .expect("joining the stalls' waitlist");
    assert_eq!(entry_for_stalls.price_tier_id, stalls);
    assert_eq!(entry_for_stalls.state, State::Waiting as i32);

    // Now the circle sells out too; its waitlist takes the other user.
    let circle_hold = hold_seats(&edge, &circle_buyer, &event_id, vec![1])
        .await
        .expect("holding the circle");
    let circle_booking = book_and_pay(&edge, &circle_buyer, &circle_hold.name)
        .await
        .expect("buying the circle");
    join_for(&edge, &wants_circle, &event_id, 1, &circle)
        .await
        .expect("joining the circle's waitlist");

    // The circle's place comes back: it goes to the circle's waitlist,
    // though the stalls' entry is first in line.
    cancel(&edge, &circle_buyer, &circle_booking.name)
        .await
        .expect("cancelling the circle");
    let offered = entry_in_state(&edge, &wants_circle, &event_id, State::Offered).await;
    assert_eq!(offered.offer.expect("an offer").seat_indexes, [1]);
    let first = entry(&edge, &wants_stalls, &event_id)
        .await
        .expect("the stalls' entry");
    assert_eq!(
        (first.state, first.position),
        (State::Waiting as i32, 1),
        "a circle seat is not offered to the stalls' line"
    );
    // The stalls' place comes back: to the stalls' entry.
    cancel(&edge, &stalls_buyer, &stalls_booking.name)
        .await
        .expect("cancelling the stalls");
    let offered = entry_in_state(&edge, &wants_stalls, &event_id, State::Offered).await;
    assert_eq!(offered.offer.expect("an offer").seat_indexes, [0]);
    world.stop().await;
}
