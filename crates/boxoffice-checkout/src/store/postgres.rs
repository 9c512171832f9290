//! Bookings and payments in PostgreSQL. Each state change is one statement
//! that names the state it expects (`... WHERE state = 'confirming'`), so
//! a request, a retry and the reconciler racing each other can never move a
//! row twice or backwards; the schema's triggers refuse any other edge.
//! The confirm path costs two statements: the claim (booking to confirming
//! plus the payment attempt, which is also the idempotency record; it
//! commits durably before the provider is called) and the finish (payment
//! captured plus booking confirmed; it commits asynchronously, see
//! [`CheckoutStore::finish_confirm`]). Both are group-committed: the claims
//! (and the finishes) of confirmations arriving together share one
//! statement (see [`super::batch`]). Every statement is prepared once per
//! connection, so each costs one round trip.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::batch::{Batcher, together_or_one_at_a_time};
use crate::domain::{BookingState, PaymentState, PricedSeat};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TicketRecord {
    pub seat_index: u32,
    pub section_id: Option<Uuid>,
    pub price_tier_id: Option<Uuid>,
    pub price_minor: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BookingRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub hold_id: Uuid,
    pub state: BookingState,
    pub currency_code: String,
    pub subtotal_minor: i64,
    pub fees_minor: i64,
    pub total_minor: i64,
    pub refunded_minor: i64,
    pub event_start_time: Option<DateTime<Utc>>,
    pub expire_time: DateTime<Utc>,
    pub payment_id: Option<Uuid>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub tickets: Vec<TicketRecord>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PaymentRecord {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub user_id: Uuid,
    pub idempotency_key: String,
    pub payment_method: String,
    pub amount_minor: i64,
    pub currency_code: String,
    pub state: PaymentState,
    pub provider_ref: Option<String>,
    pub outcome_code: Option<i32>,
    pub outcome_reason: Option<String>,
    pub outcome_message: Option<String>,
}

/// A new pending booking.
#[derive(Clone, Debug)]
pub struct NewBooking {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub hold_id: Uuid,
    pub currency_code: String,
    pub subtotal_minor: i64,
    pub fees_minor: i64,
    pub create_key: Option<String>,
    pub event_start_time: Option<DateTime<Utc>>,
    pub expire_time: DateTime<Utc>,
    pub seats: Vec<PricedSeat>,
}

/// What claiming a booking for a payment found.
#[derive(Debug)]
pub enum Claim {
    /// The booking is now confirming and the attempt recorded.
    Claimed(Box<BookingRecord>),
    /// Nothing changed: the key was used before, or the booking is not a
    /// pending booking of this user.
    NotClaimed,
}

/// A failed attempt's stored answer.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub code: i32,
    pub reason: String,
    pub message: String,
}

const BOOKING_COLUMNS: &str = "b.id, b.user_id, b.event_id, b.hold_id, b.state, b.currency_code, b.subtotal_minor,
    b.fees_minor, b.total_minor, b.refunded_minor, b.event_start_time, b.expire_time, b.payment_id,
    b.failure_reason, b.created_at, b.confirmed_at, b.cancelled_at,
    (SELECT coalesce(json_agg(json_build_object('seat_index', t.seat_index, 'section_id', t.section_id,
                'price_tier_id', t.price_tier_id, 'price_minor', t.price_minor) ORDER BY t.seat_index), '[]'::json)
     FROM checkout.booking_tickets t WHERE t.booking_id = b.id) AS tickets";

const PAYMENT_COLUMNS: &str =
    "p.id, p.booking_id, p.user_id, p.idempotency_key, p.payment_method, p.amount_minor,
    p.currency_code, p.state, p.provider_ref, p.outcome_code, p.outcome_reason, p.outcome_message";

