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
//! venues and places, those above descriptions. Geo radius is a bounding box
//! on the latitude/longitude columns refined by haversine in the collector.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value as _,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader,
    TantivyDocument, Term,
};

use crate::document::{GeoPoint, STATUS_PUBLISHED, SearchDocument, haversine_km};
use crate::query::{
    FacetCount, MAX_QUERY_WORDS, SearchHit, SearchQuery, SearchResults, SearchSort, sort_facets,
};
use crate::text::{
    HIGHLIGHT_END, HIGHLIGHT_START, MAX_WORD_BYTES, strip_markers, typo_budget, word_matches,
};
use crate::{Checkpoint, Result, SearchError, SearchIndex};

/// Words folded to lowercase ASCII; very long tokens (noise) dropped. Its
/// words are the shared ones (see [`crate::text::query_words`]): tantivy's
/// simple tokenizer splits on the same characters.
const TEXT_ANALYZER: &str = "boxoffice_text";
/// A whole value as one folded token (cities).
const KEYWORD_ANALYZER: &str = "boxoffice_keyword";
/// Indexing memory; tantivy flushes a segment when it is used up.
const WRITER_MEMORY_BYTES: usize = 64 * 1024 * 1024;

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
    let id = builder.add_text_field("id", STRING | FAST);
    let version = builder.add_i64_field("version", FAST);
    let status = builder.add_text_field("status", STRING);
    let text = TEXT_FIELDS.map(|(name, _)| builder.add_text_field(name, text_options.clone()));
    let category = builder.add_text_field("category", STRING | FAST);
    let city_key = builder.add_text_field("city_key", keyword_options);
    let city_facet = builder.add_text_field("city_facet", TextOptions::default().set_fast("raw"));
    let performer_ids = builder.add_text_field("performer_ids", STRING);
    let venue_id = builder.add_text_field("venue_id", STRING);
    let start_time = builder.add_i64_field("start_time", INDEXED | FAST);
    let end_time = builder.add_i64_field("end_time", INDEXED | FAST);
    let latitude = builder.add_f64_field("latitude", INDEXED | FAST);
    let longitude = builder.add_f64_field("longitude", INDEXED | FAST);
    let tiebreak = builder.add_u64_field("tiebreak", FAST);
    let document = builder.add_text_field("document", STORED);
    let fields = Fields {
        id,
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
    versions: HashMap<String, i64>,
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
        let index = Index::open_or_create(directory, schema).map_err(|error| {
            anyhow!(
                "opening the search index in {} (if it was written by another version, delete the directory: \
                 it is rebuilt from PostgreSQL): {error}",
                dir.display()
            )
        })?;
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
        let writer = index
            .writer_with_num_threads(threads, WRITER_MEMORY_BYTES)
            .context("opening the search index writer (is another process using the directory?)")?;
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
            }),
        })
    }

    /// Number of documents held (all statuses).
    pub fn len(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
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
        let stored = serde_json::to_string(document).context("encoding a search document")?;
        doc.add_text(fields.document, stored);
        Ok(doc)
    }

    fn upsert_blocking(
        &self,
        documents: Vec<SearchDocument>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<()> {
        let mut converted = Vec::with_capacity(documents.len());
        for document in &documents {
            converted.push((
                document.id.clone(),
                document.version,
                self.to_tantivy(document)?,
            ));
        }
        let mut writer = self.lock_writer()?;
        let mut changed = false;
        for (id, version, doc) in converted {
            if writer
                .versions
                .get(&id)
                .is_some_and(|held| *held >= version)
            {
                continue;
            }
            writer
                .writer
                .delete_term(Term::from_field_text(self.inner.fields.id, &id));
            writer.writer.add_document(doc).map_err(internal)?;
            writer.versions.insert(id, version);
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
                .delete_term(Term::from_field_text(self.inner.fields.id, id));
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
        let tantivy_query = self.build_query(query, &query_words);
        let keep = query.offset.saturating_add(query.limit);
        let collector = EventCollector {
            keep,
            sort: match sort {
                SearchSort::Relevance => SortBy::Relevance,
                SearchSort::StartTime => SortBy::StartTime,
                SearchSort::Distance => match query.point {
                    Some(point) => SortBy::Distance(point),
                    None => SortBy::StartTime,
                },
            },
            within: query
                .filters
                .within
                .map(|radius| (radius.center, radius.radius_km)),
            facets: query.facets,
        };
        let searcher = self.inner.reader.searcher();
        let collected = searcher
            .search(&tantivy_query, &collector)
            .map_err(internal)?;
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

    fn build_query(&self, query: &SearchQuery, query_words: &[String]) -> BooleanQuery {
        let fields = self.inner.fields;
        let filters = &query.filters;
        let filter = |query: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
            (Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0)))
        };
        let term = |field: Field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if query_words.is_empty() {
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        for (position, word) in query_words.iter().enumerate() {
            let is_last = position + 1 == query_words.len();
            clauses.push((Occur::Must, Box::new(word_query(&fields, word, is_last))));
        }
        clauses.push(filter(term(fields.status, STATUS_PUBLISHED)));
        clauses.push(filter(Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_i64(fields.end_time, filters.now)),
            Bound::Unbounded,
        ))));
        if filters.start_after.is_some() || filters.start_before.is_some() {
            let lower = filters.start_after.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(fields.start_time, t))
            });
            let upper = filters.start_before.map_or(Bound::Unbounded, |t| {
                Bound::Excluded(Term::from_field_i64(fields.start_time, t))
            });
            clauses.push(filter(Box::new(RangeQuery::new(lower, upper))));
        }
        if let Some(city) = &filters.city {
            clauses.push(filter(term(fields.city_key, &folded_keyword(city))));
        }
        if let Some(category) = &filters.category {
            clauses.push(filter(term(fields.category, &category.to_lowercase())));
        }
        if let Some(performer_id) = &filters.performer_id {
            clauses.push(filter(term(fields.performer_ids, performer_id)));
        }
        if let Some(venue_id) = &filters.venue_id {
            clauses.push(filter(term(fields.venue_id, venue_id)));
        }
        if let Some(radius) = filters.within {
            // A box around the circle narrows the candidates; the collector
            // then checks the real distance.
            let center = radius.center;
            let lat_delta = radius.radius_km / 111.0 * 1.01;
            let (south, north) = (center.latitude - lat_delta, center.latitude + lat_delta);
            clauses.push(filter(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_f64(fields.latitude, south)),
                Bound::Included(Term::from_field_f64(fields.latitude, north)),
            ))));
            let widest = south.abs().max(north.abs());
            if widest < 89.0 {
                let lng_delta = radius.radius_km / (111.32 * widest.to_radians().cos()) * 1.01;
                let (west, east) = (center.longitude - lng_delta, center.longitude + lng_delta);
                if west >= -180.0 && east <= 180.0 {
                    clauses.push(filter(Box::new(RangeQuery::new(
                        Bound::Included(Term::from_field_f64(fields.longitude, west)),
                        Bound::Included(Term::from_field_f64(fields.longitude, east)),
                    ))));
                }
            }
        }
        BooleanQuery::new(clauses)
    }
}

