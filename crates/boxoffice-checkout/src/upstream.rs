//! Checkout's calls to other services: inventory (holds, selling and
//! releasing seats) and catalog (an event's start time). Calls to inventory
//! carry the `service` role plus the user they act for, as mesh metadata,
//! since inventory checks both. Event start times are cached briefly, so a
//! run of bookings for one event asks the catalog once.
//!
//! Inventory's wire types stop here: its holds, commits and refusals are
//! converted (`TryFrom`) into checkout's own types, ids parsed into UUIDs
//! and `ErrorInfo` reasons into [`InventoryRefusal`], so the use cases
//! never compare strings.

use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_contracts::reason;
use boxoffice_runtime::Caller;
use boxoffice_runtime::transport::Transport;
use chrono::{DateTime, Utc};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::domain::{HoldState, PricedHold, PricedSeat, SeatLabel};

/// How long an event's start time is reused. A booking keeps the start time
/// it was created with anyway (it sets the refund window), so a reschedule
/// reaching new bookings up to this much later changes nothing in kind.
const EVENT_START_TTL: Duration = Duration::from_secs(30);
/// Events remembered at most; past that the cache starts over.
const EVENT_START_ENTRIES: usize = 10_000;

/// What checkout reuses of an event: its start and its venue (`None` for
/// an event the catalog does not know).
type EventStarts = HashMap<Uuid, (Instant, Option<EventFacts>)>;

#[derive(Clone, Copy, Debug)]
struct EventFacts {
    start: Option<DateTime<Utc>>,
    venue_id: Option<Uuid>,
}

/// An event as a promo code's scope needs it, read as the admin creating
/// the code (drafts included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventScope {
    pub venue_id: Option<Uuid>,
    pub price_tier_ids: Vec<Uuid>,
}

/// How a venue's seats read on a ticket, by seat index.
pub type SeatLabels = HashMap<u32, SeatLabel>;
/// How long an event's seat labels are reused (a published event's venue
/// and tiers do not move under a booking; a rename shows up after this).
const SEAT_LABELS_TTL: Duration = Duration::from_secs(300);
/// Events whose labels are remembered at most.
const SEAT_LABELS_ENTRIES: usize = 64;
type LabelCache = HashMap<Uuid, (Instant, Arc<SeatLabels>)>;

/// How an inventory call failed, as checkout acts on it.
#[derive(Debug)]
pub enum UpstreamError {
    /// Inventory answered with a decision (seat taken, hold expired, not
    /// found).
    Refused {
        refusal: InventoryRefusal,
        message: String,
    },
    /// Inventory could not be reached or failed: the outcome is unknown.
    Unavailable(anyhow::Error),
    /// Inventory answered something checkout cannot read (an id that is
    /// not a UUID, a hold without a price): a bug on one side or the other.
    Malformed(anyhow::Error),
}

/// A decision inventory answered with, parsed from its status: the
/// `ErrorInfo` reasons checkout branches on (defined once, in the contracts
/// crate) become variants, so nothing here compares reason strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventoryRefusal {
    /// `NOT_FOUND` (inventory's hold RPCs answer it only as
    /// `HOLD_NOT_FOUND`): no such hold for this user, or Redis forgot it
    /// and PostgreSQL sold nothing under it.
    HoldNotFound,
    HoldExpired,
    HoldReleased,
    /// Sold for another booking or under another sale id (another payment
    /// attempt of the same booking).
    HoldAlreadyCommitted,
    SeatUnavailable,
    /// Any other decision, with inventory's code and reason (possibly
    /// empty).
    Other {
        code: Code,
        reason: String,
    },
}

impl InventoryRefusal {
    /// The `ErrorInfo` reason inventory gave, to pass on to checkout's
    /// caller.
    pub fn reason(&self) -> &str {
        match self {
            Self::HoldNotFound => reason::HOLD_NOT_FOUND,
            Self::HoldExpired => reason::HOLD_EXPIRED,
            Self::HoldReleased => reason::HOLD_RELEASED,
            Self::HoldAlreadyCommitted => reason::HOLD_ALREADY_COMMITTED,
            Self::SeatUnavailable => reason::SEAT_UNAVAILABLE,
            Self::Other { reason, .. } => reason,
        }
    }
}

