//! The tonic face of the waitlist (`boxoffice.inventory.v1.WaitlistService`):
//! parses requests, calls [`Waitlist`] as the caller, and turns entries
//! into wire messages.

use std::sync::Arc;

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::domain::{HoldRef, parse_id};
use crate::store::waitlist::EntryRow;
use crate::waitlist::Waitlist;

#[derive(Clone)]
pub(crate) struct WaitlistGrpc {
    waitlist: Arc<Waitlist>,
}

impl WaitlistGrpc {
    pub(crate) fn new(waitlist: Arc<Waitlist>) -> Self {
        Self { waitlist }
    }
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn state(status: &str) -> pb::WaitlistEntryState {
    match status {
        "waiting" => pb::WaitlistEntryState::Waiting,
        "offered" => pb::WaitlistEntryState::Offered,
        "fulfilled" => pb::WaitlistEntryState::Fulfilled,
        "lapsed" => pb::WaitlistEntryState::Lapsed,
        "left" => pb::WaitlistEntryState::Left,
        _ => pb::WaitlistEntryState::Unspecified,
    }
}

fn entry_to_pb(entry: &EntryRow) -> pb::WaitlistEntry {
    pb::WaitlistEntry {
        event_id: entry.event_id.to_string(),
        user_id: entry.user_id.to_string(),
        quantity: entry.quantity,
        state: state(&entry.status) as i32,
        position: entry.position,
        join_time: Some(timestamp(entry.joined_at)),
        price_tier_id: entry
            .price_tier_id
            .map(|tier| tier.to_string())
            .unwrap_or_default(),
        offer: entry
            .offer
            .as_ref()
            .filter(|_| entry.status == "offered")
            .map(|offer| pb::WaitlistOffer {
                hold: HoldRef {
                    event_id: entry.event_id,
                    hold_id: offer.hold_id,
                }
                .name(),
                seat_indexes: offer.seats.clone(),
                expire_time: Some(timestamp(offer.expires_at)),
            }),
    }
}

fn entries_to_pb(entries: &[EntryRow]) -> pb::ListWaitlistEntriesResponse {
    pb::ListWaitlistEntriesResponse {
        entries: entries.iter().map(entry_to_pb).collect(),
    }
}

#[tonic::async_trait]
impl pb::waitlist_service_server::WaitlistService for WaitlistGrpc {
    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn join_waitlist(
        &self,
        request: Request<pb::JoinWaitlistRequest>,
    ) -> Result<Response<pb::WaitlistEntry>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let price_tier_id = match request.price_tier_id.as_str() {
            "" => None,
            tier => Some(parse_id("price_tier_id", tier).map_err(Status::from)?),
        };
        let entry = self
            .waitlist
            .join(&caller, event_id, request.quantity, price_tier_id)
            .await?;
        Ok(Response::new(entry_to_pb(&entry)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn get_waitlist_entry(
        &self,
        request: Request<pb::GetWaitlistEntryRequest>,
    ) -> Result<Response<pb::WaitlistEntry>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let entry = self.waitlist.entry(&caller, event_id).await?;
        Ok(Response::new(entry_to_pb(&entry)))
    }

    #[instrument(skip_all)]
    async fn list_my_waitlist_entries(
        &self,
        request: Request<pb::ListMyWaitlistEntriesRequest>,
    ) -> Result<Response<pb::ListWaitlistEntriesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let entries = self.waitlist.mine(&caller).await?;
        Ok(Response::new(entries_to_pb(&entries)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn leave_waitlist(
        &self,
        request: Request<pb::LeaveWaitlistRequest>,
    ) -> Result<Response<pb::WaitlistEntry>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let entry = self.waitlist.leave(&caller, event_id).await?;
        Ok(Response::new(entry_to_pb(&entry)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn list_waitlist(
        &self,
        request: Request<pb::ListWaitlistRequest>,
    ) -> Result<Response<pb::ListWaitlistEntriesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        let entries = self.waitlist.line(&caller, event_id).await?;
        Ok(Response::new(entries_to_pb(&entries)))
    }
}
