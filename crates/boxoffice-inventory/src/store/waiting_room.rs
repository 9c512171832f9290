//! The waiting room in Redis: a hash of settings and counters, the line (who
//! has which place), the pre-queue (who joined before opening, placed by the
//! draw) and the active shoppers (admitted, not done), all under the event's
//! hash tag.
//! Every change goes through the `room_*.lua` scripts, which advance the
//! admitted counter by the Redis server's clock, so every inventory instance
//! agrees on who is through.

use anyhow::{Context as _, anyhow, bail};
use fred::interfaces::SortedSetsInterface as _;
use fred::prelude::Pool;
use fred::types::Value;
use fred::types::scripts::Script;
use uuid::Uuid;

use crate::domain::{DrawSeed, RoomSettings};

macro_rules! room_script {
    ($file:literal) => {
        Script::from_lua(concat!(
            include_str!("lua/room_common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

struct RoomScripts {
    join: Script,
    status: Script,
    configure: Script,
    counters: Script,
    draw: Script,
}

/// Where a user stands in an event's line, with the Redis server time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineStanding {
    /// The room is off: holds need no token.
    Off {
        now_ms: i64,
    },
    /// The room is on and the user has not joined.
    NotInLine {
        now_ms: i64,
    },
    /// In the pre-queue: the user's place is drawn at opening.
    Early(Early),
    InLine(InLine),
}

/// A pre-queue joiner's view before their place is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Early {
    pub opens_ms: i64,
    pub now_ms: i64,
    /// The room has opened and its draw has not been made yet.
    pub draw_due: bool,
    pub rate: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InLine {
    pub join_number: u64,
    pub admitted: u64,
    pub rate: u64,
    pub opens_ms: i64,
    pub now_ms: i64,
    /// Measured admissions per 1,000 s (0 before the first measurement).
    pub pace: u64,
    /// Once admitted: when the admission ends (Redis time), `None` when it
    /// is over (bought, released or run out).
    pub admission_until: Option<i64>,
    /// The pre-queue's draw is due (the room opened, nobody drew yet): this
    /// caller arrived after opening, and the look should start it.
    pub draw_due: bool,
}

/// The room's counters right after a change of settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomCounters {
    pub joined: u64,
    pub admitted: u64,
    pub now_ms: i64,
    /// Admitted shoppers whose admission has not ended.
    pub active: u64,
    /// How many joined before opening.
    pub pre_queue: u64,
    pub drawn: bool,
    pub pace: u64,
}

/// What every watcher of an event's line learns from one look at the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomPulse {
    pub enabled: bool,
    pub admitted: u64,
    pub rate: u64,
    pub pace: u64,
    pub opens_ms: i64,
    pub now_ms: i64,
    /// The pre-queue's places are drawn.
    pub drawn: bool,
    pub draw_due: bool,
}

/// The Redis side of the waiting room.
pub struct WaitingRoomStore {
    pool: Pool,
    scripts: RoomScripts,
    prefix: String,
    /// Redis calls made, for tests that show what watching costs.
    calls: std::sync::atomic::AtomicU64,
}

impl WaitingRoomStore {
    /// Shares inventory's Redis pool; scripts load on first use (by SHA,
    /// reloaded on `NOSCRIPT`).
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            pool,
            scripts: RoomScripts {
                join: room_script!("lua/room_join.lua"),
                status: room_script!("lua/room_status.lua"),
                configure: room_script!("lua/room_configure.lua"),
                counters: room_script!("lua/room_counters.lua"),
                draw: room_script!("lua/room_draw.lua"),
            },
            prefix: prefix.to_owned(),
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Redis calls this store has made.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn keys(&self, event_id: Uuid) -> Vec<String> {
        room_keys(&self.prefix, event_id)
    }

    async fn run(
        &self,
        script: &Script,
        event_id: Uuid,
        args: Vec<Value>,
    ) -> anyhow::Result<Vec<Value>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let value = script
            .evalsha_with_reload::<Value, _, _>(self.pool.next(), self.keys(event_id), args)
            .await;
        super::redis_calls::REDIS_CALLS.record(started, value.is_ok());
        let value = value.context("running a waiting-room script")?;
        match value {
            Value::Array(values) => Ok(values),
            other => bail!("waiting-room script answered {other:?} instead of an array"),
        }
    }

    /// Gives each user a place in line, the one they have, or a spot in
    /// the pre-queue before opening (`Off` when the room is off), in one
    /// call: one standing per user, in order.
    pub async fn join_many(
        &self,
        event_id: Uuid,
        users: &[Uuid],
        admission_ttl_ms: i64,
    ) -> anyhow::Result<Vec<LineStanding>> {
        let mut args: Vec<Value> = Vec::with_capacity(users.len() + 1);
        args.push(admission_ttl_ms.into());
        args.extend(users.iter().map(|user| Value::from(user.to_string())));
        let reply = self.run(&self.scripts.join, event_id, args).await?;
        anyhow::ensure!(
            reply.len() == users.len(),
            "the join script answered {} of {} joins",
            reply.len(),
            users.len()
        );
        reply
            .into_iter()
            .map(|one| match one {
                Value::Array(values) => standing_of(&values),
                other => bail!("the join script answered {other:?} for a join"),
            })
            .collect()
    }

    pub async fn standing(
        &self,
        event_id: Uuid,
        user_id: Uuid,
        admission_ttl_ms: i64,
    ) -> anyhow::Result<LineStanding> {
        let reply = self
            .run(
                &self.scripts.status,
                event_id,
                vec![user_id.to_string().into(), admission_ttl_ms.into()],
            )
            .await?;
        standing_of(&reply)
    }

    /// `opens_ms` 0 means admission starts now; `max_active` 0, no cap;
    /// the room's keys expire at `expires_ms` (0: never).
    pub async fn configure(
        &self,
        event_id: Uuid,
        settings: RoomSettings,
        admission_ttl_ms: i64,
        expires_ms: i64,
    ) -> anyhow::Result<RoomCounters> {
        let args: Vec<Value> = vec![
            if settings.enabled { "1" } else { "0" }.to_owned().into(),
            i64::from(settings.rate).into(),
            settings.opens_ms.into(),
            i64::from(settings.max_active).into(),
            admission_ttl_ms.into(),
            expires_ms.into(),
        ];
        let reply = self.run(&self.scripts.configure, event_id, args).await?;
        counters_of(&reply)
    }

    /// The room's counters now (admission advanced first).
    pub async fn counters(
        &self,
        event_id: Uuid,
        admission_ttl_ms: i64,
    ) -> anyhow::Result<RoomCounters> {
        let reply = self
            .run(
                &self.scripts.counters,
                event_id,
                vec![admission_ttl_ms.into()],
            )
            .await?;
        counters_of(&reply)
    }

    /// The room as every watcher of its line sees it (admission advanced
    /// first).
    pub async fn pulse(&self, event_id: Uuid, admission_ttl_ms: i64) -> anyhow::Result<RoomPulse> {
        let reply = self
            .run(
                &self.scripts.counters,
                event_id,
                vec![admission_ttl_ms.into()],
            )
            .await?;
        let counters = counters_of(&reply)?;
        let draw_due = integer(&reply, 11)? == 1;
        let opens_ms = integer(&reply, 10)?;
        Ok(RoomPulse {
            enabled: integer(&reply, 8)? == 1,
            admitted: counters.admitted,
            rate: count(&reply, 9)?,
            pace: counters.pace,
            opens_ms,
            now_ms: counters.now_ms,
            drawn: counters.drawn,
            draw_due,
        })
    }

    /// Up to `count` pre-queue joiners from index `start` (arrival order).
    pub async fn pre_queue_page(
        &self,
        event_id: Uuid,
        start: i64,
        count: i64,
    ) -> anyhow::Result<Vec<Uuid>> {
        let key = &self.keys(event_id)[2];
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let members: Result<Vec<String>, _> = self
            .pool
            .next()
            .zrange(key, start, start + count - 1, None, false, None, false)
            .await;
        super::redis_calls::REDIS_CALLS.record(started, members.is_ok());
        members
            .context("reading the pre-queue")?
            .iter()
            .map(|member| Uuid::parse_str(member).context("a pre-queue member is not a user id"))
            .collect()
    }

    /// Writes one batch of drawn places; `done` with the last one starts
    /// admission. False when another instance had finished the draw.
    pub async fn place_drawn(
        &self,
        event_id: Uuid,
        seed: &DrawSeed,
        done: bool,
        places: &[(Uuid, u64)],
    ) -> anyhow::Result<bool> {
        let mut args: Vec<Value> = Vec::with_capacity(2 + places.len() * 2);
        args.push(seed.to_hex().into());
        args.push(if done { "1" } else { "0" }.to_owned().into());
        for (user_id, place) in places {
            args.push(user_id.to_string().into());
            args.push(i64::try_from(*place).unwrap_or(i64::MAX).into());
        }
        let reply = self.run(&self.scripts.draw, event_id, args).await?;
        Ok(text(&reply, 0)? == "OK")
    }
}

fn counters_of(reply: &[Value]) -> anyhow::Result<RoomCounters> {
    Ok(RoomCounters {
        joined: count(reply, 0)?,
        admitted: count(reply, 1)?,
        now_ms: integer(reply, 2)?,
        active: count(reply, 3)?,
        pre_queue: count(reply, 4)?,
        drawn: integer(reply, 5)? == 1,
        pace: count(reply, 7)?,
    })
}

fn standing_of(reply: &[Value]) -> anyhow::Result<LineStanding> {
    match text(reply, 0)?.as_str() {
        "OFF" => Ok(LineStanding::Off {
            now_ms: integer(reply, 1).unwrap_or_default(),
        }),
        "OUT" => Ok(LineStanding::NotInLine {
            now_ms: integer(reply, 1)?,
        }),
        "EARLY" => Ok(LineStanding::Early(Early {
            opens_ms: integer(reply, 1)?,
            now_ms: integer(reply, 2)?,
            draw_due: integer(reply, 3)? == 1,
            rate: count(reply, 4)?,
        })),
        "IN" => in_line(reply).map(LineStanding::InLine),
        other => bail!("waiting-room script answered {other}"),
    }
}

/// The room's keys (settings, line, pre-queue, active shoppers), under the
/// same `{event-id}` hash tag as the event's hold keys.
fn room_keys(prefix: &str, event_id: Uuid) -> Vec<String> {
    let base = format!("{prefix}inv:{{{event_id}}}:");
    vec![
        format!("{base}room"),
        format!("{base}line"),
        format!("{base}pre"),
        format!("{base}active"),
    ]
}

/// The room's settings hash alone: `hold.lua` and `availability.lua` read
/// whether the room is on from it, in the same slot as the event's keys.
pub(crate) fn room_key(prefix: &str, event_id: Uuid) -> String {
    format!("{prefix}inv:{{{event_id}}}:room")
}

/// The room's active shoppers: `hold.lua` checks that a token's holder is
/// one, and the scripts that end holds free their place.
pub(crate) fn active_key(prefix: &str, event_id: Uuid) -> String {
    format!("{prefix}inv:{{{event_id}}}:active")
}

fn in_line(reply: &[Value]) -> anyhow::Result<InLine> {
    let until = integer(reply, 7)?;
    Ok(InLine {
        join_number: count(reply, 1)?,
        admitted: count(reply, 2)?,
        rate: count(reply, 3)?,
        opens_ms: integer(reply, 4)?,
        now_ms: integer(reply, 5)?,
        pace: count(reply, 6)?,
        admission_until: (until > 0).then_some(until),
        draw_due: integer(reply, 8)? == 1,
    })
}

fn text(reply: &[Value], index: usize) -> anyhow::Result<String> {
    reply
        .get(index)
        .and_then(Value::as_string)
        .ok_or_else(|| anyhow!("waiting-room reply has no text at {index}"))
}

fn integer(reply: &[Value], index: usize) -> anyhow::Result<i64> {
    reply
        .get(index)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("waiting-room reply has no integer at {index}"))
}

fn count(reply: &[Value], index: usize) -> anyhow::Result<u64> {
    u64::try_from(integer(reply, index)?).context("a negative waiting-room counter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_share_the_event_slot() {
        let event = Uuid::new_v4();
        let slot = fred::util::redis_keyslot(event.to_string().as_bytes());
        for key in room_keys("p:", event) {
            assert_eq!(fred::util::redis_keyslot(key.as_bytes()), slot);
        }
        assert_eq!(room_key("p:", event), room_keys("p:", event)[0]);
        assert_eq!(active_key("p:", event), room_keys("p:", event)[3]);
    }

    #[test]
    fn room_scripts_use_redis_server_time() {
        let store_scripts = [
            room_script!("lua/room_join.lua"),
            room_script!("lua/room_status.lua"),
            room_script!("lua/room_configure.lua"),
            room_script!("lua/room_counters.lua"),
            room_script!("lua/room_draw.lua"),
        ];
        for script in &store_scripts {
            assert!(
                script
                    .lua()
                    .is_some_and(|lua| lua.contains("redis.call('TIME')"))
            );
        }
    }
}
