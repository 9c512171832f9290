//! What every boxoffice service runs on: typed configuration, telemetry,
//! the PostgreSQL pool and schema migrations, caller identity, gRPC error
//! details, the API's size limits, and serving with health, reflection,
//! request checks ([`wire`]) and graceful shutdown.
//!
//! Small on purpose: anything that belongs to one service lives in that
//! service's crate.

pub mod admin;
pub mod batch;
pub mod config;
pub mod field;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod postgres;
pub mod server;
mod shutdown;
pub mod status;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod transport;
pub mod wire;

pub use config::{Config, ConfigError};
pub use field::FieldError;
pub use identity::Caller;
pub use shutdown::Shutdown;
