//! The events conformance suite: one set of behaviours, run against both
//! transports, PostgreSQL (consumers read the outbox) and NATS JetStream
//! (a relay publishes the outbox; durable pull consumers). Every test gets
//! a database of its own and, on NATS, a stream and subject prefix of its
//! own. NATS is not optional: the suite fails when it is not running
//! (`scripts/services` starts it; `BOXOFFICE_NATS_URL` points elsewhere).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_contracts::events::v1 as pb;
use boxoffice_events::postgres::dead_letters;
use boxoffice_events::{
    ConsumerConfig, ConsumerGroup, HandleError, Handler, NatsTransport, NewEvent, Outbox, Payload,
    Received, Relay, Transport,
};
use boxoffice_runtime::Shutdown;
use prost::Message as _;
use uuid::Uuid;

const PRODUCER: &str = "shop";
const CONSUMER: &str = "reader";

fn nats_url() -> String {
    std::env::var(boxoffice_events::ENV_NATS_URL)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

/// A database of its own for one test (the runtime's test database,
/// dropped with it), with the producer's outbox installed.
struct TestDb {
    /// Held for its drop, which drops the database.
    _db: boxoffice_runtime::test_util::TestDb,
    pool: deadpool_postgres::Pool,
    config: tokio_postgres::Config,
}

impl TestDb {
    async fn new() -> Self {
        let db = boxoffice_runtime::test_util::TestDb::new().await;
        let config: tokio_postgres::Config = db.url.expose().parse().expect("test database url");
        boxoffice_events::outbox::install(&db.pool, PRODUCER)
            .await
            .expect("installing the outbox");
        Self {
            pool: db.pool.clone(),
            config,
            _db: db,
        }
    }
}

/// One transport under test, over its own database.
struct World {
    db: TestDb,
    transport: Transport,
    /// Stops the relay (NATS) when the world ends.
    shutdown: Shutdown,
    nats: Option<NatsTransport>,
}

impl World {
    async fn postgres() -> Self {
        let db = TestDb::new().await;
        let transport = Transport::Postgres {
            listen: db.config.clone(),
        };
        Self {
            db,
            transport,
            shutdown: Shutdown::new(),
            nats: None,
        }
    }

    async fn nats() -> Self {
        let db = TestDb::new().await;
        let client = async_nats::connect(nats_url())
            .await
            .expect("NATS with JetStream must be running for the tests (scripts/services)");
        let unique = Uuid::new_v4().simple().to_string();
        // Leased, as `Transport::from_env` makes it: one reader per group
        // and stream.
        let nats = NatsTransport::new(
            client,
            &format!("BOXOFFICE_TEST_{unique}"),
            &format!("test_{unique}"),
        )
        .with_lease(db.config.clone());
        nats.ensure_stream()
            .await
            .expect("creating the test stream");
        let shutdown = Shutdown::new();
        let mut relay =
            Relay::new(db.pool.clone(), db.config.clone(), PRODUCER, nats.clone()).expect("relay");
        relay.idle_poll = Duration::from_millis(200);
        tokio::spawn(relay.run(shutdown.clone()));
        Self {
            db,
            transport: Transport::Nats(nats.clone()),
            shutdown,
            nats: Some(nats),
        }
    }

    async fn both() -> Vec<Self> {
        vec![Self::postgres().await, Self::nats().await]
    }

    fn name(&self) -> &'static str {
        self.transport.name()
    }

    fn config(&self, group: &str) -> ConsumerConfig {
        let mut config = ConsumerConfig::new(group, CONSUMER, &[PRODUCER]);
        config.batch_size = 100;
        config.idle_poll = Duration::from_millis(200);
        config.first_backoff = Duration::from_millis(10);
        config.max_backoff = Duration::from_millis(100);
        config.max_attempts = 3;
        config.ack_wait = Duration::from_secs(1);
        config
    }

    async fn start<H: Handler>(
        &self,
        config: ConsumerConfig,
        handler: Arc<H>,
        shutdown: &Shutdown,
    ) -> ConsumerGroup {
        ConsumerGroup::start(
            &self.transport,
            self.db.pool.clone(),
            config,
            handler,
            shutdown.clone(),
        )
        .await
        .expect("starting a consumer group")
    }

    /// Publishes `events` in one transaction.
    async fn publish(&self, events: Vec<NewEvent>) {
        let outbox = Outbox::new(PRODUCER);
        let mut client = self.db.pool.get().await.expect("connection");
        let transaction = client.transaction().await.expect("transaction");
        outbox.append(&transaction, events).await.expect("append");
        transaction.commit().await.expect("commit");
    }

    /// Publishes `count` events spread over `aggregates`, `per_transaction`
    /// at a time.
    async fn publish_many(&self, count: usize, aggregates: &[Uuid], per_transaction: usize) {
        let mut events = Vec::with_capacity(per_transaction);
        for n in 0..count {
            events.push(sale(aggregates[n % aggregates.len()], "ok"));
            if events.len() == per_transaction {
                self.publish(std::mem::take(&mut events)).await;
            }
        }
        if !events.is_empty() {
            self.publish(events).await;
        }
    }

    /// Writes raw bytes as an outbox row, the way a buggy or newer producer
    /// could (under the producer's append lock, as `Outbox::append` does).
    async fn publish_raw(&self, event_id: Uuid, bytes: Vec<u8>) {
        let mut client = self.db.pool.get().await.expect("connection");
        let transaction = client.transaction().await.expect("transaction");
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('boxoffice.events.outbox.shop'))",
                &[],
            )
            .await
            .expect("lock");
        transaction
            .execute(
                "INSERT INTO shop.event_outbox (id, event_id, aggregate_type, aggregate_id, sequence, event_type, envelope)
                 VALUES (nextval('shop.event_outbox_id'), $1, 'raw', $2, 1, 'raw', $3)",
                &[&event_id, &event_id.to_string(), &bytes],
            )
            .await
            .expect("raw insert");
        transaction.commit().await.expect("commit");
    }

    /// Waits until the relay has put `count` events on the stream (NATS;
    /// on PostgreSQL the outbox is the stream): a consumer started after
    /// this finds them all there.
    async fn relayed(&self, count: u64) {
        let Some(nats) = &self.nats else {
            return;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut stream = nats.ensure_stream().await.expect("the test stream");
            let messages = stream.info().await.expect("stream info").state.messages;
            if messages >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay put {messages} of {count} events on the stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn cleanup(self) {
        self.shutdown.trigger();
        if let Some(nats) = &self.nats
            && let Err(error) = nats.delete_stream().await
        {
            eprintln!("could not delete test stream {}: {error:#}", nats.stream);
        }
    }
}

fn sale(event_id: Uuid, marker: &str) -> NewEvent {
    NewEvent::new(
        "event",
        event_id,
        Payload::SeatsSold(pb::SeatsSold {
            event_id: event_id.to_string(),
            booking_id: marker.to_owned(),
            sale_id: String::new(),
            seat_indexes: vec![1, 2, 3],
        }),
    )
}

fn marker(event: &Received) -> &str {
    match event.payload() {
        Some(Payload::SeatsSold(sold)) => &sold.booking_id,
        _ => "",
    }
}

/// Records what it is given, in order.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Received>>,
    /// While set, every call answers "unavailable".
    down: AtomicBool,
    /// Marker of events the handler rejects as poison.
    poison: Option<&'static str>,
    /// Marker of events the handler fails on every time.
    failing: Option<&'static str>,
    /// After this many events, the next call never returns.
    hang_after: Option<usize>,
    /// Set when a call started hanging (see `hang_after`).
    hung: AtomicBool,
    calls: AtomicUsize,
}

