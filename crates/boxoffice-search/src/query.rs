//! What a search asks and what it answers, engine-neutral.

use crate::document::{GeoPoint, SearchDocument};
pub use crate::text::MAX_QUERY_WORDS;
use crate::text::{HIGHLIGHT_END, HIGHLIGHT_START, query_words};

/// Deepest position a page may start at (Meilisearch's default
/// `maxTotalHits`); beyond it, narrow the query.
pub const MAX_OFFSET: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoRadius {
    pub center: GeoPoint,
    pub radius_km: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchSort {
    /// Best match first; for an empty query this is by start time.
    #[default]
    Relevance,
    /// Soonest first.
    StartTime,
    /// Nearest to [`SearchQuery::point`] first.
    Distance,
    /// Highest [`SearchDocument::rating`] first (unrated last), then soonest.
    Rating,
}

/// Filters; all given ones must hold. Text values compare ignoring case.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchFilters {
    /// Unix seconds: only events published and not ended at this instant.
    pub now: i64,
    /// Starting at or after (unix seconds).
    pub start_after: Option<i64>,
    /// Starting before (unix seconds).
    pub start_before: Option<i64>,
    pub city: Option<String>,
    /// Lowercase, e.g. `concert`.
    pub category: Option<String>,
    pub performer_id: Option<String>,
    pub venue_id: Option<String>,
    pub within: Option<GeoRadius>,
    /// Only events with a [`SearchDocument::rating`] at least this (so no
    /// unrated one).
    pub min_rating: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// Free text; empty lists events.
    pub text: String,
    pub filters: SearchFilters,
    /// The point distances are measured from (for sorting and `distance_km`).
    pub point: Option<GeoPoint>,
    pub sort: SearchSort,
    pub offset: usize,
    pub limit: usize,
    /// Whether to count categories and cities over all matches.
    pub facets: bool,
}

impl SearchQuery {
    /// The words searched for, read the same way by every engine (see
    /// [`query_words`]).
    pub fn words(&self) -> Vec<&str> {
        query_words(&self.text)
    }

    /// The order actually used: relevance means nothing without words, and
    /// distance nothing without a point; both then fall back to start time.
    pub fn effective_sort(&self) -> SearchSort {
        match self.sort {
            SearchSort::Relevance if self.words().is_empty() => SearchSort::StartTime,
            SearchSort::Distance if self.point.is_none() => SearchSort::StartTime,
            sort => sort,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub document: SearchDocument,
    /// The title with matched words between [`HIGHLIGHT_START`] and
    /// [`HIGHLIGHT_END`]; see [`highlight_to_html`].
    pub highlighted_title: String,
    /// Performer names, marked up the same way.
    pub highlighted_performers: Vec<String>,
    /// From [`SearchQuery::point`], when there is one and the event has a location.
    pub distance_km: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub estimated_total_hits: u64,
    /// Most frequent first, then by value.
    pub category_facets: Vec<FacetCount>,
    pub city_facets: Vec<FacetCount>,
}

/// Sorts facet counts the one way both engines answer: most frequent first,
/// ties by value.
pub(crate) fn sort_facets(mut facets: Vec<FacetCount>) -> Vec<FacetCount> {
    facets.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    facets
}

/// Turns a marked-up highlight into HTML: the text is escaped and matches are
/// wrapped in `<em></em>`, so a client may render it as is.
pub fn highlight_to_html(marked: &str) -> String {
    let mut html = String::with_capacity(marked.len() + 16);
    for c in marked.chars() {
        match c {
            HIGHLIGHT_START => html.push_str("<em>"),
            HIGHLIGHT_END => html.push_str("</em>"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '&' => html.push_str("&amp;"),
            '"' => html.push_str("&quot;"),
            c => html.push(c),
        }
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_become_escaped_html() {
        let marked = format!("{HIGHLIGHT_START}Rock{HIGHLIGHT_END} & <Roll>");
        assert_eq!(
            highlight_to_html(&marked),
            "<em>Rock</em> &amp; &lt;Roll&gt;"
        );
    }

    #[test]
    fn sorts_fall_back_when_they_mean_nothing() {
        let query = SearchQuery::default();
        assert_eq!(query.effective_sort(), SearchSort::StartTime);
        let query = SearchQuery {
            text: " \"-\" ".into(),
            ..SearchQuery::default()
        };
        assert_eq!(
            query.effective_sort(),
            SearchSort::StartTime,
            "punctuation alone is no words"
        );
        let query = SearchQuery {
            text: "rock".into(),
            sort: SearchSort::Distance,
            ..SearchQuery::default()
        };
        assert_eq!(query.effective_sort(), SearchSort::StartTime);
    }
}
