//! The waitlist of sold-out events. The line is PostgreSQL's
//! (`store/waitlist.rs`); the seats are Redis's: while anyone waits, seats
//! that come back (an expired or released hold, a cancelled booking) stay
//! held, parked, in the very Lua step that frees them (`common.lua`), so
//! nobody outside the line can take them. A pass per event (every
//! `waitlist.poll`, on every instance, taking turns by the line's advisory
//! lock) settles the open offers (bought: served; run out or released: out
//! of line) and hands the parked seats to the first users waiting, up to
//! each one's quantity, as holds in their names (`waitlist_offer.lua`, all
//! or nothing), then records the offers and their `WaitlistOfferMade`
//! events in one transaction. An offer is an ordinary hold: the user books
//! and pays it through checkout; when it ends unbought its seats park
//! again and the next pass offers them to the next in line.

use std::sync::Arc;

use boxoffice_contracts::events::v1 as events;
use boxoffice_events::{NewEvent, Outbox, Payload};
use boxoffice_runtime::{Caller, Shutdown};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::config::WaitlistConfig;
use crate::domain::pricing::tier_groups;
use crate::domain::{FieldError, Hold, HoldRef, HoldState, SaleLayout};
use crate::error::InventoryError;
use crate::service::Inventory;
use crate::store::waitlist::{self as store, EntryRow, EntryUpdate, OfferRow};
use crate::store::waitlist_redis::{NewOffer, OfferOutcome, Peek, WaitlistRedis};
use crate::waiting_room::SaleEvents as _;

type Result<T> = std::result::Result<T, InventoryError>;

pub(crate) struct Waitlist {
    inventory: Arc<Inventory>,
    pool: Pool,
    redis: WaitlistRedis,
    outbox: Outbox,
    config: WaitlistConfig,
}

fn unavailable(error: anyhow::Error) -> InventoryError {
    InventoryError::Unavailable(error)
}

fn in_line(entry: &EntryRow) -> bool {
    entry.status == "waiting" || entry.status == "offered"
}

impl Waitlist {
    pub(crate) async fn new(inventory: Arc<Inventory>, pool: Pool) -> anyhow::Result<Self> {
        let config = inventory.config();
        let redis = WaitlistRedis::new(
            inventory.holds(),
            &config.key_prefix,
            config.change_stream_length,
        )
        .await?;
        Ok(Self {
            config: config.waitlist.clone(),
            inventory,
            pool,
            redis,
            outbox: Outbox::new(crate::store::SCHEMA),
        })
    }

