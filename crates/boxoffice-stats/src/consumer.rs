//! The `stats` consumer group: applies catalog, inventory and checkout
//! events to the `stats` schema, each once (recorded by event id in the
//! same transaction), a batch per transaction. Every change is also
//! idempotent by itself (upserts, deletes, `coalesce`), so even a replay
//! past the record would change nothing.

use boxoffice_contracts::events::v1 as pb;
use boxoffice_events::{HandleError, Handler, Payload, Received};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::json;
use uuid::Uuid;

use crate::store::SCHEMA;

/// The consumer group's name.
pub(crate) const GROUP: &str = "stats";

/// The producers whose events the statistics are made of.
pub(crate) const STREAMS: &[&str] = &["catalog", "inventory", "checkout"];

/// One event, read into what it changes here.
#[derive(Debug)]
enum Change {
    Venue {
        id: Uuid,
        sections: serde_json::Value,
    },
    Event {
        id: Uuid,
        title: String,
        venue_id: Option<Uuid>,
        start_time: Option<DateTime<Utc>>,
        status: &'static str,
        tiers: serde_json::Value,
        version: i64,
    },
    Sold {
        event_id: Uuid,
        booking_id: Uuid,
        seats: Vec<i32>,
    },
    Released {
        event_id: Uuid,
        booking_id: Uuid,
        seats: Vec<i32>,
    },
    Confirmed {
        booking_id: Uuid,
        event_id: Uuid,
        tickets: i32,
        currency: String,
        gross: i64,
        fees: i64,
        at: DateTime<Utc>,
    },
    Cancelled {
        booking_id: Uuid,
        at: DateTime<Utc>,
    },
    Refunded {
        booking_id: Uuid,
        amount: i64,
    },
    /// An event the statistics do not use.
    Nothing,
}

fn uuid(field: &str, text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|_| format!("{field} {text:?} is not a UUID"))
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

fn seats(indexes: &[u32]) -> Result<Vec<i32>, String> {
    indexes
        .iter()
        .map(|seat| i32::try_from(*seat).map_err(|_| format!("seat index {seat} out of range")))
        .collect()
}

fn venue(layout: Option<&pb::VenueLayout>) -> Result<Change, String> {
    let layout = layout.ok_or("a venue event without its venue")?;
    let sections: Vec<serde_json::Value> = layout
        .sections
        .iter()
        .map(|section| {
            json!({
                "id": section.id,
                "name": section.name,
                "first": section.first_seat_index,
                "capacity": section.capacity,
            })
        })
        .collect();
    Ok(Change::Venue {
        id: uuid("venue id", &layout.id)?,
        sections: serde_json::Value::Array(sections),
    })
}

fn event(snapshot: Option<&pb::EventSnapshot>) -> Result<Change, String> {
    let snapshot = snapshot.ok_or("an event event without its snapshot")?;
    let status = match pb::EventStatus::try_from(snapshot.status) {
        Ok(pb::EventStatus::Published) => "published",
        Ok(pb::EventStatus::Cancelled) => "cancelled",
        _ => "draft",
    };
    let tiers: Vec<serde_json::Value> = snapshot
        .price_tiers
        .iter()
        .map(|tier| {
            let price = tier.price.clone().unwrap_or_default();
            json!({
                "id": tier.id,
                "name": tier.name,
                "currency": price.currency_code,
                "price": price.amount_minor,
                "sections": tier.section_ids,
            })
        })
        .collect();
    Ok(Change::Event {
        id: uuid("event id", &snapshot.id)?,
        title: snapshot.title.clone(),
        venue_id: snapshot
            .venue
            .as_ref()
            .map(|venue| uuid("venue id", &venue.id))
            .transpose()?,
        start_time: time(snapshot.start_time.as_ref()),
        status,
        tiers: serde_json::Value::Array(tiers),
        version: snapshot.version,
    })
}

