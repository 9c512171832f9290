//! The waiting room's use cases: configuring an event's room (admins),
//! joining the line, reading where a user stands, drawing the pre-queue's
//! places at opening, issuing admission tokens. HoldSeats' check on events
//! whose room is on runs inside `hold.lua` (the token's signature is checked
//! in Rust, its expiry by Redis time there, and that its holder is still an
//! active shopper).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::config::InventoryConfig;
use crate::domain::admission::{AdmissionSigner, Standing, pace_per_kilosecond};
use crate::domain::{DrawSeed, RoomSettings, draw_order};
use crate::error::InventoryError;
use crate::store::postgres::TicketStore;
use crate::store::waiting_room::{Early, InLine, LineStanding, RoomCounters, WaitingRoomStore};

type Result<T> = std::result::Result<T, InventoryError>;

/// Pre-queue joiners read from Redis per call while drawing.
const DRAW_READ_PAGE: i64 = 10_000;
/// Drawn places written to Redis per script call.
const DRAW_WRITE_BATCH: usize = 1_000;

/// What the waiting room needs of the events inventory sells, and nothing
/// more of the service.
pub trait SaleEvents: Send + Sync + 'static {
    /// Fails with `EventNotFound` unless inventory sells the event.
    fn ensure_sold_here(&self, event_id: Uuid) -> BoxFuture<'_, Result<()>>;

    /// Recreates the event's Redis state (its room's switch included) from
    /// PostgreSQL when Redis lost it.
    fn rebuild_if_missing(&self, event_id: Uuid) -> BoxFuture<'_, Result<()>>;

    /// The event's Redis state changed behind the availability snapshots'
    /// back.
    fn state_changed(&self, event_id: Uuid);
}

/// A room as an admin sees it: its settings, counters and, once drawn, the
/// pre-queue draw's seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomReport {
    pub settings: RoomSettings,
    pub counters: RoomCounters,
    pub draw: Option<(DrawSeed, DateTime<Utc>)>,
}

/// What a user learns on each look at the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueView {
    Off,
    /// In the pre-queue: a place is drawn when the room opens.
    Early { estimated_wait_ms: i64 },
    Waiting(Standing),
    Admitted {
        join_number: u64,
        token: String,
        expires_ms: i64,
    },
    /// Through once, and that admission is over (bought, released or run
    /// out): a place in line serves one admission.
    Finished { join_number: u64 },
}

/// Every event's waiting room.
pub struct WaitingRoom {
    events: Arc<dyn SaleEvents>,
    draws: Arc<Draws>,
    /// The rooms' settings, kept so a rebuild restores them.
    tickets: TicketStore,
    rooms: Arc<WaitingRoomStore>,
    admission: AdmissionSigner,
    token_ttl_ms: i64,
    watch_poll: Duration,
}

/// The pre-queue draws this process is making (at most one per event).
struct Draws {
    tickets: TicketStore,
    rooms: Arc<WaitingRoomStore>,
    running: Mutex<HashSet<Uuid>>,
}

fn redis_error(error: anyhow::Error) -> InventoryError {
    InventoryError::Unavailable(error)
}

fn standing(line: &InLine) -> Standing {
    Standing::new(
        line.join_number,
        line.admitted,
        pace_per_kilosecond(line.rate, line.pace),
        line.opens_ms,
        line.now_ms,
    )
}

impl WaitingRoom {
    pub fn new(
        events: Arc<dyn SaleEvents>,
        tickets: TicketStore,
        rooms: WaitingRoomStore,
        config: &InventoryConfig,
    ) -> Self {
        let rooms = Arc::new(rooms);
        Self {
            events,
            draws: Arc::new(Draws {
                tickets: tickets.clone(),
                rooms: rooms.clone(),
                running: Mutex::default(),
            }),
            tickets,
            rooms,
            admission: AdmissionSigner::new(config.waiting_room_key.expose().as_bytes()),
            token_ttl_ms: i64::try_from(config.admission_token_ttl.as_millis()).unwrap_or(i64::MAX),
            watch_poll: config.watch_poll,
        }
    }

