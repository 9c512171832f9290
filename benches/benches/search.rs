//! Search benchmark: indexes generated events (100,000 by default) and times
//! `SearchEvents` over a query mix (typos, prefixes, filters, geo, browsing),
//! for the embedded engine and, when `BOXOFFICE_MEILISEARCH_URL` is set, for
//! Meilisearch. Each query goes through the RPC's handler body
//! (`grpc::search_events`: parsing, the engine, decoding events, building the
//! response); only the network hop is left out.
//!
//! `cargo bench -p boxoffice-benches --bench search`
//! (`BOXOFFICE_BENCH_EVENTS=20000` for a quicker run.)
//!
//! Targets: indexing 100,000 events in at most 60 s; SearchEvents p50 at
//! most 5 ms and p99 at most 20 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_catalog::domain::{
    Category, Event, EventStatus, EventVenue, LatLng, Money, Performer, PriceTier,
};
use boxoffice_catalog::grpc::search_events;
use boxoffice_catalog::search::{EventSearch, document_from_event};
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_search::config::{ENV_MEILISEARCH_KEY, ENV_MEILISEARCH_URL};
use boxoffice_search::embedded::EmbeddedIndex;
use boxoffice_search::meilisearch::MeilisearchIndex;
use boxoffice_search::{SearchDocument, SearchIndex};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use uuid::Uuid;

const DEFAULT_EVENTS: usize = 100_000;
const BATCH: usize = 5_000;
const WARM_UP_QUERIES: usize = 200;
const MEASURED_QUERIES: usize = 3_000;

const CITIES: &[(&str, &str, f64, f64)] = &[
    ("London", "GB", 51.5074, -0.1278),
    ("Manchester", "GB", 53.4808, -2.2426),
    ("Glasgow", "GB", 55.8642, -4.2518),
    ("Dublin", "IE", 53.3498, -6.2603),
    ("Paris", "FR", 48.8566, 2.3522),
    ("Lyon", "FR", 45.7640, 4.8357),
    ("Berlin", "DE", 52.5200, 13.4050),
    ("München", "DE", 48.1351, 11.5820),
    ("Köln", "DE", 50.9375, 6.9603),
    ("Amsterdam", "NL", 52.3676, 4.9041),
    ("Brussels", "BE", 50.8503, 4.3517),
    ("Madrid", "ES", 40.4168, -3.7038),
    ("Barcelona", "ES", 41.3874, 2.1686),
    ("Lisbon", "PT", 38.7223, -9.1393),
    ("Porto", "PT", 41.1579, -8.6291),
    ("Milano", "IT", 45.4642, 9.1900),
    ("Roma", "IT", 41.9028, 12.4964),
    ("Wien", "AT", 48.2082, 16.3738),
    ("Zürich", "CH", 47.3769, 8.5417),
    ("København", "DK", 55.6761, 12.5683),
    ("Stockholm", "SE", 59.3293, 18.0686),
    ("Oslo", "NO", 59.9139, 10.7522),
    ("Helsinki", "FI", 60.1699, 24.9384),
    ("Warszawa", "PL", 52.2297, 21.0122),
    ("Praha", "CZ", 50.0755, 14.4378),
    ("Budapest", "HU", 47.4979, 19.0402),
    ("Athína", "GR", 37.9838, 23.7275),
    ("New York", "US", 40.7128, -74.0060),
    ("Los Angeles", "US", 34.0522, -118.2437),
    ("Chicago", "US", 41.8781, -87.6298),
    ("Toronto", "CA", 43.6532, -79.3832),
    ("Montréal", "CA", 45.5017, -73.5673),
    ("São Paulo", "BR", -23.5505, -46.6333),
    ("Ciudad de México", "MX", 19.4326, -99.1332),
    ("Tokyo", "JP", 35.6762, 139.6503),
    ("Sydney", "AU", -33.8688, 151.2093),
];

const FAMOUS: &[&str] = &[
    "Taylor Swift",
    "Metallica",
    "Beyoncé",
    "Coldplay",
    "Ed Sheeran",
    "Adele",
    "Kendrick Lamar",
    "Billie Eilish",
    "Foo Fighters",
    "Rosalía",
    "Stromae",
    "Måneskin",
    "Arctic Monkeys",
    "Dua Lipa",
    "The Weeknd",
    "Bad Bunny",
];

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "ven", "tor", "bel", "sa", "dri", "no", "quin", "ta", "mar", "el",
    "os", "zu", "fen", "gar", "lia", "ron", "die", "pa", "ste", "vi", "ko", "lum", "ber", "ash",
    "wyn", "ju",
];

