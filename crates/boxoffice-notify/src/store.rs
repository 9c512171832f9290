//! The `notify` schema: what the consumer keeps about recipients, events
//! and attendees, the users' preferences, and the messages with their
//! delivery state. The consumer writes inside its own transaction (with
//! the processed-event record); the sender claims, and records outcomes.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_runtime::postgres::{DbContext as _, DbResult, Migration};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::message::{EventFacts, Facts};

/// `sql` prepared once per connection: the consumer runs these for every
/// event, and an unprepared statement costs a parse and a round trip more.
async fn prepared(transaction: &Transaction<'_>, sql: &str) -> DbResult<tokio_postgres::Statement> {
    transaction
        .prepare_cached(sql)
        .await
        .db_context("preparing a statement")
}

pub(crate) const SCHEMA: &str = "notify";

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "notify",
        sql: include_str!("migrations/0001_notify.sql"),
    },
    Migration {
        version: 2,
        name: "questions",
        sql: include_str!("migrations/0002_questions.sql"),
    },
];

/// Creates or upgrades the notifications schema (idempotent; concurrent starters
/// wait for each other): `boxoffice migrate` runs it with every other
/// service's, and the component runs it before it starts.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    boxoffice_runtime::postgres::migrate(pool, SCHEMA, MIGRATIONS).await
}

/// An event as the catalog last described it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EventRow {
    pub(crate) id: Uuid,
    pub(crate) title: String,
    pub(crate) start_time: Option<DateTime<Utc>>,
    pub(crate) venue: String,
    pub(crate) city: String,
    pub(crate) performer_ids: Vec<Uuid>,
    pub(crate) performers: String,
    pub(crate) status: String,
    pub(crate) version: i64,
}

impl EventRow {
    pub(crate) fn facts(&self) -> EventFacts {
        EventFacts {
            event_id: self.id,
            title: self.title.clone(),
            start_time: self.start_time,
            venue: self.venue.clone(),
            city: self.city.clone(),
        }
    }
}

fn event_row(row: &tokio_postgres::Row) -> EventRow {
    EventRow {
        id: row.get("id"),
        title: row.get("title"),
        start_time: row.get("start_time"),
        venue: row.get("venue"),
        city: row.get("city"),
        performer_ids: row.get("performer_ids"),
        performers: row.get("performers"),
        status: row.get("status"),
        version: row.get("version"),
    }
}

