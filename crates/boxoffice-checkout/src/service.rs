//! Checkout's use cases: create, confirm, read, list and cancel bookings.
//!
//! Confirming is authorize → inventory.CommitHold → capture → confirmed,
//! and writes once, at the end. The attempt's payment id is derived from
//! the user and the idempotency key and every provider call's key from it,
//! so a retry resumes the same attempt and repeating a step never moves
//! money twice. A crash in between leaves what the provider (authorizations
//! are searchable by booking) and inventory (the sale names the attempt)
//! know; a retry with the same key finishes it, and the reconciler settles
//! it once the hold has run out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use tonic::Code;
use uuid::Uuid;

use crate::config::{CheckoutConfig, FailPoint};
use crate::domain::{self, BookingState, PaymentState, PricedSeat};
use crate::error::{CheckoutError, reason};
use crate::payment::{
    AuthorizeOutcome, AuthorizeRequest, PaymentProvider, ProviderError, ProviderStatus,
};
use crate::store::postgres::{NewBooking, Outcome};
use crate::store::{Attempt, BookingRecord, CheckoutStore, PaymentRecord};
use crate::upstream::{Upstream, UpstreamError};

type Result<T, E = CheckoutError> = std::result::Result<T, E>;

/// What settling a pending booking past its hold did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// An attempt had sold the seats: captured, recorded, confirmed.
    Confirmed,
    /// Nothing was sold: every authorization voided, the booking expired.
    Expired,
    /// Someone (a retry, another reconciler) settled it meanwhile.
    AlreadySettled,
}

/// Domain separation of attempt ids from any other hash of user and key.
const ATTEMPT_NAMESPACE: &[u8] = b"boxoffice.checkout.attempt.v1";

/// The payment id of the ConfirmBooking attempt `user` makes with `key`:
/// the same for every retry, different for every other key or user (a
/// name-based UUID, version 8: SHA-256 of namespace, user and key).
pub fn attempt_id(user: Uuid, key: &str) -> Uuid {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(ATTEMPT_NAMESPACE)
        .chain_update(user.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Provider idempotency keys of the steps after authorization.
pub fn capture_key(payment_id: Uuid) -> String {
    format!("capture:{payment_id}")
}
pub fn void_key(payment_id: Uuid) -> String {
    format!("void:{payment_id}")
}
pub fn refund_key(booking_id: Uuid) -> String {
    format!("refund:{booking_id}")
}

fn provider_error(error: ProviderError) -> CheckoutError {
    match error {
        ProviderError::Unavailable(cause) => CheckoutError::Unavailable(cause),
        ProviderError::Refused(why) => {
            CheckoutError::Internal(anyhow::anyhow!("payment provider refused: {why}"))
        }
        ProviderError::KeyReused => CheckoutError::Internal(anyhow::anyhow!(
            "payment provider refused a reused idempotency key"
        )),
    }
}

fn upstream_error(error: UpstreamError) -> CheckoutError {
    match error {
        UpstreamError::Unavailable(cause) => CheckoutError::Unavailable(cause),
        UpstreamError::Refused {
            code,
            reason,
            message,
        } => CheckoutError::Internal(anyhow::anyhow!(
            "inventory refused ({code:?} {reason}): {message}"
        )),
    }
}

/// How a confirmation knows the booking is pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Read from the database just now, with any attempt under the key.
    Read,
    /// Remembered from creating it: probably still pending, and no attempt
    /// recorded under the key, but not checked.
    Optimistic,
}

/// How paying went.
enum Paid {
    Done(Box<BookingRecord>),
    /// An optimistic attempt left the happy path (a decline, a reused key,
    /// seats inventory would not sell) without recording or answering
    /// anything: decide it again from the database.
    Recheck,
}

impl Paid {
    fn done(self) -> Result<BookingRecord> {
        match self {
            Self::Done(booking) => Ok(*booking),
            Self::Recheck => {
                Err(anyhow::anyhow!("a checked confirmation asked to be checked").into())
            }
        }
    }
}

/// Concurrent confirmations of one booking in this process wait for each
/// other, so duplicates see the first one's answer instead of an
/// in-progress error. Across processes the database decides.
#[derive(Default)]
struct SingleFlight {
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl SingleFlight {
    async fn run<T>(&self, key: Uuid, work: impl Future<Output = T>) -> T {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(key).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            work.await
        };
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The map's copy plus ours: nobody else waits, forget the key.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&key);
        }
        result
    }
}

