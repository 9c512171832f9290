//! Loyalty earning: the `checkout-loyalty` consumer group reads checkout's
//! own stream; a `BookingConfirmed` earns the buyer points for what they
//! paid, a `BookingCancelled` of a booking that earned takes them back.
//! Idempotent by event id (and at most one earning and one reversal per
//! booking), so redelivery changes nothing.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_events::{
    ConsumerConfig, ConsumerGroup, HandleError, Handler, Payload, Received, Transport,
};
use boxoffice_runtime::Shutdown;
use uuid::Uuid;

use crate::domain::loyalty;
use crate::store::CheckoutStore;

/// The group's name (checkpoints live in checkout's schema).
pub const GROUP: &str = "checkout-loyalty";
/// Checkout's own stream.
pub const STREAM: &str = "checkout";

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LoyaltyError {
    /// The event cannot be read (poison: retrying will not help).
    #[error("malformed event: {0}")]
    Malformed(&'static str),
    /// The database failed; the batch is retried.
    #[error("storing loyalty points")]
    Store(#[from] boxoffice_runtime::postgres::DbError),
}

pub struct LoyaltyHandler {
    store: CheckoutStore,
    points_per_unit: u32,
}

impl LoyaltyHandler {
    pub fn new(store: CheckoutStore, points_per_unit: u32) -> Self {
        Self {
            store,
            points_per_unit,
        }
    }

    /// Applies one event; events other than confirmations and
    /// cancellations are skipped.
    pub async fn apply(&self, event: &Received) -> Result<(), LoyaltyError> {
        let id = |value: &str, what: &'static str| {
            Uuid::parse_str(value).map_err(|_| LoyaltyError::Malformed(what))
        };
        let event_id = || event.event_id().ok_or(LoyaltyError::Malformed("event_id"));
        match event.payload() {
            Some(Payload::BookingConfirmed(confirmed)) => {
                let event_id = event_id()?;
                let user = id(&confirmed.user_id, "user_id")?;
                let booking = id(&confirmed.booking_id, "booking_id")?;
                let paid = confirmed
                    .total
                    .as_ref()
                    .map_or(0, |total| total.amount_minor);
                let points = loyalty::points_earned(paid, self.points_per_unit);
                if points > 0 {
                    let earned = self
                        .store
                        .earn_points(event_id, user, booking, points)
                        .await?;
                    tracing::debug!(booking_id = %booking, points, earned, "loyalty points earned");
                }
            }
            Some(Payload::BookingCancelled(cancelled)) => {
                let event_id = event_id()?;
                let booking = id(&cancelled.booking_id, "booking_id")?;
                self.store.reverse_points(event_id, booking).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Handler for LoyaltyHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        for (index, event) in events.iter().enumerate() {
            match self.apply(event).await {
                Ok(()) => {}
                Err(LoyaltyError::Malformed(what)) => {
                    return Err(HandleError::Poison {
                        index,
                        reason: format!("a booking event with a malformed {what}"),
                    });
                }
                Err(LoyaltyError::Store(error)) => {
                    return Err(HandleError::Failed {
                        index,
                        error: error.into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Starts the group (it runs until `shutdown`). Checkout's outbox exists
/// once checkout has migrated.
pub async fn start(
    transport: &Transport,
    store: CheckoutStore,
    points_per_unit: u32,
    shutdown: Shutdown,
) -> anyhow::Result<ConsumerGroup> {
    let mut config = ConsumerConfig::new(GROUP, crate::store::SCHEMA, &[STREAM]);
    config.batch_size = 100;
    ConsumerGroup::start(
        transport,
        store.pool().clone(),
        config,
        Arc::new(LoyaltyHandler::new(store, points_per_unit)),
        shutdown,
    )
    .await
    .context("starting the loyalty consumer")
}
