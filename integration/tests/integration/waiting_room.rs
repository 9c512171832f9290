//! The waiting room end to end: a fair line under concurrent joins,
//! admission at the configured rate by Redis time, admission tokens that
//! HoldSeats demands on such an event (and only on such an event), and bad
//! input.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_contracts::inventory::v1::waiting_room_service_client::WaitingRoomServiceClient;
use boxoffice_inventory::config::{ENV_WAITING_ROOM_KEY, ENV_WATCH_POLL};
use boxoffice_inventory::domain::admission::AdmissionSigner;
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::{field_of, reason_of};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::harness::{InventoryWorld, admin, as_caller, customer, redis_url};
use crate::inventory::{Inventory, event_on_sale};

type WaitingRoom = WaitingRoomServiceClient<Channel>;

const KEY: &str = "waiting-room-test-key-0123456789";

async fn world() -> (InventoryWorld, WaitingRoom) {
    let world = InventoryWorld::with(
        &redis_url(),
        &[(ENV_WAITING_ROOM_KEY, KEY), (ENV_WATCH_POLL, "20")],
    )
    .await;
    let room = WaitingRoomServiceClient::new(world.server.channel().await);
    (world, room)
}

fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

fn at_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn configure(
    room: &mut WaitingRoom,
    event_id: &str,
    enabled: bool,
    rate: u32,
    open_time: Option<prost_types::Timestamp>,
) -> Result<pb::WaitingRoom, Status> {
    room.configure_waiting_room(as_caller(
        &admin(),
        pb::ConfigureWaitingRoomRequest {
            event_id: event_id.to_owned(),
            enabled,
            admission_rate_per_second: rate,
            open_time,
        },
    ))
    .await
    .map(tonic::Response::into_inner)
}

async fn join(
    room: &mut WaitingRoom,
    caller: &Caller,
    event_id: &str,
) -> Result<pb::QueueStatus, Status> {
    room.join_queue(as_caller(
        caller,
        pb::JoinQueueRequest {
            event_id: event_id.to_owned(),
        },
    ))
    .await
    .map(tonic::Response::into_inner)
}

/// Watches the caller's place until the update with the token, which it
/// answers with every update seen. Fails after `deadline`.
async fn watch_until_admitted(
    room: &mut WaitingRoom,
    caller: &Caller,
    event_id: &str,
    deadline: Duration,
) -> Vec<pb::QueueStatus> {
    let mut stream = room
        .watch_queue(as_caller(
            caller,
            pb::WatchQueueRequest {
                event_id: event_id.to_owned(),
            },
        ))
        .await
        .expect("watching the queue")
        .into_inner();
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let update = tokio::time::timeout_at(until, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no admission token within {deadline:?}; saw {seen:?}"))
            .expect("watch stream")
            .expect("the stream ends only after the token");
        let admitted = update.state == pb::WaitingRoomState::Admitted as i32;
        seen.push(update);
        if admitted {
            return seen;
        }
    }
}

async fn hold(
    inventory: &mut Inventory,
    caller: &Caller,
    event_id: &str,
    seats: &[u32],
    admission_token: &str,
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
                admission_token: admission_token.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn two_hundred_concurrent_joins_get_places_one_to_two_hundred_and_joining_again_keeps_them() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    // One per second: nobody is let through while the line forms.
    configure(
        &mut room,
        &sale.event_id,
        true,
        1,
        Some(at_ms(now_ms() + 3_600_000)),
    )
    .await
    .expect("turning the room on");
    let users: Vec<Caller> = (0..200).map(|_| customer()).collect();
    let mut tasks = Vec::new();
    for user in users.clone() {
        let mut room = room.clone();
        let event_id = sale.event_id.clone();
        tasks.push(tokio::spawn(async move {
            join(&mut room, &user, &event_id).await
        }));
    }
    let mut places = Vec::new();
    for task in tasks {
        let status = task.await.expect("join task").expect("joining");
        assert_eq!(status.state, pb::WaitingRoomState::Waiting as i32);
        assert_eq!(
            status.position, status.join_number,
            "nobody is through before opening"
        );
        places.push(status.join_number);
    }
    let distinct: BTreeSet<u64> = places.iter().copied().collect();
    assert_eq!(distinct.len(), 200, "no two users share a place");
    assert_eq!(distinct, (1..=200).collect::<BTreeSet<u64>>());
    // Joining again, even many times at once, keeps the first place.
    let mut again = Vec::new();
    for (user, place) in users.iter().zip(&places).take(20) {
        let mut room = room.clone();
        let (user, place, event_id) = (user.clone(), *place, sale.event_id.clone());
        again.push(tokio::spawn(async move {
            let status = join(&mut room, &user, &event_id)
                .await
                .expect("joining again");
            assert_eq!(status.join_number, place);
        }));
    }
    for task in again {
        task.await.expect("rejoin task");
    }
    let counters = configure(
        &mut room,
        &sale.event_id,
        true,
        1,
        Some(at_ms(now_ms() + 3_600_000)),
    )
    .await
    .expect("reconfiguring");
    assert_eq!(counters.joined_count, 200);
    assert_eq!(counters.admitted_count, 0);
}

