//! Where accounts keeps its data: PostgreSQL, schema `accounts`.

pub mod postgres;

pub use postgres::{AccountsStore, StoredUser};

use boxoffice_runtime::postgres::Migration;

pub const SCHEMA: &str = "accounts";

/// The accounts schema's migrations, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "accounts",
    sql: include_str!("migrations/0001_accounts.sql"),
}];
