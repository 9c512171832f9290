//! The loyalty ledger in PostgreSQL: entries plus a balance per user kept
//! in the same transaction. Spending locks the booking, then the balance
//! row; earning and reversing (from checkout's own events) insert an entry
//! named by the event, `ON CONFLICT DO NOTHING`, and move the balance only
//! when it went in, so a replayed event changes nothing.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::postgres::{CheckoutStore, prepared};
use super::promo::{PromoChange, locked_pending, reread};
use crate::domain::loyalty::{self, SpendRefusal, Tier};
use boxoffice_runtime::postgres::{DbContext as _, DbResult};

/// One change of a user's points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoyaltyEntry {
    pub kind: String,
    pub points: i64,
    pub booking_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A user's points as they see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoyaltySummary {
    pub balance: i64,
    pub points_last_12_months: i64,
    pub tier: Tier,
    /// The latest entries, newest first.
    pub history: Vec<LoyaltyEntry>,
}

/// What spending points on a booking came to.
#[derive(Debug)]
pub enum SpendChange {
    Booking(PromoChange),
    Refused(SpendRefusal),
}

/// Earned less reversed in the last 12 months (the tier's measure).
const POINTS_LAST_YEAR: &str = "SELECT coalesce(sum(points), 0)::int8 AS points FROM checkout.loyalty_entries
     WHERE user_id = $1 AND kind IN ('earn', 'reverse') AND created_at > now() - interval '12 months'";

