//! A segment's filter and sort values as plain arrays, read once.
//!
//! tantivy's columns are compact (bit-packed, behind an optional index) and
//! every read decodes; a query that visits tens of thousands of matches
//! paid for several such reads per match (status, end, start, location,
//! category, city, tie-breaker). An [`EventTable`] holds the same values
//! per document in one 48-byte row (one cache line to fetch per match, where
//! the columns each cost a miss of their own), built once per segment
//! by the first query that reads it (segments never change; deleted
//! documents are left out by tantivy before they reach the table's users).
//!
//! The table also turns the city and category filters into a check of one
//! number per document (its (category, city) group), and [`FilterQuery`]
//! uses that to drive a search from its cheapest source of candidates (a
//! city's or a category's posting list, the wanted groups' published events
//! in the start window from [`GroupLists`], or the events within a radius
//! from the segment's [`GeoMap`]) while every other filter is checked from
//! the arrays, so the word queries only seek to documents that pass every
//! filter.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use tantivy::columnar::{Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::query::{
    BitSetDocSet, ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyError};

use super::geo::{Around, Circle, Filters, GeoMap, Located};
use super::{keyword_analyzer, words};
use crate::document::STATUS_PUBLISHED;

/// One (category, city) pair present in a segment.
pub(super) struct Group {
    /// Lowercase, as indexed; empty when the event has none.
    pub(super) category: String,
    pub(super) city: String,
    /// The city folded as the city filter compares it.
    pub(super) city_key: String,
}

/// One document's values that every search reads: 32 bytes aligned to
/// 32, so two rows share a cache line and none straddles two (the
/// location, which only radius searches read, is kept apart).
#[derive(Clone, Copy)]
#[repr(align(32))]
struct Row {
    /// The end time of a published event; `i64::MIN` for any other.
    published_end: i64,
    start_time: i64,
    tiebreak: u64,
    group: u32,
}

const _: () = assert!(std::mem::size_of::<Row>() == 32);

/// A segment's values per document.
pub(super) struct EventTable {
    rows: Vec<Row>,
    /// Per document, `(latitude, longitude)`; NaN without a location.
    points: Vec<(f64, f64)>,
    /// Per document, its rating (0 when unrated); only the rating filter and
    /// sort read it, so it is kept apart like the location.
    ratings: Vec<f64>,
    pub(super) groups: Vec<Group>,
    /// The published, located events by grid cell, built by the first
    /// radius search that reads the segment.
    geo: OnceLock<GeoMap>,
    /// Per group, its published events by start time, built by the first
    /// search with a city or category filter that reads the segment.
    by_group: OnceLock<GroupLists>,
}

fn str_value(column: Option<&StrColumn>, ord: u64) -> String {
    let mut value = String::new();
    if let Some(column) = column
        && ord != u64::MAX
        && !matches!(column.ord_to_str(ord, &mut value), Ok(true))
    {
        value.clear();
    }
    value
}

