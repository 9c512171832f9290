//! The `webhooks` consumer group: for each batch of domain events it only
//! *records* the deliveries due (one prepared, set-based statement), and
//! wakes the sender; the HTTP requests happen in the sender, so a slow or
//! dead receiver never holds the stream up. Idempotent by event id: a
//! delivery is unique per endpoint and event, so a replayed batch records
//! nothing new. Only the events some enabled endpoint wants are rendered.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_events::{HandleError, Handler, Received};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::event_types::{ALL, body, type_of};
use crate::store::WebhookStore;

/// The consumer group's name.
pub(crate) const GROUP: &str = "webhooks";

pub(crate) struct WebhookHandler {
    store: WebhookStore,
    window: Duration,
    wake: Arc<tokio::sync::Notify>,
}

impl WebhookHandler {
    pub(crate) fn new(
        store: WebhookStore,
        window: Duration,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            store,
            window,
            wake,
        }
    }
}

fn unavailable_or_failed(error: boxoffice_runtime::postgres::DbError) -> HandleError {
    if error.is_unavailable() {
        HandleError::Unavailable(error.into())
    } else {
        HandleError::Failed {
            index: 0,
            error: error.into(),
        }
    }
}

fn occurred(received: &Received) -> DateTime<Utc> {
    received
        .envelope
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_else(Utc::now)
}

/// The deliveries of one batch, as columns.
#[derive(Default)]
struct Batch {
    ids: Vec<Uuid>,
    types: Vec<&'static str>,
    bodies: Vec<String>,
    times: Vec<DateTime<Utc>>,
}

impl Batch {
    fn push(&mut self, id: Uuid, event_type: &'static str, body: String, at: DateTime<Utc>) {
        self.ids.push(id);
        self.types.push(event_type);
        self.bodies.push(body);
        self.times.push(at);
    }
}

impl WebhookHandler {
    async fn record(&self, batch: &Batch) -> Result<(), HandleError> {
        if batch.ids.is_empty() {
            return Ok(());
        }
        let recorded = self
            .store
            .record_deliveries(
                &batch.ids,
                &batch.types,
                &batch.bodies,
                &batch.times,
                self.window,
            )
            .await
            .map_err(unavailable_or_failed)?;
        if recorded > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }
}

impl Handler for WebhookHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let wanted: HashSet<String> = self
            .store
            .wanted_types()
            .await
            .map_err(unavailable_or_failed)?
            .into_iter()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let everything = wanted.contains(ALL);
        let mut batch = Batch::default();
        for (index, received) in events.iter().enumerate() {
            let Some(event_type) = received.payload().and_then(type_of) else {
                continue;
            };
            if !everything && !wanted.contains(event_type) {
                continue;
            }
            let parsed = received
                .event_id()
                .ok_or_else(|| "the event id is not a UUID".to_owned())
                .and_then(|id| body(&received.envelope, event_type).map(|body| (id, body)));
            match parsed {
                Ok((id, rendered)) => batch.push(id, event_type, rendered, occurred(received)),
                Err(reason) => {
                    // The events before it are handled: record them first.
                    self.record(&batch).await?;
                    return Err(HandleError::Poison { index, reason });
                }
            }
        }
        self.record(&batch).await?;
        Ok(())
    }
}
