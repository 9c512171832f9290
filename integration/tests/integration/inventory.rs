//! Inventory end to end: holds on real Redis, tickets on real PostgreSQL,
//! events published through the catalog. Races, expiry, commits, Redis
//! losing its state, and bad input.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_inventory::config::{ENV_HOLD_COMMIT_MARGIN, ENV_HOLD_TTL, ENV_MAX_HOLDS_PER_USER};
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::{field_of, reason_of};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::harness::{InventoryWorld, admin, as_caller, customer, eventually};

pub type Inventory = InventoryServiceClient<Channel>;

/// The test venue: "Stalls" rows A (10 seats, indexes 0..10) and B (12
/// seats, 10..22), then 100 standing places (22..122).
pub const STALLS: u32 = 22;
pub const PLACES: u32 = 122;

/// Everything a test needs about its published event.
pub struct OnSale {
    pub event_id: String,
    pub stalls_section: String,
    pub standing_section: String,
}

pub fn timestamp(days: i64) -> prost_types::Timestamp {
    let time = chrono::Utc::now() + chrono::Duration::days(days);
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    }
}

/// Creates and publishes an event through the catalog, then waits until
/// inventory sells it.
pub async fn event_on_sale(world: &InventoryWorld) -> OnSale {
    let mut catalog = world.catalog.clone();
    let venue = catalog
        .create_venue(as_caller(
            &admin(),
            catalog_pb::CreateVenueRequest {
                name: "Corn Exchange".into(),
                address: Some(catalog_pb::PostalAddress {
                    street: "1 Call Lane".into(),
                    city: "Leeds".into(),
                    region: String::new(),
                    postal_code: "LS1".into(),
                    country_code: "GB".into(),
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections: vec![
                    catalog_pb::SectionSpec {
                        name: "Stalls".into(),
                        kind: catalog_pb::SectionKind::Seated as i32,
                        capacity: 0,
                        rows: vec![
                            catalog_pb::RowSpec {
                                label: "A".into(),
                                seat_count: 10,
                                seats: vec![],
                            },
                            catalog_pb::RowSpec {
                                label: "B".into(),
                                seat_count: 12,
                                seats: vec![],
                            },
                        ],
                    },
                    catalog_pb::SectionSpec {
                        name: "Standing".into(),
                        kind: catalog_pb::SectionKind::GeneralAdmission as i32,
                        capacity: 100,
                        rows: vec![],
                    },
                ],
            },
        ))
        .await
        .expect("creating a venue")
        .into_inner();
    let tier = |name: &str, amount_minor, section: &str| catalog_pb::PriceTier {
        name: name.into(),
        price: Some(catalog_pb::Money {
            currency_code: "GBP".into(),
            amount_minor,
        }),
        section_ids: vec![section.to_owned()],
        ..Default::default()
    };
    let event = catalog
        .create_event(as_caller(
            &admin(),
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Hold Night".into(),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(timestamp(10)),
                    end_time: Some(timestamp(11)),
                    price_tiers: vec![
                        tier("Seated", 4500, &venue.sections[0].id),
                        tier("Standing", 3000, &venue.sections[1].id),
                    ],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating an event")
        .into_inner();
    catalog
        .publish_event(as_caller(
            &admin(),
            catalog_pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await
        .expect("publishing");
    let mut inventory = world.inventory.clone();
    let event_id = event.id.clone();
    eventually(
        Duration::from_secs(10),
        "inventory to sell the published event",
        || {
            let mut inventory = inventory.clone();
            let event_id = event_id.clone();
            async move {
                inventory
                    .get_availability(pb::GetAvailabilityRequest { event_id })
                    .await
                    .ok()
            }
        },
    )
    .await;
    let _ = &mut inventory;
    OnSale {
        event_id: event.id,
        stalls_section: venue.sections[0].id.clone(),
        standing_section: venue.sections[1].id.clone(),
    }
}

pub fn checkout() -> Caller {
    Caller::user(Uuid::new_v4(), &[Caller::SERVICE])
}

pub async fn hold_seats(
    inventory: &mut Inventory,
    caller: &Caller,
    event_id: &str,
    seats: &[u32],
) -> Result<pb::Hold, Status> {
    inventory
        .hold_seats(as_caller(
            caller,
            pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(pb::hold_seats_request::Selection::Seats(
                    pb::SeatSelection {
                        seat_indexes: seats.to_vec(),
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn hold_best(
    inventory: &mut Inventory,
    caller: &Caller,
    event_id: &str,
    best: pb::BestAvailable,
) -> Result<pb::Hold, Status> {
    inventory
        .hold_seats(as_caller(
            caller,
            pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(pb::hold_seats_request::Selection::BestAvailable(best)),
                admission_token: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn commit(
    inventory: &mut Inventory,
    hold: &pb::Hold,
    user_id: &str,
    booking_id: Uuid,
) -> Result<pb::CommitHoldResponse, Status> {
    commit_sale(inventory, hold, user_id, booking_id, None).await
}

/// CommitHold naming the sale (as checkout names its payment attempt).
pub async fn commit_sale(
    inventory: &mut Inventory,
    hold: &pb::Hold,
    user_id: &str,
    booking_id: Uuid,
    sale_id: Option<Uuid>,
) -> Result<pb::CommitHoldResponse, Status> {
    inventory
        .commit_hold(as_caller(
            &checkout(),
            pb::CommitHoldRequest {
                name: hold.name.clone(),
                booking_id: booking_id.to_string(),
                user_id: user_id.to_owned(),
                sale_id: sale_id.map(|id| id.to_string()).unwrap_or_default(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub async fn availability(inventory: &mut Inventory, event_id: &str) -> pb::Availability {
    inventory
        .get_availability(pb::GetAvailabilityRequest {
            event_id: event_id.to_owned(),
        })
        .await
        .expect("availability")
        .into_inner()
}

pub fn bit(bitmap: &[u8], seat: u32) -> bool {
    bitmap
        .get((seat / 8) as usize)
        .is_some_and(|byte| byte & (0x80 >> (seat % 8)) != 0)
}

pub fn seats_in(bitmap: &[u8], below: u32) -> Vec<u32> {
    (0..below).filter(|seat| bit(bitmap, *seat)).collect()
}

pub fn user_of(caller: &Caller) -> String {
    caller.user_id.map(|id| id.to_string()).unwrap_or_default()
}

/// (seat, booking) of every sold ticket, from PostgreSQL.
pub async fn sold_tickets(world: &InventoryWorld, event_id: &str) -> Vec<(i32, Uuid)> {
    let event_id = Uuid::parse_str(event_id).unwrap();
    world
        .db
        .client()
        .await
        .query(
            "SELECT seat_index, booking_id FROM inventory.tickets WHERE event_id = $1 AND status = 'sold' ORDER BY seat_index",
            &[&event_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

/// Holds on overlapping seat sets from many clients at once; afterwards no
/// seat is in two live holds and Redis's held bitmap is exactly the union.
pub async fn race_many_clients(world: &InventoryWorld, clients: usize) {
    let sale = event_on_sale(world).await;
    let mut tasks = Vec::new();
    for client_number in 0..clients {
        let mut inventory = world.inventory.clone();
        let event_id = sale.event_id.clone();
        tasks.push(tokio::spawn(async move {
            let caller = customer();
            // Overlapping windows of 1..=4 seats over the 22 stalls.
            let start = (client_number * 7 % STALLS as usize) as u32;
            let length = 1 + (client_number % 4) as u32;
            let seats: Vec<u32> = (start..start + length).map(|seat| seat % STALLS).collect();
            hold_seats(&mut inventory, &caller, &event_id, &seats).await
        }));
    }
    let mut held: Vec<pb::Hold> = Vec::new();
    for task in tasks {
        match task.await.expect("client task") {
            Ok(hold) => held.push(hold),
            Err(status) => assert_reason(&status, Code::Aborted, "SEAT_UNAVAILABLE"),
        }
    }
    assert!(!held.is_empty());
    let mut owner_of: HashMap<u32, String> = HashMap::new();
    for hold in &held {
        for seat in &hold.seats {
            if let Some(other) = owner_of.insert(seat.seat_index, hold.name.clone()) {
                panic!(
                    "seat {} is in two live holds: {other} and {}",
                    seat.seat_index, hold.name
                );
            }
        }
    }
    let mut inventory = world.inventory.clone();
    let snapshot = availability(&mut inventory, &sale.event_id).await;
    let mut expected: Vec<u32> = owner_of.keys().copied().collect();
    expected.sort();
    assert_eq!(seats_in(&snapshot.held, PLACES), expected);
    assert_eq!(snapshot.available_count, PLACES - expected.len() as u32);
}

#[tokio::test]
async fn two_hundred_clients_racing_never_share_a_seat() {
    let world = InventoryWorld::new().await;
    race_many_clients(&world, 200).await;
}

/// A hold, its visibility in availability, all-or-nothing refusal, owner
/// only reads and release.
pub async fn hold_get_release(world: &InventoryWorld) {
    let sale = event_on_sale(world).await;
    let mut inventory = world.inventory.clone();
    let alice = customer();
    let bob = customer();
    let hold = hold_seats(&mut inventory, &alice, &sale.event_id, &[3, 4])
        .await
        .unwrap();
    assert_eq!(hold.state, pb::HoldState::Active as i32);
    assert_eq!(hold.total_price.as_ref().unwrap().amount_minor, 9000);
    assert_eq!(hold.total_price.as_ref().unwrap().currency_code, "GBP");
    assert_eq!(hold.seats[0].section_id, sale.stalls_section);
    assert!(hold.expire_time.is_some());

    // All or nothing: seat 5 is free, 4 is not, so neither is held.
    let refused = hold_seats(&mut inventory, &bob, &sale.event_id, &[5, 4])
        .await
        .unwrap_err();
    assert_reason(&refused, Code::Aborted, "SEAT_UNAVAILABLE");
    let snapshot = availability(&mut inventory, &sale.event_id).await;
    assert_eq!(seats_in(&snapshot.held, PLACES), vec![3, 4]);
    assert!(snapshot.on_sale);

    // Only the owner sees and releases it.
    let got = inventory
        .get_hold(as_caller(
            &alice,
            pb::GetHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.seats.len(), 2);
    let hidden = inventory
        .get_hold(as_caller(
            &bob,
            pb::GetHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(&hidden, Code::NotFound, "HOLD_NOT_FOUND");
    let not_yours = inventory
        .release_hold(as_caller(
            &bob,
            pb::ReleaseHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(&not_yours, Code::NotFound, "HOLD_NOT_FOUND");
    assert_eq!(
        seats_in(
            &availability(&mut inventory, &sale.event_id).await.held,
            PLACES
        ),
        vec![3, 4]
    );

    let released = inventory
        .release_hold(as_caller(
            &alice,
            pb::ReleaseHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.state, pb::HoldState::Released as i32);
    assert!(
        seats_in(
            &availability(&mut inventory, &sale.event_id).await.held,
            PLACES
        )
        .is_empty()
    );
    hold_seats(&mut inventory, &bob, &sale.event_id, &[5, 4])
        .await
        .unwrap();
}

#[tokio::test]
async fn holds_are_all_or_nothing_and_only_their_owner_sees_or_releases_them() {
    let world = InventoryWorld::new().await;
    hold_get_release(&world).await;
}

#[tokio::test]
async fn tickets_are_created_once_per_place_when_the_event_is_published() {
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let event_id = Uuid::parse_str(&sale.event_id).unwrap();
    let client = world.db.client().await;
    let count = |client: deadpool_postgres::Client| async move {
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT seat_index), count(*) FILTER (WHERE status = 'available')
                 FROM inventory.tickets WHERE event_id = $1",
                &[&event_id],
            )
            .await
            .unwrap();
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
        )
    };
    assert_eq!(
        count(client).await,
        (PLACES as i64, PLACES as i64, PLACES as i64)
    );
    // Replaying the whole outbox (at-least-once delivery) changes nothing.
    world
        .db
        .client()
        .await
        .execute(
            "UPDATE inventory.event_checkpoints SET position = 0 WHERE consumer_group = 'inventory-tickets'",
            &[],
        )
        .await
        .unwrap();
    let db = &world.db;
    eventually(
        Duration::from_secs(10),
        "the feed to replay the outbox",
        || async move {
            let row = db
                .client()
                .await
                .query_one(
                    "SELECT position FROM inventory.event_checkpoints WHERE consumer_group = 'inventory-tickets'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) > 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        count(world.db.client().await).await,
        (PLACES as i64, PLACES as i64, PLACES as i64)
    );
}

#[tokio::test]
async fn best_available_holds_adjacent_seats_nearest_the_stage_and_standing_by_quantity() {
    let world = InventoryWorld::with(
        &crate::harness::redis_url(),
        &[("BOXOFFICE_MAX_HOLDS_PER_USER", "10")],
    )
    .await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let buyer = customer();
    let best = |quantity, section: &str| pb::BestAvailable {
        quantity,
        section_id: section.to_owned(),
        ..Default::default()
    };
    let front = hold_best(
        &mut inventory,
        &buyer,
        &sale.event_id,
        best(4, &sale.stalls_section),
    )
    .await
    .unwrap();
    let mut seats: Vec<u32> = front.seats.iter().map(|seat| seat.seat_index).collect();
    seats.sort();
    assert_eq!(seats.len(), 4);
    assert!(
        seats.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "adjacent: {seats:?}"
    );
    assert!(
        seats.iter().all(|seat| *seat < 10),
        "front row first: {seats:?}"
    );
    let standing = hold_best(
        &mut inventory,
        &buyer,
        &sale.event_id,
        best(5, &sale.standing_section),
    )
    .await
    .unwrap();
    assert!(
        standing
            .seats
            .iter()
            .all(|seat| (STALLS..PLACES).contains(&seat.seat_index))
    );
    assert_eq!(standing.total_price.unwrap().amount_minor, 5 * 3000);
    // Price filters: nothing at or under 10.00 GBP.
    let cheap = hold_best(
        &mut inventory,
        &buyer,
        &sale.event_id,
        pb::BestAvailable {
            quantity: 2,
            max_price: Some(pb::Money {
                currency_code: "GBP".into(),
                amount_minor: 1000,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_reason(&cheap, Code::FailedPrecondition, "NO_SEATS_MATCH");
}

#[tokio::test]
async fn concurrent_commits_never_sell_a_ticket_twice() {
    let world = InventoryWorld::with(
        &crate::harness::redis_url(),
        &[(ENV_MAX_HOLDS_PER_USER, "50")],
    )
    .await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    // 40 holds of 2-3 standing places each, then every hold committed by
    // three racing checkouts with different booking ids, plus a retry.
    let buyer = customer();
    let mut holds = Vec::new();
    for index in 0..40u32 {
        let quantity = 2 + index % 2;
        let hold = hold_best(
            &mut inventory,
            &buyer,
            &sale.event_id,
            pb::BestAvailable {
                quantity,
                section_id: sale.standing_section.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        holds.push(hold);
    }
    let mut tasks = Vec::new();
    for hold in &holds {
        for _ in 0..3 {
            let mut inventory = world.inventory.clone();
            let hold = hold.clone();
            let user = user_of(&buyer);
            tasks.push(tokio::spawn(async move {
                let booking = Uuid::new_v4();
                let result = commit(&mut inventory, &hold, &user, booking).await;
                (hold.name.clone(), booking, result)
            }));
        }
    }
    let mut winners: HashMap<String, Uuid> = HashMap::new();
    for task in tasks {
        let (name, booking, result) = task.await.unwrap();
        match result {
            Ok(response) => {
                assert!(response.newly_committed);
                assert!(
                    winners.insert(name, booking).is_none(),
                    "a hold was committed twice"
                );
            }
            Err(status) => {
                assert_reason(&status, Code::FailedPrecondition, "HOLD_ALREADY_COMMITTED")
            }
        }
    }
    assert_eq!(winners.len(), holds.len());
    // A retry with the winning booking id is a no-op success.
    let first = &holds[0];
    let again = commit(
        &mut inventory,
        first,
        &user_of(&buyer),
        winners[&first.name],
    )
    .await
    .unwrap();
    assert!(!again.newly_committed);

    // Checked in PostgreSQL: every held place sold exactly once, to its hold's winner.
    let sold = sold_tickets(&world, &sale.event_id).await;
    let expected: usize = holds.iter().map(|hold| hold.seats.len()).sum();
    assert_eq!(sold.len(), expected);
    let unique: HashSet<i32> = sold.iter().map(|(seat, _)| *seat).collect();
    assert_eq!(unique.len(), sold.len());
    for hold in &holds {
        for seat in &hold.seats {
            assert!(sold.contains(&(seat.seat_index as i32, winners[&hold.name])));
        }
    }
    let snapshot = availability(&mut inventory, &sale.event_id).await;
    assert_eq!(seats_in(&snapshot.sold, PLACES).len(), expected);
    assert!(seats_in(&snapshot.held, PLACES).is_empty());
}

#[tokio::test]
async fn the_commit_statement_alone_never_sells_a_seat_twice() {
    // Straight at the PostgreSQL statement, bypassing Redis entirely: 60
    // concurrent commits over overlapping seat sets.
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let event_id = Uuid::parse_str(&sale.event_id).unwrap();
    let tickets = world.component.inventory.tickets().clone();
    let expires = chrono::Utc::now() + chrono::Duration::minutes(5);
    let mut tasks = Vec::new();
    for index in 0..60u32 {
        let tickets = tickets.clone();
        tasks.push(tokio::spawn(async move {
            let seats: Vec<u32> = (0..3).map(|offset| (index * 2 + offset) % STALLS).collect();
            let booking = Uuid::new_v4();
            let outcome = tickets
                .commit(
                    boxoffice_inventory::domain::HoldRef {
                        event_id,
                        hold_id: Uuid::new_v4(),
                    },
                    &seats,
                    booking,
                    None,
                    expires,
                    Duration::from_secs(1),
                )
                .await
                .expect("commit statement");
            (seats, booking, outcome)
        }));
    }
    let mut committed = Vec::new();
    for task in tasks {
        let (seats, booking, outcome) = task.await.unwrap();
        match outcome {
            boxoffice_inventory::store::CommitOutcome::Committed => {
                committed.push((seats, booking))
            }
            boxoffice_inventory::store::CommitOutcome::Unavailable => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    let sold = sold_tickets(&world, &sale.event_id).await;
    let sold: HashMap<i32, Uuid> = sold.into_iter().collect();
    let mut claimed = HashSet::new();
    for (seats, booking) in &committed {
        for seat in seats {
            assert!(claimed.insert(*seat), "seat {seat} sold twice");
            assert_eq!(sold.get(&(*seat as i32)), Some(booking), "all or none");
        }
    }
    assert_eq!(sold.len(), claimed.len());
}

#[tokio::test]
async fn sales_arriving_together_each_get_their_own_answer() {
    // Commits arriving at once share one sale statement; each must still
    // be decided on its own: good ones sold, a lapsed lease, seats that do
    // not exist and seats already sold refused, a retry answered as such,
    // and nothing of a refused sale written.
    use boxoffice_inventory::domain::HoldRef;
    use boxoffice_inventory::store::CommitOutcome;
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let event_id = Uuid::parse_str(&sale.event_id).unwrap();
    let tickets = world.component.inventory.tickets().clone();
    let margin = Duration::from_secs(1);
    let valid = chrono::Utc::now() + chrono::Duration::minutes(5);
    // Seats 0-1 sold beforehand, to be retried and to be wanted by another.
    let earlier = Uuid::new_v4();
    let earlier_hold = HoldRef {
        event_id,
        hold_id: Uuid::new_v4(),
    };
    let first = tickets
        .commit(earlier_hold, &[0, 1], earlier, None, valid, margin)
        .await
        .unwrap();
    assert_eq!(first, CommitOutcome::Committed);

    struct Case {
        hold: HoldRef,
        seats: Vec<u32>,
        booking: Uuid,
        expires: chrono::DateTime<chrono::Utc>,
        expected: CommitOutcome,
    }
    let hold = || HoldRef {
        event_id,
        hold_id: Uuid::new_v4(),
    };
    let mut cases = Vec::new();
    // Ten good sales of two seats each: 2-3, 4-5, ... 20-21.
    for pair in 1..=10u32 {
        cases.push(Case {
            hold: hold(),
            seats: vec![pair * 2, pair * 2 + 1],
            booking: Uuid::new_v4(),
            expires: valid,
            expected: CommitOutcome::Committed,
        });
    }
    cases.push(Case {
        hold: earlier_hold,
        seats: vec![0, 1],
        booking: earlier,
        expires: valid,
        expected: CommitOutcome::AlreadyCommitted,
    });
    cases.push(Case {
        hold: hold(),
        seats: vec![1],
        booking: Uuid::new_v4(),
        expires: valid,
        expected: CommitOutcome::Unavailable,
    });
    // Free seats, but the lease is inside the margin.
    cases.push(Case {
        hold: hold(),
        seats: vec![30, 31],
        booking: Uuid::new_v4(),
        expires: chrono::Utc::now() + chrono::Duration::milliseconds(500),
        expected: CommitOutcome::LeaseExpired,
    });
    // One real seat beside one the venue does not have.
    cases.push(Case {
        hold: hold(),
        seats: vec![40, 100_000],
        booking: Uuid::new_v4(),
        expires: valid,
        expected: CommitOutcome::UnknownSeats,
    });
    let mut tasks = Vec::new();
    for case in cases {
        let tickets = tickets.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = tickets
                .commit(
                    case.hold,
                    &case.seats,
                    case.booking,
                    None,
                    case.expires,
                    margin,
                )
                .await
                .expect("commit");
            (case, outcome)
        }));
    }
    let mut expected_sold: HashMap<i32, Uuid> = [(0, earlier), (1, earlier)].into();
    for task in tasks {
        let (case, outcome) = task.await.unwrap();
        assert_eq!(outcome, case.expected, "seats {:?}", case.seats);
        if outcome == CommitOutcome::Committed {
            for seat in &case.seats {
                expected_sold.insert(*seat as i32, case.booking);
            }
        }
    }
    let sold: HashMap<i32, Uuid> = sold_tickets(&world, &sale.event_id)
        .await
        .into_iter()
        .collect();
    assert_eq!(sold, expected_sold);
}

#[tokio::test]
async fn an_expired_hold_frees_its_seats_within_a_second_and_watchers_see_it() {
    let world = InventoryWorld::with(&crate::harness::redis_url(), &[(ENV_HOLD_TTL, "2")]).await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let mut watch = inventory
        .watch_availability(pb::WatchAvailabilityRequest {
            event_id: sale.event_id.clone(),
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(matches!(
        first.update,
        Some(pb::availability_update::Update::Snapshot(_))
    ));

    let hold = hold_seats(&mut inventory, &customer(), &sale.event_id, &[7, 8])
        .await
        .unwrap();
    let expire = hold.expire_time.unwrap();
    let expire_ms = expire.seconds * 1000 + i64::from(expire.nanos) / 1_000_000;
    let mut kinds = Vec::new();
    let received_expiry_at = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = watch.message().await.unwrap().unwrap();
            if let Some(pb::availability_update::Update::Change(change)) = update.update {
                kinds.push((change.kind, change.seat_indexes.clone()));
                if change.kind == pb::ChangeKind::Expired as i32 {
                    return chrono::Utc::now().timestamp_millis();
                }
            }
        }
    })
    .await
    .expect("watchers hear about the expiry");
    assert_eq!(kinds[0], (pb::ChangeKind::Held as i32, vec![7, 8]));
    assert_eq!(kinds.last().unwrap().1, vec![7, 8]);
    // The seats come back by themselves, and not before the hold ran out
    // (how promptly after is the sweeper's pace, measured in benches).
    assert!(
        received_expiry_at >= expire_ms,
        "seats came back {} ms before expiry",
        expire_ms - received_expiry_at
    );
    assert!(
        seats_in(
            &availability(&mut inventory, &sale.event_id).await.held,
            PLACES
        )
        .is_empty()
    );
}

/// Only a hold that expires first among its event's live holds puts the
/// event on the sweep index; the sweeper puts it back with the next expiry
/// after each sweep. Holds made while others are live, before and after a
/// sweep, are still freed on time.
#[tokio::test]
async fn later_holds_on_an_event_are_swept_on_time_after_the_first() {
    let world = InventoryWorld::with(&crate::harness::redis_url(), &[(ENV_HOLD_TTL, "1")]).await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let mut watch = inventory
        .watch_availability(pb::WatchAvailabilityRequest {
            event_id: sale.event_id.clone(),
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        watch.message().await.unwrap().unwrap().update,
        Some(pb::availability_update::Update::Snapshot(_))
    ));
    let expiry_ms = |hold: &pb::Hold| {
        let expire = hold.expire_time.unwrap();
        expire.seconds * 1000 + i64::from(expire.nanos) / 1_000_000
    };
    let mut expiries: HashMap<u32, i64> = HashMap::new();
    let mut freed: HashMap<u32, i64> = HashMap::new();
    // Waits until the watch stream reports `seat` expired, noting when each
    // seat it reports came back.
    async fn until_expired(
        watch: &mut tonic::Streaming<pb::AvailabilityUpdate>,
        freed: &mut HashMap<u32, i64>,
        seat: u32,
    ) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !freed.contains_key(&seat) {
                let update = watch.message().await.unwrap().unwrap();
                if let Some(pb::availability_update::Update::Change(change)) = update.update
                    && change.kind == pb::ChangeKind::Expired as i32
                {
                    let now = chrono::Utc::now().timestamp_millis();
                    for seat in change.seat_indexes {
                        freed.insert(seat, now);
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("seat {seat} expires"));
    }
    // 0 expires first; 1 is made in 0's last half second (so a sweep lies
    // between their expiries), 2 after 0 was swept while 1 is still live.
    let first = hold_seats(&mut inventory, &customer(), &sale.event_id, &[0])
        .await
        .unwrap();
    expiries.insert(0, expiry_ms(&first));
    let half_second_left =
        chrono::DateTime::from_timestamp_millis(expiries[&0] - 500).expect("a valid time");
    let db = &world.db;
    eventually(
        Duration::from_secs(10),
        "hold 0 in its last half second",
        || async move {
            let row = db
                .client()
                .await
                .query_one("SELECT now() >= $1", &[&half_second_left])
                .await
                .ok()?;
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await;
    let second = hold_seats(&mut inventory, &customer(), &sale.event_id, &[1])
        .await
        .unwrap();
    expiries.insert(1, expiry_ms(&second));
    until_expired(&mut watch, &mut freed, 0).await;
    let hold = hold_seats(&mut inventory, &customer(), &sale.event_id, &[2])
        .await
        .unwrap();
    expiries.insert(2, expiry_ms(&hold));
    for seat in [1, 2] {
        until_expired(&mut watch, &mut freed, seat).await;
    }
    for (seat, at) in &freed {
        assert!(
            *at >= expiries[seat],
            "seat {seat} came back {} ms before its expiry",
            expiries[seat] - at
        );
    }
}

#[tokio::test]
async fn an_expired_holder_cannot_commit_but_the_newer_holder_can() {
    let world = InventoryWorld::with(
        &crate::harness::redis_url(),
        &[(ENV_HOLD_TTL, "2"), (ENV_HOLD_COMMIT_MARGIN, "500")],
    )
    .await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let (slow, fast) = (customer(), customer());
    let old = hold_seats(&mut inventory, &slow, &sale.event_id, &[1, 2])
        .await
        .unwrap();
    let event_id = sale.event_id.clone();
    let newer = eventually(Duration::from_secs(10), "the seats to come back", || {
        let mut inventory = inventory.clone();
        let fast = fast.clone();
        let event_id = event_id.clone();
        async move {
            hold_seats(&mut inventory, &fast, &event_id, &[1, 2])
                .await
                .ok()
        }
    })
    .await;
    // The paused holder wakes up and tries to pay: refused.
    let refused = commit(&mut inventory, &old, &user_of(&slow), Uuid::new_v4())
        .await
        .unwrap_err();
    assert_reason(&refused, Code::FailedPrecondition, "HOLD_EXPIRED");
    let booking = Uuid::new_v4();
    commit(&mut inventory, &newer, &user_of(&fast), booking)
        .await
        .unwrap();
    let sold = sold_tickets(&world, &sale.event_id).await;
    assert_eq!(sold, vec![(1, booking), (2, booking)]);
}

#[tokio::test]
async fn postgres_refuses_a_commit_inside_the_safety_margin_even_while_redis_still_holds() {
    // TTL 3 s, margin 2.5 s: from 0.5 s after holding, PostgreSQL's clock
    // says the lease is over although Redis still shows the hold active.
    let world = InventoryWorld::with(
        &crate::harness::redis_url(),
        &[(ENV_HOLD_TTL, "3"), (ENV_HOLD_COMMIT_MARGIN, "2500")],
    )
    .await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let buyer = customer();
    let hold = hold_seats(&mut inventory, &buyer, &sale.event_id, &[0])
        .await
        .unwrap();
    let expire = hold.expire_time.unwrap();
    let lease_end_ms = expire.seconds * 1000 + i64::from(expire.nanos) / 1_000_000 - 2_500;
    eventually(
        Duration::from_secs(5),
        "the lease to end by the clock",
        || async move { (chrono::Utc::now().timestamp_millis() > lease_end_ms + 50).then_some(()) },
    )
    .await;
    let still = inventory
        .get_hold(as_caller(
            &buyer,
            pb::GetHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.state, pb::HoldState::Active as i32);
    let refused = commit(&mut inventory, &hold, &user_of(&buyer), Uuid::new_v4())
        .await
        .unwrap_err();
    assert_reason(&refused, Code::FailedPrecondition, "HOLD_EXPIRED");
    assert!(sold_tickets(&world, &sale.event_id).await.is_empty());
}

#[tokio::test]
async fn redis_losing_its_state_mid_test_is_rebuilt_from_postgres_without_double_sales() {
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let (buyer, other, late) = (customer(), customer(), customer());
    let hold = hold_seats(&mut inventory, &buyer, &sale.event_id, &[0, 1])
        .await
        .unwrap();
    let booking = Uuid::new_v4();
    commit(&mut inventory, &hold, &user_of(&buyer), booking)
        .await
        .unwrap();
    let live = hold_seats(&mut inventory, &other, &sale.event_id, &[5])
        .await
        .unwrap();
    let before = availability(&mut inventory, &sale.event_id).await;

    assert!(world.flush_redis().await > 0);

    // Sold state comes back from PostgreSQL; the lost hold is gone.
    let after = availability(&mut inventory, &sale.event_id).await;
    assert_eq!(seats_in(&after.sold, PLACES), vec![0, 1]);
    assert!(seats_in(&after.held, PLACES).is_empty());
    assert_ne!(after.cursor, before.cursor);
    let refused = hold_seats(&mut inventory, &late, &sale.event_id, &[1, 2])
        .await
        .unwrap_err();
    assert_reason(&refused, Code::Aborted, "SEAT_UNAVAILABLE");
    let lost = commit(&mut inventory, &live, &user_of(&other), Uuid::new_v4())
        .await
        .unwrap_err();
    assert_reason(&lost, Code::NotFound, "HOLD_NOT_FOUND");
    // A retried commit of the sold hold still answers success from PostgreSQL.
    let retried = commit(&mut inventory, &hold, &user_of(&buyer), booking)
        .await
        .unwrap();
    assert!(!retried.newly_committed);
    // A watcher resuming from before the flush starts over with a snapshot.
    let mut watch = inventory
        .watch_availability(pb::WatchAvailabilityRequest {
            event_id: sale.event_id.clone(),
            cursor: before.cursor.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    match watch.message().await.unwrap().unwrap().update {
        Some(pb::availability_update::Update::Snapshot(snapshot)) => {
            assert_eq!(seats_in(&snapshot.sold, PLACES), vec![0, 1]);
        }
        other => panic!("expected a fresh snapshot, got {other:?}"),
    }
    let fresh = hold_seats(&mut inventory, &late, &sale.event_id, &[2, 5])
        .await
        .unwrap();
    commit(&mut inventory, &fresh, &user_of(&late), Uuid::new_v4())
        .await
        .unwrap();
    let sold = sold_tickets(&world, &sale.event_id).await;
    assert_eq!(
        sold.iter().map(|(seat, _)| *seat).collect::<Vec<_>>(),
        vec![0, 1, 2, 5]
    );
}

#[tokio::test]
async fn a_booking_is_sold_under_one_sale_id_only_even_after_redis_forgets() {
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let buyer = customer();
    let owner = user_of(&buyer);
    let hold = hold_seats(&mut inventory, &buyer, &sale.event_id, &[3, 4])
        .await
        .unwrap();
    let booking = Uuid::new_v4();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let sold = commit_sale(&mut inventory, &hold, &owner, booking, Some(first))
        .await
        .unwrap();
    assert!(sold.newly_committed);
    assert_eq!(sold.hold.unwrap().sale_id, first.to_string());
    for _ in 0..2 {
        // The same sale again succeeds and sells nothing more; another sale
        // of the same booking is refused; a commit naming no sale matches.
        let again = commit_sale(&mut inventory, &hold, &owner, booking, Some(first))
            .await
            .unwrap();
        assert!(!again.newly_committed);
        let other = commit_sale(&mut inventory, &hold, &owner, booking, Some(second))
            .await
            .unwrap_err();
        assert_reason(&other, Code::FailedPrecondition, "HOLD_ALREADY_COMMITTED");
        commit(&mut inventory, &hold, &owner, booking)
            .await
            .unwrap();
        // Then again with the hold's Redis record gone: PostgreSQL knows.
        world.flush_redis().await;
    }
    let got = inventory
        .get_hold(as_caller(
            &buyer,
            pb::GetHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await;
    assert!(got.is_err(), "the flushed hold record is gone");
    let sold = sold_tickets(&world, &sale.event_id).await;
    assert_eq!(sold, vec![(3, booking), (4, booking)]);
}

#[tokio::test]
async fn watchers_resume_from_a_cursor_without_gaps_or_duplicates() {
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let start = availability(&mut inventory, &sale.event_id).await;
    let buyer = customer();
    let a = hold_seats(&mut inventory, &buyer, &sale.event_id, &[0])
        .await
        .unwrap();
    hold_seats(&mut inventory, &buyer, &sale.event_id, &[1])
        .await
        .unwrap();
    inventory
        .release_hold(as_caller(
            &buyer,
            pb::ReleaseHoldRequest {
                name: a.name.clone(),
            },
        ))
        .await
        .unwrap();
    let read = |cursor: String, count: usize| {
        let mut inventory = inventory.clone();
        let event_id = sale.event_id.clone();
        async move {
            let mut watch = inventory
                .watch_availability(pb::WatchAvailabilityRequest { event_id, cursor })
                .await
                .unwrap()
                .into_inner();
            let mut changes = Vec::new();
            while changes.len() < count {
                match watch.message().await.unwrap().unwrap().update {
                    Some(pb::availability_update::Update::Change(change)) => changes.push(change),
                    other => panic!("resuming must not restart: {other:?}"),
                }
            }
            changes
        }
    };
    let first_two = read(start.cursor.clone(), 2).await;
    assert_eq!(first_two[0].seat_indexes, vec![0]);
    assert_eq!(first_two[1].seat_indexes, vec![1]);
    let rest = read(first_two[1].cursor.clone(), 1).await;
    assert_eq!(rest[0].kind, pb::ChangeKind::Released as i32);
    assert_eq!(rest[0].seat_indexes, vec![0]);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_changes_nothing() {
    let world = InventoryWorld::with(
        &crate::harness::redis_url(),
        &[("BOXOFFICE_MAX_SEATS_PER_HOLD", "4")],
    )
    .await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let owner = customer();
    let hold = hold_seats(&mut inventory, &owner, &sale.event_id, &[9])
        .await
        .unwrap();
    let before = availability(&mut inventory, &sale.event_id).await;
    let intruder = customer();
    let event = sale.event_id.as_str();

    let unknown = hold_seats(&mut inventory, &intruder, &Uuid::new_v4().to_string(), &[1])
        .await
        .unwrap_err();
    assert_reason(&unknown, Code::NotFound, "EVENT_NOT_FOUND");
    let bad_id = hold_seats(&mut inventory, &intruder, "not-a-uuid", &[1])
        .await
        .unwrap_err();
    assert_reason(&bad_id, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(field_of(&bad_id).as_deref(), Some("event_id"));
    let out_of_range = hold_seats(&mut inventory, &intruder, event, &[1, PLACES])
        .await
        .unwrap_err();
    assert_reason(&out_of_range, Code::InvalidArgument, "SEAT_OUT_OF_RANGE");
    let twice = hold_seats(&mut inventory, &intruder, event, &[2, 3, 2])
        .await
        .unwrap_err();
    assert_reason(&twice, Code::InvalidArgument, "DUPLICATE_SEAT");
    let none = hold_seats(&mut inventory, &intruder, event, &[])
        .await
        .unwrap_err();
    assert_reason(&none, Code::InvalidArgument, "INVALID_FIELD");
    let too_many = hold_seats(&mut inventory, &intruder, event, &[1, 2, 3, 4, 5])
        .await
        .unwrap_err();
    assert_reason(&too_many, Code::ResourceExhausted, "TOO_MANY_SEATS");
    let zero = hold_best(
        &mut inventory,
        &intruder,
        event,
        pb::BestAvailable::default(),
    )
    .await
    .unwrap_err();
    assert_reason(&zero, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(field_of(&zero).as_deref(), Some("best_available.quantity"));
    let over = hold_best(
        &mut inventory,
        &intruder,
        event,
        pb::BestAvailable {
            quantity: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_reason(&over, Code::ResourceExhausted, "TOO_MANY_SEATS");
    let anonymous = hold_seats(&mut inventory, &Caller::anonymous(), event, &[1])
        .await
        .unwrap_err();
    assert_reason(&anonymous, Code::Unauthenticated, "UNAUTHENTICATED");

    // Someone else's hold: not releasable, not committable.
    let release = inventory
        .release_hold(as_caller(
            &intruder,
            pb::ReleaseHoldRequest {
                name: hold.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(&release, Code::NotFound, "HOLD_NOT_FOUND");
    let as_customer = inventory
        .commit_hold(as_caller(
            &intruder,
            pb::CommitHoldRequest {
                name: hold.name.clone(),
                booking_id: Uuid::new_v4().to_string(),
                user_id: user_of(&intruder),
                sale_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(
        &as_customer,
        Code::PermissionDenied,
        "SERVICE_ROLE_REQUIRED",
    );
    let for_someone_else = commit(&mut inventory, &hold, &user_of(&intruder), Uuid::new_v4())
        .await
        .unwrap_err();
    assert_reason(&for_someone_else, Code::NotFound, "HOLD_NOT_FOUND");
    let bad_name = inventory
        .get_hold(as_caller(
            &owner,
            pb::GetHoldRequest {
                name: "holds/1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(&bad_name, Code::InvalidArgument, "INVALID_FIELD");
    let release_seats = inventory
        .release_seats(as_caller(
            &intruder,
            pb::ReleaseSeatsRequest {
                event_id: sale.event_id.clone(),
                booking_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_reason(
        &release_seats,
        Code::PermissionDenied,
        "SERVICE_ROLE_REQUIRED",
    );

    // Nothing changed.
    let after = availability(&mut inventory, &sale.event_id).await;
    assert_eq!(after.held, before.held);
    assert_eq!(after.sold, before.sold);
    assert_eq!(after.cursor, before.cursor);
    assert!(sold_tickets(&world, &sale.event_id).await.is_empty());
}

#[tokio::test]
async fn a_user_may_only_have_so_many_holds_per_event() {
    let world = InventoryWorld::with(
        &crate::harness::redis_url(),
        &[(ENV_MAX_HOLDS_PER_USER, "2")],
    )
    .await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let buyer = customer();
    let first = hold_seats(&mut inventory, &buyer, &sale.event_id, &[0])
        .await
        .unwrap();
    hold_seats(&mut inventory, &buyer, &sale.event_id, &[1])
        .await
        .unwrap();
    let third = hold_seats(&mut inventory, &buyer, &sale.event_id, &[2])
        .await
        .unwrap_err();
    assert_reason(&third, Code::ResourceExhausted, "TOO_MANY_HOLDS");
    inventory
        .release_hold(as_caller(
            &buyer,
            pb::ReleaseHoldRequest { name: first.name },
        ))
        .await
        .unwrap();
    hold_seats(&mut inventory, &buyer, &sale.event_id, &[2])
        .await
        .unwrap();
}

#[tokio::test]
async fn cancelling_an_event_stops_sales() {
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let buyer = customer();
    let hold = hold_seats(&mut inventory, &buyer, &sale.event_id, &[4])
        .await
        .unwrap();
    world
        .catalog
        .clone()
        .cancel_event(as_caller(
            &admin(),
            catalog_pb::CancelEventRequest {
                id: sale.event_id.clone(),
                reason: "storm".into(),
            },
        ))
        .await
        .unwrap();
    let event_id = sale.event_id.clone();
    eventually(Duration::from_secs(10), "inventory to stop selling", || {
        let mut inventory = inventory.clone();
        let event_id = event_id.clone();
        async move { (!availability(&mut inventory, &event_id).await.on_sale).then_some(()) }
    })
    .await;
    let refused = hold_seats(&mut inventory, &customer(), &sale.event_id, &[5])
        .await
        .unwrap_err();
    assert_reason(&refused, Code::FailedPrecondition, "EVENT_NOT_ON_SALE");
    let best = hold_best(
        &mut inventory,
        &customer(),
        &sale.event_id,
        pb::BestAvailable {
            quantity: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_reason(&best, Code::FailedPrecondition, "EVENT_NOT_ON_SALE");
    let commit_refused = commit(&mut inventory, &hold, &user_of(&buyer), Uuid::new_v4())
        .await
        .unwrap_err();
    assert_reason(
        &commit_refused,
        Code::FailedPrecondition,
        "EVENT_NOT_ON_SALE",
    );
    assert!(sold_tickets(&world, &sale.event_id).await.is_empty());
}

#[tokio::test]
async fn release_seats_puts_a_booking_back_on_sale_once() {
    let world = InventoryWorld::new().await;
    let sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    let buyer = customer();
    let hold = hold_seats(&mut inventory, &buyer, &sale.event_id, &[10, 11])
        .await
        .unwrap();
    let booking = Uuid::new_v4();
    commit(&mut inventory, &hold, &user_of(&buyer), booking)
        .await
        .unwrap();
    assert_eq!(
        seats_in(
            &availability(&mut inventory, &sale.event_id).await.sold,
            PLACES
        ),
        vec![10, 11]
    );
    let release = |inventory: &mut Inventory| {
        let mut inventory = inventory.clone();
        let request = pb::ReleaseSeatsRequest {
            event_id: sale.event_id.clone(),
            booking_id: booking.to_string(),
        };
        async move {
            inventory
                .release_seats(as_caller(&checkout(), request))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mut released = release(&mut inventory).await.seat_indexes;
    released.sort();
    assert_eq!(released, vec![10, 11]);
    assert!(release(&mut inventory).await.seat_indexes.is_empty());
    assert!(
        seats_in(
            &availability(&mut inventory, &sale.event_id).await.sold,
            PLACES
        )
        .is_empty()
    );
    assert!(sold_tickets(&world, &sale.event_id).await.is_empty());
    hold_seats(&mut inventory, &customer(), &sale.event_id, &[10, 11])
        .await
        .unwrap();
}
