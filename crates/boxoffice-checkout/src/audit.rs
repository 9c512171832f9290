//! Payment operations in the audit log (`boxoffice-audit`): written by
//! [`CheckoutStore`](crate::store::CheckoutStore)'s one transaction per
//! change, beside the events it publishes, so a record exists exactly when
//! the change committed. Each record is made from the event that the change
//! publishes: a `BookingConfirmed` is an authorization and its capture, a
//! `PaymentFailed` a declined authorization, a `RefundIssued` a refund.
//! A void (an authorization given back because the seats were gone, the
//! attempt was interrupted, or another attempt paid) publishes nothing:
//! the store writes its records ([`voided_authorization`]: the
//! authorization, which nothing else records, and its void) from the rows of the change that
//! follows it (the attempt ended as voided, the booking expired), or alone
//! when no change follows.
//!
//! Who and which request: [`Scoped`] wraps checkout's gRPC services and
//! keeps the caller's user id and the edge's `x-request-id` for the
//! request's task; a change made outside a request (the reconciler, a
//! consumer) is `system:checkout`. Confirmations are written by a batch
//! writer in another task: each one carries its origin there
//! ([`Origin::current`] is read when it is submitted) and the batch is run
//! inside [`with_batch`].

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use boxoffice_audit::PaymentRecord;
use boxoffice_events::{NewEvent, Payload};
use boxoffice_runtime::identity::USER_ID_HEADER;

/// Who asked for a change, as the audit log names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub actor: String,
    pub request_id: String,
}

tokio::task_local! {
    static REQUEST: Origin;
    static BATCH: Arc<HashMap<String, Origin>>;
}

/// Background work of checkout (no request).
const SYSTEM: &str = "system:checkout";

impl Origin {
    fn system() -> Self {
        Self {
            actor: SYSTEM.to_owned(),
            request_id: String::new(),
        }
    }

    /// The origin of the request this task serves, or `system:checkout`.
    pub fn current() -> Self {
        REQUEST
            .try_with(Clone::clone)
            .unwrap_or_else(|_| Self::system())
    }

    fn of_headers(headers: &http::HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| value.len() <= 128)
                .map(str::to_owned)
        };
        Self {
            actor: text(USER_ID_HEADER)
                .filter(|id| uuid::Uuid::parse_str(id).is_ok())
                .unwrap_or_else(|| "anonymous".to_owned()),
            request_id: text("x-request-id").unwrap_or_default(),
        }
    }
}

/// Runs a batch writer's work with the origins of its items (by booking
/// id), for the records it publishes.
pub(crate) async fn with_batch<F: Future>(origins: HashMap<String, Origin>, work: F) -> F::Output {
    BATCH.scope(Arc::new(origins), work).await
}

fn origin_of(booking_id: &str) -> Origin {
    BATCH
        .try_with(|origins| origins.get(booking_id).cloned())
        .ok()
        .flatten()
        .unwrap_or_else(Origin::current)
}

/// The records of an authorization of `booking_id` for `amount_minor` that
/// was voided: the authorization (recorded with nothing else, since it paid
/// for nothing) and its void.
pub(crate) fn voided_authorization(
    booking_id: uuid::Uuid,
    amount_minor: i64,
    currency_code: &str,
) -> [PaymentRecord; 2] {
    let booking = booking_id.to_string();
    let origin = origin_of(&booking);
    let record = |action: &'static str| PaymentRecord {
        actor: origin.actor.clone(),
        action,
        request_id: origin.request_id.clone(),
        target: format!("booking/{booking}"),
        outcome: "succeeded".to_owned(),
        amount_minor,
        currency_code: currency_code.to_owned(),
    };
    [record("payment.authorize"), record("payment.void")]
}

/// The payment operations `events` stand for.
pub(crate) fn records(events: &[NewEvent]) -> Vec<PaymentRecord> {
    let mut records = Vec::new();
    for event in events {
        let record = |action: &'static str,
                      booking: &str,
                      outcome: &str,
                      money: Option<&boxoffice_contracts::events::v1::Money>| {
            let origin = origin_of(booking);
            PaymentRecord {
                actor: origin.actor,
                action,
                request_id: origin.request_id,
                target: format!("booking/{booking}"),
                outcome: outcome.to_owned(),
                amount_minor: money.map_or(0, |money| money.amount_minor),
                currency_code: money
                    .map(|money| money.currency_code.clone())
                    .unwrap_or_default(),
            }
        };
        match &event.payload {
            Payload::BookingConfirmed(confirmed) => {
                let total = confirmed.total.as_ref();
                records.push(record(
                    "payment.authorize",
                    &confirmed.booking_id,
                    "succeeded",
                    total,
                ));
                records.push(record(
                    "payment.capture",
                    &confirmed.booking_id,
                    "succeeded",
                    total,
                ));
            }
            Payload::PaymentFailed(failed) => {
                let outcome = format!(
                    "declined: {}",
                    failed.reason.chars().take(64).collect::<String>()
                );
                records.push(record(
                    "payment.authorize",
                    &failed.booking_id,
                    &outcome,
                    None,
                ));
            }
            Payload::RefundIssued(refund) => {
                records.push(record(
                    "payment.refund",
                    &refund.booking_id,
                    "succeeded",
                    refund.amount.as_ref(),
                ));
            }
            _ => {}
        }
    }
    records
}

/// A checkout gRPC service whose requests run with their [`Origin`].
#[derive(Clone)]
pub struct Scoped<S>(pub S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for Scoped<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Scoped<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let origin = Origin::of_headers(request.headers());
        Box::pin(REQUEST.scope(origin, self.0.call(request)))
    }
}

#[cfg(test)]
mod tests {
    use boxoffice_contracts::events::v1 as pb;

    use super::*;

    #[tokio::test]
    async fn confirmations_are_an_authorization_and_a_capture_by_the_requester() {
        let origin = Origin {
            actor: "4f9c2b1e-8d1a-4c36-9c1e-2f0a5b7d9e10".into(),
            request_id: "req-1".into(),
        };
        let events = vec![NewEvent::new(
            "booking",
            "b-1",
            Payload::BookingConfirmed(pb::BookingConfirmed {
                booking_id: "b-1".into(),
                total: Some(pb::Money {
                    currency_code: "GBP".into(),
                    amount_minor: 2500,
                }),
                ..Default::default()
            }),
        )];
        let made = REQUEST
            .scope(origin.clone(), async { records(&events) })
            .await;
        assert_eq!(made.len(), 2);
        assert_eq!(made[1].action, "payment.capture");
        assert_eq!(made[1].actor, origin.actor);
        assert_eq!(made[1].request_id, "req-1");
        assert_eq!(made[1].amount_minor, 2500);
        // Outside any request: checkout itself.
        assert_eq!(records(&events)[0].actor, SYSTEM);
    }
}
