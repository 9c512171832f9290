//! Radius searches from a per-segment map of small grid cells, in time that
//! grows with the events near the circle's edge rather than with every event
//! inside it.
//!
//! A [`GeoMap`] holds a segment's published, located events ordered by cell
//! (1/32 of a degree, about 3.5 km) and, within a cell, by end time. Per cell
//! it keeps the count of every (category, city) group, the range of start
//! times, and a centre with the greatest distance from it to any of the
//! cell's events (its reach). By the triangle inequality a cell whose
//! centre is within the radius minus its reach lies wholly inside the circle
//! (its events are counted from the cell's counts, without a visit), one
//! whose centre is beyond the radius plus its reach lies wholly outside, and
//! only the cells across the edge are visited event by event. Events that
//! have ended are a prefix of their cell (found by binary search) and are
//! taken off the counts; deleted events are taken off the same way as in
//! timelines (see [`super::timeline`]).
//!
//! The nearest events come from the cells in order of how near they can be:
//! once the page is full and the next cell cannot hold anything nearer than
//! its last event, the rest is never visited.

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tantivy::{BitSet, DocAddress, DocId, SegmentReader};

use super::{Candidate, SortKey};
use crate::document::{GeoPoint, haversine_km};

/// Cell size in degrees: small enough that few cells straddle a city-sized
/// circle's edge, large enough that a circle holds few of them.
const CELL_DEGREES: f64 = 1.0 / 32.0;
/// Slack for rounding in the distance bounds: a cell within this of the
/// edge is visited rather than counted or skipped.
const MARGIN_KM: f64 = 1e-6;

/// One published, located event.
struct Entry {
    latitude: f64,
    longitude: f64,
    start_time: i64,
    end_time: i64,
    doc: DocId,
    group: u32,
    /// The document's sort tiebreak (see [`SortKey`]).
    tiebreak: u64,
}

struct Cell {
    row: u32,
    column: u32,
    /// First entry of the cell; the next cell's `first` ends it.
    first: u32,
    /// First `(group, count)` of the cell in [`GeoMap::counts`].
    counts_from: u32,
    center: GeoPoint,
    /// Greatest distance from `center` to an entry of the cell.
    reach_km: f64,
    earliest_start: i64,
    latest_start: i64,
}

/// A segment's published, located events by grid cell, with per-cell counts.
pub(super) struct GeoMap {
    entries: Vec<Entry>,
    /// By (row, column); one past the last holds the ends.
    cells: Vec<Cell>,
    counts: Vec<(u32, u32)>,
    /// Positions (in `entries`) of deleted documents, for the deletion count
    /// they were computed at.
    deleted: Mutex<Option<(u32, Arc<Vec<u32>>)>>,
}

/// A radius filter.
#[derive(Clone, Copy, Debug)]
pub(super) struct Circle {
    pub(super) center: GeoPoint,
    pub(super) radius_km: f64,
}

/// What a radius search asks of one segment: the circle, its bounding box
/// `(south, north, west, east)` (within ±90° and ±180°) and every other
/// filter but the words.
pub(super) struct Around<'a> {
    pub(super) circle: Circle,
    pub(super) bounds: (f64, f64, f64, f64),
    pub(super) predicate: Filters<'a>,
}

/// A search's filters other than the circle and the words, as the map
/// reads them (the segment's predicate hands them over; the map knows
/// nothing of the table they came from).
#[derive(Clone, Copy)]
pub(super) struct Filters<'a> {
    /// Events that have ended by then are left out.
    pub(super) now: i64,
    pub(super) start_after: Option<i64>,
    pub(super) start_before: Option<i64>,
    /// Per (category, city) group of the segment: whether it is wanted.
    pub(super) wanted: &'a [bool],
}

impl Filters<'_> {
    #[inline]
    fn now(&self) -> i64 {
        self.now
    }

    #[inline]
    fn window(&self) -> (Option<i64>, Option<i64>) {
        (self.start_after, self.start_before)
    }

    #[inline]
    fn wants_group(&self, group: u32) -> bool {
        self.wanted[group as usize]
    }
}

/// One event of the table that [`GeoMap::build`] takes.
pub(super) struct Located {
    pub(super) doc: DocId,
    pub(super) latitude: f64,
    pub(super) longitude: f64,
    pub(super) start_time: i64,
    pub(super) end_time: i64,
    pub(super) group: u32,
    pub(super) tiebreak: u64,
}

fn cell_of(latitude: f64, longitude: f64) -> (u32, u32) {
    (
        ((latitude + 90.0) / CELL_DEGREES).floor().max(0.0) as u32,
        ((longitude + 180.0) / CELL_DEGREES).floor().max(0.0) as u32,
    )
}

