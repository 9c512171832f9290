//! Where the catalog keeps its data: PostgreSQL, schema `catalog`.

pub mod postgres;

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
];

pub const SCHEMA: &str = "catalog";

#[cfg(test)]
mod tests {
    /// The migration creates exactly the events library's producer tables.
    #[test]
    fn the_outbox_migration_matches_the_events_library() {
        let words = |sql: &str| -> Vec<String> {
            sql.lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .flat_map(|line| line.split_whitespace())
                .map(str::to_owned)
                .collect()
        };
        let migration = include_str!("migrations/0003_event_outbox.sql");
        let library = boxoffice_events::outbox::outbox_ddl(crate::events::PRODUCER).unwrap();
        let created = words(migration);
        let expected = words(&library);
        assert_eq!(&created[..expected.len()], &expected[..]);
    }
}
