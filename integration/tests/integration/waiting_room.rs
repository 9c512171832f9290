//! The waiting room end to end: the pre-queue drawn at opening from a
//! published seed (recomputed here from the seed and the joiners), arrival
//! order after opening, one place per user under concurrent joins, admission
//! at the configured rate by Redis time and never past the cap of active
//! shoppers, admission tokens that HoldSeats demands on such an event (and
//! only on such an event) for one hold sequence, and bad input.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_contracts::inventory::v1::waiting_room_service_client::WaitingRoomServiceClient;
use boxoffice_inventory::config::{ENV_ADMISSION_TOKEN_TTL, ENV_WAITING_ROOM_KEY, ENV_WATCH_POLL};
use boxoffice_inventory::domain::admission::AdmissionSigner;
use boxoffice_inventory::domain::{DrawSeed, draw_order};
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::{field_of, reason_of};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::harness::{InventoryWorld, admin, as_caller, customer, eventually, redis_url};
use crate::inventory::{Inventory, commit, event_on_sale};

type WaitingRoom = WaitingRoomServiceClient<Channel>;

pub(crate) const KEY: &str = "waiting-room-test-key-0123456789";

async fn world() -> (InventoryWorld, WaitingRoom) {
    let world = InventoryWorld::with(
        &redis_url(),
        &[(ENV_WAITING_ROOM_KEY, KEY), (ENV_WATCH_POLL, "20")],
    )
    .await;
    let room = WaitingRoomServiceClient::new(world.server.channel().await);
    (world, room)
}

