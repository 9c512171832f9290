//! `boxoffice.stats.v1.StatsService`: the stored figures, with the seats
//! held right now read from inventory, as the contract's messages. Admins
//! only (the edge refuses everyone else first; this checks again).

use std::pin::Pin;
use std::time::Duration;

use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::stats::v1 as pb;
use boxoffice_contracts::stats::v1::stats_service_server::StatsService;
use boxoffice_runtime::field::{FieldError, parse_id};
use boxoffice_runtime::identity::Caller;
use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use boxoffice_runtime::transport::Transport;
use chrono::{DateTime, Utc};
use futures::Stream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::store::{EventFigures, Section, StatsStore, Takings};

/// Largest page of `ListEventStats`.
pub(crate) const MAX_PAGE_SIZE: i32 = 100;
const DEFAULT_PAGE_SIZE: i32 = 20;

pub(crate) struct StatsGrpc {
    store: StatsStore,
    inventory: InventoryServiceClient<Transport>,
    /// How often `WatchEventStats` looks for changes.
    watch_every: Duration,
}

fn db_status(error: DbError) -> Status {
    match error {
        DbError::Unavailable(cause) => status::unavailable(&cause),
        DbError::Internal(cause) => status::internal(&cause),
    }
}

fn admin<T>(request: &Request<T>) -> Result<(), Status> {
    if Caller::of(request).is_admin() {
        Ok(())
    } else {
        Err(status::permission_denied("statistics are for admins"))
    }
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn time_of(field: &str, value: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, Status> {
    let value = value.ok_or_else(|| Status::from(FieldError::new(field, "is required")))?;
    DateTime::from_timestamp(
        value.seconds,
        u32::try_from(value.nanos).unwrap_or(u32::MAX),
    )
    .ok_or_else(|| FieldError::new(field, "is not a valid time").into())
}

fn money(currency: &str, amount: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: currency.to_owned(),
        amount_minor: amount,
    })
}

fn revenue(takings: &Takings) -> Option<pb::Revenue> {
    let currency = takings.currency.as_str();
    Some(pb::Revenue {
        gross: money(currency, takings.gross),
        fees: money(currency, takings.fees),
        refunds: money(currency, takings.refunds),
        net: money(currency, takings.gross - takings.refunds),
    })
}

fn counts(capacity: u32, sold: u32, held: u32) -> Option<pb::SeatCounts> {
    Some(pb::SeatCounts {
        capacity,
        sold,
        held,
        available: capacity.saturating_sub(sold).saturating_sub(held),
    })
}

/// Whether seat `index` is set in an availability bitmap (most significant
/// bit first, see inventory.proto).
fn bit(bitmap: &[u8], index: u32) -> bool {
    bitmap
        .get((index / 8) as usize)
        .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0)
}

/// Seats of `section` set in `bitmap`.
fn count_in(section: &Section, bitmap: &[u8]) -> u32 {
    (section.first..section.first.saturating_add(section.capacity))
        .filter(|seat| bit(bitmap, *seat))
        .count() as u32
}

