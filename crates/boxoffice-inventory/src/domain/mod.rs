//! Inventory's rules, free of I/O: seat bitmaps, the sale layout of an event,
//! what a valid hold request is, and best-available selection.

pub mod admission;
pub mod best_available;
pub(crate) mod bitmap;
pub(crate) mod changes;
pub mod draw;
pub mod layout;
pub mod pricing;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use admission::RoomSettings;
pub use best_available::{
    BestAvailableQuery, CurrentPrices, best_available, best_available_ranked,
};
pub use bitmap::SeatBitmap;
pub use changes::{Change, ChangeKind, ChangesOutcome};
pub use draw::{DrawSeed, draw_order};
pub use layout::{
    CatalogStatus, EventForSale, SaleLayout, SaleRow, SaleSection, Tier, TierPrice, VenueLayout,
    VenueSection,
};
pub use pricing::{CountedTier, CurrentPrice, PricingRule, PricingTable, TierRule};

pub use boxoffice_runtime::field::FieldError;

pub use boxoffice_runtime::field::{optional_id, parse_id};

/// PostgreSQL's view of an event's sale, the truth its Redis state is
/// rebuilt from.
#[derive(Clone, Debug)]
pub struct EventTruth {
    pub open: bool,
    pub on_sale_ms: i64,
    pub seat_count: u32,
    pub sold: SeatBitmap,
    /// The waiting room's settings, if an admin ever configured one.
    pub room: Option<RoomSettings>,
    /// When the room's Redis state expires (Unix ms; 0: never).
    pub room_expires_ms: i64,
    /// The dynamic pricing table as Redis keeps it (JSON of
    /// [`PricingTable`]); empty when every price is fixed.
    pub pricing: String,
    /// The stored rule's version (0: never set); Redis keeps the table of
    /// the highest version it was given.
    pub pricing_version: i64,
}

/// Milliseconds since the epoch (Redis server time) as a time; out of
/// range reads as the epoch itself.
pub fn millis_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Where a hold lives: `events/{event_id}/holds/{hold_id}`. The event id is
/// in the name because every Redis key of a hold sits under its event's hash
/// tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HoldRef {
    pub event_id: Uuid,
    pub hold_id: Uuid,
}

impl HoldRef {
    pub fn parse(field: &str, name: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new(field, "must look like events/{event_id}/holds/{hold_id}");
        if name.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        let mut parts = name.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("events"), Some(event), Some("holds"), Some(hold), None) => Ok(Self {
                event_id: Uuid::parse_str(event).map_err(|_| invalid())?,
                hold_id: Uuid::parse_str(hold).map_err(|_| invalid())?,
            }),
            _ => Err(invalid()),
        }
    }

    pub fn name(&self) -> String {
        format!("events/{}/holds/{}", self.event_id, self.hold_id)
    }
}

/// Why a seat request is refused before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatRequestError {
    Field(FieldError),
    TooManySeats { max: u32 },
    DuplicateSeat { seat: u32 },
    SeatOutOfRange { seat: u32, seat_count: u32 },
    SeatNotForSale { seat: u32 },
}

/// Explicitly chosen seats, checked against the layout: not empty, within
/// the per-hold limit, no duplicates, every seat exists and is on sale.
pub fn validate_seats(
    layout: &SaleLayout,
    seats: &[u32],
    max_per_hold: u32,
) -> Result<Vec<u32>, SeatRequestError> {
    if seats.is_empty() {
        return Err(SeatRequestError::Field(FieldError::new(
            "seats.seat_indexes",
            "name at least one seat",
        )));
    }
    if seats.len() > max_per_hold as usize {
        return Err(SeatRequestError::TooManySeats { max: max_per_hold });
    }
    let mut seen = HashSet::with_capacity(seats.len());
    for &seat in seats {
        if !seen.insert(seat) {
            return Err(SeatRequestError::DuplicateSeat { seat });
        }
        if seat >= layout.seat_count {
            return Err(SeatRequestError::SeatOutOfRange {
                seat,
                seat_count: layout.seat_count,
            });
        }
        if layout
            .section_of(seat)
            .and_then(|section| section.price.as_ref())
            .is_none()
        {
            return Err(SeatRequestError::SeatNotForSale { seat });
        }
    }
    Ok(seats.to_vec())
}