pub(crate) fn assert_reason(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

pub(crate) fn at_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn configure(
    room: &mut WaitingRoom,
    event_id: &str,
    enabled: bool,
    rate: u32,
    open_time: Option<prost_types::Timestamp>,
) -> Result<pb::WaitingRoom, Status> {
    configure_capped(room, event_id, enabled, rate, 0, open_time).await
}

pub(crate) async fn configure_capped(
    room: &mut WaitingRoom,
    event_id: &str,
    enabled: bool,
    rate: u32,
    max_active_shoppers: u32,
    open_time: Option<prost_types::Timestamp>,
) -> Result<pb::WaitingRoom, Status> {
    room.configure_waiting_room(as_caller(
        &admin(),
        pb::ConfigureWaitingRoomRequest {
            event_id: event_id.to_owned(),
            enabled,
            admission_rate_per_second: rate,
            open_time,
            max_active_shoppers,
        },
    ))
    .await
    .map(tonic::Response::into_inner)
}

pub(crate) async fn room_report(room: &mut WaitingRoom, event_id: &str) -> pb::WaitingRoom {
    room.get_waiting_room(as_caller(
        &admin(),
        pb::GetWaitingRoomRequest {
            event_id: event_id.to_owned(),
        },
    ))
    .await
    .expect("reading the room")
    .into_inner()
}

/// Every entrant of the recorded draw, paging as an auditor would: (place,
/// user) in place order, and the total the server gave.
pub(crate) async fn draw_entrants(
    room: &mut WaitingRoom,
    event_id: &str,
    page_size: i32,
) -> Result<(Vec<(u64, Uuid)>, u64), Status> {
    let (mut entrants, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = room
            .list_draw_entrants(as_caller(
                &admin(),
                pb::ListDrawEntrantsRequest {
                    event_id: event_id.to_owned(),
                    page_size,
                    page_token,
                },
            ))
            .await?
            .into_inner();
        assert!(page.entrants.len() <= page_size.max(1) as usize);
        let total = page.total_count;
        entrants.extend(page.entrants.iter().map(|entrant| {
            let user = Uuid::parse_str(&entrant.user_id).expect("a user id");
            (entrant.place, user)
        }));
        if page.next_page_token.is_empty() {
            return Ok((entrants, total));
        }
        page_token = page.next_page_token;
    }
}

/// The audit from what the server publishes alone: the entrants in place
/// order are exactly `draw_order(seed, entrants)`, at places 1..=n.
pub(crate) fn audit_draw(seed: &DrawSeed, entrants: &[(u64, Uuid)]) {
    let users: Vec<Uuid> = entrants.iter().map(|(_, user)| *user).collect();
    let places: Vec<u64> = entrants.iter().map(|(place, _)| *place).collect();
    assert_eq!(
        places,
        (1..=entrants.len() as u64).collect::<Vec<u64>>(),
        "places 1..n, each once"
    );
    assert!(
        draw_order(seed, &users) == users,
        "the recorded order is the seed's order"
    );
}

pub(crate) async fn join(
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
pub(crate) async fn watch_until_admitted(
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

pub(crate) async fn hold(
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

/// Joins every user at once; answers their statuses in the same order.
pub(crate) async fn join_all(
    room: &WaitingRoom,
    users: &[Caller],
    event_id: &str,
) -> Vec<pb::QueueStatus> {
    let mut tasks = Vec::new();
    for user in users {
        let (mut room, user) = (room.clone(), user.clone());
        let event_id = event_id.to_owned();
        tasks.push(tokio::spawn(async move {
            join(&mut room, &user, &event_id).await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("join task").expect("joining"));
    }
    statuses
}

#[tokio::test]
async fn the_pre_queue_is_drawn_at_opening_reproducibly_from_the_published_seed() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    // One per second: the line barely moves while the test looks at it.
    configure(
        &mut room,
        &sale.event_id,
        true,
        1,
        Some(at_ms(now_ms() + 3_600_000)),
    )
    .await
    .expect("turning the room on");

    // 200 users join at once before opening: nobody has a place yet, and
    // joining again (many times at once) changes nothing.
    let early: Vec<Caller> = (0..200).map(|_| customer()).collect();
    for status in join_all(&room, &early, &sale.event_id).await {
        assert_eq!(status.state, pb::WaitingRoomState::PreQueue as i32);
        assert_eq!((status.join_number, status.position), (0, 0));
        let wait = status.estimated_wait.expect("an estimate");
        assert!(
            wait.seconds > 3_000,
            "the wait runs until opening: {wait:?}"
        );
    }
    join_all(&room, &early[..20], &sale.event_id).await;
    let before = room_report(&mut room, &sale.event_id).await;
    assert_eq!((before.joined_count, before.pre_queue_count), (200, 200));
    assert!(before.draw_seed.is_empty(), "no seed before opening");
    assert_eq!(before.draw_time, None);
    let not_yet = draw_entrants(&mut room, &sale.event_id, 0)
        .await
        .expect_err("no draw before opening");
    assert_reason(&not_yet, Code::FailedPrecondition, "DRAW_NOT_RECORDED");

    // The admin opens the room now: the draw follows the first look at it.
    configure(&mut room, &sale.event_id, true, 1, Some(at_ms(now_ms())))
        .await
        .expect("opening now");
    let first = eventually(Duration::from_secs(20), "the draw", || {
        let mut room = room.clone();
        let (user, event_id) = (early[0].clone(), sale.event_id.clone());
        async move {
            let status = join(&mut room, &user, &event_id).await.expect("joining");
            (status.state != pb::WaitingRoomState::PreQueue as i32).then_some(status)
        }
    })
    .await;
    assert!((1..=200).contains(&first.join_number), "{first:?}");

    // Later arrivals line up behind the pre-queue in arrival order.
    let mut later_places = Vec::new();
    for _ in 0..5 {
        let status = join(&mut room, &customer(), &sale.event_id)
            .await
            .expect("joining after opening");
        later_places.push(status.join_number);
    }
    assert_eq!(later_places, vec![201, 202, 203, 204, 205]);

    // The published seed recomputes every drawn place (the audit).
    let after = room_report(&mut room, &sale.event_id).await;
    let seed = DrawSeed::from_hex(&after.draw_seed).expect("a published seed");
    assert!(after.draw_time.is_some());
    assert_eq!(after.pre_queue_count, 200);
    let joiners: Vec<Uuid> = early
        .iter()
        .map(|user| user.user_id.expect("a user"))
        .collect();
    let order = draw_order(&seed, &joiners);
    let expected: HashMap<Uuid, u64> = order.iter().copied().zip(1u64..).collect();
    let statuses = join_all(&room, &early, &sale.event_id).await;
    let mut places = BTreeSet::new();
    for (user, status) in joiners.iter().zip(&statuses) {
        assert_ne!(status.state, pb::WaitingRoomState::PreQueue as i32);
        assert_eq!(
            Some(&status.join_number),
            expected.get(user),
            "place of {user}"
        );
        places.insert(status.join_number);
    }
    assert_eq!(
        places,
        (1..=200).collect::<BTreeSet<u64>>(),
        "one place each"
    );
    // Arriving first bought nothing: the drawn order is not arrival order
    // (200 users in arrival order by chance: about 1 in 10^374).
    let arrival_places: Vec<u64> = statuses.iter().map(|s| s.join_number).collect();
    assert_ne!(arrival_places, (1..=200).collect::<Vec<u64>>());
    // The server's own record says the same, page by page.
    let (entrants, total) = draw_entrants(&mut room, &sale.event_id, 7)
        .await
        .expect("listing the draw");
    assert_eq!(total, 200);
    audit_draw(&seed, &entrants);
    let listed: HashMap<Uuid, u64> = entrants.iter().map(|(p, u)| (*u, *p)).collect();
    assert_eq!(
        listed, expected,
        "the record is the draw the users were told"
    );
    // Joining again keeps the drawn place.
    for (user, status) in early.iter().zip(&statuses).take(10) {
        let again = join(&mut room, user, &sale.event_id)
            .await
            .expect("joining again");
        assert_eq!(again.join_number, status.join_number);
    }
}

/// 12,000 early joiners: more than one page of the draw's read and a dozen
/// of its write batches. A tenth of them give up on their join (a client
/// deadline far below what it takes) the way a crowd's phones do; their
/// joins may still land, so only the server's record can be audited, and it
/// must be whole: everyone the server told "pre-queue" is in it, at the
/// place the seed gives, and those who arrive while the draw runs queue
/// behind all of it.
#[tokio::test]
async fn twelve_thousand_early_joiners_are_drawn_and_recorded_whole() {
    const EARLY: usize = 12_000;
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    configure(
        &mut room,
        &sale.event_id,
        true,
        1,
        Some(at_ms(now_ms() + 3_600_000)),
    )
    .await
    .expect("turning the room on");

    let users: Vec<Caller> = (0..EARLY).map(|_| customer()).collect();
    let told_early = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gave_up = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicU64::new(0));
    let users = Arc::new(users);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (room, users, next) = (room.clone(), users.clone(), next.clone());
        let (told_early, gave_up, event_id) =
            (told_early.clone(), gave_up.clone(), sale.event_id.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(user) = users.get(index) else { return };
                let mut request = as_caller(
                    user,
                    pb::JoinQueueRequest {
                        event_id: event_id.clone(),
                    },
                );
                if index.is_multiple_of(10) {
                    request.set_timeout(Duration::from_micros(50));
                }
                match room.clone().join_queue(request).await {
                    Ok(status) => {
                        let status = status.into_inner();
                        assert_eq!(status.state, pb::WaitingRoomState::PreQueue as i32);
                        told_early
                            .lock()
                            .expect("list")
                            .push(user.user_id.expect("a user"));
                    }
                    Err(status) => {
                        assert!(
                            index.is_multiple_of(10),
                            "only the impatient fail: {status:?}"
                        );
                        gave_up
                            .lock()
                            .expect("set")
                            .insert(user.user_id.expect("a user"));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("joiner task");
    }
    let before = room_report(&mut room, &sale.event_id).await;
    let told_early: BTreeSet<Uuid> = told_early.lock().expect("list").iter().copied().collect();
    assert!(before.pre_queue_count >= told_early.len() as u64);
    assert!(before.pre_queue_count <= EARLY as u64);

    // Open now; a crowd keeps arriving while the draw runs.
    configure(&mut room, &sale.event_id, true, 1, Some(at_ms(now_ms())))
        .await
        .expect("opening now");
    let drawn = Arc::new(AtomicBool::new(false));
    let mut late = Vec::new();
    for _ in 0..8 {
        let (room, drawn, event_id) = (room.clone(), drawn.clone(), sale.event_id.clone());
        late.push(tokio::spawn(async move {
            let mut places = Vec::new();
            while !drawn.load(Ordering::Relaxed) || places.len() < 5 {
                let status = join(&mut room.clone(), &customer(), &event_id)
                    .await
                    .expect("joining after opening");
                assert_ne!(status.state, pb::WaitingRoomState::PreQueue as i32);
                places.push(status.join_number);
            }
            places
        }));
    }
    let entrants = eventually(Duration::from_secs(60), "the recorded draw", || {
        let mut room = room.clone();
        let event_id = sale.event_id.clone();
        async move { draw_entrants(&mut room, &event_id, 10_000).await.ok() }
    })
    .await;
    // Someone told "pre-queue" is told their drawn place now.
    eventually(Duration::from_secs(60), "places after the draw", || {
        let mut room = room.clone();
        let (user, event_id) = (users[1].clone(), sale.event_id.clone());
        async move {
            let status = join(&mut room, &user, &event_id).await.expect("looking");
            (status.state != pb::WaitingRoomState::PreQueue as i32).then_some(())
        }
    })
    .await;
    drawn.store(true, Ordering::Relaxed);

    let after = room_report(&mut room, &sale.event_id).await;
    let seed = DrawSeed::from_hex(&after.draw_seed).expect("a published seed");
    let (entrants, total) = entrants;
    assert_eq!(total, after.pre_queue_count);
    assert_eq!(entrants.len() as u64, total);
    audit_draw(&seed, &entrants);
    let listed: HashMap<Uuid, u64> = entrants.iter().map(|(p, u)| (*u, *p)).collect();
    let gave_up = gave_up.lock().expect("set").clone();
    for user in &told_early {
        assert!(
            listed.contains_key(user),
            "{user} was told pre-queue but is not in the draw"
        );
    }
    for user in listed.keys() {
        assert!(
            gave_up.contains(user) || told_early.contains(user),
            "{user} is in the draw without having joined"
        );
    }
    // Those who gave up are told their drawn place if their join landed,
    // else a place behind the draw.
    for user in users.iter().step_by(10) {
        let status = join(&mut room, user, &sale.event_id)
            .await
            .expect("looking again");
        match listed.get(&user.user_id.expect("a user")) {
            Some(place) => assert_eq!(status.join_number, *place),
            None => assert!(status.join_number > total, "a late join is behind the draw"),
        }
    }
    let mut late_places = Vec::new();
    for task in late {
        late_places.extend(task.await.expect("late joiners"));
    }
    assert!(
        late_places.iter().all(|place| *place > total),
        "every arrival after opening queues behind the {total} drawn"
    );
    let unique: BTreeSet<u64> = late_places.iter().copied().collect();
    assert_eq!(unique.len(), late_places.len(), "one place each");
}

#[tokio::test]
async fn two_hundred_concurrent_joins_after_opening_get_places_one_to_two_hundred_once_each_in_batches()
 {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    configure(&mut room, &sale.event_id, true, 1, None)
        .await
        .expect("turning the room on");
    let users: Vec<Caller> = (0..200).map(|_| customer()).collect();
    let calls = world.component.waiting_room.redis_calls();
    let statuses = join_all(&room, &users, &sale.event_id).await;
    let calls = world.component.waiting_room.redis_calls() - calls;
    let places: BTreeSet<u64> = statuses.iter().map(|s| s.join_number).collect();
    assert_eq!(places, (1..=200).collect::<BTreeSet<u64>>());
    // Joins that arrive together share a Redis call: never more than one
    // per join, and fewer under a burst.
    assert!(calls < 200, "{calls} Redis calls for 200 joins at once");
    let again = join_all(&room, &users, &sale.event_id).await;
    for (first, second) in statuses.iter().zip(&again) {
        assert_eq!(first.join_number, second.join_number);
    }
    let report = room_report(&mut room, &sale.event_id).await;
    assert_eq!((report.joined_count, report.pre_queue_count), (200, 0));
    assert!(report.draw_seed.is_empty(), "no opening time, no draw");

    // The room's Redis state goes a day after the event ends (in 11 days).
    let day_ms = 86_400_000;
    for key in ["room", "line"] {
        let ttl = key_ttl_ms(&world, &sale.event_id, key).await;
        assert!(
            (12 * day_ms - 3_600_000..=12 * day_ms).contains(&ttl),
            "{key} expires in {ttl} ms"
        );
    }
}

/// Milliseconds until a key of the event's room expires (-1: never).
async fn key_ttl_ms(world: &InventoryWorld, event_id: &str, key: &str) -> i64 {
    use fred::prelude::{ClientLike as _, KeysInterface as _};
    let config = fred::prelude::Config::from_url(&world.redis_url).expect("redis url");
    let client = fred::prelude::Builder::from_config(config)
        .build()
        .expect("redis client");
    client.init().await.expect("connecting to redis");
    let ttl: i64 = client
        .pttl(format!("{}inv:{{{event_id}}}:{key}", world.key_prefix))
        .await
        .expect("reading a key's ttl");
    let _ = client.quit().await;
    ttl
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
    // One hold sequence per admission: once alice has given back all she
    // held, her (unexpired, genuine) token is spent.
    release(&mut inventory, &alice, &held).await;
    let refused = hold(&mut inventory, &alice, &sale.event_id, &[0], &alice_token)
        .await
        .expect_err("a spent token");
    assert_reason(&refused, Code::FailedPrecondition, "ADMISSION_USED");
    let finished = room
        .watch_queue(as_caller(
            &alice,
            pb::WatchQueueRequest {
                event_id: sale.event_id.clone(),
            },
        ))
        .await
        .expect("watching")
        .into_inner()
        .message()
        .await
        .expect("an update")
        .expect("one update");
    assert_eq!(finished.state, pb::WaitingRoomState::Finished as i32);
    assert!(finished.admission_token.is_empty());

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

pub(crate) async fn release(inventory: &mut Inventory, caller: &Caller, held: &pb::Hold) {
    inventory
        .release_hold(as_caller(
            caller,
            pb::ReleaseHoldRequest {
                name: held.name.clone(),
            },
        ))
        .await
        .expect("releasing");
}

#[tokio::test]
async fn the_active_shopper_cap_is_never_exceeded_under_a_thousand_concurrent_admissions() {
    const CAP: u64 = 20;
    const USERS: usize = 1_000;
    // Seats 0..22 are the seated ones; at most CAP shoppers hold one each,
    // and only two buyers take a seat for good, so a free one always exists.
    const SEATS: u32 = 22;
    let world = InventoryWorld::with(
        &redis_url(),
        &[
            (ENV_WAITING_ROOM_KEY, KEY),
            (ENV_WATCH_POLL, "250"),
            (ENV_ADMISSION_TOKEN_TTL, "5"),
        ],
    )
    .await;
    let mut room = WaitingRoomServiceClient::new(world.server.channel().await);
    let sale = event_on_sale(&world).await;
    // A rate far above what the cap allows: the cap alone sets the pace.
    configure_capped(&mut room, &sale.event_id, true, 100_000, CAP as u32, None)
        .await
        .expect("turning the room on");
    let users: Vec<Caller> = (0..USERS).map(|_| customer()).collect();
    let statuses = join_all(&room, &users, &sale.event_id).await;

    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (mut room, event_id, done) = (room.clone(), sale.event_id.clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::SeqCst) {
                let report = room_report(&mut room, &event_id).await;
                assert!(
                    report.active_shoppers <= CAP,
                    "{} active shoppers, cap {CAP}",
                    report.active_shoppers
                );
                most = most.max(report.active_shoppers);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            most
        })
    };
    // Between receiving its token and asking to end its sequence a client
    // is surely an active shopper, so this count never exceeds the
    // server's.
    let shopping = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (user, status) in users.into_iter().zip(statuses) {
        let mut room = room.clone();
        let mut inventory = world.inventory.clone();
        let (event_id, shopping, peak) = (sale.event_id.clone(), shopping.clone(), peak.clone());
        let place = status.join_number;
        tasks.push(tokio::spawn(async move {
            let token = watch_until_admitted(&mut room, &user, &event_id, Duration::from_secs(180))
                .await
                .pop()
                .expect("the admitted update")
                .admission_token;
            let now = shopping.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            if place % 100 == 7 {
                // Walks away: the admission runs out and frees the place.
                shopping.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            let mut seat = (place as u32 * 7) % SEATS;
            let held = loop {
                match hold(&mut inventory, &user, &event_id, &[seat], &token).await {
                    Ok(held) => break held,
                    Err(status) if reason_of(&status).as_deref() == Some("SEAT_UNAVAILABLE") => {
                        seat = (seat + 1) % SEATS;
                    }
                    Err(status) => panic!("place {place} could not hold: {status:?}"),
                }
            };
            shopping.fetch_sub(1, Ordering::SeqCst);
            if place % 500 == 0 {
                let user_id = user.user_id.expect("a user").to_string();
                commit(&mut inventory, &held, &user_id, Uuid::new_v4())
                    .await
                    .expect("buying");
            } else {
                release(&mut inventory, &user, &held).await;
            }
            if place % 10 == 3 {
                // The seat just released may be someone else's by now: a
                // seat taken answers before the admission is looked at.
                let mut tries = 0;
                let refused = loop {
                    tries += 1;
                    assert!(tries <= SEATS, "every seat taken: nothing to try with");
                    let refused = hold(&mut inventory, &user, &event_id, &[seat], &token)
                        .await
                        .expect_err("a second sequence on one admission");
                    if reason_of(&refused).as_deref() != Some("SEAT_UNAVAILABLE") {
                        break refused;
                    }
                    seat = (seat + 1) % SEATS;
                };
                assert_reason(&refused, Code::FailedPrecondition, "ADMISSION_USED");
            }
        }));
    }
    for task in tasks {
        task.await.expect("shopper");
    }
    done.store(true, Ordering::SeqCst);
    let server_most = monitor.await.expect("monitor");
    let client_most = peak.load(Ordering::SeqCst);
    assert!(
        client_most <= CAP,
        "{client_most} shopped at once, cap {CAP}"
    );
    assert!(server_most <= CAP);
    assert!(client_most > 1, "shoppers were admitted concurrently");
    let report = room_report(&mut room, &sale.event_id).await;
    assert_eq!(report.admitted_count, USERS as u64);
    assert!(report.admission_pace_per_second > 0.0, "{report:?}");
    // The walkers' admissions run out too.
    eventually(Duration::from_secs(30), "every admission over", || {
        let (mut room, event_id) = (room.clone(), sale.event_id.clone());
        async move { (room_report(&mut room, &event_id).await.active_shoppers == 0).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn operators_change_the_cap_and_the_rate_live() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    configure_capped(&mut room, &sale.event_id, true, 1_000, 1, None)
        .await
        .expect("turning the room on");
    let users: Vec<Caller> = (0..3).map(|_| customer()).collect();
    join_all(&room, &users, &sale.event_id).await;
    let watcher = room.clone();
    let admitted = |expected: u64| {
        let (room, event_id) = (watcher.clone(), sale.event_id.clone());
        move || {
            let (mut room, event_id) = (room.clone(), event_id.clone());
            async move {
                let report = room_report(&mut room, &event_id).await;
                (report.admitted_count == expected && report.active_shoppers == expected)
                    .then_some(report)
            }
        }
    };
    let report = eventually(Duration::from_secs(10), "one admitted", admitted(1)).await;
    assert_eq!(report.max_active_shoppers, 1);
    // The cap holds: a while later still one.
    let later = room_report(&mut room, &sale.event_id).await;
    assert_eq!(later.admitted_count, 1);
    // Raised live: the others go through.
    let raised = configure_capped(&mut room, &sale.event_id, true, 1_000, 3, None)
        .await
        .expect("raising the cap");
    assert_eq!(raised.max_active_shoppers, 3);
    eventually(Duration::from_secs(10), "three admitted", admitted(3)).await;
    // The rate changes live too, and the room says so.
    let slower = configure_capped(&mut room, &sale.event_id, true, 5, 3, None)
        .await
        .expect("slowing down");
    assert_eq!(slower.admission_rate_per_second, 5);
    assert_eq!(
        room_report(&mut room, &sale.event_id)
            .await
            .admission_rate_per_second,
        5
    );
}

#[tokio::test]
async fn a_hundred_watchers_of_one_event_share_one_poller() {
    let (world, mut room) = world().await;
    let sale = event_on_sale(&world).await;
    // One a second: the line moves, slowly, while it is watched.
    configure(&mut room, &sale.event_id, true, 1, None)
        .await
        .expect("turning the room on");
    let users: Vec<Caller> = (0..100).map(|_| customer()).collect();
    join_all(&room, &users, &sale.event_id).await;
    let mut streams = Vec::new();
    for user in &users {
        let mut stream = room
            .watch_queue(as_caller(
                user,
                pb::WatchQueueRequest {
                    event_id: sale.event_id.clone(),
                },
            ))
            .await
            .expect("watching")
            .into_inner();
        stream
            .message()
            .await
            .expect("the first update")
            .expect("an update");
        streams.push(stream);
    }
    // With every watcher settled, fifty of the poller's rounds cost about
    // one Redis call a round for all of them together, not one per watcher
    // per round (5,000).
    let waiting_room = world.component.waiting_room.clone();
    let (calls_before, polls_before) = (waiting_room.redis_calls(), waiting_room.room_polls());
    let polls = eventually(Duration::from_secs(30), "fifty poller rounds", || {
        let waiting_room = waiting_room.clone();
        async move {
            let polls = waiting_room.room_polls() - polls_before;
            (polls >= 50).then_some(polls)
        }
    })
    .await;
    let calls = waiting_room.redis_calls() - calls_before;
    assert!(
        calls * 5 <= polls * 12,
        "{calls} Redis calls in {polls} poller rounds for 100 watchers"
    );
    // And they are told: the last in line hears its position go down.
    let last = streams.last_mut().expect("a stream");
    let update = tokio::time::timeout(Duration::from_secs(10), last.message())
        .await
        .expect("an update within the keepalive")
        .expect("the stream")
        .expect("an update");
    assert!(update.position < 100, "{update:?}");
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
    assert_eq!(status.state, pb::WaitingRoomState::PreQueue as i32);
    let wait = status.estimated_wait.expect("an estimate");
    assert!(wait.seconds >= 1 || wait.nanos >= 500_000_000, "{wait:?}");
    let updates =
        watch_until_admitted(&mut room, &user, &sale.event_id, Duration::from_secs(10)).await;
    assert!(now_ms() + 30 >= opens, "admitted before the room opened");
    assert_eq!(
        updates.first().map(|u| u.state),
        Some(pb::WaitingRoomState::PreQueue as i32)
    );
    // The only early joiner drew place 1.
    assert_eq!(updates.last().map(|u| u.join_number), Some(1));
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
        max_active_shoppers: 0,
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
    // Reading the room (its seed, its counters) is for admins too.
    let refused = room
        .get_waiting_room(as_caller(
            &customer(),
            pb::GetWaitingRoomRequest {
                event_id: sale.event_id.clone(),
            },
        ))
        .await
        .expect_err("a customer reading the room");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // And so is the draw's list of entrants, whatever the paging.
    for (page_size, page_token) in [(0, ""), (10_001, ""), (-1, ""), (0, "junk")] {
        let request = || pb::ListDrawEntrantsRequest {
            event_id: sale.event_id.clone(),
            page_size,
            page_token: page_token.to_owned(),
        };
        if (page_size, page_token) == (0, "") {
            let refused = room
                .list_draw_entrants(as_caller(&customer(), request()))
                .await
                .expect_err("a customer listing the draw");
            assert_eq!(refused.code(), Code::PermissionDenied);
        } else {
            let bad = room
                .list_draw_entrants(as_caller(&admin(), request()))
                .await
                .expect_err("bad paging");
            assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
            let field = if page_token.is_empty() {
                "page_size"
            } else {
                "page_token"
            };
            assert_eq!(field_of(&bad).as_deref(), Some(field), "{bad:?}");
        }
    }

    let mut over_cap = request(&sale.event_id, true, 10, None);
    over_cap.max_active_shoppers = 1_000_001;
    for (bad, field) in [
        (over_cap, "max_active_shoppers"),
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
