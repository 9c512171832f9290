//! Request validation's one vocabulary: a field that failed its rule, named
//! by its path in the request, and the id parsers every service uses. Each
//! service's `grpc.rs` turns wire fields into domain types with these, and a
//! [`FieldError`] reaches the caller as `INVALID_ARGUMENT` with the field in
//! a `BadRequest` violation and the `ErrorInfo` metadata.

use tonic::Status;
use uuid::Uuid;

/// A field that failed validation, named by its path in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub description: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}

impl From<FieldError> for Status {
    fn from(error: FieldError) -> Self {
        crate::status::invalid_field(&error.field, error.description)
    }
}

/// A required UUID.
pub fn parse_id(field: &str, value: &str) -> Result<Uuid, FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    Uuid::parse_str(value).map_err(|_| FieldError::new(field, "must be a UUID"))
}

/// A UUID that may be left empty.
pub fn optional_id(field: &str, value: &str) -> Result<Option<Uuid>, FieldError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_required_and_must_be_uuids() {
        assert_eq!(parse_id("id", "").unwrap_err().description, "is required");
        assert_eq!(
            parse_id("id", "x").unwrap_err().description,
            "must be a UUID"
        );
        let id = Uuid::now_v7();
        assert_eq!(parse_id("id", &id.to_string()), Ok(id));
        assert_eq!(optional_id("id", ""), Ok(None));
        assert_eq!(optional_id("id", &id.to_string()), Ok(Some(id)));
    }

    #[test]
    fn a_field_error_names_its_field_in_the_status() {
        let status = Status::from(FieldError::new("hold.seats[2]", "is out of range"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            crate::status::field_of(&status).as_deref(),
            Some("hold.seats[2]")
        );
    }
}
