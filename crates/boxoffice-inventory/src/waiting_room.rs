//! The waiting room's use cases: configuring an event's room (admins),
//! joining the line, reading where a user stands, drawing the pre-queue's
//! places at opening, issuing admission tokens. HoldSeats' check on events
//! whose room is on runs inside `hold.lua` (the token's signature is checked
//! in Rust, its expiry by Redis time there, and that its holder is still an
//! active shopper).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use boxoffice_runtime::batch::Batcher;
use boxoffice_runtime::{Caller, Shutdown};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::InventoryConfig;
use crate::domain::admission::{AdmissionSigner, Standing, pace_per_kilosecond};
use crate::domain::{DrawSeed, RoomSettings, draw_order};
use crate::error::InventoryError;
use crate::store::postgres::TicketStore;
use crate::store::waiting_room::{
    Early, InLine, LineStanding, RoomCounters, RoomPulse, WaitingRoomStore,
};

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

/// A page of a recorded draw: (place, user id) in place order, and the
/// number of entrants in all.
#[derive(Debug)]
pub struct DrawEntrants {
    pub entrants: Vec<(u64, Uuid)>,
    pub total: u64,
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
    Early {
        estimated_wait_ms: i64,
    },
    Waiting(Standing),
    Admitted {
        join_number: u64,
        token: String,
        expires_ms: i64,
    },
    /// Through once, and that admission is over (bought, released or run
    /// out): a place in line serves one admission.
    Finished {
        join_number: u64,
    },
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
    /// One poller per watched event: every WatchQueue stream of the event
    /// follows its pulses instead of asking Redis itself.
    pulses: Mutex<HashMap<Uuid, watch::Sender<Option<RoomPulse>>>>,
    /// Joins (event, user) that arrive together: one script call per event
    /// per batch.
    joins: Batcher<(Uuid, Uuid), LineStanding>,
    /// Pulses read by this process's pollers (all events): what the Redis
    /// calls of watching are measured against.
    polls: std::sync::atomic::AtomicU64,
}

