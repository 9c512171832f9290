//! The tonic face of the catalog: wire messages are parsed into domain types
//! here (and only here), and domain values turned back into messages.

use std::sync::Arc;

use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_runtime::Caller;
use boxoffice_search::highlight_to_html;
use boxoffice_search::query::MAX_OFFSET;
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use crate::domain::{
    self, Address, Category, Event, EventPatch, EventStatus, FieldError, LatLng, Money, NewEvent,
    NewPerformer, NewPriceTier, NewRow, NewSeat, NewSection, NewVenue, Performer, PriceTier,
    Schedule, SectionKind, Venue, limits, optional_id, optional_text, parse_id, required_text,
};
use crate::error::CatalogError;
use crate::reviews::{MAX_REASON_CHARS, RatingSummary, ReviewContent, ReviewRecord, Reviews};
use crate::search::{EventSearch, SearchPage};
use crate::search_request::{ParsedSearch, encode_page_token, parse_search_request};
use crate::service::Catalog;
use crate::store::{EventFilter, PageCursor};

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 200;

#[derive(Clone)]
pub struct CatalogGrpc {
    catalog: Arc<Catalog>,
    search: Arc<EventSearch>,
    reviews: Arc<Reviews>,
}

impl CatalogGrpc {
    pub fn new(catalog: Arc<Catalog>, search: Arc<EventSearch>) -> Self {
        let reviews = Arc::new(Reviews::new(
            catalog.store().pool().clone(),
            catalog.store().outbox().clone(),
        ));
        Self {
            catalog,
            search,
            reviews,
        }
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogGrpc {
    #[instrument(skip_all, fields(event_id = %request.get_ref().id))]
    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id).map_err(Status::from)?;
        let event = self.catalog.event(&caller, id).await?;
        let mut answer = event_to_pb(&event);
        answer.rating = Some(rating_to_pb(&self.reviews.event_summary(id).await?));
        Ok(Response::new(answer))
    }

