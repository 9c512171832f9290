//! Holds, bitmaps and the change stream in Redis. Every change goes through
//! one of the Lua scripts in `lua/` (loaded once, called by SHA, reloaded on
//! `NOSCRIPT`), each atomic and confined to one event's hash tag so it runs
//! unchanged on Redis Cluster. Redis is for speed and fairness only: what
//! it loses is rebuilt from PostgreSQL, which alone decides what is sold.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use fred::bytes::Bytes;
use fred::prelude::{
    Builder, ClientLike, Config as RedisConfig, Pool, ReconnectPolicy, SortedSetsInterface,
};
use fred::types::Value;
use fred::types::scripts::Script;
use fred::types::sorted_sets::Ordering;
use serde::Deserialize;
use uuid::Uuid;

use crate::config::InventoryConfig;
use crate::domain::admission::{AdmissionClaim, AdmissionRefusal};
use crate::domain::{
    Change, ChangeKind, ChangesOutcome, EventTruth, Hold, HoldRef, HoldState, PriceLock,
    PricingTable, SeatBitmap,
};
use crate::store::waiting_room::{active_key, room_key};

mod extend;
pub use extend::ExtendOutcome;

/// How long an ended hold's record stays readable (GetHold, idempotent commits).
const TOMBSTONE_MS: i64 = 60 * 60 * 1000;
/// Holds one sweep call ends at most.
const SWEEP_BATCH: i64 = 1_000;

macro_rules! event_script {
    ($file:literal) => {
        Script::from_lua(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

/// The hold script: `common.lua`, the price locks it shares with the
/// waitlist's offers (`price_lock.lua`), then `hold.lua`.
const HOLD_LUA: &str = concat!(
    include_str!("lua/common.lua"),
    "\n",
    include_str!("lua/price_lock.lua"),
    "\n",
    include_str!("lua/hold.lua")
);

struct Scripts {
    hold: Script,
    release: Script,
    get_hold: Script,
    sweep: Script,
    mark_sold: Script,
    rebuild: Script,
    availability: Script,
    changes: Script,
    due: Script,
    pricing: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            hold: Script::from_lua(HOLD_LUA),
            release: event_script!("lua/release.lua"),
            get_hold: event_script!("lua/get_hold.lua"),
            sweep: event_script!("lua/sweep.lua"),
            mark_sold: event_script!("lua/mark_sold.lua"),
            rebuild: event_script!("lua/rebuild.lua"),
            availability: event_script!("lua/availability.lua"),
            changes: event_script!("lua/changes.lua"),
            due: Script::from_lua(include_str!("lua/due.lua")),
            pricing: event_script!("lua/pricing.lua"),
        }
    }
}

/// The Redis side of inventory.
pub struct HoldStore {
    pool: Pool,
    scripts: Scripts,
    prefix: String,
    stream_length: String,
}

/// What the hold script decided.
#[derive(Debug)]
pub enum HoldOutcome {
    Held(Hold),
    /// These seats are sold or held by someone else.
    Taken(Vec<u32>),
    OutOfRange(u32),
    Closed,
    TooManyHolds,
    /// The event's waiting room is on and did not admit this hold.
    NotAdmitted(AdmissionRefusal),
    /// The event's Redis state is gone; rebuild and retry.
    NeedsRebuild,
    /// A dynamic tier of the seats costs more now than the buyer's
    /// maximum price (nothing was held).
    PriceAbove {
        tier_id: Uuid,
        price_minor: i64,
    },
}

/// What setting a pricing table in Redis did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PricingSet {
    Set,
    /// Redis already has this rule version or a newer one.
    Superseded,
    /// The event's Redis state is gone; rebuild (which restores the rule).
    NeedsRebuild,
}

#[derive(Debug)]
pub enum ReleaseOutcome {
    Released(Hold),
    /// The hold had already ended (expired, released, committed).
    Ended(Hold),
    NotFound,
}

