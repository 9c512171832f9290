//! Event search behind one interface, [`SearchIndex`], with two engines:
//! [`meilisearch::MeilisearchIndex`] (what production runs) and
//! [`embedded::EmbeddedIndex`] (tantivy, in process: the zero-setup default
//! for `boxoffice up`, single-node deployments and tests).
//!
//! The crate knows nothing about the catalog: it indexes [`SearchDocument`]s
//! and answers [`SearchQuery`]s. Both engines follow the same rules, checked
//! by one conformance suite: every query word must match (with typos by word
//! length, the last word also as a prefix, accents and case folded), buyers
//! only ever see published events that have not ended, and ordering is total
//! so that paging is stable.

pub mod config;
mod document;
pub mod embedded;
pub mod meilisearch;
pub mod query;
mod text;

use std::sync::Arc;

pub use config::{SearchConfig, SearchEngineConfig};
pub use document::{GeoPoint, SearchDocument, haversine_km};
pub use query::{
    FacetCount, GeoRadius, SearchFilters, SearchHit, SearchQuery, SearchResults, SearchSort,
    highlight_to_html,
};

/// What went wrong inside an engine. The message is for logs only: callers
/// get a plain "search unavailable" and never the engine's own words.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The engine cannot be reached or refused for now; worth a retry.
    #[error("search engine unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug, a broken index, a refused document.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, SearchError>;

/// Where the indexer stands in the change feed it tails. Stored by the engine
/// beside the documents (atomically with them where the engine allows), so an
/// index that loses its data also loses its checkpoint and gets rebuilt.
pub type Checkpoint = i64;

/// One index of events.
///
/// Writes are idempotent: [`SearchIndex::upsert`] keeps, per document id, the
/// highest version it was ever given, so replaying a batch (at-least-once
/// delivery) or an older version changes nothing.
#[async_trait::async_trait]
pub trait SearchIndex: Send + Sync {
    /// A short name for logs and reports ("embedded", "meilisearch").
    fn engine(&self) -> &'static str;

    /// Whether several processes share this index (so one indexer is enough).
    fn is_shared(&self) -> bool;

    /// Creates the index if needed and applies searchable, filterable and
    /// sortable attributes, typo tolerance and ranking. Idempotent.
    async fn apply_settings(&self) -> Result<()>;

    /// Inserts or replaces documents unless the index already holds the same
    /// id at a version at least as high; then, if given, records `checkpoint`.
    async fn upsert(
        &self,
        documents: Vec<SearchDocument>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<()>;

    /// Removes documents by id (absent ids are fine).
    async fn delete(&self, ids: &[String]) -> Result<()>;

    /// Removes every document and the checkpoint.
    async fn clear(&self) -> Result<()>;

    /// The last checkpoint recorded, or `None` for an index never filled.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>>;

    /// Runs a query. Only documents with status `published` whose end time is
    /// after `query.filters.now` are ever returned.
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults>;
}

/// Opens the engine the configuration names.
pub async fn open(config: &SearchConfig) -> Result<Arc<dyn SearchIndex>> {
    match &config.engine {
        SearchEngineConfig::Embedded { dir } => {
            let index = match dir {
                Some(dir) => embedded::EmbeddedIndex::open_in_dir(dir)?,
                None => embedded::EmbeddedIndex::in_memory()?,
            };
            Ok(Arc::new(index))
        }
        SearchEngineConfig::Meilisearch {
            url,
            key,
            index_uid,
        } => Ok(Arc::new(meilisearch::MeilisearchIndex::new(
            url,
            key.as_ref().map(|key| key.expose()),
            index_uid,
        )?)),
    }
}
