//! `ErrorInfo` reasons that cross a service boundary: sent by one service
//! and branched on by another (inventory's hold answers, which checkout
//! reads), or answered by more than one service for the same situation.
//! Each lives here once; a service's own reasons stay in its `error.rs`.

/// `NOT_FOUND`: no such hold for this caller (never made, someone else's,
/// or forgotten by Redis with nothing sold in PostgreSQL).
pub const HOLD_NOT_FOUND: &str = "HOLD_NOT_FOUND";
/// `FAILED_PRECONDITION`: the hold ran out before it was sold.
pub const HOLD_EXPIRED: &str = "HOLD_EXPIRED";
/// `FAILED_PRECONDITION`: the hold was given back.
pub const HOLD_RELEASED: &str = "HOLD_RELEASED";
/// `FAILED_PRECONDITION`: the hold was sold for another booking, or under
/// another sale id (another payment attempt of the same booking).
pub const HOLD_ALREADY_COMMITTED: &str = "HOLD_ALREADY_COMMITTED";
/// `ABORTED`: some seats were taken by someone else.
pub const SEAT_UNAVAILABLE: &str = "SEAT_UNAVAILABLE";
/// `PERMISSION_DENIED`: a service-to-service RPC called without the
/// [`crate::role::SERVICE`] role.
pub const SERVICE_ROLE_REQUIRED: &str = "SERVICE_ROLE_REQUIRED";
/// `UNAUTHENTICATED`: the RPC needs a signed-in caller.
pub const LOGIN_REQUIRED: &str = "LOGIN_REQUIRED";
/// `PERMISSION_DENIED`: the RPC needs the [`crate::role::ADMIN`] role.
pub const ADMIN_REQUIRED: &str = "ADMIN_REQUIRED";
