//! The nemesis: one fault at a time — `kill -9` or a pause of Redis,
//! PostgreSQL, the payment simulator or boxoffice, PostgreSQL stopped with
//! `-m immediate` — each
//! held for a while, then healed; after each heal it measures how long the
//! system took to answer again. It also restarts anything that died by
//! itself (and says so).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use boxoffice_contracts::catalog::v1 as catalog_pb;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rustix::process::Signal;

use crate::history::{Fault, FaultKind, OpKind, Recorder};
use crate::processes::{Boxoffice, Paysim, Postgres, Redis, send_signal};

/// The processes of a run.
pub struct Cluster {
    pub postgres: Postgres,
    pub redis: Redis,
    pub paysim: Paysim,
    pub boxoffice: Boxoffice,
}

#[derive(Clone, Debug)]
pub struct NemesisSettings {
    /// No fault before this (buyers get going first).
    pub quiet_start: Duration,
    /// How long a fault lasts (chosen uniformly in this range).
    pub fault_for: (Duration, Duration),
    /// Quiet time after a recovery before the next fault.
    pub gap: (Duration, Duration),
    /// Every kind of fault at least this many times.
    pub min_cycles: usize,
    /// Longest wait for the first successful operation after a heal.
    pub recovery_deadline: Duration,
    /// The kinds of fault to inject (all of them unless narrowed).
    pub kinds: Vec<FaultKind>,
}