impl CheckoutStore {
    /// The user's tier now.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.loyalty_tier", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn loyalty_tier(&self, user: Uuid) -> DbResult<Tier> {
        let client = self.client().await?;
        let row = client
            .query_one(&prepared(&client, POINTS_LAST_YEAR).await?, &[&user])
            .await
            .db_context("reading a loyalty tier")?;
        Ok(Tier::of(row.try_get("points")?))
    }

    /// Balance, tier and history from one snapshot (so they agree).
    pub async fn loyalty(&self, user: Uuid) -> DbResult<LoyaltySummary> {
        let mut client = self.client().await?;
        let client = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .db_context("starting to read loyalty")?;
        let balance = client
            .query_opt(
                "SELECT balance FROM checkout.loyalty_accounts WHERE user_id = $1",
                &[&user],
            )
            .await
            .db_context("reading a loyalty balance")?
            .map(|row| row.try_get::<_, i64>("balance"))
            .transpose()?
            .unwrap_or(0);
        let last_year: i64 = client
            .query_one(POINTS_LAST_YEAR, &[&user])
            .await
            .db_context("reading loyalty points")?
            .try_get("points")?;
        let rows = client
            .query(
                "SELECT kind, points, booking_id, created_at FROM checkout.loyalty_entries
                 WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100",
                &[&user],
            )
            .await
            .db_context("reading loyalty history")?;
        let history = rows
            .iter()
            .map(|row| {
                Ok(LoyaltyEntry {
                    kind: row.try_get("kind")?,
                    points: row.try_get("points")?,
                    booking_id: row.try_get("booking_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        client.commit().await.db_context("ending a loyalty read")?;
        Ok(LoyaltySummary {
            balance,
            points_last_12_months: last_year,
            tier: Tier::of(last_year),
            history,
        })
    }

    /// Sets how many points `user`'s pending booking spends (0: none),
    /// giving back what it spent before, in one transaction.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.spend_points", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn spend_points(
        &self,
        booking_id: Uuid,
        user: Uuid,
        points: i64,
        now: DateTime<Utc>,
    ) -> DbResult<SpendChange> {
        self.forget_recent(booking_id);
        let mut client = self.client().await?;
        let transaction = client
            .transaction()
            .await
            .db_context("starting to spend points")?;
        let booking = match locked_pending(&transaction, booking_id, user, now).await? {
            Ok(booking) => booking,
            Err(change) => return Ok(SpendChange::Booking(change)),
        };
        if booking.points_spent == points {
            return Ok(SpendChange::Booking(PromoChange::Done(Box::new(booking))));
        }
        transaction
            .execute(
                "INSERT INTO checkout.loyalty_accounts (user_id, balance) VALUES ($1, 0)
                 ON CONFLICT DO NOTHING",
                &[&user],
            )
            .await
            .db_context("opening a loyalty account")?;
        let balance: i64 = transaction
            .query_one(
                "SELECT balance FROM checkout.loyalty_accounts WHERE user_id = $1 FOR UPDATE",
                &[&user],
            )
            .await
            .db_context("locking a loyalty balance")?
            .try_get("balance")?;
        let tickets_left =
            booking.subtotal_minor - booking.discount_minor - booking.tier_discount_minor;
        let discount = match loyalty::spend(points, balance + booking.points_spent, tickets_left) {
            Ok(discount) => discount,
            Err(refusal) => return Ok(SpendChange::Refused(refusal)),
        };
        if booking.points_spent > 0 {
            transaction
                .execute(
                    "INSERT INTO checkout.loyalty_entries (id, user_id, kind, points, booking_id)
                     VALUES ($1, $2, 'release', $3, $4)",
                    &[&Uuid::now_v7(), &user, &booking.points_spent, &booking_id],
                )
                .await
                .db_context("giving spent points back")?;
        }
        if points > 0 {
            transaction
                .execute(
                    "INSERT INTO checkout.loyalty_entries (id, user_id, kind, points, booking_id)
                     VALUES ($1, $2, 'spend', $3, $4)",
                    &[&Uuid::now_v7(), &user, &-points, &booking_id],
                )
                .await
                .db_context("spending points")?;
        }
        transaction
            .execute(
                "UPDATE checkout.loyalty_accounts SET balance = balance + $2 - $3 WHERE user_id = $1",
                &[&user, &booking.points_spent, &points],
            )
            .await
            .db_context("moving a loyalty balance")?;
        transaction
            .execute(
                "UPDATE checkout.bookings SET points_spent = $2, loyalty_discount_minor = $3,
                     total_minor = subtotal_minor + fees_minor - discount_minor - $3 - tier_discount_minor,
                     updated_at = now()
                 WHERE id = $1",
                &[&booking_id, &points, &discount],
            )
            .await
            .db_context("repricing a booking")?;
        let booking = reread(&transaction, booking_id).await?;
        transaction
            .commit()
            .await
            .db_context("committing spent points")?;
        Ok(SpendChange::Booking(PromoChange::Done(Box::new(booking))))
    }

    /// Applies a batch of checkout's events to the ledger in one
    /// transaction with two statements: every earning (once per event and
    /// per booking), then every reversal (what the booking earned, taken
    /// back once). Earnings go first: a booking's cancellation always
    /// follows its confirmation in the stream. Answers how many entries
    /// were new (a replayed batch changes nothing).
    pub async fn apply_loyalty(&self, earned: &[Earning], reversed: &[Reversal]) -> DbResult<u64> {
        let mut client = self.client().await?;
        // Derived from checkout's stream: a crash that loses this commit
        // loses the consumer's checkpoint after it too, and the events are
        // applied again (see `boxoffice_events::postgres::projection_transaction`).
        let transaction = boxoffice_events::postgres::projection_transaction(&mut client).await?;
        let mut changed = 0;
        if !earned.is_empty() {
            let ids: Vec<Uuid> = earned.iter().map(|_| Uuid::now_v7()).collect();
            let events: Vec<Uuid> = earned.iter().map(|e| e.event_id).collect();
            let users: Vec<Uuid> = earned.iter().map(|e| e.user).collect();
            let bookings: Vec<Uuid> = earned.iter().map(|e| e.booking).collect();
            let points: Vec<i64> = earned.iter().map(|e| e.points).collect();
            let statement = transaction
                .prepare_cached(
                    "WITH earned AS (
                         INSERT INTO checkout.loyalty_entries (id, user_id, kind, points, booking_id, source_event_id)
                         SELECT id, user_id, 'earn', points, booking_id, event_id
                         FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::uuid[])
                             AS e(id, user_id, points, booking_id, event_id)
                         ON CONFLICT DO NOTHING
                         RETURNING user_id, points
                     ), credited AS (
                         INSERT INTO checkout.loyalty_accounts (user_id, balance)
                         SELECT user_id, sum(points) FROM earned GROUP BY user_id
                         ON CONFLICT (user_id) DO UPDATE SET balance = loyalty_accounts.balance + EXCLUDED.balance
                     )
                     SELECT count(*) FROM earned",
                )
                .await
                .db_context("earning points")?;
            let row = transaction
                .query_one(&statement, &[&ids, &users, &points, &bookings, &events])
                .await
                .db_context("earning points")?;
            changed += u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0);
        }
        if !reversed.is_empty() {
            let ids: Vec<Uuid> = reversed.iter().map(|_| Uuid::now_v7()).collect();
            let events: Vec<Uuid> = reversed.iter().map(|r| r.event_id).collect();
            let bookings: Vec<Uuid> = reversed.iter().map(|r| r.booking).collect();
            let statement = transaction
                .prepare_cached(
                    "WITH reversed AS (
                         INSERT INTO checkout.loyalty_entries (id, user_id, kind, points, booking_id, source_event_id)
                         SELECT r.id, e.user_id, 'reverse', -e.points, e.booking_id, r.event_id
                         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS r(id, booking_id, event_id)
                         JOIN checkout.loyalty_entries e ON e.booking_id = r.booking_id AND e.kind = 'earn'
                         ON CONFLICT DO NOTHING
                         RETURNING user_id, points
                     ), debited AS (
                         UPDATE checkout.loyalty_accounts a SET balance = a.balance + d.points
                         FROM (SELECT user_id, sum(points) AS points FROM reversed GROUP BY user_id) d
                         WHERE a.user_id = d.user_id
                     )
                     SELECT count(*) FROM reversed",
                )
                .await
                .db_context("reversing points")?;
            let row = transaction
                .query_one(&statement, &[&ids, &bookings, &events])
                .await
                .db_context("reversing points")?;
            changed += u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0);
        }
        transaction
            .commit()
            .await
            .db_context("committing loyalty points")?;
        Ok(changed)
    }
}

/// Points a confirmed booking earns (from its `BookingConfirmed`).
#[derive(Clone, Copy, Debug)]
pub struct Earning {
    pub event_id: Uuid,
    pub user: Uuid,
    pub booking: Uuid,
    pub points: i64,
}

/// A cancelled booking's earning to take back (from its `BookingCancelled`).
#[derive(Clone, Copy, Debug)]
pub struct Reversal {
    pub event_id: Uuid,
    pub booking: Uuid,
}
