//! The audit log in PostgreSQL (schema `audit`): appending payment
//! operations inside a caller's transaction, admin actions and their
//! outcomes in batches, and the admins' filtered, paged read.

use boxoffice_runtime::postgres::{DbContext as _, DbResult, Migration};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};

/// The schema the audit log lives in.
pub const SCHEMA: &str = "audit";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "audit",
    sql: include_str!("migrations/0001_audit.sql"),
}];

/// Creates or upgrades the audit schema (idempotent; concurrent starters
/// wait for each other). Every writer runs it before its first append.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    boxoffice_runtime::postgres::migrate(pool, SCHEMA, MIGRATIONS).await
}

/// One payment operation, as checkout records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The user whose request moved the money, or `system:<part>`.
    pub actor: String,
    /// `payment.authorize`, `payment.capture`, `payment.void`,
    /// `payment.refund`.
    pub action: &'static str,
    pub request_id: String,
    /// `booking/<id>`.
    pub target: String,
    /// `succeeded`, `declined`, ...
    pub outcome: String,
    pub amount_minor: i64,
    pub currency_code: String,
}

/// Appends `records` in the caller's transaction (one prepared statement),
/// so they commit exactly when the change they describe does.
/// `transaction` is a [`deadpool_postgres::Transaction`] or the client of a
/// `boxoffice_runtime::postgres::PipelinedTransaction`.
pub async fn append_payments<C: GenericClient>(
    transaction: &C,
    records: &[PaymentRecord],
) -> DbResult<()> {
    prepare_payments(transaction, records)
        .await?
        .send(transaction)
        .await
}

const PAYMENTS_SQL: &str =
    "INSERT INTO audit.records (kind, actor, action, request_id, target, outcome, amount_minor,
         currency_code)
     SELECT 'payment', * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
         $6::int8[], $7::text[])";

/// [`append_payments`] in two steps: this one prepares the statement (a
/// round trip only the first time on a connection);
/// [`PreparedPayments::send`] sends it on its first poll, so it can
/// travel with a pipelined `COMMIT`.
pub async fn prepare_payments<'a, C: GenericClient>(
    transaction: &C,
    records: &'a [PaymentRecord],
) -> DbResult<PreparedPayments<'a>> {
    if records.is_empty() {
        return Ok(PreparedPayments::default());
    }
    let column =
        |field: fn(&PaymentRecord) -> &str| -> Vec<&'a str> { records.iter().map(field).collect() };
    let statement = transaction
        .prepare_cached(PAYMENTS_SQL)
        .await
        .db_context("preparing the payment audit")?;
    Ok(PreparedPayments {
        statement: Some(statement),
        actors: column(|record| &record.actor),
        actions: column(|record| record.action),
        requests: column(|record| &record.request_id),
        targets: column(|record| &record.target),
        outcomes: column(|record| &record.outcome),
        currencies: column(|record| &record.currency_code),
        amounts: records.iter().map(|record| record.amount_minor).collect(),
    })
}

/// Payment records with their statement prepared ([`prepare_payments`]).
#[derive(Default)]
pub struct PreparedPayments<'a> {
    /// `None` when there is nothing to record.
    statement: Option<tokio_postgres::Statement>,
    actors: Vec<&'a str>,
    actions: Vec<&'a str>,
    requests: Vec<&'a str>,
    targets: Vec<&'a str>,
    outcomes: Vec<&'a str>,
    currencies: Vec<&'a str>,
    amounts: Vec<i64>,
}

impl PreparedPayments<'_> {
    /// Sends the insert on the first poll; with nothing to record, nothing.
    pub async fn send<C: GenericClient>(self, transaction: &C) -> DbResult<()> {
        let Some(statement) = &self.statement else {
            return Ok(());
        };
        transaction
            .execute(
                statement,
                &[
                    &self.actors,
                    &self.actions,
                    &self.requests,
                    &self.targets,
                    &self.outcomes,
                    &self.amounts,
                    &self.currencies,
                ],
            )
            .await
            .db_context("recording payment operations")?;
        Ok(())
    }
}

/// An admin call the edge is about to forward.
#[derive(Clone, Debug)]
pub(crate) struct AdminAction {
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) request_id: String,
}

/// What admins filter by.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub(crate) actor: Option<String>,
    /// Exact, or a prefix when `prefix`.
    pub(crate) action: Option<String>,
    pub(crate) action_prefix: bool,
    pub(crate) kind: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) from: Option<DateTime<Utc>>,
    pub(crate) to: Option<DateTime<Utc>>,
    /// Records older than this id (the page token).
    pub(crate) before: Option<i64>,
}