/// Waits until boxoffice answers a public call through the edge.
pub async fn wait_serving(addr: SocketAddr, deadline: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let channel = crate::workload::channel(addr)?;
    let mut catalog = catalog_pb::catalog_service_client::CatalogServiceClient::new(channel);
    while started.elapsed() < deadline {
        let mut request = tonic::Request::new(catalog_pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(2));
        if catalog.list_events(request).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("boxoffice did not serve within {deadline:?}")
}

impl Cluster {
    async fn inject(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        match kind {
            FaultKind::RedisKill => self.redis.kill(),
            FaultKind::RedisPause => {
                if let Some(pid) = self.redis.pid() {
                    send_signal(pid, Signal::STOP)?;
                }
            }
            FaultKind::PostgresStopImmediate => self.postgres.stop_immediate().await?,
            FaultKind::PostgresKillPostmaster => self.postgres.kill_postmaster(),
            FaultKind::PostgresPause => self.postgres.signal_all(Signal::STOP),
            FaultKind::BoxofficeKill => self.boxoffice.kill(),
            FaultKind::BoxofficePause => {
                if let Some(pid) = self.boxoffice.pid() {
                    send_signal(pid, Signal::STOP)?;
                }
            }
            FaultKind::PaysimKill => self.paysim.kill(),
            FaultKind::PaysimPause => {
                if let Some(pid) = self.paysim.pid() {
                    send_signal(pid, Signal::STOP)?;
                }
            }
        }
        Ok(())
    }

    async fn heal(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        match kind {
            FaultKind::RedisKill => self.redis.start_server().await?,
            FaultKind::RedisPause => {
                if let Some(pid) = self.redis.pid() {
                    send_signal(pid, Signal::CONT)?;
                }
            }
            FaultKind::PostgresStopImmediate | FaultKind::PostgresKillPostmaster => {
                self.postgres.start_server().await?
            }
            FaultKind::PostgresPause => self.postgres.signal_all(Signal::CONT),
            FaultKind::BoxofficeKill => {
                self.boxoffice.spawn()?;
                wait_serving(self.boxoffice.addr, Duration::from_secs(90)).await?;
            }
            FaultKind::BoxofficePause => {
                if let Some(pid) = self.boxoffice.pid() {
                    send_signal(pid, Signal::CONT)?;
                }
            }
            FaultKind::PaysimKill => self.paysim.start_server().await?,
            FaultKind::PaysimPause => {
                if let Some(pid) = self.paysim.pid() {
                    send_signal(pid, Signal::CONT)?;
                }
            }
        }
        Ok(())
    }

    /// Resumes everything and restarts whatever is not running (a process
    /// that died by itself is reported as a notice).
    pub async fn ensure_up(&mut self, recorder: &Recorder) -> anyhow::Result<()> {
        self.postgres.signal_all(Signal::CONT);
        for pid in [self.redis.pid(), self.paysim.pid(), self.boxoffice.pid()]
            .into_iter()
            .flatten()
        {
            send_signal(pid, Signal::CONT)?;
        }
        if let Some(status) = self.postgres.exited() {
            recorder.notice(format!(
                "postgres exited by itself ({status}); restarting it"
            ));
        }
        if self.postgres.postmaster_pid().is_none() {
            self.postgres.start_server().await?;
        }
        if let Some(status) = self.redis.exited() {
            recorder.notice(format!("redis exited by itself ({status}); restarting it"));
        }
        if self.redis.pid().is_none() {
            self.redis.start_server().await?;
        }
        if let Some(status) = self.boxoffice.exited() {
            recorder.notice(format!(
                "boxoffice exited by itself ({status}); restarting it"
            ));
        }
        if let Some(status) = self.paysim.exited() {
            recorder.notice(format!(
                "the payment simulator exited by itself ({status}); restarting it"
            ));
        }
        if self.paysim.pid().is_none() {
            self.paysim.start_server().await?;
        }
        if self.boxoffice.pid().is_none() {
            self.boxoffice.spawn()?;
            wait_serving(self.boxoffice.addr, Duration::from_secs(90)).await?;
        }
        Ok(())
    }
}

/// Runs faults until `duration` (from `started`) has passed and every kind
/// has run `min_cycles` times. Returns when the last recovery is measured.
pub async fn run(
    cluster: &mut Cluster,
    recorder: &Recorder,
    settings: &NemesisSettings,
    started: Instant,
    duration: Duration,
) -> anyhow::Result<()> {
    let mut rng = StdRng::from_os_rng();
    tokio::time::sleep(settings.quiet_start).await;
    let mut cycle = 0;
    if settings.kinds.is_empty() {
        tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;
        return Ok(());
    }
    'cycles: loop {
        let mut kinds = settings.kinds.clone();
        if cycle > 0 {
            kinds.shuffle(&mut rng);
        }
        for kind in kinds {
            let fault_for = pick(&mut rng, settings.fault_for);
            if cycle >= settings.min_cycles && started.elapsed() + fault_for >= duration {
                break 'cycles;
            }
            let start_ms = recorder.now_ms();
            cluster.inject(kind).await?;
            tokio::time::sleep(fault_for).await;
            cluster.heal(kind).await?;
            let heal_ms = recorder.now_ms();
            cluster.ensure_up(recorder).await?;
            let (first_ok_ms, first_confirm_ms) =
                wait_recovery(recorder, heal_ms, settings.recovery_deadline).await;
            recorder.fault(Fault {
                kind,
                start_ms,
                heal_ms,
                first_ok_ms,
                first_confirm_ms,
                note: None,
            });
            tokio::time::sleep(pick(&mut rng, settings.gap)).await;
        }
        cycle += 1;
    }
    Ok(())
}

fn pick(rng: &mut StdRng, (low, high): (Duration, Duration)) -> Duration {
    if high <= low {
        return low;
    }
    Duration::from_millis(rng.random_range(low.as_millis() as u64..=high.as_millis() as u64))
}

/// The first successful operation, and the first successful confirmation,
/// invoked after `heal_ms`, waiting at most `deadline` for them.
async fn wait_recovery(
    recorder: &Recorder,
    heal_ms: u64,
    deadline: Duration,
) -> (Option<u64>, Option<u64>) {
    let started = Instant::now();
    loop {
        let any = recorder.first_ok_after(heal_ms, None);
        let confirm = recorder.first_ok_after(heal_ms, Some(OpKind::ConfirmBooking));
        if (any.is_some() && confirm.is_some()) || started.elapsed() >= deadline {
            return (any, confirm);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
