//! Domain events: every service appends the events it publishes to its own
//! outbox table inside the transaction that makes the change, and consumers
//! read them as groups, at least once, in order per aggregate.
//!
//! - [`envelope`]: building and classifying `boxoffice.events.v1.Envelope`s
//!   (the compatibility rule lives in `envelope.proto`).
//! - [`outbox`]: publishing. [`outbox::Outbox::append`] takes the caller's
//!   `tokio_postgres::Transaction`, so an event exists if and only if its
//!   change committed.
//! - [`consumer`]: consumer groups over a [`Transport`]: batching,
//!   backpressure (one batch in flight per stream and group), retries,
//!   dead letters, lag, graceful shutdown.
//! - [`postgres`]: the default transport (consumers read the producers'
//!   outboxes, woken by LISTEN/NOTIFY, polling as a fallback) and the
//!   consumer-side tables (checkpoints, dead letters, processed events).
//! - [`nats`]: the scale transport: a relay publishes outbox rows to NATS
//!   JetStream (`Nats-Msg-Id` = event id, so a replayed row is dropped as a
//!   duplicate) and groups are durable pull consumers.
//!
//! - [`metrics`]: every group of this process as Prometheus metrics.
//! - [`listen`]: one LISTEN connection per process, database and channel,
//!   shared by whoever waits on it.
//! - [`pause_group`] / [`resume_group`]: a group of this process stops
//!   reading (and lets go of its streams) until resumed.
//!
//! No service-specific code lives here.

mod consumer;
mod envelope;
mod group;
mod lease;
pub mod listen;
pub mod metrics;
mod nats;
pub mod outbox;
pub mod postgres;
mod switch;

pub use consumer::{
    ConsumerConfig, ConsumerGroup, ConsumerStats, HandleError, Handler, Received, StatsSnapshot,
};
pub use envelope::{Envelope, NewEvent, Payload};
pub use group::{DEFAULT_LINGER, DEFAULT_PACE, ENV_LINGER_MS, ENV_PACE_MS};
pub use nats::{NatsTransport, Relay};
pub use outbox::{Outbox, PreparedAppend};
pub use switch::{pause_group, paused_groups, resume_group};

/// Selects the scale transport: the URL of a NATS server with JetStream.
/// Unset or empty: consumers read the PostgreSQL outboxes directly.
pub const ENV_NATS_URL: &str = "BOXOFFICE_NATS_URL";

/// The JetStream stream to use (default `BOXOFFICE_EVENTS`): deployments
/// sharing one NATS server each name their own.
pub const ENV_NATS_STREAM: &str = "BOXOFFICE_NATS_STREAM";

/// How consumers reach the events.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Read the producers' outbox tables; `listen` is the connection
    /// configuration for the LISTEN/NOTIFY wake-up and the group lease.
    Postgres { listen: tokio_postgres::Config },
    /// Durable JetStream pull consumers fed by [`Relay`]s.
    Nats(NatsTransport),
}

impl Transport {
    /// [`Transport::Nats`] when `BOXOFFICE_NATS_URL` is set (connecting to
    /// it), [`Transport::Postgres`] otherwise.
    pub async fn from_env(listen: tokio_postgres::Config) -> anyhow::Result<Self> {
        match std::env::var(ENV_NATS_URL)
            .ok()
            .filter(|url| !url.trim().is_empty())
        {
            Some(url) => {
                let stream = std::env::var(ENV_NATS_STREAM)
                    .ok()
                    .filter(|stream| !stream.trim().is_empty())
                    .unwrap_or_else(|| nats::DEFAULT_STREAM.to_owned());
                Ok(Self::Nats(
                    NatsTransport::connect_to(&url, &stream)
                        .await?
                        .with_lease(listen),
                ))
            }
            None => Ok(Self::Postgres { listen }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "postgres",
            Self::Nats(_) => "nats",
        }
    }
}
