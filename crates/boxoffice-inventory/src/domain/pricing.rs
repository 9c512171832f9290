//! Dynamic pricing, free of I/O: an event's pricing rule (per tier: a step
//! of so many basis points of the base price for every so many basis
//! points of the tier's seats sold, between a floor and a ceiling), its
//! validation against the event's layout, the price function, and the
//! compact table `hold.lua` prices from.
//!
//! The same function runs in two places and must agree to the unit:
//! [`tier_price`] here (Availability, tests) and `tier_price` in
//! `store/lua/hold.lua` (the price a hold locks). Both use integers only
//! (Lua's doubles are exact below 2^53, which the limits below keep every
//! intermediate value under).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bitmap::SeatBitmap;
use super::layout::SaleLayout;
use boxoffice_runtime::field::FieldError;

/// 100% in basis points.
pub const BASIS_POINTS: i64 = 10_000;
/// The highest ceiling a rule may set, in minor units (a billion in major
/// units): keeps `base * step_change` and `delta * steps` exact in Lua.
pub const MAX_PRICE_MINOR: i64 = 100_000_000_000;

/// One tier's rule, as an admin set it (checked by [`PricingRule::new`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRule {
    pub tier_id: Uuid,
    /// Change per step in basis points of the base price, -10000..=10000, not 0.
    pub step_change_bp: i32,
    /// One step per this many basis points of the tier sold, 1..=10000.
    pub step_sold_bp: u32,
    pub floor_minor: i64,
    pub ceiling_minor: i64,
}

/// An event's rule: at most one entry per tier, each valid for the tier's
/// base price. Empty: every price is fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PricingRule {
    tiers: Vec<TierRule>,
}

impl PricingRule {
    /// Checks every entry against the event's layout; the first bad field
    /// is named by its path in the request (`tiers[2].floor_price`).
    pub fn new(layout: &SaleLayout, tiers: Vec<TierRule>) -> Result<Self, FieldError> {
        for (index, tier) in tiers.iter().enumerate() {
            let field = |name: &str| format!("tiers[{index}].{name}");
            let Some(base) = base_price(layout, tier.tier_id) else {
                return Err(FieldError::new(
                    field("price_tier_id"),
                    "is not a price tier this event sells",
                ));
            };
            if tiers[..index]
                .iter()
                .any(|earlier| earlier.tier_id == tier.tier_id)
            {
                return Err(FieldError::new(
                    field("price_tier_id"),
                    "names a tier a second time",
                ));
            }
            check_tier(tier, base, &field)?;
        }
        Ok(Self { tiers })
    }

    /// A rule PostgreSQL stored (validated when it was set).
    pub fn from_stored(tiers: Vec<TierRule>) -> Self {
        Self { tiers }
    }

    pub fn tiers(&self) -> &[TierRule] {
        &self.tiers
    }

    pub fn tier(&self, tier_id: Uuid) -> Option<&TierRule> {
        self.tiers.iter().find(|tier| tier.tier_id == tier_id)
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }
}

fn check_tier(
    tier: &TierRule,
    base: i64,
    field: &dyn Fn(&str) -> String,
) -> Result<(), FieldError> {
    if tier.step_change_bp == 0 || i64::from(tier.step_change_bp).abs() > BASIS_POINTS {
        return Err(FieldError::new(
            field("step_change_basis_points"),
            "must be between -10000 and 10000 and not 0",
        ));
    }
    if tier.step_sold_bp == 0 || i64::from(tier.step_sold_bp) > BASIS_POINTS {
        return Err(FieldError::new(
            field("step_sold_basis_points"),
            "must be between 1 and 10000",
        ));
    }
    if tier.floor_minor < 0 || tier.floor_minor > base {
        return Err(FieldError::new(
            field("floor_price"),
            format!("must be between 0 and the tier's base price ({base})"),
        ));
    }
    if tier.ceiling_minor < base || tier.ceiling_minor > MAX_PRICE_MINOR {
        return Err(FieldError::new(
            field("ceiling_price"),
            format!("must be between the tier's base price ({base}) and {MAX_PRICE_MINOR}"),
        ));
    }
    Ok(())
}

