//! Who is calling. The edge authenticates the bearer token and passes the
//! caller on as metadata; services trust only these headers, which the edge
//! strips from anything a client sends itself. Services therefore never parse
//! tokens, and the edge's auth plugs in without changing them.

use tonic::metadata::MetadataMap;
use uuid::Uuid;

/// The authenticated user's id (a UUID).
pub const USER_ID_HEADER: &str = "x-boxoffice-user-id";
/// Comma-separated roles of the authenticated user, e.g. `customer,admin`.
pub const ROLES_HEADER: &str = "x-boxoffice-roles";
/// The session (login) the caller's access token belongs to, when it has
/// one: accounts uses it for `Logout` and to mark the current session.
pub const SESSION_ID_HEADER: &str = "x-boxoffice-session-id";

/// The caller's session id from the mesh-set headers (absent or malformed:
/// none).
pub fn session_id(metadata: &MetadataMap) -> Option<Uuid> {
    metadata
        .get(SESSION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Uuid::parse_str(value.trim()).ok())
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Option<Uuid>,
    pub roles: Vec<String>,
}

impl Caller {
    pub const ADMIN: &'static str = boxoffice_contracts::role::ADMIN;
    /// The role services carry when they call each other's
    /// service-to-service RPCs (inventory's `CommitHold`, `ReleaseSeats`).
    pub const SERVICE: &'static str = boxoffice_contracts::role::SERVICE;

    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn user(user_id: Uuid, roles: &[&str]) -> Self {
        Self {
            user_id: Some(user_id),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        }
    }

    /// The caller of a request, from its mesh-set identity headers.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        Self::from_metadata(request.metadata())
    }

    /// Reads the mesh-set identity headers. Malformed values count as absent:
    /// the edge never sends them, so they can only come from a confused client.
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let user_id = metadata
            .get(USER_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Uuid::parse_str(value.trim()).ok());
        let roles = match user_id {
            Some(_) => metadata
                .get(ROLES_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(|value| {
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|role| !role.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Self { user_id, roles }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(Self::ADMIN)
    }

    /// Writes this identity into outgoing metadata (edge and tests).
    pub fn write_to(&self, metadata: &mut MetadataMap) {
        if let Some(user_id) = self.user_id {
            if let Ok(value) = user_id.to_string().parse() {
                metadata.insert(USER_ID_HEADER, value);
            }
            if let Ok(value) = self.roles.join(",").parse() {
                metadata.insert(ROLES_HEADER, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_metadata() {
        let caller = Caller::user(Uuid::new_v4(), &["customer", "admin"]);
        let mut metadata = MetadataMap::new();
        caller.write_to(&mut metadata);
        let read = Caller::from_metadata(&metadata);
        assert_eq!(read, caller);
        assert!(read.is_admin());
    }

    #[test]
    fn roles_without_a_user_are_ignored() {
        let mut metadata = MetadataMap::new();
        metadata.insert(ROLES_HEADER, "admin".parse().unwrap());
        metadata.insert(USER_ID_HEADER, "not-a-uuid".parse().unwrap());
        let caller = Caller::from_metadata(&metadata);
        assert_eq!(caller, Caller::anonymous());
        assert!(!caller.is_admin());
    }
}
