//! The embedded engine: a tantivy index in this process, in memory or in a
//! directory.
//!
//! Why tantivy: it is a real inverted index (BM25, an FST term dictionary)
//! with Levenshtein automata over that dictionary, so typo tolerance and
//! prefix search cost a walk of the automaton rather than a scan of the
//! documents; its tokenizers fold case and accents; columnar fast fields give
//! cheap filters, sorting and facet counts; and a commit is atomic, with a
//! payload that carries the indexer's checkpoint along with the documents.
//!
//! Matching follows the shared rules (see [`crate::text`]): every query word
//! must match some field, exactly, within its typo budget, or (the last word)
//! as a prefix. Exact matches score above typos, titles and performers above
//! venues and places, those above descriptions. Geo radius keeps the events
//! within the real distance (haversine) of the centre.
//!
//! What keeps a search's cost from growing with the catalogue: browsing
//! (no words, by start time) reads per-segment timelines (see [`timeline`])
//! instead of every match; a radius search without words reads per-segment
//! geo maps (see [`geo`]): cells wholly inside the circle are counted from
//! their per-group counts and the nearest events come from the nearest
//! cells, so only the cells across the circle's edge are visited event by
//! event; every filter but the performer and the venue is checked from a
//! per-segment table of plain arrays (see [`table`]) rather than intersected
//! as posting lists, while the cheapest source of candidates (the city's or
//! the category's posting list, the wanted groups' events in the start
//! window, or the geo map's events in the circle) drives the search, so word
//! queries only seek to events that pass every filter; a typo or prefix
//! automaton is built once per word, not once per field, and a search not
//! ordered by relevance reads each word as one bit set; numbers are columns
//! only, never terms (no term dictionary of timestamps to build and merge).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::index::SegmentId;
use tantivy::indexer::LogMergePolicy;
use tantivy::query::{
    AllQuery, AutomatonWeight, BitSetDocSet, BooleanQuery, BoostQuery, ConstScoreQuery,
    ConstScorer, DfaWrapper, EnableScoring, Explanation, FuzzyTermQuery, Occur, Query, RangeQuery,
    Scorer, TermQuery, Weight,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value as _,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    BitSet, DocAddress, DocId, DocSet as _, Index, IndexReader, IndexWriter, ReloadPolicy, Score,
    Searcher, SegmentReader, TERMINATED, TantivyDocument, TantivyError, Term,
};

use crate::document::{GeoPoint, SearchDocument, haversine_km};
use crate::query::{
    FacetCount, MAX_QUERY_WORDS, SearchHit, SearchQuery, SearchResults, SearchSort, sort_facets,
};
use crate::text::{
    HIGHLIGHT_END, HIGHLIGHT_START, MAX_WORD_BYTES, strip_markers, typo_budget, word_matches,
};
use crate::{Checkpoint, Result, SearchError, SearchIndex};

mod geo;
mod table;
mod timeline;

use geo::Circle;
use table::{EventTable, FilterQuery, GroupFilter, Predicate, SegmentPredicate, Tables};
use timeline::Timeline;

/// Words folded to lowercase ASCII; very long tokens (noise) dropped. Its
/// words are the shared ones (see [`crate::text::query_words`]): tantivy's
/// simple tokenizer splits on the same characters.
const TEXT_ANALYZER: &str = "boxoffice_text";
/// A whole value as one folded token (cities).
const KEYWORD_ANALYZER: &str = "boxoffice_keyword";
/// Indexing memory; tantivy flushes a segment when it is used up.
const WRITER_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Segments of one size merged together (tantivy's default is 8).
const MERGE_MIN_SEGMENTS: usize = 4;

/// Searchable fields with their weight in the score.
const TEXT_FIELDS: [(&str, f32); 6] = [
    ("title", 3.0),
    ("performers", 3.0),
    ("venue_name", 1.5),
    ("place", 1.5),
    ("category_text", 1.0),
    ("description", 0.5),
];

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    id_key: Field,
    version: Field,
    status: Field,
    text: [Field; 6],
    category: Field,
    city_key: Field,
    city_facet: Field,
    performer_ids: Field,
    venue_id: Field,
    start_time: Field,
    end_time: Field,
    latitude: Field,
    longitude: Field,
    tiebreak: Field,
    rating: Field,
    document: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TEXT_ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let keyword_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD_ANALYZER)
            .set_index_option(IndexRecordOption::Basic),
    );
    // The id as a column (read back at open), and as a short term to delete
    // by (see `id_term`): a term per event is most of the term dictionary
    // built at every flush and merge, so it is kept to 17 bytes.
    let id = builder.add_text_field("id", TextOptions::default().set_fast("raw"));
    let id_key = builder.add_bytes_field("id_key", INDEXED);
    let version = builder.add_i64_field("version", FAST);
    let status = builder.add_text_field("status", STRING | FAST);
    let text = TEXT_FIELDS.map(|(name, _)| builder.add_text_field(name, text_options.clone()));
    let category = builder.add_text_field("category", STRING | FAST);
    let city_key = builder.add_text_field("city_key", keyword_options);
    let city_facet = builder.add_text_field("city_facet", TextOptions::default().set_fast("raw"));
    let performer_ids = builder.add_text_field("performer_ids", STRING);
    let venue_id = builder.add_text_field("venue_id", STRING);
    // Ranges over these are answered from their columns (tantivy's range
    // query uses a fast field when there is one): a term per distinct value
    // would only cost indexing and merging time.
    let start_time = builder.add_i64_field("start_time", FAST);
    let end_time = builder.add_i64_field("end_time", FAST);
    let latitude = builder.add_f64_field("latitude", FAST);
    let longitude = builder.add_f64_field("longitude", FAST);
    let tiebreak = builder.add_u64_field("tiebreak", FAST);
    let rating = builder.add_f64_field("rating", FAST);
    let document = builder.add_text_field("document", STORED);
    let fields = Fields {
        id,
        id_key,
        version,
        status,
        text,
        category,
        city_key,
        city_facet,
        performer_ids,
        venue_id,
        start_time,
        end_time,
        latitude,
        longitude,
        tiebreak,
        rating,
        document,
    };
    (builder.build(), fields)
}

fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The folded words of `text`, with their byte ranges in it.
fn words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize)> {
    let mut stream = analyzer.token_stream(text);
    let mut words = Vec::new();
    while let Some(token) = stream.next() {
        words.push((token.text.clone(), token.offset_from, token.offset_to));
    }
    words
}

fn folded_keyword(text: &str) -> String {
    let mut analyzer = keyword_analyzer();
    words(&mut analyzer, text.trim())
        .into_iter()
        .next()
        .map(|(word, _, _)| word)
        .unwrap_or_default()
}

