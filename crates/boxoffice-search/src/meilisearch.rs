//! The Meilisearch engine, through `meilisearch-sdk`: what production runs.
//!
//! One index of events (primary key `id`). The indexer's checkpoint is one
//! more document in that index under a reserved id, written in the same
//! `add_or_replace` task as the batch it follows: Meilisearch applies a task
//! whole or not at all, so the checkpoint never runs ahead of the documents,
//! each batch costs one task (a task is the slow part of a write: it commits
//! to disk and recomputes the word and prefix databases), and wiping the index
//! wipes the checkpoint with it, so the indexer rebuilds. The checkpoint
//! document has no status, so the published-only filter every search carries
//! keeps it out of hits, totals and facets.
//!
//! Writes wait for their Meilisearch task, so a returned `upsert` is
//! searchable. Version checks read the held versions first; several indexers
//! writing at once converge, because each one replays the same ordered feed
//! to its end.
//!
//! Reading the text the way the embedded engine does: the query sent is the
//! shared words of [`crate::text::query_words`] joined by spaces (no quotes or
//! `-` reach Meilisearch's phrase and negative syntax), highlights are widened
//! to whole words ([`crate::text::whole_word_highlights`]: Meilisearch marks
//! only the typed part of a prefix), and `sort` is the first ranking rule, so
//! an explicit order orders every match while a search without one keeps the
//! text rules' relevance order.
//!
//! # Running Meilisearch for boxoffice
//!
//! - `--max-indexing-memory` (`MEILI_MAX_INDEXING_MEMORY`): set it, below
//!   the memory limit of Meilisearch's container. Left alone, Meilisearch
//!   takes two thirds of the RAM it detects, which inside a container may be
//!   the host's, and is killed mid-batch.
//! - `--max-indexing-threads` (`MEILI_MAX_INDEXING_THREADS`): at most half
//!   the cores (the default), so searches stay fast while a batch indexes.
//! - Storage: local SSD. Every task ends in a disk sync, and the indexer
//!   waits for each batch's task, so sync latency is freshness latency.
//! - Index setting `facetSearch: false` (Meilisearch 1.12 and later;
//!   `PUT /indexes/<uid>/settings/facet-search` with body `false`): boxoffice
//!   never calls `/facet-search`, and without it every write does less.
//!   [`SearchIndex::apply_settings`] only sends the settings it names, so the
//!   operator's choice stays.
//! - Meilisearch 1.14 or later: the filterable attributes are sent with
//!   their features (equality only for ids, status, city and category,
//!   comparison for the two times and the rating, no facet search), so it
//!   builds no number levels or facet-search dictionaries that no search
//!   reads.
//! - Leave `prefixSearch` (`indexingTime`: the last query word is a prefix)
//!   and `proximityPrecision` (`byWord`: relevance weighs word proximity) at
//!   their defaults; both are part of the matching rules.
//! - `--env production` with a master key; give boxoffice
//!   (`BOXOFFICE_MEILISEARCH_KEY`) a key limited to its index.
//! - No snapshots or dumps needed: `boxoffice reindex` rebuilds the index from
//!   PostgreSQL, and an index that lost its data lost its checkpoint with it,
//!   so the indexer rebuilds it on its own.
//!
//! Upgrading from a version that kept the checkpoint in a companion index
//! `<uid>_meta`: that index is no longer read. The first start finds no
//! checkpoint in the events index and rebuilds it from PostgreSQL, which
//! writes only the checkpoint when the documents are already there. Delete
//! `<uid>_meta` once no process of the old version runs.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::documents::DocumentsQuery;
use meilisearch_sdk::errors::{Error as MeiliError, ErrorCode};
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::search::{MatchingStrategies, Selectors};
use meilisearch_sdk::settings::{
    FilterFeatureModes, FilterFeatures, FilterableAttribute, FilterableAttributesSettings,
    MinWordSizeForTypos, PaginationSetting, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::Task;
use serde::{Deserialize, Serialize};

use crate::document::{GeoPoint, STATUS_PUBLISHED, SearchDocument, haversine_km};
use crate::query::{
    FacetCount, MAX_OFFSET, SearchHit, SearchQuery, SearchResults, SearchSort, sort_facets,
};
use crate::text::{HIGHLIGHT_END, HIGHLIGHT_START, strip_markers, whole_word_highlights};
use crate::{Checkpoint, Result, SearchError, SearchIndex};

/// Largest page the index serves, on top of [`MAX_OFFSET`].
const MAX_LIMIT: usize = 200;
/// How long a write waits for its task.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);
const TASK_POLL: Duration = Duration::from_millis(10);
/// The id of the checkpoint document. Event ids are UUIDs (hex digits and
/// dashes), so none can be this; documents that try are refused.
const CHECKPOINT_ID: &str = "boxoffice_checkpoint";

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct MeiliGeo {
    lat: f64,
    lng: f64,
}

/// The document as Meilisearch stores it: ours, plus `_geo` for its geo
/// filters and sorting.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MeiliDocument {
    #[serde(flatten)]
    document: SearchDocument,
    #[serde(rename = "_geo", default, skip_serializing_if = "Option::is_none")]
    geo: Option<MeiliGeo>,
}