const TITLE_WORDS: &[&str] = &[
    "Live",
    "Tour",
    "Night",
    "Evening",
    "Symphony",
    "Festival",
    "Sessions",
    "Unplugged",
    "Returns",
    "Farewell",
    "Summer",
    "Winter",
    "Gala",
    "Classics",
    "Anniversary",
    "Encore",
    "World",
    "Stadium",
    "Acoustic",
    "Dreams",
    "Revival",
    "Legends",
    "Spectacular",
    "Derby",
    "Final",
    "Cup",
    "Open",
    "Comedy",
    "Hamlet",
    "Matinee",
];

const CATEGORIES: &[Category] = &[
    Category::Concert,
    Category::Concert,
    Category::Concert,
    Category::Sports,
    Category::Theater,
    Category::Comedy,
    Category::Film,
    Category::Family,
    Category::Festival,
];

fn made_up_name(rng: &mut StdRng) -> String {
    let mut word = |parts: usize| {
        let mut text: String = (0..parts)
            .map(|_| *SYLLABLES.choose(rng).unwrap_or(&"ka"))
            .collect();
        if let Some(first) = text.get(0..1) {
            text = first.to_uppercase() + &text[1..];
        }
        text
    };
    let first = word(2);
    let second = word(3);
    format!("{first} {second}")
}

fn generate(count: usize, seed: u64) -> (Vec<Event>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = Utc::now();
    let mut performers: Vec<Performer> = FAMOUS
        .iter()
        .map(|name| (*name).to_owned())
        .chain((0..5_000).map(|_| made_up_name(&mut rng)))
        .map(|name| Performer {
            id: Uuid::new_v4(),
            name,
            description: String::new(),
            genre: "pop".into(),
            created_at: now,
        })
        .collect();
    performers.dedup_by(|a, b| a.name == b.name);
    let venues: Vec<EventVenue> = (0..2_000)
        .map(|n| {
            let (city, country, latitude, longitude) = CITIES[n % CITIES.len()];
            EventVenue {
                id: Uuid::new_v4(),
                name: format!(
                    "{} {}",
                    made_up_name(&mut rng),
                    ["Arena", "Hall", "Theatre", "Club", "Stadium"][n % 5]
                ),
                city: city.into(),
                country_code: country.into(),
                location: Some(LatLng {
                    latitude: latitude + rng.random_range(-0.15..0.15),
                    longitude: longitude + rng.random_range(-0.15..0.15),
                }),
                time_zone: "UTC".into(),
            }
        })
        .collect();
    let events = (0..count)
        .map(|n| {
            // Famous performers headline one event in fifty.
            let headliner = if n % 50 == 0 {
                performers[n / 50 % FAMOUS.len()].clone()
            } else {
                performers
                    .choose(&mut rng)
                    .cloned()
                    .unwrap_or_else(|| performers[0].clone())
            };
            let mut line_up = vec![headliner];
            if rng.random_bool(0.3) {
                line_up.extend(performers.choose(&mut rng).cloned());
            }
            let title = format!(
                "{} {} {}",
                line_up[0].name,
                TITLE_WORDS.choose(&mut rng).unwrap_or(&"Live"),
                TITLE_WORDS.choose(&mut rng).unwrap_or(&"Tour"),
            );
            let start: DateTime<Utc> =
                now + chrono::Duration::minutes(rng.random_range(-2 * 24 * 60..365 * 24 * 60));
            let status = match rng.random_range(0..100) {
                0..=1 => EventStatus::Cancelled,
                2..=3 => EventStatus::Draft,
                _ => EventStatus::Published,
            };
            let low = rng.random_range(1_500..6_000);
            Event {
                id: Uuid::new_v4(),
                title,
                description: format!(
                    "{} with {} and friends: an unforgettable {} in {}.",
                    TITLE_WORDS.choose(&mut rng).unwrap_or(&"Night"),
                    line_up[0].name,
                    TITLE_WORDS
                        .choose(&mut rng)
                        .unwrap_or(&"Evening")
                        .to_lowercase(),
                    "town"
                ),
                category: *CATEGORIES.choose(&mut rng).unwrap_or(&Category::Concert),
                status,
                venue: venues
                    .choose(&mut rng)
                    .cloned()
                    .unwrap_or_else(|| venues[0].clone()),
                performers: line_up,
                start_time: start,
                end_time: start + chrono::Duration::hours(3),
                on_sale_time: None,
                price_tiers: (0..3)
                    .map(|tier| PriceTier {
                        id: Uuid::new_v4(),
                        name: ["Standing", "Seated", "VIP"][tier].into(),
                        price: Money {
                            currency_code: "EUR".into(),
                            amount_minor: low * (tier as i64 + 1),
                        },
                        section_ids: vec![Uuid::new_v4()],
                    })
                    .collect(),
                version: 2,
                created_at: now,
                updated_at: now,
                cancel_reason: None,
            }
        })
        .collect();
    let names = performers.into_iter().map(|p| p.name).collect();
    (events, names)
}

