//! Bookings and payments in PostgreSQL. Each state change is one statement
//! that names the state it expects (`... WHERE state = 'confirming'`), so
//! a request, a retry and the reconciler racing each other can never move a
//! row twice or backwards; the schema's triggers refuse any other edge.
//! The confirm path writes once: a paid attempt is recorded at its end
//! (payment captured plus booking confirmed, committed synchronously and
//! shared with the confirmations finishing at the same time, see
//! [`CheckoutStore::record_paid`]); before that it only reads. Every
//! statement is prepared once per connection, so each costs one round trip.
//!
//! Every change a consumer may care about (a booking confirmed, cancelled
//! or expired, a refund, a declined payment) appends its
//! `boxoffice.events.v1` event to `checkout.event_outbox` in the same
//! transaction as the statement that makes it ([`CheckoutStore::publishing`]),
//! so a booking answered `CONFIRMED` always has its `BookingConfirmed`.
//! Every function answers a [`DbError`], which tells a database that is
//! down (the caller is told `UNAVAILABLE`) from one that refused a
//! statement (a bug, `INTERNAL`).

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::recent::RecentBookings;
use super::records::{BookingRecord, PaymentRecord};
use crate::domain::{BookingState, PaymentState, PricedSeat, SeatLabel};
use boxoffice_contracts::events::v1 as events;
use boxoffice_events::{NewEvent, Outbox, Payload};
use boxoffice_runtime::batch::{Batcher, together_or_one_at_a_time};
use boxoffice_runtime::postgres::{DbContext as _, DbError, DbResult, PipelinedTransaction};
use tokio_postgres::types::ToSql;

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
    /// How each seat reads on the ticket, by seat index (seats the layout
    /// does not name are stored without a name).
    pub labels: std::collections::HashMap<u32, SeatLabel>,
    /// The buyer's loyalty tier and what it takes off the tickets.
    pub loyalty_tier: &'static str,
    pub tier_discount_minor: i64,
}

/// One ConfirmBooking attempt: its payment id is derived from the user and
/// the idempotency key, so a retry after a crash is the same attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    pub user_id: Uuid,
    pub key: String,
    pub method: String,
}

/// What a confirmation starts from.
#[derive(Clone, Debug, Default)]
pub struct ConfirmContext {
    /// The booking, whoever it belongs to.
    pub booking: Option<BookingRecord>,
    /// The payment an earlier attempt with the same key recorded.
    pub recorded_attempt: Option<Uuid>,
}

/// A failed attempt's stored answer.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub code: i32,
    pub reason: String,
    pub message: String,
}

pub(super) const BOOKING_COLUMNS: &str = "b.id, b.user_id, b.event_id, b.hold_id, b.state, b.currency_code, b.subtotal_minor,
    b.fees_minor, b.discount_minor, b.points_spent, b.loyalty_discount_minor, b.loyalty_tier,
    b.tier_discount_minor, b.total_minor, b.refunded_minor, b.event_start_time, b.expire_time, b.payment_id,
    b.failure_reason, b.created_at, b.confirmed_at, b.cancelled_at,
    (SELECT pc.code FROM checkout.promo_codes pc WHERE pc.id = b.promo_code_id) AS promo_code,
    (SELECT coalesce(json_agg(json_build_object('seat_index', t.seat_index, 'section_id', t.section_id,
                'price_tier_id', t.price_tier_id, 'price_minor', t.price_minor,
                'holder_id', t.holder_id, 'code_nonce', t.code_nonce, 'section_name', t.section_name,
                'row_label', t.row_label, 'seat_number', t.seat_number,
                'price_tier_name', t.price_tier_name) ORDER BY t.seat_index), '[]'::json)
     FROM checkout.booking_tickets t WHERE t.booking_id = b.id) AS tickets";

const PAYMENT_COLUMNS: &str =
    "p.id, p.booking_id, p.user_id, p.idempotency_key, p.payment_method, p.amount_minor,
    p.currency_code, p.state, p.provider_ref, p.outcome_code, p.outcome_reason, p.outcome_message";

pub(super) fn booking_from_row(row: &Row) -> DbResult<BookingRecord> {
    let state: String = row.try_get("state")?;
    let tickets: serde_json::Value = row.try_get("tickets")?;
    Ok(BookingRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        event_id: row.try_get("event_id")?,
        hold_id: row.try_get("hold_id")?,
        state: BookingState::parse(&state)
            .ok_or_else(|| DbError::Internal(anyhow::anyhow!("unknown booking state {state}")))?,
        currency_code: row.try_get("currency_code")?,
        subtotal_minor: row.try_get("subtotal_minor")?,
        fees_minor: row.try_get("fees_minor")?,
        discount_minor: row.try_get("discount_minor")?,
        total_minor: row.try_get("total_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        promo_code: row.try_get("promo_code")?,
        points_spent: row.try_get("points_spent")?,
        loyalty_discount_minor: row.try_get("loyalty_discount_minor")?,
        loyalty_tier: row.try_get("loyalty_tier")?,
        tier_discount_minor: row.try_get("tier_discount_minor")?,
        event_start_time: row.try_get("event_start_time")?,
        expire_time: row.try_get("expire_time")?,
        payment_id: row.try_get("payment_id")?,
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        tickets: serde_json::from_value(tickets).map_err(|error| {
            DbError::Internal(anyhow::Error::new(error).context("reading booking tickets"))
        })?,
    })
}

