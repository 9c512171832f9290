//! `boxoffice migrate`, as an operator runs it before a deployment: on an
//! empty database it creates every service's schema to its latest version
//! (not only the four core services'), and a second run changes nothing.

use std::process::Command;

use boxoffice_runtime::test_util::TestDb;

/// Every schema a deployment's services read or write, with the tables an
/// operator would look for first.
const SCHEMAS: [(&str, &str); 8] = [
    ("catalog", "events"),
    ("inventory", "tickets"),
    ("accounts", "users"),
    ("checkout", "bookings"),
    ("audit", "records"),
    ("webhooks", "endpoints"),
    ("stats", "bookings"),
    ("notify", "messages"),
];

fn migrate(url: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .arg("migrate")
        .env("BOXOFFICE_DATABASE_URL", url)
        .env("BOXOFFICE_LOG", "warn")
        .output()
        .expect("running boxoffice migrate");
    assert!(
        output.status.success(),
        "boxoffice migrate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "migrations applied"
    );
}

/// Per schema: how many migrations it has recorded.
async fn versions(db: &TestDb) -> Vec<(String, i64)> {
    let client = db.pool.get().await.expect("a connection");
    let mut found = Vec::new();
    for (schema, _) in SCHEMAS {
        let count: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.schema_migrations"),
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("{schema} has no migrations table: {error}"))
            .get(0);
        found.push((schema.to_owned(), count));
    }
    found
}

#[tokio::test]
async fn migrate_creates_every_services_schema_once() {
    let db = TestDb::new().await;
    migrate(db.url.expose());
    let client = db.pool.get().await.expect("a connection");
    for (schema, table) in SCHEMAS {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{schema}.{table}")],
            )
            .await
            .expect("looking the table up")
            .get(0);
        assert!(exists, "boxoffice migrate left out {schema}.{table}");
    }
    let first = versions(&db).await;
    assert!(
        first.iter().all(|(_, count)| *count >= 1),
        "every schema records its migrations: {first:?}"
    );
    // Again: already current, nothing applied twice.
    migrate(db.url.expose());
    assert_eq!(versions(&db).await, first);
}