impl EventTable {
    fn build(segment: &SegmentReader) -> tantivy::Result<Self> {
        let fast = segment.fast_fields();
        let max_doc = segment.max_doc() as usize;
        let start: Column<i64> = fast.i64("start_time")?;
        let end: Column<i64> = fast.i64("end_time")?;
        let tiebreak: Column<u64> = fast.u64("tiebreak")?;
        let latitude = fast.column_opt::<f64>("latitude")?;
        let longitude = fast.column_opt::<f64>("longitude")?;
        let rating = fast.column_opt::<f64>("rating")?;
        let categories = fast.str("category")?;
        let cities = fast.str("city_facet")?;
        let published = match fast.str("status")? {
            Some(column) => column
                .dictionary()
                .term_ord(STATUS_PUBLISHED)?
                .map(|published| (column, published)),
            None => None,
        };
        let ord = |column: Option<&StrColumn>, doc: DocId| {
            column
                .and_then(|column| column.term_ords(doc).next())
                .unwrap_or(u64::MAX)
        };

        let mut table = Self {
            rows: Vec::with_capacity(max_doc),
            points: Vec::with_capacity(max_doc),
            ratings: Vec::with_capacity(max_doc),
            groups: Vec::new(),
            geo: OnceLock::new(),
            by_group: OnceLock::new(),
        };
        let mut group_by_ords: HashMap<(u64, u64), u32> = HashMap::new();
        let mut analyzer = keyword_analyzer();
        for doc in 0..max_doc as DocId {
            let is_published = published.as_ref().is_some_and(|(column, published)| {
                column.term_ords(doc).next() == Some(*published)
            });
            let point =
                latitude
                    .as_ref()
                    .zip(longitude.as_ref())
                    .and_then(|(latitude, longitude)| {
                        Some((latitude.first(doc)?, longitude.first(doc)?))
                    });
            let (lat, lng) = point.unwrap_or((f64::NAN, f64::NAN));
            let ords = (ord(categories.as_ref(), doc), ord(cities.as_ref(), doc));
            let groups = &mut table.groups;
            let group = *group_by_ords.entry(ords).or_insert_with(|| {
                let city = str_value(cities.as_ref(), ords.1);
                let city_key = words(&mut analyzer, &city)
                    .into_iter()
                    .next()
                    .map(|(word, _, _)| word)
                    .unwrap_or_default();
                groups.push(Group {
                    category: str_value(categories.as_ref(), ords.0),
                    city,
                    city_key,
                });
                (groups.len() - 1) as u32
            });
            table.rows.push(Row {
                published_end: match end.first(doc) {
                    Some(end) if is_published => end,
                    _ => i64::MIN,
                },
                start_time: start.first(doc).unwrap_or(i64::MAX),
                tiebreak: tiebreak.first(doc).unwrap_or(u64::MAX),
                group,
            });
            table.points.push((lat, lng));
            table.ratings.push(
                rating
                    .as_ref()
                    .and_then(|rating| rating.first(doc))
                    .unwrap_or(0.0),
            );
        }
        Ok(table)
    }

    #[inline]
    fn row(&self, doc: DocId) -> &Row {
        &self.rows[doc as usize]
    }

    /// Reads `doc`'s row (one cache line) and answers something made of
    /// it, for a caller that wants rows in cache before it looks at them.
    #[inline]
    pub(super) fn touch(&self, doc: DocId) -> u64 {
        let row = self.row(doc);
        row.published_end as u64
    }

    #[inline]
    pub(super) fn start_time(&self, doc: DocId) -> i64 {
        self.row(doc).start_time
    }

    #[inline]
    pub(super) fn tiebreak(&self, doc: DocId) -> u64 {
        self.row(doc).tiebreak
    }

    #[inline]
    pub(super) fn group(&self, doc: DocId) -> u32 {
        self.row(doc).group
    }

    /// `(latitude, longitude)`, when the event has a location.
    #[inline]
    pub(super) fn point(&self, doc: DocId) -> Option<(f64, f64)> {
        let (latitude, longitude) = self.points[doc as usize];
        (!latitude.is_nan()).then_some((latitude, longitude))
    }

    /// The event's rating, 0 when unrated.
    #[inline]
    pub(super) fn rating(&self, doc: DocId) -> f64 {
        self.ratings[doc as usize]
    }

    /// The segment's published, located events by grid cell (see [`GeoMap`]).
    pub(super) fn geo_map(&self) -> &GeoMap {
        self.geo.get_or_init(|| {
            GeoMap::build(self.rows.iter().zip(&self.points).enumerate().filter_map(
                |(doc, (row, &(latitude, longitude)))| {
                    (row.published_end != i64::MIN && !latitude.is_nan()).then_some(Located {
                        doc: doc as DocId,
                        latitude,
                        longitude,
                        start_time: row.start_time,
                        end_time: row.published_end,
                        group: row.group,
                        tiebreak: row.tiebreak,
                    })
                },
            ))
        })
    }