/// A stable 64-bit hash of the id (FNV-1a): the last tie-breaker of every
/// order, so equal keys still page in one fixed order.
fn tiebreak(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Writer {
    writer: IndexWriter<TantivyDocument>,
    /// Highest version held per id: what makes upserts idempotent.
    versions: Versions,
    checkpoint: Option<Checkpoint>,
}

impl Writer {
    fn commit(&mut self) -> tantivy::Result<()> {
        let mut commit = self.writer.prepare_commit()?;
        if let Some(checkpoint) = self.checkpoint {
            commit.set_payload(&checkpoint.to_string());
        }
        commit.commit()?;
        Ok(())
    }
}

struct Inner {
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Writer>,
    /// Per segment, built by the first browse that reads it.
    timelines: Mutex<HashMap<SegmentId, Arc<Timeline>>>,
    /// Per segment, built by the first other search that reads it.
    tables: Arc<Tables>,
}

/// The embedded engine. Cheap to clone; all clones share one index.
#[derive(Clone)]
pub struct EmbeddedIndex {
    inner: Arc<Inner>,
}

fn internal(error: impl Into<anyhow::Error>) -> SearchError {
    SearchError::Internal(error.into())
}

impl EmbeddedIndex {
    /// An index in memory, empty.
    pub fn in_memory() -> Result<Self> {
        let (schema, fields) = schema();
        Self::from_index(Index::create_in_ram(schema), fields)
    }

    /// An index kept in `dir` (created if needed), with whatever it held.
    /// Only one process may have it open.
    pub fn open_in_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the search directory {}", dir.display()))?;
        let directory = MmapDirectory::open(dir)
            .map_err(|error| anyhow!("opening the search directory {}: {error}", dir.display()))?;
        let (schema, fields) = schema();
        let fail = |error: tantivy::TantivyError| {
            anyhow!(
                "opening the search index in {} (if it was written by another version, delete the directory: \
                 it is rebuilt from PostgreSQL): {error}",
                dir.display()
            )
        };
        let index = match Index::open_or_create(directory, schema.clone()) {
            Err(tantivy::TantivyError::SchemaError(_)) => {
                // Written by a version with other fields: it is a copy of
                // PostgreSQL's events, so it starts again empty (without a
                // checkpoint, so the catalog rebuilds it).
                tracing::warn!(
                    dir = %dir.display(),
                    "search index written with another schema: starting it afresh"
                );
                remove_index_files(dir)?;
                let directory = MmapDirectory::open(dir).map_err(|error| {
                    anyhow!("opening the search directory {}: {error}", dir.display())
                })?;
                Index::create(directory, schema, tantivy::IndexSettings::default()).map_err(fail)?
            }
            opened => opened.map_err(fail)?,
        };
        Self::from_index(index, fields)
    }

    fn from_index(index: Index, fields: Fields) -> Result<Self> {
        index.tokenizers().register(TEXT_ANALYZER, text_analyzer());
        index
            .tokenizers()
            .register(KEYWORD_ANALYZER, keyword_analyzer());
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 2);
        let writer: IndexWriter<TantivyDocument> = index
            .writer_with_num_threads(threads, WRITER_MEMORY_BYTES)
            .context("opening the search index writer (is another process using the directory?)")?;
        // Every search pays per segment (an automaton walk per field, a
        // scorer, a collector): merge once 4 segments of a size have piled
        // up instead of tantivy's 8, so a catalogue ends with fewer.
        let mut merge_policy = LogMergePolicy::default();
        merge_policy.set_min_num_segments(MERGE_MIN_SEGMENTS);
        writer.set_merge_policy(Box::new(merge_policy));
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("opening the search index reader")?;
        let checkpoint = index
            .load_metas()
            .context("reading the search index metadata")?
            .payload
            .and_then(|payload| payload.parse().ok());
        let versions = load_versions(&reader)?;
        Ok(Self {
            inner: Arc::new(Inner {
                fields,
                reader,
                writer: Mutex::new(Writer {
                    writer,
                    versions,
                    checkpoint,
                }),
                timelines: Mutex::new(HashMap::new()),
                tables: Arc::new(Tables::default()),
            }),
        })
    }

    /// Commits, waits for the merges under way and closes the index (the
    /// directory can then be opened by another process).
    pub fn close(self) -> Result<()> {
        let inner =
            Arc::into_inner(self.inner).context("closing a search index that is still shared")?;
        let writer = inner
            .writer
            .into_inner()
            .map_err(|_| internal(anyhow!("search index writer poisoned by an earlier panic")))?;
        let Writer {
            mut writer,
            checkpoint,
            ..
        } = writer;
        let mut commit = writer.prepare_commit().map_err(internal)?;
        if let Some(checkpoint) = checkpoint {
            commit.set_payload(&checkpoint.to_string());
        }
        commit.commit().map_err(internal)?;
        writer.wait_merging_threads().map_err(internal)?;
        Ok(())
    }

    /// Number of documents held (all statuses).
    pub fn len(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    /// Number of segments a search goes through (for reports).
    pub fn segment_count(&self) -> usize {
        self.inner.reader.searcher().segment_readers().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, Writer>> {
        // A panic while holding the lock leaves the writer in an unknown
        // state: report it rather than carry on.
        self.inner
            .writer
            .lock()
            .map_err(|_| internal(anyhow!("search index writer poisoned by an earlier panic")))
    }

    fn to_tantivy(&self, document: &SearchDocument) -> Result<TantivyDocument> {
        let fields = &self.inner.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(fields.id, &document.id);
        doc.add_bytes(fields.id_key, &id_key(&document.id));
        doc.add_i64(fields.version, document.version);
        doc.add_text(fields.status, &document.status);
        let [
            title,
            performers,
            venue_name,
            place,
            category_text,
            description,
        ] = fields.text;
        doc.add_text(title, strip_markers(&document.title));
        for performer in &document.performers {
            doc.add_text(performers, strip_markers(performer));
        }
        doc.add_text(venue_name, &document.venue_name);
        doc.add_text(
            place,
            format!("{} {}", document.city, document.country_code),
        );
        doc.add_text(category_text, &document.category);
        doc.add_text(description, &document.description);
        doc.add_text(fields.category, document.category.to_lowercase());
        doc.add_text(fields.city_key, &document.city);
        doc.add_text(fields.city_facet, &document.city);
        for performer_id in &document.performer_ids {
            doc.add_text(fields.performer_ids, performer_id);
        }
        doc.add_text(fields.venue_id, &document.venue_id);
        doc.add_i64(fields.start_time, document.start_time);
        doc.add_i64(fields.end_time, document.end_time);
        if let Some(location) = document.location {
            doc.add_f64(fields.latitude, location.latitude);
            doc.add_f64(fields.longitude, location.longitude);
        }
        doc.add_u64(fields.tiebreak, tiebreak(&document.id));
        doc.add_f64(fields.rating, document.rating);
        let stored = serde_json::to_string(document).context("encoding a search document")?;
        doc.add_text(fields.document, stored);
        Ok(doc)
    }

    /// The documents as tantivy's, with their ids and versions. A large
    /// batch is converted on two threads: the writer's threads wait for it
    /// (a rebuild hands over thousands at a time).
    fn convert(&self, documents: &[SearchDocument]) -> Result<Vec<(String, i64, TantivyDocument)>> {
        const SPLIT_FROM: usize = 1_000;
        let convert =
            |documents: &[SearchDocument]| -> Result<Vec<(String, i64, TantivyDocument)>> {
                documents
                    .iter()
                    .map(|document| {
                        Ok((
                            document.id.clone(),
                            document.version,
                            self.to_tantivy(document)?,
                        ))
                    })
                    .collect()
            };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if documents.len() < SPLIT_FROM || threads < 2 {
            return convert(documents);
        }
        let (first, second) = documents.split_at(documents.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| convert(second));
            let mut converted = convert(first)?;
            let rest = other
                .join()
                .map_err(|_| internal(anyhow!("converting search documents panicked")))??;
            converted.extend(rest);
            Ok(converted)
        })
    }

    fn upsert_blocking(
        &self,
        documents: Vec<SearchDocument>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<()> {
        let converted = self.convert(&documents)?;
        let mut writer = self.lock_writer()?;
        let mut changed = false;
        for (id, version, doc) in converted {
            if writer.versions.get(&id).is_some_and(|held| held >= version) {
                continue;
            }
            // An id the index has never held needs no deletion (a rebuild
            // is all new ids: every delete term would be looked up in every
            // segment at the commit).
            if writer.versions.get(&id).is_some() {
                writer
                    .writer
                    .delete_term(id_term(self.inner.fields.id_key, &id));
            }
            writer.writer.add_document(doc).map_err(internal)?;
            writer.versions.insert(&id, version);
            changed = true;
        }
        let checkpoint_moved = checkpoint.is_some() && checkpoint != writer.checkpoint;
        if let Some(checkpoint) = checkpoint {
            writer.checkpoint = Some(checkpoint);
        }
        if changed || checkpoint_moved {
            writer.commit().map_err(internal)?;
            self.inner.reader.reload().map_err(internal)?;
        }
        Ok(())
    }

    fn delete_blocking(&self, ids: &[String]) -> Result<()> {
        let mut writer = self.lock_writer()?;
        for id in ids {
            writer
                .writer
                .delete_term(id_term(self.inner.fields.id_key, id));
            writer.versions.remove(id);
        }
        writer.commit().map_err(internal)?;
        self.inner.reader.reload().map_err(internal)?;
        Ok(())
    }

    fn clear_blocking(&self) -> Result<()> {
        let mut writer = self.lock_writer()?;
        writer.writer.delete_all_documents().map_err(internal)?;
        writer.versions.clear();
        writer.checkpoint = None;
        writer.commit().map_err(internal)?;
        self.inner.reader.reload().map_err(internal)?;
        Ok(())
    }

    /// Runs a query on the calling thread (it is CPU work: call it from a
    /// blocking context; [`SearchIndex::search`] does).
    pub fn search_blocking(&self, query: &SearchQuery) -> Result<SearchResults> {
        self.search_with(query, true)
    }

    /// `use_timelines: false` answers browses through the collector too
    /// (what tests compare the timelines with).
    fn search_with(&self, query: &SearchQuery, use_timelines: bool) -> Result<SearchResults> {
        let fields = self.inner.fields;
        let mut analyzer = text_analyzer();
        // The shared reading of the text, then folded as documents are.
        let query_words: Vec<String> = query
            .words()
            .into_iter()
            .flat_map(|word| words(&mut analyzer, word))
            .map(|(word, _, _)| word)
            .take(MAX_QUERY_WORDS)
            .collect();
        let sort = query.effective_sort();
        let keep = query.offset.saturating_add(query.limit);
        let collector = EventCollector {
            tables: self.inner.tables.clone(),
            keep,
            sort: match sort {
                SearchSort::Relevance => SortBy::Relevance,
                SearchSort::StartTime => SortBy::StartTime,
                SearchSort::Distance => match query.point {
                    Some(point) => SortBy::Distance(point),
                    None => SortBy::StartTime,
                },
                SearchSort::Rating => SortBy::Rating,
            },
            within: query
                .filters
                .within
                .map(|radius| (radius.center, radius.radius_km)),
            facets: query.facets,
            predicate: Predicate {
                now: query.filters.now,
                start_after: query.filters.start_after,
                start_before: query.filters.start_before,
                groups: group_filter(query),
                bounds: None,
                min_rating: query.filters.min_rating,
            },
        };
        let searcher = self.inner.reader.searcher();
        // The fast paths know nothing of ratings: a rating filter or sort
        // goes through the collector, which checks every filter.
        let by_rating = sort == SearchSort::Rating || query.filters.min_rating.is_some();
        let browse = use_timelines
            && query_words.is_empty()
            && sort == SearchSort::StartTime
            && !by_rating
            && query.filters.within.is_none()
            && query.filters.performer_id.is_none()
            && query.filters.venue_id.is_none();
        let nearby = query
            .filters
            .within
            .and_then(|radius| Some((radius, RadiusBox::around(radius).bounds()?)))
            .filter(|_| {
                use_timelines
                    && query_words.is_empty()
                    && !by_rating
                    && query.filters.performer_id.is_none()
                    && query.filters.venue_id.is_none()
            });
        let collected = if browse {
            self.browse(query, &searcher, keep)?
        } else if let Some((radius, bounds)) = nearby {
            let circle = Circle {
                center: radius.center,
                radius_km: radius.radius_km,
            };
            self.browse_nearby(&collector, circle, bounds, &searcher)?
        } else {
            let tantivy_query = self.build_query(query, &query_words)?;
            let collected = searcher
                .search(&tantivy_query, &collector)
                .map_err(internal)?;
            self.inner.tables.retain(searcher.segment_readers());
            collected
        };
        let mut hits = Vec::with_capacity(query.limit);
        for candidate in collected
            .top
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
        {
            let stored: TantivyDocument = searcher.doc(candidate.address).map_err(internal)?;
            let json = stored
                .get_first(fields.document)
                .and_then(|value| value.as_str())
                .context("a search document without its stored copy")?;
            let document: SearchDocument =
                serde_json::from_str(json).context("decoding a stored search document")?;
            let highlighted_title = highlight(&mut analyzer, &document.title, &query_words);
            let highlighted_performers = document
                .performers
                .iter()
                .map(|name| highlight(&mut analyzer, name, &query_words))
                .collect();
            let distance_km = query
                .point
                .zip(document.location)
                .map(|(point, location)| haversine_km(point, location));
            hits.push(SearchHit {
                document,
                highlighted_title,
                highlighted_performers,
                distance_km,
            });
        }
        Ok(SearchResults {
            hits,
            estimated_total_hits: collected.total,
            category_facets: sort_facets(to_facets(collected.categories)),
            city_facets: sort_facets(to_facets(collected.cities)),
        })
    }

    /// A query without words in start-time order, answered from the
    /// segments' timelines (see [`timeline`]): the same hits, total and
    /// facets as the query through the collector, without visiting every match.
    fn browse(&self, query: &SearchQuery, searcher: &Searcher, keep: usize) -> Result<Collected> {
        let filters = &query.filters;
        let city_key = filters.city.as_deref().map(folded_keyword);
        let category = filters.category.as_deref().map(str::to_lowercase);
        let browse = timeline::Browse {
            now: filters.now,
            start_after: filters.start_after,
            start_before: filters.start_before,
            city_key: city_key.as_deref(),
            category: category.as_deref(),
            keep,
        };
        let mut collected = Collected {
            top: Vec::new(),
            total: 0,
            categories: HashMap::new(),
            cities: HashMap::new(),
        };
        let segments = searcher.segment_readers();
        for (segment_ord, segment) in segments.iter().enumerate() {
            let fruit = self
                .timeline(segment)?
                .browse(segment, segment_ord as u32, &browse);
            collected.top.extend(fruit.top);
            collected.total += fruit.total;
            if query.facets {
                for (value, count) in fruit.categories {
                    *collected.categories.entry(value).or_default() += count;
                }
                for (value, count) in fruit.cities {
                    *collected.cities.entry(value).or_default() += count;
                }
            }
        }
        collected.top.sort_unstable();
        collected.top.truncate(keep);
        let mut timelines = self.lock_timelines();
        if timelines.len() > segments.len() {
            timelines.retain(|id, _| segments.iter().any(|segment| segment.segment_id() == *id));
        }
        Ok(collected)
    }

    /// A query without words within a radius, answered from the segments'
    /// geo maps (see [`geo`]): the same hits, total and facets as the query
    /// through the collector, without visiting every event in the circle.
    fn browse_nearby(
        &self,
        collector: &EventCollector,
        circle: Circle,
        bounds: (f64, f64, f64, f64),
        searcher: &Searcher,
    ) -> Result<Collected> {
        let mut collected = Collected {
            top: Vec::new(),
            total: 0,
            categories: HashMap::new(),
            cities: HashMap::new(),
        };
        let segments = searcher.segment_readers();
        for (segment_ord, segment) in segments.iter().enumerate() {
            let segment_ord = segment_ord as u32;
            let table = self.inner.tables.get(segment).map_err(internal)?;
            let predicate = SegmentPredicate::new(table.clone(), &collector.predicate);
            let geo = table.geo_map();
            let around = geo::Around {
                circle,
                bounds,
                predicate: predicate.filters(),
            };
            let mut per_group = vec![0u64; table.groups.len()];
            collected.total += geo.count(segment, &around, &mut per_group);
            let keep = collector.keep;
            let top = match collector.sort {
                SortBy::Distance(from) if from == circle.center => {
                    geo.nearest(segment, segment_ord, &around, keep)
                }
                sort => geo.top_by(segment, segment_ord, &around, keep, |doc, _| SortKey {
                    primary: match sort {
                        SortBy::Distance(from) => table.point(doc).map_or(f64::INFINITY, |at| {
                            haversine_km(
                                from,
                                GeoPoint {
                                    latitude: at.0,
                                    longitude: at.1,
                                },
                            )
                        }),
                        SortBy::Rating => -table.rating(doc),
                        SortBy::Relevance | SortBy::StartTime => 0.0,
                    },
                    start_time: table.start_time(doc),
                    tiebreak: table.tiebreak(doc),
                }),
            };
            collected.top.extend(top);
            if collector.facets {
                add_group_counts(&table, &per_group, &mut collected);
            }
        }
        collected.top.sort_unstable();
        collected.top.truncate(collector.keep);
        self.inner.tables.retain(segments);
        Ok(collected)
    }

    fn lock_timelines(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<Timeline>>> {
        // The map only ever holds complete timelines: one left by a panic
        // elsewhere is still right.
        self.inner
            .timelines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn timeline(&self, segment: &SegmentReader) -> Result<Arc<Timeline>> {
        let id = segment.segment_id();
        if let Some(timeline) = self.lock_timelines().get(&id) {
            return Ok(timeline.clone());
        }
        // Built without the lock held: other queries go on meanwhile (two
        // may build the same one; either is right).
        let timeline =
            Arc::new(Timeline::build(segment, self.inner.fields.status).map_err(internal)?);
        self.lock_timelines().insert(id, timeline.clone());
        Ok(timeline)
    }

    fn build_query(&self, query: &SearchQuery, query_words: &[String]) -> Result<BooleanQuery> {
        let fields = self.inner.fields;
        let filters = &query.filters;
        let filter = |query: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
            (Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0)))
        };
        let term = |field: Field, text: &str| -> TermQuery {
            TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic)
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // Only the relevance order reads scores: in any other, a word is
        // the set of events it matches in any field, one bit set per segment.
        let scored = query.effective_sort() == SearchSort::Relevance;
        // Under a filter (the city's or the category's list, a radius, a
        // performer or a venue), a word is asked about the filter's few
        // candidates one at a time: its fields are joined so as to seek to
        // each (see [`SeekingUnion`]).
        let seeking = filters.city.is_some()
            || filters.category.is_some()
            || filters.within.is_some()
            || filters.performer_id.is_some()
            || filters.venue_id.is_some();
        for (position, word) in query_words.iter().enumerate() {
            let is_last = position + 1 == query_words.len();
            clauses.push((
                Occur::Must,
                word_query(&fields, word, is_last, scored, seeking)?,
            ));
        }
        // Status, end and start times hold for most events, city and
        // category for many: they are checked from the segment's table (see
        // `table`), by the collector and by a filter that walks the most
        // selective posting list among the city's, the category's and the
        // grid cells around a radius, so the word queries only seek to
        // documents that pass every filter.
        let groups = group_filter(query);
        let mut drivers: Vec<Arc<dyn Query>> = Vec::new();
        if let Some(city_key) = &groups.city_key {
            drivers.push(Arc::new(term(fields.city_key, city_key)));
        }
        if let Some(category) = &groups.category {
            drivers.push(Arc::new(term(fields.category, category)));
        }
        if let Some(performer_id) = &filters.performer_id {
            clauses.push(filter(Box::new(term(fields.performer_ids, performer_id))));
        }
        if let Some(venue_id) = &filters.venue_id {
            clauses.push(filter(Box::new(term(fields.venue_id, venue_id))));
        }
        let mut circle = None;
        if let Some(radius) = filters.within {
            // A box around the circle narrows the candidates; the collector
            // then checks the real distance. Within a box of longitudes the
            // segment's geo map finds them (see `geo`), or the city's or the
            // category's posting list when it is shorter.
            let area = RadiusBox::around(radius);
            match area.bounds() {
                Some(bounds) => {
                    circle = Some((
                        Circle {
                            center: radius.center,
                            radius_km: radius.radius_km,
                        },
                        bounds,
                    ));
                }
                None => {
                    clauses.push(filter(Box::new(RangeQuery::new(
                        Bound::Included(Term::from_field_f64(fields.latitude, area.south)),
                        Bound::Included(Term::from_field_f64(fields.latitude, area.north)),
                    ))));
                }
            }
        }
        if !drivers.is_empty() || circle.is_some() {
            clauses.push((
                Occur::Must,
                Box::new(FilterQuery {
                    drivers,
                    circle,
                    predicate: Predicate {
                        now: filters.now,
                        start_after: filters.start_after,
                        start_before: filters.start_before,
                        groups,
                        bounds: circle.map(|(_, bounds)| bounds),
                        min_rating: filters.min_rating,
                    },
                    tables: self.inner.tables.clone(),
                }),
            ));
        }
        if clauses.is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        Ok(BooleanQuery::new(clauses))
    }
}

