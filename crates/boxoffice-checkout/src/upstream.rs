//! Checkout's calls to other services: inventory (holds, selling and
//! releasing seats) and catalog (an event's start time). Calls to inventory
//! carry the `service` role plus the user they act for, as mesh metadata,
//! since inventory checks both. Event start times are cached briefly, so a
//! run of bookings for one event asks the catalog once.

use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_runtime::Caller;
use boxoffice_runtime::transport::Transport;
use chrono::{DateTime, Utc};
use tonic::{Code, Status};
use uuid::Uuid;

/// How long an event's start time is reused. A booking keeps the start time
/// it was created with anyway (it sets the refund window), so a reschedule
/// reaching new bookings up to this much later changes nothing in kind.
const EVENT_START_TTL: Duration = Duration::from_secs(30);
/// Events remembered at most; past that the cache starts over.
const EVENT_START_ENTRIES: usize = 10_000;

type EventStarts = HashMap<Uuid, (Instant, Option<DateTime<Utc>>)>;

/// How an inventory call failed, as checkout acts on it.
#[derive(Debug)]
pub enum UpstreamError {
    /// Inventory answered with a decision (seat taken, hold expired, not
    /// found): `reason` is its `ErrorInfo` reason.
    Refused {
        code: Code,
        reason: String,
        message: String,
    },
    /// Inventory could not be reached or failed: the outcome is unknown.
    Unavailable(anyhow::Error),
}

impl From<Status> for UpstreamError {
    fn from(status: Status) -> Self {
        match status.code() {
            Code::NotFound
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::InvalidArgument
            | Code::PermissionDenied => Self::Refused {
                code: status.code(),
                reason: boxoffice_runtime::status::reason_of(&status).unwrap_or_default(),
                message: status.message().to_owned(),
            },
            _ => Self::Unavailable(anyhow::anyhow!(
                "inventory answered {:?}: {}",
                status.code(),
                status.message()
            )),
        }
    }
}

#[derive(Clone)]
pub struct Upstream {
    inventory: InventoryServiceClient<Transport>,
    catalog: CatalogServiceClient<Transport>,
    event_starts: Arc<Mutex<EventStarts>>,
}

fn acting_for<T>(user_id: Uuid, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    Caller::user(user_id, &[Caller::SERVICE]).write_to(request.metadata_mut());
    request.set_timeout(std::time::Duration::from_secs(10));
    request
}

impl Upstream {
    pub fn new(inventory: Transport, catalog: Transport) -> Self {
        Self {
            inventory: InventoryServiceClient::new(inventory),
            catalog: CatalogServiceClient::new(catalog),
            event_starts: Arc::default(),
        }
    }

    /// The hold as its owner sees it (someone else's hold is not found).
    pub async fn hold(
        &self,
        owner: Uuid,
        hold_name: &str,
    ) -> Result<inventory_pb::Hold, UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::GetHoldRequest {
                name: hold_name.to_owned(),
            },
        );
        Ok(self.inventory.clone().get_hold(request).await?.into_inner())
    }

    pub async fn commit_hold(
        &self,
        owner: Uuid,
        hold_name: &str,
        booking_id: Uuid,
        sale_id: Option<Uuid>,
    ) -> Result<inventory_pb::CommitHoldResponse, UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::CommitHoldRequest {
                name: hold_name.to_owned(),
                booking_id: booking_id.to_string(),
                user_id: owner.to_string(),
                sale_id: sale_id.map(|id| id.to_string()).unwrap_or_default(),
            },
        );
        Ok(self
            .inventory
            .clone()
            .commit_hold(request)
            .await?
            .into_inner())
    }

    pub async fn release_seats(
        &self,
        owner: Uuid,
        event_id: Uuid,
        booking_id: Uuid,
    ) -> Result<Vec<u32>, UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::ReleaseSeatsRequest {
                event_id: event_id.to_string(),
                booking_id: booking_id.to_string(),
            },
        );
        Ok(self
            .inventory
            .clone()
            .release_seats(request)
            .await?
            .into_inner()
            .seat_indexes)
    }

    /// Gives an unpaid hold's seats back at once (cancelling a pending
    /// booking).
    pub async fn release_hold(&self, owner: Uuid, hold_name: &str) -> Result<(), UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::ReleaseHoldRequest {
                name: hold_name.to_owned(),
            },
        );
        self.inventory.clone().release_hold(request).await?;
        Ok(())
    }

    /// Whether the seats of `hold_name` are sold to `booking_id`, without
    /// selling anything: the hold's record says so, and when Redis has
    /// forgotten the hold, CommitHold only looks up what PostgreSQL sold.
    pub async fn is_committed(
        &self,
        owner: Uuid,
        hold_name: &str,
        booking_id: Uuid,
        sale_id: Option<Uuid>,
    ) -> Result<bool, UpstreamError> {
        match self.hold(owner, hold_name).await {
            Ok(hold) => Ok(hold.state == inventory_pb::HoldState::Committed as i32
                && hold.booking_id == booking_id.to_string()
                && sale_id.is_none_or(|sale| {
                    hold.sale_id.is_empty() || hold.sale_id == sale.to_string()
                })),
            Err(UpstreamError::Refused {
                code: Code::NotFound,
                ..
            }) => match self
                .commit_hold(owner, hold_name, booking_id, sale_id)
                .await
            {
                Ok(_) => Ok(true),
                Err(UpstreamError::Refused { .. }) => Ok(false),
                Err(other) => Err(other),
            },
            Err(other) => Err(other),
        }
    }

    /// The event's start time; `None` when the catalog does not know it.
    /// Answers from the cache for [`EVENT_START_TTL`].
    pub async fn event_start(
        &self,
        event_id: Uuid,
    ) -> Result<Option<DateTime<Utc>>, UpstreamError> {
        if let Some((fetched, start)) = self.starts().get(&event_id)
            && fetched.elapsed() < EVENT_START_TTL
        {
            return Ok(*start);
        }
        let request = tonic::Request::new(catalog_pb::GetEventRequest {
            id: event_id.to_string(),
        });
        let fetched = Instant::now();
        let start = match self.catalog.clone().get_event(request).await {
            Ok(event) => event
                .into_inner()
                .start_time
                .and_then(|time| DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32)),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(status.into()),
        };
        let mut starts = self.starts();
        if starts.len() >= EVENT_START_ENTRIES {
            starts.clear();
        }
        starts.insert(event_id, (fetched, start));
        Ok(start)
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, EventStarts> {
        // Each change is one insert or a clear: a panic cannot leave it torn.
        self.event_starts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
