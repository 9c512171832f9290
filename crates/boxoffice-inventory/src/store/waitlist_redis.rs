//! The waitlist's side of an event's Redis state: the seats parked for it
//! and its offers, changed only by `waitlist_offer.lua` (and parked by
//! `end_hold` in `common.lua` and `mark_sold.lua`, under the same hash tag).

use anyhow::{Context as _, anyhow, bail};
use fred::prelude::Pool;
use fred::types::Value;
use fred::types::scripts::Script;
use uuid::Uuid;

use crate::domain::{Hold, HoldRef};
use crate::store::redis::{HoldStore, decode_hold};

/// How long an ended offer's record stays readable, like every hold's.
const TOMBSTONE_MS: i64 = 60 * 60 * 1000;

macro_rules! event_script {
    ($file:literal) => {
        Script::from_lua(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

/// What the pass reads before deciding.
#[derive(Debug)]
pub(crate) struct Peek {
    /// Parked seats, in the order they came back.
    pub(crate) parked: Vec<u32>,
    /// Users Redis counts as waiting (what makes released seats park).
    pub(crate) waiting: u32,
    /// The open offers' hold records, in the order asked (`None`: gone).
    pub(crate) offers: Vec<Option<Hold>>,
}

/// One offer to make: a hold for `owner` on `seats`.
#[derive(Clone, Debug)]
pub(crate) struct NewOffer {
    pub(crate) hold_id: Uuid,
    pub(crate) owner: Uuid,
    pub(crate) seats: Vec<u32>,
    /// The total at the tiers' base prices; the script moves it by the
    /// dynamic tiers' locks.
    pub(crate) total_minor: i64,
    /// The seats by tier, as `hold.lua` takes them (`tier:count:base;…`).
    pub(crate) tier_groups: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OfferOutcome {
    /// Offers made (if any) until this expiry; `first`: the event must go
    /// on the sweep index.
    Made {
        expires_ms: i64,
        first: bool,
    },
    /// A parked seat named is no longer parked: decide again.
    Stale,
    Closed,
    NeedsRebuild,
}

pub(crate) struct WaitlistRedis {
    pool: Pool,
    prefix: String,
    stream_length: String,
    peek: Script,
    offer: Script,
}

impl WaitlistRedis {
    /// Loads the scripts on the hold store's connections.
    pub(crate) async fn new(
        holds: &HoldStore,
        prefix: &str,
        stream_length: u32,
    ) -> anyhow::Result<Self> {
        let redis = Self {
            pool: holds.pool().clone(),
            prefix: prefix.to_owned(),
            stream_length: stream_length.to_string(),
            peek: event_script!("lua/waitlist_peek.lua"),
            // Offers lock dynamic prices as holds do (`price_lock.lua`).
            offer: Script::from_lua(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!("lua/price_lock.lua"),
                "\n",
                include_str!("lua/waitlist_offer.lua")
            )),
        };
        for script in [&redis.peek, &redis.offer] {
            script
                .load(redis.pool.next())
                .await
                .context("loading a waitlist script")?;
        }
        Ok(redis)
    }

    fn keys(&self, event_id: Uuid) -> Vec<String> {
        let base = format!("{}inv:{{{event_id}}}:", self.prefix);
        [
            "meta", "held", "sold", "holds", "expiry", "owners", "changes", "graves",
        ]
        .iter()
        .map(|name| format!("{base}{name}"))
        .collect()
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
        match value.context("running a waitlist script")? {
            Value::Array(values) => Ok(values),
            other => bail!("waitlist script answered {other:?}"),
        }
    }

    /// `None` when the event's state is gone (rebuild first).
    pub(crate) async fn peek(
        &self,
        event_id: Uuid,
        offers: &[Uuid],
    ) -> anyhow::Result<Option<Peek>> {
        let reply = self
            .run(
                &self.peek,
                event_id,
                offers.iter().map(|id| id.to_string().into()).collect(),
            )
            .await?;
        if text(&reply, 0)? != "OK" {
            return Ok(None);
        }
        let parked = text(&reply, 2)?
            .split(',')
            .filter(|seat| !seat.is_empty())
            .map(|seat| seat.parse::<u32>().context("a parked seat"))
            .collect::<anyhow::Result<Vec<u32>>>()?;
        let waiting = text(&reply, 3)?.parse().context("the waiting count")?;
        let mut records = Vec::with_capacity(offers.len());
        for (index, hold_id) in offers.iter().enumerate() {
            let raw = text(&reply, 4 + index)?;
            records.push(if raw.is_empty() {
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
        Ok(Some(Peek {
            parked,
            waiting,
            offers: records,
        }))
    }

    /// Puts the parked seats `free` (nobody in line wants their tier) back
    /// on sale, makes `offers` from parked seats and records that `waiting`
    /// users still wait (zero frees what stays parked).
    pub(crate) async fn offer(
        &self,
        event_id: Uuid,
        waiting: u32,
        ttl_ms: i64,
        currency_code: &str,
        free: &[u32],
        offers: &[NewOffer],
    ) -> anyhow::Result<OfferOutcome> {
        let mut args: Vec<Value> = vec![
            i64::from(waiting).into(),
            ttl_ms.into(),
            self.stream_length.clone().into(),
            TOMBSTONE_MS.into(),
            currency_code.to_owned().into(),
            (free.len() as i64).into(),
        ];
        args.extend(free.iter().map(|seat| Value::from(i64::from(*seat))));
        for offer in offers {
            args.push(offer.hold_id.to_string().into());
            args.push(offer.owner.to_string().into());
            args.push(offer.total_minor.into());
            args.push(offer.tier_groups.clone().into());
            args.push((offer.seats.len() as i64).into());
            args.extend(offer.seats.iter().map(|seat| Value::from(i64::from(*seat))));
        }
        let reply = self.run(&self.offer, event_id, args).await?;
        Ok(match text(&reply, 0)?.as_str() {
            "OK" => OfferOutcome::Made {
                expires_ms: integer(&reply, 1)?,
                first: integer(&reply, 2)? == 1,
            },
            "STALE" => OfferOutcome::Stale,
            "CLOSED" => OfferOutcome::Closed,
            "NOMETA" => OfferOutcome::NeedsRebuild,
            other => bail!("waitlist offer script answered {other}"),
        })
    }
}

fn text(reply: &[Value], index: usize) -> anyhow::Result<String> {
    reply
        .get(index)
        .and_then(Value::as_string)
        .ok_or_else(|| anyhow!("waitlist script reply has no text at {index}"))
}

fn integer(reply: &[Value], index: usize) -> anyhow::Result<i64> {
    reply
        .get(index)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("waitlist script reply has no integer at {index}"))
}

#[cfg(test)]
mod tests {
    /// The waitlist's keys are the event's, in `common.lua`'s order.
    #[test]
    fn the_keys_are_the_events() {
        let event = uuid::Uuid::new_v4();
        let prefix = "p:";
        let keys: Vec<String> = [
            "meta", "held", "sold", "holds", "expiry", "owners", "changes", "graves",
        ]
        .iter()
        .map(|name| format!("{prefix}inv:{{{event}}}:{name}"))
        .collect();
        assert_eq!(
            keys,
            crate::store::redis::baseline::event_keys(prefix, event)
        );
    }
}
