//! Event search for the catalog: `SearchEvents` requests parsed and answered
//! from the search index, and the indexer that keeps that index in step with
//! the catalog's published events.
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
use base64::Engine as _;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_events::{ConsumerConfig, ConsumerGroup, HandleError, Handler, Received, Transport};
use boxoffice_runtime::{Shutdown, status};
use boxoffice_search::query::MAX_OFFSET;
use boxoffice_search::{
    GeoPoint, GeoRadius, SearchConfig, SearchDocument, SearchError, SearchFilters, SearchIndex,
    SearchQuery, SearchSort, highlight_to_html,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::{StreamExt as _, pin_mut};
use prost::Message as _;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::domain::{Category, Event, FieldError, LatLng, optional_text, parse_id};
use crate::error::{CatalogError, reason};
use crate::grpc::event_to_pb;

/// Longest query text accepted, in characters.
pub const QUERY_MAX_CHARS: usize = 200;
pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;
/// Largest radius accepted: half the Earth's circumference.
pub const MAX_RADIUS_KM: f64 = 20_000.0;

// ------------------------------------------------------------ requests

/// A `SearchEventsRequest` after parsing: every field valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSearch {
    pub query: SearchQuery,
    /// Ties page tokens to the request they were issued for.
    pub fingerprint: u64,
}

fn timestamp(field: &str, time: &prost_types::Timestamp) -> Result<DateTime<Utc>, FieldError> {
    if !(0..1_000_000_000).contains(&time.nanos) {
        return Err(FieldError::new(field, "nanos out of range"));
    }
    DateTime::from_timestamp(time.seconds, time.nanos as u32)
        .filter(|t| (2000..=2200).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| FieldError::new(field, "must be between the years 2000 and 2200"))
}

fn optional_uuid(field: &str, value: &str) -> Result<Option<String>, FieldError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(field, value).map(|id| Some(id.to_string()))
    }
}

fn category(value: i32) -> Result<Option<Category>, FieldError> {
    let parsed = pb::Category::try_from(value)
        .map_err(|_| FieldError::new("category", format!("{value} is not a known value")))?;
    Ok(match parsed {
        pb::Category::Unspecified => None,
        pb::Category::Concert => Some(Category::Concert),
        pb::Category::Sports => Some(Category::Sports),
        pb::Category::Theater => Some(Category::Theater),
        pb::Category::Comedy => Some(Category::Comedy),
        pb::Category::Film => Some(Category::Film),
        pb::Category::Family => Some(Category::Family),
        pb::Category::Festival => Some(Category::Festival),
    })
}

/// FNV-1a, stable across processes and versions (unlike `DefaultHasher`).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn encode_page_token(offset: usize, fingerprint: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("s1.{offset}.{fingerprint:x}"))
}

fn decode_page_token(token: &str, fingerprint: u64) -> Result<usize, FieldError> {
    let refused = || FieldError::new("page_token", "is not a token this service issued");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| refused())?;
    let raw = String::from_utf8(raw).map_err(|_| refused())?;
    let mut parts = raw.split('.');
    let (Some("s1"), Some(offset), Some(issued_for), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused());
    };
    let offset: usize = offset.parse().map_err(|_| refused())?;
    let issued_for = u64::from_str_radix(issued_for, 16).map_err(|_| refused())?;
    if issued_for != fingerprint {
        return Err(FieldError::new(
            "page_token",
            "was issued for a different search; keep every other field unchanged while paging",
        ));
    }
    if offset > MAX_OFFSET {
        return Err(refused());
    }
    Ok(offset)
}

