//! The tonic face of inventory: wire messages are parsed into domain types
//! here (and only here), and domain values turned back into messages.
//! WatchAvailability runs one task per stream that forwards the batches of
//! the event's shared poller (`watch_hub.rs`) and ends when the client goes
//! away or the server shuts down.

use std::pin::Pin;
use std::sync::Arc;

use boxoffice_contracts::inventory::v1 as pb;
use boxoffice_runtime::{Caller, Shutdown};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use crate::domain::{
    BestAvailableQuery, Change, ChangeKind, ChangesOutcome, CurrentPrice, FieldError, Hold,
    HoldRef, HoldState, PricingRule, SaleLayout, TierRule, optional_id, parse_id,
};
use crate::error::InventoryError;
use crate::service::{Inventory, SeatRequest};
use crate::snapshots::Fetched;
use crate::sold_out::{SoldOutFeed, SoldOutSet};
use crate::watch_hub::{CHANGES_PER_READ, WatchHub, unseen};

/// Updates buffered per watcher before the watcher is considered too slow.
const WATCH_BUFFER: usize = 256;

#[derive(Clone)]
pub struct InventoryGrpc {
    inventory: Arc<Inventory>,
    /// The pollers behind WatchAvailability.
    watch_hub: Arc<WatchHub>,
    /// The poller behind WatchSoldOut (none: the RPC is unimplemented).
    sold_out: Option<Arc<SoldOutFeed>>,
    shutdown: Shutdown,
}

impl InventoryGrpc {
    pub fn new(inventory: Arc<Inventory>, watch_hub: Arc<WatchHub>, shutdown: Shutdown) -> Self {
        Self {
            inventory,
            watch_hub,
            sold_out: None,
            shutdown,
        }
    }

    /// Serves WatchSoldOut from `feed`.
    pub fn with_sold_out(mut self, feed: Arc<SoldOutFeed>) -> Self {
        self.sold_out = Some(feed);
        self
    }
}

type SoldOutStream = Pin<Box<dyn Stream<Item = Result<pb::SoldOutEvents, Status>> + Send>>;

