//! Where accounts keeps its data: PostgreSQL, schema `accounts`.

pub(crate) mod postgres;
pub(crate) mod sessions;
pub(crate) mod social;

pub use postgres::{AccountsStore, StoredUser};
pub use sessions::{RefreshOutcome, RevokeReason, SessionRecord, TokenPurpose};
pub use social::{IdentityRecord, LinkOffer, PendingLogin};

use boxoffice_runtime::postgres::Migration;

pub const SCHEMA: &str = "accounts";

/// The accounts schema's migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "accounts",
        sql: include_str!("migrations/0001_accounts.sql"),
    },
    Migration {
        version: 2,
        name: "event_outbox",
        sql: include_str!("migrations/0002_event_outbox.sql"),
    },
    Migration {
        version: 3,
        name: "sessions",
        sql: include_str!("migrations/0003_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "social_logins",
        sql: include_str!("migrations/0004_social_logins.sql"),
    },
];

#[cfg(test)]
mod tests {
    /// The migration creates exactly the events library's producer tables.
    #[test]
    fn the_outbox_migration_matches_the_events_library() {
        assert!(boxoffice_events::outbox::migration_creates_outbox(
            include_str!("migrations/0002_event_outbox.sql"),
            super::SCHEMA,
        ));
    }
}