/// The contract's view of `figures`, with `held` (inventory's bitmap of
/// held seats; empty when unknown).
pub(crate) fn event_stats(figures: &EventFigures, held: &[u8]) -> pb::EventStats {
    let mut sold_in: Vec<u32> = vec![0; figures.sections.len()];
    for seat in &figures.sold {
        if let Some(place) = figures.sections.iter().position(|s| s.contains(*seat)) {
            sold_in[place] += 1;
        }
    }
    let sections: Vec<pb::SectionStats> = figures
        .sections
        .iter()
        .zip(&sold_in)
        .map(|(section, sold)| pb::SectionStats {
            section_id: section.id.clone(),
            name: section.name.clone(),
            seats: counts(section.capacity, *sold, count_in(section, held)),
        })
        .collect();
    let tiers = figures
        .tiers
        .iter()
        .map(|tier| {
            let (mut capacity, mut sold, mut held) = (0, 0, 0);
            for stats in sections
                .iter()
                .filter(|s| tier.sections.contains(&s.section_id))
            {
                let seats = stats.seats.unwrap_or_default();
                capacity += seats.capacity;
                sold += seats.sold;
                held += seats.held;
            }
            pb::TierStats {
                tier_id: tier.id.clone(),
                name: tier.name.clone(),
                price: money(&tier.currency, tier.price),
                seats: counts(capacity, sold, held),
                face_value_sold: money(&tier.currency, tier.price * i64::from(sold)),
            }
        })
        .collect();
    let capacity = figures.sections.iter().map(|s| s.capacity).sum();
    let held_total = sections
        .iter()
        .map(|s| s.seats.unwrap_or_default().held)
        .sum();
    let currency = figures.takings.currency.as_str();
    pb::EventStats {
        event_id: figures.event_id.to_string(),
        title: figures.title.clone(),
        start_time: figures.start_time.map(timestamp),
        status: figures.status.clone(),
        seats: counts(capacity, figures.sold.len() as u32, held_total),
        sections,
        tiers,
        revenue: revenue(&figures.takings),
        bookings_confirmed: figures.bookings_confirmed as u32,
        bookings_cancelled: figures.bookings_cancelled as u32,
        sales_by_hour: figures
            .hours
            .iter()
            .map(|hour| pb::HourlySales {
                hour: Some(timestamp(hour.hour)),
                tickets: hour.tickets as u32,
                gross: money(currency, hour.gross),
            })
            .collect(),
        updated_at: Some(timestamp(figures.updated_at)),
    }
}

/// A page token: the last event of the page (start time, id).
fn page_token(start: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{id}", start.timestamp_micros())
}

fn parse_page_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Status::from(FieldError::new(
            "page_token",
            "is not a token this service gave",
        ))
    };
    let (micros, id) = token.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let start = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((start, Uuid::parse_str(id).map_err(|_| bad())?)))
}

impl StatsGrpc {
    pub(crate) fn new(store: StatsStore, inventory: Transport, watch_every: Duration) -> Self {
        Self {
            store,
            inventory: InventoryServiceClient::new(inventory),
            watch_every,
        }
    }

    /// Inventory's bitmap of seats held now; empty when it cannot say (the
    /// event is not on sale, or inventory is out of reach).
    async fn held(&self, event_id: Uuid) -> Vec<u8> {
        let request = inventory_pb::GetAvailabilityRequest {
            event_id: event_id.to_string(),
        };
        match self.inventory.clone().get_availability(request).await {
            Ok(reply) => reply.into_inner().held,
            Err(error) => {
                tracing::debug!(%event_id, code = ?error.code(), "no live holds for statistics");
                Vec::new()
            }
        }
    }

