//! The audit log: who did what, when, under which request id, append only.
//!
//! Two writers, one table (`audit.records`, schema `audit`):
//! - admin actions: the edge records every admin-only RPC that changes
//!   something *before* forwarding it (a batch per round trip through
//!   [`AuditService::RecordAdminActions`]; an edge that cannot record
//!   refuses the call), and its answer's status after (`audit.outcomes`);
//! - payment operations: checkout appends them with [`append_payments`] in
//!   the very transaction that records the payment's new state, so a
//!   record exists if and only if the change committed.
//!
//! PostgreSQL enforces append-only (a trigger refuses UPDATE, DELETE and
//! TRUNCATE). Admins read it with `ListAuditRecords`, served beside checkout.
//!
//! [`AuditService::RecordAdminActions`]: boxoffice_contracts::audit::v1::audit_service_server::AuditService

mod grpc;
mod server;
pub mod store;

pub use server::AuditComponent;
pub use store::{
    PaymentRecord, PreparedPayments, SCHEMA, append_payments, migrate, prepare_payments,
};
