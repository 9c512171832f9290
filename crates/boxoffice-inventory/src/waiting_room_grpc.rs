//! The tonic face of the waiting room. WatchQueue runs one task per stream
//! that follows its event's shared poller (one Redis call per `watch_poll`
//! per event per process, whatever the number of watchers), sends an update
//! whenever the caller's state or position changes, and ends after the update with the
//! admission token (or when the room is turned off, the admission is over,
//! the client goes away, or the server shuts down).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_runtime::{Caller, Shutdown};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use crate::domain::admission::{MAX_ACTIVE_SHOPPERS, MAX_ADMISSION_RATE, Standing};
use crate::domain::{FieldError, RoomSettings, parse_id};
use crate::error::InventoryError;
use crate::waiting_room::{QueueView, RoomReport, WaitingRoom};

/// Updates buffered per watcher; a watcher only needs the latest.
const WATCH_BUFFER: usize = 8;
/// Draw entrants per page: the default and the most one page may ask for.
const DRAW_PAGE_DEFAULT: u32 = 1_000;
const DRAW_PAGE_MAX: i32 = 10_000;
/// Even with an unchanged position a watcher hears something this often,
/// so proxies do not close an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct WaitingRoomGrpc {
    room: Arc<WaitingRoom>,
    shutdown: Shutdown,
}

impl WaitingRoomGrpc {
    pub fn new(room: Arc<WaitingRoom>, shutdown: Shutdown) -> Self {
        Self { room, shutdown }
    }
}

fn duration_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.max(0) / 1000,
        nanos: ((ms.max(0) % 1000) * 1_000_000) as i32,
    }
}

fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds since the epoch of a wire timestamp, if it is a real one.
fn timestamp_to_ms(field: &str, time: &prost_types::Timestamp) -> Result<i64, FieldError> {
    if !(0..1_000_000_000).contains(&time.nanos) || time.seconds < 0 {
        return Err(FieldError::new(field, "is not a valid timestamp"));
    }
    time.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(time.nanos / 1_000_000)))
        .filter(|ms| *ms < 253_402_300_800_000)
        .ok_or_else(|| FieldError::new(field, "is not a valid timestamp"))
}

fn waiting(event_id: Uuid, standing: &Standing) -> pb::QueueStatus {
    pb::QueueStatus {
        event_id: event_id.to_string(),
        state: if standing.admitted() {
            pb::WaitingRoomState::Admitted
        } else {
            pb::WaitingRoomState::Waiting
        } as i32,
        join_number: standing.join_number,
        position: standing.position,
        estimated_wait: Some(duration_ms(standing.estimated_wait_ms)),
        admission_token: String::new(),
        admission_expire_time: None,
    }
}

fn room_to_pb(event_id: Uuid, room: &RoomReport) -> pb::WaitingRoom {
    pb::WaitingRoom {
        event_id: event_id.to_string(),
        enabled: room.settings.enabled,
        admission_rate_per_second: room.settings.rate,
        open_time: (room.settings.opens_ms > 0).then(|| timestamp_ms(room.settings.opens_ms)),
        joined_count: room.counters.joined,
        admitted_count: room.counters.admitted,
        max_active_shoppers: room.settings.max_active,
        active_shoppers: room.counters.active,
        pre_queue_count: room.counters.pre_queue,
        draw_seed: room
            .draw
            .as_ref()
            .map(|(seed, _)| seed.to_hex())
            .unwrap_or_default(),
        draw_time: room
            .draw
            .as_ref()
            .map(|(_, at)| timestamp_ms(at.timestamp_millis())),
        admission_pace_per_second: room.counters.pace as f64 / 1_000.0,
    }
}

