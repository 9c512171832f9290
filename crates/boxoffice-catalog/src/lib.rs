//! The catalog service: venues and their seat maps, performers, events and
//! price tiers. Reads are served from an in-process cache kept fresh by
//! PostgreSQL LISTEN/NOTIFY; every write publishes its event
//! (`boxoffice.events.v1`) through the outbox that search and inventory
//! consume.

mod cache;
pub mod domain;
mod error;
mod events;
pub mod grpc;
mod prices;
pub mod reviews;
pub mod search;
mod search_request;
pub mod seed;
mod server;
pub mod service;
pub mod store;

pub use server::CatalogComponent;
