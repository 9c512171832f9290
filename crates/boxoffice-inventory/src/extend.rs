//! ExtendHold: checkout gives a live hold more time while its buyer
//! completes a payment step at the provider (3-D Secure, PayPal approval),
//! within a bound past the hold's original expiry
//! (`InventoryConfig::max_hold_extension`), so an abandoned payment still
//! frees its seats on time.

use std::time::Duration;

use boxoffice_runtime::Caller;
use uuid::Uuid;

use crate::domain::{Hold, HoldRef, HoldState};
use crate::error::InventoryError;
use crate::service::{Inventory, require_service};
use crate::store::redis::ExtendOutcome;

impl Inventory {
    /// Moves `owner`'s live hold's expiry to now + `wanted` (`None`: as
    /// far as the bound allows). Refused for a hold that ended or that is
    /// not `owner`'s (not found), and for callers without the service role.
    pub async fn extend_hold(
        &self,
        caller: &Caller,
        hold: HoldRef,
        owner: Uuid,
        wanted: Option<Duration>,
    ) -> Result<Hold, InventoryError> {
        require_service(caller)?;
        let outcome = self
            .holds()
            .extend(hold, owner, wanted, self.config().max_hold_extension)
            .await
            .map_err(InventoryError::Unavailable)?;
        match outcome {
            ExtendOutcome::Extended(extended) => {
                tracing::info!(event_id = %hold.event_id, hold_id = %hold.hold_id, expires_ms = extended.expires_ms, "hold extended");
                Ok(extended)
            }
            ExtendOutcome::Ended(ended) => Err(match ended.state {
                HoldState::Committed => InventoryError::HoldAlreadyCommitted,
                HoldState::Released => InventoryError::HoldReleased,
                HoldState::Expired | HoldState::Active => InventoryError::HoldExpired,
            }),
            ExtendOutcome::NotFound => Err(InventoryError::HoldNotFound),
        }
    }
}