/// The catalog's price of a tier the event sells.
pub fn base_price(layout: &SaleLayout, tier_id: Uuid) -> Option<i64> {
    layout
        .sections
        .iter()
        .filter_map(|section| section.price.as_ref())
        .find(|price| price.tier_id == tier_id)
        .map(|price| price.amount_minor)
}

/// The price of a tier with `sold` of its `seat_count` seats sold:
/// `base + steps * delta`, clamped to the floor and ceiling, where
/// `steps = floor(sold * 10000 / (seat_count * step_sold_bp))` and
/// `delta = base * step_change_bp / 10000` truncated toward zero.
pub fn tier_price(base: i64, rule: &TierRule, sold: u32, seat_count: u32) -> i64 {
    let unit = i64::from(seat_count) * i64::from(rule.step_sold_bp);
    let steps = if unit > 0 {
        i64::from(sold) * BASIS_POINTS / unit
    } else {
        0
    };
    let delta = base * i64::from(rule.step_change_bp) / BASIS_POINTS;
    (base + delta * steps).clamp(rule.floor_minor, rule.ceiling_minor)
}

/// One tier in the table `hold.lua` prices from (kept in the event's Redis
/// meta hash, field `pricing`): the rule, the base price, the tier's seat
/// count and its seat ranges (inclusive pairs, for `BITCOUNT … BIT`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierTable {
    /// Base price.
    pub b: i64,
    /// Step change, basis points.
    pub d: i32,
    /// Step sold, basis points.
    pub y: u32,
    /// Floor and ceiling.
    pub f: i64,
    pub c: i64,
    /// Seats of the tier.
    pub n: u32,
    /// First and last seat index of each section of the tier.
    pub r: Vec<u32>,
}

impl TierTable {
    fn rule(&self, tier_id: Uuid) -> TierRule {
        TierRule {
            tier_id,
            step_change_bp: self.d,
            step_sold_bp: self.y,
            floor_minor: self.f,
            ceiling_minor: self.c,
        }
    }

    /// The tier's seats set in `sold`.
    pub fn sold_in(&self, sold: &SeatBitmap) -> u32 {
        self.r
            .chunks_exact(2)
            .map(|range| sold.count_range(range[0], range[1]))
            .sum()
    }
}

/// The event's dynamic tiers by id, as Redis keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PricingTable(BTreeMap<Uuid, TierTable>);

/// A tier's price at one read of the sold bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentPrice {
    pub tier_id: Uuid,
    pub base_minor: i64,
    pub price_minor: i64,
    pub sold: u32,
    pub seat_count: u32,
    /// None for a fixed price.
    pub rule: Option<TierRule>,
}

impl PricingTable {
    /// The table of a rule on a layout (tiers the layout no longer sells
    /// are left out).
    pub fn build(rule: &PricingRule, layout: &SaleLayout) -> Self {
        let mut table = BTreeMap::new();
        for tier in rule.tiers() {
            let Some(base) = base_price(layout, tier.tier_id) else {
                continue;
            };
            let (seat_count, ranges) = tier_seats(layout, tier.tier_id);
            table.insert(
                tier.tier_id,
                TierTable {
                    b: base,
                    d: tier.step_change_bp,
                    y: tier.step_sold_bp,
                    f: tier.floor_minor,
                    c: tier.ceiling_minor,
                    n: seat_count,
                    r: ranges,
                },
            );
        }
        Self(table)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(raw: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw)
    }

    /// Every tier of the layout with its price at `sold`: dynamic tiers
    /// from this table, the others at their base price.
    pub fn current_prices(&self, layout: &SaleLayout, sold: &SeatBitmap) -> Vec<CurrentPrice> {
        let mut tier_ids: Vec<Uuid> = Vec::new();
        for price in layout.sections.iter().filter_map(|s| s.price.as_ref()) {
            if !tier_ids.contains(&price.tier_id) {
                tier_ids.push(price.tier_id);
            }
        }
        tier_ids
            .into_iter()
            .map(|tier_id| match self.0.get(&tier_id) {
                Some(table) => {
                    let rule = table.rule(tier_id);
                    let sold_now = table.sold_in(sold);
                    CurrentPrice {
                        tier_id,
                        base_minor: table.b,
                        price_minor: tier_price(table.b, &rule, sold_now, table.n),
                        sold: sold_now,
                        seat_count: table.n,
                        rule: Some(rule),
                    }
                }
                None => {
                    let (seat_count, ranges) = tier_seats(layout, tier_id);
                    let sold_now = ranges
                        .chunks_exact(2)
                        .map(|range| sold.count_range(range[0], range[1]))
                        .sum();
                    let base = base_price(layout, tier_id).unwrap_or_default();
                    CurrentPrice {
                        tier_id,
                        base_minor: base,
                        price_minor: base,
                        sold: sold_now,
                        seat_count,
                        rule: None,
                    }
                }
            })
            .collect()
    }
}