    /// Per group, its published events by start time.
    pub(super) fn group_lists(&self) -> &GroupLists {
        self.by_group
            .get_or_init(|| GroupLists::build(&self.rows, self.groups.len()))
    }

    /// Per group, whether it passes the city and category filters.
    pub(super) fn wanted_groups(&self, filter: &GroupFilter) -> Vec<bool> {
        self.groups
            .iter()
            .map(|group| {
                filter
                    .category
                    .as_deref()
                    .is_none_or(|category| group.category == category)
                    && filter
                        .city_key
                        .as_deref()
                        .is_none_or(|city| group.city_key == city)
            })
            .collect()
    }
}

/// The city and category a search is narrowed to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct GroupFilter {
    /// Folded as [`super::folded_keyword`] folds it.
    pub(super) city_key: Option<String>,
    /// Lowercase.
    pub(super) category: Option<String>,
}

impl GroupFilter {
    /// Whether it leaves out any group.
    pub(super) fn is_narrowed(&self) -> bool {
        self.city_key.is_some() || self.category.is_some()
    }
}

/// Per (category, city) group, its published events by start time.
pub(super) struct GroupLists {
    starts: Vec<Vec<i64>>,
    docs: Vec<Vec<DocId>>,
}

/// The events of the wanted groups in a search's window: a range of each
/// group's list.
pub(super) struct InWindow<'a> {
    lists: &'a GroupLists,
    ranges: Vec<(usize, std::ops::Range<usize>)>,
}

impl GroupLists {
    fn build(rows: &[Row], groups: usize) -> Self {
        let mut by_group: Vec<Vec<(i64, DocId)>> = vec![Vec::new(); groups];
        for (doc, row) in rows.iter().enumerate() {
            if row.published_end != i64::MIN {
                by_group[row.group as usize].push((row.start_time, doc as DocId));
            }
        }
        let mut lists = Self {
            starts: Vec::with_capacity(groups),
            docs: Vec::with_capacity(groups),
        };
        for mut events in by_group {
            events.sort_unstable();
            lists
                .starts
                .push(events.iter().map(|(start, _)| *start).collect());
            lists
                .docs
                .push(events.into_iter().map(|(_, doc)| doc).collect());
        }
        lists
    }

    pub(super) fn in_window(&self, predicate: &SegmentPredicate) -> InWindow<'_> {
        let (after, before) = predicate.window();
        let ranges = self
            .starts
            .iter()
            .enumerate()
            .filter(|(group, _)| predicate.wants_group(*group as u32))
            .map(|(group, starts)| {
                let from = after.map_or(0, |after| starts.partition_point(|start| *start < after));
                let to = before
                    .map_or(starts.len(), |before| {
                        starts.partition_point(|start| *start < before)
                    })
                    .max(from);
                (group, from..to)
            })
            .collect();
        InWindow {
            lists: self,
            ranges,
        }
    }
}

impl InWindow<'_> {
    /// How many events the ranges hold.
    pub(super) fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|(_, range)| range.len() as u64)
            .sum()
    }

    /// Those that pass the predicate, in document order.
    pub(super) fn docs(&self, predicate: &SegmentPredicate) -> Vec<DocId> {
        let mut docs: Vec<DocId> = self
            .ranges
            .iter()
            .flat_map(|(group, range)| self.lists.docs[*group][range.clone()].iter().copied())
            .filter(|doc| predicate.accepts(*doc))
            .collect();
        docs.sort_unstable();
        docs
    }
}

/// Documents from a sorted list.
pub(super) struct SortedDocs {
    docs: Vec<DocId>,
    at: usize,
}

impl SortedDocs {
    pub(super) fn new(docs: Vec<DocId>) -> Self {
        Self { docs, at: 0 }
    }
}

impl DocSet for SortedDocs {
    fn advance(&mut self) -> DocId {
        self.at = (self.at + 1).min(self.docs.len());
        self.doc()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc() < target {
            self.at += self.docs[self.at..].partition_point(|doc| *doc < target);
        }
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.docs.get(self.at).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        (self.docs.len() - self.at) as u32
    }
}

