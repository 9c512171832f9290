//! Checkout's use cases: create, confirm, read, list and cancel bookings.
//!
//! Confirming is authorize → inventory.CommitHold → capture → confirmed.
//! The attempt is written down before the provider is called (the claim),
//! so a crash at any later step leaves a row the reconciler finishes or
//! reverses; every provider call carries an idempotency key derived from
//! the attempt, so repeating a step never moves money twice.

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
use crate::store::{BookingRecord, CheckoutStore, Claim, PaymentRecord};
use crate::upstream::{Upstream, UpstreamError};

type Result<T, E = CheckoutError> = std::result::Result<T, E>;

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
            return self.store.booking(booking.id).await?.ok_or_else(|| {
                anyhow::anyhow!("booking {} vanished after insert", booking.id).into()
            });
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

    /// Pays for a pending booking. Idempotent per (user, key).
    pub async fn confirm_booking(
        &self,
        caller: &Caller,
        booking_id: Uuid,
        payment_method: String,
        key: String,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        self.confirmations
            .run(booking_id, async {
                let payment_id = Uuid::now_v7();
                match self
                    .store
                    .claim(booking_id, user, payment_id, &key, &payment_method)
                    .await?
                {
                    Claim::Claimed(booking) => {
                        self.drive(*booking, payment_id, &payment_method).await
                    }
                    Claim::NotClaimed => self.replay(user, booking_id, &key, &payment_method).await,
                }
            })
            .await
    }

    /// The answer for a confirmation that did not start a new attempt.
    async fn replay(
        &self,
        user: Uuid,
        booking_id: Uuid,
        key: &str,
        payment_method: &str,
    ) -> Result<BookingRecord> {
        if let Some(attempt) = self.store.payment_by_key(user, key).await? {
            if attempt.booking_id != booking_id {
                return Err(CheckoutError::IdempotencyKeyReused("booking"));
            }
            if attempt.payment_method != payment_method {
                return Err(CheckoutError::IdempotencyKeyReused("payment method"));
            }
            return match attempt.state {
                PaymentState::Captured | PaymentState::Refunded => self
                    .store
                    .booking(booking_id)
                    .await?
                    .ok_or(CheckoutError::BookingNotFound(booking_id)),
                PaymentState::Declined | PaymentState::Voided => Err(CheckoutError::Stored {
                    code: attempt.outcome_code.unwrap_or(Code::Aborted as i32),
                    reason: attempt
                        .outcome_reason
                        .unwrap_or_else(|| reason::CONFIRMATION_INTERRUPTED.to_owned()),
                    message: attempt
                        .outcome_message
                        .unwrap_or_else(|| "the payment did not go through".to_owned()),
                }),
                PaymentState::Authorizing | PaymentState::Authorized => {
                    Err(CheckoutError::ConfirmationInProgress)
                }
            };
        }
        let booking = match self.store.booking(booking_id).await? {
            Some(booking) if booking.user_id == user => booking,
            _ => return Err(CheckoutError::BookingNotFound(booking_id)),
        };
        Err(match booking.state {
            BookingState::Pending if booking.expire_time <= Utc::now() => {
                CheckoutError::BookingExpired(reason::HOLD_EXPIRED.to_owned())
            }
            BookingState::Pending | BookingState::Confirming => {
                CheckoutError::ConfirmationInProgress
            }
            BookingState::Expired => CheckoutError::BookingExpired(
                booking
                    .failure_reason
                    .unwrap_or_else(|| reason::HOLD_EXPIRED.to_owned()),
            ),
            state => CheckoutError::BookingNotPending(state.as_str()),
        })
    }

    /// Authorize, commit, capture, finish: the steps after a claim.
    async fn drive(
        &self,
        booking: BookingRecord,
        payment_id: Uuid,
        payment_method: &str,
    ) -> Result<BookingRecord> {
        self.fail_point(FailPoint::AfterClaim)?;
        let authorized = self
            .provider
            .authorize(AuthorizeRequest {
                idempotency_key: payment_id.to_string(),
                amount_minor: booking.total_minor,
                currency_code: booking.currency_code.clone(),
                payment_method: payment_method.to_owned(),
            })
            .await
            .map_err(provider_error)?;
        let provider_ref = match authorized {
            AuthorizeOutcome::Authorized { provider_ref } => provider_ref,
            AuthorizeOutcome::Declined { decline_code } => {
                let error = CheckoutError::PaymentDeclined(decline_code);
                self.end_attempt(payment_id, PaymentState::Declined, None, false, &error)
                    .await?;
                tracing::info!(booking_id = %booking.id, %payment_id, "payment declined");
                return Err(error);
            }
        };
        self.fail_point(FailPoint::AfterAuthorize)?;
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        match self
            .upstream
            .commit_hold(booking.user_id, &hold_name, booking.id)
            .await
        {
            Ok(_) => {}
            Err(UpstreamError::Refused {
                reason, message, ..
            }) => {
                self.provider
                    .void(&provider_ref, &void_key(payment_id))
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
                self.end_attempt(
                    payment_id,
                    PaymentState::Voided,
                    Some(&provider_ref),
                    true,
                    &error,
                )
                .await?;
                tracing::info!(booking_id = %booking.id, %payment_id, "seats gone; payment voided");
                return Err(error);
            }
            // Unknown outcome: the reconciler finds out and finishes or
            // reverses it.
            Err(UpstreamError::Unavailable(cause)) => {
                return Err(CheckoutError::Unavailable(cause));
            }
        }
        self.fail_point(FailPoint::AfterCommit)?;
        self.provider
            .capture(&provider_ref, &capture_key(payment_id))
            .await
            .map_err(provider_error)?;
        self.fail_point(FailPoint::AfterCapture)?;
        if !self.store.finish_confirm(payment_id, &provider_ref).await? {
            // A reconciler finished it first; answer what is stored.
            return self
                .store
                .booking(booking.id)
                .await?
                .ok_or(CheckoutError::BookingNotFound(booking.id));
        }
        tracing::info!(booking_id = %booking.id, %payment_id, "booking confirmed");
        let now = Utc::now();
        Ok(BookingRecord {
            state: BookingState::Confirmed,
            payment_id: Some(payment_id),
            confirmed_at: Some(now),
            ..booking
        })
    }

    async fn end_attempt(
        &self,
        payment_id: Uuid,
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
            .fail_attempt(
                payment_id,
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
                if self.store.cancel_pending(booking_id).await? {
                    // Unpaid seats come back now rather than at hold expiry.
                    let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
                    if let Err(error) = self
                        .upstream
                        .release_hold(booking.user_id, &hold_name)
                        .await
                    {
                        tracing::debug!(?error, %booking_id, "could not release the hold of a cancelled booking");
                    }
                } else {
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

    /// Settles one attempt a crashed request left behind, by asking the
    /// provider and inventory what really happened: captured → confirm;
    /// authorized and seats sold → capture, confirm; authorized and seats
    /// not sold → void; never authorized → end the attempt.
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
                    .finish_confirm(payment.id, &found.provider_ref)
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
                    .is_committed(booking.user_id, &hold_name, booking.id)
                    .await
                    .map_err(upstream_error)?;
                if committed {
                    self.provider
                        .capture(&found.provider_ref, &capture_key(payment.id))
                        .await
                        .map_err(provider_error)?;
                    self.store
                        .finish_confirm(payment.id, &found.provider_ref)
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
