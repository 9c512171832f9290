//! A whole boxoffice started inside the load generator — the same
//! [`boxoffice::System`] that `boxoffice up` runs, edge in front — on a
//! database and Redis key prefix of its own (both removed afterwards), so
//! one command reproduces every number. Also the trivial echo server that
//! serves as the gRPC baseline, and tokens for as many virtual users as a
//! scenario needs.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use boxoffice::{System, SystemOptions};
use boxoffice_accounts::config::{MissingSecret, TokenConfig};
use boxoffice_accounts::token::TokenIssuer;
use boxoffice_checkout::config::CheckoutConfig;
use boxoffice_contracts::testing::v1 as echo_pb;
use boxoffice_edge::config::{EdgeConfig, RateLimit};
use boxoffice_inventory::config::InventoryConfig;
use boxoffice_runtime::config::{ENV_DATABASE_URL, ENV_DB_POOL_SIZE, ENV_LISTEN, ENV_LOG};
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::{Config, Shutdown};
use tonic::transport::Channel;
use uuid::Uuid;

pub const ENV_BENCH_POSTGRES: &str = "BOXOFFICE_BENCH_POSTGRES_URL";
pub const ENV_BENCH_REDIS: &str = "BOXOFFICE_BENCH_REDIS_URL";

/// The trivial tonic service: answers what it is sent.
#[derive(Clone, Copy, Default)]
pub struct Echo;

#[tonic::async_trait]
impl echo_pb::echo_service_server::EchoService for Echo {
    async fn echo(
        &self,
        request: tonic::Request<echo_pb::EchoRequest>,
    ) -> Result<tonic::Response<echo_pb::EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(echo_pb::EchoResponse {
            message: request.into_inner().message,
        }))
    }
}

pub struct BenchSystem {
    pub system: System,
    pub echo_addr: SocketAddr,
    pub issuer: TokenIssuer,
    pub redis_prefix: String,
    pub database: String,
    shutdown: Shutdown,
    server_url: String,
}