impl PricingRule {
    /// Every tier of the layout with its price when `sold_of` of its seats
    /// are sold: dynamic tiers by this rule, the others at their base
    /// price (what a rule change publishes).
    pub fn prices(&self, layout: &SaleLayout, sold_of: impl Fn(Uuid) -> u32) -> Vec<CurrentPrice> {
        let mut tier_ids: Vec<Uuid> = Vec::new();
        for price in layout.sections.iter().filter_map(|s| s.price.as_ref()) {
            if !tier_ids.contains(&price.tier_id) {
                tier_ids.push(price.tier_id);
            }
        }
        tier_ids
            .into_iter()
            .map(|tier_id| {
                let base = base_price(layout, tier_id).unwrap_or_default();
                let (seat_count, _) = tier_seats(layout, tier_id);
                let sold = sold_of(tier_id);
                let rule = self.tier(tier_id).cloned();
                CurrentPrice {
                    tier_id,
                    base_minor: base,
                    price_minor: rule
                        .as_ref()
                        .map_or(base, |rule| tier_price(base, rule, sold, seat_count)),
                    sold,
                    seat_count,
                    rule,
                }
            })
            .collect()
    }
}

/// A dynamically priced tier as inventory counts its sales in PostgreSQL
/// (`inventory.tier_prices`), right after `moved` seats were sold
/// (negative: put back on sale).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountedTier {
    pub base_minor: i64,
    pub rule: TierRule,
    pub seat_count: u32,
    /// Sold now, `moved` included.
    pub sold: u32,
    pub moved: i32,
}

impl CountedTier {
    /// The tier's price now, when `moved` changed it: a step to publish.
    pub fn new_step(&self) -> Option<CurrentPrice> {
        let before = u32::try_from(i64::from(self.sold) - i64::from(self.moved)).unwrap_or(0);
        let price_then = tier_price(self.base_minor, &self.rule, before, self.seat_count);
        let price_now = tier_price(self.base_minor, &self.rule, self.sold, self.seat_count);
        (price_then != price_now).then(|| CurrentPrice {
            tier_id: self.rule.tier_id,
            base_minor: self.base_minor,
            price_minor: price_now,
            sold: self.sold,
            seat_count: self.seat_count,
            rule: Some(self.rule.clone()),
        })
    }
}

/// How many seats a tier sells and the inclusive seat ranges of its
/// sections.
fn tier_seats(layout: &SaleLayout, tier_id: Uuid) -> (u32, Vec<u32>) {
    let mut seat_count = 0;
    let mut ranges = Vec::new();
    for section in &layout.sections {
        if section.capacity > 0
            && section
                .price
                .as_ref()
                .is_some_and(|price| price.tier_id == tier_id)
        {
            seat_count += section.capacity;
            ranges.push(section.first_seat_index);
            ranges.push(section.first_seat_index + section.capacity - 1);
        }
    }
    (seat_count, ranges)
}

