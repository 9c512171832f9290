//! `catalog.SearchEvents` end to end: events created, changed, published
//! and cancelled through the admin RPCs, found (or no longer found) through
//! search, for every engine. The embedded engine always runs; Meilisearch
//! runs when `BOXOFFICE_MEILISEARCH_URL` is set (each test in an index of its
//! own) and is reported as skipped otherwise. Also: bad input, and the
//! indexer surviving an engine outage and a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use boxoffice_catalog::CatalogComponent;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::status::field_of;
use boxoffice_runtime::{Caller, Shutdown};
use boxoffice_search::config::{ENV_MEILISEARCH_KEY, ENV_MEILISEARCH_URL};
use boxoffice_search::embedded::EmbeddedIndex;
use boxoffice_search::meilisearch::MeilisearchIndex;
use boxoffice_search::{
    Checkpoint, SearchDocument, SearchError, SearchIndex, SearchQuery, SearchResults,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{
    RunningServer, TestDb, admin, as_caller, customer, eventually, spawn_server, test_config,
};

type Client = CatalogServiceClient<Channel>;

/// How long a catalog change may take to show in search.
const FRESHNESS: Duration = Duration::from_secs(2);

/// The catalog over a fresh database with a given search engine.
struct SearchWorld {
    engine: &'static str,
    client: Client,
    meili: Option<Arc<MeilisearchIndex>>,
    server: RunningServer,
    db: TestDb,
}

impl SearchWorld {
    async fn new(index: Arc<dyn SearchIndex>, meili: Option<Arc<MeilisearchIndex>>) -> Self {
        let db = TestDb::new().await;
        let server = serve(&db, index.clone()).await;
        let client = CatalogServiceClient::new(server.channel().await);
        Self {
            engine: index.engine(),
            client,
            meili,
            server,
            db,
        }
    }

    async fn finish(self) {
        let Self {
            meili, server, db, ..
        } = self;
        drop(server);
        if let Some(meili) = meili
            && let Err(error) = meili.drop_indexes().await
        {
            eprintln!("could not drop test index {}: {error:#}", meili.uid());
        }
        drop(db);
    }

    async fn search(&mut self, request: pb::SearchEventsRequest) -> pb::SearchEventsResponse {
        let engine = self.engine;
        self.client
            .search_events(as_caller(&customer(), request))
            .await
            .unwrap_or_else(|status| panic!("{engine}: search failed: {status:?}"))
            .into_inner()
    }

    /// Waits until `request` finds exactly the events `expected` (by title).
    async fn wait_for_titles(
        &mut self,
        mut request: pb::SearchEventsRequest,
        expected: &[&str],
        within: Duration,
    ) {
        let engine = self.engine;
        request.page_size = 100;
        let mut expected: Vec<String> = expected.iter().map(|t| (*t).to_owned()).collect();
        expected.sort();
        let what = format!("{engine}: '{}' to find {expected:?}", request.query);
        eventually(within, &what, || {
            let request = request.clone();
            let expected = expected.clone();
            let mut client = self.client.clone();
            async move {
                let found = client
                    .search_events(as_caller(&customer(), request))
                    .await
                    .ok()?
                    .into_inner();
                let mut titles = titles(&found);
                titles.sort();
                (titles == expected).then_some(())
            }
        })
        .await;
    }
}

async fn serve(db: &TestDb, index: Arc<dyn SearchIndex>) -> RunningServer {
    let config = test_config(db, &[]);
    let shutdown = Shutdown::new();
    let mut server = GrpcServer::bind(config.listen)
        .await
        .expect("binding the test server");
    let component = CatalogComponent::start_with_search_index(
        &config,
        db.pool.clone(),
        shutdown.clone(),
        index,
    )
    .await
    .expect("starting the catalog");
    component.register(&mut server);
    let addr = server.local_addr();
    spawn_server(server, &shutdown);
    RunningServer { addr, shutdown }
}

/// Says, once per run and past the test harness's output capture, that
/// Meilisearch was not tested.
fn say_meilisearch_skipped() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "search (integration): Meilisearch SKIPPED ({ENV_MEILISEARCH_URL} is not set); the embedded engine was tested"
        );
    });
}

