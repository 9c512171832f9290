//! Publishing: a producer appends envelopes to its own outbox table
//! (`<producer>.event_outbox`) inside the transaction that makes the change.
//!
//! Order. Outbox ids come from a sequence, and a sequence value is taken
//! when a row is inserted but becomes visible when its transaction commits:
//! with concurrent writers, id 7 can commit after id 8 was read, and a
//! reader of `id > last seen` would skip it for ever. So every append first
//! takes a transaction-scoped advisory lock per producer and holds it until
//! its commit: appends of one producer commit one at a time, in id order,
//! and whoever has seen id N committed will never see a new id below N. The
//! same lock makes the per-aggregate `sequence` (max + 1) race-free. The
//! cost is that a producer's transactions serialize from their append to
//! their commit, so the append should be the last statement before commit
//! (and batch writers append once per batch). An append is one round trip:
//! the lock and the numbered insert go to PostgreSQL together, as prepared
//! statements, after `boxoffice_runtime::postgres::GENERIC_PLANS` (see
//! [`Outbox::append`]).

use anyhow::Context as _;
use chrono::Utc;
use deadpool_postgres::GenericClient;
use prost::Message as _;
use uuid::Uuid;

use crate::envelope::{Envelope, NewEvent, event_type};

/// The outbox table's name inside the producer's schema.
pub const OUTBOX_TABLE: &str = "event_outbox";

/// The NOTIFY channel a producer's appends wake consumers on.
pub fn channel(producer: &str) -> String {
    format!("boxoffice_events_{producer}")
}

/// Schema names are lowercase letters, digits and underscores (they are
/// spliced into SQL).
pub(crate) fn check_identifier(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 48
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit(),
        "{name:?} is not a schema name (lowercase letters, digits, underscores)"
    );
    Ok(())
}

/// The producer's tables: the outbox (with a statement trigger that
/// notifies consumers at commit) and the relay's checkpoint.
pub fn outbox_ddl(producer: &str) -> anyhow::Result<String> {
    check_identifier(producer)?;
    let channel = channel(producer);
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS {producer};
         CREATE SEQUENCE IF NOT EXISTS {producer}.event_outbox_id;
         CREATE TABLE IF NOT EXISTS {producer}.event_outbox (
             id             bigint PRIMARY KEY,
             event_id       uuid NOT NULL UNIQUE,
             aggregate_type text NOT NULL,
             aggregate_id   text NOT NULL,
             sequence       bigint NOT NULL,
             event_type     text NOT NULL,
             envelope       bytea NOT NULL,
             created_at     timestamptz NOT NULL DEFAULT now(),
             UNIQUE (aggregate_type, aggregate_id, sequence)
         );
         CREATE OR REPLACE FUNCTION {producer}.event_outbox_notify() RETURNS trigger
             LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_notify('{channel}', '');
             RETURN NULL;
         END;
         $$;
         DROP TRIGGER IF EXISTS event_outbox_notify ON {producer}.event_outbox;
         CREATE TRIGGER event_outbox_notify AFTER INSERT ON {producer}.event_outbox
             FOR EACH STATEMENT EXECUTE FUNCTION {producer}.event_outbox_notify();
         CREATE TABLE IF NOT EXISTS {producer}.event_relay (
             stream     text PRIMARY KEY,
             position   bigint NOT NULL DEFAULT 0,
             updated_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
}

/// Whether a producer's migration `sql` begins by creating exactly the
/// tables [`outbox_ddl`] describes (comments and layout aside): a service
/// keeps its outbox in a frozen migration of its own, and its tests hold
/// that migration to the library's with this.
pub fn migration_creates_outbox(sql: &str, producer: &str) -> bool {
    fn words(sql: &str) -> Vec<&str> {
        sql.lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .flat_map(str::split_whitespace)
            .collect()
    }
    let Ok(library) = outbox_ddl(producer) else {
        return false;
    };
    let (created, expected) = (words(sql), words(&library));
    created.len() >= expected.len() && created[..expected.len()] == expected[..]
}

/// Takes, until `transaction` ends, the install lock every outbox and
/// consumer-table install shares, then the migration lock of `schema`
/// (`boxoffice_runtime::postgres::migrate` takes it too): `CREATE SCHEMA IF
/// NOT EXISTS` is not safe against a concurrent creation of the same
/// schema, and a service's migration and another process's install of the
/// same schema (notify installs the webhooks' outbox) can start together.
/// Always in this order, and no migration takes the install lock, so they
/// cannot deadlock.
pub(crate) async fn lock_schema(
    transaction: &deadpool_postgres::Transaction<'_>,
    schema: &str,
) -> anyhow::Result<()> {
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('boxoffice.events.install'))",
            &[],
        )
        .await
        .context("taking the install lock")?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('boxoffice.migrate.' || $1::text))",
            &[&schema],
        )
        .await
        .context("taking the schema's migration lock")?;
    Ok(())
}

