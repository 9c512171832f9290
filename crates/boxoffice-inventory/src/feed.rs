//! Inventory's consumer of the catalog's events (a `boxoffice-events`
//! consumer group, `inventory-tickets`): a venue's layout is kept when the
//! venue is created; a published event gets its tickets and its sale layout
//! (sections, rows, distances to the stage, prices) once; a cancelled one
//! stops selling. At least once and idempotent: layouts are kept once per
//! venue, and an event snapshot older than what is stored (by catalog
//! version) changes nothing. Each event is applied in a transaction of its
//! own; a snapshot that cannot be read is dead-lettered, a database outage
//! is waited out.
//!
//! The wire types stop here: payloads are parsed into inventory's own
//! [`VenueLayout`] and [`EventForSale`].

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::events::v1 as ev;
use boxoffice_events::{HandleError, Handler, Payload, Received};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::domain::{
    CatalogStatus, EventForSale, SaleLayout, SaleRow, Tier, VenueLayout, VenueSection,
};
use crate::service::Inventory;
use crate::store::postgres::{FeedEffect, apply_catalog_event, save_venue_layout, venue_layout};

/// The consumer group's name.
pub(crate) const GROUP: &str = "inventory-tickets";
/// The stream it reads.
pub(crate) const CATALOG: &str = "catalog";

pub(crate) struct CatalogFeed {
    inventory: Arc<Inventory>,
    pool: Pool,
}

/// Why one event was not applied.
enum FeedError {
    /// It can never be applied (unreadable snapshot).
    Poison(String),
    /// It may apply later (its venue's layout is unknown yet).
    Failed(anyhow::Error),
    /// The database is unreachable or failed: retried.
    Unavailable(anyhow::Error),
}

impl From<crate::error::InventoryError> for FeedError {
    fn from(error: crate::error::InventoryError) -> Self {
        Self::Unavailable(anyhow::anyhow!("{error}"))
    }
}

impl From<deadpool_postgres::PoolError> for FeedError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(anyhow::Error::from(error).context("connecting"))
    }
}

impl From<tokio_postgres::Error> for FeedError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Unavailable(anyhow::Error::from(error))
    }
}

impl CatalogFeed {
    pub(crate) fn new(inventory: Arc<Inventory>, pool: Pool) -> Self {
        Self { inventory, pool }
    }

    async fn apply(&self, received: &Received) -> Result<(), FeedError> {
        match received.payload() {
            Some(Payload::VenueCreated(ev::VenueCreated { venue }))
            | Some(Payload::VenueChanged(ev::VenueChanged { venue })) => {
                let venue = venue
                    .as_ref()
                    .ok_or_else(|| FeedError::Poison("venue event without a venue".into()))
                    .and_then(|venue| {
                        parse_venue(venue).map_err(|error| {
                            FeedError::Poison(format!("unreadable venue: {error:#}"))
                        })
                    })?;
                let mut client = self.pool.get().await?;
                let transaction = client.transaction().await?;
                save_venue_layout(&transaction, &venue).await?;
                transaction.commit().await?;
                Ok(())
            }
            Some(Payload::EventCreated(ev::EventCreated { event }))
            | Some(Payload::EventChanged(ev::EventChanged { event }))
            | Some(Payload::EventPublished(ev::EventPublished { event }))
            | Some(Payload::EventCancelled(ev::EventCancelled { event }))
            | Some(Payload::EventRated(ev::EventRated { event })) => {
                let event = event
                    .as_ref()
                    .ok_or_else(|| FeedError::Poison("event payload without a snapshot".into()))
                    .and_then(|event| {
                        parse_event(event).map_err(|error| {
                            FeedError::Poison(format!("unreadable event snapshot: {error:#}"))
                        })
                    })?;
                self.apply_event(&event).await
            }
            _ => Ok(()),
        }
    }

    async fn apply_event(&self, event: &EventForSale) -> Result<(), FeedError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let layout = match event.status {
            CatalogStatus::Published => {
                let venue = venue_layout(&transaction, event.venue_id)
                    .await?
                    .ok_or_else(|| {
                        FeedError::Failed(anyhow::anyhow!(
                            "venue {} of event {} has no layout yet",
                            event.venue_id,
                            event.id
                        ))
                    })?;
                Some(SaleLayout::build(event, &venue))
            }
            _ => None,
        };
        let effect = apply_catalog_event(&transaction, event, layout.as_ref()).await?;
        transaction.commit().await?;
        tracing::debug!(event_id = %event.id, version = event.version, ?effect, "applied");
        if effect == FeedEffect::StatusChanged
            && let Err(error) = self.inventory.refresh_status(event.id).await
        {
            tracing::warn!(event_id = %event.id, ?error, "could not push an event status to redis");
        }
        Ok(())
    }
}

