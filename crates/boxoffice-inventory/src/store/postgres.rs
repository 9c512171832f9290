//! Tickets in PostgreSQL, the truth for what is sold. The commit is one
//! conditional statement: every seat of the hold flips from available to
//! sold, or none does, and only while the hold's lease is still valid by
//! PostgreSQL's own clock. No other code path sells a ticket.

use std::time::Duration;

use anyhow::Context as _;
use boxoffice_catalog::domain::{Event, EventStatus};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::domain::{HoldRef, SaleLayout, SeatBitmap};
use crate::error::InventoryError;
use crate::store::redis::EventTruth;
use crate::waiting_room::RoomSettings;

type Result<T> = std::result::Result<T, InventoryError>;

/// An event inventory sells, as stored.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub on_sale: bool,
    pub on_sale_time: Option<DateTime<Utc>>,
    pub layout: SaleLayout,
}

/// What the commit statement found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// These tickets were sold by this call.
    Committed,
    /// Every ticket was already sold to this booking (a retry).
    AlreadyCommitted,
    /// The lease ran out by PostgreSQL's clock (minus the margin).
    LeaseExpired,
    /// The event no longer sells (cancelled).
    NotOnSale,
    /// Some tickets are sold to another booking.
    Unavailable,
    /// This hold was already committed for another booking (a racing
    /// duplicate checkout).
    HoldCommittedElsewhere,
    /// Some seats have no ticket (a bug upstream).
    UnknownSeats,
}

/// Whether the feed changed an event (and so its Redis status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedEffect {
    None,
    Created,
    StatusChanged,
}

#[derive(Clone)]
pub struct TicketStore {
    pool: Pool,
}

async fn room_of(
    client: &deadpool_postgres::Client,
    event_id: Uuid,
) -> Result<Option<RoomSettings>> {
    Ok(client
        .query_opt(
            "SELECT enabled, rate, opens_ms FROM inventory.waiting_rooms WHERE event_id = $1",
            &[&event_id],
        )
        .await?
        .map(|row| RoomSettings {
            enabled: row.get("enabled"),
            rate: row.get::<_, i32>("rate").max(0) as u32,
            opens_ms: row.get("opens_ms"),
        }))
}

fn seat_array(seats: &[u32]) -> Vec<i32> {
    // Seat indexes are below the venue limit (120,000), far inside i32.
    seats.iter().map(|seat| *seat as i32).collect()
}

fn seats_of(rows: &[tokio_postgres::Row]) -> Vec<u32> {
    rows.iter().map(|row| row.get::<_, i32>(0) as u32).collect()
}