/// One world per engine this run can test.
async fn worlds() -> Vec<SearchWorld> {
    let mut worlds = vec![
        SearchWorld::new(
            Arc::new(EmbeddedIndex::in_memory().expect("in-memory index")),
            None,
        )
        .await,
    ];
    match std::env::var(ENV_MEILISEARCH_URL)
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        Some(url) => {
            let key = std::env::var(ENV_MEILISEARCH_KEY).ok();
            let uid = format!("boxoffice_test_{}", uuid::Uuid::new_v4().simple());
            let meili = Arc::new(
                MeilisearchIndex::new(url.trim(), key.as_deref(), &uid)
                    .expect("meilisearch client"),
            );
            worlds.push(SearchWorld::new(meili.clone(), Some(meili)).await);
        }
        None => say_meilisearch_skipped(),
    }
    worlds
}

fn titles(response: &pb::SearchEventsResponse) -> Vec<String> {
    response
        .hits
        .iter()
        .filter_map(|hit| hit.event.as_ref().map(|event| event.title.clone()))
        .collect()
}

fn ts(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    }
}

fn days(n: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(n)
}

fn query(text: &str) -> pb::SearchEventsRequest {
    pb::SearchEventsRequest {
        query: text.into(),
        ..Default::default()
    }
}

struct Place {
    venue: &'static str,
    city: &'static str,
    country: &'static str,
    latitude: f64,
    longitude: f64,
}

const WEMBLEY: Place = Place {
    venue: "Wembley Stadium",
    city: "London",
    country: "GB",
    latitude: 51.5560,
    longitude: -0.2796,
};
const O2: Place = Place {
    venue: "The O2 Arena",
    city: "London",
    country: "GB",
    latitude: 51.5030,
    longitude: 0.0032,
};
const STADE: Place = Place {
    venue: "Stade de France",
    city: "Paris",
    country: "FR",
    latitude: 48.9245,
    longitude: 2.3602,
};
const LUZ: Place = Place {
    venue: "Estádio da Luz",
    city: "Lisbon",
    country: "PT",
    latitude: 38.7527,
    longitude: -9.1847,
};

async fn create_venue(client: &mut Client, place: &Place) -> pb::Venue {
    let request = pb::CreateVenueRequest {
        name: place.venue.into(),
        address: Some(pb::PostalAddress {
            street: "1 Main St".into(),
            city: place.city.into(),
            region: String::new(),
            postal_code: "1".into(),
            country_code: place.country.into(),
        }),
        location: Some(pb::LatLng {
            latitude: place.latitude,
            longitude: place.longitude,
        }),
        time_zone: "Europe/London".into(),
        sections: vec![pb::SectionSpec {
            name: "Floor".into(),
            kind: pb::SectionKind::GeneralAdmission as i32,
            capacity: 100,
            rows: vec![],
        }],
    };
    client
        .create_venue(as_caller(&admin(), request))
        .await
        .expect("creating a venue")
        .into_inner()
}

async fn create_performer(client: &mut Client, name: &str) -> pb::Performer {
    let request = pb::CreatePerformerRequest {
        performer: Some(pb::Performer {
            name: name.into(),
            genre: "pop".into(),
            ..Default::default()
        }),
    };
    client
        .create_performer(as_caller(&admin(), request))
        .await
        .expect("creating a performer")
        .into_inner()
}

struct NewEvent<'a> {
    title: &'a str,
    category: pb::Category,
    venue: &'a pb::Venue,
    performers: &'a [&'a pb::Performer],
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    publish: bool,
}