    #[instrument(skip_all)]
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page_size = parse_page_size(request.page_size).map_err(Status::from)?;
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(PageCursor::decode(token).ok_or_else(|| {
                Status::from(FieldError::new(
                    "page_token",
                    "is not a token this service issued",
                ))
            })?),
        };
        let status =
            match parse_enum::<pb::EventStatus>("status", request.status).map_err(Status::from)? {
                pb::EventStatus::Unspecified | pb::EventStatus::Published => EventStatus::Published,
                pb::EventStatus::Draft => EventStatus::Draft,
                pb::EventStatus::Cancelled => EventStatus::Cancelled,
            };
        let start_after = match request.start_after {
            Some(time) => timestamp("start_after", &time).map_err(Status::from)?,
            None => Utc::now(),
        };
        let start_before = request
            .start_before
            .map(|time| timestamp("start_before", &time))
            .transpose()
            .map_err(Status::from)?;
        if start_before.is_some_and(|before| before <= start_after) {
            return Err(Status::from(FieldError::new(
                "start_before",
                "must be after start_after",
            )));
        }
        let filter = EventFilter {
            status,
            start_after,
            start_before,
            venue_id: optional_id("venue_id", &request.venue_id).map_err(Status::from)?,
            performer_id: optional_id("performer_id", &request.performer_id)
                .map_err(Status::from)?,
        };
        let (events, next) = self
            .catalog
            .list_events(&caller, &filter, after, page_size)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: events.iter().map(event_to_pb).collect(),
            next_page_token: next.map(|cursor| cursor.encode()).unwrap_or_default(),
        }))
    }

    #[instrument(skip_all)]
    async fn search_events(
        &self,
        request: Request<pb::SearchEventsRequest>,
    ) -> Result<Response<pb::SearchEventsResponse>, Status> {
        Ok(Response::new(
            search_events(&self.search, request.get_ref()).await?,
        ))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn get_seat_map(
        &self,
        request: Request<pb::GetSeatMapRequest>,
    ) -> Result<Response<pb::SeatMap>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let map = self.catalog.seat_map(&caller, id).await?;
        let tier_of = |section_id: Uuid| {
            map.event
                .price_tiers
                .iter()
                .find(|tier| tier.section_ids.contains(&section_id))
                .map(|tier| tier.id.to_string())
                .unwrap_or_default()
        };
        Ok(Response::new(pb::SeatMap {
            event_id: map.event.id.to_string(),
            venue_id: map.layout.venue_id.to_string(),
            seat_count: map.layout.seat_count,
            sections: map
                .layout
                .sections
                .iter()
                .map(|section| pb::SeatMapSection {
                    id: section.section.id.to_string(),
                    name: section.section.name.clone(),
                    kind: section_kind_to_pb(section.section.kind) as i32,
                    capacity: section.section.capacity,
                    first_seat_index: section.section.first_seat_index,
                    rows: section
                        .rows
                        .iter()
                        .map(|row| pb::SeatRow {
                            label: row.label.clone(),
                            seats: row
                                .seats
                                .iter()
                                .map(|seat| pb::Seat {
                                    seat_index: seat.seat_index,
                                    number: seat.number.clone(),
                                    x: seat.x,
                                    y: seat.y,
                                })
                                .collect(),
                        })
                        .collect(),
                    price_tier_id: tier_of(section.section.id),
                })
                .collect(),
            price_tiers: map.event.price_tiers.iter().map(price_tier_to_pb).collect(),
        }))
    }

    #[instrument(skip_all, fields(venue_id = %request.get_ref().id))]
    async fn get_venue(
        &self,
        request: Request<pb::GetVenueRequest>,
    ) -> Result<Response<pb::Venue>, Status> {
        let id = parse_id("id", &request.get_ref().id).map_err(Status::from)?;
        let venue = self.catalog.venue(id).await?;
        Ok(Response::new(venue_to_pb(&venue)))
    }

    #[instrument(skip_all, fields(performer_id = %request.get_ref().id))]
    async fn get_performer(
        &self,
        request: Request<pb::GetPerformerRequest>,
    ) -> Result<Response<pb::Performer>, Status> {
        let id = parse_id("id", &request.get_ref().id).map_err(Status::from)?;
        let performer = self.catalog.performer(id).await?;
        let mut answer = performer_to_pb(&performer);
        answer.rating = Some(rating_to_pb(&self.reviews.performer_summary(id).await?));
        Ok(Response::new(answer))
    }

    #[instrument(skip_all)]
    async fn create_venue(
        &self,
        request: Request<pb::CreateVenueRequest>,
    ) -> Result<Response<pb::Venue>, Status> {
        let caller = Caller::of(&request);
        let venue = parse_new_venue(request.into_inner()).map_err(Status::from)?;
        let created = self.catalog.create_venue(&caller, &venue).await?;
        tracing::info!(venue_id = %created.id, capacity = created.capacity, "venue created");
        Ok(Response::new(venue_to_pb(&created)))
    }

    #[instrument(skip_all)]
    async fn create_performer(
        &self,
        request: Request<pb::CreatePerformerRequest>,
    ) -> Result<Response<pb::Performer>, Status> {
        let caller = Caller::of(&request);
        let performer = request
            .into_inner()
            .performer
            .ok_or_else(|| Status::from(FieldError::new("performer", "is required")))?;
        let performer = NewPerformer {
            name: required_text("performer.name", &performer.name, limits::NAME_MAX_CHARS)
                .map_err(Status::from)?,
            description: optional_text(
                "performer.description",
                &performer.description,
                limits::DESCRIPTION_MAX_CHARS,
            )
            .map_err(Status::from)?,
            genre: optional_text("performer.genre", &performer.genre, limits::NAME_MAX_CHARS)
                .map_err(Status::from)?,
        };
        let created = self.catalog.create_performer(&caller, &performer).await?;
        Ok(Response::new(performer_to_pb(&created)))
    }

    #[instrument(skip_all)]
    async fn create_event(
        &self,
        request: Request<pb::CreateEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = Caller::of(&request);
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| Status::from(FieldError::new("event", "is required")))?;
        let event = parse_new_event(event).map_err(Status::from)?;
        let created = self.catalog.create_event(&caller, &event).await?;
        tracing::info!(event_id = %created.id, "event created");
        Ok(Response::new(event_to_pb(&created)))
    }

    #[instrument(skip_all)]
    async fn update_event(
        &self,
        request: Request<pb::UpdateEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event = request
            .event
            .ok_or_else(|| Status::from(FieldError::new("event", "is required")))?;
        let id = parse_id("event.id", &event.id).map_err(Status::from)?;
        let mask = request
            .update_mask
            .ok_or_else(|| Status::from(FieldError::new("update_mask", "is required")))?;
        let patch = parse_patch(event, &mask.paths).map_err(Status::from)?;
        let updated = self.catalog.update_event(&caller, id, &patch).await?;
        tracing::info!(event_id = %id, version = updated.version, "event updated");
        Ok(Response::new(event_to_pb(&updated)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().id))]
    async fn publish_event(
        &self,
        request: Request<pb::PublishEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id).map_err(Status::from)?;
        let published = self.catalog.publish_event(&caller, id).await?;
        Ok(Response::new(event_to_pb(&published)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().id))]
    async fn cancel_event(
        &self,
        request: Request<pb::CancelEventRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let id = parse_id("id", &request.id).map_err(Status::from)?;
        let reason = optional_text("reason", &request.reason, limits::CANCEL_REASON_MAX_CHARS)
            .map_err(Status::from)?;
        let cancelled = self.catalog.cancel_event(&caller, id, &reason).await?;
        Ok(Response::new(event_to_pb(&cancelled)))
    }

    #[instrument(skip_all)]
    async fn create_review(
        &self,
        request: Request<pb::CreateReviewRequest>,
    ) -> Result<Response<pb::Review>, Status> {
        let user = signed_in(&request)?;
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let content = ReviewContent::parse(request.rating, request.text).map_err(Status::from)?;
        let event = self.catalog.event(&caller, event_id).await?;
        let review = self
            .reviews
            .create(user, event.id, event.end_time, &content)
            .await?;
        Ok(Response::new(review_to_pb(&review)))
    }

    #[instrument(skip_all)]
    async fn update_review(
        &self,
        request: Request<pb::UpdateReviewRequest>,
    ) -> Result<Response<pb::Review>, Status> {
        let user = signed_in(&request)?;
        let request = request.into_inner();
        let (event_id, review_id) = parse_review_name(&request.name).map_err(Status::from)?;
        let content = ReviewContent::parse(request.rating, request.text).map_err(Status::from)?;
        let review = self
            .reviews
            .update(user, event_id, review_id, &content)
            .await?;
        Ok(Response::new(review_to_pb(&review)))
    }

    #[instrument(skip_all)]
    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let page_size = match request.page_size {
            0 => 20,
            size @ 1..=100 => i64::from(size),
            _ => {
                return Err(FieldError::new("page_size", "must be 1 to 100 (0 means 20)").into());
            }
        };
        let after = parse_review_page_token(&request.page_token).map_err(Status::from)?;
        // The event must be visible to the caller (drafts are not).
        self.catalog.event(&caller, event_id).await?;
        let mut reviews = self
            .reviews
            .list(event_id, caller.is_admin(), page_size + 1, after)
            .await?;
        let next_page_token = if reviews.len() as i64 > page_size {
            reviews.truncate(page_size as usize);
            reviews
                .last()
                .map(|last| {
                    format!(
                        "{}_{}",
                        last.created_at.timestamp_micros(),
                        last.id.simple()
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let rating = self.reviews.event_summary(event_id).await?;
        Ok(Response::new(pb::ListReviewsResponse {
            reviews: reviews.iter().map(review_to_pb).collect(),
            next_page_token,
            rating: Some(rating_to_pb(&rating)),
        }))
    }

    #[instrument(skip_all)]
    async fn hide_review(
        &self,
        request: Request<pb::HideReviewRequest>,
    ) -> Result<Response<pb::Review>, Status> {
        if !Caller::of(&request).is_admin() {
            return Err(CatalogError::AdminRequired.into());
        }
        let request = request.into_inner();
        let (event_id, review_id) = parse_review_name(&request.name).map_err(Status::from)?;
        let reason =
            required_text("reason", &request.reason, MAX_REASON_CHARS).map_err(Status::from)?;
        let review = self.reviews.hide(event_id, review_id, &reason).await?;
        Ok(Response::new(review_to_pb(&review)))
    }
}

// ------------------------------------------------------------ reviews

fn signed_in<T>(request: &Request<T>) -> Result<Uuid, Status> {
    Caller::of(request)
        .user_id
        .ok_or_else(|| CatalogError::LoginRequired.into())
}

/// "events/{event_id}/reviews/{review_id}".
fn parse_review_name(name: &str) -> Result<(Uuid, Uuid), FieldError> {
    let invalid = || FieldError::new("name", "must be events/{event_id}/reviews/{review_id}");
    let mut parts = name.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("events"), Some(event), Some("reviews"), Some(review), None) => Ok((
            Uuid::parse_str(event).map_err(|_| invalid())?,
            Uuid::parse_str(review).map_err(|_| invalid())?,
        )),
        _ => Err(invalid()),
    }
}