/// One batch of joins: a `room_join.lua` call per event in it, the events'
/// calls at once; one standing per join, in order.
async fn join_batch(
    rooms: Arc<WaitingRoomStore>,
    token_ttl_ms: i64,
    joins: Vec<(Uuid, Uuid)>,
) -> Vec<anyhow::Result<LineStanding>> {
    let mut by_event: HashMap<Uuid, Vec<usize>> = HashMap::new();
    for (index, (event_id, _)) in joins.iter().enumerate() {
        by_event.entry(*event_id).or_default().push(index);
    }
    let calls = by_event.into_iter().map(|(event_id, indexes)| {
        let users: Vec<Uuid> = indexes.iter().map(|index| joins[*index].1).collect();
        let rooms = rooms.clone();
        async move {
            let standings = rooms.join_many(event_id, &users, token_ttl_ms).await;
            (indexes, standings)
        }
    });
    let mut results: Vec<Option<anyhow::Result<LineStanding>>> =
        (0..joins.len()).map(|_| None).collect();
    for (indexes, standings) in futures::future::join_all(calls).await {
        match standings {
            Ok(standings) => {
                for (index, standing) in indexes.into_iter().zip(standings) {
                    results[index] = Some(Ok(standing));
                }
            }
            Err(error) => {
                for index in indexes {
                    results[index] = Some(Err(anyhow::anyhow!("joining the line: {error:#}")));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(anyhow::anyhow!("a join got no answer"))))
        .collect()
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
        let token_ttl_ms =
            i64::try_from(config.admission_token_ttl.as_millis()).unwrap_or(i64::MAX);
        let batch_rooms = rooms.clone();
        let joins =
            Batcher::spawn(move |joins| join_batch(batch_rooms.clone(), token_ttl_ms, joins));
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
            token_ttl_ms,
            watch_poll: config.watch_poll,
            pulses: Mutex::default(),
            joins,
            polls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Follows the event's room as its poller sees it every `watch_poll`,
    /// starting the poller if this is its first watcher in this process.
    pub fn follow_room(
        self: &Arc<Self>,
        event_id: Uuid,
        shutdown: &Shutdown,
    ) -> watch::Receiver<Option<RoomPulse>> {
        let mut pulses = self.pulses.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = pulses.get(&event_id) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        pulses.insert(event_id, sender.clone());
        tokio::spawn(self.clone().poll_room(event_id, sender, shutdown.clone()));
        receiver
    }

    /// One Redis call per `watch_poll` for all of the event's watchers in
    /// this process; stops when the last one goes.
    async fn poll_room(
        self: Arc<Self>,
        event_id: Uuid,
        sender: watch::Sender<Option<RoomPulse>>,
        shutdown: Shutdown,
    ) {
        loop {
            let pulse = self.rooms.pulse(event_id, self.token_ttl_ms).await;
            self.polls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match pulse {
                Ok(pulse) => {
                    if pulse.draw_due {
                        self.start_draw(event_id);
                    }
                    sender.send_replace(Some(pulse));
                }
                Err(error) => tracing::warn!(%event_id, error = %error, "reading the waiting room"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.watch_poll) => {}
                () = shutdown.cancelled() => {}
            }
            // Under the lock a new watcher either found this poller (and
            // counts) or will start another after it is gone.
            let mut pulses = self.pulses.lock().unwrap_or_else(PoisonError::into_inner);
            if sender.receiver_count() == 0 || shutdown.is_triggered() {
                if pulses
                    .get(&event_id)
                    .is_some_and(|current| current.same_channel(&sender))
                {
                    pulses.remove(&event_id);
                }
                return;
            }
        }
    }

    /// Where a watcher stands after the room's latest pulse, without asking
    /// Redis: `None` when only a look of their own can tell (they are
    /// through, the draw is done, or the room looks off).
    pub fn view_after(&self, view: &QueueView, pulse: &RoomPulse) -> Option<QueueView> {
        if !pulse.enabled {
            return None;
        }
        match view {
            QueueView::Waiting(standing) => {
                let now = Standing::new(
                    standing.join_number,
                    pulse.admitted,
                    pace_per_kilosecond(pulse.rate, pulse.pace),
                    pulse.opens_ms,
                    pulse.now_ms,
                );
                (!now.admitted()).then_some(QueueView::Waiting(now))
            }
            QueueView::Early { .. } if !pulse.drawn => Some(QueueView::Early {
                estimated_wait_ms: (pulse.opens_ms - pulse.now_ms).max(0),
            }),
            _ => None,
        }
    }

    /// Redis calls the waiting room has made in this process.
    pub fn redis_calls(&self) -> u64 {
        self.rooms.calls()
    }

    /// Pulses its pollers have read in this process (one per watched
    /// event per `watch_poll`).
    pub fn room_polls(&self) -> u64 {
        self.polls.load(std::sync::atomic::Ordering::Relaxed)
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
        let expires_ms = self.tickets.room_expiry_ms(event_id).await?;
        let counters = self
            .rooms
            .configure(event_id, settings, self.token_ttl_ms, expires_ms)
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

    /// A page of the recorded pre-queue draw, places after `after` (admins
    /// only): with the published seed, the whole audit of the draw.
    pub async fn draw_entrants(
        &self,
        caller: &Caller,
        event_id: Uuid,
        after: u64,
        limit: u32,
    ) -> Result<DrawEntrants> {
        Self::require_admin(caller)?;
        self.events.ensure_sold_here(event_id).await?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let (entrants, total) = self
            .tickets
            .draw_entrants(event_id, after, i64::from(limit))
            .await?;
        let total = total.ok_or(InventoryError::DrawNotRecorded)?;
        Ok(DrawEntrants { entrants, total })
    }

    /// The caller's place in line (the first one they got, if they joined
    /// before), or their spot in the pre-queue before opening.
    pub async fn join_queue(&self, caller: &Caller, event_id: Uuid) -> Result<QueueView> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        self.events.ensure_sold_here(event_id).await?;
        let mut line = self
            .joins
            .submit((event_id, user_id))
            .await
            .map_err(redis_error)?;
        if matches!(line, LineStanding::Off { .. }) && self.restore_room(event_id).await? {
            line = self
                .joins
                .submit((event_id, user_id))
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
                if line.draw_due {
                    self.start_draw(event_id);
                }
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
    /// Everyone in the event's pre-queue (frozen: nobody joins it once the
    /// room's opening time has passed, and a draw starts only then).
    async fn pre_queue(&self, event_id: Uuid) -> Result<Vec<Uuid>> {
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
                return Ok(joiners);
            }
        }
    }

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
        // A draw recorded before (by another instance, or before Redis
        // lost the line) is the draw: its places are written again as they
        // were. Otherwise the frozen pre-queue is drawn and recorded in
        // PostgreSQL before any place reaches Redis.
        let mut order = self.tickets.drawn_order(event_id).await?;
        if order.is_empty() {
            let joiners = self.pre_queue(event_id).await?;
            // Hashing a large pre-queue is CPU work: off the async threads.
            order = tokio::task::spawn_blocking(move || draw_order(&seed, &joiners))
                .await
                .map_err(|error| InventoryError::Internal(anyhow::Error::new(error)))?;
            self.tickets.record_draw(event_id, &order).await?;
        }
        let pre_queue = order.len();
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
