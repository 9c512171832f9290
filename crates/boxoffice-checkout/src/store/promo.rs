//! Promo codes and their redemptions in PostgreSQL. Applying a code is one
//! transaction that locks the booking, then the code rows (in id order),
//! reads the usage under that lock and writes the redemption, the code's
//! count and the booking's new total together: however many buyers apply
//! a code at once, its count never passes its limit, and a user's active
//! redemptions never pass theirs. Redemptions come back through the
//! `booking_returns_promo` trigger when a booking expires or is cancelled.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::postgres::{BOOKING_COLUMNS, CheckoutStore, booking_from_row, prepared};
use super::records::BookingRecord;
use crate::domain::BookingState;
use crate::domain::promo::{
    BookingForPromo, DiscountedTicket, GUESS_WINDOW, MAX_FAILED_GUESSES, PromoCode, PromoCodeUsage,
    PromoDiscount, PromoRefusal, PromoUsage,
};
use boxoffice_runtime::postgres::{DbContext as _, DbError, DbResult};

/// What applying or removing a code came to.
#[derive(Debug)]
pub enum PromoChange {
    /// The booking as it now stands.
    Done(Box<BookingRecord>),
    /// Not the caller's booking.
    BookingNotFound,
    /// The booking is not pending (or its hold has run out: `Expired`).
    NotPending(BookingState),
    Expired,
    Refused(PromoRefusal),
}

const CODE_COLUMNS: &str =
    "c.id, c.code, c.event_id, c.price_tier_ids, c.kind, c.percent_off, c.amount_minor,
    c.currency_code, c.valid_from, c.valid_until, c.max_redemptions, c.max_per_user, c.min_tickets,
    c.redeemed, c.returned, c.created_at, c.venue_id";

fn unsigned(row: &Row, column: &str) -> DbResult<u32> {
    let value: i32 = row.try_get(column)?;
    u32::try_from(value)
        .map_err(|_| DbError::Internal(anyhow::anyhow!("negative {column} in a promo code")))
}

fn code_from_row(row: &Row) -> DbResult<PromoCodeUsage> {
    let kind: String = row.try_get("kind")?;
    let currency_code: Option<String> = row.try_get("currency_code")?;
    let amount_minor: i64 = row.try_get("amount_minor")?;
    let percent: i32 = row.try_get("percent_off")?;
    let discount = match kind.as_str() {
        "percent_off" => PromoDiscount::PercentOff(u8::try_from(percent).map_err(|_| {
            DbError::Internal(anyhow::anyhow!("percent_off out of range in a promo code"))
        })?),
        "amount_off" => PromoDiscount::AmountOff {
            currency_code: currency_code.unwrap_or_default(),
            minor: amount_minor,
        },
        "fixed_price" => PromoDiscount::FixedPrice {
            currency_code: currency_code.unwrap_or_default(),
            minor: amount_minor,
        },
        other => {
            return Err(DbError::Internal(anyhow::anyhow!(
                "unknown promo code kind {other}"
            )));
        }
    };
    Ok(PromoCodeUsage {
        code: PromoCode {
            id: row.try_get("id")?,
            code: row.try_get("code")?,
            event_id: row.try_get("event_id")?,
            venue_id: row.try_get("venue_id")?,
            price_tier_ids: row.try_get("price_tier_ids")?,
            discount,
            valid_from: row.try_get("valid_from")?,
            valid_until: row.try_get("valid_until")?,
            max_redemptions: unsigned(row, "max_redemptions")?,
            max_per_user: unsigned(row, "max_per_user")?,
            min_tickets: unsigned(row, "min_tickets")?,
        },
        redeemed: unsigned(row, "redeemed")?,
        returned: unsigned(row, "returned")?,
        created_at: row.try_get("created_at")?,
    })
}

