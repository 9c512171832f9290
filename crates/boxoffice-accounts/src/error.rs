//! The accounts service's errors and how each reaches a caller.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::domain::FieldError;

/// `ErrorInfo` reasons accounts adds to the shared ones.
pub mod reason {
    pub const EMAIL_TAKEN: &str = "EMAIL_TAKEN";
    pub const BAD_CREDENTIALS: &str = "BAD_CREDENTIALS";
    pub const TOO_MANY_ATTEMPTS: &str = "TOO_MANY_ATTEMPTS";
    pub const LOGIN_REQUIRED: &str = "LOGIN_REQUIRED";
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{}: {}", .0.field, .0.description)]
    InvalidField(FieldError),
    #[error("email already registered")]
    EmailTaken,
    /// One answer for an unknown email and a wrong password.
    #[error("bad credentials")]
    BadCredentials,
    #[error("too many failed logins; retry in {0:?}")]
    Throttled(Duration),
    #[error("no caller")]
    LoginRequired,
    #[error("user not found")]
    UserNotFound,
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<FieldError> for AccountsError {
    fn from(error: FieldError) -> Self {
        Self::InvalidField(error)
    }
}

impl From<DbError> for AccountsError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => Self::Unavailable(cause),
            DbError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<tokio_postgres::Error> for AccountsError {
    fn from(error: tokio_postgres::Error) -> Self {
        DbError::from(error).into()
    }
}

impl From<deadpool_postgres::PoolError> for AccountsError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::from(error).into()
    }
}

impl From<AccountsError> for Status {
    fn from(error: AccountsError) -> Self {
        match error {
            AccountsError::InvalidField(field) => {
                status::invalid_field(&field.field, field.description)
            }
            AccountsError::EmailTaken => status::with_reason(
                Code::AlreadyExists,
                reason::EMAIL_TAKEN,
                "an account with this email already exists",
            ),
            AccountsError::BadCredentials => status::with_reason(
                Code::Unauthenticated,
                reason::BAD_CREDENTIALS,
                "email or password is wrong",
            ),
            AccountsError::Throttled(wait) => {
                let mut details = ErrorDetails::new();
                details.set_error_info(
                    reason::TOO_MANY_ATTEMPTS,
                    status::ERROR_DOMAIN,
                    HashMap::new(),
                );
                details.set_retry_info(Some(wait));
                Status::with_error_details(
                    Code::ResourceExhausted,
                    "too many failed logins for this email; retry later",
                    details,
                )
            }
            AccountsError::LoginRequired => status::with_reason(
                Code::Unauthenticated,
                reason::LOGIN_REQUIRED,
                "log in first and send the access token as a bearer token",
            ),
            AccountsError::UserNotFound => status::not_found("user", ""),
            AccountsError::Unavailable(error) => status::unavailable(&error),
            AccountsError::Internal(error) => status::internal(&error),
        }
    }
}
