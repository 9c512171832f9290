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
];

pub const SCHEMA: &str = "catalog";