/// A status is a refusal when its code says inventory decided; any other
/// code (unavailable, deadline, internal) leaves the outcome unknown and is
/// the error.
impl TryFrom<&Status> for InventoryRefusal {
    type Error = anyhow::Error;

    fn try_from(status: &Status) -> Result<Self, Self::Error> {
        let code = status.code();
        if !matches!(
            code,
            Code::NotFound
                | Code::FailedPrecondition
                | Code::Aborted
                | Code::InvalidArgument
                | Code::PermissionDenied
        ) {
            return Err(anyhow::anyhow!(
                "inventory answered {code:?}: {}",
                status.message()
            ));
        }
        let reason = boxoffice_runtime::status::reason_of(status).unwrap_or_default();
        Ok(match (code, reason.as_str()) {
            (Code::NotFound, _) => Self::HoldNotFound,
            (_, reason::HOLD_EXPIRED) => Self::HoldExpired,
            (_, reason::HOLD_RELEASED) => Self::HoldReleased,
            (_, reason::HOLD_ALREADY_COMMITTED) => Self::HoldAlreadyCommitted,
            (_, reason::SEAT_UNAVAILABLE) => Self::SeatUnavailable,
            _ => Self::Other { code, reason },
        })
    }
}

impl From<Status> for UpstreamError {
    fn from(status: Status) -> Self {
        match InventoryRefusal::try_from(&status) {
            Ok(refusal) => Self::Refused {
                refusal,
                message: status.message().to_owned(),
            },
            Err(outage) => Self::Unavailable(outage),
        }
    }
}

/// A hold as checkout reads it from inventory: state, ids and times parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryHold {
    pub state: HoldState,
    pub expire_time: Option<DateTime<Utc>>,
    /// The currency of the hold's total price, if it has one.
    pub currency_code: Option<String>,
    pub seats: Vec<HeldSeat>,
    /// The booking its seats are sold to, once sold.
    pub booking_id: Option<Uuid>,
    /// The sale id the commit carried (checkout's: the payment attempt that
    /// paid), if any.
    pub sale_id: Option<Uuid>,
}

/// One seat of a hold; its price comes from inventory's copy of the event's
/// price tiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSeat {
    pub seat_index: u32,
    pub section_id: Option<Uuid>,
    pub price_tier_id: Option<Uuid>,
    /// Currency code and amount in minor units.
    pub price: Option<(String, i64)>,
}

/// An id inventory sends as text: empty when not set.
fn optional_id(field: &str, value: &str) -> anyhow::Result<Option<Uuid>> {
    if value.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(value)
        .map(Some)
        .map_err(|_| anyhow::anyhow!("inventory sent a {field} that is not a UUID"))
}

fn timestamp(time: prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32)
}

impl TryFrom<inventory_pb::Hold> for InventoryHold {
    type Error = anyhow::Error;

    fn try_from(hold: inventory_pb::Hold) -> Result<Self, Self::Error> {
        use inventory_pb::HoldState as Wire;
        let state = match Wire::try_from(hold.state).unwrap_or(Wire::Unspecified) {
            Wire::Active => HoldState::Active,
            Wire::Expired => HoldState::Expired,
            Wire::Released => HoldState::Released,
            Wire::Committed => HoldState::Sold,
            Wire::Unspecified => HoldState::Unknown,
        };
        let seats = hold
            .seats
            .into_iter()
            .map(|seat| HeldSeat {
                seat_index: seat.seat_index,
                // Informational on a ticket: an id inventory no longer
                // knows the form of is left out rather than refused.
                section_id: Uuid::parse_str(&seat.section_id).ok(),
                price_tier_id: Uuid::parse_str(&seat.price_tier_id).ok(),
                price: seat
                    .price
                    .map(|money| (money.currency_code, money.amount_minor)),
            })
            .collect();
        Ok(Self {
            state,
            expire_time: hold.expire_time.and_then(timestamp),
            currency_code: hold.total_price.map(|money| money.currency_code),
            seats,
            booking_id: optional_id("booking_id", &hold.booking_id)?,
            sale_id: optional_id("sale_id", &hold.sale_id)?,
        })
    }
}

