//! The availability snapshots one process shares between its requests. Per
//! event: the last consistent read of Redis (both bitmaps at one cursor, the
//! status, the room's switch), read once for everyone who can use that read
//! (single flight), plus an overlay of this process's own holds and
//! releases since that read started. Holds choose seats, and refuse hopeless
//! requests without a round trip, from that view; a stale view can only cost
//! a lost race (`hold.lua` answers TAKEN and the caller looks again at a
//! fresher read) or a briefly early refusal, never a double hold: `hold.lua`
//! alone decides. Reads that must see every change made before they arrived
//! (GetAvailability, a watcher's first snapshot) ask for a read started after
//! they did, and share it with whoever asked meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::{BestAvailableQuery, SeatBitmap};
use crate::error::InventoryError;
use crate::store::redis::Snapshot;

/// How old a read a hold may decide from.
pub(crate) const HOLD_VIEW_MAX_AGE: Duration = Duration::from_millis(50);
/// Reads of one event in flight at once. One more than a single flight, so a
/// caller rarely waits for a read that started before it arrived, yet under
/// load every read serves everyone who arrived while the others ran.
const PARALLEL_READS: usize = 2;
/// Events whose snapshots are kept; the map is cleared past this.
const MAX_EVENTS: usize = 10_000;
/// Queries remembered per view as matching nothing.
const NO_MATCH_MEMO: usize = 32;

/// One read of an event's Redis state.
#[derive(Debug)]
pub struct Fetched {
    pub snapshot: Snapshot,
    /// When the read was sent: it shows every change Redis answered before.
    pub started: Instant,
    /// When the answer came, to estimate the Redis clock from `now_ms`.
    answered: Instant,
    /// Sold or held.
    pub taken: SeatBitmap,
    pub available_count: u32,
}

impl Fetched {
    pub fn new(snapshot: Snapshot, started: Instant) -> Self {
        let taken = snapshot.sold.union(&snapshot.held);
        let available_count = snapshot
            .seat_count
            .saturating_sub(taken.count_below(snapshot.seat_count));
        Self {
            snapshot,
            started,
            answered: Instant::now(),
            taken,
            available_count,
        }
    }

    /// The Redis server's time now, from the snapshot's clock: never behind
    /// it, ahead by at most the read's latency.
    pub fn server_now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.answered.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.snapshot.now_ms.saturating_add(elapsed)
    }

    pub fn on_sale_at(&self, now_ms: i64) -> bool {
        self.snapshot.open && now_ms >= self.snapshot.on_sale_ms
    }

    /// Whether every held bit is still a live hold (none has expired
    /// without being swept yet).
    fn held_bits_live(&self) -> bool {
        self.snapshot
            .next_expiry_ms
            .is_none_or(|next| self.server_now_ms() < next)
    }
}

/// A read with this process's own changes since it started.
#[derive(Debug)]
pub(crate) struct View {
    pub base: Arc<Fetched>,
    /// Taken in the read, plus seats this process is holding or has held
    /// since, minus seats it released since.
    pub taken: SeatBitmap,
    /// Seats below the seat count that are not in `taken`.
    pub free: u32,
    /// Changes whenever seats may have come free, which ends what the
    /// no-match memo knows.
    generation: u64,
}

impl View {
    /// The seats among `seats` that are surely unavailable: sold, or held by
    /// a live hold, and not released here since the read.
    pub(crate) fn surely_taken(&self, seats: &[u32]) -> Vec<u32> {
        let held_live = self.base.held_bits_live();
        let snapshot = &self.base.snapshot;
        seats
            .iter()
            .copied()
            .filter(|&seat| {
                self.taken.contains(seat)
                    && (snapshot.sold.contains(seat) || (held_live && snapshot.held.contains(seat)))
            })
            .collect()
    }
}

/// Every event's snapshots in this process.
#[derive(Default)]
pub(crate) struct SnapshotCache {
    events: Mutex<HashMap<Uuid, Arc<EventSnapshots>>>,
}