/// The city and category filters, folded as the index holds them.
fn group_filter(query: &SearchQuery) -> GroupFilter {
    GroupFilter {
        city_key: query.filters.city.as_deref().map(folded_keyword),
        category: query.filters.category.as_deref().map(str::to_lowercase),
    }
}

/// Adds a segment's counts per (category, city) group to the facets.
fn add_group_counts(table: &EventTable, per_group: &[u64], collected: &mut Collected) {
    for (group, count) in per_group.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let Some(group) = table.groups.get(group) else {
            continue;
        };
        if !group.category.is_empty() {
            *collected
                .categories
                .entry(group.category.clone())
                .or_default() += count;
        }
        if !group.city.is_empty() {
            *collected.cities.entry(group.city.clone()).or_default() += count;
        }
    }
}

/// The box around a radius filter: `(south, north)` and, unless it crosses
/// the ±180° meridian or comes near a pole, `(west, east)`. It holds the
/// whole circle (a margin of 1% over the degrees a kilometre spans).
struct RadiusBox {
    south: f64,
    north: f64,
    longitudes: Option<(f64, f64)>,
}

impl RadiusBox {
    fn around(radius: crate::GeoRadius) -> Self {
        let center = radius.center;
        let lat_delta = radius.radius_km / 111.0 * 1.01;
        let (south, north) = (center.latitude - lat_delta, center.latitude + lat_delta);
        let widest = south.abs().max(north.abs());
        let longitudes = (widest < 89.0)
            .then(|| {
                let lng_delta = radius.radius_km / (111.32 * widest.to_radians().cos()) * 1.01;
                (center.longitude - lng_delta, center.longitude + lng_delta)
            })
            .filter(|(west, east)| *west >= -180.0 && *east <= 180.0);
        Self {
            south,
            north,
            longitudes,
        }
    }

