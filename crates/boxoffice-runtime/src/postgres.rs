//! The PostgreSQL side every service shares: creating the database on a
//! fresh machine, the connection pool, per-schema migrations that run at
//! start under an advisory lock (so replicas starting together do not race),
//! and the one rule that tells a database that is down ([`DbError::Unavailable`],
//! answered `UNAVAILABLE`) from a failure that is a bug ([`DbError::Internal`]).

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Secret;

/// A failed database call, sorted by what a caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached, is shutting down, or is out of
    /// connections or resources: a retry may well succeed.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The database answered, and the answer says something is wrong with
    /// the statement, the schema or the data: a bug, not an outage.
    #[error("database error")]
    Internal(#[source] anyhow::Error),
}

/// What most store functions return.
pub type DbResult<T> = Result<T, DbError>;

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Adds `context` to the cause, keeping the kind.
    pub fn context(self, context: &'static str) -> Self {
        match self {
            Self::Unavailable(cause) => Self::Unavailable(cause.context(context)),
            Self::Internal(cause) => Self::Internal(cause.context(context)),
        }
    }

    /// An error of the same kind carrying only this one's text: for the
    /// callers of a batch that failed together, each of whom gets its own.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::Unavailable(cause) => Self::Unavailable(anyhow::anyhow!("{cause:#}")),
            Self::Internal(cause) => Self::Internal(anyhow::anyhow!("{cause:#}")),
        }
    }
}

/// Sent first in a transaction (pipelined with its statement, so it costs
/// no round trip) whose statements are batches over `unnest` of arrays:
/// their prepared plans are kept instead of being made again for every
/// call. PostgreSQL plans a prepared statement anew for each of its first
/// five calls and then only if the generic plan looks costlier than those;
/// with arrays of another length on every call it kept choosing to plan
/// again, and planning checkout's confirmation record and an outbox append
/// cost PostgreSQL more than running them (`pg_stat_statements` with
/// `track_planning`: 2.5 and 2.1 s of planning against 3.1 and 1.1 s of
/// execution over 5,578 batches each). `SET LOCAL` ends with the
/// transaction.
pub const GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// A write transaction on one pooled connection that spends no round trip
/// of its own: `BEGIN` goes to PostgreSQL ahead of the first statement and
/// `COMMIT` right behind the last, on the same connection, without waiting
/// for either's answer. A batch of a statement and an append then costs two
/// round trips instead of four; under load each round trip is also a wait
/// for a core (the task and the backend each wake up once more), which is
/// what the batch writers of a confirmation spent most of their time on.
///
/// PostgreSQL runs a connection's messages in the order they were sent,
/// and a statement that fails aborts the transaction, so the `COMMIT` sent
/// behind it rolls back (answered `ROLLBACK`, not an error): the caller
/// gets the statement's error and nothing is committed. The one way to get
/// this wrong is a last step that sends something *after* the `COMMIT`:
/// [`Self::commit_with`] polls `last` first, so `last` must send every
/// statement on its first poll, which a statement already prepared (or
/// `batch_execute`) does; prepare first, then send.
///
/// Dropped without [`Self::commit_with`] succeeding (an error, a caller
/// that went away), the connection is closed instead of going back to the
/// pool, which rolls back whatever was sent.
pub struct PipelinedTransaction {
    client: Option<deadpool_postgres::Client>,
    committed: std::sync::atomic::AtomicBool,
}

