//! ExtendHold's Redis side: `extend.lua` moves a live hold's expiry later,
//! within the bound, in one atomic call under the event's hash tag.

use std::sync::LazyLock;
use std::time::Duration;

use fred::types::Value;
use fred::types::scripts::Script;
use uuid::Uuid;

use super::{HoldStore, TOMBSTONE_MS, decode_hold, text};
use crate::domain::{Hold, HoldRef};

/// Loaded on first use (`evalsha_with_reload` sends it when Redis lacks it).
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::from_lua(concat!(
        include_str!("../lua/common.lua"),
        "\n",
        include_str!("../lua/extend.lua")
    ))
});

/// What the extend script decided.
#[derive(Debug)]
pub enum ExtendOutcome {
    /// The hold, live, with its expiry now (unchanged when the bound was
    /// already reached).
    Extended(Hold),
    /// The hold had already ended (expired, released, committed).
    Ended(Hold),
    NotFound,
}

impl HoldStore {
    /// Moves the hold's expiry to now + `wanted` (`None`: as far as
    /// allowed), never earlier than it is and never past its original
    /// expiry + `max_extension`.
    #[tracing::instrument(level = "trace", target = "boxoffice::db", name = "inventory.extend", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn extend(
        &self,
        hold: HoldRef,
        owner: Uuid,
        wanted: Option<Duration>,
        max_extension: Duration,
    ) -> anyhow::Result<ExtendOutcome> {
        let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let args: Vec<Value> = vec![
            hold.hold_id.to_string().into(),
            owner.to_string().into(),
            wanted.map_or(0, millis).into(),
            millis(max_extension).into(),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
        ];
        let reply = self
            .run(&EXTEND, self.event_and_room_keys(hold.event_id), args)
            .await?;
        Ok(match text(&reply, 0)?.as_str() {
            "OK" => ExtendOutcome::Extended(decode_hold(hold, &text(&reply, 1)?)?),
            "STATE" => ExtendOutcome::Ended(decode_hold(hold, &text(&reply, 1)?)?),
            _ => ExtendOutcome::NotFound,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_extend_script_uses_redis_server_time() {
        assert!(
            super::EXTEND
                .lua()
                .is_some_and(|lua| lua.contains("redis.call('TIME')"))
        );
    }
}