    /// Puts the caller in line for `quantity` places while nothing is left
    /// to hold (of `price_tier_id`, when given: a tier sold out while
    /// others are not); answers their entry (the one they have, if in line).
    pub(crate) async fn join(
        &self,
        caller: &Caller,
        event_id: Uuid,
        quantity: u32,
        price_tier_id: Option<Uuid>,
    ) -> Result<EntryRow> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        let max = self.inventory.config().max_seats_per_hold;
        if !(1..=max).contains(&quantity) {
            return Err(FieldError::new("quantity", format!("must be from 1 to {max}")).into());
        }
        let layout = self.inventory.layout(event_id).await?;
        if let Some(tier) = price_tier_id
            && !layout.sections.iter().any(|section| {
                section
                    .price
                    .as_ref()
                    .is_some_and(|price| price.tier_id == tier)
            })
        {
            return Err(
                FieldError::new("price_tier_id", "is not a price tier of this event").into(),
            );
        }
        if let Some(entry) = store::entry(&self.pool, event_id, user_id).await?
            && in_line(&entry)
        {
            return Ok(entry);
        }
        let fetched = self.inventory.availability(event_id).await?;
        if !fetched.on_sale_at(fetched.server_now_ms()) {
            return Err(InventoryError::EventNotOnSale);
        }
        let available = (0..layout.seat_count)
            .filter(|&seat| {
                price_tier_id.is_none_or(|tier| tier_of(&layout, seat) == Some(tier))
                    && for_sale(&layout, seat)
                    && !fetched.taken.contains(seat)
            })
            .count() as u32;
        if available > 0 {
            return Err(InventoryError::NotSoldOut { available });
        }
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        store::lock_line(&transaction, event_id).await?;
        let entry = store::join(&transaction, event_id, user_id, quantity, price_tier_id).await?;
        let line = store::line(&transaction, event_id).await?;
        // Seats coming back park from now on (before the commit: a join
        // that fails to commit only parks seats the next pass frees).
        self.record_waiting(event_id, waiting_in(&line), &layout)
            .await?;
        transaction.commit().await?;
        tracing::info!(%event_id, quantity, tier = ?price_tier_id, "joined a waitlist");
        Ok(entry)
    }

    /// Tells Redis how many users wait, rebuilding its state once if lost.
    async fn record_waiting(
        &self,
        event_id: Uuid,
        waiting: u32,
        layout: &SaleLayout,
    ) -> Result<()> {
        for _ in 0..2 {
            match self
                .redis
                .offer(
                    event_id,
                    waiting,
                    self.offer_ttl_ms(),
                    &layout.currency_code,
                    &[],
                    &[],
                )
                .await
                .map_err(unavailable)?
            {
                OfferOutcome::NeedsRebuild => self.inventory.rebuild_if_missing(event_id).await?,
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    fn offer_ttl_ms(&self) -> i64 {
        i64::try_from(self.config.offer_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// The caller's entry; someone else's is not found.
    pub(crate) async fn entry(&self, caller: &Caller, event_id: Uuid) -> Result<EntryRow> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        store::entry(&self.pool, event_id, user_id)
            .await?
            .ok_or(InventoryError::WaitlistEntryNotFound)
    }

    pub(crate) async fn mine(&self, caller: &Caller) -> Result<Vec<EntryRow>> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        store::entries_of(&self.pool, user_id).await
    }

    /// Admins: the event's line in order.
    pub(crate) async fn line(&self, caller: &Caller, event_id: Uuid) -> Result<Vec<EntryRow>> {
        if !caller.is_admin() {
            return Err(InventoryError::AdminRequired);
        }
        self.inventory.layout(event_id).await?;
        store::event_line(&self.pool, event_id).await
    }

    /// Takes the caller out of line; an open offer is given back and goes
    /// to the next in line.
    pub(crate) async fn leave(&self, caller: &Caller, event_id: Uuid) -> Result<EntryRow> {
        let user_id = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        let layout = self.inventory.layout(event_id).await?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        store::lock_line(&transaction, event_id).await?;
        let line = store::line(&transaction, event_id).await?;
        let Some(mut entry) = line.iter().find(|entry| entry.user_id == user_id).cloned() else {
            return Err(InventoryError::WaitlistEntryNotFound);
        };
        let update = EntryUpdate {
            user_id,
            status: "left",
            quantity: entry.quantity,
            offer: None,
        };
        store::apply(&transaction, event_id, std::slice::from_ref(&update)).await?;
        let waiting = waiting_in(&line) - u32::from(entry.status == "waiting");
        self.record_waiting(event_id, waiting, &layout).await?;
        transaction.commit().await?;
        if let Some(offer) = entry.offer.take() {
            let hold = HoldRef {
                event_id,
                hold_id: offer.hold_id,
            };
            // Its seats park for the next in line (or go back on sale).
            if let Err(error) = self.inventory.holds().release(hold, user_id).await {
                tracing::warn!(error = format!("{error:#}"), %event_id, "could not give back a left offer; it runs out instead");
            }
            self.inventory.state_changed(event_id);
        }
        entry.status = "left".to_owned();
        entry.position = 0;
        Ok(entry)
    }

    /// One offer pass over the event's line (see the module docs).
    pub(crate) async fn pass(&self, event_id: Uuid) -> Result<()> {
        let layout = self.inventory.layout(event_id).await?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        store::lock_line(&transaction, event_id).await?;
        let line = store::line(&transaction, event_id).await?;
        let open: Vec<Uuid> = line
            .iter()
            .filter_map(|entry| entry.offer.as_ref().map(|offer| offer.hold_id))
            .collect();
        let Some(peek) = self
            .redis
            .peek(event_id, &open)
            .await
            .map_err(unavailable)?
        else {
            return self.inventory.rebuild_if_missing(event_id).await;
        };
        let mut plan = plan(&line, &peek, &|seat| tier_of(&layout, seat));
        if plan.updates.is_empty() && peek.parked.is_empty() && peek.waiting == plan.waiting {
            return Ok(());
        }
        let offers: Vec<NewOffer> = plan
            .offers
            .iter()
            .map(|(owner, seats)| {
                let (tier_groups, total_minor) = tier_groups(&layout, seats);
                NewOffer {
                    hold_id: Uuid::now_v7(),
                    owner: *owner,
                    total_minor,
                    tier_groups,
                    seats: seats.clone(),
                }
            })
            .collect();
        let outcome = self
            .redis
            .offer(
                event_id,
                plan.waiting,
                self.offer_ttl_ms(),
                &layout.currency_code,
                &plan.free,
                &offers,
            )
            .await
            .map_err(unavailable)?;
        let (expires_ms, first) = match outcome {
            OfferOutcome::Made { expires_ms, first } => (expires_ms, first),
            // Decided on seats that moved since, or nothing to offer now:
            // the next pass decides again.
            OfferOutcome::Stale | OfferOutcome::Closed => return Ok(()),
            OfferOutcome::NeedsRebuild => return self.inventory.rebuild_if_missing(event_id).await,
        };
        let expires_at =
            DateTime::<Utc>::from_timestamp_millis(expires_ms).unwrap_or_else(Utc::now);
        for offer in &offers {
            plan.updates.push(EntryUpdate {
                user_id: offer.owner,
                status: "offered",
                quantity: plan.quantity_of(offer.owner),
                offer: Some(OfferRow {
                    hold_id: offer.hold_id,
                    seats: offer.seats.clone(),
                    expires_at,
                }),
            });
        }
        let recorded = self
            .record(&transaction, event_id, &plan.updates, &offers, expires_ms)
            .await;
        let recorded = match recorded {
            Ok(()) => transaction.commit().await.map_err(InventoryError::from),
            Err(error) => Err(error),
        };
        if let Err(error) = recorded {
            // Unrecorded offers must not stand: give their seats back to
            // the line (best effort; otherwise they run out).
            for offer in &offers {
                let hold = HoldRef {
                    event_id,
                    hold_id: offer.hold_id,
                };
                let _ = self.inventory.holds().release(hold, offer.owner).await;
            }
            return Err(error);
        }
        if !offers.is_empty() {
            if first {
                self.inventory
                    .holds()
                    .schedule_sweep(event_id, expires_ms)
                    .await;
            }
            tracing::info!(%event_id, offers = offers.len(), "waitlist offers made");
        }
        self.inventory.state_changed(event_id);
        Ok(())
    }

    async fn record(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        event_id: Uuid,
        updates: &[EntryUpdate],
        offers: &[NewOffer],
        expires_ms: i64,
    ) -> Result<()> {
        store::apply(transaction, event_id, updates).await?;
        let expire_time = prost_types::Timestamp {
            seconds: expires_ms.div_euclid(1000),
            nanos: (expires_ms.rem_euclid(1000) * 1_000_000) as i32,
        };
        let published: Vec<NewEvent> = offers
            .iter()
            .map(|offer| {
                NewEvent::new(
                    "event",
                    event_id,
                    Payload::WaitlistOfferMade(events::WaitlistOfferMade {
                        event_id: event_id.to_string(),
                        user_id: offer.owner.to_string(),
                        hold: HoldRef {
                            event_id,
                            hold_id: offer.hold_id,
                        }
                        .name(),
                        seat_indexes: offer.seats.clone(),
                        expire_time: Some(expire_time),
                    }),
                )
            })
            .collect();
        self.outbox
            .append(transaction, published)
            .await
            .map_err(InventoryError::Unavailable)?;
        Ok(())
    }
}

fn tier_of(layout: &SaleLayout, seat: u32) -> Option<Uuid> {
    layout
        .section_of(seat)
        .and_then(|section| section.price.as_ref())
        .map(|price| price.tier_id)
}

fn for_sale(layout: &SaleLayout, seat: u32) -> bool {
    layout
        .section_of(seat)
        .is_some_and(|section| section.price.is_some())
}

fn waiting_in(line: &[EntryRow]) -> u32 {
    line.iter()
        .filter(|entry| entry.status == "waiting")
        .count() as u32
}

/// What a pass decided: entries whose state changed, the offers to make
/// (user, seats) in line order, how many users still wait after them, and
/// the parked seats nobody left in line wants (their tier is not waited
/// for), which go back on sale.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    updates: Vec<EntryUpdate>,
    offers: Vec<(Uuid, Vec<u32>)>,
    quantities: Vec<(Uuid, u32)>,
    waiting: u32,
    free: Vec<u32>,
}

impl Plan {
    fn quantity_of(&self, user: Uuid) -> u32 {
        self.quantities
            .iter()
            .find(|(id, _)| *id == user)
            .map_or(0, |(_, quantity)| *quantity)
    }
}

impl PartialEq for EntryUpdate {
    fn eq(&self, other: &Self) -> bool {
        self.user_id == other.user_id
            && self.status == other.status
            && self.quantity == other.quantity
            && self.offer == other.offer
    }
}

impl Eq for EntryUpdate {}

/// Settles the open offers by their holds' states, then gives the parked
/// seats, in the order they came back, to the waiting entries in line
/// order, each up to its quantity and only of its tier (`tier_of` a seat)
/// if it waits for one. Pure: the pass does the I/O.
fn plan(line: &[EntryRow], peek: &Peek, tier_of: &dyn Fn(u32) -> Option<Uuid>) -> Plan {
    let mut plan = Plan::default();
    let mut holds = peek.offers.iter();
    let mut parked = peek.parked.clone();
    // The tiers still waited for after this pass (`None`: any seat).
    let mut still_wanted: Vec<Option<Uuid>> = Vec::new();
    for entry in line {
        let (mut status, mut quantity) = (entry.status.as_str(), entry.quantity);
        if entry.offer.is_some() {
            let hold: Option<&Hold> = holds.next().and_then(Option::as_ref);
            match hold.map(|hold| hold.state) {
                Some(HoldState::Active) => {}
                Some(HoldState::Committed) => {
                    let bought = hold.map_or(0, |hold| hold.seats.len() as u32);
                    quantity = quantity.saturating_sub(bought);
                    status = if quantity > 0 { "waiting" } else { "fulfilled" };
                }
                Some(HoldState::Expired | HoldState::Released) => status = "lapsed",
                // Redis lost the offer: the entry waits again at its place.
                None => status = "waiting",
            }
            if status != "offered" {
                plan.updates.push(EntryUpdate {
                    user_id: entry.user_id,
                    status: static_status(status),
                    quantity,
                    offer: None,
                });
            }
        }
        if status != "waiting" {
            continue;
        }
        let wants = |seat: u32| {
            entry
                .price_tier_id
                .is_none_or(|tier| tier_of(seat) == Some(tier))
        };
        let mut seats = Vec::new();
        parked.retain(|&seat| {
            let take = seats.len() < quantity as usize && wants(seat);
            if take {
                seats.push(seat);
            }
            !take
        });
        if seats.is_empty() {
            plan.waiting += 1;
            still_wanted.push(entry.price_tier_id);
        } else {
            plan.updates
                .retain(|update| update.user_id != entry.user_id);
            plan.quantities.push((entry.user_id, quantity));
            plan.offers.push((entry.user_id, seats));
        }
    }
    plan.free = parked
        .into_iter()
        .filter(|&seat| {
            !still_wanted
                .iter()
                .any(|wanted| wanted.is_none_or(|tier| tier_of(seat) == Some(tier)))
        })
        .collect();
    plan
}

fn static_status(status: &str) -> &'static str {
    match status {
        "waiting" => "waiting",
        "offered" => "offered",
        "fulfilled" => "fulfilled",
        "lapsed" => "lapsed",
        _ => "left",
    }
}