/// Two edits a buyer might make: swap two letters and change one.
fn misspell(word: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() >= 5 {
        let at = rng.random_range(1..chars.len() - 1);
        chars.swap(at, at + 1);
    }
    chars.into_iter().collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Typo,
    Prefix,
    Filtered,
    Geo,
    Browse,
}

const KINDS: [Kind; 5] = [
    Kind::Typo,
    Kind::Prefix,
    Kind::Filtered,
    Kind::Geo,
    Kind::Browse,
];

fn query_mix(
    count: usize,
    performers: &[String],
    seed: u64,
) -> Vec<(Kind, pb::SearchEventsRequest)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = Utc::now();
    let ts = |time: DateTime<Utc>| prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    };
    (0..count)
        .map(|n| {
            let kind = KINDS[n % KINDS.len()];
            let mut request = pb::SearchEventsRequest::default();
            let performer = if rng.random_bool(0.5) {
                FAMOUS
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or("Metallica")
                    .to_owned()
            } else {
                performers.choose(&mut rng).cloned().unwrap_or_default()
            };
            match kind {
                Kind::Typo => {
                    request.query = performer
                        .split_whitespace()
                        .map(|word| misspell(word, &mut rng))
                        .collect::<Vec<_>>()
                        .join(" ");
                }
                Kind::Prefix => {
                    let word = performer
                        .split_whitespace()
                        .last()
                        .unwrap_or("metal")
                        .to_owned();
                    let len = word.chars().count().clamp(3, 5);
                    request.query = word.chars().take(len).collect();
                }
                Kind::Filtered => {
                    let (city, ..) = CITIES.choose(&mut rng).copied().unwrap_or(CITIES[0]);
                    request.query = TITLE_WORDS
                        .choose(&mut rng)
                        .unwrap_or(&"live")
                        .to_lowercase();
                    request.city = city.into();
                    request.category = pb::Category::Concert as i32;
                    request.start_after = Some(ts(now));
                    request.start_before = Some(ts(now + chrono::Duration::days(90)));
                }
                Kind::Geo => {
                    let (_, _, latitude, longitude) =
                        CITIES.choose(&mut rng).copied().unwrap_or(CITIES[0]);
                    request.near = Some(pb::LatLng {
                        latitude,
                        longitude,
                    });
                    request.radius_km = 50.0;
                    request.sort = pb::SearchSort::Distance as i32;
                    if rng.random_bool(0.5) {
                        request.query = "live".into();
                    }
                }
                Kind::Browse => {
                    request.start_after =
                        Some(ts(now + chrono::Duration::days(rng.random_range(0..300))));
                }
            }
            (kind, request)
        })
        .collect()
}

async fn index_all(
    index: &dyn SearchIndex,
    documents: Vec<SearchDocument>,
) -> anyhow::Result<Duration> {
    index.apply_settings().await?;
    let started = Instant::now();
    let mut batches = documents.chunks(BATCH).peekable();
    let mut position = 0i64;
    while let Some(batch) = batches.next() {
        position += batch.len() as i64;
        let checkpoint = batches.peek().is_none().then_some(position);
        index.upsert(batch.to_vec(), checkpoint).await?;
    }
    Ok(started.elapsed())
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}

