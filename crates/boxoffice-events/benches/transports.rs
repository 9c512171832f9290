//! Events benchmark, both transports: how many events per second go from the
//! outbox through the transport to a handler (for NATS, the relay runs
//! alongside and its own rate is reported too), and the commit-to-handler
//! lag (p50/p99) at a steady 1,000 events/s, one event per transaction.
//!
//! `cargo bench -p boxoffice-events --bench transports`
//! (`BOXOFFICE_BENCH_EVENTS`, default 100,000; `BOXOFFICE_BENCH_LAG_SECS`,
//! default 10). Needs PostgreSQL and NATS as the tests do; works in a
//! throwaway database and stream.
//!
//! Targets on 2 cores: at least 20,000 events/s through each transport; p99
//! lag at most 100 ms at 1,000 events/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice_contracts::events::v1 as pb;
use boxoffice_events::{
    ConsumerConfig, ConsumerGroup, HandleError, Handler, NatsTransport, NewEvent, Outbox, Payload,
    Received, Relay, Transport,
};
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::config::Secret;
use hdrhistogram::Histogram;
use uuid::Uuid;

const PRODUCER: &str = "bench";

struct Counter {
    handled: AtomicU64,
    lag: Mutex<Histogram<u64>>,
    measure_lag: bool,
}

