//! Event search for the catalog: searches answered from the search index
//! (the wire side, request parsing and page tokens, is `search_request.rs`),
//! and the indexer that keeps that index in step with the catalog's
//! published events.
//!
//! The indexer is a consumer group of `boxoffice-events` on the catalog's
//! stream: batches in order, at least once, whatever the transport. Each
//! batch's event snapshots become documents (the newest version of each
//! event in the batch) written in one upsert; the index keeps only the
//! highest version per event, so replays change nothing. A shared index
//! (Meilisearch) is fed by one group for all catalog instances, started over
//! from the beginning of the stream when the index has no checkpoint (new or
//! wiped); an index of this process alone (the embedded engine) gets a group
//! of its own, which reads the whole stream at every start. An event whose
//! snapshot cannot be read goes to the dead letters and the stream goes on.
//!
//! A search never touches PostgreSQL: each document carries the serialized
//! event it was built from, so hits come back whole from the index.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_events::{ConsumerConfig, ConsumerGroup, HandleError, Handler, Received, Transport};
use boxoffice_runtime::Shutdown;
use boxoffice_search::{
    FacetCount, GeoPoint, SearchConfig, SearchDocument, SearchError, SearchIndex, SearchQuery,
};
use deadpool_postgres::Pool;
use futures::{StreamExt as _, pin_mut};
use prost::Message as _;
use uuid::Uuid;

use crate::domain::Event;
use crate::error::CatalogError;

// ------------------------------------------------------------ answering

/// One hit, its event decoded from the document.
#[derive(Debug, Clone)]
pub struct FoundEvent {
    pub event: Event,
    /// Mean stars of the performers' reviews (0 = none) and their count.
    pub performers_rating: f64,
    pub performers_rating_count: u32,
    /// Marked up as the engine returns it (see `highlight_to_html`).
    pub highlighted_title: String,
    pub highlighted_performers: Vec<String>,
    pub distance_km: Option<f64>,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub hits: Vec<FoundEvent>,
    /// Hits the engine returned, readable or not: a page is full when this
    /// is the query's limit.
    pub returned: usize,
    pub estimated_total_hits: u64,
    pub category_facets: Vec<FacetCount>,
    pub city_facets: Vec<FacetCount>,
}

/// Event search over one index.
pub struct EventSearch {
    index: Arc<dyn SearchIndex>,
}

impl EventSearch {
    pub fn new(index: Arc<dyn SearchIndex>) -> Self {
        Self { index }
    }

    pub fn index(&self) -> &Arc<dyn SearchIndex> {
        &self.index
    }

    /// One page of events matching `query`; a hit whose event cannot be
    /// read is logged and left out.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, CatalogError> {
        let results = self
            .index
            .search(query)
            .await
            .map_err(|error| match error {
                SearchError::Unavailable(error) => {
                    let error = error.context(format!("searching with {}", self.index.engine()));
                    tracing::warn!(error = format!("{error:#}"), "search unavailable");
                    CatalogError::SearchUnavailable
                }
                SearchError::Internal(error) => CatalogError::Internal(error.context("searching")),
            })?;
        let returned = results.hits.len();
        let mut hits = Vec::with_capacity(returned);
        for hit in results.hits {
            let event: Event = match serde_json::from_str(&hit.document.payload) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(event_id = %hit.document.id, %error, "search document without a readable event");
                    continue;
                }
            };
            hits.push(FoundEvent {
                event,
                performers_rating: hit.document.rating,
                performers_rating_count: hit.document.rating_count,
                highlighted_title: hit.highlighted_title,
                highlighted_performers: hit.highlighted_performers,
                distance_km: hit.distance_km,
            });
        }
        Ok(SearchPage {
            hits,
            returned,
            estimated_total_hits: results.estimated_total_hits,
            category_facets: results.category_facets,
            city_facets: results.city_facets,
        })
    }
}

// ------------------------------------------------------------ documents

/// The search document of an event, unrated.
pub fn document_from_event(event: &Event) -> anyhow::Result<SearchDocument> {
    let prices = event.price_tiers.iter().map(|tier| tier.price.amount_minor);
    Ok(SearchDocument {
        id: event.id.to_string(),
        version: event.version,
        status: event.status.as_str().to_owned(),
        title: event.title.clone(),
        description: event.description.clone(),
        category: event.category.as_str().to_owned(),
        performers: event.performers.iter().map(|p| p.name.clone()).collect(),
        performer_ids: event.performers.iter().map(|p| p.id.to_string()).collect(),
        venue_id: event.venue.id.to_string(),
        venue_name: event.venue.name.clone(),
        city: event.venue.city.clone(),
        country_code: event.venue.country_code.clone(),
        start_time: event.start_time.timestamp(),
        end_time: event.end_time.timestamp(),
        location: event.venue.location.map(|l| GeoPoint {
            latitude: l.latitude,
            longitude: l.longitude,
        }),
        price_min_minor: prices.clone().min(),
        price_max_minor: prices.max(),
        currency_code: event
            .price_tiers
            .first()
            .map(|tier| tier.price.currency_code.clone())
            .unwrap_or_default(),
        // The rating travels beside the event (see `document_from_snapshot`).
        rating: 0.0,
        rating_count: 0,
        payload: serde_json::to_string(event).context("encoding an event for search")?,
    })
}

