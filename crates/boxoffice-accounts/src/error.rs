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
    pub const REFRESH_TOKEN_INVALID: &str = "REFRESH_TOKEN_INVALID";
    pub const REFRESH_TOKEN_REUSED: &str = "REFRESH_TOKEN_REUSED";
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    pub const WRONG_PASSWORD: &str = "WRONG_PASSWORD";
    pub const SERVICE_ROLE_REQUIRED: &str = "SERVICE_ROLE_REQUIRED";
    pub const NOTHING_TO_UPDATE: &str = "NOTHING_TO_UPDATE";
    /// `INVALID_ARGUMENT`: a social login's state is unknown, spent or expired.
    pub const SOCIAL_STATE_INVALID: &str = "SOCIAL_STATE_INVALID";
    /// `UNAUTHENTICATED`: the provider refused the code, or its ID token
    /// failed a check (signature, issuer, audience, expiry, nonce).
    pub const SOCIAL_LOGIN_FAILED: &str = "SOCIAL_LOGIN_FAILED";
    /// `UNAVAILABLE`: the provider could not be reached or answered garbage.
    pub const SOCIAL_PROVIDER_UNAVAILABLE: &str = "SOCIAL_PROVIDER_UNAVAILABLE";
    /// `FAILED_PRECONDITION`: the provider gave no usable email.
    pub const SOCIAL_EMAIL_REQUIRED: &str = "SOCIAL_EMAIL_REQUIRED";
    /// `PERMISSION_DENIED`: linking needs the account's password or its
    /// access token.
    pub const LINK_PROOF_REQUIRED: &str = "LINK_PROOF_REQUIRED";
    /// `ALREADY_EXISTS`: the identity logs into another account.
    pub const IDENTITY_ALREADY_LINKED: &str = "IDENTITY_ALREADY_LINKED";
    /// `FAILED_PRECONDITION`: an account without a password keeps its last
    /// social identity.
    pub const LAST_LOGIN_METHOD: &str = "LAST_LOGIN_METHOD";
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
    #[error("session not found")]
    SessionNotFound,
    #[error("refresh token invalid")]
    RefreshTokenInvalid,
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// A verification or reset token that is unknown, spent or expired.
    #[error("single-use token invalid")]
    TokenInvalid(&'static str),
    #[error("current password is wrong")]
    WrongPassword,
    #[error("service role required")]
    ServiceRoleRequired,
    #[error("social login state invalid")]
    SocialStateInvalid,
    /// Details are logged where they happen, never sent.
    #[error("social login failed")]
    SocialLoginFailed,
    #[error("social login provider unavailable")]
    SocialProviderUnavailable(#[source] anyhow::Error),
    #[error("provider gave no usable email")]
    SocialEmailRequired,
    #[error("linking needs proof of the account")]
    LinkProofRequired,
    #[error("identity linked to another account")]
    IdentityAlreadyLinked,
    #[error("last login method")]
    LastLoginMethod,
    #[error("social identity not found")]
    IdentityNotFound,
    #[error("a dependency is unavailable")]
    DependencyUnavailable(#[source] anyhow::Error),
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
            AccountsError::SessionNotFound => status::not_found("session", ""),
            AccountsError::RefreshTokenInvalid => status::with_reason(
                Code::Unauthenticated,
                reason::REFRESH_TOKEN_INVALID,
                "the refresh token is not valid; log in again",
            ),
            AccountsError::RefreshTokenReused => status::with_reason(
                Code::Unauthenticated,
                reason::REFRESH_TOKEN_REUSED,
                "the refresh token was already used; the session is revoked, log in again",
            ),
            AccountsError::TokenInvalid(field) => {
                let mut details = ErrorDetails::new();
                details.set_error_info(reason::TOKEN_INVALID, status::ERROR_DOMAIN, HashMap::new());
                details.add_bad_request_violation(field, "is unknown, already used or expired");
                Status::with_error_details(
                    Code::InvalidArgument,
                    "the token is unknown, already used or expired",
                    details,
                )
            }
            AccountsError::WrongPassword => status::with_reason(
                Code::PermissionDenied,
                reason::WRONG_PASSWORD,
                "the current password is wrong",
            ),
            AccountsError::ServiceRoleRequired => status::with_reason(
                Code::PermissionDenied,
                reason::SERVICE_ROLE_REQUIRED,
                "only services may call this",
            ),
            AccountsError::SocialStateInvalid => {
                let mut details = ErrorDetails::new();
                details.set_error_info(
                    reason::SOCIAL_STATE_INVALID,
                    status::ERROR_DOMAIN,
                    HashMap::new(),
                );
                details.add_bad_request_violation("state", "is unknown, already used or expired");
                Status::with_error_details(
                    Code::InvalidArgument,
                    "the login state is unknown, already used or expired; start again",
                    details,
                )
            }
            AccountsError::SocialLoginFailed => status::with_reason(
                Code::Unauthenticated,
                reason::SOCIAL_LOGIN_FAILED,
                "the provider's answer could not be accepted; start again",
            ),
            AccountsError::SocialProviderUnavailable(error) => {
                tracing::warn!(error = %format!("{error:#}"), "openid provider unavailable");
                status::with_reason(
                    Code::Unavailable,
                    reason::SOCIAL_PROVIDER_UNAVAILABLE,
                    "the login provider cannot be reached; retry later",
                )
            }
            AccountsError::SocialEmailRequired => status::with_reason(
                Code::FailedPrecondition,
                reason::SOCIAL_EMAIL_REQUIRED,
                "the provider shares no email address; allow it at the provider",
            ),
            AccountsError::LinkProofRequired => status::with_reason(
                Code::PermissionDenied,
                reason::LINK_PROOF_REQUIRED,
                "send the account's password, or call with that account's access token",
            ),
            AccountsError::IdentityAlreadyLinked => status::with_reason(
                Code::AlreadyExists,
                reason::IDENTITY_ALREADY_LINKED,
                "this identity already logs into another account",
            ),
            AccountsError::LastLoginMethod => status::with_reason(
                Code::FailedPrecondition,
                reason::LAST_LOGIN_METHOD,
                "the account has no password: set one before unlinking its last identity",
            ),
            AccountsError::IdentityNotFound => status::not_found("social identity", ""),
            AccountsError::DependencyUnavailable(error) => status::unavailable(&error),
            AccountsError::Unavailable(error) => status::unavailable(&error),
            AccountsError::Internal(error) => status::internal(&error),
        }
    }
}
