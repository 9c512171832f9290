//! Search benchmark: indexes generated events and times `SearchEvents` over a
//! query mix (typos, prefixes, filters, geo, browsing), for the embedded
//! engine at every size asked for and, when `BOXOFFICE_MEILISEARCH_URL` is
//! set, for Meilisearch. Each query goes through the RPC's handler body
//! (`grpc::search_events`: parsing, the engine, decoding events, building the
//! response); only the network hop is left out.
//!
//! The embedded index is built in a fresh directory, as with
//! `BOXOFFICE_SEARCH_DIR`, at the indexer's pace (batches of 5,000, one
//! commit each); then a child process (this binary, re-executed) opens it,
//! as a deployment does at start, runs the mix and reports its resident set,
//! so the memory counted is the serving process's alone.
//!
//! `BOXOFFICE_BENCH_EVENTS=100000,1000000 cargo bench -p boxoffice-benches --bench search`
//! (one size or a comma-separated list; 100,000 by default). With
//! `BOXOFFICE_BENCH_KEEP=1` the index directories are kept (their paths are
//! printed), so a later build's serving side can be timed on the very same
//! index: `BOXOFFICE_BENCH_SEARCH_SERVE_DIR=<dir> <bench binary> --bench`
//! (with `BOXOFFICE_BENCH_SLOWEST=5`, the five slowest queries of each kind
//! are printed with their match counts). `BOXOFFICE_BENCH_REBUILD_EVENTS=200000`
//! instead writes that many events through the catalog's store into a
//! database of its own and times the rebuild of the index from PostgreSQL
//! (a start without `BOXOFFICE_SEARCH_DIR`); with
//! `BOXOFFICE_BENCH_REBUILD_BULK=1` they go straight into the catalog's
//! outbox (what a rebuild reads), which reaches 1,000,000. The last table
//! gives every query kind's p50/p99 per size and the p99 growth from the
//! smallest size to the largest.
//!
//! Targets at the largest size (2 cores): every query kind p50 at most 3 ms
//! and p99 at most 10 ms, indexing at least 25,000 events/s, and p99 growing
//! less than 2x from 100,000 to 1,000,000 events.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

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
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const DEFAULT_EVENTS: usize = 100_000;
const BATCH: usize = 5_000;
/// Batches when building the index in a directory, where every commit
/// waits for the disk.
const DIRECTORY_BATCH: usize = 50_000;
const WARM_UP_QUERIES: usize = 200;
const MEASURED_QUERIES: usize = 3_000;
const TARGET_P50_MS: f64 = 3.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_INDEXING_PER_SEC: f64 = 25_000.0;
/// Set in the serving child: the directory to open.
const ENV_CHILD_DIR: &str = "BOXOFFICE_BENCH_SEARCH_SERVE_DIR";
/// Set (to anything but empty or `0`) to keep the index directories.
const ENV_KEEP: &str = "BOXOFFICE_BENCH_KEEP";
/// How the child's report line starts on its stdout.
const CHILD_RESULT: &str = "search-bench-result ";
/// Set to a number of events to time a rebuild of the index from
/// PostgreSQL (the catalog's read of its outbox, then the indexing), as a
/// catalog without `BOXOFFICE_SEARCH_DIR` does at every start; the events
/// are written first through the catalog's store, as the demo seed writes
/// them (8 writers at once).
const ENV_REBUILD: &str = "BOXOFFICE_BENCH_REBUILD_EVENTS";
/// With `1`, the rebuild's events go straight into the catalog's outbox
/// (generated as the query benchmark's are) instead of through the store:
/// a million in minutes rather than hours.
const ENV_REBUILD_BULK: &str = "BOXOFFICE_BENCH_REBUILD_BULK";
/// Set to a number to print that many of the slowest queries of each kind
/// (with their hit count), to see what a tail is made of.
const ENV_SLOWEST: &str = "BOXOFFICE_BENCH_SLOWEST";

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
                        dynamic: None,
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
    documents: &[SearchDocument],
    batch: usize,
) -> anyhow::Result<Duration> {
    index.apply_settings().await?;
    let started = Instant::now();
    let mut batches = documents.chunks(batch).peekable();
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

/// One query kind's latencies (ms) at one size.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KindRow {
    kind: String,
    count: u64,
    p50: f64,
    p99: f64,
    max: f64,
    hits_per_query: f64,
}