/// The search document of an event snapshot from the catalog's stream,
/// with its performers' rating.
pub(crate) fn document_from_snapshot(
    snapshot: &boxoffice_contracts::events::v1::EventSnapshot,
) -> anyhow::Result<(Uuid, SearchDocument)> {
    let event = crate::events::event_from_snapshot(snapshot)?;
    let mut document = document_from_event(&event)?;
    if let Some(rating) = &snapshot.performers_rating {
        document.rating = rating.average;
        document.rating_count = rating.count;
    }
    Ok((event.id, document))
}

// ------------------------------------------------------------ indexing

/// Opens the engine the environment names (see `boxoffice_search::config`).
pub async fn open_index_from_env() -> anyhow::Result<Arc<dyn SearchIndex>> {
    let config = SearchConfig::from_env().context("search configuration")?;
    open_index(&config).await
}

pub async fn open_index(config: &SearchConfig) -> anyhow::Result<Arc<dyn SearchIndex>> {
    boxoffice_search::open(config)
        .await
        .context("opening the search index")
}

/// The consumer group feeding a shared index (one for every catalog
/// instance); an index of one process alone gets `search-local-<uuid>`.
pub const SHARED_INDEXER_GROUP: &str = "search-indexer";

#[derive(Debug, Clone, Copy)]
pub struct IndexerSettings {
    /// Events per batch and per index write.
    pub batch_size: usize,
    /// Looks for events this often even without a change notification.
    pub idle_poll: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for IndexerSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_poll: Duration::from_secs(1),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub events: u64,
    pub checkpoint: i64,
}

/// Writes batches of catalog events into the index.
pub struct IndexHandler {
    index: Arc<dyn SearchIndex>,
}

impl IndexHandler {
    pub fn new(index: Arc<dyn SearchIndex>) -> Self {
        Self { index }
    }

    async fn write(
        &self,
        documents: HashMap<Uuid, SearchDocument>,
        last: Option<&Received>,
    ) -> Result<(), HandleError> {
        let Some(last) = last else {
            return Ok(());
        };
        let checkpoint = i64::try_from(last.position).unwrap_or(i64::MAX);
        self.index
            .upsert(documents.into_values().collect(), Some(checkpoint))
            .await
            .map_err(|error| {
                let error = match error {
                    SearchError::Unavailable(error) | SearchError::Internal(error) => error,
                };
                HandleError::Unavailable(error.context("writing to the search index"))
            })
    }
}

impl Handler for IndexHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let mut newest: HashMap<Uuid, SearchDocument> = HashMap::new();
        for (position, received) in events.iter().enumerate() {
            let Some(snapshot) = received.payload().and_then(crate::events::snapshot_of) else {
                continue;
            };
            match document_from_snapshot(snapshot) {
                Ok((id, document)) => {
                    if newest
                        .get(&id)
                        .is_none_or(|held| held.version < document.version)
                    {
                        newest.insert(id, document);
                    }
                }
                Err(error) => {
                    // Write what came before it, then set it aside.
                    self.write(newest, position.checked_sub(1).and_then(|p| events.get(p)))
                        .await?;
                    return Err(HandleError::Poison {
                        index: position,
                        reason: format!("unreadable event snapshot: {error:#}"),
                    });
                }
            }
        }
        self.write(newest, events.last()).await
    }
}

/// Keeps a search index in step with the catalog's events.
pub struct Indexer {
    pool: Pool,
    transport: Transport,
    index: Arc<dyn SearchIndex>,
    settings: IndexerSettings,
}

impl Indexer {
    pub fn new(
        pool: Pool,
        transport: Transport,
        index: Arc<dyn SearchIndex>,
        settings: IndexerSettings,
    ) -> Self {
        Self {
            pool,
            transport,
            index,
            settings,
        }
    }

    fn consumer_config(&self) -> ConsumerConfig {
        let group = if self.index.is_shared() {
            SHARED_INDEXER_GROUP.to_owned()
        } else {
            format!("search-local-{}", Uuid::new_v4().simple())
        };
        let mut config =
            ConsumerConfig::new(&group, crate::store::SCHEMA, &[crate::events::PRODUCER]);
        config.batch_size = self.settings.batch_size;
        config.idle_poll = self.settings.idle_poll;
        config.first_backoff = self.settings.first_backoff;
        config.max_backoff = self.settings.max_backoff;
        config.ephemeral = !self.index.is_shared();
        config
    }

