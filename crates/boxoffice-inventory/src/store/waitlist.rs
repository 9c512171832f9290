//! The waitlist's rows in PostgreSQL (`inventory.waitlist_entries`, the
//! truth for who waits in which order): one entry per user and event. Every
//! change to an event's line happens in a transaction holding the line's
//! advisory lock ([`lock_line`]), so joins, leaves and offer passes of one
//! event, on any instance, take turns.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use crate::error::InventoryError;

type Result<T> = std::result::Result<T, InventoryError>;

/// One entry as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryRow {
    pub(crate) event_id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) quantity: u32,
    pub(crate) status: String,
    pub(crate) joined_at: DateTime<Utc>,
    pub(crate) offer: Option<OfferRow>,
    /// 1-based place among the event's waiting and offered entries; 0 out
    /// of line.
    pub(crate) position: u32,
    /// The price tier it waits for (`None`: any seat of the event).
    pub(crate) price_tier_id: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OfferRow {
    pub(crate) hold_id: Uuid,
    pub(crate) seats: Vec<u32>,
    pub(crate) expires_at: DateTime<Utc>,
}

/// What a pass decided for one entry.
#[derive(Clone, Debug)]
pub(crate) struct EntryUpdate {
    pub(crate) user_id: Uuid,
    pub(crate) status: &'static str,
    pub(crate) quantity: u32,
    pub(crate) offer: Option<OfferRow>,
}

const COLUMNS: &str = "e.event_id, e.user_id, e.quantity, e.status, e.joined_at, e.offer_hold_id, \
     e.offer_seats, e.offer_expires_at, \
     CASE WHEN e.status IN ('waiting', 'offered') THEN (SELECT count(*) FROM inventory.waitlist_entries l \
       WHERE l.event_id = e.event_id AND l.status IN ('waiting', 'offered') AND l.seq <= e.seq) ELSE 0 END, \
     e.price_tier_id";

fn entry_of(row: &tokio_postgres::Row) -> EntryRow {
    let hold_id: Option<Uuid> = row.get(5);
    let seats: Option<Vec<i32>> = row.get(6);
    let expires_at: Option<DateTime<Utc>> = row.get(7);
    EntryRow {
        event_id: row.get(0),
        user_id: row.get(1),
        quantity: row.get::<_, i32>(2).max(0) as u32,
        status: row.get(3),
        joined_at: row.get(4),
        offer: match (hold_id, expires_at) {
            (Some(hold_id), Some(expires_at)) => Some(OfferRow {
                hold_id,
                seats: seats
                    .unwrap_or_default()
                    .into_iter()
                    .map(|seat| seat.max(0) as u32)
                    .collect(),
                expires_at,
            }),
            _ => None,
        },
        position: row.get::<_, i64>(8).max(0) as u32,
        price_tier_id: row.get(9),
    }
}

/// Takes the event's line lock until the transaction ends.
pub(crate) async fn lock_line(transaction: &Transaction<'_>, event_id: Uuid) -> Result<()> {
    let statement = transaction
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended('waitlist:' || $1::uuid::text, 0))",
        )
        .await?;
    transaction.execute(&statement, &[&event_id]).await?;
    Ok(())
}

/// The event's line (waiting and offered entries) in order.
pub(crate) async fn line(transaction: &Transaction<'_>, event_id: Uuid) -> Result<Vec<EntryRow>> {
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inventory.waitlist_entries e
             WHERE e.event_id = $1 AND e.status IN ('waiting', 'offered')
             ORDER BY e.seq"
        ))
        .await?;
    let rows = transaction.query(&statement, &[&event_id]).await?;
    Ok(rows.iter().map(entry_of).collect())
}

/// Puts the user in line (a new place at the end) for `quantity` places of
/// `price_tier_id` (`None`: any), unless they are in it already; answers
/// their entry either way.
pub(crate) async fn join(
    transaction: &Transaction<'_>,
    event_id: Uuid,
    user_id: Uuid,
    quantity: u32,
    price_tier_id: Option<Uuid>,
) -> Result<EntryRow> {
    let upsert = transaction
        .prepare_cached(
            "INSERT INTO inventory.waitlist_entries (event_id, user_id, quantity, status, price_tier_id)
             VALUES ($1, $2, $3, 'waiting', $4)
             ON CONFLICT (event_id, user_id) DO UPDATE
             SET seq = nextval('inventory.waitlist_seq'), quantity = EXCLUDED.quantity,
                 status = 'waiting', joined_at = now(), updated_at = now(),
                 offer_hold_id = NULL, offer_seats = NULL, offer_expires_at = NULL,
                 price_tier_id = EXCLUDED.price_tier_id
             WHERE inventory.waitlist_entries.status NOT IN ('waiting', 'offered')",
        )
        .await?;
    transaction
        .execute(
            &upsert,
            &[&event_id, &user_id, &(quantity as i32), &price_tier_id],
        )
        .await?;
    entry_in(transaction, event_id, user_id)
        .await?
        .ok_or_else(|| InventoryError::Internal(anyhow::anyhow!("a joined entry vanished")))
}

