//! The catalog through its gRPC API: visibility, admin rules, the event
//! lifecycle, field masks, validation, the outbox, cache invalidation across
//! instances, paging, seat maps and the demo data.

use std::time::Duration;

use boxoffice_catalog::store::CatalogStore;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_runtime::Caller;
use boxoffice_runtime::status::{field_of, reason_of};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{CatalogWorld, admin, as_caller, customer, eventually};

type Client = CatalogServiceClient<Channel>;

fn ts(offset_days: i64) -> prost_types::Timestamp {
    let time = chrono::Utc::now() + chrono::Duration::days(offset_days);
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    }
}

fn venue_request(name: &str) -> pb::CreateVenueRequest {
    pb::CreateVenueRequest {
        name: name.into(),
        address: Some(pb::PostalAddress {
            street: "1 Main St".into(),
            city: "Leeds".into(),
            region: String::new(),
            postal_code: "LS1".into(),
            country_code: "GB".into(),
        }),
        location: Some(pb::LatLng {
            latitude: 53.8,
            longitude: -1.55,
        }),
        time_zone: "Europe/London".into(),
        sections: vec![
            pb::SectionSpec {
                name: "Stalls".into(),
                kind: pb::SectionKind::Seated as i32,
                capacity: 0,
                rows: vec![
                    pb::RowSpec {
                        label: "A".into(),
                        seat_count: 10,
                        seats: vec![],
                    },
                    pb::RowSpec {
                        label: "B".into(),
                        seat_count: 12,
                        seats: vec![],
                    },
                ],
            },
            pb::SectionSpec {
                name: "Standing".into(),
                kind: pb::SectionKind::GeneralAdmission as i32,
                capacity: 100,
                rows: vec![],
            },
        ],
    }
}

async fn create_venue(client: &mut Client, name: &str) -> pb::Venue {
    client
        .create_venue(as_caller(&admin(), venue_request(name)))
        .await
        .expect("creating a venue")
        .into_inner()
}

