//! Webhooks in PostgreSQL (schema `webhooks`): endpoints, the deliveries
//! the consumer records, the sender's claims and outcomes, and the admins'
//! reads.

use std::time::Duration;

use boxoffice_contracts::events::v1 as events;
use boxoffice_events::{NewEvent, Outbox, Payload};
use boxoffice_runtime::postgres::{DbContext as _, DbError, DbResult, Migration};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Row;
use uuid::Uuid;

pub(crate) const SCHEMA: &str = "webhooks";

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "webhooks",
        sql: include_str!("migrations/0001_webhooks.sql"),
    },
    Migration {
        version: 2,
        name: "event_outbox",
        sql: include_str!("migrations/0002_event_outbox.sql"),
    },
];

/// Creates or upgrades the webhooks schema (idempotent; concurrent starters
/// wait for each other): `boxoffice migrate` runs it with every other
/// service's, and the component runs it before it starts.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    boxoffice_runtime::postgres::migrate(pool, SCHEMA, MIGRATIONS).await
}

/// The aggregate of the events webhooks publish.
const ENDPOINT_AGGREGATE: &str = "webhook_endpoint";

/// A `WebhookEndpointDisabled` from a row of the disabling statement.
fn endpoint_disabled(row: &Row) -> Result<(Uuid, NewEvent), tokio_postgres::Error> {
    let id: Uuid = row.try_get("id")?;
    let created_by: Option<Uuid> = row.try_get("created_by")?;
    let disabled_at: Option<DateTime<Utc>> = row.try_get("disabled_at")?;
    let event = NewEvent::new(
        ENDPOINT_AGGREGATE,
        id,
        Payload::WebhookEndpointDisabled(events::WebhookEndpointDisabled {
            endpoint_id: id.to_string(),
            admin_user_id: created_by
                .map(|admin| admin.to_string())
                .unwrap_or_default(),
            url: row.try_get("url")?,
            reason: row.try_get("disabled_reason")?,
            disabled_time: disabled_at.map(|at| prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: at.timestamp_subsec_nanos() as i32,
            }),
        }),
    );
    Ok((id, event))
}

/// Most attempts listed per delivery.
const ATTEMPTS_LISTED: i64 = 20;

const ENDPOINT_COLUMNS: &str = "id, url, event_types, description, enabled, disabled_reason, disabled_at, \
     created_at, consecutive_failures";

#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) id: Uuid,
    pub(crate) url: String,
    pub(crate) event_types: Vec<String>,
    pub(crate) description: String,
    pub(crate) enabled: bool,
    pub(crate) disabled_reason: String,
    pub(crate) disabled_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) consecutive_failures: i32,
}

fn endpoint(row: &Row) -> Result<Endpoint, tokio_postgres::Error> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        event_types: row.try_get("event_types")?,
        description: row.try_get("description")?,
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
    })
}

/// What an update changes (`None`: left as it is).
#[derive(Debug, Default)]
pub(crate) struct EndpointChanges {
    pub(crate) url: Option<String>,
    pub(crate) event_types: Option<Vec<String>>,
    pub(crate) enabled: Option<bool>,
    pub(crate) description: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub(crate) number: i32,
    pub(crate) at: DateTime<Utc>,
    pub(crate) status_code: i32,
    pub(crate) duration_ms: i32,
    pub(crate) error: String,
    pub(crate) response_excerpt: String,
    pub(crate) manual: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) id: Uuid,
    pub(crate) endpoint_id: Uuid,
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) status: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) next_attempt_at: DateTime<Utc>,
    pub(crate) delivered_at: Option<DateTime<Utc>>,
    pub(crate) attempts: Vec<Attempt>,
}

/// A delivery the sender claimed for one attempt.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    pub(crate) id: Uuid,
    pub(crate) endpoint_id: Uuid,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) body: String,
    /// This attempt's number (1 for the first).
    pub(crate) attempt: i32,
    pub(crate) manual: bool,
}

/// How one attempt went.
#[derive(Clone, Debug)]
pub(crate) struct AttemptResult {
    pub(crate) delivery_id: Uuid,
    pub(crate) endpoint_id: Uuid,
    pub(crate) number: i32,
    pub(crate) manual: bool,
    pub(crate) at: DateTime<Utc>,
    pub(crate) status_code: i32,
    pub(crate) duration_ms: i32,
    pub(crate) error: String,
    pub(crate) response_excerpt: String,
    pub(crate) accepted: bool,
    /// Failed: wait this long before the next attempt.
    pub(crate) retry_after: Duration,
}

