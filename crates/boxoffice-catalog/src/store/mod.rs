//! Where the catalog keeps its data: PostgreSQL, schema `catalog`.

pub(crate) mod postgres;

pub use postgres::{CatalogStore, EventFilter, PageCursor};

use boxoffice_runtime::postgres::Migration;

/// The catalog schema's migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "catalog",
        sql: include_str!("migrations/0001_catalog.sql"),
    },
    Migration {
        version: 2,
        name: "outbox_order",
        sql: include_str!("migrations/0002_outbox_order.sql"),
    },
    Migration {
        version: 3,
        name: "event_outbox",
        sql: include_str!("migrations/0003_event_outbox.sql"),
    },
    Migration {
        version: 4,
        name: "reviews",
        sql: include_str!("migrations/0004_reviews.sql"),
    },
    Migration {
        version: 5,
        name: "current_prices",
        sql: include_str!("migrations/0005_current_prices.sql"),
    },
];

pub const SCHEMA: &str = "catalog";

#[cfg(test)]
mod tests {
    /// The migration creates exactly the events library's producer tables.
    #[test]
    fn the_outbox_migration_matches_the_events_library() {
        assert!(boxoffice_events::outbox::migration_creates_outbox(
            include_str!("migrations/0003_event_outbox.sql"),
            crate::events::PRODUCER,
        ));
    }
}
