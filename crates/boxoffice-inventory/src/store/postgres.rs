//! Tickets in PostgreSQL, the truth for what is sold. The commit is one
//! conditional statement: every seat of the hold flips from available to
//! sold, or none does, and only while the hold's lease is still valid by
//! PostgreSQL's own clock. Commits arriving together share that statement
//! (group commit), each still all or none on its own. No other code path
//! sells a ticket.
//!
//! Sales and releases publish their `boxoffice.events.v1` events
//! (`SeatsSold`, `SeatsReleased`, `SoldOut`, `BackOnSale`; aggregate: the
//! event) to `inventory.event_outbox` in the same transaction. Sold out
//! means no ticket of the event is left available in PostgreSQL (seats only
//! held in Redis still count as available). Whether an event just sold out
//! or came back is decided after taking the outbox's append lock, which
//! every sale and release takes until its commit: so the last of two
//! concurrent sales sees the other's, and exactly one `SoldOut` is written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_contracts::events::v1 as events;
use boxoffice_events::{NewEvent, Outbox, Payload, PreparedAppend};
use boxoffice_runtime::batch::Batcher;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::domain::{
    CatalogStatus, CountedTier, CurrentPrice, DrawSeed, EventForSale, EventTruth, HoldRef,
    PricingRule, PricingTable, RoomSettings, SaleLayout, SeatBitmap, TierRule, VenueLayout,
};
use crate::error::InventoryError;
use boxoffice_runtime::postgres::{DbError, PipelinedTransaction};

type Result<T> = std::result::Result<T, InventoryError>;

/// The pricing table of a `truth` row (layout and stored rule): JSON for
/// Redis, empty when every price is fixed.
fn pricing_table(row: &tokio_postgres::Row) -> Result<String> {
    let Some(Json(tiers)): Option<Json<Vec<TierRule>>> =
        row.try_get("tiers").context("decoding a pricing rule")?
    else {
        return Ok(String::new());
    };
    let Json(layout): Json<SaleLayout> = row.try_get("layout").context("decoding a sale layout")?;
    let table = PricingTable::build(&PricingRule::from_stored(tiers), &layout);
    Ok(if table.is_empty() {
        String::new()
    } else {
        table.to_json()
    })
}

/// Puts the event's dynamic tiers, with their sold counts, in
/// `inventory.tier_prices` (replacing what was there).
async fn save_counted_tiers(
    transaction: &Transaction<'_>,
    event_id: Uuid,
    currency_code: &str,
    prices: &[CurrentPrice],
) -> Result<()> {
    transaction
        .execute(
            "DELETE FROM inventory.tier_prices WHERE event_id = $1",
            &[&event_id],
        )
        .await?;
    let dynamic: Vec<(&CurrentPrice, &TierRule)> = prices
        .iter()
        .filter_map(|price| price.rule.as_ref().map(|rule| (price, rule)))
        .collect();
    if dynamic.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&(&CurrentPrice, &TierRule)) -> i64| -> Vec<i64> { dynamic.iter().map(f).collect() };
    let tiers: Vec<Uuid> = dynamic.iter().map(|(price, _)| price.tier_id).collect();
    let bases = column(|(price, _)| price.base_minor);
    let changes = column(|(_, rule)| i64::from(rule.step_change_bp));
    let steps = column(|(_, rule)| i64::from(rule.step_sold_bp));
    let floors = column(|(_, rule)| rule.floor_minor);
    let ceilings = column(|(_, rule)| rule.ceiling_minor);
    let seats = column(|(price, _)| i64::from(price.seat_count));
    let sold = column(|(price, _)| i64::from(price.sold));
    transaction
        .execute(
            "INSERT INTO inventory.tier_prices (event_id, currency_code, tier_id, base_minor,
                 step_change_bp, step_sold_bp, floor_minor, ceiling_minor, seat_count, sold)
             SELECT $1, $2, t.*
             FROM unnest($3::uuid[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[],
                         $9::int8[], $10::int8[]) AS t",
            &[
                &event_id,
                &currency_code,
                &tiers,
                &bases,
                &changes,
                &steps,
                &floors,
                &ceilings,
                &seats,
                &sold,
            ],
        )
        .await?;
    Ok(())
}

/// The event that publishes tiers' prices now.
fn tier_prices_changed(event_id: Uuid, currency_code: &str, prices: &[CurrentPrice]) -> NewEvent {
    let tiers = prices
        .iter()
        .map(|price| {
            let rule = price.rule.as_ref();
            events::CurrentTierPrice {
                price_tier_id: price.tier_id.to_string(),
                currency_code: currency_code.to_owned(),
                price_minor: price.price_minor,
                base_minor: price.base_minor,
                dynamic: rule.is_some(),
                floor_minor: rule.map_or(0, |rule| rule.floor_minor),
                ceiling_minor: rule.map_or(0, |rule| rule.ceiling_minor),
                step_change_basis_points: rule.map_or(0, |rule| rule.step_change_bp),
                step_sold_basis_points: rule.map_or(0, |rule| rule.step_sold_bp),
                sold_count: price.sold,
                seat_count: price.seat_count,
            }
        })
        .collect();
    NewEvent::new(
        EVENT,
        event_id,
        Payload::TierPricesChanged(events::TierPricesChanged {
            event_id: event_id.to_string(),
            tiers,
        }),
    )
}

