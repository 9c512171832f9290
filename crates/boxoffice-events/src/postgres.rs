//! The default transport, and the consumer side's tables.
//!
//! A consumer reads a producer's outbox table directly (`id > checkpoint`
//! in id order; the outbox hands ids out in commit order, see
//! [`crate::outbox`]). It sleeps until a NOTIFY from the producer's append
//! wakes it, or `idle_poll` passes (a lost notification only delays). One
//! instance per group and stream reads at a time: it holds a session
//! advisory lock on a dedicated connection (the lease), which PostgreSQL
//! frees when that instance dies, and through which it writes its
//! checkpoint.
//!
//! Consumer tables, in the consumer's own schema: `event_checkpoints` (one
//! position per group and stream), `event_dead_letters` (what was set
//! aside, with the reason and the bytes) and `event_processed` (event ids a
//! handler has applied, for [`first_time`]).

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_runtime::Shutdown;
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::group::{ConsumerConfig, Raw};
use crate::lease::Lease;
use crate::outbox::{channel, check_identifier, lock_schema};

pub fn consumer_ddl(schema: &str) -> anyhow::Result<String> {
    check_identifier(schema)?;
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.event_checkpoints (
             consumer_group text NOT NULL,
             stream         text NOT NULL,
             position       bigint NOT NULL DEFAULT 0,
             updated_at     timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer_group, stream)
         );
         CREATE TABLE IF NOT EXISTS {schema}.event_dead_letters (
             id             bigserial PRIMARY KEY,
             consumer_group text NOT NULL,
             stream         text NOT NULL,
             position       bigint NOT NULL,
             event_id       uuid,
             event_type     text NOT NULL,
             reason         text NOT NULL,
             envelope       bytea NOT NULL,
             dead_at        timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX IF NOT EXISTS event_dead_letters_by_group
             ON {schema}.event_dead_letters (consumer_group, id);
         CREATE TABLE IF NOT EXISTS {schema}.event_processed (
             consumer_group text NOT NULL,
             event_id       uuid NOT NULL,
             processed_at   timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (consumer_group, event_id)
         );"
    ))
}

/// Creates the consumer tables of `schema` when missing.
pub async fn install_consumer(pool: &Pool, schema: &str) -> anyhow::Result<()> {
    let ddl = consumer_ddl(schema)?;
    let mut client = pool
        .get()
        .await
        .context("connecting to install consumer tables")?;
    let transaction = client.transaction().await?;
    lock_schema(&transaction, schema).await?;
    transaction
        .batch_execute(&ddl)
        .await
        .context("creating consumer tables")?;
    transaction
        .commit()
        .await
        .context("committing consumer tables")?;
    Ok(())
}

/// Starts a consumer handler's transaction that commits without waiting
/// for its WAL flush (`synchronous_commit = off`, this transaction only).
///
/// For handlers whose writes can be derived again from the streams (a
/// projection: statistics, attendance, loyalty entries keyed by event id):
/// a crash can lose the last few such commits, and then the checkpoint
/// that followed them too (WAL is flushed in order, and the checkpoint is
/// written after the handler commits), so the events are delivered again
/// and the idempotent handler applies them again. Nothing is lost; the
/// commits just stop paying a disk flush each, on the cores the
/// confirmations run on. Not for handlers with effects outside the
/// database (mail, HTTP): those record before they act and must commit
/// synchronously.
pub async fn projection_transaction(
    client: &mut deadpool_postgres::Object,
) -> anyhow::Result<deadpool_postgres::Transaction<'_>> {
    let transaction = client
        .transaction()
        .await
        .context("starting a handler transaction")?;
    transaction
        .batch_execute("SET LOCAL synchronous_commit = off")
        .await
        .context("starting a handler transaction")?;
    Ok(transaction)
}

/// The idempotency helper: records that `group` applied `event_id` inside
/// the handler's own transaction and answers whether this is the first
/// time. Apply the event only when it answers `true`; a replay then changes
/// nothing, and a rolled-back attempt leaves no record.
pub async fn first_time(
    transaction: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    group: &str,
    event_id: Uuid,
) -> anyhow::Result<bool> {
    Ok(first_times(transaction, schema, group, &[event_id])
        .await?
        .contains(&event_id))
}