    /// `(south, north, west, east)`, when the box has longitudes.
    fn bounds(&self) -> Option<(f64, f64, f64, f64)> {
        let (west, east) = self.longitudes?;
        Some((self.south, self.north, west, east))
    }
}

/// One query word against every searchable field: exact (best), as a prefix
/// when it is the last word, or within its typo budget. The typo (or
/// prefix) automaton is built once and shared by the six fields. Unscored,
/// it is the set of events where any field holds a word the automaton
/// accepts (the exact word is among them) or, without one, the word itself.
fn word_query(
    fields: &Fields,
    word: &str,
    is_last: bool,
    scored: bool,
    seeking: bool,
) -> Result<Box<dyn Query>> {
    let budget = typo_budget(word.chars().count());
    let automaton = if is_last || budget > 0 {
        let term = Term::from_field_text(fields.text[0], word);
        let fuzzy = if is_last {
            FuzzyTermQuery::new_prefix(term, budget, true)
        } else {
            FuzzyTermQuery::new(term, budget, true)
        };
        Some(Arc::new(fuzzy.automaton().map_err(internal)?))
    } else {
        None
    };
    if !scored {
        return Ok(Box::new(WordSetQuery {
            fields: fields.text,
            word: word.to_owned(),
            automaton,
        }));
    }
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, (_, weight)) in fields.text.iter().zip(TEXT_FIELDS) {
        let term = Term::from_field_text(*field, word);
        alternatives.push((
            Occur::Should,
            Box::new(BoostQuery::new(
                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                3.0 * weight,
            )),
        ));
        if let Some(automaton) = &automaton {
            alternatives.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(SharedAutomatonQuery {
                        field: *field,
                        automaton: automaton.clone(),
                    }),
                    if is_last { 1.5 * weight } else { weight },
                )),
            ));
        }
    }
    if seeking {
        return Ok(Box::new(SeekingUnionQuery(
            alternatives.into_iter().map(|(_, query)| query).collect(),
        )));
    }
    Ok(Box::new(BooleanQuery::new(alternatives)))
}

/// Any of several queries, scored as the sum of those that match, as a
/// boolean query of `Should` clauses is. tantivy's union of them scores
/// every document of a 4,096-document window at each seek beyond it: under
/// a filter that seeks to a few hundred candidates across a large segment,
/// that scored most of the word's matches, not the candidates. This union
/// seeks each part to the target and scores only the document it lands on.
#[derive(Debug)]
struct SeekingUnionQuery(Vec<Box<dyn Query>>);

impl Clone for SeekingUnionQuery {
    fn clone(&self) -> Self {
        Self(self.0.iter().map(|query| query.box_clone()).collect())
    }
}

impl Query for SeekingUnionQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let weights = self
            .0
            .iter()
            .map(|query| query.weight(scoring))
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(Box::new(SeekingUnionWeight(weights)))
    }
}

struct SeekingUnionWeight(Vec<Box<dyn Weight>>);

impl Weight for SeekingUnionWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let parts = self
            .0
            .iter()
            .map(|weight| weight.scorer(reader, boost))
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(Box::new(SeekingUnion::new(parts)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("SeekingUnion", scorer.score()))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}

impl Scorer for SeekingUnion<Box<dyn Scorer>> {
    fn score(&mut self) -> Score {
        let doc = self.doc;
        self.parts
            .iter_mut()
            .filter(|part| part.doc() == doc)
            .map(|part| part.score())
            .sum()
    }
}

/// The events where any of `fields` holds `word` or, with an automaton, a
/// word it accepts: one bit set per segment, filled from the postings of
/// every such term, scored 0 (for searches that do not order by relevance).
#[derive(Clone)]
struct WordSetQuery {
    fields: [Field; 6],
    word: String,
    automaton: Option<Arc<DfaWrapper>>,
}

impl std::fmt::Debug for WordSetQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordSetQuery")
            .field("word", &self.word)
            .finish_non_exhaustive()
    }
}