/// Counts sold (or, with `$4` = -1, released) seats into their events'
/// dynamic tiers: `$1` the events, `$2`/`$3` every seat's event and index.
/// Answers the counted tiers (`counted_step` reads them). Events without a
/// rule cost one probe of the empty primary key range.
macro_rules! count_tiers_cte {
    () => {
        "moved AS (
             SELECT t.event_id, t.price_tier_id AS tier_id, count(*)::int4 AS n
             FROM unnest($2::uuid[], $3::int4[]) AS s(event_id, seat_index)
             JOIN inventory.tickets t ON t.event_id = s.event_id AND t.seat_index = s.seat_index
             WHERE s.event_id IN (SELECT p.event_id FROM inventory.tier_prices p
                                  WHERE p.event_id = ANY($1::uuid[]))
             GROUP BY 1, 2
         ),
         counted AS (
             UPDATE inventory.tier_prices p SET sold = p.sold + $4::int4 * m.n
             FROM moved m WHERE p.event_id = m.event_id AND p.tier_id = m.tier_id
             RETURNING p.event_id, p.currency_code, p.tier_id, p.base_minor, p.step_change_bp,
                       p.step_sold_bp, p.floor_minor, p.ceiling_minor, p.seat_count, p.sold,
                       $4::int4 * m.n AS moved
         )"
    };
}

/// A tier a sale or release counted (a row of `count_tiers_cte!`'s
/// `counted`), as its new price if it moved a step.
fn counted_step(row: &tokio_postgres::Row) -> Option<(Uuid, String, CurrentPrice)> {
    let tier_id: Uuid = row.get::<_, Option<Uuid>>("tier_id")?;
    let counted = CountedTier {
        base_minor: row.get("base_minor"),
        rule: TierRule {
            tier_id,
            step_change_bp: row.get::<_, i64>("step_change_bp") as i32,
            step_sold_bp: row.get::<_, i64>("step_sold_bp").max(0) as u32,
            floor_minor: row.get("floor_minor"),
            ceiling_minor: row.get("ceiling_minor"),
        },
        seat_count: row.get::<_, i64>("seat_count").max(0) as u32,
        sold: row.get::<_, i32>("sold").max(0) as u32,
        moved: row.get("moved"),
    };
    let price = counted.new_step()?;
    Some((row.get("event_id"), row.get("currency_code"), price))
}

/// One `TierPricesChanged` per event among the steps.
fn published_steps(steps: Vec<(Uuid, String, CurrentPrice)>) -> Vec<NewEvent> {
    let mut by_event: Vec<(Uuid, String, Vec<CurrentPrice>)> = Vec::new();
    for (event_id, currency, price) in steps {
        match by_event.iter_mut().find(|(id, _, _)| *id == event_id) {
            Some((_, _, prices)) => prices.push(price),
            None => by_event.push((event_id, currency, vec![price])),
        }
    }
    by_event
        .into_iter()
        .map(|(event_id, currency, prices)| tier_prices_changed(event_id, &currency, &prices))
        .collect()
}

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
pub(crate) enum FeedEffect {
    None,
    Created,
    StatusChanged,
}

#[derive(Clone)]
pub struct TicketStore {
    pool: Pool,
    /// The sale batch writer, started on first use; it holds only the
    /// pool, so it ends once every handle to this store is gone.
    sales: Arc<OnceLock<Batcher<Sale, Result<CommitOutcome>>>>,
    outbox: Outbox,
}

/// The aggregate inventory's events are about: the catalog event whose
/// tickets they are.
const EVENT: &str = "event";

async fn room_of(
    client: &deadpool_postgres::Client,
    event_id: Uuid,
) -> Result<Option<RoomSettings>> {
    Ok(client
        .query_opt(
            "SELECT enabled, rate, opens_ms, max_active FROM inventory.waiting_rooms WHERE event_id = $1",
            &[&event_id],
        )
        .await?
        .map(|row| RoomSettings {
            enabled: row.get("enabled"),
            rate: row.get::<_, i32>("rate").max(0) as u32,
            opens_ms: row.get("opens_ms"),
            max_active: row.get::<_, i32>("max_active").max(0) as u32,
        }))
}

/// How long a room's Redis state outlives its event.
const ROOM_AFTER_EVENT: chrono::Duration = chrono::Duration::days(1);