impl Handler for Counter {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        if self.measure_lag {
            let now = chrono::Utc::now();
            let mut lag = self
                .lag
                .lock()
                .map_err(|_| HandleError::Unavailable(anyhow::anyhow!("lag histogram poisoned")))?;
            for event in events {
                if let Some(at) = event.envelope.occurred_at {
                    let micros = now.timestamp_micros()
                        - (at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000);
                    let _ = lag.record(micros.max(0) as u64);
                }
            }
        }
        self.handled
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sale(aggregate: Uuid) -> NewEvent {
    NewEvent::new(
        "event",
        aggregate,
        Payload::SeatsSold(pb::SeatsSold {
            event_id: aggregate.to_string(),
            booking_id: Uuid::now_v7().to_string(),
            sale_id: String::new(),
            seat_indexes: vec![1, 2, 3, 4],
        }),
    )
}

struct Db {
    name: String,
    server: String,
    pool: deadpool_postgres::Pool,
    config: tokio_postgres::Config,
}

impl Db {
    async fn new() -> anyhow::Result<Self> {
        let server = std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("boxoffice_events_bench_{}", Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let mut config: tokio_postgres::Config = server.parse()?;
        config.dbname(&name);
        let (base, _) = server
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("the server url names no database"))?;
        let pool = boxoffice_runtime::postgres::pool(&Secret::new(format!("{base}/{name}")), 16)?;
        boxoffice_events::outbox::install(&pool, PRODUCER).await?;
        Ok(Self {
            name,
            server,
            pool,
            config,
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        self.pool.close();
        let (client, connection) =
            tokio_postgres::connect(&self.server, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }

    async fn publish(&self, events: Vec<NewEvent>) -> anyhow::Result<()> {
        let outbox = Outbox::new(PRODUCER);
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        outbox.append(&transaction, events).await?;
        transaction.commit().await?;
        Ok(())
    }
}

async fn nats(db: &Db) -> anyhow::Result<NatsTransport> {
    let url = std::env::var(boxoffice_events::ENV_NATS_URL)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let unique = Uuid::new_v4().simple().to_string();
    let _ = db;
    let nats = NatsTransport::new(
        async_nats::connect(url).await?,
        &format!("BOXOFFICE_BENCH_{unique}"),
        &format!("bench_{unique}"),
    );
    nats.ensure_stream().await?;
    Ok(nats)
}

/// Waits until `done` holds, polling; gives up after `limit`.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "gave up after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn relay_position(db: &Db) -> anyhow::Result<i64> {
    let client = db.pool.get().await?;
    Ok(client
        .query_opt(&format!("SELECT position FROM {PRODUCER}.event_relay"), &[])
        .await?
        .map_or(0, |row| row.get(0)))
}

struct Throughput {
    consumed_per_sec: f64,
    relayed_per_sec: Option<f64>,
}

async fn throughput(transport_name: &str, count: u64) -> anyhow::Result<Throughput> {
    let db = Db::new().await?;
    let aggregates: Vec<Uuid> = (0..1_000).map(|_| Uuid::new_v4()).collect();
    let mut batch = Vec::with_capacity(1_000);
    for n in 0..count {
        batch.push(sale(aggregates[n as usize % aggregates.len()]));
        if batch.len() == 1_000 {
            db.publish(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        db.publish(batch).await?;
    }
    let high: i64 = db
        .pool
        .get()
        .await?
        .query_one(&format!("SELECT max(id) FROM {PRODUCER}.event_outbox"), &[])
        .await?
        .get(0);
    let shutdown = Shutdown::new();
    let (transport, nats) = match transport_name {
        "nats" => {
            let nats = nats(&db).await?;
            (Transport::Nats(nats.clone()), Some(nats))
        }
        _ => (
            Transport::Postgres {
                listen: db.config.clone(),
            },
            None,
        ),
    };
    let counter = Arc::new(Counter {
        handled: AtomicU64::new(0),
        lag: Mutex::new(Histogram::new(3)?),
        measure_lag: false,
    });
    let mut config = ConsumerConfig::new("bench", "bench_reader", &[PRODUCER]);
    config.batch_size = 1_000;
    let started = Instant::now();
    let mut relayed_per_sec = None;
    if let Some(nats) = &nats {
        let relay = Relay::new(db.pool.clone(), db.config.clone(), PRODUCER, nats.clone())?;
        tokio::spawn(relay.run(shutdown.clone()));
    }
    let group = ConsumerGroup::start(
        &transport,
        db.pool.clone(),
        config,
        counter.clone(),
        shutdown.clone(),
    )
    .await?;
    if nats.is_some() {
        let deadline = Instant::now() + Duration::from_secs(600);
        while relay_position(&db).await? < high {
            anyhow::ensure!(Instant::now() < deadline, "the relay did not finish");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        relayed_per_sec = Some(count as f64 / started.elapsed().as_secs_f64());
    }
    wait_for(Duration::from_secs(600), || {
        counter.handled.load(Ordering::Relaxed) >= count
    })
    .await?;
    let consumed_per_sec = count as f64 / started.elapsed().as_secs_f64();
    shutdown.trigger();
    group.join().await;
    if let Some(nats) = nats {
        nats.delete_stream().await?;
    }
    db.drop_database().await?;
    Ok(Throughput {
        consumed_per_sec,
        relayed_per_sec,
    })
}

async fn lag(transport_name: &str, seconds: u64) -> anyhow::Result<Histogram<u64>> {
    let db = Db::new().await?;
    let shutdown = Shutdown::new();
    let (transport, nats) = match transport_name {
        "nats" => {
            let nats = nats(&db).await?;
            let mut relay = Relay::new(db.pool.clone(), db.config.clone(), PRODUCER, nats.clone())?;
            relay.idle_poll = Duration::from_secs(1);
            tokio::spawn(relay.run(shutdown.clone()));
            (Transport::Nats(nats.clone()), Some(nats))
        }
        _ => (
            Transport::Postgres {
                listen: db.config.clone(),
            },
            None,
        ),
    };
    let counter = Arc::new(Counter {
        handled: AtomicU64::new(0),
        lag: Mutex::new(Histogram::new(3)?),
        measure_lag: true,
    });
    let mut config = ConsumerConfig::new("lag", "bench_reader", &[PRODUCER]);
    config.batch_size = 500;
    let group = ConsumerGroup::start(
        &transport,
        db.pool.clone(),
        config,
        counter.clone(),
        shutdown.clone(),
    )
    .await?;
    // 1,000 events/s, one per transaction, from 8 publishers.
    let total = seconds * 1_000;
    let db = Arc::new(db);
    let started = Instant::now();
    let mut publishers = Vec::new();
    for publisher in 0..8u64 {
        let db = db.clone();
        publishers.push(tokio::spawn(async move {
            let aggregate = Uuid::new_v4();
            let mut n = publisher;
            while n < total {
                let due = started + Duration::from_micros(n * 1_000);
                tokio::time::sleep_until(due.into()).await;
                db.publish(vec![sale(aggregate)]).await?;
                n += 8;
            }
            anyhow::Ok(())
        }));
    }
    for publisher in publishers {
        publisher.await??;
    }
    wait_for(Duration::from_secs(60), || {
        counter.handled.load(Ordering::Relaxed) >= total
    })
    .await?;
    shutdown.trigger();
    group.join().await;
    if let Some(nats) = nats {
        nats.delete_stream().await?;
    }
    let histogram = counter
        .lag
        .lock()
        .map_err(|_| anyhow::anyhow!("lag histogram poisoned"))?
        .clone();
    if let Ok(db) = Arc::try_unwrap(db) {
        db.drop_database().await?;
    }
    Ok(histogram)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = env_number("BOXOFFICE_BENCH_EVENTS", 100_000);
    let seconds = env_number("BOXOFFICE_BENCH_LAG_SECS", 10);
    println!(
        "| transport | relayed/s | consumed/s ({count} events) | lag p50 | lag p99 | lag max (1,000/s for {seconds} s) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for transport in ["postgres", "nats"] {
        let rates = throughput(transport, count).await?;
        let lag = lag(transport, seconds).await?;
        let ms = |micros: u64| format!("{:.1} ms", micros as f64 / 1_000.0);
        println!(
            "| {transport} | {} | {:.0} | {} | {} | {} |",
            rates
                .relayed_per_sec
                .map_or("—".to_owned(), |rate| format!("{rate:.0}")),
            rates.consumed_per_sec,
            ms(lag.value_at_quantile(0.5)),
            ms(lag.value_at_quantile(0.99)),
            ms(lag.max()),
        );
    }
    Ok(())
}