    /// Runs until `shutdown`: settings, a fresh start for a shared index
    /// without a checkpoint, then the consumer group. Every failure before
    /// the group runs backs off and retries.
    pub async fn run(self, shutdown: Shutdown) {
        let engine = self.index.engine();
        let config = self.consumer_config();
        let mut backoff = self.settings.first_backoff;
        let group = loop {
            if shutdown.is_triggered() {
                return;
            }
            let step = async {
                self.index
                    .apply_settings()
                    .await
                    .context("applying search settings")?;
                let checkpoint = self
                    .index
                    .checkpoint()
                    .await
                    .context("reading the checkpoint")?;
                if checkpoint.is_none() && self.index.is_shared() {
                    ConsumerGroup::reset(&self.transport, &self.pool, &config).await?;
                    tracing::info!(engine, "search index empty: reading every catalog event");
                }
                ConsumerGroup::start(
                    &self.transport,
                    self.pool.clone(),
                    config.clone(),
                    Arc::new(IndexHandler::new(self.index.clone())),
                    shutdown.clone(),
                )
                .await
            };
            match step.await {
                Ok(group) => break group,
                Err(error) => {
                    tracing::warn!(
                        engine,
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "starting the search indexer failed"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(jitter(backoff)) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        };
        group.join().await;
    }
}

/// Up to a quarter more, so restarted replicas do not retry in step.
fn jitter(backoff: Duration) -> Duration {
    backoff + backoff.mul_f64(rand::random::<f64>() / 4.0)
}

/// The event the catalog publishes when `event` is published, as its
/// outbox holds it (what the indexer and [`rebuild`] read). Public for
/// tools that fill an outbox in bulk: the search benchmark times a rebuild
/// at a million events, which the store's writes (one transaction per
/// catalog change) could not reach in a sitting.
pub fn published_event(event: &Event) -> boxoffice_events::NewEvent {
    crate::events::event_changed(
        event,
        crate::events::EventChange::Published,
        &crate::domain::RatingSummary::default(),
    )
}

/// Fills the index from the catalog's own outbox: the newest event of every
/// catalog event, then the outbox's high-water mark as the checkpoint. With
/// `clear`, the index is emptied first. A running indexer goes on from its
/// own position (replays are harmless).
pub async fn rebuild(
    pool: &Pool,
    index: &dyn SearchIndex,
    clear: bool,
) -> anyhow::Result<RebuildReport> {
    const BATCH: usize = 1_000;
    let client = pool.get().await.context("connecting for a rebuild")?;
    let high: i64 = client
        .query_one("SELECT COALESCE(max(id), 0) FROM catalog.event_outbox", &[])
        .await
        .context("reading the outbox high-water mark")?
        .get(0);
    if clear {
        index.clear().await.context("clearing the search index")?;
    }
    let rows = client
        .query_raw(
            "SELECT DISTINCT ON (aggregate_id) aggregate_id, envelope FROM catalog.event_outbox
             WHERE aggregate_type = 'event' AND id <= $1
             ORDER BY aggregate_id, sequence DESC",
            &[&high],
        )
        .await
        .context("reading events for a rebuild")?;
    pin_mut!(rows);
    let mut batch = Vec::with_capacity(BATCH);
    let mut events = 0u64;
    while let Some(row) = rows.next().await {
        let row = row.context("reading events for a rebuild")?;
        let id: String = row.get("aggregate_id");
        let bytes: Vec<u8> = row.get("envelope");
        let document = boxoffice_events::Envelope::decode(bytes.as_slice())
            .map_err(anyhow::Error::from)
            .and_then(|envelope| {
                let payload = envelope.payload.context("no payload")?;
                let snapshot =
                    crate::events::snapshot_of(&payload).context("not an event snapshot")?;
                document_from_snapshot(snapshot).map(|(_, document)| document)
            });
        match document {
            Ok(document) => batch.push(document),
            Err(error) => {
                tracing::error!(event_id = %id, error = format!("{error:#}"), "unreadable event skipped in rebuild")
            }
        }
        if batch.len() == BATCH {
            events += batch.len() as u64;
            index
                .upsert(std::mem::take(&mut batch), None)
                .await
                .context("writing to the search index")?;
        }
    }
    events += batch.len() as u64;
    index
        .upsert(batch, Some(high))
        .await
        .context("writing to the search index")?;
    Ok(RebuildReport {
        events,
        checkpoint: high,
    })
}

/// [`reindex`] with the engine the environment names.
pub async fn reindex_from_env(pool: &Pool) -> anyhow::Result<Option<RebuildReport>> {
    let config = SearchConfig::from_env().context("search configuration")?;
    reindex(pool, &config).await
}

/// `boxoffice reindex`: rebuilds the configured index from PostgreSQL.
/// `None` when the index lives in memory, so there is nothing to rebuild
/// (it is rebuilt at every start).
pub async fn reindex(pool: &Pool, config: &SearchConfig) -> anyhow::Result<Option<RebuildReport>> {
    if config.engine == (boxoffice_search::SearchEngineConfig::Embedded { dir: None }) {
        return Ok(None);
    }
    let index = open_index(config).await?;
    index
        .apply_settings()
        .await
        .context("applying search settings")?;
    rebuild(pool, index.as_ref(), true).await.map(Some)
}