#[derive(Debug, Deserialize)]
struct HeldVersion {
    id: String,
    version: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointDocument {
    id: String,
    position: Checkpoint,
}

/// One document of a write: an event or the checkpoint, sent together.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Entry {
    Event(Box<MeiliDocument>),
    Checkpoint(CheckpointDocument),
}

pub struct MeilisearchIndex {
    client: Client,
    events: Index,
    uid: String,
}

/// Sorts the engine's errors into "try again later" and "broken"; the
/// detail goes to logs only.
fn classify(context: &'static str, error: MeiliError) -> SearchError {
    match &error {
        MeiliError::HttpError(_)
        | MeiliError::Timeout
        | MeiliError::MeilisearchCommunication(_) => {
            SearchError::Unavailable(anyhow!(error).context(context))
        }
        _ => SearchError::Internal(anyhow!(error).context(context)),
    }
}

/// A filter value inside double quotes.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

impl MeilisearchIndex {
    pub fn new(url: &str, key: Option<&str>, uid: &str) -> Result<Self> {
        let client = Client::new(url, key)
            .map_err(|error| classify("creating the meilisearch client", error))?;
        let events = client.index(uid);
        Ok(Self {
            client,
            events,
            uid: uid.to_owned(),
        })
    }

    /// The uid of the events index.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Deletes the index, checkpoint included (tests clean up with this).
    pub async fn drop_indexes(&self) -> Result<()> {
        let task = self
            .client
            .delete_index(&self.uid)
            .await
            .map_err(|error| classify("deleting an index", error))?;
        self.wait(task, "deleting an index", true).await
    }

    async fn wait(
        &self,
        task: TaskInfo,
        context: &'static str,
        tolerate_missing: bool,
    ) -> Result<()> {
        let task = task
            .wait_for_completion(&self.client, Some(TASK_POLL), Some(TASK_TIMEOUT))
            .await
            .map_err(|error| classify(context, error))?;
        if let Task::Failed { content } = task {
            let error = content.error;
            let harmless = matches!(error.error_code, ErrorCode::IndexAlreadyExists)
                || (tolerate_missing && matches!(error.error_code, ErrorCode::IndexNotFound));
            if !harmless {
                return Err(SearchError::Internal(anyhow!("{context}: {error}")));
            }
        }
        Ok(())
    }

