//! gRPC statuses with machine-readable details: every error a caller can act
//! on carries a `google.rpc.ErrorInfo` reason (and, for bad fields, a
//! `BadRequest` naming the field), so clients branch without parsing text.
//! Unexpected failures become a bare `internal` whose cause is logged here
//! and never sent.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every boxoffice error.
pub const ERROR_DOMAIN: &str = boxoffice_contracts::codec::ERROR_DOMAIN;

/// Reasons shared by every service; each service adds its own.
pub mod reason {
    pub const INVALID_FIELD: &str = "INVALID_FIELD";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const INTERNAL: &str = "INTERNAL";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// The request's body could not be decoded (`INVALID_ARGUMENT`).
    pub const MALFORMED_MESSAGE: &str = boxoffice_contracts::codec::MALFORMED_MESSAGE;
    /// The request message is over the service's limit (`RESOURCE_EXHAUSTED`).
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// The request's headers are over the limit (`RESOURCE_EXHAUSTED`).
    pub const HEADERS_TOO_LARGE: &str = "HEADERS_TOO_LARGE";
}

/// A status with an `ErrorInfo` reason and optional metadata.
pub fn with_reason(code: Code, reason: &str, message: impl Into<String>) -> Status {
    with_reason_and_metadata(code, reason, message, HashMap::new())
}

pub fn with_reason_and_metadata(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// `INVALID_ARGUMENT` naming the offending field, both in a `BadRequest`
/// violation and in the `ErrorInfo` metadata under `field`.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let mut details = ErrorDetails::new();
    details.set_error_info(
        reason::INVALID_FIELD,
        ERROR_DOMAIN,
        HashMap::from([("field".to_owned(), field.to_owned())]),
    );
    details.add_bad_request_violation(field, description.clone());
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

pub fn not_found(what: &str, id: impl std::fmt::Display) -> Status {
    with_reason_and_metadata(
        Code::NotFound,
        reason::NOT_FOUND,
        format!("{what} {id} not found"),
        HashMap::from([("resource".to_owned(), what.to_owned())]),
    )
}

pub fn permission_denied(message: impl Into<String>) -> Status {
    with_reason(Code::PermissionDenied, reason::PERMISSION_DENIED, message)
}

pub fn unauthenticated(message: impl Into<String>) -> Status {
    with_reason(Code::Unauthenticated, reason::UNAUTHENTICATED, message)
}

/// Logs the whole cause chain and answers a plain `internal` that says
/// nothing about SQL, Redis or the code.
pub fn internal(error: &anyhow::Error) -> Status {
    tracing::error!(error = format!("{error:#}"), "internal error");
    with_reason(Code::Internal, reason::INTERNAL, "internal error")
}

/// A dependency is down or overloaded: callers may retry.
pub fn unavailable(error: &anyhow::Error) -> Status {
    tracing::warn!(error = format!("{error:#}"), "dependency unavailable");
    with_reason(
        Code::Unavailable,
        reason::UNAVAILABLE,
        "temporarily unavailable, retry shortly",
    )
}

/// The `ErrorInfo` reason of a status, if it carries one (clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The field named by a status's `BadRequest` violation, if any.
pub fn field_of(status: &Status) -> Option<String> {
    status
        .get_details_bad_request()
        .and_then(|bad| bad.field_violations.into_iter().next())
        .map(|violation| violation.field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_field_is_machine_readable() {
        let status = invalid_field("event.title", "must not be empty");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some(reason::INVALID_FIELD));
        assert_eq!(field_of(&status).as_deref(), Some("event.title"));
    }

    #[test]
    fn internal_hides_the_cause() {
        let error = anyhow::anyhow!("relation \"catalog.events\" does not exist");
        let status = internal(&error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("relation"));
    }
}
