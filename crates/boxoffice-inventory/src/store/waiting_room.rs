//! The waiting room in Redis: one hash of settings and counters and one
//! sorted set of who joined in which order, both under the event's hash tag.
//! Every change goes through the `room_*.lua` scripts, which advance the
//! admitted counter by the Redis server's clock, so every inventory instance
//! agrees on who is through.

use anyhow::{Context as _, anyhow, bail};
use fred::prelude::Pool;
use fred::types::Value;
use fred::types::scripts::Script;
use uuid::Uuid;

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
    InLine(InLine),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InLine {
    pub join_number: u64,
    pub admitted: u64,
    pub rate: u64,
    pub opens_ms: i64,
    pub now_ms: i64,
}

/// The room's counters right after a change of settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomCounters {
    pub joined: u64,
    pub admitted: u64,
    pub now_ms: i64,
}

/// The Redis side of the waiting room.
pub struct WaitingRoomStore {
    pool: Pool,
    scripts: RoomScripts,
    prefix: String,
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
            },
            prefix: prefix.to_owned(),
        }
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

    /// Gives `user_id` a place in line (or the one they have); `None` when
    /// the room is off.
    pub async fn join(&self, event_id: Uuid, user_id: Uuid) -> anyhow::Result<Option<InLine>> {
        let reply = self
            .run(
                &self.scripts.join,
                event_id,
                vec![user_id.to_string().into()],
            )
            .await?;
        match text(&reply, 0)?.as_str() {
            "OFF" => Ok(None),
            "IN" => in_line(&reply).map(Some),
            other => bail!("join script answered {other}"),
        }
    }

    pub async fn standing(&self, event_id: Uuid, user_id: Uuid) -> anyhow::Result<LineStanding> {
        let reply = self
            .run(
                &self.scripts.status,
                event_id,
                vec![user_id.to_string().into()],
            )
            .await?;
        match text(&reply, 0)?.as_str() {
            "OFF" => Ok(LineStanding::Off {
                now_ms: integer(&reply, 1)?,
            }),
            "OUT" => Ok(LineStanding::NotInLine {
                now_ms: integer(&reply, 1)?,
            }),
            "IN" => in_line(&reply).map(LineStanding::InLine),
            other => bail!("status script answered {other}"),
        }
    }

    /// `opens_ms` 0 means admission starts now.
    pub async fn configure(
        &self,
        event_id: Uuid,
        enabled: bool,
        rate: u32,
        opens_ms: i64,
    ) -> anyhow::Result<RoomCounters> {
        let args: Vec<Value> = vec![
            if enabled { "1" } else { "0" }.to_owned().into(),
            i64::from(rate).into(),
            opens_ms.into(),
        ];
        let reply = self.run(&self.scripts.configure, event_id, args).await?;
        Ok(RoomCounters {
            joined: count(&reply, 0)?,
            admitted: count(&reply, 1)?,
            now_ms: integer(&reply, 2)?,
        })
    }
}

/// The room's keys, under the same `{event-id}` hash tag as the event's
/// hold keys.
fn room_keys(prefix: &str, event_id: Uuid) -> Vec<String> {
    let base = format!("{prefix}inv:{{{event_id}}}:");
    vec![format!("{base}room"), format!("{base}line")]
}

/// The room's settings hash alone: `hold.lua` and `availability.lua` read
/// whether the room is on from it, in the same slot as the event's keys.
pub(crate) fn room_key(prefix: &str, event_id: Uuid) -> String {
    format!("{prefix}inv:{{{event_id}}}:room")
}

fn in_line(reply: &[Value]) -> anyhow::Result<InLine> {
    Ok(InLine {
        join_number: count(reply, 1)?,
        admitted: count(reply, 2)?,
        rate: count(reply, 3)?,
        opens_ms: integer(reply, 4)?,
        now_ms: integer(reply, 5)?,
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
    }

    #[test]
    fn room_scripts_use_redis_server_time() {
        let store_scripts = [
            room_script!("lua/room_join.lua"),
            room_script!("lua/room_status.lua"),
            room_script!("lua/room_configure.lua"),
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
