//! Where checkout keeps its state: PostgreSQL schema `checkout` (bookings,
//! their tickets, payment attempts, webhook events, the door's scans and
//! ticket transfers).

pub(crate) mod door;
mod extend;
pub(crate) mod loyalty;
pub(crate) mod postgres;
pub(crate) mod promo;
pub(crate) mod recent;
pub(crate) mod records;

pub use postgres::{Attempt, CheckoutStore};
pub use records::{BookingRecord, PaymentRecord, TicketRecord};

use boxoffice_runtime::postgres::Migration;

/// The checkout schema's migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "checkout",
        sql: include_str!("migrations/0001_checkout.sql"),
    },
    Migration {
        version: 2,
        name: "webhook_log",
        sql: include_str!("migrations/0002_webhook_log.sql"),
    },
    Migration {
        version: 3,
        name: "paid_once",
        sql: include_str!("migrations/0003_paid_once.sql"),
    },
    Migration {
        version: 4,
        name: "expired_releases",
        sql: include_str!("migrations/0004_expired_releases.sql"),
    },
    Migration {
        version: 5,
        name: "event_outbox",
        sql: include_str!("migrations/0005_event_outbox.sql"),
    },
    Migration {
        version: 6,
        name: "door",
        sql: include_str!("migrations/0006_door.sql"),
    },
    Migration {
        version: 7,
        name: "commerce",
        sql: include_str!("migrations/0007_commerce.sql"),
    },
    Migration {
        version: 8,
        name: "promo_venues",
        sql: include_str!("migrations/0008_promo_venues.sql"),
    },
];

pub const SCHEMA: &str = "checkout";

#[cfg(test)]
mod tests {
    /// The migration creates exactly the events library's producer tables.
    #[test]
    fn the_outbox_migration_matches_the_events_library() {
        assert!(boxoffice_events::outbox::migration_creates_outbox(
            include_str!("migrations/0005_event_outbox.sql"),
            super::SCHEMA,
        ));
    }
}