/// Both bitmaps at one change-stream position.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub open: bool,
    pub on_sale_ms: i64,
    pub seat_count: u32,
    pub epoch: String,
    pub sold: SeatBitmap,
    pub held: SeatBitmap,
    pub last_id: String,
    pub now_ms: i64,
    /// Whether holds need an admission token.
    pub room_enabled: bool,
    /// The dynamic pricing table (empty: every price is fixed).
    pub pricing: PricingTable,
    /// When the earliest live hold expires: until then every held bit is
    /// a live hold (after it, some may be expired holds not yet swept).
    pub next_expiry_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildMode {
    /// Only when the event has no Redis state (after a flush or restart).
    IfMissing,
    /// Only the status fields, when the state exists.
    Status,
}

/// A hold PostgreSQL has just sold, for [`HoldStore::mark_holds_sold`].
#[derive(Clone, Debug)]
pub struct SoldHold {
    pub event_id: Uuid,
    pub hold_id: Uuid,
    pub booking_id: Uuid,
    pub sale_id: Option<Uuid>,
    pub seats: Vec<u32>,
}

/// The JSON record `hold.lua` writes.
#[derive(Deserialize)]
struct HoldRecord {
    o: String,
    s: Vec<u32>,
    e: i64,
    c: i64,
    t: i64,
    cur: String,
    st: String,
    #[serde(default)]
    b: Option<String>,
    /// The commit's sale id.
    #[serde(default)]
    x: Option<String>,
    /// Locked prices of dynamic tiers: tier id -> [price, sold, seats].
    #[serde(default)]
    p: Option<BTreeMap<Uuid, (i64, u32, u32)>>,
}

impl HoldStore {
    /// Connects (a `redis-cluster://` URL connects to a cluster) and loads
    /// the scripts.
    pub async fn connect(url: &str, config: &InventoryConfig) -> anyhow::Result<Self> {
        let redis_config = RedisConfig::from_url(url).context("parsing the redis url")?;
        let pool = Builder::from_config(redis_config)
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(5);
                connection.internal_command_timeout = Duration::from_secs(5);
                connection.max_command_attempts = 3;
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = Duration::from_secs(5);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(config.redis_pool_size)
            .context("building the redis pool")?;
        pool.init().await.context("connecting to redis")?;
        let store = Self {
            pool,
            scripts: Scripts::new(),
            prefix: config.key_prefix.clone(),
            stream_length: config.change_stream_length.to_string(),
        };
        for script in store.all_scripts() {
            script
                .load(store.pool.next())
                .await
                .context("loading a lua script")?;
        }
        Ok(store)
    }

