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
//! (and batch writers append once per batch).

use anyhow::Context as _;
use chrono::Utc;
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

/// Creates the producer's outbox tables when missing (idempotent; safe for
/// replicas starting together).
pub async fn install(pool: &deadpool_postgres::Pool, producer: &str) -> anyhow::Result<()> {
    let ddl = outbox_ddl(producer)?;
    let mut client = pool
        .get()
        .await
        .context("connecting to install the outbox")?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('boxoffice.events.install'))",
            &[],
        )
        .await
        .context("taking the install lock")?;
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
    sequence_sql: String,
    insert_sql: String,
}

impl Outbox {
    /// `producer` is the service's schema, where its outbox lives (a name
    /// that is not a schema name makes every append fail).
    pub fn new(producer: &str) -> Self {
        Self {
            producer: producer.to_owned(),
            lock_key: format!("boxoffice.events.outbox.{producer}"),
            // The ids are taken here, under the lock; the current sequence
            // of each aggregate named, too.
            sequence_sql: format!(
                "SELECT a.n::int4,
                        coalesce((SELECT max(o.sequence) FROM {producer}.event_outbox o
                                  WHERE o.aggregate_type = a.t AND o.aggregate_id = a.i), 0) AS sequence,
                        nextval('{producer}.event_outbox_id') AS id
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS a(t, i, n)"
            ),
            insert_sql: format!(
                "INSERT INTO {producer}.event_outbox
                     (id, event_id, aggregate_type, aggregate_id, sequence, event_type, envelope)
                 SELECT * FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::bytea[])"
            ),
        }
    }

    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Takes the producer's append lock until `transaction` ends, without
    /// appending: for a producer that must look at its outbox before
    /// deciding what to append (a one-time backfill).
    pub async fn lock(&self, transaction: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&self.lock_key],
            )
            .await
            .context("taking the outbox lock")?;
        Ok(())
    }

    /// Appends `events`, in order, inside `transaction`: they commit or
    /// roll back with it. Answers the envelopes as written. Holds the
    /// producer's append lock until the transaction ends (see the module
    /// docs), so call it last.
    pub async fn append(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        events: Vec<NewEvent>,
    ) -> anyhow::Result<Vec<Envelope>> {
        check_identifier(&self.producer)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let types: Vec<&str> = events.iter().map(|e| e.aggregate_type.as_str()).collect();
        let ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
        // One after the other: the numbering statement's snapshot must be
        // taken once the lock is held, or it could miss the previous
        // holder's rows.
        self.lock(transaction).await?;
        let rows = transaction
            .query(&self.sequence_sql, &[&types, &ids])
            .await
            .context("numbering outbox events")?;
        anyhow::ensure!(rows.len() == events.len(), "outbox numbering lost rows");
        let mut numbered: Vec<(i32, i64, i64)> = rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        numbered.sort_by_key(|(n, _, _)| *n);
        let mut outbox_ids: Vec<i64> = numbered.iter().map(|(_, _, id)| *id).collect();
        outbox_ids.sort_unstable();

        let now = Utc::now();
        let occurred_at = prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        };
        let mut next_sequence: std::collections::HashMap<(&str, &str), i64> =
            std::collections::HashMap::new();
        let mut envelopes = Vec::with_capacity(events.len());
        let (mut event_ids, mut sequences, mut event_types, mut bytes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (event, (_, stored, _)) in events.iter().zip(&numbered) {
            let sequence = next_sequence
                .entry((event.aggregate_type.as_str(), event.aggregate_id.as_str()))
                .or_insert(*stored);
            *sequence += 1;
            let event_id = Uuid::now_v7();
            let kind = event_type(&event.payload);
            let envelope = Envelope {
                event_id: event_id.to_string(),
                producer: self.producer.clone(),
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: *sequence as u64,
                occurred_at: Some(occurred_at),
                traceparent: event.traceparent.clone(),
                event_type: kind.to_owned(),
                contract_version: crate::envelope::KNOWN_CONTRACT_VERSION,
                payload: Some(event.payload.clone()),
            };
            event_ids.push(event_id);
            sequences.push(*sequence);
            event_types.push(kind);
            bytes.push(envelope.encode_to_vec());
            envelopes.push(envelope);
        }
        transaction
            .execute(
                &self.insert_sql,
                &[
                    &outbox_ids,
                    &event_ids,
                    &types,
                    &ids,
                    &sequences,
                    &event_types,
                    &bytes,
                ],
            )
            .await
            .context("appending to the outbox")?;
        Ok(envelopes)
    }
}
