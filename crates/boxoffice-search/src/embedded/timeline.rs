//! Browsing without text, in time that does not grow with the catalogue.
//!
//! A browse (no words, ordered by start time: the home page's "upcoming",
//! a city's or a category's listing) matches most of the index, and its
//! page, total and facets used to cost a visit to every match. A
//! [`Timeline`] is built once per segment (segments never change; only
//! their deletions grow): the segment's published events in the browse
//! order, each with its (category, city) group, and per block of that order
//! the count of every group and the earliest end time. A browse then finds
//! its time window by binary search, reads its page from the window's front
//! (stopping once it has enough), and takes its total and facets from the
//! block counts, visiting single events only in the blocks at the window's
//! edges, in blocks that hold events already ended, and for deleted events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::columnar::{Column, StrColumn};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, DocSet as _, SegmentReader, TERMINATED, Term};

use super::{Candidate, SortKey, keyword_analyzer, words};
use crate::document::STATUS_PUBLISHED;

/// Events per block: a browse visits at most two partial blocks one by one.
const BLOCK: usize = if cfg!(test) { 64 } else { 2_048 };

/// One (category, city) pair present in a segment.
struct Group {
    category: String,
    city: String,
    /// The city folded as the city filter compares it.
    city_key: String,
}

struct Block {
    /// Published events per group, sparse: `(group, count)`.
    counts: Vec<(u32, u32)>,
    /// The earliest end time in the block: if it is after `now`, no event
    /// of the block has ended.
    earliest_end: i64,
}

/// A segment's published events in browse order, with block counts.
pub(super) struct Timeline {
    /// Documents by (start time, tie-breaker), deleted ones included (they
    /// are skipped, or subtracted from block counts, at query time).
    order: Vec<DocId>,
    /// The group of each entry of `order`.
    group_of: Vec<u32>,
    groups: Vec<Group>,
    blocks: Vec<Block>,
    start_time: Column<i64>,
    end_time: Column<i64>,
    tiebreak: Column<u64>,
    /// Positions (in `order`) of deleted documents, for the deletion count
    /// they were computed at.
    deleted: Mutex<Option<(u32, Arc<Vec<u32>>)>>,
}

/// What a browse asks of every segment.
pub(super) struct Browse<'a> {
    pub(super) now: i64,
    pub(super) start_after: Option<i64>,
    pub(super) start_before: Option<i64>,
    /// Folded as [`super::folded_keyword`] folds it.
    pub(super) city_key: Option<&'a str>,
    /// Lowercase.
    pub(super) category: Option<&'a str>,
    /// How many of the first events to return.
    pub(super) keep: usize,
}

/// What one segment answers.
pub(super) struct BrowseFruit {
    pub(super) top: Vec<Candidate>,
    pub(super) total: u64,
    pub(super) categories: HashMap<String, u64>,
    pub(super) cities: HashMap<String, u64>,
}

fn str_value(column: Option<&StrColumn>, doc: DocId) -> String {
    let mut value = String::new();
    if let Some(column) = column
        && let Some(ord) = column.term_ords(doc).next()
        && !matches!(column.ord_to_str(ord, &mut value), Ok(true))
    {
        value.clear();
    }
    value
}

impl Timeline {
    pub(super) fn build(segment: &SegmentReader, status: Field) -> tantivy::Result<Self> {
        let fast = segment.fast_fields();
        let start_time: Column<i64> = fast.i64("start_time")?;
        let end_time: Column<i64> = fast.i64("end_time")?;
        let tiebreak: Column<u64> = fast.u64("tiebreak")?;
        let categories = fast.str("category")?;
        let cities = fast.str("city_facet")?;

        let mut entries: Vec<(i64, u64, DocId)> = Vec::new();
        let postings = segment.inverted_index(status)?.read_postings(
            &Term::from_field_text(status, STATUS_PUBLISHED),
            IndexRecordOption::Basic,
        )?;
        if let Some(mut postings) = postings {
            entries.reserve(postings.doc_freq() as usize);
            let mut doc = postings.doc();
            while doc != TERMINATED {
                entries.push((
                    start_time.first(doc).unwrap_or(i64::MAX),
                    tiebreak.first(doc).unwrap_or(u64::MAX),
                    doc,
                ));
                doc = postings.advance();
            }
        }
        entries.sort_unstable();

        // Groups by the columns' own ordinals first (cheap), strings once per
        // distinct pair.
        let ord = |column: Option<&StrColumn>, doc: DocId| {
            column
                .and_then(|column| column.term_ords(doc).next())
                .unwrap_or(u64::MAX)
        };
        let mut group_by_ords: HashMap<(u64, u64), u32> = HashMap::new();
        let mut groups = Vec::new();
        let mut group_of = Vec::with_capacity(entries.len());
        let mut analyzer = keyword_analyzer();
        for (_, _, doc) in &entries {
            let ords = (ord(categories.as_ref(), *doc), ord(cities.as_ref(), *doc));
            let group = *group_by_ords.entry(ords).or_insert_with(|| {
                let city = str_value(cities.as_ref(), *doc);
                let city_key = words(&mut analyzer, &city)
                    .into_iter()
                    .next()
                    .map(|(word, _, _)| word)
                    .unwrap_or_default();
                groups.push(Group {
                    category: str_value(categories.as_ref(), *doc),
                    city,
                    city_key,
                });
                (groups.len() - 1) as u32
            });
            group_of.push(group);
        }

        let mut blocks = Vec::with_capacity(entries.len().div_ceil(BLOCK));
        let mut counts = vec![0u32; groups.len()];
        for (block_entries, block_groups) in entries.chunks(BLOCK).zip(group_of.chunks(BLOCK)) {
            let mut earliest_end = i64::MAX;
            for ((_, _, doc), group) in block_entries.iter().zip(block_groups) {
                counts[*group as usize] += 1;
                earliest_end = earliest_end.min(end_time.first(*doc).unwrap_or(i64::MIN));
            }
            let mut sparse = Vec::new();
            for (group, count) in counts.iter_mut().enumerate() {
                if *count > 0 {
                    sparse.push((group as u32, *count));
                    *count = 0;
                }
            }
            blocks.push(Block {
                counts: sparse,
                earliest_end,
            });
        }
        Ok(Self {
            order: entries.into_iter().map(|(_, _, doc)| doc).collect(),
            group_of,
            groups,
            blocks,
            start_time,
            end_time,
            tiebreak,
            deleted: Mutex::new(None),
        })
    }

