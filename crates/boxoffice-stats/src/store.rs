//! The statistics in PostgreSQL (schema `stats`): what the consumer keeps,
//! and the reads that turn it into figures. Seats are binned into sections
//! here, from the venue's section ranges, so the figures never depend on
//! the order in which a venue, its event and their sales arrived.

use std::collections::HashMap;

use boxoffice_runtime::postgres::{DbContext as _, DbResult, Migration};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use tokio_postgres::Row;
use uuid::Uuid;

pub(crate) const SCHEMA: &str = "stats";

/// The stats schema's migrations, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "stats",
    sql: include_str!("migrations/0001_stats.sql"),
}];

/// Creates or upgrades the statistics schema (idempotent; concurrent starters
/// wait for each other): `boxoffice migrate` runs it with every other
/// service's, and the component runs it before it starts.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    boxoffice_runtime::postgres::migrate(pool, SCHEMA, MIGRATIONS).await
}

/// A venue section: seats `first .. first + capacity`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Section {
    pub id: String,
    pub name: String,
    pub first: u32,
    pub capacity: u32,
}

impl Section {
    pub fn contains(&self, seat: u32) -> bool {
        seat >= self.first && seat - self.first < self.capacity
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Tier {
    pub id: String,
    pub name: String,
    pub currency: String,
    pub price: i64,
    pub sections: Vec<String>,
}

/// Money of one currency, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Takings {
    pub currency: String,
    pub gross: i64,
    pub fees: i64,
    pub refunds: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hour {
    pub hour: DateTime<Utc>,
    pub tickets: i64,
    pub gross: i64,
}

/// Everything kept about one event.
#[derive(Clone, Debug)]
pub struct EventFigures {
    pub event_id: Uuid,
    pub title: String,
    pub start_time: Option<DateTime<Utc>>,
    pub status: String,
    pub updated_at: DateTime<Utc>,
    pub sections: Vec<Section>,
    pub tiers: Vec<Tier>,
    /// Seat indexes sold now.
    pub sold: Vec<u32>,
    pub takings: Takings,
    pub bookings_confirmed: i64,
    pub bookings_cancelled: i64,
    pub hours: Vec<Hour>,
}

/// One event of a date range.
#[derive(Clone, Debug)]
pub struct EventSummary {
    pub event_id: Uuid,
    pub title: String,
    pub start_time: DateTime<Utc>,
    pub status: String,
    pub capacity: i64,
    pub sold: i64,
    pub takings: Takings,
}

/// Over a whole date range.
#[derive(Clone, Debug, Default)]
pub struct RangeTotals {
    pub capacity: i64,
    pub sold: i64,
    /// One per currency, by currency code.
    pub takings: Vec<Takings>,
}

#[derive(Clone)]
pub struct StatsStore {
    pool: Pool,
}

fn json<T: for<'de> Deserialize<'de>>(row: &Row, column: &str) -> DbResult<T> {
    let value: serde_json::Value = row.try_get(column)?;
    serde_json::from_value(value).map_err(|error| {
        boxoffice_runtime::postgres::DbError::Internal(
            anyhow::Error::new(error).context("reading stored statistics"),
        )
    })
}

fn takings(row: &Row) -> DbResult<Takings> {
    Ok(Takings {
        currency: row.try_get("currency")?,
        gross: row.try_get("gross")?,
        fees: row.try_get("fees")?,
        refunds: row.try_get("refunds")?,
    })
}

/// The money columns of a `stats.bookings b` aggregate, for [`takings`].
const TAKINGS: &str = "coalesce(min(b.currency_code), '') AS currency,
    coalesce(sum(b.gross_minor), 0)::int8 AS gross, coalesce(sum(b.fees_minor), 0)::int8 AS fees,
    coalesce(sum(b.refunded_minor), 0)::int8 AS refunds";

impl StatsStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> DbResult<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .db_context("getting a database connection")
    }