fn parse_review_page_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, FieldError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || FieldError::new("page_token", "is not a token this service gave");
    let (micros, id) = token.split_once('_').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(Some((time, id)))
}

fn review_to_pb(review: &ReviewRecord) -> pb::Review {
    pb::Review {
        name: format!("events/{}/reviews/{}", review.event_id, review.id),
        event_id: review.event_id.to_string(),
        user_id: review.user_id.to_string(),
        rating: u32::from(review.rating),
        text: review.text.clone(),
        create_time: Some(to_timestamp(review.created_at)),
        update_time: Some(to_timestamp(review.updated_at)),
        hidden: review.hidden,
        hidden_reason: review.hidden_reason.clone(),
    }
}

fn rating_to_pb(rating: &RatingSummary) -> pb::RatingSummary {
    pb::RatingSummary {
        count: rating.count(),
        average: rating.average(),
        histogram: rating.histogram.to_vec(),
    }
}

// ------------------------------------------------------------ wire → domain

fn parse_page_size(page_size: i32) -> Result<usize, FieldError> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if size < 0 => Err(FieldError::new("page_size", "must not be negative")),
        size if size as usize > MAX_PAGE_SIZE => Err(FieldError::new(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE}"),
        )),
        size => Ok(size as usize),
    }
}