impl PipelinedTransaction {
    /// Starts nothing yet: `BEGIN` travels with [`Self::begin_with`].
    pub fn new(client: deadpool_postgres::Client) -> Self {
        Self {
            client: Some(client),
            committed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The connection, for the transaction's statements.
    pub fn client(&self) -> &deadpool_postgres::Client {
        // Only `Drop` takes it.
        self.client
            .as_ref()
            .expect("the connection is held until drop")
    }

    /// Sends `BEGIN` (followed by `prelude`, a `SET LOCAL` or nothing)
    /// ahead of `first`, a statement on [`Self::client`], and answers
    /// `first`'s result.
    pub async fn begin_with<T, E>(
        &self,
        prelude: &str,
        first: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<tokio_postgres::Error>,
    {
        let begin = if prelude.is_empty() {
            std::borrow::Cow::Borrowed("BEGIN")
        } else {
            std::borrow::Cow::Owned(format!("BEGIN; {prelude}"))
        };
        let ((), value) = futures::try_join!(
            async { self.client().batch_execute(&begin).await.map_err(E::from) },
            first
        )?;
        Ok(value)
    }

    /// Sends `COMMIT` right behind `last` (which must send all it sends on
    /// its first poll: see the type's docs) and answers `last`'s result
    /// once the commit is answered. On success the connection goes back
    /// to the pool.
    pub async fn commit_with<T, E>(
        &self,
        last: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<tokio_postgres::Error>,
    {
        let (value, ()) = futures::try_join!(last, async {
            self.client().batch_execute("COMMIT").await.map_err(E::from)
        })?;
        self.committed
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(value)
    }

    /// `COMMIT` alone (nothing was left to send with it).
    pub async fn commit(&self) -> Result<(), tokio_postgres::Error> {
        self.commit_with(async { Ok::<_, tokio_postgres::Error>(()) })
            .await
    }
}

impl Drop for PipelinedTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !self.committed.load(std::sync::atomic::Ordering::Acquire)
        {
            // Out of the pool and closed: PostgreSQL rolls back what was
            // sent when the connection ends.
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// Whether a PostgreSQL client error means the database is out of reach
/// (or going away, or out of room) rather than that a statement is wrong.
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        // 08: connection exception; 53: insufficient resources (too many
        // connections, disk full, out of memory); 57P: the server is
        // shutting down, crashed or still starting; 25006: a read-only
        // standby answered (a failover in progress).
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "25006";
    }
    // Without a server code the kind shows only in the message (the cause
    // is not part of it): connecting, the socket, TLS and the connect
    // timeout are the network's; converting values or reading a column that
    // is not there are bugs.
    let message = error.to_string();
    [
        "error connecting to server",
        "error communicating with the server",
        "timeout waiting for server",
        "error performing TLS handshake",
    ]
    .iter()
    .any(|prefix| message.starts_with(prefix))
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(error.into())
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match error {
            PoolError::Backend(error) => error.into(),
            // Waiting for a connection, or making one, took too long; or
            // the pool is shutting down with the process.
            PoolError::Timeout(_) | PoolError::Closed => Self::Unavailable(error.into()),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                Self::Internal(error.into())
            }
        }
    }
}

/// Sorts an error whose cause chain may hold a database error (one that went
/// through `anyhow`, a batch writer or a retry): unavailable when the first
/// database error in the chain is; anything else is internal.
impl From<anyhow::Error> for DbError {
    fn from(error: anyhow::Error) -> Self {
        let error = match error.downcast::<DbError>() {
            Ok(db) => return db,
            Err(error) => error,
        };
        if cause_is_unavailable(&error).unwrap_or(false) {
            Self::Unavailable(error)
        } else {
            Self::Internal(error)
        }
    }
}

/// Whether the first database error in `error`'s chain means unavailable;
/// `None` when the chain holds none.
pub fn cause_is_unavailable(error: &anyhow::Error) -> Option<bool> {
    error.chain().find_map(|cause| {
        if let Some(db) = cause.downcast_ref::<DbError>() {
            Some(db.is_unavailable())
        } else if let Some(error) = cause.downcast_ref::<tokio_postgres::Error>() {
            Some(is_unavailable(error))
        } else {
            cause
                .downcast_ref::<deadpool_postgres::PoolError>()
                .map(|error| match error {
                    deadpool_postgres::PoolError::Backend(error) => is_unavailable(error),
                    deadpool_postgres::PoolError::Timeout(_)
                    | deadpool_postgres::PoolError::Closed => true,
                    _ => false,
                })
        }
    })
}

/// Adds context to a database call's error while keeping whether it is an
/// outage: `client.query(..).await.db_context("listing bookings")?`.
pub trait DbContext<T> {
    fn db_context(self, context: &'static str) -> DbResult<T>;
}

impl<T, E: Into<DbError>> DbContext<T> for Result<T, E> {
    fn db_context(self, context: &'static str) -> DbResult<T> {
        self.map_err(|error| error.into().context(context))
    }
}

/// One schema change; `version`s of a schema are applied in ascending order,
/// each exactly once.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub fn parse_url(url: &Secret) -> anyhow::Result<tokio_postgres::Config> {
    url.expose()
        .parse::<tokio_postgres::Config>()
        .context("parsing the database url")
}

/// `server_url` with its database (the URL's path) replaced by `database`,
/// keeping user, host, port and any query string: how a test or a
/// benchmark points a service at a database of its own on a shared server.
pub fn url_with_database(server_url: &str, database: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server_url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..host_end])
}

/// Creates the configured database when it does not exist yet, by way of the
/// server's `postgres` maintenance database.
pub async fn ensure_database(url: &Secret) -> anyhow::Result<()> {
    let config = parse_url(url)?;
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    if connect(&config).await.is_ok() {
        return Ok(());
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin)
        .await
        .context("connecting to the postgres maintenance database")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .context("looking up the database")?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process created it between our check and our create.
            Err(error)
                if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(error) => return Err(error).context("creating the database"),
        }
    }
    Ok(())
}

async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "maintenance connection closed");
        }
    });
    Ok(client)
}