/// Runs a pass over every event with a line, every `poll`, until shutdown.
pub(crate) async fn run(waitlist: Arc<Waitlist>, shutdown: Shutdown) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(waitlist.config.poll) => {}
        }
        let result = async {
            for event_id in store::events_with_lines(&waitlist.pool).await? {
                waitlist.pass(event_id).await?;
            }
            Ok::<(), InventoryError>(())
        }
        .await;
        match result {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(error = %error, failures, "waitlist offer pass failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: Uuid, status: &str, quantity: u32, offer: Option<Uuid>) -> EntryRow {
        EntryRow {
            event_id: Uuid::nil(),
            user_id: user,
            quantity,
            status: status.to_owned(),
            joined_at: Utc::now(),
            offer: offer.map(|hold_id| OfferRow {
                hold_id,
                seats: vec![1],
                expires_at: Utc::now(),
            }),
            position: 0,
            price_tier_id: None,
        }
    }

    fn hold(owner: Uuid, state: HoldState, seats: Vec<u32>) -> Hold {
        Hold {
            hold: HoldRef {
                event_id: Uuid::nil(),
                hold_id: Uuid::nil(),
            },
            owner,
            seats,
            total_minor: 0,
            currency_code: "EUR".into(),
            state,
            created_ms: 0,
            expires_ms: 0,
            booking_id: None,
            sale_id: None,
            price_locks: Vec::new(),
        }
    }

    #[test]
    fn parked_seats_go_to_the_first_waiting_in_order_up_to_their_quantity() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let line = [
            entry(a, "waiting", 2, None),
            entry(b, "waiting", 2, None),
            entry(c, "waiting", 1, None),
        ];
        let peek = Peek {
            parked: vec![7, 3, 9],
            waiting: 3,
            offers: vec![],
        };
        let plan = plan(&line, &peek, &|_| None);
        assert_eq!(plan.offers, vec![(a, vec![7, 3]), (b, vec![9])]);
        assert_eq!(plan.waiting, 1, "c still waits");
        assert!(plan.updates.is_empty());
    }

    #[test]
    fn an_offer_that_ran_out_leaves_the_line_and_its_seats_go_to_the_next() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let line = [
            entry(a, "offered", 1, Some(Uuid::new_v4())),
            entry(b, "waiting", 1, None),
        ];
        let peek = Peek {
            parked: vec![1],
            waiting: 1,
            offers: vec![Some(hold(a, HoldState::Expired, vec![1]))],
        };
        let plan = plan(&line, &peek, &|_| None);
        assert_eq!(plan.offers, vec![(b, vec![1])]);
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(plan.updates[0].user_id, a);
        assert_eq!(plan.updates[0].status, "lapsed");
        assert_eq!(plan.waiting, 0);
    }

    #[test]
    fn a_partly_served_entry_keeps_its_place_for_the_rest() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let line = [
            entry(a, "offered", 3, Some(Uuid::new_v4())),
            entry(b, "waiting", 1, None),
        ];
        let peek = Peek {
            parked: vec![4],
            waiting: 1,
            offers: vec![Some(hold(a, HoldState::Committed, vec![1]))],
        };
        let plan = plan(&line, &peek, &|_| None);
        assert_eq!(
            plan.offers,
            vec![(a, vec![4])],
            "a is first again, for 2 more"
        );
        assert_eq!(plan.quantity_of(a), 2);
        assert_eq!(plan.waiting, 1);
    }

    #[test]
    fn an_open_offer_holds_its_place_and_changes_nothing() {
        let a = Uuid::new_v4();
        let line = [entry(a, "offered", 1, Some(Uuid::new_v4()))];
        let peek = Peek {
            parked: vec![],
            waiting: 0,
            offers: vec![Some(hold(a, HoldState::Active, vec![1]))],
        };
        assert_eq!(plan(&line, &peek, &|_| None), Plan::default());
    }

    #[test]
    fn entries_for_a_tier_get_only_its_seats_and_seats_nobody_waits_for_go_back() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (stalls, circle, box_tier) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // Seats 0-9 are stalls, 10-19 circle, 20-29 boxes.
        let tier_of = |seat: u32| {
            Some(match seat {
                0..=9 => stalls,
                10..=19 => circle,
                _ => box_tier,
            })
        };
        let for_tier = |user, quantity, tier| EntryRow {
            price_tier_id: Some(tier),
            ..entry(user, "waiting", quantity, None)
        };
        let line = [
            for_tier(a, 2, circle),
            entry(b, "waiting", 1, None),
            for_tier(c, 1, circle),
        ];
        let peek = Peek {
            parked: vec![3, 21, 12, 4],
            waiting: 3,
            offers: vec![],
        };
        let plan = plan(&line, &peek, &tier_of);
        // a takes the one circle seat; b (any tier) the first seat back;
        // c waits for the circle; 21 (a box) and 4 are wanted by nobody
        // left waiting for them (c wants the circle only).
        assert_eq!(plan.offers, vec![(a, vec![12]), (b, vec![3])]);
        assert_eq!(plan.waiting, 1);
        assert_eq!(plan.free, vec![21, 4]);
    }
}
