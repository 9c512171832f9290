//! While a buyer completes a payment step at the provider (3-D Secure,
//! PayPal approval), their booking stays pending and its hold is given more
//! time, within inventory's bound (`BOXOFFICE_HOLD_MAX_EXTENSION_SECS`); the
//! booking's expiry, which the buyer sees, follows the hold's.

use crate::domain;
use crate::store::BookingRecord;
use crate::upstream::UpstreamError;

use super::Checkout;

impl Checkout {
    /// Extends the booking's hold and moves the booking's expiry with it.
    /// Best effort: the buyer is sent to the provider either way, and a
    /// hold that could not be extended keeps the expiry it had (confirming
    /// after it then answers HOLD_EXPIRED, as for any late buyer).
    pub(super) async fn extend_for_action(&self, booking: &BookingRecord) {
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        let expire_time = match self.upstream.extend_hold(booking.user_id, &hold_name).await {
            Ok(Some(expire_time)) => expire_time,
            Ok(None) => return,
            Err(UpstreamError::Refused { refusal, .. }) => {
                tracing::info!(booking_id = %booking.id, reason = refusal.reason(), "hold not extended for a payment action");
                return;
            }
            Err(UpstreamError::Unavailable(error) | UpstreamError::Malformed(error)) => {
                tracing::warn!(booking_id = %booking.id, error = format!("{error:#}"), "could not extend the hold for a payment action");
                return;
            }
        };
        if expire_time <= booking.expire_time {
            return;
        }
        match self.store.extend_booking(booking.id, expire_time).await {
            Ok(_) => {
                tracing::debug!(booking_id = %booking.id, %expire_time, "booking extended for a payment action");
            }
            Err(error) => {
                tracing::warn!(booking_id = %booking.id, error = %error, "could not extend the booking for a payment action");
            }
        }
    }
}