    async fn held_versions(&self, ids: &[&str]) -> Result<HashMap<String, i64>> {
        let mut held = HashMap::new();
        for chunk in ids.chunks(500) {
            let filter = format!(
                "id IN [{}]",
                chunk
                    .iter()
                    .map(|id| quoted(id))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut query = DocumentsQuery::new(&self.events);
            query
                .with_filter(&filter)
                .with_fields(["id", "version"])
                .with_limit(chunk.len());
            match query.execute::<HeldVersion>().await {
                Ok(found) => {
                    held.extend(found.results.into_iter().map(|doc| (doc.id, doc.version)))
                }
                Err(MeiliError::Meilisearch(error))
                    if matches!(error.error_code, ErrorCode::IndexNotFound) => {}
                Err(error) => return Err(classify("reading held versions", error)),
            }
        }
        Ok(held)
    }

    /// The documents worth writing: the newest version of each id in the
    /// batch, unless the index already holds that version or a later one.
    async fn fresh(&self, documents: Vec<SearchDocument>) -> Result<Vec<MeiliDocument>> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let mut newest: HashMap<String, SearchDocument> = HashMap::new();
        for document in documents {
            match newest.get(&document.id) {
                Some(held) if held.version >= document.version => {}
                _ => {
                    newest.insert(document.id.clone(), document);
                }
            }
        }
        let ids: Vec<&str> = newest.keys().map(String::as_str).collect();
        let held = self.held_versions(&ids).await?;
        Ok(newest
            .into_values()
            .filter(|document| {
                held.get(&document.id)
                    .is_none_or(|version| *version < document.version)
            })
            .map(|mut document| {
                document.title = strip_markers(&document.title);
                document.performers = document
                    .performers
                    .iter()
                    .map(|name| strip_markers(name))
                    .collect();
                let geo = document.location.map(|point| MeiliGeo {
                    lat: point.latitude,
                    lng: point.longitude,
                });
                MeiliDocument { document, geo }
            })
            .collect())
    }

    /// Every search's filter. Its first part also keeps the checkpoint
    /// document out: it has no status.
    fn filter(query: &SearchQuery) -> String {
        let filters = &query.filters;
        let mut parts = vec![
            format!("status = {}", quoted(STATUS_PUBLISHED)),
            format!("end_time > {}", filters.now),
        ];
        if let Some(after) = filters.start_after {
            parts.push(format!("start_time >= {after}"));
        }
        if let Some(before) = filters.start_before {
            parts.push(format!("start_time < {before}"));
        }
        if let Some(city) = &filters.city {
            parts.push(format!("city = {}", quoted(city.trim())));
        }
        if let Some(category) = &filters.category {
            parts.push(format!("category = {}", quoted(&category.to_lowercase())));
        }
        if let Some(performer_id) = &filters.performer_id {
            parts.push(format!("performer_ids = {}", quoted(performer_id)));
        }
        if let Some(venue_id) = &filters.venue_id {
            parts.push(format!("venue_id = {}", quoted(venue_id)));
        }
        if let Some(min_rating) = filters.min_rating {
            parts.push(format!("rating >= {min_rating}"));
        }
        if let Some(radius) = filters.within {
            parts.push(format!(
                "_geoRadius({}, {}, {})",
                radius.center.latitude,
                radius.center.longitude,
                (radius.radius_km * 1_000.0).round() as i64
            ));
        }
        parts.join(" AND ")
    }
}

/// The index settings. `sort` comes first: a search that asks for an order
/// (start time, distance, rating) gets every match in that order, whatever the text
/// rules would say; a search without one skips the rule (Meilisearch ignores
/// `sort` when the request has no `sort` parameter), so relevance orders it
/// by the text rules, then by start time.
fn settings() -> Settings {
    Settings::new()
        .with_searchable_attributes([
            "title",
            "performers",
            "venue_name",
            "city",
            "country_code",
            "category",
            "description",
        ])
        // Only the filter features the searches use: equality for ids,
        // status, city and category (the facets need no more), comparison
        // for the two times and the rating, and no facet search (never
        // asked for), so Meilisearch builds no number levels or
        // facet-search dictionaries it would never read.
        .with_filterable_attributes_advanced([
            filterable(
                &[
                    "id",
                    "status",
                    "city",
                    "category",
                    "performer_ids",
                    "venue_id",
                ],
                false,
            ),
            filterable(&["start_time", "end_time", "rating"], true),
            FilterableAttribute::Attribute("_geo".to_owned()),
        ])
        .with_sortable_attributes(["start_time", "id", "_geo", "rating"])
        .with_ranking_rules([
            "sort",
            "words",
            "typo",
            "proximity",
            "attribute",
            "exactness",
            "start_time:asc",
        ])
        .with_typo_tolerance(TypoToleranceSettings {
            enabled: Some(true),
            disable_on_attributes: Some(Vec::new()),
            disable_on_words: Some(Vec::new()),
            min_word_size_for_typos: Some(MinWordSizeForTypos {
                one_typo: Some(5),
                two_typos: Some(9),
            }),
            disable_on_numbers: None,
        })
        .with_pagination(PaginationSetting {
            max_total_hits: MAX_OFFSET + MAX_LIMIT,
        })
}