/// A pool that fails fast when the database is unreachable, so requests
/// answer `UNAVAILABLE` instead of hanging. It hands out the connection
/// returned last (LIFO): the few backends a steady load needs stay hot in
/// the CPU's caches and the scheduler's, where first-in-first-out rotated
/// every statement through all of them (ConfirmBooking: +30% at the same
/// latency on 2 cores).
pub fn pool(url: &Secret, max_size: usize) -> anyhow::Result<Pool> {
    let mut config = parse_url(url)?;
    if config.get_application_name().is_none() {
        config.application_name("boxoffice");
    }
    config.connect_timeout(Duration::from_secs(5));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .queue_mode(deadpool_postgres::QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("building the database pool")
}

/// Applies the not-yet-applied migrations of `schema` in one transaction.
pub async fn migrate(pool: &Pool, schema: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    anyhow::ensure!(
        !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "schema names are lowercase letters and underscores"
    );
    let mut client = pool
        .get()
        .await
        .context("getting a connection for migrations")?;
    let transaction = client.transaction().await?;
    // Held until commit: concurrent starters wait here instead of racing.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('boxoffice.migrate.' || $1::text))",
            &[&schema],
        )
        .await
        .context("taking the migration lock")?;
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .context("creating the migrations table")?;
    let applied: Vec<i32> = transaction
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations"),
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    pending.sort_by_key(|m| m.version);
    for migration in pending {
        transaction
            .batch_execute(migration.sql)
            .await
            .with_context(|| {
                format!(
                    "applying migration {schema}/{}_{}",
                    migration.version, migration.name
                )
            })?;
        transaction
            .execute(
                &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
                &[&migration.version, &migration.name],
            )
            .await?;
        tracing::info!(
            schema,
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    transaction
        .commit()
        .await
        .context("committing migrations")?;
    Ok(())
}

/// The pool's state in the Prometheus text format: connections open and
/// idle, the pool's size, and callers waiting for a connection (a pool that
/// keeps callers waiting is exhausted).
pub fn pool_metrics(pool: &Pool) -> String {
    let status = pool.status();
    format!(
        "# HELP boxoffice_db_pool_connections PostgreSQL connections open, by state.\n\
         # TYPE boxoffice_db_pool_connections gauge\n\
         boxoffice_db_pool_connections{{state=\"open\"}} {}\n\
         boxoffice_db_pool_connections{{state=\"idle\"}} {}\n\
         # TYPE boxoffice_db_pool_max_connections gauge\n\
         boxoffice_db_pool_max_connections {}\n\
         # HELP boxoffice_db_pool_waiting Callers waiting for a connection.\n\
         # TYPE boxoffice_db_pool_waiting gauge\n\
         boxoffice_db_pool_waiting {}\n",
        status.size, status.available, status.max_size, status.waiting
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_keeps_host_and_query() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h", "x"), "postgres://h/x");
    }

    /// The machine's PostgreSQL (tests elsewhere use the same default).
    fn server_url() -> String {
        std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_unavailable() {
        // Nothing listens on port 1.
        let error = tokio_postgres::connect("host=127.0.0.1 port=1 user=postgres", NoTls)
            .await
            .err()
            .expect("nothing listens there");
        assert!(DbError::from(error).is_unavailable());
        let pool = pool(&Secret::new("host=127.0.0.1 port=1 user=postgres"), 1).expect("a pool");
        let error = pool.get().await.expect_err("no connection");
        assert!(DbError::from(error).is_unavailable());
    }

    #[tokio::test]
    async fn a_lost_connection_is_unavailable_and_a_bad_statement_internal() {
        let (client, connection) = tokio_postgres::connect(&server_url(), NoTls)
            .await
            .expect("PostgreSQL must be running for the tests");
        let running = tokio::spawn(connection);
        let refused = client
            .simple_query("SELEC 1")
            .await
            .expect_err("a syntax error");
        let refused = DbError::from(refused);
        assert!(!refused.is_unavailable(), "{refused:?}");
        // A value of the wrong type is a bug too, though no server code says so.
        let row = client
            .query_one("SELECT 'text'::text AS t", &[])
            .await
            .expect("a row");
        let wrong = row.try_get::<_, i64>("t").expect_err("not an integer");
        assert!(!DbError::from(wrong).is_unavailable());
        // Through anyhow (a batch writer, a retry) the kind survives.
        let through = DbError::from(anyhow::Error::from(DbError::from(
            client.simple_query("SELEC 1").await.expect_err("error"),
        )));
        assert!(!through.is_unavailable());

        running.abort();
        let _ = running.await;
        let lost = client
            .simple_query("SELECT 1")
            .await
            .expect_err("the connection is gone");
        let lost = DbError::from(lost);
        assert!(lost.is_unavailable(), "{lost:?}");
        let wrapped = DbError::from(anyhow::Error::from(lost).context("reading a booking"));
        assert!(wrapped.is_unavailable());
    }
}
