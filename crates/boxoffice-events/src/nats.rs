//! The scale transport: NATS JetStream.
//!
//! A [`Relay`] per producer reads the producer's outbox (in id order, after
//! its own checkpoint, woken by NOTIFY like any consumer) and publishes each
//! row to the subject `<prefix>.<producer>.<aggregate type>` of one stream,
//! with the event id as `Nats-Msg-Id`: a row sent again after a crash
//! between publishing and saving the checkpoint is dropped by the server's
//! de-duplication window. One relay per producer is active at a time (a
//! lease, as for PostgreSQL consumers).
//!
//! A consumer group is one durable pull consumer per producer, named after
//! the group, filtered to that producer's subjects, acknowledging
//! cumulatively (`AckPolicy::All`) at the end of each batch. The
//! consumer's position (its ack floor) lives in JetStream.
//!
//! A cumulative acknowledgement covers everything delivered before it, so
//! nothing may be delivered past a message that was never handled. Two
//! things would do that, and both are closed here:
//! - a reader that died (or reconnected) with messages delivered but not
//!   acknowledged: JetStream would hold those back until `ack_wait` and
//!   meanwhile deliver the next ones, whose acknowledgement would then
//!   cover the unhandled ones. So every time a source opens its consumer
//!   and finds messages pending, it rewinds: the consumer is recreated at
//!   its ack floor + 1, and delivery starts again, in order, from the first
//!   unhandled message.
//! - two instances of a group pulling from one durable consumer (each
//!   would acknowledge the other's messages). So, as for PostgreSQL
//!   consumers, one instance per group and stream holds a lease
//!   ([`NatsTransport::with_lease`]) and is the only reader.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use boxoffice_runtime::Shutdown;
use deadpool_postgres::Pool;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::Notify;

use crate::group::{ConsumerConfig, ConsumerStats, Raw};
use crate::lease::Lease;
use crate::outbox::{channel, check_identifier};

/// The stream events go to unless `BOXOFFICE_NATS_STREAM` names another.
pub(crate) const DEFAULT_STREAM: &str = "BOXOFFICE_EVENTS";

/// A JetStream stream carrying every producer's events.
#[derive(Clone)]
pub struct NatsTransport {
    pub jetstream: jetstream::Context,
    /// The stream's name.
    pub stream: String,
    /// Subjects are `<prefix>.<producer>.<aggregate type>`.
    pub subject_prefix: String,
    /// The server's duplicate window (relayed rows re-sent within it are dropped).
    pub duplicate_window: Duration,
    /// Where consumer groups take their lease (one reader per group and
    /// stream among instances); `None` only where a single instance runs.
    lease: Option<Arc<tokio_postgres::Config>>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .finish_non_exhaustive()
    }
}

impl NatsTransport {
    /// The production stream (`BOXOFFICE_EVENTS`, subjects `boxoffice.events.>`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_to(url, DEFAULT_STREAM).await
    }

    /// Stream `stream` on the server at `url`: the default one, or another
    /// (subjects `boxoffice.<stream in lowercase>.>`), so that several
    /// deployments (or test runs) can share a NATS server without seeing
    /// each other's events.
    pub async fn connect_to(url: &str, stream: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !stream.is_empty()
                && stream.len() <= 64
                && stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{stream:?} is not a stream name (letters, digits, '_' and '-')"
        );
        let client = async_nats::connect(url)
            .await
            .context("connecting to NATS")?;
        let prefix = if stream == DEFAULT_STREAM {
            "boxoffice.events".to_owned()
        } else {
            format!("boxoffice.{}", stream.to_ascii_lowercase())
        };
        Ok(Self::new(client, stream, &prefix))
    }

    pub fn new(client: async_nats::Client, stream: &str, subject_prefix: &str) -> Self {
        Self {
            jetstream: jetstream::new(client),
            stream: stream.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
            duplicate_window: Duration::from_secs(120),
            lease: None,
        }
    }

    /// Consumer groups on this transport take their per-stream lease on
    /// the PostgreSQL server `listen` connects to, so only one instance of
    /// a group reads a stream (see the module docs).
    pub fn with_lease(mut self, listen: tokio_postgres::Config) -> Self {
        self.lease = Some(Arc::new(listen));
        self
    }

    /// Creates the stream when missing.
    pub async fn ensure_stream(&self) -> anyhow::Result<stream::Stream> {
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.subject_prefix)],
                duplicate_window: self.duplicate_window,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|error| anyhow::anyhow!("creating the JetStream stream: {error}"))
    }

    /// Deletes the stream (tests clean up with it).
    pub async fn delete_stream(&self) -> anyhow::Result<()> {
        self.jetstream
            .delete_stream(&self.stream)
            .await
            .map_err(|error| anyhow::anyhow!("deleting the JetStream stream: {error}"))?;
        Ok(())
    }

    fn subject(&self, producer: &str, aggregate_type: &str) -> String {
        // Subject tokens may not hold '.', '*', '>' or whitespace.
        let token: String = aggregate_type
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}.{producer}.{token}", self.subject_prefix)
    }
}