/// The seats a booking is made of, from an active hold: every seat priced
/// in the hold's currency, none negative, at least one.
impl TryFrom<&InventoryHold> for PricedHold {
    type Error = anyhow::Error;

    fn try_from(hold: &InventoryHold) -> Result<Self, Self::Error> {
        let expire_time = hold
            .expire_time
            .ok_or_else(|| anyhow::anyhow!("the hold has no expiry"))?;
        let currency_code = hold
            .currency_code
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the hold has no price"))?;
        let seats = hold
            .seats
            .iter()
            .map(|seat| {
                let (currency, price_minor) = seat.price.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("seat {} of the hold has no price", seat.seat_index)
                })?;
                if *currency != currency_code || *price_minor < 0 {
                    anyhow::bail!("the hold mixes currencies or has a negative price");
                }
                Ok(PricedSeat {
                    seat_index: seat.seat_index,
                    section_id: seat.section_id,
                    price_tier_id: seat.price_tier_id,
                    price_minor: *price_minor,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if seats.is_empty() {
            anyhow::bail!("the hold has no seats");
        }
        Ok(Self {
            expire_time,
            currency_code,
            seats,
        })
    }
}

/// What CommitHold answered: the hold as now sold.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedHold {
    /// False when this call only repeated an earlier successful commit.
    pub newly_committed: bool,
    pub hold: Option<InventoryHold>,
}

impl CommittedHold {
    /// Whether the seats are sold to this very attempt: by this call, or
    /// under its sale id before (a retry).
    pub fn sold_to(&self, sale_id: Uuid) -> bool {
        self.newly_committed
            || self
                .hold
                .as_ref()
                .is_some_and(|hold| hold.sale_id == Some(sale_id))
    }
}

impl TryFrom<inventory_pb::CommitHoldResponse> for CommittedHold {
    type Error = anyhow::Error;