fn parse_enum<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, FieldError> {
    E::try_from(value).map_err(|_| FieldError::new(field, format!("{value} is not a known value")))
}

fn timestamp(field: &str, time: &prost_types::Timestamp) -> Result<DateTime<Utc>, FieldError> {
    if !(0..1_000_000_000).contains(&time.nanos) {
        return Err(FieldError::new(field, "nanos out of range"));
    }
    DateTime::from_timestamp(time.seconds, time.nanos as u32)
        .filter(|t| (2000..=2200).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| FieldError::new(field, "must be between the years 2000 and 2200"))
}

fn required_timestamp(
    field: &str,
    time: Option<&prost_types::Timestamp>,
) -> Result<DateTime<Utc>, FieldError> {
    timestamp(
        field,
        time.ok_or_else(|| FieldError::new(field, "is required"))?,
    )
}

fn parse_category(field: &str, value: i32) -> Result<Category, FieldError> {
    Ok(match parse_enum::<pb::Category>(field, value)? {
        pb::Category::Unspecified => return Err(FieldError::new(field, "is required")),
        pb::Category::Concert => Category::Concert,
        pb::Category::Sports => Category::Sports,
        pb::Category::Theater => Category::Theater,
        pb::Category::Comedy => Category::Comedy,
        pb::Category::Film => Category::Film,
        pb::Category::Family => Category::Family,
        pb::Category::Festival => Category::Festival,
    })
}

fn parse_location(field: &str, location: Option<pb::LatLng>) -> Result<Option<LatLng>, FieldError> {
    location
        .map(|l| LatLng::parse(field, l.latitude, l.longitude))
        .transpose()
}