/// One query word against every searchable field: exact (best), as a prefix
/// when it is the last word, or within its typo budget.
fn word_query(fields: &Fields, word: &str, is_last: bool) -> BooleanQuery {
    let budget = typo_budget(word.chars().count());
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, (_, weight)) in fields.text.iter().zip(TEXT_FIELDS) {
        let term = Term::from_field_text(*field, word);
        alternatives.push((
            Occur::Should,
            Box::new(BoostQuery::new(
                Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                3.0 * weight,
            )),
        ));
        if is_last {
            alternatives.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(FuzzyTermQuery::new_prefix(term.clone(), budget, true)),
                    1.5 * weight,
                )),
            ));
        } else if budget > 0 {
            alternatives.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(FuzzyTermQuery::new(term, budget, true)),
                    weight,
                )),
            ));
        }
    }
    BooleanQuery::new(alternatives)
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

fn load_versions(reader: &IndexReader) -> Result<HashMap<String, i64>> {
    let searcher = reader.searcher();
    let mut versions = HashMap::new();
    let mut id = String::new();
    for segment in searcher.segment_readers() {
        let ids = segment
            .fast_fields()
            .str("id")
            .map_err(internal)?
            .context("the id column is missing")?;
        let version_column: Column<i64> = segment.fast_fields().i64("version").map_err(internal)?;
        for doc in segment.doc_ids_alive() {
            let (Some(ord), Some(version)) = (ids.term_ords(doc).next(), version_column.first(doc))
            else {
                continue;
            };
            id.clear();
            if ids.ord_to_str(ord, &mut id).map_err(internal)? {
                versions.insert(id.clone(), version);
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

struct EventCollector {
    keep: usize,
    sort: SortBy,
    within: Option<(GeoPoint, f64)>,
    facets: bool,
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
    start_time: Column<i64>,
    tiebreak: Column<u64>,
    location: Option<(Column<f64>, Column<f64>)>,
    categories: Option<(StrColumn, Vec<u64>)>,
    cities: Option<(StrColumn, Vec<u64>)>,
    /// Max-heap of the best `keep` so far: the worst is on top.
    heap: BinaryHeap<Candidate>,
    total: u64,
}

fn facet_column(
    segment: &SegmentReader,
    name: &str,
    wanted: bool,
) -> tantivy::Result<Option<(StrColumn, Vec<u64>)>> {
    if !wanted {
        return Ok(None);
    }
    Ok(segment.fast_fields().str(name)?.map(|column| {
        let terms = column.num_terms();
        (column, vec![0; terms])
    }))
}

impl Collector for EventCollector {
    type Fruit = Collected;
    type Child = EventSegmentCollector;

    fn for_segment(
        &self,
        segment_ord: u32,
        segment: &SegmentReader,
    ) -> tantivy::Result<EventSegmentCollector> {
        let fast = segment.fast_fields();
        let needs_location = self.within.is_some() || matches!(self.sort, SortBy::Distance(_));
        let location = if needs_location {
            match (
                fast.column_opt::<f64>("latitude")?,
                fast.column_opt::<f64>("longitude")?,
            ) {
                (Some(latitude), Some(longitude)) => Some((latitude, longitude)),
                _ => None,
            }
        } else {
            None
        };
        Ok(EventSegmentCollector {
            segment: segment_ord,
            keep: self.keep,
            sort: self.sort,
            within: self.within,
            start_time: fast.i64("start_time")?,
            tiebreak: fast.u64("tiebreak")?,
            location,
            categories: facet_column(segment, "category", self.facets)?,
            cities: facet_column(segment, "city_facet", self.facets)?,
            heap: BinaryHeap::with_capacity(self.keep.min(4_096) + 1),
            total: 0,
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

fn harvest_facets(column: Option<(StrColumn, Vec<u64>)>) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    let Some((column, per_ord)) = column else {
        return counts;
    };
    for (ord, count) in per_ord.into_iter().enumerate() {
        if count == 0 {
            continue;
        }
        let mut value = String::new();
        if matches!(column.ord_to_str(ord as u64, &mut value), Ok(true)) && !value.is_empty() {
            counts.insert(value, count);
        }
    }
    counts
}

impl SegmentCollector for EventSegmentCollector {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
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
        if let Some((column, counts)) = &mut self.categories
            && let Some(ord) = column.term_ords(doc).next()
            && let Some(count) = counts.get_mut(ord as usize)
        {
            *count += 1;
        }
        if let Some((column, counts)) = &mut self.cities
            && let Some(ord) = column.term_ords(doc).next()
            && let Some(count) = counts.get_mut(ord as usize)
        {
            *count += 1;
        }
        if self.keep == 0 {
            return;
        }
        let primary = match self.sort {
            SortBy::Relevance => -f64::from(score),
            SortBy::StartTime => 0.0,
            SortBy::Distance(from) => match distance {
                Some(km) if self.within.is_some_and(|(center, _)| center == from) => km,
                _ => self
                    .point_of(doc)
                    .map_or(f64::INFINITY, |point| haversine_km(from, point)),
            },
        };
        let key = SortKey {
            primary,
            start_time: self.start_time.first(doc).unwrap_or(i64::MAX),
            tiebreak: self.tiebreak.first(doc).unwrap_or(u64::MAX),
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

    fn harvest(self) -> SegmentFruit {
        SegmentFruit {
            top: self.heap.into_vec(),
            total: self.total,
            categories: harvest_facets(self.categories),
            cities: harvest_facets(self.cities),
        }
    }
}

impl EventSegmentCollector {
    fn point_of(&self, doc: DocId) -> Option<GeoPoint> {
        let (latitude, longitude) = self.location.as_ref()?;
        Some(GeoPoint {
            latitude: latitude.first(doc)?,
            longitude: longitude.first(doc)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn keywords_fold_case_and_accents() {
        assert_eq!(folded_keyword(" São Paulo "), "sao paulo");
    }
}
