//! What every crate's tests need to give each test a world of its own: a
//! fresh PostgreSQL database on the machine's server (dropped when the test
//! ends, even on panic), the Redis to use, and a configuration pointing at
//! both with servers on port 0. Only with the `test-util` feature, which
//! crates enable in their dev-dependencies, never in a service build.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::Config;
use crate::config::{ENV_CACHE_TTL, ENV_DATABASE_URL, ENV_LISTEN, ENV_REDIS_URL, Secret};
use crate::postgres::url_with_database;

/// The server that holds test databases; override with this variable.
pub const ENV_TEST_POSTGRES: &str = "BOXOFFICE_TEST_POSTGRES_URL";
/// The Redis tests use; override with this variable.
pub const ENV_TEST_REDIS: &str = "BOXOFFICE_TEST_REDIS_URL";

pub fn postgres_server_url() -> String {
    std::env::var(ENV_TEST_POSTGRES)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var(ENV_TEST_REDIS).unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A database of its own for one test, dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: Secret,
    pub pool: Pool,
}

impl TestDb {
    pub async fn new() -> Self {
        let server_url = postgres_server_url();
        let name = format!("boxoffice_test_{}", Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must be running for the tests (see README)");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        let url = Secret::new(url_with_database(&server_url, &name));
        let pool = crate::postgres::pool(&url, 16).expect("test pool");
        Self { name, url, pool }
    }

    /// A fresh client outside the pool (for checking what was stored).
    pub async fn client(&self) -> deadpool_postgres::Client {
        self.pool.get().await.expect("test database connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself:
        // drop the database from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&postgres_server_url(), tokio_postgres::NoTls)
                        .await
                        .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A configuration pointing at the test database and the test Redis,
/// listening on port 0, with `extra` variables on top.
pub fn test_config(db: &TestDb, extra: &[(&str, &str)]) -> Config {
    let mut vars = BTreeMap::from([
        (ENV_DATABASE_URL.to_owned(), db.url.expose().to_owned()),
        (ENV_REDIS_URL.to_owned(), redis_url()),
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
        (ENV_CACHE_TTL.to_owned(), "30".to_owned()),
    ]);
    for (key, value) in extra {
        vars.insert((*key).to_owned(), (*value).to_owned());
    }
    Config::from_vars(vars).expect("test configuration is valid")
}