    fn all_scripts(&self) -> [&Script; 10] {
        let s = &self.scripts;
        [
            &s.hold,
            &s.release,
            &s.get_hold,
            &s.sweep,
            &s.mark_sold,
            &s.rebuild,
            &s.availability,
            &s.changes,
            &s.due,
            &s.pricing,
        ]
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn quit(&self) {
        if let Err(error) = self.pool.quit().await {
            tracing::debug!(%error, "closing redis connections");
        }
    }

    /// The keys of one event, in the order `common.lua` names them. The
    /// `{event-id}` hash tag puts them all in one cluster slot.
    pub fn event_keys(&self, event_id: Uuid) -> Vec<String> {
        event_keys(&self.prefix, event_id)
    }

    /// The event's keys and then its waiting room's settings and active
    /// shoppers, for the scripts that look at the room (`hold.lua`,
    /// `availability.lua`, `rebuild.lua`) or end holds, which frees an
    /// active shopper's place (`release.lua`, `mark_sold.lua`).
    fn event_and_room_keys(&self, event_id: Uuid) -> Vec<String> {
        let mut keys = event_keys(&self.prefix, event_id);
        keys.push(room_key(&self.prefix, event_id));
        keys.push(active_key(&self.prefix, event_id));
        keys
    }

    fn sweep_index_key(&self) -> String {
        format!("{}inv:sweep", self.prefix)
    }

    async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> anyhow::Result<Vec<Value>> {
        let started = std::time::Instant::now();
        let value = script
            .evalsha_with_reload::<Value, _, _>(self.pool.next(), keys, args)
            .await;
        super::redis_calls::REDIS_CALLS.record(started, value.is_ok());
        let value = value.context("running an inventory script")?;
        match value {
            Value::Array(values) => Ok(values),
            other => bail!("script answered {other:?} instead of an array"),
        }
    }

    /// The hold script, with the waiting room's check folded in: one round
    /// trip (two when this hold is the event's earliest to expire and the
    /// event must go on the sweep index).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.hold", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn hold(
        &self,
        event_id: Uuid,
        hold_id: Uuid,
        owner: Uuid,
        seats: &[u32],
        ttl: Duration,
        max_holds: u32,
        total_minor: i64,
        currency_code: &str,
        tier_groups: String,
        max_price_minor: Option<i64>,
        admission: AdmissionClaim,
    ) -> anyhow::Result<HoldOutcome> {
        let mut args: Vec<Value> = vec![
            hold_id.to_string().into(),
            owner.to_string().into(),
            (ttl.as_millis() as i64).into(),
            i64::from(max_holds).into(),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
            total_minor.into(),
            currency_code.to_owned().into(),
            tier_groups.into(),
            max_price_minor.map_or(Value::from_static_str(""), Value::from),
        ];
        args.extend(seats.iter().map(|seat| Value::from(i64::from(*seat))));
        args.push(match admission {
            AdmissionClaim::Missing => Value::from_static_str("none"),
            AdmissionClaim::Invalid => Value::from_static_str("invalid"),
            AdmissionClaim::Until(expires_ms) => expires_ms.into(),
        });
        let reply = self
            .run(&self.scripts.hold, self.event_and_room_keys(event_id), args)
            .await?;
        Ok(match text(&reply, 0)?.as_str() {
            "OK" => {
                let hold = decode_hold(HoldRef { event_id, hold_id }, &text(&reply, 1)?)?;
                // Every other live hold of the event expires no later, so the
                // event is on the sweep index already; only the first needs
                // putting there. Best effort: the sweeper's safety-net pass
                // finds holds this misses.
                if integer(&reply, 3)? == 1 {
                    self.schedule_sweep(event_id, hold.expires_ms).await;
                }
                HoldOutcome::Held(hold)
            }
            "TAKEN" => HoldOutcome::Taken(
                reply[1..]
                    .iter()
                    .filter_map(|v| v.as_i64())
                    .map(|s| s as u32)
                    .collect(),
            ),
            "OUT_OF_RANGE" => HoldOutcome::OutOfRange(integer(&reply, 1)? as u32),
            "PRICE_ABOVE" => HoldOutcome::PriceAbove {
                tier_id: Uuid::parse_str(&text(&reply, 1)?).context("tier of a price refusal")?,
                price_minor: integer(&reply, 2)?,
            },
            "CLOSED" => HoldOutcome::Closed,
            "TOO_MANY_HOLDS" => HoldOutcome::TooManyHolds,
            "ADMISSION_REQUIRED" => HoldOutcome::NotAdmitted(AdmissionRefusal::Missing),
            "ADMISSION_INVALID" => HoldOutcome::NotAdmitted(AdmissionRefusal::Invalid),
            "ADMISSION_EXPIRED" => HoldOutcome::NotAdmitted(AdmissionRefusal::Expired),
            "ADMISSION_USED" => HoldOutcome::NotAdmitted(AdmissionRefusal::Used),
            "NOMETA" => HoldOutcome::NeedsRebuild,
            other => bail!("hold script answered {other}"),
        })
    }