fn view_to_pb(event_id: Uuid, view: &QueueView) -> pb::QueueStatus {
    match view {
        QueueView::Off => pb::QueueStatus {
            event_id: event_id.to_string(),
            state: pb::WaitingRoomState::Off as i32,
            ..Default::default()
        },
        QueueView::Waiting(standing) => waiting(event_id, standing),
        QueueView::Early { estimated_wait_ms } => pb::QueueStatus {
            event_id: event_id.to_string(),
            state: pb::WaitingRoomState::PreQueue as i32,
            estimated_wait: Some(duration_ms(*estimated_wait_ms)),
            ..Default::default()
        },
        QueueView::Finished { join_number } => pb::QueueStatus {
            event_id: event_id.to_string(),
            state: pb::WaitingRoomState::Finished as i32,
            join_number: *join_number,
            estimated_wait: Some(duration_ms(0)),
            ..Default::default()
        },
        QueueView::Admitted {
            join_number,
            token,
            expires_ms,
        } => pb::QueueStatus {
            event_id: event_id.to_string(),
            state: pb::WaitingRoomState::Admitted as i32,
            join_number: *join_number,
            position: 0,
            estimated_wait: Some(duration_ms(0)),
            admission_token: token.clone(),
            admission_expire_time: Some(timestamp_ms(*expires_ms)),
        },
    }
}

type QueueStream = Pin<Box<dyn Stream<Item = Result<pb::QueueStatus, Status>> + Send>>;

#[tonic::async_trait]
impl pb::waiting_room_service_server::WaitingRoomService for WaitingRoomGrpc {
    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn join_queue(
        &self,
        request: Request<pb::JoinQueueRequest>,
    ) -> Result<Response<pb::QueueStatus>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let view = self.room.join_queue(&caller, event_id).await?;
        Ok(Response::new(view_to_pb(event_id, &view)))
    }

    type WatchQueueStream = QueueStream;

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn watch_queue(
        &self,
        request: Request<pb::WatchQueueRequest>,
    ) -> Result<Response<Self::WatchQueueStream>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        self.room.ensure_event(event_id).await?;
        // The first look answers NOT_IN_QUEUE as the call's status.
        let first = self.room.queue_view(user_id, event_id).await?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch(
            self.room.clone(),
            user_id,
            event_id,
            first,
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn configure_waiting_room(
        &self,
        request: Request<pb::ConfigureWaitingRoomRequest>,
    ) -> Result<Response<pb::WaitingRoom>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        if request.enabled && !(1..=MAX_ADMISSION_RATE).contains(&request.admission_rate_per_second)
        {
            return Err(Status::from(FieldError::new(
                "admission_rate_per_second",
                format!("must be from 1 to {MAX_ADMISSION_RATE} while the room is on"),
            )));
        }
        if request.max_active_shoppers > MAX_ACTIVE_SHOPPERS {
            return Err(Status::from(FieldError::new(
                "max_active_shoppers",
                format!("must be at most {MAX_ACTIVE_SHOPPERS} (0 for no cap)"),
            )));
        }
        let opens_ms = match &request.open_time {
            Some(time) => timestamp_to_ms("open_time", time).map_err(Status::from)?,
            None => 0,
        };
        let settings = RoomSettings {
            enabled: request.enabled,
            rate: request.admission_rate_per_second,
            opens_ms,
            max_active: request.max_active_shoppers,
        };
        let room = self
            .room
            .configure_room(&caller, event_id, settings)
            .await?;
        Ok(Response::new(room_to_pb(event_id, &room)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn get_waiting_room(
        &self,
        request: Request<pb::GetWaitingRoomRequest>,
    ) -> Result<Response<pb::WaitingRoom>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let room = self.room.room_report(&caller, event_id).await?;
        Ok(Response::new(room_to_pb(event_id, &room)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn list_draw_entrants(
        &self,
        request: Request<pb::ListDrawEntrantsRequest>,
    ) -> Result<Response<pb::ListDrawEntrantsResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let limit = draw_page_size(request.page_size).map_err(Status::from)?;
        let after = decode_draw_page_token(&request.page_token).map_err(Status::from)?;
        let page = self
            .room
            .draw_entrants(&caller, event_id, after, limit)
            .await?;
        let next_page_token = match page.entrants.last() {
            Some((place, _)) if *place < page.total => draw_page_token(*place),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListDrawEntrantsResponse {
            entrants: page
                .entrants
                .iter()
                .map(|(place, user_id)| pb::DrawEntrant {
                    place: *place,
                    user_id: user_id.to_string(),
                })
                .collect(),
            next_page_token,
            total_count: page.total,
        }))
    }
}

/// The page size asked for: 0 means the default.
fn draw_page_size(page_size: i32) -> Result<u32, FieldError> {
    match page_size {
        0 => Ok(DRAW_PAGE_DEFAULT),
        1..=DRAW_PAGE_MAX => Ok(page_size as u32),
        _ => Err(FieldError::new(
            "page_size",
            format!("must be from 1 to {DRAW_PAGE_MAX} (0 for {DRAW_PAGE_DEFAULT})"),
        )),
    }
}

/// A page token names the last place of the page before; opaque to
/// clients.
fn draw_page_token(last_place: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("d:{last_place}"))
}

fn decode_draw_page_token(token: &str) -> Result<u64, FieldError> {
    if token.is_empty() {
        return Ok(0);
    }
    let bad = || FieldError::new("page_token", "is not a token this service issued");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    String::from_utf8(raw)
        .ok()
        .and_then(|raw| raw.strip_prefix("d:").and_then(|place| place.parse().ok()))
        .ok_or_else(bad)
}

/// What a watcher is told again only when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueueState {
    Early,
    Waiting(u64),
    Over,
}

