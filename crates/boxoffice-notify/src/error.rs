//! Notification errors and their gRPC statuses (with `ErrorInfo` reasons).

use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use tonic::{Code, Status};

/// Reasons in `ErrorInfo` that this service answers.
pub mod reason {
    /// `INVALID_ARGUMENT`: the unsubscribe token was not made by us (or
    /// not for anyone).
    pub const INVALID_UNSUBSCRIBE_TOKEN: &str = "INVALID_UNSUBSCRIBE_TOKEN";
    /// `FAILED_PRECONDITION`: the question is closed and takes no answers.
    pub const QUESTION_CLOSED: &str = "QUESTION_CLOSED";
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("sign in to see your notification preferences")]
    LoginRequired,
    #[error("a field is not valid")]
    InvalidField(boxoffice_runtime::field::FieldError),
    #[error("this unsubscribe link is not valid")]
    InvalidToken,
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("admin role required")]
    AdminRequired,
    #[error("the question is closed")]
    QuestionClosed,
    #[error("a service this needs is unavailable")]
    DependencyUnavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<boxoffice_runtime::field::FieldError> for NotifyError {
    fn from(error: boxoffice_runtime::field::FieldError) -> Self {
        Self::InvalidField(error)
    }
}

impl From<NotifyError> for Status {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::LoginRequired => status::with_reason(
                Code::Unauthenticated,
                boxoffice_contracts::reason::LOGIN_REQUIRED,
                error.to_string(),
            ),
            NotifyError::InvalidField(field) => field.into(),
            NotifyError::InvalidToken => status::with_reason(
                Code::InvalidArgument,
                reason::INVALID_UNSUBSCRIBE_TOKEN,
                error.to_string(),
            ),
            NotifyError::NotFound { what, id } => status::not_found(what, id),
            NotifyError::AdminRequired => status::with_reason(
                Code::PermissionDenied,
                boxoffice_contracts::reason::ADMIN_REQUIRED,
                "this call needs the admin role",
            ),
            NotifyError::QuestionClosed => status::with_reason(
                Code::FailedPrecondition,
                reason::QUESTION_CLOSED,
                "the question is closed",
            ),
            NotifyError::DependencyUnavailable(cause) => status::unavailable(&cause),
            NotifyError::Db(DbError::Unavailable(cause)) => status::unavailable(&cause),
            NotifyError::Db(DbError::Internal(cause)) => status::internal(&cause),
        }
    }
}
