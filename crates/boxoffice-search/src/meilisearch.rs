//! The Meilisearch engine, through `meilisearch-sdk`: what production runs.
//!
//! One index of events (primary key `id`) and a small companion index,
//! `<uid>_meta`, that holds the indexer's checkpoint, so wiping the events
//! index along with its companion makes the indexer rebuild it. Writes wait
//! for their Meilisearch task, so a returned `upsert` is searchable. Version
//! checks read the held versions first; several indexers writing at once
//! converge, because each one replays the same ordered feed to its end.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::documents::DocumentsQuery;
use meilisearch_sdk::errors::{Error as MeiliError, ErrorCode};
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::search::{MatchingStrategies, Selectors};
use meilisearch_sdk::settings::{
    MinWordSizeForTypos, PaginationSetting, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::Task;
use serde::{Deserialize, Serialize};

use crate::document::{GeoPoint, STATUS_PUBLISHED, SearchDocument, haversine_km};
use crate::query::{
    FacetCount, MAX_OFFSET, SearchHit, SearchQuery, SearchResults, SearchSort, sort_facets,
};
use crate::text::{HIGHLIGHT_END, HIGHLIGHT_START, strip_markers};
use crate::{Checkpoint, Result, SearchError, SearchIndex};

/// Largest page the index serves, on top of [`MAX_OFFSET`].
const MAX_LIMIT: usize = 200;
/// How long a write waits for its task.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);
const TASK_POLL: Duration = Duration::from_millis(10);
const CHECKPOINT_ID: &str = "outbox";

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

pub struct MeilisearchIndex {
    client: Client,
    events: Index,
    meta: Index,
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
        let meta = client.index(format!("{uid}_meta"));
        Ok(Self {
            client,
            events,
            meta,
            uid: uid.to_owned(),
        })
    }

    /// The uid of the events index.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Deletes both indexes (tests clean up with this).
    pub async fn drop_indexes(&self) -> Result<()> {
        for uid in [self.uid.clone(), format!("{}_meta", self.uid)] {
            let task = self
                .client
                .delete_index(&uid)
                .await
                .map_err(|error| classify("deleting an index", error))?;
            self.wait(task, "deleting an index", true).await?;
        }
        Ok(())
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
        .with_filterable_attributes([
            "id",
            "status",
            "start_time",
            "end_time",
            "city",
            "category",
            "performer_ids",
            "venue_id",
            "_geo",
        ])
        .with_sortable_attributes(["start_time", "id", "_geo"])
        .with_ranking_rules([
            "words",
            "typo",
            "proximity",
            "attribute",
            "sort",
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

/// Meilisearch's `_formatted` value of a field, as text.
fn formatted_text(
    formatted: Option<&serde_json::Map<String, serde_json::Value>>,
    field: &str,
) -> Option<String> {
    formatted?.get(field)?.as_str().map(str::to_owned)
}

fn formatted_list(
    formatted: Option<&serde_json::Map<String, serde_json::Value>>,
    field: &str,
) -> Option<Vec<String>> {
    formatted?
        .get(field)?
        .as_array()?
        .iter()
        .map(|value| value.as_str().map(str::to_owned))
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
        for uid in [self.uid.clone(), format!("{}_meta", self.uid)] {
            let task = self
                .client
                .create_index(&uid, Some("id"))
                .await
                .map_err(|error| classify("creating an index", error))?;
            self.wait(task, "creating an index", false).await?;
        }
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
        if !documents.is_empty() {
            // Within the batch, the highest version of each id wins.
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
            let fresh: Vec<MeiliDocument> = newest
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
                .collect();
            if !fresh.is_empty() {
                let task = self
                    .events
                    .add_or_replace(&fresh, Some("id"))
                    .await
                    .map_err(|error| classify("adding documents", error))?;
                self.wait(task, "adding documents", false).await?;
            }
        }
        if let Some(position) = checkpoint {
            let task = self
                .meta
                .add_or_replace(
                    &[CheckpointDocument {
                        id: CHECKPOINT_ID.to_owned(),
                        position,
                    }],
                    Some("id"),
                )
                .await
                .map_err(|error| classify("recording the checkpoint", error))?;
            self.wait(task, "recording the checkpoint", false).await?;
        }
        Ok(())
    }

    async fn delete(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let task = self
            .events
            .delete_documents(ids)
            .await
            .map_err(|error| classify("deleting documents", error))?;
        self.wait(task, "deleting documents", true).await
    }

    async fn clear(&self) -> Result<()> {
        for index in [&self.events, &self.meta] {
            let task = index
                .delete_all_documents()
                .await
                .map_err(|error| classify("clearing an index", error))?;
            self.wait(task, "clearing an index", true).await?;
        }
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        match self
            .meta
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
        };
        let highlight_start = HIGHLIGHT_START.to_string();
        let highlight_end = HIGHLIGHT_END.to_string();
        let facets = ["category", "city"];
        let mut search = self.events.search();
        search
            .with_query(query.text.trim())
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
                ..SearchFilters::default()
            },
            ..SearchQuery::default()
        };
        assert_eq!(
            MeilisearchIndex::filter(&query),
            "status = \"published\" AND end_time > 1700000000 AND city = \"Say \\\"hi\\\"\" \
             AND _geoRadius(51.5, -0.12, 2500)"
        );
    }
}