fn kind_row(kind: &str, histogram: &Histogram<u64>, hits: u64) -> KindRow {
    KindRow {
        kind: kind.to_owned(),
        count: histogram.len(),
        p50: millis(histogram, 0.5),
        p99: millis(histogram, 0.99),
        max: histogram.max() as f64 / 1_000.0,
        hits_per_query: hits as f64 / histogram.len().max(1) as f64,
    }
}

async fn measure(
    search: &EventSearch,
    queries: &[(Kind, pb::SearchEventsRequest)],
) -> anyhow::Result<Vec<KindRow>> {
    for (_, request) in queries.iter().take(WARM_UP_QUERIES) {
        search_events(search, request)
            .await
            .map_err(|status| anyhow::anyhow!("{status:?}"))?;
    }
    let mut overall = Histogram::<u64>::new(3)?;
    let mut overall_hits = 0;
    let mut by_kind: Vec<(Kind, Histogram<u64>, u64)> = KINDS
        .iter()
        .map(|kind| Ok((*kind, Histogram::new(3)?, 0)))
        .collect::<anyhow::Result<_>>()?;
    let slowest: usize = std::env::var(ENV_SLOWEST)
        .ok()
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    let mut timed: Vec<(u64, Kind, String, u64)> = Vec::new();
    for (kind, request) in queries.iter().skip(WARM_UP_QUERIES) {
        let started = Instant::now();
        let response = search_events(search, request)
            .await
            .map_err(|status| anyhow::anyhow!("{status:?}"))?;
        let micros = started.elapsed().as_micros() as u64;
        if slowest > 0 {
            let asked = format!(
                "{:?} city {:?} radius {} sort {}",
                request.query, request.city, request.radius_km, request.sort
            );
            timed.push((micros, *kind, asked, response.estimated_total_hits));
        }
        overall.record(micros.max(1))?;
        overall_hits += response.hits.len() as u64;
        if let Some((_, histogram, hits)) = by_kind.iter_mut().find(|(k, ..)| k == kind) {
            histogram.record(micros.max(1))?;
            *hits += response.hits.len() as u64;
        }
    }
    timed.sort_by_key(|(micros, ..)| std::cmp::Reverse(*micros));
    for kind in KINDS {
        for (micros, _, asked, total) in timed.iter().filter(|(_, k, ..)| *k == kind).take(slowest)
        {
            println!(
                "  slow {kind:?}: {:.2} ms, {total} matches: {asked}",
                *micros as f64 / 1_000.0
            );
        }
    }
    let mut rows: Vec<KindRow> = by_kind
        .iter()
        .map(|(kind, histogram, hits)| {
            kind_row(&format!("{kind:?}").to_lowercase(), histogram, *hits)
        })
        .collect();
    rows.push(kind_row("all", &overall, overall_hits));
    println!(
        "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "queries", "count", "p50 ms", "p99 ms", "max ms", "hits/query"
    );
    for row in &rows {
        println!(
            "  {:<10} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>10.1}",
            row.kind, row.count, row.p50, row.p99, row.max, row.hits_per_query,
        );
    }
    Ok(rows)
}

/// What one size measured for the embedded engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SizeReport {
    events: usize,
    /// In memory, a commit per batch of [`BATCH`] (the indexer's pace).
    indexing_secs: f64,
    /// In a directory, a commit per batch of [`DIRECTORY_BATCH`].
    directory_indexing_secs: f64,
    index_bytes: u64,
    segments: usize,
    /// Opening the directory in a fresh process.
    open_ms: f64,
    /// The first browse after opening (caches cold).
    first_browse_ms: f64,
    /// The serving process's resident set after the query mix, in KiB,
    /// and the part of it that is the index (minus the process before open).
    rss_kib: u64,
    rss_index_kib: u64,
    rss_anon_kib: u64,
    rss_file_kib: u64,
    rows: Vec<KindRow>,
}