async fn create_event(client: &mut Client, event: NewEvent<'_>) -> pb::Event {
    let input = pb::Event {
        title: event.title.into(),
        description: "A night to remember".into(),
        category: event.category as i32,
        venue_id: event.venue.id.clone(),
        performer_ids: event.performers.iter().map(|p| p.id.clone()).collect(),
        start_time: Some(ts(event.start)),
        end_time: Some(ts(event.end)),
        price_tiers: vec![pb::PriceTier {
            name: "General".into(),
            price: Some(pb::Money {
                currency_code: "EUR".into(),
                amount_minor: 5_000,
            }),
            section_ids: vec![event.venue.sections[0].id.clone()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let created = client
        .create_event(as_caller(
            &admin(),
            pb::CreateEventRequest { event: Some(input) },
        ))
        .await
        .expect("creating an event")
        .into_inner();
    if !event.publish {
        return created;
    }
    client
        .publish_event(as_caller(
            &admin(),
            pb::PublishEventRequest { id: created.id },
        ))
        .await
        .expect("publishing")
        .into_inner()
}

/// The shared line-up: four published events in three cities, one draft.
struct LineUp {
    wembley: pb::Venue,
    swift: pb::Performer,
    metallica: pb::Performer,
}

async fn line_up(world: &mut SearchWorld) -> LineUp {
    let client = &mut world.client;
    let wembley = create_venue(client, &WEMBLEY).await;
    let o2 = create_venue(client, &O2).await;
    let stade = create_venue(client, &STADE).await;
    let luz = create_venue(client, &LUZ).await;
    let swift = create_performer(client, "Taylor Swift").await;
    let metallica = create_performer(client, "Metallica").await;
    let beyonce = create_performer(client, "Beyoncé").await;
    let comic = create_performer(client, "Stewart Lee").await;
    let concert = pb::Category::Concert;
    for (title, category, venue, performer, day) in [
        ("The Eras Tour", concert, &wembley, &swift, 10),
        ("M72 World Tour", concert, &stade, &metallica, 20),
        ("Renaissance", concert, &luz, &beyonce, 30),
        ("Basic Lee", pb::Category::Comedy, &o2, &comic, 40),
    ] {
        let event = NewEvent {
            title,
            category,
            venue,
            performers: &[performer],
            start: days(day),
            end: days(day) + chrono::Duration::hours(3),
            publish: true,
        };
        create_event(client, event).await;
    }
    let draft = NewEvent {
        title: "Secret Show",
        category: concert,
        venue: &o2,
        performers: &[&swift],
        start: days(50),
        end: days(50) + chrono::Duration::hours(3),
        publish: false,
    };
    create_event(client, draft).await;
    let all = [
        "The Eras Tour",
        "M72 World Tour",
        "Renaissance",
        "Basic Lee",
    ];
    world
        .wait_for_titles(query(""), &all, Duration::from_secs(10))
        .await;
    LineUp {
        wembley,
        swift,
        metallica,
    }
}

#[tokio::test]
async fn search_tolerates_typos_prefixes_and_accents() {
    for mut world in worlds().await {
        let engine = world.engine;
        line_up(&mut world).await;
        let found = world.search(query("tayler swfit")).await;
        assert_eq!(titles(&found), vec!["The Eras Tour"], "{engine}: typos");
        let hit = &found.hits[0];
        assert!(
            hit.highlighted_performers[0].contains("<em>"),
            "{engine}: {:?}",
            hit.highlighted_performers
        );
        assert_eq!(
            hit.event.as_ref().map(|e| e.performers.len()),
            Some(1),
            "{engine}: the whole event"
        );

        assert_eq!(
            titles(&world.search(query("metal")).await),
            vec!["M72 World Tour"],
            "{engine}: prefix"
        );
        assert_eq!(
            titles(&world.search(query("beyonce")).await),
            vec!["Renaissance"],
            "{engine}: accents"
        );
        assert_eq!(
            titles(&world.search(query("ESTADIO")).await),
            vec!["Renaissance"],
            "{engine}: venue, case"
        );
        let eras = world.search(query("eras")).await;
        assert_eq!(
            eras.hits[0].highlighted_title, "The <em>Eras</em> Tour",
            "{engine}: highlight"
        );
        assert!(
            world.search(query("secret")).await.hits.is_empty(),
            "{engine}: drafts stay hidden"
        );
        world.finish().await;
    }
}

#[tokio::test]
async fn search_filters_sorts_and_counts_facets() {
    for mut world in worlds().await {
        let engine = world.engine;
        let line_up = line_up(&mut world).await;
        let mut by_city = query("");
        by_city.city = "London".into();
        let found = world.search(by_city).await;
        assert_eq!(
            titles(&found),
            vec!["The Eras Tour", "Basic Lee"],
            "{engine}: city, by date"
        );

        let mut by_category = query("");
        by_category.category = pb::Category::Comedy as i32;
        assert_eq!(
            titles(&world.search(by_category).await),
            vec!["Basic Lee"],
            "{engine}: category"
        );

        let mut by_performer = query("");
        by_performer.performer_id = line_up.metallica.id.clone();
        assert_eq!(
            titles(&world.search(by_performer).await),
            vec!["M72 World Tour"],
            "{engine}: performer"
        );

        let mut by_venue = query("tour");
        by_venue.venue_id = line_up.wembley.id.clone();
        assert_eq!(
            titles(&world.search(by_venue).await),
            vec!["The Eras Tour"],
            "{engine}: venue"
        );

        let mut by_dates = query("");
        by_dates.start_after = Some(ts(days(15)));
        by_dates.start_before = Some(ts(days(35)));
        assert_eq!(
            titles(&world.search(by_dates).await),
            vec!["M72 World Tour", "Renaissance"],
            "{engine}: date range"
        );

        // Trafalgar Square: Wembley ~13 km, the O2 ~9 km, Paris ~340 km.
        let trafalgar = pb::LatLng {
            latitude: 51.5080,
            longitude: -0.1281,
        };
        let mut nearby = query("");
        nearby.near = Some(trafalgar);
        nearby.radius_km = 20.0;
        nearby.sort = pb::SearchSort::Distance as i32;
        let found = world.search(nearby).await;
        assert_eq!(
            titles(&found),
            vec!["Basic Lee", "The Eras Tour"],
            "{engine}: radius, nearest first"
        );
        assert!(
            (found.hits[0].distance_km - 9.4).abs() < 1.0,
            "{engine}: {}",
            found.hits[0].distance_km
        );
        let mut narrower = query("");
        narrower.near = Some(trafalgar);
        narrower.radius_km = 10.0;
        assert_eq!(
            titles(&world.search(narrower).await),
            vec!["Basic Lee"],
            "{engine}: smaller radius"
        );

        let mut by_distance = query("");
        by_distance.near = Some(pb::LatLng {
            latitude: 38.72,
            longitude: -9.14,
        });
        by_distance.sort = pb::SearchSort::Distance as i32;
        let order = titles(&world.search(by_distance).await);
        assert_eq!(
            order.first().map(String::as_str),
            Some("Renaissance"),
            "{engine}: Lisbon first"
        );
        assert_eq!(
            order.get(1).map(String::as_str),
            Some("M72 World Tour"),
            "{engine}: then Paris"
        );

        let found = world.search(query("")).await;
        assert_eq!(found.estimated_total_hits, 4, "{engine}");
        let categories: Vec<(&str, u64)> = found
            .category_facets
            .iter()
            .map(|f| (f.value.as_str(), f.count))
            .collect();
        assert_eq!(
            categories,
            vec![("concert", 3), ("comedy", 1)],
            "{engine}: category facets"
        );
        let cities: Vec<(&str, u64)> = found
            .city_facets
            .iter()
            .map(|f| (f.value.as_str(), f.count))
            .collect();
        assert_eq!(
            cities,
            vec![("London", 2), ("Lisbon", 1), ("Paris", 1)],
            "{engine}: city facets"
        );
        let _ = &line_up.swift;
        world.finish().await;
    }
}

#[tokio::test]
async fn search_pages_are_stable_and_complete() {
    for mut world in worlds().await {
        let engine = world.engine;
        let client = &mut world.client;
        let venue = create_venue(client, &WEMBLEY).await;
        let band = create_performer(client, "The Pagers").await;
        let mut expected = Vec::new();
        for n in 0..25 {
            let title = format!("Paging Night {n}");
            // Five share each start time: only the tie-breaker orders them.
            let start = days(5 + n / 5);
            let event = NewEvent {
                title: &title,
                category: pb::Category::Concert,
                venue: &venue,
                performers: &[&band],
                start,
                end: start + chrono::Duration::hours(2),
                publish: true,
            };
            create_event(client, event).await;
            expected.push(title);
        }
        let expected_refs: Vec<&str> = expected.iter().map(String::as_str).collect();
        world
            .wait_for_titles(query("paging"), &expected_refs, Duration::from_secs(10))
            .await;
        for text in ["", "paging night"] {
            let mut seen = Vec::new();
            let mut request = query(text);
            request.page_size = 7;
            loop {
                let page = world.search(request.clone()).await;
                assert_eq!(
                    titles(&world.search(request.clone()).await),
                    titles(&page),
                    "{engine}: repeatable"
                );
                seen.extend(titles(&page));
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                seen.len(),
                25,
                "{engine}: '{text}' every event once: {seen:?}"
            );
            assert_eq!(sorted.len(), 25, "{engine}: '{text}' no repeats");
        }
        // A token only works for the search it came from.
        let mut first = query("paging");
        first.page_size = 5;
        let token = world.search(first).await.next_page_token;
        let mut other = query("night");
        other.page_token = token;
        let status = world
            .client
            .search_events(other)
            .await
            .expect_err("a foreign token");
        assert_eq!(status.code(), Code::InvalidArgument, "{engine}");
        assert_eq!(field_of(&status).as_deref(), Some("page_token"), "{engine}");
        world.finish().await;
    }
}

#[tokio::test]
async fn catalog_changes_show_in_search_within_two_seconds() {
    for mut world in worlds().await {
        let engine = world.engine;
        let line_up = line_up(&mut world).await;
        let eras = world.search(query("eras")).await.hits[0]
            .event
            .clone()
            .expect("an event");
        let client = &mut world.client;

        // A new published event appears.
        let encore = NewEvent {
            title: "Midnights Encore",
            category: pb::Category::Concert,
            venue: &line_up.wembley,
            performers: &[&line_up.swift],
            start: days(60),
            end: days(60) + chrono::Duration::hours(3),
            publish: true,
        };
        create_event(client, encore).await;
        world
            .wait_for_titles(query("midnights"), &["Midnights Encore"], FRESHNESS)
            .await;

        // A renamed event is found by its new name only.
        let rename = pb::UpdateEventRequest {
            event: Some(pb::Event {
                id: eras.id.clone(),
                title: "The Eras Tour Finale".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
        };
        world
            .client
            .update_event(as_caller(&admin(), rename))
            .await
            .expect("renaming");
        world
            .wait_for_titles(query("finale"), &["The Eras Tour Finale"], FRESHNESS)
            .await;

        // A cancelled event disappears.
        let cancel = pb::CancelEventRequest {
            id: eras.id.clone(),
            reason: "weather".into(),
        };
        world
            .client
            .cancel_event(as_caller(&admin(), cancel))
            .await
            .expect("cancelling");
        world
            .wait_for_titles(query("tayler swfit"), &["Midnights Encore"], FRESHNESS)
            .await;

        // An event that is on now is found until it ends, then disappears.
        let ending = NewEvent {
            title: "Sunset Session",
            category: pb::Category::Concert,
            venue: &line_up.wembley,
            performers: &[&line_up.swift],
            start: chrono::Utc::now() - chrono::Duration::hours(1),
            end: chrono::Utc::now() + chrono::Duration::seconds(3),
            publish: true,
        };
        create_event(&mut world.client, ending).await;
        world
            .wait_for_titles(query("sunset"), &["Sunset Session"], FRESHNESS)
            .await;
        world
            .wait_for_titles(query("sunset"), &[], Duration::from_secs(6))
            .await;
        let _ = engine;
        world.finish().await;
    }
}

#[tokio::test]
async fn bad_search_input_is_invalid_argument_naming_the_field() {
    let mut world =
        SearchWorld::new(Arc::new(EmbeddedIndex::in_memory().expect("index")), None).await;
    let cases: Vec<(&str, pb::SearchEventsRequest)> = vec![
        (
            "page_size",
            pb::SearchEventsRequest {
                page_size: 101,
                ..Default::default()
            },
        ),
        (
            "near",
            pb::SearchEventsRequest {
                radius_km: 5.0,
                ..Default::default()
            },
        ),
        (
            "start_before",
            pb::SearchEventsRequest {
                start_after: Some(ts(days(10))),
                start_before: Some(ts(days(5))),
                ..Default::default()
            },
        ),
        (
            "query",
            pb::SearchEventsRequest {
                query: "x".repeat(201),
                ..Default::default()
            },
        ),
        (
            "radius_km",
            pb::SearchEventsRequest {
                near: Some(pb::LatLng {
                    latitude: 1.0,
                    longitude: 1.0,
                }),
                radius_km: -1.0,
                ..Default::default()
            },
        ),
        (
            "near.latitude",
            pb::SearchEventsRequest {
                near: Some(pb::LatLng {
                    latitude: 91.0,
                    longitude: 0.0,
                }),
                ..Default::default()
            },
        ),
        (
            "venue_id",
            pb::SearchEventsRequest {
                venue_id: "not-a-uuid".into(),
                ..Default::default()
            },
        ),
        (
            "category",
            pb::SearchEventsRequest {
                category: 99,
                ..Default::default()
            },
        ),
    ];
    for (field, request) in cases {
        let status = world
            .client
            .search_events(as_caller(&Caller::anonymous(), request))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(field_of(&status).as_deref(), Some(field), "{status:?}");
    }
    world.finish().await;
}

/// The embedded engine, unreachable while `down` is set.
struct Flaky {
    inner: EmbeddedIndex,
    down: AtomicBool,
    /// Writes refused while down: proof the indexer met the outage.
    refused_writes: AtomicUsize,
}

impl Flaky {
    /// Every call but `search` comes from the indexer.
    fn check_indexer(&self) -> Result<(), SearchError> {
        self.check().inspect_err(|_| {
            self.refused_writes.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn check(&self) -> Result<(), SearchError> {
        if self.down.load(Ordering::SeqCst) {
            Err(SearchError::Unavailable(anyhow::anyhow!(
                "simulated outage"
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl SearchIndex for Flaky {
    fn engine(&self) -> &'static str {
        "flaky embedded"
    }
    fn is_shared(&self) -> bool {
        false
    }
    async fn apply_settings(&self) -> Result<(), SearchError> {
        self.check_indexer()?;
        self.inner.apply_settings().await
    }
    async fn upsert(
        &self,
        documents: Vec<SearchDocument>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), SearchError> {
        self.check_indexer()?;
        self.inner.upsert(documents, checkpoint).await
    }
    async fn delete(&self, ids: &[String]) -> Result<(), SearchError> {
        self.check_indexer()?;
        self.inner.delete(ids).await
    }
    async fn clear(&self) -> Result<(), SearchError> {
        self.check_indexer()?;
        self.inner.clear().await
    }
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SearchError> {
        self.check_indexer()?;
        self.inner.checkpoint().await
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, SearchError> {
        self.check()?;
        self.inner.search(query).await
    }
}

#[tokio::test]
async fn the_indexer_catches_up_after_an_outage_and_a_restart() {
    let flaky = Arc::new(Flaky {
        inner: EmbeddedIndex::in_memory().expect("index"),
        down: AtomicBool::new(false),
        refused_writes: AtomicUsize::new(0),
    });
    let mut world = SearchWorld::new(flaky.clone(), None).await;
    let venue = create_venue(&mut world.client, &WEMBLEY).await;
    let band = create_performer(&mut world.client, "Outage Orchestra").await;
    let band = [&band];
    let event = |title: &'static str| NewEvent {
        title,
        category: pb::Category::Concert,
        venue: &venue,
        performers: &band,
        start: days(3),
        end: days(3) + chrono::Duration::hours(2),
        publish: true,
    };
    create_event(&mut world.client, event("Before The Outage")).await;
    world
        .wait_for_titles(query("outage"), &["Before The Outage"], FRESHNESS)
        .await;

    flaky.down.store(true, Ordering::SeqCst);
    let status = world
        .client
        .search_events(query("outage"))
        .await
        .expect_err("the engine is down");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        !status.message().contains("simulated"),
        "engine errors stay inside: {status:?}"
    );
    for title in ["During The Outage One", "During The Outage Two"] {
        create_event(&mut world.client, event(title)).await;
    }
    eventually(
        Duration::from_secs(10),
        "the indexer to run into the outage",
        || {
            let flaky = flaky.clone();
            async move { (flaky.refused_writes.load(Ordering::SeqCst) > 0).then_some(()) }
        },
    )
    .await;
    flaky.down.store(false, Ordering::SeqCst);
    let all = [
        "Before The Outage",
        "During The Outage One",
        "During The Outage Two",
    ];
    world
        .wait_for_titles(query("outage"), &all, Duration::from_secs(15))
        .await;

    // A second catalog over the same database, with an empty index, rebuilds
    // it from PostgreSQL and then follows changes.
    let second = serve(
        &world.db,
        Arc::new(EmbeddedIndex::in_memory().expect("index")),
    )
    .await;
    let mut second_client = CatalogServiceClient::new(second.channel().await);
    eventually(
        Duration::from_secs(10),
        "the second catalog to rebuild its index",
        || {
            let mut client = second_client.clone();
            async move {
                let found = client
                    .search_events(query("outage"))
                    .await
                    .ok()?
                    .into_inner();
                (found.hits.len() == 3).then_some(())
            }
        },
    )
    .await;
    create_event(&mut world.client, event("After The Outage")).await;
    eventually(FRESHNESS, "the second catalog to follow a change", || {
        let mut client = second_client.clone();
        async move {
            let found = client
                .search_events(query("after outage"))
                .await
                .ok()?
                .into_inner();
            (found.hits.len() == 1).then_some(())
        }
    })
    .await;
    let _ = &mut second_client;
    drop(second);
    world.finish().await;
}

#[tokio::test]
async fn reindex_rebuilds_a_directory_index_from_postgres() {
    let mut world =
        SearchWorld::new(Arc::new(EmbeddedIndex::in_memory().expect("index")), None).await;
    line_up(&mut world).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = boxoffice_search::SearchConfig {
        engine: boxoffice_search::SearchEngineConfig::Embedded {
            dir: Some(dir.path().to_owned()),
        },
    };
    let report = boxoffice_catalog::search::reindex(&world.db.pool, &config)
        .await
        .expect("reindexing")
        .expect("a directory index is rebuilt");
    assert_eq!(
        report.events, 5,
        "every event, the draft included (hidden at query time)"
    );
    let index = EmbeddedIndex::open_in_dir(dir.path()).expect("opening the rebuilt index");
    assert_eq!(
        index.checkpoint().await.expect("checkpoint"),
        Some(report.checkpoint)
    );
    let mut swift = SearchQuery {
        text: "tayler swfit".into(),
        limit: 10,
        ..SearchQuery::default()
    };
    swift.filters.now = chrono::Utc::now().timestamp();
    let found = index.search(&swift).await.expect("search");
    assert_eq!(found.hits.len(), 1);
    let in_memory = boxoffice_search::SearchConfig::in_memory();
    assert_eq!(
        boxoffice_catalog::search::reindex(&world.db.pool, &in_memory)
            .await
            .expect("no-op"),
        None,
        "an in-memory index is rebuilt at start, not by reindex"
    );
    world.finish().await;
}

#[tokio::test]
async fn concurrent_catalog_writes_are_all_indexed() {
    let mut world =
        SearchWorld::new(Arc::new(EmbeddedIndex::in_memory().expect("index")), None).await;
    let venue = create_venue(&mut world.client, &O2).await;
    let band = create_performer(&mut world.client, "Parallel Players").await;
    // Many writers at once: outbox ids are taken in commit order, so the
    // indexer (reading `id > checkpoint`) can never step over a late commit.
    let writers = (0..24).map(|n| {
        let mut client = world.client.clone();
        let (venue, band) = (venue.clone(), band.clone());
        tokio::spawn(async move {
            let title = format!("Parallel Concert {n}");
            let event = NewEvent {
                title: &title,
                category: pb::Category::Concert,
                venue: &venue,
                performers: &[&band],
                start: days(7),
                end: days(7) + chrono::Duration::hours(2),
                publish: true,
            };
            create_event(&mut client, event).await;
            title
        })
    });
    let mut titles = Vec::new();
    for writer in writers.collect::<Vec<_>>() {
        titles.push(writer.await.expect("a writer"));
    }
    let expected: Vec<&str> = titles.iter().map(String::as_str).collect();
    world
        .wait_for_titles(query("parallel"), &expected, Duration::from_secs(5))
        .await;
    world.finish().await;
}