    /// Puts an event on the sweep index no later than `expires_ms`.
    pub async fn schedule_sweep(&self, event_id: Uuid, expires_ms: i64) {
        let result: Result<Value, _> = self
            .pool
            .next()
            .zadd(
                self.sweep_index_key(),
                None,
                Some(Ordering::LessThan),
                false,
                false,
                (expires_ms as f64, event_id.to_string()),
            )
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, %event_id, "could not schedule a sweep; the safety net will");
        }
    }

    /// A hold's record with the Redis server's time.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.get_hold", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn get_hold(&self, hold: HoldRef) -> anyhow::Result<Option<(Hold, i64)>> {
        let (mut found, now) = self.get_holds(hold.event_id, &[hold.hold_id]).await?;
        Ok(found.pop().flatten().map(|record| (record, now)))
    }

    /// Several holds of one event and the Redis server's time, in one
    /// round trip: a record per id asked, `None` where there is none.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.get_holds", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn get_holds(
        &self,
        event_id: Uuid,
        hold_ids: &[Uuid],
    ) -> anyhow::Result<(Vec<Option<Hold>>, i64)> {
        let reply = self
            .run(
                &self.scripts.get_hold,
                self.event_keys(event_id),
                hold_ids.iter().map(|id| id.to_string().into()).collect(),
            )
            .await?;
        let now = integer(&reply, 0)?;
        anyhow::ensure!(
            reply.len() == hold_ids.len() + 1,
            "get_hold answered {} records for {} holds",
            reply.len() - 1,
            hold_ids.len()
        );
        let mut found = Vec::with_capacity(hold_ids.len());
        for (i, hold_id) in hold_ids.iter().enumerate() {
            let raw = reply
                .get(i + 1)
                .and_then(Value::as_string)
                .unwrap_or_default();
            found.push(if raw.is_empty() {
                None
            } else {
                Some(decode_hold(
                    HoldRef {
                        event_id,
                        hold_id: *hold_id,
                    },
                    &raw,
                )?)
            });
        }
        Ok((found, now))
    }

    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.release", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn release(&self, hold: HoldRef, owner: Uuid) -> anyhow::Result<ReleaseOutcome> {
        let args = vec![
            hold.hold_id.to_string().into(),
            owner.to_string().into(),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
        ];
        let reply = self
            .run(
                &self.scripts.release,
                self.event_and_room_keys(hold.event_id),
                args,
            )
            .await?;
        Ok(match text(&reply, 0)?.as_str() {
            "OK" => ReleaseOutcome::Released(decode_hold(hold, &text(&reply, 1)?)?),
            "STATE" => ReleaseOutcome::Ended(decode_hold(hold, &text(&reply, 1)?)?),
            _ => ReleaseOutcome::NotFound,
        })
    }

    /// Ends an event's expired holds; answers when the next one expires.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.sweep", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn sweep(&self, event_id: Uuid) -> anyhow::Result<(i64, Option<i64>)> {
        let args = vec![
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
            SWEEP_BATCH.into(),
        ];
        let reply = self
            .run(&self.scripts.sweep, self.event_keys(event_id), args)
            .await?;
        let expired = integer(&reply, 0)?;
        let next = integer(&reply, 1)?;
        Ok((expired, (next >= 0).then_some(next)))
    }

    /// Events whose earliest hold has expired, taken off the sweep index.
    pub async fn due_events(&self, limit: i64) -> anyhow::Result<Vec<Uuid>> {
        let reply = self
            .run(
                &self.scripts.due,
                vec![self.sweep_index_key()],
                vec![limit.into()],
            )
            .await?;
        Ok(reply
            .iter()
            .filter_map(|value| value.as_str().and_then(|id| Uuid::parse_str(&id).ok()))
            .collect())
    }

    /// Mirrors PostgreSQL's commits of several holds of one event, in one
    /// round trip.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.mark_holds_sold", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn mark_holds_sold(&self, event_id: Uuid, sold: &[&SoldHold]) -> anyhow::Result<()> {
        if sold.is_empty() {
            return Ok(());
        }
        let mut args: Vec<Value> = vec![
            Value::from_static_str("holds"),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
        ];
        for hold in sold {
            args.push(hold.hold_id.to_string().into());
            args.push(hold.booking_id.to_string().into());
            args.push(
                hold.sale_id
                    .map(|id| id.to_string())
                    .unwrap_or_default()
                    .into(),
            );
            args.push((hold.seats.len() as i64).into());
            args.extend(hold.seats.iter().map(|seat| Value::from(i64::from(*seat))));
        }
        self.run(
            &self.scripts.mark_sold,
            self.event_and_room_keys(event_id),
            args,
        )
        .await?;
        Ok(())
    }

    /// Copies PostgreSQL's sold seats into Redis (after a lost race showed
    /// Redis was behind).
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.mark_seats_sold", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn mark_seats_sold(&self, event_id: Uuid, seats: &[u32]) -> anyhow::Result<()> {
        self.mark_seats(event_id, "seats", seats).await
    }

    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.mark_seats_unsold", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn mark_seats_unsold(&self, event_id: Uuid, seats: &[u32]) -> anyhow::Result<()> {
        self.mark_seats(event_id, "unsell", seats).await
    }

    async fn mark_seats(&self, event_id: Uuid, mode: &str, seats: &[u32]) -> anyhow::Result<()> {
        if seats.is_empty() {
            return Ok(());
        }
        let mut args: Vec<Value> = vec![
            mode.to_owned().into(),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
        ];
        args.extend(seats.iter().map(|seat| Value::from(i64::from(*seat))));
        self.run(
            &self.scripts.mark_sold,
            self.event_and_room_keys(event_id),
            args,
        )
        .await?;
        Ok(())
    }

    /// Writes PostgreSQL's truth into Redis; `true` when it did.
    pub async fn rebuild(
        &self,
        event_id: Uuid,
        mode: RebuildMode,
        truth: &EventTruth,
    ) -> anyhow::Result<bool> {
        let epoch = Uuid::new_v4().simple().to_string();
        let args: Vec<Value> = vec![
            match mode {
                RebuildMode::IfMissing => "if_missing",
                RebuildMode::Status => "status",
            }
            .to_owned()
            .into(),
            if truth.open { "open" } else { "closed" }.to_owned().into(),
            truth.on_sale_ms.into(),
            i64::from(truth.seat_count).into(),
            epoch[..12].to_owned().into(),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
            Value::Bytes(Bytes::from(truth.sold.as_bytes().to_vec())),
            match truth.room {
                Some(room) if room.enabled => "1",
                _ => "0",
            }
            .to_owned()
            .into(),
            i64::from(truth.room.map_or(0, |room| room.rate)).into(),
            truth.room.map_or(0, |room| room.opens_ms).into(),
            i64::from(truth.room.map_or(0, |room| room.max_active)).into(),
            truth.room_expires_ms.into(),
            truth.pricing.clone().into(),
            truth.pricing_version.into(),
        ];
        let reply = self
            .run(
                &self.scripts.rebuild,
                self.event_and_room_keys(event_id),
                args,
            )
            .await?;
        Ok(text(&reply, 0)? == "OK")
    }

    /// Both bitmaps at one change-stream position, the event's status, the
    /// room's switch and the earliest live hold's expiry, in one round trip;
    /// `None` when the event's state is gone.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.snapshot", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn snapshot(&self, event_id: Uuid) -> anyhow::Result<Option<Snapshot>> {
        let reply = self
            .run(
                &self.scripts.availability,
                self.event_and_room_keys(event_id),
                Vec::new(),
            )
            .await?;
        if text(&reply, 0)? != "OK" {
            return Ok(None);
        }
        let mut reply = reply;
        let held = SeatBitmap::from_bytes(take_bytes(&mut reply, 6)?);
        let sold = SeatBitmap::from_bytes(take_bytes(&mut reply, 5)?);
        let next_expiry: f64 = text(&reply, 10)?.parse().context("next expiry")?;
        Ok(Some(Snapshot {
            open: text(&reply, 1)? == "open",
            on_sale_ms: text(&reply, 2)?.parse().context("on_sale_ms")?,
            seat_count: text(&reply, 3)?.parse().context("seat_count")?,
            epoch: text(&reply, 4)?,
            sold,
            held,
            last_id: text(&reply, 7)?,
            now_ms: text(&reply, 8)?.parse().context("now")?,
            room_enabled: text(&reply, 9)? == "1",
            next_expiry_ms: (next_expiry >= 0.0).then_some(next_expiry as i64),
            pricing: match text(&reply, 11)?.as_str() {
                "" => PricingTable::default(),
                raw => PricingTable::from_json(raw).context("decoding the pricing table")?,
            },
        }))
    }

    /// Puts an event's pricing table (JSON; empty removes it) of rule
    /// `version` into its Redis state, unless Redis already has that
    /// version or a newer one.
    pub async fn set_pricing(
        &self,
        event_id: Uuid,
        table: String,
        version: i64,
    ) -> anyhow::Result<PricingSet> {
        let reply = self
            .run(
                &self.scripts.pricing,
                self.event_keys(event_id),
                vec![
                    table.into(),
                    self.stream_length.clone().into(),
                    version.into(),
                ],
            )
            .await?;
        match text(&reply, 0)?.as_str() {
            "OK" => Ok(PricingSet::Set),
            "STALE" => Ok(PricingSet::Superseded),
            "NOMETA" => Ok(PricingSet::NeedsRebuild),
            other => bail!("pricing script answered {other}"),
        }
    }

    pub async fn changes(
        &self,
        event_id: Uuid,
        epoch: &str,
        after: &str,
        count: u32,
    ) -> anyhow::Result<ChangesOutcome> {
        let args: Vec<Value> = vec![
            epoch.to_owned().into(),
            after.to_owned().into(),
            i64::from(count).into(),
        ];
        let reply = self
            .run(&self.scripts.changes, self.event_keys(event_id), args)
            .await?;
        match text(&reply, 0)?.as_str() {
            "OK" => {
                let mut changes = Vec::with_capacity((reply.len() - 1) / 3);
                for entry in reply[1..].chunks(3) {
                    let [id, kind, seats] = entry else {
                        bail!("change stream entry with {} fields", entry.len());
                    };
                    let id = id.as_string().ok_or_else(|| anyhow!("change id"))?;
                    let kind = match kind.as_str().as_deref() {
                        Some("h") => ChangeKind::Held,
                        Some("r") => ChangeKind::Released,
                        Some("x") => ChangeKind::Expired,
                        Some("s") => ChangeKind::Sold,
                        Some("u") => ChangeKind::Unsold,
                        Some("c") => ChangeKind::Status,
                        Some("z") => ChangeKind::Reset,
                        other => bail!("unknown change kind {other:?}"),
                    };
                    let seats = seats
                        .as_str()
                        .unwrap_or_default()
                        .split(',')
                        .filter(|seat| !seat.is_empty())
                        .map(|seat| {
                            seat.parse::<u32>()
                                .context("seat index in the change stream")
                        })
                        .collect::<anyhow::Result<Vec<u32>>>()?;
                    changes.push(Change { id, kind, seats });
                }
                Ok(ChangesOutcome::Changes(changes))
            }
            "RESET" => Ok(ChangesOutcome::Reset),
            "NOMETA" => Ok(ChangesOutcome::NeedsRebuild),
            other => bail!("changes script answered {other}"),
        }
    }
}

