//! Frees expired holds on time so watchers see the seats come back. Each
//! tick takes the events whose earliest hold has expired off the sweep index
//! (by Redis time), sweeps each and puts it back with its next expiry. Every
//! instance may sweep; the sweep script is idempotent. A slow pass over every
//! event on sale catches holds whose index entry was lost (a crash between
//! the hold and its index update). Its progress is a metric ([`render`]):
//! a sweeper that stops keeping up strands seats in expired holds.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boxoffice_runtime::Shutdown;
use uuid::Uuid;

use crate::service::Inventory;

const DUE_BATCH: i64 = 200;
const SAFETY_NET_EVERY: Duration = Duration::from_secs(30);

/// When this process's sweeper last finished a pass (Unix ms; 0: never).
static LAST_PASS_UNIX_MS: AtomicI64 = AtomicI64::new(0);
/// Passes failed in a row.
static FAILURES_IN_A_ROW: AtomicU64 = AtomicU64::new(0);
/// Holds freed because they expired.
static EXPIRED_FREED: AtomicU64 = AtomicU64::new(0);

fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The sweeper's lines of a Prometheus `/metrics` page (nothing when no
/// sweeper runs in this process): seconds since its last finished pass
/// (an alert fires when this grows past a few intervals), passes failed in
/// a row, and holds freed on expiry.
pub(crate) fn render() -> String {
    let last = LAST_PASS_UNIX_MS.load(Ordering::Relaxed);
    if last == 0 {
        return String::new();
    }
    let age = (now_unix_ms() - last).max(0) as f64 / 1000.0;
    let mut page = String::new();
    let _ = writeln!(
        page,
        "# HELP boxoffice_inventory_sweep_age_seconds Seconds since the hold sweeper last finished a pass.\n\
         # TYPE boxoffice_inventory_sweep_age_seconds gauge\n\
         boxoffice_inventory_sweep_age_seconds {age}\n\
         # HELP boxoffice_inventory_sweep_failures Hold sweeper passes failed in a row.\n\
         # TYPE boxoffice_inventory_sweep_failures gauge\n\
         boxoffice_inventory_sweep_failures {}\n\
         # HELP boxoffice_inventory_holds_expired_total Holds freed because they expired.\n\
         # TYPE boxoffice_inventory_holds_expired_total counter\n\
         boxoffice_inventory_holds_expired_total {}",
        FAILURES_IN_A_ROW.load(Ordering::Relaxed),
        EXPIRED_FREED.load(Ordering::Relaxed),
    );
    page
}

pub(crate) async fn run(inventory: Arc<Inventory>, interval: Duration, shutdown: Shutdown) {
    let mut last_full_pass = Instant::now();
    let mut failures = 0u32;
    // Started counts as swept: the age measures from here.
    LAST_PASS_UNIX_MS.store(now_unix_ms(), Ordering::Relaxed);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let result = if last_full_pass.elapsed() >= SAFETY_NET_EVERY {
            last_full_pass = Instant::now();
            full_pass(&inventory).await
        } else {
            due_pass(&inventory).await
        };
        match result {
            Ok(()) => {
                failures = 0;
                FAILURES_IN_A_ROW.store(0, Ordering::Relaxed);
                LAST_PASS_UNIX_MS.store(now_unix_ms(), Ordering::Relaxed);
            }
            Err(error) => {
                failures += 1;
                FAILURES_IN_A_ROW.store(u64::from(failures), Ordering::Relaxed);
                if failures == 1 || failures.is_multiple_of(100) {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        failures,
                        "sweeping expired holds failed"
                    );
                }
            }
        }
    }
}

async fn due_pass(inventory: &Inventory) -> anyhow::Result<()> {
    loop {
        let due = inventory.holds().due_events(DUE_BATCH).await?;
        for event_id in &due {
            sweep_event(inventory, *event_id).await?;
        }
        if (due.len() as i64) < DUE_BATCH {
            return Ok(());
        }
    }
}

async fn full_pass(inventory: &Inventory) -> anyhow::Result<()> {
    let events = inventory
        .tickets()
        .on_sale_events()
        .await
        .map_err(|error| anyhow::anyhow!("listing events on sale: {error}"))?;
    for event_id in events {
        sweep_event(inventory, event_id).await?;
    }
    due_pass(inventory).await
}

async fn sweep_event(inventory: &Inventory, event_id: Uuid) -> anyhow::Result<()> {
    let (expired, next) = inventory.holds().sweep(event_id).await?;
    if expired > 0 {
        EXPIRED_FREED.fetch_add(expired as u64, Ordering::Relaxed);
        tracing::info!(%event_id, expired, "expired holds freed");
    }
    if let Some(next) = next {
        inventory.holds().schedule_sweep(event_id, next).await;
    }
    Ok(())
}
