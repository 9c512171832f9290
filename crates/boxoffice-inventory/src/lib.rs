//! The inventory service: what is for sale and its state. Tickets live in
//! PostgreSQL (the only truth for sold seats); holds, availability bitmaps
//! and the change stream live in Redis, changed only by the Lua scripts in
//! `store/lua`. A consumer of the catalog's events (`feed.rs`) creates
//! tickets when an event is published and stops sales when it is
//! cancelled; a sweeper frees expired holds on time. The waiting room lines buyers up for hot events
//! and admits them at a set rate with signed admission tokens. The
//! waitlist of a sold-out event offers seats that come back to the users in
//! its line, in order, as holds in their names.

mod commit;
pub mod config;
pub mod domain;
mod error;
mod extend;
mod feed;
pub mod grpc;
pub mod server;
pub mod service;
mod snapshots;
pub mod sold_out;
pub mod store;
mod sweeper;
mod waiting_room;
pub mod waiting_room_grpc;
mod waitlist;
mod waitlist_grpc;
mod watch_hub;

pub use config::InventoryConfig;
pub use server::InventoryComponent;
// What a caller assembling the services in-process (the fuzz targets)
// needs beside the service itself.
pub use waiting_room::WaitingRoom;
pub use watch_hub::WatchHub;

/// Inventory's own lines of a `/metrics` page: the hold sweeper's progress
/// and the latency of its Redis calls (nothing of either before they run).
pub fn metrics() -> String {
    let mut page = sweeper::render();
    page.push_str(&store::redis_calls::render_calls());
    page
}