/// What `received` changes here; `Err` is a reason to dead-letter it.
fn change_of(received: &Received) -> Result<Change, String> {
    let occurred = time(received.envelope.occurred_at.as_ref()).unwrap_or_else(Utc::now);
    Ok(match received.payload() {
        Some(Payload::VenueCreated(e)) => venue(e.venue.as_ref())?,
        Some(Payload::VenueChanged(e)) => venue(e.venue.as_ref())?,
        Some(Payload::EventCreated(e)) => event(e.event.as_ref())?,
        Some(Payload::EventChanged(e)) => event(e.event.as_ref())?,
        Some(Payload::EventPublished(e)) => event(e.event.as_ref())?,
        Some(Payload::EventCancelled(e)) => event(e.event.as_ref())?,
        Some(Payload::EventRated(e)) => event(e.event.as_ref())?,
        Some(Payload::SeatsSold(e)) => Change::Sold {
            event_id: uuid("event id", &e.event_id)?,
            booking_id: uuid("booking id", &e.booking_id)?,
            seats: seats(&e.seat_indexes)?,
        },
        Some(Payload::SeatsReleased(e)) => Change::Released {
            event_id: uuid("event id", &e.event_id)?,
            booking_id: uuid("booking id", &e.booking_id)?,
            seats: seats(&e.seat_indexes)?,
        },
        Some(Payload::BookingConfirmed(e)) => {
            let total = e.total.clone().unwrap_or_default();
            Change::Confirmed {
                booking_id: uuid("booking id", &e.booking_id)?,
                event_id: uuid("event id", &e.event_id)?,
                tickets: i32::try_from(e.seat_indexes.len()).map_err(|_| "too many seats")?,
                currency: total.currency_code,
                gross: total.amount_minor,
                fees: e.fees.as_ref().map_or(0, |fees| fees.amount_minor),
                at: occurred,
            }
        }
        Some(Payload::BookingCancelled(e)) => Change::Cancelled {
            booking_id: uuid("booking id", &e.booking_id)?,
            at: occurred,
        },
        Some(Payload::RefundIssued(e)) => Change::Refunded {
            booking_id: uuid("booking id", &e.booking_id)?,
            amount: e.amount.as_ref().map_or(0, |money| money.amount_minor),
        },
        _ => Change::Nothing,
    })
}

/// The event a change is about (for `updated_at`).
fn touched(change: &Change) -> Option<Uuid> {
    match change {
        Change::Event { id, .. } => Some(*id),
        Change::Sold { event_id, .. }
        | Change::Released { event_id, .. }
        | Change::Confirmed { event_id, .. } => Some(*event_id),
        _ => None,
    }
}

async fn apply(
    transaction: &deadpool_postgres::Transaction<'_>,
    change: &Change,
) -> anyhow::Result<()> {
    match change {
        Change::Venue { id, sections } => {
            execute(
                transaction,
                    "INSERT INTO stats.venues (venue_id, sections) VALUES ($1, $2)
                     ON CONFLICT (venue_id) DO UPDATE SET sections = EXCLUDED.sections, updated_at = now()",
                    &[id, &tokio_postgres::types::Json(sections)],
                )
                .await?;
        }
        Change::Event {
            id,
            title,
            venue_id,
            start_time,
            status,
            tiers,
            version,
        } => {
            execute(
                transaction,
                    "INSERT INTO stats.events (event_id, title, venue_id, start_time, status, tiers, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (event_id) DO UPDATE SET title = EXCLUDED.title, venue_id = EXCLUDED.venue_id,
                         start_time = EXCLUDED.start_time, status = EXCLUDED.status, tiers = EXCLUDED.tiers,
                         version = EXCLUDED.version
                     WHERE stats.events.version <= EXCLUDED.version",
                    &[
                        id,
                        title,
                        venue_id,
                        start_time,
                        status,
                        &tokio_postgres::types::Json(tiers),
                        version,
                    ],
                )
                .await?;
        }
        Change::Sold {
            event_id,
            booking_id,
            seats,
        } => {
            execute(
                transaction,
                    "INSERT INTO stats.sold_seats (event_id, seat_index, booking_id)
                     SELECT $1, s, $2 FROM unnest($3::int4[]) AS s
                     ON CONFLICT (event_id, seat_index) DO UPDATE SET booking_id = EXCLUDED.booking_id",
                    &[event_id, booking_id, seats],
                )
                .await?;
        }
        Change::Released {
            event_id,
            booking_id,
            seats,
        } => {
            execute(
                transaction,
                "DELETE FROM stats.sold_seats
                     WHERE event_id = $1 AND booking_id = $2 AND seat_index = ANY($3::int4[])",
                &[event_id, booking_id, seats],
            )
            .await?;
        }
        Change::Confirmed {
            booking_id,
            event_id,
            tickets,
            currency,
            gross,
            fees,
            at,
        } => {
            execute(
                transaction,
                    "INSERT INTO stats.bookings (booking_id, event_id, tickets, currency_code, gross_minor, fees_minor,
                         confirmed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (booking_id) DO NOTHING",
                    &[booking_id, event_id, tickets, currency, gross, fees, at],
                )
                .await?;
        }
        Change::Cancelled { booking_id, at } => {
            execute(
                transaction,
                    "UPDATE stats.bookings SET cancelled_at = coalesce(cancelled_at, $2) WHERE booking_id = $1",
                    &[booking_id, at],
                )
                .await?;
        }
        Change::Refunded { booking_id, amount } => {
            execute(
                transaction,
                "UPDATE stats.bookings SET refunded_minor = $2 WHERE booking_id = $1",
                &[booking_id, amount],
            )
            .await?;
        }
        Change::Nothing => {}
    }
    Ok(())
}

