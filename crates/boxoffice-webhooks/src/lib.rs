//! Webhooks for integrators. Admins register endpoints with the event types
//! they want (`WebhookService`, admin only). A consumer group (`webhooks`)
//! reads the catalog's, inventory's and checkout's events and records one
//! delivery per matching endpoint and event, a set-based statement per
//! batch; a sender posts due deliveries as signed JSON
//! (`t=…,v1=…` HMAC-SHA256 over timestamp and body, as Stripe and the
//! payment webhooks sign), retries failures with exponential backoff for up
//! to three days, logs every attempt, and disables an endpoint that keeps
//! failing, with a notification record for its admin. Requests go only to
//! http(s) URLs and, unless the deployment allows it, never to internal
//! addresses.

pub mod address;
pub mod config;
mod consumer;
mod error;
pub mod event_types;
mod grpc;
pub mod sender;
mod server;
mod store;

pub use config::WebhooksConfig;
pub use error::reason;
pub use server::WebhooksComponent;
pub use store::migrate;

/// The producer name (and schema) of the events webhooks publish, for the
/// relays of the process that runs them.
pub const PRODUCER: &str = store::SCHEMA;