impl Query for WordSetQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for WordSetQuery {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut docs = BitSet::with_max_value(reader.max_doc());
        for field in self.fields {
            let inverted_index = reader.inverted_index(field)?;
            let term_infos = match &self.automaton {
                Some(automaton) => AutomatonWeight::<DfaWrapper>::new(field, automaton.clone())
                    .get_match_term_infos(reader)?,
                None => inverted_index
                    .get_term_info(&Term::from_field_text(field, &self.word))?
                    .into_iter()
                    .collect(),
            };
            insert_postings(&inverted_index, &term_infos, &mut docs)?;
        }
        Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), 0.0)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("WordSetQuery", 0.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not hold the word"
            )))
        }
    }
}

/// A typo or prefix automaton over one field (what [`FuzzyTermQuery`] is,
/// without building the automaton again for every field).
#[derive(Clone)]
struct SharedAutomatonQuery {
    field: Field,
    automaton: Arc<DfaWrapper>,
}

impl std::fmt::Debug for SharedAutomatonQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAutomatonQuery")
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl Query for SharedAutomatonQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(SharedAutomatonWeight(
            AutomatonWeight::<DfaWrapper>::new(self.field, self.automaton.clone()),
            self.field,
        )))
    }
}

/// Most expanded terms walked as posting lists; more are read into a bit set.
const MAX_TERMS_WALKED: usize = 8;

/// tantivy's automaton weight reads every expanded term's postings into a
/// bit set of the segment, whatever the search then visits. A search that
/// only seeks to a few candidates (a filtered one) pays for all of them: an
/// expansion of a few terms is walked as their posting lists instead, which
/// skip to the candidates. Same documents, same score (the boost).
struct SharedAutomatonWeight(AutomatonWeight<DfaWrapper>, Field);

impl Weight for SharedAutomatonWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let term_infos = self.0.get_match_term_infos(reader)?;
        let inverted_index = reader.inverted_index(self.1)?;
        if term_infos.len() > MAX_TERMS_WALKED {
            // Read into a bit set from the terms just found (tantivy's own
            // scorer would walk the automaton over the dictionary again).
            let mut docs = BitSet::with_max_value(reader.max_doc());
            insert_postings(&inverted_index, &term_infos, &mut docs)?;
            return Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)));
        }
        let postings = term_infos
            .iter()
            .map(|term_info| {
                inverted_index.read_postings_from_terminfo(term_info, IndexRecordOption::Basic)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Box::new(ConstScorer::new(
            SeekingUnion::new(postings),
            boost,
        )))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

/// Adds the documents of every term in `term_infos` to `docs`, a block of
/// postings at a time.
fn insert_postings(
    inverted_index: &tantivy::InvertedIndexReader,
    term_infos: &[tantivy::postings::TermInfo],
    docs: &mut BitSet,
) -> tantivy::Result<()> {
    for term_info in term_infos {
        let mut postings = inverted_index
            .read_block_postings_from_terminfo(term_info, IndexRecordOption::Basic)?;
        loop {
            let block = postings.docs();
            if block.is_empty() {
                break;
            }
            for doc in block {
                docs.insert(*doc);
            }
            postings.advance();
        }
    }
    Ok(())
}

/// The union of a few doc sets that seeks each part to the target (and
/// stands on the lowest): the documents of a few posting lists, or a word's
/// fields under a filter, where its score is the sum of the parts on the
/// current document (see [`SeekingUnionQuery`]).
struct SeekingUnion<T> {
    parts: Vec<T>,
    doc: DocId,
}

impl<T: tantivy::DocSet> SeekingUnion<T> {
    fn new(parts: Vec<T>) -> Self {
        let mut union = Self {
            parts,
            doc: TERMINATED,
        };
        union.doc = union.lowest();
        union
    }

    fn lowest(&self) -> DocId {
        self.parts
            .iter()
            .map(|part| part.doc())
            .min()
            .unwrap_or(TERMINATED)
    }
}

impl<T: tantivy::DocSet> tantivy::DocSet for SeekingUnion<T> {
    fn advance(&mut self) -> DocId {
        let current = self.doc;
        for part in &mut self.parts {
            if part.doc() == current {
                part.advance();
            }
        }
        self.doc = self.lowest();
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        for part in &mut self.parts {
            if part.doc() < target {
                part.seek(target);
            }
        }
        self.doc = self.lowest();
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.parts
            .iter()
            .map(|part| part.size_hint())
            .fold(0u32, u32::saturating_add)
    }
}

/// Marks the words of `text` that match a query word.
fn highlight(analyzer: &mut TextAnalyzer, text: &str, query_words: &[String]) -> String {
    if query_words.is_empty() {
        return text.to_owned();
    }
    let mut marked = String::with_capacity(text.len() + 8);
    let mut copied = 0;
    for (word, from, to) in words(analyzer, text) {
        let matched = query_words
            .iter()
            .enumerate()
            .any(|(position, query)| word_matches(&word, query, position + 1 == query_words.len()));
        if matched && from >= copied && to <= text.len() {
            marked.push_str(&text[copied..from]);
            marked.push(HIGHLIGHT_START);
            marked.push_str(&text[from..to]);
            marked.push(HIGHLIGHT_END);
            copied = to;
        }
    }
    marked.push_str(&text[copied..]);
    marked
}

fn to_facets(counts: HashMap<String, u64>) -> Vec<FacetCount> {
    counts
        .into_iter()
        .map(|(value, count)| FacetCount { value, count })
        .collect()
}

/// Removes the files of a tantivy index from `dir`: those its
/// `.managed.json` lists and its metadata, nothing else.
fn remove_index_files(dir: &Path) -> Result<()> {
    const MANAGED: &str = ".managed.json";
    let managed: Vec<std::path::PathBuf> = match std::fs::read(dir.join(MANAGED)) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).context("reading the search index's file list")?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(internal(error)),
    };
    for file in managed
        .iter()
        .map(|path| path.as_path())
        .chain([Path::new("meta.json"), Path::new(MANAGED)])
    {
        // Only plain names: never a path out of the directory.
        if file.components().count() != 1 {
            continue;
        }
        match std::fs::remove_file(dir.join(file)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(internal(anyhow::Error::from(error).context(format!(
                    "removing {} from the search directory",
                    file.display()
                ))));
            }
        }
    }
    Ok(())
}

/// The highest version held per id. Ids are UUIDs in practice: those in
/// canonical lowercase form are kept as 128-bit numbers (a third of the
/// memory of a string key at a million events), any other id as a string.
#[derive(Default)]
struct Versions {
    by_uuid: HashMap<u128, i64>,
    by_text: HashMap<String, i64>,
}

/// The term an event is found by for deletion: a canonical UUID as its 16
/// bytes, any other id as its text, each behind a different first byte so
/// that no two ids share a term.
fn id_term(field: Field, id: &str) -> Term {
    Term::from_field_bytes(field, &id_key(id))
}

fn id_key(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    match uuid_key(id) {
        Some(uuid) => {
            key.push(0);
            key.extend_from_slice(&uuid.to_be_bytes());
        }
        None => {
            key.push(1);
            key.extend_from_slice(id.as_bytes());
        }
    }
    key
}

/// The id as a number, if it is a UUID in canonical lowercase form (so two
/// different ids never share a number).
fn uuid_key(id: &str) -> Option<u128> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut key = 0u128;
    for (at, byte) in bytes.iter().enumerate() {
        let dash = matches!(at, 8 | 13 | 18 | 23);
        let digit = match (*byte, dash) {
            (b'-', true) => continue,
            (b'0'..=b'9', false) => byte - b'0',
            (b'a'..=b'f', false) => byte - b'a' + 10,
            _ => return None,
        };
        key = (key << 4) | u128::from(digit);
    }
    Some(key)
}

impl Versions {
    fn get(&self, id: &str) -> Option<i64> {
        match uuid_key(id) {
            Some(key) => self.by_uuid.get(&key).copied(),
            None => self.by_text.get(id).copied(),
        }
    }

    fn insert(&mut self, id: &str, version: i64) {
        match uuid_key(id) {
            Some(key) => self.by_uuid.insert(key, version),
            None => self.by_text.insert(id.to_owned(), version),
        };
    }

    fn remove(&mut self, id: &str) {
        match uuid_key(id) {
            Some(key) => self.by_uuid.remove(&key),
            None => self.by_text.remove(id),
        };
    }

    fn clear(&mut self) {
        self.by_uuid.clear();
        self.by_text.clear();
    }
}