    /// How often a WatchQueue stream looks at the line.
    pub fn watch_poll(&self) -> Duration {
        self.watch_poll
    }

    /// Fails with `EventNotFound` unless inventory sells the event.
    pub async fn ensure_event(&self, event_id: Uuid) -> Result<()> {
        self.events.ensure_sold_here(event_id).await
    }

    fn require_admin(caller: &Caller) -> Result<()> {
        if caller.user_id.is_none() {
            return Err(InventoryError::Unauthenticated);
        }
        if !caller.is_admin() {
            return Err(InventoryError::AdminRequired);
        }
        Ok(())
    }

    /// Turns an event's room on or off, or changes its rate, cap or opening
    /// time live (admins only).
    pub async fn configure_room(
        &self,
        caller: &Caller,
        event_id: Uuid,
        settings: RoomSettings,
    ) -> Result<RoomReport> {
        Self::require_admin(caller)?;
        self.events.ensure_sold_here(event_id).await?;
        // PostgreSQL first: what Redis is told is always what a rebuild
        // would restore.
        self.tickets.save_room(event_id, settings).await?;
        let counters = self
            .rooms
            .configure(event_id, settings, self.token_ttl_ms)
            .await
            .map_err(redis_error)?;
        self.events.state_changed(event_id);
        tracing::info!(%event_id, enabled = settings.enabled, rate = settings.rate, max_active = settings.max_active, opens_ms = settings.opens_ms, joined = counters.joined, "waiting room configured");
        Ok(RoomReport {
            settings,
            counters,
            draw: self.tickets.draw(event_id).await?,
        })
    }

    /// The room's settings, counters and published draw (admins only).
    pub async fn room_report(&self, caller: &Caller, event_id: Uuid) -> Result<RoomReport> {
        Self::require_admin(caller)?;
        self.events.ensure_sold_here(event_id).await?;
        let settings = self.tickets.room(event_id).await?.unwrap_or(RoomSettings {
            enabled: false,
            rate: 0,
            opens_ms: 0,
            max_active: 0,
        });
        let counters = self
            .rooms
            .counters(event_id, self.token_ttl_ms)
            .await
            .map_err(redis_error)?;
        Ok(RoomReport {
            settings,
            counters,
            draw: self.tickets.draw(event_id).await?,
        })
    }

