//! Tails the catalog's published event log (`catalog.outbox`) with a cursor
//! of inventory's own: a published event gets its tickets, a cancelled one
//! stops selling. At least once and idempotent (by event id and catalog
//! version). One instance works at a time (the cursor row is locked with
//! SKIP LOCKED); the others skip the tick.
//!
//! Reading `id > cursor` in id order never skips a row because the catalog
//! hands out outbox ids in commit order (its `0002_outbox_order.sql`); ids
//! may have gaps, which mean nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_catalog::domain::{Event, EventStatus};
use boxoffice_catalog::store::CatalogStore;
use boxoffice_runtime::Shutdown;
use deadpool_postgres::Pool;

use crate::domain::SaleLayout;
use crate::service::Inventory;
use crate::store::postgres::{FeedEffect, apply_catalog_event};

const CURSOR_NAME: &str = "catalog.outbox";
const BATCH: i64 = 100;

pub struct CatalogFeed {
    inventory: Arc<Inventory>,
    pool: Pool,
    catalog: CatalogStore,
}

impl CatalogFeed {
    pub fn new(inventory: Arc<Inventory>, pool: Pool) -> Self {
        Self {
            inventory,
            catalog: CatalogStore::new(pool.clone()),
            pool,
        }
    }

    /// Reads the outbox every `interval` until shutdown.
    pub async fn run(self, interval: Duration, shutdown: Shutdown) {
        let mut failures = 0u32;
        loop {
            match self.tick().await {
                // More is waiting: go on at once.
                Ok(true) => continue,
                Ok(false) => failures = 0,
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(100) {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            failures,
                            "reading the catalog outbox failed"
                        );
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Applies one batch; `true` when a full batch was applied.
    pub async fn tick(&self) -> anyhow::Result<bool> {
        let mut client = self.pool.get().await.context("getting a connection")?;
        let transaction = client.transaction().await?;
        let Some(cursor) = transaction
            .query_opt(
                "SELECT last_id FROM inventory.feed_cursors WHERE name = $1 FOR UPDATE SKIP LOCKED",
                &[&CURSOR_NAME],
            )
            .await
            .context("locking the feed cursor")?
        else {
            return Ok(false);
        };
        let last_id: i64 = cursor.get(0);
        let rows = transaction
            .query(
                "SELECT id, aggregate_type, event_type, payload FROM catalog.outbox
                 WHERE id > $1 ORDER BY id LIMIT $2",
                &[&last_id, &BATCH],
            )
            .await
            .context("reading the catalog outbox")?;
        let mut applied_up_to = last_id;
        let mut touched = Vec::new();
        for row in &rows {
            let id: i64 = row.get("id");
            let aggregate_type: &str = row.get("aggregate_type");
            if aggregate_type == "event" {
                let tokio_postgres::types::Json(event): tokio_postgres::types::Json<Event> =
                    row.try_get("payload").context("decoding an outbox event")?;
                let layout = match event.status {
                    EventStatus::Published => Some(self.layout(&event).await?),
                    _ => None,
                };
                let effect = apply_catalog_event(&transaction, &event, layout.as_ref())
                    .await
                    .map_err(|error| anyhow::anyhow!("applying outbox row {id}: {error}"))?;
                if effect == FeedEffect::StatusChanged {
                    touched.push(event.id);
                }
                tracing::debug!(id, event_type = row.get::<_, &str>("event_type"), event_id = %event.id, ?effect, "applied");
            }
            applied_up_to = id;
        }
        if applied_up_to != last_id {
            transaction
                .execute(
                    "UPDATE inventory.feed_cursors SET last_id = $2 WHERE name = $1",
                    &[&CURSOR_NAME, &applied_up_to],
                )
                .await?;
        }
        transaction
            .commit()
            .await
            .context("committing the feed cursor")?;
        for event_id in touched {
            if let Err(error) = self.inventory.refresh_status(event_id).await {
                tracing::warn!(%event_id, ?error, "could not push an event status to redis");
            }
        }
        Ok(rows.len() as i64 == BATCH && applied_up_to > last_id)
    }

    /// The venue layout comes from the catalog's own store code: the layout
    /// is immutable once a venue exists, the outbox already lives in the
    /// same database, and this keeps the catalog's SQL in the catalog.
    async fn layout(&self, event: &Event) -> anyhow::Result<SaleLayout> {
        let layout = self
            .catalog
            .get_seat_layout(event.venue.id)
            .await
            .map_err(|error| anyhow::anyhow!("reading the seat layout: {error}"))?
            .with_context(|| {
                format!(
                    "venue {} of event {} has no layout",
                    event.venue.id, event.id
                )
            })?;
        Ok(SaleLayout::build(event, &layout))
    }
}