struct EventSnapshots {
    state: Mutex<State>,
    /// Bumped whenever a read ends or is abandoned: waiters look again.
    reads: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    view: Option<Arc<View>>,
    /// Reads started before this are not used any more: something changed
    /// here that the overlay does not describe (status, room, seats unsold).
    stale_before: Option<Instant>,
    /// When each read in flight started.
    reading: Vec<Instant>,
    /// The last read that failed: when it started and why.
    failure: Option<(Instant, String)>,
    /// This process's holds and releases, oldest first, until a read that
    /// started after they were answered shows them.
    local: Vec<LocalChange>,
    next_id: u64,
    generation: u64,
    /// Queries that matched nothing in views of `generation`.
    no_match: Vec<BestAvailableQuery>,
}

struct LocalChange {
    id: u64,
    seats: Vec<u32>,
    /// Claimed for a hold (true) or released (false).
    taken: bool,
    answered: Option<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// A view of `base` with the local changes it may not show, applied in
    /// the order they happened.
    fn rebuild(&mut self, base: Arc<Fetched>) {
        self.local.retain(|change| {
            change
                .answered
                .is_none_or(|answered| answered >= base.started)
        });
        let seat_count = base.snapshot.seat_count;
        let mut taken = base.taken.clone();
        for change in &self.local {
            apply(&mut taken, change);
        }
        self.generation += 1;
        self.no_match.clear();
        self.view = Some(Arc::new(View {
            free: seat_count.saturating_sub(taken.count_below(seat_count)),
            taken,
            base,
            generation: self.generation,
        }));
    }
}

fn apply(taken: &mut SeatBitmap, change: &LocalChange) {
    for &seat in &change.seats {
        if change.taken {
            taken.set(seat);
        } else {
            taken.clear(seat);
        }
    }
}

impl SnapshotCache {
    fn entry(&self, event_id: Uuid) -> Arc<EventSnapshots> {
        let mut events = lock(&self.events);
        if let Some(entry) = events.get(&event_id) {
            return entry.clone();
        }
        if events.len() >= MAX_EVENTS {
            events.clear();
        }
        let entry = Arc::new(EventSnapshots {
            state: Mutex::new(State::default()),
            reads: watch::Sender::new(0),
        });
        events.insert(event_id, entry.clone());
        entry
    }

    /// A view whose read started at or after `since` (and after the last
    /// invalidation): the current one, one being read, or a new read by
    /// `fetch` when no read in flight started late enough.
    pub(crate) async fn read<F, Fut>(
        &self,
        event_id: Uuid,
        since: Instant,
        fetch: F,
    ) -> Result<Arc<View>, InventoryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, InventoryError>>,
    {
        let entry = self.entry(event_id);
        loop {
            // Subscribed before looking, so a read ending in between wakes us.
            let mut reads = entry.reads.subscribe();
            let started = {
                let mut state = lock(&entry.state);
                let since = state.stale_before.map_or(since, |stale| stale.max(since));
                if let Some(view) = &state.view
                    && view.base.started >= since
                {
                    return Ok(view.clone());
                }
                if let Some((failed, why)) = &state.failure
                    && *failed >= since
                {
                    return Err(InventoryError::Unavailable(anyhow::anyhow!(
                        "reading availability: {why}"
                    )));
                }
                if state.reading.iter().any(|started| *started >= since)
                    || state.reading.len() >= PARALLEL_READS
                {
                    None
                } else {
                    // Reads in flight started too early for this caller:
                    // start one beside them rather than wait for them.
                    let started = Instant::now();
                    state.reading.push(started);
                    Some(started)
                }
            };
            let Some(started) = started else {
                // A read that will do is in flight, or enough reads are:
                // wait, then look again.
                let _ = reads.changed().await;
                continue;
            };
            let mut reading = ReadInFlight {
                entry: &entry,
                started,
                abandoned: true,
            };
            let result = fetch().await;
            let mut state = lock(&entry.state);
            state.reading.retain(|other| *other != started);
            let outcome = match result {
                Ok(snapshot) => {
                    let fetched = Arc::new(Fetched::new(snapshot, started));
                    let newer = state
                        .view
                        .as_ref()
                        .is_none_or(|view| view.base.started <= started);
                    if newer {
                        state.rebuild(fetched.clone());
                    }
                    state.failure = None;
                    match &state.view {
                        Some(view) if newer => Ok(view.clone()),
                        _ => Ok(Arc::new(View {
                            free: fetched.available_count,
                            taken: fetched.taken.clone(),
                            base: fetched,
                            generation: 0,
                        })),
                    }
                }
                Err(error) => {
                    state.failure = Some((started, format!("{error:#}")));
                    Err(error)
                }
            };
            drop(state);
            reading.abandoned = false;
            drop(reading);
            return outcome;
        }
    }

