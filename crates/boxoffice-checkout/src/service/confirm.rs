//! ConfirmBooking: authorize → inventory.CommitHold → capture → confirmed,
//! written once at the end; a retry with the same key resumes the same
//! attempt.

use boxoffice_runtime::Caller;
use chrono::Utc;
use tonic::Code;
use uuid::Uuid;

use super::{
    Checkout, Result, attempt_id, capture_key, provider_error, refund_key, upstream_error, void_key,
};
use crate::config::FailPoint;
use crate::domain::{self, BookingState, PaymentState};
use crate::error::{CheckoutError, reason};
use crate::payment::{AuthorizeOutcome, AuthorizeRequest, ProviderError};
use crate::store::postgres::Outcome;
use crate::store::{Attempt, BookingRecord, PaymentRecord};
use crate::upstream::{InventoryRefusal, UpstreamError};

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

impl Checkout {
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
        if !self.provider.supports(&payment_method) {
            return Err(CheckoutError::PaymentMethodUnavailable("paypal"));
        }
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
        let Some(provider_ref) = self.authorize(&booking, attempt, check).await? else {
            return Ok(Paid::Recheck);
        };
        self.fail_point(FailPoint::AfterAuthorize)?;
        if !self.sell(&booking, attempt, &provider_ref, check).await? {
            return Ok(Paid::Recheck);
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

    /// Authorizes the booking's total under the attempt's payment id and
    /// answers the provider's reference; `None` when an optimistic attempt
    /// left the happy path and is to be decided again.
    async fn authorize(
        &self,
        booking: &BookingRecord,
        attempt: &Attempt,
        check: Check,
    ) -> Result<Option<String>> {
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
        match authorized {
            Ok(AuthorizeOutcome::Authorized { provider_ref }) => Ok(Some(provider_ref)),
            Ok(AuthorizeOutcome::Declined { .. }) if optimistic => Ok(None),
            // Nothing recorded: the buyer authenticates (3-D Secure) or
            // approves (PayPal), then confirms again with the same key.
            // The booking's hold is extended meanwhile (within a bound).
            Ok(AuthorizeOutcome::ActionRequired { url, .. }) => {
                self.extend_for_action(booking).await;
                Err(CheckoutError::PaymentActionRequired(url))
            }
            Ok(AuthorizeOutcome::Declined { decline_code }) => {
                let error = CheckoutError::PaymentDeclined(decline_code);
                self.record_unpaid(attempt, PaymentState::Declined, None, false, &error)
                    .await?;
                tracing::info!(booking_id = %booking.id, payment_id = %attempt.payment_id, "payment declined");
                Err(error)
            }
            // The key (user and key) was used for another booking, amount
            // or payment method in an attempt not recorded yet.
            Err(ProviderError::KeyReused) if optimistic => Ok(None),
            Err(ProviderError::KeyReused) => Err(CheckoutError::IdempotencyKeyReused("booking")),
            Err(error) => Err(provider_error(error)),
        }
    }

    /// Sells the hold's seats to the attempt through inventory. `false`
    /// when an optimistic attempt found the seats sold to another attempt:
    /// its authorization is voided and the booking is to be decided again.
    async fn sell(
        &self,
        booking: &BookingRecord,
        attempt: &Attempt,
        provider_ref: &str,
        check: Check,
    ) -> Result<bool> {
        let optimistic = check == Check::Optimistic;
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        let committed = self
            .upstream
            .commit_hold(
                booking.user_id,
                &hold_name,
                booking.id,
                Some(attempt.payment_id),
            )
            .await;
        let void = || async {
            self.provider
                .void(provider_ref, &void_key(attempt.payment_id))
                .await
                .map_err(provider_error)
        };
        // A void no change of ours follows (another attempt paid, or the
        // booking is not pending): recorded in the audit log alone.
        let void_alone = || async {
            void().await?;
            self.store
                .record_voids(
                    booking.id,
                    &[(booking.total_minor, booking.currency_code.clone())],
                )
                .await?;
            Ok::<(), CheckoutError>(())
        };
        match committed {
            // Sold by this call, or by this very attempt before (a retry).
            Ok(sold) if sold.sold_to(attempt.payment_id) => Ok(true),
            // Sold, but not provably by this attempt (say, by one an
            // earlier version made without a sale id, which any commit
            // matches): the booking may not be pending at all.
            Ok(_) if optimistic => {
                void_alone().await?;
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(UpstreamError::Refused {
                refusal: InventoryRefusal::HoldAlreadyCommitted,
                ..
            }) if optimistic => {
                void_alone().await?;
                Ok(false)
            }
            Err(UpstreamError::Refused {
                refusal: InventoryRefusal::HoldAlreadyCommitted,
                ..
            }) => {
                // Another attempt (another key) sold this booking's seats
                // and pays for them; this one takes nothing.
                void_alone().await?;
                tracing::info!(booking_id = %booking.id, payment_id = %attempt.payment_id, "another attempt sold the seats; payment voided");
                Err(CheckoutError::ConfirmationInProgress)
            }
            // The seats are gone (hold released or run out): the money
            // goes back. An optimistic attempt first reads whether the
            // booking is still pending: if another instance paid or
            // cancelled it, that is decided again (the void recorded
            // alone); otherwise the attempt is recorded as voided with its
            // answer now, since deciding again would ask the gateway to
            // authorize a voided authorization, which PayPal refuses.
            Err(UpstreamError::Refused { .. })
                if optimistic && !self.still_pending(booking.id).await? =>
            {
                void_alone().await?;
                Ok(false)
            }
            Err(UpstreamError::Refused { refusal, message }) => {
                void().await?;
                Err(self
                    .seats_gone(attempt, provider_ref, &refusal, &message)
                    .await?)
            }
            // Unknown outcome: a retry with the same key, or the
            // reconciler, finds out and finishes or reverses it.
            Err(UpstreamError::Unavailable(cause)) => Err(CheckoutError::Unavailable(cause)),
            Err(UpstreamError::Malformed(cause)) => Err(CheckoutError::Internal(cause)),
        }
    }

    /// Whether the booking is pending as the database has it now.
    async fn still_pending(&self, booking_id: Uuid) -> Result<bool> {
        Ok(self
            .store
            .booking(booking_id)
            .await?
            .is_some_and(|booking| booking.state == BookingState::Pending))
    }

    /// Records an attempt whose seats inventory would not sell (its
    /// authorization already voided) with the answer every retry gets: the
    /// error returned.
    async fn seats_gone(
        &self,
        attempt: &Attempt,
        provider_ref: &str,
        refusal: &InventoryRefusal,
        message: &str,
    ) -> Result<CheckoutError> {
        let reason = match refusal.reason() {
            "" => reason::SEAT_UNAVAILABLE,
            reason => reason,
        };
        let error = CheckoutError::SeatsGone {
            message: format!("the seats could not be sold ({message}); the payment was voided"),
            reason: reason.to_owned(),
        };
        self.record_unpaid(
            attempt,
            PaymentState::Voided,
            Some(provider_ref),
            true,
            &error,
        )
        .await?;
        tracing::info!(booking_id = %attempt.booking_id, payment_id = %attempt.payment_id, "seats gone; payment voided");
        Ok(error)
    }

    /// Writes a paid attempt and answers the booking as it now stands.
    async fn record_paid(
        &self,
        booking: &BookingRecord,
        attempt: &Attempt,
        provider_ref: &str,
    ) -> Result<BookingRecord> {
        if self
            .store
            .record_paid(attempt, provider_ref, booking.total_minor)
            .await?
        {
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
        // A promo code was applied or removed (through another instance)
        // while this attempt paid the old total: the money goes back, then
        // the booking ends (the record refuses a paid amount that is not
        // the total, and the reconciler refunds and expires such a booking
        // too, so a crash in between ends the same way), and the buyer
        // books again.
        let repriced = now.state == BookingState::Pending && now.total_minor != booking.total_minor;
        // The booking ended (say, cancelled through a path that could not
        // see the sale) while its seats were sold to this attempt and paid:
        // give both back.
        tracing::warn!(booking_id = %booking.id, payment_id = %attempt.payment_id, state = now.state.as_str(), "paid for a booking that is no longer pending; refunding");
        self.provider
            .refund(provider_ref, booking.total_minor, &refund_key(booking.id))
            .await
            .map_err(provider_error)?;
        if repriced {
            self.store.expire_booking(booking.id).await?;
        }
        self.upstream
            .release_seats(booking.user_id, booking.event_id, booking.id)
            .await
            .map_err(upstream_error)?;
        if repriced {
            return Err(CheckoutError::PriceChanged);
        }
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
}
