//! Best-available selection, free of I/O: given the layout and which seats
//! are taken, pick `quantity` seats for one buyer. Seated: adjacent seats in
//! one row, never leaving a single orphan seat beside the block when another
//! choice avoids it, closest to the stage first. General admission: any free
//! places of one section. The caller retries with fresh state when it loses
//! the race for the chosen seats.

use uuid::Uuid;

use crate::domain::bitmap::SeatBitmap;
use crate::domain::layout::{SaleLayout, SaleSection};

/// What the buyer asked for; filters are optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BestAvailableQuery {
    pub quantity: u32,
    pub section_id: Option<Uuid>,
    pub price_tier_id: Option<Uuid>,
    pub max_price_minor: Option<i64>,
}

/// A candidate block: fewer orphans first, then nearer the stage.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score {
    orphans: u8,
    distance: f32,
}

impl Score {
    fn better_than(&self, other: &Score) -> bool {
        (self.orphans, self.distance) < (other.orphans, other.distance)
    }
}

/// The current prices of dynamically priced tiers, which `max_price`
/// compares instead of their base prices (any other tier costs its base
/// price): the price a hold taken now would lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrentPrices(Vec<(Uuid, i64)>);

impl CurrentPrices {
    pub fn new(prices: impl IntoIterator<Item = (Uuid, i64)>) -> Self {
        Self(prices.into_iter().collect())
    }

    fn of(&self, tier_id: Uuid, base_minor: i64) -> i64 {
        self.0
            .iter()
            .find(|(tier, _)| *tier == tier_id)
            .map_or(base_minor, |(_, price)| *price)
    }
}

fn eligible(section: &SaleSection, query: &BestAvailableQuery, prices: &CurrentPrices) -> bool {
    let Some(price) = &section.price else {
        return false;
    };
    query.section_id.is_none_or(|id| id == section.id)
        && query.price_tier_id.is_none_or(|id| id == price.tier_id)
        && query
            .max_price_minor
            .is_none_or(|max| prices.of(price.tier_id, price.amount_minor) <= max)
}

/// The best seats for `query`, or `None` when no section that matches has
/// room. Seated sections are preferred; general admission is used when the
/// query allows it and no seated block fits.
pub fn best_available(
    layout: &SaleLayout,
    taken: &SeatBitmap,
    query: &BestAvailableQuery,
) -> Option<Vec<u32>> {
    best_available_ranked(layout, taken, query, &CurrentPrices::default(), 1)
        .into_iter()
        .next()
}

/// Up to `limit` choices for `query`, best first, no two overlapping (the
/// best block of each row, ranked). Under a rush every buyer sees the same
/// snapshot: a caller that lost the race for the best block picks among
/// the next ones instead of fighting for it again. `max_price` compares
/// `prices` (dynamic tiers' prices now) where they name the tier.
pub fn best_available_ranked(
    layout: &SaleLayout,
    taken: &SeatBitmap,
    query: &BestAvailableQuery,
    prices: &CurrentPrices,
    limit: usize,
) -> Vec<Vec<u32>> {
    let quantity = query.quantity as usize;
    if quantity == 0 || limit == 0 {
        return Vec::new();
    }
    let mut per_row: Vec<(Score, &[u32])> = Vec::new();
    for section in layout
        .sections
        .iter()
        .filter(|s| !s.general_admission && eligible(s, query, prices))
    {
        for row in &section.rows {
            let mut best = None;
            consider_row(&row.seats, &row.distances, taken, quantity, &mut best);
            per_row.extend(best);
        }
    }
    if !per_row.is_empty() {
        // Ties go to the earlier row, as a stable sort would; only the
        // `limit` best are ordered (a rush asks for one of ~800 rows).
        let order = |a: &(usize, (Score, &[u32])), b: &(usize, (Score, &[u32]))| {
            (a.1.0.orphans, a.1.0.distance)
                .partial_cmp(&(b.1.0.orphans, b.1.0.distance))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        };
        let mut ranked: Vec<(usize, (Score, &[u32]))> = per_row.into_iter().enumerate().collect();
        if limit < ranked.len() {
            ranked.select_nth_unstable_by(limit - 1, order);
            ranked.truncate(limit);
        }
        ranked.sort_unstable_by(order);
        return ranked
            .into_iter()
            .map(|(_, (_, seats))| seats.to_vec())
            .collect();
    }
    layout
        .sections
        .iter()
        .filter(|section| section.general_admission && eligible(section, query, prices))
        .find_map(|section| {
            let end = section.first_seat_index + section.capacity;
            let free: Vec<u32> = (section.first_seat_index..end)
                .filter(|seat| !taken.contains(*seat))
                .take(quantity)
                .collect();
            (free.len() == quantity).then_some(free)
        })
        .into_iter()
        .collect()
}