/// The keys of one event, in the order `common.lua` names them.
fn event_keys(prefix: &str, event_id: Uuid) -> Vec<String> {
    let base = format!("{prefix}inv:{{{event_id}}}:");
    [
        "meta", "held", "sold", "holds", "expiry", "owners", "changes", "graves",
    ]
    .iter()
    .map(|name| format!("{base}{name}"))
    .collect()
}

fn text(reply: &[Value], index: usize) -> anyhow::Result<String> {
    reply
        .get(index)
        .and_then(Value::as_string)
        .ok_or_else(|| anyhow!("script reply has no text at {index}"))
}

fn integer(reply: &[Value], index: usize) -> anyhow::Result<i64> {
    reply
        .get(index)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("script reply has no integer at {index}"))
}

/// Moves a bulk string out of a reply (no copy when the reply owns it alone).
fn take_bytes(reply: &mut [Value], index: usize) -> anyhow::Result<Vec<u8>> {
    match reply.get_mut(index).map(Value::take) {
        Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Bytes(bytes)) => Ok(Vec::from(bytes)),
        Some(Value::String(text)) => Ok(text.as_bytes().to_vec()),
        Some(other) => bail!("script reply has {other:?} instead of bytes at {index}"),
        None => bail!("script reply has nothing at {index}"),
    }
}

