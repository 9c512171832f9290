//! Consumer groups. A group reads one or more producers' streams; per
//! stream, one batch is in flight at a time (that is the backpressure: the
//! next batch is read once the handler is done with this one), events
//! reach the handler in stream order (so in order per aggregate), and the
//! group's checkpoint moves past a batch only once the handler has finished
//! it. A crash replays at most the unfinished batch: delivery is at least
//! once, and handlers must be idempotent by event id (see
//! [`crate::postgres::first_time`] for a helper, or keep a version per
//! aggregate as the search index does).
//!
//! What reaches the handler is decided by the compatibility rule: an event
//! of a type this build does not know is skipped and counted; one written
//! under a newer contract, or not readable at all, goes to the group's
//! dead-letter table with the reason; an event the handler rejects as
//! poison, or keeps failing on (`max_attempts`), goes there too. Either
//! way the stream goes on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_runtime::Shutdown;
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;

use crate::Transport;
use crate::envelope::{Classified, Envelope, Payload, classify};
use crate::group::Raw;
pub use crate::group::{ConsumerConfig, ConsumerStats, StatsSnapshot};

/// An event delivered to a handler.
#[derive(Clone, Debug)]
pub struct Received {
    /// The producer whose stream it came from.
    pub stream: Arc<str>,
    /// Its position in that stream (outbox id, or JetStream sequence).
    pub position: u64,
    pub envelope: Envelope,
}

impl Received {
    /// The payload; always set for what a handler receives.
    pub fn payload(&self) -> Option<&Payload> {
        self.envelope.payload.as_ref()
    }

    pub fn event_id(&self) -> Option<uuid::Uuid> {
        uuid::Uuid::parse_str(&self.envelope.event_id).ok()
    }
}

/// Why a handler did not finish a batch.
#[derive(Debug)]
pub enum HandleError {
    /// A dependency is down: the same events are offered again after a
    /// backoff, for as long as it takes. Nothing is dead-lettered.
    Unavailable(anyhow::Error),
    /// `events[..index]` were handled; `events[index]` failed and is
    /// retried after a backoff, dead-lettered after `max_attempts`.
    Failed { index: usize, error: anyhow::Error },
    /// `events[..index]` were handled; `events[index]` can never be (it
    /// breaks a rule the handler relies on): dead-lettered at once.
    Poison { index: usize, reason: String },
}

/// What a consumer group does with its events.
pub trait Handler: Send + Sync + 'static {
    /// Handles `events` (in stream order, at least one). Called again with
    /// the same events after a crash: must be idempotent.
    fn handle(
        &self,
        events: &[Received],
    ) -> impl std::future::Future<Output = Result<(), HandleError>> + Send;
}

/// Where a stream's batches come from and where its checkpoint goes.
pub(crate) enum Source {
    Postgres(Box<crate::postgres::PostgresSource>),
    Nats(Box<crate::nats::NatsSource>),
}

impl Source {
    /// The next batch after the checkpoint; empty after waiting
    /// `idle_poll` (or on shutdown) without one.
    async fn next_batch(&mut self, shutdown: &Shutdown) -> anyhow::Result<Vec<Raw>> {
        match self {
            Self::Postgres(source) => source.next_batch(shutdown).await,
            Self::Nats(source) => source.next_batch(shutdown).await,
        }
    }

    /// Everything up to and including `last` is done.
    async fn commit(&mut self, last: &Raw) -> anyhow::Result<()> {
        match self {
            Self::Postgres(source) => source.commit(last).await,
            Self::Nats(source) => source.commit(last).await,
        }
    }

    /// Forgets connections after a failure; the next batch starts over
    /// from the checkpoint.
    fn reset(&mut self) {
        match self {
            Self::Postgres(source) => source.reset(),
            Self::Nats(source) => source.reset(),
        }
    }
}

/// A running consumer group: one task per stream.
pub struct ConsumerGroup {
    pub stats: Arc<ConsumerStats>,
    tasks: Vec<JoinHandle<()>>,
}

impl ConsumerGroup {
    /// Creates the group's tables when missing and starts reading every
    /// stream until `shutdown`.
    pub async fn start<H: Handler>(
        transport: &Transport,
        pool: Pool,
        config: ConsumerConfig,
        handler: Arc<H>,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        crate::postgres::install_consumer(&pool, &config.schema).await?;
        let stats = Arc::new(ConsumerStats::default());
        crate::metrics::register(&config.schema, &config.group, &stats);
        let mut tasks = Vec::new();
        for stream in &config.streams {
            let source = match transport {
                Transport::Postgres { listen } => Source::Postgres(Box::new(
                    crate::postgres::PostgresSource::new(
                        pool.clone(),
                        listen.clone(),
                        &config,
                        stream,
                    )
                    .with_stats(stats.clone()),
                )),
                Transport::Nats(nats) => Source::Nats(Box::new(crate::nats::NatsSource::new(
                    nats.clone(),
                    &config,
                    stream,
                    stats.clone(),
                ))),
            };
            let runner = Runner {
                stream: Arc::from(stream.as_str()),
                pool: pool.clone(),
                config: config.clone(),
                handler: handler.clone(),
                stats: stats.clone(),
                dead_letter_sql: format!(
                    "INSERT INTO {}.event_dead_letters
                         (consumer_group, stream, position, event_id, event_type, reason, envelope)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    config.schema
                ),
            };
            tasks.push(tokio::spawn(runner.run(source, shutdown.clone())));
        }
        Ok(Self { stats, tasks })
    }