fn parse_new_venue(request: pb::CreateVenueRequest) -> Result<NewVenue, FieldError> {
    let address = request.address.unwrap_or_default();
    let country_code = address.country_code.trim().to_uppercase();
    if country_code.len() != 2 || !country_code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldError::new(
            "address.country_code",
            "must be an ISO 3166-1 alpha-2 code such as GB",
        ));
    }
    let mut sections = Vec::with_capacity(request.sections.len());
    for (index, section) in request.sections.into_iter().enumerate() {
        let field = format!("sections[{index}]");
        let name = required_text(
            &format!("{field}.name"),
            &section.name,
            limits::NAME_MAX_CHARS,
        )?;
        let kind = match parse_enum::<pb::SectionKind>(&format!("{field}.kind"), section.kind)? {
            pb::SectionKind::Unspecified => {
                return Err(FieldError::new(format!("{field}.kind"), "is required"));
            }
            pb::SectionKind::Seated => SectionKind::Seated,
            pb::SectionKind::GeneralAdmission => SectionKind::GeneralAdmission,
        };
        let (capacity, rows) = match kind {
            SectionKind::GeneralAdmission => {
                if !section.rows.is_empty() {
                    return Err(FieldError::new(
                        format!("{field}.rows"),
                        "a general-admission section has no rows",
                    ));
                }
                if section.capacity == 0 {
                    return Err(FieldError::new(
                        format!("{field}.capacity"),
                        "must be at least 1",
                    ));
                }
                if u64::from(section.capacity) > limits::PLACES_PER_VENUE {
                    return Err(FieldError::new(
                        format!("{field}.capacity"),
                        format!("must be at most {}", limits::PLACES_PER_VENUE),
                    ));
                }
                (section.capacity, Vec::new())
            }
            SectionKind::Seated => {
                if section.rows.is_empty() {
                    return Err(FieldError::new(
                        format!("{field}.rows"),
                        "a seated section needs rows",
                    ));
                }
                if section.rows.len() > limits::ROWS_PER_SECTION {
                    return Err(FieldError::new(
                        format!("{field}.rows"),
                        format!("at most {} rows", limits::ROWS_PER_SECTION),
                    ));
                }
                let rows = section
                    .rows
                    .into_iter()
                    .enumerate()
                    .map(|(row_index, row)| {
                        parse_row(&format!("{field}.rows[{row_index}]"), row_index, row)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let capacity: usize = rows.iter().map(|row| row.seats.len()).sum();
                (capacity as u32, rows)
            }
        };
        sections.push(NewSection {
            name,
            kind,
            capacity,
            rows,
        });
    }
    let venue = NewVenue {
        name: required_text("name", &request.name, limits::NAME_MAX_CHARS)?,
        address: Address {
            street: optional_text("address.street", &address.street, limits::NAME_MAX_CHARS)?,
            city: required_text("address.city", &address.city, limits::NAME_MAX_CHARS)?,
            region: optional_text("address.region", &address.region, limits::NAME_MAX_CHARS)?,
            postal_code: optional_text("address.postal_code", &address.postal_code, 20)?,
            country_code,
        },
        location: parse_location("location", request.location)?,
        time_zone: domain::parse_time_zone("time_zone", &request.time_zone)?,
        sections,
    };
    venue.validate_layout()?;
    Ok(venue)
}

fn parse_row(field: &str, row_index: usize, row: pb::RowSpec) -> Result<NewRow, FieldError> {
    let label = required_text(&format!("{field}.label"), &row.label, 20)?;
    let seats = if row.seats.is_empty() {
        if row.seat_count == 0 {
            return Err(FieldError::new(
                format!("{field}.seat_count"),
                "a row needs at least one seat",
            ));
        }
        if row.seat_count as usize > limits::SEATS_PER_ROW {
            return Err(FieldError::new(
                format!("{field}.seat_count"),
                format!("at most {} seats per row", limits::SEATS_PER_ROW),
            ));
        }
        (1..=row.seat_count)
            .map(|number| NewSeat {
                number: number.to_string(),
                x: number as f32,
                y: row_index as f32,
            })
            .collect()
    } else {
        if row.seats.len() > limits::SEATS_PER_ROW {
            return Err(FieldError::new(
                format!("{field}.seats"),
                format!("at most {} seats per row", limits::SEATS_PER_ROW),
            ));
        }
        row.seats
            .into_iter()
            .enumerate()
            .map(|(seat_index, seat)| {
                let seat_field = format!("{field}.seats[{seat_index}]");
                if !seat.x.is_finite() || !seat.y.is_finite() {
                    return Err(FieldError::new(
                        format!("{seat_field}.x"),
                        "coordinates must be finite numbers",
                    ));
                }
                Ok(NewSeat {
                    number: required_text(&format!("{seat_field}.number"), &seat.number, 20)?,
                    x: seat.x,
                    y: seat.y,
                })
            })
            .collect::<Result<_, _>>()?
    };
    Ok(NewRow { label, seats })
}

fn parse_ids(field: &str, ids: &[String], max: usize) -> Result<Vec<Uuid>, FieldError> {
    if ids.len() > max {
        return Err(FieldError::new(field, format!("at most {max}")));
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let id = parse_id(&format!("{field}[{index}]"), id)?;
        if parsed.contains(&id) {
            return Err(FieldError::new(
                format!("{field}[{index}]"),
                "is listed twice",
            ));
        }
        parsed.push(id);
    }
    Ok(parsed)
}

fn parse_price_tiers(tiers: Vec<pb::PriceTier>) -> Result<Vec<NewPriceTier>, FieldError> {
    let tiers = tiers
        .into_iter()
        .enumerate()
        .map(|(index, tier)| {
            let field = format!("event.price_tiers[{index}]");
            let price = tier
                .price
                .ok_or_else(|| FieldError::new(format!("{field}.price"), "is required"))?;
            Ok(NewPriceTier {
                name: required_text(&format!("{field}.name"), &tier.name, limits::NAME_MAX_CHARS)?,
                price: Money::parse(
                    &format!("{field}.price"),
                    &price.currency_code,
                    price.amount_minor,
                )?,
                section_ids: parse_ids(
                    &format!("{field}.section_ids"),
                    &tier.section_ids,
                    limits::SECTIONS_PER_VENUE,
                )?,
            })
        })
        .collect::<Result<Vec<_>, FieldError>>()?;
    domain::validate_price_tiers(&tiers)?;
    Ok(tiers)
}

fn parse_new_event(event: pb::Event) -> Result<NewEvent, FieldError> {
    let schedule = Schedule {
        start_time: required_timestamp("event.start_time", event.start_time.as_ref())?,
        end_time: required_timestamp("event.end_time", event.end_time.as_ref())?,
        on_sale_time: event
            .on_sale_time
            .map(|t| timestamp("event.on_sale_time", &t))
            .transpose()?,
    };
    schedule.validate()?;
    Ok(NewEvent {
        title: required_text("event.title", &event.title, limits::NAME_MAX_CHARS)?,
        description: optional_text(
            "event.description",
            &event.description,
            limits::DESCRIPTION_MAX_CHARS,
        )?,
        category: parse_category("event.category", event.category)?,
        venue_id: parse_id("event.venue_id", &event.venue_id)?,
        performer_ids: parse_ids(
            "event.performer_ids",
            &event.performer_ids,
            limits::PERFORMERS_PER_EVENT,
        )?,
        schedule,
        price_tiers: parse_price_tiers(event.price_tiers)?,
    })
}

/// Reads only the fields the mask names; anything else in `event` is ignored,
/// and a path that cannot be updated is an error rather than silently dropped.
fn parse_patch(event: pb::Event, paths: &[String]) -> Result<EventPatch, FieldError> {
    if paths.is_empty() {
        return Err(FieldError::new(
            "update_mask",
            "must name at least one field",
        ));
    }
    let mut patch = EventPatch::default();
    let mut event = event;
    for path in paths {
        match path.as_str() {
            "title" => {
                patch.title = Some(required_text(
                    "event.title",
                    &event.title,
                    limits::NAME_MAX_CHARS,
                )?)
            }
            "description" => {
                patch.description = Some(optional_text(
                    "event.description",
                    &event.description,
                    limits::DESCRIPTION_MAX_CHARS,
                )?)
            }
            "category" => patch.category = Some(parse_category("event.category", event.category)?),
            "performer_ids" => {
                patch.performer_ids = Some(parse_ids(
                    "event.performer_ids",
                    &event.performer_ids,
                    limits::PERFORMERS_PER_EVENT,
                )?)
            }
            "start_time" => {
                patch.start_time = Some(required_timestamp(
                    "event.start_time",
                    event.start_time.as_ref(),
                )?)
            }
            "end_time" => {
                patch.end_time = Some(required_timestamp(
                    "event.end_time",
                    event.end_time.as_ref(),
                )?)
            }
            "on_sale_time" => {
                patch.on_sale_time = Some(
                    event
                        .on_sale_time
                        .map(|t| timestamp("event.on_sale_time", &t))
                        .transpose()?,
                )
            }
            "price_tiers" => {
                patch.price_tiers = Some(parse_price_tiers(std::mem::take(&mut event.price_tiers))?)
            }
            other => {
                return Err(FieldError::new(
                    "update_mask",
                    format!(
                        "'{other}' cannot be updated (title, description, category, performer_ids, start_time, end_time, on_sale_time, price_tiers)"
                    ),
                ));
            }
        }
    }
    Ok(patch)
}

// ------------------------------------------------------------ domain → wire

pub fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn category_to_pb(category: Category) -> pb::Category {
    match category {
        Category::Concert => pb::Category::Concert,
        Category::Sports => pb::Category::Sports,
        Category::Theater => pb::Category::Theater,
        Category::Comedy => pb::Category::Comedy,
        Category::Film => pb::Category::Film,
        Category::Family => pb::Category::Family,
        Category::Festival => pb::Category::Festival,
    }
}

fn status_to_pb(status: EventStatus) -> pb::EventStatus {
    match status {
        EventStatus::Draft => pb::EventStatus::Draft,
        EventStatus::Published => pb::EventStatus::Published,
        EventStatus::Cancelled => pb::EventStatus::Cancelled,
    }
}

fn section_kind_to_pb(kind: SectionKind) -> pb::SectionKind {
    match kind {
        SectionKind::Seated => pb::SectionKind::Seated,
        SectionKind::GeneralAdmission => pb::SectionKind::GeneralAdmission,
    }
}

fn lat_lng_to_pb(location: LatLng) -> pb::LatLng {
    pb::LatLng {
        latitude: location.latitude,
        longitude: location.longitude,
    }
}

fn performer_to_pb(performer: &Performer) -> pb::Performer {
    pb::Performer {
        id: performer.id.to_string(),
        name: performer.name.clone(),
        description: performer.description.clone(),
        genre: performer.genre.clone(),
        create_time: Some(to_timestamp(performer.created_at)),
        rating: None,
    }
}

fn price_tier_to_pb(tier: &PriceTier) -> pb::PriceTier {
    pb::PriceTier {
        id: tier.id.to_string(),
        name: tier.name.clone(),
        price: Some(pb::Money {
            currency_code: tier.price.currency_code.clone(),
            amount_minor: tier.price.amount_minor,
        }),
        section_ids: tier.section_ids.iter().map(Uuid::to_string).collect(),
        current_price: Some(money_to_pb(tier.current_price())),
        dynamic_pricing: tier.dynamic.as_ref().map(|dynamic| pb::DynamicPricing {
            floor_price: Some(money_to_pb(&dynamic.floor)),
            ceiling_price: Some(money_to_pb(&dynamic.ceiling)),
            step_change_basis_points: dynamic.step_change_bp,
            step_sold_basis_points: dynamic.step_sold_bp,
            sold_count: dynamic.sold_count,
            seat_count: dynamic.seat_count,
        }),
    }
}

fn money_to_pb(money: &Money) -> pb::Money {
    pb::Money {
        currency_code: money.currency_code.clone(),
        amount_minor: money.amount_minor,
    }
}

/// `SearchEvents` without the network: the request parsed, the search, the
/// page as a message (also what the search benchmark times).
pub async fn search_events(
    search: &EventSearch,
    request: &pb::SearchEventsRequest,
) -> Result<pb::SearchEventsResponse, CatalogError> {
    let parsed = parse_search_request(request, Utc::now())?;
    let page = search.search(&parsed.query).await?;
    Ok(search_page_to_pb(&parsed, page))
}

fn search_page_to_pb(parsed: &ParsedSearch, page: SearchPage) -> pb::SearchEventsResponse {
    let query = &parsed.query;
    let next_offset = query.offset + query.limit;
    let more = page.returned == query.limit && (next_offset as u64) < page.estimated_total_hits;
    let next_page_token = if more && next_offset <= MAX_OFFSET {
        encode_page_token(next_offset, parsed.fingerprint)
    } else {
        String::new()
    };
    let facets = |counts: Vec<boxoffice_search::FacetCount>| {
        counts
            .into_iter()
            .map(|facet| pb::FacetCount {
                value: facet.value,
                count: facet.count,
            })
            .collect()
    };
    pb::SearchEventsResponse {
        hits: page
            .hits
            .into_iter()
            .map(|hit| pb::SearchHit {
                event: Some(search_hit_event(&hit.event)),
                highlighted_title: highlight_to_html(&hit.highlighted_title),
                distance_km: hit.distance_km.unwrap_or_default(),
                highlighted_performers: hit
                    .highlighted_performers
                    .iter()
                    .map(|name| highlight_to_html(name))
                    .collect(),
                performers_rating: hit.performers_rating,
                performers_rating_count: hit.performers_rating_count,
            })
            .collect(),
        next_page_token,
        estimated_total_hits: page.estimated_total_hits,
        category_facets: facets(page.category_facets),
        city_facets: facets(page.city_facets),
    }
}

/// A search hit's event: search indexes the catalog's prices, not
/// inventory's moving ones, so a hit names no current price (GetEvent does).
fn search_hit_event(event: &Event) -> pb::Event {
    let mut event = event_to_pb(event);
    for tier in &mut event.price_tiers {
        tier.current_price = None;
        tier.dynamic_pricing = None;
    }
    event
}

pub fn event_to_pb(event: &Event) -> pb::Event {
    pb::Event {
        id: event.id.to_string(),
        title: event.title.clone(),
        description: event.description.clone(),
        category: category_to_pb(event.category) as i32,
        status: status_to_pb(event.status) as i32,
        venue_id: event.venue.id.to_string(),
        venue: Some(pb::EventVenue {
            id: event.venue.id.to_string(),
            name: event.venue.name.clone(),
            city: event.venue.city.clone(),
            country_code: event.venue.country_code.clone(),
            location: event.venue.location.map(lat_lng_to_pb),
        }),
        performer_ids: event.performers.iter().map(|p| p.id.to_string()).collect(),
        performers: event.performers.iter().map(performer_to_pb).collect(),
        start_time: Some(to_timestamp(event.start_time)),
        end_time: Some(to_timestamp(event.end_time)),
        time_zone: event.venue.time_zone.clone(),
        on_sale_time: event.on_sale_time.map(to_timestamp),
        price_tiers: event.price_tiers.iter().map(price_tier_to_pb).collect(),
        version: event.version,
        create_time: Some(to_timestamp(event.created_at)),
        update_time: Some(to_timestamp(event.updated_at)),
        cancel_reason: event.cancel_reason.clone().unwrap_or_default(),
        rating: None,
    }
}

fn venue_to_pb(venue: &Venue) -> pb::Venue {
    pb::Venue {
        id: venue.id.to_string(),
        name: venue.name.clone(),
        address: Some(pb::PostalAddress {
            street: venue.address.street.clone(),
            city: venue.address.city.clone(),
            region: venue.address.region.clone(),
            postal_code: venue.address.postal_code.clone(),
            country_code: venue.address.country_code.clone(),
        }),
        location: venue.location.map(lat_lng_to_pb),
        time_zone: venue.time_zone.clone(),
        capacity: venue.capacity,
        sections: venue
            .sections
            .iter()
            .map(|section| pb::SectionSummary {
                id: section.id.to_string(),
                name: section.name.clone(),
                kind: section_kind_to_pb(section.kind) as i32,
                capacity: section.capacity,
                first_seat_index: section.first_seat_index,
            })
            .collect(),
        create_time: Some(to_timestamp(venue.created_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(parse_page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(parse_page_size(7), Ok(7));
        assert_eq!(parse_page_size(-1).unwrap_err().field, "page_size");
        assert_eq!(
            parse_page_size(MAX_PAGE_SIZE as i32 + 1).unwrap_err().field,
            "page_size"
        );
    }

    #[test]
    fn unknown_mask_paths_are_refused() {
        let err = parse_patch(pb::Event::default(), &["status".to_owned()]).unwrap_err();
        assert_eq!(err.field, "update_mask");
        let err = parse_patch(pb::Event::default(), &[]).unwrap_err();
        assert_eq!(err.field, "update_mask");
    }

    #[test]
    fn unknown_enum_values_are_refused() {
        assert_eq!(
            parse_category("event.category", 99).unwrap_err().field,
            "event.category"
        );
        assert_eq!(
            parse_category("event.category", 0).unwrap_err().field,
            "event.category"
        );
    }
}