    /// The event's figures; `None` when no event with this id was seen.
    pub async fn event(&self, event_id: Uuid) -> DbResult<Option<EventFigures>> {
        let client = self.client().await?;
        let Some(event) = client
            .query_opt(
                "SELECT e.title, e.start_time, e.status, e.updated_at, e.tiers,
                        coalesce(v.sections, '[]'::jsonb) AS sections,
                        ARRAY(SELECT s.seat_index FROM stats.sold_seats s WHERE s.event_id = e.event_id) AS sold
                 FROM stats.events e LEFT JOIN stats.venues v ON v.venue_id = e.venue_id
                 WHERE e.event_id = $1",
                &[&event_id],
            )
            .await
            .db_context("reading an event's statistics")?
        else {
            return Ok(None);
        };
        let money = client
            .query_one(
                &format!(
                    "SELECT {TAKINGS}, count(*) AS confirmed, count(b.cancelled_at) AS cancelled
                     FROM stats.bookings b WHERE b.event_id = $1"
                ),
                &[&event_id],
            )
            .await
            .db_context("reading an event's takings")?;
        let hours = client
            .query(
                "SELECT date_trunc('hour', b.confirmed_at) AS hour, sum(b.tickets)::int8 AS tickets,
                        sum(b.gross_minor)::int8 AS gross
                 FROM stats.bookings b WHERE b.event_id = $1 GROUP BY 1 ORDER BY 1",
                &[&event_id],
            )
            .await
            .db_context("reading an event's sales per hour")?
            .iter()
            .map(|row| {
                Ok(Hour {
                    hour: row.try_get("hour")?,
                    tickets: row.try_get("tickets")?,
                    gross: row.try_get("gross")?,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        let tiers: Vec<Tier> = json(&event, "tiers")?;
        let mut takings = takings(&money)?;
        if takings.currency.is_empty() {
            // No bookings yet: the money is nothing, in the event's currency.
            takings.currency = tiers
                .first()
                .map(|t| t.currency.clone())
                .unwrap_or_default();
        }
        Ok(Some(EventFigures {
            event_id,
            title: event.try_get("title")?,
            start_time: event.try_get("start_time")?,
            status: event.try_get("status")?,
            updated_at: event.try_get("updated_at")?,
            sections: json(&event, "sections")?,
            tiers,
            sold: event
                .try_get::<_, Vec<i32>>("sold")?
                .into_iter()
                .map(|seat| seat.max(0) as u32)
                .collect(),
            takings,
            bookings_confirmed: money.try_get("confirmed")?,
            bookings_cancelled: money.try_get("cancelled")?,
            hours,
        }))
    }

    /// Events starting in `[from, to)` after `after` (a page's last
    /// event), earliest first, at most `limit`; and the totals over the
    /// whole range.
    pub async fn range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> DbResult<(Vec<EventSummary>, RangeTotals)> {
        let client = self.client().await?;
        let (after_time, after_id) = after.unzip();
        let per_event = "capacity AS (
                 SELECT e.event_id, coalesce((SELECT sum((s->>'capacity')::int8)
                     FROM stats.venues v, jsonb_array_elements(v.sections) s WHERE v.venue_id = e.venue_id), 0)::int8
                     AS capacity,
                     (SELECT count(*) FROM stats.sold_seats s WHERE s.event_id = e.event_id) AS sold
                 FROM stats.events e WHERE e.start_time >= $1 AND e.start_time < $2
             )";
        let rows = client
            .query(
                &format!(
                    "WITH {per_event}
                     SELECT e.event_id, e.title, e.start_time, e.status, c.capacity, c.sold,
                            coalesce(nullif(m.currency, ''), e.tiers->0->>'currency', '') AS currency,
                            m.gross, m.fees, m.refunds
                     FROM stats.events e JOIN capacity c ON c.event_id = e.event_id
                     CROSS JOIN LATERAL (SELECT {TAKINGS} FROM stats.bookings b WHERE b.event_id = e.event_id) m
                     WHERE ($3::timestamptz IS NULL OR (e.start_time, e.event_id) > ($3, $4::uuid))
                     ORDER BY e.start_time, e.event_id LIMIT $5"
                ),
                &[&from, &to, &after_time, &after_id, &limit],
            )
            .await
            .db_context("reading a date range's statistics")?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(EventSummary {
                    event_id: row.try_get("event_id")?,
                    title: row.try_get("title")?,
                    start_time: row.try_get("start_time")?,
                    status: row.try_get("status")?,
                    capacity: row.try_get("capacity")?,
                    sold: row.try_get("sold")?,
                    takings: takings(row)?,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        let seats = client
            .query_one(
                &format!(
                    "WITH {per_event}
                     SELECT coalesce(sum(capacity), 0)::int8 AS capacity, coalesce(sum(sold), 0)::int8 AS sold
                     FROM capacity"
                ),
                &[&from, &to],
            )
            .await
            .db_context("reading a date range's seats")?;
        let money = client
            .query(
                &format!(
                    "WITH {per_event}
                     SELECT {TAKINGS} FROM stats.bookings b JOIN capacity c ON c.event_id = b.event_id
                     GROUP BY b.currency_code ORDER BY b.currency_code"
                ),
                &[&from, &to],
            )
            .await
            .db_context("reading a date range's takings")?;
        Ok((
            events,
            RangeTotals {
                capacity: seats.try_get("capacity")?,
                sold: seats.try_get("sold")?,
                takings: money.iter().map(takings).collect::<DbResult<_>>()?,
            },
        ))
    }

    /// Per booking id, what the statistics hold (tests compare it with
    /// checkout's tables): (event, tickets, gross, refunded, cancelled).
    pub async fn bookings(&self) -> DbResult<HashMap<Uuid, (Uuid, i32, i64, i64, bool)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT booking_id, event_id, tickets, gross_minor, refunded_minor, cancelled_at IS NOT NULL
                 FROM stats.bookings",
                &[],
            )
            .await
            .db_context("reading booking statistics")?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    (
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                        row.try_get(4)?,
                        row.try_get(5)?,
                    ),
                ))
            })
            .collect()
    }
}