    async fn current(&self, event_id: Uuid) -> Result<pb::EventStats, Status> {
        let figures = self
            .store
            .event(event_id)
            .await
            .map_err(db_status)?
            .ok_or_else(|| status::not_found("event", event_id))?;
        let held = self.held(event_id).await;
        Ok(event_stats(&figures, &held))
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::EventStats, Status>> + Send>>;

#[tonic::async_trait]
impl StatsService for StatsGrpc {
    async fn get_event_stats(
        &self,
        request: Request<pb::GetEventStatsRequest>,
    ) -> Result<Response<pb::EventStats>, Status> {
        admin(&request)?;
        let event_id = parse_id("event_id", &request.get_ref().event_id)?;
        Ok(Response::new(self.current(event_id).await?))
    }

    type WatchEventStatsStream = StatsStream;

    async fn watch_event_stats(
        &self,
        request: Request<pb::WatchEventStatsRequest>,
    ) -> Result<Response<Self::WatchEventStatsStream>, Status> {
        admin(&request)?;
        let event_id = parse_id("event_id", &request.get_ref().event_id)?;
        let first = self.current(event_id).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let watcher = Self {
            store: self.store.clone(),
            inventory: self.inventory.clone(),
            watch_every: self.watch_every,
        };
        tokio::spawn(async move {
            let mut last = first.clone();
            if sender.send(Ok(first)).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(watcher.watch_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    _ = tick.tick() => {}
                }
                match watcher.current(event_id).await {
                    Ok(now) if now != last => {
                        last = now.clone();
                        if sender.send(Ok(now)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn list_event_stats(
        &self,
        request: Request<pb::ListEventStatsRequest>,
    ) -> Result<Response<pb::ListEventStatsResponse>, Status> {
        admin(&request)?;
        let message = request.into_inner();
        let from = time_of("start_from", message.start_from.as_ref())?;
        let to = time_of("start_to", message.start_to.as_ref())?;
        if to <= from {
            return Err(FieldError::new("start_to", "must be after start_from").into());
        }
        let size = match message.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            _ => {
                return Err(FieldError::new(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE}"),
                )
                .into());
            }
        };
        let after = parse_page_token(&message.page_token)?;
        // One more than the page, to know whether another follows.
        let (mut events, totals) = self
            .store
            .range(from, to, after, i64::from(size) + 1)
            .await
            .map_err(db_status)?;
        let more = events.len() > size as usize;
        events.truncate(size as usize);
        let next_page_token = match (more, events.last()) {
            (true, Some(last)) => page_token(last.start_time, last.event_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListEventStatsResponse {
            events: events
                .iter()
                .map(|event| pb::EventSummary {
                    event_id: event.event_id.to_string(),
                    title: event.title.clone(),
                    start_time: Some(timestamp(event.start_time)),
                    status: event.status.clone(),
                    capacity: event.capacity as u32,
                    sold: event.sold as u32,
                    revenue: revenue(&event.takings),
                })
                .collect(),
            next_page_token,
            capacity: totals.capacity as u32,
            sold: totals.sold as u32,
            revenue: match totals.takings.as_slice() {
                [one] => revenue(one),
                _ => None,
            },
            revenue_by_currency: totals.takings.iter().filter_map(revenue).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tier;

    fn figures() -> EventFigures {
        EventFigures {
            event_id: Uuid::nil(),
            title: "Show".into(),
            start_time: None,
            status: "published".into(),
            updated_at: Utc::now(),
            sections: vec![
                Section {
                    id: "a".into(),
                    name: "Stalls".into(),
                    first: 0,
                    capacity: 10,
                },
                Section {
                    id: "b".into(),
                    name: "Floor".into(),
                    first: 10,
                    capacity: 6,
                },
            ],
            tiers: vec![Tier {
                id: "t".into(),
                name: "All".into(),
                currency: "EUR".into(),
                price: 1000,
                sections: vec!["a".into(), "b".into()],
            }],
            sold: vec![0, 1, 12],
            takings: Takings {
                currency: "EUR".into(),
                gross: 3300,
                fees: 300,
                refunds: 1000,
            },
            bookings_confirmed: 2,
            bookings_cancelled: 1,
            hours: Vec::new(),
        }
    }

    #[test]
    fn seats_are_counted_per_section_and_tier_with_live_holds() {
        // Seats 2 and 15 held: bits 5 of byte 0 and 0 of byte 1.
        let held = [0b0010_0000, 0b0000_0001];
        let stats = event_stats(&figures(), &held);
        let seats = |s: Option<pb::SeatCounts>| {
            let s = s.unwrap();
            (s.capacity, s.sold, s.held, s.available)
        };
        assert_eq!(seats(stats.seats), (16, 3, 2, 11));
        assert_eq!(seats(stats.sections[0].seats), (10, 2, 1, 7));
        assert_eq!(seats(stats.sections[1].seats), (6, 1, 1, 4));
        assert_eq!(seats(stats.tiers[0].seats), (16, 3, 2, 11));
        assert_eq!(
            stats.tiers[0]
                .face_value_sold
                .as_ref()
                .unwrap()
                .amount_minor,
            3000
        );
        let revenue = stats.revenue.unwrap();
        assert_eq!(revenue.net.unwrap().amount_minor, 2300);
    }

    #[test]
    fn page_tokens_round_trip_and_strangers_are_refused() {
        let start = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            parse_page_token(&page_token(start, id)).unwrap(),
            Some((start, id))
        );
        for bad in [
            "x",
            "1_y",
            "_",
            "99999999999999999999_00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(
                parse_page_token(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