/// Runs `sql` as a statement prepared once per connection (a batch sends a
/// few of the same statements again and again).
async fn execute(
    transaction: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = transaction.prepare_cached(sql).await?;
    transaction.execute(&statement, params).await
}

/// Consecutive changes of one kind that one statement applies together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Sold,
    Released,
    Confirmed,
    Cancelled,
    Refunded,
}

fn run_kind(change: &Change) -> Option<RunKind> {
    Some(match change {
        Change::Sold { .. } => RunKind::Sold,
        Change::Released { .. } => RunKind::Released,
        Change::Confirmed { .. } => RunKind::Confirmed,
        Change::Cancelled { .. } => RunKind::Cancelled,
        Change::Refunded { .. } => RunKind::Refunded,
        _ => return None,
    })
}

/// Applies a run of same-kind changes with one statement, with the effect
/// of applying them one after the other (a later sale of a seat wins, the
/// first cancellation time stays, the last refund total wins).
async fn apply_run(
    transaction: &deadpool_postgres::Transaction<'_>,
    kind: RunKind,
    run: &[&Change],
) -> anyhow::Result<()> {
    match kind {
        RunKind::Sold | RunKind::Released => {
            let (mut events, mut seat_indexes, mut bookings) = (Vec::new(), Vec::new(), Vec::new());
            // A seat sold twice in one run: the later sale is the one kept
            // (one statement may not change a row twice).
            let mut at: std::collections::HashMap<(Uuid, i32), usize> = Default::default();
            for change in run {
                let (Change::Sold {
                    event_id,
                    booking_id,
                    seats,
                }
                | Change::Released {
                    event_id,
                    booking_id,
                    seats,
                }) = change
                else {
                    continue;
                };
                for seat in seats {
                    match at.get(&(*event_id, *seat)) {
                        Some(&index) if kind == RunKind::Sold => bookings[index] = *booking_id,
                        _ => {
                            at.insert((*event_id, *seat), events.len());
                            events.push(*event_id);
                            seat_indexes.push(*seat);
                            bookings.push(*booking_id);
                        }
                    }
                }
            }
            let sql = if kind == RunKind::Sold {
                "INSERT INTO stats.sold_seats (event_id, seat_index, booking_id)
                 SELECT * FROM unnest($1::uuid[], $2::int4[], $3::uuid[])
                 ON CONFLICT (event_id, seat_index) DO UPDATE SET booking_id = EXCLUDED.booking_id"
            } else {
                "DELETE FROM stats.sold_seats s
                 USING unnest($1::uuid[], $2::int4[], $3::uuid[]) AS r(event_id, seat_index, booking_id)
                 WHERE s.event_id = r.event_id AND s.seat_index = r.seat_index AND s.booking_id = r.booking_id"
            };
            execute(transaction, sql, &[&events, &seat_indexes, &bookings]).await?;
        }
        RunKind::Confirmed => {
            let mut columns = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for change in run {
                if let Change::Confirmed {
                    booking_id,
                    event_id,
                    tickets,
                    currency,
                    gross,
                    fees,
                    at,
                } = change
                {
                    columns.0.push(*booking_id);
                    columns.1.push(*event_id);
                    columns.2.push(*tickets);
                    columns.3.push(currency.as_str());
                    columns.4.push(*gross);
                    columns.5.push(*fees);
                    columns.6.push(*at);
                }
            }
            execute(
                transaction,
                    "INSERT INTO stats.bookings (booking_id, event_id, tickets, currency_code, gross_minor, fees_minor,
                         confirmed_at)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::text[], $5::int8[], $6::int8[],
                         $7::timestamptz[])
                     ON CONFLICT (booking_id) DO NOTHING",
                    &[
                        &columns.0, &columns.1, &columns.2, &columns.3, &columns.4, &columns.5,
                        &columns.6,
                    ],
                )
                .await?;
        }
        RunKind::Cancelled => {
            let (mut bookings, mut times) = (Vec::new(), Vec::new());
            for change in run {
                if let Change::Cancelled { booking_id, at } = change {
                    bookings.push(*booking_id);
                    times.push(*at);
                }
            }
            execute(
                transaction,
                    "UPDATE stats.bookings b SET cancelled_at = coalesce(b.cancelled_at, c.at)
                     FROM (SELECT id, min(at) AS at FROM unnest($1::uuid[], $2::timestamptz[]) AS c(id, at)
                           GROUP BY id) c
                     WHERE b.booking_id = c.id",
                    &[&bookings, &times],
                )
                .await?;
        }
        RunKind::Refunded => {
            let mut last: std::collections::HashMap<Uuid, i64> = Default::default();
            for change in run {
                if let Change::Refunded { booking_id, amount } = change {
                    last.insert(*booking_id, *amount);
                }
            }
            let (bookings, amounts): (Vec<Uuid>, Vec<i64>) = last.into_iter().unzip();
            execute(
                transaction,
                    "UPDATE stats.bookings b SET refunded_minor = r.amount
                     FROM unnest($1::uuid[], $2::int8[]) AS r(id, amount) WHERE b.booking_id = r.id",
                    &[&bookings, &amounts],
                )
                .await?;
        }
    }
    Ok(())
}

