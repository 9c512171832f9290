//! A fault harness for boxoffice, after Jepsen: clients record a history
//! of every operation (invoked, then ok, failed or unknown), a nemesis kills
//! and pauses the processes underneath them, and a checker judges the
//! history and the databases once everything is healed and settled.
//!
//! A run owns everything it touches: its own PostgreSQL (initdb into a
//! temporary directory, run as the `postgres` user when the harness is
//! root), its own Redis without persistence, the payment simulator
//! (`boxoffice paysim`, its fsynced ledger in the output directory) and
//! `boxoffice up` paying through it, each a child process of the harness
//! on a free loopback port; the machine's PostgreSQL and Redis are never
//! touched. The simulator is a fault target of its own, and its ledger is
//! what the money is checked against at the end. Boxoffice gets a short hold lifetime and a fast
//! reconciler so that every pending booking's fate is decided within the
//! run. Everything is bounded: every call has a deadline, every loop an
//! end, every child is killed and every temporary directory removed when
//! the run ends, also on panic.
//!
//! `cargo run --release -p boxoffice-faults -- --duration 20m` is the long
//! run; `cargo test -p boxoffice-faults` runs the short one (about two
//! minutes). The history (`history.jsonl`), the faults, the processes' logs,
//! `report.txt`, `timeline.svg` and `timeline.png` (when `rsvg-convert` is
//! installed) are written to the output directory.

pub mod check;
pub mod checker;
pub mod events;
pub mod history;
pub mod nemesis;
pub mod processes;
pub mod provider;
pub mod report;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_accounts::config::MissingSecret;
use boxoffice_accounts::token::TokenIssuer;
use uuid::Uuid;

use crate::check::Check;
use crate::history::{FaultKind, Recorder};
use crate::nemesis::{Cluster, NemesisSettings};
use crate::processes::{Boxoffice, Paysim, Postgres, Redis, free_port};
use crate::workload::{Events, Workload, WorkloadSettings, bearer};

/// What a run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// The boxoffice binary to run.
    pub boxoffice: PathBuf,
    /// Where the history, logs and report go (created if missing).
    pub out: PathBuf,
    /// How long the clients run (the nemesis also finishes its cycles).
    pub duration: Duration,
    pub workload: WorkloadSettings,
    pub nemesis: NemesisSettings,
    /// Boxoffice's reconciler: how often it runs, and how long work stays
    /// untouched before it is taken up.
    pub reconcile_interval: Duration,
    pub reconcile_after: Duration,
    /// Domain events through this NATS server (a stream of the run's own,
    /// deleted at the end) instead of the PostgreSQL outboxes.
    pub nats_url: Option<String>,
}

impl Options {
    /// The short run `cargo test` makes: every fault once, about two minutes.
    pub fn short(boxoffice: PathBuf, out: PathBuf) -> Self {
        Self {
            boxoffice,
            out,
            duration: Duration::from_secs(55),
            workload: WorkloadSettings {
                buyers: 10,
                seats_per_event: 200,
                max_events: 20,
                hold_ttl: Duration::from_secs(8),
                holder_every: Duration::from_secs(6),
                think: Duration::from_millis(20),
            },
            nemesis: NemesisSettings {
                quiet_start: Duration::from_secs(3),
                fault_for: (Duration::from_millis(1_500), Duration::from_millis(2_500)),
                gap: (Duration::from_millis(1_000), Duration::from_millis(1_500)),
                min_cycles: 1,
                recovery_deadline: Duration::from_secs(60),
                kinds: FaultKind::ALL.to_vec(),
            },
            reconcile_interval: Duration::from_millis(500),
            reconcile_after: Duration::from_secs(10),
            nats_url: None,
        }
    }

    /// A long run: faults in shuffled cycles for `duration`, more buyers.
    pub fn long(boxoffice: PathBuf, out: PathBuf, duration: Duration) -> Self {
        let short = Self::short(boxoffice, out);
        Self {
            duration,
            workload: WorkloadSettings {
                buyers: 24,
                seats_per_event: 1_000,
                max_events: 500,
                holder_every: Duration::from_secs(10),
                think: Duration::from_millis(10),
                ..short.workload
            },
            nemesis: NemesisSettings {
                quiet_start: Duration::from_secs(10),
                fault_for: (Duration::from_secs(2), Duration::from_secs(10)),
                gap: (Duration::from_secs(5), Duration::from_secs(20)),
                min_cycles: 2,
                recovery_deadline: Duration::from_secs(90),
                kinds: FaultKind::ALL.to_vec(),
            },
            ..short
        }
    }
}

/// A run's verdict.
pub struct RunReport {
    pub checks: Vec<Check>,
    pub text: String,
    pub operations: usize,
    pub faults: BTreeMap<FaultKind, usize>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }
}