impl Handler for CatalogFeed {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        for (index, received) in events.iter().enumerate() {
            match self.apply(received).await {
                Ok(()) => {}
                Err(FeedError::Poison(reason)) => {
                    return Err(HandleError::Poison { index, reason });
                }
                Err(FeedError::Failed(error)) => return Err(HandleError::Failed { index, error }),
                // Events before it are applied and committed; it and the
                // rest come again.
                Err(FeedError::Unavailable(error)) if index > 0 => {
                    return Err(HandleError::Failed { index, error });
                }
                Err(FeedError::Unavailable(error)) => return Err(HandleError::Unavailable(error)),
            }
        }
        Ok(())
    }
}

fn uuid(field: &str, value: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(value).with_context(|| format!("{field} is not a UUID"))
}

/// A venue's layout from its published form. The catalog draws venues with
/// the stage at (0, 0), so a seat's distance from the origin ranks it.
pub(crate) fn parse_venue(venue: &ev::VenueLayout) -> anyhow::Result<VenueLayout> {
    let sections = venue
        .sections
        .iter()
        .map(|section| {
            let rows = section
                .rows
                .iter()
                .map(|row| {
                    anyhow::ensure!(
                        row.x.len() == row.numbers.len() && row.y.len() == row.numbers.len(),
                        "row {} has {} seats but {} x and {} y positions",
                        row.label,
                        row.numbers.len(),
                        row.x.len(),
                        row.y.len()
                    );
                    let count = u32::try_from(row.numbers.len()).context("row size")?;
                    Ok(SaleRow {
                        seats: (row.first_seat_index..row.first_seat_index + count).collect(),
                        distances: row.x.iter().zip(&row.y).map(|(x, y)| x.hypot(*y)).collect(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(VenueSection {
                id: uuid("section.id", &section.id)?,
                general_admission: section.kind == ev::SectionKind::GeneralAdmission as i32,
                first_seat_index: section.first_seat_index,
                capacity: section.capacity,
                rows,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(VenueLayout {
        venue_id: uuid("venue.id", &venue.id)?,
        seat_count: venue.capacity,
        sections,
    })
}

/// What selling needs from an event snapshot.
pub(crate) fn parse_event(event: &ev::EventSnapshot) -> anyhow::Result<EventForSale> {
    let status = match ev::EventStatus::try_from(event.status) {
        Ok(ev::EventStatus::Draft) => CatalogStatus::Draft,
        Ok(ev::EventStatus::Published) => CatalogStatus::Published,
        Ok(ev::EventStatus::Cancelled) => CatalogStatus::Cancelled,
        _ => anyhow::bail!("unknown event status {}", event.status),
    };
    let venue = event.venue.as_ref().context("venue missing")?;
    let on_sale_time = event
        .on_sale_time
        .as_ref()
        .map(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .context("on-sale time out of range")
        })
        .transpose()?;
    let ends_at = event
        .end_time
        .as_ref()
        .or(event.start_time.as_ref())
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        });
    Ok(EventForSale {
        id: uuid("id", &event.id)?,
        venue_id: uuid("venue.id", &venue.id)?,
        status,
        on_sale_time,
        ends_at,
        version: event.version,
        tiers: event
            .price_tiers
            .iter()
            .map(|tier| {
                let price = tier.price.as_ref().context("tier price missing")?;
                Ok(Tier {
                    id: uuid("tier.id", &tier.id)?,
                    currency_code: price.currency_code.clone(),
                    amount_minor: price.amount_minor,
                    section_ids: tier
                        .section_ids
                        .iter()
                        .map(|id| uuid("tier.section_ids", id))
                        .collect::<anyhow::Result<_>>()?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_venue_becomes_rows_of_seats_ranked_by_distance() {
        let section = Uuid::now_v7();
        let venue = ev::VenueLayout {
            id: Uuid::now_v7().to_string(),
            capacity: 5,
            sections: vec![
                ev::Section {
                    id: section.to_string(),
                    kind: ev::SectionKind::Seated as i32,
                    capacity: 3,
                    first_seat_index: 0,
                    rows: vec![ev::SeatRow {
                        label: "A".into(),
                        first_seat_index: 0,
                        numbers: vec!["1".into(), "2".into(), "3".into()],
                        x: vec![-3.0, 0.0, 3.0],
                        y: vec![4.0, 4.0, 4.0],
                    }],
                    ..Default::default()
                },
                ev::Section {
                    id: Uuid::now_v7().to_string(),
                    kind: ev::SectionKind::GeneralAdmission as i32,
                    capacity: 2,
                    first_seat_index: 3,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let layout = parse_venue(&venue).unwrap();
        assert_eq!(layout.seat_count, 5);
        assert_eq!(layout.sections[0].rows[0].seats, vec![0, 1, 2]);
        assert_eq!(layout.sections[0].rows[0].distances, vec![5.0, 4.0, 5.0]);
        assert!(layout.sections[1].general_admission);

        let mut broken = venue.clone();
        broken.sections[0].rows[0].x.pop();
        assert!(parse_venue(&broken).is_err());
    }
}