/// Filterable attributes that compare for equality (and, if `comparison`,
/// order), without facet search.
fn filterable(attributes: &[&str], comparison: bool) -> FilterableAttribute {
    FilterableAttribute::Settings(FilterableAttributesSettings {
        attribute_patterns: attributes.iter().map(|name| (*name).to_owned()).collect(),
        features: FilterFeatures {
            facet_search: false,
            filter: FilterFeatureModes {
                equality: true,
                comparison,
            },
        },
    })
}

/// Meilisearch's `_formatted` value of a field, as text highlighted by
/// whole words.
fn formatted_text(
    formatted: Option<&serde_json::Map<String, serde_json::Value>>,
    field: &str,
) -> Option<String> {
    formatted?.get(field)?.as_str().map(whole_word_highlights)
}

fn formatted_list(
    formatted: Option<&serde_json::Map<String, serde_json::Value>>,
    field: &str,
) -> Option<Vec<String>> {
    formatted?
        .get(field)?
        .as_array()?
        .iter()
        .map(|value| value.as_str().map(whole_word_highlights))
        .collect()
}

fn facet_counts(
    distribution: Option<&HashMap<String, HashMap<String, usize>>>,
    name: &str,
) -> Vec<FacetCount> {
    let counts = distribution
        .and_then(|facets| facets.get(name))
        .map(|values| {
            values
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(value, count)| FacetCount {
                    value: value.clone(),
                    count: *count as u64,
                })
                .collect()
        })
        .unwrap_or_default();
    sort_facets(counts)
}

#[async_trait::async_trait]
impl SearchIndex for MeilisearchIndex {
    fn engine(&self) -> &'static str {
        "meilisearch"
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn apply_settings(&self) -> Result<()> {
        let task = self
            .client
            .create_index(&self.uid, Some("id"))
            .await
            .map_err(|error| classify("creating an index", error))?;
        self.wait(task, "creating an index", false).await?;
        let task = self
            .events
            .set_settings(&settings())
            .await
            .map_err(|error| classify("applying index settings", error))?;
        self.wait(task, "applying index settings", false).await
    }