/// `VmRSS`, `RssAnon` and `RssFile` of this process, in KiB.
fn resident_kib() -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .with_context(|| format!("no {name} in /proc/self/status"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .filter(|metadata| metadata.is_file())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The serving side, in a fresh process (this binary, re-executed): opens
/// the index the parent built in `dir`, as a deployment with
/// `BOXOFFICE_SEARCH_DIR` does at start, and runs the query mix.
fn serve_child(dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let performers: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(names_file(dir))?)?;
        let queries = query_mix(WARM_UP_QUERIES + MEASURED_QUERIES, &performers, 7);
        let (rss_before, ..) = resident_kib()?;
        let started = Instant::now();
        let index = EmbeddedIndex::open_in_dir(dir)?;
        let open_ms = started.elapsed().as_secs_f64() * 1_000.0;
        let segments = index.segment_count();
        let search = EventSearch::new(Arc::new(index));
        let (_, browse) = queries
            .iter()
            .find(|(kind, _)| *kind == Kind::Browse)
            .context("the mix holds a browse")?;
        let started = Instant::now();
        search_events(&search, browse)
            .await
            .map_err(|status| anyhow::anyhow!("{status:?}"))?;
        let first_browse_ms = started.elapsed().as_secs_f64() * 1_000.0;
        let rows = measure(&search, &queries).await?;
        let (rss_kib, rss_anon_kib, rss_file_kib) = resident_kib()?;
        let report = SizeReport {
            events: 0,
            indexing_secs: 0.0,
            directory_indexing_secs: 0.0,
            index_bytes: 0,
            segments,
            open_ms,
            first_browse_ms,
            rss_kib,
            rss_index_kib: rss_kib.saturating_sub(rss_before),
            rss_anon_kib,
            rss_file_kib,
            rows,
        };
        println!("{CHILD_RESULT}{}", serde_json::to_string(&report)?);
        Ok(())
    })
}

fn names_file(dir: &Path) -> PathBuf {
    dir.with_extension("performers.json")
}

