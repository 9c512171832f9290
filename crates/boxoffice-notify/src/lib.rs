//! Notifications: mail about a user's bookings and events, over SMTP.
//!
//! A consumer group (`notify`) reads the catalog's, checkout's and
//! accounts' events and records the messages they call for in its own
//! schema, once per domain event (the event ids are recorded in the same
//! transaction). A sender claims recorded messages, renders them (text and
//! HTML from templates, a QR image per ticket) and sends them with
//! `lettre`, retrying with backoff while the SMTP server is down. Marketing
//! mail honours the user's opt-out and carries an unsubscribe link; ticket
//! mail is always sent. Nothing here reads another service's tables:
//! ticket codes come from checkout's `GetBooking`, addresses from
//! `UserRegistered`.

pub mod config;
mod consumer;
mod error;
mod grpc;
pub mod mail;
pub mod message;
pub mod metrics;
pub mod qr;
mod questions;
mod sender;
mod server;
mod smtp;
pub mod store;
mod support_grpc;
pub mod token;

pub use config::NotifyConfig;
pub use error::reason;
pub use server::NotifyComponent;
pub use store::migrate;