    fn try_from(response: inventory_pb::CommitHoldResponse) -> Result<Self, Self::Error> {
        Ok(Self {
            newly_committed: response.newly_committed,
            hold: response.hold.map(InventoryHold::try_from).transpose()?,
        })
    }
}

#[derive(Clone)]
pub struct Upstream {
    inventory: InventoryServiceClient<Transport>,
    catalog: CatalogServiceClient<Transport>,
    accounts: AccountsServiceClient<Transport>,
    event_starts: Arc<Mutex<EventStarts>>,
    seat_labels: Arc<Mutex<LabelCache>>,
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
            // Accounts is served where the catalog is unless told
            // otherwise (`with_accounts`).
            accounts: AccountsServiceClient::new(catalog.clone()),
            catalog: CatalogServiceClient::new(catalog),
            event_starts: Arc::default(),
            seat_labels: Arc::default(),
        }
    }

    /// Reaches accounts (for a caller's email) through `accounts`.
    pub fn with_accounts(mut self, accounts: Transport) -> Self {
        self.accounts = AccountsServiceClient::new(accounts);
        self
    }

    /// The account email of `user`, lowercased, asked of accounts as that
    /// user (`GetMe`); `None` for a user accounts does not know.
    pub async fn email_of(&self, user: Uuid) -> Result<Option<String>, UpstreamError> {
        let mut request = tonic::Request::new(accounts_pb::GetMeRequest {});
        Caller::user(user, &[]).write_to(request.metadata_mut());
        request.set_timeout(std::time::Duration::from_secs(10));
        match self.accounts.clone().get_me(request).await {
            Ok(me) => Ok(Some(me.into_inner().email.to_lowercase())),
            Err(status) if matches!(status.code(), Code::NotFound | Code::Unauthenticated) => {
                Ok(None)
            }
            Err(status) => Err(UpstreamError::Unavailable(anyhow::anyhow!(
                "accounts answered {:?}",
                status.code()
            ))),
        }
    }

    /// The hold as its owner sees it (someone else's hold is not found).
    pub async fn hold(&self, owner: Uuid, hold_name: &str) -> Result<InventoryHold, UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::GetHoldRequest {
                name: hold_name.to_owned(),
            },
        );
        let hold = self.inventory.clone().get_hold(request).await?.into_inner();
        InventoryHold::try_from(hold).map_err(UpstreamError::Malformed)
    }

    pub async fn commit_hold(
        &self,
        owner: Uuid,
        hold_name: &str,
        booking_id: Uuid,
        sale_id: Option<Uuid>,
    ) -> Result<CommittedHold, UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::CommitHoldRequest {
                name: hold_name.to_owned(),
                booking_id: booking_id.to_string(),
                user_id: owner.to_string(),
                sale_id: sale_id.map(|id| id.to_string()).unwrap_or_default(),
            },
        );
        let response = self
            .inventory
            .clone()
            .commit_hold(request)
            .await?
            .into_inner();
        CommittedHold::try_from(response).map_err(UpstreamError::Malformed)
    }

    /// Gives the hold more time while its buyer completes a payment step
    /// (as much as inventory's bound allows); answers its new expiry.
    pub async fn extend_hold(
        &self,
        owner: Uuid,
        hold_name: &str,
    ) -> Result<Option<DateTime<Utc>>, UpstreamError> {
        let request = acting_for(
            owner,
            inventory_pb::ExtendHoldRequest {
                name: hold_name.to_owned(),
                user_id: owner.to_string(),
                extension: None,
            },
        );
        let hold = self
            .inventory
            .clone()
            .extend_hold(request)
            .await?
            .into_inner();
        Ok(hold.expire_time.and_then(timestamp))
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
            Ok(hold) => Ok(hold.state == HoldState::Sold
                && hold.booking_id == Some(booking_id)
                && sale_id.is_none_or(|sale| hold.sale_id.is_none_or(|sold| sold == sale))),
            Err(UpstreamError::Refused {
                refusal: InventoryRefusal::HoldNotFound,
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
        Ok(self
            .event_facts(event_id)
            .await?
            .and_then(|facts| facts.start))
    }

    /// The venue of the event (a venue-scoped promo code applies to every
    /// event there); `None` when the catalog does not know the event.
    /// Cached like [`Self::event_start`].
    pub async fn event_venue(&self, event_id: Uuid) -> Result<Option<Uuid>, UpstreamError> {
        Ok(self
            .event_facts(event_id)
            .await?
            .and_then(|facts| facts.venue_id))
    }

    async fn event_facts(&self, event_id: Uuid) -> Result<Option<EventFacts>, UpstreamError> {
        if let Some((fetched, facts)) = self.starts().get(&event_id)
            && fetched.elapsed() < EVENT_START_TTL
        {
            return Ok(*facts);
        }
        let request = tonic::Request::new(catalog_pb::GetEventRequest {
            id: event_id.to_string(),
        });
        let fetched = Instant::now();
        let facts = match self.catalog.clone().get_event(request).await {
            Ok(event) => {
                let event = event.into_inner();
                Some(EventFacts {
                    start: event.start_time.and_then(timestamp),
                    venue_id: Uuid::parse_str(&event.venue_id).ok(),
                })
            }
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(status.into()),
        };
        let mut starts = self.starts();
        if starts.len() >= EVENT_START_ENTRIES {
            starts.clear();
        }
        starts.insert(event_id, (fetched, facts));
        Ok(facts)
    }

    /// The event's venue and price tiers as `caller` (an admin) sees them,
    /// uncached; `None` when there is no such event.
    pub async fn event_scope(
        &self,
        caller: &Caller,
        event_id: Uuid,
    ) -> Result<Option<EventScope>, UpstreamError> {
        let mut request = tonic::Request::new(catalog_pb::GetEventRequest {
            id: event_id.to_string(),
        });
        caller.write_to(request.metadata_mut());
        request.set_timeout(std::time::Duration::from_secs(10));
        match self.catalog.clone().get_event(request).await {
            Ok(event) => {
                let event = event.into_inner();
                Ok(Some(EventScope {
                    venue_id: Uuid::parse_str(&event.venue_id).ok(),
                    price_tier_ids: event
                        .price_tiers
                        .iter()
                        .filter_map(|tier| Uuid::parse_str(&tier.id).ok())
                        .collect(),
                }))
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    /// Whether the catalog has this venue.
    pub async fn venue_exists(
        &self,
        caller: &Caller,
        venue_id: Uuid,
    ) -> Result<bool, UpstreamError> {
        let mut request = tonic::Request::new(catalog_pb::GetVenueRequest {
            id: venue_id.to_string(),
        });
        caller.write_to(request.metadata_mut());
        request.set_timeout(std::time::Duration::from_secs(10));
        match self.catalog.clone().get_venue(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(status.into()),
        }
    }

    /// How the event's seats read on a ticket (section, row, number, tier),
    /// from the catalog's seat map; cached for [`SEAT_LABELS_TTL`].
    pub async fn seat_labels(&self, event_id: Uuid) -> Result<Arc<SeatLabels>, UpstreamError> {
        if let Some((fetched, labels)) = self.labels_cache().get(&event_id)
            && fetched.elapsed() < SEAT_LABELS_TTL
        {
            return Ok(labels.clone());
        }
        let mut request = tonic::Request::new(catalog_pb::GetSeatMapRequest {
            event_id: event_id.to_string(),
        });
        request.set_timeout(std::time::Duration::from_secs(10));
        let fetched = Instant::now();
        let map = self
            .catalog
            .clone()
            .get_seat_map(request)
            .await?
            .into_inner();
        let labels = Arc::new(labels_of(&map));
        let mut cache = self.labels_cache();
        if cache.len() >= SEAT_LABELS_ENTRIES {
            cache.clear();
        }
        cache.insert(event_id, (fetched, labels.clone()));
        Ok(labels)
    }

    fn labels_cache(&self) -> std::sync::MutexGuard<'_, LabelCache> {
        // Each change is one insert or a clear: a panic cannot leave it torn.
        self.seat_labels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, EventStarts> {
        // Each change is one insert or a clear: a panic cannot leave it torn.
        self.event_starts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every seat of the map named as a person reads it. A general-admission
/// section's places are named by the section alone.
fn labels_of(map: &catalog_pb::SeatMap) -> SeatLabels {
    let tier_name = |tier_id: &str| {
        map.price_tiers
            .iter()
            .find(|tier| tier.id == tier_id)
            .map(|tier| tier.name.clone())
            .unwrap_or_default()
    };
    let mut labels = SeatLabels::new();
    for section in &map.sections {
        let price_tier_name = tier_name(&section.price_tier_id);
        if section.rows.is_empty() {
            for offset in 0..section.capacity {
                labels.insert(
                    section.first_seat_index.saturating_add(offset),
                    SeatLabel {
                        section_name: section.name.clone(),
                        price_tier_name: price_tier_name.clone(),
                        ..SeatLabel::default()
                    },
                );
            }
            continue;
        }
        for row in &section.rows {
            for seat in &row.seats {
                labels.insert(
                    seat.seat_index,
                    SeatLabel {
                        section_name: section.name.clone(),
                        row_label: row.label.clone(),
                        seat_number: seat.number.clone(),
                        price_tier_name: price_tier_name.clone(),
                    },
                );
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use boxoffice_contracts::inventory::v1 as pb;
    use boxoffice_runtime::status;

    use super::*;

    fn refusal(code: Code, reason: &str) -> Result<InventoryRefusal, anyhow::Error> {
        InventoryRefusal::try_from(&status::with_reason(code, reason, "no"))
    }

    #[test]
    fn inventory_reasons_become_refusals_and_outages_do_not() {
        assert_eq!(
            refusal(Code::FailedPrecondition, reason::HOLD_ALREADY_COMMITTED).unwrap(),
            InventoryRefusal::HoldAlreadyCommitted
        );
        assert_eq!(
            refusal(Code::FailedPrecondition, reason::HOLD_EXPIRED).unwrap(),
            InventoryRefusal::HoldExpired
        );
        assert_eq!(
            refusal(Code::NotFound, reason::HOLD_NOT_FOUND).unwrap(),
            InventoryRefusal::HoldNotFound
        );
        assert_eq!(
            refusal(Code::Aborted, reason::SEAT_UNAVAILABLE).unwrap(),
            InventoryRefusal::SeatUnavailable
        );
        let other = refusal(Code::PermissionDenied, reason::SERVICE_ROLE_REQUIRED).unwrap();
        assert_eq!(other.reason(), reason::SERVICE_ROLE_REQUIRED);
        assert!(refusal(Code::Unavailable, "UNAVAILABLE").is_err());
        assert!(refusal(Code::Internal, "").is_err());
        assert!(matches!(
            UpstreamError::from(Status::deadline_exceeded("slow")),
            UpstreamError::Unavailable(_)
        ));
    }

    fn money(currency_code: &str, amount_minor: i64) -> Option<pb::Money> {
        Some(pb::Money {
            currency_code: currency_code.to_owned(),
            amount_minor,
        })
    }

    fn wire_hold(state: pb::HoldState, sale_id: &str) -> pb::Hold {
        pb::Hold {
            state: state as i32,
            seats: vec![pb::HeldSeat {
                seat_index: 7,
                section_id: Uuid::now_v7().to_string(),
                price_tier_id: String::new(),
                price: money("GBP", 2500),
            }],
            total_price: money("GBP", 2500),
            expire_time: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
            booking_id: Uuid::now_v7().to_string(),
            sale_id: sale_id.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn a_hold_is_read_with_its_ids_parsed() {
        let sale = Uuid::now_v7();
        let hold = InventoryHold::try_from(wire_hold(pb::HoldState::Committed, &sale.to_string()))
            .unwrap();
        assert_eq!(hold.state, HoldState::Sold);
        assert_eq!(hold.sale_id, Some(sale));
        assert!(hold.booking_id.is_some());
        assert_eq!(hold.seats[0].price_tier_id, None);
        let committed = CommittedHold {
            newly_committed: false,
            hold: Some(hold),
        };
        assert!(committed.sold_to(sale));
        assert!(!committed.sold_to(Uuid::now_v7()));

        let unsold = InventoryHold::try_from(wire_hold(pb::HoldState::Active, "")).unwrap();
        assert_eq!(unsold.sale_id, None);
        assert!(InventoryHold::try_from(wire_hold(pb::HoldState::Committed, "x")).is_err());
    }

    #[test]
    fn seats_are_named_from_the_seat_map() {
        let map = catalog_pb::SeatMap {
            sections: vec![
                catalog_pb::SeatMapSection {
                    name: "Stalls".into(),
                    kind: catalog_pb::SectionKind::Seated as i32,
                    capacity: 2,
                    first_seat_index: 0,
                    rows: vec![catalog_pb::SeatRow {
                        label: "B".into(),
                        seats: vec![
                            catalog_pb::Seat {
                                seat_index: 0,
                                number: "11".into(),
                                ..Default::default()
                            },
                            catalog_pb::Seat {
                                seat_index: 1,
                                number: "12".into(),
                                ..Default::default()
                            },
                        ],
                    }],
                    price_tier_id: "t1".into(),
                    ..Default::default()
                },
                catalog_pb::SeatMapSection {
                    name: "Floor".into(),
                    kind: catalog_pb::SectionKind::GeneralAdmission as i32,
                    capacity: 3,
                    first_seat_index: 2,
                    ..Default::default()
                },
            ],
            price_tiers: vec![catalog_pb::PriceTier {
                id: "t1".into(),
                name: "Standard".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let labels = labels_of(&map);
        assert_eq!(labels[&1].describe(), "Stalls, row B, seat 12 (Standard)");
        assert_eq!(labels[&4].describe(), "Floor");
        assert!(!labels.contains_key(&5));
    }

    #[test]
    fn only_a_hold_priced_in_one_currency_makes_a_booking() {
        let mut wire = wire_hold(pb::HoldState::Active, "");
        let priced = PricedHold::try_from(&InventoryHold::try_from(wire.clone()).unwrap()).unwrap();
        assert_eq!(priced.currency_code, "GBP");
        assert_eq!(priced.seats[0].price_minor, 2500);

        wire.seats[0].price = money("EUR", 2500);
        assert!(PricedHold::try_from(&InventoryHold::try_from(wire.clone()).unwrap()).is_err());
        wire.seats[0].price = money("GBP", -1);
        assert!(PricedHold::try_from(&InventoryHold::try_from(wire.clone()).unwrap()).is_err());
        wire.seats.clear();
        assert!(PricedHold::try_from(&InventoryHold::try_from(wire).unwrap()).is_err());
    }
}