/// A cell near a circle.
struct Near {
    cell: usize,
    /// Every event of the cell is within the radius.
    inside: bool,
    /// No event of the cell is nearer to the centre than this.
    nearest_km: f64,
}

/// How a cell's start times stand to a search's window.
#[derive(PartialEq)]
enum Window {
    All,
    Some,
    None,
}

impl GeoMap {
    pub(super) fn build(located: impl Iterator<Item = Located>) -> Self {
        let mut keyed: Vec<((u32, u32), Entry)> = located
            .map(|event| {
                (
                    cell_of(event.latitude, event.longitude),
                    Entry {
                        latitude: event.latitude,
                        longitude: event.longitude,
                        start_time: event.start_time,
                        end_time: event.end_time,
                        doc: event.doc,
                        group: event.group,
                        tiebreak: event.tiebreak,
                    },
                )
            })
            .collect();
        keyed.sort_unstable_by(|(a_cell, a), (b_cell, b)| {
            a_cell
                .cmp(b_cell)
                .then(a.end_time.cmp(&b.end_time))
                .then(a.doc.cmp(&b.doc))
        });
        let mut cells = Vec::new();
        let mut counts = Vec::new();
        let mut groups: Vec<u32> = Vec::new();
        let mut first = 0;
        while first < keyed.len() {
            let key = keyed[first].0;
            let last = first + keyed[first..].partition_point(|(cell, _)| *cell == key);
            let run = &keyed[first..last];
            let (mut south, mut north, mut west, mut east) =
                (90.0f64, -90.0f64, 180.0f64, -180.0f64);
            let (mut earliest_start, mut latest_start) = (i64::MAX, i64::MIN);
            groups.clear();
            for (_, entry) in run {
                south = south.min(entry.latitude);
                north = north.max(entry.latitude);
                west = west.min(entry.longitude);
                east = east.max(entry.longitude);
                earliest_start = earliest_start.min(entry.start_time);
                latest_start = latest_start.max(entry.start_time);
                groups.push(entry.group);
            }
            let center = GeoPoint {
                latitude: (south + north) / 2.0,
                longitude: (west + east) / 2.0,
            };
            let reach_km = run
                .iter()
                .map(|(_, entry)| {
                    haversine_km(
                        center,
                        GeoPoint {
                            latitude: entry.latitude,
                            longitude: entry.longitude,
                        },
                    )
                })
                .fold(0.0, f64::max);
            let counts_from = counts.len() as u32;
            groups.sort_unstable();
            for same in groups.chunk_by(|a, b| a == b) {
                counts.push((same[0], same.len() as u32));
            }
            cells.push(Cell {
                row: key.0,
                column: key.1,
                first: first as u32,
                counts_from,
                center,
                reach_km,
                earliest_start,
                latest_start,
            });
            first = last;
        }
        cells.push(Cell {
            row: u32::MAX,
            column: u32::MAX,
            first: keyed.len() as u32,
            counts_from: counts.len() as u32,
            center: GeoPoint {
                latitude: 0.0,
                longitude: 0.0,
            },
            reach_km: 0.0,
            earliest_start: i64::MAX,
            latest_start: i64::MIN,
        });
        Self {
            entries: keyed.into_iter().map(|(_, entry)| entry).collect(),
            cells,
            counts,
            deleted: Mutex::new(None),
        }
    }

    fn entries_of(&self, cell: usize) -> std::ops::Range<usize> {
        self.cells[cell].first as usize..self.cells[cell + 1].first as usize
    }

    /// The cell's entries that have not ended at `now` (ended ones come first).
    fn live_entries_of(&self, cell: usize, now: i64) -> std::ops::Range<usize> {
        let range = self.entries_of(cell);
        let ended = self.entries[range.clone()].partition_point(|entry| entry.end_time <= now);
        range.start + ended..range.end
    }

    fn counts_of(&self, cell: usize) -> &[(u32, u32)] {
        &self.counts
            [self.cells[cell].counts_from as usize..self.cells[cell + 1].counts_from as usize]
    }