impl TicketStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT status, on_sale_time, layout FROM inventory.events WHERE event_id = $1",
                &[&event_id],
            )
            .await?;
        row.map(|row| {
            let Json(layout): Json<SaleLayout> =
                row.try_get("layout").context("decoding a sale layout")?;
            Ok(StoredEvent {
                event_id,
                on_sale: row.get::<_, &str>("status") == "on_sale",
                on_sale_time: row.get("on_sale_time"),
                layout,
            })
        })
        .transpose()
    }

    /// Status and sold seats, to rebuild Redis from.
    pub async fn truth(&self, event_id: Uuid) -> Result<Option<EventTruth>> {
        let client = self.pool.get().await?;
        let Some(event) = client
            .query_opt(
                "SELECT status, on_sale_time, seat_count FROM inventory.events WHERE event_id = $1",
                &[&event_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let sold = client
            .query(
                "SELECT seat_index FROM inventory.tickets WHERE event_id = $1 AND status = 'sold'",
                &[&event_id],
            )
            .await?;
        let room = room_of(&client, event_id).await?;
        let on_sale_time: Option<DateTime<Utc>> = event.get("on_sale_time");
        Ok(Some(EventTruth {
            open: event.get::<_, &str>("status") == "on_sale",
            on_sale_ms: on_sale_time.map_or(0, |time| time.timestamp_millis()),
            seat_count: event.get::<_, i32>("seat_count") as u32,
            sold: SeatBitmap::with_seats(seats_of(&sold)),
            room,
        }))
    }

    /// An event's waiting-room settings, if an admin ever set any.
    pub async fn room(&self, event_id: Uuid) -> Result<Option<RoomSettings>> {
        room_of(&self.pool.get().await?, event_id).await
    }

    /// Records an event's waiting-room settings (the truth Redis's room is
    /// recreated from after it loses it).
    pub async fn save_room(&self, event_id: Uuid, room: RoomSettings) -> Result<()> {
        let rate = i32::try_from(room.rate).unwrap_or(i32::MAX);
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO inventory.waiting_rooms (event_id, enabled, rate, opens_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (event_id) DO UPDATE
                 SET enabled = EXCLUDED.enabled, rate = EXCLUDED.rate, opens_ms = EXCLUDED.opens_ms,
                     updated_at = now()",
                &[&event_id, &room.enabled, &rate, &room.opens_ms.max(0)],
            )
            .await?;
        Ok(())
    }

    pub async fn on_sale_events(&self) -> Result<Vec<Uuid>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT event_id FROM inventory.events WHERE status = 'on_sale'",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Sells exactly `seats` to `booking_id` in one statement: all or none,
    /// refused once `expires_at - margin` has passed by PostgreSQL's clock.
    /// Rows are locked in seat order, so concurrent commits never deadlock,
    /// and a waiting commit re-reads the rows after the winner's commit.
    pub async fn commit(
        &self,
        hold: HoldRef,
        seats: &[u32],
        booking_id: Uuid,
        sale_id: Option<Uuid>,
        expires_at: DateTime<Utc>,
        margin: Duration,
    ) -> Result<CommitOutcome> {
        let HoldRef { event_id, hold_id } = hold;
        let client = self.pool.get().await?;
        let seat_indexes = seat_array(seats);
        let margin_ms = margin.as_millis() as f64;
        // Prepared once per connection: planning this statement costs more
        // than running it, and it runs once per sale.
        let statement = client
            .prepare_cached(
                "WITH locked AS (
                     SELECT seat_index, status, booking_id, hold_id, sale_id FROM inventory.tickets
                     WHERE event_id = $1 AND seat_index = ANY((SELECT $2::int4[])::int4[])
                     ORDER BY seat_index
                     FOR UPDATE
                 ),
                 counts AS (
                     SELECT count(*) FILTER (WHERE status = 'available') AS free,
                            count(*) FILTER (WHERE status = 'sold' AND booking_id = $3
                                AND ($7::uuid IS NULL OR sale_id IS NULL OR sale_id = $7)) AS mine,
                            count(*) FILTER (WHERE status = 'sold' AND hold_id = $6) AS this_hold,
                            count(*) AS total
                     FROM locked
                 ),
                 checks AS (
                     SELECT ($4::timestamptz - $5::float8 * interval '1 millisecond') > now() AS lease_ok,
                            coalesce((SELECT status = 'on_sale' FROM inventory.events WHERE event_id = $1), false)
                                AS on_sale
                 ),
                 sold AS (
                     UPDATE inventory.tickets t
                     SET status = 'sold', booking_id = $3, hold_id = $6, sale_id = $7, version = t.version + 1,
                         sold_at = now()
                     FROM counts, checks
                     WHERE t.event_id = $1 AND t.seat_index = ANY((SELECT $2::int4[])::int4[]) AND t.status = 'available'
                       AND counts.free = cardinality($2::int4[]) AND checks.lease_ok AND checks.on_sale
                     RETURNING t.seat_index
                 )
                 SELECT (SELECT count(*) FROM sold) AS sold, counts.free, counts.mine, counts.this_hold, counts.total,
                        checks.lease_ok, checks.on_sale
                 FROM counts, checks",
            )
            .await?;
        let row = client
            .query_one(
                &statement,
                &[
                    &event_id,
                    &seat_indexes,
                    &booking_id,
                    &expires_at,
                    &margin_ms,
                    &hold_id,
                    &sale_id,
                ],
            )
            .await?;
        let wanted = seats.len() as i64;
        let sold: i64 = row.get("sold");
        let mine: i64 = row.get("mine");
        let total: i64 = row.get("total");
        Ok(if sold == wanted {
            CommitOutcome::Committed
        } else if mine == wanted {
            CommitOutcome::AlreadyCommitted
        } else if row.get::<_, i64>("this_hold") > 0 {
            CommitOutcome::HoldCommittedElsewhere
        } else if total < wanted {
            CommitOutcome::UnknownSeats
        } else if !row.get::<_, bool>("on_sale") {
            CommitOutcome::NotOnSale
        } else if !row.get::<_, bool>("lease_ok") {
            CommitOutcome::LeaseExpired
        } else {
            CommitOutcome::Unavailable
        })
    }

    /// Seats this hold already sold to this booking (idempotent retries
    /// after Redis forgot the hold).
    pub async fn committed_seats(
        &self,
        event_id: Uuid,
        hold_id: Uuid,
        booking_id: Uuid,
    ) -> Result<(Vec<u32>, Option<Uuid>)> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT seat_index, sale_id FROM inventory.tickets
                 WHERE event_id = $1 AND hold_id = $2 AND booking_id = $3 AND status = 'sold'
                 ORDER BY seat_index",
                &[&event_id, &hold_id, &booking_id],
            )
            .await?;
        let sale_id = rows.iter().find_map(|row| row.get::<_, Option<Uuid>>(1));
        Ok((seats_of(&rows), sale_id))
    }

    /// Which of `seats` are sold.
    pub async fn sold_among(&self, event_id: Uuid, seats: &[u32]) -> Result<Vec<u32>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT seat_index FROM inventory.tickets
                 WHERE event_id = $1 AND seat_index = ANY($2::int4[]) AND status = 'sold'",
                &[&event_id, &seat_array(seats)],
            )
            .await?;
        Ok(seats_of(&rows))
    }

    /// Puts a booking's seats back on sale; answers the seats it released
    /// (none on a retry).
    pub async fn release_booking(&self, event_id: Uuid, booking_id: Uuid) -> Result<Vec<u32>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "WITH target AS (
                     SELECT seat_index FROM inventory.tickets
                     WHERE event_id = $1 AND booking_id = $2 AND status = 'sold'
                     ORDER BY seat_index
                     FOR UPDATE
                 )
                 UPDATE inventory.tickets t
                 SET status = 'available', booking_id = NULL, hold_id = NULL, sale_id = NULL, version = t.version + 1,
                     sold_at = NULL
                 FROM target
                 WHERE t.event_id = $1 AND t.seat_index = target.seat_index AND t.booking_id = $2
                 RETURNING t.seat_index",
                &[&event_id, &booking_id],
            )
            .await?;
        Ok(seats_of(&rows))
    }
}

