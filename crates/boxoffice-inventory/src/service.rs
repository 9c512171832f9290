//! Inventory's use cases between the wire and the stores: holding seats
//! (explicit or best available), reading and releasing holds, committing a
//! hold to PostgreSQL, putting sold seats back, availability, and rebuilding
//! lost Redis state from PostgreSQL. A hold is one round trip to Redis
//! (`hold.lua`, the waiting room's check included); choosing seats and
//! refusing hopeless requests use the process's shared snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use boxoffice_runtime::Caller;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::commit::{CommitAnswer, CommitRequest, CommitStages};
use crate::config::InventoryConfig;
use crate::domain::admission::{AdmissionClaim, AdmissionSigner};
use crate::domain::pricing::tier_groups;
use crate::domain::{
    self, BestAvailableQuery, ChangesOutcome, CurrentPrices, EventTruth, Hold, HoldRef, HoldState,
    PricingRule, PricingTable, SaleLayout, TierRule, best_available_ranked, total_price,
};
use crate::error::InventoryError;
use crate::snapshots::{Fetched, HOLD_VIEW_MAX_AGE, SnapshotCache, View};
use crate::store::postgres::{CommitOutcome, StoredEvent, TicketStore};
use crate::store::redis::{
    HoldOutcome, HoldStore, PricingSet, RebuildMode, ReleaseOutcome, Snapshot,
};
use crate::waiting_room::SaleEvents;
use crate::watch_hub::ChangeSource;

type Result<T> = std::result::Result<T, InventoryError>;

/// Best-available retries after losing the race for the chosen seats.
const BEST_AVAILABLE_ATTEMPTS: u32 = 6;
/// After losing the race for the best block, a buyer picks at random among
/// the best `4^attempt` blocks (capped): little contention costs nothing in
/// seat quality, a rush spreads buyers over the house instead of letting
/// them all fight for the same seats.
const MAX_SPREAD: usize = 256;
/// Times a best-available request chooses again because another request of
/// this process claimed its seats first, before that counts as an attempt.
const LOCAL_CONFLICTS: u32 = 8;
/// Sale layouts kept in memory; the cache is cleared when it grows past this.
const LAYOUT_CACHE_SIZE: usize = 1_000;

/// What a buyer asks to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeatRequest {
    Seats(Vec<u32>),
    BestAvailable(BestAvailableQuery),
}

/// A committed hold and whether this call did it.
pub struct Committed {
    pub hold: Hold,
    pub newly_committed: bool,
}

pub struct Inventory {
    tickets: TicketStore,
    holds: Arc<HoldStore>,
    /// CommitHold's batched stages, started on first use.
    commits: OnceLock<CommitStages>,
    admission: AdmissionSigner,
    config: InventoryConfig,
    /// Sale layouts never change once an event is published.
    layouts: Mutex<HashMap<Uuid, Arc<SaleLayout>>>,
    snapshots: SnapshotCache,
}

fn redis_error(error: anyhow::Error) -> InventoryError {
    InventoryError::Unavailable(error)
}

impl Inventory {
    pub fn new(tickets: TicketStore, holds: HoldStore, config: InventoryConfig) -> Self {
        let admission = AdmissionSigner::new(config.waiting_room_key.expose().as_bytes());
        Self {
            tickets,
            holds: Arc::new(holds),
            commits: OnceLock::new(),
            admission,
            config,
            layouts: Mutex::new(HashMap::new()),
            snapshots: SnapshotCache::default(),
        }
    }

    pub fn admission(&self) -> &AdmissionSigner {
        &self.admission
    }

    pub fn config(&self) -> &InventoryConfig {
        &self.config
    }

    pub fn tickets(&self) -> &TicketStore {
        &self.tickets
    }

    pub fn holds(&self) -> &HoldStore {
        &self.holds
    }

    /// The layout of an event inventory sells (or has sold).
    pub async fn layout(&self, event_id: Uuid) -> Result<Arc<SaleLayout>> {
        if let Some(layout) = self.cached_layout(event_id) {
            return Ok(layout);
        }
        let StoredEvent { layout, .. } = self
            .tickets
            .event(event_id)
            .await?
            .ok_or(InventoryError::EventNotFound)?;
        let layout = Arc::new(layout);
        if let Ok(mut layouts) = self.layouts.lock() {
            if layouts.len() >= LAYOUT_CACHE_SIZE {
                layouts.clear();
            }
            layouts.insert(event_id, layout.clone());
        }
        Ok(layout)
    }

