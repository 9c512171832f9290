//! Current prices of dynamically priced tiers, kept from inventory's
//! `TierPricesChanged` events by the `catalog-prices` consumer group into
//! `catalog.current_prices`, which GetEvent (and GetSeatMap) read with the
//! event. Inventory prices holds; the catalog only shows what inventory
//! last published, a step behind at most for as long as the event takes to
//! arrive. Each entry is a tier's whole state, so the handler keeps, per
//! tier, the one from the newest event (the envelope's sequence of
//! inventory's event aggregate): replays and reordered batches change
//! nothing.

use std::collections::HashMap;

use boxoffice_contracts::events::v1 as events_pb;
use boxoffice_events::{HandleError, Handler, Payload, Received};
use deadpool_postgres::Pool;
use uuid::Uuid;

/// The consumer group that keeps current prices.
pub(crate) const GROUP: &str = "catalog-prices";
pub(crate) const STREAMS: &[&str] = &["inventory"];

/// One tier's price as an event published it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PriceRow {
    event_id: Uuid,
    tier_id: Uuid,
    sequence: i64,
    price: events_pb::CurrentTierPrice,
}

/// The tier prices one event carries (none for other events).
fn price_rows(received: &Received) -> Result<Vec<PriceRow>, String> {
    let Some(Payload::TierPricesChanged(changed)) = received.payload() else {
        return Ok(Vec::new());
    };
    let parse = |field: &str, text: &str| {
        Uuid::parse_str(text).map_err(|_| format!("{field} {text:?} is not a UUID"))
    };
    let event_id = parse("event id", &changed.event_id)?;
    changed
        .tiers
        .iter()
        .map(|tier| {
            Ok(PriceRow {
                event_id,
                tier_id: parse("price tier id", &tier.price_tier_id)?,
                sequence: i64::try_from(received.envelope.sequence).unwrap_or(i64::MAX),
                price: tier.clone(),
            })
        })
        .collect()
}

/// Per tier, the newest row (one statement may not change a row twice).
fn newest(rows: Vec<PriceRow>) -> Vec<PriceRow> {
    let mut latest: HashMap<(Uuid, Uuid), PriceRow> = HashMap::new();
    for row in rows {
        match latest.get(&(row.event_id, row.tier_id)) {
            Some(kept) if kept.sequence >= row.sequence => {}
            _ => {
                latest.insert((row.event_id, row.tier_id), row);
            }
        }
    }
    latest.into_values().collect()
}

pub(crate) struct CurrentPriceHandler {
    pool: Pool,
}

impl CurrentPriceHandler {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn apply(&self, rows: Vec<PriceRow>) -> anyhow::Result<()> {
        let rows = newest(rows);
        let column = |f: fn(&PriceRow) -> i64| -> Vec<i64> { rows.iter().map(f).collect() };
        let events: Vec<Uuid> = rows.iter().map(|row| row.event_id).collect();
        let tiers: Vec<Uuid> = rows.iter().map(|row| row.tier_id).collect();
        let currencies: Vec<&str> = rows
            .iter()
            .map(|row| row.price.currency_code.as_str())
            .collect();
        let dynamic: Vec<bool> = rows.iter().map(|row| row.price.dynamic).collect();
        let sequences = column(|row| row.sequence);
        let prices = column(|row| row.price.price_minor);
        let floors = column(|row| row.price.floor_minor);
        let ceilings = column(|row| row.price.ceiling_minor);
        let changes = column(|row| i64::from(row.price.step_change_basis_points));
        let steps = column(|row| i64::from(row.price.step_sold_basis_points));
        let sold = column(|row| i64::from(row.price.sold_count));
        let seats = column(|row| i64::from(row.price.seat_count));
        let mut client = self.pool.get().await?;
        // Derived from inventory's stream (replayed after a crash that
        // loses this commit).
        let transaction = boxoffice_events::postgres::projection_transaction(&mut client).await?;
        let statement = transaction
            .prepare_cached(
                "INSERT INTO catalog.current_prices AS c (event_id, tier_id, sequence, currency_code,
                     price_minor, dynamic, floor_minor, ceiling_minor, step_change_bp, step_sold_bp,
                     sold_count, seat_count)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::int8[],
                     $6::bool[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
                     $12::int8[])
                 ON CONFLICT (event_id, tier_id) DO UPDATE
                 SET sequence = EXCLUDED.sequence, currency_code = EXCLUDED.currency_code,
                     price_minor = EXCLUDED.price_minor, dynamic = EXCLUDED.dynamic,
                     floor_minor = EXCLUDED.floor_minor, ceiling_minor = EXCLUDED.ceiling_minor,
                     step_change_bp = EXCLUDED.step_change_bp, step_sold_bp = EXCLUDED.step_sold_bp,
                     sold_count = EXCLUDED.sold_count, seat_count = EXCLUDED.seat_count
                 WHERE c.sequence < EXCLUDED.sequence",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &events,
                    &tiers,
                    &sequences,
                    &currencies,
                    &prices,
                    &dynamic,
                    &floors,
                    &ceilings,
                    &changes,
                    &steps,
                    &sold,
                    &seats,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

impl Handler for CurrentPriceHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let mut rows = Vec::new();
        // A malformed event: the ones before it are applied, it is
        // dead-lettered (the library's `Poison` contract).
        let mut poison = None;
        for (index, received) in events.iter().enumerate() {
            match price_rows(received) {
                Ok(found) => rows.extend(found),
                Err(reason) => {
                    poison = Some(HandleError::Poison { index, reason });
                    break;
                }
            }
        }
        if !rows.is_empty() {
            self.apply(rows).await.map_err(HandleError::Unavailable)?;
        }
        poison.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tier: u128, sequence: i64, price_minor: i64) -> PriceRow {
        PriceRow {
            event_id: Uuid::from_u128(1),
            tier_id: Uuid::from_u128(tier),
            sequence,
            price: events_pb::CurrentTierPrice {
                price_minor,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_newest_event_of_each_tier_wins_whatever_the_order() {
        let mut kept = newest(vec![
            row(7, 3, 4_400),
            row(7, 5, 4_800),
            row(8, 2, 6_000),
            row(7, 4, 4_600),
            row(7, 5, 4_800),
        ]);
        kept.sort_by_key(|row| row.tier_id);
        let seen: Vec<(u128, i64)> = kept
            .iter()
            .map(|row| (row.tier_id.as_u128(), row.price.price_minor))
            .collect();
        assert_eq!(seen, [(7, 4_800), (8, 6_000)]);
    }
}