/// Applies `changes` (with their event ids) in one transaction: the ids
/// recorded in one statement, then the new changes in runs of one kind,
/// one statement a run (`together`), or one statement a change (to find
/// which one fails). On failure answers the index of the change (or the
/// first of the run) that failed.
async fn apply_all(
    pool: &Pool,
    changes: &[(Uuid, Change)],
    together: bool,
) -> Result<(), (usize, anyhow::Error)> {
    let mut client = pool.get().await.map_err(|error| (0, error.into()))?;
    // Statistics are derived from the streams: a crash that loses this
    // commit loses the checkpoint after it too, and the events come again.
    let transaction = boxoffice_events::postgres::projection_transaction(&mut client)
        .await
        .map_err(|error| (0, error))?;
    let ids: Vec<Uuid> = changes.iter().map(|(id, _)| *id).collect();
    let mut fresh = boxoffice_events::postgres::first_times(&transaction, SCHEMA, GROUP, &ids)
        .await
        .map_err(|error| (0, error))?;
    // Each new event once (a batch may carry a duplicate), in order.
    let new: Vec<(usize, &Change)> = changes
        .iter()
        .enumerate()
        .filter(|(_, (id, _))| fresh.remove(id))
        .map(|(index, (_, change))| (index, change))
        .collect();
    let mut events: Vec<Uuid> = new
        .iter()
        .filter_map(|(_, change)| touched(change))
        .collect();
    let mut next = 0;
    while next < new.len() {
        let (index, change) = new[next];
        let kind = run_kind(change).filter(|_| together);
        let end = match kind {
            Some(kind) => {
                next + new[next..]
                    .iter()
                    .take_while(|(_, change)| run_kind(change) == Some(kind))
                    .count()
            }
            None => next + 1,
        };
        let result = match kind {
            Some(kind) => {
                let run: Vec<&Change> = new[next..end].iter().map(|(_, change)| *change).collect();
                apply_run(&transaction, kind, &run).await
            }
            None => apply(&transaction, change).await,
        };
        result.map_err(|error| (index, error))?;
        next = end;
    }
    if !events.is_empty() {
        events.sort_unstable();
        events.dedup();
        execute(
            &transaction,
            "UPDATE stats.events SET updated_at = now() WHERE event_id = ANY($1)",
            &[&events],
        )
        .await
        .map_err(|error| (changes.len().saturating_sub(1), error.into()))?;
    }
    transaction
        .commit()
        .await
        .map_err(|error| (changes.len().saturating_sub(1), error.into()))
}