#[tokio::test]
async fn admission_follows_the_configured_rate_in_join_order() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    const RATE: u32 = 20;
    const USERS: usize = 40;
    let started = Instant::now();
    configure(&mut room, &sale.event_id, true, RATE, None)
        .await
        .expect("turning the room on");
    let mut joined = Vec::new();
    for _ in 0..USERS {
        let user = customer();
        let status = join(&mut room, &user, &sale.event_id)
            .await
            .expect("joining");
        joined.push((user, status.join_number));
    }
    let deadline = Duration::from_secs(USERS as u64 / RATE as u64 + 15);
    let mut tasks = Vec::new();
    for (user, place) in joined {
        let mut room = room.clone();
        let event_id = sale.event_id.clone();
        tasks.push(tokio::spawn(async move {
            let updates = watch_until_admitted(&mut room, &user, &event_id, deadline).await;
            (place, started.elapsed(), updates)
        }));
    }
    let mut admitted_at = Vec::new();
    for task in tasks {
        let (place, elapsed, updates) = task.await.expect("watch task");
        // Positions only ever go down, and the last update carries a token.
        let positions: Vec<u64> = updates.iter().map(|u| u.position).collect();
        assert!(
            positions.windows(2).all(|w| w[0] >= w[1]),
            "positions went up: {positions:?}"
        );
        let last = updates.last().expect("an update");
        assert_eq!(last.position, 0);
        assert!(last.admission_token.starts_with("wr1."));
        assert!(last.admission_expire_time.is_some());
        assert_eq!(last.join_number, place);
        // Place k is let through no sooner than k / rate after the room opened.
        let earliest = Duration::from_millis(place * 1000 / u64::from(RATE));
        assert!(
            elapsed + Duration::from_millis(30) >= earliest,
            "place {place} admitted after {elapsed:?}, faster than {RATE}/s allows"
        );
        admitted_at.push((place, elapsed));
    }
    // First come, first served: someone who joined 10 places later is never
    // through noticeably earlier (watchers poll every 20 ms).
    admitted_at.sort();
    for (earlier, later) in admitted_at.iter().zip(admitted_at.iter().skip(10)) {
        assert!(
            later.1 + Duration::from_millis(100) >= earlier.1,
            "{later:?} got in before {earlier:?}"
        );
    }
}