/// When a room's Redis state expires (Unix ms), 0 when the event's end is
/// unknown.
fn room_expiry(ends_at: Option<DateTime<Utc>>) -> i64 {
    ends_at.map_or(0, |ends| {
        (ends + ROOM_AFTER_EVENT).timestamp_millis().max(1)
    })
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
        Self {
            pool,
            sales: Arc::default(),
            outbox: Outbox::new(super::SCHEMA),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.event", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
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
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.truth", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn truth(&self, event_id: Uuid) -> Result<Option<EventTruth>> {
        let client = self.pool.get().await?;
        let Some(event) = client
            .query_opt(
                "SELECT e.status, e.on_sale_time, e.seat_count, e.ends_at, p.tiers,
                        coalesce(p.version, 0) AS pricing_version,
                        CASE WHEN p.tiers IS NULL THEN NULL ELSE e.layout END AS layout
                 FROM inventory.events e
                 LEFT JOIN inventory.pricing_rules p ON p.event_id = e.event_id
                 WHERE e.event_id = $1",
                &[&event_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let pricing = pricing_table(&event)?;
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
            room_expires_ms: room_expiry(event.get("ends_at")),
            pricing,
            pricing_version: event.get("pricing_version"),
        }))
    }

    /// Records an event's pricing rule (an empty one removes it) as the
    /// event's next rule version, which it answers: the truth Redis's
    /// pricing table is rebuilt from. In the same transaction, under the
    /// outbox's append lock (so no sale or release of the event counts in
    /// between): the dynamic tiers' sold counts start over from the
    /// tickets, and every tier's price now is published
    /// (`TierPricesChanged`).
    pub async fn save_pricing_rule(
        &self,
        event_id: Uuid,
        rule: &PricingRule,
        layout: &SaleLayout,
    ) -> Result<i64> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        self.outbox
            .lock(&transaction)
            .await
            .map_err(DbError::from)?;
        let version: i64 = transaction
            .query_one(
                "INSERT INTO inventory.pricing_rules (event_id, tiers) VALUES ($1, $2)
                 ON CONFLICT (event_id) DO UPDATE
                 SET tiers = EXCLUDED.tiers, version = inventory.pricing_rules.version + 1,
                     updated_at = now()
                 RETURNING version",
                &[&event_id, &Json(rule.tiers())],
            )
            .await?
            .get(0);
        let sold: HashMap<Uuid, i64> = transaction
            .query(
                "SELECT price_tier_id, count(*) FROM inventory.tickets
                 WHERE event_id = $1 AND status = 'sold' AND price_tier_id IS NOT NULL
                 GROUP BY price_tier_id",
                &[&event_id],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let prices = rule.prices(layout, |tier| {
            sold.get(&tier)
                .map_or(0, |count| u32::try_from(*count).unwrap_or(u32::MAX))
        });
        save_counted_tiers(&transaction, event_id, &layout.currency_code, &prices).await?;
        let changed = tier_prices_changed(event_id, &layout.currency_code, &prices);
        self.outbox
            .append(&transaction, vec![changed])
            .await
            .map_err(DbError::from)?;
        transaction.commit().await?;
        Ok(version)
    }

    /// An event's waiting-room settings, if an admin ever set any.
    pub async fn room(&self, event_id: Uuid) -> Result<Option<RoomSettings>> {
        room_of(&self.pool.get().await?, event_id).await
    }

    /// Records an event's waiting-room settings (the truth Redis's room is
    /// recreated from after it loses it).
    pub async fn save_room(&self, event_id: Uuid, room: RoomSettings) -> Result<()> {
        let rate = i32::try_from(room.rate).unwrap_or(i32::MAX);
        let max_active = i32::try_from(room.max_active).unwrap_or(i32::MAX);
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO inventory.waiting_rooms (event_id, enabled, rate, opens_ms, max_active)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (event_id) DO UPDATE
                 SET enabled = EXCLUDED.enabled, rate = EXCLUDED.rate, opens_ms = EXCLUDED.opens_ms,
                     max_active = EXCLUDED.max_active, updated_at = now()",
                &[
                    &event_id,
                    &room.enabled,
                    &rate,
                    &room.opens_ms.max(0),
                    &max_active,
                ],
            )
            .await?;
        Ok(())
    }

    /// When the event's room state may leave Redis (Unix ms; 0: unknown).
    pub async fn room_expiry_ms(&self, event_id: Uuid) -> Result<i64> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT ends_at FROM inventory.events WHERE event_id = $1",
                &[&event_id],
            )
            .await?;
        Ok(room_expiry(row.and_then(|row| row.get("ends_at"))))
    }

    /// Events on sale with no ticket left to sell (the partial index of
    /// available tickets answers each in one probe).
    pub async fn sold_out_events(&self) -> Result<Vec<Uuid>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT e.event_id FROM inventory.events e
                 WHERE e.status = 'on_sale' AND NOT EXISTS (
                     SELECT 1 FROM inventory.tickets t
                     WHERE t.event_id = e.event_id AND t.status = 'available')",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The seed of the event's pre-queue draw: `candidate` if this is the
    /// first draw, else the one stored before (every instance, and a redraw
    /// after Redis lost the line, uses the same seed). `None` when the room
    /// was never configured.
    pub async fn claim_draw_seed(
        &self,
        event_id: Uuid,
        candidate: &DrawSeed,
    ) -> Result<Option<DrawSeed>> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "UPDATE inventory.waiting_rooms
                 SET draw_seed = COALESCE(draw_seed, $2), drawn_at = COALESCE(drawn_at, now())
                 WHERE event_id = $1
                 RETURNING draw_seed",
                &[&event_id, &candidate.as_bytes().as_slice()],
            )
            .await?;
        row.map(|row| {
            DrawSeed::from_bytes(row.get::<_, &[u8]>("draw_seed"))
                .context("a stored draw seed of the wrong length")
        })
        .transpose()
        .map_err(InventoryError::from)
    }

    /// The published draw (seed and when it was drawn), once there was one.
    pub async fn draw(&self, event_id: Uuid) -> Result<Option<(DrawSeed, DateTime<Utc>)>> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT draw_seed, drawn_at FROM inventory.waiting_rooms
                 WHERE event_id = $1 AND draw_seed IS NOT NULL",
                &[&event_id],
            )
            .await?;
        row.map(|row| {
            let seed = DrawSeed::from_bytes(row.get::<_, &[u8]>("draw_seed"))
                .context("a stored draw seed of the wrong length")?;
            Ok::<_, anyhow::Error>((seed, row.get("drawn_at")))
        })
        .transpose()
        .map_err(InventoryError::from)
    }

    /// The drawn pre-queue as recorded, in place order (place 1 first);
    /// empty before the draw was recorded.
    pub async fn drawn_order(&self, event_id: Uuid) -> Result<Vec<Uuid>> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT user_id FROM inventory.draw_entrants WHERE event_id = $1 ORDER BY place",
                &[&event_id],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Records the drawn pre-queue (`order[0]` at place 1) in one
    /// transaction, in chunks; a second recorder (another instance drawing
    /// the same frozen pre-queue from the same seed) changes nothing.
    pub async fn record_draw(&self, event_id: Uuid, order: &[Uuid]) -> Result<()> {
        const CHUNK: usize = 50_000;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO inventory.draw_entrants (event_id, place, user_id)
                 SELECT $1, $2::int8 + s.n, s.user_id
                 FROM unnest($3::uuid[]) WITH ORDINALITY AS s(user_id, n)
                 ON CONFLICT (event_id, place) DO NOTHING",
            )
            .await?;
        for (index, chunk) in order.chunks(CHUNK).enumerate() {
            let offset = (index * CHUNK) as i64;
            transaction
                .execute(&insert, &[&event_id, &offset, &chunk])
                .await?;
        }
        transaction
            .execute(
                "UPDATE inventory.waiting_rooms SET draw_entrants = $2
                 WHERE event_id = $1 AND draw_entrants IS NULL",
                &[&event_id, &(order.len() as i64)],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A page of the recorded draw: (place, user) from place `after + 1`,
    /// at most `limit`, and how many entrants there are in all (`None`
    /// before the draw was recorded).
    pub async fn draw_entrants(
        &self,
        event_id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<(u64, Uuid)>, Option<u64>)> {
        let client = self.pool.get().await?;
        let total: Option<i64> = client
            .query_opt(
                "SELECT draw_entrants FROM inventory.waiting_rooms WHERE event_id = $1",
                &[&event_id],
            )
            .await?
            .and_then(|row| row.get(0));
        let rows = client
            .query(
                "SELECT place, user_id FROM inventory.draw_entrants
                 WHERE event_id = $1 AND place > $2 ORDER BY place LIMIT $3",
                &[&event_id, &after, &limit],
            )
            .await?;
        let page = rows
            .iter()
            .map(|row| (row.get::<_, i64>(0).max(0) as u64, row.get(1)))
            .collect();
        Ok((page, total.map(|total| total.max(0) as u64)))
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

    /// Sells exactly `seats` to `booking_id`: all or none, refused once
    /// `expires_at - margin` has passed by PostgreSQL's clock.
    ///
    /// Commits arriving together are sold by one statement (see
    /// [`sell_together`]); each still succeeds or fails on its own.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.commit", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn commit(
        &self,
        hold: HoldRef,
        seats: &[u32],
        booking_id: Uuid,
        sale_id: Option<Uuid>,
        expires_at: DateTime<Utc>,
        margin: Duration,
    ) -> Result<CommitOutcome> {
        let sale = Sale::new(hold, seats, booking_id, sale_id, expires_at, margin)?;
        let pool = self.pool.clone();
        let outbox = self.outbox.clone();
        self.sales
            .get_or_init(|| {
                Batcher::spawn(move |sales| sell_batch(pool.clone(), outbox.clone(), sales))
            })
            .submit(sale)
            .await
            .map_err(InventoryError::Unavailable)?
    }

    /// Seats this hold already sold to this booking (idempotent retries
    /// after Redis forgot the hold).
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.committed_seats", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
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
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.sold_among", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
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
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.release_booking", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn release_booking(&self, event_id: Uuid, booking_id: Uuid) -> Result<Vec<u32>> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let rows = transaction
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
        let mut released = seats_of(&rows);
        released.sort_unstable();
        if released.is_empty() {
            return Ok(released);
        }
        // Under the append lock (see the module docs): if the released
        // seats are all that is available now, the event was sold out.
        let available: i64 = self
            .outbox
            .query_locked(
                &transaction,
                "SELECT count(*) FROM inventory.tickets WHERE event_id = $1 AND status = 'available'",
                &[&event_id],
            )
            .await
            .map_err(DbError::from)?
            .first()
            .map(|row| row.get(0))
            .unwrap_or(0);
        // Still under the lock: the released seats counted out of the
        // event's dynamic tiers.
        let count = transaction
            .prepare_cached(concat!(
                "WITH ",
                count_tiers_cte!(),
                " SELECT * FROM counted"
            ))
            .await?;
        let events_of_seats = vec![event_id; released.len()];
        let steps = published_steps(
            transaction
                .query(
                    &count,
                    &[
                        &vec![event_id],
                        &events_of_seats,
                        &seat_array(&released),
                        &-1i32,
                    ],
                )
                .await?
                .iter()
                .filter_map(counted_step)
                .collect(),
        );
        let mut published = vec![NewEvent::new(
            EVENT,
            event_id,
            Payload::SeatsReleased(events::SeatsReleased {
                event_id: event_id.to_string(),
                booking_id: booking_id.to_string(),
                seat_indexes: released.clone(),
            }),
        )];
        if available == released.len() as i64 {
            published.push(NewEvent::new(
                EVENT,
                event_id,
                Payload::BackOnSale(events::BackOnSale {
                    event_id: event_id.to_string(),
                    available_seats: available as u32,
                }),
            ));
        }
        published.extend(steps);
        self.outbox
            .append(&transaction, published)
            .await
            .map_err(DbError::from)?;
        transaction.commit().await?;
        Ok(released)
    }
}

