//! Reviews and ratings. Who may review is kept from checkout's events by
//! the `catalog-reviews` consumer group (a confirmed booking makes its user
//! an attendee of its event; a cancelled one takes that back); nothing here
//! reads checkout's tables. A review is one per user and event, written
//! only once the event has ended, 1 to 5 stars and a text of at most 2,000
//! characters, stored as given (escaping is the renderer's job). Rating
//! summaries (count, average, histogram) count the visible reviews of an
//! event, or of every event a performer played; they are cached for a
//! second per process, so a hot `GetEvent` costs no extra query.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boxoffice_contracts::events::v1 as events_pb;
use boxoffice_events::{HandleError, Handler, Payload, Received};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

pub use crate::domain::RatingSummary;
use crate::error::{CatalogError, ReviewRefusal};
use crate::store::postgres as store;

/// The consumer group that keeps attendance.
pub(crate) const GROUP: &str = "catalog-reviews";
pub(crate) const STREAMS: &[&str] = &["checkout"];
/// Longest review text, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Longest reason for hiding a review, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How long a rating summary is served from memory.
const SUMMARY_TTL: Duration = Duration::from_secs(1);
/// Summaries kept in memory at most (then the cache starts over).
const SUMMARY_CACHE_LIMIT: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewRecord {
    pub id: Uuid,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub rating: u8,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub hidden: bool,
    pub hidden_reason: String,
}

/// A validated rating and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewContent {
    pub rating: u8,
    pub text: String,
}

impl ReviewContent {
    pub fn parse(rating: u32, text: String) -> Result<Self, crate::domain::FieldError> {
        if !(1..=5).contains(&rating) {
            return Err(crate::domain::FieldError::new(
                "rating",
                "must be 1 to 5 stars",
            ));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(crate::domain::FieldError::new(
                "text",
                format!("must be at most {MAX_TEXT_CHARS} characters"),
            ));
        }
        Ok(Self {
            rating: rating as u8,
            text,
        })
    }
}

