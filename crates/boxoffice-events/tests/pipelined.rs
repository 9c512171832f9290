//! `PipelinedTransaction` with the outbox, against a real PostgreSQL: the
//! batch writers of a confirmation (checkout's record, inventory's sale)
//! send `BEGIN` with their first statement and `COMMIT` with their outbox
//! append. What a caller must be able to rely on: all or nothing, a failed
//! statement commits nothing (although its `COMMIT` was already sent), and
//! a transaction given up before its commit leaves nothing behind and no
//! connection inside a transaction in the pool.

use boxoffice_contracts::events::v1 as pb;
use boxoffice_events::{NewEvent, Outbox, Payload};
use boxoffice_runtime::postgres::PipelinedTransaction;
use uuid::Uuid;

const PRODUCER: &str = "shop";

async fn database() -> (boxoffice_runtime::test_util::TestDb, Outbox) {
    let db = boxoffice_runtime::test_util::TestDb::new().await;
    boxoffice_events::outbox::install(&db.pool, PRODUCER)
        .await
        .expect("installing the outbox");
    db.pool
        .get()
        .await
        .expect("a connection")
        .batch_execute(
            "CREATE TABLE shop.orders (id uuid PRIMARY KEY, seats int4 NOT NULL CHECK (seats > 0))",
        )
        .await
        .expect("creating the orders table");
    (db, Outbox::new(PRODUCER))
}

fn sold(order: Uuid) -> NewEvent {
    NewEvent::new(
        "order",
        order,
        Payload::SeatsSold(pb::SeatsSold {
            event_id: order.to_string(),
            booking_id: order.to_string(),
            sale_id: String::new(),
            seat_indexes: vec![1, 2],
        }),
    )
}

async fn count(pool: &deadpool_postgres::Pool, sql: &str, id: Uuid) -> i64 {
    pool.get()
        .await
        .expect("a connection")
        .query_one(sql, &[&id.to_string()])
        .await
        .expect("counting")
        .get(0)
}

async fn orders(pool: &deadpool_postgres::Pool, id: Uuid) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM shop.orders WHERE id::text = $1",
        id,
    )
    .await
}

async fn events(pool: &deadpool_postgres::Pool, id: Uuid) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM shop.event_outbox WHERE aggregate_id = $1",
        id,
    )
    .await
}

/// One order and its event, the way the batch writers do it: the insert
/// with `BEGIN`, the append with `COMMIT`.
async fn write(
    pool: &deadpool_postgres::Pool,
    outbox: &Outbox,
    id: Uuid,
    seats: i32,
) -> anyhow::Result<()> {
    let transaction = PipelinedTransaction::new(pool.get().await?);
    transaction
        .begin_with("", async {
            transaction
                .client()
                .execute(
                    "INSERT INTO shop.orders (id, seats) VALUES ($1, $2)",
                    &[&id, &seats],
                )
                .await
        })
        .await?;
    let append = outbox
        .prepare_append(transaction.client(), vec![sold(id)])
        .await?;
    transaction
        .commit_with(async { append.send(transaction.client()).await })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_and_its_events_commit_together() {
    let (db, outbox) = database().await;
    let id = Uuid::new_v4();
    write(&db.pool, &outbox, id, 2).await.expect("the write");
    assert_eq!(orders(&db.pool, id).await, 1, "the order committed");
    assert_eq!(events(&db.pool, id).await, 1, "its event committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_commits_nothing_though_its_commit_was_sent() {
    let (db, outbox) = database().await;
    let id = Uuid::new_v4();
    write(&db.pool, &outbox, id, 2)
        .await
        .expect("the first write");

    // The same order again: the insert (sent with BEGIN) fails on its key,
    // and the writer stops there.
    let error = write(&db.pool, &outbox, id, 3)
        .await
        .expect_err("a duplicate order is refused");
    assert!(format!("{error:#}").contains("duplicate key"), "{error:#}");
    assert_eq!(events(&db.pool, id).await, 1, "no second event");

    // The failure in the last step: an append whose insert fails (its
    // event id is taken) after the first statement succeeded. COMMIT went
    // out right behind it; the order must not be there.
    let other = Uuid::new_v4();
    let transaction = PipelinedTransaction::new(db.pool.get().await.expect("a connection"));
    transaction
        .begin_with("", async {
            transaction
                .client()
                .execute(
                    "INSERT INTO shop.orders (id, seats) VALUES ($1, 1)",
                    &[&other],
                )
                .await
        })
        .await
        .expect("the insert");
    let failing = transaction
        .client()
        .prepare("INSERT INTO shop.orders (id, seats) VALUES ($1, 0)")
        .await
        .expect("preparing");
    let result = transaction
        .commit_with(async {
            transaction
                .client()
                .execute(&failing, &[&Uuid::new_v4()])
                .await
        })
        .await;
    assert!(result.is_err(), "the check constraint refuses 0 seats");
    drop(transaction);
    assert_eq!(
        orders(&db.pool, other).await,
        0,
        "the earlier statement of a failed transaction is rolled back"
    );

    // The pool goes on working with connections that are not inside a
    // transaction.
    let next = Uuid::new_v4();
    write(&db.pool, &outbox, next, 1)
        .await
        .expect("a later write");
    assert_eq!(orders(&db.pool, next).await, 1);
    let client = db.pool.get().await.expect("a connection");
    let in_transaction: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .expect("asking")
        .get(0);
    assert_eq!(
        in_transaction, 0,
        "no connection of the pool is left inside a transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_given_up_before_its_commit_leaves_nothing() {
    let (db, _outbox) = database().await;
    let id = Uuid::new_v4();
    let transaction = PipelinedTransaction::new(db.pool.get().await.expect("a connection"));
    transaction
        .begin_with("", async {
            transaction
                .client()
                .execute("INSERT INTO shop.orders (id, seats) VALUES ($1, 1)", &[&id])
                .await
        })
        .await
        .expect("the insert");
    // The caller goes away (an error of its own, a cancelled request).
    drop(transaction);
    assert_eq!(orders(&db.pool, id).await, 0, "nothing committed");
    // Its row lock went with the connection: the same key can be written.
    let outbox = Outbox::new(PRODUCER);
    write(&db.pool, &outbox, id, 1)
        .await
        .expect("the key is free again");
    assert_eq!(orders(&db.pool, id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_each_commit_all_or_nothing() {
    let (db, outbox) = database().await;
    let ids: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    let mut writers = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().enumerate() {
        let (pool, outbox, id) = (db.pool.clone(), outbox.clone(), *id);
        // Every fourth write is refused by the table's check.
        let seats = if n % 4 == 3 { 0 } else { 2 };
        writers.spawn(async move { (id, seats, write(&pool, &outbox, id, seats).await) });
    }
    while let Some(joined) = writers.join_next().await {
        let (id, seats, result) = joined.expect("a writer");
        let (want_order, want_event) = if seats > 0 { (1, 1) } else { (0, 0) };
        assert_eq!(result.is_ok(), seats > 0, "{result:?}");
        assert_eq!(orders(&db.pool, id).await, want_order);
        assert_eq!(events(&db.pool, id).await, want_event);
    }
    // Exactly the accepted writes' events, nothing of the refused ones.
    let client = db.pool.get().await.expect("a connection");
    let total: i64 = client
        .query_one("SELECT count(*) FROM shop.event_outbox", &[])
        .await
        .expect("counting")
        .get(0);
    assert_eq!(total, 30);
}