/// Indexes `documents` in memory at the indexer's pace (the rate a
/// deployment without `BOXOFFICE_SEARCH_DIR` rebuilds at), then again in a
/// fresh directory in larger batches (each commit there waits for the disk),
/// then has a child process open the directory and run the query mix.
async fn bench_embedded(
    documents: Vec<SearchDocument>,
    performers: &[String],
) -> anyhow::Result<SizeReport> {
    let count = documents.len();
    println!("\n== embedded (tantivy): {count} events");
    let in_memory = EmbeddedIndex::in_memory()?;
    let indexing_secs = index_all(&in_memory, &documents, BATCH)
        .await?
        .as_secs_f64();
    drop(in_memory);
    println!(
        "  indexing in memory, a commit per {BATCH}: {indexing_secs:.1} s ({:.0} events/s)",
        count as f64 / indexing_secs,
    );
    let dir = std::env::temp_dir().join(format!(
        "boxoffice-search-bench-{}",
        Uuid::new_v4().simple()
    ));
    let result = async {
        let index = EmbeddedIndex::open_in_dir(&dir)?;
        let directory_indexing_secs = index_all(&index, &documents, DIRECTORY_BATCH)
            .await?
            .as_secs_f64();
        drop(documents);
        index.close()?;
        let index_bytes = directory_bytes(&dir);
        println!(
            "  indexing in a directory, a commit per {DIRECTORY_BATCH}: {directory_indexing_secs:.1} s \
             ({:.0} events/s), {:.0} MB on disk",
            count as f64 / directory_indexing_secs,
            index_bytes as f64 / 1e6
        );
        std::fs::write(names_file(&dir), serde_json::to_string(performers)?)?;
        let output = Command::new(std::env::current_exe()?)
            .env(ENV_CHILD_DIR, &dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut report = None;
        for line in stdout.lines() {
            match line.strip_prefix(CHILD_RESULT) {
                Some(json) => report = Some(serde_json::from_str::<SizeReport>(json)?),
                None => println!("{line}"),
            }
        }
        anyhow::ensure!(
            output.status.success(),
            "the serving process failed: {}",
            output.status
        );
        let mut report = report.context("the serving process reported nothing")?;
        report.events = count;
        report.indexing_secs = indexing_secs;
        report.directory_indexing_secs = directory_indexing_secs;
        report.index_bytes = index_bytes;
        println!(
            "  opened ({} segments) in a fresh process in {:.0} ms, first browse {:.1} ms; resident {:.0} MB \
             ({:.0} MB for the index: anonymous {:.0} MB, mapped files {:.0} MB)",
            report.segments,
            report.open_ms,
            report.first_browse_ms,
            report.rss_kib as f64 / 1024.0,
            report.rss_index_kib as f64 / 1024.0,
            report.rss_anon_kib as f64 / 1024.0,
            report.rss_file_kib as f64 / 1024.0,
        );
        Ok(report)
    }
    .await;
    let keep = std::env::var(ENV_KEEP).is_ok_and(|keep| !keep.trim().is_empty() && keep != "0");
    if keep {
        println!("  kept the index in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(names_file(&dir));
    }
    result
}

async fn bench_meilisearch(
    url: &str,
    documents: Vec<SearchDocument>,
    performers: &[String],
) -> anyhow::Result<()> {
    let count = documents.len();
    println!("\n== meilisearch: {count} events");
    let key = std::env::var(ENV_MEILISEARCH_KEY).ok();
    let uid = format!("boxoffice_bench_{}", Uuid::new_v4().simple());
    let meili = Arc::new(MeilisearchIndex::new(url, key.as_deref(), &uid)?);
    let result = async {
        let took = index_all(meili.as_ref(), &documents, BATCH).await?;
        println!(
            "  indexing: {:.1} s ({:.0} events/s)",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        let search = EventSearch::new(meili.clone());
        let queries = query_mix(WARM_UP_QUERIES + MEASURED_QUERIES, performers, 7);
        measure(&search, &queries).await.map(drop)
    }
    .await;
    meili.drop_indexes().await?;
    result
}

/// Writes `count` events into a database of its own through the catalog's
/// store, then times `boxoffice_catalog::search::rebuild` into an index in
/// memory: the start-up of a catalog without `BOXOFFICE_SEARCH_DIR`.
async fn bench_rebuild(count: usize, bulk: bool) -> anyhow::Result<()> {
    const WRITERS: usize = 8;
    println!("\n== rebuild from PostgreSQL: {count} events");
    let server_url = std::env::var("BOXOFFICE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = format!("boxoffice_search_bench_{}", std::process::id());
    let (admin, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await?;
    let result = async {
        let url = boxoffice_runtime::postgres::url_with_database(&server_url, &database);
        let pool = boxoffice_runtime::postgres::pool(
            &boxoffice_runtime::config::Secret::new(url),
            WRITERS * 2,
        )?;
        boxoffice_runtime::postgres::migrate(
            &pool,
            "catalog",
            boxoffice_catalog::store::MIGRATIONS,
        )
        .await?;
        let store = boxoffice_catalog::store::CatalogStore::new(pool.clone());
        let started = Instant::now();
        let mut writers = tokio::task::JoinSet::new();
        if bulk {
            // The generated events straight into the outbox, a thousand a
            // transaction: what a rebuild reads, without the catalog's
            // tables.
            let (events, _) = generate(count, 42);
            let events = Arc::new(events);
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for _ in 0..WRITERS {
                let (store, events, next) = (store.clone(), events.clone(), next.clone());
                writers.spawn(async move {
                    let mut client = store.pool().get().await?;
                    loop {
                        let from = next.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = events.get(from..(from + 1_000).min(events.len()))
                        else {
                            return anyhow::Ok(());
                        };
                        if chunk.is_empty() {
                            return Ok(());
                        }
                        let transaction = client.transaction().await?;
                        store
                            .outbox()
                            .append(
                                &transaction,
                                chunk
                                    .iter()
                                    .map(boxoffice_catalog::search::published_event)
                                    .collect(),
                            )
                            .await?;
                        transaction.commit().await?;
                    }
                });
            }
        } else {
            for writer in 0..WRITERS {
                let store = store.clone();
                let share = count / WRITERS + usize::from(writer < count % WRITERS);
                writers.spawn(async move {
                    boxoffice_catalog::seed::seed(&store, share).await.map(|_| ())
                });
            }
        }
        while let Some(written) = writers.join_next().await {
            written??;
        }
        println!(
            "  wrote {count} events {} in {:.1} s",
            if bulk {
                "straight into the catalog's outbox"
            } else {
                "through the catalog's store"
            },
            started.elapsed().as_secs_f64()
        );
        let index = EmbeddedIndex::in_memory()?;
        let started = Instant::now();
        let report = boxoffice_catalog::search::rebuild(&pool, &index, false).await?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "  rebuilt the index in memory from PostgreSQL: {} events in {took:.1} s ({:.0} events/s), {} segments",
            report.events,
            report.events as f64 / took,
            index.segment_count(),
        );
        anyhow::Ok(())
    }
    .await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await?;
    result
}

/// The sizes to run, from `BOXOFFICE_BENCH_EVENTS` (e.g. `100000,1000000`).
fn sizes() -> anyhow::Result<Vec<usize>> {
    match std::env::var("BOXOFFICE_BENCH_EVENTS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|size| {
                size.trim()
                    .replace('_', "")
                    .parse::<usize>()
                    .with_context(|| format!("BOXOFFICE_BENCH_EVENTS: {size:?} is not a number"))
            })
            .collect(),
        _ => Ok(vec![DEFAULT_EVENTS]),
    }
}

fn summary(reports: &[SizeReport]) {
    let Some(largest) = reports.iter().max_by_key(|report| report.events) else {
        return;
    };
    let smallest = reports
        .iter()
        .min_by_key(|report| report.events)
        .unwrap_or(largest);
    println!(
        "\n== embedded engine, every size (p50 / p99 ms; growth = p99 at the largest size / at the smallest)"
    );
    let mut header = format!("| {:<8} |", "query");
    for report in reports {
        header.push_str(&format!(" {:>17} |", format!("{} events", report.events)));
    }
    header.push_str(" p99 growth |");
    println!("{header}");
    println!("|{}", "---|".repeat(reports.len() + 2));
    for (position, row) in largest.rows.iter().enumerate() {
        let mut line = format!("| {:<8} |", row.kind);
        for report in reports {
            let cell = report.rows.get(position).map_or("-".to_owned(), |row| {
                format!("{:.2} / {:.2}", row.p50, row.p99)
            });
            line.push_str(&format!(" {cell:>17} |"));
        }
        let growth = smallest
            .rows
            .get(position)
            .map_or(f64::NAN, |small| row.p99 / small.p99);
        line.push_str(&format!(" {growth:>9.2}× |"));
        println!("{line}");
    }
    let mut line = format!("| {:<8} |", "indexing");
    for report in reports {
        line.push_str(&format!(
            " {:>17} |",
            format!("{:.0}/s", report.events as f64 / report.indexing_secs)
        ));
    }
    println!("{line}            |");
    let mut line = format!("| {:<8} |", "idx dir");
    for report in reports {
        line.push_str(&format!(
            " {:>17} |",
            format!(
                "{:.0}/s",
                report.events as f64 / report.directory_indexing_secs
            )
        ));
    }
    println!("{line}            |");
    let mut line = format!("| {:<8} |", "segments");
    for report in reports {
        line.push_str(&format!(" {:>17} |", report.segments));
    }
    println!("{line}            |");
    let mut line = format!("| {:<8} |", "open");
    for report in reports {
        line.push_str(&format!(" {:>17} |", format!("{:.0} ms", report.open_ms)));
    }
    println!("{line}            |");
    let mut line = format!("| {:<8} |", "1st brws");
    for report in reports {
        line.push_str(&format!(
            " {:>17} |",
            format!("{:.1} ms", report.first_browse_ms)
        ));
    }
    println!("{line}            |");
    let mut line = format!("| {:<8} |", "RSS");
    for report in reports {
        line.push_str(&format!(
            " {:>17} |",
            format!("{:.0} MB", report.rss_kib as f64 / 1024.0)
        ));
    }
    println!("{line}            |");
    let mut line = format!("| {:<8} |", "on disk");
    for report in reports {
        line.push_str(&format!(
            " {:>17} |",
            format!("{:.0} MB", report.index_bytes as f64 / 1e6)
        ));
    }
    println!("{line}            |");
    let missed: Vec<String> = largest
        .rows
        .iter()
        .filter(|row| row.p50 > TARGET_P50_MS || row.p99 > TARGET_P99_MS)
        .map(|row| row.kind.clone())
        .collect();
    let rate = largest.events as f64 / largest.indexing_secs;
    let growth_missed: Vec<String> = largest
        .rows
        .iter()
        .zip(&smallest.rows)
        .filter(|(large, small)| large.p99 >= 2.0 * small.p99)
        .map(|(row, _)| row.kind.clone())
        .collect();
    println!(
        "\ntargets at {} events: every kind p50 <= {TARGET_P50_MS} ms and p99 <= {TARGET_P99_MS} ms: {}; \
         indexing >= {TARGET_INDEXING_PER_SEC}/s: {}; p99 growth < 2x from {} events: {}",
        largest.events,
        if missed.is_empty() {
            "met".to_owned()
        } else {
            format!("MISSED ({})", missed.join(", "))
        },
        if rate >= TARGET_INDEXING_PER_SEC {
            "met"
        } else {
            "MISSED"
        },
        smallest.events,
        if reports.len() < 2 {
            "not measured (one size)".to_owned()
        } else if growth_missed.is_empty() {
            "met".to_owned()
        } else {
            format!("MISSED ({})", growth_missed.join(", "))
        },
    );
}

fn main() -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os(ENV_CHILD_DIR) {
        return serve_child(Path::new(&dir));
    }
    let sizes = sizes()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let meilisearch = std::env::var(ENV_MEILISEARCH_URL)
            .ok()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty());
        if let Some(count) = std::env::var(ENV_REBUILD)
            .ok()
            .and_then(|count| count.trim().replace('_', "").parse::<usize>().ok())
        {
            let bulk = std::env::var(ENV_REBUILD_BULK).is_ok_and(|bulk| bulk == "1");
            return bench_rebuild(count, bulk).await;
        }
        let mut reports = Vec::new();
        for count in sizes {
            let generated = Instant::now();
            let (events, performers) = generate(count, 42);
            let documents = events
                .iter()
                .map(document_from_event)
                .collect::<anyhow::Result<Vec<_>>>()?;
            drop(events);
            let payload_bytes: usize = documents.iter().map(|d| d.payload.len()).sum();
            println!(
                "\ngenerated {count} events in {:.1} s (average stored event {} bytes)",
                generated.elapsed().as_secs_f64(),
                payload_bytes / count.max(1)
            );
            let for_meilisearch = meilisearch.as_ref().map(|_| documents.clone());
            reports.push(bench_embedded(documents, &performers).await?);
            match (&meilisearch, for_meilisearch) {
                (Some(url), Some(documents)) => {
                    bench_meilisearch(url, documents, &performers).await?;
                }
                _ => println!("\n== meilisearch: SKIPPED ({ENV_MEILISEARCH_URL} is not set)"),
            }
        }
        summary(&reports);
        Ok(())
    })
}
