//! CancelBooking: a pending booking gives its hold back; a confirmed one
//! is refunded (by the refund policy) and its seats go back on sale.

use boxoffice_runtime::Caller;
use chrono::Utc;
use uuid::Uuid;

use super::{Checkout, Result, provider_error, refund_key, upstream_error};
use crate::config::FailPoint;
use crate::domain::{self, BookingState};
use crate::error::CheckoutError;
use crate::store::{BookingRecord, PaymentRecord};
use crate::upstream::{InventoryRefusal, UpstreamError};

impl Checkout {
    /// Cancels the caller's booking: a pending one gives its hold back, a
    /// confirmed one is refunded as the refund policy says and its seats go
    /// back on sale. Cancelling again answers the cancelled booking.
    pub async fn cancel_booking(&self, caller: &Caller, booking_id: Uuid) -> Result<BookingRecord> {
        let booking = self.visible_booking(caller, booking_id).await?;
        match booking.state {
            BookingState::Pending => self.cancel_pending(&booking).await?,
            BookingState::Confirming => return Err(CheckoutError::ConfirmationInProgress),
            BookingState::Confirmed => {
                // A ticket given away is someone else's now: no refund for it.
                if booking
                    .tickets
                    .iter()
                    .any(|ticket| ticket.holder_id.is_some())
                {
                    return Err(CheckoutError::TicketsTransferred);
                }
                // The tickets as paid for (the total less the fees): a
                // discount is not paid back in money.
                let refund = domain::refund_due(
                    (booking.total_minor - booking.fees_minor).max(0),
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

    /// Cancels a pending booking. The hold goes first: once it is released
    /// no payment attempt can sell it, and if one already has, inventory
    /// refuses and the booking is being paid for.
    async fn cancel_pending(&self, booking: &BookingRecord) -> Result<()> {
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        match self
            .upstream
            .release_hold(booking.user_id, &hold_name)
            .await
        {
            Ok(()) => {}
            Err(UpstreamError::Refused {
                refusal: InventoryRefusal::HoldAlreadyCommitted,
                ..
            }) => {
                return Err(CheckoutError::ConfirmationInProgress);
            }
            // Redis forgot the hold: PostgreSQL knows whether it sold.
            Err(UpstreamError::Refused {
                refusal: InventoryRefusal::HoldNotFound,
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
        if !self.store.cancel_pending(booking.id).await? {
            return Err(CheckoutError::ConfirmationInProgress);
        }
        Ok(())
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
}