/// [`first_time`] for a whole batch in one statement (prepared once per
/// connection): records every id and answers those recorded now (not seen
/// before), so a handler applies a batch with a few set-based statements
/// instead of one per event.
pub async fn first_times(
    transaction: &deadpool_postgres::Transaction<'_>,
    schema: &str,
    group: &str,
    event_ids: &[Uuid],
) -> anyhow::Result<std::collections::HashSet<Uuid>> {
    check_identifier(schema)?;
    if event_ids.is_empty() {
        return Ok(Default::default());
    }
    let statement = transaction
        .prepare_cached(&format!(
            "INSERT INTO {schema}.event_processed (consumer_group, event_id)
             SELECT $1, id FROM unnest($2::uuid[]) AS id
             ON CONFLICT DO NOTHING RETURNING event_id"
        ))
        .await
        .context("recording processed events")?;
    let rows = transaction
        .query(&statement, &[&group, &event_ids])
        .await
        .context("recording processed events")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Deletes `group`'s checkpoint of `stream`: it starts over from the
/// beginning.
pub(crate) async fn forget_position(
    pool: &Pool,
    schema: &str,
    group: &str,
    stream: &str,
) -> anyhow::Result<()> {
    check_identifier(schema)?;
    pool.get()
        .await
        .context("connecting")?
        .execute(
            &format!(
                "DELETE FROM {schema}.event_checkpoints WHERE consumer_group = $1 AND stream = $2"
            ),
            &[&group, &stream],
        )
        .await
        .context("forgetting a checkpoint")?;
    Ok(())
}

/// A dead letter as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub stream: String,
    pub position: i64,
    pub event_id: Option<Uuid>,
    pub event_type: String,
    pub reason: String,
}

/// The dead letters of `group`, oldest first.
pub async fn dead_letters(
    pool: &Pool,
    schema: &str,
    group: &str,
) -> anyhow::Result<Vec<DeadLetter>> {
    check_identifier(schema)?;
    let client = pool.get().await.context("connecting")?;
    let rows = client
        .query(
            &format!(
                "SELECT stream, position, event_id, event_type, reason FROM {schema}.event_dead_letters
                 WHERE consumer_group = $1 ORDER BY id"
            ),
            &[&group],
        )
        .await
        .context("reading dead letters")?;
    Ok(rows
        .iter()
        .map(|row| DeadLetter {
            stream: row.get(0),
            position: row.get(1),
            event_id: row.get(2),
            event_type: row.get(3),
            reason: row.get(4),
        })
        .collect())
}

/// One stream of one group over PostgreSQL.
pub(crate) struct PostgresSource {
    pool: Pool,
    listen: tokio_postgres::Config,
    group: String,
    stream: String,
    channel: String,
    lease_key: String,
    batch_size: i64,
    idle_poll: std::time::Duration,
    linger: std::time::Duration,
    pace: std::time::Duration,
    /// When the outbox was last read (see [`ConsumerConfig::pace`]).
    last_read: Option<std::time::Instant>,
    read_sql: String,
    checkpoint_insert_sql: String,
    checkpoint_read_sql: String,
    checkpoint_sql: String,
    wake: Arc<Notify>,
    lease: Option<Lease>,
    /// `checkpoint_sql` prepared on the lease's session.
    checkpoint_statement: Option<tokio_postgres::Statement>,
    position: i64,
    /// The last read found less than a batch: wait before the next one.
    caught_up: bool,
    /// When the checkpoint was last read back (see `next_batch`).
    checkpoint_read_at: std::time::Instant,
    stats_lag: Option<Arc<crate::group::ConsumerStats>>,
}

impl PostgresSource {
    pub(crate) fn new(
        pool: Pool,
        listen: tokio_postgres::Config,
        config: &ConsumerConfig,
        stream: &str,
    ) -> Self {
        let schema = &config.schema;
        Self {
            pool,
            listen,
            group: config.group.clone(),
            stream: stream.to_owned(),
            channel: channel(stream),
            lease_key: format!(
                "boxoffice.events.consumer.{schema}.{}.{stream}",
                config.group
            ),
            batch_size: i64::try_from(config.batch_size).unwrap_or(i64::MAX),
            idle_poll: config.idle_poll,
            linger: config.linger,
            pace: config.pace,
            last_read: None,
            read_sql: format!(
                "SELECT id, envelope, (SELECT max(id) FROM {stream}.event_outbox) AS high
                 FROM {stream}.event_outbox WHERE id > $1 ORDER BY id LIMIT $2"
            ),
            checkpoint_insert_sql: format!(
                "INSERT INTO {schema}.event_checkpoints (consumer_group, stream) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING"
            ),
            checkpoint_read_sql: format!(
                "SELECT position FROM {schema}.event_checkpoints WHERE consumer_group = $1 AND stream = $2"
            ),
            checkpoint_sql: format!(
                "UPDATE {schema}.event_checkpoints SET position = $3, updated_at = now()
                 WHERE consumer_group = $1 AND stream = $2 AND position < $3"
            ),
            wake: Arc::new(Notify::new()),
            lease: None,
            checkpoint_statement: None,
            position: 0,
            caught_up: false,
            checkpoint_read_at: std::time::Instant::now(),
            stats_lag: None,
        }
    }

