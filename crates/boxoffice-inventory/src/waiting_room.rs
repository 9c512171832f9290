//! The waiting room's use cases: configuring an event's room (admins),
//! joining the line, reading where a user stands, issuing admission tokens.
//! HoldSeats' check on events whose room is on runs inside `hold.lua` (the
//! token's signature is checked in Rust, its expiry by Redis time there).

use std::sync::Arc;
use std::time::Duration;

use boxoffice_runtime::Caller;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::config::InventoryConfig;
use crate::domain::RoomSettings;
use crate::domain::admission::{AdmissionSigner, Standing};
use crate::error::InventoryError;
use crate::store::postgres::TicketStore;
use crate::store::waiting_room::{InLine, LineStanding, WaitingRoomStore};

type Result<T> = std::result::Result<T, InventoryError>;

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

/// A room right after it was configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfiguredRoom {
    pub settings: RoomSettings,
    pub joined: u64,
    pub admitted: u64,
}

/// What a watcher learns on each look at the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueView {
    Off,
    Waiting(Standing),
    Admitted {
        join_number: u64,
        token: String,
        expires_ms: i64,
    },
}

/// Every event's waiting room.
pub struct WaitingRoom {
    events: Arc<dyn SaleEvents>,
    /// The rooms' settings, kept so a rebuild restores them.
    tickets: TicketStore,
    rooms: WaitingRoomStore,
    admission: AdmissionSigner,
    token_ttl: Duration,
    watch_poll: Duration,
}

fn redis_error(error: anyhow::Error) -> InventoryError {
    InventoryError::Unavailable(error)
}

fn standing(line: &InLine) -> Standing {
    Standing::new(
        line.join_number,
        line.admitted,
        line.rate,
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
        Self {
            events,
            tickets,
            rooms,
            admission: AdmissionSigner::new(config.waiting_room_key.expose().as_bytes()),
            token_ttl: config.admission_token_ttl,
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

    /// Turns an event's room on or off (admins only).
    pub async fn configure_room(
        &self,
        caller: &Caller,
        event_id: Uuid,
        settings: RoomSettings,
    ) -> Result<ConfiguredRoom> {
        if caller.user_id.is_none() {
            return Err(InventoryError::Unauthenticated);
        }
        if !caller.is_admin() {
            return Err(InventoryError::AdminRequired);
        }
        self.events.ensure_sold_here(event_id).await?;
        // PostgreSQL first: what Redis is told is always what a rebuild
        // would restore.
        self.tickets.save_room(event_id, settings).await?;
        let counters = self
            .rooms
            .configure(event_id, settings.enabled, settings.rate, settings.opens_ms)
            .await
            .map_err(redis_error)?;
        self.events.state_changed(event_id);
        tracing::info!(%event_id, enabled = settings.enabled, rate = settings.rate, opens_ms = settings.opens_ms, joined = counters.joined, "waiting room configured");
        Ok(ConfiguredRoom {
            settings,
            joined: counters.joined,
            admitted: counters.admitted,
        })
    }

    /// The caller's place in line (the first one they got, if they joined
    /// before).
    pub async fn join_queue(&self, caller: &Caller, event_id: Uuid) -> Result<Standing> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        self.events.ensure_sold_here(event_id).await?;
        let mut line = self
            .rooms
            .join(event_id, user_id)
            .await
            .map_err(redis_error)?;
        if line.is_none() && self.restore_room(event_id).await? {
            line = self
                .rooms
                .join(event_id, user_id)
                .await
                .map_err(redis_error)?;
        }
        Ok(standing(&line.ok_or(InventoryError::WaitingRoomOff)?))
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

    /// Where the user stands now, with a fresh token once they are through.
    pub async fn queue_view(&self, user_id: Uuid, event_id: Uuid) -> Result<QueueView> {
        let mut standing_now = self
            .rooms
            .standing(event_id, user_id)
            .await
            .map_err(redis_error)?;
        if matches!(standing_now, LineStanding::Off { .. }) && self.restore_room(event_id).await? {
            // The line went with Redis: the caller is told to join again.
            standing_now = self
                .rooms
                .standing(event_id, user_id)
                .await
                .map_err(redis_error)?;
        }
        match standing_now {
            LineStanding::Off { .. } => Ok(QueueView::Off),
            LineStanding::NotInLine { .. } => Err(InventoryError::NotInQueue),
            LineStanding::InLine(line) => {
                let standing = standing(&line);
                if !standing.admitted() {
                    return Ok(QueueView::Waiting(standing));
                }
                let ttl_ms = i64::try_from(self.token_ttl.as_millis()).unwrap_or(i64::MAX);
                let expires_ms = line.now_ms.saturating_add(ttl_ms);
                Ok(QueueView::Admitted {
                    join_number: line.join_number,
                    token: self.admission.sign(user_id, event_id, expires_ms),
                    expires_ms,
                })
            }
        }
    }
}
