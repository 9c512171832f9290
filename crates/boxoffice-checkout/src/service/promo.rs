//! Promo codes: admins create and list them; buyers apply one to (or take
//! it off) a pending booking, which is repriced by the server. Failed
//! applications count against the caller, so codes cannot be guessed at
//! speed.

use boxoffice_runtime::Caller;
use chrono::Utc;
use uuid::Uuid;

use super::{Checkout, Result, upstream_error};
use crate::domain::FieldError;
use crate::domain::promo::{self, PromoCode, PromoCodeUsage, PromoRefusal};
use crate::error::CheckoutError;
use crate::store::BookingRecord;
use crate::store::promo::PromoChange;

impl Checkout {
    pub async fn create_promo_code(
        &self,
        caller: &Caller,
        code: PromoCode,
    ) -> Result<PromoCodeUsage> {
        let admin = Self::user(caller)?;
        if !caller.is_admin() {
            return Err(CheckoutError::PromoAdminRequired);
        }
        promo::validate_new_code(&code)?;
        self.check_code_scope(caller, &code).await?;
        let created = self
            .store
            .create_promo_code(&code, admin)
            .await?
            .ok_or(CheckoutError::PromoCodeTaken)?;
        tracing::info!(promo_code_id = %created.code.id, event_id = ?created.code.event_id, "promo code created");
        Ok(created)
    }

    pub async fn promo_codes(
        &self,
        caller: &Caller,
        event_id: Option<Uuid>,
    ) -> Result<Vec<PromoCodeUsage>> {
        Self::user(caller)?;
        if !caller.is_admin() {
            return Err(CheckoutError::PromoAdminRequired);
        }
        let venue_id = match event_id {
            Some(event_id) => self
                .upstream
                .event_venue(event_id)
                .await
                .map_err(upstream_error)?,
            None => None,
        };
        Ok(self.store.promo_codes(event_id, venue_id).await?)
    }

    /// A new code's event exists (and its tiers are that event's), or its
    /// venue does: asked of the catalog as the admin creating it.
    async fn check_code_scope(&self, caller: &Caller, code: &PromoCode) -> Result<()> {
        if let Some(event_id) = code.event_id {
            let Some(event) = self
                .upstream
                .event_scope(caller, event_id)
                .await
                .map_err(upstream_error)?
            else {
                return Err(FieldError::new("promo_code.event_id", "names no event").into());
            };
            if let Some(stranger) = code
                .price_tier_ids
                .iter()
                .find(|tier| !event.price_tier_ids.contains(tier))
            {
                return Err(FieldError::new(
                    "promo_code.price_tier_ids",
                    format!("{stranger} is not a price tier of the event"),
                )
                .into());
            }
        }
        if let Some(venue_id) = code.venue_id
            && !self
                .upstream
                .venue_exists(caller, venue_id)
                .await
                .map_err(upstream_error)?
        {
            return Err(FieldError::new("promo_code.venue_id", "names no venue").into());
        }
        Ok(())
    }

    /// Applies `text` to the caller's pending booking. Waits for a
    /// confirmation of the booking running in this process (and they for
    /// it), so a price never changes under a payment here.
    pub async fn apply_promo_code(
        &self,
        caller: &Caller,
        booking_id: Uuid,
        text: &str,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        let now = Utc::now();
        if let Some(wait) = self.store.promo_guesses_blocked(user, now).await? {
            return Err(CheckoutError::PromoAttemptsExhausted {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let Some(code) = promo::normalise_code(text) else {
            self.store.record_failed_guess(user).await?;
            return Err(CheckoutError::PromoRefused(PromoRefusal::Unknown));
        };
        // An organiser's (venue's) code needs the booking's venue; the
        // catalog's answer is cached, so a rush of applies asks once.
        let venue_id = match self.store.booking(booking_id).await? {
            Some(booking) if booking.user_id == user => self
                .upstream
                .event_venue(booking.event_id)
                .await
                .map_err(upstream_error)?,
            _ => return Err(CheckoutError::BookingNotFound(booking_id)),
        };
        let change = self
            .confirmations
            .run(
                booking_id,
                self.store
                    .apply_promo_code(booking_id, user, &code, venue_id, now),
            )
            .await?;
        if let PromoChange::Refused(refusal) = &change {
            // Guessing is what unknown codes look like; a known code
            // refused for its window or limits is a buyer's honest try
            // (and finding a known one takes many unknown ones first).
            if *refusal == PromoRefusal::Unknown {
                self.store.record_failed_guess(user).await?;
            }
            tracing::info!(%booking_id, refusal = ?refusal, "promo code refused");
        }
        Self::changed(booking_id, change)
    }

    pub async fn remove_promo_code(
        &self,
        caller: &Caller,
        booking_id: Uuid,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        let change = self
            .confirmations
            .run(
                booking_id,
                self.store.remove_promo_code(booking_id, user, Utc::now()),
            )
            .await?;
        Self::changed(booking_id, change)
    }

    pub(super) fn changed(booking_id: Uuid, change: PromoChange) -> Result<BookingRecord> {
        match change {
            PromoChange::Done(booking) => Ok(*booking),
            PromoChange::BookingNotFound => Err(CheckoutError::BookingNotFound(booking_id)),
            PromoChange::NotPending(state) => Err(CheckoutError::BookingNotPending(state.as_str())),
            PromoChange::Expired => Err(CheckoutError::BookingExpired(
                crate::error::reason::HOLD_EXPIRED.to_owned(),
            )),
            PromoChange::Refused(refusal) => Err(CheckoutError::PromoRefused(refusal)),
        }
    }
}