/// Every segment's table, built by the first query that needs it.
#[derive(Default)]
pub(super) struct Tables(Mutex<HashMap<SegmentId, Arc<EventTable>>>);

impl Tables {
    pub(super) fn get(&self, segment: &SegmentReader) -> tantivy::Result<Arc<EventTable>> {
        let id = segment.segment_id();
        if let Some(table) = self.lock().get(&id) {
            return Ok(table.clone());
        }
        // Built without the lock held: other queries go on meanwhile (two
        // may build the same one; either is right).
        let table = Arc::new(EventTable::build(segment)?);
        self.lock().insert(id, table.clone());
        Ok(table)
    }

    /// Forgets the tables of segments no longer searched (merged away).
    pub(super) fn retain(&self, segments: &[SegmentReader]) {
        let mut tables = self.lock();
        if tables.len() > segments.len() {
            tables.retain(|id, _| segments.iter().any(|segment| segment.segment_id() == *id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<EventTable>>> {
        // The map only ever holds complete tables: one left by a panic
        // elsewhere is still right.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What every search requires of a document, checked from the table.
#[derive(Debug, Clone)]
pub(super) struct Predicate {
    pub(super) now: i64,
    pub(super) start_after: Option<i64>,
    pub(super) start_before: Option<i64>,
    pub(super) groups: GroupFilter,
    /// `(south, north, west, east)`: a box the document's location must be
    /// in (a radius's bounding box; the collector checks the distance).
    pub(super) bounds: Option<(f64, f64, f64, f64)>,
    /// The lowest rating accepted (unrated events are 0).
    pub(super) min_rating: Option<f64>,
}

/// The predicate bound to one segment's table.
pub(super) struct SegmentPredicate {
    table: Arc<EventTable>,
    wanted: Vec<bool>,
    predicate: Predicate,
}

impl SegmentPredicate {
    pub(super) fn new(table: Arc<EventTable>, predicate: &Predicate) -> Self {
        Self {
            wanted: table.wanted_groups(&predicate.groups),
            table,
            predicate: predicate.clone(),
        }
    }

    /// `(start_after, start_before)`.
    #[inline]
    pub(super) fn window(&self) -> (Option<i64>, Option<i64>) {
        (self.predicate.start_after, self.predicate.start_before)
    }

    #[inline]
    pub(super) fn wants_group(&self, group: u32) -> bool {
        self.wanted[group as usize]
    }

    /// What the geo map reads of this predicate.
    pub(super) fn filters(&self) -> Filters<'_> {
        Filters {
            now: self.predicate.now,
            start_after: self.predicate.start_after,
            start_before: self.predicate.start_before,
            wanted: &self.wanted,
        }
    }

    pub(super) fn table(&self) -> &Arc<EventTable> {
        &self.table
    }

    #[inline]
    pub(super) fn accepts(&self, doc: DocId) -> bool {
        let row = self.table.row(doc);
        let predicate = &self.predicate;
        if row.published_end <= predicate.now || !self.wanted[row.group as usize] {
            return false;
        }
        let start = row.start_time;
        if predicate.start_after.is_some_and(|after| start < after)
            || predicate.start_before.is_some_and(|before| start >= before)
        {
            return false;
        }
        if predicate
            .min_rating
            .is_some_and(|min| self.table.rating(doc) < min)
        {
            return false;
        }
        match predicate.bounds {
            None => true,
            // NaN (no location) fails every comparison.
            Some((south, north, west, east)) => {
                let (latitude, longitude) = self.table.points[doc as usize];
                latitude >= south && latitude <= north && longitude >= west && longitude <= east
            }
        }
    }
}

/// A filter: the documents of the cheapest of `drivers` (posting lists)
/// that pass `predicate`, or, when it is cheaper, those the segment's geo
/// map finds within `circle` (with its bounding box). Scores nothing (0),
/// like the other filters.
#[derive(Clone)]
pub(super) struct FilterQuery {
    pub(super) drivers: Vec<Arc<dyn Query>>,
    pub(super) circle: Option<(Circle, (f64, f64, f64, f64))>,
    pub(super) predicate: Predicate,
    pub(super) tables: Arc<Tables>,
}

impl fmt::Debug for FilterQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterQuery")
            .field("drivers", &self.drivers)
            .field("predicate", &self.predicate)
            .finish()
    }
}

impl Query for FilterQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        // The drivers only say which documents: their scores are not used.
        let weights = self
            .drivers
            .iter()
            .map(|driver| driver.weight(EnableScoring::disabled_from_schema(scoring.schema())))
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(Box::new(FilterWeight {
            drivers: weights,
            circle: self.circle,
            predicate: self.predicate.clone(),
            tables: self.tables.clone(),
        }))
    }
}

struct FilterWeight {
    drivers: Vec<Box<dyn Weight>>,
    circle: Option<(Circle, (f64, f64, f64, f64))>,
    predicate: Predicate,
    tables: Arc<Tables>,
}

impl Weight for FilterWeight {
    fn scorer(&self, reader: &SegmentReader, _boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut cheapest: Option<Box<dyn Scorer>> = None;
        for driver in &self.drivers {
            let scorer = driver.scorer(reader, 1.0)?;
            if cheapest
                .as_ref()
                .is_none_or(|best| scorer.cost() < best.cost())
            {
                cheapest = Some(scorer);
            }
        }
        let predicate = SegmentPredicate::new(self.tables.get(reader)?, &self.predicate);
        let mut cost = cheapest.as_ref().map_or(u64::MAX, |best| best.cost());
        // The geo map walks only the cells near the circle.
        let geo = self
            .circle
            .map(|(circle, bounds)| (circle, bounds, predicate.table().geo_map()))
            .map(|(circle, bounds, geo)| (geo.cost(circle, bounds), circle, bounds, geo))
            .filter(|(geo_cost, ..)| *geo_cost < cost);
        if let Some((geo_cost, ..)) = geo {
            cost = geo_cost;
        }
        // The start-time lists of the wanted groups walk only the events of
        // the city and category in the window.
        let in_window = self
            .predicate
            .groups
            .is_narrowed()
            .then(|| predicate.table().group_lists().in_window(&predicate))
            .filter(|ranges| ranges.len() < cost);
        if let Some(ranges) = in_window {
            let docs = ranges.docs(&predicate);
            return Ok(Box::new(ConstScorer::new(SortedDocs::new(docs), 0.0)));
        }
        if let Some((_, circle, bounds, geo)) = geo {
            let around = Around {
                circle,
                bounds,
                predicate: predicate.filters(),
            };
            let docs = geo.matching_docs(reader.max_doc(), &around);
            return Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), 0.0)));
        }
        let Some(driver) = cheapest else {
            return Ok(Box::new(EmptyScorer));
        };
        let mut scorer = FilterScorer { driver, predicate };
        let first = scorer.driver.doc();
        if first != TERMINATED && !scorer.predicate.accepts(first) {
            scorer.advance();
        }
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("FilterQuery", 0.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not pass the filter"
            )))
        }
    }
}

struct FilterScorer {
    driver: Box<dyn Scorer>,
    predicate: SegmentPredicate,
}

impl DocSet for FilterScorer {
    fn advance(&mut self) -> DocId {
        loop {
            let doc = self.driver.advance();
            if doc == TERMINATED || self.predicate.accepts(doc) {
                return doc;
            }
        }
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.driver.seek(target);
        if doc == TERMINATED || self.predicate.accepts(doc) {
            return doc;
        }
        self.advance()
    }

    fn doc(&self) -> DocId {
        self.driver.doc()
    }

    fn size_hint(&self) -> u32 {
        self.driver.size_hint()
    }

    fn cost(&self) -> u64 {
        self.driver.cost()
    }
}

impl Scorer for FilterScorer {
    fn score(&mut self) -> Score {
        0.0
    }
}