    fn cached_layout(&self, event_id: Uuid) -> Option<Arc<SaleLayout>> {
        self.layouts
            .lock()
            .ok()
            .and_then(|layouts| layouts.get(&event_id).cloned())
    }

    /// Recreates an event's Redis state from PostgreSQL when it is missing.
    pub async fn rebuild_if_missing(&self, event_id: Uuid) -> Result<()> {
        let truth = self
            .tickets
            .truth(event_id)
            .await?
            .ok_or(InventoryError::EventNotFound)?;
        if self
            .holds
            .rebuild(event_id, RebuildMode::IfMissing, &truth)
            .await
            .map_err(redis_error)?
        {
            self.snapshots.invalidate(event_id);
            tracing::info!(%event_id, sold = truth.sold.count_below(truth.seat_count), "rebuilt redis state from postgres");
        }
        Ok(())
    }

    /// Pushes a status change (cancelled, new on-sale time) into Redis.
    pub async fn refresh_status(&self, event_id: Uuid) -> Result<()> {
        let Some(truth): Option<EventTruth> = self.tickets.truth(event_id).await? else {
            return Ok(());
        };
        self.holds
            .rebuild(event_id, RebuildMode::Status, &truth)
            .await
            .map_err(redis_error)?;
        self.snapshots.invalidate(event_id);
        Ok(())
    }

    /// Both bitmaps and the cursor from a read of Redis that started after
    /// this call: every change answered before it is in (whichever process
    /// made it). Callers arriving together share one read.
    pub async fn availability(&self, event_id: Uuid) -> Result<Arc<Fetched>> {
        let view = self
            .snapshots
            .read(event_id, Instant::now(), || self.read_snapshot(event_id))
            .await?;
        Ok(view.base.clone())
    }

    /// A view at most `HOLD_VIEW_MAX_AGE` old, or read since `since`.
    async fn hold_view(&self, event_id: Uuid, since: Option<Instant>) -> Result<Arc<View>> {
        let now = Instant::now();
        let since = since.unwrap_or_else(|| now.checked_sub(HOLD_VIEW_MAX_AGE).unwrap_or(now));
        self.snapshots
            .read(event_id, since, || self.read_snapshot(event_id))
            .await
    }

    /// One read of Redis (two after a Redis restart, when the state is
    /// rebuilt first).
    async fn read_snapshot(&self, event_id: Uuid) -> Result<Snapshot> {
        for _ in 0..2 {
            if let Some(snapshot) = self.holds.snapshot(event_id).await.map_err(redis_error)? {
                return Ok(snapshot);
            }
            self.rebuild_if_missing(event_id).await?;
        }
        Err(InventoryError::Internal(anyhow::anyhow!(
            "event {event_id} state vanished right after a rebuild"
        )))
    }

    pub async fn changes(
        &self,
        event_id: Uuid,
        epoch: &str,
        after: &str,
        count: u32,
    ) -> Result<ChangesOutcome> {
        self.holds
            .changes(event_id, epoch, after, count)
            .await
            .map_err(redis_error)
    }

