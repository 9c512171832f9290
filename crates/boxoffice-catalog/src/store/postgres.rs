//! The catalog's PostgreSQL queries. Every write runs in one transaction
//! that also appends its event to `catalog.event_outbox` (through
//! `boxoffice_events::Outbox`, as its last statement), so consumers never
//! miss a change and never see one that was rolled back.

use std::collections::HashSet;

use anyhow::Context as _;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Deserialize;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{
    Address, Category, DynamicPrice, Event, EventPatch, EventStatus, EventVenue, FieldError,
    LatLng, Money, NewEvent, NewPerformer, NewPriceTier, NewVenue, Performer, PriceTier,
    RatingSummary, RowLayout, SeatLayout, SeatPosition, SectionKind, SectionLayout, SectionSummary,
    Venue, check_cancel, check_patch, check_publish,
};
use crate::error::CatalogError;
use crate::events::{EventChange, event_changed, performer_created, venue_created};

type Result<T> = std::result::Result<T, CatalogError>;

#[derive(Clone)]
pub struct CatalogStore {
    pool: Pool,
    outbox: boxoffice_events::Outbox,
}

/// Which events `list_events` returns.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub status: EventStatus,
    pub start_after: DateTime<Utc>,
    pub start_before: Option<DateTime<Utc>>,
    pub venue_id: Option<Uuid>,
    pub performer_id: Option<Uuid>,
}

/// Keyset position after the last event of a page: (start time, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub start_time: DateTime<Utc>,
    pub id: Uuid,
}

