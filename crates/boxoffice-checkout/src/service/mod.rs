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
//!
//! One file per use case: `create.rs` (CreateBooking), `confirm.rs`
//! (ConfirmBooking: authorize, sell, capture, record), `cancel.rs`
//! (CancelBooking and its refund) and `settle.rs` (what the reconciler
//! finishes after a crash or once a hold has run out), `door.rs` (scans at
//! the door, offline uploads, counts) and `transfer.rs` (tickets changing
//! hands). Reading bookings and what the use cases share live here.

mod cancel;
mod confirm;
mod create;
pub mod door;
mod extend;
mod loyalty;
mod promo;
mod settle;
mod single_flight;
pub mod transfer;

use std::sync::Arc;

use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::config::{CheckoutConfig, FailPoint};
use crate::error::CheckoutError;
use crate::payment::{PaymentProvider, ProviderError};
use crate::store::{BookingRecord, CheckoutStore};
use crate::upstream::{Upstream, UpstreamError};

use single_flight::SingleFlight;

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
        UpstreamError::Refused { refusal, message } => CheckoutError::Internal(anyhow::anyhow!(
            "inventory refused ({refusal:?}): {message}"
        )),
        UpstreamError::Malformed(cause) => CheckoutError::Internal(cause),
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