    /// `admission_token` is only looked at while the event's waiting room
    /// is on (empty when the client has none).
    pub async fn hold(
        &self,
        caller: &Caller,
        event_id: Uuid,
        request: SeatRequest,
        admission_token: &str,
    ) -> Result<Hold> {
        let owner = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        let layout = self.layout(event_id).await?;
        let admission = self.admission.claim(admission_token, owner, event_id);
        let max = self.config.max_seats_per_hold;
        match request {
            SeatRequest::Seats(seats) => {
                let seats = domain::validate_seats(&layout, &seats, max)?;
                let view = self.hold_view(event_id, None).await?;
                refuse_from_view(&view, admission)?;
                let taken = view.surely_taken(&seats);
                if !taken.is_empty() {
                    return Err(InventoryError::SeatUnavailable(taken));
                }
                match self
                    .try_hold(event_id, owner, &layout, &seats, None, admission)
                    .await?
                {
                    HoldOutcome::Held(hold) => Ok(hold),
                    HoldOutcome::Taken(taken) => Err(InventoryError::SeatUnavailable(taken)),
                    other => Err(self.refusal(other, &layout)),
                }
            }
            SeatRequest::BestAvailable(query) => {
                domain::validate_query(&layout, &query, max)?;
                let mut since = None;
                let (mut attempt, mut conflicts) = (0, 0);
                while attempt < BEST_AVAILABLE_ATTEMPTS {
                    let view = self.hold_view(event_id, since).await?;
                    refuse_from_view(&view, admission)?;
                    // Sold out (the rush's usual answer): no Redis, no search.
                    if view.free < query.quantity
                        || self.snapshots.known_no_match(event_id, &view, &query)
                    {
                        return Err(InventoryError::NoSeatsMatch);
                    }
                    let spread = 4usize.pow(attempt).min(MAX_SPREAD);
                    let prices = current_prices(&view, &layout, &query);
                    let mut choices =
                        best_available_ranked(&layout, &view.taken, &query, &prices, spread);
                    if choices.is_empty() {
                        self.snapshots.remember_no_match(event_id, &view, &query);
                        return Err(InventoryError::NoSeatsMatch);
                    }
                    let pick = (Uuid::new_v4().as_u128() % choices.len() as u128) as usize;
                    let seats = choices.swap_remove(pick);
                    let Some(claim) = self.snapshots.claim(event_id, &seats) else {
                        // Another request here claimed them since: choose again.
                        conflicts += 1;
                        if conflicts % LOCAL_CONFLICTS == 0 {
                            attempt += 1;
                        }
                        continue;
                    };
                    match self
                        .try_hold(
                            event_id,
                            owner,
                            &layout,
                            &seats,
                            query.max_price_minor,
                            admission,
                        )
                        .await
                    {
                        Ok(HoldOutcome::Held(hold)) => {
                            claim.kept();
                            return Ok(hold);
                        }
                        Ok(HoldOutcome::PriceAbove { .. }) => {
                            // Sales since our view moved a tier above the
                            // buyer's maximum: choose again from a read
                            // that shows them (and so the price now).
                            claim.dropped();
                            since = Some(Instant::now());
                            attempt += 1;
                        }
                        Ok(HoldOutcome::Taken(_)) => {
                            // Lost the race to another process: look again
                            // at a read from after it.
                            claim.kept();
                            since = Some(Instant::now());
                            attempt += 1;
                        }
                        Ok(other) => {
                            claim.dropped();
                            return Err(self.refusal(other, &layout));
                        }
                        Err(error) => {
                            claim.dropped();
                            return Err(error);
                        }
                    }
                }
                Err(InventoryError::SeatUnavailable(Vec::new()))
            }
        }
    }

    /// Runs the hold script, rebuilding lost Redis state once.
    async fn try_hold(
        &self,
        event_id: Uuid,
        owner: Uuid,
        layout: &SaleLayout,
        seats: &[u32],
        max_price_minor: Option<i64>,
        admission: AdmissionClaim,
    ) -> Result<HoldOutcome> {
        // Base prices here; `hold.lua` reprices dynamic tiers from the sold
        // bits it sees and locks those prices into the hold.
        let (groups, total) = tier_groups(layout, seats);
        for _ in 0..2 {
            let outcome = self
                .holds
                .hold(
                    event_id,
                    Uuid::now_v7(),
                    owner,
                    seats,
                    self.config.hold_ttl,
                    self.config.max_holds_per_user,
                    total,
                    &layout.currency_code,
                    groups.clone(),
                    max_price_minor,
                    admission,
                )
                .await
                .map_err(redis_error)?;
            match outcome {
                HoldOutcome::NeedsRebuild => self.rebuild_if_missing(event_id).await?,
                outcome => {
                    if let HoldOutcome::Held(hold) = &outcome {
                        tracing::debug!(%event_id, hold_id = %hold.hold.hold_id, seats = seats.len(), "held seats");
                    }
                    return Ok(outcome);
                }
            }
        }
        Err(InventoryError::Internal(anyhow::anyhow!(
            "event {event_id} state vanished right after a rebuild"
        )))
    }