async fn create_performer(client: &mut Client, name: &str) -> pb::Performer {
    client
        .create_performer(as_caller(
            &admin(),
            pb::CreatePerformerRequest {
                performer: Some(pb::Performer {
                    name: name.into(),
                    genre: "rock".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating a performer")
        .into_inner()
}

fn event_input(venue: &pb::Venue, performer: &pb::Performer, title: &str, day: i64) -> pb::Event {
    pb::Event {
        title: title.into(),
        description: "An evening".into(),
        category: pb::Category::Concert as i32,
        venue_id: venue.id.clone(),
        performer_ids: vec![performer.id.clone()],
        start_time: Some(ts(day)),
        end_time: Some(ts(day + 1)),
        price_tiers: vec![
            pb::PriceTier {
                name: "Seated".into(),
                price: Some(pb::Money {
                    currency_code: "GBP".into(),
                    amount_minor: 4500,
                }),
                section_ids: vec![venue.sections[0].id.clone()],
                ..Default::default()
            },
            pb::PriceTier {
                name: "Standing".into(),
                price: Some(pb::Money {
                    currency_code: "GBP".into(),
                    amount_minor: 3000,
                }),
                section_ids: vec![venue.sections[1].id.clone()],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

async fn create_event(client: &mut Client, event: pb::Event) -> pb::Event {
    client
        .create_event(as_caller(
            &admin(),
            pb::CreateEventRequest { event: Some(event) },
        ))
        .await
        .expect("creating an event")
        .into_inner()
}

/// A venue, a performer and a draft event.
async fn draft_event(client: &mut Client) -> (pb::Venue, pb::Performer, pb::Event) {
    let venue = create_venue(client, "Town Hall").await;
    let performer = create_performer(client, "The Testers").await;
    let event = create_event(client, event_input(&venue, &performer, "Launch Night", 10)).await;
    (venue, performer, event)
}

async fn publish(client: &mut Client, id: &str) -> pb::Event {
    client
        .publish_event(as_caller(
            &admin(),
            pb::PublishEventRequest { id: id.into() },
        ))
        .await
        .expect("publishing")
        .into_inner()
}

async fn get_event(
    client: &mut Client,
    caller: &Caller,
    id: &str,
) -> Result<pb::Event, tonic::Status> {
    client
        .get_event(as_caller(caller, pb::GetEventRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn outbox(world: &CatalogWorld, aggregate_id: &str) -> Vec<(String, i64)> {
    let id = aggregate_id.to_owned();
    world
        .db
        .client()
        .await
        .query(
            "SELECT event_type, sequence FROM catalog.event_outbox WHERE aggregate_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn an_event_shows_venue_performers_and_price_tiers() {
    let mut world = CatalogWorld::new().await;
    let (venue, performer, event) = draft_event(&mut world.client).await;
    publish(&mut world.client, &event.id).await;
    let shown = get_event(&mut world.client, &Caller::anonymous(), &event.id)
        .await
        .unwrap();
    assert_eq!(shown.title, "Launch Night");
    assert_eq!(shown.status, pb::EventStatus::Published as i32);
    assert_eq!(shown.venue.as_ref().unwrap().name, "Town Hall");
    assert_eq!(shown.venue.as_ref().unwrap().city, "Leeds");
    assert_eq!(shown.time_zone, "Europe/London");
    assert_eq!(shown.performers.len(), 1);
    assert_eq!(shown.performers[0].id, performer.id);
    assert_eq!(shown.price_tiers.len(), 2);
    assert_eq!(
        shown.price_tiers[0].price.as_ref().unwrap().amount_minor,
        4500
    );
    assert_eq!(
        shown.price_tiers[0].section_ids,
        vec![venue.sections[0].id.clone()]
    );
}

#[tokio::test]
async fn drafts_are_hidden_from_buyers() {
    let mut world = CatalogWorld::new().await;
    let (_, _, event) = draft_event(&mut world.client).await;

    for buyer in [Caller::anonymous(), customer()] {
        let status = get_event(&mut world.client, &buyer, &event.id)
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "a draft must not exist for a buyer"
        );
        let status = world
            .client
            .get_seat_map(as_caller(
                &buyer,
                pb::GetSeatMapRequest {
                    event_id: event.id.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        let listed = world
            .client
            .list_events(as_caller(&buyer, pb::ListEventsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.events.iter().all(|e| e.id != event.id));
        let status = world
            .client
            .list_events(as_caller(
                &buyer,
                pb::ListEventsRequest {
                    status: pb::EventStatus::Draft as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    assert!(
        get_event(&mut world.client, &admin(), &event.id)
            .await
            .is_ok(),
        "admins see drafts"
    );

    publish(&mut world.client, &event.id).await;
    let shown = get_event(&mut world.client, &Caller::anonymous(), &event.id)
        .await
        .unwrap();
    assert_eq!(shown.status, pb::EventStatus::Published as i32);
}

#[tokio::test]
async fn admin_rpcs_need_the_admin_role() {
    let mut world = CatalogWorld::new().await;
    for caller in [Caller::anonymous(), customer()] {
        let status = world
            .client
            .create_venue(as_caller(&caller, venue_request("Sneaky Hall")))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(reason_of(&status).as_deref(), Some("ADMIN_REQUIRED"));
    }
    let count: i64 = world
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM catalog.venues", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "a refused call changes nothing");
}

#[tokio::test]
async fn a_cancelled_event_stays_visible_but_can_no_longer_change() {
    let mut world = CatalogWorld::new().await;
    let (_, _, event) = draft_event(&mut world.client).await;
    publish(&mut world.client, &event.id).await;
    let cancelled = world
        .client
        .cancel_event(as_caller(
            &admin(),
            pb::CancelEventRequest {
                id: event.id.clone(),
                reason: "storm warning".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::EventStatus::Cancelled as i32);
    assert_eq!(cancelled.cancel_reason, "storm warning");

    let shown = get_event(&mut world.client, &Caller::anonymous(), &event.id)
        .await
        .unwrap();
    assert_eq!(shown.status, pb::EventStatus::Cancelled as i32);

    let status = world
        .client
        .update_event(as_caller(
            &admin(),
            pb::UpdateEventRequest {
                event: Some(pb::Event {
                    id: event.id.clone(),
                    title: "Back on".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&status).as_deref(), Some("EVENT_CANCELLED"));
    let status = world
        .client
        .publish_event(as_caller(
            &admin(),
            pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status).as_deref(), Some("EVENT_CANCELLED"));

    let after = get_event(&mut world.client, &admin(), &event.id)
        .await
        .unwrap();
    assert_eq!(after.title, "Launch Night");
    assert_eq!(
        after.version, cancelled.version,
        "refused updates change nothing"
    );
}

#[tokio::test]
async fn a_field_mask_update_changes_only_the_named_fields() {
    let mut world = CatalogWorld::new().await;
    let (_, _, event) = draft_event(&mut world.client).await;
    let updated = world
        .client
        .update_event(as_caller(
            &admin(),
            pb::UpdateEventRequest {
                event: Some(pb::Event {
                    id: event.id.clone(),
                    title: "Launch Night (extra date)".into(),
                    // Not in the mask: must be ignored.
                    description: "SHOULD NOT APPEAR".into(),
                    category: pb::Category::Comedy as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.title, "Launch Night (extra date)");
    assert_eq!(updated.description, event.description);
    assert_eq!(updated.category, event.category);
    assert_eq!(updated.start_time, event.start_time);
    assert_eq!(updated.price_tiers.len(), event.price_tiers.len());
    assert_eq!(updated.performers.len(), 1);
    assert_eq!(updated.version, event.version + 1);

    let status = world
        .client
        .update_event(as_caller(
            &admin(),
            pb::UpdateEventRequest {
                event: Some(pb::Event {
                    id: event.id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_of(&status).as_deref(), Some("update_mask"));
}

#[tokio::test]
async fn bad_and_unknown_ids() {
    let mut world = CatalogWorld::new().await;
    let status = get_event(&mut world.client, &Caller::anonymous(), "not-a-uuid")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_of(&status).as_deref(), Some("id"));
    assert_eq!(reason_of(&status).as_deref(), Some("INVALID_FIELD"));

    let unknown = uuid::Uuid::new_v4().to_string();
    let status = get_event(&mut world.client, &Caller::anonymous(), &unknown)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason_of(&status).as_deref(), Some("NOT_FOUND"));
    let status = world
        .client
        .get_venue(pb::GetVenueRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = world
        .client
        .get_performer(pb::GetPerformerRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = world
        .client
        .get_seat_map(pb::GetSeatMapRequest {
            event_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&status).as_deref(), Some("event_id"));
}

#[tokio::test]
async fn bad_input_says_why_and_changes_nothing() {
    let mut world = CatalogWorld::new().await;
    let venue = create_venue(&mut world.client, "Corn Exchange").await;
    let other_venue = create_venue(&mut world.client, "Elsewhere Hall").await;
    let performer = create_performer(&mut world.client, "Band").await;

    let mut cases: Vec<(&str, pb::Event)> = Vec::new();
    let mut unknown_category = event_input(&venue, &performer, "x", 5);
    unknown_category.category = 42;
    cases.push(("event.category", unknown_category));
    let mut negative_price = event_input(&venue, &performer, "x", 5);
    negative_price.price_tiers[0]
        .price
        .as_mut()
        .unwrap()
        .amount_minor = -100;
    cases.push(("event.price_tiers[0].price.amount_minor", negative_price));
    let mut foreign_section = event_input(&venue, &performer, "x", 5);
    foreign_section.price_tiers[1].section_ids = vec![other_venue.sections[1].id.clone()];
    cases.push(("event.price_tiers[1].section_ids", foreign_section));
    let mut backwards = event_input(&venue, &performer, "x", 5);
    backwards.end_time = Some(ts(4));
    cases.push(("event.end_time", backwards));
    let mut empty_title = event_input(&venue, &performer, "   ", 5);
    empty_title.title = "  ".into();
    cases.push(("event.title", empty_title));
    let mut twice = event_input(&venue, &performer, "x", 5);
    twice.price_tiers[1].section_ids = twice.price_tiers[0].section_ids.clone();
    cases.push(("event.price_tiers[1].section_ids", twice));

    for (field, event) in cases {
        let status = world
            .client
            .create_event(as_caller(
                &admin(),
                pb::CreateEventRequest { event: Some(event) },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(field_of(&status).as_deref(), Some(field), "{status:?}");
    }

    let mut zero_capacity = venue_request("Empty Room");
    zero_capacity.sections[1].capacity = 0;
    let status = world
        .client
        .create_venue(as_caller(&admin(), zero_capacity))
        .await
        .unwrap_err();
    assert_eq!(field_of(&status).as_deref(), Some("sections[1].capacity"));
    let mut unknown_kind = venue_request("Odd Room");
    unknown_kind.sections[0].kind = 9;
    let status = world
        .client
        .create_venue(as_caller(&admin(), unknown_kind))
        .await
        .unwrap_err();
    assert_eq!(field_of(&status).as_deref(), Some("sections[0].kind"));
    let mut bad_zone = venue_request("Timeless Room");
    bad_zone.time_zone = "Europe/Atlantis".into();
    let status = world
        .client
        .create_venue(as_caller(&admin(), bad_zone))
        .await
        .unwrap_err();
    assert_eq!(field_of(&status).as_deref(), Some("time_zone"));

    // An oversized message is refused by the explicit decode limit.
    let mut huge = venue_request("Huge Hall");
    huge.name = "x".repeat(5 * 1024 * 1024);
    let status = world
        .client
        .create_venue(as_caller(&admin(), huge))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "oversized: {status:?}"
    );

    let client = world.db.client().await;
    let events: i64 = client
        .query_one("SELECT count(*) FROM catalog.events", &[])
        .await
        .unwrap()
        .get(0);
    let venues: i64 = client
        .query_one("SELECT count(*) FROM catalog.venues", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((events, venues), (0, 2), "nothing was created by bad input");
}

#[tokio::test]
async fn outbox_rows_are_written_with_their_changes_and_only_then() {
    let mut world = CatalogWorld::new().await;
    let (_, _, event) = draft_event(&mut world.client).await;
    publish(&mut world.client, &event.id).await;
    assert_eq!(
        outbox(&world, &event.id).await,
        vec![
            ("boxoffice.events.v1.EventCreated".to_owned(), 1),
            ("boxoffice.events.v1.EventPublished".to_owned(), 2)
        ]
    );

    // An update that fails half-way (an unknown performer is found inside the
    // transaction) leaves neither a change nor an outbox row behind.
    let status = world
        .client
        .update_event(as_caller(
            &admin(),
            pb::UpdateEventRequest {
                event: Some(pb::Event {
                    id: event.id.clone(),
                    title: "Renamed".into(),
                    performer_ids: vec![uuid::Uuid::new_v4().to_string()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into(), "performer_ids".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(outbox(&world, &event.id).await.len(), 2);
    let after = get_event(&mut world.client, &admin(), &event.id)
        .await
        .unwrap();
    assert_eq!(after.title, "Launch Night");
    assert_eq!(after.version, 2);
}

#[tokio::test]
async fn an_update_shows_on_every_instance_within_a_second() {
    let mut world = CatalogWorld::new().await;
    let (_, _, event) = draft_event(&mut world.client).await;
    publish(&mut world.client, &event.id).await;

    // A second catalog instance on the same database, with a warm cache.
    let second = crate::harness::second_catalog(&world).await;
    let mut second_client = CatalogServiceClient::new(second.channel().await);
    let cached = get_event(&mut second_client, &Caller::anonymous(), &event.id)
        .await
        .unwrap();
    assert_eq!(cached.title, "Launch Night");

    world
        .client
        .update_event(as_caller(
            &admin(),
            pb::UpdateEventRequest {
                event: Some(pb::Event {
                    id: event.id.clone(),
                    title: "Launch Night — moved upstairs".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(1),
        "the other instance to see the update",
        || {
            let mut client = second_client.clone();
            let id = event.id.clone();
            async move {
                let shown = get_event(&mut client, &Caller::anonymous(), &id)
                    .await
                    .ok()?;
                (shown.title == "Launch Night — moved upstairs").then_some(())
            }
        },
    )
    .await;

    // A change made straight in PostgreSQL (an operator's fix) is seen too:
    // the trigger notifies, not the service code.
    let id = uuid::Uuid::parse_str(&event.id).unwrap();
    world
        .db
        .client()
        .await
        .execute(
            "UPDATE catalog.events SET description = 'fixed by hand' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(1),
        "both instances to see the manual fix",
        || {
            let mut first = world.client.clone();
            let mut second = second_client.clone();
            let id = event.id.clone();
            async move {
                let a = get_event(&mut first, &Caller::anonymous(), &id)
                    .await
                    .ok()?;
                let b = get_event(&mut second, &Caller::anonymous(), &id)
                    .await
                    .ok()?;
                (a.description == "fixed by hand" && b.description == "fixed by hand").then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn list_events_pages_in_start_order_without_gaps_or_repeats() {
    let mut world = CatalogWorld::new().await;
    let venue = create_venue(&mut world.client, "Paging Hall").await;
    let performer = create_performer(&mut world.client, "Pagers").await;
    let mut expected = Vec::new();
    for day in [9, 3, 5, 7, 1] {
        let event = create_event(
            &mut world.client,
            event_input(&venue, &performer, &format!("Day {day}"), day),
        )
        .await;
        publish(&mut world.client, &event.id).await;
        expected.push((day, event.id));
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = world
            .client
            .list_events(pb::ListEventsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.events.len() <= 2);
        seen.extend(page.events.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        expected.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    );

    let status = world
        .client
        .list_events(pb::ListEventsRequest {
            page_size: 10_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&status).as_deref(), Some("page_size"));
    let status = world
        .client
        .list_events(pb::ListEventsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&status).as_deref(), Some("page_token"));
}

#[tokio::test]
async fn the_seat_map_has_every_seat_with_its_section_and_price() {
    let mut world = CatalogWorld::new().await;
    let (venue, _, event) = draft_event(&mut world.client).await;
    publish(&mut world.client, &event.id).await;
    let map = world
        .client
        .get_seat_map(pb::GetSeatMapRequest {
            event_id: event.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(map.venue_id, venue.id);
    assert_eq!(map.seat_count, 122, "22 seats plus 100 standing places");
    let stalls = &map.sections[0];
    assert_eq!(stalls.rows.len(), 2);
    assert_eq!(stalls.rows[1].label, "B");
    assert_eq!(stalls.rows[1].seats.len(), 12);
    let indexes: Vec<u32> = stalls
        .rows
        .iter()
        .flat_map(|r| r.seats.iter().map(|s| s.seat_index))
        .collect();
    assert_eq!(
        indexes,
        (0..22).collect::<Vec<_>>(),
        "seat indexes are dense from 0"
    );
    let standing = &map.sections[1];
    assert_eq!(standing.kind, pb::SectionKind::GeneralAdmission as i32);
    assert_eq!((standing.first_seat_index, standing.capacity), (22, 100));
    assert!(standing.rows.is_empty());
    assert_eq!(stalls.price_tier_id, event.price_tiers[0].id);
    assert_eq!(standing.price_tier_id, event.price_tiers[1].id);
}

#[tokio::test]
async fn health_reports_serving() {
    let world = CatalogWorld::new().await;
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(world.server.channel().await);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "boxoffice.catalog.v1.CatalogService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn demo_data_has_an_arena_and_a_year_of_events() {
    let world = CatalogWorld::new().await;
    let store = CatalogStore::new(world.db.pool.clone());
    let report = boxoffice_catalog::seed::seed_if_empty(&store, 500)
        .await
        .unwrap()
        .expect("seeded");
    assert_eq!(report.events, 500);
    assert!(
        boxoffice_catalog::seed::seed_if_empty(&store, 500)
            .await
            .unwrap()
            .is_none(),
        "seeds once"
    );
    let client = world.db.client().await;
    let arena: i32 = client
        .query_one("SELECT max(capacity) FROM catalog.venues", &[])
        .await
        .unwrap()
        .get(0);
    assert!(arena >= 15_000);
    let cities: i64 = client
        .query_one("SELECT count(DISTINCT city) FROM catalog.venues", &[])
        .await
        .unwrap()
        .get(0);
    assert!(cities >= 3);
    let performers: i64 = client
        .query_one("SELECT count(*) FROM catalog.performers", &[])
        .await
        .unwrap()
        .get(0);
    assert!(performers >= 45);
    let span_days: f64 = client
        .query_one(
            "SELECT (extract(epoch FROM max(start_time) - min(start_time)) / 86400)::float8 FROM catalog.events",
            &[],
        )
        .await
        .unwrap()
        .get::<_, f64>(0);
    assert!(
        span_days > 300.0,
        "events span the next year ({span_days} days)"
    );
}