/// Walks the runs of free seats in one row and keeps the best window.
fn consider_row<'a>(
    seats: &'a [u32],
    distances: &[f32],
    taken: &SeatBitmap,
    quantity: usize,
    best: &mut Option<(Score, &'a [u32])>,
) {
    let mut start = 0;
    while start < seats.len() {
        if taken.contains(seats[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < seats.len() && !taken.contains(seats[end]) {
            end += 1;
        }
        let run = end - start;
        if run >= quantity {
            // Sliding window over the run's distances.
            let mut window: f32 = distances[start..start + quantity].iter().sum();
            for offset in 0..=(run - quantity) {
                if offset > 0 {
                    window +=
                        distances[start + offset + quantity - 1] - distances[start + offset - 1];
                }
                let left_gap = offset;
                let right_gap = run - quantity - offset;
                let score = Score {
                    orphans: u8::from(left_gap == 1) + u8::from(right_gap == 1),
                    distance: window,
                };
                if best
                    .as_ref()
                    .is_none_or(|(current, _)| score.better_than(current))
                {
                    let first = start + offset;
                    *best = Some((score, &seats[first..first + quantity]));
                }
            }
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::layout::tests::grid_layout;

    fn query(quantity: u32) -> BestAvailableQuery {
        BestAvailableQuery {
            quantity,
            ..BestAvailableQuery::default()
        }
    }

    #[test]
    fn picks_adjacent_seats_in_the_front_row_centre() {
        // One section, 3 rows of 9 seats: indexes 0..9 are the front row.
        let layout = grid_layout(&[(3, 9, 100)], None);
        let seats = best_available(&layout, &SeatBitmap::default(), &query(3)).unwrap();
        assert_eq!(seats, vec![3, 4, 5]);
    }

    #[test]
    fn never_leaves_a_single_orphan_when_it_can_be_avoided() {
        // Front row 0..6 with seats 0 and 5 taken: free run 1..5 (4 seats).
        // Asking for 3 would leave one orphan; a block of 3 further back
        // without orphans is preferred.
        let layout = grid_layout(&[(2, 6, 100)], None);
        let taken = SeatBitmap::with_seats([0, 5]);
        let seats = best_available(&layout, &taken, &query(3)).unwrap();
        assert!(seats.iter().all(|seat| *seat >= 6), "chose {seats:?}");
        // Asking for 2 in the run of 4 fits exactly without orphans only at
        // its ends; both leave a gap of 2, never 1.
        let seats = best_available(&layout, &taken, &query(2)).unwrap();
        assert!(
            seats == vec![1, 2] || seats == vec![3, 4],
            "chose {seats:?}"
        );
    }

    #[test]
    fn ranked_choices_are_best_first_and_never_overlap() {
        let layout = grid_layout(&[(3, 9, 100)], None);
        let ranked = best_available_ranked(
            &layout,
            &SeatBitmap::default(),
            &query(3),
            &CurrentPrices::default(),
            10,
        );
        assert_eq!(ranked.len(), 3, "one block per row");
        assert_eq!(ranked[0], vec![3, 4, 5], "the best block comes first");
        let mut all: Vec<u32> = ranked.iter().flatten().copied().collect();
        let before = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), before, "choices never overlap");
    }

    #[test]
    fn accepts_an_orphan_when_nothing_else_fits() {
        let layout = grid_layout(&[(1, 4, 100)], None);
        let seats = best_available(&layout, &SeatBitmap::default(), &query(3)).unwrap();
        assert!(seats == vec![0, 1, 2] || seats == vec![1, 2, 3]);
    }

    #[test]
    fn respects_section_tier_and_price_filters() {
        let layout = grid_layout(&[(2, 5, 100), (2, 5, 50)], None);
        let cheap = BestAvailableQuery {
            quantity: 2,
            max_price_minor: Some(60),
            ..BestAvailableQuery::default()
        };
        let seats = best_available(&layout, &SeatBitmap::default(), &cheap).unwrap();
        assert!(seats.iter().all(|seat| *seat >= 10));
        let by_tier = BestAvailableQuery {
            quantity: 2,
            price_tier_id: Some(Uuid::from_u128(101)),
            ..BestAvailableQuery::default()
        };
        assert!(
            best_available(&layout, &SeatBitmap::default(), &by_tier)
                .unwrap()
                .iter()
                .all(|s| *s >= 10)
        );
        let by_section = BestAvailableQuery {
            quantity: 2,
            section_id: Some(Uuid::from_u128(1)),
            ..BestAvailableQuery::default()
        };
        assert!(
            best_available(&layout, &SeatBitmap::default(), &by_section)
                .unwrap()
                .iter()
                .all(|s| *s < 10)
        );
        let too_cheap = BestAvailableQuery {
            quantity: 2,
            max_price_minor: Some(10),
            ..BestAvailableQuery::default()
        };
        assert_eq!(
            best_available(&layout, &SeatBitmap::default(), &too_cheap),
            None
        );
    }

    #[test]
    fn max_price_compares_a_dynamic_tiers_price_now() {
        // Tier 100 (seats 0..10) is based at 100 but costs 120 now; tier
        // 101 (10..20) is fixed at 110.
        let layout = grid_layout(&[(2, 5, 100), (2, 5, 110)], None);
        let risen = CurrentPrices::new([(Uuid::from_u128(100), 120)]);
        let at_most = |max| BestAvailableQuery {
            quantity: 2,
            max_price_minor: Some(max),
            ..BestAvailableQuery::default()
        };
        let pick = |max, prices: &CurrentPrices| {
            best_available_ranked(&layout, &SeatBitmap::default(), &at_most(max), prices, 1)
                .into_iter()
                .next()
        };
        // At base prices 105 buys the first tier; risen, nothing is left.
        assert!(pick(105, &CurrentPrices::default()).is_some_and(|s| s.iter().all(|s| *s < 10)));
        assert_eq!(pick(105, &risen), None);
        // 115 buys the fixed tier instead; 120 the risen one again.
        assert!(pick(115, &risen).is_some_and(|s| s.iter().all(|s| *s >= 10)));
        assert!(pick(120, &risen).is_some_and(|s| s.iter().all(|s| *s < 10)));
    }

    #[test]
    fn general_admission_is_by_quantity() {
        let layout = grid_layout(&[], Some((5, 20)));
        let taken = SeatBitmap::with_seats([0, 2]);
        assert_eq!(
            best_available(&layout, &taken, &query(3)),
            Some(vec![1, 3, 4])
        );
        assert_eq!(best_available(&layout, &taken, &query(4)), None);
    }

    #[test]
    fn sold_out_finds_nothing() {
        let layout = grid_layout(&[(2, 3, 100)], None);
        let taken = SeatBitmap::with_seats(0..6);
        assert_eq!(best_available(&layout, &taken, &query(1)), None);
        let one_left = SeatBitmap::with_seats((0..6).filter(|seat| *seat != 4));
        assert_eq!(best_available(&layout, &one_left, &query(1)), Some(vec![4]));
        assert_eq!(best_available(&layout, &one_left, &query(2)), None);
    }

    #[test]
    fn blocks_never_span_rows() {
        // Two rows of 3 with the middle of each taken: no 2 adjacent seats.
        let layout = grid_layout(&[(2, 3, 100)], None);
        let taken = SeatBitmap::with_seats([1, 4]);
        assert_eq!(best_available(&layout, &taken, &query(2)), None);
    }
}
