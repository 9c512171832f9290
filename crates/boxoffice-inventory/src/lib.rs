//! The inventory service: what is for sale and its state. Tickets live in
//! PostgreSQL (the only truth for sold seats); holds, availability bitmaps
//! and the change stream live in Redis, changed only by the Lua scripts in
//! `store/lua`. A feed tails the catalog's outbox to create tickets when an
//! event is published and stop sales when it is cancelled; a sweeper frees
//! expired holds on time.

pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod server;
pub mod service;
pub mod store;
pub mod sweeper;

pub use config::InventoryConfig;
pub use server::InventoryComponent;
pub use service::SERVICE_ROLE;