/// The seats of a hold grouped by tier, as `hold.lua` takes them
/// (`tier:count:base;…`), and their total at base prices.
pub fn tier_groups(layout: &SaleLayout, seats: &[u32]) -> (String, i64) {
    let mut groups: Vec<(Uuid, u32, i64)> = Vec::new();
    for seat in seats {
        let Some(price) = layout
            .section_of(*seat)
            .and_then(|section| section.price.as_ref())
        else {
            continue;
        };
        match groups.iter_mut().find(|group| group.0 == price.tier_id) {
            Some(group) => group.1 += 1,
            None => groups.push((price.tier_id, 1, price.amount_minor)),
        }
    }
    let total = groups
        .iter()
        .map(|(_, count, base)| i64::from(*count) * base)
        .sum();
    let encoded = groups
        .iter()
        .map(|(tier, count, base)| format!("{tier}:{count}:{base}"))
        .collect::<Vec<_>>()
        .join(";");
    (encoded, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::layout::tests::grid_layout;

    fn rule(change: i32, sold: u32, floor: i64, ceiling: i64) -> TierRule {
        TierRule {
            tier_id: Uuid::from_u128(100),
            step_change_bp: change,
            step_sold_bp: sold,
            floor_minor: floor,
            ceiling_minor: ceiling,
        }
    }

    #[test]
    fn the_price_rises_a_step_for_every_step_sold_and_stops_at_the_ceiling() {
        // +10% of 4000 for every 20% of 10 seats sold, at most 5000.
        let rule = rule(1_000, 2_000, 4_000, 5_000);
        let prices: Vec<i64> = (0..=10)
            .map(|sold| tier_price(4_000, &rule, sold, 10))
            .collect();
        assert_eq!(
            prices,
            [
                4000, 4000, 4400, 4400, 4800, 4800, 5000, 5000, 5000, 5000, 5000
            ]
        );
    }

    #[test]
    fn a_falling_rule_stops_at_the_floor_and_deltas_truncate_toward_zero() {
        // -33.33% of 1001 is -333.6: -333 per step.
        let falling = rule(-3_333, 5_000, 500, 1_001);
        assert_eq!(tier_price(1_001, &falling, 0, 4), 1_001);
        assert_eq!(tier_price(1_001, &falling, 2, 4), 668);
        assert_eq!(tier_price(1_001, &falling, 4, 4), 500);
        // 1.5% of 999 is 14.985: 14 per step.
        let rising = rule(150, 100, 0, 10_000);
        assert_eq!(tier_price(999, &rising, 1, 100), 1_013);
        // No seats: no steps.
        assert_eq!(tier_price(999, &rising, 0, 0), 999);
    }

    #[test]
    fn steps_are_exact_at_the_boundary() {
        // Every 10% of 30 seats: the step comes at exactly 3 sold.
        let rule = rule(500, 1_000, 0, 1_000_000);
        assert_eq!(tier_price(1_000, &rule, 2, 30), 1_000);
        assert_eq!(tier_price(1_000, &rule, 3, 30), 1_050);
        assert_eq!(tier_price(1_000, &rule, 30, 30), 1_500);
    }

    #[test]
    fn bad_rules_name_their_field() {
        let layout = grid_layout(&[(2, 5, 4_000), (1, 4, 6_000)], None);
        let tier = Uuid::from_u128(100);
        let check = |rule: TierRule| {
            PricingRule::new(&layout, vec![rule])
                .err()
                .map(|error| error.field)
        };
        let good = TierRule {
            tier_id: tier,
            ..rule(500, 1_000, 3_000, 8_000)
        };
        assert_eq!(check(good.clone()), None);
        assert_eq!(
            check(TierRule {
                floor_minor: 4_001,
                ..good.clone()
            }),
            Some("tiers[0].floor_price".into())
        );
        assert_eq!(
            check(TierRule {
                floor_minor: -1,
                ..good.clone()
            }),
            Some("tiers[0].floor_price".into())
        );
        assert_eq!(
            check(TierRule {
                ceiling_minor: 3_999,
                ..good.clone()
            }),
            Some("tiers[0].ceiling_price".into())
        );
        assert_eq!(
            check(TierRule {
                ceiling_minor: MAX_PRICE_MINOR + 1,
                ..good.clone()
            }),
            Some("tiers[0].ceiling_price".into())
        );
        for change in [0, 10_001, -10_001] {
            assert_eq!(
                check(TierRule {
                    step_change_bp: change,
                    ..good.clone()
                }),
                Some("tiers[0].step_change_basis_points".into())
            );
        }
        for step in [0, 10_001] {
            assert_eq!(
                check(TierRule {
                    step_sold_bp: step,
                    ..good.clone()
                }),
                Some("tiers[0].step_sold_basis_points".into())
            );
        }
        assert_eq!(
            check(TierRule {
                tier_id: Uuid::from_u128(7),
                ..good.clone()
            }),
            Some("tiers[0].price_tier_id".into())
        );
        assert_eq!(
            PricingRule::new(&layout, vec![good.clone(), good])
                .err()
                .map(|error| error.field),
            Some("tiers[1].price_tier_id".into())
        );
    }

    #[test]
    fn the_table_prices_from_the_sold_bitmap_and_round_trips_as_json() {
        // Tier 100 sells seats 0..10, tier 101 seats 10..14.
        let layout = grid_layout(&[(2, 5, 4_000), (1, 4, 6_000)], None);
        let rule = PricingRule::new(
            &layout,
            vec![TierRule {
                tier_id: Uuid::from_u128(100),
                ..rule(1_000, 2_000, 4_000, 5_000)
            }],
        )
        .unwrap();
        let table = PricingTable::build(&rule, &layout);
        assert_eq!(PricingTable::from_json(&table.to_json()).unwrap(), table);
        let sold = SeatBitmap::with_seats([0, 3, 4, 9, 10, 11]);
        let prices = table.current_prices(&layout, &sold);
        assert_eq!(prices.len(), 2);
        assert_eq!(
            (prices[0].sold, prices[0].seat_count, prices[0].price_minor),
            (4, 10, 4_800)
        );
        assert!(prices[0].rule.is_some());
        assert_eq!(
            (prices[1].sold, prices[1].seat_count, prices[1].price_minor),
            (2, 4, 6_000)
        );
        assert_eq!(prices[1].rule, None);
    }

    #[test]
    fn a_sale_or_release_is_a_new_step_only_when_it_crosses_one() {
        // +10% of 4000 for every 20% of 10 seats: a step at 2, 4, ...
        let counted = |sold, moved| CountedTier {
            base_minor: 4_000,
            rule: rule(1_000, 2_000, 4_000, 5_000),
            seat_count: 10,
            sold,
            moved,
        };
        assert_eq!(counted(1, 1).new_step(), None);
        let step = counted(2, 1).new_step().expect("crossed 2 sold");
        assert_eq!((step.price_minor, step.sold), (4_400, 2));
        assert_eq!(counted(5, 3).new_step().map(|p| p.price_minor), Some(4_800));
        // Past the ceiling nothing moves; a release back below a step does.
        assert_eq!(counted(9, 1).new_step(), None);
        assert_eq!(
            counted(3, -2).new_step().map(|p| p.price_minor),
            Some(4_400)
        );
        assert_eq!(counted(0, -1).new_step(), None);
    }

    #[test]
    fn a_rule_prices_every_tier_of_the_event() {
        let layout = grid_layout(&[(2, 5, 4_000), (1, 4, 6_000)], None);
        let rule = PricingRule::new(
            &layout,
            vec![TierRule {
                tier_id: Uuid::from_u128(100),
                ..rule(1_000, 2_000, 4_000, 5_000)
            }],
        )
        .unwrap();
        let prices = rule.prices(
            &layout,
            |tier| if tier == Uuid::from_u128(100) { 4 } else { 1 },
        );
        assert_eq!(prices.len(), 2);
        assert_eq!((prices[0].price_minor, prices[0].seat_count), (4_800, 10));
        assert!(prices[0].rule.is_some());
        assert_eq!((prices[1].price_minor, prices[1].sold), (6_000, 1));
        assert_eq!(prices[1].rule, None);
        // No rule: every tier at its base price.
        let fixed = PricingRule::default().prices(&layout, |_| 3);
        assert_eq!(fixed[0].price_minor, 4_000);
    }

    #[test]
    fn holds_group_their_seats_by_tier() {
        let layout = grid_layout(&[(2, 5, 4_000), (1, 4, 6_000)], None);
        let (groups, total) = tier_groups(&layout, &[0, 11, 1]);
        assert_eq!(
            groups,
            format!(
                "{}:2:4000;{}:1:6000",
                Uuid::from_u128(100),
                Uuid::from_u128(101)
            )
        );
        assert_eq!(total, 14_000);
    }
}