/// Parses and checks a request; `now` decides which events have ended.
pub fn parse_search_request(
    request: &pb::SearchEventsRequest,
    now: DateTime<Utc>,
) -> Result<ParsedSearch, FieldError> {
    let text = request.query.trim();
    if text.chars().count() > QUERY_MAX_CHARS {
        return Err(FieldError::new(
            "query",
            format!("must be at most {QUERY_MAX_CHARS} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            "query",
            "must not contain control characters",
        ));
    }
    let limit = match request.page_size {
        0 => DEFAULT_PAGE_SIZE,
        size if size < 0 => return Err(FieldError::new("page_size", "must not be negative")),
        size if size as usize > MAX_PAGE_SIZE => {
            return Err(FieldError::new(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        size => size as usize,
    };
    let start_after = request
        .start_after
        .as_ref()
        .map(|t| timestamp("start_after", t))
        .transpose()?;
    let start_before = request
        .start_before
        .as_ref()
        .map(|t| timestamp("start_before", t))
        .transpose()?;
    if let (Some(after), Some(before)) = (start_after, start_before)
        && before <= after
    {
        return Err(FieldError::new("start_before", "must be after start_after"));
    }
    let city = optional_text("city", &request.city, crate::domain::limits::NAME_MAX_CHARS)?;
    let category = category(request.category)?;
    let performer_id = optional_uuid("performer_id", &request.performer_id)?;
    let venue_id = optional_uuid("venue_id", &request.venue_id)?;
    let near = request
        .near
        .map(|point| LatLng::parse("near", point.latitude, point.longitude))
        .transpose()?
        .map(|point| GeoPoint {
            latitude: point.latitude,
            longitude: point.longitude,
        });
    let radius_km = request.radius_km;
    if !radius_km.is_finite() || radius_km < 0.0 {
        return Err(FieldError::new(
            "radius_km",
            "must be a positive number of kilometres",
        ));
    }
    if radius_km > MAX_RADIUS_KM {
        return Err(FieldError::new(
            "radius_km",
            format!("must be at most {MAX_RADIUS_KM} km"),
        ));
    }
    if radius_km > 0.0 && near.is_none() {
        return Err(FieldError::new("near", "is required when radius_km is set"));
    }
    let sort = match pb::SearchSort::try_from(request.sort)
        .map_err(|_| FieldError::new("sort", format!("{} is not a known value", request.sort)))?
    {
        pb::SearchSort::Unspecified | pb::SearchSort::Relevance => SearchSort::Relevance,
        pb::SearchSort::StartTime => SearchSort::StartTime,
        pb::SearchSort::Distance if near.is_none() => {
            return Err(FieldError::new("near", "is required to sort by distance"));
        }
        pb::SearchSort::Distance => SearchSort::Distance,
    };
    let within = near
        .filter(|_| radius_km > 0.0)
        .map(|center| GeoRadius { center, radius_km });
    let filters = SearchFilters {
        now: now.timestamp(),
        start_after: start_after.map(|t| t.timestamp()),
        start_before: start_before.map(|t| t.timestamp()),
        city: Some(city).filter(|city| !city.is_empty()),
        category: category.map(|c| c.as_str().to_owned()),
        performer_id,
        venue_id,
        within,
    };
    // Everything that shapes the result list except the page itself.
    let fingerprint = fnv1a(&format!(
        "{text}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}",
        filters.start_after,
        filters.start_before,
        filters.city,
        filters.category,
        filters.performer_id,
        filters.venue_id,
        near.map(|p| (p.latitude.to_bits(), p.longitude.to_bits())),
        sort,
        radius_km.to_bits(),
    ));
    let offset = match request.page_token.as_str() {
        "" => 0,
        token => decode_page_token(token, fingerprint)?,
    };
    Ok(ParsedSearch {
        query: SearchQuery {
            text: text.to_owned(),
            filters,
            point: near,
            sort,
            offset,
            limit,
            facets: true,
        },
        fingerprint,
    })
}

// ------------------------------------------------------------ answering

/// `SearchEvents` over one index.
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

    pub async fn search(
        &self,
        request: &pb::SearchEventsRequest,
    ) -> Result<pb::SearchEventsResponse, Status> {
        let parsed =
            parse_search_request(request, Utc::now()).map_err(CatalogError::InvalidField)?;
        let query = &parsed.query;
        let results = self
            .index
            .search(query)
            .await
            .map_err(|error| match error {
                SearchError::Unavailable(error) => {
                    let error = error.context(format!("searching with {}", self.index.engine()));
                    tracing::warn!(error = format!("{error:#}"), "search unavailable");
                    status::with_reason(
                        Code::Unavailable,
                        reason::SEARCH_NOT_AVAILABLE,
                        "search is temporarily unavailable, retry shortly",
                    )
                }
                SearchError::Internal(error) => status::internal(&error.context("searching")),
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
            hits.push(pb::SearchHit {
                event: Some(event_to_pb(&event)),
                highlighted_title: highlight_to_html(&hit.highlighted_title),
                distance_km: hit.distance_km.unwrap_or_default(),
                highlighted_performers: hit
                    .highlighted_performers
                    .iter()
                    .map(|name| highlight_to_html(name))
                    .collect(),
            });
        }
        let next_offset = query.offset + query.limit;
        let more = returned == query.limit && (next_offset as u64) < results.estimated_total_hits;
        let next_page_token = if more && next_offset <= MAX_OFFSET {
            encode_page_token(next_offset, parsed.fingerprint)
        } else {
            String::new()
        };
        let facets = |counts: Vec<boxoffice_search::FacetCount>| {
            counts
                .into_iter()
                .map(|facet| pb::FacetCount {
                    value: facet.value,
                    count: facet.count,
                })
                .collect()
        };
        Ok(pb::SearchEventsResponse {
            hits,
            next_page_token,
            estimated_total_hits: results.estimated_total_hits,
            category_facets: facets(results.category_facets),
            city_facets: facets(results.city_facets),
        })
    }
}

/// Wraps the catalog's tonic service and attaches the search to every
/// request, where `search_events` finds it among the request extensions (so
/// the catalog's gRPC type stays as it is, and search stays optional).
#[derive(Clone)]
pub struct WithSearch<S> {
    inner: S,
    search: Arc<EventSearch>,
}

impl<S> WithSearch<S> {
    pub fn new(inner: S, search: Arc<EventSearch>) -> Self {
        Self { inner, search }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for WithSearch<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for WithSearch<S>
where
    S: tonic::codegen::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: tonic::codegen::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.search.clone());
        self.inner.call(request)
    }
}

// ------------------------------------------------------------ documents

/// The search document of an event.
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
        payload: serde_json::to_string(event).context("encoding an event for search")?,
    })
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
            match crate::events::event_from_snapshot(snapshot).and_then(|e| {
                let document = document_from_event(&e)?;
                Ok((e.id, document))
            }) {
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
                document_from_event(&crate::events::event_from_snapshot(snapshot)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::SearchEventsRequest {
        pb::SearchEventsRequest {
            query: "taylor".into(),
            ..Default::default()
        }
    }

    fn field(request: pb::SearchEventsRequest) -> String {
        parse_search_request(&request, Utc::now())
            .unwrap_err()
            .field
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut r = request();
        r.page_size = MAX_PAGE_SIZE as i32 + 1;
        assert_eq!(field(r), "page_size");
        let mut r = request();
        r.radius_km = 10.0;
        assert_eq!(field(r), "near");
        let mut r = request();
        r.start_after = Some(prost_types::Timestamp {
            seconds: 1_900_000_000,
            nanos: 0,
        });
        r.start_before = Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        });
        assert_eq!(field(r), "start_before");
        let mut r = request();
        r.query = "a".repeat(QUERY_MAX_CHARS + 1);
        assert_eq!(field(r), "query");
        let mut r = request();
        r.sort = pb::SearchSort::Distance as i32;
        assert_eq!(field(r), "near");
        let mut r = request();
        r.performer_id = "nope".into();
        assert_eq!(field(r), "performer_id");
        let mut r = request();
        r.page_token = "garbage".into();
        assert_eq!(field(r), "page_token");
    }

    #[test]
    fn page_tokens_belong_to_their_search() {
        let parsed = parse_search_request(&request(), Utc::now()).unwrap();
        let token = encode_page_token(20, parsed.fingerprint);
        let mut next = request();
        next.page_token = token.clone();
        next.page_size = 5; // the page size may change between pages
        assert_eq!(
            parse_search_request(&next, Utc::now())
                .unwrap()
                .query
                .offset,
            20
        );
        let mut other = request();
        other.query = "swift".into();
        other.page_token = token;
        assert_eq!(field(other), "page_token");
    }

    #[test]
    fn defaults() {
        let parsed = parse_search_request(&pb::SearchEventsRequest::default(), Utc::now()).unwrap();
        assert_eq!(parsed.query.limit, DEFAULT_PAGE_SIZE);
        assert_eq!(parsed.query.offset, 0);
        assert_eq!(parsed.query.filters.within, None);
        assert_eq!(parsed.query.effective_sort(), SearchSort::StartTime);
    }
}