    fn refusal(&self, outcome: HoldOutcome, layout: &SaleLayout) -> InventoryError {
        match outcome {
            HoldOutcome::Closed => InventoryError::EventNotOnSale,
            HoldOutcome::TooManyHolds => InventoryError::TooManyHolds {
                max: self.config.max_holds_per_user,
            },
            HoldOutcome::OutOfRange(seat) => {
                InventoryError::SeatRequest(domain::SeatRequestError::SeatOutOfRange {
                    seat,
                    seat_count: layout.seat_count,
                })
            }
            HoldOutcome::Taken(seats) => InventoryError::SeatUnavailable(seats),
            HoldOutcome::PriceAbove { .. } => InventoryError::NoSeatsMatch,
            HoldOutcome::NotAdmitted(refusal) => refusal.into(),
            HoldOutcome::Held(_) | HoldOutcome::NeedsRebuild => {
                InventoryError::Internal(anyhow::anyhow!("unexpected hold outcome"))
            }
        }
    }

    /// After PostgreSQL refused a commit, copies its sold state of those
    /// seats into Redis in case Redis missed a sale (best effort), so the
    /// seats stop looking available.
    async fn resync_sold(&self, event_id: Uuid, seats: &[u32]) {
        let sold = match self.tickets.sold_among(event_id, seats).await {
            Ok(sold) => sold,
            Err(error) => {
                tracing::debug!(%error, %event_id, "could not check sold seats");
                return;
            }
        };
        if !sold.is_empty()
            && let Ok(snapshot) = self.holds.snapshot(event_id).await
            && let Some(snapshot) = snapshot
            && sold.iter().any(|seat| !snapshot.sold.contains(*seat))
        {
            tracing::warn!(%event_id, seats = ?sold, "redis missed sold seats; copying them from postgres");
            if let Err(error) = self.holds.mark_seats_sold(event_id, &sold).await {
                tracing::warn!(%error, %event_id, "could not copy sold seats into redis");
            }
        }
    }

    /// A hold the caller owns (or, for the checkout service, one owned by
    /// `on_behalf_of`). Someone else's hold is not found.
    async fn owned_hold(&self, hold: HoldRef, owner: Uuid) -> Result<(Hold, i64)> {
        let found = self.holds.get_hold(hold).await.map_err(redis_error)?;
        match found {
            Some((record, now)) if record.owner == owner => Ok((record, now)),
            _ => Err(InventoryError::HoldNotFound),
        }
    }

    /// The hold as its owner sees it: an active hold past its expiry reads
    /// as expired even before the sweeper ends it.
    pub async fn get_hold(&self, caller: &Caller, hold: HoldRef) -> Result<Hold> {
        let owner = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        let (mut record, now) = self.owned_hold(hold, owner).await?;
        if record.state == HoldState::Active && record.expires_ms <= now {
            record.state = HoldState::Expired;
        }
        Ok(record)
    }

    pub async fn release_hold(&self, caller: &Caller, hold: HoldRef) -> Result<Hold> {
        let owner = caller.user_id.ok_or(InventoryError::Unauthenticated)?;
        match self.holds.release(hold, owner).await.map_err(redis_error)? {
            ReleaseOutcome::Released(released) => {
                self.snapshots.released(hold.event_id, &released.seats);
                tracing::debug!(event_id = %hold.event_id, hold_id = %hold.hold_id, "released hold");
                Ok(released)
            }
            ReleaseOutcome::Ended(ended) => match ended.state {
                HoldState::Expired => Err(InventoryError::HoldExpired),
                HoldState::Committed => Err(InventoryError::HoldAlreadyCommitted),
                // Releasing twice is fine.
                HoldState::Released | HoldState::Active => Ok(ended),
            },
            ReleaseOutcome::NotFound => Err(InventoryError::HoldNotFound),
        }
    }