/// One commit waiting for the sale statement.
#[derive(Clone, Debug)]
pub(crate) struct Sale {
    hold: HoldRef,
    seats: Vec<i32>,
    booking_id: Uuid,
    sale_id: Option<Uuid>,
    /// The hold's expiry minus the safety margin.
    deadline: DateTime<Utc>,
}

impl Sale {
    /// Sells exactly `seats` of `hold` to `booking_id`, refused once
    /// `expires_at - margin` has passed by PostgreSQL's clock.
    pub(crate) fn new(
        hold: HoldRef,
        seats: &[u32],
        booking_id: Uuid,
        sale_id: Option<Uuid>,
        expires_at: DateTime<Utc>,
        margin: Duration,
    ) -> Result<Self> {
        let margin = chrono::Duration::from_std(margin)
            .map_err(|_| InventoryError::Internal(anyhow::anyhow!("commit margin out of range")))?;
        Ok(Self {
            hold,
            seats: seat_array(seats),
            booking_id,
            sale_id,
            deadline: expires_at - margin,
        })
    }
}

/// Sales sold by one statement, each with its place in the batch.
type Round = Vec<(usize, Sale)>;

/// Splits a batch into rounds in which no two sales name the same ticket,
/// keeping arrival order: one statement updates a ticket row at most once,
/// so two commits racing for one seat (which Redis normally prevents) are
/// decided by successive statements, the later one seeing the earlier
/// one's sale. Each sale keeps its place in the batch.
fn rounds(sales: Vec<Sale>) -> Vec<Round> {
    let mut rounds: Vec<(HashSet<(Uuid, i32)>, Round)> = Vec::new();
    for (place, sale) in sales.into_iter().enumerate() {
        let tickets: Vec<(Uuid, i32)> = sale
            .seats
            .iter()
            .map(|seat| (sale.hold.event_id, *seat))
            .collect();
        // After the last round holding any of its tickets, so a later
        // arrival never overtakes an earlier one for the same seat.
        let after = rounds
            .iter()
            .rposition(|(taken, _)| tickets.iter().any(|ticket| taken.contains(ticket)))
            .map_or(0, |last| last + 1);
        if after == rounds.len() {
            rounds.push((HashSet::new(), Vec::new()));
        }
        let (taken, round) = &mut rounds[after];
        taken.extend(tickets);
        round.push((place, sale));
    }
    rounds.into_iter().map(|(_, round)| round).collect()
}