/// One run: start the processes, run clients and nemesis, heal, settle,
/// check, report. Every process is gone and every temporary directory
/// removed when this returns (or unwinds).
pub async fn run(options: &Options) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let recorder = Recorder::new();
    let postgres = Postgres::start(options.out.join("postgres.log")).await?;
    let redis = Redis::start(options.out.join("redis.log")).await?;
    // The provider's credentials are the run's own: checkout calls the
    // simulator with this key and checks its webhooks with this secret.
    let payments_key = format!("sk_test_faults_{}", Uuid::new_v4().simple());
    let webhook_secret = format!("whsec_faults_{}", Uuid::new_v4().simple());
    let paysim = Paysim::start(
        options.boxoffice.clone(),
        vec![
            (
                boxoffice_paysim::config::ENV_API_KEY.to_owned(),
                payments_key.clone(),
            ),
            (
                boxoffice_paysim::config::ENV_WEBHOOK_SECRET.to_owned(),
                webhook_secret.clone(),
            ),
            ("BOXOFFICE_LOG".to_owned(), "warn".to_owned()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), String::new()),
        ],
        options.out.join("paysim-ledger.jsonl"),
        options.out.join("paysim.log"),
    )
    .await?;
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let jwt_secret = format!(
        "faults-{}-{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let hold_ttl = options.workload.hold_ttl;
    let env: Vec<(String, String)> = [
        ("BOXOFFICE_DATABASE_URL", postgres.url("boxoffice")),
        ("BOXOFFICE_REDIS_URL", redis.url()),
        ("BOXOFFICE_LISTEN", edge.to_string()),
        ("BOXOFFICE_JWT_SECRET", jwt_secret.clone()),
        ("BOXOFFICE_ACCESS_TOKEN_TTL_SECS", "86400".to_owned()),
        ("BOXOFFICE_EDGE_ADMIN_LISTEN", "off".to_owned()),
        ("BOXOFFICE_EDGE_ACCESS_LOG", "off".to_owned()),
        ("BOXOFFICE_EDGE_RATE_PER_ADDRESS", "0".to_owned()),
        ("BOXOFFICE_EDGE_RATE_PER_USER", "0".to_owned()),
        // One address across restarts: the payment simulator keeps the
        // webhook endpoint checkout registered, so deliveries reach the
        // restarted process instead of a dead port.
        (
            "BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        ),
        ("BOXOFFICE_HOLD_TTL_SECS", hold_ttl.as_secs().to_string()),
        ("BOXOFFICE_MAX_HOLDS_PER_USER", "20".to_owned()),
        (
            "BOXOFFICE_CHECKOUT_RECONCILE_INTERVAL_MS",
            options.reconcile_interval.as_millis().to_string(),
        ),
        (
            "BOXOFFICE_CHECKOUT_RECONCILE_AFTER_SECS",
            options.reconcile_after.as_secs().to_string(),
        ),
        ("BOXOFFICE_SHUTDOWN_GRACE_SECS", "1".to_owned()),
        // The simulator the harness runs: with BOXOFFICE_PAYMENTS_URL set,
        // `up` starts none of its own.
        (boxoffice_checkout::config::ENV_PAYMENTS_URL, paysim.url()),
        (boxoffice_checkout::config::ENV_PAYMENTS_KEY, payments_key),
        (
            boxoffice_checkout::config::ENV_WEBHOOK_SECRET,
            webhook_secret,
        ),
        // Warnings, and the reconciler's decisions with their evidence.
        (
            "BOXOFFICE_LOG",
            "warn,boxoffice_checkout::reconciler=info".to_owned(),
        ),
        ("NO_COLOR", "1".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut env: Vec<(String, String)> = env;
    let nats_stream = format!("FAULTS_{}", Uuid::new_v4().simple());
    if let Some(url) = &options.nats_url {
        env.push((boxoffice_events::ENV_NATS_URL.to_owned(), url.clone()));
        env.push((
            boxoffice_events::ENV_NATS_STREAM.to_owned(),
            nats_stream.clone(),
        ));
    }
    let boxoffice = Boxoffice::new(
        options.boxoffice.clone(),
        env,
        edge,
        options.out.join("boxoffice.log"),
    );
    let mut cluster = Cluster {
        postgres,
        redis,
        paysim,
        boxoffice,
    };
    let database_url = cluster.postgres.url("boxoffice");
    cluster.boxoffice.migrate().await?;
    cluster.boxoffice.spawn()?;
    nemesis::wait_serving(edge, Duration::from_secs(120)).await?;

    // Tokens: the admin's and the buyers' are signed with the run's key
    // (as accounts signs them; hashing a password per buyer would only
    // measure argon2); the paused holder and its rival register and log in.
    let tokens = boxoffice_accounts::TokenConfig::from_vars(
        &[
            ("BOXOFFICE_JWT_SECRET".to_owned(), jwt_secret),
            (
                "BOXOFFICE_ACCESS_TOKEN_TTL_SECS".to_owned(),
                "86400".to_owned(),
            ),
        ]
        .into_iter()
        .collect(),
        MissingSecret::Refuse,
    )
    .map_err(|error| anyhow::anyhow!("token configuration: {error}"))?;
    let issuer = TokenIssuer::new(&tokens);
    let admin = bearer(
        &issuer
            .issue(Uuid::new_v4(), Uuid::new_v4(), &["admin".to_owned()])?
            .0,
    )?;
    let holder = workload::register_and_login(&recorder, edge, "holder").await?;
    let rival = workload::register_and_login(&recorder, edge, "rival").await?;
    let channel = workload::channel(edge)?;
    let first = workload::create_event(
        &mut boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient::new(
            channel.clone(),
        ),
        &mut boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient::new(
            channel.clone(),
        ),
        &admin,
        options.workload.seats_per_event,
        1,
    )
    .await?;
    let events = Events::default();
    events.push(first);

    let started = Instant::now();
    let workload = Arc::new(Workload {
        edge,
        recorder: recorder.clone(),
        events,
        admin,
        settings: options.workload.clone(),
        end: started + options.duration,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..options.workload.buyers {
        let token = bearer(
            &issuer
                .issue(Uuid::new_v4(), Uuid::new_v4(), &["customer".to_owned()])?
                .0,
        )?;
        let workload = workload.clone();
        let stop = stop.clone();
        clients.spawn(async move { workload.buyer(index, token, &stop).await });
    }
    {
        let workload = workload.clone();
        clients.spawn(async move { workload.paused_holders(holder, rival).await });
    }
    {
        let workload = workload.clone();
        let stop = stop.clone();
        clients.spawn(async move { workload.event_keeper(channel, &stop).await });
    }

    let nemesis_result = nemesis::run(
        &mut cluster,
        &recorder,
        &options.nemesis,
        started,
        options.duration,
    )
    .await;
    if let Err(error) = &nemesis_result {
        recorder.notice(format!("the nemesis stopped early: {error:#}"));
    }
    // The clients run on to the end (a quiet tail after the last fault).
    let remaining = options.duration.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    // Every client ends within its retries' deadlines; a stuck one is a
    // harness bug, so it is aborted rather than waited for.
    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        recorder.notice("clients did not finish within 120 s; aborted".to_owned());
        clients.abort_all();
    }
    cluster.ensure_up(&recorder).await?;
    let waited = checker::wait_settled(
        &database_url,
        options.reconcile_after + options.reconcile_interval,
        Duration::from_secs(20),
    )
    .await?;
    let ops = recorder.ops();
    let faults = recorder.faults();
    // The provider's own records, now that nothing changes them any more.
    let provider = provider::read_ledger(&cluster.paysim.ledger)?;
    let mut checks = checker::check_all(
        &database_url,
        &ops,
        &faults,
        options.nemesis.recovery_deadline,
        &provider,
    )
    .await?;
    let mut schedule = Check::new("every fault injected");
    schedule.checked = options.nemesis.kinds.len() as u64;
    if let Err(error) = &nemesis_result {
        schedule.violation(format!("the nemesis failed: {error:#}"));
    }
    let mut counts: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for fault in &faults {
        *counts.entry(fault.kind).or_default() += 1;
    }
    for kind in options.nemesis.kinds.iter().copied() {
        if counts.get(&kind).copied().unwrap_or(0) < options.nemesis.min_cycles {
            schedule.violation(format!(
                "{} ran fewer than {} times",
                kind.label(),
                options.nemesis.min_cycles
            ));
        }
    }
    checks.push(schedule);
    let notices = recorder.notices();
    let title = format!(
        "boxoffice fault run: {} s of clients, {} buyers, hold {} s, reconciler every {} ms after {} s",
        options.duration.as_secs(),
        options.workload.buyers,
        hold_ttl.as_secs(),
        options.reconcile_interval.as_millis(),
        options.reconcile_after.as_secs()
    );
    let svg_path = options.out.join("timeline.svg");
    std::fs::write(&svg_path, report::svg(&ops, &faults, &title))?;
    let png = report::render_png(&svg_path, &options.out.join("timeline.png"));
    let input = report::ReportInput {
        title,
        ops: &ops,
        faults: &faults,
        notices: &notices,
        checks: &checks,
        settled_after_ms: waited.as_millis() as u64,
        provider: &provider,
        png,
    };
    let text = report::text(&input);
    recorder.write(&options.out)?;
    std::fs::write(options.out.join("report.txt"), &text)?;
    std::fs::write(
        options.out.join("checks.json"),
        serde_json::to_vec_pretty(&checks)?,
    )?;
    if let Some(url) = &options.nats_url {
        // The run's stream goes with the run.
        match boxoffice_events::NatsTransport::connect_to(url, &nats_stream).await {
            Ok(nats) => {
                if let Err(error) = nats.delete_stream().await {
                    eprintln!("boxoffice-faults: could not delete stream {nats_stream}: {error:#}");
                }
            }
            Err(error) => eprintln!("boxoffice-faults: could not reach NATS: {error:#}"),
        }
    }
    Ok(RunReport {
        checks,
        text,
        operations: ops.len(),
        faults: counts,
    })
}