    /// Sells a hold's seats to a booking. PostgreSQL decides, in one
    /// statement, with the hold's expiry (from Redis) minus the margin
    /// compared against its own clock; Redis is told afterwards. Commits
    /// arriving together are decided as one batch (see [`crate::commit`]).
    pub async fn commit_hold(
        &self,
        caller: &Caller,
        hold: HoldRef,
        booking_id: Uuid,
        sale_id: Option<Uuid>,
        owner: Uuid,
    ) -> Result<Committed> {
        require_service(caller)?;
        let answer = self
            .commits
            .get_or_init(|| CommitStages::start(self.holds.clone()))
            .commit(
                &self.tickets,
                self.config.commit_margin,
                CommitRequest {
                    hold,
                    booking_id,
                    sale_id,
                    owner,
                },
            )
            .await;
        let (record, outcome) = match answer {
            CommitAnswer::NoRecord => {
                return self
                    .commit_retry_without_record(hold, booking_id, sale_id, owner)
                    .await;
            }
            CommitAnswer::Decided(decided) => {
                return decided.map(|record| Committed {
                    hold: record,
                    newly_committed: false,
                });
            }
            CommitAnswer::Sold { record, outcome } => (record, outcome),
        };
        tracing::info!(event_id = %hold.event_id, hold_id = %hold.hold_id, %booking_id, ?outcome, "commit");
        match outcome {
            CommitOutcome::Committed | CommitOutcome::AlreadyCommitted => {
                let mut hold_now = record;
                hold_now.state = HoldState::Committed;
                hold_now.booking_id = Some(booking_id);
                hold_now.sale_id = sale_id.or(hold_now.sale_id);
                Ok(Committed {
                    hold: hold_now,
                    newly_committed: outcome == CommitOutcome::Committed,
                })
            }
            CommitOutcome::LeaseExpired => Err(InventoryError::HoldExpired),
            CommitOutcome::HoldCommittedElsewhere => Err(InventoryError::HoldAlreadyCommitted),
            CommitOutcome::NotOnSale => Err(InventoryError::EventNotOnSale),
            CommitOutcome::Unavailable => {
                let sold = self
                    .tickets
                    .sold_among(hold.event_id, &record.seats)
                    .await?;
                self.resync_sold(hold.event_id, &sold).await;
                Err(InventoryError::SeatUnavailable(sold))
            }
            CommitOutcome::UnknownSeats => Err(InventoryError::Internal(anyhow::anyhow!(
                "hold {} names seats without tickets",
                hold.hold_id
            ))),
        }
    }

    /// A retried commit after Redis forgot the hold (tombstone gone or Redis
    /// flushed): PostgreSQL remembers which hold sold to which booking.
    async fn commit_retry_without_record(
        &self,
        hold: HoldRef,
        booking_id: Uuid,
        sale_id: Option<Uuid>,
        owner: Uuid,
    ) -> Result<Committed> {
        let (seats, sold_as) = self
            .tickets
            .committed_seats(hold.event_id, hold.hold_id, booking_id)
            .await?;
        if seats.is_empty() {
            return Err(InventoryError::HoldNotFound);
        }
        if sale_id.is_some() && sold_as.is_some() && sale_id != sold_as {
            return Err(InventoryError::HoldAlreadyCommitted);
        }
        let layout = self.layout(hold.event_id).await?;
        Ok(Committed {
            hold: Hold {
                hold,
                owner,
                total_minor: total_price(&layout, &seats),
                currency_code: layout.currency_code.clone(),
                seats,
                state: HoldState::Committed,
                created_ms: 0,
                expires_ms: 0,
                booking_id: Some(booking_id),
                sale_id: sold_as.or(sale_id),
                // Redis forgot the hold and with it the locked prices,
                // which PostgreSQL never stored (ARCHITECTURE.md, "Dynamic
                // pricing"): base prices, no locks. Checkout charges the
                // booking's own lines, priced from the hold long before.
                price_locks: Vec::new(),
            },
            newly_committed: false,
        })
    }

    /// Sets (replaces, or with no tiers removes) an event's dynamic pricing
    /// rule (admins only); answers it with its version. PostgreSQL first,
    /// so what Redis is told is what a rebuild would restore; holds from
    /// then on lock prices from it. Rules of one event are serialized by
    /// their version: Redis keeps the highest it was given, so of two
    /// rules set at once the last PostgreSQL committed is the one in force.
    pub async fn set_pricing_rule(
        &self,
        caller: &Caller,
        event_id: Uuid,
        tiers: Vec<TierRule>,
    ) -> Result<(PricingRule, i64)> {
        if !caller.is_admin() {
            return Err(InventoryError::AdminRequired);
        }
        let layout = self.layout(event_id).await?;
        let rule = PricingRule::new(&layout, tiers)?;
        let version = self
            .tickets
            .save_pricing_rule(event_id, &rule, &layout)
            .await?;
        let table = PricingTable::build(&rule, &layout);
        let table = if table.is_empty() {
            String::new()
        } else {
            table.to_json()
        };
        let mut outcome = PricingSet::NeedsRebuild;
        for _ in 0..2 {
            outcome = self
                .holds
                .set_pricing(event_id, table.clone(), version)
                .await
                .map_err(redis_error)?;
            if outcome != PricingSet::NeedsRebuild {
                break;
            }
            // The rebuild restores the newest rule from PostgreSQL, this
            // one or a later one.
            self.rebuild_if_missing(event_id).await?;
        }
        if outcome == PricingSet::NeedsRebuild {
            return Err(InventoryError::Internal(anyhow::anyhow!(
                "event {event_id} state vanished right after a rebuild"
            )));
        }
        self.snapshots.invalidate(event_id);
        tracing::info!(%event_id, tiers = rule.tiers().len(), version, ?outcome, "pricing rule set");
        Ok((rule, version))
    }