/// The batch writer: each round is one statement; a round whose statement
/// failed is retried one sale at a time, so one sale's trouble never
/// becomes every caller's. Answers come back in arrival order.
async fn sell_batch(
    pool: Pool,
    outbox: Outbox,
    sales: Vec<Sale>,
) -> Vec<anyhow::Result<Result<CommitOutcome>>> {
    let mut answers: Vec<Option<Result<CommitOutcome>>> = sales.iter().map(|_| None).collect();
    for round in rounds(sales) {
        let together: Vec<&Sale> = round.iter().map(|(_, sale)| sale).collect();
        if together.len() > 1 {
            match sell_together(&pool, &outbox, &together).await {
                Ok(outcomes) => {
                    for ((place, _), outcome) in round.iter().zip(outcomes) {
                        answers[*place] = Some(Ok(outcome));
                    }
                    continue;
                }
                Err(error) => {
                    let error = anyhow::Error::new(error);
                    tracing::warn!(
                        error = format!("{error:#}"),
                        sales = together.len(),
                        "a batch of sales failed; selling them one at a time"
                    );
                }
            }
        }
        for (place, sale) in &round {
            answers[*place] = Some(sell_together(&pool, &outbox, &[sale]).await.and_then(
                |mut outcomes| {
                    outcomes.pop().ok_or_else(|| {
                        InventoryError::Internal(anyhow::anyhow!("a sale got no answer"))
                    })
                },
            ));
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            Ok(answer.unwrap_or_else(|| {
                Err(InventoryError::Internal(anyhow::anyhow!(
                    "a sale got no answer"
                )))
            }))
        })
        .collect()
}