    /// Makes every later read wait for a new snapshot: something changed
    /// that the overlay does not describe.
    pub(crate) fn invalidate(&self, event_id: Uuid) {
        let entry = self.entry(event_id);
        lock(&entry.state).stale_before = Some(Instant::now());
    }

    /// Marks seats this process is about to hold as taken in its view, so
    /// its other requests choose others. `None` when one of them is taken
    /// in the current view (another request claimed it since the caller
    /// looked): choose again.
    pub(crate) fn claim(&self, event_id: Uuid, seats: &[u32]) -> Option<Claim> {
        let entry = self.entry(event_id);
        let id = {
            let mut state = lock(&entry.state);
            let view = state.view.as_ref()?;
            if seats.iter().any(|&seat| view.taken.contains(seat)) {
                return None;
            }
            let mut taken = view.taken.clone();
            let change = LocalChange {
                id: state.next_id,
                seats: seats.to_vec(),
                taken: true,
                answered: None,
            };
            apply(&mut taken, &change);
            let seat_count = view.base.snapshot.seat_count;
            let claimed = seats.iter().filter(|&&seat| seat < seat_count).count() as u32;
            // Seats only became taken: what matched nothing still does.
            let next = View {
                base: view.base.clone(),
                taken,
                free: view.free.saturating_sub(claimed),
                generation: view.generation,
            };
            state.view = Some(Arc::new(next));
            state.next_id += 1;
            state.local.push(change);
            state.next_id - 1
        };
        Some(Claim {
            entry,
            id,
            settled: false,
        })
    }

    /// Seats this process just released: free in its view from now on.
    pub(crate) fn released(&self, event_id: Uuid, seats: &[u32]) {
        let entry = self.entry(event_id);
        let mut state = lock(&entry.state);
        let id = state.next_id;
        state.next_id += 1;
        state.local.push(LocalChange {
            id,
            seats: seats.to_vec(),
            taken: false,
            answered: Some(Instant::now()),
        });
        if let Some(base) = state.view.as_ref().map(|view| view.base.clone()) {
            state.rebuild(base);
        }
    }

    /// Whether `query` is known to match nothing in `view`.
    pub(crate) fn known_no_match(
        &self,
        event_id: Uuid,
        view: &View,
        query: &BestAvailableQuery,
    ) -> bool {
        let entry = self.entry(event_id);
        let state = lock(&entry.state);
        state.generation == view.generation && state.no_match.contains(query)
    }

    pub(crate) fn remember_no_match(
        &self,
        event_id: Uuid,
        view: &View,
        query: &BestAvailableQuery,
    ) {
        let entry = self.entry(event_id);
        let mut state = lock(&entry.state);
        if state.generation == view.generation
            && state.no_match.len() < NO_MATCH_MEMO
            && !state.no_match.contains(query)
        {
            state.no_match.push(query.clone());
        }
    }
}

/// Ends a read that was abandoned (its caller went away) or finished:
/// whoever waits looks again.
struct ReadInFlight<'a> {
    entry: &'a EventSnapshots,
    started: Instant,
    /// The reader went away mid-read: the state still lists its read.
    abandoned: bool,
}

impl Drop for ReadInFlight<'_> {
    fn drop(&mut self) {
        if self.abandoned {
            lock(&self.entry.state)
                .reading
                .retain(|other| *other != self.started);
        }
        self.entry.reads.send_modify(|reads| *reads += 1);
    }
}

/// Seats claimed in this process's view for a hold in flight.
pub(crate) struct Claim {
    entry: Arc<EventSnapshots>,
    id: u64,
    settled: bool,
}

impl Claim {
    /// The hold was made, or the seats were someone else's: they stay taken
    /// in the view until a read shows them.
    pub(crate) fn kept(mut self) {
        self.settle(true);
    }

    /// The hold was refused for another reason: the seats come back.
    pub(crate) fn dropped(mut self) {
        self.settle(false);
    }

