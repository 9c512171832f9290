//! Commerce through the edge of a whole system: the booking summary names
//! seats as a person reads them and adds up to what is charged; promo codes
//! reprice a pending booking, are refused with a reason a client can act
//! on, come back when a booking ends, and are counted exactly under a
//! thousand buyers applying one at once.

use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_events::Handler as _;
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::reason_of;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{connect, login, with_token};
use crate::harness::{as_caller, eventually};
use crate::inventory::timestamp;
use crate::system_world::SystemWorld;

type Checkout = CheckoutServiceClient<Channel>;

const STALLS_PRICE: i64 = 4_000;
const CIRCLE_PRICE: i64 = 6_000;
/// Checkout's default fee per ticket.
const FEE: i64 = 150;

/// A seated event on sale: "Stalls" (rows A and B of 4 seats, tier
/// "Standard" at 40.00 GBP) and "Circle" (row C of 4, tier "Premium" at
/// 60.00 GBP). Answers the event.
async fn seated_event_on_sale(edge: &Channel, admin: &str) -> catalog_pb::Event {
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let row = |label: &str| catalog_pb::RowSpec {
        label: label.into(),
        seat_count: 4,
        seats: vec![],
    };
    let venue = catalog
        .create_venue(with_token(
            admin,
            catalog_pb::CreateVenueRequest {
                name: "The Old Vic".into(),
                address: Some(catalog_pb::PostalAddress {
                    street: "The Cut".into(),
                    city: "London".into(),
                    region: String::new(),
                    postal_code: "SE1 8NB".into(),
                    country_code: "GB".into(),
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections: vec![
                    catalog_pb::SectionSpec {
                        name: "Stalls".into(),
                        kind: catalog_pb::SectionKind::Seated as i32,
                        capacity: 0,
                        rows: vec![row("A"), row("B")],
                    },
                    catalog_pb::SectionSpec {
                        name: "Circle".into(),
                        kind: catalog_pb::SectionKind::Seated as i32,
                        capacity: 0,
                        rows: vec![row("C")],
                    },
                ],
            },
        ))
        .await
        .expect("creating a seated venue")
        .into_inner();
    let tier = |name: &str, amount_minor: i64, section: usize| catalog_pb::PriceTier {
        name: name.into(),
        price: Some(catalog_pb::Money {
            currency_code: "GBP".into(),
            amount_minor,
        }),
        section_ids: vec![venue.sections[section].id.clone()],
        ..Default::default()
    };
    let event = catalog
        .create_event(with_token(
            admin,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Seated Night".into(),
                    category: catalog_pb::Category::Theater as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(timestamp(30)),
                    end_time: Some(timestamp(31)),
                    price_tiers: vec![
                        tier("Standard", STALLS_PRICE, 0),
                        tier("Premium", CIRCLE_PRICE, 1),
                    ],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating a seated event")
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

async fn customer(edge: &Channel) -> String {
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let email = format!("buyer-{}@example.com", Uuid::new_v4().simple());
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

/// Holds `seats` for the token's user and books them.
async fn book(edge: &Channel, token: &str, event_id: &str, seats: &[u32]) -> pb::Booking {
    let hold = InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(inventory_pb::hold_seats_request::Selection::Seats(
                    inventory_pb::SeatSelection {
                        seat_indexes: seats.to_vec(),
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .expect("holding seats")
        .into_inner();
    CheckoutServiceClient::new(edge.clone())
        .create_booking(with_token(
            token,
            pb::CreateBookingRequest {
                hold: hold.name,
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("creating a booking")
        .into_inner()
}

fn amount(money: &Option<pb::Money>) -> i64 {
    money.as_ref().map_or(0, |money| money.amount_minor)
}

/// The summary's lines add up to its total.
fn assert_adds_up(booking: &pb::Booking) {
    let lines: i64 = booking
        .line_items
        .iter()
        .map(|line| amount(&line.amount))
        .sum();
    assert_eq!(lines, amount(&booking.total), "lines add up to the total");
    assert_eq!(
        amount(&booking.subtotal) + amount(&booking.fees) - amount(&booking.discount),
        amount(&booking.total)
    );
}

fn percent_code(code: &str, event_id: &str, percent_off: u32) -> pb::PromoCode {
    pb::PromoCode {
        code: code.into(),
        event_id: event_id.into(),
        kind: pb::PromoDiscountKind::PercentOff as i32,
        percent_off,
        ..Default::default()
    }
}

async fn create_code(checkout: &mut Checkout, admin: &str, code: pb::PromoCode) -> pb::PromoCode {
    checkout
        .create_promo_code(with_token(
            admin,
            pb::CreatePromoCodeRequest {
                promo_code: Some(code),
            },
        ))
        .await
        .expect("creating a promo code")
        .into_inner()
}

async fn apply(
    checkout: &mut Checkout,
    token: &str,
    booking: &str,
    code: &str,
) -> Result<pb::Booking, tonic::Status> {
    checkout
        .apply_promo_code(with_token(
            token,
            pb::ApplyPromoCodeRequest {
                name: booking.into(),
                code: code.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn refused(result: Result<pb::Booking, tonic::Status>, code: Code, reason: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(reason), "{status:?}");
}

#[tokio::test]
async fn a_summary_names_seats_and_a_promo_code_reprices_what_is_charged_and_comes_back_on_cancel()
{
    let world = SystemWorld::start("commerce", &[]).await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = seated_event_on_sale(&edge, &admin).await;
    let buyer = customer(&edge).await;
    let mut checkout = CheckoutServiceClient::new(edge.clone());

    // Stalls A2 and Circle C1 (seat indexes 1 and 8): the summary reads
    // as the tickets will.
    let booking = book(&edge, &buyer, &event.id, &[1, 8]).await;
    let tickets: Vec<&pb::LineItem> = booking
        .line_items
        .iter()
        .filter(|line| line.kind == pb::LineItemKind::Ticket as i32)
        .collect();
    let descriptions: Vec<&str> = tickets
        .iter()
        .map(|line| line.description.as_str())
        .collect();
    assert_eq!(
        descriptions,
        [
            "Stalls, row A, seat 2 (Standard)",
            "Circle, row C, seat 1 (Premium)"
        ]
    );
    assert_eq!(
        (
            tickets[1].section_name.as_str(),
            tickets[1].row_label.as_str(),
            tickets[1].seat_number.as_str(),
            tickets[1].price_tier_name.as_str()
        ),
        ("Circle", "C", "1", "Premium")
    );
    assert!(
        booking
            .line_items
            .iter()
            .all(|line| !line.description.starts_with("seat ")),
        "no line names an internal seat index: {:?}",
        booking.line_items
    );
    let full = STALLS_PRICE + CIRCLE_PRICE + 2 * FEE;
    assert_eq!(amount(&booking.total), full);
    assert_adds_up(&booking);

    // An admin makes a 25% code for the Premium tier only; a buyer may not.
    let premium_tier = event
        .price_tiers
        .iter()
        .find(|tier| tier.name == "Premium")
        .expect("the premium tier")
        .id
        .clone();
    let mut premium_only = percent_code("CIRCLE25", &event.id, 25);
    premium_only.price_tier_ids = vec![premium_tier];
    let status = checkout
        .create_promo_code(with_token(
            &buyer,
            pb::CreatePromoCodeRequest {
                promo_code: Some(premium_only.clone()),
            },
        ))
        .await
        .expect_err("buyers do not make codes");
    assert_eq!(status.code(), Code::PermissionDenied);
    let created = create_code(&mut checkout, &admin, premium_only.clone()).await;
    assert!(created.name.starts_with("promoCodes/"));
    let again = checkout
        .create_promo_code(with_token(
            &admin,
            pb::CreatePromoCodeRequest {
                promo_code: Some(premium_only),
            },
        ))
        .await
        .expect_err("the code text is taken");
    assert_eq!(again.code(), Code::AlreadyExists);
    create_code(&mut checkout, &admin, percent_code("HALF", &event.id, 50)).await;

    // Applied (as typed, lower case): only the Circle seat is discounted,
    // and the total shown is the lines' sum.
    let discounted = apply(&mut checkout, &buyer, &booking.name, "circle25")
        .await
        .expect("applying a code");
    assert_eq!(amount(&discounted.discount), CIRCLE_PRICE / 4);
    assert_eq!(amount(&discounted.total), full - CIRCLE_PRICE / 4);
    assert_eq!(discounted.promo_code, "CIRCLE25");
    let discount_line = discounted
        .line_items
        .iter()
        .find(|line| line.kind == pb::LineItemKind::Discount as i32)
        .expect("a discount line");
    assert_eq!(amount(&discount_line.amount), -CIRCLE_PRICE / 4);
    assert_adds_up(&discounted);
    // Another code replaces it; removing it restores the full price;
    // GetBooking shows what the last call answered.
    let half = apply(&mut checkout, &buyer, &booking.name, "HALF")
        .await
        .expect("replacing the code");
    assert_eq!(amount(&half.discount), (STALLS_PRICE + CIRCLE_PRICE) / 2);
    assert_adds_up(&half);
    let removed = checkout
        .remove_promo_code(with_token(
            &buyer,
            pb::RemovePromoCodeRequest {
                name: booking.name.clone(),
            },
        ))
        .await
        .expect("removing the code")
        .into_inner();
    assert_eq!(amount(&removed.total), full);
    assert!(removed.promo_code.is_empty());
    assert!(
        !removed
            .line_items
            .iter()
            .any(|line| line.kind == pb::LineItemKind::Discount as i32)
    );

    // Someone else cannot touch the booking: it does not exist for them.
    let stranger = customer(&edge).await;
    refused(
        apply(&mut checkout, &stranger, &booking.name, "HALF").await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Pay with the code on: the provider is asked for exactly the total.
    let discounted = apply(&mut checkout, &buyer, &booking.name, "HALF")
        .await
        .expect("applying again");
    let shown = amount(&discounted.total);
    let confirmed = checkout
        .confirm_booking(with_token(
            &buyer,
            pb::ConfirmBookingRequest {
                name: booking.name.clone(),
                payment_method: Some(pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: "commerce-pay-1".into(),
            },
        ))
        .await
        .expect("paying")
        .into_inner();
    assert_eq!(confirmed.state, pb::BookingState::Confirmed as i32);
    assert_eq!(amount(&confirmed.total), shown);
    let booking_id = booking.name.trim_start_matches("bookings/").to_owned();
    let simulated = world
        .system
        .checkout
        .simulated
        .as_ref()
        .expect("the whole system pays through the simulated provider");
    let charged = simulated
        .payments()
        .into_iter()
        .find(|payment| payment.reference == booking_id)
        .expect("the provider's payment");
    assert_eq!(charged.amount_minor, shown, "charged what was shown");
    // Paid: the code can no longer be changed.
    refused(
        apply(&mut checkout, &buyer, &booking.name, "CIRCLE25").await,
        Code::FailedPrecondition,
        "BOOKING_NOT_PENDING",
    );

    let listed = |checkout: &mut Checkout| {
        let mut checkout = checkout.clone();
        let admin = admin.clone();
        let event_id = event.id.clone();
        async move {
            checkout
                .list_promo_codes(with_token(&admin, pb::ListPromoCodesRequest { event_id }))
                .await
                .expect("listing codes")
                .into_inner()
                .promo_codes
                .into_iter()
                .find(|code| code.code == "HALF")
                .expect("the HALF code")
        }
    };
    let half_code = listed(&mut checkout).await;
    assert_eq!(half_code.times_redeemed, 1);
    assert_eq!(half_code.times_returned, 1, "removed once before paying");

    // Cancelled: the discounted ticket price comes back (not the fees),
    // and so does the code's redemption.
    let cancelled = checkout
        .cancel_booking(with_token(
            &buyer,
            pb::CancelBookingRequest {
                name: booking.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling")
        .into_inner();
    assert_eq!(cancelled.state, pb::BookingState::Cancelled as i32);
    assert_eq!(
        amount(&cancelled.refunded),
        shown - 2 * FEE,
        "the discounted amount is refunded"
    );
    let refunded = simulated
        .payments()
        .into_iter()
        .find(|payment| payment.reference == booking_id)
        .expect("the provider's payment");
    assert_eq!(refunded.refunded_minor, shown - 2 * FEE);
    let half_code = listed(&mut checkout).await;
    assert_eq!((half_code.times_redeemed, half_code.times_returned), (0, 2));
    world.stop().await;
}

#[tokio::test]
async fn bad_codes_are_refused_with_reasons_and_guessing_is_throttled() {
    let world = SystemWorld::start("commerce", &[]).await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = seated_event_on_sale(&edge, &admin).await;
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let now = chrono::Utc::now();
    let at = |time: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    };
    let mut expired = percent_code("LASTWEEK", &event.id, 10);
    expired.valid_from = Some(at(now - chrono::Duration::days(8)));
    expired.valid_until = Some(at(now - chrono::Duration::days(1)));
    create_code(&mut checkout, &admin, expired).await;
    let mut early = percent_code("NEXTWEEK", &event.id, 10);
    early.valid_from = Some(at(now + chrono::Duration::days(7)));
    create_code(&mut checkout, &admin, early).await;
    // A code must name an event that exists: another one.
    let elsewhere = seated_event_on_sale(&edge, &admin).await;
    create_code(
        &mut checkout,
        &admin,
        percent_code("ELSEWHERE", &elsewhere.id, 10),
    )
    .await;
    let mut once = percent_code("ONCE", &event.id, 10);
    once.max_redemptions = 1;
    create_code(&mut checkout, &admin, once).await;
    let mut pairs = percent_code("PAIRS", &event.id, 10);
    pairs.min_tickets = 2;
    create_code(&mut checkout, &admin, pairs).await;
    let euros = pb::PromoCode {
        code: "EUROS".into(),
        event_id: event.id.clone(),
        kind: pb::PromoDiscountKind::AmountOff as i32,
        amount: Some(pb::Money {
            currency_code: "EUR".into(),
            amount_minor: 500,
        }),
        ..Default::default()
    };
    create_code(&mut checkout, &admin, euros).await;
    // A fixed amount larger than the tickets takes off only what they cost.
    let huge = pb::PromoCode {
        code: "HUGE".into(),
        event_id: event.id.clone(),
        kind: pb::PromoDiscountKind::AmountOff as i32,
        amount: Some(pb::Money {
            currency_code: "GBP".into(),
            amount_minor: 1_000_000,
        }),
        ..Default::default()
    };
    create_code(&mut checkout, &admin, huge).await;
    // Codes that cannot be valid are refused at creation.
    for (bad, field) in [
        (percent_code("ZERO", &event.id, 0), "promo_code.percent_off"),
        (
            percent_code("MORE", &event.id, 101),
            "promo_code.percent_off",
        ),
        (percent_code("no spaces", &event.id, 10), "promo_code.code"),
        (
            pb::PromoCode {
                code: "NEGATIVE".into(),
                kind: pb::PromoDiscountKind::AmountOff as i32,
                amount: Some(pb::Money {
                    currency_code: "GBP".into(),
                    amount_minor: -100,
                }),
                ..Default::default()
            },
            "promo_code.amount.amount_minor",
        ),
    ] {
        let status = checkout
            .create_promo_code(with_token(
                &admin,
                pb::CreatePromoCodeRequest {
                    promo_code: Some(bad),
                },
            ))
            .await
            .expect_err("an invalid code");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            boxoffice_runtime::status::field_of(&status).as_deref(),
            Some(field)
        );
    }

    let buyer = customer(&edge).await;
    let booking = book(&edge, &buyer, &event.id, &[0]).await;
    let name = booking.name.as_str();
    for (code, status, reason) in [
        ("NOSUCHCODE", Code::NotFound, "PROMO_CODE_UNKNOWN"),
        ("LASTWEEK", Code::FailedPrecondition, "PROMO_CODE_EXPIRED"),
        (
            "NEXTWEEK",
            Code::FailedPrecondition,
            "PROMO_CODE_NOT_YET_VALID",
        ),
        (
            "ELSEWHERE",
            Code::FailedPrecondition,
            "PROMO_CODE_WRONG_EVENT",
        ),
        ("PAIRS", Code::FailedPrecondition, "PROMO_CODE_MIN_TICKETS"),
        (
            "EUROS",
            Code::FailedPrecondition,
            "PROMO_CODE_NOT_APPLICABLE",
        ),
    ] {
        refused(
            apply(&mut checkout, &buyer, name, code).await,
            status,
            reason,
        );
    }
    let unchanged = CheckoutServiceClient::new(edge.clone())
        .get_booking(with_token(
            &buyer,
            pb::GetBookingRequest { name: name.into() },
        ))
        .await
        .expect("reading the booking")
        .into_inner();
    assert_eq!(
        amount(&unchanged.total),
        STALLS_PRICE + FEE,
        "refusals change nothing"
    );
    let huge = apply(&mut checkout, &buyer, name, "huge")
        .await
        .expect("a large amount off");
    assert_eq!(amount(&huge.discount), STALLS_PRICE);
    assert_eq!(amount(&huge.total), FEE, "the fee is still charged");
    assert_adds_up(&huge);

    // ONCE: the first booking takes its only use; another is refused; the
    // first one's cancellation gives it back.
    let first = apply(&mut checkout, &buyer, name, "ONCE")
        .await
        .expect("the only use");
    assert_eq!(amount(&first.discount), STALLS_PRICE / 10);
    let other_buyer = customer(&edge).await;
    let second = book(&edge, &other_buyer, &event.id, &[2]).await;
    refused(
        apply(&mut checkout, &other_buyer, &second.name, "ONCE").await,
        Code::FailedPrecondition,
        "PROMO_CODE_EXHAUSTED",
    );
    checkout
        .cancel_booking(with_token(
            &buyer,
            pb::CancelBookingRequest {
                name: booking.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling the pending booking");
    apply(&mut checkout, &other_buyer, &second.name, "ONCE")
        .await
        .expect("the use came back");

    // Guessing: ten unknown codes, then even a real one is refused for a
    // while.
    let guesser = customer(&edge).await;
    let guessed = book(&edge, &guesser, &event.id, &[3]).await;
    for attempt in 0..10 {
        refused(
            apply(
                &mut checkout,
                &guesser,
                &guessed.name,
                &format!("GUESS{attempt}"),
            )
            .await,
            Code::NotFound,
            "PROMO_CODE_UNKNOWN",
        );
    }
    let throttled = apply(&mut checkout, &guesser, &guessed.name, "HUGE")
        .await
        .expect_err("throttled");
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert_eq!(
        reason_of(&throttled).as_deref(),
        Some("PROMO_CODE_ATTEMPTS_EXHAUSTED")
    );
    world.stop().await;
}

/// Pending bookings of `users` (one each) for `event_id`, written straight
/// into checkout's tables: the race is about the code, not about holds.
async fn pending_bookings(world: &SystemWorld, event_id: Uuid, users: &[Uuid]) -> Vec<Uuid> {
    let client = world.db.pool.get().await.expect("a connection");
    let ids: Vec<Uuid> = users.iter().map(|_| Uuid::now_v7()).collect();
    client
        .execute(
            "WITH b AS (
                 INSERT INTO checkout.bookings (id, user_id, event_id, hold_id, state, currency_code,
                     subtotal_minor, fees_minor, total_minor, expire_time)
                 SELECT id, user_id, $3, gen_random_uuid(), 'pending', 'GBP', 4000, 150, 4150,
                     now() + interval '10 minutes'
                 FROM unnest($1::uuid[], $2::uuid[]) AS i(id, user_id)
                 RETURNING id
             )
             INSERT INTO checkout.booking_tickets (booking_id, seat_index, price_minor)
             SELECT id, 0, 4000 FROM b",
            &[&ids, &users, &event_id],
        )
        .await
        .expect("writing pending bookings");
    ids
}

async fn apply_direct(
    checkout: Checkout,
    user: Uuid,
    booking: Uuid,
    code: &'static str,
) -> Result<pb::Booking, tonic::Status> {
    let mut checkout = checkout;
    // A thousand at once on a loaded machine may wait longer than the
    // connection pool lets a request wait: that answer is `UNAVAILABLE`
    // ("retry shortly", nothing changed) and a buyer's app tries again.
    let mut attempts = 0;
    loop {
        let answer = checkout
            .apply_promo_code(as_caller(
                &Caller::user(user, &[]),
                pb::ApplyPromoCodeRequest {
                    name: format!("bookings/{booking}"),
                    code: code.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner);
        match answer {
            Err(status) if status.code() == Code::Unavailable && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempts)).await;
            }
            answer => return answer,
        }
    }
}

#[tokio::test]
async fn a_thousand_buyers_applying_a_hundred_use_code_get_exactly_a_hundred() {
    let world = SystemWorld::start("commerce", &[]).await;
    let checkout = CheckoutServiceClient::new(connect(world.system.internal_addr).await);
    let admin = Caller::user(Uuid::new_v4(), &[boxoffice_contracts::role::ADMIN]);
    // The bookings are written straight into checkout's tables for an
    // event the catalog does not have, so the code is for every event (a
    // code naming an event must name one that exists).
    let event_id = Uuid::new_v4();
    let mut hundred = percent_code("HUNDRED", "", 20);
    hundred.max_redemptions = 100;
    checkout
        .clone()
        .create_promo_code(as_caller(
            &admin,
            pb::CreatePromoCodeRequest {
                promo_code: Some(hundred),
            },
        ))
        .await
        .expect("creating the code");
    let users: Vec<Uuid> = (0..1_000).map(|_| Uuid::new_v4()).collect();
    let bookings = pending_bookings(&world, event_id, &users).await;
    let applies: Vec<_> = users
        .iter()
        .zip(&bookings)
        .map(|(user, booking)| {
            tokio::spawn(apply_direct(checkout.clone(), *user, *booking, "HUNDRED"))
        })
        .collect();
    let mut discounted = 0;
    for apply in applies {
        match apply.await.expect("the task") {
            Ok(booking) => {
                assert_eq!(amount(&booking.total), 4150 - 800);
                discounted += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert_eq!(
                    reason_of(&status).as_deref(),
                    Some("PROMO_CODE_EXHAUSTED"),
                    "{status:?}"
                );
            }
        }
    }
    assert_eq!(discounted, 100);
    let client = world.db.pool.get().await.expect("a connection");
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM checkout.bookings WHERE discount_minor > 0) AS discounted,
                    (SELECT redeemed FROM checkout.promo_codes WHERE code = 'HUNDRED') AS redeemed",
            &[],
        )
        .await
        .expect("counting");
    assert_eq!(row.get::<_, i64>("discounted"), 100);
    assert_eq!(row.get::<_, i32>("redeemed"), 100);

    // One user, twenty bookings, a once-per-user code, all at once: one.
    let mut once_each = percent_code("ONCEEACH", "", 10);
    once_each.max_redemptions_per_user = 1;
    checkout
        .clone()
        .create_promo_code(as_caller(
            &admin,
            pb::CreatePromoCodeRequest {
                promo_code: Some(once_each),
            },
        ))
        .await
        .expect("creating the per-user code");
    let user = Uuid::new_v4();
    let own = pending_bookings(&world, event_id, &[user; 20]).await;
    let applies: Vec<_> = own
        .iter()
        .map(|booking| tokio::spawn(apply_direct(checkout.clone(), user, *booking, "ONCEEACH")))
        .collect();
    let mut granted = 0;
    for apply in applies {
        match apply.await.expect("the task") {
            Ok(_) => granted += 1,
            Err(status) => assert_eq!(
                reason_of(&status).as_deref(),
                Some("PROMO_CODE_USER_LIMIT"),
                "{status:?}"
            ),
        }
    }
    assert_eq!(granted, 1);
    world.stop().await;
}

async fn loyalty(checkout: &mut Checkout, token: &str) -> pb::Loyalty {
    checkout
        .get_loyalty(with_token(token, pb::GetLoyaltyRequest {}))
        .await
        .expect("reading loyalty")
        .into_inner()
}

/// The caller's loyalty once `wanted` holds (points move with checkout's
/// events, a moment after the booking changes).
async fn loyalty_once(
    checkout: &Checkout,
    token: &str,
    what: &str,
    wanted: impl Fn(&pb::Loyalty) -> bool,
) -> pb::Loyalty {
    eventually(Duration::from_secs(20), what, || {
        let mut checkout = checkout.clone();
        let token = token.to_owned();
        let wanted = &wanted;
        async move { Some(loyalty(&mut checkout, &token).await).filter(|summary| wanted(summary)) }
    })
    .await
}

async fn spend(
    checkout: &mut Checkout,
    token: &str,
    booking: &str,
    points: i64,
) -> Result<pb::Booking, tonic::Status> {
    checkout
        .apply_loyalty_points(with_token(
            token,
            pb::ApplyLoyaltyPointsRequest {
                name: booking.into(),
                points,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn pay(checkout: &mut Checkout, token: &str, booking: &str, key: &str) -> pb::Booking {
    checkout
        .confirm_booking(with_token(
            token,
            pb::ConfirmBookingRequest {
                name: booking.into(),
                payment_method: Some(pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: key.into(),
            },
        ))
        .await
        .expect("paying")
        .into_inner()
}

async fn cancel(checkout: &mut Checkout, token: &str, booking: &str) -> pb::Booking {
    checkout
        .cancel_booking(with_token(
            token,
            pb::CancelBookingRequest {
                name: booking.into(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling")
        .into_inner()
}

#[tokio::test]
async fn loyalty_points_are_earned_spent_with_a_promo_code_and_given_back_on_cancel() {
    let world = SystemWorld::start("commerce", &[]).await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = seated_event_on_sale(&edge, &admin).await;
    let buyer = customer(&edge).await;
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let fresh = loyalty(&mut checkout, &buyer).await;
    assert_eq!((fresh.points_balance, fresh.tier.as_str()), (0, "member"));

    // Two Circle seats, paid: 123.00 earns 123 points.
    let first = book(&edge, &buyer, &event.id, &[8, 9]).await;
    assert_eq!(first.loyalty_tier, "member");
    let paid = pay(&mut checkout, &buyer, &first.name, "loyalty-1").await;
    let first_total = 2 * CIRCLE_PRICE + 2 * FEE;
    assert_eq!(amount(&paid.total), first_total);
    let earned = loyalty_once(
        &checkout,
        &buyer,
        "points for the first booking",
        |summary| summary.points_balance == first_total / 100,
    )
    .await;
    assert_eq!(earned.points_last_12_months, 123);
    assert_eq!(
        (earned.next_tier.as_str(), earned.points_to_next_tier),
        ("silver", 377)
    );
    assert_eq!(earned.history[0].kind, "earn");
    assert_eq!(earned.history[0].booking, first.name);

    // A second booking, almost all of it taken off by a code: points may
    // take off what is left of the tickets, not the fees, and no more
    // than the balance.
    create_code(
        &mut checkout,
        &admin,
        pb::PromoCode {
            code: "ALMOST".into(),
            event_id: event.id.clone(),
            kind: pb::PromoDiscountKind::AmountOff as i32,
            amount: Some(pb::Money {
                currency_code: "GBP".into(),
                amount_minor: STALLS_PRICE - 50,
            }),
            ..Default::default()
        },
    )
    .await;
    let second = book(&edge, &buyer, &event.id, &[0]).await;
    let status = spend(&mut checkout, &buyer, &second.name, -5)
        .await
        .expect_err("a negative spend");
    assert_eq!(status.code(), Code::InvalidArgument);
    refused(
        spend(&mut checkout, &buyer, &second.name, 124).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    refused(
        spend(&mut checkout, &buyer, &second.name, 1_000_000).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    apply(&mut checkout, &buyer, &second.name, "ALMOST")
        .await
        .expect("the code");
    refused(
        spend(&mut checkout, &buyer, &second.name, 100).await,
        Code::FailedPrecondition,
        "DISCOUNT_EXCEEDS_TOTAL",
    );
    let spent = spend(&mut checkout, &buyer, &second.name, 50)
        .await
        .expect("spending what the tickets still cost");
    assert_eq!(spent.loyalty_points_spent, 50);
    assert_eq!(amount(&spent.discount), STALLS_PRICE);
    assert_eq!(amount(&spent.total), FEE, "only the fee is left to pay");
    assert_adds_up(&spent);
    assert!(
        spent
            .line_items
            .iter()
            .any(|line| line.description == "50 loyalty points" && amount(&line.amount) == -50)
    );
    // With the code gone, the points stay and the total follows.
    let without_code = checkout
        .remove_promo_code(with_token(
            &buyer,
            pb::RemovePromoCodeRequest {
                name: second.name.clone(),
            },
        ))
        .await
        .expect("removing the code")
        .into_inner();
    assert_eq!(amount(&without_code.total), STALLS_PRICE - 50 + FEE);
    let again = apply(&mut checkout, &buyer, &second.name, "ALMOST")
        .await
        .expect("the code again, beside the points");
    assert_eq!(amount(&again.total), FEE);
    assert_adds_up(&again);
    let shown = loyalty(&mut checkout, &buyer).await;
    assert_eq!(shown.points_balance, 123 - 50, "spent points are held");
    let paid = pay(&mut checkout, &buyer, &second.name, "loyalty-2").await;
    assert_eq!(amount(&paid.total), FEE);
    let booking_id = second.name.trim_start_matches("bookings/");
    let charged = world
        .system
        .checkout
        .simulated
        .as_ref()
        .expect("the simulated provider")
        .payments()
        .into_iter()
        .find(|payment| payment.reference == booking_id)
        .expect("the second payment");
    assert_eq!(charged.amount_minor, FEE, "charged what was shown");

    // Cancelling the second gives the points it spent back (no money: the
    // discounts covered its tickets); cancelling the first takes back what
    // it earned. Each happens once however often the events arrive.
    let cancelled = cancel(&mut checkout, &buyer, &second.name).await;
    assert_eq!(amount(&cancelled.refunded), 0);
    let cancelled = cancel(&mut checkout, &buyer, &first.name).await;
    assert_eq!(amount(&cancelled.refunded), 2 * CIRCLE_PRICE);
    let settled = loyalty_once(
        &checkout,
        &buyer,
        "both bookings' points reversed",
        |summary| {
            summary
                .history
                .iter()
                .filter(|entry| entry.kind == "reverse")
                .count()
                == 2
        },
    )
    .await;
    assert_eq!(settled.points_balance, 0, "{settled:?}");
    assert_eq!(settled.points_last_12_months, 0);
    // The second booking paid 1.50 (one point) and spent 50.
    let mut entries: Vec<(&str, i64, &str)> = settled
        .history
        .iter()
        .map(|entry| (entry.kind.as_str(), entry.points, entry.booking.as_str()))
        .collect();
    entries.sort();
    let mut expected = vec![
        ("earn", 123, first.name.as_str()),
        ("earn", 1, second.name.as_str()),
        ("spend", -50, second.name.as_str()),
        ("release", 50, second.name.as_str()),
        ("reverse", -1, second.name.as_str()),
        ("reverse", -123, first.name.as_str()),
    ];
    expected.sort();
    assert_eq!(entries, expected);
    world.stop().await;
}

#[tokio::test]
async fn earning_and_reversing_are_idempotent_per_event_and_per_booking() {
    use boxoffice_contracts::events::v1 as events;
    use boxoffice_events::{Envelope, Payload, Received};

    let world = SystemWorld::start("commerce", &[]).await;
    let store = world.system.checkout.checkout.store().clone();
    let handler = boxoffice_checkout::loyalty::LoyaltyHandler::new(store.clone(), 1);
    let (user, booking) = (Uuid::new_v4(), Uuid::new_v4());
    let received = |payload: Payload| Received {
        stream: "checkout".into(),
        position: 1,
        envelope: Envelope {
            event_id: Uuid::now_v7().to_string(),
            payload: Some(payload),
            ..Default::default()
        },
    };
    let confirmed = received(Payload::BookingConfirmed(events::BookingConfirmed {
        booking_id: booking.to_string(),
        user_id: user.to_string(),
        total: Some(events::Money {
            currency_code: "GBP".into(),
            amount_minor: 25_099,
        }),
        ..Default::default()
    }));
    let cancelled = received(Payload::BookingCancelled(events::BookingCancelled {
        booking_id: booking.to_string(),
        user_id: user.to_string(),
        reason: "user".into(),
        ..Default::default()
    }));
    // The same event twice, and another event about the same booking.
    handler
        .handle(std::slice::from_ref(&confirmed))
        .await
        .expect("earning");
    handler
        .handle(std::slice::from_ref(&confirmed))
        .await
        .expect("earning again");
    let mut another = confirmed.clone();
    another.envelope.event_id = Uuid::now_v7().to_string();
    handler
        .handle(std::slice::from_ref(&another))
        .await
        .expect("earning under another id");
    assert_eq!(store.loyalty(user).await.expect("loyalty").balance, 250);
    handler
        .handle(std::slice::from_ref(&cancelled))
        .await
        .expect("reversing");
    handler
        .handle(std::slice::from_ref(&cancelled))
        .await
        .expect("reversing again");
    let summary = store.loyalty(user).await.expect("loyalty");
    assert_eq!((summary.balance, summary.history.len()), (0, 2));
    // A malformed event is refused, not applied.
    let mut malformed = cancelled.clone();
    malformed.envelope.event_id = "not-a-uuid".into();
    assert!(
        handler
            .handle(std::slice::from_ref(&malformed))
            .await
            .is_err()
    );
    // A whole batch at once (as the group delivers them): a second
    // booking confirmed, its confirmation delivered twice, then cancelled,
    // beside an event of the first booking again: one earning and one
    // reversal recorded for it, the balance back where it was.
    let second = Uuid::new_v4();
    let mut confirmed_second = confirmed.clone();
    confirmed_second.envelope.event_id = Uuid::now_v7().to_string();
    if let Some(Payload::BookingConfirmed(event)) = &mut confirmed_second.envelope.payload {
        event.booking_id = second.to_string();
    }
    let mut cancelled_second = cancelled.clone();
    cancelled_second.envelope.event_id = Uuid::now_v7().to_string();
    if let Some(Payload::BookingCancelled(event)) = &mut cancelled_second.envelope.payload {
        event.booking_id = second.to_string();
    }
    handler
        .handle(&[
            confirmed_second.clone(),
            confirmed.clone(),
            confirmed_second,
            cancelled_second,
        ])
        .await
        .expect("a batch");
    let summary = store.loyalty(user).await.expect("loyalty");
    assert_eq!((summary.balance, summary.history.len()), (0, 4));
    world.stop().await;
}

#[tokio::test]
async fn a_code_applied_on_another_instance_while_paying_refunds_and_ends_the_booking() {
    use crate::checkout::{CheckoutWorld, FEE as WORLD_FEE, SEAT_PRICE};
    use crate::harness::customer as any_customer;

    let world = CheckoutWorld::new().await;
    let buyer = any_customer();
    // Made here (this instance remembers it as pending at its price)...
    let (_, booking) = world.booking_for(&buyer, &[0]).await;
    let booking_id: Uuid = booking
        .name
        .trim_start_matches("bookings/")
        .parse()
        .expect("a booking id");
    let admin = Caller::user(Uuid::new_v4(), &[boxoffice_contracts::role::ADMIN]);
    world
        .client
        .clone()
        .create_promo_code(as_caller(
            &admin,
            pb::CreatePromoCodeRequest {
                promo_code: Some(percent_code("OTHERSIDE", &world.event.event_id, 10)),
            },
        ))
        .await
        .expect("creating a code");
    // ...repriced through another instance (its own cache of recent
    // bookings, the same database)...
    let first = &world.component.checkout;
    let upstream = boxoffice_runtime::transport::over_channel(
        tonic::transport::Endpoint::from_shared(format!("http://{}", world.world.server.addr))
            .expect("url")
            .connect_lazy(),
    );
    let other = boxoffice_checkout::service::Checkout::new(
        boxoffice_checkout::store::CheckoutStore::new(world.world.db.pool.clone()),
        world.simulated().clone(),
        boxoffice_checkout::upstream::Upstream::new(upstream.clone(), upstream),
        first.config().clone(),
    );
    let repriced = other
        .apply_promo_code(&buyer, booking_id, "OTHERSIDE")
        .await
        .expect("applying on the other instance");
    assert_eq!(
        repriced.total_minor,
        SEAT_PRICE + WORLD_FEE - SEAT_PRICE / 10
    );
    // ...and paid here at the price this instance remembered: nobody is
    // charged a price they were not shown, and nothing stays sold.
    let status = world
        .client
        .clone()
        .confirm_booking(as_caller(
            &buyer,
            pb::ConfirmBookingRequest {
                name: booking.name.clone(),
                payment_method: Some(pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: "stale-price".into(),
            },
        ))
        .await
        .expect_err("the price changed under the payment");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("PRICE_CHANGED"));
    let payment = world
        .simulated()
        .payments()
        .into_iter()
        .find(|payment| payment.reference == booking_id.to_string())
        .expect("the attempt's payment");
    assert_eq!(
        payment.refunded_minor, payment.amount_minor,
        "all of it back"
    );
    assert_eq!(
        world.booking_states().await,
        [(booking_id, "expired".to_owned())]
    );
    assert!(
        world.sold_seats().await.is_empty(),
        "the seat is back on sale"
    );
    // The booking ended, so the code's redemption came back.
    let listed = world
        .client
        .clone()
        .list_promo_codes(as_caller(&admin, pb::ListPromoCodesRequest::default()))
        .await
        .expect("listing codes")
        .into_inner();
    assert_eq!(
        (
            listed.promo_codes[0].times_redeemed,
            listed.promo_codes[0].times_returned
        ),
        (0, 1)
    );
}

#[tokio::test]
async fn a_crashed_payment_of_a_total_changed_since_is_refunded_by_the_reconciler() {
    use crate::checkout::CheckoutWorld;
    use boxoffice_checkout::FailPoint;

    let world = CheckoutWorld::with(
        &[
            (boxoffice_inventory::config::ENV_HOLD_TTL, "5"),
            (boxoffice_inventory::config::ENV_HOLD_COMMIT_MARGIN, "500"),
        ],
        |_| {},
    )
    .await;
    let buyer = crate::harness::customer();
    let admin = Caller::user(Uuid::new_v4(), &[boxoffice_contracts::role::ADMIN]);
    let mut client = world.client.clone();
    client
        .create_promo_code(as_caller(
            &admin,
            pb::CreatePromoCodeRequest {
                promo_code: Some(percent_code("AFTERCRASH", &world.event.event_id, 10)),
            },
        ))
        .await
        .expect("creating a code");
    let (_, booking) = world.booking_for(&buyer, &[3]).await;
    let booking_id = booking.name.trim_start_matches("bookings/").to_owned();
    // The process "dies" after capturing the full price...
    world.fail_points.arm(FailPoint::AfterCapture);
    let crashed = client
        .confirm_booking(as_caller(
            &buyer,
            pb::ConfirmBookingRequest {
                name: booking.name.clone(),
                payment_method: Some(pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: "crash-then-code".into(),
            },
        ))
        .await
        .expect_err("a simulated crash");
    world.fail_points.disarm(FailPoint::AfterCapture);
    assert_eq!(reason_of(&crashed).as_deref(), Some("SIMULATED_CRASH"));
    // ...and the still-pending booking is repriced before anyone settles it.
    let repriced = client
        .apply_promo_code(as_caller(
            &buyer,
            pb::ApplyPromoCodeRequest {
                name: booking.name.clone(),
                code: "AFTERCRASH".into(),
            },
        ))
        .await
        .expect("applying the code")
        .into_inner();
    let captured = world
        .simulated()
        .payments()
        .into_iter()
        .find(|payment| payment.reference == booking_id)
        .expect("the captured payment");
    assert_ne!(captured.amount_minor, amount(&repriced.total));
    let expires = booking.expire_time.expect("an expiry");
    let expires = chrono::DateTime::from_timestamp(expires.seconds, expires.nanos as u32)
        .expect("a valid expiry");
    let db = &world.world.db;
    eventually(
        Duration::from_secs(20),
        "the hold has run out by the database's clock",
        || async move {
            let row = db
                .client()
                .await
                .query_one("SELECT now() > $1", &[&expires])
                .await
                .ok()?;
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await;
    let report = world
        .component
        .reconcile_once(Duration::ZERO)
        .await
        .expect("a reconciler pass");
    assert_eq!(report.bookings_expired, 1, "{report:?}");
    let refunded = world
        .simulated()
        .payments()
        .into_iter()
        .find(|payment| payment.reference == booking_id)
        .expect("the payment");
    assert_eq!(
        refunded.refunded_minor, refunded.amount_minor,
        "all of it back"
    );
    let states = world.booking_states().await;
    assert_eq!(states[0].1, "expired", "{states:?}");
    assert!(
        world.sold_seats().await.is_empty(),
        "the seat is back on sale"
    );
}

#[tokio::test]
async fn a_silver_member_gets_the_tier_discount_on_a_new_booking() {
    use boxoffice_contracts::events::v1 as events;
    use boxoffice_events::{Envelope, Payload, Received};

    let world = SystemWorld::start("commerce", &[]).await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = seated_event_on_sale(&edge, &admin).await;
    let buyer = customer(&edge).await;
    let me = AccountsServiceClient::new(edge.clone())
        .get_me(with_token(&buyer, accounts_pb::GetMeRequest {}))
        .await
        .expect("who am I")
        .into_inner();
    // 500.00 paid in the last year (a booking's confirmation as the
    // consumer receives it) makes a silver member.
    let handler = boxoffice_checkout::loyalty::LoyaltyHandler::new(
        world.system.checkout.checkout.store().clone(),
        1,
    );
    handler
        .handle(&[Received {
            stream: "checkout".into(),
            position: 1,
            envelope: Envelope {
                event_id: Uuid::now_v7().to_string(),
                payload: Some(Payload::BookingConfirmed(events::BookingConfirmed {
                    booking_id: Uuid::new_v4().to_string(),
                    user_id: me.id.clone(),
                    total: Some(events::Money {
                        currency_code: "GBP".into(),
                        amount_minor: 50_000,
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            },
        }])
        .await
        .expect("earning");
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let silver = loyalty(&mut checkout, &buyer).await;
    assert_eq!(
        (
            silver.tier.as_str(),
            silver.tier_discount_percent,
            silver.next_tier.as_str()
        ),
        ("silver", 5, "gold")
    );
    assert_eq!(silver.points_to_next_tier, 1_500);

    let booking = book(&edge, &buyer, &event.id, &[0, 8]).await;
    assert_eq!(booking.loyalty_tier, "silver");
    let tier_discount = (STALLS_PRICE + CIRCLE_PRICE) * 5 / 100;
    assert_eq!(amount(&booking.discount), tier_discount);
    assert_eq!(
        amount(&booking.total),
        STALLS_PRICE + CIRCLE_PRICE + 2 * FEE - tier_discount
    );
    assert!(booking.line_items.iter().any(|line| {
        line.kind == pb::LineItemKind::Discount as i32
            && line.description == "silver member discount"
            && amount(&line.amount) == -tier_discount
    }));
    assert_adds_up(&booking);
    world.stop().await;
}

/// Another event at `event`'s venue, on sale: one tier ("Any", 30.00 GBP)
/// over every section.
async fn another_event_at_the_venue(
    edge: &Channel,
    admin: &str,
    event: &catalog_pb::Event,
) -> catalog_pb::Event {
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let venue = catalog
        .get_venue(catalog_pb::GetVenueRequest {
            id: event.venue_id.clone(),
        })
        .await
        .expect("reading the venue")
        .into_inner();
    let next = catalog
        .create_event(with_token(
            admin,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Second Night".into(),
                    category: catalog_pb::Category::Theater as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(timestamp(40)),
                    end_time: Some(timestamp(41)),
                    price_tiers: vec![catalog_pb::PriceTier {
                        name: "Any".into(),
                        price: Some(catalog_pb::Money {
                            currency_code: "GBP".into(),
                            amount_minor: 3_000,
                        }),
                        section_ids: venue.sections.iter().map(|s| s.id.clone()).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating a second event at the venue")
        .into_inner();
    catalog
        .publish_event(with_token(
            admin,
            catalog_pb::PublishEventRequest {
                id: next.id.clone(),
            },
        ))
        .await
        .expect("publishing it");
    let inventory = InventoryServiceClient::new(edge.clone());
    eventually(Duration::from_secs(30), "the second event on sale", || {
        let mut inventory = inventory.clone();
        let event_id = next.id.clone();
        async move {
            inventory
                .get_availability(inventory_pb::GetAvailabilityRequest { event_id })
                .await
                .ok()
                .filter(|availability| availability.get_ref().on_sale)
        }
    })
    .await;
    next
}

async fn all_codes(checkout: &mut Checkout, admin: &str, event_id: &str) -> Vec<pb::PromoCode> {
    checkout
        .list_promo_codes(with_token(
            admin,
            pb::ListPromoCodesRequest {
                event_id: event_id.into(),
            },
        ))
        .await
        .expect("listing codes")
        .into_inner()
        .promo_codes
}

/// An organiser's code (the catalog's closest notion of an organiser is
/// the venue: events carry none) discounts every event at its venue, also
/// one published after it, and no event elsewhere. A code naming an event
/// that does not exist, a tier of another event, or a venue that does not
/// exist is refused with the field it got wrong, and nothing is created.
#[tokio::test]
async fn an_organisers_code_covers_every_event_at_its_venue_and_bad_scopes_create_nothing() {
    let world = SystemWorld::start("commerce", &[]).await;
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let here = seated_event_on_sale(&edge, &admin).await;
    let elsewhere = seated_event_on_sale(&edge, &admin).await;
    assert_ne!(here.venue_id, elsewhere.venue_id);
    let house = create_code(
        &mut checkout,
        &admin,
        pb::PromoCode {
            code: "HOUSE25".into(),
            venue_id: here.venue_id.clone(),
            kind: pb::PromoDiscountKind::PercentOff as i32,
            percent_off: 25,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(house.venue_id, here.venue_id);
    assert!(house.event_id.is_empty());
    let later = another_event_at_the_venue(&edge, &admin, &here).await;

    let buyer = customer(&edge).await;
    for (event, seat, price) in [(&here, 0, STALLS_PRICE), (&later, 1, 3_000)] {
        let booking = book(&edge, &buyer, &event.id, &[seat]).await;
        let applied = apply(&mut checkout, &buyer, &booking.name, "house25")
            .await
            .expect("the venue's code on an event there");
        assert_eq!(amount(&applied.discount), price / 4);
        assert_adds_up(&applied);
    }
    let away = book(&edge, &buyer, &elsewhere.id, &[0]).await;
    refused(
        apply(&mut checkout, &buyer, &away.name, "HOUSE25").await,
        Code::FailedPrecondition,
        "PROMO_CODE_WRONG_EVENT",
    );
    // Listing an event's codes shows its venue's; another venue's do not.
    let listed = |codes: Vec<pb::PromoCode>| codes.iter().any(|code| code.code == "HOUSE25");
    assert!(listed(all_codes(&mut checkout, &admin, &later.id).await));
    assert!(!listed(
        all_codes(&mut checkout, &admin, &elsewhere.id).await
    ));

    // Bad scopes: refused with the field, nothing created.
    let tier_elsewhere = elsewhere.price_tiers[0].id.clone();
    let unknown = Uuid::new_v4().to_string();
    let bad = [
        (
            pb::PromoCode {
                event_id: unknown.clone(),
                ..percent_code("NOSUCHEVENT", "", 10)
            },
            "promo_code.event_id",
        ),
        (
            pb::PromoCode {
                price_tier_ids: vec![here.price_tiers[0].id.clone(), tier_elsewhere],
                ..percent_code("STRAYTIER", &here.id, 10)
            },
            "promo_code.price_tier_ids",
        ),
        (
            pb::PromoCode {
                venue_id: unknown.clone(),
                ..percent_code("NOSUCHVENUE", "", 10)
            },
            "promo_code.venue_id",
        ),
        (
            pb::PromoCode {
                venue_id: here.venue_id.clone(),
                ..percent_code("BOTHSCOPES", &here.id, 10)
            },
            "promo_code.venue_id",
        ),
    ];
    for (code, field) in bad {
        let text = code.code.clone();
        let status = checkout
            .create_promo_code(with_token(
                &admin,
                pb::CreatePromoCodeRequest {
                    promo_code: Some(code),
                },
            ))
            .await
            .expect_err("a bad scope");
        assert_eq!(status.code(), Code::InvalidArgument, "{text}: {status:?}");
        assert_eq!(
            reason_of(&status).as_deref(),
            Some("INVALID_FIELD"),
            "{text}"
        );
        assert!(
            status.message().contains(field),
            "{text}: {}",
            status.message()
        );
        assert!(
            !all_codes(&mut checkout, &admin, "")
                .await
                .iter()
                .any(|listed| listed.code == text),
            "{text} was not created"
        );
    }
    // A tier of the event itself is fine.
    let tiered = create_code(
        &mut checkout,
        &admin,
        pb::PromoCode {
            price_tier_ids: vec![here.price_tiers[1].id.clone()],
            ..percent_code("STRAYTIER", &here.id, 10)
        },
    )
    .await;
    assert_eq!(tiered.price_tier_ids, vec![here.price_tiers[1].id.clone()]);
    world.stop().await;
}

/// Hold → book → apply a code → spend points → pay by card through the
/// card gateway process → cancel: the gateway refunds exactly the
/// discounted ticket amount that was charged (the fees stay, as for any
/// cancellation), the spent points come back and the earned ones are
/// reversed, and the code's only redemption is free for another buyer.
#[tokio::test]
async fn cancelling_a_discounted_card_booking_refunds_the_discounted_amount_and_returns_points_and_code()
 {
    let paysim = crate::checkout_gateway::PaysimProcess::start().await;
    let world = SystemWorld::start(
        "commerce",
        &[("BOXOFFICE_PAYMENTS_URL", paysim.url.as_str())],
    )
    .await;
    assert!(
        world.system.checkout.simulated.is_none(),
        "paid at the gateway"
    );
    let edge = world.edge().await;
    let admin = login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await;
    let event = seated_event_on_sale(&edge, &admin).await;
    let buyer = customer(&edge).await;
    let mut checkout = CheckoutServiceClient::new(edge.clone());

    // Points to spend: a first booking (one Stalls seat) earns 41.
    let first = book(&edge, &buyer, &event.id, &[0]).await;
    pay(&mut checkout, &buyer, &first.name, "first").await;
    let earned = (STALLS_PRICE + FEE) / 100;
    loyalty_once(&checkout, &buyer, "points for the first booking", |l| {
        l.points_balance == earned
    })
    .await;

    let mut once = percent_code("ONCE20", &event.id, 20);
    once.max_redemptions = 1;
    create_code(&mut checkout, &admin, once).await;
    // Two Circle seats, 20% off, 30 points spent.
    let second = book(&edge, &buyer, &event.id, &[8, 9]).await;
    apply(&mut checkout, &buyer, &second.name, "ONCE20")
        .await
        .expect("the code");
    let spent = spend(&mut checkout, &buyer, &second.name, 30)
        .await
        .expect("spending points");
    let tickets = 2 * CIRCLE_PRICE;
    let discounted_tickets = tickets - tickets / 5 - 30;
    assert_eq!(amount(&spent.total), discounted_tickets + 2 * FEE);
    assert_adds_up(&spent);
    let paid = pay(&mut checkout, &buyer, &second.name, "second").await;
    assert_eq!(paid.state, pb::BookingState::Confirmed as i32);
    assert_eq!(amount(&paid.total), discounted_tickets + 2 * FEE);
    let booking_id = second.name.trim_start_matches("bookings/");
    let at_gateway = || async {
        use boxoffice_checkout::payment::PaymentProvider as _;
        let found = paysim
            .client()
            .search(booking_id)
            .await
            .expect("searching the gateway");
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    };
    assert_eq!(
        at_gateway().await.amount_minor,
        amount(&paid.total),
        "charged what was shown"
    );
    let paid_points = amount(&paid.total) / 100;
    loyalty_once(&checkout, &buyer, "points for the second booking", |l| {
        l.points_balance == earned - 30 + paid_points
    })
    .await;
    let code_usage = |codes: Vec<pb::PromoCode>| {
        codes
            .into_iter()
            .find(|code| code.code == "ONCE20")
            .map(|code| (code.times_redeemed, code.times_returned))
    };
    assert_eq!(
        code_usage(all_codes(&mut checkout, &admin, &event.id).await),
        Some((1, 0))
    );

    let cancelled = cancel(&mut checkout, &buyer, &second.name).await;
    assert_eq!(cancelled.state, pb::BookingState::Cancelled as i32);
    // The refund is the discounted ticket amount (what was charged for the
    // tickets), at the gateway as in the booking.
    assert_eq!(amount(&cancelled.refunded), discounted_tickets);
    let refunded = at_gateway().await;
    assert_eq!(refunded.refunded_minor, discounted_tickets);
    // Points: the 30 spent come back, the ones earned are taken back.
    let settled = loyalty_once(
        &checkout,
        &buyer,
        "the second booking's points undone",
        |l| l.points_balance == earned,
    )
    .await;
    let mine: Vec<(&str, i64)> = settled
        .history
        .iter()
        .filter(|entry| entry.booking == second.name)
        .map(|entry| (entry.kind.as_str(), entry.points))
        .collect();
    for expected in [
        ("spend", -30),
        ("release", 30),
        ("earn", paid_points),
        ("reverse", -paid_points),
    ] {
        assert!(mine.contains(&expected), "{expected:?} in {mine:?}");
    }
    // The code's only use is back: another buyer gets it.
    assert_eq!(
        code_usage(all_codes(&mut checkout, &admin, &event.id).await),
        Some((0, 1))
    );
    let other = customer(&edge).await;
    let third = book(&edge, &other, &event.id, &[8]).await;
    let reused = apply(&mut checkout, &other, &third.name, "ONCE20")
        .await
        .expect("the returned redemption");
    assert_eq!(amount(&reused.discount), CIRCLE_PRICE / 5);
    world.stop().await;
}
