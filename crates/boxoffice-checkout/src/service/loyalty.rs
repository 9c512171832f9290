//! Loyalty: a buyer spends points on a pending booking (repriced by the
//! server) and reads their balance, tier and history. Points are earned
//! and reversed from checkout's events (`crate::loyalty`).

use boxoffice_runtime::Caller;
use chrono::Utc;
use uuid::Uuid;

use super::{Checkout, Result};
use crate::error::CheckoutError;
use crate::store::BookingRecord;
use crate::store::loyalty::{LoyaltySummary, SpendChange};

impl Checkout {
    /// Sets the points the caller's pending booking spends (0: none).
    pub async fn apply_loyalty_points(
        &self,
        caller: &Caller,
        booking_id: Uuid,
        points: i64,
    ) -> Result<BookingRecord> {
        let user = Self::user(caller)?;
        let change = self
            .confirmations
            .run(
                booking_id,
                self.store
                    .spend_points(booking_id, user, points, Utc::now()),
            )
            .await?;
        match change {
            SpendChange::Booking(change) => Self::changed(booking_id, change),
            SpendChange::Refused(refusal) => Err(CheckoutError::PointsRefused(refusal)),
        }
    }

    pub async fn loyalty(&self, caller: &Caller) -> Result<LoyaltySummary> {
        let user = Self::user(caller)?;
        Ok(self.store.loyalty(user).await?)
    }
}