#[tokio::test]
async fn an_admitted_watcher_holds_with_its_token_and_nobody_holds_without_a_valid_one() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    let other_sale = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    configure(&mut room, &sale.event_id, true, 1_000, None)
        .await
        .expect("turning the room on");

    let (alice, bob) = (customer(), customer());
    join(&mut room, &alice, &sale.event_id)
        .await
        .expect("alice joins");
    join(&mut room, &bob, &sale.event_id)
        .await
        .expect("bob joins");
    let alice_token =
        watch_until_admitted(&mut room, &alice, &sale.event_id, Duration::from_secs(10))
            .await
            .pop()
            .expect("the admitted update")
            .admission_token;

    // No token, someone else's, garbage, another event's, an expired one.
    let refused = hold(&mut inventory, &bob, &sale.event_id, &[0], "")
        .await
        .expect_err("no token");
    assert_reason(&refused, Code::FailedPrecondition, "ADMISSION_REQUIRED");
    let refused = hold(&mut inventory, &bob, &sale.event_id, &[0], &alice_token)
        .await
        .expect_err("alice's token");
    assert_reason(
        &refused,
        Code::FailedPrecondition,
        "ADMISSION_TOKEN_INVALID",
    );
    let refused = hold(&mut inventory, &bob, &sale.event_id, &[0], "wr1.junk")
        .await
        .expect_err("garbage");
    assert_reason(
        &refused,
        Code::FailedPrecondition,
        "ADMISSION_TOKEN_INVALID",
    );
    let signer = AdmissionSigner::new(KEY.as_bytes());
    let alice_id = alice.user_id.expect("a user");
    let other_event = Uuid::parse_str(&other_sale.event_id).expect("event id");
    let event = Uuid::parse_str(&sale.event_id).expect("event id");
    let wrong_event = signer.sign(alice_id, other_event, now_ms() + 60_000);
    let refused = hold(&mut inventory, &alice, &sale.event_id, &[0], &wrong_event)
        .await
        .expect_err("other event");
    assert_reason(
        &refused,
        Code::FailedPrecondition,
        "ADMISSION_TOKEN_INVALID",
    );
    let expired = signer.sign(alice_id, event, now_ms() - 1_000);
    let refused = hold(&mut inventory, &alice, &sale.event_id, &[0], &expired)
        .await
        .expect_err("expired");
    assert_reason(
        &refused,
        Code::FailedPrecondition,
        "ADMISSION_TOKEN_EXPIRED",
    );
    let forged = AdmissionSigner::new(b"not the service's key at all").sign(
        alice_id,
        event,
        now_ms() + 60_000,
    );
    let refused = hold(&mut inventory, &alice, &sale.event_id, &[0], &forged)
        .await
        .expect_err("forged");
    assert_reason(
        &refused,
        Code::FailedPrecondition,
        "ADMISSION_TOKEN_INVALID",
    );

    // The real token works, and only for its owner.
    let held = hold(
        &mut inventory,
        &alice,
        &sale.event_id,
        &[0, 1],
        &alice_token,
    )
    .await
    .expect("alice holds");
    assert_eq!(held.seats.len(), 2);

    // An event without a waiting room is unaffected.
    hold(&mut inventory, &bob, &other_sale.event_id, &[0], "")
        .await
        .expect("no room, no token needed");

    // Turning the room off lets everyone hold without a token.
    configure(&mut room, &sale.event_id, false, 0, None)
        .await
        .expect("turning the room off");
    hold(&mut inventory, &bob, &sale.event_id, &[5], "")
        .await
        .expect("bob holds once the room is off");
    hold(&mut inventory, &customer(), &sale.event_id, &[6], "")
        .await
        .expect("anyone holds once the room is off");
    let refused = join(&mut room, &customer(), &sale.event_id)
        .await
        .expect_err("room off");
    assert_reason(&refused, Code::FailedPrecondition, "WAITING_ROOM_OFF");
}

#[tokio::test]
async fn nobody_is_let_through_before_the_opening_time() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    let opens = now_ms() + 1_500;
    let configured = configure(&mut room, &sale.event_id, true, 1_000, Some(at_ms(opens)))
        .await
        .expect("turning the room on");
    assert_eq!(configured.open_time, Some(at_ms(opens)));
    let user = customer();
    let status = join(&mut room, &user, &sale.event_id)
        .await
        .expect("joining");
    assert_eq!((status.join_number, status.position), (1, 1));
    let wait = status.estimated_wait.expect("an estimate");
    assert!(wait.seconds >= 1 || wait.nanos >= 500_000_000, "{wait:?}");
    let updates =
        watch_until_admitted(&mut room, &user, &sale.event_id, Duration::from_secs(10)).await;
    assert!(now_ms() + 30 >= opens, "admitted before the room opened");
    assert_eq!(
        updates.first().map(|u| u.state),
        Some(pb::WaitingRoomState::Waiting as i32)
    );
}