/// Creates the producer's outbox tables when missing (idempotent; safe for
/// replicas starting together).
pub async fn install(pool: &deadpool_postgres::Pool, producer: &str) -> anyhow::Result<()> {
    let ddl = outbox_ddl(producer)?;
    let mut client = pool
        .get()
        .await
        .context("connecting to install the outbox")?;
    let transaction = client.transaction().await?;
    lock_schema(&transaction, producer).await?;
    transaction
        .batch_execute(&ddl)
        .await
        .context("creating the outbox")?;
    transaction
        .commit()
        .await
        .context("committing the outbox")?;
    Ok(())
}

/// A producer's outbox.
#[derive(Clone, Debug)]
pub struct Outbox {
    producer: String,
    lock_key: String,
    insert_sql: String,
}

/// Takes the producer's append lock until the transaction ends.
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";

impl Outbox {
    /// `producer` is the service's schema, where its outbox lives (a name
    /// that is not a schema name makes every append fail).
    pub fn new(producer: &str) -> Self {
        Self {
            producer: producer.to_owned(),
            lock_key: format!("boxoffice.events.outbox.{producer}"),
            // Numbering and writing in one statement, run right after the
            // lock (see `append`): each aggregate's sequence continues from
            // its highest stored one, in the order the events were given;
            // ids are taken from the sequence and handed out in that order
            // too. The envelopes arrive encoded without their sequence
            // (proto3 leaves a zero out), and the sequence is appended to
            // the bytes as field 5 (tag 0x28, a varint): a protobuf reader
            // takes a field wherever it stands, so the stored bytes are the
            // whole envelope.
            insert_sql: format!(
                "WITH input AS (
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])
                         WITH ORDINALITY AS i(event_id, aggregate_type, aggregate_id, event_type, envelope, n)
                 ),
                 numbered AS (
                     SELECT i.*,
                            coalesce((SELECT max(o.sequence) FROM {producer}.event_outbox o
                                      WHERE o.aggregate_type = i.aggregate_type AND o.aggregate_id = i.aggregate_id), 0)
                            + row_number() OVER (PARTITION BY i.aggregate_type, i.aggregate_id ORDER BY i.n) AS sequence
                     FROM input i
                 ),
                 taken AS (SELECT nextval('{producer}.event_outbox_id') AS id FROM input),
                 ids AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM taken)
                 INSERT INTO {producer}.event_outbox
                     (id, event_id, aggregate_type, aggregate_id, sequence, event_type, envelope)
                 SELECT ids.id, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                        e.envelope || '\\x28'::bytea || (
                            SELECT string_agg(
                                       set_byte('\\x00'::bytea, 0,
                                           (((e.sequence >> (7 * k)) & 127)
                                            | CASE WHEN (e.sequence >> (7 * (k + 1))) > 0 THEN 128 ELSE 0 END)::int),
                                       ''::bytea ORDER BY k)
                            FROM generate_series(0, 9) AS k
                            WHERE k = 0 OR (e.sequence >> (7 * k)) > 0)
                 FROM numbered e JOIN ids ON ids.n = e.n
                 RETURNING event_id, sequence"
            ),
        }
    }

    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Takes the producer's append lock until `transaction` ends, without
    /// appending: for a producer that must look at its outbox before
    /// deciding what to append (a one-time backfill).
    pub async fn lock(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
    ) -> anyhow::Result<()> {
        let lock = transaction
            .prepare_cached(LOCK_SQL)
            .await
            .context("preparing the outbox lock")?;
        transaction
            .execute(&lock, &[&self.lock_key])
            .await
            .context("taking the outbox lock")?;
        Ok(())
    }

    /// Takes the producer's append lock and runs `sql` under it, in one
    /// round trip: for a producer whose events depend on what other
    /// transactions of the producer committed (whether its sale left an
    /// event sold out). The statement's snapshot is taken once the lock is
    /// held, so it sees every earlier holder's commit. `transaction` is a
    /// [`deadpool_postgres::Transaction`] or the client of a
    /// `boxoffice_runtime::postgres::PipelinedTransaction`.
    pub async fn query_locked<C: GenericClient>(
        &self,
        transaction: &C,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> anyhow::Result<Vec<tokio_postgres::Row>> {
        let (lock, statement) = futures::try_join!(
            transaction.prepare_cached(LOCK_SQL),
            transaction.prepare_cached(sql)
        )
        .context("preparing a statement under the outbox lock")?;
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&self.lock_key];
        let (_, rows) = futures::try_join!(
            transaction.execute(&lock, &key),
            transaction.query(&statement, params)
        )
        .context("querying under the outbox lock")?;
        Ok(rows)
    }

    /// Appends `events`, in order, inside `transaction`: they commit or
    /// roll back with it. Answers the envelopes as written. Holds the
    /// producer's append lock until the transaction ends (see the module
    /// docs), so call it last.
    ///
    /// One round trip: the lock and the numbered insert are sent together
    /// (pipelined) as prepared statements. PostgreSQL runs them one after
    /// the other, and the insert's snapshot (read committed: one per
    /// statement) is taken once the lock is held, so its numbering sees the
    /// previous holder's rows.
    pub async fn append<C: GenericClient>(
        &self,
        transaction: &C,
        events: Vec<NewEvent>,
    ) -> anyhow::Result<Vec<Envelope>> {
        self.prepare_append(transaction, events)
            .await?
            .send(transaction)
            .await
    }

    /// [`Self::append`] in two steps: this one builds the envelopes and
    /// prepares the statements (a round trip only the first time on a
    /// connection); [`PreparedAppend::send`] sends them, all on its first
    /// poll, so it can travel with a pipelined `COMMIT`
    /// (`boxoffice_runtime::postgres::PipelinedTransaction::commit_with`).
    pub async fn prepare_append<C: GenericClient>(
        &self,
        transaction: &C,
        events: Vec<NewEvent>,
    ) -> anyhow::Result<PreparedAppend> {
        check_identifier(&self.producer)?;
        if events.is_empty() {
            return Ok(PreparedAppend::default());
        }
        let now = Utc::now();
        let occurred_at = prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        };
        let mut append = PreparedAppend {
            lock_key: self.lock_key.clone(),
            ..PreparedAppend::default()
        };
        for event in events {
            let event_id = Uuid::now_v7();
            let kind = event_type(&event.payload);
            let envelope = Envelope {
                event_id: event_id.to_string(),
                producer: self.producer.clone(),
                aggregate_type: event.aggregate_type,
                aggregate_id: event.aggregate_id,
                // Numbered by the insert (see `new`).
                sequence: 0,
                occurred_at: Some(occurred_at),
                traceparent: event.traceparent,
                event_type: kind.to_owned(),
                contract_version: crate::envelope::KNOWN_CONTRACT_VERSION,
                payload: Some(event.payload),
            };
            append.event_ids.push(event_id);
            append.types.push(envelope.aggregate_type.clone());
            append.ids.push(envelope.aggregate_id.clone());
            append.event_types.push(kind);
            append.bytes.push(envelope.encode_to_vec());
            append.envelopes.push(envelope);
        }
        let (lock, insert) = futures::try_join!(
            transaction.prepare_cached(LOCK_SQL),
            transaction.prepare_cached(&self.insert_sql)
        )
        .context("preparing the outbox append")?;
        append.statements = Some((lock, insert));
        Ok(append)
    }
}