/// Sells each of `sales` (no two naming the same ticket) in one
/// statement: every seat of a sale flips from available to sold, or none
/// does, and only while its hold's lease is valid by PostgreSQL's own
/// clock. Rows are locked in (event, seat) order, so concurrent statements
/// never deadlock, and a statement that waited re-reads the rows after the
/// winner's commit. A batch costs one round trip, one commit and one WAL
/// flush, which is what a lone sale spends most of its time on.
async fn sell_together(
    pool: &Pool,
    outbox: &Outbox,
    sales: &[&Sale],
) -> Result<Vec<CommitOutcome>> {
    let events: Vec<Uuid> = sales.iter().map(|sale| sale.hold.event_id).collect();
    let holds: Vec<Uuid> = sales.iter().map(|sale| sale.hold.hold_id).collect();
    let bookings: Vec<Uuid> = sales.iter().map(|sale| sale.booking_id).collect();
    let sale_ids: Vec<Option<Uuid>> = sales.iter().map(|sale| sale.sale_id).collect();
    let deadlines: Vec<DateTime<Utc>> = sales.iter().map(|sale| sale.deadline).collect();
    let (items, seats): (Vec<i32>, Vec<i32>) = sales
        .iter()
        .zip(1..)
        .flat_map(|(sale, item)| sale.seats.iter().map(move |seat| (item, *seat)))
        .unzip();
    let client = pool.get().await?;
    // Prepared once per connection, its arrays read through sub-selects so
    // the plan is made once, not per call: planning it costs more than
    // running it.
    let statement = client
        .prepare_cached(
            "WITH items AS (
                 SELECT u.item::int4 AS item, u.event_id, u.hold_id, u.booking_id, u.sale_id, u.deadline
                 FROM unnest((SELECT $1::uuid[]), (SELECT $2::uuid[]), (SELECT $3::uuid[]),
                             (SELECT $4::uuid[]), (SELECT $5::timestamptz[]))
                      WITH ORDINALITY AS u(event_id, hold_id, booking_id, sale_id, deadline, item)
             ),
             wanted AS (
                 SELECT w.item, i.event_id, w.seat_index, i.booking_id, i.hold_id, i.sale_id
                 FROM unnest((SELECT $6::int4[]), (SELECT $7::int4[])) AS w(item, seat_index)
                 JOIN items i ON i.item = w.item
             ),
             locked AS (
                 SELECT t.event_id, t.seat_index, t.status, t.booking_id, t.hold_id, t.sale_id
                 FROM inventory.tickets t
                 JOIN wanted w ON w.event_id = t.event_id AND w.seat_index = t.seat_index
                 ORDER BY t.event_id, t.seat_index
                 FOR UPDATE OF t
             ),
             counts AS (
                 SELECT i.item,
                        count(w.seat_index) AS wanted,
                        count(l.seat_index) AS total,
                        count(*) FILTER (WHERE l.status = 'available') AS free,
                        count(*) FILTER (WHERE l.status = 'sold' AND l.booking_id = i.booking_id
                            AND (i.sale_id IS NULL OR l.sale_id IS NULL OR l.sale_id = i.sale_id)) AS mine,
                        count(*) FILTER (WHERE l.status = 'sold' AND l.hold_id = i.hold_id) AS this_hold
                 FROM items i
                 LEFT JOIN wanted w ON w.item = i.item
                 LEFT JOIN locked l ON l.event_id = w.event_id AND l.seat_index = w.seat_index
                 GROUP BY i.item
             ),
             checks AS (
                 SELECT i.item, i.deadline > now() AS lease_ok, coalesce(e.status = 'on_sale', false) AS on_sale
                 FROM items i LEFT JOIN inventory.events e ON e.event_id = i.event_id
             ),
             eligible AS (
                 SELECT c.item FROM counts c JOIN checks k ON k.item = c.item
                 WHERE c.free = c.wanted AND k.lease_ok AND k.on_sale
             ),
             sold AS (
                 UPDATE inventory.tickets t
                 SET status = 'sold', booking_id = w.booking_id, hold_id = w.hold_id, sale_id = w.sale_id,
                     version = t.version + 1, sold_at = now()
                 FROM wanted w
                 JOIN eligible e ON e.item = w.item
                 WHERE t.event_id = w.event_id AND t.seat_index = w.seat_index AND t.status = 'available'
                 RETURNING w.item
             ),
             sold_counts AS (SELECT s.item, count(*) AS sold FROM sold s GROUP BY s.item)
             SELECT c.item, c.wanted, coalesce(sc.sold, 0) AS sold,
                    c.mine, c.this_hold, c.total, k.lease_ok, k.on_sale
             FROM counts c JOIN checks k ON k.item = c.item LEFT JOIN sold_counts sc ON sc.item = c.item
             ORDER BY c.item",
        )
        .await?;
    // BEGIN travels with the sale and COMMIT with the outbox append (see
    // `PipelinedTransaction`): three round trips for the batch, with the
    // locked sold-out check between them.
    let transaction = PipelinedTransaction::new(client);
    let rows = transaction
        .begin_with("", async {
            transaction
                .client()
                .query(
                    &statement,
                    &[
                        &events, &holds, &bookings, &sale_ids, &deadlines, &items, &seats,
                    ],
                )
                .await
        })
        .await?;
    if rows.len() != sales.len() {
        return Err(InventoryError::Internal(anyhow::anyhow!(
            "a sale statement for {} sales answered {} rows",
            sales.len(),
            rows.len()
        )));
    }
    let outcomes: Vec<CommitOutcome> = rows.iter().map(outcome_of).collect();
    let append = publish_sales(transaction.client(), outbox, sales, &outcomes).await?;
    transaction
        .commit_with(async {
            append
                .send(transaction.client())
                .await
                .map_err(DbError::from)
        })
        .await?;
    Ok(outcomes)
}