fn load_versions(reader: &IndexReader) -> Result<Versions> {
    let searcher = reader.searcher();
    let mut versions = Versions::default();
    for segment in searcher.segment_readers() {
        let ids = segment
            .fast_fields()
            .str("id")
            .map_err(internal)?
            .context("the id column is missing")?;
        let version_column: Column<i64> = segment.fast_fields().i64("version").map_err(internal)?;
        // The segment's ids in ordinal order, read in one pass over the
        // dictionary (looking each one up by ordinal would decode a block
        // per document).
        let mut by_ord: Vec<String> = Vec::with_capacity(ids.num_terms());
        let mut stream = ids.dictionary().stream().map_err(internal)?;
        while stream.advance() {
            by_ord.push(String::from_utf8_lossy(stream.key()).into_owned());
        }
        for doc in segment.doc_ids_alive() {
            let (Some(ord), Some(version)) = (ids.term_ords(doc).next(), version_column.first(doc))
            else {
                continue;
            };
            if let Some(id) = by_ord.get(ord as usize) {
                versions.insert(id, version);
            }
        }
    }
    Ok(versions)
}

#[async_trait::async_trait]
impl SearchIndex for EmbeddedIndex {
    fn engine(&self) -> &'static str {
        "embedded"
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn apply_settings(&self) -> Result<()> {
        // The schema is the settings, fixed at creation.
        Ok(())
    }

