//! CreateBooking: a pending booking from the caller's active hold, priced
//! by the server from the hold's seat prices (inventory's copy of the
//! event's price tiers; a dynamic tier's price as the hold locked it).

use anyhow::Context as _;
use boxoffice_runtime::Caller;
use uuid::Uuid;

use super::{Checkout, Result, upstream_error};
use crate::domain::{self, HoldState, PricedHold};
use crate::error::CheckoutError;
use crate::store::BookingRecord;
use crate::store::postgres::NewBooking;
use crate::upstream::{InventoryRefusal, UpstreamError};

impl Checkout {
    /// A pending booking of the caller's active hold. Idempotent per create
    /// key and per hold: a retry is answered the booking made first.
    pub async fn create_booking(
        &self,
        caller: &Caller,
        event_id: Uuid,
        hold_id: Uuid,
        create_key: Option<String>,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        if let Some(existing) = self
            .existing_booking(user, hold_id, create_key.as_deref())
            .await?
        {
            return Ok(existing);
        }
        let hold = self.active_hold(user, event_id, hold_id).await?;
        let price = domain::price(&hold.seats, self.config.fee_per_ticket_minor);
        let event_start_time = self
            .upstream
            .event_start(event_id)
            .await
            .map_err(upstream_error)?;
        // Names on the summary and the tickets; a catalog that cannot say
        // does not stop the sale (the lines then name the seat index).
        let labels = match self.upstream.seat_labels(event_id).await {
            Ok(labels) => hold
                .seats
                .iter()
                .filter_map(|seat| {
                    labels
                        .get(&seat.seat_index)
                        .map(|label| (seat.seat_index, label.clone()))
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%event_id, error = ?error, "seat names unavailable; booking without them");
                Default::default()
            }
        };
        // The buyer's loyalty tier takes its percentage off every ticket.
        let tier = self.store.loyalty_tier(user).await?;
        let tier_discount_minor = tier.discount_on(hold.seats.iter().map(|seat| seat.price_minor));
        let booking = NewBooking {
            id: Uuid::now_v7(),
            user_id: user,
            event_id,
            hold_id,
            currency_code: hold.currency_code,
            subtotal_minor: price.subtotal_minor,
            fees_minor: price.fees_minor,
            create_key,
            event_start_time,
            expire_time: hold.expire_time,
            seats: hold.seats,
            labels,
            loyalty_tier: tier.as_str(),
            tier_discount_minor,
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

    /// The booking an earlier request made with this create key or of this
    /// hold. Someone else's booking of the hold is answered as a hold not
    /// found, so holds do not leak.
    async fn existing_booking(
        &self,
        user: Uuid,
        hold_id: Uuid,
        create_key: Option<&str>,
    ) -> Result<Option<BookingRecord>> {
        if let Some(key) = create_key
            && let Some(existing) = self.store.booking_by_create_key(user, key).await?
        {
            return if existing.hold_id == hold_id {
                Ok(Some(existing))
            } else {
                Err(CheckoutError::IdempotencyKeyReused("hold"))
            };
        }
        match self.store.booking_by_hold(hold_id).await? {
            Some(existing) if existing.user_id == user => Ok(Some(existing)),
            Some(_) => Err(CheckoutError::HoldNotFound),
            None => Ok(None),
        }
    }

    /// The caller's hold, while it is active, with inventory's prices.
    async fn active_hold(&self, user: Uuid, event_id: Uuid, hold_id: Uuid) -> Result<PricedHold> {
        let name = domain::hold_name(event_id, hold_id);
        let hold = match self.upstream.hold(user, &name).await {
            Ok(hold) => hold,
            Err(UpstreamError::Refused {
                refusal: InventoryRefusal::HoldNotFound,
                ..
            }) => return Err(CheckoutError::HoldNotFound),
            Err(error) => return Err(upstream_error(error)),
        };
        if hold.state != HoldState::Active {
            return Err(CheckoutError::HoldNotActive(hold.state));
        }
        Ok(PricedHold::try_from(&hold).with_context(|| format!("hold {hold_id}"))?)
    }
}