fn unavailable(error: &anyhow::Error) -> bool {
    boxoffice_runtime::postgres::cause_is_unavailable(error).unwrap_or(false)
}

/// Applies events to the statistics tables.
pub(crate) struct StatsHandler {
    pool: Pool,
}

impl StatsHandler {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Applies `changes[..end]` and reports `failure` for the one at `end`.
    async fn commit_before(
        &self,
        changes: &[(Uuid, Change)],
        end: usize,
        failure: HandleError,
    ) -> HandleError {
        if end == 0 {
            return failure;
        }
        match apply_all(&self.pool, &changes[..end], false).await {
            Ok(()) => failure,
            Err((_, error)) if unavailable(&error) => HandleError::Unavailable(error),
            Err((index, error)) => HandleError::Failed { index, error },
        }
    }
}

impl Handler for StatsHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let mut changes = Vec::with_capacity(events.len());
        for (index, received) in events.iter().enumerate() {
            let parsed = received
                .event_id()
                .ok_or_else(|| "the event id is not a UUID".to_owned())
                .and_then(|id| change_of(received).map(|change| (id, change)));
            match parsed {
                Ok(change) => changes.push(change),
                Err(reason) => {
                    let poison = HandleError::Poison { index, reason };
                    return Err(self.commit_before(&changes, index, poison).await);
                }
            }
        }
        let together = match apply_all(&self.pool, &changes, true).await {
            Ok(()) => return Ok(()),
            Err((_, error)) if unavailable(&error) => return Err(HandleError::Unavailable(error)),
            // One statement of a run failed: once more a change at a time,
            // to name the one that fails.
            Err(_) => apply_all(&self.pool, &changes, false).await,
        };
        match together {
            Ok(()) => Ok(()),
            Err((_, error)) if unavailable(&error) => Err(HandleError::Unavailable(error)),
            Err((index, error)) => {
                let failed = HandleError::Failed { index, error };
                Err(self.commit_before(&changes, index, failed).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Applying a batch with set-based statements must leave the tables
    //! exactly as applying its events one by one does.

    use std::sync::Arc;

    use boxoffice_events::{Envelope, Handler as _};
    use boxoffice_runtime::config::Secret;
    use rand::{Rng as _, SeedableRng as _};

    use super::*;

    const SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    fn server_url() -> String {
        std::env::var("BOXOFFICE_TEST_POSTGRES_URL").unwrap_or_else(|_| SERVER.to_owned())
    }

    /// A database of its own with the stats schema; dropped by `drop_db`.
    async fn database(name: &str) -> Pool {
        let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must be running for the tests (scripts/services)");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        let url = match server_url().rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("the test server url names no database"),
        };
        let pool = boxoffice_runtime::postgres::pool(&Secret::new(url), 4).expect("pool");
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, crate::store::MIGRATIONS)
            .await
            .expect("stats migrations");
        boxoffice_events::postgres::install_consumer(&pool, SCHEMA)
            .await
            .expect("consumer tables");
        pool
    }

    async fn drop_db(name: &str) {
        let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
            .await
            .expect("connecting");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("dropping the test database");
    }

    fn received(position: u64, event_id: Uuid, payload: Payload) -> Received {
        Received {
            stream: Arc::from("checkout"),
            position,
            envelope: Envelope {
                event_id: event_id.to_string(),
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_800_000_000 + position as i64,
                    nanos: 0,
                }),
                payload: Some(payload),
                ..Default::default()
            },
        }
    }

    fn money(amount_minor: i64) -> Option<pb::Money> {
        Some(pb::Money {
            currency_code: "EUR".into(),
            amount_minor,
        })
    }

    /// Sales, releases, re-sales of the same seats to other bookings,
    /// confirmations, cancellations, refunds (twice), and duplicates.
    fn history(seed: u64) -> Vec<Received> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let event = Uuid::new_v4().to_string();
        let bookings: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();
        let mut events = Vec::new();
        for n in 0..300u64 {
            let booking = bookings[rng.random_range(0..bookings.len())].clone();
            let seats: Vec<u32> = (0..rng.random_range(1..4))
                .map(|_| rng.random_range(0..8))
                .collect();
            let payload = match rng.random_range(0..6) {
                0 | 1 => Payload::SeatsSold(pb::SeatsSold {
                    event_id: event.clone(),
                    booking_id: booking,
                    seat_indexes: seats,
                    ..Default::default()
                }),
                2 => Payload::SeatsReleased(pb::SeatsReleased {
                    event_id: event.clone(),
                    booking_id: booking,
                    seat_indexes: seats,
                }),
                3 => Payload::BookingConfirmed(pb::BookingConfirmed {
                    booking_id: booking,
                    event_id: event.clone(),
                    seat_indexes: seats,
                    total: money(rng.random_range(1_000..9_000)),
                    fees: money(150),
                    ..Default::default()
                }),
                4 => Payload::BookingCancelled(pb::BookingCancelled {
                    booking_id: booking,
                    event_id: event.clone(),
                    ..Default::default()
                }),
                _ => Payload::RefundIssued(pb::RefundIssued {
                    booking_id: booking,
                    amount: money(rng.random_range(0..9_000)),
                    ..Default::default()
                }),
            };
            events.push(received(n, Uuid::new_v4(), payload));
            // Now and then the same event again (at least once delivery).
            if rng.random_range(0..10) == 0 {
                let again = events[rng.random_range(0..events.len())].clone();
                events.push(again);
            }
        }
        events
    }

    async fn tables(pool: &Pool) -> Vec<String> {
        let client = pool.get().await.expect("connection");
        let mut rows = Vec::new();
        for sql in [
            "SELECT event_id::text || '/' || seat_index || '/' || booking_id FROM stats.sold_seats
             ORDER BY 1",
            "SELECT booking_id::text || '/' || tickets || '/' || gross_minor || '/' || fees_minor || '/'
                 || coalesce(cancelled_at::text, '-') || '/' || refunded_minor FROM stats.bookings ORDER BY 1",
        ] {
            for row in client.query(sql, &[]).await.expect("reading stats") {
                rows.push(row.get::<_, String>(0));
            }
        }
        rows
    }

    #[tokio::test]
    async fn a_batch_leaves_the_tables_as_its_events_one_by_one_do() {
        for seed in 0..2 {
            let events = history(seed);
            let suffix = Uuid::new_v4().simple().to_string();
            let (together, apart) = (
                format!("stats_batch_{suffix}"),
                format!("stats_apart_{suffix}"),
            );
            let (batched, single) = (database(&together).await, database(&apart).await);

            StatsHandler::new(batched.clone())
                .handle(&events)
                .await
                .expect("one batch");
            let one_by_one = StatsHandler::new(single.clone());
            for event in &events {
                one_by_one
                    .handle(std::slice::from_ref(event))
                    .await
                    .expect("one event");
            }
            let (got, wanted) = (tables(&batched).await, tables(&single).await);
            assert!(
                !wanted.is_empty(),
                "seed {seed}: the history changed nothing"
            );
            assert_eq!(got, wanted, "seed {seed}: batched and one by one differ");

            batched.close();
            single.close();
            drop_db(&together).await;
            drop_db(&apart).await;
        }
    }
}