    async fn upsert(
        &self,
        documents: Vec<SearchDocument>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<()> {
        let index = self.clone();
        blocking(move || index.upsert_blocking(documents, checkpoint)).await
    }

    async fn delete(&self, ids: &[String]) -> Result<()> {
        let index = self.clone();
        let ids = ids.to_vec();
        blocking(move || index.delete_blocking(&ids)).await
    }

    async fn clear(&self) -> Result<()> {
        let index = self.clone();
        blocking(move || index.clear_blocking()).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        Ok(self.lock_writer()?.checkpoint)
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        let index = self.clone();
        let query = query.clone();
        blocking(move || index.search_blocking(&query)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| internal(anyhow!("search task failed: {error}")))?
}

// ------------------------------------------------------------ collecting

#[derive(Clone, Copy)]
enum SortBy {
    Relevance,
    StartTime,
    Distance(GeoPoint),
    /// Highest rating first.
    Rating,
}

/// Where a document falls in the requested order; smaller comes first.
#[derive(Clone, Copy, Debug)]
struct SortKey {
    primary: f64,
    start_time: i64,
    tiebreak: u64,
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.primary
            .total_cmp(&other.primary)
            .then(self.start_time.cmp(&other.start_time))
            .then(self.tiebreak.cmp(&other.tiebreak))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    key: SortKey,
    address: DocAddress,
}

/// Collects the page, the total and the facets. It also applies the
/// filters every search has (published, not ended), the start-time window,
/// the city and the category, from the segment's table.
struct EventCollector {
    tables: Arc<Tables>,
    keep: usize,
    sort: SortBy,
    within: Option<(GeoPoint, f64)>,
    facets: bool,
    predicate: Predicate,
}

struct Collected {
    /// In order, at most `keep`.
    top: Vec<Candidate>,
    total: u64,
    categories: HashMap<String, u64>,
    cities: HashMap<String, u64>,
}

struct EventSegmentCollector {
    segment: u32,
    keep: usize,
    sort: SortBy,
    within: Option<(GeoPoint, f64)>,
    predicate: SegmentPredicate,
    table: Arc<EventTable>,
    /// Matches per (category, city) group of the table, when facets are asked.
    per_group: Option<Vec<u64>>,
    /// Max-heap of the best `keep` so far: the worst is on top.
    heap: BinaryHeap<Candidate>,
    total: u64,
    /// Matches not looked at yet (see [`COLLECT_BATCH`]).
    pending: Vec<(DocId, Score)>,
}

/// Matches collected a batch at a time. Reading a match's row of the
/// segment's table is a cache miss when matches are spread over a large
/// segment, and one match at a time those misses wait one after the
/// other (a prefix matching a seventh of a million events spent most of
/// its time there). The rows of a batch are read first, in a loop whose
/// loads do not depend on each other, so the memory serves them together.
const COLLECT_BATCH: usize = 64;

impl Collector for EventCollector {
    type Fruit = Collected;
    type Child = EventSegmentCollector;

    fn for_segment(
        &self,
        segment_ord: u32,
        segment: &SegmentReader,
    ) -> tantivy::Result<EventSegmentCollector> {
        let table = self.tables.get(segment)?;
        Ok(EventSegmentCollector {
            segment: segment_ord,
            keep: self.keep,
            sort: self.sort,
            within: self.within,
            predicate: SegmentPredicate::new(table.clone(), &self.predicate),
            per_group: self.facets.then(|| vec![0; table.groups.len()]),
            table,
            heap: BinaryHeap::with_capacity(self.keep.min(4_096) + 1),
            total: 0,
            pending: Vec::with_capacity(COLLECT_BATCH),
        })
    }

    fn requires_scoring(&self) -> bool {
        matches!(self.sort, SortBy::Relevance)
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Collected> {
        let mut collected = Collected {
            top: Vec::new(),
            total: 0,
            categories: HashMap::new(),
            cities: HashMap::new(),
        };
        for fruit in fruits {
            collected.top.extend(fruit.top);
            collected.total += fruit.total;
            for (value, count) in fruit.categories {
                *collected.categories.entry(value).or_default() += count;
            }
            for (value, count) in fruit.cities {
                *collected.cities.entry(value).or_default() += count;
            }
        }
        collected.top.sort_unstable();
        collected.top.truncate(self.keep);
        Ok(collected)
    }
}

struct SegmentFruit {
    top: Vec<Candidate>,
    total: u64,
    categories: HashMap<String, u64>,
    cities: HashMap<String, u64>,
}

impl SegmentCollector for EventSegmentCollector {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.pending.push((doc, score));
        if self.pending.len() == COLLECT_BATCH {
            self.collect_pending();
        }
    }

    fn harvest(mut self) -> SegmentFruit {
        self.collect_pending();
        self.harvest_collected()
    }
}

impl EventSegmentCollector {
    /// Collects the pending matches, their rows read first (see
    /// [`COLLECT_BATCH`]).
    fn collect_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut touched = 0u64;
        for (doc, _) in &pending {
            touched ^= self.table.touch(*doc);
        }
        std::hint::black_box(touched);
        for (doc, score) in pending.drain(..) {
            self.collect_one(doc, score);
        }
        self.pending = pending;
    }

    fn collect_one(&mut self, doc: DocId, score: Score) {
        if !self.predicate.accepts(doc) {
            return;
        }
        let mut distance = None;
        if let Some((center, radius_km)) = self.within {
            let Some(point) = self.point_of(doc) else {
                return;
            };
            let km = haversine_km(center, point);
            if km > radius_km {
                return;
            }
            distance = Some(km);
        }
        self.total += 1;
        if let Some(counts) = &mut self.per_group
            && let Some(count) = counts.get_mut(self.table.group(doc) as usize)
        {
            *count += 1;
        }
        if self.keep == 0 {
            return;
        }
        let primary = match self.sort {
            SortBy::Relevance => -f64::from(score),
            SortBy::StartTime => 0.0,
            SortBy::Rating => -self.table.rating(doc),
            SortBy::Distance(from) => match distance {
                Some(km) if self.within.is_some_and(|(center, _)| center == from) => km,
                _ => self
                    .point_of(doc)
                    .map_or(f64::INFINITY, |point| haversine_km(from, point)),
            },
        };
        let key = SortKey {
            primary,
            start_time: self.table.start_time(doc),
            tiebreak: self.table.tiebreak(doc),
        };
        if self.heap.len() == self.keep && self.heap.peek().is_some_and(|worst| key >= worst.key) {
            return;
        }
        self.heap.push(Candidate {
            key,
            address: DocAddress::new(self.segment, doc),
        });
        if self.heap.len() > self.keep {
            self.heap.pop();
        }
    }

    fn harvest_collected(self) -> SegmentFruit {
        let mut categories = HashMap::new();
        let mut cities = HashMap::new();
        for (group, count) in self.per_group.into_iter().flatten().enumerate() {
            if count == 0 {
                continue;
            }
            let Some(group) = self.table.groups.get(group) else {
                continue;
            };
            if !group.category.is_empty() {
                *categories.entry(group.category.clone()).or_default() += count;
            }
            if !group.city.is_empty() {
                *cities.entry(group.city.clone()).or_default() += count;
            }
        }
        SegmentFruit {
            top: self.heap.into_vec(),
            total: self.total,
            categories,
            cities,
        }
    }
}

impl EventSegmentCollector {
    fn point_of(&self, doc: DocId) -> Option<GeoPoint> {
        let (latitude, longitude) = self.table.point(doc)?;
        Some(GeoPoint {
            latitude,
            longitude,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::STATUS_PUBLISHED;

    #[test]
    fn highlight_marks_matching_words_only() {
        let mut analyzer = text_analyzer();
        let marked = highlight(
            &mut analyzer,
            "Beyoncé & Metallica live",
            &["beyonce".into(), "metal".into()],
        );
        assert_eq!(
            marked,
            format!(
                "{HIGHLIGHT_START}Beyoncé{HIGHLIGHT_END} & {HIGHLIGHT_START}Metallica{HIGHLIGHT_END} live"
            )
        );
        assert_eq!(
            highlight(&mut analyzer, "Nothing here", &["zzz".into()]),
            "Nothing here"
        );
    }

    #[test]
    fn the_analyzer_splits_words_like_the_shared_rule() {
        let mut analyzer = text_analyzer();
        for text in [
            "\"tanabe yuki\"",
            "tour -live",
            "Jay-Z & Beyoncé's M72_tour",
            "l'été – 2026!",
        ] {
            let analyzed: Vec<String> = words(&mut analyzer, text)
                .into_iter()
                .map(|(word, _, _)| word)
                .collect();
            let shared: Vec<String> = crate::text::query_words(text)
                .into_iter()
                .flat_map(|word| words(&mut analyzer, word))
                .map(|(word, _, _)| word)
                .collect();
            assert_eq!(analyzed, shared, "{text}");
        }
    }

    /// A small pseudo-random sequence, so the test needs no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    const NOW: i64 = 1_900_000_000;

    fn random_event(n: u64, version: i64, random: &mut Lcg) -> SearchDocument {
        const CITIES: [&str; 5] = ["London", "london", "São Paulo", "Paris", ""];
        const CATEGORIES: [&str; 4] = ["concert", "sports", "theater", ""];
        let status = match random.below(20) {
            0 => "draft",
            1 => "cancelled",
            _ => STATUS_PUBLISHED,
        };
        // Hours, so that many events share a start time and only the
        // tie-breaker orders them.
        let start_time = NOW + (random.below(24 * 40) as i64 - 24 * 3) * 3_600;
        SearchDocument {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            version,
            status: status.into(),
            title: format!("Event {n}"),
            description: String::new(),
            category: CATEGORIES[random.below(4) as usize].into(),
            performers: Vec::new(),
            performer_ids: Vec::new(),
            venue_id: "venue".into(),
            venue_name: "Hall".into(),
            city: CITIES[random.below(5) as usize].into(),
            country_code: "GB".into(),
            start_time,
            end_time: start_time + (1 + random.below(6) as i64) * 3_600,
            location: None,
            price_min_minor: None,
            price_max_minor: None,
            currency_code: "EUR".into(),
            rating: 0.0,
            rating_count: 0,
            payload: String::new(),
        }
    }

    fn summary(results: &SearchResults) -> (Vec<String>, u64, Vec<FacetCount>, Vec<FacetCount>) {
        (
            results
                .hits
                .iter()
                .map(|hit| hit.document.id.clone())
                .collect(),
            results.estimated_total_hits,
            results.category_facets.clone(),
            results.city_facets.clone(),
        )
    }

    #[test]
    fn browsing_by_timeline_answers_what_the_collector_does() {
        let index = EmbeddedIndex::in_memory().expect("an index in memory");
        let mut random = Lcg(7);
        let check = |index: &EmbeddedIndex| {
            let hours = |hours: i64| Some(NOW + hours * 3_600);
            for (start_after, start_before) in [
                (None, None),
                (hours(0), None),
                (hours(-100), hours(5)),
                (hours(37), hours(700)),
                (None, hours(300)),
                (hours(2_000), None),
            ] {
                for city in [None, Some("LONDON"), Some("sao paulo"), Some("Nowhere")] {
                    for category in [None, Some("concert")] {
                        for (offset, limit) in [(0, 20), (45, 10), (0, 0)] {
                            let query = SearchQuery {
                                filters: crate::query::SearchFilters {
                                    now: NOW,
                                    start_after,
                                    start_before,
                                    city: city.map(str::to_owned),
                                    category: category.map(str::to_owned),
                                    ..Default::default()
                                },
                                offset,
                                limit,
                                facets: offset == 0,
                                ..SearchQuery::default()
                            };
                            let by_timeline = index.search_with(&query, true).expect("a browse");
                            let by_collector = index
                                .search_with(&query, false)
                                .expect("a collected search");
                            assert_eq!(summary(&by_timeline), summary(&by_collector), "{query:?}");
                        }
                    }
                }
            }
        };
        // Several commits (segments), then replacements and deletions, so
        // that timelines meet deleted events inside whole blocks.
        for batch in 0..4 {
            let documents = (0..1_500)
                .map(|n| random_event(batch * 1_500 + n, 1, &mut random))
                .collect();
            index.upsert_blocking(documents, None).expect("an upsert");
        }
        check(&index);
        let replaced = (0..6_000)
            .step_by(7)
            .map(|n| random_event(n, 2, &mut random))
            .collect();
        index
            .upsert_blocking(replaced, None)
            .expect("replacing some");
        let deleted: Vec<String> = (0..6_000)
            .step_by(11)
            .map(|n| format!("00000000-0000-4000-8000-{n:012}"))
            .collect();
        index.delete_blocking(&deleted).expect("deleting some");
        check(&index);
    }

    /// What a filtered search must answer, worked out over the documents
    /// themselves: every filter, the distance order and the facets.
    fn expected(
        held: &HashMap<String, SearchDocument>,
        query: &SearchQuery,
    ) -> (Vec<String>, u64, Vec<FacetCount>, Vec<FacetCount>) {
        let filters = &query.filters;
        let mut matches: Vec<(f64, i64, u64, &SearchDocument)> = held
            .values()
            .filter(|doc| doc.is_buyable_at(filters.now))
            .filter(|doc| {
                filters
                    .start_after
                    .is_none_or(|after| doc.start_time >= after)
            })
            .filter(|doc| {
                filters
                    .start_before
                    .is_none_or(|before| doc.start_time < before)
            })
            .filter(|doc| {
                filters
                    .city
                    .as_deref()
                    .is_none_or(|city| folded_keyword(city) == folded_keyword(&doc.city))
            })
            .filter(|doc| {
                filters
                    .category
                    .as_deref()
                    .is_none_or(|category| category.to_lowercase() == doc.category)
            })
            .filter_map(|doc| {
                let km = match query.effective_sort() {
                    SearchSort::Distance => query
                        .point
                        .zip(doc.location)
                        .map_or(f64::INFINITY, |(point, at)| haversine_km(point, at)),
                    _ => 0.0,
                };
                let inside = match filters.within {
                    Some(radius) => {
                        let at = doc.location?;
                        haversine_km(radius.center, at) <= radius.radius_km
                    }
                    None => true,
                };
                inside.then(|| (km, doc.start_time, tiebreak(&doc.id), doc))
            })
            .collect();
        matches.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut categories: HashMap<String, u64> = HashMap::new();
        let mut cities: HashMap<String, u64> = HashMap::new();
        for (_, _, _, doc) in &matches {
            if !doc.category.is_empty() {
                *categories.entry(doc.category.clone()).or_default() += 1;
            }
            if !doc.city.is_empty() {
                *cities.entry(doc.city.clone()).or_default() += 1;
            }
        }
        (
            matches
                .iter()
                .skip(query.offset)
                .take(query.limit)
                .map(|(_, _, _, doc)| doc.id.clone())
                .collect(),
            matches.len() as u64,
            sort_facets(to_facets(categories)),
            sort_facets(to_facets(cities)),
        )
    }

    #[test]
    fn filters_from_the_tables_answer_what_the_documents_say() {
        const PLACES: [(&str, f64, f64); 4] = [
            ("London", 51.5074, -0.1278),
            ("london", 51.6, -0.2),
            ("São Paulo", -23.5505, -46.6333),
            ("Paris", 48.8566, 2.3522),
        ];
        let index = EmbeddedIndex::in_memory().expect("an index in memory");
        let mut random = Lcg(11);
        let mut held: HashMap<String, SearchDocument> = HashMap::new();
        let located = |n: u64, version: i64, random: &mut Lcg| {
            let mut doc = random_event(n, version, random);
            if random.below(10) > 0 {
                let (city, latitude, longitude) = PLACES[random.below(4) as usize];
                doc.city = city.into();
                // Half at one of 25 venues per place (many events to a grid
                // cell), half anywhere near it.
                let (north, east) = if random.below(2) == 0 {
                    (
                        (random.below(5) as f64 - 2.0) / 10.0,
                        (random.below(5) as f64 - 2.0) / 10.0,
                    )
                } else {
                    (
                        (random.below(1_000) as f64 - 500.0) / 1_000.0,
                        (random.below(1_000) as f64 - 500.0) / 1_000.0,
                    )
                };
                doc.location = Some(GeoPoint {
                    latitude: latitude + north,
                    longitude: longitude + east,
                });
            }
            doc
        };
        for batch in 0..3 {
            let documents: Vec<SearchDocument> = (0..1_000)
                .map(|n| located(batch * 1_000 + n, 1, &mut random))
                .collect();
            held.extend(documents.iter().map(|doc| (doc.id.clone(), doc.clone())));
            index.upsert_blocking(documents, None).expect("an upsert");
        }
        let replaced: Vec<SearchDocument> = (0..3_000)
            .step_by(5)
            .map(|n| located(n, 2, &mut random))
            .collect();
        held.extend(replaced.iter().map(|doc| (doc.id.clone(), doc.clone())));
        index
            .upsert_blocking(replaced, None)
            .expect("replacing some");
        let deleted: Vec<String> = (0..3_000)
            .step_by(13)
            .map(|n| format!("00000000-0000-4000-8000-{n:012}"))
            .collect();
        for id in &deleted {
            held.remove(id);
        }
        index.delete_blocking(&deleted).expect("deleting some");

        let london = GeoPoint {
            latitude: 51.5074,
            longitude: -0.1278,
        };
        let paris = GeoPoint {
            latitude: 48.8566,
            longitude: 2.3522,
        };
        let hours = |hours: i64| Some(NOW + hours * 3_600);
        // Nearest to the centre, nearest to another point, soonest first,
        // by relevance (every title holds "event" once, so relevance ties
        // and the order is by start time); with pages at the front,
        // further in, and none.
        let orders = [
            (SearchSort::Distance, london, 3, 25),
            (SearchSort::Distance, paris, 0, 40),
            (SearchSort::StartTime, london, 30, 10),
            (SearchSort::Relevance, london, 5, 20),
            (SearchSort::Distance, london, 0, 0),
        ];
        for text in ["", "event"] {
            for (within, (sort, point, offset, limit)) in
                [None, Some(0.5), Some(30.0), Some(80.0), Some(3_000.0)]
                    .into_iter()
                    .flat_map(|within| orders.map(|order| (within, order)))
            {
                for (city, category) in [
                    (None, None),
                    (Some("LONDON"), None),
                    (None, Some("concert")),
                    (Some("sao paulo"), Some("sports")),
                ] {
                    for (start_after, start_before) in [(None, None), (hours(10), hours(400))] {
                        let query = SearchQuery {
                            text: text.into(),
                            filters: crate::query::SearchFilters {
                                now: NOW,
                                start_after,
                                start_before,
                                city: city.map(str::to_owned),
                                category: category.map(str::to_owned),
                                within: within.map(|radius_km| crate::GeoRadius {
                                    center: london,
                                    radius_km,
                                }),
                                ..Default::default()
                            },
                            point: Some(point),
                            sort,
                            offset,
                            limit,
                            facets: true,
                        };
                        let wanted = expected(&held, &query);
                        let results = index.search_blocking(&query).expect("a search");
                        assert_eq!(summary(&results), wanted, "{query:?}");
                        let results = index
                            .search_with(&query, false)
                            .expect("a collected search");
                        assert_eq!(summary(&results), wanted, "{query:?}, collected");
                    }
                }
            }
        }
    }

    #[test]
    fn the_seeking_union_matches_and_scores_as_the_boolean_union_does() {
        const WORDS: [&str; 8] = [
            "metal",
            "metallica",
            "meta",
            "live",
            "lively",
            "tour",
            "stadium",
            "legends",
        ];
        let index = EmbeddedIndex::in_memory().expect("an index in memory");
        let mut random = Lcg(5);
        let documents: Vec<SearchDocument> = (0..3_000)
            .map(|n| {
                let mut doc = random_event(n, 1, &mut random);
                let phrase = |count: u64, random: &mut Lcg| {
                    (0..count)
                        .map(|_| WORDS[random.below(WORDS.len() as u64) as usize])
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                doc.title = format!("{} {n}", phrase(1 + random.below(3), &mut random));
                doc.description = phrase(random.below(6), &mut random);
                doc.performers = vec![phrase(1 + random.below(2), &mut random)];
                doc
            })
            .collect();
        index.upsert_blocking(documents, None).expect("an upsert");
        let searcher = index.inner.reader.searcher();
        let fields = index.inner.fields;
        for (word, is_last) in [
            ("metal", true),
            ("metalica", false),
            ("liv", true),
            ("tour", false),
        ] {
            let weight = |seeking: bool| {
                word_query(&fields, word, is_last, true, seeking)
                    .and_then(|query| {
                        query
                            .weight(EnableScoring::enabled_from_searcher(&searcher))
                            .map_err(internal)
                    })
                    .expect("a weight")
            };
            let (boolean, seeking) = (weight(false), weight(true));
            for reader in searcher.segment_readers() {
                let walk = |weight: &dyn Weight, step: Option<DocId>| {
                    let mut scorer = weight.scorer(reader, 1.0).expect("a scorer");
                    let mut found = Vec::new();
                    let mut target = 0;
                    loop {
                        let doc = match step {
                            None if target == 0 => scorer.doc(),
                            None => scorer.advance(),
                            Some(step) => scorer.seek(target * step),
                        };
                        target += 1;
                        if doc == TERMINATED {
                            return found;
                        }
                        if found.last().is_none_or(|(last, _)| *last != doc) {
                            found.push((doc, scorer.score()));
                        }
                    }
                };
                for step in [None, Some(1), Some(7), Some(300)] {
                    let (wanted, got) = (walk(&*boolean, step), walk(&*seeking, step));
                    assert!(!wanted.is_empty(), "{word}: nothing matched");
                    assert_eq!(wanted.len(), got.len(), "{word} {step:?}");
                    for ((doc, score), (got_doc, got_score)) in wanted.iter().zip(&got) {
                        assert_eq!(doc, got_doc, "{word} {step:?}");
                        assert!(
                            (score - got_score).abs() <= 1e-4 * score.abs().max(1.0),
                            "{word} {step:?} doc {doc}: {score} vs {got_score}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_canonical_uuids_become_numbers() {
        let canonical = "0f1e2d3c-4b5a-4697-8877-66554433aa11";
        assert_eq!(
            uuid_key(canonical),
            Some(0x0f1e_2d3c_4b5a_4697_8877_6655_4433_aa11)
        );
        assert_eq!(uuid_key(&canonical.to_uppercase()), None);
        assert_eq!(uuid_key("0f1e2d3c4b5a46978877-66554433aa11-"), None);
        let mut versions = Versions::default();
        versions.insert(canonical, 3);
        versions.insert("event-1", 5);
        versions.insert(&canonical.to_uppercase(), 9);
        assert_eq!(versions.get(canonical), Some(3));
        assert_eq!(versions.get("event-1"), Some(5));
        versions.remove(canonical);
        assert_eq!(versions.get(canonical), None);
        assert_eq!(versions.get(&canonical.to_uppercase()), Some(9));
    }

    #[test]
    fn an_index_of_another_schema_starts_afresh() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut builder = Schema::builder();
        let title = builder.add_text_field("title", STRING | STORED);
        let old = Index::create_in_dir(dir.path(), builder.build()).expect("an old index");
        let mut writer: IndexWriter<TantivyDocument> =
            old.writer(15_000_000).expect("an old writer");
        let mut doc = TantivyDocument::new();
        doc.add_text(title, "old");
        writer.add_document(doc).expect("an old document");
        writer.commit().expect("an old commit");
        drop(writer);
        drop(old);
        std::fs::write(dir.path().join("notes.txt"), "not the index's").expect("a user file");

        let index = EmbeddedIndex::open_in_dir(dir.path()).expect("opened afresh");
        assert!(index.is_empty());
        assert!(
            dir.path().join("notes.txt").exists(),
            "only the index's own files are removed"
        );
        index
            .upsert_blocking(vec![random_event(1, 1, &mut Lcg(1))], Some(4))
            .expect("an upsert");
        drop(index);
        let index = EmbeddedIndex::open_in_dir(dir.path()).expect("reopened");
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn keywords_fold_case_and_accents() {
        assert_eq!(folded_keyword(" São Paulo "), "sao paulo");
    }
}
