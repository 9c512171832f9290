//! `boxoffice-load onsale`: the seeds' on-sale through the fair waiting room.
//! A 20,000-seat event behind a room with an opening time, a cap on active
//! shoppers and an admission rate; a crowd of fans sends `requests` calls
//! through the edge at a fixed arrival rate. Each call is what that fan
//! would do next: join the line (or look again at their place, before and
//! after opening), hold two seats best-available with their admission token
//! once they have one (and buy them, as checkout would, inside the mesh), or
//! after the sale keep asking. It reports the throughput, the latency of the
//! admitted HoldSeats, that nothing was oversold, the pre-queue draw audited
//! from the published seed, and the process's peak memory.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_benches::load::{self, LoadSpec, Mode, Recording};
use boxoffice_benches::report::{Check, Machine, Report};
use boxoffice_benches::system::{BenchSystem, channels};
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::waiting_room_service_client::WaitingRoomServiceClient;
use boxoffice_inventory::domain::{DrawSeed, draw_order};
use boxoffice_runtime::Caller;
use hdrhistogram::Histogram;
use tonic::Code;
use uuid::Uuid;

use crate::{Bearer, World, authed, bearer, best_available, pick};

pub(crate) struct OnsaleSettings {
    pub(crate) requests: u64,
    pub(crate) rate: f64,
    pub(crate) fans: usize,
    pub(crate) admission_rate: u32,
    pub(crate) max_active: u32,
    pub(crate) pre_queue: Duration,
    pub(crate) out: std::path::PathBuf,
}

/// Where a fan is.
const NEW: u8 = 0;
const IN_LINE: u8 = 1;
const ADMITTED: u8 = 2;
/// A call of theirs is holding right now (one hold sequence per admission).
const HOLDING: u8 = 3;
const DONE: u8 = 4;

#[derive(Default)]
struct Fan {
    state: AtomicU8,
    /// Joined before opening (their place comes from the draw).
    early: AtomicBool,
    /// Their place once they have one (0 before).
    place: AtomicU64,
    token: Mutex<String>,
}

struct Crowd {
    ids: Vec<Uuid>,
    tokens: Vec<Bearer>,
    fans: Vec<Fan>,
    /// Latency of HoldSeats calls made with an admission token (µs).
    admitted_holds: Mutex<Histogram<u64>>,
    /// Seats of the holds that were bought.
    sold: Mutex<Vec<u32>>,
    sold_holds: AtomicU64,
    /// Failures by step, code and message (the system's own errors named).
    failures: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Crowd {
    fn failed(&self, step: &str, status: &tonic::Status) -> Code {
        let code = status.code();
        let what = if matches!(code, Code::Unknown | Code::Internal | Code::Unavailable) {
            let message: String = status.message().chars().take(80).collect();
            format!("{step} {code:?}: {message}")
        } else {
            format!("{step} {code:?}")
        };
        if let Ok(mut failures) = self.failures.lock() {
            *failures.entry(what).or_default() += 1;
        }
        code
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The peak resident memory of this process (the whole system runs in it).
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) async fn onsale(settings: OnsaleSettings) -> anyhow::Result<()> {
    let bench = BenchSystem::start_with(false).await?;
    let edge = channels(bench.system.edge_addr, 4).await?;
    let internal = channels(bench.system.internal_addr, 2).await?;
    let admin_token = bearer(&bench.token(Uuid::new_v4(), &["admin"])?)?;
    let world = World {
        bench,
        edge,
        admin_token,
        users: Arc::new(Vec::new()),
        user_tokens: Arc::new(Vec::new()),
        demo_events: Arc::new(Vec::new()),
    };
    let event_id = world.stadium_event("The Seeds").await?;
    // Only the event's tickets to wait for (no demo data): a short limit,
    // so a machine busy with other work does not hold the run up.
    world.bench.settle(Duration::from_secs(20)).await?;
    world.bench.checkpoint().await?;

    eprintln!("making {} fans ...", settings.fans);
    let ids: Vec<Uuid> = (0..settings.fans).map(|_| Uuid::new_v4()).collect();
    let tokens: Vec<Bearer> = ids
        .iter()
        .map(|id| bearer(&world.bench.token(*id, &["customer"])?))
        .collect::<anyhow::Result<_>>()?;
    let crowd = Arc::new(Crowd {
        fans: (0..ids.len()).map(|_| Fan::default()).collect(),
        ids,
        tokens,
        admitted_holds: Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).context("a latency histogram")?,
        ),
        sold: Mutex::new(Vec::new()),
        sold_holds: AtomicU64::new(0),
        failures: Mutex::default(),
    });