/// Prepares the append of a `SeatsSold` per sale this statement made, and
/// a `SoldOut` per event left with no available ticket (decided under the
/// append lock, see the module docs), for the caller to send with its
/// commit.
async fn publish_sales(
    transaction: &deadpool_postgres::Client,
    outbox: &Outbox,
    sales: &[&Sale],
    outcomes: &[CommitOutcome],
) -> Result<PreparedAppend> {
    let sold: Vec<&Sale> = sales
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| **outcome == CommitOutcome::Committed)
        .map(|(sale, _)| *sale)
        .collect();
    if sold.is_empty() {
        return Ok(PreparedAppend::default());
    }
    let mut touched: Vec<Uuid> = sold.iter().map(|sale| sale.hold.event_id).collect();
    touched.sort_unstable();
    touched.dedup();
    let (seat_events, seat_indexes): (Vec<Uuid>, Vec<i32>) = sold
        .iter()
        .flat_map(|sale| sale.seats.iter().map(|seat| (sale.hold.event_id, *seat)))
        .unzip();
    // One statement: which events sold out, and the sales counted into
    // their dynamic tiers (a step of a price is published with its sale).
    let rows = outbox
        .query_locked(
            transaction,
            concat!(
                "WITH ",
                count_tiers_cte!(),
                "
                 SELECT e.id AS event_id, NULL::text AS currency_code, NULL::uuid AS tier_id,
                        NULL::int8 AS base_minor, NULL::int8 AS step_change_bp,
                        NULL::int8 AS step_sold_bp, NULL::int8 AS floor_minor,
                        NULL::int8 AS ceiling_minor, NULL::int8 AS seat_count,
                        NULL::int4 AS sold, NULL::int4 AS moved
                 FROM unnest($1::uuid[]) AS e(id)
                 WHERE NOT EXISTS (SELECT 1 FROM inventory.tickets t
                                   WHERE t.event_id = e.id AND t.status = 'available')
                 UNION ALL
                 SELECT * FROM counted"
            ),
            &[&touched, &seat_events, &seat_indexes, &1i32],
        )
        .await
        .map_err(DbError::from)?;
    let sold_out: Vec<Uuid> = rows
        .iter()
        .filter(|row| row.get::<_, Option<Uuid>>("tier_id").is_none())
        .map(|row| row.get("event_id"))
        .collect();
    let steps = published_steps(rows.iter().filter_map(counted_step).collect());
    let mut published: Vec<NewEvent> = sold
        .iter()
        .map(|sale| {
            let mut seats: Vec<u32> = sale.seats.iter().map(|seat| *seat as u32).collect();
            seats.sort_unstable();
            NewEvent::new(
                EVENT,
                sale.hold.event_id,
                Payload::SeatsSold(events::SeatsSold {
                    event_id: sale.hold.event_id.to_string(),
                    booking_id: sale.booking_id.to_string(),
                    sale_id: sale.sale_id.map(|id| id.to_string()).unwrap_or_default(),
                    seat_indexes: seats,
                }),
            )
        })
        .collect();
    published.extend(steps);
    published.extend(sold_out.into_iter().map(|event_id| {
        NewEvent::new(
            EVENT,
            event_id,
            Payload::SoldOut(events::SoldOut {
                event_id: event_id.to_string(),
            }),
        )
    }));
    Ok(outbox
        .prepare_append(transaction, published)
        .await
        .map_err(DbError::from)?)
}