/// A record as admins read it.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) id: i64,
    pub(crate) at: DateTime<Utc>,
    pub(crate) kind: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) request_id: String,
    pub(crate) target: String,
    pub(crate) outcome: Option<String>,
    pub(crate) amount_minor: i64,
    pub(crate) currency_code: String,
}

#[derive(Clone)]
pub(crate) struct AuditStore {
    pool: Pool,
}

impl AuditStore {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Appends admin calls (one statement, one commit); answers their ids
    /// in order.
    pub(crate) async fn record_admin(&self, actions: &[AdminAction]) -> DbResult<Vec<i64>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await.db_context("connecting")?;
        let statement = client
            .prepare_cached(
                "INSERT INTO audit.records (kind, actor, action, request_id)
                 SELECT 'admin', a.actor, a.action, a.request_id
                 FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS a(actor, action, request_id, n)
                 ORDER BY a.n
                 RETURNING id",
            )
            .await
            .db_context("preparing the admin audit")?;
        let actors: Vec<&str> = actions.iter().map(|a| a.actor.as_str()).collect();
        let paths: Vec<&str> = actions.iter().map(|a| a.action.as_str()).collect();
        let requests: Vec<&str> = actions.iter().map(|a| a.request_id.as_str()).collect();
        let rows = client
            .query(&statement, &[&actors, &paths, &requests])
            .await
            .db_context("recording admin actions")?;
        // Identity values follow the insertion order of one statement.
        let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Appends the answers of admin calls recorded before; a second outcome
    /// for one record is ignored (the first one stands).
    pub(crate) async fn record_outcomes(&self, outcomes: &[(i64, String)]) -> DbResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await.db_context("connecting")?;
        let statement = client
            .prepare_cached(
                "INSERT INTO audit.outcomes (record_id, outcome)
                 SELECT o.id, o.outcome FROM unnest($1::int8[], $2::text[]) AS o(id, outcome)
                 JOIN audit.records r ON r.id = o.id AND r.kind = 'admin'
                 ON CONFLICT (record_id) DO NOTHING",
            )
            .await
            .db_context("preparing admin outcomes")?;
        let ids: Vec<i64> = outcomes.iter().map(|(id, _)| *id).collect();
        let names: Vec<&str> = outcomes.iter().map(|(_, name)| name.as_str()).collect();
        client
            .execute(&statement, &[&ids, &names])
            .await
            .db_context("recording admin outcomes")?;
        Ok(())
    }

    /// Newest first, at most `limit`.
    pub(crate) async fn list(&self, filter: &Filter, limit: i64) -> DbResult<Vec<Record>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let statement = client
            .prepare_cached(
                "SELECT r.id, r.record_time, r.kind, r.actor, r.action, r.request_id, r.target,
                     coalesce(r.outcome, o.outcome) AS outcome, r.amount_minor, r.currency_code
                 FROM audit.records r LEFT JOIN audit.outcomes o ON o.record_id = r.id
                 WHERE ($1::text IS NULL OR r.actor = $1)
                   AND ($2::text IS NULL OR (CASE WHEN $3 THEN starts_with(r.action, $2) ELSE r.action = $2 END))
                   AND ($4::text IS NULL OR r.kind = $4)
                   AND ($5::text IS NULL OR r.request_id = $5)
                   AND ($6::timestamptz IS NULL OR r.record_time >= $6)
                   AND ($7::timestamptz IS NULL OR r.record_time < $7)
                   AND ($8::int8 IS NULL OR r.id < $8)
                 ORDER BY r.id DESC
                 LIMIT $9",
            )
            .await
            .db_context("preparing the audit list")?;
        let rows = client
            .query(
                &statement,
                &[
                    &filter.actor,
                    &filter.action,
                    &filter.action_prefix,
                    &filter.kind,
                    &filter.request_id,
                    &filter.from,
                    &filter.to,
                    &filter.before,
                    &limit,
                ],
            )
            .await
            .db_context("listing audit records")?;
        rows.iter()
            .map(|row| {
                Ok(Record {
                    id: row.try_get("id")?,
                    at: row.try_get("record_time")?,
                    kind: row.try_get("kind")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    request_id: row.try_get("request_id")?,
                    target: row.try_get("target")?,
                    outcome: row.try_get("outcome")?,
                    amount_minor: row.try_get("amount_minor")?,
                    currency_code: row.try_get("currency_code")?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .db_context("reading audit records")
    }
}