    // The room opens `pre_queue` after the crowd starts arriving.
    let opens_ms = now_ms() + settings.pre_queue.as_millis() as i64;
    let mut room = WaitingRoomServiceClient::new(world.edge[0].clone());
    room.configure_waiting_room(authed(
        &world.admin_token,
        inventory_pb::ConfigureWaitingRoomRequest {
            event_id: event_id.clone(),
            enabled: true,
            admission_rate_per_second: settings.admission_rate,
            open_time: Some(timestamp_ms(opens_ms)),
            max_active_shoppers: settings.max_active,
        },
    ))
    .await
    .context("turning the waiting room on")?;

    let started = Instant::now();
    let (edge, internal_for_run, crowd_for_run, event) = (
        world.edge.clone(),
        internal.clone(),
        crowd.clone(),
        event_id.clone(),
    );
    let recording = load::run(
        &LoadSpec {
            name: format!("the seeds' on-sale ({} requests)", settings.requests),
            mode: Mode::Open {
                rate: settings.rate,
                max_in_flight: 65_536,
            },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(3_600),
            max_requests: Some(settings.requests),
        },
        move |n| {
            let channel = pick(&edge, n);
            let internal = pick(&internal_for_run, n);
            let crowd = crowd_for_run.clone();
            let event_id = event.clone();
            async move { next_step(&crowd, n, channel, internal, event_id).await }
        },
    )
    .await;
    let elapsed = started.elapsed();

    let mut checks = Vec::new();
    checks.extend(sale_checks(&world, &event_id, &crowd).await?);
    checks.extend(audit(&world, &event_id, &crowd).await?);
    let summary = recording_checks(&recording, elapsed, &crowd, &mut checks);
    if let Ok(failures) = crowd.failures.lock() {
        checks.push(Check {
            name: "on-sale: refusals and failures by step".into(),
            value: format!("{failures:?}"),
            ok: true,
        });
    }
    let peak = peak_memory_mib();
    checks.push(Check {
        name: "on-sale: peak memory of the whole system (one process)".into(),
        value: peak.map_or("unknown".into(), |mib| format!("{mib:.0} MiB")),
        ok: true,
    });
    let report = Report {
        machine: Machine::detect(),
        scenarios: vec![summary],
        ratios: Vec::new(),
        checks,
    };
    println!("{}", report.table());
    report.write(&settings.out)?;
    println!("report written to {}", settings.out.display());
    world.bench.stop().await
}