    async fn upsert(
        &self,
        documents: Vec<SearchDocument>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<()> {
        if documents
            .iter()
            .any(|document| document.id == CHECKPOINT_ID)
        {
            return Err(SearchError::Internal(anyhow!(
                "the document id {CHECKPOINT_ID} is reserved for the checkpoint"
            )));
        }
        let mut entries: Vec<Entry> = self
            .fresh(documents)
            .await?
            .into_iter()
            .map(|document| Entry::Event(Box::new(document)))
            .collect();
        if let Some(position) = checkpoint {
            // In the same task as the documents: one write, and the
            // checkpoint lands with them or not at all.
            entries.push(Entry::Checkpoint(CheckpointDocument {
                id: CHECKPOINT_ID.to_owned(),
                position,
            }));
        }
        if entries.is_empty() {
            return Ok(());
        }
        let task = self
            .events
            .add_or_replace(&entries, Some("id"))
            .await
            .map_err(|error| classify("adding documents", error))?;
        self.wait(task, "adding documents", false).await
    }

    async fn delete(&self, ids: &[String]) -> Result<()> {
        let ids: Vec<&String> = ids.iter().filter(|id| *id != CHECKPOINT_ID).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let task = self
            .events
            .delete_documents(&ids)
            .await
            .map_err(|error| classify("deleting documents", error))?;
        self.wait(task, "deleting documents", true).await
    }

    async fn clear(&self) -> Result<()> {
        let task = self
            .events
            .delete_all_documents()
            .await
            .map_err(|error| classify("clearing the index", error))?;
        self.wait(task, "clearing the index", true).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        match self
            .events
            .get_document::<CheckpointDocument>(CHECKPOINT_ID)
            .await
        {
            Ok(document) => Ok(Some(document.position)),
            Err(MeiliError::Meilisearch(error))
                if matches!(
                    error.error_code,
                    ErrorCode::DocumentNotFound | ErrorCode::IndexNotFound
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(classify("reading the checkpoint", error)),
        }
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        let filter = Self::filter(query);
        let distance_sort = query
            .point
            .map(|point| format!("_geoPoint({}, {}):asc", point.latitude, point.longitude));
        let sort: Vec<&str> = match query.effective_sort() {
            SearchSort::Relevance => Vec::new(),
            SearchSort::StartTime => vec!["start_time:asc", "id:asc"],
            SearchSort::Distance => match &distance_sort {
                Some(by_distance) => vec![by_distance.as_str(), "start_time:asc", "id:asc"],
                None => vec!["start_time:asc", "id:asc"],
            },
            SearchSort::Rating => vec!["rating:desc", "start_time:asc", "id:asc"],
        };
        let highlight_start = HIGHLIGHT_START.to_string();
        let highlight_end = HIGHLIGHT_END.to_string();
        let facets = ["category", "city"];
        let text = query.words().join(" ");
        let mut search = self.events.search();
        search
            .with_query(&text)
            .with_filter(&filter)
            .with_offset(query.offset.min(MAX_OFFSET))
            .with_limit(query.limit.min(MAX_LIMIT))
            .with_matching_strategy(MatchingStrategies::ALL)
            .with_attributes_to_highlight(Selectors::Some(&["title", "performers"]))
            .with_highlight_pre_tag(&highlight_start)
            .with_highlight_post_tag(&highlight_end);
        if !sort.is_empty() {
            search.with_sort(&sort);
        }
        if query.facets {
            search.with_facets(Selectors::Some(&facets));
        }
        let results = search
            .execute::<MeiliDocument>()
            .await
            .map_err(|error| classify("searching", error))?;
        let hits = results
            .hits
            .into_iter()
            .map(|hit| {
                let formatted = hit.formatted_result.as_ref();
                let document = hit.result.document;
                let highlighted_title =
                    formatted_text(formatted, "title").unwrap_or_else(|| document.title.clone());
                let highlighted_performers = formatted_list(formatted, "performers")
                    .unwrap_or_else(|| document.performers.clone());
                let location = document.location.or(hit.result.geo.map(|geo| GeoPoint {
                    latitude: geo.lat,
                    longitude: geo.lng,
                }));
                let distance_km = query
                    .point
                    .zip(location)
                    .map(|(point, at)| haversine_km(point, at));
                SearchHit {
                    document,
                    highlighted_title,
                    highlighted_performers,
                    distance_km,
                }
            })
            .collect();
        Ok(SearchResults {
            hits,
            estimated_total_hits: results
                .estimated_total_hits
                .or(results.total_hits)
                .unwrap_or(0) as u64,
            category_facets: facet_counts(results.facet_distribution.as_ref(), "category"),
            city_facets: facet_counts(results.facet_distribution.as_ref(), "city"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{GeoRadius, SearchFilters};

    #[test]
    fn filters_quote_values_and_always_hide_what_buyers_must_not_see() {
        let query = SearchQuery {
            filters: SearchFilters {
                now: 1_700_000_000,
                city: Some("Say \"hi\"".into()),
                within: Some(GeoRadius {
                    center: GeoPoint {
                        latitude: 51.5,
                        longitude: -0.12,
                    },
                    radius_km: 2.5,
                }),
                min_rating: Some(4.5),
                ..SearchFilters::default()
            },
            ..SearchQuery::default()
        };
        assert_eq!(
            MeilisearchIndex::filter(&query),
            "status = \"published\" AND end_time > 1700000000 AND city = \"Say \\\"hi\\\"\" \
             AND rating >= 4.5 AND _geoRadius(51.5, -0.12, 2500)"
        );
    }

    #[test]
    fn only_the_times_and_the_rating_filter_by_comparison_and_nothing_by_facet_search() {
        let settings = serde_json::to_value(settings()).expect("settings as json");
        let filterable = settings["filterableAttributes"]
            .as_array()
            .expect("a list of filterable attributes");
        let mut comparing = Vec::new();
        let mut named = Vec::new();
        for entry in filterable {
            match entry.as_str() {
                Some(name) => named.push(name.to_owned()),
                None => {
                    assert_eq!(entry["features"]["facetSearch"], false, "{entry}");
                    assert_eq!(entry["features"]["filter"]["equality"], true, "{entry}");
                    for pattern in entry["attributePatterns"].as_array().into_iter().flatten() {
                        let pattern = pattern.as_str().unwrap_or_default().to_owned();
                        if entry["features"]["filter"]["comparison"] == true {
                            comparing.push(pattern.clone());
                        }
                        named.push(pattern);
                    }
                }
            }
        }
        named.sort();
        assert_eq!(
            named,
            [
                "_geo",
                "category",
                "city",
                "end_time",
                "id",
                "performer_ids",
                "rating",
                "start_time",
                "status",
                "venue_id"
            ]
        );
        assert_eq!(comparing, ["start_time", "end_time", "rating"]);
    }

    #[test]
    fn sort_is_the_first_ranking_rule() {
        let settings = serde_json::to_value(settings()).expect("settings as json");
        assert_eq!(settings["rankingRules"][0], "sort");
        assert_eq!(
            settings["rankingRules"]
                .as_array()
                .map(|rules| rules.iter().filter(|rule| *rule == "sort").count()),
            Some(1)
        );
    }

    #[test]
    fn the_checkpoint_is_a_document_without_status_beside_the_events() {
        let document = SearchDocument {
            id: "00000000-0000-4000-8000-000000000001".into(),
            version: 3,
            status: STATUS_PUBLISHED.into(),
            title: "Hamlet".into(),
            description: String::new(),
            category: "theater".into(),
            performers: Vec::new(),
            performer_ids: Vec::new(),
            venue_id: "v".into(),
            venue_name: "Royal Hall".into(),
            city: "London".into(),
            country_code: "GB".into(),
            start_time: 10,
            end_time: 20,
            location: Some(GeoPoint {
                latitude: 51.5,
                longitude: -0.12,
            }),
            price_min_minor: None,
            price_max_minor: None,
            currency_code: "GBP".into(),
            rating: 4.5,
            rating_count: 2,
            payload: "p".into(),
        };
        let batch = [
            Entry::Event(Box::new(MeiliDocument {
                document,
                geo: Some(MeiliGeo {
                    lat: 51.5,
                    lng: -0.12,
                }),
            })),
            Entry::Checkpoint(CheckpointDocument {
                id: CHECKPOINT_ID.to_owned(),
                position: 42,
            }),
        ];
        let json = serde_json::to_value(batch).expect("batch as json");
        assert_eq!(json[0]["id"], "00000000-0000-4000-8000-000000000001");
        assert_eq!(json[0]["status"], STATUS_PUBLISHED);
        assert_eq!(json[0]["_geo"]["lat"], 51.5);
        assert_eq!(
            json[1],
            serde_json::json!({ "id": CHECKPOINT_ID, "position": 42_i64 }),
            "no status and no end time: no search filter lets it through"
        );
        assert!(
            !CHECKPOINT_ID
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-'),
            "no UUID can take the checkpoint's id"
        );
    }

    #[test]
    fn formatted_fields_come_back_highlighted_by_whole_words() {
        let formatted = serde_json::json!({
            "title": format!("North {HIGHLIGHT_START}Lon{HIGHLIGHT_END}don Derby"),
            "performers": [format!("{HIGHLIGHT_START}Metal{HIGHLIGHT_END}lica"), "Arsenal"],
        });
        let formatted = formatted.as_object();
        assert_eq!(
            formatted_text(formatted, "title").map(|title| crate::highlight_to_html(&title)),
            Some("North <em>London</em> Derby".to_owned())
        );
        assert_eq!(
            formatted_list(formatted, "performers").map(|names| names
                .iter()
                .map(|name| crate::highlight_to_html(name))
                .collect::<Vec<_>>()),
            Some(vec!["<em>Metallica</em>".to_owned(), "Arsenal".to_owned()])
        );
    }
}
