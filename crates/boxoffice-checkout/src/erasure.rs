//! Erasure in checkout: the `checkout-erasure` consumer group reads the
//! accounts stream and, for every `UserErased`, replaces the user's id on
//! their bookings and payments with a fresh random id (one per erased
//! user, stored nowhere else), so the bookings and payments stay for the
//! accounts and the statistics while nothing links them to the person any
//! more. Checkout holds no name or email; the id was the only link.
//!
//! Idempotent: a replayed `UserErased` finds no rows under the old id.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_events::{
    ConsumerConfig, ConsumerGroup, HandleError, Handler, Payload, Received, Transport,
};
use boxoffice_runtime::Shutdown;
use deadpool_postgres::Pool;
use uuid::Uuid;

/// The group's name (checkpoints live in checkout's schema).
pub const GROUP: &str = "checkout-erasure";
/// The producer whose stream carries `UserErased`.
pub const STREAM: &str = "accounts";

pub struct ErasureHandler {
    pool: Pool,
}

impl ErasureHandler {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

/// Anonymises `user_id`'s bookings, payments and transfers in one transaction;
/// returns how many bookings changed.
pub async fn anonymise(pool: &Pool, user_id: Uuid) -> anyhow::Result<u64> {
    let mut client = pool.get().await.context("connecting")?;
    let transaction = client.transaction().await.context("beginning")?;
    let pseudonym = Uuid::new_v4();
    let bookings = transaction
        .execute(
            "UPDATE checkout.bookings SET user_id = $2, create_key = NULL, updated_at = now()
              WHERE user_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising bookings")?;
    transaction
        .execute(
            "UPDATE checkout.payments SET user_id = $2, updated_at = now() WHERE user_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising payments")?;
    // Tickets they hold by transfer, their offers (withdrawn if still open)
    // and the transfers they accepted (whose address was theirs).
    transaction
        .execute(
            "UPDATE checkout.booking_tickets SET holder_id = $2 WHERE holder_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising ticket holders")?;
    transaction
        .execute(
            "UPDATE checkout.ticket_transfers SET sender_id = $2,
                 state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END,
                 decided_at = coalesce(decided_at, now())
              WHERE sender_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising sent transfers")?;
    transaction
        .execute(
            "UPDATE checkout.ticket_transfers SET recipient_id = $2, recipient_email = 'erased'
              WHERE recipient_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising received transfers")?;
    // Their promo code redemptions follow their bookings; their failed
    // guesses are nobody's business any more.
    transaction
        .execute(
            "UPDATE checkout.promo_redemptions SET user_id = $2 WHERE user_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising redemptions")?;
    transaction
        .execute(
            "UPDATE checkout.loyalty_entries SET user_id = $2 WHERE user_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising loyalty entries")?;
    transaction
        .execute(
            "UPDATE checkout.loyalty_accounts SET user_id = $2 WHERE user_id = $1",
            &[&user_id, &pseudonym],
        )
        .await
        .context("anonymising a loyalty account")?;
    transaction
        .execute(
            "DELETE FROM checkout.promo_attempts WHERE user_id = $1",
            &[&user_id],
        )
        .await
        .context("forgetting promo code attempts")?;
    transaction.commit().await.context("committing")?;
    Ok(bookings)
}

impl Handler for ErasureHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        for (index, event) in events.iter().enumerate() {
            let Some(Payload::UserErased(erased)) = event.payload() else {
                continue;
            };
            let Ok(user_id) = Uuid::parse_str(&erased.user_id) else {
                return Err(HandleError::Poison {
                    index,
                    reason: "UserErased without a valid user id".to_owned(),
                });
            };
            match anonymise(&self.pool, user_id).await {
                Ok(bookings) => tracing::info!(%user_id, bookings, "erased user anonymised"),
                Err(error) => return Err(HandleError::Failed { index, error }),
            }
        }
        Ok(())
    }
}

/// Starts the group (it runs until `shutdown`). Accounts' outbox must
/// exist (accounts migrated) first.
pub async fn start(
    transport: &Transport,
    pool: Pool,
    shutdown: Shutdown,
) -> anyhow::Result<ConsumerGroup> {
    let mut config = ConsumerConfig::new(GROUP, crate::store::SCHEMA, &[STREAM]);
    config.batch_size = 100;
    ConsumerGroup::start(
        transport,
        pool.clone(),
        config,
        Arc::new(ErasureHandler::new(pool)),
        shutdown,
    )
    .await
    .context("starting the erasure consumer")
}