    /// Forgets the group's position in every stream, so it next starts
    /// from the beginning (e.g. for an index that lost its data). Call it
    /// while no instance of the group runs.
    pub async fn reset(
        transport: &Transport,
        pool: &Pool,
        config: &ConsumerConfig,
    ) -> anyhow::Result<()> {
        config.validate()?;
        crate::postgres::install_consumer(pool, &config.schema).await?;
        for stream in &config.streams {
            match transport {
                Transport::Postgres { .. } => {
                    crate::postgres::forget_position(pool, &config.schema, &config.group, stream)
                        .await?
                }
                Transport::Nats(nats) => crate::nats::forget_position(nats, config, stream).await?,
            }
        }
        Ok(())
    }

    /// Waits until every stream's task has stopped (after shutdown, each
    /// finishes its batch first).
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a consumer task failed");
            }
        }
    }

    /// Stops the tasks at once, wherever they are (a crash, for tests).
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Runner<H> {
    stream: Arc<str>,
    pool: Pool,
    config: ConsumerConfig,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    dead_letter_sql: String,
}

/// The batch could not be finished (shutdown while retrying): it is not
/// committed and comes again.
struct Interrupted;

impl<H: Handler> Runner<H> {
    async fn run(self, mut source: Source, shutdown: Shutdown) {
        self.consume(&mut source, &shutdown).await;
        if self.config.ephemeral
            && let Source::Postgres(_) = source
            && let Err(error) = crate::postgres::forget_position(
                &self.pool,
                &self.config.schema,
                &self.config.group,
                &self.stream,
            )
            .await
        {
            tracing::warn!(group = %self.config.group, error = format!("{error:#}"),
                "could not drop an ephemeral group's checkpoint");
        }
    }