/// An append whose envelopes are built and whose statements are prepared
/// ([`Outbox::prepare_append`]); nothing is sent yet.
#[derive(Default)]
pub struct PreparedAppend {
    /// The lock and the insert; `None` when there is nothing to append.
    statements: Option<(tokio_postgres::Statement, tokio_postgres::Statement)>,
    lock_key: String,
    envelopes: Vec<Envelope>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    ids: Vec<String>,
    event_types: Vec<&'static str>,
    bytes: Vec<Vec<u8>>,
}

impl PreparedAppend {
    /// Sends the append (plan setting, lock, insert) on the first poll and
    /// answers the envelopes as numbered; with nothing to append, sends
    /// nothing.
    pub async fn send<C: GenericClient>(self, transaction: &C) -> anyhow::Result<Vec<Envelope>> {
        let Some((lock, insert)) = &self.statements else {
            return Ok(Vec::new());
        };
        let key: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&self.lock_key];
        let columns: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &self.event_ids,
            &self.types,
            &self.ids,
            &self.event_types,
            &self.bytes,
        ];
        let (_, _, rows) = futures::try_join!(
            transaction.batch_execute(boxoffice_runtime::postgres::GENERIC_PLANS),
            transaction.execute(lock, &key),
            transaction.query(insert, &columns)
        )
        .context("appending to the outbox")?;
        let mut envelopes = self.envelopes;
        anyhow::ensure!(rows.len() == envelopes.len(), "outbox append lost rows");
        let numbered: std::collections::HashMap<Uuid, i64> = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .context("reading the outbox numbering")?;
        for (envelope, event_id) in envelopes.iter_mut().zip(&self.event_ids) {
            let sequence = numbered
                .get(event_id)
                .context("outbox append lost an event")?;
            envelope.sequence = u64::try_from(*sequence).context("negative outbox sequence")?;
        }
        Ok(envelopes)
    }
}
