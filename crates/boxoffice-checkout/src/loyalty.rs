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
use crate::store::loyalty::{Earning, Reversal};

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

    /// What one event asks of the ledger; events other than confirmations
    /// and cancellations ask nothing.
    fn change(&self, event: &Received) -> Result<Option<Change>, LoyaltyError> {
        let id = |value: &str, what: &'static str| {
            Uuid::parse_str(value).map_err(|_| LoyaltyError::Malformed(what))
        };
        let event_id = || event.event_id().ok_or(LoyaltyError::Malformed("event_id"));
        Ok(match event.payload() {
            Some(Payload::BookingConfirmed(confirmed)) => {
                let paid = confirmed
                    .total
                    .as_ref()
                    .map_or(0, |total| total.amount_minor);
                let points = loyalty::points_earned(paid, self.points_per_unit);
                if points > 0 {
                    Some(Change::Earn(Earning {
                        event_id: event_id()?,
                        user: id(&confirmed.user_id, "user_id")?,
                        booking: id(&confirmed.booking_id, "booking_id")?,
                        points,
                    }))
                } else {
                    None
                }
            }
            Some(Payload::BookingCancelled(cancelled)) => Some(Change::Reverse(Reversal {
                event_id: event_id()?,
                booking: id(&cancelled.booking_id, "booking_id")?,
            })),
            _ => None,
        })
    }
}

enum Change {
    Earn(Earning),
    Reverse(Reversal),
}

impl Handler for LoyaltyHandler {
    /// The whole batch in one transaction of two statements (earnings,
    /// then reversals), not one transaction per event: this group reacts
    /// to every confirmation, on the cores the confirmations run on.
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let (mut earned, mut reversed) = (Vec::new(), Vec::new());
        // A malformed event: the ones before it are applied, it is
        // dead-lettered (the library's `Poison` contract).
        let mut poison = None;
        for (index, event) in events.iter().enumerate() {
            match self.change(event) {
                Ok(Some(Change::Earn(earning))) => earned.push(earning),
                Ok(Some(Change::Reverse(reversal))) => reversed.push(reversal),
                Ok(None) => {}
                Err(LoyaltyError::Malformed(what)) => {
                    poison = Some(HandleError::Poison {
                        index,
                        reason: format!("a booking event with a malformed {what}"),
                    });
                    break;
                }
                Err(LoyaltyError::Store(error)) => {
                    return Err(HandleError::Failed {
                        index,
                        error: error.into(),
                    });
                }
            }
        }
        if !earned.is_empty() || !reversed.is_empty() {
            let changed = self
                .store
                .apply_loyalty(&earned, &reversed)
                .await
                .map_err(|error| HandleError::Unavailable(error.into()))?;
            tracing::debug!(
                earned = earned.len(),
                reversed = reversed.len(),
                changed,
                "loyalty points applied"
            );
        }
        poison.map_or(Ok(()), Err)
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