/// Applies one catalog event to inventory inside the feed's transaction:
/// a published event gets its tickets (idempotently), a cancelled one stops
/// selling. Older versions than what is stored change nothing.
pub async fn apply_catalog_event(
    transaction: &Transaction<'_>,
    event: &Event,
    layout: Option<&SaleLayout>,
) -> Result<FeedEffect> {
    match event.status {
        EventStatus::Draft => Ok(FeedEffect::None),
        EventStatus::Cancelled => {
            let updated = transaction
                .execute(
                    "UPDATE inventory.events
                     SET status = 'cancelled', catalog_version = $2, updated_at = now()
                     WHERE event_id = $1 AND catalog_version < $2",
                    &[&event.id, &event.version],
                )
                .await?;
            Ok(if updated > 0 {
                FeedEffect::StatusChanged
            } else {
                FeedEffect::None
            })
        }
        EventStatus::Published => {
            let Some(layout) = layout else {
                return Err(InventoryError::Internal(anyhow::anyhow!(
                    "published event {} has no layout",
                    event.id
                )));
            };
            let row = transaction
                .query_opt(
                    "INSERT INTO inventory.events
                         (event_id, venue_id, status, on_sale_time, seat_count, currency_code, layout, catalog_version)
                     VALUES ($1, $2, 'on_sale', $3, $4, $5, $6, $7)
                     ON CONFLICT (event_id) DO UPDATE
                     SET on_sale_time = EXCLUDED.on_sale_time, catalog_version = EXCLUDED.catalog_version,
                         updated_at = now()
                     WHERE inventory.events.catalog_version < EXCLUDED.catalog_version
                       AND inventory.events.status = 'on_sale'
                     RETURNING (xmax = 0) AS inserted",
                    &[
                        &event.id,
                        &event.venue.id,
                        &event.on_sale_time,
                        &(layout.seat_count as i32),
                        &layout.currency_code,
                        &Json(layout),
                        &event.version,
                    ],
                )
                .await?;
            let Some(row) = row else {
                return Ok(FeedEffect::None);
            };
            if !row.get::<_, bool>("inserted") {
                return Ok(FeedEffect::StatusChanged);
            }
            let section_ids: Vec<Uuid> = layout.sections.iter().map(|s| s.id).collect();
            let firsts: Vec<i32> = layout
                .sections
                .iter()
                .map(|s| s.first_seat_index as i32)
                .collect();
            let capacities: Vec<i32> = layout.sections.iter().map(|s| s.capacity as i32).collect();
            let tiers: Vec<Option<Uuid>> = layout
                .sections
                .iter()
                .map(|s| s.price.as_ref().map(|price| price.tier_id))
                .collect();
            let created = transaction
                .execute(
                    "INSERT INTO inventory.tickets (event_id, seat_index, section_id, price_tier_id)
                     SELECT $1, s.first_seat + g, s.section_id, s.tier_id
                     FROM unnest($2::uuid[], $3::int4[], $4::int4[], $5::uuid[])
                              AS s(section_id, first_seat, capacity, tier_id)
                     CROSS JOIN LATERAL generate_series(0, s.capacity - 1) AS g
                     ON CONFLICT DO NOTHING",
                    &[&event.id, &section_ids, &firsts, &capacities, &tiers],
                )
                .await?;
            tracing::info!(event_id = %event.id, tickets = created, "created tickets");
            Ok(FeedEffect::Created)
        }
    }
}