    /// Puts a booking's seats back on sale (idempotent).
    pub async fn release_seats(
        &self,
        caller: &Caller,
        event_id: Uuid,
        booking_id: Uuid,
    ) -> Result<Vec<u32>> {
        require_service(caller)?;
        self.layout(event_id).await?;
        let seats = self.tickets.release_booking(event_id, booking_id).await?;
        if !seats.is_empty() {
            tracing::info!(%event_id, %booking_id, seats = seats.len(), "seats back on sale");
            if let Err(error) = self.holds.mark_seats_unsold(event_id, &seats).await {
                tracing::warn!(error = format!("{error:#}"), %event_id, "could not mark seats unsold in redis");
            }
            self.snapshots.invalidate(event_id);
        }
        Ok(seats)
    }
}

impl ChangeSource for Inventory {
    fn position(&self, event_id: Uuid) -> BoxFuture<'_, Result<(String, String)>> {
        Box::pin(async move {
            let fetched = self.availability(event_id).await?;
            Ok((
                fetched.snapshot.epoch.clone(),
                fetched.snapshot.last_id.clone(),
            ))
        })
    }

    fn changes<'a>(
        &'a self,
        event_id: Uuid,
        epoch: &'a str,
        after: &'a str,
        count: u32,
    ) -> BoxFuture<'a, Result<ChangesOutcome>> {
        Box::pin(Inventory::changes(self, event_id, epoch, after, count))
    }
}

impl SaleEvents for Inventory {
    fn ensure_sold_here(&self, event_id: Uuid) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.layout(event_id).await.map(drop) })
    }

    fn rebuild_if_missing(&self, event_id: Uuid) -> BoxFuture<'_, Result<()>> {
        Box::pin(Inventory::rebuild_if_missing(self, event_id))
    }

    fn state_changed(&self, event_id: Uuid) {
        self.snapshots.invalidate(event_id);
    }
}

/// The prices `max_price` compares: dynamic tiers' prices at the view's
/// sold seats (the price a hold would lock if nothing sells meanwhile;
/// `hold.lua` checks again against its own count).
fn current_prices(view: &View, layout: &SaleLayout, query: &BestAvailableQuery) -> CurrentPrices {
    let pricing = &view.base.snapshot.pricing;
    if query.max_price_minor.is_none() || pricing.is_empty() {
        return CurrentPrices::default();
    }
    CurrentPrices::new(
        pricing
            .current_prices(layout, &view.base.snapshot.sold)
            .into_iter()
            .filter(|price| price.rule.is_some())
            .map(|price| (price.tier_id, price.price_minor)),
    )
}

/// What a view can refuse on its own, in the order `hold.lua` refuses: the
/// waiting room first, then an event not on sale.
fn refuse_from_view(view: &View, admission: AdmissionClaim) -> Result<()> {
    let now_ms = view.base.server_now_ms();
    if view.base.snapshot.room_enabled
        && let Some(refusal) = admission.refusal(now_ms)
    {
        return Err(refusal.into());
    }
    if !view.base.on_sale_at(now_ms) {
        return Err(InventoryError::EventNotOnSale);
    }
    Ok(())
}

pub(crate) fn require_service(caller: &Caller) -> Result<()> {
    if caller.has_role(Caller::SERVICE) || caller.is_admin() {
        Ok(())
    } else {
        Err(InventoryError::ServiceRoleRequired)
    }
}