pub(crate) async fn upsert_recipient(
    transaction: &Transaction<'_>,
    user_id: Uuid,
    email: &str,
    display_name: &str,
) -> DbResult<()> {
    transaction
        .execute(
            &prepared(transaction, "INSERT INTO notify.recipients (user_id, email, display_name) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE
                 SET email = excluded.email, display_name = excluded.display_name, updated_at = now()").await?,
            &[&user_id, &email, &display_name],
        )
        .await
        .db_context("recording a recipient")?;
    Ok(())
}

/// Forgets a user's address; their unsent mail is given up and the
/// addresses of sent mail are cleared.
pub(crate) async fn erase_recipient(transaction: &Transaction<'_>, user_id: Uuid) -> DbResult<()> {
    transaction
        .execute(
            &prepared(
                transaction,
                "DELETE FROM notify.recipients WHERE user_id = $1",
            )
            .await?,
            &[&user_id],
        )
        .await
        .db_context("erasing a recipient")?;
    transaction
        .execute(
            &prepared(transaction, "UPDATE notify.messages
                SET status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END,
                    last_error = CASE WHEN status = 'pending' THEN 'user erased' ELSE last_error END,
                    to_address = NULL, facts = '{}'::jsonb
              WHERE user_id = $1").await?,
            &[&user_id],
        )
        .await
        .db_context("erasing a recipient's messages")?;
    Ok(())
}

pub(crate) async fn event(transaction: &Transaction<'_>, id: Uuid) -> DbResult<Option<EventRow>> {
    let row = transaction
        .query_opt(
            &prepared(transaction, "SELECT * FROM notify.events WHERE id = $1").await?,
            &[&id],
        )
        .await
        .db_context("reading an event")?;
    Ok(row.as_ref().map(event_row))
}

/// Keeps `event` unless a newer version is already stored.
pub(crate) async fn upsert_event(transaction: &Transaction<'_>, event: &EventRow) -> DbResult<()> {
    transaction
        .execute(
            &prepared(
                transaction,
                "INSERT INTO notify.events
                 (id, title, start_time, venue, city, performer_ids, performers, status, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE
                 SET title = excluded.title, start_time = excluded.start_time,
                     venue = excluded.venue, city = excluded.city,
                     performer_ids = excluded.performer_ids, performers = excluded.performers,
                     status = excluded.status, version = excluded.version
               WHERE notify.events.version < excluded.version",
            )
            .await?,
            &[
                &event.id,
                &event.title,
                &event.start_time,
                &event.venue,
                &event.city,
                &event.performer_ids,
                &event.performers,
                &event.status,
                &event.version,
            ],
        )
        .await
        .db_context("recording an event")?;
    Ok(())
}

pub(crate) async fn upsert_attendee(
    transaction: &Transaction<'_>,
    booking_id: Uuid,
    user_id: Uuid,
    event_id: Uuid,
    confirmed: bool,
) -> DbResult<()> {
    transaction
        .execute(
            &prepared(
                transaction,
                "INSERT INTO notify.attendees (booking_id, user_id, event_id, confirmed)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (booking_id) DO UPDATE SET confirmed = excluded.confirmed",
            )
            .await?,
            &[&booking_id, &user_id, &event_id, &confirmed],
        )
        .await
        .db_context("recording an attendee")?;
    Ok(())
}

/// The attendee row of a booking: (user, event).
pub(crate) async fn attendee(
    transaction: &Transaction<'_>,
    booking_id: Uuid,
) -> DbResult<Option<(Uuid, Uuid)>> {
    let row = transaction
        .query_opt(
            &prepared(
                transaction,
                "SELECT user_id, event_id FROM notify.attendees WHERE booking_id = $1",
            )
            .await?,
            &[&booking_id],
        )
        .await
        .db_context("reading an attendee")?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// Users holding confirmed bookings for `event_id`.
pub(crate) async fn attendees_of(
    transaction: &Transaction<'_>,
    event_id: Uuid,
) -> DbResult<Vec<Uuid>> {
    let rows = transaction
        .query(
            &prepared(
                transaction,
                "SELECT DISTINCT user_id FROM notify.attendees WHERE event_id = $1 AND confirmed",
            )
            .await?,
            &[&event_id],
        )
        .await
        .db_context("reading an event's attendees")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Users who have seen one of `performer_ids` at another event and have
/// not opted out of marketing.
pub(crate) async fn fans_of(
    transaction: &Transaction<'_>,
    event_id: Uuid,
    performer_ids: &[Uuid],
) -> DbResult<Vec<Uuid>> {
    let rows = transaction
        .query(
            &prepared(
                transaction,
                "SELECT DISTINCT a.user_id
               FROM notify.attendees a
               JOIN notify.events e ON e.id = a.event_id
              WHERE a.confirmed AND a.event_id <> $1 AND e.performer_ids && $2
                AND NOT EXISTS (SELECT 1 FROM notify.preferences p
                                 WHERE p.user_id = a.user_id AND NOT p.marketing)",
            )
            .await?,
            &[&event_id, &performer_ids],
        )
        .await
        .db_context("reading an event's audience")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Records a message to send (once per domain event, user and kind).
pub(crate) async fn insert_message(
    transaction: &Transaction<'_>,
    source_event_id: Uuid,
    user_id: Uuid,
    facts: &Facts,
) -> DbResult<()> {
    let json = serde_json::to_value(facts)
        .map_err(|error| boxoffice_runtime::postgres::DbError::Internal(error.into()))?;
    transaction
        .execute(
            &prepared(
                transaction,
                "INSERT INTO notify.messages (id, source_event_id, user_id, kind, marketing, facts)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (source_event_id, user_id, kind) DO NOTHING",
            )
            .await?,
            &[
                &Uuid::now_v7(),
                &source_event_id,
                &user_id,
                &facts.kind(),
                &facts.is_marketing(),
                &json,
            ],
        )
        .await
        .db_context("recording a message")?;
    Ok(())
}

/// One booking confirmation as the consumer records it.
pub(crate) struct Confirmation<'a> {
    pub(crate) source_event_id: Uuid,
    pub(crate) booking_id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) event_id: Uuid,
    /// The mail's facts but the event's (`None`: checkout no longer has
    /// the booking, so there is nothing to mail).
    pub(crate) mail: Option<(
        &'a [crate::message::TicketFacts],
        &'a crate::message::MoneyFacts,
    )>,
}

/// Records consecutive confirmations of a batch in three statements, not
/// three per confirmation: the attendees, one read of their events, and
/// the mails (each once per domain event, user and kind).
pub(crate) async fn record_confirmations(
    transaction: &Transaction<'_>,
    confirmations: &[Confirmation<'_>],
) -> DbResult<()> {
    if confirmations.is_empty() {
        return Ok(());
    }
    // One row per booking (the last word on it), or the upsert would touch
    // a row twice.
    let mut attendees: HashMap<Uuid, (Uuid, Uuid)> = HashMap::new();
    for confirmation in confirmations {
        attendees.insert(
            confirmation.booking_id,
            (confirmation.user_id, confirmation.event_id),
        );
    }
    let (bookings, (users, events)): (Vec<Uuid>, (Vec<Uuid>, Vec<Uuid>)) =
        attendees.into_iter().unzip();
    transaction
        .execute(
            &prepared(
                transaction,
                "INSERT INTO notify.attendees (booking_id, user_id, event_id, confirmed)
                 SELECT booking_id, user_id, event_id, true
                   FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS a(booking_id, user_id, event_id)
                 ON CONFLICT (booking_id) DO UPDATE SET confirmed = true",
            )
            .await?,
            &[&bookings, &users, &events],
        )
        .await
        .db_context("recording attendees")?;
    let mailed: Vec<&Confirmation<'_>> = confirmations
        .iter()
        .filter(|confirmation| confirmation.mail.is_some())
        .collect();
    if mailed.is_empty() {
        return Ok(());
    }
    let wanted: Vec<Uuid> = mailed.iter().map(|c| c.event_id).collect();
    let known: HashMap<Uuid, EventRow> = transaction
        .query(
            &prepared(
                transaction,
                "SELECT * FROM notify.events WHERE id = ANY($1::uuid[])",
            )
            .await?,
            &[&wanted],
        )
        .await
        .db_context("reading events")?
        .iter()
        .map(|row| {
            let event = event_row(row);
            (event.id, event)
        })
        .collect();
    let mut columns = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for confirmation in mailed {
        let Some((tickets, total)) = confirmation.mail else {
            continue;
        };
        let event = match known.get(&confirmation.event_id) {
            Some(row) => row.facts(),
            None => EventFacts {
                event_id: confirmation.event_id,
                ..Default::default()
            },
        };
        let facts = Facts::BookingConfirmed {
            booking_id: confirmation.booking_id,
            event,
            tickets: tickets.to_vec(),
            total: total.clone(),
        };
        let json = serde_json::to_value(&facts)
            .map_err(|error| boxoffice_runtime::postgres::DbError::Internal(error.into()))?;
        columns.0.push(Uuid::now_v7());
        columns.1.push(confirmation.source_event_id);
        columns.2.push(confirmation.user_id);
        columns.3.push(facts.kind());
        columns.4.push(facts.is_marketing());
        columns.5.push(json);
    }
    transaction
        .execute(
            &prepared(
                transaction,
                "INSERT INTO notify.messages (id, source_event_id, user_id, kind, marketing, facts)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[], $6::jsonb[])
                 ON CONFLICT (source_event_id, user_id, kind) DO NOTHING",
            )
            .await?,
            &[&columns.0, &columns.1, &columns.2, &columns.3, &columns.4, &columns.5],
        )
        .await
        .db_context("recording messages")?;
    Ok(())
}

/// A message a sender has claimed: this attempt is already counted.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) marketing: bool,
    pub(crate) facts: serde_json::Value,
    pub(crate) attempts: i32,
    pub(crate) created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct Recipient {
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) marketing: bool,
}

#[derive(Clone)]
pub struct NotifyStore {
    pool: Pool,
}

/// Delivery states of a message, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageState {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub to_address: Option<String>,
}

/// What waits to be sent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Waiting {
    pub(crate) count: i64,
    pub(crate) oldest_seconds: f64,
}

impl NotifyStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Claims up to `limit` due messages for `claim` (another attempt may
    /// start after that) and counts the attempt, before anything is sent.
    pub(crate) async fn claim_due(&self, limit: i64, claim: Duration) -> DbResult<Vec<Claimed>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let claim_ms = i64::try_from(claim.as_millis()).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "UPDATE notify.messages m
                    SET attempts = m.attempts + 1,
                        next_attempt_at = now() + make_interval(secs => $2::bigint / 1000.0)
                   FROM (SELECT id FROM notify.messages
                          WHERE status = 'pending' AND next_attempt_at <= now()
                          ORDER BY next_attempt_at
                          LIMIT $1
                          FOR UPDATE SKIP LOCKED) due
                  WHERE m.id = due.id
              RETURNING m.id, m.user_id, m.marketing, m.facts, m.attempts, m.created_at",
                &[&limit, &claim_ms],
            )
            .await
            .db_context("claiming due messages")?;
        Ok(rows
            .iter()
            .map(|row| Claimed {
                id: row.get(0),
                user_id: row.get(1),
                marketing: row.get(2),
                facts: row.get(3),
                attempts: row.get(4),
                created_at: row.get(5),
            })
            .collect())
    }

    pub(crate) async fn recipients(&self, users: &[Uuid]) -> DbResult<HashMap<Uuid, Recipient>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let rows = client
            .query(
                "SELECT r.user_id, r.email, r.display_name, coalesce(p.marketing, true)
                   FROM notify.recipients r
                   LEFT JOIN notify.preferences p ON p.user_id = r.user_id
                  WHERE r.user_id = ANY($1)",
                &[&users],
            )
            .await
            .db_context("reading recipients")?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    Recipient {
                        email: row.get(1),
                        display_name: row.get(2),
                        marketing: row.get(3),
                    },
                )
            })
            .collect())
    }

    pub(crate) async fn mark_sent(&self, sent: &[(Uuid, String)]) -> DbResult<()> {
        if sent.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = sent.iter().map(|(id, _)| *id).collect();
        let addresses: Vec<&str> = sent.iter().map(|(_, to)| to.as_str()).collect();
        let client = self.pool.get().await.db_context("connecting")?;
        client
            .execute(
                "UPDATE notify.messages m
                    SET status = 'sent', sent_at = now(), to_address = s.address, last_error = NULL
                   FROM unnest($1::uuid[], $2::text[]) AS s(id, address)
                  WHERE m.id = s.id",
                &[&ids, &addresses],
            )
            .await
            .db_context("recording sent messages")?;
        Ok(())
    }

    /// Gives a message up with `status` (`suppressed` or `failed`).
    pub(crate) async fn finish(&self, id: Uuid, status: &str, why: &str) -> DbResult<()> {
        let client = self.pool.get().await.db_context("connecting")?;
        client
            .execute(
                "UPDATE notify.messages SET status = $2, last_error = $3 WHERE id = $1",
                &[&id, &status, &why],
            )
            .await
            .db_context("recording a message's end")?;
        Ok(())
    }

    /// Sets the next attempt `after` from now, with what went wrong.
    pub(crate) async fn retry_later(&self, id: Uuid, after: Duration, error: &str) -> DbResult<()> {
        let client = self.pool.get().await.db_context("connecting")?;
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        client
            .execute(
                "UPDATE notify.messages
                    SET next_attempt_at = now() + make_interval(secs => $2::bigint / 1000.0),
                        last_error = $3
                  WHERE id = $1 AND status = 'pending'",
                &[&id, &after_ms, &error],
            )
            .await
            .db_context("scheduling a retry")?;
        Ok(())
    }

    pub(crate) async fn waiting(&self) -> DbResult<Waiting> {
        let client = self.pool.get().await.db_context("connecting")?;
        let row = client
            .query_one(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
                   FROM notify.messages WHERE status = 'pending'",
                &[],
            )
            .await
            .db_context("counting waiting messages")?;
        Ok(Waiting {
            count: row.get(0),
            oldest_seconds: row.get(1),
        })
    }

    /// The user's marketing preference (opted in unless they said no).
    pub async fn marketing(&self, user_id: Uuid) -> DbResult<bool> {
        let client = self.pool.get().await.db_context("connecting")?;
        let row = client
            .query_opt(
                "SELECT marketing FROM notify.preferences WHERE user_id = $1",
                &[&user_id],
            )
            .await
            .db_context("reading preferences")?;
        Ok(row.is_none_or(|row| row.get(0)))
    }

    pub async fn set_marketing(&self, user_id: Uuid, marketing: bool) -> DbResult<()> {
        let client = self.pool.get().await.db_context("connecting")?;
        client
            .execute(
                "INSERT INTO notify.preferences (user_id, marketing) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE SET marketing = excluded.marketing, updated_at = now()",
                &[&user_id, &marketing],
            )
            .await
            .db_context("saving preferences")?;
        Ok(())
    }

    /// A user's messages, oldest first (tests and support).
    pub async fn messages_of(&self, user_id: Uuid) -> DbResult<Vec<MessageState>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let rows = client
            .query(
                "SELECT id, kind, status, attempts, to_address FROM notify.messages
                  WHERE user_id = $1 ORDER BY created_at, id",
                &[&user_id],
            )
            .await
            .db_context("reading messages")?;
        Ok(rows
            .iter()
            .map(|row| MessageState {
                id: row.get(0),
                kind: row.get(1),
                status: row.get(2),
                attempts: row.get(3),
                to_address: row.get(4),
            })
            .collect())
    }
}
