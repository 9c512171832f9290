//! What the reconciler finishes: pending bookings past their hold (settled
//! from what the provider and inventory know), attempts an earlier version
//! claimed and a crash left behind, and seats an expired booking owes back.

use tonic::Code;
use uuid::Uuid;

use super::{
    Checkout, Result, Settled, capture_key, provider_error, refund_key, upstream_error, void_key,
};
use crate::domain::{self, PaymentState};
use crate::error::{CheckoutError, reason};
use crate::payment::ProviderStatus;
use crate::store::postgres::Outcome;
use crate::store::{Attempt, BookingRecord, PaymentRecord};

impl Checkout {
    /// Settles a pending booking whose hold has run out, by asking the
    /// provider and inventory what its attempts did (no sale can happen
    /// any more, so their answers are final): the attempt whose sale went
    /// through is captured and recorded, and the booking confirmed; every
    /// other authorization is voided; with nothing sold the booking
    /// expires.
    pub(crate) async fn settle_pending(&self, booking: &BookingRecord) -> Result<Settled> {
        let payments = self
            .provider
            .search(&booking.id.to_string())
            .await
            .map_err(provider_error)?;
        let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
        let mut paid = None;
        // Authorizations voided here (amount, currency), for the audit log.
        let mut voids = Vec::new();
        for payment in &payments {
            let Ok(payment_id) = Uuid::parse_str(&payment.idempotency_key) else {
                continue;
            };
            if matches!(
                payment.status,
                ProviderStatus::Voided | ProviderStatus::Declined
            ) {
                continue;
            }
            // One sale id sells a booking; the first one found is it.
            let sold = paid.is_none()
                && self
                    .upstream
                    .is_committed(booking.user_id, &hold_name, booking.id, Some(payment_id))
                    .await
                    .map_err(upstream_error)?;
            match (sold, payment.status) {
                (true, ProviderStatus::Authorized) => {
                    self.provider
                        .capture(&payment.provider_ref, &capture_key(payment_id))
                        .await
                        .map_err(provider_error)?;
                    paid = Some((payment_id, payment));
                }
                (true, _) => paid = Some((payment_id, payment)),
                (false, ProviderStatus::Authorized) => {
                    self.provider
                        .void(&payment.provider_ref, &void_key(payment_id))
                        .await
                        .map_err(provider_error)?;
                    voids.push((payment.amount_minor, payment.currency_code.clone()));
                }
                (false, ProviderStatus::Captured) => {
                    // Captures follow sales, so this is never expected;
                    // money taken for nothing goes back.
                    tracing::error!(booking_id = %booking.id, %payment_id, "captured payment without a sale; refunding");
                    self.provider
                        .refund(
                            &payment.provider_ref,
                            payment.amount_minor,
                            &format!("refund-unsold:{payment_id}"),
                        )
                        .await
                        .map_err(provider_error)?;
                }
                (false, _) => {}
            }
        }
        let Some((payment_id, payment)) = paid else {
            let statuses: Vec<_> = payments.iter().map(|payment| payment.status).collect();
            return self.expire_unpaid(booking, &statuses, &voids).await;
        };
        if !voids.is_empty() {
            // Another attempt paid: the voids change nothing of ours.
            self.store.record_voids(booking.id, &voids).await?;
        }
        if payment.amount_minor != booking.total_minor {
            // A promo code or points changed the total after this attempt
            // was authorized: it paid a price the booking no longer has.
            // The money goes back first (a crash after it finds the
            // payment refunded and comes here again), then the booking
            // ends and its seats go back.
            self.provider
                .refund(
                    &payment.provider_ref,
                    payment.amount_minor,
                    &refund_key(booking.id),
                )
                .await
                .map_err(provider_error)?;
            if !self.store.expire_booking(booking.id).await? {
                return Ok(Settled::AlreadySettled);
            }
            self.release_expired(booking).await?;
            tracing::warn!(booking_id = %booking.id, %payment_id, "paid a total the booking no longer has; refunded and expired");
            return Ok(Settled::Expired);
        }
        let attempt = Attempt {
            payment_id,
            booking_id: booking.id,
            user_id: booking.user_id,
            key: payment.client_key.clone(),
            method: payment.payment_method.clone(),
        };
        Ok(
            if self
                .store
                .record_paid(&attempt, &payment.provider_ref, payment.amount_minor)
                .await?
            {
                Settled::Confirmed
            } else {
                Settled::AlreadySettled
            },
        )
    }