    /// The cells that may hold events within `circle`, whose bounding box is
    /// `(south, north, west, east)` (within ±90° and ±180°).
    fn cells_near(&self, circle: Circle, bounds: (f64, f64, f64, f64)) -> Vec<Near> {
        let (south, north, west, east) = bounds;
        let (first_row, first_column) = cell_of(south, west);
        let (last_row, last_column) = cell_of(north, east);
        let known = &self.cells[..self.cells.len() - 1];
        let mut near = Vec::new();
        for row in first_row..=last_row {
            let from = known.partition_point(|cell| (cell.row, cell.column) < (row, first_column));
            for (offset, cell) in known[from..].iter().enumerate() {
                if cell.row != row || cell.column > last_column {
                    break;
                }
                let center_km = haversine_km(circle.center, cell.center);
                if center_km - cell.reach_km > circle.radius_km + MARGIN_KM {
                    continue;
                }
                near.push(Near {
                    cell: from + offset,
                    inside: center_km + cell.reach_km + MARGIN_KM <= circle.radius_km,
                    nearest_km: (center_km - cell.reach_km - MARGIN_KM).max(0.0),
                });
            }
        }
        near
    }

    /// How many entries the cells near the circle hold: what walking them costs.
    pub(super) fn cost(&self, circle: Circle, bounds: (f64, f64, f64, f64)) -> u64 {
        self.cells_near(circle, bounds)
            .iter()
            .map(|near| self.entries_of(near.cell).len() as u64)
            .sum()
    }

    fn window(&self, cell: usize, predicate: &Filters<'_>) -> Window {
        let (after, before) = predicate.window();
        let cell = &self.cells[cell];
        let starts_after = |time: i64| after.is_none_or(|after| time >= after);
        let starts_before = |time: i64| before.is_none_or(|before| time < before);
        if starts_after(cell.earliest_start) && starts_before(cell.latest_start) {
            Window::All
        } else if !starts_after(cell.latest_start) || !starts_before(cell.earliest_start) {
            Window::None
        } else {
            Window::Some
        }
    }

    fn in_window(entry: &Entry, predicate: &Filters<'_>) -> bool {
        let (after, before) = predicate.window();
        after.is_none_or(|after| entry.start_time >= after)
            && before.is_none_or(|before| entry.start_time < before)
    }

    fn within(entry: &Entry, circle: Circle) -> Option<f64> {
        let km = haversine_km(
            circle.center,
            GeoPoint {
                latitude: entry.latitude,
                longitude: entry.longitude,
            },
        );
        (km <= circle.radius_km).then_some(km)
    }

    /// Counts the events within the circle that pass the predicate, per
    /// group of the segment's table (`per_group`), and returns the total.
    pub(super) fn count(
        &self,
        segment: &SegmentReader,
        around: &Around<'_>,
        per_group: &mut [u64],
    ) -> u64 {
        let Around {
            circle,
            bounds,
            ref predicate,
        } = *around;
        let now = predicate.now();
        let mut total = 0u64;
        // Cells counted whole, with where their live entries start.
        let mut whole: Vec<(usize, usize)> = Vec::new();
        for near in self.cells_near(circle, bounds) {
            let window = self.window(near.cell, predicate);
            if window == Window::None {
                continue;
            }
            let live = self.live_entries_of(near.cell, now);
            if near.inside && window == Window::All {
                for (group, count) in self.counts_of(near.cell) {
                    if predicate.wants_group(*group) {
                        per_group[*group as usize] += u64::from(*count);
                        total += u64::from(*count);
                    }
                }
                for entry in &self.entries[self.entries_of(near.cell).start..live.start] {
                    if predicate.wants_group(entry.group) {
                        per_group[entry.group as usize] -= 1;
                        total -= 1;
                    }
                }
                whole.push((near.cell, live.start));
                continue;
            }
            for entry in &self.entries[live] {
                if predicate.wants_group(entry.group)
                    && (window == Window::All || Self::in_window(entry, predicate))
                    && (near.inside || Self::within(entry, circle).is_some())
                    && !segment.is_deleted(entry.doc)
                {
                    per_group[entry.group as usize] += 1;
                    total += 1;
                }
            }
        }
        // Deleted events counted with a whole cell come off again (those
        // among its ended entries are off already).
        for position in self.deleted_positions(segment).iter() {
            let position = *position as usize;
            let cell = self
                .cells
                .partition_point(|cell| cell.first as usize <= position)
                - 1;
            let Ok(at) = whole.binary_search_by_key(&cell, |(cell, _)| *cell) else {
                continue;
            };
            let group = self.entries[position].group;
            if position >= whole[at].1 && predicate.wants_group(group) {
                per_group[group as usize] -= 1;
                total -= 1;
            }
        }
        total
    }