impl Recorder {
    fn count(&self) -> usize {
        self.seen.lock().expect("recorder").len()
    }

    fn ids(&self) -> HashSet<String> {
        self.seen
            .lock()
            .expect("recorder")
            .iter()
            .map(|e| e.envelope.event_id.clone())
            .collect()
    }
}

impl Handler for Recorder {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(HandleError::Unavailable(anyhow::anyhow!(
                "down for the test"
            )));
        }
        if let Some(limit) = self.hang_after
            && self.count() >= limit
        {
            // Record half the batch, then never finish: the consumer is
            // killed in the middle of it.
            let half = &events[..events.len() / 2];
            self.seen.lock().expect("recorder").extend_from_slice(half);
            self.hung.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        for (index, event) in events.iter().enumerate() {
            if Some(marker(event)) == self.poison {
                return Err(HandleError::Poison {
                    index,
                    reason: "poison for the test".into(),
                });
            }
            if Some(marker(event)) == self.failing {
                return Err(HandleError::Failed {
                    index,
                    error: anyhow::anyhow!("always fails"),
                });
            }
            self.seen.lock().expect("recorder").push(event.clone());
        }
        Ok(())
    }
}

/// Waits (polling) until `done` holds, failing after `limit`.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per aggregate, the sequences in the order the handler first saw each
/// event: must be 1, 2, 3, ... without gaps.
fn assert_in_order_per_aggregate(transport: &str, seen: &[Received], expected: usize) {
    let mut first_seen = HashSet::new();
    let mut per_aggregate: HashMap<String, Vec<u64>> = HashMap::new();
    for event in seen {
        if first_seen.insert(event.envelope.event_id.clone()) {
            per_aggregate
                .entry(event.envelope.aggregate_id.clone())
                .or_default()
                .push(event.envelope.sequence);
        }
    }
    assert_eq!(first_seen.len(), expected, "{transport}: events delivered");
    for (aggregate, sequences) in per_aggregate {
        let wanted: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(
            sequences, wanted,
            "{transport}: order of aggregate {aggregate}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_arrive_in_order_per_aggregate_under_concurrent_producers() {
    for world in World::both().await {
        let shutdown = Shutdown::new();
        let recorder = Arc::new(Recorder::default());
        let group = world
            .start(world.config("ordered"), recorder.clone(), &shutdown)
            .await;
        let aggregates: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
        let world = Arc::new(world);
        let mut producers = Vec::new();
        for producer in 0..8 {
            let world = world.clone();
            let aggregates = aggregates.clone();
            producers.push(tokio::spawn(async move {
                // Transactions of 1 to 4 events, all producers at once.
                world.publish_many(150, &aggregates, 1 + producer % 4).await;
            }));
        }
        for producer in producers {
            producer.await.expect("producer");
        }
        let total = 8 * 150;
        wait_until("every event", Duration::from_secs(60), || {
            recorder.count() >= total
        })
        .await;
        shutdown.trigger();
        group.join().await;
        let seen = recorder.seen.lock().expect("recorder").clone();
        assert_in_order_per_aggregate(world.name(), &seen, total);
        if let Ok(world) = Arc::try_unwrap(world) {
            world.cleanup().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_event_is_lost_when_a_consumer_dies_mid_batch() {
    for world in World::both().await {
        let aggregates: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        world.publish_many(1_000, &aggregates, 50).await;

        // The first instance dies in the middle of a batch, with half of
        // it applied.
        let dying = Arc::new(Recorder {
            hang_after: Some(300),
            ..Default::default()
        });
        let first_shutdown = Shutdown::new();
        let first = world
            .start(world.config("survivor"), dying.clone(), &first_shutdown)
            .await;
        wait_until(
            &format!("{}: the first instance to hang", world.name()),
            Duration::from_secs(30),
            || dying.count() > 300,
        )
        .await;
        first.abort();

        // Another instance of the same group takes over.
        let recorder = Arc::new(Recorder::default());
        let shutdown = Shutdown::new();
        let second = world
            .start(world.config("survivor"), recorder.clone(), &shutdown)
            .await;
        let before: HashSet<String> = dying.ids();
        wait_until(
            "every event after the crash",
            Duration::from_secs(60),
            || {
                let mut all = recorder.ids();
                all.extend(before.iter().cloned());
                all.len() >= 1_000
            },
        )
        .await;
        shutdown.trigger();
        second.join().await;
        // Nothing lost; the half-applied batch came again (a duplicate
        // is harmless for an idempotent handler), and the second instance
        // saw its events in order.
        let seen = recorder.seen.lock().expect("recorder").clone();
        let redelivered = seen
            .iter()
            .filter(|event| before.contains(&event.envelope.event_id))
            .count();
        assert!(
            redelivered > 0,
            "{}: the unfinished batch came again",
            world.name()
        );
        let mut per_aggregate: HashMap<String, u64> = HashMap::new();
        for event in &seen {
            let last = per_aggregate
                .entry(event.envelope.aggregate_id.clone())
                .or_default();
            assert!(
                event.envelope.sequence > *last,
                "{}: order after takeover",
                world.name()
            );
            *last = event.envelope.sequence;
        }
        world.cleanup().await;
    }
}

/// A cumulative acknowledgement must never cover an event nobody handled:
/// the consumer dies holding a batch smaller than its limit, more events
/// follow, and the next instance still gets the unhandled ones first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_dying_on_a_partial_batch_loses_nothing_when_more_events_follow() {
    for world in World::both().await {
        let aggregates: Vec<Uuid> = (0..2).map(|_| Uuid::new_v4()).collect();
        world.publish_many(10, &aggregates, 10).await;
        // All ten on the stream before it reads, so the dying instance
        // (usually) dies with half of a ten-event batch unhandled; a
        // transport may hand over a smaller first batch, and then it dies
        // with half of that one.
        world.relayed(10).await;
        let dying = Arc::new(Recorder {
            hang_after: Some(0),
            ..Default::default()
        });
        let first_shutdown = Shutdown::new();
        let first = world
            .start(world.config("partial"), dying.clone(), &first_shutdown)
            .await;
        wait_until(
            &format!("{}: the first instance to hang", world.name()),
            Duration::from_secs(30),
            || dying.hung.load(Ordering::SeqCst),
        )
        .await;
        first.abort();
        world.publish_many(50, &aggregates, 5).await;

        let recorder = Arc::new(Recorder::default());
        let shutdown = Shutdown::new();
        let second = world
            .start(world.config("partial"), recorder.clone(), &shutdown)
            .await;
        wait_until(
            "every event, the unhandled half batch included",
            Duration::from_secs(30),
            || recorder.count() >= 55,
        )
        .await;
        shutdown.trigger();
        second.join().await;
        let seen = recorder.seen.lock().expect("recorder").clone();
        let mut all = recorder.ids();
        all.extend(dying.ids());
        assert_eq!(all.len(), 60, "{}: events handled by either", world.name());
        // The survivor starts where the dead one's acknowledgement ended,
        // so it sees every aggregate from its first event, in order.
        assert_in_order_per_aggregate(world.name(), &seen, 60);
        world.cleanup().await;
    }
}

/// Two instances of one group: one reads each stream, the other stands by
/// (a JetStream consumer shared by two readers would have each acknowledge
/// the other's events).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_of_a_group_have_one_reader_per_stream() {
    for world in World::both().await {
        let shutdown = Shutdown::new();
        let (left, right) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let first = world
            .start(world.config("pair"), left.clone(), &shutdown)
            .await;
        let second = world
            .start(world.config("pair"), right.clone(), &shutdown)
            .await;
        let aggregates: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        world.publish_many(400, &aggregates, 20).await;
        wait_until("every event", Duration::from_secs(30), || {
            left.count() + right.count() >= 400
        })
        .await;
        shutdown.trigger();
        first.join().await;
        second.join().await;
        let (l, r) = (left.count(), right.count());
        assert!(
            l == 0 || r == 0,
            "{}: both instances read the stream ({l} and {r} events)",
            world.name()
        );
        let seen = if l > 0 { &left } else { &right };
        let seen = seen.seen.lock().expect("recorder").clone();
        assert_in_order_per_aggregate(world.name(), &seen, 400);
        world.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_groups_progress_independently() {
    for world in World::both().await {
        let shutdown = Shutdown::new();
        let fast = Arc::new(Recorder::default());
        let stuck = Arc::new(Recorder::default());
        stuck.down.store(true, Ordering::Relaxed);
        let fast_group = world
            .start(world.config("fast"), fast.clone(), &shutdown)
            .await;
        let stuck_group = world
            .start(world.config("stuck"), stuck.clone(), &shutdown)
            .await;
        let aggregates = [Uuid::new_v4(), Uuid::new_v4()];
        world.publish_many(400, &aggregates, 20).await;
        wait_until("the healthy group", Duration::from_secs(30), || {
            fast.count() >= 400
        })
        .await;
        wait_until("the stuck group to try", Duration::from_secs(30), || {
            stuck.calls.load(Ordering::Relaxed) > 0
        })
        .await;
        assert_eq!(
            stuck.count(),
            0,
            "{}: the stuck group saw nothing",
            world.name()
        );
        assert_eq!(stuck_group.stats.snapshot().dead_lettered, 0);
        stuck.down.store(false, Ordering::Relaxed);
        wait_until(
            "the stuck group to recover",
            Duration::from_secs(30),
            || stuck.count() >= 400,
        )
        .await;
        shutdown.trigger();
        fast_group.join().await;
        stuck_group.join().await;
        assert_in_order_per_aggregate(world.name(), &fast.seen.lock().expect("fast"), 400);
        assert_in_order_per_aggregate(world.name(), &stuck.seen.lock().expect("stuck"), 400);
        world.cleanup().await;
    }
}

/// PostgreSQL: the groups of a process share one LISTEN connection per
/// stream, and a commit's notification wakes every one of them (they would
/// not poll within the test's deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_notification_wakes_every_group_of_the_process() {
    let world = World::postgres().await;
    let shutdown = Shutdown::new();
    let recorders: Vec<Arc<Recorder>> = (0..3).map(|_| Arc::new(Recorder::default())).collect();
    let mut groups = Vec::new();
    for (n, recorder) in recorders.iter().enumerate() {
        let mut config = world.config(&format!("woken-{n}"));
        config.idle_poll = Duration::from_secs(120);
        groups.push(world.start(config, recorder.clone(), &shutdown).await);
    }
    for round in 1..=3 {
        world.publish_many(10, &[Uuid::new_v4()], 10).await;
        wait_until("every group, woken", Duration::from_secs(10), || {
            recorders.iter().all(|r| r.count() >= 10 * round)
        })
        .await;
    }
    shutdown.trigger();
    for group in groups {
        group.join().await;
    }
    world.cleanup().await;
}

/// PostgreSQL: a group keeps its pace. Commits that wake it sooner than
/// `pace` after its last read wait for it and are then read together (one
/// handler call, one checkpoint), instead of one read per commit; and a
/// group woken after a quiet spell reads after the linger alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_arriving_faster_than_the_pace_are_read_together() {
    let world = World::postgres().await;
    let shutdown = Shutdown::new();
    let recorder = Arc::new(Recorder::default());
    let pace = Duration::from_millis(600);
    let mut config = world.config("paced");
    config.idle_poll = Duration::from_secs(120);
    config.linger = Duration::ZERO;
    config.pace = pace;
    let group = world.start(config, recorder.clone(), &shutdown).await;
    let aggregate = Uuid::new_v4();
    // A quiet spell (the group's first reads found nothing), then one
    // commit: read at once, not a pace later.
    tokio::time::sleep(pace).await;
    let quiet = tokio::time::Instant::now();
    world.publish(vec![sale(aggregate, "first")]).await;
    wait_until("the first event", Duration::from_secs(10), || {
        recorder.count() >= 1
    })
    .await;
    let first_at = tokio::time::Instant::now();
    assert!(
        first_at - quiet < pace,
        "after a quiet spell the group read after {:?}, not within its pace",
        first_at - quiet
    );
    let calls_before = recorder.calls.load(Ordering::Relaxed);
    // Five commits right after that read: each notifies, none is read
    // before the pace has passed since the last read, and then all at once.
    for n in 0..5 {
        world
            .publish(vec![sale(aggregate, &format!("next-{n}"))])
            .await;
    }
    wait_until("the next five", Duration::from_secs(10), || {
        recorder.count() >= 6
    })
    .await;
    let elapsed = tokio::time::Instant::now() - first_at;
    assert!(
        // (The test sees the first read up to a poll late; without the
        // pace, with no linger, it would come within milliseconds.)
        elapsed >= pace / 2,
        "the group read again {elapsed:?} after its last read, sooner than its pace"
    );
    let calls = recorder.calls.load(Ordering::Relaxed) - calls_before;
    assert_eq!(
        calls, 1,
        "five commits within the pace were handled in {calls} calls, not one"
    );
    shutdown.trigger();
    group.join().await;
    assert_in_order_per_aggregate(world.name(), &recorder.seen.lock().expect("recorder"), 6);
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_group_reads_nothing_until_resumed_and_then_everything() {
    for world in World::both().await {
        let shutdown = Shutdown::new();
        // Pausing is by name in the whole process: a name of this test's own.
        let paused_name = format!("paused-{}", Uuid::new_v4().simple());
        let (paused, control) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let paused_group = world
            .start(world.config(&paused_name), paused.clone(), &shutdown)
            .await;
        let control_group = world
            .start(world.config("control"), control.clone(), &shutdown)
            .await;
        let aggregates = [Uuid::new_v4(), Uuid::new_v4()];
        world.publish_many(100, &aggregates, 10).await;
        wait_until("both groups", Duration::from_secs(30), || {
            paused.count() >= 100 && control.count() >= 100
        })
        .await;

        boxoffice_events::pause_group(&paused_name);
        assert!(boxoffice_events::paused_groups().contains(&paused_name));
        world.publish_many(100, &aggregates, 10).await;
        // The running group is the clock: once it has everything, the
        // paused one has had every chance to read.
        wait_until("the running group", Duration::from_secs(30), || {
            control.count() >= 200
        })
        .await;
        assert_eq!(
            paused.ids().len(),
            100,
            "{}: a paused group reads nothing",
            world.name()
        );

        boxoffice_events::resume_group(&paused_name);
        wait_until("the resumed group", Duration::from_secs(30), || {
            paused.count() >= 200
        })
        .await;
        shutdown.trigger();
        paused_group.join().await;
        control_group.join().await;
        assert_in_order_per_aggregate(world.name(), &paused.seen.lock().expect("paused"), 200);
        world.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_unreadable_and_newer_events_are_set_aside_and_the_stream_goes_on() {
    for world in World::both().await {
        let shutdown = Shutdown::new();
        let recorder = Arc::new(Recorder {
            poison: Some("poison"),
            failing: Some("failing"),
            ..Default::default()
        });
        let group = world
            .start(world.config("careful"), recorder.clone(), &shutdown)
            .await;
        let aggregate = Uuid::new_v4();
        world
            .publish(vec![
                sale(aggregate, "ok"),
                sale(aggregate, "poison"),
                sale(aggregate, "ok"),
            ])
            .await;
        world
            .publish(vec![sale(aggregate, "failing"), sale(aggregate, "ok")])
            .await;
        // Not an envelope at all.
        world
            .publish_raw(Uuid::new_v4(), b"\xff\xfe not protobuf".to_vec())
            .await;
        // An envelope under a newer contract.
        let newer = pb::Envelope {
            event_id: Uuid::now_v7().to_string(),
            producer: PRODUCER.into(),
            contract_version: 2,
            event_type: "boxoffice.events.v2.Something".into(),
            ..Default::default()
        };
        world
            .publish_raw(Uuid::new_v4(), newer.encode_to_vec())
            .await;
        // A payload type this build does not know (field 999).
        let mut unknown = pb::Envelope {
            event_id: Uuid::now_v7().to_string(),
            producer: PRODUCER.into(),
            contract_version: 1,
            event_type: "boxoffice.events.v1.FromTheFuture".into(),
            ..Default::default()
        }
        .encode_to_vec();
        unknown.extend_from_slice(&[0xba, 0x3e, 0x02, 0x08, 0x01]);
        world.publish_raw(Uuid::new_v4(), unknown).await;
        world
            .publish(vec![sale(aggregate, "ok"), sale(aggregate, "ok")])
            .await;

        wait_until(
            "the events after the bad ones",
            Duration::from_secs(30),
            || recorder.count() >= 5 && group.stats.snapshot().dead_lettered >= 4,
        )
        .await;
        shutdown.trigger();
        let stats = group.stats.snapshot();
        group.join().await;
        assert_eq!(recorder.count(), 5, "{}: every good event", world.name());
        assert!(
            recorder
                .seen
                .lock()
                .expect("recorder")
                .iter()
                .all(|e| marker(e) == "ok")
        );
        assert_eq!(
            stats.skipped_unknown,
            1,
            "{}: the unknown type is skipped",
            world.name()
        );
        let letters = dead_letters(&world.db.pool, CONSUMER, "careful")
            .await
            .expect("dead letters");
        let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
        assert_eq!(
            letters.len(),
            4,
            "{}: dead letters {reasons:?}",
            world.name()
        );
        assert!(reasons[0].contains("poison for the test"), "{reasons:?}");
        assert!(reasons[1].contains("failed 3 times"), "{reasons:?}");
        assert!(reasons[2].contains("not an envelope"), "{reasons:?}");
        assert!(reasons[3].contains("newer"), "{reasons:?}");
        assert_eq!(letters[0].event_type, "boxoffice.events.v1.SeatsSold");
        world.cleanup().await;
    }
}

/// Events in the backlog a late consumer must catch up on.
const BACKLOG: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_consumer_catches_up_on_a_backlog() {
    for world in World::both().await {
        let aggregates: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        world.publish_many(BACKLOG, &aggregates, 2_000).await;
        let shutdown = Shutdown::new();
        let recorder = Arc::new(Recorder::default());
        let mut config = world.config("late");
        config.batch_size = 1_000;
        let group = world.start(config, recorder.clone(), &shutdown).await;
        wait_until("the backlog", Duration::from_secs(240), || {
            recorder.count() >= BACKLOG
        })
        .await;
        shutdown.trigger();
        group.join().await;
        let seen = recorder.seen.lock().expect("recorder").clone();
        assert_in_order_per_aggregate(world.name(), &seen, BACKLOG);
        world.cleanup().await;
    }
}

/// The outbox numbers each aggregate's events 1, 2, 3, … in the order they
/// were appended, and the stored bytes are the whole envelope with that
/// number in it (the insert writes the sequence into the bytes), however
/// many bytes the number takes; the envelopes `append` answers say the
/// same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_envelopes_carry_their_sequence_past_one_byte() {
    let world = World::postgres().await;
    let outbox = Outbox::new(PRODUCER);
    let long = Uuid::new_v4();
    let far = Uuid::new_v4();
    // A far-along aggregate: its last stored sequence needs three varint bytes.
    {
        let client = world.db.pool.get().await.expect("connection");
        let envelope = boxoffice_events::Envelope {
            event_id: Uuid::now_v7().to_string(),
            aggregate_type: "event".to_owned(),
            aggregate_id: far.to_string(),
            sequence: 20_000,
            ..Default::default()
        };
        client
            .execute(
                "INSERT INTO shop.event_outbox (id, event_id, aggregate_type, aggregate_id, sequence, event_type, envelope)
                 VALUES (nextval('shop.event_outbox_id'), $1, 'event', $2, 20000, 'x', $3)",
                &[
                    &Uuid::parse_str(&envelope.event_id).expect("uuid"),
                    &far.to_string(),
                    &envelope.encode_to_vec(),
                ],
            )
            .await
            .expect("a far-along aggregate");
    }
    let mut answered = Vec::new();
    for batch in [130, 1, 2] {
        let mut client = world.db.pool.get().await.expect("connection");
        let transaction = client.transaction().await.expect("transaction");
        let mut events: Vec<NewEvent> = (0..batch).map(|_| sale(long, "long")).collect();
        events.insert(batch / 2, sale(far, "far"));
        answered.extend(outbox.append(&transaction, events).await.expect("append"));
        transaction.commit().await.expect("commit");
    }
    let client = world.db.pool.get().await.expect("connection");
    let rows = client
        .query(
            "SELECT event_id, aggregate_id, sequence, envelope FROM shop.event_outbox
             WHERE event_type <> 'x' ORDER BY id",
            &[],
        )
        .await
        .expect("reading the outbox");
    assert_eq!(rows.len(), answered.len());
    let mut stored_long = Vec::new();
    let mut stored_far = Vec::new();
    for (row, answer) in rows.iter().zip(&answered) {
        let bytes: Vec<u8> = row.get("envelope");
        let envelope =
            boxoffice_events::Envelope::decode(bytes.as_slice()).expect("a whole envelope");
        let sequence: i64 = row.get("sequence");
        assert_eq!(
            envelope.sequence as i64, sequence,
            "stored bytes and column agree"
        );
        assert_eq!(&envelope, answer, "append answers what it stored, in order");
        assert_eq!(
            row.get::<_, Uuid>("event_id").to_string(),
            envelope.event_id
        );
        if row.get::<_, String>("aggregate_id") == long.to_string() {
            stored_long.push(envelope.sequence);
        } else {
            stored_far.push(envelope.sequence);
        }
    }
    assert_eq!(stored_long, (1..=133).collect::<Vec<u64>>());
    assert_eq!(stored_far, vec![20_001, 20_002, 20_003]);
    world.cleanup().await;
}
