//! Frees expired holds on time so watchers see the seats come back. Each
//! tick takes the events whose earliest hold has expired off the sweep index
//! (by Redis time), sweeps each and puts it back with its next expiry. Every
//! instance may sweep; the sweep script is idempotent. A slow pass over every
//! event on sale catches holds whose index entry was lost (a crash between
//! the hold and its index update).

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_runtime::Shutdown;
use uuid::Uuid;

use crate::service::Inventory;

const DUE_BATCH: i64 = 200;
const SAFETY_NET_EVERY: Duration = Duration::from_secs(30);

pub async fn run(inventory: Arc<Inventory>, interval: Duration, shutdown: Shutdown) {
    let mut last_full_pass = Instant::now();
    let mut failures = 0u32;
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
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
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
        tracing::info!(%event_id, expired, "expired holds freed");
    }
    if let Some(next) = next {
        inventory.holds().schedule_sweep(event_id, next).await;
    }
    Ok(())
}