    /// Expires a pending booking nothing the provider knows of paid for
    /// (`statuses`: what it knows). Expired first, so a late retry can no
    /// longer confirm it (its record would find the booking not pending and
    /// put the seats back itself), then whatever inventory sold to it goes
    /// back: an attempt whose payment the provider has no record of may
    /// still have sold the seats. The booking owes the release until
    /// inventory confirms it, so a crash in between is finished by the next
    /// pass. The authorizations voided before it (`voids`) are recorded in
    /// the audit log with the expiry.
    async fn expire_unpaid(
        &self,
        booking: &BookingRecord,
        statuses: &[ProviderStatus],
        voids: &[(i64, String)],
    ) -> Result<Settled> {
        if !self
            .store
            .expire_booking_after_voids(booking.id, voids)
            .await?
        {
            return Ok(Settled::AlreadySettled);
        }
        let released = self.release_expired(booking).await?;
        tracing::info!(
            booking_id = %booking.id,
            provider_payments = statuses.len(),
            provider_statuses = ?statuses,
            seats_released = released,
            "expired a pending booking nothing paid for"
        );
        Ok(Settled::Expired)
    }

    /// Puts back on sale whatever inventory sold to an expired booking
    /// (idempotent: nothing sold, nothing released) and clears the release
    /// it owed. Answers how many seats went back.
    pub(crate) async fn release_expired(&self, booking: &BookingRecord) -> Result<usize> {
        let released = self
            .upstream
            .release_seats(booking.user_id, booking.event_id, booking.id)
            .await
            .map_err(upstream_error)?;
        if !released.is_empty() {
            tracing::warn!(
                booking_id = %booking.id,
                event_id = %booking.event_id,
                seats = released.len(),
                "an expired booking had sold seats with no payment to show; they are back on sale"
            );
        }
        self.store.seats_released(booking.id).await?;
        Ok(released.len())
    }

    /// Settles one attempt an earlier version claimed (booking
    /// `confirming`, payment recorded before the provider was called) and a
    /// crashed request left behind, by asking the provider and inventory
    /// what really happened: captured → confirm; authorized and seats sold →
    /// capture, confirm; authorized and seats not sold → void; never
    /// authorized → end the attempt.
    pub(crate) async fn settle(
        &self,
        payment: &PaymentRecord,
        booking: &BookingRecord,
    ) -> Result<&'static str> {
        let found = self
            .provider
            .lookup(&payment.id.to_string())
            .await
            .map_err(provider_error)?;
        let interrupted = CheckoutError::Stored {
            code: Code::Aborted as i32,
            reason: reason::CONFIRMATION_INTERRUPTED.to_owned(),
            message:
                "the payment was interrupted and nothing was charged; confirm again with a new key"
                    .to_owned(),
        };
        let Some(found) = found else {
            self.store_interrupted(payment.id, None, false, &interrupted)
                .await?;
            return Ok("never authorized");
        };
        match found.status {
            ProviderStatus::Captured | ProviderStatus::Refunded => {
                self.store
                    .finish_claimed(payment.id, &found.provider_ref)
                    .await?;
                Ok("marked confirmed")
            }
            ProviderStatus::Declined | ProviderStatus::Voided => {
                self.store_interrupted(payment.id, Some(&found.provider_ref), false, &interrupted)
                    .await?;
                Ok("ended")
            }
            ProviderStatus::Authorized => {
                let hold_name = domain::hold_name(booking.event_id, booking.hold_id);
                let committed = self
                    .upstream
                    .is_committed(booking.user_id, &hold_name, booking.id, None)
                    .await
                    .map_err(upstream_error)?;
                if committed {
                    self.provider
                        .capture(&found.provider_ref, &capture_key(payment.id))
                        .await
                        .map_err(provider_error)?;
                    self.store
                        .finish_claimed(payment.id, &found.provider_ref)
                        .await?;
                    Ok("captured")
                } else {
                    self.provider
                        .void(&found.provider_ref, &void_key(payment.id))
                        .await
                        .map_err(provider_error)?;
                    self.store_interrupted(
                        payment.id,
                        Some(&found.provider_ref),
                        true,
                        &interrupted,
                    )
                    .await?;
                    Ok("voided")
                }
            }
        }
    }

    /// Ends an interrupted attempt as voided; `voided_here`: after this
    /// settlement's own void of its authorization (recorded in the audit
    /// log with it).
    async fn store_interrupted(
        &self,
        payment_id: Uuid,
        provider_ref: Option<&str>,
        voided_here: bool,
        answer: &CheckoutError,
    ) -> Result<()> {
        let CheckoutError::Stored {
            code,
            reason,
            message,
        } = answer
        else {
            return Err(anyhow::anyhow!("not a stored answer").into());
        };
        self.store
            .fail_attempt(
                payment_id,
                PaymentState::Voided,
                provider_ref,
                false,
                voided_here,
                &Outcome {
                    code: *code,
                    reason: reason.clone(),
                    message: message.clone(),
                },
            )
            .await?;
        Ok(())
    }
}