fn capped(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

impl CheckoutStore {
    /// Stores a new code; `None` when its text is taken.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.create_promo_code", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn create_promo_code(
        &self,
        code: &PromoCode,
        created_by: Uuid,
    ) -> DbResult<Option<PromoCodeUsage>> {
        let (percent, amount, currency) = match &code.discount {
            PromoDiscount::PercentOff(percent) => (i32::from(*percent), 0, None),
            PromoDiscount::AmountOff {
                currency_code,
                minor,
            }
            | PromoDiscount::FixedPrice {
                currency_code,
                minor,
            } => (0, *minor, Some(currency_code.as_str())),
        };
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "WITH c AS (
                         INSERT INTO checkout.promo_codes (id, code, event_id, price_tier_ids, kind, percent_off,
                             amount_minor, currency_code, valid_from, valid_until, max_redemptions, max_per_user,
                             min_tickets, created_by, venue_id)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                         ON CONFLICT (code) DO NOTHING
                         RETURNING *
                     )
                     SELECT {CODE_COLUMNS} FROM c"
                ),
                &[
                    &code.id,
                    &code.code,
                    &code.event_id,
                    &code.price_tier_ids,
                    &code.discount.kind(),
                    &percent,
                    &amount,
                    &currency,
                    &code.valid_from,
                    &code.valid_until,
                    &capped(code.max_redemptions),
                    &capped(code.max_per_user),
                    &capped(code.min_tickets),
                    &created_by,
                    &code.venue_id,
                ],
            )
            .await
            .db_context("creating a promo code")?;
        row.as_ref().map(code_from_row).transpose()
    }

    /// Codes, newest first: those usable on one event (its own, its
    /// venue's and the every-event ones), or all.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.list_promo_codes", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn promo_codes(
        &self,
        event_id: Option<Uuid>,
        venue_id: Option<Uuid>,
    ) -> DbResult<Vec<PromoCodeUsage>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {CODE_COLUMNS} FROM checkout.promo_codes c
                     WHERE $1::uuid IS NULL OR c.event_id = $1
                        OR (c.event_id IS NULL AND (c.venue_id IS NULL OR c.venue_id = $2::uuid))
                     ORDER BY c.created_at DESC, c.id DESC
                     LIMIT 1000"
                ),
                &[&event_id, &venue_id],
            )
            .await
            .db_context("listing promo codes")?;
        rows.iter().map(code_from_row).collect()
    }

    /// How long `user` must wait before trying another code, if they have
    /// failed too often in the current window.
    pub async fn promo_guesses_blocked(
        &self,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> DbResult<Option<std::time::Duration>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(
                    &client,
                    "SELECT window_start, failures FROM checkout.promo_attempts WHERE user_id = $1",
                )
                .await?,
                &[&user],
            )
            .await
            .db_context("reading promo code attempts")?;
        let Some(row) = row else { return Ok(None) };
        let window_start: DateTime<Utc> = row.try_get("window_start")?;
        let failures: i32 = row.try_get("failures")?;
        let window_end = window_start
            + chrono::Duration::from_std(GUESS_WINDOW).unwrap_or(chrono::Duration::MAX);
        Ok((failures >= MAX_FAILED_GUESSES && now < window_end)
            .then(|| (window_end - now).to_std().unwrap_or_default()))
    }

    /// Counts a failed code for `user` (a new window once the last ended).
    pub async fn record_failed_guess(&self, user: Uuid) -> DbResult<()> {
        let client = self.client().await?;
        let window = GUESS_WINDOW.as_secs_f64();
        client
            .execute(
                &prepared(
                    &client,
                    "INSERT INTO checkout.promo_attempts (user_id, window_start, failures)
                     VALUES ($1, now(), 1)
                     ON CONFLICT (user_id) DO UPDATE SET
                         window_start = CASE WHEN promo_attempts.window_start < now() - make_interval(secs => $2)
                                             THEN now() ELSE promo_attempts.window_start END,
                         failures = CASE WHEN promo_attempts.window_start < now() - make_interval(secs => $2)
                                         THEN 1 ELSE promo_attempts.failures + 1 END",
                )
                .await?,
                &[&user, &window],
            )
            .await
            .db_context("counting a failed promo code")?;
        Ok(())
    }

    /// Applies the code `code_text` (upper-case) to `user`'s pending
    /// booking, in one transaction; a code applied before to the booking is
    /// replaced (its redemption returned).
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.apply_promo_code", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn apply_promo_code(
        &self,
        booking_id: Uuid,
        user: Uuid,
        code_text: &str,
        venue_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> DbResult<PromoChange> {
        self.forget_recent(booking_id);
        let mut client = self.client().await?;
        let transaction = client
            .transaction()
            .await
            .db_context("starting to apply a promo code")?;
        let booking = match locked_pending(&transaction, booking_id, user, now).await? {
            Ok(booking) => booking,
            Err(change) => return Ok(change),
        };
        // Both codes (the new one and one the booking holds) in id order,
        // so two bookings swapping codes never deadlock.
        let rows = transaction
            .query(
                &format!(
                    "SELECT {CODE_COLUMNS} FROM checkout.promo_codes c
                     WHERE c.code = $1 OR c.id = (SELECT promo_code_id FROM checkout.bookings WHERE id = $2)
                     ORDER BY c.id
                     FOR UPDATE"
                ),
                &[&code_text, &booking_id],
            )
            .await
            .db_context("locking promo codes")?;
        let codes = rows
            .iter()
            .map(code_from_row)
            .collect::<DbResult<Vec<_>>>()?;
        let Some(code) = codes.iter().find(|c| c.code.code == code_text) else {
            return Ok(PromoChange::Refused(PromoRefusal::Unknown));
        };
        if booking.promo_code.as_deref() == Some(code_text) {
            return Ok(PromoChange::Done(Box::new(booking)));
        }
        let by_user: i64 = transaction
            .query_one(
                "SELECT count(*) AS n FROM checkout.promo_redemptions
                 WHERE code_id = $1 AND user_id = $2 AND state = 'active' AND booking_id <> $3",
                &[&code.code.id, &user, &booking_id],
            )
            .await
            .db_context("counting a user's redemptions")?
            .try_get("n")?;
        let usage = PromoUsage {
            redeemed: code.redeemed,
            redeemed_by_user: u32::try_from(by_user).unwrap_or(u32::MAX),
        };
        let for_promo = BookingForPromo {
            event_id: booking.event_id,
            venue_id,
            currency_code: booking.currency_code.clone(),
            fees_minor: booking.fees_minor,
            tickets: booking
                .tickets
                .iter()
                .map(|ticket| DiscountedTicket {
                    price_tier_id: ticket.price_tier_id,
                    price_minor: ticket.price_minor,
                })
                .collect(),
            other_discounts_minor: booking.loyalty_discount_minor + booking.tier_discount_minor,
        };
        let discount = match crate::domain::promo::discount_for(&code.code, &for_promo, usage, now)
        {
            Ok(discount) => discount,
            Err(refusal) => return Ok(PromoChange::Refused(refusal)),
        };
        return_redemption(&transaction, booking_id).await?;
        transaction
            .execute(
                "INSERT INTO checkout.promo_redemptions (id, booking_id, code_id, user_id, discount_minor, state)
                 VALUES ($1, $2, $3, $4, $5, 'active')",
                &[&Uuid::now_v7(), &booking_id, &code.code.id, &user, &discount],
            )
            .await
            .db_context("recording a redemption")?;
        transaction
            .execute(
                "UPDATE checkout.promo_codes SET redeemed = redeemed + 1 WHERE id = $1",
                &[&code.code.id],
            )
            .await
            .db_context("counting a redemption")?;
        transaction
            .execute(
                "UPDATE checkout.bookings SET discount_minor = $2, promo_code_id = $3,
                     total_minor = subtotal_minor + fees_minor - $2 - loyalty_discount_minor - tier_discount_minor,
                     updated_at = now()
                 WHERE id = $1",
                &[&booking_id, &discount, &code.code.id],
            )
            .await
            .db_context("repricing a booking")?;
        let booking = reread(&transaction, booking_id).await?;
        transaction
            .commit()
            .await
            .db_context("committing a promo code")?;
        Ok(PromoChange::Done(Box::new(booking)))
    }

    /// Takes the code off `user`'s pending booking (its redemption comes
    /// back); a booking without one is answered as it is.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.remove_promo_code", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn remove_promo_code(
        &self,
        booking_id: Uuid,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> DbResult<PromoChange> {
        self.forget_recent(booking_id);
        let mut client = self.client().await?;
        let transaction = client
            .transaction()
            .await
            .db_context("starting to remove a promo code")?;
        let booking = match locked_pending(&transaction, booking_id, user, now).await? {
            Ok(booking) => booking,
            Err(change) => return Ok(change),
        };
        if booking.promo_code.is_none() {
            return Ok(PromoChange::Done(Box::new(booking)));
        }
        transaction
            .query(
                "SELECT 1 FROM checkout.promo_codes
                 WHERE id = (SELECT promo_code_id FROM checkout.bookings WHERE id = $1) FOR UPDATE",
                &[&booking_id],
            )
            .await
            .db_context("locking a promo code")?;
        return_redemption(&transaction, booking_id).await?;
        transaction
            .execute(
                "UPDATE checkout.bookings SET discount_minor = 0, promo_code_id = NULL,
                     total_minor = subtotal_minor + fees_minor - loyalty_discount_minor - tier_discount_minor,
                     updated_at = now()
                 WHERE id = $1",
                &[&booking_id],
            )
            .await
            .db_context("repricing a booking")?;
        let booking = reread(&transaction, booking_id).await?;
        transaction
            .commit()
            .await
            .db_context("committing a promo code's removal")?;
        Ok(PromoChange::Done(Box::new(booking)))
    }
}