/// One fan's next call.
async fn next_step(
    crowd: &Crowd,
    n: u64,
    channel: tonic::transport::Channel,
    internal: tonic::transport::Channel,
    event_id: String,
) -> load::Outcome {
    let index = n as usize % crowd.fans.len();
    let fan = &crowd.fans[index];
    let token = &crowd.tokens[index];
    let state = fan.state.load(Ordering::Acquire);
    if state == ADMITTED
        && fan
            .state
            .compare_exchange(ADMITTED, HOLDING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        return hold_and_buy(crowd, index, channel, internal, event_id).await;
    }
    // Otherwise join, or look at their place again (joining again keeps
    // it); a fan whose other call is holding (`HOLDING`) refreshes too.
    let mut room = WaitingRoomServiceClient::new(channel);
    let status = match room
        .join_queue(authed(token, inventory_pb::JoinQueueRequest { event_id }))
        .await
    {
        Ok(status) => status.into_inner(),
        Err(status) => {
            if status.code() == Code::FailedPrecondition {
                // Sold out (the edge answers), or the room is off.
                fan.state.store(DONE, Ordering::Release);
            }
            return Err(crowd.failed("JoinQueue", &status));
        }
    };
    use inventory_pb::WaitingRoomState as S;
    match S::try_from(status.state) {
        Ok(S::PreQueue) => {
            fan.early.store(true, Ordering::Relaxed);
            let _ = fan
                .state
                .compare_exchange(NEW, IN_LINE, Ordering::AcqRel, Ordering::Acquire);
        }
        Ok(S::Waiting) => {
            fan.place.store(status.join_number, Ordering::Relaxed);
            let _ = fan
                .state
                .compare_exchange(NEW, IN_LINE, Ordering::AcqRel, Ordering::Acquire);
        }
        Ok(S::Admitted) => {
            fan.place.store(status.join_number, Ordering::Relaxed);
            if let Ok(mut held) = fan.token.lock() {
                *held = status.admission_token;
            }
            let _ = fan
                .state
                .compare_exchange(NEW, ADMITTED, Ordering::AcqRel, Ordering::Acquire)
                .or_else(|_| {
                    fan.state.compare_exchange(
                        IN_LINE,
                        ADMITTED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                });
        }
        Ok(S::Finished) => {
            fan.place.store(status.join_number, Ordering::Relaxed);
            fan.state.store(DONE, Ordering::Release);
        }
        _ => {}
    }
    Ok(())
}

/// Holds two seats with the admission token (timed), then buys them as
/// checkout would (inside the mesh), which ends the fan's admission.
async fn hold_and_buy(
    crowd: &Crowd,
    index: usize,
    channel: tonic::transport::Channel,
    internal: tonic::transport::Channel,
    event_id: String,
) -> load::Outcome {
    let fan = &crowd.fans[index];
    let admission_token = fan.token.lock().map(|t| t.clone()).unwrap_or_default();
    let mut request = best_available(event_id, 2);
    request.admission_token = admission_token;
    let mut inventory =
        inventory_pb::inventory_service_client::InventoryServiceClient::new(channel);
    let started = Instant::now();
    let held = inventory
        .hold_seats(authed(&crowd.tokens[index], request))
        .await;
    let micros = started.elapsed().as_micros() as u64;
    if let Ok(mut histogram) = crowd.admitted_holds.lock() {
        let _ = histogram.record(micros.max(1));
    }
    let hold = match held {
        Ok(hold) => hold.into_inner(),
        Err(status) => {
            fan.state.store(DONE, Ordering::Release);
            return Err(crowd.failed("HoldSeats", &status));
        }
    };
    let mut mesh = inventory_pb::inventory_service_client::InventoryServiceClient::new(internal);
    let mut commit = tonic::Request::new(inventory_pb::CommitHoldRequest {
        name: hold.name.clone(),
        booking_id: Uuid::new_v4().to_string(),
        user_id: hold.user_id.clone(),
        sale_id: String::new(),
    });
    Caller::user(crowd.ids[index], &["service"]).write_to(commit.metadata_mut());
    let bought = mesh.commit_hold(commit).await;
    fan.state.store(DONE, Ordering::Release);
    match bought {
        Ok(_) => {
            crowd.sold_holds.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut sold) = crowd.sold.lock() {
                sold.extend(hold.seats.iter().map(|seat| seat.seat_index));
            }
            Ok(())
        }
        Err(status) => Err(crowd.failed("CommitHold", &status)),
    }
}

/// Nothing oversold: every bought seat once, PostgreSQL agrees.
async fn sale_checks(world: &World, event_id: &str, crowd: &Crowd) -> anyhow::Result<Vec<Check>> {
    let mut sold = crowd.sold.lock().map(|s| s.clone()).unwrap_or_default();
    let bought = sold.len();
    sold.sort_unstable();
    sold.dedup();
    let event = Uuid::parse_str(event_id)?;
    let in_postgres: i64 = world
        .bench
        .system
        .pool
        .get()
        .await?
        .query_one(
            "SELECT count(*) FROM inventory.tickets WHERE event_id = $1 AND status = 'sold'",
            &[&event],
        )
        .await?
        .get(0);
    Ok(vec![
        Check {
            name: "on-sale: oversold seats (bought twice)".into(),
            value: format!(
                "{} of {bought} bought seats ({} holds)",
                bought - sold.len(),
                crowd.sold_holds.load(Ordering::Relaxed)
            ),
            ok: bought == sold.len(),
        },
        Check {
            name: "on-sale: seats sold in PostgreSQL = seats bought, at most 20,000".into(),
            value: format!("{in_postgres} sold, {bought} bought"),
            ok: in_postgres as usize == bought && in_postgres <= 20_000,
        },
    ])
}