fn booking_from_row(row: &Row) -> anyhow::Result<BookingRecord> {
    let state: String = row.try_get("state")?;
    let tickets: serde_json::Value = row.try_get("tickets")?;
    Ok(BookingRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        event_id: row.try_get("event_id")?,
        hold_id: row.try_get("hold_id")?,
        state: BookingState::parse(&state)
            .with_context(|| format!("unknown booking state {state}"))?,
        currency_code: row.try_get("currency_code")?,
        subtotal_minor: row.try_get("subtotal_minor")?,
        fees_minor: row.try_get("fees_minor")?,
        total_minor: row.try_get("total_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        event_start_time: row.try_get("event_start_time")?,
        expire_time: row.try_get("expire_time")?,
        payment_id: row.try_get("payment_id")?,
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        tickets: serde_json::from_value(tickets).context("reading booking tickets")?,
    })
}

fn payment_from_row(row: &Row) -> anyhow::Result<PaymentRecord> {
    let state: String = row.try_get("state")?;
    Ok(PaymentRecord {
        id: row.try_get("id")?,
        booking_id: row.try_get("booking_id")?,
        user_id: row.try_get("user_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        payment_method: row.try_get("payment_method")?,
        amount_minor: row.try_get("amount_minor")?,
        currency_code: row.try_get("currency_code")?,
        state: PaymentState::parse(&state)
            .with_context(|| format!("unknown payment state {state}"))?,
        provider_ref: row.try_get("provider_ref")?,
        outcome_code: row.try_get("outcome_code")?,
        outcome_reason: row.try_get("outcome_reason")?,
        outcome_message: row.try_get("outcome_message")?,
    })
}

/// Prepares `sql` once per connection (deadpool keeps each connection's
/// statement cache), so every later run is one round trip, not two.
async fn prepared(client: &deadpool_postgres::Client, sql: &str) -> anyhow::Result<Statement> {
    client
        .prepare_cached(sql)
        .await
        .context("preparing a statement")
}

/// One confirmation's claim, as queued for a batch.
struct ClaimItem {
    booking_id: Uuid,
    user_id: Uuid,
    payment_id: Uuid,
    key: String,
    method: String,
}

/// One confirmation's finish, as queued for a batch.
struct FinishItem {
    payment_id: Uuid,
    provider_ref: String,
}

/// The batch writers, started on first use (each holds an unbatched copy
/// of the store, so it ends once every handle to this one is gone).
#[derive(Default)]
struct Batches {
    claims: OnceLock<Batcher<ClaimItem, Claim>>,
    finishes: OnceLock<Batcher<FinishItem, bool>>,
}

#[derive(Clone)]
pub struct CheckoutStore {
    pool: Pool,
    batches: Arc<Batches>,
}

impl CheckoutStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            batches: Arc::default(),
        }
    }

    /// This store without batch writers: what the writers themselves use.
    fn unbatched(&self) -> Self {
        Self::new(self.pool.clone())
    }

    /// The batch writer in `cell`, started on first use with `write`.
    fn writer<'a, I, O, F, Fut>(
        &self,
        cell: &'a OnceLock<Batcher<I, O>>,
        write: F,
    ) -> &'a Batcher<I, O>
    where
        I: Send + 'static,
        O: Send + 'static,
        F: Fn(CheckoutStore, Vec<I>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Vec<anyhow::Result<O>>> + Send,
    {
        cell.get_or_init(|| {
            let store = self.unbatched();
            Batcher::spawn(move |items| write(store.clone(), items))
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> anyhow::Result<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .context("getting a database connection")
    }

    /// Inserts a pending booking with its tickets in one statement; answers
    /// false when the hold (or the create key) already has a booking.
    pub async fn insert_booking(&self, booking: &NewBooking) -> anyhow::Result<bool> {
        let client = self.client().await?;
        let seats: Vec<i32> = booking
            .seats
            .iter()
            .map(|seat| seat.seat_index as i32)
            .collect();
        let sections: Vec<Option<Uuid>> =
            booking.seats.iter().map(|seat| seat.section_id).collect();
        let tiers: Vec<Option<Uuid>> = booking
            .seats
            .iter()
            .map(|seat| seat.price_tier_id)
            .collect();
        let prices: Vec<i64> = booking.seats.iter().map(|seat| seat.price_minor).collect();
        let total = booking.subtotal_minor + booking.fees_minor;
        let row = client
            .query_one(
                &prepared(&client, "WITH b AS (
                     INSERT INTO checkout.bookings (id, user_id, event_id, hold_id, state, currency_code,
                         subtotal_minor, fees_minor, total_minor, create_key, event_start_time, expire_time)
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT DO NOTHING
                     RETURNING id
                 ),
                 t AS (
                     INSERT INTO checkout.booking_tickets (booking_id, seat_index, section_id, price_tier_id, price_minor)
                     SELECT b.id, s.seat_index, s.section_id, s.price_tier_id, s.price_minor
                     FROM b, unnest($12::int4[], $13::uuid[], $14::uuid[], $15::int8[])
                         AS s(seat_index, section_id, price_tier_id, price_minor)
                 )
                 SELECT count(*) AS inserted FROM b").await?,
                &[
                    &booking.id,
                    &booking.user_id,
                    &booking.event_id,
                    &booking.hold_id,
                    &booking.currency_code,
                    &booking.subtotal_minor,
                    &booking.fees_minor,
                    &total,
                    &booking.create_key,
                    &booking.event_start_time,
                    &booking.expire_time,
                    &seats,
                    &sections,
                    &tiers,
                    &prices,
                ],
            )
            .await
            .context("inserting a booking")?;
        Ok(row.get::<_, i64>("inserted") == 1)
    }

    pub async fn booking(&self, id: Uuid) -> anyhow::Result<Option<BookingRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(
                    &client,
                    &format!("SELECT {BOOKING_COLUMNS} FROM checkout.bookings b WHERE b.id = $1"),
                )
                .await?,
                &[&id],
            )
            .await
            .context("reading a booking")?;
        row.as_ref().map(booking_from_row).transpose()
    }

    pub async fn booking_by_hold(&self, hold_id: Uuid) -> anyhow::Result<Option<BookingRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(
                    &client,
                    &format!(
                        "SELECT {BOOKING_COLUMNS} FROM checkout.bookings b WHERE b.hold_id = $1"
                    ),
                )
                .await?,
                &[&hold_id],
            )
            .await
            .context("reading a booking by hold")?;
        row.as_ref().map(booking_from_row).transpose()
    }

    pub async fn booking_by_create_key(
        &self,
        user_id: Uuid,
        key: &str,
    ) -> anyhow::Result<Option<BookingRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(&client, &format!("SELECT {BOOKING_COLUMNS} FROM checkout.bookings b WHERE b.user_id = $1 AND b.create_key = $2")).await?,
                &[&user_id, &key],
            )
            .await
            .context("reading a booking by key")?;
        row.as_ref().map(booking_from_row).transpose()
    }

    /// A user's bookings, newest first, after the `(created_at, id)` cursor.
    pub async fn list(
        &self,
        user_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> anyhow::Result<Vec<BookingRecord>> {
        let client = self.client().await?;
        let (after_time, after_id) = match after {
            Some((time, id)) => (Some(time), Some(id)),
            None => (None, None),
        };
        let rows = client
            .query(
                &prepared(
                    &client,
                    &format!(
                        "SELECT {BOOKING_COLUMNS} FROM checkout.bookings b
                     WHERE b.user_id = $1
                       AND ($2::timestamptz IS NULL OR (b.created_at, b.id) < ($2, $3::uuid))
                     ORDER BY b.created_at DESC, b.id DESC
                     LIMIT $4"
                    ),
                )
                .await?,
                &[&user_id, &after_time, &after_id, &limit],
            )
            .await
            .context("listing bookings")?;
        rows.iter().map(booking_from_row).collect()
    }

    /// Moves a pending, unexpired booking of `user_id` to confirming and
    /// records the payment attempt, in one durable statement shared with the
    /// claims arriving at the same time. A key used before claims nothing.
    pub async fn claim(
        &self,
        booking_id: Uuid,
        user_id: Uuid,
        payment_id: Uuid,
        idempotency_key: &str,
        payment_method: &str,
    ) -> anyhow::Result<Claim> {
        self.writer(&self.batches.claims, |store, items| async move {
            store.claim_batch(items).await
        })
        .submit(ClaimItem {
            booking_id,
            user_id,
            payment_id,
            key: idempotency_key.to_owned(),
            method: payment_method.to_owned(),
        })
        .await
    }

    /// Claims a batch in one statement: bookings locked in id order (so two
    /// instances' batches never deadlock on them), attempts inserted where
    /// the key is new (`ON CONFLICT DO NOTHING` covers every unique index,
    /// also between items of one batch), and only those bookings moved.
    async fn claim_batch(&self, items: Vec<ClaimItem>) -> Vec<anyhow::Result<Claim>> {
        together_or_one_at_a_time(&items, "claims", self.claim_together(&items), |item| {
            self.claim_one(
                item.booking_id,
                item.user_id,
                item.payment_id,
                &item.key,
                &item.method,
            )
        })
        .await
    }

    async fn claim_together(
        &self,
        items: &[ClaimItem],
    ) -> anyhow::Result<Vec<anyhow::Result<Claim>>> {
        let bookings: Vec<Uuid> = items.iter().map(|item| item.booking_id).collect();
        let users: Vec<Uuid> = items.iter().map(|item| item.user_id).collect();
        let payments: Vec<Uuid> = items.iter().map(|item| item.payment_id).collect();
        let keys: Vec<&str> = items.iter().map(|item| item.key.as_str()).collect();
        let methods: Vec<&str> = items.iter().map(|item| item.method.as_str()).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                &prepared(&client, &format!(
                    "WITH input AS (
                         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
                             AS i(booking_id, user_id, payment_id, idempotency_key, payment_method)
                     ),
                     candidates AS (
                         SELECT b.id, b.total_minor, b.currency_code, i.user_id, i.payment_id,
                             i.idempotency_key, i.payment_method
                         FROM checkout.bookings b JOIN input i ON i.booking_id = b.id AND i.user_id = b.user_id
                         WHERE b.id = ANY($1::uuid[]) AND b.state = 'pending' AND b.expire_time > now()
                         ORDER BY b.id
                         FOR UPDATE OF b
                     ),
                     p AS (
                         INSERT INTO checkout.payments (id, booking_id, user_id, idempotency_key, payment_method,
                             amount_minor, currency_code, state)
                         SELECT payment_id, id, user_id, idempotency_key, payment_method, total_minor, currency_code,
                             'authorizing'
                         FROM candidates
                         ON CONFLICT DO NOTHING
                         RETURNING id, booking_id
                     ),
                     claimed AS (
                         UPDATE checkout.bookings b SET state = 'confirming', updated_at = now()
                         FROM p WHERE b.id = p.booking_id
                         RETURNING b.*, p.id AS claimed_payment_id
                     )
                     SELECT {BOOKING_COLUMNS}, b.claimed_payment_id FROM claimed b"
                )).await?,
                &[&bookings, &users, &payments, &keys, &methods],
            )
            .await
            .context("claiming a batch of bookings")?;
        let mut claimed = HashMap::with_capacity(rows.len());
        for row in &rows {
            let payment_id: Uuid = row.try_get("claimed_payment_id")?;
            claimed.insert(payment_id, booking_from_row(row)?);
        }
        Ok(items
            .iter()
            .map(|item| {
                Ok(match claimed.remove(&item.payment_id) {
                    Some(booking) => Claim::Claimed(Box::new(booking)),
                    None => Claim::NotClaimed,
                })
            })
            .collect())
    }

    /// [`Self::claim`] for one attempt, in its own statement. A key used
    /// before makes the whole statement fail on the unique index: nothing
    /// changes.
    async fn claim_one(
        &self,
        booking_id: Uuid,
        user_id: Uuid,
        payment_id: Uuid,
        idempotency_key: &str,
        payment_method: &str,
    ) -> anyhow::Result<Claim> {
        let client = self.client().await?;
        let result = client
            .query_opt(
                &prepared(&client, &format!(
                    "WITH claimed AS (
                         UPDATE checkout.bookings SET state = 'confirming', updated_at = now()
                         WHERE id = $1 AND user_id = $2 AND state = 'pending' AND expire_time > now()
                         RETURNING *
                     ),
                     p AS (
                         INSERT INTO checkout.payments (id, booking_id, user_id, idempotency_key, payment_method,
                             amount_minor, currency_code, state)
                         SELECT $3, claimed.id, $2, $4, $5, claimed.total_minor, claimed.currency_code, 'authorizing'
                         FROM claimed
                         RETURNING id
                     )
                     SELECT {BOOKING_COLUMNS} FROM claimed b, p"
                )).await?,
                &[&booking_id, &user_id, &payment_id, &idempotency_key, &payment_method],
            )
            .await;
        match result {
            Ok(Some(row)) => Ok(Claim::Claimed(Box::new(booking_from_row(&row)?))),
            Ok(None) => Ok(Claim::NotClaimed),
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Ok(Claim::NotClaimed)
            }
            Err(error) => Err(error).context("claiming a booking"),
        }
    }

    pub async fn payment_by_key(
        &self,
        user_id: Uuid,
        key: &str,
    ) -> anyhow::Result<Option<PaymentRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(&client, &format!("SELECT {PAYMENT_COLUMNS} FROM checkout.payments p WHERE p.user_id = $1 AND p.idempotency_key = $2")).await?,
                &[&user_id, &key],
            )
            .await
            .context("reading a payment by key")?;
        row.as_ref().map(payment_from_row).transpose()
    }

    pub async fn payment(&self, id: Uuid) -> anyhow::Result<Option<PaymentRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(
                    &client,
                    &format!("SELECT {PAYMENT_COLUMNS} FROM checkout.payments p WHERE p.id = $1"),
                )
                .await?,
                &[&id],
            )
            .await
            .context("reading a payment")?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// Payment captured and booking confirmed, in one statement. False when
    /// someone (a retry, the reconciler) got there first.
    ///
    /// It commits asynchronously (`synchronous_commit = off` for this
    /// transaction only): the money has moved by now, and if a database crash
    /// loses this commit the rows are back to "authorizing / confirming",
    /// exactly what a process crash after the capture leaves
    /// (`FailPoint::AfterCapture`). The reconciler repairs that case: the
    /// provider says captured, so it marks the booking confirmed, with the
    /// same payment id and so the same ticket codes. Any later synchronous
    /// commit flushes this one too.
    ///
    /// Finishes arriving together share one statement.
    pub async fn finish_confirm(
        &self,
        payment_id: Uuid,
        provider_ref: &str,
    ) -> anyhow::Result<bool> {
        self.writer(&self.batches.finishes, |store, items| async move {
            store.finish_batch(items).await
        })
        .submit(FinishItem {
            payment_id,
            provider_ref: provider_ref.to_owned(),
        })
        .await
    }

    async fn finish_batch(&self, items: Vec<FinishItem>) -> Vec<anyhow::Result<bool>> {
        together_or_one_at_a_time(&items, "finishes", self.finish_together(&items), |item| {
            self.finish_one(item.payment_id, &item.provider_ref)
        })
        .await
    }

    /// Finishes a batch in one statement. Nothing else updates several
    /// payments at once (webhooks only append), so it cannot deadlock.
    async fn finish_together(
        &self,
        items: &[FinishItem],
    ) -> anyhow::Result<Vec<anyhow::Result<bool>>> {
        let payments: Vec<Uuid> = items.iter().map(|item| item.payment_id).collect();
        let references: Vec<&str> = items
            .iter()
            .map(|item| item.provider_ref.as_str())
            .collect();
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(&client, "WITH input AS (
                     SELECT * FROM unnest($1::uuid[], $2::text[]) AS i(payment_id, provider_ref)
                 ),
                 p AS (
                     UPDATE checkout.payments p SET state = 'captured', provider_ref = i.provider_ref, updated_at = now()
                     FROM input i
                     -- The ANY lets the primary key find the rows however
                     -- many the planner guesses the batch holds.
                     WHERE p.id = ANY($1::uuid[]) AND i.payment_id = p.id AND p.state IN ('authorizing', 'authorized')
                     RETURNING p.id, p.booking_id
                 ),
                 b AS (
                     UPDATE checkout.bookings b SET state = 'confirmed', payment_id = p.id, confirmed_at = now(),
                         updated_at = now()
                     FROM p WHERE b.id = p.booking_id AND b.state = 'confirming'
                     RETURNING b.payment_id
                 )
                 SELECT ARRAY(SELECT id FROM p) AS payments, ARRAY(SELECT payment_id FROM b) AS bookings,
                     set_config('synchronous_commit', 'off', true) AS asynchronous_commit").await?,
                &[&payments, &references],
            )
            .await
            .context("finishing a batch of confirmations")?;
        let captured: std::collections::HashSet<Uuid> = row
            .try_get::<_, Vec<Uuid>>("payments")?
            .into_iter()
            .collect();
        let confirmed: std::collections::HashSet<Uuid> = row
            .try_get::<_, Vec<Uuid>>("bookings")?
            .into_iter()
            .collect();
        Ok(items
            .iter()
            .map(|item| {
                match (
                    captured.contains(&item.payment_id),
                    confirmed.contains(&item.payment_id),
                ) {
                    (true, true) => Ok(true),
                    (false, _) => Ok(false),
                    (true, false) => Err(anyhow::anyhow!(
                        "payment {} captured without a confirming booking",
                        item.payment_id
                    )),
                }
            })
            .collect())
    }

    /// [`Self::finish_confirm`] for one payment, in its own statement.
    async fn finish_one(&self, payment_id: Uuid, provider_ref: &str) -> anyhow::Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(&client, "WITH p AS (
                     UPDATE checkout.payments SET state = 'captured', provider_ref = $2, updated_at = now()
                     WHERE id = $1 AND state IN ('authorizing', 'authorized')
                     RETURNING id, booking_id
                 ),
                 b AS (
                     UPDATE checkout.bookings b SET state = 'confirmed', payment_id = p.id, confirmed_at = now(),
                         updated_at = now()
                     FROM p WHERE b.id = p.booking_id AND b.state = 'confirming'
                     RETURNING b.id
                 )
                 SELECT (SELECT count(*) FROM p) AS payments, (SELECT count(*) FROM b) AS bookings,
                     set_config('synchronous_commit', 'off', true) AS asynchronous_commit").await?,
                &[&payment_id, &provider_ref],
            )
            .await
            .context("finishing a confirmation")?;
        let payments: i64 = row.get("payments");
        let bookings: i64 = row.get("bookings");
        anyhow::ensure!(
            payments == bookings,
            "payment {payment_id} captured without a confirming booking"
        );
        Ok(payments == 1)
    }

    /// Ends an attempt that took no money (declined, voided, never
    /// authorized) with its stored answer; the booking is payable again, or
    /// expired when its hold ran out or its seats are gone.
    pub async fn fail_attempt(
        &self,
        payment_id: Uuid,
        state: PaymentState,
        provider_ref: Option<&str>,
        booking_expires: bool,
        outcome: &Outcome,
    ) -> anyhow::Result<bool> {
        debug_assert!(matches!(
            state,
            PaymentState::Declined | PaymentState::Voided
        ));
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(&client, "WITH p AS (
                     UPDATE checkout.payments SET state = $2, provider_ref = coalesce($3, provider_ref),
                         outcome_code = $4, outcome_reason = $5, outcome_message = $6, updated_at = now()
                     WHERE id = $1 AND state IN ('authorizing', 'authorized')
                     RETURNING booking_id
                 ),
                 b AS (
                     UPDATE checkout.bookings b
                     SET state = CASE WHEN $7 OR b.expire_time <= now() THEN 'expired' ELSE 'pending' END,
                         failure_reason = CASE WHEN $7 OR b.expire_time <= now() THEN $5 ELSE NULL END,
                         updated_at = now()
                     FROM p WHERE b.id = p.booking_id AND b.state = 'confirming'
                     RETURNING b.id
                 )
                 SELECT (SELECT count(*) FROM p) AS payments").await?,
                &[
                    &payment_id,
                    &state.as_str(),
                    &provider_ref,
                    &outcome.code,
                    &outcome.reason,
                    &outcome.message,
                    &booking_expires,
                ],
            )
            .await
            .context("failing a payment attempt")?;
        Ok(row.get::<_, i64>("payments") == 1)
    }

    /// Attempts left unfinished longer than `older_than` (crashed requests),
    /// with their bookings.
    pub async fn stale_payments(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> anyhow::Result<Vec<(PaymentRecord, BookingRecord)>> {
        let client = self.client().await?;
        let seconds = older_than.as_secs_f64();
        let rows = client
            .query(
                &prepared(
                    &client,
                    &format!(
                        "SELECT {PAYMENT_COLUMNS} FROM checkout.payments p
                     WHERE p.state IN ('authorizing', 'authorized')
                       AND p.updated_at <= now() - $1::float8 * interval '1 second'
                     ORDER BY p.updated_at LIMIT $2"
                    ),
                )
                .await?,
                &[&seconds, &limit],
            )
            .await
            .context("finding unfinished payments")?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let payment = payment_from_row(row)?;
            if let Some(booking) = self.booking(payment.booking_id).await? {
                found.push((payment, booking));
            }
        }
        Ok(found)
    }

    /// Pending bookings whose hold ran out end as expired.
    pub async fn expire_pending(&self) -> anyhow::Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                &prepared(&client, "UPDATE checkout.bookings SET state = 'expired', failure_reason = 'HOLD_EXPIRED', updated_at = now()
                 WHERE state = 'pending' AND expire_time <= now()").await?,
                &[],
            )
            .await
            .context("expiring pending bookings")
    }

    /// A pending booking is cancelled outright (nothing was paid).
    pub async fn cancel_pending(&self, booking_id: Uuid) -> anyhow::Result<bool> {
        let client = self.client().await?;
        let moved = client
            .execute(
                &prepared(&client, "UPDATE checkout.bookings SET state = 'cancelled', cancelled_at = now(), updated_at = now()
                 WHERE id = $1 AND state = 'pending'").await?,
                &[&booking_id],
            )
            .await
            .context("cancelling a pending booking")?;
        Ok(moved == 1)
    }

    /// Records the intent to cancel a confirmed booking and the refund it is
    /// owed; the refund and the release of seats follow.
    pub async fn begin_cancel(&self, booking_id: Uuid, refund_minor: i64) -> anyhow::Result<bool> {
        let client = self.client().await?;
        let moved = client
            .execute(
                &prepared(&client, "UPDATE checkout.bookings SET state = 'cancelling', refunded_minor = $2, updated_at = now()
                 WHERE id = $1 AND state = 'confirmed'").await?,
                &[&booking_id, &refund_minor],
            )
            .await
            .context("starting a cancellation")?;
        Ok(moved == 1)
    }

    /// Booking cancelled and (when money went back) its payment refunded.
    pub async fn finish_cancel(&self, booking_id: Uuid) -> anyhow::Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(&client, "WITH b AS (
                     UPDATE checkout.bookings SET state = 'cancelled', cancelled_at = now(), updated_at = now()
                     WHERE id = $1 AND state = 'cancelling'
                     RETURNING payment_id, refunded_minor
                 ),
                 p AS (
                     UPDATE checkout.payments p SET state = 'refunded', refunded_minor = b.refunded_minor,
                         updated_at = now()
                     FROM b WHERE p.id = b.payment_id AND p.state = 'captured' AND b.refunded_minor > 0
                     RETURNING p.id
                 )
                 SELECT (SELECT count(*) FROM b) AS bookings").await?,
                &[&booking_id],
            )
            .await
            .context("finishing a cancellation")?;
        Ok(row.get::<_, i64>("bookings") == 1)
    }

    pub async fn stale_cancellations(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> anyhow::Result<Vec<BookingRecord>> {
        let client = self.client().await?;
        let seconds = older_than.as_secs_f64();
        let rows = client
            .query(
                &prepared(&client, &format!(
                    "SELECT {BOOKING_COLUMNS} FROM checkout.bookings b
                     WHERE b.state = 'cancelling' AND b.updated_at <= now() - $1::float8 * interval '1 second'
                     ORDER BY b.updated_at LIMIT $2"
                )).await?,
                &[&seconds, &limit],
            )
            .await
            .context("finding unfinished cancellations")?;
        rows.iter().map(booking_from_row).collect()
    }

    /// Records provider events, each once (by its id), in one insert-only
    /// statement; a payment's provider state is its highest-ranked event
    /// (view `checkout.payment_provider_states`), so a late or repeated
    /// delivery changes nothing. Answers, per event in order, whether it was
    /// new (the first of two copies in one batch is).
    ///
    /// Commits asynchronously: webhooks are advisory (the reconciler asks
    /// the provider itself), and a record lost to a database crash only
    /// means the provider's retry, or nothing, fills it in.
    pub async fn record_webhooks(&self, events: &[WebhookRecord]) -> anyhow::Result<Vec<bool>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let payments: Vec<Option<Uuid>> = events.iter().map(|e| e.payment_id).collect();
        let references: Vec<&str> = events.iter().map(|e| e.provider_ref.as_str()).collect();
        let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
        let ranks: Vec<i16> = events.iter().map(|e| e.rank).collect();
        let client = self.client().await?;
        let row = client
            .query_one(
                &prepared(
                    &client,
                    "WITH e AS (
                         INSERT INTO checkout.webhook_events (event_id, kind, payment_id, provider_ref, status, rank)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::int2[])
                         ON CONFLICT (event_id) DO NOTHING
                         RETURNING event_id
                     )
                     SELECT ARRAY(SELECT event_id FROM e) AS new_events,
                         set_config('synchronous_commit', 'off', true) AS asynchronous_commit",
                )
                .await?,
                &[&ids, &kinds, &payments, &references, &statuses, &ranks],
            )
            .await
            .context("recording webhooks")?;
        let mut new: std::collections::HashSet<String> = row
            .get::<_, Vec<String>>("new_events")
            .into_iter()
            .collect();
        // `remove` makes only the first copy of an id in the batch count as new.
        Ok(events.iter().map(|e| new.remove(&e.event_id)).collect())
    }
}

/// One provider event as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    pub event_id: String,
    pub kind: String,
    pub payment_id: Option<Uuid>,
    pub provider_ref: String,
    pub status: String,
    /// [`crate::payment::ProviderStatus::rank`]: a lower one arrived late.
    pub rank: i16,
}