    async fn consume(&self, source: &mut Source, shutdown: &Shutdown) {
        let shutdown = shutdown.clone();
        let mut backoff = self.config.first_backoff;
        let group = self.config.group.as_str();
        let mut switch = crate::switch::Switch::follow();
        while !shutdown.is_triggered() {
            if switch.is_paused(group) {
                // Lets go of the streams (lease, LISTEN) until resumed.
                source.reset();
                tokio::select! {
                    () = switch.until(group, false) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            // A pause while waiting for events takes effect at once: the
            // read is abandoned before anything was handled or committed.
            let next = tokio::select! {
                biased;
                () = switch.until(group, true) => continue,
                next = source.next_batch(&shutdown) => next,
            };
            let batch = match next {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(group, stream = %self.stream, error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64, "reading events failed");
                    source.reset();
                    if self.pause(&mut backoff, &shutdown).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(last) = batch.last() else {
                continue;
            };
            match self.process(&batch, &shutdown).await {
                Ok(()) => {}
                Err(Interrupted) => return,
            }
            if let Err(error) = source.commit(last).await {
                // Not lost: the batch comes again (at least once).
                tracing::warn!(group, stream = %self.stream, error = format!("{error:#}"),
                    "saving the checkpoint failed");
                source.reset();
                if self.pause(&mut backoff, &shutdown).await.is_err() {
                    return;
                }
                continue;
            }
            backoff = self.config.first_backoff;
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn pause(&self, backoff: &mut Duration, shutdown: &Shutdown) -> Result<(), Interrupted> {
        let wait = *backoff + backoff.mul_f64(rand::random::<f64>() / 4.0);
        *backoff = (*backoff * 2).min(self.config.max_backoff);
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = shutdown.cancelled() => Err(Interrupted),
        }
    }

    /// Sorts the batch by the compatibility rule and hands the known events
    /// to the handler, in order, in runs between the ones set aside.
    async fn process(&self, batch: &[Raw], shutdown: &Shutdown) -> Result<(), Interrupted> {
        let mut run: Vec<Received> = Vec::with_capacity(batch.len());
        for raw in batch {
            match classify(&raw.bytes) {
                Classified::Known(envelope) => run.push(Received {
                    stream: self.stream.clone(),
                    position: raw.position,
                    envelope,
                }),
                Classified::UnknownType(envelope) => {
                    self.stats.skipped_unknown.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(group = %self.config.group, stream = %self.stream,
                        event_type = envelope.event_type, position = raw.position,
                        "event of an unknown type skipped");
                }
                Classified::NewerContract(envelope) => {
                    self.handle_run(&mut run, shutdown).await?;
                    let reason = format!(
                        "contract version {} is newer than this consumer knows",
                        envelope.contract_version
                    );
                    self.dead_letter(raw.position, Some(&envelope), &raw.bytes, &reason, shutdown)
                        .await?;
                }
                Classified::Unreadable(reason) => {
                    self.handle_run(&mut run, shutdown).await?;
                    self.dead_letter(raw.position, None, &raw.bytes, &reason, shutdown)
                        .await?;
                }
            }
        }
        self.handle_run(&mut run, shutdown).await
    }

    async fn handle_run(
        &self,
        run: &mut Vec<Received>,
        shutdown: &Shutdown,
    ) -> Result<(), Interrupted> {
        let mut start = 0;
        let mut attempts = 0u32;
        let mut backoff = self.config.first_backoff;
        while start < run.len() {
            let events = &run[start..];
            match self.handler.handle(events).await {
                Ok(()) => {
                    self.stats
                        .handled
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    if let Some(time) = events.last().and_then(|e| e.envelope.occurred_at) {
                        let occurred = chrono::DateTime::from_timestamp(
                            time.seconds,
                            time.nanos.max(0) as u32,
                        );
                        if let Some(occurred) = occurred {
                            let lag = (chrono::Utc::now() - occurred).num_milliseconds().max(0);
                            self.stats.lag_ms.store(lag as u64, Ordering::Relaxed);
                        }
                    }
                    break;
                }
                Err(HandleError::Unavailable(error)) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(group = %self.config.group, stream = %self.stream,
                        error = format!("{error:#}"), "handler unavailable; retrying");
                    self.pause(&mut backoff, shutdown).await?;
                }
                Err(HandleError::Failed { index, error }) => {
                    let index = index.min(events.len() - 1);
                    self.count_handled(index);
                    if index > 0 {
                        attempts = 0;
                    }
                    start += index;
                    attempts += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    if attempts >= self.config.max_attempts {
                        let failed = &run[start];
                        let reason = format!("failed {attempts} times: {error:#}");
                        self.dead_letter_received(failed, &reason, shutdown).await?;
                        start += 1;
                        attempts = 0;
                        backoff = self.config.first_backoff;
                    } else {
                        tracing::warn!(group = %self.config.group, stream = %self.stream,
                            position = run[start].position, attempts, error = format!("{error:#}"),
                            "handler failed; retrying");
                        self.pause(&mut backoff, shutdown).await?;
                    }
                }
                Err(HandleError::Poison { index, reason }) => {
                    let index = index.min(events.len() - 1);
                    self.count_handled(index);
                    start += index;
                    let poison = &run[start];
                    self.dead_letter_received(poison, &reason, shutdown).await?;
                    start += 1;
                    attempts = 0;
                }
            }
        }
        run.clear();
        Ok(())
    }

    fn count_handled(&self, count: usize) {
        self.stats
            .handled
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    async fn dead_letter_received(
        &self,
        event: &Received,
        reason: &str,
        shutdown: &Shutdown,
    ) -> Result<(), Interrupted> {
        let bytes = prost::Message::encode_to_vec(&event.envelope);
        self.dead_letter(
            event.position,
            Some(&event.envelope),
            &bytes,
            reason,
            shutdown,
        )
        .await
    }

    /// Records a dead letter; retried until it is written (or shutdown),
    /// since the stream may not move past an event that is neither handled
    /// nor recorded.
    async fn dead_letter(
        &self,
        position: u64,
        envelope: Option<&Envelope>,
        bytes: &[u8],
        reason: &str,
        shutdown: &Shutdown,
    ) -> Result<(), Interrupted> {
        let event_id = envelope.and_then(|e| uuid::Uuid::parse_str(&e.event_id).ok());
        let event_type = envelope.map(|e| e.event_type.as_str()).unwrap_or("");
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        let mut backoff = self.config.first_backoff;
        loop {
            let written = async {
                let client = self.pool.get().await.context("connecting")?;
                client
                    .execute(
                        &self.dead_letter_sql,
                        &[
                            &self.config.group,
                            &&*self.stream,
                            &position,
                            &event_id,
                            &event_type,
                            &reason,
                            &bytes,
                        ],
                    )
                    .await
                    .context("writing a dead letter")?;
                anyhow::Ok(())
            }
            .await;
            match written {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(group = %self.config.group, stream = %self.stream, position,
                        event_id = ?event_id, event_type, reason, "event dead-lettered");
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(group = %self.config.group, error = format!("{error:#}"),
                        "could not record a dead letter; retrying");
                    self.pause(&mut backoff, shutdown).await?;
                }
            }
        }
    }
}