pub struct Checkout {
    store: CheckoutStore,
    provider: Arc<dyn PaymentProvider>,
    upstream: Upstream,
    config: CheckoutConfig,
    confirmations: SingleFlight,
}

impl Checkout {
    pub fn new(
        store: CheckoutStore,
        provider: Arc<dyn PaymentProvider>,
        upstream: Upstream,
        config: CheckoutConfig,
    ) -> Self {
        Self {
            store,
            provider,
            upstream,
            config,
            confirmations: SingleFlight::default(),
        }
    }

    pub fn config(&self) -> &CheckoutConfig {
        &self.config
    }

    pub fn store(&self) -> &CheckoutStore {
        &self.store
    }

    pub(crate) fn fail_point(&self, point: FailPoint) -> Result<()> {
        if self.config.fail_points.is_armed(point) {
            tracing::warn!(?point, "failure point hit");
            Err(CheckoutError::Crashed(point))
        } else {
            Ok(())
        }
    }

    fn user(caller: &Caller) -> Result<Uuid> {
        caller.user_id.ok_or(CheckoutError::Unauthenticated)
    }

    /// A booking the caller may see: their own, or any for an admin.
    /// Anyone else's is not found, so ids do not leak.
    async fn visible_booking(&self, caller: &Caller, booking_id: Uuid) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        match self.store.booking(booking_id).await? {
            Some(booking) if booking.user_id == user || caller.is_admin() => Ok(booking),
            _ => Err(CheckoutError::BookingNotFound(booking_id)),
        }
    }

    pub async fn create_booking(
        &self,
        caller: &Caller,
        event_id: Uuid,
        hold_id: Uuid,
        create_key: Option<String>,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        if let Some(key) = &create_key
            && let Some(existing) = self.store.booking_by_create_key(user, key).await?
        {
            return if existing.hold_id == hold_id {
                Ok(existing)
            } else {
                Err(CheckoutError::IdempotencyKeyReused("hold"))
            };
        }
        if let Some(existing) = self.store.booking_by_hold(hold_id).await? {
            return if existing.user_id == user {
                Ok(existing)
            } else {
                Err(CheckoutError::HoldNotFound)
            };
        }
        let name = domain::hold_name(event_id, hold_id);
        let hold = match self.upstream.hold(user, &name).await {
            Ok(hold) => hold,
            Err(UpstreamError::Refused {
                code: Code::NotFound,
                ..
            }) => return Err(CheckoutError::HoldNotFound),
            Err(error) => return Err(upstream_error(error)),
        };
        use boxoffice_contracts::inventory::v1::HoldState;
        match HoldState::try_from(hold.state).unwrap_or(HoldState::Unspecified) {
            HoldState::Active => {}
            HoldState::Expired => return Err(CheckoutError::HoldNotActive("expired")),
            HoldState::Released => return Err(CheckoutError::HoldNotActive("released")),
            HoldState::Committed => return Err(CheckoutError::HoldNotActive("sold")),
            HoldState::Unspecified => return Err(CheckoutError::HoldNotActive("unknown")),
        }
        let expire_time = hold
            .expire_time
            .and_then(|time| DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32))
            .ok_or_else(|| anyhow::anyhow!("hold {hold_id} has no expiry"))?;
        let currency_code = hold
            .total_price
            .as_ref()
            .map(|money| money.currency_code.clone())
            .ok_or_else(|| anyhow::anyhow!("hold {hold_id} has no price"))?;
        let mut seats = Vec::with_capacity(hold.seats.len());
        for seat in &hold.seats {
            // Prices come from inventory's copy of the event's price tiers,
            // never from the client.
            let price = seat.price.as_ref().ok_or_else(|| {
                anyhow::anyhow!("seat {} of hold {hold_id} has no price", seat.seat_index)
            })?;
            if price.currency_code != currency_code || price.amount_minor < 0 {
                return Err(anyhow::anyhow!(
                    "hold {hold_id} mixes currencies or has a negative price"
                )
                .into());
            }
            seats.push(PricedSeat {
                seat_index: seat.seat_index,
                section_id: Uuid::parse_str(&seat.section_id).ok(),
                price_tier_id: Uuid::parse_str(&seat.price_tier_id).ok(),
                price_minor: price.amount_minor,
            });
        }
        if seats.is_empty() {
            return Err(anyhow::anyhow!("hold {hold_id} has no seats").into());
        }
        let price = domain::price(&seats, self.config.fee_per_ticket_minor);
        let event_start_time = match self.upstream.event_start(event_id).await {
            Ok(start) => start,
            Err(error) => return Err(upstream_error(error)),
        };
        let booking = NewBooking {
            id: Uuid::now_v7(),
            user_id: user,
            event_id,
            hold_id,
            currency_code,
            subtotal_minor: price.subtotal_minor,
            fees_minor: price.fees_minor,
            create_key: create_key.clone(),
            event_start_time,
            expire_time,
            seats,
        };
        if self.store.insert_booking(&booking).await? {
            tracing::info!(booking_id = %booking.id, %event_id, %hold_id, total_minor = price.total_minor, "booking created");
            let created =
                self.store.booking(booking.id).await?.ok_or_else(|| {
                    anyhow::anyhow!("booking {} vanished after insert", booking.id)
                })?;
            self.store.remember_created(&created);
            return Ok(created);
        }
        // Lost a race with a retry of this request (same hold or same key).
        match self.store.booking_by_hold(hold_id).await? {
            Some(existing) if existing.user_id == user => Ok(existing),
            Some(_) => Err(CheckoutError::HoldNotFound),
            None => Err(CheckoutError::IdempotencyKeyReused("hold")),
        }
    }

    pub async fn get_booking(&self, caller: &Caller, booking_id: Uuid) -> Result<BookingRecord> {
        self.visible_booking(caller, booking_id).await
    }

    pub async fn list_bookings(
        &self,
        caller: &Caller,
        after: Option<(DateTime<Utc>, Uuid)>,
        page_size: i64,
    ) -> Result<(Vec<BookingRecord>, bool)> {
        let user = Self::user(caller)?;
        let mut bookings = self.store.list(user, after, page_size + 1).await?;
        let more = bookings.len() as i64 > page_size;
        bookings.truncate(page_size as usize);
        Ok((bookings, more))
    }

    /// Pays for a pending booking. Idempotent per (user, key): the attempt's
    /// payment id is derived from them, so a retry (after a timeout or a
    /// crash) resumes the same attempt at the provider and in inventory
    /// instead of starting another one.
    pub async fn confirm_booking(
        &self,
        caller: &Caller,
        booking_id: Uuid,
        payment_method: String,
        key: String,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        let attempt = Attempt {
            payment_id: attempt_id(user, &key),
            booking_id,
            user_id: user,
            key,
            method: payment_method,
        };
        self.confirmations
            .run(booking_id, async {
                // A booking this process made and has not seen change:
                // pay at once; anything but the happy path is decided
                // again from the database below.
                if let Some(booking) = self.store.recent_pending(booking_id, user)
                    && let Paid::Done(booking) =
                        self.pay(booking, &attempt, Check::Optimistic).await?
                {
                    return Ok(*booking);
                }
                let context = self.store.confirm_context(&attempt).await?;
                if let Some(recorded) = context.recorded_attempt {
                    let recorded = self.store.payment(recorded).await?.ok_or_else(|| {
                        anyhow::anyhow!("payment {recorded} vanished while being read")
                    })?;
                    return self.replay(&attempt, recorded).await;
                }
                let booking = match context.booking {
                    Some(booking) if booking.user_id == user => booking,
                    _ => return Err(CheckoutError::BookingNotFound(booking_id)),
                };
                match booking.state {
                    BookingState::Pending if booking.expire_time > Utc::now() => {
                        self.pay(booking, &attempt, Check::Read).await?.done()
                    }
                    // Past its hold: only an attempt already under way (a
                    // retry after a crash) may still have sold it; finish
                    // that one, start none.
                    BookingState::Pending => {
                        let started = self
                            .provider
                            .lookup(&attempt.payment_id.to_string())
                            .await
                            .map_err(provider_error)?;
                        match started {
                            Some(_) => self.pay(booking, &attempt, Check::Read).await?.done(),
                            None => Err(CheckoutError::BookingExpired(
                                reason::HOLD_EXPIRED.to_owned(),
                            )),
                        }
                    }
                    BookingState::Confirming => Err(CheckoutError::ConfirmationInProgress),
                    BookingState::Expired => Err(CheckoutError::BookingExpired(
                        booking
                            .failure_reason
                            .unwrap_or_else(|| reason::HOLD_EXPIRED.to_owned()),
                    )),
                    state => Err(CheckoutError::BookingNotPending(state.as_str())),
                }
            })
            .await
    }

    /// The answer recorded for an attempt made before with this key.
    async fn replay(&self, attempt: &Attempt, recorded: PaymentRecord) -> Result<BookingRecord> {
        if recorded.booking_id != attempt.booking_id {
            return Err(CheckoutError::IdempotencyKeyReused("booking"));
        }
        if recorded.payment_method != attempt.method {
            return Err(CheckoutError::IdempotencyKeyReused("payment method"));
        }
        match recorded.state {
            PaymentState::Captured | PaymentState::Refunded => self
                .store
                .booking(attempt.booking_id)
                .await?
                .ok_or(CheckoutError::BookingNotFound(attempt.booking_id)),
            PaymentState::Declined | PaymentState::Voided => Err(CheckoutError::Stored {
                code: recorded.outcome_code.unwrap_or(Code::Aborted as i32),
                reason: recorded
                    .outcome_reason
                    .unwrap_or_else(|| reason::CONFIRMATION_INTERRUPTED.to_owned()),
                message: recorded
                    .outcome_message
                    .unwrap_or_else(|| "the payment did not go through".to_owned()),
            }),
            // Claimed by an earlier version; the reconciler finishes it.
            PaymentState::Authorizing | PaymentState::Authorized => {
                Err(CheckoutError::ConfirmationInProgress)
            }
        }
    }

    /// Authorize, sell, capture, record: nothing is written before the
    /// end. Each step repeats safely with the same attempt, so a crash
    /// anywhere leaves something a retry with the same key, or the
    /// reconciler once the hold has run out, finishes or reverses.
    async fn pay(&self, booking: BookingRecord, attempt: &Attempt, check: Check) -> Result<Paid> {
        let optimistic = check == Check::Optimistic;
        let authorized = self
            .provider
            .authorize(AuthorizeRequest {
                idempotency_key: attempt.payment_id.to_string(),
                reference: booking.id.to_string(),
                client_key: attempt.key.clone(),
                amount_minor: booking.total_minor,
                currency_code: booking.currency_code.clone(),
                payment_method: attempt.method.clone(),
            })
            .await;
        let provider_ref = match authorized {
            Ok(AuthorizeOutcome::Authorized { provider_ref }) => provider_ref,
            Ok(AuthorizeOutcome::Declined { .. }) if optimistic => return Ok(Paid::Recheck),
            // Nothing recorded: the buyer authenticates, then confirms
            // again with the same key.
            Ok(AuthorizeOutcome::ActionRequired { url, .. }) => {
                return Err(CheckoutError::PaymentActionRequired(url));
            }
            Ok(AuthorizeOutcome::Declined { decline_code }) => {
                let error = CheckoutError::PaymentDeclined(decline_code);
                self.record_unpaid(attempt, PaymentState::Declined, None, false, &error)
                    .await?;
                tracing::info!(booking_id = %booking.id, payment_id = %attempt.payment_id, "payment declined");
                return Err(error);
            }
            // The key (user and key) was used for another booking, amount
            // or payment method in an attempt not recorded yet.
            Err(ProviderError::KeyReused) if optimistic => return Ok(Paid::Recheck),
            Err(ProviderError::KeyReused) => {
                return Err(CheckoutError::IdempotencyKeyReused("booking"));
            }
            Err(error) => return Err(provider_error(error)),
        };
        self.fail_point(FailPoint::AfterAuthorize)?;
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        match self
            .upstream
            .commit_hold(
                booking.user_id,
                &hold_name,
                booking.id,
                Some(attempt.payment_id),
            )
            .await
        {
            // Sold by this call, or by this very attempt before (a retry).
            Ok(sold)
                if sold.newly_committed
                    || sold
                        .hold
                        .as_ref()
                        .is_some_and(|hold| hold.sale_id == attempt.payment_id.to_string()) => {}
            // Sold, but not provably by this attempt (say, by one an
            // earlier version made without a sale id, which any commit
            // matches): the booking may not be pending at all.
            Ok(_) if optimistic => {
                self.provider
                    .void(&provider_ref, &void_key(attempt.payment_id))
                    .await
                    .map_err(provider_error)?;
                return Ok(Paid::Recheck);
            }
            Ok(_) => {}
            // Not what a pending booking's hold answers: give the money
            // back and find out from the database what happened.
            Err(UpstreamError::Refused { .. }) if optimistic => {
                self.provider
                    .void(&provider_ref, &void_key(attempt.payment_id))
                    .await
                    .map_err(provider_error)?;
                return Ok(Paid::Recheck);
            }
            Err(UpstreamError::Refused { reason, .. })
                if reason == reason::HOLD_ALREADY_COMMITTED =>
            {
                // Another attempt (another key) sold this booking's seats
                // and pays for them; this one takes nothing.
                self.provider
                    .void(&provider_ref, &void_key(attempt.payment_id))
                    .await
                    .map_err(provider_error)?;
                tracing::info!(booking_id = %booking.id, payment_id = %attempt.payment_id, "another attempt sold the seats; payment voided");
                return Err(CheckoutError::ConfirmationInProgress);
            }
            Err(UpstreamError::Refused {
                reason, message, ..
            }) => {
                self.provider
                    .void(&provider_ref, &void_key(attempt.payment_id))
                    .await
                    .map_err(provider_error)?;
                let reason = match reason.as_str() {
                    "" => reason::SEAT_UNAVAILABLE.to_owned(),
                    _ => reason,
                };
                let error = CheckoutError::SeatsGone {
                    message: format!(
                        "the seats could not be sold ({message}); the payment was voided"
                    ),
                    reason,
                };
                self.record_unpaid(
                    attempt,
                    PaymentState::Voided,
                    Some(&provider_ref),
                    true,
                    &error,
                )
                .await?;
                tracing::info!(booking_id = %booking.id, payment_id = %attempt.payment_id, "seats gone; payment voided");
                return Err(error);
            }
            // Unknown outcome: a retry with the same key, or the
            // reconciler, finds out and finishes or reverses it.
            Err(UpstreamError::Unavailable(cause)) => {
                return Err(CheckoutError::Unavailable(cause));
            }
        }
        self.fail_point(FailPoint::AfterCommit)?;
        self.provider
            .capture(&provider_ref, &capture_key(attempt.payment_id))
            .await
            .map_err(provider_error)?;
        self.fail_point(FailPoint::AfterCapture)?;
        self.record_paid(&booking, attempt, &provider_ref)
            .await
            .map(|booking| Paid::Done(Box::new(booking)))
    }

    /// Writes a paid attempt and answers the booking as it now stands.
    async fn record_paid(
        &self,
        booking: &BookingRecord,
        attempt: &Attempt,
        provider_ref: &str,
    ) -> Result<BookingRecord> {
        if self.store.record_paid(attempt, provider_ref).await? {
            tracing::info!(booking_id = %booking.id, payment_id = %attempt.payment_id, "booking confirmed");
            return Ok(BookingRecord {
                state: BookingState::Confirmed,
                payment_id: Some(attempt.payment_id),
                confirmed_at: Some(Utc::now()),
                ..booking.clone()
            });
        }
        let now = self
            .store
            .booking(booking.id)
            .await?
            .ok_or(CheckoutError::BookingNotFound(booking.id))?;
        if now.payment_id == Some(attempt.payment_id) {
            // A retry or the reconciler recorded this very attempt first.
            return Ok(now);
        }
        // The booking ended (say, cancelled through a path that could not
        // see the sale) while its seats were sold to this attempt and paid:
        // give both back.
        tracing::warn!(booking_id = %booking.id, payment_id = %attempt.payment_id, state = now.state.as_str(), "paid for a booking that is no longer pending; refunding");
        self.provider
            .refund(provider_ref, booking.total_minor, &refund_key(booking.id))
            .await
            .map_err(provider_error)?;
        self.upstream
            .release_seats(booking.user_id, booking.event_id, booking.id)
            .await
            .map_err(upstream_error)?;
        Err(CheckoutError::BookingNotPending(now.state.as_str()))
    }

    async fn record_unpaid(
        &self,
        attempt: &Attempt,
        state: PaymentState,
        provider_ref: Option<&str>,
        booking_expires: bool,
        error: &CheckoutError,
    ) -> Result<()> {
        let (code, reason, message) = error.stored().unwrap_or_else(|| {
            (
                Code::Aborted as i32,
                reason::CONFIRMATION_INTERRUPTED.to_owned(),
                String::new(),
            )
        });
        self.store
            .record_unpaid(
                attempt,
                state,
                provider_ref,
                booking_expires,
                &Outcome {
                    code,
                    reason,
                    message,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn cancel_booking(&self, caller: &Caller, booking_id: Uuid) -> Result<BookingRecord> {
        let booking = self.visible_booking(caller, booking_id).await?;
        match booking.state {
            BookingState::Pending => {
                // The hold goes first: once it is released no payment
                // attempt can sell it, and if one already has, inventory
                // refuses and the booking is being paid for.
                let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
                match self
                    .upstream
                    .release_hold(booking.user_id, &hold_name)
                    .await
                {
                    Ok(()) => {}
                    Err(UpstreamError::Refused { reason, .. })
                        if reason == reason::HOLD_ALREADY_COMMITTED =>
                    {
                        return Err(CheckoutError::ConfirmationInProgress);
                    }
                    // Redis forgot the hold: PostgreSQL knows whether it sold.
                    Err(UpstreamError::Refused {
                        code: Code::NotFound,
                        ..
                    }) => {
                        if self
                            .upstream
                            .is_committed(booking.user_id, &hold_name, booking.id, None)
                            .await
                            .map_err(upstream_error)?
                        {
                            return Err(CheckoutError::ConfirmationInProgress);
                        }
                    }
                    // Expired: nothing is held any more.
                    Err(UpstreamError::Refused { .. }) => {}
                    Err(error) => return Err(upstream_error(error)),
                }
                if !self.store.cancel_pending(booking_id).await? {
                    return Err(CheckoutError::ConfirmationInProgress);
                }
            }
            BookingState::Confirming => return Err(CheckoutError::ConfirmationInProgress),
            BookingState::Confirmed => {
                let refund = domain::refund_due(
                    booking.subtotal_minor,
                    booking.event_start_time,
                    Utc::now(),
                    self.config.refund_cutoff,
                )
                .ok_or(CheckoutError::RefundWindowClosed)?;
                if !self.store.begin_cancel(booking_id, refund).await? {
                    return Err(CheckoutError::ConfirmationInProgress);
                }
                self.fail_point(FailPoint::AfterCancelIntent)?;
                let cancelling = BookingRecord {
                    refunded_minor: refund,
                    state: BookingState::Cancelling,
                    ..booking
                };
                self.finish_cancel(&cancelling).await?;
            }
            BookingState::Cancelling => self.finish_cancel(&booking).await?,
            BookingState::Cancelled => return Ok(booking),
            BookingState::Expired => return Err(CheckoutError::NotCancellable("expired")),
        }
        self.store
            .booking(booking_id)
            .await?
            .ok_or(CheckoutError::BookingNotFound(booking_id))
    }

    /// Refund, seats back on sale, booking cancelled. Every step repeats
    /// safely, so the reconciler runs this again after a crash.
    pub(crate) async fn finish_cancel(&self, booking: &BookingRecord) -> Result<()> {
        if booking.refunded_minor > 0 {
            let payment = self.paid_with(booking).await?;
            let provider_ref = payment.provider_ref.ok_or_else(|| {
                anyhow::anyhow!("captured payment {} has no provider reference", payment.id)
            })?;
            self.provider
                .refund(
                    &provider_ref,
                    booking.refunded_minor,
                    &refund_key(booking.id),
                )
                .await
                .map_err(provider_error)?;
        }
        self.fail_point(FailPoint::AfterRefund)?;
        self.upstream
            .release_seats(booking.user_id, booking.event_id, booking.id)
            .await
            .map_err(upstream_error)?;
        self.store.finish_cancel(booking.id).await?;
        tracing::info!(booking_id = %booking.id, refunded_minor = booking.refunded_minor, "booking cancelled");
        Ok(())
    }

    async fn paid_with(&self, booking: &BookingRecord) -> Result<PaymentRecord> {
        let payment_id = booking
            .payment_id
            .ok_or_else(|| anyhow::anyhow!("confirmed booking {} has no payment", booking.id))?;
        Ok(self
            .store
            .payment(payment_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment {payment_id} missing"))?)
    }

    /// Settles a pending booking whose hold has run out, by asking the
    /// provider and inventory what its attempts did (no sale can happen
    /// any more, so their answers are final): the attempt whose sale went
    /// through is captured and recorded, and the booking confirmed; every
    /// other authorization is voided; with nothing sold the booking
    /// expires.
    pub(crate) async fn settle_pending(&self, booking: &BookingRecord) -> Result<Settled> {
        let payments = self
            .provider
            .search(&booking.id.to_string())
            .await
            .map_err(provider_error)?;
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        let mut paid = None;
        for payment in &payments {
            let Ok(payment_id) = Uuid::parse_str(&payment.idempotency_key) else {
                continue;
            };
            if matches!(
                payment.status,
                ProviderStatus::Voided | ProviderStatus::Declined
            ) {
                continue;
            }
            // One sale id sells a booking; the first one found is it.
            let sold = paid.is_none()
                && self
                    .upstream
                    .is_committed(booking.user_id, &hold_name, booking.id, Some(payment_id))
                    .await
                    .map_err(upstream_error)?;
            match (sold, payment.status) {
                (true, ProviderStatus::Authorized) => {
                    self.provider
                        .capture(&payment.provider_ref, &capture_key(payment_id))
                        .await
                        .map_err(provider_error)?;
                    paid = Some((payment_id, payment));
                }
                (true, _) => paid = Some((payment_id, payment)),
                (false, ProviderStatus::Authorized) => {
                    self.provider
                        .void(&payment.provider_ref, &void_key(payment_id))
                        .await
                        .map_err(provider_error)?;
                }
                (false, ProviderStatus::Captured) => {
                    // Captures follow sales, so this is never expected;
                    // money taken for nothing goes back.
                    tracing::error!(booking_id = %booking.id, %payment_id, "captured payment without a sale; refunding");
                    self.provider
                        .refund(
                            &payment.provider_ref,
                            payment.amount_minor,
                            &format!("refund-unsold:{payment_id}"),
                        )
                        .await
                        .map_err(provider_error)?;
                }
                (false, _) => {}
            }
        }
        let Some((payment_id, payment)) = paid else {
            // Nothing the provider knows of paid for it. Expire it first, so
            // a late retry can no longer confirm it (its record would find
            // the booking not pending and put the seats back itself), then
            // give back whatever inventory sold to it: an attempt whose
            // payment the provider has no record of may still have sold
            // the seats. The booking owes the release until inventory
            // confirms it, so a crash in between is finished by the next
            // pass.
            if !self.store.expire_booking(booking.id).await? {
                return Ok(Settled::AlreadySettled);
            }
            let released = self.release_expired(booking).await?;
            tracing::info!(
                booking_id = %booking.id,
                provider_payments = payments.len(),
                provider_statuses = ?payments.iter().map(|p| p.status).collect::<Vec<_>>(),
                seats_released = released,
                "expired a pending booking nothing paid for"
            );
            return Ok(Settled::Expired);
        };
        let attempt = Attempt {
            payment_id,
            booking_id: booking.id,
            user_id: booking.user_id,
            key: payment.client_key.clone(),
            method: payment.payment_method.clone(),
        };
        Ok(
            if self
                .store
                .record_paid(&attempt, &payment.provider_ref)
                .await?
            {
                Settled::Confirmed
            } else {
                Settled::AlreadySettled
            },
        )
    }

    /// Puts back on sale whatever inventory sold to an expired booking
    /// (idempotent: nothing sold, nothing released) and clears the release
    /// it owed. Answers how many seats went back.
    pub(crate) async fn release_expired(&self, booking: &BookingRecord) -> Result<usize> {
        let released = self
            .upstream
            .release_seats(booking.user_id, booking.event_id, booking.id)
            .await
            .map_err(upstream_error)?;
        if !released.is_empty() {
            tracing::warn!(
                booking_id = %booking.id,
                event_id = %booking.event_id,
                seats = released.len(),
                "an expired booking had sold seats with no payment to show; they are back on sale"
            );
        }
        self.store.seats_released(booking.id).await?;
        Ok(released.len())
    }

    /// Settles one attempt an earlier version claimed (booking
    /// `confirming`, payment recorded before the provider was called) and a
    /// crashed request left behind, by asking the provider and inventory
    /// what really happened: captured → confirm; authorized and seats sold →
    /// capture, confirm; authorized and seats not sold → void; never
    /// authorized → end the attempt.
    pub(crate) async fn settle(
        &self,
        payment: &PaymentRecord,
        booking: &BookingRecord,
    ) -> Result<&'static str> {
        let found = self
            .provider
            .lookup(&payment.id.to_string())
            .await
            .map_err(provider_error)?;
        let interrupted = CheckoutError::Stored {
            code: Code::Aborted as i32,
            reason: reason::CONFIRMATION_INTERRUPTED.to_owned(),
            message:
                "the payment was interrupted and nothing was charged; confirm again with a new key"
                    .to_owned(),
        };
        let Some(found) = found else {
            self.store_interrupted(payment.id, PaymentState::Voided, None, &interrupted)
                .await?;
            return Ok("never authorized");
        };
        match found.status {
            ProviderStatus::Captured | ProviderStatus::Refunded => {
                self.store
                    .finish_claimed(payment.id, &found.provider_ref)
                    .await?;
                Ok("marked confirmed")
            }
            ProviderStatus::Declined | ProviderStatus::Voided => {
                self.store_interrupted(
                    payment.id,
                    PaymentState::Voided,
                    Some(&found.provider_ref),
                    &interrupted,
                )
                .await?;
                Ok("ended")
            }
            ProviderStatus::Authorized => {
                let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
                let committed = self
                    .upstream
                    .is_committed(booking.user_id, &hold_name, booking.id, None)
                    .await
                    .map_err(upstream_error)?;
                if committed {
                    self.provider
                        .capture(&found.provider_ref, &capture_key(payment.id))
                        .await
                        .map_err(provider_error)?;
                    self.store
                        .finish_claimed(payment.id, &found.provider_ref)
                        .await?;
                    Ok("captured")
                } else {
                    self.provider
                        .void(&found.provider_ref, &void_key(payment.id))
                        .await
                        .map_err(provider_error)?;
                    self.store_interrupted(
                        payment.id,
                        PaymentState::Voided,
                        Some(&found.provider_ref),
                        &interrupted,
                    )
                    .await?;
                    Ok("voided")
                }
            }
        }
    }

    async fn store_interrupted(
        &self,
        payment_id: Uuid,
        state: PaymentState,
        provider_ref: Option<&str>,
        answer: &CheckoutError,
    ) -> Result<()> {
        let CheckoutError::Stored {
            code,
            reason,
            message,
        } = answer
        else {
            return Err(anyhow::anyhow!("not a stored answer").into());
        };
        self.store
            .fail_attempt(
                payment_id,
                state,
                provider_ref,
                false,
                &Outcome {
                    code: *code,
                    reason: reason.clone(),
                    message: message.clone(),
                },
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_id_is_the_same_for_a_retry_and_differs_otherwise() {
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let first = attempt_id(alice, "key-1");
        assert_eq!(first, attempt_id(alice, "key-1"));
        assert_ne!(first, attempt_id(alice, "key-2"));
        assert_ne!(first, attempt_id(bob, "key-1"));
        assert_eq!(first.get_version_num(), 8);
    }
}