fn payment_from_row(row: &Row) -> DbResult<PaymentRecord> {
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
            .ok_or_else(|| DbError::Internal(anyhow::anyhow!("unknown payment state {state}")))?,
        provider_ref: row.try_get("provider_ref")?,
        outcome_code: row.try_get("outcome_code")?,
        outcome_reason: row.try_get("outcome_reason")?,
        outcome_message: row.try_get("outcome_message")?,
    })
}

/// Prepares `sql` once per connection (deadpool keeps each connection's
/// statement cache), so every later run is one round trip, not two.
pub(super) async fn prepared(client: &deadpool_postgres::Client, sql: &str) -> DbResult<Statement> {
    client
        .prepare_cached(sql)
        .await
        .db_context("preparing a statement")
}

/// One paid attempt, as queued for a batch.
struct PaidItem {
    attempt: Attempt,
    provider_ref: String,
    /// The amount authorized and captured; the booking is confirmed only
    /// if that is still its total (a promo code or points applied
    /// meanwhile change it).
    amount_minor: i64,
    /// Who asked for it (for the audit log; the batch runs elsewhere).
    origin: crate::audit::Origin,
}

/// The batch writers, started on first use (each holds an unbatched copy
/// of the store, so it ends once every handle to this one is gone).
#[derive(Default)]
struct Batches {
    contexts: OnceLock<Batcher<Attempt, ConfirmContext>>,
    paid: OnceLock<Batcher<PaidItem, bool>>,
}

#[derive(Clone)]
pub struct CheckoutStore {
    pool: Pool,
    batches: Arc<Batches>,
    recent: Arc<RecentBookings>,
    outbox: Outbox,
}

/// The aggregate checkout's events are about.
const BOOKING: &str = "booking";

/// Why a booking ended without being used, as `BookingCancelled.reason`.
pub(crate) mod cancel_reason {
    /// The buyer cancelled it.
    pub(crate) const USER: &str = "user";
    /// Nothing paid for it before its hold ran out, or its seats were gone.
    pub(crate) const EXPIRED: &str = "expired";
}

fn money(currency_code: String, amount_minor: i64) -> Option<events::Money> {
    Some(events::Money {
        currency_code,
        amount_minor,
    })
}

fn cancelled(row: &Row, reason: &str) -> DbResult<NewEvent> {
    let id: Uuid = row.try_get("id")?;
    Ok(NewEvent::new(
        BOOKING,
        id,
        Payload::BookingCancelled(events::BookingCancelled {
            booking_id: id.to_string(),
            user_id: row.try_get::<_, Uuid>("user_id")?.to_string(),
            event_id: row.try_get::<_, Uuid>("event_id")?.to_string(),
            reason: reason.to_owned(),
        }),
    ))
}

fn confirmed(row: &Row) -> DbResult<NewEvent> {
    let id: Uuid = row.try_get("id")?;
    let seats: Vec<i32> = row.try_get("seats")?;
    Ok(NewEvent::new(
        BOOKING,
        id,
        Payload::BookingConfirmed(events::BookingConfirmed {
            booking_id: id.to_string(),
            user_id: row.try_get::<_, Uuid>("user_id")?.to_string(),
            event_id: row.try_get::<_, Uuid>("event_id")?.to_string(),
            seat_indexes: seats.into_iter().map(|seat| seat as u32).collect(),
            total: money(row.try_get("currency_code")?, row.try_get("total_minor")?),
            payment_id: row.try_get::<_, Uuid>("payment_id")?.to_string(),
            fees: money(row.try_get("currency_code")?, row.try_get("fees_minor")?),
        }),
    ))
}

fn payment_failed(row: &Row) -> DbResult<NewEvent> {
    let booking: Uuid = row.try_get("booking_id")?;
    Ok(NewEvent::new(
        BOOKING,
        booking,
        Payload::PaymentFailed(events::PaymentFailed {
            booking_id: booking.to_string(),
            payment_id: row.try_get::<_, Uuid>("payment_id")?.to_string(),
            reason: row
                .try_get::<_, Option<String>>("reason")?
                .unwrap_or_default(),
        }),
    ))
}

/// What an attempt that took no money publishes: `PaymentFailed` when the
/// provider declined it, and `BookingCancelled` when its booking expired
/// with it (rows: payment_id, booking_id, payment_state, reason and the
/// expired booking's id, user_id, event_id, null when it did not).
fn attempt_ended(rows: &[Row]) -> DbResult<Vec<NewEvent>> {
    let mut events = Vec::new();
    for row in rows {
        if row.try_get::<_, &str>("payment_state")? == PaymentState::Declined.as_str() {
            events.push(payment_failed(row)?);
        }
        if row.try_get::<_, Option<Uuid>>("id")?.is_some() {
            events.push(cancelled(row, cancel_reason::EXPIRED)?);
        }
    }
    Ok(events)
}

/// The voids an ended attempt's rows stand for (when `voided`: the call
/// followed checkout's own void of the authorization).
fn voids_of(rows: &[Row], voided: bool) -> DbResult<Vec<boxoffice_audit::PaymentRecord>> {
    if !voided {
        return Ok(Vec::new());
    }
    let mut records = Vec::new();
    for row in rows {
        records.extend(crate::audit::voided_authorization(
            row.try_get("booking_id")?,
            row.try_get("payment_amount")?,
            row.try_get::<_, &str>("payment_currency")?,
        ));
    }
    Ok(records)
}