async fn entry_in(
    transaction: &Transaction<'_>,
    event_id: Uuid,
    user_id: Uuid,
) -> Result<Option<EntryRow>> {
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inventory.waitlist_entries e WHERE e.event_id = $1 AND e.user_id = $2"
        ))
        .await?;
    let row = transaction
        .query_opt(&statement, &[&event_id, &user_id])
        .await?;
    Ok(row.as_ref().map(entry_of))
}

/// The user's entry on the event, if they ever joined it.
pub(crate) async fn entry(pool: &Pool, event_id: Uuid, user_id: Uuid) -> Result<Option<EntryRow>> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inventory.waitlist_entries e WHERE e.event_id = $1 AND e.user_id = $2"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&event_id, &user_id]).await?;
    Ok(row.as_ref().map(entry_of))
}

/// The user's entries in line, on every event.
pub(crate) async fn entries_of(pool: &Pool, user_id: Uuid) -> Result<Vec<EntryRow>> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inventory.waitlist_entries e
             WHERE e.user_id = $1 AND e.status IN ('waiting', 'offered')
             ORDER BY e.joined_at LIMIT 200"
        ))
        .await?;
    let rows = client.query(&statement, &[&user_id]).await?;
    Ok(rows.iter().map(entry_of).collect())
}

/// An event's line, for admins (the first 1,000).
pub(crate) async fn event_line(pool: &Pool, event_id: Uuid) -> Result<Vec<EntryRow>> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM inventory.waitlist_entries e
             WHERE e.event_id = $1 AND e.status IN ('waiting', 'offered')
             ORDER BY e.seq LIMIT 1000"
        ))
        .await?;
    let rows = client.query(&statement, &[&event_id]).await?;
    Ok(rows.iter().map(entry_of).collect())
}

/// Events with anyone in line.
pub(crate) async fn events_with_lines(pool: &Pool) -> Result<Vec<Uuid>> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT DISTINCT event_id FROM inventory.waitlist_entries
             WHERE status IN ('waiting', 'offered')",
        )
        .await?;
    let rows = client.query(&statement, &[]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Writes a pass's (or a leave's) decisions, in one statement.
pub(crate) async fn apply(
    transaction: &Transaction<'_>,
    event_id: Uuid,
    updates: &[EntryUpdate],
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let statement = transaction
        .prepare_cached(
            "UPDATE inventory.waitlist_entries e
             SET status = u.status, quantity = u.quantity, offer_hold_id = u.hold_id,
                 offer_seats = CASE WHEN u.seats IS NULL THEN NULL
                                    ELSE string_to_array(u.seats, ',')::integer[] END,
                 offer_expires_at = u.expires_at, updated_at = now()
             FROM unnest($2::uuid[], $3::text[], $4::integer[], $5::uuid[], $6::text[],
                         $7::timestamptz[])
                  AS u(user_id, status, quantity, hold_id, seats, expires_at)
             WHERE e.event_id = $1 AND e.user_id = u.user_id",
        )
        .await?;
    let users: Vec<Uuid> = updates.iter().map(|u| u.user_id).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.status).collect();
    let quantities: Vec<i32> = updates.iter().map(|u| u.quantity as i32).collect();
    let holds: Vec<Option<Uuid>> = updates
        .iter()
        .map(|u| u.offer.as_ref().map(|offer| offer.hold_id))
        .collect();
    let seats: Vec<Option<String>> = updates
        .iter()
        .map(|u| {
            u.offer.as_ref().map(|offer| {
                offer
                    .seats
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .collect();
    let expiries: Vec<Option<DateTime<Utc>>> = updates
        .iter()
        .map(|u| u.offer.as_ref().map(|offer| offer.expires_at))
        .collect();
    transaction
        .execute(
            &statement,
            &[
                &event_id,
                &users,
                &statuses,
                &quantities,
                &holds,
                &seats,
                &expiries,
            ],
        )
        .await?;
    Ok(())
}
