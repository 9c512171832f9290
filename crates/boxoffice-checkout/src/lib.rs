//! The checkout service: bookings and money. A booking is created from a
//! seat hold and priced by the server; confirming it authorizes a payment,
//! sells the seats through inventory, captures, and marks it confirmed.
//! A simulated payment provider stands behind a provider trait, webhooks
//! arrive on a small HTTP listener, and a reconciler finishes or reverses
//! whatever a crash left half done, so a paid booking always ends
//! confirmed or refunded. Tickets are checked in at the door (online and
//! offline scanners, exactly once) and change hands by transfer.

pub mod audit;
pub mod config;
pub mod domain;
pub mod door_grpc;
pub mod erasure;
mod error;
pub mod grpc;
pub mod loyalty;
pub mod payment;
pub mod reconciler;
pub mod server;
pub mod service;
pub mod store;
pub mod upstream;
mod webhook;

pub use config::{CheckoutConfig, FailPoint, FailPoints};
pub use error::reason;
pub use server::CheckoutComponent;
