//! Where inventory keeps its state: tickets in PostgreSQL (schema
//! `inventory`, the truth for sold seats) and holds in Redis.

pub(crate) mod postgres;
pub mod redis;
pub(crate) mod redis_calls;
pub(crate) mod waiting_room;
pub(crate) mod waitlist;
pub(crate) mod waitlist_redis;

pub use postgres::{CommitOutcome, TicketStore};
pub use redis::HoldStore;
pub use waiting_room::WaitingRoomStore;

use boxoffice_runtime::postgres::Migration;

/// The inventory schema's migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "inventory",
        sql: include_str!("migrations/0001_inventory.sql"),
    },
    Migration {
        version: 2,
        name: "waiting_rooms",
        sql: include_str!("migrations/0002_waiting_rooms.sql"),
    },
    Migration {
        version: 3,
        name: "sale_ids",
        sql: include_str!("migrations/0003_sale_ids.sql"),
    },
    Migration {
        version: 4,
        name: "venue_layouts",
        sql: include_str!("migrations/0004_venue_layouts.sql"),
    },
    Migration {
        version: 5,
        name: "event_outbox",
        sql: include_str!("migrations/0005_event_outbox.sql"),
    },
    Migration {
        version: 6,
        name: "available_tickets",
        sql: include_str!("migrations/0006_available_tickets.sql"),
    },
    Migration {
        version: 7,
        name: "fair_waiting_room",
        sql: include_str!("migrations/0007_fair_waiting_room.sql"),
    },
    Migration {
        version: 8,
        name: "pricing_rules",
        sql: include_str!("migrations/0008_pricing_rules.sql"),
    },
    Migration {
        version: 9,
        name: "tier_prices",
        sql: include_str!("migrations/0009_tier_prices.sql"),
    },
    Migration {
        version: 11,
        name: "waitlist",
        sql: include_str!("migrations/0011_waitlist.sql"),
    },
    Migration {
        version: 12,
        name: "waitlist_tiers",
        sql: include_str!("migrations/0012_waitlist_tiers.sql"),
    },
    Migration {
        version: 13,
        name: "draw_entrants",
        sql: include_str!("migrations/0013_draw_entrants.sql"),
    },
    Migration {
        version: 14,
        name: "sold_out_notify",
        sql: include_str!("migrations/0014_sold_out_notify.sql"),
    },
];

pub const SCHEMA: &str = "inventory";

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
