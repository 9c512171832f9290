//! Inventory's errors and how each reaches a caller: a gRPC code chosen on
//! purpose plus an `ErrorInfo` reason clients branch on. Redis and SQL
//! failures are logged and answered as a bare `unavailable` / `internal`.

use std::collections::HashMap;

use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::domain::admission::AdmissionRefusal;
use crate::domain::{FieldError, SeatRequestError};

/// `ErrorInfo` reasons inventory adds to the shared ones; those other
/// services read are defined in the contracts crate.
pub(crate) mod reason {
    pub(crate) use boxoffice_contracts::reason::{
        HOLD_ALREADY_COMMITTED, HOLD_EXPIRED, HOLD_NOT_FOUND, HOLD_RELEASED, SEAT_UNAVAILABLE,
        SERVICE_ROLE_REQUIRED,
    };

    pub(crate) const EVENT_NOT_FOUND: &str = "EVENT_NOT_FOUND";
    pub(crate) const EVENT_NOT_ON_SALE: &str = "EVENT_NOT_ON_SALE";
    pub(crate) const SEAT_OUT_OF_RANGE: &str = "SEAT_OUT_OF_RANGE";
    pub(crate) const SEAT_NOT_FOR_SALE: &str = "SEAT_NOT_FOR_SALE";
    pub(crate) const DUPLICATE_SEAT: &str = "DUPLICATE_SEAT";
    pub(crate) const TOO_MANY_SEATS: &str = "TOO_MANY_SEATS";
    pub(crate) const TOO_MANY_HOLDS: &str = "TOO_MANY_HOLDS";
    pub(crate) const NO_SEATS_MATCH: &str = "NO_SEATS_MATCH";
    pub(crate) const ADMISSION_REQUIRED: &str = "ADMISSION_REQUIRED";
    pub(crate) const ADMISSION_TOKEN_INVALID: &str = "ADMISSION_TOKEN_INVALID";
    pub(crate) const ADMISSION_TOKEN_EXPIRED: &str = "ADMISSION_TOKEN_EXPIRED";
    pub(crate) const ADMISSION_USED: &str = "ADMISSION_USED";
    pub(crate) const WAITING_ROOM_OFF: &str = "WAITING_ROOM_OFF";
    pub(crate) const NOT_IN_QUEUE: &str = "NOT_IN_QUEUE";
    pub(crate) const EVENT_NOT_SOLD_OUT: &str = "EVENT_NOT_SOLD_OUT";
    pub(crate) const WAITLIST_ENTRY_NOT_FOUND: &str = "WAITLIST_ENTRY_NOT_FOUND";
    pub(crate) const DRAW_NOT_RECORDED: &str = "DRAW_NOT_RECORDED";
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{}: {}", .0.field, .0.description)]
    InvalidField(FieldError),
    #[error("seat request: {0:?}")]
    SeatRequest(SeatRequestError),
    #[error("event not found")]
    EventNotFound,
    #[error("event not on sale")]
    EventNotOnSale,
    #[error("seats unavailable: {0:?}")]
    SeatUnavailable(Vec<u32>),
    #[error("no seats match")]
    NoSeatsMatch,
    #[error("too many holds")]
    TooManyHolds { max: u32 },
    #[error("hold not found")]
    HoldNotFound,
    #[error("hold expired")]
    HoldExpired,
    #[error("hold released")]
    HoldReleased,
    #[error("hold already committed")]
    HoldAlreadyCommitted,
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("service role required")]
    ServiceRoleRequired,
    #[error("admin role required")]
    AdminRequired,
    #[error("admission token required")]
    AdmissionRequired,
    #[error("admission token invalid")]
    AdmissionTokenInvalid,
    #[error("admission token expired")]
    AdmissionTokenExpired,
    #[error("admission used")]
    AdmissionUsed,
    #[error("waiting room off")]
    WaitingRoomOff,
    #[error("not in queue")]
    NotInQueue,
    #[error("event not sold out")]
    NotSoldOut { available: u32 },
    #[error("waitlist entry not found")]
    WaitlistEntryNotFound,
    #[error("draw not recorded")]
    DrawNotRecorded,
    #[error("dependency unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<FieldError> for InventoryError {
    fn from(error: FieldError) -> Self {
        Self::InvalidField(error)
    }
}

/// How a hold the waiting room did not admit is answered.
impl From<AdmissionRefusal> for InventoryError {
    fn from(refusal: AdmissionRefusal) -> Self {
        match refusal {
            AdmissionRefusal::Missing => Self::AdmissionRequired,
            AdmissionRefusal::Invalid => Self::AdmissionTokenInvalid,
            AdmissionRefusal::Expired => Self::AdmissionTokenExpired,
            AdmissionRefusal::Used => Self::AdmissionUsed,
        }
    }
}

impl From<SeatRequestError> for InventoryError {
    fn from(error: SeatRequestError) -> Self {
        match error {
            SeatRequestError::Field(field) => Self::InvalidField(field),
            other => Self::SeatRequest(other),
        }
    }
}

impl From<DbError> for InventoryError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            DbError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<tokio_postgres::Error> for InventoryError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::from(error).into()
    }
}

impl From<deadpool_postgres::PoolError> for InventoryError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::from(error).into()
    }
}

/// An `INVALID_ARGUMENT` that names its field and carries its own reason.
fn bad_seat(reason: &str, field: &str, description: String, seat: u32) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        reason,
        status::ERROR_DOMAIN,
        HashMap::from([
            ("field".to_owned(), field.to_owned()),
            ("seat_index".to_owned(), seat.to_string()),
        ]),
    );
    details.add_bad_request_violation(field, description.clone());
    Status::with_error_details(Code::InvalidArgument, description, details)
}