impl PageCursor {
    pub fn encode(&self) -> String {
        let raw = format!("{}|{}", self.start_time.timestamp_micros(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(token: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (micros, id) = raw.split_once('|')?;
        Some(Self {
            start_time: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

const EVENT_SELECT: &str = "
SELECT e.id, e.title, e.description, e.category, e.status, e.start_time, e.end_time, e.on_sale_time,
       e.cancel_reason, e.version, e.created_at, e.updated_at,
       v.id AS venue_id, v.name AS venue_name, v.city, v.country_code, v.latitude, v.longitude, v.time_zone,
       COALESCE((SELECT json_agg(json_build_object(
                    'id', p.id, 'name', p.name, 'description', p.description, 'genre', p.genre,
                    'created_at', p.created_at) ORDER BY ep.position)
                 FROM catalog.event_performers ep JOIN catalog.performers p ON p.id = ep.performer_id
                 WHERE ep.event_id = e.id), '[]'::json) AS performers,
       COALESCE((SELECT json_agg(json_build_object(
                    'id', t.id, 'name', t.name, 'currency_code', t.currency_code,
                    'amount_minor', t.amount_minor, 'section_ids', t.section_ids,
                    'dynamic', CASE WHEN cp.dynamic THEN json_build_object(
                        'price_minor', cp.price_minor, 'floor_minor', cp.floor_minor,
                        'ceiling_minor', cp.ceiling_minor, 'step_change_bp', cp.step_change_bp,
                        'step_sold_bp', cp.step_sold_bp, 'sold_count', cp.sold_count,
                        'seat_count', cp.seat_count) END) ORDER BY t.position)
                 FROM catalog.price_tiers t
                 LEFT JOIN catalog.current_prices cp ON cp.event_id = t.event_id AND cp.tier_id = t.id
                 WHERE t.event_id = e.id), '[]'::json) AS price_tiers
FROM catalog.events e JOIN catalog.venues v ON v.id = e.venue_id";

#[derive(Deserialize)]
struct TierJson {
    id: Uuid,
    name: String,
    currency_code: String,
    amount_minor: i64,
    section_ids: Vec<Uuid>,
    dynamic: Option<DynamicJson>,
}

/// A dynamically priced tier's row of `catalog.current_prices`.
#[derive(Deserialize)]
struct DynamicJson {
    price_minor: i64,
    floor_minor: i64,
    ceiling_minor: i64,
    step_change_bp: i32,
    step_sold_bp: u32,
    sold_count: u32,
    seat_count: u32,
}

impl DynamicJson {
    fn into_domain(self, currency_code: &str) -> DynamicPrice {
        let money = |amount_minor| Money {
            currency_code: currency_code.to_owned(),
            amount_minor,
        };
        DynamicPrice {
            current: money(self.price_minor),
            floor: money(self.floor_minor),
            ceiling: money(self.ceiling_minor),
            step_change_bp: self.step_change_bp,
            step_sold_bp: self.step_sold_bp,
            sold_count: self.sold_count,
            seat_count: self.seat_count,
        }
    }
}

fn event_from_row(row: &Row) -> anyhow::Result<Event> {
    let category: String = row.try_get("category")?;
    let status: String = row.try_get("status")?;
    let performers: serde_json::Value = row.try_get("performers")?;
    let tiers: serde_json::Value = row.try_get("price_tiers")?;
    let tiers: Vec<TierJson> = serde_json::from_value(tiers).context("decoding price tiers")?;
    Ok(Event {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        category: Category::parse(&category).context("unknown category in database")?,
        status: EventStatus::parse(&status).context("unknown status in database")?,
        venue: EventVenue {
            id: row.try_get("venue_id")?,
            name: row.try_get("venue_name")?,
            city: row.try_get("city")?,
            country_code: row.try_get("country_code")?,
            location: location(row.try_get("latitude")?, row.try_get("longitude")?),
            time_zone: row.try_get("time_zone")?,
        },
        performers: serde_json::from_value(performers).context("decoding performers")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        on_sale_time: row.try_get("on_sale_time")?,
        price_tiers: tiers
            .into_iter()
            .map(|tier| PriceTier {
                id: tier.id,
                name: tier.name,
                dynamic: tier
                    .dynamic
                    .map(|dynamic| dynamic.into_domain(&tier.currency_code)),
                price: Money {
                    currency_code: tier.currency_code,
                    amount_minor: tier.amount_minor,
                },
                section_ids: tier.section_ids,
            })
            .collect(),
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        cancel_reason: row.try_get("cancel_reason")?,
    })
}

fn location(latitude: Option<f64>, longitude: Option<f64>) -> Option<LatLng> {
    Some(LatLng {
        latitude: latitude?,
        longitude: longitude?,
    })
}

fn performer_from_row(row: &Row) -> anyhow::Result<Performer> {
    Ok(Performer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        genre: row.try_get("genre")?,
        created_at: row.try_get("created_at")?,
    })
}

fn section_from_row(row: &Row) -> anyhow::Result<SectionSummary> {
    let kind: String = row.try_get("kind")?;
    Ok(SectionSummary {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: SectionKind::parse(&kind).context("unknown section kind in database")?,
        capacity: u32::try_from(row.try_get::<_, i32>("capacity")?)?,
        first_seat_index: u32::try_from(row.try_get::<_, i32>("first_seat_index")?)?,
    })
}

/// Appends the change's event as the transaction's last statement (it takes
/// the outbox's append lock until commit).
async fn publish(
    outbox: &boxoffice_events::Outbox,
    transaction: &deadpool_postgres::Transaction<'_>,
    event: boxoffice_events::NewEvent,
) -> Result<()> {
    outbox
        .append(transaction, vec![event])
        .await
        .context("publishing a catalog event")?;
    Ok(())
}

impl CatalogStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            outbox: boxoffice_events::Outbox::new(crate::events::PRODUCER),
        }
    }

    pub fn outbox(&self) -> &boxoffice_events::Outbox {
        &self.outbox
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    // ------------------------------------------------------------ venues

    pub async fn create_venue(&self, venue: &NewVenue) -> Result<Venue> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let venue_id = Uuid::now_v7();
        let capacity = i32::try_from(venue.capacity()).context("venue capacity")?;
        tx.execute(
            "INSERT INTO catalog.venues
                 (id, name, street, city, region, postal_code, country_code, latitude, longitude, time_zone, capacity)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &venue_id,
                &venue.name,
                &venue.address.street,
                &venue.address.city,
                &venue.address.region,
                &venue.address.postal_code,
                &venue.address.country_code,
                &venue.location.map(|l| l.latitude),
                &venue.location.map(|l| l.longitude),
                &venue.time_zone,
                &capacity,
            ],
        )
        .await?;

        let mut next_seat_index: i32 = 0;
        let (mut seat_indexes, mut seat_sections, mut row_labels, mut row_positions) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut numbers, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        for (position, section) in venue.sections.iter().enumerate() {
            let section_id = Uuid::now_v7();
            let section_capacity = i32::try_from(section.capacity).context("section capacity")?;
            tx.execute(
                "INSERT INTO catalog.sections (id, venue_id, position, name, kind, first_seat_index, capacity)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &section_id,
                    &venue_id,
                    &(position as i32),
                    &section.name,
                    &section.kind.as_str(),
                    &next_seat_index,
                    &section_capacity,
                ],
            )
            .await?;
            if section.kind == SectionKind::Seated {
                let mut seat_index = next_seat_index;
                for (row_position, row) in section.rows.iter().enumerate() {
                    for seat in &row.seats {
                        seat_indexes.push(seat_index);
                        seat_sections.push(section_id);
                        row_labels.push(row.label.clone());
                        row_positions.push(row_position as i32);
                        numbers.push(seat.number.clone());
                        xs.push(seat.x);
                        ys.push(seat.y);
                        seat_index += 1;
                    }
                }
            }
            next_seat_index += section_capacity;
        }
        if !seat_indexes.is_empty() {
            tx.execute(
                "INSERT INTO catalog.seats (venue_id, seat_index, section_id, row_label, row_position, number, x, y)
                 SELECT $1, * FROM unnest($2::int4[], $3::uuid[], $4::text[], $5::int4[], $6::text[], $7::float4[], $8::float4[])",
                &[&venue_id, &seat_indexes, &seat_sections, &row_labels, &row_positions, &numbers, &xs, &ys],
            )
            .await?;
        }
        let created = load_venue(&tx, venue_id)
            .await?
            .context("venue vanished inside its transaction")?;
        let layout = load_seat_layout(&tx, &created).await?;
        publish(&self.outbox, &tx, venue_created(&created, &layout)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get_venue(&self, id: Uuid) -> Result<Option<Venue>> {
        let client = self.pool.get().await?;
        load_venue(&client, id).await
    }

    pub async fn get_seat_layout(&self, venue_id: Uuid) -> Result<Option<SeatLayout>> {
        let client = self.pool.get().await?;
        let Some(venue) = load_venue(&client, venue_id).await? else {
            return Ok(None);
        };
        load_seat_layout(&client, &venue).await.map(Some)
    }

    /// Publishes the whole catalog once, for a database whose changes
    /// were written before the catalog had an event outbox: a
    /// `VenueCreated` per venue, a `PerformerCreated` per performer, an
    /// `EventCreated` per event, then its `EventPublished` or
    /// `EventCancelled`. Does nothing once the outbox has any event (it
    /// checks under the outbox's append lock, so replicas starting
    /// together publish it once). Answers the number of events written.
    pub async fn publish_existing_catalog(&self) -> Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        self.outbox
            .lock(&tx)
            .await
            .context("locking the outbox for the backfill")?;
        let published: bool = tx
            .query_one("SELECT EXISTS (SELECT 1 FROM catalog.event_outbox)", &[])
            .await?
            .get(0);
        if published {
            return Ok(0);
        }
        let mut events = Vec::new();
        // Written before the outbox, so before any review.
        let unrated = RatingSummary::default();
        for row in tx
            .query("SELECT id FROM catalog.venues ORDER BY created_at, id", &[])
            .await?
        {
            let venue = load_venue(&tx, row.get(0))
                .await?
                .context("venue vanished inside its transaction")?;
            let layout = load_seat_layout(&tx, &venue).await?;
            events.push(venue_created(&venue, &layout));
        }
        for row in tx
            .query(
                "SELECT id, name, description, genre, created_at FROM catalog.performers ORDER BY created_at, id",
                &[],
            )
            .await?
        {
            events.push(performer_created(&performer_from_row(&row)?));
        }
        for row in tx
            .query("SELECT id FROM catalog.events ORDER BY created_at, id", &[])
            .await?
        {
            let event = load_event(&tx, row.get(0))
                .await?
                .context("event vanished inside its transaction")?;
            events.push(event_changed(&event, EventChange::Created, &unrated));
            match event.status {
                EventStatus::Draft => {}
                EventStatus::Published => {
                    events.push(event_changed(&event, EventChange::Published, &unrated))
                }
                EventStatus::Cancelled => {
                    events.push(event_changed(&event, EventChange::Cancelled, &unrated))
                }
            }
        }
        let count = events.len();
        for chunk in events.chunks(500) {
            self.outbox
                .append(&tx, chunk.to_vec())
                .await
                .context("publishing the existing catalog")?;
        }
        tx.commit().await?;
        Ok(count)
    }

    // -------------------------------------------------------- performers

    pub async fn create_performer(&self, performer: &NewPerformer) -> Result<Performer> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                "INSERT INTO catalog.performers (id, name, description, genre) VALUES ($1, $2, $3, $4)
                 RETURNING id, name, description, genre, created_at",
                &[&Uuid::now_v7(), &performer.name, &performer.description, &performer.genre],
            )
            .await?;
        let created = performer_from_row(&row)?;
        publish(&self.outbox, &tx, performer_created(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get_performer(&self, id: Uuid) -> Result<Option<Performer>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, name, description, genre, created_at FROM catalog.performers WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(performer_from_row).transpose()?)
    }

    // ------------------------------------------------------------ events

    pub async fn create_event(&self, event: &NewEvent) -> Result<Event> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // FOR SHARE: the venue cannot vanish under the new event.
        let venue = tx
            .query_opt(
                "SELECT id FROM catalog.venues WHERE id = $1 FOR SHARE",
                &[&event.venue_id],
            )
            .await?;
        if venue.is_none() {
            return Err(CatalogError::NotFound {
                what: "venue",
                id: event.venue_id.to_string(),
            });
        }
        check_performers_exist(&tx, &event.performer_ids).await?;
        check_tier_sections(&tx, event.venue_id, &event.price_tiers).await?;
        let event_id = Uuid::now_v7();
        tx.execute(
            "INSERT INTO catalog.events (id, title, description, category, status, venue_id, start_time, end_time, on_sale_time)
             VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8)",
            &[
                &event_id,
                &event.title,
                &event.description,
                &event.category.as_str(),
                &event.venue_id,
                &event.schedule.start_time,
                &event.schedule.end_time,
                &event.schedule.on_sale_time,
            ],
        )
        .await?;
        write_performers(&tx, event_id, &event.performer_ids).await?;
        write_price_tiers(&tx, event_id, &event.price_tiers).await?;
        let created = load_event(&tx, event_id)
            .await?
            .context("event vanished inside its transaction")?;
        let rating = performers_rating(&tx, event_id).await?;
        publish(
            &self.outbox,
            &tx,
            event_changed(&created, EventChange::Created, &rating),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get_event(&self, id: Uuid) -> Result<Option<Event>> {
        let client = self.pool.get().await?;
        load_event(&client, id).await
    }

    pub async fn update_event(&self, id: Uuid, patch: &EventPatch) -> Result<Event> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The new performers before the event: a review's transaction locks
        // performers, then their events (see `rerate_events_of`).
        if let Some(performer_ids) = &patch.performer_ids {
            check_performers_exist(&tx, performer_ids).await?;
        }
        let current = lock_event(&tx, id).await?;
        check_patch(&current, patch)?;
        let schedule = patch.schedule_over(&current);
        schedule.validate()?;
        if let Some(performer_ids) = &patch.performer_ids {
            tx.execute(
                "DELETE FROM catalog.event_performers WHERE event_id = $1",
                &[&id],
            )
            .await?;
            write_performers(&tx, id, performer_ids).await?;
        }
        if let Some(tiers) = &patch.price_tiers {
            check_tier_sections(&tx, current.venue.id, tiers).await?;
            tx.execute(
                "DELETE FROM catalog.price_tiers WHERE event_id = $1",
                &[&id],
            )
            .await?;
            write_price_tiers(&tx, id, tiers).await?;
        }
        tx.execute(
            "UPDATE catalog.events
             SET title = $2, description = $3, category = $4, start_time = $5, end_time = $6, on_sale_time = $7,
                 version = version + 1, updated_at = now()
             WHERE id = $1",
            &[
                &id,
                patch.title.as_ref().unwrap_or(&current.title),
                patch.description.as_ref().unwrap_or(&current.description),
                &patch.category.unwrap_or(current.category).as_str(),
                &schedule.start_time,
                &schedule.end_time,
                &schedule.on_sale_time,
            ],
        )
        .await?;
        let updated = load_event(&tx, id)
            .await?
            .context("event vanished inside its transaction")?;
        let rating = performers_rating(&tx, id).await?;
        publish(
            &self.outbox,
            &tx,
            event_changed(&updated, EventChange::Changed, &rating),
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn publish_event(&self, id: Uuid) -> Result<Event> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = lock_event(&tx, id).await?;
        if !check_publish(&current)? {
            return Ok(current);
        }
        tx.execute(
            "UPDATE catalog.events SET status = 'published', version = version + 1, updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
        let published = load_event(&tx, id)
            .await?
            .context("event vanished inside its transaction")?;
        let rating = performers_rating(&tx, id).await?;
        publish(
            &self.outbox,
            &tx,
            event_changed(&published, EventChange::Published, &rating),
        )
        .await?;
        tx.commit().await?;
        Ok(published)
    }

    pub async fn cancel_event(&self, id: Uuid, reason: &str) -> Result<Event> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let current = lock_event(&tx, id).await?;
        if !check_cancel(&current) {
            return Ok(current);
        }
        tx.execute(
            "UPDATE catalog.events
             SET status = 'cancelled', cancel_reason = $2, version = version + 1, updated_at = now()
             WHERE id = $1",
            &[&id, &reason],
        )
        .await?;
        let cancelled = load_event(&tx, id)
            .await?
            .context("event vanished inside its transaction")?;
        let rating = performers_rating(&tx, id).await?;
        publish(
            &self.outbox,
            &tx,
            event_changed(&cancelled, EventChange::Cancelled, &rating),
        )
        .await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// One page of events in (start time, id) order, plus the cursor of the
    /// next page when there is one.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<PageCursor>,
        page_size: usize,
    ) -> Result<(Vec<Event>, Option<PageCursor>)> {
        let client = self.pool.get().await?;
        let limit = i64::try_from(page_size + 1).context("page size")?;
        let sql = format!(
            "{EVENT_SELECT}
             WHERE e.status = $1 AND e.start_time >= $2
               AND ($3::timestamptz IS NULL OR e.start_time < $3)
               AND ($4::uuid IS NULL OR e.venue_id = $4)
               AND ($5::uuid IS NULL OR EXISTS (
                     SELECT 1 FROM catalog.event_performers ep WHERE ep.event_id = e.id AND ep.performer_id = $5))
               AND ($6::timestamptz IS NULL OR (e.start_time, e.id) > ($6, $7::uuid))
             ORDER BY e.start_time, e.id
             LIMIT $8"
        );
        let rows = client
            .query(
                &sql,
                &[
                    &filter.status.as_str(),
                    &filter.start_after,
                    &filter.start_before,
                    &filter.venue_id,
                    &filter.performer_id,
                    &after.map(|c| c.start_time),
                    &after.map(|c| c.id),
                    &limit,
                ],
            )
            .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next = if events.len() > page_size {
            events.truncate(page_size);
            events.last().map(|event| PageCursor {
                start_time: event.start_time,
                id: event.id,
            })
        } else {
            None
        };
        Ok((events, next))
    }
}

async fn load_event(client: &impl GenericClient, id: Uuid) -> Result<Option<Event>> {
    // Prepared once per connection: it runs for every event snapshot
    // published (each price change of a selling event among them).
    let statement = client
        .prepare_cached(&format!("{EVENT_SELECT} WHERE e.id = $1"))
        .await?;
    let row = client.query_opt(&statement, &[&id]).await?;
    Ok(row.as_ref().map(event_from_row).transpose()?)
}

/// Locks the event row for the rest of the transaction and loads it.
async fn lock_event(client: &impl GenericClient, id: Uuid) -> Result<Event> {
    let locked = client
        .query_opt(
            "SELECT 1 FROM catalog.events WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    if locked.is_none() {
        return Err(CatalogError::NotFound {
            what: "event",
            id: id.to_string(),
        });
    }
    load_event(client, id)
        .await?
        .ok_or_else(|| CatalogError::NotFound {
            what: "event",
            id: id.to_string(),
        })
}

/// A venue's seats, section by section and row by row.
async fn load_seat_layout(client: &impl GenericClient, venue: &Venue) -> Result<SeatLayout> {
    let venue_id = venue.id;
    let rows = client
        .query(
            "SELECT seat_index, section_id, row_label, row_position, number, x, y
             FROM catalog.seats WHERE venue_id = $1 ORDER BY seat_index",
            &[&venue_id],
        )
        .await?;
    let mut sections: Vec<SectionLayout> = venue
        .sections
        .iter()
        .map(|section| SectionLayout {
            section: section.clone(),
            rows: Vec::new(),
        })
        .collect();
    let mut current: Option<(Uuid, i32)> = None;
    for row in &rows {
        let section_id: Uuid = row.get("section_id");
        let row_position: i32 = row.get("row_position");
        let Some(section) = sections.iter_mut().find(|s| s.section.id == section_id) else {
            continue;
        };
        if current != Some((section_id, row_position)) {
            section.rows.push(RowLayout {
                label: row.get("row_label"),
                seats: Vec::new(),
            });
            current = Some((section_id, row_position));
        }
        if let Some(last_row) = section.rows.last_mut() {
            last_row.seats.push(SeatPosition {
                seat_index: u32::try_from(row.get::<_, i32>("seat_index")).context("seat index")?,
                number: row.get("number"),
                x: row.get("x"),
                y: row.get("y"),
            });
        }
    }
    Ok(SeatLayout {
        venue_id,
        seat_count: venue.capacity,
        sections,
    })
}

async fn load_venue(client: &impl GenericClient, id: Uuid) -> Result<Option<Venue>> {
    let Some(row) = client
        .query_opt(
            "SELECT id, name, street, city, region, postal_code, country_code, latitude, longitude,
                    time_zone, capacity, created_at
             FROM catalog.venues WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let sections = client
        .query(
            "SELECT id, name, kind, capacity, first_seat_index FROM catalog.sections
             WHERE venue_id = $1 ORDER BY position",
            &[&id],
        )
        .await?
        .iter()
        .map(section_from_row)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(Venue {
        id: row.get("id"),
        name: row.get("name"),
        address: Address {
            street: row.get("street"),
            city: row.get("city"),
            region: row.get("region"),
            postal_code: row.get("postal_code"),
            country_code: row.get("country_code"),
        },
        location: location(row.get("latitude"), row.get("longitude")),
        time_zone: row.get("time_zone"),
        capacity: u32::try_from(row.get::<_, i32>("capacity")).context("venue capacity")?,
        sections,
        created_at: row.get("created_at"),
    }))
}

/// Checks that the performers exist and locks them (`FOR SHARE`, in id
/// order) until commit: a review of one of their events waits for this
/// event write, or this write waits for the review, so the rating this
/// transaction publishes is never older than a review committed before it.
async fn check_performers_exist(client: &impl GenericClient, performer_ids: &[Uuid]) -> Result<()> {
    if performer_ids.is_empty() {
        return Ok(());
    }
    let found: HashSet<Uuid> = client
        .query(
            "SELECT id FROM catalog.performers WHERE id = ANY($1) ORDER BY id FOR SHARE",
            &[&performer_ids],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(missing) = performer_ids.iter().find(|id| !found.contains(id)) {
        return Err(CatalogError::NotFound {
            what: "performer",
            id: missing.to_string(),
        });
    }
    Ok(())
}

/// Every section a tier names must belong to the event's venue.
async fn check_tier_sections(
    client: &impl GenericClient,
    venue_id: Uuid,
    tiers: &[NewPriceTier],
) -> Result<()> {
    let sections: HashSet<Uuid> = client
        .query(
            "SELECT id FROM catalog.sections WHERE venue_id = $1",
            &[&venue_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (index, tier) in tiers.iter().enumerate() {
        if let Some(foreign) = tier.section_ids.iter().find(|id| !sections.contains(id)) {
            return Err(FieldError::new(
                format!("event.price_tiers[{index}].section_ids"),
                format!("section {foreign} is not part of the event's venue"),
            )
            .into());
        }
    }
    Ok(())
}

async fn write_performers(
    client: &impl GenericClient,
    event_id: Uuid,
    performer_ids: &[Uuid],
) -> Result<()> {
    if performer_ids.is_empty() {
        return Ok(());
    }
    let positions: Vec<i32> = (0..performer_ids.len() as i32).collect();
    client
        .execute(
            "INSERT INTO catalog.event_performers (event_id, performer_id, position)
             SELECT $1, * FROM unnest($2::uuid[], $3::int4[])",
            &[&event_id, &performer_ids, &positions],
        )
        .await?;
    Ok(())
}

async fn write_price_tiers(
    client: &impl GenericClient,
    event_id: Uuid,
    tiers: &[NewPriceTier],
) -> Result<()> {
    for (position, tier) in tiers.iter().enumerate() {
        client
            .execute(
                "INSERT INTO catalog.price_tiers (id, event_id, position, name, currency_code, amount_minor, section_ids)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &Uuid::now_v7(),
                    &event_id,
                    &(position as i32),
                    &tier.name,
                    &tier.price.currency_code,
                    &tier.price.amount_minor,
                    &tier.section_ids,
                ],
            )
            .await?;
    }
    Ok(())
}

/// How the performers of `event_id` are rated: the visible reviews of every
/// event one of them played, each review counted once.
pub(crate) async fn performers_rating(
    client: &impl GenericClient,
    event_id: Uuid,
) -> Result<RatingSummary> {
    let statement = client
        .prepare_cached(
            "SELECT r.rating, count(*) FROM catalog.reviews r
              WHERE NOT r.hidden AND r.event_id IN (
                    SELECT played.event_id FROM catalog.event_performers this
                      JOIN catalog.event_performers played ON played.performer_id = this.performer_id
                     WHERE this.event_id = $1)
              GROUP BY r.rating",
        )
        .await?;
    let rows = client.query(&statement, &[&event_id]).await?;
    Ok(RatingSummary::from_counts(
        rows.iter().map(|row| (row.get(0), row.get(1))),
    ))
}

/// Locks the performers of `event_id` (`FOR NO KEY UPDATE`, in id order)
/// until commit, for a transaction that changes their rating, and returns
/// them. Event writes lock the performers they publish a rating of
/// `FOR SHARE` (see [`check_performers_exist`]), so the two wait for each
/// other instead of each publishing a rating without the other's change.
pub(crate) async fn lock_performers_of(
    client: &impl GenericClient,
    event_id: Uuid,
) -> Result<Vec<Uuid>> {
    Ok(client
        .query(
            "SELECT id FROM catalog.performers
              WHERE id IN (SELECT performer_id FROM catalog.event_performers WHERE event_id = $1)
              ORDER BY id FOR NO KEY UPDATE",
            &[&event_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// After a review of one of `performers`' events was written, edited or
/// hidden, inside that transaction (which holds them locked, see
/// [`lock_performers_of`]): every event of theirs still to come and not
/// cancelled gets a new version carrying its performers' new rating,
/// published as `EventRated`. Each event row is locked in id order, so an
/// event write in progress finishes first and is then published again with
/// the rating. Returns how many events were re-rated.
pub(crate) async fn rerate_events_of(
    outbox: &boxoffice_events::Outbox,
    transaction: &deadpool_postgres::Transaction<'_>,
    performers: &[Uuid],
) -> Result<usize> {
    if performers.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = transaction
        .query(
            "SELECT DISTINCT p.event_id FROM catalog.event_performers p
               JOIN catalog.events e ON e.id = p.event_id
              WHERE p.performer_id = ANY($1) AND e.end_time > now() AND e.status <> 'cancelled'
              ORDER BY 1",
            &[&performers],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut rated = Vec::with_capacity(ids.len());
    for id in ids {
        let bumped = transaction
            .execute(
                "UPDATE catalog.events SET version = version + 1
                  WHERE id = $1 AND status <> 'cancelled'",
                &[&id],
            )
            .await?;
        if bumped == 0 {
            continue;
        }
        let event = load_event(transaction, id)
            .await?
            .context("event vanished inside its transaction")?;
        let rating = performers_rating(transaction, id).await?;
        rated.push(event_changed(&event, EventChange::Rated, &rating));
    }
    let count = rated.len();
    if count > 0 {
        outbox
            .append(transaction, rated)
            .await
            .context("publishing re-rated events")?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_cursor_round_trips_and_rejects_garbage() {
        let cursor = PageCursor {
            start_time: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(PageCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(PageCursor::decode("not a token"), None);
        assert_eq!(PageCursor::decode(""), None);
    }
}
