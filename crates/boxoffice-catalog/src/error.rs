//! The catalog's errors and how each reaches a caller.

use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use tonic::{Code, Status};

use crate::domain::{FieldError, LifecycleError};

/// `ErrorInfo` reasons the catalog adds to the shared ones.
pub(crate) mod reason {
    pub(crate) const EVENT_CANCELLED: &str = "EVENT_CANCELLED";
    pub(crate) const EVENT_NOT_DRAFT: &str = "EVENT_NOT_DRAFT";
    pub(crate) const EVENT_HAS_NO_PRICE_TIERS: &str = "EVENT_HAS_NO_PRICE_TIERS";
    pub(crate) use boxoffice_contracts::reason::ADMIN_REQUIRED;
    pub(crate) const SEARCH_NOT_AVAILABLE: &str = "SEARCH_NOT_AVAILABLE";
    pub(crate) use boxoffice_contracts::reason::LOGIN_REQUIRED;
}

/// Why a review was refused (`FAILED_PRECONDITION`; clients branch on
/// these strings, listed in the proto).
pub(crate) mod review_reason {
    pub(crate) const EVENT_NOT_ENDED: &str = "EVENT_NOT_ENDED";
    pub(crate) const NOT_AN_ATTENDEE: &str = "NOT_AN_ATTENDEE";
    pub(crate) const ALREADY_REVIEWED: &str = "ALREADY_REVIEWED";
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}: {}", .0.field, .0.description)]
    InvalidField(FieldError),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("event lifecycle: {0:?}")]
    Lifecycle(LifecycleError),
    #[error("admin role required")]
    AdminRequired,
    #[error("sign in required")]
    LoginRequired,
    #[error("review refused: {0:?}")]
    Review(ReviewRefusal),
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The search engine did not answer (its cause is logged where it
    /// happened, with the engine's name).
    #[error("search unavailable")]
    SearchUnavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<FieldError> for CatalogError {
    fn from(error: FieldError) -> Self {
        Self::InvalidField(error)
    }
}

impl From<LifecycleError> for CatalogError {
    fn from(error: LifecycleError) -> Self {
        Self::Lifecycle(error)
    }
}

impl From<DbError> for CatalogError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            DbError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<tokio_postgres::Error> for CatalogError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::from(error).into()
    }
}

impl From<deadpool_postgres::PoolError> for CatalogError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::from(error).into()
    }
}

impl From<CatalogError> for Status {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::InvalidField(field) => {
                status::invalid_field(&field.field, field.description)
            }
            CatalogError::NotFound { what, id } => status::not_found(what, id),
            CatalogError::Lifecycle(LifecycleError::Cancelled) => status::with_reason(
                Code::FailedPrecondition,
                reason::EVENT_CANCELLED,
                "the event is cancelled and can no longer change",
            ),
            CatalogError::Lifecycle(LifecycleError::NotDraft) => status::with_reason(
                Code::FailedPrecondition,
                reason::EVENT_NOT_DRAFT,
                "price tiers can only change while the event is a draft",
            ),
            CatalogError::Lifecycle(LifecycleError::NoPriceTiers) => status::with_reason(
                Code::FailedPrecondition,
                reason::EVENT_HAS_NO_PRICE_TIERS,
                "an event needs at least one price tier before it is published",
            ),
            CatalogError::AdminRequired => status::with_reason(
                Code::PermissionDenied,
                reason::ADMIN_REQUIRED,
                "this call needs the admin role",
            ),
            CatalogError::LoginRequired => status::with_reason(
                Code::Unauthenticated,
                reason::LOGIN_REQUIRED,
                "sign in to review",
            ),
            CatalogError::Review(refusal) => {
                let (reason, message) = match refusal {
                    ReviewRefusal::NotEnded => (
                        review_reason::EVENT_NOT_ENDED,
                        "an event can be reviewed once it has ended",
                    ),
                    ReviewRefusal::NotAnAttendee => (
                        review_reason::NOT_AN_ATTENDEE,
                        "only holders of a confirmed booking for the event can review it",
                    ),
                    ReviewRefusal::AlreadyReviewed => (
                        review_reason::ALREADY_REVIEWED,
                        "you have reviewed this event already: edit that review",
                    ),
                };
                status::with_reason(Code::FailedPrecondition, reason, message)
            }
            CatalogError::Unavailable(error) => status::unavailable(&error),
            CatalogError::SearchUnavailable => status::with_reason(
                Code::Unavailable,
                reason::SEARCH_NOT_AVAILABLE,
                "search is temporarily unavailable, retry shortly",
            ),
            CatalogError::Internal(error) => status::internal(&error),
        }
    }
}

/// Why a review cannot be written (all `FAILED_PRECONDITION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewRefusal {
    /// The event has not ended yet.
    NotEnded,
    /// The caller holds no confirmed booking for the event.
    NotAnAttendee,
    /// The caller has reviewed this event already (edit that review).
    AlreadyReviewed,
}