#[derive(Clone, Debug)]
pub(crate) struct Notification {
    pub(crate) id: Uuid,
    pub(crate) endpoint_id: Uuid,
    pub(crate) kind: String,
    pub(crate) message: String,
    pub(crate) admin_user_id: Option<Uuid>,
    pub(crate) created_at: DateTime<Utc>,
}

/// When an endpoint that keeps failing is disabled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DisablePolicy {
    pub(crate) failures: i32,
    pub(crate) after: Duration,
}

/// A redelivery's refusal.
#[derive(Debug)]
pub(crate) enum Redelivery {
    Queued(Box<Delivery>),
    NotFound,
    EndpointDisabled,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[derive(Clone)]
pub(crate) struct WebhookStore {
    pool: Pool,
}

impl WebhookStore {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> DbResult<deadpool_postgres::Client> {
        self.pool.get().await.db_context("connecting")
    }

    pub(crate) async fn create_endpoint(
        &self,
        endpoint_id: Uuid,
        url: &str,
        event_types: &[String],
        description: &str,
        secret: &str,
        created_by: Option<Uuid>,
    ) -> DbResult<Endpoint> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO webhooks.endpoints (id, url, event_types, description, secret, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}"
                ),
                &[&endpoint_id, &url, &event_types, &description, &secret, &created_by],
            )
            .await
            .db_context("creating an endpoint")?;
        endpoint(&row).db_context("reading the endpoint")
    }

    pub(crate) async fn endpoint(&self, endpoint_id: Uuid) -> DbResult<Option<Endpoint>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhooks.endpoints WHERE id = $1"),
                &[&endpoint_id],
            )
            .await
            .db_context("reading an endpoint")?;
        row.as_ref()
            .map(endpoint)
            .transpose()
            .db_context("reading an endpoint")
    }

    pub(crate) async fn endpoints(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> DbResult<Vec<Endpoint>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhooks.endpoints
                     WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
                ),
                &[&after, &limit],
            )
            .await
            .db_context("listing endpoints")?;
        rows.iter()
            .map(endpoint)
            .collect::<Result<_, _>>()
            .db_context("reading endpoints")
    }

    /// Enabling an endpoint again clears its failure streak.
    pub(crate) async fn update_endpoint(
        &self,
        endpoint_id: Uuid,
        changes: &EndpointChanges,
    ) -> DbResult<Option<Endpoint>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE webhooks.endpoints SET
                         url = coalesce($2, url),
                         event_types = coalesce($3, event_types),
                         description = coalesce($5, description),
                         enabled = coalesce($4, enabled),
                         disabled_reason = CASE WHEN $4 THEN '' ELSE disabled_reason END,
                         disabled_at = CASE WHEN $4 THEN NULL
                                            WHEN $4 = false AND enabled THEN now() ELSE disabled_at END,
                         consecutive_failures = CASE WHEN $4 THEN 0 ELSE consecutive_failures END,
                         failing_since = CASE WHEN $4 THEN NULL ELSE failing_since END
                     WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
                ),
                &[
                    &endpoint_id,
                    &changes.url,
                    &changes.event_types,
                    &changes.enabled,
                    &changes.description,
                ],
            )
            .await
            .db_context("updating an endpoint")?;
        row.as_ref()
            .map(endpoint)
            .transpose()
            .db_context("reading an endpoint")
    }

    pub(crate) async fn delete_endpoint(&self, endpoint_id: Uuid) -> DbResult<bool> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM webhooks.endpoints WHERE id = $1",
                &[&endpoint_id],
            )
            .await
            .db_context("deleting an endpoint")?;
        Ok(deleted == 1)
    }

    pub(crate) async fn rotate_secret(&self, endpoint_id: Uuid, secret: &str) -> DbResult<bool> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE webhooks.endpoints SET secret = $2 WHERE id = $1",
                &[&endpoint_id, &secret],
            )
            .await
            .db_context("rotating a secret")?;
        Ok(changed == 1)
    }

    /// The event types some enabled endpoint wants (`*` among them when
    /// one wants everything).
    pub(crate) async fn wanted_types(&self) -> DbResult<Vec<String>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT DISTINCT t FROM webhooks.endpoints, unnest(event_types) AS t WHERE enabled",
            )
            .await
            .db_context("preparing the wanted types")?;
        let rows = client
            .query(&statement, &[])
            .await
            .db_context("reading the wanted types")?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Records a delivery of each event to every enabled endpoint that
    /// wants its type and existed when it happened, in one statement; an
    /// event recorded before for an endpoint is left alone (idempotent by
    /// event id). Answers how many deliveries are new.
    pub(crate) async fn record_deliveries(
        &self,
        event_ids: &[Uuid],
        event_types: &[&str],
        bodies: &[String],
        occurred: &[DateTime<Utc>],
        window: Duration,
    ) -> DbResult<u64> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO webhooks.deliveries (id, endpoint_id, event_id, event_type, body, give_up_at)
                 SELECT gen_random_uuid(), p.id, e.event_id, e.event_type, e.body,
                     now() + $5::float8 * interval '1 millisecond'
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
                     AS e(event_id, event_type, body, occurred_at)
                 JOIN webhooks.endpoints p ON p.enabled AND p.created_at <= e.occurred_at
                     AND (e.event_type = ANY(p.event_types) OR '*' = ANY(p.event_types))
                 ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            )
            .await
            .db_context("preparing the delivery record")?;
        client
            .execute(
                &statement,
                &[
                    &event_ids,
                    &event_types,
                    &bodies,
                    &occurred,
                    &millis(window),
                ],
            )
            .await
            .db_context("recording deliveries")
    }

    /// Claims due deliveries of enabled endpoints for one attempt each: the
    /// attempt is counted and the next one moved `claim` ahead before
    /// sending, so a sender that dies mid-send leaves a delivery that is
    /// tried again after `claim`.
    pub(crate) async fn claim_due(&self, limit: i64, claim: Duration) -> DbResult<Vec<Claimed>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "WITH due AS (
                     SELECT d.id FROM webhooks.deliveries d
                     JOIN webhooks.endpoints p ON p.id = d.endpoint_id AND p.enabled
                     WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                     ORDER BY d.next_attempt_at
                     LIMIT $1
                     FOR UPDATE OF d SKIP LOCKED
                 )
                 UPDATE webhooks.deliveries d
                 SET attempts = d.attempts + 1, next_attempt_at = now() + $2::float8 * interval '1 millisecond'
                 FROM due, webhooks.endpoints p
                 WHERE d.id = due.id AND p.id = d.endpoint_id
                 RETURNING d.id, d.endpoint_id, p.url, p.secret, d.body, d.attempts, d.manual",
            )
            .await
            .db_context("preparing the claim")?;
        let rows = client
            .query(&statement, &[&limit, &millis(claim)])
            .await
            .db_context("claiming deliveries")?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("id")?,
                    endpoint_id: row.try_get("endpoint_id")?,
                    url: row.try_get("url")?,
                    secret: row.try_get("secret")?,
                    body: row.try_get("body")?,
                    attempt: row.try_get("attempts")?,
                    manual: row.try_get("manual")?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .db_context("reading claims")
    }

    /// Records a round's attempts in one transaction: the attempt log, each
    /// delivery's new state (delivered, retried later, or given up past its
    /// window), each endpoint's failure streak, and — for an endpoint whose
    /// streak reached the policy — its disabling with a notification for
    /// the admin who registered it. Answers the endpoints disabled now.
    pub(crate) async fn record_attempts(
        &self,
        results: &[AttemptResult],
        policy: DisablePolicy,
    ) -> DbResult<Vec<Uuid>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db_context("beginning")?;
        let column = |field: fn(&AttemptResult) -> Uuid| -> Vec<Uuid> {
            results.iter().map(field).collect()
        };
        let deliveries = column(|r| r.delivery_id);
        let endpoints = column(|r| r.endpoint_id);
        let numbers: Vec<i32> = results.iter().map(|r| r.number).collect();
        let manual: Vec<bool> = results.iter().map(|r| r.manual).collect();
        let times: Vec<DateTime<Utc>> = results.iter().map(|r| r.at).collect();
        let codes: Vec<i32> = results.iter().map(|r| r.status_code).collect();
        let durations: Vec<i32> = results.iter().map(|r| r.duration_ms).collect();
        let errors: Vec<&str> = results.iter().map(|r| r.error.as_str()).collect();
        let excerpts: Vec<&str> = results
            .iter()
            .map(|r| r.response_excerpt.as_str())
            .collect();
        let accepted: Vec<bool> = results.iter().map(|r| r.accepted).collect();
        let waits: Vec<f64> = results.iter().map(|r| millis(r.retry_after)).collect();
        transaction
            .execute(
                "INSERT INTO webhooks.attempts (delivery_id, number, manual, attempted_at, status_code,
                     duration_ms, error, response_excerpt)
                 SELECT * FROM unnest($1::uuid[], $2::int4[], $3::bool[], $4::timestamptz[], $5::int4[],
                     $6::int4[], $7::text[], $8::text[])
                 ON CONFLICT DO NOTHING",
                &[&deliveries, &numbers, &manual, &times, &codes, &durations, &errors, &excerpts],
            )
            .await
            .db_context("logging attempts")?;
        transaction
            .execute(
                "UPDATE webhooks.deliveries d SET
                     manual = false,
                     status = CASE WHEN r.accepted THEN 'delivered'
                                   WHEN now() + r.wait * interval '1 millisecond' > d.give_up_at THEN 'failed'
                                   ELSE 'pending' END,
                     delivered_at = CASE WHEN r.accepted THEN now() ELSE d.delivered_at END,
                     next_attempt_at = now() + r.wait * interval '1 millisecond'
                 FROM unnest($1::uuid[], $2::bool[], $3::float8[]) AS r(id, accepted, wait)
                 WHERE d.id = r.id",
                &[&deliveries, &accepted, &waits],
            )
            .await
            .db_context("recording delivery states")?;
        // Per endpoint, in the round's order: a success ends the streak.
        let rows = transaction
            .query(
                "WITH r AS (
                     SELECT endpoint_id, bool_or(accepted) AS any_accepted,
                         count(*) FILTER (WHERE NOT accepted) AS failures
                     FROM unnest($1::uuid[], $2::bool[]) AS r(endpoint_id, accepted) GROUP BY endpoint_id
                 ),
                 -- One update per endpoint (a row changed twice in one statement
                 -- keeps only one change): the streak, and the disabling when
                 -- the streak now reaches the policy.
                 c AS (
                     SELECT p.id, r.any_accepted,
                         p.consecutive_failures + r.failures AS failures,
                         coalesce(p.failing_since, now()) AS since,
                         p.enabled AND NOT r.any_accepted
                             AND p.consecutive_failures + r.failures >= $3::int4
                             AND coalesce(p.failing_since, now()) <= now() - $4::float8 * interval '1 millisecond'
                             AS disable
                     FROM webhooks.endpoints p JOIN r ON r.endpoint_id = p.id
                 ),
                 disabled AS (
                     UPDATE webhooks.endpoints p SET
                         consecutive_failures = CASE WHEN c.any_accepted THEN 0 ELSE c.failures END,
                         failing_since = CASE WHEN c.any_accepted THEN NULL ELSE c.since END,
                         enabled = p.enabled AND NOT c.disable,
                         disabled_at = CASE WHEN c.disable THEN now() ELSE p.disabled_at END,
                         disabled_reason = CASE WHEN c.disable
                             THEN format('failed %s attempts in a row since %s', c.failures, c.since)
                             ELSE p.disabled_reason END
                     FROM c WHERE p.id = c.id
                     RETURNING p.id, p.created_by, p.url, p.disabled_reason, p.disabled_at, c.disable
                 ),
                 noted AS (
                     INSERT INTO webhooks.notifications (id, endpoint_id, kind, message, admin_user_id)
                     SELECT gen_random_uuid(), id, 'endpoint_disabled',
                         'webhook endpoint ' || id || ' was disabled: ' || disabled_reason, created_by
                     FROM disabled WHERE disable
                 )
                 SELECT id, created_by, url, disabled_reason, disabled_at FROM disabled WHERE disable",
                &[&endpoints, &accepted, &policy.failures, &millis(policy.after)],
            )
            .await
            .db_context("recording endpoint streaks")?;
        // The admin is mailed (notify reads this from the outbox), in the
        // transaction that disables: no disabling without its mail.
        let disabled = rows
            .iter()
            .map(endpoint_disabled)
            .collect::<Result<Vec<_>, _>>()
            .db_context("reading disabled endpoints")?;
        let ids = disabled.iter().map(|(id, _)| *id).collect();
        Outbox::new(SCHEMA)
            .append(
                &transaction,
                disabled.into_iter().map(|(_, event)| event).collect(),
            )
            .await
            .map_err(|error| DbError::Internal(error.context("publishing disabled endpoints")))?;
        transaction
            .commit()
            .await
            .db_context("committing attempts")?;
        Ok(ids)
    }

    /// An endpoint's deliveries, newest first, before `before`.
    pub(crate) async fn deliveries(
        &self,
        endpoint_id: Uuid,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> DbResult<Vec<Delivery>> {
        let client = self.client().await?;
        let (before_time, before_id) = before.unzip();
        let rows = client
            .query(
                "SELECT id, endpoint_id, event_id, event_type, status, created_at, next_attempt_at, delivered_at
                 FROM webhooks.deliveries
                 WHERE endpoint_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                 ORDER BY created_at DESC, id DESC LIMIT $4",
                &[&endpoint_id, &before_time, &before_id, &limit],
            )
            .await
            .db_context("listing deliveries")?;
        let mut deliveries = rows
            .iter()
            .map(delivery)
            .collect::<Result<Vec<_>, _>>()
            .db_context("reading deliveries")?;
        self.fill_attempts(&client, &mut deliveries).await?;
        Ok(deliveries)
    }

    async fn fill_attempts(
        &self,
        client: &deadpool_postgres::Client,
        deliveries: &mut [Delivery],
    ) -> DbResult<()> {
        let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
        let rows = client
            .query(
                "SELECT delivery_id, number, attempted_at, status_code, duration_ms, error, response_excerpt, manual
                 FROM (SELECT a.*, row_number() OVER (PARTITION BY delivery_id ORDER BY number DESC) AS n
                       FROM webhooks.attempts a WHERE delivery_id = ANY($1)) a
                 WHERE n <= $2 ORDER BY delivery_id, number",
                &[&ids, &ATTEMPTS_LISTED],
            )
            .await
            .db_context("listing attempts")?;
        for row in rows {
            let delivery_id: Uuid = row.get("delivery_id");
            let attempt = Attempt {
                number: row.get("number"),
                at: row.get("attempted_at"),
                status_code: row.get("status_code"),
                duration_ms: row.get("duration_ms"),
                error: row.get("error"),
                response_excerpt: row.get("response_excerpt"),
                manual: row.get("manual"),
            };
            if let Some(delivery) = deliveries.iter_mut().find(|d| d.id == delivery_id) {
                delivery.attempts.push(attempt);
            }
        }
        Ok(())
    }

    /// Queues a delivery for an attempt now, with a fresh retry window.
    pub(crate) async fn redeliver(
        &self,
        delivery_id: Uuid,
        window: Duration,
    ) -> DbResult<Redelivery> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH target AS (
                     SELECT d.id, p.enabled FROM webhooks.deliveries d
                     JOIN webhooks.endpoints p ON p.id = d.endpoint_id WHERE d.id = $1
                 ),
                 queued AS (
                     UPDATE webhooks.deliveries d SET status = 'pending', manual = true, next_attempt_at = now(),
                         give_up_at = now() + $2::float8 * interval '1 millisecond'
                     FROM target t WHERE d.id = t.id AND t.enabled
                     RETURNING d.id
                 )
                 SELECT t.enabled, (SELECT count(*) FROM queued) AS queued FROM target t",
                &[&delivery_id, &millis(window)],
            )
            .await
            .db_context("queueing a redelivery")?;
        let Some(row) = row else {
            return Ok(Redelivery::NotFound);
        };
        if !row.get::<_, bool>("enabled") {
            return Ok(Redelivery::EndpointDisabled);
        }
        let row = client
            .query_one(
                "SELECT id, endpoint_id, event_id, event_type, status, created_at, next_attempt_at, delivered_at
                 FROM webhooks.deliveries WHERE id = $1",
                &[&delivery_id],
            )
            .await
            .db_context("reading a delivery")?;
        let mut found = vec![delivery(&row).db_context("reading a delivery")?];
        self.fill_attempts(&client, &mut found).await?;
        Ok(found.pop().map_or(Redelivery::NotFound, |delivery| {
            Redelivery::Queued(Box::new(delivery))
        }))
    }

    pub(crate) async fn notifications(
        &self,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> DbResult<Vec<Notification>> {
        let client = self.client().await?;
        let (before_time, before_id) = before.unzip();
        let rows = client
            .query(
                "SELECT id, endpoint_id, kind, message, admin_user_id, created_at FROM webhooks.notifications
                 WHERE $1::timestamptz IS NULL OR (created_at, id) < ($1, $2)
                 ORDER BY created_at DESC, id DESC LIMIT $3",
                &[&before_time, &before_id, &limit],
            )
            .await
            .db_context("listing notifications")?;
        rows.iter()
            .map(|row| {
                Ok(Notification {
                    id: row.try_get("id")?,
                    endpoint_id: row.try_get("endpoint_id")?,
                    kind: row.try_get("kind")?,
                    message: row.try_get("message")?,
                    admin_user_id: row.try_get("admin_user_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .db_context("reading notifications")
    }
}

fn delivery(row: &Row) -> Result<Delivery, tokio_postgres::Error> {
    Ok(Delivery {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        delivered_at: row.try_get("delivered_at")?,
        attempts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    /// The migration creates exactly the events library's producer tables.
    #[test]
    fn the_outbox_migration_matches_the_events_library() {
        assert!(boxoffice_events::outbox::migration_creates_outbox(
            include_str!("migrations/0002_event_outbox.sql"),
            super::SCHEMA,
        ));
    }
}