pub(crate) fn decode_hold(hold: HoldRef, raw: &str) -> anyhow::Result<Hold> {
    let record: HoldRecord = serde_json::from_str(raw).context("decoding a hold record")?;
    let state = match record.st.as_str() {
        "active" => HoldState::Active,
        "expired" => HoldState::Expired,
        "released" => HoldState::Released,
        "committed" => HoldState::Committed,
        other => bail!("unknown hold state {other}"),
    };
    Ok(Hold {
        hold,
        owner: Uuid::parse_str(&record.o).context("hold owner")?,
        seats: record.s,
        total_minor: record.t,
        currency_code: record.cur,
        state,
        created_ms: record.c,
        expires_ms: record.e,
        booking_id: record.b.as_deref().and_then(|b| Uuid::parse_str(b).ok()),
        sale_id: record.x.as_deref().and_then(|x| Uuid::parse_str(x).ok()),
        price_locks: record
            .p
            .unwrap_or_default()
            .into_iter()
            .map(|(tier_id, (price_minor, sold, seat_count))| PriceLock {
                tier_id,
                price_minor,
                sold,
                seat_count,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_records_decode() {
        let hold = HoldRef {
            event_id: Uuid::new_v4(),
            hold_id: Uuid::new_v4(),
        };
        let owner = Uuid::new_v4();
        let raw = format!(
            r#"{{"o":"{owner}","s":[3,4],"e":1700000000000,"c":1699999400000,"t":2000,"cur":"EUR","st":"active"}}"#
        );
        let decoded = decode_hold(hold, &raw).unwrap();
        assert_eq!(decoded.seats, vec![3, 4]);
        assert_eq!(decoded.state, HoldState::Active);
        assert_eq!(decoded.expires_ms, 1_700_000_000_000);
        assert_eq!(decoded.booking_id, None);
        assert!(decoded.price_locks.is_empty());
        let tier = Uuid::new_v4();
        let locked = raw.replace(
            r#""st":"active""#,
            &format!(r#""st":"active","p":{{"{tier}":[4400,12,40]}}"#),
        );
        assert_eq!(
            decode_hold(hold, &locked).unwrap().price_locks,
            vec![PriceLock {
                tier_id: tier,
                price_minor: 4_400,
                sold: 12,
                seat_count: 40
            }]
        );
    }

    #[test]
    fn every_key_of_an_event_lands_in_one_cluster_slot() {
        let event = Uuid::new_v4();
        let mut keys = event_keys("test-prefix:", event);
        assert_eq!(keys.len(), 8);
        keys.push(room_key("test-prefix:", event));
        keys.push(active_key("test-prefix:", event));
        let slot = fred::util::redis_keyslot(keys[0].as_bytes());
        assert!(
            keys.iter()
                .all(|key| fred::util::redis_keyslot(key.as_bytes()) == slot)
        );
        assert_eq!(
            slot,
            fred::util::redis_keyslot(event.to_string().as_bytes())
        );
    }

    #[test]
    fn every_script_uses_redis_server_time() {
        let scripts = Scripts::new();
        for script in [
            &scripts.hold,
            &scripts.sweep,
            &scripts.release,
            &scripts.due,
        ] {
            assert!(
                script
                    .lua()
                    .is_some_and(|lua| lua.contains("redis.call('TIME')"))
            );
        }
    }
}

/// The hold script exactly as inventory loads it, and the keys of an event,
/// so a baseline (`redis-benchmark` running the same script by `EVALSHA`)
/// measures the very code HoldSeats runs.
pub mod baseline {
    pub const HOLD_SCRIPT: &str = super::HOLD_LUA;

    pub fn event_keys(prefix: &str, event_id: uuid::Uuid) -> Vec<String> {
        super::event_keys(prefix, event_id)
    }
}