/// The pre-queue draw audited from what the server publishes: the seed
/// (`GetWaitingRoom`) and the recorded entrants (`ListDrawEntrants`). The
/// entrants' order must be the seed's order; every fan told "pre-queue"
/// must be among them at the place they were shown; every other fan's place
/// must be behind them. A fan whose join timed out at this end may still be
/// an entrant (the join landed): only the server's list can say.
async fn audit(world: &World, event_id: &str, crowd: &Crowd) -> anyhow::Result<Vec<Check>> {
    let mut room = WaitingRoomServiceClient::new(world.edge[0].clone());
    let report = room
        .get_waiting_room(authed(
            &world.admin_token,
            inventory_pb::GetWaitingRoomRequest {
                event_id: event_id.to_owned(),
            },
        ))
        .await
        .context("reading the room")?
        .into_inner();
    let Some(seed) = DrawSeed::from_hex(&report.draw_seed) else {
        return Ok(vec![Check {
            name: "on-sale: pre-queue draw audited from the published seed".into(),
            value: "no seed was published".into(),
            ok: false,
        }]);
    };
    let (mut entrants, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = room
            .list_draw_entrants(authed(
                &world.admin_token,
                inventory_pb::ListDrawEntrantsRequest {
                    event_id: event_id.to_owned(),
                    page_size: 10_000,
                    page_token,
                },
            ))
            .await
            .context("listing the draw's entrants")?
            .into_inner();
        for entrant in page.entrants {
            entrants.push((entrant.place, Uuid::parse_str(&entrant.user_id)?));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let users: Vec<Uuid> = entrants.iter().map(|(_, user)| *user).collect();
    let in_order = entrants
        .iter()
        .zip(1u64..)
        .all(|((place, _), expected)| *place == expected)
        && draw_order(&seed, &users) == users;
    let drawn: std::collections::HashMap<Uuid, u64> = entrants
        .iter()
        .map(|(place, user)| (*user, *place))
        .collect();
    let total = entrants.len() as u64;
    let (mut told_early, mut missing, mut wrong, mut late_inside, mut timed_out_in) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (fan, id) in crowd.fans.iter().zip(&crowd.ids) {
        let place = fan.place.load(Ordering::Relaxed);
        let early = fan.early.load(Ordering::Relaxed);
        match drawn.get(id) {
            Some(drawn_place) => {
                if early {
                    told_early += 1;
                } else {
                    timed_out_in += 1;
                }
                if place != 0 && place != *drawn_place {
                    wrong += 1;
                }
            }
            None if early => missing += 1,
            None if place != 0 && place <= total => late_inside += 1,
            None => {}
        }
    }
    Ok(vec![
        Check {
            name: "on-sale: the recorded draw is the published seed's order".into(),
            value: format!(
                "{total} entrants ({} in the room's count), in order: {in_order}",
                report.pre_queue_count
            ),
            ok: in_order && total == report.pre_queue_count,
        },
        Check {
            name: "on-sale: every fan told \"pre-queue\" drawn at the place shown".into(),
            value: format!(
                "{told_early} told and drawn, {missing} told but not drawn, {wrong} shown another place, {timed_out_in} drawn whose join timed out here"
            ),
            ok: missing == 0 && wrong == 0,
        },
        Check {
            name: "on-sale: later arrivals all behind the pre-queue".into(),
            value: format!("{late_inside} later arrivals placed inside it"),
            ok: late_inside == 0,
        },
    ])
}

/// Throughput, the admitted holds' p99, and the run's summary.
fn recording_checks(
    recording: &Recording,
    elapsed: Duration,
    crowd: &Crowd,
    checks: &mut Vec<Check>,
) -> load::Summary {
    let summary = recording.summary();
    let per_second = summary.requests as f64 / elapsed.as_secs_f64().max(1e-9);
    let ten_million_secs = 10_000_000.0 / per_second.max(1e-9);
    checks.push(Check {
        name: "on-sale: throughput".into(),
        value: format!(
            "{} requests in {:.1} s, {per_second:.0}/s: 10,000,000 would take {ten_million_secs:.0} s (target ≤ 300 s)",
            summary.requests,
            elapsed.as_secs_f64()
        ),
        ok: ten_million_secs <= 300.0,
    });
    let meaningless: u64 = summary
        .errors
        .iter()
        .filter(|(code, _)| {
            matches!(
                code.as_str(),
                "UNKNOWN" | "INTERNAL" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "CLIENT_OVERLOAD"
            )
        })
        .map(|(_, count)| *count)
        .sum();
    checks.push(Check {
        name: "on-sale: every request answered with a meaningful status".into(),
        value: format!(
            "{meaningless} errors of the system itself; statuses {:?}",
            summary.errors
        ),
        ok: meaningless == 0,
    });
    if let Ok(histogram) = crowd.admitted_holds.lock() {
        let p99 = histogram.value_at_quantile(0.99) as f64 / 1000.0;
        checks.push(Check {
            name: "on-sale: admitted HoldSeats p99".into(),
            value: format!(
                "{p99:.1} ms over {} admitted holds (target ≤ 50 ms)",
                histogram.len()
            ),
            ok: !histogram.is_empty() && p99 <= 50.0,
        });
    }
    summary
}