/// The booking, locked, if it is `user`'s and pending with its hold
/// running; otherwise what to answer.
pub(super) async fn locked_pending(
    transaction: &deadpool_postgres::Transaction<'_>,
    booking_id: Uuid,
    user: Uuid,
    now: DateTime<Utc>,
) -> DbResult<Result<BookingRecord, PromoChange>> {
    let row = transaction
        .query_opt(
            &format!(
                "SELECT {BOOKING_COLUMNS} FROM checkout.bookings b WHERE b.id = $1 FOR UPDATE OF b"
            ),
            &[&booking_id],
        )
        .await
        .db_context("locking a booking")?;
    let Some(booking) = row.as_ref().map(booking_from_row).transpose()? else {
        return Ok(Err(PromoChange::BookingNotFound));
    };
    if booking.user_id != user {
        return Ok(Err(PromoChange::BookingNotFound));
    }
    if booking.state != BookingState::Pending {
        return Ok(Err(PromoChange::NotPending(booking.state)));
    }
    if booking.expire_time <= now {
        return Ok(Err(PromoChange::Expired));
    }
    Ok(Ok(booking))
}

/// Gives back the booking's active redemption, if any.
async fn return_redemption(
    transaction: &deadpool_postgres::Transaction<'_>,
    booking_id: Uuid,
) -> DbResult<()> {
    transaction
        .execute(
            "WITH r AS (
                 UPDATE checkout.promo_redemptions SET state = 'returned', returned_at = now()
                 WHERE booking_id = $1 AND state = 'active'
                 RETURNING code_id
             )
             UPDATE checkout.promo_codes c SET redeemed = c.redeemed - 1, returned = c.returned + 1
             FROM r WHERE c.id = r.code_id",
            &[&booking_id],
        )
        .await
        .db_context("returning a redemption")?;
    Ok(())
}

pub(super) async fn reread(
    transaction: &deadpool_postgres::Transaction<'_>,
    booking_id: Uuid,
) -> DbResult<BookingRecord> {
    let row = transaction
        .query_one(
            &format!("SELECT {BOOKING_COLUMNS} FROM checkout.bookings b WHERE b.id = $1"),
            &[&booking_id],
        )
        .await
        .db_context("reading a repriced booking")?;
    booking_from_row(&row)
}