    pub(crate) fn with_stats(mut self, stats: Arc<crate::group::ConsumerStats>) -> Self {
        self.stats_lag = Some(stats);
        self
    }

    /// Waits for a notification (then lingers, so that the commits of
    /// that moment are read together, and keeps its pace: never sooner
    /// than `pace` after the last read), the poll interval or shutdown.
    async fn idle(&self, shutdown: &Shutdown) {
        tokio::select! {
            () = self.wake.notified() => {
                let lingered = tokio::time::Instant::now() + self.linger;
                let paced = self
                    .last_read
                    .map_or(lingered, |at| tokio::time::Instant::from_std(at + self.pace));
                tokio::select! {
                    () = tokio::time::sleep_until(lingered.max(paced)) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            () = tokio::time::sleep(self.idle_poll) => {}
            () = shutdown.cancelled() => {}
        }
    }

    pub(crate) async fn next_batch(&mut self, shutdown: &Shutdown) -> anyhow::Result<Vec<Raw>> {
        if !self.lease.as_ref().is_some_and(Lease::is_alive) {
            self.reset();
            let Some(lease) = Lease::try_acquire(
                &self.listen,
                &self.channel,
                &self.lease_key,
                self.wake.clone(),
            )
            .await?
            else {
                // Another instance of the group reads this stream.
                tokio::select! {
                    () = tokio::time::sleep(self.idle_poll) => {}
                    () = shutdown.cancelled() => {}
                }
                return Ok(Vec::new());
            };
            let client = self.pool.get().await.context("connecting")?;
            client
                .execute(&self.checkpoint_insert_sql, &[&self.group, &self.stream])
                .await
                .context("creating the checkpoint")?;
            self.position = client
                .query_one(&self.checkpoint_read_sql, &[&self.group, &self.stream])
                .await
                .context("reading the checkpoint")?
                .get(0);
            self.lease = Some(lease);
            self.checkpoint_read_at = std::time::Instant::now();
            self.caught_up = false;
        }
        if self.caught_up {
            self.idle(shutdown).await;
            self.caught_up = false;
            if shutdown.is_triggered() {
                return Ok(Vec::new());
            }
        }
        self.last_read = Some(std::time::Instant::now());
        let rows = {
            let client = self.pool.get().await.context("connecting")?;
            // Prepared once per connection: the read runs for every batch.
            let read = client
                .prepare_cached(&self.read_sql)
                .await
                .context("preparing the outbox read")?;
            client
                .query(&read, &[&self.position, &self.batch_size])
                .await
                .context("reading the outbox")?
        };
        let high = rows.first().map_or(self.position, |row| {
            row.get::<_, Option<i64>>("high").unwrap_or(self.position)
        });
        if let Some(stats) = &self.stats_lag {
            let behind = rows.last().map_or(0, |row| high - row.get::<_, i64>("id"));
            stats.set_lag(behind.max(0) as u64);
        }
        // Less than a batch: caught up, so the next read waits for news.
        self.caught_up = (rows.len() as i64) < self.batch_size;
        if rows.is_empty() {
            // Now and then, pick up a checkpoint an operator moved back (to
            // replay).
            if self.checkpoint_read_at.elapsed() >= self.idle_poll {
                let client = self.pool.get().await.context("connecting")?;
                self.position = client
                    .query_one(&self.checkpoint_read_sql, &[&self.group, &self.stream])
                    .await
                    .context("reading the checkpoint")?
                    .get(0);
                self.checkpoint_read_at = std::time::Instant::now();
            }
            return Ok(Vec::new());
        }
        Ok(rows
            .iter()
            .map(|row| Raw {
                position: row.get::<_, i64>("id") as u64,
                bytes: bytes::Bytes::from(row.get::<_, Vec<u8>>("envelope")),
                ack: None,
            })
            .collect())
    }

    /// Saves the checkpoint through the lease's own session: one round
    /// trip with a statement prepared once per lease, committed without
    /// waiting for its flush (see [`Lease`]), and refused once the lease
    /// is lost.
    pub(crate) async fn commit(&mut self, last: &Raw) -> anyhow::Result<()> {
        let position = i64::try_from(last.position).context("position")?;
        let lease = self.lease.as_ref().context("the stream's lease was lost")?;
        let checkpoint = match &self.checkpoint_statement {
            Some(statement) => statement.clone(),
            None => {
                let statement = lease
                    .client()
                    .prepare(&self.checkpoint_sql)
                    .await
                    .context("preparing the checkpoint")?;
                self.checkpoint_statement = Some(statement.clone());
                statement
            }
        };
        lease
            .client()
            .execute(&checkpoint, &[&self.group, &self.stream, &position])
            .await
            .context("saving the checkpoint")?;
        self.position = self.position.max(position);
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        self.lease = None;
        self.checkpoint_statement = None;
    }
}