pub fn postgres_server_url() -> String {
    std::env::var(ENV_BENCH_POSTGRES)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var(ENV_BENCH_REDIS).unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn vars(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

impl BenchSystem {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(true).await
    }

    /// `demo_data`: load the demo catalogue (minutes of start-up work) or
    /// start empty (a scenario that makes its own events).
    pub async fn start_with(demo_data: bool) -> anyhow::Result<Self> {
        Self::start_paying_through(demo_data, &[]).await
    }

    /// As [`start_with`](Self::start_with), with checkout configured by
    /// `checkout_vars` too (say, pointed at a payment gateway).
    pub async fn start_paying_through(
        demo_data: bool,
        checkout_vars: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let server_url = postgres_server_url();
        let database = format!("boxoffice_bench_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL (run scripts/services first)")?;
        tokio::spawn(connection);
        // Two statements: CREATE DATABASE cannot share an implicit transaction.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .context("dropping a leftover benchmark database")?;
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .context("creating the benchmark database")?;
        let url = boxoffice_runtime::postgres::url_with_database(&server_url, &database);
        let config = Config::from_vars(vars(&[
            (ENV_DATABASE_URL, url),
            (ENV_LISTEN, "127.0.0.1:0".to_owned()),
            (ENV_DB_POOL_SIZE, "32".to_owned()),
            (ENV_LOG, "warn".to_owned()),
            ("BOXOFFICE_REDIS_URL", redis_url()),
        ]))?;
        let redis_prefix = format!("bench{}:", std::process::id());
        let tokens = TokenConfig::from_vars(&BTreeMap::new(), MissingSecret::GenerateEphemeral)
            .map_err(|error| anyhow::anyhow!("token configuration: {error}"))?;
        let inventory = InventoryConfig::from_vars(&vars(&[
            ("BOXOFFICE_REDIS_KEY_PREFIX", redis_prefix.clone()),
            // Virtual users hold many times over a run.
            ("BOXOFFICE_MAX_HOLDS_PER_USER", "1000".to_owned()),
            ("BOXOFFICE_REDIS_POOL_SIZE", "8".to_owned()),
        ]))
        .map_err(|error| anyhow::anyhow!("inventory configuration: {error}"))?;
        let mut checkout_vars = checkout_vars.to_vec();
        checkout_vars.push((
            "BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN",
            "127.0.0.1:0".to_owned(),
        ));
        let checkout = CheckoutConfig::from_vars(&vars(&checkout_vars))
            .map_err(|error| anyhow::anyhow!("checkout configuration: {error}"))?;
        let mut edge = EdgeConfig::defaults(SocketAddr::from(([127, 0, 0, 1], 0)));
        // Measure the gateway's work, not its protections: limits off (their
        // own tests prove them), no access log on the terminal.
        edge.admin_listen = None;
        edge.access_log = false;
        edge.rate_per_address = RateLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        edge.rate_per_user = RateLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        edge.joins_per_address = RateLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        edge.joins_per_user = RateLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        edge.max_concurrent_per_upstream = 100_000;
        let shutdown = Shutdown::new();
        eprintln!("starting boxoffice on database {database} (demo data: {demo_data}) ...");
        let system = System::start(
            &config,
            SystemOptions {
                edge,
                tokens: tokens.clone(),
                inventory,
                checkout,
                demo_data,
                notify: None,
                webhooks: boxoffice::WebhooksConfig::development(),
            },
            shutdown.clone(),
        )
        .await?;

        let mut echo_server = GrpcServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        echo_server.add_service(echo_pb::echo_service_server::EchoServiceServer::new(Echo));
        let echo_addr = echo_server.local_addr();
        tokio::spawn(
            echo_server.run_until_stopped(shutdown.clone(), std::time::Duration::from_secs(1)),
        );

        Ok(Self {
            system,
            echo_addr,
            issuer: TokenIssuer::new(&tokens),
            redis_prefix,
            database,
            shutdown,
            server_url,
        })
    }

    /// A bearer token for a user with the given roles.
    pub fn token(&self, user_id: Uuid, roles: &[&str]) -> anyhow::Result<String> {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        Ok(self.issuer.issue(user_id, Uuid::new_v4(), &roles)?.0)
    }

    /// Vacuums and gathers planner statistics for every table, as
    /// autovacuum would have done on a database in service. A benchmark
    /// fills tables from empty in seconds, and plans made while a table
    /// looked empty (sequential scans of "ten rows") would otherwise stay
    /// cached on every pooled connection long after it grew (ANALYZE makes
    /// them plan again); and the dead rows one measurement leaves are
    /// cleaned up now, not by autovacuum in the middle of the next one.
    pub async fn analyze(&self) -> anyhow::Result<()> {
        self.system
            .pool
            .get()
            .await?
            .batch_execute("VACUUM ANALYZE")
            .await
            .context("vacuuming the benchmark database")
    }

    /// Waits until start-up work is done, so a measured window pays only for
    /// its own work: inventory has turned every catalog change into tickets
    /// (the demo data alone is about three million rows, minutes of
    /// PostgreSQL's time), and then the whole machine (the search indexer,
    /// autovacuum behind the inserts) has been quiet for a second. Gives up
    /// waiting after `limit`, saying so.
    pub async fn settle(&self, limit: std::time::Duration) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let client = self.system.pool.get().await?;
        loop {
            let caught_up: bool = client
                .query_one(
                    "SELECT coalesce((SELECT max(id) FROM catalog.event_outbox), 0)
                         <= coalesce((SELECT position FROM inventory.event_checkpoints
                                      WHERE consumer_group = 'inventory-tickets' AND stream = 'catalog'), 0)",
                    &[],
                )
                .await
                .context("comparing inventory's feed with the catalog outbox")?
                .get(0);
            if caught_up {
                break;
            }
            if started.elapsed() > limit {
                eprintln!(
                    "inventory had not caught up with the catalog after {limit:?}; measuring anyway"
                );
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        drop(client);
        while started.elapsed() < limit {
            let before = crate::cpu::busy();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match crate::cpu::ms_per_operation(before, crate::cpu::busy(), 1) {
                // Under a fifth of one core over the last second.
                Some(busy_ms) if busy_ms < 200.0 => return Ok(()),
                None => return Ok(()),
                Some(_) => {}
            }
        }
        eprintln!("the machine did not quiet down within {limit:?}; measuring anyway");
        Ok(())
    }

    /// Waits until every event consumer group (statistics, inventory's
    /// ticket feed, search) has handled every event in the outboxes it
    /// reads, so a measured window neither starts with an earlier window's
    /// backlog nor leaves its own unpaid: callers measure CPU up to here.
    /// Answers how long it waited.
    pub async fn drain_consumers(
        &self,
        limit: std::time::Duration,
    ) -> anyhow::Result<std::time::Duration> {
        let started = std::time::Instant::now();
        let client = self.system.pool.get().await?;
        let schemas: Vec<String> = client
            .query(
                "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'event_checkpoints'",
                &[],
            )
            .await
            .context("finding the consumer groups")?
            .iter()
            .map(|row| row.get(0))
            .collect();
        loop {
            let mut behind = 0_i64;
            for schema in &schemas {
                let checkpoints = client
                    .query(
                        &format!("SELECT stream, position FROM {schema}.event_checkpoints"),
                        &[],
                    )
                    .await
                    .context("reading checkpoints")?;
                for row in checkpoints {
                    let (stream, position): (String, i64) = (row.get(0), row.get(1));
                    if !stream.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                        continue;
                    }
                    let high: i64 = client
                        .query_one(
                            &format!("SELECT coalesce(max(id), 0) FROM {stream}.event_outbox"),
                            &[],
                        )
                        .await
                        .context("reading an outbox's end")?
                        .get(0);
                    behind += (high - position).max(0);
                }
            }
            if behind == 0 {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "event consumers still {behind} events behind after {limit:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Writes every dirty page now (`CHECKPOINT`), so the next measured
    /// window does not pay for a checkpoint, and the full-page images after
    /// it, that earlier work made due. Each measurement, pgbench's
    /// included, starts from one.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        self.system
            .pool
            .get()
            .await?
            .batch_execute("CHECKPOINT")
            .await
            .context("checkpointing the benchmark database")
    }

    /// Stops everything, drops the database and deletes the Redis keys.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        self.system.pool.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), self.system.wait()).await;
        let (client, connection) =
            tokio_postgres::connect(&self.server_url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await?;
        let pattern = format!("{}*", self.redis_prefix);
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -u '{}' --scan --pattern '{pattern}' | xargs -r -n 500 redis-cli -u '{}' del >/dev/null",
                redis_url(),
                redis_url()
            ))
            .status();
        Ok(())
    }
}

/// A few HTTP/2 connections to spread load over (one connection serializes
/// on a single socket and a single server task).
pub async fn channels(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(channels)
}

/// Set in the environment of a benchmark binary started again to be the
/// payment gateway simulator (see [`PaysimProcess`]).
pub const ENV_BENCH_ROLE: &str = "BOXOFFICE_BENCH_ROLE";

/// Runs the payment gateway simulator instead of the benchmark when this
/// binary was started as one by [`PaysimProcess::start`]; call it first
/// thing in `main`.
pub fn serve_paysim_if_asked() -> Option<std::process::ExitCode> {
    (std::env::var(ENV_BENCH_ROLE).as_deref() == Ok("paysim")).then(boxoffice_paysim::main_with_env)
}

/// The webhook secret the simulator signs with and checkout checks.
const PAYSIM_WEBHOOK_SECRET: &str = "whsec_boxoffice_benchmark_only";

/// The payment gateway simulator (Stripe's and PayPal's HTTP APIs, as
/// `boxoffice up` runs it) in a process of its own: this benchmark binary
/// started again with [`ENV_BENCH_ROLE`], its journal in a file of its own
/// (fsynced per write, as in `up`), killed with the handle.
pub struct PaysimProcess {
    child: tokio::process::Child,
    pub url: String,
    ledger: std::path::PathBuf,
}

impl PaysimProcess {
    pub async fn start() -> anyhow::Result<Self> {
        let ledger = std::env::temp_dir().join(format!(
            "boxoffice-bench-paysim-{}-{}.jsonl",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        let mut command = tokio::process::Command::new(
            std::env::current_exe().context("finding the benchmark binary")?,
        );
        command
            .env(ENV_BENCH_ROLE, "paysim")
            .env(boxoffice_paysim::config::ENV_LISTEN, "127.0.0.1:0")
            .env(boxoffice_paysim::config::ENV_LEDGER, &ledger)
            .env(
                boxoffice_paysim::config::ENV_WEBHOOK_SECRET,
                PAYSIM_WEBHOOK_SECRET,
            )
            .env(
                boxoffice_paysim::config::ENV_PARENT_PID,
                std::process::id().to_string(),
            )
            .env(ENV_LOG, "warn");
        let (child, url) = boxoffice_paysim::start_process(command).await?;
        Ok(Self { child, url, ledger })
    }

    /// Checkout's configuration for paying by card and with PayPal
    /// through this simulator.
    pub fn gateway_vars(&self) -> Vec<(&'static str, String)> {
        use boxoffice_checkout::config as checkout;
        vec![
            (checkout::ENV_PAYMENTS_URL, self.url.clone()),
            (
                checkout::ENV_PAYMENTS_KEY,
                boxoffice_paysim::config::DEV_API_KEY.to_owned(),
            ),
            (
                checkout::ENV_WEBHOOK_SECRET,
                PAYSIM_WEBHOOK_SECRET.to_owned(),
            ),
            (checkout::ENV_PAYPAL_URL, self.url.clone()),
        ]
    }

    /// Payments the simulator's journal holds as captured: card intents
    /// that succeeded and PayPal orders whose authorization was captured
    /// (each journal line carries an intent's or order's whole state; the
    /// last one counts).
    pub fn captured(&self) -> anyhow::Result<usize> {
        let journal = std::fs::read_to_string(&self.ledger).context("reading the journal")?;
        let mut captured: std::collections::HashMap<String, bool> = Default::default();
        for line in journal.lines() {
            let entry: serde_json::Value =
                serde_json::from_str(line).context("reading a journal line")?;
            if let Some(id) = entry.pointer("/intent/id").and_then(|id| id.as_str()) {
                let status = entry.pointer("/intent/status").and_then(|s| s.as_str());
                captured.insert(format!("pi {id}"), status == Some("succeeded"));
            }
            if let Some(id) = entry.pointer("/order/id").and_then(|id| id.as_str()) {
                let capture = entry
                    .pointer("/order/authorization/capture/status")
                    .and_then(|s| s.as_str());
                captured.insert(format!("order {id}"), capture == Some("COMPLETED"));
            }
        }
        Ok(captured.values().filter(|captured| **captured).count())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(&self.ledger);
    }
}