async fn measure(
    search: &EventSearch,
    queries: &[(Kind, pb::SearchEventsRequest)],
) -> anyhow::Result<()> {
    for (_, request) in queries.iter().take(WARM_UP_QUERIES) {
        search_events(search, request)
            .await
            .map_err(|status| anyhow::anyhow!("{status:?}"))?;
    }
    let mut overall = Histogram::<u64>::new(3)?;
    let mut by_kind: Vec<(Kind, Histogram<u64>, u64)> = KINDS
        .iter()
        .map(|kind| Ok((*kind, Histogram::new(3)?, 0)))
        .collect::<anyhow::Result<_>>()?;
    for (kind, request) in queries.iter().skip(WARM_UP_QUERIES) {
        let started = Instant::now();
        let response = search_events(search, request)
            .await
            .map_err(|status| anyhow::anyhow!("{status:?}"))?;
        let micros = started.elapsed().as_micros() as u64;
        overall.record(micros.max(1))?;
        if let Some((_, histogram, hits)) = by_kind.iter_mut().find(|(k, ..)| k == kind) {
            histogram.record(micros.max(1))?;
            *hits += response.hits.len() as u64;
        }
    }
    println!(
        "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "queries", "count", "p50 ms", "p99 ms", "max ms", "hits/query"
    );
    for (kind, histogram, hits) in &by_kind {
        println!(
            "  {:<10} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>10.1}",
            format!("{kind:?}").to_lowercase(),
            histogram.len(),
            millis(histogram, 0.5),
            millis(histogram, 0.99),
            histogram.max() as f64 / 1_000.0,
            *hits as f64 / histogram.len().max(1) as f64,
        );
    }
    let (p50, p99) = (millis(&overall, 0.5), millis(&overall, 0.99));
    println!(
        "  {:<10} {:>8} {:>8.2} {:>8.2} {:>8.2}   target p50 <= 5 ms: {}, p99 <= 20 ms: {}",
        "all",
        overall.len(),
        p50,
        p99,
        overall.max() as f64 / 1_000.0,
        if p50 <= 5.0 { "met" } else { "MISSED" },
        if p99 <= 20.0 { "met" } else { "MISSED" },
    );
    Ok(())
}

async fn bench(
    name: &str,
    index: Arc<dyn SearchIndex>,
    documents: Vec<SearchDocument>,
    performers: &[String],
) -> anyhow::Result<()> {
    let count = documents.len();
    println!("\n== {name}: {count} events");
    let took = index_all(index.as_ref(), documents).await?;
    println!(
        "  indexing: {:.1} s ({:.0} events/s)   target <= 60 s for 100,000: {}",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64(),
        if took.as_secs_f64() * 100_000.0 / count as f64 <= 60.0 {
            "met"
        } else {
            "MISSED"
        },
    );
    let search = EventSearch::new(index);
    let queries = query_mix(WARM_UP_QUERIES + MEASURED_QUERIES, performers, 7);
    measure(&search, &queries).await
}

fn main() -> anyhow::Result<()> {
    let count = std::env::var("BOXOFFICE_BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let generated = Instant::now();
        let (events, performers) = generate(count, 42);
        let documents = events
            .iter()
            .map(document_from_event)
            .collect::<anyhow::Result<Vec<_>>>()?;
        drop(events);
        let payload_bytes: usize = documents.iter().map(|d| d.payload.len()).sum();
        println!(
            "generated {count} events in {:.1} s (average stored event {} bytes)",
            generated.elapsed().as_secs_f64(),
            payload_bytes / count.max(1)
        );
        bench(
            "embedded (tantivy, in memory)",
            Arc::new(EmbeddedIndex::in_memory()?),
            documents.clone(),
            &performers,
        )
        .await?;
        match std::env::var(ENV_MEILISEARCH_URL)
            .ok()
            .filter(|url| !url.trim().is_empty())
        {
            Some(url) => {
                let key = std::env::var(ENV_MEILISEARCH_KEY).ok();
                let uid = format!("boxoffice_bench_{}", Uuid::new_v4().simple());
                let meili = Arc::new(MeilisearchIndex::new(url.trim(), key.as_deref(), &uid)?);
                let result = bench("meilisearch", meili.clone(), documents, &performers).await;
                meili.drop_indexes().await?;
                result?;
            }
            None => println!("\n== meilisearch: SKIPPED ({ENV_MEILISEARCH_URL} is not set)"),
        }
        Ok(())
    })
}
