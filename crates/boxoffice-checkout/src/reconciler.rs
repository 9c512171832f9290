//! The reconciler: a background task that finishes or reverses work a
//! crashed request left half done, so every paid booking ends confirmed or
//! refunded and none stays pending past its hold. A pending booking is
//! settled once its hold has run out (plus `reconcile_after`, longer than
//! any request's deadline): no sale of it can happen any more, so what
//! inventory and the provider say is final. A booking it gives up on never
//! strands seats: it is expired, then whatever inventory sold to it is
//! released, and the release is owed (and retried) until it succeeds; so
//! does a booking a confirmation expired because its seats could not be
//! sold (owed releases are taken up once untouched for `reconcile_after`,
//! when any sale still under way has landed). Cancellations (and attempts an
//! earlier version claimed) are taken up once untouched for
//! `reconcile_after`. Every state change it makes is a conditional update,
//! so it never fights a live request.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_runtime::Shutdown;

use crate::service::{Checkout, Settled};

/// Rows one pass handles at most per kind (the next pass takes the rest).
const BATCH: i64 = 200;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub payments_settled: usize,
    pub cancellations_finished: usize,
    pub bookings_expired: u64,
    /// Expired bookings whose seats an earlier pass could not release.
    pub releases_finished: usize,
    pub failures: usize,
}

/// One pass over everything older than `older_than`.
pub async fn reconcile_once(
    checkout: &Checkout,
    older_than: Duration,
) -> anyhow::Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    for (payment, booking) in checkout.store().stale_payments(older_than, BATCH).await? {
        match checkout.settle(&payment, &booking).await {
            Ok(action) => {
                report.payments_settled += 1;
                tracing::info!(payment_id = %payment.id, booking_id = %booking.id, action, "reconciled payment");
            }
            Err(error) => {
                report.failures += 1;
                tracing::warn!(payment_id = %payment.id, error = %error, "could not reconcile payment");
            }
        }
    }
    for booking in checkout
        .store()
        .stale_cancellations(older_than, BATCH)
        .await?
    {
        match checkout.finish_cancel(&booking).await {
            Ok(()) => report.cancellations_finished += 1,
            Err(error) => {
                report.failures += 1;
                tracing::warn!(booking_id = %booking.id, error = %error, "could not finish cancellation");
            }
        }
    }
    for booking in checkout
        .store()
        .pending_past_hold(older_than, BATCH)
        .await?
    {
        match checkout.settle_pending(&booking).await {
            Ok(Settled::Confirmed) => {
                report.payments_settled += 1;
                tracing::info!(booking_id = %booking.id, "reconciled a paid booking");
            }
            Ok(Settled::Expired) => report.bookings_expired += 1,
            Ok(Settled::AlreadySettled) => {}
            Err(error) => {
                report.failures += 1;
                tracing::warn!(booking_id = %booking.id, error = %error, "could not settle a pending booking");
            }
        }
    }
    for booking in checkout.store().releases_owed(older_than, BATCH).await? {
        match checkout.release_expired(&booking).await {
            Ok(seats) => {
                report.releases_finished += 1;
                tracing::info!(booking_id = %booking.id, seats, "finished an expired booking's release");
            }
            Err(error) => {
                report.failures += 1;
                tracing::warn!(booking_id = %booking.id, error = %error, "could not release an expired booking's seats");
            }
        }
    }
    Ok(report)
}

/// Runs passes every `interval` until shutdown.
pub async fn run(checkout: Arc<Checkout>, interval: Duration, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let older_than = checkout.config().reconcile_after;
        if let Err(error) = reconcile_once(&checkout, older_than).await {
            tracing::warn!(error = format!("{error:#}"), "reconciler pass failed");
        }
    }
}
