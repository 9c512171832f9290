//! A pending booking's expiry following its hold's when inventory extends
//! the hold (a buyer completing 3-D Secure or a PayPal approval).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::postgres::{CheckoutStore, prepared};
use boxoffice_runtime::postgres::{DbContext as _, DbResult};

impl CheckoutStore {
    /// Moves a pending booking's expiry later to `expire_time` (never
    /// earlier: a late or repeated answer changes nothing). False when the
    /// booking is not pending or already expires as late.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "checkout.extend_booking", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn extend_booking(
        &self,
        booking_id: Uuid,
        expire_time: DateTime<Utc>,
    ) -> DbResult<bool> {
        self.forget_recent(booking_id);
        let client = self.client().await?;
        let statement = prepared(
            &client,
            "UPDATE checkout.bookings SET expire_time = $2, updated_at = now()
             WHERE id = $1 AND state = 'pending' AND expire_time < $2",
        )
        .await?;
        let changed = client
            .execute(&statement, &[&booking_id, &expire_time])
            .await
            .db_context("extending a pending booking")?;
        Ok(changed == 1)
    }
}
