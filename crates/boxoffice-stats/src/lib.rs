//! Sales statistics for organisers. A consumer group (`stats`) reads the
//! catalog's, inventory's and checkout's events into its own schema — venue
//! sections, events with their price tiers, the seats sold, the confirmed
//! bookings with their money — and `StatsService` answers per event (seats
//! by section and tier, revenue, sales per hour), across events for a date
//! range, and as a live stream. Nothing here reads another service's tables.

mod consumer;
mod grpc;
mod server;
mod store;

pub use server::StatsComponent;
pub use store::migrate;