/// Relays one producer's outbox to JetStream until shutdown.
pub struct Relay {
    pool: Pool,
    listen: tokio_postgres::Config,
    producer: String,
    transport: NatsTransport,
    pub batch_size: i64,
    pub idle_poll: Duration,
    /// How long the relay waits after a notification before reading, so
    /// the commits of that moment are relayed together.
    pub linger: Duration,
}

impl Relay {
    pub fn new(
        pool: Pool,
        listen: tokio_postgres::Config,
        producer: &str,
        transport: NatsTransport,
    ) -> anyhow::Result<Self> {
        check_identifier(producer)?;
        Ok(Self {
            pool,
            listen,
            producer: producer.to_owned(),
            transport,
            batch_size: 1_000,
            idle_poll: Duration::from_secs(1),
            linger: crate::group::default_linger(),
        })
    }

    /// Relays until shutdown; every failure backs off and starts again
    /// from the relay's checkpoint (a resend is de-duplicated).
    pub async fn run(self, shutdown: Shutdown) {
        let wake = Arc::new(Notify::new());
        let mut lease: Option<Lease> = None;
        let mut backoff = Duration::from_millis(50);
        let mut stream_ready = false;
        while !shutdown.is_triggered() {
            let step = async {
                if !stream_ready {
                    self.transport.ensure_stream().await?;
                    stream_ready = true;
                }
                if !lease.as_ref().is_some_and(Lease::is_alive) {
                    lease = None;
                    let key = format!(
                        "boxoffice.events.relay.{}.{}",
                        self.producer, self.transport.stream
                    );
                    match Lease::try_acquire(
                        &self.listen,
                        &channel(&self.producer),
                        &key,
                        wake.clone(),
                    )
                    .await?
                    {
                        Some(taken) => lease = Some(taken),
                        None => return anyhow::Ok(false),
                    }
                }
                self.relay_batch().await
            };
            match step.await {
                Ok(true) => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Ok(false) => {
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        // Lingers after a notification so the commits of
                        // that moment go out in one batch.
                        () = wake.notified() => tokio::select! {
                            () = tokio::time::sleep(self.linger) => {}
                            () = shutdown.cancelled() => {}
                        },
                        () = tokio::time::sleep(self.idle_poll) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(producer = %self.producer, error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64, "relaying events failed");
                    lease = None;
                    stream_ready = false;
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Publishes the next batch; `true` when there was one.
    async fn relay_batch(&self) -> anyhow::Result<bool> {
        let producer = &self.producer;
        let stream_name = &self.transport.stream;
        let client = self.pool.get().await.context("connecting")?;
        client
            .execute(
                &format!(
                    "INSERT INTO {producer}.event_relay (stream) VALUES ($1) ON CONFLICT DO NOTHING"
                ),
                &[stream_name],
            )
            .await
            .context("creating the relay checkpoint")?;
        let position: i64 = client
            .query_one(
                &format!("SELECT position FROM {producer}.event_relay WHERE stream = $1"),
                &[stream_name],
            )
            .await
            .context("reading the relay checkpoint")?
            .get(0);
        let rows = client
            .query(
                &format!(
                    "SELECT id, event_id, aggregate_type, envelope FROM {producer}.event_outbox
                     WHERE id > $1 ORDER BY id LIMIT $2"
                ),
                &[&position, &self.batch_size],
            )
            .await
            .context("reading the outbox")?;
        let Some(last) = rows.last() else {
            return Ok(false);
        };
        let last_id: i64 = last.get("id");
        // Publishes go out back to back on one connection (so in order);
        // their acknowledgements are awaited afterwards.
        let mut acks = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: uuid::Uuid = row.get("event_id");
            let subject = self.transport.subject(producer, row.get("aggregate_type"));
            let envelope: Vec<u8> = row.get("envelope");
            let ack = self
                .transport
                .jetstream
                .send_publish(
                    subject,
                    jetstream::message::PublishMessage::build()
                        .payload(envelope.into())
                        .message_id(event_id.to_string()),
                )
                .await
                .map_err(|error| anyhow::anyhow!("publishing an event: {error}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|error| anyhow::anyhow!("JetStream did not store an event: {error}"))?;
        }
        client
            .execute(
                &format!(
                    "UPDATE {producer}.event_relay SET position = $2, updated_at = now()
                     WHERE stream = $1 AND position < $2"
                ),
                &[stream_name, &last_id],
            )
            .await
            .context("saving the relay checkpoint")?;
        Ok(true)
    }
}

fn durable_name(config: &ConsumerConfig, stream: &str) -> String {
    format!("{}_{}_{stream}", config.schema, config.group)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Deletes the group's durable consumer of `stream` (it is created again,
/// from the stream's start, at the next read).
pub(crate) async fn forget_position(
    transport: &NatsTransport,
    config: &ConsumerConfig,
    stream: &str,
) -> anyhow::Result<()> {
    let jetstream_stream = transport.ensure_stream().await?;
    let durable = durable_name(config, stream);
    match jetstream_stream.delete_consumer(&durable).await {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(error.kind(), stream::ConsumerErrorKind::JetStream(ref js)
                if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) =>
        {
            Ok(())
        }
        Err(error) => Err(anyhow::anyhow!("deleting a JetStream consumer: {error}")),
    }
}

/// One stream (producer) of one group over JetStream.
pub(crate) struct NatsSource {
    transport: NatsTransport,
    durable: String,
    filter: String,
    batch_size: usize,
    idle_poll: Duration,
    ack_wait: Duration,
    ephemeral: bool,
    messages: Option<consumer::pull::Stream>,
    stats: Arc<ConsumerStats>,
    lease_key: String,
    /// The lease connection LISTENs here (the producer's channel; its
    /// wake-ups are not used: JetStream delivers).
    lease_channel: String,
    lease: Option<Lease>,
    wake: Arc<Notify>,
}

impl NatsSource {
    pub(crate) fn new(
        transport: NatsTransport,
        config: &ConsumerConfig,
        stream: &str,
        stats: Arc<ConsumerStats>,
    ) -> Self {
        let durable = durable_name(config, stream);
        let filter = format!("{}.{stream}.>", transport.subject_prefix);
        Self {
            transport,
            durable,
            filter,
            batch_size: config.batch_size,
            idle_poll: config.idle_poll,
            ack_wait: config.ack_wait,
            ephemeral: config.ephemeral,
            messages: None,
            stats,
            lease_key: format!(
                "boxoffice.events.consumer.{}.{}.{stream}",
                config.schema, config.group
            ),
            lease_channel: channel(stream),
            lease: None,
            wake: Arc::new(Notify::new()),
        }
    }

    fn consumer_config(&self, deliver_policy: consumer::DeliverPolicy) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.filter.clone(),
            ack_policy: consumer::AckPolicy::All,
            ack_wait: self.ack_wait,
            max_ack_pending: i64::try_from(self.batch_size).unwrap_or(i64::MAX),
            deliver_policy,
            inactive_threshold: if self.ephemeral {
                Duration::from_secs(3_600)
            } else {
                Duration::ZERO
            },
            ..Default::default()
        }
    }

    /// Takes the group's lease for this stream when the transport has one;
    /// `false` while another instance holds it.
    async fn hold_lease(&mut self) -> anyhow::Result<bool> {
        let Some(listen) = &self.transport.lease else {
            return Ok(true);
        };
        if self.lease.as_ref().is_some_and(Lease::is_alive) {
            return Ok(true);
        }
        // Whatever was pulled under a lost lease is not ours to handle.
        self.lease = None;
        self.messages = None;
        self.lease = Lease::try_acquire(
            listen,
            &self.lease_channel,
            &self.lease_key,
            self.wake.clone(),
        )
        .await?;
        Ok(self.lease.is_some())
    }

    async fn open(&self) -> anyhow::Result<consumer::pull::Stream> {
        let stream = self.transport.ensure_stream().await?;
        // Messages delivered but never acknowledged (a reader that died or
        // reconnected): start again at the first of them, in order, rather
        // than let a later acknowledgement cover them (module docs).
        let consumer: consumer::PullConsumer = match stream.consumer_info(&self.durable).await {
            Ok(info) if info.num_ack_pending > 0 => {
                let start_sequence = info.ack_floor.stream_sequence + 1;
                tracing::debug!(consumer = %self.durable, start_sequence,
                    pending = info.num_ack_pending, "rewinding a JetStream consumer to its ack floor");
                stream
                    .delete_consumer(&self.durable)
                    .await
                    .map_err(|error| {
                        anyhow::anyhow!("rewinding the JetStream consumer: {error}")
                    })?;
                stream
                    .create_consumer(self.consumer_config(
                        consumer::DeliverPolicy::ByStartSequence { start_sequence },
                    ))
                    .await
                    .map_err(|error| anyhow::anyhow!("rewinding the JetStream consumer: {error}"))?
            }
            _ => stream
                .get_or_create_consumer(
                    &self.durable,
                    self.consumer_config(consumer::DeliverPolicy::All),
                )
                .await
                .map_err(|error| anyhow::anyhow!("creating the JetStream consumer: {error}"))?,
        };
        consumer
            .stream()
            .max_messages_per_batch(self.batch_size)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|error| anyhow::anyhow!("pulling from JetStream: {error}"))
    }

    pub(crate) async fn next_batch(&mut self, shutdown: &Shutdown) -> anyhow::Result<Vec<Raw>> {
        if !self.hold_lease().await? {
            // Another instance of the group reads this stream.
            tokio::select! {
                () = tokio::time::sleep(self.idle_poll) => {}
                () = shutdown.cancelled() => {}
            }
            return Ok(Vec::new());
        }
        let mut messages = match self.messages.take() {
            Some(messages) => messages,
            None => self.open().await?,
        };
        let first = tokio::select! {
            next = messages.next() => next,
            () = tokio::time::sleep(self.idle_poll) => {
                self.messages = Some(messages);
                return Ok(Vec::new());
            }
            () = shutdown.cancelled() => {
                self.messages = Some(messages);
                return Ok(Vec::new());
            }
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut next = first;
        let mut open = true;
        loop {
            match next {
                Some(Ok(message)) => {
                    let info = message.info().map_err(|error| {
                        anyhow::anyhow!("reading a JetStream message's metadata: {error}")
                    })?;
                    let position = info.stream_sequence;
                    self.stats.set_lag(info.pending);
                    batch.push(Raw {
                        position,
                        bytes: message.payload.clone(),
                        ack: Some(message),
                    });
                }
                Some(Err(error)) => {
                    if batch.is_empty() {
                        return Err(anyhow::anyhow!("pulling from JetStream: {error}"));
                    }
                    // Hand over what arrived; the error shows again next time.
                    break;
                }
                None => {
                    open = false;
                    break;
                }
            }
            if batch.len() >= self.batch_size {
                break;
            }
            match messages.next().now_or_never() {
                Some(item) => next = item,
                None => break,
            }
        }
        if open {
            self.messages = Some(messages);
        }
        Ok(batch)
    }

    pub(crate) async fn commit(&mut self, last: &Raw) -> anyhow::Result<()> {
        let Some(message) = &last.ack else {
            return Ok(());
        };
        // Cumulative (AckPolicy::All), confirmed by the server: the
        // checkpoint is durable once this returns.
        message
            .double_ack()
            .await
            .map_err(|error| anyhow::anyhow!("acknowledging a batch: {error}"))
    }

    pub(crate) fn reset(&mut self) {
        self.messages = None;
    }
}
