//! What inventory knows about an event on sale: its sections, their rows of
//! seat indexes (for best available), which price tier sells each section,
//! and how far each seat is from the stage. Built once when the event is
//! published (venue layouts and a published event's price tiers never change)
//! and stored with the event, so holds never call the catalog.
//!
//! Its inputs are inventory's own types, made from the catalog's published
//! events (`feed.rs` parses them): a venue's layout ([`VenueLayout`], kept
//! in `inventory.venue_layouts`) and the part of an event snapshot that
//! selling needs ([`EventForSale`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A venue's sections and rows, as the catalog published it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VenueLayout {
    pub venue_id: Uuid,
    pub seat_count: u32,
    pub sections: Vec<VenueSection>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VenueSection {
    pub id: Uuid,
    pub general_admission: bool,
    pub first_seat_index: u32,
    pub capacity: u32,
    /// Seats in order along each row, with their distance from the stage.
    pub rows: Vec<SaleRow>,
}

/// Where an event stands in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogStatus {
    Draft,
    Published,
    Cancelled,
}

/// A price tier and the sections it sells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    pub id: Uuid,
    pub currency_code: String,
    pub amount_minor: i64,
    pub section_ids: Vec<Uuid>,
}

/// What selling an event needs from the catalog's snapshot of it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventForSale {
    pub id: Uuid,
    pub venue_id: Uuid,
    pub status: CatalogStatus,
    pub on_sale_time: Option<DateTime<Utc>>,
    /// When the event ends (its end time, else its start time).
    pub ends_at: Option<DateTime<Utc>>,
    /// The catalog's version: a replayed or older snapshot changes nothing.
    pub version: i64,
    pub tiers: Vec<Tier>,
}

/// The price of the seats of one section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPrice {
    pub tier_id: Uuid,
    pub amount_minor: i64,
}

/// One row, seats in order along the row (neighbours are adjacent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaleRow {
    pub seats: Vec<u32>,
    /// Distance of each seat from the stage; smaller is better.
    pub distances: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaleSection {
    pub id: Uuid,
    pub general_admission: bool,
    pub first_seat_index: u32,
    pub capacity: u32,
    /// None: the event does not sell this section.
    pub price: Option<TierPrice>,
    /// Empty for general admission.
    pub rows: Vec<SaleRow>,
}

impl SaleSection {
    pub fn contains(&self, seat: u32) -> bool {
        seat >= self.first_seat_index && seat - self.first_seat_index < self.capacity
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaleLayout {
    pub seat_count: u32,
    pub currency_code: String,
    /// Ordered by `first_seat_index`.
    pub sections: Vec<SaleSection>,
}

impl SaleLayout {
    /// Combines the venue's layout with the event's price tiers.
    pub fn build(event: &EventForSale, venue: &VenueLayout) -> Self {
        let mut sections: Vec<SaleSection> = venue
            .sections
            .iter()
            .map(|section| {
                let price = event
                    .tiers
                    .iter()
                    .find(|tier| tier.section_ids.contains(&section.id))
                    .map(|tier| TierPrice {
                        tier_id: tier.id,
                        amount_minor: tier.amount_minor,
                    });
                SaleSection {
                    id: section.id,
                    general_admission: section.general_admission,
                    first_seat_index: section.first_seat_index,
                    capacity: section.capacity,
                    price,
                    rows: section.rows.clone(),
                }
            })
            .collect();
        sections.sort_by_key(|section| section.first_seat_index);
        let currency_code = event
            .tiers
            .first()
            .map(|tier| tier.currency_code.clone())
            .unwrap_or_default();
        Self {
            seat_count: venue.seat_count,
            currency_code,
            sections,
        }
    }

    /// The section a seat index belongs to.
    pub fn section_of(&self, seat: u32) -> Option<&SaleSection> {
        let position = self
            .sections
            .partition_point(|section| section.first_seat_index <= seat);
        position
            .checked_sub(1)
            .and_then(|index| self.sections.get(index))
            .filter(|section| section.contains(seat))
    }

    pub fn section(&self, id: Uuid) -> Option<&SaleSection> {
        self.sections.iter().find(|section| section.id == id)
    }

    pub fn has_tier(&self, tier_id: Uuid) -> bool {
        self.sections.iter().any(|section| {
            section
                .price
                .as_ref()
                .is_some_and(|price| price.tier_id == tier_id)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test venue: seated sections of `rows × seats` in straight rows
    /// facing a stage at y = 0, each with its own tier and price, then
    /// optional general admission.
    pub(crate) fn grid_layout(
        sections: &[(usize, usize, i64)],
        standing: Option<(u32, i64)>,
    ) -> SaleLayout {
        let mut next_index = 0u32;
        let mut out = Vec::new();
        for (section_number, &(rows, seats, price)) in sections.iter().enumerate() {
            let first = next_index;
            let depth = section_number as f32 * 20.0;
            let rows: Vec<SaleRow> = (0..rows)
                .map(|row| {
                    let indexes: Vec<u32> = (0..seats as u32)
                        .map(|seat| first + (row * seats) as u32 + seat)
                        .collect();
                    let distances = (0..seats)
                        .map(|seat| {
                            let x = seat as f32 - (seats as f32 - 1.0) / 2.0;
                            let y = depth + 1.0 + row as f32;
                            x.hypot(y)
                        })
                        .collect();
                    SaleRow {
                        seats: indexes,
                        distances,
                    }
                })
                .collect();
            let capacity = rows.iter().map(|row| row.seats.len() as u32).sum();
            next_index += capacity;
            out.push(SaleSection {
                id: Uuid::from_u128(section_number as u128 + 1),
                general_admission: false,
                first_seat_index: first,
                capacity,
                price: Some(TierPrice {
                    tier_id: Uuid::from_u128(100 + section_number as u128),
                    amount_minor: price,
                }),
                rows,
            });
        }
        if let Some((capacity, price)) = standing {
            out.push(SaleSection {
                id: Uuid::from_u128(999),
                general_admission: true,
                first_seat_index: next_index,
                capacity,
                price: Some(TierPrice {
                    tier_id: Uuid::from_u128(1999),
                    amount_minor: price,
                }),
                rows: Vec::new(),
            });
            next_index += capacity;
        }
        SaleLayout {
            seat_count: next_index,
            currency_code: "EUR".into(),
            sections: out,
        }
    }

    #[test]
    fn finds_the_section_of_a_seat() {
        let layout = grid_layout(&[(2, 5, 100), (3, 4, 50)], Some((10, 20)));
        assert_eq!(layout.seat_count, 32);
        assert_eq!(layout.section_of(0).map(|s| s.id), Some(Uuid::from_u128(1)));
        assert_eq!(
            layout.section_of(10).map(|s| s.id),
            Some(Uuid::from_u128(2))
        );
        assert_eq!(
            layout.section_of(31).map(|s| s.id),
            Some(Uuid::from_u128(999))
        );
        assert!(layout.section_of(32).is_none());
    }
}