fn refund_issued(row: &Row) -> DbResult<NewEvent> {
    let id: Uuid = row.try_get("id")?;
    Ok(NewEvent::new(
        BOOKING,
        id,
        Payload::RefundIssued(events::RefundIssued {
            booking_id: id.to_string(),
            payment_id: row
                .try_get::<_, Option<Uuid>>("payment_id")?
                .map(|id| id.to_string())
                .unwrap_or_default(),
            amount: money(
                row.try_get("currency_code")?,
                row.try_get("refunded_minor")?,
            ),
        }),
    ))
}

/// The seats of booking `b` in a statement's result, as `BookingConfirmed`
/// wants them (a macro, for `concat!`).
macro_rules! seats_of_b {
    () => {
        "ARRAY(SELECT t.seat_index FROM checkout.booking_tickets t WHERE t.booking_id = b.id
             ORDER BY t.seat_index) AS seats"
    };
}

impl CheckoutStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            batches: Arc::default(),
            recent: Arc::default(),
            outbox: Outbox::new(super::SCHEMA),
        }
    }

    /// Runs one state-changing statement and appends the events `publish`
    /// makes of its rows, in one transaction: the events exist if and only
    /// if the change committed. Answers the statement's rows.
    async fn publishing(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
        publish: impl FnOnce(&[Row]) -> DbResult<Vec<NewEvent>>,
    ) -> DbResult<Vec<Row>> {
        self.publishing_audited(sql, params, context, publish, |_| Ok(Vec::new()))
            .await
    }

    /// As [`Self::publishing`], with payment operations that publish no
    /// event (voids) recorded in the audit log from the statement's rows,
    /// in the same transaction.
    async fn publishing_audited(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        context: &'static str,
        publish: impl FnOnce(&[Row]) -> DbResult<Vec<NewEvent>>,
        audit: impl FnOnce(&[Row]) -> DbResult<Vec<boxoffice_audit::PaymentRecord>>,
    ) -> DbResult<Vec<Row>> {
        let client = self.client().await?;
        let statement = prepared(&client, sql).await?;
        // Two round trips in all: BEGIN travels with the statement, and
        // COMMIT with the outbox append and the audit records (each a
        // prepared statement, sent at once; see `PipelinedTransaction`).
        let transaction = PipelinedTransaction::new(client);
        let rows = transaction
            .begin_with(boxoffice_runtime::postgres::GENERIC_PLANS, async {
                transaction.client().query(&statement, params).await
            })
            .await
            .db_context(context)?;
        let events = publish(&rows)?;
        let mut payments = crate::audit::records(&events);
        payments.extend(audit(&rows)?);
        // The outbox's append lock, which serializes the producer's
        // transactions until they commit, is held for the append and the
        // commit only.
        let (append, payments) = futures::try_join!(
            async {
                self.outbox
                    .prepare_append(transaction.client(), events)
                    .await
                    .map_err(|error| DbError::from(error).context(context))
            },
            boxoffice_audit::prepare_payments(transaction.client(), &payments),
        )?;
        transaction
            .commit_with(async {
                futures::try_join!(
                    async {
                        append
                            .send(transaction.client())
                            .await
                            .map_err(|error| DbError::from(error).context(context))
                    },
                    payments.send(transaction.client()),
                )
            })
            .await?;
        Ok(rows)
    }

    /// This store without batch writers: what the writers themselves use
    /// (sharing what this process remembers of recent bookings).
    fn unbatched(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            batches: Arc::default(),
            recent: self.recent.clone(),
            outbox: self.outbox.clone(),
        }
    }

    /// A booking this process created, while as far as it knows it is
    /// still pending and its hold runs: where a confirmation may start
    /// without reading it (see [`RecentBookings`]).
    pub fn recent_pending(&self, id: Uuid, user: Uuid) -> Option<BookingRecord> {
        self.recent.pending(id, user, Utc::now())
    }

    /// Remembers a booking this process has just created.
    /// Forgets a booking this process remembered (its price changed).
    pub(crate) fn forget_recent(&self, id: Uuid) {
        self.recent.forget(id);
    }

    pub fn remember_created(&self, booking: &BookingRecord) {
        self.recent.remember(booking);
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

    pub(super) async fn client(&self) -> DbResult<deadpool_postgres::Client> {
        self.pool
            .get()
            .await
            .db_context("getting a database connection")
    }

    /// Inserts a pending booking with its tickets in one statement; answers
    /// false when the hold (or the create key) already has a booking.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.insert_booking", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn insert_booking(&self, booking: &NewBooking) -> DbResult<bool> {
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
        let label = |seat: &PricedSeat, part: fn(&SeatLabel) -> &String| {
            booking
                .labels
                .get(&seat.seat_index)
                .map(part)
                .filter(|text| !text.is_empty())
                .cloned()
        };
        let section_names: Vec<Option<String>> = booking
            .seats
            .iter()
            .map(|seat| label(seat, |l| &l.section_name))
            .collect();
        let row_labels: Vec<Option<String>> = booking
            .seats
            .iter()
            .map(|seat| label(seat, |l| &l.row_label))
            .collect();
        let seat_numbers: Vec<Option<String>> = booking
            .seats
            .iter()
            .map(|seat| label(seat, |l| &l.seat_number))
            .collect();
        let tier_names: Vec<Option<String>> = booking
            .seats
            .iter()
            .map(|seat| label(seat, |l| &l.price_tier_name))
            .collect();
        let total = booking.subtotal_minor + booking.fees_minor - booking.tier_discount_minor;
        let row = client
            .query_one(
                &prepared(&client, "WITH b AS (
                     INSERT INTO checkout.bookings (id, user_id, event_id, hold_id, state, currency_code,
                         subtotal_minor, fees_minor, total_minor, create_key, event_start_time, expire_time,
                         loyalty_tier, tier_discount_minor)
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $20, $21)
                     ON CONFLICT DO NOTHING
                     RETURNING id
                 ),
                 t AS (
                     INSERT INTO checkout.booking_tickets (booking_id, seat_index, section_id, price_tier_id, price_minor,
                         section_name, row_label, seat_number, price_tier_name)
                     SELECT b.id, s.seat_index, s.section_id, s.price_tier_id, s.price_minor,
                         s.section_name, s.row_label, s.seat_number, s.price_tier_name
                     FROM b, unnest($12::int4[], $13::uuid[], $14::uuid[], $15::int8[], $16::text[], $17::text[],
                                    $18::text[], $19::text[])
                         AS s(seat_index, section_id, price_tier_id, price_minor, section_name, row_label,
                              seat_number, price_tier_name)
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
                    &section_names,
                    &row_labels,
                    &seat_numbers,
                    &tier_names,
                    &booking.loyalty_tier,
                    &booking.tier_discount_minor,
                ],
            )
            .await
            .db_context("inserting a booking")?;
        Ok(row.get::<_, i64>("inserted") == 1)
    }

    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.booking", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn booking(&self, id: Uuid) -> DbResult<Option<BookingRecord>> {
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
            .db_context("reading a booking")?;
        row.as_ref().map(booking_from_row).transpose()
    }

    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.booking_by_hold", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn booking_by_hold(&self, hold_id: Uuid) -> DbResult<Option<BookingRecord>> {
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
            .db_context("reading a booking by hold")?;
        row.as_ref().map(booking_from_row).transpose()
    }

    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.booking_by_create_key", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn booking_by_create_key(
        &self,
        user_id: Uuid,
        key: &str,
    ) -> DbResult<Option<BookingRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(&client, &format!("SELECT {BOOKING_COLUMNS} FROM checkout.bookings b WHERE b.user_id = $1 AND b.create_key = $2")).await?,
                &[&user_id, &key],
            )
            .await
            .db_context("reading a booking by key")?;
        row.as_ref().map(booking_from_row).transpose()
    }

    /// A user's bookings, newest first, after the `(created_at, id)` cursor.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.list", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn list(
        &self,
        user_id: Uuid,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> DbResult<Vec<BookingRecord>> {
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
            .db_context("listing bookings")?;
        rows.iter().map(booking_from_row).collect()
    }

    /// What a confirmation starts from: its booking, and whether its key
    /// was used before (the attempt's id, derived from user and key, or for
    /// attempts an earlier version recorded, the key itself). The reads of
    /// confirmations arriving together share one statement.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.confirm_context", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn confirm_context(&self, attempt: &Attempt) -> DbResult<ConfirmContext> {
        self.writer(&self.batches.contexts, |store, items| async move {
            store.contexts(items).await
        })
        .submit(attempt.clone())
        .await
        .map_err(DbError::from)
    }

    async fn contexts(&self, items: Vec<Attempt>) -> Vec<anyhow::Result<ConfirmContext>> {
        match self.contexts_together(&items).await {
            Ok(contexts) => contexts.into_iter().map(Ok).collect(),
            // Every caller gets its own copy, of the same kind (an outage
            // stays an outage).
            Err(error) => items
                .iter()
                .map(|_| Err(error.duplicate().into()))
                .collect(),
        }
    }

    async fn contexts_together(&self, items: &[Attempt]) -> DbResult<Vec<ConfirmContext>> {
        let bookings: Vec<Uuid> = items.iter().map(|i| i.booking_id).collect();
        let payments: Vec<Uuid> = items.iter().map(|i| i.payment_id).collect();
        let users: Vec<Uuid> = items.iter().map(|i| i.user_id).collect();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                &prepared(&client, &format!(
                    "SELECT i.n, b.id IS NOT NULL AS found, {BOOKING_COLUMNS},
                         (SELECT p.id FROM checkout.payments p
                          WHERE p.id = i.payment_id OR (p.user_id = i.user_id AND p.idempotency_key = i.idempotency_key)
                          LIMIT 1) AS attempt_id
                     -- The arrays go through sub-selects so that no plan
                     -- sees their length: every plan then costs the same,
                     -- and the cached generic one is used instead of
                     -- planning each batch again (which cost as much as
                     -- running it).
                     FROM unnest((SELECT $1::uuid[]), (SELECT $2::uuid[]), (SELECT $3::uuid[]),
                                 (SELECT $4::text[])) WITH ORDINALITY
                         AS i(booking_id, payment_id, user_id, idempotency_key, n)
                     -- The ANY lets the primary key find the rows however
                     -- many the planner guesses the batch holds.
                     LEFT JOIN checkout.bookings b
                         ON b.id = i.booking_id AND b.id = ANY((SELECT $1::uuid[])::uuid[])"
                )).await?,
                &[&bookings, &payments, &users, &keys],
            )
            .await
            .db_context("reading what confirmations start from")?;
        let mut contexts: Vec<ConfirmContext> = vec![ConfirmContext::default(); items.len()];
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            let Some(context) = usize::try_from(n - 1)
                .ok()
                .and_then(|i| contexts.get_mut(i))
            else {
                return Err(DbError::Internal(anyhow::anyhow!(
                    "a confirmation read answered an item it was not asked"
                )));
            };
            context.recorded_attempt = row.try_get("attempt_id")?;
            if row.try_get::<_, bool>("found")? {
                context.booking = Some(booking_from_row(row)?);
            }
        }
        Ok(contexts)
    }

    /// Records a paid attempt: the payment, captured, and its booking
    /// `pending -> confirmed`, in one statement shared with the other
    /// confirmations finishing at the same time (see [`super::batch`]).
    /// False when the booking was no longer pending (a retry or the
    /// reconciler recorded this attempt first, or the booking ended) or
    /// its total is no longer `amount_minor`, what the attempt paid.
    ///
    /// It commits synchronously: the caller is answered `CONFIRMED` from
    /// this result, and an answer must never outlive a database crash
    /// (acknowledged means durable). Group commit keeps it cheap: one WAL
    /// flush covers every confirmation in the batch.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.record_paid", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn record_paid(
        &self,
        attempt: &Attempt,
        provider_ref: &str,
        amount_minor: i64,
    ) -> DbResult<bool> {
        self.recent.forget(attempt.booking_id);
        self.writer(&self.batches.paid, |store, items| async move {
            store.paid_batch(items).await
        })
        .submit(PaidItem {
            attempt: attempt.clone(),
            provider_ref: provider_ref.to_owned(),
            amount_minor,
            origin: crate::audit::Origin::current(),
        })
        .await
        .map_err(DbError::from)
    }

    async fn paid_batch(&self, items: Vec<PaidItem>) -> Vec<anyhow::Result<bool>> {
        let origins = items
            .iter()
            .map(|item| (item.attempt.booking_id.to_string(), item.origin.clone()))
            .collect();
        crate::audit::with_batch(origins, self.paid_batch_of(items)).await
    }

    async fn paid_batch_of(&self, items: Vec<PaidItem>) -> Vec<anyhow::Result<bool>> {
        together_or_one_at_a_time(
            &items,
            "paid attempts",
            async {
                let confirmed = self.paid_together(&items).await?;
                Ok(confirmed.into_iter().map(Ok).collect())
            },
            |item| async { Ok(self.paid_together_one(item).await?) },
        )
        .await
    }

    async fn paid_together_one(&self, item: &PaidItem) -> DbResult<bool> {
        self.paid_together(std::slice::from_ref(item))
            .await?
            .pop()
            .ok_or_else(|| DbError::Internal(anyhow::anyhow!("a paid attempt got no answer")))
    }

    /// Bookings are locked in id order (two instances' batches never
    /// deadlock on them); only a pending booking of the attempt's user is
    /// confirmed, and only by a payment not recorded before
    /// (`ON CONFLICT DO NOTHING` covers every unique index, so a payment id,
    /// a user's key or a second live payment for the booking each refuse
    /// only their own item).
    async fn paid_together(&self, items: &[PaidItem]) -> DbResult<Vec<bool>> {
        let payments: Vec<Uuid> = items.iter().map(|i| i.attempt.payment_id).collect();
        let bookings: Vec<Uuid> = items.iter().map(|i| i.attempt.booking_id).collect();
        let users: Vec<Uuid> = items.iter().map(|i| i.attempt.user_id).collect();
        let keys: Vec<&str> = items.iter().map(|i| i.attempt.key.as_str()).collect();
        let methods: Vec<&str> = items.iter().map(|i| i.attempt.method.as_str()).collect();
        let references: Vec<&str> = items.iter().map(|i| i.provider_ref.as_str()).collect();
        let amounts: Vec<i64> = items.iter().map(|i| i.amount_minor).collect();
        let rows = self
            .publishing(
                concat!("WITH input AS (
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                                          $7::int8[])
                         AS i(payment_id, booking_id, user_id, idempotency_key, payment_method, provider_ref,
                              amount_minor)
                 ),
                 candidates AS (
                     SELECT b.id, b.total_minor, b.currency_code, i.payment_id, i.user_id, i.idempotency_key,
                         i.payment_method, i.provider_ref
                     FROM checkout.bookings b JOIN input i ON i.booking_id = b.id AND i.user_id = b.user_id
                     -- The ANY lets the primary key find the rows however
                     -- many the planner guesses the batch holds.
                     WHERE b.id = ANY($2::uuid[]) AND b.state = 'pending'
                       AND i.amount_minor = b.total_minor
                     ORDER BY b.id
                     FOR UPDATE OF b
                 ),
                 p AS (
                     INSERT INTO checkout.payments (id, booking_id, user_id, idempotency_key, payment_method,
                         amount_minor, currency_code, state, provider_ref)
                     SELECT payment_id, id, user_id, idempotency_key, payment_method, total_minor, currency_code,
                         'captured', provider_ref
                     FROM candidates
                     ON CONFLICT DO NOTHING
                     RETURNING id, booking_id
                 ),
                 b AS (
                     UPDATE checkout.bookings b SET state = 'confirmed', payment_id = p.id, confirmed_at = now(),
                         updated_at = now()
                     FROM p WHERE b.id = p.booking_id
                     RETURNING b.id, b.user_id, b.event_id, b.payment_id, b.total_minor, b.fees_minor, b.currency_code
                 )
                 SELECT b.*, ", seats_of_b!(), " FROM b ORDER BY b.id"),
                &[&payments, &bookings, &users, &keys, &methods, &references, &amounts],
                "recording paid attempts",
                |rows| rows.iter().map(confirmed).collect(),
            )
            .await?;
        let confirmed = rows
            .iter()
            .map(|row| row.try_get::<_, Uuid>("payment_id"))
            .collect::<Result<std::collections::HashSet<Uuid>, _>>()?;
        Ok(items
            .iter()
            .map(|item| confirmed.contains(&item.attempt.payment_id))
            .collect())
    }

    /// Records an attempt that took no money (declined, or voided because
    /// the seats could not be sold) with the answer its retries get; the
    /// booking stays payable, or expires when `booking_expires` (its seats
    /// are gone). An expired booking owes the release of whatever inventory
    /// sold to it all the same: a request of the same attempt that was
    /// under way (say, in a process paused across the hold's expiry) may
    /// still sell its seats after inventory refused this one. False when
    /// the attempt was recorded before.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.record_unpaid", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn record_unpaid(
        &self,
        attempt: &Attempt,
        state: PaymentState,
        provider_ref: Option<&str>,
        booking_expires: bool,
        outcome: &Outcome,
    ) -> DbResult<bool> {
        debug_assert!(matches!(
            state,
            PaymentState::Declined | PaymentState::Voided
        ));
        if booking_expires {
            self.recent.forget(attempt.booking_id);
        }
        let rows = self
            .publishing_audited(
                "WITH p AS (
                     INSERT INTO checkout.payments (id, booking_id, user_id, idempotency_key, payment_method,
                         amount_minor, currency_code, state, provider_ref, outcome_code, outcome_reason,
                         outcome_message)
                     SELECT $1, b.id, b.user_id, $4, $5, b.total_minor, b.currency_code, $6, $7, $8, $9, $10
                     FROM checkout.bookings b WHERE b.id = $2 AND b.user_id = $3
                     ON CONFLICT DO NOTHING
                     RETURNING id, booking_id, state, outcome_reason, amount_minor, currency_code
                 ),
                 b AS (
                     UPDATE checkout.bookings b SET state = 'expired', failure_reason = $9,
                         seats_release_owed = true, updated_at = now()
                     FROM p WHERE b.id = p.booking_id AND $11 AND b.state = 'pending'
                     RETURNING b.id, b.user_id, b.event_id
                 )
                 SELECT p.id AS payment_id, p.booking_id, p.state AS payment_state, p.outcome_reason AS reason,
                     p.amount_minor AS payment_amount, p.currency_code AS payment_currency,
                     b.id, b.user_id, b.event_id
                 FROM p LEFT JOIN b ON b.id = p.booking_id",
                &[
                    &attempt.payment_id,
                    &attempt.booking_id,
                    &attempt.user_id,
                    &attempt.key,
                    &attempt.method,
                    &state.as_str(),
                    &provider_ref,
                    &outcome.code,
                    &outcome.reason,
                    &outcome.message,
                    &booking_expires,
                ],
                "recording an unpaid attempt",
                attempt_ended,
                // A voided attempt here always follows the void of its
                // authorization (the seats could not be sold).
                |rows| voids_of(rows, state == PaymentState::Voided),
            )
            .await?;
        Ok(rows.len() == 1)
    }

    /// Payment captured and booking confirmed for an attempt claimed by an
    /// earlier version (booking `confirming`, payment row written before the
    /// provider was called). Only the reconciler still finishes those.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.finish_claimed", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn finish_claimed(&self, payment_id: Uuid, provider_ref: &str) -> DbResult<bool> {
        let rows = self
            .publishing(
                concat!(
                    "WITH p AS (
                         UPDATE checkout.payments SET state = 'captured', provider_ref = $2, updated_at = now()
                         WHERE id = $1 AND state IN ('authorizing', 'authorized')
                         RETURNING id, booking_id
                     ),
                     b AS (
                         UPDATE checkout.bookings b SET state = 'confirmed', payment_id = p.id, confirmed_at = now(),
                             updated_at = now()
                         FROM p WHERE b.id = p.booking_id AND b.state = 'confirming'
                         RETURNING b.id, b.user_id, b.event_id, b.payment_id, b.total_minor, b.fees_minor, b.currency_code
                     )
                     SELECT (SELECT count(*) FROM p) AS payments, b.*, ",
                    seats_of_b!(),
                    " FROM (SELECT 1) AS one LEFT JOIN b ON true"
                ),
                &[&payment_id, &provider_ref],
                "finishing a claimed confirmation",
                |rows| {
                    rows.iter()
                        .filter(|row| matches!(row.try_get::<_, Option<Uuid>>("id"), Ok(Some(_))))
                        .map(confirmed)
                        .collect()
                },
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            DbError::Internal(anyhow::anyhow!("a claimed confirmation got no answer"))
        })?;
        let payments: i64 = row.try_get("payments")?;
        let bookings = i64::from(row.try_get::<_, Option<Uuid>>("id")?.is_some());
        if payments != bookings {
            return Err(DbError::Internal(anyhow::anyhow!(
                "payment {payment_id} captured without a confirming booking"
            )));
        }
        Ok(payments == 1)
    }

    pub async fn payment(&self, id: Uuid) -> DbResult<Option<PaymentRecord>> {
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
            .db_context("reading a payment")?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// Ends an attempt that took no money (declined, voided, never
    /// authorized) with its stored answer; the booking is payable again, or
    /// expired when its hold ran out or its seats are gone.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.fail_attempt", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    /// `voided`: this call follows checkout's own void of the attempt's
    /// authorization, which the audit log records with it.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail_attempt(
        &self,
        payment_id: Uuid,
        state: PaymentState,
        provider_ref: Option<&str>,
        booking_expires: bool,
        voided: bool,
        outcome: &Outcome,
    ) -> DbResult<bool> {
        debug_assert!(matches!(
            state,
            PaymentState::Declined | PaymentState::Voided
        ));
        let rows = self
            .publishing_audited(
                "WITH p AS (
                     UPDATE checkout.payments SET state = $2, provider_ref = coalesce($3, provider_ref),
                         outcome_code = $4, outcome_reason = $5, outcome_message = $6, updated_at = now()
                     WHERE id = $1 AND state IN ('authorizing', 'authorized')
                     RETURNING id, booking_id, state, outcome_reason, amount_minor, currency_code
                 ),
                 b AS (
                     UPDATE checkout.bookings b
                     SET state = CASE WHEN $7 OR b.expire_time <= now() THEN 'expired' ELSE 'pending' END,
                         failure_reason = CASE WHEN $7 OR b.expire_time <= now() THEN $5 ELSE NULL END,
                         updated_at = now()
                     FROM p WHERE b.id = p.booking_id AND b.state = 'confirming'
                     RETURNING b.id, b.user_id, b.event_id, b.state
                 )
                 SELECT p.id AS payment_id, p.booking_id, p.state AS payment_state, p.outcome_reason AS reason,
                     p.amount_minor AS payment_amount, p.currency_code AS payment_currency,
                     e.id, e.user_id, e.event_id
                 FROM p LEFT JOIN (SELECT * FROM b WHERE b.state = 'expired') e ON e.id = p.booking_id",
                &[
                    &payment_id,
                    &state.as_str(),
                    &provider_ref,
                    &outcome.code,
                    &outcome.reason,
                    &outcome.message,
                    &booking_expires,
                ],
                "failing a payment attempt",
                attempt_ended,
                |rows| voids_of(rows, voided),
            )
            .await?;
        Ok(rows.len() == 1)
    }

    /// Attempts left unfinished longer than `older_than` (crashed requests),
    /// with their bookings.
    pub async fn stale_payments(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> DbResult<Vec<(PaymentRecord, BookingRecord)>> {
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
            .db_context("finding unfinished payments")?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let payment = payment_from_row(row)?;
            if let Some(booking) = self.booking(payment.booking_id).await? {
                found.push((payment, booking));
            }
        }
        Ok(found)
    }

    /// Pending bookings whose hold ran out at least `older_than` ago: no
    /// sale of them can happen any more (inventory refuses commits before
    /// the hold's expiry), so what the sale and the provider say is final.
    pub async fn pending_past_hold(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> DbResult<Vec<BookingRecord>> {
        let client = self.client().await?;
        let seconds = older_than.as_secs_f64();
        let rows = client
            .query(
                &prepared(&client, &format!(
                    "SELECT {BOOKING_COLUMNS} FROM checkout.bookings b
                     WHERE b.state = 'pending' AND b.expire_time <= now() - $1::float8 * interval '1 second'
                     ORDER BY b.updated_at LIMIT $2"
                )).await?,
                &[&seconds, &limit],
            )
            .await
            .db_context("finding pending bookings past their hold")?;
        rows.iter().map(booking_from_row).collect()
    }

    /// A pending booking nothing paid for ends as expired, flagged as owing
    /// the release of whatever seats inventory may have sold to it; the
    /// flag stays until [`Self::seats_released`]. False when it was no
    /// longer pending.
    pub async fn expire_booking(&self, booking_id: Uuid) -> DbResult<bool> {
        self.expire_booking_after_voids(booking_id, &[]).await
    }

    /// As [`Self::expire_booking`], recording in the audit log, in the same
    /// transaction, the voids of authorizations no attempt row knew of
    /// (`voids`: amount and currency of each) that settling it made.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.expire_booking", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn expire_booking_after_voids(
        &self,
        booking_id: Uuid,
        voids: &[(i64, String)],
    ) -> DbResult<bool> {
        self.recent.forget(booking_id);
        let rows = self
            .publishing_audited(
                "UPDATE checkout.bookings SET state = 'expired', failure_reason = 'HOLD_EXPIRED',
                     seats_release_owed = true, updated_at = now()
                 WHERE id = $1 AND state = 'pending'
                 RETURNING id, user_id, event_id",
                &[&booking_id],
                "expiring a pending booking",
                |rows| {
                    rows.iter()
                        .map(|row| cancelled(row, cancel_reason::EXPIRED))
                        .collect()
                },
                |rows| {
                    Ok(if rows.is_empty() {
                        Vec::new()
                    } else {
                        voids
                            .iter()
                            .flat_map(|(amount, currency)| {
                                crate::audit::voided_authorization(booking_id, *amount, currency)
                            })
                            .collect()
                    })
                },
            )
            .await?;
        Ok(rows.len() == 1)
    }

    /// Records voids that no change of checkout's follows (another attempt
    /// sold the booking's seats, so this one took nothing and wrote
    /// nothing): their own transaction, in the audit log alone.
    pub async fn record_voids(&self, booking_id: Uuid, voids: &[(i64, String)]) -> DbResult<()> {
        let records: Vec<_> = voids
            .iter()
            .flat_map(|(amount, currency)| {
                crate::audit::voided_authorization(booking_id, *amount, currency)
            })
            .collect();
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db_context("recording voids")?;
        boxoffice_audit::append_payments(&transaction, &records).await?;
        transaction.commit().await.db_context("recording voids")
    }

    /// Inventory has put an expired booking's seats back on sale.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.seats_released", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn seats_released(&self, booking_id: Uuid) -> DbResult<()> {
        let client = self.client().await?;
        client
            .execute(
                &prepared(
                    &client,
                    "UPDATE checkout.bookings SET seats_release_owed = false WHERE id = $1 AND seats_release_owed",
                )
                .await?,
                &[&booking_id],
            )
            .await
            .db_context("clearing a release owed")?;
        Ok(())
    }

    /// Expired bookings whose seats have not been confirmed released (a
    /// crash or an inventory outage came between the expiry and the
    /// release, or the expiry was a confirmation's whose seats inventory
    /// refused), untouched for `older_than`: longer than any request, so a
    /// sale still under way when the booking expired has landed.
    pub async fn releases_owed(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> DbResult<Vec<BookingRecord>> {
        let client = self.client().await?;
        let seconds = older_than.as_secs_f64();
        let rows = client
            .query(
                &prepared(
                    &client,
                    &format!(
                        "SELECT {BOOKING_COLUMNS} FROM checkout.bookings b
                         WHERE b.seats_release_owed
                           AND b.updated_at <= now() - $1::float8 * interval '1 second'
                         ORDER BY b.updated_at LIMIT $2"
                    ),
                )
                .await?,
                &[&seconds, &limit],
            )
            .await
            .db_context("finding releases owed")?;
        rows.iter().map(booking_from_row).collect()
    }

    /// A pending booking is cancelled outright (nothing was paid).
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.cancel_pending", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn cancel_pending(&self, booking_id: Uuid) -> DbResult<bool> {
        self.recent.forget(booking_id);
        let rows = self
            .publishing(
                "UPDATE checkout.bookings SET state = 'cancelled', cancelled_at = now(), updated_at = now()
                 WHERE id = $1 AND state = 'pending'
                 RETURNING id, user_id, event_id",
                &[&booking_id],
                "cancelling a pending booking",
                |rows| {
                    rows.iter()
                        .map(|row| cancelled(row, cancel_reason::USER))
                        .collect()
                },
            )
            .await?;
        Ok(rows.len() == 1)
    }

    /// Records the intent to cancel a confirmed booking and the refund it is
    /// owed; the refund and the release of seats follow.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.begin_cancel", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn begin_cancel(&self, booking_id: Uuid, refund_minor: i64) -> DbResult<bool> {
        self.recent.forget(booking_id);
        let client = self.client().await?;
        let moved = client
            .execute(
                &prepared(&client, "UPDATE checkout.bookings SET state = 'cancelling', refunded_minor = $2, updated_at = now()
                 WHERE id = $1 AND state = 'confirmed' AND transferred_tickets = 0").await?,
                &[&booking_id, &refund_minor],
            )
            .await
            .db_context("starting a cancellation")?;
        Ok(moved == 1)
    }

    /// Booking cancelled and (when money went back) its payment refunded.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.finish_cancel", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn finish_cancel(&self, booking_id: Uuid) -> DbResult<bool> {
        self.recent.forget(booking_id);
        let rows = self
            .publishing(
                "WITH b AS (
                     UPDATE checkout.bookings SET state = 'cancelled', cancelled_at = now(), updated_at = now()
                     WHERE id = $1 AND state = 'cancelling'
                     RETURNING id, user_id, event_id, payment_id, refunded_minor, currency_code
                 ),
                 p AS (
                     UPDATE checkout.payments p SET state = 'refunded', refunded_minor = b.refunded_minor,
                         updated_at = now()
                     FROM b WHERE p.id = b.payment_id AND p.state = 'captured' AND b.refunded_minor > 0
                     RETURNING p.id
                 )
                 SELECT b.*, (SELECT count(*) FROM p) AS refunds FROM b",
                &[&booking_id],
                "finishing a cancellation",
                |rows| {
                    let mut events = Vec::new();
                    for row in rows {
                        events.push(cancelled(row, cancel_reason::USER)?);
                        if row.try_get::<_, i64>("refunds")? > 0 {
                            events.push(refund_issued(row)?);
                        }
                    }
                    Ok(events)
                },
            )
            .await?;
        Ok(rows.len() == 1)
    }

    pub async fn stale_cancellations(
        &self,
        older_than: std::time::Duration,
        limit: i64,
    ) -> DbResult<Vec<BookingRecord>> {
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
            .db_context("finding unfinished cancellations")?;
        rows.iter().map(booking_from_row).collect()
    }

    /// Records provider events, each once (by its id), in one insert-only
    /// statement; a payment's provider state is its highest-ranked event
    /// (view `checkout.payment_provider_states`), so a late or repeated
    /// delivery changes nothing. Answers, per event in order, whether it was
    /// new (the first of two copies in one batch is).
    ///
    /// Commits synchronously: the provider is answered 2xx from this result
    /// and will not deliver the event again, so the record must be durable
    /// before that answer. Several deliveries share one statement and so
    /// one WAL flush.
    pub async fn record_webhooks(&self, events: &[WebhookRecord]) -> DbResult<Vec<bool>> {
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
                     SELECT ARRAY(SELECT event_id FROM e) AS new_events",
                )
                .await?,
                &[&ids, &kinds, &payments, &references, &statuses, &ranks],
            )
            .await
            .db_context("recording webhooks")?;
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
