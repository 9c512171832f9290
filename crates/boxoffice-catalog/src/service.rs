//! The catalog's use cases between the wire and the store: cached reads,
//! visibility rules and admin writes.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_runtime::Caller;
use uuid::Uuid;

use crate::cache::{Change, ReadThroughCache};
use crate::domain::{
    Event, EventPatch, EventStatus, NewEvent, NewPerformer, NewVenue, Performer, SeatLayout, Venue,
};
use crate::error::CatalogError;
use crate::store::{CatalogStore, EventFilter, PageCursor};

type Result<T> = std::result::Result<T, CatalogError>;

pub struct Catalog {
    store: CatalogStore,
    events: ReadThroughCache<Uuid, Event>,
    layouts: ReadThroughCache<Uuid, SeatLayout>,
    venues: ReadThroughCache<Uuid, Venue>,
    performers: ReadThroughCache<Uuid, Performer>,
}

/// An event together with its venue's layout, for drawing a seat map.
pub struct EventSeatMap {
    pub event: Arc<Event>,
    pub layout: Arc<SeatLayout>,
}

impl Catalog {
    pub fn new(store: CatalogStore, cache_ttl: Duration) -> Self {
        Self {
            store,
            events: ReadThroughCache::new(cache_ttl),
            layouts: ReadThroughCache::new(cache_ttl),
            venues: ReadThroughCache::new(cache_ttl),
            performers: ReadThroughCache::new(cache_ttl),
        }
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Drops what a committed change made stale.
    pub fn apply_change(&self, change: Change) {
        match change {
            Change::Event(id) => self.events.invalidate(&id),
            // Performers and venues are embedded in events: drop them all.
            Change::Performer(id) => {
                self.performers.invalidate(&id);
                self.events.clear();
            }
            Change::Venue(id) => {
                self.venues.invalidate(&id);
                self.layouts.invalidate(&id);
                self.events.clear();
            }
        }
    }

    /// Drops everything (the change feed was interrupted).
    pub fn reset(&self) {
        self.events.clear();
        self.layouts.clear();
        self.venues.clear();
        self.performers.clear();
    }

    /// An event the caller may see.
    pub async fn event(&self, caller: &Caller, id: Uuid) -> Result<Arc<Event>> {
        let event = self
            .events
            .get_or_load(&id, || self.store.get_event(id))
            .await?
            .filter(|event| event.visible_to(caller.is_admin()));
        event.ok_or_else(|| CatalogError::NotFound {
            what: "event",
            id: id.to_string(),
        })
    }

    pub async fn seat_map(&self, caller: &Caller, event_id: Uuid) -> Result<EventSeatMap> {
        let event = self.event(caller, event_id).await?;
        let venue_id = event.venue.id;
        let layout = self
            .layouts
            .get_or_load(&venue_id, || self.store.get_seat_layout(venue_id))
            .await?
            .ok_or_else(|| {
                CatalogError::Internal(anyhow::anyhow!("event {event_id} has no venue layout"))
            })?;
        Ok(EventSeatMap { event, layout })
    }

    pub async fn venue(&self, id: Uuid) -> Result<Arc<Venue>> {
        self.venues
            .get_or_load(&id, || self.store.get_venue(id))
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: "venue",
                id: id.to_string(),
            })
    }

    pub async fn performer(&self, id: Uuid) -> Result<Arc<Performer>> {
        self.performers
            .get_or_load(&id, || self.store.get_performer(id))
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: "performer",
                id: id.to_string(),
            })
    }

    pub async fn list_events(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        after: Option<PageCursor>,
        page_size: usize,
    ) -> Result<(Vec<Event>, Option<PageCursor>)> {
        if filter.status == EventStatus::Draft {
            require_admin(caller)?;
        }
        self.store.list_events(filter, after, page_size).await
    }

    pub async fn create_venue(&self, caller: &Caller, venue: &NewVenue) -> Result<Venue> {
        require_admin(caller)?;
        self.store.create_venue(venue).await
    }

    pub async fn create_performer(
        &self,
        caller: &Caller,
        performer: &NewPerformer,
    ) -> Result<Performer> {
        require_admin(caller)?;
        self.store.create_performer(performer).await
    }

    pub async fn create_event(&self, caller: &Caller, event: &NewEvent) -> Result<Event> {
        require_admin(caller)?;
        self.store.create_event(event).await
    }

    /// Writes invalidate this instance's cache at once (read-your-writes);
    /// other instances hear it from NOTIFY.
    pub async fn update_event(
        &self,
        caller: &Caller,
        id: Uuid,
        patch: &EventPatch,
    ) -> Result<Event> {
        require_admin(caller)?;
        let updated = self.store.update_event(id, patch).await?;
        self.events.invalidate(&id);
        Ok(updated)
    }

    pub async fn publish_event(&self, caller: &Caller, id: Uuid) -> Result<Event> {
        require_admin(caller)?;
        let published = self.store.publish_event(id).await?;
        self.events.invalidate(&id);
        Ok(published)
    }

    pub async fn cancel_event(&self, caller: &Caller, id: Uuid, reason: &str) -> Result<Event> {
        require_admin(caller)?;
        let cancelled = self.store.cancel_event(id, reason).await?;
        self.events.invalidate(&id);
        Ok(cancelled)
    }
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(CatalogError::AdminRequired)
    }
}