impl QueueState {
    fn of(view: &QueueView) -> Self {
        match view {
            QueueView::Early { .. } => Self::Early,
            QueueView::Waiting(standing) => Self::Waiting(standing.position),
            _ => Self::Over,
        }
    }
}

/// Sends `first`, then every change of state or position, until the caller is
/// admitted (the last update carries the token) or the room is turned off.
async fn watch(
    room: Arc<WaitingRoom>,
    user_id: Uuid,
    event_id: Uuid,
    first: QueueView,
    sender: mpsc::Sender<Result<pb::QueueStatus, Status>>,
    shutdown: Shutdown,
) {
    let mut view = first;
    let mut last_sent: Option<(QueueState, tokio::time::Instant)> = None;
    let mut pulses = None;
    loop {
        let finished = !matches!(view, QueueView::Waiting(_) | QueueView::Early { .. });
        let state = QueueState::of(&view);
        let send = match last_sent {
            Some((sent, at)) => sent != state || at.elapsed() >= KEEPALIVE,
            None => true,
        };
        if send {
            last_sent = Some((state, tokio::time::Instant::now()));
            if sender.send(Ok(view_to_pb(event_id, &view))).await.is_err() {
                return;
            }
        }
        if finished {
            return;
        }
        // The event's shared poller tells every watcher how the line moved;
        // a watcher asks Redis itself only when that says its turn came
        // (for the token), the draw was made, or the room looks off.
        let pulses = pulses.get_or_insert_with(|| room.follow_room(event_id, &shutdown));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = sender.closed() => return,
            changed = pulses.changed() => if changed.is_err() { return },
        }
        let Some(pulse) = *pulses.borrow_and_update() else {
            continue;
        };
        view = match room.view_after(&view, &pulse) {
            Some(view) => view,
            None => match room.queue_view(user_id, event_id).await {
                Ok(view) => view,
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_page_tokens_round_trip_and_junk_is_refused() {
        for place in [1, 1_000, u64::MAX] {
            assert_eq!(decode_draw_page_token(&draw_page_token(place)), Ok(place));
        }
        assert_eq!(decode_draw_page_token(""), Ok(0));
        for junk in ["x", "ZDo", "ZDp4", "YzoxMA", "%%%"] {
            let error = decode_draw_page_token(junk).expect_err(junk);
            assert_eq!(error.field, "page_token");
        }
        assert_eq!(draw_page_size(0), Ok(DRAW_PAGE_DEFAULT));
        assert_eq!(draw_page_size(10_000), Ok(10_000));
        for bad in [-1, 10_001, i32::MAX] {
            assert!(draw_page_size(bad).is_err());
        }
    }

    #[test]
    fn open_times_must_be_real_timestamps() {
        let ok = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        };
        assert_eq!(timestamp_to_ms("t", &ok), Ok(1_700_000_000_005));
        for bad in [(1, -1), (1, 1_000_000_000), (-5, 0), (i64::MAX, 0)] {
            let time = prost_types::Timestamp {
                seconds: bad.0,
                nanos: bad.1,
            };
            assert!(timestamp_to_ms("t", &time).is_err());
        }
    }
}
