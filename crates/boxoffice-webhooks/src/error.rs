//! Webhook errors and their gRPC statuses (with `ErrorInfo` reasons).

use boxoffice_runtime::field::FieldError;
use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use tonic::{Code, Status};

/// Reasons in `ErrorInfo` that this service answers.
pub mod reason {
    /// `INVALID_ARGUMENT`: a filter names an event type that does not
    /// exist (the field names which one).
    pub const UNKNOWN_EVENT_TYPE: &str = "UNKNOWN_EVENT_TYPE";
    /// `INVALID_ARGUMENT`: the URL is not http(s), carries credentials, or
    /// points at an internal address.
    pub const URL_NOT_ALLOWED: &str = "URL_NOT_ALLOWED";
    /// `FAILED_PRECONDITION`: the endpoint is disabled (enable it first).
    pub const ENDPOINT_DISABLED: &str = "ENDPOINT_DISABLED";
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error("admin role required")]
    AdminRequired,
    #[error("a field is not valid")]
    InvalidField(FieldError),
    #[error("{field}: unknown event type {name:?}")]
    UnknownEventType { field: String, name: String },
    #[error("url {0}")]
    UrlNotAllowed(crate::address::UrlRefusal),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("the endpoint is disabled")]
    EndpointDisabled,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FieldError> for WebhookError {
    fn from(error: FieldError) -> Self {
        Self::InvalidField(error)
    }
}

/// `INVALID_ARGUMENT` with `reason`, naming `field` in a `BadRequest`.
fn bad_field(reason: &str, field: &str, description: String) -> Status {
    let mut details = tonic_types::ErrorDetails::new();
    details.set_error_info(
        reason,
        status::ERROR_DOMAIN,
        std::collections::HashMap::from([("field".to_owned(), field.to_owned())]),
    );
    details.add_bad_request_violation(field, description.clone());
    <Status as tonic_types::StatusExt>::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

impl From<WebhookError> for Status {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::AdminRequired => status::with_reason(
                Code::PermissionDenied,
                boxoffice_contracts::reason::ADMIN_REQUIRED,
                "this call needs the admin role",
            ),
            WebhookError::InvalidField(field) => field.into(),
            WebhookError::UnknownEventType { field, name } => bad_field(
                reason::UNKNOWN_EVENT_TYPE,
                &field,
                format!("unknown event type {name:?}; see the event types in webhooks.proto"),
            ),
            WebhookError::UrlNotAllowed(refusal) => {
                bad_field(reason::URL_NOT_ALLOWED, "url", refusal.to_string())
            }
            WebhookError::NotFound { what, id } => status::not_found(what, id),
            WebhookError::EndpointDisabled => status::with_reason(
                Code::FailedPrecondition,
                reason::ENDPOINT_DISABLED,
                "the endpoint is disabled; enable it to deliver again",
            ),
            WebhookError::Db(DbError::Unavailable(cause)) => status::unavailable(&cause),
            WebhookError::Db(DbError::Internal(cause)) => status::internal(&cause),
        }
    }
}
