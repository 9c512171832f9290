//! Checkout's errors and how each reaches a caller: a gRPC code chosen on
//! purpose plus an `ErrorInfo` reason clients branch on. SQL, provider and
//! upstream failures are logged and answered as a bare `unavailable` (the
//! database, the provider or inventory cannot be reached: retry) or
//! `internal` (a bug).

use std::collections::HashMap;

use boxoffice_runtime::postgres::{self, DbError};
use boxoffice_runtime::status;
use tonic::{Code, Status};

use crate::config::FailPoint;
use crate::domain::loyalty::SpendRefusal;
use crate::domain::promo::PromoRefusal;
use crate::domain::{FieldError, HoldState};

/// `ErrorInfo` reasons checkout adds to the shared ones; those it shares
/// with inventory are defined in the contracts crate.
pub mod reason {
    pub use boxoffice_contracts::reason::{HOLD_EXPIRED, HOLD_NOT_FOUND, SEAT_UNAVAILABLE};
    pub const HOLD_NOT_ACTIVE: &str = "HOLD_NOT_ACTIVE";
    pub const BOOKING_EXPIRED: &str = "BOOKING_EXPIRED";
    pub const BOOKING_NOT_PENDING: &str = "BOOKING_NOT_PENDING";
    pub const CONFIRMATION_IN_PROGRESS: &str = "CONFIRMATION_IN_PROGRESS";
    pub const CONFIRMATION_INTERRUPTED: &str = "CONFIRMATION_INTERRUPTED";
    pub const PAYMENT_DECLINED: &str = "PAYMENT_DECLINED";
    pub const PAYMENT_ACTION_REQUIRED: &str = "PAYMENT_ACTION_REQUIRED";
    pub const PAYMENT_METHOD_UNAVAILABLE: &str = "PAYMENT_METHOD_UNAVAILABLE";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
    pub const REFUND_WINDOW_CLOSED: &str = "REFUND_WINDOW_CLOSED";
    pub const BOOKING_NOT_CANCELLABLE: &str = "BOOKING_NOT_CANCELLABLE";
    pub const SIMULATED_CRASH: &str = "SIMULATED_CRASH";
    pub use boxoffice_contracts::reason::ADMIN_REQUIRED;
    pub const SCAN_ID_REUSED: &str = "SCAN_ID_REUSED";
    pub const TRANSFER_TO_SELF: &str = "TRANSFER_TO_SELF";
    pub const TRANSFER_PENDING: &str = "TRANSFER_PENDING";
    pub const TRANSFER_NOT_PENDING: &str = "TRANSFER_NOT_PENDING";
    pub const TICKET_ALREADY_USED: &str = "TICKET_ALREADY_USED";
    pub const TICKET_NOT_TRANSFERABLE: &str = "TICKET_NOT_TRANSFERABLE";
    pub const TICKETS_TRANSFERRED: &str = "TICKETS_TRANSFERRED";
    pub const PRICE_CHANGED: &str = "PRICE_CHANGED";
    pub const PROMO_CODE_UNKNOWN: &str = "PROMO_CODE_UNKNOWN";
    pub const PROMO_CODE_EXPIRED: &str = "PROMO_CODE_EXPIRED";
    pub const PROMO_CODE_NOT_YET_VALID: &str = "PROMO_CODE_NOT_YET_VALID";
    pub const PROMO_CODE_EXHAUSTED: &str = "PROMO_CODE_EXHAUSTED";
    pub const PROMO_CODE_USER_LIMIT: &str = "PROMO_CODE_USER_LIMIT";
    pub const PROMO_CODE_WRONG_EVENT: &str = "PROMO_CODE_WRONG_EVENT";
    pub const PROMO_CODE_MIN_TICKETS: &str = "PROMO_CODE_MIN_TICKETS";
    pub const PROMO_CODE_NOT_APPLICABLE: &str = "PROMO_CODE_NOT_APPLICABLE";
    pub const PROMO_CODE_ATTEMPTS_EXHAUSTED: &str = "PROMO_CODE_ATTEMPTS_EXHAUSTED";
    pub const PROMO_CODE_TAKEN: &str = "PROMO_CODE_TAKEN";
    pub const DISCOUNT_EXCEEDS_TOTAL: &str = "DISCOUNT_EXCEEDS_TOTAL";
    pub const INSUFFICIENT_POINTS: &str = "INSUFFICIENT_POINTS";
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("{}: {}", .0.field, .0.description)]
    InvalidField(FieldError),
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("booking not found")]
    BookingNotFound(uuid::Uuid),
    #[error("hold not found")]
    HoldNotFound,
    /// The hold is not active any more (expired, released, sold).
    #[error("hold not active: {}", .0.as_str())]
    HoldNotActive(HoldState),
    #[error("booking expired")]
    BookingExpired(String),
    #[error("booking is {0}")]
    BookingNotPending(&'static str),
    #[error("a confirmation of this booking is in progress")]
    ConfirmationInProgress,
    #[error("payment declined: {0}")]
    PaymentDeclined(String),
    /// The buyer must authenticate at this URL (3-D Secure); nothing is
    /// recorded and the booking stays pending. ConfirmBooking answers it
    /// as the pending booking with its `payment_action`.
    #[error("the payment waits for the buyer")]
    PaymentActionRequired(String),
    /// The payment method's gateway is not configured here (PayPal
    /// without `BOXOFFICE_PAYPAL_URL`).
    #[error("payment method unavailable")]
    PaymentMethodUnavailable(&'static str),
    /// The seats could not be sold (taken, hold expired); the payment was
    /// voided.
    #[error("seats gone: {reason}")]
    SeatsGone { reason: String, message: String },
    #[error("idempotency key reused with other parameters")]
    IdempotencyKeyReused(&'static str),
    #[error("refund window closed")]
    RefundWindowClosed,
    #[error("booking cannot be cancelled: {0}")]
    NotCancellable(&'static str),
    /// The answer stored for an earlier attempt with the same key.
    #[error("stored answer {reason}")]
    Stored {
        code: i32,
        reason: String,
        message: String,
    },
    /// The door's RPCs are for admins (door staff, organisers).
    #[error("admin role required")]
    AdminRequired,
    #[error("scan id reused")]
    ScanIdReused,
    #[error("ticket not found")]
    TicketNotFound(String),
    #[error("transfer not found")]
    TransferNotFound(uuid::Uuid),
    #[error("transfer to self")]
    TransferToSelf,
    #[error("the ticket has a pending transfer")]
    TransferPending,
    #[error("transfer is {0}")]
    TransferNotPending(&'static str),
    #[error("ticket already used")]
    TicketAlreadyUsed,
    #[error("ticket not transferable")]
    TicketNotTransferable,
    #[error("booking has transferred tickets")]
    TicketsTransferred,
    /// The booking's total changed (a promo code) while it was being paid;
    /// the payment was refunded and the booking ended.
    #[error("the booking's price changed while it was paid")]
    PriceChanged,
    #[error("promo code refused: {0:?}")]
    PromoRefused(PromoRefusal),
    /// Too many unknown or unusable codes from this user lately.
    #[error("too many promo code attempts")]
    PromoAttemptsExhausted { retry_after_secs: u64 },
    #[error("points refused: {0:?}")]
    PointsRefused(SpendRefusal),
    #[error("promo code taken")]
    PromoCodeTaken,
    #[error("admin role required")]
    PromoAdminRequired,
    /// A test's failure point stopped the request as a crash would.
    #[error("simulated crash at {0:?}")]
    Crashed(FailPoint),
    #[error("dependency unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<DbError> for CheckoutError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            DbError::Internal(cause) => Self::Internal(cause),
        }
    }
}

/// An unexpected failure is internal, unless a database error in its cause
/// chain says the database is down (a store error that went through
/// `anyhow` on its way here is still an outage).
impl From<anyhow::Error> for CheckoutError {
    fn from(error: anyhow::Error) -> Self {
        match postgres::cause_is_unavailable(&error) {
            Some(true) => Self::Unavailable(error),
            _ => Self::Internal(error),
        }
    }
}

impl From<FieldError> for CheckoutError {
    fn from(error: FieldError) -> Self {
        Self::InvalidField(error)
    }
}

impl From<CheckoutError> for Status {
    fn from(error: CheckoutError) -> Self {
        use CheckoutError::*;
        match error {
            InvalidField(field) => status::invalid_field(&field.field, field.description),
            Unauthenticated => status::unauthenticated("sign in to book"),
            BookingNotFound(id) => status::not_found("booking", id),
            HoldNotFound => {
                status::with_reason(Code::NotFound, reason::HOLD_NOT_FOUND, "hold not found")
            }
            HoldNotActive(state) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                match state {
                    HoldState::Expired => reason::HOLD_EXPIRED,
                    _ => reason::HOLD_NOT_ACTIVE,
                },
                format!("the hold is {}; hold the seats again", state.as_str()),
                HashMap::from([("hold_state".to_owned(), state.as_str().to_owned())]),
            ),
            BookingExpired(why) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::BOOKING_EXPIRED,
                "the booking has expired; hold the seats again",
                HashMap::from([("cause".to_owned(), why)]),
            ),
            BookingNotPending(state) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::BOOKING_NOT_PENDING,
                format!("the booking is {state}"),
                HashMap::from([("state".to_owned(), state.to_owned())]),
            ),
            ConfirmationInProgress => status::with_reason(
                Code::Aborted,
                reason::CONFIRMATION_IN_PROGRESS,
                "a payment for this booking is in progress; retry shortly",
            ),
            PaymentDeclined(decline_code) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::PAYMENT_DECLINED,
                "the payment was declined; the seats stay held until the hold expires",
                HashMap::from([("decline_code".to_owned(), decline_code)]),
            ),
            PaymentActionRequired(url) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::PAYMENT_ACTION_REQUIRED,
                "the buyer must authenticate the payment first",
                HashMap::from([("url".to_owned(), url)]),
            ),
            PaymentMethodUnavailable(method) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::PAYMENT_METHOD_UNAVAILABLE,
                format!("{method} is not available here; pay with another method"),
                HashMap::from([("payment_method".to_owned(), method.to_owned())]),
            ),
            SeatsGone { reason, message } => status::with_reason(Code::Aborted, &reason, message),
            IdempotencyKeyReused(what) => status::with_reason_and_metadata(
                Code::InvalidArgument,
                reason::IDEMPOTENCY_KEY_REUSED,
                format!("idempotency_key was used with another {what}"),
                HashMap::from([("field".to_owned(), "idempotency_key".to_owned())]),
            ),
            RefundWindowClosed => status::with_reason(
                Code::FailedPrecondition,
                reason::REFUND_WINDOW_CLOSED,
                "the event is too close to cancel with a refund",
            ),
            NotCancellable(state) => status::with_reason(
                Code::FailedPrecondition,
                reason::BOOKING_NOT_CANCELLABLE,
                format!("a booking that is {state} cannot be cancelled"),
            ),
            Stored {
                code,
                reason,
                message,
            } => status::with_reason(Code::from(code), &reason, message),
            AdminRequired => status::with_reason(
                Code::PermissionDenied,
                reason::ADMIN_REQUIRED,
                "the door is for admins",
            ),
            ScanIdReused => status::with_reason_and_metadata(
                Code::InvalidArgument,
                reason::SCAN_ID_REUSED,
                "scan_id was used for another code, gate or direction",
                HashMap::from([("field".to_owned(), "scan_id".to_owned())]),
            ),
            TicketNotFound(name) => status::not_found("ticket", name),
            TransferNotFound(id) => status::not_found("transfer", id),
            TransferToSelf => status::with_reason(
                Code::FailedPrecondition,
                reason::TRANSFER_TO_SELF,
                "a ticket cannot be sent to its own holder",
            ),
            TransferPending => status::with_reason(
                Code::FailedPrecondition,
                reason::TRANSFER_PENDING,
                "the ticket has a transfer waiting; cancel it first",
            ),
            TransferNotPending(state) => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::TRANSFER_NOT_PENDING,
                format!("the transfer is {state}"),
                HashMap::from([("state".to_owned(), state.to_owned())]),
            ),
            TicketAlreadyUsed => status::with_reason(
                Code::FailedPrecondition,
                reason::TICKET_ALREADY_USED,
                "the ticket was already used at the door",
            ),
            TicketNotTransferable => status::with_reason(
                Code::FailedPrecondition,
                reason::TICKET_NOT_TRANSFERABLE,
                "the ticket cannot change hands (its booking is not confirmed, or it changed hands)",
            ),
            TicketsTransferred => status::with_reason(
                Code::FailedPrecondition,
                reason::TICKETS_TRANSFERRED,
                "a booking with tickets given away cannot be cancelled",
            ),
            PriceChanged => status::with_reason(
                Code::Aborted,
                reason::PRICE_CHANGED,
                "the booking's price changed while it was paid; the payment was refunded, book again",
            ),
            PromoRefused(refusal) => {
                let (code, why, message) = match refusal {
                    PromoRefusal::Unknown => (
                        Code::NotFound,
                        reason::PROMO_CODE_UNKNOWN,
                        "no such promo code",
                    ),
                    PromoRefusal::NotYetValid => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_NOT_YET_VALID,
                        "the promo code is not valid yet",
                    ),
                    PromoRefusal::Expired => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_EXPIRED,
                        "the promo code has expired",
                    ),
                    PromoRefusal::Exhausted => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_EXHAUSTED,
                        "the promo code has been used as often as it may be",
                    ),
                    PromoRefusal::UserLimit => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_USER_LIMIT,
                        "you have used this promo code as often as you may",
                    ),
                    PromoRefusal::WrongEvent => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_WRONG_EVENT,
                        "the promo code is not for these tickets",
                    ),
                    PromoRefusal::MinTickets => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_MIN_TICKETS,
                        "the promo code needs more tickets in the booking",
                    ),
                    PromoRefusal::NotApplicable => (
                        Code::FailedPrecondition,
                        reason::PROMO_CODE_NOT_APPLICABLE,
                        "the promo code takes nothing off this booking",
                    ),
                    PromoRefusal::ExceedsTotal => (
                        Code::FailedPrecondition,
                        reason::DISCOUNT_EXCEEDS_TOTAL,
                        "the discount would leave nothing to pay",
                    ),
                };
                status::with_reason(code, why, message)
            }
            PromoAttemptsExhausted { retry_after_secs } => status::with_reason_and_metadata(
                Code::ResourceExhausted,
                reason::PROMO_CODE_ATTEMPTS_EXHAUSTED,
                "too many promo code attempts; try again later",
                HashMap::from([("retry_after_secs".to_owned(), retry_after_secs.to_string())]),
            ),
            PointsRefused(SpendRefusal::InsufficientPoints) => status::with_reason(
                Code::FailedPrecondition,
                reason::INSUFFICIENT_POINTS,
                "not that many loyalty points to spend",
            ),
            PointsRefused(SpendRefusal::ExceedsTotal) => status::with_reason(
                Code::FailedPrecondition,
                reason::DISCOUNT_EXCEEDS_TOTAL,
                "the points would take off more than the tickets cost",
            ),
            PromoCodeTaken => status::with_reason(
                Code::AlreadyExists,
                reason::PROMO_CODE_TAKEN,
                "a promo code with this text exists",
            ),
            PromoAdminRequired => status::with_reason(
                Code::PermissionDenied,
                reason::ADMIN_REQUIRED,
                "promo codes are managed by admins",
            ),
            Crashed(point) => status::with_reason(
                Code::Unavailable,
                reason::SIMULATED_CRASH,
                format!("simulated crash at {point:?}"),
            ),
            Unavailable(error) => status::unavailable(&error),
            Internal(error) => status::internal(&error),
        }
    }
}

impl CheckoutError {
    /// What a retry with the same key is answered, for failures that end
    /// an attempt.
    pub fn stored(&self) -> Option<(i32, String, String)> {
        let status = match self {
            Self::PaymentDeclined(_) | Self::SeatsGone { .. } => {
                Status::from(self.clone_for_storage())
            }
            _ => return None,
        };
        let reason = status::reason_of(&status).unwrap_or_default();
        Some((status.code() as i32, reason, status.message().to_owned()))
    }

    fn clone_for_storage(&self) -> Self {
        match self {
            Self::PaymentDeclined(code) => Self::PaymentDeclined(code.clone()),
            Self::SeatsGone { reason, message } => Self::SeatsGone {
                reason: reason.clone(),
                message: message.clone(),
            },
            _ => Self::Internal(anyhow::anyhow!("not stored")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_are_failed_preconditions_with_a_reason() {
        let status = Status::from(CheckoutError::PaymentDeclined("generic_decline".into()));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status::reason_of(&status).as_deref(),
            Some(reason::PAYMENT_DECLINED)
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = Status::from(CheckoutError::Internal(anyhow::anyhow!(
            "relation checkout.bookings"
        )));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("relation"));
    }
}