    /// Calls `visit` with every event within the circle that passes the
    /// predicate (deleted ones included), with its distance from the centre.
    fn for_each_match(&self, around: &Around<'_>, mut visit: impl FnMut(&Entry, f64)) {
        let Around {
            circle,
            bounds,
            ref predicate,
        } = *around;
        for near in self.cells_near(circle, bounds) {
            let window = self.window(near.cell, predicate);
            if window == Window::None {
                continue;
            }
            for entry in &self.entries[self.live_entries_of(near.cell, predicate.now())] {
                if !predicate.wants_group(entry.group)
                    || (window == Window::Some && !Self::in_window(entry, predicate))
                {
                    continue;
                }
                if let Some(km) = Self::within(entry, circle) {
                    visit(entry, km);
                }
            }
        }
    }

    /// The documents within the circle that pass the predicate (deleted ones
    /// included: the search skips them), for a search with words to walk.
    pub(super) fn matching_docs(&self, max_doc: DocId, around: &Around<'_>) -> BitSet {
        let mut docs = BitSet::with_max_value(max_doc);
        self.for_each_match(around, |entry, _| {
            docs.insert(entry.doc);
        });
        docs
    }

    /// The first `keep` events within the circle that pass the predicate, in
    /// the order `key` gives (their distance from the centre is passed to
    /// it), visiting every match.
    pub(super) fn top_by(
        &self,
        segment: &SegmentReader,
        segment_ord: u32,
        around: &Around<'_>,
        keep: usize,
        key: impl Fn(DocId, f64) -> SortKey,
    ) -> Vec<Candidate> {
        let mut heap = BinaryHeap::with_capacity(keep.min(4_096) + 1);
        if keep == 0 {
            return Vec::new();
        }
        self.for_each_match(around, |entry, km| {
            if segment.is_deleted(entry.doc) {
                return;
            }
            push(
                &mut heap,
                keep,
                Candidate {
                    key: key(entry.doc, km),
                    address: DocAddress::new(segment_ord, entry.doc),
                },
            );
        });
        heap.into_vec()
    }

    /// The `keep` events nearest to the circle's centre that are within it
    /// and pass the predicate, visiting cells nearest first and stopping
    /// once no cell left can hold a nearer one.
    pub(super) fn nearest(
        &self,
        segment: &SegmentReader,
        segment_ord: u32,
        around: &Around<'_>,
        keep: usize,
    ) -> Vec<Candidate> {
        if keep == 0 {
            return Vec::new();
        }
        let Around {
            circle,
            bounds,
            ref predicate,
        } = *around;
        let mut near = self.cells_near(circle, bounds);
        near.sort_unstable_by(|a, b| a.nearest_km.total_cmp(&b.nearest_km));
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(keep.min(4_096) + 1);
        for near in near {
            if heap.len() == keep
                && heap
                    .peek()
                    .is_some_and(|worst| near.nearest_km > worst.key.primary)
            {
                break;
            }
            let window = self.window(near.cell, predicate);
            if window == Window::None {
                continue;
            }
            for entry in &self.entries[self.live_entries_of(near.cell, predicate.now())] {
                if !predicate.wants_group(entry.group)
                    || (window == Window::Some && !Self::in_window(entry, predicate))
                {
                    continue;
                }
                let Some(km) = Self::within(entry, circle) else {
                    continue;
                };
                if heap.len() == keep && heap.peek().is_some_and(|worst| km > worst.key.primary) {
                    continue;
                }
                if segment.is_deleted(entry.doc) {
                    continue;
                }
                push(
                    &mut heap,
                    keep,
                    Candidate {
                        key: SortKey {
                            primary: km,
                            start_time: entry.start_time,
                            tiebreak: entry.tiebreak,
                        },
                        address: DocAddress::new(segment_ord, entry.doc),
                    },
                );
            }
        }
        heap.into_vec()
    }

    /// Positions of the segment's deleted documents, ascending.
    fn deleted_positions(&self, segment: &SegmentReader) -> Arc<Vec<u32>> {
        let num_deleted = segment.num_deleted_docs();
        if num_deleted == 0 {
            return Arc::new(Vec::new());
        }
        let mut cached = self
            .deleted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((count, positions)) = cached.as_ref()
            && *count == num_deleted
        {
            return positions.clone();
        }
        let positions: Arc<Vec<u32>> = Arc::new(
            self.entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| segment.is_deleted(entry.doc))
                .map(|(position, _)| position as u32)
                .collect(),
        );
        *cached = Some((num_deleted, positions.clone()));
        positions
    }
}

/// Keeps the best `keep` in a max-heap (the worst on top).
fn push(heap: &mut BinaryHeap<Candidate>, keep: usize, candidate: Candidate) {
    if heap.len() == keep && heap.peek().is_some_and(|worst| candidate >= *worst) {
        return;
    }
    heap.push(candidate);
    if heap.len() > keep {
        heap.pop();
    }
}