    /// The first position whose start time is at least `time`.
    fn position_of(&self, time: i64) -> usize {
        self.order
            .partition_point(|doc| self.start_time.first(*doc).unwrap_or(i64::MAX) < time)
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
            self.order
                .iter()
                .enumerate()
                .filter(|(_, doc)| segment.is_deleted(**doc))
                .map(|(position, _)| position as u32)
                .collect(),
        );
        *cached = Some((num_deleted, positions.clone()));
        positions
    }

    pub(super) fn browse(
        &self,
        segment: &SegmentReader,
        segment_ord: u32,
        browse: &Browse<'_>,
    ) -> BrowseFruit {
        let wanted: Vec<bool> = self
            .groups
            .iter()
            .map(|group| {
                browse
                    .category
                    .is_none_or(|category| group.category == category)
                    && browse.city_key.is_none_or(|city| group.city_key == city)
            })
            .collect();
        let from = browse.start_after.map_or(0, |time| self.position_of(time));
        let to = browse
            .start_before
            .map_or(self.order.len(), |time| self.position_of(time))
            .max(from);
        let alive = |doc: DocId| !segment.is_deleted(doc);
        let not_ended = |doc: DocId| self.end_time.first(doc).is_some_and(|end| end > browse.now);

        // Counts: whole blocks from their counts, the rest one by one.
        let mut per_group = vec![0u64; self.groups.len()];
        let mut total = 0u64;
        let whole = |block: usize| {
            let (first, last) = (block * BLOCK, ((block + 1) * BLOCK).min(self.order.len()));
            first >= from && last <= to && self.blocks[block].earliest_end > browse.now
        };
        let mut position = from;
        while position < to {
            let block = position / BLOCK;
            let block_end = ((block + 1) * BLOCK).min(to);
            if whole(block) {
                for (group, count) in &self.blocks[block].counts {
                    if wanted[*group as usize] {
                        per_group[*group as usize] += u64::from(*count);
                        total += u64::from(*count);
                    }
                }
            } else {
                for at in position..block_end {
                    let doc = self.order[at];
                    let group = self.group_of[at] as usize;
                    if wanted[group] && alive(doc) && not_ended(doc) {
                        per_group[group] += 1;
                        total += 1;
                    }
                }
            }
            position = block_end;
        }
        // Deleted events counted with their whole block come off again.
        let deleted = self.deleted_positions(segment);
        let first_deleted = deleted.partition_point(|at| (*at as usize) < from);
        for at in deleted[first_deleted..].iter().map(|at| *at as usize) {
            if at >= to {
                break;
            }
            let group = self.group_of[at] as usize;
            if wanted[group] && whole(at / BLOCK) {
                per_group[group] -= 1;
                total -= 1;
            }
        }

        // The page: the first wanted events of the window, in order.
        let mut top = Vec::with_capacity(browse.keep.min(total as usize));
        let mut position = from;
        while position < to && top.len() < browse.keep {
            let block = position / BLOCK;
            let block_end = ((block + 1) * BLOCK).min(to);
            let none_wanted = whole(block)
                && self.blocks[block]
                    .counts
                    .iter()
                    .all(|(group, _)| !wanted[*group as usize]);
            if !none_wanted {
                for at in position..block_end {
                    let doc = self.order[at];
                    if !wanted[self.group_of[at] as usize] || !alive(doc) || !not_ended(doc) {
                        continue;
                    }
                    top.push(Candidate {
                        key: SortKey {
                            primary: 0.0,
                            start_time: self.start_time.first(doc).unwrap_or(i64::MAX),
                            tiebreak: self.tiebreak.first(doc).unwrap_or(u64::MAX),
                        },
                        address: DocAddress::new(segment_ord, doc),
                    });
                    if top.len() == browse.keep {
                        break;
                    }
                }
            }
            position = block_end;
        }

        let mut categories = HashMap::new();
        let mut cities = HashMap::new();
        for (group, count) in per_group.into_iter().enumerate() {
            if count == 0 {
                continue;
            }
            let group = &self.groups[group];
            if !group.category.is_empty() {
                *categories.entry(group.category.clone()).or_default() += count;
            }
            if !group.city.is_empty() {
                *cities.entry(group.city.clone()).or_default() += count;
            }
        }
        BrowseFruit {
            top,
            total,
            categories,
            cities,
        }
    }
}