impl From<InventoryError> for Status {
    fn from(error: InventoryError) -> Self {
        use InventoryError as E;
        match error {
            E::InvalidField(field) => status::invalid_field(&field.field, field.description),
            E::SeatRequest(SeatRequestError::Field(field)) => {
                status::invalid_field(&field.field, field.description)
            }
            E::SeatRequest(SeatRequestError::DuplicateSeat { seat }) => bad_seat(
                reason::DUPLICATE_SEAT,
                "seats.seat_indexes",
                format!("seat {seat} is named more than once"),
                seat,
            ),
            E::SeatRequest(SeatRequestError::SeatOutOfRange { seat, seat_count }) => bad_seat(
                reason::SEAT_OUT_OF_RANGE,
                "seats.seat_indexes",
                format!("seat {seat} does not exist; seat indexes are below {seat_count}"),
                seat,
            ),
            E::SeatRequest(SeatRequestError::SeatNotForSale { seat }) => bad_seat(
                reason::SEAT_NOT_FOR_SALE,
                "seats.seat_indexes",
                format!("seat {seat} is in a section this event does not sell"),
                seat,
            ),
            E::SeatRequest(SeatRequestError::TooManySeats { max }) => {
                status::with_reason_and_metadata(
                    Code::ResourceExhausted,
                    reason::TOO_MANY_SEATS,
                    format!("at most {max} seats per hold"),
                    HashMap::from([("max".to_owned(), max.to_string())]),
                )
            }
            E::TooManyHolds { max } => status::with_reason_and_metadata(
                Code::ResourceExhausted,
                reason::TOO_MANY_HOLDS,
                format!("at most {max} active holds per event; release one first"),
                HashMap::from([("max".to_owned(), max.to_string())]),
            ),
            E::EventNotFound => status::with_reason(
                Code::NotFound,
                reason::EVENT_NOT_FOUND,
                "no such event on sale",
            ),
            E::EventNotOnSale => status::with_reason(
                Code::FailedPrecondition,
                reason::EVENT_NOT_ON_SALE,
                "the event is not on sale",
            ),
            E::SeatUnavailable(seats) => status::with_reason_and_metadata(
                Code::Aborted,
                reason::SEAT_UNAVAILABLE,
                "some seats are no longer available; choose others",
                HashMap::from([(
                    "seat_indexes".to_owned(),
                    seats
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )]),
            ),
            E::NoSeatsMatch => status::with_reason(
                Code::FailedPrecondition,
                reason::NO_SEATS_MATCH,
                "no available seats match the request",
            ),
            E::HoldNotFound => {
                status::with_reason(Code::NotFound, reason::HOLD_NOT_FOUND, "hold not found")
            }
            E::HoldExpired => status::with_reason(
                Code::FailedPrecondition,
                reason::HOLD_EXPIRED,
                "the hold has expired",
            ),
            E::HoldReleased => status::with_reason(
                Code::FailedPrecondition,
                reason::HOLD_RELEASED,
                "the hold was released",
            ),
            E::HoldAlreadyCommitted => status::with_reason(
                Code::FailedPrecondition,
                reason::HOLD_ALREADY_COMMITTED,
                "the hold was committed for another booking or another sale of it",
            ),
            E::Unauthenticated => status::unauthenticated("sign in to hold seats"),
            E::ServiceRoleRequired => status::with_reason(
                Code::PermissionDenied,
                reason::SERVICE_ROLE_REQUIRED,
                "only the checkout service may call this",
            ),
            E::AdminRequired => status::permission_denied(
                "only an admin may configure an event's waiting room or pricing",
            ),
            E::AdmissionRequired => status::with_reason(
                Code::FailedPrecondition,
                reason::ADMISSION_REQUIRED,
                "this event has a waiting room: join the queue and hold with its admission token",
            ),
            E::AdmissionTokenInvalid => status::with_reason(
                Code::FailedPrecondition,
                reason::ADMISSION_TOKEN_INVALID,
                "the admission token is not valid for this user and event",
            ),
            E::AdmissionTokenExpired => status::with_reason(
                Code::FailedPrecondition,
                reason::ADMISSION_TOKEN_EXPIRED,
                "the admission token has expired; watch the queue for a new one",
            ),
            E::AdmissionUsed => status::with_reason(
                Code::FailedPrecondition,
                reason::ADMISSION_USED,
                "this admission is over (bought, released or run out); an admission serves one hold sequence",
            ),
            E::WaitingRoomOff => status::with_reason(
                Code::FailedPrecondition,
                reason::WAITING_ROOM_OFF,
                "this event has no waiting room on; hold seats directly",
            ),
            E::NotInQueue => status::with_reason(
                Code::FailedPrecondition,
                reason::NOT_IN_QUEUE,
                "join the queue first",
            ),
            E::NotSoldOut { available } => status::with_reason_and_metadata(
                Code::FailedPrecondition,
                reason::EVENT_NOT_SOLD_OUT,
                "seats are still available: hold them instead of joining the waitlist",
                HashMap::from([("available_seats".to_owned(), available.to_string())]),
            ),
            E::WaitlistEntryNotFound => status::with_reason(
                Code::NotFound,
                reason::WAITLIST_ENTRY_NOT_FOUND,
                "you are not on this event's waitlist",
            ),
            E::DrawNotRecorded => status::with_reason(
                Code::FailedPrecondition,
                reason::DRAW_NOT_RECORDED,
                "the pre-queue has not been drawn yet: the draw is recorded when the room opens",
            ),
            E::Unavailable(error) => status::unavailable(&error),
            E::Internal(error) => status::internal(&error),
        }
    }
}