/// Checks a best-available query against the limits and the layout.
pub fn validate_query(
    layout: &SaleLayout,
    query: &BestAvailableQuery,
    max_per_hold: u32,
) -> Result<(), SeatRequestError> {
    if query.quantity == 0 {
        return Err(SeatRequestError::Field(FieldError::new(
            "best_available.quantity",
            "must be at least 1",
        )));
    }
    if query.quantity > max_per_hold {
        return Err(SeatRequestError::TooManySeats { max: max_per_hold });
    }
    if let Some(section_id) = query.section_id
        && layout.section(section_id).is_none()
    {
        return Err(SeatRequestError::Field(FieldError::new(
            "best_available.section_id",
            "is not a section of this event's venue",
        )));
    }
    if let Some(tier_id) = query.price_tier_id
        && !layout.has_tier(tier_id)
    {
        return Err(SeatRequestError::Field(FieldError::new(
            "best_available.price_tier_id",
            "is not a price tier of this event",
        )));
    }
    if query.max_price_minor.is_some_and(|max| max < 0) {
        return Err(SeatRequestError::Field(FieldError::new(
            "best_available.max_price.amount_minor",
            "must not be negative",
        )));
    }
    Ok(())
}

/// The price of a set of seats (each seat's section's tier).
pub fn total_price(layout: &SaleLayout, seats: &[u32]) -> i64 {
    seats
        .iter()
        .filter_map(|seat| {
            layout
                .section_of(*seat)
                .and_then(|section| section.price.as_ref())
        })
        .map(|price| price.amount_minor)
        .sum()
}

/// Where a hold is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    Active,
    Expired,
    Released,
    Committed,
}

/// A hold as Redis records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub hold: HoldRef,
    pub owner: Uuid,
    pub seats: Vec<u32>,
    pub total_minor: i64,
    pub currency_code: String,
    pub state: HoldState,
    /// Redis server time, milliseconds since the epoch.
    pub created_ms: i64,
    pub expires_ms: i64,
    pub booking_id: Option<Uuid>,
    /// The sale id its commit carried (see `CommitHoldRequest.sale_id`).
    pub sale_id: Option<Uuid>,
    /// The prices its dynamic tiers locked when it was taken.
    pub price_locks: Vec<PriceLock>,
}

/// A dynamic tier's price as a hold locked it, with the tier's sold count
/// it was computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceLock {
    pub tier_id: Uuid,
    pub price_minor: i64,
    pub sold: u32,
    pub seat_count: u32,
}

impl Hold {
    /// What one seat of `tier_id` costs in this hold: its locked price, or
    /// `base_minor` for a fixed tier.
    pub fn seat_price(&self, tier_id: Uuid, base_minor: i64) -> i64 {
        self.price_locks
            .iter()
            .find(|lock| lock.tier_id == tier_id)
            .map_or(base_minor, |lock| lock.price_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::layout::tests::grid_layout;

    #[test]
    fn hold_names_round_trip() {
        let hold = HoldRef {
            event_id: Uuid::new_v4(),
            hold_id: Uuid::new_v4(),
        };
        assert_eq!(HoldRef::parse("name", &hold.name()), Ok(hold));
        assert!(HoldRef::parse("name", "events/x/holds/y").is_err());
        assert!(HoldRef::parse("name", &format!("{}/extra", hold.name())).is_err());
        assert_eq!(
            HoldRef::parse("name", "").unwrap_err().description,
            "is required"
        );
    }

    #[test]
    fn seat_requests_are_checked_before_anything_happens() {
        let mut layout = grid_layout(&[(2, 5, 100)], None);
        assert!(matches!(
            validate_seats(&layout, &[], 4),
            Err(SeatRequestError::Field(_))
        ));
        assert_eq!(
            validate_seats(&layout, &[1, 2, 1], 4),
            Err(SeatRequestError::DuplicateSeat { seat: 1 })
        );
        assert_eq!(
            validate_seats(&layout, &[10], 4),
            Err(SeatRequestError::SeatOutOfRange {
                seat: 10,
                seat_count: 10
            })
        );
        assert_eq!(
            validate_seats(&layout, &[0, 1, 2, 3, 4], 4),
            Err(SeatRequestError::TooManySeats { max: 4 })
        );
        assert_eq!(validate_seats(&layout, &[3, 1], 4), Ok(vec![3, 1]));
        layout.sections[0].price = None;
        assert_eq!(
            validate_seats(&layout, &[3], 4),
            Err(SeatRequestError::SeatNotForSale { seat: 3 })
        );
    }

    #[test]
    fn queries_are_checked() {
        let layout = grid_layout(&[(2, 5, 100)], None);
        let query = |quantity| BestAvailableQuery {
            quantity,
            ..BestAvailableQuery::default()
        };
        assert!(matches!(
            validate_query(&layout, &query(0), 4),
            Err(SeatRequestError::Field(_))
        ));
        assert_eq!(
            validate_query(&layout, &query(5), 4),
            Err(SeatRequestError::TooManySeats { max: 4 })
        );
        assert_eq!(validate_query(&layout, &query(4), 4), Ok(()));
        let unknown_section = BestAvailableQuery {
            section_id: Some(Uuid::new_v4()),
            ..query(1)
        };
        assert!(validate_query(&layout, &unknown_section, 4).is_err());
        assert_eq!(total_price(&layout, &[0, 1, 2]), 300);
    }
}