/// What the sale statement's row for one sale means.
fn outcome_of(row: &tokio_postgres::Row) -> CommitOutcome {
    let wanted: i64 = row.get("wanted");
    if row.get::<_, i64>("sold") == wanted {
        CommitOutcome::Committed
    } else if row.get::<_, i64>("mine") == wanted {
        CommitOutcome::AlreadyCommitted
    } else if row.get::<_, i64>("this_hold") > 0 {
        CommitOutcome::HoldCommittedElsewhere
    } else if row.get::<_, i64>("total") < wanted {
        CommitOutcome::UnknownSeats
    } else if !row.get::<_, bool>("on_sale") {
        CommitOutcome::NotOnSale
    } else if !row.get::<_, bool>("lease_ok") {
        CommitOutcome::LeaseExpired
    } else {
        CommitOutcome::Unavailable
    }
}

/// Keeps a venue's layout (from the catalog's `VenueCreated`); venues are
/// immutable, so a replay changes nothing.
pub(crate) async fn save_venue_layout(
    transaction: &Transaction<'_>,
    venue: &VenueLayout,
) -> Result<()> {
    transaction
        .execute(
            "INSERT INTO inventory.venue_layouts (venue_id, layout) VALUES ($1, $2)
             ON CONFLICT (venue_id) DO NOTHING",
            &[&venue.venue_id, &Json(venue)],
        )
        .await?;
    Ok(())
}

/// A venue's layout, once the catalog has published it.
pub(crate) async fn venue_layout(
    transaction: &Transaction<'_>,
    venue_id: Uuid,
) -> Result<Option<VenueLayout>> {
    transaction
        .query_opt(
            "SELECT layout FROM inventory.venue_layouts WHERE venue_id = $1",
            &[&venue_id],
        )
        .await?
        .map(|row| {
            let Json(layout): Json<VenueLayout> =
                row.try_get("layout").context("decoding a venue layout")?;
            Ok(layout)
        })
        .transpose()
}

/// Applies one catalog event to inventory inside the feed's transaction:
/// a published event gets its tickets (idempotently), a cancelled one stops
/// selling. Older versions than what is stored change nothing.
pub(crate) async fn apply_catalog_event(
    transaction: &Transaction<'_>,
    event: &EventForSale,
    layout: Option<&SaleLayout>,
) -> Result<FeedEffect> {
    match event.status {
        CatalogStatus::Draft => Ok(FeedEffect::None),
        CatalogStatus::Cancelled => {
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
        CatalogStatus::Published => {
            let Some(layout) = layout else {
                return Err(InventoryError::Internal(anyhow::anyhow!(
                    "published event {} has no layout",
                    event.id
                )));
            };
            let row = transaction
                .query_opt(
                    "INSERT INTO inventory.events
                         (event_id, venue_id, status, on_sale_time, seat_count, currency_code, layout, catalog_version, ends_at)
                     VALUES ($1, $2, 'on_sale', $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (event_id) DO UPDATE
                     SET on_sale_time = EXCLUDED.on_sale_time, catalog_version = EXCLUDED.catalog_version,
                         ends_at = EXCLUDED.ends_at, updated_at = now()
                     WHERE inventory.events.catalog_version < EXCLUDED.catalog_version
                       AND inventory.events.status = 'on_sale'
                     RETURNING (xmax = 0) AS inserted",
                    &[
                        &event.id,
                        &event.venue_id,
                        &event.on_sale_time,
                        &(layout.seat_count as i32),
                        &layout.currency_code,
                        &Json(layout),
                        &event.version,
                        &event.ends_at,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(event_id: Uuid, seats: &[i32]) -> Sale {
        Sale {
            hold: HoldRef {
                event_id,
                hold_id: Uuid::new_v4(),
            },
            seats: seats.to_vec(),
            booking_id: Uuid::new_v4(),
            sale_id: None,
            deadline: Utc::now(),
        }
    }

    #[test]
    fn no_round_names_a_ticket_twice_and_later_arrivals_never_overtake() {
        let concert = Uuid::new_v4();
        let film = Uuid::new_v4();
        let sales = vec![
            sale(concert, &[1, 2]),
            sale(concert, &[3]),
            sale(concert, &[2, 4]),
            // The same seat number at another event does not collide.
            sale(film, &[1, 2]),
            sale(concert, &[4]),
            sale(concert, &[5]),
        ];
        let rounds: Vec<Vec<usize>> = rounds(sales)
            .into_iter()
            .map(|round| round.into_iter().map(|(place, _)| place).collect())
            .collect();
        // Seat 2 puts the third sale after the first; seat 4 the fifth
        // after the third; the rest go first.
        assert_eq!(rounds, vec![vec![0, 1, 3, 5], vec![2], vec![4]]);
    }
}