    fn settle(&mut self, kept: bool) {
        self.settled = true;
        let mut state = lock(&self.entry.state);
        if kept {
            let now = Instant::now();
            if let Some(change) = state.local.iter_mut().find(|change| change.id == self.id) {
                change.answered = Some(now);
            }
        } else {
            state.local.retain(|change| change.id != self.id);
            if let Some(base) = state.view.as_ref().map(|view| view.base.clone()) {
                state.rebuild(base);
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Abandoned mid-flight: the hold may or may not have happened, so
        // the seats stay taken until a read started from now on shows which.
        if !self.settled {
            self.settle(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(held: &[u32], sold: &[u32]) -> Snapshot {
        Snapshot {
            open: true,
            on_sale_ms: 0,
            seat_count: 16,
            epoch: "e".into(),
            sold: SeatBitmap::with_seats(sold.iter().copied()),
            held: SeatBitmap::with_seats(held.iter().copied()),
            last_id: "0-0".into(),
            now_ms: 1_000,
            room_enabled: false,
            next_expiry_ms: None,
            pricing: Default::default(),
        }
    }

    /// For reads that must be served without reading Redis.
    async fn no_read() -> Result<Snapshot, InventoryError> {
        panic!("a read was not expected")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn one_read_serves_everyone_who_arrived_before_it_started() {
        runtime().block_on(async {
            let cache = SnapshotCache::default();
            let event = Uuid::new_v4();
            let reads = std::sync::atomic::AtomicU32::new(0);
            let fetch = || async {
                reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(snapshot(&[1], &[]))
            };
            let since = Instant::now();
            let (a, b, c) = tokio::join!(
                cache.read(event, since, fetch),
                cache.read(event, since, fetch),
                cache.read(event, since, fetch),
            );
            assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
            for view in [a, b, c] {
                assert!(view.unwrap().taken.contains(1));
            }
            // A caller that needs a read started after now gets a new one.
            let fresh = cache
                .read(event, Instant::now(), || async { Ok(snapshot(&[2], &[])) })
                .await
                .unwrap();
            assert!(fresh.taken.contains(2) && !fresh.taken.contains(1));
        });
    }

    #[test]
    fn claims_and_releases_show_until_a_later_read_does() {
        runtime().block_on(async {
            let cache = SnapshotCache::default();
            let event = Uuid::new_v4();
            let since = Instant::now();
            let view = cache
                .read(event, since, || async { Ok(snapshot(&[1], &[0])) })
                .await
                .unwrap();
            assert_eq!(view.free, 14);
            let claim = cache.claim(event, &[4, 5]).expect("free seats");
            assert!(cache.claim(event, &[5, 6]).is_none(), "claimed already");
            cache.released(event, &[1]);
            let view = cache.read(event, since, no_read).await;
            let view = view.unwrap();
            assert!(view.taken.contains(4) && view.taken.contains(5));
            assert!(!view.taken.contains(1), "released here");
            assert_eq!(view.surely_taken(&[0, 1, 4]), vec![0]);
            claim.dropped();
            let view = cache.read(event, since, no_read).await;
            assert!(
                !view.unwrap().taken.contains(4),
                "a refused hold gives its seats back"
            );
            // A read started after the claim was answered replaces it.
            let claim = cache.claim(event, &[7]).expect("free seat");
            claim.kept();
            let later = cache
                .read(event, Instant::now(), || async { Ok(snapshot(&[], &[0])) })
                .await
                .unwrap();
            assert!(!later.taken.contains(7) && !later.taken.contains(1));
        });
    }

    #[test]
    fn failed_reads_answer_everyone_who_waited_for_them() {
        runtime().block_on(async {
            let cache = SnapshotCache::default();
            let event = Uuid::new_v4();
            let since = Instant::now();
            let failed = cache
                .read(event, since, || async {
                    Err(InventoryError::Unavailable(anyhow::anyhow!("down")))
                })
                .await;
            assert!(failed.is_err());
            let again = cache.read(event, since, no_read).await;
            assert!(matches!(again, Err(InventoryError::Unavailable(_))));
            cache.invalidate(event);
            let recovered = cache
                .read(event, since, || async { Ok(snapshot(&[], &[])) })
                .await;
            assert_eq!(recovered.unwrap().free, 16);
        });
    }
}
