//! The roles a caller can carry (in tokens and in the identity headers the
//! edge passes on), named once for every service that checks them.

/// Every signed-up user.
pub const CUSTOMER: &str = "customer";
/// Operators: configure events and waiting rooms, see any booking.
pub const ADMIN: &str = "admin";
/// Carried by a service calling another's service-to-service RPCs
/// (inventory's `CommitHold`, `ReleaseSeats`), never by a user's token.
pub const SERVICE: &str = "service";