fn record(row: &tokio_postgres::Row) -> ReviewRecord {
    ReviewRecord {
        id: row.get("id"),
        event_id: row.get("event_id"),
        user_id: row.get("user_id"),
        rating: u8::try_from(row.get::<_, i16>("rating")).unwrap_or(0),
        text: row.get("body"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        hidden: row.get("hidden"),
        hidden_reason: row.get("hidden_reason"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SummaryOf {
    Event(Uuid),
    Performer(Uuid),
}

pub struct Reviews {
    pool: Pool,
    /// The catalog's outbox: a change to a rating re-publishes the events
    /// still to come of the reviewed event's performers.
    outbox: boxoffice_events::Outbox,
    summaries: Mutex<HashMap<SummaryOf, (Instant, RatingSummary)>>,
}

impl Reviews {
    pub fn new(pool: Pool, outbox: boxoffice_events::Outbox) -> Self {
        Self {
            pool,
            outbox,
            summaries: Mutex::new(HashMap::new()),
        }
    }

    fn forget_summaries(&self) {
        self.summaries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Writes `user`'s review of `event_id`, which ended at `ended_at`.
    pub async fn create(
        &self,
        user: Uuid,
        event_id: Uuid,
        ended_at: DateTime<Utc>,
        content: &ReviewContent,
    ) -> Result<ReviewRecord, CatalogError> {
        if ended_at > Utc::now() {
            return Err(CatalogError::Review(ReviewRefusal::NotEnded));
        }
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let attended = transaction
            .query_opt(
                "SELECT 1 FROM catalog.review_attendance
                  WHERE user_id = $1 AND event_id = $2 AND confirmed LIMIT 1",
                &[&user, &event_id],
            )
            .await?
            .is_some();
        if !attended {
            return Err(CatalogError::Review(ReviewRefusal::NotAnAttendee));
        }
        let performers = store::lock_performers_of(&transaction, event_id).await?;
        let row = transaction
            .query_opt(
                "INSERT INTO catalog.reviews (id, event_id, user_id, rating, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (event_id, user_id) DO NOTHING
                 RETURNING *",
                &[
                    &Uuid::now_v7(),
                    &event_id,
                    &user,
                    &i16::from(content.rating),
                    &content.text,
                ],
            )
            .await?;
        let Some(review) = row.as_ref().map(record) else {
            return Err(CatalogError::Review(ReviewRefusal::AlreadyReviewed));
        };
        self.rerate(transaction, &performers).await?;
        Ok(review)
    }

    /// Re-publishes the events to come of `performers` with their new
    /// rating, then commits the review's transaction.
    async fn rerate(
        &self,
        transaction: deadpool_postgres::Transaction<'_>,
        performers: &[Uuid],
    ) -> Result<(), CatalogError> {
        let rerated = store::rerate_events_of(&self.outbox, &transaction, performers).await?;
        transaction.commit().await?;
        self.forget_summaries();
        tracing::debug!(rerated, "events re-rated after a review");
        Ok(())
    }

    /// The stars and visibility of a review, locked for the rest of the
    /// transaction, after its event's performers.
    async fn lock_review(
        transaction: &deadpool_postgres::Transaction<'_>,
        event_id: Uuid,
        review_id: Uuid,
    ) -> Result<(Vec<Uuid>, Option<(i16, bool, Uuid)>), CatalogError> {
        let performers = store::lock_performers_of(transaction, event_id).await?;
        let row = transaction
            .query_opt(
                "SELECT rating, hidden, user_id FROM catalog.reviews
                  WHERE id = $1 AND event_id = $2 FOR UPDATE",
                &[&review_id, &event_id],
            )
            .await?;
        Ok((
            performers,
            row.map(|row| (row.get(0), row.get(1), row.get(2))),
        ))
    }

    /// Edits `user`'s own review; anyone else's is not found.
    pub async fn update(
        &self,
        user: Uuid,
        event_id: Uuid,
        review_id: Uuid,
        content: &ReviewContent,
    ) -> Result<ReviewRecord, CatalogError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let (performers, before) = Self::lock_review(&transaction, event_id, review_id).await?;
        let Some((stars, hidden, _)) = before.filter(|(_, _, author)| *author == user) else {
            return Err(not_found(event_id, review_id));
        };
        let row = transaction
            .query_opt(
                "UPDATE catalog.reviews SET rating = $4, body = $5, updated_at = now()
                  WHERE id = $1 AND event_id = $2 AND user_id = $3
              RETURNING *",
                &[
                    &review_id,
                    &event_id,
                    &user,
                    &i16::from(content.rating),
                    &content.text,
                ],
            )
            .await?;
        let review = row
            .as_ref()
            .map(record)
            .ok_or_else(|| not_found(event_id, review_id))?;
        if hidden || stars == i16::from(content.rating) {
            // The text alone changed: no rating did.
            transaction.commit().await?;
            return Ok(review);
        }
        self.rerate(transaction, &performers).await?;
        Ok(review)
    }

    pub async fn hide(
        &self,
        event_id: Uuid,
        review_id: Uuid,
        reason: &str,
    ) -> Result<ReviewRecord, CatalogError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let (performers, before) = Self::lock_review(&transaction, event_id, review_id).await?;
        let Some((_, was_hidden, _)) = before else {
            return Err(not_found(event_id, review_id));
        };
        let row = transaction
            .query_opt(
                "UPDATE catalog.reviews SET hidden = true, hidden_reason = $3
                  WHERE id = $1 AND event_id = $2
              RETURNING *",
                &[&review_id, &event_id, &reason],
            )
            .await?;
        let review = row
            .as_ref()
            .map(record)
            .ok_or_else(|| not_found(event_id, review_id))?;
        if was_hidden {
            transaction.commit().await?;
            return Ok(review);
        }
        self.rerate(transaction, &performers).await?;
        Ok(review)
    }

    /// A page of `event_id`'s reviews, newest first, after `after`
    /// (the last one of the previous page).
    pub async fn list(
        &self,
        event_id: Uuid,
        include_hidden: bool,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> Result<Vec<ReviewRecord>, CatalogError> {
        let client = self.pool.get().await?;
        let (after_time, after_id) = match after {
            Some((time, id)) => (Some(time), Some(id)),
            None => (None, None),
        };
        let rows = client
            .query(
                "SELECT * FROM catalog.reviews
                  WHERE event_id = $1 AND ($2 OR NOT hidden)
                    AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                  ORDER BY created_at DESC, id DESC
                  LIMIT $5",
                &[&event_id, &include_hidden, &after_time, &after_id, &limit],
            )
            .await?;
        Ok(rows.iter().map(record).collect())
    }

    async fn summary_of(&self, of: SummaryOf) -> Result<RatingSummary, CatalogError> {
        if let Some((at, summary)) = self
            .summaries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&of)
            && at.elapsed() < SUMMARY_TTL
        {
            return Ok(*summary);
        }
        let client = self.pool.get().await?;
        let rows = match of {
            SummaryOf::Event(id) => {
                client
                    .query(
                        "SELECT rating, count(*) FROM catalog.reviews
                          WHERE event_id = $1 AND NOT hidden GROUP BY rating",
                        &[&id],
                    )
                    .await?
            }
            SummaryOf::Performer(id) => {
                client
                    .query(
                        "SELECT r.rating, count(*) FROM catalog.reviews r
                           JOIN catalog.event_performers p ON p.event_id = r.event_id
                          WHERE p.performer_id = $1 AND NOT r.hidden GROUP BY r.rating",
                        &[&id],
                    )
                    .await?
            }
        };
        let summary = RatingSummary::from_counts(rows.iter().map(|row| (row.get(0), row.get(1))));
        let mut summaries = self
            .summaries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if summaries.len() >= SUMMARY_CACHE_LIMIT {
            summaries.clear();
        }
        summaries.insert(of, (Instant::now(), summary));
        Ok(summary)
    }

    pub async fn event_summary(&self, event_id: Uuid) -> Result<RatingSummary, CatalogError> {
        self.summary_of(SummaryOf::Event(event_id)).await
    }

    pub async fn performer_summary(
        &self,
        performer_id: Uuid,
    ) -> Result<RatingSummary, CatalogError> {
        self.summary_of(SummaryOf::Performer(performer_id)).await
    }
}

fn not_found(event_id: Uuid, review_id: Uuid) -> CatalogError {
    CatalogError::NotFound {
        what: "review",
        id: format!("events/{event_id}/reviews/{review_id}"),
    }
}

/// Keeps `catalog.review_attendance` from checkout's events. Upserts by
/// booking, applied in stream order: a replay ends in the same state.
pub(crate) struct AttendanceHandler {
    pool: Pool,
}

impl AttendanceHandler {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn attendance(received: &Received) -> Result<Option<(Uuid, Uuid, Uuid, bool)>, String> {
    let parse = |field: &str, text: &str| {
        Uuid::parse_str(text).map_err(|_| format!("{field} {text:?} is not a UUID"))
    };
    Ok(match received.payload() {
        Some(Payload::BookingConfirmed(events_pb::BookingConfirmed {
            booking_id,
            user_id,
            event_id,
            ..
        })) => Some((
            parse("booking id", booking_id)?,
            parse("user id", user_id)?,
            parse("event id", event_id)?,
            true,
        )),
        Some(Payload::BookingCancelled(events_pb::BookingCancelled {
            booking_id,
            user_id,
            event_id,
            ..
        })) => Some((
            parse("booking id", booking_id)?,
            parse("user id", user_id)?,
            parse("event id", event_id)?,
            false,
        )),
        _ => None,
    })
}

impl Handler for AttendanceHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let mut changes = Vec::new();
        // A malformed event: the ones before it are applied, it is
        // dead-lettered (the library's `Poison` contract).
        let mut poison = None;
        for (index, received) in events.iter().enumerate() {
            match attendance(received) {
                Ok(Some(change)) => changes.push(change),
                Ok(None) => {}
                Err(reason) => {
                    poison = Some(HandleError::Poison { index, reason });
                    break;
                }
            }
        }
        if changes.is_empty() {
            return poison.map_or(Ok(()), Err);
        }
        // One row per booking, its latest state (one statement may not
        // change a row twice).
        let mut latest: HashMap<Uuid, (Uuid, Uuid, bool)> = Default::default();
        for (booking_id, user_id, event_id, confirmed) in changes {
            latest.insert(booking_id, (user_id, event_id, confirmed));
        }
        let (mut bookings, mut users, mut events, mut confirmed) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (booking_id, (user_id, event_id, state)) in latest {
            bookings.push(booking_id);
            users.push(user_id);
            events.push(event_id);
            confirmed.push(state);
        }
        let applied = async {
            let mut client = self.pool.get().await?;
            // Attendance is derived from checkout's stream (replayed after a
            // crash that loses this commit).
            let transaction =
                boxoffice_events::postgres::projection_transaction(&mut client).await?;
            let statement = transaction
                .prepare_cached(
                    "INSERT INTO catalog.review_attendance (booking_id, user_id, event_id, confirmed)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bool[])
                     ON CONFLICT (booking_id) DO UPDATE SET confirmed = excluded.confirmed",
                )
                .await?;
            transaction
                .execute(&statement, &[&bookings, &users, &events, &confirmed])
                .await?;
            transaction.commit().await?;
            anyhow::Ok(())
        }
        .await;
        applied.map_err(HandleError::Unavailable)?;
        poison.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_count_and_average() {
        let summary = RatingSummary {
            histogram: [1, 0, 0, 1, 2],
        };
        assert_eq!(summary.count(), 4);
        assert!((summary.average() - 3.75).abs() < 1e-9);
        assert_eq!(RatingSummary::default().average(), 0.0);
    }

    #[test]
    fn stars_and_text_are_checked() {
        assert!(ReviewContent::parse(0, String::new()).is_err());
        assert!(ReviewContent::parse(6, String::new()).is_err());
        assert!(ReviewContent::parse(5, "é".repeat(MAX_TEXT_CHARS)).is_ok());
        let long = ReviewContent::parse(5, "é".repeat(MAX_TEXT_CHARS + 1)).expect_err("too long");
        assert_eq!(long.field, "text");
        let content = ReviewContent::parse(3, "<b>fine</b>".into()).expect("valid");
        assert_eq!(content.text, "<b>fine</b>", "stored as written");
    }
}
