//! Dynamic pricing through the edge of a whole system: an admin sets a
//! tier's rule; prices rise at the rule's steps as a scripted buyer buys
//! and stop at the ceiling; a hold locks the price it was taken at and its
//! booking is charged that price, even after a rise; cancelled sales lower
//! the price again; buyers racing across a step each lock the price of the
//! sold count their hold saw; bad rules and non-admins are refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
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
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::reason_of;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::edge_world::{connect, login, with_token};
use crate::harness::{as_caller, eventually};
use crate::inventory::timestamp;
use crate::system_world::SystemWorld;

/// "Floor": 20 seats (rows A–D of 5, seat indexes 0..20), tier "Standard"
/// at 40.00 GBP. "Balcony": 4 seats (20..24), tier "Premium" at 60.00 GBP.
const STANDARD_PRICE: i64 = 4_000;
const PREMIUM_PRICE: i64 = 6_000;
const FLOOR_SEATS: u32 = 20;
/// Checkout's default fee per ticket.
const FEE: i64 = 150;
const WAIT: Duration = Duration::from_secs(30);

struct PricedEvent {
    id: String,
    standard: String,
    premium: String,
}

async fn event_on_sale(edge: &Channel, admin: &str) -> PricedEvent {
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let row = |label: &str, seat_count| catalog_pb::RowSpec {
        label: label.into(),
        seat_count,
        seats: vec![],
    };
    let section = |name: &str, rows| catalog_pb::SectionSpec {
        name: name.into(),
        kind: catalog_pb::SectionKind::Seated as i32,
        capacity: 0,
        rows,
    };
    let venue = catalog
        .create_venue(with_token(
            admin,
            catalog_pb::CreateVenueRequest {
                name: "Demand Hall".into(),
                address: Some(catalog_pb::PostalAddress {
                    street: "1 Market Street".into(),
                    city: "Leeds".into(),
                    region: String::new(),
                    postal_code: "LS1 6DT".into(),
                    country_code: "GB".into(),
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections: vec![
                    section(
                        "Floor",
                        vec![row("A", 5), row("B", 5), row("C", 5), row("D", 5)],
                    ),
                    section("Balcony", vec![row("E", 4)]),
                ],
            },
        ))
        .await
        .expect("creating the venue")
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
                    title: "Demand Night".into(),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(timestamp(30)),
                    end_time: Some(timestamp(31)),
                    price_tiers: vec![
                        tier("Standard", STANDARD_PRICE, 0),
                        tier("Premium", PREMIUM_PRICE, 1),
                    ],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating the event")
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
    eventually(WAIT, "the event goes on sale", || {
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
    let tier_id = |name: &str| {
        event
            .price_tiers
            .iter()
            .find(|tier| tier.name == name)
            .map(|tier| tier.id.clone())
            .expect("the tier")
    };
    PricedEvent {
        standard: tier_id("Standard"),
        premium: tier_id("Premium"),
        id: event.id.clone(),
    }
}

async fn customer(edge: &Channel) -> String {
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let email = format!("demand-{}@example.com", Uuid::new_v4().simple());
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

async fn admin(edge: &Channel) -> String {
    login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await
}

pub fn gbp(amount_minor: i64) -> Option<inventory_pb::Money> {
    Some(inventory_pb::Money {
        currency_code: "GBP".into(),
        amount_minor,
    })
}

pub fn rule(
    tier: &str,
    change_bp: i32,
    sold_bp: u32,
    floor: i64,
    ceiling: i64,
) -> inventory_pb::TierPricingRule {
    inventory_pb::TierPricingRule {
        price_tier_id: tier.into(),
        step_change_basis_points: change_bp,
        step_sold_basis_points: sold_bp,
        floor_price: gbp(floor),
        ceiling_price: gbp(ceiling),
    }
}

pub async fn set_rule(
    edge: &Channel,
    token: &str,
    event_id: &str,
    tiers: Vec<inventory_pb::TierPricingRule>,
) -> Result<inventory_pb::PricingRule, Status> {
    InventoryServiceClient::new(edge.clone())
        .set_pricing_rule(with_token(
            token,
            inventory_pb::SetPricingRuleRequest {
                event_id: event_id.into(),
                tiers,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A tier's price now as Availability shows it.
async fn tier_price(edge: &Channel, event_id: &str, tier: &str) -> inventory_pb::TierPrice {
    let availability = InventoryServiceClient::new(edge.clone())
        .get_availability(inventory_pb::GetAvailabilityRequest {
            event_id: event_id.into(),
        })
        .await
        .expect("availability")
        .into_inner();
    availability
        .tier_prices
        .into_iter()
        .find(|price| price.price_tier_id == tier)
        .expect("the tier's price")
}

fn amount(money: &Option<inventory_pb::Money>) -> i64 {
    money.as_ref().map_or(-1, |money| money.amount_minor)
}

fn charged(money: &Option<pb::Money>) -> i64 {
    money.as_ref().map_or(-1, |money| money.amount_minor)
}

async fn hold(edge: &Channel, token: &str, event_id: &str, seats: &[u32]) -> inventory_pb::Hold {
    InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.into(),
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
        .into_inner()
}

/// Books a hold and pays for it; answers the confirmed booking.
async fn book_and_pay(edge: &Channel, token: &str, hold: &inventory_pb::Hold) -> pb::Booking {
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let booking = checkout
        .create_booking(with_token(
            token,
            pb::CreateBookingRequest {
                hold: hold.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("creating a booking")
        .into_inner();
    assert_eq!(
        charged(&booking.total),
        amount(&hold.total_price) + FEE * hold.seats.len() as i64,
        "the booking charges the hold's locked price plus fees"
    );
    let confirmed = checkout
        .confirm_booking(with_token(
            token,
            pb::ConfirmBookingRequest {
                name: booking.name.clone(),
                payment_method: Some(pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: format!("pay-{}", Uuid::new_v4()),
            },
        ))
        .await
        .expect("paying")
        .into_inner();
    assert_eq!(confirmed.state, pb::BookingState::Confirmed as i32);
    assert_eq!(charged(&confirmed.total), charged(&booking.total));
    confirmed
}

/// The one price lock of a hold of Standard seats.
fn standard_lock<'a>(hold: &'a inventory_pb::Hold, tier: &str) -> &'a inventory_pb::PriceLock {
    let locks: Vec<_> = hold
        .price_locks
        .iter()
        .filter(|lock| lock.price_tier_id == tier)
        .collect();
    assert_eq!(
        locks.len(),
        1,
        "one lock for the tier: {:?}",
        hold.price_locks
    );
    locks[0]
}

/// +10% of 40.00 for every 10% of the 20 seats sold (a step every 2),
/// never above 50.00.
fn rising_to_fifty(sold: u32) -> i64 {
    (STANDARD_PRICE + 400 * i64::from(sold / 2)).min(5_000)
}

#[tokio::test]
async fn prices_rise_as_a_scripted_buyer_buys_and_a_hold_is_charged_the_price_it_locked() {
    let world = SystemWorld::start("pricing", &[]).await;
    let edge = world.edge().await;
    let admin = admin(&edge).await;
    let event = event_on_sale(&edge, &admin).await;
    let set = set_rule(
        &edge,
        &admin,
        &event.id,
        vec![rule(&event.standard, 1_000, 1_000, 3_000, 5_000)],
    )
    .await
    .expect("setting the rule");
    assert_eq!(set.tiers.len(), 1);

    // The event page's prices: Standard is dynamic, Premium fixed.
    let standard = tier_price(&edge, &event.id, &event.standard).await;
    assert_eq!(amount(&standard.current_price), STANDARD_PRICE);
    assert_eq!((standard.sold_count, standard.seat_count), (0, FLOOR_SEATS));
    assert!(standard.rule.is_some());
    let premium = tier_price(&edge, &event.id, &event.premium).await;
    assert_eq!(amount(&premium.current_price), PREMIUM_PRICE);
    assert!(premium.rule.is_none());

    // An early buyer holds Floor D5 and Balcony E1 before any sale.
    let early = customer(&edge).await;
    let early_hold = hold(&edge, &early, &event.id, &[19, 20]).await;
    let lock = standard_lock(&early_hold, &event.standard);
    assert_eq!((amount(&lock.price), lock.sold_count), (STANDARD_PRICE, 0));
    assert_eq!(
        amount(&early_hold.total_price),
        STANDARD_PRICE + PREMIUM_PRICE
    );

    // A scripted buyer buys Floor seats one at a time: the price shown
    // before each purchase, the price the hold locks and the price charged
    // all follow the rule's steps, and stop at the ceiling.
    let scripted = customer(&edge).await;
    let mut bookings = Vec::new();
    let mut seen = Vec::new();
    for seat in 0..8u32 {
        let shown = tier_price(&edge, &event.id, &event.standard).await;
        assert_eq!(shown.sold_count, seat);
        assert_eq!(amount(&shown.current_price), rising_to_fifty(seat));
        let held = hold(&edge, &scripted, &event.id, &[seat]).await;
        let lock = standard_lock(&held, &event.standard);
        assert_eq!(lock.sold_count, seat);
        assert_eq!(amount(&lock.price), rising_to_fifty(seat));
        assert_eq!(amount(&held.seats[0].price), rising_to_fifty(seat));
        let booking = book_and_pay(&edge, &scripted, &held).await;
        assert_eq!(charged(&booking.total), rising_to_fifty(seat) + FEE);
        seen.push(amount(&lock.price));
        bookings.push(booking);
    }
    assert_eq!(
        seen,
        [4_000, 4_000, 4_400, 4_400, 4_800, 4_800, 5_000, 5_000]
    );
    let after = tier_price(&edge, &event.id, &event.standard).await;
    assert_eq!((after.sold_count, amount(&after.current_price)), (8, 5_000));

    // A hold taken now gets the new price...
    let late = customer(&edge).await;
    let late_hold = hold(&edge, &late, &event.id, &[18]).await;
    assert_eq!(amount(&late_hold.total_price), 5_000);
    // ...while the early hold still shows, and is charged, what it locked.
    let again = InventoryServiceClient::new(edge.clone())
        .get_hold(with_token(
            &early,
            inventory_pb::GetHoldRequest {
                name: early_hold.name.clone(),
            },
        ))
        .await
        .expect("reading the early hold")
        .into_inner();
    assert_eq!(again.price_locks, early_hold.price_locks);
    assert_eq!(amount(&again.total_price), STANDARD_PRICE + PREMIUM_PRICE);
    let early_booking = book_and_pay(&edge, &early, &early_hold).await;
    assert_eq!(
        charged(&early_booking.total),
        STANDARD_PRICE + PREMIUM_PRICE + 2 * FEE,
        "the early hold is charged its locked price, not today's 50.00"
    );

    // Prices follow sell-through both ways: five cancelled sales put the
    // Floor back at 4 sold (0-4 go back; 5, 6, 7 and 19 stay sold).
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    for booking in &bookings[..5] {
        checkout
            .cancel_booking(with_token(
                &scripted,
                pb::CancelBookingRequest {
                    name: booking.name.clone(),
                    idempotency_key: String::new(),
                },
            ))
            .await
            .expect("cancelling");
    }
    let lowered = eventually(WAIT, "the price to follow the cancellations", || {
        let edge = edge.clone();
        let event_id = event.id.clone();
        let tier = event.standard.clone();
        async move {
            let price = tier_price(&edge, &event_id, &tier).await;
            (price.sold_count == 4).then_some(price)
        }
    })
    .await;
    assert_eq!(amount(&lowered.current_price), 4_800);
    let rehold = hold(&edge, &scripted, &event.id, &[0]).await;
    let lock = standard_lock(&rehold, &event.standard);
    assert_eq!((amount(&lock.price), lock.sold_count), (4_800, 4));
    world.stop().await;
}

#[tokio::test]
async fn buyers_racing_across_price_steps_each_lock_the_price_of_the_sales_before_them() {
    let world = SystemWorld::start("pricing", &[]).await;
    let edge = world.edge().await;
    let admin = admin(&edge).await;
    let event = event_on_sale(&edge, &admin).await;
    // +10% for every 10% sold, up to 80.00: a new step every 2 seats, all
    // the way through the 20 seats.
    set_rule(
        &edge,
        &admin,
        &event.id,
        vec![rule(&event.standard, 1_000, 1_000, STANDARD_PRICE, 8_000)],
    )
    .await
    .expect("setting the rule");
    let rule_price = |sold: u32| STANDARD_PRICE + 400 * i64::from(sold / 2);

    // Five buyers, four Floor seats each, one purchase at a time, all at
    // once: confirmations answered before a hold is asked for must be in
    // its price; confirmations not yet sent when it was answered cannot be.
    const BUYERS: u32 = 5;
    let confirmed = Arc::new(AtomicU32::new(0));
    let started = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for buyer in 0..BUYERS {
        let token = customer(&edge).await;
        let (edge, event_id, tier) = (edge.clone(), event.id.clone(), event.standard.clone());
        let (confirmed, started) = (confirmed.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            let mut locks = Vec::new();
            for seat in (buyer * 4)..(buyer * 4 + 4) {
                let confirmed_before = confirmed.load(Ordering::SeqCst);
                let held = hold(&edge, &token, &event_id, &[seat]).await;
                let started_after = started.load(Ordering::SeqCst);
                let lock = standard_lock(&held, &tier).clone();
                started.fetch_add(1, Ordering::SeqCst);
                let booking = book_and_pay(&edge, &token, &held).await;
                confirmed.fetch_add(1, Ordering::SeqCst);
                locks.push((confirmed_before, started_after, lock, booking));
            }
            locks
        }));
    }
    let mut prices = Vec::new();
    for task in tasks {
        for (confirmed_before, started_after, lock, booking) in task.await.expect("a buyer") {
            assert!(
                lock.sold_count >= confirmed_before,
                "a hold saw {} sold after {confirmed_before} confirmed sales",
                lock.sold_count
            );
            assert!(
                lock.sold_count <= started_after,
                "a hold saw {} sold with only {started_after} sales started",
                lock.sold_count
            );
            assert_eq!(
                amount(&lock.price),
                rule_price(lock.sold_count),
                "the price is the rule's at the sold count the hold saw"
            );
            assert!(
                amount(&lock.price) >= rule_price(confirmed_before),
                "no hold cheaper than the sales before it allow"
            );
            assert_eq!(charged(&booking.total), amount(&lock.price) + FEE);
            prices.push(amount(&lock.price));
        }
    }
    assert_eq!(prices.len(), 20);
    // The race crossed steps: more than one price was paid.
    prices.sort_unstable();
    prices.dedup();
    assert!(prices.len() > 1, "prices paid: {prices:?}");
    let end = tier_price(&edge, &event.id, &event.standard).await;
    assert_eq!(
        (end.sold_count, amount(&end.current_price)),
        (FLOOR_SEATS, 8_000)
    );
    world.stop().await;
}

fn refused_field(result: Result<inventory_pb::PricingRule, Status>, field: &str) {
    let status = result.expect_err("a bad rule is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        reason_of(&status).as_deref(),
        Some("INVALID_FIELD"),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some(field),
        "{status:?}"
    );
}

#[tokio::test]
async fn bad_rules_and_non_admins_are_refused_and_change_nothing() {
    let world = SystemWorld::start("pricing", &[]).await;
    let edge = world.edge().await;
    let admin = admin(&edge).await;
    let event = event_on_sale(&edge, &admin).await;
    let good = rule(&event.standard, 500, 2_500, 3_500, 6_000);
    set_rule(&edge, &admin, &event.id, vec![good.clone()])
        .await
        .expect("a good rule");

    let bad = |change: fn(&mut inventory_pb::TierPricingRule)| {
        let mut tier = good.clone();
        change(&mut tier);
        vec![tier]
    };
    let cases: Vec<(Vec<inventory_pb::TierPricingRule>, &str)> = vec![
        (
            bad(|tier| tier.floor_price = gbp(4_001)),
            "tiers[0].floor_price",
        ),
        (
            bad(|tier| tier.floor_price = gbp(-1)),
            "tiers[0].floor_price",
        ),
        (bad(|tier| tier.floor_price = None), "tiers[0].floor_price"),
        (
            bad(|tier| tier.ceiling_price = gbp(3_999)),
            "tiers[0].ceiling_price",
        ),
        (
            bad(|tier| tier.ceiling_price = gbp(100_000_000_001)),
            "tiers[0].ceiling_price",
        ),
        (
            bad(|tier| {
                tier.ceiling_price = Some(inventory_pb::Money {
                    currency_code: "EUR".into(),
                    amount_minor: 6_000,
                })
            }),
            "tiers[0].ceiling_price",
        ),
        (
            bad(|tier| tier.step_sold_basis_points = 0),
            "tiers[0].step_sold_basis_points",
        ),
        (
            bad(|tier| tier.step_sold_basis_points = 10_001),
            "tiers[0].step_sold_basis_points",
        ),
        (
            bad(|tier| tier.step_change_basis_points = 0),
            "tiers[0].step_change_basis_points",
        ),
        (
            bad(|tier| tier.step_change_basis_points = 20_000),
            "tiers[0].step_change_basis_points",
        ),
        (
            bad(|tier| tier.price_tier_id = Uuid::new_v4().to_string()),
            "tiers[0].price_tier_id",
        ),
        (
            bad(|tier| tier.price_tier_id = "standard".into()),
            "tiers[0].price_tier_id",
        ),
        (vec![good.clone(), good.clone()], "tiers[1].price_tier_id"),
    ];
    for (tiers, field) in cases {
        refused_field(set_rule(&edge, &admin, &event.id, tiers).await, field);
    }
    let unknown = set_rule(&edge, &admin, &Uuid::new_v4().to_string(), vec![])
        .await
        .expect_err("an unknown event");
    assert_eq!(unknown.code(), Code::NotFound);

    // Deny by default: no token, a buyer's token (the edge), and a caller
    // without the admin role straight at the service.
    let buyer = customer(&edge).await;
    let anonymous = InventoryServiceClient::new(edge.clone())
        .set_pricing_rule(inventory_pb::SetPricingRuleRequest {
            event_id: event.id.clone(),
            tiers: vec![],
        })
        .await
        .expect_err("anonymous");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let by_buyer = set_rule(&edge, &buyer, &event.id, vec![])
        .await
        .expect_err("a buyer");
    assert_eq!(by_buyer.code(), Code::PermissionDenied);
    let direct = InventoryServiceClient::new(connect(world.system.internal_addr).await)
        .set_pricing_rule(as_caller(
            &Caller::user(Uuid::new_v4(), &[]),
            inventory_pb::SetPricingRuleRequest {
                event_id: event.id.clone(),
                tiers: vec![],
            },
        ))
        .await
        .expect_err("a non-admin at the service");
    assert_eq!(direct.code(), Code::PermissionDenied);

    // Nothing changed: the good rule still prices the tier.
    let standard = tier_price(&edge, &event.id, &event.standard).await;
    let kept = standard.rule.expect("the rule is still there");
    assert_eq!(kept, good);

    // An admin removes it: the catalog price again.
    let removed = set_rule(&edge, &admin, &event.id, vec![])
        .await
        .expect("removing the rule");
    assert!(removed.tiers.is_empty());
    let standard = tier_price(&edge, &event.id, &event.standard).await;
    assert!(standard.rule.is_none());
    let buyer_hold = hold(&edge, &buyer, &event.id, &[3]).await;
    assert!(buyer_hold.price_locks.is_empty());
    assert_eq!(amount(&buyer_hold.total_price), STANDARD_PRICE);
    world.stop().await;
}

/// A tier as the event page (GetEvent, through the edge, signed out) shows
/// it.
async fn page_tier(edge: &Channel, event_id: &str, tier: &str) -> catalog_pb::PriceTier {
    let event = CatalogServiceClient::new(edge.clone())
        .get_event(catalog_pb::GetEventRequest {
            id: event_id.into(),
        })
        .await
        .expect("the event page")
        .into_inner();
    event
        .price_tiers
        .into_iter()
        .find(|shown| shown.id == tier)
        .expect("the tier on the event page")
}

fn page_amount(money: &Option<catalog_pb::Money>) -> i64 {
    money.as_ref().map_or(-1, |money| money.amount_minor)
}

/// Waits until the event page shows `price` for the tier (dynamic or not);
/// answers the tier as shown.
async fn page_shows(
    edge: &Channel,
    event_id: &str,
    tier: &str,
    price: i64,
    dynamic: bool,
) -> catalog_pb::PriceTier {
    eventually(WAIT, &format!("the event page to show {price}"), || {
        let (edge, event_id, tier) = (edge.clone(), event_id.to_owned(), tier.to_owned());
        async move {
            let shown = page_tier(&edge, &event_id, &tier).await;
            (page_amount(&shown.current_price) == price
                && shown.dynamic_pricing.is_some() == dynamic)
                .then_some(shown)
        }
    })
    .await
}

#[tokio::test]
async fn the_event_page_shows_each_tiers_current_price_as_sales_move_it() {
    let world = SystemWorld::start("pricing", &[]).await;
    let edge = world.edge().await;
    let admin = admin(&edge).await;
    let event = event_on_sale(&edge, &admin).await;
    // Before any rule the page shows the catalog's prices.
    let fixed = page_tier(&edge, &event.id, &event.standard).await;
    assert_eq!(page_amount(&fixed.current_price), STANDARD_PRICE);
    assert_eq!(fixed.dynamic_pricing, None);

    set_rule(
        &edge,
        &admin,
        &event.id,
        vec![rule(&event.standard, 1_000, 1_000, 3_000, 5_000)],
    )
    .await
    .expect("setting the rule");
    // The page says Standard is dynamically priced, with its floor and
    // ceiling; Premium stays fixed.
    let shown = page_shows(&edge, &event.id, &event.standard, STANDARD_PRICE, true).await;
    let dynamic = shown.dynamic_pricing.expect("dynamic pricing");
    assert_eq!(page_amount(&dynamic.floor_price), 3_000);
    assert_eq!(page_amount(&dynamic.ceiling_price), 5_000);
    assert_eq!(
        (
            dynamic.step_change_basis_points,
            dynamic.step_sold_basis_points
        ),
        (1_000, 1_000)
    );
    assert_eq!(
        page_amount(&shown.price),
        STANDARD_PRICE,
        "the base price stays"
    );
    let premium = page_tier(&edge, &event.id, &event.premium).await;
    assert_eq!(page_amount(&premium.current_price), PREMIUM_PRICE);
    assert_eq!(premium.dynamic_pricing, None);

    // Sales move the page's price with the rule's steps: 44.00 after two,
    // 48.00 after four; and it is the price the next hold locks.
    let buyer = customer(&edge).await;
    let mut bookings = Vec::new();
    for seat in 0..4u32 {
        let held = hold(&edge, &buyer, &event.id, &[seat]).await;
        bookings.push(book_and_pay(&edge, &buyer, &held).await);
        if seat == 1 {
            page_shows(&edge, &event.id, &event.standard, 4_400, true).await;
        }
    }
    let shown = page_shows(&edge, &event.id, &event.standard, 4_800, true).await;
    let dynamic = shown.dynamic_pricing.expect("dynamic pricing");
    assert_eq!((dynamic.sold_count, dynamic.seat_count), (4, FLOOR_SEATS));
    let next = hold(&edge, &buyer, &event.id, &[10]).await;
    assert_eq!(amount(&standard_lock(&next, &event.standard).price), 4_800);
    // The seat map the web app draws prices from shows it too.
    let map = CatalogServiceClient::new(edge.clone())
        .get_seat_map(catalog_pb::GetSeatMapRequest {
            event_id: event.id.clone(),
        })
        .await
        .expect("the seat map")
        .into_inner();
    let on_map = map
        .price_tiers
        .iter()
        .find(|tier| tier.id == event.standard)
        .expect("the tier on the seat map");
    assert_eq!(page_amount(&on_map.current_price), 4_800);

    // A cancelled sale lowers it again (3 sold: 44.00).
    CheckoutServiceClient::new(edge.clone())
        .cancel_booking(with_token(
            &buyer,
            pb::CancelBookingRequest {
                name: bookings[0].name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling");
    page_shows(&edge, &event.id, &event.standard, 4_400, true).await;

    // Removing the rule puts the catalog's price back on the page.
    set_rule(&edge, &admin, &event.id, vec![])
        .await
        .expect("removing the rule");
    page_shows(&edge, &event.id, &event.standard, STANDARD_PRICE, false).await;
    world.stop().await;
}

async fn best_available(
    edge: &Channel,
    token: &str,
    event_id: &str,
    max_price: i64,
) -> Result<inventory_pb::Hold, Status> {
    InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.into(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity: 1,
                        max_price: gbp(max_price),
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn best_available_with_a_maximum_price_compares_the_price_the_hold_locks() {
    let world = SystemWorld::start("pricing", &[]).await;
    let edge = world.edge().await;
    let admin = admin(&edge).await;
    let event = event_on_sale(&edge, &admin).await;
    // Standard: 40.00 rising 10% every 2 of its 20 seats, up to 50.00;
    // Premium: fixed at 60.00.
    set_rule(
        &edge,
        &admin,
        &event.id,
        vec![rule(&event.standard, 1_000, 1_000, 3_000, 5_000)],
    )
    .await
    .expect("setting the rule");
    let buyer = customer(&edge).await;
    for seat in 0..2u32 {
        let held = hold(&edge, &buyer, &event.id, &[seat]).await;
        book_and_pay(&edge, &buyer, &held).await;
    }
    let risen = tier_price(&edge, &event.id, &event.standard).await;
    assert_eq!(amount(&risen.current_price), 4_400);

    // At most 43.00: Standard's base price (40.00) would pass, but a hold
    // would lock 44.00 and Premium costs 60.00: no seat.
    let shopper = customer(&edge).await;
    let refused = best_available(&edge, &shopper, &event.id, 4_300)
        .await
        .expect_err("nothing at 43.00 or less");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason_of(&refused).as_deref(), Some("NO_SEATS_MATCH"));
    // At most 44.00: a Standard seat, locked at 44.00.
    let held = best_available(&edge, &shopper, &event.id, 4_400)
        .await
        .expect("a seat at 44.00");
    let lock = standard_lock(&held, &event.standard);
    assert_eq!(amount(&lock.price), 4_400);
    assert_eq!(amount(&held.total_price), 4_400);
    assert!(held.seats.iter().all(|seat| seat.seat_index < FLOOR_SEATS));
    // Two more sales take Standard to 48.00: 45.00 finds nothing again,
    // 60.00 gets a seat no dearer than 60.00.
    for seat in 2..4u32 {
        let held = hold(&edge, &buyer, &event.id, &[seat]).await;
        book_and_pay(&edge, &buyer, &held).await;
    }
    let other = customer(&edge).await;
    let refused = best_available(&edge, &other, &event.id, 4_500)
        .await
        .expect_err("nothing at 45.00 or less");
    assert_eq!(reason_of(&refused).as_deref(), Some("NO_SEATS_MATCH"));
    let held = best_available(&edge, &other, &event.id, 6_000)
        .await
        .expect("a seat at 60.00 or less");
    assert!(amount(&held.total_price) <= 6_000);
    world.stop().await;
}

#[tokio::test]
async fn admins_setting_rules_at_once_leave_the_last_committed_rule_in_force() {
    let world = SystemWorld::start("pricing", &[]).await;
    let edge = world.edge().await;
    let admin = admin(&edge).await;
    let event = event_on_sale(&edge, &admin).await;
    // Sixteen rules at once, each with its own step (+1% .. +16%).
    const RULES: i32 = 16;
    let mut tasks = Vec::new();
    for change in 1..=RULES {
        let (edge, admin, event_id, tier) = (
            edge.clone(),
            admin.clone(),
            event.id.clone(),
            event.standard.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let rule = rule(&tier, change * 100, 1_000, 0, 100_000);
            set_rule(&edge, &admin, &event_id, vec![rule])
                .await
                .expect("setting a rule")
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("an admin"));
    }
    // Each took its own version, one after the other.
    let mut versions: Vec<i64> = answers.iter().map(|answer| answer.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=i64::from(RULES)).collect::<Vec<_>>());
    let last = answers
        .iter()
        .max_by_key(|answer| answer.version)
        .expect("a last rule");
    let last_change = last.tiers[0].step_change_basis_points;

    // Holds price from the last committed rule: after two sales (10% of
    // the tier), one step of it.
    let shown = tier_price(&edge, &event.id, &event.standard).await;
    assert_eq!(
        shown
            .rule
            .as_ref()
            .map(|rule| rule.step_change_basis_points),
        Some(last_change),
        "availability shows the last committed rule"
    );
    let buyer = customer(&edge).await;
    for seat in 0..2u32 {
        let held = hold(&edge, &buyer, &event.id, &[seat]).await;
        book_and_pay(&edge, &buyer, &held).await;
    }
    let held = hold(&edge, &buyer, &event.id, &[2]).await;
    let step = STANDARD_PRICE * i64::from(last_change) / 10_000;
    assert_eq!(
        amount(&standard_lock(&held, &event.standard).price),
        STANDARD_PRICE + step
    );
    // And the event page shows that rule too.
    let shown = page_shows(
        &edge,
        &event.id,
        &event.standard,
        STANDARD_PRICE + step,
        true,
    )
    .await;
    assert_eq!(
        shown
            .dynamic_pricing
            .map(|rule| rule.step_change_basis_points),
        Some(last_change)
    );
    world.stop().await;
}

/// The hold script exactly as HoldSeats runs it, on Redis: a dynamic tier
/// sold up to 44.00 and a hold of one of its seats with a maximum price.
#[tokio::test]
async fn the_hold_script_refuses_a_locked_price_above_the_maximum_and_changes_nothing() {
    use boxoffice_inventory::store::redis::baseline::{HOLD_SCRIPT, event_keys};
    use fred::prelude::{ClientLike as _, HashesInterface as _, KeysInterface as _};
    use fred::prelude::{LuaInterface as _, Value};
    let config = fred::prelude::Config::from_url(&crate::harness::redis_url()).expect("redis url");
    let client = fred::prelude::Builder::from_config(config)
        .build()
        .expect("redis client");
    client.init().await.expect("connecting to redis");
    let prefix = format!("test-{}:", Uuid::new_v4().simple());
    let keys = event_keys(&prefix, Uuid::new_v4());
    let tier = Uuid::new_v4();
    // 20 seats, +10% every 10% sold between 30.00 and 50.00; 2 sold: 44.00.
    let pricing = format!(
        r#"{{"{tier}":{{"b":4000,"d":1000,"y":1000,"f":3000,"c":5000,"n":20,"r":[0,19]}}}}"#
    );
    let _: () = client
        .hset(
            &keys[0],
            vec![
                ("status", "open"),
                ("on_sale_ms", "0"),
                ("seat_count", "20"),
                ("epoch", "1"),
                ("pricing", pricing.as_str()),
            ],
        )
        .await
        .expect("the event's meta");
    let _: () = client
        .set(
            &keys[2],
            Value::Bytes(vec![0b1100_0000, 0, 0].into()),
            None,
            None,
            false,
        )
        .await
        .expect("seats 0 and 1 sold");
    let hold = |max_price: &'static str| {
        let (client, keys) = (client.clone(), keys.clone());
        let groups = format!("{tier}:1:4000");
        async move {
            let args: Vec<String> = vec![
                Uuid::new_v4().to_string(),
                Uuid::new_v4().to_string(),
                "600000".into(),
                "10".into(),
                "1000".into(),
                "60000".into(),
                "4000".into(),
                "GBP".into(),
                groups,
                max_price.into(),
                "5".into(),
            ];
            let reply: Vec<Value> = client
                .eval(HOLD_SCRIPT, keys, args)
                .await
                .expect("running the hold script");
            reply
        }
    };
    let refused = hold("4399").await;
    assert_eq!(refused[0].as_string().as_deref(), Some("PRICE_ABOVE"));
    assert_eq!(refused[1].as_string(), Some(tier.to_string()));
    assert_eq!(refused[2].as_i64(), Some(4_400));
    let held_bits: i64 = client.exists(&keys[1]).await.expect("held bits");
    let holds: i64 = client.hlen(&keys[3]).await.expect("holds");
    assert_eq!((held_bits, holds), (0, 0), "a refused hold changes nothing");
    let held = hold("4400").await;
    assert_eq!(held[0].as_string().as_deref(), Some("OK"));
    let record = held[1].as_string().expect("the hold record");
    assert!(record.contains(r#""t":4400"#), "{record}");
    assert!(
        record.contains(&format!(r#""{tier}":[4400,2,20]"#)),
        "{record}"
    );
    crate::harness::delete_redis_keys(&crate::harness::redis_url(), &prefix).await;
    let _ = client.quit().await;
}
