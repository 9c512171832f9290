//! The catalog's published events (`boxoffice.events.v1`): domain values
//! into payloads when a change is written, and event snapshots back into
//! domain events for the search indexer. Each payload carries the whole new
//! state, so no consumer reads the catalog's tables.

use anyhow::Context as _;
use boxoffice_contracts::events::v1 as ev;
use boxoffice_events::{NewEvent, Payload};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    Category, Event, EventStatus, EventVenue, LatLng, Money, Performer, PriceTier, RatingSummary,
    SeatLayout, SectionKind, Venue,
};

/// The catalog's stream: its schema, where its outbox lives.
pub(crate) const PRODUCER: &str = "catalog";

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn time(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    value
        .map(|t| {
            DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .with_context(|| format!("{field} out of range"))
        })
        .transpose()
}

fn required_time(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> anyhow::Result<DateTime<Utc>> {
    time(field, value)?.with_context(|| format!("{field} missing"))
}

fn lat_lng(location: Option<LatLng>) -> Option<ev::LatLng> {
    location.map(|l| ev::LatLng {
        latitude: l.latitude,
        longitude: l.longitude,
    })
}

fn uuid(field: &str, value: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(value).with_context(|| format!("{field} is not a UUID"))
}

/// A venue and its whole seat layout.
pub(crate) fn venue_layout(venue: &Venue, layout: &SeatLayout) -> ev::VenueLayout {
    ev::VenueLayout {
        id: venue.id.to_string(),
        name: venue.name.clone(),
        address: Some(ev::Address {
            street: venue.address.street.clone(),
            city: venue.address.city.clone(),
            region: venue.address.region.clone(),
            postal_code: venue.address.postal_code.clone(),
            country_code: venue.address.country_code.clone(),
        }),
        location: lat_lng(venue.location),
        time_zone: venue.time_zone.clone(),
        capacity: venue.capacity,
        sections: layout
            .sections
            .iter()
            .map(|section| ev::Section {
                id: section.section.id.to_string(),
                name: section.section.name.clone(),
                kind: match section.section.kind {
                    SectionKind::Seated => ev::SectionKind::Seated,
                    SectionKind::GeneralAdmission => ev::SectionKind::GeneralAdmission,
                } as i32,
                capacity: section.section.capacity,
                first_seat_index: section.section.first_seat_index,
                rows: section
                    .rows
                    .iter()
                    .map(|row| ev::SeatRow {
                        label: row.label.clone(),
                        first_seat_index: row.seats.first().map_or(0, |seat| seat.seat_index),
                        numbers: row.seats.iter().map(|seat| seat.number.clone()).collect(),
                        x: row.seats.iter().map(|seat| seat.x).collect(),
                        y: row.seats.iter().map(|seat| seat.y).collect(),
                    })
                    .collect(),
            })
            .collect(),
        created_at: Some(timestamp(venue.created_at)),
    }
}

pub(crate) fn performer_snapshot(performer: &Performer) -> ev::PerformerSnapshot {
    ev::PerformerSnapshot {
        id: performer.id.to_string(),
        name: performer.name.clone(),
        description: performer.description.clone(),
        genre: performer.genre.clone(),
        created_at: Some(timestamp(performer.created_at)),
    }
}

/// `event` as consumers read it, with its performers' `rating` as of the
/// same transaction.
pub(crate) fn event_snapshot(event: &Event, rating: &RatingSummary) -> ev::EventSnapshot {
    ev::EventSnapshot {
        id: event.id.to_string(),
        title: event.title.clone(),
        description: event.description.clone(),
        category: event.category.as_str().to_owned(),
        status: match event.status {
            EventStatus::Draft => ev::EventStatus::Draft,
            EventStatus::Published => ev::EventStatus::Published,
            EventStatus::Cancelled => ev::EventStatus::Cancelled,
        } as i32,
        venue: Some(ev::EventVenue {
            id: event.venue.id.to_string(),
            name: event.venue.name.clone(),
            city: event.venue.city.clone(),
            country_code: event.venue.country_code.clone(),
            location: lat_lng(event.venue.location),
            time_zone: event.venue.time_zone.clone(),
        }),
        performers: event.performers.iter().map(performer_snapshot).collect(),
        start_time: Some(timestamp(event.start_time)),
        end_time: Some(timestamp(event.end_time)),
        on_sale_time: event.on_sale_time.map(timestamp),
        price_tiers: event
            .price_tiers
            .iter()
            .map(|tier| ev::PriceTier {
                id: tier.id.to_string(),
                name: tier.name.clone(),
                price: Some(ev::Money {
                    currency_code: tier.price.currency_code.clone(),
                    amount_minor: tier.price.amount_minor,
                }),
                section_ids: tier.section_ids.iter().map(Uuid::to_string).collect(),
            })
            .collect(),
        version: event.version,
        created_at: Some(timestamp(event.created_at)),
        updated_at: Some(timestamp(event.updated_at)),
        cancel_reason: event.cancel_reason.clone().unwrap_or_default(),
        performers_rating: Some(ev::PerformersRating {
            count: rating.count(),
            average: rating.average(),
        }),
    }
}

pub(crate) fn venue_created(venue: &Venue, layout: &SeatLayout) -> NewEvent {
    NewEvent::new(
        "venue",
        venue.id,
        Payload::VenueCreated(ev::VenueCreated {
            venue: Some(venue_layout(venue, layout)),
        }),
    )
}

pub(crate) fn performer_created(performer: &Performer) -> NewEvent {
    NewEvent::new(
        "performer",
        performer.id,
        Payload::PerformerCreated(ev::PerformerCreated {
            performer: Some(performer_snapshot(performer)),
        }),
    )
}

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventChange {
    Created,
    Changed,
    Published,
    Cancelled,
    /// Only its performers' rating changed.
    Rated,
}

/// The event published for `change`, whose result is `event` with its
/// performers rated `rating`.
pub(crate) fn event_changed(
    event: &Event,
    change: EventChange,
    rating: &RatingSummary,
) -> NewEvent {
    let snapshot = Some(event_snapshot(event, rating));
    let payload = match change {
        EventChange::Created => Payload::EventCreated(ev::EventCreated { event: snapshot }),
        EventChange::Changed => Payload::EventChanged(ev::EventChanged { event: snapshot }),
        EventChange::Published => Payload::EventPublished(ev::EventPublished { event: snapshot }),
        EventChange::Cancelled => Payload::EventCancelled(ev::EventCancelled { event: snapshot }),
        EventChange::Rated => Payload::EventRated(ev::EventRated { event: snapshot }),
    };
    NewEvent::new("event", event.id, payload)
}

/// The event snapshot an event payload carries, if it is one.
pub(crate) fn snapshot_of(payload: &Payload) -> Option<&ev::EventSnapshot> {
    match payload {
        Payload::EventCreated(ev::EventCreated { event })
        | Payload::EventChanged(ev::EventChanged { event })
        | Payload::EventPublished(ev::EventPublished { event })
        | Payload::EventCancelled(ev::EventCancelled { event })
        | Payload::EventRated(ev::EventRated { event }) => event.as_ref(),
        _ => None,
    }
}

/// Back to the catalog's domain event (what search documents carry).
pub(crate) fn event_from_snapshot(snapshot: &ev::EventSnapshot) -> anyhow::Result<Event> {
    let venue = snapshot.venue.as_ref().context("venue missing")?;
    let location = |l: &Option<ev::LatLng>| {
        l.as_ref().map(|l| LatLng {
            latitude: l.latitude,
            longitude: l.longitude,
        })
    };
    Ok(Event {
        id: uuid("id", &snapshot.id)?,
        title: snapshot.title.clone(),
        description: snapshot.description.clone(),
        category: Category::parse(&snapshot.category).context("unknown category")?,
        status: match ev::EventStatus::try_from(snapshot.status) {
            Ok(ev::EventStatus::Draft) => EventStatus::Draft,
            Ok(ev::EventStatus::Published) => EventStatus::Published,
            Ok(ev::EventStatus::Cancelled) => EventStatus::Cancelled,
            _ => anyhow::bail!("unknown event status {}", snapshot.status),
        },
        venue: EventVenue {
            id: uuid("venue.id", &venue.id)?,
            name: venue.name.clone(),
            city: venue.city.clone(),
            country_code: venue.country_code.clone(),
            location: location(&venue.location),
            time_zone: venue.time_zone.clone(),
        },
        performers: snapshot
            .performers
            .iter()
            .map(|p| {
                Ok(Performer {
                    id: uuid("performer.id", &p.id)?,
                    name: p.name.clone(),
                    description: p.description.clone(),
                    genre: p.genre.clone(),
                    created_at: required_time("performer.created_at", p.created_at.as_ref())?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        start_time: required_time("start_time", snapshot.start_time.as_ref())?,
        end_time: required_time("end_time", snapshot.end_time.as_ref())?,
        on_sale_time: time("on_sale_time", snapshot.on_sale_time.as_ref())?,
        price_tiers: snapshot
            .price_tiers
            .iter()
            .map(|tier| {
                let price = tier.price.as_ref().context("tier price missing")?;
                Ok(PriceTier {
                    id: uuid("tier.id", &tier.id)?,
                    name: tier.name.clone(),
                    price: Money {
                        currency_code: price.currency_code.clone(),
                        amount_minor: price.amount_minor,
                    },
                    section_ids: tier
                        .section_ids
                        .iter()
                        .map(|id| uuid("tier.section_ids", id))
                        .collect::<anyhow::Result<_>>()?,
                    dynamic: None,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        version: snapshot.version,
        created_at: required_time("created_at", snapshot.created_at.as_ref())?,
        updated_at: required_time("updated_at", snapshot.updated_at.as_ref())?,
        cancel_reason: Some(snapshot.cancel_reason.clone()).filter(|r| !r.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_round_trip_through_its_snapshot() {
        let now = DateTime::from_timestamp(1_900_000_000, 123_000).unwrap();
        let event = Event {
            id: Uuid::now_v7(),
            title: "Night".into(),
            description: "d".into(),
            category: Category::Concert,
            status: EventStatus::Published,
            venue: EventVenue {
                id: Uuid::now_v7(),
                name: "Hall".into(),
                city: "Paris".into(),
                country_code: "FR".into(),
                location: Some(LatLng {
                    latitude: 48.8,
                    longitude: 2.3,
                }),
                time_zone: "Europe/Paris".into(),
            },
            performers: vec![Performer {
                id: Uuid::now_v7(),
                name: "Band".into(),
                description: String::new(),
                genre: "rock".into(),
                created_at: now,
            }],
            start_time: now,
            end_time: now + chrono::Duration::hours(2),
            on_sale_time: None,
            price_tiers: vec![PriceTier {
                id: Uuid::now_v7(),
                name: "A".into(),
                price: Money {
                    currency_code: "EUR".into(),
                    amount_minor: 5_000,
                },
                section_ids: vec![Uuid::now_v7()],
                dynamic: None,
            }],
            version: 3,
            created_at: now,
            updated_at: now,
            cancel_reason: None,
        };
        let rating = RatingSummary {
            histogram: [0, 0, 1, 0, 1],
        };
        let snapshot = event_snapshot(&event, &rating);
        assert_eq!(event_from_snapshot(&snapshot).unwrap(), event);
        assert_eq!(
            snapshot.performers_rating,
            Some(ev::PerformersRating {
                count: 2,
                average: 4.0
            })
        );
    }
}