#[tokio::test]
async fn a_room_that_is_on_survives_redis_losing_its_state() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    let reopened = event_on_sale(&world).await;
    let mut inventory = world.inventory.clone();
    configure(&mut room, &sale.event_id, true, 1_000, None)
        .await
        .expect("turning the room on");
    configure(&mut room, &reopened.event_id, true, 1_000, None)
        .await
        .expect("turning the other room on");
    configure(&mut room, &reopened.event_id, false, 1_000, None)
        .await
        .expect("and off again");
    let (alice, bob) = (customer(), customer());
    join(&mut room, &alice, &sale.event_id)
        .await
        .expect("alice joins");

    assert!(world.flush_redis().await > 0);

    // The first hold after the flush rebuilds the event's state, room
    // included: still no way in without a token.
    let refused = hold(&mut inventory, &bob, &sale.event_id, &[0], "")
        .await
        .expect_err("the room is still on");
    assert_reason(&refused, Code::FailedPrecondition, "ADMISSION_REQUIRED");
    // The line went with Redis: a watcher is told to join again, and the
    // new line admits at the room's rate.
    let gone = room
        .watch_queue(as_caller(
            &alice,
            pb::WatchQueueRequest {
                event_id: sale.event_id.clone(),
            },
        ))
        .await
        .expect_err("alice's place went with the flush");
    assert_reason(&gone, Code::FailedPrecondition, "NOT_IN_QUEUE");
    let again = join(&mut room, &alice, &sale.event_id)
        .await
        .expect("alice joins again");
    assert_eq!(again.join_number, 1);
    let token = watch_until_admitted(&mut room, &alice, &sale.event_id, Duration::from_secs(10))
        .await
        .pop()
        .expect("the admitted update")
        .admission_token;
    hold(&mut inventory, &alice, &sale.event_id, &[0], &token)
        .await
        .expect("alice holds with her new token");
    // A room turned off stays off.
    hold(&mut inventory, &bob, &reopened.event_id, &[1], "")
        .await
        .expect("no room, no token");

    // Joining first after a flush (no hold has rebuilt anything yet) finds
    // the room too, instead of being told to go straight to the seats.
    assert!(world.flush_redis().await > 0);
    let first = join(&mut room, &bob, &sale.event_id)
        .await
        .expect("the room is back for joiners");
    assert_eq!(first.join_number, 1);
}

#[tokio::test]
async fn bad_input_unknown_events_and_non_admins_are_refused() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;

    let request = |event_id: &str, enabled, rate, open_time| pb::ConfigureWaitingRoomRequest {
        event_id: event_id.to_owned(),
        enabled,
        admission_rate_per_second: rate,
        open_time,
    };
    let refused = room
        .configure_waiting_room(as_caller(
            &customer(),
            request(&sale.event_id, true, 10, None),
        ))
        .await
        .expect_err("a customer configuring");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = room
        .configure_waiting_room(request(&sale.event_id, true, 10, None))
        .await
        .expect_err("nobody configuring");
    assert_eq!(refused.code(), Code::Unauthenticated);

    for (bad, field) in [
        (request("not-a-uuid", true, 10, None), "event_id"),
        (request("", true, 10, None), "event_id"),
        (
            request(&sale.event_id, true, 0, None),
            "admission_rate_per_second",
        ),
        (
            request(&sale.event_id, true, 1_000_001, None),
            "admission_rate_per_second",
        ),
        (
            request(
                &sale.event_id,
                true,
                10,
                Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -5,
                }),
            ),
            "open_time",
        ),
    ] {
        let refused = room
            .configure_waiting_room(as_caller(&admin(), bad))
            .await
            .expect_err("bad input");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(field_of(&refused).as_deref(), Some(field));
    }
    let unknown = Uuid::new_v4().to_string();
    let refused = configure(&mut room, &unknown, true, 10, None)
        .await
        .expect_err("unknown event");
    assert_eq!(refused.code(), Code::NotFound);
    let refused = join(&mut room, &customer(), &unknown)
        .await
        .expect_err("unknown event");
    assert_eq!(refused.code(), Code::NotFound);
    let refused = join(&mut room, &customer(), "nope")
        .await
        .expect_err("bad id");
    assert_eq!(field_of(&refused).as_deref(), Some("event_id"));

    // Joining needs a user and a room that is on; watching needs a place.
    let refused = join(&mut room, &customer(), &sale.event_id)
        .await
        .expect_err("room off");
    assert_reason(&refused, Code::FailedPrecondition, "WAITING_ROOM_OFF");
    configure(&mut room, &sale.event_id, true, 10, None)
        .await
        .expect("turning the room on");
    let refused = room
        .join_queue(pb::JoinQueueRequest {
            event_id: sale.event_id.clone(),
        })
        .await
        .expect_err("anonymous join");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = room
        .watch_queue(as_caller(
            &customer(),
            pb::WatchQueueRequest {
                event_id: sale.event_id.clone(),
            },
        ))
        .await
        .expect_err("watching without joining");
    assert_reason(&refused, Code::FailedPrecondition, "NOT_IN_QUEUE");
}