    /// The caller's place in line (the first one they got, if they joined
    /// before), or their spot in the pre-queue before opening.
    pub async fn join_queue(&self, caller: &Caller, event_id: Uuid) -> Result<QueueView> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        self.events.ensure_sold_here(event_id).await?;
        let mut line = self
            .rooms
            .join(event_id, user_id, self.token_ttl_ms)
            .await
            .map_err(redis_error)?;
        if matches!(line, LineStanding::Off { .. }) && self.restore_room(event_id).await? {
            line = self
                .rooms
                .join(event_id, user_id, self.token_ttl_ms)
                .await
                .map_err(redis_error)?;
        }
        match self.view(user_id, event_id, line) {
            QueueView::Off => Err(InventoryError::WaitingRoomOff),
            view => Ok(view),
        }
    }

    /// After Redis lost an event's state (flush, restart, failover) its room
    /// looks off; rebuilding the state restores a room PostgreSQL says is
    /// on. True when there was anything to restore.
    async fn restore_room(&self, event_id: Uuid) -> Result<bool> {
        let room_on = self
            .tickets
            .room(event_id)
            .await?
            .is_some_and(|room| room.enabled);
        if room_on {
            self.events.rebuild_if_missing(event_id).await?;
        }
        Ok(room_on)
    }

    /// Where the user stands now, with a token once they are through.
    pub async fn queue_view(&self, user_id: Uuid, event_id: Uuid) -> Result<QueueView> {
        let mut standing_now = self
            .rooms
            .standing(event_id, user_id, self.token_ttl_ms)
            .await
            .map_err(redis_error)?;
        if matches!(standing_now, LineStanding::Off { .. }) && self.restore_room(event_id).await? {
            // The line went with Redis: the caller is told to join again.
            standing_now = self
                .rooms
                .standing(event_id, user_id, self.token_ttl_ms)
                .await
                .map_err(redis_error)?;
        }
        match standing_now {
            LineStanding::NotInLine { .. } => Err(InventoryError::NotInQueue),
            other => Ok(self.view(user_id, event_id, other)),
        }
    }

    fn view(&self, user_id: Uuid, event_id: Uuid, standing_now: LineStanding) -> QueueView {
        match standing_now {
            LineStanding::Off { .. } | LineStanding::NotInLine { .. } => QueueView::Off,
            LineStanding::Early(early) => {
                if early.draw_due {
                    self.start_draw(event_id);
                }
                QueueView::Early {
                    estimated_wait_ms: early_wait(&early),
                }
            }
            LineStanding::InLine(line) => {
                let standing = standing(&line);
                if !standing.admitted() {
                    return QueueView::Waiting(standing);
                }
                match line.admission_until {
                    Some(expires_ms) => QueueView::Admitted {
                        join_number: line.join_number,
                        token: self.admission.sign(user_id, event_id, expires_ms),
                        expires_ms,
                    },
                    None => QueueView::Finished {
                        join_number: line.join_number,
                    },
                }
            }
        }
    }

    /// Draws the pre-queue's places in the background, once per process at
    /// a time; every instance that tries writes the same places.
    fn start_draw(&self, event_id: Uuid) {
        let draws = self.draws.clone();
        let first = match draws.running.lock() {
            Ok(mut running) => running.insert(event_id),
            Err(_) => false,
        };
        if !first {
            return;
        }
        tokio::spawn(async move {
            if let Err(error) = draws.draw(event_id).await {
                tracing::warn!(%event_id, error = %error, "pre-queue draw failed; the next look retries");
            }
            if let Ok(mut running) = draws.running.lock() {
                running.remove(&event_id);
            }
        });
    }
}

/// Before the draw, the wait is until the room opens (the place is not
/// known yet).
fn early_wait(early: &Early) -> i64 {
    (early.opens_ms - early.now_ms).max(0)
}

impl Draws {
    /// The draw: a seed generated now (or the one an earlier draw stored),
    /// the frozen pre-queue read from Redis, places from `draw_order`, and
    /// the places written back in batches, the last of which opens
    /// admission.
    async fn draw(&self, event_id: Uuid) -> Result<()> {
        let Some(seed) = self
            .tickets
            .claim_draw_seed(event_id, &DrawSeed::generate())
            .await?
        else {
            return Ok(());
        };
        let mut joiners = Vec::new();
        loop {
            let page = self
                .rooms
                .pre_queue_page(event_id, joiners.len() as i64, DRAW_READ_PAGE)
                .await
                .map_err(redis_error)?;
            let last = (page.len() as i64) < DRAW_READ_PAGE;
            joiners.extend(page);
            if last {
                break;
            }
        }
        let pre_queue = joiners.len();
        // Hashing a large pre-queue is CPU work: off the async threads.
        let order = tokio::task::spawn_blocking(move || draw_order(&seed, &joiners))
            .await
            .map_err(|error| InventoryError::Internal(anyhow::Error::new(error)))?;
        let places: Vec<(Uuid, u64)> = order.into_iter().zip(1u64..).collect();
        let batches: Vec<&[(Uuid, u64)]> = if places.is_empty() {
            vec![&[]]
        } else {
            places.chunks(DRAW_WRITE_BATCH).collect()
        };
        let count = batches.len();
        for (index, batch) in batches.into_iter().enumerate() {
            let written = self
                .rooms
                .place_drawn(event_id, &seed, index + 1 == count, batch)
                .await
                .map_err(redis_error)?;
            if !written {
                return Ok(());
            }
        }
        tracing::info!(%event_id, pre_queue, seed = %seed.to_hex(), "pre-queue drawn; admission open");
        Ok(())
    }
}