/// Forwards every new sold-out set until the follower goes away.
async fn follow_sold_out(
    mut sets: tokio::sync::watch::Receiver<SoldOutSet>,
    sender: mpsc::Sender<Result<pb::SoldOutEvents, Status>>,
    shutdown: Shutdown,
) {
    loop {
        let current = sets.borrow_and_update().clone();
        if let Some(events) = current {
            let message = pb::SoldOutEvents {
                event_ids: events.iter().map(Uuid::to_string).collect(),
            };
            if sender.send(Ok(message)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = sets.changed() => if changed.is_err() { return },
            () = sender.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::AvailabilityUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl pb::inventory_service_server::InventoryService for InventoryGrpc {
    // Hot paths trace at debug: an info span per request costs at 10k/s.
    #[instrument(level = "debug", skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::Availability>, Status> {
        let event_id = parse_id("event_id", &request.get_ref().event_id).map_err(Status::from)?;
        // Unknown events answer NOT_FOUND without touching Redis.
        let layout = self.inventory.layout(event_id).await?;
        let snapshot = self.inventory.availability(event_id).await?;
        Ok(Response::new(snapshot_to_pb(event_id, &snapshot, &layout)))
    }

    type WatchAvailabilityStream = WatchStream;

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn watch_availability(
        &self,
        request: Request<pb::WatchAvailabilityRequest>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let resume = match request.cursor.as_str() {
            "" => None,
            cursor => Some(parse_cursor(cursor).ok_or_else(|| {
                Status::from(FieldError::new(
                    "cursor",
                    "is not a cursor this service issued",
                ))
            })?),
        };
        self.inventory.layout(event_id).await?;
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch(
            self.inventory.clone(),
            self.watch_hub.clone(),
            event_id,
            resume,
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[instrument(level = "debug", skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn hold_seats(
        &self,
        request: Request<pb::HoldSeatsRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let layout = self.inventory.layout(event_id).await?;
        let seat_request = match request.selection {
            Some(pb::hold_seats_request::Selection::Seats(seats)) => {
                SeatRequest::Seats(seats.seat_indexes)
            }
            Some(pb::hold_seats_request::Selection::BestAvailable(best)) => {
                if let Some(max_price) = &best.max_price
                    && max_price.currency_code != layout.currency_code
                {
                    return Err(Status::from(FieldError::new(
                        "best_available.max_price.currency_code",
                        format!("this event sells in {}", layout.currency_code),
                    )));
                }
                SeatRequest::BestAvailable(BestAvailableQuery {
                    quantity: best.quantity,
                    section_id: optional_id("best_available.section_id", &best.section_id)
                        .map_err(Status::from)?,
                    price_tier_id: optional_id("best_available.price_tier_id", &best.price_tier_id)
                        .map_err(Status::from)?,
                    max_price_minor: best.max_price.map(|price| price.amount_minor),
                })
            }
            None => {
                return Err(Status::from(FieldError::new(
                    "selection",
                    "give seats or best_available",
                )));
            }
        };
        let hold = self
            .inventory
            .hold(&caller, event_id, seat_request, &request.admission_token)
            .await?;
        Ok(Response::new(hold_to_pb(&hold, &layout)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_hold(
        &self,
        request: Request<pb::GetHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = Caller::of(&request);
        let hold = HoldRef::parse("name", &request.get_ref().name).map_err(Status::from)?;
        let layout = self
            .inventory
            .layout(hold.event_id)
            .await
            .map_err(|_| InventoryError::HoldNotFound)?;
        let found = self.inventory.get_hold(&caller, hold).await?;
        Ok(Response::new(hold_to_pb(&found, &layout)))
    }

    #[instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn release_hold(
        &self,
        request: Request<pb::ReleaseHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = Caller::of(&request);
        let hold = HoldRef::parse("name", &request.get_ref().name).map_err(Status::from)?;
        let layout = self
            .inventory
            .layout(hold.event_id)
            .await
            .map_err(|_| InventoryError::HoldNotFound)?;
        let released = self.inventory.release_hold(&caller, hold).await?;
        Ok(Response::new(hold_to_pb(&released, &layout)))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name, booking_id = %request.get_ref().booking_id))]
    async fn commit_hold(
        &self,
        request: Request<pb::CommitHoldRequest>,
    ) -> Result<Response<pb::CommitHoldResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let hold = HoldRef::parse("name", &request.name).map_err(Status::from)?;
        let booking_id = parse_id("booking_id", &request.booking_id).map_err(Status::from)?;
        let user_id = parse_id("user_id", &request.user_id).map_err(Status::from)?;
        let sale_id = optional_id("sale_id", &request.sale_id).map_err(Status::from)?;
        let layout = self
            .inventory
            .layout(hold.event_id)
            .await
            .map_err(|_| InventoryError::HoldNotFound)?;
        let committed = self
            .inventory
            .commit_hold(&caller, hold, booking_id, sale_id, user_id)
            .await?;
        Ok(Response::new(pb::CommitHoldResponse {
            hold: Some(hold_to_pb(&committed.hold, &layout)),
            newly_committed: committed.newly_committed,
        }))
    }

    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn extend_hold(
        &self,
        request: Request<pb::ExtendHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let hold = HoldRef::parse("name", &request.name).map_err(Status::from)?;
        let user_id = parse_id("user_id", &request.user_id).map_err(Status::from)?;
        let wanted = extension_from_pb(request.extension).map_err(Status::from)?;
        let layout = self
            .inventory
            .layout(hold.event_id)
            .await
            .map_err(|_| InventoryError::HoldNotFound)?;
        let extended = self
            .inventory
            .extend_hold(&caller, hold, user_id, wanted)
            .await?;
        Ok(Response::new(hold_to_pb(&extended, &layout)))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id, booking_id = %request.get_ref().booking_id))]
    async fn release_seats(
        &self,
        request: Request<pb::ReleaseSeatsRequest>,
    ) -> Result<Response<pb::ReleaseSeatsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        let booking_id = parse_id("booking_id", &request.booking_id).map_err(Status::from)?;
        let seat_indexes = self
            .inventory
            .release_seats(&caller, event_id, booking_id)
            .await?;
        Ok(Response::new(pb::ReleaseSeatsResponse { seat_indexes }))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn set_pricing_rule(
        &self,
        request: Request<pb::SetPricingRuleRequest>,
    ) -> Result<Response<pb::PricingRule>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event_id = parse_id("event_id", &request.event_id).map_err(Status::from)?;
        if !caller.is_admin() {
            return Err(InventoryError::AdminRequired.into());
        }
        let layout = self.inventory.layout(event_id).await?;
        let tiers =
            tier_rules_from_pb(request.tiers, &layout.currency_code).map_err(Status::from)?;
        let (rule, version) = self
            .inventory
            .set_pricing_rule(&caller, event_id, tiers)
            .await?;
        Ok(Response::new(pb::PricingRule {
            version,
            ..pricing_rule_to_pb(event_id, &rule, &layout.currency_code)
        }))
    }

    type WatchSoldOutStream = SoldOutStream;

    #[instrument(skip_all)]
    async fn watch_sold_out(
        &self,
        request: Request<pb::WatchSoldOutRequest>,
    ) -> Result<Response<Self::WatchSoldOutStream>, Status> {
        let caller = Caller::of(&request);
        if !(caller.has_role(Caller::SERVICE) || caller.is_admin()) {
            return Err(InventoryError::ServiceRoleRequired.into());
        }
        let Some(feed) = &self.sold_out else {
            return Err(Status::unimplemented(
                "this inventory does not publish sold-out events",
            ));
        };
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(follow_sold_out(
            feed.subscribe(&self.shutdown),
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// A cursor is `{epoch}:{stream id}`: the epoch changes whenever the
/// event's Redis state is rebuilt, so an old cursor is never resumed across
/// lost state.
fn parse_cursor(cursor: &str) -> Option<(String, String)> {
    let (epoch, id) = cursor.split_once(':')?;
    let (ms, seq) = id.split_once('-')?;
    let valid = !epoch.is_empty()
        && epoch.bytes().all(|b| b.is_ascii_hexdigit())
        && ms.parse::<u64>().is_ok()
        && seq.parse::<u64>().is_ok();
    valid.then(|| (epoch.to_owned(), id.to_owned()))
}

fn format_cursor(epoch: &str, id: &str) -> String {
    format!("{epoch}:{id}")
}

fn stream_id_time(id: &str) -> Option<prost_types::Timestamp> {
    let ms: i64 = id.split_once('-')?.0.parse().ok()?;
    Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Sends a snapshot (unless resuming), then every change, from the event's
/// shared poller; catches up from Redis itself whenever its cursor is not
/// where a batch starts, and starts over with a snapshot when the cursor
/// cannot be resumed.
async fn watch(
    inventory: Arc<Inventory>,
    watch_hub: Arc<WatchHub>,
    event_id: Uuid,
    resume: Option<(String, String)>,
    sender: mpsc::Sender<Result<pb::AvailabilityUpdate, Status>>,
    shutdown: Shutdown,
) {
    // Subscribed before the first snapshot is read, so every batch after
    // it starts at or before the snapshot's cursor.
    let mut batches = watch_hub.subscribe(event_id);
    let mut position = resume;
    let mut caught_up = false;
    loop {
        let (epoch, mut last) = match position.take() {
            Some(position) => position,
            None => match inventory.availability(event_id).await {
                Ok(fetched) => {
                    let layout = match inventory.layout(event_id).await {
                        Ok(layout) => layout,
                        Err(error) => {
                            let _ = sender.send(Err(error.into())).await;
                            return;
                        }
                    };
                    caught_up = true;
                    let position = (
                        fetched.snapshot.epoch.clone(),
                        fetched.snapshot.last_id.clone(),
                    );
                    let update = pb::availability_update::Update::Snapshot(snapshot_to_pb(
                        event_id, &fetched, &layout,
                    ));
                    if sender
                        .send(Ok(pb::AvailabilityUpdate {
                            update: Some(update),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    position
                }
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            },
        };
        if !caught_up {
            match catch_up(&inventory, event_id, &epoch, &mut last, &sender).await {
                CatchUp::Done => caught_up = true,
                CatchUp::Restart => continue,
                CatchUp::Stop => return,
            }
        }
        let batch = tokio::select! {
            () = shutdown.cancelled() => return,
            () = sender.closed() => return,
            batch = batches.recv() => batch,
        };
        match batch {
            Ok(batch) => {
                if let Some(changes) = unseen(&batch, &epoch, &last) {
                    for change in changes {
                        if sender
                            .send(Ok(change_to_pb(&epoch, change.clone())))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        last.clone_from(&change.id);
                    }
                } else {
                    caught_up = false;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => caught_up = false,
            Err(broadcast::error::RecvError::Closed) => {
                batches = watch_hub.subscribe(event_id);
                caught_up = false;
            }
        }
        position = Some((epoch, last));
    }
}

enum CatchUp {
    Done,
    /// The cursor cannot be resumed: start again from a snapshot.
    Restart,
    Stop,
}

/// Reads and sends every change after `last` straight from Redis.
async fn catch_up(
    inventory: &Inventory,
    event_id: Uuid,
    epoch: &str,
    last: &mut String,
    sender: &mpsc::Sender<Result<pb::AvailabilityUpdate, Status>>,
) -> CatchUp {
    loop {
        let outcome = match inventory
            .changes(event_id, epoch, last, CHANGES_PER_READ)
            .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return CatchUp::Stop;
            }
        };
        match outcome {
            ChangesOutcome::Changes(changes) => {
                let full = changes.len() as u32 >= CHANGES_PER_READ;
                for change in changes {
                    let id = change.id.clone();
                    if sender.send(Ok(change_to_pb(epoch, change))).await.is_err() {
                        return CatchUp::Stop;
                    }
                    *last = id;
                }
                if !full {
                    return CatchUp::Done;
                }
            }
            ChangesOutcome::Reset => return CatchUp::Restart,
            ChangesOutcome::NeedsRebuild => {
                if let Err(error) = inventory.rebuild_if_missing(event_id).await {
                    let _ = sender.send(Err(error.into())).await;
                    return CatchUp::Stop;
                }
                return CatchUp::Restart;
            }
        }
    }
}

fn change_to_pb(epoch: &str, change: Change) -> pb::AvailabilityUpdate {
    let kind = match change.kind {
        ChangeKind::Held => pb::ChangeKind::Held,
        ChangeKind::Released => pb::ChangeKind::Released,
        ChangeKind::Expired => pb::ChangeKind::Expired,
        ChangeKind::Sold => pb::ChangeKind::Sold,
        ChangeKind::Unsold => pb::ChangeKind::Unsold,
        ChangeKind::Status | ChangeKind::Reset => pb::ChangeKind::Status,
    };
    pb::AvailabilityUpdate {
        update: Some(pb::availability_update::Update::Change(
            pb::AvailabilityChange {
                kind: kind as i32,
                cursor: format_cursor(epoch, &change.id),
                change_time: stream_id_time(&change.id),
                seat_indexes: change.seats,
            },
        )),
    }
}

/// A shared read as a message: the counts were made once per read, so this
/// copies the two bitmaps and prices the tiers from the sold one (a popcount
/// over each dynamic tier's seat ranges).
pub fn snapshot_to_pb(event_id: Uuid, fetched: &Fetched, layout: &SaleLayout) -> pb::Availability {
    let snapshot = &fetched.snapshot;
    let money = |amount_minor| pb::Money {
        currency_code: layout.currency_code.clone(),
        amount_minor,
    };
    let tier_prices = snapshot
        .pricing
        .current_prices(layout, &snapshot.sold)
        .into_iter()
        .map(|price: CurrentPrice| pb::TierPrice {
            price_tier_id: price.tier_id.to_string(),
            base_price: Some(money(price.base_minor)),
            current_price: Some(money(price.price_minor)),
            sold_count: price.sold,
            seat_count: price.seat_count,
            rule: price
                .rule
                .map(|rule| tier_rule_to_pb(&rule, &layout.currency_code)),
        })
        .collect();
    pb::Availability {
        event_id: event_id.to_string(),
        seat_count: snapshot.seat_count,
        available_count: fetched.available_count,
        on_sale: snapshot.open && snapshot.now_ms >= snapshot.on_sale_ms,
        cursor: format_cursor(&snapshot.epoch, &snapshot.last_id),
        sold: snapshot.sold.as_bytes().to_vec(),
        held: snapshot.held.as_bytes().to_vec(),
        tier_prices,
    }
}

pub fn tier_rule_to_pb(rule: &TierRule, currency_code: &str) -> pb::TierPricingRule {
    let money = |amount_minor| pb::Money {
        currency_code: currency_code.to_owned(),
        amount_minor,
    };
    pb::TierPricingRule {
        price_tier_id: rule.tier_id.to_string(),
        step_change_basis_points: rule.step_change_bp,
        step_sold_basis_points: rule.step_sold_bp,
        floor_price: Some(money(rule.floor_minor)),
        ceiling_price: Some(money(rule.ceiling_minor)),
    }
}

/// A wire rule as domain entries (checked against the layout by
/// [`PricingRule::new`]): ids parsed, money in the event's currency.
fn tier_rules_from_pb(
    tiers: Vec<pb::TierPricingRule>,
    currency_code: &str,
) -> Result<Vec<TierRule>, FieldError> {
    tiers
        .into_iter()
        .enumerate()
        .map(|(index, tier)| {
            let field = |name: &str| format!("tiers[{index}].{name}");
            let amount = |name: &str, money: Option<pb::Money>| match money {
                None => Err(FieldError::new(field(name), "is required")),
                Some(money) if money.currency_code != currency_code => Err(FieldError::new(
                    field(name),
                    format!("this event sells in {currency_code}"),
                )),
                Some(money) => Ok(money.amount_minor),
            };
            Ok(TierRule {
                tier_id: parse_id(&field("price_tier_id"), &tier.price_tier_id)?,
                step_change_bp: tier.step_change_basis_points,
                step_sold_bp: tier.step_sold_basis_points,
                floor_minor: amount("floor_price", tier.floor_price)?,
                ceiling_minor: amount("ceiling_price", tier.ceiling_price)?,
            })
        })
        .collect()
}

fn pricing_rule_to_pb(event_id: Uuid, rule: &PricingRule, currency_code: &str) -> pb::PricingRule {
    pb::PricingRule {
        event_id: event_id.to_string(),
        tiers: rule
            .tiers()
            .iter()
            .map(|tier| tier_rule_to_pb(tier, currency_code))
            .collect(),
        version: 0,
    }
}

fn timestamp_ms(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

pub fn hold_to_pb(hold: &Hold, layout: &SaleLayout) -> pb::Hold {
    let money = |amount_minor| pb::Money {
        currency_code: hold.currency_code.clone(),
        amount_minor,
    };
    pb::Hold {
        name: hold.hold.name(),
        event_id: hold.hold.event_id.to_string(),
        user_id: hold.owner.to_string(),
        seats: hold
            .seats
            .iter()
            .map(|seat| {
                let section = layout.section_of(*seat);
                let price = section.and_then(|section| section.price.as_ref());
                pb::HeldSeat {
                    seat_index: *seat,
                    section_id: section.map(|s| s.id.to_string()).unwrap_or_default(),
                    price_tier_id: price.map(|p| p.tier_id.to_string()).unwrap_or_default(),
                    price: price.map(|p| money(hold.seat_price(p.tier_id, p.amount_minor))),
                }
            })
            .collect(),
        total_price: Some(money(hold.total_minor)),
        state: match hold.state {
            HoldState::Active => pb::HoldState::Active,
            HoldState::Expired => pb::HoldState::Expired,
            HoldState::Released => pb::HoldState::Released,
            HoldState::Committed => pb::HoldState::Committed,
        } as i32,
        create_time: timestamp_ms(hold.created_ms),
        expire_time: timestamp_ms(hold.expires_ms),
        booking_id: hold.booking_id.map(|id| id.to_string()).unwrap_or_default(),
        sale_id: hold.sale_id.map(|id| id.to_string()).unwrap_or_default(),
        price_locks: hold
            .price_locks
            .iter()
            .map(|lock| pb::PriceLock {
                price_tier_id: lock.tier_id.to_string(),
                price: Some(money(lock.price_minor)),
                sold_count: lock.sold,
                seat_count: lock.seat_count,
            })
            .collect(),
    }
}

/// ExtendHold's `extension`: unset or zero for "as long as allowed",
/// otherwise 1 s..1 h.
fn extension_from_pb(
    extension: Option<prost_types::Duration>,
) -> Result<Option<std::time::Duration>, FieldError> {
    let Some(extension) = extension else {
        return Ok(None);
    };
    if extension.seconds == 0 && extension.nanos == 0 {
        return Ok(None);
    }
    if !(1..=3_600).contains(&extension.seconds) || !(0..1_000_000_000).contains(&extension.nanos) {
        return Err(FieldError::new("extension", "must be from 1 s to 1 h"));
    }
    Ok(Some(std::time::Duration::new(
        extension.seconds as u64,
        extension.nanos as u32,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let cursor = format_cursor("ab12", "1700000000000-3");
        assert_eq!(
            parse_cursor(&cursor),
            Some(("ab12".into(), "1700000000000-3".into()))
        );
        assert_eq!(parse_cursor("nonsense"), None);
        assert_eq!(parse_cursor("zz:1-1"), None);
        assert_eq!(parse_cursor("ab:1-x"), None);
    }
}
